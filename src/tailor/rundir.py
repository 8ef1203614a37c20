"""A run on disk: runs/<name>-<nnn>/, created exclusively so no run overwrites another."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def create_run_dir(output_dir: str | Path, name: str) -> Path:
    """The next free runs/<name>-<nnn>; mkdir without exist_ok makes the claim atomic."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
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
