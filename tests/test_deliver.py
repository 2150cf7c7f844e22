"""Deliverable writers at the plate's precision, on real files read back independently of the writer:
PNG through cv2, EXR through the OpenEXR bindings, DPX by unpacking its 32-bit words, ProRes through
PyAV and the mov atoms (`colr`, the tmcd sample entry). Plates are MediaInfo values built by hand.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import OpenEXR
import pytest

from shots import deliver
from shots.deliver import FORMATS, LOSSY, choose_format, estimate_bytes, open_writer
from shots.frames import FrameRange
from shots.media import MediaInfo
from shots.samples import Colour, ExrLayout

W, H = 64, 36
NTSC = Fraction(30000, 1001)
REC709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)


def plate(**fields) -> MediaInfo:
    """A plate as probe describes it; fields not given are an 8-bit, 24 fps, untagged sequence."""
    info = dict(path="/plates/A001.####.png", kind="sequence", width=W, height=H, rate=Fraction(24), frames=3,
                start_frame=1001, timecode=None, pix_fmt="rgb24")
    info.update(fields)
    return MediaInfo(**info)


def write_all(fmt, folder: Path, frames, rate=Fraction(24), timecode=None, plate_info=None, size=(W, H)):
    writer = open_writer(fmt, folder, "sh010", 1, size[0], size[1], rate, timecode, plate=plate_info)
    for f in frames:
        writer.write(f)
    writer.close()
    return writer


def read_exr(path: Path) -> tuple[dict, np.ndarray]:
    with OpenEXR.File(str(path)) as f:  # pixels go with the file: copy them before it closes
        return dict(f.header()), np.array(f.channels()["RGB"].pixels)


def labels(header_timecode) -> tuple:
    tc = header_timecode
    return tc.hours, tc.minutes, tc.seconds, tc.frame, tc.dropFrame


# -- PNG -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_is_bit_exact_at_the_frames_depth(tmp_path, dtype):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, np.iinfo(dtype).max + 1, (H, W, 3), dtype=dtype) for _ in range(3)]
    deep = plate(sample="uint16", bits=16, pix_fmt="rgb48") if dtype == np.uint16 else plate()
    write_all("png", tmp_path, frames, plate_info=deep)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"sh010_void_v001.{n}.png" for n in (1001, 1002, 1003)]
    for n, f in zip((1001, 1002, 1003), frames):
        back = cv2.imread(str(tmp_path / f"sh010_void_v001.{n}.png"), cv2.IMREAD_UNCHANGED)
        assert back.dtype == dtype
        assert np.array_equal(back[..., ::-1], f)


# -- EXR -----------------------------------------------------------------------------------------------------
def test_exr_keeps_float_values_and_writes_the_header(tmp_path):
    rng = np.random.default_rng(2)
    frames = [rng.uniform(-0.5, 8.0, (H, W, 3)).astype(np.float32) for _ in range(3)]
    frames[0][0, 0] = 6.0
    info = plate(sample="float32", bits=16, pix_fmt="rgbf32")
    write_all("exr", tmp_path, frames, Fraction(24), "01:00:00:22", info)

    tcs = []
    for n, f in zip((1001, 1002, 1003), frames):
        header, pixels = read_exr(tmp_path / f"sh010_void_v001.{n}.exr")
        assert pixels.dtype == np.float16 and pixels.shape == (H, W, 3)
        assert np.array_equal(pixels, f.astype(np.float16))  # the half of every input value, exactly
        assert header["compression"] == OpenEXR.ZIP_COMPRESSION
        assert [tuple(v) for v in header["dataWindow"]] == [(0, 0), (W - 1, H - 1)]
        assert [tuple(v) for v in header["displayWindow"]] == [(0, 0), (W - 1, H - 1)]
        assert header["chromaticities"] == pytest.approx(REC709, abs=1e-6)
        assert header["framesPerSecond"] == Fraction(24)
        assert header["pixelAspectRatio"] == 1.0
        tcs.append(labels(header["timeCode"]))
    header, pixels = read_exr(tmp_path / "sh010_void_v001.1001.exr")
    assert float(pixels[0, 0, 0]) == 6.0  # above 1.0 stays above 1.0
    assert tcs == [(1, 0, 0, 22, False), (1, 0, 0, 23, False), (1, 0, 1, 0, False)]


@pytest.mark.parametrize("drop, start, expect", [
    (True, "00:00:59;28", [(0, 0, 59, 28, True), (0, 0, 59, 29, True), (0, 1, 0, 2, True)]),  # ;00 and ;01 skipped
    (False, "00:00:59:28", [(0, 0, 59, 28, False), (0, 0, 59, 29, False), (0, 1, 0, 0, False)]),
])
def test_exr_timecode_counts_as_the_plate_does_at_29_97(tmp_path, drop, start, expect):
    frames = [np.full((H, W, 3), i * 0.25, np.float32) for i in range(3)]
    info = plate(rate=NTSC, sample="float32", drop_frame=drop, timecode=start)
    write_all("exr", tmp_path, frames, NTSC, start, info)
    headers = [read_exr(tmp_path / f"sh010_void_v001.{n}.exr")[0] for n in (1001, 1002, 1003)]
    assert [labels(h["timeCode"]) for h in headers] == expect
    assert headers[0]["framesPerSecond"] == NTSC


def test_exr_timecode_above_30_fps_counts_frame_pairs(tmp_path):
    """SMPTE 12M counts 50p in pairs (frames 0..24) and marks the second of a pair with the field-phase bit."""
    frames = [np.zeros((H, W, 3), np.float32)] * 3
    write_all("exr", tmp_path, frames, Fraction(50), "01:00:00:48", plate(rate=Fraction(50), sample="float32"))
    tcs = [read_exr(tmp_path / f"sh010_void_v001.{n}.exr")[0]["timeCode"] for n in (1001, 1002, 1003)]
    assert [(t.seconds, t.frame, t.fieldPhase) for t in tcs] == [(0, 24, False), (0, 24, True), (1, 0, False)]


def test_exr_follows_the_plates_layout(tmp_path):
    """A float plate with PIZ, a smaller data window, square-ish pixels and its own primaries."""
    p3 = (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290)
    layout = ExrLayout(pixel_type="float", compression="PIZ_COMPRESSION", channels=("B", "G", "R"),
                       data_window=(4, 2, 40, 30), display_window=(0, 0, W - 1, H - 1), pixel_aspect=2.0,
                       chromaticities=p3)
    info = plate(sample="float32", bits=32, pix_fmt="rgbf32", exr=layout,
                 colour=Colour("bt709", "linear", "rgb", "pc"))
    rng = np.random.default_rng(3)
    frames = [rng.uniform(0.0, 20.0, (H, W, 3)).astype(np.float32) for _ in range(2)]
    write_all("exr", tmp_path, frames, Fraction(25), "10:00:00:00", info)
    for n, f in zip((1001, 1002), frames):
        header, pixels = read_exr(tmp_path / f"sh010_void_v001.{n}.exr")
        assert header["compression"] == OpenEXR.PIZ_COMPRESSION
        assert [tuple(v) for v in header["dataWindow"]] == [(4, 2), (40, 30)]
        assert [tuple(v) for v in header["displayWindow"]] == [(0, 0), (W - 1, H - 1)]
        assert header["pixelAspectRatio"] == 2.0
        assert header["chromaticities"] == pytest.approx(p3, abs=1e-6)
        assert pixels.dtype == np.float32 and np.array_equal(pixels, f[2:31, 4:41])  # float stays float, exactly
    assert labels(header["timeCode"]) == (10, 0, 0, 1, False)


def test_exr_carries_the_plates_other_channels(tmp_path):
    """Alpha, depth and an AOV of an RGBA plate with a data window ride along untouched, frame for frame."""
    from shots.media import media_files, probe

    rng = np.random.default_rng(4)
    plates = tmp_path / "plates"
    plates.mkdir()
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "dataWindow": ((4, 2), (40, 30)), "displayWindow": ((0, 0), (W - 1, H - 1))}
    stored = []
    for n in (1001, 1002):
        channels = {"RGBA": rng.uniform(0, 4, (29, 37, 4)).astype(np.float16),
                    "Z": rng.uniform(1, 100, (29, 37)).astype(np.float32),
                    "diffuse.R": rng.uniform(0, 1, (29, 37)).astype(np.float16)}
        stored.append({k: v.copy() for k, v in channels.items()})  # the bindings turn the dict's values into Channels
        OpenEXR.File(header, channels).write(str(plates / f"p.{n}.exr"))
    info = probe(str(plates / "p.####.exr"))
    assert set(info.exr.channels) == {"R", "G", "B", "A", "Z", "diffuse.R"}
    frames = [np.zeros((H, W, 3), np.float32)] * 2
    writer = open_writer("exr", tmp_path / "out", "sh010", 1, W, H, Fraction(24), None, plate=info,
                         plate_files=media_files(info.path, 0, 2))
    for f in frames:
        writer.write(f)
    writer.close()
    for n, channels in zip((1001, 1002), stored):
        with OpenEXR.File(str(tmp_path / "out" / f"sh010_void_v001.{n}.exr"), separate_channels=True) as f:
            out = {k: np.array(c.pixels) for k, c in f.channels().items()}
        assert set(out) == {"R", "G", "B", "A", "Z", "diffuse.R"}
        assert np.array_equal(out["A"], channels["RGBA"][..., 3]) and out["Z"].dtype == np.float32
        assert np.array_equal(out["Z"], channels["Z"]) and np.array_equal(out["diffuse.R"], channels["diffuse.R"])
        assert not out["R"].any()  # the picture is the frame written, not the plate's


@pytest.mark.parametrize("dtype, full", [(np.uint8, 255.0), (np.uint16, 65535.0)])
def test_exr_scales_integer_frames_to_0_1(tmp_path, dtype, full):
    rng = np.random.default_rng(4)
    frame = rng.integers(0, int(full) + 1, (H, W, 3), dtype=dtype)
    write_all("exr", tmp_path, [frame])
    _, pixels = read_exr(tmp_path / "sh010_void_v001.1001.exr")
    assert np.array_equal(pixels, (frame.astype(np.float32) / np.float32(full)).astype(np.float16))


def test_timecode_labels_match_opentimelineio():
    """The EXR timeCode arithmetic against OTIO's, drop-frame and not, across minute and ten-minute edges."""
    for rate, drop in ((NTSC, True), (NTSC, False), (Fraction(60000, 1001), True), (Fraction(24000, 1001), False)):
        fps = deliver._nominal_fps(rate, drop)
        for count in [*range(0, 40000, 37), *range(17970, 18010), 107892, 1078920]:
            want = FrameRange(0, 1, rate).timecode(count, drop_frame=drop)
            label = deliver._count_to_label(count, fps, drop)
            sep = ";" if drop else ":"
            assert f"{label[0]:02d}:{label[1]:02d}:{label[2]:02d}{sep}{label[3]:02d}" == want
            assert deliver._label_to_count(label, fps, drop) == count


