"""The gateway's gRPC API (``gaitway.v1.Analysis``, see ``gateway/proto/gaitway/v1/gaitway.proto``).

:func:`create_server` builds a ``grpc.aio`` server with the Analysis service, the standard health service
(``grpc.health.v1.Health``: "" and "gaitway.v1.Analysis"; :func:`set_serving` flips them) and server
reflection. Every Analysis call goes through one interceptor that

* takes the request id from ``x-request-id`` metadata (or makes one), sets
  :data:`gateway.telemetry.request_id` for the call's logs and returns it as trailing metadata;
* authenticates the API key (``x-api-key`` / ``authorization: Bearer``) and applies its rate limit;
* counts the call (``grpc_requests{method,code}``) and times it (``grpc_latency{method}``);
* ends a call that raised a :class:`~services.errors.GaitwayError` with the status of
  :data:`services.errors.ERROR_TABLE` and trailing metadata ``error-code`` (and ``retry-after-s`` for
  :class:`~services.errors.BusyError`), and any other exception with INTERNAL and a generic message
  naming the request id (the exception is logged with it), never UNKNOWN.

Uploads (``AnalyzeVideo``) and results go through :class:`gateway.jobs.JobManager`, like the HTTP API.
``StreamFrames`` runs a :class:`gateway.live.LiveSession` per call on its own worker thread, with a queue
of at most ``settings.stream_max_inflight_frames`` frames between the network reader and that worker;
when it is full the oldest waiting frame is dropped (and reported) for the newest. Window analyses (the
steps) run on a second thread of the call, so frames go on being answered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import re
import time
import uuid
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.auth import secret_from_headers
from gateway.core import AnalysisSpec, RunnerInfo
from gateway.jobs import JobManager
from gateway.live import LiveFrame, LiveSession, decode_image
from gateway.proto.gaitway.v1 import gaitway_pb2 as pb
from gateway.proto.gaitway.v1 import gaitway_pb2_grpc as pb_grpc
from gateway.records import ApiKey, Job, JobState
from gateway.telemetry import Telemetry, request_id
from services.errors import (
    BadRequestError,
    BusyError,
    GaitwayError,
    InputError,
    public_message,
    status_of,
)
from services.kinematics.schema import StepOut
from services.plain import to_plain

log = logging.getLogger("gaitway.grpc")

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SERVICE_NAME",
    "UPLOAD_CHUNK_BYTES",
    "AnalysisServicer",
    "HealthService",
    "create_server",
    "set_serving",
    "status_message",
]

#: the full name of the Analysis service
SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["Analysis"].full_name
#: the largest message the server accepts (gRPC answers RESOURCE_EXHAUSTED above it)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: the chunk size advised for AnalyzeVideo uploads
UPLOAD_CHUNK_BYTES = 1024 * 1024
#: StreamFrames: stream time between two step computations, and the window they look at (seconds)
LIVE_METRICS_EVERY_S = 1.0
LIVE_WINDOW_S = 10.0

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_STATES = {
    JobState.QUEUED: pb.ANALYSIS_STATE_QUEUED,
    JobState.RUNNING: pb.ANALYSIS_STATE_RUNNING,
    JobState.DONE: pb.ANALYSIS_STATE_DONE,
    JobState.FAILED: pb.ANALYSIS_STATE_FAILED,
}

#: the API key of the current call, set by the interceptor before the servicer runs
_caller: contextvars.ContextVar[ApiKey] = contextvars.ContextVar("grpc_caller")

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------------
# messages


def _struct(doc: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(to_plain(doc))
    return out


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def status_message(job: Job, *, created: bool = False) -> pb.AnalysisStatus:
    """The AnalysisStatus of ``job`` (without its result)."""
    msg = pb.AnalysisStatus(
        id=job.id,
        state=_STATES[job.state],
        stage=job.stage,
        progress=job.progress,
        filename=job.filename,
        upload_bytes=job.upload_bytes,
        attempts=job.attempts,
        created=created,
        created_at=_timestamp(job.created_at),
        updated_at=_timestamp(job.updated_at),
    )
    if job.error_code:
        msg.error.code = job.error_code
        msg.error.message = job.error_message or ""
    if job.started_at is not None:
        msg.started_at.CopyFrom(_timestamp(job.started_at))
    if job.finished_at is not None:
        msg.finished_at.CopyFrom(_timestamp(job.finished_at))
    if job.summary is not None:
        msg.summary.CopyFrom(_struct(job.summary))
    return msg


def _runner(msg: pb.RunnerInfo) -> RunnerInfo:
    return RunnerInfo(
        height_m=msg.height_m if msg.HasField("height_m") else None,
        treadmill_speed_mps=msg.treadmill_speed_mps if msg.HasField("treadmill_speed_mps") else None,
        slowmo=msg.slowmo if msg.HasField("slowmo") else None,
    )


def _spec(preset: str, runner: pb.RunnerInfo) -> AnalysisSpec:
    """The AnalysisSpec of a request (the job manager checks the preset is served)."""
    return AnalysisSpec(runner=_runner(runner), preset=preset or None)


def _keypoints_message(seq: int, frame: LiveFrame, latency_ms: float, inference_ms: float) -> pb.FrameOut:
    out = pb.FrameKeypoints(
        seq=seq, t=frame.t, skeleton=frame.skeleton, latency_ms=latency_ms, inference_ms=inference_ms
    )
    if frame.keypoints is not None:
        out.keypoints.extend(
            pb.Keypoint(x=float(x), y=float(y), score=float(s)) for x, y, s in frame.keypoints.tolist()
        )
    if frame.box is not None:
        x0, y0, x1, y1 = (float(v) for v in frame.box.tolist())
        out.box.CopyFrom(pb.Box(x0=x0, y0=y0, x1=x1, y1=y1))
    return pb.FrameOut(keypoints=out)


def _step_message(step: StepOut) -> pb.FrameOut:
    out = pb.Step(
        side=step.side,
        strike_t=step.strike.t,
        flags=step.flags,
        sources=step.sources,
        view=step.view,
        foot_strike=step.foot_strike or "",
    )
    if step.toe_off is not None:
        out.toe_off_t = step.toe_off.t
    if step.yaw_deg is not None:
        out.yaw_deg = step.yaw_deg
    for name, value in step.metrics.items():
        if value is not None and math.isfinite(value):
            out.metrics[name] = value
    for name, flags in step.excluded.items():
        out.excluded[name].flags.extend(flags)
    return pb.FrameOut(step=out)


def _dropped_message(seq: int, reason: str, message: str) -> pb.FrameOut:
    return pb.FrameOut(dropped=pb.Dropped(seq=seq, reason=reason, message=message))


# --------------------------------------------------------------------------------------------------------
# the Analysis service


class AnalysisServicer(pb_grpc.AnalysisServicer):
    """The four calls of ``gaitway.v1.Analysis``. Each runs behind :class:`_CallInterceptor`, which has
    authenticated the caller (:data:`_caller`) and turns the errors raised here into statuses."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def AnalyzeVideo(
        self, request_iterator: AsyncIterator[pb.AnalyzeVideoRequest], context: grpc.aio.ServicerContext
    ) -> pb.AnalysisStatus:
        owner = _caller.get()
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("payload") != "metadata":
            raise BadRequestError("the first AnalyzeVideo message must carry metadata; chunks follow it")
        meta = first.metadata
        spec = _spec(meta.preset, meta.runner)

        async def chunks() -> AsyncIterator[bytes]:
            async for msg in requests:
                kind = msg.WhichOneof("payload")
                if kind == "chunk":
                    if msg.chunk:
                        yield msg.chunk
                elif kind == "metadata":
                    raise BadRequestError("metadata is sent once, in the first AnalyzeVideo message")

        job, created = await self.manager.submit(
            owner=owner,
            chunks=chunks(),
            filename=meta.filename,
            spec=spec,
            idempotency_key=meta.idempotency_key or None,
            content_type=meta.content_type or None,
        )
        return status_message(job, created=created)

    async def GetAnalysis(
        self, request: pb.GetAnalysisRequest, context: grpc.aio.ServicerContext
    ) -> pb.AnalysisStatus:
        job = await self.manager.get(request.id, owner=_caller.get())
        return await self._status(job, with_result=request.include_result)

    async def WatchAnalysis(
        self, request: pb.WatchAnalysisRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AnalysisStatus]:
        updates = self.manager.watch(request.id, owner=_caller.get())
        try:
            async for job in updates:
                yield await self._status(job, with_result=True)
        finally:
            close = getattr(updates, "aclose", None)
            if close is not None:
                await close()

    async def StreamFrames(
        self, request_iterator: AsyncIterator[pb.FrameIn], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.FrameOut]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("payload") != "config":
            raise BadRequestError("the first StreamFrames message must carry config; frames follow it")
        spec = _spec(first.config.preset, first.config.runner)
        await self.manager.check_preset(spec.preset)
        stream = LiveStream(
            requests,
            partial(
                self.manager.live_session, spec, metrics_every_s=LIVE_METRICS_EVERY_S, window_s=LIVE_WINDOW_S
            ),
            max_waiting=self.manager.settings.stream_max_inflight_frames,
            telemetry=self.manager.telemetry,
        )
        async with self.manager.live_slot(_caller.get()), contextlib.aclosing(stream.run()) as answers:
            async for answer in answers:
                yield answer

    async def _status(self, job: Job, *, with_result: bool) -> pb.AnalysisStatus:
        msg = status_message(job)
        if with_result and job.state is JobState.DONE:
            doc = await self.manager.result_document(job.id, owner=_caller.get())
            msg.result_json = json.dumps(doc, separators=(",", ":"))
        return msg


