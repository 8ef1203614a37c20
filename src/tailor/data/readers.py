"""Read data files (jsonl, json, csv, tsv, parquet, txt) into records that remember their file and line."""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")
_KNOWN = ", ".join(SUFFIXES)
META = ("_line", "_file")  # keys every record carries besides its own fields
CONFIG = "<config>"  # Problem.file for problems in settings rather than in a data file
_CHUNK = 1 << 20  # characters of a JSON array parsed at a time
_NONSPACE = re.compile(r"\S")
_RESAVE = (
    "The file is probably in another encoding (Latin-1, Windows-1252); re-save it as UTF-8, "
    "e.g. `iconv -f cp1252 -t utf-8 old > new`"
)
_ONE_OBJECT = 'each line must be one JSON object, e.g. {"text": "...", "label": "..."}'
_PRETTY = "; the file looks like one pretty-printed JSON document: name it .json"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data: where it is, what is wrong and how to fix it."""

    severity: Literal["error", "warning"]
    file: str
    line: int | None
    field: str | None
    message: str
    kind: str | None = None  # what sort of problem, for summaries ("duplicate", "leakage", ...)

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.field is None:
            return f"{where}: {self.message}"
        what = self.field if self.file == CONFIG else f"field '{self.field}'"
        return f"{where}: {what}: {self.message}"


def _error(file: str, line: int | None, message: str, field: str | None = None) -> Problem:
    return Problem("error", file, line, field, message)


def format_problems(problems: Iterable[Problem], limit: int = 20) -> str:
    """Errors then warnings, one per line, at most `limit` of each."""
    problems = list(problems)
    lines = []
    for severity in ("error", "warning"):
        some = [p for p in problems if p.severity == severity]
        lines += [f"  {severity}: {p}" for p in some[:limit]]
        if len(some) > limit:
            lines.append(f"  ... and {len(some) - limit} more {severity}s")
    return "\n".join(lines)


class DataError(Exception):
    """The data cannot be used; carries every Problem found (str() lists them)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))

    def __reduce__(self):
        return (type(self), (self.problems,))


