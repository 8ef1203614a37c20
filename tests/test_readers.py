import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailor.data import readers
from tailor.data.readers import (
    DataError,
    Problem,
    apply_field_map,
    iter_text_documents,
    read_records,
)


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def errors(problems):
    return [p for p in problems if p.severity == "error"]


def test_problem_str_names_file_line_and_field():
    p = Problem(
        "error",
        "reviews.jsonl",
        17,
        "label",
        "'postive' is not one of negative, positive (fix the label or add it to task.labels)",
    )
    assert str(p) == (
        "reviews.jsonl:17: field 'label': 'postive' is not one of negative, positive "
        "(fix the label or add it to task.labels)"
    )
    assert (
        str(Problem("error", "a.csv", None, None, "the file is empty"))
        == "a.csv: the file is empty"
    )
    assert (
        str(Problem("error", "<config>", None, "data.split.test", "too big"))
        == "<config>: data.split.test: too big"
    )


def test_data_error_lists_problems_errors_first_and_limits():
    problems = [Problem("warning", "a.jsonl", 1, None, "w")] + [
        Problem("error", "a.jsonl", i, None, "bad") for i in range(1, 26)
    ]
    text = str(DataError(problems))
    lines = text.splitlines()
    assert lines[0] == "  error: a.jsonl:1: bad"
    assert "  ... and 5 more errors" in lines
    assert lines[-1] == "  warning: a.jsonl:1: w"
    again = pickle.loads(pickle.dumps(DataError(problems)))
    assert again.problems == problems


def test_jsonl_broken_lines_are_reported_and_reading_continues(tmp_path):
    f = write(
        tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"\n[1, 2]\n\n{"text": "c"}\n'
    )
    records, problems = read_records(f)
    assert [r["_line"] for r in records] == [1, 5]
    assert [r["text"] for r in records] == ["a", "c"]
    assert records[0]["_file"] == str(f)
    assert [(p.severity, p.line) for p in problems] == [("error", 2), ("error", 3)]
    assert str(problems[0]).startswith(f"{f}:2: not valid JSON")
    assert "not an object" in problems[1].message and "name it .json" in problems[1].message


def test_pretty_printed_json_in_a_jsonl_file_gets_a_hint(tmp_path):
    f = write(tmp_path / "d.jsonl", '[\n  {"text": "a"}\n]\n')
    _, problems = read_records(f)
    assert problems[0].line == 1 and "pretty-printed" in problems[0].message


def test_csv_records_are_numbered_by_the_line_they_start_on(tmp_path):
    """A quoted value may span lines: the records after it are reported at their own line, as an editor shows it."""
    f = write(
        tmp_path / "d.csv",
        'text,label\n"good, really",pos\nbad,neg,extra\n"two\nlines",neg\nok,pos,\n\nlast,neg\n"a\nb\nc",pos,x\n',
    )
    records, problems = read_records(f)
    assert [(r["text"], r["_line"]) for r in records] == [
        ("good, really", 2),
        ("two\nlines", 4),
        ("ok", 6),
        ("last", 8),
    ]
    assert set(records[0]) == {"text", "label", "_line", "_file"}
    assert [(p.line, p.severity) for p in problems] == [(3, "error"), (9, "error")]
    assert "3 values but the header has 2 columns" in problems[0].message
    assert 'quote values that contain commas' in problems[1].message


def test_a_missing_value_is_called_missing_not_a_separator_inside_a_value(tmp_path):
    tsv = write(tmp_path / "d.tsv", "text\tlabel\nhello\tpos\nonly one\nbye\tneg\tx\n")
    _, problems = read_records(tsv)
    assert [p.line for p in problems] == [3, 4]
    assert "a value is missing" in problems[0].message and "tab" in problems[0].message
    assert "must not contain tabs" not in problems[0].message
    assert "must not contain tabs" in problems[1].message
    csv_file = write(tmp_path / "d.csv", "text,label\nhello,pos\nonly one\n")
    _, problems = read_records(csv_file)
    assert "a value is missing" in problems[0].message and "quote" not in problems[0].message


