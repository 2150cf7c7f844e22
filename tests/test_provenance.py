"""Content credentials on delivered versions, on real files: PNG frames and a ProRes .mov carry embedded
manifests, an EXR sequence one signed sidecar; what c2pa's own Reader sees, what `verify` reports, a
changed pixel caught by name, and the private key found nowhere it should not be."""
from __future__ import annotations

import io
import json
import logging
import pickle
import shutil
import struct
import subprocess
from pathlib import Path

import c2pa
import cv2
import numpy as np
import pytest

from shots import provenance as pv
from shots.deliver import ffmpeg_exe
from tests.conftest import write_exr_sequence

STEM = "sh010_void_v001"
H, W, N = 48, 64, 3


def _edit(generated: bool = True) -> pv.Edit:
    return pv.Edit(
        plate=pv.Plate("A001C003_plate.mov", "a" * 64, "01:00:10:00", "01:00:10:02"),
        agent=pv.SoftwareAgent("0.1.0", "void" if generated else "classical", "void-2pass-1" if generated
                               else "classical-1.0", "b" * 64 if generated else None),
        prompt="an empty street, wet asphalt",
        region=pv.Region(1001, 1003, (300, 12, 1900, 1070), "file:///jobs/masks/sh010_quadmask.mkv", "c" * 64),
        generated=generated)


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(N)]


def _write_png_version(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(_frames()):
        paths.append(folder / f"{STEM}.{1001 + i}.png")
        cv2.imwrite(str(paths[-1]), f)
    return paths


def _write_exr(folder: Path, frames: list[np.ndarray], first: int = 1001) -> list[Path]:
    return write_exr_sequence(folder, STEM, frames, first)


def _write_exr_version(folder: Path) -> list[Path]:
    return _write_exr(folder, [f.astype(np.float32) / 255.0 * 4.0 for f in _frames()])


def _write_prores_version(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{STEM}.mov"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={W}x{H}:rate=24", "-frames:v", str(N), "-c:v", "prores_ks",
                    "-profile:v", "4", "-pix_fmt", "yuv444p10le", "-timecode", "01:00:10:00", str(path)], check=True)
    return [path]


WRITERS = {"png": _write_png_version, "prores": _write_prores_version, "exr": _write_exr_version}


@pytest.fixture(scope="module")
def test_identity(tmp_path_factory) -> pv.Identity:
    return pv.load_identity("unsigned", tmp_path_factory.mktemp("cache"))


def _decoded(files: list[Path], fmt: str) -> list[np.ndarray]:
    if fmt == "png":
        return [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files]
    import av

    if fmt == "prores":
        with av.open(str(files[0])) as movie:
            return [f.to_ndarray(format="rgb48le") for f in movie.decode(video=0)]
    return [f.read_bytes() for f in files]  # sidecar formats: the frames are not touched at all


def _read(path: Path, sidecar: Path | None = None) -> c2pa.Reader:
    if sidecar is None:
        return c2pa.Reader(str(path))
    return c2pa.Reader("application/json", io.BytesIO(path.read_bytes()), sidecar.read_bytes())


