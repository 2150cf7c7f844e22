"""shots.media: frame-exact ranges on long-GOP H.264 with B-frames, NTSC rate and timecode,
lossless intermediates, image sequences, clear errors, streaming; plus the shared VOID samples.

Test movies are generated here: every frame carries its index as a row of black/white blocks, so a
decoded frame says which frame it is, whatever the codec did to its pixels.
"""
from __future__ import annotations

import gc
import itertools
import logging
import os
import pickle
import re
import subprocess
import sys
import threading
import weakref
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from shots import media
from shots import movies as shots_movies  # `movies` is the fixture of test movies
from shots.media import MediaError, probe, read_frames, read_video, write_png_sequence, write_video_lossless
from shots.quadmask import read_mask_frames

DATA = Path(__file__).parents[2] / "shared" / "data"
VOID_SAMPLES = DATA / "void_samples"
LEVELS = {0, 63, 127, 255}

W, H, N, GOP = 320, 192, 144, 48
BITS, BLOCK = 8, 40  # frame index as 8 blocks of 40x40 px along the top


def ffmpeg_exe() -> str:
    local = Path(sys.executable).parent / "ffmpeg"
    if local.exists():
        return str(local)
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def coded_frame(i: int) -> np.ndarray:
    """A frame that encodes its index `i` in blocks, over a moving gradient (so there is motion)."""
    x = np.arange(W, dtype=np.int32)
    y = np.arange(H, dtype=np.int32)[:, None]
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0] = (x * 2 + i * 5) % 256
    img[..., 1] = (y * 3 + i * 3) % 256
    img[..., 2] = ((x + y) + i * 7) % 256
    for b in range(BITS):
        img[:BLOCK, b * BLOCK:(b + 1) * BLOCK] = 255 if (i >> b) & 1 else 0
    return img


def frame_index(img: np.ndarray) -> int:
    """Read back the index coded_frame drew, at any resolution."""
    h, w = img.shape[:2]
    bh, bw = h * BLOCK / H, w * BLOCK / W
    value = 0
    for b in range(BITS):
        y0, y1 = int(bh * 0.25), int(bh * 0.75)
        x0, x1 = int(bw * (b + 0.25)), int(bw * (b + 0.75))
        if img[y0:y1, x0:x1].mean() > 128:
            value |= 1 << b
    return value


def encode(path: Path, rate: str, extra: list[str] = (), n: int = N) -> Path:
    """H.264 yuv420p, fixed GOP of 48 with 2 B-frames between references, from coded frames."""
    cmd = [
        ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", rate, "-i", "-",
        "-c:v", "libx264", "-crf", "12", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", str(GOP), "-bf", "2",
        "-x264-params", f"keyint={GOP}:min-keyint={GOP}:scenecut=0:b-adapt=0:open-gop=0",
        *extra, str(path),
    ]
    data = b"".join(coded_frame(i).tobytes() for i in range(n))
    subprocess.run(cmd, input=data, check=True)
    return path


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    d = tmp_path_factory.mktemp("movies")
    return {
        "mp4_24": encode(d / "plate_24.mp4", "24"),
        "mov_ntsc_tc": encode(d / "plate_ntsc.mov", "24000/1001", ["-timecode", "01:00:00:00"]),
        "mkv_ntsc_tc": encode(d / "plate_ntsc.mkv", "24000/1001", ["-metadata:s:v:0", "timecode=01:00:00:00"]),
    }


@pytest.fixture(scope="module")
def sequential(movies):
    """Each movie decoded front to back with no seek: the reference for every range read."""
    return {key: list(read_frames(p, 0, N)) for key, p in movies.items()}


def test_test_movies_are_long_gop_with_b_frames(movies):
    with av.open(str(movies["mp4_24"])) as c:
        frames = list(c.decode(video=0))
    keys = [i for i, f in enumerate(frames) if f.key_frame]
    assert keys == [0, 48, 96]
    assert sum(f.pict_type == av.video.frame.PictureType.B for f in frames) > N // 2


