"""Conform: stitched chunk results composited into the full-resolution plate, as a new version.

The plate is decoded again (the same PyAV path that fed the model), frame by frame; the clean
frame is the cross-faded mix of the chunks holding it, scaled back into the ROI and laid over the
source through the feathered mask. Padding never reaches a deliverable: only the shot's own
frames are written, from 1001. The version folder is staged locally and published in one step.
The conformed edit points every processed clip at its deliverable, source timecode kept.
"""
from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import opentimelineio as otio

from shots.composite import alpha_in_box, chunk_weights, composite
from shots.deliver import FIRST_FRAME, FORMATS, contact_sheet, open_writer, version_name
from shots.extract import PreparedShot
from shots.ingest import iter_video_clips, read_edit
from shots.media import read_frames, read_video
from shots.plan import Chunk
from shots.shot import Shot
from storage.store import ArtifactStore, StoreError, sha256_file

log = logging.getLogger(__name__)

FEATHER_MODEL_PX = 4  # feather width at model resolution, scaled to plate pixels
CONTACT_FRAMES = 4


@dataclass(frozen=True)
class Deliverable:
    shot_id: str
    version: int
    output_key: str  # the version folder, or the .mov
    output_format: str
    first_frame: int
    frames: int
    sha256: str  # of the frame files in order (or of the .mov)
    contact_sheet_key: str
    keep_max_diff: int  # largest change outside the feathered region: 0 by construction, checked


def _keep_region_change(src: np.ndarray, out: np.ndarray, mask: np.ndarray, roi, feather: float) -> int:
    """QC: the largest change to a pixel outside the feathered region (0 unless compositing is broken)."""
    diff = cv2.absdiff(out, src)
    found = alpha_in_box(mask[roi.slices()], feather)
    if found is not None:
        box, alpha = found
        diff[roi.y0 + box.y0:roi.y0 + box.y1, roi.x0 + box.x0:roi.x0 + box.x1][alpha > 0] = 0
    return int(diff.max())


def render_key(prepared: PreparedShot, chunk_output_keys: list[str], fmt: str) -> str:
    """What decides a deliverable's pixels: the prepared shot, the chunk results, the format."""
    ident = "|".join([prepared.work_key, *sorted(chunk_output_keys), fmt])
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def next_version(store: ArtifactStore, shot_id: str) -> int:
    versions = [int(m.group(1)) for k in store.list(f"shots/{shot_id}")
                if (m := re.match(rf"shots/{re.escape(shot_id)}/v(\d{{3,}})/", k))]
    return max(versions, default=0) + 1


