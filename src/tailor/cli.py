"""The `tailor` command: one small function per subcommand, calling the Python API."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tailor.quiet import silence_libraries

silence_libraries()  # before any library is imported by a subcommand

app = typer.Typer(help="Fine-tune pre-trained GPT-style language models, and use the result.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=True)
data_app = typer.Typer(help="Check and inspect data sets before spending compute.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True, soft_wrap=True)
Json = Annotated[bool, typer.Option("--json", help="print one JSON document (stable keys) instead of tables")]


def _version(value: bool) -> None:
    if value:
        from tailor import __version__

        print(f"tailor {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="print tailor's version and exit")] = False) -> None:
    """Fine-tune pre-trained GPT-style language models, and use the result."""


def print_json(data: object) -> None:
    """One JSON document on stdout (for scripts: `tailor runs --json | jq ...`)."""
    import json

    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")

Overrides = Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. train.lr=3e-4 strategy.name=lora")]
TaskName = Annotated[str | None, typer.Option("--task", help="multitask run: the sub-task to use (its name)")]


def user_errors(fn: Callable) -> Callable:
    """Turn user mistakes (config, data, model location) into a message and exit status 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from tailor.config import ConfigError
        from tailor.data.readers import DataError
        from tailor.models.load import ModelLoadError
        from tailor.runrecord import RunError
        from tailor.tasks.multitask import TaskChoiceError
        from tailor.train.guards import TrainingInterrupted, TrainingStopped

        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            err.print(f"[red]error:[/] {e}", highlight=False)
        except DataError as e:
            err.print(f"[red]error:[/] the data has problems; nothing was trained\n{e}", highlight=False)
        except ModelLoadError as e:
            err.print(f"[red]error:[/] {e}", highlight=False)
        except (RunError, TrainingStopped, TaskChoiceError) as e:  # resume / reproduce refused; diverged, out of
            err.print(f"[red]error:[/] {e}", highlight=False)  # memory, disk full; a multitask run without --task
        except TrainingInterrupted as e:  # SIGINT / SIGTERM: checkpoint saved; exit 130 / 143
            err.print(str(e), highlight=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        raise typer.Exit(2)

    return wrapper


@app.command()
@user_errors
def train(
    config: Annotated[Path | None, typer.Argument(help="run config (YAML)")] = None,
    overrides: Overrides = None,
    resume: Annotated[str | None, typer.Option(help="continue this run (directory or name) from its last checkpoint")] = None,
    reproduce: Annotated[str | None, typer.Option(help="train this finished run again into a new run; compare metrics")] = None,
    compare_single: Annotated[bool, typer.Option("--compare-single", help="multitask: also train each sub-task alone "
                                                  "(same settings, in RUN/single/) and add its metrics to the report")] = False,
) -> None:
    """Fine-tune a model as the config says; evaluate it against the pre-trained baseline; write a report."""
    from tailor.api import train as run_train
    from tailor.config import load_config

    if resume or reproduce or config is None:
        if compare_single:
            err.print("[red]error:[/] --compare-single goes with a multitask config, not --resume / --reproduce",
                      highlight=False)
            raise typer.Exit(2)
        _train_again(config, overrides, resume, reproduce)
        return
    cfg = load_config(config, overrides or [])
    if compare_single and cfg.task.type != "multitask":
        err.print(f"[red]error:[/] --compare-single needs a multitask config (task.type is {cfg.task.type})", highlight=False)
        raise typer.Exit(2)
    run = run_train(cfg, console)
    if compare_single:
        from tailor.runs import compare_single as train_alone

        train_alone(run.path, console)
    _print_summary(run.path)


def _print_summary(run: Path) -> None:
    import json

    from rich.markdown import Markdown

    from tailor.evaluate.report import comparison_table
    from tailor.rundir import read_jsonl  # noqa: F401 - keeps the import cheap path warm

    metrics = json.loads((run / "metrics.json").read_text())
    rows = comparison_table(metrics, "test") or comparison_table(metrics, "validation")
    if rows:
        console.print(Markdown("\n".join(rows)))
    console.print(f"report: [bold]{run / 'report.md'}[/]")


def _train_again(config: Path | None, overrides: list[str] | None, resume: str | None, reproduce: str | None) -> None:
    """`tailor train --resume RUN` / `--reproduce RUN`: the run's own config, so no config file or overrides."""
    from tailor.runs import render_comparison, reproduce_run, resume_run

    if not (resume or reproduce):
        err.print("[red]error:[/] give a run config (YAML), or --resume RUN / --reproduce RUN", highlight=False)
        raise typer.Exit(2)
    if config is not None or overrides or (resume and reproduce):
        err.print("[red]error:[/] --resume and --reproduce take one run and use its saved config; "
                  "give no config file or overrides with them", highlight=False)
        raise typer.Exit(2)
    if resume:
        run = resume_run(resume, console)
        if run is not None:
            _print_summary(run.path)
        return
    new, rows = reproduce_run(reproduce, console)
    console.print(f"new run: [bold]{new.path}[/]")
    render_comparison(rows, console)
    if any(r["verdict"] == "differs" for r in rows):
        raise typer.Exit(1)


@app.command()
@user_errors
def resume(run: Annotated[str, typer.Argument(help="a run directory, or its name as `tailor runs` lists it")]) -> None:
    """Continue an interrupted run from its last complete checkpoint, to the result it would have had."""
    _train_again(None, None, run, None)


runs_app = typer.Typer(help="The runs in a runs folder (its registry.sqlite): list, show.", invoke_without_command=True)
app.add_typer(runs_app, name="runs")
RunsDir = Annotated[Path, typer.Option("--dir", help="the runs folder")]


@runs_app.callback()
def runs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="running, finished, failed or interrupted")] = None,
    task: Annotated[str | None, typer.Option(help="lm, classification, qa, chat, ...")] = None,
    name: Annotated[str | None, typer.Option(help="only runs whose name contains this")] = None,
    root: RunsDir = Path("runs"),
    rebuild: Annotated[bool, typer.Option("--rebuild", help="index the run directories again (a lost or damaged "
                                          "registry; an unreadable one is moved aside, never deleted)")] = False,
    as_json: Json = False,
) -> None:
    """List the runs: status (a dead process shows as interrupted), task, strategy, result."""
    from tailor.registry import STATUSES, list_runs
    from tailor.registry import rebuild as rebuild_index
    from tailor.runs import render_runs, run_record

    if ctx.invoked_subcommand is not None:
        return
    if status is not None and status not in STATUSES:
        err.print(f"[red]error:[/] --status {status!r} is not one of {', '.join(STATUSES)}", highlight=False)
        raise typer.Exit(2)
    if rebuild:
        done = rebuild_index(root)
        err.print(f"registry rebuilt from the run directories in {root}: {done['added']} runs added"
                  + (f"; the unreadable one was moved to {done['moved_to']}" if done["moved_to"] else ""), highlight=False)
    rows = list_runs(root, status, task, name)
    if as_json:
        print_json([run_record(r) for r in rows])
    else:
        render_runs(rows, console)


