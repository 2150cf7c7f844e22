"""A real `voidbatch run` under faults: SIGTERM, SIGKILL, a second run on the same folder, a full disk.

Each case runs the command line as a user would, in its own process group, and looks at what is
left afterwards: the manifest, `status` and its exit code, leftovers, the embedded Prefect server.
A shot whose quadmask is a FIFO nobody writes to stands in for a stalled network mount: the batch
reliably sits in that shot while the test acts, with no sleeps standing in for synchronisation.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import opentimelineio as otio
import pytest

from storage import manifest
from storage.store import ArtifactStore
from tests.conftest import ROOT, mount_namespace

pytestmark = pytest.mark.slow
VOIDBATCH = [sys.executable, "-m", "flows.cli"]


def _env(**more) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_PROFILE")}
    return {**env, "PYTHONPATH": str(ROOT), **more}


@contextlib.contextmanager
def edit_with_stalled_shot(folder: Path, stalled: str):
    """An edit of sh010 and sh020 in `folder`/e whose `stalled` shot's quadmask is a FIFO nobody writes to.

    Yields the sample shots; on the way out a writer opens the FIFO, so nothing stays blocked on it.
    """
    from shots.sample_edit import write_sample_edit

    edit, samples = write_sample_edit(folder / "e", height=64, width=112, shots=(
        ("sh010", "static", 20, 1), ("sh020", "static", 20, 2)))
    fifo = folder / "e" / "stalled_quadmask.mkv"
    os.mkfifo(fifo)
    tl = otio.adapters.read_from_file(str(edit))
    next(c for c in tl.find_clips() if c.name == stalled).metadata["voidbatch"]["quadmask"] = str(fifo)
    otio.adapters.write_to_file(tl, str(edit))
    try:
        yield samples
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.fixture
def stalled_edit(tmp_path):
    """sh010 processes normally; sh020's quadmask is a FIFO, so the batch waits in sh020 until stopped."""
    with edit_with_stalled_shot(tmp_path, "sh020") as samples:
        fix = tmp_path / "fix.json"  # the morning's fix: the real mask
        fix.write_text(json.dumps({"shots": {"sh020": {"quadmask": samples[1].quadmask}}}))
        yield tmp_path, fix


def _children(pid: int) -> list[int]:
    """Every descendant of `pid`, from /proc."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents.setdefault(int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out += [child]
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _wait_for(what: str, predicate, timeout: float, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:] if log else ''}")


def _start_batch(folder: Path) -> tuple[subprocess.Popen, Path]:
    log = folder / "run.log"
    proc = subprocess.Popen([*VOIDBATCH, "run", "e/sample_edit.otio", "--out", "out"], cwd=folder,
                            env=_env(VOIDBATCH_MEDIA_TIMEOUT="900"), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    _wait_for("the batch to reach sh020", lambda: b"subflow run 'sh020'" in log.read_bytes(), 300, log)
    return proc, log


def _cli(folder: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VOIDBATCH, *args], cwd=cwd or folder, env=_env(), capture_output=True, text=True,
                          timeout=900)


def _latest(out: Path) -> dict[str, dict]:
    return manifest.latest_by_shot(manifest.with_interrupted(manifest.read_shots(ArtifactStore(str(out), create=False))))


def test_sigterm_records_interrupted_and_leaves_nothing_running(stalled_edit):
    folder, fix = stalled_edit
    temp_before = {p.name for p in Path(tempfile.gettempdir()).glob("voidbatch-*")}
    proc, log = _start_batch(folder)
    try:
        second = _cli(folder, "run", "e/sample_edit.otio", "--out", "out")  # same folder, while the first runs
        assert second.returncode == 2 and f"in use by voidbatch run" in second.stderr
        assert f"pid {proc.pid}" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        family = _children(proc.pid)
        assert family, "the batch started its Prefect server"
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _wait_for("the embedded Prefect server to stop", lambda: not any(_alive(p) for p in family), 60)
    out = folder / "out"
    latest = _latest(out)
    assert latest["sh010"]["status"] == "done"
    assert latest["sh020"]["status"] == "interrupted" and "SIGTERM" in latest["sh020"]["error"]
    assert not (out / ".voidbatch.lock").exists() and not list(out.rglob("*.partial*"))
    assert {p.name for p in Path(tempfile.gettempdir()).glob("voidbatch-*")} <= temp_before  # staged under --out
    status = _cli(folder, "status", "--out", "out")
    assert status.returncode == 1 and "interrupted" in status.stdout

    elsewhere = folder / "elsewhere"  # the morning rerun, from another directory: paths were stored absolute
    elsewhere.mkdir()
    rerun = _cli(folder, "rerun", "--out", str(out), "--shots", str(fix), cwd=elsewhere)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert {s: r["status"] for s, r in _latest(out).items()} == {"sh010": "done", "sh020": "done"}
    conform = sorted((out / "conform").glob("*.otio"))[-1]
    active = {c.name: c.active_media_reference_key for c in otio.adapters.read_from_file(str(conform)).find_clips()}
    assert active == {"sh010": "voidbatch_v001", "sh020": "voidbatch_v001"}


def test_sigkill_leaves_no_server_and_rerun_picks_the_shot_up(stalled_edit):
    folder, fix = stalled_edit
    proc, log = _start_batch(folder)
    family = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: only the kernel and the record can help
    proc.wait(60)
    _wait_for("the embedded Prefect server to die with its parent", lambda: not any(_alive(p) for p in family), 60)
    out = folder / "out"
    status = _cli(folder, "status", "--out", "out")
    assert status.returncode == 1 and "interrupted" in status.stdout  # a planned shot of a dead batch
    rerun = _cli(folder, "rerun", "--out", "out", "--shots", str(fix))  # takes over the dead batch's lock
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rows = manifest.read_shots(ArtifactStore(str(out)))
    assert sorted((r["shot_id"], r["attempt"], r["status"]) for r in rows) == [
        ("sh010", 1, "done"), ("sh020", 1, "interrupted"), ("sh020", 2, "done")]


def test_full_disk_fails_the_shot_names_the_disk_and_keeps_the_record(tmp_path):
    """The output is an 8 MB filesystem: the small shot fits, the big one is refused before rendering."""
    from shots.sample_edit import write_sample_edit

    edit, _ = write_sample_edit(tmp_path / "e", height=192, width=336, shots=(
        ("sh010", "static", 20, 1), ("sh020", "static", 60, 2)))
    out = tmp_path / "small_disk"
    out.mkdir()
    keep = tmp_path / "kept"
    script = (f"{' '.join(VOIDBATCH)} run {edit} --out {out} --model-size 64x112; echo run=$? > {tmp_path}/codes; "
              f"{' '.join(VOIDBATCH)} status --out {out} >/dev/null; echo status=$? >> {tmp_path}/codes; "
              f"cp -a {out} {keep}")
    res = subprocess.run(mount_namespace(f"mount -t tmpfs -o size=8m tmpfs {out}") + ["sh", "-c", script],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    codes = dict(line.split("=") for line in (tmp_path / "codes").read_text().split())
    assert codes == {"run": "1", "status": "1"}, res.stdout + res.stderr
    assert "error: the output disk is full" in res.stderr and str(out) in res.stderr
    rows = {r["shot_id"]: r for r in manifest.read_shots(ArtifactStore(str(keep), create=False))}
    assert rows["sh010"]["status"] == "done"
    assert rows["sh020"]["status"] == "failed" and "not enough free space on" in rows["sh020"]["error"]
    assert not list(keep.rglob("*.partial*")) and not (keep / "shots" / "sh020").exists()


def test_record_is_written_when_the_disk_is_already_full(tmp_path):
    """The failure row itself meets ENOSPC: the reserve kept under manifest/ is given up for it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from datetime import datetime, timezone
