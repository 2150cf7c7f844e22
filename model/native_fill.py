"""Clean plates at the plate's own resolution: classical removal without the 384x672 round trip.

Why: the classical backend works at model size, so its fill is upscaled into 2K/4K plates (soft,
stair-stepped outlines of the removed object at the 672x384 pitch), invents never-revealed
background by per-frame-smooth Telea (smears, 0.5-0.7 of the texture energy) and has no grain. This
module does the same job on the frames it is given (a region of interest or whole frames) at their
own resolution and precision (uint8, uint16, or scene-linear float32 that may exceed 1.0).

Steps (`fill_native`):
1. Region: non-keep pixels, the remove region (0, 63) grown by `margin` px so its edge does not
   survive; keep pixels outside that are never written (bit-identical).
2. Global motion: `model.classical.estimate_motion` on a display-referred uint8 guide (downscaled
   there), homographies chained to the middle frame; locked-off shots become exactly identity.
3. Local motion (handheld, parallax): for each (target, source) pair actually read, DIS optical flow
   between the target and the source warped onto it, on a crop round the hole scaled to
   `flow_size`, kept where forward and backward agree on background of both, smoothed and
   interpolated into the hole (push-pull). Used only where it moves hole pixels by `flow_min_px` or
   more; a probe of a few pairs first decides whether the chunk needs it at all.
4. Temporal fill: each hole pixel takes the median of the `samples` nearest-in-time frames whose
   (warped) pixel is keep there, gain-matched per channel on a ring around the hole. Whole-pixel
   shifts copy exactly; others Lanczos-4. These pixels are `revealed`.
5. Invention: what no frame shows is completed ONCE, in the frame that lacks the most, as smooth
   structure (transport along the surround's isophotes blended with push-pull) plus the finest
   band of multi-scale exemplar matches (`model.patch_synthesis`), from that frame's background
   averaged over `denoise_frames` neighbours on each side (so its grain is not frozen into the
   fill); other frames take it by the same motion, so it does not flicker.
6. Grain: the plate's temporal noise (3x3 colour covariance and spatial correlation, from aligned
   frame differences on keep pixels round the hole; after a subpixel warp, on the quieter half of
   them, the rest being detail the resampling could not match) is compared with the fill's, per
   kind of fill (revealed: a median of a few frames; invented: frozen); the deficit is added as
   seeded, per-frame independent grain (in a display-like encoding for float plates).

Everything runs at the frames' resolution, so there is no stair-stepped outline; soft edges are
the compositor's job. Memory: the output, a uint8 guide (the input itself when uint8) and a few
(T,H,W) masks; the per-pixel work is on hole pixels and crops around them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from model.classical import (_REMAP_WIDTH, _exposure_gain, _integer_shift, _ring, _Sampler, candidate_offsets,
                             estimate_motion)
from model.grain import add_grain
from model.patch_synthesis import push_pull, synthesize
from model.plate_values import cast, decode, encode
from shots.quadmask import grow_remove

VERSION = "1.4"  # 1.1: grain on subpixel-warped shots measured without the resampling residual;
# 1.2: grain measured on plates whose frames mostly repeat exactly, invented detail at its surround's energy;
# 1.3: subpixel samples read with Lanczos-4; 1.4: invented background is smooth structure + exemplar fine detail
INPAINTERS = ("patch", "fsr", "shiftmap", "telea")
_DEFAULTS = {"samples": 3, "dense": 12, "max_features": 400, "motion": "homography", "exposure": True,
             "local": True, "flow_size": 192, "flow_min_px": 0.5, "inpaint": "patch", "patch": 7,
             "denoise_frames": 4, "seed": 0}
_DTYPES = (np.uint8, np.uint16, np.float32)
_LANCZOS_REACH = 4  # px a subpixel sample reads around its position
_QUAD_OK = np.zeros(256, bool)
_QUAD_OK[[0, 63, 127, 255]] = True


@dataclass(frozen=True)
class NativeFill:
    """Result of `fill_native`: the frames with the region filled, and where the fill is real background."""

    frames: np.ndarray  # (T,H,W,3) input dtype; pixels outside the fill region bit-identical to the input
    revealed: np.ndarray  # (T,H,W) bool: filled from background seen in another frame (False: invented, or not filled)


def _checked(options: dict) -> dict:
    """`_DEFAULTS` updated with `options`, refusing unknown names and bad values.

    samples: nearest valid frames median-combined per pixel. dense: every offset up to this is a
    candidate source, beyond it geometric steps (as classical). max_features, motion, exposure: as
    classical. local: DIS refinement after the homography. flow_size: long side (px) of the crop
    the flow is computed on. flow_min_px: smallest refinement worth resampling for. inpaint:
    'patch' (exemplar synthesis, any dtype), 'fsr' / 'shiftmap' (cv2.xphoto, 8-bit, needs
    opencv-contrib), 'telea' (smooth, for comparison). patch: exemplar size (odd). denoise_frames:
    frames each side averaged into the exemplar source. seed: grain and synthesis randomness.
    """
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown native fill options {sorted(unknown)}; known: {sorted(_DEFAULTS)}")
    opts = {**_DEFAULTS, **options}
    if opts["motion"] not in ("homography", "affine", "none"):
        raise ValueError(f"motion must be 'homography', 'affine' or 'none', got {opts['motion']!r}")
    if opts["inpaint"] not in INPAINTERS:
        raise ValueError(f"inpaint must be one of {INPAINTERS}, got {opts['inpaint']!r}")
    if opts["inpaint"] in ("fsr", "shiftmap") and not hasattr(cv2, "xphoto"):
        raise ValueError(f"inpaint={opts['inpaint']!r} needs cv2.xphoto (opencv-contrib); use 'patch'")
    if int(opts["samples"]) < 1 or int(opts["dense"]) < 1:
        raise ValueError("samples and dense must be >= 1")
    if int(opts["patch"]) < 3 or int(opts["patch"]) % 2 == 0:
        raise ValueError(f"patch must be an odd size >= 3, got {opts['patch']}")
    if int(opts["denoise_frames"]) < 0:
        raise ValueError(f"denoise_frames must be >= 0, got {opts['denoise_frames']}")
    if int(opts["flow_size"]) < 32:
        raise ValueError(f"flow_size must be >= 32, got {opts['flow_size']}")
    return opts


def version(*, margin: int = 3, grain: bool = True, **options) -> str:
    """The output's identity for these settings: non-default settings are part of it (cache keys, manifests)."""
    opts = _checked(options)
    changed = {k: v for k, v in opts.items() if v != _DEFAULTS[k]}
    if margin != 3:
        changed["margin"] = margin
    if not grain:
        changed["grain"] = False
    return f"native-{VERSION}" + "".join(f"+{k}={changed[k]}" for k in sorted(changed))


