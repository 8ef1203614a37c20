"""`tailor serve`: tiny runs behind a real server on a loopback port, driven by the official openai client and httpx.

Greedy replies must equal what `tailor chat` / `tailor generate` give (chat_reply, generate_text); task
endpoints must equal the task's own predictions; bad requests get OpenAI's error body and status; a
load test with a tiny queue loses nothing and sees 503s; a client that leaves mid-stream stops its generation.
"""

import asyncio
import json
import math
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import openai
import pytest
import uvicorn
import yaml
from _lm import one_thread  # noqa: F401 - tiny models run faster on one thread
from typer.testing import CliRunner

from tailor.cli import app as cli_app
from tailor.data.batching import collate
from tailor.data.synthetic import build_world, sentiment_records
from tailor.generate import GenerationSettings, generate_ids, generate_text
from tailor.serve import ServeSettings, create_app
from tailor.use import answer, chat_reply, open_run

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PLACES = ["the garden", "the river", "the blue door", "a green box"]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def train_run(root, model_dir, name, task, records, **data):
    """A run of a few steps through the CLI (no baseline, fp32): enough to serve, fast to make."""
    cfg = {
        "name": name,
        "output_dir": str(root / "runs"),
        "model": str(model_dir),
        "task": task,
        "data": {
            "train": str(write_jsonl(root / f"{name}.jsonl", records)),
            "max_length": 64,
            **data,
        },
        "train": {"max_steps": 2, "batch_size": 8, "lr": 3e-3, "log_every": 1, "precision": "fp32"},
        "eval": {"baseline": False, "max_new_tokens": 4, "samples": 0, "batch_size": 16},
    }
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(cli_app, ["train", str(root / f"{name}.yaml")])
    assert result.exit_code == 0, result.output
    return root / "runs" / f"{name}-001"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def gpt2(root, make_tokenizer, make_tiny_model):
    return make_tiny_model("gpt2", make_tokenizer(root), root / "gpt2")


@pytest.fixture(scope="module")
def chat_run(root, gpt2):
    records = [
        {
            "messages": [
                {"role": "user", "content": f"Where is the cat? ({i})"},
                {"role": "assistant", "content": "The cat sees the ball."},
            ]
        }
        for i in range(24)
    ]
    return train_run(root, gpt2, "bot", "chat", records)


@pytest.fixture(scope="module")
def reviews():
    return sentiment_records(build_world(0), 48, 0)


@pytest.fixture(scope="module")
def classifier_run(root, gpt2, reviews):
    return train_run(
        root,
        gpt2,
        "sentiment",
        {"type": "classification", "prompt": "Review: {text}\nSentiment:"},
        reviews,
    )


@pytest.fixture(scope="module")
def qa_run(root, gpt2):
    records = []
    for i in range(24):
        place = PLACES[i % 4]
        context = f"The cat sees the ball. The red key is in {place}. A dog likes the river."
        records.append(
            {
                "question": f"Where is the red key? ({i})",
                "context": context,
                "answers": {"text": [place], "answer_start": [context.index(place)]},
            }
        )
    return train_run(root, gpt2, "qa", {"type": "qa", "stride": 8}, records)


