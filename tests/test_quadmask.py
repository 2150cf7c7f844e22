"""shots.quadmask: VOID's thresholds, bit-exact storage, resizing that invents no values, and
refusal of masks with more than 8 bits per sample."""
from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from shots.media import MediaError, probe
from shots.quadmask import LEVELS, check_levels, quantize, read_mask_frames, resize_mask, write_quadmask


def ffmpeg_exe() -> str:
    local = Path(sys.executable).parent / "ffmpeg"
    if local.exists():
        return str(local)
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def blob_masks(n: int, h: int = 96, w: int = 160, levels=LEVELS) -> list[np.ndarray]:
    """Masks with moving rectangles of each level (the shape masks have), over 'keep'."""
    out = []
    for i in range(n):
        m = np.full((h, w), levels[-1], np.uint8)
        for k, v in enumerate(levels[:-1]):
            y, x = 8 + 20 * k, (10 + 7 * i + 30 * k) % (w - 40)
            m[y:y + 30, x:x + 40] = v
        out.append(m)
    return out


def test_quantize_thresholds_exact():
    values = np.array([[0, 31, 32, 95, 96, 191, 192, 255]], np.uint8)
    assert quantize(values).tolist() == [[0, 0, 63, 63, 127, 127, 255, 255]]
    ramp = np.arange(256, dtype=np.uint8)[None, :]
    q = quantize(ramp)[0]
    assert q.dtype == np.uint8
    assert (q[:32] == 0).all() and (q[32:96] == 63).all() and (q[96:192] == 127).all() and (q[192:] == 255).all()
    assert quantize(np.array([list(LEVELS)], np.uint8)).tolist() == [list(LEVELS)]  # idempotent
    # Wider types use the same thresholds.
    assert quantize(values.astype(np.float32)).tolist() == quantize(values).tolist()
    assert quantize(np.array([[31.5, 95.2, 191.0, 300.0, -4.0]])).tolist() == [[63, 127, 127, 255, 0]]


def test_quantize_takes_first_channel():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = [[10, 50, 100], [150, 200, 250]]
    rgb[..., 1] = 255  # must be ignored
    rgb[..., 2] = 0
    assert quantize(rgb).tolist() == [[0, 63, 127], [127, 255, 255]]
    with pytest.raises(ValueError, match="shape"):
        quantize(np.zeros(5, np.uint8))


def test_check_levels_names_where():
    check_levels(np.array([[0, 63], [127, 255]], np.uint8), "fine")
    with pytest.raises(ValueError, match=r"shot_010 frame 3.*\[64, 200\]"):
        check_levels(np.array([[0, 64], [200, 255]], np.uint8), "shot_010 frame 3")
    with pytest.raises(ValueError, match="shot_010.*uint8"):
        check_levels(np.zeros((2, 2), np.float32), "shot_010")


@pytest.mark.parametrize("name", ["mask.mkv", "mask.####.png", "mask.%04d.png"])
def test_round_trip_bit_exact(tmp_path, name):
    masks = blob_masks(12)
    assert write_quadmask(tmp_path / name, masks, Fraction(24000, 1001)) == 12
    back = list(read_mask_frames(tmp_path / name))
    assert len(back) == 12
    assert all(b.dtype == np.uint8 and np.array_equal(a, b) for a, b in zip(masks, back))
    assert probe(tmp_path / name).pix_fmt == "gray"
    # Ranges are as exact as for plates.
    assert all(np.array_equal(a, b) for a, b in zip(masks[5:9], read_mask_frames(tmp_path / name, 5, 4)))
    if name.endswith(".png"):
        assert probe(tmp_path / name).start_frame == 1001
        assert not [f for f in os.listdir(tmp_path) if "partial" in f]


