"""tailor ablate: grid x seeds through the real CLI (a subprocess per cell), the table, and resume."""

import csv
import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from tailor.ablate import Grid, expand, write_snapshot
from tailor.cli import app
from tailor.data.synthetic import build_world, sentiment_records
from tailor.evaluate.ablation import build_table, cell_text

STRATEGIES = ("full", "head", "lora")


def run_cli(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("ablate")
    data = root / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sentiment_records(build_world(0), 120, 0)))
    cfg = {"name": "cls", "output_dir": str(root / "runs"), "model": str(tiny_model_dir("gpt2")),
           "task": {"type": "classification"},
           "data": {"train": str(data), "max_length": 40, "split": {"validation": 0.15, "test": 0.2}},
           "train": {"max_steps": 3, "batch_size": 16, "lr": 3e-3, "log_every": 3, "eval_every": 3},
           "eval": {"batch_size": 64}}
    path = root / "cls.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def ablation(config):
    run_cli("ablate", config, "--vary", f"strategy.name={','.join(STRATEGIES)}", "--seeds", "2")
    return config.parent / "runs" / "cls-ablation-001"


def test_bad_grid_reports_every_problem_before_training(config):
    out = run_cli("ablate", config, "--vary", "strategy.name=full,frozen", "--vary", "train.lr=1e-3,-1", code=2)
    assert "strategy.name: 'frozen' is not one of" in out
    assert "train.lr: must be > 0 (got -1)" in out
    out = run_cli("ablate", config, "--vary", "seed=1,2", "--vary", "train.lr", code=2)
    assert "seed cannot be varied" in out and "--vary 'train.lr': expected key=value1,value2" in out
    assert not (config.parent / "runs").exists()  # nothing was created, nothing trained


def test_grid_is_the_product_of_values_and_seeds():
    cells = expand(Grid("c.yaml", [], {"strategy.name": ["full", "lora"], "train.lr": ["1e-3", "3e-4"]}, 2))
    assert len(cells) == 8 and len({c.id for c in cells}) == 8
    assert cells[0].id == "00-name-full_lr-1e-3-seed0" and cells[0].baseline
    assert not any(c.baseline for c in cells[1:])
    assert cells[-1].setting == "strategy.name=lora train.lr=3e-4" and cells[-1].seed == 1


def test_snapshot_pins_paths_so_cells_train_the_config_as_it_was(tmp_path, monkeypatch):
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "a.jsonl").write_text("{}\n")
    (tmp_path / "m").mkdir()
    cfg = tmp_path / "conf" / "x.yaml"
    cfg.write_text("model: m\ntask: {type: classification}\ndata: {train: data/a.jsonl, test: [data/a.jsonl, nope.jsonl]}\n")
    monkeypatch.chdir(tmp_path)
    snap = yaml.safe_load(write_snapshot(str(cfg), tmp_path).read_text())
    data = str(tmp_path / "conf" / "data" / "a.jsonl")
    assert snap["data"] == {"train": data, "test": [data, "nope.jsonl"]}  # missing files stay as written
    assert snap["model"] == str(tmp_path / "m") and snap["name"] == "x"


def test_table_mean_std_and_best_for_a_lower_is_better_metric():
    def result(loss, seconds):
        return {"fine_tuned": {"test": {"loss": loss}},
                "train": {"strategy": {"trainable": 10}, "train_seconds": seconds, "peak_memory_mb": 5.0}}

    cells = [("a", result(2.0, 1.0)), ("a", result(4.0, 3.0)), ("b", result(1.0, 1.0)), ("b", None)]
    table = build_table(cells, ["loss"], "test", {"test": {"loss": 9.0}})
    base, a, b = table.rows
    assert base.baseline and a.mean_std("loss") == (3.0, pytest.approx(math.sqrt(2)))
    assert (b.done, b.total) == (1, 2) and b.best and not a.best  # loss: lower is better
    assert cell_text(a, "loss") == "3.0000 ± 1.4142" and cell_text(b, "loss") == "1.0000"


