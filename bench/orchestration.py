"""What Prefect orchestration costs the batch: a rerun of an up-to-date edit, and a fan-out of tiny shots.

    .venv/bin/python bench/orchestration.py                # both parts (about 12 minutes on 2 cores)
    .venv/bin/python bench/orchestration.py --shots 50     # a smaller fan-out
    .venv/bin/python bench/orchestration.py --fixed-only   # fan-out only with the proposed fix
    .venv/bin/python bench/orchestration.py --skip-fanout  # only the rerun part

1. Rerun: a small sample edit through `process_edit` in this process, then again: the second run
   finds every shot up to date (content-keyed chunk results and versions are reused), so its wall
   time should be a small fraction of the first (target <= 10%). A third run shows the same with
   the proposed fix (shot subflows without heartbeats, see `subflow_heartbeats_off`).
2. Fan-out: an edit of `--shots` clips of 8 frames at 48x84 cut from a few generated media files
   (each clip a different window, so nothing is reused), with quadmasks, on the classical backend at
   model size 64x112, handles 0: work so small that what is left is orchestration. The same shots go
   through the tasks' functions in a plain loop first; the difference divided by the number of flow
   and task runs is the per-run overhead. Run as is, then with the proposed fix. Peak threads and
   RSS are sampled from /proc while each part runs; the API is polled afterwards until every task
   run is visible (the UI lag).

Unless PREFECT_API_URL is set, a private `prefect server start` (temporary PREFECT_HOME, loopback
port) is started for the bench and stopped by PID at the end; its start-up is not in any figure.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# -- measuring --------------------------------------------------------------------------------------
def _proc_status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class Sampler:
    """Peak thread count and RSS of this process while a block runs (sampled every 20 ms)."""

    def __init__(self, every: float = 0.02):
        self.every = every
        self.peak_threads = 0
        self.peak_rss_mb = 0.0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            s = _proc_status()
            self.peak_threads = max(self.peak_threads, s["Threads"])
            self.peak_rss_mb = max(self.peak_rss_mb, s["VmRSS"] / 1024)
            self._stop.wait(self.every)

    def __enter__(self):
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()


# -- a private server -------------------------------------------------------------------------------
@contextlib.contextmanager
def prefect_server(log_dir: Path):
    """PREFECT_API_URL as given, or a private `prefect server start` stopped by PID afterwards."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    home = Path(tempfile.mkdtemp(prefix="voidbatch-bench-prefect-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    log_path = log_dir / "prefect-server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        import urllib.request

        t0 = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{api}/health", timeout=2).status == 200:
                    break
            if time.perf_counter() - t0 > 180:
                raise RuntimeError("prefect server did not start in 180 s")
            time.sleep(0.3)
        print(f"private Prefect server {api} up in {time.perf_counter() - t0:.1f} s (pid {proc.pid})")
        os.environ.update(PREFECT_API_URL=api, PREFECT_HOME=str(home), DO_NOT_TRACK="1")
        yield api
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def _count_runs(api: str, since: datetime) -> tuple[int, int]:
    """(flow runs, task runs) created on the server since `since`."""
    import httpx

    after = {"start_time": {"after_": since.isoformat()}}
    flows = httpx.post(f"{api}/flow_runs/count", json={"flow_runs": after}, timeout=30).json()
    tasks = httpx.post(f"{api}/task_runs/count", json={"task_runs": after}, timeout=30).json()
    return flows, tasks


def _settle(api: str, since: datetime, timeout: float = 300) -> tuple[int, int, float]:
    """Poll until the run counts stop growing: (flow runs, task runs, seconds until they did)."""
    t0 = time.perf_counter()
    last, stable_since = None, time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        counts = _count_runs(api, since)
        if counts != last:
            last, stable_since = counts, time.perf_counter()
        elif time.perf_counter() - stable_since >= 3.0:
            break
        time.sleep(0.5)
    return last[0], last[1], stable_since - t0


@contextlib.contextmanager
def subflow_heartbeats_off(enabled: bool = True):
    """The proposed fix, applied here by patching: in-process shot subflows run without heartbeats.

    Prefect 3.8.8 joins a flow run's heartbeat thread at exit, and that thread sleeps in whole
    seconds: every sync (sub)flow run ends up to 1 s late. An in-process subflow needs no heartbeat
    of its own (the batch run's heartbeat covers the process), so process_edit can call
    process_shot under temporary_settings(PREFECT_FLOWS_HEARTBEAT_FREQUENCY=None).
    """
    if not enabled:
        yield
        return
    import flows.process_edit as pe
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    original = pe.process_shot

    def without_heartbeat(*args, **kwargs):
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            return original(*args, **kwargs)

    pe.process_shot = without_heartbeat
    try:
        yield
    finally:
        pe.process_shot = original


