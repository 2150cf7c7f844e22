"""The run spec: everything a batch was asked to do, validated once, frozen, stored whole.

Built once, from the command line (`voidbatch run`) or from flow parameters (a deployment, the
Prefect UI, a rerun), and passed down whole: flows take `(edit, spec)`, so the UI shows its
schema and a deployment or rerun keeps every option, `dispatch` included. Each rule lives here as
a validator, written once (for example "the void backend needs a model directory"). Local paths
are made absolute when the spec is built, so a rerun from another directory finds the same files.

    spec = RunSpec(out="/jobs/cut", backend=BackendSpec(name="void", model_dir="/models/void"))
    spec.model_dump(mode="json")       # what runs/{run_id}.json and a deployment store
    RunSpec.model_validate(doc)        # and how they come back
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.masks.batch import REASONER_NAMES, SEGMENTER_NAMES
from shots.deliver import FORMATS
from shots.detail import DETAILS
from shots.provenance import MODES as PROVENANCE_MODES
from shots.frames import normalize_rate
from shots.ingest import DEFAULT_HANDLES, IngestOptions
from storage.store import ArtifactStore

MODEL_SIZE = "384x672"  # VOID is trained at 384x672 (height x width)
DISPATCH = ("local", "deployment", "farm")
FARM_ENV = "VOIDBATCH_FARM"  # the farm's Dask scheduler, for batches that named none

# The command-line flag for each spec field, so a validation error names what the user typed.
FLAGS = {
    "out": "--out", "colourspace": "--colourspace", "rate": "--rate", "handles": "--handles", "shots_file": "--shots",
    "relink": "--relink",
    "segmenter": "--segmenter", "reasoner": "--reasoner", "sam2_dir": "--sam2-dir",
    "allow_large_mask": "--allow-large-mask", "name": "--backend", "passes": "--passes",
    "model_dir": "--model-dir", "steps": "--steps", "guidance": "--guidance", "model_size": "--model-size",
    "format": "--format", "detail": "--detail", "qc_every": "--qc-every", "provenance": "--provenance",
    "seed": "--seed",
    "force": "--force", "dispatch": "--dispatch", "farm": "--farm",
}


def absolute(path: str | None) -> str | None:
    """A local path made absolute (a URI stays as it is)."""
    if not path or "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestSpec(_Part):
    """How the edit is read: the EDL's rate, handles, a sidecar shot list, where to relink media."""

    rate: str | None = Field(None, description="Frame rate of an EDL (24, 25, 23.976, 24000/1001)")
    handles: int = Field(DEFAULT_HANDLES, ge=0, description="Handle frames each side, clamped to the media")
    shots_file: str | None = Field(None, description="Sidecar shot list (.json/.csv) keyed by clip name")
    relink: str | None = Field(None, description="Folder to find media in by file name or reel")
    colourspace: str | None = Field(None, description="Input colour space (an OCIO name, e.g. ACEScg) of plates "
                                                      "whose files and the OCIO file rules do not say")

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            rate = normalize_rate(str(v))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{v!r} is not a frame rate (24, 25, 23.976, 24000/1001)") from None
        return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"

    @field_validator("colourspace")
    @classmethod
    def _colourspace(cls, v: str | None) -> str | None:
        from shots.colour import known_space

        return known_space(v) if v else v

    _paths = field_validator("shots_file", "relink")(lambda v: absolute(v))

    @property
    def edit_rate(self) -> Fraction | None:
        return normalize_rate(self.rate) if self.rate else None

    def options(self) -> IngestOptions:
        return IngestOptions(rate=self.edit_rate, handles=self.handles, sidecar=self.shots_file,
                             relink_dir=self.relink)


class MaskSpec(_Part):
    """How quadmasks are made from mattes or clicks, and what a mask may ask for."""

    segmenter: Literal[SEGMENTER_NAMES] = Field(
        "auto", description="Masks from clicks: SAM2 where --sam2-dir holds weights (auto), or classical")
    reasoner: Literal[REASONER_NAMES] = Field(
        "auto", description="The affected (127) region: Gemini when GEMINI_API_KEY is set (auto), else heuristic")
    sam2_dir: str | None = Field(None, description="Folder with the SAM2 config and checkpoint")
    allow_large_mask: bool = Field(False, description="Process masks that remove more than 60% of the frame")

    _paths = field_validator("sam2_dir")(lambda v: absolute(v))

    @model_validator(mode="after")
    def _sam2_needs_dir(self):
        if self.segmenter == "sam2" and not self.sam2_dir:
            raise ValueError("--segmenter sam2 needs --sam2-dir: a folder with the SAM2 config (.yaml) and "
                             "checkpoint (.pt)")
        return self


