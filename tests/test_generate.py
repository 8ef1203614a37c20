"""Generation on tiny random models of three families: cache, batching, stop strings, streaming, seeds."""

import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tailor.generate import (
    GenerationSettings,
    Row,
    _StopAwareStreamer,
    cut_at_stop,
    generate_batch,
    generate_ids,
    generate_rows,
    generate_text,
)

ARCHS = ["gpt2", "llama", "gpt_neox"]
PROMPTS = [
    "The cat",
    "A small robot builds the blue door",
    "My sister",
    "The teacher finds an apple at night. The",
]


@pytest.fixture(scope="module", params=ARCHS)
def lm(request, tiny_model_dir):
    path = tiny_model_dir(request.param)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def llama(tiny_model_dir):
    path = tiny_model_dir("llama")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def argmax_loop(model, ids, n, eos):
    """Reference greedy decoding: the whole sequence through the model at every step, no cache."""
    ids, new = list(ids), []
    with torch.no_grad():
        for _ in range(n):
            t = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if t == eos:
                break
            new.append(t)
            ids.append(t)
    return new


def encode(tok, prompts):
    return [tok(p)["input_ids"] for p in prompts]


def test_greedy_equals_reference_and_respects_max_new_tokens(lm):
    model, tok = lm
    for ids in encode(tok, PROMPTS[:2]):
        got = generate_ids(model, tok, [ids], GenerationSettings(max_new_tokens=12))[0]
        assert got == argmax_loop(model, ids, 12, tok.eos_token_id)
        assert len(got) <= 12
    assert len(generate_ids(model, tok, [ids], GenerationSettings(max_new_tokens=3))[0]) <= 3


def test_kv_cache_gives_identical_tokens(lm):
    model, tok = lm
    ids = encode(tok, PROMPTS)
    for settings in (
        GenerationSettings(max_new_tokens=16),
        GenerationSettings(max_new_tokens=16, temperature=0.8, seed=5),
    ):
        cached = generate_ids(model, tok, ids, settings)
        uncached = generate_ids(
            model, tok, ids, GenerationSettings(**{**vars(settings), "use_cache": False})
        )
        assert cached == uncached
        assert any(len(set(row)) > 2 for row in cached)  # not a degenerate repetition


def test_use_cache_reaches_the_model(llama):
    model, tok = llama
    widths = []
    hook = model.register_forward_pre_hook(
        lambda m, args, kw: widths.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        ids = tok("The cat")["input_ids"]
        for use_cache in (True, False):
            widths.clear()
            generate_ids(
                model, tok, [ids], GenerationSettings(max_new_tokens=5, use_cache=use_cache)
            )
            expected = [len(ids), 1, 1, 1, 1] if use_cache else [len(ids) + i for i in range(5)]
            assert widths == expected
    finally:
        hook.remove()


def test_left_padded_batch_equals_one_by_one(lm):
    model, tok = lm
    settings = GenerationSettings(max_new_tokens=10)
    one_by_one = [generate_text(model, tok, p, settings) for p in PROMPTS]
    assert generate_batch(model, tok, PROMPTS, settings, batch_size=3) == one_by_one
    assert generate_batch(model, tok, PROMPTS, settings) == one_by_one
    assert len({len(i) for i in encode(tok, PROMPTS)}) > 1  # the batch really was padded


def test_stop_string_cuts_output_and_stops_early(llama):
    model, tok = llama
    settings = GenerationSettings(max_new_tokens=24)
    full = generate_text(model, tok, "The old man", settings)
    assert len(full) >= 10
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    expected = full[: full.find(stop)]
    stopped = GenerationSettings(max_new_tokens=24, stop=("never-seen", stop))
    assert generate_text(model, tok, "The old man", stopped) == expected
    assert generate_batch(model, tok, ["The old man", "My sister"], stopped)[0] == expected
    ids = tok("The old man")["input_ids"]
    assert len(generate_ids(model, tok, [ids], stopped)[0]) < len(
        generate_ids(model, tok, [ids], settings)[0]
    )


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_streamed_pieces_add_up_to_the_returned_text(llama, temperature):
    model, tok = llama
    settings = GenerationSettings(max_new_tokens=24, temperature=temperature, seed=2)
    pieces = []
    full = generate_text(model, tok, "The cat", settings, on_text=pieces.append)
    assert "".join(pieces) == full and len(pieces) > 1
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    pieces = []
    cut = generate_text(
        model,
        tok,
        "The cat",
        GenerationSettings(**{**vars(settings), "stop": (stop,)}),
        pieces.append,
    )
    assert cut == full[: full.find(stop)]
    assert "".join(pieces) == cut


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        (" the cat likes the cat sees the ball", "cat sees", " the cat likes the "),
        # "ភ" is three byte-level tokens: " x" + its first byte decodes to " x\ufffd", still a possible stop
        (" the cat xy xភ z", "xភ", " the cat xy "),
        (" no stop here", "zz", " no stop here"),
    ],
)
def test_streamer_holds_back_a_possible_stop_string(llama, text, stop, expected):
    _, tok = llama
    pieces = []
    streamer = _StopAwareStreamer(tok, (stop,), pieces.append)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt, as generate() first puts it
    for t in tok(text)["input_ids"]:
        streamer.put(torch.tensor([t]))
        assert expected.startswith("".join(pieces))
    streamer.end()
    assert "".join(pieces) == cut_at_stop(text, (stop,)) == expected


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(llama):
    model, tok = llama
    settings = GenerationSettings(max_new_tokens=20, temperature=1.0, top_k=50, top_p=0.95, seed=7)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = generate_text(model, tok, "The cat", settings)
    assert torch.equal(torch.rand(3), expected_next)
    assert generate_text(model, tok, "The cat", settings) == a
    assert (
        generate_text(model, tok, "The cat", GenerationSettings(**{**vars(settings), "seed": 8}))
        != a
    )
    assert generate_batch(model, tok, ["The cat", "My sister"], settings) == generate_batch(
        model, tok, ["The cat", "My sister"], settings
    )


