"""`voidbatch`: the command line. Each command is a few lines over shots/, storage/ or a flow."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Remove objects and their effects from the shots of an edit with VOID.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """voidbatch: batch VOID object removal over an edit."""

EditArg = Annotated[Path, typer.Argument(help="The edit: .otio, CMX 3600 .edl or FCP 7 .xml")]
RateOpt = Annotated[Optional[str], typer.Option("--rate", help="Frame rate of an EDL (24, 25, 23.976, 24000/1001)")]
HandlesOpt = Annotated[int, typer.Option("--handles", min=0, help="Handle frames each side, clamped to the media")]
ShotsOpt = Annotated[Optional[Path], typer.Option("--shots", help="Sidecar shot list (.json/.csv) keyed by clip name")]
RelinkOpt = Annotated[Optional[Path], typer.Option("--relink", help="Folder to find media in by file name or reel")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr, no traceback; the exit to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _spec(out: Path, **parts):
    """The run spec from command-line values; a bad value exits 2 naming its flag."""
    from pydantic import ValidationError

    from tasks.spec import BackendSpec, DeliverySpec, IngestSpec, MaskSpec, RunSpec, spec_error

    def given(cls, keys):
        return cls(**{k: parts[k] for k in keys if k in parts})

    try:
        return RunSpec(out=str(out),
                       ingest=given(IngestSpec, ("rate", "handles", "shots_file", "relink", "colourspace")),
                       masks=given(MaskSpec, ("segmenter", "reasoner", "sam2_dir", "allow_large_mask")),
                       backend=given(BackendSpec, ("name", "passes", "model_dir", "steps", "guidance", "model_size")),
                       delivery=given(DeliverySpec, ("format", "detail", "qc_every", "provenance")),
                       **{k: parts[k] for k in ("seed", "force", "dispatch", "farm") if k in parts})
    except ValidationError as e:
        raise _fail(spec_error(e)) from None


def _paths(**values) -> dict:
    return {k: str(v) for k, v in values.items() if v is not None}


def _ingest(edit: Path, rate: str | None, handles: int, shots: Path | None, relink: Path | None):
    from shots.ingest import EditError, ingest
    from shots.sidecar import SidecarError

    spec = _spec(Path("."), rate=rate, handles=handles, **_paths(shots_file=shots, relink=relink))
    try:
        return ingest(edit, spec.ingest.options())
    except (EditError, SidecarError, ValueError) as e:
        raise _fail(str(e)) from None


@app.command()
def plan(edit: EditArg, rate: RateOpt = None, handles: HandlesOpt = 8, shots: ShotsOpt = None,
         relink: RelinkOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout")] = False):
    """Show the shots of an edit, their source ranges with handles, and their chunks."""
    from shots.plan import plan_chunks

    plan_rows = []
    for shot in _ingest(edit, rate, handles, shots, relink):
        chunks = plan_chunks(shot.frames) if shot.frames > 0 else []
        plan_rows.append({
            "shot_id": shot.shot_id, "clip_name": shot.clip_name, "track": shot.track,
            "rate": _rate(shot.rate), "source_in": shot.source_range.start,
            "source_out": shot.source_range.end_exclusive, "frames": shot.frames,
            "handles": list(shot.handles), "media": shot.media.path if shot.media else None,
            "flagged": shot.flagged, "skip_reason": shot.skip_reason, "problem": shot.problem,
            "chunks": [{"start": c.start, "end": c.end, "padded_to": c.padded_to} for c in chunks],
        })
    if as_json:
        sys.stdout.write(json.dumps({"shots": plan_rows}, indent=2) + "\n")
        return
    table = Table(title=f"{edit.name}: {len(plan_rows)} clips, {sum(r['flagged'] for r in plan_rows)} flagged")
    for col in ("shot", "track", "in", "out", "frames", "handles", "chunks", "flagged", "media / problem"):
        table.add_column(col)
    for r in plan_rows:
        note = r["problem"] and f"[red]{r['problem']}[/red]" or (r["media"] or "")
        flagged = "yes" if r["flagged"] else f"[dim]{r['skip_reason'] or ''}[/dim]"
        table.add_row(r["shot_id"], r["track"], str(r["source_in"]), str(r["source_out"]), str(r["frames"]),
                      "{}+{}".format(*r["handles"]), " ".join(f"{c['start']}-{c['end']}/{c['padded_to']}"
                                                            for c in r["chunks"]),
                      flagged, note)
    Console().print(table)


OutOpt = Annotated[Path, typer.Option("--out", help="Output folder or fsspec URI (results, manifest, conform)")]
SegmenterOpt = Annotated[str, typer.Option(help="Masks from clicks: auto | sam2 | classical")]
ReasonerOpt = Annotated[str, typer.Option(help="Affected region: auto | gemini | heuristic | none")]
Sam2Opt = Annotated[Optional[str], typer.Option("--sam2-dir", help="Folder with the SAM2 config and checkpoint")]


@app.command()
def masks(edit: EditArg, out: OutOpt, segmenter: SegmenterOpt = "auto", reasoner: ReasonerOpt = "auto",
          sam2_dir: Sam2Opt = None, shots: ShotsOpt = None, relink: RelinkOpt = None, rate: RateOpt = None,
          handles: HandlesOpt = 8):
    """Build the quadmasks only, with a preview movie and contact sheet per shot, for review."""
    from flows.runner import UsageError, run_masks

    spec = _spec(out, segmenter=segmenter, reasoner=reasoner, rate=rate, handles=handles,
                 **_paths(sam2_dir=sam2_dir, shots_file=shots, relink=relink))
    try:
        rows = run_masks(str(edit), spec)
    except UsageError as e:
        raise _fail(str(e)) from None
    table = Table(title=f"masks for {edit.name} (previews beside each mask)")
    for col in ("shot", "status", "made with", "mask / error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        made = f"{r['mask_source']} + {r['mask_reasoner']}" if r.get("mask_reasoner") else r.get("mask_source") or ""
        table.add_row(r["shot_id"], r["status"], made, r.get("quadmask_uri") or r.get("error") or "")
    Console().print(table)
    raise typer.Exit(1 if any(r["status"] == "failed" for r in rows) else 0)


@app.command()
def run(edit: EditArg, out: OutOpt,
        backend: Annotated[str, typer.Option(help="auto | classical | void")] = "auto",
        passes: Annotated[int, typer.Option(help="1, or 2 for VOID's warped-noise refinement")] = 1,
        format: Annotated[str, typer.Option("--format", help="auto (follow the plate: EXR in -> EXR, 10-bit and "
                                                             "deeper -> 16-bit PNG, 8-bit -> PNG) | png | exr | "
                                                             "dpx | prores")] = "auto",
        detail: Annotated[str, typer.Option(help="native: the removal region at plate resolution (real background "
                                                 "where another frame reveals it); model: the backend's 384x672 "
                                                 "output scaled up")] = "native",
        colourspace: Annotated[Optional[str], typer.Option(
            "--colourspace", help="Input colour space of untagged plates (an OCIO name, e.g. 'ACEScg', "
                                  "'Rec.1886 Rec.709 - Display'); the file's own tags win")] = None,
        shots: ShotsOpt = None, relink: RelinkOpt = None, rate: RateOpt = None, handles: HandlesOpt = 8,
        seed: Annotated[int, typer.Option(help="Base seed; each chunk's seed derives from shot id and chunk")] = 0,
        force: Annotated[bool, typer.Option("--force", help="Render a new version even when up to date")] = False,
        model_dir: Annotated[Optional[str], typer.Option("--model-dir",
                                                         help="VOID weights folder or fsspec URI")] = None,
        steps: Annotated[int, typer.Option(help="VOID denoising steps")] = 50,
        guidance: Annotated[float, typer.Option(help="VOID classifier-free guidance (1.0: none)")] = 1.0,
        model_size: Annotated[str, typer.Option("--model-size", help="Working size HxW (VOID: 384x672)")] = "384x672",
        segmenter: SegmenterOpt = "auto", reasoner: ReasonerOpt = "auto", sam2_dir: Sam2Opt = None,
        allow_large_mask: Annotated[bool, typer.Option("--allow-large-mask",
                                                       help="Process masks removing over 60% of a frame")] = False,
        qc_every: Annotated[int, typer.Option("--qc-every", help="QC reads back the first, last and every "
                                                                 "Nth delivered frame (1: all)")] = 10,
        provenance: Annotated[str, typer.Option(help="C2PA content credentials: auto | signed | unsigned | "
                                                     "off")] = "auto",
        farm: Annotated[Optional[str], typer.Option(
            "--farm", help="Run the chunks on the warm GPU workers of this farm (its Dask scheduler, "
                           "tcp://host:8786; deploy/README.md)")] = None):
    """Run the batch over an edit: every flagged shot gets a new clean-plate version."""
    from flows.runner import UsageError, run_batch

    spec = _spec(out, name=backend, passes=passes, format=format, detail=detail, rate=rate, handles=handles,
                 seed=seed, force=force, steps=steps, guidance=guidance, model_size=model_size, segmenter=segmenter,
                 reasoner=reasoner, allow_large_mask=allow_large_mask, qc_every=qc_every, provenance=provenance,
                 **({"dispatch": "farm", "farm": farm} if farm else {}),
                 **_paths(shots_file=shots, relink=relink, model_dir=model_dir, sam2_dir=sam2_dir,
                          colourspace=colourspace))
    try:
        batch = run_batch(str(edit), spec)
    except UsageError as e:
        raise _fail(str(e)) from None
    _print_outcomes(batch, out, title=f"{edit.name} -> {out}")
    raise typer.Exit(_exit_code(batch))


@app.command("farm-worker")
def farm_worker(address: Annotated[str, typer.Argument(help="The farm's Dask scheduler: tcp://host:8786")],
                gpu: Annotated[Optional[str], typer.Option(help="The GPU this worker owns (its CUDA_VISIBLE_DEVICES); "
                                                                "none: the CPU")] = None,
                name: Annotated[Optional[str], typer.Option(help="Its name on the farm (gpu-HOST-GPU)")] = None):
    """A warm GPU worker of the farm: loads the model on its first chunk, keeps it for every chunk after."""
    import os

    from flows.farm import worker_command

    argv, env = worker_command(address, gpu, name)
    err.print(f"farm worker {argv[argv.index('--name') + 1]} -> {address}", highlight=False)
    os.execve(argv[0], argv, env)  # the worker is this process: stop it by this PID


@app.command()
def rerun(out: OutOpt, relink: RelinkOpt = None,
          shots: Annotated[Optional[Path], typer.Option("--shots", help="A corrected sidecar shot list")] = None):
    """Re-run the shots whose latest attempt failed or was interrupted, with their batch's options."""
    from flows.runner import UsageError, run_rerun

    try:
        batches = run_rerun(str(out), **_paths(relink=relink, shots_file=shots))
    except UsageError as e:
        raise _fail(str(e)) from None
    if not batches:
        Console().print(f"no failed or interrupted shots in {out}")
        raise typer.Exit(0)
    for batch in batches:
        _print_outcomes(batch, out, title=f"rerun in {out} ({batch.run_id})")
    raise typer.Exit(max(_exit_code(b) for b in batches))


