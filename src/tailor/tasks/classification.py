"""Text classification (a head on the last token, or label words) and regression (scores, e.g. 1-5 stars).

Inputs are always the filled-in prompt (`task.prompt`, default 'Text: {text}\\nLabel:'; with pairs
'Text: {text}\\n\\n{text_pair}\\nLabel:'), so the head reads the hidden state of the prompt's last
token and the generative method continues the same prompt with a label word. Label words are
`task.label_words` or the label names, each with a leading space. A label is predicted by the
summed log-likelihood of its word's tokens (not length-normalised: the probability of the whole
word), so a prediction is always one of the labels. The pre-trained baseline scores label words
the same way for both methods (a fresh head is random), with `task.few_shot` demonstrations
prepended; for regression the baseline predicts the training mean.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tailor.config import RunConfig, TaskConfig
from tailor.data.batching import IGNORE, Encoded, from_examples
from tailor.data.check import FieldSpec, Schema
from tailor.data.readers import Problem
from tailor.evaluate.metrics import classification_metrics, regression_metrics
from tailor.models.heads import ClassificationHead
from tailor.tasks.scoring import Prompt, continuation_loss, prepend, score_continuations, task_error

PROMPT = "Text: {text}\nLabel:"
PAIR_PROMPT = "Text: {text}\n\n{text_pair}\nLabel:"
SCORE_PROMPT = "Text: {text}\nScore:"
SCORE_PAIR_PROMPT = "Text: {text}\n\n{text_pair}\nScore:"


def label_name(value: Any) -> str:
    """Labels are compared as text: 1 and "1" are the same label (as the data checks see them)."""
    return str(value)


def sort_labels(names: set[str]) -> list[str]:
    """Whole numbers in numeric order (2 before 10), anything else alphabetically."""
    if all(n.strip().lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def full_length(kept: int, lost: int, max_length: int) -> int:
    """The length token statistics see: an example that lost tokens counts as max_length + what it lost."""
    return max_length + lost if lost > 0 else kept


def dedup_key(record: dict) -> str:
    """What makes two examples the same (for duplicate and leakage checks): the text and its pair."""
    pair = record.get("text_pair")
    return str(record.get("text", "")) + (f"\n\n{pair}" if pair is not None else "")


def _schema(label_kind: Literal["label", "number"], labels: list[str] | None = None) -> Schema:
    return Schema(fields=[FieldSpec("text", "str"), FieldSpec("text_pair", "str", required=False),
                          FieldSpec("label", label_kind)], labels=labels)


def _pick_prompt(cfg: TaskConfig, records: list[dict], single: str, pair: str) -> Prompt:
    """The configured template, or the default for single texts / pairs; a pair must have a place."""
    has_pair = any(r.get("text_pair") is not None for r in records)
    prompt = Prompt.parse(cfg.prompt or (pair if has_pair else single))
    if has_pair and "text_pair" not in prompt.fields:
        raise task_error("task.prompt", f"the data has text_pair but {prompt.template!r} has no {{text_pair}}")
    return prompt


class Classification:
    type = "classification"

    def __init__(self, cfg: TaskConfig, run: RunConfig | None = None):
        self.cfg = cfg
        self.name = cfg.name or "classification"
        self.method = cfg.method
        self.seed = run.seed if run is not None else 0
        self.labels: list[str] = [label_name(x) for x in cfg.labels or []]  # learned in fit_labels if not given
        self.prompt = Prompt.parse(cfg.prompt or PROMPT)
        self.weights: list[float] | None = None
        self.demos: list[dict] = []  # few-shot demonstrations for the baseline
        self.max_length = 0
        self.pad_id = 0
        self._words: list[Tensor] = []  # token ids of each label's word
        self._prefix = torch.zeros(0, dtype=torch.long)
        self._problems: list[Problem] = []

    dedup_key = staticmethod(dedup_key)

    def schema(self) -> Schema:
        return _schema("label", self.labels or None)  # the given labels, or those of a restored run

    def fit_labels(self, train_records: list[dict]) -> None:
        if not self.cfg.labels:
            self.labels = sort_labels({label_name(r["label"]) for r in train_records if r.get("label") is not None})
        self.prompt = _pick_prompt(self.cfg, train_records, PROMPT, PAIR_PROMPT)
        counts = Counter(label_name(r.get("label")) for r in train_records)
        self.weights = class_weights(self.cfg.class_weights, self.labels, counts)
        self.demos = pick_demonstrations(train_records, self.labels, self.cfg.few_shot, self.seed)
        self.label_words()  # validates task.label_words now, before any model loads

    def label_words(self) -> list[str]:
        """Each label's word as the model says it, with a leading space."""
        given = self.cfg.label_words or {}
        unknown = sorted(set(given) - set(self.labels))
        if unknown:
            raise task_error("task.label_words", f"{', '.join(unknown)} not among the labels ({', '.join(self.labels)})")
        words = [given.get(label, label) for label in self.labels]
        return [w if w[:1].isspace() else " " + w for w in words]

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    def _tokens(self, tok: Any, max_length: int) -> None:
        """Label word ids and the few-shot prefix, once the tokenizer is known."""
        self.max_length, self.pad_id = max_length, tok.pad_token_id or 0
        words = self.label_words()
        ids = [tok(w, add_special_tokens=False)["input_ids"] for w in words]
        same = [f"{a!r} and {b!r}" for i, (a, x) in enumerate(zip(words, ids, strict=True))
                for b, y in zip(words[i + 1 :], ids[i + 1 :], strict=True) if x == y]
        if same or not all(ids):
            raise task_error("task.label_words", f"label words must be distinct and not empty ({'; '.join(same)})")
        self._words = [torch.tensor(x) for x in ids]
        self._prefix = torch.tensor(self._demo_ids(tok, max_length), dtype=torch.long)

    def _demo_ids(self, tok: Any, max_length: int) -> list[int]:
        """The demonstrations as one prefix: each prompt with its label word, a blank line between."""
        if not self.demos:
            return []
        # each demonstration gets an equal share of max_length; zero_shot cuts the prefix from the left
        # where a long example leaves less room
        budget = max(max_length // len(self.demos) - max(len(w) for w in self._words) - 2, 4)
        prompts, _ = self.prompt.encode_many(self.demos, tok, budget)
        sep = tok("\n\n", add_special_tokens=False)["input_ids"]
        out: list[int] = []
        for ids, demo in zip(prompts, self.demos, strict=True):
            out += ids + self._words[self.index[label_name(demo["label"])]].tolist() + sep
        return out

    def _features(self, records: list[dict], tok: Any, max_length: int) -> list[dict]:
        self._tokens(tok, max_length)
        reserve = max(len(w) for w in self._words)  # room for a label word after the prompt, for both methods
        prompts, full = self.prompt.encode_many(records, tok, max_length - reserve)
        index, out = self.index, []
        for r, ids, n in zip(records, prompts, full, strict=True):
            y = index.get(label_name(r.get("label")), -1)
            if y < 0:
                self._problems.append(Problem("error", r.get("_file", "<data>"), r.get("_line"), "label",
                                              f"{r.get('label')!r} is not one of the labels ({', '.join(self.labels)})"))
            features = {"input_ids": ids, "label": y, "prompt_length": len(ids)}
            if self.method == "generative":
                word = self._words[max(y, 0)].tolist()
                features |= {"input_ids": ids + word, "labels": [IGNORE] * len(ids) + word}
            features["full_length"] = full_length(len(features["input_ids"]), n - len(ids), max_length)
            out.append(features)
        return out

    def encode(self, record: dict, tok: Any, max_length: int) -> dict:
        return self._features([record], tok, max_length)[0]

    def encode_split(self, records: list[dict], tok: Any, max_length: int) -> Encoded:
        features = [f for i in range(0, len(records), 2000) for f in self._features(records[i : i + 2000], tok, max_length)]
        return from_examples(features, index=range(len(records)))

    def encode_problems(self) -> list[Problem]:
        problems, self._problems = self._problems, []
        return problems

    def build_heads(self, hidden_size: int) -> dict:
        if self.method == "generative":
            return {}
        return {self.name: ClassificationHead(hidden_size, len(self.labels))}

    def _weight_tensor(self, device: torch.device) -> Tensor | None:
        return None if self.weights is None else torch.tensor(self.weights, dtype=torch.float32, device=device)

    def loss(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        weights = self._weight_tensor(batch["input_ids"].device)
        if self.method == "generative":
            return continuation_loss(model, batch, weights, self.cfg.label_smoothing)
        logits = model.heads[self.name](model.pooled(batch["input_ids"], batch["attention_mask"]))  # (B, K)
        return F.cross_entropy(logits.float(), batch["label"], weight=weights, label_smoothing=self.cfg.label_smoothing)

    def _scores(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        """Per label, (B, K): the head's logits, or the label words' log-likelihoods (generative)."""
        if self.method == "generative":
            return self.label_scores(model, batch)
        return model.heads[self.name](model.pooled(batch["input_ids"], batch["attention_mask"]))

    @torch.no_grad()
    def predict(self, model: Any, batch: dict[str, Tensor]) -> list:
        return self._scores(model, batch).argmax(1).tolist()

    @torch.no_grad()
    def probabilities(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        """Each label's probability, (B, K): the softmax of predict's scores (generative: among the labels)."""
        return self._scores(model, batch).float().softmax(-1)

    def label_scores(self, model: Any, batch: dict[str, Tensor], prefix: Tensor | None = None) -> Tensor:
        """Log-likelihood of each label word after each prompt, (B, K)."""
        ids, plen = batch["input_ids"], batch["prompt_length"]
        words = [w.to(ids.device) for w in self._words]
        if prefix is not None and len(prefix):
            ids, plen = prepend(prefix.to(ids.device), ids, plen, self.max_length - max(len(w) for w in words))
        return score_continuations(model, ids, plen, words, self.pad_id)

    @torch.no_grad()
    def zero_shot(self, model: Any, batch: dict[str, Tensor]) -> list:
        return self.label_scores(model, batch, self._prefix).argmax(1).tolist()

    def references(self, batch: dict[str, Tensor]) -> list:
        return batch["label"].tolist()

    def metrics(self, predictions: list, references: list) -> dict:
        return classification_metrics(predictions, references, self.labels)

    def readable(self, prediction: int) -> str | None:
        """A prediction as the label name."""
        return self.labels[prediction] if 0 <= prediction < len(self.labels) else None

    @property
    def baseline_method(self) -> str:
        shots = f"{len(self.demos)}-shot" if self.demos else "zero-shot"
        return f"{shots} label likelihood of the pre-trained model"

    def info(self) -> dict:
        return {"type": self.type, "name": self.name, "method": self.method, "labels": self.labels,
                "label_words": dict(zip(self.labels, self.label_words(), strict=True)),
                "prompt": self.prompt.template, "class_weights": self.weights,
                "few_shot_examples": self.demos, "baseline": self.baseline_method}

    def restore(self, info: dict) -> None:
        """The state fit_labels learned, from a run's tailor.json."""
        self.labels = info["labels"]
        self.prompt = Prompt.parse(info["prompt"])
        self.weights, self.demos = info.get("class_weights"), info.get("few_shot_examples") or []


def class_weights(setting: str | list[float], labels: list[str], counts: Counter) -> list[float] | None:
    """'none' -> None; 'balanced' -> n / (K * count) per class; a list -> itself (one weight per label)."""
    if setting == "none":
        return None
    if setting == "balanced":
        n = sum(counts[label] for label in labels)
        return [n / (len(labels) * max(counts[label], 1)) for label in labels]
    if len(setting) != len(labels):
        raise task_error("task.class_weights", f"{len(setting)} weights for {len(labels)} labels ({', '.join(labels)}); "
                                                "give one per label, in this order")
    return [float(w) for w in setting]


def pick_demonstrations(records: list[dict], labels: list[str], k: int, seed: int) -> list[dict]:
    """k training examples, spread evenly over the labels (round robin), seeded, in shuffled order."""
    if k <= 0:
        return []
    rng = random.Random(seed)
    pools = {label: [r for r in records if label_name(r.get("label")) == label] for label in labels}
    for pool in pools.values():
        rng.shuffle(pool)
    picked: list[dict] = []
    while len(picked) < k and any(pools.values()):
        for label in labels:
            if pools[label] and len(picked) < k:
                picked.append(pools[label].pop())
    rng.shuffle(picked)
    return [{key: r[key] for key in ("text", "text_pair", "label") if r.get(key) is not None} for r in picked]


class Regression:
    type = "regression"

    def __init__(self, cfg: TaskConfig, run: RunConfig | None = None):
        if cfg.method != "head":
            raise task_error("task.method", "regression predicts a number with a head; use method: head")
        self.cfg = cfg
        self.name = cfg.name or "regression"
        self.prompt = Prompt.parse(cfg.prompt or SCORE_PROMPT)
        self.mean, self.std = 0.0, 1.0

    dedup_key = staticmethod(dedup_key)

    def schema(self) -> Schema:
        return _schema("number")

    def fit_labels(self, train_records: list[dict]) -> None:
        """Targets are standardised with the training mean and standard deviation."""
        values = np.array([float(r["label"]) for r in train_records if r.get("label") is not None], dtype=np.float64)
        if len(values):
            self.mean, self.std = float(values.mean()), float(values.std()) or 1.0
        self.prompt = _pick_prompt(self.cfg, train_records, SCORE_PROMPT, SCORE_PAIR_PROMPT)

    def _features(self, records: list[dict], tok: Any, max_length: int) -> list[dict]:
        prompts, full = self.prompt.encode_many(records, tok, max_length)
        return [{"input_ids": ids, "label": float(r["label"]), "prompt_length": len(ids),
                 "full_length": full_length(len(ids), n - len(ids), max_length)}
                for r, ids, n in zip(records, prompts, full, strict=True)]

    def encode(self, record: dict, tok: Any, max_length: int) -> dict:
        return self._features([record], tok, max_length)[0]

    def encode_split(self, records: list[dict], tok: Any, max_length: int) -> Encoded:
        features = [f for i in range(0, len(records), 2000) for f in self._features(records[i : i + 2000], tok, max_length)]
        return from_examples(features, index=range(len(records)))

    def build_heads(self, hidden_size: int) -> dict:
        return {self.name: ClassificationHead(hidden_size, 1)}

    def _outputs(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        return model.heads[self.name](model.pooled(batch["input_ids"], batch["attention_mask"])).squeeze(-1).float()

    def loss(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        target = (batch["label"].float() - self.mean) / self.std
        return F.mse_loss(self._outputs(model, batch), target)

    @torch.no_grad()
    def predict(self, model: Any, batch: dict[str, Tensor]) -> list:
        return (self._outputs(model, batch) * self.std + self.mean).tolist()

    def zero_shot(self, model: Any, batch: dict[str, Tensor]) -> list:
        """An un-tuned regression head means nothing; the baseline predicts the training mean."""
        return [self.mean] * len(batch["input_ids"])

    def references(self, batch: dict[str, Tensor]) -> list:
        return batch["label"].tolist()

    def metrics(self, predictions: list, references: list) -> dict:
        return regression_metrics(predictions, references)

    def readable(self, prediction: float) -> float:
        return round(float(prediction), 4)

    baseline_method = "the training mean (an un-tuned regression head has no meaning)"

    def info(self) -> dict:
        return {"type": self.type, "name": self.name, "method": "head", "mean": self.mean, "std": self.std,
                "prompt": self.prompt.template, "baseline": self.baseline_method}

    def restore(self, info: dict) -> None:
        self.mean, self.std = info["mean"], info["std"]
        self.prompt = Prompt.parse(info["prompt"])
