"""Job manager rules, with a stand-in engine whose analyses do what each test needs (no video): dependency
outages, shutdowns, cancellation, leases taken over from a dead replica, retries, the report written after
the job is done; and the upload limits, checked on real (small) videos before anything is queued."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from gateway_support import DEMO3, gateway_settings

from gateway import core
from gateway.core import AnalysisFolder, AnalysisOutcome, AnalysisSpec, Engine, ReportWriter
from gateway.jobs import (
    REPORT_PENDING,
    JobManager,
    ReportClaim,
    check_content_type,
    check_idempotency_key,
    check_video_limits,
    safe_filename,
)
from gateway.records import ApiKey, Job, JobState
from gateway.store import SqlStore
from services.errors import (
    ArtifactPendingError,
    BadRequestError,
    InferenceError,
    InputError,
    NotFoundError,
    ServiceUnavailableError,
    UnsupportedMediaError,
    UploadTimeoutError,
    VideoLimitError,
)
from services.files import atomic_path
from services.pose.ingest import VideoHeader

SHA = "0" * 64
Behaviour = Callable[[Callable[[str, float], None], Callable[[str], None] | None], None]


class FakeEngine:
    """An engine whose analyses run ``behaviour(progress, on_checkpoint)`` and whose dependencies'
    readiness the test sets."""

    def __init__(self, behaviour: Behaviour, *, report: tuple[str, ...] = ()) -> None:
        self.behaviour = behaviour
        self.report = report
        self.checks = {"models": "ok", "triton": "ok", "kinematics": "ok"}
        self.calls = 0

    def dependencies(self) -> tuple[str, ...]:
        return ("triton", "kinematics")

    def readiness(self) -> dict[str, str]:
        return dict(self.checks)

    def check_preset(self, name: str | None) -> None:
        pass

    def analyze(self, video: Path, out: Path, spec: AnalysisSpec, **kwargs: Any) -> AnalysisOutcome:
        self.calls += 1
        out.mkdir(parents=True, exist_ok=True)
        (out / "poses.json").write_text("{}")
        self.behaviour(kwargs["progress"], kwargs.get("on_checkpoint"))
        assert kwargs["report_files"] is False  # a job's report is written after it is done
        return _Outcome(self.report)  # type: ignore[return-value]


@dataclasses.dataclass
class _Outcome:
    report_pending: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        return {"frames": 1}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield s
    s.close()


def _manager(tmp_path: Path, store: SqlStore, engine: FakeEngine, **settings: Any) -> JobManager:
    values: dict[str, Any] = {"poll_interval_s": 0.05, "probe_interval_s": 0.2, "lease_s": 3.0}
    values.update(settings)
    return JobManager(gateway_settings(tmp_path, **values), store, engine)  # type: ignore[arg-type]


def _job(manager: JobManager, store: SqlStore) -> Job:
    job, _ = store.create_job(owner="k", spec={}, upload_sha256=SHA, upload_bytes=1, filename="a.mp4")
    manager.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    manager.upload_path(job.id).write_bytes(b"x")
    return job


async def _until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _owner(manager: JobManager) -> ApiKey:
    return dataclasses.replace(manager.access.anonymous, id="k")


def test_a_dependency_outage_keeps_the_job_queued_without_spending_an_attempt(
    tmp_path: Path, store: SqlStore
) -> None:
    failed_once = threading.Event()

    def behaviour(progress: Callable[[str, float], None], checkpoint: Any) -> None:
        if not failed_once.is_set():
            failed_once.set()
            raise ServiceUnavailableError("the kinematics service is unreachable", dependency="kinematics")

    engine = FakeEngine(behaviour)

    async def main() -> Job:
        manager = _manager(tmp_path, store, engine)
        job = _job(manager, store)
        engine.checks["kinematics"] = "unreachable"
        await manager.start()
        try:
            await _until(failed_once.is_set)
            await asyncio.sleep(1.0)  # still down: nothing is taken, the job waits
            assert store.get(job.id).state is JobState.QUEUED and engine.calls == 1
            assert not manager.gate.is_open()
            engine.checks["kinematics"] = "ok"
            await _until(lambda: store.get(job.id).state is JobState.DONE)
        finally:
            await manager.stop(grace_s=1.0)
        return store.get(job.id)

    done = _run(main())
    assert (done.attempts, done.outage_retries, engine.calls) == (1, 1, 2)


@pytest.mark.parametrize("probe", ["ok", "unreachable"])
def test_an_outage_longer_than_max_outage_fails_the_job_without_internal_detail(
    tmp_path: Path, store: SqlStore, probe: str
) -> None:
    """Every call finds Triton down. When its probe says ok (a flapping outage) the job is retried until
    the outage has lasted ``max_outage_s``; when the probe agrees it is down, no worker takes the job
    again and the maintenance loop ends it."""

    def behaviour(progress: Callable[[str, float], None], checkpoint: Any) -> None:
        raise ServiceUnavailableError(
            "the inference server (Triton) is unreachable",
            dependency="triton",
            detail="Triton at 10.1.2.3:8001: StatusCode.UNAVAILABLE",
        )

    engine = FakeEngine(behaviour)

    async def main() -> Job:
        manager = _manager(tmp_path, store, engine, max_outage_s=1.0)
        job = _job(manager, store)
        engine.checks["triton"] = probe
        await manager.start()
        try:
            await _until(lambda: store.get(job.id).state is JobState.FAILED)
        finally:
            await manager.stop(grace_s=1.0)
        return store.get(job.id)

    failed = _run(main())
    assert failed.error_code == "service_unavailable"
    message = failed.error_message or ""
    assert "Triton" in message and "down for" in message and "10.1.2.3" not in message
    if probe == "unreachable":  # it met the outage once, gave its attempt back and waited in the queue
        assert (engine.calls, failed.attempts) == (1, 0)
    else:  # each try gave its attempt back; the last one, failing, is counted
        assert engine.calls >= 2 and failed.attempts == 1


def test_shutdown_puts_a_running_job_back_with_its_checkpoint(tmp_path: Path, store: SqlStore) -> None:
    """SIGTERM: the job does not finish within the grace period, so it is stopped at its next progress
    report and queued again, its attempt given back and its pose checkpoint kept; a new replica resumes it
    from the checkpoint and does not run the pose stage again."""
    started = threading.Event()

    def slow(progress: Callable[[str, float], None], checkpoint: Callable[[str], None] | None) -> None:
        assert checkpoint is not None
        checkpoint("kinematics")
        started.set()
        while True:
            progress("kinematics", 0.5)
            time.sleep(0.05)

    async def first() -> None:
        manager = _manager(tmp_path, store, FakeEngine(slow))
        _job(manager, store)
        await manager.start()
        await _until(started.is_set)
        await manager.stop(grace_s=0.3)

    _run(first())
    [job] = store.list_jobs("k")[0]
    assert (job.state, job.attempts, job.checkpoint, job.pose_runs) == (JobState.QUEUED, 0, "kinematics", 1)
    assert job.lease_owner is None

    async def second() -> None:
        manager = _manager(tmp_path, store, FakeEngine(lambda progress, checkpoint: None))
        await manager.start()
        try:
            await _until(lambda: store.get(job.id).state is JobState.DONE)
        finally:
            await manager.stop(grace_s=1.0)

    _run(second())
    done = store.get(job.id)
    assert (done.attempts, done.pose_runs) == (1, 1)  # resumed after the pose stage: run once in all


def test_deleting_a_running_job_cancels_it(tmp_path: Path, store: SqlStore) -> None:
    started = threading.Event()
    stopped = threading.Event()

    def endless(progress: Callable[[str, float], None], checkpoint: Any) -> None:
        started.set()
        try:
            while True:
                progress("pose", 0.1)
                time.sleep(0.05)
        finally:
            stopped.set()

    async def main() -> JobManager:
        manager = _manager(tmp_path, store, FakeEngine(endless))
        job = _job(manager, store)
        await manager.start()
        try:
            await _until(started.is_set)
            await manager.delete(job.id, owner=dataclasses.replace(manager.access.anonymous, id="k"))
            await _until(stopped.is_set, timeout_s=5.0)
            await asyncio.sleep(0.3)
            assert not manager.job_dir(job.id).exists() and not manager.upload_path(job.id).exists()
        finally:
            await manager.stop(grace_s=1.0)
        return manager

    _run(main())
    assert store.counts() == dict.fromkeys(JobState, 0)


def test_a_job_deleted_while_it_fails_leaves_nothing_behind(tmp_path: Path, store: SqlStore) -> None:
    """The owner deletes the job, then its analysis fails (the upload went away under it): its files go."""
    started, deleted = threading.Event(), threading.Event()
    out: list[Path] = []

    def fails_after_delete(progress: Callable[[str, float], None], checkpoint: Any) -> None:
        started.set()
        deleted.wait(10)
        out[0].mkdir(parents=True, exist_ok=True)
        (out[0] / "poses.json").write_text("{}")  # written after the delete removed the folder
        raise InputError("the video has gone")

    async def main() -> JobManager:
        manager = _manager(tmp_path, store, FakeEngine(fails_after_delete))
        job = _job(manager, store)
        out.append(manager.job_dir(job.id))
        await manager.start()
        try:
            await _until(started.is_set)
            await manager.delete(job.id, owner=dataclasses.replace(manager.access.anonymous, id="k"))
            deleted.set()
            await _until(lambda: not manager._running, timeout_s=5.0)  # the failure has been handled
            assert not manager.job_dir(job.id).exists()
        finally:
            await manager.stop(grace_s=1.0)
        return manager

    _run(main())
    assert store.counts() == dict.fromkeys(JobState, 0)


def test_a_job_of_a_dead_replica_is_taken_over_once_its_lease_runs_out(
    tmp_path: Path, store: SqlStore
) -> None:
    engine = FakeEngine(lambda progress, checkpoint: None)

    async def main() -> Job:
        manager = _manager(tmp_path, store, engine)
        job = _job(manager, store)
        dead = store.claim("dead-replica", lease_s=1.0, max_attempts=3)  # claimed, then never renewed
        assert dead is not None and dead.id == job.id
        await manager.start()
        try:
            await asyncio.sleep(0.5)
            assert engine.calls == 0  # a live lease is never taken
            await _until(lambda: store.get(job.id).state is JobState.DONE)
        finally:
            await manager.stop(grace_s=1.0)
        return store.get(job.id)

    done = _run(main())
    assert (done.attempts, engine.calls) == (2, 1)


def test_an_inference_failure_is_retried_then_fails_with_its_attempts(
    tmp_path: Path, store: SqlStore
) -> None:
    def broken(progress: Callable[[str, float], None], checkpoint: Any) -> None:
        raise InferenceError(
            "the pose model rejected the request", detail="Triton at 10.0.0.1:8001: bad shape"
        )

    engine = FakeEngine(broken)

    async def main() -> Job:
        manager = _manager(tmp_path, store, engine, max_attempts=2, retry_backoff_s=0.1)
        job = _job(manager, store)
        await manager.start()
        try:
            await _until(lambda: store.get(job.id).state is JobState.FAILED)
        finally:
            await manager.stop(grace_s=1.0)
        return store.get(job.id)

    failed = _run(main())
    assert failed.error_code == "inference_failed" and engine.calls == 2
    assert failed.error_message == "the pose model rejected the request (after 2 attempts)"


# --------------------------------------------------------------------------------------------------------
# the report: written after the job is done, never served half-written, written again if cut short

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


def _pause(reached: threading.Event, release: threading.Event) -> Callable[[], None]:
    """A hook that signals ``reached``, then waits for ``release``."""

    def hook() -> None:
        reached.set()
        release.wait(20)

    return hook


def _plot_writer(before_rename: Callable[[], None] = lambda: None) -> ReportWriter:
    """A report writer of ``angles.png`` that calls ``before_rename`` with half the file written."""

    def write(folder: AnalysisFolder) -> dict[str, Path]:
        path = folder.path / "angles.png"
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            f.write(PNG[: len(PNG) // 2])
            f.flush()
            before_rename()
            f.write(PNG[len(PNG) // 2 :])
        return {"angles_plot": path}

    return ReportWriter(("angles_plot",), write, needs_metrics=False)


def test_a_job_is_done_before_its_report_whose_files_appear_whole(
    tmp_path: Path, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job is done once the engine returns; the report is written next: until a file is renamed into
    place it is neither listed nor served (a request waits ``report_wait_s``, then artifact_pending), and
    then it is served whole."""
    half, release = threading.Event(), threading.Event()
    monkeypatch.setattr(core, "REPORT_WRITERS", (_plot_writer(_pause(half, release)),))

    async def main() -> None:
        manager = _manager(
            tmp_path, store, FakeEngine(lambda progress, checkpoint: None, report=("angles_plot",))
        )
        manager.report_wait_s = 0.3
        job, owner = _job(manager, store), _owner(manager)
        folder = manager.job_dir(job.id)
        await manager.start()
        try:
            await _until(lambda: store.get(job.id).state is JobState.DONE)
            await _until(half.is_set)
            assert (folder / REPORT_PENDING).is_file() and not (folder / "angles.png").exists()
            assert [name for name, _ in await manager.artifacts(job.id, owner=owner)] == ["poses"]
            t0 = time.monotonic()
            with pytest.raises(ArtifactPendingError) as pending:
                await manager.artifact(job.id, "angles_plot", owner=owner)
            assert pending.value.code == "artifact_pending" and time.monotonic() - t0 >= 0.3
            with pytest.raises(NotFoundError):  # not a file of this report: absent, answered at once
                await manager.artifact(job.id, "xlsx", owner=owner)
            assert ReportClaim.take_over(folder) is None  # its writer holds it
            release.set()
            manager.report_wait_s = 20.0
            path, art = await manager.artifact(job.id, "angles_plot", owner=owner)  # waits for it
            assert path.read_bytes() == PNG and art.media_type == "image/png"
            await _until(lambda: not (folder / REPORT_PENDING).exists())
            assert sorted(os.listdir(folder)) == ["angles.png", "poses.json"]  # no temporary file left
            assert "angles_plot" in [name for name, _ in await manager.artifacts(job.id, owner=owner)]
        finally:
            release.set()
            await manager.stop(grace_s=1.0)

    _run(main())