@app.command()
def status(out: OutOpt):
    """Each shot's latest attempt, from the manifest in OUT; exits 1 if any failed or was interrupted."""
    from storage import lock, manifest
    from storage.store import ArtifactStore, StoreError

    try:
        store = ArtifactStore(str(out), create=False)
        live = lock.live_run(store)
        rows = manifest.with_interrupted(manifest.read_shots(store), [live] if live else [])
    except (StoreError, manifest.ManifestError) as e:
        raise _fail(str(e)) from None
    latest = list(manifest.latest_by_shot(rows).values())
    if not latest:
        raise _fail(f"no manifest in {out}")
    _print_rows(latest, title=f"{out}: latest attempt per shot" + (f" (batch {live} is running)" if live else ""))
    raise typer.Exit(1 if any(r["status"] in manifest.NEEDS_RERUN for r in latest) else 0)


@app.command()
def verify(path: Annotated[Path, typer.Argument(help="A delivered file, a sequence folder or a version folder")],
           trust: Annotated[Optional[Path], typer.Option(
               "--trust", help="The studio's CA certificate (PEM): signatures chaining to it read as trusted")] = None):
    """Check a delivered version's content credentials: what was done, by what, to which plate, every frame."""
    from shots.provenance import ProvenanceError
    from shots.provenance import verify as check

    try:
        report = check(path, trust_anchors=trust.read_bytes() if trust else None)
    except (ProvenanceError, OSError, ValueError) as e:
        raise _fail(f"{path}: {e}") from None
    for line in report.lines():
        Console().print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def demo(out: OutOpt = Path("demo_out")):
    """Generate a sample edit with known clean plates, run the batch on it, score it against the truth."""
    from flows.runner import UsageError, run_demo

    try:
        batch, scores = run_demo(str(out))
    except UsageError as e:
        raise _fail(str(e)) from None
    _print_outcomes(batch, out, title="demo batch")
    table = Table(title="quality against the known clean plates")
    for col in ("shot", "frames", "PSNR in removal region (dB)", "PSNR whole frame (dB)"):
        table.add_column(col)
    for shot_id, s in scores.items():
        table.add_row(shot_id, str(s["frames"]), f"{s['psnr_region_db']:.2f}", f"{s['psnr_frame_db']:.2f}")
    Console().print(table)
    Console().print(f"results: {out}/shots  conformed edit: {out}/conform  manifest: {out}/manifest")
    raise typer.Exit(_exit_code(batch))


