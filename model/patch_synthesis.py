"""Background no frame reveals: smooth structure plus the plate's own fine texture (Bertalmio et al. 2003).

Why: what was never seen cannot be predicted, so the fill's broad shape should be the expected one,
which is smooth: transport along the surround's isophotes (coherence transport, Bornemann and
Maerz 2007), so stripes and folds run on through the hole, blended with push-pull interpolation. A
smooth fill alone reads as a soft blob, and copying whole exemplars (PatchMatch + voting, Wexler et
al. 2007) invented wrong structure: edges and highlights where there were none, a blob with an
outline (bench/quality_real.py still intruders: 1.6-4.0 dB under this fill, seams up to 1.35x the
plate's). So exemplars give only the finest band, scaled to the surround's energy. Matching runs on a
display-like encoding and PCA patch descriptors so it is fast at plate resolution. `synthesize` is
the entry point; `model.native_fill` calls it once per chunk and carries the result.
"""
from __future__ import annotations


import cv2
import numpy as np

_PCA_DIMS = 12
_FINE_SIGMA = 1.0  # the fine-detail band whose energy the fill is matched to its surround's in
_SURROUND_PX = 7  # how far outside the hole that surround reaches
_FINE_GAIN_MAX = 4.0  # at most this much amplitude: beyond it the band is not there to scale
_FINE_RAMP_PX = 3.0  # the gain rises from 1 at the outline to full this far inside: no edge at the seam


def synthesize(native: np.ndarray, work: np.ndarray, hole: np.ndarray, patch: int,
                rng: np.random.Generator) -> np.ndarray:
    """`native` (h,w,3) float32 with `hole` pixels replaced by texture found elsewhere in it (matched on `work`)."""
    r = patch // 2
    levels = 0
    ys, xs = np.nonzero(hole)
    extent = int(max(np.ptp(ys), np.ptp(xs))) + 1
    while extent / 2 ** (levels + 1) >= 2 * patch and min(hole.shape) / 2 ** (levels + 1) >= 4 * patch:
        levels += 1
    pyramid = [(work, hole)]
    for _ in range(levels):
        pyramid.append(_half(*pyramid[-1]))
    nnf = weights = None
    for lv in range(levels, -1, -1):
        img, hl = pyramid[lv]
        known = ~hl
        src_ok = cv2.erode(known.view(np.uint8), np.ones((patch, patch), np.uint8), borderType=cv2.BORDER_CONSTANT,
                           borderValue=0) > 0
        if src_ok.sum() < 4:  # nothing whole to copy from: smooth fill
            out = native.copy()
            out[hole] = push_pull(native, (~hole).astype(np.float32))[hole]
            return out
        tgt = cv2.dilate(hl.view(np.uint8), np.ones((patch, patch), np.uint8)) > 0
        basis = _pca_basis(img, src_ok, patch, rng)
        src_desc = _describe_patches(img, basis, None)
        sy, sx = np.nonzero(src_ok)
        ty, tx = np.nonzero(tgt)
        grid_y = np.full(hl.shape, -1, np.int32)
        grid_x = np.full(hl.shape, -1, np.int32)
        est = img.copy()
        if nnf is None:  # coarsest level: smooth start, random field
            est[hl] = push_pull(img, known.astype(np.float32))[hl]
            pick = rng.integers(0, len(sy), len(ty))
            ny, nx = sy[pick], sx[pick]
        else:  # finer level: the coarser field, doubled, makes the first estimate
            ny, nx = _upsample_nnf(nnf, ty, tx, src_ok, sy, sx, rng)
            grid_y[ty, tx], grid_x[ty, tx] = ny, nx
            est[hl] = _vote(img, hl, grid_y, grid_x, None, r)
        box = (max(0, ty.min() - r), min(hl.shape[0], ty.max() + r + 1),
               max(0, tx.min() - r), min(hl.shape[1], tx.max() + r + 1))
        rounds = 2 if lv == 0 else (3 if lv == 1 else 5)
        for _ in range(rounds):
            tdesc = _describe_patches(est, basis, box)[ty - box[0], tx - box[2]]
            ny, nx, dist = _patchmatch(tdesc, src_desc, ty, tx, ny, nx, src_ok, hl.shape, rng,
                                       iters=2 if lv == 0 else 3)
            grid_y[ty, tx], grid_x[ty, tx] = ny, nx
            weights = np.zeros(hl.shape, np.float32)
            weights[ty, tx] = np.exp(-(dist - dist.min()) / (2 * np.percentile(dist - dist.min(), 75) + 1e-6))
            est[hl] = _vote(img, hl, grid_y, grid_x, weights, r)
        nnf = (grid_y, grid_x)
    out = native.copy()
    out[hole] = _render(native, work, hole, nnf)
    _match_fine_detail(out, hole)
    return out


