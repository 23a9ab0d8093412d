"""``gaitway`` command line: the embedded default (no servers).

    gaitway analyze VIDEO --out DIR [--preset thunder|lightning|...] [--height M] [--slowmo F] ...
    gaitway evaluate h36m|coco|rbds|views|mocap   accuracy against ground truth (see gateway/evaluate.py)
    gaitway models [list]     list models and presets and whether each model file is present
    gaitway models fetch NAME|PRESET    download official weights (services/pose/fetch.py)
    gaitway compare A/ B/ [--out FILE]   compare two analyses: one HTML page, a metric table on stdout

Errors never print a traceback: one line on stderr and the exit code of :data:`services.errors.ERROR_TABLE`.

Start-up is part of the interface: this module imports only light modules (argparse, the error tree, the
argument types), so ``gaitway --help``, ``gaitway analyze --help`` and argument errors answer without
loading numpy, pydantic or a model runtime; each command imports its modules when it runs
(``tests/test_cli_startup.py`` holds this).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gateway.argtypes import box, port, positive_float, positive_int
from services.errors import GaitwayError, InputError, ModelError, status_of

if TYPE_CHECKING:
    from services.kinematics.schema import KinematicsResponse
    from services.pose.models import ModelStore
    from services.settings import Settings

log = logging.getLogger("gaitway")

#: the module of ``gaitway models fetch`` (``add_arguments(parser)``, ``run(args) -> int``)
FETCH_MODULE = "services.pose.fetch"


def build_parser() -> argparse.ArgumentParser:
    """The ``gaitway`` parser. It is built from light modules only (no numpy, pydantic, model runtime...),
    so ``--help`` and argument errors answer at once; each command imports what it needs when it runs.
    Options whose default is a setting default to None here and take the setting's value when the
    command runs (:func:`main`)."""
    from gateway import evaluate

    p = argparse.ArgumentParser(
        prog="gaitway",
        description="Markerless running-gait analysis",
        epilog="Defaults named GAITWAY_* are settings: environment variables (see the README).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="2D and 3D skeleton of the runner in a video")
    a.add_argument("video", type=Path)
    a.add_argument("--out", type=Path, required=True, help="output folder (created)")
    a.add_argument("--preset", help="model preset (default: GAITWAY_PRESET; `gaitway models` lists them)")
    a.add_argument("--pose2d", default="", help="override the preset's 2D pose model")
    a.add_argument("--lifter", default="", help="override the preset's lifter model")
    a.add_argument("--models-dir", help="model search path, an os.pathsep list (default: GAITWAY_MODELS_DIR)")
    a.add_argument("--height", type=positive_float, help="runner height in metres (3D output in metres)")
    a.add_argument("--slowmo", type=positive_float, help="slow-motion factor (4 = plays 4x slower than life)")
    a.add_argument("--treadmill-speed", type=positive_float, help="belt speed in m/s, if on a treadmill")
    a.add_argument(
        "--triton",
        metavar="URL",
        help="Triton gRPC host:port to run the models on (default: GAITWAY_TRITON_URL)",
    )
    a.add_argument("--kinematics-url", default="", help="kinematics service URL (default: in-process)")
    a.add_argument(
        "--det-interval",
        type=positive_int,
        help="run the detector at least every N frames (default: GAITWAY_DET_INTERVAL_FRAMES)",
    )
    a.add_argument(
        "--max-long-side",
        type=positive_int,
        help="frames are downscaled to this long side, px (default: GAITWAY_MAX_LONG_SIDE_PX)",
    )
    a.add_argument("--runner-box", type=box, help="x1,y1,x2,y2 around the runner in the first frame")
    a.add_argument("--cutoff-hz", type=positive_float, help="low-pass cutoff of the 2D cleaning")
    a.add_argument("--threads", type=positive_int, help="onnxruntime threads (default: GAITWAY_ORT_THREADS)")
    a.add_argument(
        "--workers", type=positive_int, help="2D pose requests in flight (default: GAITWAY_POSE_WORKERS)"
    )
    a.add_argument("--allow-truncated", action="store_true", help="analyse what decodes of a damaged file")
    a.add_argument("--overlay", action="store_true", help="also write overlay.mp4 (second decoding pass)")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate.add_parser(sub)
    sv = sub.add_parser("serve", help="run the HTTP + gRPC gateway (settings: GAITWAY_* environment)")
    sv.add_argument("--http-port", type=port, help="override GAITWAY_HTTP_PORT")
    sv.add_argument("--grpc-port", type=port, help="override GAITWAY_GRPC_PORT")
    k = sub.add_parser("keys", help="manage the gateway's API keys (in its job store)")
    k.add_argument(
        "--data-dir",
        type=Path,
        help="the gateway's data folder, whose SQLite store holds the keys (default: GAITWAY_DATA_DIR; "
        "the local stack's is out/stack/var)",
    )
    k.add_argument(
        "--database-url", help="the gateway's store URL, PostgreSQL; wins (default: GAITWAY_DATABASE_URL)"
    )
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key and print its secret once")
    kc.add_argument("name")
    kc.add_argument("--jobs-per-day", type=positive_int)
    kc.add_argument("--requests-per-min", type=positive_int)
    ksub.add_parser("list", help="list keys (never their secrets)")
    ksub.add_parser("revoke", help="revoke a key").add_argument("key_id")
    _add_models(sub)
    c = sub.add_parser("compare", help="compare two analyses (folders written by analyze): one HTML page")
    c.add_argument("a", type=Path, help="run A's folder (the reference)")
    c.add_argument("b", type=Path, help="run B's folder (differences are B - A)")
    c.add_argument(
        "--out",
        type=Path,
        help="the page to write (default: A/compare-<B's folder name>.html; a folder: "
        "FOLDER/comparison.html); its data goes beside it as .json",
    )
    c.add_argument("--labels", nargs=2, metavar=("A", "B"), help="names of the runs (default: the folders')")
    c.add_argument(
        "--include-flagged", action="store_true", help="average gait cycles with quality flags as well"
    )
    return p


def _add_models(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``gaitway models [list]`` (list is the default) and, with its module, ``gaitway models fetch``."""
    models_dir = "model search path, an os.pathsep list (default: GAITWAY_MODELS_DIR)"
    m = sub.add_parser("models", help="list models and presets (default), or fetch official weights")
    m.add_argument("--models-dir", help=models_dir)
    msub = m.add_subparsers(dest="models_command", title="commands")
    # SUPPRESS: the option given before `list` is not reset by the sub-command's default
    msub.add_parser(
        "list", help="list models and presets and whether each file is present (default)"
    ).add_argument("--models-dir", default=argparse.SUPPRESS, help=models_dir)
    fetch = _fetch_module()
    if fetch is not None:
        fetch.add_arguments(msub.add_parser("fetch", help="download a model or a preset's models"))


