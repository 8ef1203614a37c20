import json
from collections import Counter

import pytest

from tailor.data.readers import DataError
from tailor.data.split import load_split, record_id, save_split, split_records


def make(labels: dict[str, int]) -> list[dict]:
    records = []
    for label, n in labels.items():
        records += [{"text": f"{label} {i}", "label": label} for i in range(n)]
    for line, r in enumerate(records, 1):
        r["_line"], r["_file"] = line, "d.jsonl"
    return records


def lines(splits):
    return {name: [r["_line"] for r in recs] for name, recs in splits.items()}


@pytest.mark.parametrize("seed", [0, 1, 7, 123, 2024])
@pytest.mark.parametrize(
    "n, validation, test, stratify",
    [
        (1000, 0.1, 0.1, None),
        (1000, 0.1, 0.2, "label"),
        (37, 5, 3, None),
        (37, 0.3, 0, "label"),
        (10, 0, 0, None),
        (3, 1, 1, "label"),
        (2, 0.1, 0, None),
        (0, 0.1, 0.1, None),
        (250, 0.05, 0.05, "label"),
    ],
)
def test_no_record_lost_or_duplicated(seed, n, validation, test, stratify):
    records = make({"a": n - n // 3 - n // 10, "b": n // 3, "c": n // 10})
    splits = split_records(records, validation, test, seed, stratify=stratify)
    assert set(splits) == {"train", "validation", "test"}
    placed = [r["_line"] for recs in splits.values() for r in recs]
    assert sorted(placed) == list(range(1, n + 1))
    for recs in splits.values():  # each split keeps the file's order
        assert [r["_line"] for r in recs] == sorted(r["_line"] for r in recs)

    def wanted(size):  # counts as given; fractions rounded half up, at least 1 when asked for
        return size if size >= 1 else min(n, max(1, int(size * n + 0.5))) if size else 0

    assert (len(splits["validation"]), len(splits["test"])) == (wanted(validation), wanted(test))


def test_same_seed_same_split_other_seed_other_split():
    records = make({"a": 300, "b": 100})
    for stratify in (None, "label"):
        one = split_records(records, 0.1, 0.1, 42, stratify=stratify)
        assert lines(one) == lines(
            split_records([dict(r) for r in records], 0.1, 0.1, 42, stratify=stratify)
        )
        assert lines(one) != lines(split_records(records, 0.1, 0.1, 43, stratify=stratify))


def test_stratification_keeps_proportions():
    records = make({"a": 600, "b": 300, "c": 100})
    splits = split_records(records, 0.1, 0.2, seed=3, stratify="label")
    counts = {name: Counter(r["label"] for r in recs) for name, recs in splits.items()}
    assert counts["validation"] == {"a": 60, "b": 30, "c": 10}
    assert counts["test"] == {"a": 120, "b": 60, "c": 20}
    assert counts["train"] == {"a": 420, "b": 210, "c": 70}


def test_stratification_gives_rare_labels_one_of_each_and_keeps_singletons_in_train():
    records = make({"common": 200, "rare": 3, "pair": 2, "single": 1})
    splits = split_records(records, 0.1, 0.1, seed=0, stratify="label")
    counts = {name: Counter(r["label"] for r in recs) for name, recs in splits.items()}
    assert counts["validation"]["rare"] == counts["test"]["rare"] == counts["train"]["rare"] == 1
    assert counts["train"]["single"] == 1 and counts["train"]["pair"] >= 1
    assert len(splits["validation"]) == len(splits["test"]) == 21


def test_stratified_split_still_meets_the_sizes_when_labels_are_unique():
    records = make({f"l{i}": 1 for i in range(50)})
    splits = split_records(records, 0.2, 0.2, seed=0, stratify="label")
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [30, 10, 10]


def test_stratify_field_missing_from_some_records():
    records = make({"a": 20, "b": 20})
    for r in records[::4]:
        del r["label"]
    splits = split_records(records, 0.25, 0, seed=1, stratify="label")
    assert len(splits["validation"]) == 10 and sum(len(v) for v in splits.values()) == 40


@pytest.mark.parametrize(
    "validation, test, key",
    [
        (0.5, 0.5, "data.split"),
        (0.7, 0.4, "data.split"),
        (100, 0, "data.split.validation"),
        (0, 100, "data.split.test"),
        (-0.1, 0.1, "data.split.validation"),
        (0.1, 1.5, "data.split.test"),
        (0.1, "10%", "data.split.test"),
        (0.1, 0.1, "data.split"),
    ],
)
def test_sizes_that_do_not_fit_name_the_setting(validation, test, key):
    with pytest.raises(DataError) as info:
        split_records(
            make({"a": 1 if (validation, test) == (0.1, 0.1) else 100}), validation, test, seed=0
        )
    (problem,) = info.value.problems
    assert problem.field == key and problem.file == "<config>"
    assert key in str(info.value)


def test_record_id_is_content_only_and_stable():
    a = {"text": "hi", "label": 1, "_line": 3, "_file": "a.jsonl"}
    b = {"label": 1, "text": "hi", "_line": 9, "_file": "b.csv"}
    assert record_id(a) == record_id(b)
    assert len(record_id(a)) == 40 and record_id(a) == record_id(dict(a))
    assert record_id(a) != record_id({**a, "label": 2})
    # pinned: ids saved with earlier runs must keep matching (sha1 of '{"label":1,"text":"é"}', UTF-8)
    assert (
        record_id({"text": "é", "label": 1, "_line": 1})
        == "713c8979dcfae3e11cad319ab3f008214598befc"
    )


def test_save_and_load_split(tmp_path):
    splits = split_records(make({"a": 30, "b": 10}), 0.2, 0.1, seed=0)
    path = tmp_path / "split.json"
    save_split(splits, path)
    loaded = load_split(path)
    assert loaded == {name: [record_id(r) for r in recs] for name, recs in splits.items()}
    save_split(loaded, path)  # ids are written as they are
    assert load_split(path) == loaded
    assert not (tmp_path / "split.json.tmp").exists()


def test_load_split_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\n oops")
    with pytest.raises(DataError) as info:
        load_split(bad)
    assert info.value.problems[0].line == 2
    bad.write_text(json.dumps({"train": [1, 2]}))
    with pytest.raises(DataError, match="expected"):
        load_split(bad)
