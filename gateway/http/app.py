"""The HTTP app factory: middleware, error handlers, CORS, offline docs and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.http import ops, routes, viewer
from gateway.http.docs import install_docs
from gateway.http.errors import install_error_handlers
from gateway.http.middleware import ObserveRequests
from gateway.jobs import JobManager, build_manager
from services.settings import Settings


def _lifespan(
    settings: Settings, manager: JobManager | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Without a given manager, the app builds, starts and stops its own (store, engine, workers)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manager is not None:
            yield
            return
        own = build_manager(settings)
        await own.start()
        app.state.manager = own
        try:
            yield
        finally:
            await own.stop()
            own.store.close()

    return lifespan


def create_app(settings: Settings, *, manager: JobManager | None = None) -> FastAPI:
    """The HTTP app. ``gaitway serve`` passes the ``manager`` it shares with the gRPC server (started and
    stopped by the caller); with None, the app's lifespan builds one from ``settings``."""
    app = FastAPI(
        title="Gaitway API",
        version="1.0.0",
        summary="Running-gait analysis from a phone video: 2D/3D pose and per-step running metrics.",
        lifespan=_lifespan(settings, manager),
        docs_url=None,  # served by install_docs, without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    if manager is not None:
        app.state.manager = manager
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["x-api-key", "authorization", "idempotency-key", "content-type", "x-request-id"],
            expose_headers=["location", "retry-after", "x-request-id", "idempotent-replayed"],
        )
    app.add_middleware(ObserveRequests)  # added last: outermost, so it sees CORS answers too
    install_error_handlers(app)
    install_docs(app)
    app.include_router(routes.router)
    app.include_router(viewer.router)
    app.include_router(ops.router)
    return app
