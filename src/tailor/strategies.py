"""Strategies: which parameters train, at which learning rate. Model -> parameter groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from tailor.config import StrategyConfig
from tailor.models.heads import TailorModel, transformer_of


@dataclass
class Layout:
    """The model's parameters by role, found from module structure (no per-family names)."""

    embed: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    blocks: list[list[tuple[str, nn.Parameter]]] = field(default_factory=list)  # bottom -> top
    final: list[tuple[str, nn.Parameter]] = field(default_factory=list)  # final norm, untied LM head
    head: list[tuple[str, nn.Parameter]] = field(default_factory=list)  # task layers


def find_blocks(model: TailorModel) -> nn.ModuleList:
    """The transformer blocks: the longest ModuleList inside the decoder stack."""
    lists = [m for m in transformer_of(model.backbone).modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError("could not find the transformer blocks (no nn.ModuleList in the model)")
    return max(lists, key=len)


def layout(model: TailorModel) -> Layout:
    blocks = find_blocks(model)
    owner: dict[int, int] = {}
    for i, block in enumerate(blocks):
        for p in block.parameters():
            owner[id(p)] = i
    embed_ids = {id(p) for p in model.backbone.get_input_embeddings().parameters()}
    for mod in transformer_of(model.backbone).modules():
        if isinstance(mod, nn.Embedding):  # position embeddings (wpe) count as embeddings
            embed_ids |= {id(p) for p in mod.parameters()}
    out = Layout(blocks=[[] for _ in blocks])
    for name, p in model.named_parameters(remove_duplicate=True):
        if name.startswith("heads."):
            out.head.append((name, p))
        elif id(p) in owner:
            out.blocks[owner[id(p)]].append((name, p))
        elif id(p) in embed_ids:
            out.embed.append((name, p))
        else:
            out.final.append((name, p))
    return out


@dataclass
class Plan:
    """What the optimiser gets, plus an optional per-step hook (gradual unfreezing)."""

    groups: list[dict]
    on_step: Callable[[int], None] | None = None
    model: TailorModel | None = None


def _no_decay(name: str, p: nn.Parameter) -> bool:
    return p.ndim < 2 or "norm" in name.lower() or "ln_" in name.lower()


def _groups(named: list[tuple[str, nn.Parameter]], label: str, lr: float, wd: float) -> list[dict]:
    """Split one role into decayed and non-decayed groups (no weight decay on norms and biases)."""
    decay = [p for n, p in named if not _no_decay(n, p)]
    plain = [p for n, p in named if _no_decay(n, p)]
    out = []
    if decay:
        out.append({"name": label, "params": decay, "lr": lr, "weight_decay": wd})
    if plain:
        out.append({"name": f"{label} (no decay)", "params": plain, "lr": lr, "weight_decay": 0.0})
    return out


def _freeze_all_but(model: nn.Module, keep: set[int]) -> None:
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def _generative_head(model: TailorModel, lay: Layout, cfg: StrategyConfig) -> list[tuple[str, nn.Parameter]]:
    """For tasks without task layers, 'head' trains the final norm and the LM head (or cfg.trainable)."""
    if cfg.trainable:
        return [(n, p) for n, p in model.named_parameters() if any(f in n for f in cfg.trainable)]
    out_emb = model.backbone.get_output_embeddings()
    out_ids = {id(p) for p in out_emb.parameters()} if out_emb is not None else set()
    named = dict(model.named_parameters())
    return lay.final + [(n, p) for n, p in named.items() if id(p) in out_ids and (n, p) not in lay.final]


def apply_strategy(model: TailorModel, cfg: StrategyConfig, lr: float, weight_decay: float,
                   output_layers: bool = False) -> Plan:
    """Freeze/unfreeze parameters and build optimiser groups for the chosen strategy.

    `output_layers`: some task (a generative sub-task of a multitask run) uses the LM head as its head, so
    with `head` it trains beside the task layers.
    """
    if cfg.name == "lora":
        return _lora(model, cfg, lr, weight_decay)
    lay = layout(model)
    head_lr = lr * cfg.head_lr_mult
    n = len(lay.blocks)
    heads = lay.head if lay.head else _generative_head(model, lay, cfg)
    if cfg.name == "full":
        roles = [("embeddings", lay.embed, lr)] + [(f"block {i}", b, lr) for i, b in enumerate(lay.blocks)]
        roles += [("final", lay.final, lr), ("task layers", lay.head, head_lr)]
    elif cfg.name == "head":
        roles = [("task layers" if lay.head else "output layers", heads, head_lr)]
        if lay.head and output_layers:
            roles.append(("output layers", _generative_head(model, lay, cfg), head_lr))
    elif cfg.name == "top_k":
        k = min(cfg.k, n)
        roles = [(f"block {i}", lay.blocks[i], lr) for i in range(n - k, n)]
        roles += [("final", lay.final, lr), ("task layers", lay.head, head_lr)]
    elif cfg.name == "llrd":  # block at depth d from the top gets lr * decay**d; embeddings deepest
        roles = [("embeddings", lay.embed, lr * cfg.decay**n)]
        roles += [(f"block {i}", b, lr * cfg.decay ** (n - 1 - i)) for i, b in enumerate(lay.blocks)]
        roles += [("final", lay.final, lr), ("task layers", lay.head, head_lr)]
    elif cfg.name == "gradual":
        roles = [("embeddings", lay.embed, lr)] + [(f"block {i}", b, lr) for i, b in enumerate(lay.blocks)]
        roles += [("final", lay.final, lr), ("task layers", lay.head, head_lr)]
    else:
        raise ValueError(f"unknown strategy {cfg.name}")
    seen: set[int] = set()
    groups = []
    for label, named, group_lr in roles:
        named = [(nm, p) for nm, p in named if id(p) not in seen]
        seen |= {id(p) for _, p in named}
        groups += _groups(named, label, group_lr, weight_decay)
    _freeze_all_but(model, seen)
    plan = Plan(groups=groups, model=model)
    if cfg.name == "gradual":
        plan.on_step = _gradual_hook(model, lay, cfg.unfreeze_every)
        plan.on_step(0)
    return plan


def _gradual_hook(model: TailorModel, lay: Layout, every: int) -> Callable[[int], None]:
    """ULMFiT: task layers + final first; one more block from the top every `every` steps."""
    always = {id(p) for _, p in lay.head + lay.final}
    n = len(lay.blocks)

    def on_step(step: int) -> None:
        stage = step // every
        keep = set(always)
        for i in range(n - min(stage, n), n):
            keep |= {id(p) for _, p in lay.blocks[i]}
        if stage > n:  # after the last block, the embeddings
            keep |= {id(p) for _, p in lay.embed}
        _freeze_all_but(model, keep)

    return on_step


def _lora(model: TailorModel, cfg: StrategyConfig, lr: float, weight_decay: float) -> Plan:
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora.target_modules or "all-linear"
    peft_cfg = LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=targets, bias="none",
    )
    model.backbone = get_peft_model(model.backbone, peft_cfg)
    for p in model.heads.parameters():
        p.requires_grad_(True)
    adapters = [(n, p) for n, p in model.backbone.named_parameters() if p.requires_grad]
    heads = list(model.heads.named_parameters())
    groups = _groups(adapters, "lora adapters", lr, weight_decay) + _groups(heads, "task layers", lr * cfg.head_lr_mult, weight_decay)
    return Plan(groups=groups, model=model)


