"""VOID pass 1 on diffusers, on a tiny random-weight model (CPU): lengths, decode, masks, windows, seeds, backend."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.backend import BackendIdentity, RemovalBackend, RemovalRequest, get_backend
from model.void.backend import VoidBackend, mirror_indices
from model.void.loading import load_void_pass1
from model.void.pipeline_void import (
    VoidPass1Pipeline,
    quadmask_to_vae_mask,
    temporal_windows,
    window_weights,
)
from model.void.vae import AutoencoderKLVoid
from shots.plan import MAX_FRAMES, VALID_LENGTHS, padded_length
from tests.conftest import VOID_H as H
from tests.conftest import VOID_W as W
from tests.conftest import void_clip as clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def void(void_tiny_dir, void_cache_dir):
    return load_void_pass1(void_tiny_dir, cache_dir=void_cache_dir)


@pytest.fixture(scope="session")
def backend(void_tiny_dir, void_cache_dir):
    return get_backend("void", model_dir=str(void_tiny_dir), steps=2, cache_dir=void_cache_dir)


# --- chunk lengths -------------------------------------------------------------------------------------------

def test_mirror_padding_covers_every_chunk_length():
    for frames in range(1, MAX_FRAMES + 1):
        target = padded_length(frames)
        index = mirror_indices(frames, target)
        assert len(index) == target and target in VALID_LENGTHS
        assert np.array_equal(index[:frames], np.arange(frames))  # real frames first, in order
        assert index.min() >= 0 and index.max() < frames
        if target > frames:
            assert index[frames] == frames - 1  # ping-pong: the first padded frame repeats the last real one
        assert np.all(np.abs(np.diff(index)) <= 1)  # no jumps: padding plays the clip back and forth


def test_backend_returns_input_length_for_every_chunk_length(backend, monkeypatch):
    """All 197 lengths through the backend's pad/trim with a stand-in pipeline; real runs are below."""
    seen = []

    class Output:
        def __init__(self, frames):
            self.frames = frames

    def fake_pipeline(video, quadmask, **kwargs):
        assert len(video) in VALID_LENGTHS and len(quadmask) == len(video)
        seen.append(len(video))
        return Output((video[None].astype(np.float32) / 255.0))

    monkeypatch.setattr(backend, "pipeline", fake_pipeline)
    for frames in range(1, MAX_FRAMES + 1):
        video, mask = clip(frames, h=16, w=16)
        out = backend.remove(RemovalRequest(video, mask, "x", seed=frames))
        assert out.shape == video.shape and out.dtype == np.uint8
        assert np.array_equal(out, video)  # identity pipeline: trimming kept the real frames, in order
    assert sorted(set(seen)) == list(VALID_LENGTHS)


@pytest.mark.slow
@pytest.mark.parametrize("frames", [1, 85, 86, 93, 197])
def test_backend_end_to_end_lengths(backend, frames):
    video, mask = clip(frames, seed=frames)
    out = backend.remove(RemovalRequest(video, mask, "an empty lawn", seed=7))
    assert out.shape == video.shape and out.dtype == np.uint8
    keep = mask == 255
    assert np.array_equal(out[keep], video[keep])  # contract: keep pixels bit-identical


