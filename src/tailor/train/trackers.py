"""Optional experiment trackers (TensorBoard, MLflow, W&B) through accelerate; metrics.jsonl stays the record."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tailor.config import ConfigError, RunConfig

PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "wandb": ("wandb",)}


def check_trackers(names: Sequence[str]) -> None:
    """A ConfigError naming the package to install for each tracker in `train.report_to` that is missing."""
    missing = [f"train.report_to: {name!r} needs the {PACKAGES[name][0]} package (pip install {PACKAGES[name][0]})"
               for name in names if not any(importlib.util.find_spec(m) for m in PACKAGES[name])]
    if missing:
        raise ConfigError("train.report_to", missing)


def tracker_args(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Accelerator(...) keywords for the configured trackers; none by default."""
    if not cfg.train.report_to:
        return {}
    check_trackers(cfg.train.report_to)
    return {"log_with": list(cfg.train.report_to), "project_dir": str(run_dir / "logs")}


def flat_config(cfg: RunConfig) -> dict[str, Any]:
    """The config as dotted keys with scalar values (what trackers accept as hyper-parameters)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif isinstance(node, bool | int | float | str):
            out[prefix[:-1]] = node
        elif node is not None:
            out[prefix[:-1]] = str(node)

    walk(cfg.model_dump(mode="json"), "")
    return out


def start_trackers(acc: Any, cfg: RunConfig, run_dir: Path) -> None:
    if cfg.train.report_to:
        acc.init_trackers(run_dir.name, config=flat_config(cfg))


def log_to_trackers(acc: Any, cfg: RunConfig, row: dict) -> None:
    """Numeric values of a metrics row, at its step; eval rows prefixed by their split."""
    if not cfg.train.report_to:
        return
    prefix = f"{row['split']}/" if "split" in row else "train/"
    values = {prefix + k: v for k, v in row.items() if k not in ("step", "split") and isinstance(v, int | float)}
    acc.log(values, step=row["step"])
