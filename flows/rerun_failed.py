"""Re-run the shots whose latest attempt failed, with the options their batch used."""
from __future__ import annotations

from collections import defaultdict

from prefect import flow
from prefect.states import Failed

from flows.process_edit import new_run_id, process_edit
from storage import manifest
from storage.store import ArtifactStore
from tasks.edit import read_run


@flow(name="rerun-failed")
def rerun_failed(out: str, relink: str | None = None, shots_file: str | None = None) -> dict:
    """Process exactly the failed shots of `out` again (after their media or instructions were fixed).

    `relink` and `shots_file` replace the original batch's, for fixes that live there.
    """
    latest = manifest.latest_by_shot(manifest.read_shots(ArtifactStore(out)))
    by_run: dict[str, list[str]] = defaultdict(list)
    for row in latest.values():
        if row["status"] == "failed":
            by_run[row["run_id"]].append(row["shot_id"])
    run_id = new_run_id()
    for old_run, shot_ids in sorted(by_run.items()):
        edit, options = read_run(out, old_run)
        options.update({k: v for k, v in {"relink": relink, "shots_file": shots_file}.items() if v})
        process_edit(edit=edit, **options, run_id=run_id, only_shots=sorted(shot_ids), return_state=True)
    rows = [r for r in manifest.read_shots(ArtifactStore(out)) if r["run_id"] == run_id]
    failed = [r["shot_id"] for r in rows if r["status"] == "failed"]
    summary = {"run_id": run_id, "rerun": sorted(s for ids in by_run.values() for s in ids), "failed": failed}
    if failed:
        return Failed(message=f"still failing: {', '.join(failed)}", data=summary)
    return summary
