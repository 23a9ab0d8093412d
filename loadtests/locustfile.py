"""Locust scenarios against a Gaitway gateway: the mobile app over HTTP and the partner platform over gRPC.

* ``MobileUser`` — uploads a short clip (``POST /v1/analyses``), polls its status until it is done, lists
  its artifacts and downloads ``metrics`` and ``steps``.
* ``PartnerUser`` — uploads the same clip with ``AnalyzeVideo`` and follows it with ``WatchAnalysis`` to
  the final status (with the result), then streams live frames with ``StreamFrames`` (the treadmill clip,
  JPEG at long side 640, ``--live-fps`` frames a second for ``--live-frames`` frames, sent in real time).

Besides each call, locust's table shows one ``JOB`` line per analysis (upload to final status, a failure
when the analysis failed) and, for live streams, ``frame keypoints`` (send -> keypoints) and
``frame dropped`` (frames the server dropped under backpressure: answered, not failed). A 429 (``busy``,
``rate_limited``) is what a well-behaved client meets under load: it is recorded under its own name as a
success, and the user waits for ``Retry-After`` and tries again.

Bounds: ``--run-time`` and users x spawn rate, as usual, and ``--iterations N`` (per user; the run stops
when every user has done its N). Where the gateway is: ``--stack-dir DIR`` (a ``make up`` stack: ports from
``DIR/stack.json``, the key from ``DIR/api-key``), or ``--host http://HOST:PORT --grpc-target HOST:PORT
--api-key KEY``. A key for load tests, without the default per-minute limit::

    gaitway keys --data-dir out/stack/var create loadtest --requests-per-min 100000 --jobs-per-day 100000

    locust -f loadtests/locustfile.py --headless --stack-dir out/stack --api-key KEY \\
           -u 2 -r 1 --run-time 2m --iterations 3 MobileUser PartnerUser
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import HttpUser, User, between, events, task
from locust.env import Environment
from locust.exception import StopUser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "loadtests"))

from bench_stream import at_rate, encode_frames  # noqa: E402
from faults import GRPC_OPTIONS, Faults  # noqa: E402

from gateway.proto.gaitway.v1 import gaitway_pb2 as pb  # noqa: E402
from gateway.proto.gaitway.v1 import gaitway_pb2_grpc as pb_grpc  # noqa: E402
from gateway.stack import StackState  # noqa: E402
from services.settings import Settings  # noqa: E402

grpc_gevent.init_gevent()  # gRPC's I/O on gevent, like locust's own

SHARED = Settings().shared_dir
DONE_STATES = {"done", "failed"}
GRPC_DONE = {pb.ANALYSIS_STATE_DONE, pb.ANALYSIS_STATE_FAILED}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--stack-dir", default="", help="a running local stack's folder (make up)")
    parser.add_argument("--grpc-target", default="", help="gateway gRPC HOST:PORT")
    parser.add_argument("--api-key", default="", help="API key (default: the stack's development key)")
    parser.add_argument("--clip", default=str(SHARED / "data/running-side-outdoor/demo3.mp4"))
    parser.add_argument("--live-clip", default=str(SHARED / "data/running-treadmill-phone/IMG_5396.mp4"))
    parser.add_argument("--live-fps", type=float, default=30.0)
    parser.add_argument("--live-frames", type=int, default=90)
    parser.add_argument("--preset", default="", help="model preset (default: the gateway's)")
    parser.add_argument("--iterations", type=int, default=0, help="iterations per user (0: no limit)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="HTTP status polls, seconds")
    parser.add_argument("--job-timeout", type=float, default=300.0, help="seconds an analysis may take")


@events.init.add_listener
def _configure(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    if opts.stack_dir:
        root = Path(opts.stack_dir)
        ports = StackState.load(root / "stack.json").ports
        if not opts.host:
            environment.host = f"http://127.0.0.1:{ports.http}"
        opts.grpc_target = opts.grpc_target or f"127.0.0.1:{ports.grpc}"
        opts.api_key = opts.api_key or (root / "api-key").read_text().strip()
    if not opts.api_key:
        raise SystemExit("locustfile: give --api-key KEY or --stack-dir DIR")


class _Shared:
    """What every user reads once: the clip's bytes and the live frames (encoded on first use)."""

    lock = threading.Lock()
    clip: bytes | None = None
    frames: list[tuple[float, bytes]] | None = None
    finished_users = 0

    @classmethod
    def clip_bytes(cls, path: str) -> bytes:
        with cls.lock:
            if cls.clip is None:
                cls.clip = Path(path).read_bytes()
            return cls.clip

    @classmethod
    def live_frames(cls, path: str, fps: float, count: int) -> list[tuple[float, bytes]]:
        with cls.lock:
            if cls.frames is None:
                cls.frames = at_rate(encode_frames(path), fps)[:count]
            return cls.frames


