"""The morning review: `OUT/review/index.html`, every shot at a glance, offline, in any browser.

One self-contained page (inline CSS and script, links relative to the output folder, so it opens
from a file share or a copied folder): each shot's latest attempt with its status, reason, timings
and version, failed and interrupted shots first; a before/after wipe player of the delivered version
against the plate (small H.264 proxies, played in step); the quadmask over the plate; links to the
version, the contact sheet and the conformed edit. The page checks its own pictures and movies and
says, at the top, if any did not load (a folder moved or half copied).

Proxies and stills are made once per delivered version, when the shot ends (`make_previews`); the
page itself is rewritten from the manifest's latest rows after every shot and every rerun.
"""
from __future__ import annotations

import html
import os
from datetime import datetime
from pathlib import Path

import cv2

from shots import quadmask as qm
from shots.composite import resize_rgb
from shots.extract import PreparedShot, plate_frames
from shots.media import read_frames_precise, write_h264
from storage import layout
from storage.atomic import atomic_path, write_atomic
from storage.store import ArtifactStore

PROXY_WIDTH = 640
ORDER = ("failed", "interrupted", "planned", "degraded", "done", "up_to_date", "skipped")  # what needs eyes first


def _proxy_size(width: int, height: int) -> tuple[int, int]:
    """(height, width) of a proxy: at most PROXY_WIDTH wide, even sizes (yuv420p)."""
    w = min(PROXY_WIDTH, width)
    h = max(2, int(round(height * w / width / 2)) * 2)
    return h, max(2, w // 2 * 2)


def make_previews(store: ArtifactStore, prepared: PreparedShot, deliverable) -> None:
    """Plate and clean proxies and a mask still for a delivered version, unless they exist already."""
    if not store.is_local:
        return
    shot, version, colour = prepared.shot, deliverable.version, prepared.colour
    size = _proxy_size(shot.media.width, shot.media.height)

    def viewed(frames):  # what people look at: display RGB through the plate's view, proxy-sized
        return (resize_rgb(colour.to_model(f), size[1], size[0]) for f in frames)

    plate = Path(store.path(layout.review_plate(shot.shot_id, version)))
    if not plate.exists():
        write_h264(plate, viewed(plate_frames(shot, prepared.plate)), shot.rate)
    clean = Path(store.path(layout.review_clean(shot.shot_id, version)))
    if not clean.exists():
        delivered = store.path(deliverable.output_key)
        if deliverable.output_format != "prores":
            delivered = f"{delivered}/{layout.frame_pattern(shot.shot_id, version, deliverable.output_format)}"
        write_h264(clean, viewed(read_frames_precise(delivered, 0, shot.frames)), shot.rate)
    still = Path(store.path(layout.review_mask(shot.shot_id, version)))
    if not still.exists():
        middle = (prepared.region_frames[0] + prepared.region_frames[1]) // 2
        frame = next(viewed(plate_frames(shot, prepared.plate, middle, 1)))
        mask = next(m for t, m in enumerate(prepared.mask_frames()) if t == middle)
        tinted = qm.overlay(frame, mask, label=f"frame {layout.FIRST_FRAME + middle}")
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(tinted, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        write_atomic(still, jpeg.tobytes(), fsync=False)


def write_page(store: ArtifactStore, rows: list[dict], title: str = "voidbatch review") -> str | None:
    """Write `OUT/review/index.html` from each shot's latest row; returns its path (None for remote stores)."""
    if not store.is_local:
        return None
    page = Path(store.path(layout.REVIEW_PAGE))
    rows = sorted(rows, key=lambda r: (ORDER.index(r["status"]) if r["status"] in ORDER else len(ORDER),
                                       r["shot_id"]))
    cards = "\n".join(_card(store, page.parent, r) for r in rows)
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    order = sorted(counts.items(), key=lambda x: ORDER.index(x[0]) if x[0] in ORDER else len(ORDER))
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in order)
    document = _PAGE.format(title=html.escape(title), summary=html.escape(summary or "no shots yet"), cards=cards,
                            when=datetime.now().strftime("%Y-%m-%d %H:%M"), style=_STYLE, script=_SCRIPT)
    with atomic_path(page, suffix=".html") as tmp:
        tmp.write_text(document, encoding="utf-8")
    return str(page)


def _rel(target: str | None, base: Path) -> str | None:
    """A link from the page's folder to a local file, or None."""
    if not target or "://" in target:
        return target
    return os.path.relpath(target, base)


def _card(store: ArtifactStore, base: Path, r: dict) -> str:
    esc = html.escape
    shot, status, version = r["shot_id"], r["status"], r.get("version")
    facts = [("frames", r.get("frames")), ("seconds", f"{r['seconds']:.1f} s" if r.get("seconds") else None),
             ("batch", r.get("run_id")), ("attempt", r.get("attempt")), ("backend", r.get("backend")),
             ("mask", " + ".join(x for x in (r.get("mask_source"), r.get("mask_reasoner")) if x) or None),
             ("QC keep region", f"{r['qc_keep_max_diff']:g} {r.get('qc_precision') or ''}"
              if r.get("qc_keep_max_diff") is not None else None),
             ("credentials", r.get("provenance")),
             ("timecode", f"{r.get('source_tc_in')} - {r.get('source_tc_out')}" if r.get("source_tc_in") else None)]
    facts_html = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in facts if v not in (None, ""))
    reason = f'<p class="reason">{esc(r["error"])}</p>' if r.get("error") else ""
    media, links = "", []
    if version:
        plate, clean = (_rel(store.path(k(shot, version)), base) for k in (layout.review_plate, layout.review_clean))
        mask = _rel(store.path(layout.review_mask(shot, version)), base)
        media = (f'<div class="wipe"><video class="under" src="{esc(plate)}" muted loop playsinline preload="auto">'
                 f'</video><video class="over" src="{esc(clean)}" muted loop playsinline preload="auto"></video>'
                 f'<div class="labels"><span>plate</span><span>v{version:03d}</span></div></div>'
                 f'<div class="controls"><button class="play">play</button><input class="split" type="range" '
                 f'min="0" max="100" value="50" aria-label="wipe"></div>'
                 f'<figure><img class="mask" src="{esc(mask)}" alt="quadmask over the plate"><figcaption>quadmask: '
                 f'red removed, amber affected</figcaption></figure>')
        links += [("version", r.get("output_uri")), ("contact sheet", r.get("contact_sheet_uri"))]
    links += [("conformed edit", r.get("conform_uri")), ("quadmask", r.get("quadmask_uri")),
              ("plate", r.get("source_uri"))]
    links_html = "".join(f'<li><a href="{esc(_rel(u, base))}">{esc(k)}</a></li>' for k, u in links if u)
    title = f"{esc(shot)} <span class=\"badge {esc(status)}\">{esc(status.replace('_', ' '))}</span>"
    if version:
        title += f" <span class=\"version\">v{version:03d}</span>"
    return (f'<section class="shot {esc(status)}" id="{esc(shot)}"><h2>{title}</h2>{reason}'
            f'<dl>{facts_html}</dl>{media}<ul class="links">{links_html}</ul></section>')


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body data-media="checking"><header><h1>{title}</h1><p class="summary">{summary}</p>
<p class="when">written {when}</p><p id="media-problem" hidden></p></header>
<main>{cards}</main><script>{script}</script></body></html>
"""

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#111;color:#ddd}
header{padding:12px 20px;background:#1b1b1b;border-bottom:1px solid #333}h1{margin:0;font-size:20px}
.summary{margin:4px 0;font-size:15px}.when{margin:0;color:#888}#media-problem{color:#ff7b6b;font-weight:600}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(680px,1fr));gap:16px;padding:16px}
.shot{background:#1b1b1b;border:1px solid #333;border-left:6px solid #555;border-radius:6px;padding:12px}
.shot.failed,.shot.interrupted{border-left-color:#e5484d}.shot.done,.shot.up_to_date{border-left-color:#30a46c}
.shot.degraded,.shot.skipped{border-left-color:#f5a623}h2{margin:0 0 6px;font-size:17px}
.badge{font-size:12px;padding:2px 8px;border-radius:10px;background:#333;vertical-align:middle}
.badge.failed,.badge.interrupted{background:#5c1e21}.badge.done,.badge.up_to_date{background:#1d4730}
.badge.degraded,.badge.skipped{background:#5a4112}.version{color:#9ab;font-size:14px}
.reason{background:#2a1517;border-radius:4px;padding:6px 8px;white-space:pre-wrap;word-break:break-word}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0}dt{color:#888}dd{margin:0}
.wipe{position:relative;width:640px;max-width:100%;background:#000}.wipe video{display:block;width:100%}
.wipe .over{position:absolute;inset:0;clip-path:inset(0 0 0 50%)}
.labels{position:absolute;inset:auto 0 0 0;display:flex;justify-content:space-between;padding:2px 6px;
font-size:12px;text-shadow:0 0 3px #000}.controls{display:flex;gap:8px;align-items:center;width:640px;
max-width:100%;margin:4px 0}.controls input{flex:1}figure{margin:8px 0}figure img{max-width:640px;width:100%}
figcaption{color:#888;font-size:12px}.links{display:flex;gap:14px;list-style:none;padding:0;margin:6px 0 0}
a{color:#7db4ff}
"""

