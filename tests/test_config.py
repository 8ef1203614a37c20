import subprocess
import sys

import pytest

from tailor.config import ConfigError, load_config, parse_overrides


def write(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_three_line_config_gets_task_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "model: tailor-tiny\ntask: lm\ndata: {train: corpus.txt}\n"))
    assert cfg.model.path == "tailor-tiny"
    assert cfg.task.type == "lm"
    assert cfg.data.train == ["corpus.txt"]
    assert cfg.train.lr == 3e-4 and cfg.train.metric == "loss"
    assert cfg.name == "cfg"


def test_all_problems_reported_at_once(tmp_path):
    p = write(tmp_path, "task: lm\ntrain:\n  lr: -0.001\n  batch_size: lots\n  lerning_rate: 3\nstrategy: {name: frozen}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "train.lr: must be > 0 (got -0.001)" in msg
    assert "train.batch_size" in msg and "'lots'" in msg
    assert "train.lerning_rate: unknown key" in msg
    assert "strategy.name: 'frozen' is not one of full, head, top_k, llrd, gradual, lora" in msg
    assert len(e.value.problems) == 4


def test_overrides_are_parsed_as_yaml_and_win(tmp_path):
    p = write(tmp_path, "task: lm\ntrain: {lr: 0.001}\n")
    cfg = load_config(p, ["train.lr=3e-4", "strategy.name=lora", "train.max_steps=5", "model=some/dir"])
    assert cfg.train.lr == 3e-4 and cfg.strategy.name == "lora" and cfg.train.max_steps == 5
    assert cfg.model.path == "some/dir"
    _, problems = parse_overrides(["novalue"])
    assert problems and "expected key=value" in problems[0]


def test_unknown_override_key_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="train.nope: unknown key"):
        load_config(write(tmp_path, "task: lm\n"), ["train.nope=1"])


def test_bad_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match="line 2"):
        load_config(write(tmp_path, "task: lm\ntrain: [unclosed\n"))


def test_cli_config_error_exit_2_no_traceback(tmp_path):
    p = write(tmp_path, "task: lm\nbogus: 1\ntrain: {lr: -1, epochs: many}\n")
    r = subprocess.run([sys.executable, "-m", "tailor.cli", "train", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "Traceback" not in out
    assert "bogus: unknown key" in out and "train.lr: must be > 0" in out and "train.epochs" in out


def test_config_reference_is_current_and_says_what_every_key_takes():
    from pathlib import Path

    from tailor.config import RunConfig
    from tailor.docs import config_reference, rows

    keys = rows(RunConfig)
    assert all(meaning for _, _, _, meaning in keys), [k for k, _, _, m in keys if not m]
    by_key = {k: t for k, t, _, _ in keys}
    assert by_key["strategy.name"] == "one of `full`, `head`, `top_k`, `llrd`, `gradual`, `lora`"
    assert by_key["data.leakage"] == "one of `error`, `drop`, `keep`" and "model.arch.family" in by_key
    text = config_reference()
    assert "Literal" not in text and "typing" not in text
    assert (Path(__file__).parent.parent / "docs" / "config.md").read_text() == text, "run: python -m tailor.docs"
