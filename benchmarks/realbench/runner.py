"""Each side in a fresh spawned process of its own, its output in a log file, the machine's load measured around it."""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from realbench.machine import BusyMeter, peak_memory_mb, wait_until_quiet


def _child(fn: Callable[[dict], dict], spec: dict, conn, log: str) -> None:
    """Child process body: output to the log file, run fn(spec), send its result (or the traceback) back."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        out = fn(spec)
        out["end_peak_mb"] = (
            peak_memory_mb()
        )  # the peak since the side's last reset (training or generation)
    except BaseException:  # noqa: BLE001 - any failure is reported to the parent, which goes on with the next side
        out = {"error": traceback.format_exc()[-4000:]}
    sys.stdout.flush()
    sys.stderr.flush()
    conn.send(out)
    conn.close()


def run_side(
    fn: Callable[[dict], dict], spec: dict, log: Path, settle: float, say: Callable[[str], None]
) -> dict:
    """fn(spec) in a new process; its result with `busy` (load before / after, other processes' CPU) and `log`."""
    wait_until_quiet(settle, say)
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, spec, send, str(log)))
    meter = BusyMeter()
    proc.start()
    send.close()  # the child holds the only write end: recv() ends with EOFError if the child dies
    try:
        result = recv.recv()
    except EOFError:
        result = None
    proc.join()
    busy = meter.stop()
    if result is None:
        result = {
            "error": f"the child process ended without a result (exit code {proc.exitcode}; "
            "-9 is usually the kernel's out-of-memory killer)"
        }
    return result | {"busy": busy.to_json(), "log": str(log)}