def test_csv_with_bom_and_crlf(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes(b"\xef\xbb\xbftext,label\r\nhi,pos\r\n")
    records, problems = read_records(f)
    assert problems == []
    assert records == [{"text": "hi", "label": "pos", "_line": 2, "_file": str(f)}]


def test_csv_header_problems(tmp_path):
    f = write(tmp_path / "d.csv", "text,text,\na,b,c\n")
    _, problems = read_records(f)
    assert {p.message for p in problems} == {
        "appears twice in the header; rename one",
        "column 3 of the header has no name; name it",
    }


def test_tsv_with_header_keeps_bare_quotes_and_undoes_pandas_quoting(tmp_path):
    f = write(
        tmp_path / "d.tsv",
        'sentence\tlabel\n"the movie" is fine\t1\n"say ""hi"""\t0\nit\'s, ok\t1\n',
    )
    records, problems = read_records(f)
    assert problems == []
    assert [(r["sentence"], r["label"], r["_line"]) for r in records] == [
        ('"the movie" is fine', "1", 2),
        ('say "hi"', "0", 3),
        ("it's, ok", "1", 4),
    ]


def test_tsv_ragged_row(tmp_path):
    f = write(tmp_path / "d.tsv", "sentence\tlabel\na\tb\tc\n")
    records, problems = read_records(f)
    assert records == [] and problems[0].line == 2 and "tabs" in problems[0].message


def test_parquet_round_trip(tmp_path):
    rows = [
        {
            "text": f"t{i}",
            "label": i % 2,
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": f"a{i}"},
            ],
        }
        for i in range(10)
    ]
    f = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), f, row_group_size=3)
    records, problems = read_records(f)
    assert problems == []
    assert [r["_line"] for r in records] == list(range(1, 11))
    assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in records] == rows


def test_not_a_parquet_file(tmp_path):
    f = write(tmp_path / "d.parquet", "text\nhello\n")
    records, problems = read_records(f)
    assert records == [] and "cannot be read as Parquet" in problems[0].message


def test_plain_text_documents_are_separated_by_blank_lines(tmp_path):
    f = write(tmp_path / "d.txt", "first line\nsecond line\n\n\nthird\n   \nfourth\nfifth")
    records, problems = read_records(f)
    assert problems == []
    assert [(r["text"], r["_line"]) for r in records] == [
        ("first line\nsecond line", 1),
        ("third", 5),
        ("fourth\nfifth", 7),
    ]
    records, _ = read_records(f, text_column_for_txt="body")
    assert records[0]["body"] == "first line\nsecond line"


def test_directory_reads_supported_files_sorted(tmp_path):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    write(d / "b.jsonl", '{"text": "from b"}\n')
    write(d / "a.csv", "text\nfrom a\n")
    write(d / "sub" / "c.txt", "from c\n")
    write(d / "README.md", "not data")
    write(d / ".hidden.jsonl", '{"text": "hidden"}\n')
    records, problems = read_records(d)
    assert [r["text"] for r in records] == ["from a", "from b", "from c"]
    assert records[2]["_file"] == str(d / "sub" / "c.txt")
    assert [(p.severity, p.file) for p in problems] == [("warning", str(d))]
    assert "README.md" in problems[0].message


def test_empty_folder_missing_file_unknown_type_and_empty_file(tmp_path):
    (tmp_path / "empty").mkdir()
    for path, words in [
        (tmp_path / "empty", "no data files"),
        (tmp_path / "nope.jsonl", "no such file"),
        (write(tmp_path / "d.xlsx", "x"), "unknown file type '.xlsx'"),
        (write(tmp_path / "d.jsonl", ""), "the file is empty"),
        (write(tmp_path / "e.jsonl", "\n\n"), "contains no records"),
        (write(tmp_path / "h.csv", "text,label\n"), "contains no records"),
    ]:
        records, problems = read_records(path)
        assert records == []
        assert (
            len(problems) == 1 and problems[0].severity == "error" and words in problems[0].message
        ), path


