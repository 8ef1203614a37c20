"""The Python API: train(cfg) runs config -> data -> model -> strategy -> fit -> evaluate -> report."""

from __future__ import annotations

import contextlib
import json
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tailor import __version__
from tailor.config import RunConfig, save_config
from tailor.data.prepare import Prepared, prepare
from tailor.data.split import save_split
from tailor.data.summary import print_warnings
from tailor.evaluate.compare import report_sections
from tailor.evaluate.report import write_report
from tailor.models.heads import TailorModel
from tailor.models.load import (
    Source,
    context_length,
    load_backbone,
    load_tokenizer_for,
    set_dropout,
)
from tailor.rundir import (
    MetricsLog,
    RunError,
    check_output_dir,
    create_run_dir,
    hold_run,
    is_run_dir,
    write_json,
)
from tailor.runrecord import (
    load_baseline,
    record_end,
    record_start,
    recorded,
    reopen_run,
    save_baseline,
    write_env,
)
from tailor.tasks import build_task
from tailor.tasks.base import Task, eval_progress, evaluate_task
from tailor.tasks.multitask import MultiTask, choose_task
from tailor.train.loop import FitResult, fit, precision_of, set_seed
from tailor.train.trackers import check_trackers
from tailor.use import answer, chat_reply, open_run  # using a finished run (tailor chat / answer)


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
                    zero_shot: bool, acc=None, keep: dict | None = None, console: Console | None = None) -> dict[str, dict]:
    """Metrics per evaluation split (validation, test); `keep` receives per-example predictions by split.

    With `console`, progress is shown: a bar at a terminal, a line per split with its time when piped.
    """
    out = {}
    label = "pre-trained" if zero_shot else "fine-tuned"
    for split in ("validation", "test"):
        data = prep.encoded.get(split)
        if data is not None and len(data):
            rows = keep.setdefault(split, {}) if keep is not None else None
            with scoring_progress(console, f"{label} on {split}", len(data)):
                out[split] = evaluate_task(task, model, data, cfg.eval.batch_size, pad_id, acc, zero_shot=zero_shot,
                                           keep=rows)
    return out


