"""Backbone + tokenizer from tailor-tiny, a directory, a hub id, a previous run, or an architecture."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tailor.config import ArchConfig, ModelConfig
from tailor.models.gguf import GGUFError, converted_dir, file_hash, find_gguf
from tailor.rundir import is_run_dir, unfinished

TINY_DIR = Path(__file__).resolve().parent.parent / "assets" / "tailor-tiny"


class ModelLoadError(Exception):
    """The model could not be loaded; the message says what was tried and what to do."""


@dataclass
class Source:
    kind: str  # tiny | dir | run | hub | gguf | scratch
    location: str  # what transformers loads (gguf: the converted directory, once load_tokenizer_for ran)
    run: dict | None = None  # tailor.json of a run used as the model
    lineage: list[dict] = field(default_factory=list)
    file: str | None = None  # gguf: the GGUF file itself
    _hash: str | None = None

    def fingerprint(self) -> str | None:
        """Short sha256 of the model's files (computed once); None for hub ids and models from scratch."""
        if self._hash is None and self.kind in ("tiny", "dir", "run"):
            self._hash = directory_hash(self.location)
        elif self._hash is None and self.kind == "gguf" and self.file:
            self._hash = file_hash(Path(self.file))
        return self._hash


def hub_reachable(timeout: float = 2.5) -> bool:
    """Can this machine open a connection to the Hugging Face hub (HF_ENDPOINT) within `timeout` seconds?
    False at once in offline mode (HF_HUB_OFFLINE)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (80 if url.scheme == "http" else 443)), timeout=timeout).close()
        return True
    except OSError:
        return False


def locate(cfg: ModelConfig) -> Source:
    """Decide where the model comes from, without loading it."""
    if cfg.arch is not None:
        return Source("scratch", cfg.arch.family)
    ref = cfg.path
    if ref == "tailor-tiny":
        if not (TINY_DIR / "config.json").is_file():
            raise ModelLoadError(
                f"the bundled model tailor-tiny is missing from {TINY_DIR}; "
                "rebuild it with `tailor pretrain examples/pretrain-tiny.yaml` (see README)"
            )
        return Source("tiny", str(TINY_DIR))
    p = Path(ref).expanduser()
    try:
        gguf = find_gguf(p)
    except GGUFError as e:
        raise ModelLoadError(str(e)) from None
    if gguf is not None:
        return Source("gguf", str(gguf.resolve()), file=str(gguf.resolve()))
    if p.exists():
        if not p.is_dir():
            raise ModelLoadError(f"model.path {ref} is a file but not a GGUF model (.gguf); point it at a model "
                                 "directory (config.json + safetensors), a .gguf file, or a tailor run")
        if (p / "tailor.json").is_file() and (p / "model").is_dir():
            model = p / "model"
            if (model / "adapter_config.json").is_file() and not (model / "adapter_model.safetensors").is_file():
                found = ", ".join(sorted(f.name for f in model.glob("adapter_model*"))) or "no adapter weights"
                raise ModelLoadError(f"model.path {ref}: the LoRA adapter in {model} is not in safetensors format "
                                     f"({found}); tailor never unpickles weights (a pickle can run code). Save the "
                                     "adapter as adapter_model.safetensors (peft: save_pretrained(..., "
                                     "safe_serialization=True)) or train the run again")
            run = json.loads((p / "tailor.json").read_text())
            lineage = run.get("lineage", []) + [{"run": str(p.resolve()), "task": run.get("task")}]
            return Source("run", str(model), run=run, lineage=lineage)
        if (p / "config.json").is_file():
            return Source("dir", str(p))
        if is_run_dir(p):  # a run that has no model yet: still training, or stopped
            raise ModelLoadError(f"model.path: {unfinished(p)}")
        raise ModelLoadError(
            f"model.path {ref} is a directory but not a model: it has no config.json "
            "(a Hugging Face model directory) and no tailor.json (a tailor run)"
        )
    if ref.lower().endswith(".gguf"):
        hint = "; fetch SmolLM2-135M-Instruct with: bash benchmarks/get_smollm2.sh" if "SmolLM2" in ref else ""
        raise ModelLoadError(f"model.path {ref}: no such GGUF file{hint}")
    looks_local = ref.startswith((".", "/", "~")) or ref.count("/") > 1 or ref.endswith((".yaml", ".json"))
    if looks_local:
        raise ModelLoadError(f"model.path {ref}: no such directory")
    if hub_reachable():
        return Source("hub", ref)
    cached = _hub_cache_dir(cfg)
    if cached is not None:  # offline, but downloaded before: load the cached copy without trying the network
        return Source("dir", cached)
    local = f"there is no folder {ref!r} here ({Path.cwd()}); " if "/" not in ref else ""
    raise ModelLoadError(
        f"model.path {ref}: {local}as a Hugging Face hub id it cannot be downloaded: the hub is not reachable "
        "(no network, or HF_HUB_OFFLINE is set) and the model is not in the local cache. Give a local model "
        "folder (one with config.json), or download the model where there is network"
    )


def _hub_cache_dir(cfg: ModelConfig) -> str | None:
    """The local Hugging Face cache's copy of a hub model (the folder of its config.json), or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(cfg.path, "config.json", revision=cfg.revision)
    except ValueError:  # not a valid repo id
        return None
    return str(Path(found).parent) if isinstance(found, str) else None


