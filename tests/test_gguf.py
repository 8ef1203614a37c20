"""GGUF in (model.path may be a .gguf file) and out (`tailor export --format gguf`), on tiny models.

GGUF files are written in the test with the gguf package's writer (through tailor.export_gguf) and read
back with transformers' own GGUF loader, which tailor does not use for writing: a round trip that both
sides agree on is the check.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tailor.cli import app
from tailor.export_gguf import pair_rows, write_gguf
from tailor.ollama import TemplateError, derive
from tailor.tasks.chat_format import DEFAULT_TEMPLATE, ChatTemplate

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
WORDS = "the a small red blue quiet machine valve pump filter was is checked replaced cleaned noisy fine".split()
PROMPT = "the quiet pump was checked and the red valve"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TAILOR_CACHE", str(tmp_path / "cache"))  # converted GGUFs go here, not ~/.cache


def cli(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def gguf_of(model_dir, path, quant="q8_0", template=CHATML):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    write_gguf(model, tok, path, quant, template, "tiny")
    return path


def hf_gguf(path, **config):
    """The file as transformers itself reads it (GPT-2: its reader keeps n_positions at 1024, so say it)."""
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32, **config)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def logits(model, tok, text=PROMPT):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


def lm_config(root, model, strategy="full", steps=6):
    rng = random.Random(0)
    text = root / "notes.txt"
    text.write_text("\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(60)))
    cfg = {"name": f"g-{strategy}", "output_dir": str(root / "runs"), "model": str(model), "task": "lm",
           "strategy": strategy, "data": {"train": str(text), "max_length": 32},
           "train": {"max_steps": steps, "batch_size": 8, "lr": 2e-2, "eval_every": steps, "precision": "fp32"},
           "eval": {"baseline": False}}
    path = root / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def only_run(root):
    (run,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
    return run


# ---------------------------------------------------------------- GGUF in


def test_a_gguf_file_trains_and_the_run_saves_a_plain_hugging_face_model(tmp_path, tiny_model_dir):
    gguf = gguf_of(tiny_model_dir("llama"), tmp_path / "tiny.Q8_0.gguf")
    cli("train", lm_config(tmp_path, gguf))
    run = only_run(tmp_path)
    config = json.loads((run / "model" / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    meta = json.loads((run / "tailor.json").read_text())
    assert meta["base"]["kind"] == "gguf" and meta["base"]["location"] == str(gguf.resolve())
    tuned = AutoModelForCausalLM.from_pretrained(run / "model").eval()  # plain transformers
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert tok.chat_template == CHATML  # the tokenizer and its chat template came from the file
    base, base_tok = hf_gguf(gguf)
    assert (logits(tuned, tok) - logits(base, base_tok)).abs().max() > 1e-3  # it trained


def test_the_converted_model_is_exactly_what_transformers_reads_from_the_file(tmp_path, tiny_model_dir):
    from tailor.config import ModelConfig
    from tailor.models.load import load

    gguf = gguf_of(tiny_model_dir("llama"), tmp_path / "m.gguf")
    ours, tok, src = load(ModelConfig(path=str(gguf)))
    again, _, _ = load(ModelConfig(path=str(tmp_path)))  # a directory holding one .gguf: the same file, cached
    assert src.kind == "gguf" and src.fingerprint() and again.config.model_type == "llama"
    ref, ref_tok = hf_gguf(gguf)
    assert tok(PROMPT)["input_ids"] == ref_tok(PROMPT)["input_ids"]
    torch.testing.assert_close(logits(ours.eval(), tok), logits(ref, ref_tok), atol=0, rtol=0)


def _tiny_gguf(path, arch):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_token_list(["a", "b"])
    w.add_tensor("token_embd.weight", np.zeros((2, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("case", ["truncated", "corrupt", "unsupported", "not-text", "two-files"])
def test_bad_gguf_inputs_get_one_clear_message(case, tmp_path, tiny_model_dir):
    folder = tmp_path / "models"
    folder.mkdir()
    if case == "truncated":
        good = gguf_of(tiny_model_dir("llama"), folder / "m.gguf", quant="f16")
        good.write_bytes(good.read_bytes()[:-4000])
        expect = "truncated"
    elif case == "corrupt":
        (folder / "m.gguf").write_bytes(b"GGUF" + bytes(random.Random(0).randrange(256) for _ in range(500)))
        expect = "not a readable GGUF file"
    elif case == "unsupported":
        _tiny_gguf(folder / "m.gguf", "rwkv6")
        expect = "architecture 'rwkv6' cannot be read"
    elif case == "not-text":
        _tiny_gguf(folder / "m.gguf", "clip")
        expect = "not a decoder-only text model"
    else:
        _tiny_gguf(folder / "a.gguf", "llama")
        _tiny_gguf(folder / "b.gguf", "llama")
        expect = "holds 2 GGUF files (a.gguf, b.gguf)"
    path = folder if case == "two-files" else folder / "m.gguf"
    out = cli("train", lm_config(tmp_path, path), code=2)
    assert expect in " ".join(out.split()), out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ---------------------------------------------------------------- GGUF out


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_export_round_trip_same_greedy_text_and_logits_within_f16(arch, tmp_path, tiny_model_dir):
    cli("train", lm_config(tmp_path, tiny_model_dir(arch)))
    run = only_run(tmp_path)
    text = cli("export", run, "--format", "gguf", "--out", tmp_path / "out")
    gguf = tmp_path / "out" / f"{run.name}.gguf"
    assert "Modelfile" in text and gguf.is_file() and (tmp_path / "out" / "Modelfile").is_file()
    tuned = AutoModelForCausalLM.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(run / "model")
    extra = {"n_positions": tuned.config.n_positions} if arch == "gpt2" else {}
    back, back_tok = hf_gguf(gguf, **extra)
    assert back_tok(PROMPT)["input_ids"] == tok(PROMPT)["input_ids"]
    expected = logits(tuned, tok)
    assert (logits(back, back_tok) - expected).abs().max() < 2e-3 * expected.abs().max() + 1e-3  # f16 rounding
    ids = tok(PROMPT, return_tensors="pt")
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(tuned.generate(**ids, **kw), back.generate(**ids, **kw))


def test_a_lora_run_is_merged_into_the_gguf_and_q8_0_is_written_quantized(tmp_path, tiny_model_dir):
    import gguf

    cli("train", lm_config(tmp_path, tiny_model_dir("llama"), strategy="lora"))
    run = only_run(tmp_path)
    cli("export", run, "--format", "gguf", "--quant", "q8_0", "--out", tmp_path / "out")
    path = tmp_path / "out" / f"{run.name}.gguf"
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    from tailor.api import load_run

    merged, tok, _ = load_run(run)
    expected = logits(merged.backbone.eval(), tok)
    back, back_tok = hf_gguf(path)
    base, _ = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama")).eval(), None
    assert (logits(back, back_tok) - expected).abs().max() < 0.05 * expected.abs().max()  # q8_0 rounding
    assert (logits(base, tok) - expected).abs().max() > 1e-3  # the adapter changed the model: merged, not base


def test_unsupported_model_types_and_quants_are_user_errors(tmp_path, tiny_model_dir):
    cli("train", lm_config(tmp_path, tiny_model_dir("gpt_neox")))
    run = only_run(tmp_path)
    assert "supports the model types" in cli("export", run, "--format", "gguf", "--out", tmp_path / "o", code=2)
    assert "--quant 'q3'" in cli("export", run, "--format", "gguf", "--quant", "q3", "--out", tmp_path / "p", code=2)
    assert not (tmp_path / "o").exists()


def test_rows_pair_as_llama_cpp_rotates_them():
    w = np.arange(2 * 8 * 3).reshape(16, 3)  # 2 heads of 8 rows: halves (0-3, 4-7) become pairs (0,4), (1,5) ...
    out = pair_rows(w, heads=2)
    assert out[:, 0].tolist()[:8] == [0, 12, 3, 15, 6, 18, 9, 21]


# ---------------------------------------------------------------- Ollama Modelfile


@pytest.mark.parametrize("template", [CHATML, DEFAULT_TEMPLATE])
def test_ollama_template_renders_conversations_as_the_jinja_template_does(template, tmp_path, make_tokenizer):
    tok = make_tokenizer(tmp_path)
    chat = ChatTemplate(tok, template)
    ollama = derive(chat.render, [chat.end_marker, tok.eos_token])
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
             {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And {{ now }}?"}]
    for n in (2, 4):
        assert ollama.render(turns[:n]) == chat.render(turns[:n], add_generation_prompt=True)
    assert ollama.stops and '{{ "{{" }}' not in ollama.to_go()  # no literal braces in these templates
    assert ollama.to_go().startswith("{{ range .Messages }}")


def test_a_default_system_message_becomes_ollamas_system_and_odd_templates_are_refused(tmp_path, make_tokenizer):
    tok = make_tokenizer(tmp_path)
    with_default = ("{% if messages[0]['role'] != 'system' %}{{ '<s>Be kind.</s>' }}{% endif %}"
                    "{% for m in messages %}{{ '<' + m['role'][0] + '>' + m['content'] + '</' + m['role'][0] + '>' }}"
                    "{% endfor %}{% if add_generation_prompt %}{{ '<a>' }}{% endif %}")
    ollama = derive(ChatTemplate(tok, with_default).render, [])
    assert ollama.default_system == "Be kind."
    assert ollama.render([{"role": "user", "content": "q"}]) == "<s>Be kind.</s><u>q</u><a>"
    odd = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    with pytest.raises(TemplateError):
        derive(ChatTemplate(tok, odd).render, [])
