"""Content credentials (C2PA) on every delivered version: who removed what from which plate, signed.

A version says, in a C2PA manifest: `c2pa.opened` on the plate (a `parentOf` ingredient carrying
its file name, sha256 and timecode range), then `c2pa.edited` with the IPTC `digitalSourceType`,
the software agent and the prompt; the removal region is the action's `changes` and, with the
quadmask and the backend identity, the custom assertion `com.voidbatch.removal` (the whole `Edit`,
which `verify` reads back).

Where the manifest goes, by format:
- ProRes `.mov`: embedded in the movie (BMFF hash binding).
- PNG frames: embedded in every frame (data hash binding, a `caBX` chunk; pixels decode the same).
- EXR/DPX frames, which C2PA cannot embed into: one sidecar per version. `{stem}.frames.json` is a
  canonical index of each frame's file name and sha256; it is signed as a JSON asset with no
  embedding, which gives `{stem}.c2pa`, a manifest store whose hard binding (`c2pa.hash.data`)
  covers the index's bytes. `verify` checks the signature over the index, then every frame's hash
  against it. c2pa-python 0.38 signs any format offline when nothing is embedded
  (`Builder.set_no_embed()`), and `Reader(format, stream, manifest_data)` validates a sidecar
  against its asset, so no collection-hash support is needed.
- PNG versions get the same index and sidecar too: per-frame manifests prove each frame, the index
  proves the set (a deleted, added or renamed frame is caught).

Signing rewrites files: every signed PNG and .mov has new bytes (and a random manifest id), so a
version's recorded sha256 is computed after `sign_version`. Files are replaced atomically (temp
name beside the file, then one rename, `storage.atomic`).

The signing identity: the studio's certificate chain and ES256 key (`signed`), or a locally made,
plainly untrusted test identity (`unsigned`), or none (`off`). Key material never leaves the
`Identity`: it is not in its repr, not in logs or errors, and an `Identity` refuses to be pickled
(so it cannot land in a Prefect result or artifact): load it in the process that signs.

    identity = load_identity("auto", cache_dir)
    provenance = sign_version(staging, frame_files, "png", edit, identity)
    report = verify(version_folder)
    print("\\n".join(report.lines()))
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import mimetypes
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import c2pa

from storage.atomic import atomic_path, write_atomic
from storage.keys import sha256_file

log = logging.getLogger(__name__)

CERT_ENV = "VOIDBATCH_C2PA_CERT"
KEY_ENV = "VOIDBATCH_C2PA_KEY"
MODES = ("auto", "signed", "unsigned", "off")
STATES = ("signed", "unsigned", "off")

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_COMPOSITE = IPTC + "compositeWithTrainedAlgorithmicMedia"
ALGORITHMIC = IPTC + "algorithmicMedia"

ASSERTION = "com.voidbatch.removal"
INDEX_SUFFIX = ".frames.json"
SIDECAR_SUFFIX = ".c2pa"
INDEX_MIME = "application/json"
EMBEDDED = {"png": "image/png", "prores": "video/quicktime"}  # deliverable format -> MIME of its files
SIDECAR_ONLY = ("exr", "dpx")
SEQUENCE_EXTS = ("png", "exr", "dpx")
MOVIE_EXTS = ("mov",)

# Per-file validation, best first. `untrusted`: intact and correctly signed, but by a signer no configured
# trust anchor vouches for (the test identity, or a studio chain the verifier was not given).
TRUSTED, VALID, UNTRUSTED, INVALID, MISSING = "trusted", "valid", "untrusted", "invalid", "missing"
INTACT = (TRUSTED, VALID, UNTRUSTED)
_HARD_BINDINGS = ("assertion.dataHash", "assertion.bmffHash", "assertion.boxesHash", "assertion.collectionHash")
_UNTRUSTED_CODE = "signingCredential.untrusted"
_FRAME_NAME = re.compile(r"^(?P<stem>.+)\.(?P<frame>\d+)\.(?P<ext>[A-Za-z0-9]+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Thumbnails would re-encode every 1080p frame as a JPEG inside its own manifest: slow, and a copy of
# the picture nobody asked for. Verification never fetches anything (no remote manifests).
_SIGN_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}
_READ_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


class ProvenanceError(RuntimeError):
    """A signing identity that cannot be used, or a version that cannot be signed; never holds key material."""


# -- what a version says ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plate:
    """The source the removal was made from: file name (a sequence as its pattern), sha256 of its bytes
    (`storage.keys.files_sha256` for a sequence), and the timecodes of its first and last used frame."""

    name: str
    sha256: str
    first_timecode: str
    last_timecode: str

    def __post_init__(self):
        _check_sha256("plate sha256", self.sha256)


@dataclass(frozen=True)
class SoftwareAgent:
    """What did it: voidbatch at `version`, through the removal backend `backend` at `backend_version`
    (`model.backend.BackendIdentity`), with the checkpoint `weights_sha256` (None for weight-free backends)."""

    version: str
    backend: str
    backend_version: str
    weights_sha256: str | None = None
    name: str = "voidbatch"

    def __post_init__(self):
        if self.weights_sha256 is not None:
            _check_sha256("weights sha256", self.weights_sha256)


@dataclass(frozen=True)
class Region:
    """Where: deliverable frames `first_frame`..`last_frame` (inclusive), and the pixel box
    [x0, x1) x [y0, y1) holding the removed and affected region (the quadmask's non-keep pixels)."""

    first_frame: int
    last_frame: int
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1
    quadmask_uri: str
    quadmask_sha256: str

    def __post_init__(self):
        object.__setattr__(self, "bbox", tuple(int(v) for v in self.bbox))
        if len(self.bbox) != 4:
            raise ValueError(f"bbox must be [x0, y0, x1, y1], got {list(self.bbox)}")
        x0, y0, x1, y1 = self.bbox
        if not (0 <= x0 < x1 and 0 <= y0 < y1):
            raise ValueError(f"bbox must have 0 <= x0 < x1 and 0 <= y0 < y1, got {list(self.bbox)}")
        if self.last_frame < self.first_frame:
            raise ValueError(f"last_frame {self.last_frame} is before first_frame {self.first_frame}")
        _check_sha256("quadmask sha256", self.quadmask_sha256)


@dataclass(frozen=True)
class Edit:
    """What one delivered version says about itself.

    `generated` True: VOID, a trained generative model, painted the fill. IPTC's
    `compositeWithTrainedAlgorithmicMedia` ("a mix or composite of several elements, at least one of
    which is trained algorithmic media") is the exact term for a plate with a model-generated region.

    `generated` False: the classical backend. Its fill is computed by a fixed procedure (background
    propagated from other frames along the estimated camera motion, then Telea inpainting of what no
    frame shows) with no trained model and no training data. IPTC's `algorithmicMedia` is "media created
    purely by an algorithm not based on any sampled training data": that is what the pixels this action
    introduced are, and `digitalSourceType` on an action describes the content that action added. The
    untouched plate is already named by the `parentOf` ingredient that `c2pa.opened` points to, so the
    manifest as a whole still reads as plate + algorithmic fill. IPTC has no composite-with-untrained-
    algorithm term; `compositeSynthetic` would be the alternative, but it does not say the fill is
    untrained, which is the distinction that matters against the VOID versions.
    """

    plate: Plate
    agent: SoftwareAgent
    prompt: str
    region: Region
    generated: bool

    @property
    def digital_source_type(self) -> str:
        return TRAINED_COMPOSITE if self.generated else ALGORITHMIC

    def to_dict(self) -> dict:
        """The `com.voidbatch.removal` assertion. No integer lists: c2pa 0.38 stores a JSON list of integers
        as a CBOR byte string, truncating each to a byte (measured: 300 came back as 44), so boxes are maps."""
        data = asdict(self)
        x0, y0, x1, y1 = self.region.bbox
        data["region"]["bbox"] = {"x0": x0, "y0": y0, "x1": x1, "y1": y1}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Edit:
        region = dict(data["region"])
        box = region.pop("bbox")
        return cls(plate=Plate(**data["plate"]), agent=SoftwareAgent(**data["agent"]), prompt=data["prompt"],
                   region=Region(bbox=(box["x0"], box["y0"], box["x1"], box["y1"]), **region),
                   generated=bool(data["generated"]))


def _check_sha256(what: str, value: str) -> None:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ValueError(f"{what} must be 64 lowercase hex digits, got {value!r}")


# -- the signing identity --------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class Identity:
    """An ES256 signing identity: PEM certificate chain (end-entity first, then its CA) and PEM private key.

    `trusted`: the studio's own identity (versions are `signed`), not the local test identity (`unsigned`).
    `repr`/`str` give only `description`; pickling is refused so the key never reaches a result store.
    """

    chain_pem: bytes
    key_pem: bytes = field(compare=False)
    trusted: bool
    description: str

    def __repr__(self) -> str:
        return f"Identity({self.description!r}, trusted={self.trusted})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("an Identity holds a private key and is never serialised; call load_identity() "
                        "in the process that signs")

    @property
    def root_pem(self) -> bytes:
        """The chain's last certificate: what a verifier configures as its trust anchor."""
        marker = b"-----BEGIN CERTIFICATE-----"
        return self.chain_pem[self.chain_pem.rindex(marker):]

    @property
    def state(self) -> str:
        return "signed" if self.trusted else "unsigned"

    def _signer(self) -> c2pa.Signer:
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, self.chain_pem, self.key_pem, None)
        try:
            return c2pa.Signer.from_info(info)
        except c2pa.C2paError as e:
            raise ProvenanceError(f"c2pa refused the signing identity {self.description}: "
                                  f"{_scrub(str(e), self)}") from None


