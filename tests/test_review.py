"""The morning review: what a TD sees in the Prefect UI (through its API) and on OUT/review/index.html.

A small batch with one good and one failing shot, then the morning rerun, on a real local Prefect
server: run names and tags, one table artifact per batch updated in place, shot cards with pictures
that decode, the rerun linked both ways. The review page is opened in headless Chromium (Debian's,
which `make test` installs; the test skips where it is absent): every shot is listed, failed first,
every picture and movie loads, a failed shot shows its reason.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
import pytest

from tasks.spec import DeliverySpec, RunSpec

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--mute-audio", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def night(prefect_server, tmp_path_factory):
    """The night's batch (sh020's quadmask is the wrong size) and the morning's rerun with the fix."""
    from flows.process_edit import process_edit
    from flows.rerun_failed import rerun_failed
    from shots import quadmask as qm
    from shots.sample_edit import write_sample_edit

    folder = tmp_path_factory.mktemp("review")
    edit, samples = write_sample_edit(folder / "e", height=96, width=168, shots=(
        ("sh010", "static", 24, 1), ("sh020", "pan", 24, 2)))
    wrong = folder / "e" / "media" / "wrong.mkv"
    qm.write_quadmask(wrong, np.zeros((24, 48, 84), np.uint8), 24)
    tl = otio.adapters.read_from_file(str(edit))
    next(c for c in tl.find_clips() if c.name == "sh020").metadata["voidbatch"]["quadmask"] = str(wrong)
    otio.adapters.write_to_file(tl, str(edit))
    out = folder / "out"
    batch = process_edit(str(edit), RunSpec(out=str(out), delivery=DeliverySpec(qc_every=1)), return_state=True)
    page_at_night = (out / "review" / "index.html").read_text()
    fix = folder / "fix.json"
    fix.write_text(json.dumps({"sh020": {"quadmask": samples[1].quadmask}}))
    rerun = rerun_failed(str(out), shots_file=str(fix), return_state=True)
    return batch, rerun, out, page_at_night


def _client():
    from prefect import get_client

    return get_client(sync_client=True)


def test_runs_are_named_and_tagged_for_people(night):
    batch, rerun, out, _ = night
    with _client() as client:
        run = client.read_flow_run(batch.state_details.flow_run_id)
        again = client.read_flow_run(rerun.state_details.flow_run_id)
    assert run.name == f"sample_edit-{datetime.now():%Y-%m-%d}"
    assert {"edit:sample_edit.otio", f"out:{out}", "backend:auto"} <= set(run.tags)
    assert again.name.startswith("rerun-out-")


def test_one_table_per_batch_updated_in_place_and_cards_with_pictures(night):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tasks.report import out_tag

    batch, _, out, _ = night
    run_id = batch.result(raise_on_failure=False).outcome.run_id
    with _client() as client:
        tables = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"batch-{run_id}"
                                                                                                    .lower()])))
        card = client.read_latest_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[f"shot-{out_tag(str(out))}-sh010"])))
    assert len(tables) == 1  # one card for the batch, however many times it was updated
    rows = {r["shot_id"]: r for r in json.loads(tables[0].data)}
    assert rows["sh010"]["status"] == "done" and rows["sh010"]["time"].endswith(" s")
    assert rows["sh020"]["status"] == "failed" and "84x48" in rows["sh020"]["reason"]
    pictures = re.findall(r"!\[[^\]]*\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", card[0].data)
    assert len(pictures) == 2  # before/after stills and the quadmask over the plate
    for data in pictures:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] > 20 and img.shape[1] > 100


def test_the_rerun_and_the_batch_it_repairs_link_to_each_other(night):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    batch, rerun, _, _ = night
    run_id = batch.result(raise_on_failure=False).outcome.run_id
    with _client() as client:
        links = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=[f"repairs-{run_id}".lower(), f"repaired-by-{run_id}".lower()])))}
    forward, back = links[f"repairs-{run_id}".lower()], links[f"repaired-by-{run_id}".lower()]
    assert forward.flow_run_id == rerun.state_details.flow_run_id
    assert str(batch.state_details.flow_run_id) in forward.data
    assert back.flow_run_id == batch.state_details.flow_run_id and str(rerun.state_details.flow_run_id) in back.data


def _open_in_chromium(page: Path, tmp_path: Path, screenshot: Path | None = None) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (make test installs Debian's chromium)")
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=15000"]
    if screenshot is not None:
        subprocess.run([*base, "--window-size=1440,1400", f"--screenshot={screenshot}", page.as_uri()],
                       capture_output=True, timeout=120)
    res = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_review_page_in_a_browser(night, tmp_path):
    _, _, out, page_at_night = night
    # at night: the failed shot first, with its reason
    assert page_at_night.index('id="sh020"') < page_at_night.index('id="sh010"')
    night_section = page_at_night.split('id="sh020"')[1].split("</section>")[0]
    assert 'class="reason"' in night_section and "84x48" in night_section
    # in the morning, after the rerun, in a real browser: every shot, every picture and movie loads
    screenshot = tmp_path / "review.png"
    dom = _open_in_chromium(out / "review" / "index.html", tmp_path, screenshot)
    assert 'data-media="ok"' in dom, re.findall(r'<p id="media-problem"[^>]*>[^<]*', dom)
    for shot in ("sh010", "sh020"):
        section = dom.split(f'id="{shot}"')[1].split("</section>")[0]
        assert "badge done" in section and 'data-checked="ok"' in section and 'data-checked="broken"' not in section
        assert section.count("<video") == 2 and "<img" in section
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000


def test_review_page_says_when_media_is_missing(night, tmp_path):
    """Copy the page without its media folder: the page says what did not load instead of showing blanks."""
    _, _, out, _ = night
    copy = tmp_path / "copy" / "review"
    copy.mkdir(parents=True)
    shutil.copy(out / "review" / "index.html", copy / "index.html")
    dom = _open_in_chromium(copy / "index.html", tmp_path)
    assert 'data-media="broken"' in dom and "did not load" in dom
