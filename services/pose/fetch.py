"""``gaitway models fetch NAME|PRESET``: download the official weights a manifest names, check, install them.

For every model with a ``url`` in ``models.toml`` (a preset: each of its models that has one)::

    source ──HTTP(S), resumed with Range──▶ <folder>/<download>.part ──complete──▶ <folder>/<download>
      ──sha256: checked when the manifest pins ``download_sha256``, else printed and recorded──▶
      one zip member (``archive_member``) | ONNX export (``export``) | the file itself
      ──temporary file, checked against a pinned ``sha256``──▶ os.replace ──▶ <models-dir>/<manifest file>

``<folder>`` is the folder of the installed file (``<models-dir>/rtmpose-m-body7/``). Beside the installed
file, ``<file>.fetch.json`` records where it came from and both digests; it is what makes a second call with
nothing pinned verifiable, and is written before the file is moved into place.

* **Source**: the manifest's ``url``; with a mirror (``--mirror`` / ``GAITWAY_MODELS_MIRROR``, an
  ``http(s)://`` or ``file://`` base URL or a local folder) ``<mirror>/<model name>/<file name of the official
  URL>`` (:func:`mirror_path`); ``--url`` replaces the source of one model. Credentials in a URL
  (``https://user:token@host/...``) are sent as HTTP basic authentication, never to another host after a
  redirect, and never printed: messages name :func:`public_url` (no credentials, no query).
* **Idempotent**: an installed file that matches its pinned ``sha256``, or the digest its record holds, is
  left alone and nothing is downloaded. A file placed by hand (no pin, no record) is kept, with a note;
  ``--force`` replaces it.
* **Resume**: an interrupted transfer leaves ``<download>.part`` (and ``.part.json`` with the server's
  validator); the next try asks for the rest (``Range``, with ``If-Range``) and starts over when the server
  sends the whole file instead. Transient failures (connection lost, timeouts, 5xx) are retried ``retries``
  times in the same call, resuming each time.
* **Atomic**: the installed file appears under its final name only by ``os.replace`` of a complete, checked
  temporary file in the same folder; a failed check removes the download and installs nothing. One process
  at a time works in a model's folder (``fcntl`` lock), so two init containers sharing a volume do not
  append to the same partial file.
* **Zips**: only the member the manifest names is unpacked, into a file this module names; an archive that
  holds any member with an absolute path, a ``..`` component or a link is refused as a whole.
* **Export**: ``export = "motionbert"`` loads the checkpoint into :mod:`export.motionbert` (``export_config``:
  ``full``, ``lite``, ``tiny`` or a JSON file) and exports ``pose2d -> pose3d`` ONNX with it; it needs torch
  (the ``export`` extra), imported only then.

Errors are :mod:`services.errors` classes with their codes: ``download_not_found`` (404/410),
``download_failed`` (network down, connection lost after the retries, access refused, an HTML page instead
of the file), ``model_corrupt`` (checksum mismatch), ``bad_archive`` / ``unsafe_archive``,
``export_unavailable`` (torch missing), ``export_failed``, ``model_unavailable`` (no download source,
cannot write the models folder).

This module imports only the standard library and the manifests at import time: ``gaitway --help`` stays
fast. :func:`add_arguments` / :func:`run` are the CLI command; :func:`fetch` is the API.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.client
import json
import logging
import os
import re
import shutil
import stat
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from services.errors import (
    ArchiveError,
    DownloadError,
    DownloadNotFoundError,
    ExportUnavailableError,
    InputError,
    ModelChecksumError,
    ModelError,
    ModelExportError,
    UnsafeArchiveError,
)
from services.files import atomic_path
from services.pose.models import ModelManifest, get_manifest, get_preset, manifests, presets, sha256_of

log = logging.getLogger(__name__)

__all__ = [
    "EXPORTERS",
    "FetchResult",
    "add_arguments",
    "download_name",
    "fetch",
    "mirror_path",
    "public_url",
    "run",
    "source_url",
]

#: converters a manifest's ``export`` may name
EXPORTERS = ("motionbert",)
TIMEOUT_S = 60.0  # per socket operation (connect, each read), not per file
_CHUNK = 1 << 20
_USER_AGENT = "gaitway-models-fetch/1"
_SCHEMES = ("http", "https", "file")

Status = Literal["installed", "present", "skipped", "planned"]


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did for one model.

    ``status``: ``installed`` (downloaded or unpacked/exported now), ``present`` (already there and checked,
    nothing downloaded), ``skipped`` (the model has no download source), ``planned`` (``dry_run``).
    ``verified``: the installed file matched a pinned ``sha256`` (or its download a pinned
    ``download_sha256``); otherwise its digests are recorded in ``record``."""

    name: str
    status: Status
    path: Path | None = None
    source: str = ""  # public_url of the source: no credentials, no query
    sha256: str = ""
    download_sha256: str = ""
    verified: bool = False
    downloaded_bytes: int = 0  # transferred by this call
    resumed_from: int = 0  # bytes of an earlier partial download that were kept
    record: Path | None = None
    note: str = ""
    mirror_path: str = ""

    def lines(self) -> list[str]:
        """Human-readable report, first line ``<name>: <status> ...``; digests in full."""
        if self.status == "skipped":
            return [f"{self.name}: skipped, {self.note}"]
        if self.status == "planned":
            return [f"{self.name}: would fetch {self.source} -> {self.path} (mirror path {self.mirror_path})"]
        size = f" ({_mb(self.path.stat().st_size)})" if self.path is not None and self.path.is_file() else ""
        out = [
            f"{self.name}: {self.status} {self.path}{size}" + (f" from {self.source}" if self.source else "")
        ]
        if self.status == "installed":
            got = f"downloaded {_mb(self.downloaded_bytes)}"
            if self.resumed_from:
                got += f", resumed after {_mb(self.resumed_from)}"
            if self.downloaded_bytes == 0 and not self.resumed_from:
                got = "used the complete download already in the folder"
            out.append(f"  {got}; download sha256 {self.download_sha256}")
        pinned = "matches the pinned checksum" if self.verified else "not pinned"
        if self.sha256:
            where = (
                f"; recorded in {self.record.name}" if self.record is not None and not self.verified else ""
            )
            out.append(f"  sha256 {self.sha256} ({pinned}{where})")
        if self.note:
            out.append(f"  note: {self.note}")
        return out


