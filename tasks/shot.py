"""Tasks for one shot: prepare its chunks, conform them into a version, record the outcome."""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from prefect import get_run_logger, task

from model import removal
from model.backend import BackendIdentity
from model.native_detail import NativeDetail
from model.void.files import default_cache_dir
from shots import conform, deliver, extract, provenance
from shots.media import probe
from storage import layout, manifest
from storage.store import ArtifactStore
from tasks import IN_MEMORY
from tasks.outcome import ShotOutcome, deliverable_from_row
from tasks.removal import logged_progress
from tasks.spec import RunSpec


def transient(task, task_run, state) -> bool:
    """Retry what may pass a second time (I/O, a busy GPU), not a shot whose input is wrong."""
    try:
        state.result()
    except (extract.ShotError, ValueError):
        return False
    except Exception:  # noqa: BLE001
        return True
    return False


@task(name="prepare-shot", retries=1, retry_delay_seconds=5, retry_condition_fn=transient, **IN_MEMORY)
def prepare_shot(shot, store: ArtifactStore, spec: RunSpec, progress=None) -> extract.PreparedShot:
    """Validate the mask, choose the ROI, write model-size plate and mask chunks to the store."""
    limit = None if spec.masks.allow_large_mask else extract.MAX_REMOVE_FRACTION
    prepared = extract.prepare_shot(shot, store, progress=progress, model_size=spec.backend.model_hw,
                                    max_remove_fraction=limit,
                                    colourspace=shot.instructions.colourspace or spec.ingest.colourspace)
    get_run_logger().info("shot %s: %d chunks, ROI %s", shot.shot_id, len(prepared.chunks), prepared.roi.as_list())
    return prepared


@task(name="conform-shot", retries=1, retry_delay_seconds=5, retry_condition_fn=transient, **IN_MEMORY)
def conform_shot(prepared: extract.PreparedShot, results: list[removal.ChunkResult], store: ArtifactStore,
                 spec: RunSpec, progress=None) -> tuple[conform.Deliverable, str, bool]:
    """Stitch, composite into the full-resolution plate, publish a new version; or reuse an identical one.

    Returns (deliverable, render key, reused): a shot whose content, results and format match a
    version already delivered is up to date and gets no new version unless the spec forces one.
    """
    shot = prepared.shot
    plate = probe(shot.media.path)
    fmt = deliver.choose_format(plate) if spec.delivery.format == "auto" else spec.delivery.format
    backend = results[0].backend
    native = None
    if spec.delivery.detail == "native":  # the classical fill is the native fill; VOID keeps what it generates
        native = NativeDetail(prepared, generated=backend.name != "classical", progress=get_run_logger().info)
    key = conform.render_key(prepared, [r.output_key for r in results], fmt, native.version if native else None)
    if not spec.force and (row := manifest.find_current(store, shot.shot_id, key)):
        get_run_logger().info("shot %s: up to date as v%03d", shot.shot_id, row["version"])
        return deliverable_from_row(row, store), key, True
    deliver.check_free_space(store, shot.shot_id, fmt, shot.media.width, shot.media.height, shot.frames, plate=plate)
    outputs = {r.chunk_index: r.output_key for r in results}
    log = get_run_logger()
    written = logged_progress(progress, lambda pct: log.info("shot %s: %d of %d frames written", shot.shot_id,
                                                             round(pct * shot.frames / 100), shot.frames))
    return conform.conform_shot(prepared, outputs, store, fmt, progress=written, qc_every=spec.delivery.qc_every,
                                sign=content_credentials(prepared, backend, spec, fmt), native=native), key, False


def content_credentials(prepared: extract.PreparedShot, backend: BackendIdentity, spec: RunSpec, fmt: str):
    """What signs a version of this shot (`sign(folder, files) -> state`), or None when provenance is off.

    The identity is loaded here, in the process that signs: key material never travels or gets logged.
    """
    identity = provenance.load_identity(spec.delivery.provenance, default_cache_dir() / "c2pa")
    if identity is None:
        return None
    shot, (first, last) = prepared.shot, prepared.region_frames
    edit = provenance.Edit(
        plate=provenance.Plate(Path(shot.media.path).name, prepared.inputs.plate_sha256, shot.source_timecode(),
                               shot.source_timecode(shot.source_range.end_inclusive)),
        agent=provenance.SoftwareAgent(version("voidbatch"), backend.name, backend.version, backend.weights_sha256),
        prompt=shot.instructions.prompt or "",
        region=provenance.Region(layout.FIRST_FRAME + first, layout.FIRST_FRAME + last,
                                 tuple(prepared.region.as_list()), prepared.mask_path, prepared.inputs.mask_sha256),
        generated=backend.name != "classical")
    return lambda folder, files: provenance.sign_version(folder, files, fmt, edit, identity).state


@task(name="record-shot", **IN_MEMORY)
def record_outcome(store: ArtifactStore, outcome: ShotOutcome) -> None:
    """The shot's rows into the manifest now (journal first), so a batch stopped later loses nothing."""
    manifest.record(store, shots=[outcome.shot_row(store)], chunks=outcome.chunk_rows(store))
