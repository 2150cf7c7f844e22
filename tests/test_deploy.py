"""Operations: prefect.yaml, pools, the Kubernetes job template, automations and the GPU shot deployment.

The fast tests read the files. The slow one runs the studio recipe against a real `prefect server
start` on a loopback port: pools from deploy/setup_pools.sh, automations with a local webhook,
`prefect --no-prompt deploy --all`, a process worker that is SIGKILLed (with the flow run it
started, as when a host dies) in the middle of a chunk, a retry that finishes the batch with exactly
one version per shot, the `process-shot` deployment through `flows.dispatch.dispatch_shots`, and
`rerun-failed` as a deployment. Every process it starts is stopped by PID in a `finally`.
"""
from __future__ import annotations

import http.server
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import ROOT
from tests.services import PREFECT, Proc, alive, prefect_server, wait_for

TEMPLATE = ROOT / "deploy" / "k8s-job-template.json"


# -- fast: the files themselves ---------------------------------------------------------------------
def _prefect_yaml() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def _flow_of(entrypoint: str):
    import importlib

    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def test_prefect_yaml_deployments():
    doc = _prefect_yaml()
    assert doc["name"] == "voidbatch" and doc["prefect-version"] == "3.9.1"
    assert set(doc["definitions"]["work_pools"]) == {"cpu_pool", "a100_pool"}
    assert doc["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $VOIDBATCH_ROOT }}"}}]
    deps = {d["name"]: d for d in doc["deployments"]}
    assert set(deps) == {"process-edit", "process-shot", "rerun-failed"}
    edit, shot, rerun = deps["process-edit"], deps["process-shot"], deps["rerun-failed"]
    assert edit["entrypoint"] == "flows/process_edit.py:process_edit" and edit["tags"] == ["nightly"]
    assert edit["work_pool"]["name"] == "cpu" and rerun["work_pool"]["name"] == "cpu"
    nightly = edit["schedules"][0]
    assert nightly == doc["definitions"]["schedules"]["nightly"] and nightly["timezone"] and nightly["cron"]
    assert shot["entrypoint"] == "flows/process_shot.py:process_shot" and shot["work_pool"]["name"] == "a100"
    assert {"gpu_count", "image", "model_dir"} <= set(shot["work_pool"]["job_variables"])
    assert rerun["entrypoint"] == "flows/rerun_failed.py:rerun_failed"
    for dep in deps.values():  # parameters a flow does not take would fail every run
        flow = _flow_of(dep["entrypoint"])
        assert set(dep.get("parameters") or {}) <= set(inspect.signature(flow.fn).parameters), dep["name"]
    assert _flow_of(shot["entrypoint"]).name == "process-shot"  # run_deployment("process-shot/process-shot")
    from flows.dispatch import ShotJob

    shot_params = set(inspect.signature(_flow_of(shot["entrypoint"]).fn).parameters)
    assert set(ShotJob.parameters.fget(_job())) <= shot_params  # what the batch sends, the flow takes
    assert set(edit["parameters"]) == {"edit", "spec"} and set(edit["parameters"]["spec"]) == {"out"}


def _job():
    from flows.dispatch import ShotJob
    from shots.frames import FrameRange
    from shots.shot import Shot
    from tasks.spec import RunSpec

    r = FrameRange(0, 10, 24)
    return ShotJob(Shot("sh010", "sh010", "V1", 0, r.rate, r, r, (0, 0)), "/e.otio", RunSpec(out="/o"), "run-1", 1)


def _render(template: dict, values: dict) -> dict:
    """The job configuration a worker builds: variable defaults, overridden by job variables."""
    from prefect.utilities.templating import apply_values

    props = template["variables"]["properties"]
    merged = {k: v["default"] for k, v in props.items() if "default" in v} | values
    return apply_values(template["job_configuration"], merged)


