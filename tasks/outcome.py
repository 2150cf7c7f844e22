"""What became of a shot: the typed result every shot run returns, and its manifest rows, built here once.

A `ShotOutcome` comes back from the `process-shot` subflow or deployment run (Prefect persists
it, so `state.result()` gives it back in either case); the batch collects outcomes and records
them. Nothing reads the manifest to learn what just happened: the manifest is where outcomes
go, and this module is the one place that knows which column holds what.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from model.backend import BackendIdentity
from model.masks.pipeline import MaskResult
from model.removal import ChunkResult, peak_rss_mb
from shots.conform import Deliverable
from shots.detail import DetailShare
from shots.extract import PreparedShot
from shots.frames import rate_str
from shots.qc import QcReport
from shots.shot import Shot
from storage.manifest import FINISHED, PLANNED
from storage.store import ArtifactStore


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Unsuccessful(Exception):
    """A run that ended failed or cancelled, carrying its outcome.

    Prefect raises a failed state's data when anything asks for its result (the engine does, at the end
    of a deployment run), so the data must be an exception: a bare outcome there logged a TypeError
    with the whole outcome in it. The message is what the UI shows; `.outcome` is what the run did.
    """

    def __init__(self, message: str, outcome):
        super().__init__(message)
        self.outcome = outcome

    def __reduce__(self):
        return type(self), (str(self), self.outcome)


def outcome_of(state):
    """What a finished run returned, whether it completed, failed or was cancelled (an exception instead
    when it broke before it had an outcome)."""
    result = state.result(raise_on_failure=False)
    return result.outcome if isinstance(result, Unsuccessful) else result


@dataclass(frozen=True, repr=False)
class ShotOutcome:
    """One attempt at one shot: its status and everything that was made on the way."""

    run_id: str
    attempt: int
    shot: Shot
    edit: str
    status: str  # storage.manifest.TERMINAL, or PLANNED before it runs
    error: str | None = None
    prepared: PreparedShot | None = None
    deliverable: Deliverable | None = None
    backend: BackendIdentity | None = None
    passes: int | None = None
    seed: int | None = None
    content_key: str | None = None
    mask: MaskResult | None = None
    mask_uri: str | None = None
    chunks: tuple[ChunkResult, ...] = ()
    conform_uri: str | None = None
    started_at: datetime | None = None
    finished_at: datetime = field(default_factory=utcnow)
    peak_rss_mb: float = field(default_factory=peak_rss_mb)

    def __repr__(self) -> str:  # logs and the UI: the gist, not every field
        version = f" v{self.deliverable.version:03d}" if self.deliverable else ""
        return f"ShotOutcome({self.shot.shot_id} attempt {self.attempt}: {self.status}{version})"

    @property
    def delivered(self) -> bool:
        """A version exists for this shot (new, or reused as up to date)."""
        return self.status in FINISHED and self.deliverable is not None

    def shot_row(self, store: ArtifactStore) -> dict:
        """The shots.parquet row of this attempt."""
        shot, media, ins = self.shot, self.shot.media, self.shot.instructions
        row = {
            "run_id": self.run_id, "attempt": self.attempt, "shot_id": shot.shot_id, "clip_name": shot.clip_name,
            "track": shot.track, "edit_uri": self.edit, "status": self.status, "error": self.error,
            "source_uri": media.path if media else None, "rate": rate_str(shot.rate),
            "source_in": shot.source_range.start, "source_out": shot.source_range.end_exclusive,
            "frames": shot.frames, "head_handle": shot.handles[0], "tail_handle": shot.handles[1],
            "source_tc_in": shot.source_timecode(),
            "source_tc_out": shot.source_timecode(shot.source_range.end_exclusive),
            "width": media.width if media else None, "height": media.height if media else None,
            "prompt": ins.prompt if ins else None, "passes": self.passes, "seed": self.seed,
            "content_key": self.content_key, "conform_uri": self.conform_uri,
            "started_at": self.started_at, "finished_at": None if self.status == PLANNED else self.finished_at,
            "seconds": (self.finished_at - self.started_at).total_seconds() if self.started_at else None,
            "peak_rss_mb": self.peak_rss_mb,
        }
        if self.prepared is not None:
            plate = self.prepared.plate
            row.update(roi=self.prepared.roi.as_list(), chunks=len(self.prepared.chunks),
                       mask_source=self.prepared.mask_source, quadmask_uri=self.prepared.mask_path,
                       source_bits=plate.bits, colour_space=plate.colour.describe(), field_order=plate.field_order)
        if self.mask is not None:  # a generated quadmask: how it was made, and whether reasoning degraded
            row.update(mask_columns(self.mask, self.mask_uri))
        if self.backend is not None:
            row.update(backend=self.backend.name, backend_version=self.backend.version,
                       weights_sha256=self.backend.weights_sha256,
                       affected_region="regenerated from background" if self.backend.name == "classical"
                       else "re-simulated")
        if self.deliverable is not None:
            row.update(deliverable_columns(self.deliverable, store))
        return row

    def chunk_rows(self, store: ArtifactStore) -> list[dict]:
        """chunks.parquet rows: one per chunk and pass (a two-pass backend keeps pass 1 as its own row)."""
        if self.prepared is None:
            return []
        inputs = {c.chunk.index: c for c in self.prepared.chunks}
        rows = []
        for r in self.chunks:
            c = inputs[r.chunk_index]
            base = {"run_id": self.run_id, "shot_id": self.shot.shot_id, "chunk_index": r.chunk_index,
                    "attempt": self.attempt, "start": c.chunk.start, "end": c.chunk.end,
                    "padded_to": c.chunk.padded_to, "status": "done", "seed": r.seed,
                    "plate_uri": store.uri(c.plate_key), "mask_uri": store.uri(c.mask_key)}
            if r.backend.pass1 is not None:
                # run in phases, pass 1 has a result of its own; run in one call, pass 2's row holds the costs
                first = {**_run_columns(r.pass1), "content_key": r.pass1.content_key} if r.pass1 \
                    else _run_columns(r, timing=False)
                rows.append({**base, **first, "pass_index": 1, "backend": r.backend.pass1.name,
                             "backend_version": r.backend.pass1.version, "output_uri": store.uri(r.pass1_output_key)})
            rows.append({**base, **_run_columns(r), "pass_index": 2 if r.backend.pass1 is not None else 1,
                         "backend": r.backend.name, "backend_version": r.backend.version,
                         "content_key": r.content_key, "output_uri": store.uri(r.output_key)})
        return rows


def _run_columns(r: ChunkResult, timing: bool = True) -> dict:
    """Where and how a chunk's pass ran: cached, times, and what it cost in loads and weight swaps."""
    columns = {"cached": r.cached, "started_at": r.started_at, "finished_at": r.finished_at, "worker": r.worker}
    if timing:
        columns.update(seconds=r.seconds, peak_rss_mb=r.peak_rss_mb, model_load_s=r.model_load_s,
                       weights_swaps=r.weights_swaps, weights_swap_s=r.weights_swap_s)
    return columns


