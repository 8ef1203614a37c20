"""GGUF out: a run's model as one file that llama.cpp, Ollama and LM Studio load, plus an Ollama Modelfile.

Supported: the Llama family (Llama, Mistral, SmolLM, Qwen2 - written as llama.cpp's `llama` or `qwen2`)
and GPT-2, with a byte-level BPE tokenizer (GPT-2, Llama 3, Qwen2, SmolLM). Weights are written as
f32, f16 or q8_0 (norms and biases always f32); the tokenizer, its special tokens and the chat template
the run trained with go into the file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

QUANTS = ("f16", "q8_0", "f32")


class GGUFExportError(Exception):
    """The model or tokenizer cannot be written as GGUF; the message says which part and why."""


@dataclass
class Family:
    arch: str  # llama.cpp's architecture name
    permute_qk: bool = False  # llama.cpp's llama rotates pairs (i, i+d/2) as adjacent pairs: reorder q, k rows
    conv1d: tuple[str, ...] = ()  # GPT-2 stores these as (in, out); GGUF wants (out, in)
    write_output: bool = False  # write output.weight even when tied to the embeddings


FAMILIES = {
    "llama": Family("llama", permute_qk=True),
    "mistral": Family("llama", permute_qk=True),
    "qwen2": Family("qwen2"),
    "gpt2": Family("gpt2", conv1d=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"), write_output=True),
}


@dataclass
class Written:
    path: Path
    tensors: int
    notes: list[str] = field(default_factory=list)


def write_gguf(model: Any, tok: Any, path: Path, quant: str, chat_template: str | None, name: str) -> Written:
    """Write `model` (a transformers causal LM) and `tok` to `path` as GGUF."""
    import gguf

    config = model.config
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise GGUFExportError(f"GGUF export supports the model types {', '.join(sorted(FAMILIES))}; this model is "
                              f"'{config.model_type}'. Export a Hugging Face directory instead (tailor export RUN --out DIR)")
    if quant not in QUANTS:
        raise GGUFExportError(f"--quant {quant!r} is not one of {', '.join(QUANTS)}")
    _check_rope(config)
    writer = gguf.GGUFWriter(str(path), family.arch)
    notes = _write_tokenizer(writer, tok, config, chat_template)
    writer.add_name(name)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])
    if quant == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _write_hparams(writer, config, family)
    count = _write_tensors(writer, model, config, family, quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Written(path, count, notes)


def _check_rope(config: Any) -> None:
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind not in ("default", None):
        raise GGUFExportError(f"rope scaling '{kind}' is not written by tailor's GGUF export yet; export a Hugging Face "
                              "directory and convert it with llama.cpp's convert_hf_to_gguf.py")


def _write_hparams(w: Any, c: Any, family: Family) -> None:
    if family.arch == "gpt2":
        w.add_context_length(c.n_positions)
        w.add_embedding_length(c.n_embd)
        w.add_feed_forward_length(c.n_inner or 4 * c.n_embd)
        w.add_block_count(c.n_layer)
        w.add_head_count(c.n_head)
        w.add_layer_norm_eps(c.layer_norm_epsilon)
        return
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads or c.num_attention_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(_rope_theta(c))
    w.add_vocab_size(c.vocab_size)


def _rope_theta(c: Any) -> float:
    params = getattr(c, "rope_parameters", None) or {}
    return float(params.get("rope_theta") or getattr(c, "rope_theta", None) or 10000.0)


def pair_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """q / k rows reordered from Hugging Face's rotary layout (first half, second half of each head) to
    llama.cpp's (the two halves interleaved), so that llama.cpp's rotation pairs the same numbers."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_tensors(w: Any, model: Any, c: Any, family: Family, quant: str) -> int:
    import gguf

    blocks = c.n_layer if family.arch == "gpt2" else c.num_hidden_layers
    names = gguf.get_tensor_name_map(_arch_enum(family.arch), blocks)
    state = model.state_dict()
    tied = getattr(c, "tie_word_embeddings", False)
    count = 0
    for hf_name, tensor in state.items():
        base, _, suffix = hf_name.rpartition(".")
        if hf_name.endswith((".attn.bias", ".attn.masked_bias")) or "rotary_emb" in hf_name:
            continue  # buffers (GPT-2's causal mask), not weights
        if base == "lm_head" and tied and not family.write_output:
            continue  # llama.cpp uses the token embeddings when output.weight is absent
        target = names.get_name(base)
        if target is None:
            raise GGUFExportError(f"no GGUF name for the weight {hf_name}; this model's layout is not supported")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if family.conv1d and any(base.endswith(k) for k in family.conv1d) and suffix == "weight":
            data = data.T
        if family.permute_qk and base.endswith("q_proj"):
            data = pair_rows(data, c.num_attention_heads)
        elif family.permute_qk and base.endswith("k_proj"):
            data = pair_rows(data, c.num_key_value_heads or c.num_attention_heads)
        _add(w, f"{target}.{suffix}", np.ascontiguousarray(data), quant)
        count += 1
    if family.write_output and "lm_head.weight" not in state:
        _add(w, "output.weight", state[_embedding_key(state)].float().numpy(), quant)
        count += 1
    return count