@pytest.mark.parametrize("key", ["mp4_24", "mov_ntsc_tc", "mkv_ntsc_tc"])
def test_read_frames_exact_ranges(movies, sequential, key):
    path, ref = movies[key], sequential[key]
    assert [frame_index(f) for f in ref] == list(range(N))
    ranges = [(0, 5), (1, 2), (37, 11), (47, 3), (48, 4), (50, 30), (95, 2), (96, 1), (101, 30), (140, 4), (143, 1)]
    for start, count in ranges:
        got = list(read_frames(path, start, count))
        assert [frame_index(f) for f in got] == list(range(start, start + count)), (key, start, count)
        for i, f in enumerate(got):
            assert f.dtype == np.uint8 and f.shape == (H, W, 3)
            assert np.array_equal(f, ref[start + i]), (key, start + i)


def test_read_frames_count_zero_and_bad_arguments(movies):
    path = movies["mp4_24"]
    assert list(read_frames(path, 10, 0)) == []
    with pytest.raises(MediaError, match="plate_24.mp4"):
        read_frames(path, -1, 3)
    with pytest.raises(MediaError, match="plate_24.mp4"):
        read_frames(path, 0, 3, size=(0, 10))


def test_read_frames_resized(movies, sequential):
    got = list(read_frames(movies["mov_ntsc_tc"], 44, 8, size=(96, 160)))
    assert [f.shape for f in got] == [(96, 160, 3)] * 8
    assert [frame_index(f) for f in got] == list(range(44, 52))
    # Area scaling of the same decoded frame: swscale resizes 4:2:0 chroma before converting, so
    # only sharp colour edges differ from OpenCV's area resize of the full RGB frame.
    for i, f in enumerate(got):
        ref = cv2.resize(sequential["mov_ntsc_tc"][44 + i], (160, 96), interpolation=cv2.INTER_AREA)
        diff = np.abs(f.astype(int) - ref)
        assert np.median(diff) <= 1 and diff.mean() < 4


def test_seek_that_lands_late_is_retried(movies, sequential, monkeypatch):
    """Some demuxers seek on dts and can land on the keyframe after the target: we must notice."""
    real_seek = shots_movies._seek
    landed = []

    def late_seek(container, stream, pts):
        late = pts + int(Fraction(GOP) / stream.average_rate / stream.time_base)  # one GOP too far
        landed.append(pts)
        real_seek(container, stream, late if len(landed) == 1 else pts)

    monkeypatch.setattr(shots_movies, "_seek", late_seek)
    got = list(read_frames(movies["mp4_24"], 50, 6))
    assert len(landed) >= 2
    assert [frame_index(f) for f in got] == list(range(50, 56))
    assert all(np.array_equal(f, sequential["mp4_24"][50 + i]) for i, f in enumerate(got))


def test_probe_movie_24(movies):
    info = probe(movies["mp4_24"])
    assert (info.kind, info.width, info.height, info.frames) == ("movie", W, H, N)
    assert info.rate == Fraction(24) and isinstance(info.rate, Fraction)
    assert (info.start_frame, info.timecode, info.pix_fmt) == (0, None, "yuv420p")


@pytest.mark.parametrize("key", ["mov_ntsc_tc", "mkv_ntsc_tc"])
def test_probe_ntsc_timecode(movies, key):
    info = probe(movies[key])
    assert info.rate == Fraction(24000, 1001)
    assert info.frames == N  # MKV stores no count: counted from packets
    assert info.timecode == "01:00:00:00"
    assert info.start_frame == 86400  # NDF timecode counts nominal 24 fps: 3600 * 24


def test_past_the_end_names_file_and_first_missing_frame(movies):
    # MP4 states its frame count: refused when asked.
    with pytest.raises(MediaError, match=r"plate_24\.mp4.*frame 144"):
        read_frames(movies["mp4_24"], 140, 10)
    # MKV does not: the frames that exist come first, then the error.
    got = []
    with pytest.raises(MediaError, match=r"plate_ntsc\.mkv.*frame 144"):
        for f in read_frames(movies["mkv_ntsc_tc"], 140, 10):
            got.append(frame_index(f))
    assert got == [140, 141, 142, 143]
    with pytest.raises(MediaError, match=r"plate_ntsc\.mkv.*frame 200"):
        list(read_frames(movies["mkv_ntsc_tc"], 200, 1))


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(MediaError, match="nope.mov"):
        probe(tmp_path / "nope.mov")
    with pytest.raises(MediaError, match="nope.mov"):
        read_frames(tmp_path / "nope.mov", 0, 1)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a movie at all" * 10)
    with pytest.raises(MediaError, match="junk.mp4"):
        probe(junk)
    err = MediaError(junk, "broken", 7)
    assert str(pickle.loads(pickle.dumps(err))) == str(err) == f"{junk}, frame 7: broken"


