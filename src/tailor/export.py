"""`tailor export`: a run's model as a plain Hugging Face directory, a LoRA adapter merged in on request."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tailor.config import ModelConfig
from tailor.models.load import ModelLoadError, load, locate
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


def export_run(run: str | Path, out: str | Path, merge: bool = False, force: bool = False, fmt: str = "hf",
               quant: str = "f16") -> Exported:
    """Write the run's model to `out`: merged base + adapter (merge=True on a LoRA run), else a copy of model/.
    With fmt="gguf": one GGUF file (LoRA merged first) and an Ollama Modelfile."""
    run, out = Path(run), Path(out)
    meta = _run_meta(run)
    _check_target(run, out, force)
    if fmt == "gguf":
        return _export_gguf(run, out, meta, quant)
    if fmt != "hf":
        raise ExportError(f"--format {fmt!r} is not one of hf, gguf")
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
    if base.get("hash") and src.fingerprint() not in (None, base["hash"]):
        return [f"warning: the base model {location} has changed since the run trained (hash differs); "
                "the merged model uses the base as it is now"]
    return []


def _export_gguf(run: Path, out: Path, meta: dict, quant: str) -> Exported:
    """<out>/<run name>.gguf and <out>/Modelfile, written in a temporary folder and moved into place."""
    from tailor.export_gguf import QUANTS, GGUFExportError, write_gguf
    from tailor.ollama import TemplateError, derive, modelfile
    from tailor.tasks.chat_format import ChatTemplate

    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r} is not one of {', '.join(QUANTS)}")
    adapter = (run / "model" / "adapter_config.json").is_file()
    result = Exported(path=out, merged=adapter, adapter=adapter)
    if adapter:
        result.notes += _check_base(meta)
    backbone, tok, _ = load(ModelConfig(path=str(run)))  # a LoRA adapter is merged into its base here
    task = meta.get("task") or {}
    template_text = task.get("chat_template") or getattr(tok, "chat_template", None)
    tmp = _fresh_tmp(out)
    name = f"{run.name}.gguf"
    try:
        written = write_gguf(backbone, tok, tmp / name, quant, template_text, run.name)
    except GGUFExportError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(str(e)) from None
    result.notes += written.notes
    template, why = None, []
    if template_text:
        chat = ChatTemplate(tok, template_text)
        try:
            template = derive(chat.render, [chat.end_marker, tok.eos_token or ""])
        except TemplateError as e:
            why = [f"the chat template could not be written as an Ollama TEMPLATE ({e}); edit TEMPLATE by hand"]
            result.notes += [f"note: {why[0]}"]
    (tmp / "Modelfile").write_text(modelfile(name, template, why))
    if (run / "heads.safetensors").is_file():
        result.notes.append("task layers (heads.safetensors) are not part of a GGUF language model: the file holds "
                            "the fine-tuned backbone; tailor commands that use the task layers take the run directory")
    write_json(tmp / "export.json", {"run": str(run.resolve()), "format": "gguf", "quant": quant, "file": name,
                                     "merged": adapter, "base": meta.get("base"), "task": task.get("type")})
    replace_dir(tmp, out)
    result.path = out / name
    return result


def _fresh_tmp(out: Path) -> Path:
    tmp = out.with_name(out.name + ".export-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp
