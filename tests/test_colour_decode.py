"""Plates read exactly: the YUV matrix and range probe reports are the ones the decode uses, deep video
reads at its own precision without bias, frames come out upright, and probe says what the samples are
(precision, colour, EXR layout, field order, drop-frame timecode).

Every file is generated here. Y'CbCr test pictures are computed in numpy with the standard coefficients
and encoded losslessly (H.264 qp 0 4:4:4, FFV1), so the expected RGB is exact matrix maths on the stored
codes, not another decoder's opinion.
"""
from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import OpenEXR
import pytest

from shots.frames import FrameRange
from shots.media import ExrLayout, iter_frames, probe, read_frames, read_frames_precise
from tests.conftest import write_exr_sequence

KR_KB = {"bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114)}
TAGS = {  # decoder-side options: the raw input is stamped, so ffmpeg converts nothing on the way to the encoder
    "bt709": ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"],
    "smpte170m": ["-color_primaries", "smpte170m", "-color_trc", "smpte170m", "-colorspace", "smpte170m"],
}
AP0 = (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.0770, 0.32168, 0.33767)
AP1 = (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767)


def ffmpeg_exe() -> str:
    local = Path(sys.executable).parent / "ffmpeg"
    if local.exists():
        return str(local)
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_raw(path: Path, planes, pix_fmt: str, size: tuple[int, int], out_args, in_args=(), frames: int = 1,
               rate: str = "25") -> Path:
    """Raw planes (in pix_fmt's plane order) encoded by the ffmpeg CLI; `in_args` stamp the input (tags)."""
    dtype = np.uint16 if any(d in pix_fmt for d in ("10", "12", "16")) else np.uint8
    data = b"".join(np.ascontiguousarray(p, dtype).tobytes() for p in planes) * frames
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_fmt,
           "-s", f"{size[0]}x{size[1]}", "-r", rate, *in_args, "-i", "-", *out_args, str(path)]
    subprocess.run(cmd, input=data, check=True)
    return path


def colour_bars(width: int, height: int, level: float = 0.75) -> np.ndarray:
    """75% colour bars (white, yellow, cyan, green, magenta, red, blue, black) as exact RGB in 0..1."""
    bars = [(1, 1, 1), (1, 1, 0), (0, 1, 1), (0, 1, 0), (1, 0, 1), (1, 0, 0), (0, 0, 1), (0, 0, 0)]
    rgb = np.zeros((height, width, 3))
    for i, c in enumerate(bars):
        rgb[:, i * width // 8:(i + 1) * width // 8] = np.array(c, float) * level
    return rgb


def to_ycbcr(rgb: np.ndarray, matrix: str, value_range: str, bits: int = 8) -> list[np.ndarray]:
    """Y'CbCr code values of R'G'B' (0..1), ITU-R BT.601/709 maths, rounded (tv: 16..235 x 2^(bits-8))."""
    kr, kb = KR_KB[matrix]
    y = rgb @ np.array([kr, 1 - kr - kb, kb])
    cb, cr = (rgb[..., 2] - y) / (2 * (1 - kb)), (rgb[..., 0] - y) / (2 * (1 - kr))
    step, top, mid = 1 << (bits - 8), (1 << bits) - 1, 1 << (bits - 1)
    if value_range == "tv":
        return [np.rint(step * (16 + 219 * y)), np.rint(mid + step * 224 * cb), np.rint(mid + step * 224 * cr)]
    return [np.rint(top * y), np.rint(mid + top * cb), np.rint(mid + top * cr)]


def from_ycbcr(planes, matrix: str, value_range: str, bits: int = 8) -> np.ndarray:
    """R'G'B' in 8-bit units (unrounded, unclipped) of Y'CbCr codes: the exact inverse of to_ycbcr."""
    kr, kb = KR_KB[matrix]
    y, cb, cr = (np.asarray(p, float) for p in planes)
    step, top, mid = 1 << (bits - 8), (1 << bits) - 1, 1 << (bits - 1)
    if value_range == "tv":
        y, cb, cr = (y / step - 16) / 219, (cb - mid) / (224 * step), (cr - mid) / (224 * step)
    else:
        y, cb, cr = y / top, (cb - mid) / top, (cr - mid) / top
    r, b = y + 2 * (1 - kr) * cr, y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return np.stack([r, g, b], axis=-1) * 255


def stored_planes(path: Path) -> np.ndarray:
    """The (3, H, W) Y'CbCr codes of a 4:4:4 8-bit movie's first frame, as stored."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        assert frame.format.name in ("yuv444p", "yuvj444p")  # H.264 full range decodes as yuvj
        return frame.to_ndarray()


# -- colour bars: the matrix and range probe decides are the ones the decode uses ----------------------------------

BAR_CASES = {
    # name: (size, matrix the Y'CbCr was made with, range, tagged?, container)
    "untagged_hd": ((1920, 1080), "bt709", "tv", False, "mp4"),
    "tagged_bt709_sd": ((720, 576), "bt709", "tv", True, "mov"),  # the tags win over the picture size
    "tagged_full_range": ((1920, 1080), "bt709", "pc", True, "mov"),
    "untagged_sd": ((720, 486), "smpte170m", "tv", False, "mp4"),
}


@pytest.fixture(scope="module")
def bar_movies(tmp_path_factory):
    d = tmp_path_factory.mktemp("bars")
    made = {}
    for name, (size, matrix, value_range, tagged, ext) in BAR_CASES.items():
        planes = to_ycbcr(colour_bars(*size), matrix, value_range)
        in_args = [*TAGS[matrix], "-color_range", value_range] if tagged else []
        made[name] = encode_raw(d / f"{name}.{ext}", planes, "yuv444p", size,
                                ["-c:v", "libx264", "-qp", "0", "-preset", "ultrafast"], in_args)
    return made


@pytest.mark.parametrize("name", list(BAR_CASES))
def test_colour_bars_decode_with_the_matrix_probe_reports(bar_movies, name):
    (width, height), matrix, value_range, tagged, _ = BAR_CASES[name]
    path = bar_movies[name]
    info = probe(path)
    assert (info.width, info.height, info.sample, info.bits) == (width, height, "uint8", 8)
    assert (info.colour.matrix, info.colour.range, info.colour.primaries) == (matrix, value_range, matrix)
    if tagged:
        assert info.colour.assumed is None
    else:
        assert info.colour.assumed.startswith(
            "untagged HD video: BT.709 assumed" if height >= 720 else "untagged SD video: BT.601 (smpte170m) assumed")

    planes = stored_planes(path)
    assert np.array_equal(planes, np.stack(to_ycbcr(colour_bars(width, height), matrix, value_range)))  # lossless
    exact = np.clip(from_ycbcr(planes, matrix, value_range), 0, 255)  # codes a hair outside 0..1 clip
    for got in (next(read_frames(path, 0, 1)), next(read_frames_precise(path, 0, 1))):
        assert got.dtype == np.uint8 and got.shape == (height, width, 3)
        assert np.abs(got - exact).max() <= 1.0  # within 1 code of the exact matrix maths
        assert np.abs(got.astype(int) - np.rint(colour_bars(width, height) * 255)).max() <= 1  # and of the bars
    # the test can tell the matrices apart: the other one is far off on the bars
    other = "smpte170m" if matrix == "bt709" else "bt709"
    assert np.abs(from_ycbcr(planes, other, value_range) - exact).max() > 10


# -- deep video: no bias, and more than 8 bits --------------------------------------------------------------------

@pytest.mark.parametrize("pix_fmt,matrix", [("yuv444p10le", "bt709"), ("yuv422p10le", "smpte170m")])
def test_10bit_colour_bars_precise_read_is_exact_matrix_maths(tmp_path, pix_fmt, matrix):
    width, height = 1280, 8
    y, cb, cr = to_ycbcr(colour_bars(width, height), matrix, "tv", bits=10)
    chroma = [cb, cr] if pix_fmt == "yuv444p10le" else [cb[:, ::2], cr[:, ::2]]  # 4:2:2 co-sited: even columns
    path = encode_raw(tmp_path / "bars10.mkv", [y, *chroma], pix_fmt, (width, height), ["-c:v", "ffv1"],
                      [*TAGS[matrix], "-color_range", "tv"])
    got = next(read_frames_precise(path, 0, 1))
    assert got.dtype == np.uint16 and got.shape == (height, width, 3)
    exact = np.clip(from_ycbcr([y, cb, cr], matrix, "tv", bits=10) / 255, 0, 1) * 65535
    inner = np.ones(width, bool)  # 4:2:2: the interpolated column beside each bar edge is a mix of two bars
    if pix_fmt == "yuv422p10le":
        for edge in range(width // 8, width, width // 8):
            inner[edge - 1:edge + 1] = False
    assert np.abs(got[:, inner] - exact[:, inner]).max() < 0.51  # rounding to 16 bits only
    assert np.abs(got.astype(float) / 65535 * 255 - np.rint(colour_bars(width, height) * 255))[:, inner].max() < 0.6

def grey_ramp_10bit(width: int, height: int) -> np.ndarray:
    """Y' codes 64..940 (10-bit tv range, black to white) across the picture."""
    return np.tile(np.rint(64 + 876 * np.arange(width) / (width - 1)), (height, 1))


@pytest.fixture(scope="module")
def ramps(tmp_path_factory):
    d = tmp_path_factory.mktemp("ramps")
    y = grey_ramp_10bit(1920, 64)
    c = np.full((64, 960), 512)
    hd = grey_ramp_10bit(1920, 1080)
    hd_c = np.full((1080, 960), 512)
    return {
        "ffv1": encode_raw(d / "ramp.mkv", [y, c, c], "yuv422p10le", (1920, 64), ["-c:v", "ffv1"]),
        "prores": encode_raw(d / "ramp_hq.mov", [hd, hd_c, hd_c], "yuv422p10le", (1920, 1080),
                             ["-c:v", "prores_ks", "-profile:v", "3", "-vendor", "apl0"],
                             [*TAGS["bt709"], "-color_range", "tv"]),
    }


def test_10bit_422_grey_ramp_has_no_bias(ramps):
    expected = (grey_ramp_10bit(1920, 64) - 64) * 1023 / 876  # the ramp in 10-bit full-scale codes
    precise = next(read_frames_precise(ramps["ffv1"], 0, 1))
    assert precise.dtype == np.uint16
    error = precise.astype(float) / 65535 * 1023 - expected[..., None]
    assert abs(error.mean()) < 0.25 and np.abs(error).mean() < 0.25
    assert np.abs(error).max() < 0.1  # exact maths: only the rounding to 16 bits is left
    assert precise[:, 0].max() == 0 and precise[:, -1].min() == 65535  # black is 0, white 65535
    eight = next(read_frames(ramps["ffv1"], 0, 1))
    error8 = eight.astype(float) / 255 * 1023 - expected[..., None]
    assert abs(error8.mean()) < 0.25 and np.abs(error8).max() <= 0.5 * 1023 / 255 + 0.05  # rounding only
    assert eight[:, -1].min() == 255


def test_prores_hq_plate_reads_with_more_than_256_grey_levels(ramps):
    path = ramps["prores"]
    info = probe(path)
    assert (info.pix_fmt, info.sample, info.bits) == ("yuv422p10le", "uint16", 10)
    assert info.colour.matrix == "bt709" and info.colour.assumed is None
    frame = next(read_frames_precise(path, 0, 1))
    assert frame.dtype == np.uint16 and frame.shape == (1080, 1920, 3)
    assert np.array_equal(frame[..., 0], frame[..., 1]) and np.array_equal(frame[..., 1], frame[..., 2])  # grey
    assert len(np.unique(frame[..., 1])) > 800  # 877 codes in the ramp; an 8-bit read has at most 256
    assert len(np.unique(next(read_frames(path, 0, 1))[..., 1])) <= 256
    via_iter = next(iter_frames(path, 0, 1, precise=True))
    assert np.array_equal(via_iter, frame)


def encode_planes_pyav(path: Path, planes, pix_fmt: str, color_range: int) -> Path:
    """One FFV1 frame from raw planes through PyAV, stamped with `color_range` (2: pc). Not the CLI: for a
    10-bit YUV encoder it converts full range to tv range on the way."""
    height, width = planes[0].shape
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.color_range = color_range
        frame = av.VideoFrame(width, height, pix_fmt)
        for plane, a in zip(frame.planes, planes):
            padded = np.zeros((plane.height, plane.line_size // 2), np.uint16)
            padded[:, :plane.width] = a
            plane.update(padded.tobytes())
        frame.color_range, frame.pts = color_range, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_10bit_full_range_and_rgb_video_read_exactly(tmp_path):
    codes = np.tile(np.arange(1024), (4, 1))
    grey = encode_planes_pyav(tmp_path / "full.mkv", [codes, np.full((4, 512), 512), np.full((4, 512), 512)],
                              "yuv422p10le", color_range=2)
    assert probe(grey).colour.range == "pc"
    got = next(read_frames_precise(grey, 0, 1))
    assert np.abs(got[..., 1].astype(float) - codes * 65535 / 1023).max() < 0.51  # rounding, in float32
    rgb = encode_raw(tmp_path / "rgb10.mkv", [codes, codes[:, ::-1], codes // 2], "gbrp10le", (1024, 4),
                     ["-c:v", "ffv1"])  # planes G, B, R
    info = probe(rgb)
    assert (info.sample, info.bits, info.colour.matrix, info.colour.range) == ("uint16", 10, "rgb", "pc")
    got = next(read_frames_precise(rgb, 0, 1)).astype(float)
    for channel, plane in zip(range(3), (codes // 2, codes, codes[:, ::-1])):  # R, G, B
        assert np.abs(got[..., channel] - plane * 65535 / 1023).max() < 0.51


# -- images: 16-bit exact, half-float unclipped, and what probe says about them -------------------------------------

def test_16bit_png_sequence_reads_exactly(tmp_path):
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 65536, (24, 40, 3), dtype=np.uint16) for _ in range(2)]
    for i, a in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"deep.{1001 + i:04d}.png"), cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
    info = probe(tmp_path / "deep.####.png")
    assert (info.sample, info.bits, info.pix_fmt, info.exr) == ("uint16", 16, "rgb48", None)
    assert (info.colour.primaries, info.colour.transfer, info.colour.matrix, info.colour.range) == \
        ("bt709", "iec61966-2-1", "rgb", "pc")
    assert info.colour.assumed == "untagged image: sRGB/BT.709 assumed"
    got = list(read_frames_precise(tmp_path / "deep.####.png", 0, 2))
    assert all(g.dtype == np.uint16 and np.array_equal(g, a) for g, a in zip(got, frames))
    eight = probe(write_png(tmp_path / "small.0001.png", frames[0] // 257))
    assert (eight.sample, eight.bits, eight.colour.transfer) == ("uint8", 8, "iec61966-2-1")


def test_10bit_dpx_reports_its_bits(tmp_path):
    codes = np.tile(np.arange(0, 1024, 8, dtype=np.uint16), (4, 1))
    rgb = np.stack([codes, codes[:, ::-1], np.full_like(codes, 1023)], axis=-1)
    with av.open(str(tmp_path / "log.%04d.dpx"), "w", format="image2", options={"start_number": "1001"}) as out:
        stream = out.add_stream("dpx", rate=24)
        stream.height, stream.width, stream.pix_fmt = 4, 128, "gbrp10le"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="gbrp10le")))
        out.mux(stream.encode(None))
    info = probe(tmp_path / "log.####.dpx")
    assert (info.sample, info.bits, info.pix_fmt, info.colour.transfer) == ("uint16", 10, "rgb48", "iec61966-2-1")
    got = next(read_frames_precise(tmp_path / "log.####.dpx", 0, 1))
    assert np.abs(got.astype(float) - rgb.astype(float) * 65535 / 1023).max() <= 1  # bit replication: white 65535


def write_png(path: Path, a: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_RGB2BGR))
    return path


def write_exr(path: Path, rgb: np.ndarray, **header) -> Path:
    """One EXR through the OpenEXR bindings: half or float by rgb's dtype, header attributes as given."""
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **header}
    with OpenEXR.File(header, {"RGB": rgb}) as f:
        f.write(str(path))
    return path


