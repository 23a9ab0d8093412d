"""Triton Inference Server: a local launcher and a :class:`~services.pose.backends.PoseBackend` over gRPC.

**Launcher.** :class:`TritonServer` starts the real ``tritonserver`` binary bundled in the ``nvidia-pytriton``
wheel (python backend only; see ``TRITON-ON-CPU.md`` in the shared docs) on free ports, waits for
``/v2/health/ready`` and stops it with SIGTERM. ``python -m services.pose.triton serve --repository DIR`` runs
one in the foreground (``make triton``); the CPU repository comes from ``python -m export.repository``.

**Backend.** :class:`TritonBackend` implements the pipeline's ``PoseBackend`` with the *same* codecs as
:class:`~services.pose.backends.EmbeddedBackend`: the crop step and the SimCC/MoveNet/RTMDet decoding run
here, in the client, and only the network tensors cross the wire. 2D crops travel as uint8 RGB (a 192x256
RTMPose crop is 147 KB, a 256x256 MoveNet Thunder crop 197 KB): the served graph casts, normalises and
transposes them itself (the family's wire format, :mod:`services.pose.families`); a server whose pose
model still takes the network's float input gets it normalised here (:func:`~services.pose.pose2d.graph_feed`
picks by the served input dtype). Why not send whole frames: ~0.7 MB for 640x360 RGB, more bytes per frame,
and the affine warps would run on the GPU box, whose time is the expensive resource; the decoding is a few
microseconds of numpy. Keeping codecs client-side also means one implementation, tested once, behind every
backend.

The pipeline is synchronous and keeps several 2D requests in flight from worker threads, so the backend
owns an asyncio loop in a helper thread, running one ``tritonclient.grpc.aio`` client; the blocking
methods submit coroutines to it. The pose-backend calls (detect, pose2d, lift) travel over one long-lived
bidirectional gRPC stream (``ModelStreamInfer``, :class:`_InferStream`): requests from every worker thread
go in as they come, responses are matched back by request id, and Triton's dynamic batcher merges the
requests in flight. A stream error cannot be tied to one request (Triton sends none with it), so it fails
every request then in flight and the next request opens a new stream; errors there mean the server is in
trouble, because the codecs only send well-formed tensors. The generic :meth:`TritonBackend.infer` family
uses unary calls, where each request succeeds or fails alone.

tritonclient and gRPC errors become :mod:`services.errors` in one place, :func:`translate_error`: an
unreachable server is :class:`~services.errors.ServiceUnavailableError`, a request the server rejects or
fails is :class:`~services.errors.InferenceError` naming the model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from services.errors import GaitwayError, InferenceError, ModelError, ServiceUnavailableError
from services.pose.backends import FloatArray, ModelSet, make_lifter_codec
from services.pose.detect import rtmdet_decode, rtmdet_preprocess
from services.pose.families import FAMILIES, get_family
from services.pose.pose2d import Pose2DCodec, graph_feed, make_codec

log = logging.getLogger(__name__)
T = TypeVar("T")
Tensors = Mapping[str, NDArray[Any]]

#: Triton model name per model family (the registry's): the same names in the GPU and CPU repositories.
TRITON_MODEL_NAMES = {f.name: f.triton_model for f in FAMILIES.values()}


def triton_model_name(family: str) -> str:
    return get_family(family).triton_model


# --- errors --------------------------------------------------------------------------------------------
_UNREACHABLE = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"}
#: what Triton answers for a model whose python-backend stub process is gone
_DEAD_STUB = re.compile(r"Stub process '[^']*' is not healthy")


def translate_error(exc: BaseException, *, url: str, model: str = "") -> GaitwayError:
    """The one place where tritonclient / gRPC / socket errors become Gaitway errors."""
    if isinstance(exc, GaitwayError):
        return exc
    what = f"Triton model {model!r}" if model else "Triton"
    if isinstance(exc, InferenceServerException):
        status, message = str(exc.status() or ""), str(exc.message() or exc)
    elif isinstance(exc, grpc.RpcError):
        status, message = str(exc.code()), str(exc.details())
    elif isinstance(exc, OSError | TimeoutError | asyncio.TimeoutError):
        status, message = "StatusCode.UNAVAILABLE", str(exc) or type(exc).__name__
    else:
        return InferenceError(f"{what} failed", detail=f"{what} at {url}: {type(exc).__name__}: {exc}")
    # a python-backend stub that died (the server being killed, or crashing) is the server unable to serve
    # the model, not a bad request: an outage, like an unreachable server
    if status in _UNREACHABLE or _DEAD_STUB.search(message):
        return ServiceUnavailableError(
            "the inference server (Triton) is unreachable",
            dependency="triton",
            detail=f"Triton at {url}: {status}: {message}",
        )
    if status == "StatusCode.NOT_FOUND" or "is not found" in message or "unknown model" in message:
        return ModelError(f"{what} is not served", detail=f"{what} at {url}: {message}")
    # Triton's reason (datatype, shape...) helps the caller; the edges strip any path or address from it
    return InferenceError(
        f"{what} rejected the request: {message[:300]}", detail=f"{what} at {url}: {message}"
    )


# --- launcher ------------------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind port 0 and ask)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pytriton_home() -> Path:
    """The ``tritonserver`` folder of the installed ``nvidia-pytriton`` wheel."""
    home = Path(sysconfig.get_paths()["purelib"]) / "pytriton" / "tritonserver"
    if not (home / "bin" / "tritonserver").is_file():
        raise ServiceUnavailableError(
            f"no tritonserver binary at {home}/bin: install nvidia-pytriton==0.7.0 into this environment"
        )
    return home


class TritonServer:
    """A local ``tritonserver`` (CPU, python backend) for one model repository, as a context manager.

    Ports default to free ones. ``startup_timeout_s`` bounds model loading; on failure the error carries
    the server log's tail. The log is kept in the work folder (``log_path``) until :meth:`stop`.
    """

    def __init__(
        self,
        repository: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.log_path: Path | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def _prepare(self, workdir: Path) -> tuple[list[str], dict[str, str]]:
        home = pytriton_home()
        backends = workdir / "backends"
        shutil.copytree(home / "backends", backends)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = home / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServiceUnavailableError(f"nvidia-pytriton has no python backend stub for Python {version}")
        shutil.copy2(stub, backends / "python" / stub.name)
        (workdir / "cache").mkdir()
        libs = [str(sysconfig.get_config_var("LIBDIR")), str(home.parent.parent / "nvidia_pytriton.libs")]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        # the stub runs `python3` from PATH: this interpreter's, so model.py sees numpy<2 and onnxruntime
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        cmd = [
            str(home / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={workdir / 'cache'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
        ]
        return cmd, env

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> TritonServer:
        if not self.repository.is_dir():
            raise ModelError(f"Triton model repository {self.repository} does not exist")
        self._workdir = Path(tempfile.mkdtemp(prefix="gaitway-triton-"))
        self.log_path = self._workdir / "tritonserver.log"
        cmd, env = self._prepare(self._workdir)
        start = time.perf_counter()
        with self.log_path.open("wb") as logf:
            self._proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
        deadline = start + self.startup_timeout_s
        while not self.is_ready():
            if self._proc.poll() is not None or time.perf_counter() > deadline:
                why = (
                    f"exited with status {self._proc.returncode}"
                    if self._proc.poll() is not None
                    else f"not ready after {self.startup_timeout_s:.0f} s"
                )
                tail = self.log_tail()
                self.stop()
                raise ServiceUnavailableError(f"tritonserver {why}; log tail:\n{tail}")
            time.sleep(0.1)
        self.startup_s = time.perf_counter() - start
        log.info(
            "tritonserver ready in %.1f s: gRPC %s, HTTP %s", self.startup_s, self.grpc_url, self.http_url
        )
        return self

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout_s``, then SIGKILL; removes the work folder."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self) -> int:
        """Block until the server exits on its own; its exit status."""
        assert self._proc is not None, "not started"
        return self._proc.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- client backend ------------------------------------------------------------------------------------
def _grpc_target(url: str) -> str:
    for scheme in ("grpc://", "http://"):
        if url.startswith(scheme):
            return url[len(scheme) :]
    return url


class _InferStream:
    """One ``ModelStreamInfer`` call shared by many concurrent requests (runs on the backend's loop)."""

    def __init__(self, client: Any, *, url: str, timeout_s: float) -> None:
        self._client = client
        self._url = url
        self._timeout_s = timeout_s
        self._ids = itertools.count()
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._pending: dict[str, tuple[asyncio.Future[list[NDArray[Any]]], list[str]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def infer(self, model: str, inputs: Tensors, outputs: Sequence[str]) -> list[NDArray[Any]]:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        rid = f"p{next(self._ids)}"
        future: asyncio.Future[list[NDArray[Any]]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (future, list(outputs))
        ins, outs = TritonBackend._request(inputs, outputs)
        self._queue.put_nowait(
            {"model_name": model, "inputs": ins, "outputs": outs or None, "request_id": rid}
        )
        try:
            return await asyncio.wait_for(future, timeout=self._timeout_s)
        finally:
            self._pending.pop(rid, None)

    async def _requests(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            async for result, err in self._client.stream_infer(self._requests()):
                if err is not None:
                    error = err
                    break
                response = result.get_response()
                entry = self._pending.get(response.id)
                if entry is None or entry[0].done():
                    continue  # timed out meanwhile
                future, outputs = entry
                names = outputs or [o.name for o in response.outputs]
                future.set_result([result.as_numpy(n) for n in names])
        except (InferenceServerException, grpc.RpcError) as exc:
            error = exc
        except asyncio.CancelledError:
            error = ServiceUnavailableError(
                "the inference stream to Triton was closed",
                dependency="triton",
                detail=f"stream to Triton at {self._url} closed",
            )
        if error is None:
            error = ServiceUnavailableError(
                "Triton ended the inference stream",
                dependency="triton",
                detail=f"Triton at {self._url} ended the stream",
            )
        for future, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()


class TritonBackend:
    """All three roles on a Triton server over gRPC; codecs run locally (see the module docstring).

    Thread-safe: every call is a coroutine on the backend's own event loop. ``timeout_s`` bounds each
    request. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, models: ModelSet, *, url: str, timeout_s: float = 60.0) -> None:
        self.models = models
        self.url = _grpc_target(url)
        self.timeout_s = timeout_s
        det = models.detector.manifest
        self._det_input = det.input_size
        p = models.pose2d.manifest
        self.pose_codec: Pose2DCodec = make_codec(p.family, skeleton=p.skeleton, input_wh=p.input_size)
        self._pose_wire = get_family(p.family).wire
        self.lifter_codec = make_lifter_codec(
            models.lifter.manifest.family, root_relative=models.lifter.manifest.root_relative
        )
        self.detector_name = triton_model_name(det.family)
        self.pose2d_name = triton_model_name(p.family)
        self.lifter_name = triton_model_name(models.lifter.manifest.family)
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="triton-client", daemon=True)
        self._thread.start()
        self._client: Any = None
        self._stream_rpc: _InferStream | None = None
        #: served model -> (input names, output names, max_batch_size, input dtype names)
        self._io: dict[str, tuple[list[str], list[str], int, list[str]]] = {}
        try:
            self._client = self._call(self._connect())
            self._io = {name: self._call(self._io_of(name)) for name in self.model_names}
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str, models: ModelSet, *, timeout_s: float = 60.0) -> TritonBackend:
        """Connect to Triton at ``url`` (``host:port`` of its gRPC endpoint) and check that it serves
        ``models``: every model ready, and where a config pins a ``sha256`` parameter, the same file."""
        return cls(models, url=url, timeout_s=timeout_s)

    @property
    def model_names(self) -> tuple[str, str, str]:
        return (self.detector_name, self.pose2d_name, self.lifter_name)

    def served_inputs(self, model: str) -> list[tuple[str, str]]:
        """(name, numpy dtype name) of each input of a model this backend uses, as the server declares it."""
        names, _, _, dtypes = self._io[model]
        return list(zip(names, dtypes, strict=True))

    # -- event loop plumbing
    def _call(self, coro: Coroutine[Any, Any, T], model: str = "") -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=self.timeout_s + 5)
        except BaseException as exc:
            future.cancel()
            raise translate_error(exc, url=self.url, model=model) from exc

    async def _connect(self) -> Any:
        client = grpcclient.InferenceServerClient(self.url)
        try:
            ready = await client.is_server_ready(client_timeout=self.timeout_s)
        except BaseException:
            await client.close()
            raise
        if not ready:
            await client.close()
            raise ServiceUnavailableError(
                "the inference server (Triton) is up but not ready",
                dependency="triton",
                detail=f"Triton at {self.url} not ready",
            )
        return client

    async def _io_of(self, name: str) -> tuple[list[str], list[str], int, list[str]]:
        """(input names, output names, max_batch_size, input dtype names) of a served model; checks
        readiness and sha256."""
        try:
            ready = await self._client.is_model_ready(name, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise translate_error(exc, url=self.url, model=name) from exc
        if not ready:
            raise ModelError(f"Triton at {self.url} does not serve a ready model {name!r}")
        cfg = (await self._client.get_model_config(name, as_json=True, client_timeout=self.timeout_s))[
            "config"
        ]
        want = {m.manifest.family: m for m in (self.models.detector, self.models.pose2d, self.models.lifter)}
        served = cfg.get("parameters", {}).get("sha256", {}).get("string_value", "")
        expected = next(m for f, m in want.items() if triton_model_name(f) == name)
        if served and served != expected.sha256:
            raise ModelError(
                f"Triton model {name!r} at {self.url} serves a different file than {expected.manifest.name} "
                f"(sha256 {served[:12]}... vs {expected.sha256[:12]}...)"
            )
        return (
            [t["name"] for t in cfg["input"]],
            [t["name"] for t in cfg["output"]],
            int(cfg.get("max_batch_size", 0)),
            [np.dtype(triton_to_np_dtype(t["data_type"].removeprefix("TYPE_"))).name for t in cfg["input"]],
        )

    @staticmethod
    def _request(inputs: Tensors, outputs: Sequence[str]) -> tuple[list[Any], list[Any]]:
        ins = []
        for name, x in inputs.items():
            arr = np.ascontiguousarray(x)
            t = grpcclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            t.set_data_from_numpy(arr)
            ins.append(t)
        return ins, [grpcclient.InferRequestedOutput(o) for o in outputs]

    async def _infer(self, model: str, inputs: Tensors) -> list[NDArray[Any]]:
        outputs = self._io[model][1] if model in self._io else []
        ins, outs = self._request(inputs, outputs)
        try:
            result = await self._client.infer(model, ins, outputs=outs or None, client_timeout=self.timeout_s)
        except (InferenceServerException, grpc.RpcError) as exc:
            raise translate_error(exc, url=self.url, model=model) from exc
        names = outputs or [o.name for o in result.get_response().outputs]
        return [result.as_numpy(n) for n in names]

    async def _infer_many(self, model: str, batches: Sequence[Tensors]) -> list[list[NDArray[Any]]]:
        return list(await asyncio.gather(*(self._infer(model, b) for b in batches)))

    async def _infer_each(
        self, model: str, batches: Sequence[Tensors]
    ) -> list[list[NDArray[Any]] | GaitwayError]:
        done = await asyncio.gather(*(self._infer(model, b) for b in batches), return_exceptions=True)
        return [
            translate_error(r, url=self.url, model=model) if isinstance(r, BaseException) else r for r in done
        ]

    # -- generic requests
    def infer(self, model: str, inputs: Tensors) -> list[NDArray[Any]]:
        """One request; outputs in the model config's order. Blocking, thread-safe."""
        return self._call(self._infer(model, inputs), model)

    def infer_many(self, model: str, batches: Sequence[Tensors]) -> list[list[NDArray[Any]]]:
        """All requests in flight at once (the dynamic batcher may merge them); results in order."""
        return self._call(self._infer_many(model, batches), model)

    def infer_each(self, model: str, batches: Sequence[Tensors]) -> list[list[NDArray[Any]] | GaitwayError]:
        """Like :meth:`infer_many`, but each request succeeds or fails alone: its outputs or its error."""
        return self._call(self._infer_each(model, batches), model)

    def stream(self, model: str, batches: Sequence[Tensors]) -> list[list[NDArray[Any]]]:
        """Send ``batches`` over one bidirectional gRPC stream (``ModelStreamInfer``); results in order.
        The first failed request raises (translated), after every response has arrived."""
        return self._call(self._stream(model, batches), model)

    async def _stream(self, model: str, batches: Sequence[Tensors]) -> list[list[NDArray[Any]]]:
        outputs = self._io[model][1] if model in self._io else []
        ids = [f"s{next(self._ids)}" for _ in batches]

        async def requests() -> AsyncIterator[dict[str, Any]]:
            for rid, b in zip(ids, batches, strict=True):
                ins, outs = self._request(b, outputs)
                yield {"model_name": model, "inputs": ins, "outputs": outs or None, "request_id": rid}

        results: dict[str, list[NDArray[Any]]] = {}
        errors: list[BaseException] = []
        responses = self._client.stream_infer(requests(), stream_timeout=self.timeout_s)
        async for result, error in responses:
            if error is not None:
                errors.append(error)
            else:
                rid = result.get_response().id
                names = outputs or [o.name for o in result.get_response().outputs]
                results[rid] = [result.as_numpy(n) for n in names]
            if len(results) + len(errors) == len(batches):
                responses.cancel()
                break
        if errors:
            raise translate_error(errors[0], url=self.url, model=model)
        return [results[rid] for rid in ids]

    async def _streamed(self, model: str, batches: Sequence[Tensors]) -> list[list[NDArray[Any]]]:
        if self._stream_rpc is None:
            self._stream_rpc = _InferStream(self._client, url=self.url, timeout_s=self.timeout_s)
        outputs = self._io[model][1]
        try:
            return list(await asyncio.gather(*(self._stream_rpc.infer(model, b, outputs) for b in batches)))
        except (InferenceServerException, grpc.RpcError) as exc:
            raise translate_error(exc, url=self.url, model=model) from exc

    def _batched(self, model: str, name: str, x: NDArray[Any], step: int | None) -> list[NDArray[Any]]:
        """Run ``x`` in chunks of at most the model's max batch size, all chunks in flight at once over
        the shared inference stream."""
        limit = self._io[model][2] or 1
        step = min(step or limit, limit)
        chunks = [{name: x[i : i + step]} for i in range(0, len(x), step)]
        outs = self._call(self._streamed(model, chunks), model)
        return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]

    # -- PoseBackend
    def detect(self, image: NDArray[np.uint8], *, score_threshold: float) -> FloatArray:
        x, letterbox = rtmdet_preprocess(image, input_wh=self._det_input)
        inputs = {self._io[self.detector_name][0][0]: x}
        dets, labels = self._call(self._streamed(self.detector_name, [inputs]), self.detector_name)[0]
        return rtmdet_decode(dets[0], labels[0], letterbox, score_threshold=score_threshold)

    def pose2d(self, image: NDArray[np.uint8], boxes: FloatArray) -> FloatArray:
        crops_u8, crops = self.pose_codec.preprocess(image, boxes)
        if len(crops_u8) == 0:
            return np.zeros((0, self.pose_codec.skeleton.num_joints, 3))
        names, _, _, dtypes = self._io[self.pose2d_name]
        x = graph_feed(crops_u8, self._pose_wire, input_dtype=dtypes[0])
        outs = self._batched(self.pose2d_name, names[0], x, self.pose_codec.max_batch)
        return self.pose_codec.postprocess(outs, crops)

    def lift(self, kps2d_h36m: FloatArray, *, image_wh: tuple[int, int]) -> FloatArray:
        name = self._io[self.lifter_name][0][0]

        def run(batch: NDArray[np.float32]) -> NDArray[np.float32]:
            return np.asarray(self._batched(self.lifter_name, name, batch, None)[0], np.float32)

        return self.lifter_codec.lift(kps2d_h36m, image_wh=image_wh, run=run)

    # -- lifetime
    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._stream_rpc is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stream_rpc.close(), self._loop).result(timeout=10)
            self._stream_rpc = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=5)
            self._client = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TritonBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- command line --------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.pose.triton", description="local Triton server")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run tritonserver on a model repository until interrupted")
    s.add_argument("--repository", type=Path, required=True, help="model repository (export.repository)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--startup-timeout-s", type=float, default=120.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = TritonServer(
        args.repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        startup_timeout_s=args.startup_timeout_s,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with server:
            log.info("log: %s (Ctrl-C stops)", server.log_path)
            while not stop.wait(0.5):
                if not server.running:
                    log.error("tritonserver exited; log tail:\n%s", server.log_tail())
                    return 1
    except KeyboardInterrupt:
        pass
    except GaitwayError as exc:
        log.error("triton: error [%s]: %s", exc.code, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
