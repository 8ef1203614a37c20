"""Runs that survive: killed at any moment, a run resumes to exactly the result it would have had."""

import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest
from _lm import (  # noqa: F401
    checkpoint_state,
    curve,
    final_metrics,
    one_thread,
    start_tailor,
    tailor,
    write_config,
)
from typer.testing import CliRunner

from tailor.cli import app
from tailor.runs import compare_metrics
from tailor.train import checkpoint as ckpt


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    """The uninterrupted run: its loss curve (metrics.jsonl) and final metrics."""
    root = tmp_path_factory.mktemp("reference")
    result = invoke("train", write_config(root, tiny_model_dir("gpt2")))
    assert result.exit_code == 0, result.output
    run = root / "runs" / "lm-001"
    return curve(run), final_metrics(run)


def test_killed_at_any_point_resumes_to_the_same_result(tmp_path, tiny_model_dir, reference):
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"))
    run = tmp_path / "runs" / "lm-001"
    last, tmp = run / "checkpoints" / "last", run / "checkpoints" / "last.tmp"
    # SIGKILL between checkpoints (after step 5): the one of step 4 is the last complete one
    p = tailor("train", cfg, env={"TAILOR_TEST_SIGNAL": "KILL@step:5"})
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert checkpoint_state(last)["step"] == 4
    # SIGKILL inside a save (its files written, no COMPLETE marker yet): detected, the previous one is used
    p = tailor("resume", run, env={"TAILOR_TEST_SIGNAL": "KILL@save:8"})
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert tmp.is_dir() and not ckpt.is_complete(tmp) and checkpoint_state(last)["step"] == 6
    # SIGKILL between moving the previous checkpoint aside and renaming the new one into place
    p = tailor("train", "--resume", run, env={"TAILOR_TEST_SIGNAL": "KILL@swap:10"})
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert not last.exists() and ckpt.is_complete(tmp)
    result = invoke("resume", run)
    assert result.exit_code == 0, result.output
    assert "scoring the pre-trained model" not in result.output  # baseline.json from the first process is reused
    assert curve(run) == reference[0]  # no line lost or repeated, every loss the same
    assert final_metrics(run) == reference[1]
    assert json.loads((run / "metrics.json").read_text())["train"]["resumed_from"] == [4, 6, 10]


def test_sigint_finishes_the_step_saves_and_says_how_to_resume(tmp_path, tiny_model_dir, monkeypatch, reference):
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"))
    run = tmp_path / "runs" / "lm-001"
    monkeypatch.setenv("TAILOR_TEST_SIGNAL", "INT@step:3")
    result = invoke("train", cfg)
    assert result.exit_code == 130, result.output
    assert "interrupted by SIGINT at step 3 of 10" in result.output and f"tailor resume {run}" in result.output
    assert checkpoint_state(run / "checkpoints" / "last")["step"] == 3  # saved at the signal, not at step 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the loop's handler is gone again
    monkeypatch.delenv("TAILOR_TEST_SIGNAL")
    result = invoke("resume", run)
    assert result.exit_code == 0, result.output
    assert curve(run) == reference[0] and final_metrics(run) == reference[1]


def test_disk_full_keeps_the_previous_checkpoint_and_changed_data_is_refused(tmp_path, tiny_model_dir, monkeypatch,
                                                                            reference):
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"))
    run = tmp_path / "runs" / "lm-001"
    last = run / "checkpoints" / "last"
    real, calls = ckpt.save_file, []

    def fills_up(tensors, filename, *args, **kwargs):  # weights + optimiser per checkpoint: the 2nd one fails
        calls.append(filename)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", fills_up)
    result = invoke("train", cfg)
    assert result.exit_code == 2, result.output
    assert "disk full" in result.output and "previous checkpoint (step 2) is intact" in result.output
    assert f"tailor resume {run}" in result.output and "Traceback" not in result.output
    assert ckpt.is_complete(last) and checkpoint_state(last)["step"] == 2
    assert not (run / "checkpoints" / "last.tmp").exists()
    monkeypatch.setattr(ckpt, "save_file", real)
    corpus = tmp_path / "notes.txt"
    text = corpus.read_text()
    corpus.write_text(text + "\nA new pump was checked.\n")
    result = invoke("resume", run)
    assert result.exit_code == 2 and "the data changed" in result.output and str(corpus) in result.output
    corpus.write_text(text)
    result = invoke("resume", run)
    assert result.exit_code == 0, result.output
    assert curve(run) == reference[0] and final_metrics(run) == reference[1]


