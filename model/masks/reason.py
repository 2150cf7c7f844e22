"""Which reasoner answers: Gemini when it is configured and works, else the offline heuristic, saying why.

The pieces live beside this policy: the shared types and answer validation in `reasoning`, the
prompt in `gemini_prompt`, the Gemini client in `gemini`, the offline tier in `heuristic`.
"""
from __future__ import annotations

import logging

from model.masks.gemini import API_KEY_ENV, GeminiReasoner
from model.masks.heuristic import HeuristicReasoner
from model.masks.reasoning import ReasonerError, ReasonInput, ReasonResult

log = logging.getLogger(__name__)


def default_reasoner(**gemini_kwargs):
    """GeminiReasoner when GEMINI_API_KEY is set, else the HeuristicReasoner."""
    g = GeminiReasoner(**gemini_kwargs)
    return g if g.configured else HeuristicReasoner()


def reason_with_fallback(inp: ReasonInput, gemini: GeminiReasoner | None,
                         heuristic: HeuristicReasoner | None = None, store=None) -> ReasonResult:
    """Gemini when configured; the offline heuristic (degraded=True, with the reason) otherwise or on failure.

    A failure never fails the shot, whatever raised it: the result says why it degraded and what the
    failed attempts cost (attempts, tokens, seconds), with the key scrubbed from every text.
    """
    heuristic = heuristic or HeuristicReasoner()
    if gemini is None:
        return _fell_back(heuristic.reason(inp), "no Gemini reasoner configured")
    if not gemini.configured:
        return _fell_back(heuristic.reason(inp), f"Gemini not configured ({API_KEY_ENV} is not set)")
    try:
        return gemini.reason(inp, store=store)
    except ReasonerError as e:
        why, spent = gemini.redact(str(e)), e
    except Exception as e:  # a bug or an SDK surprise must not fail the shot: degrade and say so
        why, spent = gemini.redact(f"unexpected {type(e).__name__}: {e}"), None
    log.warning("reasoning falls back to the offline heuristic: %s", why)
    result = _fell_back(heuristic.reason(inp), why)
    if spent is not None:
        result.attempts, result.tokens_in, result.tokens_out = spent.attempts, spent.tokens_in, spent.tokens_out
        result.latency_s += spent.latency_s
    result.model = gemini.model
    return result


def _fell_back(result: ReasonResult, why: str) -> ReasonResult:
    result.reason = f"{why}; used the offline heuristic"
    return result
