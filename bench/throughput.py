"""End-to-end throughput of one 1080p shot on the CPU backend, and where the wall time goes.

Runs the shot pipeline as plain libraries (prepare -> remove -> conform, no Prefect) on a
generated H.264 1080p plate with a moving ball and its shadow, timing decode, intermediate and
deliverable encode, and removal by wrapping those calls; compositing and the rest is what remains.

    .venv/bin/python bench/throughput.py [--frames 120] [--format png]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import opentimelineio as otio  # noqa: E402

from model import removal  # noqa: E402
from model import native_fill  # noqa: E402
from model.classical import ClassicalBackend  # noqa: E402
from model.native_detail import NativeDetail  # noqa: E402
from shots import conform, deliver, extract, provenance  # noqa: E402
from shots import quadmask as qm  # noqa: E402
from shots.deliver import ffmpeg_exe  # noqa: E402
from shots.detail import DETAILS  # noqa: E402
from shots.ingest import IngestOptions, ingest  # noqa: E402
from shots.synthetic import make_scene  # noqa: E402
from storage.store import ArtifactStore  # noqa: E402
from tasks.shot import content_credentials  # noqa: E402
from tasks.spec import DeliverySpec, RunSpec  # noqa: E402

TIMES = {"decode": 0.0, "encode": 0.0, "removal": 0.0, "native fill": 0.0, "qc read-back": 0.0,
         "c2pa signing": 0.0}


def _timed_iter(fn, bucket):
    def wrapper(*a, **k):
        it = fn(*a, **k)

        def gen():
            while True:
                t0 = time.perf_counter()
                try:
                    x = next(it)
                except StopIteration:
                    TIMES[bucket] += time.perf_counter() - t0
                    return
                TIMES[bucket] += time.perf_counter() - t0
                yield x
        return gen()
    return wrapper


def _timed_call(fn, bucket):
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            TIMES[bucket] += time.perf_counter() - t0
    return wrapper


def make_plate(folder: Path, frames: int) -> Path:
    scene = make_scene("static", frames, 1080, 1920, seed=7)
    plate = folder / "plate_1080p.mov"
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "1920x1080", "-r", "24",
           "-i", "pipe:", "-c:v", "libx264", "-crf", "16", "-g", "48", "-bf", "2", "-pix_fmt", "yuv420p",
           "-timecode", "01:00:00:00", str(plate)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    proc.stdin.write(scene.plate.tobytes())
    proc.stdin.close()
    proc.wait()
    qm.write_quadmask(folder / "mask.mkv", scene.quadmask, 24)
    tl = otio.schema.Timeline("bench")
    tr = otio.schema.Track("V1")
    tl.tracks.append(tr)
    clip = otio.schema.Clip(name="bench1080", media_reference=otio.schema.ExternalReference(target_url=str(plate)),
                            source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(86400, 24),
                                                                 otio.opentime.RationalTime(frames, 24)))
    clip.metadata["voidbatch"] = {"prompt": "empty set", "quadmask": str(folder / "mask.mkv")}
    tr.append(clip)
    otio.adapters.write_to_file(tl, str(folder / "bench.otio"))
    return folder / "bench.otio"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--format", default="png", choices=deliver.FORMATS)
    ap.add_argument("--qc-every", type=int, default=10, help="QC reads back the first, last and every Nth frame")
    ap.add_argument("--provenance", default="unsigned", choices=("unsigned", "off"), help="C2PA signing")
    ap.add_argument("--detail", default="native", choices=DETAILS, help="native: the region at plate resolution")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        edit = make_plate(folder, args.frames)
        shot = ingest(edit, IngestOptions(handles=0))[0]
        # instrument the library seams
        extract.read_frames = _timed_iter(extract.read_frames, "decode")
        extract.read_frames_precise = _timed_iter(extract.read_frames_precise, "decode")
        extract.write_video_lossless = _timed_call(extract.write_video_lossless, "encode")
        removal.write_video_lossless = _timed_call(removal.write_video_lossless, "encode")
        deliver.SequenceWriter.write = _timed_call(deliver.SequenceWriter.write, "encode")
        deliver.ProResWriter.write = _timed_call(deliver.ProResWriter.write, "encode")
        conform._qc = _timed_call(conform._qc, "qc read-back")
        provenance.sign_version = _timed_call(provenance.sign_version, "c2pa signing")
        native_fill.fill_native = _timed_call(native_fill.fill_native, "native fill")
        backend = ClassicalBackend()
        backend.remove = _timed_call(backend.remove, "removal")
        store = ArtifactStore(str(folder / "out"))

        t0 = time.perf_counter()
        prepared = extract.prepare_shot(shot, store)
        t1 = time.perf_counter()
        loaded = removal.already_loaded(backend)
        results = [removal.remove_chunk(c, backend.identity, loaded, store, prepared.work_key, shot.shot_id, rate=24)
                   for c in prepared.chunks]
        t2 = time.perf_counter()
        spec = RunSpec(out=store.root, delivery=DeliverySpec(format=args.format, provenance=args.provenance))
        conform.conform_shot(prepared, {r.chunk_index: r.output_key for r in results}, store, args.format,
                             qc_every=args.qc_every,
                             sign=content_credentials(prepared, backend.identity, spec, args.format),
                             native=NativeDetail(prepared, generated=False) if args.detail == "native" else None)
        t3 = time.perf_counter()

    wall = t3 - t0
    other = wall - sum(TIMES.values())
    print(f"1080p shot, {args.frames} frames, ROI {prepared.roi.as_list()}, {len(prepared.chunks)} chunk(s), "
          f"deliverable {args.format}, detail {args.detail}, QC every {args.qc_every} frame(s), "
          f"provenance {args.provenance}")
    print(f"end to end: {wall:.1f} s = {args.frames / wall:.2f} frames/s")
    print(f"stages: prepare {t1 - t0:.1f} s, remove {t2 - t1:.1f} s, conform {t3 - t2:.1f} s")
    print(f"{'share of wall time':<22}{'seconds':>9}{'share':>8}")
    for name, s in [*TIMES.items(), ("composite+other", other)]:
        print(f"{name:<22}{s:>9.1f}{100 * s / wall:>7.1f}%")


if __name__ == "__main__":
    main()