@pytest.mark.parametrize("frames", [5, 13, 85])
def test_pipeline_returns_as_many_frames_as_it_gets(void, frames):
    video, mask = clip(frames)
    out = void.pipeline(video, mask, prompt="a clean street", num_inference_steps=1,
                        generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, frames, H, W, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


# --- decode ------------------------------------------------------------------------------------------------

def test_vae_decodes_4t_minus_3_frames(void):
    vae = void.pipeline.vae
    stock = type(vae).__mro__[1](**vae.config)  # plain AutoencoderKLCogVideoX, same weights
    stock.load_state_dict(vae.state_dict())
    with torch.no_grad():
        for latents in (1, 2, 3, 4, 6, 22, 24):
            z = torch.randn(1, 16, latents, 2, 2, generator=torch.Generator().manual_seed(latents))
            assert vae.decode(z).sample.shape[2] == 4 * latents - 3
            if latents % 2 == 0:  # what the note measured for stock diffusers: 4T, 3 frames too many
                assert stock.decode(z).sample.shape[2] == 4 * latents
    # 8m+5 frames encode to an even latent count and decode back to the same length
    with torch.no_grad():
        for frames in (5, 13, 85, 93):
            x = torch.zeros(1, 3, frames, 16, 16)
            z = vae.encode(x).latent_dist.mode()
            assert z.shape[2] == (frames - 1) // 4 + 1 and z.shape[2] % 2 == 0
            assert vae.decode(z).sample.shape[2] == frames


def test_pipeline_refuses_a_stock_vae(void):
    p = void.pipeline
    stock = type(p.vae).__mro__[1](**p.vae.config)
    with pytest.raises(TypeError, match="4T-3"):
        VoidPass1Pipeline(p.tokenizer, p.text_encoder, stock, p.transformer, p.scheduler)
    assert isinstance(AutoencoderKLVoid.from_vae(stock), AutoencoderKLVoid)


# --- masks and conditioning --------------------------------------------------------------------------------

def test_quadmask_mapping_matches_reference_table():
    q = torch.tensor([0, 63, 127, 255], dtype=torch.uint8)
    # reference note section 1.4: pass 1 VAE-mask input
    assert quadmask_to_vae_mask(q).tolist() == pytest.approx([0.0, 0.0, 128 / 255, 1.0], abs=1e-7)
    # pass 2 as the reference runs it (binarized): affected becomes remove
    assert quadmask_to_vae_mask(q, binarize=True).tolist() == [0.0, 0.0, 0.0, 1.0]
    # stage A thresholds on off-level values (<=31, <=95, <=191, else)
    off = torch.tensor([31, 32, 95, 96, 191, 192], dtype=torch.uint8)
    assert quadmask_to_vae_mask(off).tolist() == pytest.approx([0.0, 0.0, 0.0, 128 / 255, 128 / 255, 1.0])


def test_conditions_are_mask_video_in_0_1_and_full_video_in_minus1_1(void, monkeypatch):
    pipe = void.pipeline
    video, mask = clip(13)
    seen = []
    real_encode = pipe.vae.encode

    def spy(x, *a, **k):
        seen.append(x.detach().clone())
        return real_encode(x, *a, **k)

    monkeypatch.setattr(pipe.vae, "encode", spy)
    cond = pipe.prepare_mask_latents(torch.as_tensor(video), torch.as_tensor(mask), torch.float32,
                                     torch.device("cpu"), None)
    assert cond.shape == (1, 4, 32, H // 8, W // 8)  # 16 mask + 16 video channels per latent pixel
    mask_in, video_in = seen
    assert mask_in.shape == video_in.shape == (1, 3, 13, H, W)
    assert torch.equal(mask_in[:, 0], mask_in[:, 1]) and torch.equal(mask_in[:, 0], mask_in[:, 2])
    m = mask_in[0, 0]
    q = torch.as_tensor(mask)
    assert torch.all(m[q == 0] == 0) and torch.all(m[q == 63] == 0) and torch.all(m[q == 255] == 1)
    assert torch.allclose(m[q == 127], torch.tensor(128 / 255))
    # the *full* original video, object included, in [-1, 1] (zero_out_mask_region=False)
    expected = torch.as_tensor(video).permute(3, 0, 1, 2)[None].float() / 255 * 2 - 1
    assert torch.allclose(video_in, expected)


def test_noise_augmentation_is_seeded_and_skips_minus_one(void, monkeypatch):
    pipe = void.pipeline
    video, mask = clip(5)
    video[:, :4] = 0  # exactly -1 after scaling: the reference leaves these pixels alone
    seen = []
    real_encode = pipe.vae.encode
    monkeypatch.setattr(pipe.vae, "encode", lambda x, *a, **k: seen.append(x.clone()) or real_encode(x, *a, **k))
    args = (torch.as_tensor(video), torch.as_tensor(mask), torch.float32, torch.device("cpu"))
    a = pipe.prepare_mask_latents(*args, torch.Generator().manual_seed(1), noise_aug_strength=0.0563)
    b = pipe.prepare_mask_latents(*args, torch.Generator().manual_seed(1), noise_aug_strength=0.0563)
    c = pipe.prepare_mask_latents(*args, torch.Generator().manual_seed(2), noise_aug_strength=0.0563)
    assert torch.equal(a, b) and not torch.equal(a, c)
    augmented = seen[1]
    assert torch.all(augmented[:, :, :, :4] == -1)
    assert (augmented[:, :, :, 4:] - (torch.as_tensor(video[:, 4:]).permute(3, 0, 1, 2)[None] / 255 * 2 - 1)
            ).abs().max() > 0.01


# --- temporal windows --------------------------------------------------------------------------------------

def test_windows_follow_the_reference_with_an_end_anchored_last_window():
    assert temporal_windows(22) == [(0, 22)]
    assert temporal_windows(24) == [(0, 22), (2, 24)]  # reference: (18, 24), a 6-latent tail
    assert temporal_windows(50) == [(0, 22), (18, 40), (28, 50)]  # reference: (36, 50)
    for latents in range(22, 51, 2):  # every valid clip: full-length windows covering the clip
        windows = temporal_windows(latents)
        assert windows[0][0] == 0 and windows[-1][1] == latents
        assert all(e - s == 22 for s, e in windows)
        assert all(b[0] < a[1] for a, b in zip(windows, windows[1:]))  # consecutive windows overlap
        assert all(s % 2 == 0 for s, _ in windows)


def test_window_weights_ramp_like_the_reference():
    windows = temporal_windows(50)
    w = window_weights(windows)
    assert w[0][-4:].tolist() == pytest.approx([0.8, 0.6, 0.4, 0.2])  # ramp-out over the overlap of 4
    assert w[1][:4].tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8])  # ramp-in
    assert w[0][:18].eq(1).all() and w[2][-1] == 1
    total = torch.zeros(50)
    for (s, e), weight in zip(windows, w):
        total[s:e] += weight
    assert torch.allclose(total, torch.ones(50))  # overlapping ramps sum to 1


