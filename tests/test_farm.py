"""The production topology: a Prefect server on PostgreSQL, a CPU worker, two warm "GPU" workers.

The batch runs as the `process-edit` deployment on a Prefect process worker (the CPU worker) with
`dispatch: farm`; its chunks run on a Dask farm of two `voidbatch farm-worker` processes (CPU
processes with the tiny VOID model standing in for GPUs). One GPU worker is SIGKILLed with
everything it started (a host lost) in the middle of a chunk: its chunk runs again on the other,
nothing is lost or done twice, the manifest and the UI agree, each worker loaded the model once and
no worker ever ran two chunks at once. Every process is stopped by PID in a `finally`.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from shots.sample_edit import write_sample_edit
from storage import manifest
from storage.store import ArtifactStore
from tests.conftest import ROOT
from tests.services import PREFECT, Proc, alive, free_port, postgres, prefect_server, wait_for

pytestmark = pytest.mark.slow
SHOTS = (("sh010", "pan", 198, 5), ("sh020", "static", 198, 5), ("sh030", "pan", 40, 5))  # 2 + 2 + 1 chunks


def _api(server, method: str, path: str, body: dict | None = None):
    import httpx

    r = httpx.request(method, f"{server.api}{path}", json=body, timeout=180)
    r.raise_for_status()
    return r.json() if r.content else None


def _farm_worker(address: str, name: str, env: dict, log: Path) -> Proc:
    """`voidbatch farm-worker`, as an operator starts one per GPU."""
    return Proc([str(Path(PREFECT).with_name("voidbatch")), "farm-worker", address, "--name", name], env, log)


def _dask_workers(address: str) -> dict[str, dict]:
    """name -> {pid, processing: chunk keys it runs now}, from the scheduler."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        info = client.scheduler_info(n_workers=-1)["workers"]
        processing = client.processing()
        pids = client.run(os.getpid)
    return {w["name"]: {"address": a, "pid": pids.get(a), "processing": processing.get(a, ())}
            for a, w in info.items()}


