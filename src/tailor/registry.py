"""The run registry: <runs folder>/registry.sqlite, one row per run, safe with several tailor processes at once.

WAL journal, a busy timeout and one short transaction per change. A row says `running` only while its
process lives: a `running` row whose process is gone (or whose PID now belongs to a later process) reads
as `interrupted`.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

FILE = "registry.sqlite"
STATUSES = ("running", "finished", "failed", "interrupted")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    path TEXT PRIMARY KEY,      -- the run directory, absolute
    name TEXT NOT NULL,         -- its folder name, e.g. sentiment-003
    status TEXT NOT NULL,       -- running | finished | failed | interrupted
    pid INTEGER,
    pid_start TEXT,             -- the process's start time, so a reused PID is not taken for it
    host TEXT,
    task TEXT,
    strategy TEXT,
    base_model TEXT,
    lineage TEXT,               -- JSON list
    config_hash TEXT,
    data_hashes TEXT,           -- JSON {file: sha256}
    started REAL,
    ended REAL,
    metrics TEXT,               -- JSON: final metrics (fine-tuned and baseline, per split)
    message TEXT,               -- why it failed or stopped
    resumes INTEGER NOT NULL DEFAULT 0
)"""
_JSON = ("lineage", "data_hashes", "metrics")


@contextmanager
def _db(root: Path, write: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction (committed on success), closed afterwards; writers take the lock first."""
    root.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(root / FILE, timeout=30, isolation_level=None)) as con:
        con.execute("PRAGMA busy_timeout = 30000")
        _wal(con)
        con.row_factory = sqlite3.Row
        con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            con.execute(SCHEMA)
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _wal(con: sqlite3.Connection) -> None:
    """Switch the database to WAL once (the mode persists in the file).

    Switching needs an exclusive lock, and SQLite does not call the busy handler for it when another new
    connection is doing the same, so several processes opening a fresh registry at once retry here.
    """
    for attempt in range(200):
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            con.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            time.sleep(0.01 + 0.002 * attempt)
    con.execute("PRAGMA journal_mode = WAL")


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None where that is unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in parentheses may hold spaces


def alive(pid: int | None, started: str | None) -> bool:
    """Is the process that wrote this row still running?"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    now = process_start(pid)
    return started is None or now is None or now == started


def started(run: Path, fields: dict) -> None:
    """Mark `run` running in this process (a new row, or a resumed run's row updated)."""
    run = run.resolve()
    pid = os.getpid()
    row = {"path": str(run), "name": run.name, "status": "running", "pid": pid, "pid_start": process_start(pid),
           "host": socket.gethostname(), "started": time.time(), "ended": None, "message": None, **fields}
    row = {k: json.dumps(v) if k in _JSON else v for k, v in row.items()}
    with _db(run.parent) as con:
        exists = con.execute("SELECT started FROM runs WHERE path = ?", (str(run),)).fetchone()
        if exists is None:
            con.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
            return
        row.pop("started")
        sets = ", ".join(f"{k} = ?" for k in row)
        con.execute(f"UPDATE runs SET {sets}, resumes = resumes + 1 WHERE path = ?", [*row.values(), str(run)])


def ended(run: Path, status: str, metrics: dict | None = None, message: str | None = None) -> None:
    """Record how `run` ended: finished (with its final metrics), failed or interrupted (with why)."""
    run = run.resolve()
    with _db(run.parent) as con:
        con.execute("UPDATE runs SET status = ?, ended = ?, metrics = COALESCE(?, metrics), message = ? WHERE path = ?",
                    (status, time.time(), json.dumps(metrics) if metrics is not None else None, message, str(run)))


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    for k in _JSON:
        out[k] = json.loads(out[k]) if out.get(k) else None
    if out["status"] == "running" and out["host"] == socket.gethostname() and not alive(out["pid"], out["pid_start"]):
        out["status"] = "interrupted"
        out["message"] = out["message"] or f"process {out['pid']} is gone (killed, or the machine stopped)"
    return out


def list_runs(root: Path, status: str | None = None, task: str | None = None, name: str | None = None) -> list[dict]:
    """Rows of the registry in `root`, oldest first, filtered by status (as shown), task and a name substring."""
    if not (Path(root) / FILE).is_file():
        return []
    with _db(Path(root), write=False) as con:
        rows = [_decode(r) for r in con.execute("SELECT * FROM runs ORDER BY started, name")]
    return [r for r in rows if (status is None or r["status"] == status) and (task is None or r["task"] == task)
            and (name is None or name.lower() in r["name"].lower())]


def find_run(root: Path, ref: str) -> dict | None:
    """The row for a run given by folder name (e.g. lm-003) or path; None when the registry has none."""
    path = Path(ref)
    candidates = list_runs(path.resolve().parent if path.is_dir() else Path(root))
    for r in candidates:
        if r["name"] == ref or r["path"] == str(path.resolve()):
            return r
    return None
