"""The mask task: a shot's quadmask from a matte or a few clicks, built once and reused."""
from __future__ import annotations

from dataclasses import replace

from prefect import get_run_logger, task

from model.masks import batch
from storage.store import ArtifactStore
from tasks import IN_MEMORY
from tasks.spec import MaskSpec


@task(name="build-mask", retries=1, retry_delay_seconds=5, **IN_MEMORY,
      task_run_name="mask-{shot.shot_id}")
def build_mask(shot, store: ArtifactStore, masks: MaskSpec, progress=None):
    """(shot pointing at its generated quadmask, mask result, mask URI)."""
    key, result, reused = batch.shot_quadmask(shot, store, masks.segmenter, masks.reasoner, masks.sam2_dir,
                                              progress=progress)
    get_run_logger().info("shot %s: quadmask %s (%s + %s%s)%s", shot.shot_id, store.uri(key), result.source,
                          result.reasoner, ", degraded: " + result.reason if result.degraded else "",
                          " reused" if reused else "")
    # the written mask covers exactly the shot: its frame 0 is the shot's first media frame
    ins = replace(shot.instructions, quadmask=store.local_path(key), mask_start_frame=shot.file_start, matte=None)
    return replace(shot, instructions=ins), result, store.uri(key)
