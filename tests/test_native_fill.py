"""Native-resolution classical fill (model/native_fill.py) on generated clips with known clean plates.

Behaviour, not timings: pixels outside the fill region come back bit-identical in every supported
dtype (float values above 1.0 included); revealed background is propagated close to the truth
(far above per-frame Telea, which a mean-colour fill cannot reach either); what is never revealed is
invented once, with the surrounding texture's detail, and does not pop; `revealed` says which is
which; the margin removes an outline left just outside a tight matte; grain is seeded and matches
the plate's temporal noise.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from model.native_fill import NativeFill, bench_fill, fill_native, fill_region, make_guide, version
from shots.synthetic import make_scene, texture

T, H, W = 16, 112, 192


def make_clip(frames: int, height: int, width: int, *, camera: str = "locked", intruder: str = "moving",
              seed: int = 0, grain: float = 1.5, soft: bool = False):
    """(plate, clean, quadmask): textured background, a textured disc with a soft shadow (marked 127).

    camera: 'locked' (integer window, exact) or 'pan' (about 1.3 px/frame, subpixel, with drift).
    intruder: 'moving' (crosses the frame, background revealed) or 'still' (never revealed).
    soft: the background is blurred where the intruder goes, with bands of fine detail above and
    below it (an out-of-focus wall between sharp edges: detail resampling cannot reproduce).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=np.float64)
    m = 8
    if camera == "pan":
        tx, ty = m + 1.3 * t, m + 3.0 + 3.0 * np.sin(t / 5.0)
    else:
        tx, ty = np.full(frames, m, float), np.full(frames, m, float)
    tex = texture(height + 2 * m + 8, width + 2 * m + int(np.ceil(tx.max())), seed)
    if soft:
        detail = cv2.GaussianBlur(np.random.default_rng(seed + 1000).standard_normal(tex.shape, dtype=np.float32),
                                  (0, 0), 0.7)
        rows = np.arange(len(tex))[:, None, None] - ty.mean()  # plate rows, give or take the drift
        bands = (rows < 0.13 * height) | (rows > 0.8 * height)
        tex = cv2.GaussianBlur(tex, (0, 0), 3.0) + bands * detail * np.float32(12 / detail.std())
    r = 0.17 * min(height, width)
    skin = texture(int(2 * r) + 4, int(2 * r) + 4, seed + 101)
    skin = 0.5 * skin + 0.5 * rng.uniform(30, 220, 3).astype(np.float32)  # its own colour and texture
    if intruder == "moving":
        cx, cy = width * (0.18 + 0.64 * t / max(frames - 1, 1)), height * (0.45 + 0.08 * np.sin(t / 3.0))
    else:
        cx, cy = np.full(frames, width * 0.5), np.full(frames, height * 0.42)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    plate = np.empty((frames, height, width, 3), np.uint8)
    clean = np.empty_like(plate)
    quad = np.full((frames, height, width), 255, np.uint8)
    for i in range(frames):
        if camera == "pan":
            A = np.array([[1, 0, tx[i]], [0, 1, ty[i]]])
            bg = cv2.warpAffine(tex, A, (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
        else:
            bg = tex[m:m + height, m:m + width]
        noise = rng.standard_normal((height, width, 3), dtype=np.float32) * grain
        clean[i] = np.clip(np.rint(bg + noise), 0, 255)
        a_obj = np.clip(r - np.hypot(xx - cx[i], yy - cy[i]) + 0.5, 0, 1)
        ell = np.hypot((xx - cx[i] - 0.5 * r) / (1.2 * r), (yy - cy[i] - 0.9 * r) / (0.5 * r))
        s = np.clip((ell - 0.5) / 0.5, 0, 1)
        a_sh = 0.45 * (1 - s * s * (3 - 2 * s))
        sx = np.clip((xx - cx[i] + r + 2).astype(np.int32), 0, skin.shape[1] - 1)
        sy = np.clip((yy - cy[i] + r + 2).astype(np.int32), 0, skin.shape[0] - 1)
        comp = bg * (1 - a_sh)[..., None]
        comp = comp * (1 - a_obj)[..., None] + skin[sy, sx] * a_obj[..., None]
        plate[i] = np.clip(np.rint(comp + noise), 0, 255)
        remove = cv2.dilate((a_obj > 0).astype(np.uint8), k3) > 0
        shadow = cv2.dilate((a_sh > 0.01).astype(np.uint8), k3) > 0
        quad[i][shadow] = 127
        quad[i][remove] = 0
        quad[i][remove & shadow] = 63
        plate[i][quad[i] == 255] = clean[i][quad[i] == 255]
    return plate, clean, quad


def psnr(out, truth, region) -> float:
    d = out[region].astype(np.float64) - truth[region]
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def telea(frames, quadmask):
    return np.stack([cv2.inpaint(f, (q != 255).astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
                     for f, q in zip(frames, quadmask)])


def hf_energy(frames, region) -> float:
    """Mean squared high-pass (grey minus its sigma-1 blur) over `region` pixels of every frame."""
    total, n = 0.0, 0
    for f, m in zip(frames, region):
        if m.any():
            g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)
            hp = g - cv2.GaussianBlur(g, (0, 0), 1.0)
            total += float((hp[m] ** 2).sum())
            n += int(m.sum())
    return total / max(n, 1)


def parallax_clip(frames: int, height: int, width: int, seed: int = 0):
    """Two depth layers sliding at different speeds (no single homography), a disc crossing the near one."""
    rng = np.random.default_rng(seed)
    v_far, v_near, split = 0.8, 2.3, 0.4
    far = texture(height + 16, width + 24 + int(v_far * frames), seed)
    near = texture(height + 16, width + 24 + int(v_near * frames), seed + 50)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 0.14 * min(height, width)
    plate = np.empty((frames, height, width, 3), np.uint8)
    clean = np.empty_like(plate)
    quad = np.full((frames, height, width), 255, np.uint8)
    for i in range(frames):
        layers = [cv2.warpAffine(tex, np.array([[1, 0, 8 + v * i], [0, 1, 8.0]]), (width, height),
                                 flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
                  for tex, v in ((far, v_far), (near, v_near))]
        bg = np.where((yy < split * height)[..., None], *layers)
        noise = rng.standard_normal((height, width, 3), dtype=np.float32) * 1.5
        clean[i] = np.clip(np.rint(bg + noise), 0, 255)
        cx = width * (0.2 + 0.6 * i / (frames - 1))
        a = np.clip(r - np.hypot(xx - cx, yy - 0.72 * height) + 0.5, 0, 1)[..., None]
        plate[i] = np.clip(np.rint(bg * (1 - a) + np.float32([200, 60, 50]) * a + noise), 0, 255)
        remove = cv2.dilate((a[..., 0] > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        quad[i][remove] = 0
        plate[i][~remove] = clean[i][~remove]
    return plate, clean, quad


def ring_around(region: np.ndarray, width: int = 12) -> np.ndarray:
    """Pixels within `width` px outside each frame's region: the surrounding texture."""
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return np.stack([(cv2.dilate(m.view(np.uint8), k) > 0) & ~m for m in region])


def temporal_noise(frames: np.ndarray, where: np.ndarray) -> float:
    """Std of frame-to-frame differences over pixels `where` in both frames, per frame (/ sqrt 2)."""
    both = where[1:] & where[:-1]
    d = frames[1:].astype(np.float64) - frames[:-1]
    return float(d[both].std() / math.sqrt(2))


@pytest.fixture(scope="module")
def pan():
    return make_clip(T, H, W, camera="pan", intruder="moving", seed=1)


@pytest.fixture(scope="module")
def still():
    return make_clip(12, H, W, camera="locked", intruder="still", seed=4)


@pytest.fixture(scope="module")
def pan_result(pan):
    plate, _, quad = pan
    calls = []
    return fill_native(plate, quad, grain=False, progress=calls.append), calls


@pytest.fixture(scope="module")
def still_result(still):
    plate, _, quad = still
    return fill_native(plate, quad, grain=False)


@pytest.fixture(scope="module")
def still_grained(still):
    plate, _, quad = still
    return fill_native(plate, quad, seed=4)


# --------------------------------------------------------------------------- contract and precision

def _as_dtype(plate: np.ndarray, dtype) -> np.ndarray:
    """The clip at another precision, with content in the low bits too (float: linear, up to ~4.0)."""
    rng = np.random.default_rng(5)
    if dtype == np.uint16:
        return plate.astype(np.uint16) * 257 + rng.integers(0, 257, plate.shape).astype(np.uint16)
    if dtype == np.float32:
        return (((plate.astype(np.float32) + rng.uniform(0, 1, plate.shape).astype(np.float32)) / 255) ** 2.2
                * np.float32(4.0))
    return plate


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_pixels_outside_the_region_come_back_bit_identical_in_every_dtype(pan, dtype):
    plate, clean, quad = pan
    frames = _as_dtype(plate[:8], dtype)
    res = fill_native(frames, quad[:8], grain=True)
    assert isinstance(res, NativeFill)
    assert res.frames.dtype == frames.dtype and res.frames.shape == frames.shape
    assert res.revealed.shape == quad[:8].shape and res.revealed.dtype == bool
    assert not np.shares_memory(res.frames, frames)
    region = fill_region(quad[:8], 3)
    outside = ~region
    bits = {np.uint8: np.uint8, np.uint16: np.uint16, np.float32: np.uint32}[dtype]
    assert np.array_equal(res.frames[outside].view(bits), frames[outside].view(bits))
    assert (res.frames[region] != frames[region]).any(axis=-1).mean() > 0.5  # the region really was redone
    truth = _as_dtype(clean[:8], dtype)
    if dtype == np.float32:
        assert frames.max() > 3.0 and res.frames[region].max() > 2.0  # scene-linear highlights are not clipped
        # Compare on the display-like scale the values were made from.
        out8 = (np.clip(res.frames / 4.0, 0, None) ** (1 / 2.2)) * 255
        ref8 = (np.clip(truth / 4.0, 0, None) ** (1 / 2.2)) * 255
    else:
        scale = 257.0 if dtype == np.uint16 else 1.0
        out8, ref8 = res.frames / scale, truth / scale
    assert psnr(out8, ref8, region) > 36.0


def test_all_keep_comes_back_unchanged(pan):
    plate, _, _ = pan
    res = fill_native(plate[:3], np.full(plate.shape[:3][:1] + plate.shape[1:3], 255, np.uint8)[[0, 0, 0]])
    assert np.array_equal(res.frames, plate[:3]) and res.frames is not plate
    assert not res.revealed.any()


# --------------------------------------------------------------------------- revealed background

def test_pan_fill_is_close_to_the_clean_plate_and_far_above_telea(pan, pan_result):
    plate, clean, quad = pan
    res, _ = pan_result
    region = fill_region(quad, 3)
    ours = psnr(res.frames, clean, region)
    baseline = psnr(telea(plate, quad), clean, region)
    mean_fill = plate.copy()
    for t in range(len(plate)):  # what a broken fill that only gets the colour right scores
        mean_fill[t][region[t]] = plate[t][~region[t]].mean(axis=0)
    # Measured: ours ~42.8 dB (grain of std 1.5 in the truth caps it near 45), Telea ~23.8, mean ~20.7.
    assert ours > 38.0, f"{ours:.2f} dB"
    assert ours > baseline + 12.0, f"{ours:.2f} dB vs Telea {baseline:.2f} dB"
    assert psnr(mean_fill, clean, region) < 38.0 - 12.0
    assert res.revealed[region].mean() > 0.99 and not res.revealed[~region].any()


def test_subpixel_samples_keep_more_of_the_plate_than_bicubic(monkeypatch):
    # A quiet plate (no grain) panned by subpixel steps: Lanczos-4 reads the revealed background closer
    # to the truth than bicubic did. Measured on seeds 1-3: +0.51, +0.41, +0.35 dB.
    import model.native_fill as native

    plate, clean, quad = make_clip(T, H, W, camera="pan", grain=0.0, seed=1)
    region = fill_region(quad, 3)
    lanczos = psnr(fill_native(plate, quad, grain=False).frames, clean, region)
    monkeypatch.setattr(native._PointSampler, "interpolation", cv2.INTER_CUBIC)
    bicubic = psnr(fill_native(plate, quad, grain=False).frames, clean, region)
    assert lanczos > bicubic + 0.2, f"Lanczos {lanczos:.2f} dB vs bicubic {bicubic:.2f} dB"


def test_handheld_scene_with_roll(tmp_path):
    scene = make_scene("handheld", 16, 96, 168, seed=3)
    res = fill_native(scene.plate, scene.quadmask, grain=False)
    region = fill_region(scene.quadmask, 3)
    assert psnr(res.frames, scene.clean, region) > 38.0  # measured ~45.8; Telea ~28
    assert np.array_equal(res.frames[~region], scene.plate[~region])


def test_local_motion_follows_parallax_the_homography_cannot():
    plate, clean, quad = parallax_clip(16, H, W, seed=1)
    region = fill_region(quad, 3)
    local = psnr(fill_native(plate, quad, grain=False).frames, clean, region)
    flat = psnr(fill_native(plate, quad, grain=False, local=False).frames, clean, region)
    assert local > flat + 2.0, f"local {local:.2f} dB vs homography only {flat:.2f} dB"  # measured ~41 vs ~37


def test_revealed_marks_propagated_pixels_and_not_invented_ones():
    # Locked-off: one intruder crosses (its background is revealed), a sticker never moves (invented).
    plate, _, quad = make_clip(12, H, W, camera="locked", intruder="moving", seed=3)
    plate, quad = plate.copy(), quad.copy()
    plate[:, 10:40, 140:175] = (230, 40, 200)
    quad[:, 10:40, 140:175] = 0
    res = fill_native(plate, quad, grain=False)
    region = fill_region(quad, 3)
    seen_elsewhere = np.stack([(~np.delete(region, t, axis=0)).any(axis=0) for t in range(len(region))])
    truth = region & seen_elsewhere
    assert truth.any() and (region & ~truth).any()
    assert np.array_equal(res.revealed, truth)


# --------------------------------------------------------------------------- invented background

def test_still_intruder_is_invented_once_with_texture_and_does_not_pop(still, still_result, still_grained):
    plate, _, quad = still
    res = still_result
    region = fill_region(quad, 3)
    assert not res.revealed.any()  # nothing behind a still intruder is ever seen
    assert np.array_equal(res.frames[1:][region[1:]], res.frames[:-1][region[:-1]])  # identical every frame
    ring = ring_around(region)
    surround = hf_energy(plate, ring)  # texture plus the plate's grain
    grained = hf_energy(still_grained.frames, region) / surround
    bare = hf_energy(res.frames, region) / surround
    smooth = hf_energy(telea(plate, quad), region) / surround
    # Measured on this clip: 1.06 with grain, 0.89 without (grain is ~0.1 of the surround's energy),
    # Telea 0.27; over seeds 2-9, with grain 0.82-1.64 (the truth itself 0.73-1.59).
    assert grained > 0.8, f"texture ratio {grained:.2f}"
    assert bare > 0.75, f"texture ratio without grain {bare:.2f}"
    assert smooth < 0.5


def test_margin_removes_an_outline_just_outside_a_tight_matte():
    plate, clean, quad = make_clip(10, H, W, camera="locked", intruder="moving", seed=4)
    plate = plate.copy()
    k3 = np.ones((3, 3), np.uint8)
    halo = np.stack([(cv2.dilate((q <= 63).view(np.uint8) * 1, k3) > 0) & (q == 255) for q in quad])
    plate[halo] = 255  # the object's edge survived the matte as a 1 px bright outline
    tight = fill_native(plate, quad, margin=0, grain=False)
    assert np.array_equal(tight.frames[halo], plate[halo])  # keep is keep: the outline stays
    res = fill_native(plate, quad, margin=3, grain=False)
    err = np.abs(res.frames[halo].astype(np.float64) - clean[halo]).mean()
    assert err < 6.0, f"outline still there: mean error {err:.1f}"  # plate's outline is ~100 off
    assert np.abs(plate[halo].astype(np.float64) - clean[halo]).mean() > 60.0
    region = fill_region(quad, 3)
    assert np.array_equal(res.frames[~region], plate[~region])


# --------------------------------------------------------------------------- grain

def test_grain_matches_the_plates_temporal_noise_and_is_seeded(still, still_result, still_grained):
    plate, _, quad = still
    region = fill_region(quad, 3)
    ring = ring_around(region)
    a = still_grained
    assert temporal_noise(still_result.frames, region) == 0.0  # without grain: frozen
    ratio = temporal_noise(a.frames, region) / temporal_noise(plate, ring)
    assert 0.85 < ratio < 1.15, f"grain {ratio:.2f} of the plate's"  # measured 0.98
    assert np.array_equal(a.frames[~region], plate[~region])
    assert np.array_equal(fill_native(plate, quad, seed=4).frames, a.frames)
    assert not np.array_equal(fill_native(plate, quad, seed=5).frames, a.frames)


def compressed_like(plate: np.ndarray, seed: int, share: float = 0.35, std: float = 1.2) -> np.ndarray:
    """`plate` as a codec leaves it: each frame re-codes `share` of its 8x8 blocks with small errors, the
    rest repeat exactly (over half of all frame differences are exactly 0)."""
    rng = np.random.default_rng(seed)
    out = plate.astype(np.float32)
    T, h, w = plate.shape[:3]
    for t in range(T):
        blocks = np.kron(rng.random((-(-h // 8), -(-w // 8))) < share, np.ones((8, 8), bool))[:h, :w]
        out[t][blocks] += rng.normal(0, std, (int(blocks.sum()), 3)).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_grain_is_measured_on_a_plate_whose_frames_mostly_repeat_exactly():
    # Before: the spread of the frame differences was a median-based one, 0 when over half of them
    # are 0; every other difference was cut as an outlier, the plate "had no noise" and the
    # invented fill stayed frozen (ratio 0.0) while the surround flickered.
    clean_plate, _, quad = make_clip(12, H, W, camera="locked", intruder="still", seed=4, grain=0.0)
    plate = compressed_like(clean_plate, seed=7)
    assert np.mean(plate[1:] == plate[:-1]) > 0.5
    region = fill_region(quad, 3)
    res = fill_native(plate, quad, seed=1)
    ratio = temporal_noise(res.frames, region) / temporal_noise(plate, ring_around(region))
    assert 0.6 < ratio < 1.4, f"fill flickers {ratio:.2f}x the plate"  # measured 0.90


def striped_clip(frames: int, angle: float, seed: int = 1):
    """(plate, clean, quadmask): stripes at `angle` (radians) and light grain, a disc that never moves."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) * np.float32(2 * np.pi / 9.0)
    bg = (128 + 60 * np.sin(phase))[..., None] * np.float32([1.0, 0.9, 0.7])
    r = 0.17 * min(H, W)
    a = np.clip(r - np.hypot(xx - 0.5 * W, yy - 0.45 * H) + 0.5, 0, 1)[..., None]
    plate = np.empty((frames, H, W, 3), np.uint8)
    clean = np.empty_like(plate)
    quad = np.full((frames, H, W), 255, np.uint8)
    for i in range(frames):
        noise = rng.standard_normal((H, W, 3)).astype(np.float32)
        clean[i] = np.clip(np.rint(bg + noise), 0, 255)
        plate[i] = np.clip(np.rint(bg * (1 - a) + np.float32([200, 60, 50]) * a + noise), 0, 255)
        quad[i][cv2.dilate((a[..., 0] > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = 0
    return plate, clean, quad


@pytest.mark.parametrize("angle", [0.0, 0.6, 1.3])
def test_never_revealed_stripes_run_on_through_the_hole(angle):
    # Transport along the surround's isophotes carries the stripes across; exemplar votes and Telea
    # did not. Measured 30.1, 26.9, 27.9 dB against Telea's 17.2, 16.9, 17.3.
    plate, clean, quad = striped_clip(8, angle)
    region = fill_region(quad, 3)
    ours = psnr(fill_native(plate, quad).frames, clean, region)
    assert ours > psnr(telea(plate, quad), clean, region) + 6.0, f"{ours:.2f} dB"


def test_invented_detail_carries_the_surrounds_fine_detail_energy(monkeypatch):
    # Exemplar search favours smooth sources; the fill's finest band is scaled back up towards the
    # energy of the band just outside the hole (at most 4x in amplitude). Measured: 0.13 and 0.22
    # of the surround's without the step, 0.98 and 0.98 with it.
    from model import patch_synthesis

    def fine_ratio(seed: int) -> float:
        plate, _, quad = make_clip(1, H, W, camera="locked", intruder="still", seed=seed, grain=0.0)
        hole = fill_region(quad, 3)[0]
        img = plate[0].astype(np.float32)
        out = patch_synthesis.synthesize(img, img, hole, 7, np.random.default_rng(0))
        assert np.array_equal(out[~hole], img[~hole])
        fine = out - cv2.GaussianBlur(out, (0, 0), 1.0)
        surround = (cv2.dilate(hole.view(np.uint8), np.ones((15, 15), np.uint8)) > 0) & ~hole
        inner = cv2.erode(hole.view(np.uint8), np.ones((5, 5), np.uint8)) > 0
        return float(np.mean(fine[inner] ** 2) / np.mean(fine[surround] ** 2))

    matched = {seed: fine_ratio(seed) for seed in (2, 5)}
    monkeypatch.setattr(patch_synthesis, "_FINE_GAIN_MAX", 1.0)
    for seed, ratio in matched.items():
        before = fine_ratio(seed)
        assert before < 0.7 and 0.85 < ratio < 1.1, f"seed {seed}: {before:.2f} -> {ratio:.2f} of the surround's"


def test_grain_on_a_pan_adds_no_texture_the_truth_lacks():
    # A subpixel pan past a soft wall between sharp bands, plate noise std 0.3: aligned differences
    # of the bands hold resampling residual far above that noise. Counted as noise, it grained the
    # soft fill to 1.35-1.47x the truth's high-pass energy at a cost of 2.6-2.8 dB (seeds 1-3);
    # measured now 1.03-1.05 at 0.6-0.8 dB.
    plate, clean, quad = make_clip(T, H, W, camera="pan", seed=1, grain=0.3, soft=True)
    region = fill_region(quad, 3)
    res = fill_native(plate, quad)
    bare = fill_native(plate, quad, grain=False)
    ratio = hf_energy(res.frames, region) / hf_energy(clean, region)
    assert 0.85 < ratio < 1.2, f"high-pass energy {ratio:.2f}x the truth's"
    cost = psnr(bare.frames, clean, region) - psnr(res.frames, clean, region)
    assert cost < 1.5, f"grain costs {cost:.2f} dB"


# --------------------------------------------------------------------------- interface

def test_progress_reported_monotonic_up_to_one(pan_result):
    _, calls = pan_result
    assert len(calls) >= 3 and calls[0] == 0.0 and calls[-1] == 1.0
    assert all(a <= b for a, b in zip(calls, calls[1:]))


def test_guide_is_derived_from_the_plates_precision(pan):
    plate = pan[0][:2]
    assert make_guide(plate) is plate
    assert np.array_equal(make_guide(plate.astype(np.uint16) * 256 + 200), plate)  # the high byte
    lin = (plate.astype(np.float32) / 255) ** 2.2
    lin[0, 0, 0] = 7.5  # above 1.0: clipped for the guide only
    g = make_guide(lin)
    assert g.dtype == np.uint8 and g[0, 0, 0, 0] == 255
    assert np.abs(g[0, 1:].astype(int) - plate[0, 1:]).max() <= 1


def test_explicit_guide_is_used_for_motion(pan):
    plate, _, quad = pan
    frames = _as_dtype(plate[:6], np.uint16)
    derived = fill_native(frames, quad[:6], grain=False)
    given = fill_native(frames, quad[:6], grain=False, guide=make_guide(frames))
    assert np.array_equal(derived.frames, given.frames)


def test_options_are_checked_and_named_in_the_version(pan):
    plate, _, quad = pan
    assert version() == version(samples=3, margin=3, grain=True)
    assert version(samples=1) != version() and "samples=1" in version(samples=1)
    assert version(margin=5) != version() and version(grain=False) != version()
    with pytest.raises(TypeError, match="samples"):
        fill_native(plate, quad, sampels=2)
    with pytest.raises(ValueError, match="inpaint"):
        version(inpaint="magic")
    with pytest.raises(ValueError, match="uint8, uint16 or float32"):
        fill_native(plate.astype(np.float64), quad)
    with pytest.raises(ValueError, match="re-quantize"):
        fill_native(plate, quad // 2 + 1)
    with pytest.raises(ValueError, match="guide"):
        fill_native(plate, quad, guide=plate[:, ::2])
    with pytest.raises(ValueError, match="margin"):
        fill_native(plate, quad, margin=-1)


def test_bench_adapter_returns_the_filled_frames(pan):
    plate, _, quad = pan
    out = bench_fill(plate[:4], quad[:4])
    assert isinstance(out, np.ndarray)
    assert np.array_equal(out, fill_native(plate[:4], quad[:4]).frames)
