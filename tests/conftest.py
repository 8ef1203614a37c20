"""Shared fixtures: a BPE tokenizer trained in the test and tiny random causal LMs of three families.

The tokenizer is a byte-level BPE (any text encodes, no unknown tokens) of 398 tokens (asked
for 400; the corpus runs out of merges), trained on 400 generated sentences. Its one special
token, `<|endoftext|>` (id 0), is bos, eos and pad at once, as in GPT-2 and tailor-tiny (see `tailor.pretrain.train_tokenizer`);
encoding adds no special tokens. Models: 2 layers, width 32, 2 heads, context 128 by default.

    def test_x(tmp_path, make_tokenizer, make_tiny_model):
        tok = make_tokenizer(tmp_path)                            # saved in tmp_path/tokenizer
        model_dir = make_tiny_model("llama", tok, tmp_path / "m")  # model + tokenizer, HF format
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

EOS = "<|endoftext|>"
ARCHS = ("gpt2", "llama", "gpt_neox")

_SUBJECTS = "the cat|a dog|the old man|my sister|the red bird|a small robot|the teacher|our neighbour".split(
    "|"
)
_VERBS = "sees|likes|finds|carries|paints|follows|cleans|builds".split("|")
_OBJECTS = (
    "the ball|a green box|the river|an apple|the blue door|a tall tree|the garden|some bread".split(
        "|"
    )
)
_ENDINGS = ".|!|?| today.| at night.| in the morning.|, then sleeps.| again and again.".split("|")


def corpus_sentences(n: int = 400, seed: int = 0) -> list[str]:
    """Simple generated English sentences, deterministic for a seed."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_ENDINGS)}"
        for _ in range(n)
    ]


@functools.cache
def _trained_tokenizer_json(vocab_size: int = 400) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_sentences(), trainer=trainer)
    return tok.to_str()


def build_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """Train (once per session) the test tokenizer, save it in path/tokenizer and load it back."""
    from tokenizers import Tokenizer

    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()),
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=None,
        model_max_length=128,
        clean_up_tokenization_spaces=False,
    )
    out = Path(path) / "tokenizer"
    fast.save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


def tiny_config(arch: str, tokenizer, context: int = 128):
    """A 2-layer, width-32 config of the given family for this tokenizer."""
    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "gpt2":
        # tied embeddings at the default init (0.02) make each token its own argmax, so greedy text is one
        # token repeated; a wider init gives varied text that generation tests can tell apart
        return GPT2Config(
            n_layer=2, n_embd=32, n_head=2, n_positions=context, initializer_range=0.2, **ids
        )
    if (
        arch == "llama"
    ):  # grouped-query attention (2 query heads share 1 key/value head), untied head
        return LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=context,
            tie_word_embeddings=False,
            **ids,
        )
    if arch == "gpt_neox":  # partial rotary (rotary_pct 0.25), parallel residual
        return GPTNeoXConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            max_position_embeddings=context,
            **ids,
        )
    raise ValueError(f"unknown arch {arch!r}; one of {', '.join(ARCHS)}")


def build_tiny_model(arch: str, tokenizer, path: Path, context: int = 128, seed: int = 0) -> Path:
    """A random tiny model (deterministic for a seed) saved with its tokenizer in `path`; returns `path`."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, tokenizer, context))
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def make_tokenizer():
    """make_tokenizer(path) -> PreTrainedTokenizerFast (also saved in path/tokenizer)."""
    return build_tokenizer


@pytest.fixture(scope="session")
def make_tiny_model():
    """make_tiny_model(arch, tokenizer, path, context=128, seed=0) -> path (model + tokenizer)."""
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir(arch) -> a directory with that family's default tiny model, built once per session."""
    root = tmp_path_factory.mktemp("tiny-models")
    tokenizer = build_tokenizer(root)

    @functools.cache
    def get(arch: str) -> Path:
        return build_tiny_model(arch, tokenizer, root / arch)

    return get


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never use the network: the Hugging Face hub reads as unreachable at once (HF_HUB_OFFLINE), here and
    in the tailor processes tests start."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
