"""VOID pass 2 on a tiny random-weight model (CPU): warped noise, RAFT from the model dir, weights swap, backend."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.backend import RemovalBackend, RemovalRequest
from model.void import pass2 as pass2_module
from model.void.backend import VoidBackend
from model.void.flow import compute_flows, flow_size, load_raft, raft_weights_path
from model.void.noise_warp import (
    NoiseWarper,
    flow_correlation,
    latent_displacements,
    renormalize,
    rotation_flow,
    translation_flow,
    warp_noise,
)
from model.void.pass2 import WarpedNoiseSource, load_transformer_weights_in_place
from model.void.two_pass import TwoPassFrames, VoidTwoPassBackend
from tests.conftest import VOID_H as H
from tests.conftest import VOID_W as W
from tests.conftest import void_clip as clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# RAFT needs >= 128 px: on the tiny model's 32x32 frames it runs enlarged to 128x128, the flow scaled back.
FAST = dict(steps=2, pass2_steps=2, raft_model="raft_small", flow_iters=2)


@pytest.fixture(scope="module")
def backend(void_tiny_dir, void_cache_dir):
    return VoidTwoPassBackend(str(void_tiny_dir), cache_dir=void_cache_dir, **FAST)


# --- noise statistics (no model) -------------------------------------------------------------------------------

def frame_stats(noise: torch.Tensor):
    flat = noise.flatten(1).double()
    return flat.mean(1), flat.std(1)


@pytest.mark.parametrize("motion", ["translation", "rotation"])
def test_warped_noise_is_unit_gaussian_in_every_latent_frame(motion):
    """At the real latent size (16 x 48 x 84 per frame), raw (not re-normalised): what the construction gives."""
    h, w, frames = 384, 672, 45
    flow = translation_flow(h, w, 2.0, 1.3) if motion == "translation" else rotation_flow(h, w, 1.0)
    noise = warp_noise(flow[None].expand(frames - 1, 2, h, w), frames, 16, torch.Generator().manual_seed(3),
                       normalize=False)
    assert noise.shape == (12, 16, 48, 84)
    mean, std = frame_stats(noise)
    assert mean.abs().max() < 0.02, mean
    assert (std - 1).abs().max() < 0.03, std
    x = noise.double().flatten()
    assert abs(float((x.abs() < 1).double().mean()) - 0.6827) < 0.005  # Gaussian, not just unit variance
    assert abs(float((x.abs() < 2).double().mean()) - 0.9545) < 0.003
    assert abs(float((x ** 4).mean()) - 3.0) < 0.05  # kurtosis
    mean, std = frame_stats(renormalize(noise))  # what `warp_noise` returns by default
    assert mean.abs().max() < 1e-5 and (std - 1).abs().max() < 1e-5


def test_warped_noise_follows_the_motion_and_nothing_else():
    h, w, frames = 192, 336, 25
    # 2 px per frame = 8 px per latent frame = exactly one latent pixel: perfect transport gives correlation 1
    flows = translation_flow(h, w, 2.0, 0.0)[None].expand(frames - 1, 2, h, w)
    noise = warp_noise(flows, frames, 16, torch.Generator().manual_seed(0))
    c = flow_correlation(noise, latent_displacements(flows, frames))
    assert c["along"] > 0.97 and abs(c["unrelated"]) < 0.03 and abs(c["static"]) < 0.05
    # rotation: sub-pixel, non-uniform motion; relocation keeps it close to what block transport allows
    flows = rotation_flow(h, w, 1.0)[None].expand(frames - 1, 2, h, w)
    results = {}
    for relocate in (False, True):
        noise = warp_noise(flows, frames, 16, torch.Generator().manual_seed(0), relocate=relocate)
        results[relocate] = flow_correlation(noise, latent_displacements(flows, frames))
    assert results[True]["along"] > 0.85 * results[True]["ideal"]
    assert results[True]["along"] > results[False]["along"] + 0.05
    assert abs(results[True]["unrelated"]) < 0.03


def test_sub_pixel_motion_accumulates_instead_of_freezing():
    h, w = 64, 64
    warper = NoiseWarper(1, h, w, torch.Generator().manual_seed(0))
    start = warper.field.clone()
    for _ in range(10):  # 10 x 0.3 px = 3 px
        warper.step(translation_flow(h, w, 0.3, 0.0))
    assert torch.equal(warper.field[:, :, 3:], start[:, :, :-3])
    assert warper.last_merged_fraction == 0.0


def test_noise_is_seeded_and_needs_whole_latent_groups():
    flows = translation_flow(32, 32, 1.0, 0.5)[None].expand(12, 2, 32, 32)
    a = warp_noise(flows, 13, 16, torch.Generator().manual_seed(1))
    b = warp_noise(flows, 13, 16, torch.Generator().manual_seed(1))
    c = warp_noise(flows, 13, 16, torch.Generator().manual_seed(2))
    assert a.shape == (4, 16, 4, 4) and torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="4k\\+1"):
        warp_noise(flows[:11], 12, 16, None)
    with pytest.raises(ValueError, match="expected 12 flows"):
        warp_noise(flows[:11], 13, 16, None)


# --- RAFT from the model directory -------------------------------------------------------------------------------

def test_missing_raft_weights_name_the_expected_path(void_tiny_dir, tmp_path, void_cache_dir):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "raft" / "raft_large.pth")):
        raft_weights_path(tmp_path)
    # the tiny model ships raft_small only: the default (raft_large) is refused before anything loads
    with pytest.raises(FileNotFoundError, match=str(void_tiny_dir / "raft" / "raft_large.pth")) as err:
        VoidTwoPassBackend(str(void_tiny_dir), cache_dir=void_cache_dir)
    assert "raft_small.pth" in str(err.value)  # says what is there
    (tmp_path / "raft").mkdir()
    torch.save({"not": torch.zeros(1)}, tmp_path / "raft" / "raft_small.pth")
    with pytest.raises(ValueError, match="not a torchvision raft_small"):
        load_raft(tmp_path, "raft_small")


def test_flow_runs_at_the_model_aspect(void_tiny_dir):
    assert flow_size(384, 672) == (384, 672) and flow_size(384, 672, 0.5) == (192, 336)
    assert flow_size(32, 32) == (128, 128) and flow_size(32, 64) == (128, 256)
    raft, sha = load_raft(void_tiny_dir, "raft_small")
    assert len(sha) == 64
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 64, 3), dtype=np.uint8)
    flows = compute_flows(raft, frames, stride=2, iters=1)
    assert flows.shape == (2, 2, 32, 64) and flows.dtype == torch.float32 and torch.isfinite(flows).all()


# --- pipeline ---------------------------------------------------------------------------------------------------

def test_pass2_refuses_noise_that_does_not_cover_the_chunk(backend):
    video, mask = clip(93)
    short = torch.randn(1, 22, 16, H // 8, W // 8)  # the reference's fixed 22 latents
    with pytest.raises(ValueError, match="every latent frame"):
        backend.pipeline2(video, mask, warped_noise=short, prompt="x", num_inference_steps=1)
    with pytest.raises(ValueError, match="mask_mode"):
        backend.pipeline2(video, mask, warped_noise=torch.randn(1, 24, 16, 4, 4), prompt="x", mask_mode="quad")


@pytest.mark.parametrize("mask_mode,affected", [("trimask", 128 / 255), ("binary", 0.0)])
def test_mask_mode_decides_how_affected_is_encoded(backend, monkeypatch, mask_mode, affected):
    pipe = backend.pipeline2
    video, mask = clip(13)
    seen = []
    real_encode = pipe.vae.encode
    monkeypatch.setattr(pipe.vae, "encode", lambda x, *a, **k: seen.append(x.clone()) or real_encode(x, *a, **k))
    pipe(video, mask, warped_noise=torch.randn(1, 4, 16, 4, 4), prompt="x", num_inference_steps=1,
         mask_mode=mask_mode)
    m, q = seen[0][0, 0], torch.as_tensor(mask)
    assert torch.allclose(m[q == 127], torch.tensor(affected))
    assert torch.all(m[q == 0] == 0) and torch.all(m[q == 255] == 1)


def test_cfg_halves_run_in_one_transformer_call(backend):
    calls = []
    hook = backend.pipeline2.transformer.register_forward_pre_hook(
        lambda _m, _a, kwargs: calls.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        video, mask = clip(197)
        backend.pipeline2(video, mask, warped_noise=torch.randn(1, 50, 16, 4, 4), prompt="x",
                          num_inference_steps=2, batch_windows=True)
    finally:
        hook.remove()
    assert calls == [6, 6]  # 3 windows x (uncond, cond), one call per step


def test_weights_swap_in_place(backend, void_tiny_dir, tmp_path):
    from safetensors.torch import load_file

    transformer = backend.pipeline.transformer
    assert backend.pipeline2.transformer is transformer  # one transformer for both passes
    name, param = next(iter(transformer.named_parameters()))
    pointer = param.data_ptr()
    backend.use_weights("pass2")
    assert torch.equal(param, load_file(str(void_tiny_dir / "void_pass2.safetensors"))[name])
    backend.use_weights("pass1")
    assert torch.equal(param, load_file(str(void_tiny_dir / "void_pass1.safetensors"))[name])
    assert param.data_ptr() == pointer and backend.active_weights == "pass1"
    wrong = {k: v for k, v in load_file(str(void_tiny_dir / "void_pass1.safetensors")).items() if "proj_out" not in k}
    from safetensors.torch import save_file

    save_file(wrong, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match="missing keys .*proj_out"):
        load_transformer_weights_in_place(transformer, tmp_path / "partial.safetensors")


# --- the backend -------------------------------------------------------------------------------------------------

def test_version_names_mask_mode_and_pass2_settings(backend, void_tiny_dir, void_cache_dir):
    assert isinstance(backend, RemovalBackend) and backend.name == "void2"
    assert "mask-trimask" in backend.version and "cfg6" in backend.version and "raft-raft_small" in backend.version
    assert backend.version.startswith(backend.pass1_version) and backend.pass1_name == "void"
    binary = VoidTwoPassBackend(str(void_tiny_dir), cache_dir=void_cache_dir, mask_mode="binary", **FAST)
    assert "mask-binary" in binary.version and binary.pass1_version == backend.pass1_version
    with pytest.raises(ValueError, match="mask_mode"):
        VoidTwoPassBackend(str(void_tiny_dir), cache_dir=void_cache_dir, mask_mode="soft", **FAST)


def test_identity_of_is_what_the_loaded_backend_reports(backend, void_tiny_dir, void_cache_dir):
    identity = VoidTwoPassBackend.identity_of(str(void_tiny_dir), cache_dir=void_cache_dir, **FAST)
    assert identity == backend.identity and identity.version == backend.version and identity.name == "void2"
    assert identity.pass1 == VoidBackend.identity_of(str(void_tiny_dir), steps=FAST["steps"], cache_dir=void_cache_dir)
    assert identity.pass1.version == backend.pass1_version and identity.pass1.name == "void"
    assert identity.weights_sha256 == backend.pass2_sha256 != identity.pass1.weights_sha256


def test_identity_of_loads_no_model(backend, void_tiny_dir, tmp_path, void_loads_nothing):
    """No transformer, T5, VAE or RAFT: config files and weight hashes (a fresh hash cache) only."""
    assert VoidTwoPassBackend.identity_of(str(void_tiny_dir), cache_dir=tmp_path, **FAST) == backend.identity
    binary = VoidTwoPassBackend.identity_of(str(void_tiny_dir), cache_dir=tmp_path, mask_mode="binary", **FAST)
    assert "mask-binary" in binary.version and binary.pass1 == backend.identity.pass1
    with pytest.raises(ValueError, match="mask_mode"):
        VoidTwoPassBackend.identity_of(str(void_tiny_dir), cache_dir=tmp_path, mask_mode="soft", **FAST)
    with pytest.raises(FileNotFoundError, match="raft_large"):
        VoidTwoPassBackend.identity_of(str(void_tiny_dir), cache_dir=tmp_path)


@pytest.mark.parametrize("frames,padded", [(85, 85), (90, 93), (197, 197)])
def test_two_passes_on_every_chunk_length(backend, void_tiny_dir, void_cache_dir, frames, padded):
    video, mask = clip(frames, seed=frames)
    request = RemovalRequest(video, mask, "an empty lawn", seed=7)
    fractions = []
    result = backend.remove_two_pass(request, progress=fractions.append)
    assert isinstance(result, TwoPassFrames)
    pass1, pass2 = result
    keep = mask == 255
    for out in (pass1, pass2):
        assert out.shape == video.shape and out.dtype == np.uint8
        assert np.array_equal(out[keep], video[keep])
    assert not np.array_equal(pass1[~keep], pass2[~keep])  # pass 2 sampled again
    assert backend.last_info["noise_latent_frames"] == (padded - 1) // 4 + 1  # 22, 24, 50: every latent frame
    assert backend.active_weights == "pass2"
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    if frames == 85:  # pass 1 is exactly what the plain pass-1 backend delivers with the same settings
        plain = VoidBackend(str(void_tiny_dir), steps=FAST["steps"], cache_dir=void_cache_dir)
        assert plain.version == backend.pass1_version
        assert np.array_equal(plain.remove(request), pass1)


def test_same_seed_same_frames_and_cache_reuse(backend, void_tiny_dir, void_cache_dir, monkeypatch):
    video, mask = clip(85, seed=85)  # the request of the 85-frame case above: its noise is cached by now
    request = RemovalRequest(video, mask, "an empty lawn", seed=7)
    uncached = VoidTwoPassBackend(str(void_tiny_dir), cache_dir=void_cache_dir, noise_cache=False, **FAST)
    fresh = uncached.remove_two_pass(request)  # RAFT and the warp run again from scratch
    assert uncached.last_info["noise_cached"] is False and uncached.last_info["flow_cached"] is False

    def no_raft(*_a, **_k):
        raise AssertionError("RAFT ran although the noise was cached")

    monkeypatch.setattr(pass2_module, "compute_flows", no_raft)
    cached = backend.remove_two_pass(request)
    assert backend.last_info["noise_cached"] is True
    assert np.array_equal(cached.pass1, fresh.pass1) and np.array_equal(cached.pass2, fresh.pass2)

    # the same pass-1 frames with another seed: new noise from the cached flow (still no RAFT), other frames
    other = backend.remove_pass2(RemovalRequest(video, mask, "an empty lawn", seed=8), cached.pass1)
    assert backend.last_info["noise_cached"] is False and backend.last_info["flow_cached"] is True
    assert not np.array_equal(other, cached.pass2)


def test_noise_cache_is_keyed_by_pass1_content(backend):
    source: WarpedNoiseSource = backend.noise_source
    frames = np.random.default_rng(1).integers(0, 256, (13, H, W, 3), dtype=np.uint8)
    a = source.noise(frames, seed=3)
    assert source.last["noise_cached"] is False and a.shape == (1, 4, 16, 4, 4)
    assert torch.equal(source.noise(frames, seed=3), a) and source.last["noise_cached"] is True
    changed = frames.copy()
    changed[5, 0, 0, 0] ^= 1  # one pixel of the pass-1 output
    source.noise(changed, seed=3)
    assert source.last["noise_cached"] is False and source.last["flow_cached"] is False


def test_remove_is_pass2_and_pass2_runs_from_a_stored_pass1(backend):
    video, mask = clip(46, seed=3)
    request = RemovalRequest(video, mask, "a clean street", seed=5)
    pass1, pass2 = backend.remove_two_pass(request)
    assert np.array_equal(backend.remove(request), pass2)
    assert np.array_equal(backend.remove_pass2(request, pass1.copy()), pass2)
    with pytest.raises(ValueError, match="pass1_frames"):
        backend.remove_pass2(request, pass1[:-1])
