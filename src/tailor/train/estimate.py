"""How long training will take: a few timed optimiser steps of the configured model on real batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from accelerate import Accelerator

from tailor.config import RunConfig
from tailor.data.batching import Encoded, bucketed_order, iterate
from tailor.data.summary import estimate_time
from tailor.models.heads import TailorModel
from tailor.models.load import load_backbone, load_tokenizer_for
from tailor.strategies import apply_strategy
from tailor.train.loop import make_optimizer, precision_of, set_seed


@dataclass
class Estimate:
    steps_timed: int
    seconds: float  # wall time of the timed steps
    tokens: int  # real (non-padding) tokens in them
    tokens_per_second: float
    train_tokens_total: int
    duration: str  # e.g. "about 4 min"

    def __str__(self) -> str:
        return (f"estimated training time: {self.duration} ({self.train_tokens_total:,} tokens at "
                f"{self.tokens_per_second:,.0f} tokens/s, measured over {self.steps_timed} training steps "
                "on this machine; evaluation not included)")


def time_training_steps(cfg: RunConfig, task: Any, tok: Any, train: Encoded, steps: int = 3) -> tuple[float, int]:
    """Seconds and real tokens of `steps` optimiser steps (after one untimed warm-up step)."""
    set_seed(cfg.seed)
    _, src = load_tokenizer_for(cfg.model)
    backbone = load_backbone(cfg.model, tok, src)
    model = TailorModel(backbone)
    model.heads.update(task.build_heads(model.hidden_size))
    acc = Accelerator(mixed_precision=precision_of(cfg.train))
    plan = apply_strategy(model, cfg.strategy, cfg.train.lr or 1e-4, cfg.train.weight_decay)
    opt = make_optimizer(plan.groups, cfg.train)
    model, opt = acc.prepare(plan.model, opt)
    model.train()
    order = bucketed_order(train.lengths, cfg.train.batch_size, cfg.seed, 0)
    seconds, tokens = 0.0, 0
    for i, batch in enumerate(iterate(train, (order * (steps + 1))[: steps + 1], tok.pad_token_id)):
        t0 = time.perf_counter()
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        with acc.autocast():
            loss = task.loss(model, batch)
        acc.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i > 0:  # the first step pays for allocation and kernel selection
            seconds += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
    return seconds, tokens


def estimate_training(cfg: RunConfig, task: Any, tok: Any, train: Encoded, stats: dict, steps: int = 3) -> Estimate:
    """Extrapolate the timed steps' real-token throughput to every token training will see."""
    seconds, tokens = time_training_steps(cfg, task, tok, train, steps)
    tps = tokens / seconds if seconds > 0 else 0.0
    total = int(stats.get("train_tokens_total", 0))
    if cfg.train.max_steps:  # a step budget caps the run before the epochs are done
        mean = float(train.lengths.mean()) if len(train) else 0.0
        total = min(total, int(cfg.train.max_steps * cfg.train.batch_size * cfg.train.grad_accum * mean))
    return Estimate(steps, round(seconds, 3), tokens, round(tps, 1), total, estimate_time(total, tps))
