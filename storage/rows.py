"""Manifest rows from the pipeline's values: one place that knows which column holds what."""
from __future__ import annotations

from datetime import datetime, timezone

from shots.frames import rate_str


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def shot_row(run_id: str, attempt: int, shot, edit_uri: str, status: str, *, error: str | None = None,
             prepared=None, deliverable=None, backend=None, passes: int | None = None, seed: int | None = None,
             conform_uri: str | None = None, store=None, started_at=None, finished_at=None,
             peak_rss_mb: float | None = None, content_key: str | None = None, mask=None,
             mask_uri: str | None = None) -> dict:
    """A shots.parquet row; `prepared`, `deliverable` and `backend` fill in what exists so far."""
    finished_at = finished_at or utcnow()
    row = {
        "run_id": run_id, "attempt": attempt, "shot_id": shot.shot_id, "clip_name": shot.clip_name,
        "track": shot.track, "edit_uri": edit_uri, "status": status, "error": error,
        "source_uri": shot.media.path if shot.media else None, "rate": rate_str(shot.rate),
        "source_in": shot.source_range.start, "source_out": shot.source_range.end_exclusive,
        "frames": shot.frames, "head_handle": shot.handles[0], "tail_handle": shot.handles[1],
        "source_tc_in": shot.source_range.timecode(),
        "source_tc_out": shot.source_range.timecode(shot.source_range.end_exclusive),
        "width": shot.media.width if shot.media else None, "height": shot.media.height if shot.media else None,
        "prompt": shot.instructions.prompt if shot.instructions else None,
        "passes": passes, "seed": seed, "started_at": started_at, "finished_at": finished_at,
        "seconds": (finished_at - started_at).total_seconds() if started_at else None,
        "peak_rss_mb": peak_rss_mb,
    }
    if prepared is not None:
        row.update(roi=prepared.roi.as_list(), chunks=len(prepared.chunks), mask_source=prepared.mask_source,
                   quadmask_uri=prepared.mask_path)
    if content_key is not None:
        row["content_key"] = content_key
    if mask is not None:  # a generated quadmask: how it was made, and whether reasoning degraded
        row.update(mask_source=mask.source, quadmask_uri=mask_uri, mask_reasoner=mask.reasoner,
                   mask_degraded_reason=mask.reason if mask.degraded else None,
                   reasoning_latency_s=mask.latency_s, reasoning_tokens_in=mask.tokens_in,
                   reasoning_tokens_out=mask.tokens_out)
    if backend is not None:
        row.update(backend=backend.name, backend_version=backend.version)
    if deliverable is not None:
        row.update(version=deliverable.version, output_uri=store.uri(deliverable.output_key) if store else
                   deliverable.output_key, output_format=deliverable.output_format,
                   output_first_frame=deliverable.first_frame, output_sha256=deliverable.sha256,
                   contact_sheet_uri=store.uri(deliverable.contact_sheet_key) if store else
                   deliverable.contact_sheet_key, qc_keep_max_diff=deliverable.keep_max_diff)
    if conform_uri is not None:
        row["conform_uri"] = conform_uri
    return row


def chunk_rows(run_id: str, attempt: int, shot_id: str, chunk_input, result, backend, store,
               status: str = "done", error: str | None = None, started_at=None, finished_at=None) -> list[dict]:
    """chunks.parquet rows of one chunk: one per pass (two-pass backends keep pass 1 as its own output)."""
    finished_at = finished_at or utcnow()
    c = chunk_input.chunk
    base = {"run_id": run_id, "shot_id": shot_id, "chunk_index": c.index, "attempt": attempt, "start": c.start,
            "end": c.end, "padded_to": c.padded_to, "status": status, "error": error,
            "plate_uri": store.uri(chunk_input.plate_key), "mask_uri": store.uri(chunk_input.mask_key),
            "started_at": started_at, "finished_at": finished_at}
    last = {**base, "pass_index": 2 if getattr(result, "pass1_output_key", None) else 1,
            "backend": backend.name, "backend_version": backend.version}
    if result is not None:
        last.update(seed=result.seed, content_key=result.content_key, cached=result.cached,
                    output_uri=store.uri(result.output_key), seconds=result.seconds, peak_rss_mb=result.peak_rss_mb)
    if last["pass_index"] == 1:
        return [last]
    first = {**base, "pass_index": 1, "backend": backend.pass1_name, "backend_version": backend.pass1_version,
             "seed": result.seed, "cached": result.cached, "output_uri": store.uri(result.pass1_output_key)}
    return [first, last]


def deliverable_from_row(row: dict, store):
    """The Deliverable a finished manifest row describes (to reuse an up-to-date version)."""
    from shots.conform import Deliverable

    return Deliverable(shot_id=row["shot_id"], version=row["version"], output_key=store.key_of(row["output_uri"]),
                       output_format=row["output_format"], first_frame=row["output_first_frame"],
                       frames=row["frames"], sha256=row["output_sha256"],
                       contact_sheet_key=store.key_of(row["contact_sheet_uri"]),
                       keep_max_diff=row["qc_keep_max_diff"])