class _Utf8:
    """Decodes lines as UTF-8, remembering the first invalid byte (one Problem per file, not per line)."""

    def __init__(self, name: str):
        self.name, self.bad_lines = name, 0
        self.first: tuple[int, int, int] | None = None  # line, byte offset, byte

    def decode(self, raw: bytes, lineno: int, offset: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.bad_lines += 1
            if self.first is None:
                self.first = (lineno, offset + e.start, raw[e.start])
            return raw.decode("utf-8", errors="replace")

    def problems(self) -> list[Problem]:
        if self.first is None:
            return []
        line, offset, byte = self.first
        more = f"; {self.bad_lines} lines are affected" if self.bad_lines > 1 else ""
        msg = f"not valid UTF-8: byte 0x{byte:02x} at byte offset {offset}{more}. " + _RESAVE
        return [_error(self.name, line, msg)]


def _lines(path: Path, utf8: _Utf8) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a file, streamed, decoded as UTF-8 (a leading BOM dropped)."""
    offset = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw, offset = raw[3:], 3
            yield lineno, utf8.decode(raw, lineno, offset)
            offset += len(raw)


def _record(obj: dict, line: int, name: str) -> dict:
    obj["_line"], obj["_file"] = line, name
    return obj


_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _kind(value: object) -> str:
    return _KINDS.get(type(value), "number")


def _iter_jsonl(path: Path, name: str, problems: list[Problem]) -> Iterator[dict]:
    utf8 = _Utf8(name)
    for lineno, text in _lines(path, utf8):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            hint = _PRETTY if lineno == 1 and text.strip() in ("[", "{") else ""
            msg = f"not valid JSON ({e.msg} at column {e.colno}); {_ONE_OBJECT}{hint}"
            problems.append(_error(name, lineno, msg))
            continue
        if not isinstance(obj, dict):
            hint = (
                "; if the file holds one JSON array, name it .json" if isinstance(obj, list) else ""
            )
            problems.append(
                _error(name, lineno, f"a JSON {_kind(obj)}, not an object; {_ONE_OBJECT}{hint}")
            )
            continue
        yield _record(obj, lineno, name)
    problems += utf8.problems()


def _first_text(path: Path) -> tuple[str, str]:
    """The first non-space character of a file and its first non-blank line."""
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
            if line.strip():
                return line.strip()[0], line
    return "", ""


def _iter_json(path: Path, name: str, problems: list[Problem]) -> Iterator[dict]:
    """A JSON array of objects (Alpaca style), streamed; a JSON Lines file named .json is read as such."""
    first, line = _first_text(path)
    if first == "{":
        try:
            is_jsonl = isinstance(json.loads(line), dict)
        except json.JSONDecodeError:
            is_jsonl = False
        if is_jsonl:
            yield from _iter_jsonl(path, name, problems)
        else:
            problems.append(_json_object_problem(path, name))
        return
    if first != "[":
        msg = f"expected a JSON array of objects [{{...}}, ...] or JSON Lines, not {first!r}..."
        problems.append(_error(name, None, msg))
        return
    yield from _iter_json_array(path, name, problems)


def _json_object_problem(path: Path, name: str) -> Problem:
    try:
        obj = json.loads(path.read_bytes().decode("utf-8-sig"))
    except json.JSONDecodeError as e:
        return _error(name, e.lineno, f"not valid JSON: {e.msg} at column {e.colno}")
    except UnicodeDecodeError as e:
        return _error(name, None, f"not valid UTF-8 at byte offset {e.start}; re-save as UTF-8")
    lists = [k for k, v in obj.items() if isinstance(v, list)] if isinstance(obj, dict) else []
    msg = f"the file is one JSON {_kind(obj)}; tailor expects a JSON array of records or JSON Lines"
    if lists:
        msg += f"; the records may be the list under '{lists[0]}': save it on its own (jq '.{lists[0]}')"
    return _error(name, None, msg)


def _iter_json_array(path: Path, name: str, problems: list[Problem]) -> Iterator[dict]:
    """Parse `[obj, obj, ...]` a chunk of lines at a time, so memory stays flat for pretty-printed arrays."""
    utf8 = _Utf8(name)
    lines = _lines(path, utf8)
    parser = json.JSONDecoder()
    buf, pos, base = "", 0, 1  # buf[0] lies on line `base` of the file
    state, index = "[", 0  # what comes next: "[", "value", "sep" (',' or ']'), "end"

    def refill() -> bool:
        nonlocal buf, pos, base
        parts, size = [], 0
        for _, text in lines:
            parts.append(text)
            size += len(text)
            if size >= _CHUNK:
                break
        if not parts:
            return False
        base += buf.count("\n", 0, pos)
        buf, pos = buf[pos:] + "".join(parts), 0
        return True

    def syntax(at: int, msg: str) -> Problem:
        line = base + buf.count("\n", 0, at)
        col = at - buf.rfind("\n", 0, at)
        return _error(name, line, f"not valid JSON: {msg} (line {line}, column {col})")

    while True:
        m = _NONSPACE.search(buf, pos)
        if m is None:
            if refill():
                continue
            if state != "end":
                problems.append(syntax(len(buf), "the array is not closed with ']'"))
            break
        pos, ch = m.start(), m.group()
        if state == "end":
            problems.append(syntax(pos, "text after the closing ']'"))
            break
        if state == "[" or state == "sep":
            expected = "[" if state == "[" else ",]"
            if ch not in expected:
                wanted = " or ".join(repr(c) for c in expected)
                problems.append(syntax(pos, f"expected {wanted}, found {ch!r}"))
                break
            pos += 1
            state = "end" if ch == "]" else "value"
            continue
        if ch == "]" and index == 0:
            pos, state = pos + 1, "end"
            continue
        try:
            obj, end = parser.raw_decode(buf, pos)
        except json.JSONDecodeError as e:
            # buf ends at a line break, so an error at its very end may be a value continued on later lines
            if e.pos >= len(buf.rstrip()) and refill():
                continue
            problems.append(syntax(e.pos, e.msg))
            break
        index += 1
        pos, state = end, "sep"
        if isinstance(obj, dict):
            yield _record(obj, index, name)
        else:
            msg = f"element {index} of the array is a JSON {_kind(obj)}, not an object"
            problems.append(_error(name, index, msg))
    problems += utf8.problems()


def _unquote_tsv(value: str) -> str:
    """Undo the quoting some tools (pandas) apply to TSV values that contain a quote."""
    inner = value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"' and '"' not in inner.replace('""', ""):
        return inner.replace('""', '"')
    return value


def _iter_delimited(path: Path, name: str, problems: list[Problem], tsv: bool) -> Iterator[dict]:
    """CSV (quoted as Excel does) or TSV (no quoting: values hold no tabs or line breaks); a header row.

    Line numbers are the file's lines, as an editor shows them: a quoted CSV value may span several lines,
    and its record is reported at the line where it starts.
    """
    utf8 = _Utf8(name)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # long documents are normal here
    text = (t for _, t in _lines(path, utf8))
    reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(text)
    header: list[str] | None = None
    line = 1  # where the next record starts
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row:
                continue
            if tsv:
                row = [_unquote_tsv(v) for v in row]
            if header is None:
                header = row
                problems += _header_problems(header, name, start)
                continue
            extra = row[len(header) :]
            if len(row) < len(header) or any(v.strip() for v in extra):
                problems.append(_error(name, start, _width_problem(len(row), len(header), tsv)))
                continue
            yield _record(dict(zip(header, row, strict=False)), start, name)
    except csv.Error as e:
        problems.append(_error(name, line, f"cannot be parsed as {path.suffix[1:]}: {e}"))
    problems += utf8.problems()


def _width_problem(values: int, columns: int, tsv: bool) -> str:
    """A row with too few values (one is missing) or too many (a separator inside a value)."""
    msg = f"row has {values} values but the header has {columns} columns; "
    if values < columns:
        sep = "tab" if tsv else "comma"
        return msg + f"a value is missing: give every column a value (an empty one still needs its {sep})"
    if tsv:
        return msg + "values must not contain tabs (save as CSV or JSONL if they do)"
    return msg + 'quote values that contain commas, e.g. "like, this"'


def _header_problems(header: list[str], name: str, row: int) -> list[Problem]:
    problems = []
    for i, col in enumerate(header, 1):
        if not col.strip():
            problems.append(_error(name, row, f"column {i} of the header has no name; name it"))
        elif header.index(col) < i - 1:
            problems.append(_error(name, row, "appears twice in the header; rename one", field=col))
    return problems


def _iter_parquet(path: Path, name: str, problems: list[Problem]) -> Iterator[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                row += 1
                yield _record(obj, row, name)
    except (pa.ArrowException, OSError, ValueError) as e:
        msg = f"cannot be read as Parquet ({e}); is it a Parquet file?"
        problems.append(_error(name, row + 1 if row else None, msg))


def _documents(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(first line, text) of each document, documents being separated by blank lines."""
    first = 0
    doc: list[str] = []
    for lineno, text in lines:
        if text.strip():
            first = first if doc else lineno
            doc.append(text.rstrip("\r\n"))
        elif doc:
            yield first, "\n".join(doc)
            doc = []
    if doc:
        yield first, "\n".join(doc)


def _iter_txt(path: Path, name: str, problems: list[Problem], column: str) -> Iterator[dict]:
    utf8 = _Utf8(name)
    for line, doc in _documents(_lines(path, utf8)):
        yield {column: doc, "_line": line, "_file": name}
    problems += utf8.problems()


def _sniff(path: Path, name: str) -> Problem | None:
    """Problems that make a file unreadable as text: empty, UTF-16, binary."""
    with path.open("rb") as fh:
        head = fh.read(8192)
    if not head:
        return _error(name, None, "the file is empty")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _error(name, None, "the file is UTF-16; re-save it as UTF-8")
    if b"\x00" in head:
        return _error(
            name, None, "the file has NUL bytes: it is binary or UTF-16; re-save it as UTF-8"
        )
    return None


def _iter_file(path: Path, name: str, problems: list[Problem], column: str) -> Iterator[dict]:
    """Records of one file, streamed; its problems are appended to `problems` as they are found."""
    suffix = path.suffix.lower()
    try:
        if suffix != ".parquet" and (bad := _sniff(path, name)):
            problems.append(bad)
        elif suffix in (".jsonl", ".ndjson"):
            yield from _iter_jsonl(path, name, problems)
        elif suffix == ".json":
            yield from _iter_json(path, name, problems)
        elif suffix in (".csv", ".tsv"):
            yield from _iter_delimited(path, name, problems, tsv=suffix == ".tsv")
        elif suffix == ".parquet":
            yield from _iter_parquet(path, name, problems)
        else:
            yield from _iter_txt(path, name, problems, column)
    except OSError as e:  # permissions, a file that vanished, a disk error
        problems.append(_error(name, None, f"cannot be read: {e.strerror or e}"))


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def _data_files(path: str | Path, problems: list[Problem]) -> list[tuple[Path, str]]:
    """(path, name as given) of each data file a path names: the file itself, or a folder's files, sorted."""
    name, path = str(path), Path(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
        data = [p for p in found if p.suffix.lower() in SUFFIXES]
        skipped = [str(p.relative_to(path)) for p in found if p.suffix.lower() not in SUFFIXES]
        if skipped:
            shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
            msg = f"skipped {len(skipped)} file(s) that are not data files: {shown}"
            problems.append(Problem("warning", name, None, None, msg, kind="files skipped"))
        if not data:
            problems.append(_error(name, None, f"the folder holds no data files ({_KNOWN})"))
        return [(p, str(p)) for p in data]
    if not path.exists():
        msg = f"no such file or folder (looked in {Path.cwd()}); check the path"
        problems.append(_error(name, None, msg))
        return []
    if path.suffix.lower() not in SUFFIXES:
        msg = (
            f"unknown file type '{path.suffix}'; tailor reads {_KNOWN} (convert or rename the file)"
        )
        problems.append(_error(name, None, msg))
        return []
    return [(path, name)]


def read_records(
    path: str | Path, text_column_for_txt: str = "text"
) -> tuple[list[dict], list[Problem]]:
    """All records of a file or folder, each with `_line` and `_file`, and every problem found (no raising)."""
    problems: list[Problem] = []
    records: list[dict] = []
    for file, name in _data_files(path, problems):
        before = len(records)
        errors = sum(p.severity == "error" for p in problems)
        records += _iter_file(file, name, problems, text_column_for_txt)
        if len(records) == before and errors == sum(p.severity == "error" for p in problems):
            problems.append(_error(name, None, "the file contains no records"))
    return records, problems


def iter_text_documents(
    paths: str | Path | Iterable[str | Path], field: str = "text"
) -> Iterator[str]:
    """Stream the documents of text corpora (.txt: blank-line separated; others: the `field` of each record).

    Bad lines are skipped while streaming; DataError listing them is raised at the end.
    """
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    problems: list[Problem] = []
    for path in paths:
        for file, name in _data_files(path, problems):
            for record in _iter_file(file, name, problems, field):
                text = record.get(field)
                if not isinstance(text, str):
                    msg = f"missing or not text; each record of a text corpus needs '{field}'"
                    problems.append(_error(name, record["_line"], msg, field=field))
                elif text.strip():
                    yield text
    if any(p.severity == "error" for p in problems):
        raise DataError(problems)


def apply_field_map(
    records: list[dict], mapping: dict[str, str]
) -> tuple[list[dict], list[Problem]]:
    """Rename the user's columns to the task's names (`mapping`: canonical name -> user column).

    Returns new records (the inputs are not changed) and a Problem per file in which a mapped column is missing.
    """
    if not mapping:
        return records, []
    sources = set(mapping.values())
    missing: dict[tuple[str, str], list] = {}  # (file, column) -> [first record, count]
    out = []
    for r in records:
        new = {k: v for k, v in r.items() if k not in sources or k in META}
        for canonical, column in mapping.items():
            if column in r:
                new[canonical] = r[column]
            else:
                seen = missing.setdefault((r.get("_file", "<data>"), column), [r, 0])
                seen[1] += 1
        out.append(new)
    problems = []
    for (file, column), (first, count) in missing.items():
        canonical = next(k for k, v in mapping.items() if v == column)
        columns = ", ".join(k for k in first if k not in META) or "none"
        msg = (
            f"not found in {count} record(s) (data.fields.{canonical} names it); columns: {columns}"
        )
        problems.append(_error(file, first.get("_line"), msg, field=column))
    return out, problems
