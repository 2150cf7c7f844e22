"""Exemplar texture synthesis for background no frame reveals (PatchMatch + voting, Wexler et al. 2007).

Why: a diffusion inpaint (Telea) smears a never-revealed hole into a soft blob with a fraction of the
plate's texture. Multi-scale patch search copies real texture from the rest of the frame into it;
matching runs on a display-like encoding and PCA patch descriptors so it is fast at plate resolution.
`synthesize` is the entry point; `model.native_fill` calls it once per chunk and carries the result.
"""
from __future__ import annotations


import cv2
import numpy as np

_PCA_DIMS = 12
_DETAIL_SIGMA = 3.0
_FINE_SIGMA = 1.0  # the fine-detail band whose energy the fill is matched to its surround's in
_SURROUND_PX = 7  # how far outside the hole that surround reaches
_FINE_GAIN_MAX = 2.0  # at most this much amplitude added back: the rest is the hole not being like its surround
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
    out[hole] = _render(native, hole, nnf, weights, r)
    _match_fine_detail(out, hole)
    return out


def _match_fine_detail(img: np.ndarray, hole: np.ndarray) -> None:
    """Scale the hole's fine-detail band of `img` (in place) up to the energy of the band just outside it.

    Exemplar search favours smooth sources (a smooth estimate matches them best) and voting averages
    what is left: the invented fill had 0.55-0.66 of the truth's fine-detail energy on real and
    generated plates and read as a soft patch. The surround `_SURROUND_PX` px outside the hole is the
    best known guide to what belongs inside; the gain is capped (`_FINE_GAIN_MAX`) and ramps in from
    the outline, so the seam does not change.
    """
    k = 2 * _SURROUND_PX + 1
    surround = (cv2.dilate(hole.view(np.uint8), np.ones((k, k), np.uint8)) > 0) & ~hole
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


def _render(native: np.ndarray, hole: np.ndarray, nnf, weights: np.ndarray, r: int) -> np.ndarray:
    """Hole values from the final field: the vote's low frequencies, the best matches' detail, no seam.

    An even vote averages slightly misaligned copies, which blurs texture (0.4-0.7 of the truth's
    high-frequency energy on generated plates); each pixel's own match alone keeps detail but
    seams wherever neighbours match elsewhere (about 40% of pixels). So: even vote below
    `_DETAIL_SIGMA`, a vote dominated by the best-matching patches above it; then the mismatch
    between what the field predicts just outside the hole and what is there is spread smoothly
    over the hole (a membrane, as in seamless cloning), so the fill meets its surround.
    """
    full = native.copy()
    full[hole] = _vote(native, hole, nnf[0], nnf[1], weights, r)
    low = cv2.GaussianBlur(full, (0, 0), _DETAIL_SIGMA)
    detail = native - cv2.GaussianBlur(native, (0, 0), _DETAIL_SIGMA)
    values = low[hole] + _vote(detail, hole, nnf[0], nnf[1], weights ** 32, r)
    band = (cv2.dilate(hole.view(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~hole
    by, bx = np.nonzero(band)
    if len(by):
        mismatch = np.zeros_like(native)
        mismatch[by, bx] = native[by, bx] - _vote(native, band, nnf[0], nnf[1], weights, r)
        values += push_pull(mismatch, band.astype(np.float32))[hole]
    return values


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
