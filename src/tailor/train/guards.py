"""What stops a run cleanly: signals, non-finite steps, divergence, out-of-memory; each with a message to act on."""

from __future__ import annotations

import math
import signal
import threading
from types import FrameType
from typing import Any

import torch
from rich.console import Console

from tailor.config import RunConfig

EARLY_STEPS = 20  # divergence is watched over the first optimiser steps
DIVERGE_FACTOR = 3.0  # ... as a loss above this multiple of the first step's loss


class TrainingStopped(Exception):
    """Training cannot usefully go on (diverged, out of memory, only non-finite steps); says what to change."""


class TrainingInterrupted(Exception):
    """Stopped by SIGINT / SIGTERM after a checkpoint was saved; exit status 128 + the signal number."""

    def __init__(self, signum: int, message: str):
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(message)


class StopRequest:
    """While active: SIGINT / SIGTERM only ask the loop to stop after the current step; a second one stops at once."""

    def __init__(self, console: Console):
        self.console = console
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # asked twice: stop now, without a checkpoint
            self.__exit__()
            raise KeyboardInterrupt
        self.signum = signum
        self.console.print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                           "(send it again to stop at once)", highlight=False)

    @property
    def requested(self) -> bool:
        return self.signum is not None


def interrupted(signum: int, step: int, total: int, run: str) -> TrainingInterrupted:
    """The exception (and message) for a run stopped by a signal after its checkpoint was saved."""
    name = signal.Signals(signum).name
    return TrainingInterrupted(signum, f"interrupted by {name} at step {step} of {total}; saved a checkpoint.\n"
                                       f"Resume with: tailor resume {run}")


def is_oom(exc: BaseException) -> bool:
    """Out of memory on the GPU or in the host allocator."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def oom_message(cfg: RunConfig, phase: str) -> str:
    """What to change when a step runs out of memory: smaller batches, the same examples per optimiser step."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    tc = cfg.train
    if phase == "evaluation":
        return (f"out of memory during evaluation at eval.batch_size={cfg.eval.batch_size}; "
                f"try eval.batch_size={max(1, cfg.eval.batch_size // 2)}")
    head = f"out of memory in a training step at train.batch_size={tc.batch_size}, train.grad_accum={tc.grad_accum}"
    effective = getattr(tc, "effective_batch_size", None)
    if tc.batch_size > 1 and effective:
        return f"{head}; try train.batch_size={tc.batch_size // 2} (train.effective_batch_size={effective} stays)"
    if tc.batch_size > 1:
        half, accum = tc.batch_size // 2, tc.grad_accum * 2
        return (f"{head}; try train.batch_size={half} train.grad_accum={accum} "
                f"({half * accum} examples per optimiser step, as now {tc.batch_size * tc.grad_accum})")
    return (f"{head}; already one example per batch: try a shorter data.max_length, strategy.name=lora, "
            "or train.precision=bf16 where the hardware has it")


def diverged_message(cfg: RunConfig, step: int, first: float, now: float) -> str:
    lr = cfg.train.lr or 0.0
    seen = f"the loss went from {first:.4g} to {now:.4g}" if math.isfinite(now) else "the weights became non-finite"
    return (f"training diverged at step {step}: {seen}. train.lr={lr:g} is too high for this model and batch size; "
            f"try train.lr={lr / 10:g} (or smaller), a longer train.warmup, or a larger train.batch_size")


def non_finite_message(cfg: RunConfig, step: int, count: int) -> str:
    return (f"stopped at step {step}: {count} steps in a row had a non-finite loss or gradients "
            f"(train.max_bad_steps={cfg.train.max_bad_steps}); each was skipped. Check the data for empty or "
            f"broken examples, lower train.lr (now {cfg.train.lr:g}), or use train.precision=fp32")


def weights_finite(params: list[torch.nn.Parameter]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)