TEST_SUBJECT = "voidbatch UNTRUSTED test identity"
TEST_ORG = "voidbatch test (not a studio identity)"
TEST_IDENTITY_FILE = "c2pa-test-identity.pem"


def generate_identity(common_name: str = TEST_SUBJECT, organization: str = TEST_ORG,
                      trusted: bool = False, days: int = 3650) -> Identity:
    """A fresh ES256 CA and an end-entity certificate it signs, in the profile c2pa checks.

    c2pa refuses a bare self-signed end-entity certificate. What it accepts: a CA (BasicConstraints CA,
    keyCertSign, SubjectKeyIdentifier) signing an end-entity certificate with digitalSignature,
    ExtendedKeyUsage emailProtection, SubjectKeyIdentifier and AuthorityKeyIdentifier; the chain is the
    end-entity PEM followed by the CA PEM.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    end = start + dt.timedelta(days=days)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"{common_name} CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(sign=False, ca=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ee = (x509.CertificateBuilder().subject_name(name(common_name)).issuer_name(ca_name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
          .add_extension(usage(sign=True, ca=False), critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    chain = ee.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Identity(chain, key_pem, trusted, _describe(chain, trusted))


def load_identity(mode: str, cache_dir: str | os.PathLike | None = None) -> Identity | None:
    """The identity versions are signed with, for `mode` in auto|signed|unsigned|off.

    signed: the studio chain and key from the PEM files named by $VOIDBATCH_C2PA_CERT and $VOIDBATCH_C2PA_KEY.
    unsigned: the local test identity, made once and cached in `cache_dir`.
    off: None (nothing is signed). auto: signed when both variables are set, else unsigned.
    """
    if mode not in MODES:
        raise ValueError(f"provenance mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return None
    if mode == "auto":
        present = [v for v in (CERT_ENV, KEY_ENV) if os.environ.get(v)]
        if len(present) == 1:
            missing = KEY_ENV if present == [CERT_ENV] else CERT_ENV
            log.warning("provenance: $%s is set but $%s is not; signing with the untrusted test identity",
                        present[0], missing)
        mode = "signed" if len(present) == 2 else "unsigned"
    if mode == "signed":
        chain, key = _read_env_pem(CERT_ENV), _read_env_pem(KEY_ENV)
        _check_pair(chain, key, f"${CERT_ENV}", f"${KEY_ENV}")
        return Identity(chain, key, True, _describe(chain, True))
    if cache_dir is None:
        raise ValueError("the unsigned test identity needs a cache_dir to keep it in")
    return _test_identity(Path(cache_dir))


def _read_env_pem(var: str) -> bytes:
    where = os.environ.get(var)
    if not where:
        what = "the certificate chain, end-entity first" if var == CERT_ENV else "the ES256 private key"
        raise ProvenanceError(f"signed provenance needs ${var}: set it to the path of a PEM file ({what})")
    try:
        return Path(where).read_bytes()
    except OSError as e:
        raise ProvenanceError(f"${var} names a file that cannot be read ({e.strerror})") from None


def _check_pair(chain: bytes, key: bytes, chain_from: str, key_from: str) -> None:
    """The key is an unencrypted P-256 key whose public half is the chain's first certificate's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        certs = x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise ProvenanceError(f"{chain_from} holds no PEM certificate chain") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise ProvenanceError(f"{key_from} holds no unencrypted PEM private key") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ProvenanceError(f"{key_from} is not an EC P-256 key (ES256 signing needs one)")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if (certs[0].public_key().public_bytes(serialization.Encoding.DER, pub)
            != private.public_key().public_bytes(serialization.Encoding.DER, pub)):
        raise ProvenanceError(f"the key in {key_from} does not belong to the first certificate in {chain_from}")