# ----------------------------------------------------------------------------------------------------------
# Sources and names
# ----------------------------------------------------------------------------------------------------------


def download_name(m: ModelManifest) -> str:
    """File name of ``m``'s download: the last path segment of its official URL (of its file for a model
    without one, which only a mirror serves)."""
    name = PurePosixPath(unquote(urlsplit(m.url).path)).name if m.url else PurePosixPath(m.file).name
    if not _safe_relative(name):
        raise ModelError(f"model {m.name!r}: its url does not end in a file name")
    return name


def mirror_path(m: ModelManifest) -> str:
    """Where a mirror holds ``m``'s download, relative to the mirror's base URL."""
    return f"{m.name}/{download_name(m)}"


def source_url(m: ModelManifest, *, mirror: str = "", url: str = "") -> str:
    """The URL ``m`` is downloaded from: ``url`` if given, else ``<mirror>/<mirror_path>`` with a mirror, else
    the manifest's ``url``."""
    if url:
        return _as_url(url)
    if mirror:
        return _as_url(mirror).rstrip("/") + "/" + mirror_path(m)
    if not m.url:
        raise ModelError(f"model {m.name!r} has no download source. To obtain it: {m.obtain}")
    return m.url


def public_url(url: str) -> str:
    """``url`` without user name, password, query or fragment: what messages and records may show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _as_url(text: str) -> str:
    """An ``http(s)://`` or ``file://`` URL as given; an existing local folder or file as a file URL."""
    scheme = urlsplit(text).scheme.lower()
    if scheme in _SCHEMES:
        return text
    if not scheme and Path(text).exists():
        return Path(text).resolve().as_uri()
    raise InputError(
        f"not a download source: {public_url(text) if scheme else text!r} "
        "(give an http://, https:// or file:// URL, or an existing folder)"
    )


def _safe_relative(name: str) -> bool:
    """True for a relative path that stays inside its folder: no absolute path or drive, no ``..``."""
    if not name or "\x00" in name:
        return False
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return False
    return ".." not in posix.split("/")


def _check_manifest(m: ModelManifest) -> None:
    if m.export and m.export not in EXPORTERS:
        raise ModelError(f"model {m.name!r}: unknown exporter {m.export!r} (known: {', '.join(EXPORTERS)})")
    if m.export and m.archive_member:
        raise ModelError(f"model {m.name!r}: a manifest names either an archive member or an exporter")
    for value in (m.file, m.archive_member):
        if value and not _safe_relative(value):
            raise ModelError(f"model {m.name!r}: {value!r} is not a relative path inside its folder")


