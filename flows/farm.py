"""Chunks on a farm of warm GPU workers: a Dask cluster, one worker process per GPU, each keeping its model.

With `dispatch=farm` the batch runs on a CPU worker (plan, prepare, conform, manifest) and only the
chunks travel, as Prefect task runs of their shot, through Prefect's `DaskTaskRunner`. Why Dask:
- a worker process lives all night, so the 5B model loads once per GPU, not once per shot
  (`tasks.removal.WARM`); the manifest's `model_load_s` is 0 for every chunk after a worker's first;
- each worker offers one `GPU` resource and every chunk asks for one: a GPU never runs two chunks;
- a worker that dies (SIGKILL, a lost host) has its chunk re-run on another worker by Dask's
  scheduler, as the same Prefect task run: nothing lost, nothing delivered twice. Prefect's own task
  workers (`serve` / `.delay()`) leave a killed worker's task run Running with nobody to re-run it;
- queued first passes go before second passes (`PASS_PRIORITY`), so a worker swaps pass-1 and
  pass-2 weights as rarely as the queue allows.
Every machine sees the output folder at the same path or URI. Starting the farm: deploy/README.md.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Iterator

GPU = "GPU"  # the worker resource one chunk holds while it runs
PASS_PRIORITY = {None: 0, 1: 1, 2: 0}  # phase -> Dask priority (higher runs first among queued chunks)


class FarmError(RuntimeError):
    """The farm cannot take chunks (no scheduler at the address); the message says what to start."""


def task_runner(address: str):
    """The task runner of a shot whose chunks go to the farm at `address`."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)


@contextlib.contextmanager
def on_a_gpu(phase: int | None) -> Iterator[None]:
    """Chunks submitted inside ask for one GPU of the farm, first passes before second ones."""
    import dask

    with dask.annotate(resources={GPU: 1}, priority=PASS_PRIORITY[phase]):
        yield


def gpu_workers(address: str, timeout: float = 30) -> list[str]:
    """The names of the farm's GPU workers now; FarmError naming the address when no scheduler answers."""
    from distributed import Client

    try:
        with Client(address, timeout=timeout) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
    except (OSError, TimeoutError) as e:
        raise FarmError(f"no Dask scheduler answers at {address} ({type(e).__name__}: {e}); start the farm "
                        f"(deploy/README.md: `dask scheduler`, then `voidbatch farm-worker {address}` per GPU)") from e
    return sorted(str(w.get("name")) for w in workers if (w.get("resources") or {}).get(GPU))


def worker_command(address: str, gpu: str | None, name: str | None = None) -> tuple[list[str], dict]:
    """(argv, environment) of one warm GPU worker: one process, one thread, one GPU, named for the UI and logs."""
    name = name or f"gpu-{socket.gethostname()}-{gpu if gpu is not None else 'cpu'}"
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name, "--nworkers", "1",
            "--nthreads", "1", "--resources", f"{GPU}=1", "--no-dashboard", "--death-timeout", "120",
            "--memory-limit", "0"]  # a model worker's RSS is its weights: no pausing or restarts for memory
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return argv, env
