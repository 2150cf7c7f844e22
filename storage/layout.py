"""Where everything lives under an output folder: the one module that names store keys.

Keys, relative to the output folder:

    shots/{shot}/v001/{shot}_void_v001.1001.png ...     a delivered version (never overwritten)
    shots/{shot}/v001/{shot}_void_v001.mov               ... or one ProRes movie
    shots/{shot}/v001/{shot}_void_v001_contact.png       before/after stills
    shots/{shot}/masks/{key}/{shot}_quadmask.mkv         a generated quadmask, preview, contact, record
    work/{shot}/{key}/c000.plate.mkv, c000.quadmask.mkv  model-size chunks of one preparation
    work/{shot}/{key}/c000.{backend}-{key}.mkv           a chunk's removal result (content-keyed)
    conform/{edit}_void_v001.otio                        the conformed edit
    manifest/shots.parquet, chunks.parquet               the manifest (+ journal/, previous generation)
    runs/{run_id}.json                                   what a batch was asked to do, and its shots
    runs/results/                                        shot outcomes Prefect persisted (deployment runs)
    review/index.html, review/media/                     the morning review page and its proxies
    .voidbatch.lock                                      held by the process writing this folder

Names are built here and parsed here (`version_of`), so a deliverable's name is spelled once.
"""
from __future__ import annotations

import re

from storage.keys import short

FIRST_FRAME = 1001  # deliverable frame numbering (studio convention)

SHOTS_MANIFEST = "manifest/shots.parquet"
CHUNKS_MANIFEST = "manifest/chunks.parquet"
MASKS_MANIFEST = "manifest/masks.parquet"
JOURNAL = "manifest/journal"  # append-only JSON lines, one file per run: rows not yet merged
RESERVE = "manifest/.reserve"  # space kept free for the records written when the disk fills
LOCK = ".voidbatch.lock"
RESULTS = "runs/results"
REVIEW_PAGE = "review/index.html"  # Prefect's persisted results of shot runs (outcomes), readable from any machine


# -- work: intermediates, reused across runs by content ---------------------------------------------------
def work_folder(shot_id: str, key: str) -> str:
    return f"work/{shot_id}/{short(key)}"


def prepared_record(work: str) -> str:
    return f"{work}/prepared.json"


def chunk_plate(work: str, index: int) -> str:
    return f"{work}/c{index:03d}.plate.mkv"


def chunk_mask(work: str, index: int) -> str:
    return f"{work}/c{index:03d}.quadmask.mkv"


def chunk_result(work: str, index: int, backend: str, key: str) -> str:
    return f"{work}/c{index:03d}.{backend}-{short(key)}.mkv"


# -- generated masks --------------------------------------------------------------------------------------
def mask_folder(shot_id: str, key: str) -> str:
    return f"shots/{shot_id}/masks/{short(key)}"


def mask_file(folder: str, shot_id: str) -> str:
    return f"{folder}/{shot_id}_quadmask.mkv"


def mask_preview(folder: str, shot_id: str) -> str:
    return f"{folder}/{shot_id}_mask_preview.mp4"


def mask_contact(folder: str, shot_id: str) -> str:
    return f"{folder}/{shot_id}_mask_contact.png"


def mask_record(folder: str) -> str:
    return f"{folder}/result.json"


# -- delivered versions ----------------------------------------------------------------------------------
def versions_folder(shot_id: str) -> str:
    return f"shots/{shot_id}"


def version_folder(shot_id: str, version: int) -> str:
    return f"shots/{shot_id}/v{version:03d}"


def version_name(shot_id: str, version: int) -> str:
    """`{shot}_void_v{NNN}`: the stem of every file of a delivered version."""
    return f"{shot_id}_void_v{version:03d}"


def frame_file(shot_id: str, version: int, frame: int, ext: str) -> str:
    return f"{version_name(shot_id, version)}.{frame:04d}.{ext}"


def frame_pattern(shot_id: str, version: int, ext: str) -> str:
    """'name.####.ext', the pattern frame readers and OTIO image sequences take."""
    return f"{version_name(shot_id, version)}.####.{ext}"


def movie_file(shot_id: str, version: int) -> str:
    return f"{version_name(shot_id, version)}.mov"


def contact_sheet(shot_id: str, version: int) -> str:
    return f"{version_name(shot_id, version)}_contact.png"


def deliverable(shot_id: str, version: int, fmt: str) -> str:
    """The key a manifest row's output_uri names: the version folder, or the .mov inside it."""
    folder = version_folder(shot_id, version)
    return f"{folder}/{movie_file(shot_id, version)}" if fmt == "prores" else folder


def version_of(key: str, shot_id: str) -> int | None:
    """The version number a key under `shots/{shot}/vNNN/...` belongs to, else None."""
    m = re.match(rf"shots/{re.escape(shot_id)}/v(\d{{3,}})(/|$)", key)
    return int(m.group(1)) if m else None


# -- the review page ------------------------------------------------------------------------------------------
def review_plate(shot_id: str, version: int) -> str:
    return f"review/media/{version_name(shot_id, version)}_plate.mp4"


def review_clean(shot_id: str, version: int) -> str:
    return f"review/media/{version_name(shot_id, version)}_clean.mp4"


def review_mask(shot_id: str, version: int) -> str:
    return f"review/media/{version_name(shot_id, version)}_mask.jpg"


# -- the edit, the record ----------------------------------------------------------------------------------
def conform_file(edit_stem: str, version: int) -> str:
    return f"conform/{edit_stem}_void_v{version:03d}.otio"


def conform_version_of(key: str, edit_stem: str) -> int | None:
    m = re.match(rf"conform/{re.escape(edit_stem)}_void_v(\d{{3,}})\.otio$", key)
    return int(m.group(1)) if m else None


def run_record(run_id: str) -> str:
    return f"runs/{run_id}.json"


def journal_file(run_id: str) -> str:
    return f"{JOURNAL}/{run_id}.jsonl"


def previous_generation(manifest_key: str) -> str:
    """The last good copy kept beside a manifest file, for recovery from a damaged one."""
    return manifest_key.replace(".parquet", ".previous.parquet")