@pytest.mark.slow
def test_batched_windows_equal_one_call_per_window(void):
    video, mask = clip(21)  # 6 latents: windows of 4 overlapping by 2 -> [0, 4), [2, 6)
    runs = [void.pipeline(video, mask, prompt="x", num_inference_steps=2, window_size=4, window_overlap=2,
                          batch_windows=batched, generator=torch.Generator().manual_seed(5)).frames
            for batched in (False, True)]
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-5)


# --- determinism -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_same_seed_same_frames_whatever_the_chunk_order(backend):
    a = RemovalRequest(*clip(85, seed=1), prompt="an empty road", seed=11)
    b = RemovalRequest(*clip(93, seed=2), prompt="a quiet room", seed=12)
    a1, b1 = backend.remove(a), backend.remove(b)
    b2, a2 = backend.remove(b), backend.remove(a)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    other = backend.remove(RemovalRequest(a.frames, a.quadmask, a.prompt, seed=99))
    assert not np.array_equal(a1, other)


# --- the backend through the registry ----------------------------------------------------------------------

def test_get_backend_void_end_to_end(backend, void_tiny_dir):
    assert isinstance(backend, RemovalBackend) and isinstance(backend, VoidBackend)
    assert backend.name == "void"
    assert backend.weights_sha256[:12] in backend.version and "steps2" in backend.version
    video, mask = clip(46, seed=3)
    fractions = []
    out = backend.remove(RemovalRequest(video, mask, "a clean street", seed=5), progress=fractions.append)
    assert out.shape == video.shape and out.dtype == np.uint8
    keep = mask == 255
    assert np.array_equal(out[keep], video[keep])
    assert not np.array_equal(out[~keep], video[~keep])  # the hole was regenerated
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert len(fractions) == 2 + backend.steps


