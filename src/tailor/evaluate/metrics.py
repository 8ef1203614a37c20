"""Exact metric implementations: classification, regression, perplexity, EM/F1, ROUGE-L, BLEU.

Pure functions on plain Python values (numpy + stdlib). Conventions:
- a ratio whose denominator is zero is 0.0 (never NaN), except `perplexity` of zero tokens;
- EM, token F1 and ROUGE-L are on a 0-1 scale; BLEU is on a 0-100 scale (as sacrebleu reports it).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

# ---------------------------------------------------------------- classification


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def classification_metrics(
    predictions: Sequence[int], references: Sequence[int], labels: Sequence[str]
) -> dict:
    """Accuracy, macro / micro / weighted P-R-F1, per-class scores and the confusion matrix.

    Classes are the indices of `labels`. A prediction outside 0..len(labels)-1 (e.g. -1 for "no
    valid answer") counts as wrong and as a prediction of no class. `confusion[i][j]` counts
    examples whose reference is class i and prediction is class j.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    k = len(labels)
    pred = np.asarray(predictions, dtype=np.int64).reshape(-1)
    ref = np.asarray(references, dtype=np.int64).reshape(-1)
    if ((ref < 0) | (ref >= k)).any():
        bad = int(ref[(ref < 0) | (ref >= k)][0])
        raise ValueError(f"reference label index {bad} is outside 0..{k - 1} ({k} labels)")
    valid = (pred >= 0) & (pred < k)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (ref[valid], pred[valid]), 1)

    tp = np.diag(confusion)  # (K,)
    predicted = confusion.sum(axis=0)  # (K,) times each class was predicted
    support = np.bincount(ref, minlength=k)  # (K,) times each class is the reference
    per_class = {}
    precisions, recalls, f1s = [], [], []
    for i, name in enumerate(labels):
        p, r = _ratio(tp[i], predicted[i]), _ratio(tp[i], support[i])
        precisions.append(p)
        recalls.append(r)
        f1s.append(_f1(p, r))
        per_class[name] = {"precision": p, "recall": r, "f1": f1s[-1], "support": int(support[i])}

    n = len(ref)
    micro_p, micro_r = _ratio(tp.sum(), predicted.sum()), _ratio(tp.sum(), n)
    return {
        "accuracy": _ratio(tp.sum(), n),
        "macro_precision": float(np.mean(precisions)) if k else 0.0,
        "macro_recall": float(np.mean(recalls)) if k else 0.0,
        "macro_f1": float(np.mean(f1s)) if k else 0.0,
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": _f1(micro_p, micro_r),
        "weighted_f1": _ratio(float(np.dot(f1s, support)) if k else 0.0, n),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


# ---------------------------------------------------------------- regression


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    # np.ptp, not the variance: the mean of identical floats need not equal them exactly
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    xm, ym = x - x.mean(), y - y.mean()
    den = math.sqrt(float(np.dot(xm, xm)) * float(np.dot(ym, ym)))
    return float(np.clip(np.dot(xm, ym) / den, -1.0, 1.0)) if den else 0.0


def average_ranks(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(
        np.asarray(x, dtype=np.float64), return_inverse=True, return_counts=True
    )
    last = np.cumsum(counts)  # rank of the last member of each group of equal values
    return (last - (counts - 1) / 2.0)[inverse.reshape(-1)]


def regression_metrics(predictions: Sequence[float], references: Sequence[float]) -> dict:
    """MSE, RMSE, MAE, Pearson and Spearman (average ranks for ties); correlations of constant input are 0.0."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    x = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(references, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        return {"mse": 0.0, "rmse": 0.0, "mae": 0.0, "pearson": 0.0, "spearman": 0.0}
    err = x - y
    mse = float(np.mean(err**2))
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(err))),
        "pearson": _pearson(x, y),
        "spearman": _pearson(average_ranks(x), average_ranks(y)),
    }


# ---------------------------------------------------------------- language modelling


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token); inf only when that overflows a float, NaN for no tokens."""
    if n_tokens <= 0:
        return float("nan")
    try:
        return math.exp(nll_sum / n_tokens)
    except OverflowError:  # mean NLL above ~709.78 nats
        return float("inf")


# ---------------------------------------------------------------- extractive QA (SQuAD)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    s = s.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _as_list(refs: str | Sequence[str]) -> list[str]:
    return [refs] if isinstance(refs, str) else list(refs)


def exact_match(pred: str, refs: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference; no references = unanswerable."""
    refs = _as_list(refs)
    if not refs:
        return float(normalize_answer(pred) == "")
    return float(any(normalize_answer(pred) == normalize_answer(r) for r in refs))


def _token_f1(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    same = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    return _f1(same / len(pred_tokens), same / len(ref_tokens))


def token_f1(pred: str, refs: str | Sequence[str]) -> float:
    """SQuAD token-overlap F1, the best over references; no references = unanswerable."""
    refs = _as_list(refs) or [""]
    p = normalize_answer(pred).split()
    return max(_token_f1(p, normalize_answer(r).split()) for r in refs)


# ---------------------------------------------------------------- generation


def _lcs_length(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, refs: str | Sequence[str]) -> float:
    """ROUGE-L F1 (longest common subsequence) on `normalize_answer` tokens, the best over references."""
    refs = _as_list(refs) or [""]
    p = normalize_answer(pred).split()
    best = 0.0
    for ref in refs:
        r = normalize_answer(ref).split()
        if not p or not r:
            best = max(best, float(p == r))
            continue
        lcs = _lcs_length(p, r)
        best = max(best, _f1(lcs / len(p), lcs / len(r)))
    return best


_BLEU_TOKEN = re.compile(r"\w+|[^\w\s]")


def _bleu_tokens(s: str) -> list[str]:
    """Words and single punctuation marks; case is kept (as in sacrebleu's default)."""
    return _BLEU_TOKEN.findall(s)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _bleu_stats(
    pred: str, refs: Sequence[str], max_n: int
) -> tuple[list[int], list[int], int, int]:
    """Clipped n-gram matches and candidate n-gram counts per order, candidate and closest reference length."""
    p = _bleu_tokens(pred)
    rs = [_bleu_tokens(r) for r in refs]
    matches, totals = [], []
    for n in range(1, max_n + 1):
        cand = _ngrams(p, n)
        most: Counter = Counter()  # per n-gram, the most times any one reference has it
        for r in rs:
            most |= _ngrams(r, n)
        matches.append(sum(min(c, most[g]) for g, c in cand.items()))
        totals.append(max(len(p) - n + 1, 0))
    # closest reference length; ties go to the shorter one
    ref_len = min((len(r) for r in rs), key=lambda m: (abs(m - len(p)), m), default=0)
    return matches, totals, len(p), ref_len


def _bleu_score(matches, totals, cand_len, ref_len, smooth: bool, effective_order: bool) -> float:
    if cand_len == 0:
        return 0.0
    log_p, order, zeros = [], 0, 0
    for m, t in zip(matches, totals, strict=True):
        if t == 0:  # candidate shorter than n
            if effective_order:
                break
            return 0.0
        order += 1
        if m == 0:
            if not smooth:
                return 0.0
            zeros += 1  # sacrebleu's "exp" smoothing: 1 / (2^k * total) for the k-th zero order
            log_p.append(-math.log(2**zeros * t))
        else:
            log_p.append(math.log(m / t))
    bp = 1.0 if cand_len >= ref_len else math.exp(1 - ref_len / cand_len)
    return 100.0 * bp * math.exp(sum(log_p) / order)


def bleu(
    preds: Sequence[str], refs: Sequence[Sequence[str]], max_n: int = 4, smooth: bool = True
) -> float:
    """Corpus BLEU (0-100) with brevity penalty; refs[i] holds the references for preds[i].

    Counts are summed over the corpus before the precisions are taken. With `smooth`, an order
    with no matches gets sacrebleu's "exp" smoothing instead of zeroing the score.
    """
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} reference lists")
    matches, totals, cand_len, ref_len = [0] * max_n, [0] * max_n, 0, 0
    for pred, rs in zip(preds, refs, strict=True):
        m, t, c, r = _bleu_stats(pred, _as_list(rs), max_n)
        matches = [a + b for a, b in zip(matches, m, strict=True)]
        totals = [a + b for a, b in zip(totals, t, strict=True)]
        cand_len, ref_len = cand_len + c, ref_len + r
    return _bleu_score(matches, totals, cand_len, ref_len, smooth, effective_order=False)


def sentence_bleu(
    pred: str, refs: str | Sequence[str], max_n: int = 4, smooth: bool = True
) -> float:
    """BLEU (0-100) of one sentence; orders longer than the candidate are left out (effective order)."""
    m, t, c, r = _bleu_stats(pred, _as_list(refs), max_n)
    return _bleu_score(m, t, c, r, smooth, effective_order=True)


def generation_metrics(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact_match, token_f1, rouge_l (0-1) and corpus bleu (0-100); refs[i] are preds[i]'s references."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} reference lists")
    if not preds:
        return {"exact_match": 0.0, "token_f1": 0.0, "rouge_l": 0.0, "bleu": 0.0}
    n = len(preds)
    return {
        "exact_match": sum(exact_match(p, r) for p, r in zip(preds, refs, strict=True)) / n,
        "token_f1": sum(token_f1(p, r) for p, r in zip(preds, refs, strict=True)) / n,
        "rouge_l": sum(rouge_l(p, r) for p, r in zip(preds, refs, strict=True)) / n,
        "bleu": bleu(preds, refs),
    }
