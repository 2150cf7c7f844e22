"""The manifest's schema: every column of every table, what it holds, and the statuses a shot can have.

One row per shot attempt (`shots`), per chunk and pass attempt (`chunks`), and per quadmask that
`voidbatch masks` made (`masks`). Rows are built from outcomes in `tasks/outcome.py`; files are
read and written by `storage/manifest.py`. Bump SCHEMA_VERSION when a column changes meaning;
added columns are read back as null from older files.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "2"
READABLE_VERSIONS = ("1", "2")  # older files are upgraded on read (new columns are null)
TS = pa.timestamp("us", tz="UTC")

# done | degraded (done, reasoning fell back) | up_to_date (reused, no new version) | skipped | failed |
# interrupted (the process was stopped); planned: recorded when the batch starts, replaced when it ends.
FINISHED = ("done", "degraded", "up_to_date")
TERMINAL = (*FINISHED, "skipped", "failed", "interrupted")
PLANNED = "planned"
NEEDS_RERUN = ("failed", "interrupted")

SHOTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("attempt", pa.int32()),  # 1 for a shot's first attempt in an output folder, +1 per rerun
        ("shot_id", pa.string()),
        ("clip_name", pa.string()),
        ("track", pa.string()),
        ("edit_uri", pa.string()),
        ("status", pa.string()),  # see TERMINAL and PLANNED
        ("error", pa.string()),  # why it failed, was skipped or interrupted
        ("source_uri", pa.string()),
        ("rate", pa.string()),  # exact, '24000/1001'
        ("source_in", pa.int64()),  # source frame numbers, handles included, out exclusive
        ("source_out", pa.int64()),
        ("frames", pa.int32()),
        ("head_handle", pa.int32()),
        ("tail_handle", pa.int32()),
        ("source_tc_in", pa.string()),
        ("source_tc_out", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("source_bits", pa.int32()),  # significant bits per sample of the plate (8, 10, 16; 16/32 half/float EXR)
        ("colour_space", pa.string()),  # the plate's input colour space, and what decided it (tags, rules, ...)
        ("field_order", pa.string()),  # progressive, or tt/bb/tb/bt for interlaced plates (flagged)
        ("roi", pa.list_(pa.int32())),  # x0, y0, x1, y1 in source pixels
        ("chunks", pa.int32()),
        ("mask_source", pa.string()),  # quadmask | matte | sam2 | classical ...
        ("quadmask_uri", pa.string()),
        ("mask_reasoner", pa.string()),  # gemini | heuristic | none (generated masks)
        ("mask_degraded_reason", pa.string()),  # why reasoning fell back to the offline heuristic
        ("reasoning_latency_s", pa.float64()),
        ("reasoning_tokens_in", pa.int64()),
        ("reasoning_tokens_out", pa.int64()),
        ("prompt", pa.string()),
        ("backend", pa.string()),
        ("backend_version", pa.string()),
        ("weights_sha256", pa.string()),
        ("passes", pa.int32()),
        ("seed", pa.int64()),
        ("content_key", pa.string()),
        ("version", pa.int32()),
        ("output_uri", pa.string()),
        ("output_format", pa.string()),
        ("output_first_frame", pa.int32()),
        ("output_sha256", pa.string()),
        ("deliverable_lossy", pa.bool_()),  # a lossy codec (ProRes): keep pixels are close, not exact
        ("contact_sheet_uri", pa.string()),
        ("provenance", pa.string()),  # C2PA content credentials: signed | unsigned (untrusted test identity) | off
        ("detail", pa.string()),  # native: the region filled at plate resolution; model: the backend's, scaled up
        ("fill_propagated", pa.float64()),  # share of the region from real background revealed in other frames
        ("fill_synthesized", pa.float64()),  # share never revealed, texture-synthesised at plate resolution
        ("fill_generated", pa.float64()),  # share from the backend's model-size output (VOID's generation)
        ("affected_region", pa.string()),  # how 127 was treated: re-simulated (VOID) | regenerated from background
        ("conform_uri", pa.string()),
        ("qc_keep_max_diff", pa.float64()),  # largest keep-region change in the DELIVERED files, source units
        ("qc_frames_checked", pa.int32()),
        ("qc_precision", pa.string()),  # what one unit of qc_keep_max_diff is: '8-bit code', ...
        ("started_at", TS),
        ("finished_at", TS),
        ("seconds", pa.float64()),
        ("peak_rss_mb", pa.float64()),
    ]
)

CHUNKS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("shot_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("pass_index", pa.int32()),
        ("attempt", pa.int32()),
        ("start", pa.int32()),  # offsets into the shot's frames, end exclusive
        ("end", pa.int32()),
        ("padded_to", pa.int32()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("backend", pa.string()),
        ("backend_version", pa.string()),
        ("seed", pa.int64()),
        ("content_key", pa.string()),
        ("cached", pa.bool_()),
        ("plate_uri", pa.string()),
        ("mask_uri", pa.string()),
        ("output_uri", pa.string()),
        ("output_sha256", pa.string()),
        ("started_at", TS),
        ("finished_at", TS),
        ("seconds", pa.float64()),
        ("peak_rss_mb", pa.float64()),
        ("model_load_s", pa.float64()),  # loading the backend for this pass; 0 when the worker already held it
        ("weights_swaps", pa.int32()),  # weight sets copied into the model for this pass (two-pass VOID)
        ("weights_swap_s", pa.float64()),
        ("worker", pa.string()),  # host:pid:device it ran on
    ]
)

MASKS_SCHEMA = pa.schema(  # `voidbatch masks`: each generated (or user) quadmask, for review before the GPU pass
    [
        ("run_id", pa.string()),
        ("shot_id", pa.string()),
        ("edit_uri", pa.string()),
        ("status", pa.string()),  # done | degraded | user quadmask | failed
        ("error", pa.string()),
        ("quadmask_uri", pa.string()),
        ("mask_source", pa.string()),
        ("mask_reasoner", pa.string()),
        ("mask_degraded_reason", pa.string()),
        ("reasoning_latency_s", pa.float64()),
        ("reasoning_tokens_in", pa.int64()),
        ("reasoning_tokens_out", pa.int64()),
        ("finished_at", TS),
    ]
)

SHOTS_KEY = ("run_id", "shot_id", "attempt")
CHUNKS_KEY = ("run_id", "shot_id", "chunk_index", "pass_index", "attempt")
MASKS_KEY = ("run_id", "shot_id")