def fill_region(quadmask: np.ndarray, margin: int = 3) -> np.ndarray:
    """(T,H,W) bool: pixels to regenerate, i.e. non-keep plus the remove region (0, 63) grown by `margin` px."""
    return np.stack([grow_remove(m, margin) for m in quadmask])


def make_guide(frames: np.ndarray) -> np.ndarray:
    """(T,H,W,3) uint8 display-referred frames for motion estimation (uint8 as is, uint16 >> 8, float gamma 2.2)."""
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype == np.uint16:
        return (frames >> 8).astype(np.uint8)
    guide = np.empty(frames.shape, np.uint8)
    for t in range(len(frames)):  # frame by frame: one float temporary at a time
        g = np.clip(frames[t], 0.0, 1.0)
        np.power(g, 1 / 2.2, out=g)
        guide[t] = np.rint(g * 255)
    return guide


def fill_native(frames: np.ndarray, quadmask: np.ndarray, *, guide: np.ndarray | None = None, margin: int = 3,
                grain: bool = True, progress: Callable[[float], None] | None = None, **options) -> NativeFill:
    """Regenerate the non-keep region of a chunk at its own resolution and precision.

    Args:
        frames (`np.ndarray`): (T,H,W,3) uint8, uint16 or float32 RGB (float may be scene-linear, > 1.0).
        quadmask (`np.ndarray`): (T,H,W) uint8 in {0, 63, 127, 255}; 255 keeps the pixel.
        guide (`np.ndarray`, *optional*): (T,H,W,3) uint8 display-referred frames for motion estimation;
            derived from `frames` when None (see `make_guide`).
        margin (`int`, defaults to 3): px the remove region (0, 63) grows by before filling.
        grain (`bool`, defaults to True): add grain where the fill is smoother than the plate.
        progress (`Callable[[float], None]`, *optional*): called with fractions 0.0 .. 1.0.
        **options: see `_DEFAULTS` (samples, dense, max_features, motion, exposure, local, flow_size,
            flow_min_px, inpaint, patch, seed); `version(**options)` names the result.
    """
    # 1. Check inputs and settle the region.
    opts = _checked(options)
    _check_inputs(frames, quadmask, guide, margin)
    report = progress or (lambda fraction: None)
    report(0.0)
    frames = np.ascontiguousarray(frames)
    out = frames.copy()
    region = fill_region(quadmask, margin)
    revealed = np.zeros(region.shape, bool)
    if not region.any():
        report(1.0)
        return NativeFill(out, revealed)
    keep = ~region
    guide = make_guide(frames) if guide is None else np.ascontiguousarray(guide)

    # 2. Global motion on the guide.
    T = len(frames)
    if opts["motion"] == "none" or T == 1:
        to_ref = np.repeat(np.eye(3)[None], T, axis=0)
    else:
        to_ref = estimate_motion(guide, keep, model=opts["motion"], max_features=int(opts["max_features"]),
                                 progress=lambda f: report(0.2 * f))
    report(0.2)

    # 3. Local motion, computed lazily per pair.
    local = _LocalMotion(guide, keep, region, to_ref, int(opts["flow_size"]), float(opts["flow_min_px"]),
                         bool(opts["local"]))
    local.enabled = local.probe()

    # 4. Temporal fill from revealed background.
    remaining = _temporal_fill(frames, out, keep, region, revealed, to_ref, local, opts,
                               progress=lambda f: report(0.2 + 0.55 * f))
    report(0.75)

    # 5. Invent what no frame shows, once, and carry it.
    invented = _invent_and_carry(out, keep, revealed, remaining, to_ref, local, opts)
    report(0.9)

    # 6. Grain where the fill is smoother than the plate.
    if grain:
        add_grain(out, region, revealed, invented, to_ref, int(opts["seed"]))
    np.copyto(out, frames, where=keep[..., None])  # the contract, whatever happened above
    report(1.0)
    return NativeFill(out, revealed)


