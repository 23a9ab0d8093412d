"""Analysis jobs: admission, upload, bounded workers, retries, recovery. Shared by HTTP and gRPC.

Never losing an accepted job rests on three rules:

1. The upload is complete, checked and on disk (``uploads/<id>.video``) *before* the job row exists;
   a crash in between leaves an orphan file, never a job without its video.
2. A job row is queued, running, done or failed. At start-up every queued or running job is picked up
   again (``JobStore.unfinished``); one that has already used ``max_attempts`` ends failed with the
   code ``interrupted`` instead of looping.
3. A dependency outage (Triton, kinematics: ``ServiceUnavailableError`` / ``InferenceError``) puts the
   job back in the queue after an exponential backoff; after ``max_attempts`` it fails with that
   error's code and message.

Admission is bounded: with ``workers + queue_limit`` jobs pending, new uploads get :class:`BusyError`
(HTTP 429 / RESOURCE_EXHAUSTED with a retry hint) before a byte is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from gateway.auth import Access
from gateway.core import AnalysisSpec, Engine
from gateway.settings import GatewaySettings
from gateway.store import TERMINAL, ApiKey, Job, JobState, JobStore, new_job_id
from gateway.telemetry import Telemetry
from services.errors import (
    BusyError,
    ConflictError,
    GaitwayError,
    InferenceError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaError,
    VideoError,
)
from services.pose.ingest import check_complete

log = logging.getLogger("gaitway.jobs")


@dataclass(frozen=True)
class Artifact:
    filename: str
    media_type: str


#: artifact name -> file in the job's folder. Clients name artifacts, never paths.
ARTIFACTS: dict[str, Artifact] = {
    "poses": Artifact("poses.json", "application/json"),
    "keypoints2d": Artifact("keypoints2d.csv", "text/csv"),
    "poses3d": Artifact("poses3d.csv", "text/csv"),
    "contact_sheet": Artifact("contact_sheet.png", "image/png"),
    "metrics": Artifact("metrics.json", "application/json"),
    "steps": Artifact("steps.csv", "text/csv"),
    "xlsx": Artifact("metrics.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "angles_plot": Artifact("angles.png", "image/png"),
    "steps_plot": Artifact("steps.png", "image/png"),
    "trajectories_plot": Artifact("trajectories.png", "image/png"),
}

#: overall progress at the start and end of each stage
_STAGE_SPAN = {"pose": (0.0, 0.85), "kinematics": (0.85, 0.95), "artifacts": (0.95, 1.0)}

_VIDEO_TYPES = re.compile(r"^(video/[\w.+-]+|application/octet-stream)$")
_RETRYABLE = (ServiceUnavailableError, InferenceError)


def check_content_type(content_type: str | None) -> None:
    """Uploads must declare a video type (or be untyped bytes); the content itself is checked later."""
    if content_type is None:
        return
    base = content_type.split(";", 1)[0].strip().lower()
    if base and not _VIDEO_TYPES.match(base):
        raise UnsupportedMediaError(
            f"content type {base!r} is not a video; send video/mp4, video/quicktime..."
        )


def safe_filename(name: str | None) -> str:
    """A display name for a client's file name: last path part, printable, at most 200 characters. It is
    only ever shown back to the client; files are stored under the job id."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:200] or "video"