def _match_fine_detail(img: np.ndarray, hole: np.ndarray) -> None:
    """Scale the hole's fine-detail band of `img` (in place) up to the energy of the band just outside it.

    Exemplar search favours smooth sources (a smooth estimate matches them best): the matches' finest
    band had 0.1-0.6 of the surround's energy (generated plates, tests) and the fill read as a soft
    patch. The surround `_SURROUND_PX` px outside the hole is the
    best known guide to what belongs inside; the gain is capped (`_FINE_GAIN_MAX`) and ramps in from
    the outline, so the seam does not change.
    """
    surround = _surround(hole)
    inner = cv2.erode(hole.view(np.uint8), np.ones((5, 5), np.uint8)) > 0  # the band's reach stays inside
    if not surround.any() or not inner.any():
        return
    depth = cv2.distanceTransform(hole.view(np.uint8), cv2.DIST_L2, 3)[hole]
    ramp = np.clip((depth - 0.5) / _FINE_RAMP_PX, 0.0, 1.0)[:, None]
    total = 1.0
    for _ in range(3):  # the band of a scaled band is not the scaled band: measure again, twice more
        fine = img - cv2.GaussianBlur(img, (0, 0), _FINE_SIGMA)
        want, have = float(np.mean(fine[surround] ** 2)), float(np.mean(fine[inner] ** 2))
        if have <= 1e-12 or want <= 1.02 * have or total >= _FINE_GAIN_MAX:
            return
        gain = min(_FINE_GAIN_MAX / total, (want / have) ** 0.5)
        img[hole] += (gain - 1.0) * ramp * fine[hole]
        total *= gain


def _surround(hole: np.ndarray) -> np.ndarray:
    """Known pixels within `_SURROUND_PX` px of the hole: the guide to its orientation and fine-detail energy."""
    k = 2 * _SURROUND_PX + 1
    return (cv2.dilate(hole.view(np.uint8), np.ones((k, k), np.uint8)) > 0) & ~hole


def _render(native: np.ndarray, work: np.ndarray, hole: np.ndarray, nnf) -> np.ndarray:
    """Hole values from the final field: smooth structure, plus the finest band of each pixel's own match.

    Own matches, not a vote: votes average slightly misaligned copies, which left 0.1 of the
    surround's fine-detail energy; where neighbours match elsewhere the band's seams are as fine as
    the band itself.
    """
    fine = native - cv2.GaussianBlur(native, (0, 0), _FINE_SIGMA)
    ys, xs = np.nonzero(hole)
    return structure(native, work, hole)[hole] + fine[nnf[0][ys, xs], nnf[1][ys, xs]]


def structure(native: np.ndarray, work: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`native` (h,w,c) float32 with `hole` filled smoothly: isophote transport and push-pull, blended.

    Transport carries stripes, grain lines and folds through the hole; push-pull is the better guess
    inside random texture. The blend weight of transport is the surround's coherence (how much one
    orientation dominates its structure tensor, 0..1), clipped to 0.25..0.75. On single frames of
    three still-intruder clips (wood, cloth folds, generated shapes; coherence 0.71, 0.72, 0.43),
    PSNR over Telea: push-pull +2.3/-1.6/+1.7 dB, transport +3.8/+3.4/+1.3; in
    bench/quality_real.py, the whole fill with this blend: +2.9/+2.8/+1.5.
    """
    direction, coherence = _surround_orientation(work, hole)
    weight = float(np.clip(coherence, 0.25, 0.75))
    smooth = push_pull(native, (~hole).astype(np.float32))
    return weight * _transport(native, hole, direction, smooth) + (1.0 - weight) * smooth


def _surround_orientation(work: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, float]:
    """(isophote angle per pixel, interpolated into the hole; mean coherence of the surround) from `work`."""
    gray = work.mean(axis=2) if work.ndim == 3 else work
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    surround = _surround(hole)
    products = np.stack([gx * gx, gx * gy, gy * gy], axis=-1)
    if not surround.any():
        return np.zeros(hole.shape, np.float32), 0.0
    tensor = push_pull(products, surround.astype(np.float32))
    jxx, jxy, jyy = tensor[..., 0], tensor[..., 1], tensor[..., 2]
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2  # along the isophote, across the gradient
    local = cv2.GaussianBlur(products, (0, 0), 4.0)[surround]
    lxx, lxy, lyy = local[:, 0], local[:, 1], local[:, 2]
    coherence = np.sqrt((lxx - lyy) ** 2 + 4 * lxy ** 2) / (lxx + lyy + 1e-6)
    return theta, float(coherence.mean())


def _transport(native: np.ndarray, hole: np.ndarray, theta: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Each hole pixel from the nearest known pixels on both sides along the isophote angle `theta`.

    Values are read from `native` lightly blurred (one pixel's grain is not structure) and weighted
    by inverse distance; where neither side reaches known background, `fallback` stands.
    """
    h, w = hole.shape
    ys, xs = np.nonzero(hole)
    dx, dy = np.cos(theta[ys, xs]), np.sin(theta[ys, xs])
    source = cv2.GaussianBlur(native, (0, 0), 1.5).reshape(h, w, -1)
    acc = np.zeros((len(ys), source.shape[2]), np.float32)
    wsum = np.zeros(len(ys), np.float32)
    for sign in (1.0, -1.0):
        todo = np.ones(len(ys), bool)
        for step in range(1, h + w):
            idx = np.flatnonzero(todo)
            if not len(idx):
                break
            px = np.rint(xs[idx] + sign * step * dx[idx]).astype(np.int64)
            py = np.rint(ys[idx] + sign * step * dy[idx]).astype(np.int64)
            inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
            todo[idx[~inside]] = False  # left the crop: no background on this side
            idx, px, py = idx[inside], px[inside], py[inside]
            hit = ~hole[py, px]
            idx, px, py = idx[hit], px[hit], py[hit]
            acc[idx] += source[py, px] / step
            wsum[idx] += 1.0 / step
            todo[idx] = False
    out = fallback.copy()
    got = wsum > 0
    out.reshape(h, w, -1)[ys[got], xs[got]] = acc[got] / wsum[got, None]
    return out


