"""The run registry: runs/registry.sqlite, true status with several processes, `tailor runs` and `runs show`."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

from _lm import one_thread, start_tailor, write_config  # noqa: F401
from typer.testing import CliRunner

from tailor import registry
from tailor.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_two_processes_at_once_and_one_stopped_by_sigterm(tmp_path, tiny_model_dir):
    model, root = tiny_model_dir("gpt2"), tmp_path / "runs"
    stopped = start_tailor("train", write_config(tmp_path, model, name="alpha"), env={"TAILOR_TEST_SIGNAL": "TERM@step:3"})
    finished = start_tailor("train", write_config(tmp_path, model, name="beta"))
    (_, err_a), (_, err_b) = stopped.communicate(timeout=240), finished.communicate(timeout=240)
    alpha = root / "alpha-001"
    assert stopped.returncode == 143, err_a
    assert "interrupted by SIGTERM at step 3 of 10" in err_a and f"Resume with: tailor resume {alpha}" in err_a
    assert finished.returncode == 0, err_b
    rows = {r["name"]: r for r in registry.list_runs(root)}
    assert rows["alpha-001"]["status"] == "interrupted" and rows["alpha-001"]["pid"] == stopped.pid
    assert rows["beta-001"]["status"] == "finished" and rows["beta-001"]["pid"] == finished.pid
    assert rows["beta-001"]["metrics"]["fine_tuned"]["test"]["loss"] > 0
    listing = invoke("runs", "--dir", root).output
    assert "alpha-001" in listing and "interrupted" in listing and "beta-001" in listing and "finished" in listing
    shown = invoke("runs", "show", "alpha-001", "--dir", root).output
    assert "from its checkpoint at step 3" in shown and f"tailor resume {alpha.resolve()}" in shown
    assert invoke("resume", alpha).exit_code == 0
    rows = {r["name"]: r for r in registry.list_runs(root)}
    assert rows["alpha-001"]["status"] == "finished" and rows["alpha-001"]["resumes"] == 1


def _started_in_child(run) -> None:
    code = f"from pathlib import Path; from tailor import registry; registry.started(Path({str(run)!r}), {{}})"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_running_rows_of_dead_or_other_processes_read_as_interrupted(tmp_path):
    root = tmp_path / "runs"
    (root / "gone-001").mkdir(parents=True)
    (root / "here-001").mkdir()
    _started_in_child(root / "gone-001")  # that process has exited since
    registry.started(root / "here-001", {"task": "lm"})  # this one lives
    with sqlite3.connect(root / registry.FILE) as con:
        stored = dict(con.execute("SELECT name, status FROM runs").fetchall())
    assert stored == {"gone-001": "running", "here-001": "running"}
    shown = {r["name"]: r for r in registry.list_runs(root)}
    assert shown["gone-001"]["status"] == "interrupted" and "is gone" in shown["gone-001"]["message"]
    assert shown["here-001"]["status"] == "running"
    with sqlite3.connect(root / registry.FILE) as con:  # the same PID, but started at another time: reused
        con.execute("UPDATE runs SET pid_start = '1' WHERE name = 'here-001'")
    assert registry.find_run(root, "here-001")["status"] == "interrupted"


def test_several_processes_write_at_once_without_losing_a_row(tmp_path):
    root = tmp_path / "runs"
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from tailor import registry
        for i in range(25):
            run = Path({str(root)!r}) / f"w{{sys.argv[1]}}-{{i:03d}}"
            registry.started(run, {{"task": "lm"}})
            registry.ended(run, "finished", {{"fine_tuned": {{}}, "i": i}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)], stderr=subprocess.PIPE, text=True) for w in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    rows = registry.list_runs(root)
    assert len(rows) == 100 and {r["status"] for r in rows} == {"finished"}
    with sqlite3.connect(root / registry.FILE) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_runs_lists_with_filters_and_shows_one(tmp_path):
    root = tmp_path / "runs"
    for name, task, status in [("sent-001", "classification", "finished"), ("sent-002", "classification", "failed"),
                               ("notes-001", "lm", "finished")]:
        (root / name).mkdir(parents=True)
        registry.started(root / name, {"task": task, "strategy": "full", "base_model": "tailor-tiny"})
        metrics = {"metric": "accuracy", "fine_tuned": {"test": {"accuracy": 0.9}}} if status == "finished" else None
        registry.ended(root / name, status, metrics, None if metrics else "diverged")

    def names(*args):
        result = invoke("runs", "--dir", root, *args)
        assert result.exit_code == 0, result.output
        return {n for n in ("sent-001", "sent-002", "notes-001") if n in result.output}

    assert names() == {"sent-001", "sent-002", "notes-001"}
    assert names("--status", "finished") == {"sent-001", "notes-001"}
    assert names("--task", "classification") == {"sent-001", "sent-002"}
    assert names("--name", "notes") == {"notes-001"}
    assert "accuracy 0.9 (test)" in invoke("runs", "--dir", root).output
    bad = invoke("runs", "--dir", root, "--status", "done")
    assert bad.exit_code == 2 and "running, finished, failed, interrupted" in bad.output
    shown = invoke("runs", "show", "sent-002", "--dir", root)
    assert shown.exit_code == 0 and "failed" in shown.output and "diverged" in shown.output
    assert f"on {os.uname().nodename}" in shown.output
    assert invoke("runs", "show", "nope-001", "--dir", root).exit_code == 2


def _finished_run(root, name, value):
    """A run directory as tailor leaves it (the files the registry is rebuilt from), registered as finished."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: {path: tailor-tiny}\ntask: {type: classification}\nstrategy: {name: full}\n")
    (run / "env.json").write_text('{"config_hash": "abc"}')
    (run / "tailor.json").write_text('{"lineage": []}')
    metrics = {"metric": "accuracy", "fine_tuned": {"test": {"accuracy": value}}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    registry.started(run, {"task": "classification", "strategy": "full", "base_model": "tailor-tiny"})
    registry.ended(run, "finished", metrics)
    return run


def test_an_unreadable_registry_is_moved_aside_and_rebuilt_from_the_run_directories(tmp_path):
    root = tmp_path / "runs"
    _finished_run(root, "sent-001", 0.9)
    stopped = root / "sent-002"
    stopped.mkdir()
    (stopped / "config.yaml").write_text("task: {type: classification}\n")
    (stopped / "run.lock").write_text("1 elsewhere\n")  # its process is long gone: nobody holds the lock
    (root / "notes").mkdir()  # not a run
    (root / registry.FILE).write_bytes(b"this is not a database, it was overwritten by mistake")
    result = invoke("runs", "--dir", root)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    moved = list(root.glob(f"{registry.FILE}.unreadable-*"))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not a database")
    assert f"moved to {moved[0]}" in result.output
    rows = {r["name"]: r for r in registry.list_runs(root)}
    assert set(rows) == {"sent-001", "sent-002"}
    assert rows["sent-001"]["status"] == "finished" and rows["sent-001"]["metrics"]["fine_tuned"]["test"]["accuracy"] == 0.9
    assert rows["sent-002"]["status"] == "interrupted" and rows["sent-002"]["task"] == "classification"
    (root / registry.FILE).unlink()  # lost altogether: --rebuild indexes the directories again
    result = invoke("runs", "--dir", root, "--rebuild")
    assert result.exit_code == 0 and "2 runs added" in result.output
    assert {r["name"] for r in registry.list_runs(root)} == {"sent-001", "sent-002"}


def test_runs_for_scripts_json_and_plain_columns_when_piped(tmp_path):
    root = tmp_path / "runs"
    long = "a-rather-long-experiment-name-that-a-terminal-table-would-cut-001"
    _finished_run(root, long, 0.75)
    piped = CliRunner().invoke(app, ["runs", "--dir", str(root)], env={"COLUMNS": "80"})  # not a terminal
    assert piped.exit_code == 0
    lines = piped.output.splitlines()
    assert lines[0].split() == ["name", "status", "task", "strategy", "base", "model", "started", "took", "result"]
    assert lines[1].startswith(long + "  ") and "accuracy 0.75 (test)" in lines[1] and "…" not in piped.output
    listed = json.loads(CliRunner().invoke(app, ["runs", "--dir", str(root), "--json"]).stdout)
    keys = {"name", "path", "status", "task", "strategy", "base_model", "started", "ended", "seconds", "metric",
            "split", "value", "message", "pid", "host", "resumes"}
    assert len(listed) == 1 and set(listed[0]) == keys
    assert (listed[0]["name"], listed[0]["status"], listed[0]["value"]) == (long, "finished", 0.75)
    shown = json.loads(CliRunner().invoke(app, ["runs", "show", long, "--dir", str(root), "--json"]).stdout)
    assert set(shown) == keys | {"config", "metrics", "lineage", "checkpoint_step", "resume"}
    assert shown["metrics"]["metric"] == "accuracy" and shown["resume"] is None
