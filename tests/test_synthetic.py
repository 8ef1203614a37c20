"""The generated world and its data sets: determinism, held-out domain, consistent facts, formats."""

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from tailor.data import synthetic as S

WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")
DOMAIN_MARKERS = ("conveyor", "gearbox", "torqued", "lockout", "hydraulic", "multimeter", "forklift",
                  "downtime", "thermocouple", "solenoid")


def sha(texts) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()


def vocabulary(texts) -> set[str]:
    return {w for t in texts for w in WORDS.findall(t.lower())}


@pytest.fixture(scope="module")
def world():
    return S.build_world(0)


@pytest.fixture(scope="module")
def corpus(world):
    return list(S.corpus_documents(world, 1500, 0))


def test_template_choices_slots_and_errors():
    rng = S.random.Random(0)
    seen = {S.say(rng, "[a|b[c|d]|]{x}.", x="!") for _ in range(200)}
    assert seen == {"A!.", "Bc!.", "Bd!.", "!."}
    assert S.say(rng, ("{p} costs {price}.",), p="the Alder", price="$1.00") == "The Alder costs $1.00."
    with pytest.raises(ValueError, match="unclosed"):
        S.say(rng, "[a|b")


def test_world_is_fixed_by_its_seed(world):
    assert S.build_world(0) == world
    assert S.build_world(1) != world
    names = [p.name for p in world.products]
    assert 20 <= len(names) <= 40 and len(set(names)) == len(names)
    assert len({p.sku for p in world.products}) == len(names)
    assert len({p.category for p in world.products}) == 6
    assert all(p.price > 0 and p.warranty_years >= 1 and len(p.features) == 3 for p in world.products)
    assert {"return_window_days", "shipping_fee", "support_hours"} <= set(world.policies)
    assert all(set(o.items) <= set(names) and o.status in S.ORDER_STATUSES for o in world.orders)


