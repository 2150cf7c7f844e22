"""Plates as a facility delivers them, through the whole batch: precision kept, metadata kept.

Each case makes a real plate in a real format (10-bit ProRes 422 HQ, a 16-bit PNG sequence, a
half-float EXR sequence, a rotated phone clip, an interlaced and a 29.97 non-drop plate), runs the
batch with the deliverable following the plate, and reads what was delivered back independently.
"""
from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
import pytest

from shots import quadmask as qm
from shots.media import probe, read_frames_precise
from shots.synthetic import make_scene
from storage import manifest
from storage.store import ArtifactStore
from tasks.spec import DeliverySpec, IngestSpec, RunSpec
from tests.conftest import ffmpeg_exe

pytestmark = pytest.mark.slow
FRAMES = 20


def _edit(folder: Path, name: str, ref, start: int, rate: Fraction, mask: Path, frames: int = FRAMES) -> Path:
    tl = otio.schema.Timeline(name)
    track = otio.schema.Track("V1")
    tl.tracks.append(track)
    r = float(rate)
    clip = otio.schema.Clip(name=name, media_reference=ref, source_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(start, r), otio.opentime.RationalTime(frames, r)))
    clip.metadata["voidbatch"] = {"prompt": "empty", "quadmask": str(mask)}
    track.append(clip)
    path = folder / f"{name}.otio"
    otio.adapters.write_to_file(tl, str(path))
    return path


def _movie(path: Path, frames: np.ndarray, rate: Fraction, args: list[str], pix_in: str = "rgb48le") -> Path:
    h, w = frames.shape[1:3]
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_in, "-s", f"{w}x{h}",
           "-r", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:", *args, str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


def _run(edit: Path, out: Path, fmt: str = "auto", colourspace: str | None = None) -> dict:
    from flows.process_edit import process_edit

    spec = RunSpec(out=str(out), ingest=IngestSpec(colourspace=colourspace),
                   delivery=DeliverySpec(format=fmt, qc_every=1))
    state = process_edit(str(edit), spec, return_state=True)
    assert state.is_completed(), state.message
    return manifest.read_shots(ArtifactStore(str(out)))[0]


def _keep(mask_path: Path, t: int) -> np.ndarray:
    """Pixels well away from the removal region (the composite's feather never reaches them)."""
    m = next(qm.read_mask_frames(str(mask_path), t, 1))
    return cv2.dilate((m != 255).astype(np.uint8), np.ones((15, 15), np.uint8)) == 0


def _deep_scene(seed: int, h: int = 96, w: int = 168) -> tuple[np.ndarray, np.ndarray]:
    """A scene at 16 bits: the 8-bit plate with a fine ramp added, so values use far more than 256 levels."""
    scene = make_scene("static", FRAMES, h, w, seed=seed)
    ramp = np.linspace(0, 200, w, dtype=np.float32)[None, None, :, None]
    deep = np.clip(scene.plate.astype(np.float32) * 257 + ramp, 0, 65535).astype(np.uint16)
    return deep, scene.quadmask


