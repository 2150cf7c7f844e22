"""GeminiReasoner: asks Gemini the question in `gemini_prompt`, and keeps the answers and the key safe.

The request (gemini_prompt.build_request) is sent through google-genai with a JSON schema, the
answer validated (reasoning.parse_answer), and the call retried with backoff on 429/5xx, timeouts
and malformed answers; other HTTP errors fail at once. Answers are cached on an ArtifactStore under
a content key of the request, the model id and its sampling settings, so a rerun never pays twice.
The API key comes from GEMINI_API_KEY (or the constructor) and never reaches a log, an error text,
a result or an artifact: every text that could carry it goes through `redact`.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import time

from model.masks.gemini_prompt import (PROMPT_VERSION, RESPONSE_SCHEMA, SYSTEM_INSTRUCTION, GeminiRequest,
                                       build_request)
from model.masks.reasoning import InvalidAnswer, ReasonerError, ReasonInput, ReasonResult, Reasoning, parse_answer
from storage.keys import content_key

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-2.5-pro"
API_KEY_ENV = "GEMINI_API_KEY"
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})


def redact(text: str, secret: str | None) -> str:
    """`text` with `secret`, and anything shaped like a Google API key or a `key=` parameter, replaced."""
    text = str(text)
    if secret:
        text = text.replace(secret, "[REDACTED]")
    # belt and braces: anything shaped like a Google API key or a key query parameter
    text = re.sub(r"AIza[0-9A-Za-z_\-]{20,}", "[REDACTED]", text)
    return re.sub(r"(?i)(key=)[^&\s\"']+", r"\1[REDACTED]", text)


class GeminiReasoner:
    """Gemini via google-genai: gridded keyframes + a red overlay still -> validated Reasoning.

    model: model id (keep it configurable; preview ids get renamed).
    timeout_s: per request. max_retries: extra attempts after the first on 408/429/5xx, timeouts,
        connection errors and malformed answers; other HTTP errors fail at once.
    backoff_s / max_backoff_s: exponential backoff (with jitter); a server RetryInfo delay is honoured
        up to max_backoff_s.
    base_url / api_version / http_options: endpoint override (a proxy, a test server) and API
        version (None: the SDK's default); http_options is a dict or google.genai.types.HttpOptions
        and wins over base_url/api_version/timeout_s.
    api_key: default os.environ["GEMINI_API_KEY"], read at call time.
    store: an ArtifactStore caching answers by content key (may also be given per call).
    keyframes / image_long_side / jpeg_quality: what is sent (about 11 small JPEGs).
    """

    name = "gemini"

    def __init__(self, model: str = DEFAULT_MODEL, *, timeout_s: float = 120.0, max_retries: int = 3,
                 backoff_s: float = 2.0, max_backoff_s: float = 60.0, base_url: str | None = None,
                 api_version: str | None = None, http_options=None, api_key: str | None = None, store=None,
                 keyframes: int = 10, image_long_side: int = 768, jpeg_quality: int = 85,
                 temperature: float | None = 0.0, seed: int | None = 0, cache_prefix: str = "cache/reasoning"):
        if max_retries < 0 or timeout_s <= 0:
            raise ValueError(f"max_retries must be >= 0 and timeout_s > 0, got {max_retries} and {timeout_s}")
        self.model = model
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.base_url, self.api_version, self.http_options = base_url, api_version, http_options
        self._api_key = api_key  # never repr'd, logged or returned
        self.store = store
        self.keyframes, self.image_long_side, self.jpeg_quality = keyframes, image_long_side, jpeg_quality
        self.temperature, self.seed = temperature, seed
        self.cache_prefix = cache_prefix.strip("/")

    def __repr__(self) -> str:
        return f"GeminiReasoner(model={self.model!r}, base_url={self.base_url!r}, configured={self.configured})"

    def _key(self) -> str | None:
        key = (self._api_key or os.environ.get(API_KEY_ENV) or "").strip()  # the SDK strips it too
        return key or None

    @property
    def configured(self) -> bool:
        """True when an API key is available."""
        return bool(self._key())

    def redact(self, text: str) -> str:
        """`text` safe to log or store: this reasoner's key (and anything key-shaped) replaced."""
        return redact(text, self._key())

    # -- request ----------------------------------------------------------------------------------
    def build_request(self, inp: ReasonInput) -> GeminiRequest:
        """The prompt and stills for `inp` at this reasoner's image settings."""
        return build_request(inp, self.keyframes, self.image_long_side, self.jpeg_quality)

    def _cache_key(self, request: GeminiRequest) -> str:
        """Store key of the answer: the request's content, the model and its sampling settings."""
        digest = content_key(request.identity(), {"model": self.model, "temperature": self.temperature,
                                                  "seed": self.seed})
        model = re.sub(r"[^A-Za-z0-9._-]", "_", self.model)
        return f"{self.cache_prefix}/{model}/{digest}.json"

    def _http_options(self):
        from google.genai import types

        if self.http_options is not None:
            return (self.http_options if isinstance(self.http_options, types.HttpOptions)
                    else types.HttpOptions(**self.http_options))
        # retries are ours (counted and reported), so the SDK makes exactly one attempt
        return types.HttpOptions(base_url=self.base_url, api_version=self.api_version,
                                 timeout=int(self.timeout_s * 1000))

    def _config(self):
        from google.genai import types

        return types.GenerateContentConfig(
            system_instruction=SYSTEM_INSTRUCTION, response_mime_type="application/json",
            response_json_schema=RESPONSE_SCHEMA, temperature=self.temperature, seed=self.seed,
            candidate_count=1)

    @staticmethod
    def _cached(store, key: str):
        """(Reasoning, usage) from the store, or None (absent, unreadable or unreachable: ask again)."""
        if store is None:
            return None
        try:
            if not store.exists(key):
                return None
            record = json.loads(store.get_bytes(key))
            return Reasoning.from_dict(record["reasoning"]), record.get("usage")
        except Exception as e:
            log.warning("ignoring the cached reasoning %s: %s: %s", key, type(e).__name__, e)
            return None

    # -- call -------------------------------------------------------------------------------------
    def reason(self, inp: ReasonInput, store=None) -> ReasonResult:
        """Ask Gemini (or the cache). Raises ReasonerError when it keeps failing."""
        store = store if store is not None else self.store
        t0 = time.perf_counter()
        request = self.build_request(inp)
        key = self._cache_key(request)
        details = {"keyframes": request.keyframes, "overlay_frame": request.overlay_frame,
                   "request_bytes": sum(len(b) for b in request.images) + len(request.prompt)}
        cached = self._cached(store, key)
        if cached is not None:
            reasoning, usage = cached
            log.info("gemini: cached answer %s", key)
            details["cached_usage"] = usage
            return ReasonResult(reasoning, "gemini", degraded=False, latency_s=time.perf_counter() - t0,
                                cached=True, model=self.model, cache_key=key, details=details)
        secret = self._key()
        if not secret:
            raise ReasonerError(f"{API_KEY_ENV} is not set")
        try:
            reasoning, usage, attempts = self._call(request, inp, secret)
        except ReasonerError as e:
            e.latency_s = time.perf_counter() - t0
            raise
        latency = time.perf_counter() - t0
        if store is not None:
            record = {"reasoning": reasoning.to_dict(), "model": self.model, "prompt_version": PROMPT_VERSION,
                      "usage": usage, "latency_s": round(latency, 3), "created": time.time()}
            try:
                store.put_bytes(key, json.dumps(record, indent=1).encode())
            except Exception as e:  # a paid answer is not thrown away because the cache is down
                log.warning("could not cache the reasoning at %s: %s: %s", key, type(e).__name__, e)
        details["usage"] = usage
        return ReasonResult(reasoning, "gemini", degraded=False, latency_s=latency,
                            tokens_in=usage["tokens_in"], tokens_out=usage["tokens_out"], attempts=attempts,
                            model=self.model, cache_key=key if store is not None else None, details=details)

    def _call(self, request: GeminiRequest, inp: ReasonInput, secret: str):
        import httpx
        from google import genai
        from google.genai import errors, types

        contents = [types.Part.from_bytes(data=b, mime_type="image/jpeg") for b in request.images]
        contents.append(types.Part.from_text(text=request.prompt))
        config = self._config()
        tokens_in = tokens_out = 0
        last = "no attempt"
        attempts = 0
        with genai.Client(api_key=secret, http_options=self._http_options()) as client:
            for attempt in range(1, self.max_retries + 2):
                attempts = attempt
                retry_after = None
                try:
                    resp = client.models.generate_content(model=self.model, contents=contents, config=config)
                except errors.APIError as e:
                    last = redact(f"HTTP {e.code} {e.status or ''}: {e.message or ''}".strip(), secret)
                    if e.code not in RETRYABLE_HTTP:
                        raise ReasonerError(f"gemini refused the request ({last})", attempts, tokens_in,
                                            tokens_out) from None
                    retry_after = _retry_delay(e.details)
                except httpx.TimeoutException:
                    last = f"timed out after {self.timeout_s:g}s"
                except httpx.TransportError as e:
                    last = redact(f"connection error: {type(e).__name__}: {e}", secret)
                else:
                    u = resp.usage_metadata
                    if u is not None:
                        tokens_in += u.prompt_token_count or 0
                        tokens_out += (u.candidates_token_count or 0) + (u.thoughts_token_count or 0)
                    try:
                        reasoning = parse_answer(_answer_text(resp), inp.grid, len(inp.frames))
                    except InvalidAnswer as e:
                        last = redact(f"invalid answer: {e}", secret)
                    else:
                        reasoning.warnings = [redact(w, secret) for w in reasoning.warnings]
                        usage = {"tokens_in": tokens_in, "tokens_out": tokens_out, "attempts": attempt}
                        log.info("gemini %s: answer after %d attempt(s), %d objects, %d+%d tokens", self.model,
                                 attempt, len(reasoning.objects), tokens_in, tokens_out)
                        return reasoning, usage, attempt
                if attempt > self.max_retries:
                    break
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (1 + 0.25 * random.random())
                if retry_after is not None:
                    delay = max(delay, min(retry_after, self.max_backoff_s))
                log.warning("gemini %s: attempt %d failed (%s); retrying in %.2fs", self.model, attempt, last, delay)
                time.sleep(delay)
        raise ReasonerError(f"gemini failed after {attempts} attempt(s): {last}", attempts, tokens_in, tokens_out)


def _answer_text(resp) -> str:
    cands = resp.candidates or []
    if not cands or cands[0].content is None or not cands[0].content.parts:
        reason = cands[0].finish_reason if cands else getattr(resp.prompt_feedback, "block_reason", None)
        raise InvalidAnswer(f"no answer text (finish/block reason: {reason})")
    return "".join(p.text for p in cands[0].content.parts if p.text and not p.thought)


def _retry_delay(details) -> float | None:
    """Seconds from a google.rpc.RetryInfo in an error body ('retryDelay': '20s'), if any."""
    try:
        for d in (details or {}).get("error", {}).get("details", []) or []:
            if isinstance(d, dict) and "retryDelay" in d:
                return float(str(d["retryDelay"]).rstrip("s"))
    except (AttributeError, ValueError, TypeError):
        return None
    return None