def _iteration_done(user: User, done: int) -> None:
    """Stop ``user`` after ``--iterations`` iterations; the whole run once every user has stopped."""
    limit = user.environment.parsed_options.iterations
    if not limit or done < limit:
        return
    runner = user.environment.runner
    with _Shared.lock:
        _Shared.finished_users += 1
        everyone = runner is not None and _Shared.finished_users >= runner.target_user_count
    if everyone and runner is not None:
        runner.quit()
    raise StopUser()


def _fire(user: User, kind: str, name: str, start: float, *, error: BaseException | None = None) -> None:
    user.environment.events.request.fire(
        request_type=kind,
        name=name,
        response_time=(time.perf_counter() - start) * 1000,
        response_length=0,
        exception=error,
        context={},
    )


class JobFailed(Exception):
    """An analysis that ended ``failed``, or did not end in time."""


# --------------------------------------------------------------------------------------------------------
# the mobile app


class MobileUser(HttpUser):
    """Upload, poll, fetch (HTTP)."""

    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.opts = self.environment.parsed_options
        self.headers = {"x-api-key": self.opts.api_key}
        self.done = 0

    def _retry_after(self, response: Any) -> float:
        try:
            return min(float(response.headers.get("retry-after", "1")), 30.0)
        except ValueError:
            return 1.0

    def _upload(self) -> str | None:
        params = {"height_m": 1.78, "filename": "loadtest.mp4"}
        if self.opts.preset:
            params["preset"] = self.opts.preset
        data = _Shared.clip_bytes(self.opts.clip)
        while True:
            with self.client.post(
                "/v1/analyses",
                data=data,
                params=params,
                headers={**self.headers, "content-type": "video/mp4"},
                name="POST /v1/analyses",
                catch_response=True,
            ) as r:
                if r.status_code == 202:
                    return str(r.json()["id"])
                if r.status_code == 429:
                    r.success()
                    r.request_meta["name"] = "POST /v1/analyses (429, retried)"
                    wait = self._retry_after(r)
                else:
                    r.failure(f"{r.status_code}: {r.text[:200]}")
                    return None
            time.sleep(wait)

    def _get(self, path: str, name: str) -> Any:
        while True:
            with self.client.get(path, headers=self.headers, name=name, catch_response=True) as r:
                if r.status_code == 429:
                    r.success()
                    r.request_meta["name"] = f"{name} (429, retried)"
                    wait = self._retry_after(r)
                elif r.status_code != 200:
                    r.failure(f"{r.status_code}: {r.text[:200]}")
                    return None
                else:
                    return r
            time.sleep(wait)

    @task
    def analyse_a_run(self) -> None:
        start = time.perf_counter()
        job = self._upload()
        if job is not None:
            state, error = self._poll(job, start)
            if state == "done":
                _fire(self, "JOB", "analysis (HTTP)", start)
                self._fetch(job)
            else:
                _fire(self, "JOB", "analysis (HTTP)", start, error=JobFailed(error))
        self.done += 1
        _iteration_done(self, self.done)

    def _poll(self, job: str, start: float) -> tuple[str, str]:
        while time.perf_counter() - start < self.opts.job_timeout:
            time.sleep(self.opts.poll_interval)
            r = self._get(f"/v1/analyses/{job}", "GET /v1/analyses/{id}")
            if r is None:
                return "failed", "status request failed"
            doc = r.json()
            if doc["state"] in DONE_STATES:
                return doc["state"], str((doc.get("error") or {}).get("code", ""))
        return "failed", f"not finished after {self.opts.job_timeout:.0f} s"

    def _fetch(self, job: str) -> None:
        listing = self._get(f"/v1/analyses/{job}/artifacts", "GET /v1/analyses/{id}/artifacts")
        if listing is None:
            return
        for name in ("metrics", "steps"):
            self._get(f"/v1/analyses/{job}/artifacts/{name}", f"GET /v1/analyses/{{id}}/artifacts/{name}")


