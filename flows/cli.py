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


def _ingest(edit: Path, rate: str | None, handles: int, shots: Path | None, relink: Path | None):
    from shots.frames import normalize_rate
    from shots.ingest import EditError, IngestOptions, ingest
    from shots.sidecar import SidecarError

    try:
        options = IngestOptions(rate=normalize_rate(rate) if rate else None, handles=handles,
                                sidecar=str(shots) if shots else None, relink_dir=str(relink) if relink else None)
        return ingest(edit, options)
    except (EditError, SidecarError, ValueError) as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


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
            "flagged": shot.flagged, "problem": shot.problem,
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
        table.add_row(r["shot_id"], r["track"], str(r["source_in"]), str(r["source_out"]), str(r["frames"]),
                      "{}+{}".format(*r["handles"]), " ".join(f"{c['start']}-{c['end']}/{c['padded_to']}"
                                                            for c in r["chunks"]),
                      "yes" if r["flagged"] else "", note)
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
    from tasks.options import RunOptions

    try:
        RunOptions(out=str(out), segmenter=segmenter, reasoner=reasoner)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    from flows.generate_masks import generate_masks

    rows = generate_masks(edit=str(edit), out=str(out), segmenter=segmenter, reasoner=reasoner, sam2_dir=sam2_dir,
                          rate=rate, handles=handles, shots_file=str(shots) if shots else None,
                          relink=str(relink) if relink else None)
    table = Table(title=f"masks for {edit.name} (previews beside each mask)")
    for col in ("shot", "status", "made with", "mask / error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["shot_id"], r["status"], r.get("source", ""), r.get("mask") or r.get("error") or "")
    Console().print(table)
    raise typer.Exit(1 if any(r["status"] == "failed" for r in rows) else 0)


@app.command()
def run(edit: EditArg, out: OutOpt,
        backend: Annotated[str, typer.Option(help="auto | classical | void")] = "auto",
        passes: Annotated[int, typer.Option(help="1, or 2 for VOID's warped-noise refinement")] = 1,
        format: Annotated[str, typer.Option("--format", help="png | exr | prores")] = "png",
        shots: ShotsOpt = None, relink: RelinkOpt = None, rate: RateOpt = None, handles: HandlesOpt = 8,
        seed: Annotated[int, typer.Option(help="Base seed; each chunk's seed derives from shot id and chunk")] = 0,
        force: Annotated[bool, typer.Option("--force", help="Render a new version even when up to date")] = False,
        model_dir: Annotated[Optional[str], typer.Option("--model-dir", help="VOID weights folder or fsspec URI")] = None,
        steps: Annotated[int, typer.Option(help="VOID denoising steps")] = 50,
        guidance: Annotated[float, typer.Option(help="VOID classifier-free guidance (1.0: none)")] = 1.0,
        model_size: Annotated[str, typer.Option("--model-size", help="Working size HxW (VOID: 384x672)")] = "384x672",
        segmenter: SegmenterOpt = "auto", reasoner: ReasonerOpt = "auto", sam2_dir: Sam2Opt = None):
    """Run the batch over an edit: every flagged shot gets a new clean-plate version."""
    from tasks.options import RunOptions

    try:
        RunOptions(out=str(out), backend=backend, passes=passes, format=format, rate=rate, handles=handles,
                   model_dir=model_dir, steps=steps, guidance=guidance, model_size=model_size,
                   segmenter=segmenter, reasoner=reasoner, sam2_dir=sam2_dir)
        if passes == 2 and (backend == "classical" or not model_dir):
            raise ValueError("--passes 2 is VOID's warped-noise refinement: use it with --model-dir (and "
                             "--backend void or auto)")
        if backend == "void" and not model_dir:
            raise ValueError("--backend void needs --model-dir (try `voidbatch dev tiny-model DIR` for a test model)")
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    from flows.runner import run_batch

    rows, failed = run_batch(edit=str(edit), out=str(out), backend=backend, passes=passes, format=format,
                             rate=rate, handles=handles, shots_file=str(shots) if shots else None,
                             relink=str(relink) if relink else None, seed=seed, force=force, model_dir=model_dir,
                             steps=steps, guidance=guidance, model_size=model_size, segmenter=segmenter,
                             reasoner=reasoner, sam2_dir=sam2_dir)
    _print_rows(rows, title=f"{edit.name} -> {out}")
    raise typer.Exit(1 if failed else 0)


@app.command()
def rerun(out: OutOpt, relink: RelinkOpt = None,
          shots: Annotated[Optional[Path], typer.Option("--shots", help="A corrected sidecar shot list")] = None):
    """Re-run the shots whose latest attempt failed, with their batch's options (after fixing them)."""
    from flows.runner import run_rerun

    rows, failed = run_rerun(out=str(out), relink=str(relink) if relink else None,
                             shots_file=str(shots) if shots else None)
    if not rows:
        Console().print(f"no failed shots in {out}")
        raise typer.Exit(0)
    _print_rows(rows, title=f"rerun of failed shots in {out}")
    raise typer.Exit(1 if failed else 0)


@app.command()
def status(out: OutOpt):
    """Each shot's latest attempt, from the manifest in OUT."""
    from storage import manifest
    from storage.store import ArtifactStore

    rows = list(manifest.latest_by_shot(manifest.read_shots(ArtifactStore(str(out)))).values())
    if not rows:
        err.print(f"no manifest in {out}")
        raise typer.Exit(2)
    _print_rows(rows, title=f"{out}: latest attempt per shot")


@app.command()
def demo(out: OutOpt = Path("demo_out")):
    """Generate a sample edit with known clean plates, run the batch on it, score it against the truth."""
    from flows.runner import run_demo

    rows, scores, failed = run_demo(str(out))
    _print_rows(rows, title="demo batch")
    table = Table(title="quality against the known clean plates")
    for col in ("shot", "frames", "PSNR in removal region (dB)", "PSNR whole frame (dB)"):
        table.add_column(col)
    for shot_id, s in scores.items():
        table.add_row(shot_id, str(s["frames"]), f"{s['psnr_region_db']:.2f}", f"{s['psnr_frame_db']:.2f}")
    Console().print(table)
    Console().print(f"results: {out}/shots  conformed edit: {out}/conform  manifest: {out}/manifest")
    raise typer.Exit(1 if failed else 0)


dev = typer.Typer(help="Developer tools.", no_args_is_help=True)
app.add_typer(dev, name="dev")


@dev.command("tiny-model")
def tiny_model(folder: Annotated[Path, typer.Argument(help="Where to write the model directory")]):
    """Write a tiny random-weight VOID model in the real layout, for tests and `--backend void` on a CPU."""
    from model.void.tiny import write_tiny_model

    write_tiny_model(folder)
    Console().print(f"tiny VOID model written to {folder} (random weights: output is noise, the plumbing is real)")


def _print_rows(rows: list[dict], title: str) -> None:
    colour = {"done": "green", "up_to_date": "green", "failed": "red", "skipped": "yellow", "degraded": "yellow"}
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
