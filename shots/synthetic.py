"""Generated shots with a known clean plate: the ground truth the removal benches and tests need.

Real plates never come with the frames the camera would have seen without the object, so quality
(PSNR/SSIM inside the hole, flicker) can only be measured on scenes we render ourselves. A scene is a
procedural textured background seen by a camera (locked off, panning or handheld), a shaded disc
moving across it and the soft shadow the disc casts. `clean` is the same render without disc and
shadow, with the same film grain, so pixels the quadmask keeps (255) are identical in both.

Generation is vectorised and frame by frame into preallocated arrays (420 frames at 360x640 is
about 0.6 GB for plate + clean and takes a few seconds).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

KINDS = ("static", "pan", "handheld")

# Quadmask values (see DESIGN.md): remove, overlap of remove and affected, affected, keep.
REMOVE, OVERLAP, AFFECTED, KEEP = 0, 63, 127, 255


@dataclass
class Scene:
    """A generated shot: what the camera saw, what it would have seen, and the quadmask."""

    name: str
    plate: np.ndarray  # (T,H,W,3) uint8 RGB, object and shadow present
    clean: np.ndarray  # (T,H,W,3) uint8 RGB, ground truth without object and shadow
    quadmask: np.ndarray  # (T,H,W) uint8 in {0, 63, 127, 255}
    rate: Fraction
    camera: np.ndarray | None = None  # (T,2,3) affine: frame pixel -> background texture pixel

    @property
    def frames(self) -> int:
        return int(self.plate.shape[0])


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic float32 RGB texture in [0,255] with detail at every scale.

    Gradients + blobs + shapes + gratings + fine noise, slightly blurred like a lens would, so it
    is neither flat (too easy to inpaint) nor white noise (no camera sees that).
    """
    rng = np.random.default_rng(seed)
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    base = rng.uniform(70, 170, 3)
    gx, gy = rng.uniform(-60, 60, 3) / max(w, 1), rng.uniform(-60, 60, 3) / max(h, 1)
    for c in range(3):
        img[..., c] = base[c] + gx[c] * xx + gy[c] * yy
    # Low-frequency colour blobs.
    small = rng.normal(0, 28, (h // 48 + 3, w // 48 + 3, 3)).astype(np.float32)
    img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    # Gratings at random orientations: oriented structure that a blur cannot fake.
    for _ in range(3):
        theta, freq, amp = rng.uniform(0, np.pi), rng.uniform(0.04, 0.16), rng.uniform(5, 12)
        phase = (np.cos(theta) * xx + np.sin(theta) * yy) * (2 * np.pi * freq)
        img += (amp * np.sin(phase + rng.uniform(0, 2 * np.pi)))[..., None] * rng.uniform(0.5, 1, 3)
    # Hard-edged shapes (antialiased) of random colours.
    layer = img.copy()
    n_shapes = max(8, int(h * w / 3500))
    for _ in range(n_shapes):
        colour = tuple(float(v) for v in rng.uniform(20, 235, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(4, max(6, min(h, w) // 8)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(layer, (cx, cy), (cx + size, cy + int(size * rng.uniform(0.3, 1.5))), colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(layer, (cx, cy), size // 2, colour, -1, cv2.LINE_AA)
        else:
            end = (cx + int(rng.integers(-3 * size, 3 * size)), cy + int(rng.integers(-3 * size, 3 * size)))
            cv2.line(layer, (cx, cy), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    img = 0.35 * img + 0.65 * layer
    # Fine grain-like texture (fixed in the scene, unlike film grain).
    img += cv2.GaussianBlur(rng.normal(0, 14, (h, w, 3)).astype(np.float32), (0, 0), 0.9)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return np.clip(img, 0, 255)


def _camera_path(kind: str, frames: int, height: int, width: int, rng: np.random.Generator):
    """Per-frame affine frame->texture maps and the texture size they need."""
    t = np.arange(frames, dtype=np.float64)
    if kind == "static":
        tx, ty, rot = np.zeros(frames), np.zeros(frames), np.zeros(frames)
    elif kind == "pan":
        # Slow subpixel pan (about 1.3 px/frame) with a little vertical drift.
        speed = rng.uniform(1.1, 1.5)
        tx = speed * t
        ty = 6.0 * np.sin(2 * np.pi * t / max(frames, 1) * 0.5)
        rot = np.zeros(frames)
    elif kind == "handheld":
        # Smoothed random walk: a few px of drift and a fraction of a degree of roll.
        steps = rng.normal(0, 1.0, (frames, 3))
        walk = np.cumsum(steps, axis=0)
        kernel = np.ones(9) / 9
        walk = np.stack([np.convolve(np.pad(walk[:, i], 4, mode="edge"), kernel, "valid") for i in range(3)], 1)
        walk -= walk.mean(axis=0)
        scale = np.abs(walk).max(axis=0) + 1e-9
        tx = walk[:, 0] / scale[0] * 6.0
        ty = walk[:, 1] / scale[1] * 4.0
        rot = walk[:, 2] / scale[2] * np.deg2rad(0.6)
    else:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(KINDS)}")
    margin = 8 + int(np.ceil(0.01 * max(height, width)))  # rotation corners + interpolation support
    tx = tx - tx.min() + margin
    ty = ty - ty.min() + margin
    tex_w = int(np.ceil(tx.max())) + width + margin
    tex_h = int(np.ceil(ty.max())) + height + margin
    cx, cy = (width - 1) / 2, (height - 1) / 2
    cams = np.empty((frames, 2, 3), np.float64)
    cos, sin = np.cos(rot), np.sin(rot)
    # texture = R (p - c) + c + t
    cams[:, 0, 0], cams[:, 0, 1] = cos, -sin
    cams[:, 1, 0], cams[:, 1, 1] = sin, cos
    cams[:, 0, 2] = cx - cos * cx + sin * cy + tx
    cams[:, 1, 2] = cy - sin * cx - cos * cy + ty
    return cams, tex_h, tex_w


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    s = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return s * s * (3 - 2 * s)


def make_scene(
    kind: str,
    frames: int,
    height: int,
    width: int,
    seed: int = 0,
    *,
    grain: float = 1.0,
    rate: Fraction = Fraction(24000, 1001),
) -> Scene:
    """Render a `kind` scene ('static', 'pan', 'handheld') of `frames` frames at height x width.

    The disc crosses most of the frame, so every background pixel it or its shadow hides at one
    time is uncovered at another (on 'static' exactly; with camera motion nearly, as some of it
    leaves the frame). `grain` is the std of per-frame Gaussian film grain in code values, shared
    by plate and clean (0 gives noise-free renders).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(KINDS)}")
    if frames < 1 or height < 16 or width < 16:
        raise ValueError(f"scene too small: {frames} frames at {height}x{width}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    cams, tex_h, tex_w = _camera_path(kind, frames, height, width, rng)
    tex = texture(tex_h, tex_w, seed)

    plate = np.empty((frames, height, width, 3), np.uint8)
    clean = np.empty_like(plate)
    quadmask = np.full((frames, height, width), KEEP, np.uint8)

    # Object: a shaded disc on a left-to-right path with a gentle vertical wave.
    r = 0.09 * min(height, width)
    t = np.arange(frames) / max(frames - 1, 1)
    path_x = width * (0.16 + 0.66 * t)
    path_y = height * (0.45 + 0.12 * np.sin(2 * np.pi * t + rng.uniform(0, 2 * np.pi)))
    colour = rng.uniform(40, 230, 3).astype(np.float32)
    # Shadow: a soft ellipse offset down-right, up to `depth` darkening, zero outside (compact).
    sh_off = np.array([0.55 * r, 0.85 * r])
    sh_rad = np.array([1.15 * r, 0.55 * r])
    depth = 0.5
    dil = max(2, int(round(min(height, width) / 96)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dil + 1, 2 * dil + 1))
    pad = dil + 3

    identity = kind == "static"
    static_bg = None
    # Static renders sit at one integer texture offset; take that window once.
    if identity:
        ox, oy = int(round(cams[0, 0, 2])), int(round(cams[0, 1, 2]))
        static_bg = np.ascontiguousarray(tex[oy : oy + height, ox : ox + width])
    for i in range(frames):
        if identity:
            bg = static_bg
        else:
            bg = cv2.warpAffine(tex, cams[i], (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
        noise = rng.standard_normal((height, width, 3), dtype=np.float32) * grain if grain > 0 else 0.0
        clean_f = bg + noise
        clean[i] = np.clip(np.rint(clean_f), 0, 255)

        # Everything object-related happens inside the bounding box of disc + shadow.
        cx, cy = path_x[i], path_y[i]
        x0 = int(max(0, np.floor(min(cx - r, cx + sh_off[0] - sh_rad[0]) - pad)))
        x1 = int(min(width, np.ceil(max(cx + r, cx + sh_off[0] + sh_rad[0]) + pad + 1)))
        y0 = int(max(0, np.floor(min(cy - r, cy + sh_off[1] - sh_rad[1]) - pad)))
        y1 = int(min(height, np.ceil(max(cy + r, cy + sh_off[1] + sh_rad[1]) + pad + 1)))
        plate[i] = clean[i]
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dist = np.hypot(xx - cx, yy - cy)
        a_obj = np.clip(r - dist + 0.5, 0.0, 1.0)  # 1 px antialiased edge
        ell = np.hypot((xx - cx - sh_off[0]) / sh_rad[0], (yy - cy - sh_off[1]) / sh_rad[1])
        a_sh = depth * (1.0 - _smoothstep(0.55, 1.0, ell))
        # Disc shading: lit from the top left, so it reads as a ball and not a flat sticker.
        shade = np.clip(1.15 - 0.45 * np.hypot(xx - cx + 0.35 * r, yy - cy + 0.35 * r) / r, 0.45, 1.2)
        obj = colour * shade[..., None]
        region = bg[y0:y1, x0:x1] * (1.0 - a_sh)[..., None]
        region = region * (1.0 - a_obj)[..., None] + obj * a_obj[..., None]
        if grain > 0:
            region = region + noise[y0:y1, x0:x1]
        touched = (a_obj > 0) | (a_sh > 0)
        rendered = np.clip(np.rint(region), 0, 255).astype(np.uint8)
        plate[i, y0:y1, x0:x1] = np.where(touched[..., None], rendered, clean[i, y0:y1, x0:x1])

        m_obj = cv2.dilate((a_obj > 0).astype(np.uint8), kernel) > 0
        m_sh = cv2.dilate((a_sh > 0).astype(np.uint8), kernel) > 0
        q = np.full(m_obj.shape, KEEP, np.uint8)
        q[m_sh] = AFFECTED
        q[m_obj] = REMOVE
        q[m_obj & m_sh] = OVERLAP
        quadmask[i, y0:y1, x0:x1] = q
    return Scene(name=f"{kind}_{frames}x{height}x{width}_s{seed}", plate=plate, clean=clean,
                 quadmask=quadmask, rate=rate, camera=cams.astype(np.float32))

