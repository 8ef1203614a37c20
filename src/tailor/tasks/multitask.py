"""Multitask learning: one shared backbone, one head per sub-task, one sub-task per batch.

`MultiTask` implements the Task protocol by wrapping the sub-tasks, so fit() stays one loop. Its
encoded data is every sub-task's split concatenated (`merge`): tokens and labels in the same flat
arrays, each sub-task's fields under "NAME:field", and a `task` field (the sub-task's position).
`part` gives one sub-task's examples back as views (no copy). `train_order` builds each epoch's
batches per task: as many batches as one pass over all the data, shared out by `task.sampling`
and shuffled, a pure function of seed and epoch, so an interrupted run resumes exactly.
Each sub-task is scored on its own split with its own metrics, named NAME/metric, plus
`multitask_score`: the loss-weighted mean of the sub-tasks' main metrics (MAIN_METRIC; a
lower-is-better one enters as exp(-value), e.g. an LM loss as the mean per-token probability).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import Tensor, nn

from tailor.config import TaskConfig
from tailor.data.batching import IGNORE, Encoded, bucketed_order
from tailor.data.check import Schema
from tailor.tasks.base import LOWER_IS_BETTER, Task, evaluate_task

MAIN_METRIC = {"classification": "macro_f1", "regression": "pearson", "qa": "f1", "chat": "token_f1", "lm": "loss"}
SCORE = "multitask_score"


class TaskChoiceError(Exception):
    """A multitask run used without naming one of its sub-tasks; the message lists them."""


def choose_task(info: dict, name: str | None, run: Any) -> str | None:
    """The sub-task to use, from a run's tailor.json task info; None for a single-task run."""
    if info.get("type") != "multitask":
        if name is not None and name != info.get("name"):
            raise TaskChoiceError(f"{run} is a single-task run (task {info.get('name')!r}); leave out --task")
        return None
    names = ", ".join(info["tasks"])
    if name is None:
        raise TaskChoiceError(f"{run} is a multitask run; pick one of its tasks with --task NAME "
                              f"(Python: task=NAME): {names}")
    if name not in info["tasks"]:
        raise TaskChoiceError(f"{run} has no task {name!r}; its tasks are: {names}")
    return name


def sampling_probabilities(sizes: list[int], sampling: str, temperature: float) -> np.ndarray:
    """Share of batches per task: p_i ∝ n_i (proportional), 1 (uniform) or n_i^(1/T) (temperature)."""
    n = np.asarray(sizes, dtype=np.float64)
    power = {"proportional": 1.0, "uniform": 0.0, "temperature": 1.0 / temperature}[sampling]
    w = np.where(n > 0, n ** power, 0.0)
    return w / w.sum()


def batch_counts(total: int, p: np.ndarray) -> np.ndarray:
    """Whole batch counts near total * p that sum to total (largest remainders round up)."""
    quota = total * p
    counts = np.floor(quota + 1e-9).astype(np.int64)
    short = total - int(counts.sum())
    counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1
    return counts


def task_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, task: int, n: int) -> list[np.ndarray]:
    """n length-bucketed batches of one task: its shuffled passes one after another (a small task repeats)."""
    out: list[np.ndarray] = []
    passes = 0
    while len(out) < n:
        out += bucketed_order(lengths, batch_size, seed, epoch, stream=(task + 1, passes))
        passes += 1
    return out[:n]


