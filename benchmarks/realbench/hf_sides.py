"""The other tools' sides: the Hugging Face Trainer's documented recipes and TRL's SFTTrainer.

Each starts from the same weights and tokenizer as tailor (the HF directory tailor converted the GGUF into),
in fp32, and shares with tailor the data, batch size, epochs, learning rate, seed, precision (bf16 autocast where
the CPU has it), maximum length and gradient checkpointing (TRL turns it on by default; here every side uses the
suite's --gradient-checkpointing setting). Everything else is the tool's default. Evaluation and checkpoints are
off during training (save_strategy / eval_strategy "no"); the classification test set is scored after training.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from realbench.data import read_jsonl
from realbench.machine import peak_memory_mb, reset_peak_memory
from realbench.measure import CountingCollator, TokenCount, step_clock


def _common(spec: dict) -> dict:
    """TrainingArguments / SFTConfig fields every side shares with tailor."""
    return {
        "output_dir": str(Path(spec["work"]) / f"{spec['job']}-{spec['slug']}"),
        "per_device_train_batch_size": spec["batch_size"],
        "num_train_epochs": spec["epochs"],
        "learning_rate": spec["lr"],
        "seed": spec["seed"],
        "bf16": spec["precision"] == "bf16",
        "activation_checkpointing": spec["gradient_checkpointing"],
        "use_cpu": not torch.cuda.is_available(),
        "report_to": "none",
        "save_strategy": "no",
        "eval_strategy": "no",
    }


def _tokenizer(spec: dict):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec["hf_dir"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _train(trainer) -> dict:
    """trainer.train() with the batches counted, the loop timed and the peak memory of its span read."""
    counts, clock = TokenCount(), step_clock()
    trainer.data_collator = CountingCollator(trainer.data_collator, counts)
    trainer.add_callback(clock)
    load_peak = peak_memory_mb()
    reset_peak_memory()
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    return {
        "steps": trainer.state.global_step,
        "train_s": round(clock.seconds, 2),
        "wall_s": round(wall, 2),
        "peak_mb": peak_memory_mb(),
        "load_peak_mb": load_peak,
        "counts": counts.to_json(),
    }


def train_trainer_classification(spec: dict) -> dict:
    """The Trainer's text-classification recipe: AutoModelForSequenceClassification + DataCollatorWithPadding."""
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tok = _tokenizer(spec)
    torch.manual_seed(spec["seed"])  # the new score layer
    model = AutoModelForSequenceClassification.from_pretrained(
        spec["hf_dir"], num_labels=2, dtype=torch.float32
    )
    model.config.pad_token_id = tok.pad_token_id

    def encode(path: str) -> Dataset:
        rows = read_jsonl(path)
        texts = [spec["prompt"].format(text=r["text"]) for r in rows]
        ds = Dataset.from_dict({"text": texts, "label": [r["label"] for r in rows]})
        return ds.map(
            lambda b: tok(b["text"], truncation=True, max_length=spec["max_length"]), batched=True
        )

    train, test = encode(spec["train"]), encode(spec["test"])
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**_common(spec)),
        train_dataset=train,
        processing_class=tok,
        data_collator=DataCollatorWithPadding(tok),
    )
    out = _train(trainer) | {"examples": len(train), "epochs": spec["epochs"]}
    predictions = trainer.predict(test)
    accuracy = float(
        (np.argmax(predictions.predictions, axis=-1) == np.asarray(test["label"])).mean()
    )
    out["metric"] = {"test accuracy": accuracy}
    out["test_examples"] = len(test)
    return out


def train_trainer_lm(spec: dict) -> dict:
    """The Trainer on plain text: each piece tokenised (eos appended), DataCollatorForLanguageModeling pads."""
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tok = _tokenizer(spec)
    model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32)
    texts = [r["text"] for r in read_jsonl(spec["train"])]
    ids = [
        x[: spec["max_length"] - 1] + [tok.eos_token_id]
        for x in tok(texts, add_special_tokens=False)["input_ids"]
    ]
    train = Dataset.from_dict({"input_ids": ids})
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**_common(spec)),
        train_dataset=train,
        processing_class=tok,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
    )
    out = _train(trainer) | {"examples": len(train), "epochs": spec["epochs"]}
    trainer.save_model(spec["model_out"])
    return out | {"model_dir": spec["model_out"]}


def train_trl(spec: dict) -> dict:
    """TRL's SFTTrainer in one of its modes (spec['mode']: padding, packing, padding_free).

    chat: conversational prompt/completion, the model's chat template, loss on the completion only (SmolLM2's
    template has no {% generation %} markers, which assistant_only_loss needs; with one user turn and one reply
    the completion is exactly the assistant's reply). lm: the plain-text 'text' column.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    tok = _tokenizer(spec)
    model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32)
    rows = read_jsonl(spec["train"])
    mode = spec["mode"]
    config = SFTConfig(
        **_common(spec),
        packing=mode == "packing",
        padding_free=mode == "padding_free",
        # padding-free without packing refuses max_length (it cannot enforce it); the chat data
        # was filtered to fit max_length, so no side truncates anyway
        max_length=None if mode == "padding_free" else spec["max_length"],
        completion_only_loss=True if spec["kind"] == "chat" else None,
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    out = _train(trainer) | {"examples": len(rows), "epochs": spec["epochs"]}
    trainer.save_model(spec["model_out"])
    return out | {"model_dir": spec["model_out"]}