def _half(img: np.ndarray, hole: np.ndarray):
    """2x2 block average of known pixels; a block with any hole pixel is hole."""
    h, w = hole.shape
    ph, pw = h % 2, w % 2
    known = (~hole).astype(np.float32)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
        known = np.pad(known, ((0, ph), (0, pw)), mode="edge")
    H2, W2 = (h + ph) // 2, (w + pw) // 2
    kb = known.reshape(H2, 2, W2, 2)
    v = (img * known[..., None]).reshape(H2, 2, W2, 2, -1).sum(axis=(1, 3))
    k = kb.sum(axis=(1, 3))
    small = v / np.maximum(k, 1e-6)[..., None]
    return small.astype(np.float32), k < 4


def _pca_basis(img: np.ndarray, src_ok: np.ndarray, patch: int, rng: np.random.Generator) -> np.ndarray:
    """(k, patch, patch, 3) principal patch directions of the known texture."""
    r = patch // 2
    sy, sx = np.nonzero(src_ok)
    pick = rng.choice(len(sy), size=min(len(sy), 2000), replace=False)
    offs = np.arange(-r, r + 1)
    py = sy[pick][:, None, None] + offs[None, :, None]
    px = sx[pick][:, None, None] + offs[None, None, :]
    patches = img[py, px].reshape(len(pick), -1)
    patches = patches.astype(np.float64)
    patches -= patches.mean(axis=0)
    _, vecs = np.linalg.eigh(patches.T @ patches)  # ascending; a small symmetric matrix, cheaper than an SVD
    k = min(_PCA_DIMS, vecs.shape[1])
    basis = vecs[:, ::-1][:, :k].T.reshape(k, patch, patch, 3).astype(np.float32)
    # Keep the mean colour term strong: a flat patch of the wrong colour must not match.
    return basis


def _describe_patches(img: np.ndarray, basis: np.ndarray, box) -> np.ndarray:
    """(h,w,k) projections of every patch of `img` (or of its `box` = y0,y1,x0,x1) on `basis`."""
    if box is not None:
        r = basis.shape[1] // 2
        y0, y1, x0, x1 = box
        Y0, X0 = max(0, y0 - r), max(0, x0 - r)
        sub = img[Y0:min(img.shape[0], y1 + r), X0:min(img.shape[1], x1 + r)]
        d = _describe_patches(sub, basis, None)
        return d[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0]
    h, w = img.shape[:2]
    k = basis.shape[0]
    out = np.empty((h, w, k), np.float32)
    chans = [np.ascontiguousarray(img[..., c]) for c in range(3)]
    for i in range(k):
        acc = cv2.filter2D(chans[0], cv2.CV_32F, basis[i, ..., 0], borderType=cv2.BORDER_REFLECT)
        acc += cv2.filter2D(chans[1], cv2.CV_32F, basis[i, ..., 1], borderType=cv2.BORDER_REFLECT)
        acc += cv2.filter2D(chans[2], cv2.CV_32F, basis[i, ..., 2], borderType=cv2.BORDER_REFLECT)
        out[..., i] = acc
    return out


