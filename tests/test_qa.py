"""Question answering: sliding windows over long contexts, exact offsets, an oracle head, the CLI end to end."""

import json
import random

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from tailor.cli import app
from tailor.config import RunConfig
from tailor.models.heads import TailorModel
from tailor.tasks.base import evaluate_task
from tailor.tasks.qa import ExtractiveQA, GenerativeQA, question_answering, windows

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the teacher", "a small robot"]
VERBS = ["sees", "likes", "finds", "paints", "follows"]
OBJECTS = ["the ball", "a green box", "the river", "an apple", "the blue door", "a tall tree"]
ITEMS = ["red key", "old map", "blue cup", "small lamp", "green book", "brass bell"]
PLACES = ["the garden", "the river", "the blue door", "a green box", "the tall tree", "the old shed"]


def squad(n, seed=0, filler=(8, 14), unanswerable=0):
    """SQuAD records: one fact ("The red key is in the garden.") among filler sentences."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sents = [f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
                 for _ in range(rng.randint(*filler))]
        item, place = ITEMS[i % len(ITEMS)], rng.choice(PLACES)
        answerable = i >= unanswerable
        if answerable:
            sents.insert(rng.randrange(len(sents) + 1), f"The {item} is in {place}.")
        context = " ".join(sents)
        answers = {"text": [], "answer_start": []}
        if answerable:
            fact = context.index(f"The {item} is in {place}.")
            answers = {"text": [place], "answer_start": [fact + len(f"The {item} is in ")]}
        out.append({"question": f"Where is the {item}? ({i})", "context": context, "answers": answers})
    return out


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_cli(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, make_tokenizer, make_tiny_model):
    root = tmp_path_factory.mktemp("qa")
    tok = make_tokenizer(root)
    return make_tiny_model("gpt2", tok, root / "gpt2"), tok


def qa_task(**task):
    cfg = RunConfig.model_validate({"task": {"type": "qa", **task}})
    return question_answering(cfg.task, cfg)


def test_windows_cover_every_token_with_the_given_overlap():
    assert windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert windows(3, 8, 2) == [(0, 3)]
    for n, size, stride in [(100, 16, 4), (57, 20, 19), (33, 33, 5)]:
        spans = windows(n, size, stride)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(b[0] == a[1] - stride for a, b in zip(spans, spans[1:], strict=False))


def test_long_contexts_windows_hold_the_answer_and_offsets_round_trip(tiny):
    _, tok = tiny
    task = qa_task(stride=8)
    records = squad(12)
    enc = task.encode_split(records, tok, 80)
    assert isinstance(task, ExtractiveQA) and not task.encode_problems()
    assert enc.lengths.max() <= 80
    rids = enc.fields["rid"]
    assert len(enc) > 2 * len(records)  # the contexts are longer than one window
    for rid, r in enumerate(records):
        rows = np.flatnonzero(rids == rid)
        null = enc.lengths[rows] - 1
        hits = rows[enc.fields["start"][rows] != null]
        assert len(hits) >= 1  # some window holds the whole answer
        for row in hits:
            ids, _ = enc.example(int(row))
            s, e, c = (int(enc.fields[k][row]) for k in ("start", "end", "ctx_start"))
            assert tok.decode(ids[s : e + 1]).strip() == r["answers"]["text"][0]
            text, start = task._span(rid, int(enc.fields["fid"][row]), s - c, e - c)
            assert (text, start) == (r["answers"]["text"][0], r["answers"]["answer_start"][0])
        misses = rows[enc.fields["start"][rows] == null]
        assert (enc.fields["end"][misses] == null[np.isin(rows, misses)]).all()


def oracle(monkeypatch, task, model):
    """Force the span head's logits to the gold start/end of the batch being predicted."""
    seen = {}
    predict = task.predict

    def spy(m, batch):
        seen["batch"] = batch
        return predict(m, batch)

    def forward(hidden):
        b, rows = seen["batch"], torch.arange(hidden.shape[0])
        start = torch.full(hidden.shape[:2], -5.0)
        end = torch.full(hidden.shape[:2], -5.0)
        start[rows, b["start"] - 1] = 5.0  # the start logit of token t comes from position t - 1
        end[rows, b["end"]] = 5.0
        return start, end

    monkeypatch.setattr(task, "predict", spy)
    monkeypatch.setattr(model.heads["span"], "forward", forward)


def test_a_head_forced_to_the_gold_positions_scores_exact_match_one(tiny, monkeypatch):
    model_dir, tok = tiny
    task = qa_task(stride=8)
    records = squad(16, seed=1, unanswerable=4)
    task.fit_labels(records)
    assert task.allow_null
    enc = task.encode_split(records, tok, 80)
    model = TailorModel(AutoModelForCausalLM.from_pretrained(model_dir), task.build_heads(32))
    random_head = evaluate_task(task, model, enc, batch_size=5, pad_id=tok.pad_token_id)
    assert random_head["exact_match"] < 0.5  # so the test below can fail
    oracle(monkeypatch, task, model)
    m = evaluate_task(task, model, enc, batch_size=5, pad_id=tok.pad_token_id)
    assert m["exact_match"] == 1.0 and m["f1"] == 1.0
    answers = task.outputs["fine_tuned"]
    assert [answers[i] for i in range(4)] == ["", "", "", ""]  # unanswerable: the no-answer slot wins
    for rid, r in enumerate(records[4:], 4):
        assert answers[rid] == r["answers"]["text"][0] and answers[rid] in r["context"]


