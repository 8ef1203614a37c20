"""fit(): the one training loop for every task and strategy; it resumes exactly from its own checkpoints."""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tailor.config import RunConfig, TrainConfig
from tailor.data.batching import Encoded, collate
from tailor.models.heads import TailorModel
from tailor.strategies import apply_strategy, describe, summary_lines
from tailor.tasks.base import Task, batch_order, better, evaluate_task
from tailor.train.checkpoint import (
    checkpoint_step,
    fault_point,
    load_checkpoint,
    load_weights,
    recover_dir,
    save_checkpoint,
    save_weights,
)
from tailor.train.guards import (
    DIVERGE_FACTOR,
    EARLY_STEPS,
    StopRequest,
    TrainingStopped,
    diverged_message,
    interrupted,
    is_oom,
    non_finite_message,
    oom_message,
    weights_finite,
)
from tailor.train.memory import peak_memory_mb, reset_peak_memory
from tailor.train.trackers import log_to_trackers, start_trackers, tracker_args


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
    skipped_steps: int = 0  # non-finite loss or gradients: no optimiser step taken
    resumed_from: list[int] = field(default_factory=list)  # checkpoint steps this run was resumed from
    strategy: dict = field(default_factory=dict)
    last_eval: dict = field(default_factory=dict)


@dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint, so that a resumed run goes on exactly as it would have."""

    step: int = 0  # optimiser steps taken (or skipped)
    epoch: int = 0
    position: int = 0  # batches of this epoch's order already used
    micro: int = 0  # forward passes so far; an optimiser step every grad_accum of them
    running_loss: float = 0.0  # sum of batch losses since the last log line
    running_n: int = 0
    tokens: int = 0  # real (non-padding) tokens trained on
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations without improvement (early stopping)
    stopped_early: bool = False
    last_eval: dict = field(default_factory=dict)
    skipped_steps: int = 0
    bad_in_row: int = 0  # consecutive skipped steps
    first_loss: float | None = None  # the first step's loss, for the divergence guard
    high_in_row: int = 0  # consecutive early steps above DIVERGE_FACTOR x first_loss
    first_by_task: dict[str, float] = field(default_factory=dict)  # multitask: each task's first step loss
    resumed_from: list[int] = field(default_factory=list)


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
    """The optimiser with its fused kernel where torch has one for these parameters (one update kernel over
    every tensor: AdamW over 135M parameters on a 2-core CPU takes 0.09 s a step fused, 0.48 s in the default
    per-tensor loop), else the multi-tensor (foreach) path."""
    fast = _fast_path([p for g in groups for p in g["params"]])
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **fast)
    if cfg.optimizer == "adafactor":
        return torch.optim.Adafactor(groups, lr=cfg.lr, foreach=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, **fast)


def _fast_path(params: list[torch.Tensor]) -> dict:
    """fused=True when every parameter is a floating tensor on one device type torch fuses for; else foreach."""
    kinds = {p.device.type for p in params}
    fusable = len(kinds) == 1 and kinds <= {"cpu", "cuda", "mps", "xpu"} and all(p.is_floating_point() for p in params)
    return {"fused": True} if fusable else {"foreach": True}


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


def make_accelerator(cfg: RunConfig, run_dir: Path) -> Accelerator:
    """An Accelerator for this run. accelerate keeps one state per process and refuses a second precision, so
    the precision part of it is reset first (two runs in one process may differ, e.g. bf16 then fp32)."""
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=precision_of(cfg.train), **tracker_args(cfg, run_dir))


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
    """Train `model` on `train` for `task`, evaluate on `valid`, keep the best weights.

    A complete checkpoint in ckpt_dir/last (a resumed run) is continued exactly. One is saved every
    train.save_every steps, at the end, and on SIGINT / SIGTERM, which then raise TrainingInterrupted.
    """
    tc = cfg.train
    run_dir = ckpt_dir.parent
    set_seed(cfg.seed)
    acc = make_accelerator(cfg, run_dir)
    _set_memory_options(model, tc)
    plan = apply_strategy(model, cfg.strategy, tc.lr, tc.weight_decay, output_layers=getattr(task, "uses_lm_head", False))
    model = plan.model
    info = describe(model, plan)
    _print_strategy(console, cfg, info)
    opt = make_optimizer(plan.groups, tc)
    batches_per_epoch = len(batch_order(task, train, tc.batch_size, cfg.seed, 0))
    steps_per_epoch = max(1, batches_per_epoch // tc.grad_accum)
    total = tc.max_steps or max(1, math.ceil(tc.epochs * steps_per_epoch))
    sched = make_schedule(opt, tc, total)
    model, opt = acc.prepare(model, opt)
    eval_every = tc.eval_every or max(1, total // 4)
    save_every = tc.save_every or min(eval_every, 100)
    last, best_path = ckpt_dir / "last", ckpt_dir / "best"
    trained = [p for g in opt.param_groups for p in g["params"]]
    start_trackers(acc, cfg, run_dir)
    state = _resume(last, acc.unwrap_model(model), opt, sched, console)  # restores every RNG: nothing random after

    def record(row: dict) -> None:
        log(row)
        log_to_trackers(acc, cfg, row)

    reset_peak_memory()
    wall = (time.perf_counter(), state.step)  # this process's start: elapsed and ETA on piped step lines
    progress = _progress(console, total)
    bar = progress.add_task("train", total=total, completed=state.step, loss=float("nan"), lr=0.0, tps=0.0)
    micro_losses: list[torch.Tensor] = []  # this optimiser step's batch losses (always none at a checkpoint)
    step_tasks: set[str] = set()  # multitask: the sub-tasks of this step's batches
    with progress, StopRequest(console) as stop:
        while state.step < total and not state.stopped_early:
            order = batch_order(task, train, tc.batch_size, cfg.seed, state.epoch)  # multitask: one task per batch
            for rows in order[state.position :]:
                state.position += 1
                if plan.on_step is not None:
                    plan.on_step(state.step)
                t0 = time.perf_counter()
                model.train()
                cpu_batch = collate(train, rows, pad_id)
                state.tokens += int(cpu_batch["attention_mask"].sum())  # counted on the host: no device sync
                batch = {k: v.to(acc.device, non_blocking=True) for k, v in cpu_batch.items()}
                micro_losses.append(_forward_backward(acc, task, model, batch, cfg))
                if hasattr(task, "batch_task"):
                    step_tasks.add(task.batch_task(batch))
                state.micro += 1
                if state.micro % tc.grad_accum:
                    state.train_seconds += time.perf_counter() - t0
                    continue
                losses, norm = _clip_and_read(acc, model, micro_losses, tc.max_grad_norm)
                micro_losses.clear()
                finite = [v for v in losses if math.isfinite(v)]
                state.running_loss, state.running_n = state.running_loss + sum(finite), state.running_n + len(finite)
                stepped = _optimizer_step(opt, sched, skip=len(finite) < len(losses) or not math.isfinite(norm))
                state.step += 1
                state.train_seconds += time.perf_counter() - t0
                fault_point("step", state.step)
                if stepped:
                    _watch_divergence(state, cfg, sum(finite) / max(len(finite), 1), step_tasks)
                else:
                    _skip_step(state, cfg, trained, console)
                step_tasks.clear()
                tps = state.tokens / max(state.train_seconds, 1e-9)
                lr_now = opt.param_groups[0]["lr"]
                mean = state.running_loss / state.running_n if state.running_n else float("nan")
                progress.update(bar, completed=state.step, loss=mean, lr=lr_now, tps=tps)
                if state.step % tc.log_every == 0 or state.step == total:
                    row = {"step": state.step, "epoch": round(state.step / steps_per_epoch, 3), "loss": mean,
                           "lr": lr_now, "tokens_per_second": round(tps, 1)}
                    record(row | ({"skipped_steps": state.skipped_steps} if state.skipped_steps else {}))
                    if not console.is_terminal:  # piped: a plain line per log step, with the time so far and to go
                        console.print(f"step {state.step}/{total}  loss {mean:.4f}  lr {lr_now:.2e}  {tps:,.0f} tok/s  "
                                      f"{_timing(wall, state.step, total)}", highlight=False)
                    state.running_loss, state.running_n = 0.0, 0
                if valid is not None and len(valid) and (state.step % eval_every == 0 or state.step == total):
                    _evaluate(task, model, valid, cfg, pad_id, acc, state, record, best_path, console)
                done = state.stopped_early or state.step >= total
                if done or stop.requested or state.step % save_every == 0:
                    _save(last, acc.unwrap_model(model), opt, sched, state, run_dir)
                if stop.signum is not None:
                    raise interrupted(stop.signum, state.step, total, str(run_dir))
                if done:
                    break
            else:  # the epoch's batches are used up
                state.epoch, state.position = state.epoch + 1, 0
    model = acc.unwrap_model(model)
    if tc.report_to:
        acc.end_training()
    if state.best_step is not None and state.best_step != state.step:
        load_weights(model, best_path)
        console.print(f"restored the best weights (step {state.best_step}, {tc.metric} {state.best_metric:.4f})")
    plan.model = model
    return FitResult(
        steps=state.step, epochs=round(state.step / steps_per_epoch, 3), best_step=state.best_step,
        best_metric=state.best_metric, train_seconds=round(state.train_seconds, 2), tokens=state.tokens,
        tokens_per_second=round(state.tokens / max(state.train_seconds, 1e-9), 1), peak_memory_mb=peak_memory_mb(),
        stopped_early=state.stopped_early, skipped_steps=state.skipped_steps, resumed_from=state.resumed_from,
        strategy=info, last_eval=state.last_eval,
    )


def _set_memory_options(model: TailorModel, tc: TrainConfig) -> None:
    """train.weights: bf16 (weights and optimiser state in bf16); train.gradient_checkpointing."""
    if tc.weights == "bf16":
        model.to(torch.bfloat16)
    if tc.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.recomputes = True


def _resume(last: Path, model: TailorModel, opt: torch.optim.Optimizer, sched, console: Console) -> LoopState:
    """The loop state of the last complete checkpoint (weights, optimiser, scheduler, RNG restored); fresh if none."""
    if recover_dir(last) is None:  # after a crash mid-save: the newest complete copy, put back in place
        return LoopState()
    state = LoopState(**load_checkpoint(last, model, opt, sched))
    state.resumed_from.append(state.step)
    console.print(f"resuming from the checkpoint at step {state.step} ({last})", highlight=False)
    return state


def _forward_backward(acc: Accelerator, task: Task, model: TailorModel, batch: dict, cfg: RunConfig) -> torch.Tensor:
    """One batch's loss (detached), back-propagated scaled for accumulation; out of memory -> TrainingStopped.

    A non-finite loss is back-propagated too (no host sync to look at it first): its gradients are not finite,
    so the optimiser step they belong to is skipped and counted (_optimizer_step).
    """
    try:
        with acc.autocast():
            loss = task.loss(model, batch)
        acc.backward(loss / cfg.train.grad_accum)
        return loss.detach().float()
    except Exception as e:
        if is_oom(e):
            raise TrainingStopped(oom_message(cfg, "training")) from None
        raise


def _clip_and_read(acc: Accelerator, model: TailorModel, losses: list[torch.Tensor], max_norm: float | None
                   ) -> tuple[list[float], float]:
    """Clip the gradients (when max_norm) and read the step's batch losses and gradient norm in one transfer."""
    if max_norm:
        norm = acc.clip_grad_norm_(model.parameters(), max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    values = torch.cat([torch.stack(losses), torch.as_tensor(norm, dtype=torch.float32).reshape(1).to(losses[0].device)])
    *batch_losses, total_norm = values.tolist()  # the step's one host synchronisation
    return batch_losses, total_norm


def _optimizer_step(opt: torch.optim.Optimizer, sched, skip: bool) -> bool:
    """Step (or, for a non-finite loss or gradient norm, drop the gradients instead). True if stepped."""
    if not skip:
        opt.step()
        sched.step()
    opt.zero_grad(set_to_none=True)
    return not skip


def _watch_divergence(state: LoopState, cfg: RunConfig, loss: float, tasks: set[str]) -> None:
    """Early on, a loss above DIVERGE_FACTOR x the first step's, two steps in a row, means train.lr is too high.

    Multitask (`tasks` named): sub-task losses have different scales, so a step is held against the first step
    of its own task; a step that mixes tasks (gradient accumulation) is not judged.
    """
    state.bad_in_row = 0
    if state.first_loss is None:
        state.first_loss = loss
        if not tasks:
            return
    first = state.first_loss
    if tasks:
        if len(tasks) > 1:
            return
        name = next(iter(tasks))
        if name not in state.first_by_task:
            state.first_by_task[name] = loss
            return
        first = state.first_by_task[name]
    if state.step > EARLY_STEPS:
        return
    state.high_in_row = state.high_in_row + 1 if loss > DIVERGE_FACTOR * first else 0
    if state.high_in_row >= 2:
        raise TrainingStopped(diverged_message(cfg, state.step, first, loss))


def _skip_step(state: LoopState, cfg: RunConfig, trained: list, console: Console) -> None:
    """Count a step skipped for a non-finite loss or gradient; stop when the weights or K steps in a row are bad."""
    state.skipped_steps += 1
    state.bad_in_row += 1
    console.print(f"[yellow]warning[/] step {state.step}: non-finite loss or gradients; step skipped "
                  f"({state.skipped_steps} so far)", highlight=False)
    if not weights_finite(trained):
        raise TrainingStopped(diverged_message(cfg, state.step, state.first_loss or float("nan"), float("nan")))
    if state.bad_in_row >= cfg.train.max_bad_steps:
        raise TrainingStopped(non_finite_message(cfg, state.step, state.bad_in_row))


def _evaluate(task: Task, model, valid: Encoded, cfg: RunConfig, pad_id: int, acc: Accelerator, state: LoopState,
              record: Callable[[dict], None], best_path: Path, console: Console) -> None:
    """Score the validation split; keep the best weights; decide on early stopping."""
    tc = cfg.train
    try:
        metrics = evaluate_task(task, model, valid, cfg.eval.batch_size, pad_id, acc, limit=cfg.eval.max_examples)
    except Exception as e:
        if is_oom(e):
            raise TrainingStopped(oom_message(cfg, "evaluation")) from None
        raise
    scalar = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    record({"step": state.step, "split": "validation", **scalar})
    state.last_eval = scalar
    value = scalar.get(tc.metric)
    if value is not None and better(tc.metric, value, state.best_metric, tc.early_stopping.min_delta):
        state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
        try:
            save_weights(acc.unwrap_model(model), best_path)
        except OSError as e:
            raise _disk_full(e, best_path, state.step) from None
    else:
        state.bad_evals += 1
    if tc.early_stopping.patience and state.bad_evals >= tc.early_stopping.patience:
        state.stopped_early = True
        console.print(f"early stopping at step {state.step}: {tc.metric} has not improved for {state.bad_evals} evaluations")


def _save(last: Path, model: TailorModel, opt, sched, state: LoopState, run_dir: Path) -> None:
    """Write the checkpoint; on a full disk the previous one stays intact and the run stops, saying so."""
    try:
        save_checkpoint(last, model, opt, sched, asdict(state))
    except OSError as e:
        raise _disk_full(e, last, state.step, run_dir) from None


def _disk_full(e: OSError, path: Path, step: int, run_dir: Path | None = None) -> Exception:
    """TrainingStopped for a full disk (naming the intact previous checkpoint); any other OSError as it is."""
    if e.errno != errno.ENOSPC:
        return e
    previous = checkpoint_step(path.parent / "last")
    kept = f"the previous checkpoint (step {previous}) is intact" if previous is not None else "no earlier checkpoint exists"
    run = run_dir or path.parent.parent
    return TrainingStopped(f"disk full while saving {path} at step {step}; nothing was overwritten and {kept}. "
                           f"Free some disk space, then: tailor resume {run}")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _timing(wall: tuple[float, int], step: int, total: int) -> str:
    """'elapsed 0:01:05  eta 0:03:10' from this process's start time and first step (a resumed run starts later)."""
    elapsed = time.perf_counter() - wall[0]
    done = step - wall[1]
    eta = _clock(elapsed / done * (total - step)) if done > 0 else "?"
    return f"elapsed {_clock(elapsed)}  eta {eta}"


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
    for line in summary_lines(info):
        console.print(f"  {line}", highlight=False)