def test_version_changes_with_sampling_params(void_tiny_dir, void_cache_dir, backend):
    other = VoidBackend(str(void_tiny_dir), steps=3, guidance=2.0, negative_prompt="blurry", cache_dir=void_cache_dir)
    assert other.version != backend.version and "cfg2" in other.version and "steps3" in other.version
    assert VoidBackend.identity_of(str(void_tiny_dir), steps=3, guidance=2.0, negative_prompt="blurry",
                                   cache_dir=void_cache_dir) == other.identity
    video, mask = clip(5, seed=4)
    out = other.pipeline(video, mask, prompt="x", negative_prompt="blurry", guidance_scale=2.0,
                         num_inference_steps=1, generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, 5, H, W, 3)  # the CFG path runs (batch of 2 per transformer call)


def test_identity_of_is_what_the_loaded_backend_reports(backend, void_tiny_dir, void_cache_dir):
    identity = VoidBackend.identity_of(str(void_tiny_dir), steps=2, cache_dir=void_cache_dir)
    assert identity == backend.identity == BackendIdentity("void", backend.version, backend.weights_sha256)
    assert identity.pass1 is None and backend.device == "cpu"
    assert "aug0.0563" in identity.version  # noise_aug=None follows the tiny config's add_noise_in_inpaint_model
    no_aug = VoidBackend.identity_of(str(void_tiny_dir), steps=2, noise_aug=0.0, cache_dir=void_cache_dir)
    assert "+aug0+" in no_aug.version
    assert "compile0" in VoidBackend.identity_of(str(void_tiny_dir), steps=2, compile=True, device="cpu",
                                                 cache_dir=void_cache_dir).version  # compiles on CUDA only


def test_identity_of_loads_no_model(backend, void_tiny_dir, tmp_path, void_loads_nothing):
    """From config files and weight hashes alone (a fresh hash cache: the weights are read, never loaded)."""
    assert VoidBackend.identity_of(str(void_tiny_dir), steps=2, cache_dir=tmp_path) == backend.identity
    with pytest.raises(ValueError, match="steps"):
        VoidBackend.identity_of(str(void_tiny_dir), steps=0, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="void_pass1.safetensors"):
        VoidBackend.identity_of(str(tmp_path), cache_dir=tmp_path)


# --- inputs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames,size,bad_value,message", [
    (84, (32, 32), None, "8m\\+5"),
    (205, (32, 32), None, "at most 197"),
    (13, (24, 32), None, "divisible by 16"),
    (13, (32, 32), 3, "re-quantize"),
])
def test_check_inputs_names_the_problem(void, frames, size, bad_value, message):
    video, mask = clip(frames, h=size[0], w=size[1])
    if bad_value is not None:
        mask[0, 0, 0] = bad_value
    with pytest.raises(ValueError, match=message):
        void.pipeline(video, mask, prompt="x", num_inference_steps=1)


def test_step_callback_and_latent_output(void):
    video, mask = clip(13)
    calls = []

    def callback(pipe, i, t, tensors):
        calls.append((i, int(t), tuple(tensors["latents"].shape)))
        return {}

    latents = void.pipeline(video, mask, prompt="x", num_inference_steps=3, output_type="latent",
                            callback_on_step_end=callback, generator=torch.Generator().manual_seed(0)).frames
    assert latents.shape == (1, 4, 16, H // 8, W // 8)
    assert [c[0] for c in calls] == [0, 1, 2] and calls[0][1] == 999  # trailing DDIM starts at t=999