class JobManager:
    def __init__(
        self,
        settings: GatewaySettings,
        store: JobStore,
        engine: Engine,
        telemetry: Telemetry | None = None,
        access: Access | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.telemetry = telemetry or Telemetry()
        self.access = access or Access(settings, store)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._running: set[str] = set()
        self._events: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._durations: list[float] = []

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        self.settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        for part in self.settings.uploads_dir.glob("*.part"):
            part.unlink(missing_ok=True)  # uploads cut off by a restart were never accepted
        for job in await asyncio.to_thread(self.store.unfinished):
            self._recover(job)
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.settings.workers)]

    def _recover(self, job: Job) -> None:
        if job.state is JobState.RUNNING and job.attempts >= self.settings.max_attempts:
            self.store.mark_failed(
                job.id, "interrupted", f"the gateway stopped during each of {job.attempts} attempts"
            )
            self.telemetry.jobs_finished.labels("failed", "interrupted").inc()
            return
        if not self.upload_path(job.id).exists():
            self.store.mark_failed(job.id, "upload_missing", "the uploaded video is no longer on disk")
            return
        if job.state is JobState.RUNNING:
            self.store.requeue(job.id)
        log.info("resuming job", extra={"job_id": job.id, "attempts": job.attempts})
        self._enqueue(job.id)

    async def stop(self) -> None:
        """Stop taking jobs. A job still running stays 'running' in the store and is resumed by the next
        start (its worker thread cannot be interrupted mid-inference)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- paths -----------------------------------------------------------------------------------------

    def upload_path(self, job_id: str) -> Path:
        return self.settings.uploads_dir / f"{job_id}.video"

    def job_dir(self, job_id: str) -> Path:
        return self.settings.artifacts_dir / job_id

    # -- admission and upload --------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._pending) - len(self._running)

    def admit(self) -> None:
        """Raise BusyError when the queue is full, with a retry hint from recent job durations."""
        if len(self._pending) < self.settings.workers + self.settings.queue_limit:
            return
        recent = self._durations[-20:]
        per_job = sum(recent) / len(recent) if recent else 30.0
        wait = per_job * max(1, self.queue_depth) / self.settings.workers
        limit = self.settings.workers + self.settings.queue_limit
        raise BusyError(
            f"{len(self._pending)} analyses pending (limit {limit})",
            retry_after_s=round(min(max(wait, 1.0), 600.0), 1),
        )

    async def submit(
        self,
        *,
        owner: ApiKey,
        chunks: AsyncIterator[bytes],
        filename: str,
        spec: AnalysisSpec,
        idempotency_key: str | None = None,
        content_type: str | None = None,
    ) -> tuple[Job, bool]:
        """Store an upload and queue its analysis; returns (job, created). With an idempotency key already
        used by ``owner`` for the same bytes, the existing job comes back with created False. On any error
        nothing is kept."""
        check_content_type(content_type)
        if idempotency_key is not None:
            existing = await asyncio.to_thread(self.store.find_idempotent, owner.id, idempotency_key)
            if existing is None:
                self.admit()
                self.access.check_quota(owner)
        else:
            self.admit()
            self.access.check_quota(owner)
        job_id = new_job_id()
        part = self.settings.uploads_dir / f"{job_id}.part"
        final = self.upload_path(job_id)
        try:
            sha, size = await self._receive(chunks, part)
            if idempotency_key is not None:
                existing = await asyncio.to_thread(self.store.find_idempotent, owner.id, idempotency_key)
                if existing is not None:
                    if existing.upload_sha256 != sha:
                        raise ConflictError(
                            f"idempotency key {idempotency_key!r} was used for another upload ({existing.id})"
                        )
                    return existing, False
            await asyncio.to_thread(partial(check_complete, part, allow_truncated=spec.allow_truncated))
            self.admit()
            os.replace(part, final)
            job, created = await asyncio.to_thread(
                self.store.create_job,
                owner=owner.id,
                spec=spec.to_json(),
                upload_sha256=sha,
                upload_bytes=size,
                filename=safe_filename(filename),
                idempotency_key=idempotency_key,
                job_id=job_id,
            )
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        finally:
            part.unlink(missing_ok=True)
        if not created:  # lost an idempotency race: the other upload's job stands
            final.unlink(missing_ok=True)
            return job, False
        log.info("job accepted", extra={"job_id": job.id, "bytes": size, "owner": owner.id})
        self._enqueue(job.id)
        return job, True

    async def _receive(self, chunks: AsyncIterator[bytes], part: Path) -> tuple[str, int]:
        cap = self.settings.max_upload_bytes
        digest = hashlib.sha256()
        size = 0
        with open(part, "wb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                if size > cap:
                    raise PayloadTooLargeError(
                        f"upload exceeds the {self.settings.max_upload_mb:g} MB limit (max_upload_mb)"
                    )
                digest.update(chunk)
                fh.write(chunk)
        if size == 0:
            raise VideoError("the upload is empty (0 bytes)")
        return digest.hexdigest(), size

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, job_id: str, *, owner: ApiKey) -> Job:
        return self.store.get(job_id, owner=owner.id)

    def list_jobs(
        self, *, owner: ApiKey, limit: int = 20, cursor: str | None = None, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        return self.store.list_jobs(owner.id, limit=limit, cursor=cursor, state=state)

    async def watch(self, job_id: str, *, owner: ApiKey, poll_s: float = 1.0) -> AsyncIterator[Job]:
        """The job now, then at each change, ending after a terminal state. Wakes on local progress events
        and polls the store (jobs run by another replica change there only)."""
        job = await asyncio.to_thread(self.get, job_id, owner=owner)
        yield job
        seen = (job.state, job.stage, round(job.progress, 3))
        event = self._events.setdefault(job_id, asyncio.Event())
        try:
            while job.state not in TERMINAL:
                event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=poll_s)
                job = await asyncio.to_thread(self.store.get, job_id)
                now = (job.state, job.stage, round(job.progress, 3))
                if now != seen:
                    seen = now
                    yield job
        finally:
            if job.state in TERMINAL:
                self._events.pop(job_id, None)  # other watchers of this job still poll the store

    def result_document(self, job: Job) -> dict[str, Any]:
        """{"job": status, "poses": poses.json, "metrics": metrics.json or None} of a finished job."""
        require_done(job)
        folder = self.job_dir(job.id)
        metrics = folder / ARTIFACTS["metrics"].filename
        return {
            "job": status_document(job),
            "poses": json.loads((folder / ARTIFACTS["poses"].filename).read_text()),
            "metrics": json.loads(metrics.read_text()) if metrics.exists() else None,
        }

    def artifact(self, job_id: str, name: str, *, owner: ApiKey) -> tuple[Path, Artifact]:
        job = self.get(job_id, owner=owner)
        art = ARTIFACTS.get(name)
        if art is None:
            raise NotFoundError(f"no artifact {name!r}; known: {', '.join(ARTIFACTS)}")
        require_done(job)
        path = self.job_dir(job.id) / art.filename
        if not path.is_file():
            raise NotFoundError(
                f"analysis {job.id} has no {name!r} (e.g. no metrics for a clip under one stride)"
            )
        return path, art

    def delete(self, job_id: str, *, owner: ApiKey) -> None:
        job = self.get(job_id, owner=owner)
        if job.id in self._running:
            raise NotReadyError(f"analysis {job.id} is running; delete it once it has ended")
        self.store.delete(job.id, owner=job.owner)
        self._pending.discard(job.id)
        shutil.rmtree(self.job_dir(job.id), ignore_errors=True)
        self.upload_path(job.id).unlink(missing_ok=True)

    # -- workers ---------------------------------------------------------------------------------------

    def _enqueue(self, job_id: str) -> None:
        self._pending.add(job_id)
        self._queue.put_nowait(job_id)
        self.telemetry.queue_depth.set(self.queue_depth)

    async def _worker(self, index: int) -> None:
        while True:
            job_id = await self._queue.get()
            if job_id not in self._pending:  # deleted while queued
                continue
            self._running.add(job_id)
            self.telemetry.running.set(len(self._running))
            self.telemetry.queue_depth.set(self.queue_depth)
            try:
                await self._run(job_id)
            finally:
                self._running.discard(job_id)
                self.telemetry.running.set(len(self._running))
                self.telemetry.queue_depth.set(self.queue_depth)

    def _changed(self, job_id: str) -> None:
        event = self._events.get(job_id)
        if event is not None:
            event.set()

    async def _run(self, job_id: str) -> None:
        try:
            job = await asyncio.to_thread(self.store.mark_running, job_id)
        except GaitwayError:  # deleted or already ended
            self._pending.discard(job_id)
            return
        self._changed(job_id)
        t0 = time.perf_counter()
        try:
            spec = AnalysisSpec.from_json(job.spec)
            outcome = await asyncio.to_thread(self._analyze, job_id, spec)
            summary = outcome.summary()
        except _RETRYABLE as exc:
            if job.attempts < self.settings.max_attempts:
                delay = self.settings.retry_backoff_s * 2 ** (job.attempts - 1)
                log.warning(
                    "dependency failed; retrying",
                    extra={"job_id": job_id, "code": exc.code, "attempt": job.attempts, "retry_in_s": delay},
                )
                self.telemetry.job_retries.inc()
                await asyncio.to_thread(self.store.requeue, job_id)
                self._changed(job_id)
                assert self._loop is not None
                self._loop.call_later(delay, self._queue.put_nowait, job_id)
                return
            self._fail(job_id, exc.code, f"{exc} (after {job.attempts} attempts)")
            return
        except GaitwayError as exc:
            self._fail(job_id, exc.code, str(exc))
            return
        except Exception:
            log.exception("analysis crashed", extra={"job_id": job_id})
            self._fail(job_id, "internal", "internal error during the analysis; the gateway log has details")
            return
        await asyncio.to_thread(self.store.mark_done, job_id, summary)
        self._durations.append(time.perf_counter() - t0)
        self.telemetry.jobs_finished.labels("done", "").inc()
        self._pending.discard(job_id)
        self._changed(job_id)
        log.info("job done", extra={"job_id": job_id, "seconds": round(time.perf_counter() - t0, 2)})

    def _fail(self, job_id: str, code: str, message: str) -> None:
        self.store.mark_failed(job_id, code, message)
        self.telemetry.jobs_finished.labels("failed", code).inc()
        self._pending.discard(job_id)
        self._changed(job_id)
        log.warning("job failed", extra={"job_id": job_id, "code": code, "error": message})

    def _analyze(self, job_id: str, spec: AnalysisSpec) -> Any:
        """Runs in a worker thread. Progress goes to the store at most every 0.5 s and at stage changes."""
        out = self.job_dir(job_id)
        shutil.rmtree(out, ignore_errors=True)  # a retry starts clean
        last_stage, last_t, stage_t0 = "", 0.0, time.perf_counter()
        lock = threading.Lock()

        def progress(stage: str, fraction: float) -> None:
            nonlocal last_stage, last_t, stage_t0
            now = time.perf_counter()
            with lock:
                if stage == last_stage and now - last_t < 0.5 and fraction < 1.0:
                    return
                if stage != last_stage and last_stage:
                    self.telemetry.stage_seconds.labels(last_stage).observe(now - stage_t0)
                    stage_t0 = now
                last_stage, last_t = stage, now
            lo, hi = _STAGE_SPAN.get(stage, (0.0, 1.0))
            self.store.set_progress(job_id, stage, lo + (hi - lo) * fraction)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._changed, job_id)

        outcome = self.engine.analyze(self.upload_path(job_id), out, spec, progress=progress)
        self.telemetry.stage_seconds.labels("artifacts").observe(time.perf_counter() - stage_t0)
        return outcome


def require_done(job: Job) -> None:
    """Raise NotReadyError (with the failure, if any) unless ``job`` is done."""
    if job.state is not JobState.DONE:
        detail = f" ({job.error_code}: {job.error_message})" if job.state is JobState.FAILED else ""
        raise NotReadyError(f"analysis {job.id} is {job.state.value}{detail}; results exist once it is done")


def status_document(job: Job) -> dict[str, Any]:
    """The public JSON view of a job (HTTP bodies, gRPC result documents)."""
    return {
        "id": job.id,
        "state": job.state.value,
        "stage": job.stage,
        "progress": round(job.progress, 4),
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "filename": job.filename,
        "upload_bytes": job.upload_bytes,
        "options": job.spec,
        "attempts": job.attempts,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "summary": job.summary,
    }
