"""The Python API: train(cfg) runs config -> data -> model -> strategy -> fit -> evaluate -> report."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console

from tailor import __version__
from tailor.config import RunConfig, save_config
from tailor.data.prepare import Prepared, prepare
from tailor.data.split import save_split
from tailor.evaluate.report import write_report
from tailor.models.heads import TailorModel
from tailor.models.load import (
    Source,
    context_length,
    directory_hash,
    load_backbone,
    load_tokenizer_for,
    set_dropout,
)
from tailor.rundir import MetricsLog, create_run_dir, write_json
from tailor.tasks import build_task
from tailor.tasks.base import Task, evaluate_task
from tailor.train.loop import FitResult, fit, precision_of


@dataclass
class Run:
    path: Path
    metrics: dict
    model: TailorModel | None = None  # the trained model, in memory
    tokenizer: object = None

    @property
    def test(self) -> dict:
        return self.metrics["fine_tuned"].get("test", {})


def _max_length(cfg: RunConfig, tok, src: Source) -> int:
    if cfg.data.max_length:
        return cfg.data.max_length
    if src.kind == "scratch":
        return cfg.model.arch.context
    import json as _json

    config = _json.loads((Path(src.location) / "config.json").read_text()) if src.kind != "hub" else {}
    for k in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(k), int):
            return min(config[k], 2048)
    return min(getattr(tok, "model_max_length", 1024) or 1024, 2048)


def evaluate_splits(task: Task, model: TailorModel, prep: Prepared, cfg: RunConfig, pad_id: int,
                    zero_shot: bool, acc=None) -> dict[str, dict]:
    """Metrics per evaluation split (validation, test)."""
    out = {}
    for split in ("validation", "test"):
        data = prep.encoded.get(split)
        if data is not None and len(data):
            out[split] = evaluate_task(task, model, data, cfg.eval.batch_size, pad_id, acc, zero_shot=zero_shot)
    return out


def save_run_model(run: Path, model: TailorModel, tok, task: Task, cfg: RunConfig, src: Source) -> None:
    """model/ in Hugging Face format (or a LoRA adapter), heads.safetensors, tailor.json."""
    model.backbone.save_pretrained(run / "model", safe_serialization=True)
    tok.save_pretrained(run / "model")
    model.save_heads(run / "heads.safetensors")
    base_hash = directory_hash(src.location) if src.kind in ("tiny", "dir", "run") else None
    meta = {
        "tailor_version": __version__,
        "task": task.info(),
        "heads": list(model.heads.keys()),
        "base": {"kind": src.kind, "location": cfg.model.path if src.kind != "scratch" else None,
                 "hash": base_hash, "arch": cfg.model.arch.model_dump() if cfg.model.arch else None},
        "strategy": cfg.strategy.name,
        "lineage": src.lineage,
    }
    write_json(run / "tailor.json", meta)


def environment() -> dict:
    import transformers

    return {"tailor": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def train(cfg: RunConfig, console: Console | None = None) -> Run:
    """Fine-tune as configured; returns the Run (its directory and final metrics)."""
    console = console or Console()
    tok, src = load_tokenizer_for(cfg.model)
    task = build_task(cfg.task, cfg)
    max_length = _max_length(cfg, tok, src)
    prep = prepare(cfg, cfg.data, task, tok, max_length)  # raises DataError before the model loads
    for p in prep.report.warnings()[:10]:
        console.print(f"[yellow]warning[/] {p}")
    run = create_run_dir(cfg.output_dir, cfg.name)
    console.print(f"run directory: [bold]{run}[/]")
    save_config(cfg, run / "config.yaml")
    save_split(prep.split_ids(), run / "split.json")
    write_json(run / "data.json", {"files": prep.files, **prep.report.to_json(), "labels": task.info().get("labels")})
    backbone = load_backbone(cfg.model, tok, src)
    if cfg.train.dropout is not None:
        set_dropout(backbone, cfg.train.dropout)
    model = TailorModel(backbone, task.build_heads(backbone.get_input_embeddings().weight.shape[1]))
    _load_previous_heads(model, src)
    pad_id = tok.pad_token_id
    summary: dict = {"task": cfg.task.type, "base_model": cfg.model.path if not cfg.model.arch else f"scratch:{cfg.model.arch.family}",
                     "strategy": cfg.strategy.name, "metric": cfg.train.metric, "environment": environment(),
                     "precision": precision_of(cfg.train), "context": max_length}
    if cfg.eval.baseline:
        console.print("scoring the pre-trained model (baseline) ...")
        summary["baseline"] = evaluate_splits(task, model, prep, cfg, pad_id, zero_shot=True)
    result: FitResult = fit(model, task, prep.encoded["train"], prep.encoded.get("validation"), cfg, pad_id,
                            MetricsLog(run / "metrics.jsonl"), run / "checkpoints", console)
    summary["train"] = asdict(result) | {"strategy": {"name": cfg.strategy.name, **result.strategy}}
    summary["fine_tuned"] = evaluate_splits(task, model, prep, cfg, pad_id, zero_shot=False)
    summary["data"] = {"splits": prep.report.splits, "warnings": [str(p) for p in prep.report.warnings()]}
    save_run_model(run, model, tok, task, cfg, src)
    write_json(run / "metrics.json", summary)
    write_report(run, summary)
    return Run(path=run, metrics=summary, model=model, tokenizer=tok)


def _load_previous_heads(model: TailorModel, src: Source) -> None:
    """Fine-tuning a run again on the same task keeps its trained task layers."""
    if src.run is None or not len(model.heads):
        return
    path = Path(src.location).parent / "heads.safetensors"
    if not path.is_file():
        return
    from safetensors.torch import load_file

    state = load_file(str(path))
    own = model.heads.state_dict()
    if set(state) == set(own) and all(state[k].shape == own[k].shape for k in own):
        model.heads.load_state_dict(state)


def load_run(path: str | Path) -> tuple[TailorModel, object, dict]:
    """A finished run's model (backbone + heads) and tokenizer, ready to predict or generate."""
    from tailor.config import ModelConfig

    run = Path(path)
    meta = json.loads((run / "tailor.json").read_text())
    tok, src = load_tokenizer_for(ModelConfig(path=str(run)))
    backbone = load_backbone(ModelConfig(path=str(run)), tok, src)
    return TailorModel(backbone), tok, meta


__all__ = ["Run", "train", "load_run", "context_length"]