class BackendSpec(_Part):
    """Which removal backend and its settings; hashable: the key of a loaded backend in a worker."""

    name: Literal["auto", "classical", "void"] = Field(
        "auto", description="auto: VOID where CUDA and --model-dir weights exist, else classical")
    passes: Literal[1, 2] = Field(1, description="1, or 2 for VOID's warped-noise refinement")
    model_dir: str | None = Field(None, description="VOID weights: a local folder or fsspec URI")
    steps: int = Field(50, ge=1, description="VOID denoising steps")
    guidance: float = Field(1.0, ge=0.0, description="VOID classifier-free guidance (1.0: none)")
    model_size: str = Field(MODEL_SIZE, description="Working size HEIGHTxWIDTH (VOID: 384x672)")

    _paths = field_validator("model_dir")(lambda v: absolute(v))

    @field_validator("model_size")
    @classmethod
    def _size(cls, v: str) -> str:
        try:
            h, w = (int(x) for x in v.lower().split("x"))
        except ValueError:
            raise ValueError(f"must be HEIGHTxWIDTH, got {v!r}") from None
        if h <= 0 or w <= 0 or h % 16 or w % 16:
            raise ValueError(f"must be positive multiples of 16, got {v!r}")
        return f"{h}x{w}"

    @model_validator(mode="after")
    def _void_needs_weights(self):
        if self.name == "void" and not self.model_dir:
            raise ValueError("--backend void needs --model-dir (try `voidbatch dev tiny-model DIR` for a test "
                             "model)")
        if self.passes == 2 and (self.name == "classical" or not self.model_dir):
            raise ValueError("--passes 2 is VOID's warped-noise refinement: use it with --model-dir (and "
                             "--backend void or auto)")
        return self

    @property
    def model_hw(self) -> tuple[int, int]:
        h, w = self.model_size.split("x")
        return int(h), int(w)


class DeliverySpec(_Part):
    """What is delivered, and how much of it QC reads back."""

    format: Literal[FORMATS] = Field("auto", description="auto (follow the plate: float -> EXR, deeper than 8 "
                                                         "bits -> 16-bit PNG, else PNG) | png | exr | dpx | prores")
    detail: Literal[DETAILS] = Field("native", description="native: the removal region at plate resolution "
                                                           "(real background carried from frames that reveal it; "
                                                           "VOID's pixels where nothing does and where the scene "
                                                           "changes); model: the backend's 384x672 output scaled up")
    qc_every: int = Field(10, ge=1, description="QC decodes the delivered first, last and every Nth frame (1: all)")
    provenance: Literal[PROVENANCE_MODES] = Field(
        "auto", description="C2PA content credentials: signed (studio identity from $VOIDBATCH_C2PA_CERT and "
                            "$VOIDBATCH_C2PA_KEY), unsigned (an untrusted local test identity), off; auto: signed "
                            "when configured, else unsigned")


class RunSpec(_Part):
    """One batch: where results go, and how each part of the pipeline is set."""

    out: str = Field(..., min_length=1, description="Output folder or fsspec URI (results, manifest, conform)")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for a remote --out")
    ingest: IngestSpec = IngestSpec()
    masks: MaskSpec = MaskSpec()
    backend: BackendSpec = BackendSpec()
    delivery: DeliverySpec = DeliverySpec()
    seed: int = Field(0, description="Base seed; each chunk's seed derives from shot id and chunk")
    force: bool = Field(False, description="Render a new version even when one is up to date")
    dispatch: Literal[DISPATCH] = Field("local", description="local: shots run in this flow run; deployment: "
                                                             "each shot is a process-shot run on the GPU pool; "
                                                             "farm: shots run here, chunks on warm GPU workers")
    farm: str | None = Field(None, description="With dispatch=farm: the Dask scheduler of the warm GPU workers "
                                               f"(tcp://host:8786); default ${FARM_ENV} where the batch runs")
    shot_timeout: float | None = Field(None, gt=0, description="With dispatch=deployment: seconds to wait for "
                                                                "the shots (None: no limit)")

    _paths = field_validator("out")(lambda v: absolute(v))

    @model_validator(mode="after")
    def _farm_needs_a_scheduler(self):
        if self.dispatch == "farm" and not (self.farm or os.environ.get(FARM_ENV)):
            raise ValueError(f"--farm: dispatch=farm needs the farm's Dask scheduler (tcp://host:8786), or "
                             f"{FARM_ENV} set where the batch runs")
        return self

    @property
    def farm_address(self) -> str | None:
        """The farm's scheduler with dispatch=farm (the spec's, else this machine's ${FARM_ENV})."""
        return (self.farm or os.environ.get(FARM_ENV)) if self.dispatch == "farm" else None

    def store(self, create: bool = True) -> ArtifactStore:
        """The run's one store (build it once per process and pass it down)."""
        return ArtifactStore(self.out, storage_options=self.storage_options or None, create=create)


def spec_error(error) -> str:
    """A pydantic ValidationError as one line per problem, naming the command-line flag."""
    lines = []
    for e in error.errors():
        field = next((str(p) for p in reversed(e.get("loc", ())) if isinstance(p, str)), "")
        flag = FLAGS.get(field, field)
        message = e.get("msg", "").removeprefix("Value error, ")
        lines.append(f"{flag}: {message}" if flag and not message.startswith(flag) else message)
    return "; ".join(lines)
