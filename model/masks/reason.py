"""The affected (grey, 127) layer's reasoning: what else changes when the object is removed.

`GeminiReasoner` asks Gemini (google-genai) with a handful of downscaled, gridded keyframes and one
still with the object overlaid in red, never the movie (VOID's stage 2 sent the whole clip plus
full-resolution stills, 21-23 MB for 4K, with no schema, no validation, no retry policy and no
cache: void_masks.md 3.1-3.5, 7.1). Here the answer is constrained by a JSON schema, validated
(types, grid ranges, frame ranges), retried with backoff on 429/5xx/timeouts/malformed answers, and
cached on an ArtifactStore under a hash of the exact request and the model id. The API key comes
from GEMINI_API_KEY and is never logged, stored or returned; error texts are scrubbed of it.

`HeuristicReasoner` is the offline tier (void_masks.md 7.2, tier 2): a contact/shadow band below and
beside the object, plus regions whose change over time follows the object (frame differences after
global-motion compensation, and on a locked-off camera the difference to the temporal median
background), kept only where they connect to the object's neighbourhood, all gridified. Its
results are always marked degraded.

`reason_with_fallback` uses Gemini when it is configured and falls back to the heuristic when it
keeps failing, saying why.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from model.masks.frames import Frames, MaskStack
from model.masks.grid import Grid

log = logging.getLogger(__name__)

PROMPT_VERSION = "voidbatch-reason-1"
DEFAULT_MODEL = "gemini-2.5-pro"
API_KEY_ENV = "GEMINI_API_KEY"
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
CATEGORIES = ("physical", "visual_artifact")


class ReasonerError(Exception):
    """Reasoning failed for good (after retries, or on a non-retryable error). Never holds the key."""

    def __init__(self, message: str, attempts: int = 0, tokens_in: int = 0, tokens_out: int = 0,
                 latency_s: float = 0.0):
        super().__init__(message)
        self.attempts, self.tokens_in, self.tokens_out, self.latency_s = attempts, tokens_in, tokens_out, latency_s


class InvalidAnswer(ValueError):
    """The model's answer is not JSON of the expected shape."""


# ---------------------------------------------------------------------------------------------
# What reasoning produces


@dataclass
class AffectedObject:
    """Something that changes when the object is removed, located on the grid.

    localizations: shot frame -> [(row, col)] cells the thing covers on that (key)frame.
    trajectory: [(frame, row, col)] keyframes of the centre of a thing that will move.
    size_cells: (rows, cols) of the padded box stamped along the trajectory.
    original_position: (row, col) where a thing the object knocked away would have stayed.
    """

    noun: str
    category: str = "physical"
    why: str = ""
    will_move: bool = False
    first_appears_frame: int = 0
    localizations: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    trajectory: list[tuple[int, int, int]] = field(default_factory=list)
    size_cells: tuple[int, int] = (2, 2)
    original_position: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["localizations"] = {str(f): [list(c) for c in cells] for f, cells in self.localizations.items()}
        d["trajectory"] = [list(t) for t in self.trajectory]
        d["size_cells"] = list(self.size_cells)
        d["original_position"] = list(self.original_position) if self.original_position else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AffectedObject:
        return cls(
            noun=d["noun"], category=d.get("category", "physical"), why=d.get("why", ""),
            will_move=bool(d.get("will_move", False)), first_appears_frame=int(d.get("first_appears_frame", 0)),
            localizations={int(f): [tuple(c) for c in cells] for f, cells in d.get("localizations", {}).items()},
            trajectory=[tuple(t) for t in d.get("trajectory", [])],
            size_cells=tuple(d.get("size_cells", (2, 2))),
            original_position=tuple(d["original_position"]) if d.get("original_position") else None,
        )


@dataclass
class Reasoning:
    """Validated reasoning for one shot, on a rows x cols grid over n_frames shot frames."""

    rows: int
    cols: int
    n_frames: int
    objects: list[AffectedObject] = field(default_factory=list)
    integral_belongings: list[dict] = field(default_factory=list)  # {noun, why}: not segmented (no text model)
    scene_description: str = ""
    confidence: float | None = None
    source: str = "none"  # gemini | heuristic | none
    warnings: list[str] = field(default_factory=list)

    @property
    def grid(self) -> Grid:
        return Grid(self.rows, self.cols)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["objects"] = [o.to_dict() for o in self.objects]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Reasoning:
        return cls(rows=int(d["rows"]), cols=int(d["cols"]), n_frames=int(d["n_frames"]),
                   objects=[AffectedObject.from_dict(o) for o in d.get("objects", [])],
                   integral_belongings=list(d.get("integral_belongings", [])),
                   scene_description=d.get("scene_description", ""), confidence=d.get("confidence"),
                   source=d.get("source", "none"), warnings=list(d.get("warnings", [])))