def bench_fill(frames: np.ndarray, quadmask: np.ndarray) -> np.ndarray:
    """Adapter for bench harnesses that take `fn(frames, quadmask) -> frames` (default settings)."""
    return fill_native(frames, quadmask).frames


def _check_inputs(frames, quadmask, guide, margin) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be a (T,H,W,3) array, got {_describe(frames)}")
    if frames.dtype not in _DTYPES:
        raise ValueError(f"frames must be uint8, uint16 or float32, got {frames.dtype}")
    if not isinstance(quadmask, np.ndarray) or quadmask.dtype != np.uint8 or quadmask.shape != frames.shape[:3]:
        raise ValueError(f"quadmask must be a (T,H,W) uint8 array matching frames {frames.shape[:3]}, "
                         f"got {_describe(quadmask)}")
    if not _QUAD_OK[quadmask].all():
        bad = np.unique(quadmask[~_QUAD_OK[quadmask]])[:8].tolist()
        raise ValueError(f"quadmask values must be in (0, 63, 127, 255); found {bad} (re-quantize it first)")
    if guide is not None and (not isinstance(guide, np.ndarray) or guide.dtype != np.uint8
                              or guide.shape != frames.shape):
        raise ValueError(f"guide must be a uint8 array of the frames' shape {frames.shape}, got {_describe(guide)}")
    if int(margin) != margin or margin < 0:
        raise ValueError(f"margin must be a whole number of px >= 0, got {margin!r}")


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array shape={a.shape} dtype={a.dtype}"
    return type(a).__name__