def _fetch_module() -> ModuleType | None:
    """``services.pose.fetch``, or None in an installation without it."""
    try:
        import services.pose.fetch as fetch  # an import statement: `python -X importtime` times it
    except ModuleNotFoundError as exc:
        if exc.name != FETCH_MODULE:
            raise
        return None
    return fetch


def _settings() -> Settings:
    """The settings from the environment; a bad value is an InputError naming the variable."""
    from pydantic import ValidationError

    from services.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "GAITWAY_" + "_".join(str(part) for part in first["loc"]).upper()
        raise InputError(f"setting {name}: {first['msg']}") from None


def _store(settings: Settings, models_dir: str | None) -> ModelStore:
    from services.pose.models import ModelStore

    if models_dir is not None:
        settings = settings.model_copy(update={"models_dir": models_dir})
    return ModelStore(settings.model_search_path())


def _analyze(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from gateway.core import AnalysisSpec, Engine, RunnerInfo

    updates = {
        "models_dir": args.models_dir,
        "triton_url": args.triton,
        "ort_threads": args.threads,
    }
    run_settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    engine = Engine(run_settings, kinematics_url=args.kinematics_url or "")
    spec = AnalysisSpec(
        runner=RunnerInfo(height_m=args.height, treadmill_speed_mps=args.treadmill_speed, slowmo=args.slowmo),
        preset=args.preset,
        pose2d=args.pose2d,
        lifter=args.lifter,
        allow_truncated=args.allow_truncated,
        overlay=args.overlay,
        max_long_side=args.max_long_side,
        det_interval=args.det_interval,
        runner_box=args.runner_box,
        cutoff_hz=args.cutoff_hz,
        pose_workers=args.workers,
    )
    bar: tqdm[Any] | None = None

    def progress(stage: str, fraction: float) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=100, unit="%", desc="analysing", file=sys.stderr)
        bar.set_description(stage)
        bar.update(round(100 * fraction) - bar.n if stage == "pose" else 0)

    try:
        outcome = engine.analyze(args.video, args.out, spec, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    result, resp = outcome.result, outcome.metrics
    ms = result.timings.ms_per_frame()
    sys.stdout.write(
        f"{result.frames_with_pose}/{len(result.t)} frames with a skeleton; "
        f"{1000 / ms['total']:.1f} frames/s end to end; 3D units: {result.units3d}\n"
    )
    if resp is not None:
        _print_summary(resp)
        for flag in resp.flags:
            sys.stdout.write(f"note: {flag}\n")
    for w in outcome.warnings:
        sys.stdout.write(f"warning: {w}\n")
    for name, path in outcome.artifacts.items():
        sys.stdout.write(f"  {name:<14} {path}\n")
    err = outcome.metrics_error
    if err is not None:  # the poses are written, the running metrics are not: never a silent success
        sys.stderr.write(f"gaitway: partial result [{err.code}]: poses written, no running metrics: {err}\n")
        return status_of(err).exit_code
    return 0


def _print_summary(resp: KinematicsResponse) -> None:
    """The summary table: mean +- SD over the steps that count, n, typical range and where it was measured."""
    from services.kinematics.metric_defs import METRIC_DEFS

    w = sys.stdout.write
    w(f"{'metric':<32}{'mean':>8}{'SD':>7}  {'unit':<13}{'n':>4}  {'typical':<12}source\n")
    for d in METRIC_DEFS:
        summ = resp.summary.get(d.name)
        if summ is None or summ.mean is None:
            continue
        sources = sorted({s.sources[d.name] for s in resp.steps if d.name in s.sources})
        errors = [e for s in resp.steps if (e := s.errors_deg.get(d.name)) is not None]
        where = ", ".join(sources)
        if errors:
            where += f" (validated RMSE {min(errors):.1f}-{max(errors):.1f} deg)"
        sd = "" if summ.sd is None else f"{summ.sd:.1f}"
        normal = "" if d.normal is None else f"{d.normal[0]:g}-{d.normal[1]:g}"
        unit = resp.units.get(d.name, d.unit)
        w(f"{d.title:<32}{summ.mean:>8.1f}{sd:>7}  {unit:<13}{summ.n:>4}  {normal:<12}{where}\n")
    if resp.foot_strike_pattern:
        w("foot strike: " + ", ".join(f"{k} {v}" for k, v in sorted(resp.foot_strike_pattern.items())) + "\n")


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from services.pose.models import manifests, presets

    store = _store(settings, args.models_dir)
    sys.stdout.write("models:\n")
    for name, m in sorted(manifests().items()):
        try:
            found = store.resolve(name)
            state = "ok" if found.verified else "present (no pinned checksum)"
        except ModelError as exc:
            state = "corrupt" if exc.code == "model_corrupt" else "missing"
        note = "  RANDOM WEIGHTS" if m.random_weights else ""
        sys.stdout.write(f"  {name:<26} {m.role:<9} {m.family:<8} {m.skeleton:<8} {state}{note}\n")
    sys.stdout.write("presets:\n")
    for name, p in sorted(presets().items()):
        sys.stdout.write(f"  {name:<22} {p.detector} + {p.pose2d} + {p.lifter}: {p.description}\n")
    return 0


def _compare(args: argparse.Namespace) -> int:
    import json

    from services.viewer.compare import data_path, format_table, write_comparison

    out = args.out or args.a / f"compare-{args.b.resolve().name}.html"
    labels = (args.labels[0], args.labels[1]) if args.labels else None
    page = write_comparison(args.a, args.b, out, labels=labels, include_flagged=args.include_flagged)
    data = json.loads(data_path(page).read_text(encoding="utf-8"))
    sys.stdout.write(format_table(data))
    for w in data["warnings"]:
        sys.stdout.write(f"warning: {w}\n")
    sys.stdout.write(f"  {'page':<14} {page}\n  {'data':<14} {data_path(page)}\n")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.server import run
    from gateway.telemetry import configure_logging

    overrides = {
        k: v for k, v in (("http_port", args.http_port), ("grpc_port", args.grpc_port)) if v is not None
    }
    gw = settings.model_copy(update=overrides)
    configure_logging(json_logs=gw.log_json)
    return run(gw)


def _keys(args: argparse.Namespace, gw: Settings) -> int:
    from gateway.store import SqlStore

    updates = {"data_dir": args.data_dir, "database_url": args.database_url}
    gw = gw.model_copy(update={k: v for k, v in updates.items() if v is not None})
    store = SqlStore(gw.db_url)
    try:
        if args.keys_command == "create":
            key, secret = store.create_key(
                args.name,
                jobs_per_day=args.jobs_per_day or gw.default_jobs_per_day,
                requests_per_min=args.requests_per_min or gw.default_requests_per_min,
            )
            sys.stdout.write(f"{key.id} {key.name}\nsecret (shown once): {secret}\n")
        elif args.keys_command == "list":
            for key in store.list_keys():
                state = "revoked" if key.revoked else "active"
                sys.stdout.write(
                    f"{key.id}  {key.name:<20} {key.jobs_per_day:>6} jobs/day "
                    f"{key.requests_per_min:>5} req/min  {state}\n"
                )
        else:
            store.revoke_key(args.key_id)
            sys.stdout.write(f"revoked {args.key_id}\n")
    finally:
        store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(message)s"
    )
    try:
        if args.command == "compare":
            return _compare(args)
        settings = _settings()
        if args.command == "models" and args.models_command == "fetch":
            fetch = _fetch_module()
            assert fetch is not None  # the parser offers `fetch` only with its module
            code: int = fetch.run(args)
            return code
        if args.command == "analyze":
            return _analyze(args, settings)
        if args.command == "evaluate":
            from gateway import evaluate

            return evaluate.run(args, settings)
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "keys":
            return _keys(args, settings)
        return _models(args, settings)
    except GaitwayError as exc:
        sys.stderr.write(f"gaitway: error [{exc.code}]: {exc}\n")
        return status_of(exc).exit_code
    except KeyboardInterrupt:
        sys.stderr.write("gaitway: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
