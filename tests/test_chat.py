"""Chat / instruction fine-tuning: formats, exact loss masks, truncation errors, inspect, and `tailor chat`."""

import json
import random

import numpy as np
import pytest
import yaml
from transformers import AutoTokenizer
from typer.testing import CliRunner

from tailor.cli import app
from tailor.config import RunConfig
from tailor.data.batching import IGNORE
from tailor.inspect_data import TRAINED, inspect_file, render_example
from tailor.tasks.chat import ChatTask
from tailor.tasks.chat_format import FormatError, to_messages

NAMES = ["the cat", "a dog", "the teacher", "my sister", "the robot"]
THINGS = ["the ball", "a green box", "the river", "an apple", "the garden"]


def conversations(n, seed=0):
    """Two-turn support-style conversations with a system prompt; replies are short sentences."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        who, what = rng.choice(NAMES), rng.choice(THINGS)
        out.append({"messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": f"Where is {who}? ({i})"},
            {"role": "assistant", "content": f"{who.capitalize()} is near {what}."},
            {"role": "user", "content": f"And {what}?"},
            {"role": "assistant", "content": f"{what.capitalize()} is fine."},
        ]})
    return out


def alpaca(n, seed=0):
    rng = random.Random(seed)
    return [{"instruction": f"Say where {rng.choice(NAMES)} is ({i}).", "input": rng.choice(["", "today"]),
             "output": f"Near {rng.choice(THINGS)}."} for i in range(n)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_cli(*args, code=0, input=None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, make_tokenizer, make_tiny_model):
    root = tmp_path_factory.mktemp("chat")
    tok = make_tokenizer(root)
    return make_tiny_model("gpt2", tok, root / "gpt2"), tok


def chat_task(**task):
    cfg = RunConfig.model_validate({"task": {"type": "chat", **task}})
    return ChatTask(cfg.task, cfg)


def trained_pieces(tok, ids, labels):
    """The decoded runs of consecutive trained tokens."""
    pieces, cur = [], []
    for t, lab in zip(ids.tolist(), labels.tolist(), strict=True):
        if lab != IGNORE:
            assert lab == t  # a trained token predicts itself (the loss shifts by one)
            cur.append(t)
        elif cur:
            pieces.append(tok.decode(cur))
            cur = []
    if cur:
        pieces.append(tok.decode(cur))
    return pieces


def test_formats_normalise_to_messages():
    assert to_messages({"prompt": "hi", "completion": "hello"}) == [
        {"role": "user", "content": "hi", "weight": 1}, {"role": "assistant", "content": "hello", "weight": 1}]
    msgs = to_messages({"instruction": "Add", "input": "2 and 3", "output": "5"})
    assert msgs[0]["content"] == "Add\n\n2 and 3" and msgs[1] == {"role": "assistant", "content": "5", "weight": 1}
    assert to_messages({"instruction": "Add", "input": "", "output": "5"})[0]["content"] == "Add"
    with pytest.raises(FormatError, match="weight must be 0 or 1"):
        to_messages({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 2}]})
    with pytest.raises(FormatError, match="not a chat record"):
        to_messages({"text": "hello"})


def test_labels_are_exactly_the_assistant_replies(tiny):
    _, tok = tiny
    task = chat_task()
    records = conversations(4)
    enc = task.encode_split(records, tok, 128)
    assert len(enc) == 4 and not task.encode_problems()
    for i, r in enumerate(records):
        ids, labels = enc.example(i)
        replies = [m["content"] + tok.eos_token for m in r["messages"] if m["role"] == "assistant"]
        assert trained_pieces(tok, ids, labels) == replies
        masked = tok.decode(ids[labels == IGNORE])
        assert "Where is" in masked and "You answer briefly." in masked
        assert not any(m["content"] in masked for m in r["messages"] if m["role"] == "assistant")


def test_loss_on_last_and_weights(tiny):
    _, tok = tiny
    records = conversations(3)
    enc = chat_task(loss_on="last").encode_split(records, tok, 128)
    for i, r in enumerate(records):
        assert trained_pieces(tok, *enc.example(i)) == [r["messages"][-1]["content"] + tok.eos_token]
    records[0]["messages"][2]["weight"] = 0
    enc = chat_task().encode_split(records, tok, 128)
    assert trained_pieces(tok, *enc.example(0)) == [records[0]["messages"][-1]["content"] + tok.eos_token]
    assert len(trained_pieces(tok, *enc.example(1))) == 2
    enc = chat_task(loss_on="all").encode_split(records[:1], tok, 128)
    ids, labels = enc.example(0)
    assert (labels == ids).all()


def test_models_own_template_is_used_and_masked_exactly(tiny):
    _, tok = tiny
    tok = type(tok).from_pretrained(tok.name_or_path)
    tok.chat_template = ("{% for m in messages %}{{ '[' + m['role'] + ']: ' + m['content'] + ' [end]\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '[assistant]: ' }}{% endif %}")
    task = chat_task()
    records = conversations(2)
    enc = task.encode_split(records, tok, 512)
    template = task.chat_template(tok)
    assert not template.is_default and template.end_marker == "[end]"
    assert task.info()["chat_template"] == tok.chat_template
    ids, labels = enc.example(0)
    assert tok.decode(ids).startswith("[system]: You answer briefly. [end]\n[user]: Where is")
    replies = [m["content"] + " [end]\n" for m in records[0]["messages"] if m["role"] == "assistant"]
    assert trained_pieces(tok, ids, labels) == replies


def chat_config(tmp_path, model_dir, train_file, **extra):
    cfg = {"name": "bot", "output_dir": str(tmp_path / "runs"), "model": str(model_dir), "task": "chat",
           "data": {"train": str(train_file), "max_length": 120},
           "train": {"max_steps": 3, "batch_size": 8, "lr": 3e-3, "log_every": 1},
           "eval": {"max_new_tokens": 8, "samples": 3, "batch_size": 16}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("fmt", ["alpaca", "messages"])
def test_alpaca_and_messages_files_train_through_the_cli(tmp_path, tiny, fmt):
    model_dir, _ = tiny
    if fmt == "alpaca":  # a JSON array, as Alpaca ships
        train = tmp_path / "alpaca.json"
        train.write_text(json.dumps(alpaca(40), indent=1))
    else:
        train = write_jsonl(tmp_path / "chat.jsonl", conversations(40))
    run_cli("train", chat_config(tmp_path, model_dir, train))
    run = tmp_path / "runs" / "bot-001"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("exact_match", "token_f1", "rouge_l", "bleu"):
        assert 0 <= metrics["fine_tuned"]["test"][key] <= (100 if key == "bleu" else 1)
        assert key in metrics["baseline"]["test"]
    meta = json.loads((run / "tailor.json").read_text())
    assert meta["task"]["type"] == "chat" and "<|assistant|>" in meta["task"]["chat_template"]
    plain = AutoTokenizer.from_pretrained(run / "model")  # plain transformers renders the same prompts
    assert plain.chat_template == meta["task"]["chat_template"]
    assert plain.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                     add_generation_prompt=True) == "<|user|>\nhi\n<|assistant|>\n"
    report = (run / "report.md").read_text()
    assert "## Sample generations (test)" in report and "| prompt | reference | pre-trained | fine-tuned |" in report


def test_truncation_before_any_reply_is_rejected_with_lines(tmp_path, tiny):
    model_dir, _ = tiny
    long_user = "Where is the cat? " * 40  # far beyond max_length 120 before the reply starts
    records = conversations(12)
    for i in (3, 7):
        records[i]["messages"] = [{"role": "user", "content": long_user}, {"role": "assistant", "content": "Here."}]
    train = write_jsonl(tmp_path / "chat.jsonl", records)
    out = run_cli("train", chat_config(tmp_path, model_dir, train), code=2).output
    errors = [line for line in out.splitlines() if line.strip().startswith("error: /")]
    assert len(errors) == 2, out
    assert "chat.jsonl:4:" in errors[0] and "chat.jsonl:8:" in errors[1]
    assert all("before the first trained assistant token" in e for e in errors)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_data_inspect_shows_trained_tokens(tmp_path, tiny):
    model_dir, tok = tiny
    records = conversations(5)
    train = write_jsonl(tmp_path / "chat.jsonl", records)
    out = run_cli("data", "inspect", train, "--task", "chat", "-n", "2", f"model.path={model_dir}").output
    assert "example 1" in out and "example 2" in out and "example 3" not in out
    assert "trained tokens" in out and "Where is" in out and records[0]["messages"][2]["content"] in out
    ins = inspect_file(train, "chat", None, [f"model.path={model_dir}"], 1)
    text, marked = render_example(ins, 0)
    trained = "".join(text.plain[s.start:s.end] for s in text.spans if s.style == TRAINED)
    replies = [m["content"] + tok.eos_token for m in records[0]["messages"] if m["role"] == "assistant"]
    assert trained == "".join(replies)
    ids, labels = ins.encoded.example(0)
    assert marked == int(np.sum(labels != IGNORE))


@pytest.fixture(scope="module")
def trained_bot(tmp_path_factory, tiny):
    """A tiny model taught one fixed reply (so its answer is predictable)."""
    model_dir, _ = tiny
    tmp = tmp_path_factory.mktemp("bot")
    records = [{"messages": [{"role": "user", "content": f"Where is {n}?"},
                             {"role": "assistant", "content": "the cat sees the ball."}]} for n in NAMES * 8]
    for i, r in enumerate(records):
        r["messages"][0]["content"] += f" ({i})"
    train = write_jsonl(tmp / "chat.jsonl", records)
    run_cli("train", chat_config(tmp, model_dir, train, train={"max_steps": 40, "lr": 1e-2}))
    return tmp / "runs" / "bot-001"


def reply_lines(output):
    return [line for line in output.splitlines() if line.strip()]


def test_fine_tuning_beats_the_baseline_and_chat_answers_from_a_pipe(trained_bot):
    from tailor.api import chat_reply, open_run
    from tailor.evaluate.metrics import token_f1

    metrics = json.loads((trained_bot / "metrics.json").read_text())
    assert metrics["fine_tuned"]["test"]["token_f1"] > metrics["baseline"]["test"]["token_f1"]
    out = run_cli("chat", trained_bot, input="Where is the dog?\n").stdout
    assert reply_lines(out) == [chat_reply(trained_bot, [{"role": "user", "content": "Where is the dog?"}])]
    assert token_f1(reply_lines(out)[0], "the cat sees the ball.") >= 0.5  # it learned its one reply
    out = run_cli("chat", trained_bot, "--system", "Be brief.", input="Where is the dog?\n\nAnd the cat?\n").stdout
    loaded = open_run(trained_bot)
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the dog?"}]
    first = chat_reply(loaded, conversation)
    second = chat_reply(loaded, [*conversation, {"role": "assistant", "content": first},
                                 {"role": "user", "content": "And the cat?"}])
    assert reply_lines(out) == [first, second]


def test_chat_bad_options_are_user_errors(trained_bot):
    out = run_cli("chat", trained_bot, "--temperature", "-1", input="hi\n", code=2).output
    assert "temperature" in out


def test_support_bot_recipe_runs_through_the_cli(tmp_path, tiny, make_tiny_model):
    from pathlib import Path

    from tailor.config import load_config
    from tailor.data.synthetic import build_world, support_chat_records

    recipe = Path(__file__).resolve().parent.parent / "examples" / "support-bot.yaml"
    cfg = load_config(recipe)
    assert cfg.task.type == "chat" and cfg.model.path == "tailor-tiny" and cfg.data.train[0].endswith("support_chat.jsonl")
    _, tok = tiny
    model_dir = make_tiny_model("gpt2", tok, tmp_path / "wide", context=512)  # the test tokenizer's chats are long
    train = write_jsonl(tmp_path / "support_chat.jsonl", support_chat_records(build_world(0), 40, 0))
    run_cli("train", recipe, f"model.path={model_dir}", f"data.train={train}", f"output_dir={tmp_path / 'runs'}",
            "train.max_steps=2", "eval.max_new_tokens=4", "eval.samples=2")
    metrics = json.loads((tmp_path / "runs" / "support-bot-001" / "metrics.json").read_text())
    assert {"exact_match", "token_f1", "rouge_l", "bleu"} <= set(metrics["fine_tuned"]["test"])


def test_long_conversations_drop_the_oldest_turns_but_keep_the_system_prompt(tiny):
    from tailor.tasks.chat_format import ChatTemplate
    from tailor.use import fit_conversation

    _, tok = tiny
    template = ChatTemplate(tok)
    msgs = conversations(1)[0]["messages"] + [{"role": "user", "content": "Thanks, bye."}]
    full = template.prompt_ids(msgs)
    assert fit_conversation(template, msgs, len(full)) == full
    fitted = fit_conversation(template, msgs, len(full) - 1)  # one token too many: the first exchange goes
    assert fitted == template.prompt_ids([msgs[0], msgs[3], msgs[4], msgs[5]])
    assert tok.decode(fitted).startswith("<|system|>\nYou answer briefly.\n<|user|>\nAnd ")
    assert fit_conversation(template, msgs, 5) == template.prompt_ids([msgs[0], msgs[5]])