@runs_app.command("show")
def runs_show(name: Annotated[str, typer.Argument(help="a run's name (e.g. lm-003) or directory")], root: RunsDir = Path("runs"),
              as_json: Json = False) -> None:
    """One run: status, config summary, metrics, lineage, and how to resume it if it stopped."""
    from tailor.registry import find_run
    from tailor.runs import render_run, run_details

    row = find_run(root, name)
    if row is None:
        err.print(f"[red]error:[/] no run {name!r} in {root / 'registry.sqlite'}; `tailor runs` lists them", highlight=False)
        raise typer.Exit(2)
    if as_json:
        print_json(run_details(row))
    else:
        render_run(row, console)


@app.command()
@user_errors
def pretrain(
    config: Annotated[Path | None, typer.Argument(help="pretrain config (YAML); default: tailor-tiny's recipe")] = None,
    overrides: Overrides = None,
) -> None:
    """Pre-train a small GPT and its BPE tokenizer from scratch (how tailor-tiny is made)."""
    from tailor.pretrain import load_pretrain_config
    from tailor.pretrain import pretrain as run_pretrain

    cfg = load_pretrain_config(config, overrides or [])
    run = run_pretrain(cfg, console)
    _print_summary(run.path)


@data_app.command("check")
@user_errors
def data_check(
    file: Annotated[Path, typer.Argument(help="data file (JSONL, CSV, TSV, Parquet, JSON, TXT)")],
    task: Annotated[str, typer.Option(help="lm, classification, regression, qa, chat")] = "classification",
    config: Annotated[Path | None, typer.Option(help="a run config, for field names, labels and model")] = None,
    limit: Annotated[int, typer.Option(help="problems listed per kind before a count of the rest")] = 20,
    estimate: Annotated[bool, typer.Option(help="time 3 training steps of the model to estimate training time")] = True,
    overrides: Overrides = None,
) -> None:
    """Check a data set before training: every problem with its line, token statistics, splits."""
    from tailor.data.prepare import check_file
    from tailor.data.summary import render_report

    kept: dict = {}
    report = check_file(file, task, config, overrides or [], keep=kept)
    render_report(report, console, limit=limit)
    if report.errors():
        raise typer.Exit(2)
    if estimate and "prepared" in kept and len(kept["prepared"].encoded["train"]):
        from tailor.train.estimate import estimate_training

        console.print("timing 3 training steps ...")
        est = estimate_training(kept["cfg"], kept["task"], kept["tok"], kept["prepared"].encoded["train"], report.stats)
        console.print(str(est), highlight=False)