@contextmanager
def serving(app):
    """uvicorn in a thread on a free loopback port; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def chat_server(chat_run):
    with serving(create_app(chat_run, ServeSettings(api_key=KEY))) as url:
        yield url


def greedy(max_new_tokens, **more):
    return GenerationSettings(max_new_tokens=max_new_tokens, **more)


def test_openai_chat_gets_what_tailor_chat_says(chat_run, chat_server):
    client = openai.OpenAI(base_url=f"{chat_server}/v1", api_key=KEY, max_retries=0)
    [card] = client.models.list().data
    assert card.id == "bot-001" and card.task == "chat"
    loaded = open_run(chat_run)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is the dog?"},
    ]
    expected = chat_reply(loaded, messages, greedy(20))
    ask = dict(model=card.id, messages=messages, temperature=0, max_tokens=20)
    reply = client.chat.completions.create(**ask)
    message, usage = reply.choices[0].message, reply.usage
    assert message.content == expected and message.role == "assistant"
    assert usage.prompt_tokens == len(loaded.template.prompt_ids(messages))
    assert 0 < usage.completion_tokens <= 20
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    chunks = list(
        client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == expected and len(pieces) > 1  # token by token
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    assert finish == reply.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == usage.completion_tokens

    sampled = dict(temperature=0.9, top_p=0.8, seed=3)
    got = client.chat.completions.create(model=card.id, messages=messages, max_tokens=12, **sampled)
    assert got.choices[0].message.content == chat_reply(loaded, messages, greedy(12, **sampled))

    two = client.chat.completions.create(**{**ask, "max_tokens": 6}, n=2)
    assert [c.index for c in two.choices] == [0, 1]
    expected = chat_reply(loaded, messages, greedy(6))
    assert two.choices[0].message.content == two.choices[1].message.content == expected


def test_openai_completions_get_what_tailor_generate_says(chat_run, chat_server):
    client = openai.OpenAI(base_url=f"{chat_server}/v1", api_key=KEY, max_retries=0)
    loaded = open_run(chat_run)
    prompt, ids = "My sister", loaded.tok("My sister")["input_ids"]
    text = generate_text(loaded.model.backbone, loaded.tok, prompt, greedy(10))
    ran_out = len(generate_ids(loaded.model.backbone, loaded.tok, [ids], greedy(10))[0]) == 10
    ask = dict(model="bot-001", prompt=prompt, max_tokens=10, temperature=0)
    done = client.completions.create(**ask)
    assert done.choices[0].text == text
    assert done.choices[0].finish_reason == ("length" if ran_out else "stop")
    assert done.usage.prompt_tokens == len(ids)
    streamed = client.completions.create(**ask, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text
    assert len(text) >= 6
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    cut = client.completions.create(**ask, stop=[stop])
    assert (
        cut.choices[0].text == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"
    )


def post(url, path, body, headers=AUTH):
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)


async def classify_at_once(url, inputs):
    """One client per input, all at once; each one's predictions without their indices."""

    async def one(http, texts):
        r = await http.post("/v1/classify", json={"input": texts})
        return [{k: v for k, v in d.items() if k != "index"} for d in r.json()["data"]]

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await asyncio.gather(*(one(http, texts) for texts in inputs))


def test_classify_gives_each_text_its_label_and_probabilities(classifier_run, reviews, root, gpt2):
    loaded = open_run(classifier_run)
    short = ["Great lamp.", "It broke in a week.", "It is fine.", "Love it!", "Not worth it."]
    texts = [*short, "great " * 80]  # the last one is cut to max_length (64)
    with serving(create_app(classifier_run, ServeSettings(batch_wait=0.05))) as url:
        response = post(url, "/v1/classify", {"input": texts})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        single = post(url, "/v1/classify", {"input": texts[0]}).json()["data"]
        together = asyncio.run(classify_at_once(url, [[t] for t in texts] + [texts[::-1]]))
        stats = httpx.get(f"{url}/health").json()
        pair = post(url, "/v1/classify", {"input": [{"text": "a", "text_pair": "b"}]})
    assert [d["index"] for d in data] == list(range(len(texts)))
    task = loaded.task
    for text, d in zip(texts, data, strict=True):
        record = {"text": text, "label": task.labels[0]}
        batch = collate(task.encode_split([record], loaded.tok, loaded.max_length), np.arange(1), 0)
        alone = task.probabilities(loaded.model, batch)[
            0
        ].tolist()  # the same text through the head, by itself
        assert d["label"] == task.labels[task.predict(loaded.model, batch)[0]]
        assert list(d["probabilities"]) == task.labels
        assert np.allclose(list(d["probabilities"].values()), alone, atol=1e-5)
        assert math.isclose(sum(d["probabilities"].values()), 1, abs_tol=1e-5)
    assert [d["truncated"] for d in data] == [False] * 5 + [True]
    assert len(single) == 1 and single[0]["label"] == data[0]["label"]  # alone or in a batch: the same answer
    assert np.allclose(list(single[0]["probabilities"].values()), list(data[0]["probabilities"].values()), atol=1e-5)
    plain = [{k: v for k, v in d.items() if k != "index"} for d in data]
    for got, want in zip(
        together, [[d] for d in plain] + [plain[::-1]], strict=True
    ):  # each client its own
        assert [(d["label"], d["truncated"]) for d in got] == [
            (d["label"], d["truncated"]) for d in want
        ]
        assert np.allclose(
            [list(d["probabilities"].values()) for d in got],
            [list(d["probabilities"].values()) for d in want],
            atol=1e-5,
        )
    assert stats["largest_batch"] > 1
    assert pair.status_code == 400 and "single texts" in pair.json()["error"]["message"]

    stars = [{**r, "label": r["score"]} for r in reviews]
    regression = train_run(root, gpt2, "stars", "regression", stars)
    loaded = open_run(regression)
    with serving(create_app(regression)) as url:
        data = post(url, "/v1/classify", {"input": texts[:3]}).json()["data"]
    for text, d in zip(texts, data, strict=False):
        batch = collate(
            loaded.task.encode_split([{"text": text, "label": 0.0}], loaded.tok, loaded.max_length),
            np.arange(1),
            0,
        )
        assert math.isclose(
            d["value"], loaded.task.predict(loaded.model, batch)[0], rel_tol=1e-5, abs_tol=1e-6
        )
        assert "label" not in d