def test_non_utf8_bytes_name_line_and_offset(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes(b'{"text": "ok"}\n' + '{"text": "café"}\n'.encode("latin-1") + b'{"text": "x"}\n')
    records, problems = read_records(f)
    assert len(records) == 3  # the undecodable byte is replaced, and the file is reported
    assert len(problems) == 1
    p = problems[0]
    assert p.severity == "error" and p.line == 2
    assert "0xe9" in p.message and f"offset {15 + 13}" in p.message and "UTF-8" in p.message


def test_utf16_file_is_reported(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes("text\nhi\n".encode("utf-16"))
    records, problems = read_records(f)
    assert records == [] and "UTF-16" in problems[0].message


def test_alpaca_json_array(tmp_path):
    rows = [
        {"instruction": "Add", "input": "1 and 2", "output": "3"},
        {"instruction": "Greet", "input": "", "output": "Hello [there]"},
        {"instruction": "Say", "input": "", "output": 'a } brace, "quoted"'},
    ]
    f = write(tmp_path / "alpaca.json", json.dumps(rows, indent=4))
    records, problems = read_records(f)
    assert problems == []
    assert [r["_line"] for r in records] == [1, 2, 3]  # element numbers
    assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in records] == rows


def test_json_array_streams_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK", 16)
    rows = [{"text": f"example {i}", "nested": {"a": [i, {"b": i}]}} for i in range(50)]
    f = write(tmp_path / "d.json", json.dumps(rows, indent=2))
    records, problems = read_records(f)
    assert problems == []
    assert [r["text"] for r in records] == [r["text"] for r in rows]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ('[\n  {"a": 1},\n  {"a": 2}\n  {"a": 3}\n]', 4, "expected ',' or ']'"),
        ('[\n  {"a": 1},\n]\n', 3, "Expecting value"),
        ('[\n  {"a": 1}\n', 3, "not closed"),
        ('[{"a": 1}] x', 1, "after the closing"),
        ('[\n {"a": 1,\n  "b": tru }\n]', 3, "Expecting value"),
    ],
)
def test_broken_json_array_names_the_line(tmp_path, text, line, words):
    _, problems = read_records(write(tmp_path / "d.json", text))
    assert len(errors(problems)) == 1
    assert problems[0].line == line and words in problems[0].message


def test_json_array_element_that_is_not_an_object(tmp_path):
    records, problems = read_records(write(tmp_path / "d.json", '[{"a": 1}, 5, {"a": 3}]'))
    assert [r["_line"] for r in records] == [1, 3]
    assert problems[0].line == 2 and "is a JSON number, not an object" in problems[0].message


def test_jsonl_misnamed_json_falls_back(tmp_path):
    records, problems = read_records(write(tmp_path / "d.json", '{"text": "a"}\n{"text": "b"}\n'))
    assert problems == [] and [(r["text"], r["_line"]) for r in records] == [("a", 1), ("b", 2)]


def test_json_object_with_records_inside_gets_a_hint(tmp_path):
    f = write(tmp_path / "d.json", json.dumps({"version": 1, "data": [{"text": "a"}]}, indent=2))
    records, problems = read_records(f)
    assert records == [] and "'data'" in problems[0].message and "JSON array" in problems[0].message


def test_apply_field_map_renames_and_reports_missing_columns(tmp_path):
    f = write(tmp_path / "d.csv", "sentence,stars\ngreat,5\n")
    records, _ = read_records(f)
    mapped, problems = apply_field_map(records, {"text": "sentence", "label": "stars"})
    assert problems == []
    assert mapped == [{"text": "great", "label": "5", "_line": 2, "_file": str(f)}]
    assert "sentence" in records[0]  # inputs untouched
    _, problems = apply_field_map(records, {"text": "review"})
    assert len(problems) == 1
    p = problems[0]
    assert (p.file, p.line, p.field) == (str(f), 2, "review")
    assert "sentence, stars" in p.message and "data.fields.text" in p.message


def test_apply_field_map_can_swap_columns():
    mapped, _ = apply_field_map([{"a": 1, "b": 2}], {"a": "b", "b": "a"})
    assert mapped == [{"a": 2, "b": 1}]


def test_iter_text_documents_streams_files_and_folders(tmp_path):
    write(tmp_path / "a.txt", "one\ntwo\n\nthree\n")
    (tmp_path / "more").mkdir()
    write(tmp_path / "more" / "b.jsonl", '{"text": "four"}\n{"text": ""}\n')
    docs = iter_text_documents([tmp_path / "a.txt", str(tmp_path / "more")])
    assert next(docs) == "one\ntwo"  # a generator: nothing else is read yet
    assert list(docs) == ["three", "four"]


def test_iter_text_documents_raises_after_streaming_the_good_ones(tmp_path):
    f = write(tmp_path / "c.jsonl", '{"text": "ok"}\n{"body": "no text"}\nnot json\n')
    seen = []
    with pytest.raises(DataError) as info:
        for doc in iter_text_documents(f):
            seen.append(doc)
    assert seen == ["ok"]
    assert [p.line for p in info.value.problems] == [2, 3]


def test_unreadable_file_is_a_problem(tmp_path, monkeypatch):
    f = write(tmp_path / "d.jsonl", '{"text": "a"}\n')

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(f), "open", refuse)
    records, problems = read_records(f)
    assert records == [] and problems[0].message == "cannot be read: Permission denied"