# ----------------------------------------------------------------------------------------------------------
# HTTP(S) download with resume
# ----------------------------------------------------------------------------------------------------------


class _Bar(Protocol):
    def update(self, n: int) -> Any: ...
    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(enabled: bool, total: int | None, initial: int, desc: str) -> _Bar:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        file=sys.stderr,
    )


class _Interrupted(Exception):
    """A transient failure (connection lost, timeout, 5xx): the partial file is kept and may be resumed."""


class _Restart(Exception):
    """The partial file cannot be continued (the server's file changed, or it answered another range)."""


def _request(url: str, headers: dict[str, str]) -> urllib.request.Request:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    req = urllib.request.Request(urlunsplit(parts._replace(netloc=netloc)), headers=headers)
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        # unredirected: urllib does not carry it to the host a redirect points to
        req.add_unredirected_header("Authorization", "Basic " + base64.b64encode(token).decode("ascii"))
    return req


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(start, total)`` of a ``Content-Range`` header (``bytes 100-199/200``, ``bytes */200``)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if match is None:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _validator(headers: Any) -> str:
    """The header ``If-Range`` may carry: a strong ETag, else Last-Modified."""
    etag = headers.get("ETag") or ""
    if etag and not etag.startswith("W/"):
        return str(etag)
    return str(headers.get("Last-Modified") or "")


def _http_error(name: str, code: int, source: str, mirrored: bool) -> Exception:
    if code in (404, 410):
        hint = " (a mirror holds it at <mirror>/<model name>/<file name>; see --dry-run)" if mirrored else ""
        return DownloadNotFoundError(f"{name}: {source} does not exist (HTTP {code}){hint}")
    if code in (401, 403):
        return DownloadError(
            f"{name}: {source} refused access (HTTP {code}); a mirror that needs credentials takes them in "
            "its URL (https://user:token@host/...)"
        )
    if code == 429 or code >= 500:
        return _Interrupted(f"{source} answered HTTP {code}")
    return DownloadError(f"{name}: {source} answered HTTP {code}")


