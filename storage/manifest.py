"""The Parquet manifest: one row per shot attempt and one per chunk attempt; the record that never lies.

Parquet files, `manifest/shots.parquet` and `manifest/chunks.parquet` (and `masks.parquet` for
`voidbatch masks`; their columns are `storage/schema.py`), hold every attempt merged by key (a row
with the same key replaces the older one: a shot's `planned` row becomes its final one). A record
reaches disk in two steps:

1. a line appended to the run's journal, `manifest/journal/{run_id}.jsonl` (small, flushed, written
   before any heavy output; when the disk is full, the space kept in `manifest/.reserve` is given up
   for it), so a failure is recorded even when nothing larger can be written;
2. the Parquet file merged and rewritten in one atomic write, the previous copy kept as
   `*.previous.parquet`.

Readers see Parquet plus any journal lines not merged yet, so a record written only to the
journal is never lost; a damaged Parquet file is reported by path and read from the previous
copy plus the journals. `compact` merges journals into Parquet and removes them. Writers sharing a
local output folder are serialised with a lock file; older schema versions are read and upgraded.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from storage import layout
from storage.schema import (CHUNKS_KEY, CHUNKS_SCHEMA, FINISHED, MASKS_KEY, MASKS_SCHEMA, NEEDS_RERUN,  # noqa: F401
                            PLANNED, READABLE_VERSIONS, SCHEMA_VERSION, SHOTS_KEY, SHOTS_SCHEMA, TERMINAL, TS)
from storage.store import ArtifactStore, StoreError

log = logging.getLogger(__name__)

_TABLES = {"shots": (layout.SHOTS_MANIFEST, SHOTS_SCHEMA, SHOTS_KEY),
           "chunks": (layout.CHUNKS_MANIFEST, CHUNKS_SCHEMA, CHUNKS_KEY),
           "masks": (layout.MASKS_MANIFEST, MASKS_SCHEMA, MASKS_KEY)}


class ManifestError(Exception):
    """A manifest file cannot be used; the message names it."""


class ManifestWriteError(ManifestError):
    """A record could not be merged into Parquet (it is safe in the journal); names the file and the disk."""


# -- encoding -----------------------------------------------------------------------------------------------
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


def decode(data: bytes, what: str = "manifest", schema: pa.Schema | None = None) -> list[dict]:
    """Parquet bytes -> rows; older schema versions come back with the new columns null."""
    try:
        # One file, read on this thread: Arrow's reader pools outlive a short command and abort it at
        # exit ("terminate called without an active exception"), so `voidbatch status` lied under load.
        table = pq.ParquetFile(io.BytesIO(data), pre_buffer=False).read(use_threads=False)
    except (pa.ArrowException, OSError) as e:
        raise ManifestError(f"{what} is damaged ({type(e).__name__}: {e})") from None
    meta = table.schema.metadata or {}
    version = meta.get(b"voidbatch_schema_version", b"?").decode()
    if version not in READABLE_VERSIONS:
        raise ManifestError(f"{what}: schema version {version}, this voidbatch reads {', '.join(READABLE_VERSIONS)}")
    rows = table.to_pylist()
    if schema is not None and version != SCHEMA_VERSION:
        rows = [{name: row.get(name) for name in schema.names} for row in rows]
    return rows


# -- the journal --------------------------------------------------------------------------------------------
def _journal_line(table: str, row: dict) -> bytes:
    plain = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    return (json.dumps({"table": table, "row": plain}, separators=(",", ":")) + "\n").encode()


def _journal_rows(store: ArtifactStore, key: str) -> Iterator[tuple[str, dict]]:
    """(table, row) of each whole line; a line cut short by a kill is skipped with a warning."""
    for n, line in enumerate(store.get_bytes(key).splitlines(), start=1):
        try:
            doc = json.loads(line)
            table, row = doc["table"], doc["row"]
            schema = _TABLES[table][1]
        except (ValueError, KeyError, TypeError):
            log.warning("manifest journal %s line %d is incomplete (the writer was stopped): skipped",
                        store.uri(key), n)
            continue
        for name, value in row.items():
            if isinstance(value, str) and name in schema.names and schema.field(name).type == TS:
                row[name] = datetime.fromisoformat(value)
        yield table, row


def _append_journal(store: ArtifactStore, run_id: str, lines: bytes) -> None:
    key = layout.journal_file(run_id)
    if store.is_local:
        path = Path(store.path(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
    else:  # object stores cannot append: the (small) file is rewritten whole
        old = store.get_bytes(key) if store.exists(key) else b""
        store.put_bytes(key, old + lines)


def reserve_space(store: ArtifactStore, size: int = 1 << 20) -> None:
    """Keep `size` bytes on the output disk for the records a full disk would otherwise swallow."""
    if store.is_local and not store.exists(layout.RESERVE):
        with contextlib.suppress(OSError):
            store.put_bytes(layout.RESERVE, b"\0" * size)


def _journal(store: ArtifactStore, run_id: str, lines: bytes) -> None:
    try:
        _append_journal(store, run_id, lines)
    except OSError as e:
        if e.errno != errno.ENOSPC or not store.exists(layout.RESERVE):
            raise
        store.remove(layout.RESERVE)  # the disk is full: give up the reserve for the record
        log.error("output disk full: released the manifest's reserve to record what happened")
        _append_journal(store, run_id, lines)


# -- writing ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(store: ArtifactStore, key: str) -> Iterator[None]:
    """Serialise read-merge-write cycles of processes sharing a local output folder."""
    if not store.is_local:
        yield
        return
    lock = Path(store.path(key)).with_name(f".{Path(key).name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _merge(store: ArtifactStore, table: str, rows: list[dict]) -> None:
    """Merge `rows` into the table's Parquet file by key; the previous good copy is kept beside it."""
    key, schema, row_key = _TABLES[table]
    with _locked(store, key):
        existing, damaged = _read_parquet(store, table)
        new_keys = {tuple(r.get(k) for k in row_key) for r in rows}
        merged = [r for r in existing if tuple(r.get(k) for k in row_key) not in new_keys] + rows
        data = encode(merged, schema)
        if store.exists(key) and not damaged:
            _rotate(store, key)
        store.put_bytes(key, data)


