"""The remove (black) layer: segment the clicked object on every frame of a shot.

Two segmenters share one protocol. Both work on `Frames` at a working resolution, take the
artist's clicks/boxes on whatever frames have them (the first one may be late in the shot) and
return a `MaskStack` with a mask for *every* frame:

- `SAM2Segmenter`: the sam2 package's video predictor, built from a config and a checkpoint in a
  model directory (nothing is downloaded). VOID's stage 1 propagates once, forward from the
  earliest click, so frames before it get no mask and the written mask is shifted (void_masks.md
  section 0). Here propagation runs backwards from the earliest prompted frame to frame 0 and then
  forwards to the end, and every frame is indexed by its shot frame. All clicks go to one object, as
  in the reference, but negative clicks and real boxes are passed through (the reference had neither
  and derived a box from the clicks, which truncates objects clicked only in their interior).
- `ClassicalSegmenter`: CPU only. GrabCut on each prompted frame, then frame-to-frame tracking in
  both directions: masked template matching of the object moves the previous mask, and a GrabCut
  pass in a narrow band around it snaps the boundary to the new frame. Between two prompted frames
  each propagates to the midpoint.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from model.masks.frames import Frames, MaskStack, Prompts

log = logging.getLogger(__name__)

Progress = Callable[[float], None]


class SegmentationError(Exception):
    """Segmentation could not run (bad prompts, missing weights, a model failure)."""


@runtime_checkable
class Segmenter(Protocol):
    """Masks of the prompted object on every frame.

    `frames` are the shot's frames at the segmenter's working resolution (`working_long_side`);
    `prompts` are in *source* pixels keyed by shot frame (the segmenter scales them with
    `frames.scale`). Returns a MaskStack of len(frames) masks at frames.size; a frame where the
    object is absent gets an empty mask.
    """

    name: str
    working_long_side: int

    def segment(self, frames: Frames, prompts: Prompts, progress: Progress | None = None) -> MaskStack: ...


def _start(frames: Frames, prompts: Prompts) -> tuple[Prompts, MaskStack]:
    """The prompts checked and scaled to the working resolution, and an empty mask per frame to fill."""
    if not prompts.positive_frames:
        raise SegmentationError("no positive clicks or boxes to segment from (negative clicks alone say nothing "
                                "about where the object is)")
    bad = [f for f in prompts.frames if not 0 <= f < len(frames)]
    if bad:
        raise SegmentationError(f"prompts on shot frames {bad} but the shot has {len(frames)} frames")
    return prompts.scaled(*frames.scale), MaskStack(len(frames), frames.size)


# ---------------------------------------------------------------------------------------------
# SAM2


# sam2's frame loader and progress bar are module globals that segment() swaps for its own while it
# runs, so SAM2 segmentations in one process run one at a time (they would share the device anyway).
_SAM2_LOCK = threading.Lock()


class _SAM2Images:
    """SAM2's `inference_state["images"]`, produced on demand from working-resolution frames.

    sam2's own loaders hold every frame as a 1024x1024 float tensor (12 MB each) or need decord;
    this resizes and normalises one frame when the predictor asks for it.
    """

    def __init__(self, frames: Frames, image_size: int, device, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225)):
        import torch

        self.frames, self.image_size, self.device = frames, image_size, device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32, device=device)[:, None, None]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int):
        import torch

        f = self.frames[int(i)]
        s = self.image_size
        interp = cv2.INTER_AREA if max(f.shape[:2]) > s else cv2.INTER_LINEAR
        f = cv2.resize(f, (s, s), interpolation=interp)
        t = torch.from_numpy(np.ascontiguousarray(f)).to(self.device).permute(2, 0, 1).float().div_(255.0)
        return (t - self.mean) / self.std


def _resolve_config(config: str | Path) -> Path:
    p = Path(config)
    if p.is_file():
        return p
    import sam2

    packaged = Path(sam2.__file__).parent / str(config)
    if packaged.is_file():
        return packaged
    raise SegmentationError(f"SAM2 config {config} not found (a file, or a name inside the sam2 package such as "
                            "'configs/sam2.1/sam2.1_hiera_l.yaml')")


class SAM2Segmenter:
    """SAM2 video segmentation from a config + checkpoint (e.g. a model directory); no hub access.

    config: a YAML file, or a config name shipped in the sam2 package ('configs/sam2.1/sam2.1_hiera_l.yaml').
    checkpoint: a `.pt` holding {"model": state_dict} (the official release format).
    device: 'cuda', 'cpu', ... (default: cuda when available).
    working_long_side: frames are decoded at this long side; SAM2 itself runs at its `image_size`.
    offload_state_to_cpu: keep SAM2's per-frame memory on the CPU (default: on when not on CPU).
    """

    name = "sam2"

    def __init__(self, config: str | Path, checkpoint: str | Path, device: str | None = None, *,
                 working_long_side: int = 1024, offload_state_to_cpu: bool | None = None,
                 autocast: bool = True):
        import torch

        self.config_path = _resolve_config(config)
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise SegmentationError(f"SAM2 checkpoint not found: {self.checkpoint}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.working_long_side = int(working_long_side)
        on_cpu = self.device.type == "cpu"
        self.offload_state_to_cpu = (not on_cpu) if offload_state_to_cpu is None else offload_state_to_cpu
        self.autocast = autocast and self.device.type == "cuda"
        self.predictor = self._build()

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str | None = None, **kwargs) -> SAM2Segmenter:
        """The one `*.yaml` and the one `*.pt` in `model_dir`."""
        d = Path(model_dir)
        configs, ckpts = sorted(d.glob("*.yaml")), sorted(d.glob("*.pt"))
        if len(configs) != 1 or len(ckpts) != 1:
            raise SegmentationError(f"{d} must hold exactly one SAM2 *.yaml and one *.pt, found "
                                    f"{[c.name for c in configs]} and {[c.name for c in ckpts]}")
        return cls(configs[0], ckpts[0], device, **kwargs)

    def _build(self):
        # Same overrides as sam2.build_sam.build_sam2_video_predictor (sam2 1.1.0), applied to a config
        # file read with OmegaConf so it can live outside the package's hydra search path.
        import torch
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        import sam2  # noqa: F401  (initialises sam2's hydra config module)

        overrides = [
            "model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
            "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            "model.binarize_mask_from_pts_for_mem_enc=true",
            # hole filling needs the optional CUDA extension sam2._C; without it every frame warns
            f"model.fill_hole_area={8 if self._has_sam2_ext() else 0}",
        ]
        try:
            cfg = OmegaConf.load(self.config_path)
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
            OmegaConf.resolve(cfg)
            model = instantiate(cfg.model, _recursive_=True)
            sd = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            sd = sd.get("model", sd) if isinstance(sd, dict) else sd
            missing, unexpected = model.load_state_dict(sd, strict=False)
        except Exception as e:  # hydra/omegaconf/torch raise many types; name the files
            raise SegmentationError(f"cannot build SAM2 from {self.config_path} + {self.checkpoint}: "
                                    f"{type(e).__name__}: {e}") from e
        if missing or unexpected:
            raise SegmentationError(f"checkpoint {self.checkpoint} does not match config {self.config_path}: "
                                    f"{len(missing)} missing keys (e.g. {missing[:3]}), "
                                    f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        return model.to(self.device).eval()

    @staticmethod
    def _has_sam2_ext() -> bool:
        try:
            from sam2 import _C  # noqa: F401
        except ImportError:
            return False
        return True

    @contextlib.contextmanager
    def _patched_sam2(self, images: _SAM2Images, size: tuple[int, int]):
        """init_state loads frames with sam2_video_predictor.load_video_frames: hand it ours; and
        keep propagate_in_video's tqdm bar out of worker logs."""
        import sam2.sam2_video_predictor as svp

        def load_video_frames(**_kwargs):
            return images, size[0], size[1]

        with _SAM2_LOCK:
            saved = svp.load_video_frames, svp.tqdm
            svp.load_video_frames, svp.tqdm = load_video_frames, (lambda it, **kw: it)
            try:
                yield
            finally:
                svp.load_video_frames, svp.tqdm = saved

    def segment(self, frames: Frames, prompts: Prompts, progress: Progress | None = None) -> MaskStack:
        import torch

        t0 = time.perf_counter()
        p, masks = _start(frames, prompts)
        n = len(frames)
        images = _SAM2Images(frames, self.predictor.image_size, self.device)
        amp = (torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext())
        done = 0
        with torch.inference_mode(), amp, self._patched_sam2(images, frames.size):
            state = self.predictor.init_state(video_path="<voidbatch frames>",
                                              offload_video_to_cpu=True,
                                              offload_state_to_cpu=self.offload_state_to_cpu)
            for f in p.frames:
                pos, neg, box = p.at(f)
                pts = np.concatenate([pos, neg]).astype(np.float32)
                labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.int32)
                self.predictor.add_new_points_or_box(
                    state, frame_idx=f, obj_id=1,
                    points=pts if len(pts) else None, labels=labels if len(pts) else None,
                    box=None if box is None else box.astype(np.float32))
            first = p.frames[0]
            keep = self._memory_reach()
            # Backwards first (first..0), then forwards (first..n-1): frames before a late first click
            # get masks too, and every frame lands at its own index.
            for reverse in (True, False):
                if reverse and first == 0:
                    continue
                for f, _obj_ids, logits in self.predictor.propagate_in_video(state, start_frame_idx=first,
                                                                            reverse=reverse):
                    masks[f] = (logits[0, 0] > 0.0).cpu().numpy()
                    self._prune(state, f, reverse, keep)
                    done += 1
                    if progress is not None:
                        progress(min(1.0, done / (n + 1)))
            self.predictor.reset_state(state)
        log.info("sam2: %d frames at %dx%d in %.1fs (first prompt on shot frame %d)", n, frames.size[1],
                 frames.size[0], time.perf_counter() - t0, first)
        return masks

    def _memory_reach(self) -> int:
        m = self.predictor
        return max((m.num_maskmem - 1) * max(1, m.memory_temporal_stride_for_eval), m.max_obj_ptrs_in_encoder) + 1

    @staticmethod
    def _prune(state: dict, frame: int, reverse: bool, keep: int) -> None:
        """Drop non-conditioning outputs the tracker can no longer reach (bounded memory on long shots)."""
        for out in state.get("output_dict_per_obj", {}).values():
            nc = out.get("non_cond_frame_outputs", {})
            stale = [t for t in nc if (t > frame + keep if reverse else t < frame - keep)]
            for t in stale:
                del nc[t]


