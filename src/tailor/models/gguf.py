"""GGUF in: a llama.cpp / Ollama model file becomes a plain Hugging Face directory, once, in a cache.

The file is checked first (readable, complete, a decoder-only text architecture transformers can
read), then transformers dequantizes it to float32. The result - weights in safetensors with no
quantization config, the tokenizer and chat template from the file's metadata - is written to
`<cache>/gguf/<file hash>/`, so every later run loads it as fast as any model directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

# Architectures transformers reads from GGUF that are not decoder-only text models.
NOT_CAUSAL = {"t5", "t5encoder", "umt5", "bert", "nomic-bert", "jina-bert-v2", "clip", "whisper"}
# GGUF spells some architectures differently from transformers' model_type.
RENAMED = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}


class GGUFError(Exception):
    """A GGUF file tailor cannot use; the message names the file and what to do."""


@dataclass
class GGUFInfo:
    path: Path
    architecture: str
    name: str | None
    tokenizer_pre: str | None  # llama.cpp's pre-tokenizer name (how text is split before BPE)
    tensors: int


def cache_root() -> Path:
    """Where tailor keeps converted models and downloaded files: $TAILOR_CACHE, else ~/.cache/tailor."""
    return Path(os.environ.get("TAILOR_CACHE") or Path.home() / ".cache" / "tailor")


def find_gguf(path: Path) -> Path | None:
    """The GGUF file `path` names: the file itself, or the only .gguf in a directory without config.json."""
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if path.is_dir() and not (path / "config.json").is_file():
        files = sorted(path.glob("*.gguf"))
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            raise GGUFError(f"{path} holds {len(files)} GGUF files ({names}); set model.path to one of them")
        return files[0] if files else None
    return None


def supported_architectures() -> list[str]:
    """GGUF architectures that transformers can read as a causal LM."""
    from transformers.integrations.gguf.gguf_conversion_mapping import GGUF_ARCHS
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES) | set(GGUF_ARCHS)
    return sorted(names - NOT_CAUSAL - {"general", "tokenizer"})


def inspect_gguf(path: Path) -> GGUFInfo:
    """Read a GGUF file's header; GGUFError if it is corrupt, truncated, or not a causal LM we can read."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - the reader raises ValueError, IndexError, struct/numpy errors
        raise GGUFError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e}); "
                        "it may be corrupt or truncated - download it again") from None
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > path.stat().st_size:
        raise GGUFError(f"{path} is truncated: its tensors need {end:,} bytes, the file has {path.stat().st_size:,}; "
                        "download it again")

    def field(key: str) -> object:
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    arch = str(field("general.architecture") or "")
    if not arch:
        raise GGUFError(f"{path} has no general.architecture in its metadata; it is not a model file tailor can read")
    info = GGUFInfo(path, arch, field("general.name"), field("tokenizer.ggml.pre"), len(reader.tensors))  # type: ignore[arg-type]
    supported = supported_architectures()
    if arch in NOT_CAUSAL or arch.startswith("clip"):
        raise GGUFError(f"{path} holds a '{arch}' model, which is not a decoder-only text model; tailor fine-tunes "
                        f"causal language models (GGUF architectures: {', '.join(supported)})")
    if RENAMED.get(arch, arch) not in supported and arch not in supported:
        raise GGUFError(f"{path}: GGUF architecture '{arch}' cannot be read by the installed transformers; "
                        f"supported: {', '.join(supported)}. Convert the original Hugging Face checkpoint instead "
                        "(a directory with config.json and safetensors)")
    if field("tokenizer.ggml.tokens") is None:
        raise GGUFError(f"{path} has no tokenizer in its metadata (tokenizer.ggml.tokens); give model.tokenizer "
                        "as a tokenizer directory, or use a GGUF that includes its tokenizer")
    return info


def file_hash(path: Path) -> str:
    """Short sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def converted_dir(path: Path) -> Path:
    """The Hugging Face directory for a GGUF file, converted on first use (cached by the file's hash)."""
    path = path.expanduser().resolve()
    info = inspect_gguf(path)
    out = cache_root() / "gguf" / file_hash(path)
    if (out / "tailor-gguf.json").is_file():
        return out
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _convert(info, tmp)
        tmp.replace(out) if not out.exists() else shutil.rmtree(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert(info: GGUFInfo, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(info.path.parent), info.path.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GGUFError(f"transformers could not read {info.path} ({info.architecture}): {first}") from None
    _restore_pre_tokenizer(tok, info.tokenizer_pre)
    _drop_quantization(model)
    model.config.name_or_path = str(info.path)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "tailor-gguf.json").write_text(json.dumps(
        {"source": str(info.path), "architecture": info.architecture, "name": info.name,
         "tokenizer_pre": info.tokenizer_pre}, indent=2) + "\n")


def _drop_quantization(model: torch.nn.Module) -> None:
    """The dequantized model still says it is a GGUF quantization; it is plain float now, so say so."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _restore_pre_tokenizer(tok: object, pre: str | None) -> None:
    """SmolLM's vocabulary was learned with digits split one by one; transformers' GGUF reader drops that."""
    if pre != "smollm":
        return
    from tokenizers import pre_tokenizers

    backend = tok.backend_tokenizer  # type: ignore[attr-defined]
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
