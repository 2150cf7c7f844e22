"""Grain for filled pixels: the plate's measured temporal noise, added where a fill falls short of it.

Why: a median of a few frames, or texture invented once and carried, is quieter than the plate, and
reads as a soft patch. The plate's noise (a 3x3 colour covariance and its spatial correlation, from
aligned frame differences on keep pixels around the hole) is compared with the fill's, per kind of
fill, and the deficit is added as seeded grain that differs every frame. After a subpixel warp an
aligned difference also holds detail the resampling could not match; counted as noise, it put
visible extra grain on pans (texture energy 1.6-2.1x the truth's), so only the quieter half of
those differences is measured.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from model.classical import _integer_shift
from model.plate_values import encode, decode, cast


def add_grain(out, region, revealed, invented, to_ref, seed, pairs: int = 8) -> None:
    """Add seeded, per-frame independent grain where the fill's temporal noise falls short of the plate's."""
    T = len(out)
    if T < 2:
        return
    stats = _noise_stats(out, region, revealed, invented, to_ref, pairs)
    if stats is None:
        return
    plate_cov, fill_cov, blur = stats
    mixes = {}
    for cls in ("revealed", "invented"):
        cov = fill_cov.get(cls)
        if cov is None:  # unmeasured: invented content is frozen; a median of a few keeps about half
            cov = np.zeros((3, 3)) if cls == "invented" else 0.5 * plate_cov
        mixes[cls] = _psd_sqrt(plate_cov - cov)
    dtype = out.dtype
    kernel_gain = None
    if blur > 0:
        delta = np.zeros((31, 31), np.float32)
        delta[15, 15] = 1
        kernel_gain = 1.0 / float(np.sqrt((cv2.GaussianBlur(delta, (0, 0), blur) ** 2).sum()))
    for t in range(T):
        ys, xs = np.nonzero(region[t])
        if not len(ys):
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        z = np.random.default_rng([seed, 1, t]).standard_normal((y1 - y0, x1 - x0, 3), dtype=np.float32)
        if kernel_gain is not None:
            z = cv2.GaussianBlur(z, (0, 0), blur) * np.float32(kernel_gain)
        z = z[ys - y0, xs - x0]
        noise = np.zeros_like(z)
        for cls, sel in (("revealed", revealed[t, ys, xs]), ("invented", invented[t, ys, xs])):
            L = mixes[cls]
            if L is not None and sel.any():
                noise[sel] = z[sel] @ L.T.astype(np.float32)
        if not noise.any():
            continue
        vals = encode(out[t, ys, xs], dtype) + noise
        out[t, ys, xs] = cast(decode(vals, dtype), dtype)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray | None:
    """A matrix L with L L^T = the positive part of symmetric `cov`, None when that is ~0."""
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    w = np.clip(w, 0, None)
    if w.max() < 0.01:  # < 0.1 code value std: not worth touching the pixels
        return None
    return v @ np.diag(np.sqrt(w))


def _noise_stats(out, region, revealed, invented, to_ref, pairs):
    """Temporal noise covariances (display-like 0..255 scale) of plate keep pixels and of each fill class.

    From differences of consecutive frames aligned by the global motion around the region; a
    difference holds the noise of both frames, and bicubic resampling smooths the warped one: that
    factor (measured on white noise through the same warp) is divided out of both. After a subpixel
    warp only the quieter half of each class's pixels counts (`_quietest`): the rest holds detail
    the resampling could not match, which is not grain.
    """
    T, H, W = region.shape
    from_ref = np.linalg.inv(to_ref)
    ts = [t for t in range(T - 1) if region[t].any()]
    if not ts:
        return None
    ts = [ts[i] for i in np.unique(np.linspace(0, len(ts) - 1, min(pairs, len(ts))).round().astype(int))]
    dtype = out.dtype
    acc = {"plate": [], "revealed": [], "invented": []}
    lag = []
    k9 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (33, 33))
    for t in ts:
        ys, xs = np.nonzero(cv2.dilate(region[t].view(np.uint8), k9))
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        pair = from_ref[t + 1] @ to_ref[t]
        exact = _integer_shift(pair, x0, y0, x1 - 1, y1 - 1)
        M = (np.rint(pair) if exact else pair) @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], float)
        size = (x1 - x0, y1 - y0)
        interp = cv2.INTER_NEAREST if exact else cv2.INTER_CUBIC
        flags = interp | cv2.WARP_INVERSE_MAP
        a = encode(out[t, y0:y1, x0:x1], dtype)
        b = cv2.warpPerspective(encode(out[t + 1], dtype), M, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        labels = np.zeros(region.shape[1:], np.uint8)
        labels[~region[t + 1]] = 1
        labels[revealed[t + 1]] = 2
        labels[invented[t + 1]] = 3
        lb = cv2.warpPerspective(labels, M, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        # Nearest-label warps need room: require the same label in a 5x5 neighbourhood of the warp.
        k5 = np.ones((5, 5), np.uint8)
        la = np.zeros(size[::-1], np.uint8)
        r_t, rv_t, in_t = region[t, y0:y1, x0:x1], revealed[t, y0:y1, x0:x1], invented[t, y0:y1, x0:x1]
        la[~r_t], la[rv_t], la[in_t] = 1, 2, 3
        gain = 2.0
        if not exact:
            n1 = np.random.default_rng([t, 99]).standard_normal((H, W), dtype=np.float32)
            wn = cv2.warpPerspective(n1, M, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            gain = 1.0 + float(wn[5:-5, 5:-5].var()) if min(size) > 12 else 1.75
        d = a - b
        for code, name in ((1, "plate"), (2, "revealed"), (3, "invented")):
            same = cv2.erode(((la == code) & (lb == code)).view(np.uint8), k5) > 0
            if name == "plate":
                same &= ~(cv2.dilate(r_t.view(np.uint8), k5) > 0)
            if not exact:
                same = _quietest(d, same)
            if same.sum() >= 64:
                acc[name].append(d[same] / np.float32(math.sqrt(gain)))
        if exact:
            pl = (la == 1) & (lb == 1)
            both = pl[:, 1:] & pl[:, :-1]
            if both.sum() > 256:
                lag.append((d[:, 1:][both], d[:, :-1][both]))
    if not acc["plate"]:
        return None
    plate_cov = _robust_cov(np.concatenate(acc["plate"]))
    fill_cov = {name: _robust_cov(np.concatenate(acc[name])) for name in ("revealed", "invented")
                if sum(len(v) for v in acc[name]) >= 500}
    blur = 0.0
    if lag:
        a = np.concatenate([p[0] for p in lag]).ravel()
        b = np.concatenate([p[1] for p in lag]).ravel()
        keep = (np.abs(a) < 4 * _mad(a)) & (np.abs(b) < 4 * _mad(b))
        a, b = a[keep], b[keep]
        rho = float(np.corrcoef(a, b)[0, 1]) if len(a) > 256 and a.std() > 0 and b.std() > 0 else 0.0
        if rho > 0.1:  # Gaussian-blurred white noise: lag-1 correlation exp(-1 / (4 s^2))
            blur = math.sqrt(-1.0 / (4.0 * math.log(min(rho, 0.95))))
    return plate_cov, fill_cov, blur


def _quietest(d: np.ndarray, where: np.ndarray, share: float = 0.5, radius: int = 3) -> np.ndarray:
    """`where` narrowed to the `share` of its pixels whose neighbours (not themselves) differ least.

    After a subpixel warp the difference also holds detail that resampling cannot reproduce (the
    bicubic kernel; sampling and aliasing in the footage). On real plates it outweighs the noise:
    ~5x on a 3.5 px/frame pan of the lime sample (0.47 vs 0.10 from its whole-pixel pairs), and
    on the pillow sample pairs ~0.05 px from whole measured ~0 but 0.3-1.5 at 0.3-0.7 px. That
    residual sits where the plate has detail; noise is everywhere. Ranking by the neighbours only
    leaves each chosen pixel's own noise unbiased (white noise of variance 2.33 on a pan: 2.35).
    Falls back to `where` when too few pixels have a neighbourhood inside it.
    """
    m = where.astype(np.float32)
    dm = d - np.median(d[where], axis=0) if where.any() else d
    sq = (dm * dm).sum(axis=-1) * m
    k = (2 * radius + 1, 2 * radius + 1)
    num = cv2.boxFilter(sq, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT) - sq
    den = cv2.boxFilter(m, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT) - m
    ok = where & (den >= 0.75 * (k[0] * k[1] - 1))
    if ok.sum() < 256:
        return where
    loc = num / np.maximum(den, 1.0)
    return ok & (loc <= np.quantile(loc[ok], share))


_MAD_FLOOR = 0.5  # display-like code values: the least spread a difference of whole codes is given


def _mad(x: np.ndarray) -> float:
    """Robust spread (MAD scaled to a Gaussian's std), at least `_MAD_FLOOR`.

    A compressed plate repeats most blocks exactly from frame to frame: over half its differences are
    exactly 0, the MAD is 0, and a 4-MAD cut would throw away every difference that is not, so the
    plate would measure no noise at all and its fill would be left frozen (flicker 0.37x the truth's
    on the ball sample, measured before this floor).
    """
    return max(1.4826 * float(np.median(np.abs(x - np.median(x)))), _MAD_FLOOR)


def _robust_cov(d: np.ndarray) -> np.ndarray:
    """3x3 covariance of (n,3) rows after dropping rows beyond 4 MAD-sigmas (misaligned texture)."""
    d = d.astype(np.float64)
    ok = np.ones(len(d), bool)
    for c in range(3):
        ok &= np.abs(d[:, c] - np.median(d[:, c])) < 4 * _mad(d[:, c])
    d = d[ok] if ok.sum() > 32 else d
    return np.cov(d, rowvar=False) if len(d) > 1 else np.zeros((3, 3))
