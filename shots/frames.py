"""Exact frame arithmetic: integer frames at a rational rate, never bare float seconds.

OpenTimelineIO keeps rates as doubles (23.976 vs 24000/1001 compare unequal); inside voidbatch a
rate is a `Fraction` and a range is whole frames, so chunking and conform never drift by a frame.
OTIO objects are converted only at the edges (`from_otio` / `to_otio`).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import opentimelineio as otio

# Rates editorial software writes as floats, mapped to the exact NTSC fractions.
_NTSC = {
    23.98: Fraction(24000, 1001),
    29.97: Fraction(30000, 1001),
    47.95: Fraction(48000, 1001),
    59.94: Fraction(60000, 1001),
    119.88: Fraction(120000, 1001),
}


def normalize_rate(rate: float | int | str | Fraction) -> Fraction:
    """Exact rate for a float/str rate: 23.976, 23.976024627685547 and '24000/1001' all give 24000/1001."""
    if isinstance(rate, Fraction):
        return rate
    if isinstance(rate, str):
        rate = Fraction(rate) if "/" in rate else float(rate)
    if isinstance(rate, Fraction):
        return rate
    value = float(rate)
    if value <= 0:
        raise ValueError(f"frame rate must be positive, got {rate!r}")
    ntsc = _NTSC.get(round(value, 2))
    if ntsc is not None:
        return ntsc
    exact = Fraction(value).limit_denominator(1001)
    if abs(float(exact) - value) > 1e-6:
        raise ValueError(f"frame rate {rate!r} is not a rate voidbatch can represent exactly")
    return exact


def rate_str(rate: Fraction) -> str:
    """'24' or '24000/1001': how rates are written to JSON and the manifest."""
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def to_frames(time: otio.opentime.RationalTime, rate: Fraction) -> int:
    """A RationalTime as whole frames at `rate`: rescale, round, then truncate (OTIO's to_frames truncates)."""
    return int(round(time.value_rescaled_to(float(rate))))


@dataclass(frozen=True)
class FrameRange:
    """`duration` frames from `start` at `rate`; `end_exclusive` is one past the last frame."""

    start: int
    duration: int
    rate: Fraction

    def __post_init__(self):
        if self.duration < 0:
            raise ValueError(f"negative duration {self.duration}")
        object.__setattr__(self, "rate", normalize_rate(self.rate))

    @property
    def end_exclusive(self) -> int:
        return self.start + self.duration

    @property
    def end_inclusive(self) -> int:
        return self.start + self.duration - 1

    @classmethod
    def from_start_end_exclusive(cls, start: int, end: int, rate) -> FrameRange:
        return cls(start, end - start, rate)

    def extended_by(self, head: int, tail: int) -> FrameRange:
        return FrameRange(self.start - head, self.duration + head + tail, self.rate)

    def clamped(self, other: FrameRange) -> FrameRange:
        """This range limited to `other` (same rate), e.g. requested handles limited to the media."""
        start = max(self.start, other.start)
        end = min(self.end_exclusive, other.end_exclusive)
        return FrameRange(start, max(0, end - start), self.rate)

    def contains(self, other: FrameRange) -> bool:
        return self.start <= other.start and other.end_exclusive <= self.end_exclusive

    @classmethod
    def from_otio(cls, time_range: otio.opentime.TimeRange, rate: Fraction | None = None) -> FrameRange:
        rate = normalize_rate(rate if rate is not None else time_range.start_time.rate)
        start = to_frames(time_range.start_time, rate)
        end = to_frames(time_range.end_time_exclusive(), rate)
        return cls(start, end - start, rate)

    def to_otio(self) -> otio.opentime.TimeRange:
        r = float(self.rate)
        return otio.opentime.TimeRange(
            otio.opentime.RationalTime(self.start, r), otio.opentime.RationalTime(self.duration, r)
        )

    def timecode(self, frame: int | None = None, drop_frame: bool | None = None) -> str:
        """SMPTE timecode of `frame` (default: start).

        `drop_frame` None follows OTIO: 29.97/59.94 count drop-frame (';'). A plate's own frames should be
        counted as the plate counts them: pass its `drop_frame` (MediaInfo, MediaRef), or use
        MediaRef.timecode_at / Shot.source_timecode, so a 29.97 non-drop plate's '01:00:00:00' stays
        '01:00:00:00' and does not become '01:00:03;18'.
        """
        frame = self.start if frame is None else frame
        r = float(self.rate)
        if not otio.opentime.RationalTime.is_valid_timecode_rate(r):
            # Not a SMPTE rate (e.g. 12 fps): count nominal frames per second, non-drop.
            fps = max(1, round(r))
            sign, frame = ("-" if frame < 0 else ""), abs(frame)
            ss, ff = divmod(frame, fps)
            return f"{sign}{ss // 3600:02d}:{ss // 60 % 60:02d}:{ss % 60:02d}:{ff:02d}"
        t = otio.opentime.RationalTime(frame, r)
        if drop_frame is None:
            return otio.opentime.to_timecode(t, r)
        return otio.opentime.to_timecode(t, r, drop_frame)


def frames_from_timecode(timecode: str, rate: Fraction) -> int:
    """Frame number of a SMPTE timecode ('01:00:00:00', drop-frame ';' too) at `rate`."""
    return int(round(otio.opentime.from_timecode(timecode, float(rate)).value))