class _StitchedChunks:
    """Clean frames at model size for shot frames in order, holding at most the chunks in use."""

    def __init__(self, chunks: list[Chunk], outputs: dict[int, str], store: ArtifactStore):
        self.chunks, self.outputs, self.store = chunks, outputs, store
        self._loaded: dict[int, np.ndarray] = {}

    def frame(self, t: int) -> np.ndarray:
        weights = chunk_weights(self.chunks, t)
        for i in list(self._loaded):
            if self.chunks[i].end <= t:
                del self._loaded[i]
        acc = None
        for i, w in weights:
            if i not in self._loaded:
                self._loaded[i] = np.stack(list(read_video(self.store.local_path(self.outputs[i]))))
            f = self._loaded[i][t - self.chunks[i].start].astype(np.float32)
            acc = f * w if acc is None else acc + f * w
        return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def conform_shot(prepared: PreparedShot, outputs: dict[int, str], store: ArtifactStore, fmt: str = "png",
                 progress: Callable[[float], None] | None = None) -> Deliverable:
    """Composite the chunk outputs into the plate and publish `shots/{id}/v{NNN}/`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown deliverable format {fmt!r}; choose one of {', '.join(FORMATS)}")
    shot, roi = prepared.shot, prepared.roi
    chunks = [c.chunk for c in prepared.chunks]
    missing = [c.index for c in chunks if c.index not in outputs]
    if missing:
        raise ValueError(f"shot {shot.shot_id}: no removal output for chunks {missing}")
    stitched = _StitchedChunks(chunks, outputs, store)
    feather = max(1.0, FEATHER_MODEL_PX * roi.height / 384)
    n = shot.frames
    sample = set(np.linspace(0, n - 1, min(CONTACT_FRAMES, n)).round().astype(int).tolist())
    pairs = []
    keep_max = 0
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix=f"voidbatch-{shot.shot_id}-") as stage:
        version = next_version(store, shot.shot_id)
        name = version_name(shot.shot_id, version)
        folder = Path(stage) / f"v{version:03d}"
        writer = open_writer(fmt, folder, name, shot.media.width, shot.media.height, shot.rate,
                             shot.source_range.timecode())
        plates = read_frames(shot.media.path, shot.file_start, n)
        try:
            for t, (src, mask) in enumerate(zip(plates, prepared.mask_frames())):
                out = composite(src, stitched.frame(t), mask[roi.slices()], roi, feather)
                keep_max = max(keep_max, _keep_region_change(src, out, mask, roi, feather))
                writer.write(out)
                if t in sample:
                    pairs.append((FIRST_FRAME + t, src, out))
                if progress is not None:
                    progress((t + 1) / n)
        finally:
            writer.close()
        contact_name = f"{name}_contact.png"
        contact_sheet(pairs, folder / contact_name)
        for f in sorted(folder.iterdir()):
            if f.name != contact_name:
                digest.update(sha256_file(f).encode())
        while True:  # another process may publish the same version first: take the next one
            try:
                store.publish_dir(f"shots/{shot.shot_id}/v{version:03d}", folder)
                break
            except StoreError:
                old_name = name
                version = next_version(store, shot.shot_id)
                name = version_name(shot.shot_id, version)
                renamed = folder.with_name(f"v{version:03d}")
                folder.rename(renamed)
                folder = renamed
                for f in folder.iterdir():
                    f.rename(f.with_name(f.name.replace(old_name, name)))
                contact_name = f"{name}_contact.png"
    vkey = f"shots/{shot.shot_id}/v{version:03d}"
    output_key = f"{vkey}/{name}.mov" if fmt == "prores" else vkey
    log.info("shot %s: published %s (%d frames, keep-region max diff %d)", shot.shot_id, store.uri(output_key),
             n, keep_max)
    return Deliverable(shot.shot_id, version, output_key, fmt, FIRST_FRAME, n, digest.hexdigest(),
                       f"{vkey}/{contact_name}", keep_max)


def conform_edit(edit_path: str, rate, deliverables: dict[str, tuple[Shot, Deliverable]],
                 store: ArtifactStore) -> str:
    """The input edit with each processed clip pointing at its deliverable; returns the .otio key.

    Variant C of the reference note: clip source ranges stay in plate timecode; the new reference
    maps that timecode to deliverable frames (available_range starts at the first extracted frame,
    start_frame 1001). The plate stays on the clip as DEFAULT_MEDIA for A/B review.
    """
    timeline = read_edit(edit_path, rate)
    for _track, _i, clip, shot_id in iter_video_clips(timeline):
        if shot_id not in deliverables:
            continue
        shot, d = deliverables[shot_id]
        r = float(shot.rate)
        available = otio.opentime.TimeRange(otio.opentime.RationalTime(shot.source_range.start, r),
                                            otio.opentime.RationalTime(d.frames, r))
        folder = store.uri(d.output_key if d.output_format != "prores" else d.output_key.rsplit("/", 1)[0])
        name = version_name(shot_id, d.version)
        if d.output_format == "prores":
            new = otio.schema.ExternalReference(target_url=_url(store.uri(d.output_key)), available_range=available)
        else:
            new = otio.schema.ImageSequenceReference(
                target_url_base=_url(folder).rstrip("/") + "/", name_prefix=f"{name}.", name_suffix=f".{d.output_format}",
                start_frame=d.first_frame, frame_step=1, rate=r, frame_zero_padding=4, available_range=available)
        new.name = name
        new.metadata["voidbatch"] = {"version": d.version, "sha256": d.sha256}
        refs = {"DEFAULT_MEDIA": (clip.media_reference.clone() if clip.media_reference is not None
                                  else otio.schema.MissingReference()), f"voidbatch_v{d.version:03d}": new}
        clip.set_media_references(refs, f"voidbatch_v{d.version:03d}")  # fresh objects only: see OTIO note A.4
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(edit_path).stem) or "edit"
    version = 1 + max((int(m.group(1)) for k in store.list("conform")
                       if (m := re.match(rf"conform/{re.escape(stem)}_void_v(\d{{3,}})\.otio$", k))), default=0)
    key = f"conform/{stem}_void_v{version:03d}.otio"
    store.put_bytes(key, otio.adapters.write_to_string(timeline, "otio_json").encode(), mode="create")
    return key


def _url(uri: str) -> str:
    return uri if "://" in uri else otio.url_utils.url_from_filepath(uri)
