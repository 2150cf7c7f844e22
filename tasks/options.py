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

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.passes not in (1, 2):
            raise ValueError(f"--passes must be 1 or 2, got {self.passes}")
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")

    def ingest_options(self) -> IngestOptions:
        return IngestOptions(rate=self.edit_rate, handles=self.handles, sidecar=self.shots_file,
                             relink_dir=self.relink)

    @property
    def edit_rate(self) -> Fraction | None:
        return normalize_rate(self.rate) if self.rate else None

    def to_dict(self) -> dict:
        return asdict(self)
