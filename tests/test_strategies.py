"""Strategy invariants: what trains changes, what is frozen stays bit-identical, on three families."""

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig

from tailor.config import StrategyConfig, TrainConfig
from tailor.models.heads import ClassificationHead, TailorModel
from tailor.strategies import Plan, apply_strategy, describe, layout
from tailor.train.loop import make_optimizer

FAMILIES = {
    "gpt2": lambda: GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0),
    "llama": lambda: LlamaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                 num_key_value_heads=2, vocab_size=64, max_position_embeddings=32),
    "gpt_neox": lambda: GPTNeoXConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                      vocab_size=64, max_position_embeddings=32),
}


def tiny(family: str) -> TailorModel:
    torch.manual_seed(0)
    return TailorModel(AutoModelForCausalLM.from_config(FAMILIES[family]()), {"cls": ClassificationHead(32, 3, dropout=0.0)})


def train_steps(model: TailorModel, cfg: StrategyConfig, steps: int = 3) -> tuple[dict, dict]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plan = apply_strategy(model, cfg, lr=1e-2, weight_decay=0.0)
    opt = make_optimizer(plan.groups, TrainConfig(lr=1e-2))
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        if plan.on_step:
            plan.on_step(step)
        x = torch.randint(0, 64, (4, 8), generator=g)
        logits = model.heads["cls"](model.pooled(x, torch.ones_like(x)))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])) + model.logits(x, torch.ones_like(x)).mean() * 0
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = dict(plan.model.named_parameters())
    return before, {n: after[n].detach() for n in before if n in after}


def changed(before: dict, after: dict) -> set[str]:
    return {n for n in before if n in after and not torch.equal(before[n], after[n])}


@pytest.mark.parametrize("family", FAMILIES)
def test_head_trains_only_task_layers(family):
    model = tiny(family)
    before, after = train_steps(model, StrategyConfig(name="head"))
    moved = changed(before, after)
    assert moved == {n for n in before if n.startswith("heads.")}


@pytest.mark.parametrize("family", FAMILIES)
def test_top_k_trains_exactly_the_top_blocks(family):
    model = tiny(family)
    lay = layout(model)
    top = {n for n, _ in lay.blocks[-1]} | {n for n, _ in lay.blocks[-2]}
    lower = {n for n, _ in lay.blocks[0]} | {n for n, _ in lay.embed}
    before, after = train_steps(model, StrategyConfig(name="top_k", k=2))
    moved = changed(before, after)
    assert top <= moved and not (lower & moved)
    assert {n for n in before if n.startswith("heads.")} <= moved


def test_llrd_groups_carry_decayed_learning_rates():
    model = tiny("gpt2")
    plan = apply_strategy(model, StrategyConfig(name="llrd", decay=0.5, head_lr_mult=10), lr=1e-3, weight_decay=0.01)
    lrs = {g["name"].replace(" (no decay)", ""): g["lr"] for g in plan.groups}
    assert lrs["block 2"] == pytest.approx(1e-3)
    assert lrs["block 1"] == pytest.approx(5e-4)
    assert lrs["block 0"] == pytest.approx(2.5e-4)
    assert lrs["embeddings"] == pytest.approx(1.25e-4)
    assert lrs["task layers"] == pytest.approx(1e-2)
    for g in plan.groups:  # no weight decay on norms and biases
        if g["name"].endswith("(no decay)"):
            assert g["weight_decay"] == 0 and all(p.ndim < 2 for p in g["params"]) or "norm" in g["name"]


def test_gradual_unfreezes_one_block_per_interval():
    model = tiny("llama")
    lay = layout(model)
    plan = apply_strategy(model, StrategyConfig(name="gradual", unfreeze_every=2), lr=1e-3, weight_decay=0.0)

    def open_blocks():
        return [i for i, b in enumerate(lay.blocks) if all(p.requires_grad for _, p in b)]

    seen = []
    for step in range(0, 10, 2):
        plan.on_step(step)
        seen.append(open_blocks())
    assert seen[:4] == [[], [2], [1, 2], [0, 1, 2]]
    assert all(p.requires_grad for _, p in lay.embed)  # after the last block, the embeddings
    assert all(p.requires_grad for _, p in lay.head)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_trains_adapters_and_head_only(family):
    model = tiny(family)
    before, after = train_steps(model, StrategyConfig(name="lora"))
    moved = changed(before, after)
    assert moved == {n for n in before if n.startswith("heads.")}  # base weights untouched
    lora = [n for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
    assert lora
    info = describe(model, Plan(groups=[], model=model))
    assert 0 < info["trainable"] < info["total"] / 2
