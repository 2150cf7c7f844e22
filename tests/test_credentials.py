"""Content credentials on every delivered version, through a real batch: signed, verified, tamper-evident.

A small batch per deliverable format signs with a studio identity (made here, as the studio's PKI
would issue it) and `voidbatch verify` reads each version back; one changed frame fails by name;
the key never reaches the output folder, the manifest or the logs.
"""
from __future__ import annotations

import base64
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from shots import provenance
from storage import manifest
from storage.store import ArtifactStore
from tasks.spec import DeliverySpec, RunSpec
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio_identity(tmp_path_factory):
    """A studio chain and key in files, named by the environment variables a GPU pool's jobs would carry."""
    folder = tmp_path_factory.mktemp("pki")
    identity = provenance.generate_identity("Studio VFX removal signer", "Example Studio", trusted=True)
    chain, key = folder / "chain.pem", folder / "key.pem"
    chain.write_bytes(identity.chain_pem)
    key.write_bytes(identity.key_pem)
    (folder / "ca.pem").write_bytes(identity.root_pem)
    env = pytest.MonkeyPatch()
    env.setenv(provenance.CERT_ENV, str(chain))
    env.setenv(provenance.KEY_ENV, str(key))
    yield identity, folder / "ca.pem"
    env.undo()


def _verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", "verify", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _key_body(identity) -> bytes:
    """The private key's base64 body, as it would appear if it leaked anywhere."""
    lines = identity.key_pem.decode().strip().splitlines()
    return "".join(line for line in lines if not line.startswith("-----")).encode()


@pytest.mark.parametrize("fmt", ["png", "exr", "prores"])
def test_every_delivered_version_carries_verifiable_credentials(prefect_server, studio_identity, tmp_path, fmt,
                                                                 caplog):
    from flows.process_edit import process_edit
    from shots.sample_edit import write_sample_edit

    identity, ca = studio_identity
    edit, samples = write_sample_edit(tmp_path / "e", height=64, width=112, shots=(("sh900", "static", 20, 9),))
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    spec = RunSpec(out=str(out), delivery=DeliverySpec(format=fmt, qc_every=1))
    assert process_edit(str(edit), spec, return_state=True).is_completed()
    row = manifest.read_shots(ArtifactStore(str(out)))[0]
    assert row["provenance"] == "signed"

    version = out / "shots" / "sh900" / "v001"
    res = _verify(str(version), "--trust", str(ca))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK" in res.stdout and "trusted" in res.stdout and "c2pa.opened" in res.stdout
    assert "c2pa.edited" in res.stdout and "algorithmicMedia" in res.stdout  # the classical backend
    assert "sh900.mkv" in res.stdout  # the plate, as the parentOf ingredient
    assert "the empty set" in res.stdout  # the prompt
    report = provenance.verify(version, trust_anchors=ca.read_bytes())
    region = report.edit.region
    assert report.edit.plate.name == "sh900.mkv" and 1001 <= region.first_frame <= region.last_frame <= 1020
    assert region.bbox[2] <= 112 and region.bbox[3] <= 64 and report.edit.agent.backend == "classical"

    key = _key_body(identity)
    for f in out.rglob("*"):
        if f.is_file():
            assert key not in f.read_bytes() and base64.b64decode(key) not in f.read_bytes(), f
    assert key.decode() not in caplog.text
    from prefect import get_client

    with get_client(sync_client=True) as client:  # nor in anything the UI shows
        assert all(key.decode() not in str(a.data) for a in client.read_artifacts())

    if fmt == "png":  # one changed pixel in one frame: verify fails and names the frame
        frame = version / "sh900_void_v001.1005.png"
        img = cv2.imread(str(frame))
        img[0, 0] = 255 - img[0, 0]
        cv2.imwrite(str(frame), img)
        res = _verify(str(version), "--trust", str(ca))
        assert res.returncode == 1 and "FAILED" in res.stdout and "sh900_void_v001.1005.png" in res.stdout
