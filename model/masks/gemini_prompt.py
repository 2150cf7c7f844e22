"""The Gemini prompt, all of it: the words, the answer schema, and the stills it is asked about.

Gemini sees a handful of downscaled keyframes with a labelled yellow grid and one still with the
object tinted red, never the movie: VOID's stage 2 sent the whole clip plus full-resolution stills
(21-23 MB for 4K) with no schema (void_masks.md 3.1-3.5, 7.1). The answer is constrained by
`RESPONSE_SCHEMA` and read by `model.masks.reasoning.parse_answer`.

All of it is part of the answer cache key (`GeminiRequest.identity`); bump `PROMPT_VERSION` when a
change should re-ask questions that are already answered.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from model.masks.grid import Grid
from model.masks.reasoning import CATEGORIES, ReasonerError, ReasonInput

PROMPT_VERSION = "voidbatch-reason-1"

SYSTEM_INSTRUCTION = ("You are an expert video analyst with a deep understanding of physics and of how objects "
                      "interact. Answer only with JSON that follows the response schema.")


def prompt_text(grid: Grid, keyframes: list[int], overlay: int, n_frames: int, instruction: str | None) -> str:
    """The question about `keyframes` of an `n_frames` shot, with the object shown red on frame `overlay`."""
    frames = ", ".join(str(f) for f in keyframes)
    rows, cols = f"0-{grid.rows - 1}", f"0-{grid.cols - 1}"
    return f"""You see {len(keyframes)} stills of one shot of {n_frames} frames (numbered 0 to {n_frames - 1}): frames
{frames}. Each still has a YELLOW grid of {grid.rows} rows x {grid.cols} columns; rows are numbered {rows} from the
top (labels on the left edge), columns {cols} from the left (labels on the top edge); the frame number is printed
in the bottom-left corner. The last image is frame {overlay} with the PRIMARY OBJECT tinted RED: it will be removed
from every frame. Edit instruction: {instruction or "(none given) remove the red object"}.

Task: decide what else in the shot changes when the red object is removed, as if it had never been there.

1. integral_belongings (0-3): things that must be removed together with the object because they are part of it
   (worn items, a ridden bike or board, a large carried item that belongs to it). Not generic clothing, not held
   things that would simply be put down, not things it only touches.
2. affected_objects (0-5, never repeating an integral belonging): separate things whose appearance changes.
   a) visual_artifact: shadows, reflections, wakes, ripples, splashes, footprints, light cast by the object.
      They vanish; will_move is false. grid_localizations MUST list, for every still where the artifact is
      visible, every (row, col) cell it touches; when unsure include the neighbouring cell.
   b) physical: an object the red object supports, holds, carries, pushes or knocks.
      - Held up against gravity by the object (carried, lifted): will_move true; it will fall or settle.
      - Resting on a stable surface while the object acts on it (opening, crushing, touching): will_move
        false; it simply stays as it is.
      - Knocked, kicked or thrown by the object: will_move true and original_position_grid = the cell where it
        would have stayed.
      For will_move true also give object_size_grids (its size in cells, padded by one cell) and trajectory_path:
      3-5 keyframes (frame, grid_row, grid_col) of its CENTRE along the path it would take without the object,
      starting at first_appears_frame.
   first_appears_frame is the first frame where the thing is visible (0 if it is there from the start).
   grid_localizations list where the thing is now, on the stills where it is visible, by frame number.
   Leave out untouched background, and people or animals that have no contact with the object.
   Be conservative: when in doubt, leave it out.
3. scene_description: one or two sentences describing the shot without the red object (including anything that
   now falls or stays still).

