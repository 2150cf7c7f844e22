"""The batch flow end to end on a real (temporary) Prefect server: generated edits and the VOID samples."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
import pytest

from shots import quadmask as qm
from shots.media import probe, read_frames, write_video_lossless
from shots.sample_edit import score_against_truth, write_sample_edit
from storage import manifest
from storage.store import ArtifactStore
from tasks.spec import BackendSpec, DeliverySpec, MaskSpec, RunSpec
from tests.conftest import ROOT, shared

pytestmark = pytest.mark.slow


def spec(out, backend: BackendSpec = BackendSpec(), **more) -> RunSpec:
    """A run spec for tests: QC reads back every delivered frame."""
    return RunSpec(out=str(out), backend=backend, delivery=DeliverySpec(qc_every=1), **more)


def _seq_frames(out: Path, row: dict) -> list[np.ndarray]:
    folder = Path(row["output_uri"])
    files = sorted(folder.glob(f"{row['shot_id']}_void_v{row['version']:03d}.*.png"))
    return [cv2.imread(str(f))[..., ::-1] for f in files], files


def _keep_identical(source: np.ndarray, out: np.ndarray, mask: np.ndarray, margin: int) -> bool:
    """Pixels more than `margin` px away from anything the mask removes or affects are untouched."""
    region = (mask != 255).astype(np.uint8)
    near = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))) > 0
    return bool(np.array_equal(source[~near], out[~near]))


@pytest.fixture(scope="module")
def generated_edit(tmp_path_factory):
    """Five clips: two to process (one of two chunks), a mask of the wrong size, an all-keep mask, no instructions."""
    folder = tmp_path_factory.mktemp("edit")
    edit, samples = write_sample_edit(folder, height=192, width=336, shots=(
        ("sh010", "static", 60, 1), ("sh020", "pan", 230, 2), ("sh030", "static", 40, 3),
        ("sh040", "static", 40, 4), ("sh050", "static", 40, 5)))
    tl = otio.adapters.read_from_file(str(edit))
    clips = {c.name: c for c in tl.find_clips()}
    media = folder / "media"
    small = np.full((40, 96, 168), 0, np.uint8)
    qm.write_quadmask(media / "wrong_size.mkv", small, 24)
    qm.write_quadmask(media / "all_keep.mkv", np.full((40, 192, 336), 255, np.uint8), 24)
    clips["sh030"].metadata["voidbatch"] = {"prompt": "x", "quadmask": str(media / "wrong_size.mkv")}
    clips["sh040"].metadata["voidbatch"] = {"prompt": "x", "quadmask": str(media / "all_keep.mkv")}
    del clips["sh050"].metadata["voidbatch"]
    otio.adapters.write_to_file(tl, str(edit))
    return edit, {s.clip_name: s for s in samples}


@pytest.fixture(scope="module")
def batch(prefect_server, generated_edit, tmp_path_factory):
    from flows.process_edit import process_edit

    edit, samples = generated_edit
    out = tmp_path_factory.mktemp("out")
    state = process_edit(str(edit), spec(out), return_state=True)
    return state, out, edit, samples


def test_failures_are_isolated(batch):
    state, out, _, _ = batch
    assert state.is_failed() and "sh030" in state.message
    rows = {r["shot_id"]: r for r in manifest.read_shots(ArtifactStore(str(out)))}
    assert {k: r["status"] for k, r in rows.items()} == {
        "sh010": "done", "sh020": "done", "sh030": "failed", "sh040": "skipped", "sh050": "skipped"}
    assert "wrong_size.mkv" in rows["sh030"]["error"] and "168x96" in rows["sh030"]["error"]
    assert "keeps every pixel" in rows["sh040"]["error"]
    assert rows["sh050"]["error"] == "no removal instructions"


def test_deliverables_frames_resolution_keep_region(batch):
    _, out, _, samples = batch
    rows = {r["shot_id"]: r for r in manifest.read_shots(ArtifactStore(str(out)))}
    for shot_id in ("sh010", "sh020"):
        row, sample = rows[shot_id], samples[shot_id]
        frames, files = _seq_frames(out, row)
        assert len(frames) == row["frames"] == sample.frames  # handles clamped to the media: all of it
        assert files[0].name == f"{shot_id}_void_v001.1001.png" and row["output_first_frame"] == 1001
        assert all(f.shape == (192, 336, 3) for f in frames)
        source = list(read_frames(sample.plate, 0, sample.frames))
        masks = list(qm.read_mask_frames(sample.quadmask, 0, sample.frames))
        for s, o, m in zip(source, frames, masks):
            assert _keep_identical(s, o, m, margin=6)
        assert row["qc_keep_max_diff"] == 0 and row["qc_frames_checked"] == row["frames"]
        assert row["deliverable_lossy"] is False
        score = score_against_truth(sample, frames)
        assert score["psnr_region_db"] > 35, score
        assert Path(row["contact_sheet_uri"]).is_file()
    assert rows["sh020"]["chunks"] == 2


def test_chunk_rows_and_seams(batch):
    _, out, _, samples = batch
    chunks = [r for r in manifest.read_chunks(ArtifactStore(str(out))) if r["shot_id"] == "sh020"]
    assert [(c["start"], c["end"]) for c in chunks] == [(0, 123), (107, 230)]
    assert all(c["status"] == "done" and Path(c["output_uri"]).is_file() for c in chunks)
    # the seam is invisible: frame-to-frame change inside the region across the overlap is like elsewhere
    row = {r["shot_id"]: r for r in manifest.read_shots(ArtifactStore(str(out)))}["sh020"]
    frames, _ = _seq_frames(out, row)
    masks = list(qm.read_mask_frames(samples["sh020"].quadmask, 0, 230))
    diffs = [np.abs(a.astype(int) - b.astype(int))[(m != 255)].mean() for a, b, m in zip(frames, frames[1:], masks)]
    assert max(diffs[105:125]) <= 1.5 * np.median(diffs) + 1.0


def test_conformed_edit_points_at_deliverables(batch):
    _, out, edit, _ = batch
    conform = sorted((Path(out) / "conform").glob("*.otio"))
    assert [p.name for p in conform] == ["sample_edit_void_v001.otio"]
    tl = otio.adapters.read_from_file(str(conform[0]))
    orig = {c.name: c for c in otio.adapters.read_from_file(str(edit)).find_clips()}
    for clip in tl.find_clips():
        assert clip.source_range == orig[clip.name].source_range  # source timecode kept
        if clip.name in ("sh010", "sh020"):
            ref = clip.media_reference
            assert isinstance(ref, otio.schema.ImageSequenceReference)
            assert clip.active_media_reference_key == "voidbatch_v001"
            first, last = ref.frame_range_for_time_range(clip.source_range)
            for frame in (first, last):
                url = ref.target_url_for_image_number(frame - ref.start_frame)
                assert Path(otio.url_utils.filepath_from_url(url)).is_file()
            assert first == 1001 + 8  # head handle: the cut starts 8 frames into the deliverable
            assert "DEFAULT_MEDIA" in clip.media_references()
        else:
            assert clip.active_media_reference_key == "DEFAULT_MEDIA"


def test_run_again_is_up_to_date_force_writes_next_version(batch):
    from flows.process_edit import process_edit

    _, out, edit, _ = batch
    process_edit(str(edit), spec(out), return_state=True)
    rows = manifest.read_shots(ArtifactStore(str(out)))
    again = [r for r in rows if r["shot_id"] == "sh010"]
    assert [r["status"] for r in again] == ["done", "up_to_date"] and [r["attempt"] for r in again] == [1, 2]
    assert again[1]["version"] == 1 and again[1]["output_uri"] == again[0]["output_uri"]
    assert not (Path(out) / "shots" / "sh010" / "v002").exists()
    assert not (Path(out) / "conform" / "sample_edit_void_v002.otio").exists()  # nothing new to conform
    # chunk results are content-keyed: the second run reused them all
    chunks = manifest.read_chunks(ArtifactStore(str(out)))
    assert sum(bool(c["cached"]) for c in chunks) == 3

    process_edit(str(edit), spec(out, force=True), only_shots=["sh010"], return_state=True)
    assert (Path(out) / "shots" / "sh010" / "v002").is_dir() and (Path(out) / "shots" / "sh010" / "v001").is_dir()
    assert (Path(out) / "conform" / "sample_edit_void_v002.otio").is_file()
    assert sorted(r["version"] for r in manifest.read_shots(ArtifactStore(str(out))) if r["shot_id"] == "sh010") \
        == [1, 1, 2]


def test_rerun_failed_processes_exactly_the_failed_shots(batch, generated_edit, tmp_path):
    from flows.rerun_failed import rerun_failed

    _, out, _, samples = batch
    before = manifest.read_shots(ArtifactStore(str(out)))
    fixed = tmp_path / "fixed.json"  # the fix: sh030 gets a mask of the right size
    fixed.write_text(json.dumps({"sh030": {"quadmask": samples["sh010"].quadmask.replace("sh010", "sh030")}}))
    state = rerun_failed(out=str(out), shots_file=str(fixed), return_state=True)
    assert state.is_completed(), state.message
    after = manifest.read_shots(ArtifactStore(str(out)))
    new = [r for r in after if r not in before]
    last = max(r["attempt"] for r in before if r["shot_id"] == "sh030")
    assert [(r["shot_id"], r["status"], r["attempt"]) for r in new] == [("sh030", "done", last + 1)]
    assert (Path(out) / "shots" / "sh030" / "v001").is_dir()
    assert manifest.latest_by_shot(after)["sh030"]["status"] == "done"


def test_disk_failure_leaves_no_half_version(prefect_server, tmp_path, monkeypatch):
    from flows.process_edit import process_edit
    from shots import deliver

    edit, _ = write_sample_edit(tmp_path / "e", height=96, width=168, shots=(("sh900", "static", 30, 9),))
    written = {"n": 0}
    original = deliver.SequenceWriter.write

    def failing_write(self, rgb):
        written["n"] += 1
        if written["n"] > 10:
            raise OSError(28, "No space left on device")
        original(self, rgb)

    monkeypatch.setattr(deliver.SequenceWriter, "write", failing_write)
    out = tmp_path / "out"
    state = process_edit(str(edit), spec(out), return_state=True)
    assert state.is_failed()
    row = manifest.read_shots(ArtifactStore(str(out)))[0]
    assert row["status"] == "failed" and "No space left" in row["error"]
    assert not list(out.rglob("v0*")) and not list(out.rglob("*.partial*"))  # nothing published, not even partly


def test_void_sample_clips(prefect_server, tmp_path):
    """The shared VOID clips with their quadmasks: 4K lime works on an ROI crop, ducky on the whole frame."""
    from flows.process_edit import process_edit

    tl = otio.schema.Timeline("void samples")
    track = otio.schema.Track("V1")
    tl.tracks.append(track)
    for name in ("lime", "ducky-float"):
        d = shared("void_samples", name)
        mask = next(p for p in (d / "quadmask_0.mp4", d / "trimask_quadmask.mp4") if p.exists())
        info = probe(d / "input_video.mp4")
        r = float(info.rate)
        clip = otio.schema.Clip(name=name, media_reference=otio.schema.ExternalReference(
            target_url=str(d / "input_video.mp4")), source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(4, r), otio.opentime.RationalTime(info.frames - 8, r)))
        clip.metadata["voidbatch"] = {"prompt": json.loads((d / "prompt.json").read_text())["bg"],
                                      "quadmask": str(mask)}
        track.append(clip)
    edit = tmp_path / "samples.otio"
    otio.adapters.write_to_file(tl, str(edit))
    out = tmp_path / "out"
    state = process_edit(str(edit), spec(out), return_state=True)
    assert state.is_completed(), state.message
    rows = {r["shot_id"]: r for r in manifest.read_shots(ArtifactStore(str(out)))}
    for name in ("lime", "ducky-float"):
        row = rows[name]
        d = shared("void_samples", name)
        info = probe(d / "input_video.mp4")
        assert row["status"] == "done" and row["frames"] == info.frames  # 4 + 4 handle frames fit
        frames, _ = _seq_frames(out, row)
        assert len(frames) == info.frames and frames[0].shape == (info.height, info.width, 3)
        mask = next(p for p in (d / "quadmask_0.mp4", d / "trimask_quadmask.mp4") if p.exists())
        for i in (0, info.frames // 2, info.frames - 1):
            src = next(read_frames(d / "input_video.mp4", i, 1))
            m = next(qm.read_mask_frames(mask, i, 1))
            assert _keep_identical(src, frames[i], m, margin=int(8 * info.height / 384) + 2)
            if (m != 255).any():
                assert not np.array_equal(src, frames[i])  # something was removed
    roi = rows["lime"]["roi"]
    assert rows["lime"]["width"] == 3840
    print("lime ROI", roi, "ducky ROI", rows["ducky-float"]["roi"])


def test_cli_run_exit_code_and_summary(generated_edit, tmp_path):
    edit, _ = generated_edit
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_PROFILE", None)
    res = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(edit), "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "sh030" in res.stdout and "failed" in res.stdout and "done" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(edit), "--out", str(tmp_path / "o2"),
                          "--format", "gif"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--format" in bad.stderr


def test_flow_with_tiny_void_model(prefect_server, tmp_path, monkeypatch, request):
    """--backend void through the whole flow: the real loading path on a tiny random-weight model,
    each chunk in a child process with a hard timeout."""
    from flows.process_edit import process_edit

    from tasks.removal import _gpu_child

    monkeypatch.setenv("VOIDBATCH_CHUNK_TIMEOUT", "600")
    request.addfinalizer(lambda: (_gpu_child().close(), _gpu_child.cache_clear()))  # leave no child behind
    from model.void.tiny import write_tiny_model

    model_dir = write_tiny_model(tmp_path / "tiny_void")
    edit, samples = write_sample_edit(tmp_path / "e", height=96, width=168, shots=(("sh700", "static", 24, 7),))
    out = tmp_path / "out"
    state = process_edit(str(edit), spec(out, BackendSpec(name="void", model_dir=str(model_dir), steps=2,
                                                          model_size="64x112")), return_state=True)
    assert state.is_completed(), state.message
    row = manifest.read_shots(ArtifactStore(str(out)))[0]
    assert row["status"] == "done" and row["backend"] == "void" and "steps2" in row["backend_version"]
    chunk = manifest.read_chunks(ArtifactStore(str(out)))[0]
    assert chunk["padded_to"] == 85 and chunk["end"] - chunk["start"] == 24
    frames, _ = _seq_frames(out, row)
    assert len(frames) == 24
    source = list(read_frames(samples[0].plate, 0, 24))
    masks = list(qm.read_mask_frames(samples[0].quadmask, 0, 24))
    assert all(_keep_identical(s, o, m, margin=6) for s, o, m in zip(source, frames, masks))
    assert _gpu_child().pid is not None  # the chunk ran in the isolated child


def test_masks_from_clicks_reviewed_then_reused(prefect_server, tmp_path):
    """`voidbatch masks` builds a quadmask from one click (no Gemini: heuristic, degraded); the batch reuses it."""
    from flows.generate_masks import generate_masks
    from flows.process_edit import process_edit

    edit, samples = write_sample_edit(tmp_path / "e", height=144, width=256, shots=(("sh800", "static", 40, 8),))
    truth = np.stack(list(qm.read_mask_frames(samples[0].quadmask, 0, 40)))
    ys, xs = np.nonzero(truth[30] == 0)  # click the middle of the ball on a late frame
    tl = otio.adapters.read_from_file(str(edit))
    clip = tl.find_clips()[0]
    clip.metadata["voidbatch"] = {"prompt": "empty set", "points": {"30": [[float(xs.mean()), float(ys.mean())]]}}
    otio.adapters.write_to_file(tl, str(edit))
    out = tmp_path / "out"
    os.environ.pop("GEMINI_API_KEY", None)
    masks = MaskSpec(segmenter="classical", reasoner="auto")
    rows = generate_masks(str(edit), spec(out, masks=masks))
    assert [(r["shot_id"], r["status"]) for r in rows] == [("sh800", "degraded")]
    recorded = manifest.read_masks(ArtifactStore(str(out)))  # the mask is in the manifest, with how it was made
    assert [(r["shot_id"], r["mask_source"], r["mask_reasoner"]) for r in recorded] == [
        ("sh800", "classical", "heuristic")] and "heuristic" in recorded[0]["mask_degraded_reason"]
    mask_file = Path(rows[0]["quadmask_uri"])
    assert mask_file.is_file() and list(mask_file.parent.glob("*_mask_preview.mp4"))
    built = mask_file.stat().st_mtime_ns
    generated = np.stack(list(qm.read_mask_frames(mask_file, 0, 40)))
    assert generated.shape == truth.shape
    obj_truth, obj_gen = truth == 0, np.isin(generated, (0, 63))
    assert (obj_truth & obj_gen).sum() / obj_truth.sum() > 0.8  # the ball is covered on every frame

    state = process_edit(str(edit), spec(out, masks=masks), return_state=True)
    assert state.is_completed(), state.message
    row = manifest.read_shots(ArtifactStore(str(out)))[0]
    assert row["status"] == "degraded" and row["mask_source"] == "classical" and row["mask_reasoner"] == "heuristic"
    assert "heuristic" in row["mask_degraded_reason"]  # says why, never silently
    assert row["quadmask_uri"] == str(mask_file) and mask_file.stat().st_mtime_ns == built  # reused, not rebuilt
    frames, _ = _seq_frames(out, row)
    assert len(frames) == 40


def test_flow_two_passes_with_tiny_void_model(prefect_server, tmp_path):
    """--passes 2 on two two-chunk shots: both passes per chunk in the manifest, pass 1 kept; the model loads
    once for the batch and the transformer swaps weights at most twice per shot (all first passes first)."""
    from flows.process_edit import process_edit
    from model.void.tiny import write_tiny_model
    from tasks.removal import WARM

    model_dir = write_tiny_model(tmp_path / "tiny_void")
    edit, _ = write_sample_edit(tmp_path / "e", height=64, width=112,
                                shots=(("sh750", "pan", 230, 5), ("sh760", "static", 205, 5)))
    out = tmp_path / "out"
    loads = WARM.loads
    state = process_edit(str(edit), spec(out, BackendSpec(name="void", model_dir=str(model_dir), steps=1, passes=2,
                                                          model_size="64x112")), return_state=True)
    assert state.is_completed(), state.message
    assert WARM.loads == loads + 1  # one load for the whole batch
    rows = {r["shot_id"]: r for r in manifest.read_shots(ArtifactStore(str(out)))}
    row = rows["sh750"]
    assert row["status"] == "done" and row["passes"] == 2 and "pass2" in row["backend_version"]
    chunks = manifest.read_chunks(ArtifactStore(str(out)))
    assert sorted((c["shot_id"], c["chunk_index"], c["pass_index"]) for c in chunks) == [
        (s, i, p) for s in ("sh750", "sh760") for i in (0, 1) for p in (1, 2)]
    for c in chunks:
        assert Path(c["output_uri"]).is_file()
        assert c["seconds"] > 0 and c["worker"].endswith(":cpu") and not c["cached"]
    p1 = {c["chunk_index"]: c for c in chunks if c["pass_index"] == 1 and c["shot_id"] == "sh750"}
    assert p1[0]["backend"] == "void" and "pass2" not in p1[0]["backend_version"]
    assert [c["shot_id"] for c in chunks if c["model_load_s"] > 0] == ["sh750"]  # the first pass that ran loaded it
    for shot in ("sh750", "sh760"):
        swaps = [c["weights_swaps"] for c in chunks if c["shot_id"] == shot]
        assert 1 <= sum(swaps) <= 2, (shot, swaps)  # one chunk at a time would swap 2 x chunks - 1 times
        assert sum(c["weights_swap_s"] for c in chunks if c["shot_id"] == shot) > 0
    for shot in ("sh750", "sh760"):  # every pass 1 of the shot ended before its first pass 2 began
        ends = [c["finished_at"] for c in chunks if c["shot_id"] == shot and c["pass_index"] == 1]
        starts = [c["started_at"] for c in chunks if c["shot_id"] == shot and c["pass_index"] == 2]
        assert max(ends) <= min(starts)
    frames, _ = _seq_frames(out, row)
    assert len(frames) == 230
