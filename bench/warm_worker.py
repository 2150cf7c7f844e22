"""What a night of two-pass shots costs in model loads and weight swaps: a process per shot vs one warm worker.

    .venv/bin/python bench/warm_worker.py [--shots 4] [--frames 230] [--model-dir DIR] [--model-size 32x48]

The same prepared chunks go through `model.removal.remove_chunk` twice, side by side in one run:
- per shot, as `process-shot` jobs did: a new backend loaded for every shot, each chunk's two passes in
  one call (pass 1, pass 2, then the next chunk's pass 1: the transformer swaps weights on every switch);
- one warm worker, as a farm worker does: the backend loaded once (`WarmBackend`), every chunk's pass 1
  of a shot before its pass 2 (`phase=1`, then `phase=2`).
It prints loads, weight swaps and seconds for both, per shot and in total. Without --model-dir it writes
the tiny random-weight VOID model (`model.void.tiny`) and runs on the CPU: the counts are what matters
there, the seconds only show the bench works; on a GPU with VOID's weights the seconds are real.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import removal, select  # noqa: E402
from shots import extract  # noqa: E402
from shots.ingest import IngestOptions, ingest  # noqa: E402
from shots.sample_edit import write_sample_edit  # noqa: E402
from storage.store import ArtifactStore  # noqa: E402


def run(prepared: list, store: ArtifactStore, model_dir: str, warm: bool) -> list[dict]:
    """Per shot: loads, swaps, seconds, for one way of running the chunks (results go to a store of their own)."""
    identity = select.backend_identity("void", model_dir, steps=2, passes=2)
    worker = removal.WarmBackend()
    rows = []
    for shot_index, p in enumerate(prepared):
        t0, loads, swaps, load_s = time.perf_counter(), worker.loads, 0, 0.0
        settings = "warm" if warm else f"shot-{shot_index}"  # a new process per shot loads its own backend

        def backend():
            return worker.get(settings, lambda: select.load_backend("void", model_dir, steps=2, passes=2))

        for phase in (1, 2) if warm else (None,):
            for chunk in p.chunks:
                r = removal.remove_chunk(chunk, identity, backend, store, p.work_key, p.shot.shot_id, phase=phase)
                swaps += r.weights_swaps
                load_s += r.model_load_s
        rows.append({"shot": p.shot.shot_id, "chunks": len(p.chunks), "loads": worker.loads - loads,
                     "load_s": load_s, "swaps": swaps, "seconds": time.perf_counter() - t0})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--frames", type=int, default=230, help="frames per shot (230: two chunks)")
    parser.add_argument("--model-dir", default=None, help="VOID weights (default: the tiny random-weight model)")
    parser.add_argument("--model-size", default="32x48", help="HxW the chunks are prepared at (VOID: 384x672)")
    args = parser.parse_args(argv)
    size = tuple(int(x) for x in args.model_size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            from model.void.tiny import write_tiny_model

            model_dir = str(write_tiny_model(folder / "tiny"))
        kinds = ("pan", "static")
        edit, _ = write_sample_edit(folder / "edit", height=size[0] * 2, width=size[1] * 2,
                                    shots=tuple((f"sh{i + 1:02d}0", kinds[i % 2], args.frames, i + 1)
                                                for i in range(args.shots)))
        shots = ingest(str(edit), IngestOptions(handles=0))
        results = {}
        for name, warm in (("process per shot", False), ("warm worker", True)):
            way = folder / name.replace(" ", "-")
            os.environ["VOIDBATCH_CACHE"] = str(way / "cache")  # no flow or noise cached by the other way
            store = ArtifactStore(str(way / "out"))
            prepared = [extract.prepare_shot(s, store, model_size=size) for s in shots]
            results[name] = run(prepared, store, model_dir, warm)
    model = "tiny model, CPU" if args.model_dir is None else model_dir
    print(f"{args.shots} shots of {args.frames} frames, two-pass VOID ({model}), chunks at {args.model_size}")
    print("| way | shot | chunks | loads | load s | weight swaps | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for r in rows:
            print(f"| {name} | {r['shot']} | {r['chunks']} | {r['loads']} | {r['load_s']:.2f} | {r['swaps']} | "
                  f"{r['seconds']:.1f} |")
    for name, rows in results.items():
        print(f"{name}: {sum(r['loads'] for r in rows)} loads, {sum(r['swaps'] for r in rows)} weight swaps "
              f"(at most {max(r['swaps'] for r in rows)} per shot), {sum(r['seconds'] for r in rows):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
