"""``gaitway models fetch``: download, resume, checksums, unpacking and the MotionBERT export, against a real
HTTP server on 127.0.0.1 that serves the tiny MotionBERT checkpoint and zips of the random-weight RTMPose
graphs laid out like OpenMMLab's mmdeploy SDK zips.

Reference data: ``<shared>/reference/{motionbert,rtmpose}`` (found through GAITWAY_SHARED_DIR, see
conftest.py)."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import io
import json
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, SHARED

from services.errors import (
    ArchiveError,
    DownloadError,
    DownloadNotFoundError,
    ExportUnavailableError,
    InputError,
    ModelChecksumError,
    ModelExportError,
    UnsafeArchiveError,
)
from services.pose import fetch as fetch_cmd
from services.pose import models as models_mod
from services.pose.models import ModelStore, get_manifest

RTMPOSE_COCO17_SHA = "08b686ca8a47272473f4badeff5566f2d088522ff1a67749d35cb894d73d7d2b"
RTMPOSE_HALPE26_SHA = "72b21de84f939fa1df7bb63afece68132778c0f99e3c9ab69f5078bb9e26a13b"
ATOL = 1e-4  # shared/reference/motionbert/README.md: a faithful fp32 port matches to < 1e-4


def ref_file(*parts: str) -> Path:
    path = SHARED.joinpath("reference", *parts)
    if not path.is_file():
        pytest.fail(f"shared reference file missing: {path} (set GAITWAY_SHARED_DIR)")
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------------------
# A mirror on 127.0.0.1: GET with single open-ended ranges, If-Range, 404, and cut-off transfers
# ----------------------------------------------------------------------------------------------------------


class Mirror:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: dict[str, int] = {}  # path -> bytes sent before the connection is dropped (once)
        self.ranges = True  # False: ignore Range like a server without support for it
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.base = ""

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def _handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            mirror.requests.append((self.path, dict(self.headers.items())))
            data = mirror.files.get(self.path.split("?", 1)[0])
            if data is None:
                self.send_error(404)
                return
            etag = f'"{sha(data)[:16]}"'
            start = 0
            wanted = self.headers.get("Range", "")
            if_range = self.headers.get("If-Range")
            fresh = if_range is None or if_range == etag
            if mirror.ranges and fresh and wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[len("bytes=") : -1])
            if start >= len(data) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            cut = mirror.cut_once.pop(self.path, None)
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    m = Mirror()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(m))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    m.base = f"http://127.0.0.1:{httpd.server_address[1]}/mirror"
    try:
        yield m
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# ----------------------------------------------------------------------------------------------------------
# Served files and the catalogue
# ----------------------------------------------------------------------------------------------------------


def sdk_zip(name: str, onnx: bytes, *, extra: dict[str, bytes] | None = None, member: str = "") -> bytes:
    """A zip laid out like the mmdeploy SDK zip of ``name``: <date>/rtmpose_onnx/<stem>/{end2end.onnx,
    *.json}."""
    member = member or get_manifest(name).archive_member
    folder = member.rsplit("/", 1)[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for meta in ("deploy.json", "pipeline.json", "detail.json"):
            zf.writestr(f"{folder}/{meta}", json.dumps({"file": meta}))
        zf.writestr(member, onnx)
        for extra_name, data in (extra or {}).items():
            zf.writestr(extra_name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def coco17_onnx() -> bytes:
    return ref_file("rtmpose", "rtmpose-m_coco17_random.onnx").read_bytes()


@pytest.fixture(scope="module")
def halpe26_onnx() -> bytes:
    return ref_file("rtmpose", "rtmpose-m_halpe26_random.onnx").read_bytes()


@pytest.fixture(scope="module")
def body7_zip(coco17_onnx: bytes) -> bytes:
    return sdk_zip("rtmpose-m-body7", coco17_onnx)


@pytest.fixture(scope="module")
def tiny_checkpoint() -> bytes:
    return ref_file("motionbert", "tiny_checkpoint.bin").read_bytes()


@pytest.fixture
def catalogue(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``patch(name, **fields)`` changes one manifest for this test; the MotionBERT models export with the
    tiny reference config (the served checkpoint is the tiny one)."""
    models, presets = models_mod._catalogue()
    models = dict(models)
    monkeypatch.setattr(models_mod, "_catalogue", lambda: (models, presets))

    def patch(name: str, **fields: Any) -> None:
        models[name] = dataclasses.replace(models[name], **fields)

    tiny = str(ref_file("motionbert", "tiny_config.json"))
    patch("motionbert-lite", export_config=tiny)
    patch("motionbert-full", export_config=tiny)
    return patch