def build_scratch(arch: ArchConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A randomly initialised model of the given family and size."""
    vocab = arch.vocab_size or len(tokenizer)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if arch.family == "gpt2":
        config = GPT2Config(
            vocab_size=vocab, n_positions=arch.context, n_embd=arch.n_embd, n_layer=arch.n_layer,
            n_head=arch.n_head, resid_pdrop=arch.dropout, embd_pdrop=arch.dropout, attn_pdrop=arch.dropout, **ids,
        )
    elif arch.family == "llama":
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=arch.n_embd, intermediate_size=int(arch.n_embd * 8 / 3) // 8 * 8,
            num_hidden_layers=arch.n_layer, num_attention_heads=arch.n_head, num_key_value_heads=arch.n_head,
            max_position_embeddings=arch.context, attention_dropout=arch.dropout, tie_word_embeddings=True, **ids,
        )
    else:
        config = GPTNeoXConfig(
            vocab_size=vocab, hidden_size=arch.n_embd, intermediate_size=4 * arch.n_embd,
            num_hidden_layers=arch.n_layer, num_attention_heads=arch.n_head, max_position_embeddings=arch.context,
            hidden_dropout=arch.dropout, attention_dropout=arch.dropout, tie_word_embeddings=True, **ids,
        )
    return AutoModelForCausalLM.from_config(config)


def load_tokenizer(location: str, cfg: ModelConfig, local_only: bool) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(
        location, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision, local_files_only=local_only
    )
    if tok.pad_token is None:  # most causal LMs ship without one; eos is safe since padding is masked
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<|pad|>"})
    tok.padding_side = "right"
    return tok


def load_tokenizer_for(cfg: ModelConfig) -> tuple[PreTrainedTokenizerBase, Source]:
    """Find the model and load its tokenizer (cheap: lets the data checks run before the model loads)."""
    src = locate(cfg)
    if src.kind == "gguf":
        try:
            src.location = str(converted_dir(Path(src.location)))  # dequantized once, then a plain directory
        except GGUFError as e:
            raise ModelLoadError(str(e)) from None
    if src.kind == "scratch":
        location = cfg.tokenizer or (cfg.path if cfg.path != "tailor-tiny" else str(TINY_DIR))
    else:
        location = cfg.tokenizer or src.location  # a run keeps its tokenizer in model/
    try:
        return load_tokenizer(location, cfg, local_only=src.kind != "hub"), src
    except (OSError, ValueError) as e:
        raise ModelLoadError(_explain(src, e)) from None


def load_backbone(cfg: ModelConfig, tok: PreTrainedTokenizerBase, src: Source) -> PreTrainedModel:
    """The causal LM itself: built from scratch, or read from safetensors."""
    if src.kind == "scratch":
        return fuse_activations(build_scratch(cfg.arch, tok))
    try:
        if src.run is not None and (Path(src.location) / "adapter_config.json").is_file():
            model = _merged_adapter(src, cfg)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                src.location, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision,
                local_files_only=src.kind != "hub", use_safetensors=True, dtype=torch.float32,
            )
    except (OSError, ValueError) as e:
        raise ModelLoadError(_explain(src, e)) from None
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    return fuse_activations(model)


def fuse_activations(model: nn.Module) -> nn.Module:
    """Swap transformers' tanh-GELU written in Python ops ("gelu_new": GPT-2 and kin) for torch's fused kernel.

    The same function (within 5e-7 in fp32, and closer to exact under bf16); about 18% faster training
    steps on tailor-tiny, and autograd no longer keeps the five intermediates each call makes. The saved
    config is untouched, so the model still loads the same way with plain transformers.
    """
    from transformers.activations import NewGELUActivation

    for module in model.modules():
        for name, child in module.named_children():
            if type(child) is NewGELUActivation:
                setattr(module, name, nn.GELU(approximate="tanh"))
    return model


def _merged_adapter(src: Source, cfg: ModelConfig) -> PreTrainedModel:
    """A LoRA run: its base model with the adapter merged in."""
    from peft import PeftModel

    base_cfg = cfg.model_copy(update={"path": src.run["base"]["location"], "arch": None, "tokenizer": None})
    base_tok, base_src = load_tokenizer_for(base_cfg)
    base = load_backbone(base_cfg, base_tok, base_src)
    return PeftModel.from_pretrained(base, src.location).merge_and_unload()


def load(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Source]:
    """Load (or build) the backbone and its tokenizer. Raises ModelLoadError with a clear message."""
    tok, src = load_tokenizer_for(cfg)
    return load_backbone(cfg, tok, src), tok, src


def _explain(src: Source, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if src.kind == "hub":
        local = f"there is no folder '{src.location}' here ({Path.cwd()}), and " if "/" not in src.location else ""
        return (
            f"could not load '{src.location}': {local}the Hugging Face hub could not provide it ({first}). "
            "If you meant a local folder, check the path; without network access, download the model elsewhere "
            "and set model.path to the local directory that holds config.json and model.safetensors"
        )
    return f"could not load the model in {src.location}: {first}"


def directory_hash(path: str | Path) -> str:
    """Short sha256 over a model directory's config and weight files."""
    h = hashlib.sha256()
    for f in sorted(Path(path).glob("*")):
        if f.suffix in (".json", ".safetensors") and f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Override every dropout probability in the model (Dropout modules and attention's float rate)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
        elif isinstance(getattr(m, "attention_dropout", None), float):  # Llama, GPT-NeoX, Qwen, Mistral attention
            m.attention_dropout = p


def context_length(model: PreTrainedModel) -> int:
    c = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        v = getattr(c, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return 1024
