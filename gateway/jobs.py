"""Analysis jobs: admission, uploads, and this replica's workers. Shared by the HTTP and gRPC APIs.

Any number of replicas (``gaitway serve`` processes pointed at the same ``GAITWAY_DATA_DIR`` and
``GAITWAY_DATABASE_URL``) share one queue, the database (:mod:`gateway.store`). The rules that keep every
accepted job and run it once:

1. The upload is complete, within the limits, checked and on the shared disk
   (``uploads/<id>.video``) *before* the job row exists; a crash in between leaves an orphan file, never a
   job without its video. Admission (idempotency, quota, queue limit) is decided in the transaction that
   inserts the row.
2. A worker claims a job under a lease it renews while it works. A replica that dies stops renewing; when
   the lease runs out another replica takes the job over (an attempt; after ``max_attempts`` the job fails
   ``interrupted``). Nothing touches a job whose lease is alive, and a worker that lost its lease (the job
   was deleted, or taken over after a long stall) stops at its next progress report and writes nothing.
3. The pose stage's result is checkpointed on the shared disk; a job that stops after it (a dependency
   outage, a shutdown, a dead replica) resumes from it, never from frame 0.
4. While Triton or the kinematics service is known to be down (:class:`DependencyGate`) no job is taken;
   a job that meets the outage goes back to the queue without spending an attempt, and fails
   ``service_unavailable`` only once the outage has lasted ``max_outage_s``.
5. SIGTERM (:meth:`JobManager.stop`) takes no new job, lets running jobs finish within the grace period,
   then stops the rest at their next progress report and puts them back in the queue (their attempt
   given back, their checkpoint kept), and releases their leases.
6. A job is ``done`` once its poses and metrics are written; its report (plots, XLSX, viewer page and
   video: :data:`gateway.core.REPORT_WRITERS`) is written next by the same worker, each file under a
   temporary name renamed into place. While it is written the job folder holds ``report.pending``, locked
   by its writer (:class:`ReportClaim`): a request for a report file not there yet waits for it up to
   ``report_wait_s``, then answers ``artifact_pending`` (409: ask again); the artifact list shows finished
   files only. The lock dies with its process: a replica killed mid-report leaves a marker nobody holds,
   and the next request for that job's artifacts, on any replica, writes the report again from the job's
   files (a drain lets the report finish like a running job).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from gateway.auth import Access, load_keys_file
from gateway.core import (
    AnalysisFolder,
    AnalysisOutcome,
    AnalysisSpec,
    Engine,
    ReportWriter,
    report_artifacts,
    write_reports,
)
from gateway.dependencies import DependencyGate
from gateway.live import LiveSession
from gateway.records import MAX_IDEMPOTENCY_KEY, TERMINAL, Admission, ApiKey, Job, JobState, Store, new_job_id
from gateway.store import SqlStore
from gateway.telemetry import Telemetry
from services.errors import (
    ArtifactPendingError,
    BadRequestError,
    BusyError,
    ConflictError,
    GaitwayError,
    InferenceError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaError,
    UploadTimeoutError,
    VideoError,
    VideoLimitError,
    public_message,
)
from services.pose.ingest import VideoHeader, check_complete, read_header
from services.settings import Settings

log = logging.getLogger("gaitway.jobs")


@dataclass(frozen=True)
class Artifact:
    filename: str
    media_type: str


#: artifact name -> file in the job's folder. Clients name artifacts, never paths.
#: how long the video link inside a served viewer page stays valid (a coach may leave the page open)
VIEWER_VIDEO_TTL_S = 6 * 3600.0

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
    "viewer": Artifact("viewer.html", "text/html; charset=utf-8"),
    "viewer_video": Artifact("viewer.mp4", "video/mp4"),
    "c3d": Artifact("gait.c3d", "application/octet-stream"),
    "trc": Artifact("markers.trc", "text/plain; charset=utf-8"),
    "mot": Artifact("angles.mot", "text/plain; charset=utf-8"),
}

#: the marker of a job folder whose report is being written (see :class:`ReportClaim`)
REPORT_PENDING = "report.pending"
#: how long a request for a report file being written waits for it before answering ``artifact_pending``
REPORT_WAIT_S = 20.0

#: overall progress at the start and end of each stage
_STAGE_SPAN = {"pose": (0.0, 0.85), "kinematics": (0.85, 0.95), "artifacts": (0.95, 1.0)}
#: the job folder's subfolder holding stage checkpoints (kept when a job is retried)
CHECKPOINT_DIR = "checkpoint"
#: a partial upload older than this (seconds) belongs to no live request
_STALE_PART_S = 3600.0

_VIDEO_TYPES = re.compile(r"^(video/[\w.+-]+|application/octet-stream)$")


def check_content_type(content_type: str | None) -> None:
    """Uploads must declare a video type (or be untyped bytes); the content itself is checked later."""
    if content_type is None:
        return
    base = content_type.split(";", 1)[0].strip().lower()
    if base and not _VIDEO_TYPES.match(base):
        raise UnsupportedMediaError(
            f"content type {base[:100]!r} is not a video; send video/mp4, video/quicktime..."
        )


def check_idempotency_key(key: str | None) -> None:
    """One limit for every transport: 1-255 printable characters."""
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isprintable()):
        raise BadRequestError(f"an idempotency key has 1-{MAX_IDEMPOTENCY_KEY} printable characters")


def safe_filename(name: str | None) -> str:
    """A display name for a client's file name: last path part, printable, at most 200 characters. It is
    only ever shown back to the client; files are stored under the job id."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:200] or "video"