# -- DPX -----------------------------------------------------------------------------------------------------
def unpack_dpx(path: Path) -> tuple[bytes, np.ndarray]:
    """The header and the (H, W, 3) 10-bit codes of a filled-word (method A) RGB DPX, read from its bytes."""
    data = path.read_bytes()
    assert data[:4] in (b"SDPX", b"XPDS")
    order = ">" if data[:4] == b"SDPX" else "<"
    offset = int(np.frombuffer(data[4:8], f"{order}u4")[0])
    words = np.frombuffer(data[offset:offset + 4 * W * H], f"{order}u4").reshape(H, W)
    return data[:offset], np.stack([(words >> 22) & 0x3FF, (words >> 12) & 0x3FF, (words >> 2) & 0x3FF], axis=-1)


def test_dpx_is_10_bit_from_16_bit_frames(tmp_path):
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 65536, (H, W, 3), dtype=np.uint16) for _ in range(2)]
    frames[0][0, :4] = [[0, 0, 0], [65535, 65535, 65535], [64, 128, 192], [32768, 1, 65472]]
    info = plate(sample="uint16", bits=16, pix_fmt="rgb48", colour=Colour("bt709", "bt709", "rgb", "pc"))
    write_all("dpx", tmp_path, frames, plate_info=info)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sh010_void_v001.1001.dpx", "sh010_void_v001.1002.dpx"]
    for n, f in zip((1001, 1002), frames):
        header, codes = unpack_dpx(tmp_path / f"sh010_void_v001.{n}.dpx")
        assert header[803] == 10 and header[800] == 50  # 10 bits per sample, RGB element
        assert header[801] == 6 and header[802] == 6  # transfer and colorimetric: ITU-R 709
        assert np.abs(codes.astype(int) - (f >> 6)).max() <= 1
    _, codes = unpack_dpx(tmp_path / "sh010_void_v001.1001.dpx")
    assert codes[0, :4].tolist() == [[0, 0, 0], [1023, 1023, 1023], [1, 2, 3], [512, 0, 1022]]


