"""One scoring function per metric, applied to every side's saved model the same way (fp32, no autocast).

- chat: mean negative log-likelihood per token of the held-out replies given their prompts. A reply's tokens
  are what the chat template writes for the assistant turn after the generation prompt (for SmolLM2: the
  reply, <|im_end|> and a newline), tokenised on their own after the tokenised prompt: the tokens every side
  trained on.
- lm: perplexity of the held-out pieces, each scored on its own: exp(mean NLL of its tokens after the first).
  The eos after a piece is not scored: the Trainer side never trains it (SmolLM2's pad token is its eos, and
  DataCollatorForLanguageModeling masks padding by id).
The vocabulary logits are made only at the scored positions, a batch at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from realbench.data import read_jsonl

BATCH = 8


def _load(spec: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        spec["hf_dir"]
    )  # the base tokenizer, the same for every side
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32).eval()
    return model, tok


def reply_examples(rows: list[dict], tok) -> list[tuple[list[int], int]]:
    """(prompt + reply ids, where the reply starts) for each held-out conversation."""
    out = []
    for r in rows:
        prompt = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError(
                "the chat template renders the prompt differently once the reply follows"
            )
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        reply = tok(full[len(prompt) :], add_special_tokens=False)["input_ids"]
        out.append((p + reply, len(p)))
    return out


def text_examples(rows: list[dict], tok) -> list[tuple[list[int], int]]:
    """(ids, 1): each held-out piece, scored from its second token on."""
    return [
        (ids, 1) for ids in tok([r["text"] for r in rows], add_special_tokens=False)["input_ids"]
    ]


@torch.no_grad()
def mean_nll(model, examples: list[tuple[list[int], int]], pad_id: int) -> tuple[float, int]:
    """Summed NLL of each example's tokens from its start position on, over the count of those tokens."""
    head = model.get_output_embeddings()
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    total, count = 0.0, 0
    for b in range(0, len(order), BATCH):
        rows = [examples[i] for i in order[b : b + BATCH]]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, (x, _) in enumerate(rows):
            ids[j, : len(x)], mask[j, : len(x)] = torch.tensor(x), 1
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, C)
        for j, (x, start) in enumerate(rows):
            h = hidden[j, start - 1 : len(x) - 1]  # positions that predict tokens start .. end
            target = torch.tensor(x[start:])
            total += float(F.cross_entropy(head(h).float(), target, reduction="sum"))
            count += len(target)
    return total / max(count, 1), count


def score_replies(spec: dict) -> dict:
    """Child process body: held-out reply loss of one saved chat model."""
    model, tok = _load(spec)
    loss, n = mean_nll(model, reply_examples(read_jsonl(spec["held"]), tok), tok.pad_token_id or 0)
    return {"metric": {"held-out reply loss": round(loss, 4)}, "scored_tokens": n}


def score_text(spec: dict) -> dict:
    """Child process body: held-out perplexity of one saved language model."""
    model, tok = _load(spec)
    loss, n = mean_nll(model, text_examples(read_jsonl(spec["held"]), tok), tok.pad_token_id or 0)
    return {
        "metric": {
            "held-out perplexity": round(math.exp(loss), 3),
            "held-out loss": round(loss, 4),
        },
        "scored_tokens": n,
    }