def _rotate(store: ArtifactStore, key: str) -> None:
    previous = layout.previous_generation(key)
    if store.is_local:
        os.replace(store.path(key), store.path(previous))
    else:
        store.put_bytes(previous, store.get_bytes(key))


def record(store: ArtifactStore, shots: Iterable[dict] = (), chunks: Iterable[dict] = (),
           masks: Iterable[dict] = ()) -> None:
    """Record rows: journal first (survives a full disk), then merged into Parquet.

    Raises ManifestWriteError (naming the file and the disk) when the Parquet merge fails: the
    rows are safe in their run's journal and reach Parquet at the next write or `compact`.
    """
    batches = [("shots", list(shots)), ("chunks", list(chunks)), ("masks", list(masks))]
    by_run: dict[str, list[bytes]] = {}
    for table, rows in batches:
        _check_columns(rows, _TABLES[table][1], _TABLES[table][0])
        for row in rows:
            by_run.setdefault(row["run_id"], []).append(_journal_line(table, row))
    for run_id, lines in by_run.items():
        _journal(store, run_id, b"".join(lines))
    for table, rows in batches:
        if rows:
            try:
                _merge(store, table, rows)
            except OSError as e:
                raise ManifestWriteError(
                    f"could not update {store.uri(_TABLES[table][0])} ({e.strerror or e}); the record is kept in "
                    f"{store.uri(layout.JOURNAL)} and merged at the next write") from e


def record_shots(store: ArtifactStore, rows: Iterable[dict]) -> None:
    record(store, shots=rows)


def record_chunks(store: ArtifactStore, rows: Iterable[dict]) -> None:
    record(store, chunks=rows)


def compact(store: ArtifactStore) -> int:
    """Merge every journal into Parquet and remove the journals; returns how many lines were merged."""
    journals = store.list(layout.JOURNAL)
    if not journals:
        return 0
    pending: dict[str, list[dict]] = {table: [] for table in _TABLES}
    for key in journals:
        for table, row in _journal_rows(store, key):
            pending[table].append(row)
    for table, rows in pending.items():
        if rows:
            _merge(store, table, _last_per_key(rows, _TABLES[table][2]))
    for key in journals:
        store.remove(key)
    return sum(len(r) for r in pending.values())