# -- ProRes --------------------------------------------------------------------------------------------------
def colr(path: Path) -> tuple[int, int, int]:
    """(primaries, transfer, matrix) of the mov's `colr` nclc atom."""
    data = path.read_bytes()
    at = data.find(b"colrnclc")
    assert at > 0, "no colr nclc atom"
    return tuple(int.from_bytes(data[at + 8 + 2 * k:at + 10 + 2 * k], "big") for k in range(3))


def tmcd_flags(path: Path) -> int:
    """The flags of the mov's timecode sample entry (bit 0: drop-frame)."""
    data = path.read_bytes()
    at = data.find(b"stsd")
    while at >= 0 and data[at + 16:at + 20] != b"tmcd":
        at = data.find(b"stsd", at + 4)
    assert at >= 0, "no tmcd sample entry"
    return int.from_bytes(data[at + 32:at + 36], "big")


def decoded_ramp(folder: Path, frame: np.ndarray, info: MediaInfo | None) -> np.ndarray:
    write_all("prores", folder, [frame, frame], plate_info=info, size=(frame.shape[1], frame.shape[0]))
    with av.open(str(folder / "sh010_void_v001.mov")) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb48le")


def test_prores_keeps_10_bits_from_16_bit_frames(tmp_path):
    """A 16-bit grey ramp over 1024 columns: fed as rgb48le it comes back with ~900 levels, each within a
    fraction of an 8-bit code; the same ramp at 8 bits (the control) is off by more than half a code."""
    ramp = np.linspace(0, 65535, 1024).round().astype(np.uint16)
    frame = np.broadcast_to(ramp[None, :, None], (16, 1024, 3)).copy()
    info = plate(kind="movie", sample="uint16", bits=10, pix_fmt="yuv422p10le", width=1024, height=16,
                 colour=Colour("bt709", "bt709", "bt709", "tv"))
    back = decoded_ramp(tmp_path / "deep", frame, info)
    levels = len(np.unique(back[8, :, 1]))
    assert levels > 512, f"only {levels} grey levels: 8 bits went through"
    assert np.abs(back.astype(int) - frame).max() < 128  # within half an 8-bit code everywhere
    control = decoded_ramp(tmp_path / "8bit", (frame >> 8).astype(np.uint8), None)
    assert np.abs(control.astype(int) - frame).max() > 128


