"""build_quadmask end to end on generated plates: alignment, resolution, shadow in grey, mattes, outputs."""
from __future__ import annotations

import os

import numpy as np
import pytest

from model.masks import (ClassicalSegmenter, Frames, HeuristicReasoner, MaskOptions, SegmentationError,
                         build_quadmask)
from shots.media import write_png_sequence, write_video_lossless
from shots.quadmask import read_mask_frames
from shots.shot import Instructions
from shots.synthetic import make_scene

OFFSET = 4  # the shot starts at file frame 4 of the plate
N = 36


@pytest.fixture(scope="module", params=["static", "pan"])
def plate(request, tmp_path_factory):
    sc = make_scene(request.param, OFFSET + N + 4, 216, 384, seed=5)
    path = tmp_path_factory.mktemp(request.param) / "plate.mkv"
    write_video_lossless(path, sc.plate, sc.rate)
    return sc, path


def _click(sc, media_frame):
    obj = (sc.quadmask[media_frame] == 0) | (sc.quadmask[media_frame] == 63)
    ys, xs = np.nonzero(obj)
    return [[float(xs.mean()), float(ys.mean())]]


def _box(sc, media_frame):
    ys, xs = np.nonzero(sc.quadmask[media_frame] <= 63)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_late_click_classical_heuristic(plate, tmp_path):
    sc, path = plate
    late = OFFSET + 27  # media frame of the only click: shot frame 27 of 36
    ins = Instructions(points={late: _click(sc, late), OFFSET + N + 2: [[1.0, 1.0]]}, instruction="remove the ball")
    out = tmp_path / "quadmask.mkv"
    ticks = []
    r = build_quadmask(path, OFFSET, N, sc.rate, ins, out, segmenter=ClassicalSegmenter(),
                       reasoner=HeuristicReasoner(), preview_path=tmp_path / "preview.mp4",
                       contact_sheet_path=tmp_path / "sheet.png", progress=ticks.append)
    assert ticks == sorted(ticks) and ticks[-1] == 1.0 and len(ticks) > N
    assert (r.source, r.reasoner, r.degraded) == ("classical", "heuristic", True)
    assert "heuristic" in r.reason and r.tokens_in == 0
    assert r.details["prompt_frames"] == [27] and any("outside the shot" in n for n in r.details["notes"])
    q = np.stack(list(read_mask_frames(out)))
    truth = sc.quadmask[OFFSET:OFFSET + N]
    assert q.shape == (N, 216, 384) and set(np.unique(q)) <= {0, 63, 127, 255}
    # frame i of the mask is shot frame i: the remove region matches the truth frame by frame
    rm, ob = q <= 63, truth <= 63
    iou = (rm & ob).sum(axis=(1, 2)) / (rm | ob).sum(axis=(1, 2))
    assert iou.mean() >= 0.85 and iou.min() >= 0.6, iou
    # the shadow lands in the grey (127) region; no grey on frame 0
    shadow = truth[1:] == 127
    coverage = (q[1:][shadow] == 127).mean()
    print(f"{sc.name}: remove IoU {iou.mean():.3f}, shadow in 127: {coverage:.3f}")
    assert coverage >= 0.6
    assert not (q[0] == 127).any()
    assert os.path.getsize(tmp_path / "preview.mp4") > 0 and os.path.getsize(tmp_path / "sheet.png") > 0


def test_matte_skips_segmentation(plate, tmp_path):
    sc, path = plate
    matte = np.where(sc.quadmask <= 63, 255, 0).astype(np.uint8)[2:]  # the matte starts at media frame 2
    matte_path = tmp_path / "matte.mkv"
    write_video_lossless(matte_path, matte, sc.rate)
    ins = Instructions(matte=str(matte_path), mask_start_frame=2)

    class Exploding:
        name, working_long_side = "boom", 640

        def segment(self, *a, **k):
            raise AssertionError("a matte needs no segmentation")

    out = tmp_path / "q.####.png"
    r = build_quadmask(path, OFFSET, N, sc.rate, ins, out, segmenter=Exploding(), reasoner=None,
                       options=MaskOptions(dilate_px=0))
    assert (r.source, r.reasoner, r.degraded) == ("matte", "none", False)
    q = np.stack(list(read_mask_frames(tmp_path / "q.####.png")))
    assert len(q) == N and set(np.unique(q)) == {0, 255}
    assert (q == np.where(sc.quadmask[OFFSET:OFFSET + N] <= 63, 0, 255)).all()  # exact, no dilation
    assert sorted(p.name for p in tmp_path.glob("q.*.png"))[0] == "q.1001.png"


def test_failing_segmenter_falls_back(plate, tmp_path):
    sc, path = plate

    class Broken:
        name, working_long_side = "sam2", 640

        def segment(self, *a, **k):
            raise SegmentationError("weights missing")

    ins = Instructions(boxes={OFFSET + 3: _box(sc, OFFSET + 3)})
    r = build_quadmask(path, OFFSET, 8, sc.rate, ins, tmp_path / "q.mkv", segmenter=Broken(),
                       fallback_segmenter=ClassicalSegmenter(), reasoner=None)
    assert r.source == "classical" and r.degraded and "weights missing" in r.reason
    with pytest.raises(SegmentationError):
        build_quadmask(path, OFFSET, 8, sc.rate, ins, tmp_path / "q2.mkv", segmenter=Broken(), reasoner=None)


def test_refuses_bad_inputs(plate, tmp_path):
    sc, path = plate
    click = Instructions(points={OFFSET: _click(sc, OFFSET)})
    with pytest.raises(ValueError, match="lossy|FFV1"):
        build_quadmask(path, OFFSET, N, sc.rate, click, tmp_path / "q.mp4")
    with pytest.raises(ValueError, match="nothing says what to remove"):
        build_quadmask(path, OFFSET, N, sc.rate, Instructions(points={0: [[5, 5]]}), tmp_path / "q.mkv")
    with pytest.raises(ValueError, match="already has a quadmask"):
        build_quadmask(path, OFFSET, N, sc.rate, Instructions(quadmask="x.mkv"), tmp_path / "q.mkv")
    with pytest.raises(ValueError, match="frames"):
        build_quadmask(path, OFFSET, 10_000, sc.rate, click, tmp_path / "q.mkv")


def test_frames_spill_to_disk_and_clean_up(tmp_path):
    sc = make_scene("static", 6, 64, 96, seed=1)
    seq = tmp_path / "plate.####.png"
    write_png_sequence(seq, sc.plate, first_frame=1)
    f = Frames.from_media(seq, 1, 4, (32, 48), (64, 96), ram_budget=0)
    assert isinstance(f._data, np.memmap) and len(f) == 4 and f[0].shape == (32, 48, 3)
    assert f.scale == (0.5, 0.5)
    tmp = f._tmpdir.name
    f.close()
    assert not os.path.exists(tmp)