def test_10bit_prores_plate_delivers_16bit_with_an_exact_keep_region(prefect_server, tmp_path):
    deep, quad = _deep_scene(21)
    plate = _movie(tmp_path / "plate.mov", deep, Fraction(24), ["-c:v", "prores_ks", "-profile:v", "3",
                                                                 "-pix_fmt", "yuv422p10le", "-timecode", "01:00:00:00"])
    qm.write_quadmask(tmp_path / "mask.mkv", quad, 24)
    edit = _edit(tmp_path, "sh10bit", otio.schema.ExternalReference(target_url=str(plate)), 86400, Fraction(24),
                 tmp_path / "mask.mkv")
    row = _run(edit, tmp_path / "out")
    assert row["output_format"] == "png" and row["source_bits"] == 10
    assert row["qc_precision"] == "16-bit code" and row["qc_keep_max_diff"] == 0 and row["qc_frames_checked"] == FRAMES
    source = list(read_frames_precise(str(plate), 0, FRAMES))  # an independent 16-bit decode of the plate
    for t in (0, FRAMES // 2, FRAMES - 1):
        out = cv2.imread(f"{row['output_uri']}/sh10bit_void_v001.{1001 + t}.png", cv2.IMREAD_UNCHANGED)[..., ::-1]
        keep = _keep(tmp_path / "mask.mkv", t)
        assert out.dtype == np.uint16 and np.array_equal(out[keep], source[t][keep])
    assert len(np.unique(out)) > 2000  # not 148-201 grey levels as the 8-bit path gave


def test_16bit_png_plate_is_delivered_exactly(prefect_server, tmp_path):
    deep, quad = _deep_scene(22)
    plates = tmp_path / "plates"
    plates.mkdir()
    for t, f in enumerate(deep):
        cv2.imwrite(str(plates / f"p16.{1001 + t}.png"), f[..., ::-1])
    qm.write_quadmask(tmp_path / "mask.mkv", quad, 24)
    ref = otio.schema.ImageSequenceReference(target_url_base=str(plates) + "/", name_prefix="p16.", name_suffix=".png",
                                             start_frame=1001, frame_zero_padding=4, rate=24)
    row = _run(_edit(tmp_path, "sh16", ref, 1001, Fraction(24), tmp_path / "mask.mkv"), tmp_path / "out")
    assert row["source_bits"] == 16 and row["qc_keep_max_diff"] == 0 and row["qc_precision"] == "16-bit code"
    out = cv2.imread(f"{row['output_uri']}/sh16_void_v001.1010.png", cv2.IMREAD_UNCHANGED)[..., ::-1]
    keep = _keep(tmp_path / "mask.mkv", 9)
    assert out.dtype == np.uint16 and np.array_equal(out[keep], deep[9][keep])


def test_exr_plate_delivers_exr_with_its_attributes(prefect_server, tmp_path):
    import OpenEXR

    scene = make_scene("static", FRAMES, 64, 112, seed=23)
    linear = [f.astype(np.float32) / 255.0 * 2.0 for f in scene.plate]  # scene-linear, up to 2.0
    (tmp_path / "plates").mkdir()
    alpha = np.linspace(0.5, 1.0, 112, dtype=np.float16)[None, :].repeat(64, axis=0)  # a matte rides along
    for t, f in enumerate(linear):
        OpenEXR.File({"compression": OpenEXR.PIZ_COMPRESSION, "type": OpenEXR.scanlineimage},
                     {"RGB": f.astype(np.float16), "A": alpha.copy()}).write(str(tmp_path / "plates" / f"lin.{1001 + t}.exr"))
    qm.write_quadmask(tmp_path / "mask.mkv", scene.quadmask, 24)
    ref = otio.schema.ImageSequenceReference(target_url_base=str(tmp_path / "plates") + "/", name_prefix="lin.",
                                             name_suffix=".exr", start_frame=1001, frame_zero_padding=4, rate=24)
    row = _run(_edit(tmp_path, "shexr", ref, 1001, Fraction(24), tmp_path / "mask.mkv"), tmp_path / "out")
    assert row["output_format"] == "exr" and row["qc_precision"] == "float" and row["qc_keep_max_diff"] == 0
    with OpenEXR.File(f"{row['output_uri']}/shexr_void_v001.1001.exr") as f:
        header = dict(f.header())
        pixels = np.array(f.channels()["RGBA"].pixels)[..., :3]
        assert np.array_equal(f.channels()["RGBA"].pixels[..., 3], alpha)
    with OpenEXR.File(str(tmp_path / "plates" / "lin.1001.exr")) as f:  # the source's own half values
        source = np.array(f.channels()["RGBA"].pixels)[..., :3]
    assert {"chromaticities", "timeCode", "framesPerSecond", "pixelAspectRatio"} <= set(header)
    assert header["compression"] == OpenEXR.PIZ_COMPRESSION  # the plate's, not a default
    assert header["pixelAspectRatio"] == 1.0 and header["framesPerSecond"] == Fraction(24)
    keep = _keep(tmp_path / "mask.mkv", 0)
    assert pixels.dtype == np.float16 and pixels.max() > 1.5  # scene-linear values above 1.0 kept
    assert source.dtype == np.float16 and np.array_equal(pixels[keep], source[keep])
    assert row["colour_space"].startswith("Linear Rec.709 (sRGB)")  # untagged EXR: assumption recorded

    # The facility says the plates are ACEScg: recorded, and the removal sees them through the ACES SDR view.
    aces = _run(_edit(tmp_path, "shexr", ref, 1001, Fraction(24), tmp_path / "mask.mkv"), tmp_path / "aces",
                colourspace="ACEScg")
    assert aces["colour_space"] == "ACEScg (edit)" and aces["qc_keep_max_diff"] == 0
    with OpenEXR.File(f"{aces['output_uri']}/shexr_void_v001.1001.exr") as f:
        graded = np.array(f.channels()["RGBA"].pixels)[..., :3]
    assert np.array_equal(graded[keep], source[keep])


def test_rotated_interlaced_and_non_drop_plates_keep_what_they_are(prefect_server, tmp_path):
    """A phone clip turned 90 degrees is delivered upright (the mask drawn on the displayed picture fits);
    an interlaced 29.97 non-drop plate is flagged, and its ProRes deliverable keeps ':' timecode."""
    scene = make_scene("static", FRAMES, 112, 64, seed=24)  # upright: portrait 64 wide, 112 high
    stored = np.ascontiguousarray(np.rot90(scene.plate, k=1, axes=(1, 2)))  # stored landscape, shown portrait
    plate = _movie(tmp_path / "phone.mp4", stored, Fraction(30000, 1001),
                   ["-vf", "setfield=tff", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", "-flags", "+ilme+ildct",
                    "-timecode", "01:00:00:00"], pix_in="rgb24")
    rotated = tmp_path / "phone_rotated.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-display_rotation", "-90", "-i", str(plate), "-c", "copy",
                    str(rotated)], check=True)
    info = probe(str(rotated))
    assert (info.width, info.height) == (64, 112) and info.field_order != "progressive" and not info.drop_frame
    qm.write_quadmask(tmp_path / "mask.mkv", scene.quadmask, Fraction(30000, 1001))  # drawn on the upright picture
    edit = _edit(tmp_path, "shphone", otio.schema.ExternalReference(target_url=str(rotated)), info.start_frame,
                 Fraction(30000, 1001), tmp_path / "mask.mkv")
    row = _run(edit, tmp_path / "out", fmt="prores")
    assert row["field_order"] == info.field_order and row["source_tc_in"] == "01:00:00:00"
    out = probe(row["output_uri"])
    assert (out.width, out.height) == (64, 112) and out.timecode == "01:00:00:00" and not out.drop_frame
    delivered = next(read_frames_precise(row["output_uri"], 0, 1))  # upright, not sideways nor squashed
    upright = scene.plate[0].astype(np.float32) * 257
    keep = _keep(tmp_path / "mask.mkv", 0)
    assert np.abs(delivered.astype(np.float32)[keep] - upright[keep]).mean() < 3 * 257  # ProRes, not lossless
