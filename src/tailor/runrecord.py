"""What a run keeps so that it can be resumed and reproduced: env.json, baseline.json, its registry row."""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import platform
import socket
import sqlite3
import sys
from collections.abc import Callable
from functools import wraps
from importlib import metadata
from pathlib import Path
from typing import Any

from tailor import registry
from tailor.config import RunConfig
from tailor.rundir import CONFIG, ENV, LOCK, META, RunError, is_live, is_run_dir, write_json
from tailor.train.checkpoint import checkpoint_step
from tailor.train.guards import TrainingInterrupted

BASELINE = "baseline.json"
PACKAGES = ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "numpy")
_current: contextvars.ContextVar[Path | None] = contextvars.ContextVar("tailor_run", default=None)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Versions, Python, platform and hardware of this process."""
    import torch

    from tailor import __version__

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"tailor": __version__, **{p: _version(p) for p in PACKAGES}, "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu_name(), "gpu": gpu, "cuda": torch.version.cuda if gpu else None}


def config_hash(cfg: RunConfig) -> str:
    """sha256 of the resolved config, leaving out where the run is written (name, output_dir)."""
    data = cfg.model_dump(mode="json")
    data.pop("name", None)
    data.pop("output_dir", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def write_env(run: Path, cfg: RunConfig, src: Any) -> None:
    """env.json: the reproducibility record (src: the base model's Source); a resumed run adds where it resumed."""
    path = run / ENV
    if path.is_file():
        record = json.loads(path.read_text())
        record.setdefault("resumed_in", []).append({**environment(), "command": sys.argv})
    else:
        base_hash = src.fingerprint()
        record = {**environment(), "seed": cfg.seed, "config_hash": config_hash(cfg),
                  "data_files": "data.json (files: path -> sha256)", "base_model": {"path": cfg.model.path, "hash": base_hash},
                  "command": sys.argv}
    write_json(path, record)


def record_start(run: Path, cfg: RunConfig, lineage: list, files: dict[str, str]) -> None:
    """The run's registry row says `running` in this process (see `recorded` for how it ends)."""
    base = cfg.model.path if cfg.model.arch is None else f"scratch:{cfg.model.arch.family}"
    _safely(registry.started, run, {"task": cfg.task.type, "strategy": cfg.strategy.name, "base_model": base,
                                    "lineage": lineage, "config_hash": config_hash(cfg), "data_hashes": files})
    _current.set(run)


def record_end(run: Path, summary: dict) -> None:
    """Finished, with the final metrics."""
    _safely(registry.ended, run, "finished", {k: summary.get(k) for k in ("metric", "fine_tuned", "baseline", "train")})
    _current.set(None)


def _safely(change: Callable, *args: Any, **kwargs: Any) -> None:
    """A registry change that cannot fail the run: the run directory is the record, the registry its index."""
    try:
        change(*args, **kwargs)
    except sqlite3.Error as e:
        print(f"warning: the run registry was not updated ({e})", file=sys.stderr)


def recorded(fn: Callable) -> Callable:
    """Wraps api.train: if it raises after record_start, the row says failed or interrupted, and why."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _current.set(None)
        try:
            return fn(*args, **kwargs)
        except BaseException as e:
            run = _current.get()
            if run is not None:
                stopped = isinstance(e, TrainingInterrupted | KeyboardInterrupt)
                _safely(registry.ended, run, "interrupted" if stopped else "failed", message=str(e) or type(e).__name__)
            raise
        finally:
            _current.reset(token)

    return wrapper


# ------------------------------------------------------------------ the baseline, scored once


def _encode(value: Any) -> Any:
    """JSON with tuples kept (predictions of some tasks are tuples)."""
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value.tolist() if hasattr(value, "tolist") else value


def _decode(obj: dict) -> Any:
    return tuple(obj["__tuple__"]) if set(obj) == {"__tuple__"} else obj


def save_baseline(run: Path, summary: dict, rows: dict, task: Any) -> None:
    """baseline.json, as soon as the baseline is scored, so that a resumed run need not score it again."""
    outputs = getattr(task, "outputs", {}).get("baseline") if isinstance(getattr(task, "outputs", None), dict) else None
    data = {"baseline_method": summary.get("baseline_method"), "baseline": summary.get("baseline"),
            "rows": _encode(rows), "outputs": sorted(outputs.items()) if outputs else None}
    write_json(run / BASELINE, data)


def load_baseline(run: Path, summary: dict, rows: dict, task: Any) -> bool:
    """Fill `summary`, `rows` (and the task's sample outputs) from baseline.json; False if there is none."""
    path = run / BASELINE
    if not path.is_file():
        return False
    data = json.loads(path.read_text(), object_hook=_decode)
    summary.update(baseline_method=data["baseline_method"], baseline=data["baseline"])
    rows.update(data["rows"])
    if data.get("outputs") and isinstance(getattr(task, "outputs", None), dict):
        task.outputs["baseline"] = dict(data["outputs"])
    return True


# ------------------------------------------------------------------ reopening a run to resume it


def reopen_run(run: Path, files: dict[str, str], split_ids: dict[str, list[str]]) -> Path:
    """Check that `run` can resume on this data (same files, same split) and cut metrics.jsonl back to its checkpoint.

    The caller holds the run (rundir.hold_run), so no live process works in it.
    """
    running = registry.find_run(run.parent, str(run))
    if running is not None and running["status"] == "running" and (running["pid"], running["host"]) != (os.getpid(), socket.gethostname()):
        raise RunError(f"{run} is still running (process {running['pid']} on {running['host']}); stop it first")
    saved = json.loads((run / "data.json").read_text()).get("files", {}) if (run / "data.json").is_file() else {}
    changed = [f for f, h in saved.items() if files.get(f) != h]
    if changed:
        raise RunError(f"cannot resume {run}: the data changed since it started ({', '.join(changed)}: "
                       "different contents); restore the files or start a new run")
    if (run / "split.json").is_file() and json.loads((run / "split.json").read_text()) != split_ids:
        raise RunError(f"cannot resume {run}: its data split no longer matches split.json; start a new run")
    truncate_metrics(run / "metrics.jsonl", checkpoint_step(run / "checkpoints" / "last") or 0)
    return run


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the rows of metrics.jsonl up to `step` (a resumed run writes the rest again); drop a torn last line."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("step", 0) <= step:
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(x + "\n" for x in kept))
    tmp.replace(path)


# ------------------------------------------------------------------ a registry row from the run directory itself


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def row_from_disk(run: Path) -> dict | None:
    """The registry row a run directory's own files imply (rebuilding an unreadable registry); None if not a run."""
    import yaml

    if not is_run_dir(run):
        return None
    try:
        cfg = yaml.safe_load((run / CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError):
        cfg = {}
    model, env, meta = cfg.get("model") or {}, _read_json(run / ENV), _read_json(run / META)
    summary = _read_json(run / "metrics.json")
    finished = bool(summary) and bool(meta)
    live = not finished and is_live(run)
    pid, _, host = ((run / LOCK).read_text().strip().partition(" ") if live else ("", "", ""))
    arch = model.get("arch")
    return {
        "path": str(run.resolve()), "name": run.name,
        "status": "finished" if finished else "running" if live else "interrupted",
        "pid": int(pid) if pid.isdigit() else None, "pid_start": registry.process_start(int(pid)) if pid.isdigit() else None,
        "host": host or None, "task": (cfg.get("task") or {}).get("type"), "strategy": (cfg.get("strategy") or {}).get("name"),
        "base_model": f"scratch:{arch.get('family')}" if isinstance(arch, dict) else model.get("path"),
        "lineage": meta.get("lineage"), "config_hash": env.get("config_hash"),
        "data_hashes": _read_json(run / "data.json").get("files"), "started": (run / CONFIG).stat().st_mtime,
        "ended": (run / "metrics.json").stat().st_mtime if finished else None,
        "metrics": {k: summary.get(k) for k in ("metric", "fine_tuned", "baseline", "train")} if finished else None,
        "message": None if finished or live else "recovered from the run directory when the registry was rebuilt",
        "resumes": len(env.get("resumed_in") or []),
    }
