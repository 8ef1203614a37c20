"""`tailor compare`: metrics side by side and the examples whose prediction changed, on hand-made runs."""

import json

from typer.testing import CliRunner

from tailor.cli import app
from tailor.evaluate.compare import compare_runs, to_markdown, write_section

# (text, reference, baseline, fine-tuned): 3 fixed, 1 broken, 1 wrong -> other wrong, 2 unchanged
EXAMPLES = [
    ("great phone", "positive", "negative", "positive"),
    ("it broke", "negative", "neutral", "negative"),
    ("it is fine", "neutral", "positive", "neutral"),
    ("love it", "positive", "positive", "negative"),
    ("meh", "neutral", "negative", "positive"),
    ("terrible", "negative", "negative", "negative"),
    ("ok", "neutral", "neutral", "neutral"),
]


def make_run(path, examples=EXAMPLES, test_ids=None, baseline=True, tuned_acc=5 / 7):
    path.mkdir(parents=True)
    rows = [{"row": i, "id": f"id{i}", "line": i + 1, "text": t, "reference": ref, "baseline": b, "fine_tuned": f}
            for i, (t, ref, b, f) in enumerate(examples)]
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = {"fine_tuned": {"test": {"accuracy": tuned_acc, "macro_f1": 0.6, "per_class": {}}}}
    if baseline:
        metrics["baseline"] = {"test": {"accuracy": 3 / 7, "macro_f1": 0.4}}
    (path / "metrics.json").write_text(json.dumps(metrics))
    split = {"train": ["a", "b"], "validation": [], "test": test_ids or [r["id"] for r in rows]}
    (path / "split.json").write_text(json.dumps(split))
    (path / "report.md").write_text("# run\n\n## Training\n\ntext\n")
    return path


def invoke(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


def test_baseline_vs_fine_tuned_sorts_every_change(tmp_path):
    cmp = compare_runs(make_run(tmp_path / "run-001"), limit=2)
    assert (cmp.n_fixed, cmp.n_broken, cmp.n_other, cmp.n_compared) == (3, 1, 1, 7)
    assert [i["text"] for i in cmp.fixed] == ["great phone", "it broke"]  # limited to 2, in file order
    assert cmp.broken[0] == {"text": "love it", "reference": "positive", "a": "positive", "b": "negative", "line": 4}
    assert cmp.metrics[0] == ("accuracy", 3 / 7, 5 / 7)


def test_cli_prints_and_writes_the_section_once(tmp_path):
    run = make_run(tmp_path / "run-001")
    out = invoke("compare", run)
    assert "3 fixed, 1 broken, 1 changed between wrong labels (of 7 examples)" in out
    assert "great phone" in out and "love it" in out and "+0.2857" in out
    invoke("compare", run)
    report = (run / "report.md").read_text()
    assert report.count("## Changed predictions: pre-trained vs fine-tuned (test)") == 1
    assert report.startswith("# run\n\n## Training\n\ntext\n")  # the rest of the report is kept
    assert "| great phone | positive | negative | positive |" in report


def test_two_runs_on_the_same_split_and_on_different_ones(tmp_path):
    a = make_run(tmp_path / "a-001")
    flipped = [(t, ref, f, b) for t, ref, b, f in EXAMPLES]  # b's fine-tuned = a's baseline
    b = make_run(tmp_path / "b-001", flipped, tuned_acc=3 / 7)
    cmp = compare_runs(a, b)
    assert cmp.note is None and cmp.names == ("a-001", "b-001")
    assert (cmp.n_fixed, cmp.n_broken) == (1, 3)  # from a's fine-tuned to b's: the mirror image
    other = make_run(tmp_path / "c-001", test_ids=["id0", "id1", "zzz"])
    out = invoke("compare", a, other, "--no-write")
    assert "different test splits (7 and 3 examples, 2 shared)" in out
    assert "## Changed predictions" not in (a / "report.md").read_text()


def test_regression_changes_rank_by_error(tmp_path):
    examples = [("a", 3.0, 1.0, 2.5), ("b", 5.0, 4.0, 4.9), ("c", 1.0, 1.2, 3.0), ("d", 2.0, 2.0, 2.0)]
    cmp = compare_runs(make_run(tmp_path / "r-001", examples))
    assert [i["text"] for i in cmp.fixed] == ["a", "b"]  # error fell by 1.5, then 0.9
    assert [i["text"] for i in cmp.broken] == ["c"]
    assert "Of 4 examples, 2 were fixed, 1 broken." in to_markdown(cmp)


def test_mistakes_exit_2_with_a_reason(tmp_path):
    assert "no baseline scores" in invoke("compare", make_run(tmp_path / "x-001", baseline=False), code=2)
    (tmp_path / "empty").mkdir()
    assert "not a finished run" in invoke("compare", tmp_path / "empty", code=2)


def test_write_section_replaces_only_its_own_section(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# r\n\n## A\n\none\n\n## B\n\ntwo\n")
    write_section(report, "## A\n\nnew")
    assert report.read_text() == "# r\n\n## A\n\nnew\n\n## B\n\ntwo\n"


def test_runs_of_different_tasks_are_refused(tmp_path):
    a = make_run(tmp_path / "cls-001")
    chat = tmp_path / "chat-001"
    make_run(chat)
    (chat / "metrics.json").write_text(json.dumps({"task": "chat", "fine_tuned": {"test": {"token_f1": 0.3, "bleu": 5.0}}}))
    metrics = json.loads((a / "metrics.json").read_text()) | {"task": "classification"}
    (a / "metrics.json").write_text(json.dumps(metrics))
    out = invoke("compare", a, chat, "--no-write", code=2)
    assert f"cannot compare {a} (classification) with {chat} (chat)" in out and "different tasks" in out


def test_compare_json_for_scripts(tmp_path):
    run = make_run(tmp_path / "run-001")
    result = CliRunner().invoke(app, ["compare", str(run), "--json", "--limit", "1"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == {"a", "b", "split", "note", "metrics", "examples", "fixed", "broken", "other_changes",
                         "fixed_examples", "broken_examples"}
    assert (data["a"], data["b"], data["split"], data["fixed"], data["broken"]) == ("pre-trained", "fine-tuned", "test", 3, 1)
    assert data["metrics"][0] == {"metric": "accuracy", "a": 3 / 7, "b": 5 / 7, "change": 5 / 7 - 3 / 7}
    assert len(data["fixed_examples"]) == 1
