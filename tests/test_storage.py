import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from storage import layout, manifest
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


def test_version_folder_is_never_overwritten(store):
    with store.writing_dir("shots/a/v001") as folder:
        (folder / "f.1001.png").write_bytes(b"x")
        assert not store.exists("shots/a/v001/f.1001.png")  # nothing shows until the folder lands
    assert store.exists("shots/a/v001/f.1001.png")
    with pytest.raises(StoreError, match="never overwritten"):
        with store.writing_dir("shots/a/v001") as folder:
            (folder / "f.1001.png").write_bytes(b"y")
    assert store.get_bytes("shots/a/v001/f.1001.png") == b"x"
    with pytest.raises(RuntimeError):
        with store.writing_dir("shots/a/v002") as folder:
            (folder / "f.1001.png").write_bytes(b"half")
            raise RuntimeError("render died")
    assert not store.exists("shots/a/v002") and store.list("shots/a") == ["shots/a/v001/f.1001.png"]


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
    store.put_bytes(layout.SHOTS_MANIFEST, buf.getvalue())
    with pytest.raises(manifest.ManifestError, match="schema version"):
        manifest.read_shots(store)


def test_reading_the_manifest_starts_no_arrow_threads(tmp_path):
    """Arrow's reader pools outlive a short command: under load `voidbatch status` printed its table
    and then aborted at exit ("terminate called without an active exception", exit -6, 2 runs in 12
    beside three busy loops), so its exit code lied. A read must leave no native thread behind."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from datetime import datetime, timezone
        from storage import manifest
        from storage.schema import SHOTS_SCHEMA
        data = manifest.encode([dict(run_id="r1", attempt=1, shot_id="sh010", status="done",
                                     started_at=datetime.now(timezone.utc))], SHOTS_SCHEMA)
        before = len(os.listdir("/proc/self/task"))
        rows = manifest.decode(data, schema=SHOTS_SCHEMA)
        after = len(os.listdir("/proc/self/task"))
        print(len(rows), before, after)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows, before, after = map(int, res.stdout.split())
    assert rows == 1 and after == before, f"{after - before} threads started by one manifest read"


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
    rows = manifest.read_shots(store)  # must decode: Parquet is an old or new whole version, the journal whole lines
    assert rows[0]["shot_id"] == "base"
    assert all(r["status"] == "done" and r["error"] == "x" * 400 for r in rows[1:])  # no row is half there
    # leftover temp files are not taken for artifacts
    assert set(store.list("manifest")) <= {"manifest/shots.parquet", "manifest/shots.previous.parquet",
                                           "manifest/journal/r1.jsonl", "manifest/journal/big.jsonl"}


def test_damaged_manifest_is_named_and_recovered(tmp_path, caplog):
    """A truncated shots.parquet: the path is reported and the rows come back from the last good copy + journal."""
    store = ArtifactStore(str(tmp_path / "out"))
    manifest.record_shots(store, [_row("sh010")])
    manifest.record_shots(store, [_row("sh020", "failed")])
    manifest.compact(store)  # the journals are merged and gone: only Parquet and its previous copy hold rows
    path = Path(store.path(layout.SHOTS_MANIFEST))
    path.write_bytes(path.read_bytes()[:40])  # a copy tool died halfway
    rows = manifest.read_shots(store)
    assert {r["shot_id"] for r in rows} >= {"sh010"}  # the previous generation
    assert str(path) in caplog.text and "damaged" in caplog.text
    manifest.record_shots(store, [_row("sh030")])  # the next write repairs the file
    assert {r["shot_id"] for r in manifest.read_shots(store)} >= {"sh010", "sh030"}
    assert pq_reads(path)


def pq_reads(path: Path) -> bool:
    import pyarrow.parquet as pq

    return pq.read_table(path).num_rows > 0


def test_journal_keeps_a_record_the_parquet_write_lost(tmp_path, monkeypatch):
    """The Parquet merge fails (a full disk): the row is still read back from the journal, and merged later."""
    store = ArtifactStore(str(tmp_path / "out"))
    manifest.record_shots(store, [_row("sh010")])
    real = manifest._merge

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manifest, "_merge", disk_full)
    with pytest.raises(manifest.ManifestWriteError, match="shots.parquet.*No space left.*journal"):
        manifest.record_shots(store, [_row("sh020", "failed")])
    assert {r["shot_id"]: r["status"] for r in manifest.read_shots(store)} == {"sh010": "done", "sh020": "failed"}
    monkeypatch.setattr(manifest, "_merge", real)
    assert manifest.compact(store) == 2 and store.list(layout.JOURNAL) == []
    assert {r["shot_id"] for r in manifest.decode(store.get_bytes(layout.SHOTS_MANIFEST))} == {"sh010", "sh020"}


def test_journal_line_cut_by_a_kill_is_skipped(tmp_path):
    store = ArtifactStore(str(tmp_path / "out"))
    manifest.record_shots(store, [_row("sh010")])
    with open(store.path(layout.journal_file("r1")), "ab") as f:
        f.write(b'{"table": "shots", "row": {"run_id": "r1", "sh')  # the writer died mid-line
    assert [r["shot_id"] for r in manifest.read_shots(store)] == ["sh010"]


def test_planned_rows_of_a_dead_run_read_as_interrupted():
    rows = [{**_row("sh010", "planned"), "run_id": "dead"}, {**_row("sh020", "planned"), "run_id": "live"}]
    shown = {r["shot_id"]: r["status"] for r in manifest.with_interrupted(rows, ["live"])}
    assert shown == {"sh010": "interrupted", "sh020": "planned"}


def test_output_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    from storage.lock import LockHeld, OutputLock, holder

    store = ArtifactStore(str(tmp_path / "out"))
    with OutputLock(store, "run-a"):
        with pytest.raises(LockHeld, match=r"in use by voidbatch run run-a \(pid \d+"):
            OutputLock(store, "run-b").acquire()
    assert holder(store) is None  # released
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    OutputLock(store, "run-old").acquire()
    lock_file = Path(store.path(layout.LOCK))
    lock_file.write_text(lock_file.read_text().replace(str(os.getpid()), dead.stdout.strip()))
    with OutputLock(store, "run-c"):  # the old holder is gone: taken over
        assert holder(store).run_id == "run-c"


def test_sweep_removes_what_a_killed_writer_left(tmp_path):
    from storage.atomic import atomic_path, sweep_partials

    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_path(out / "shots" / "a" / "v001", exclusive=True) as tmp:
            tmp.mkdir()
            (tmp / "f.1001.png").write_bytes(b"x")
            raise RuntimeError("killed")
    assert not list(out.rglob("*.partial*"))  # removed on the way out
    (out / "shots" / "a" / ".v002.abc.partial").mkdir(parents=True)  # what SIGKILL leaves
    (out / "shots" / "a" / ".v002.abc.partial" / "f.png").write_bytes(b"x")
    assert [p.name for p in sweep_partials(out)] == [".v002.abc.partial"]
    assert not list(out.rglob("*.partial*"))


def test_content_keys_come_from_bytes_not_mtimes(tmp_path):
    from storage.keys import content_key, files_sha256

    a = tmp_path / "plate.0001.exr"
    a.write_bytes(b"graded once")
    before = files_sha256([a])
    stat = a.stat()
    a.write_bytes(b"graded twice")
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # re-delivered in place, old mtime restored
    assert files_sha256([a]) != before
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