def _test_identity(cache_dir: Path) -> Identity:
    """The cached test identity (key and chain in one file, so a pair is never mixed); made once."""
    path = cache_dir / TEST_IDENTITY_FILE
    if not path.exists():
        made = generate_identity()
        try:
            with atomic_path(path, exclusive=True) as tmp:
                tmp.write_bytes(made.key_pem + made.chain_pem)
                os.chmod(tmp, 0o600)
            log.info("provenance: made the untrusted test identity in %s", path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    blob = path.read_bytes()
    cut = blob.find(b"-----BEGIN CERTIFICATE-----")
    key, chain = blob[:cut], blob[cut:]
    if cut <= 0:
        raise ProvenanceError(f"the cached test identity {path} is damaged: delete it to make a new one")
    _check_pair(chain, key, str(path), str(path))
    return Identity(chain, key, False, _describe(chain, False))


def _describe(chain: bytes, trusted: bool) -> str:
    from cryptography import x509

    subject = x509.load_pem_x509_certificates(chain)[0].subject.rfc4514_string()
    return f"studio identity {subject}" if trusted else f"untrusted test identity {subject}"


def _scrub(text: str, identity: Identity) -> str:
    """`text` with any line of the key's PEM removed (belt and braces on messages from the native library)."""
    for line in identity.key_pem.decode(errors="replace").splitlines():
        if len(line) > 16 and not line.startswith("-----"):
            text = text.replace(line, "[key]")
    return text


# -- signing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Provenance:
    """What `sign_version` did: `state` signed|unsigned|off; names of the files that now carry an embedded
    manifest, and of the sidecar files it wrote (`{stem}.frames.json`, `{stem}.c2pa`)."""

    state: str
    embedded: tuple[str, ...] = ()
    sidecars: tuple[str, ...] = ()

    @property
    def written(self) -> tuple[str, ...]:
        return self.embedded + self.sidecars


def sign_version(folder: Path, files: list[Path], fmt: str, edit: Edit, identity: Identity | None) -> Provenance:
    """Sign the finished files of one version in `folder` (its staging folder, before it is published).

    fmt: png | prores (manifests embedded) | exr | dpx (one sidecar). Embedded files are replaced with their
    signed copies atomically; their bytes change, so hash the version after this. `identity` None: `off`.
    """
    # 1. Check inputs.
    if identity is None:
        return Provenance("off")
    folder = Path(folder)
    paths = [folder / Path(f).name for f in files]
    if not paths:
        raise ValueError("sign_version needs the version's files; got none")
    if fmt not in EMBEDDED and fmt not in SIDECAR_ONLY:
        raise ValueError(f"cannot sign format {fmt!r}; choose one of {', '.join([*EMBEDDED, *SIDECAR_ONLY])}")
    expected = MOVIE_EXTS if fmt == "prores" else (fmt,)
    wrong = [p.name for p in paths if p.suffix.lower().lstrip(".") not in expected]
    if wrong:
        raise ValueError(f"{fmt} version has files of another format: {wrong[:4]}")
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"files to sign are not in {folder}: {missing[:4]}")
    stem = _stem_of(paths, fmt)
    # 2. Sign.
    with c2pa.Context.from_dict(_SIGN_SETTINGS) as ctx, identity._signer() as signer:
        embedded = []
        if fmt in EMBEDDED:
            for p in paths:
                _embed(p, EMBEDDED[fmt], edit, signer, ctx, identity)
                embedded.append(p.name)
        sidecars = [] if fmt == "prores" else _write_sidecar(folder, stem, paths, fmt, edit, signer, ctx, identity)
    log.info("provenance: %s %s version %s (%d files) with %s", identity.state, fmt, stem, len(paths),
             identity.description)
    return Provenance(identity.state, tuple(embedded), tuple(sidecars))


