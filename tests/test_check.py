import json

import pytest
from rich.console import Console

from tailor.data.check import (
    FieldSpec,
    Schema,
    check_label_coverage,
    check_schema,
    find_duplicates,
    normalize_text,
    token_statistics,
)
from tailor.data.readers import Problem, read_records
from tailor.data.summary import DataReport, estimate_time, render_report


def rec(line, file="d.jsonl", **fields):
    return {**fields, "_line": line, "_file": file}


CLASSIFY = Schema(
    [FieldSpec("text", "str"), FieldSpec("label", "label")], labels=["negative", "positive"]
)


def test_missing_field_names_file_line_and_field(tmp_path):
    f = tmp_path / "reviews.jsonl"
    f.write_text(
        '{"text": "good", "label": "positive"}\n{"label": "negative"}\n{"text": "  ", "label": "negative"}\n'
    )
    records, _ = read_records(f)
    problems = check_schema(records, CLASSIFY)
    assert [(p.line, p.field) for p in problems] == [(2, "text"), (3, "text")]
    assert str(problems[0]) == f"{f}:2: field 'text': missing; every record needs 'text'"
    assert "empty" in problems[1].message


def test_field_missing_everywhere_is_one_problem_listing_the_columns():
    records = [rec(i, review="r", label="positive") for i in range(1, 101)]
    problems = check_schema(records, CLASSIFY)
    assert len(problems) == 1
    p = problems[0]
    assert p.line is None and p.field == "text" and "all 100 records" in p.message
    assert "review, label" in p.message and "data.fields" in p.message


def test_unknown_label_suggests_the_near_one():
    problems = check_schema([rec(17, "reviews.jsonl", text="meh", label="postive")], CLASSIFY)
    assert [str(p) for p in problems] == [
        "reviews.jsonl:17: field 'label': 'postive' is not one of negative, positive "
        "(did you mean 'positive'? fix the label or add it to task.labels)"
    ]


def test_integer_labels_match_string_label_names():
    schema = Schema([FieldSpec("label", "label")], labels=["0", "1"])
    assert check_schema([rec(1, label=0), rec(2, label=1), rec(3, label="1")], schema) == []
    problems = check_schema([rec(1, label=2)], schema)
    assert len(problems) == 1 and "'2' is not one of 0, 1" in problems[0].message


def test_labels_mixing_numbers_and_names_is_an_error():
    schema = Schema([FieldSpec("label", "label")])
    problems = check_schema(
        [rec(1, label="positive"), rec(2, label=0), rec(3, label="negative")], schema
    )
    assert len(problems) == 1
    assert problems[0].line == 2 and "mix numbers" in problems[0].message


@pytest.mark.parametrize(
    "value, words",
    [
        (3.5, "expected a label"),
        (True, "expected a label"),
        ("", "empty"),
        ([], "expected a label"),
    ],
)
def test_bad_label_values(value, words):
    problems = check_schema([rec(1, label=value)], Schema([FieldSpec("label", "label")]))
    assert len(problems) == 1 and words in problems[0].message


def test_wrong_types_and_numbers():
    schema = Schema(
        [
            FieldSpec("text", "str"),
            FieldSpec("score", "number"),
            FieldSpec("note", "str", required=False),
        ]
    )
    good = [
        rec(1, text="a", score="4.5"),
        rec(2, text="b", score=3),
        rec(3, text="c", score=1.0, note="x"),
    ]
    assert check_schema(good, schema) == []
    bad = [rec(1, text=5, score="high"), rec(2, text="b", score=float("nan"), note=3)]
    assert [(p.line, p.field) for p in check_schema(bad, schema)] == [
        (1, "text"),
        (1, "score"),
        (2, "score"),
        (2, "note"),
    ]


def messages(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


@pytest.mark.parametrize(
    "value, words",
    [
        (None, None),
        ("user: hi", "got text"),
        ([], "non-empty"),
        (messages(("user", "hi")), "no assistant message"),
        (
            messages(("human", "hi"), ("assistant", "yo")),
            "role 'human' is not one of system, user, assistant",
        ),
        ([{"from": "human", "value": "hi"}], "ShareGPT"),
        ([{"role": "user", "content": ["x"]}], "content must be text"),
    ],
)
def test_messages(value, words):
    conv = (
        value
        if value is not None
        else messages(("system", "be brief"), ("user", "hi"), ("assistant", "hello"))
    )
    problems = check_schema([rec(4, messages=conv)], Schema([FieldSpec("messages", "messages")]))
    if words is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].line == 4 and words in problems[0].message


