"""fit(): the one training loop for every task and strategy."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tailor.config import RunConfig, TrainConfig
from tailor.data.batching import Encoded, bucketed_order
from tailor.data.batching import iterate as iterate_batches
from tailor.models.heads import TailorModel
from tailor.strategies import apply_strategy, describe
from tailor.tasks.base import Task, better, evaluate_task
from tailor.train.checkpoint import load_weights, save_weights
from tailor.train.memory import peak_memory_mb, reset_peak_memory


@dataclass
class FitResult:
    steps: int = 0
    epochs: float = 0.0
    best_step: int | None = None
    best_metric: float | None = None
    train_seconds: float = 0.0
    tokens: int = 0
    tokens_per_second: float = 0.0
    peak_memory_mb: float = 0.0
    stopped_early: bool = False
    strategy: dict = field(default_factory=dict)
    last_eval: dict = field(default_factory=dict)


def precision_of(cfg: TrainConfig) -> str:
    """'bf16' where the hardware runs it fast (AVX-512 BF16 / AMX CPUs, bf16 GPUs), else 'no'."""
    if cfg.precision == "fp32":
        return "no"
    if cfg.precision == "bf16":
        return "bf16"
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "no"
    return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "no"


def make_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adafactor":
        return torch.optim.Adafactor(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up (fraction or step count), then linear / cosine decay to zero, or constant."""
    warm = int(cfg.warmup * total) if cfg.warmup < 1 else int(cfg.warmup)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1 - progress)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def set_seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(
    model: TailorModel,
    task: Task,
    train: Encoded,
    valid: Encoded | None,
    cfg: RunConfig,
    pad_id: int,
    log: Callable[[dict], None],
    ckpt_dir: Path,
    console: Console,
) -> FitResult:
    """Train `model` on `train` for `task`, evaluate on `valid`, keep the best weights."""
    tc = cfg.train
    set_seed(cfg.seed)
    acc = Accelerator(mixed_precision=precision_of(tc))
    plan = apply_strategy(model, cfg.strategy, tc.lr, tc.weight_decay)
    model = plan.model
    info = describe(model, plan)
    _print_strategy(console, cfg, info)
    opt = make_optimizer(plan.groups, tc)
    batches_per_epoch = math.ceil(len(train) / tc.batch_size)
    steps_per_epoch = max(1, batches_per_epoch // tc.grad_accum)
    total = tc.max_steps or max(1, math.ceil(tc.epochs * steps_per_epoch))
    sched = make_schedule(opt, tc, total)
    model, opt = acc.prepare(model, opt)
    eval_every = tc.eval_every or max(1, total // 4)
    result = FitResult(strategy=info)
    best_path = ckpt_dir / "best"
    reset_peak_memory()
    bad_evals, step, micro, epoch = 0, 0, 0, 0
    running_loss, running_n = 0.0, 0
    t_train = 0.0
    progress = _progress(console, total)
    task_label = progress.add_task("train", total=total, loss=float("nan"), lr=0.0, tps=0.0)
    with progress:
        while step < total:
            order = bucketed_order(train.lengths, tc.batch_size, cfg.seed, epoch)
            for batch in iterate_batches(train, order, pad_id):
                if plan.on_step is not None:
                    plan.on_step(step)
                t0 = time.perf_counter()
                model.train()
                batch = {k: v.to(acc.device) for k, v in batch.items()}
                with acc.autocast():
                    loss = task.loss(model, batch)
                acc.backward(loss / tc.grad_accum)
                result.tokens += int(batch["attention_mask"].sum())
                running_loss += float(loss.detach())
                running_n += 1
                micro += 1
                if micro % tc.grad_accum:
                    t_train += time.perf_counter() - t0
                    continue
                if tc.max_grad_norm:
                    acc.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                t_train += time.perf_counter() - t0
                tps = result.tokens / max(t_train, 1e-9)
                lr_now = opt.param_groups[0]["lr"]
                progress.update(task_label, completed=step, loss=running_loss / running_n, lr=lr_now, tps=tps)
                if step % tc.log_every == 0 or step == total:
                    log({"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": running_loss / running_n,
                         "lr": lr_now, "tokens_per_second": round(tps, 1)})
                    if not console.is_terminal:
                        console.print(f"step {step}/{total}  loss {running_loss / running_n:.4f}  lr {lr_now:.2e}  {tps:,.0f} tok/s")
                    running_loss, running_n = 0.0, 0
                if valid is not None and len(valid) and (step % eval_every == 0 or step == total):
                    metrics = evaluate_task(task, model, valid, cfg.eval.batch_size, pad_id, acc, limit=cfg.eval.max_examples)
                    scalar = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
                    log({"step": step, "split": "validation", **scalar})
                    result.last_eval = scalar
                    value = scalar.get(tc.metric)
                    if value is not None and better(tc.metric, value, result.best_metric, tc.early_stopping.min_delta):
                        result.best_metric, result.best_step, bad_evals = value, step, 0
                        save_weights(acc.unwrap_model(model), best_path)
                    else:
                        bad_evals += 1
                    if tc.early_stopping.patience and bad_evals >= tc.early_stopping.patience:
                        result.stopped_early = True
                        console.print(f"early stopping at step {step}: {tc.metric} has not improved for {bad_evals} evaluations")
                        break
                if tc.save_every and step % tc.save_every == 0:
                    save_weights(acc.unwrap_model(model), ckpt_dir / "last")
                if step >= total:
                    break
            epoch += 1
            if result.stopped_early:
                break
    model = acc.unwrap_model(model)
    save_weights(model, ckpt_dir / "last")
    if result.best_step is not None and result.best_step != step:
        load_weights(model, best_path)
        console.print(f"restored the best weights (step {result.best_step}, {tc.metric} {result.best_metric:.4f})")
    result.steps, result.epochs = step, round(step / steps_per_epoch, 3)
    result.train_seconds = round(t_train, 2)
    result.tokens_per_second = round(result.tokens / max(t_train, 1e-9), 1)
    result.peak_memory_mb = peak_memory_mb()
    plan.model = model
    return result


def _progress(console: Console, total: int) -> Progress:
    return Progress(
        TextColumn("[bold]train[/]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("lr {task.fields[lr]:.2e}"),
        TextColumn("{task.fields[tps]:,.0f} tok/s"), TimeRemainingColumn(),
        console=console, disable=not console.is_terminal, transient=False,
    )


def _print_strategy(console: Console, cfg: RunConfig, info: dict) -> None:
    pct = 100 * info["trainable"] / max(info["total"], 1)
    console.print(f"strategy [bold]{cfg.strategy.name}[/]: {info['trainable']:,} of {info['total']:,} parameters train ({pct:.2f}%)")
    for g in info["groups"]:
        console.print(f"  {g['name']:<28} {g['params']:>12,} params  lr {g['lr']:.2e}  wd {g['weight_decay']}")