def _key_fragments(identity: pv.Identity) -> list[bytes]:
    """The private key's PEM body (and each of its lines) and its DER bytes."""
    lines = [ln for ln in identity.key_pem.splitlines() if ln and not ln.startswith(b"-----")]
    from cryptography.hazmat.primitives import serialization

    der = serialization.load_pem_private_key(identity.key_pem, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return [b"".join(lines), *lines, der]


def _assert_no_key(identity: pv.Identity, folders: list[Path], texts: list[str]) -> None:
    fragments = _key_fragments(identity)
    for folder in folders:
        for f in folder.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert not any(frag in data for frag in fragments), f"key material in {f}"
    for text in texts:
        assert not any(frag.decode("latin-1") in text for frag in fragments), "key material in text"


# -- identities ------------------------------------------------------------------------------------------
def test_the_test_identity_is_made_once_says_untrusted_and_hides_its_key(tmp_path, monkeypatch):
    monkeypatch.delenv(pv.CERT_ENV, raising=False)
    monkeypatch.delenv(pv.KEY_ENV, raising=False)
    first = pv.load_identity("unsigned", tmp_path)
    again = pv.load_identity("auto", tmp_path)  # auto without the studio variables: the same test identity
    assert again.chain_pem == first.chain_pem and again.key_pem == first.key_pem
    assert not first.trusted and first.state == "unsigned"
    assert "UNTRUSTED test identity" in first.description
    assert (tmp_path / pv.TEST_IDENTITY_FILE).stat().st_mode & 0o077 == 0
    assert pv.load_identity("off", tmp_path) is None
    with pytest.raises(TypeError, match="never serialised"):
        pickle.dumps(first)
    _assert_no_key(first, [], [repr(first), str(first), f"{first!r} {first}"])


def test_signed_mode_names_the_missing_variable_never_its_content(tmp_path, monkeypatch, caplog):
    studio = pv.generate_identity("Example Studio VFX signing", "Example Studio", trusted=True)
    cert = tmp_path / "studio-chain.pem"
    cert.write_bytes(studio.chain_pem)
    monkeypatch.delenv(pv.KEY_ENV, raising=False)
    monkeypatch.setenv(pv.CERT_ENV, str(cert))
    with pytest.raises(pv.ProvenanceError, match=pv.KEY_ENV) as missing:
        pv.load_identity("signed", tmp_path)
    with caplog.at_level(logging.WARNING):
        assert not pv.load_identity("auto", tmp_path).trusted  # one variable only: the test identity, said so
    assert pv.KEY_ENV in caplog.text
    other = pv.generate_identity()
    key = tmp_path / "wrong-key.pem"
    key.write_bytes(other.key_pem)  # a key that is not the certificate's
    monkeypatch.setenv(pv.KEY_ENV, str(key))
    with pytest.raises(pv.ProvenanceError, match="does not belong") as mismatch:
        pv.load_identity("signed", tmp_path)
    for error in (missing, mismatch):
        assert str(tmp_path) not in str(error.value)
        _assert_no_key(other, [], [str(error.value), repr(error.value.__cause__)])


# -- signing each format, read back by c2pa itself ----------------------------------------------------------
@pytest.mark.parametrize("fmt, generated", [("png", True), ("prores", False), ("exr", True)])
def test_each_format_signs_and_reads_back(tmp_path, test_identity, fmt, generated):
    folder = tmp_path / "v001"
    files = WRITERS[fmt](folder)
    before = _decoded(files, fmt)
    edit = _edit(generated)

    done = pv.sign_version(folder, files, fmt, edit, test_identity)

    assert done.state == "unsigned"
    if fmt == "exr":
        assert done.embedded == () and done.sidecars == (f"{STEM}.frames.json", f"{STEM}.c2pa")
        readers = [_read(folder / done.sidecars[0], folder / done.sidecars[1])]
        index = json.loads((folder / done.sidecars[0]).read_bytes())
        assert [f["name"] for f in index["frames"]] == [f.name for f in files]
    else:
        assert done.embedded == tuple(f.name for f in files)
        assert done.sidecars == (() if fmt == "prores" else (f"{STEM}.frames.json", f"{STEM}.c2pa"))
        readers = [_read(f) for f in files]
    for reader in readers:
        assert reader.get_validation_state() == "Valid"
        failures = {f["code"] for f in reader.get_validation_results()["activeManifest"].get("failure", [])}
        assert failures <= {"signingCredential.untrusted"}  # valid, only the test signer is untrusted
        m = reader.get_active_manifest()
        actions = next(a for a in m["assertions"] if a["label"].startswith("c2pa.actions"))["data"]["actions"]
        assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited"]
        assert actions[1]["digitalSourceType"] == (pv.TRAINED_COMPOSITE if generated else pv.ALGORITHMIC)
        assert actions[1]["softwareAgent"] == {"name": "voidbatch", "version": "0.1.0"}
        assert actions[1]["parameters"]["com.voidbatch.prompt"] == edit.prompt
        shape = actions[1]["changes"][0]["region"][0]["shape"]
        assert (shape["origin"], shape["width"], shape["height"]) == ({"x": 300, "y": 12}, 1600, 1058)
        [plate] = m["ingredients"]
        assert (plate["title"], plate["relationship"]) == ("A001C003_plate.mov", "parentOf")
        assert plate["metadata"]["com.voidbatch.plate"]["sha256"] == "a" * 64
        assert plate["metadata"]["com.voidbatch.plate"]["first_timecode"] == "01:00:10:00"
        removal = next(a for a in m["assertions"] if a["label"] == pv.ASSERTION)["data"]
        assert removal["region"]["bbox"] == {"x0": 300, "y0": 12, "x1": 1900, "y1": 1070}
        assert pv.Edit.from_dict(removal) == edit
        assert "UNTRUSTED" in m["signature_info"]["common_name"]
    after = _decoded(files, fmt)  # the manifest is a PNG chunk or a top-level box: pictures decode the same
    assert len(after) == len(before) and all(np.array_equal(a, b) for a, b in zip(after, before))
    assert not [p.name for p in folder.iterdir() if ".partial" in p.name]

    report = pv.verify(folder)
    assert report.ok and not report.trusted, report.lines()
    assert report.edit == edit and report.actions == ("c2pa.opened", "c2pa.edited")
    assert {f.validation for f in report.files} == {pv.UNTRUSTED}
    assert len(report.files) == len(files) + (0 if fmt == "prores" else 1)
    assert pv.verify(files[-1]).ok  # one file on its own
    text = "\n".join(report.lines())
    assert "OK" in text and "1001-1003" in text and edit.prompt in text
    _assert_no_key(test_identity, [folder], [text, repr(done)])
    if fmt == "png":  # without its signed index a sequence's frames still verify one by one, the set does not
        for name in done.sidecars:
            (folder / name).unlink()
        assert pv.verify(files[0]).ok
        assert "no signed frame index" in " ".join(pv.verify(folder).problems)


# -- tampering ------------------------------------------------------------------------------------------
def _png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, whole chunk) of every chunk after the signature."""
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        out.append((pos, data[pos + 4:pos + 8], data[pos:pos + 12 + length]))
        pos += 12 + length
    return out


def _change_pixel_keeping_manifest(path: Path) -> None:
    """One pixel changed, the manifest chunk put back where it was: only the hash binding can tell."""
    chunks = _png_chunks(path.read_bytes())
    offset, _, manifest = next(c for c in chunks if c[1] == b"caBX")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    img[5, 7, 1] ^= 1
    fresh = cv2.imencode(".png", img)[1].tobytes()
    assert _png_chunks(fresh)[1][0] == offset  # the manifest sat right after IHDR; it goes back there
    path.write_bytes(fresh[:offset] + manifest + fresh[offset:])


def test_one_changed_pixel_fails_verify_and_names_the_frame(tmp_path, test_identity):
    png = tmp_path / "png"
    files = _write_png_version(png)
    pv.sign_version(png, files, "png", _edit(), test_identity)
    _change_pixel_keeping_manifest(files[1])
    report = pv.verify(png)
    assert not report.ok and report.failed == (files[1].name,)
    [bad] = [f for f in report.files if not f.ok]
    assert not bad.bound and bad.validation == pv.INVALID
    assert any("dataHash.mismatch" in p for p in bad.problems)
    assert any("differ from the signed index" in p for p in bad.problems)
    assert f"FAIL {files[1].name}" in "\n".join(report.lines())
    assert not pv.verify(files[1]).ok and pv.verify(files[0]).ok

    cv2.imwrite(str(files[2]), cv2.imread(str(files[2])))  # re-saved by a tool that drops the credentials
    files[0].unlink()
    report = pv.verify(png)
    assert set(report.failed) == {files[1].name, files[2].name}
    assert next(f for f in report.files if f.name == files[2].name).validation == pv.MISSING
    assert report.problems == (f"{files[0].name} is in the signed index but not in the folder",)

    exr = tmp_path / "exr"
    files = _write_exr_version(exr)
    pv.sign_version(exr, files, "exr", _edit(), test_identity)
    changed = [f.astype(np.float32) / 255.0 * 4.0 for f in _frames()][1]
    changed[5, 7, 1] += 0.25
    shutil.copyfile(_write_exr(tmp_path / "scratch", [changed], first=1002)[0], files[1])
    report = pv.verify(exr)
    assert not report.ok and report.failed == (files[1].name,)
    assert pv.verify(exr / f"{STEM}.c2pa").failed == (files[1].name,)

    mov = tmp_path / "mov"
    [movie] = _write_prores_version(mov)
    pv.sign_version(mov, [movie], "prores", _edit(), test_identity)
    data = bytearray(movie.read_bytes())
    data[data.find(b"mdat") + 64] ^= 0x10
    movie.write_bytes(bytes(data))
    report = pv.verify(mov)
    assert not report.ok and report.failed == (movie.name,)
    assert any("bmffHash.mismatch" in p for p in report.files[0].problems)


# -- the studio identity ----------------------------------------------------------------------------------
def test_signed_mode_uses_the_studio_identity_and_the_key_never_leaks(tmp_path, monkeypatch, caplog):
    studio = pv.generate_identity("Example Studio VFX signing", "Example Studio", trusted=True)
    (tmp_path / "keys").mkdir()
    cert, key = tmp_path / "keys" / "chain.pem", tmp_path / "keys" / "key.pem"
    cert.write_bytes(studio.chain_pem)
    key.write_bytes(studio.key_pem)
    monkeypatch.setenv(pv.CERT_ENV, str(cert))
    monkeypatch.setenv(pv.KEY_ENV, str(key))
    caplog.set_level(logging.DEBUG)

    identity = pv.load_identity("auto", tmp_path / "cache")
    assert identity.trusted and identity.state == "signed" and "Example Studio" in identity.description
    assert identity.key_pem == studio.key_pem and not (tmp_path / "cache").exists()
    reports = []
    for fmt in ("png", "exr"):
        folder = tmp_path / fmt
        done = pv.sign_version(folder, WRITERS[fmt](folder), fmt, _edit(), identity)
        assert done.state == "signed"
        report = pv.verify(folder)
        assert report.ok and not report.trusted and "Example Studio VFX signing" in report.signer
        trusted = pv.verify(folder, trust_anchors=identity.root_pem)  # the studio's CA as trust anchor
        assert trusted.ok and trusted.trusted and {f.validation for f in trusted.files} == {pv.TRUSTED}
        reports += [report, trusted, done]

    texts = [caplog.text, repr(identity), str(identity), *("\n".join(r.lines()) for r in reports[::3]),
             *(repr(r) for r in reports)]
    _assert_no_key(identity, [tmp_path / "png", tmp_path / "exr"], texts)
