from fractions import Fraction

import opentimelineio as otio
import pytest

from shots.frames import FrameRange, frames_from_timecode, normalize_rate, rate_str
from shots.naming import ShotIds, slug
from shots.plan import MAX_FRAMES, MIN_OVERLAP, VALID_LENGTHS, padded_length, plan_chunks


def test_valid_lengths_are_8m_plus_5():
    assert VALID_LENGTHS[0] == 85 and VALID_LENGTHS[-1] == 197
    assert all((n - 5) % 8 == 0 for n in VALID_LENGTHS)
    assert padded_length(1) == 85 and padded_length(86) == 93 and padded_length(197) == 197
    with pytest.raises(ValueError):
        padded_length(198)


@pytest.mark.parametrize("frames", range(1, 2001))
def test_chunk_plan_properties(frames):
    chunks = plan_chunks(frames)
    # covers exactly [0, frames), in order
    assert chunks[0].start == 0 and chunks[-1].end == frames
    covered = set()
    for c in chunks:
        assert 1 <= c.frames <= MAX_FRAMES
        assert c.padded_to in VALID_LENGTHS and c.padded_to >= c.frames
        assert c.padded_to - c.frames < 8 or c.padded_to == 85  # the smallest valid length
        covered.update(range(c.start, c.end))
    assert covered == set(range(frames))
    for a, b in zip(chunks, chunks[1:]):
        assert b.start > a.start and a.end - b.start >= MIN_OVERLAP
    # the fewest chunks: one fewer could not cover the shot even at full length and minimum overlap
    n = len(chunks)
    assert n == 1 or (n - 1) * MAX_FRAMES - (n - 2) * MIN_OVERLAP < frames
    # as even as possible
    lengths = [c.frames for c in chunks]
    assert max(lengths) - min(lengths) <= 1
    overlaps = [a.end - b.start for a, b in zip(chunks, chunks[1:])]
    assert not overlaps or max(overlaps) - min(overlaps) <= 1


def test_rates_are_exact():
    assert normalize_rate(23.976) == Fraction(24000, 1001)
    assert normalize_rate(23.976024627685547) == Fraction(24000, 1001)
    assert normalize_rate("24000/1001") == Fraction(24000, 1001)
    assert normalize_rate(29.97) == Fraction(30000, 1001)
    assert normalize_rate(25) == 25 and rate_str(Fraction(24000, 1001)) == "24000/1001"
    with pytest.raises(ValueError):
        normalize_rate(0)


def test_frame_range_otio_round_trip_at_23976():
    rate = Fraction(24000, 1001)
    r = FrameRange(86400, 48, rate)
    back = FrameRange.from_otio(r.to_otio())
    assert back == r
    # OTIO's to_frames truncates: 10 frames at 24 rescaled to 23.976 is 9.99 -> must round to 10
    t = otio.opentime.TimeRange(otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(10, 24))
    assert FrameRange.from_otio(t, rate).duration == 10
    assert r.timecode() == "01:00:00:00"  # NTSC timecode counts nominal 24
    assert frames_from_timecode("01:00:04:05", Fraction(24)) == 86501


def test_drop_frame_timecode_at_2997():
    rate = Fraction(30000, 1001)
    r = FrameRange(17982, 10, rate)
    assert r.timecode() == "00:10:00;00"
    assert r.timecode(drop_frame=False) == "00:09:59:12"
    assert frames_from_timecode("00:10:00;00", rate) == 17982


def test_timecode_at_non_smpte_rate():
    assert FrameRange(12 * 3661 + 5, 1, Fraction(12)).timecode() == "01:01:01:05"


def test_frame_range_clamp_and_extend():
    media = FrameRange(100, 50, Fraction(24))
    cut = FrameRange(104, 10, Fraction(24))
    want = cut.extended_by(8, 8)
    got = want.clamped(media)
    assert (got.start, got.end_exclusive) == (100, 122)
    assert cut.end_inclusive == 113 and cut.end_exclusive == 114


@pytest.mark.parametrize("name", ["/", "../../x", "", "\x00\x07bell", "a" * 300, "..", "C:\\x\\y", "日本語"])
def test_shot_ids_are_safe(name):
    ids = ShotIds()
    sid = ids.claim(name)
    assert sid and len(sid) <= 64
    assert "/" not in sid and "\\" not in sid and ".." not in sid and not sid.startswith(".")
    assert all(c.isalnum() or c in "_-" for c in sid)
    assert ids.claim(name) != sid  # a repeat is made unique


def test_shot_ids_unique_and_readable():
    ids = ShotIds()
    assert ids.claim("ZZ100_501 (LAY3)") == "ZZ100_501_LAY3"
    assert ids.claim("zz100_501 (lay3)") == "zz100_501_lay3_2"  # case-insensitive file systems
    long_a, long_b = ids.claim("x" * 300 + "a"), ids.claim("x" * 300 + "b")
    assert long_a != long_b
    assert slug("../../etc/passwd") == "etc_passwd"