def serve(mirror: Mirror, name: str, data: bytes) -> str:
    """Put ``data`` where the mirror layout says ``name``'s download lives; returns its URL path."""
    path = "/mirror/" + fetch_cmd.mirror_path(get_manifest(name))
    mirror.files[path] = data
    return path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gaitway models fetch")
    fetch_cmd.add_arguments(parser)
    return fetch_cmd.run(parser.parse_args(argv))


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def assert_matches_golden(onnx_path: Path) -> None:
    import onnxruntime as ort

    with np.load(ref_file("motionbert", "tiny_golden.npz")) as npz:
        golden = {k: npz[k] for k in ("x", "out", "x_T9", "out_T9")}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for x, want in (("x", "out"), ("x_T9", "out_T9")):
        (got,) = sess.run(["pose3d"], {"pose2d": golden[x].astype(np.float32)})
        np.testing.assert_allclose(got, golden[want], rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------------


def test_fetch_unpacks_the_zip_member_from_the_mirror_and_a_second_call_downloads_nothing(
    tmp_path: Path,
    mirror: Mirror,
    body7_zip: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = serve(mirror, "rtmpose-m-body7", body7_zip)
    monkeypatch.setenv("GAITWAY_MODELS_MIRROR", mirror.base)  # the settings field, not --mirror
    models = tmp_path / "models"

    assert run(["rtmpose-m-body7", "--models-dir", str(models), "--no-progress"]) == 0

    final = models / "rtmpose-m-body7" / "end2end.onnx"
    assert sha(final.read_bytes()) == RTMPOSE_COCO17_SHA  # exactly the member, unpacked
    assert mirror.paths() == [path]
    record = json.loads((models / "rtmpose-m-body7" / "end2end.onnx.fetch.json").read_text())
    assert record["sha256"] == RTMPOSE_COCO17_SHA and record["download_sha256"] == sha(body7_zip)
    assert record["source"] == mirror.base + path.removeprefix("/mirror") and record["pinned"] is False
    # the zip and every partial or temporary file are gone
    assert files_under(models) == {
        "rtmpose-m-body7/end2end.onnx",
        "rtmpose-m-body7/end2end.onnx.fetch.json",
        "rtmpose-m-body7/.fetch.lock",
    }
    out = capsys.readouterr().out
    assert f"sha256 {RTMPOSE_COCO17_SHA} (not pinned; recorded in end2end.onnx.fetch.json)" in out
    assert f"download sha256 {sha(body7_zip)}" in out
    # the model store finds what was installed
    assert ModelStore([models]).resolve("rtmpose-m-body7").sha256 == RTMPOSE_COCO17_SHA

    assert run(["rtmpose-m-body7", "--models-dir", str(models), "--no-progress"]) == 0
    assert mirror.paths() == [path]  # idempotent: nothing requested again
    assert "rtmpose-m-body7: present" in capsys.readouterr().out

    (models / "rtmpose-m-body7" / "end2end.onnx").write_bytes(b"changed by hand")
    assert run(["rtmpose-m-body7", "--models-dir", str(models), "--no-progress"]) == 0
    assert mirror.paths() == [path, path]  # it no longer matches its record: fetched again
    assert sha(final.read_bytes()) == RTMPOSE_COCO17_SHA


def test_pinned_checksums_are_checked(
    tmp_path: Path, mirror: Mirror, body7_zip: bytes, catalogue: Callable[..., None]
) -> None:
    serve(mirror, "rtmpose-m-body7", body7_zip)
    catalogue("rtmpose-m-body7", download_sha256=sha(body7_zip), sha256=RTMPOSE_COCO17_SHA)
    (result,) = fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=mirror.base)
    assert result.status == "installed" and result.verified
    assert result.sha256 == RTMPOSE_COCO17_SHA and result.downloaded_bytes == len(body7_zip)
    (again,) = fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=mirror.base)
    assert again.status == "present" and again.verified and len(mirror.requests) == 1


