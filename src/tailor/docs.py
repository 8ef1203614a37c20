"""Writes docs/config.md, the reference of every config key, from the pydantic models."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tailor.config import RunConfig


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = f.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if sub is not None and key != "task.tasks":
            rows += _rows(sub, key + ".")
            continue
        default = f.get_default(call_default_factory=True)
        kind = (str(ann) if "|" in str(ann) else getattr(ann, "__name__", str(ann))).replace("typing.", "").replace("tailor.config.", "").replace("|", "\\|")
        rows.append(f"| `{key}` | {kind} | `{default!r}` | {f.description or ''} |")
    return rows


def config_reference() -> str:
    head = ["# Config reference", "", "Every key of a run config (`tailor train CONFIG [key=value ...]`).",
            "Per-task defaults fill `train.lr` and `train.metric` when they are left empty.", "",
            "| key | type | default | meaning |", "|---|---|---|---|"]
    return "\n".join(head + _rows(RunConfig, "")) + "\n"


if __name__ == "__main__":
    Path("docs").mkdir(exist_ok=True)
    Path("docs/config.md").write_text(config_reference())