def test_a_report_cut_short_by_a_dead_replica_is_written_again_when_asked(
    tmp_path: Path, store: SqlStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica is killed while it writes a done job's report: its marker stays, its lock goes with the
    process, and the next request for the job's artifacts (on another replica) writes the report again."""
    monkeypatch.setattr(core, "REPORT_WRITERS", (_plot_writer(),))
    manager = _manager(tmp_path, store, FakeEngine(lambda progress, checkpoint: None))
    job = _job(manager, store)
    assert store.claim("dead-replica", lease_s=30.0, max_attempts=3) is not None
    store.mark_done(job.id, "dead-replica", {"frames": 1})
    folder = manager.job_dir(job.id)
    folder.mkdir(parents=True)
    (folder / "poses.json").write_text("{}")
    hold = (
        "import sys, time; from pathlib import Path; from gateway.jobs import ReportClaim; "
        "ReportClaim.create(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)"
    )
    writer = subprocess.Popen([sys.executable, "-c", hold, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
        assert ReportClaim.take_over(folder) is None  # held by a live process
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=10)
    assert (folder / REPORT_PENDING).is_file()

    async def main() -> None:
        await manager.start()
        try:
            path, _ = await manager.artifact(job.id, "angles_plot", owner=_owner(manager))
            assert path.read_bytes() == PNG
            await _until(lambda: not (folder / REPORT_PENDING).exists())
        finally:
            await manager.stop(grace_s=1.0)

    caplog.set_level("WARNING", logger="gaitway.jobs")
    _run(main())
    assert any(r.getMessage() == "report interrupted; writing it again" for r in caplog.records)


def test_a_job_deleted_while_its_report_is_written_leaves_nothing_behind(
    tmp_path: Path, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    half, release = threading.Event(), threading.Event()
    monkeypatch.setattr(core, "REPORT_WRITERS", (_plot_writer(_pause(half, release)),))

    async def main() -> None:
        manager = _manager(
            tmp_path, store, FakeEngine(lambda progress, checkpoint: None, report=("angles_plot",))
        )
        manager.report_wait_s = 0.2  # the delete waits this long for the report, then goes ahead
        job = _job(manager, store)
        await manager.start()
        try:
            await _until(half.is_set)
            await manager.delete(job.id, owner=_owner(manager))
            assert not manager.job_dir(job.id).exists() and not manager.upload_path(job.id).exists()
            release.set()  # the writer finds its folder gone
            await _until(lambda: not manager._reports)
            assert not manager.job_dir(job.id).exists()
        finally:
            release.set()
            await manager.stop(grace_s=1.0)

    _run(main())
    assert store.counts() == dict.fromkeys(JobState, 0)


def test_a_real_analysis_is_done_with_its_metrics_and_its_report_follows(
    tmp_path: Path, store: SqlStore
) -> None:
    """The real engine on demo3 (lightning): done with poses and metrics; the plots, XLSX and viewer are
    then written from those files, each whole (PNG and ZIP signatures), none left half-written."""
    settings = gateway_settings(tmp_path, poll_interval_s=0.05, probe_interval_s=0.2)
    manager = JobManager(settings, store, Engine(settings))
    job, _ = store.create_job(
        owner="k", spec={"height_m": 1.75}, upload_sha256=SHA, upload_bytes=1, filename="d.mp4"
    )
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO3, manager.upload_path(job.id))
    folder = manager.job_dir(job.id)
    report = {"angles.png", "steps.png", "trajectories.png", "metrics.xlsx", "viewer.html", "viewer.mp4"}

    async def main() -> set[str]:
        await manager.start()
        try:
            await _until(lambda: store.get(job.id).state in (JobState.DONE, JobState.FAILED), timeout_s=180)
            at_done = set(os.listdir(folder))
            await _until(lambda: not (folder / REPORT_PENDING).exists(), timeout_s=120)
            names = {name for name, _ in await manager.artifacts(job.id, owner=_owner(manager))}
            summary = store.get(job.id).summary
            assert summary is not None and names == set(summary["artifacts"])  # it named the report too
            return at_done
        finally:
            await manager.stop(grace_s=5.0)

    at_done = _run(main())
    done = store.get(job.id)
    assert done.state is JobState.DONE, done.error_message
    assert {"poses.json", "metrics.json", "steps.csv", REPORT_PENDING} <= at_done
    files = set(os.listdir(folder))
    assert report <= files and not [f for f in files if f.startswith(".")]
    for name in ("angles.png", "steps.png", "trajectories.png"):
        assert (folder / name).read_bytes()[:8] == PNG[:8], name
    assert (folder / "metrics.xlsx").read_bytes()[:2] == b"PK"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["schema"] == "gaitway.metrics" and metrics["video"] == "d.mp4"


# --------------------------------------------------------------------------------------------------------
# uploads


def _video(path: Path, *, size: tuple[int, int], frames: int, fps: int = 60) -> Path:
    """A real MPEG-4 video of flat grey frames."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = Fraction(1, fps)
        image = np.full((size[1], size[0], 3), 90, np.uint8)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


async def _chunks(data: bytes, *, stall_after: int | None = None) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 4096):
        if stall_after is not None and i >= stall_after:
            await asyncio.sleep(3600)
        yield data[i : i + 4096]


@pytest.mark.parametrize(
    ("make", "settings", "message"),
    [
        (lambda p: _video(p, size=(96, 96), frames=600, fps=60), {"max_video_s": 5.0}, "at most 5 s"),
        (lambda p: _video(p, size=(96, 96), frames=600, fps=60), {"max_video_frames": 300}, "at most 300"),
        (lambda p: _video(p, size=(1920, 1088), frames=2), {"max_video_pixels": 1280 * 720}, "pixels"),
    ],
    ids=["long", "many-frames", "large-picture"],
)
def test_uploads_over_the_video_limits_are_refused_before_queueing(
    tmp_path: Path, store: SqlStore, make: Callable[[Path], Path], settings: dict[str, Any], message: str
) -> None:
    data = make(tmp_path / "clip.mp4").read_bytes()
    manager = _manager(tmp_path, store, FakeEngine(lambda progress, checkpoint: None), **settings)
    manager.settings.uploads_dir.mkdir(parents=True)

    async def main() -> None:
        await manager.submit(
            owner=manager.access.anonymous, chunks=_chunks(data), filename="clip.mp4", spec=AnalysisSpec()
        )

    with pytest.raises(VideoLimitError, match=message):
        _run(main())
    assert store.counts() == dict.fromkeys(JobState, 0)
    assert list(manager.settings.uploads_dir.iterdir()) == []


def test_a_stalled_upload_times_out_and_leaves_nothing(tmp_path: Path, store: SqlStore) -> None:
    manager = _manager(tmp_path, store, FakeEngine(lambda p, c: None), upload_idle_timeout_s=0.5)
    manager.settings.uploads_dir.mkdir(parents=True)

    async def main() -> None:
        await manager.submit(
            owner=manager.access.anonymous,
            chunks=_chunks(b"x" * 100_000, stall_after=20_000),
            filename="slow.mp4",
            spec=AnalysisSpec(),
        )

    t0 = time.monotonic()
    with pytest.raises(UploadTimeoutError, match=r"no upload data for 0\.5 s"):
        _run(main())
    assert time.monotonic() - t0 < 5.0
    assert list(manager.settings.uploads_dir.iterdir()) == []


def test_a_trickling_upload_is_cut_at_the_minimum_rate(tmp_path: Path, store: SqlStore) -> None:
    """A byte every 0.1 s (80 bit/s) restarts the idle timeout each time; the average-rate floor ends it."""
    manager = _manager(
        tmp_path, store, FakeEngine(lambda p, c: None), upload_idle_timeout_s=0.5, upload_min_kbps=8.0
    )
    manager.settings.uploads_dir.mkdir(parents=True)

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(600):
            await asyncio.sleep(0.1)
            yield b"x"

    async def main() -> None:
        await manager.submit(
            owner=manager.access.anonymous, chunks=trickle(), filename="slow.mp4", spec=AnalysisSpec()
        )

    t0 = time.monotonic()
    with pytest.raises(UploadTimeoutError, match=r"slower than 8 kbit/s"):
        _run(main())
    assert time.monotonic() - t0 < 2.0
    assert list(manager.settings.uploads_dir.iterdir()) == []


def test_video_limits_of_a_header(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path)
    ok = VideoHeader(width=1080, height=1920, frames=388, duration_s=6.5, fps_nominal=60.0)
    check_video_limits(ok, settings)
    with pytest.raises(VideoLimitError, match="7680x4320"):
        check_video_limits(VideoHeader(7680, 4320, 10, 0.3, 30.0), settings)
    # a container that declares no frame count: estimated from duration x rate
    with pytest.raises(VideoLimitError, match="frames"):
        check_video_limits(VideoHeader(96, 96, None, 590.0, 240.0), settings)


@pytest.mark.parametrize("key", ["k" * 255, "run-2026-11-30", None])
def test_idempotency_keys_up_to_255_printable_characters(key: str | None) -> None:
    check_idempotency_key(key)


@pytest.mark.parametrize("key", ["", "k" * 256, "a\nb"])
def test_other_idempotency_keys_are_bad_requests(key: str) -> None:
    with pytest.raises(BadRequestError):
        check_idempotency_key(key)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\run.mov", "run.mov"),
        ("ok.mp4", "ok.mp4"),
        ("", "video"),
        (None, "video"),
        ("bad\x00name\n.mp4", "badname.mp4"),
        ("x" * 300, "x" * 200),
    ],
)
def test_client_file_names_are_display_only(name: str | None, shown: str) -> None:
    assert safe_filename(name) == shown


@pytest.mark.parametrize(
    "ctype", ["video/mp4", "video/quicktime; codecs=hvc1", "application/octet-stream", None]
)
def test_video_content_types_pass(ctype: str | None) -> None:
    check_content_type(ctype)


@pytest.mark.parametrize("ctype", ["text/plain", "image/jpeg", "multipart/form-data; boundary=x", "video"])
def test_other_content_types_are_415(ctype: str) -> None:
    with pytest.raises(UnsupportedMediaError):
        check_content_type(ctype)
