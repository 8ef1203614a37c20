"""Weights on disk: written to a temporary directory, then renamed into place (never half-written)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from safetensors.torch import load_model, save_model
from torch import nn

WEIGHTS = "weights.safetensors"


def replace_dir(tmp: Path, final: Path) -> None:
    """Atomically put `tmp` where `final` is; the old `final` stays until the new one is complete."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def save_weights(model: nn.Module, path: Path) -> None:
    """All of `model`'s parameters and buffers (shared tensors once) in path/weights.safetensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / WEIGHTS))
    with open(tmp / WEIGHTS, "rb") as fh:
        os.fsync(fh.fileno())
    replace_dir(tmp, path)


def load_weights(model: nn.Module, path: Path) -> None:
    load_model(model, str(path / WEIGHTS))
