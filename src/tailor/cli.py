"""The `tailor` command: one small function per subcommand, calling the Python API."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Fine-tune pre-trained GPT-style language models, and use the result.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Check and inspect data sets before spending compute.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True, soft_wrap=True)

Overrides = Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. train.lr=3e-4 strategy.name=lora")]


def user_errors(fn: Callable) -> Callable:
    """Turn user mistakes (config, data, model location) into a message and exit status 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from tailor.config import ConfigError
        from tailor.data.readers import DataError
        from tailor.models.load import ModelLoadError

        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            err.print(f"[red]error:[/] {e}", highlight=False)
        except DataError as e:
            err.print(f"[red]error:[/] the data has problems; nothing was trained\n{e}", highlight=False)
        except ModelLoadError as e:
            err.print(f"[red]error:[/] {e}", highlight=False)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        raise typer.Exit(2)

    return wrapper


@app.command()
@user_errors
def train(
    config: Annotated[Path, typer.Argument(help="run config (YAML)")],
    overrides: Overrides = None,
) -> None:
    """Fine-tune a model as the config says; evaluate it against the pre-trained baseline; write a report."""
    from tailor.api import train as run_train
    from tailor.config import load_config

    cfg = load_config(config, overrides or [])
    run = run_train(cfg, console)
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
    overrides: Overrides = None,
) -> None:
    """Check a data set before training: every problem with its line, token statistics, splits."""
    from tailor.data.check import render_report
    from tailor.data.prepare import check_file

    report = check_file(file, task, config, overrides or [])
    render_report(report, console, limit=limit)
    if report.errors():
        raise typer.Exit(2)


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
) -> None:
    """Generate text from a prompt, streaming tokens as they come."""
    from tailor.config import ModelConfig
    from tailor.generate import GenerationSettings, generate_text
    from tailor.models.load import load

    model, tok, _ = load(ModelConfig(path=str(run)))
    model.eval()
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                  repetition_penalty=repetition_penalty, stop=tuple(stop or ()), seed=seed)
    generate_text(model, tok, prompt, settings, on_text=lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    sys.stdout.write("\n")


if __name__ == "__main__":
    app()
