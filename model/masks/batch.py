"""A shot's generated quadmask on the artifact store: built once per content, reused by every run.

`voidbatch masks` builds them for review; the removal batch finds the same mask under the same
key (media, shot range, instructions, segmenter and reasoner) and reuses it, so the artist
reviews exactly what the GPU pass will use.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, replace

from model.masks.pipeline import AUTO, MaskResult, build_quadmask
from model.masks.reason import GeminiReasoner, HeuristicReasoner
from model.masks.segment import ClassicalSegmenter, SAM2Segmenter, default_segmenter
from storage.store import ArtifactStore

SEGMENTERS = ("auto", "sam2", "classical")
REASONERS = ("auto", "gemini", "heuristic", "none")


def needs_generated_mask(shot) -> bool:
    """Flagged, no quadmask of the user's, and a matte or clicks/boxes to build one from."""
    ins = shot.instructions
    return bool(shot.flagged and not ins.quadmask and (ins.matte or ins.points or ins.boxes))


def make_segmenter(name: str, sam2_dir: str | None):
    if name == "classical":
        return ClassicalSegmenter()
    if name == "sam2":
        if not sam2_dir:
            raise ValueError("--segmenter sam2 needs --sam2-dir: a folder with the SAM2 config (.yaml) and "
                             "checkpoint (.pt)")
        return SAM2Segmenter.from_dir(sam2_dir)
    if name == "auto":
        return default_segmenter(sam2_dir)
    raise ValueError(f"unknown segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}")


def make_reasoner(name: str):
    if name == "gemini":
        return GeminiReasoner()  # unconfigured or failing: build_quadmask falls back to the heuristic, degraded
    if name == "heuristic":
        return HeuristicReasoner()
    if name == "none":
        return None
    if name == "auto":
        return AUTO
    raise ValueError(f"unknown reasoner {name!r}; choose one of {', '.join(REASONERS)}")


def _stamp(path: str | None) -> str:
    if not path:
        return ""
    p = path if os.path.exists(path) else os.path.dirname(path)
    st = os.stat(p)
    return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"


def mask_key(shot, segmenter: str, reasoner: str) -> str:
    ins = shot.instructions
    ident = json.dumps({"media": _stamp(shot.media.path), "range": [shot.file_start, shot.frames],
                        "matte": _stamp(ins.matte), "points": {str(k): v for k, v in ins.points.items()},
                        "negative": {str(k): v for k, v in ins.negative_points.items()},
                        "boxes": {str(k): v for k, v in ins.boxes.items()}, "instruction": ins.instruction,
                        "segmenter": segmenter, "reasoner": reasoner}, sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def shot_quadmask(shot, store: ArtifactStore, segmenter: str = "auto", reasoner: str = "auto",
                  sam2_dir: str | None = None, progress=None) -> tuple[str, MaskResult, bool]:
    """(quadmask key, result, reused): build the shot's quadmask under `shots/{id}/masks/{key}/` or reuse it."""
    base = f"shots/{shot.shot_id}/masks/{mask_key(shot, segmenter, reasoner)}"
    mask, record = f"{base}/{shot.shot_id}_quadmask.mkv", f"{base}/result.json"
    if store.exists(record) and store.exists(mask):
        return mask, MaskResult(**json.loads(store.get_bytes(record))), True
    with store.writing(mask) as tmp_mask, store.writing(f"{base}/{shot.shot_id}_mask_preview.mp4") as tmp_prev, \
            store.writing(f"{base}/{shot.shot_id}_mask_contact.png") as tmp_sheet:
        result = build_quadmask(shot.media.path, shot.file_start, shot.frames, shot.rate, shot.instructions,
                                tmp_mask, segmenter=make_segmenter(segmenter, sam2_dir),
                                fallback_segmenter=ClassicalSegmenter(), reasoner=make_reasoner(reasoner),
                                store=store, preview_path=tmp_prev, contact_sheet_path=tmp_sheet, progress=progress)
    result = replace(result, path=store.uri(mask))
    store.put_bytes(record, json.dumps(asdict(result), indent=1, default=str).encode())
    return mask, result, False
