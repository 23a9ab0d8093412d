"""The one analysis use case behind the CLI, the HTTP API and the gRPC API.

:class:`Engine` turns a video file into every artifact of an analysis: 2D/3D poses
(:func:`services.pose.pipeline.analyze_video` on an embedded or Triton backend), running metrics (the
kinematics service over HTTP, or in-process) and the report files. The transports only convert their
requests into an :class:`AnalysisSpec` and report the :class:`AnalysisOutcome`.

The result of an analysis is its poses (``poses.json``, the CSVs, the contact sheet) and its metrics
(``metrics.json``, ``steps.csv``). The report (plots, XLSX, viewer page and video: :data:`REPORT_WRITERS`)
is derived from those files alone (:class:`AnalysisFolder`), so it can be written after the result is
announced (the gateway's jobs do: :meth:`Engine.analyze` with ``report_files=False``, then
:func:`write_reports`) and written again from the folder if that was interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from services.errors import BadRequestError, GaitwayError, InputError, ModelError, ServiceUnavailableError
from services.kinematics.client import HttpKinematics, KinematicsClient, LocalKinematics
from services.kinematics.labformats import write_lab_exports
from services.kinematics.model import motion_from_h36m
from services.kinematics.report import FILES, read_metrics, write_metrics, write_plots, write_xlsx
from services.kinematics.schema import KinematicsRequest, KinematicsResponse, TimeBaseIn
from services.kinematics.schema import RunnerInfo as KinematicsRunner
from services.pose.backends import EmbeddedBackend, FloatArray, ModelSet, PoseBackend
from services.pose.checkpoint import load_result, save_result
from services.pose.ingest import VideoInfo
from services.pose.models import ModelStore, get_preset
from services.pose.outputs import write_outputs
from services.pose.pipeline import AnalysisOptions, AnalysisResult, analyze_video
from services.pose.sequence import CleaningParams
from services.pose.stages import LiftedSequence, lift_sequence
from services.pose.tracking import TrackerParams
from services.pose.triton import TritonBackend
from services.settings import Settings
from services.viewer import write_viewer

log = logging.getLogger("gaitway.core")

#: progress callback: (stage, fraction of that stage done in [0, 1])
Progress = Callable[[str, float], None]
#: how long the answer "does Triton serve this preset" is kept (seconds)
_SERVED_TTL_S = 30.0


@dataclass(frozen=True)
class RunnerInfo:
    """What the user tells about the run. All optional."""

    height_m: float | None = None
    treadmill_speed_mps: float | None = None
    slowmo: float | None = None

    def __post_init__(self) -> None:
        if self.height_m is not None and not 0.5 <= self.height_m <= 2.5:
            raise InputError(f"height_m must be within 0.5-2.5 m, got {self.height_m}")
        if self.treadmill_speed_mps is not None and not 0 < self.treadmill_speed_mps <= 12:
            raise InputError(f"treadmill_speed_mps must be within (0, 12], got {self.treadmill_speed_mps}")
        if self.slowmo is not None and not 1 <= self.slowmo <= 64:
            raise InputError(
                f"slowmo is the slow-motion factor, capture rate / playback rate (8 for 240 fps played at "
                f"30 fps), within 1-64; got {self.slowmo}"
            )


@dataclass(frozen=True)
class AnalysisSpec:
    """One analysis request, whatever transport it came by.

    A field left None takes the engine's setting (:class:`services.settings.Settings`, the one copy of
    the defaults): ``preset`` (``GAITWAY_PRESET``), ``max_long_side`` (``GAITWAY_MAX_LONG_SIDE_PX``),
    ``det_interval`` (``GAITWAY_DET_INTERVAL_FRAMES``) and ``pose_workers`` (``GAITWAY_POSE_WORKERS``).
    """

    runner: RunnerInfo = field(default_factory=RunnerInfo)
    preset: str | None = None
    pose2d: str = ""  # model overrides (CLI); empty = the preset's
    lifter: str = ""
    allow_truncated: bool = False
    overlay: bool = False
    max_long_side: int | None = None  # pixels
    det_interval: int | None = None  # frames
    runner_box: tuple[float, float, float, float] | None = None
    cutoff_hz: float | None = None
    pose_workers: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields a job store keeps (JSON types only)."""
        return {
            "height_m": self.runner.height_m,
            "treadmill_speed_mps": self.runner.treadmill_speed_mps,
            "slowmo": self.runner.slowmo,
            "preset": self.preset,
            "allow_truncated": self.allow_truncated,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AnalysisSpec:
        runner = RunnerInfo(
            height_m=doc.get("height_m"),
            treadmill_speed_mps=doc.get("treadmill_speed_mps"),
            slowmo=doc.get("slowmo"),
        )
        return cls(runner=runner, preset=doc.get("preset"), allow_truncated=bool(doc.get("allow_truncated")))

    def options(self, settings: Settings) -> AnalysisOptions:
        """The pipeline options of this spec; unset fields take ``settings``' values."""
        det_interval = settings.det_interval_frames if self.det_interval is None else self.det_interval
        try:
            cleaning = (
                CleaningParams() if self.cutoff_hz is None else CleaningParams(cutoff_hz=self.cutoff_hz)
            )
            return AnalysisOptions(
                max_long_side=settings.max_long_side_px if self.max_long_side is None else self.max_long_side,
                slowmo=self.runner.slowmo,
                height_m=self.runner.height_m,
                tracker=TrackerParams(det_interval=det_interval, runner_box=self.runner_box),
                cleaning=cleaning,
                allow_truncated=self.allow_truncated,
                pose_workers=settings.pose_workers if self.pose_workers is None else self.pose_workers,
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None


@dataclass
class AnalysisOutcome:
    """What an analysis produced: the poses always; the running metrics unless ``metrics_error`` says why
    not (no foot strike in the clip, ...)."""

    result: AnalysisResult
    metrics: KinematicsResponse | None
    artifacts: dict[str, Path]
    warnings: list[str]
    metrics_error: InputError | None = None
    #: the report's artifacts, when they are written later (:func:`write_reports`)
    report_pending: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """A small JSON summary (stored with the job, returned by status calls)."""
        ms = self.result.timings.ms_per_frame()
        doc: dict[str, Any] = {
            "frames": len(self.result.t),
            "frames_with_pose": self.result.frames_with_pose,
            "fps_end_to_end": round(1000 / ms["total"], 2) if ms.get("total") else None,
            "units3d": self.result.units3d,
            "warnings": self.warnings,
            "artifacts": sorted({*self.artifacts, *self.report_pending}),
        }
        if self.metrics is not None:
            doc["steps"] = len(self.metrics.steps)
            doc["flags"] = list(self.metrics.flags)
            doc["metrics"] = {
                name: {"mean": s.mean, "n": s.n}
                for name, s in self.metrics.summary.items()
                if s.mean is not None
            }
        return doc


class Engine:
    """Models, a pose backend and a kinematics client, configured once; ``analyze`` runs one video.

    Embedded backends are built once per model set and shared by jobs (onnxruntime sessions are
    thread-safe); a Triton backend is opened per analysis so a restarted Triton is picked up.
    """

    def __init__(self, settings: Settings, *, kinematics_url: str | None = None) -> None:
        self.settings = settings
        self.kinematics_url = settings.kinematics_url if kinematics_url is None else kinematics_url
        self.store = ModelStore(settings.model_search_path())
        self._embedded: dict[tuple[str, str, str, int], EmbeddedBackend] = {}
        self._models: dict[tuple[str, str, str], ModelSet] = {}
        self._served: dict[str, tuple[float, GaitwayError | None]] = {}
        self._lock = threading.Lock()
        #: called with (role, seconds) after each Triton call (the gateway feeds its latency histogram)
        self.on_triton_call: Callable[[str, float], None] | None = None

    def models(self, spec: AnalysisSpec) -> ModelSet:
        """The verified models of ``spec``. Resolving hashes every file, so a model set that resolved
        once is kept (jobs, live sessions and readiness probes reuse it); failures are not kept, so a
        model file added later is found."""
        key = (spec.preset or self.settings.preset, spec.pose2d, spec.lifter)
        with self._lock:
            found = self._models.get(key)
        if found is None:
            found = ModelSet.resolve(self.store, get_preset(key[0]), pose2d=spec.pose2d, lifter=spec.lifter)
            with self._lock:
                self._models[key] = found
        return found

    def dependencies(self) -> tuple[str, ...]:
        """The remote services analyses need here: "triton" and/or "kinematics" (none when embedded)."""
        return tuple(
            name
            for name, url in (("triton", self.settings.triton_url), ("kinematics", self.kinematics_url))
            if url
        )

    def check_preset(self, name: str | None) -> None:
        """Whether this deployment serves preset ``name`` (None: the default): BadRequestError for a name
        no preset has, or a preset whose models Triton does not serve here (a client's choice this
        deployment does not offer); ModelError when its model files are missing on the server."""
        preset = name or self.settings.preset
        try:
            get_preset(preset)
        except ModelError:
            raise BadRequestError(f"unknown preset {preset[:64]!r}; see `gaitway models`") from None
        if not self.settings.triton_url:
            self.models(AnalysisSpec(preset=preset))
            return
        now = time.monotonic()
        with self._lock:
            cached = self._served.get(preset)
        if cached is None or now - cached[0] > _SERVED_TTL_S:
            error: GaitwayError | None = None
            try:
                with self.backend(self.models(AnalysisSpec(preset=preset))):
                    pass
            except ModelError:
                error = BadRequestError(f"preset {preset!r} is not served by this deployment's Triton")
            except ServiceUnavailableError:
                # Triton is down: the upload is accepted and waits out the outage in the queue; only a
                # definite answer is remembered, so the check runs again once Triton is back
                log.info("preset not checked: Triton unreachable", extra={"preset": preset})
                return
            cached = (now, error)
            with self._lock:
                self._served[preset] = cached
        if cached[1] is not None:
            raise cached[1]

    @contextmanager
    def backend(self, models: ModelSet, *, pose_workers: int | None = None) -> Iterator[PoseBackend]:
        """The pose backend of ``models`` for ``pose_workers`` 2D requests in flight (None: the setting)."""
        if pose_workers is None:
            pose_workers = self.settings.pose_workers
        if self.settings.triton_url:
            triton = TritonBackend.from_url(self.settings.triton_url, models)
            try:
                yield triton if self.on_triton_call is None else _Timed(triton, self.on_triton_call)
            finally:
                triton.close()
            return
        key = (str(models.detector.path), str(models.pose2d.path), str(models.lifter.path), pose_workers)
        with self._lock:
            backend = self._embedded.get(key)
            if backend is None:
                backend = EmbeddedBackend(
                    models, threads=self.settings.ort_threads, pose_threads=1 if pose_workers > 1 else None
                )
                self._embedded[key] = backend
        yield backend

    @contextmanager
    def kinematics(self) -> Iterator[KinematicsClient]:
        if self.kinematics_url:
            with HttpKinematics(self.kinematics_url) as http:
                yield http
        else:
            yield LocalKinematics()

    def analyze(
        self,
        video: str | os.PathLike[str],
        out_dir: Path,
        spec: AnalysisSpec,
        *,
        progress: Progress | None = None,
        name: str | None = None,
        checkpoint: Path | None = None,
        on_checkpoint: Callable[[str], None] | None = None,
        report_files: bool = True,
    ) -> AnalysisOutcome:
        """Analyse ``video`` into ``out_dir``. Raises the domain errors of :mod:`services.errors`.

        ``name``: how messages name the video (default: its path). With ``checkpoint`` (a folder), the pose
        stage's result is saved there once computed, ``on_checkpoint("kinematics")`` is called, and a later
        call with the same folder resumes from it instead of decoding and posing the video again.
        ``report_files=False`` returns once the poses and metrics are written, the report's artifacts
        named in ``report_pending``: the caller writes them (:func:`write_reports`)."""
        report = progress or (lambda stage, fraction: None)
        options = spec.options(self.settings)
        models = self.models(spec)

        def frame_done(done: int, info: VideoInfo) -> None:
            if info.num_frames:
                report("pose", min(done / info.num_frames, 1.0))

        result = None if checkpoint is None else load_result(checkpoint, models, options)
        if result is None:
            report("pose", 0.0)
            with self.backend(models, pose_workers=options.pose_workers) as backend:
                result = analyze_video(video, backend, options, progress=frame_done, name=name)
            if checkpoint is not None:
                save_result(result, checkpoint)
                if on_checkpoint is not None:
                    on_checkpoint("kinematics")
        report("kinematics", 0.0)
        warnings = list(result.warnings)
        metrics: KinematicsResponse | None = None
        metrics_error: InputError | None = None
        image_wh, seq_warnings = result.sequence.image_wh, result.sequence.warnings

        def relift(raw: FloatArray, t: FloatArray) -> LiftedSequence:  # only when the time base changes
            with self.backend(models, pose_workers=1) as backend:
                return lift_sequence(
                    raw,
                    t,
                    backend=backend,
                    image_wh=image_wh,
                    cleaning=options.cleaning,
                    height_m=options.height_m,
                    warnings=seq_warnings,
                )

        try:
            with self.kinematics() as client:
                sequence, metrics = running_metrics(
                    result.sequence,
                    client,
                    spec.runner,
                    relift=relift,
                    time_base=video_time_base(result.info, spec.runner),
                )
            result = dataclasses.replace(result, sequence=sequence)
        except InputError as exc:  # e.g. no foot strike seen: the poses are still worth having
            metrics_error = exc
            warnings.append(f"running metrics not computed [{exc.code}]: {exc}")
        report("artifacts", 0.0)
        paths = write_outputs(result, out_dir, overlay=spec.overlay)
        if metrics is not None:
            source = {"video": name or os.path.basename(result.info.path), "fps": result.info.fps}
            paths |= write_metrics(metrics, out_dir, metadata=source)
        lab = write_lab_exports(result, metrics, out_dir, name=name or os.path.basename(result.info.path))
        paths |= lab.paths
        warnings.extend(lab.warnings)
        folder = AnalysisFolder(out_dir, video=Path(video))
        pending: tuple[str, ...] = ()
        if report_files:
            paths |= write_reports(folder)
        else:
            pending = folder.report_names()
        report("artifacts", 1.0)
        return AnalysisOutcome(
            result=result,
            metrics=metrics,
            artifacts=paths,
            warnings=warnings,
            metrics_error=metrics_error,
            report_pending=pending,
        )

    def readiness(self) -> dict[str, str]:
        """Each dependency -> "ok" or why not. The default preset's models must resolve; Triton and
        the kinematics service must answer their readiness endpoints when configured."""
        checks: dict[str, str] = {}
        try:
            self.models(AnalysisSpec())
            checks["models"] = "ok"
        except Exception as exc:  # readiness reports every failure as text
            checks["models"] = str(exc)
        if self.settings.triton_url:
            checks["triton"] = _triton_ready(self.settings.triton_url)
        if self.kinematics_url:
            checks["kinematics"] = _http_ready(self.kinematics_url.rstrip("/") + "/readyz")
        return checks


class AnalysisFolder:
    """An analysis folder as the report writers read it: ``poses.json``, ``metrics.json`` (absent for a
    partial result) and the analysed ``video``. Documents are read once, when first used."""

    def __init__(self, path: Path, *, video: Path) -> None:
        self.path = path
        self.video = video

    @cached_property
    def poses(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.path / "poses.json").read_text(encoding="utf-8"))
        return doc

    @cached_property
    def metrics(self) -> KinematicsResponse | None:
        path = self.path / FILES["metrics"]
        return read_metrics(path) if path.is_file() else None

    def writers(self) -> list[ReportWriter]:
        """The report writers that apply to this folder (those needing metrics only when it has them)."""
        has_metrics = (self.path / FILES["metrics"]).is_file()
        return [w for w in REPORT_WRITERS if has_metrics or not w.needs_metrics]

    def report_names(self) -> tuple[str, ...]:
        """The artifacts the report of this folder has."""
        return tuple(name for writer in self.writers() for name in writer.names)


@dataclass(frozen=True)
class ReportWriter:
    """Report files derived from an analysis folder. ``names``: the artifacts ``write`` produces (names of
    :data:`gateway.jobs.ARTIFACTS`); ``needs_metrics``: written only for an analysis with running metrics."""

    names: tuple[str, ...]
    write: Callable[[AnalysisFolder], dict[str, Path]]
    needs_metrics: bool = True


def _plots(folder: AnalysisFolder) -> dict[str, Path]:
    assert folder.metrics is not None
    frames = folder.poses["frames"]
    kps3d = np.array([f["keypoints3d"] for f in frames], dtype=np.float64)  # null -> NaN
    # only the joint positions and the up axis are read (metric= matters to the kinematics, not to a plot)
    motion = motion_from_h36m(np.array([f["t"] for f in frames], dtype=np.float64), kps3d, metric=False)
    unit = folder.poses["units"]["keypoints3d"]  # "m" when scaled to the runner's height
    return write_plots(
        folder.metrics,
        folder.path,
        joints=motion.joints,
        up=motion.up,
        unit="m" if unit == "m" else "model units",
    )


def _xlsx(folder: AnalysisFolder) -> dict[str, Path]:
    assert folder.metrics is not None
    path = folder.path / FILES["xlsx"]
    write_xlsx(folder.metrics, path)
    return {"xlsx": path}


def _viewer(folder: AnalysisFolder) -> dict[str, Path]:
    return write_viewer(folder.path, video=folder.video)


#: the report, in the order it is written: the plots first (what a coach opens), the viewer's video last
#: (it decodes the video again: the longest). A new report file is one more entry here and in
#: :data:`gateway.jobs.ARTIFACTS`.
REPORT_WRITERS: tuple[ReportWriter, ...] = (
    ReportWriter(("angles_plot", "steps_plot", "trajectories_plot"), _plots),
    ReportWriter(("xlsx",), _xlsx),
    ReportWriter(("viewer_video", "viewer"), _viewer, needs_metrics=False),
)


def report_artifacts() -> frozenset[str]:
    """The artifacts a report may have (written after the analysis' result)."""
    return frozenset(name for writer in REPORT_WRITERS for name in writer.names)


def write_reports(
    folder: AnalysisFolder, *, failed: Callable[[ReportWriter, Exception], None] | None = None
) -> dict[str, Path]:
    """Write every report file of ``folder`` (:data:`REPORT_WRITERS`); returns name -> path. Each file is
    replaced atomically, so an interrupted report leaves whole files or none, and writing it again is safe.
    A writer's error is raised, or, with ``failed``, passed to it and the next writer runs."""
    paths: dict[str, Path] = {}
    for writer in folder.writers():
        try:
            paths |= writer.write(folder)
        except Exception as exc:
            if failed is None:
                raise
            failed(writer, exc)
    return paths


def kinematics_request(
    seq: LiftedSequence, runner: RunnerInfo | None = None, time_base: TimeBaseIn | None = None
) -> KinematicsRequest:
    """The kinematics request for an analysed sequence (3D, the 2D it came from, swaps, runner info, and how
    its times were made real time when that is known)."""
    info = runner or RunnerInfo()
    return KinematicsRequest.from_poses(
        seq.t,
        seq.kps3d,
        metric=seq.metric,
        keypoints2d=seq.kps2d,
        skeleton2d=seq.skeleton.name,
        image_wh=seq.image_wh,
        swapped=seq.swapped_joints,
        lifter=seq.lifter,
        runner=KinematicsRunner(height_m=info.height_m, treadmill_speed_mps=info.treadmill_speed_mps),
        time_base=time_base,
    )


def video_time_base(info: VideoInfo, runner: RunnerInfo) -> TimeBaseIn | None:
    """How a video's times were made real time: the user's slow-motion factor, the capture-rate metadata's,
    or None (the nominal rate, to be checked from physics)."""
    if runner.slowmo is not None:
        return TimeBaseIn(factor=runner.slowmo, source="user")
    if info.capture_fps is not None and info.time_scale != 1.0:
        return TimeBaseIn(factor=info.time_scale, source="metadata")
    return None


def running_metrics(
    seq: LiftedSequence,
    client: KinematicsClient,
    runner: RunnerInfo,
    *,
    relift: Callable[[FloatArray, FloatArray], LiftedSequence],
    time_base: TimeBaseIn | None = None,
) -> tuple[LiftedSequence, KinematicsResponse]:
    """The running metrics of an analysed sequence, for offline analyses and live windows alike.

    ``time_base`` says how ``seq.t`` was made real time when that is known; otherwise the kinematics engine
    checks it from physics, and when it finds a slow-motion factor the sequence is re-run through the
    post-pass with the corrected times (``relift(raw, t)``, :func:`services.pose.stages.lift_sequence`: the
    2D cleaning filters in real time) and analysed again on them. Returns the sequence the metrics were
    computed on and the kinematics response. Raises the kinematics engine's domain errors."""
    resp = client.analyze(kinematics_request(seq, runner, time_base))
    found = resp.time_base
    if time_base is not None or found is None or not found.get("applied") or not found.get("factor"):
        return seq, resp
    factor = float(found["factor"])
    estimated = TimeBaseIn(
        factor=factor, source="estimated", low=found.get("low"), high=found.get("high"), cue=found.get("cue")
    )
    seq = relift(seq.kps2d_raw, seq.t / factor)
    again = client.analyze(kinematics_request(seq, runner, estimated))
    # the estimate's evidence (cues, notes) stays with the result
    return seq, again.model_copy(update={"time_base": {**found, **(again.time_base or {})}})


class _Timed:
    """A pose backend that reports how long each call takes (role, seconds)."""

    def __init__(self, inner: PoseBackend, observe: Callable[[str, float], None]) -> None:
        self._inner = inner
        self._observe = observe
        self.models = inner.models
        self.pose_codec = inner.pose_codec
        self.lifter_codec = inner.lifter_codec

    def detect(self, image: NDArray[np.uint8], *, score_threshold: float) -> FloatArray:
        t0 = time.perf_counter()
        try:
            return self._inner.detect(image, score_threshold=score_threshold)
        finally:
            self._observe("detector", time.perf_counter() - t0)

    def pose2d(self, image: NDArray[np.uint8], boxes: FloatArray) -> FloatArray:
        t0 = time.perf_counter()
        try:
            return self._inner.pose2d(image, boxes)
        finally:
            self._observe("pose2d", time.perf_counter() - t0)

    def lift(self, kps2d_h36m: FloatArray, *, image_wh: tuple[int, int]) -> FloatArray:
        t0 = time.perf_counter()
        try:
            return self._inner.lift(kps2d_h36m, image_wh=image_wh)
        finally:
            self._observe("lifter", time.perf_counter() - t0)


def _http_ready(url: str) -> str:
    try:
        r = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        log.debug("readiness probe failed", extra={"url": url, "error": str(exc)})
        return "unreachable"
    return "ok" if r.status_code == 200 else f"not ready (HTTP {r.status_code})"


def _triton_ready(url: str) -> str:
    import tritonclient.grpc as grpcclient

    try:
        client = grpcclient.InferenceServerClient(url)
        try:
            return "ok" if client.is_server_ready(client_timeout=2.0) else "not ready"
        finally:
            client.close()
    except Exception as exc:  # tritonclient raises its own and grpc's errors
        log.debug("readiness probe failed", extra={"url": url, "error": str(exc)})
        return "unreachable"