def qa_config(tmp_path, model_dir, train_file, **task):
    cfg = {"name": "qa", "output_dir": str(tmp_path / "runs"), "model": str(model_dir),
           "task": {"type": "qa", "stride": 8, **task}, "data": {"train": str(train_file), "max_length": 80},
           "train": {"max_steps": 4, "batch_size": 8, "lr": 3e-3, "log_every": 1},
           "eval": {"max_new_tokens": 6, "samples": 3, "batch_size": 16}}
    path = tmp_path / "qa.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_extractive_qa_trains_through_the_cli_and_answers(tmp_path, tiny):
    model_dir, _ = tiny
    records = squad(40, seed=2)
    train = write_jsonl(tmp_path / "qa.jsonl", records)
    run_cli("train", qa_config(tmp_path, model_dir, train))
    run = tmp_path / "runs" / "qa-001"
    metrics = json.loads((run / "metrics.json").read_text())
    for side in ("baseline", "fine_tuned", "text_baseline"):
        assert 0 <= metrics[side]["test"]["exact_match"] <= metrics[side]["test"]["f1"] <= 1
    report = (run / "report.md").read_text()
    assert "## Text-only baseline (test)" in report and "## Sample answers (test)" in report
    assert json.loads((run / "tailor.json").read_text())["heads"] == ["span"]
    context = tmp_path / "doc.txt"
    context.write_text(records[0]["context"])
    out = run_cli("answer", run, "--context", context, records[0]["question"]).stdout.strip()
    assert out and (out in records[0]["context"] or out == "(the document does not answer this)")
    from tailor.api import answer, open_run

    loaded = open_run(run)
    assert torch.equal(loaded.model.heads["span"].out.weight, load_head(run))
    assert answer(loaded, records[0]["context"], records[0]["question"]).text == out


def load_head(run):
    from safetensors.torch import load_file

    return load_file(str(run / "heads.safetensors"))["span.out.weight"]


def test_answer_rejects_a_run_that_is_not_qa(tmp_path, tiny):
    model_dir, _ = tiny
    context = tmp_path / "doc.txt"
    context.write_text("The cat sees the ball.")
    out = run_cli("answer", model_dir, "--context", context, "Where?", code=2).output
    assert "not a question-answering run" in out
    assert "no such file" in run_cli("answer", model_dir, "--context", tmp_path / "nope.txt", "Where?", code=2).output


def test_generative_qa_trains_and_its_predictions_decode(tmp_path, tiny):
    model_dir, tok = tiny
    records = squad(40, seed=3, filler=(1, 2))
    task = qa_task(qa_mode="generative")
    assert isinstance(task, GenerativeQA)
    enc = task.encode_split(records[:2], tok, 120)
    ids, labels = enc.example(0)
    assert tok.decode(ids[labels != -100]) == records[0]["answers"]["text"][0] + tok.eos_token
    assert "Question: Where is the" in tok.decode(ids[labels == -100])
    train = write_jsonl(tmp_path / "qa.jsonl", records)
    run_cli("train", qa_config(tmp_path, model_dir, train, qa_mode="generative"), "data.max_length=120")
    run = tmp_path / "runs" / "qa-001"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["fine_tuned"]["test"]) == {"exact_match", "f1", "rouge_l", "bleu"}
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(r["fine_tuned"], str) and isinstance(r["baseline"], str) for r in rows)
    assert "## Sample generations (test)" in (run / "report.md").read_text()


def test_policy_qa_recipe_runs_through_the_cli(tmp_path, tiny, make_tiny_model):
    from pathlib import Path

    from tailor.config import load_config
    from tailor.data.synthetic import build_world, qa_records

    recipe = Path(__file__).resolve().parent.parent / "examples" / "policy-qa.yaml"
    cfg = load_config(recipe)
    assert cfg.task.type == "qa" and cfg.task.qa_mode == "extractive" and cfg.data.max_length == 256
    _, tok = tiny
    model_dir = make_tiny_model("gpt2", tok, tmp_path / "wide", context=256)
    records = qa_records(build_world(0), 16, 0) + qa_records(build_world(0), 4, 0, long_contexts=True)
    train = write_jsonl(tmp_path / "policy_qa.jsonl", records)
    run_cli("train", recipe, f"model.path={model_dir}", f"data.train={train}", f"output_dir={tmp_path / 'runs'}",
            "train.max_steps=2", "eval.batch_size=64")
    run = tmp_path / "runs" / "policy-qa-001"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"exact_match", "f1"} <= set(metrics["fine_tuned"]["test"]) and "text_baseline" in metrics
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["data"]["splits"]["test"]  # one row per question, not per window
    for r in rows:
        assert r["fine_tuned"] == "(no answer)" or r["fine_tuned"] in r["text"]