def test_answer_gives_a_span_of_the_context_with_its_offsets(qa_run, root, gpt2):
    context = "A dog likes the river. The red key is in the garden. The cat sees the ball."
    questions = ["Where is the red key?", "What does the dog like?", "Who sees the ball?"]
    expected = [answer(qa_run, context, q) for q in questions]
    with serving(create_app(qa_run)) as url:
        got = [
            post(url, "/v1/answer", {"question": q, "context": context}).json() for q in questions
        ]
        chat = post(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
        empty = post(url, "/v1/answer", {"question": questions[0], "context": ""}).json()
    for g, e in zip(got, expected, strict=True):
        assert g["answer"] == e.text and math.isclose(g["score"], e.score, rel_tol=1e-5)
        if g["answer"]:
            assert (
                context[g["start"] : g["end"]]
                == g["answer"]
                == context[e.start : e.start + len(e.text)]
            )
    assert chat.status_code == 404 and "/v1/answer" in chat.json()["error"]["message"]
    assert (empty["answer"], empty["start"], empty["end"]) == ("", None, None)

    records = [
        {
            "question": f"Where is the red key? ({i})",
            "context": context,
            "answers": {"text": ["the garden"], "answer_start": [context.index("the garden")]},
        }
        for i in range(16)
    ]
    generative = train_run(
        root, gpt2, "genqa", {"type": "qa", "qa_mode": "generative"}, records, max_length=120
    )
    with serving(create_app(generative)) as url:
        got = post(url, "/v1/answer", {"question": questions[0], "context": context}).json()
    assert got["answer"] == answer(generative, context, questions[0]).text and got["start"] is None


def raw(url, path, content, headers=AUTH):
    return httpx.post(
        f"{url}{path}", content=content, headers={**headers, "Content-Type": "application/json"}
    )


HELLO = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "param", "says"),
    [
        ("/v1/chat/completions", b'{"messages": [', AUTH, 400, None, "not valid JSON"),
        (
            "/v1/chat/completions",
            {"model": "bot-001"},
            AUTH,
            400,
            "messages",
            "'messages' is required",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "robot", "content": "hi"}]},
            AUTH,
            400,
            "messages[0].role",
            "'system', 'user', 'assistant' or 'developer' (got 'robot')",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "where is the cat " * 40}]},
            AUTH,
            400,
            "messages",
            "must be at most 127 tokens",
        ),
        (
            "/v1/chat/completions",
            {"messages": HELLO, "max_tokens": 4000},
            AUTH,
            400,
            "max_tokens",
            "context is 128",
        ),
        (
            "/v1/chat/completions",
            {"messages": HELLO, "temperature": 5},
            AUTH,
            400,
            "temperature",
            "less than or equal",
        ),
        (
            "/v1/chat/completions",
            {"messages": HELLO, "n": 100},
            AUTH,
            400,
            "n",
            "less than or equal to 16",
        ),
        (
            "/v1/chat/completions",
            {"messages": HELLO},
            {"Authorization": "Bearer wrong"},
            401,
            None,
            "API key",
        ),
        ("/v1/models", None, {}, 401, None, "API key"),
        ("/v1/completions", {"prompt": [[5, 10**6]]}, AUTH, 400, "prompt", "token ids must be in"),
        (
            "/v1/classify",
            {"input": ["a"]},
            AUTH,
            404,
            None,
            "does not serve /v1/classify; it serves: /v1/chat/completions, /v1/completions",
        ),
        ("/v1/nothing", {}, AUTH, 404, None, "no endpoint /v1/nothing"),
    ],
)
def test_bad_requests_get_an_openai_error_body(
    chat_server, path, body, headers, status, param, says
):
    if isinstance(body, bytes):
        response = raw(chat_server, path, body, headers)
    elif body is None:
        response = httpx.get(f"{chat_server}{path}", headers=headers)
    else:
        response = post(chat_server, path, body, headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert says in error["message"] and error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert (
        httpx.get(f"{chat_server}/health").json()["status"] == "ok"
    )  # never down after a bad request


def test_load_every_answer_right_none_lost_and_503_when_the_queue_is_full(chat_run):
    """16 clients x 8 requests against a queue of 2: 503s happen, every request is answered right in the end."""
    loaded = open_run(chat_run)
    prompts = [
        [{"role": "user", "content": f"Where is {p}? ({i})"}] for i, p in enumerate(PLACES * 2)
    ]
    expected = [chat_reply(loaded, m, greedy(8)) for m in prompts]
    settings = ServeSettings(max_batch=4, max_queue=2, batch_wait=0.005)

    async def client(url, k, busy, answers):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for j in range(8):
                i = (k + j) % len(prompts)
                for _ in range(2000):
                    r = await http.post(
                        "/v1/chat/completions",
                        json={"messages": prompts[i], "temperature": 0, "max_tokens": 8},
                    )
                    if r.status_code != 503:
                        break
                    assert (
                        r.headers["Retry-After"] == "1"
                        and r.json()["error"]["code"] == "overloaded"
                    )
                    busy.append(k)
                    await asyncio.sleep(
                        0.01
                    )  # sooner than Retry-After asks: the test wants the 503 path busy
                assert r.status_code == 200, r.text
                answers.append((i, r.json()["choices"][0]["message"]["content"]))

    async def load(url):
        busy, answers = [], []
        await asyncio.gather(*(client(url, k, busy, answers) for k in range(16)))
        return busy, answers

    with serving(create_app(chat_run, settings)) as url:
        busy, answers = asyncio.run(load(url))
        stats = httpx.get(f"{url}/health").json()
    assert len(answers) == 128 and all(text == expected[i] for i, text in answers)
    assert busy and stats["rejected"] == len(busy)
    assert (
        stats["served"] == 128 and stats["largest_batch"] > 1
    )  # requests that arrived together shared a pass
    assert stats["queued"] == stats["running"] == 0


def test_a_client_that_leaves_mid_stream_frees_its_slot(gpt2):
    loaded = open_run(gpt2)  # a plain model directory serves as an LM
    prompt = loaded.tok("The cat")["input_ids"]
    full = len(generate_ids(loaded.model.backbone, loaded.tok, [prompt], greedy(100))[0])
    assert full >= 60  # the whole reply is long (no early eos)
    steps = []

    def slow_step(*_):
        steps.append(1)
        time.sleep(0.05)

    loaded.model.backbone.register_forward_pre_hook(slow_step)
    body = {"prompt": "The cat", "max_tokens": 100, "temperature": 0, "stream": True}
    with serving(create_app(loaded, ServeSettings(max_batch=1))) as url:
        with (
            httpx.Client(base_url=url) as http,
            http.stream("POST", "/v1/completions", json=body) as r,
        ):
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["text"]:
                    break  # the first piece of text: leave
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/health").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = httpx.get(f"{url}/health").json()
        assert stats["running"] == 0 and stats["cancelled"] == 1
        assert (
            len(steps) < full // 2
        )  # it stopped soon after the client left, not at the end of its reply
        after = httpx.post(f"{url}/v1/completions", json={"prompt": "The cat", "max_tokens": 3})
        assert after.status_code == 200 and httpx.get(f"{url}/health").json()["served"] == 2


def test_the_app_mounts_inside_another_and_checks_its_key(chat_run):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    outer = FastAPI()
    outer.mount("/tailor", create_app(chat_run, ServeSettings(api_key=KEY)))
    with TestClient(outer) as http:
        assert http.get("/tailor/v1/models").status_code == 401
        reply = http.post(
            "/tailor/v1/chat/completions",
            headers=AUTH,
            json={"messages": HELLO, "temperature": 0, "max_tokens": 5},
        )
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == chat_reply(
            chat_run, HELLO, greedy(5)
        )


def test_tailor_serve_command(chat_run, tmp_path, monkeypatch):
    """The command wires its options into the app and listens where told (uvicorn run in a thread here)."""
    out = CliRunner().invoke(cli_app, ["serve", str(tmp_path / "nope")])
    assert (
        out.exit_code == 2 and "no such directory" in out.output and "Traceback" not in out.output
    )
    servers, real_run = [], uvicorn.Server.run

    def run_in_a_thread(self, sockets=None):
        servers.append((self, sockets[0].getsockname()[1]))
        threading.Thread(
            target=real_run, args=(self,), kwargs={"sockets": sockets}, daemon=True
        ).start()

    monkeypatch.setattr(uvicorn.Server, "run", run_in_a_thread)
    args = [
        "serve",
        str(chat_run),
        "--port",
        "0",
        "--api-key",
        KEY,
        "--max-batch",
        "2",
        "--max-queue",
        "5",
    ]
    out = CliRunner().invoke(cli_app, args)
    assert out.exit_code == 0, out.output
    [(server, port)] = servers
    try:
        assert "serving" in out.output and "/v1/chat/completions" in out.output
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers=AUTH).json()["data"][0]["id"] == "bot-001"
        settings = server.config.app.state.service.settings
        assert (settings.max_batch, settings.max_queue, settings.api_key) == (2, 5, KEY)
        taken = CliRunner().invoke(cli_app, ["serve", str(chat_run), "--port", str(port)])
        assert taken.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.output
    finally:
        server.should_exit = True
