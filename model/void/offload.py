"""CPU offload without accelerate: the reference's `model_cpu_offload` and `sequential_cpu_offload` (section 2.4).

diffusers' `enable_model_cpu_offload()` / `enable_sequential_cpu_offload()` need accelerate, and so does its
group offloading (`send_to_device`); this project's environment does not ship accelerate. The same two
behaviours, with plain forward hooks:
- `ModelOffload`: each component (text encoder, transformer, VAE) lives on the CPU and moves to the
  execution device, whole, when it is about to run; the component that ran before moves back. Peak device
  memory is the largest component plus activations (the transformer, about 11 GB in bf16) instead of all
  of them (about 21 GB).
- `SequentialOffload`: layer by layer (lowest memory, slowest).
Both tell the pipeline where to run through `_execution_device_override`.
"""
from __future__ import annotations

import torch


class _Hooks:
    """Forward hooks on modules that compute on `device`, taken off together."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self._handles = []

    def remove(self, pipe=None) -> None:
        """Take every hook off (and, given `pipe`, let it choose its device again)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if pipe is not None:
            pipe._execution_device_override = None


class ModelOffload(_Hooks):
    """Install model-level offload hooks on `pipe`'s components; `device` is where they run."""

    def __init__(self, pipe, device: torch.device | str, components=("text_encoder", "transformer", "vae")):
        super().__init__(device)
        self._resident: torch.nn.Module | None = None
        self._modules: list[torch.nn.Module] = []
        for name in components:
            module = getattr(pipe, name, None)
            if not isinstance(module, torch.nn.Module):
                continue
            module.to("cpu")
            self._modules.append(module)
            # The VAE runs through encode()/decode(), not forward(): hook its direct children instead.
            entry_points = list(module.children()) if name == "vae" else [module]
            for entry in entry_points:
                self._handles.append(entry.register_forward_pre_hook(self._make_hook(module)))
        pipe._execution_device_override = self.device

    def _make_hook(self, component: torch.nn.Module):
        def hook(_module, _args):
            self.onload(component)

        return hook

    def onload(self, component: torch.nn.Module) -> None:
        if self._resident is component:
            return
        if self._resident is not None:
            self._resident.to("cpu")
        component.to(self.device)
        self._resident = component

    def offload_all(self) -> None:
        if self._resident is not None:
            self._resident.to("cpu")
            self._resident = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


class SequentialOffload(_Hooks):
    """Layer-by-layer CPU offload without accelerate (the reference's `sequential_cpu_offload`).

    Every module that owns weights gets them moved to `device` right before its forward and back to the CPU
    right after, so device memory holds one layer's weights plus activations. Slow (every weight crosses
    PCIe every call), for GPUs too small for the transformer.
    """

    def __init__(self, modules: dict[str, torch.nn.Module], device: torch.device | str, pipe=None):
        super().__init__(device)
        for module in modules.values():
            if module is None:
                continue
            module.to("cpu")
            for sub in module.modules():
                if any(p is not None for p in sub._parameters.values()) or any(
                        b is not None for b in sub._buffers.values()):
                    self._handles.append(sub.register_forward_pre_hook(self._onload))
                    self._handles.append(sub.register_forward_hook(self._offload))
        if pipe is not None:
            pipe._execution_device_override = self.device

    def _onload(self, module, _args):
        _move_own_tensors(module, self.device)

    def _offload(self, module, _args, _output):
        _move_own_tensors(module, torch.device("cpu"))

    def offload_all(self) -> None:
        """Nothing stays resident between calls."""


def _move_own_tensors(module: torch.nn.Module, device: torch.device) -> None:
    """Move only `module`'s own parameters and buffers (not its children's), keeping Parameter identity."""
    for param in module._parameters.values():
        if param is not None and param.device != device:
            param.data = param.data.to(device)
    for name, buf in module._buffers.items():
        if buf is not None and buf.device != device:
            module._buffers[name] = buf.to(device)