@pytest.mark.parametrize(
    "answers, words",
    [
        ({"text": ["Paris"], "answer_start": [13]}, None),
        ({"text": [], "answer_start": []}, None),  # unanswerable (SQuAD v2)
        ({"text": ["Paris", "France"], "answer_start": [13]}, "2 answer texts but 1 answer_start"),
        ({"text": "Paris", "answer_start": 13}, "must be lists"),
        (
            {"text": ["Paris"], "answer_start": [12]},
            "not at answer_start 12 of the context (it occurs at 13)",
        ),
        ({"text": ["Rome"], "answer_start": [0]}, "does not occur"),
        ({"answer": "Paris"}, "SQuAD"),
        ({"text": ["Paris"], "answer_start": [-1]}, ">= 0"),
    ],
)
def test_answers(answers, words):
    schema = Schema([FieldSpec("context", "str"), FieldSpec("answers", "answers")])
    problems = check_schema(
        [rec(1, context="The city is  Paris, in France.", answers=answers)], schema
    )
    if words is None:
        assert problems == []
    else:
        assert len(problems) == 1 and words in problems[0].message


def test_label_coverage():
    splits = {
        "train": [rec(1, label="a"), rec(2, label="a"), rec(3, label="b")],
        "validation": [rec(4, label="a")],
        "test": [rec(5, label="c"), rec(6, label="c"), rec(7, label="a")],
    }
    problems = check_label_coverage(splits, "label")
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    assert [(p.line, p.field) for p in errors] == [(5, "label")]
    assert "'c' is in test (2 record(s)) but never in train" in errors[0].message
    assert [p.line for p in warnings] == [3] and "only 1 training example" in warnings[0].message


def test_label_coverage_compares_int_and_str_labels_as_text():
    splits = {
        "train": [rec(1, label=0), rec(2, label=0), rec(3, label=1), rec(4, label=1)],
        "test": [rec(5, label="1")],
    }
    assert check_label_coverage(splits, "label") == []


def test_normalize_text():
    assert normalize_text("  Hello,   WORLD!! ") == "hello world"
    assert normalize_text("Don\u2019t \u201cstop\u201d \u2014 now\u2026") == normalize_text(
        "don't stop now"
    )
    assert normalize_text("Straße") == normalize_text("STRASSE")
    assert normalize_text("...") == ""


def test_duplicates_across_splits_name_both_locations():
    splits = {
        "train": [rec(i, "all.jsonl", text=f"example {i}") for i in range(1, 400)],
        "test": [rec(12, "all.jsonl", text="example 340"), rec(13, "all.jsonl", text="fresh")],
    }
    problems = find_duplicates(splits, lambda r: r["text"])
    assert len(problems) == 1
    p = problems[0]
    assert (p.severity, p.file, p.line) == ("error", "all.jsonl", 12)
    assert p.message == (
        "test line 12 duplicates train line 340 (leakage: the model would be scored on an "
        "example it trained on; remove one, or set data.leakage: drop (train without the copy) or keep "
        "(train on it anyway))"
    )


def test_near_duplicates_within_and_across_splits():
    splits = {
        "validation": [rec(1, "v.jsonl", text="The END."), rec(2, "v.jsonl", text="unique")],
        "train": [
            rec(1, "t.jsonl", text="Great movie!"),
            rec(2, "t.jsonl", text="great   movie"),
            rec(3, "t.jsonl", text="Great movie!"),
            rec(4, "t.jsonl", text="..."),
        ],
        "test": [rec(7, "s.jsonl", text="the end"), rec(8, "s.jsonl", text="GREAT movie")],
    }
    problems = find_duplicates(splits, lambda r: r["text"])
    found = {(p.file, p.line): (p.severity, p.message) for p in problems}
    assert set(found) == {("t.jsonl", 2), ("t.jsonl", 3), ("s.jsonl", 7), ("s.jsonl", 8)}
    assert found[("t.jsonl", 2)][0] == "warning" and "near-duplicate" in found[("t.jsonl", 2)][1]
    assert found[("t.jsonl", 3)] == (
        "warning",
        "train line 3 duplicates train line 1 "
        "(it counts twice; remove one unless that is intended)",
    )
    assert found[("s.jsonl", 8)][0] == "error"
    assert (
        "near-duplicate" in found[("s.jsonl", 8)][1]
        and "train line 1 of t.jsonl" in found[("s.jsonl", 8)][1]
    )
    assert (
        found[("s.jsonl", 7)][0] == "warning"
        and "validation line 1 of v.jsonl" in found[("s.jsonl", 7)][1]
    )


def test_different_texts_are_not_duplicates():
    splits = {
        "train": [rec(1, text="a good film"), rec(2, text="a good film, too")],
        "test": [rec(3, text="film")],
    }
    assert find_duplicates(splits, lambda r: r["text"]) == []