@contextlib.contextmanager
def scoring_progress(console: Console | None, what: str, total: int) -> Iterator[None]:
    """A progress bar (terminal) or a closing line with the time taken (piped) around one split's scoring."""
    if console is None:
        yield
        return
    t0 = time.perf_counter()
    if console.is_terminal:
        columns = (TextColumn(f"scoring {what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            job = bar.add_task(what, total=total)
            with eval_progress(lambda n: bar.advance(job, n)):
                yield
    else:
        yield
    console.print(f"scored {what}: {total:,} examples in {time.perf_counter() - t0:.1f} s", highlight=False)


def _base_location(cfg: RunConfig, src: Source) -> str | None:
    """Where the base model is, as tailor.json records it: absolute for local directories (a LoRA run needs it)."""
    if src.kind == "scratch":
        return None
    if src.kind == "gguf":
        return src.file
    if src.kind == "dir":  # a local folder, or the cache's copy of a hub model found offline
        return str(Path(src.location).expanduser().resolve())
    return str(Path(cfg.model.path).expanduser().resolve()) if src.kind == "run" else cfg.model.path


def save_run_model(run: Path, model: TailorModel, tok, task: Task, cfg: RunConfig, src: Source) -> None:
    """model/ in Hugging Face format (or a LoRA adapter), heads.safetensors, tailor.json."""
    model.backbone.save_pretrained(run / "model", safe_serialization=True)
    tok.save_pretrained(run / "model")
    model.save_heads(run / "heads.safetensors")
    base_hash = src.fingerprint()
    meta = {
        "tailor_version": __version__,
        "task": task.info(),
        "heads": list(model.heads.keys()),
        "base": {"kind": src.kind, "location": _base_location(cfg, src),
                 "hash": base_hash, "arch": cfg.model.arch.model_dump() if cfg.model.arch else None},
        "strategy": cfg.strategy.name,
        "lineage": src.lineage,
    }
    write_json(run / "tailor.json", meta)


def environment() -> dict:
    import transformers

    return {"tailor": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


@recorded  # the run registry's row ends failed / interrupted if this raises
def train(cfg: RunConfig, console: Console | None = None, resume: str | Path | None = None) -> Run:
    """Fine-tune as configured; returns the Run (its directory and final metrics).

    With `resume` (a run directory and that run's own config), continue it from its last complete checkpoint.
    The run directory is held by this process (run.lock) for as long as it works in it.
    """
    console = console or Console()
    if resume is None:
        return _train(cfg, console, None)
    if not is_run_dir(resume):
        raise RunError(f"{resume} is not a tailor run directory; nothing was changed there")
    with hold_run(resume):  # before anything in the run is read or written
        return _train(cfg, console, Path(resume))


def _build_model(cfg: RunConfig, tok, src: Source, task: Task) -> TailorModel:
    """Backbone + task layers; new layers (and a model from scratch) are initialised from the seed."""
    set_seed(cfg.seed)
    backbone = load_backbone(cfg.model, tok, src)
    model = TailorModel(backbone, task.build_heads(backbone.get_input_embeddings().weight.shape[1]))
    if cfg.train.dropout is not None:  # backbone and task layers alike
        set_dropout(model, cfg.train.dropout)
    _load_previous_heads(model, src)
    return model


@dataclass
class _Setup:
    """What a run starts from, all made before its directory exists (so a failed start leaves none behind)."""

    tok: Any
    src: Source
    task: Task
    prep: Prepared
    max_length: int
    model: TailorModel


def _set_up(cfg: RunConfig, console: Console) -> _Setup:
    """Check the settings, read and check the data, load the model: every user mistake surfaces here."""
    check_trackers(cfg.train.report_to)
    check_output_dir(cfg.output_dir)  # a runs folder that cannot be made is a config error, found before any work
    tok, src = load_tokenizer_for(cfg.model)
    task = build_task(cfg.task, cfg)
    max_length = _max_length(cfg, tok, src)
    prep = prepare(cfg, cfg.data, task, tok, max_length)  # raises DataError before the model loads
    print_warnings(console, prep.report.warnings())
    return _Setup(tok, src, task, prep, max_length, _build_model(cfg, tok, src, task))


def _open_run(cfg: RunConfig, s: _Setup, resume: Path | None, stack: contextlib.ExitStack) -> Path:
    """A new run directory (held by this process), or the resumed one checked against the data; its records."""
    if resume is not None:
        run = reopen_run(resume, s.prep.files, s.prep.split_ids())  # same data, same split
    else:
        run = create_run_dir(cfg.output_dir, cfg.name)
        stack.enter_context(hold_run(run))
    save_config(cfg, run / "config.yaml")
    save_split(s.prep.split_ids(), run / "split.json")
    write_json(run / "data.json", {"files": s.prep.files, **s.prep.report.to_json(), "labels": s.task.info().get("labels")})
    write_env(run, cfg, s.src)  # env.json: versions, hardware, seed, config hash (a resumed run adds a line)
    record_start(run, cfg, s.src.lineage, s.prep.files)  # runs/registry.sqlite: running, in this process
    return run


def _train(cfg: RunConfig, console: Console, resume: Path | None) -> Run:
    setup = _set_up(cfg, console)
    with contextlib.ExitStack() as stack:
        run = _open_run(cfg, setup, resume, stack)
        console.print(f"run directory: [bold]{run}[/]")
        return _fit_and_report(cfg, console, run, setup, resume is not None)


def _fit_and_report(cfg: RunConfig, console: Console, run: Path, s: _Setup, resumed: bool) -> Run:
    """Baseline, fit, fine-tuned scores, model and report: everything that happens inside the run directory."""
    task, prep, model, pad_id = s.task, s.prep, s.model, s.tok.pad_token_id
    summary: dict = {"task": cfg.task.type, "base_model": cfg.model.path if not cfg.model.arch else f"scratch:{cfg.model.arch.family}",
                     "strategy": cfg.strategy.name, "metric": cfg.train.metric, "environment": environment(),
                     "precision": precision_of(cfg.train), "context": s.max_length}
    base_rows: dict = {}
    if resumed and load_baseline(run, summary, base_rows, task):
        console.print("baseline: scored before the interruption (baseline.json)")
    elif cfg.eval.baseline:
        console.print("scoring the pre-trained model (baseline) ...")
        summary["baseline_method"] = getattr(task, "baseline_method", "the pre-trained model, scored like the fine-tuned one")
        summary["baseline"] = evaluate_splits(task, model, prep, cfg, pad_id, zero_shot=True, keep=base_rows, console=console)
        save_baseline(run, summary, base_rows, task)
    result: FitResult = fit(model, task, prep.encoded["train"], prep.encoded.get("validation"), cfg, pad_id,
                            MetricsLog(run / "metrics.jsonl"), run / "checkpoints", console)
    summary["train"] = asdict(result) | {"strategy": {"name": cfg.strategy.name, **result.strategy}}
    tuned_rows: dict = {}
    summary["fine_tuned"] = evaluate_splits(task, model, prep, cfg, pad_id, zero_shot=False, keep=tuned_rows)
    if hasattr(task, "per_record"):  # windowed tasks (extractive QA): one row per record, not per window
        task.per_record(base_rows)
        task.per_record(tuned_rows)
    summary["data"] = {"splits": prep.report.splits, "warnings": [str(p) for p in prep.report.warnings()],
                       **({"leakage": prep.report.leakage} if prep.report.leakage else {})}
    save_run_model(run, model, s.tok, task, cfg, s.src)
    if hasattr(task, "text_baseline"):  # extractive QA: a model-free reference score
        summary["text_baseline"] = task.text_baseline(prep.encoded)
    write_json(run / "metrics.json", summary)
    samples = task.sample_sections(prep.encoded, cfg.eval.samples) if hasattr(task, "sample_sections") else []
    write_report(run, summary, report_sections(run, task, prep, summary, base_rows, tuned_rows) + samples)
    record_end(run, summary)  # the registry row: finished, with the final metrics
    return Run(path=run, metrics=summary, model=model, tokenizer=s.tok)


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


def load_run(path: str | Path, task: str | None = None) -> tuple[TailorModel, object, dict]:
    """A finished run's model (backbone + heads) and tokenizer, ready to predict or generate.

    For a multitask run, `task` names the sub-task whose heads the model keeps; without it, every head.
    """
    from tailor.config import ModelConfig

    run = Path(path)
    meta = json.loads((run / "tailor.json").read_text())
    name = choose_task(meta["task"], task, run) if task is not None else None
    tok, src = load_tokenizer_for(ModelConfig(path=str(run)))
    backbone = load_backbone(ModelConfig(path=str(run)), tok, src)
    model = TailorModel(backbone)
    if (run / "heads.safetensors").is_file():  # task layers (classification, span): rebuilt from the run's task
        model = TailorModel(backbone, load_task(run).build_heads(model.hidden_size))
        model.load_heads(run / "heads.safetensors")  # a multitask run: every sub-task's heads, by task name
    return (model.for_task(name) if name else model), tok, meta


def load_task(path: str | Path, task: str | None = None) -> Task:
    """A finished run's task: rebuilt from its config.yaml, with what it learned (labels, template) restored.

    For a multitask run, `task` picks one sub-task; without it, the multitask task itself.
    """
    from tailor.config import load_config

    run = Path(path)
    meta = json.loads((run / "tailor.json").read_text())
    name = choose_task(meta["task"], task, run) if task is not None else None
    cfg = load_config(run / "config.yaml")
    built = build_task(cfg.task, cfg)
    if hasattr(built, "restore"):
        built.restore(meta["task"])
    return built.tasks[name] if name and isinstance(built, MultiTask) else built


def _task_settings(run: Path, meta: dict, task: str | None) -> tuple[str | None, dict, int | None]:
    """The sub-task to use (None: a single-task run), its field map and its max_length as trained."""
    from tailor.config import load_config

    name = choose_task(meta["task"], task, run)
    cfg = load_config(run / "config.yaml")
    if name is None:
        summary = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        return None, cfg.data.fields, summary.get("context") or cfg.data.max_length
    sub = next(t for t in cfg.task.tasks if t.name == name)
    return name, sub.data.fields if sub.data else {}, meta["task"]["tasks"][name].get("max_length")


def evaluate_file(path: str | Path, file: str | Path, batch_size: int | None = None, task: str | None = None) -> dict:
    """A finished run's model scored on any data file, after the same checks as training (DataError on errors).

    Returns metrics, the example count, warnings, and per-example predictions (tasks that predict per example).
    A multitask run needs `task`, the sub-task whose data the file holds.
    """
    from tailor.config import load_config
    from tailor.data.check import check_schema, find_duplicates
    from tailor.data.readers import DataError, apply_field_map, read_records
    from tailor.evaluate.compare import prediction_rows
    from tailor.tasks.base import encode_split

    run = Path(path)
    name, fields, trained_length = _task_settings(run, json.loads((run / "tailor.json").read_text()), task)
    cfg, scored = load_config(run / "config.yaml"), load_task(run, name)
    records, problems = read_records(file)
    records, more = apply_field_map(records, fields)
    problems += more
    if not any(p.severity == "error" for p in problems):
        problems += check_schema(records, scored.schema())
        problems += find_duplicates({"test": records}, getattr(scored, "dedup_key", lambda r: str(r.get("text", ""))))
    if any(p.severity == "error" for p in problems):
        raise DataError(problems)
    model, tok, _ = load_run(run, name)
    max_length = trained_length or context_length(model.backbone)
    data = encode_split(scored, records, tok, max_length)
    problems += getattr(scored, "encode_problems", lambda: [])()
    if any(p.severity == "error" for p in problems):
        raise DataError(problems)
    kept: dict = {}
    metrics = evaluate_task(scored, model, data, batch_size or cfg.eval.batch_size, tok.pad_token_id, keep=kept)
    if hasattr(scored, "per_record"):  # windowed tasks (extractive QA): one row per record, not per window
        scored.per_record({"eval": kept})
    trained = trained_on(run, records, name)
    warnings = [str(p) for p in problems]
    if trained:
        warnings.insert(0, f"{file}: {trained} of {len(records)} examples were in this run's training split: the model "
                           "trained on them, so these scores overstate how well it does on new data")
    return {"metrics": metrics, "examples": len(records), "trained_on": trained, "warnings": warnings,
            "predictions": prediction_rows(scored, records, data.index, None, kept)}


def trained_on(run: Path, records: list[dict], task: str | None = None) -> int:
    """How many of `records` the run trained on (the same content as a record of its split.json's train)."""
    from tailor.data.readers import DataError
    from tailor.data.split import load_split, record_id

    try:
        split = load_split(run / "split.json")
    except DataError:
        return 0
    train = set(split.get(f"{task}/train" if task else "train", []))
    return sum(record_id(r) in train for r in records)


__all__ = ["Run", "train", "load_run", "context_length", "load_task", "open_run", "chat_reply", "answer"]
