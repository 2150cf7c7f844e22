"""Loading VOID pass 1: strict checkpoint keys, hashes, fsspec copies, tokenizer, prompt-embedding cache, modes."""
from __future__ import annotations

import hashlib
import os
import shutil
import time

import fsspec
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model.void.components import load_transformer
from model.void.files import file_sha256, resolve_model_dir
from model.void.loading import load_void_pass1
from model.void.offload import model_offload, release, sequential_offload
from model.void.prompts import PromptEmbeddings
from model.void.tokenizer import load_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def copy_with_weights(src, dst, state):
    shutil.copytree(src, dst)
    save_file(state, str(dst / "void_pass1.safetensors"))
    return dst


def test_strict_loading_names_missing_and_unexpected_keys(void_tiny_dir, tmp_path):
    state = load_file(str(void_tiny_dir / "void_pass1.safetensors"))
    state.pop("proj_out.weight")
    state["transformer_blocks.7.attn1.to_q.weight"] = torch.zeros(2, 2)
    bad = copy_with_weights(void_tiny_dir, tmp_path / "bad", state)
    with pytest.raises(ValueError) as err:
        load_transformer(bad, bad / "void_pass1.safetensors", torch.float32, torch.device("cpu"))
    message = str(err.value)
    assert "missing keys (1): proj_out.weight" in message
    assert "unexpected keys (1): transformer_blocks.7.attn1.to_q.weight" in message


def test_strict_loading_rejects_the_33_channel_base_weights(void_tiny_dir, tmp_path):
    base = load_file(str(void_tiny_dir / "transformer" / "diffusion_pytorch_model.safetensors"))
    bad = copy_with_weights(void_tiny_dir, tmp_path / "base_as_void", base)
    with pytest.raises(ValueError, match=r"patch_embed\.proj\.weight: checkpoint \(32, 264\) vs model \(32, 384\)"):
        load_void_pass1(bad, cache_dir=tmp_path / "cache")


def test_transformer_gets_48_channels_and_the_target_dtype(void_tiny_dir):
    model, info = load_transformer(void_tiny_dir, void_tiny_dir / "void_pass1.safetensors", torch.bfloat16,
                                   torch.device("cpu"))
    assert model.config.in_channels == 48 and model.patch_embed.proj.weight.shape[1] == 48 * 2 * 2 * 2
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in model.parameters())
    assert info.add_noise_in_inpaint_model is True and "add_noise_in_inpaint_model" in info.ignored_config_keys
    expected = load_file(str(void_tiny_dir / "void_pass1.safetensors"))
    assert torch.equal(model.state_dict()["proj_out.weight"], expected["proj_out.weight"].to(torch.bfloat16))


def test_sha256_recorded_and_cached(void_tiny_dir, tmp_path):
    weights = void_tiny_dir / "void_pass1.safetensors"
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert file_sha256(weights, tmp_path) == expected
    assert expected in (tmp_path / "sha256.json").read_text()
    model = load_void_pass1(void_tiny_dir, cache_dir=tmp_path)
    assert model.weights_sha256 == expected


def test_sha256_memo_sees_a_file_rewritten_in_place(tmp_path):
    """Same inode, size and (restored) mtime: the changed ctime makes the memo hash the new bytes."""
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"a" * 64)
    before = weights.stat()
    assert file_sha256(weights, tmp_path) == hashlib.sha256(b"a" * 64).hexdigest()
    time.sleep(0.05)  # past the file system's timestamp granularity
    weights.write_bytes(b"b" * 64)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert weights.stat().st_ino == before.st_ino and weights.stat().st_mtime_ns == before.st_mtime_ns
    assert file_sha256(weights, tmp_path) == hashlib.sha256(b"b" * 64).hexdigest()


def test_fsspec_uri_is_copied_once_to_the_local_cache(void_tiny_dir, tmp_path, monkeypatch):
    fs = fsspec.filesystem("memory")
    for path in void_tiny_dir.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"/void-model/{path.relative_to(void_tiny_dir).as_posix()}", path.read_bytes())
    local = resolve_model_dir("memory://void-model", cache_dir=tmp_path)
    assert (local / ".complete").exists() and (local / "void_pass1.safetensors").exists()
    spiece = ("tokenizer", "spiece.model")
    assert local.joinpath(*spiece).read_bytes() == void_tiny_dir.joinpath(*spiece).read_bytes()

    def no_copy(*args, **kwargs):
        raise AssertionError("copied twice")

    monkeypatch.setattr(type(fs), "get_file", no_copy)
    assert resolve_model_dir("memory://void-model", cache_dir=tmp_path) == local
    model = load_void_pass1("memory://void-model", cache_dir=tmp_path)
    assert model.model_dir == local
    fs.rm("/void-model", recursive=True)


def test_missing_model_dir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        resolve_model_dir(tmp_path / "nope")


def test_tokenizer_from_spiece_model_matches_sentencepiece(void_tiny_dir):
    import sentencepiece as spm

    tokenizer = load_tokenizer(void_tiny_dir / "tokenizer")
    sp = spm.SentencePieceProcessor(model_file=str(void_tiny_dir / "tokenizer" / "spiece.model"))
    for text in ("a clean empty street", "The  grass field, at NIGHT!", "ｆｕｌｌwidth ①"):
        assert tokenizer(text).input_ids == sp.encode(text) + [1]  # T5 appends </s> (id 1)
    ids = tokenizer(["x"], padding="max_length", max_length=226, truncation=True).input_ids[0]
    assert len(ids) == 226 and ids[-1] == 0  # padded with <pad> (id 0)