def test_token_statistics_on_known_lengths():
    lengths = {"train": list(range(100, 0, -1)), "validation": [5, 1, 3, 2, 4], "test": []}
    stats = token_statistics(lengths, max_length=90, epochs=2)
    train = stats["splits"]["train"]
    assert train["count"] == 100 and train["mean"] == 50.5 and train["max"] == 100
    assert (
        train["p50"] == 50 and train["p95"] == 95
    )  # nearest rank: 95 of the 100 lengths are <= 95
    assert train["total"] == 5050 and train["kept"] == 5050 - 55
    assert train["n_truncated"] == 10 and train["truncated_fraction"] == 0.1
    assert train["tokens_lost_mean"] == 5.5 and train["tokens_lost_max"] == 10
    val = stats["splits"]["validation"]
    assert (val["p50"], val["p95"], val["mean"], val["n_truncated"], val["tokens_lost_max"]) == (
        3,
        5,
        3.0,
        0,
        0,
    )
    assert stats["splits"]["test"] == {"count": 0}
    assert stats["train_tokens_total"] == 2 * 4995
    assert stats["max_length"] == 90 and stats["epochs"] == 2


@pytest.mark.parametrize(
    "tokens, tps, expected",
    [
        (1000, 100, "under a minute"),
        (24_000, 100, "about 4 min"),
        (100 * 3600 * 3, 100, "about 3 h"),
        (100 * 3600 * 2.5, 100, "about 2.5 h"),
        (100 * 3600 * 24 * 5, 100, "about 5 days"),
        (10, 0, "unknown"),
    ],
)
def test_estimate_time(tokens, tps, expected):
    assert estimate_time(tokens, tps) == expected


def report_with(n_errors, n_warnings):
    problems = [
        Problem("error", "d.jsonl", i, "text", f"bad [bold]{i}[/bold]")
        for i in range(1, n_errors + 1)
    ]
    problems += [Problem("warning", "d.jsonl", i, None, "meh") for i in range(1, n_warnings + 1)]
    stats = token_statistics({"train": [10, 20, 300], "validation": [7]}, max_length=256)
    return DataReport(
        problems=problems, stats=stats, splits={"train": 3, "validation": 1, "test": 0}
    )


def test_render_report_errors_then_warnings_with_limit_and_table():
    console = Console(record=True, width=120)
    render_report(report_with(25, 2), console, limit=20)
    out = console.export_text()
    assert out.index("error: d.jsonl:1: field 'text': bad [bold]1[/bold]") < out.index(
        "warning: d.jsonl:1: meh"
    )
    assert "d.jsonl:20:" in out and "d.jsonl:21:" not in out
    assert "... and 5 more errors" in out and "25 error(s), 2 warning(s)" in out
    table = out[out.index("tokens per example") :]
    assert "train" in table and "validation" in table and "test" in table and "1 (33%)" in table
    assert "training sees 286 tokens" in out


def test_render_report_clean():
    console = Console(record=True, width=120)
    render_report(DataReport(problems=[], stats={}, splits={}), console)
    assert console.export_text().strip() == "no problems found"


def test_data_report_json():
    report = report_with(2, 1)
    assert [p.severity for p in report.errors()] == ["error", "error"] and len(
        report.warnings()
    ) == 1
    data = json.loads(json.dumps(report.to_json()))
    assert data["n_errors"] == 2 and data["n_warnings"] == 1
    assert data["errors"][0] == {
        "severity": "error",
        "file": "d.jsonl",
        "line": 1,
        "field": "text",
        "message": "bad [bold]1[/bold]",
        "kind": None,
    }
    assert data["warning_kinds"] == {"other": 1}
    assert (
        data["splits"]["train"] == 3 and data["token_statistics"]["splits"]["train"]["max"] == 300
    )


def test_duplicates_skip_records_the_key_cannot_read():
    splits = {
        "train": [rec(1, text="a b"), rec(2, other="x")],
        "test": [rec(3, text=None), rec(4, text="A, b")],
    }
    problems = find_duplicates(splits, lambda r: r["text"])
    assert [(p.line, p.severity) for p in problems] == [(4, "error")]


def test_data_of_another_task_says_which_task_it_looks_like():
    chats = [rec(i, messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
             for i in range(1, 4)]
    problems = check_schema(chats, CLASSIFY)
    assert [p.field for p in problems] == ["text", "label"]
    assert all("look like chat data: set task: chat" in p.message and "--task chat" in p.message for p in problems)
    squad = [rec(i, question="q", context="c", answers={"text": [], "answer_start": []}) for i in range(1, 3)]
    assert "look like qa data" in check_schema(squad, CLASSIFY)[0].message
    plain = [rec(i, sentence="s", label="positive") for i in range(1, 3)]
    assert "look like" not in check_schema(plain, CLASSIFY)[0].message  # no task fits: rename or map the column
