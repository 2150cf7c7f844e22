"""What voidbatch knows about one clip of an edit: its media, exact ranges and removal instructions.

Shots cross task and process boundaries, so they are small frozen values with a JSON form
(`to_dict` / `from_dict`); frames never travel with them.
"""
from __future__ import annotations

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

    def file_index(self, source_frame: int) -> int:
        return source_frame - self.media_range.start


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
    origin: str = "otio"  # otio | sidecar | marker

    @property
    def actionable(self) -> bool:
        """True when there is anything to remove (a mask, a matte, clicks or boxes, or a prompt)."""
        return self.enabled and bool(
            self.quadmask or self.matte or self.points or self.boxes or self.prompt or self.instruction
        )


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
    def flagged(self) -> bool:
        return self.instructions is not None and self.instructions.actionable

    @property
    def frames(self) -> int:
        return self.source_range.duration

    @property
    def file_start(self) -> int:
        """File index (0-based) of the first frame to extract, handles included."""
        if self.media is None:
            raise ValueError(f"shot {self.shot_id} has no resolved media")
        return self.media.file_index(self.source_range.start)

    def with_problem(self, problem: str) -> Shot:
        return replace(self, problem=problem)

    # -- JSON form ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def fr(r: FrameRange) -> dict:
            return {"start": r.start, "duration": r.duration, "rate": rate_str(r.rate)}

        d = asdict(self)
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
