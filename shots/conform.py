"""Conform: stitched chunk results composited into the full-resolution plate, as a new version.

The plate is decoded again (the same PyAV path that fed the model), frame by frame; the clean
frame is the cross-faded mix of the chunks holding it, scaled back into the ROI and laid over the
source through the feathered mask. Padding never reaches a deliverable: only the shot's own
frames are written, from 1001. The version folder is built under a hidden name inside the output
folder and lands in one rename; then QC reads the written files back (`shots.qc`). The conformed
edit points every processed clip at its deliverable, source timecode kept.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import opentimelineio as otio

from shots import qc
from shots.composite import chunk_weights, composite
from shots.detail import DetailShare, RegionFill, region_mask
from shots.deliver import FORMATS, LOSSY, choose_format, contact_sheet, open_writer
from shots.extract import PreparedShot, plate_frames
from shots.ingest import iter_video_clips, read_edit
from shots.media import media_files, probe, read_frames_precise, read_video
from shots.plan import Chunk
from shots.shot import Shot
from storage import layout
from storage.keys import content_key, files_sha256
from storage.store import ArtifactStore

log = logging.getLogger(__name__)

FEATHER_MODEL_PX = 4  # feather width at model resolution, scaled to plate pixels
CONTACT_FRAMES = 4


@dataclass(frozen=True)
class Deliverable:
    """A published version and what QC measured on its files."""

    shot_id: str
    version: int
    output_key: str  # the version folder, or the .mov
    output_format: str
    first_frame: int
    frames: int
    sha256: str  # of the frame files in order (or of the .mov)
    contact_sheet_key: str
    lossy: bool  # a lossy codec: keep pixels close to the source, not equal
    qc: qc.QcReport
    provenance: str = "off"  # content credentials on its files: signed | unsigned (test identity) | off
    detail: str = "model"  # native: the region filled at plate resolution (shots.detail); model: scaled up
    share: DetailShare | None = None  # where the region's pixels came from (native detail)


def render_key(prepared: PreparedShot, chunk_output_keys: list[str], fmt: str, fill_version: str | None = None) -> str:
    """What decides a deliverable's pixels: the prepared shot (its inputs' content), the chunk results, the
    format, and with native detail the fill's version."""
    if fill_version is not None:
        return content_key("render", prepared.work_key, sorted(chunk_output_keys), fmt, fill_version)
    return content_key("render", prepared.work_key, sorted(chunk_output_keys), fmt)


def next_version(store: ArtifactStore, shot_id: str) -> int:
    versions = [v for k in store.list(layout.versions_folder(shot_id)) if (v := layout.version_of(k, shot_id))]
    return max(versions, default=0) + 1


