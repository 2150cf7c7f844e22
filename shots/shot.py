"""What voidbatch knows about one clip of an edit: its media, exact ranges and removal instructions.

Shots cross task and process boundaries, so they are small frozen values with a JSON form
(`to_dict` / `from_dict`); frames never travel with them.

Every shot of a batch is accounted for in one of three ways: `skip_reason` says why it is skipped
(no instructions, disabled, zero duration); otherwise it is flagged, and `problem` says why it fails
before any work (bad instructions, missing media) or is None when it can be processed.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

from shots.frames import FrameRange, rate_str


@dataclass(frozen=True)
class MediaRef:
    """A resolved media file: a movie path or an image-sequence pattern ('plate.####.exr').

    `media_range` is the span of the file in source time: file frame 0 is source frame
    `media_range.start` (its start timecode, or a sequence's first frame number).
    """

    path: str
    kind: str  # 'movie' | 'sequence'
    media_range: FrameRange
    width: int | None = None
    height: int | None = None
    timecode: str | None = None
    drop_frame: bool | None = None  # the file's timecode counts drop-frame; None: it states no timecode

    def file_index(self, source_frame: int) -> int:
        return source_frame - self.media_range.start

    def timecode_at(self, source_frame: int | None = None) -> str:
        """Source timecode of `source_frame` (default: the first), counted as the file counts it (DF or NDF)."""
        return self.media_range.timecode(source_frame, drop_frame=self.drop_frame)


@dataclass(frozen=True)
class Instructions:
    """Removal instructions of a clip, from OTIO metadata under 'voidbatch', a marker or a sidecar.

    Mask files are paths resolved at ingest; frame i of a mask file is frame i of the media file
    unless `mask_start_frame` (a media file index) says where the mask starts.
    """

    prompt: str | None = None  # VOID's `bg`: the scene after removal
    instruction: str | None = None  # what to remove, for reasoning ("the boom mic and its shadow")
    quadmask: str | None = None
    matte: str | None = None
    mask_start_frame: int | None = None
    points: dict[int, list[list[float]]] = field(default_factory=dict)
    negative_points: dict[int, list[list[float]]] = field(default_factory=dict)
    boxes: dict[int, list[float]] = field(default_factory=dict)
    enabled: bool = True
    colourspace: str | None = None  # the plate's input colour space (an OCIO name), when its files do not say
    origin: str = "otio"  # otio | sidecar | marker
    invalid: bool = False  # the clip carries instructions that could not be read; Shot.problem says why

    @property
    def actionable(self) -> bool:
        """True when there is anything to remove (a mask, a matte, clicks or boxes, or a prompt)."""
        return self.enabled and bool(
            self.quadmask or self.matte or self.points or self.boxes or self.prompt or self.instruction
        )


# Instruction keys, wherever they come from (OTIO metadata under 'voidbatch', a marker, a sidecar row).
INSTRUCTION_KEYS = ("prompt", "instruction", "quadmask", "matte", "mask_start_frame", "points", "negative_points",
                    "boxes", "enabled", "colourspace")
KEY_ALIASES = {"bg": "prompt"}  # VOID's own name for the prompt
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def unknown_key_problem(key: str, known, kind: str = "key", under: str | None = None) -> str:
    """"unknown key 'qaudmask' under 'voidbatch' (did you mean 'quadmask'?)" (with the closest known key)."""
    where = f" under {under!r}" if under else ""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return f"unknown {kind} {key!r}{where}{hint}"


def check_instructions(raw: Mapping, under: str | None = None, extra_keys=()) -> tuple[dict, list[str]]:
    """(fields that are valid, typed; one line per invalid key or value) of a raw instruction dict.

    Keys are INSTRUCTION_KEYS (plus KEY_ALIASES and `extra_keys`, which are dropped). Values are
    checked, not guessed: frame numbers are integers, clicks [[x, y], ...] and boxes
    [x0, y0, x1, y1] are finite numbers, `enabled` is a bool (or yes/no, true/false, 1/0 text).
    """
    clean: dict = {}
    problems: list[str] = []
    known = INSTRUCTION_KEYS + tuple(KEY_ALIASES)
    for key, value in raw.items():
        key = str(key)
        if key in extra_keys:
            continue
        if key not in known:
            problems.append(unknown_key_problem(key, known, under=under))
            continue
        name = KEY_ALIASES.get(key, key)
        if name == "prompt" and key != name and "prompt" in raw:
            continue  # an explicit 'prompt' wins over 'bg'
        if value is None:
            continue
        try:
            clean[name] = _check_value(name, value)
        except ValueError as e:
            problems.append(f"{key!r} {e}")
    return clean, problems


def _check_value(name: str, value):
    if name in ("prompt", "instruction", "quadmask", "matte", "colourspace"):
        if not isinstance(value, str):
            raise ValueError(f"must be text, got {_shown(value)}")
        return value
    if name == "mask_start_frame":
        return _frame_number(value, "must be a frame number (an integer >= 0)")
    if name == "enabled":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"must be true or false, got {_shown(value)}")
    # points, negative_points, boxes: {frame: coordinates}
    shape = "[x0, y0, x1, y1]" if name == "boxes" else "[[x, y], ...]"
    if not isinstance(value, Mapping):
        raise ValueError(f"must map frame numbers to {shape}, got {_shown(value)}")
    out = {}
    for frame, coords in value.items():
        f = _frame_number(frame, f"keys must be frame numbers, got {_shown(frame)}")
        if not (_box(coords) if name == "boxes" else _points(coords)):
            extra = " with x1 > x0 and y1 > y0" if name == "boxes" else " in pixels"
            raise ValueError(f"on frame {f}: expected {shape}{extra}, got {_shown(coords)}")
        out[f] = coords
    return out


def _frame_number(value, message: str) -> int:
    if isinstance(value, bool):
        raise ValueError(message)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise ValueError(message if "got" in message else f"{message}, got {_shown(value)}")
    return value


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _points(coords) -> bool:
    """[[x, y], ...] (empty allowed) or one [x, y]."""
    if not isinstance(coords, (list, tuple)):
        return False
    if len(coords) == 2 and all(_number(v) for v in coords):
        return True
    return all(isinstance(p, (list, tuple)) and len(p) == 2 and all(_number(v) for v in p) for p in coords)


def _box(coords) -> bool:
    return (isinstance(coords, (list, tuple)) and len(coords) == 4 and all(_number(v) for v in coords)
            and coords[2] > coords[0] and coords[3] > coords[1])


def _shown(value, limit: int = 60) -> str:
    """A value as the user wrote it, for a message: repr, shortened, with its type when not obvious."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if isinstance(value, str):
        return f"text {text}"
    return text


@dataclass(frozen=True)
class Shot:
    """One clip of the edit, in its own media's frame numbers.

    `cut_range` is what the edit shows (a transition's overlap included); `source_range` adds the
    handles, clamped to the media. Both are in source time at `rate` (EDL source timecode frames,
    OTIO clip time). `problem` says why the shot cannot be processed, if it cannot.
    """

    shot_id: str
    clip_name: str
    track: str
    clip_index: int
    rate: Fraction
    cut_range: FrameRange
    source_range: FrameRange
    handles: tuple[int, int]
    media: MediaRef | None = None
    instructions: Instructions | None = None
    problem: str | None = None
    record_in: int | None = None  # record frame of the cut-in on the edit's timeline, if known

    @property
    def skip_reason(self) -> str | None:
        """Why the batch skips this shot rather than processing it, or None (then it is flagged)."""
        ins = self.instructions
        if ins is None:
            return "no removal instructions"
        if not ins.enabled:
            return "instructions disabled (enabled: false)"
        if not (ins.actionable or ins.invalid):
            return "no removal instructions"
        if self.cut_range.duration == 0:
            return "zero-duration clip in the edit"
        return None

    @property
    def flagged(self) -> bool:
        """The edit asks for a removal on this shot: it is processed, or fails with `problem`."""
        return self.skip_reason is None

    @property
    def frames(self) -> int:
        return self.source_range.duration

    @property
    def file_start(self) -> int:
        """File index (0-based) of the first frame to extract, handles included."""
        if self.media is None:
            raise ValueError(f"shot {self.shot_id} has no resolved media")
        return self.media.file_index(self.source_range.start)

    @property
    def drop_frame(self) -> bool | None:
        """Whether the plate's timecode counts drop-frame (None: no plate timecode; OTIO's convention applies)."""
        return self.media.drop_frame if self.media is not None else None

    def source_timecode(self, frame: int | None = None) -> str:
        """Source timecode of source frame `frame` (default: source_range.start), counted as the plate counts
        it: a 29.97 non-drop plate stays non-drop (FrameRange.timecode alone would give OTIO's drop-frame)."""
        return self.source_range.timecode(frame, drop_frame=self.drop_frame)

    def with_problem(self, problem: str) -> Shot:
        return replace(self, problem=problem)

    # -- JSON form ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def fr(r: FrameRange) -> dict:
            return {"start": r.start, "duration": r.duration, "rate": rate_str(r.rate)}

        d = asdict(self)
        d["skip_reason"] = self.skip_reason  # derived: from_dict ignores it
        d["rate"] = rate_str(self.rate)
        d["cut_range"] = fr(self.cut_range)
        d["source_range"] = fr(self.source_range)
        d["handles"] = list(self.handles)
        if self.media is not None:
            d["media"]["media_range"] = fr(self.media.media_range)
        if self.instructions is not None:
            for k in ("points", "negative_points", "boxes"):
                d["instructions"][k] = {str(f): v for f, v in d["instructions"][k].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Shot:
        def fr(x: dict) -> FrameRange:
            return FrameRange(int(x["start"]), int(x["duration"]), Fraction(x["rate"]))

        media = d.get("media")
        if media is not None:
            media = MediaRef(**{**media, "media_range": fr(media["media_range"])})
        ins = d.get("instructions")
        if ins is not None:
            ins = Instructions(**{**ins, **{k: {int(f): v for f, v in (ins.get(k) or {}).items()}
                                            for k in ("points", "negative_points", "boxes")}})
        return cls(
            shot_id=d["shot_id"], clip_name=d["clip_name"], track=d["track"], clip_index=int(d["clip_index"]),
            rate=Fraction(d["rate"]), cut_range=fr(d["cut_range"]), source_range=fr(d["source_range"]),
            handles=tuple(d["handles"]), media=media, instructions=ins, problem=d.get("problem"),
            record_in=d.get("record_in"),
        )
