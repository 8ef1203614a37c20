"""Writes docs/config.md, the reference of every config key, from the pydantic models (`python -m tailor.docs`)."""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from tailor.config import RunConfig

NESTED_ONCE = (
    "task.tasks",
    "task.data",
)  # sub-tasks repeat task's own keys, a sub-task's data the data section's


def _options(ann: Any) -> tuple[Any, ...]:
    return get_args(ann) if get_origin(ann) in (Union, UnionType) else (ann,)


def _section(ann: Any) -> type[BaseModel] | None:
    """The config section a key holds (also an optional one, like model.arch), or None for a plain value."""
    models = [a for a in _options(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if models else None


def type_name(ann: Any) -> str:
    """A key's type as a reader wants it: the allowed values of a choice spelled out, 'or empty' for None."""
    parts = []
    for a in _options(ann):
        if get_origin(a) is Literal:
            parts.append("one of " + ", ".join(f"`{v}`" for v in get_args(a)))
        elif a is type(None):
            parts.append("empty")
        elif isinstance(a, type) and issubclass(a, BaseModel):
            parts.append("section")
        elif get_origin(a) in (list, dict):
            args = [type_name(x) for x in get_args(a)]
            parts.append(f"{get_origin(a).__name__} of {' -> '.join(args)}")
        else:
            parts.append(getattr(a, "__name__", str(a)))
    return " or ".join(parts).replace("|", "\\|")


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, description) for every key under `model`, sections walked into."""
    out = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = _section(f.annotation)
        if sub is not None and key not in NESTED_ONCE:
            if type(None) in _options(
                f.annotation
            ):  # an optional section: say what giving it means
                out.append((key, "section or empty", None, f.description or ""))
            out += rows(sub, key + ".")
            continue
        out.append(
            (
                key,
                type_name(f.annotation),
                f.get_default(call_default_factory=True),
                f.description or "",
            )
        )
    return out


def config_reference() -> str:
    head = [
        "# Config reference",
        "",
        "Every key of a run config (`tailor train CONFIG [key=value ...]`), generated from",
        "`src/tailor/config.py` by `python -m tailor.docs`. Per-task defaults fill `train.lr` and `train.metric`",
        "when they are left empty. A single name may stand for a list of one (`train.report_to: tensorboard`).",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    body = [
        f"| `{k}` | {t} | {'empty' if d is None else f'`{d!r}`'} | {m} |"
        for k, t, d, m in rows(RunConfig)
    ]
    return "\n".join(head + body) + "\n"


if __name__ == "__main__":
    Path("docs").mkdir(exist_ok=True)
    Path("docs/config.md").write_text(config_reference())