def test_corrupt_download_is_a_checksum_error_and_installs_nothing(
    tmp_path: Path, mirror: Mirror, body7_zip: bytes, catalogue: Callable[..., None]
) -> None:
    corrupt = bytearray(body7_zip)
    corrupt[len(corrupt) // 2] ^= 0xFF
    serve(mirror, "rtmpose-m-body7", bytes(corrupt))
    catalogue("rtmpose-m-body7", download_sha256=sha(body7_zip))
    with pytest.raises(ModelChecksumError, match="checksum mismatch") as exc:
        fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=mirror.base)
    assert exc.value.code == "model_corrupt"
    assert files_under(tmp_path) == {"rtmpose-m-body7/.fetch.lock"}  # no final, partial or zip file


def test_a_checksum_pinned_for_the_member_is_checked_before_it_is_installed(
    tmp_path: Path, mirror: Mirror, body7_zip: bytes, catalogue: Callable[..., None]
) -> None:
    serve(mirror, "rtmpose-m-body7", body7_zip)
    catalogue("rtmpose-m-body7", sha256=RTMPOSE_HALPE26_SHA)  # another file's digest
    with pytest.raises(ModelChecksumError) as exc:
        fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=mirror.base)
    assert exc.value.code == "model_corrupt"
    assert files_under(tmp_path) == {"rtmpose-m-body7/.fetch.lock"}


def test_interrupted_transfer_resumes_with_a_range_request_and_exports_motionbert(
    tmp_path: Path, mirror: Mirror, tiny_checkpoint: bytes, catalogue: Callable[..., None]
) -> None:
    path = serve(mirror, "motionbert-lite", tiny_checkpoint)
    half = len(tiny_checkpoint) // 2
    mirror.cut_once[path] = half
    with pytest.raises(DownloadError) as exc:
        fetch_cmd.fetch("motionbert-lite", tmp_path, mirror=mirror.base, retries=0)
    assert exc.value.code == "download_failed" and "run the same command again to resume" in str(exc.value)
    folder = tmp_path / "motionbert-lite"
    assert (folder / "best_epoch.bin.part").stat().st_size == half
    assert not (folder / "motionbert.onnx").exists()

    (result,) = fetch_cmd.fetch("motionbert-lite", tmp_path, mirror=mirror.base, retries=0)

    (_, first), (_, second) = mirror.requests
    assert "Range" not in first
    assert second["Range"] == f"bytes={half}-" and second["If-Range"] == f'"{sha(tiny_checkpoint)[:16]}"'
    assert result.status == "installed" and result.resumed_from == half
    assert result.downloaded_bytes == len(tiny_checkpoint) - half
    assert result.download_sha256 == sha(tiny_checkpoint)
    assert_matches_golden(folder / "motionbert.onnx")
    record = json.loads((folder / "motionbert.onnx.fetch.json").read_text())
    assert record["export"]["exporter"] == "motionbert" and record["sha256"] == result.sha256
    assert files_under(folder) == {"motionbert.onnx", "motionbert.onnx.fetch.json", ".fetch.lock"}


def test_a_broken_transfer_is_retried_in_the_same_call(
    tmp_path: Path, mirror: Mirror, tiny_checkpoint: bytes, catalogue: Callable[..., None]
) -> None:
    path = serve(mirror, "motionbert-full", tiny_checkpoint)
    mirror.cut_once[path] = 1000
    (result,) = fetch_cmd.fetch("motionbert-full", tmp_path, mirror=mirror.base, retries=1)
    assert [h.get("Range") for _, h in mirror.requests] == [None, "bytes=1000-"]
    assert result.status == "installed" and result.resumed_from == 0  # nothing was there before the call
    assert result.downloaded_bytes == len(tiny_checkpoint)
    assert_matches_golden(tmp_path / "motionbert-full" / "motionbert.onnx")


def test_a_server_without_ranges_makes_it_start_over(
    tmp_path: Path, mirror: Mirror, body7_zip: bytes
) -> None:
    path = serve(mirror, "rtmpose-m-body7", body7_zip)
    mirror.cut_once[path] = 4096
    with pytest.raises(DownloadError):
        fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=mirror.base, retries=0)
    mirror.ranges = False
    (result,) = fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=mirror.base, retries=0)
    assert mirror.requests[1][1]["Range"] == "bytes=4096-"  # asked, got the whole file
    assert result.resumed_from == 0 and result.downloaded_bytes == len(body7_zip)
    assert result.sha256 == RTMPOSE_COCO17_SHA


