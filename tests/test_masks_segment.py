"""Segmenters: SAM2 plumbing with tiny random weights on CPU, classical IoU on generated scenes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.masks import (ClassicalSegmenter, Frames, MaskStack, Prompts, SAM2Segmenter, SegmentationError,
                         default_dilation, default_segmenter, working_size)
from model.masks.combine import dilate
from shots.synthetic import make_scene

# A SAM2 small enough to run in a second on a CPU: the real architecture (Hiera trunk, FPN neck,
# memory attention/encoder, SAM heads) with every width and depth cut down, image_size 128.
TINY_SAM2_YAML = """
# @package _global_
model:
  _target_: sam2.modeling.sam2_base.SAM2Base
  image_encoder:
    _target_: sam2.modeling.backbones.image_encoder.ImageEncoder
    scalp: 1
    trunk:
      _target_: sam2.modeling.backbones.hieradet.Hiera
      embed_dim: 8
      num_heads: 1
      stages: [1, 2, 1, 1]
      global_att_blocks: [2]  # never a q-pool block (1, 3, 4): those need a window
      window_pos_embed_bkg_spatial_size: [4, 4]
      window_spec: [4, 4, 4, 4]
    neck:
      _target_: sam2.modeling.backbones.image_encoder.FpnNeck
      position_encoding:
        _target_: sam2.modeling.position_encoding.PositionEmbeddingSine
        num_pos_feats: 32
        normalize: true
        scale: null
        temperature: 10000
      d_model: 32
      backbone_channel_list: [64, 32, 16, 8]
      fpn_top_down_levels: [2, 3]
      fpn_interp_model: nearest
  memory_attention:
    _target_: sam2.modeling.memory_attention.MemoryAttention
    d_model: 32
    pos_enc_at_input: true
    layer:
      _target_: sam2.modeling.memory_attention.MemoryAttentionLayer
      activation: relu
      dim_feedforward: 64
      dropout: 0.0
      pos_enc_at_attn: false
      self_attention:
        _target_: sam2.modeling.sam.transformer.RoPEAttention
        rope_theta: 10000.0
        feat_sizes: [8, 8]
        embedding_dim: 32
        num_heads: 1
        downsample_rate: 1
        dropout: 0.0
      d_model: 32
      pos_enc_at_cross_attn_keys: true
      pos_enc_at_cross_attn_queries: false
      cross_attention:
        _target_: sam2.modeling.sam.transformer.RoPEAttention
        rope_theta: 10000.0
        feat_sizes: [8, 8]
        rope_k_repeat: True
        embedding_dim: 32
        num_heads: 1
        downsample_rate: 1
        dropout: 0.0
        kv_in_dim: 16
    num_layers: 1
  memory_encoder:
    _target_: sam2.modeling.memory_encoder.MemoryEncoder
    out_dim: 16
    in_dim: 32
    position_encoding:
      _target_: sam2.modeling.position_encoding.PositionEmbeddingSine
      num_pos_feats: 16
      normalize: true
      scale: null
      temperature: 10000
    mask_downsampler:
      _target_: sam2.modeling.memory_encoder.MaskDownSampler
      kernel_size: 3
      stride: 2
      padding: 1
      embed_dim: 32
    fuser:
      _target_: sam2.modeling.memory_encoder.Fuser
      layer:
        _target_: sam2.modeling.memory_encoder.CXBlock
        dim: 32
        kernel_size: 7
        padding: 3
        layer_scale_init_value: 1e-6
        use_dwconv: True
      num_layers: 1
  num_maskmem: 3
  image_size: 128
  sigmoid_scale_for_mem_enc: 20.0
  sigmoid_bias_for_mem_enc: -10.0
  use_mask_input_as_output_without_sam: true
  directly_add_no_mem_embed: true
  no_obj_embed_spatial: true
  use_high_res_features_in_sam: true
  multimask_output_in_sam: true
  iou_prediction_use_sigmoid: True
  use_obj_ptrs_in_encoder: true
  max_obj_ptrs_in_encoder: 4
  add_tpos_enc_to_obj_ptrs: true
  proj_tpos_enc_in_obj_ptrs: true
  use_signed_tpos_enc_to_obj_ptrs: true
  only_obj_ptrs_in_the_past_for_eval: true
  pred_obj_scores: true
  pred_obj_scores_mlp: true
  fixed_no_obj_ptr: true
  multimask_output_for_tracking: true
  use_multimask_token_for_obj_ptr: true
  multimask_min_pt_num: 0
  multimask_max_pt_num: 1
  use_mlp_for_obj_ptr_proj: true
  compile_image_encoder: False
