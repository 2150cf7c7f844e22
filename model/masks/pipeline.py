"""One entry point for the flow: a shot's quadmask from a matte or a few clicks.

`build_quadmask` runs, in order:
1. check inputs: the shot's media range, the output name, a matte or clicks/boxes inside the shot;
2. decode the shot once at the working resolution (memory bounded, see frames.Frames);
3. remove layer: the user's matte (white = object, as in shots.extract) or segmentation from the
   clicks (SAM2 or classical), with an optional fallback segmenter;
4. reasoning: Gemini with the offline heuristic as fallback, or the heuristic alone, or none;
5. rasterize the reasoning to grey cells, combine with the (dilated) remove layer, and write the
   quadmask losslessly at SOURCE resolution, exactly `n_frames` frames, frame i = shot frame i;
6. verify the written file (frame count, levels, no grey on frame 0) and, on request, write the
   overlay preview movie and a contact sheet for review.

The result is a small JSON-able `MaskResult` for the manifest; frames never leave this module.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from model.masks.combine import default_dilation, quadmask_frames, rasterize
from model.masks.frames import DEFAULT_RAM_BUDGET, Frames, MaskStack, Prompts, working_size
from model.masks.grid import Grid
from model.masks.preview import write_contact_sheet, write_preview
from model.masks.gemini import GeminiReasoner
from model.masks.reason import default_reasoner, reason_with_fallback
from model.masks.reasoning import ReasonInput, ReasonResult, empty_result
from model.masks.segment import ClassicalSegmenter, Segmenter
from shots import media
from shots.quadmask import AFFECTED, LEVELS, read_mask_frames, write_quadmask

log = logging.getLogger(__name__)

AUTO = "auto"


@dataclass(frozen=True)
class MaskOptions:
    """Knobs of build_quadmask (every one changes the output, so all belong in a cache key).

    min_grid: grid cells on the short side (VOID: 8).
    dilate_px: remove-region growth in source pixels (None: ~1% of the short side, combine.default_dilation).
    no_affected_on_first_frame: VOID's frame-0 rule (grey dropped on frame 0, 63 kept).
    matte_long_side: working resolution when a matte replaces segmentation (reasoning only).
    matte_threshold: matte values >= this are the object.
    verify: read the written quadmask back and check count, levels and the frame-0 rule.
    ram_budget: bytes of working-resolution frames held in RAM before spilling to a temp file.
    """

    min_grid: int = 8
    dilate_px: int | None = None
    no_affected_on_first_frame: bool = True
    matte_long_side: int = 640
    matte_threshold: int = 128
    verify: bool = True
    ram_budget: int = DEFAULT_RAM_BUDGET

    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in asdict(self).items() if k not in ("verify", "ram_budget"))


@dataclass(frozen=True)
class MaskResult:
    """What build_quadmask did, for the manifest (JSON-able via to_dict)."""

    path: str
    source: str  # matte | sam2 | classical
    reasoner: str  # gemini | heuristic | none
    degraded: bool
    reason: str | None
    latency_s: float  # reasoning latency (the Gemini call, retries included)
    tokens_in: int
    tokens_out: int
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _check(media_path, file_start: int, n_frames: int, instructions, out_path) -> media.MediaInfo:
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive int, got {n_frames!r}")
    if not isinstance(file_start, (int, np.integer)) or file_start < 0:
        raise ValueError(f"file_start must be a non-negative int, got {file_start!r}")
    name = Path(out_path).name
    if not (name.lower().endswith(".mkv") or "#" in name or "%" in name):
        raise ValueError(f"{out_path}: a quadmask is written as FFV1 .mkv or a PNG sequence pattern "
                         "('name.####.png'); lossy formats would create false levels")
    if instructions is None:
        raise ValueError("no instructions: a matte or clicks/boxes are needed to build a quadmask")
    if getattr(instructions, "quadmask", None):
        raise ValueError(f"the shot already has a quadmask ({instructions.quadmask}); use it, do not build one")
    info = media.probe(media_path)
    if file_start + n_frames > info.frames:
        raise ValueError(f"{media_path} has {info.frames} frames; the shot needs file frames "
                         f"{file_start}-{file_start + n_frames - 1}")
    return info


def _matte_range(instructions, file_start: int, n_frames: int, size: tuple[int, int]) -> tuple[str, int]:
    path = instructions.matte
    offset = file_start - (instructions.mask_start_frame or 0)
    info = media.probe(path)
    if (info.height, info.width) != tuple(size):
        raise ValueError(f"matte {path} is {info.width}x{info.height} but the plate is {size[1]}x{size[0]}")
    if offset < 0 or offset + n_frames > info.frames:
        raise ValueError(f"matte {path} has {info.frames} frames starting at media frame "
                         f"{instructions.mask_start_frame or 0}; the shot needs media frames "
                         f"{file_start}-{file_start + n_frames - 1}")
    return path, offset


def _matte_frames(path, offset: int, n: int, size, threshold: int) -> Iterator[np.ndarray]:
    for m in media.iter_frames(path, offset, n, size, layout=media.SINGLE):
        yield m >= threshold


def build_quadmask(media_path, file_start: int, n_frames: int, rate, instructions, out_path, *,
                   segmenter: Segmenter | None = None, reasoner=AUTO, heuristic=None,
                   fallback_segmenter: Segmenter | None = None, store=None, options: MaskOptions | None = None,
                   preview_path=None, contact_sheet_path=None,
                   progress: Callable[[float], None] | None = None) -> MaskResult:
    """Build and write a shot's quadmask; returns a MaskResult.

    media_path: the plate (movie or sequence); the shot is file frames [file_start, file_start + n_frames).
    rate: the shot's frame rate (stored in the .mkv).
    instructions: shots.shot.Instructions; `matte` wins over clicks; clicks/boxes are numbered like
        the media file (as ingest gives them) and only those inside the shot are used.
    out_path: local '.mkv' (FFV1 gray) or PNG pattern; written atomically at source resolution.
    segmenter: for clicks (default ClassicalSegmenter()); fallback_segmenter runs if it raises.
    reasoner: a GeminiReasoner (falls back to `heuristic` when unconfigured or failing), a
        HeuristicReasoner, None (no grey layer), or 'auto' (Gemini if GEMINI_API_KEY is set).
    store: ArtifactStore caching Gemini answers. progress: called with 0..1.
    preview_path / contact_sheet_path: optional review outputs (.mp4/.mkv, .png/.jpg).
    """
    options = options or MaskOptions()
    timings: dict[str, float] = {}
    notes: list[str] = []
    reasons: list[str] = []

    def step(name: str, t0: float, at: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 3)
        if progress is not None:
            progress(at)

    # 1. Check inputs.
    t = time.perf_counter()
    info = _check(media_path, file_start, n_frames, instructions, out_path)
    src = (info.height, info.width)
    grid = Grid.for_size(*src, min_grid=options.min_grid)
    dilate_px = default_dilation(*src) if options.dilate_px is None else int(options.dilate_px)
    matte = getattr(instructions, "matte", None)
    prompts = Prompts()
    if matte:
        matte_path, matte_offset = _matte_range(instructions, file_start, n_frames, src)
        long_side = options.matte_long_side
    else:
        prompts, dropped = Prompts.from_instructions(instructions, file_start, n_frames, src)
        notes += dropped
        if not prompts:
            raise ValueError(f"no positive clicks or boxes inside the shot (file frames {file_start}-"
                             f"{file_start + n_frames - 1}) and no matte: nothing says what to remove"
                             + (f" ({'; '.join(dropped)})" if dropped else ""))
        segmenter = segmenter or ClassicalSegmenter()
        long_side = segmenter.working_long_side
    work = working_size(*src, long_side)

    # 2. Decode the shot once at the working resolution.
    frames = Frames.from_media(media_path, file_start, n_frames, work, src, ram_budget=options.ram_budget)
    try:
        step("decode", t, 0.1)

        # 3. Remove layer.
        t = time.perf_counter()
        if matte:
            masks = MaskStack(n_frames, work)
            for i, m in enumerate(_matte_frames(matte_path, matte_offset, n_frames, work, options.matte_threshold)):
                masks[i] = m
            source = "matte"
        else:
            sub = (lambda f: progress(0.1 + 0.45 * f)) if progress is not None else None
            masks, source = _segment(segmenter, fallback_segmenter, frames, prompts, reasons, sub)
        object_frames = int((masks.areas > 0).sum())
        if object_frames == 0:
            reasons.append("no object found on any frame: the quadmask removes nothing")
        step("segment", t, 0.55)

        # 4. Reasoning.
        t = time.perf_counter()
        inp = ReasonInput(frames, masks, grid, getattr(instructions, "instruction", None) or None,
                          prompt_frames=prompts.positive_frames)
        rr = _reason(reasoner, heuristic, inp, store)
        if rr.degraded and rr.reason:
            reasons.append(rr.reason)
        cells = rasterize(rr.reasoning, n_frames)
        step("reason", t, 0.75)

        # 5. Combine and write at source resolution.
        t = time.perf_counter()
        if matte:
            remove = _matte_frames(matte_path, matte_offset, n_frames, None, options.matte_threshold)
        else:
            remove = (masks.resized(i, src) for i in range(n_frames))
        stats: dict = {}
        written = write_quadmask(out_path, quadmask_frames(remove, cells, grid, src, dilate_px,
                                                           options.no_affected_on_first_frame, stats), rate)
        if written != n_frames:
            raise RuntimeError(f"{out_path}: wrote {written} frames, the shot has {n_frames}")
        step("write", t, 0.9)

        # 6. Verify; review outputs.
        t = time.perf_counter()
        if options.verify:
            _verify(out_path, n_frames, work, options.no_affected_on_first_frame)
        if preview_path is not None:
            write_preview(iter(frames), read_mask_frames(out_path, size=work), preview_path, rate, grid=grid)
        if contact_sheet_path is not None:
            picked = write_contact_sheet(iter(frames), read_mask_frames(out_path, size=work), n_frames,
                                         contact_sheet_path, grid=grid)
            notes.append(f"contact sheet frames: {picked}")
        step("verify_review", t, 1.0)
    finally:
        frames.close()

    reasoning = rr.reasoning
    details = {
        "frames": n_frames, "file_start": file_start, "source_size": list(src), "working_size": list(work),
        "grid": [grid.rows, grid.cols], "dilate_px": dilate_px, "options": options.key(),
        "prompt_frames": prompts.positive_frames, "object_frames": object_frames,
        "levels": stats.get("fraction", {}), "timings_s": timings,
        "reasoning": {
            "model": rr.model, "cached": rr.cached, "attempts": rr.attempts, "cache_key": rr.cache_key,
            "objects": [{"noun": o.noun, "category": o.category, "will_move": o.will_move, "why": o.why}
                        for o in reasoning.objects],
            "integral_belongings": reasoning.integral_belongings,
            "scene_description": reasoning.scene_description, "warnings": reasoning.warnings,
            "grey_cells": int(cells.sum()), **{k: v for k, v in rr.details.items() if k != "usage"},
        },
        "notes": notes,
    }
    if reasoning.integral_belongings:
        notes.append("integral belongings named by reasoning are not added to the remove region (no text-prompted "
                     f"segmenter): {[b['noun'] for b in reasoning.integral_belongings]}")
    result = MaskResult(path=str(out_path), source=source, reasoner=rr.reasoner, degraded=bool(reasons),
                        reason="; ".join(reasons) or None, latency_s=round(rr.latency_s, 3),
                        tokens_in=rr.tokens_in, tokens_out=rr.tokens_out, details=details)
    log.info("quadmask %s: %d frames from %s + %s reasoning%s", out_path, n_frames, source, rr.reasoner,
             f" (degraded: {result.reason})" if result.degraded else "")
    return result


def _segment(segmenter: Segmenter, fallback: Segmenter | None, frames: Frames, prompts: Prompts,
             reasons: list[str], progress=None) -> tuple[MaskStack, str]:
    try:
        return segmenter.segment(frames, prompts, progress=progress), segmenter.name
    except Exception as e:
        if fallback is None:
            raise
        why = f"{segmenter.name} segmentation failed ({type(e).__name__}: {e}); used {fallback.name}"
        log.warning(why)
        reasons.append(why)
    return fallback.segment(frames, prompts, progress=progress), fallback.name  # at the primary's resolution


def _reason(reasoner, heuristic, inp: ReasonInput, store) -> ReasonResult:
    if reasoner is None:
        return empty_result(inp, "reasoning disabled")
    if isinstance(reasoner, str):
        if reasoner != AUTO:
            raise ValueError(f"reasoner must be a reasoner object, None or {AUTO!r}, got {reasoner!r}")
        reasoner = default_reasoner()
    if isinstance(reasoner, GeminiReasoner):
        return reason_with_fallback(inp, reasoner, heuristic, store)
    return reasoner.reason(inp, store=store)


def _verify(path, n_frames: int, size, no_affected_on_first_frame: bool) -> None:
    """Read the quadmask back: exactly n_frames frames of LEVELS values, no 127 on frame 0."""
    n = 0
    levels = np.array(LEVELS)
    for i, m in enumerate(read_mask_frames(path, size=size)):
        n += 1
        if not np.isin(np.unique(m), levels).all():
            raise RuntimeError(f"{path}, frame {i}: values outside {LEVELS}")
        if i == 0 and no_affected_on_first_frame and (m == AFFECTED).any():
            raise RuntimeError(f"{path}, frame 0: grey (127) present despite the frame-0 rule")
    if n != n_frames:
        raise RuntimeError(f"{path}: reads back {n} frames, expected {n_frames}")
