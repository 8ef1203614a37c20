"""A run on disk: runs/<name>-<nnn>/, created exclusively so no run overwrites another, and held by one
process at a time (run.lock)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tailor.config import ConfigError

CONFIG = "config.yaml"
LOCK = "run.lock"  # held (flock) by the process working in the run; the kernel releases it when that process ends
META = "tailor.json"  # written when the run has finished: it is then a model others can use
ENV = "env.json"  # the reproducibility record (runrecord.py), written as a run starts
MARKS = (LOCK, ENV, META)  # files only tailor writes in a run directory (older runs: no run.lock)
_held: dict[str, list] = {}  # run directory (resolved) -> [lock file descriptor, depth], for this process


class RunError(Exception):
    """A run cannot be resumed, reproduced or used as asked; the message says why and what to do."""


class RunBusy(RunError):
    """Another live process holds the run's lock."""


def _cannot(output_dir: str | Path, why: str) -> ConfigError:
    return ConfigError("output_dir", [f"output_dir: cannot make run directories in {output_dir} ({why}); "
                                      "set output_dir to a folder you can write to"])


def check_output_dir(output_dir: str | Path) -> None:
    """ConfigError naming output_dir if run directories cannot be made there; nothing is created (a failed start
    leaves nothing behind)."""
    path = Path(output_dir).expanduser().absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise _cannot(output_dir, f"{existing} is not a folder" if existing is not None else "no such place")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _cannot(output_dir, f"{existing} is not writable")


def output_root(output_dir: str | Path) -> Path:
    """The runs folder, created if need be (ConfigError naming output_dir when it cannot be)."""
    check_output_dir(output_dir)
    root = Path(output_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot(output_dir, e.strerror or str(e)) from None
    return root


def create_run_dir(output_dir: str | Path, name: str) -> Path:
    """The next free runs/<name>-<nnn>; mkdir without exist_ok makes the claim atomic."""
    root = output_root(output_dir)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    pattern = re.compile(rf"^{re.escape(safe)}-(\d+)$")
    taken = [int(m.group(1)) for p in root.iterdir() if (m := pattern.match(p.name))]
    n = max(taken, default=0) + 1
    while True:
        path = root / f"{safe}-{n:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
        except OSError as e:
            hint = "shorten name (or output_dir)" if e.errno == errno.ENAMETOOLONG else "check output_dir"
            raise ConfigError("output_dir", [f"cannot create the run directory {path} ({e.strerror}); {hint}"]) from None


def is_run_dir(path: str | Path) -> bool:
    """Is `path` a directory tailor made for a run (not just any folder that holds a config.yaml)?"""
    p = Path(path)
    return (p / CONFIG).is_file() and any((p / m).is_file() for m in MARKS)


def is_live(run: str | Path) -> bool:
    """Does a live process (this one included) hold the run's lock? Reads only: the lock is not taken."""
    lock = Path(run) / LOCK
    if str(Path(run).resolve()) in _held:
        return True
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock, if it was taken


def _holder(run: Path) -> str:
    try:
        pid, _, host = (run / LOCK).read_text().strip().partition(" ")
    except OSError:
        return "another process"
    return f"process {pid} on {host}" if pid else "another process"


@contextmanager
def hold_run(run: str | Path) -> Iterator[None]:
    """Hold `run` for the life of the block: while one process works in a run directory, no other touches it.

    An exclusive flock on RUN/run.lock, taken before anything in the run is read or written; the kernel
    releases it when the process ends, however it ends (kill -9 included), so a dead run is never taken
    for a live one. Re-entrant within a process. RunBusy if another process holds it.
    """
    run = Path(run)
    key = str(run.resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunBusy(f"{run} is still running ({_holder(run)} holds {run / LOCK}); nothing was touched. "
                      f"Wait for it to end, or stop it (Ctrl-C), then: tailor resume {run}") from None
    except OSError as e:  # a file system without locks (some network mounts): go on, and say so
        print(f"warning: {run / LOCK} cannot be locked here ({e.strerror}); make sure no other tailor process "
              f"works in {run} at the same time", file=sys.stderr)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        del _held[key]
        os.close(fd)


def unfinished(run: str | Path) -> str:
    """Why `run` cannot be used as a finished run, and what to do about it."""
    run = Path(run)
    if is_run_dir(run) and not (run / META).is_file():
        if is_live(run):
            return f"{run} is still training (no model yet); wait for it to finish"
        return f"{run} is a run that stopped before it finished (no model yet); finish it with: tailor resume {run}"
    return f"{run} is not a finished run (no {META}); give a run directory such as runs/sentiment-001"


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_default) + "\n")
    tmp.replace(path)


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__dict__"):
        return vars(o)
    return str(o)


class MetricsLog:
    """Append-only metrics.jsonl: one line per logged step."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, row: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(row, default=_default) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
