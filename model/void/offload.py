"""CPU offload through accelerate, as VOID's reference does it (section 2.4): diffusers' own two modes.

- `model_offload(pipe, device)`: diffusers' `enable_model_cpu_offload`: each component (transformer,
  VAE; T5 is handled by `PromptEmbeddings`) lives on the CPU and moves to the device whole when it
  is about to run; the one that ran before moves back. Peak device memory is the transformer plus
  activations (about 11 GB of bf16 weights) instead of every component (about 21 GB).
- `sequential_offload(modules, device)`: accelerate's `cpu_offload` per module: the weights stay in CPU
  memory (the hooks' weights map) and each layer's weights go to the device for its forward only
  (lowest memory, slowest).
`release(pipe)` after a chunk moves whatever is still resident back to the CPU. The pass-2 weight
swap writes into `live_weights(module)`: the parameters, or, for a sequentially offloaded module
(whose parameters are meta tensors), the CPU tensors accelerate holds for them.
"""
from __future__ import annotations

import torch


def model_offload(pipe, device: torch.device | str) -> None:
    """Components to `device` one at a time while they run, back to the CPU after (diffusers + accelerate)."""
    pipe.enable_model_cpu_offload(device=device)


def sequential_offload(modules: dict[str, torch.nn.Module | None], device: torch.device | str) -> None:
    """Layer-by-layer offload of each module (accelerate's `cpu_offload`), for GPUs too small for the transformer."""
    from accelerate import cpu_offload

    for module in modules.values():
        if module is not None:
            cpu_offload(module, execution_device=torch.device(device), offload_buffers=True)


def release(pipe) -> None:
    """After a chunk in model-offload mode: nothing stays on the device (a no-op without offload hooks)."""
    pipe.maybe_free_model_hooks()


def live_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Name -> the tensor that really holds each weight of `module` (sharing storage: writes change the model).

    A sequentially offloaded module holds meta tensors; its weights live in accelerate's weights map.
    """
    state = module.state_dict()
    offloaded = {}
    for sub in module.modules():
        weights_map = getattr(getattr(sub, "_hf_hook", None), "weights_map", None)
        if weights_map is not None:
            offloaded = getattr(weights_map, "dataset", weights_map)
            break
    live = {name: offloaded.get(name, tensor) if tensor.is_meta else tensor for name, tensor in state.items()}
    missing = [name for name, tensor in live.items() if tensor.is_meta]
    if missing:
        raise RuntimeError(f"{len(missing)} weights of {type(module).__name__} are only meta tensors "
                           f"(e.g. {missing[0]}): cannot write into them")
    return live