# -- part 1: rerun of an up-to-date edit ------------------------------------------------------------
def bench_rerun(work: Path) -> dict:
    from flows.process_edit import process_edit
    from shots.sample_edit import write_sample_edit
    from storage import manifest
    from storage.store import ArtifactStore

    edit, _ = write_sample_edit(work / "rerun_edit", height=144, width=256,
                                shots=(("sh010", "static", 48, 1), ("sh020", "pan", 120, 2)))
    out = work / "rerun_out"
    times = []
    for patched in (False, False, True):  # first run, rerun as is, rerun with the proposed fix
        with subflow_heartbeats_off(patched), Sampler() as s:
            state = process_edit(edit=str(edit), out=str(out), backend="classical", return_state=True)
        assert state.is_completed(), state.message
        times.append(s)
    rows = manifest.read_shots(ArtifactStore(str(out)))
    again = sorted(r["status"] for r in rows if r["attempt"] > 1)
    return {"first_s": times[0].seconds, "second_s": times[1].seconds, "fixed_s": times[2].seconds,
            "ratio": times[1].seconds / times[0].seconds, "fixed_ratio": times[2].seconds / times[0].seconds,
            "rerun_statuses": again, "peak_threads": max(t.peak_threads for t in times),
            "peak_rss_mb": max(t.peak_rss_mb for t in times)}


# -- part 2: a fan-out of tiny shots ----------------------------------------------------------------
def write_tiny_edit(folder: Path, shots: int, media_files: int = 4, clip_frames: int = 8, height: int = 48,
                    width: int = 84) -> Path:
    """An edit of `shots` clips, each a different `clip_frames` window of one of `media_files` movies."""
    import opentimelineio as otio

    from shots import quadmask as qm
    from shots.media import write_video_lossless
    from shots.synthetic import make_scene

    rate = Fraction(24)
    per_file = -(-shots // media_files) * clip_frames
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    tc = otio.opentime.from_timecode("01:00:00:00", 24).value
    files = []
    for i in range(media_files):
        scene = make_scene(("static", "pan")[i % 2], per_file, height, width, seed=100 + i)
        plate, mask = media / f"plate{i}.mkv", media / f"plate{i}_quadmask.mkv"
        write_video_lossless(plate, scene.plate, rate, timecode="01:00:00:00")
        qm.write_quadmask(mask, scene.quadmask, rate)
        files.append((plate, mask))
    timeline = otio.schema.Timeline(f"{shots} tiny shots")
    track = otio.schema.Track("V1")
    timeline.tracks.append(track)
    for n in range(shots):
        plate, mask = files[n % media_files]
        start = (n // media_files) * clip_frames
        clip = otio.schema.Clip(
            name=f"t{n:04d}",
            media_reference=otio.schema.ExternalReference(
                target_url=str(plate), available_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(tc, 24), otio.opentime.RationalTime(per_file, 24))),
            source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(tc + start, 24),
                                                 otio.opentime.RationalTime(clip_frames, 24)))
        clip.metadata["voidbatch"] = {"prompt": "empty background", "quadmask": str(mask)}
        track.append(clip)
    edit = folder / "tiny.otio"
    otio.adapters.write_to_file(timeline, str(edit))
    return edit


def run_without_prefect(edit: Path, spec) -> int:
    """What `process_shot` does, shot after shot, calling the tasks' functions (`.fn`) without Prefect."""
    from prefect.logging import disable_run_logger

    from shots import ingest
    from tasks import removal as removal_tasks
    from tasks import shot as shot_tasks
    from tasks.outcome import ShotOutcome, utcnow

    store = spec.store()
    done = 0
    with disable_run_logger():
        for shot in ingest.ingest(str(edit), spec.ingest.options()):
            started = utcnow()
            prepared = shot_tasks.prepare_shot.fn(shot, store, spec)
            results = tuple(removal_tasks.remove_chunk.fn(c, shot.shot_id, prepared.work_key,
                                                          shot.instructions.prompt or "", spec.backend, store,
                                                          spec.seed, shot.rate) for c in prepared.chunks)
            deliverable, key, _ = shot_tasks.conform_shot.fn(prepared, list(results), store, spec)
            outcome = ShotOutcome("plain", 1, shot, str(edit), "done", prepared=prepared, deliverable=deliverable,
                                  backend=removal_tasks.backend_identity(spec.backend), chunks=results,
                                  content_key=key, started_at=started)
            shot_tasks.record_outcome.fn(store, outcome)
            done += 1
    return done


