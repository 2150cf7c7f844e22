"""Split a shot's frames into chunks VOID can take: <=197 frames, overlapping, padded to 8m+5.

VOID accepts clip lengths 85, 93, ..., 197 (8m+5, at least 85). Shots longer than one chunk are
cut into the fewest chunks that keep at least `MIN_OVERLAP` frames of overlap (conform cross-fades
there), with lengths as even as possible. Each chunk records the model length it is mirror-padded
to; padded frames never reach a deliverable.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_FRAMES = 197
MIN_MODEL_FRAMES = 85
MIN_OVERLAP = 16
VALID_LENGTHS = tuple(range(MIN_MODEL_FRAMES, MAX_FRAMES + 1, 8))  # 85, 93, ..., 197


def padded_length(frames: int) -> int:
    """The smallest valid model length that holds `frames` frames."""
    if not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"a chunk holds 1..{MAX_FRAMES} frames, got {frames}")
    return next(n for n in VALID_LENGTHS if n >= frames)


@dataclass(frozen=True)
class Chunk:
    """Frames [start, end) of a shot (offsets into the shot's extracted frames, handles included)."""

    index: int
    start: int
    end: int
    padded_to: int

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def padding(self) -> int:
        return self.padded_to - self.frames


def plan_chunks(frames: int, max_frames: int = MAX_FRAMES, min_overlap: int = MIN_OVERLAP) -> list[Chunk]:
    """The fewest chunks of <= max_frames covering `frames`, consecutive ones overlapping >= min_overlap.

    With n chunks of length L the cover needs n*L - (n-1)*overlap >= frames; n is the smallest count
    for which max_frames suffices, then starts are spread evenly so chunk lengths differ by at most one
    and overlaps by at most one.
    """
    if frames < 1:
        raise ValueError(f"a shot needs at least one frame, got {frames}")
    if not min_overlap < max_frames <= MAX_FRAMES:
        raise ValueError(f"need min_overlap < max_frames <= {MAX_FRAMES}, got {min_overlap}, {max_frames}")
    if frames <= max_frames:
        return [Chunk(0, 0, frames, padded_length(frames))]
    step = max_frames - min_overlap
    n = 1 + -(-(frames - max_frames) // step)  # ceil
    # Even lengths: every chunk length L = ceil((frames + (n-1)*overlap) / n) with overlap >= min_overlap.
    length = -(-(frames + (n - 1) * min_overlap) // n)
    # Spread the starts evenly over [0, frames - length].
    span = frames - length
    starts = [round(i * span / (n - 1)) for i in range(n)]
    chunks = [Chunk(i, s, s + length, padded_length(length)) for i, s in enumerate(starts)]
    return chunks