def test_half_float_exr_keeps_highlights_and_reports_its_layout(tmp_path):
    rgb = np.zeros((30, 50, 3), np.float16)
    rgb[..., 0] = np.linspace(0, 6.0, 50, dtype=np.float16)
    rgb[..., 1], rgb[..., 2] = 0.18, 6.0
    write_exr(tmp_path / "hot.1001.exr", rgb, compression=OpenEXR.PIZ_COMPRESSION, chromaticities=AP1)
    info = probe(tmp_path / "hot.####.exr")
    assert (info.sample, info.bits, info.pix_fmt, info.width, info.height) == ("float32", 16, "rgbf32", 50, 30)
    layout = info.exr
    assert (layout.pixel_type, layout.compression, layout.channels) == ("half", "PIZ_COMPRESSION", ("B", "G", "R"))
    assert layout.data_window == layout.display_window == (0, 0, 49, 29) and layout.pixel_aspect == 1.0
    assert layout.chromaticities == pytest.approx(AP1, abs=1e-6)
    assert (info.colour.primaries, info.colour.transfer, info.colour.matrix) == ("aces-ap1", "linear", "rgb")
    assert "ACES AP1" in info.colour.assumed
    got = next(read_frames_precise(tmp_path / "hot.####.exr", 0, 1))
    assert got.dtype == np.float32 and got.max() == 6.0  # no clipping
    assert np.array_equal(got, rgb.astype(np.float32))