def _embedding_key(state: dict) -> str:
    return next(k for k in state if k.endswith(("wte.weight", "embed_tokens.weight")))


def _arch_enum(arch: str) -> Any:
    import gguf

    return next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)


def _add(w: Any, name: str, data: np.ndarray, quant: str) -> None:
    """Norms and biases (1-D) stay f32; matrices as asked (q8_0 where rows split into 32-value blocks)."""
    import gguf

    if data.ndim < 2 or quant == "f32":
        w.add_tensor(name, data.astype(np.float32))
    elif quant == "q8_0" and data.shape[-1] % 32 == 0:
        q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        w.add_tensor(name, data.astype(np.float16))


# ---------------------------------------------------------------- tokenizer


def _write_tokenizer(w: Any, tok: Any, config: Any, chat_template: str | None) -> list[str]:
    """Vocabulary, merges, special ids and chat template, as llama.cpp reads a byte-level BPE tokenizer."""
    import gguf

    spec = json.loads(tok.backend_tokenizer.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _byte_level(spec):
        raise GGUFExportError("GGUF export supports byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2, SmolLM); "
                              f"this one is {model.get('type')}. Export a Hugging Face directory instead")
    vocab = tok.get_vocab()
    size = max(config.vocab_size, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    special = set(tok.all_special_ids)
    added = {t.content: t for t in tok.added_tokens_decoder.values()}
    for text, i in vocab.items():
        tokens[i] = text
        if i in special or (text in added and added[text].special):
            types[i] = gguf.TokenType.CONTROL
        elif text in added:
            types[i] = gguf.TokenType.USER_DEFINED
        else:
            types[i] = gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre, notes = tokenizer_pre(spec)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for add, value in ((w.add_bos_token_id, tok.bos_token_id), (w.add_eos_token_id, tok.eos_token_id),
                       (w.add_unk_token_id, tok.unk_token_id), (w.add_pad_token_id, tok.pad_token_id)):
        if value is not None:
            add(value)
    w.add_add_bos_token(bool(tok.bos_token_id is not None and tok("a")["input_ids"][:1] == [tok.bos_token_id]))
    w.add_add_eos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)
    return notes


def _byte_level(spec: dict) -> bool:
    text = json.dumps(spec.get("pre_tokenizer")) + json.dumps(spec.get("decoder"))
    return "ByteLevel" in text


# llama.cpp names the way text is split before BPE; these are the splits tailor can recognise.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def tokenizer_pre(spec: dict) -> tuple[str, list[str]]:
    """llama.cpp's pre-tokenizer name for a tokenizer.json, and a note when it had to guess."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2", []
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm", []
    if kinds and kinds[0] == "Split":
        regex = (parts[0].get("pattern") or {}).get("Regex")
        for name in ("llama-bpe", "qwen2", "gpt-4o"):
            if GGUF_PRE_TOKENIZER_SPLITS.get(name) == regex:
                return name, []
        if regex == _GPT2_SPLIT:
            return "gpt-2", []
    return "default", [f"note: the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds))}) has no llama.cpp name "
                       "tailor knows; wrote 'default', so llama.cpp may split some text differently"]
