"""Every shot accounted for, in-process on a real Prefect test server: content keys, QC of delivered files,
degenerate masks, the morning rerun's conform.

The process-level cases (a full disk, SIGTERM and SIGKILL of a real `voidbatch run`, a second run on the
same folder) are in tests/test_cli_batch.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
import pytest

from shots import quadmask as qm
from shots.detail import region_mask
from shots.media import read_frames, write_png_sequence
from shots.synthetic import make_scene
from storage import manifest
from storage.store import ArtifactStore
from tasks.spec import DeliverySpec, MaskSpec, RunSpec
from tests.conftest import write_exr_sequence

pytestmark = pytest.mark.slow


def spec(out, fmt="png", **more) -> RunSpec:
    return RunSpec(out=str(out), delivery=DeliverySpec(format=fmt, qc_every=1), **more)


def _png_sequence_edit(folder: Path, frames: int = 24) -> tuple[Path, Path, object]:
    """An edit whose plate is a PNG sequence (frames 1001...) with a moving ball to remove."""
    scene = make_scene("static", frames, 64, 112, seed=11)
    plates = folder / "plates"
    write_png_sequence(plates / "plate.####.png", scene.plate, first_frame=1001)
    qm.write_quadmask(folder / "mask.mkv", scene.quadmask, 24)
    tl = otio.schema.Timeline("seq")
    track = otio.schema.Track("V1")
    tl.tracks.append(track)
    ref = otio.schema.ImageSequenceReference(
        target_url_base=str(plates) + "/", name_prefix="plate.", name_suffix=".png", start_frame=1001,
        frame_zero_padding=4, rate=24, available_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(1001, 24), otio.opentime.RationalTime(frames, 24)))
    clip = otio.schema.Clip(name="sh100", media_reference=ref, source_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(1001, 24), otio.opentime.RationalTime(frames, 24)))
    clip.metadata["voidbatch"] = {"prompt": "empty", "quadmask": str(folder / "mask.mkv")}
    track.append(clip)
    otio.adapters.write_to_file(tl, str(folder / "seq.otio"))
    return folder / "seq.otio", plates, scene


def test_plate_regraded_in_place_is_rendered_again(prefect_server, tmp_path):
    """A PNG plate re-delivered under the same names, old mtimes restored, is not `up_to_date`."""
    from flows.process_edit import process_edit

    edit, plates, scene = _png_sequence_edit(tmp_path)
    out = tmp_path / "out"
    assert process_edit(str(edit), spec(out), return_state=True).is_completed()
    files = sorted(plates.glob("*.png"))
    stamps = {f: f.stat() for f in files}
    folder_stamp = plates.stat()
    for f in files:  # the regrade: every frame 30 codes brighter, same names
        img = cv2.imread(str(f))
        cv2.imwrite(str(f), cv2.add(img, 30))
        os.utime(f, ns=(stamps[f].st_atime_ns, stamps[f].st_mtime_ns))
    os.utime(plates, ns=(folder_stamp.st_atime_ns, folder_stamp.st_mtime_ns))
    assert process_edit(str(edit), spec(out), return_state=True).is_completed()
    rows = [r for r in manifest.read_shots(ArtifactStore(str(out))) if r["shot_id"] == "sh100"]
    assert [(r["status"], r["version"]) for r in rows] == [("done", 1), ("done", 2)]
    delivered = next(read_frames(f"{rows[1]['output_uri']}/sh100_void_v002.####.png", 0, 1))
    regraded = next(read_frames(str(plates / "plate.####.png"), 0, 1))
    keep = region_mask(next(qm.read_mask_frames(str(tmp_path / "mask.mkv"), 0, 1))) == 255  # beyond the grown edge
    assert np.array_equal(delivered[keep], regraded[keep])  # the new pixels were delivered
    assert rows[1]["qc_keep_max_diff"] == 0


def test_qc_measures_the_delivered_prores(prefect_server, tmp_path):
    """ProRes is lossy: QC decodes the .mov and says how far the keep region moved; the row says lossy."""
    from flows.process_edit import process_edit
    from shots.sample_edit import write_sample_edit

    edit, _ = write_sample_edit(tmp_path / "e", height=64, width=112, shots=(("sh200", "pan", 20, 4),))
    out = tmp_path / "out"
    assert process_edit(str(edit), spec(out, fmt="prores"), return_state=True).is_completed()
    row = manifest.read_shots(ArtifactStore(str(out)))[0]
    assert row["output_uri"].endswith(".mov") and row["deliverable_lossy"] is True
    assert row["qc_frames_checked"] == row["frames"] == 20 and row["qc_precision"] == "8-bit code"
    assert 0 < row["qc_keep_max_diff"] < 20  # measured on the file, not assumed


def test_inverted_and_all_remove_masks_fail_unless_allowed(prefect_server, tmp_path):
    from flows.process_edit import process_edit
    from shots.sample_edit import write_sample_edit

    edit, samples = write_sample_edit(tmp_path / "e", height=64, width=112, shots=(("sh300", "static", 20, 5),))
    inverted = tmp_path / "inverted.mkv"
    truth = np.stack(list(qm.read_mask_frames(samples[0].quadmask, 0, 20)))
    qm.write_quadmask(inverted, np.where(truth == 255, 0, 255).astype(np.uint8), 24)  # white = object, wrongly
    tl = otio.adapters.read_from_file(str(edit))
    tl.find_clips()[0].metadata["voidbatch"]["quadmask"] = str(inverted)
    otio.adapters.write_to_file(tl, str(edit))
    out = tmp_path / "out"
    state = process_edit(str(edit), spec(out), return_state=True)
    assert state.is_failed()
    row = manifest.read_shots(ArtifactStore(str(out)))[0]
    assert row["status"] == "failed" and "inverted.mkv" in row["error"] and "--allow-large-mask" in row["error"]
    allowed = spec(out, masks=MaskSpec(allow_large_mask=True))
    assert process_edit(str(edit), allowed, return_state=True).is_completed()


def test_rerun_conform_points_every_clip_at_its_latest_good_version(prefect_server, tmp_path):
    """The morning: one shot failed overnight; after its rerun the conformed edit holds every clip's clean plate."""
    from flows.process_edit import process_edit
    from flows.rerun_failed import rerun_failed
    from shots.sample_edit import write_sample_edit

    edit, samples = write_sample_edit(tmp_path / "e", height=64, width=112, shots=(
        ("sh400", "static", 20, 6), ("sh410", "static", 20, 7)))
    tl = otio.adapters.read_from_file(str(edit))
    clip = next(c for c in tl.find_clips() if c.name == "sh410")
    good_mask = clip.metadata["voidbatch"]["quadmask"]
    clip.metadata["voidbatch"]["quadmask"] = str(tmp_path / "not_delivered_yet.mkv")
    otio.adapters.write_to_file(tl, str(edit))
    out = tmp_path / "out"
    assert process_edit(str(edit), spec(out), return_state=True).is_failed()
    clip.metadata["voidbatch"]["quadmask"] = good_mask  # the mask arrives in the morning
    otio.adapters.write_to_file(tl, str(edit))
    state = rerun_failed(str(out), return_state=True)
    assert state.is_completed(), state.message
    conforms = sorted((out / "conform").glob("*.otio"))
    assert [p.name for p in conforms] == ["sample_edit_void_v001.otio", "sample_edit_void_v002.otio"]
    latest = otio.adapters.read_from_file(str(conforms[-1]))
    active = {c.name: c.active_media_reference_key for c in latest.find_clips()}
    assert active == {"sh400": "voidbatch_v001", "sh410": "voidbatch_v001"}  # not just the re-rendered one