def test_batch_on_postgres_with_two_warm_gpu_workers_one_killed(tmp_path, void_tiny_dir):
    edit, samples = write_sample_edit(tmp_path / "edit", height=64, width=112, shots=SHOTS)
    out = tmp_path / "out"
    procs: list[Proc] = []
    with postgres() as database, prefect_server(tmp_path / "prefect-home", database) as server:
        try:
            env = {**server.env, "VOIDBATCH_ROOT": str(ROOT), "DASK_TEMPORARY_DIRECTORY": str(tmp_path / "dask")}
            port = free_port()
            address = f"tcp://127.0.0.1:{port}"
            procs.append(scheduler := Proc([str(Path(PREFECT).with_name("dask")), "scheduler", "--host",
                                            "127.0.0.1", "--port", str(port), "--no-dashboard"], env,
                                           tmp_path / "scheduler.log"))
            gpus = {name: _farm_worker(address, name, env, tmp_path / f"{name}.log") for name in ("gpu-a", "gpu-b")}
            procs += gpus.values()
            wait_for("two GPU workers on the farm", lambda: len(_dask_workers(address)) == 2, 180,
                     on_timeout=lambda: scheduler.tail() + gpus["gpu-a"].tail())

            # the batch as a deployment on the CPU pool, run by a process worker
            import subprocess
            subprocess.run([PREFECT, "--no-prompt", "work-pool", "create", "cpu", "--type", "process"], env=env,
                           check=True, capture_output=True, timeout=180)
            subprocess.run([PREFECT, "--no-prompt", "deploy", "--name", "process-edit"], cwd=ROOT, check=True,
                           capture_output=True, timeout=300,
                           env={**env, "VOIDBATCH_NIGHTLY_EDIT": str(edit), "VOIDBATCH_NIGHTLY_OUT": str(out)})
            procs.append(cpu := Proc([PREFECT, "worker", "start", "--pool", "cpu", "--name", "cpu-1"],
                                     {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, tmp_path / "cpu-1.log"))
            deployment = _api(server, "GET", "/deployments/name/process-edit/process-edit")
            spec = {"out": str(out), "dispatch": "farm", "farm": address, "delivery": {"detail": "model"},
                    "backend": {"name": "void", "model_dir": str(void_tiny_dir), "steps": 1, "passes": 2,
                                "model_size": "64x112"}}
            batch = _api(server, "POST", f"/deployments/{deployment['id']}/create_flow_run",
                         {"parameters": {"edit": str(edit), "spec": spec}})

            # a GPU worker's host is lost in the middle of a chunk
            def busy():
                workers = _dask_workers(address)
                return next((name for name, w in workers.items() if w["processing"]), None)

            victim = wait_for("a chunk running on the farm", busy, 600, every=0.2, on_timeout=cpu.tail)
            killed = gpus[victim].kill_hard()
            wait_for("the killed worker to be gone", lambda: not [p for p in killed if alive(p)], 60)

            def final():
                run = _api(server, "GET", f"/flow_runs/{batch['id']}")
                return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

            run = wait_for("the batch to end", final, 900, every=1.0,
                           on_timeout=lambda: cpu.tail(6000) + gpus[({"gpu-a", "gpu-b"} - {victim}).pop()].tail())
            assert run["state"]["type"] == "COMPLETED", (run["state"], cpu.tail(6000))

            store = ArtifactStore(str(out))
            shots = {r["shot_id"]: r for r in manifest.read_shots(store)}
            assert {s: r["status"] for s, r in shots.items()} == {"sh010": "done", "sh020": "done", "sh030": "done"}
            for shot_id, row in shots.items():
                assert row["frames"] == samples[[s[0] for s in SHOTS].index(shot_id)].frames
            chunks = manifest.read_chunks(store)
            expected = [(s, i, p) for s, n in (("sh010", 2), ("sh020", 2), ("sh030", 1)) for i in range(n)
                        for p in (1, 2)]
            assert sorted((c["shot_id"], c["chunk_index"], c["pass_index"]) for c in chunks) == expected  # no dupes
            assert all(Path(c["output_uri"]).is_file() for c in chunks)
            assert not list(out.rglob("*.partial*"))

            # each worker loaded the model once, and never ran two chunks at once
            by_worker: dict[str, list[dict]] = {}
            for c in chunks:
                by_worker.setdefault(c["worker"], []).append(c)
            assert 1 <= len(by_worker) <= 2, list(by_worker)
            for worker, rows in by_worker.items():
                assert sum(1 for c in rows if c["model_load_s"] > 0) == 1, (worker, [c["model_load_s"] for c in rows])
                spans = sorted((c["started_at"], c["finished_at"]) for c in rows)
                assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (worker, spans)
            survivor = next(name for name in gpus if name != victim)
            assert gpus[survivor].popen.poll() is None

            # what the UI shows: every chunk pass a Completed task run, exactly once; the table agrees
            runs = _api(server, "POST", "/task_runs/filter", {"task_runs": {"name": {"like_": "remove-"}}})
            names = Counter(r["name"] for r in runs)
            assert sorted(names) == sorted(f"remove-{s}-c{i}-p{p}" for s, i, p in expected)
            assert set(names.values()) == {1}
            assert {r["state"]["type"] for r in runs} == {"COMPLETED"}
            tables = [a for a in _api(server, "POST", "/artifacts/filter", {})
                      if a.get("key") == f"batch-{shots['sh010']['run_id']}".lower()]
            table = json.loads(tables[0]["data"]) if isinstance(tables[0]["data"], str) else tables[0]["data"]
            assert {r["shot_id"]: r["status"] for r in table} == {s: r["status"] for s, r in shots.items()}
            swaps = sum(c["weights_swaps"] or 0 for c in chunks)
            print(f"\nfarm: killed {victim}; loads per worker 1; weight swaps {swaps} for {len(SHOTS)} shots")
        finally:
            for proc in reversed(procs):
                proc.stop()
