"""Prepare a shot for removal: validate its mask, choose the ROI, cut model-size chunks to the store.

The plate is decoded once, streaming: each frame is cropped to the ROI, scaled to 384x672 and
appended to the chunks that hold it; a chunk is encoded (lossless FFV1) as soon as its last frame
arrives, so memory holds at most two chunks at model size whatever the shot's length and
resolution. Chunks are content-addressed (hash of their pixels), and a finished preparation is
recorded in `prepared.json`, written last, so a rerun reuses it. The preparation's key hashes the
bytes of every plate and mask file it reads (never paths or mtimes), so a plate re-delivered in
place is prepared again.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np

from shots import quadmask as qm
from shots.colour import ColourPipeline, InputSpace, input_space
from shots.composite import KEEP, area_resize, crop_resize
from shots.media import MediaError, media_files, probe, read_frames, read_frames_precise, write_video_lossless
from shots.plan import Chunk, plan_chunks
from shots.roi import MODEL_SIZE, Box, choose_roi, region_bbox
from shots.shot import Shot
from storage import layout
from storage.keys import PixelDigest, content_key, files_sha256
from storage.store import ArtifactStore

log = logging.getLogger(__name__)

MAX_REMOVE_FRACTION = 0.6  # a mask removing more of any frame than this is most likely inverted


class ShotError(Exception):
    """This shot cannot be processed; the message names the shot and the file."""

    def __init__(self, shot_id: str, message: str):
        super().__init__(f"shot {shot_id}: {message}")
        self.shot_id, self.message = shot_id, message

    def __reduce__(self):  # picklable across processes (Prefect states, isolated children)
        return type(self), (self.shot_id, self.message)


class NothingToRemove(ShotError):
    """The mask keeps every pixel: the shot is skipped, not failed."""


@dataclass(frozen=True)
class ChunkInput:
    chunk: Chunk
    plate_key: str
    mask_key: str
    content_sha256: str  # of the chunk's plate and mask pixels


@dataclass(frozen=True)
class Inputs:
    """What a preparation reads, by content: the sha256 of the plate frames and of the mask frames."""

    plate_sha256: str
    mask_sha256: str


@dataclass(frozen=True)
class Plate:
    """What the batch learnt of the plate when it prepared the shot: precision, colour, scan."""

    sample: str  # uint8 | uint16 | float32: what the composite and the deliverable work at
    bits: int
    colour: InputSpace  # the input colour space, and what decided it
    field_order: str = "progressive"

    def to_dict(self) -> dict:
        return {**asdict(self), "colour": asdict(self.colour)}

    @classmethod
    def from_dict(cls, d: dict) -> Plate:
        return cls(d["sample"], d["bits"], InputSpace(**d["colour"]), d.get("field_order", "progressive"))


@dataclass(frozen=True)
class PreparedShot:
    shot: Shot
    roi: Box
    mask_source: str
    mask_path: str  # source-resolution mask used again at conform
    mask_offset: int  # mask file index of the shot's first frame
    work_key: str  # store folder of this shot's intermediates
    chunks: tuple[ChunkInput, ...]
    inputs: Inputs
    region: Box  # where anything is removed or affected, in plate pixels, over the whole shot
    region_frames: tuple[int, int]  # first and last shot frame (0-based) with anything removed or affected
    plate: Plate

    @property
    def colour(self) -> ColourPipeline:
        """The transform between the plate and the backends' 8-bit display RGB (and back)."""
        return ColourPipeline(self.plate.colour)

    def mask_frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """The shot's quadmask at source resolution, frame by frame from shot frame `start` (mattes become
        remove/keep)."""
        count = self.shot.frames - start if count is None else count
        return _mask_frames(self.mask_source, self.mask_path, self.mask_offset + start, count)

    def to_dict(self) -> dict:
        return {"shot": self.shot.to_dict(), "roi": self.roi.as_list(), "mask_source": self.mask_source,
                "mask_path": self.mask_path, "mask_offset": self.mask_offset, "work_key": self.work_key,
                "chunks": [{"chunk": asdict(c.chunk), "plate_key": c.plate_key, "mask_key": c.mask_key,
                            "content_sha256": c.content_sha256} for c in self.chunks],
                "inputs": asdict(self.inputs), "region": self.region.as_list(),
                "region_frames": list(self.region_frames), "plate": self.plate.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> PreparedShot:
        return cls(shot=Shot.from_dict(d["shot"]), roi=Box(*d["roi"]), mask_source=d["mask_source"],
                   mask_path=d["mask_path"], mask_offset=d["mask_offset"], work_key=d["work_key"],
                   inputs=Inputs(**d["inputs"]), region=Box(*d["region"]), region_frames=tuple(d["region_frames"]),
                   plate=Plate.from_dict(d["plate"]),
                   chunks=tuple(ChunkInput(Chunk(**c["chunk"]), c["plate_key"], c["mask_key"], c["content_sha256"])
                                for c in d["chunks"]))


def _mask_frames(source: str, path: str, offset: int, count: int) -> Iterator[np.ndarray]:
    for m in qm.read_mask_frames(path, start=offset, count=count):
        if source == "matte":  # binary roto: the object is white
            yield np.where(m >= 127, np.uint8(0), np.uint8(255))
        else:
            yield m


def resolve_mask(shot: Shot) -> tuple[str, str, int]:
    """(source, path, offset) of the shot's mask; raises ShotError when it does not fit the plate."""
    ins = shot.instructions
    if ins is None or not ins.actionable:
        raise ShotError(shot.shot_id, "no removal instructions")
    if ins.quadmask:
        source, path = "quadmask", ins.quadmask
    elif ins.matte:
        source, path = "matte", ins.matte
    else:
        raise ShotError(shot.shot_id, "needs a quadmask or a matte: masks from points/boxes (SAM2) are not "
                                      "available in this build")
    if not os.path.exists(path) and not ("#" in path or "%" in path):
        raise ShotError(shot.shot_id, f"{source} file not found: {path}")
    try:
        info = probe(path)
    except MediaError as e:
        raise ShotError(shot.shot_id, f"unreadable {source}: {e}") from None
    media = shot.media
    if (info.width, info.height) != (media.width, media.height):
        raise ShotError(shot.shot_id, f"{source} {path} is {info.width}x{info.height} but the plate "
                                      f"{media.path} is {media.width}x{media.height}")
    # frame i of the mask is frame i of the media file, unless mask_start_frame says where it starts
    offset = shot.file_start - (ins.mask_start_frame or 0)
    if offset < 0 or offset + shot.frames > info.frames:
        raise ShotError(shot.shot_id, f"{source} {path} has {info.frames} frames (starting at media frame "
                                      f"{ins.mask_start_frame or 0}) but the shot needs media frames "
                                      f"{shot.file_start}-{shot.file_start + shot.frames - 1}")
    return source, path, offset


def read_inputs(shot: Shot, mask_path: str, mask_offset: int) -> Inputs:
    """The content of what the shot reads: the bytes of its plate frames and mask frames (never names or mtimes)."""
    try:
        return Inputs(files_sha256(media_files(shot.media.path, shot.file_start, shot.frames)),
                      files_sha256(media_files(mask_path, mask_offset, shot.frames)))
    except (MediaError, OSError) as e:
        raise ShotError(shot.shot_id, f"cannot read its inputs: {e}") from None


def inputs_key(shot: Shot, source: str, inputs: Inputs, mask_offset: int, model_size: tuple[int, int],
               colour: InputSpace) -> str:
    """The content key of a preparation: what it reads, and how (the colour transform shapes the chunks)."""
    return content_key("prepared-shot/4", inputs.plate_sha256, shot.file_start, shot.frames, source,
                       inputs.mask_sha256, mask_offset, list(model_size), colour.name)


def read_plate(shot: Shot, colourspace: str | None = None) -> Plate:
    """The plate's precision, scan and input colour space (its tags, the OCIO rules, `colourspace`, convention)."""
    try:
        info = probe(shot.media.path)
        space = input_space(shot.media.path, info.colour, colourspace)
    except (MediaError, ValueError) as e:
        raise ShotError(shot.shot_id, str(e)) from None
    if info.field_order not in ("progressive", "unknown"):
        log.warning("shot %s: %s is interlaced (%s): the removal treats each frame as a whole picture",
                    shot.shot_id, shot.media.path, info.field_order)
    return Plate(info.sample, info.bits, space, info.field_order)


def prepare_shot(shot: Shot, store: ArtifactStore, progress: Callable[[float], None] | None = None,
                 model_size: tuple[int, int] = MODEL_SIZE,
                 max_remove_fraction: float | None = MAX_REMOVE_FRACTION,
                 colourspace: str | None = None) -> PreparedShot:
    """Validate the mask, choose the ROI, and write the shot's model-size chunks to the store.

    A mask that removes more than `max_remove_fraction` of any frame is refused (None: allowed):
    an all-black or inverted matte would otherwise "remove" the whole plate and report done.
    The chunks are the plate through the colour pipeline: 8-bit display RGB, what the backends take.
    """
    if shot.problem:
        raise ShotError(shot.shot_id, shot.problem)
    source, mask_path, offset = resolve_mask(shot)
    inputs = read_inputs(shot, mask_path, offset)
    plate = read_plate(shot, colourspace)
    work_key = layout.work_folder(shot.shot_id, inputs_key(shot, source, inputs, offset, model_size, plate.colour))
    record_key = layout.prepared_record(work_key)
    if store.exists(record_key):
        prepared = PreparedShot.from_dict(json.loads(store.get_bytes(record_key)))
        if all(store.exists(c.plate_key) and store.exists(c.mask_key) for c in prepared.chunks):
            log.info("shot %s: reusing prepared chunks in %s", shot.shot_id, store.uri(work_key))
            return prepared

    # Pass 1 over the mask: where is anything removed or affected, and is it plausible?
    union, touched = None, []
    for t, m in enumerate(_mask_frames(source, mask_path, offset, shot.frames)):
        region = m != KEEP
        union = region if union is None else (union | region)
        if region.any():
            touched.append(t)
        removed = float(np.count_nonzero(m <= qm.OVERLAP)) / m.size
        if max_remove_fraction is not None and removed > max_remove_fraction:
            raise ShotError(shot.shot_id, f"{source} {mask_path} removes {removed:.0%} of shot frame {t} (media "
                                          f"frame {offset + t}): more than {max_remove_fraction:.0%} means the mask "
                                          "is probably inverted (the object must be black, 0); pass "
                                          "--allow-large-mask if that much really goes")
    bbox = region_bbox(union) if union is not None else None
    if bbox is None:
        raise NothingToRemove(shot.shot_id, f"{source} {mask_path} keeps every pixel: nothing to remove")
    media = shot.media
    roi = choose_roi(bbox, media.width, media.height, model_size=model_size)
    log.info("shot %s: region %s, working on %s of %dx%d", shot.shot_id, bbox.as_list(), roi.as_list(),
             media.width, media.height)

    # Pass 2: plate and mask, streamed into chunks.
    chunks = plan_chunks(shot.frames)
    full = roi.is_full(media.width, media.height)
    try:
        plates = model_frames(shot, plate, model_size if full else None)
        masks = _mask_frames(source, mask_path, offset, shot.frames)
        chunk_inputs = list(_write_chunks(shot, chunks, plates, masks, roi, full, model_size, store, work_key,
                                          progress))
    except MediaError as e:
        raise ShotError(shot.shot_id, str(e)) from None
    prepared = PreparedShot(shot=shot, roi=roi, mask_source=source, mask_path=mask_path, mask_offset=offset,
                            work_key=work_key, chunks=tuple(chunk_inputs), inputs=inputs, region=bbox,
                            region_frames=(touched[0], touched[-1]), plate=plate)
    store.put_bytes(record_key, json.dumps(prepared.to_dict(), indent=1).encode())
    return prepared


def plate_frames(shot: Shot, plate: Plate, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
    """The shot's plate frames at the plate's own precision (uint8, uint16 or float32), from shot frame `start`."""
    count = shot.frames - start if count is None else count
    if plate.sample == "uint8":
        return read_frames(shot.media.path, shot.file_start + start, count)
    return read_frames_precise(shot.media.path, shot.file_start + start, count)


def model_frames(shot: Shot, plate: Plate, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """The shot's frames as the backends see them: 8-bit display RGB through the colour pipeline, scaled to
    `size` (height, width) as VOID's reference scales its input (`area_resize`), not by the decoder."""
    pipeline = ColourPipeline(plate.colour)
    frames = (pipeline.to_model(f) for f in plate_frames(shot, plate))
    return frames if size is None else (area_resize(f, size[1], size[0]) for f in frames)


def _write_chunks(shot, chunks, plates, masks, roi, full, model_size, store, work_key, progress):
    open_frames: dict[int, tuple[list, list, PixelDigest]] = {}
    rate = shot.rate
    for t, (plate, mask) in enumerate(zip(plates, masks)):
        small = plate if full else crop_resize(plate, roi, model_size)
        small_mask = qm.resize_mask(mask[roi.slices()], model_size)
        for c in chunks:
            if c.start <= t < c.end:
                frames, mframes, h = open_frames.setdefault(c.index, ([], [], PixelDigest()))
                frames.append(small)
                mframes.append(small_mask)
                h.update(small)
                h.update(small_mask)
            if t == c.end - 1:
                frames, mframes, h = open_frames.pop(c.index)
                plate_key, mask_key = layout.chunk_plate(work_key, c.index), layout.chunk_mask(work_key, c.index)
                with store.writing(plate_key) as tmp:
                    write_video_lossless(tmp, frames, rate)
                with store.writing(mask_key) as tmp:
                    qm.write_quadmask(tmp, mframes, rate)
                yield ChunkInput(c, plate_key, mask_key, h.hexdigest())
        if progress is not None:
            progress((t + 1) / shot.frames)
    if open_frames:
        raise ShotError(shot.shot_id, f"plate {shot.media.path} ended early: chunks {sorted(open_frames)} incomplete")