def test_k8s_job_template_requests_gpus_on_gpu_nodes():
    from prefect.utilities.templating import find_placeholders

    template = json.loads(TEMPLATE.read_text())
    declared = set(template["variables"]["properties"])
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    assert used <= declared, used - declared  # an undeclared placeholder is dropped silently
    assert {"gpu_count", "model_dir", "image"} <= used
    job = _render(template, {"gpu_count": 2, "model_dir": "/weights/void-v1", "image": "reg/voidbatch-gpu:9"})
    pod = job["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["image"] == "reg/voidbatch-gpu:9"
    assert {"name": "VOIDBATCH_MODEL_DIR", "value": "/weights/void-v1"} in container["env"]
    assert {"name": "models", "mountPath": "/weights/void-v1", "readOnly": True} in container["volumeMounts"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    default = _render(template, {})["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert default["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_setup_pools_refuses_without_a_server():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    res = subprocess.run(["bash", str(ROOT / "deploy" / "setup_pools.sh")], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "PREFECT_API_URL" in res.stderr


def test_automations_shape():
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import automations
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    from uuid import uuid4

    failed = automations.failure_automation(uuid4(), tag="nightly")
    assert failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed",
                                     "prefect.flow-run.TimedOut"}
    assert failed.trigger.match_related.get("prefect.resource.id") == ["prefect.tag.nightly"]
    zombie = automations.zombie_automation(60)
    assert zombie.trigger.after == {"prefect.flow-run.heartbeat"}
    assert zombie.trigger.within.total_seconds() == 180 and zombie.actions[0].state.value == "CRASHED"


@pytest.fixture(scope="module")
def small_edit(tmp_path_factory):
    """sh010 (30 frames, one chunk), sh020 (230 frames, two chunks), sh030 (a mask of the wrong size)."""
    import numpy as np
    import opentimelineio as otio

    from shots import quadmask as qm
    from shots.sample_edit import write_sample_edit

    folder = tmp_path_factory.mktemp("edit")
    edit, samples = write_sample_edit(folder, height=96, width=168, shots=(
        ("sh010", "static", 30, 1), ("sh020", "pan", 230, 2), ("sh030", "static", 30, 3)))
    wrong = folder / "media" / "wrong_size.mkv"
    qm.write_quadmask(wrong, np.zeros((30, 48, 84), np.uint8), 24)
    tl = otio.adapters.read_from_file(str(edit))
    clip = next(c for c in tl.find_clips() if c.name == "sh030")
    clip.metadata["voidbatch"] = {"prompt": "x", "quadmask": str(wrong)}
    otio.adapters.write_to_file(tl, str(edit))
    return edit, {s.clip_name: s for s in samples}


def test_dispatch_gives_a_failed_outcome_for_a_run_that_returned_none():
    """A GPU run that crashed (its pod died) returned nothing: the batch gets a failed outcome saying so."""
    from prefect.exceptions import MissingResult

    from flows.dispatch import shot_outcome

    def no_result(raise_on_failure=True):
        raise MissingResult("the process died before returning")

    crashed = SimpleNamespace(name="eager-otter", state=SimpleNamespace(
        name="Crashed", message="Flow run infrastructure exited with non-zero status code -9.",
        is_final=lambda: True, is_completed=lambda: False, result=no_result))
    outcome = shot_outcome(_job(), crashed, "process-shot/process-shot")
    assert outcome.status == "failed" and outcome.run_id == "run-1" and outcome.attempt == 1
    assert "eager-otter ended Crashed" in outcome.error and "-9" in outcome.error


def test_process_shot_takes_the_pool_model_dir(monkeypatch):
    from flows.process_shot import _with_pool_weights
    from tasks.spec import BackendSpec, RunSpec

    monkeypatch.setenv("VOIDBATCH_MODEL_DIR", "/models/void")
    assert _with_pool_weights(RunSpec(out="/o")).backend.model_dir == "/models/void"
    mine = RunSpec(out="/o", backend=BackendSpec(model_dir="/mine"))
    assert _with_pool_weights(mine).backend.model_dir == "/mine"  # a batch that named its weights keeps them


# -- slow: the recipe against a real server -------------------------------------------------------
class _Webhook:
    """A loopback HTTP endpoint that keeps what is POSTed to it."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(self.rfile.read(int(self.headers.get("content-length") or 0)).decode())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`prefect server start` on a free loopback port with its own PREFECT_HOME (SQLite); stopped by PID."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as server:
        yield server


def _cli(env: dict, *args: str, check: bool = True, extra: dict | None = None) -> str:
    res = subprocess.run([PREFECT, "--no-prompt", *args], env={**env, **(extra or {})}, cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    if check:
        assert res.returncode == 0, f"prefect {' '.join(args)}: {res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def _api(server, method: str, path: str, body: dict | None = None):
    import httpx

    # A busy 2-core CI box can keep the SQLite-backed server from answering for over 30 s (a create_flow_run
    # once timed out there); wait for the answer rather than fail on the clock.
    r = httpx.request(method, f"{server.api}{path}", json=body, timeout=180)
    r.raise_for_status()
    return r.json() if r.content else None


def _flow_run(server, run_id: str) -> dict:
    return _api(server, "GET", f"/flow_runs/{run_id}")


def _final(server, run_id: str, timeout: float, worker: Proc) -> dict:
    def done():
        run = _flow_run(server, run_id)
        return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    return wait_for(f"flow run {run_id} to finish", done, timeout, every=1.0, on_timeout=worker.tail)


def _start_worker(server, pool: str, name: str, tmp: Path) -> Proc:
    env = {**server.env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
           "VOIDBATCH_ROOT": str(ROOT)}  # the pull step's directory, resolved on the worker at run time
    return Proc([PREFECT, "worker", "start", "--pool", pool, "--name", name, "--limit", "2"], env,
                 tmp / f"{name}.log")


def _versions(out: Path, shot: str) -> list[str]:
    folder = out / "shots" / shot
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.slow
def test_studio_recipe_on_a_real_server(server, small_edit, tmp_path):
    import cv2
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.dispatch import ShotJob, dispatch_shots
    from shots import ingest
    from tasks.report import out_tag
    from storage import manifest
    from storage.store import ArtifactStore
    from tasks.spec import RunSpec

    edit, samples = small_edit
    out = tmp_path / "out"
    env = server.env
    procs: list[Proc] = []
    hook = _Webhook()
    t0 = time.monotonic()
    timings = {}
    try:
        # pools: the recipe's kubernetes GPU pool, then the process pools this test runs on
        script = str(ROOT / "deploy" / "setup_pools.sh")
        subprocess.run(["bash", script], env={**env, "PREFECT": PREFECT, "A100_POOL": "a100-k8s", "GPUS": "2"},
                       check=True, capture_output=True, timeout=180)
        subprocess.run(["bash", script], env={**env, "PREFECT": PREFECT, "A100_POOL_TYPE": "process", "GPUS": "1"},
                       check=True, capture_output=True, timeout=180)
        k8s = _api(server, "GET", "/work_pools/a100-k8s")
        assert k8s["type"] == "kubernetes" and k8s["concurrency_limit"] == 2
        assert "gpu_count" in k8s["base_job_template"]["variables"]["properties"]
        a100 = _api(server, "GET", "/work_pools/a100")
        assert a100["type"] == "process" and a100["concurrency_limit"] == 1
        limits = {c["name"]: c["limit"] for c in _api(server, "POST", "/v2/concurrency_limits/filter", {})}
        assert limits.get("tag:gpu") == 1

        # automations: failures of nightly runs go to our webhook
        subprocess.run([sys.executable, str(ROOT / "deploy" / "automations.py"), "--webhook-url", hook.url],
                       env=env, check=True, capture_output=True, timeout=120)

        # without the nightly variables the batch has no edit or output: deploying it is refused
        refused = _cli(env, "deploy", "--name", "process-edit", check=False)
        assert "process-edit" not in {d["name"] for d in _api(server, "POST", "/deployments/filter", {})}, refused
        assert "VOIDBATCH_NIGHTLY_EDIT" in refused and "422" in refused, refused[-3000:]  # names what is missing
        # deploy everything from prefect.yaml; VOIDBATCH_ROOT stays unset here (resolved on the worker)
        _cli(env, "deploy", "--all", extra={"VOIDBATCH_NIGHTLY_EDIT": str(edit), "VOIDBATCH_NIGHTLY_OUT": str(out)})
        deps = {d["name"]: d for d in _api(server, "POST", "/deployments/filter", {})}
        assert set(deps) == {"process-edit", "process-shot", "rerun-failed"}
        assert deps["process-edit"]["parameters"] == {"edit": str(edit), "spec": {"out": str(out)}}
        assert deps["process-edit"]["tags"] == ["nightly"]
        assert deps["process-edit"]["schedules"][0]["schedule"]["cron"] == "0 1 * * *"
        assert deps["process-shot"]["work_pool_name"] == "a100"
        timings["setup"] = time.monotonic() - t0

        # the nightly batch through a worker; the worker's host "dies" while sh020's chunks run
        worker = _start_worker(server, "cpu", "cpu-1", tmp_path)
        procs.append(worker)
        batch = _api(server, "POST", f"/deployments/{deps['process-edit']['id']}/create_flow_run", {})
        running_chunks = {"task_runs": {"name": {"like_": "remove-sh020"}, "state": {"type": {"any_": ["RUNNING"]}}}}
        wait_for("sh020's chunks to run", lambda: _api(server, "POST", "/task_runs/filter", running_chunks), 240,
              on_timeout=worker.tail)
        time.sleep(1.0)
        killed = worker.kill_hard()
        timings["killed_at"] = time.monotonic() - t0
        assert len(killed) >= 2  # the worker and the flow run process it started
        wait_for("the killed processes to be gone", lambda: not [p for p in killed if alive(p)], 60)  # SIGKILL is async
        time.sleep(2.0)
        assert _flow_run(server, batch["id"])["state"]["type"] == "RUNNING"  # a zombie: nobody reports for it
        store = ArtifactStore(str(out))
        before = {r["shot_id"]: r["status"] for r in manifest.read_shots(store)}
        assert before == {"sh010": "done", "sh020": "planned", "sh030": "planned"}  # sh020 was mid-chunk
        shown = {r["shot_id"]: r["status"] for r in manifest.with_interrupted(manifest.read_shots(store))}
        assert shown == {"sh010": "done", "sh020": "interrupted", "sh030": "interrupted"}  # what status says
        assert _versions(out, "sh020") == []

        # what the zombie automation does after three missed heartbeats, then the UI's Retry
        _api(server, "POST", f"/flow_runs/{batch['id']}/set_state",
             {"state": {"type": "CRASHED", "name": "Crashed", "message": "worker host lost (test)"}, "force": True})
        worker = _start_worker(server, "cpu", "cpu-2", tmp_path)
        procs.append(worker)
        _cli(env, "flow-run", "retry", batch["id"])
        final = _final(server, batch["id"], 300, worker)
        timings["batch_retried"] = time.monotonic() - t0
        assert final["state"]["type"] == "FAILED" and "sh030" in final["state"]["message"], final["state"]
        assert final["run_count"] >= 2

        rows = manifest.read_shots(store)  # readable after a kill and a retry
        latest = manifest.latest_by_shot(rows)
        assert {s: r["status"] for s, r in latest.items()} == {"sh010": "up_to_date", "sh020": "done",
                                                               "sh030": "failed"}
        assert sorted((r["shot_id"], r["attempt"], r["status"]) for r in rows) == [
            ("sh010", 1, "done"), ("sh010", 2, "up_to_date"), ("sh020", 1, "interrupted"), ("sh020", 2, "done"),
            ("sh030", 1, "interrupted"), ("sh030", 2, "failed")]
        for shot in ("sh010", "sh020"):
            assert _versions(out, shot) == ["v001"]  # exactly one version, no half-published leftovers
            frames = sorted((out / "shots" / shot / "v001").glob(f"{shot}_void_v001.*.png"))
            assert len(frames) == samples[shot].frames == latest[shot]["frames"]
            assert all(cv2.imread(str(f)) is not None for f in frames)  # none corrupt
        assert not list((out / "shots").rglob("*.partial*"))
        chunks = manifest.read_chunks(store)
        retry_run = latest["sh020"]["run_id"]
        assert sorted(c["chunk_index"] for c in chunks if c["run_id"] == retry_run and c["shot_id"] == "sh020") \
            == [0, 1]
        assert [c["cached"] for c in chunks if c["run_id"] == retry_run and c["shot_id"] == "sh010"] == [True]

        # what the UI shows: artifacts through the API
        arts = {}  # the newest version of each key: the batch table is re-published as shots finish
        for a in sorted(_api(server, "POST", "/artifacts/filter", {}), key=lambda a: a["created"]):
            if a.get("key"):
                arts[a["key"]] = a
        tables = [a for a in _api(server, "POST", "/artifacts/filter", {})
                  if a.get("key") == f"batch-{retry_run}".lower()]
        assert len(tables) == 1  # one table per batch, updated in place as its shots ended
        table = tables[0]
        assert table["type"] == "table"
        table_rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
        assert {r["shot_id"]: r["status"] for r in table_rows} == {"sh010": "up_to_date", "sh020": "done",
                                                                  "sh030": "failed"}
        tag = out_tag(str(out))  # cards are keyed by output folder and shot
        assert arts[f"shot-{tag}-sh020"]["type"] == "markdown" and "done" in arts[f"shot-{tag}-sh020"]["data"]
        progress = arts[f"progress-{tag}-sh020"]
        assert progress["type"] == "progress" and 0 < float(progress["data"]) <= 100
        assert float(arts[f"batch-progress-{retry_run}".lower()]["data"]) == 100.0

        # the GPU deployment: one run per shot on the a100 pool (limit 1: the second waits its turn)
        gpu_worker = _start_worker(server, "a100", "a100-0", tmp_path)
        procs.append(gpu_worker)
        spec = RunSpec(out=str(out))
        shots = {s.shot_id: s for s in ingest.ingest(str(edit), spec.ingest.options())}
        attempts = manifest.next_attempts(manifest.read_shots(store), ["sh010", "sh030"])
        jobs = [ShotJob(shots[s], str(edit), spec, retry_run, attempts[s]) for s in ("sh010", "sh030")]
        with temporary_settings(updates={PREFECT_API_URL: server.api}):
            outcome = dispatch_shots(jobs, store, timeout=240, poll_interval=1.0)
        timings["gpu_shots"] = time.monotonic() - t0
        # the outcomes are the runs' own persisted results, read back from under the output folder
        assert outcome["sh030"].status == "failed" and "84x48" in outcome["sh030"].error
        assert outcome["sh010"].status == "up_to_date", outcome["sh010"].error
        assert outcome["sh010"].deliverable.version == 1
        shot_runs = _api(server, "POST", "/flow_runs/filter",
                         {"deployments": {"id": {"any_": [deps["process-shot"]["id"]]}}})
        assert sorted((r["name"], r["state"]["type"]) for r in shot_runs) == [("sh010", "COMPLETED"),
                                                                             ("sh030", "FAILED")]
        gpu_worker.stop()

        # rerun-failed as a deployment, with the fix for sh030 (a mask of the right size)
        fixed = tmp_path / "fixed.json"
        fixed.write_text(json.dumps({"sh030": {"quadmask": samples["sh030"].quadmask}}))
        before_rerun = manifest.read_shots(store)
        rerun = _api(server, "POST", f"/deployments/{deps['rerun-failed']['id']}/create_flow_run",
                     {"parameters": {"shots_file": str(fixed)}})
        final = _final(server, rerun["id"], 240, worker)
        timings["rerun"] = time.monotonic() - t0
        assert final["state"]["type"] == "COMPLETED", final["state"]
        new = [r for r in manifest.read_shots(store) if r not in before_rerun]
        assert [(r["shot_id"], r["status"]) for r in new] == [("sh030", "done")]
        assert _versions(out, "sh030") == ["v001"] and _versions(out, "sh010") == ["v001"]

        # the failure automation posted the crash and the failure of the nightly batch
        texts = wait_for("failure notifications", lambda: len(hook.received) >= 2 and hook.received, 60)
        alerts = [json.loads(t)["text"] for t in texts]
        assert any("Crashed" in a and "worker host lost" in a for a in alerts), alerts
        assert any("Failed" in a and "sh030" in a and "/runs/flow-run/" in a for a in alerts), alerts
        print("timings (s from start):", {k: round(v, 1) for k, v in timings.items()})
    finally:
        for proc in procs:
            proc.stop()
        hook.close()