def test_read_frames_streams(movies):
    path = movies["mkv_ntsc_tc"]
    # Lazy: a count far past the end is only an error once reached; the first frames come at once.
    first = list(itertools.islice(read_frames(path, 0, 10**6), 3))
    assert [frame_index(f) for f in first] == [0, 1, 2]
    # Bounded: frames already handed out are not kept alive by the reader.
    refs, alive_max = [], 0
    for f in read_frames(path, 0, 60):
        refs.append(weakref.ref(f))
        del f
        gc.collect()
        alive_max = max(alive_max, sum(r() is not None for r in refs))
    assert len(refs) == 60 and alive_max <= 2


@pytest.mark.parametrize("shape", [(37, 53, 3), (37, 53), (192, 320, 3)])
def test_lossless_intermediate_round_trip(tmp_path, shape):
    rng = np.random.default_rng(len(shape))
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(6)]
    path = tmp_path / "inter.mkv"
    assert write_video_lossless(path, iter(frames), Fraction(24000, 1001), timecode="01:00:00:00") == 6
    back = list(read_video(path))
    assert len(back) == 6
    assert all(b.shape == shape and np.array_equal(a, b) for a, b in zip(frames, back))
    info = probe(path)
    assert info.pix_fmt == ("gray" if len(shape) == 2 else "bgr0")
    assert (info.frames, info.rate, info.start_frame) == (6, Fraction(24000, 1001), 86400)
    # Exact ranges on intermediates too (all-intra); read_frames always gives RGB.
    rgb = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in frames]
    assert all(np.array_equal(a, b) for a, b in zip(rgb[2:5], read_frames(path, 2, 3)))
    assert os.listdir(tmp_path) == ["inter.mkv"]


def test_lossless_write_is_atomic(tmp_path):
    path = tmp_path / "inter.mkv"
    old = [np.full((16, 16, 3), 7, np.uint8)]
    write_video_lossless(path, old, 24)

    def failing():
        yield np.zeros((16, 16, 3), np.uint8)
        yield np.zeros((16, 16, 3), np.uint8)
        raise RuntimeError("render died")

    with pytest.raises(RuntimeError, match="render died"):
        write_video_lossless(path, failing(), 24)
    assert os.listdir(tmp_path) == ["inter.mkv"]  # no partial file left behind
    assert np.array_equal(next(read_video(path)), old[0])  # the previous file is untouched


def test_lossless_write_rejects_bad_frames(tmp_path):
    with pytest.raises(MediaError, match=r"bad\.mkv, frame 0.*uint8"):
        write_video_lossless(tmp_path / "bad.mkv", [np.zeros((8, 8, 3), np.float32)], 24)
    with pytest.raises(MediaError, match=r"bad\.mkv, frame 1.*shape"):
        write_video_lossless(tmp_path / "bad.mkv", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], 24)
    with pytest.raises(MediaError, match=r"bad\.mov.*\.mkv"):
        write_video_lossless(tmp_path / "bad.mov", [np.zeros((8, 8, 3), np.uint8)], 24)
    with pytest.raises(MediaError, match=r"bad\.mkv.*no frames"):
        write_video_lossless(tmp_path / "bad.mkv", [], 24)
    assert os.listdir(tmp_path) == []