@pytest.mark.parametrize("colour, tags", [
    (Colour("bt709", "bt709", "bt709", "tv"), (1, 1, 1)),
    (Colour("smpte170m", "smpte170m", "smpte170m", "tv"), (6, 6, 6)),  # a BT.601 plate
    (Colour("bt470bg", "bt709", "bt470bg", "tv"), (5, 1, 5)),
    (Colour("bt709", "linear", "rgb", "pc"), (1, 8, 1)),  # an RGB plate: YUV by its primaries, video range
    (None, (1, 1, 1)),  # untagged: BT.709
])
def test_prores_tags_and_matrix_follow_the_plates_colour(tmp_path, colour, tags):
    frame = np.zeros((H, W, 3), np.uint16)
    frame[:, : W // 2, 0] = 60000
    frame[:, W // 2:, 2] = 50000
    frame[: H // 2, :, 1] = 30000
    info = plate(kind="movie", sample="uint16", bits=10, colour=colour)
    write_all("prores", tmp_path, [frame], plate_info=info)
    path = tmp_path / "sh010_void_v001.mov"
    assert colr(path) == tags
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range) == (*tags, 1)
        back = next(c.decode(video=0)).to_ndarray(format="rgb48le")  # decoded by the tags
    assert np.abs(back.astype(int) - frame).max() < 257  # encoded with the matrix the tags name


@pytest.mark.parametrize("timecode, drop", [("01:00:00:00", False), ("01:00:00;00", True)])
def test_prores_timecode_keeps_its_kind_at_29_97(tmp_path, timecode, drop):
    frames = [np.full((H, W, 3), 128, np.uint8)] * 2
    info = plate(kind="movie", rate=NTSC, timecode=timecode, drop_frame=drop)
    write_all("prores", tmp_path, frames, NTSC, timecode, info)
    path = tmp_path / "sh010_void_v001.mov"
    with av.open(str(path)) as c:
        assert c.streams.video[0].metadata["timecode"] == timecode
    assert tmcd_flags(path) & 1 == drop


def test_prores_refuses_frames_deeper_than_it_was_opened_for(tmp_path):
    writer = open_writer("prores", tmp_path, "sh010", 1, W, H, Fraction(24), None)
    with pytest.raises(ValueError, match="opened for 8-bit frames"):
        writer.write(np.zeros((H, W, 3), np.uint16))
    writer.write(np.zeros((H, W, 3), np.uint8))
    writer.close()


# -- choosing and sizing -------------------------------------------------------------------------------------
def test_formats_and_auto():
    assert FORMATS == ("auto", "png", "exr", "dpx", "prores") and LOSSY == ("prores",)
    half_exr = ExrLayout("half", "ZIP_COMPRESSION", ("B", "G", "R"), (0, 0, W - 1, H - 1), (0, 0, W - 1, H - 1))
    assert choose_format(plate(sample="float32", bits=16, exr=half_exr)) == "exr"
    assert choose_format(plate(sample="float32", bits=32)) == "exr"
    assert choose_format(plate(kind="movie", sample="uint16", bits=10)) == "png"
    assert choose_format(plate()) == "png"
    with pytest.raises(ValueError, match="auto"):
        open_writer("auto", Path("."), "sh", 1, W, H, 24, None)
    with pytest.raises(ValueError, match="unknown deliverable format 'tiff'"):
        open_writer("tiff", Path("."), "sh", 1, W, H, 24, None)


def test_auto_writes_the_chosen_format(tmp_path):
    frame = np.full((H, W, 3), 1000, np.uint16)
    writer = write_all("auto", tmp_path, [frame], plate_info=plate(sample="uint16", bits=16))
    assert writer.fmt == "png"
    assert cv2.imread(str(tmp_path / "sh010_void_v001.1001.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_estimates_follow_precision():
    n, mb = 10, 1 << 20
    pixels = W * H * n
    deep = plate(sample="uint16", bits=16)
    float_exr = plate(sample="float32", bits=32, exr=ExrLayout("float", "ZIP_COMPRESSION", ("B", "G", "R"),
                                                              (0, 0, W - 1, H - 1), (0, 0, W - 1, H - 1)))
    per_file = deliver.BYTES_PER_FILE * n
    assert estimate_bytes("png", W, H, n) == 3 * pixels + per_file + mb
    assert estimate_bytes("png", W, H, n, deep) == 6 * pixels + per_file + mb  # 16-bit: twice 8-bit
    assert estimate_bytes("exr", W, H, n) == 6 * pixels + per_file + mb  # half
    assert estimate_bytes("exr", W, H, n, float_exr) == 12 * pixels + per_file + mb
    assert estimate_bytes("auto", W, H, n, float_exr) == 12 * pixels + per_file + mb
    assert estimate_bytes("dpx", W, H, n) == 4 * pixels + per_file + mb
    assert estimate_bytes("auto", W, H, n) == 12 * pixels + per_file + mb  # no plate: the largest


def test_writers_refuse_frames_that_are_not_the_plates(tmp_path):
    writer = open_writer("png", tmp_path, "sh010", 1, W, H, 24, None)
    with pytest.raises(ValueError, match=r"uint8, uint16 or float32 RGB \(36, 64, 3\); got float64"):
        writer.write(np.zeros((H, W, 3)))
    with pytest.raises(ValueError, match="got uint8, shape \\(36, 64\\)"):
        writer.write(np.zeros((H, W), np.uint8))
    writer.close()
