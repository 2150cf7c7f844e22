"""The shot pipeline as plain libraries (no Prefect): ROI, chunk extraction, removal, conform."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import opentimelineio as otio
import pytest

from model.classical import ClassicalBackend
from model.removal import already_loaded, chunk_seed, remove_chunk
from shots import quadmask as qm
from shots.composite import chunk_weights, composite, feather_alpha
from shots.conform import conform_shot
from shots.extract import NothingToRemove, ShotError, prepare_shot
from shots.ingest import IngestOptions, ingest
from shots.media import read_frames, write_video_lossless
from shots.plan import plan_chunks
from shots.roi import MODEL_SIZE, Box, choose_roi
from shots.sample_edit import psnr
from shots.synthetic import make_scene
from storage.store import ArtifactStore
from tests.conftest import shared


def test_roi_crops_small_regions_and_keeps_aspect():
    roi = choose_roi(Box(1800, 1000, 1900, 1080), 3840, 2160)
    assert roi.width / roi.height == pytest.approx(672 / 384, abs=0.01)
    assert roi.width >= 672 and roi.height >= 384
    assert roi.x0 <= 1800 and roi.x1 >= 1900 and roi.y0 <= 1000 and roi.y1 >= 1080
    assert 0 <= roi.x0 and roi.x1 <= 3840 and 0 <= roi.y0 and roi.y1 <= 2160
    # a big region, or a small frame: the whole frame
    assert choose_roi(Box(100, 100, 3000, 2000), 3840, 2160) == Box(0, 0, 3840, 2160)
    assert choose_roi(Box(10, 10, 20, 20), 640, 360) == Box(0, 0, 640, 360)
    # near the edge the window shifts inside the frame
    edge = choose_roi(Box(0, 0, 50, 50), 3840, 2160)
    assert edge.x0 == 0 and edge.y0 == 0


def test_chunk_weights_cross_fade():
    chunks = plan_chunks(230)
    for t in range(230):
        w = chunk_weights(chunks, t)
        assert sum(x for _, x in w) == pytest.approx(1.0)
    a, b = chunks
    inside = [dict(chunk_weights(chunks, t)).get(1, 0.0) for t in range(b.start, a.end)]
    assert inside == sorted(inside) and 0 < inside[0] < 0.2 and 0.8 < inside[-1] < 1


def test_composite_is_exact_outside_feather():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (100, 200, 3), dtype=np.uint8)
    mask = np.full((100, 200), 255, np.uint8)
    mask[40:60, 80:120] = 0
    alpha = feather_alpha(mask, 5)
    assert alpha[50, 100] == 1 and alpha[0, 0] == 0 and 0 < alpha[50, 122] < 1
    out = composite(src, np.zeros((50, 100, 3), np.uint8), mask, Box(0, 0, 200, 100), 5)
    assert np.array_equal(out[alpha == 0], src[alpha == 0])
    assert (out[45:55, 85:115] == 0).all()


@pytest.fixture
def small_object_plate(tmp_path):
    """A 1280x720 plate whose moving ball covers a small part of the frame: ROI crop territory."""
    scene = make_scene("static", 40, 720, 1280, seed=4)
    # shrink the action to the right-hand part: keep the left two thirds as the clean plate
    plate, mask = scene.plate.copy(), scene.quadmask.copy()
    plate[:, :, :800] = scene.clean[:, :, :800]
    mask[:, :, :800] = 255
    media = tmp_path / "media"
    media.mkdir()
    write_video_lossless(media / "plate.mkv", plate, 24, timecode="01:00:00:00")
    qm.write_quadmask(media / "mask.mkv", mask, 24)
    tl = otio.schema.Timeline("t")
    tr = otio.schema.Track("V1")
    tl.tracks.append(tr)
    clip = otio.schema.Clip(name="sh100", media_reference=otio.schema.ExternalReference(
        target_url=str(media / "plate.mkv")), source_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(86400 + 4, 24), otio.opentime.RationalTime(32, 24)))
    clip.metadata["voidbatch"] = {"prompt": "p", "quadmask": "media/mask.mkv"}
    tr.append(clip)
    otio.adapters.write_to_file(tl, str(tmp_path / "e.otio"))
    return tmp_path / "e.otio", scene, plate, mask


def test_pipeline_on_roi_crop(small_object_plate, tmp_path):
    edit, scene, plate, mask = small_object_plate
    shot = ingest(edit, IngestOptions(handles=4))[0]
    assert shot.flagged and shot.problem is None and shot.file_start == 0 and shot.frames == 40
    store = ArtifactStore(str(tmp_path / "out"))
    seen = []
    prepared = prepare_shot(shot, store, progress=seen.append)
    assert seen[-1] == 1.0
    roi = prepared.roi
    assert not roi.is_full(1280, 720) and roi.width >= 672  # cropped at full resolution, not squeezed
    assert roi.x0 > 400 and roi.x1 == 1280  # around the action on the right
    backend = ClassicalBackend()
    results = [remove_chunk(c, backend.identity, already_loaded(backend), store, prepared.work_key, shot.shot_id,
                            rate=24) for c in prepared.chunks]

    def never_loaded():
        raise AssertionError("a stored result must be reused without loading the backend")

    again = [remove_chunk(c, backend.identity, never_loaded, store, prepared.work_key, shot.shot_id, rate=24)
             for c in prepared.chunks]
    assert all(r.cached for r in again) and [r.output_key for r in again] == [r.output_key for r in results]
    d = conform_shot(prepared, {r.chunk_index: r.output_key for r in results}, store, "png")
    assert d.qc.keep_max_diff == 0 and d.qc.frames_checked == 40 and d.version == 1 and d.frames == 40
    out = np.stack(list(read_frames(f"{store.path(d.output_key)}/sh100_void_v001.####.png", 0, 40)))
    outside = np.ones((720, 1280), bool)
    outside[roi.slices()] = False
    assert np.array_equal(out[:, outside], plate[:, outside])  # outside the ROI: the source, bit for bit
    region = mask != 255
    assert psnr(out[region], scene.clean[region]) > 35
    # a second prepare reuses the chunks on the store
    assert prepare_shot(shot, store) == prepared


def test_prepare_rejects_bad_masks(small_object_plate, tmp_path):
    edit, *_ = small_object_plate
    shot = ingest(edit)[0]
    store = ArtifactStore(str(tmp_path / "out"))
    short = tmp_path / "media" / "short.mkv"
    qm.write_quadmask(short, np.zeros((10, 720, 1280), np.uint8), 24)
    from dataclasses import replace

    bad = replace(shot, instructions=replace(shot.instructions, quadmask=str(short)))
    with pytest.raises(ShotError, match="short.mkv has 10 frames"):
        prepare_shot(bad, store)
    keep = tmp_path / "media" / "keep.mkv"
    qm.write_quadmask(keep, np.full((40, 720, 1280), 255, np.uint8), 24)
    with pytest.raises(NothingToRemove, match="nothing to remove"):
        prepare_shot(replace(shot, instructions=replace(shot.instructions, quadmask=str(keep))), store)
    offset = replace(shot, instructions=replace(shot.instructions, quadmask=str(short), mask_start_frame=30))
    with pytest.raises(ShotError, match="starting at media frame 30"):
        prepare_shot(offset, store)


def test_chunk_seed_is_order_independent():
    assert chunk_seed("sh010", 0) == chunk_seed("sh010", 0)
    assert chunk_seed("sh010", 0) != chunk_seed("sh010", 1) != chunk_seed("sh020", 1)


@pytest.mark.parametrize("fmt", ["png", "exr", "prores"])
def test_deliverable_formats(tmp_path, fmt):
    from shots.deliver import open_writer
    from shots.media import probe

    frames = list(make_scene("pan", 3, 36, 64, seed=2).plate)
    w = open_writer(fmt, tmp_path, "sh", 1, 64, 36, Fraction(24000, 1001), "01:00:10:00")
    for f in frames:
        w.write(f)
    w.close()
    if fmt == "prores":
        info = probe(tmp_path / "sh_void_v001.mov")
        assert info.frames == 3 and info.timecode == "01:00:10:00" and info.rate == Fraction(24000, 1001)
        back = list(read_frames(tmp_path / "sh_void_v001.mov", 0, 3))
        assert psnr(np.stack(back), np.stack(frames)) > 40
    else:
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == [f"sh_void_v001.{n}.{fmt}" for n in (1001, 1002, 1003)]
        back = list(read_frames(tmp_path / f"sh_void_v001.####.{fmt}", 0, 3))
        assert all(np.array_equal(a, b) for a, b in zip(back, frames))  # 8-bit values survive half floats


def test_one_backend_never_runs_two_chunks_at_once(small_object_plate, tmp_path):
    """Two chunk threads share one loaded backend: the second waits for the first (RAFT and the swapped
    transformer weights are per-chunk state; sharing them crashed `make test` under load)."""
    import threading

    from model.backend import BackendIdentity, exclusive

    edit, *_ = small_object_plate
    shot = ingest(edit, IngestOptions(handles=4))[0]
    store = ArtifactStore(str(tmp_path / "out"))
    chunk = prepare_shot(shot, store).chunks[0]
    log, entered, release = [], threading.Event(), threading.Event()

    class Blocking:
        name, version, device = "blocking", "1", "cpu"
        identity = BackendIdentity("blocking", "1")

        def remove(self, request, progress=None):
            log.append("enter")
            if len(log) == 1:
                entered.set()
                assert release.wait(120)
            log.append("exit")
            return request.frames.copy()

    backend = Blocking()
    errors = []

    def run(seed):
        try:
            remove_chunk(chunk, backend.identity, already_loaded(backend), store, "work/x", shot.shot_id,
                         base_seed=seed, rate=24)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    first = threading.Thread(target=run, args=(1,))
    first.start()
    assert entered.wait(120)
    second = threading.Thread(target=run, args=(2,))  # another seed: another key, nothing cached
    second.start()
    assert exclusive(backend).wait_for_waiters(1, timeout=120)  # the second chunk queues for the backend
    assert log == ["enter"]
    release.set()
    first.join(120)
    second.join(120)
    assert not errors and log == ["enter", "exit", "enter", "exit"]


def test_model_input_is_resized_as_the_reference_resizes(tmp_path):
    """VOID was trained on its reference's resize: float RGB through torch's area interpolation. The frames the
    backends get are that, to the 8-bit code, on the 4K lime sample; the decoder's own scaler is not."""
    import torch

    from shots.extract import model_frames, read_plate

    lime = shared("void_samples", "lime", "input_video.mp4")
    tl = otio.schema.Timeline("lime")
    tl.tracks.append(otio.schema.Track("V1"))
    tl.tracks[0].append(otio.schema.Clip(name="lime", media_reference=otio.schema.ExternalReference(
        target_url=str(lime)), source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, 12),
                                                                    otio.opentime.RationalTime(2, 12))))
    otio.adapters.write_to_file(tl, str(tmp_path / "lime.otio"))
    shot = ingest(tmp_path / "lime.otio", IngestOptions(handles=0))[0]
    ours = list(model_frames(shot, read_plate(shot), (384, 672)))
    decoded = list(read_frames(str(lime), shot.file_start, 2))  # full resolution, then the reference's resize
    for f, mine in zip(decoded, ours):
        x = torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0
        ref = torch.nn.functional.interpolate(x, size=(384, 672), mode="area")[0].permute(1, 2, 0).numpy() * 255
        assert np.abs(mine.astype(np.float32) - ref).max() <= 0.5 + 1e-3
    by_decoder = next(read_frames(str(lime), shot.file_start, 1, size=(384, 672)))  # libavfilter's area scaler
    assert np.abs(by_decoder.astype(int) - ours[0].astype(int)).max() > 5  # what the change is about