Frame numbers in the answer are the frame numbers printed on the stills. Rows {rows}, columns {cols}."""


RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "integral_belongings": {
            "type": "array",
            "items": {"type": "object", "properties": {"noun": {"type": "string"}, "why": {"type": "string"}},
                      "required": ["noun", "why"]},
        },
        "affected_objects": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "noun": {"type": "string"},
                    "category": {"type": "string", "enum": list(CATEGORIES)},
                    "why": {"type": "string"},
                    "will_move": {"type": "boolean"},
                    "first_appears_frame": {"type": "integer"},
                    "grid_localizations": {
                        "type": "array",
                        "items": {"type": "object", "properties": {
                            "frame": {"type": "integer"},
                            "grid_regions": {"type": "array", "items": {
                                "type": "object",
                                "properties": {"row": {"type": "integer"}, "col": {"type": "integer"}},
                                "required": ["row", "col"]}}},
                            "required": ["frame", "grid_regions"]},
                    },
                    "trajectory_path": {
                        "type": "array",
                        "items": {"type": "object", "properties": {
                            "frame": {"type": "integer"}, "grid_row": {"type": "integer"},
                            "grid_col": {"type": "integer"}},
                            "required": ["frame", "grid_row", "grid_col"]},
                    },
                    "object_size_grids": {"type": "object", "properties": {
                        "rows": {"type": "integer"}, "cols": {"type": "integer"}}, "required": ["rows", "cols"]},
                    "original_position_grid": {"type": "object", "properties": {
                        "row": {"type": "integer"}, "col": {"type": "integer"}}, "required": ["row", "col"]},
                },
                "required": ["noun", "category", "why", "will_move", "first_appears_frame", "grid_localizations"],
            },
        },
        "scene_description": {"type": "string"},
        "confidence": {"type": "number"},
    },
    "required": ["integral_belongings", "affected_objects", "scene_description"],
}


# --- the stills -------------------------------------------------------------------------------

def keyframe_indices(n_frames: int, count: int) -> list[int]:
    """`count` frames spread over the shot, first and last included: VOID's positions (0, .11, .22,
    ..., 1.0, rounded to 2 decimals) times (n - 1), floored; lime (46 frames) gives 0, 4, 9, ..., 45."""
    if n_frames <= count:
        return list(range(n_frames))
    return sorted({int(round(i / (count - 1), 2) * (n_frames - 1)) for i in range(count)})


def _draw_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, thickness: int) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), thickness, cv2.LINE_AA)


def render_still(frame: np.ndarray, grid: Grid, frame_index: int, long_side: int,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """A keyframe as Gemini sees it: downscaled, red-tinted object (optional), yellow grid, labels."""
    h, w = frame.shape[:2]
    s = min(1.0, long_side / max(h, w))
    size = (max(grid.cols, int(round(w * s))), max(grid.rows, int(round(h * s))))
    img = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if size != (w, h) else frame.copy()
    H, W = img.shape[:2]
    if mask is not None:
        m = cv2.resize(mask.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
        img[m] = (0.6 * img[m] + 0.4 * np.array([255, 0, 0])).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, (255, 0, 0), max(1, int(round(max(H, W) / 400))), cv2.LINE_AA)
    rb, cb = grid.row_bounds(H), grid.col_bounds(W)
    line = max(1, int(round(max(H, W) / 500)))
    for y in rb[1:-1]:
        cv2.line(img, (0, int(y)), (W - 1, int(y)), (255, 255, 0), line)
    for x in cb[1:-1]:
        cv2.line(img, (int(x), 0), (int(x), H - 1), (255, 255, 0), line)
    scale = max(0.35, max(H, W) / 1400)
    th = max(1, int(round(scale * 1.5)))

    def label(text, cx, cy):  # centred on (cx, cy)
        (tw, tht), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, th)
        _draw_text(img, text, (int(cx - tw / 2), int(cy + tht / 2)), scale, th)

    text_h = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, scale, th)[0][1]
    for c in range(grid.cols):  # column numbers along the top, centred on their column
        label(str(c), (cb[c] + cb[c + 1]) / 2, text_h / 2 + 3)
    for r in range(grid.rows):  # row numbers down the left edge, centred on their row
        label(str(r), text_h * 0.6 + 3, (rb[r] + rb[r + 1]) / 2)
    _draw_text(img, f"frame {frame_index}", (int(cb[min(1, grid.cols - 1)]) + 3, H - 6), scale, th)
    return img


def _jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ReasonerError("JPEG encoding of a keyframe failed")
    return buf.tobytes()


@dataclass
class GeminiRequest:
    """One question as sent: the prompt text and the JPEG stills (keyframes, then the red overlay)."""

    prompt: str
    images: list[bytes]
    keyframes: list[int]
    overlay_frame: int

    def identity(self) -> dict:
        """Everything in the request that decides the answer (the model and its sampling settings aside)."""
        return {"v": PROMPT_VERSION, "system": SYSTEM_INSTRUCTION, "prompt": self.prompt, "schema": RESPONSE_SCHEMA,
                "images": [hashlib.sha256(b).hexdigest() for b in self.images]}


def build_request(inp: ReasonInput, keyframes: int = 10, long_side: int = 768, jpeg_quality: int = 85
                  ) -> GeminiRequest:
    """The request for `inp`: `keyframes` gridded stills spread over the shot, then the red overlay still."""
    n = len(inp.frames)
    keys = keyframe_indices(n, keyframes)
    overlay = inp.overlay_frame()
    images = [_jpeg(render_still(inp.frames[f], inp.grid, f, long_side), jpeg_quality) for f in keys]
    images.append(_jpeg(render_still(inp.frames[overlay], inp.grid, overlay, long_side, mask=inp.masks[overlay]),
                        jpeg_quality))
    return GeminiRequest(prompt_text(inp.grid, keys, overlay, n, inp.instruction), images, keys, overlay)