_SCRIPT = """
for (const box of document.querySelectorAll('.shot')) {
  const under = box.querySelector('.under'), over = box.querySelector('.over');
  if (!under) continue;
  const split = box.querySelector('.split'), play = box.querySelector('.play');
  split.addEventListener('input', () => { over.style.clipPath = `inset(0 0 0 ${split.value}%)`; });
  play.addEventListener('click', () => {
    if (under.paused) { over.currentTime = under.currentTime; under.play(); over.play(); play.textContent = 'pause'; }
    else { under.pause(); over.pause(); play.textContent = 'play'; }
  });
  under.addEventListener('timeupdate', () => {
    if (Math.abs(over.currentTime - under.currentTime) > 0.05) over.currentTime = under.currentTime;
  });
}
const media = [...document.querySelectorAll('img, video')];
const broken = new Set();
let pending = media.length;
function settle(el, ok) {
  if (el.dataset.checked) return;
  el.dataset.checked = ok ? 'ok' : 'broken';
  if (!ok) broken.add(el.getAttribute('src'));
  pending -= 1;
  if (pending > 0) return;
  document.body.dataset.media = broken.size ? 'broken' : 'ok';
  const note = document.getElementById('media-problem');
  if (broken.size) { note.hidden = false; note.textContent = `${broken.size} pictures or movies did not load: ` +
    [...broken].join(', ') + ' (moved, or not copied yet?)'; }
}
for (const el of media) {
  if (el.tagName === 'IMG') {
    if (el.complete) settle(el, el.naturalWidth > 0);
    else {
      el.addEventListener('load', () => settle(el, el.naturalWidth > 0));
      el.addEventListener('error', () => settle(el, false));
    }
  } else {
    if (el.readyState >= 1) settle(el, el.videoWidth > 0);
    el.addEventListener('loadedmetadata', () => settle(el, el.videoWidth > 0));
    el.addEventListener('error', () => settle(el, false));
  }
}
if (!media.length) document.body.dataset.media = 'ok';
"""


def page_rows(store: ArtifactStore) -> list[dict]:
    """The rows the page shows: each shot's latest attempt (a planned row of a stopped batch reads interrupted)."""
    from storage import lock, manifest

    live = lock.live_run(store)
    return list(manifest.latest_by_shot(manifest.with_interrupted(manifest.read_shots(store),
                                                                  [live] if live else [])).values())
