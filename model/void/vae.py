"""The CogVideoX VAE with VOID's frame-exact decode: T latents become 4T-3 frames, not 4T.

Reference behaviour matched (reference/void_inference.md, section 2.5 "VAE"): VideoX-Fun's VAE,
which VOID was trained and sampled with, decodes
1. latent 0 alone in first-frame mode (no temporal upsampling) -> 1 frame;
2. then latents in pairs, [1:3], [3:5], ... -> 8 frames each;
3. then, for an even latent count, a trailing single latent that *is* temporally upsampled -> 4 frames;
carrying the causal-conv cache across the pieces. That is 4T-3 frames: 22 latents -> 85 frames,
50 -> 197. Stock diffusers decodes `[0:2], [2:4], ...` and returns 4T frames (88 for 22 latents),
shifted by 3 frames, so VOID's clip lengths never come back frame-exact.

Encoding is unchanged (the note verified diffusers' encode bit-identical to VideoX-Fun's); the weights
and state-dict keys are the stock ones, so `AutoencoderKLVoid.from_pretrained(base/vae)` loads the
base model's VAE as is. This is a re-implementation from the note's description, not a port.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLCogVideoX
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.upsampling import CogVideoXUpsample3D


class VoidUpsample3D(CogVideoXUpsample3D):
    """`CogVideoXUpsample3D` that can also double time for a lone frame (the trailing single latent).

    Stock behaviour for a single frame is "first-frame mode": spatial upsampling only. While
    `upsample_lone_frame_in_time` is set, a one-frame input is upsampled in time like a pair is
    (nearest, 1 -> 2), which is what the reference does for the last latent of an even count.
    """

    upsample_lone_frame_in_time: bool = False

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not (self.compress_time and self.upsample_lone_frame_in_time and inputs.shape[2] == 1):
            return super().forward(inputs)
        inputs = F.interpolate(inputs, scale_factor=2.0)  # (b, c, 1, h, w) -> (b, c, 2, 2h, 2w), nearest
        b, c, t, h, w = inputs.shape
        inputs = inputs.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        inputs = self.conv(inputs)
        return inputs.reshape(b, t, *inputs.shape[1:]).permute(0, 2, 1, 3, 4)


class AutoencoderKLVoid(AutoencoderKLCogVideoX):
    """`AutoencoderKLCogVideoX` whose decode follows VOID's first-latent / pairs / trailing-single schedule."""

    # No __init__ override: diffusers builds models from the __init__ signature, which must stay the parent's.
    # The upsamplers become VoidUpsample3D (same parameters) the first time `_decode` runs.

    @classmethod
    def from_vae(cls, vae: AutoencoderKLCogVideoX) -> "AutoencoderKLVoid":
        """Turn a stock diffusers VAE into this class in place (same weights, same keys)."""
        if not isinstance(vae, AutoencoderKLCogVideoX):
            raise TypeError(f"expected an AutoencoderKLCogVideoX, got {type(vae).__name__}")
        vae.__class__ = cls
        _use_void_upsamplers(vae)
        return vae

    def _decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | torch.Tensor:
        if self.use_tiling:
            # Tiled decode would need the same schedule per tile (reference note, section 2.5); VOID runs
            # untiled at 384x672, so refuse rather than silently return 4T frames.
            raise NotImplementedError("AutoencoderKLVoid does not support tiled decoding; call disable_tiling()")
        _use_void_upsamplers(self)
        num_frames = z.shape[2]
        if num_frames == 0:
            raise ValueError("cannot decode zero latent frames")
        pieces = [(0, 1, False)]  # (start, end, upsample a lone frame in time)
        start = 1
        while start < num_frames:
            end = min(start + 2, num_frames)
            pieces.append((start, end, end - start == 1))
            start = end

        conv_cache = None
        decoded = []
        for start, end, lone_in_time in pieces:
            z_piece = z[:, :, start:end]
            if self.post_quant_conv is not None:
                z_piece = self.post_quant_conv(z_piece)
            _set_lone_frame_time_upsampling(self, lone_in_time)
            try:
                frames, conv_cache = self.decoder(z_piece, conv_cache=conv_cache)
            finally:
                _set_lone_frame_time_upsampling(self, False)
            decoded.append(frames)
        dec = torch.cat(decoded, dim=2)
        if not return_dict:
            return (dec,)
        return DecoderOutput(sample=dec)


def _use_void_upsamplers(vae: AutoencoderKLCogVideoX) -> None:
    for block in vae.decoder.up_blocks:
        for upsampler in block.upsamplers or ():
            if isinstance(upsampler, CogVideoXUpsample3D) and not isinstance(upsampler, VoidUpsample3D):
                upsampler.__class__ = VoidUpsample3D  # same parameters and keys; only forward differs


def _set_lone_frame_time_upsampling(vae: AutoencoderKLCogVideoX, on: bool) -> None:
    for block in vae.decoder.up_blocks:
        for upsampler in block.upsamplers or ():
            upsampler.upsample_lone_frame_in_time = on
