"""A split tailor makes itself never leaks: evaluation copies of training records are left out, with a warning."""

from tailor.data.prepare import drop_leaks


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