def check_video_limits(header: VideoHeader, settings: Settings) -> None:
    """Refuse, before anything is decoded, a video whose frames, duration or picture size exceed the
    limits (:class:`VideoLimitError`, HTTP 413 / gRPC INVALID_ARGUMENT, the limit in the message)."""
    pixels = header.width * header.height
    if pixels > settings.max_video_pixels:
        raise VideoLimitError(
            f"the video is {header.width}x{header.height} px; at most {settings.max_video_pixels:,} pixels a "
            "frame are analysed (about 4K UHD): downscale it, 1080p is plenty"
        )
    if header.duration_s is not None and header.duration_s > settings.max_video_s:
        raise VideoLimitError(
            f"the video lasts {header.duration_s:.0f} s; at most {settings.max_video_s:g} s are analysed: "
            "trim it to the running you want measured"
        )
    frames = header.frames
    if frames is None and header.duration_s is not None and header.fps_nominal:
        frames = round(header.duration_s * header.fps_nominal)
    if frames is not None and frames > settings.max_video_frames:
        raise VideoLimitError(
            f"the video has {frames} frames; at most {settings.max_video_frames} are analysed: trim it"
        )


class JobLost(Exception):
    """This worker no longer holds the job: it was deleted by its owner, or another replica took it."""


class JobStopped(Exception):
    """This replica is shutting down: the job goes back to the queue."""


class ReportClaim:
    """The right to write a job folder's report: an exclusive ``flock`` on its ``report.pending`` marker.

    The worker takes it before the job is marked done and gives it up (:meth:`finish`, removing the marker)
    once every report file is written. A lock dies with its process (also on NFS, where the client's
    locks lapse with it), so a marker whose lock is free belongs to a writer that died: :meth:`take_over`
    claims it for a new writer. On a volume without file locks (local disks, NFSv4, CephFS and EFS have
    them) the report is still written, but an interrupted one is not written again."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def create(cls, folder: Path) -> ReportClaim:
        """A new marker in ``folder``, locked by this process."""
        path = folder / REPORT_PENDING
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        except OSError as exc:  # no locks on this volume: nobody can take it over either
            log.warning("no file lock on the report marker", extra={"error": str(exc)})
        return cls(fd, path)

    @classmethod
    def take_over(cls, folder: Path) -> ReportClaim | None:
        """The claim on ``folder``'s marker if its writer died; None while a writer holds it or when there
        is none (the report is finished)."""
        path = folder / REPORT_PENDING
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:  # not finished between open and lock
                return cls(fd, path)
        except OSError:  # held (BlockingIOError), finished meanwhile, or no locks on this volume
            pass
        os.close(fd)
        return None

    def finish(self) -> None:
        """The report is written: remove the marker (unless it is no longer this claim's) and unlock."""
        try:
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)


@dataclass
class _Running:
    job: Job
    lost: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


def build_manager(settings: Settings) -> JobManager:
    """Store, engine, telemetry and access control wired from one settings object (not started)."""
    store = SqlStore(settings.db_url)
    if settings.api_keys_file is not None:
        n = load_keys_file(settings.api_keys_file, store, settings)
        log.info("API keys loaded", extra={"keys": n})
    engine = Engine(settings)
    telemetry = Telemetry()
    engine.on_triton_call = lambda model, seconds: telemetry.triton_seconds.labels(model).observe(seconds)
    return JobManager(settings, store, engine, telemetry, Access(settings, store))