dev = typer.Typer(help="Developer tools.", no_args_is_help=True)
app.add_typer(dev, name="dev")


@dev.command("tiny-model")
def tiny_model(folder: Annotated[Path, typer.Argument(help="Where to write the model directory")]):
    """Write a tiny random-weight VOID model in the real layout, for tests and `--backend void` on a CPU."""
    from model.void.tiny import write_tiny_model

    write_tiny_model(folder)
    Console().print(f"tiny VOID model written to {folder} (random weights: output is noise, the plumbing is real)")


def _exit_code(batch) -> int:
    """1 if any shot failed or was interrupted, else 0; a full output disk is named on stderr."""
    full = [o.error for o in batch.outcomes if o.error and ("No space left" in o.error or "free space" in o.error)]
    if full:
        err.print(f"[red]error:[/red] the output disk is full: {full[0]}", highlight=False, soft_wrap=True)
    if batch.conform_error:
        err.print(f"[red]error:[/red] {batch.conform_error}", highlight=False, soft_wrap=True)
    return 1 if batch.with_status("failed", "interrupted") or batch.conform_error else 0


def _print_outcomes(batch, out: Path, title: str) -> None:
    from storage.store import ArtifactStore

    store = ArtifactStore(str(out), create=False)
    _print_rows([{"shot_id": o.shot.shot_id, "status": o.status, "frames": o.shot.frames,
                  "seconds": (o.finished_at - o.started_at).total_seconds() if o.started_at else None,
                  "output_uri": o.deliverable and store.uri(o.deliverable.output_key), "error": o.error}
                 for o in batch.outcomes], title)
    if batch.conform_uri:
        Console().print(f"conformed edit: {batch.conform_uri}")


def _print_rows(rows: list[dict], title: str) -> None:
    colour = {"done": "green", "up_to_date": "green", "failed": "red", "skipped": "yellow", "degraded": "yellow",
              "interrupted": "red", "planned": "cyan"}
    table = Table(title=title)
    for col in ("shot", "status", "frames", "seconds", "output / error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        st = r["status"]
        table.add_row(r["shot_id"], f"[{colour.get(st, 'white')}]{st}[/]", str(r.get("frames") or ""),
                      f"{r['seconds']:.1f}" if r.get("seconds") else "",
                      r.get("output_uri") or r.get("error") or "")
    Console().print(table)


def _rate(rate) -> str:
    from shots.frames import rate_str

    return rate_str(rate)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
