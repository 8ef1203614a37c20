"""Multitask: one backbone, one head per task; task sampling, per-task metrics, save/load per head, resume."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from _lm import curve, final_metrics, one_thread  # noqa: F401 - one_thread: bit-exact runs for the resume check
from conftest import corpus_sentences
from typer.testing import CliRunner

from tailor.cli import app
from tailor.config import ConfigError, load_config, validate
from tailor.data.batching import from_examples
from tailor.data.synthetic import build_world, intent_records, qa_records, sentiment_records
from tailor.rundir import read_jsonl
from tailor.tasks import build_task
from tailor.tasks.multitask import sampling_probabilities

TASKS = ("topic", "size", "where", "notes")
RECIPE = Path(__file__).resolve().parent.parent / "examples" / "multitask.yaml"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def squad(n, seed):
    """Tiny SQuAD records: one fact ("The red key is in the garden.") among a few generated sentences."""
    rng = random.Random(seed)
    out = []
    for i, filler in enumerate(corpus_sentences(n, seed)):
        item, place = rng.choice(["red key", "old map", "blue cup"]), rng.choice(["the garden", "the river", "a box"])
        fact = f"The {item} is in {place}."
        context = f"{filler} {fact} {corpus_sentences(1, seed + i)[0]}"
        start = context.index(fact) + len(f"The {item} is in ")
        out.append({"question": f"Where is the {item}? ({seed}-{i})", "context": context,
                    "answers": {"text": [place], "answer_start": [start]}})
    return out


def labelled(n, seed):
    """Classification (statement or question) and regression (word count) records on the same sentences."""
    texts = list(dict.fromkeys(corpus_sentences(n, seed)))
    return ([{"text": t, "label": "question" if t.endswith("?") else "statement"} for t in texts],
            [{"text": t, "label": float(len(t.split()))} for t in texts])


def write_config(root, model_dir, sampling="uniform", **train):
    """A four-task run (classification, regression, extractive QA, LM), each with a fixed test file but the LM."""
    data = root / "data"
    data.mkdir(exist_ok=True)
    (cls, reg), (cls_test, reg_test) = labelled(120, 1), labelled(30, 99)
    files = {"topic": (cls, cls_test), "size": (reg, reg_test), "where": (squad(60, 1), squad(12, 77))}
    for name, (train_records, test_records) in files.items():
        write_jsonl(data / f"{name}.jsonl", train_records)
        write_jsonl(data / f"{name}-test.jsonl", test_records)
    (data / "notes.txt").write_text("\n\n".join(corpus_sentences(60, 5)) + "\n")
    tasks = [{"name": n, "type": t, "data": {"train": str(data / f"{n}.jsonl"), "test": str(data / f"{n}-test.jsonl"),
                                             "max_length": 48 if t != "qa" else 96, "split": {"validation": 0.2}}}
             for n, t in (("topic", "classification"), ("size", "regression"), ("where", "qa"))]
    tasks[1]["weight"] = 0.5
    tasks.append({"name": "notes", "type": "lm", "data": {"train": str(data / "notes.txt"), "max_length": 32}})
    cfg = {"name": "mt", "output_dir": str(root / "runs"), "model": str(model_dir), "seed": 0,
           "task": {"type": "multitask", "sampling": sampling, "tasks": tasks},
           "strategy": {"name": "full", "head_lr_mult": 3},
           "train": {"max_steps": 8, "batch_size": 8, "lr": 3e-3, "log_every": 1, "eval_every": 4, "save_every": 2,
                     "precision": "fp32", **train},
           "eval": {"batch_size": 16, "samples": 2}}
    path = root / "mt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    """The four-task run through the CLI, with each sub-task also trained alone (--compare-single)."""
    root = tmp_path_factory.mktemp("multitask")
    result = invoke("train", write_config(root, tiny_model_dir("gpt2")), "--compare-single")
    assert result.exit_code == 0, result.output
    return root / "runs" / "mt-001"


# ------------------------------------------------------------------ sampling


def sampler(sampling, sizes, batch_size=10, temperature=2.0):
    """A MultiTask over fake data of the given sizes (no model, no files read)."""
    tasks = [{"name": f"t{i}", "type": "classification", "data": {"train": "x"}} for i in range(len(sizes))]
    cfg = validate({"task": {"type": "multitask", "sampling": sampling, "temperature": temperature, "tasks": tasks}})
    task = build_task(cfg.task, cfg)
    rng = np.random.default_rng(0)
    parts = {f"t{i}": from_examples({"input_ids": [1] * int(rng.integers(3, 30)), "label": i} for _ in range(n))
             for i, n in enumerate(sizes)}
    return task, task.merge(parts)


@pytest.mark.parametrize("sampling", ["proportional", "uniform", "temperature"])
def test_batches_hold_one_task_and_follow_the_sampling(sampling):
    sizes = [1000, 250, 50]  # 100, 25 and 5 batches of 10 per pass
    task, data = sampler(sampling, sizes)
    counts = np.zeros(3)
    for epoch in range(20):
        order = task.train_order(data, 10, seed=3, epoch=epoch)
        assert len(order) == 130  # an epoch is as many batches as one pass over all the data
        for rows in order:
            owners = set(data.fields["task"][rows].tolist())
            assert len(owners) == 1  # a head never sees another task's labels
            counts[owners.pop()] += 1
    share = counts / counts.sum()
    expected = {"proportional": [100 / 130, 25 / 130, 5 / 130], "uniform": [1 / 3] * 3,
                "temperature": np.sqrt([100, 25, 5]) / np.sqrt([100, 25, 5]).sum()}[sampling]
    assert np.allclose(share, expected, atol=0.01), (share, expected)
    if sampling == "temperature":  # between the two: the small task gains, the large one loses
        assert 5 / 130 < share[2] < 1 / 3 and 1 / 3 < share[0] < 100 / 130


def test_proportional_sees_every_example_once_per_epoch_and_the_order_is_a_function_of_seed_and_epoch():
    task, data = sampler("proportional", [95, 31, 7])
    order = task.train_order(data, 10, seed=1, epoch=2)
    assert sorted(np.concatenate(order).tolist()) == list(range(len(data)))
    again = task.train_order(data, 10, seed=1, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(order, again, strict=True))  # what exact resume needs
    other = task.train_order(data, 10, seed=1, epoch=3)
    assert not all(np.array_equal(a, b) for a, b in zip(order, other, strict=True))


def test_uniform_repeats_a_small_task_and_a_task_part_round_trips():
    task, data = sampler("uniform", [200, 10])
    order = task.train_order(data, 10, seed=0, epoch=0)
    small = [rows for rows in order if data.fields["task"][rows[0]] == 1]
    assert len(small) == 10 and len({tuple(sorted(r)) for r in small}) == 1  # its one batch, ten times
    part = task.part(data, "t1")
    assert len(part) == 10 and set(part.fields) == {"label"} and (part.fields["label"] == 1).all()
    assert sampling_probabilities([4, 1], "temperature", 2.0) == pytest.approx([2 / 3, 1 / 3])


@pytest.mark.parametrize("strategy", ["full", "head", "lora"])
def test_strategies_train_the_shared_backbone_and_every_head_at_the_head_lr(tiny_model_dir, strategy):
    from transformers import AutoModelForCausalLM

    from tailor.models.heads import TailorModel
    from tailor.strategies import apply_strategy

    sub = [{"name": n, "type": "classification", "labels": ["x", "y"], "data": {"train": "f"}} for n in ("a", "b")]
    cfg = validate({"task": {"type": "multitask", "tasks": [*sub, {"name": "c", "type": "lm", "data": {"train": "f"}}]},
                    "strategy": {"name": strategy, "head_lr_mult": 4}})
    task = build_task(cfg.task, cfg)
    backbone = AutoModelForCausalLM.from_pretrained(tiny_model_dir("gpt2"))
    model = TailorModel(backbone, task.build_heads(32))
    assert task.lm_head_tasks == ["c"] and model.heads["a"]["a"] is not model.heads["b"]["b"]  # one head per task
    plan = apply_strategy(model, cfg.strategy, 1e-3, 0.0, output_layers=task.uses_lm_head)
    lr = {id(p): g["lr"] for g in plan.groups for p in g["params"]}
    heads = list(model.heads.parameters())
    assert len(heads) == 8 and all(lr.get(id(p)) == pytest.approx(4e-3) for p in heads)
    shared = {"full": 1e-3, "lora": 1e-3, "head": None}[strategy]
    blocks = [p for n, p in model.backbone.named_parameters() if ".h.0." in n and (strategy != "lora" or "lora_" in n)]
    assert blocks and all(lr.get(id(p)) == shared for p in blocks)
    if strategy == "head":  # the LM sub-task's head (the tied output embedding) trains with the task layers
        assert lr[id(model.backbone.get_output_embeddings().weight)] == pytest.approx(4e-3)


# ------------------------------------------------------------------ config errors


@pytest.mark.parametrize("change, expected", [
    (lambda t: t[1].update(name="topic"), "task.tasks.1.name: 'topic' is already the name of task.tasks.0"),
    (lambda t: t[2].pop("data"), "task.tasks.2.data.train: sub-task 'where' has no data"),
    (lambda t: t[3].pop("name"), "task.tasks.3.name: every sub-task needs a name"),
])
def test_config_mistakes_name_the_key_exit_2_without_traceback(tmp_path, change, expected):
    path = write_config(tmp_path, "unused-model")
    cfg = yaml.safe_load(path.read_text())
    change(cfg["task"]["tasks"])
    path.write_text(yaml.safe_dump(cfg))
    result = invoke("train", path)
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, result.output
    with pytest.raises(ConfigError, match="train.metric: 'nope/f1' is neither multitask_score"):
        load_config(write_config(tmp_path, "unused-model"), ["train.metric=nope/f1"])


# ------------------------------------------------------------------ the run


def test_each_task_is_scored_on_its_own_split_in_metrics_json_and_the_report(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "multitask" and metrics["metric"] == "multitask_score"
    for side in ("baseline", "fine_tuned"):
        test = metrics[side]["test"]
        assert 0 <= test["topic/accuracy"] <= 1 and test["size/mse"] >= 0 and 0 <= test["where/f1"] <= 1
        assert test["notes/loss"] > 0 and 0 < test["multitask_score"] <= 1
    assert np.sum(metrics["fine_tuned"]["test"]["topic/confusion"]) == 30  # the topic test file, all of it
    single = metrics["single_task"]
    assert set(single) == set(TASKS) and "accuracy" in single["topic"]["test"] and "loss" in single["notes"]["test"]
    assert (run / "single" / "topic-001" / "metrics.json").is_file()
    report = (run / "report.md").read_text()
    assert "| task | test metric | pre-trained | multitask | single-task |" in report
    for row in ("| topic | accuracy |", "| size | mse |", "| where | f1 |", "| notes | loss |", "| all | multitask_score |"):
        assert row in report, row
    assert "## where: Sample answers (test)" in report
    assert "## topic: Confusion matrix (test, fine-tuned)" in report and "## topic: Per class (test)" in report
    assert (run / "confusion_matrix-topic.png").stat().st_size > 0
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("split") == "validation"]
    assert rows and all("topic/macro_f1" in r and "where/f1" in r for r in rows)
    heads = json.loads((run / "tailor.json").read_text())["heads"]
    assert heads == ["topic", "size", "where"]  # the LM sub-task's head is the backbone's LM head


def test_saved_heads_reload_by_task_name_and_predict_the_same(run, tmp_path):
    metrics = json.loads((run / "metrics.json").read_text())["fine_tuned"]["test"]
    data = run.parent.parent / "data"
    for name in ("topic", "size", "where"):
        out = tmp_path / f"{name}.jsonl"
        result = invoke("eval", run, "--task", name, "--data", data / f"{name}-test.jsonl", "--predictions", out)
        assert result.exit_code == 0, result.output
        again = {r["id"]: r["fine_tuned"] for r in read_jsonl(out)}
        saved = {r["id"]: r["fine_tuned"] for r in read_jsonl(run / f"predictions-{name}.jsonl")}
        assert again == saved and len(saved) >= 12
    from tailor.api import evaluate_file, load_run

    scored = evaluate_file(run, data / "size-test.jsonl", task="size")["metrics"]
    assert scored["mse"] == pytest.approx(metrics["size/mse"], rel=1e-6)
    model, _, _ = load_run(run, task="where")
    assert list(model.heads) == ["span"]


def test_using_a_multitask_run_without_task_lists_the_tasks(run):
    for args in (("generate", run, "hello"), ("eval", run, "--data", run / "config.yaml")):
        result = invoke(*args)
        assert result.exit_code == 2 and "pick one of its tasks with --task NAME" in result.output, result.output
        assert "topic, size, where, notes" in result.output and "Traceback" not in result.output
    result = invoke("generate", run, "The cat", "--task", "nope")
    assert result.exit_code == 2 and "has no task 'nope'" in result.output
    result = invoke("generate", run, "The cat", "--task", "notes", "--max-new-tokens", "4")
    assert result.exit_code == 0, result.output


def test_an_interrupted_multitask_run_resumes_to_the_same_result(run, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TAILOR_TEST_SIGNAL", "INT@step:3")
    result = invoke("train", write_config(tmp_path, tiny_model_dir("gpt2")))
    assert result.exit_code == 130, result.output
    monkeypatch.delenv("TAILOR_TEST_SIGNAL")
    again = tmp_path / "runs" / "mt-001"
    result = invoke("resume", again)
    assert result.exit_code == 0, result.output
    assert curve(again) == curve(run) and final_metrics(again) == final_metrics(run)


# ------------------------------------------------------------------ the recipe


def test_the_recipe_is_valid_and_runs_on_a_tiny_model(tmp_path, tiny_model_dir):
    cfg = load_config(RECIPE)
    assert [t.name for t in cfg.task.tasks] == ["sentiment", "intent", "policy"]
    assert [t.data.train for t in cfg.task.tasks] == [[str(RECIPE.parent / "data" / f)] for f in
                                                      ("reviews.jsonl", "intents.jsonl", "policy_qa.jsonl")]
    assert cfg.train.metric == "multitask_score" and cfg.task.tasks[1].method == "generative"
    world = build_world(0)
    files = [write_jsonl(tmp_path / f"{name}.jsonl", records) for name, records in (
        ("reviews", sentiment_records(world, 60, 0)), ("intents", intent_records(world, 64, 0)),
        ("policy", qa_records(world, 30, 0)))]
    result = invoke("train", RECIPE, f"model.path={tiny_model_dir('gpt2')}", f"output_dir={tmp_path / 'runs'}",
                    *[f"task.tasks.{i}.data.train={f}" for i, f in enumerate(files)], "task.tasks.2.data.max_length=96",
                    "train.max_steps=4", "train.batch_size=8", "eval.batch_size=32")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "multitask-001" / "metrics.json").read_text())["fine_tuned"]["test"]
    assert {"sentiment/macro_f1", "intent/macro_f1", "policy/f1", "multitask_score"} <= set(metrics)
