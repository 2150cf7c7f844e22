"""What a batch was asked to do: small, JSON-able, passed to every shot and recorded."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

from shots.deliver import FORMATS
from shots.frames import normalize_rate
from shots.ingest import IngestOptions

BACKENDS = ("auto", "classical", "void")


@dataclass(frozen=True)
class RunOptions:
    out: str
    backend: str = "auto"
    passes: int = 1
    format: str = "png"
    rate: str | None = None
    handles: int = 8
    shots_file: str | None = None
    relink: str | None = None
    seed: int = 0
    model_dir: str | None = None  # VOID weights: local folder or fsspec URI
    steps: int = 50
    guidance: float = 1.0
    model_size: str = "384x672"  # height x width the model works at; VOID is trained at 384x672
    segmenter: str = "auto"  # masks from clicks: sam2 | classical | auto (SAM2 when sam2_dir has weights)
    reasoner: str = "auto"  # the affected (127) region: gemini | heuristic | none | auto
    sam2_dir: str | None = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.passes not in (1, 2):
            raise ValueError(f"--passes must be 1 or 2, got {self.passes}")
        try:
            h, w = self.model_hw
        except ValueError:
            raise ValueError(f"--model-size must be HEIGHTxWIDTH, got {self.model_size!r}") from None
        if h % 16 or w % 16:
            raise ValueError(f"--model-size must be multiples of 16, got {self.model_size!r}")
        from model.masks.batch import REASONERS, SEGMENTERS

        if self.segmenter not in SEGMENTERS:
            raise ValueError(f"--segmenter must be one of {', '.join(SEGMENTERS)}, got {self.segmenter!r}")
        if self.reasoner not in REASONERS:
            raise ValueError(f"--reasoner must be one of {', '.join(REASONERS)}, got {self.reasoner!r}")
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")

    @property
    def model_hw(self) -> tuple[int, int]:
        h, w = self.model_size.lower().split("x")
        return int(h), int(w)

    def backend_args(self) -> tuple:
        """Arguments of model.select.load_backend for this run."""
        return self.backend, self.model_dir, self.steps, self.guidance, self.passes

    def ingest_options(self) -> IngestOptions:
        return IngestOptions(rate=self.edit_rate, handles=self.handles, sidecar=self.shots_file,
                             relink_dir=self.relink)

    @property
    def edit_rate(self) -> Fraction | None:
        return normalize_rate(self.rate) if self.rate else None

    def to_dict(self) -> dict:
        return asdict(self)
