"""Greedy generation with and without the KV cache, in one process: tokens/s of each and the ratio.

    python benchmarks/generate_kv_cache.py                    # a random 4-layer, 256-wide GPT-2
    python benchmarks/generate_kv_cache.py runs/x-001/model --tokens 200

Both runs must produce identical tokens (asserted). Each setting is timed `--repeats` times after
one warm-up run and the fastest time is kept; absolute numbers are noise on a shared CPU, the
ratio is the result.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, PreTrainedTokenizerFast

from tailor.generate import GenerationSettings, generate_ids

EOS = "<|endoftext|>"


def build_default_model(path: Path) -> Path:
    """A random GPT-2 (4 layers, width 256, 4 heads) with a byte-level BPE of 2,000 tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(0)
    words = "the a pump valve filter was is checked replaced cleaned noisy fine quiet machine red blue".split()
    texts = [
        " ".join(rng.choice(words) for _ in range(rng.randint(5, 30))) + "." for _ in range(2000)
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=EOS, eos_token=EOS, pad_token=EOS)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=1024,
        n_embd=256,
        n_layer=4,
        n_head=4,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def time_generation(
    model, tok, ids: list[int], settings: GenerationSettings, repeats: int
) -> tuple[float, list[int]]:
    """Fastest wall time of `repeats` runs (after a warm-up) and the generated ids."""
    out = generate_ids(model, tok, [ids], settings)[0]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        again = generate_ids(model, tok, [ids], settings)[0]
        best = min(best, time.perf_counter() - t0)
        assert again == out, "greedy generation is not deterministic"
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model", nargs="?", help="model directory (default: build a random 4x256 GPT-2)"
    )
    parser.add_argument("--tokens", type=int, default=256, help="new tokens to generate")
    parser.add_argument("--prompt", default="the pump was checked and the valve was replaced")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else build_default_model(Path(tmp) / "gpt2-4x256")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(path)
    model.eval()
    ids = tok(args.prompt)["input_ids"]
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {path.name} ({model.config.model_type}, {n_params / 1e6:.1f}M parameters), "
        f"prompt {len(ids)} tokens, {torch.get_num_threads()} threads"
    )

    results = {}
    for use_cache in (True, False):
        settings = GenerationSettings(max_new_tokens=args.tokens, use_cache=use_cache)
        seconds, out = time_generation(model, tok, ids, settings, args.repeats)
        results[use_cache] = (seconds, out)
        print(
            f"use_cache={use_cache!s:5}  {len(out)} tokens in {seconds:.3f} s  = {len(out) / seconds:8.1f} tokens/s"
        )

    (t_cache, with_cache), (t_plain, without) = results[True], results[False]
    assert with_cache == without, "KV cache changed the generated tokens"
    print(
        f"outputs identical ({len(with_cache)} tokens); KV cache speed-up: {t_plain / t_cache:.2f}x"
    )


if __name__ == "__main__":
    main()