@app.command()
@user_errors
def generate(
    run: Annotated[Path, typer.Argument(help="a run directory (or any model directory)")],
    prompt: Annotated[str, typer.Argument(help="text to continue")],
    max_new_tokens: Annotated[int, typer.Option()] = 100,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_k: Annotated[int, typer.Option()] = 0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    repetition_penalty: Annotated[float, typer.Option()] = 1.0,
    stop: Annotated[list[str] | None, typer.Option(help="stop string (repeatable)")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    task: TaskName = None,
) -> None:
    """Generate text from a prompt, streaming tokens as they come."""
    import json

    from tailor.config import ModelConfig
    from tailor.generate import generate_text
    from tailor.models.load import load
    from tailor.tasks.multitask import choose_task

    settings = _settings(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         repetition_penalty=repetition_penalty, stop=tuple(stop or ()), seed=seed)
    if (run / "tailor.json").is_file():  # a multitask run: the generative sub-task's name (its head is the LM head)
        choose_task(json.loads((run / "tailor.json").read_text())["task"], task, run)
    model, tok, _ = load(ModelConfig(path=str(run)))
    model.eval()
    generate_text(model, tok, prompt, settings, on_text=lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    sys.stdout.write("\n")


@data_app.command("inspect")
@user_errors
def data_inspect(
    file: Annotated[Path, typer.Argument(help="data file (JSONL, JSON, CSV, TSV, Parquet)")],
    task: Annotated[str, typer.Option(help="chat, qa, classification, ...")] = "chat",
    n: Annotated[int, typer.Option("-n", "--n", help="examples shown")] = 3,
    config: Annotated[Path | None, typer.Option(help="a run config, for model, fields and task settings")] = None,
    overrides: Overrides = None,
) -> None:
    """Show examples exactly as the model sees them, the tokens that train highlighted."""
    from tailor.inspect_data import inspect_file, render_inspection

    ins = inspect_file(file, task, config, overrides or [], n)
    render_inspection(ins, console, n)
    if any(p.severity == "error" for p in ins.problems):
        raise typer.Exit(2)


def _settings(**kwargs) -> object:
    """GenerationSettings from options, checked before any model loads; a bad value is a user error (exit 2)
    that names the option as typed (--max-new-tokens, not max_new_tokens)."""
    import re

    from tailor.generate import GenerationSettings

    try:
        return GenerationSettings(**kwargs)
    except ValueError as e:
        flags = re.sub(r"\b(" + "|".join(kwargs) + r")\b", lambda m: "--" + m.group(1).replace("_", "-"), str(e))
        err.print(f"[red]error:[/] {flags}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
@user_errors
def chat(
    run: Annotated[Path, typer.Argument(help="a run directory (or any model directory)")],
    system: Annotated[str | None, typer.Option(help="system prompt")] = None,
    max_new_tokens: Annotated[int, typer.Option()] = 128,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_k: Annotated[int, typer.Option()] = 0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    repetition_penalty: Annotated[float, typer.Option()] = 1.0,
    seed: Annotated[int | None, typer.Option()] = None,
    task: TaskName = None,
) -> None:
    """Chat with a run's model, replies streaming; from a pipe, each input line is a turn (ends at EOF)."""
    from tailor.use import chat_loop, open_run

    settings = _settings(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         repetition_penalty=repetition_penalty, seed=seed)
    loaded = open_run(run, task)
    interactive = sys.stdin.isatty()
    if interactive:
        console.print(f"chatting with [bold]{run}[/]; /reset starts over, /exit or Ctrl-D leaves", highlight=False)
    chat_loop(loaded, settings, system, sys.stdin, sys.stdout, interactive)


@app.command()
@user_errors
def answer(
    run: Annotated[Path, typer.Argument(help="a question-answering run directory")],
    question: Annotated[str, typer.Argument(help="the question")],
    context: Annotated[Path, typer.Option(help="text file holding the document to answer from")],
    task: TaskName = None,
) -> None:
    """Answer a question from a document with a QA run (extractive: a span of the document)."""
    from tailor.use import answer as run_answer

    if not context.is_file():
        err.print(f"[red]error:[/] --context {context}: no such file", highlight=False)
        raise typer.Exit(2)
    try:
        result = run_answer(run, context.read_text(encoding="utf-8"), question, task=task)
    except ValueError as e:
        err.print(f"[red]error:[/] {run}: {e}", highlight=False)
        raise typer.Exit(2) from None
    console.print(result.text or "(the document does not answer this)", highlight=False)


@app.command()
@user_errors
def serve(
    run: Annotated[Path, typer.Argument(help="a run directory (or any model directory)")],
    host: Annotated[str, typer.Option(help="address to listen on; 127.0.0.1 = this machine only")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    api_key: Annotated[str | None, typer.Option(envvar="TAILOR_API_KEY", help="clients must send "
                                                "'Authorization: Bearer KEY'")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="most rows in one forward pass; 1 = no batching")] = 8,
    max_queue: Annotated[int, typer.Option(min=1, help="most waiting requests; more get 503")] = 64,
    task: TaskName = None,
) -> None:
    """Serve a run over HTTP: OpenAI's /v1/chat/completions and /v1/completions, /v1/classify, /v1/answer."""
    import socket

    import uvicorn

    from tailor.serve import ServeSettings, create_app

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait out TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as e:
        err.print(f"[red]error:[/] cannot listen on {host}:{port}: {e.strerror}; pick another --port", highlight=False)
        raise typer.Exit(2) from None
    web = create_app(run, ServeSettings(api_key=api_key, max_batch=max_batch, max_queue=max_queue), task=task)
    service = web.state.service
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        err.print(f"[yellow]warning[/] listening on {host} without --api-key: anyone who reaches it can use the model",
                  highlight=False)
    console.print(f"serving [bold]{run}[/] (task {service.task}) as model {service.name!r} on "
                  f"http://{host}:{sock.getsockname()[1]}: {', '.join(service.endpoints)}", highlight=False)
    uvicorn.Server(uvicorn.Config(web, log_level="warning")).run(sockets=[sock])


@app.command()
@user_errors
def compare(
    run: Annotated[Path, typer.Argument(help="a finished run directory")],
    other: Annotated[Path | None, typer.Argument(help="a second run: fine-tuned vs fine-tuned on the same split")] = None,
    limit: Annotated[int, typer.Option(help="fixed and broken examples shown, each")] = 10,
    write: Annotated[bool, typer.Option(help="also write the comparison into RUN's report.md")] = True,
    as_json: Json = False,
) -> None:
    """Pre-trained baseline vs fine-tuned (or two runs): metrics with deltas and the examples that changed."""
    from tailor.evaluate import compare as cmp

    try:
        result = cmp.compare_runs(run, other, limit)
    except cmp.CompareError as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        print_json(cmp.to_json(result))
    else:
        cmp.render(result, console)
    if write:
        cmp.write_section(run / "report.md", cmp.to_markdown(result))
        (err if as_json else console).print(f"written to {run / 'report.md'}", highlight=False)


@app.command("eval")
@user_errors
def eval_run(
    run: Annotated[Path, typer.Argument(help="a finished run directory")],
    data: Annotated[Path, typer.Option(help="data file to score (same format and fields as the run's data)")],
    batch_size: Annotated[int | None, typer.Option(help="default: the run's eval.batch_size")] = None,
    predictions: Annotated[Path | None, typer.Option(help="write per-example predictions here (JSONL; a new file)")] = None,
    force: Annotated[bool, typer.Option(help="let --predictions replace an existing file")] = False,
    task: TaskName = None,
    as_json: Json = False,
) -> None:
    """Score a finished run's model on another data file, after the same data checks as training."""
    from tailor.api import evaluate_file
    from tailor.data.readers import DataError
    from tailor.evaluate.compare import render_metrics, write_predictions
    from tailor.rundir import META, unfinished

    if not (run / META).is_file():
        err.print(f"[red]error:[/] {unfinished(run)}", highlight=False)
        raise typer.Exit(2)
    if predictions is not None and predictions.exists() and not force:  # before any work, not after it
        err.print(f"[red]error:[/] --predictions {predictions} already exists; nothing was scored. Give a new file "
                  "name, or --force to replace it", highlight=False)
        raise typer.Exit(2)
    try:
        result = evaluate_file(run, data, batch_size, task=task)
    except DataError as e:
        err.print(f"[red]error:[/] the data has problems; nothing was evaluated\n{e}", highlight=False)
        raise typer.Exit(2) from None
    written = None
    if predictions is not None and result["predictions"]:
        write_predictions(predictions, result["predictions"], replace=force)
        written = str(predictions)
    if as_json:
        keys = ("metrics", "examples", "trained_on", "warnings")
        print_json({"run": str(run), "data": str(data), **{k: result[k] for k in keys}, "predictions": written})
        return
    for w in result["warnings"][:10]:
        console.print(f"[yellow]warning[/] {w}", highlight=False)
    render_metrics(result["metrics"], console, f"{run.name} on {data} ({result['examples']} examples)")
    if written:
        console.print(f"predictions: {written}", highlight=False)


@app.command()
@user_errors
def ablate(
    config: Annotated[Path | None, typer.Argument(help="run config (YAML); optional with --resume")] = None,
    overrides: Overrides = None,
    vary: Annotated[list[str] | None, typer.Option(help="key=v1,v2 (repeatable); the grid is their product")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="seeds 0..N-1 for every setting")] = 1,
    metric: Annotated[list[str] | None, typer.Option(help="metric shown (repeatable; the first picks the best); "
                                                     "default: train.metric, accuracy/macro_f1 or perplexity")] = None,
    resume: Annotated[Path | None, typer.Option(help="an ablation directory: run only its unfinished cells")] = None,
) -> None:
    """Train every setting of a grid x seeds (a subprocess each); one table of mean ± std, cost, best."""
    from tailor.ablate import Grid, parse_vary, start
    from tailor.ablate import resume as resume_ablation

    if config is None and resume is None:
        err.print("[red]error:[/] give a CONFIG to start an ablation, or --resume DIR to finish one", highlight=False)
        raise typer.Exit(2)
    grid = Grid(str(config), overrides or [], parse_vary(vary or []), seeds, metric or []) if config else None
    result = resume_ablation(resume, grid, console) if resume is not None else start(grid, console)
    if result.failed:
        err.print(f"[red]{len(result.failed)} of {len(result.cells)} cells did not finish[/] "
                  f"({', '.join(c.id for c in result.failed)}); rerun them with: tailor ablate --resume {result.root}",
                  highlight=False)
        raise typer.Exit(1)


@app.command()
@user_errors
def export(
    run: Annotated[Path, typer.Argument(help="a finished run directory")],
    out: Annotated[Path, typer.Option(help="directory to write (must be empty or new, unless --force)")],
    merge: Annotated[bool, typer.Option(help="LoRA run: merge the adapter into its base and write a full model")] = False,
    force: Annotated[bool, typer.Option(help="replace a non-empty --out directory")] = False,
    fmt: Annotated[str, typer.Option("--format", help="hf: a Hugging Face directory; gguf: one GGUF file for "
                                     "llama.cpp / Ollama (LoRA merged) and an Ollama Modelfile")] = "hf",
    quant: Annotated[str, typer.Option(help="gguf: weights as f16, q8_0 or f32")] = "f16",
) -> None:
    """Write a run's model as a Hugging Face directory, or as GGUF for llama.cpp and Ollama."""
    from tailor.export import ExportError, export_run

    try:
        result = export_run(run, out, merge=merge, force=force, fmt=fmt, quant=quant)
    except ExportError as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    for note in result.notes:
        console.print(note, highlight=False)
    if fmt == "gguf":
        console.print(f"exported GGUF ({quant}) to [bold]{result.path}[/] with an Ollama Modelfile beside it: "
                      f"ollama create NAME -f {result.path.parent / 'Modelfile'}", highlight=False)
        return
    what = "merged full model (LoRA adapter + base)" if result.merged else ("LoRA adapter" if result.adapter else "full model")
    console.print(f"exported the {what} to [bold]{result.path}[/]", highlight=False)


if __name__ == "__main__":
    app()