def feather_px(prepared: PreparedShot) -> float:
    return max(1.0, FEATHER_MODEL_PX * prepared.roi.height / 384)


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
                 progress: Callable[[float], None] | None = None, qc_every: int = 1,
                 sign: Callable[[Path, list[Path]], str] | None = None,
                 native: RegionFill | None = None) -> Deliverable:
    """Composite the chunk outputs into the plate, QC what was written, sign it, publish `shots/{id}/v{NNN}/`.

    The plate is read at its own precision and the version written at it: the backends' 8-bit display
    output comes back through the colour pipeline's inverse into the removal region only. `fmt`
    "auto" follows the plate (`shots.deliver.choose_format`). `native` (native detail, `shots.detail`)
    gives the region's clean pixels at plate resolution, the backend's output mixed in where it
    chose; None: the backend's output scaled up. `sign(folder, files)` adds content credentials to the finished files
    before the version lands and returns the provenance state (`shots.provenance`); None: unsigned
    and unmarked ("off").
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown deliverable format {fmt!r}; choose one of {', '.join(FORMATS)}")
    info = probe(prepared.shot.media.path)
    fmt = choose_format(info) if fmt == "auto" else fmt
    shot, roi = prepared.shot, prepared.roi
    chunks = [c.chunk for c in prepared.chunks]
    missing = [c.index for c in chunks if c.index not in outputs]
    if missing:
        raise ValueError(f"shot {shot.shot_id}: no removal output for chunks {missing}")
    stitched = _StitchedChunks(chunks, outputs, store)
    feather = feather_px(prepared)
    colour = prepared.colour
    grow = region_mask if native is not None else (lambda m: m)
    n = shot.frames
    sample = set(np.linspace(0, n - 1, min(CONTACT_FRAMES, n)).round().astype(int).tolist())
    pairs = []
    version = next_version(store, shot.shot_id)
    with store.writing_dir(layout.version_folder(shot.shot_id, version)) as folder:
        plate_files = media_files(shot.media.path, shot.file_start, n) if info.exr is not None else None
        writer = open_writer(fmt, folder, shot.shot_id, version, shot.media.width, shot.media.height, shot.rate,
                             shot.source_timecode(), plate=info, plate_files=plate_files)
        try:
            for t, (src, mask) in enumerate(zip(plate_frames(shot, prepared.plate), prepared.mask_frames())):
                mask_roi = grow(mask[roi.slices()])
                if native is None:
                    out = composite(src, stitched.frame(t), mask_roi, roi, feather, colour.from_model)
                else:
                    clean = native.clean(t, stitched.frame(t), colour.from_model, mask_roi)
                    out = composite(src, clean, mask_roi, roi, feather, _in_plate_units)
                writer.write(out)
                if t in sample:  # people look at the contact sheet: display RGB through the same view
                    pairs.append((layout.FIRST_FRAME + t, colour.to_model(src), colour.to_model(out)))
                if progress is not None:
                    progress((t + 1) / n)
        finally:
            writer.close()
        contact = layout.contact_sheet(shot.shot_id, version)
        contact_sheet(pairs, folder / contact)
        report = _qc(prepared, folder / _delivered_name(shot.shot_id, version, fmt), qc_every, grow)
        ext = ".mov" if fmt == "prores" else f".{fmt}"
        files = sorted(f for f in folder.iterdir() if f.suffix == ext and f.name != contact)
        state = sign(folder, files) if sign is not None else "off"
        digest = files_sha256(files)  # after signing: credentials are part of the delivered bytes
    vkey = layout.version_folder(shot.shot_id, version)
    output_key = layout.deliverable(shot.shot_id, version, fmt)
    log.info("shot %s: published %s (%d frames); QC on %d delivered frames: keep-region max diff %g (%s)",
             shot.shot_id, store.uri(output_key), n, report.frames_checked, report.keep_max_diff, report.precision)
    share = native.share() if native is not None else None
    if share is not None:
        log.info("shot %s: region from propagated background %.0f%%, synthesized %.0f%%, generated %.0f%%",
                 shot.shot_id, 100 * share.propagated, 100 * share.synthesized, 100 * share.generated)
    return Deliverable(shot.shot_id, version, output_key, fmt, layout.FIRST_FRAME, n, digest,
                       f"{vkey}/{contact}", fmt in LOSSY, report, state, "native" if native else "model", share)


def _in_plate_units(clean: np.ndarray, dtype) -> np.ndarray:
    """Native-detail clean frames are already in the plate's units: the composite takes them as they are."""
    return clean


def _delivered_name(shot_id: str, version: int, fmt: str) -> str:
    return layout.movie_file(shot_id, version) if fmt == "prores" else layout.frame_pattern(shot_id, version, fmt)


def _qc(prepared: PreparedShot, delivered: Path, every: int, grow=lambda m: m) -> qc.QcReport:
    """Read the written files back and compare their keep region (outside the `grow`n mask) with the source."""
    shot = prepared.shot
    offsets = qc.frames_to_check(shot.frames, every)
    source = _frames_at(shot.media.path, shot.file_start, shot.frames, offsets, shot.media.kind == "movie")
    written = _frames_at(str(delivered), 0, shot.frames, offsets, delivered.suffix == ".mov")
    masks = (grow(m) for m in qc.pick(prepared.mask_frames(), offsets))
    return qc.check_delivery(zip(source, written, masks), prepared.roi, feather_px(prepared))


def _frames_at(path: str, start: int, count: int, offsets: list[int], movie: bool) -> Iterator[np.ndarray]:
    """Frames start+t for t in `offsets`, at the file's own precision. A movie is read as one stream
    (a seek per checked frame would decode from its keyframe each time); a sequence file by file."""
    if movie or offsets == list(range(count)):
        yield from qc.pick(read_frames_precise(path, start, offsets[-1] + 1), offsets)
    else:
        for t in offsets:
            yield next(iter(read_frames_precise(path, start + t, 1)))


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
        name = layout.version_name(shot_id, d.version)
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
    version = 1 + max((v for k in store.list("conform") if (v := layout.conform_version_of(k, stem))), default=0)
    key = layout.conform_file(stem, version)
    store.put_bytes(key, otio.adapters.write_to_string(timeline, "otio_json").encode(), mode="create")
    return key


def _url(uri: str) -> str:
    return uri if "://" in uri else otio.url_utils.url_from_filepath(uri)
