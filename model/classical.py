"""The CPU fallback removal backend: temporal background propagation, then spatial inpainting.

Why this shape: in most flagged shots the background behind the object is seen in some other
frame of the chunk (the object moves, or the camera does). Copying those real pixels, aligned by
the camera's global motion, is sharp and flicker-free where per-frame image inpainting smears and
boils. Only what no frame ever shows is invented, and it is invented once (in one frame) and then
carried by the same motion to the other frames, so it does not flicker either.

Steps:
1. Global motion: sparse features on keep pixels, pyramidal Lucas-Kanade with a forward-backward
   check, RANSAC homography between consecutive frames, chained to the middle frame. A chain that
   never moves more than a fraction of a pixel is a locked-off camera and becomes exactly identity,
   so static plates are copied bit-exactly instead of being resampled.
2. Temporal fill: each frame's hole (quadmask != 255) takes, per pixel, the median of the `samples`
   nearest-in-time frames whose warped pixel was keep in its own frame. Integer shifts copy
   exactly; other warps are cubic, with the source keep mask eroded by the kernel's reach.
3. Spatial fill: pixels never revealed are inpainted (Telea) in the frame that lacks the most, then
   that frame is warped into the others; repeat until nothing is left.
Keep pixels are never written, so they come back bit-identical.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from model.backend import KEEP, BackendIdentity, RemovalRequest, enforce_keep

VERSION = "1.0"
_DEFAULTS = {"samples": 3, "dense": 12, "inpaint_radius": 5, "max_features": 400, "motion": "homography",
             "exposure": True}

def _checked(options: dict) -> dict:
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown classical backend options {sorted(unknown)}; known: {sorted(_DEFAULTS)}")
    opts = {**_DEFAULTS, **options}
    if opts["motion"] not in ("homography", "affine", "none"):
        raise ValueError(f"motion must be 'homography', 'affine' or 'none', got {opts['motion']!r}")
    if int(opts["samples"]) < 1 or int(opts["dense"]) < 1:
        raise ValueError("samples and dense must be >= 1")
    return opts


_LK = dict(winSize=(21, 21), maxLevel=4, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))


class ClassicalBackend:
    """Removal by motion-compensated propagation of revealed background; CPU only, deterministic.

    Options (all change output, so non-default ones are part of `version`):
    samples: how many nearest valid frames are median-combined per pixel (1 = nearest only).
    dense: every offset up to this many frames is a candidate source; beyond, offsets grow
        geometrically so a slowly moving object still finds frames that reveal its background.
    inpaint_radius: Telea radius for never-revealed pixels.
    max_features: corners tracked per frame for motion estimation.
    motion: 'homography' (pans, tilts, handheld), 'affine', or 'none' (locked-off camera).
    exposure: match each source's per-channel gain to the target frame around the hole.
    """

    name = "classical"
    device = "cpu"

    def __init__(self, **options):
        self.options = _checked(options)
        self.identity = self.identity_of(**options)
        self.version = self.identity.version

    @classmethod
    def identity_of(cls, **options) -> BackendIdentity:
        """Name and version for these options (non-default options are part of the version)."""
        opts = _checked(options)
        changed = {k: v for k, v in opts.items() if v != _DEFAULTS[k]}
        suffix = "".join(f"+{k}={changed[k]}" for k in sorted(changed))
        return BackendIdentity(cls.name, f"classical-{VERSION}{suffix}")

    def __repr__(self) -> str:
        return f"ClassicalBackend(version={self.version!r})"

    def remove(self, request: RemovalRequest, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(T,H,W,3) uint8 with every non-keep pixel regenerated from the rest of the chunk."""
        report = progress or (lambda fraction: None)
        frames = np.ascontiguousarray(request.frames)  # cv2 needs contiguous frames; views are allowed in
        hole = request.quadmask != KEEP
        out = frames.copy()
        report(0.0)
        if not hole.any():
            report(1.0)
            return out
        keep = ~hole
        o = self.options
        if o["motion"] == "none" or frames.shape[0] == 1:
            to_ref = np.repeat(np.eye(3)[None], frames.shape[0], axis=0)
        else:
            to_ref = estimate_motion(frames, keep, model=o["motion"], max_features=o["max_features"],
                                     progress=lambda f: report(0.3 * f))
        report(0.3)
        remaining = _temporal_fill(frames, keep, hole, to_ref, out, int(o["samples"]), int(o["dense"]),
                                   exposure=bool(o["exposure"]), progress=lambda f: report(0.3 + 0.6 * f))
        report(0.9)
        _spatial_fill(out, remaining, to_ref, int(o["inpaint_radius"]), exposure=bool(o["exposure"]))
        report(1.0)
        return enforce_keep(request, out)


