"""The classical CPU backend on generated shots with known clean plates.

Behaviour, not timings: the keep region must come back bit-identical, the hole must be close to
the clean plate (and clearly better than per-frame Telea), and the backend must meet the
RemovalBackend contract the pipeline relies on.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from model.backend import RemovalBackend, RemovalRequest, get_backend, known_backends
from model.classical import ClassicalBackend, candidate_offsets
from shots.synthetic import KINDS, make_scene

T, H, W = 40, 96, 168
# Grain (std 1) in the truth cannot be predicted, which caps in-hole PSNR near 46 dB.
MIN_PSNR = {"static": 40.0, "pan": 30.0, "handheld": 30.0}


def hole_psnr(out, truth, region) -> float:
    d = out[region].astype(np.float64) - truth[region]
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def telea(frames, quadmask):
    return np.stack([cv2.inpaint(f, (q != 255).astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
                     for f, q in zip(frames, quadmask)])


@pytest.fixture(scope="module")
def scenes():
    return {kind: make_scene(kind, T, H, W, seed=3) for kind in KINDS}


@pytest.fixture(scope="module")
def results(scenes):
    """One classical run per scene, shared by the tests below (each run is well under a second)."""
    backend = get_backend("classical")
    out = {}
    for kind, scene in scenes.items():
        calls = []
        out[kind] = (backend.remove(RemovalRequest(scene.plate, scene.quadmask, "empty floor", 0), calls.append), calls)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_output_shape_dtype_and_keep_region_bit_identical(scenes, results, kind):
    scene, (out, _) = scenes[kind], results[kind]
    assert out.shape == scene.plate.shape and out.dtype == np.uint8
    keep = scene.quadmask == 255
    assert np.array_equal(out[keep], scene.plate[keep])
    assert not np.shares_memory(out, scene.plate)


@pytest.mark.parametrize("kind", KINDS)
def test_hole_close_to_clean_plate_and_better_than_telea(scenes, results, kind):
    scene, (out, _) = scenes[kind], results[kind]
    region = scene.quadmask != 255
    assert region.any()
    ours = hole_psnr(out, scene.clean, region)
    baseline = hole_psnr(telea(scene.plate, scene.quadmask), scene.clean, region)
    assert ours >= MIN_PSNR[kind], f"{kind}: {ours:.2f} dB"
    assert ours > baseline + 10, f"{kind}: {ours:.2f} dB vs Telea {baseline:.2f} dB"
    # The object really is gone: the plate itself is far from the clean plate in the hole.
    assert hole_psnr(scene.plate, scene.clean, region) < ours - 15


def test_progress_reported_monotonic_up_to_one(results):
    _, calls = results["pan"]
    assert len(calls) >= 3
    assert calls[0] == 0.0 and calls[-1] == 1.0
    assert all(0.0 <= c <= 1.0 for c in calls)
    assert all(a <= b for a, b in zip(calls, calls[1:]))


def test_all_keep_mask_returns_input_unchanged(scenes):
    scene = scenes["static"]
    quad = np.full(scene.quadmask.shape, 255, np.uint8)
    out = ClassicalBackend().remove(RemovalRequest(scene.plate, quad, "", 0))
    assert np.array_equal(out, scene.plate) and out is not scene.plate


def test_never_revealed_region_is_inpainted_once_and_does_not_flicker(scenes):
    # A locked-off shot where the object never moves: nothing is ever revealed, so the fill is
    # spatial; it must be the same in every frame (no boiling) and keep the keep region.
    scene = scenes["static"]
    plate = np.repeat(scene.plate[:1], 12, axis=0)
    quad = np.repeat(scene.quadmask[:1], 12, axis=0)
    out = ClassicalBackend().remove(RemovalRequest(plate, quad, "", 0))
    region = quad != 255
    assert np.array_equal(out[~region], plate[~region])
    assert np.all(out == out[:1])
    assert hole_psnr(out, np.repeat(scene.clean[:1], 12, axis=0), region) > hole_psnr(plate, np.repeat(
        scene.clean[:1], 12, axis=0), region)


def test_single_frame_and_non_contiguous_input(scenes):
    scene = scenes["pan"]
    one = ClassicalBackend().remove(RemovalRequest(scene.plate[5:6], scene.quadmask[5:6], "", 0))
    assert one.shape == (1, H, W, 3)
    keep = scene.quadmask[5:6] == 255
    assert np.array_equal(one[keep], scene.plate[5:6][keep])
    view = scene.plate[::2]  # strided view of the chunk
    out = ClassicalBackend().remove(RemovalRequest(view, scene.quadmask[::2], "", 0))
    assert np.array_equal(out[scene.quadmask[::2] == 255], view[scene.quadmask[::2] == 255])


def test_deterministic(scenes, results):
    scene = scenes["handheld"]
    again = get_backend("classical").remove(RemovalRequest(scene.plate, scene.quadmask, "other prompt", 7))
    assert np.array_equal(again, results["handheld"][0])


def test_exposure_drift_is_matched(scenes):
    # Per-frame exposure flicker: sources copied without gain matching would show up as patches.
    scene = scenes["static"]
    gain = (1 + 0.05 * np.sin(np.arange(T))).astype(np.float32)[:, None, None, None]
    plate = np.clip(np.rint(scene.plate * gain), 0, 255).astype(np.uint8)
    clean = np.clip(np.rint(scene.clean * gain), 0, 255).astype(np.uint8)
    region = scene.quadmask != 255
    req = RemovalRequest(plate, scene.quadmask, "", 0)
    matched = hole_psnr(ClassicalBackend().remove(req), clean, region)
    unmatched = hole_psnr(ClassicalBackend(exposure=False).remove(req), clean, region)
    assert matched > unmatched + 3 and matched > 35


def test_get_backend_unknown_name_lists_known():
    with pytest.raises(ValueError, match="classical"):
        get_backend("nope")
    assert "classical" in known_backends()


def test_backend_identity_and_options():
    b = get_backend("classical")
    assert isinstance(b, RemovalBackend)
    assert b.name == "classical" and b.version.startswith("classical-")
    tuned = get_backend("classical", samples=1)
    assert tuned.version != b.version  # options change output, so they change cache keys
    with pytest.raises(TypeError, match="samples"):
        get_backend("classical", sampels=1)


def test_request_rejects_bad_inputs(scenes):
    scene = scenes["static"]
    with pytest.raises(ValueError, match="re-quantize"):
        RemovalRequest(scene.plate, scene.quadmask // 2 + 1, "", 0)
    with pytest.raises(ValueError, match="quadmask"):
        RemovalRequest(scene.plate, scene.quadmask[:-1], "", 0)
    with pytest.raises(ValueError, match="frames"):
        RemovalRequest(scene.plate.astype(np.float32), scene.quadmask, "", 0)


def test_candidate_offsets_reach_far_frames_nearest_first():
    offs = candidate_offsets(197, 12)
    assert offs[:12] == list(range(1, 13))
    assert offs == sorted(set(offs)) and max(offs) > 150 and len(offs) < 40


@pytest.mark.parametrize("kind", KINDS)
def test_synthetic_scene_truth_matches_plate_outside_mask(scenes, kind):
    scene = scenes[kind]
    keep = scene.quadmask == 255
    assert set(np.unique(scene.quadmask)) == {0, 63, 127, 255}
    assert np.array_equal(scene.plate[keep], scene.clean[keep])
    assert (scene.plate[~keep] != scene.clean[~keep]).any(axis=-1).mean() > 0.5
    a, b = make_scene(kind, 6, H, W, seed=9), make_scene(kind, 6, H, W, seed=9)
    assert np.array_equal(a.plate, b.plate) and np.array_equal(a.quadmask, b.quadmask)


def test_large_hole_beyond_remap_limits():
    """A hole of more than 32767 pixels (cv2.remap's map-size limit) on a sub-pixel pan."""
    from model.backend import RemovalRequest
    from model.classical import ClassicalBackend
    from shots.synthetic import make_scene

    scene = make_scene("pan", 12, 384, 672, seed=3)
    mask = scene.quadmask.copy()
    mask[:, 100:300, 150:400] = 0  # 50,000 pixels
    out = ClassicalBackend().remove(RemovalRequest(scene.plate, mask))
    keep = mask == 255
    assert np.array_equal(out[keep], scene.plate[keep])