def test_lora_with_a_classification_head_resumes_exactly(tmp_path, tiny_model_dir, monkeypatch):
    """Only adapters and the head are in the checkpoint; the frozen backbone comes back from the base model."""
    from tailor.data.synthetic import build_world, sentiment_records

    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sentiment_records(build_world(0), 120, 0)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({
        "name": "c", "output_dir": str(tmp_path / "runs"), "model": str(tiny_model_dir("llama")),
        "task": "classification", "strategy": "lora", "data": {"train": str(data), "max_length": 48},
        "train": {"max_steps": 8, "batch_size": 8, "grad_accum": 2, "lr": 3e-3, "log_every": 1, "eval_every": 3,
                  "save_every": 2, "precision": "fp32", "dropout": 0.1}}))
    assert invoke("train", cfg).exit_code == 0
    monkeypatch.setenv("TAILOR_TEST_SIGNAL", "INT@step:5")
    assert invoke("train", cfg).exit_code == 130
    monkeypatch.delenv("TAILOR_TEST_SIGNAL")
    first, second = tmp_path / "runs" / "c-001", tmp_path / "runs" / "c-002"
    saved = ckpt.load_file(str(second / "checkpoints" / "last" / ckpt.WEIGHTS))
    assert saved and all("lora_" in name or name.startswith("heads.") for name in saved)
    assert invoke("resume", second).exit_code == 0
    assert curve(second) == curve(first) and final_metrics(second) == final_metrics(first)


def test_reproduce_trains_again_from_the_record_and_compares(tmp_path, tiny_model_dir):
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"), max_steps=4)
    assert invoke("train", cfg).exit_code == 0
    run = tmp_path / "runs" / "lm-001"
    env = json.loads((run / "env.json").read_text())
    assert {"tailor", "torch", "transformers", "peft", "accelerate", "python", "cpu", "seed", "config_hash"} <= set(env)
    result = invoke("train", "--reproduce", run)
    assert result.exit_code == 0, result.output
    assert "metrics match exactly" in result.output
    record = json.loads((tmp_path / "runs" / "lm-002" / "reproduce.json").read_text())
    assert record["metrics"] and {r["verdict"] for r in record["metrics"]} == {"exact"}
    corpus = tmp_path / "notes.txt"
    corpus.write_text(corpus.read_text() + "\nchanged.\n")
    result = invoke("train", "--reproduce", run)
    assert result.exit_code == 2 and str(corpus) in result.output and "contents changed" in result.output
    assert not (tmp_path / "runs" / "lm-003").exists()


def test_two_runs_in_one_process_may_differ_in_precision(tmp_path, tiny_model_dir):
    """accelerate keeps one state per process; fit() must not refuse a second precision (e.g. bf16, then fp32)."""
    for precision in ("bf16", "fp32"):
        result = invoke("train", write_config(tmp_path, tiny_model_dir("gpt2"), max_steps=2, precision=precision))
        assert result.exit_code == 0, result.output


def test_compare_metrics_says_exact_within_tolerance_or_differs():
    rows = compare_metrics({"test": {"a": 1.0, "b": 2.0, "c": 3.0, "per_class": {}}},
                           {"test": {"a": 1.0, "b": 2.0 + 1e-9, "c": 3.1, "per_class": {}}})
    assert [(r["metric"], r["verdict"]) for r in rows] == [("a", "exact"), ("b", "within tolerance"), ("c", "differs")]


def _write(path, step):
    ckpt.write_dir(path, lambda tmp: (tmp / "state.json").write_text(json.dumps({"loop": {"step": step}})), step)


def test_recovery_after_a_crash_uses_the_newest_complete_copy(tmp_path):
    last = tmp_path / "last"
    tmp, old = tmp_path / "last.tmp", tmp_path / "last.old"
    _write(last, 1)
    tmp.mkdir()
    (tmp / "state.json").write_text('{"loop": {"step": 2}}')  # a save that died before its COMPLETE marker
    assert ckpt.checkpoint_step(last) == 1 and tmp.exists()  # reading moves and deletes nothing (a live run's save)
    assert ckpt.recover_dir(last) == last and ckpt.checkpoint_step(last) == 1 and not tmp.exists()
    _write(tmp_path / "new", 2)
    last.rename(old)
    (tmp_path / "new").rename(tmp)  # died between the two renames: old aside, new complete
    assert ckpt.checkpoint_step(last) == 2 and not last.exists() and old.exists()
    assert ckpt.recover_dir(last) == last and ckpt.checkpoint_step(last) == 2 and not old.exists() and not tmp.exists()
    last.rename(old)
    tmp.mkdir()  # died between the renames of an incomplete save: only .old is whole
    assert ckpt.checkpoint_step(last) == 2 and ckpt.recover_dir(last) == last and not tmp.exists()
    with (last / "state.json").open("a") as fh:  # a file cut short after the marker: not complete
        fh.write(" ")
    assert not ckpt.is_complete(last) and ckpt.checkpoint_step(last) is None and ckpt.recover_dir(last) is None