def test_long_prompt_is_cut_from_the_left_to_fit_the_context(
    tmp_path, make_tokenizer, make_tiny_model
):
    tok = make_tokenizer(tmp_path)
    path = make_tiny_model("gpt2", tok, tmp_path / "short", context=32)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tok(" ".join(["the garden"] * 30))["input_ids"]
    assert len(ids) > 32
    settings = GenerationSettings(max_new_tokens=8)
    with pytest.warns(UserWarning, match="kept its last 24 tokens"):
        got = generate_ids(model, tok, [ids], settings)[0]
    assert got == generate_ids(model, tok, [ids[-24:]], settings)[0]
    with pytest.warns(UserWarning) as caught:
        assert len(generate_ids(model, tok, [ids], GenerationSettings(max_new_tokens=40))[0]) <= 31
    messages = " | ".join(str(w.message) for w in caught)
    assert "generating at most 31" in messages and "kept its last 1 tokens" in messages


def test_tokenizer_without_pad_token_and_training_mode_restored(llama):
    model, tok = llama
    settings = GenerationSettings(max_new_tokens=8)
    expected = generate_batch(model, tok, PROMPTS, settings)
    no_pad = AutoTokenizer.from_pretrained(tok.name_or_path)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None
    model.train()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert generate_batch(model, tok, PROMPTS, settings) == expected
        assert generate_batch(model, no_pad, PROMPTS, settings) == expected  # dropout was off
        assert model.training
    finally:
        model.eval()


def test_empty_prompt_starts_from_bos(llama):
    model, tok = llama
    settings = GenerationSettings(max_new_tokens=5)
    assert generate_text(model, tok, "", settings) == generate_text(
        model, tok, [tok.bos_token_id], settings
    )


def test_settings_are_checked():
    with pytest.raises(ValueError, match="temperature must be >= 0") as e:
        GenerationSettings(temperature=-1, top_p=0)
    assert "top_p must be in (0, 1]" in str(e.value)
    with pytest.raises(ValueError, match="stop strings must not be empty"):
        GenerationSettings(stop=("",))
    assert GenerationSettings(stop="\n").stop == ("\n",)


def test_rows_of_one_batch_each_end_on_their_own(lm):
    """generate_rows: per-row limits, stop strings and streams in one batch; each row as if alone."""
    model, tok = lm
    ids = encode(tok, PROMPTS)
    full = generate_text(model, tok, PROMPTS[3], GenerationSettings(max_new_tokens=12))
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    limits = [(3, ()), (12, ()), (8, ()), (12, (stop,))]
    alone = [
        generate_ids(model, tok, [p], GenerationSettings(max_new_tokens=m, stop=s))[0]
        for p, (m, s) in zip(ids, limits, strict=True)
    ]
    steps, ended, pieces = [], {}, [[] for _ in ids]
    hook = model.register_forward_pre_hook(lambda *_: steps.append(1))
    rows = [
        Row(
            p,
            m,
            s,
            on_text=pieces[i].append,
            on_end=lambda new, i=i: ended.setdefault(i, (list(new), len(steps))),
        )
        for i, (p, (m, s)) in enumerate(zip(ids, limits, strict=True))
    ]
    try:
        got = generate_rows(model, tok, rows, GenerationSettings())
        assert got == alone
        assert {i: new for i, (new, _) in ended.items()} == dict(enumerate(alone))
        assert [len(new) for new in alone[:3]] == [3, 12, 8] and len(alone[3]) < 12  # stop cut it
        assert ended[0][1] < ended[2][1] < ended[1][1]  # each row reported when it ended
        for text, new, (_, s) in zip(pieces, alone, limits, strict=True):
            assert "".join(text) == cut_at_stop(tok.decode(new, skip_special_tokens=True), s)
        steps.clear()
        gone = Row(ids[0], 12, cancelled=lambda: len(steps) >= 3)
        assert len(generate_rows(model, tok, [gone, Row(ids[1], 12)], GenerationSettings())[0]) <= 3
    finally:
        hook.remove()
    with pytest.raises(ValueError, match="do not fit the model's context"):
        generate_rows(model, tok, [Row(ids[0], 1000)], GenerationSettings())