class MultiTask:
    """task.type multitask: the sub-tasks of task.tasks, each with its data, head, metrics and loss weight."""

    type = "multitask"

    def __init__(self, cfg: TaskConfig, tasks: dict[str, Task]):
        self.name = cfg.name or "multitask"
        self.tasks = tasks
        self.configs = {sub.name: sub for sub in cfg.tasks}
        self.weights = {sub.name: sub.weight for sub in cfg.tasks}
        self.sampling, self.temperature = cfg.sampling, cfg.temperature
        self.max_lengths: dict[str, int] = {}  # per sub-task, set when its data is encoded
        self.has_labels: dict[str, bool] = {}  # which sub-tasks carry per-token labels (set by merge)
        self.lm_head_tasks: list[str] = []  # sub-tasks whose head is the backbone's LM head (set by build_heads)

    @property
    def names(self) -> list[str]:
        return list(self.tasks)

    @property
    def uses_lm_head(self) -> bool:
        """Some sub-task is generative: with strategy head, the LM head trains as that task's head."""
        return bool(self.lm_head_tasks)

    # ------------------------------------------------------------ data

    def schema(self) -> Schema:
        return Schema(fields=[])  # each sub-task's data is checked with its own schema (data/prepare.py)

    def fit_labels(self, train_records: list[dict]) -> None:
        pass  # each sub-task learns from its own training records

    def encode(self, record: dict, tok: Any, max_length: int) -> dict:
        raise NotImplementedError("multitask data is encoded by each sub-task, then merged (data/prepare.py)")

    def merge(self, parts: dict[str, Encoded]) -> Encoded:
        """One split of every sub-task as one Encoded; fields under NAME:field (0 for the other tasks' rows)."""
        encs = [parts[name] for name in self.names]
        rows = np.concatenate([[0], np.cumsum([len(e) for e in encs])]).astype(np.int64)
        tokens = np.concatenate([[0], np.cumsum([len(e.ids) for e in encs])]).astype(np.int64)
        offsets = np.concatenate([[0]] + [e.offsets[1:] + t for e, t in zip(encs, tokens, strict=False)])
        for name, e in zip(self.names, encs, strict=True):
            self.has_labels[name] = self.has_labels.get(name, False) or e.labels is not None
        labels = None
        if any(e.labels is not None for e in encs):
            labels = np.concatenate([e.labels if e.labels is not None else np.full(len(e.ids), IGNORE, np.int32)
                                     for e in encs])
        fields = {"task": np.repeat(np.arange(len(encs)), np.diff(rows))}
        for i, (name, e) in enumerate(zip(self.names, encs, strict=True)):
            for key, values in e.fields.items():
                column = np.zeros(rows[-1], dtype=values.dtype)
                column[rows[i]: rows[i + 1]] = values
                fields[f"{name}:{key}"] = column
        index = np.concatenate([e.index if e.index is not None else np.arange(len(e)) for e in encs])
        ids = np.concatenate([e.ids for e in encs]) if encs else np.zeros(0, np.int32)
        return Encoded(ids=ids, offsets=offsets.astype(np.int64), labels=labels, fields=fields, index=index)

    def _bounds(self, data: Encoded) -> np.ndarray:
        """Row where each sub-task's examples start, and the end (merge keeps them in task order)."""
        return np.searchsorted(data.fields["task"], np.arange(len(self.tasks) + 1))

    def part(self, data: Encoded, name: str) -> Encoded:
        """One sub-task's examples of merged data, as the sub-task encoded them (views, not copies)."""
        i = self.names.index(name)
        a, b = (int(x) for x in self._bounds(data)[i: i + 2])
        t0, t1 = data.offsets[a], data.offsets[b]
        prefix = f"{name}:"
        return Encoded(ids=data.ids[t0:t1], offsets=data.offsets[a: b + 1] - t0,
                       labels=data.labels[t0:t1] if self.has_labels.get(name) and data.labels is not None else None,
                       fields={k[len(prefix):]: v[a:b] for k, v in data.fields.items() if k.startswith(prefix)},
                       index=None if data.index is None else data.index[a:b])

    def train_order(self, data: Encoded, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
        """One epoch of one-task batches: sum over tasks of ceil(n_i / batch_size), shared by `sampling`."""
        bounds = self._bounds(data)
        sizes = [math.ceil((b - a) / batch_size) for a, b in zip(bounds, bounds[1:], strict=False)]
        if not sum(sizes):
            return []
        counts = batch_counts(sum(sizes), sampling_probabilities(sizes, self.sampling, self.temperature))
        streams = [iter(task_batches(data.lengths[a:b], batch_size, seed, epoch, i, int(n)))
                   for i, (a, b, n) in enumerate(zip(bounds, bounds[1:], counts, strict=False))]
        which = np.random.default_rng([seed, epoch, 0]).permutation(np.repeat(np.arange(len(sizes)), counts))
        return [next(streams[t]) + bounds[t] for t in which]

    # ------------------------------------------------------------ model

    def build_heads(self, hidden_size: int) -> dict[str, nn.Module]:
        """Each sub-task's heads under its name (so two classification tasks never share one)."""
        heads: dict[str, nn.Module] = {}
        self.lm_head_tasks = []
        for name, sub in self.tasks.items():
            own = sub.build_heads(hidden_size)
            if own:
                heads[name] = nn.ModuleDict(own)
            else:
                self.lm_head_tasks.append(name)
        return heads

    def batch_task(self, batch: dict[str, Tensor]) -> str:
        """The sub-task a batch holds (the loop's divergence guard compares each task with itself)."""
        return self.names[int(batch["task"][0])]

    def _split_batch(self, batch: dict[str, Tensor]) -> tuple[str, dict[str, Tensor]]:
        """The batch's sub-task and the batch as that task encoded it (its fields, its labels if any)."""
        name = self.batch_task(batch)
        prefix = f"{name}:"
        own = {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}
        own |= {k: batch[k] for k in ("input_ids", "attention_mask", "row") if k in batch}
        if self.has_labels.get(name) and "labels" in batch:
            own["labels"] = batch["labels"]
        return name, own

    def loss(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        name, own = self._split_batch(batch)
        return self.weights[name] * self.tasks[name].loss(model.for_task(name), own)

    def predict(self, model: Any, batch: dict[str, Tensor]) -> list:
        """(task, prediction) pairs for a one-task batch."""
        name, own = self._split_batch(batch)
        return [(name, p) for p in self.tasks[name].predict(model.for_task(name), own)]

    def zero_shot(self, model: Any, batch: dict[str, Tensor]) -> list:
        name, own = self._split_batch(batch)
        return [(name, p) for p in self.tasks[name].zero_shot(model.for_task(name), own)]

    def references(self, batch: dict[str, Tensor]) -> list:
        name, own = self._split_batch(batch)
        return [(name, r) for r in self.tasks[name].references(own)]

    def metrics(self, predictions: list, references: list) -> dict:
        """Each task's metrics on its own (task, value) pairs, named NAME/metric, and multitask_score."""
        per_task = {}
        for name, sub in self.tasks.items():
            preds = [p for t, p in predictions if t == name]
            if preds:
                per_task[name] = sub.metrics(preds, [r for t, r in references if t == name])
        return self.combine(per_task)

    def evaluate(self, model: Any, data: Encoded, batch_size: int, pad_id: int, acc: Any = None,
                 limit: int | None = None, zero_shot: bool = False, keep: dict | None = None) -> dict:
        """Each sub-task on its own part of `data` (at most `limit` examples each); `keep` gets one entry per task."""
        per_task = {}
        for name, sub in self.tasks.items():
            own = self.part(data, name)
            if len(own):
                kept = keep.setdefault(name, {}) if keep is not None else None
                per_task[name] = evaluate_task(sub, model.for_task(name), own, batch_size, pad_id, acc,
                                               limit=limit, zero_shot=zero_shot, keep=kept)
        return self.combine(per_task)

    def combine(self, per_task: dict[str, dict]) -> dict:
        out = {f"{name}/{k}": v for name, m in per_task.items() for k, v in m.items()}
        score = self.score(per_task)
        return out | ({SCORE: score} if score is not None else {})

    def score(self, per_task: dict[str, dict]) -> float | None:
        """Loss-weighted mean of each task's main metric, every one oriented so that higher is better."""
        total = weight = 0.0
        for name, m in per_task.items():
            metric = MAIN_METRIC[self.tasks[name].type]
            value = m.get(metric)
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue
            total += self.weights[name] * (math.exp(-value) if metric in LOWER_IS_BETTER else value)
            weight += self.weights[name]
        return total / weight if weight else None

    # ------------------------------------------------------------ run

    @property
    def baseline_method(self) -> str:
        return "; ".join(f"{name}: {getattr(sub, 'baseline_method', 'the pre-trained model')}"
                         for name, sub in self.tasks.items())

    def info(self) -> dict:
        tasks = {name: {**sub.info(), "weight": self.weights[name], "max_length": self.max_lengths.get(name),
                        "main_metric": MAIN_METRIC[sub.type]} for name, sub in self.tasks.items()}
        return {"type": self.type, "name": self.name, "sampling": self.sampling, "temperature": self.temperature,
                "tasks": tasks}

    def restore(self, info: dict) -> None:
        for name, sub in self.tasks.items():
            saved = info["tasks"][name]
            self.max_lengths[name] = saved.get("max_length")
            if hasattr(sub, "restore"):
                sub.restore(saved)

    def per_record(self, kept: dict[str, dict]) -> None:
        """Windowed sub-tasks (extractive QA): one row per record in each task's kept predictions."""
        for name, sub in self.tasks.items():
            if hasattr(sub, "per_record"):
                sub.per_record({split: k[name] for split, k in kept.items() if name in k})

    def _parts(self, encoded: dict[str, Encoded], name: str) -> dict[str, Encoded]:
        return {split: self.part(data, name) for split, data in encoded.items()}

    def text_baseline(self, encoded: dict[str, Encoded]) -> dict:
        return {name: sub.text_baseline(self._parts(encoded, name))
                for name, sub in self.tasks.items() if hasattr(sub, "text_baseline")}

    def sample_sections(self, encoded: dict[str, Encoded], samples: int) -> list[str]:
        """The sub-tasks' sample tables, each titled with its task."""
        return [section.replace("## ", f"## {name}: ", 1)
                for name, sub in self.tasks.items() if hasattr(sub, "sample_sections")
                for section in sub.sample_sections(self._parts(encoded, name), samples)]
