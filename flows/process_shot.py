"""One shot: prepare chunks, remove the object from each, conform, record. Fails alone."""
from __future__ import annotations

from dataclasses import asdict

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from model.masks.batch import needs_generated_mask
from model.select import load_backend
from shots.extract import NothingToRemove
from shots.shot import Shot
from storage.rows import chunk_rows as chunk_rows_of
from storage.rows import shot_row, utcnow
from tasks.options import RunOptions
from tasks.report import ShotProgress, shot_artifact
from tasks.masks import build_mask
from tasks.shot import conform_shot, prepare_shot, record_shot, remove_chunk


class ShotFailed(Exception):
    pass


@flow(name="process-shot", flow_run_name="shot-{shot_id}", task_runner=ThreadPoolTaskRunner(max_workers=2))
def process_shot(shot_id: str, shot: dict, options: dict, run_id: str, edit: str, attempt: int = 1,
                 force: bool = False) -> dict:
    """Returns the shot's manifest row (and deliverable); raises ShotFailed after recording a failure."""
    shot, opts = Shot.from_dict(shot), RunOptions(**options)
    progress, started = ShotProgress(shot_id), utcnow()
    prepared = deliverable = key = backend = mask = mask_uri = None
    chunk_rows: list[dict] = []
    try:
        backend = load_backend(*opts.backend_args())
        if needs_generated_mask(shot):
            shot, mask, mask_uri = build_mask(shot, opts.out, opts.segmenter, opts.reasoner, opts.sam2_dir,
                                              progress.stage("mask"))
        prepared = prepare_shot(shot, opts.out, opts.model_hw, progress.stage("prepare"))
        prompt = shot.instructions.prompt or ""
        # VOID chunks hold a GPU: tagged so a `gpu` concurrency limit caps them at the number of GPUs
        remover = remove_chunk.with_options(tags=["removal", "gpu"]) if backend.name == "void" else remove_chunk
        futures = [remover.submit(c, shot_id, prepared.work_key, prompt, opts.backend_args(), opts.out,
                                       opts.seed, shot.rate, progress=p)
                   for c, p in zip(prepared.chunks, progress.chunks(len(prepared.chunks)))]
        results = [f.result() for f in futures]
        chunk_rows = [row for c, r in zip(prepared.chunks, results)
                      for row in chunk_rows_of(run_id, attempt, shot_id, c, r, backend, _store(opts))]
        deliverable, key, reused = conform_shot(prepared, results, opts.out, opts.format, force,
                                                progress.stage("conform"))
        status, error = ("up_to_date" if reused else "degraded" if mask and mask.degraded else "done"), None
    except NothingToRemove as e:
        status, error = "skipped", str(e)
    except Exception as e:  # noqa: BLE001 - any failure is this shot's alone
        status, error = "failed", f"{type(e).__name__}: {e}" if not str(e).startswith("shot ") else str(e)
    row = shot_row(run_id, attempt, shot, edit, status, error=error, prepared=prepared, deliverable=deliverable,
                   backend=backend, passes=opts.passes, seed=opts.seed, store=_store(opts), started_at=started,
                   content_key=key, mask=mask, mask_uri=mask_uri)
    record_shot(opts.out, row, chunk_rows)
    shot_artifact(row)
    progress.finish()
    if status == "failed":
        raise ShotFailed(error)
    return {"row": row, "deliverable": asdict(deliverable) if deliverable else None}


def _store(opts: RunOptions):
    from storage.store import ArtifactStore

    return ArtifactStore(opts.out)