def _stem_of(paths: list[Path], fmt: str) -> str:
    if fmt == "prores":
        if len(paths) != 1:
            raise ValueError(f"a ProRes version is one .mov, got {len(paths)} files")
        return paths[0].stem
    stems = set()
    for p in paths:
        m = _FRAME_NAME.match(p.name)
        if not m:
            raise ValueError(f"{p.name} is not a sequence frame name (stem.NNNN.{fmt})")
        stems.add(m["stem"])
    if len(stems) != 1:
        raise ValueError(f"one version's frames share one stem; got {sorted(stems)}")
    return stems.pop()


def _manifest(edit: Edit, title: str, mime: str) -> dict:
    """The manifest definition: c2pa.opened on the plate ingredient, then c2pa.edited; the Edit as an assertion."""
    plate, agent, region = edit.plate, edit.agent, edit.region
    x0, y0, x1, y1 = region.bbox
    return {
        "claim_generator_info": [{"name": agent.name, "version": agent.version}],
        "title": title,
        "format": mime,
        "ingredients": [{
            "title": plate.name,
            "format": mimetypes.guess_type(plate.name)[0] or "application/octet-stream",
            "relationship": "parentOf",
            "label": "plate",
            "metadata": {"com.voidbatch.plate": {"sha256": plate.sha256, "first_timecode": plate.first_timecode,
                                                 "last_timecode": plate.last_timecode}},
        }],
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [
                {"action": "c2pa.opened", "parameters": {"ingredientIds": ["plate"]}},
                {"action": "c2pa.edited",
                 "description": "object and its effects removed",
                 "digitalSourceType": edit.digital_source_type,
                 "softwareAgent": {"name": agent.name, "version": agent.version},
                 "changes": [{"description": "removed and affected region", "region": [
                     {"type": "spatial", "shape": {"type": "rectangle", "unit": "pixel", "origin": {"x": x0, "y": y0},
                                                   "width": x1 - x0, "height": y1 - y0}},
                     {"type": "frame", "frame": {"start": region.first_frame, "end": region.last_frame}}]}],
                 "parameters": {"com.voidbatch.prompt": edit.prompt,
                                "com.voidbatch.backend": {"name": agent.backend, "version": agent.backend_version,
                                                          "weights_sha256": agent.weights_sha256}}},
            ]}},
            {"label": ASSERTION, "data": edit.to_dict()},
        ],
    }


