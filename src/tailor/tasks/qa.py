"""Question answering on SQuAD records: extractive (a span head over sliding context windows) or generative.

Extractive input, per window:  "Question: {question}\\nContext:\\n" + context tokens[s:e] + eos.
The context is tokenised once with the fast tokenizer's offset mapping; windows of what fits in
data.max_length overlap by task.stride tokens. Each feature carries its record (`rid`), its window
(`fid`: the window's character offsets are kept in a side array here) and its start/end labels.
The no-answer slot is the final eos token, not the first: in a decoder-only model only the last
position has seen the question and the whole window, so only there can "not in this window" be judged.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tailor.config import RunConfig, TaskConfig
from tailor.data.batching import Encoded, from_examples
from tailor.data.check import FieldSpec, Schema
from tailor.data.readers import Problem
from tailor.evaluate.metrics import exact_match, normalize_answer, token_f1
from tailor.models.heads import SpanHead
from tailor.tasks.chat import ChatTask, _cell, where

MAX_ANSWER_TOKENS = 30
NO_ANSWER = "unanswerable"  # what generative QA says for a question the context does not answer
NEG = -1e4  # logit for positions that cannot start or end an answer


def question_prefix(question: str) -> str:
    return f"Question: {question.strip()}\nContext:\n"


def qa_key(record: dict) -> str:
    return f"{record.get('question', '')}\n{record.get('context', '')}"


def answer_texts(record: dict) -> list[str]:
    """The distinct reference answers of a SQuAD record ([] = unanswerable)."""
    texts = (record.get("answers") or {}).get("text") or []
    return list(dict.fromkeys(t for t in texts if isinstance(t, str)))


def windows(n_tokens: int, size: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) token windows of `size` covering n_tokens, consecutive windows overlapping by `stride`."""
    step = max(size - stride, 1)
    out, s = [], 0
    while True:
        out.append((s, min(s + size, n_tokens)))
        if s + size >= n_tokens:
            return out
        s += step