@dataclass
class ReasonInput:
    """What a reasoner looks at: the shot at working resolution, the object's masks, the grid."""

    frames: Frames
    masks: MaskStack
    grid: Grid
    instruction: str | None = None
    prompt_frames: list[int] = field(default_factory=list)  # shot frames the artist clicked on

    def overlay_frame(self) -> int:
        """The frame shown with the red overlay: the first clicked frame where the mask is not empty,
        else the frame with the largest mask (VOID used frame 0 even when the object came later)."""
        areas = self.masks.areas
        for f in sorted(self.prompt_frames):
            if 0 <= f < len(areas) and areas[f] > 0:
                return f
        return int(np.argmax(areas))


@dataclass
class ReasonResult:
    """A reasoning plus how it was obtained (for the manifest)."""

    reasoning: Reasoning
    reasoner: str  # gemini | heuristic | none
    degraded: bool
    reason: str | None = None
    latency_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    attempts: int = 0
    cached: bool = False
    model: str | None = None
    cache_key: str | None = None
    details: dict = field(default_factory=dict)


def empty_result(inp: ReasonInput, reason: str | None = None) -> ReasonResult:
    """No reasoning at all (no grey layer): VOID's trimask-only tier."""
    r = Reasoning(inp.grid.rows, inp.grid.cols, len(inp.frames), source="none")
    return ReasonResult(r, "none", degraded=False, reason=reason)


# ---------------------------------------------------------------------------------------------
# Secrets


def _redact(text: str, secret: str | None) -> str:
    text = str(text)
    if secret:
        text = text.replace(secret, "[REDACTED]")
    # belt and braces: anything shaped like a Google API key or a key query parameter
    text = re.sub(r"AIza[0-9A-Za-z_\-]{20,}", "[REDACTED]", text)
    return re.sub(r"(?i)(key=)[^&\s\"']+", r"\1[REDACTED]", text)


# ---------------------------------------------------------------------------------------------
# Gemini request


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

SYSTEM_INSTRUCTION = ("You are an expert video analyst with a deep understanding of physics and of how objects "
                      "interact. Answer only with JSON that follows the response schema.")


def _prompt_text(grid: Grid, keyframes: list[int], overlay: int, n_frames: int, instruction: str | None) -> str:
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


def keyframe_indices(n_frames: int, count: int) -> list[int]:
    """`count` frames spread over the shot, first and last included: VOID's positions (0, .11, .22,
    ..., 1.0, rounded to 2 decimals) times (n - 1), floored; lime (46 frames) gives 0, 4, 9, ..., 45."""
    if n_frames <= count:
        return list(range(n_frames))
    return sorted({int(round(i / (count - 1), 2) * (n_frames - 1)) for i in range(count)})


@dataclass
class GeminiRequest:
    prompt: str
    images: list[bytes]
    keyframes: list[int]
    overlay_frame: int

    def cache_key(self, model: str, extra: dict) -> str:
        ident = {"v": PROMPT_VERSION, "model": model, "system": SYSTEM_INSTRUCTION, "prompt": self.prompt,
                 "schema": RESPONSE_SCHEMA, "images": [hashlib.sha256(b).hexdigest() for b in self.images], **extra}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Validation