# --------------------------------------------------------------------------------------------------------
# the partner platform


class PartnerUser(User):
    """AnalyzeVideo + WatchAnalysis, then a StreamFrames session (gRPC)."""

    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.opts = self.environment.parsed_options
        self.metadata = [("x-api-key", self.opts.api_key)]
        self.channel = grpc.insecure_channel(self.opts.grpc_target, options=GRPC_OPTIONS)
        self.stub = pb_grpc.AnalysisStub(self.channel)
        self.done = 0

    def on_stop(self) -> None:
        self.channel.close()

    def _call(self, name: str, fn: Any) -> Any:
        """``fn()``, recorded under ``name``; RESOURCE_EXHAUSTED (busy, rate limited) waits for
        ``retry-after-s`` and tries again."""
        while True:
            start = time.perf_counter()
            try:
                result = fn()
            except grpc.RpcError as err:
                trailers = dict(err.trailing_metadata() or ())
                if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry-after-s" in trailers:
                    _fire(self, "grpc", f"{name} (RESOURCE_EXHAUSTED, retried)", start)
                    time.sleep(min(float(trailers["retry-after-s"]), 30.0))
                    continue
                _fire(self, "grpc", name, start, error=err)
                return None
            except Exception as exc:  # a broken answer: recorded as this call's failure
                _fire(self, "grpc", name, start, error=exc)
                return None
            _fire(self, "grpc", name, start)
            return result

    @task
    def partner_session(self) -> None:
        self._analyse()
        self._stream()
        self.done += 1
        _iteration_done(self, self.done)

    def _analyse(self) -> None:
        start = time.perf_counter()
        data = _Shared.clip_bytes(self.opts.clip)
        status = self._call(
            "AnalyzeVideo",
            lambda: self.stub.AnalyzeVideo(
                Faults.upload_requests(data, preset=self.opts.preset),
                metadata=self.metadata,
                timeout=120,
            ),
        )
        if status is None:
            return

        def watch() -> Any:
            last = None
            for last in self.stub.WatchAnalysis(
                pb.WatchAnalysisRequest(id=status.id), metadata=self.metadata, timeout=self.opts.job_timeout
            ):
                if last.state in GRPC_DONE:
                    break
            return last

        final = self._call("WatchAnalysis", watch)
        if final is not None and final.state == pb.ANALYSIS_STATE_DONE and final.result_json:
            _fire(self, "JOB", "analysis (gRPC)", start)
        else:
            why = final.error.code if final is not None else "WatchAnalysis failed"
            _fire(self, "JOB", "analysis (gRPC)", start, error=JobFailed(why))

    def _stream(self) -> None:
        frames = _Shared.live_frames(self.opts.live_clip, self.opts.live_fps, self.opts.live_frames)
        sent: dict[int, float] = {}
        counter = itertools.count()

        def requests() -> Iterator[Any]:
            yield pb.FrameIn(config=pb.StreamConfig(preset=self.opts.preset))
            begin, t0 = time.perf_counter(), frames[0][0]
            for t, jpeg in frames:
                time.sleep(max(0.0, begin + (t - t0) - time.perf_counter()))
                seq = next(counter)
                sent[seq] = time.perf_counter()
                yield pb.FrameIn(frame=pb.Frame(seq=seq, t=t, image=jpeg))

        def run() -> Any:
            summary = None
            for answer in self.stub.StreamFrames(requests(), metadata=self.metadata, timeout=300):
                kind = answer.WhichOneof("payload")
                if kind in ("keypoints", "dropped"):
                    seq = getattr(answer, kind).seq
                    _fire(self, "grpc", f"frame {kind}", sent.get(seq, time.perf_counter()))
                elif kind == "summary":
                    summary = answer.summary
            if summary is None or summary.frames_received != len(frames):
                raise RuntimeError(f"the stream ended without its summary ({summary})")
            return summary

        self._call("StreamFrames", run)
