"""Quadmasks from a few clicks: segmentation (SAM2 or classical), reasoning (Gemini or an offline
heuristic), VOID's combine rule, lossless writing at source resolution, review previews.

The flow calls `build_quadmask`; the pieces are importable for benches and tests. No Prefect here.
"""
from model.masks.combine import combine, default_dilation, quadmask_frames, rasterize
from model.masks.frames import Frames, MaskStack, Prompts, working_size
from model.masks.grid import Grid
from model.masks.pipeline import AUTO, MaskOptions, MaskResult, build_quadmask
from model.masks.preview import contact_sheet, overlay, write_contact_sheet, write_preview
from model.masks.gemini import GeminiReasoner
from model.masks.heuristic import HeuristicReasoner
from model.masks.reason import default_reasoner, reason_with_fallback
from model.masks.reasoning import (AffectedObject, Reasoning, ReasonerError, ReasonInput, ReasonResult,
                                   parse_answer)
from model.masks.segment import (ClassicalSegmenter, SAM2Segmenter, SegmentationError, Segmenter,
                                 default_segmenter)

__all__ = [
    "AUTO", "AffectedObject", "ClassicalSegmenter", "Frames", "GeminiReasoner", "Grid", "HeuristicReasoner",
    "MaskOptions", "MaskResult", "MaskStack", "Prompts", "ReasonInput", "ReasonResult", "Reasoning",
    "ReasonerError", "SAM2Segmenter", "SegmentationError", "Segmenter", "build_quadmask", "combine",
    "contact_sheet", "default_dilation", "default_reasoner", "default_segmenter", "overlay", "parse_answer",
    "quadmask_frames", "rasterize", "reason_with_fallback", "working_size", "write_contact_sheet", "write_preview",
]
