import numpy as np

from tailor.data.batching import (
    IGNORE,
    WIDTH_MULTIPLE,
    bucketed_order,
    collate,
    from_examples,
    pack,
    padding_waste,
    sequential_order,
)


def random_lengths(n=800, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(20, 257, size=n)


def test_flat_storage_round_trip():
    exs = [{"input_ids": list(range(n)), "labels": [IGNORE] * (n // 2) + list(range(n - n // 2)), "label": i % 3}
           for i, n in enumerate([5, 1, 9])]
    enc = from_examples(exs)
    assert len(enc) == 3 and enc.lengths.tolist() == [5, 1, 9]
    ids, labels = enc.example(2)
    assert ids.tolist() == list(range(9)) and labels.tolist() == exs[2]["labels"]
    batch = collate(enc, np.array([0, 2]), pad_id=99)
    assert batch["input_ids"].shape == (2, 9)
    assert batch["input_ids"][0, 5:].tolist() == [99] * 4
    assert batch["attention_mask"].sum().item() == 14
    assert batch["labels"][0, 5:].tolist() == [IGNORE] * 4
    assert batch["label"].tolist() == [0, 2]


def test_batch_widths_come_in_few_shapes_and_never_pass_the_longest_example():
    lengths = random_lengths(seed=3)  # 20..256 tokens; the longest is 256 at most
    enc = from_examples({"input_ids": np.zeros(n, np.int32)} for n in lengths)
    widths = {collate(enc, rows, pad_id=0)["input_ids"].shape[1] for rows in bucketed_order(enc.lengths, 16, 0, 0)}
    step = [WIDTH_MULTIPLE // 2 if w <= 64 else WIDTH_MULTIPLE for w in widths]  # finer below 64 tokens
    assert all(w % k == 0 or w == enc.longest for w, k in zip(widths, step, strict=True))
    assert max(widths) <= enc.longest and len(widths) <= 256 // WIDTH_MULTIPLE + 64 // (WIDTH_MULTIPLE // 2)
    short = from_examples([{"input_ids": [1] * 3}, {"input_ids": [1] * 10}, {"input_ids": [1] * 11}])
    assert collate(short, np.array([0]), 0)["input_ids"].shape == (1, 4)  # 3 rounded up to 4
    assert collate(short, np.array([0, 1]), 0)["input_ids"].shape == (2, 11)  # 12 would pass the longest (11)


def test_bucketing_cuts_padding_and_covers_every_example_once():
    lengths = random_lengths()
    enc = from_examples({"input_ids": np.zeros(n, np.int32)} for n in lengths)
    rng = np.random.default_rng(1)
    naive = [np.sort(p) for p in np.array_split(rng.permutation(len(lengths)), len(lengths) // 16)]
    order = bucketed_order(enc.lengths, 16, seed=0, epoch=0)
    assert sorted(np.concatenate(order).tolist()) == list(range(len(lengths)))
    assert padding_waste(enc, order) < 0.15 < padding_waste(enc, naive)
    assert [b.tolist() for b in order] == [b.tolist() for b in bucketed_order(enc.lengths, 16, 0, 0)]
    assert [b.tolist() for b in order] != [b.tolist() for b in bucketed_order(enc.lengths, 16, 0, 1)]
    seq = sequential_order(enc.lengths, 7)
    assert sorted(np.concatenate(seq).tolist()) == list(range(len(lengths)))


def test_pack_makes_full_blocks_without_losing_tokens():
    docs = [np.arange(1, n + 1) for n in (10, 3, 30, 7)]
    enc = pack(docs, block=8, eos=0)
    total = sum(len(d) + 1 for d in docs)  # each document ends with eos
    assert set(enc.lengths[:-1].tolist()) == {8}
    assert len(enc.ids) == total - (total % 8 if total % 8 < 4 else 0)
    assert enc.ids[10] == 0  # eos after the first document