def test_exr_variants_in_probe(tmp_path):
    # written by ffmpeg (PyAV): no chromaticities, so BT.709 primaries are assumed and said to be
    write_exr_sequence(tmp_path, "lavc", [np.full((8, 12, 3), 2.5, np.float32)])
    info = probe(tmp_path / "lavc.####.exr")
    assert info.exr == ExrLayout("half", "ZIPS_COMPRESSION", ("B", "G", "R"), (0, 0, 11, 7), (0, 0, 11, 7))
    assert (info.colour.primaries, info.colour.transfer) == ("bt709", "linear")
    assert "without chromaticities" in info.colour.assumed
    assert next(read_frames_precise(tmp_path / "lavc.####.exr", 0, 1)).min() == 2.5
    # float, ACES AP0, a data window inside a wider display window, non-square pixels
    rgb = np.ones((3, 4, 3), np.float32) * 0.5
    window = (np.array([2, 1], np.int32), np.array([5, 3], np.int32))
    display = (np.array([0, 0], np.int32), np.array([7, 5], np.int32))
    write_exr(tmp_path / "ap0.exr", rgb, chromaticities=AP0, dataWindow=window, displayWindow=display,
              pixelAspectRatio=2.0)
    info = probe(tmp_path / "ap0.exr")
    assert (info.bits, info.width, info.height, info.colour.primaries) == (32, 8, 6, "aces-ap0")
    assert (info.exr.pixel_type, info.exr.data_window, info.exr.display_window, info.exr.pixel_aspect) == \
        ("float", (2, 1, 5, 3), (0, 0, 7, 5), 2.0)
    got = next(read_frames_precise(tmp_path / "ap0.exr", 0, 1))
    assert got[1:4, 2:6].min() == 0.5 and got.sum() == 0.5 * 3 * 4 * 3  # zero outside the data window