@dataclass(frozen=True)
class _Waiting:
    seq: int
    t: float
    image: bytes
    received: float  # time.perf_counter() when read off the network


class LiveStream:
    """One StreamFrames call: a reader task moves frames from the network into a bounded queue; the
    answering loop (:meth:`run`) analyses them one at a time on a private worker thread, so the event loop
    never waits on inference and the session's frames stay in order. Window analyses (steps, every
    ``metrics_every_s`` of stream time) run on a second private thread, one at a time, while frames go on
    being answered; their steps are sent as soon as they are known.

    Answers come in ``seq`` order: when the queue is full the oldest waiting frame is dropped, so every
    drop reported before a frame's keypoints concerns an earlier frame, and every drop reported after
    them a later one.
    """

    def __init__(
        self,
        requests: AsyncIterator[pb.FrameIn],
        open_session: Callable[[], LiveSession],
        *,
        max_waiting: int,
        telemetry: Telemetry,
    ) -> None:
        self._requests = requests
        self._open_session = open_session
        self._max_waiting = max_waiting
        self._telemetry = telemetry
        self._waiting: deque[_Waiting] = deque()
        self._dropped: list[pb.FrameOut] = []
        self._wakeup = asyncio.Event()
        self._reader_done = False
        self._reader_error: BaseException | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gaitway-live")
        self._steps_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gaitway-live-steps")
        self._analysing: asyncio.Future[list[StepOut]] | None = None  # the window analysis running
        self.received = 0
        self.analysed = 0
        self.dropped = 0
        self.steps = 0

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on this stream's worker thread, in the caller's context (request id for logs)."""
        return await self._submit(self._executor, fn)

    def _submit(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> asyncio.Future[T]:
        ctx = contextvars.copy_context()
        return asyncio.get_running_loop().run_in_executor(executor, ctx.run, fn)

    def _analyse_window(self, session: LiveSession) -> None:
        """Start the window analysis that is due, unless one is running (call between frames)."""
        if self._analysing is not None:
            return
        window = session.take_window()
        if window is not None:
            self._analysing = self._submit(self._steps_executor, partial(session.steps_of, window))
            self._analysing.add_done_callback(lambda _: self._wakeup.set())

    def _step_messages(self, steps: list[StepOut]) -> list[pb.FrameOut]:
        self.steps += len(steps)
        return [_step_message(step) for step in steps]

    async def _read(self) -> None:
        try:
            async for msg in self._requests:
                kind = msg.WhichOneof("payload")
                if kind == "config":
                    raise BadRequestError("config is sent once, in the first StreamFrames message")
                if kind != "frame":
                    continue
                self.received += 1
                if len(self._waiting) >= self._max_waiting:
                    old = self._waiting.popleft()
                    self.dropped += 1
                    self._telemetry.stream_frames_dropped.inc()
                    self._dropped.append(
                        _dropped_message(
                            old.seq, "backpressure", "frames arrive faster than they are analysed"
                        )
                    )
                frame = msg.frame
                self._waiting.append(_Waiting(frame.seq, frame.t, frame.image, time.perf_counter()))
                self._wakeup.set()
        except Exception as exc:  # handed to the answering loop, which ends the call with it
            self._reader_error = exc
        finally:
            self._reader_done = True
            self._wakeup.set()

    async def run(self) -> AsyncGenerator[pb.FrameOut, None]:
        """The answers, ending with the summary once the client has half-closed and every waiting frame
        is answered. Raises the error that ends the call (a bad message, a model that cannot load...)."""
        session: LiveSession | None = None
        reader: asyncio.Task[None] | None = None
        try:
            session = await self._in_worker(self._open_session)
            reader = asyncio.create_task(self._read())
            while True:
                if self._reader_error is not None:
                    raise self._reader_error
                while self._dropped:
                    yield self._dropped.pop(0)
                if self._analysing is not None and self._analysing.done():
                    analysed, self._analysing = self._analysing, None
                    for message in self._step_messages(analysed.result()):
                        yield message
                if not self._waiting:
                    if self._reader_done:
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                item = self._waiting.popleft()
                try:
                    frame, inference_ms = await self._in_worker(partial(_analyse, session, item))
                except InputError as exc:  # this frame only: a bad image, a time that goes back...
                    self.dropped += 1
                    yield _dropped_message(item.seq, exc.code, str(exc))
                    continue
                self.analysed += 1
                latency_s = time.perf_counter() - item.received
                self._telemetry.stream_frame_seconds.observe(latency_s)
                yield _keypoints_message(item.seq, frame, latency_s * 1000, inference_ms)
                self._analyse_window(session)  # every metrics_every_s of stream, beside the frames
            if self._analysing is not None:
                analysed, self._analysing = self._analysing, None
                for message in self._step_messages(await analysed):
                    yield message
            last = session.take_window(final=True)
            if last is not None:
                steps = await self._submit(self._steps_executor, partial(session.steps_of, last))
                for message in self._step_messages(steps):
                    yield message
            summary = await self._in_worker(session.summary)
            yield pb.FrameOut(
                summary=pb.StreamSummary(
                    frames_received=self.received,
                    frames_analysed=self.analysed,
                    frames_dropped=self.dropped,
                    steps=self.steps,
                    summary=_struct(summary),
                )
            )
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            try:
                if self._analysing is not None:  # the session closes after its window analysis
                    with contextlib.suppress(Exception):
                        await self._analysing
                if session is not None:  # runs after a frame still in analysis on the worker thread
                    await self._in_worker(session.close)
            finally:
                self._executor.shutdown(wait=False)
                self._steps_executor.shutdown(wait=False)


def _analyse(session: LiveSession, item: _Waiting) -> tuple[LiveFrame, float]:
    start = time.perf_counter()
    frame = session.push(item.t, decode_image(item.image))
    return frame, (time.perf_counter() - start) * 1000


# --------------------------------------------------------------------------------------------------------
# the interceptor: request id, authentication, telemetry, errors


class _Call:
    """Bookkeeping of one intercepted call."""

    def __init__(self, interceptor: _CallInterceptor, method: str, context: grpc.aio.ServicerContext) -> None:
        self.manager = interceptor.manager
        self.method = method
        self.context = context
        self.start = time.perf_counter()
        self.recorded = False
        metadata = list(context.invocation_metadata() or ())
        given = next((str(v) for k, v in metadata if k.lower() == "x-request-id"), "")
        self.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request_id.set(self.request_id)
        self.metadata = [(str(k), v) for k, v in metadata if isinstance(v, str)]
        context.set_trailing_metadata((("x-request-id", self.request_id),))

    async def authenticate(self) -> None:
        secret = secret_from_headers(self.metadata)
        client = _peer_host(self.context.peer())
        _caller.set(await asyncio.to_thread(partial(self.manager.access.check, secret, client=client)))

    def record(self, code: grpc.StatusCode) -> None:
        if self.recorded:
            return
        self.recorded = True
        telemetry = self.manager.telemetry
        telemetry.grpc_requests.labels(self.method, code.name).inc()
        telemetry.grpc_latency.labels(self.method).observe(time.perf_counter() - self.start)

    def aborted(self) -> None:
        """The servicer called ``context.abort`` itself."""
        code = self.context.code()
        self.record(code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN)

    async def fail(self, exc: Exception) -> NoReturn:
        """End the call with the status of ``exc``."""
        if isinstance(exc, GaitwayError):
            code = grpc.StatusCode[status_of(exc).grpc]
            message = public_message(exc) or exc.code
            error_code = exc.code
            if exc.detail:
                log.warning(
                    "call refused", extra={"method": self.method, "code": exc.code, "detail": exc.detail}
                )
        else:
            log.error(
                "gRPC call %s failed (request id %s)",
                self.method,
                self.request_id,
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"method": self.method},
            )
            code = grpc.StatusCode.INTERNAL
            message = f"internal error; quote request id {self.request_id} when reporting it"
            error_code = "internal"
        trailers = [("x-request-id", self.request_id), ("error-code", error_code)]
        if isinstance(exc, BusyError):
            trailers.append(("retry-after-s", f"{exc.retry_after_s:g}"))
        self.record(code)
        await self.context.abort(code, message, trailing_metadata=tuple(trailers))
        raise AssertionError("context.abort returned")  # pragma: no cover


def _peer_host(peer: str | None) -> str:
    """The client's address of a gRPC peer string ("ipv4:10.0.0.5:41234", "ipv6:[::1]:41234", "unix:...")."""
    if not peer:
        return ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit("]", 1)[0].lstrip("[")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return kind


