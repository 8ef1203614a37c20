"""Classification report sections: confusion matrix (PNG and table) and per-class scores, before and after."""

from __future__ import annotations

from pathlib import Path

PNG = "confusion_matrix.png"


def plot_confusion(panels: list[tuple[str, list[list[int]]]], labels: list[str], path: Path) -> None:
    """One heat map per (title, matrix): rows are true labels, columns predicted labels, counts in cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    k = len(labels)
    size = max(3.2, 0.55 * k + 1.8)
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), dpi=110, squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels, strict=True):
        m = np.asarray(matrix)
        ax.imshow(m, cmap="Blues", vmin=0)
        ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.set_title(title)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(m[i, j]), ha="center", va="center",
                        color="white" if m[i, j] > m.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def confusion_markdown(matrix: list[list[int]], labels: list[str]) -> list[str]:
    """Rows: true label; columns: predicted label."""
    rows = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    rows += [f"| **{name}** | " + " | ".join(str(x) for x in row) + " |" for name, row in zip(labels, matrix, strict=True)]
    return rows


def per_class_markdown(base: dict | None, tuned: dict) -> list[str]:
    """Precision, recall and F1 per class, fine-tuned (and pre-trained F1 when there is a baseline)."""
    head = "| label | support | precision | recall | F1 |" + (" pre-trained F1 |" if base else "")
    rows = [head, "|---|---:|---:|---:|---:|" + ("---:|" if base else "")]
    for name, s in tuned.items():
        extra = f" {base[name]['f1']:.3f} |" if base and name in base else ""
        rows.append(f"| {name} | {s['support']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} |{extra}")
    return rows


def classification_sections(run: Path, summary: dict, labels: list[str], task: str | None = None) -> list[str]:
    """report.md sections for a classification run (and its confusion matrix PNG beside it).

    `task`: a multitask run's classification sub-task; its NAME/metric entries are used and titles name it.
    """
    def own(metrics: dict) -> dict:
        return {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{task}/")} if task else metrics

    split = "test" if summary.get("fine_tuned", {}).get("test") else "validation"
    tuned = own(summary.get("fine_tuned", {}).get(split, {}))
    base = own(summary.get("baseline", {}).get(split, {}))
    if "confusion" not in tuned:
        return []
    png, title = (f"confusion_matrix-{task}.png", f"{task}: ") if task else (PNG, "")
    panels = ([("pre-trained", base["confusion"])] if "confusion" in base else []) + [("fine-tuned", tuned["confusion"])]
    plot_confusion(panels, labels, run / png)
    lines = [f"## {title}Confusion matrix ({split}, fine-tuned)", "", f"![confusion matrix]({png})", "",
             *confusion_markdown(tuned["confusion"], labels)]
    if "confusion" in base:
        method = "" if task else f" ({summary.get('baseline_method', 'baseline')})"
        lines += ["", f"Pre-trained{method}:", "", *confusion_markdown(base["confusion"], labels)]
    lines += ["", f"## {title}Per class ({split})", "", *per_class_markdown(base.get("per_class"), tuned["per_class"])]
    return ["\n".join(lines)]