def test_float_plate_highlights_survive_and_qc_reads_at_float_precision(prefect_server, tmp_path):
    """Highlights up to 6.0 in the untouched region of an EXR plate come back 6.0 in the delivered EXR;
    QC reads both at float precision (the old 8-bit pipeline clipped them to 1.0 and QC said 0)."""
    from flows.process_edit import process_edit

    scene = make_scene("static", 12, 64, 112, seed=12)
    linear = [f.astype(np.float32) / 255.0 for f in scene.plate]
    for f in linear:
        f[:8, :16] = 6.0  # a hot highlight far from the object
    write_exr_sequence(tmp_path / "plates", "hot", linear)
    qm.write_quadmask(tmp_path / "mask.mkv", scene.quadmask, 24)
    tl = otio.schema.Timeline("exr")
    track = otio.schema.Track("V1")
    tl.tracks.append(track)
    ref = otio.schema.ImageSequenceReference(
        target_url_base=str(tmp_path / "plates") + "/", name_prefix="hot.", name_suffix=".exr", start_frame=1001,
        frame_zero_padding=4, rate=24)
    clip = otio.schema.Clip(name="sh500", media_reference=ref, source_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(1001, 24), otio.opentime.RationalTime(12, 24)))
    clip.metadata["voidbatch"] = {"prompt": "empty", "quadmask": str(tmp_path / "mask.mkv")}
    track.append(clip)
    otio.adapters.write_to_file(tl, str(tmp_path / "exr.otio"))
    out = tmp_path / "out"
    assert process_edit(str(tmp_path / "exr.otio"), spec(out, fmt="exr"), return_state=True).is_completed()
    row = manifest.read_shots(ArtifactStore(str(out)))[0]
    assert row["qc_precision"] == "float" and row["qc_frames_checked"] == 12 and row["qc_keep_max_diff"] == 0
    assert row["source_bits"] == 16 and row["colour_space"].startswith("Linear Rec.709 (sRGB)")
    from shots.media import read_frames_precise

    delivered = next(read_frames_precise(f"{row['output_uri']}/sh500_void_v001.####.exr", 0, 1))
    assert delivered.dtype == np.float32 and delivered[:8, :16].min() == 6.0  # the highlight, untouched