def _gain_range(dtype) -> tuple[float, float]:
    """Values trusted for exposure matching (away from black and clipped white)."""
    if dtype == np.uint8:
        return 6.0, 249.0
    if dtype == np.uint16:
        return 6.0 * 257, 249.0 * 257
    return 1e-4, math.inf




def _median(stack: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-pixel, per-channel median of the first `count` samples of (k,n,3) `stack`, float32."""
    res = stack[0].copy()
    for c in range(2, stack.shape[0] + 1):
        sel = count == c
        if sel.any():
            res[sel] = np.median(stack[:c, sel], axis=0)
    return res


# --------------------------------------------------------------------------- sampling with local motion

class _PointSampler(_Sampler):
    """classical's sampler, plus a per-point displacement (in target px) applied before the homography.

    Subpixel positions are read with Lanczos-4, not bicubic: bicubic keeps less of the plate's finest
    detail, and a median of a few such samples lost more (texture 0.876 of the truth's on a slowly
    drifting real plate, 0.966 with Lanczos, at -0.18 dB in bench/quality_real.py; +0.35-0.51 dB
    on quiet synthetic pans). Lanczos reads +-4 px, so sources
    must be background that far from the object (`_LANCZOS_REACH`).
    """

    interpolation = cv2.INTER_LANCZOS4

    def __init__(self, M, xs, ys, H, W, du=None, dv=None):
        if du is None:
            super().__init__(M, xs, ys, H, W)
            return
        M = M / M[2, 2]
        self.exact = False
        p = M @ np.stack([xs + du, ys + dv, np.ones(len(xs))]).astype(np.float64)
        u, v = p[0] / p[2], p[1] / p[2]
        self.u, self.v = u.astype(np.float32), v.astype(np.float32)
        self.xi, self.yi = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
        self.inside = (self.xi >= 0) & (self.xi < W) & (self.yi >= 0) & (self.yi < H)
        np.clip(self.xi, 0, W - 1, out=self.xi)
        np.clip(self.yi, 0, H - 1, out=self.yi)


def _remap_points(img: np.ndarray, u: np.ndarray, v: np.ndarray, interpolation: int) -> np.ndarray:
    """img sampled at float points (u, v), as (n, channels) float32; long lists go in rows (remap's size limit)."""
    n, width = len(u), _REMAP_WIDTH
    rows = -(-n // width) if n else 1
    pad = rows * width - n
    um = np.pad(u.astype(np.float32), (0, pad)).reshape(rows, width)
    vm = np.pad(v.astype(np.float32), (0, pad)).reshape(rows, width)
    got = cv2.remap(img, um, vm, interpolation, borderMode=cv2.BORDER_REPLICATE)
    return got.reshape(rows * width, -1)[:n].astype(np.float32)




class _LocalMotion:
    """Residual motion after the homography, per (target, source) pair, for the target's hole pixels.

    DIS flow runs on a downscaled crop round the target's hole (`flow_size` px on its long side)
    between the target and the source warped onto it. Flow is trusted where forward and backward
    agree and both frames show background; the hole (where the target shows the object) is
    interpolated from that. A pair whose interpolated flow moves no hole pixel by `min_px` or more
    gets None, so locked-off and purely homographic shots keep exact copies.
    """

    def __init__(self, guide, keep, region, to_ref, flow_size, min_px, enabled):
        self.enabled = enabled
        self.guide, self.keep = guide, keep
        self.to_ref, self.from_ref = to_ref, np.linalg.inv(to_ref)
        self.flow_size, self.min_px = flow_size, min_px
        self._gray: dict[int, np.ndarray] = {}
        self._boxes: dict[int, tuple[int, int, int, int]] = {}
        self._region = region
        self._dis = None
        self._last: tuple = (None, None)
        self.pairs = self.applied = 0

    def gray(self, t: int) -> np.ndarray:
        g = self._gray.get(t)
        if g is None:
            if len(self._gray) > 24:
                self._gray.pop(next(iter(self._gray)))
            g = self._gray[t] = self._neutral(t)
        return g

    def _neutral(self, t: int) -> np.ndarray:
        """Grey guide with the region replaced by a smooth fill: flow must not see the object move."""
        g = cv2.cvtColor(self.guide[t], cv2.COLOR_RGB2GRAY)
        m = self._region[t]
        ys = np.flatnonzero(m.any(axis=1))
        if not len(ys):
            return g
        xs = np.flatnonzero(m.any(axis=0))
        y0, y1 = max(0, ys[0] - 16), min(g.shape[0], ys[-1] + 17)
        x0, x1 = max(0, xs[0] - 16), min(g.shape[1], xs[-1] + 17)
        crop, hole = g[y0:y1, x0:x1], m[y0:y1, x0:x1]
        smooth = push_pull(crop.astype(np.float32)[..., None], (~hole).astype(np.float32))[..., 0]
        crop[hole] = np.clip(np.rint(smooth[hole]), 0, 255).astype(np.uint8)
        return g

    def box(self, t: int) -> tuple[int, int, int, int]:
        b = self._boxes.get(t)
        if b is None:
            H, W = self._region.shape[1:]
            ys = np.flatnonzero(self._region[t].any(axis=1))
            xs = np.flatnonzero(self._region[t].any(axis=0))
            pad = max(48, (ys[-1] - ys[0] + xs[-1] - xs[0]) // 4)
            b = self._boxes[t] = (max(0, xs[0] - pad), max(0, ys[0] - pad), min(W, xs[-1] + pad + 1),
                                  min(H, ys[-1] + pad + 1))
        return b

    def probe(self, targets: int = 4, offsets: tuple[int, ...] = (1, 3, 8)) -> bool:
        """Whether any of a few spread pairs needs local motion; if none does, the chunk skips it (fast)."""
        if not self.enabled:
            return False
        T = len(self._region)
        ts = [t for t in range(T) if self._region[t].any()]
        ts = [ts[i] for i in np.unique(np.linspace(0, len(ts) - 1, min(targets, len(ts))).round().astype(int))]
        for t in ts:
            ys, xs = np.nonzero(self._region[t])
            for d in offsets:
                for s in (t - d, t + d):
                    if 0 <= s < T and self.displacement(t, s, xs, ys) is not None:
                        return True
        return False

    def displacement(self, t: int, s: int, xs: np.ndarray, ys: np.ndarray):
        """(du, dv) float64 per point of the target's hole, in target px, or None when negligible."""
        if not self.enabled:
            return None
        if self._last[0] != (t, s):
            self.pairs += 1
            self._last = ((t, s), self._field(t, s))
        field = self._last[1]
        if field is None:
            return None
        flow, x0, y0, sc = field
        uv = _remap_points(flow, (xs - x0 + 0.5) * sc - 0.5, (ys - y0 + 0.5) * sc - 0.5, cv2.INTER_LINEAR)
        if np.abs(uv).max() < self.min_px:
            return None
        self.applied += 1
        return uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64)

    def _field(self, t: int, s: int):
        x0, y0, x1, y1 = self.box(t)
        w, h = x1 - x0, y1 - y0
        if min(w, h) < 16:
            return None
        sc = min(1.0, self.flow_size / max(w, h))
        size = (max(8, round(w * sc)), max(8, round(h * sc)))
        sc = size[0] / w  # exact ratio of the resize below (x); y differs by < 1 px
        M = self.from_ref[s] @ self.to_ref[t] @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], float)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        src = cv2.warpPerspective(self.gray(s), M, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        ks = cv2.warpPerspective(self.keep[s].view(np.uint8), M, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        kt = self.keep[t, y0:y1, x0:x1].view(np.uint8)
        tgt = self.gray(t)[y0:y1, x0:x1]
        if sc < 1.0:
            src = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
            tgt = cv2.resize(tgt, size, interpolation=cv2.INTER_AREA)
            ks = cv2.resize(ks, size, interpolation=cv2.INTER_NEAREST)
            kt = cv2.resize(kt, size, interpolation=cv2.INTER_NEAREST)
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        tgt = np.ascontiguousarray(tgt)
        fwd = self._dis.calc(tgt, src, None)
        bwd = self._dis.calc(src, tgt, None)
        hh, ww = fwd.shape[:2]
        gx, gy = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
        back = cv2.remap(bwd, gx + fwd[..., 0], gy + fwd[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = np.linalg.norm(fwd + back, axis=-1)
        k9 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))  # DIS patches reach ~8 px
        both = cv2.erode(kt & ks, k9, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
        trusted = both & (err < 0.25 + 0.05 * np.linalg.norm(fwd, axis=-1))
        if trusted.mean() < 0.15:
            return None
        flow = push_pull(fwd, trusted.astype(np.float32))
        # Residual motion is smooth (parallax, lens, rolling shutter); DIS's per-pixel noise is not.
        flow = cv2.GaussianBlur(flow, (0, 0), max(2.0, 0.015 * max(hh, ww))) / np.float32(sc)  # target px
        return flow, x0, y0, sc


# --------------------------------------------------------------------------- temporal fill

def _temporal_fill(frames, out, keep, region, revealed, to_ref, local, opts, progress=None):
    """Fill `out`'s region from other frames' keep pixels; returns {t: bool mask of pixels no frame showed}."""
    T, H, W = region.shape
    from_ref = np.linalg.inv(to_ref)
    keep_u8 = keep.view(np.uint8)
    reach = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _LANCZOS_REACH + 1,) * 2)  # keep the object out
    keep_eroded = np.stack([cv2.erode(keep_u8[t], reach, borderType=cv2.BORDER_CONSTANT, borderValue=0)
                            for t in range(T)])
    offs = candidate_offsets(T, int(opts["dense"]))
    samples = int(opts["samples"])
    lo, hi = _gain_range(frames.dtype)
    remaining: dict[int, np.ndarray] = {}
    for t in range(T):
        ys, xs = np.nonzero(region[t])
        if len(ys):
            ring = _ring(region[t], keep[t]) if opts["exposure"] else None
            cands = [s for d in offs for s in (t - d, t + d) if 0 <= s < T]
            filled = _fill_points(frames, out[t], t, ys, xs, cands, (keep_u8, keep_eroded), to_ref, from_ref,
                                  samples, ring, local, lo, hi)
            revealed[t, ys[filled], xs[filled]] = True
            if not filled.all():
                m = np.zeros((H, W), bool)
                m[ys[~filled], xs[~filled]] = True
                remaining[t] = m
        if progress and t % 4 == 0:
            progress(t / T)
    return remaining


def _fill_points(sources, target, t, ys, xs, cands, valid_masks, to_ref, from_ref, samples, ring, local, lo, hi,
                 origin=None):
    """target[ys, xs] = gain-matched median of the first `samples` valid source samples; returns filled (bool).

    `origin` (optional, bool list per source) is sampled too: returns (filled, from_origin).
    """
    H, W = target.shape[:2]
    n = len(ys)
    stack = np.zeros((samples, n, 3), np.float32)
    count = np.zeros(n, np.int32)
    need = np.ones(n, bool)
    real = np.zeros(n, bool)
    ring_target = target[ring[0], ring[1]].astype(np.float32) if ring is not None and len(ring[0]) else None
    for s in cands:
        idx = np.nonzero(need)[0]
        if not len(idx):
            break
        M = from_ref[s] @ to_ref[t]
        # Cheap exact test first: is any point valid in this source at all?
        probe = _PointSampler(M, xs[idx], ys[idx], H, W)
        if not probe.mask(valid_masks[1][s] if not probe.exact else valid_masks[0][s]).any():
            continue
        disp = local.displacement(t, s, xs[idx], ys[idx])
        smp = probe if disp is None else _PointSampler(M, xs[idx], ys[idx], H, W, *disp)
        valid = valid_masks[0][s] if smp.exact else valid_masks[1][s]
        sel = smp.mask(valid)
        if not sel.any():
            continue
        vals = smp.values(sources[s], sel)
        if ring_target is not None:
            rdisp = local.displacement(t, s, ring[1], ring[0]) if disp is not None else None
            rs = _PointSampler(M, ring[1], ring[0], H, W, *(rdisp or (None, None)))
            rsel = rs.mask(valid)
            if rsel.sum() >= 32:
                gain = _exposure_gain(ring_target[rsel], rs.values(sources[s], rsel), lo, hi)
                if gain is not None:
                    vals *= gain
        take = idx[sel]
        stack[count[take], take] = vals
        count[take] += 1
        need[take] = count[take] < samples
        if origin is not None:
            real[take] |= origin[s][smp.yi[sel], smp.xi[sel]]
    filled = count > 0
    if filled.any():
        target[ys[filled], xs[filled]] = cast(_median(stack[:, filled], count[filled]), target.dtype)
    return filled if origin is None else (filled, real & filled)


# --------------------------------------------------------------------------- invention

def _invent_and_carry(out, keep, revealed, remaining, to_ref, local, opts) -> np.ndarray:
    """Fill never-revealed pixels once per region (largest first) and carry them by the motion; returns invented."""
    T, H, W = keep.shape
    invented = np.zeros(keep.shape, bool)
    if not remaining:
        return invented
    from_ref = np.linalg.inv(to_ref)
    everywhere = np.broadcast_to(np.full((1, H, W), 255, np.uint8), (T, H, W))
    shown = keep | revealed  # real background, wherever it sits after the temporal fill
    lo, hi = _gain_range(out.dtype)
    rng = np.random.default_rng([int(opts["seed"]), 7])
    while remaining:
        r = max(remaining, key=lambda t: int(remaining[t].sum()))
        m = remaining.pop(r)
        _invent_region(out, r, m, shown, to_ref, opts, rng)
        invented[r] |= m
        for t in list(remaining):
            m = remaining[t]
            ys, xs = np.nonzero(m)
            ring = _ring(m, ~m) if opts["exposure"] else None
            filled, real = _fill_points(out, out[t], t, ys, xs, [r], (everywhere, everywhere), to_ref, from_ref,
                                        1, ring, local, lo, hi, origin=shown)
            revealed[t, ys[real], xs[real]] = True
            invented[t, ys[filled & ~real], xs[filled & ~real]] = True
            m[ys[filled], xs[filled]] = False
            if not m.any():
                del remaining[t]
    return invented


def _invent_region(out: np.ndarray, r: int, mask: np.ndarray, shown: np.ndarray, to_ref: np.ndarray, opts: dict,
                   rng: np.random.Generator) -> None:
    """Fill `mask` pixels of frame `r` of `out` in place with texture from the rest of the frame.

    The exemplars come from a temporal average of the frame's background (`_quiet_crop`): copying
    the frame's own grain would freeze it into the fill, and regraining on top of frozen grain
    doubles it.
    """
    img = out[r]
    ys, xs = np.nonzero(mask)
    extent = int(max(ys.max() - ys.min(), xs.max() - xs.min())) + 1
    patch = int(opts["patch"])
    pad = max(4 * patch, int(0.75 * extent))
    y0, y1 = max(0, int(ys.min()) - pad), min(img.shape[0], int(ys.max()) + pad + 1)
    x0, x1 = max(0, int(xs.min()) - pad), min(img.shape[1], int(xs.max()) + pad + 1)
    crop = img[y0:y1, x0:x1]
    hole = mask[y0:y1, x0:x1]
    base = _quiet_crop(out, r, (x0, y0, x1, y1), shown, to_ref, int(opts["denoise_frames"]))
    method = opts["inpaint"]
    if method == "patch":
        filled = synthesize(base, encode(base, img.dtype), hole, patch, rng)
        crop[hole] = cast(filled[hole], img.dtype)
        return
    # OpenCV inpainters work on 8 bits: solve on the encoded crop, decode to the plate's values.
    work = encode(base, img.dtype)
    work8 = np.clip(np.rint(work), 0, 255).astype(np.uint8)
    hole8 = hole.astype(np.uint8) * 255
    if method == "telea":
        res = cv2.inpaint(work8, hole8, 5, cv2.INPAINT_TELEA)
    else:
        flag = cv2.xphoto.INPAINT_FSR_FAST if method == "fsr" else cv2.xphoto.INPAINT_SHIFTMAP
        src = cv2.cvtColor(work8, cv2.COLOR_RGB2Lab) if method == "shiftmap" else work8
        res = np.zeros_like(src)
        cv2.xphoto.inpaint(src, 255 - hole8, res, flag)
        if method == "shiftmap":
            res = cv2.cvtColor(res, cv2.COLOR_Lab2RGB)
    crop[hole] = cast(decode(res[hole].astype(np.float32), img.dtype), img.dtype)


def _quiet_crop(out, r, box, shown, to_ref, frames_each_side: int) -> np.ndarray:
    """float32 crop `box` of frame r, its background averaged with up to `frames_each_side` frames on each
    side (aligned by the global motion, gain-matched, only where they show background): less grain."""
    x0, y0, x1, y1 = box
    acc = out[r, y0:y1, x0:x1].astype(np.float32)
    own = shown[r, y0:y1, x0:x1]
    if frames_each_side < 1 or len(out) == 1:
        return acc
    acc = acc * own[..., None]
    count = own.astype(np.float32)
    lo, hi = _gain_range(out.dtype)
    from_ref = np.linalg.inv(to_ref)
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], float)
    size = (x1 - x0, y1 - y0)
    k5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for s in range(max(0, r - frames_each_side), min(len(out), r + frames_each_side + 1)):
        if s == r:
            continue
        pair = from_ref[s] @ to_ref[r]
        exact = _integer_shift(pair, x0, y0, x1 - 1, y1 - 1)
        M = (np.rint(pair) if exact else pair) @ shift
        interp = cv2.INTER_NEAREST if exact else cv2.INTER_CUBIC
        vals = cv2.warpPerspective(out[s], M, size, flags=interp | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        ok = cv2.warpPerspective(shown[s].view(np.uint8), M, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if not exact:  # cubic reads +-2 px
            ok = cv2.erode(ok, k5, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        ok = ok > 0
        if not ok.any():
            continue
        both = ok & own
        if both.sum() >= 32:
            gain = _exposure_gain(out[r, y0:y1, x0:x1][both].astype(np.float32), vals[both], lo, hi)
            if gain is not None:
                vals *= gain
        acc += vals * ok[..., None]
        count += ok
    quiet = acc / np.maximum(count, 1)[..., None]
    crop = out[r, y0:y1, x0:x1].astype(np.float32)
    return np.where((count > 0)[..., None], quiet, crop).astype(np.float32)


# Multi-scale exemplar synthesis (Wexler, Shechtman, Irani 2007, "Space-time completion of video",
# image case): coarse to fine, alternate nearest-neighbour fields (PatchMatch, Barnes et al. 2009)
# and voting. Patches are compared through a PCA projection computed by filtering, so a candidate
# costs one gather of `k` floats per pixel instead of patch*patch*3.