def test_prompt_embeddings_computed_once_and_kept_on_disk(void_tiny_dir, tmp_path):
    cpu = torch.device("cpu")
    cache = PromptEmbeddings(void_tiny_dir, cpu, torch.float32, store_dir=tmp_path / "emb", cache_dir=tmp_path,
                             release_after_use=True)
    a = cache.get("a clean street")
    again = cache.get("a clean street")
    assert cache.encoded == 1 and again is a and a.shape == (1, 226, 32)
    assert cache._text_encoder is None  # released after encoding (offload modes)
    fresh = PromptEmbeddings(void_tiny_dir, cpu, torch.float32, store_dir=tmp_path / "emb", cache_dir=tmp_path)
    assert torch.equal(fresh.get("a clean street"), a) and fresh.encoded == 0
    assert not torch.equal(fresh.get("an empty road"), a) and fresh.encoded == 1
    assert cache.key("x") != PromptEmbeddings(void_tiny_dir, cpu, torch.bfloat16, cache_dir=tmp_path).key("x")


def test_memory_modes(void_tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown memory mode"):
        load_void_pass1(void_tiny_dir, mode="qfloat8", cache_dir=tmp_path)
    model = load_void_pass1(void_tiny_dir, mode="model_offload", device="cpu", cache_dir=tmp_path)
    assert model.mode == "full"  # offloading only means something on CUDA


def _offload_inputs(seed: int):
    video = np.random.default_rng(seed).integers(0, 256, (13, 32, 32, 3), dtype=np.uint8)
    mask = np.full((13, 32, 32), 255, np.uint8)
    mask[:, 8:24, 4:28] = 0
    mask[:, 4:8, 4:28] = 127
    return video, mask


def test_model_offload_is_diffusers_own_and_gives_the_same_frames(void_tiny_dir, tmp_path):
    """Model offload through diffusers and accelerate (as the reference), exercised on the CPU: every component
    is hooked, work runs on the offload device, frames match the resident run."""
    from accelerate.hooks import CpuOffload

    model = load_void_pass1(void_tiny_dir, cache_dir=tmp_path)
    pipe = model.pipeline
    video, mask = _offload_inputs(0)
    embeds = model.prompts.get("x")

    def run():
        return pipe(video, mask, prompt_embeds=embeds, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0)).frames

    plain = run()
    model_offload(pipe, "cpu")
    try:
        assert isinstance(pipe.transformer._hf_hook, CpuOffload) and isinstance(pipe.vae._hf_hook, CpuOffload)
        assert pipe._execution_device.type == "cpu"
        offloaded = run()
        # diffusers runs offloaded work on "cpu:0": float frames agree to 1.6e-6 (a 300th of a code)
        assert np.abs(offloaded - plain).max() < 1e-5
        release(pipe)  # after a chunk: nothing resident, hooks still in place for the next one
        assert isinstance(pipe.transformer._hf_hook, CpuOffload)
        assert np.abs(run() - plain).max() < 1e-5
    finally:
        pipe.remove_all_hooks()


def test_sequential_offload_gives_the_same_frames_and_takes_the_pass2_swap(void_tiny_dir, tmp_path):
    """Layer-by-layer offload through accelerate, on the CPU: the modules hold meta tensors, frames are identical,
    and pass 2's in-place weight swap writes into the weights accelerate holds (not into the meta tensors)."""
    from model.void.pass2 import PASS2_WEIGHTS, load_transformer_weights_in_place

    video, mask = _offload_inputs(1)
    resident = load_void_pass1(void_tiny_dir, cache_dir=tmp_path)
    offloaded = load_void_pass1(void_tiny_dir, cache_dir=tmp_path)
    embeds = resident.prompts.get("x")
    sequential_offload({"transformer": offloaded.pipeline.transformer, "vae": offloaded.pipeline.vae}, "cpu")
    assert next(offloaded.pipeline.transformer.parameters()).is_meta

    def run(model):
        return model.pipeline(video, mask, prompt_embeds=embeds, num_inference_steps=2,
                              generator=torch.Generator().manual_seed(0)).frames

    assert np.array_equal(run(offloaded), run(resident))
    for model in (resident, offloaded):
        load_transformer_weights_in_place(model.pipeline.transformer, void_tiny_dir / PASS2_WEIGHTS)
    swapped = run(resident)
    assert np.array_equal(run(offloaded), swapped)
    load_transformer_weights_in_place(resident.pipeline.transformer, void_tiny_dir / "void_pass1.safetensors")
    assert not np.array_equal(run(resident), swapped)  # the two checkpoints differ: the swap did something

    t5 = PromptEmbeddings(void_tiny_dir, torch.device("cpu"), torch.float32, cache_dir=tmp_path,
                          sequential_offload=True)  # T5 offloaded layer by layer encodes the same embeddings
    assert torch.equal(t5.get("x"), embeds)