# ---------------------------------------------------------------------------------------------
# Classical


_FG = (cv2.GC_FGD, cv2.GC_PR_FGD)


def _disk(r: int) -> np.ndarray:
    r = max(1, int(r))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _expand(box, pad: float, size) -> tuple[int, int, int, int]:
    h, w = size
    x0, y0, x1, y1 = box
    return (max(0, int(np.floor(x0 - pad))), max(0, int(np.floor(y0 - pad))),
            min(w, int(np.ceil(x1 + pad))), min(h, int(np.ceil(y1 + pad))))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    inv = (~mask).astype(np.uint8)
    n, lab = cv2.connectedComponents(inv, connectivity=4)
    if n <= 2:
        return mask
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    holes = ~np.isin(lab, border) & (inv > 0)
    return mask | holes


def _components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected parts of `mask` that overlap `seeds` (largest part when none does)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    ids = np.unique(lab[seeds & mask])
    ids = ids[ids > 0]
    if len(ids) == 0:
        ids = [1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    return np.isin(lab, ids)


class ClassicalSegmenter:
    """GrabCut on prompted frames + optical-flow tracking with GrabCut snapping, both directions; CPU.

    working_long_side: frames are decoded at this long side.
    seed_iterations / track_iterations: GrabCut iterations on prompted / tracked frames.
    band: width of the uncertain band around the moved mask, as a fraction of the object's radius.
    search: how far the object may move between frames, in object radii.
    luma_weight: weight of lightness against colour when GrabCut models colours (shadows are darker,
        not differently coloured, so a low weight keeps them out of the object).
    """

    name = "classical"

    def __init__(self, working_long_side: int = 640, seed_iterations: int = 5, track_iterations: int = 2,
                 band: float = 0.3, luma_weight: float = 0.4, search: float = 1.5):
        self.working_long_side = int(working_long_side)
        self.seed_iterations, self.track_iterations, self.band = seed_iterations, track_iterations, band
        self.luma_weight, self.search = luma_weight, search

    def _colours(self, rgb: np.ndarray) -> np.ndarray:
        """Lab with lightness scaled down: a shadow (darker, same chroma) looks like its background."""
        if self.luma_weight >= 1.0:
            return rgb
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
        lab[..., 0] = lab[..., 0] * self.luma_weight + 128.0 * (1.0 - self.luma_weight)
        return np.clip(lab, 0, 255).astype(np.uint8)

    # -- public -----------------------------------------------------------------------------------
    def segment(self, frames: Frames, prompts: Prompts, progress: Progress | None = None) -> MaskStack:
        t0 = time.perf_counter()
        p, masks = _start(frames, prompts)
        n = len(frames)
        seeds = p.positive_frames
        done = 0

        def tick():
            nonlocal done
            done += 1
            if progress is not None:
                progress(min(1.0, done / n))

        for j, k in enumerate(seeds):
            seed = self._seed(frames[k], *p.at(k))
            masks[k] = seed
            tick()
            lo = 0 if j == 0 else (seeds[j - 1] + k) // 2 + 1
            hi = n - 1 if j == len(seeds) - 1 else (k + seeds[j + 1]) // 2
            for span in (range(k + 1, hi + 1), range(k - 1, lo - 1, -1)):
                prev, prev_mask = k, seed
                for f in span:
                    prev_mask = self._track(frames[prev], prev_mask, frames[f])
                    masks[f] = prev_mask
                    prev = f
                    tick()
        log.info("classical: %d frames at %dx%d in %.1fs from prompts on shot frames %s", n, frames.size[1],
                 frames.size[0], time.perf_counter() - t0, seeds)
        return masks

    # -- prompted frames --------------------------------------------------------------------------
    def _seed(self, img: np.ndarray, pos: np.ndarray, neg: np.ndarray, box: np.ndarray | None) -> np.ndarray:
        h, w = img.shape[:2]
        if box is not None:
            rect = _expand(box, 0, (h, w))
        else:
            x0, y0 = pos.min(axis=0)
            x1, y1 = pos.max(axis=0)
            margin = max(0.6 * max(x1 - x0, y1 - y0), 0.12 * min(h, w))
            rect = _expand((x0, y0, x1, y1), margin, (h, w))
        rx0, ry0, rx1, ry1 = rect
        cx0, cy0, cx1, cy1 = _expand(rect, 0.75 * max(rx1 - rx0, ry1 - ry0), (h, w))
        labels = np.full((cy1 - cy0, cx1 - cx0), cv2.GC_BGD, np.uint8)
        labels[ry0 - cy0:ry1 - cy0, rx0 - cx0:rx1 - cx0] = cv2.GC_PR_FGD
        r = max(2, int(round(0.01 * min(h, w))))
        seeds = np.zeros(labels.shape, bool)
        for x, y in pos:
            cv2.circle(labels, (int(round(x - cx0)), int(round(y - cy0))), r, cv2.GC_FGD, -1)
            seeds[min(max(int(round(y - cy0)), 0), labels.shape[0] - 1),
                  min(max(int(round(x - cx0)), 0), labels.shape[1] - 1)] = True
        for x, y in neg:
            cv2.circle(labels, (int(round(x - cx0)), int(round(y - cy0))), r, cv2.GC_BGD, -1)
        crop = self._colours(np.ascontiguousarray(img[cy0:cy1, cx0:cx1]))
        fg = self._grabcut(crop, labels, self.seed_iterations)
        if fg is None or not fg.any():
            raise SegmentationError("GrabCut found no object at the prompt; click inside the object or draw a box")
        if not seeds.any():  # box only: the largest part inside the box
            seeds = np.zeros(labels.shape, bool)
        fg = _fill_holes(_components_touching(fg, seeds))
        out = np.zeros((h, w), bool)
        out[cy0:cy1, cx0:cx1] = fg
        return out

    # -- propagation ------------------------------------------------------------------------------
    def _track(self, prev: np.ndarray, prev_mask: np.ndarray, img: np.ndarray) -> np.ndarray:
        area = int(prev_mask.sum())
        if area == 0:
            return prev_mask
        h, w = prev_mask.shape
        dx, dy = self._shift(prev, prev_mask, img)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        prior = cv2.warpAffine(prev_mask.astype(np.uint8), shift, (w, h), flags=cv2.INTER_NEAREST) > 0
        if not prior.any():
            return prior  # moved out of the picture
        return self._snap(img, prior)

    def _shift(self, prev: np.ndarray, prev_mask: np.ndarray, img: np.ndarray) -> tuple[float, float]:
        """The object's translation to the next frame: masked template matching (sum of squared
        differences over the object's own pixels) in a window of +-`search` object radii, sub-pixel
        by a parabola through the best score and its neighbours."""
        h, w = prev_mask.shape
        x0, y0, x1, y1 = _bbox(prev_mask)
        r_eq = float(np.sqrt(prev_mask.sum() / np.pi))
        pad = int(np.ceil(max(16.0, self.search * r_eq)))
        sx0, sy0, sx1, sy1 = _expand((x0, y0, x1, y1), pad, (h, w))
        tpl = np.ascontiguousarray(prev[y0:y1, x0:x1])
        tmask = np.ascontiguousarray(prev_mask[y0:y1, x0:x1]).astype(np.uint8) * 255
        window = np.ascontiguousarray(img[sy0:sy1, sx0:sx1])
        if window.shape[0] < tpl.shape[0] or window.shape[1] < tpl.shape[1]:
            return 0.0, 0.0
        score = cv2.matchTemplate(window, tpl, cv2.TM_SQDIFF, mask=tmask)
        score = np.nan_to_num(score, nan=np.inf, posinf=np.inf)
        by, bx = np.unravel_index(int(np.argmin(score)), score.shape)

        def vertex(a, b, c):
            den = a - 2 * b + c
            return 0.0 if not np.isfinite(den) or den <= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))

        fx = vertex(*score[by, bx - 1:bx + 2]) if 0 < bx < score.shape[1] - 1 else 0.0
        fy = vertex(*score[by - 1:by + 2, bx]) if 0 < by < score.shape[0] - 1 else 0.0
        return sx0 + bx + fx - x0, sy0 + by + fy - y0

    def _snap(self, img: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """GrabCut in a band around `prior`: sure object inside, sure background outside."""
        h, w = prior.shape
        area = int(prior.sum())
        r_eq = float(np.sqrt(area / np.pi))
        band = max(2, int(round(self.band * r_eq)))
        cx0, cy0, cx1, cy1 = _expand(_bbox(prior), band + max(8.0, r_eq), (h, w))
        p = prior[cy0:cy1, cx0:cx1].astype(np.uint8)
        labels = np.full(p.shape, cv2.GC_BGD, np.uint8)
        labels[cv2.dilate(p, _disk(band)) > 0] = cv2.GC_PR_BGD
        labels[p > 0] = cv2.GC_PR_FGD
        core = cv2.erode(p, _disk(band)) > 0
        labels[core] = cv2.GC_FGD
        fg = self._grabcut(self._colours(np.ascontiguousarray(img[cy0:cy1, cx0:cx1])), labels,
                           self.track_iterations)
        if fg is None:
            return prior
        fg = _fill_holes(_components_touching(fg, core if core.any() else p > 0))
        ratio = fg.sum() / max(area, 1)
        if not 0.6 <= ratio <= 1.6:  # GrabCut leaked or collapsed: trust the moved mask this frame
            return prior
        out = np.zeros((h, w), bool)
        out[cy0:cy1, cx0:cx1] = fg
        return out

    @staticmethod
    def _grabcut(crop: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray | None:
        has_fg = np.isin(labels, _FG).any()
        has_bg = np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()
        if not (has_fg and has_bg) or min(crop.shape[:2]) < 2:
            return None
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(crop, labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # degenerate colour models (flat crops)
            return None
        return np.isin(labels, _FG)


def default_segmenter(model_dir: str | Path | None = None, device: str | None = None) -> Segmenter:
    """SAM2 from `model_dir` when it holds a config + checkpoint, else the classical CPU segmenter."""
    if model_dir is not None and Path(model_dir).is_dir():
        d = Path(model_dir)
        if any(d.glob("*.yaml")) and any(d.glob("*.pt")):
            return SAM2Segmenter.from_dir(d, device)
    return ClassicalSegmenter()
