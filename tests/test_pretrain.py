"""`tailor pretrain` on a user's own text: tokenizer + model from scratch, loadable by plain transformers."""

import json

import yaml
from conftest import corpus_sentences
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tailor.cli import app


def test_pretrain_own_corpus_exports_a_plain_hf_model(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    sents = corpus_sentences(600, seed=3)
    for i in range(3):
        (docs / f"part{i}.txt").write_text("\n\n".join(" ".join(sents[j : j + 4]) for j in range(i * 200, (i + 1) * 200, 4)))
    cfg = {
        "name": "mine", "output_dir": str(tmp_path / "runs"), "export": str(tmp_path / "exported"),
        "corpus": {"files": [str(docs)]}, "vocab_size": 320,
        "arch": {"family": "llama", "n_layer": 2, "n_embd": 32, "n_head": 2, "context": 64},
        "train": {"max_steps": 20, "batch_size": 8, "lr": 3e-3, "log_every": 5},
        "validation": 0.1, "test": 0.1,
    }
    path = tmp_path / "pre.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["pretrain", str(path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "mine-001" / "metrics.json").read_text())
    # the baseline is the same architecture at random initialisation
    assert metrics["fine_tuned"]["test"]["perplexity"] < 0.5 * metrics["baseline"]["test"]["perplexity"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "exported")
    tok = AutoTokenizer.from_pretrained(tmp_path / "exported")
    assert model.config.model_type == "llama" and len(tok) == 320
    assert tok.decode(tok("the red bird sees a tall tree")["input_ids"]) == "the red bird sees a tall tree"
