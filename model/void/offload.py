"""Whole-model CPU offload without accelerate (the reference's `model_cpu_offload`, section 2.4).

diffusers' `enable_model_cpu_offload()` needs accelerate, which this project's environment does not ship.
This does the same job with plain forward pre-hooks: each component (text encoder, transformer, VAE)
lives on the CPU and moves to the execution device, whole, when it is about to run; the component that
ran before moves back. Peak device memory is the largest component plus activations (the transformer,
about 11 GB in bf16) instead of all of them (about 21 GB).
"""
from __future__ import annotations


import torch



class ModelOffload:
    """Install model-level offload hooks on `pipe`'s components; `device` is where they run."""

    def __init__(self, pipe, device: torch.device | str, components=("text_encoder", "transformer", "vae")):
        self.device = torch.device(device)
        self._resident: torch.nn.Module | None = None
        self._handles = []
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

    def remove(self, pipe=None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if pipe is not None:
            pipe._execution_device_override = None
