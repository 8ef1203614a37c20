"""Checkpoints on disk: atomic, durable, detectable when half-written; exact resume of a training run.

A directory is built under `<name>.tmp`, every file fsynced, a COMPLETE manifest (file sizes) written
last, then swapped in for `<name>` by renames; the previous `<name>` is kept (as `<name>.old`) until the
new one is in place. Killed at any point, the disk holds at least one complete copy, and
`recover_dir` puts the newest complete one back at `<name>`.

A training checkpoint (`checkpoints/last/`) holds:
    weights.safetensors    the parameters the optimiser updates (all of them, or adapters + task layers)
    optimizer.safetensors  the optimiser's per-parameter tensors
    state.json             loop state (step, epoch, position in the epoch's batch order, counters,
                           early stopping), optimiser groups and scalars, scheduler, every RNG state
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
COMPLETE = "COMPLETE"


def fault_point(point: str, step: int | None) -> None:
    """Test hook: TAILOR_TEST_SIGNAL=KILL@save:6 sends this process SIGKILL at that point (step 6)."""
    spec = os.environ.get("TAILOR_TEST_SIGNAL")
    if spec and "@" in spec and spec.split("@", 1)[1] == f"{point}:{step}":
        os.kill(os.getpid(), getattr(signal, "SIG" + spec.split("@", 1)[0]))


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_complete(path: Path) -> bool:
    """True when `path` holds a whole checkpoint: its COMPLETE manifest and every file at the listed size."""
    try:
        manifest = json.loads((path / COMPLETE).read_text())
        return all((path / name).stat().st_size == size for name, size in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def replace_dir(tmp: Path, final: Path, step: int | None = None) -> None:
    """Put the complete `tmp` where `final` is; the old `final` stays (as .old) until the new one is in place."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    fault_point("swap", step)
    tmp.rename(final)
    _fsync(final.parent)
    if old.exists():
        shutil.rmtree(old)


def write_dir(final: Path, write: Callable[[Path], None], step: int | None = None) -> None:
    """Build a directory with `write(tmp)`, make it durable and COMPLETE, then swap it in for `final`.

    On any error (a full disk included) the temporary directory is removed and `final` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        files = sorted(p for p in tmp.iterdir() if p.is_file())
        for p in files:
            _fsync(p)
        fault_point("save", step)
        manifest = {"step": step, "files": {p.name: p.stat().st_size for p in files}}
        (tmp / COMPLETE).write_text(json.dumps(manifest))
        _fsync(tmp / COMPLETE)
        _fsync(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final, step)


def recover_dir(final: Path) -> Path | None:
    """After a crash: the newest complete copy of `final` (it, .tmp or .old) moved to `final`; None if none."""
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    if not is_complete(final):
        source = newest_complete(final)
        if source is None:
            return None
        shutil.rmtree(final, ignore_errors=True)
        source.rename(final)
        _fsync(final.parent)
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def save_weights(model: nn.Module, path: Path) -> None:
    """All of `model`'s parameters and buffers (shared tensors once) in path/weights.safetensors, atomically."""
    write_dir(path, lambda tmp: save_model(model, str(tmp / WEIGHTS)))


def load_weights(model: nn.Module, path: Path) -> None:
    load_model(model, str(path / WEIGHTS))


# ------------------------------------------------------------------ training checkpoints


def _trained(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, nn.Parameter]:
    """The parameters the optimiser updates, by name (frozen ones come back from the base model)."""
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    return {n: p for n, p in model.named_parameters() if id(p) in in_opt}


def rng_state() -> dict:
    """Python, NumPy, torch CPU (and CUDA) random states, as JSON-able values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state = {"python": random.getstate(), "numpy": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _split_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimiser's state_dict as tensors (for safetensors) and everything else (for JSON)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for index, slots in sd["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in [*tensors.items(), *rest["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler, loop_state: dict) -> None:
    """Everything an exact resume needs, written atomically to `path` (see the module docstring)."""
    weights = {n: p.detach().contiguous().cpu() for n, p in _trained(model, opt).items()}
    opt_tensors, opt_rest = _split_optimizer(opt)
    state = {"loop": loop_state, "optimizer": opt_rest, "scheduler": sched.state_dict(), "rng": rng_state()}

    def write(tmp: Path) -> None:
        save_file(weights, str(tmp / WEIGHTS))
        save_file(opt_tensors, str(tmp / OPTIMIZER))
        (tmp / STATE).write_text(json.dumps(state))

    write_dir(path, write, loop_state.get("step"))


def newest_complete(final: Path) -> Path | None:
    """The copy that `recover_dir` would put at `final` (it, .tmp or .old), or None; nothing is moved."""
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    return next((p for p in (final, tmp, old) if is_complete(p)), None)


def checkpoint_step(path: Path) -> int | None:
    """The step of the newest complete checkpoint at `path` (or its .tmp / .old copy after a crash), or None.

    It only reads: a live run may be writing there. The process that holds the run recovers (recover_dir).
    """
    found = newest_complete(path)
    if found is None:
        return None
    return json.loads((found / STATE).read_text())["loop"]["step"]


def load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler) -> dict:
    """Restore weights, optimiser, scheduler and RNG states from `path`; returns the loop state."""
    state = json.loads((path / STATE).read_text())
    params = _trained(model, opt)
    weights = load_file(str(path / WEIGHTS))
    missing = sorted(set(params) ^ set(weights))
    if missing:
        raise ValueError(f"checkpoint {path} does not match the model (differs in {', '.join(missing[:3])} ...)")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name])
    opt.load_state_dict(_join_optimizer(load_file(str(path / OPTIMIZER)), state["optimizer"]))
    sched.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state["loop"]
