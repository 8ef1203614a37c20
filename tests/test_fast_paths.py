"""The fast paths are the same arithmetic: loss from trained positions only (chunked), fused optimiser,
gradient checkpointing, bf16 weights, one host read per step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tailor.config import TrainConfig
from tailor.data.batching import IGNORE
from tailor.models import heads
from tailor.models.heads import TailorModel
from tailor.train.loop import make_optimizer


def batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0  # a padded row
    labels = ids.masked_fill(mask == 0, IGNORE)
    labels[:, :6] = IGNORE  # a prompt that is not trained
    return ids, mask, labels


def reference_nll(model: TailorModel, ids, mask, labels):
    logits = model.logits(ids, mask)[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("budget", [1 << 25, 400 * 7])  # one chunk; chunks of 7 rows (recomputed in backward)
def test_trained_positions_loss_equals_the_full_logits_loss_and_its_gradients(arch, budget, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(heads, "LOGIT_BUDGET", budget)
    torch.manual_seed(0)
    model = TailorModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir(arch)))
    ids, mask, labels = batch(model.backbone.config.vocab_size)
    fast, n = model.next_token_nll(ids, mask, labels)
    fast.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    slow = reference_nll(model, ids, mask, labels)
    slow.backward()
    assert int(n) == int((labels[:, 1:] != IGNORE).sum())
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for k, p in model.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, rtol=1e-4, atol=1e-6, msg=k)


def test_without_labels_every_real_token_is_scored(tiny_model_dir):
    model = TailorModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama")))
    ids, mask, _ = batch(model.backbone.config.vocab_size)
    with torch.no_grad():
        nll, n = model.next_token_nll(ids, mask)
        expected = reference_nll(model, ids, mask, ids.masked_fill(mask == 0, IGNORE))
    assert int(n) == int(mask[:, 1:].sum())
    torch.testing.assert_close(nll, expected, rtol=1e-5, atol=1e-5)


def test_the_optimiser_uses_torchs_fused_kernel_and_steps_like_the_loop():
    params = [torch.nn.Parameter(torch.randn(8, 8)), torch.nn.Parameter(torch.randn(8))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, q in zip(params, ref, strict=True):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    opt = make_optimizer([{"params": params, "weight_decay": 0.01}], TrainConfig(lr=1e-2))
    assert opt.defaults["fused"] is True
    opt.step()
    torch.optim.AdamW([{"params": ref, "weight_decay": 0.01}], lr=1e-2, foreach=False).step()
    for p, q in zip(params, ref, strict=True):
        torch.testing.assert_close(p, q)
    sgd = make_optimizer([{"params": params}], TrainConfig(lr=1e-2, optimizer="sgd"))
    assert sgd.defaults["fused"] is True


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_model_dir):
    model = TailorModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama")))
    model.train()
    ids, mask, labels = batch(model.backbone.config.vocab_size)
    plain, _ = model.next_token_nll(ids, mask, labels)
    plain.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.recomputes = True  # as fit() sets it: recomputed blocks must use their forward's attention kernel
    again, _ = model.next_token_nll(ids, mask, labels)
    again.backward()
    torch.testing.assert_close(again, plain, rtol=1e-5, atol=1e-6)  # the flash kernel then, the plain one before
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_short_rows_use_the_plain_attention_kernel_with_the_same_result(tiny_model_dir, monkeypatch):
    model = TailorModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"))).eval()
    ids, mask, labels = batch(model.backbone.config.vocab_size)
    with torch.no_grad():
        plain, _ = model.next_token_nll(ids, mask, labels)  # 20 tokens: the plain kernel
        monkeypatch.setattr(heads, "SHORT_ATTENTION", 0)
        flash, _ = model.next_token_nll(ids, mask, labels)
    torch.testing.assert_close(plain, flash, rtol=1e-5, atol=1e-6)
    assert isinstance(heads.attention_kernel(ids, allowed=True), __import__("contextlib").nullcontext)
    monkeypatch.setattr(heads, "SHORT_ATTENTION", 96)
    assert not isinstance(heads.attention_kernel(ids, allowed=True), __import__("contextlib").nullcontext)


@pytest.mark.parametrize("setting", ["train.weights=bf16", "train.gradient_checkpointing=true"])
def test_memory_settings_train_end_to_end(setting, tmp_path, tiny_model_dir):
    import json

    from _lm import write_config

    from tailor.api import train
    from tailor.config import load_config

    cfg = load_config(write_config(tmp_path, tiny_model_dir("llama"), max_steps=12, eval_every=12, save_every=12),
                      [setting, "eval.baseline=false", "train.precision=bf16"])
    run = train(cfg)
    losses = [r["loss"] for r in map(json.loads, (run.path / "metrics.jsonl").read_text().splitlines()) if "loss" in r
              and "split" not in r]
    assert losses[-1] < losses[0]
    dtype = json.loads((run.path / "model" / "config.json").read_text()).get("dtype")
    assert (dtype == "bfloat16") == (setting == "train.weights=bf16")


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
def test_packed_documents_neither_see_nor_train_on_each_other(arch, tiny_model_dir):
    """Two documents packed in one row score exactly as each does alone: attention and positions restart
    after the separator, and the second document's first token is not trained on the first's eos."""
    from tailor.config import TaskConfig
    from tailor.data.batching import collate, pack
    from tailor.tasks.lm import LanguageModelling

    model = TailorModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir(arch))).eval()
    eos = model.backbone.config.eos_token_id
    g = torch.Generator().manual_seed(1)
    a, b = (torch.randint(1, model.backbone.config.vocab_size, (n,), generator=g).numpy() for n in (9, 6))
    task = LanguageModelling(TaskConfig(type="lm"))

    def nll(docs, block):
        data = pack(docs, block, eos)
        batch = collate(data, torch.arange(len(data)).numpy(), pad_id=eos)
        with torch.no_grad():
            return task.predict(model, batch)[0]

    together = nll([a, b], block=17)  # one row: a eos b eos
    alone = [nll([d], block=len(d) + 1) for d in (a, b)]  # each in a row of its own
    assert together[1] == alone[0][1] + alone[1][1] == 15  # b's first token is not predicted from a's eos
    assert abs(together[0] - (alone[0][0] + alone[1][0])) < 1e-4 * together[0]  # b never sees a
