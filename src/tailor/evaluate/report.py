"""report.md and plots: the human summary of a run."""

from __future__ import annotations

from pathlib import Path

from tailor.rundir import read_jsonl
from tailor.tasks.base import LOWER_IS_BETTER


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def _number(v: object) -> str:
    return _fmt(v) if isinstance(v, int | float) else "-"


def task_table(metrics: dict, split: str) -> list[str]:
    """Multitask, markdown rows: task | metric | pre-trained | multitask | single-task (with --compare-single)."""
    base = metrics.get("baseline", {}).get(split, {})
    tuned = metrics.get("fine_tuned", {}).get(split, {})
    single = metrics.get("single_task", {})
    names = [k for k, v in tuned.items() if isinstance(v, int | float) and "/" in k and not k.endswith("/tokens")]
    if not names:
        return []
    extra = (" single-task |", "---:|") if single else ("", "")
    rows = [f"| task | {split} metric | pre-trained | multitask |{extra[0]}", f"|---|---|---:|---:|{extra[1]}"]
    for k in names + [k for k in tuned if k == "multitask_score"]:
        task, _, metric = k.rpartition("/")
        alone = f" {_number(single.get(task, {}).get(split, {}).get(metric))} |" if single else ""
        rows.append(f"| {task or 'all'} | {metric} | {_number(base.get(k))} | {_number(tuned[k])} |{alone}")
    return rows


def comparison_table(metrics: dict, split: str) -> list[str]:
    """Markdown rows: metric | pre-trained | fine-tuned | change, for one split (multitask: task_table)."""
    if metrics.get("task") == "multitask":
        return task_table(metrics, split)
    base = metrics.get("baseline", {}).get(split, {})
    tuned = metrics.get("fine_tuned", {}).get(split, {})
    names = [k for k, v in tuned.items() if isinstance(v, int | float) and k != "tokens"]
    if not names:
        return []
    rows = [f"| {split} metric | pre-trained | fine-tuned | change |", "|---|---:|---:|---:|"]
    for k in names:
        b, t = base.get(k), tuned[k]
        if isinstance(b, int | float):
            delta = t - b
            good = (delta < 0) if k in LOWER_IS_BETTER else (delta > 0)
            mark = " ✓" if good else ""
            rows.append(f"| {k} | {_fmt(b)} | {_fmt(t)} | {delta:+.4f}{mark} |")
        else:
            rows.append(f"| {k} | - | {_fmt(t)} | |")
    return rows


def plot_loss(run: Path) -> str | None:
    """loss_curve.png from metrics.jsonl (training loss and validation loss/metric)."""
    rows = read_jsonl(run / "metrics.jsonl")
    train = [(r["step"], r["loss"]) for r in rows if "split" not in r and "loss" in r]
    val = [(r["step"], r["loss"]) for r in rows if r.get("split") == "validation" and "loss" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(*zip(*train, strict=True), label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(run / "loss_curve.png")
    plt.close(fig)
    return "loss_curve.png"


def write_report(run: Path, summary: dict, extra_sections: list[str] = ()) -> Path:
    """Write report.md from the run's summary (metrics.json content) and plots."""
    m = summary
    fit = m.get("train", {})
    lines = [f"# {run.name}", ""]
    lines += [f"- task: **{m.get('task')}**, base model: `{m.get('base_model')}`, strategy: **{fit.get('strategy', {}).get('name', m.get('strategy'))}**"]
    if m.get("baseline_method"):
        lines.append(f"- baseline (\"pre-trained\" below): {m['baseline_method']}")
    if fit:
        strat = fit.get("strategy", {})
        lines += [
            f"- trained {fit.get('steps')} steps ({fit.get('epochs')} epochs) in {fit.get('train_seconds')} s; "
            f"{fit.get('tokens_per_second'):,} real tokens/s; peak memory {fit.get('peak_memory_mb')} MB",
            f"- trainable parameters: {strat.get('trainable', 0):,} of {strat.get('total', 0):,}",
        ]
        if fit.get("best_step") is not None:
            lines.append(f"- best checkpoint: step {fit['best_step']} ({m.get('metric')} = {_fmt(fit['best_metric'])})")
    lines.append("")
    for split in ("test", "validation"):
        rows = comparison_table(m, split)
        if rows:
            lines += [f"## {split.capitalize()}: pre-trained vs fine-tuned", "", *rows, ""]
    curve = plot_loss(run)
    if curve:
        lines += ["## Training", "", f"![loss curve]({curve})", ""]
    for section in extra_sections:
        lines += [section, ""]
    data = m.get("data", {})
    leak = data.get("leakage")
    if leak:  # the user's files shared examples between train and validation/test, and data.leakage said what to do
        done = (f"{leak['dropped_from_train']} training records that repeat a validation/test example were left out "
                "of training" if leak["setting"] == "drop" else
                f"{leak['kept']} validation/test examples are also in the training data and were kept: their scores "
                "are not those of unseen examples")
        lines += ["## Leakage", "", f"- data.leakage: **{leak['setting']}**: {done} (listed in data.json)", ""]
    if data.get("warnings"):
        lines += ["## Data warnings", ""] + [f"- {w}" for w in data["warnings"][:20]] + [""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path
