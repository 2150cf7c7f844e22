import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from storage import manifest
from storage.store import ArtifactStore, StoreError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "out"))
    return ArtifactStore(f"memory://{tmp_path.name}/out")


def test_put_get_list(store):
    uri = store.put_bytes("runs/r1/shots/sh010/chunk000.txt", b"hello")
    assert store.get_bytes("runs/r1/shots/sh010/chunk000.txt") == b"hello"
    assert store.exists("runs/r1/shots/sh010/chunk000.txt")
    assert store.key_of(uri) == "runs/r1/shots/sh010/chunk000.txt"
    store.put_bytes("runs/r1/a.txt", b"a")
    assert store.list("runs/r1") == ["runs/r1/a.txt", "runs/r1/shots/sh010/chunk000.txt"]
    with open(store.local_path("runs/r1/a.txt"), "rb") as f:
        assert f.read() == b"a"


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", ""])
def test_keys_cannot_escape_root(store, key):
    with pytest.raises(StoreError):
        store.put_bytes(key, b"x")


def test_create_mode_refuses_existing_version(store):
    store.put_bytes("shots/a/v001/x.png", b"1", mode="create")
    with pytest.raises(StoreError, match="never overwritten"):
        store.put_bytes("shots/a/v001/x.png", b"2", mode="create")
    assert store.get_bytes("shots/a/v001/x.png") == b"1"


def test_writing_context_lands_only_on_success(store, tmp_path):
    with store.writing("chunks/c0.mkv") as tmp:
        Path(tmp).write_bytes(b"done")
    assert store.get_bytes("chunks/c0.mkv") == b"done"
    with pytest.raises(RuntimeError):
        with store.writing("chunks/c1.mkv") as tmp:
            Path(tmp).write_bytes(b"half")
            raise RuntimeError("encoder died")
    assert not store.exists("chunks/c1.mkv")
    assert store.list("chunks") == ["chunks/c0.mkv"]


def test_publish_dir_is_never_overwritten(tmp_path):
    store = ArtifactStore(str(tmp_path / "out"))
    src = tmp_path / "stage"
    src.mkdir()
    (src / "f.1001.png").write_bytes(b"x")
    store.publish_dir("shots/a/v001", src)
    assert store.exists("shots/a/v001/f.1001.png")
    with pytest.raises(StoreError):
        store.publish_dir("shots/a/v001", src)


def _row(shot, status="done", attempt=1, run="r1"):
    now = datetime.now(timezone.utc)
    return {"run_id": run, "attempt": attempt, "shot_id": shot, "clip_name": shot, "status": status,
            "source_in": 86400, "source_out": 86500, "frames": 100, "rate": "24000/1001", "roi": [0, 0, 10, 10],
            "started_at": now, "finished_at": now, "seconds": 1.5}


def test_manifest_round_trip_and_merge(store):
    manifest.record_shots(store, [_row("sh010"), _row("sh020", "failed")])
    manifest.record_shots(store, [_row("sh020", "done", attempt=2, run="r2")])  # a rerun appends
    rows = manifest.read_shots(store)
    assert [(r["shot_id"], r["attempt"], r["status"]) for r in rows] == [
        ("sh010", 1, "done"), ("sh020", 1, "failed"), ("sh020", 2, "done")]
    assert rows[0]["rate"] == "24000/1001" and rows[0]["roi"] == [0, 0, 10, 10]
    assert rows[0]["started_at"].tzinfo is not None
    latest = manifest.latest_by_shot(rows)
    assert latest["sh020"]["status"] == "done"
    # the same key replaces, it does not duplicate
    manifest.record_shots(store, [_row("sh010", "failed")])
    assert len(manifest.read_shots(store)) == 3


def test_manifest_rejects_unknown_columns(store):
    with pytest.raises(manifest.ManifestError, match="unknown columns"):
        manifest.record_shots(store, [{**_row("a"), "colour": "red"}])


def test_manifest_schema_version_checked(store):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import io

    buf = io.BytesIO()
    pq.write_table(pa.table({"shot_id": ["a"]}), buf)
    store.put_bytes(manifest.SHOTS_FILE, buf.getvalue())
    with pytest.raises(manifest.ManifestError, match="schema version"):
        manifest.read_shots(store)


def test_manifest_write_killed_midway_leaves_old_intact(tmp_path):
    """SIGKILL a process that rewrites a large manifest over and over: what is left always reads."""
    out = tmp_path / "out"
    store = ArtifactStore(str(out))
    manifest.record_shots(store, [_row("base")])
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from datetime import datetime, timezone
        from storage.store import ArtifactStore
        from storage import manifest
        store = ArtifactStore({str(out)!r})
        now = datetime.now(timezone.utc)
        rows = [{{"run_id": "big", "attempt": 1, "shot_id": f"s{{i}}", "status": "done", "error": "x" * 400,
                  "started_at": now}} for i in range(20000)]
        print("ready", flush=True)
        for k in range(1000):
            for r in rows: r["attempt"] = k
            manifest.record_shots(store, rows)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(2.5)  # several rewrites are in flight by now
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = manifest.read_shots(store)  # must decode: the file is an old or new whole version
    assert rows[0]["shot_id"] == "base"
    assert len(rows) == 1 or len(rows) % 20000 == 1
    # leftover temp files are not taken for artifacts
    assert store.list("manifest") == ["manifest/shots.parquet"]