def _sign_stream(builder: c2pa.Builder, signer: c2pa.Signer, mime: str, source, dest, what: str,
                 identity: Identity) -> None:
    try:
        builder.sign(signer, mime, source, dest)
    except c2pa.C2paError as e:
        raise ProvenanceError(_sign_failure(what, e, identity)) from None


def _sign_failure(what: str, error: Exception, identity: Identity) -> str:
    message = f"c2pa could not sign {what} with {identity.description}: {_scrub(str(error), identity)}"
    if "certificate is invalid" in message:
        message += (" (c2pa wants a CA-issued end-entity certificate with digitalSignature key usage, the "
                    "emailProtection extended key usage and subject/authority key identifiers, the chain "
                    "end-entity first; see generate_identity)")
    return message


def _embed(path: Path, mime: str, edit: Edit, signer, ctx, identity: Identity) -> None:
    """Replace `path` with a copy carrying its manifest (temp beside it, then one rename)."""
    with c2pa.Builder(_manifest(edit, path.name, mime), context=ctx) as builder:
        with atomic_path(path, suffix=path.suffix) as tmp:
            with open(path, "rb") as source, open(tmp, "w+b") as dest:
                _sign_stream(builder, signer, mime, source, dest, path.name, identity)
            shutil.copymode(path, tmp)


