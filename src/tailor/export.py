"""`tailor export`: a run's model as a plain Hugging Face directory, a LoRA adapter merged in on request."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tailor.config import ModelConfig
from tailor.models.load import ModelLoadError, directory_hash, load, locate
from tailor.rundir import unfinished, write_json
from tailor.train.checkpoint import replace_dir

EXPORT = "export.json"  # what was exported, and the files tailor wrote (so --force knows what is its own)


class ExportError(Exception):
    """A user mistake (not a run, target not empty, base model missing); the message says what to do."""


@dataclass
class Exported:
    path: Path
    merged: bool  # a LoRA adapter was merged into its base
    adapter: bool  # the run's model/ holds a LoRA adapter
    notes: list[str] = field(default_factory=list)


def export_run(run: str | Path, out: str | Path, merge: bool = False, force: bool = False) -> Exported:
    """Write the run's model to `out`: merged base + adapter (merge=True on a LoRA run), else a copy of model/."""
    run, out = Path(run), Path(out)
    meta = _run_meta(run)
    _check_target(run, out, force)
    adapter = (run / "model" / "adapter_config.json").is_file()
    result = Exported(path=out, merged=merge and adapter, adapter=adapter)
    tmp = out.with_name(out.name + ".export-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    if result.merged:
        result.notes += _check_base(meta)
        backbone, tok, _ = load(ModelConfig(path=str(run)))  # base + adapter, merge_and_unload (models/load.py)
        backbone.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    else:
        shutil.copytree(run / "model", tmp)
        if merge:
            result.notes.append("not a LoRA run: model/ is already a full model; copied as is")
        elif adapter:
            result.notes.append("a LoRA adapter, copied as is: it needs its base model "
                                f"({meta['base'].get('location')}); --merge writes a full model instead")
    if (run / "heads.safetensors").is_file():
        shutil.copy2(run / "heads.safetensors", tmp / "heads.safetensors")
        result.notes.append("task layers (heads.safetensors) are not part of a causal LM: copied beside it; "
                            "tailor commands that use them take the run directory")
    files = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file())
    write_json(tmp / EXPORT, {"run": str(run.resolve()), "merged": result.merged, "base": meta.get("base"),
                              "task": meta.get("task"), "strategy": meta.get("strategy"), "files": [*files, EXPORT]})
    aside = _move_aside(out)
    if aside is not None:
        result.notes.append(f"--force: {out} held files tailor did not write there; all it held was moved to {aside}")
    replace_dir(tmp, out)  # an earlier export of tailor's own, if that is all there was, is replaced
    return result


def _move_aside(out: Path) -> Path | None:
    """Before --force replaces `out`: if it holds anything but an earlier export's own files (export.json lists
    them), move the whole folder to a new sibling, <out>.before-export[-N]; nothing is deleted. Returns that path."""
    if not out.is_dir() or not any(out.iterdir()):
        return None
    try:
        ours = set(json.loads((out / EXPORT).read_text()).get("files") or [])
    except (OSError, ValueError, AttributeError):
        ours = set()
    present = {str(f.relative_to(out)) for f in out.rglob("*") if not f.is_dir()}
    if present <= ours:
        return None
    aside, n = out.with_name(out.name + ".before-export"), 1
    while aside.exists():
        n += 1
        aside = out.with_name(f"{out.name}.before-export-{n}")
    out.rename(aside)
    return aside


def _run_meta(run: Path) -> dict:
    if not (run / "tailor.json").is_file() or not (run / "model").is_dir():
        raise ExportError(unfinished(run))
    return json.loads((run / "tailor.json").read_text())


def _check_target(run: Path, out: Path, force: bool) -> None:
    """Never overwrite by accident, and never the run itself."""
    src, dst = run.resolve(), out.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise ExportError(f"--out {out}: must be outside the run directory {run} (and not contain it)")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out}: directory is not empty; choose another, or pass --force to replace it "
                          "(files tailor did not write there are moved aside, never deleted)")


def _check_base(meta: dict) -> list[str]:
    """The adapter's base must still be there (and unchanged, else the merged model is not what was trained)."""
    base = meta.get("base") or {}
    location = base.get("location")
    if not location:
        raise ExportError("this LoRA run records no base model location in tailor.json (base.location); "
                          "it cannot be merged")
    try:
        src = locate(ModelConfig(path=location))
    except ModelLoadError as e:  # say which key points where
        raise ExportError(f"the LoRA adapter's base model is missing: tailor.json base.location {location} ({e})") from None
    if base.get("hash") and src.kind in ("tiny", "dir", "run") and directory_hash(src.location) != base["hash"]:
        return [f"warning: the base model {location} has changed since the run trained (hash differs); "
                "the merged model uses the base as it is now"]
    return []