def _int(v, where: str) -> int:
    if isinstance(v, bool):
        raise InvalidAnswer(f"{where}: expected an integer, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    raise InvalidAnswer(f"{where}: expected an integer, got {v!r}")


def _bool(v, where: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise InvalidAnswer(f"{where}: expected true/false, got {v!r}")


def _list(v, where: str) -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        raise InvalidAnswer(f"{where}: expected a list, got {type(v).__name__}")
    return v


def _loads(text: str) -> dict:
    if text is None or not str(text).strip():
        raise InvalidAnswer("empty answer")
    s = str(text).strip()
    if s.startswith("```"):  # tolerated: some models fence JSON even in JSON mode
        s = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", s)
    try:
        data = json.loads(s)
    except json.JSONDecodeError as e:
        raise InvalidAnswer(f"answer is not JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(data, dict):
        raise InvalidAnswer(f"answer is a JSON {type(data).__name__}, expected an object")
    return data


def parse_answer(text: str, grid: Grid, n_frames: int, max_objects: int = 8) -> Reasoning:
    """Validate Gemini's JSON: structure and types must hold (InvalidAnswer otherwise); cells or
    frames out of range are dropped or clamped, each with a warning."""
    data = _loads(text)
    if "affected_objects" not in data:
        raise InvalidAnswer("answer has no 'affected_objects'")
    warnings: list[str] = []

    def frame(v, where):
        f = _int(v, where)
        if not 0 <= f < n_frames:
            warnings.append(f"{where}: frame {f} outside 0-{n_frames - 1}, clamped")
            f = min(max(f, 0), n_frames - 1)
        return f

    def cell(r, c, where):
        r, c = _int(r, f"{where}.row"), _int(c, f"{where}.col")
        if not (0 <= r < grid.rows and 0 <= c < grid.cols):
            warnings.append(f"{where}: cell ({r}, {c}) outside the {grid.rows}x{grid.cols} grid, dropped")
            return None
        return r, c

    objects = []
    raw_objects = _list(data["affected_objects"], "affected_objects")
    if len(raw_objects) > max_objects:
        warnings.append(f"{len(raw_objects)} affected objects, kept the first {max_objects}")
    for i, o in enumerate(raw_objects[:max_objects]):
        w = f"affected_objects[{i}]"
        if not isinstance(o, dict):
            raise InvalidAnswer(f"{w}: expected an object")
        noun = o.get("noun")
        if not isinstance(noun, str) or not noun.strip():
            raise InvalidAnswer(f"{w}: 'noun' must be a non-empty string")
        category = o.get("category", "physical")
        if category not in CATEGORIES:
            warnings.append(f"{w}: unknown category {category!r}, read as 'physical'")
            category = "physical"
        why = o.get("why", "")
        if not isinstance(why, str):
            raise InvalidAnswer(f"{w}: 'why' must be a string")
        will_move = _bool(o.get("will_move", False), f"{w}.will_move")
        first = frame(o.get("first_appears_frame", 0), f"{w}.first_appears_frame")
        locs: dict[int, list[tuple[int, int]]] = {}
        for j, loc in enumerate(_list(o.get("grid_localizations"), f"{w}.grid_localizations")):
            lw = f"{w}.grid_localizations[{j}]"
            if not isinstance(loc, dict) or "frame" not in loc:
                raise InvalidAnswer(f"{lw}: expected {{frame, grid_regions}}")
            f = frame(loc["frame"], f"{lw}.frame")
            cells = []
            for k, reg in enumerate(_list(loc.get("grid_regions"), f"{lw}.grid_regions")):
                if not isinstance(reg, dict):
                    raise InvalidAnswer(f"{lw}.grid_regions[{k}]: expected {{row, col}}")
                c = cell(reg.get("row"), reg.get("col"), f"{lw}.grid_regions[{k}]")
                if c is not None:
                    cells.append(c)
            if cells:
                locs.setdefault(f, [])
                locs[f] = sorted(set(locs[f]) | set(cells))
        traj = []
        for j, p in enumerate(_list(o.get("trajectory_path"), f"{w}.trajectory_path")):
            pw = f"{w}.trajectory_path[{j}]"
            if not isinstance(p, dict):
                raise InvalidAnswer(f"{pw}: expected {{frame, grid_row, grid_col}}")
            c = cell(p.get("grid_row"), p.get("grid_col"), pw)
            if c is not None:
                traj.append((frame(p.get("frame"), f"{pw}.frame"), *c))
        traj.sort()
        size = o.get("object_size_grids") or {}
        if not isinstance(size, dict):
            raise InvalidAnswer(f"{w}.object_size_grids: expected {{rows, cols}}")
        srows = min(max(_int(size.get("rows", 2), f"{w}.object_size_grids.rows"), 1), grid.rows)
        scols = min(max(_int(size.get("cols", 2), f"{w}.object_size_grids.cols"), 1), grid.cols)
        orig = o.get("original_position_grid")
        original = None
        if isinstance(orig, dict):
            original = cell(orig.get("row"), orig.get("col"), f"{w}.original_position_grid")
        if will_move and not traj:
            warnings.append(f"{w} ({noun}): will_move without a trajectory; only its localizations are used")
        if not locs and not traj and original is None:
            warnings.append(f"{w} ({noun}): no cells to mark (no localizations or trajectory); not rasterized")
        objects.append(AffectedObject(noun=noun.strip().lower(), category=category, why=why[:300],
                                      will_move=will_move, first_appears_frame=first, localizations=locs,
                                      trajectory=traj, size_cells=(srows, scols), original_position=original))
    belongings = []
    for i, b in enumerate(_list(data.get("integral_belongings"), "integral_belongings")[:3]):
        if isinstance(b, dict) and isinstance(b.get("noun"), str) and b["noun"].strip():
            belongings.append({"noun": b["noun"].strip().lower(), "why": str(b.get("why", ""))[:300]})
    scene = data.get("scene_description", "")
    if not isinstance(scene, str):
        raise InvalidAnswer("'scene_description' must be a string")
    conf = data.get("confidence")
    conf = float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) else None
    return Reasoning(grid.rows, grid.cols, n_frames, objects, belongings, scene.strip(), conf, "gemini", warnings)


# ---------------------------------------------------------------------------------------------
# Gemini


class GeminiReasoner:
    """Gemini via google-genai: gridded keyframes + a red overlay still -> validated Reasoning.

    model: model id (keep it configurable; preview ids get renamed).
    timeout_s: per request. max_retries: extra attempts after the first on 408/429/5xx, timeouts,
        connection errors and malformed answers; other HTTP errors fail at once.
    backoff_s / max_backoff_s: exponential backoff (with jitter); a server RetryInfo delay is honoured
        up to max_backoff_s.
    base_url / api_version / http_options: endpoint override (a proxy, a test server) and API
        version (None: the SDK's default); http_options is a dict or google.genai.types.HttpOptions
        and wins over base_url/api_version/timeout_s.
    api_key: default os.environ["GEMINI_API_KEY"], read at call time.
    store: an ArtifactStore caching answers by request hash + model id (may also be given per call).
    keyframes / image_long_side / jpeg_quality: what is sent (about 11 small JPEGs).
    """

    name = "gemini"

    def __init__(self, model: str = DEFAULT_MODEL, *, timeout_s: float = 120.0, max_retries: int = 3,
                 backoff_s: float = 2.0, max_backoff_s: float = 60.0, base_url: str | None = None,
                 api_version: str | None = None, http_options=None, api_key: str | None = None, store=None,
                 keyframes: int = 10, image_long_side: int = 768, jpeg_quality: int = 85,
                 temperature: float | None = 0.0, seed: int | None = 0, cache_prefix: str = "cache/reasoning"):
        if max_retries < 0 or timeout_s <= 0:
            raise ValueError(f"max_retries must be >= 0 and timeout_s > 0, got {max_retries} and {timeout_s}")
        self.model = model
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.base_url, self.api_version, self.http_options = base_url, api_version, http_options
        self._api_key = api_key  # never repr'd, logged or returned
        self.store = store
        self.keyframes, self.image_long_side, self.jpeg_quality = keyframes, image_long_side, jpeg_quality
        self.temperature, self.seed = temperature, seed
        self.cache_prefix = cache_prefix.strip("/")

    def __repr__(self) -> str:
        return f"GeminiReasoner(model={self.model!r}, base_url={self.base_url!r}, configured={self.configured})"

    def _key(self) -> str | None:
        key = (self._api_key or os.environ.get(API_KEY_ENV) or "").strip()  # the SDK strips it too
        return key or None

    @property
    def configured(self) -> bool:
        """True when an API key is available."""
        return bool(self._key())

    # -- request ----------------------------------------------------------------------------------
    def build_request(self, inp: ReasonInput) -> GeminiRequest:
        n = len(inp.frames)
        keys = keyframe_indices(n, self.keyframes)
        overlay = inp.overlay_frame()
        images = [_jpeg(render_still(inp.frames[f], inp.grid, f, self.image_long_side), self.jpeg_quality)
                  for f in keys]
        images.append(_jpeg(render_still(inp.frames[overlay], inp.grid, overlay, self.image_long_side,
                                         mask=inp.masks[overlay]), self.jpeg_quality))
        return GeminiRequest(_prompt_text(inp.grid, keys, overlay, n, inp.instruction), images, keys, overlay)

    def _cache_key(self, request: GeminiRequest) -> str:
        digest = request.cache_key(self.model, {"temperature": self.temperature, "seed": self.seed})
        model = re.sub(r"[^A-Za-z0-9._-]", "_", self.model)
        return f"{self.cache_prefix}/{model}/{digest}.json"

    def _http_options(self):
        from google.genai import types

        if self.http_options is not None:
            return (self.http_options if isinstance(self.http_options, types.HttpOptions)
                    else types.HttpOptions(**self.http_options))
        # retries are ours (counted and reported), so the SDK makes exactly one attempt
        return types.HttpOptions(base_url=self.base_url, api_version=self.api_version,
                                 timeout=int(self.timeout_s * 1000))

    def _config(self):
        from google.genai import types

        return types.GenerateContentConfig(
            system_instruction=SYSTEM_INSTRUCTION, response_mime_type="application/json",
            response_json_schema=RESPONSE_SCHEMA, temperature=self.temperature, seed=self.seed,
            candidate_count=1)

    @staticmethod
    def _cached(store, key: str):
        """(Reasoning, usage) from the store, or None (absent, unreadable or unreachable: ask again)."""
        if store is None:
            return None
        try:
            if not store.exists(key):
                return None
            record = json.loads(store.get_bytes(key))
            return Reasoning.from_dict(record["reasoning"]), record.get("usage")
        except Exception as e:
            log.warning("ignoring the cached reasoning %s: %s: %s", key, type(e).__name__, e)
            return None

    # -- call -------------------------------------------------------------------------------------
    def reason(self, inp: ReasonInput, store=None) -> ReasonResult:
        """Ask Gemini (or the cache). Raises ReasonerError when it keeps failing."""
        store = store if store is not None else self.store
        t0 = time.perf_counter()
        request = self.build_request(inp)
        key = self._cache_key(request)
        details = {"keyframes": request.keyframes, "overlay_frame": request.overlay_frame,
                   "request_bytes": sum(len(b) for b in request.images) + len(request.prompt)}
        cached = self._cached(store, key)
        if cached is not None:
            reasoning, usage = cached
            log.info("gemini: cached answer %s", key)
            details["cached_usage"] = usage
            return ReasonResult(reasoning, "gemini", degraded=False, latency_s=time.perf_counter() - t0,
                                cached=True, model=self.model, cache_key=key, details=details)
        secret = self._key()
        if not secret:
            raise ReasonerError(f"{API_KEY_ENV} is not set")
        try:
            reasoning, usage, attempts = self._call(request, inp, secret)
        except ReasonerError as e:
            e.latency_s = time.perf_counter() - t0
            raise
        latency = time.perf_counter() - t0
        if store is not None:
            record = {"reasoning": reasoning.to_dict(), "model": self.model, "prompt_version": PROMPT_VERSION,
                      "usage": usage, "latency_s": round(latency, 3), "created": time.time()}
            try:
                store.put_bytes(key, json.dumps(record, indent=1).encode())
            except Exception as e:  # a paid answer is not thrown away because the cache is down
                log.warning("could not cache the reasoning at %s: %s: %s", key, type(e).__name__, e)
        details["usage"] = usage
        return ReasonResult(reasoning, "gemini", degraded=False, latency_s=latency,
                            tokens_in=usage["tokens_in"], tokens_out=usage["tokens_out"], attempts=attempts,
                            model=self.model, cache_key=key if store is not None else None, details=details)

    def _call(self, request: GeminiRequest, inp: ReasonInput, secret: str):
        import httpx
        from google import genai
        from google.genai import errors, types

        contents = [types.Part.from_bytes(data=b, mime_type="image/jpeg") for b in request.images]
        contents.append(types.Part.from_text(text=request.prompt))
        config = self._config()
        tokens_in = tokens_out = 0
        last = "no attempt"
        attempts = 0
        with genai.Client(api_key=secret, http_options=self._http_options()) as client:
            for attempt in range(1, self.max_retries + 2):
                attempts = attempt
                retry_after = None
                try:
                    resp = client.models.generate_content(model=self.model, contents=contents, config=config)
                except errors.APIError as e:
                    last = _redact(f"HTTP {e.code} {e.status or ''}: {e.message or ''}".strip(), secret)
                    if e.code not in RETRYABLE_HTTP:
                        raise ReasonerError(f"gemini refused the request ({last})", attempts, tokens_in,
                                            tokens_out) from None
                    retry_after = _retry_delay(e.details)
                except httpx.TimeoutException:
                    last = f"timed out after {self.timeout_s:g}s"
                except httpx.TransportError as e:
                    last = _redact(f"connection error: {type(e).__name__}: {e}", secret)
                else:
                    u = resp.usage_metadata
                    if u is not None:
                        tokens_in += u.prompt_token_count or 0
                        tokens_out += (u.candidates_token_count or 0) + (u.thoughts_token_count or 0)
                    try:
                        reasoning = parse_answer(_answer_text(resp), inp.grid, len(inp.frames))
                    except InvalidAnswer as e:
                        last = _redact(f"invalid answer: {e}", secret)
                    else:
                        reasoning.warnings = [_redact(w, secret) for w in reasoning.warnings]
                        usage = {"tokens_in": tokens_in, "tokens_out": tokens_out, "attempts": attempt}
                        log.info("gemini %s: answer after %d attempt(s), %d objects, %d+%d tokens", self.model,
                                 attempt, len(reasoning.objects), tokens_in, tokens_out)
                        return reasoning, usage, attempt
                if attempt > self.max_retries:
                    break
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (1 + 0.25 * random.random())
                if retry_after is not None:
                    delay = max(delay, min(retry_after, self.max_backoff_s))
                log.warning("gemini %s: attempt %d failed (%s); retrying in %.2fs", self.model, attempt, last, delay)
                time.sleep(delay)
        raise ReasonerError(f"gemini failed after {attempts} attempt(s): {last}", attempts, tokens_in, tokens_out)


def _answer_text(resp) -> str:
    cands = resp.candidates or []
    if not cands or cands[0].content is None or not cands[0].content.parts:
        reason = cands[0].finish_reason if cands else getattr(resp.prompt_feedback, "block_reason", None)
        raise InvalidAnswer(f"no answer text (finish/block reason: {reason})")
    return "".join(p.text for p in cands[0].content.parts if p.text and not p.thought)


def _retry_delay(details) -> float | None:
    """Seconds from a google.rpc.RetryInfo in an error body ('retryDelay': '20s'), if any."""
    try:
        for d in (details or {}).get("error", {}).get("details", []) or []:
            if isinstance(d, dict) and "retryDelay" in d:
                return float(str(d["retryDelay"]).rstrip("s"))
    except (AttributeError, ValueError, TypeError):
        return None
    return None


# ---------------------------------------------------------------------------------------------
# Offline heuristic


def _gray_small(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if g.shape != size:
        g = cv2.resize(g, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(g.astype(np.float32), (0, 0), 1.0)


def _global_motion(g0: np.ndarray, g1: np.ndarray, exclude: np.ndarray) -> np.ndarray | None:
    """2x3 similarity mapping frame t-1 onto frame t from background features, or None."""
    mask = (~exclude).astype(np.uint8) * 255
    p0 = cv2.goodFeaturesToTrack(g0.astype(np.uint8), 300, 0.01, 6, mask=mask)
    if p0 is None or len(p0) < 12:
        return None
    p1, st, _ = cv2.calcOpticalFlowPyrLK(g0.astype(np.uint8), g1.astype(np.uint8), p0, None, winSize=(21, 21),
                                         maxLevel=3)
    good = st.ravel() == 1
    if good.sum() < 12:
        return None
    m, inliers = cv2.estimateAffinePartial2D(p0[good], p1[good], method=cv2.RANSAC, ransacReprojThreshold=1.5)
    if m is None or inliers is None or inliers.sum() < 10:
        return None
    return m


def _robust_threshold(d: np.ndarray, valid: np.ndarray, floor: float, k: float) -> float:
    v = d[valid]
    if v.size < 100:
        return float("inf")
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    return max(floor, med + k * mad)


def _coupled(active_cells: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Connected groups (8-neighbour, in cell space) of active cells that touch `near`."""
    if not active_cells.any():
        return active_cells
    n, lab = cv2.connectedComponents(active_cells.astype(np.uint8), connectivity=8)
    ids = np.unique(lab[active_cells & near])
    ids = ids[ids > 0]
    return np.isin(lab, ids) if len(ids) else np.zeros_like(active_cells)


class HeuristicReasoner:
    """Offline affected region: contact/shadow band + change that follows the object; degraded.

    ring_cells / ring_radius: band width = max(ring_cells x a cell, ring_radius x the object's radius).
    below_and_beside: keep the band only from the object's top edge down (shadows and contacts fall
        below or beside; set False for overhead light or wall shadows).
    motion: add regions whose frame-to-frame change (after global-motion compensation) or, on a
        locked-off camera, difference to the temporal median background, connects to the object's
        neighbourhood (within `near_cells` cells of the object or its band).
    long_side: analysis resolution. min_cell_fraction: a cell counts as changed above this fraction.
    """

    name = "heuristic"

    def __init__(self, ring_cells: float = 0.5, ring_radius: float = 0.6, below_and_beside: bool = True,
                 motion: bool = True, near_cells: int = 1, long_side: int = 320, min_cell_fraction: float = 0.03,
                 threshold_k: float = 5.0, threshold_floor: float = 6.0, window: int = 1):
        self.ring_cells, self.ring_radius, self.below_and_beside = ring_cells, ring_radius, below_and_beside
        self.motion, self.near_cells, self.long_side = motion, near_cells, long_side
        self.min_cell_fraction, self.threshold_k, self.threshold_floor = min_cell_fraction, threshold_k, threshold_floor
        self.window = window

    def reason(self, inp: ReasonInput, store=None) -> ReasonResult:
        from model.masks.frames import working_size

        t0 = time.perf_counter()
        n, grid = len(inp.frames), inp.grid
        size = working_size(*inp.frames.size, self.long_side)
        size = (max(size[0], grid.rows), max(size[1], grid.cols))
        # Per-frame work streams over the shot: only (T, rows, cols) cell arrays are kept.
        band_cells = np.zeros((n, grid.rows, grid.cols), bool)
        near = np.zeros_like(band_cells)
        for t in range(n):
            m = self._small_mask(inp.masks[t], size)
            ring = self._ring(m, grid, size)
            band_cells[t] = grid.gridify(ring)
            near[t] = grid.dilate(grid.gridify(m | ring), self.near_cells)
        details: dict[str, Any] = {"analysis_size": list(size)}
        motion_cells = np.zeros_like(band_cells)
        if self.motion and n > 1:
            motion_cells, info = self._motion_cells(inp, near, size)
            details.update(info)
        objects = [AffectedObject(
            noun="contact and shadow band", category="visual_artifact",
            why="offline heuristic: the area below and beside the object where shadows and contacts fall",
            localizations={t: [tuple(map(int, c)) for c in np.argwhere(band_cells[t])] for t in range(n)})]
        if motion_cells.any():
            objects.append(AffectedObject(
                noun="change that follows the object", category="visual_artifact",
                why="offline heuristic: regions that change while connected to the object's neighbourhood",
                localizations={t: [tuple(map(int, c)) for c in np.argwhere(motion_cells[t])] for t in range(n)}))
        reasoning = Reasoning(grid.rows, grid.cols, n, objects, source="heuristic",
                              warnings=["offline heuristic: no semantic reasoning (held or knocked objects that "
                                        "would move are not predicted)"])
        details["band_cells"] = int(band_cells.sum())
        details["motion_cells"] = int(motion_cells.sum())
        latency = time.perf_counter() - t0
        log.info("heuristic reasoning: %d frames in %.2fs (%s camera)", n, latency, details.get("camera", "?"))
        return ReasonResult(reasoning, "heuristic", degraded=True, reason="offline heuristic (no VLM reasoning)",
                            latency_s=latency, details=details)

    @staticmethod
    def _small_mask(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if m.shape == size:
            return m
        return cv2.resize(m.astype(np.uint8) * 255, (size[1], size[0]), interpolation=cv2.INTER_AREA) > 0

    def _ring(self, m: np.ndarray, grid: Grid, size: tuple[int, int]) -> np.ndarray:
        area = int(m.sum())
        if area == 0:
            return m
        cell = min(size[0] / grid.rows, size[1] / grid.cols)
        r = max(self.ring_cells * cell, self.ring_radius * np.sqrt(area / np.pi))
        r = max(1, int(round(r)))
        ring = (cv2.dilate(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0) & ~m
        if self.below_and_beside:
            top = int(np.nonzero(m.any(axis=1))[0][0])
            ring[:top] = False
        return ring

    def _active(self, d: np.ndarray, valid: np.ndarray, grid: Grid) -> np.ndarray:
        thr = _robust_threshold(d, valid, self.threshold_floor, self.threshold_k)
        active = (d > thr) & valid
        active = cv2.morphologyEx(active.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        return grid.gridify(active, self.min_cell_fraction)

    def _motion_cells(self, inp: ReasonInput, near: np.ndarray, size):
        frames, grid = inp.frames, inp.grid
        n = len(frames)
        h, w = size
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

        def zone(t):  # the object (and its soft edge) changes by definition: not evidence
            return cv2.dilate(self._small_mask(inp.masks[t], size).astype(np.uint8), ker) > 0

        cells = np.zeros((n, grid.rows, grid.cols), bool)
        shifts = []
        # (b) frame-to-frame change after global-motion compensation, connected to the object
        g_prev, z_prev = _gray_small(frames[0], size), zone(0)
        for t in range(1, n):
            g, z = _gray_small(frames[t], size), zone(t)
            m = _global_motion(g_prev, g, z_prev | z)
            shifts.append(np.inf if m is None else float(np.hypot(m[0, 2], m[1, 2]) + abs(m[0, 1]) * max(h, w)))
            if m is not None:
                prev = cv2.warpAffine(g_prev, m, (w, h), flags=cv2.INTER_LINEAR)
                valid = cv2.warpAffine(np.ones((h, w), np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
                valid = (cv2.erode(valid.astype(np.uint8), ker) > 0) & ~(z | z_prev)
                c = _coupled(self._active(np.abs(g - prev), valid, grid), near[t] | near[t - 1])
                cells[t] |= c
                cells[t - 1] |= c
            g_prev, z_prev = g, z
        shifts = np.array(shifts)
        static = bool(np.all(np.isfinite(shifts)) and np.median(shifts) < 0.2 and shifts.max() < 0.6)
        # (c) locked-off camera: difference to the temporal median background, near the object
        if static:
            sample = np.unique(np.linspace(0, n - 1, min(n, 31)).round().astype(int))
            bg = np.median(np.stack([_gray_small(frames[t], size) for t in sample]), axis=0)
            for t in range(n):
                c = self._active(np.abs(_gray_small(frames[t], size) - bg), ~zone(t), grid)
                cells[t] |= _coupled(c, near[t])
        if self.window > 0:
            out = cells.copy()
            for dt in range(1, self.window + 1):
                out[dt:] |= cells[:-dt]
                out[:-dt] |= cells[dt:]
            cells = out
        return cells, {"camera": "static" if static else "moving",
                       "median_shift_px": round(float(np.median(shifts)), 3)}


# ---------------------------------------------------------------------------------------------
# Policy


def default_reasoner(**gemini_kwargs):
    """GeminiReasoner when GEMINI_API_KEY is set, else the HeuristicReasoner."""
    g = GeminiReasoner(**gemini_kwargs)
    return g if g.configured else HeuristicReasoner()


def reason_with_fallback(inp: ReasonInput, gemini: GeminiReasoner | None,
                         heuristic: HeuristicReasoner | None = None, store=None) -> ReasonResult:
    """Gemini when configured; the offline heuristic (degraded=True, with the reason) otherwise or on failure."""
    heuristic = heuristic or HeuristicReasoner()
    if gemini is None:
        why = "no Gemini reasoner configured"
    elif not gemini.configured:
        why = f"Gemini not configured ({API_KEY_ENV} is not set)"
    else:
        try:
            return gemini.reason(inp, store=store)
        except ReasonerError as e:
            why = _redact(str(e), gemini._key())
            log.warning("reasoning falls back to the offline heuristic: %s", why)
            spent = (e.attempts, e.tokens_in, e.tokens_out, e.latency_s)
        except Exception as e:  # a bug or an SDK surprise must not fail the shot: degrade and say so
            why = _redact(f"unexpected {type(e).__name__}: {e}", gemini._key())
            log.warning("reasoning falls back to the offline heuristic: %s", why)
            spent = (0, 0, 0, 0.0)
        else:  # pragma: no cover
            raise AssertionError
        result = heuristic.reason(inp)
        result.reason = f"{why}; used the offline heuristic"
        result.attempts, result.tokens_in, result.tokens_out = spent[0], spent[1], spent[2]
        result.latency_s += spent[3]
        result.model = gemini.model
        return result
    result = heuristic.reason(inp)
    result.reason = f"{why}; used the offline heuristic"
    return result
