"""VOID (Netflix's object-and-effect removal model) re-implemented on diffusers components.

- `pipeline_void`: `VoidPass1Pipeline`, `VoidOutput` and the behaviour they match (mask mapping, windows).
- `vae`: `AutoencoderKLVoid`, the CogVideoX VAE with VOID's 4T-3 frame decode.
- `loading`: strict, hub-free loading from a local or fsspec model directory; prompt-embedding cache.
- `offload`: model-level CPU offload without accelerate.
- `backend`: `VoidBackend`, the `void` removal backend (`model.backend.get_backend("void", model_dir=...)`).
- `tiny`: `write_tiny_model(dir)`, a tiny random-weight model directory for tests and CPU demos.

Nothing is imported here so that `import model.void` stays cheap; import the submodule you need.
"""