def test_a_shot_run_plans_from_the_edit_at_run_time(prefect_server, tmp_path):
    """The GPU pool's process-shot run gets no frozen shot: a Retry after the edit was fixed sees the fix."""
    from flows.process_shot import process_shot
    from shots.sample_edit import write_sample_edit

    edit, samples = write_sample_edit(tmp_path / "e", height=64, width=112, shots=(("sh600", "static", 20, 8),))
    tl = otio.adapters.read_from_file(str(edit))
    tl.find_clips()[0].metadata["voidbatch"]["quadmask"] = str(tmp_path / "missing.mkv")
    otio.adapters.write_to_file(tl, str(edit))
    out = tmp_path / "out"
    first = process_shot(str(edit), spec(out), "sh600", "run-1", 1, return_state=True)
    assert first.is_failed() and "missing.mkv" in first.message
    tl.find_clips()[0].metadata["voidbatch"]["quadmask"] = samples[0].quadmask  # fixed in the edit
    otio.adapters.write_to_file(tl, str(edit))
    again = process_shot(str(edit), spec(out), "sh600", "run-1", 2, return_state=True)
    outcome = again.result()
    assert again.is_completed() and outcome.status == "done" and outcome.deliverable.version == 1


def test_a_rerun_keeps_its_batch_spec_dispatch_included():
    from flows.rerun_failed import fixed_spec
    from tasks.spec import BackendSpec

    night = RunSpec(out="/jobs/cut", dispatch="deployment", backend=BackendSpec(name="classical", steps=4),
                    delivery=DeliverySpec(format="exr"))
    morning = fixed_spec(night, relink="relinked", shots_file=None)
    assert morning.dispatch == "deployment" and morning.backend == night.backend and morning.delivery == night.delivery
    assert morning.ingest.relink == os.path.abspath("relinked") and morning.ingest.shots_file is None


def test_a_farm_batch_names_its_scheduler_or_is_refused_naming_farm(monkeypatch):
    from pydantic import ValidationError

    from flows.rerun_failed import fixed_spec
    from tasks.spec import FARM_ENV, spec_error

    monkeypatch.delenv(FARM_ENV, raising=False)
    with pytest.raises(ValidationError) as refused:
        RunSpec(out="/jobs/cut", dispatch="farm")
    assert spec_error(refused.value).startswith("--farm: dispatch=farm needs the farm's Dask scheduler")
    night = RunSpec(out="/jobs/cut", dispatch="farm", farm="tcp://farm:8786")
    assert night.farm_address == "tcp://farm:8786" and RunSpec(out="/jobs/cut").farm_address is None
    assert fixed_spec(night, relink=None, shots_file=None).farm_address == "tcp://farm:8786"  # the rerun keeps it
    monkeypatch.setenv(FARM_ENV, "tcp://site-farm:8786")  # the CPU worker's own farm, for specs that name none
    assert RunSpec(out="/jobs/cut", dispatch="farm").farm_address == "tcp://site-farm:8786"
