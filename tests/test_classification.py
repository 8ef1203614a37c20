"""Classification and regression: end to end through the real CLI on tiny models, and the invariants."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from tailor.cli import app
from tailor.config import ConfigError, RunConfig, TaskConfig, load_config
from tailor.data.batching import IGNORE, collate, from_examples
from tailor.data.split import record_id
from tailor.data.synthetic import build_world, intent_records, sentiment_records
from tailor.models.heads import TailorModel
from tailor.tasks.base import evaluate_task
from tailor.tasks.classification import Classification
from tailor.tasks.scoring import score_continuations
from tailor.train.memory import peak_memory_mb, reset_peak_memory

LABELS = ["negative", "neutral", "positive"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def run_cli(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "reviews.jsonl", sentiment_records(build_world(0), 150, 0))


def write_config(root, model_dir, data, name, task, **extra):
    cfg = {"name": name, "output_dir": str(root / "runs"), "model": str(model_dir), "task": task,
           "data": {"train": str(data), "max_length": 48, "split": {"validation": 0.15, "test": 0.2}, **extra},
           "train": {"max_steps": 8, "batch_size": 16, "lr": 3e-3, "log_every": 4, "eval_every": 4},
           "eval": {"batch_size": 64}}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("cls")


SHORT = ["train.max_steps=8", "train.eval_every=4", "train.lr=3e-3", "data.max_length=48", "eval.batch_size=64",
         "data.split.validation=0.15", "data.split.test=0.2"]


@pytest.fixture(scope="module")
def head_run(root, tiny_model_dir, reviews):
    """examples/sentiment.yaml (method head) on a tiny GPT-2, a few steps."""
    run_cli("train", EXAMPLES / "sentiment.yaml", f"model.path={tiny_model_dir('gpt2')}", f"data.train={reviews}",
            f"output_dir={root / 'runs'}", *SHORT)
    return root / "runs" / "sentiment-001"


@pytest.fixture(scope="module")
def intents(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "intents.jsonl", intent_records(build_world(0), 160, 0))


@pytest.fixture(scope="module")
def generative_run(root, tiny_model_dir, intents):
    """examples/intent.yaml (method generative, 8-shot baseline) on a tiny Llama, a few steps."""
    run_cli("train", EXAMPLES / "intent.yaml", f"model.path={tiny_model_dir('llama')}", f"data.train={intents}",
            f"output_dir={root / 'runs'}", *SHORT)
    return root / "runs" / "intent-001"


def test_head_run_scores_baseline_and_fine_tuned(head_run, reviews):
    metrics = json.loads((head_run / "metrics.json").read_text())
    test_ids = json.loads((head_run / "split.json").read_text())["test"]
    for side in ("baseline", "fine_tuned"):
        m = metrics[side]["test"]
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1
        assert np.asarray(m["confusion"]).shape == (3, 3) and np.sum(m["confusion"]) == len(test_ids)
    assert metrics["baseline_method"].startswith("zero-shot label likelihood")
    assert json.loads((head_run / "tailor.json").read_text())["task"]["labels"] == LABELS
    assert (head_run / "heads.safetensors").is_file()
    assert (head_run / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (head_run / "report.md").read_text()
    for part in ("## Confusion matrix", "## Per class", "| true \\ predicted |", "zero-shot label likelihood",
                 "## Changed predictions: pre-trained vs fine-tuned"):
        assert part in report, part
    rows = read_jsonl(head_run / "predictions.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(test_ids)
    assert {r["reference"] for r in rows} <= set(LABELS)
    by_id = {record_id(r): r for r in read_jsonl(reviews)}
    assert all(by_id[r["id"]]["label"] == r["reference"] and by_id[r["id"]]["text"] == r["text"] for r in rows)
    accuracy = sum(r["fine_tuned"] == r["reference"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(metrics["fine_tuned"]["test"]["accuracy"])


def test_generative_predictions_are_always_labels(generative_run, intents):
    labels = sorted({r["label"] for r in read_jsonl(intents)})
    info = json.loads((generative_run / "tailor.json").read_text())["task"]
    assert info["labels"] == labels and info["label_words"]["cancel_order"] == " cancel"
    rows = read_jsonl(generative_run / "predictions.jsonl")
    assert rows and all(r["baseline"] in labels and r["fine_tuned"] in labels for r in rows)
    metrics = json.loads((generative_run / "metrics.json").read_text())
    assert metrics["baseline_method"].startswith("8-shot label likelihood")
    assert "8-shot label likelihood" in (generative_run / "report.md").read_text()
    assert len(info["few_shot_examples"]) == 8 and {d["label"] for d in info["few_shot_examples"]} == set(labels)
    assert not (generative_run / "heads.safetensors").exists()  # generative: the LM head is the classifier


def test_regression_baseline_is_the_training_mean(root, tiny_model_dir, reviews):
    run_cli("train", EXAMPLES / "sentiment-score.yaml", f"model.path={tiny_model_dir('gpt_neox')}",
            f"data.train={reviews}", f"output_dir={root / 'runs'}", *SHORT)
    run = root / "runs" / "sentiment-score-001"
    metrics = json.loads((run / "metrics.json").read_text())
    for side in ("baseline", "fine_tuned"):
        assert set(metrics[side]["test"]) >= {"mse", "rmse", "mae", "pearson", "spearman"}
    info = json.loads((run / "tailor.json").read_text())["task"]
    train_ids = set(json.loads((run / "split.json").read_text())["train"])
    scores = [r["score"] for r in read_jsonl(reviews) if record_id({"text": r["text"], "label": r["score"]}) in train_ids]
    assert len(scores) == len(train_ids)
    assert info["mean"] == pytest.approx(np.mean(scores)) and info["std"] == pytest.approx(np.std(scores))
    rows = read_jsonl(run / "predictions.jsonl")
    assert all(r["baseline"] == pytest.approx(info["mean"], abs=1e-4) for r in rows)
    mse = np.mean([(r["reference"] - info["mean"]) ** 2 for r in rows])
    assert metrics["baseline"]["test"]["mse"] == pytest.approx(mse, rel=1e-4)
    assert math.isfinite(metrics["fine_tuned"]["test"]["mse"])
    assert "training mean" in (run / "report.md").read_text()


def _task(tok, **settings):
    cfg = TaskConfig(type="classification", **settings)
    return Classification(cfg, RunConfig(task=cfg))


def test_generative_labels_mask_the_prompt(tmp_path, make_tokenizer):
    tok = make_tokenizer(tmp_path)
    task = _task(tok, method="generative", labels=LABELS)
    long_text = "the red bird sees a green box " * 30
    task.fit_labels([{"text": "x", "label": lab} for lab in LABELS])
    f = task.encode({"text": long_text, "label": "positive"}, tok, 40)
    word = tok(" positive", add_special_tokens=False)["input_ids"]
    n = f["prompt_length"]
    assert len(f["input_ids"]) <= 40 and len(f["input_ids"]) == n + len(word)
    assert f["labels"][:n] == [IGNORE] * n
    assert f["labels"][n:] == word and f["input_ids"][n:] == word
    cue = tok("\nLabel:", add_special_tokens=False)["input_ids"]
    assert f["input_ids"][n - len(cue) : n] == cue  # truncation cut the text, not the template's end
    whole = task.prompt.encode_many([{"text": long_text}], tok, 10_000)[0][0]
    assert f["full_length"] == 40 + len(whole) - n  # statistics count it as truncated, by the tokens cut


def test_integer_labels_are_text_in_numeric_order(tmp_path, make_tokenizer):
    tok = make_tokenizer(tmp_path)
    task = _task(tok)
    task.fit_labels([{"text": "a", "label": 10}, {"text": "b", "label": 2}, {"text": "c", "label": "2"}])
    assert task.labels == ["2", "10"] and task.label_words() == [" 2", " 10"]
    assert task.encode({"text": "a", "label": 10}, tok, 32)["label"] == 1
    assert task.encode({"text": "a", "label": "2"}, tok, 32)["label"] == 0
    assert load_config(None, ["task.type=classification", "task.labels=[0, 1]"]).task.labels == ["0", "1"]


def test_pairs_get_their_place_and_share_the_budget(tmp_path, make_tokenizer):
    tok = make_tokenizer(tmp_path)
    task = _task(tok)
    records = [{"text": "a cat " * 40, "text_pair": "a dog " * 40, "label": "yes"},
               {"text": "the red bird", "text_pair": "a dog " * 40, "label": "no"}]
    task.fit_labels(records)
    assert task.prompt.template == "Text: {text}\n\n{text_pair}\nLabel:"
    long, short = task.encode_split(records, tok, 40).fields["prompt_length"]
    reserve = max(len(w) for w in task._words)  # room for the label word after the prompt
    assert long == short == 40 - reserve
    text = tok.decode(task.encode(records[1], tok, 40)["input_ids"])
    assert text.startswith("Text: the red bird\n\na dog a dog") and text.endswith("\nLabel:")  # the short one stays whole
    assert task.dedup_key(records[0]) != task.dedup_key({**records[0], "text_pair": "other"})
    with pytest.raises(ConfigError, match="has no {text_pair}"):
        _task(tok, prompt="{text} ->").fit_labels(records)


def test_zero_shot_fits_the_model_context(tmp_path, make_tokenizer, tiny_model_dir):
    tok = make_tokenizer(tmp_path)
    task = _task(tok, few_shot=2, label_words={"cat": "small robot", "dog": "old man"})
    records = [{"text": "the cat sees a green box " * 40, "label": lab} for lab in ("cat", "dog", "cat", "dog")]
    task.fit_labels(records)
    data = task.encode_split(records, tok, 128)  # the tiny models' whole context
    assert data.lengths.max() <= 128 - 2  # room for the two-token label words
    model = TailorModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir("gpt2"))).eval()
    with torch.no_grad():
        preds = task.zero_shot(model, collate(data, np.arange(4), tok.pad_token_id))
    assert all(p in (0, 1) for p in preds)


def test_scoring_matches_one_forward_per_sequence(tiny_model_dir):
    model = TailorModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"))).eval()
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [13, 14]]
    width = max(map(len, prompts))
    ids = torch.tensor([p + [0] * (width - len(p)) for p in prompts])
    plen = torch.tensor([len(p) for p in prompts])
    for cands in ([[20], [30]], [[20], [21, 22, 23]]):
        with torch.no_grad():
            got = score_continuations(model, ids, plen, [torch.tensor(c) for c in cands])
        for i, p in enumerate(prompts):
            for k, c in enumerate(cands):
                seq = torch.tensor([p + c])
                with torch.no_grad():
                    logp = torch.log_softmax(model.logits(seq, torch.ones_like(seq))[0].float(), -1)
                want = sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(c))
                assert float(got[i, k]) == pytest.approx(want, abs=1e-4)


def _lm_head_favouring(tok, tmp_path, token_ids):
    """A GPT-2 whose next-token logits are 0 everywhere except +8 on `token_ids`, whatever the input."""
    from conftest import tiny_config

    config = tiny_config("gpt2", tok)
    config.tie_word_embeddings = False
    backbone = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        backbone.transformer.ln_f.weight.zero_()
        backbone.transformer.ln_f.bias.zero_()
        backbone.transformer.ln_f.bias[0] = 1.0  # every hidden state is e_0
        backbone.lm_head.weight.zero_()
        backbone.lm_head.weight[token_ids, 0] = 8.0
    return TailorModel(backbone).eval()


@pytest.mark.parametrize("favoured", ["cat", "dog"])
def test_zero_shot_predicts_the_label_the_lm_favours(tmp_path, make_tokenizer, favoured):
    tok = make_tokenizer(tmp_path)
    task = _task(tok, labels=["cat", "dog"])
    records = [{"text": f"the old man sees {x}", "label": lab} for x, lab in (("a", "cat"), ("the ball", "dog"), ("it", "cat"))]
    task.fit_labels(records)
    data = task.encode_split(records, tok, 32)
    word = tok(f" {favoured}", add_special_tokens=False)["input_ids"]
    model = _lm_head_favouring(tok, tmp_path, word)
    preds = task.zero_shot(model, collate(data, np.arange(len(records)), tok.pad_token_id))
    assert preds == [task.labels.index(favoured)] * len(records)


def test_class_weights_change_the_loss(tmp_path, make_tokenizer, tiny_model_dir):
    tok = make_tokenizer(tmp_path)
    records = [{"text": t, "label": lab} for t, lab in
               (("a cat", "cat"), ("a dog", "dog"), ("the cat", "cat"), ("my cat", "cat"), ("red bird", "bird"))]
    backbone = AutoModelForCausalLM.from_pretrained(tiny_model_dir("gpt2"))
    losses = {}
    for setting in ("none", [1.0, 1.0, 1.0], [1.0, 5.0, 1.0], "balanced", "smoothing"):
        task = _task(tok, label_smoothing=0.2) if setting == "smoothing" else _task(tok, class_weights=setting)
        task.fit_labels(records)
        torch.manual_seed(0)
        model = TailorModel(backbone, task.build_heads(32)).eval()
        batch = collate(task.encode_split(records, tok, 32), np.arange(len(records)), tok.pad_token_id)
        losses[str(setting)] = task.loss(model, batch).item()
    balanced = _task(tok, class_weights="balanced")
    balanced.fit_labels(records)
    assert balanced.weights == pytest.approx([5 / 3, 5 / 9, 5 / 3])  # bird, cat, dog: n / (K * count)
    assert losses["none"] == pytest.approx(losses["[1.0, 1.0, 1.0]"])
    assert losses["[1.0, 5.0, 1.0]"] != pytest.approx(losses["none"])
    assert losses["balanced"] != pytest.approx(losses["none"])
    assert losses["smoothing"] != pytest.approx(losses["none"])
    with pytest.raises(ConfigError, match=r"task.class_weights: 2 weights for 3 labels"):
        _task(tok, class_weights=[1.0, 2.0]).fit_labels(records)


def test_task_setting_mistakes_exit_2(tmp_path, tiny_model_dir, reviews):
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"), reviews, "bad", {"type": "classification"})
    out = run_cli("train", cfg, "task.prompt=Review without a place", code=2)
    assert "task.prompt" in out and "{text}" in out
    out = run_cli("train", cfg, "task.label_words={happy: ' good'}", code=2)
    assert "task.label_words" in out and "happy" in out


def test_compare_and_eval_a_finished_run(head_run, generative_run, reviews, tmp_path):
    out = run_cli("compare", head_run, "--limit", "2")
    assert "pre-trained" in out and "fine-tuned" in out and "accuracy" in out and "fixed" in out
    assert (head_run / "report.md").read_text().count("## Changed predictions: pre-trained vs fine-tuned") == 1
    out = " ".join(run_cli("compare", head_run, generative_run, "--no-write").split())
    assert "sentiment-001" in out and "intent-001" in out and "different test splits" in out
    test_ids = set(json.loads((head_run / "split.json").read_text())["test"])
    test_file = write_jsonl(tmp_path / "test.jsonl", [r for r in read_jsonl(reviews) if record_id(r) in test_ids])
    out = run_cli("eval", head_run, "--data", test_file, "--predictions", tmp_path / "p.jsonl")
    assert "accuracy" in out and "per class" in out
    again = {r["id"]: r["fine_tuned"] for r in read_jsonl(tmp_path / "p.jsonl")}
    first = {r["id"]: r["fine_tuned"] for r in read_jsonl(head_run / "predictions.jsonl")}
    assert again == first  # the restored head predicts exactly what the trained one did
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine", "label": "positive"}, {"text": "meh", "label": "okay"}])
    out = run_cli("eval", head_run, "--data", bad, code=2)
    assert "bad.jsonl:2" in out and "'okay'" in out


def test_data_check_names_every_problem_with_its_line(tmp_path, tiny_model_dir, reviews):
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"), reviews, "check", {"type": "classification", "labels": LABELS})
    rows = [json.dumps(r) for r in read_jsonl(reviews)[:60]]
    rows += ['{"text": "broken', json.dumps({"text": "no label here"}), json.dumps({"text": "fine", "label": "great"})]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n")
    test = write_jsonl(tmp_path / "test.jsonl", [{"text": "a new review", "label": "neutral"}, read_jsonl(reviews)[4]])
    over = [f"data.test={test}", "data.split.validation=0"]  # every line of bad.jsonl is training data
    out = " ".join(run_cli("data", "check", path, "--config", cfg, *over, code=2).split())
    assert "bad.jsonl:61: not valid JSON" in out
    assert "bad.jsonl:62: field 'label': missing" in out
    assert "bad.jsonl:63: field 'label': 'great' is not one of negative, neutral, positive" in out
    assert "test.jsonl:2: test line 2 duplicates train line 5 of " in out and "leakage" in out
    assert "estimated training time" not in out


def test_data_check_clean_file_prints_statistics_and_estimate(tmp_path, tiny_model_dir, reviews):
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"), reviews, "check", {"type": "classification"})
    out = " ".join(run_cli("data", "check", reviews, "--config", cfg).split())
    assert "no problems found" in out and "tokens per example" in out and "truncated" in out
    assert "estimated training time" in out and "measured over 3 training steps" in out
    out = run_cli("data", "check", reviews, "--config", cfg, "--no-estimate")
    assert "estimated training time" not in out


def _growth(task, model, n, predict=None):
    """Peak resident memory (MB) while evaluating n examples of 8 tokens, above what was resident before."""
    import ctypes
    import gc

    rng = np.random.default_rng(0)
    data = from_examples({"input_ids": rng.integers(1, 300, 8), "label": i % 2, "prompt_length": 8} for i in range(n))
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so resident = live
    reset_peak_memory()  # the peak is now what is resident
    before = peak_memory_mb()
    keep: dict = {}
    if predict is not None:
        task.predict = predict
    evaluate_task(task, model, data, 4000, 0, keep=keep)
    return peak_memory_mb() - before, keep


@pytest.fixture
def exact_resident_memory():
    """glibc: large blocks always from mmap (returned when freed), one thread (no oversubscription on 2 cores)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        pytest.skip("needs glibc to measure resident memory exactly")
    threads = torch.get_num_threads()
    libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD = 64 KiB
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_evaluation_memory_stays_flat(tmp_path, make_tokenizer, exact_resident_memory):
    from transformers import GPT2Config

    task = _task(make_tokenizer(tmp_path), labels=["a", "b"])
    task.fit_labels([{"text": "x", "label": "a"}])
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=1, vocab_size=400, n_positions=16, bos_token_id=0, eos_token_id=0)
    model = TailorModel(AutoModelForCausalLM.from_config(config), task.build_heads(16)).eval()
    _growth(task, model, 1000)  # first use: allocator and kernel set-up
    small, _ = _growth(task, model, 10_000)
    large, keep = _growth(task, model, 100_000)
    assert len(keep["predictions"]) == 100_000 and all(type(p) is int for p in keep["predictions"])
    assert large - small < 20, (small, large)  # measured here: about 6 MB (the lists of predictions and rows)
    # the same measurement catches a task that keeps its hidden states (about 50 MB for 100k examples)
    kept_alive = []

    def leaky(m, b):
        kept_alive.append(m.hidden(b["input_ids"], b["attention_mask"]))
        return [0] * len(b["input_ids"])

    leaky_growth, _ = _growth(task, model, 100_000, predict=leaky)
    assert leaky_growth - small > 35, (small, leaky_growth)


@pytest.mark.parametrize("name, task, data", [("sentiment", "classification", "reviews"),
                                              ("intent", "classification", "intents"),
                                              ("sentiment-score", "regression", "reviews")])
def test_example_recipes_are_valid(name, task, data):
    cfg = load_config(EXAMPLES / f"{name}.yaml")  # each also runs end to end above, on a tiny model
    assert cfg.task.type == task and cfg.model.path == "tailor-tiny"
    assert cfg.data.train == [str(EXAMPLES / "data" / f"{data}.jsonl")]