def test_png_sequence(tmp_path):
    frames = [coded_frame(i) for i in range(5)]
    assert write_png_sequence(tmp_path / "plate.####.png", frames, first_frame=1001) == 5
    assert sorted(os.listdir(tmp_path)) == [f"plate.{n}.png" for n in range(1001, 1006)]
    expected = str(tmp_path / "plate.####.png")
    for name in ["plate.####.png", "plate.%04d.png", "plate.1003.png"]:
        info = probe(tmp_path / name, sequence_rate=Fraction(24000, 1001))
        assert (info.path, info.kind, info.frames, info.start_frame) == (expected, "sequence", 5, 1001)
        assert (info.width, info.height, info.rate, info.pix_fmt) == (W, H, Fraction(24000, 1001), "rgb24")
    got = list(read_frames(tmp_path / "plate.%04d.png", 1, 3))
    assert all(np.array_equal(a, b) for a, b in zip(frames[1:4], got))
    small = list(read_frames(tmp_path / "plate.####.png", 0, 5, size=(96, 160)))
    assert [frame_index(f) for f in small] == list(range(5)) and small[0].shape == (96, 160, 3)
    with pytest.raises(MediaError, match=r"plate\.####\.png.*frame 5"):
        read_frames(tmp_path / "plate.####.png", 3, 3)


def test_sequence_gap_is_named(tmp_path):
    write_png_sequence(tmp_path / "plate.####.png", [coded_frame(i) for i in range(5)])
    (tmp_path / "plate.1003.png").unlink()
    with pytest.raises(MediaError, match=r"plate\.1003\.png"):
        probe(tmp_path / "plate.####.png")
    with pytest.raises(MediaError, match=r"plate\.1003\.png"):
        read_frames(tmp_path / "plate.####.png", 0, 2)
    with pytest.raises(MediaError, match=r"no frames"):
        probe(tmp_path / "other.####.png")


def test_sequence_bit_depths_and_channels(tmp_path):
    rng = np.random.default_rng(3)
    rgb = [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(2)]
    # 16-bit PNG (v * 257) comes back as exactly v; gray comes back as RGB.
    for i, a in enumerate(rgb):
        cv2.imwrite(str(tmp_path / f"deep.{i + 1:04d}.png"), cv2.cvtColor(a.astype(np.uint16) * 257, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / f"gray.{i + 1:04d}.tif"), a[..., 1])
    assert probe(tmp_path / "deep.####.png").pix_fmt == "rgb48"
    assert all(np.array_equal(a, b) for a, b in zip(rgb, read_frames(tmp_path / "deep.####.png", 0, 2)))
    gray = list(read_frames(tmp_path / "gray.####.tif", 0, 2))
    assert all(np.array_equal(np.repeat(a[..., 1:2], 3, axis=2), b) for a, b in zip(rgb, gray))
    # EXR (float, exactly v/255) and 16-bit DPX, which OpenCV here cannot read, go through PyAV.
    _write_images(tmp_path / "flt.%04d.exr", "exr", "gbrpf32le", [a.astype(np.float32) / 255 for a in rgb])
    _write_images(tmp_path / "log.%04d.dpx", "dpx", "rgb48le", [a.astype(np.uint16) * 257 for a in rgb])
    for pattern, pix_fmt in [("flt.####.exr", "rgbf32"), ("log.####.dpx", "rgb48")]:
        info = probe(tmp_path / pattern)
        assert (info.frames, info.start_frame, info.pix_fmt, info.width, info.height) == (2, 1, pix_fmt, 40, 24)
        assert all(np.array_equal(a, b) for a, b in zip(rgb, read_frames(tmp_path / pattern, 0, 2)))
    # Floats outside 0..1 are clipped, not wrapped.
    _write_images(tmp_path / "hot.%04d.exr", "exr", "gbrpf32le", [np.full((24, 40, 3), 3.5, np.float32)])
    assert next(read_frames(tmp_path / "hot.0001.exr", 0, 1)).min() == 255


