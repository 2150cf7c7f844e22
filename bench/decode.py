"""Decode + resize throughput: shots.media.read_frames against the ffmpeg CLI on the same frames.

Why: extraction to the model's 384x672 is the CPU cost of every chunk; this says whether the
in-process PyAV path (exact seeks, no pipes) costs more than plain ffmpeg. Generates ~120 frames of
1080p and 4K testsrc2 H.264 (GOP 48, 2 B-frames) in a temp dir, then times, best of --repeat runs:

  read_frames size=(384,672)   decode + area resize + rgb24 numpy frames (what the pipeline uses)
  read_frames full res         decode + rgb24 at source size
  ffmpeg -f null               decode only, no conversion
  ffmpeg scale=area            `-vf scale=672:384:flags=area -f null -` (resized, stays yuv420p)
  ffmpeg scale=area,rgb24      same plus format=rgb24: the same pixels read_frames returns

CPU ms/frame counts every thread (and the ffmpeg child): the stable number on a shared box.
ratio = read_frames(384x672) fps / that row's fps.

    python bench/decode.py [--frames 120] [--repeat 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402

from shots.media import probe, read_frames  # noqa: E402

SIZE = (384, 672)  # model input, (height, width)
SOURCES = {"1080p": (1920, 1080), "4K": (3840, 2160)}


def ffmpeg_exe() -> str:
    local = Path(sys.executable).parent / "ffmpeg"
    if local.exists():
        return str(local)
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_source(path: Path, width: int, height: int, frames: int) -> Path:
    if not path.exists():
        subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=24",
             "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
             "-g", "48", "-bf", "2", "-pix_fmt", "yuv420p",
             "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
             str(path)],
            check=True,
        )
    return path


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_read_frames(path: Path, frames: int, size) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    n = sum(1 for _ in read_frames(path, 0, frames, size=size))
    assert n == frames, (path, n)
    return time.perf_counter() - wall0, time.process_time() - cpu0


def time_ffmpeg(path: Path, frames: int, vf: str | None) -> tuple[float, float]:
    cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path)]
    if vf:
        cmd += ["-vf", vf]
    cmd += ["-frames:v", str(frames), "-f", "null", "-"]
    wall0, cpu0 = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - wall0, _children_cpu() - cpu0


def best(fn, repeat: int) -> tuple[float, float]:
    runs = [fn() for _ in range(repeat)]
    return min(runs, key=lambda r: r[0])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="directory to keep (and reuse) the generated sources in")
    args = ap.parse_args(argv)

    h, w = SIZE
    methods = [
        (f"read_frames size=({h},{w})", lambda p, n: time_read_frames(p, n, SIZE)),
        ("read_frames full res", lambda p, n: time_read_frames(p, n, None)),
        ("ffmpeg -f null (decode only)", lambda p, n: time_ffmpeg(p, n, None)),
        (f"ffmpeg scale={w}:{h}:flags=area", lambda p, n: time_ffmpeg(p, n, f"scale={w}:{h}:flags=area")),
        (f"ffmpeg scale=area,format=rgb24", lambda p, n: time_ffmpeg(p, n, f"scale={w}:{h}:flags=area,format=rgb24")),
    ]
    with tempfile.TemporaryDirectory(prefix="voidbatch-bench-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        print(f"PyAV {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}); "
              f"CLI {subprocess.run([ffmpeg_exe(), '-version'], capture_output=True, text=True).stdout.split()[2]}; "
              f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
        rows = []
        for label, (sw, sh) in SOURCES.items():
            print(f"generating {label} source ({args.frames} frames)...", flush=True)
            src = make_source(root / f"testsrc2_{label}.mp4", sw, sh, args.frames)
            n = min(args.frames, probe(src).frames)
            results = [(name, *best(lambda: fn(src, n), args.repeat)) for name, fn in methods]
            ours_fps = n / results[0][1]
            for name, wall, cpu in results:
                fps = n / wall
                rows.append((label, name, fps, 1000 * cpu / n, ours_fps / fps))
        print(f"\nload average after: {os.getloadavg()[0]:.1f}\n")
        header = ("source", "method", "frames/s", "CPU ms/frame", "read_frames/this")
        widths = (7, 34, 9, 13, 17)
        print("  ".join(f"{h_:<{w_}}" for h_, w_ in zip(header, widths)))
        print("  ".join("-" * w_ for w_ in widths))
        for label, name, fps, cpu_ms, ratio in rows:
            print(f"{label:<7}  {name:<34}  {fps:>9.1f}  {cpu_ms:>13.1f}  {ratio:>17.2f}")


if __name__ == "__main__":
    main()