# -- reading ------------------------------------------------------------------------------------------------
def _read_parquet(store: ArtifactStore, table: str) -> tuple[list[dict], bool]:
    """(rows, damaged): the Parquet file, or its previous generation when it is damaged (said in the log)."""
    key, schema, _ = _TABLES[table]
    if not store.exists(key):
        return [], False
    try:
        return decode(store.get_bytes(key), store.uri(key), schema), False
    except ManifestError as e:
        if "schema version" in str(e):
            raise
        previous = layout.previous_generation(key)
        log.error("%s; recovering from %s and the journals", e, store.uri(previous))
        rows = decode(store.get_bytes(previous), store.uri(previous), schema) if store.exists(previous) else []
        return rows, True


def _last_per_key(rows: list[dict], row_key: tuple[str, ...]) -> list[dict]:
    out: dict[tuple, dict] = {}
    for row in rows:
        out[tuple(row.get(k) for k in row_key)] = row
    return list(out.values())


def _read(store: ArtifactStore, table: str) -> list[dict]:
    key, schema, row_key = _TABLES[table]
    rows, _ = _read_parquet(store, table)
    journal = [row for j in store.list(layout.JOURNAL) for t, row in _journal_rows(store, j) if t == table]
    if journal:
        rows = _last_per_key(rows + [{name: r.get(name) for name in schema.names} for r in journal], row_key)
    return rows


def read_shots(store: ArtifactStore) -> list[dict]:
    return _read(store, "shots")


def read_chunks(store: ArtifactStore) -> list[dict]:
    return _read(store, "chunks")


def read_masks(store: ArtifactStore) -> list[dict]:
    return _read(store, "masks")


def latest_by_shot(rows: list[dict]) -> dict[str, dict]:
    """Each shot's most recent attempt (by attempt number, then time)."""
    latest: dict[str, dict] = {}
    for row in rows:
        order = (row.get("attempt") or 0, row.get("finished_at") or row.get("started_at"))
        cur = latest.get(row["shot_id"])
        if cur is None or order >= (cur.get("attempt") or 0, cur.get("finished_at") or cur.get("started_at")):
            latest[row["shot_id"]] = row
    return latest


def with_interrupted(rows: list[dict], live_runs: Iterable[str] = ()) -> list[dict]:
    """Rows as a person should read them: a `planned` row of a run no process is running any more is
    `interrupted` (the batch was killed before the shot ended)."""
    live = set(live_runs)
    return [{**r, "status": "interrupted", "error": r.get("error") or "the batch stopped before this shot ended"}
            if r["status"] == PLANNED and r["run_id"] not in live else r for r in rows]


def close_planned(store: ArtifactStore) -> int:
    """Record every `planned` row as `interrupted` (call it holding the output folder's lock: no batch
    that planned them runs any more); returns how many."""
    now = datetime.now(timezone.utc)
    planned = [{**r, "finished_at": now} for r in with_interrupted(read_shots(store))
               if r["status"] == "interrupted" and r.get("finished_at") is None]
    if planned:
        record(store, shots=planned)
    return len(planned)


def latest_good(store: ArtifactStore, rows: list[dict] | None = None) -> dict[str, dict]:
    """Each shot's newest row with a delivered version that still exists: what a conformed edit points at."""
    good: dict[str, dict] = {}
    for row in sorted(rows if rows is not None else read_shots(store),
                      key=lambda r: (r.get("attempt") or 0, r.get("finished_at") or r.get("started_at"))):
        if row["status"] in FINISHED and row.get("output_uri") and _exists(store, row["output_uri"]):
            good[row["shot_id"]] = row
    return good


def find_current(store: ArtifactStore, shot_id: str, content_key: str, rows: list[dict] | None = None) -> dict | None:
    """The newest finished row of `shot_id` rendered from the same content, if its output still exists."""
    rows = [r for r in (rows if rows is not None else read_shots(store)) if r["shot_id"] == shot_id
            and r.get("content_key") == content_key and r["status"] in FINISHED and r.get("output_uri")]
    for row in sorted(rows, key=lambda r: (r.get("attempt") or 0), reverse=True):
        if _exists(store, row["output_uri"]):
            return row
    return None


def _exists(store: ArtifactStore, uri: str) -> bool:
    try:
        return store.exists(store.key_of(uri))
    except StoreError:
        return False


def next_attempts(rows: list[dict], shot_ids: Iterable[str]) -> dict[str, int]:
    """1 + the highest attempt recorded for each shot (1 for a shot never seen in this output)."""
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["shot_id"]] = max(seen.get(r["shot_id"], 0), r.get("attempt") or 0)
    return {s: seen.get(s, 0) + 1 for s in shot_ids}