class _CallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method of the Analysis service (health and reflection calls pass untouched)."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(f"/{SERVICE_NAME}/"):
            return handler
        method = details.method.rsplit("/", 1)[-1]
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.response_streaming:
            if handler.request_streaming:
                return grpc.stream_stream_rpc_method_handler(
                    self._streaming(method, handler.stream_stream), **codec
                )
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream), **codec
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(self._unary(method, handler.stream_unary), **codec)
        return grpc.unary_unary_rpc_method_handler(self._unary(method, handler.unary_unary), **codec)

    def _unary(
        self, method: str, behaviour: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            state = _Call(self, method, context)
            try:
                await state.authenticate()
                response = await behaviour(request, context)
            except asyncio.CancelledError:
                state.record(grpc.StatusCode.CANCELLED)
                raise
            except grpc.aio.AbortError:
                state.aborted()
                raise
            except Exception as exc:
                await state.fail(exc)
            state.record(grpc.StatusCode.OK)
            return response

        return call

    def _streaming(
        self, method: str, behaviour: Callable[[Any, grpc.aio.ServicerContext], AsyncGenerator[Any, None]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncGenerator[Any, None]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncGenerator[Any, None]:
            state = _Call(self, method, context)
            try:
                await state.authenticate()
                async with contextlib.aclosing(behaviour(request, context)) as responses:
                    async for response in responses:
                        yield response
            except (asyncio.CancelledError, GeneratorExit):
                state.record(grpc.StatusCode.CANCELLED)
                raise
            except grpc.aio.AbortError:
                state.aborted()
                raise
            except Exception as exc:
                await state.fail(exc)
            state.record(grpc.StatusCode.OK)

        return call


# --------------------------------------------------------------------------------------------------------
# health


class HealthService:
    """``grpc.health.v1.Health`` for an asyncio server, with a plain synchronous :meth:`set` (call it
    from the server's event loop)."""

    def __init__(self, services: Iterable[str]) -> None:
        self._status: dict[str, int] = {name: health_pb2.HealthCheckResponse.SERVING for name in services}
        self._watchers: set[asyncio.Queue[None]] = set()

    def set(self, service: str, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if self._status.get(service) == status:
            return
        self._status[service] = status
        for queue in self._watchers:
            if queue.empty():
                queue.put_nowait(None)

    def status(self, service: str) -> int | None:
        return self._status.get(service)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        changed: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._watchers.add(changed)
        try:
            last = None
            while True:
                status = self._status.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                if status != last:
                    last = status
                    yield health_pb2.HealthCheckResponse(status=status)
                await changed.get()
        finally:
            self._watchers.discard(changed)


# --------------------------------------------------------------------------------------------------------
# the server

_HEALTH: weakref.WeakKeyDictionary[Any, HealthService] = weakref.WeakKeyDictionary()


def create_server(
    manager: JobManager, *, port: int = 0, host: str = "127.0.0.1"
) -> tuple[grpc.aio.Server, int]:
    """A ``grpc.aio`` server with the Analysis, health and reflection services, bound (not started) to
    ``host:port`` (0 = any free port); returns it and the bound port. Call from the event loop that runs
    it, then ``await server.start()``; the caller starts and stops ``manager``."""
    server = grpc.aio.server(
        interceptors=[_CallInterceptor(manager)],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
    )
    pb_grpc.add_AnalysisServicer_to_server(AnalysisServicer(manager), server)
    health = HealthService(["", SERVICE_NAME])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    _HEALTH[server] = health
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for gRPC on {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server, bound


def set_serving(server: grpc.aio.Server, serving: bool) -> None:
    """Report the server SERVING or NOT_SERVING (overall and for gaitway.v1.Analysis) to health checks,
    e.g. NOT_SERVING while a dependency is down or before a graceful stop. Call from the server's loop."""
    health = _HEALTH[server]
    for service in ("", SERVICE_NAME):
        health.set(service, serving)
