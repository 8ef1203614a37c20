"""The run registry: <runs folder>/registry.sqlite, one row per run, safe with several tailor processes at once.

WAL journal, a busy timeout and one short transaction per change. A row says `running` only while its
process lives: a `running` row whose process is gone (or whose PID now belongs to a later process) reads
as `interrupted`. The run directories are the record and the registry only their index: an unreadable
registry is moved aside (never deleted) and rebuilt from them (`rebuild`, `tailor runs --rebuild`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
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


def _unreadable(e: Exception) -> bool:
    """A damaged or foreign file ("file is not a database", "malformed"), not a busy or locked database."""
    return isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError)


def _begin(root: Path, write: bool) -> sqlite3.Connection:
    con = sqlite3.connect(root / FILE, timeout=30, isolation_level=None)
    try:
        con.execute("PRAGMA busy_timeout = 30000")
        _wal(con)
        con.row_factory = sqlite3.Row
        con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        con.execute(SCHEMA)
        con.execute("SELECT count(*) FROM runs").fetchone()
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def _db(root: Path, write: bool = True, repair: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction (committed on success), closed afterwards; writers take the lock first.

    An unreadable registry file is moved aside and rebuilt from the run directories first (`repair`).
    """
    root.mkdir(parents=True, exist_ok=True)
    try:
        con = _begin(root, write)
    except sqlite3.DatabaseError as e:
        if not (repair and _unreadable(e)):
            raise
        rebuild(root)
        con = _begin(root, write)
    with closing(con):
        try:
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


def _all_rows(root: Path) -> list[dict]:
    with _db(root, write=False) as con:
        return [_decode(r) for r in con.execute("SELECT * FROM runs ORDER BY started, name")]


def list_runs(root: Path, status: str | None = None, task: str | None = None, name: str | None = None) -> list[dict]:
    """Rows of the registry in `root`, oldest first, filtered by status (as shown), task and a name substring."""
    root = Path(root)
    if not (root / FILE).is_file():
        return []
    try:
        rows = _all_rows(root)
    except sqlite3.DatabaseError as e:  # damaged beyond its first pages: found only by a full read
        if not _unreadable(e):
            raise
        rebuild(root)
        rows = _all_rows(root)
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


# ------------------------------------------------------------------ rebuilding the index from the run directories


@contextmanager
def _rebuilding(root: Path) -> Iterator[None]:
    """One process at a time rebuilds a registry (the others wait, then find it readable)."""
    import fcntl

    fd = os.open(root, os.O_RDONLY | os.O_CLOEXEC)  # a lock on the runs folder itself: no file left behind
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _readable(path: Path) -> bool:
    try:
        with closing(sqlite3.connect(path, timeout=30)) as con:
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
                con.execute("SELECT * FROM runs").fetchall()
        return True
    except sqlite3.DatabaseError as e:
        return not _unreadable(e)


def _move_aside(root: Path) -> Path:
    """registry.sqlite (and its -wal / -shm files) -> registry.sqlite.unreadable-<time>; nothing is deleted."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = root / f"{FILE}.unreadable-{stamp}"
    n = 1
    while aside.exists():
        n += 1
        aside = root / f"{FILE}.unreadable-{stamp}-{n}"
    for suffix in ("", "-wal", "-shm"):
        if (root / (FILE + suffix)).exists():
            (root / (FILE + suffix)).rename(aside.with_name(aside.name + suffix))
    return aside


def rebuild(root: Path) -> dict:
    """Index `root`'s run directories again: rows for runs the registry lacks (all of them, if it was unreadable).

    An unreadable registry is first moved aside (registry.sqlite.unreadable-<time>); returns what was done.
    """
    from tailor.runrecord import (
        row_from_disk,  # the run directory's own files say what the row holds
    )

    root = Path(root)
    with _rebuilding(root):
        aside = _move_aside(root) if (root / FILE).exists() and not _readable(root / FILE) else None
        with _db(root, repair=False) as con:
            known = {r[0] for r in con.execute("SELECT path FROM runs")}
            added = 0
            for run in sorted(p for p in root.iterdir() if p.is_dir()):
                row = row_from_disk(run)
                if row is None or row["path"] in known:
                    continue
                row = {k: json.dumps(v) if k in _JSON else v for k, v in row.items()}
                con.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
                added += 1
    if aside is not None:
        print(f"warning: {root / FILE} could not be read; it was moved to {aside} and the registry rebuilt from "
              f"the run directories ({added} runs)", file=sys.stderr)
    return {"moved_to": str(aside) if aside else None, "added": added}