def test_not_found_names_the_code_and_never_the_credentials(tmp_path: Path, mirror: Mirror) -> None:
    base = mirror.base.replace("http://", "http://ops:s3cret%21@")
    with pytest.raises(DownloadNotFoundError) as exc:
        fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=base)
    assert exc.value.code == "download_not_found" and "HTTP 404" in str(exc.value)
    assert "s3cret" not in str(exc.value) and "ops" not in str(exc.value)
    (_, headers), = mirror.requests  # fmt: skip
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"ops:s3cret!").decode()
    assert not (tmp_path / "rtmpose-m-body7" / "end2end.onnx").exists()


def test_network_down_is_a_download_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as exc:
        fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=f"http://127.0.0.1:{port}", retries=0)
    assert exc.value.code == "download_failed" and "cannot reach" in str(exc.value)
    assert not (tmp_path / "rtmpose-m-body7" / "end2end.onnx").exists()


def test_a_download_that_is_not_a_zip_is_refused(tmp_path: Path, mirror: Mirror) -> None:
    serve(mirror, "rtmpose-m-body7", b"PK\x03\x04 but not really a zip" * 100)
    with pytest.raises(ArchiveError) as exc:
        fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=mirror.base)
    assert exc.value.code == "bad_archive"
    assert files_under(tmp_path) == {"rtmpose-m-body7/.fetch.lock"}  # the useless download is removed


def test_a_zip_without_the_named_member_is_refused(
    tmp_path: Path, mirror: Mirror, coco17_onnx: bytes
) -> None:
    serve(mirror, "rtmpose-m-body7", sdk_zip("rtmpose-m-body7", coco17_onnx, member="other/end2end.onnx"))
    with pytest.raises(ArchiveError, match=r"no member .*its \.onnx members: other/end2end\.onnx") as exc:
        fetch_cmd.fetch("rtmpose-m-body7", tmp_path, mirror=mirror.base)
    assert exc.value.code == "bad_archive"


@pytest.mark.parametrize("evil", ["../../evil.onnx", "/tmp/evil.onnx", "20230831/../../../evil.onnx"])
def test_an_archive_with_an_unsafe_member_is_refused(
    tmp_path: Path, mirror: Mirror, coco17_onnx: bytes, evil: str
) -> None:
    serve(mirror, "rtmpose-m-body7", sdk_zip("rtmpose-m-body7", coco17_onnx, extra={evil: b"x"}))
    models = tmp_path / "a" / "b" / "models"
    with pytest.raises(UnsafeArchiveError) as exc:
        fetch_cmd.fetch("rtmpose-m-body7", models, mirror=mirror.base)
    assert exc.value.code == "unsafe_archive"
    assert files_under(tmp_path) == {"a/b/models/rtmpose-m-body7/.fetch.lock"}


