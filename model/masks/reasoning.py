"""What reasoning produces, and how an answer becomes one: the types every reasoner shares.

A reasoner (Gemini, the offline heuristic) looks at a `ReasonInput` and returns a `ReasonResult`: a
validated `Reasoning` (affected things located on the grid) plus how it was obtained, for the
manifest. `parse_answer` turns a model's JSON into a `Reasoning`: structure and types must hold,
while cells or frames out of range are dropped or clamped with a warning, so one bad coordinate
never throws a paid answer away.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from model.masks.frames import Frames, MaskStack
from model.masks.grid import Grid

CATEGORIES = ("physical", "visual_artifact")


class ReasonerError(Exception):
    """Reasoning failed for good (after retries, or on a non-retryable error). Never holds the key."""

    def __init__(self, message: str, attempts: int = 0, tokens_in: int = 0, tokens_out: int = 0,
                 latency_s: float = 0.0):
        super().__init__(message)
        self.attempts, self.tokens_in, self.tokens_out, self.latency_s = attempts, tokens_in, tokens_out, latency_s


class InvalidAnswer(ValueError):
    """The model's answer is not JSON of the expected shape."""


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


# --- answer validation -----------------------------------------------------------------------

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