def mask_columns(mask: MaskResult, mask_uri: str | None) -> dict:
    """The manifest columns that say how a generated quadmask was made."""
    return {"mask_source": mask.source, "quadmask_uri": mask_uri, "mask_reasoner": mask.reasoner,
            "mask_degraded_reason": mask.reason if mask.degraded else None,
            "reasoning_latency_s": mask.latency_s, "reasoning_tokens_in": mask.tokens_in,
            "reasoning_tokens_out": mask.tokens_out}


def mask_row(run_id: str, shot: Shot, edit: str, status: str, error: str | None = None,
             mask: MaskResult | None = None, mask_uri: str | None = None) -> dict:
    """The masks.parquet row of one shot's quadmask, as `voidbatch masks` made (or found) it."""
    row = {"run_id": run_id, "shot_id": shot.shot_id, "edit_uri": edit, "status": status, "error": error,
           "quadmask_uri": mask_uri, "finished_at": utcnow()}
    if mask is not None:
        row.update(mask_columns(mask, mask_uri))
    return row


def deliverable_columns(d: Deliverable, store: ArtifactStore) -> dict:
    return {"version": d.version, "output_uri": store.uri(d.output_key), "output_format": d.output_format,
            "output_first_frame": d.first_frame, "output_sha256": d.sha256, "deliverable_lossy": d.lossy,
            "contact_sheet_uri": store.uri(d.contact_sheet_key), "qc_keep_max_diff": d.qc.keep_max_diff,
            "qc_frames_checked": d.qc.frames_checked, "qc_precision": d.qc.precision, "provenance": d.provenance,
            "detail": d.detail, **_share_columns(d)}


def _share_columns(d: Deliverable) -> dict:
    if d.share is not None:
        return {"fill_propagated": d.share.propagated, "fill_synthesized": d.share.synthesized,
                "fill_generated": d.share.generated}
    return {"fill_generated": 1.0} if d.detail == "model" else {}


def deliverable_from_row(row: dict, store: ArtifactStore) -> Deliverable:
    """The Deliverable a finished manifest row describes (an up-to-date version, or one a conform points at)."""
    return Deliverable(shot_id=row["shot_id"], version=row["version"], output_key=store.key_of(row["output_uri"]),
                       output_format=row["output_format"], first_frame=row["output_first_frame"],
                       frames=row["frames"], sha256=row["output_sha256"],
                       contact_sheet_key=store.key_of(row["contact_sheet_uri"]),
                       lossy=bool(row.get("deliverable_lossy")),
                       qc=QcReport(row.get("qc_keep_max_diff") or 0.0, row.get("qc_frames_checked") or 0,
                                   row.get("qc_precision") or "8-bit code"),
                       provenance=row.get("provenance") or "off", detail=row.get("detail") or "model",
                       share=DetailShare(row["fill_propagated"], row["fill_synthesized"], row["fill_generated"])
                       if row.get("fill_propagated") is not None else None)