# -- orientation and scan ------------------------------------------------------------------------------------------

def marker_picture(width: int = 64, height: int = 32) -> np.ndarray:
    """Black with a white block in the top-left corner and a grey one top-right: every turn looks different."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:8, :8] = 255
    a[:8, -8:] = 128
    return a


def rotated_copy(src: Path, dst: Path, args) -> Path:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args[0], "-i", str(src), "-c", "copy",
                    *args[1], str(dst)], check=True)
    return dst


@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    d = tmp_path_factory.mktemp("rotated")
    a = marker_picture()
    src = d / "upright.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", "64x32", "-r", "24", "-i", "-", "-c:v", "libx264rgb", "-qp", "0", str(src)],
                   input=a.tobytes() * 2, check=True)
    deep = encode_raw(d / "deep.mov", [np.where(a[..., 0] == 255, 940, 64)] + [np.full((32, 64), 512)] * 2,
                      "yuv444p10le", (64, 32), ["-c:v", "prores_ks", "-profile:v", "4", "-vendor", "apl0"])
    return {
        "matrix_90": (rotated_copy(src, d / "r90.mp4", (["-display_rotation", "90"], [])), 90),
        "matrix_180": (rotated_copy(src, d / "r180.mov", (["-display_rotation", "180"], [])), 180),
        "tag_rotate_90": (rotated_copy(src, d / "tag.mkv", ([], ["-metadata:s:v:0", "rotate=90"])), 270),
        "deep_90": (rotated_copy(deep, d / "deep90.mov", (["-display_rotation", "90"], [])), 90),
    }


@pytest.mark.parametrize("key", ["matrix_90", "matrix_180", "tag_rotate_90"])
def test_rotated_movies_read_upright(rotated, key):
    path, rotation = rotated[key]
    upright = np.rot90(marker_picture(), rotation // 90)  # what players show: counter-clockwise degrees
    info = probe(path)
    assert info.rotation == rotation
    assert (info.height, info.width) == upright.shape[:2]
    got = next(read_frames(path, 0, 1))
    assert np.array_equal(got, upright)
    half = (upright.shape[0] // 2, upright.shape[1] // 2)  # size=(height, width) as displayed
    assert next(read_frames(path, 0, 1, size=half)).shape == (*half, 3)
    assert np.array_equal(next(iter_frames(path, 0, 1, layout="single")), upright[..., 0])


def test_precise_read_of_a_rotated_deep_movie_is_upright(rotated):
    path, rotation = rotated["deep_90"]
    info = probe(path)
    assert (info.rotation, info.width, info.height, info.sample) == (90, 32, 64, "uint16")
    got = next(read_frames_precise(path, 0, 1))
    assert got.dtype == np.uint16 and got.shape == (64, 32, 3)
    white = np.rot90(marker_picture()[..., 0] == 255, 1)
    assert got[white].min() > 64000 and got[~white].max() < 1000


@pytest.mark.parametrize("args,order", [
    ([], "progressive"),
    (["-flags", "+ilme+ildct", "-field_order", "tt"], "tt"),
    (["-flags", "+ilme+ildct", "-x264-params", "bff=1"], "bb"),
])
def test_field_order(tmp_path, args, order):
    path = tmp_path / "scan.mov"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-frames:v", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", *args, str(path)], check=True)
    assert probe(path).field_order == order


# -- timecode kind: a 29.97 plate is counted its own way ------------------------------------------------------------

@pytest.mark.parametrize("timecode,drop_frame,start,minute_later", [
    ("01:00:00:00", False, 108000, "01:01:00:00"),  # non-drop: 30 frames a second, nominally
    ("01:00:00;00", True, 107892, "01:01:00;02"),  # drop-frame skips ;00 and ;01 each minute (but every tenth)
])
def test_2997_timecode_keeps_its_kind(tmp_path, timecode, drop_frame, start, minute_later):
    path = tmp_path / "ntsc.mov"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=160x90:rate=30000/1001", "-frames:v", "12", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-timecode", timecode, str(path)], check=True)
    info = probe(path)
    assert (info.rate, info.timecode, info.drop_frame, info.start_frame) == \
        (Fraction(30000, 1001), timecode, drop_frame, start)
    assert info.timecode_at(0) == timecode
    r = FrameRange(info.start_frame, info.frames, info.rate)
    assert r.timecode(info.start_frame, drop_frame=info.drop_frame) == timecode
    assert r.timecode(info.start_frame + 1800, drop_frame=info.drop_frame) == minute_later
    assert info.media_range.timecode(drop_frame=info.drop_frame) == timecode
    if not drop_frame:  # what happens without the plate's kind: OTIO's 29.97 convention is drop-frame
        assert r.timecode(info.start_frame) == "01:00:03;18"