def _frame_index(stem: str, fmt: str, paths: list[Path]) -> bytes:
    """The canonical index a sequence's sidecar signs: each frame's name, size and sha256, sorted by name."""
    frames = [{"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
              for p in sorted(paths, key=lambda p: p.name)]
    doc = {"voidbatch_frame_index": 1, "version": stem, "format": fmt, "frames": frames}
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _write_sidecar(folder: Path, stem: str, paths: list[Path], fmt: str, edit: Edit, signer, ctx,
                   identity: Identity) -> list[str]:
    """`{stem}.frames.json` and the manifest store `{stem}.c2pa` bound to its bytes (no embedding)."""
    index = _frame_index(stem, fmt, paths)
    index_name, sidecar_name = stem + INDEX_SUFFIX, stem + SIDECAR_SUFFIX
    with c2pa.Builder(_manifest(edit, index_name, INDEX_MIME), context=ctx) as builder:
        builder.set_no_embed()
        try:
            store = builder.sign(signer, INDEX_MIME, io.BytesIO(index), io.BytesIO())
        except c2pa.C2paError as e:
            raise ProvenanceError(_sign_failure(index_name, e, identity)) from None
    write_atomic(folder / index_name, index)
    write_atomic(folder / sidecar_name, store)
    return [index_name, sidecar_name]


# -- verification ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileCheck:
    """One file: `bound` (its bytes are the ones signed) and `validation` (trusted | valid | untrusted |
    invalid | missing, from the c2pa Reader), with what went wrong in words."""

    name: str
    bound: bool
    validation: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.bound and self.validation in INTACT and not self.problems


@dataclass(frozen=True)
class VerifyReport:
    """What a delivered file, sequence or version folder says, and whether every file is the one signed."""

    path: Path
    files: tuple[FileCheck, ...]
    actions: tuple[str, ...] = ()
    digital_source_type: str | None = None
    edit: Edit | None = None
    signer: str | None = None
    problems: tuple[str, ...] = ()  # about the set: frames missing, no files found
    skipped: tuple[str, ...] = ()  # files in the folder that are not deliverable media (contact sheet, logs)

    @property
    def ok(self) -> bool:
        return bool(self.files) and not self.problems and all(f.ok for f in self.files)

    @property
    def trusted(self) -> bool:
        """Every file chains to a trust anchor the verifier was given (never so for the test identity)."""
        return self.ok and all(f.validation == TRUSTED for f in self.files)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files if not f.ok)

    def lines(self) -> list[str]:
        n = len(self.files)
        verdict = "OK" if self.ok else f"FAILED ({len(self.failed)} of {n} files)" if self.failed else "FAILED"
        trust = "trusted" if self.trusted else "signer not trusted (test identity or unknown CA)"
        count = f"{n} file{'' if n == 1 else 's'}"
        out = [f"{self.path}: {verdict}, {count}, {trust}" if self.files else f"{self.path}: {verdict}"]
        if self.signer:
            out.append(f"  signed by: {self.signer}")
        if self.actions:
            source = (self.digital_source_type or "").removeprefix(IPTC)
            out.append(f"  actions: {', '.join(self.actions)} ({source})")
        if self.edit:
            e = self.edit
            weights = f", weights {e.agent.weights_sha256[:12]}" if e.agent.weights_sha256 else ""
            out.append(f"  by: {e.agent.name} {e.agent.version}, backend {e.agent.backend} "
                       f"{e.agent.backend_version}{weights}")
            out.append(f"  plate: {e.plate.name} sha256 {e.plate.sha256[:12]}, "
                       f"{e.plate.first_timecode}-{e.plate.last_timecode}")
            r = e.region
            out.append(f"  region: frames {r.first_frame}-{r.last_frame}, box {list(r.bbox)}, "
                       f"quadmask {r.quadmask_uri} sha256 {r.quadmask_sha256[:12]}")
            out.append(f"  prompt: {e.prompt!r}")
        out += [f"  problem: {p}" for p in self.problems]
        for f in self.files:
            why = f": {'; '.join(f.problems)}" if f.problems else ""
            state = f.validation if f.bound else f"{f.validation}, not bound"
            out.append(f"  {'ok  ' if f.ok else 'FAIL'} {f.name} [{state}]{why}")
        if self.skipped:
            out.append(f"  not covered: {', '.join(self.skipped)}")
        return out


@dataclass
class _Group:
    """The deliverable files of one stem in a folder."""

    frames: dict[str, Path] = field(default_factory=dict)
    movies: dict[str, Path] = field(default_factory=dict)
    index: Path | None = None
    sidecar: Path | None = None


@dataclass
class _Read:
    """One manifest as read: validation, binding, and what it says."""

    validation: str
    bound: bool
    problems: list[str]
    manifest: dict | None = None


