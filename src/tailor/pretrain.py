"""`tailor pretrain`: train a BPE tokenizer and a small GPT from scratch; how tailor-tiny is made."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from pydantic import Field
from rich.console import Console

from tailor.config import (
    ArchConfig,
    ConfigError,
    EvalConfig,
    Strict,
    TrainConfig,
    describe_error,
    merge,
    parse_overrides,
    read_yaml,
)


class CorpusConfig(Strict):
    files: list[str] = Field(default_factory=list, description=".txt / .jsonl files or folders; empty = generate")
    generate: int = Field(20000, gt=0, description="documents from tailor's world generator when no files")
    seed: int = 0


class PretrainConfig(Strict):
    name: str = "pretrain"
    output_dir: str = "runs"
    export: str | None = Field(None, description="also copy the model to this directory")
    seed: int = 0
    corpus: CorpusConfig = CorpusConfig()
    vocab_size: int = Field(4096, ge=300, description="BPE vocabulary size")
    arch: ArchConfig = ArchConfig()
    validation: float = Field(0.02, gt=0, lt=0.5)
    test: float = Field(0.02, gt=0, lt=0.5)
    train: TrainConfig = TrainConfig(epochs=1, lr=1e-3, schedule="cosine", warmup=0.02, batch_size=32)
    eval: EvalConfig = EvalConfig()


EOS = "<|endoftext|>"


def load_pretrain_config(path: str | Path | None, overrides: list[str] = ()) -> PretrainConfig:
    from pydantic import ValidationError

    raw = read_yaml(Path(path), str(path)) if path else {}
    extra, problems = parse_overrides(list(overrides))
    if problems:
        raise ConfigError(str(path), problems)
    try:
        return PretrainConfig.model_validate(merge(raw or {}, extra))
    except ValidationError as e:
        raise ConfigError(str(path), [describe_error(err) for err in e.errors()]) from None


def train_tokenizer(texts_file: Path, vocab_size: int, out: Path, context: int) -> None:
    """Byte-level BPE (no unknown tokens) saved as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def lines():
        with texts_file.open() as fh:
            for line in fh:
                yield json.loads(line)["text"]

    tok.train_from_iterator(lines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=None, model_max_length=context
    )
    fast.save_pretrained(out)


def write_corpus_file(cfg: CorpusConfig, path: Path) -> int:
    """The training corpus as JSONL {"text"}: the user's files, or generated documents."""
    n = 0
    with path.open("w") as out:
        if cfg.files:
            from tailor.data.readers import iter_text_documents

            docs = iter_text_documents(cfg.files)
        else:
            from tailor.data.synthetic import build_world, corpus_documents

            docs = corpus_documents(build_world(0), cfg.generate, cfg.seed)
        for doc in docs:
            out.write(json.dumps({"text": doc}) + "\n")
            n += 1
    return n


def pretrain(cfg: PretrainConfig, console: Console | None = None):
    """Corpus -> tokenizer -> model from scratch -> the same train() pipeline as fine-tuning."""
    from tailor.api import train
    from tailor.config import RunConfig

    console = console or Console()
    work = Path(tempfile.mkdtemp(prefix="tailor-pretrain-"))
    try:
        corpus = work / "corpus.jsonl"
        n = write_corpus_file(cfg.corpus, corpus)
        console.print(f"corpus: {n:,} documents")
        train_tokenizer(corpus, cfg.vocab_size, work / "tokenizer", cfg.arch.context)
        run_cfg = RunConfig(
            name=cfg.name, output_dir=cfg.output_dir, seed=cfg.seed,
            model={"path": str(work / "tokenizer"), "arch": cfg.arch, "tokenizer": str(work / "tokenizer")},
            data={"train": [str(corpus)], "split": {"validation": cfg.validation, "test": cfg.test}},
            task={"type": "lm"}, train=cfg.train, eval=cfg.eval,
        ).resolved()
        run = train(run_cfg, console)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if cfg.export:
        export = Path(cfg.export)
        if export.exists():
            shutil.rmtree(export)
        shutil.copytree(run.path / "model", export)
        console.print(f"exported the model to {export}")
    return run
