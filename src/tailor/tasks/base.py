"""The Task protocol: data format + head + loss + predictions + metrics, so the loop never asks which task."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from tailor.data.batching import Encoded, bucketed_order, from_examples, iterate, sequential_order
from tailor.data.check import Schema

LOWER_IS_BETTER = {"loss", "perplexity", "bits_per_token", "mse", "rmse", "mae"}


class Task(Protocol):
    name: str
    type: str

    def schema(self) -> Schema:
        """Fields each record must have, for the data checks."""

    def fit_labels(self, train_records: list[dict]) -> None:
        """Learn what the task needs from the training records (label set...); may be a no-op."""

    def encode(self, record: dict, tok: Any, max_length: int) -> dict:
        """One record -> features: input_ids, labels?, scalar fields."""

    def build_heads(self, hidden_size: int) -> dict[str, nn.Module]:
        """Task layers to add to the backbone (empty for generative tasks)."""

    def loss(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        """Mean training loss of a batch."""

    def predict(self, model: Any, batch: dict[str, Tensor]) -> list:
        """One prediction per example (or per batch, for LM statistics)."""

    def references(self, batch: dict[str, Tensor]) -> list:
        """The gold answers matching predict()'s output."""

    def metrics(self, predictions: list, references: list) -> dict[str, float]:
        """Aggregate metrics; may include non-float extras (per_class, confusion)."""

    def zero_shot(self, model: Any, batch: dict[str, Tensor]) -> list:
        """How the un-tuned pre-trained model is scored on the same batch."""

    def info(self) -> dict:
        """What must be saved with the run to use it later (labels, templates...)."""


def encode_split(task: Task, records: list[dict], tok: Any, max_length: int) -> Encoded:
    """Encode records with the task (tasks that pack or window override by defining encode_split)."""
    custom = getattr(task, "encode_split", None)
    if custom is not None:
        return custom(records, tok, max_length)
    return from_examples((task.encode(r, tok, max_length) for r in records), index=range(len(records)))


def split_units(task: Task, records: list[dict], tok: Any, max_length: int) -> list[dict]:
    """The units tailor's own train / validation / test split deals out: the records themselves, unless the task
    says otherwise (language modelling cuts very long documents into pieces of tokens)."""
    custom = getattr(task, "split_units", None)
    return custom(records, tok, max_length) if custom is not None else records


_on_batch: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar("eval_progress", default=None)


@contextlib.contextmanager
def eval_progress(advance: Callable[[int], None]) -> Iterator[None]:
    """Within the block, evaluate_task calls advance(n) after each batch of n examples (a progress display)."""
    token = _on_batch.set(advance)
    try:
        yield
    finally:
        _on_batch.reset(token)


def batch_order(task: Task, data: Encoded, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch's training batches: the task's own order if it has one (multitask: one task per batch),
    else length-bucketed; either way a function of seed and epoch only, so a resumed run finds its place."""
    custom = getattr(task, "train_order", None)
    if custom is not None:
        return custom(data, batch_size, seed, epoch)
    return bucketed_order(data.lengths, batch_size, seed, epoch)


def better(metric: str, new: float, old: float | None, min_delta: float = 0.0) -> bool:
    """Is `new` an improvement on `old` for this metric?"""
    if old is None:
        return True
    if metric.split("/")[-1] in LOWER_IS_BETTER:
        return new < old - min_delta
    return new > old + min_delta


@torch.no_grad()
def evaluate_task(task: Task, model: Any, data: Encoded, batch_size: int, pad_id: int, acc: Any = None,
                  limit: int | None = None, zero_shot: bool = False, keep: dict | None = None) -> dict:
    """Metrics of `task` on `data`; predictions are kept (one small item each), logits never are.

    With `keep` (a dict), it also receives `rows` (each example's row in `data`, in prediction order),
    `predictions` and `references`, for per-example reports.
    """
    custom = getattr(task, "evaluate", None)  # multitask: each sub-task on its own examples
    if custom is not None:
        return custom(model, data, batch_size, pad_id, acc, limit=limit, zero_shot=zero_shot, keep=keep)
    model.eval()
    lengths = data.lengths if limit is None else data.lengths[:limit]
    predictions: list = []
    references: list = []
    rows: list[int] = []
    device = acc.device if acc is not None else next(model.parameters()).device
    autocast = acc.autocast() if acc is not None else contextlib.nullcontext()
    with autocast:
        for batch in iterate(data, sequential_order(lengths, batch_size), pad_id):
            batch = {k: v.to(device) for k, v in batch.items()}
            predictions += (task.zero_shot if zero_shot else task.predict)(model, batch)
            references += task.references(batch)
            if keep is not None:
                rows += batch["row"].tolist()
            if (advance := _on_batch.get()) is not None:
                advance(int(batch["input_ids"].shape[0]))
    if keep is not None:
        keep.update(rows=rows, predictions=predictions, references=references)
    return task.metrics(predictions, references)
