"""``gaitway serve``: the HTTP and gRPC APIs in one process, sharing one job manager.

Both servers run on one asyncio loop; analyses run in worker threads. SIGTERM/SIGINT: the health checks
turn NOT_SERVING, both servers stop accepting and finish the requests in flight, and the job manager drains
(:meth:`gateway.jobs.JobManager.stop`: running jobs get ``shutdown_grace_s`` to finish, then go back to the
queue with their checkpoints), releasing every lease so another replica carries on at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from gateway.jobs import build_manager
from services.settings import Settings

log = logging.getLogger("gaitway.server")
T = TypeVar("T")


@dataclass
class Running:
    """A started gateway: its bound ports and how to stop it."""

    http_port: int
    grpc_port: int
    stop: asyncio.Event


async def serve(settings: Settings, *, started: asyncio.Future[Running] | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``started.result().stop`` is set)."""
    from gateway.grpc_api import create_server, set_serving
    from gateway.http import create_app

    manager = build_manager(settings)
    await manager.start()
    grpc_server, grpc_port = create_server(manager, port=settings.grpc_port, host=settings.http_host)
    await grpc_server.start()
    app = create_app(settings, manager=manager)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    http = uvicorn.Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    http_task = asyncio.create_task(http.serve())
    while not http.started:
        if http_task.done():
            await http_task  # raises the bind error
            raise RuntimeError("HTTP server exited during start-up")
        await asyncio.sleep(0.05)
    http_port = http.servers[0].sockets[0].getsockname()[1]
    log.info("gateway listening", extra={"http_port": http_port, "grpc_port": grpc_port})
    if started is not None:
        started.set_result(Running(http_port=http_port, grpc_port=grpc_port, stop=stop))

    manager.on_readiness.append(
        lambda checks: set_serving(grpc_server, all(v == "ok" for v in checks.values()))
    )
    try:
        await stop.wait()
    finally:
        log.info("gateway stopping")
        set_serving(grpc_server, False)  # health checks see NOT_SERVING while connections drain
        http.should_exit = True
        draining = asyncio.create_task(manager.stop())
        await grpc_server.stop(grace=5.0)
        with contextlib.suppress(asyncio.CancelledError):
            await http_task
        await draining
        manager.store.close()


class GrpcGatewayThread:
    """The gRPC server and a job manager on their own event loop in a background thread: for tests,
    benchmarks and embedding in a synchronous program. ``port`` is the bound port."""

    def __init__(self, settings: Settings, *, start_timeout_s: float = 120.0) -> None:
        self.settings = settings
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="grpc-gateway")
        self._thread.start()
        if not self._ready.wait(start_timeout_s):
            raise TimeoutError(f"gateway not started within {start_timeout_s:.0f} s")
        if self._error is not None:
            raise self._error

    async def _main(self) -> None:
        from gateway.grpc_api import create_server

        try:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.manager = build_manager(self.settings)
            await self.manager.start()
            self.server, self.port = create_server(self.manager, port=self.settings.grpc_port)
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop(None)
            await self.manager.stop()
            self.manager.store.close()

    def run(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 60) -> T:
        """Run a coroutine on the gateway's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


def run(settings: Settings) -> int:
    asyncio.run(serve(settings))
    return 0
