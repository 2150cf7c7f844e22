"""The Parquet manifest: one row per shot attempt and one per chunk attempt, merged across runs.

Files live at `manifest/shots.parquet` and `manifest/chunks.parquet` in the output store. Every
write reads what is there, merges the new rows in by key (a row with the same key is replaced,
everything else is kept), encodes in memory and lands with one atomic write, so a writer killed
midway leaves the previous manifest intact. The schema version is stored in the file metadata and
checked on read. Writers in one output folder are serialised with a lock file where the store is
local.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from storage.store import ArtifactStore, StoreError

SCHEMA_VERSION = "1"
_TS = pa.timestamp("us", tz="UTC")

SHOTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("attempt", pa.int32()),  # 1 for a shot's first attempt in an output folder, +1 per rerun
        ("shot_id", pa.string()),
        ("clip_name", pa.string()),
        ("track", pa.string()),
        ("edit_uri", pa.string()),
        ("status", pa.string()),  # done | failed | skipped | degraded | up_to_date (reused, no new version)
        ("error", pa.string()),
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
        ("passes", pa.int32()),
        ("seed", pa.int64()),
        ("content_key", pa.string()),
        ("version", pa.int32()),
        ("output_uri", pa.string()),
        ("output_format", pa.string()),
        ("output_first_frame", pa.int32()),
        ("output_sha256", pa.string()),
        ("contact_sheet_uri", pa.string()),
        ("conform_uri", pa.string()),
        ("qc_keep_max_diff", pa.int32()),
        ("started_at", _TS),
        ("finished_at", _TS),
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
        ("started_at", _TS),
        ("finished_at", _TS),
        ("seconds", pa.float64()),
        ("peak_rss_mb", pa.float64()),
    ]
)

SHOTS_KEY = ("run_id", "shot_id", "attempt")
CHUNKS_KEY = ("run_id", "shot_id", "chunk_index", "pass_index", "attempt")
SHOTS_FILE = "manifest/shots.parquet"
CHUNKS_FILE = "manifest/chunks.parquet"


class ManifestError(Exception):
    pass


def _check_columns(rows: list[dict], schema: pa.Schema, what: str) -> None:
    names = set(schema.names)
    for row in rows:
        unknown = set(row) - names
        if unknown:
            raise ManifestError(f"{what} row has unknown columns {sorted(unknown)}")


def encode(rows: list[dict], schema: pa.Schema) -> bytes:
    """Rows -> Parquet bytes (in memory, so a failed encode writes nothing)."""
    table = pa.Table.from_pylist(rows, schema=schema)
    table = table.replace_schema_metadata({"voidbatch_schema_version": SCHEMA_VERSION})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def decode(data: bytes, what: str = "manifest") -> list[dict]:
    table = pq.read_table(io.BytesIO(data))
    meta = table.schema.metadata or {}
    version = meta.get(b"voidbatch_schema_version", b"?").decode()
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{what}: schema version {version}, this voidbatch reads {SCHEMA_VERSION}")
    return table.to_pylist()


def read_rows(store: ArtifactStore, key: str) -> list[dict]:
    """All rows of one manifest file, [] when there is none yet."""
    if not store.exists(key):
        return []
    return decode(store.get_bytes(key), store.uri(key))


@contextlib.contextmanager
def _locked(store: ArtifactStore, key: str) -> Iterator[None]:
    """Serialise read-merge-write cycles of processes sharing a local output folder."""
    if not store.is_local:
        yield
        return
    lock = Path(store.path(key)).with_name(f".{Path(key).name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def merge_rows(store: ArtifactStore, key: str, rows: Iterable[dict], schema: pa.Schema,
               row_key: tuple[str, ...]) -> list[dict]:
    """Merge `rows` into the file at `key` by `row_key` (new rows replace equal keys); returns all rows."""
    rows = list(rows)
    _check_columns(rows, schema, key)
    with _locked(store, key):
        existing = read_rows(store, key)
        new_keys = {tuple(r.get(k) for k in row_key) for r in rows}
        merged = [r for r in existing if tuple(r.get(k) for k in row_key) not in new_keys] + rows
        store.put_bytes(key, encode(merged, schema))
    return merged


def record_shots(store: ArtifactStore, rows: Iterable[dict]) -> list[dict]:
    return merge_rows(store, SHOTS_FILE, rows, SHOTS_SCHEMA, SHOTS_KEY)


def record_chunks(store: ArtifactStore, rows: Iterable[dict]) -> list[dict]:
    return merge_rows(store, CHUNKS_FILE, rows, CHUNKS_SCHEMA, CHUNKS_KEY)


def read_shots(store: ArtifactStore) -> list[dict]:
    return read_rows(store, SHOTS_FILE)


def read_chunks(store: ArtifactStore) -> list[dict]:
    return read_rows(store, CHUNKS_FILE)


def latest_by_shot(rows: list[dict]) -> dict[str, dict]:
    """Each shot's most recent attempt (by finished_at, then attempt)."""
    latest: dict[str, dict] = {}
    for row in rows:
        cur = latest.get(row["shot_id"])
        order = (row.get("finished_at") or row.get("started_at"), row.get("attempt") or 0)
        if cur is None or order >= (cur.get("finished_at") or cur.get("started_at"), cur.get("attempt") or 0):
            latest[row["shot_id"]] = row
    return latest


def find_current(store: ArtifactStore, shot_id: str, content_key: str) -> dict | None:
    """The newest finished row of `shot_id` rendered from the same content, if its output still exists."""
    rows = [r for r in read_shots(store) if r["shot_id"] == shot_id and r.get("content_key") == content_key
            and r["status"] in ("done", "up_to_date") and r.get("output_uri")]
    for row in sorted(rows, key=lambda r: (r.get("finished_at") is not None, r.get("finished_at")), reverse=True):
        try:
            if store.exists(store.key_of(row["output_uri"])):
                return row
        except StoreError:
            continue
    return None


def next_attempts(store: ArtifactStore, shot_ids: Iterable[str]) -> dict[str, int]:
    """1 + the highest attempt recorded for each shot (1 for a shot never seen in this output)."""
    seen: dict[str, int] = {}
    for r in read_shots(store):
        seen[r["shot_id"]] = max(seen.get(r["shot_id"], 0), r.get("attempt") or 0)
    return {s: seen.get(s, 0) + 1 for s in shot_ids}


__all__ = [
    "SHOTS_SCHEMA", "CHUNKS_SCHEMA", "SCHEMA_VERSION", "ManifestError", "StoreError", "encode", "decode",
    "record_shots", "record_chunks", "read_shots", "read_chunks", "latest_by_shot", "merge_rows", "find_current",
    "next_attempts",
]