def describe(model: nn.Module, plan: Plan) -> dict:
    """Trainable / total parameter counts and each group's learning rate, for printing and the report."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    groups = [{"name": g["name"], "params": sum(p.numel() for p in g["params"]), "lr": g["lr"],
               "weight_decay": g["weight_decay"]} for g in plan.groups]
    return {"trainable": trainable, "total": total, "groups": groups}


def summary_lines(info: dict) -> list[str]:
    """The parameter groups in a few lines whatever the depth: consecutive blocks merged into one line
    ("blocks 0-29"), each role's no-decay part (norms, biases) folded into it, a learning-rate range
    where it varies by depth (llrd)."""
    merged: list[dict] = []
    for g in info["groups"]:
        role = g["name"].removesuffix(" (no decay)")
        block = int(role.split()[1]) if role.startswith("block ") else None
        last = merged[-1] if merged else None
        if last is not None and (last["role"] == role or (block is not None and last["last"] is not None
                                                           and block in (last["last"], last["last"] + 1))):
            last["params"] += g["params"]
            last["lrs"].append(g["lr"])
            last["wds"].add(g["weight_decay"])
            last["last"] = block if block is not None else last["last"]
        else:
            merged.append({"role": role, "first": block, "last": block, "params": g["params"],
                           "lrs": [g["lr"]], "wds": {g["weight_decay"]}})
    return [_summary_line(m) for m in merged]


def _summary_line(m: dict) -> str:
    name = m["role"] if m["first"] is None else (
        f"block {m['first']}" if m["first"] == m["last"] else f"blocks {m['first']}-{m['last']}")
    lo, hi = min(m["lrs"]), max(m["lrs"])
    lr = f"lr {hi:.1e}" if hi <= lo * (1 + 1e-9) else f"lr {lo:.1e} .. {hi:.1e} (by depth)"
    decay = max(m["wds"])
    wd = f"wd {decay:g}" + (" (0 on norms, biases)" if len(m["wds"]) > 1 else "")
    return f"{name:<16} {m['params']:>13,} params  {lr}  {wd}"
