"""Job manager rules that need no video: recovery after restarts, upload names and content types."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gateway_support import gateway_settings

from gateway.core import Engine
from gateway.jobs import JobManager, check_content_type, safe_filename
from gateway.store import JobState, JobStore
from services.errors import UnsupportedMediaError

SHA = "0" * 64


def _manager(tmp_path: Path, store: JobStore) -> JobManager:
    settings = gateway_settings(tmp_path, max_attempts=2)
    return JobManager(settings, store, Engine(settings.pose_settings()))


def test_recovery_resumes_or_fails_each_unfinished_job(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    mgr = _manager(tmp_path, store)
    mgr.settings.uploads_dir.mkdir(parents=True)
    spec = {"preset": None}
    queued, _ = store.create_job(owner="k", spec=spec, upload_sha256=SHA, upload_bytes=1, filename="a")
    once, _ = store.create_job(owner="k", spec=spec, upload_sha256=SHA, upload_bytes=1, filename="b")
    spent, _ = store.create_job(owner="k", spec=spec, upload_sha256=SHA, upload_bytes=1, filename="c")
    lost, _ = store.create_job(owner="k", spec=spec, upload_sha256=SHA, upload_bytes=1, filename="d")
    store.mark_running(once.id)  # interrupted during its first attempt
    store.mark_running(spent.id)
    store.mark_running(spent.id)  # interrupted during its second and last attempt
    for job in (queued, once, spent):
        mgr.upload_path(job.id).write_bytes(b"x")  # the video of `lost` is gone
    for job in store.unfinished():
        mgr._recover(job)
    assert store.get(queued.id).state is JobState.QUEUED
    assert store.get(once.id).state is JobState.QUEUED
    failed = store.get(spent.id)
    assert failed.state is JobState.FAILED and failed.error_code == "interrupted"
    missing = store.get(lost.id)
    assert missing.state is JobState.FAILED and missing.error_code == "upload_missing"
    assert mgr.queue_depth == 2
    asyncio.run(mgr.stop())
    store.close()


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