from storage import manifest
from storage.store import ArtifactStore
store = ArtifactStore({str(disk)!r})
now = datetime.now(timezone.utc)
row = dict(run_id="r1", attempt=1, shot_id="sh010", status="planned", started_at=now)
manifest.reserve_space(store)
manifest.record_shots(store, [row])
try:
    with open({str(disk / 'filler')!r}, "wb") as f:
        while True:
            f.write(b"x" * 65536)
except OSError as e:
    full = e.errno
try:
    manifest.record_shots(store, [dict(row, status="failed", error="No space left", finished_at=now)])
except manifest.ManifestWriteError as e:
    print("parquet write failed:", e, file=sys.stderr)
print(json.dumps(dict(full=full, rows=[(r["shot_id"], r["status"]) for r in manifest.read_shots(store)])))
"""
    res = subprocess.run(mount_namespace(f"mount -t tmpfs -o size=2m tmpfs {disk}") + [sys.executable, "-c", script],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result == {"full": 28, "rows": [["sh010", "failed"]]}  # ENOSPC, and the failure is on record


def test_cancel_in_the_ui_stops_a_command_line_batch_between_shots(tmp_path):
    """Cancel pressed in the Prefect UI for a batch no worker supervises: it stops after the shot in hand,
    and the shots it did not start are recorded interrupted."""
    import re

    import httpx

    stack = contextlib.ExitStack()
    stack.enter_context(edit_with_stalled_shot(tmp_path, "sh010"))
    log = tmp_path / "run.log"
    proc = subprocess.Popen([*VOIDBATCH, "run", "e/sample_edit.otio", "--out", "out"], cwd=tmp_path,
                            env=_env(VOIDBATCH_MEDIA_TIMEOUT="20"), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_for("sh010 to start", lambda: b"subflow run 'sh010'" in log.read_bytes(), 300, log)
        api, batch_id = re.search(rb"View at (http://[\d.:]+)/runs/flow-run/([0-9a-f-]{36})", log.read_bytes()).groups()
        httpx.post(f"{api.decode()}/api/flow_runs/{batch_id.decode()}/set_state",
                   json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True}, timeout=30)
        assert proc.wait(300) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stack.close()
    latest = _latest(tmp_path / "out")
    assert latest["sh010"]["status"] == "failed" and "did not open within 20 s" in latest["sh010"]["error"]
    assert latest["sh020"]["status"] == "interrupted" and "cancelled in the Prefect UI" in latest["sh020"]["error"]
    assert b"Finished in state Cancelled" in log.read_bytes()
