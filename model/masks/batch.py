"""A shot's generated quadmask on the artifact store: built once per content, reused by every run.

`voidbatch masks` builds them for review; the removal batch finds the same mask under the same
content key (the bytes of the plate and matte frames it reads, the shot range, the instructions,
segmenter and reasoner) and reuses it, so the artist reviews exactly what the GPU pass will use.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace

from model import registry
from model.masks.pipeline import AUTO, MaskResult, build_quadmask
from model.masks.segment import ClassicalSegmenter, default_segmenter
from shots.media import media_files
from storage import layout
from storage.keys import content_key, files_sha256
from storage.store import ArtifactStore

NONE = "none"
SEGMENTER_NAMES = (AUTO, *registry.SEGMENTERS.names())
REASONER_NAMES = (AUTO, *registry.REASONERS.names(), NONE)


def needs_generated_mask(shot) -> bool:
    """Flagged, no quadmask of the user's, and a matte or clicks/boxes to build one from."""
    ins = shot.instructions
    return bool(shot.flagged and not ins.quadmask and (ins.matte or ins.points or ins.boxes))


def make_segmenter(name: str, sam2_dir: str | None):
    """The segmenter called `name`; "auto" is SAM2 when `sam2_dir` holds a config and checkpoint, else classical."""
    if name == AUTO:
        return default_segmenter(sam2_dir)
    if name != "sam2":
        return registry.SEGMENTERS.build(name)
    if not sam2_dir:
        raise ValueError("--segmenter sam2 needs --sam2-dir: a folder with the SAM2 config (.yaml) and "
                         "checkpoint (.pt)")
    return registry.SEGMENTERS.build(name, model_dir=sam2_dir)


def make_reasoner(name: str):
    """The reasoner called `name`, None for "none", or AUTO for build_quadmask to resolve.

    An unconfigured or failing Gemini is kept: build_quadmask falls back to the heuristic, degraded.
    """
    if name == NONE:
        return None
    if name == AUTO:
        return AUTO
    return registry.REASONERS.build(name)


def mask_key(shot, segmenter: str, reasoner: str) -> str:
    """What decides a shot's quadmask, by content: the bytes of the plate frames and matte frames it reads
    (a file re-delivered in place gets a new key), the ranges, the clicks and the parts that build it."""
    ins = shot.instructions
    matte_start = ins.mask_start_frame or 0
    return content_key("quadmask", {
        "plate": files_sha256(media_files(shot.media.path, shot.file_start, shot.frames)),
        "range": [shot.file_start, shot.frames],
        "matte": _matte_sha256(ins.matte, shot.file_start - matte_start, shot.frames), "matte_start": matte_start,
        "points": {str(k): v for k, v in ins.points.items()},
        "negative": {str(k): v for k, v in ins.negative_points.items()},
        "boxes": {str(k): v for k, v in ins.boxes.items()}, "instruction": ins.instruction,
        "segmenter": segmenter, "reasoner": reasoner})


def _matte_sha256(matte: str | None, offset: int, frames: int) -> str | None:
    """The matte frames build_quadmask reads: matte file frames [offset, offset + frames)."""
    if not matte:
        return None
    if offset < 0:
        raise ValueError(f"matte {matte} starts after the shot's first frame ({-offset} frames late)")
    return files_sha256(media_files(matte, offset, frames))


def shot_quadmask(shot, store: ArtifactStore, segmenter: str = "auto", reasoner: str = "auto",
                  sam2_dir: str | None = None, progress=None) -> tuple[str, MaskResult, bool]:
    """(quadmask key, result, reused): build the shot's quadmask under `shots/{id}/masks/{key}/` or reuse it."""
    folder = layout.mask_folder(shot.shot_id, mask_key(shot, segmenter, reasoner))
    mask, record = layout.mask_file(folder, shot.shot_id), layout.mask_record(folder)
    if store.exists(record) and store.exists(mask):
        return mask, MaskResult(**json.loads(store.get_bytes(record))), True
    with store.writing(mask) as tmp_mask, store.writing(layout.mask_preview(folder, shot.shot_id)) as tmp_prev, \
            store.writing(layout.mask_contact(folder, shot.shot_id)) as tmp_sheet:
        result = build_quadmask(shot.media.path, shot.file_start, shot.frames, shot.rate, shot.instructions,
                                tmp_mask, segmenter=make_segmenter(segmenter, sam2_dir),
                                fallback_segmenter=ClassicalSegmenter(), reasoner=make_reasoner(reasoner),
                                store=store, preview_path=tmp_prev, contact_sheet_path=tmp_sheet, progress=progress)
    result = replace(result, path=store.uri(mask))
    store.put_bytes(record, json.dumps(asdict(result), indent=1, default=str).encode())
    return mask, result, False