def test_ablation_writes_table_with_mean_std_best_and_costs(ablation):
    manifest = json.loads((ablation / "ablation.json").read_text())
    assert [c["status"] for c in manifest["cells"]] == ["done"] * 6
    results = [json.loads((ablation / c["run"] / "metrics.json").read_text()) for c in manifest["cells"]]
    assert "baseline" in results[0] and not any("baseline" in r for r in results[1:])  # scored once
    assert {r["train"]["strategy"]["name"] for r in results} == set(STRATEGIES)
    md = (ablation / "ablation.md").read_text()
    assert "| baseline (pre-trained) |" in md and md.count("★") == 2  # the legend and the best row
    for name in STRATEGIES:
        row = next(line for line in md.splitlines() if line.startswith(f"| strategy.name={name} |"))
        assert "| 2/2 |" in row and " ± " in row
    rows = {r["setting"]: r for r in csv.DictReader((ablation / "ablation.csv").open())}
    assert set(rows) == {"baseline (pre-trained)", *(f"strategy.name={s}" for s in STRATEGIES)}
    assert sum(r["best"] == "1" for r in rows.values()) == 1
    for name in STRATEGIES:
        r = rows[f"strategy.name={name}"]
        assert float(r["macro_f1_std"]) >= 0 and r["accuracy_mean"]
        assert float(r["peak_memory_mb_mean"]) > 0 and float(r["tokens_per_second_mean"]) > 0
    full = float(rows["strategy.name=full"]["trainable_mean"])
    assert float(rows["strategy.name=head"]["trainable_mean"]) < full
    assert float(rows["strategy.name=lora"]["trainable_mean"]) < full
    assert (ablation / "ablation.png").stat().st_size > 0


def test_resume_runs_only_the_unfinished_cells(ablation, config):
    manifest = json.loads((ablation / "ablation.json").read_text())
    cells = {c["id"]: ablation / c["run"] for c in manifest["cells"]}
    lost = "02-lora-seed1"
    (cells[lost] / "metrics.json").unlink()  # as if the run was killed before it finished
    (cells[lost].parent / "half-written").write_text("x")
    kept = {cid: (run / "metrics.json").stat().st_mtime_ns for cid, run in cells.items() if cid != lost}
    weights = {cid: (run / "model").stat().st_mtime_ns for cid, run in cells.items() if cid != lost}
    original = config.read_text()
    config.write_text(original.replace("lr: 0.003", "lr: 0.5"))  # edited meanwhile: the cells keep the snapshot
    try:
        out = run_cli("ablate", "--resume", ablation)
    finally:
        config.write_text(original)
    out = " ".join(out.split())  # rich wraps long lines at the terminal width
    assert "5 of 6 cells already finished; running the other 1" in out and "changed since the ablation started" in out
    assert yaml.safe_load((cells[lost] / "config.yaml").read_text())["train"]["lr"] == 0.003
    assert kept == {cid: (cells[cid] / "metrics.json").stat().st_mtime_ns for cid in kept}
    assert weights == {cid: (cells[cid] / "model").stat().st_mtime_ns for cid in weights}
    assert (cells[lost] / "metrics.json").is_file() and not (cells[lost].parent / "half-written").exists()
    manifest = json.loads((ablation / "ablation.json").read_text())
    assert all(c["status"] == "done" for c in manifest["cells"])
    out = run_cli("ablate", "--resume", ablation)  # nothing left: no cell runs again
    assert "6 of 6 cells already finished; running the other 0" in " ".join(out.split())


def test_resume_refuses_a_different_grid(ablation, config, tmp_path):
    out = run_cli("ablate", config, "--vary", "strategy.name=full,head", "--seeds", "2", "--resume", ablation, code=2)
    assert "--vary" in out and "start a new ablation" in out
    out = run_cli("ablate", "--resume", tmp_path, code=2)
    assert "no ablation.json" in out