def test_a_failed_write_leaves_the_previous_directory_untouched(tmp_path):
    last = tmp_path / "last"
    _write(last, 1)

    def fails(tmp):
        (tmp / "state.json").write_text("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        ckpt.write_dir(last, fails, 2)
    assert ckpt.checkpoint_step(last) == 1 and not (tmp_path / "last.tmp").exists()


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under `folder`: size, mtime and contents."""
    return {str(f.relative_to(folder)): (f.stat().st_size, f.stat().st_mtime_ns, f.read_bytes())
            for f in sorted(folder.rglob("*")) if f.is_file()}


def test_resume_refuses_a_project_folder_and_leaves_it_byte_identical(tmp_path, tiny_model_dir):
    """A user's folder that holds a hand-written config.yaml is not a run: `tailor resume` writes nothing there."""
    project = tmp_path / "my-project"
    project.mkdir()
    (project / "config.yaml").write_text(f"# my settings, by hand\nmodel: {tiny_model_dir('gpt2')}\ntask: lm\n"
                                         "data: {train: notes.txt, max_length: 16}   # the field notes\n"
                                         "train: {max_steps: 2, batch_size: 4}\neval: {baseline: false}\n")
    (project / "notes.txt").write_text("".join(f"pump {i} was checked and the valve was fine.\n\n" for i in range(30)))
    before = _snapshot(project)
    p = tailor("resume", project)
    assert p.returncode == 2, p.stderr
    assert "is not a tailor run" in p.stderr and f"tailor train {project / 'config.yaml'}" in p.stderr
    assert "Traceback" not in p.stderr and "resuming" not in p.stdout
    assert _snapshot(project) == before


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_a_concurrent_resume_never_touches_a_live_run(tmp_path, tiny_model_dir, reference):
    """The live run is frozen (SIGSTOP) half-way through a save; `tailor resume` on it is refused before it reads
    or writes anything, and the run, once it goes on, ends exactly as an undisturbed one."""
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"))
    run = tmp_path / "runs" / "lm-001"
    live = start_tailor("train", cfg, env={"TAILOR_TEST_SIGNAL": "STOP@save:6"})
    try:
        deadline = time.time() + 200
        while not _stopped(live.pid):
            assert live.poll() is None and time.time() < deadline, live.stderr.read() if live.stderr else ""
            time.sleep(0.2)
        half_saved = run / "checkpoints" / "last.tmp"
        assert half_saved.is_dir() and not ckpt.is_complete(half_saved)
        before = _snapshot(run)
        other = tailor("resume", run)
        assert other.returncode == 2, other.stderr
        assert "still running" in other.stderr and f"process {live.pid}" in other.stderr
        assert "resuming" not in other.stdout and "Traceback" not in other.stderr
        assert _snapshot(run) == before  # last.tmp and everything else as the live run left them
        os.kill(live.pid, signal.SIGCONT)
        out, err = live.communicate(timeout=240)
    finally:
        if live.poll() is None:
            os.kill(live.pid, signal.SIGCONT)
            live.kill()
    assert live.returncode == 0, err
    assert curve(run) == reference[0] and final_metrics(run) == reference[1]


def test_the_run_lock_is_released_when_its_process_dies(tmp_path):
    """kill -9 leaves no stale lock: the kernel drops a dead process's flock."""
    import subprocess
    import sys

    from tailor.rundir import RunBusy, hold_run, is_live

    run = tmp_path / "lm-001"
    run.mkdir()
    code = f"import time; from tailor.rundir import hold_run\nwith hold_run({str(run)!r}):\n    print('held', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert is_live(run)
        with pytest.raises(RunBusy, match=f"process {child.pid} on"), hold_run(run):
            pass
    finally:
        child.kill()
        child.wait()
    assert not is_live(run)
    with hold_run(run), hold_run(run):  # taken again; re-entrant within a process
        assert is_live(run)
    assert not is_live(run)