# --------------------------------------------------------------------------- global motion

def estimate_motion(frames: np.ndarray, keep: np.ndarray, model: str = "homography", max_features: int = 400,
                    progress: Callable[[float], None] | None = None) -> np.ndarray:
    """(T,3,3) float64 homographies mapping frame-t pixel coords to the middle frame's coords.

    Only keep pixels carry features: the object and its shadow move on their own and would pull
    the estimate. A pair that cannot be estimated (too few tracks) repeats the previous pair's
    motion, or identity.
    """
    T, H, W = keep.shape
    scale = min(1.0, 720.0 / max(H, W))  # full res up to 720 px: subpixel accuracy matters
    size = (max(16, round(W * scale)), max(16, round(H * scale)))
    erode = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))

    def prep(t):
        g = cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY)
        m = keep[t].astype(np.uint8) * 255
        if scale != 1.0:
            g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
            m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
        m = cv2.erode(m, erode, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        return g, m

    pair = np.repeat(np.eye(3)[None], max(T - 1, 0), axis=0)  # pair[t]: frame t -> frame t+1
    ok = np.zeros(max(T - 1, 0), bool)
    prev = prep(0)
    for t in range(T - 1):
        cur = prep(t + 1)
        M = _pair_motion(prev[0], cur[0], prev[1], cur[1], model, max_features)
        if M is not None:
            pair[t], ok[t] = M, True
        prev = cur
        if progress and t % 8 == 0:
            progress(t / max(T - 1, 1))
    # Fill failed pairs from the nearest successful one (constant-velocity guess), else identity.
    if ok.any() and not ok.all():
        good = np.nonzero(ok)[0]
        for t in np.nonzero(~ok)[0]:
            pair[t] = pair[good[np.argmin(np.abs(good - t))]]
    if scale != 1.0:
        S = np.diag([scale, scale, 1.0])
        pair = np.linalg.inv(S) @ pair @ S
    # Chain to the middle frame: G[t] maps frame t -> reference.
    G = np.empty((T, 3, 3))
    ref = T // 2
    G[ref] = np.eye(3)
    for t in range(ref + 1, T):
        G[t] = G[t - 1] @ np.linalg.inv(pair[t - 1])
    for t in range(ref - 1, -1, -1):
        G[t] = G[t + 1] @ pair[t]
    G /= G[:, 2:3, 2:3]
    if _max_corner_shift(G, H, W) < 0.3:
        G[:] = np.eye(3)  # locked off: estimation noise only; copy instead of resampling
    if progress:
        progress(1.0)
    return G


def _pair_motion(g0, g1, m0, m1, model, max_features):
    """Homography (or affine) taking frame-0 coords to frame-1 coords, or None if unreliable."""
    h, w = g0.shape
    pts = cv2.goodFeaturesToTrack(g0, max_features, 0.005, max(4, min(h, w) // 60), mask=m0, blockSize=7)
    if pts is None or len(pts) < 8:
        return None
    nxt, st, _ = cv2.calcOpticalFlowPyrLK(g0, g1, pts, None, **_LK)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(g1, g0, nxt, None, **_LK)
    a, b = pts.reshape(-1, 2), nxt.reshape(-1, 2)
    good = (st.ravel() == 1) & (st2.ravel() == 1) & (np.linalg.norm(back.reshape(-1, 2) - a, axis=1) < 0.3)
    xi, yi = np.rint(b[:, 0]).astype(int), np.rint(b[:, 1]).astype(int)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    good &= inside
    good[inside] &= m1[yi[inside], xi[inside]] > 0  # must land on background in frame 1 too
    a, b = a[good], b[good]
    if len(a) < 8:
        return None
    if model == "homography" and len(a) >= 24:
        M, inl = cv2.findHomography(a, b, cv2.RANSAC, 0.7, maxIters=2000, confidence=0.999)
        if M is not None and inl is not None and inl.sum() >= max(12, 0.3 * len(a)):
            return M / M[2, 2]
    A, inl = cv2.estimateAffine2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=0.7, maxIters=2000,
                                  confidence=0.999, refineIters=20)
    if A is None or inl is None or inl.sum() < 6:
        return None
    return np.vstack([A, [0.0, 0.0, 1.0]])


def _max_corner_shift(G: np.ndarray, H: int, W: int) -> float:
    """Largest displacement (px) of a frame corner under any of the transforms in G."""
    corners = np.array([[0, 0, 1], [W - 1, 0, 1], [0, H - 1, 1], [W - 1, H - 1, 1]], float).T
    p = G @ corners
    p = p[:, :2] / p[:, 2:3]
    return float(np.abs(p - corners[None, :2]).max())


# --------------------------------------------------------------------------- temporal fill

def candidate_offsets(frames: int, dense: int) -> list[int]:
    """Positive frame offsets to look at, nearest first: all up to `dense`, then x1.35 steps."""
    offs = list(range(1, min(dense, frames - 1) + 1))
    d = float(dense)
    while True:
        d = max(d * 1.35, d + 1)
        if int(d) >= frames:
            break
        offs.append(int(d))
    return offs


def _integer_shift(M: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> bool:
    """True when M moves every pixel of the box [x0,x1]x[y0,y1] by (almost) the same whole-pixel offset."""
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], float).T
    p = M @ corners
    d = p[:2] / p[2:3] - corners[:2]
    return bool(np.abs(d - np.rint(d[:, :1])).max() < 0.02)


_REMAP_WIDTH = 16384


class _Sampler:
    """Reads a source frame at the positions where a target frame's pixels land (via homography M).

    Sampling exactly the needed points (cv2.remap on a 1xN map) costs nothing for pixels that are
    not needed. Whole-pixel shifts are read by indexing, so a locked-off or integer-pan source is
    copied bit-exactly; other positions use `interpolation` (bicubic here).
    """

    interpolation = cv2.INTER_CUBIC

    def __init__(self, M: np.ndarray, xs: np.ndarray, ys: np.ndarray, H: int, W: int):
        M = M / M[2, 2]
        self.exact = _integer_shift(M, int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        if self.exact:
            M = np.rint(M)
        p = M @ np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)
        u, v = p[0] / p[2], p[1] / p[2]
        self.u, self.v = u.astype(np.float32), v.astype(np.float32)
        self.xi, self.yi = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
        self.inside = (self.xi >= 0) & (self.xi < W) & (self.yi >= 0) & (self.yi < H)
        np.clip(self.xi, 0, W - 1, out=self.xi)
        np.clip(self.yi, 0, H - 1, out=self.yi)

    def mask(self, valid: np.ndarray) -> np.ndarray:
        return self.inside & (valid[self.yi, self.xi] > 0)

    def values(self, img: np.ndarray, sel: np.ndarray) -> np.ndarray:
        if self.exact:
            return img[self.yi[sel], self.xi[sel]].astype(np.float32)
        u, v = self.u[sel], self.v[sel]
        # remap's maps are images: at most 32767 columns, so long point lists go in rows of that width.
        n, width = len(u), _REMAP_WIDTH
        rows = -(-n // width) if n else 1
        pad = rows * width - n
        um = np.pad(u, (0, pad)).reshape(rows, width)
        vm = np.pad(v, (0, pad)).reshape(rows, width)
        got = cv2.remap(img, um, vm, self.interpolation, borderMode=cv2.BORDER_REPLICATE)
        return got.reshape(rows * width, -1)[:n].astype(np.float32)


def _exposure_gain(target: np.ndarray, source: np.ndarray, lo: float = 6.0, hi: float = 249.0) -> np.ndarray | None:
    """Per-channel gain that matches `source` (n,3) values to `target`, or None when ~1 or unknown.

    Exposure and light drift between frames would otherwise show up as a patch of another
    brightness; the deadband keeps sources of an unchanged exposure exact. Only values in (lo, hi)
    are trusted: away from black and clipped white (8-bit codes by default).
    """
    ok = (target > lo) & (target < hi) & (source > lo) & (source < hi)
    gain = np.ones(3, np.float32)
    for c in range(3):
        m = ok[:, c]
        if m.sum() < 32:
            return None
        gain[c] = np.median(target[m, c] / source[m, c])
    if np.abs(gain - 1).max() < 0.004:
        return None
    return np.clip(gain, 0.5, 2.0)


def _ring(hole: np.ndarray, keep: np.ndarray, width: int = 4, limit: int = 4000):
    """Keep pixels within `width` px of the hole: where a source's exposure is compared to the target's."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    ring = (cv2.dilate(hole.view(np.uint8), k) > 0) & keep
    ys, xs = np.nonzero(ring)
    step = max(1, len(ys) // limit)
    return ys[::step], xs[::step]


def _temporal_fill(frames, keep, hole, to_ref, out, samples, dense, exposure=True, progress=None):
    """Fill `out`'s holes from other frames' keep pixels; returns {t: bool mask of unfilled pixels}."""
    T, H, W = hole.shape
    from_ref = np.linalg.inv(to_ref)
    keep_u8 = keep.view(np.uint8)
    # Cubic reads +-2 px around a sample: a source pixel next to a hole would leak the object.
    k5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    keep_eroded = np.stack([cv2.erode(keep_u8[t], k5, borderType=cv2.BORDER_CONSTANT, borderValue=0)
                            for t in range(T)])
    offs = candidate_offsets(T, dense)
    remaining: dict[int, np.ndarray] = {}
    for t in range(T):
        ys, xs = np.nonzero(hole[t])
        if len(ys):
            ring = _ring(hole[t], keep[t]) if exposure else None
            cands = [s for d in offs for s in (t - d, t + d) if 0 <= s < T]
            filled = _fill_points(frames, out[t], t, ys, xs, cands, [keep_u8, keep_eroded], to_ref, from_ref,
                                  samples, ring)
            if not filled.all():
                m = np.zeros((H, W), bool)
                m[ys[~filled], xs[~filled]] = True
                remaining[t] = m
        if progress and t % 4 == 0:
            progress(t / T)
    return remaining


def _fill_points(sources, target, t, ys, xs, cands, valid_masks, to_ref, from_ref, samples, ring):
    """Fill target[ys, xs] with the median of the first `samples` valid source samples; returns filled."""
    H, W = target.shape[:2]
    n = len(ys)
    stack = np.zeros((samples, n, 3), np.float32)
    count = np.zeros(n, np.int32)
    need = np.ones(n, bool)
    ring_target = target[ring[0], ring[1]].astype(np.float32) if ring is not None and len(ring[0]) else None
    for s in cands:
        idx = np.nonzero(need)[0]
        if not len(idx):
            break
        M = from_ref[s] @ to_ref[t]
        smp = _Sampler(M, xs[idx], ys[idx], H, W)
        valid = valid_masks[0][s] if smp.exact else valid_masks[1][s]
        sel = smp.mask(valid)
        if not sel.any():
            continue
        vals = smp.values(sources[s], sel)
        if ring_target is not None:
            rs = _Sampler(M, ring[1], ring[0], H, W)
            rsel = rs.mask(valid)
            if rsel.sum() >= 32:
                gain = _exposure_gain(ring_target[rsel], rs.values(sources[s], rsel))
                if gain is not None:
                    vals *= gain
        take = idx[sel]
        stack[count[take], take] = vals
        count[take] += 1
        need[take] = count[take] < samples
    filled = count > 0
    if filled.any():
        target[ys[filled], xs[filled]] = _combine(stack[:, filled], count[filled])
    return filled


def _combine(stack: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-pixel, per-channel median of the first `count` samples, as uint8."""
    k = stack.shape[0]
    res = stack[0].copy()
    for c in range(2, k + 1):
        sel = count == c
        if sel.any():
            res[sel] = np.median(stack[:c, sel], axis=0)
    return np.clip(np.rint(res), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- spatial fill

def _spatial_fill(out: np.ndarray, remaining: dict[int, np.ndarray], to_ref: np.ndarray, radius: int,
                  exposure: bool = True) -> None:
    """Inpaint never-revealed pixels once per region and carry them to other frames by the motion."""
    if not remaining:
        return
    T, H, W = out.shape[:3]
    from_ref = np.linalg.inv(to_ref)
    everywhere = np.broadcast_to(np.full((1, H, W), 255, np.uint8), (T, H, W))  # filled frames: all valid
    while remaining:
        r = max(remaining, key=lambda t: int(remaining[t].sum()))
        _inpaint_region(out[r], remaining.pop(r), radius)
        for t in list(remaining):
            m = remaining[t]
            ys, xs = np.nonzero(m)
            ring = _ring(m, ~m) if exposure else None
            filled = _fill_points(out, out[t], t, ys, xs, [r], [everywhere, everywhere], to_ref, from_ref, 1, ring)
            m[ys[filled], xs[filled]] = False
            if not m.any():
                del remaining[t]


def _inpaint_region(img: np.ndarray, mask: np.ndarray, radius: int) -> None:
    """Telea-inpaint `mask` pixels of `img` in place, working on the mask's bounding box only."""
    ys, xs = np.nonzero(mask)
    pad = 3 * radius + 4
    y0, y1 = max(0, int(ys.min()) - pad), min(img.shape[0], int(ys.max()) + pad + 1)
    x0, x1 = max(0, int(xs.min()) - pad), min(img.shape[1], int(xs.max()) + pad + 1)
    crop = np.ascontiguousarray(img[y0:y1, x0:x1])
    m = mask[y0:y1, x0:x1]
    filled = cv2.inpaint(crop, m.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
    crop[m] = filled[m]
    img[y0:y1, x0:x1] = crop