def char_span_to_tokens(offsets: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """First and last token (inclusive) of the characters [start, end)."""
    first = int(np.searchsorted(offsets[:, 1], start, side="right"))
    last = int(np.searchsorted(offsets[:, 0], end, side="left")) - 1
    return first, max(last, first)


def best_span(start: Tensor, end: Tensor, max_len: int = MAX_ANSWER_TOKENS) -> tuple[float, int, int]:
    """Highest start+end score over spans with start <= end < start + max_len; (score, i, j)."""
    scores = start[:, None] + end[None, :]  # (n, n)
    n = scores.shape[0]
    band = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu().tril(max_len - 1)
    scores = scores.masked_fill(~band, float("-inf"))
    flat = int(scores.argmax())
    return float(scores.view(-1)[flat]), flat // n, flat % n


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of a text."""
    return [(m.start(), m.end()) for m in re.finditer(r"[^.!?\n]+[.!?]?", text) if m.group().strip()]


def overlap_sentence(context: str, question: str) -> str:
    """The text-only baseline: the context sentence sharing most words with the question."""
    words = set(normalize_answer(question).split())
    spans = sentences(context) or [(0, len(context))]
    best = max(spans, key=lambda s: len(words & set(normalize_answer(context[s[0]:s[1]]).split())))
    return context[best[0]:best[1]].strip()


class ExtractiveQA:
    """task.type qa, qa_mode extractive: predict the answer's start and end token in the context."""

    type = "qa"

    def __init__(self, cfg: TaskConfig, run: RunConfig | None = None):
        self.name = cfg.name or "qa"
        self.stride = cfg.stride
        self.seed = run.seed if run is not None else 0
        self.allow_null = False  # True when the training data has unanswerable questions
        self.contexts: list[str] = []  # per record id (rid)
        self.questions: list[str] = []
        self.answers: list[list[str]] = []
        self.offsets: list[np.ndarray] = []  # per feature id (fid): (window tokens, 2) character offsets
        self.problems: list[Problem] = []
        self.outputs: dict[str, dict[int, str]] = {"baseline": {}, "fine_tuned": {}}

    def schema(self) -> Schema:
        return Schema(fields=[FieldSpec("question", "str"), FieldSpec("context", "str"), FieldSpec("answers", "answers")])

    dedup_key = staticmethod(qa_key)

    def fit_labels(self, train_records: list[dict]) -> None:
        self.allow_null = any(not answer_texts(r) for r in train_records)

    def build_heads(self, hidden_size: int) -> dict:
        """The span head, initialised from the run's seed (so the un-tuned baseline repeats too)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return {"span": SpanHead(hidden_size)}

    # ------------------------------------------------------------ encoding

    def encode(self, record: dict, tok: Any, max_length: int) -> dict:
        return self.encode_split([record], tok, max_length)  # type: ignore[return-value]

    def encode_split(self, records: list[dict], tok: Any, max_length: int) -> Encoded:
        """Several features per record: one per context window."""
        if not records:
            return from_examples([])
        prefixes = tok([question_prefix(r["question"]) for r in records], add_special_tokens=False)["input_ids"]
        contexts = tok([r["context"] for r in records], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        feats: list[dict] = []
        index: list[int] = []
        for i, r in enumerate(records):
            offsets = np.asarray(contexts["offset_mapping"][i], dtype=np.int32).reshape(-1, 2)
            new = self._features(r, prefixes[i], contexts["input_ids"][i], offsets, tok.eos_token_id, max_length)
            feats += new
            index += [i] * len(new)
        return from_examples(feats, index=index)

    def _features(self, r: dict, prefix: list[int], ctx: list[int], offsets: np.ndarray, eos: int,
                  max_length: int) -> list[dict]:
        file, line = where(r)
        if len(prefix) > max_length // 2:
            self.problems.append(Problem("warning", file, line, "question", f"longer than half of data.max_length "
                                         f"({len(prefix)} tokens); only its first {max_length // 2} tokens are kept",
                                         kind="question cut to half of data.max_length"))
            prefix = prefix[: max_length // 2]
        size = max_length - len(prefix) - 1
        rid = len(self.contexts)
        self.contexts.append(r["context"])
        self.questions.append(r["question"])
        self.answers.append(answer_texts(r))
        gold = self._gold_tokens(r, offsets)
        feats = []
        for s, e in windows(len(ctx), size, min(self.stride, size // 2)):
            ids = [*prefix, *ctx[s:e], eos]
            null = len(ids) - 1
            start = end = null
            if gold is not None and s <= gold[0] and gold[1] < e:
                start, end = len(prefix) + gold[0] - s, len(prefix) + gold[1] - s
            feats.append({"input_ids": ids, "rid": rid, "fid": len(self.offsets), "ctx_start": len(prefix),
                          "start": start, "end": end})
            self.offsets.append(offsets[s:e])
        return feats

    def _gold_tokens(self, r: dict, offsets: np.ndarray) -> tuple[int, int] | None:
        """Token span of the first answer (the training target), None for unanswerable."""
        answers = r.get("answers") or {}
        if not answers.get("text") or not len(offsets):
            return None
        start = answers["answer_start"][0]
        return char_span_to_tokens(offsets, start, start + len(answers["text"][0]))

    def encode_problems(self) -> list[Problem]:
        return list(self.problems)

    # ------------------------------------------------------------ model

    def _logits(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Start and end logits, (B, T) each, NEG outside the context tokens and the no-answer slot.

        Token t's start logit is read from the hidden state at t - 1, the state that predicts token t in
        pre-training ("the answer comes next"); its end logit from the state at t.
        """
        hidden = model.hidden(batch["input_ids"], batch["attention_mask"])  # (B, T, C)
        start, end = model.heads["span"](hidden)
        start = F.pad(start[:, :-1], (1, 0), value=NEG)  # (B, T): shifted right by one
        pos = torch.arange(start.shape[1], device=start.device)[None, :]  # (1, T)
        null = batch["attention_mask"].sum(1, keepdim=True) - 1  # (B, 1)
        allowed = (pos >= batch["ctx_start"][:, None]) & (pos <= null)
        return start.float().masked_fill(~allowed, NEG), end.float().masked_fill(~allowed, NEG)

    def loss(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        start, end = self._logits(model, batch)
        return (F.cross_entropy(start, batch["start"]) + F.cross_entropy(end, batch["end"])) / 2

    @torch.no_grad()
    def _candidates(self, model: Any, batch: dict[str, Tensor], kind: str) -> list:
        """Per window: (kind, rid, span score, answer text, no-answer score, answer's character start)."""
        start, end = self._logits(model, batch)
        out = []
        for b in range(start.shape[0]):
            a, null = int(batch["ctx_start"][b]), int(batch["attention_mask"][b].sum()) - 1
            rid, fid = int(batch["rid"][b]), int(batch["fid"][b])
            null_score = float(start[b, null] + end[b, null])
            if null == a:  # an empty context
                out.append((kind, rid, float("-inf"), "", null_score, -1))
                continue
            score, i, j = best_span(start[b, a:null], end[b, a:null])
            text, char_start = self._span(rid, fid, i, j)
            out.append((kind, rid, score, text, null_score, char_start))
        return out

    def _span(self, rid: int, fid: int, i: int, j: int) -> tuple[str, int]:
        """The context characters of window tokens i..j (always an exact substring of the context), their start."""
        offsets, context = self.offsets[fid], self.contexts[rid]
        a, b = int(offsets[i][0]), int(offsets[j][1])
        while a < b and context[a].isspace():
            a += 1
        return context[a:b].rstrip(), a

    def predict(self, model: Any, batch: dict[str, Tensor]) -> list:
        return self._candidates(model, batch, "fine_tuned")

    def zero_shot(self, model: Any, batch: dict[str, Tensor]) -> list:
        """The baseline is the un-tuned (randomly initialised) span head on the pre-trained backbone."""
        return self._candidates(model, batch, "baseline")

    def references(self, batch: dict[str, Tensor]) -> list:
        return [int(r) for r in batch["rid"]]

    def best_answers(self, candidates: list) -> dict[int, tuple[str, float]]:
        """Per record: the best span over its windows, or "" when no-answer scores higher (if allowed)."""
        return {rid: (text, score) for rid, (text, score, _) in self.best_spans(candidates).items()}

    def best_spans(self, candidates: list) -> dict[int, tuple[str, float, int]]:
        """best_answers with each answer's character start in the context (-1 for no answer)."""
        best: dict[int, tuple[float, str, int]] = {}
        null: dict[int, float] = {}
        for _, rid, score, text, null_score, *rest in candidates:  # runs saved before offsets have no start
            if rid not in best or score > best[rid][0]:
                best[rid] = (score, text, rest[0] if rest and text else -1)
            null[rid] = min(null.get(rid, float("inf")), null_score)
        out = {}
        for rid, (score, text, start) in best.items():
            out[rid] = ("", null[rid], -1) if self.allow_null and null[rid] > score else (text, score, start)
        return out

    def clear(self) -> None:
        """Forget the records encoded so far (a server encodes new ones for every request)."""
        self.contexts, self.questions, self.answers, self.offsets, self.problems = [], [], [], [], []

    def metrics(self, predictions: list, references: list) -> dict[str, float]:
        answers = self.best_answers(predictions)
        if predictions:
            kind = predictions[0][0]
            self.outputs[kind].update({rid: text for rid, (text, _) in answers.items()})
        n = max(len(answers), 1)
        em = sum(exact_match(text, self.answers[rid]) for rid, (text, _) in answers.items())
        f1 = sum(token_f1(text, self.answers[rid]) for rid, (text, _) in answers.items())
        return {"exact_match": em / n, "f1": f1 / n}

    # ------------------------------------------------------------ run

    baseline_method = ("the un-tuned span head (random weights) on the pre-trained backbone; report.md also "
                       "gives a text-only baseline")

    def readable(self, value: Any) -> str:
        """A window's candidate -> its text; reference answers joined; "" -> (no answer)."""
        if isinstance(value, tuple):
            value = value[3]
        elif isinstance(value, list):
            value = " / ".join(value)
        elif not isinstance(value, str):  # a record id
            value = " / ".join(self.answers[int(value)])
        return value or "(no answer)"

    def per_record(self, kept: dict[str, dict]) -> None:
        """Per-example predictions (evaluate_task's keep, by split) as one row per record, not per window."""
        for keep in kept.values():
            if not keep.get("rows"):
                continue
            answers = self.best_answers(keep["predictions"])
            first: dict[int, int] = {}
            for row, rid in zip(keep["rows"], keep["references"], strict=True):
                first[rid] = min(first.get(rid, row), row)
            rids = sorted(first, key=first.__getitem__)
            keep.update(rows=[first[r] for r in rids], predictions=[answers[r][0] for r in rids],
                        references=[self.answers[r] for r in rids])

    def info(self) -> dict:
        return {"type": self.type, "name": self.name, "qa_mode": "extractive", "stride": self.stride,
                "allow_null": self.allow_null, "max_answer_tokens": MAX_ANSWER_TOKENS}

    def restore(self, info: dict) -> None:
        self.allow_null = bool(info.get("allow_null", False))

    def sample_sections(self, encoded: dict[str, Encoded], samples: int) -> list[str]:
        """The text-only baseline and sample answers on the test split."""
        data = encoded.get("test")
        if data is None or not len(data):
            return []
        rids = list(dict.fromkeys(np.asarray(data.fields["rid"]).tolist()))
        guesses = [overlap_sentence(self.contexts[r], self.questions[r]) for r in rids]
        em = np.mean([exact_match(g, self.answers[r]) for g, r in zip(guesses, rids, strict=True)])
        f1 = np.mean([token_f1(g, self.answers[r]) for g, r in zip(guesses, rids, strict=True)])
        text = ["## Text-only baseline (test)", "",
                "The pre-trained column above is the un-tuned span head (random weights), which is near zero by "
                "construction. As a second reference, the context sentence that shares most words with the "
                f"question scores exact match {em:.4f}, F1 {f1:.4f} on the same {len(rids)} questions."]
        rows = ["## Sample answers (test)", "", "| question | reference | pre-trained | fine-tuned |", "|---|---|---|---|"]
        for r in rids[:samples]:
            cells = [self.questions[r], " / ".join(self.answers[r]) or "(no answer)",
                     self.outputs["baseline"].get(r, "-"), self.outputs["fine_tuned"].get(r, "-")]
            rows.append("| " + " | ".join(_cell(c) or "(no answer)" for c in cells) + " |")
        return ["\n".join(text), "\n".join(rows)] if samples > 0 else ["\n".join(text)]

    def text_baseline(self, encoded: dict[str, Encoded]) -> dict:
        """exact_match / f1 of the overlap-sentence baseline per evaluation split, for metrics.json."""
        out = {}
        for split in ("validation", "test"):
            data = encoded.get(split)
            if data is None or not len(data):
                continue
            rids = list(dict.fromkeys(np.asarray(data.fields["rid"]).tolist()))
            guesses = {r: overlap_sentence(self.contexts[r], self.questions[r]) for r in rids}
            out[split] = {"exact_match": float(np.mean([exact_match(g, self.answers[r]) for r, g in guesses.items()])),
                          "f1": float(np.mean([token_f1(g, self.answers[r]) for r, g in guesses.items()]))}
        return out


class GenerativeQA(ChatTask):
    """task.type qa, qa_mode generative: "context + question -> answer" trained as a chat reply."""

    type = "qa"

    def __init__(self, cfg: TaskConfig, run: RunConfig | None = None):
        super().__init__(cfg, run)
        self.name = cfg.name or "qa"

    def schema(self) -> Schema:
        return Schema(fields=[FieldSpec("question", "str"), FieldSpec("context", "str", required=False),
                              FieldSpec("answers", "answers")])

    dedup_key = staticmethod(qa_key)

    def messages_of(self, record: dict) -> list[dict]:
        context = record.get("context")
        user = f"Context: {context}\n\nQuestion: {record['question']}" if context else record["question"]
        answers = answer_texts(record)
        return [{"role": "user", "content": user, "weight": 1},
                {"role": "assistant", "content": answers[0] if answers else NO_ANSWER, "weight": 1}]

    def references_of(self, record: dict, messages: list[dict]) -> list[str]:
        return answer_texts(record) or [NO_ANSWER]

    def prompt_of(self, record: dict, messages: list[dict]) -> str:
        return record["question"]

    def metrics(self, predictions: list, references: list) -> dict[str, float]:
        m = super().metrics(predictions, references)
        return {"exact_match": m["exact_match"], "f1": m["token_f1"], "rouge_l": m["rouge_l"], "bleu": m["bleu"]}

    def info(self) -> dict:
        return {**super().info(), "qa_mode": "generative"}


def question_answering(cfg: TaskConfig, run: RunConfig | None = None) -> ExtractiveQA | GenerativeQA:
    """The QA task for task.qa_mode."""
    return GenerativeQA(cfg, run) if cfg.qa_mode == "generative" else ExtractiveQA(cfg, run)