def test_preset_fetches_every_model_from_the_mirror_including_those_without_a_url(
    tmp_path: Path,
    mirror: Mirror,
    halpe26_onnx: bytes,
    tiny_checkpoint: bytes,
    catalogue: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    zip_path = serve(mirror, "rtmpose-m-halpe26", sdk_zip("rtmpose-m-halpe26", halpe26_onnx))
    ckpt_path = serve(mirror, "motionbert-full", tiny_checkpoint)
    # the stand-in detector has no public URL: a cluster's mirror serves it as <name>/<file name>
    detector = get_manifest("rtmdet-nano-person")
    det_path = serve(mirror, "rtmdet-nano-person", (SHARED / "models" / detector.file).read_bytes())
    assert det_path.endswith("/rtmdet-nano-person/end2end.onnx")
    models = tmp_path / "models"

    code = run(["production", "--models-dir", str(models), "--mirror", mirror.base, "--no-progress"])

    assert code == 0
    assert sorted(mirror.paths()) == sorted([zip_path, ckpt_path, det_path])
    assert sha((models / "rtmpose-m-halpe26" / "end2end.onnx").read_bytes()) == RTMPOSE_HALPE26_SHA
    assert_matches_golden(models / "motionbert-full" / "motionbert.onnx")
    assert ModelStore([models]).resolve("rtmdet-nano-person").verified  # the pinned checksum holds
    out = capsys.readouterr().out
    assert "rtmpose-m-halpe26: installed" in out and "motionbert-full: installed" in out
    assert "rtmdet-nano-person: installed" in out


def test_without_a_mirror_a_preset_names_the_models_it_cannot_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["production", "--models-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "rtmdet-nano-person: skipped, no download source" in out  # named, not silently left out
    assert list(tmp_path.iterdir()) == []


def test_dry_run_prints_the_mirror_layout_and_fetches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["production", "--models-dir", str(tmp_path), "--mirror", "https://m.example/w", "--dry-run"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    zip_name = fetch_cmd.download_name(get_manifest("rtmpose-m-halpe26"))
    assert f"https://m.example/w/rtmpose-m-halpe26/{zip_name}" in out
    assert "https://m.example/w/motionbert-full/best_epoch.bin" in out
    assert list(tmp_path.iterdir()) == []


def test_url_override_is_for_one_model(tmp_path: Path, mirror: Mirror, body7_zip: bytes) -> None:
    mirror.files["/elsewhere/pose.zip"] = body7_zip
    url = mirror.base.removesuffix("/mirror") + "/elsewhere/pose.zip?token=abc"
    (result,) = fetch_cmd.fetch("rtmpose-m-body7", tmp_path, url=url)
    assert result.sha256 == RTMPOSE_COCO17_SHA and "token" not in result.source
    assert mirror.paths() == ["/elsewhere/pose.zip?token=abc"]
    with pytest.raises(InputError, match="name a model, not a preset"):
        fetch_cmd.fetch("production", tmp_path, url=url)


def test_export_without_torch_names_the_extra_and_keeps_the_download(
    tmp_path: Path,
    mirror: Mirror,
    tiny_checkpoint: bytes,
    catalogue: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve(mirror, "motionbert-lite", tiny_checkpoint)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch", None)  # import torch raises ImportError
        for mod in [k for k in sys.modules if k.startswith("export.motionbert")]:
            m.delitem(sys.modules, mod)
        with pytest.raises(ExportUnavailableError, match=r"pip install 'gaitway\[export\]'") as exc:
            fetch_cmd.fetch("motionbert-lite", tmp_path, mirror=mirror.base)
    assert exc.value.code == "export_unavailable"
    assert (tmp_path / "motionbert-lite" / "best_epoch.bin").is_file()  # verified download kept
    assert not (tmp_path / "motionbert-lite" / "motionbert.onnx").exists()

    (result,) = fetch_cmd.fetch("motionbert-lite", tmp_path, mirror=mirror.base)  # torch back
    assert len(mirror.requests) == 1 and result.downloaded_bytes == 0
    assert_matches_golden(tmp_path / "motionbert-lite" / "motionbert.onnx")


def test_a_checkpoint_that_does_not_load_is_an_export_error(
    tmp_path: Path, mirror: Mirror, catalogue: Callable[..., None]
) -> None:
    serve(mirror, "motionbert-lite", b"\x80\x02not a torch checkpoint" * 50)
    with pytest.raises(ModelExportError) as exc:
        fetch_cmd.fetch("motionbert-lite", tmp_path, mirror=mirror.base)
    assert exc.value.code == "export_failed"
    assert files_under(tmp_path) == {"motionbert-lite/.fetch.lock"}  # the useless download is removed


def test_a_local_folder_serves_as_a_mirror(
    tmp_path: Path, tiny_checkpoint: bytes, catalogue: Callable[..., None]
) -> None:
    local = tmp_path / "mirror" / fetch_cmd.mirror_path(get_manifest("motionbert-lite"))
    local.parent.mkdir(parents=True)
    local.write_bytes(tiny_checkpoint)
    (result,) = fetch_cmd.fetch("motionbert-lite", tmp_path / "models", mirror=str(tmp_path / "mirror"))
    assert result.source.startswith("file://") and result.download_sha256 == sha(tiny_checkpoint)
    assert_matches_golden(tmp_path / "models" / "motionbert-lite" / "motionbert.onnx")


def test_importing_the_command_stays_light() -> None:
    code = (
        "import sys, services.pose.fetch; "
        "print(sorted(m for m in ('torch', 'numpy', 'onnx', 'onnxruntime', 'tqdm', 'pydantic') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
