"""Counting what each side feeds its model, the same way on every side, from the batches themselves."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

IGNORE = -100


@dataclass
class TokenCount:
    """Training batches as the model received them.

    real: non-padding positions fed through the model (the attention mask's ones; a padding-free batch has no
    mask and no padding, so all its positions); positions: all positions including padding; trained: next-token
    targets that carry a loss (labels[:, 1:] != -100; without labels, every real position after the first of a
    row), or one per example for a classification batch (labels of shape (B,)).
    """

    batches: int = 0
    rows: int = 0
    real: int = 0
    positions: int = 0
    trained: int = 0

    def add(self, batch: dict) -> None:
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        labels = batch.get("labels", batch.get("label"))
        self.batches += 1
        self.rows += int(ids.shape[0])
        self.positions += int(ids.numel())
        self.real += int(mask.sum()) if mask is not None else int(ids.numel())
        if labels is not None and labels.dim() == 1:
            self.trained += int(labels.shape[0])
        elif labels is not None:
            self.trained += int((labels[:, 1:] != IGNORE).sum())
        elif mask is not None:
            self.trained += int(mask[:, 1:].sum())
        else:
            self.trained += int(ids.shape[-1] - 1)

    def to_json(self) -> dict:
        return asdict(self)


class CountingCollator:
    """Wraps a data collator; counts every batch it makes (training only: reset before, read right after)."""

    def __init__(self, inner, counts: TokenCount):
        self.inner, self.counts = inner, counts

    def __call__(self, features):
        batch = self.inner(features)
        self.counts.add(batch)
        return batch

    def __getattr__(
        self, name
    ):  # Trainer and TRL read attributes of their collator (padding_free, ...)
        if name in ("inner", "counts"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def step_clock():
    """A TrainerCallback timing the training loop: from on_train_begin to the last on_step_end.

    That span holds every batch's loading, collation, forward, backward and optimiser step, and the Trainer's
    own per-step bookkeeping; evaluation and checkpoints are switched off on these sides, so none is in it.
    """
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.start = self.last = 0.0
            self.steps = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.last = time.perf_counter()
            self.steps += 1

        @property
        def seconds(self) -> float:
            return self.last - self.start

    return StepClock()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