def test_write_refuses_values_outside_levels(tmp_path):
    masks = blob_masks(3)
    masks[1][0, 0] = 100
    with pytest.raises(ValueError, match=r"bad\.mkv, frame 1.*\[100\]"):
        write_quadmask(tmp_path / "bad.mkv", masks, 24)
    with pytest.raises(ValueError, match=r"bad\.mkv, frame 0.*\(H, W\)"):
        write_quadmask(tmp_path / "bad.mkv", [np.zeros((4, 4, 3), np.uint8)], 24)
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_resize_never_invents_values():
    rng = np.random.default_rng(0)
    two = blob_masks(1, 97, 171, levels=(0, 255))[0]  # remove/keep only
    four = rng.choice(np.array(LEVELS, np.uint8), size=(97, 171))
    for size in [(48, 85), (384, 672), (13, 7), (97, 171), (200, 101)]:
        r2 = resize_mask(two, size)
        assert r2.shape == size and set(np.unique(r2).tolist()) <= {0, 255}, size  # no 'affected' edge band
        r4 = resize_mask(four, size)
        assert set(np.unique(r4).tolist()) <= set(LEVELS), size
    # Nearest samples pixel centres: halving picks every second pixel, offset by one.
    even = rng.choice(np.array(LEVELS, np.uint8), size=(64, 96))
    assert np.array_equal(resize_mask(even, (32, 48)), even[1::2, 1::2])
    # Unquantized input is snapped first.
    assert set(np.unique(resize_mask(rng.integers(0, 256, (40, 60), dtype=np.uint8), (20, 30))).tolist()) <= set(LEVELS)


def test_read_mask_frames_resized(tmp_path):
    masks = blob_masks(4, 120, 200, levels=(0, 255))
    write_quadmask(tmp_path / "m.mkv", masks, 24)
    small = list(read_mask_frames(tmp_path / "m.mkv", size=(48, 84)))
    assert [m.shape for m in small] == [(48, 84)] * 4
    assert all(set(np.unique(m).tolist()) <= {0, 255} for m in small)


def test_rgb_and_lossy_masks_are_requantized(tmp_path):
    masks = blob_masks(6, 96, 160)
    # RGB PNG whose first channel is the mask and other channels are noise: first channel wins.
    rng = np.random.default_rng(1)
    for i, m in enumerate(masks):
        rgb = np.dstack([m, rng.integers(0, 256, m.shape, dtype=np.uint8), np.zeros_like(m)])
        cv2.imwrite(str(tmp_path / f"rgb.{1001 + i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert all(np.array_equal(a, b) for a, b in zip(masks, read_mask_frames(tmp_path / "rgb.####.png")))
    # Lossy yuv420p H.264 (what not to store masks as): values snap back to the levels.
    raw = b"".join(np.repeat(m[..., None], 3, axis=2).tobytes() for m in masks)
    lossy = tmp_path / "lossy.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", "160x96", "-r", "24", "-i", "-", "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p",
                    str(lossy)], input=raw, check=True)
    back = list(read_mask_frames(lossy))
    assert len(back) == 6
    for a, b in zip(masks, back):
        assert set(np.unique(b).tolist()) <= set(LEVELS)
        assert (a == b).mean() > 0.97


def test_non_8bit_masks_rejected(tmp_path):
    # 16-bit PNG sequence.
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"deep.{1001 + i}.png"), np.full((16, 16), 65535, np.uint16))
    with pytest.raises(MediaError, match=r"deep\.1001\.png.*8-bit"):
        list(read_mask_frames(tmp_path / "deep.####.png"))
    # 10-bit video.
    ten = tmp_path / "mask10.mkv"
    with av.open(str(ten), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "gray10le"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((16, 32), 1023, np.uint16), format="gray10le")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(MediaError, match=r"mask10\.mkv.*gray10le.*8-bit|mask10\.mkv.*8-bit.*gray10le"):
        list(read_mask_frames(ten))


@pytest.mark.timeout(120)  # before the media timeout existed this hung forever
def test_mask_that_never_opens_times_out(stalled_path, short_media_timeout):
    mask = stalled_path("quadmask.mkv")  # a FIFO: open() blocks like a file on a hung mount
    with pytest.raises(MediaError) as e:
        read_mask_frames(mask, 0, 4)
    assert str(e.value) == f"{mask}: did not open within 2 s (stalled storage? VOIDBATCH_MEDIA_TIMEOUT sets the limit)"
