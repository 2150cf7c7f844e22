"""The command line tells the truth: exit codes, one-line errors naming the file or option, no side effects.

Exit codes: 2 for anything wrong before a shot starts, 1 if any shot failed or was interrupted, 0
otherwise. `status` and `rerun` never create the folder they are pointed at. These cases never
start Prefect: they are refused before it would be.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import ROOT, mount_namespace, shared


def voidbatch(*args: str, cwd: Path = ROOT, wrap: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    cmd = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run((wrap or []) + cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def one_line_error(res: subprocess.CompletedProcess, *expected: str) -> str:
    """The command's stderr is one line naming what is wrong (no traceback, no boxed usage text)."""
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


@pytest.fixture
def edit(tmp_path) -> Path:
    from shots.sample_edit import write_sample_edit

    path, _ = write_sample_edit(tmp_path / "e", height=64, width=112, shots=(("sh010", "static", 20, 1),))
    return path


def test_bad_input_before_any_shot_exits_2_naming_it(tmp_path, edit):
    out = str(tmp_path / "out")
    res = voidbatch("run", str(tmp_path / "missing.otio"), "--out", out)
    assert res.returncode == 2
    one_line_error(res, "missing.otio", "not found")

    not_otio = tmp_path / "cut.otio"
    not_otio.write_text(json.dumps({"hello": "world"}))
    res = voidbatch("run", str(not_otio), "--out", out)
    assert res.returncode == 2
    one_line_error(res, "cut.otio")

    edl = shared("otio", "screening_example.edl")
    res = voidbatch("run", str(edl), "--out", out)
    assert res.returncode == 2
    one_line_error(res, "screening_example.edl", "--rate")

    res = voidbatch("run", str(edit), "--out", out, "--rate", "abc")
    assert res.returncode == 2
    one_line_error(res, "--rate", "abc")

    sidecar = tmp_path / "shots.json"
    sidecar.write_text("{not json")
    res = voidbatch("run", str(edit), "--out", out, "--shots", str(sidecar))
    assert res.returncode == 2
    one_line_error(res, "shots.json", "not valid JSON")

    a_file = tmp_path / "file"
    a_file.write_text("x")
    res = voidbatch("run", str(edit), "--out", str(a_file))
    assert res.returncode == 2
    one_line_error(res, "--out", str(a_file))

    res = voidbatch("run", str(edit), "--out", out, "--colourspace", "ACES-ish")
    assert res.returncode == 2
    one_line_error(res, "--colourspace", "'ACES-ish' is not in the OCIO config", "ACEScg")

    res = voidbatch("run", str(edit), "--out", out, "--backend", "void")
    assert res.returncode == 2
    one_line_error(res, "--model-dir")

    with socket.socket() as s:  # a port nothing listens on: no farm there
        s.bind(("127.0.0.1", 0))
        nobody = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    res = voidbatch("run", str(edit), "--out", out, "--farm", nobody)
    assert res.returncode == 2
    one_line_error(res, "--farm", f"no Dask scheduler answers at {nobody}", "voidbatch farm-worker")
    assert not Path(out).exists()  # nothing was started, nothing was written


def test_read_only_out_exits_2(tmp_path, edit):
    ro = tmp_path / "ro"
    ro.mkdir()
    res = voidbatch("run", str(edit), "--out", str(ro / "job"),
                    wrap=mount_namespace(f"mount -t tmpfs -o ro,size=1m tmpfs {ro}"))
    assert res.returncode == 2
    one_line_error(res, "--out", "cannot write", "Read-only")


def _rows(*rows):
    from storage import manifest
    from storage.store import ArtifactStore

    now = datetime.now(timezone.utc)
    return [{"run_id": r, "attempt": a, "shot_id": s, "status": st, "frames": 10, "started_at": now,
             "finished_at": None if st == manifest.PLANNED else now} for r, a, s, st in rows], ArtifactStore, manifest


def test_status_exit_codes_and_interrupted_shots(tmp_path):
    rows, ArtifactStore, manifest = _rows(("r1", 1, "sh010", "done"), ("r1", 1, "sh020", "planned"))
    store = ArtifactStore(str(tmp_path / "out"))
    manifest.record_shots(store, rows)
    res = voidbatch("status", "--out", str(tmp_path / "out"))
    assert res.returncode == 1, res.stdout  # sh020's batch is gone: it was interrupted
    assert "interrupted" in res.stdout and "sh020" in res.stdout
    manifest.record_shots(store, [{**rows[1], "attempt": 2, "run_id": "r2", "status": "done"}])
    assert voidbatch("status", "--out", str(tmp_path / "out")).returncode == 0


def test_status_and_rerun_never_create_out(tmp_path):
    for command in ("status", "rerun"):
        missing = tmp_path / f"nowhere-{command}"
        res = voidbatch(command, "--out", str(missing))
        assert res.returncode == 2, (command, res.stdout, res.stderr)
        one_line_error(res, str(missing))
        assert not missing.exists()


def test_damaged_manifest_is_named_and_status_still_answers(tmp_path):
    rows, ArtifactStore, manifest = _rows(("r1", 1, "sh010", "done"))
    store = ArtifactStore(str(tmp_path / "out"))
    manifest.record_shots(store, rows)
    manifest.record_shots(store, [{**rows[0], "shot_id": "sh020", "status": "failed"}])
    manifest.compact(store)
    path = tmp_path / "out" / "manifest" / "shots.parquet"
    path.write_bytes(path.read_bytes()[:64])
    res = voidbatch("status", "--out", str(tmp_path / "out"))
    assert "shots.parquet" in res.stderr and "damaged" in res.stderr and "ArrowInvalid" in res.stderr
    assert "Traceback" not in res.stderr and "sh010" in res.stdout  # recovered from the last good copy