def verify(path: str | os.PathLike, trust_anchors: bytes | None = None) -> VerifyReport:
    """Check a delivered file, a sequence folder or a version folder against its content credentials.

    trust_anchors: PEM root certificates to trust (the studio's CA); without them every signer is
    `untrusted`, which `ok` accepts: `ok` says the files are intact and correctly signed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"nothing to verify at {path}")
    settings = dict(_READ_SETTINGS)
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors.decode()}
    folder = path if path.is_dir() else path.parent
    groups, skipped = _scan(folder)
    only: str | None = None
    if path.is_file():
        stem = _group_stem(path.name)
        if stem is None or stem not in groups:
            groups, skipped, only = {}, [path.name], None
        else:
            groups = {stem: groups[stem]}
            skipped = []
            only = None if path.name.endswith((INDEX_SUFFIX, SIDECAR_SUFFIX)) else path.name
    with c2pa.Context.from_dict(settings) as ctx:
        checks, problems, reference = [], [], {}
        for stem, group in sorted(groups.items()):
            c, p = _verify_group(stem, group, only, ctx, reference)
            checks += c
            problems += p
    if not checks and not problems:
        problems.append(f"no deliverable media (png/exr/dpx frames, .mov) or sidecar in {path}")
    manifest = reference.get("manifest") or {}
    return VerifyReport(path, tuple(checks), *_summary(manifest), problems=tuple(problems), skipped=tuple(skipped))


def _group_stem(name: str) -> str | None:
    for suffix in (INDEX_SUFFIX, SIDECAR_SUFFIX):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    m = _FRAME_NAME.match(name)
    if m and m["ext"].lower() in SEQUENCE_EXTS:
        return m["stem"]
    if Path(name).suffix.lower().lstrip(".") in MOVIE_EXTS:
        return Path(name).stem
    return None


def _scan(folder: Path) -> tuple[dict[str, _Group], list[str]]:
    groups: dict[str, _Group] = {}
    skipped = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        stem = _group_stem(p.name)
        if stem is None:
            skipped.append(p.name)
            continue
        g = groups.setdefault(stem, _Group())
        if p.name.endswith(INDEX_SUFFIX):
            g.index = p
        elif p.name.endswith(SIDECAR_SUFFIX):
            g.sidecar = p
        elif _FRAME_NAME.match(p.name) and p.suffix.lower().lstrip(".") in SEQUENCE_EXTS:
            g.frames[p.name] = p
        else:
            g.movies[p.name] = p
    return groups, skipped


def _verify_group(stem: str, g: _Group, only: str | None, ctx, reference: dict) -> tuple[list[FileCheck], list[str]]:
    checks: list[FileCheck] = []
    problems: list[str] = []
    listed: dict[str, str] | None = None  # frame name -> signed sha256
    index_ok, index_validation = False, MISSING
    if g.index or g.sidecar:
        if not (g.index and g.sidecar):
            have, lack = (g.index, stem + SIDECAR_SUFFIX) if g.index else (g.sidecar, stem + INDEX_SUFFIX)
            problems.append(f"{have.name} is here but {lack} is not")
        else:
            read = _read_sidecar(g.index, g.sidecar, ctx)
            _note_edit(read, reference)
            listed = _listed_frames(g.index, read)
            checks.append(FileCheck(g.index.name, read.bound, read.validation, tuple(read.problems)))
            index_ok = read.bound and read.validation in INTACT and not read.problems
            index_validation = read.validation
    if listed is not None and only is None:
        gone = sorted(set(listed) - set(g.frames))
        problems += [f"{name} is in the signed index but not in the folder" for name in gone]
    elif g.frames and not (g.index or g.sidecar) and only is None:  # every signed sequence has one
        problems.append(f"no signed frame index {stem}{INDEX_SUFFIX}: which frames make the version is not proven")
    for name, p in sorted({**g.frames, **g.movies}.items()):
        if only is not None and name != only:
            continue
        ext = p.suffix.lower().lstrip(".")
        if ext in SIDECAR_ONLY:
            read = _Read(index_validation if listed is not None else MISSING, listed is not None, [])
            if listed is None:
                read.problems.append(f"no {stem}{SIDECAR_SUFFIX} sidecar covers it")
            elif not index_ok:
                read.problems.append(f"the signed index {stem}{INDEX_SUFFIX} does not verify")
        else:
            read = _read_embedded(p, ctx)
            _note_edit(read, reference)
        if listed is not None and name in g.frames:
            if name not in listed:
                read.bound = False
                read.problems.append(f"not in the signed index {stem}{INDEX_SUFFIX}")
            elif sha256_file(p) != listed[name]:
                read.bound = False
                read.problems.append(f"bytes differ from the signed index {stem}{INDEX_SUFFIX}")
        checks.append(FileCheck(name, read.bound, read.validation, tuple(read.problems)))
    return checks, problems


def _classify(reader: c2pa.Reader) -> _Read:
    """Validation state and hard-binding result of one read manifest store."""
    state = reader.get_validation_state()
    results = (reader.get_validation_results() or {}).get("activeManifest") or {}
    failures = results.get("failure") or []
    successes = {s.get("code") for s in results.get("success") or []}
    codes = [f.get("code", "") for f in failures]
    bound = (any(c.endswith(".match") and c.startswith(_HARD_BINDINGS) for c in successes)
             and not any(c.startswith(_HARD_BINDINGS) for c in codes))
    others = [f for f in failures if f.get("code") != _UNTRUSTED_CODE]
    if state == "Trusted" and not others:
        validation = TRUSTED
    elif state == "Valid" and not others:
        validation = UNTRUSTED if _UNTRUSTED_CODE in codes else VALID
    else:
        validation = INVALID
    problems = [f"{f.get('code')}: {f.get('explanation', '')}".rstrip(": ") for f in others]
    if not bound and not others:
        problems.append("no hard binding to the file's bytes")
    return _Read(validation, bound, problems, reader.get_active_manifest())


def _read_embedded(path: Path, ctx) -> _Read:
    mime = EMBEDDED["png"] if path.suffix.lower() == ".png" else EMBEDDED["prores"]
    try:
        with open(path, "rb") as f, c2pa.Reader(mime, f, None, ctx) as reader:
            return _classify(reader)
    except c2pa.C2paError.ManifestNotFound:
        return _Read(MISSING, False, ["no content credentials in the file"])
    except c2pa.C2paError as e:
        return _Read(INVALID, False, [f"unreadable manifest: {e}"])


def _read_sidecar(index: Path, sidecar: Path, ctx) -> _Read:
    try:
        with open(index, "rb") as f, c2pa.Reader(INDEX_MIME, f, sidecar.read_bytes(), ctx) as reader:
            return _classify(reader)
    except c2pa.C2paError as e:
        return _Read(INVALID, False, [f"{sidecar.name} does not read as a manifest for {index.name}: {e}"])


def _listed_frames(index: Path, read: _Read) -> dict[str, str]:
    try:
        doc = json.loads(index.read_bytes())
        return {f["name"]: f["sha256"] for f in doc["frames"]}
    except (ValueError, KeyError, TypeError) as e:
        read.bound = False
        read.problems.append(f"{index.name} is not a voidbatch frame index ({e})")
        return {}


def _edit_of(manifest: dict | None) -> Edit | None:
    for a in (manifest or {}).get("assertions") or []:
        if a.get("label") == ASSERTION:
            try:
                return Edit.from_dict(a["data"])
            except (KeyError, TypeError, ValueError):
                return None
    return None


def _note_edit(read: _Read, reference: dict) -> None:
    """The first manifest read is the reference; any other that describes a different edit is a problem."""
    if read.manifest is None:
        return
    if "manifest" not in reference:
        reference["manifest"] = read.manifest
        reference["edit"] = _edit_of(read.manifest)
    elif _edit_of(read.manifest) != reference["edit"]:
        read.problems.append("its credentials describe a different edit than the rest of the version")


def _summary(manifest: dict) -> tuple[tuple[str, ...], str | None, Edit | None, str | None]:
    """actions, digitalSourceType, Edit and signer of a manifest (empty when there is none)."""
    actions, source = [], None
    for a in manifest.get("assertions") or []:
        if a.get("label", "").startswith("c2pa.actions"):
            for action in a.get("data", {}).get("actions") or []:
                actions.append(action.get("action"))
                source = action.get("digitalSourceType") or source
    info = manifest.get("signature_info") or {}
    signer = ", ".join(v for v in (info.get("common_name"), info.get("issuer")) if v) or None
    return tuple(actions), source, _edit_of(manifest), signer
