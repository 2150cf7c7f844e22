"""Warped noise for VOID pass 2: Gaussian, unit-variance latent noise that moves with the video.

Pass 2 starts its sampler from noise that follows the motion of the pass-1 result ("Go-with-the-Flow"
noise), so that what the model invents in the hole sticks to the scene instead of boiling. The noise must
still look like what the sampler expects at t=T: i.i.d. N(0, 1) in every latent frame.

How it is built here (an own design, written from the behaviour described in `reference/void_inference.md`
section 4 and the fixes listed in section 7.4; nothing is taken from the reference's `make_warped_noise.py`):

1. A *fine* noise field at pixel resolution (the model's own H x W, 8x the latent grid, no crop), one
   N(0, 1) value per pixel and channel, drawn from the caller's generator.
2. Every pixel's value is a particle with a sub-pixel position. Each frame step moves every particle by the
   forward optical flow at its cell and re-bins it to the nearest pixel. Particles that land in the same
   pixel are merged into one with value `sum / sqrt(k)`; pixels that receive none (disocclusions, content
   entering the frame, stretching) get a fresh N(0, 1) draw; particles that leave the frame are dropped.
   The fractional positions are kept, so slow motion (0.3 px per frame) accumulates instead of rounding
   away to a frozen field.
   Because every pixel of the new field is the normalised sum of a *disjoint* set of independent N(0, 1)
   values, or a fresh one, the field stays exactly i.i.d. N(0, 1) after any number of steps, whatever the
   flow: no regaussianisation or variance bookkeeping is needed, and nothing drifts.
3. Latent frame k is read from pixel frame 4k (frame 0, then the last frame of each group of four the VAE
   folds into one latent; the same as a linspace subsampling of the 4k+1 frames, as training did), with a
   variance-preserving 8x8 pool: the block sum divided by 8 (= average x 8), which maps i.i.d. N(0, 1)
   pixels to i.i.d. N(0, 1) latent pixels.
4. Optionally (default on) each latent frame is re-normalised to mean 0, std 1 over all its values, a
   safety net that also removes the finite-sample wobble of very small frames.

Deliberate differences from the reference (section 4.2-4.3, 7.4): the reference resamples the clip to 72
frames, centre-crops 480x720 (misaligning the noise by ~48 px per side and stretching it 0.857x), reads out
60x90 and bilinearly resizes to 48x84, which leaves std ~0.66; its 22 latent frames only fit an 85-frame
clip, and its initial noise is unseeded. Here the noise covers every latent frame of any 8m+5 chunk at the
model's own geometry, has std 1, and is a pure function of (flows, generator seed).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TEMPORAL_FACTOR = 4  # CogVideoX VAE: latent 0 <- frame 0, latent k <- frames 4k-3..4k
SPATIAL_FACTOR = 8


def latent_source_frames(num_frames: int, temporal_factor: int = TEMPORAL_FACTOR) -> list[int]:
    """Pixel frames whose noise becomes latent frames 0..T_lat-1: 0, 4, 8, ..., num_frames - 1."""
    if num_frames < 1 or (num_frames - 1) % temporal_factor:
        raise ValueError(f"num_frames must be {temporal_factor}k+1 (VOID chunks are 8m+5), got {num_frames}")
    return list(range(0, num_frames, temporal_factor))


class NoiseWarper:
    """The fine noise field and its particles' sub-pixel offsets; `step(flow)` moves them one frame.

    Args:
        channels: noise channels (16 for VOID's latents).
        height, width: the fine grid, i.e. the flow's (and the model's) pixel resolution.
        generator: a CPU `torch.Generator`; every draw (the first field, each fresh pixel) comes from it in a
            fixed order, so the result depends only on the seed and the flows.
        device: where the field lives. The default CPU is deterministic; on CUDA the merge sums run in
            float64 with atomics, which is deterministic in practice (sums of a few float32 values are exact
            in float64) but not guaranteed.
        relocate: move surplus particles of crowded cells into empty neighbours (see `_relocate`) instead of
            merging them; off gives the plain merge/fresh scheme (for comparison).
    """

    def __init__(self, channels: int, height: int, width: int, generator: torch.Generator | None,
                 device: torch.device | str = "cpu", relocate: bool = True):
        self.channels, self.height, self.width = int(channels), int(height), int(width)
        self.relocate = relocate
        self.generator = generator
        self.device = torch.device(device)
        n = self.height * self.width
        # Pixel-major (H*W, C): a merge adds whole rows of C values. Sums are exact enough in float32 on the
        # CPU (sequential, so deterministic); CUDA atomics add in any order, so there they run in float64.
        self._acc_dtype = torch.float64 if self.device.type == "cuda" else torch.float32
        self.values = self._randn(self.channels, n).T.contiguous()  # (H*W, C)
        self.offsets = torch.zeros(n, 2, device=self.device)  # (dx, dy) in [-0.5, 0.5)
        ys, xs = torch.meshgrid(torch.arange(self.height, device=self.device, dtype=torch.float32),
                                torch.arange(self.width, device=self.device, dtype=torch.float32), indexing="ij")
        self._xs, self._ys = xs.reshape(-1), ys.reshape(-1)
        self.last_fresh_fraction = 1.0  # share of pixels drawn fresh in the last step (diagnostics)
        self.last_merged_fraction = 0.0  # share of pixels holding merged particles

    def _randn(self, *shape: int) -> torch.Tensor:
        # Drawn on the CPU so a given seed gives the same numbers whatever device the field lives on.
        return torch.randn(*shape, generator=self.generator, dtype=torch.float32).to(self.device)

    @property
    def field(self) -> torch.Tensor:
        """The current fine noise `(C, H, W)` float32."""
        return self.values.T.reshape(self.channels, self.height, self.width)

    def step(self, flow: torch.Tensor) -> None:
        """Advect the particles by `flow` `(2, H, W)`: channel 0 = dx, 1 = dy in pixels (RAFT's layout)."""
        if tuple(flow.shape) != (2, self.height, self.width):
            raise ValueError(f"flow must be (2, {self.height}, {self.width}), got {tuple(flow.shape)}")
        n = self.height * self.width
        flow = flow.to(self.device, torch.float32).reshape(2, n)
        # Moves relative to the particle's own cell: particles in the same sub-pixel phase stay in exactly the
        # same phase (x + offset + flow in absolute pixels would round differently across the frame).
        dx, dy = self.offsets[:, 0] + flow[0], self.offsets[:, 1] + flow[1]
        sx, sy = torch.floor(dx + 0.5), torch.floor(dy + 0.5)
        tx, ty = self._xs + sx, self._ys + sy
        inside = (tx >= 0) & (tx < self.width) & (ty >= 0) & (ty < self.height)
        # Particles that leave the frame go to a spare cell n, dropped at the end.
        target = torch.where(inside, ty * self.width + tx, float(n)).long()
        offsets = torch.stack([dx - sx, dy - sy], 1)
        if self.relocate:
            target, offsets = self._relocate(target, offsets, dx, dy)
        count = torch.bincount(target, minlength=n + 1)[:n]
        acc = self._acc_dtype
        sums = torch.zeros(n + 1, self.channels, dtype=acc, device=self.device)
        sums.index_add_(0, target, self.values.to(acc))
        offs = torch.zeros(n + 1, 2, dtype=acc, device=self.device)
        offs.index_add_(0, target, offsets.to(acc))
        k = count.clamp(min=1).to(acc)[:, None]
        values = (sums[:n] * k.rsqrt()).float()  # sum of k i.i.d. N(0,1) / sqrt(k): N(0,1) again
        offsets = (offs[:n] * k.reciprocal()).float()
        holes = torch.nonzero(count == 0).squeeze(1)
        if holes.numel():
            values[holes] = self._randn(holes.numel(), self.channels)
            offsets[holes] = self._neighbour_offsets(offsets, count > 0, holes)
        self.values, self.offsets = values, offsets
        self.last_fresh_fraction = holes.numel() / n
        self.last_merged_fraction = float((count > 1).sum()) / n

    def _neighbour_offsets(self, offsets: torch.Tensor, occupied: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """`(len(cells), 2)`: the mean sub-pixel offset of the occupied 8-neighbours of each of `cells` (0: none).

        A fresh particle takes the phase of the particles around it, so that under a uniform sub-pixel motion
        the content entering the frame moves in step with its neighbours instead of colliding with them.
        """
        cy, cx = cells // self.width, cells % self.width
        total = torch.zeros(cells.numel(), 2, dtype=torch.float64, device=self.device)
        weight = torch.zeros(cells.numel(), 1, dtype=torch.float64, device=self.device)
        for step_y, step_x in self._NEIGHBOURS:
            ny, nx = cy + step_y, cx + step_x
            ok = (ny >= 0) & (ny < self.height) & (nx >= 0) & (nx < self.width)
            nb = torch.where(ok, ny * self.width + nx, 0)
            use = (ok & occupied[nb]).double()[:, None]
            total += offsets[nb].double() * use  # float64: a mean of equal offsets comes back exactly equal
            weight += use
        return (total / weight.clamp(min=1)).float()

    # 4-neighbours first, then diagonals: (dy, dx) from a hole to the crowded cell it borrows from.
    _NEIGHBOURS = ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))

    def _relocate(self, target: torch.Tensor, offsets: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor):
        """Move surplus particles of crowded cells into empty neighbour cells instead of merging them.

        Under rotation, shear or any non-uniform motion, re-binning leaves a crowded cell next to an empty one
        (about 20% of cells per step at a few degrees of rotation); merging both particles and drawing the
        empty cell fresh would throw away that much correlation every frame. Each crowded cell keeps the
        particle nearest its centre; its others fill empty neighbours (one each, decided from positions only,
        never values, so cells still hold disjoint sets of particles and the field stays i.i.d. N(0, 1)). A
        moved particle's recorded offset is clamped to its new cell (a sub-pixel position error, < 1 px).
        """
        n = self.height * self.width
        dist = offsets.square().sum(1).sqrt()  # <= 0.71, so target + dist/2 sorts by cell, then by distance
        order = torch.argsort(target.double() + 0.5 * dist.double(), stable=True)
        count = torch.bincount(target, minlength=n + 1)
        first = torch.cumsum(count, 0) - count  # index in `order` of each cell's first (kept) particle
        taken = torch.zeros(n + 1, dtype=torch.long, device=self.device)
        hole = count[:n] == 0
        if not hole.any() or not bool((count[:n] > 1).any()):
            return target, offsets
        target, offsets = target.clone(), offsets.clone()
        for step_y, step_x in self._NEIGHBOURS:
            cells = torch.nonzero(hole).squeeze(1)
            if not cells.numel():
                break
            hy, hx = cells // self.width + step_y, cells % self.width + step_x
            ok = (hy >= 0) & (hy < self.height) & (hx >= 0) & (hx < self.width)
            cells, nb = cells[ok], (hy * self.width + hx)[ok]
            spare = count[nb] - 1 - taken[nb] > 0
            cells, nb = cells[spare], nb[spare]
            if not cells.numel():
                continue
            moved = order[first[nb] + 1 + taken[nb]]  # one hole per crowded cell per direction: no conflicts
            taken[nb] += 1
            target[moved] = cells
            hole[cells] = False
            # position - new cell centre = (old cell - new cell) + move
            ox = self._xs[moved] - (cells % self.width).float() + dx[moved]
            oy = self._ys[moved] - (cells // self.width).float() + dy[moved]
            offsets[moved] = torch.stack([ox, oy], 1).clamp(-0.49, 0.49)
        return target, offsets

def pool_to_latent(field: torch.Tensor, factor: int = SPATIAL_FACTOR) -> torch.Tensor:
    """Variance-preserving `factor` x `factor` pooling: block sum / factor (i.i.d. N(0,1) stays N(0,1))."""
    if field.shape[-1] % factor or field.shape[-2] % factor:
        raise ValueError(f"noise field {tuple(field.shape[-2:])} is not a multiple of {factor}")
    return F.avg_pool2d(field, factor) * factor


def renormalize(noise: torch.Tensor) -> torch.Tensor:
    """Each latent frame (all channels and pixels of `noise[..., t, :, :, :]`) to mean 0, std 1."""
    flat = noise.flatten(-3)
    mean = flat.mean(-1, keepdim=True)
    std = flat.std(-1, keepdim=True).clamp(min=1e-6)
    return ((flat - mean) / std).view_as(noise)


def warp_noise(flows: torch.Tensor, num_frames: int, channels: int, generator: torch.Generator | None,
               stride: int = 1, spatial_factor: int = SPATIAL_FACTOR, temporal_factor: int = TEMPORAL_FACTOR,
               normalize: bool = True, device: torch.device | str = "cpu", relocate: bool = True) -> torch.Tensor:
    """Warped noise `(T_lat, channels, H/8, W/8)` float32 for a clip of `num_frames` (4k+1) frames.

    Args:
        flows: forward flows `(P, 2, H, W)` between frames `i*stride` and `(i+1)*stride`,
            P = (num_frames - 1) / stride, at the model's pixel resolution.
        stride: frames between flow pairs; 1, 2 or 4 (it must divide the temporal factor so that every
            latent's source frame 4k is visited).
        normalize: re-normalise each latent frame to mean 0, std 1 (see the module docstring, step 4).
        device, relocate: see `NoiseWarper`.
    """
    frames = latent_source_frames(num_frames, temporal_factor)
    if stride < 1 or temporal_factor % stride:
        raise ValueError(f"flow stride must divide {temporal_factor} (1, 2 or 4), got {stride}")
    pairs = (num_frames - 1) // stride
    if flows.ndim != 4 or flows.shape[0] != pairs or flows.shape[1] != 2:
        raise ValueError(f"expected {pairs} flows (2, H, W) for {num_frames} frames at stride {stride}, "
                         f"got {tuple(flows.shape)}")
    height, width = flows.shape[-2:]
    warper = NoiseWarper(channels, height, width, generator, device, relocate=relocate)
    out = [pool_to_latent(warper.field, spatial_factor)]
    for i in range(pairs):
        warper.step(flows[i])
        if ((i + 1) * stride) in frames[1:]:
            out.append(pool_to_latent(warper.field, spatial_factor))
    noise = torch.stack(out).cpu()
    return renormalize(noise) if normalize else noise


# --- motion fields with a known answer (tests, bench) ---------------------------------------------------------

def translation_flow(height: int, width: int, dx: float, dy: float) -> torch.Tensor:
    """`(2, H, W)` flow of a uniform translation by (dx, dy) pixels."""
    return torch.stack([torch.full((height, width), float(dx)), torch.full((height, width), float(dy))])


def rotation_flow(height: int, width: int, degrees: float) -> torch.Tensor:
    """`(2, H, W)` forward flow of a rotation by `degrees` about the frame centre (counter-clockwise on screen)."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a = math.radians(degrees)
    x, y = xs - cx, ys - cy
    nx = math.cos(a) * x + math.sin(a) * y
    ny = -math.sin(a) * x + math.cos(a) * y
    return torch.stack([nx - x, ny - y]).float()


# --- diagnostics (tests, bench) ----------------------------------------------------------------------------

def latent_displacements(flows: torch.Tensor, num_frames: int, stride: int = 1,
                         spatial_factor: int = SPATIAL_FACTOR, temporal_factor: int = TEMPORAL_FACTOR) -> torch.Tensor:
    """`(T_lat - 1, 2, h, w)`: how far (in latent pixels) each latent cell moves from latent frame k to k+1.

    Chains the `temporal_factor / stride` flows between frames 4k and 4k+4 (each sampled bilinearly where the
    point has got to) and averages the displacement over the cell's pixels.
    """
    frames = latent_source_frames(num_frames, temporal_factor)
    per_latent = temporal_factor // stride
    _, _, height, width = flows.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    base = torch.stack([xs, ys])
    out = []
    for k in range(len(frames) - 1):
        pos = base.clone()
        for j in range(per_latent):
            flow = flows[k * per_latent + j].float()
            grid = torch.stack([pos[0] / max(width - 1, 1), pos[1] / max(height - 1, 1)], -1) * 2 - 1
            pos = pos + F.grid_sample(flow[None], grid[None], mode="bilinear", padding_mode="border",
                                      align_corners=True)[0]
        out.append(F.avg_pool2d((pos - base)[None], spatial_factor)[0] / spatial_factor)
    return torch.stack(out)


def flow_correlation(noise: torch.Tensor, displacements: torch.Tensor) -> dict[str, float]:
    """How well consecutive latent noise frames follow the motion, averaged over frame pairs.

    - `along`: Pearson correlation of n_k at each latent cell with n_{k+1} at the cell it moves to (nearest);
    - `ideal`: what perfect transport of block sums would give there, the mean overlap (1-|fx|)(1-|fy|) of a
      cell shifted by the fractional part of its displacement with the nearest cell;
    - `unrelated`: the same pairs but the target moved half a frame away (should be ~0);
    - `static`: n_k against n_{k+1} at the same cell (what noise that ignores motion would line up with).
    """
    t_lat, _, h, w = noise.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    sums = {"along": [], "ideal": [], "unrelated": [], "static": []}
    for k in range(t_lat - 1):
        px, py = xs + displacements[k, 0], ys + displacements[k, 1]
        tx, ty = torch.round(px), torch.round(py)
        valid = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
        if valid.sum() < 2:
            continue
        a = noise[k][:, valid]
        txv, tyv = tx[valid].long(), ty[valid].long()
        b = noise[k + 1][:, tyv, txv]
        far = noise[k + 1][:, (tyv + h // 2) % h, (txv + w // 2) % w]
        sums["along"].append(_corr(a, b))
        sums["unrelated"].append(_corr(a, far))
        sums["static"].append(_corr(noise[k].flatten(), noise[k + 1].flatten()))
        fx, fy = (px - tx)[valid].abs(), (py - ty)[valid].abs()
        sums["ideal"].append(float(((1 - fx) * (1 - fy)).mean()))
    return {k: float(sum(v) / len(v)) if v else float("nan") for k, v in sums.items()}


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12))