class JobManager:
    """Admission, uploads and reading for both APIs, and this replica's analysis workers (see the module
    docstring). Public methods that touch the store or the disk are coroutines that do their own thread
    hops; the workers run analyses in threads."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine,
        telemetry: Telemetry | None = None,
        access: Access | None = None,
        *,
        replica: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.telemetry = telemetry or Telemetry()
        self.access = access or Access(settings, store)
        self.replica = replica or f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self.gate = DependencyGate(engine.dependencies())
        self._running: dict[str, _Running] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._draining = False
        #: reports being written by this replica, by job id
        self._reports: dict[str, asyncio.Task[None]] = {}
        #: how long a request for a report file being written waits for it (then ``artifact_pending``)
        self.report_wait_s = REPORT_WAIT_S
        #: called with the readiness checks after every probe (the gRPC health service listens)
        self.on_readiness: list[Any] = []

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        self.settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._remove_stale_parts)
        await self._heartbeat_replica()
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.workers)]
        self._tasks = [asyncio.create_task(self._maintain())]
        log.info("replica started", extra={"replica": self.replica, "workers": self.settings.workers})

    async def stop(self, *, grace_s: float | None = None) -> None:
        """Take no new job; give running jobs ``grace_s`` (default ``shutdown_grace_s``) to finish, then
        stop them at their next progress report and put them back in the queue; release everything."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self._draining = True
        if self._stopping is not None:
            self._stopping.set()
        if self._wake is not None:
            self._wake.set()
        with contextlib.suppress(Exception):
            await self._heartbeat_replica()
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=grace)
            for running in list(self._running.values()):
                running.stop.set()
            if pending:
                await asyncio.wait(pending, timeout=max(30.0, grace))
            for task in pending:
                task.cancel()
        if self._reports:  # a cancelled one finishes in its thread; its marker stays if it cannot
            await asyncio.wait(list(self._reports.values()), timeout=max(30.0, grace))
        for task in self._tasks:
            task.cancel()
        for task in [*self._tasks, *self._workers]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks, self._workers = [], []
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.remove_worker, self.replica)
        log.info("replica stopped", extra={"replica": self.replica})

    async def _heartbeat_replica(self) -> None:
        await asyncio.to_thread(
            partial(
                self.store.heartbeat_worker,
                self.replica,
                host=socket.gethostname(),
                slots=self.settings.workers,
                draining=self._draining,
            )
        )

    def _remove_stale_parts(self) -> None:
        """Partial uploads older than an hour belong to no live request (another replica's fresh ones do)."""
        cutoff = time.time() - _STALE_PART_S
        for part in self.settings.uploads_dir.glob("*.part"):
            with contextlib.suppress(OSError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()

    async def _maintain(self) -> None:
        """Every few seconds: the replica's heartbeat, readiness probes (faster while a dependency is down),
        jobs whose workers died too often, and the queue gauges."""
        delay = 1.0
        while True:
            try:
                await self._heartbeat_replica()
                checks = await asyncio.to_thread(self.engine.readiness)
                self.gate.update(checks)
                for listener in self.on_readiness:
                    listener(checks)
                for job in await asyncio.to_thread(
                    partial(self.store.fail_abandoned, max_attempts=self.settings.max_attempts)
                ):
                    log.warning("job interrupted in every attempt", extra={"job_id": job.id})
                    self.telemetry.jobs_finished.labels("failed", "interrupted").inc()
                if not self.gate.is_open():  # no worker claims while it lasts: end the jobs it stranded
                    await self._fail_outaged()
                counts = await asyncio.to_thread(self.store.counts)
                self.telemetry.queue_depth.set(counts[JobState.QUEUED])
            except Exception:  # the store itself may be down for a moment: keep trying
                log.exception("maintenance failed")
            if self.gate.is_open():
                delay = self.settings.probe_interval_s
            else:  # probe again soon, then back off: 1, 2, 4 ... 15 s
                delay = 1.0 if delay >= self.settings.probe_interval_s else min(2 * delay, 15.0)
            await asyncio.sleep(delay)

    # -- paths -----------------------------------------------------------------------------------------

    def upload_path(self, job_id: str) -> Path:
        return self.settings.uploads_dir / f"{job_id}.video"

    def job_dir(self, job_id: str) -> Path:
        return self.settings.artifacts_dir / job_id

    # -- admission and upload --------------------------------------------------------------------------

    def _admission(self, owner: ApiKey) -> Admission:
        quota = None if owner is self.access.anonymous else owner.jobs_per_day
        return Admission(jobs_per_day=quota, max_queued=self.settings.queue_limit)

    def _precheck(self, owner: ApiKey) -> None:
        """Refuse early, before a byte is stored, what admission would refuse anyway (not atomic: the
        decision is the store's, when the job is inserted)."""
        admission = self._admission(owner)
        if admission.jobs_per_day is not None:
            self.access.check_quota(owner)
        queued = self.store.counts()[JobState.QUEUED]
        if admission.max_queued is not None and queued >= admission.max_queued:
            raise BusyError(
                f"{queued} analyses are waiting for a worker (limit {admission.max_queued})",
                retry_after_s=self.store.wait_estimate_s(queued),
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
        check_idempotency_key(idempotency_key)
        await asyncio.to_thread(self.engine.check_preset, spec.preset)
        existing = None
        if idempotency_key is not None:
            existing = await asyncio.to_thread(self.store.find_idempotent, owner.id, idempotency_key)
        if existing is None:
            await asyncio.to_thread(self._precheck, owner)
        job_id = new_job_id()
        part = self.settings.uploads_dir / f"{job_id}.part"
        final = self.upload_path(job_id)
        shown = safe_filename(filename)
        try:
            sha, size = await self._receive(chunks, part)
            if existing is not None or idempotency_key is not None:
                again = await asyncio.to_thread(self.store.find_idempotent, owner.id, idempotency_key or "")
                if again is not None:
                    if again.upload_sha256 != sha:
                        raise ConflictError(
                            f"this idempotency key was used for another upload (analysis {again.id})"
                        )
                    return again, False
            header = await asyncio.to_thread(read_header, part, name=shown)
            check_video_limits(header, self.settings)
            await asyncio.to_thread(
                partial(check_complete, part, allow_truncated=spec.allow_truncated, name=shown)
            )
            os.replace(part, final)
            job, created = await asyncio.to_thread(
                partial(
                    self.store.create_job,
                    owner=owner.id,
                    spec=spec.to_json(),
                    upload_sha256=sha,
                    upload_bytes=size,
                    filename=shown,
                    idempotency_key=idempotency_key,
                    job_id=job_id,
                    admission=self._admission(owner),
                )
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
        if self._wake is not None:
            self._wake.set()
        return job, True

    async def _receive(self, chunks: AsyncIterator[bytes], part: Path) -> tuple[str, int]:
        """Write the upload to ``part`` within the size cap, the idle timeout (no byte for that long), the
        slowest average rate (a trickle of bytes keeps no slot for long) and the total upload time; returns
        (sha256, size)."""
        s = self.settings
        cap = s.max_upload_bytes
        digest = hashlib.sha256()
        size = 0
        start = time.monotonic()
        deadline = start + s.upload_timeout_s
        min_bytes_per_s = s.upload_min_kbps * 1000 / 8
        stream = aiter(chunks)
        with open(part, "wb") as fh:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UploadTimeoutError(
                        f"the upload took longer than {s.upload_timeout_s:g} s (upload_timeout_s)"
                    )
                try:
                    chunk = await asyncio.wait_for(anext(stream), timeout=min(s.upload_idle_timeout_s, left))
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise UploadTimeoutError(
                        f"no upload data for {s.upload_idle_timeout_s:g} s (upload_idle_timeout_s)"
                        if left > s.upload_idle_timeout_s
                        else f"the upload took longer than {s.upload_timeout_s:g} s (upload_timeout_s)"
                    ) from None
                size += len(chunk)
                elapsed = time.monotonic() - start
                if elapsed > s.upload_idle_timeout_s and size < min_bytes_per_s * elapsed:
                    raise UploadTimeoutError(
                        f"the upload is slower than {s.upload_min_kbps:g} kbit/s (upload_min_kbps)"
                    )
                if size > cap:
                    raise PayloadTooLargeError(
                        f"upload exceeds the {s.max_upload_mb:g} MB limit (max_upload_mb)"
                    )
                digest.update(chunk)
                fh.write(chunk)
        if size == 0:
            raise VideoError("the upload is empty (0 bytes)")
        return digest.hexdigest(), size

    # -- reading ---------------------------------------------------------------------------------------

    async def get(self, job_id: str, *, owner: ApiKey) -> Job:
        return await asyncio.to_thread(partial(self.store.get, job_id, owner=owner.id))

    async def list_jobs(
        self, *, owner: ApiKey, limit: int = 20, cursor: str | None = None, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        return await asyncio.to_thread(
            partial(self.store.list_jobs, owner.id, limit=limit, cursor=cursor, state=state)
        )

    async def watch(self, job_id: str, *, owner: ApiKey, poll_s: float = 1.0) -> AsyncIterator[Job]:
        """The job now, then at each change, ending after a terminal state (the store is polled: the job
        may run on any replica)."""
        job = await self.get(job_id, owner=owner)
        yield job
        seen = (job.state, job.stage, round(job.progress, 3))
        while job.state not in TERMINAL:
            await asyncio.sleep(poll_s)
            job = await asyncio.to_thread(self.store.get, job_id)
            now = (job.state, job.stage, round(job.progress, 3))
            if now != seen:
                seen = now
                yield job

    async def result_document(self, job_id: str, *, owner: ApiKey) -> dict[str, Any]:
        """{"job": status, "poses": poses.json, "metrics": metrics.json or None} of a finished job."""
        job = await self.get(job_id, owner=owner)
        require_done(job)
        return await asyncio.to_thread(self._result_document, job)

    def _result_document(self, job: Job) -> dict[str, Any]:
        folder = self.job_dir(job.id)
        metrics = folder / ARTIFACTS["metrics"].filename
        return {
            "job": status_document(job),
            "poses": json.loads((folder / ARTIFACTS["poses"].filename).read_text()),
            "metrics": json.loads(metrics.read_text()) if metrics.exists() else None,
        }

    async def artifacts(self, job_id: str, *, owner: ApiKey) -> list[tuple[str, Artifact]]:
        """The artifacts a finished job has, by name: its files that are complete (report files still being
        written are left out until they are)."""
        job = await self.get(job_id, owner=owner)
        require_done(job)
        await self._report_pending(job.id)
        folder = self.job_dir(job.id)

        def present() -> list[tuple[str, Artifact]]:
            return [(n, a) for n, a in ARTIFACTS.items() if (folder / a.filename).is_file()]

        return await asyncio.to_thread(present)

    async def artifact(self, job_id: str, name: str, *, owner: ApiKey) -> tuple[Path, Artifact]:
        job = await self.get(job_id, owner=owner)
        art = ARTIFACTS.get(name)
        if art is None:
            raise NotFoundError(f"no artifact of that name; known: {', '.join(ARTIFACTS)}")
        require_done(job)
        path = self.job_dir(job.id) / art.filename
        if not await asyncio.to_thread(path.is_file):
            await self._require_report(job.id, name)
            if not await asyncio.to_thread(path.is_file):
                raise NotFoundError(
                    f"this analysis has no {name!r} (e.g. no metrics for a clip without a stride)"
                )
        return path, art

    async def _report_pending(self, job_id: str) -> bool:
        """Whether the report of a done job is being written. A report whose writer died (its marker's lock
        is free) is started again here, in the background."""
        if job_id in self._reports:
            return True
        folder = self.job_dir(job_id)
        claim = await asyncio.to_thread(ReportClaim.take_over, folder)
        if claim is not None:
            log.warning("report interrupted; writing it again", extra={"job_id": job_id})
            self._start_report(job_id, claim)
            return True
        return await asyncio.to_thread((folder / REPORT_PENDING).exists)

    async def _require_report(self, job_id: str, name: str) -> None:
        """For a missing artifact ``name`` of a done job: when it is a report file being written, wait up to
        ``report_wait_s`` for the report, then raise ArtifactPendingError if it is still being written."""
        if name not in report_artifacts():
            return
        deadline = time.monotonic() + self.report_wait_s
        while await self._report_pending(job_id):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ArtifactPendingError(
                    f"the analysis is done and its {name!r} is still being written: ask again shortly"
                )
            task = self._reports.get(job_id)
            if task is not None:  # written here: wake when it ends
                await asyncio.wait({task}, timeout=left)
            else:  # written by another replica
                await asyncio.sleep(min(0.25, left))

    def _start_report(self, job_id: str, claim: ReportClaim) -> asyncio.Task[None]:
        task = asyncio.create_task(self._write_report(job_id, claim))
        self._reports[job_id] = task
        task.add_done_callback(lambda _: self._reports.pop(job_id, None))
        return task

    async def _write_report(self, job_id: str, claim: ReportClaim) -> None:
        """Write the report of a done job and give up ``claim``; if the job was deleted meanwhile, remove
        what was written."""
        t0 = time.perf_counter()
        try:
            await asyncio.to_thread(self._report_files, job_id, claim)
            seconds = time.perf_counter() - t0
            self.telemetry.stage_seconds.labels("report").observe(seconds)
            await asyncio.to_thread(self.store.get, job_id)
        except NotFoundError:
            await asyncio.to_thread(self._remove_files, job_id)
            log.info("report of a deleted analysis removed", extra={"job_id": job_id})
        except Exception:  # e.g. the store down for a moment: the files are written all the same
            log.exception("report stage failed", extra={"job_id": job_id})
        else:
            log.info("report written", extra={"job_id": job_id, "seconds": round(seconds, 2)})

    def _report_files(self, job_id: str, claim: ReportClaim) -> None:
        """Runs in a thread; the claim is given up whatever happens (a failed file is logged, then missing:
        404; a thread outliving a cancelled task still finishes it)."""

        def failed(writer: ReportWriter, exc: Exception) -> None:
            log.warning(
                "report file not written",
                extra={"job_id": job_id, "artifacts": ",".join(writer.names), "error": str(exc)},
            )

        try:
            write_reports(AnalysisFolder(self.job_dir(job_id), video=self.upload_path(job_id)), failed=failed)
        finally:
            claim.finish()

    # -- the viewer ------------------------------------------------------------------------------------

    async def viewer_link(self, job_id: str, *, owner: ApiKey, ttl_s: float) -> tuple[str, int]:
        """A signed token opening the viewer of a finished analysis without a key, and its expiry."""
        job = await self.get(job_id, owner=owner)
        require_done(job)
        return await asyncio.to_thread(partial(self.access.sign_link, "viewer", job.id, ttl_s=ttl_s))

    async def viewer_page(
        self, job_id: str, *, owner: ApiKey | None = None, token: str | None = None, client: str = ""
    ) -> str:
        """The viewer of a finished analysis, for its owner's key or a valid signed link (``token``). Its
        video is fetched by the browser, which sends no key: the page names it with a token of its own."""
        if owner is not None:
            job = await self.get(job_id, owner=owner)
        else:
            await asyncio.to_thread(
                partial(self.access.check_link, "viewer", job_id, token or "", client=client)
            )
            job = await asyncio.to_thread(self.store.get, job_id)
        require_done(job)
        if not await asyncio.to_thread(self._has_artifact, job.id, "viewer_video"):
            await self._require_report(job.id, "viewer_video")  # the page plays it: wait for it
        return await asyncio.to_thread(self._viewer_page, job)

    def _has_artifact(self, job_id: str, name: str) -> bool:
        return (self.job_dir(job_id) / ARTIFACTS[name].filename).is_file()

    def _viewer_page(self, job: Job) -> str:
        from services.viewer import render_viewer

        document = self._result_document(job)
        video_src = None
        if (self.job_dir(job.id) / ARTIFACTS["viewer_video"].filename).is_file():
            token, _ = self.access.sign_link("video", job.id, ttl_s=VIEWER_VIDEO_TTL_S)
            video_src = f"viewer/video?token={token}"
        return render_viewer(document["poses"], document["metrics"], video_src=video_src, title=job.filename)

    async def viewer_video(self, job_id: str, *, token: str, client: str = "") -> tuple[Path, Artifact]:
        """The viewer's video of an analysis, for the token its page carries."""
        await asyncio.to_thread(partial(self.access.check_link, "video", job_id, token, client=client))
        job = await asyncio.to_thread(self.store.get, job_id)
        require_done(job)
        art = ARTIFACTS["viewer_video"]
        path = self.job_dir(job.id) / art.filename
        if not await asyncio.to_thread(path.is_file):
            await self._require_report(job.id, "viewer_video")
            if not await asyncio.to_thread(path.is_file):
                raise NotFoundError("this analysis has no viewer video")
        return path, art

    async def comparison_page(self, a_id: str, b_id: str, *, owner: ApiKey) -> str:
        """The comparison page of two finished analyses of one key (A, then B)."""
        jobs = [await self.get(job_id, owner=owner) for job_id in (a_id, b_id)]
        for job in jobs:
            require_done(job)
        return await asyncio.to_thread(self._comparison_page, jobs[0], jobs[1])

    def _comparison_page(self, a: Job, b: Job) -> str:
        from services.viewer.compare import compare_runs, render_comparison

        docs = [self._result_document(job) for job in (a, b)]
        labels = (f"A: {a.filename}", f"B: {b.filename}")
        data = compare_runs(
            (docs[0]["poses"], docs[0]["metrics"]), (docs[1]["poses"], docs[1]["metrics"]), labels=labels
        )
        for run, job in zip(data["runs"], (a, b), strict=True):
            run["analysis"] = job.id
            run["date"] = (job.finished_at or job.created_at).isoformat(timespec="seconds")
        return render_comparison(data, title=f"{a.filename} vs {b.filename}")

    async def delete(self, job_id: str, *, owner: ApiKey) -> None:
        """Delete the job, its upload and its files, whatever its state: a running job is cancelled (its
        worker, on whichever replica, stops at its next progress report)."""
        job = await asyncio.to_thread(partial(self.store.delete, job_id, owner=owner.id))
        running = self._running.get(job.id)
        if running is not None:
            running.lost.set()
        report = self._reports.get(job.id)
        if report is not None:  # its files would come back: let it end (it removes them too if it outlasts)
            await asyncio.wait({report}, timeout=self.report_wait_s)
        await asyncio.to_thread(self._remove_files, job.id)
        log.info("job deleted", extra={"job_id": job.id, "state": job.state.value})

    def _remove_files(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self.upload_path(job_id).unlink(missing_ok=True)

    async def readiness(self) -> dict[str, str]:
        return await asyncio.to_thread(self.engine.readiness)

    async def check_preset(self, name: str | None) -> None:
        """Whether this deployment serves preset ``name`` (see :meth:`gateway.core.Engine.check_preset`)."""
        await asyncio.to_thread(self.engine.check_preset, name)

    def live_session(self, spec: AnalysisSpec, **options: float) -> LiveSession:
        """A live session on this replica's models (blocking: opens the backend; call from a worker)."""
        return LiveSession(self.engine, spec, **options)

    # -- live sessions ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def live_slot(self, owner: ApiKey) -> AsyncIterator[None]:
        """Hold one of the live-stream places (``stream_sessions_per_key`` across every replica,
        ``stream_sessions_per_replica`` on this one) for the life of a StreamFrames call."""
        s = self.settings
        session = "ls_" + secrets.token_hex(12)
        lease = 3 * s.probe_interval_s + 10.0
        await asyncio.to_thread(
            partial(
                self.store.open_session,
                session,
                owner.id,
                self.replica,
                per_key=s.stream_sessions_per_key,
                per_worker=s.stream_sessions_per_replica,
                lease_s=lease,
            )
        )

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease / 3)
                await asyncio.to_thread(partial(self.store.renew_session, session, lease_s=lease))

        renewer = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            await asyncio.to_thread(self.store.close_session, session)

    # -- workers ---------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        assert self._wake is not None and self._stopping is not None
        s = self.settings
        while not self._draining:
            if not self.gate.is_open():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
                continue
            try:
                job = await asyncio.to_thread(
                    partial(self.store.claim, self.replica, lease_s=s.lease_s, max_attempts=s.max_attempts)
                )
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=s.poll_interval_s)
                continue
            await self._run(job)

    async def _heartbeat(self, running: _Running) -> None:
        """Renew the lease of a running job; a lost lease stops it."""
        s = self.settings
        while True:
            await asyncio.sleep(s.lease_s / 3)
            try:
                held = await asyncio.to_thread(
                    partial(self.store.renew, running.job.id, self.replica, lease_s=s.lease_s)
                )
            except Exception:
                log.exception("renewing a lease failed", extra={"job_id": running.job.id})
                continue
            if not held:
                running.lost.set()
                return

    async def _run(self, job: Job) -> None:
        running = _Running(job)
        self._running[job.id] = running
        self.telemetry.running.set(len(self._running))
        heartbeat = asyncio.create_task(self._heartbeat(running))
        t0 = time.perf_counter()
        log.info(
            "job started",
            extra={"job_id": job.id, "attempt": job.attempts, "resumed_from": job.checkpoint or ""},
        )
        claim: ReportClaim | None = None
        report = False
        try:
            outcome, claim = await asyncio.to_thread(self._analyze, running)
        except JobLost:
            await self._after_lost(job)
        except JobStopped:
            await self._transition(self.store.release, job.id, self.replica, attempt_used=False)
            log.info("job put back in the queue (shutdown)", extra={"job_id": job.id})
        except ServiceUnavailableError as exc:
            await self._outage(job, exc)
        except InferenceError as exc:
            await self._retry_or_fail(job, exc)
        except GaitwayError as exc:
            await self._fail(job, exc.code, public_message(exc), detail=exc.detail)
        except Exception:
            log.exception("analysis crashed", extra={"job_id": job.id})
            await self._fail(
                job, "internal", "internal error during the analysis; the gateway log has details"
            )
        else:
            done = await self._transition(self.store.mark_done, job.id, self.replica, outcome.summary())
            if done is not None:
                await asyncio.to_thread(shutil.rmtree, self.job_dir(job.id) / CHECKPOINT_DIR, True)
                self.telemetry.jobs_finished.labels("done", "").inc()
                log.info("job done", extra={"job_id": job.id, "seconds": round(time.perf_counter() - t0, 2)})
                report = claim is not None
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._running.pop(job.id, None)
            self.telemetry.running.set(len(self._running))
            if claim is not None and not report:  # the job is not this worker's any more
                await asyncio.to_thread(claim.finish)
        if report:
            assert claim is not None
            await self._start_report(job.id, claim)  # this worker's next stage, after `done`

    async def _transition(self, move: Any, *args: Any, **kwargs: Any) -> Job | None:
        """A store transition of a job this worker holds; None (and a log line) if it lost the job."""
        try:
            result: Job = await asyncio.to_thread(partial(move, *args, **kwargs))
        except ConflictError:
            log.info("job no longer held by this worker", extra={"job_id": args[0]})
            return None
        except NotFoundError:  # deleted by its owner while running (whatever the run ended with)
            await self._cancelled(args[0])
            return None
        return result

    async def _after_lost(self, job: Job) -> None:
        try:
            await asyncio.to_thread(self.store.get, job.id)
            log.warning("lease lost: another replica took the job over", extra={"job_id": job.id})
        except NotFoundError:
            await self._cancelled(job.id)

    async def _cancelled(self, job_id: str) -> None:
        """The job was deleted while running: leave nothing behind."""
        await asyncio.to_thread(self._remove_files, job_id)
        log.info("job cancelled (deleted while running)", extra={"job_id": job_id})

    async def _outage(self, job: Job, exc: ServiceUnavailableError) -> None:
        self.gate.failed(exc.dependency or "dependency")
        since = job.outage_since
        outage = max(
            self.gate.outage_s(), 0.0 if since is None else (datetime.now(UTC) - since).total_seconds()
        )
        if outage >= self.settings.max_outage_s:
            message = f"{public_message(exc)}; it has been down for {outage:.0f} s"
            await self._fail(job, exc.code, message, detail=exc.detail)
            return
        log.warning(
            "dependency down; job back in the queue",
            extra={"job_id": job.id, "dependency": exc.dependency, "detail": exc.detail or ""},
        )
        self.telemetry.job_retries.inc()
        await self._transition(self.store.release, job.id, self.replica, attempt_used=False, outage=True)

    async def _fail_outaged(self) -> None:
        limit = self.settings.max_outage_s
        message = f"{self.gate.describe()}; it has been down for more than {limit:.0f} s"
        for job in await asyncio.to_thread(
            partial(self.store.fail_outaged, max_outage_s=limit, message=message)
        ):
            log.warning("job failed", extra={"job_id": job.id, "code": job.error_code, "error": message})
            self.telemetry.jobs_finished.labels("failed", job.error_code or "").inc()

    async def _retry_or_fail(self, job: Job, exc: GaitwayError) -> None:
        if job.attempts < self.settings.max_attempts:
            delay = self.settings.retry_backoff_s * 2 ** (job.attempts - 1)
            log.warning(
                "analysis failed; retrying",
                extra={"job_id": job.id, "code": exc.code, "attempt": job.attempts, "retry_in_s": delay},
            )
            self.telemetry.job_retries.inc()
            await self._transition(self.store.release, job.id, self.replica, attempt_used=True, delay_s=delay)
            return
        await self._fail(
            job, exc.code, f"{public_message(exc)} (after {job.attempts} attempts)", detail=exc.detail
        )

    async def _fail(self, job: Job, code: str, message: str, *, detail: str | None = None) -> None:
        failed = await self._transition(self.store.mark_failed, job.id, code, message, worker=self.replica)
        if failed is not None:
            self.telemetry.jobs_finished.labels("failed", code).inc()
            log.warning(
                "job failed", extra={"job_id": job.id, "code": code, "error": message, "detail": detail or ""}
            )

    def _analyze(self, running: _Running) -> tuple[AnalysisOutcome, ReportClaim | None]:
        """Runs in a worker thread. Progress goes to the store at most every 0.5 s and at stage changes; a
        lost lease or a shutdown stops the analysis at the next report. Returns the outcome and, when the
        report is still to be written, the claim on it (taken before the job is marked done)."""
        job = running.job
        out = self.job_dir(job.id)
        if out.is_dir():  # a retry starts clean, but for the checkpoints
            for child in out.iterdir():
                if child.name != CHECKPOINT_DIR:
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(
                        missing_ok=True
                    )
        last_stage, last_t, stage_t0 = "", 0.0, time.perf_counter()
        lock = threading.Lock()
        s = self.settings

        def progress(stage: str, fraction: float) -> None:
            nonlocal last_stage, last_t, stage_t0
            if running.lost.is_set():
                raise JobLost(job.id)
            if running.stop.is_set():
                raise JobStopped(job.id)
            now = time.perf_counter()
            with lock:
                if stage == last_stage and now - last_t < 0.5 and fraction < 1.0:
                    return
                if stage != last_stage and last_stage:
                    self.telemetry.stage_seconds.labels(last_stage).observe(now - stage_t0)
                    stage_t0 = now
                last_stage, last_t = stage, now
            lo, hi = _STAGE_SPAN.get(stage, (0.0, 1.0))
            if not self.store.set_progress(
                job.id, self.replica, stage, lo + (hi - lo) * fraction, lease_s=s.lease_s
            ):
                running.lost.set()
                raise JobLost(job.id)

        def checkpointed(stage: str) -> None:
            if not self.store.set_checkpoint(job.id, self.replica, stage):
                running.lost.set()
                raise JobLost(job.id)

        outcome = self.engine.analyze(
            self.upload_path(job.id),
            out,
            AnalysisSpec.from_json(job.spec),
            progress=progress,
            name=job.filename,
            checkpoint=out / CHECKPOINT_DIR,
            on_checkpoint=checkpointed,
            report_files=False,
        )
        self.telemetry.stage_seconds.labels("artifacts").observe(time.perf_counter() - stage_t0)
        return outcome, ReportClaim.create(out) if outcome.report_pending else None


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
