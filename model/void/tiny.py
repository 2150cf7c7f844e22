"""A tiny random-weight VOID model directory, laid out like the real one, for tests and CPU demos.

    python -m model.void.tiny DIR

writes, in seconds on a CPU:

    DIR/model_index.json
    DIR/scheduler/scheduler_config.json        the CogVideoX DDIM config (v-prediction, zero-SNR, trailing)
    DIR/text_encoder/{config.json,model.safetensors}             T5EncoderModel, 2 layers, d_model 32
    DIR/tokenizer/{spiece.model,tokenizer_config.json,special_tokens_map.json}
                                               a SentencePiece unigram model trained here, T5 id layout
    DIR/transformer/{config.json,diffusion_pytorch_model.safetensors}
                                               the *base* transformer: in_channels 33, as in CogVideoX-Fun InP
    DIR/vae/{config.json,diffusion_pytorch_model.safetensors}    AutoencoderKLCogVideoX, 16 latent channels
    DIR/void_pass1.safetensors                 the fine-tuned transformer: in_channels 48 (16 + 16 + 16)
    DIR/void_pass2.safetensors                 pass 2's transformer, same shapes, other random weights
    DIR/raft/raft_small.pth                    a random-weight torchvision RAFT-small state dict, where the real
                                               RAFT weights go (`model.void.flow`; pass raft_model="raft_small")

The classes are the real ones with small configs, so loading, strict key checks, the 48-channel input,
windowing and the 4T-3 decode all run the production code paths; only the numbers are meaningless.
Frames must be multiples of 16 in height and width (e.g. 32x32).
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import torch

PROMPT_CORPUS = (
    "a clean empty street with parked cars and trees",
    "the grass field is empty and the shadows are gone",
    "a quiet room with a wooden table and a window",
    "water ripples settle on the calm surface of the pool",
    "an empty road at night lit by street lamps",
    "the trampoline stands alone in the garden",
)

TEXT_DIM = 32
TRANSFORMER_CONFIG = dict(
    num_attention_heads=2, attention_head_dim=16,  # RoPE splits the head 4 (t) + 6 (h) + 6 (w)
    in_channels=33,  # the base InP model; VOID's loader builds 48 (section 2.3 of the reference note)
    out_channels=16, time_embed_dim=32, text_embed_dim=TEXT_DIM, num_layers=2,
    sample_width=4, sample_height=4, sample_frames=85,
    patch_size=2, patch_size_t=2, temporal_compression_ratio=4, max_text_seq_length=226,
    use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False, patch_bias=True,
)
VAE_CONFIG = dict(
    block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, latent_channels=16,
    temporal_compression_ratio=4, scaling_factor=0.7, sample_height=32, sample_width=32,
)
# The scheduler config the reference note expects for the base model (section 2.1).
SCHEDULER_CONFIG = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
    set_alpha_to_one=True, snr_shift_scale=1.0, clip_sample=False, steps_offset=0,
)


def write_tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight VOID model directory at `directory` (created; existing files overwritten)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    vocab_size = _write_tokenizer(root / "tokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = T5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, relative_attention_max_distance=32,
                          feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0, is_encoder_decoder=False, use_cache=False)
        T5EncoderModel(config).eval().save_pretrained(root / "text_encoder")
        AutoencoderKLCogVideoX(**VAE_CONFIG).save_pretrained(root / "vae")
        base = CogVideoXTransformer3DModel(**TRANSFORMER_CONFIG)
        base.save_pretrained(root / "transformer")
        # VideoX-Fun's key for noise on the reference video; diffusers does not know it, VOID's loader reads it.
        cfg_path = root / "transformer" / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["add_noise_in_inpaint_model"] = True
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
        for name in ("void_pass1.safetensors", "void_pass2.safetensors"):  # same shapes, other random weights
            void = CogVideoXTransformer3DModel(**{**TRANSFORMER_CONFIG, "in_channels": 48})
            save_file({k: v.contiguous() for k, v in void.state_dict().items()}, str(root / name),
                      metadata={"format": "pt"})
        _write_raft_small(root / "raft")
    CogVideoXDDIMScheduler(**SCHEDULER_CONFIG).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "CogVideoXFunInpaintPipeline",
        "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5Tokenizer"],
        "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
    }, indent=2))
    return root


def _write_raft_small(directory: Path) -> None:
    """torchvision's RAFT-small with random weights, saved like the released `.pth` (a plain state dict)."""
    from torchvision.models.optical_flow import raft_small

    directory.mkdir(parents=True, exist_ok=True)
    torch.save(raft_small(weights=None, progress=False).state_dict(), directory / "raft_small.pth")


def _write_tokenizer(directory: Path) -> int:
    """Train a small SentencePiece unigram model with T5's id layout (<pad> 0, </s> 1, <unk> 2); its vocab size."""
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(PROMPT_CORPUS * 20), model_writer=model, vocab_size=96, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        normalization_rule_name="nmt_nfkc", hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    (directory / "spiece.model").write_bytes(model.getvalue())
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "model_max_length": 226, "extra_ids": 0, "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "additional_special_tokens": [],
    }, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps({
        "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}, indent=2))
    return spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m model.void.tiny DIR", file=sys.stderr)
        return 2
    print(write_tiny_model(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
