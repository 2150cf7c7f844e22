"""A generated sample edit with known clean plates: what `make demo` runs and the batch tests use.

Three shots on one track: a locked-off shot with a moving ball and its shadow, a slow pan, and
one long enough to need three chunks. Plates, quadmasks and the clean truth are lossless FFV1
movies carrying a source timecode; the .otio trims each clip by the handles, and carries the
removal instructions under clip metadata 'voidbatch'.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio

from shots import quadmask as qm
from shots.media import read_frames, write_video_lossless
from shots.synthetic import make_scene

SAMPLE_SHOTS = (  # (clip name, scene kind, frames, seed)
    ("sh010_static", "static", 96, 1),
    ("sh020_pan", "pan", 96, 2),
    ("sh030_long", "static", 420, 3),
)
HANDLES = 8
TIMECODE = "01:00:00:00"


@dataclass(frozen=True)
class SampleShot:
    clip_name: str
    plate: str
    quadmask: str
    clean: str
    frames: int


def write_sample_edit(folder: str | Path, height: int = 360, width: int = 640, rate: Fraction = Fraction(24),
                      shots=SAMPLE_SHOTS) -> tuple[Path, list[SampleShot]]:
    """Write media and `sample_edit.otio` into `folder`; returns the edit path and the shots' files."""
    folder = Path(folder)
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    r = float(rate)
    tc_start = otio.opentime.from_timecode(TIMECODE, r).value
    timeline = otio.schema.Timeline("voidbatch sample edit")
    track = otio.schema.Track("V1")
    timeline.tracks.append(track)
    written = []
    for name, kind, frames, seed in shots:
        scene = make_scene(kind, frames, height, width, seed)
        plate, mask, clean = (media / f"{name}.mkv", media / f"{name}_quadmask.mkv", media / f"{name}_clean.mkv")
        if not plate.exists():
            write_video_lossless(plate, scene.plate, rate, timecode=TIMECODE)
            qm.write_quadmask(mask, scene.quadmask, rate)
            write_video_lossless(clean, scene.clean, rate, timecode=TIMECODE)
        del scene
        available = otio.opentime.TimeRange(otio.opentime.RationalTime(tc_start, r),
                                            otio.opentime.RationalTime(frames, r))
        clip = otio.schema.Clip(
            name=name,
            media_reference=otio.schema.ExternalReference(target_url=str(plate.resolve()), available_range=available),
            source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(tc_start + HANDLES, r),
                                                 otio.opentime.RationalTime(frames - 2 * HANDLES, r)),
        )
        clip.metadata["voidbatch"] = {"prompt": "the empty set, nothing in front of the background",
                                      "quadmask": str(mask.resolve())}
        track.append(clip)
        written.append(SampleShot(name, str(plate), str(mask), str(clean), frames))
    edit = folder / "sample_edit.otio"
    otio.adapters.write_to_file(timeline, str(edit))
    (folder / "truth.json").write_text(json.dumps([s.__dict__ for s in written], indent=1))
    return edit, written


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def score_against_truth(sample: SampleShot, frames: list[np.ndarray]) -> dict:
    """PSNR of delivered frames against the clean truth, inside the removal region and over the frame."""
    n = len(frames)
    truth = np.stack(list(read_frames(sample.clean, 0, n)))
    mask = np.stack(list(qm.read_mask_frames(sample.quadmask, 0, n)))
    out = np.stack(frames)
    region = mask != 255
    return {"frames": n, "psnr_region_db": psnr(out[region], truth[region]), "psnr_frame_db": psnr(out, truth)}