"""


@pytest.fixture(scope="module")
def tiny_sam2_dir(tmp_path_factory):
    """A model directory with the tiny config and a random-init checkpoint in the release format."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import sam2  # noqa: F401

    d = tmp_path_factory.mktemp("sam2_tiny")
    (d / "sam2_tiny.yaml").write_text(TINY_SAM2_YAML)
    cfg = OmegaConf.load(d / "sam2_tiny.yaml")
    cfg.model._target_ = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    torch.manual_seed(0)
    model = instantiate(cfg.model, _recursive_=True)
    torch.save({"model": model.state_dict()}, d / "sam2_tiny.pt")
    return d


def _scene_frames(kind, frames, h, w, seed, long_side):
    sc = make_scene(kind, frames, h, w, seed=seed)
    size = working_size(h, w, long_side)
    small = np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in sc.plate])
    return sc, Frames.from_array(small, source_size=(h, w))


def _object(sc):
    return (sc.quadmask == 0) | (sc.quadmask == 63)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors on a busy 2-core box: OpenMP spinning makes 2 threads ~100x slower than 1."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_sam2_tiny_random_weights_late_clicks_cover_every_frame(tiny_sam2_dir, one_torch_thread, monkeypatch):
    n, first = 20, 12
    sc, frames = _scene_frames("static", n, 72, 128, 0, 1024)
    seg = SAM2Segmenter.from_dir(tiny_sam2_dir, device="cpu")
    assert seg.name == "sam2" and seg.device.type == "cpu"
    seen, held = [], []
    real = seg.predictor.propagate_in_video

    def spy(state, **kw):
        for out in real(state, **kw):
            seen.append((out[0], kw["reverse"]))
            yield out
            held.append(len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"]))

    seg.predictor.propagate_in_video = spy
    ys, xs = np.nonzero(_object(sc)[first])
    # first prompts late (a click and a negative click), a box on a later frame
    prompts = Prompts.make(points={first: [[xs.mean(), ys.mean()]]}, negative_points={first: [[2.0, 2.0]]},
                           boxes={first + 3: [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]})
    masks = seg.segment(frames, prompts)
    assert isinstance(masks, MaskStack) and len(masks) == n and masks.size == (72, 128)
    assert masks[0].shape == (72, 128) and masks[0].dtype == bool
    # backwards from the first prompt to 0, then forwards to the end: every frame was produced
    assert sorted({f for f, _ in seen}) == list(range(n))
    assert [f for f, rev in seen if rev] == list(range(first, -1, -1))
    assert [f for f, rev in seen if not rev] == list(range(first, n))
    # memory the tracker can no longer reach is dropped: (maskmem 3 - 1, obj ptrs 4) + 1 frames at most
    assert max(held) <= seg._memory_reach() + 1 < n - 1


def test_sam2_missing_or_mismatched_weights(tiny_sam2_dir, tmp_path):
    import torch

    with pytest.raises(SegmentationError, match="checkpoint not found"):
        SAM2Segmenter(tiny_sam2_dir / "sam2_tiny.yaml", tmp_path / "nope.pt", device="cpu")
    torch.save({"model": {"bogus": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(SegmentationError, match="does not match"):
        SAM2Segmenter(tiny_sam2_dir / "sam2_tiny.yaml", tmp_path / "bad.pt", device="cpu")
    with pytest.raises(SegmentationError, match="exactly one"):
        SAM2Segmenter.from_dir(tmp_path)
    assert isinstance(default_segmenter(None), ClassicalSegmenter)
    assert isinstance(default_segmenter(tiny_sam2_dir, device="cpu"), SAM2Segmenter)


def _iou_after_dilation(masks: MaskStack, truth: np.ndarray) -> np.ndarray:
    """Per-frame IoU of the remove region (mask at source size, grown like the pipeline) vs the truth."""
    h, w = truth.shape[1:]
    px = default_dilation(h, w)
    out = []
    for i in range(len(masks)):
        m = dilate(masks.resized(i, (h, w)), px)
        out.append((m & truth[i]).sum() / max(1, (m | truth[i]).sum()))
    return np.array(out)


@pytest.mark.parametrize("kind,prompt", [("static", "click"), ("pan", "click"), ("pan", "box")])
def test_classical_iou_on_generated_scene(kind, prompt):
    sc, frames = _scene_frames(kind, 40, 216, 384, 1, 640)
    truth = _object(sc)
    k = 28  # a late prompt: frames 0-27 come from backward tracking
    ys, xs = np.nonzero(truth[k])
    prompts = (Prompts.make(points={k: [[xs.mean(), ys.mean()]]}) if prompt == "click"
               else Prompts.make(boxes={k: [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]}))
    masks = ClassicalSegmenter().segment(frames, prompts)
    assert len(masks) == 40 and (masks.areas > 0).all()
    iou = _iou_after_dilation(masks, truth)
    print(f"classical {kind}/{prompt}: mean IoU {iou.mean():.3f}, min {iou.min():.3f}")
    assert iou.mean() >= 0.85 and iou.min() >= 0.6


def test_classical_two_prompted_frames_meet_in_the_middle():
    sc, frames = _scene_frames("static", 30, 108, 192, 2, 640)
    truth = _object(sc)
    pts = {}
    for k in (5, 25):
        ys, xs = np.nonzero(truth[k])
        pts[k] = [[xs.mean(), ys.mean()]]
    masks = ClassicalSegmenter().segment(frames, Prompts.make(points=pts))
    assert _iou_after_dilation(masks, truth).mean() >= 0.85


def test_segmenters_refuse_prompts_without_a_positive():
    _, frames = _scene_frames("static", 4, 72, 128, 0, 640)
    with pytest.raises(SegmentationError, match="no positive"):
        ClassicalSegmenter().segment(frames, Prompts.make(negative_points={1: [[3, 3]]}))
    with pytest.raises(SegmentationError, match="shot has 4 frames"):
        ClassicalSegmenter().segment(frames, Prompts.make(points={9: [[3, 3]]}))


def test_sam2_through_build_quadmask(tiny_sam2_dir, one_torch_thread, tmp_path):
    from model.masks import build_quadmask
    from shots.media import write_video_lossless
    from shots.quadmask import read_mask_frames
    from shots.shot import Instructions

    sc = make_scene("pan", 12, 72, 128, seed=4)
    write_video_lossless(tmp_path / "plate.mkv", sc.plate, sc.rate)
    ys, xs = np.nonzero(_object(sc)[9])
    ins = Instructions(points={9: [[float(xs.mean()), float(ys.mean())]]})
    seg = SAM2Segmenter.from_dir(tiny_sam2_dir, device="cpu", working_long_side=96)
    r = build_quadmask(tmp_path / "plate.mkv", 2, 8, sc.rate, ins, tmp_path / "q.mkv", segmenter=seg, reasoner=None)
    assert (r.source, r.reasoner) == ("sam2", "none") and r.details["prompt_frames"] == [7]
    assert r.details["working_size"] == [54, 96]
    q = list(read_mask_frames(tmp_path / "q.mkv"))
    assert len(q) == 8 and q[0].shape == (72, 128)  # source resolution, one frame per shot frame