def test_corpus_is_deterministic_within_and_across_processes(world, corpus):
    assert list(S.corpus_documents(S.build_world(0), 200, 0)) == corpus[:200]
    code = ("import hashlib; from tailor.data import synthetic as S; "
            "print(hashlib.sha256('\\x00'.join(S.corpus_documents(S.build_world(0), 200, 0)).encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == sha(corpus[:200])
    assert sha(S.corpus_documents(world, 200, 1)) != sha(corpus[:200])


def test_corpus_mixes_kinds_of_documents_of_sensible_length(corpus):
    lengths = [len(d.split()) for d in corpus]
    assert min(lengths) >= 10 and max(lengths) <= 450
    assert 90 <= sum(lengths) / len(lengths) <= 250
    assert len(set(corpus)) > 0.98 * len(corpus)
    kinds = {"support": "\nCustomer: ", "review": "/5", "email": "Subject: ", "walk": " miles",
             "product": "SKU", "news": "said"}
    for kind, marker in kinds.items():
        share = sum(marker in d for d in corpus) / len(corpus)
        assert share > 0.03, kind
    assert len(vocabulary(corpus)) > 1500


def test_facts_are_the_same_everywhere(world, corpus):
    prices = {p.name: S._money(p.price) for p in world.products}
    chats = S.support_chat_records(world, 300, 0)
    answers = "\n".join(m["content"] for r in chats for m in r["messages"] if m["role"] == "assistant")
    for text in ("\n".join(corpus), answers):
        stated = re.findall(r"The ([A-Z][a-z]+(?: [A-Z][a-z]+)+) (?:costs|sells for|is priced at) (\$\d+\.\d\d)", text)
        assert len(stated) > 20
        assert all(prices[name] == price for name, price in stated)
        warranties = re.findall(r"The ([A-Z][a-z]+(?: [A-Z][a-z]+)+) comes with a (\d+)-year warranty", text)
        assert warranties and all(world.product(n).warranty_years == int(y) for n, y in warranties)
        windows = re.findall(r"within (\d+) days of delivery", text)
        assert windows and set(windows) == {world.policies["return_window_days"]}
    statuses = {o.number: o.status for o in world.orders}
    phrases = {"has shipped": "shipped", "has been delivered": "delivered", "is out for delivery": "out for delivery",
               "is being packed": "processing"}
    said = re.findall(r"Order (FH-\d+) (has shipped|has been delivered|is out for delivery|is being packed)", answers)
    assert said and all(statuses[number] == phrases[phrase] for number, phrase in said)


def test_chat_records_have_turns_in_order(world):
    records = S.support_chat_records(world, 200, 3)
    assert records == S.support_chat_records(world, 200, 3)
    turns = Counter()
    for r in records:
        roles = [m["role"] for m in r["messages"]]
        assert roles[0] == "system" and roles[1:] == ["user", "assistant"] * ((len(roles) - 1) // 2)
        turns[(len(roles) - 1) // 2] += 1
        assert all(isinstance(m["content"], str) and m["content"] for m in r["messages"])
    assert set(turns) == {1, 2, 3}


def test_domain_text_is_held_out_from_the_corpus(world, corpus):
    domain = list(S.domain_documents(world, 300, 0))
    assert domain == list(S.domain_documents(world, 300, 0))
    assert not set(domain) & set(corpus)
    assert all("\n\n" not in d for d in domain)
    corpus_words, domain_words = vocabulary(corpus), vocabulary(domain)
    for marker in DOMAIN_MARKERS:
        assert marker in domain_words and marker not in corpus_words, marker
    assert len(domain_words - corpus_words) > 0.2 * len(domain_words)
    assert any(p.name in "".join(domain) for p in world.products), "same world: products appear"


def test_domain_markers_never_appear_in_a_large_corpus(world):
    words = vocabulary(S.corpus_documents(world, 4000, 7))
    assert not words & set(DOMAIN_MARKERS)


def test_sentiment_records_are_balanced_and_not_copied_from_the_corpus(world, corpus):
    records = S.sentiment_records(world, 600, 0)
    assert records == S.sentiment_records(world, 600, 0) and records != S.sentiment_records(world, 600, 1)
    counts = Counter(r["label"] for r in records)
    assert set(counts) == {"negative", "neutral", "positive"} and max(counts.values()) - min(counts.values()) <= 1
    for r in records:
        assert set(r) == {"text", "label", "score"} and isinstance(r["score"], float) and 1.0 <= r["score"] <= 5.0
        assert {"negative": r["score"] <= 2, "neutral": r["score"] == 3, "positive": r["score"] >= 4}[r["label"]]
        assert "/5" not in r["text"] and "Rating" not in r["text"]
    joined = "\n".join(corpus)
    assert not any(r["text"] in joined for r in records)


def test_no_single_word_gives_away_the_sentiment(world):
    records = S.sentiment_records(world, 900, 2)
    labels = [r["label"] for r in records]
    words = [set(WORDS.findall(r["text"].lower())) for r in records]
    best = 0.0
    for w in {w for ws in words for w in ws}:
        inside = Counter(label for label, ws in zip(labels, words, strict=True) if w in ws)
        outside = Counter(label for label, ws in zip(labels, words, strict=True) if w not in ws)
        hits = max(inside.values(), default=0) + max(outside.values(), default=0)
        best = max(best, hits / len(records))
    assert 0.4 < best < 0.7


def test_intent_records_cover_every_intent_evenly(world):
    records = S.intent_records(world, 800, 0)
    assert records == S.intent_records(world, 800, 0)
    counts = Counter(r["label"] for r in records)
    assert set(counts) == set(S.INTENT_LABELS) and 6 <= len(counts) <= 8
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(set(r) == {"text", "label"} and r["text"].strip() for r in records)
    assert len({r["text"] for r in records}) > 0.8 * len(records)


@pytest.mark.parametrize("long", [False, True])
def test_qa_answers_are_exact_spans(world, long):
    records = S.qa_records(world, 60, 0, long_contexts=long)
    assert records == S.qa_records(world, 60, 0, long_contexts=long)
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        assert set(r) == {"id", "context", "question", "answers"}
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert text and r["context"][start : start + len(text)] == text
    words = [len(r["context"].split()) for r in records]
    if long:
        assert min(words) >= 600 and max(words) <= 1500
    else:
        assert max(words) < 400


def test_qa_unanswerable_only_when_asked(world):
    plain = S.qa_records(world, 300, 4)
    assert all(r["answers"]["text"] for r in plain)
    mixed = S.qa_records(world, 300, 4, unanswerable=True)
    empty = [r for r in mixed if not r["answers"]["text"]]
    assert 0.04 < len(empty) / len(mixed) < 0.2
    for r in empty:
        assert r["answers"]["answer_start"] == []
        product = next(p.name for p in world.products if p.name in r["question"])
        assert product not in r["context"]


def test_writers_and_the_module_entry_point(tmp_path, world):
    corpus_path = S.write_corpus(tmp_path / "c" / "corpus.jsonl", 30, seed=0)
    lines = corpus_path.read_text().splitlines()
    assert [json.loads(x)["text"] for x in lines] == list(S.corpus_documents(world, 30, 0))

    paths = S.write_demo_data(tmp_path / "a")
    assert set(paths) == {"reviews", "intents", "support_chat", "policy_qa", "field_notes"}
    sizes = {name: len(p.read_text().splitlines()) for name, p in paths.items() if p.suffix == ".jsonl"}
    assert sizes == {"reviews": 1200, "intents": 1200, "support_chat": 1000, "policy_qa": 800}
    qa = [json.loads(x) for x in paths["policy_qa"].read_text().splitlines()]
    assert 100 < sum(len(r["context"].split()) >= 600 for r in qa) < 400
    assert len(paths["field_notes"].read_text().strip().split("\n\n")) == 400

    subprocess.run([sys.executable, "-m", "tailor.data.synthetic", str(tmp_path / "b")], check=True,
                   capture_output=True, env={**os.environ, "PYTHONHASHSEED": "7"})
    for name, p in paths.items():
        assert (tmp_path / "b" / p.name).read_bytes() == p.read_bytes(), name


def test_generated_data_sets_hold_no_accidental_duplicates(world):
    """As tailor's duplicate check compares them (case, punctuation and spacing ignored), for each recipe's data."""
    from tailor.data.check import normalize_text

    intents = S.intent_records(world, 1200, 1)
    chats = S.support_chat_records(world, 1000, 1)
    qa = S.qa_records(world, 300, 1)
    for keys in ([r["text"] for r in intents], ["\n".join(m["content"] for m in r["messages"]) for r in chats],
                 [f"{r['question']}\n{r['context']}" for r in qa]):
        normalized = [normalize_text(k) for k in keys]
        assert len(set(normalized)) == len(normalized)
    counts = {label: sum(r["label"] == label for r in intents) for label in S.INTENT_LABELS}
    assert set(counts.values()) == {150}  # still balanced