def _patchmatch(tdesc, src_desc, ty, tx, ny, nx, src_ok, shape, rng, iters):
    """Improve the field (ny, nx) for targets (ty, tx): jump-flood propagation and random search."""
    h, w = shape

    def cost(cy, cx):
        d = tdesc - src_desc[cy, cx]
        return np.einsum("ij,ij->i", d, d)

    dist = cost(ny, nx)
    gy = np.full(shape, -1, np.int32)
    gx = np.full(shape, -1, np.int32)
    radius0 = max(h, w)
    for it in range(iters):
        gy[ty, tx], gx[ty, tx] = ny, nx
        for step in (8, 4, 2, 1):
            for dy, dx in ((0, step), (0, -step), (step, 0), (-step, 0)):
                qy, qx = ty + dy, tx + dx
                inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
                qy, qx = np.clip(qy, 0, h - 1), np.clip(qx, 0, w - 1)
                cy, cx = gy[qy, qx] - dy, gx[qy, qx] - dx
                ok = inside & (gy[qy, qx] >= 0) & (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
                cy, cx = np.clip(cy, 0, h - 1), np.clip(cx, 0, w - 1)
                ok &= src_ok[cy, cx]
                if not ok.any():
                    continue
                c = cost(cy, cx)
                better = ok & (c < dist)
                ny, nx, dist = np.where(better, cy, ny), np.where(better, cx, nx), np.where(better, c, dist)
            gy[ty, tx], gx[ty, tx] = ny, nx
        radius = radius0
        while radius >= 1:
            cy = np.clip(ny + rng.integers(-radius, radius + 1, len(ny)), 0, h - 1)
            cx = np.clip(nx + rng.integers(-radius, radius + 1, len(nx)), 0, w - 1)
            ok = src_ok[cy, cx]
            c = cost(cy, cx)
            better = ok & (c < dist)
            ny, nx, dist = np.where(better, cy, ny), np.where(better, cx, nx), np.where(better, c, dist)
            radius //= 2
    return ny, nx, dist


def _upsample_nnf(nnf, ty, tx, src_ok, sy, sx, rng):
    """A coarse field read at the finer level: offsets doubled; invalid sources become random ones."""
    cy_grid, cx_grid = nnf
    h, w = src_ok.shape
    qy = np.minimum(ty // 2, cy_grid.shape[0] - 1)
    qx = np.minimum(tx // 2, cy_grid.shape[1] - 1)
    by, bx = cy_grid[qy, qx], cx_grid[qy, qx]
    ny = 2 * by + (ty - 2 * qy)
    nx = 2 * bx + (tx - 2 * qx)
    ok = (by >= 0) & (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    ny, nx = np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1)
    ok &= src_ok[ny, nx]
    if not ok.all():
        pick = rng.integers(0, len(sy), int((~ok).sum()))
        ny[~ok], nx[~ok] = sy[pick], sx[pick]
    return ny, nx


def _vote(img, hole, grid_y, grid_x, weights, r):
    """Each hole pixel: weighted mean of what the patches covering it copy there."""
    h, w = hole.shape
    hy, hx = np.nonzero(hole)
    acc = np.zeros((len(hy), img.shape[2]), np.float32)
    wsum = np.zeros(len(hy), np.float32)
    for dy in range(-r, r + 1):
        py = hy - dy
        iny = (py >= 0) & (py < h)
        py = np.clip(py, 0, h - 1)
        for dx in range(-r, r + 1):
            px = hx - dx
            ok = iny & (px >= 0) & (px < w)
            px = np.clip(px, 0, w - 1)
            sy = grid_y[py, px]
            ok &= sy >= 0
            wt = ok.astype(np.float32) if weights is None else np.where(ok, weights[py, px], 0).astype(np.float32)
            sy = np.clip(sy + dy, 0, h - 1)
            sx = np.clip(grid_x[py, px] + dx, 0, w - 1)
            acc += wt[:, None] * img[sy, sx]
            wsum += wt
    return acc / np.maximum(wsum, 1e-12)[:, None]


def push_pull(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill (h,w,c) `values` where `weight` is 0 by a smooth weighted interpolation from where it is not."""
    vals = [values * weight[..., None]]
    ws = [weight.astype(np.float32)]
    while min(ws[-1].shape) > 2:
        h, w = ws[-1].shape
        size = ((w + 1) // 2, (h + 1) // 2)
        vals.append(cv2.resize(vals[-1], size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1))
        ws.append(cv2.resize(ws[-1], size, interpolation=cv2.INTER_AREA))
    est = vals[-1] / np.maximum(ws[-1], 1e-6)[..., None]
    for lv in range(len(ws) - 2, -1, -1):
        h, w = ws[lv].shape
        up = cv2.resize(est, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        a = np.clip(ws[lv] * 4, 0, 1)[..., None]  # a quarter of the block known is enough to trust it
        est = a * (vals[lv] / np.maximum(ws[lv], 1e-6)[..., None]) + (1 - a) * up
    return est.astype(np.float32)
