"""Generation speed: tailor's generation paths against plain `model.generate`, greedy, the same prompts and limit.

Sides (spec['mode']):
- tailor_single: `tailor generate` as the CLI runs it: the model loaded by tailor, one prompt at a time through
  tailor.generate.generate_text with a streaming callback (the CLI prints each piece);
- plain_single: transformers' model.generate on one prompt at a time;
- tailor_batch: evaluation-time generation: tailor.generate.generate_ids over the prompts in batches, as the chat
  task's evaluation calls it (tasks/chat.py generate_replies);
- plain_batch: model.generate on the same batches, left-padded.
The prompts are held-out Alpaca conversations in the model's chat template with the generation prompt. All in
fp32 (as `tailor generate` runs). New tokens are counted the same way on every side, from the ids
model.generate returns: per row, up to (without) the first eos, padding not counted. One short untimed
generation first warms up each side.
"""

from __future__ import annotations

import time

import torch

from realbench.data import read_jsonl
from realbench.machine import peak_memory_mb, reset_peak_memory
from realbench.measure import sync


def prompt_ids(spec: dict, tok) -> list[list[int]]:
    rows = read_jsonl(spec["held"])[: spec["prompts"]]
    texts = [
        tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        for r in rows
    ]
    return tok(texts, add_special_tokens=False)["input_ids"]


def new_tokens(out: torch.Tensor, width: int, eos: set[int], pad: int) -> list[list[int]]:
    """Each row's generated ids up to (without) its first eos, trailing padding removed."""
    rows = []
    for row in out[:, width:].tolist():
        end = next((j for j, t in enumerate(row) if t in eos), len(row))
        row = row[:end]
        while row and row[-1] == pad:
            row.pop()
        rows.append(row)
    return rows


class Recorder:
    """Wraps model.generate to keep the new ids of every call (the counting is the same for every side)."""

    def __init__(self, model, eos: set[int], pad: int):
        self.model, self.eos, self.pad, self.rows = model, eos, pad, []
        self.inner = model.generate

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        width = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
        self.rows += new_tokens(out, width, self.eos, self.pad)
        return out


def _plain(model, prompts: list[list[int]], max_new: int, pad: int):
    """model.generate on left-padded prompts, greedy."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for j, p in enumerate(prompts):
        ids[j, width - len(p) :], mask[j, width - len(p) :] = torch.tensor(p), 1
    device = model.device
    return model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=max_new,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad,
    )


def _load(spec: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec["mode"].startswith("tailor"):
        from tailor.config import ModelConfig
        from tailor.models.load import load

        model, tok, _ = load(ModelConfig(path=spec["gguf"]))  # what `tailor generate` does
    else:
        tok = AutoTokenizer.from_pretrained(spec["hf_dir"])
        model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32)
    if torch.cuda.is_available():
        model = model.cuda()
    return model.eval(), tok


def generate_side(spec: dict) -> dict:
    """Child process body: time one side's generation over all prompts."""
    from tailor.generate import GenerationSettings, generate_ids, generate_text

    model, tok = _load(spec)
    eos = model.generation_config.eos_token_id
    eos = set(eos) if isinstance(eos, list) else {eos if eos is not None else tok.eos_token_id}
    pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos))
    prompts, mode, max_new, batch = (
        prompt_ids(spec, tok),
        spec["mode"],
        spec["max_new_tokens"],
        spec["gen_batch"],
    )
    rec = Recorder(model, eos, pad)
    model.generate = rec
    settings = GenerationSettings(max_new_tokens=max_new)

    def run(ps: list[list[int]], settings: GenerationSettings) -> list[list[int]]:
        """Generate for every prompt; the new ids in prompt order."""
        if mode == "tailor_single":
            for p in ps:
                generate_text(model, tok, p, settings, on_text=lambda piece: None)
        elif mode == "tailor_batch":
            return generate_ids(
                model, tok, ps, settings, batch_size=batch
            )  # its batches are sorted by length
        elif mode == "plain_single":
            for p in ps:
                _plain(model, [p], settings.max_new_tokens, pad)
        else:
            for i in range(0, len(ps), batch):
                _plain(model, ps[i : i + batch], settings.max_new_tokens, pad)
        return list(rec.rows)

    run(prompts[:1], GenerationSettings(max_new_tokens=4))  # warm-up, untimed
    rec.rows.clear()
    reset_peak_memory()
    start = time.perf_counter()
    with torch.no_grad():
        outputs = run(prompts, settings)
    sync()
    seconds = time.perf_counter() - start
    n = sum(len(r) for r in rec.rows)
    return {
        "prompts": len(prompts),
        "new_tokens": n,
        "gen_s": round(seconds, 3),
        "tokens_per_s": round(n / seconds, 2),
        "peak_mb": peak_memory_mb(),
        "outputs": outputs,
    }