def _write_images(pattern: Path, codec: str, pix_fmt: str, arrays) -> None:
    with av.open(str(pattern), "w", format="image2") as out:
        stream = out.add_stream(codec, rate=24)
        stream.height, stream.width = arrays[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for i, a in enumerate(arrays):
            frame = av.VideoFrame.from_ndarray(a, format=pix_fmt)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


# ---------------------------------------------------------------------------------------------
# The VOID samples (H.264, 12 fps; quadmasks are lossless yuv444p H.264 holding R=G=B levels)


def _void_dirs():
    if not VOID_SAMPLES.is_dir():
        return []
    return sorted(p for p in VOID_SAMPLES.iterdir() if (p / "input_video.mp4").exists())


def _mask_file(d: Path) -> Path:
    return next(p for p in (d / "quadmask_0.mp4", d / "trimask_quadmask.mp4") if p.exists())


@pytest.mark.slow  # 4K H.264: a few seconds each
@pytest.mark.parametrize("sample", _void_dirs() or [None], ids=lambda p: p.name if p else "absent")
def test_void_sample(sample):
    if sample is None:
        pytest.skip(f"VOID samples not found under {VOID_SAMPLES}")
    video, mask = sample / "input_video.mp4", _mask_file(sample)
    info, minfo = probe(video), probe(mask)
    assert info.rate == minfo.rate == Fraction(12)
    assert (minfo.width, minfo.height, minfo.frames) == (info.width, info.height, info.frames)
    assert 40 <= info.frames <= 70 and info.width in (1296, 3840)
    # The stated frame count is the decodable one (decoded to the end, not trusting the header).
    assert sum(1 for _ in media.iter_frames(video, size=(72, 128))) == info.frames
    with pytest.raises(MediaError, match=f"{video.name}.*frame {info.frames}"):
        read_frames(video, info.frames - 2, 3)
    # The raw RGB decode of the mask is already exactly the four levels, with R = G = B.
    tail = 4  # read_mask_frames (the quadmask path, gray decode) checked on the last frames
    masks = read_mask_frames(mask, minfo.frames - tail, tail)
    n = 0
    for raw in read_frames(mask, 0, minfo.frames):
        r = np.ascontiguousarray(raw[..., 0])
        assert np.array_equal(r, raw[..., 1]) and np.array_equal(r, raw[..., 2]), n
        counts = cv2.calcHist([r], [0], None, [256], [0, 256]).ravel()  # fast on 4K frames
        assert set(np.flatnonzero(counts).tolist()) <= LEVELS, n
        if n >= minfo.frames - tail:
            assert np.array_equal(next(masks), r), n  # quantizing changes nothing
        n += 1
    assert n == info.frames


# ---------------------------------------------------------------------------------------------
# Bad input: one clear line naming the file and what is wrong


STALL_MSG = "did not open within 2 s (stalled storage? VOIDBATCH_MEDIA_TIMEOUT sets the limit)"


@pytest.mark.timeout(120)  # before the timeout existed these hung forever
def test_movie_that_never_opens_times_out(stalled_path, short_media_timeout):
    movie = stalled_path("plate.mov")  # a FIFO: open() blocks like a file on a hung mount
    with pytest.raises(MediaError) as e:
        probe(movie)
    assert str(e.value) == f"{movie}: {STALL_MSG}"
    with pytest.raises(MediaError, match=re.escape(f"{movie}: {STALL_MSG}")):
        list(media.iter_frames(movie))


@pytest.mark.timeout(120)
def test_image_that_never_opens_times_out(tmp_path, stalled_path, short_media_timeout):
    frame = stalled_path("seq/plate.0001.png")  # cv2.imread blocks on it
    write_png_sequence(tmp_path / "seq" / "plate.####.png", [coded_frame(1)], first_frame=2)
    with pytest.raises(MediaError) as e:
        probe(tmp_path / "seq" / "plate.####.png")
    assert str(e.value) == f"{frame}: {STALL_MSG}"


@pytest.mark.timeout(120)
def test_read_that_stalls_times_out(movies, monkeypatch, short_media_timeout):
    """A container that opened and then stops delivering (storage went away mid-read)."""
    release = threading.Event()
    real_seek = shots_movies._seek

    def stalled_seek(container, stream, pts):
        release.wait()  # the demuxer waits on storage that does not answer
        real_seek(container, stream, pts)

    monkeypatch.setattr(shots_movies, "_seek", stalled_seek)
    path = movies["mp4_24"]
    try:
        with pytest.raises(MediaError) as e:
            list(read_frames(path, 50, 6))
    finally:
        release.set()
    assert str(e.value) == (f"{path}, frame 50: stalled: no data for 2 s "
                            "(stalled storage? VOIDBATCH_MEDIA_TIMEOUT sets the limit)")


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_bad_media_timeout_setting_is_named(movies, monkeypatch, value):
    monkeypatch.setenv("VOIDBATCH_MEDIA_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"VOIDBATCH_MEDIA_TIMEOUT={value!r}"):
        probe(movies["mp4_24"])


@pytest.fixture(scope="module")
def vfr_movies(tmp_path_factory):
    """24 frames at 24 fps then 30 frames at 30 fps, stream-copied into one file: really variable rate."""
    d = tmp_path_factory.mktemp("vfr")
    a, b = encode(d / "a.mkv", "24", n=24), encode(d / "b.mkv", "30", n=30)
    (d / "list.txt").write_text(f"file '{a}'\nfile '{b}'\n")
    out = {}
    for ext, extra in [("mkv", []), ("mp4", ["-timecode", "01:00:00:00"])]:
        out[ext] = d / f"vfr.{ext}"
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                        "-i", str(d / "list.txt"), "-c", "copy", "-fps_mode", "passthrough", *extra, str(out[ext])],
                       check=True)
    return out


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_rate_is_named(vfr_movies, ext):
    path = vfr_movies[ext]
    with pytest.raises(MediaError) as e:
        probe(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: variable frame rate: frame intervals vary from "), msg
    assert "conform it to a constant frame rate first" in msg and "-fps_mode cfr" in msg
    with pytest.raises(MediaError, match=f"{re.escape(str(path))}, frame .*: variable frame rate"):
        list(read_frames(path, 0, 40))


@pytest.fixture(scope="module")
def two_stream_movies(movies, tmp_path_factory):
    """The 320x192 plate as the SECOND video stream, a 160x96 proxy first (mp4 also: a bigger cover picture)."""
    d = tmp_path_factory.mktemp("two_streams")
    proxy = d / "proxy.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={W // 2}x{H // 2}:rate=24", "-frames:v", str(N), "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(proxy)], check=True)
    cover = d / "cover.png"
    cv2.imwrite(str(cover), np.full((H * 2, W * 2, 3), 200, np.uint8))
    out = {}
    for ext in ("mp4", "mkv"):
        out[ext] = d / f"two.{ext}"
        cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(proxy), "-i", str(movies["mp4_24"])]
        if ext == "mp4":
            cmd += ["-i", str(cover), "-map", "0", "-map", "1", "-map", "2", "-c:v:0", "copy", "-c:v:1", "copy",
                    "-c:v:2", "png", "-disposition:v:2", "attached_pic"]
        else:
            cmd += ["-map", "0", "-map", "1", "-c", "copy"]
        subprocess.run([*cmd, str(out[ext])], check=True)
    return out


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_two_video_streams_the_plate_is_the_largest(two_stream_movies, sequential, ext, caplog):
    path = two_stream_movies[ext]
    with av.open(str(path)) as c:  # the file really is proxy first, plate second
        assert [(s.codec_context.width, s.codec_context.height) for s in c.streams.video][:2] == \
            [(W // 2, H // 2), (W, H)]
    with caplog.at_level(logging.INFO, logger="shots.movies"):
        info = probe(path)
    assert (info.width, info.height, info.frames, info.rate, info.stream) == (W, H, N, Fraction(24), 1)
    assert f"{path.name}: video stream 1 ({W}x{H}) is the plate" in caplog.text
    got = list(read_frames(path, 40, 5))
    assert [frame_index(f) for f in got] == list(range(40, 45))
    assert all(np.array_equal(f, sequential["mp4_24"][40 + i]) for i, f in enumerate(got))


def test_media_writes_land_through_storage_atomic(tmp_path, monkeypatch):
    from storage import atomic

    landed = []
    real_land = atomic.land

    def spy(tmp, path, exclusive=False):
        landed.append((Path(tmp).name, Path(path).name))
        return real_land(tmp, path, exclusive)

    monkeypatch.setattr(atomic, "land", spy)
    write_video_lossless(tmp_path / "inter.mkv", [np.zeros((8, 8, 3), np.uint8)], 24)
    write_png_sequence(tmp_path / "p.####.png", [np.zeros((8, 8), np.uint8)] * 2)
    assert [final for _, final in landed] == ["inter.mkv", "p.1001.png", "p.1002.png"]
    assert all(tmp.startswith(".") and atomic.is_partial(tmp) for tmp, _ in landed)
    assert sorted(os.listdir(tmp_path)) == ["inter.mkv", "p.1001.png", "p.1002.png"]
