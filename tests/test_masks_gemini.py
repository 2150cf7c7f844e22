"""GeminiReasoner against a loopback server speaking the generateContent REST shape; fallback; secrets.

The google-genai client is pointed at http://127.0.0.1:<free port> through HttpOptions(base_url=...);
the server plays a script of answers (good JSON, malformed JSON, 429, 5xx, slow) and records every
request, so the tests see exactly what the client sent and how often.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from model.masks import (ClassicalSegmenter, Frames, GeminiReasoner, Grid, HeuristicReasoner, MaskStack,
                         ReasonerError, ReasonInput, build_quadmask, rasterize, reason_with_fallback)
from shots.media import write_video_lossless
from shots.quadmask import read_mask_frames
from shots.shot import Instructions
from shots.synthetic import make_scene
from storage.store import ArtifactStore

MODEL = "gemini-test-model"


class FakeGemini:
    """A scripted generateContent endpoint on 127.0.0.1 (free port). Script items:

    ("ok", answer_text) -> 200 with one candidate holding the text and usage metadata;
    ("error", code, status, message, extra_details) -> that HTTP error in Google's error JSON;
    ("sleep", seconds, item) -> wait, then answer with item (the client may have given up).
    An empty script answers 500.
    """

    def __init__(self):
        self.script: list = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "json": json.loads(body or b"{}")})
                    item = fake.script.pop(0) if fake.script else ("error", 500, "INTERNAL", "script empty", None)
                try:
                    self._answer(item)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def _answer(self, item):
                if item[0] == "sleep":
                    time.sleep(item[1])
                    item = item[2]
                if item[0] == "ok":
                    code, payload = 200, {
                        "candidates": [{"content": {"role": "model", "parts": [{"text": item[1]}]},
                                        "finishReason": "STOP", "index": 0}],
                        "usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 80,
                                          "totalTokenCount": 1280},
                        "modelVersion": MODEL}
                else:
                    _, code, status, message, extra = item
                    payload = {"error": {"code": code, "message": message, "status": status,
                                         "details": extra or []}}
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    with FakeGemini() as f:
        yield f


def good_answer(n_frames: int, grid: Grid) -> str:
    last = n_frames - 1
    return json.dumps({
        "integral_belongings": [],
        "affected_objects": [
            {"noun": "Shadow", "category": "visual_artifact", "why": "cast by the ball", "will_move": False,
             "first_appears_frame": 0,
             "grid_localizations": [{"frame": 0, "grid_regions": [{"row": 4, "col": 3}, {"row": 4, "col": 4}]},
                                    {"frame": last, "grid_regions": [{"row": 5, "col": 10},
                                                                     {"row": 99, "col": 0}]}]},
            {"noun": "cup", "category": "physical", "why": "held by the ball", "will_move": True,
             "first_appears_frame": 2, "grid_localizations": [],
             "trajectory_path": [{"frame": 2, "grid_row": 2, "grid_col": 2},
                                 {"frame": last, "grid_row": grid.rows - 1, "grid_col": 2}],
             "object_size_grids": {"rows": 2, "cols": 2}},
        ],
        "scene_description": "A textured wall, nothing moves.",
        "confidence": 0.8,
    })


@pytest.fixture(scope="module")
def scene():
    return make_scene("static", 12, 108, 192, seed=3)


@pytest.fixture(scope="module")
def inp(scene):
    obj = (scene.quadmask == 0) | (scene.quadmask == 63)
    frames = Frames.from_array(scene.plate)
    return ReasonInput(frames, MaskStack.from_array(obj), Grid.for_size(108, 192), "remove the ball", [4])


def reasoner(fake: FakeGemini, **kw) -> GeminiReasoner:
    kw.setdefault("max_retries", 2)
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5.0)
    return GeminiReasoner(MODEL, base_url=fake.base_url, api_key=kw.pop("api_key", "test-key-123"), **kw)


def test_good_answer_is_validated_rasterized_and_cached(fake, inp, tmp_path):
    fake.script = [("ok", good_answer(len(inp.frames), inp.grid))]
    store = ArtifactStore(str(tmp_path / "store"))
    g = reasoner(fake)
    r = g.reason(inp, store=store)
    assert (r.reasoner, r.degraded, r.attempts, r.cached) == ("gemini", False, 1, False)
    assert (r.tokens_in, r.tokens_out) == (1200, 80)
    nouns = [o.noun for o in r.reasoning.objects]
    assert nouns == ["shadow", "cup"]
    assert any("(99, 0)" in w for w in r.reasoning.warnings)  # out-of-grid cell dropped, not fatal
    cells = rasterize(r.reasoning)
    assert cells.shape == (12, 8, 14) and cells[0, 4, 3] and cells[11, 5, 10]
    assert cells[5, 4, 3] and cells[5, 5, 10]  # between keyframes: union of both
    assert not cells[1, 2, 2] and cells[2, 2, 2]  # the cup's box starts at its first frame
    # what went over the wire: one POST, JSON mode with our schema, stills not the movie, the key in a header
    (req,) = fake.requests
    assert re.fullmatch(rf"/v1\w*/models/{MODEL}:generateContent", req["path"]), req["path"]
    assert req["headers"].get("x-goog-api-key") == "test-key-123"
    gen = req["json"]["generationConfig"]
    assert gen["responseMimeType"] == "application/json" and "affected_objects" in json.dumps(gen["responseJsonSchema"])
    parts = req["json"]["contents"][0]["parts"]
    inline = [p["inlineData"] for p in parts if "inlineData" in p]
    mimes = [d.get("mimeType", d.get("mime_type")) for d in inline]
    assert mimes == ["image/jpeg"] * 11 and "remove the ball" in parts[-1]["text"]
    # second call: served from the store, no request
    again = g.reason(inp, store=store)
    assert again.cached and len(fake.requests) == 1 and again.reasoning.to_dict() == r.reasoning.to_dict()
    assert again.tokens_in == 0


def test_unreachable_cache_does_not_lose_the_answer(fake, inp):
    class DownStore:
        def exists(self, key):
            raise OSError("store down")

        def put_bytes(self, key, data):
            raise OSError("store down")

    fake.script = [("ok", good_answer(len(inp.frames), inp.grid))]
    r = reasoner(fake, api_key="  test-key-123\n").reason(inp, store=DownStore())
    assert r.reasoner == "gemini" and not r.degraded and not r.cached
    assert fake.requests[0]["headers"]["x-goog-api-key"] == "test-key-123"


def test_malformed_json_is_retried(fake, inp):
    fake.script = [("ok", "{this is not json"), ("ok", '{"affected_objects": "nope"}'),
                   ("ok", good_answer(len(inp.frames), inp.grid))]
    r = reasoner(fake, max_retries=2).reason(inp)
    assert r.attempts == 3 and len(fake.requests) == 3 and r.tokens_in == 3 * 1200


def test_malformed_json_forever_falls_back_to_heuristic(fake, inp):
    fake.script = [("ok", "not json")] * 2
    r = reason_with_fallback(inp, reasoner(fake, max_retries=1), HeuristicReasoner())
    assert (r.reasoner, r.degraded) == ("heuristic", True)
    assert "invalid answer" in r.reason and "offline heuristic" in r.reason
    assert r.attempts == 2 and r.tokens_in == 2400


def test_429_then_success(fake, inp):
    retry_info = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.05s"}]
    fake.script = [("error", 429, "RESOURCE_EXHAUSTED", "quota", retry_info),
                   ("error", 503, "UNAVAILABLE", "overloaded", None),
                   ("ok", good_answer(len(inp.frames), inp.grid))]
    t = time.perf_counter()
    r = reasoner(fake).reason(inp)
    assert r.attempts == 3 and not r.degraded
    assert time.perf_counter() - t >= 0.05  # the server's retryDelay was honoured


def test_non_retryable_error_fails_at_once(fake, inp):
    fake.script = [("error", 400, "INVALID_ARGUMENT", "bad request", None)] * 3
    with pytest.raises(ReasonerError, match="400") as e:
        reasoner(fake).reason(inp)
    assert e.value.attempts == 1 and len(fake.requests) == 1


def test_timeout_falls_back_to_heuristic(fake, inp):
    slow = ("sleep", 1.5, ("ok", good_answer(len(inp.frames), inp.grid)))
    fake.script = [slow, slow]
    t = time.perf_counter()
    r = reason_with_fallback(inp, reasoner(fake, timeout_s=0.3, max_retries=1), HeuristicReasoner())
    assert time.perf_counter() - t < 1.5
    assert (r.reasoner, r.degraded) == ("heuristic", True) and "timed out" in r.reason
    assert r.reasoning.objects and r.reasoning.source == "heuristic"


def test_unconfigured_gemini_uses_heuristic(inp, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    g = GeminiReasoner(MODEL, base_url="http://127.0.0.1:9")
    assert not g.configured
    r = reason_with_fallback(inp, g)
    assert r.reasoner == "heuristic" and r.degraded and "GEMINI_API_KEY" in r.reason


def test_api_key_never_written_or_logged(fake, scene, tmp_path, monkeypatch, caplog):
    """The key reaches the server (a header) but no file, log record, result or error text."""
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("GEMINI_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    plate = tmp_path / "plate.mkv"
    write_video_lossless(plate, scene.plate, scene.rate)
    obj = (scene.quadmask == 0) | (scene.quadmask == 63)
    ys, xs = np.nonzero(obj[6])
    ins = Instructions(points={6: [[float(xs.mean()), float(ys.mean())]]}, instruction="remove the ball")
    out = tmp_path / "out"
    store = ArtifactStore(str(out / "store"))
    # a hostile server echoes the key in its error messages
    fake.script = [("error", 503, "UNAVAILABLE", f"overloaded, key {key}", None),
                   ("ok", good_answer(12, Grid.for_size(108, 192)))]
    g = GeminiReasoner(MODEL, base_url=fake.base_url, backoff_s=0.01, max_retries=2, timeout_s=5)
    assert key not in repr(g)
    r1 = build_quadmask(plate, 0, 12, scene.rate, ins, out / "q1.mkv", segmenter=ClassicalSegmenter(), reasoner=g,
                        store=store, preview_path=out / "p1.mp4", contact_sheet_path=out / "s1.png")
    assert r1.reasoner == "gemini" and not r1.degraded
    fake.script = [("error", 400, "INVALID_ARGUMENT", f"API key {key} is not valid", None)]
    g2 = GeminiReasoner(MODEL + "-b", base_url=fake.base_url, backoff_s=0.01, max_retries=2, timeout_s=5)
    r2 = build_quadmask(plate, 0, 12, scene.rate, ins, out / "q2.mkv", segmenter=ClassicalSegmenter(), reasoner=g2,
                        store=store)
    assert r2.reasoner == "heuristic" and r2.degraded and "[REDACTED]" in r2.reason
    assert all(req["headers"].get("x-goog-api-key") == key for req in fake.requests)
    (out / "results.json").write_text(json.dumps([r1.to_dict(), r2.to_dict()], default=str))
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {"q1.mkv", "q2.mkv", "p1.mp4", "s1.png", "results.json"} <= {p.name for p in written}
    assert any(p.suffix == ".json" and "store" in p.parts for p in written)  # the cached answer
    for p in written:
        assert key.encode() not in p.read_bytes(), p
    assert caplog.records and key not in caplog.text
    assert all(key not in r.getMessage() for r in caplog.records)
    assert key not in json.dumps([r1.to_dict(), r2.to_dict()], default=str)
    # and the masks are real: one frame per shot frame at source resolution
    assert len(list(read_mask_frames(out / "q1.mkv"))) == 12
