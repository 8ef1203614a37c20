"""GGUF export checked three ways: the run's model, the exported file read back by transformers, and llama.cpp.

For each quantisation, `tailor export RUN --format gguf` is written to a temporary folder; then the greedy
continuation of a prompt and the largest logit difference are compared (transformers' GGUF reader), and,
given a llama.cpp `llama-simple` binary, llama.cpp's own greedy continuation of the same prompt.

    python benchmarks/gguf_check.py runs/sst2-smollm2-001 --llama-simple ~/llama.cpp/build/bin/llama-simple
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from tailor.quiet import silence_libraries

silence_libraries()

import torch  # noqa: E402 - after silence_libraries
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from tailor.api import load_run  # noqa: E402
from tailor.export import export_run  # noqa: E402

PROMPT = "The capital of France is Paris. In 2024, 17 people met."


def greedy(model, tok, prompt: str, n: int) -> tuple[str, torch.Tensor]:
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True), logits


def llama_cpp(binary: str, gguf: Path, prompt: str, n: int) -> str:
    out = subprocess.run([binary, "-m", str(gguf), "-n", str(n), prompt], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return f"(llama-simple failed: exit {out.returncode})"
    text = out.stdout.strip()
    return text[len(prompt) :] if text.startswith(prompt) else text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--quants", default="f16,q8_0")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--llama-simple", help="path to llama.cpp's llama-simple binary (optional)")
    args = ap.parse_args()
    model, tok, _ = load_run(args.run)
    backbone = model.backbone.eval()
    want, logits = greedy(backbone, tok, args.prompt, args.tokens)
    print(f"run {args.run}: {want!r}")
    for quant in args.quants.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            result = export_run(args.run, Path(tmp) / "out", fmt="gguf", quant=quant)
            gguf = result.path
            extra = {"n_positions": backbone.config.n_positions} if backbone.config.model_type == "gpt2" else {}
            back = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32, **extra)
            back_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            got, back_logits = greedy(back.eval(), back_tok, args.prompt, args.tokens)
            diff = (back_logits - logits).abs().max().item()
            print(f"{quant:>5}  {gguf.stat().st_size / 1e6:7.1f} MB  max |logit diff| {diff:.4f} "
                  f"(largest logit {logits.abs().max().item():.1f})  transformers greedy same: {got == want}")
            if args.llama_simple:
                cpp = llama_cpp(args.llama_simple, gguf, args.prompt, args.tokens)
                print(f"       llama.cpp greedy same: {cpp.strip() == want.strip()}  {cpp!r}")


if __name__ == "__main__":
    main()
