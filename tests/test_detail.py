"""Native detail: the removal region at plate resolution, and VOID's pixels only where they are needed."""
from __future__ import annotations

import numpy as np
import pytest

from shots import detail
from shots import quadmask as qm
from shots.media import read_frames
from shots.sample_edit import write_sample_edit
from storage import manifest
from storage.store import ArtifactStore
from tasks.spec import BackendSpec, DeliverySpec, RunSpec
from tests.test_flow import _seq_frames


def test_region_mask_grows_the_remove_region_only():
    mask = np.full((40, 40), 255, np.uint8)
    mask[10:20, 10:20] = 0
    mask[25:30, 10:20] = 127
    grown = detail.region_mask(mask, margin=3)
    assert (grown[7:23, 10:20] == 0).all() and grown[6, 15] == 255  # 3 px more of remove, not 4
    assert (grown[25:30, 10:20] == 127).all()  # the affected region stays what it is
    assert (grown[mask == 0] == 0).all() and (grown[35:, :] == 255).all()


def test_windows_fit_the_memory_budget_and_overlap():
    one = detail.windows(300, 1080, 1920, 1, budget=2 << 30)  # 6 MB a frame: 197 fit
    assert len(one) == 2 and max(w.frames for w in one) <= 197 and one[1].start < one[0].end
    deep = detail.windows(300, 2160, 3840, 4, budget=2 << 30)  # float 4K: 100 MB a frame, 21 fit
    assert max(w.frames for w in deep) * 2160 * 3840 * 3 * 4 <= 2 << 30 and deep[-1].end == 300
    assert min(w.frames for w in detail.windows(300, 2160, 3840, 4, budget=1 << 20)) >= detail.MIN_WINDOW
    assert all(b.start <= a.end - detail.OVERLAP for a, b in zip(deep, deep[1:]))


@pytest.mark.slow
def test_void_native_detail_takes_revealed_background_not_the_model(prefect_server, tmp_path, monkeypatch, request):
    """A tiny random-weight VOID generates noise: with native detail the remove region, revealed as the
    ball moves on, is the real background at plate resolution; with model detail it is VOID's noise.
    The affected region (the shadow) stays VOID's to re-simulate, and the manifest says how much was which."""
    from flows.process_edit import process_edit
    from model.void.tiny import write_tiny_model
    from tasks.removal import _gpu_child

    monkeypatch.setenv("VOIDBATCH_CHUNK_TIMEOUT", "600")
    request.addfinalizer(lambda: (_gpu_child().close(), _gpu_child.cache_clear()))
    model_dir = write_tiny_model(tmp_path / "tiny_void")
    edit, samples = write_sample_edit(tmp_path / "e", height=96, width=168, shots=(("sh710", "static", 24, 7),))
    backend = BackendSpec(name="void", model_dir=str(model_dir), steps=2, model_size="64x112")
    clean = np.stack(list(read_frames(samples[0].clean, 0, 24))).astype(np.float32)
    masks = np.stack(list(qm.read_mask_frames(samples[0].quadmask, 0, 24)))
    removed = masks == qm.REMOVE
    errors, rows = {}, {}
    for mode in ("native", "model"):
        out = tmp_path / mode
        state = process_edit(str(edit), RunSpec(out=str(out), backend=backend,
                                                delivery=DeliverySpec(detail=mode, qc_every=1)), return_state=True)
        assert state.is_completed(), state.message
        rows[mode] = row = manifest.read_shots(ArtifactStore(str(out)))[0]
        assert row["qc_keep_max_diff"] == 0 and row["detail"] == mode
        frames, _ = _seq_frames(out, row)
        errors[mode] = np.abs(np.stack(frames).astype(np.float32) - clean)[removed].mean()
    assert errors["native"] < 6 and errors["model"] > 4 * errors["native"], errors
    native = rows["native"]
    assert native["fill_propagated"] > 0.5 and native["fill_generated"] > 0.05  # the shadow is VOID's
    assert native["fill_propagated"] + native["fill_synthesized"] + native["fill_generated"] == pytest.approx(1, 1e-3)
    assert rows["model"]["fill_generated"] == 1.0 and native["affected_region"] == "re-simulated"
