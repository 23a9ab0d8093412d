"""Fault and abuse cases against a real, freshly started Gaitway deployment (``make faults``).

The script starts everything it talks to, on free ports in a temporary folder, and never touches a stack
someone else runs:

* a :class:`gateway.stack.LocalStack`: the real ``tritonserver`` on the CPU repository, the kinematics
  service and one gateway on SQLite, with short timeouts for the run (see :data:`RUN_ENV`: upload idle
  timeout 5 s, whole upload 30 s, lease 6 s, shutdown grace 2 s);
* for the queue-limit case, an API-only ``gaitway serve`` replica (``GAITWAY_WORKERS=0``) with a queue limit
  of 9 and a store of its own;
* for the replica case, a throw-away PostgreSQL server (``tests/postgres.py``) and three ``gaitway serve``
  replicas sharing one ``GAITWAY_DATA_DIR`` and ``GAITWAY_DATABASE_URL``, pointed at the stack's Triton and
  kinematics service.

API keys come from a keys file (``name:secret[:jobs_per_day[:requests_per_min]]``, ``GAITWAY_API_KEYS_FILE``)
with random secrets made for the run. Each case records what was sent, the expected answer, the actual
answer (HTTP status or gRPC code, error code, message), pass or fail and its duration, and prints one line
when it starts and one when it ends. Two cases close every run: ``nothing_lost`` (every job a gateway
accepted ended done, or was deleted as its case intended) and ``internal_detail`` (no client-visible error
body, message or trailer collected during the run holds a path, an address, a port in use, a traceback or
a secret). Results go to ``--out`` (JSON) and a Markdown table beside it; the exit status is 1 when any
case fails.

    python loadtests/faults.py --out loadtests/results/faults.json [--only NAME[,NAME]] [--list] [--keep]
                               [--preset lightning]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import re
import secrets
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import av
import cv2
import grpc
import httpx
import numpy as np
from sqlalchemy import make_url

from gateway.proto.gaitway.v1 import gaitway_pb2 as pb
from gateway.proto.gaitway.v1 import gaitway_pb2_grpc as pb_grpc
from gateway.records import MAX_IDEMPOTENCY_KEY, Job, JobState
from gateway.stack import COMPONENTS, LocalStack, Ports
from gateway.store import SqlStore
from services.errors import NotFoundError
from services.pose.triton import free_port
from services.settings import Settings

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

#: settings of every gateway process of the run (the stack's, the queue replica's, the fleet's)
RUN_ENV: dict[str, str] = {
    "GAITWAY_LEASE_S": "6",
    "GAITWAY_POLL_INTERVAL_S": "0.2",
    "GAITWAY_UPLOAD_IDLE_TIMEOUT_S": "5",
    "GAITWAY_UPLOAD_TIMEOUT_S": "30",
    "GAITWAY_SHUTDOWN_GRACE_S": "2",
    "GAITWAY_QUEUE_LIMIT": "50",
    "GAITWAY_LOG_JSON": "true",
}
IDLE_TIMEOUT_S = float(RUN_ENV["GAITWAY_UPLOAD_IDLE_TIMEOUT_S"])
UPLOAD_TIMEOUT_S = float(RUN_ENV["GAITWAY_UPLOAD_TIMEOUT_S"])
QUEUE_LIMIT = 9  # the API-only replica's queue
TRITON_OUTAGE_S = 60.0
#: how long a job may take to finish once nothing stops it (a slow, shared 2-core machine)
JOB_TIMEOUT_S = 300.0
KEY_NAMES = ("ops", "quota-http", "quota-grpc", "stream-a", "stream-b", "probe")
GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def log(line: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {line}", flush=True)


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wait_for(what: str, probe: Callable[[], T | None], *, timeout_s: float, interval_s: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def make_video(path: Path, *, width: int, height: int, fps: int, frames: int) -> Path:
    """A synthetic H.264 MP4 (two flat halves, tiny bitrate) of ``frames`` frames at ``fps``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        image = np.zeros((height, width, 3), np.uint8)
        image[:, : width // 2] = 128
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for _ in range(frames):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def first_frame_jpeg(video: Path) -> bytes:
    with av.open(str(video)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="bgr24")
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(jpeg.tobytes())


def postgres_helpers() -> Any:
    """``tests/postgres.py`` (``postgres_server``, ``create_database``), imported by path."""
    spec = importlib.util.spec_from_file_location("gaitway_tests_postgres", REPO / "tests" / "postgres.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("tests/postgres.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_lengths(values: list[Any]) -> str:
    """``[401, 401, 429]`` -> ``"401x2 429x1"``."""
    out: list[str] = []
    for v in values:
        if out and out[-1].split("x")[0] == str(v):
            n = int(out[-1].rsplit("x", 1)[1]) + 1
            out[-1] = f"{v}x{n}"
        else:
            out.append(f"{v}x1")
    return " ".join(out)


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of Prometheus metric ``name`` whose labels include ``labels`` (regex values)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(re.fullmatch(v, found.get(k, "")) for k, v in labels.items()):
            total += float(value)
    return total


# --------------------------------------------------------------------------------------------------------
# bookkeeping


@dataclass
class Case:
    name: str
    title: str
    sent: str = ""
    expected: str = ""
    answers: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def answer(self, text: str) -> None:
        self.answers.append(one_line(text, 600))

    def check(self, label: str, ok: bool) -> bool:
        self.checks.append((label, bool(ok)))
        return bool(ok)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(ok for _, ok in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "sent": self.sent,
            "expected": self.expected,
            "answer": "; ".join(self.answers),
            "pass": self.passed,
            "seconds": round(self.seconds, 1),
            "checks": [{"check": label, "ok": ok} for label, ok in self.checks],
            "error": self.error,
            "details": self.details,
        }


@dataclass
class Accepted:
    """A job a gateway accepted (HTTP 202 or gRPC OK with created=true)."""

    job_id: str
    where: str  # "stack", "queue" or "fleet": which store holds it
    case: str
    intended: str  # "done" or "deleted"


@dataclass
class Visible:
    """One client-visible error answer (body, message, trailers) of the run."""

    case: str
    via: str
    status: str
    text: str


class Replica:
    """One ``gaitway serve`` process started by this script (its own session, log in ``log``)."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log = log_path
        full = {**env, "GAITWAY_HTTP_PORT": str(self.http_port), "GAITWAY_GRPC_PORT": str(self.grpc_port)}
        with log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve"],
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"replica {self.name} exited with {self.proc.returncode}: {tail}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(f"replica {self.name} ready", ready, timeout_s=timeout_s, interval_s=0.3)

    def signal(self, sig: int, *, timeout_s: float = 90.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode


def log_records(paths: list[Path]) -> list[dict[str, Any]]:
    """The JSON log lines of gateway logs."""
    out = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
    return out


def count_log(paths: list[Path], msg: str, job_id: str) -> int:
    return sum(1 for r in log_records(paths) if r.get("msg") == msg and r.get("job_id") == job_id)


# --------------------------------------------------------------------------------------------------------
# the run


class Faults:
    """The components of the run (started on first use), the helpers the cases share, and the cases."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.preset: str = args.preset
        self.settings = Settings()
        shared = self.settings.shared_dir.resolve()
        self.models_dir = self.settings.models_dir or os.pathsep.join(
            str(shared / d) for d in ("models", "reference")
        )
        self.demo3 = shared / "data" / "running-side-outdoor" / "demo3.mp4"
        self.treadmill = shared / "data" / "running-treadmill-phone" / "IMG_5396.mp4"
        for clip in (self.demo3, self.treadmill):
            if not clip.exists():
                raise SystemExit(f"missing test clip {clip} (set GAITWAY_SHARED_DIR)")
        self.work = Path(tempfile.mkdtemp(prefix="gaitway-faults-"))
        self.keys = {name: f"faults-{name}-{secrets.token_urlsafe(18)}" for name in KEY_NAMES}
        self.keys_file = self.work / "keys.txt"
        limits = {"ops": ":100000:100000", "quota-http": ":3", "quota-grpc": ":3"}
        self.keys_file.write_text(
            "".join(f"{name}:{secret}{limits.get(name, '')}\n" for name, secret in self.keys.items())
        )
        self.keys_file.chmod(0o600)
        self.exit = contextlib.ExitStack()
        self._stack: LocalStack | None = None
        self.stores: dict[str, SqlStore] = {}
        self.replicas: list[Replica] = []
        self.pg_url: str | None = None
        self.ports: set[int] = set()
        self.accepted: list[Accepted] = []
        self.visible: list[Visible] = []
        self.observations: list[str] = []
        self.cases: list[Case] = []
        self.current = ""
        self.lock = threading.Lock()

    # -- components ------------------------------------------------------------------------------------

    def stack(self) -> LocalStack:
        if self._stack is None:
            stack = LocalStack(
                self.work / "stack",
                preset=self.preset,
                models_dir=self.models_dir,
                ports=Ports.free(),
                env=dict(RUN_ENV),
            )
            self._stack = stack
            log(f"starting the local stack in {stack.root} (Triton, kinematics, gateway)")
            stack.prepare()
            with stack.keys_file.open("a") as keys:  # prepare() wrote the development key; ours follow
                keys.write(self.keys_file.read_text())
            for name in COMPONENTS:
                stack.start(name, timeout_s=300)
            self.ports |= set(asdict(stack.ports).values())
            self.stores["stack"] = SqlStore(f"sqlite:///{stack.root / 'var' / 'gaitway.db'}")
            log(f"stack up: gateway {stack.gateway_url}, gRPC {stack.gateway_grpc}")
        return self._stack

    @property
    def stack_store(self) -> SqlStore:
        self.stack()
        return self.stores["stack"]

    @property
    def stack_data(self) -> Path:
        return self.stack().root / "var"

    def replica_env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        stack = self.stack()
        return {
            **os.environ,
            **RUN_ENV,
            "GAITWAY_DATA_DIR": str(data_dir),
            "GAITWAY_API_KEYS_FILE": str(self.keys_file),
            "GAITWAY_TRITON_URL": stack.triton_grpc,
            "GAITWAY_KINEMATICS_URL": stack.kinematics_url,
            "GAITWAY_PRESET": self.preset,
            "GAITWAY_MODELS_DIR": self.models_dir,
            **extra,
        }

    def start_replicas(self, names: list[str], env: dict[str, str]) -> list[Replica]:
        started = [Replica(name, env, self.work / f"{name}.log") for name in names]
        self.replicas += started
        for r in started:
            self.ports |= {r.http_port, r.grpc_port}
        for r in started:
            r.wait_ready()
        return started

    def postgres(self) -> str:
        if self.pg_url is None:
            helpers = postgres_helpers()
            log("starting a PostgreSQL server of our own")
            server_url: str = self.exit.enter_context(helpers.postgres_server())
            port = make_url(server_url).port
            if port:
                self.ports.add(port)
            self.pg_url = helpers.create_database(server_url, "faults_" + secrets.token_hex(6))
        return self.pg_url

    def close(self) -> None:
        for r in self.replicas:
            r.signal(signal.SIGKILL, timeout_s=10)
        if self._stack is not None:
            log("stopping the local stack")
            self._stack.down()
        for store in self.stores.values():
            with contextlib.suppress(Exception):
                store.close()
        self.exit.close()
        if self.args.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- observed answers ------------------------------------------------------------------------------

    def saw(self, via: str, status: str, text: str) -> None:
        with self.lock:
            self.visible.append(Visible(self.current, via, status, text))

    def observe_http(self, r: httpx.Response, via: str) -> httpx.Response:
        if r.status_code >= 400:
            extra = f" retry-after={r.headers['retry-after']}" if "retry-after" in r.headers else ""
            self.saw(via, str(r.status_code), r.text + extra)
        return r

    def observe_rpc(self, err: Any, via: str) -> Any:
        trailers = {k: v for k, v in (err.trailing_metadata() or ()) if k != "x-request-id"}
        self.saw(via, err.code().name, f"{err.details()} {json.dumps(trailers)}")
        return err

    def accept(self, job_id: str, where: str, intended: str = "done") -> None:
        with self.lock:
            self.accepted.append(Accepted(job_id, where, self.current, intended))

    # -- HTTP ------------------------------------------------------------------------------------------

    def post_video(
        self,
        base: str,
        data: bytes,
        secret: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        where: str = "stack",
        timeout_s: float = 120.0,
    ) -> httpx.Response:
        """POST /v1/analyses; a 202 joins the ledger of accepted jobs (intended: done)."""
        head = {"x-api-key": secret, "content-type": "video/mp4", **(headers or {})}
        r = httpx.post(f"{base}/v1/analyses", content=data, headers=head, params=params, timeout=timeout_s)
        self.observe_http(r, "HTTP POST /v1/analyses")
        if r.status_code == 202:
            self.accept(r.json()["id"], where)
        return r

    def get(self, base: str, path: str, secret: str | None, **kw: Any) -> httpx.Response:
        headers = {"x-api-key": secret} if secret else {}
        r = httpx.get(f"{base}{path}", headers=headers, timeout=kw.pop("timeout", 60.0), **kw)
        return self.observe_http(r, f"HTTP GET {path[:60]}")

    def delete(self, base: str, job_id: str, secret: str) -> httpx.Response:
        r = httpx.delete(f"{base}/v1/analyses/{job_id}", headers={"x-api-key": secret}, timeout=60)
        return self.observe_http(r, "HTTP DELETE /v1/analyses/{id}")

    @staticmethod
    def error_of(r: httpx.Response) -> tuple[str, str]:
        try:
            err = r.json()["error"]
            return str(err["code"]), str(err["message"])
        except (ValueError, KeyError, TypeError):
            return "", r.text[:200]

    def describe(self, r: httpx.Response) -> str:
        if r.status_code < 400:
            return str(r.status_code)
        code, message = self.error_of(r)
        retry = f" Retry-After {r.headers['retry-after']}" if "retry-after" in r.headers else ""
        return f"{r.status_code} {code}{retry}: {message}"

    # -- raw sockets -----------------------------------------------------------------------------------

    def raw_upload(self, port: int, secret: str, *, declared: int, first: bytes, rid: str) -> socket.socket:
        """A raw HTTP upload announcing ``declared`` bytes and sending only ``first`` so far."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = (
            f"POST /v1/analyses HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-api-key: {secret}\r\n"
            f"content-type: video/mp4\r\ncontent-length: {declared}\r\nx-request-id: {rid}\r\n\r\n"
        )
        sock.sendall(head.encode() + first)
        return sock

    @staticmethod
    def read_response(sock: socket.socket, timeout_s: float) -> tuple[int, dict[str, str], bytes]:
        sock.settimeout(timeout_s)
        data = b""
        while True:
            if b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is None or len(body) >= int(length.group(1)):
                    break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        if b"\r\n\r\n" not in data:
            raise ConnectionError(f"no HTTP answer (got {data[:100]!r})")
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        return int(lines[0].split()[1]), headers, body

    # -- gRPC ------------------------------------------------------------------------------------------

    def channel(self, target: str | None = None) -> Any:
        return grpc.insecure_channel(target or self.stack().gateway_grpc, options=GRPC_OPTIONS)

    @staticmethod
    def upload_requests(
        data: bytes, *, preset: str = "", idempotency_key: str = "", chunk: int = 256 * 1024
    ) -> Iterator[Any]:
        yield pb.AnalyzeVideoRequest(
            metadata=pb.UploadMetadata(
                filename="clip.mp4", content_type="video/mp4", preset=preset, idempotency_key=idempotency_key
            )
        )
        for start in range(0, len(data), chunk):
            yield pb.AnalyzeVideoRequest(chunk=data[start : start + chunk])

    def grpc_upload(self, stub: Any, data: bytes, secret: str, **kw: Any) -> tuple[Any, Any]:
        """AnalyzeVideo: (status, None) or (None, RpcError); a created job joins the ledger."""
        try:
            status = stub.AnalyzeVideo(
                self.upload_requests(data, **kw), metadata=[("x-api-key", secret)], timeout=120
            )
        except grpc.RpcError as err:
            return None, self.observe_rpc(err, "gRPC AnalyzeVideo")
        if status.created:
            self.accept(status.id, "stack")
        return status, None

    @staticmethod
    def rpc_text(err: Any) -> str:
        trailers = dict(err.trailing_metadata() or ())
        extra = f" retry-after-s {trailers['retry-after-s']}" if "retry-after-s" in trailers else ""
        return f"{err.code().name} error-code={trailers.get('error-code', '')}{extra}: {err.details()}"

    # -- store and files -------------------------------------------------------------------------------

    def snapshot(self) -> tuple[frozenset[str], int]:
        """(files in the stack's uploads folder, jobs in its store)."""
        uploads = self.stack_data / "uploads"
        files = frozenset(p.name for p in uploads.iterdir()) if uploads.exists() else frozenset()
        return files, sum(self.stack_store.counts().values())

    def nothing_stored(
        self, case: Case, before: tuple[frozenset[str], int], *, settle_s: float = 1.0
    ) -> None:
        time.sleep(settle_s)
        after = self.snapshot()
        new = sorted(after[0] - before[0])
        case.check(
            "nothing stored (no new upload file, no .part, no new job)", not new and after[1] == before[1]
        )
        if new or after[1] != before[1]:
            case.answer(f"stored: new files {new}, jobs {before[1]} -> {after[1]}")
        else:
            case.answer("nothing stored")

    def job(self, job_id: str, where: str = "stack") -> Job:
        return self.stores[where].get(job_id)

    def wait_running(
        self, job_id: str, *, progress: float, where: str = "stack", timeout_s: float = 180
    ) -> Job:
        def running() -> Job | None:
            job = self.job(job_id, where)
            if job.state in (JobState.DONE, JobState.FAILED):
                raise RuntimeError(f"job {job_id} ended {job.state} before reaching progress {progress}")
            return job if job.state is JobState.RUNNING and job.progress >= progress else None

        return wait_for(
            f"job {job_id} running past {progress:.0%}", running, timeout_s=timeout_s, interval_s=0.05
        )

    def wait_finished(
        self, job_ids: list[str], *, where: str = "stack", timeout_s: float = JOB_TIMEOUT_S
    ) -> list[Job]:
        def finished() -> list[Job] | None:
            jobs = [self.job(j, where) for j in job_ids]
            return jobs if all(j.state in (JobState.DONE, JobState.FAILED) for j in jobs) else None

        return wait_for(f"jobs {job_ids} to finish", finished, timeout_s=timeout_s, interval_s=0.25)

    def wait_idle(self, timeout_s: float = JOB_TIMEOUT_S) -> None:
        """Until the stack's gateway has no queued or running job."""

        def idle() -> bool:
            counts = self.stack_store.counts()
            return counts[JobState.QUEUED] + counts[JobState.RUNNING] == 0

        wait_for("the stack's queue to drain", idle, timeout_s=timeout_s, interval_s=0.25)

    def live_sessions(self) -> int:
        db = self.stack_data / "gaitway.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
            return int(conn.execute("SELECT count(*) FROM live_sessions").fetchone()[0])

    # ==================================================================================================
    # cases

    def case_docs_offline(self, case: Case) -> None:
        base = self.stack().gateway_url
        case.sent = "GET /docs and /redoc (no key), then every asset their HTML references"
        case.expected = "200 HTML with no http(s):// URL; every asset served by the gateway itself (200)"
        for page in ("/docs", "/redoc"):
            r = self.get(base, page, None)
            external = sorted(set(re.findall(r"https?://[^\s\"'<>)]+", r.text)))
            assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
            bad_assets = []
            for asset in assets:
                a = httpx.get(base + asset, timeout=60) if asset.startswith("/") else None
                if a is None or a.status_code != 200 or len(a.content) < 100:
                    bad_assets.append(asset)
            ok = r.status_code == 200 and r.headers.get("content-type", "").startswith("text/html")
            case.check(f"{page}: 200 text/html", ok)
            case.check(f"{page}: no external URL", not external)
            case.check(f"{page}: assets served locally", bool(assets) and not bad_assets)
            case.answer(
                f"{page} {r.status_code}, external URLs {external or 'none'}, {len(assets)} assets, bad "
                f"{bad_assets or 'none'}"
            )

    def case_unknown_preset(self, case: Case) -> None:
        stack = self.stack()
        data = self.demo3.read_bytes()
        case.sent = "demo3.mp4 with preset 'no-such-preset': HTTP ?preset=, gRPC UploadMetadata.preset"
        case.expected = (
            "HTTP 400 bad_request / gRPC INVALID_ARGUMENT (error-code bad_request) naming the preset; "
            "nothing stored"
        )
        before = self.snapshot()
        r = self.post_video(stack.gateway_url, data, self.keys["ops"], params={"preset": "no-such-preset"})
        code, message = self.error_of(r)
        case.answer(f"HTTP {self.describe(r)}")
        case.check(
            "HTTP 400 bad_request naming the preset",
            r.status_code == 400 and code == "bad_request" and "no-such-preset" in message,
        )
        with self.channel() as ch:
            status, err = self.grpc_upload(
                pb_grpc.AnalysisStub(ch), data, self.keys["ops"], preset="no-such-preset"
            )
        if err is not None:
            case.answer(f"gRPC {self.rpc_text(err)}")
            trailers = dict(err.trailing_metadata() or ())
            case.check(
                "gRPC INVALID_ARGUMENT bad_request",
                err.code() == grpc.StatusCode.INVALID_ARGUMENT
                and trailers.get("error-code") == "bad_request",
            )
        else:
            case.answer(f"gRPC OK id {status.id}")
            case.check("gRPC INVALID_ARGUMENT bad_request", False)
        self.nothing_stored(case, before)

    def case_idempotency_key_limit(self, case: Case) -> None:
        stack = self.stack()
        data = self.demo3.read_bytes()
        k255 = "k" * (MAX_IDEMPOTENCY_KEY - 20) + secrets.token_hex(10)
        k256 = k255 + "x"
        case.sent = (
            f"demo3.mp4 with a {len(k256)}-character idempotency key (HTTP header, gRPC field), then "
            f"{len(k255)} characters (HTTP, then gRPC with the same key)"
        )
        case.expected = (
            "256: HTTP 422 invalid_request naming idempotency-key, gRPC INVALID_ARGUMENT bad_request, "
            "nothing stored; 255: HTTP 202 and gRPC OK with the same analysis"
        )
        before = self.snapshot()
        r = self.post_video(stack.gateway_url, data, self.keys["ops"], headers={"idempotency-key": k256})
        code, message = self.error_of(r)
        case.answer(f"HTTP 256: {self.describe(r)}")
        case.check(
            "HTTP 256 -> 422 invalid_request",
            r.status_code == 422 and code == "invalid_request" and "idempotency" in message,
        )
        with self.channel() as ch:
            stub = pb_grpc.AnalysisStub(ch)
            _, err = self.grpc_upload(stub, data, self.keys["ops"], idempotency_key=k256)
            case.answer("gRPC 256: " + (self.rpc_text(err) if err is not None else "OK"))
            case.check(
                "gRPC 256 -> INVALID_ARGUMENT bad_request",
                err is not None
                and err.code() == grpc.StatusCode.INVALID_ARGUMENT
                and dict(err.trailing_metadata() or ()).get("error-code") == "bad_request",
            )
            self.nothing_stored(case, before, settle_s=0.5)
            ok = self.post_video(stack.gateway_url, data, self.keys["ops"], headers={"idempotency-key": k255})
            case.answer(f"HTTP 255: {self.describe(ok)}")
            case.check("HTTP 255 -> 202", ok.status_code == 202)
            status, err = self.grpc_upload(stub, data, self.keys["ops"], idempotency_key=k255)
            case.answer(
                "gRPC 255: " + (self.rpc_text(err) if err is not None else f"OK created={status.created}")
            )
            same = status is not None and ok.status_code == 202 and status.id == ok.json()["id"]
            case.check("gRPC 255 -> OK, the same analysis", same)

    def case_idempotency_replay(self, case: Case) -> None:
        stack = self.stack()
        data = self.demo3.read_bytes()
        key = "faults-replay-" + secrets.token_hex(8)
        case.sent = (
            "demo3.mp4 twice over HTTP with one idempotency key, then over gRPC with that key, then other "
            "bytes with it"
        )
        case.expected = (
            "202, then 200 idempotent-replayed with the same id, gRPC OK created=false with the same id; "
            "other bytes 409 conflict; one job"
        )
        jobs_before = self.snapshot()[1]
        first = self.post_video(stack.gateway_url, data, self.keys["ops"], headers={"idempotency-key": key})
        again = self.post_video(stack.gateway_url, data, self.keys["ops"], headers={"idempotency-key": key})
        case.answer(
            f"HTTP {first.status_code} then {again.status_code} "
            f"replayed={again.headers.get('idempotent-replayed')}"
        )
        same = (
            first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
        )
        case.check(
            "HTTP replay: 200, idempotent-replayed, same id",
            same and again.headers.get("idempotent-replayed") == "true",
        )
        with self.channel() as ch:
            status, err = self.grpc_upload(
                pb_grpc.AnalysisStub(ch), data, self.keys["ops"], idempotency_key=key
            )
        case.answer(
            "gRPC: "
            + (
                self.rpc_text(err)
                if err is not None
                else f"OK id same={status.id == first.json().get('id')} created={status.created}"
            )
        )
        case.check(
            "gRPC replay: same id, created=false",
            status is not None and status.id == first.json().get("id") and not status.created,
        )
        other = self.post_video(
            stack.gateway_url, data[: len(data) // 2], self.keys["ops"], headers={"idempotency-key": key}
        )
        case.answer(f"other bytes: {self.describe(other)}")
        case.check(
            "other bytes -> 409 conflict", other.status_code == 409 and self.error_of(other)[0] == "conflict"
        )
        jobs_after = self.snapshot()[1]
        case.check("exactly one job created", jobs_after == jobs_before + 1)

    def case_huge_grpc_id(self, case: Case) -> None:
        stack = self.stack()
        case.sent = (
            "gRPC GetAnalysis with a 1,000,000-character id; HTTP GET /v1/analyses/<10,000 characters>"
        )
        case.expected = (
            "gRPC NOT_FOUND (error-code not_found), details short and not echoing the id; HTTP 404 not_found"
        )
        with self.channel() as ch:
            try:
                pb_grpc.AnalysisStub(ch).GetAnalysis(
                    pb.GetAnalysisRequest(id="x" * 1_000_000),
                    metadata=[("x-api-key", self.keys["ops"])],
                    timeout=60,
                )
                case.answer("gRPC OK")
                case.check("gRPC NOT_FOUND", False)
            except grpc.RpcError as err:
                self.observe_rpc(err, "gRPC GetAnalysis")
                case.answer(f"gRPC {self.rpc_text(err)} ({len(err.details() or '')} characters)")
                case.check(
                    "gRPC NOT_FOUND not_found",
                    err.code() == grpc.StatusCode.NOT_FOUND
                    and dict(err.trailing_metadata() or ()).get("error-code") == "not_found",
                )
                case.check(
                    "details short, id not echoed",
                    len(err.details() or "") < 200 and "xxxxxxxxxx" not in (err.details() or ""),
                )
        r = self.get(stack.gateway_url, "/v1/analyses/" + "y" * 10_000, self.keys["ops"])
        case.answer(f"HTTP {self.describe(r)}")
        case.check("HTTP 404 not_found, id not echoed", r.status_code == 404 and "yyyyyyyyyy" not in r.text)

    def case_client_disconnect(self, case: Case) -> None:
        stack = self.stack()
        case.sent = "raw socket: POST announcing 100,000 bytes, 1,000 sent, then the connection closed"
        case.expected = "the request is counted as 499 (client closed), no 5xx, nothing stored"
        before = self.snapshot()
        metrics = self.get(stack.gateway_url, "/metrics", None).text
        c499 = metric_sum(metrics, "gaitway_http_requests_total", route="/v1/analyses", status="499")
        c5xx = metric_sum(metrics, "gaitway_http_requests_total", status="5..")
        with self.raw_upload(
            stack.ports.http, self.keys["ops"], declared=100_000, first=b"\0" * 1000, rid="faults-gone-1"
        ):
            time.sleep(0.5)

        def counted() -> str | None:
            text = self.get(stack.gateway_url, "/metrics", None).text
            n = metric_sum(text, "gaitway_http_requests_total", route="/v1/analyses", status="499")
            return text if n > c499 else None

        try:
            after = wait_for("the disconnect to be counted", counted, timeout_s=15, interval_s=0.2)
        except TimeoutError:
            after = self.get(stack.gateway_url, "/metrics", None).text
        n499 = metric_sum(after, "gaitway_http_requests_total", route="/v1/analyses", status="499") - c499
        n5xx = metric_sum(after, "gaitway_http_requests_total", status="5..") - c5xx
        case.answer(f"499 counted {n499:g} time(s), new 5xx {n5xx:g}")
        case.check("counted as 499", n499 == 1)
        case.check("no 5xx", n5xx == 0)
        self.nothing_stored(case, before)

    def case_long_tiny_video(self, case: Case) -> None:
        stack = self.stack()
        s = self.settings
        long_s = int(s.max_video_s) + 100
        long_clip = make_video(self.work / "long-tiny.mp4", width=96, height=96, fps=2, frames=2 * long_s)
        frames = s.max_video_frames + 4000
        fps = max(100, math.ceil(frames / (0.7 * s.max_video_s)))
        many_clip = make_video(self.work / "many-frames.mp4", width=96, height=96, fps=fps, frames=frames)
        case.sent = (
            f"96x96 H.264 made with PyAV: {long_s} s at 2 fps ({long_clip.stat().st_size:,} B); "
            f"{frames} frames at {fps} fps ({frames / fps:.0f} s, {many_clip.stat().st_size:,} B)"
        )
        case.expected = (
            f"413 video_too_large before queueing, the message naming the limit ({s.max_video_s:g} s; "
            f"{s.max_video_frames} frames); nothing stored"
        )
        before = self.snapshot()
        for clip, limit in ((long_clip, f"{s.max_video_s:g} s"), (many_clip, str(s.max_video_frames))):
            t0 = time.monotonic()
            r = self.post_video(stack.gateway_url, clip.read_bytes(), self.keys["ops"])
            code, message = self.error_of(r)
            case.answer(f"{clip.name}: {self.describe(r)} ({time.monotonic() - t0:.1f} s)")
            case.check(
                f"{clip.name}: 413 video_too_large naming {limit}",
                r.status_code == 413 and code == "video_too_large" and limit in message,
            )
        self.nothing_stored(case, before)

    def case_video_8k(self, case: Case) -> None:
        stack = self.stack()
        s = self.settings
        clip = make_video(self.work / "8k.mp4", width=7680, height=4320, fps=30, frames=3)
        case.sent = f"7680x4320 H.264, 3 frames ({clip.stat().st_size:,} B)"
        case.expected = (
            f"413 video_too_large before queueing (limit {s.max_video_pixels:,} pixels named), quickly "
            "(header only); nothing stored"
        )
        before = self.snapshot()
        t0 = time.monotonic()
        r = self.post_video(stack.gateway_url, clip.read_bytes(), self.keys["ops"])
        took = time.monotonic() - t0
        code, message = self.error_of(r)
        case.answer(f"{self.describe(r)} ({took:.1f} s)")
        case.check("413 video_too_large", r.status_code == 413 and code == "video_too_large")
        case.check(
            "message names the size and the limit",
            "7680x4320" in message and f"{s.max_video_pixels:,}" in message,
        )
        case.check("answered within 10 s", took < 10)
        self.nothing_stored(case, before)

    def case_stalled_upload(self, case: Case) -> None:
        stack = self.stack()
        case.sent = (
            "raw socket: POST announcing 100,000 bytes, 1,000 sent, then nothing (idle timeout "
            f"{IDLE_TIMEOUT_S:g} s)"
        )
        case.expected = f"408 upload_timeout about {IDLE_TIMEOUT_S:g} s after the last byte; nothing stored"
        before = self.snapshot()
        t0 = time.monotonic()
        with self.raw_upload(
            stack.ports.http, self.keys["ops"], declared=100_000, first=b"\0" * 1000, rid="faults-stall-1"
        ) as sock:
            status, _, body = self.read_response(sock, timeout_s=IDLE_TIMEOUT_S + 30)
        took = time.monotonic() - t0
        self.saw("HTTP POST /v1/analyses (raw)", str(status), body.decode(errors="replace"))
        doc = json.loads(body or b"{}")
        err = doc.get("error", {})
        case.answer(f"{status} {err.get('code')}: {err.get('message')} after {took:.1f} s")
        case.check("408 upload_timeout", status == 408 and err.get("code") == "upload_timeout")
        case.check(
            f"after the idle timeout ({IDLE_TIMEOUT_S:g}-{IDLE_TIMEOUT_S + 7:g} s)",
            IDLE_TIMEOUT_S - 0.5 <= took <= IDLE_TIMEOUT_S + 7,
        )
        case.check("request id echoed", err.get("request_id") == "faults-stall-1")
        self.nothing_stored(case, before)

    def case_slow_upload(self, case: Case) -> None:
        stack = self.stack()
        limit = IDLE_TIMEOUT_S + 5
        case.sent = (
            f"raw socket: POST announcing 100,000 bytes, then 1 byte a second (upload idle timeout "
            f"{IDLE_TIMEOUT_S:g} s, whole-upload timeout {UPLOAD_TIMEOUT_S:g} s for this run)"
        )
        case.expected = (
            f"408 upload_timeout after the upload idle timeout (within {limit:g} s); nothing stored"
        )
        before = self.snapshot()
        t0 = time.monotonic()
        sent = 0
        answer: tuple[int, dict[str, str], bytes] | None = None
        with self.raw_upload(
            stack.ports.http, self.keys["ops"], declared=100_000, first=b"", rid="faults-slow-1"
        ) as sock:
            while time.monotonic() - t0 < UPLOAD_TIMEOUT_S + 20:
                readable, _, _ = select.select([sock], [], [], 1.0)
                if readable:
                    answer = self.read_response(sock, timeout_s=10)
                    break
                try:
                    sock.sendall(b"\0")
                    sent += 1
                except OSError:
                    break
        took = time.monotonic() - t0
        if answer is None:
            case.answer(f"no answer after {took:.0f} s ({sent} bytes sent)")
            case.check("408 upload_timeout", False)
        else:
            status, _, body = answer
            self.saw("HTTP POST /v1/analyses (raw)", str(status), body.decode(errors="replace"))
            err = json.loads(body or b"{}").get("error", {})
            case.answer(
                f"{status} {err.get('code')}: {err.get('message')} after {took:.1f} s "
                f"({sent} bytes sent at 1 B/s)"
            )
            case.check("408 upload_timeout", status == 408 and err.get("code") == "upload_timeout")
            case.check(f"within the idle timeout + 5 s ({limit:g} s)", took <= limit)
        case.details["bytes_sent"] = sent
        case.details["seconds_to_answer"] = round(took, 1)
        if took > limit and answer is not None and b"upload_timeout_s" in answer[2]:
            case.answer(
                "the idle timeout is the wait for the next chunk and every byte restarts it, so a trickle is "
                f"cut only by upload_timeout_s ({UPLOAD_TIMEOUT_S:g} s in this run, "
                f"{Settings.model_fields['upload_timeout_s'].default:g} s by default)"
            )
        self.nothing_stored(case, before)

    def case_wrong_keys(self, case: Case) -> None:
        stack = self.stack()
        n = self.settings.auth_failures_per_min
        case.sent = (
            "100 GET /v1/analyses with 100 different wrong keys from 127.0.0.2 (one keep-alive client); "
            "then the valid key 'probe' from 127.0.0.2 and from 127.0.0.1"
        )
        case.expected = (
            f"401 unauthenticated for the first {n} (auth_failures_per_min), then 429 rate_limited with "
            "Retry-After (a token refilled every 60/N s may let one more 401 through); the blocked address "
            "is refused even with a valid key, other addresses are not; after Retry-After it works again"
        )
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        answers: list[tuple[int, str, str | None]] = []
        t0 = time.monotonic()
        with httpx.Client(transport=transport, base_url=stack.gateway_url, timeout=30) as client:
            for i in range(100):
                r = self.observe_http(
                    client.get("/v1/analyses", headers={"x-api-key": f"wrong-{i}-{secrets.token_hex(8)}"}),
                    "HTTP GET /v1/analyses",
                )
                answers.append((r.status_code, self.error_of(r)[0], r.headers.get("retry-after")))
            took = time.monotonic() - t0
            blocked = self.observe_http(
                client.get("/v1/analyses", headers={"x-api-key": self.keys["probe"]}), "HTTP GET /v1/analyses"
            )
            other = self.get(stack.gateway_url, "/v1/analyses", self.keys["probe"])
            wait = float(blocked.headers.get("retry-after", "0"))
            time.sleep(wait + 0.5)
            later = self.observe_http(
                client.get("/v1/analyses", headers={"x-api-key": self.keys["probe"]}), "HTTP GET /v1/analyses"
            )
        statuses = [a[0] for a in answers]
        case.details["statuses"] = run_lengths(statuses)
        case.answer(
            f"{run_lengths(statuses)} in {took:.1f} s; first 429: "
            f"{answers[n][1] if len(answers) > n else ''} Retry-After "
            f"{answers[n][2] if len(answers) > n else ''}"
        )
        case.answer(
            f"valid key from the blocked address: {self.describe(blocked)}; from 127.0.0.1: "
            f"{other.status_code}; after {wait:g} s: {later.status_code}"
        )
        refills = int(took / (60.0 / n)) + 1
        first_ok = all(a[0] == 401 and a[1] == "unauthenticated" for a in answers[:n])
        rest = answers[n:]
        limited = [a for a in rest if a[0] == 429]
        case.check(f"first {n}: 401 unauthenticated", first_ok)
        case.check(f"request {n + 1}: 429", bool(rest) and rest[0][0] == 429)
        case.check(
            "every later answer 429 rate_limited with Retry-After >= 1 (but refills)",
            len(rest) - len(limited) <= refills
            and all(a[1] == "rate_limited" and a[2] is not None and int(a[2]) >= 1 for a in limited)
            and all(a[0] in (401, 429) for a in rest),
        )
        case.check("valid key from the blocked address: 429", blocked.status_code == 429)
        case.check("valid key from another address: 200", other.status_code == 200)
        case.check("after Retry-After the address works again", later.status_code == 200)

    def case_quota_race(self, case: Case) -> None:
        stack = self.stack()
        data = self.demo3.read_bytes()
        case.sent = (
            "10 concurrent HTTP uploads of demo3.mp4 with key 'quota-http' (3 jobs/day); 10 concurrent "
            "gRPC AnalyzeVideo with fresh key 'quota-grpc' (3 jobs/day)"
        )
        case.expected = (
            "exactly 3 accepted (202 / OK), 7 refused 429 quota_exceeded with Retry-After / "
            "RESOURCE_EXHAUSTED error-code quota_exceeded with retry-after-s"
        )
        gate = threading.Barrier(10)

        def http_one(_: int) -> httpx.Response:
            gate.wait(30)
            return self.post_video(stack.gateway_url, data, self.keys["quota-http"])

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(http_one, range(10)))
        codes = sorted(r.status_code for r in answers)
        refused = [r for r in answers if r.status_code != 202]
        errs = sorted({self.error_of(r)[0] for r in refused})
        case.answer(
            f"HTTP: {run_lengths(codes)}, refused codes {errs}, e.g. "
            f"{self.describe(refused[0]) if refused else '-'}"
        )
        case.check("HTTP: 3 x 202, 7 x 429", codes == [202] * 3 + [429] * 7)
        case.check(
            "HTTP: refusals quota_exceeded with Retry-After",
            errs == ["quota_exceeded"] and all("retry-after" in r.headers for r in refused),
        )
        gate = threading.Barrier(10)
        with self.channel() as ch:
            stub = pb_grpc.AnalysisStub(ch)

            def grpc_one(_: int) -> tuple[Any, Any]:
                gate.wait(30)
                return self.grpc_upload(stub, data, self.keys["quota-grpc"])

            with ThreadPoolExecutor(10) as pool:
                results = list(pool.map(grpc_one, range(10)))
        ok = [s for s, e in results if s is not None]
        errors = [e for s, e in results if e is not None]
        trailers = [dict(e.trailing_metadata() or ()) for e in errors]
        kinds = sorted(
            {f"{e.code().name}/{t.get('error-code')}" for e, t in zip(errors, trailers, strict=True)}
        )
        case.answer(
            f"gRPC: {len(ok)} OK, {len(errors)} {kinds}, e.g. {self.rpc_text(errors[0]) if errors else '-'}"
        )
        case.check("gRPC: 3 OK (created)", len(ok) == 3 and all(s.created for s in ok))
        case.check(
            "gRPC: 7 RESOURCE_EXHAUSTED quota_exceeded with retry-after-s",
            len(errors) == 7
            and kinds == ["RESOURCE_EXHAUSTED/quota_exceeded"]
            and all("retry-after-s" in t for t in trailers),
        )
        # one more upload once the race is over: the early check (not the store's admission) refuses it
        sub = Case(
            "quota_retry_after",
            "the Retry-After of an exhausted daily quota is the same whichever check refuses",
        )
        self.cases.append(sub)
        t_sub = time.monotonic()
        late = self.post_video(stack.gateway_url, data, self.keys["quota-http"])
        sub.seconds = time.monotonic() - t_sub
        # the refusals' waits and messages: the early check and the store's admission may both refuse
        http_waits = sorted({float(r.headers.get("retry-after", "nan")) for r in refused})
        grpc_waits = sorted({float(t.get("retry-after-s", "nan")) for t in trailers})
        messages = sorted({self.error_of(r)[1] for r in refused} | {e.details() for e in errors})
        case.details |= {
            "http_retry_after": http_waits,
            "grpc_retry_after_s": grpc_waits,
            "messages": messages,
        }
        case.answer(
            f"waits: HTTP Retry-After {http_waits}, gRPC retry-after-s {grpc_waits}; messages {messages}"
        )
        race_waits = [w for w in http_waits + grpc_waits if w == w]
        late_wait = float(late.headers.get("retry-after", "nan"))
        sub.sent = "an 11th HTTP upload with key 'quota-http' after the race (its 3 jobs made moments ago)"
        sub.expected = (
            "429 quota_exceeded whose Retry-After says when the rolling 24 h quota frees (within a minute of "
            "the refusals of the race's own admission, about 86400 s)"
        )
        sub.answer(f"{self.describe(late)}; the race's waits {sorted(set(race_waits))}")
        sub.check(
            "429 quota_exceeded", late.status_code == 429 and self.error_of(late)[0] == "quota_exceeded"
        )
        big = max(race_waits, default=float("nan"))
        sub.check("Retry-After within 60 s of the admission's", abs(late_wait - big) <= 60)
        if abs(late_wait - big) > 60 and late_wait == 3600:
            sub.answer(
                "the early check (gateway/auth.py Access.check_quota) always answers 3600 s; the store's "
                "admission answers when the oldest job of the rolling 24 h leaves it"
            )

    def case_stream_sessions(self, case: Case) -> None:
        self.stack()
        per_key = self.settings.stream_sessions_per_key
        jpeg = first_frame_jpeg(self.demo3)
        case.sent = (
            f"StreamFrames: {per_key} sessions held open by key 'stream-a', then one more for 'stream-a', "
            "one for 'stream-b', then 'stream-a' again after its sessions closed"
        )
        case.expected = (
            f"the {per_key + 1}th session of a key: RESOURCE_EXHAUSTED with trailer error-code busy; "
            "another key gets a session; after closing, the key opens again"
        )
        config = pb.FrameIn(config=pb.StreamConfig(preset=self.preset))
        frame = pb.FrameIn(frame=pb.Frame(seq=0, t=0.0, image=jpeg))
        release = threading.Event()
        held: list[str] = []

        def meta(name: str) -> list[tuple[str, str]]:
            return [("x-api-key", self.keys[name])]

        with self.channel() as ch:
            stub = pb_grpc.AnalysisStub(ch)

            def hold() -> None:
                def requests() -> Iterator[Any]:
                    yield config
                    release.wait(120)

                try:
                    answers = list(stub.StreamFrames(requests(), metadata=meta("stream-a"), timeout=180))
                    held.append("OK " + (answers[-1].WhichOneof("payload") if answers else "no answer"))
                except grpc.RpcError as err:
                    self.observe_rpc(err, "gRPC StreamFrames")
                    held.append(self.rpc_text(err))

            threads = [threading.Thread(target=hold) for _ in range(per_key)]
            for t in threads:
                t.start()
            try:
                wait_for(
                    f"{per_key} live sessions open",
                    lambda: self.live_sessions() >= per_key,
                    timeout_s=60,
                    interval_s=0.2,
                )

                def one(name: str, messages: list[Any]) -> tuple[str, list[Any], Any]:
                    try:
                        answers = list(stub.StreamFrames(iter(messages), metadata=meta(name), timeout=120))
                        return "OK", answers, None
                    except grpc.RpcError as err:
                        self.observe_rpc(err, "gRPC StreamFrames")
                        return err.code().name, [], err

                code, _, err = one("stream-a", [config])
                trailers = dict(err.trailing_metadata() or ()) if err is not None else {}
                case.answer(f"stream-a #{per_key + 1}: " + (self.rpc_text(err) if err is not None else code))
                case.check(
                    "extra session of the key: RESOURCE_EXHAUSTED busy",
                    code == "RESOURCE_EXHAUSTED" and trailers.get("error-code") == "busy",
                )
                code_b, answers_b, err_b = one("stream-b", [config, frame])
                kinds_b = [a.WhichOneof("payload") for a in answers_b]
                case.answer("stream-b: " + (self.rpc_text(err_b) if err_b is not None else f"OK {kinds_b}"))
                case.check(
                    "another key gets a session",
                    code_b == "OK" and bool(kinds_b) and kinds_b[-1] == "summary",
                )
            finally:
                release.set()
                for t in threads:
                    t.join(120)
            case.answer(f"held sessions ended: {held}")
            case.check(
                "held sessions ended cleanly",
                len(held) == per_key and all(h.startswith("OK summary") for h in held),
            )
            wait_for("live sessions closed", lambda: self.live_sessions() == 0, timeout_s=30, interval_s=0.2)
            code_a, answers_a, err_a = one("stream-a", [config, frame])
            kinds_a = [a.WhichOneof("payload") for a in answers_a]
            case.answer(
                "stream-a after closing: " + (self.rpc_text(err_a) if err_a is not None else f"OK {kinds_a}")
            )
            case.check(
                "the key opens again after closing",
                code_a == "OK" and bool(kinds_a) and kinds_a[-1] == "summary",
            )

    def case_queue_limit_race(self, case: Case) -> None:
        self.stack()
        data = self.demo3.read_bytes()
        root = self.work / "queue"
        env = self.replica_env(root / "data", GAITWAY_WORKERS="0", GAITWAY_QUEUE_LIMIT=str(QUEUE_LIMIT))
        case.sent = (
            f"an API-only replica (GAITWAY_WORKERS=0, GAITWAY_QUEUE_LIMIT={QUEUE_LIMIT}, own SQLite store): "
            f"50 concurrent HTTP uploads of demo3.mp4; then the {QUEUE_LIMIT} accepted deleted"
        )
        case.expected = (
            f"exactly {QUEUE_LIMIT} x 202, 41 x 429 busy each with Retry-After >= 1; only the accepted "
            "uploads on disk; DELETE 204 each"
        )
        [replica] = self.start_replicas(["queue-replica"], env)
        self.stores["queue"] = SqlStore(f"sqlite:///{root / 'data' / 'gaitway.db'}")
        gate = threading.Barrier(50)

        def one(_: int) -> httpx.Response:
            gate.wait(60)
            return self.post_video(replica.url, data, self.keys["ops"], where="queue")

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(one, range(50)))
        codes = sorted(r.status_code for r in answers)
        refused = [r for r in answers if r.status_code != 202]
        errs = sorted({self.error_of(r)[0] for r in refused})
        retry = sorted({r.headers.get("retry-after", "none") for r in refused})
        case.answer(
            f"{run_lengths(codes)}; refused codes {errs}, Retry-After values {retry}; e.g. "
            f"{self.describe(refused[0]) if refused else '-'}"
        )
        case.check(
            f"exactly {QUEUE_LIMIT} accepted, the rest 429",
            codes == [202] * QUEUE_LIMIT + [429] * (50 - QUEUE_LIMIT),
        )
        case.check(
            "refusals: busy with Retry-After >= 1",
            errs == ["busy"]
            and all(
                r.headers.get("retry-after", "0").isdigit() and int(r.headers["retry-after"]) >= 1
                for r in refused
            ),
        )
        accepted = [r.json()["id"] for r in answers if r.status_code == 202]
        files = sorted(p.name for p in (root / "data" / "uploads").iterdir())
        case.check("only the accepted uploads on disk", files == sorted(f"{j}.video" for j in accepted))
        case.check(
            f"{QUEUE_LIMIT} queued in the store",
            self.stores["queue"].counts()[JobState.QUEUED] == QUEUE_LIMIT,
        )
        deleted = [self.delete(replica.url, j, self.keys["ops"]).status_code for j in accepted]
        with self.lock:
            for entry in self.accepted:
                if entry.job_id in accepted:
                    entry.intended = "deleted"
        left = sorted(p.name for p in (root / "data" / "uploads").iterdir())
        case.answer(f"DELETE: {run_lengths(deleted)}; files left {left or 'none'}")
        case.check("deleted: 204 each, no file left", deleted == [204] * len(accepted) and not left)
        replica.signal(signal.SIGTERM)

    def case_delete_running(self, case: Case) -> None:
        stack = self.stack()
        self.wait_idle()
        case.sent = (
            "IMG_5396.mp4 (388 frames) uploaded, demo3.mp4 queued behind it; DELETE of the first while its "
            "pose stage runs"
        )
        case.expected = (
            "204; GET 404; its upload and artifacts removed; the worker logs the cancel and takes demo3 "
            "next, which ends done"
        )
        big = self.post_video(stack.gateway_url, self.treadmill.read_bytes(), self.keys["ops"])
        big_id = big.json()["id"]
        running = self.wait_running(big_id, progress=0.05)
        nxt = self.post_video(stack.gateway_url, self.demo3.read_bytes(), self.keys["ops"])
        nxt_id = nxt.json()["id"]
        running = self.job(big_id)
        t_delete = datetime.now(UTC)
        r = self.delete(stack.gateway_url, big_id, self.keys["ops"])
        with self.lock:
            for entry in self.accepted:
                if entry.job_id == big_id:
                    entry.intended = "deleted"
        gone = self.get(stack.gateway_url, f"/v1/analyses/{big_id}", self.keys["ops"])
        case.answer(
            f"DELETE at {running.stage} {running.progress:.0%}: {r.status_code}; GET {self.describe(gone)}"
        )
        case.check("DELETE 204", r.status_code == 204)
        case.check("GET 404 not_found", gone.status_code == 404 and self.error_of(gone)[0] == "not_found")
        log_path = stack.logs / "gateway.log"
        try:
            wait_for(
                "the cancel in the log",
                lambda: count_log([log_path], "job cancelled (deleted while running)", big_id) > 0,
                timeout_s=60,
                interval_s=0.2,
            )
            cancelled = True
        except TimeoutError:
            cancelled = False
        case.check("the worker logged the cancel", cancelled)
        upload = self.stack_data / "uploads" / f"{big_id}.video"
        folder = self.stack_data / "artifacts" / big_id
        case.answer(f"upload file left: {upload.exists()}, artifacts folder left: {folder.exists()}")
        case.check("its files removed", not upload.exists() and not folder.exists())
        [done] = self.wait_finished([nxt_id])
        started_after = done.started_at is not None and done.started_at >= t_delete
        case.answer(
            f"next job {done.state}, attempts {done.attempts}, started after the DELETE: {started_after}"
        )
        case.check("the worker took the next job, done", done.state is JobState.DONE and started_after)

    def case_kinematics_killed(self, case: Case) -> None:
        stack = self.stack()
        self.wait_idle()
        case.sent = (
            "IMG_5396.mp4; the kinematics service SIGKILLed at 20% of the pose stage; restarted once the "
            "job went back to the queue"
        )
        case.expected = (
            "job done; attempts 1; pose_runs 1 (resumed from the pose checkpoint); metrics present"
        )
        r = self.post_video(stack.gateway_url, self.treadmill.read_bytes(), self.keys["ops"])
        job_id = r.json()["id"]
        self.wait_running(job_id, progress=0.2)
        stack.kill("kinematics")
        try:
            wait_for(
                "the job to meet the outage",
                lambda: self.job(job_id).outage_retries >= 1,
                timeout_s=180,
                interval_s=0.25,
            )
        finally:
            stack.start("kinematics", timeout_s=120)
        [job] = self.wait_finished([job_id])
        steps = (job.summary or {}).get("steps")
        case.answer(
            f"{job.state}, attempts {job.attempts}, pose_runs {job.pose_runs}, outage_retries "
            f"{job.outage_retries}, steps {steps}, error {job.error_code}"
        )
        case.check("done", job.state is JobState.DONE)
        case.check("attempts 1, pose_runs 1", (job.attempts, job.pose_runs) == (1, 1))
        case.check("running metrics present", isinstance(steps, int) and steps > 0)

    def case_sigterm_gateway(self, case: Case) -> None:
        stack = self.stack()
        self.wait_idle()
        case.sent = (
            "IMG_5396.mp4; SIGTERM to the gateway (shutdown grace 2 s) (a) at 20% of the pose stage, "
            "(b) right after the pose checkpoint; the gateway started again each time"
        )
        case.expected = (
            "exit 0; the job done after the restart, attempts 1, pose_runs 1 when the pose stage had "
            "finished before the stop (checkpoint) and 2 otherwise; one job, 'job done' logged once"
        )
        log_path = stack.logs / "gateway.log"
        for label in ("a", "b"):
            jobs_before = self.snapshot()[1]
            r = self.post_video(stack.gateway_url, self.treadmill.read_bytes(), self.keys["ops"])
            job_id = r.json()["id"]
            if label == "a":
                self.wait_running(job_id, progress=0.2)
            else:

                def posed(jid: str = job_id) -> bool:
                    job = self.job(jid)
                    return job.checkpoint is not None or job.state is JobState.DONE

                wait_for("the pose checkpoint", posed, timeout_s=180, interval_s=0.05)
            proc = stack.procs["gateway"]
            t0 = time.monotonic()
            stack.stop("gateway", sig=signal.SIGTERM, grace_s=90)
            stop_s = time.monotonic() - t0
            at_stop = self.job(job_id)
            pose_done = at_stop.state is JobState.DONE or at_stop.checkpoint is not None
            stack.start("gateway", timeout_s=180)
            [job] = self.wait_finished([job_id])
            want_pose_runs = 1 if pose_done else 2
            done_lines = count_log([log_path], "job done", job_id)
            jobs_after = self.snapshot()[1]
            case.answer(
                f"({label}) exit {proc.returncode} after {stop_s:.1f} s; at the stop: {at_stop.state} stage "
                f"{at_stop.stage} checkpoint {at_stop.checkpoint} lease {at_stop.lease_owner}; "
                f"after the restart: {job.state}, attempts {job.attempts}, pose_runs {job.pose_runs}, "
                f"'job done' x{done_lines}"
            )
            case.check(f"({label}) gateway exit 0", proc.returncode == 0)
            case.check(f"({label}) nothing held by the stopped replica", at_stop.lease_owner is None)
            case.check(f"({label}) done, attempts 1", job.state is JobState.DONE and job.attempts == 1)
            case.check(f"({label}) pose_runs {want_pose_runs}", job.pose_runs == want_pose_runs)
            case.check(
                f"({label}) no duplicate (one job, done once)",
                done_lines == 1 and jobs_after == jobs_before + 1,
            )

    def case_triton_outage(self, case: Case) -> None:
        stack = self.stack()
        self.wait_idle()
        sub = Case("triton_recovered_upload", "an upload once Triton is back and /readyz is 200 is accepted")
        self.cases.append(sub)
        case.sent = (
            f"IMG_5396.mp4 running (20% of the pose stage); Triton SIGKILLed for {TRITON_OUTAGE_S:.0f} s; "
            "demo3.mp4 uploaded right after the kill; /readyz read; another demo3 upload 50 s into the outage"
        )
        case.expected = (
            "both jobs done after Triton is back, attempts 1, no failure; the running one went back to the "
            "queue (outage_retries >= 1); /readyz 503 during the outage"
        )
        sub.sent = "demo3.mp4 uploaded as soon as Triton is restarted and the gateway's /readyz answers 200"
        sub.expected = "202 (the gateway says it is ready)"
        r = self.post_video(stack.gateway_url, self.treadmill.read_bytes(), self.keys["ops"])
        job_id = r.json()["id"]
        self.wait_running(job_id, progress=0.2)
        t_kill = time.monotonic()
        restart_at = ""
        stack.kill("triton")
        try:
            queued = self.post_video(stack.gateway_url, self.demo3.read_bytes(), self.keys["ops"])
            case.answer(f"upload right after the kill: {self.describe(queued)}")
            case.check("upload right after the kill accepted (202)", queued.status_code == 202)
            queued_id = queued.json()["id"] if queued.status_code == 202 else None

            def unready() -> httpx.Response | None:
                answer = self.get(stack.gateway_url, "/readyz", None)
                return answer if answer.status_code == 503 else None

            ready = wait_for("/readyz 503", unready, timeout_s=30, interval_s=0.5)
            case.answer(f"/readyz {ready.status_code} {ready.text}")
            case.check("/readyz 503 during the outage", ready.status_code == 503)
            time.sleep(max(0.0, t_kill + 50 - time.monotonic()))
            late = self.post_video(stack.gateway_url, self.demo3.read_bytes(), self.keys["ops"])
            case.answer(f"upload 50 s into the outage: {self.describe(late)}")
            case.details["late_upload"] = self.describe(late)
            if late.status_code != 202:
                self.observations.append(
                    f"triton_outage: an upload 50 s into a Triton outage got {self.describe(late)}, while "
                    "one right after the kill was accepted and queued (the preset check caches Triton's "
                    "answer for 30 s)"
                )
            time.sleep(max(0.0, t_kill + TRITON_OUTAGE_S - time.monotonic()))
            mid = self.job(job_id)
            mid_q = self.job(queued_id) if queued_id else None
            case.answer(
                f"after {TRITON_OUTAGE_S:.0f} s: running job {mid.state} (outage_retries "
                f"{mid.outage_retries}), queued job {mid_q.state if mid_q else '-'}"
            )
            case.check(
                "the queued job waited (not run, not failed)",
                mid_q is not None and mid_q.state is JobState.QUEUED,
            )
        finally:
            if "triton" not in stack.procs:
                restart_at = datetime.now(UTC).isoformat(timespec="milliseconds")
                stack.start("triton", timeout_s=180)
        wait_for(
            "gateway /readyz 200",
            lambda: self.get(stack.gateway_url, "/readyz", None).status_code == 200,
            timeout_s=120,
            interval_s=0.2,
        )
        t_sub = time.monotonic()
        after = self.post_video(stack.gateway_url, self.demo3.read_bytes(), self.keys["ops"])
        sub.answer(
            f"{self.describe(after)} "
            f"({time.monotonic() - t_kill - TRITON_OUTAGE_S:.1f} s after the restart began)"
        )
        sub.check("202 once /readyz is 200", after.status_code == 202)
        if after.status_code != 202 and "unreachable" in self.error_of(after)[1]:
            sub.answer("refused as unreachable although the gateway's /readyz had just said Triton is ready")

            def accepted_again() -> httpx.Response | None:
                answer = self.post_video(stack.gateway_url, self.demo3.read_bytes(), self.keys["ops"])
                return answer if answer.status_code == 202 else None

            retry = wait_for("an upload accepted again", accepted_again, timeout_s=60, interval_s=2)
            sub.answer(
                f"accepted again {time.monotonic() - t_sub:.1f} s after /readyz said 200 "
                f"({retry.json()['id']})"
            )
        sub.seconds = time.monotonic() - t_sub
        ids = (
            [job_id]
            + ([queued_id] if queued_id else [])
            + ([late.json()["id"]] if late.status_code == 202 else [])
        )
        jobs = self.wait_finished(ids)
        for j in jobs:
            case.answer(
                f"{j.id}: {j.state}, attempts {j.attempts}, outage_retries {j.outage_retries}, error "
                f"{j.error_code}"
            )
        case.check(
            "every job done, attempts 1", all(j.state is JobState.DONE and j.attempts == 1 for j in jobs)
        )
        case.check("the running job met the outage (outage_retries >= 1)", jobs[0].outage_retries >= 1)
        # how often the running job went back to the queue, and whether after the gateway saw Triton back
        records = log_records([stack.logs / "gateway.log"])
        releases = [
            (r["ts"], str(r.get("detail", "")).rsplit(": ", 1)[-1][:80])
            for r in records
            if r.get("msg") == "dependency down; job back in the queue" and r.get("job_id") == job_id
        ]
        back = [
            r["ts"]
            for r in records
            if r.get("msg") == "dependency back; taking jobs again"
            and r.get("dependency") == "triton"
            and releases
            and r["ts"] > releases[0][0]
        ]
        back_during = [ts for ts in back if ts < restart_at]
        back_after = [ts for ts in back if ts >= restart_at]
        claims_during = [r for r in releases[1:] if r[0] < restart_at]
        claims_after = [r for r in releases if back_after and r[0] > back_after[0]]
        case.details |= {"releases": releases, "triton_back": back, "triton_restarted": restart_at}
        summary = (
            f"the job ended with outage_retries {jobs[0].outage_retries}, pose_runs {jobs[0].pose_runs}, "
            f"attempts {jobs[0].attempts}"
        )
        if back_during:
            self.observations.append(
                f"triton_outage: while Triton was dead the gateway logged it back ({', '.join(back_during)}; "
                f"the job first sent back at {releases[0][0] if releases else '?'}, Triton restarted at "
                f"{restart_at}) and claimed "
                f"the interrupted job again, which failed at once ({claims_during}); {summary}"
            )
        if claims_after:
            self.observations.append(
                f"triton_outage: after Triton was restarted and the gateway logged it back "
                f"({back_after[0]}), "
                f"its next claim of the interrupted job failed at once ({claims_after[0][0]}: gRPC "
                f"'{claims_after[0][1]}') and went back to the queue; {summary}"
            )

    def case_replica_kill(self, case: Case) -> None:
        self.stack()
        url = self.postgres()
        root = self.work / "fleet"
        env = self.replica_env(
            root / "data", GAITWAY_DATABASE_URL=url, GAITWAY_WORKERS="1", GAITWAY_QUEUE_LIMIT="20"
        )
        case.sent = (
            "3 gaitway serve replicas on one PostgreSQL and one data folder (1 worker each, lease 6 s); "
            "3 x IMG_5396.mp4 + 3 x demo3.mp4; the replica running the first job SIGKILLed mid-pose, "
            "never restarted"
        )
        case.expected = (
            "every job done exactly once ('job done' logged once each); the victim's job taken over "
            "(attempts 2, pose_runs <= 2, 1 if it had been checkpointed); "
            "every other job attempts 1, pose_runs 1"
        )
        replicas = self.start_replicas([f"fleet-{i}" for i in range(3)], env)
        store = self.stores["fleet"] = SqlStore(url)
        ids = []
        for i, clip in enumerate([self.treadmill] * 3 + [self.demo3] * 3):
            r = self.post_video(replicas[i % 3].url, clip.read_bytes(), self.keys["ops"], where="fleet")
            if r.status_code != 202:
                raise RuntimeError(f"upload {i} refused: {self.describe(r)}")
            ids.append(r.json()["id"])

        def all_running() -> list[Job] | None:
            jobs = [store.get(j) for j in ids[:3]]
            return jobs if all(j.state is JobState.RUNNING and j.progress > 0.05 for j in jobs) else None

        first = wait_for("3 jobs running", all_running, timeout_s=180, interval_s=0.1)
        victim = first[0]
        if victim.lease_owner is None:
            raise RuntimeError("the running job has no lease owner")
        pid = int(victim.lease_owner.split("-")[-2])  # replica ids are <host>-<pid>-<random>
        [dead] = [r for r in replicas if r.proc.pid == pid]
        dead.signal(signal.SIGKILL)
        at_kill = store.get(victim.id)
        case.answer(
            f"killed {dead.name} (pid {pid}) at {at_kill.stage} {at_kill.progress:.0%}, checkpoint "
            f"{at_kill.checkpoint}"
        )
        jobs = {j.id: j for j in self.wait_finished(ids, where="fleet", timeout_s=2 * JOB_TIMEOUT_S)}
        logs = [r.log for r in replicas]
        done_lines = {j: count_log(logs, "job done", j) for j in ids}
        for j in ids:
            job = jobs[j]
            case.answer(
                f"{j}{' (victim)' if j == victim.id else ''}: {job.state}, attempts {job.attempts}, "
                f"pose_runs {job.pose_runs}, done logged x{done_lines[j]}"
            )
        taken = jobs[victim.id]
        max_pose = 1 if at_kill.checkpoint is not None else 2
        case.check("every job done", all(j.state is JobState.DONE for j in jobs.values()))
        case.check("each done exactly once", all(n == 1 for n in done_lines.values()))
        case.check("victim taken over: attempts 2", taken.attempts == 2)
        case.check(f"victim pose_runs <= {max_pose}", 1 <= taken.pose_runs <= max_pose)
        case.check(
            "others: attempts 1, pose_runs 1",
            all((jobs[j].attempts, jobs[j].pose_runs) == (1, 1) for j in ids if j != victim.id),
        )
        case.check("6 jobs in the store, no duplicate", sum(store.counts().values()) == 6)
        case.check(
            "the victim stayed dead, 2 replicas alive",
            dead.proc.poll() is not None and sum(r.proc.poll() is None for r in replicas) == 2,
        )
        for replica in replicas:
            replica.signal(signal.SIGTERM)

    # -- closing cases ---------------------------------------------------------------------------------

    def case_nothing_lost(self, case: Case) -> None:
        case.sent = (
            "every job a gateway accepted during the run (HTTP 202, gRPC created), read back from its store"
        )
        case.expected = (
            "each one done, or gone (deleted) when its case deleted it; none queued, running or failed"
        )
        unfinished: dict[str, list[str]] = {}
        for entry in self.accepted:
            if entry.intended == "done":
                unfinished.setdefault(entry.where, []).append(entry.job_id)
        for where, job_ids in unfinished.items():
            with contextlib.suppress(TimeoutError):
                self.wait_finished(job_ids, where=where)
        rows = []
        for entry in self.accepted:
            try:
                job = self.job(entry.job_id, entry.where)
                state, attempts, pose_runs, error = (
                    job.state.value,
                    job.attempts,
                    job.pose_runs,
                    job.error_code,
                )
            except NotFoundError:
                state, attempts, pose_runs, error = "deleted", None, None, None
            ok = state == entry.intended
            rows.append(
                {
                    **asdict(entry),
                    "state": state,
                    "attempts": attempts,
                    "pose_runs": pose_runs,
                    "error": error,
                    "ok": ok,
                }
            )
        case.details["jobs"] = rows
        bad = [r for r in rows if not r["ok"]]
        done = sum(r["state"] == "done" for r in rows)
        deleted = sum(r["state"] == "deleted" for r in rows)
        case.answer(
            f"{len(rows)} accepted: {done} done, {deleted} deleted as intended, {len(bad)} not as intended "
            f"{[(r['job_id'], r['state']) for r in bad]}"
        )
        case.check("every accepted job ended as its case intended", not bad)

    def case_internal_detail(self, case: Case) -> None:
        roots = "tmp|work|home|root|usr|opt|var|etc|srv|proc|dev|mnt|run|app|data"
        patterns: list[tuple[str, re.Pattern[str]]] = [
            ("absolute path", re.compile(rf"(?<![\w.])/(?:{roots})/[\w.@+-]")),
            ("run folder", re.compile(re.escape(str(self.work)))),
            ("repository folder", re.compile(re.escape(str(REPO)))),
            (".part file", re.compile(r"\.part\b")),
            ("IPv4 address", re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")),
            ("IPv6 address", re.compile(r"\[[0-9a-f:]*:[0-9a-f:]*\]", re.IGNORECASE)),
            ("localhost", re.compile(r"\blocalhost\b", re.IGNORECASE)),
            ("traceback", re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")),
            (
                "library internals",
                re.compile(
                    r"sqlalchemy|psycopg|sqlite3|tritonclient|InferenceServerException|asyncio\.",
                    re.IGNORECASE,
                ),
            ),
        ]
        if self.ports:
            ports = "|".join(str(p) for p in sorted(self.ports))
            patterns.append(("port in use", re.compile(rf"(?<![\d.,])(?:{ports})(?![\d.,])")))
        patterns.append(("API key secret", re.compile("|".join(re.escape(s) for s in self.keys.values()))))
        case.sent = (
            "every client-visible error answer of the run: HTTP error bodies (and Retry-After), gRPC "
            "details and trailers, failed jobs' messages"
        )
        case.expected = (
            "no absolute path, .part name, IP address, port in use, traceback, library internals or secret"
        )
        texts = list(self.visible)
        for entry in self.accepted:
            with contextlib.suppress(Exception):
                job = self.job(entry.job_id, entry.where)
                if job.error_message:
                    texts.append(Visible(entry.case, "job error", job.error_code or "", job.error_message))
        hits = []
        for v in texts:
            for label, pattern in patterns:
                m = pattern.search(v.text)
                if m:
                    hits.append(
                        {
                            "case": v.case,
                            "via": v.via,
                            "status": v.status,
                            "found": label,
                            "match": m.group(0),
                            "text": one_line(v.text, 300),
                        }
                    )
        case.details["scanned"] = len(texts)
        case.details["by_case"] = {
            c: sum(1 for v in texts if v.case == c) for c in sorted({v.case for v in texts})
        }
        case.details["hits"] = hits
        case.details["patterns"] = [label for label, _ in patterns]
        case.answer(
            f"{len(texts)} answers scanned, {len(hits)} with internal detail"
            + (f": {hits[:5]}" if hits else "")
        )
        case.check("scanned something", bool(texts))
        case.check("no internal detail", not hits)
        # not client-visible, but worth knowing: tracebacks in the gateways' logs outside the JSON lines
        logs = [r.log for r in self.replicas]
        if self._stack is not None:
            logs.append(self._stack.logs / "gateway.log")
        blocks: list[str] = []
        for path in logs:
            if not path.exists():
                continue
            block: list[str] = []
            for line in [*path.read_text(errors="replace").splitlines(), "{"]:
                if line.startswith("{"):
                    if block and any("Traceback" in x or "Exception" in x for x in block):
                        blocks.append(f"{path.name}: {block[0].strip()} ... {block[-1].strip()}")
                    block = []
                else:
                    block.append(line)
        case.details["log_blocks_outside_json"] = blocks
        if blocks:
            self.observations.append(
                f"gateway logs (not client-visible): {len(blocks)} traceback block(s) outside the JSON log "
                f"format, e.g. {one_line(blocks[0], 300)!r}"
            )


#: the cases in the order they run: (name, what it shows)
CASES: list[tuple[str, str]] = [
    ("docs_offline", "/docs and /redoc served with no external URL"),
    ("unknown_preset", "an unknown preset is 4xx before queueing (HTTP, gRPC)"),
    (
        "idempotency_key_limit",
        "idempotency key: 256 characters refused (422 / INVALID_ARGUMENT), 255 accepted",
    ),
    ("idempotency_replay", "the same idempotency key twice gives the same analysis (HTTP and gRPC)"),
    ("huge_grpc_id", "a 1 MB id on gRPC GetAnalysis is NOT_FOUND, not echoed"),
    ("client_disconnect", "a client disconnecting mid-upload: nothing stored, no 5xx"),
    ("long_tiny_video", "a 96x96 video over the duration / frame limits: 413 before queueing"),
    ("video_8k", "a 7680x4320 clip: 413 before queueing"),
    ("stalled_upload", "an upload that stops sending: 408 after the idle timeout"),
    ("slow_upload", "an upload trickling 1 byte/s: 408 after the idle timeout"),
    ("wrong_keys", "100 wrong keys from one address: 401, then 429 with Retry-After"),
    ("quota_race", "quota of 3, 10 concurrent uploads: exactly 3 accepted (HTTP, gRPC)"),
    ("stream_sessions", "StreamFrames sessions per key: busy beyond the limit, other keys unaffected"),
    ("queue_limit_race", "queue limit 9 on an API-only replica, 50 concurrent uploads: exactly 9 accepted"),
    ("delete_running", "DELETE of a running job: 204, gone, files removed, the worker moves on"),
    ("kinematics_killed", "the kinematics service killed mid-job: done, pose stage run once"),
    ("sigterm_gateway", "SIGTERM to the gateway mid-job, started again: done, nothing recomputed twice"),
    ("triton_outage", "Triton killed for 60 s mid-job, another job queued: both done, attempts 1"),
    ("replica_kill", "3 replicas on PostgreSQL, one SIGKILLed mid-job: every job done exactly once"),
]
#: results some cases record besides their own (run with them)
SUBCASES: dict[str, list[str]] = {
    "quota_race": ["quota_retry_after"],
    "triton_outage": ["triton_recovered_upload"],
}
#: always run last, over what the cases before collected
CLOSING: list[tuple[str, str]] = [
    ("nothing_lost", "every accepted job ended done, or deleted as its case intended"),
    ("internal_detail", "no client-visible error answer holds internal detail"),
]


def run(faults: Faults, names: list[str]) -> None:
    for name, title in [(n, t) for n, t in CASES if n in names] + CLOSING:
        case = Case(name, title)
        first = len(faults.cases)
        faults.cases.append(case)
        faults.current = name
        log(f"START {name}: {title}")
        t0 = time.monotonic()
        try:
            getattr(faults, f"case_{name}")(case)
        except Exception as exc:
            case.error = f"{type(exc).__name__}: {one_line(str(exc), 800)}"
            case.details["traceback"] = traceback.format_exc()[-3000:]
        case.seconds = time.monotonic() - t0
        for done in faults.cases[first:]:  # the case and the sub-cases it recorded
            if done is not case and not done.checks and done.error is None:
                done.error = f"not reached: {name} stopped early"
            verdict = "PASS" if done.passed else "FAIL"
            log(f"{verdict}  {done.name} ({done.seconds:.1f} s): {one_line('; '.join(done.answers), 400)}")
            for label, ok in done.checks:
                if not ok:
                    log(f"      failed check: {label}")
            if done.error:
                log(f"      error: {done.error}")


def write_results(faults: Faults, out: Path, started: datetime, seconds: float) -> None:
    cases = faults.cases
    doc = {
        "script": "loadtests/faults.py",
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "preset": faults.preset,
        "run_env": RUN_ENV,
        "limits": {
            "max_video_s": faults.settings.max_video_s,
            "max_video_frames": faults.settings.max_video_frames,
            "max_video_pixels": faults.settings.max_video_pixels,
            "auth_failures_per_min": faults.settings.auth_failures_per_min,
            "stream_sessions_per_key": faults.settings.stream_sessions_per_key,
            "queue_limit_of_the_api_only_replica": QUEUE_LIMIT,
        },
        "passed": sum(c.passed for c in cases),
        "failed": sum(not c.passed for c in cases),
        "cases": [c.to_json() for c in cases],
        "accepted_jobs": [asdict(a) for a in faults.accepted],
        "observations": faults.observations,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# Fault and abuse cases",
        "",
        f"`python loadtests/faults.py` (`make faults`), {doc['started']}, {doc['seconds'] / 60:.1f} min, "
        f"{m['cpus']} CPUs, {m['platform']}, preset {doc['preset']}. A fresh local stack (real Triton on "
        "the CPU repository, kinematics service, gateway on SQLite), an API-only replica, and three replicas "
        "on a PostgreSQL server of the script's own, all on free ports in a temporary folder. "
        "Settings of the run: "
        + ", ".join(f"`{k}={v}`" for k, v in doc["run_env"].items())
        + "; every other setting at its default.",
        "",
        f"**{doc['passed']} passed, {doc['failed']} failed.**",
        "",
        "| case | what was done | expected | answer | pass | s |",
        "|---|---|---|---|---|---|",
    ]
    for c in doc["cases"]:
        answer = c["answer"] + (f" (harness error: {c['error']})" if c["error"] else "")
        lines.append(
            f"| {_cell(c['name'])} | {_cell(c['sent'])} | {_cell(c['expected'])} | {_cell(answer)} | "
            f"{'yes' if c['pass'] else '**no**'} | {c['seconds']} |"
        )
    failed = [c for c in doc["cases"] if not c["pass"]]
    if failed:
        lines += ["", "## Failing cases", ""]
        for c in failed:
            bad = [x["check"] for x in c["checks"] if not x["ok"]]
            lines.append(f"* **{c['name']}**: failed checks: {', '.join(bad) or '-'}. {c['error'] or ''}")
            lines.append(f"  Answer: {_cell(c['answer'])}")
    lost = next((c for c in doc["cases"] if c["name"] == "nothing_lost"), None)
    if lost and lost["details"].get("jobs"):
        lines += [
            "",
            "## Nothing lost: every accepted job",
            "",
            "| job | case | store | intended | state | attempts | pose_runs |",
            "|---|---|---|---|---|---|---|",
        ]
        for j in lost["details"]["jobs"]:
            lines.append(
                f"| {j['job_id']} | {j['case']} | {j['where']} | {j['intended']} | {j['state']}"
                f"{'' if j['ok'] else ' (**not as intended**)'} | "
                f"{j['attempts'] if j['attempts'] is not None else '-'} | "
                f"{j['pose_runs'] if j['pose_runs'] is not None else '-'} |"
            )
    scan = next((c for c in doc["cases"] if c["name"] == "internal_detail"), None)
    if scan:
        d = scan["details"]
        lines += [
            "",
            "## Internal-detail scan",
            "",
            f"{d.get('scanned', 0)} client-visible error answers scanned for: "
            f"{', '.join(d.get('patterns', []))}.",
            "",
        ]
        lines.append(
            "Answers per case: " + ", ".join(f"{k} {v}" for k, v in d.get("by_case", {}).items()) + "."
        )
        for h in d.get("hits", []):
            lines.append(
                f"* {h['case']} {h['via']} {h['status']}: {h['found']} `{h['match']}` in: {_cell(h['text'])}"
            )
    if doc["observations"]:
        lines += ["", "## Observations", ""] + [f"* {_cell(o)}" for o in doc["observations"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "loadtests" / "results" / "faults.json",
        help="results JSON (a .md is written beside it)",
    )
    p.add_argument(
        "--only", default="", help="comma-separated case names to run (the closing checks always run)"
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--preset", default="lightning", help="model preset of the stack (default %(default)s)")
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, stores) for inspection"
    )
    args = p.parse_args(argv)
    if args.list:
        for name, title in CASES + CLOSING:
            subs = SUBCASES.get(name)
            print(f"{name:<24} {title}" + (f" (also records: {', '.join(subs)})" if subs else ""))
        return 0
    names = [n for n, _ in CASES]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            p.error(f"unknown case(s) {unknown}; see --list")
        names = wanted
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started, t0 = datetime.now(UTC), time.monotonic()
    faults = Faults(args)
    try:
        run(faults, names)
    finally:
        faults.close()
        write_results(faults, args.out, started, time.monotonic() - t0)
    failed = [c.name for c in faults.cases if not c.passed]
    log(
        f"{len(faults.cases) - len(failed)} passed, {len(failed)} "
        f"failed{': ' + ', '.join(failed) if failed else ''}; "
        f"{(time.monotonic() - t0) / 60:.1f} min; results in {args.out} and {args.out.with_suffix('.md')}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