def bench_fanout(work: Path, api: str, shots: int, fixed: bool = False) -> dict:
    from flows.process_edit import process_edit
    from storage import manifest
    from storage.store import ArtifactStore
    from tasks.spec import BackendSpec, IngestSpec, RunSpec

    t0 = time.perf_counter()
    edit = work / "tiny_edit" / "tiny.otio"
    if not edit.exists():
        edit = write_tiny_edit(work / "tiny_edit", shots)
    made = time.perf_counter() - t0
    tag = "_fixed" if fixed else ""
    def spec(out: Path) -> RunSpec:
        return RunSpec(out=str(out), backend=BackendSpec(name="classical", model_size="64x112"),
                       ingest=IngestSpec(handles=0))

    with Sampler() as plain:
        plain_shots = run_without_prefect(edit, spec(work / f"tiny_plain{tag}"))
    since = datetime.now(timezone.utc)
    out = work / f"tiny_prefect{tag}"
    with subflow_heartbeats_off(fixed), Sampler() as orchestrated:
        state = process_edit(str(edit), spec(out), return_state=True)
    rows = manifest.read_shots(ArtifactStore(str(out)))
    flow_runs, task_runs, lag = _settle(api, since)
    statuses = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    runs = flow_runs + task_runs
    return {"shots": shots, "edit_written_s": made, "state": state.type.value, "statuses": statuses,
            "plain_s": plain.seconds, "plain_shots": plain_shots, "prefect_s": orchestrated.seconds,
            "flow_runs": flow_runs, "task_runs": task_runs,
            "overhead_per_run_ms": 1000 * (orchestrated.seconds - plain.seconds) / max(runs, 1),
            "overhead_per_shot_s": (orchestrated.seconds - plain.seconds) / shots,
            "ui_lag_s": lag, "peak_threads": orchestrated.peak_threads, "peak_rss_mb": orchestrated.peak_rss_mb,
            "plain_peak_threads": plain.peak_threads, "plain_peak_rss_mb": plain.peak_rss_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=int, default=200, help="clips in the fan-out edit (default 200)")
    parser.add_argument("--skip-rerun", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--fixed-only", action="store_true",
                        help="fan-out only with the proposed fix (subflows without heartbeats), not also as is")
    parser.add_argument("--keep", help="keep the generated edits and outputs in this folder")
    args = parser.parse_args(argv)
    work = Path(args.keep or tempfile.mkdtemp(prefix="voidbatch-bench-orch-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; work in {work}")
    try:
        with prefect_server(work) as api:
            import logging

            logging.getLogger("prefect").setLevel(logging.WARNING)  # keep the figures readable
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
            t_import = time.perf_counter()
            import flows.process_edit  # noqa: F401 - import cost is not part of any figure

            print(f"import flows.process_edit: {time.perf_counter() - t_import:.1f} s")
            if not args.skip_rerun:
                r = bench_rerun(work)
                print(f"\nrerun of an up-to-date edit (2 shots, 48 + 120 frames, 144x256, classical at 384x672):\n"
                      f"  first run {r['first_s']:.1f} s; second run {r['second_s']:.1f} s = "
                      f"{100 * r['ratio']:.1f}% of the first; with shot subflows without heartbeats "
                      f"{r['fixed_s']:.1f} s = {100 * r['fixed_ratio']:.1f}% (target <= 10%)\n"
                      f"  reruns: {', '.join(r['rerun_statuses'])}; peak threads {r['peak_threads']}, "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB")
            if not args.skip_fanout:
                for fixed in ((True,) if args.fixed_only else (False, True)):
                    f = bench_fanout(work, api, args.shots, fixed)
                    label = "with shot subflows without heartbeats (proposed)" if fixed else "as is"
                    print(f"\nfan-out, {label}: {f['shots']} clips x 8 frames at 48x84, classical at 64x112, "
                          f"handles 0\n"
                          f"  without Prefect: {f['plain_s']:.1f} s ({1000 * f['plain_s'] / f['shots']:.0f} ms/shot), "
                          f"peak threads {f['plain_peak_threads']}, peak RSS {f['plain_peak_rss_mb']:.0f} MB\n"
                          f"  process_edit:    {f['prefect_s']:.1f} s "
                          f"({1000 * f['prefect_s'] / f['shots']:.0f} ms/shot), state {f['state']}, "
                          f"shots {f['statuses']}\n"
                          f"  runs: {f['flow_runs']} flow runs + {f['task_runs']} task runs; overhead "
                          f"{f['overhead_per_shot_s']:.2f} s/shot = {f['overhead_per_run_ms']:.0f} ms per run\n"
                          f"  peak threads {f['peak_threads']}, peak RSS {f['peak_rss_mb']:.0f} MB; every task run "
                          f"visible in the API {f['ui_lag_s']:.1f} s after the flow returned")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
