"""The bundled base model: plain Hugging Face format, small, and it really learned its world."""

import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tailor.data.synthetic import build_world, corpus_documents
from tailor.models.load import TINY_DIR


def perplexity(model, tok, texts):
    nll, n = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tok(text, return_tensors="pt")["input_ids"][:, :256]
            out = model(input_ids=ids, labels=ids)
            nll += out.loss.item() * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
    return math.exp(nll / n)


def test_tailor_tiny_is_small_plain_hf_and_knows_its_world():
    size = sum(f.stat().st_size for f in TINY_DIR.iterdir())
    assert size <= 20 * 2**20
    model = AutoModelForCausalLM.from_pretrained(TINY_DIR)  # no tailor code involved
    tok = AutoTokenizer.from_pretrained(TINY_DIR)
    model.eval()
    assert model.config.n_positions >= 256
    fresh = list(corpus_documents(build_world(0), 40, seed=987_654))  # documents it never saw
    trained = perplexity(model, tok, fresh)
    torch.manual_seed(0)
    scratch = AutoModelForCausalLM.from_config(model.config).eval()
    assert trained < perplexity(scratch, tok, fresh) / 20
    assert trained < 40  # measured 20.8 on these documents (random init: ~4,000)


def test_tailor_tiny_generates_in_domain_text():
    model = AutoModelForCausalLM.from_pretrained(TINY_DIR).eval()
    tok = AutoTokenizer.from_pretrained(TINY_DIR)
    ids = tok("Customer review of the", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=40, do_sample=False, pad_token_id=tok.eos_token_id)
    text = tok.decode(out[0, ids.shape[1]:])
    world = build_world(0)
    vocabulary = {w.strip(".,:!?").lower() for p in world.products for w in p.name.split()} | {"rating", "it", "the"}
    words = [w.strip(".,:!?/").lower() for w in text.split()]
    assert len(words) >= 15
    assert sum(w in vocabulary for w in words) >= 3, text
