"""Reading, checking and splitting a run's data: tailor's own split never leaks, bad records are reported wherever
they land, leakage between the user's files is handled as data.leakage says, and plain text splits by tokens."""

import json

import pytest
from rich.console import Console

from tailor.config import validate
from tailor.data.prepare import drop_leaks, prepare
from tailor.data.readers import DataError, Problem
from tailor.data.summary import print_warnings
from tailor.tasks import build_task


def rec(text, line):
    return {"text": text, "_line": line, "_file": "d.jsonl"}


def test_drop_leaks_keeps_train_and_names_lines():
    parts = {
        "train": [rec("The pump is fine.", 1), rec("a valve", 2)],
        "validation": [rec("the pump is FINE", 7), rec("new text", 8)],
        "test": [rec("A valve!", 9)],
    }
    problems = drop_leaks(parts, lambda r: r["text"], ["validation", "test"])
    assert [r["_line"] for r in parts["validation"]] == [8]
    assert parts["test"] == [] and len(parts["train"]) == 2
    assert {p.line for p in problems} == {7, 9}
    assert all(p.severity == "warning" and "duplicates train line" in p.message for p in problems)


@pytest.fixture(scope="module")
def tok(tmp_path_factory, make_tokenizer):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def prepared(tok, max_length=32, **config):
    cfg = validate(config).resolved()
    return prepare(cfg, cfg.data, build_task(cfg.task, cfg), tok, max_length)


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_bad_records_are_errors_wherever_the_split_puts_them(tmp_path, tok):
    """Records that cannot be read are not taken for copies of each other (and dropped from validation/test)."""
    rows = [{"text": f"example number {i} is here", "label": "ab"[i % 2]} for i in range(40)]
    bad = set(range(0, 40, 4))
    for i in bad:
        rows[i] = {"txt": "broken"}
    with pytest.raises(DataError) as e:
        prepared(tok, task="classification", data={"train": jsonl(tmp_path / "d.jsonl", rows)})
    errors = [p for p in e.value.problems if p.severity == "error"]
    assert {p.line for p in errors} == {i + 1 for i in bad} and len(errors) == 2 * len(bad)  # text and label each
    assert not [p for p in e.value.problems if p.severity == "warning"]


def leaky(tmp_path):
    """A training file and a test file (an official benchmark, say) that share two examples."""
    train = [{"text": f"question {i} about the pump", "label": "ab"[i % 2]} for i in range(30)]
    test = [train[3], {"text": "a fresh question", "label": "a"}, train[8] | {"text": "QUESTION 8 about the pump!"}]
    return {"train": jsonl(tmp_path / "train.jsonl", train), "test": jsonl(tmp_path / "test.jsonl", test)}


def test_leakage_stops_the_run_and_names_the_setting(tmp_path, tok):
    with pytest.raises(DataError) as e:
        prepared(tok, task="classification", data=leaky(tmp_path))
    leaks = [p for p in e.value.problems if p.kind == "leakage"]
    assert [p.line for p in leaks] == [1, 3] and all(p.severity == "error" for p in leaks)
    assert "set data.leakage: drop (train without the copy) or keep (train on it anyway)" in leaks[0].message


def test_leakage_drop_trains_without_the_copies_and_keep_warns(tmp_path, tok):
    dropped = prepared(tok, task="classification", data=leaky(tmp_path) | {"leakage": "drop"})
    assert len(dropped.records["test"]) == 3  # the evaluation file stays as it is
    train_text = {r["text"] for r in dropped.records["train"] + dropped.records["validation"]}
    assert "question 3 about the pump" not in train_text and "question 8 about the pump" not in train_text
    assert dropped.report.leakage == {"setting": "drop", "dropped_from_train": 2, "kept": 0}
    assert json.loads(json.dumps(dropped.report.to_json()))["leakage"]["dropped_from_train"] == 2
    kept = prepared(tok, task="classification", data=leaky(tmp_path) | {"leakage": "keep"})
    assert kept.report.leakage == {"setting": "keep", "dropped_from_train": 0, "kept": 2}
    assert [p.severity for p in kept.report.problems if p.kind == "leakage"] == ["warning", "warning"]


def test_one_long_line_of_plain_text_is_split_by_tokens(tmp_path, tok):
    words = "the pump valve was checked fine noisy filter replaced".split()
    text = " ".join(words[(i * 7) % len(words)] + str(i) for i in range(3000))  # one line, every word different
    (tmp_path / "one.txt").write_text(text + "\n")
    prep = prepared(tok, task="lm", data={"train": str(tmp_path / "one.txt")})
    pieces = [r["text"] for split in ("train", "validation", "test") for r in prep.records[split]]
    assert all(prep.records[s] for s in ("train", "validation", "test"))
    assert "".join(sorted(pieces, key=text.index)) == text  # cut, nothing lost
    assert max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in pieces) <= 8 * 32 + 1
    short = prepared(tok, task="lm", data={"train": jsonl(tmp_path / "docs.jsonl", [{"text": f"doc {i}"} for i in range(20)])})
    assert sum(len(short.records[s]) for s in ("train", "validation", "test")) == 20  # short documents stay whole


def test_many_warnings_are_summarised_by_kind():
    warnings = [Problem("warning", "d.jsonl", i, None, f"train line {i} duplicates train line 1", kind="duplicate within train")
                for i in range(2, 60)] + [Problem("warning", "d.jsonl", 70, "label", "rare", kind="rare label")]
    console = Console(record=True, width=200)
    print_warnings(console, warnings)
    out = console.export_text()
    assert "59 data warnings (58 duplicate within train, 1 rare label); all are listed in the run's data.json" in out
    assert out.count("warning d.jsonl") == 3
    console = Console(record=True, width=200)
    print_warnings(console, warnings[:4])
    assert console.export_text().count("warning d.jsonl") == 4