def _open(req: urllib.request.Request, name: str, source: str, mirrored: bool) -> Any:
    """``urlopen`` with errors translated; a 416 comes back as the HTTPError itself (the caller decides)."""
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:
            return exc
        raise _http_error(name, exc.code, source, mirrored) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError):
            raise DownloadNotFoundError(f"{name}: {source} does not exist") from None
        raise _Interrupted(f"cannot reach {source}: {_reason(exc.reason)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Interrupted(f"cannot reach {source}: {_reason(exc)}") from None


def _reason(exc: object) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _download_once(
    name: str, url: str, part: Path, *, progress: bool, mirrored: bool, started_over: list[bool]
) -> None:
    """Bring ``part`` to the complete file in one request; appends True to ``started_over`` when it had to
    drop the bytes already in ``part``. Raises _Interrupted (transient: ``part`` keeps what arrived),
    _Restart and DownloadError."""
    source = public_url(url)
    meta = part.with_name(part.name + ".json")
    offset = part.stat().st_size if part.is_file() else 0
    validator = ""
    if offset:
        try:
            kept = json.loads(meta.read_text())
        except (OSError, ValueError):
            kept = {}
        if kept.get("source") != source:  # a different source: its file may differ
            raise _Restart("the partial file came from another source")
        validator = str(kept.get("validator", ""))
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    resp = _open(_request(url, headers), name, source, mirrored)
    if isinstance(resp, urllib.error.HTTPError):  # 416: nothing left to send, or a stale partial file
        _, whole = _content_range(resp.headers.get("Content-Range"))
        if offset and whole == offset:
            return
        raise _Restart("the server refused the range")
    with resp:
        status = resp.status or 200  # None for file:// URLs
        if "text/html" in (resp.headers.get("Content-Type") or "").lower():
            raise DownloadError(
                f"{name}: {source} sent an HTML page instead of the file (a login or error page?)"
            )
        if status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                raise _Restart("the server answered another range")
            mode = "ab"
        else:
            if offset:
                log.info("%s: %s sent the whole file: starting over", name, source)
                started_over.append(True)
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            meta.write_text(json.dumps({"source": source, "validator": _validator(resp.headers)}))
        bar = _bar(progress, total, offset, name)
        size = offset
        try:
            with part.open(mode) as f:
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Interrupted(
                            f"the transfer from {source} broke off after {_mb(size)}: {_reason(exc)}"
                        ) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and size < total:
        raise _Interrupted(f"the transfer from {source} broke off after {_mb(size)} of {_mb(total)}")
    if total is not None and size > total:
        raise _Restart(f"{source} sent more bytes than it announced")


def _download(
    name: str, url: str, part: Path, *, progress: bool, retries: int, mirrored: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int]:  # fmt: skip
    """:func:`_download_once` with ``retries`` more tries after transient failures (1 s, 2 s, 4 s ... apart)
    and one fresh start when the partial file cannot be continued. Returns ``(bytes transferred by this call,
    bytes of an earlier partial download that were kept)``."""
    kept = part.stat().st_size if part.is_file() else 0
    restarted = False
    started_over: list[bool] = []
    attempt = 0
    while True:
        try:
            _download_once(name, url, part, progress=progress, mirrored=mirrored, started_over=started_over)
        except _Restart as exc:
            if restarted:
                raise DownloadError(f"{name}: cannot download {public_url(url)}: {exc}") from None
            log.info("%s: %s; starting over", name, exc)
            restarted, kept = True, 0
            _remove(part, part.with_name(part.name + ".json"))
            continue
        except _Interrupted as exc:
            if attempt >= retries:
                partial = part.is_file() and part.stat().st_size > 0
                resume = "; the partial download is kept: run the same command again to resume"
                raise DownloadError(f"{name}: {exc}{resume if partial else ''}") from None
            attempt += 1
            delay = min(2.0 ** (attempt - 1), 30.0)
            log.warning("%s: %s; try %d of %d in %.0f s", name, exc, attempt + 1, retries + 1, delay)
            sleep(delay)
            continue
        if started_over:
            kept = 0
        return part.stat().st_size - kept, kept


# ----------------------------------------------------------------------------------------------------------
# Unpacking and export
# ----------------------------------------------------------------------------------------------------------


def _unpack(name: str, archive: Path, member: str, dest: Path) -> None:
    """Copy ``member`` of the zip ``archive`` to ``dest``; refuses the archive if any member is unsafe."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            unsafe = [i.filename for i in infos if not _safe_relative(i.filename)]
            if unsafe:
                raise UnsafeArchiveError(
                    f"{name}: the downloaded archive holds {unsafe[0]!r}, a path outside its folder; "
                    "nothing was unpacked"
                )
            info = next((i for i in infos if i.filename == member), None)
            if info is None:
                onnx = sorted(i.filename for i in infos if i.filename.endswith(".onnx"))
                raise ArchiveError(
                    f"{name}: the downloaded archive has no member {member!r} "
                    f"(its .onnx members: {', '.join(onnx) or 'none'})"
                )
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(f"{name}: {member!r} in the downloaded archive is a link")
            if info.is_dir():
                raise ArchiveError(f"{name}: {member!r} in the downloaded archive is a folder")
            with zf.open(info) as src, dest.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ArchiveError(f"{name}: the download is not a readable zip archive ({exc})") from None
    except NotImplementedError as exc:  # an unsupported compression method
        raise ArchiveError(f"{name}: cannot unpack the downloaded archive ({exc})") from None


def _export(m: ModelManifest, checkpoint: Path, dest: Path) -> dict[str, str]:
    """Export the checkpoint to ONNX at ``dest`` with :mod:`export.motionbert`; returns provenance."""
    try:
        import torch

        from export.motionbert.convert import OPSET, build_model, export_onnx
    except ImportError as exc:
        raise ExportUnavailableError(
            f"{m.name}: exporting the {m.family} checkpoint to ONNX needs PyTorch and onnx: install the "
            "`export` extra (pip install 'gaitway[export]') and run the command again; the download is kept",
            detail=str(exc),
        ) from None
    import pickle

    try:
        model = build_model(m.export_config, checkpoint)
        export_onnx(model, dest)
    except ImportError as exc:
        raise ExportUnavailableError(
            f"{m.name}: the ONNX export needs the `export` extra (pip install 'gaitway[export]'): {exc}"
        ) from None
    except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
        raise ModelExportError(
            f"{m.name}: the downloaded checkpoint does not export as MotionBERT {m.export_config!r}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            detail=str(exc),
        ) from None
    return {"exporter": m.export, "config": m.export_config, "torch": torch.__version__, "opset": str(OPSET)}


# ----------------------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    import fcntl

    with (folder / ".fetch.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def _present(m: ModelManifest, final: Path, record: Path) -> FetchResult | None:
    """The installed file when it is there and checks out; None when it must be fetched."""
    if not final.is_file():
        return None
    digest = sha256_of(final)
    found = FetchResult(m.name, "present", path=final, sha256=digest)
    if m.sha256:
        if digest == m.sha256:
            return replace(found, verified=True)
        log.warning("%s: the installed file does not match its pinned checksum: fetching it again", m.name)
        return None
    rec = _read_record(record)
    if rec is None:
        return replace(
            found, note="not installed by this command, nothing to check it against; --force replaces it"
        )
    if rec.get("sha256") == digest:
        return replace(found, record=record, download_sha256=str(rec.get("download_sha256", "")))
    log.warning("%s: the installed file changed since it was fetched: fetching it again", m.name)
    return None


def _fetch_one(
    m: ModelManifest,
    models_dir: Path,
    url: str,
    *,
    mirrored: bool,
    force: bool,
    progress: bool,
    retries: int,
) -> FetchResult:
    final = models_dir / m.file
    folder = final.parent
    plain = not m.archive_member and not m.export  # the download is the installed file
    download = final if plain else folder / download_name(m)
    part = download.with_name(download.name + ".part")
    record = final.with_name(final.name + ".fetch.json")
    source = public_url(url)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        if force:
            _remove(part, part.with_name(part.name + ".json"))
            if not plain:
                _remove(download)
        else:
            found = _present(m, final, record)
            if found is not None:
                return found
        transferred, kept = 0, 0
        if plain or not download.is_file():
            transferred, kept = _download(
                m.name, url, part, progress=progress, retries=retries, mirrored=mirrored
            )
            got = part
        else:
            got = download  # a complete download left by an earlier call (its install had failed)
        digest = sha256_of(got)
        pins = [m.download_sha256] + ([m.sha256] if plain else [])
        for pin in pins:
            if pin and digest != pin:
                _remove(got, part.with_name(part.name + ".json"))
                raise ModelChecksumError(
                    f"{m.name}: checksum mismatch: the file downloaded from {source} has sha256 "
                    f"{digest[:12]}..., expected {pin[:12]}... (a corrupt transfer or another file); "
                    "it was removed and nothing was installed"
                )
        verified = any(pins)
        info: dict[str, Any] = {
            "model": m.name,
            "source": source,
            "download": download.name,
            "download_sha256": digest,
            "download_bytes": got.stat().st_size,
            "fetched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        if plain:
            _write_json(record, {**info, "file": m.file, "sha256": digest, "pinned": verified})
            os.replace(part, final)
            _remove(part.with_name(part.name + ".json"))
            final_digest = digest
        else:
            if got is part:
                os.replace(part, download)
                _remove(part.with_name(part.name + ".json"))
            tmp = folder / f".{final.name}.{uuid.uuid4().hex}.tmp"
            try:
                try:
                    if m.archive_member:
                        _unpack(m.name, download, m.archive_member, tmp)
                        info["archive_member"] = m.archive_member
                    else:
                        if progress:
                            sys.stderr.write(f"{m.name}: exporting to ONNX ({m.export}, {m.export_config})\n")
                        info["export"] = _export(m, download, tmp)
                except (ArchiveError, ModelExportError):
                    _remove(download)  # useless: the next call downloads it again
                    raise
                final_digest = sha256_of(tmp)
                if m.sha256 and final_digest != m.sha256:
                    _remove(download)
                    raise ModelChecksumError(
                        f"{m.name}: checksum mismatch: the installed file would have sha256 "
                        f"{final_digest[:12]}..., expected {m.sha256[:12]}...; nothing was installed"
                    )
                verified = verified or bool(m.sha256)
                _write_json(record, {**info, "file": m.file, "sha256": final_digest, "pinned": verified})
                os.replace(tmp, final)
            finally:
                _remove(tmp)
            _remove(download)
    return FetchResult(
        name=m.name,
        status="installed",
        path=final,
        source=source,
        sha256=final_digest,
        download_sha256=digest,
        verified=verified,
        downloaded_bytes=transferred,
        resumed_from=kept,
        record=record,
    )


# ----------------------------------------------------------------------------------------------------------
# API and CLI
# ----------------------------------------------------------------------------------------------------------


def _targets(name_or_preset: str) -> tuple[list[ModelManifest], bool]:
    """The manifests ``name_or_preset`` names and whether it is a preset."""
    known = manifests()
    if name_or_preset in known:
        return [known[name_or_preset]], False
    if name_or_preset in presets():
        p = get_preset(name_or_preset)
        return [get_manifest(p.detector), get_manifest(p.pose2d), get_manifest(p.lifter)], True
    raise ModelError(
        f"unknown model or preset {name_or_preset!r}; models: {', '.join(sorted(known))}; "
        f"presets: {', '.join(sorted(presets()))}"
    )


def fetch(
    name_or_preset: str,
    models_dir: str | Path,
    *,
    mirror: str = "",
    url: str = "",
    force: bool = False,
    progress: bool = False,
    retries: int = 2,
    dry_run: bool = False,
) -> list[FetchResult]:
    """Download, check and install one model, or every model of a preset that has a download source, into
    ``models_dir`` (see the module docstring). ``mirror``: base URL (or folder) of a mirror; ``url``: the
    source of a single model; ``retries``: further tries after a transient failure; ``dry_run``: only say
    what would be fetched from where. Raises the :mod:`services.errors` classes listed there."""
    if retries < 0:
        raise InputError("retries must be >= 0")
    targets, is_preset = _targets(name_or_preset)
    if url and is_preset:
        raise InputError("--url gives the source of one model: name a model, not a preset")
    models_dir = Path(models_dir)
    results: list[FetchResult] = []
    for m in targets:
        _check_manifest(m)
        if not (m.url or url or mirror):
            if not is_preset:
                raise ModelError(f"model {m.name!r} has no download source. To obtain it: {m.obtain}")
            there = "present" if (models_dir / m.file).is_file() else "not in " + str(models_dir)
            results.append(FetchResult(m.name, "skipped", note=f"no download source ({there}): {m.obtain}"))
            continue
        src = source_url(m, mirror=mirror, url=url)
        if dry_run:
            results.append(
                FetchResult(
                    m.name, "planned", path=models_dir / m.file, source=public_url(src),
                    mirror_path=mirror_path(m),
                )
            )  # fmt: skip
            continue
        try:
            results.append(
                _fetch_one(
                    m,
                    models_dir,
                    src,
                    mirrored=bool(mirror) and not url,
                    force=force,
                    progress=progress,
                    retries=retries,
                )
            )
        except OSError as exc:  # the models folder: permissions, disk full
            raise ModelError(
                f"{m.name}: cannot write the model files under {models_dir}: {_reason(exc)}", detail=str(exc)
            ) from None
    return results


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``gaitway models fetch``."""
    parser.add_argument(
        "name", metavar="NAME|PRESET", help="a model, or a preset (each of its models with a URL)"
    )
    parser.add_argument(
        "--models-dir",
        default=argparse.SUPPRESS,  # a --models-dir given to a parent command stays in effect
        help="folder to install into (default: the first folder of the model search path)",
    )
    parser.add_argument(
        "--mirror",
        metavar="URL",
        default=None,
        help="base URL (or folder) of a mirror holding <model name>/<file name of the official URL> "
        "(default: GAITWAY_MODELS_MIRROR; empty: the official URLs)",
    )
    parser.add_argument("--url", default="", help="download this one model from URL instead")
    parser.add_argument("--force", action="store_true", help="download and install again even if present")
    parser.add_argument(
        "--retries", type=_count, default=2, help="tries after a transient failure (default 2)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print sources and mirror paths, download nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``gaitway models fetch`` with parsed :func:`add_arguments` options. Errors are raised as
    :class:`services.errors.GaitwayError` for the CLI to print with their code."""
    from services.settings import Settings

    settings = Settings()
    given = getattr(args, "models_dir", None)
    models_dir = Path(given) if given else settings.model_search_path()[0]
    mirror = settings.models_mirror if args.mirror is None else args.mirror
    results = fetch(
        args.name,
        models_dir,
        mirror=mirror,
        url=args.url,
        force=args.force,
        progress=not args.no_progress and sys.stderr.isatty(),
        retries=args.retries,
        dry_run=args.dry_run,
    )
    for r in results:
        sys.stdout.write("\n".join(r.lines()) + "\n")
    return 0
