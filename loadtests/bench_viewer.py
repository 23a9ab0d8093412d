"""Viewer page benchmark (``make bench``): size, load time and scrubbing of a 10-minute analysis.

Analyses a real clip (embedded models), repeats its frames to 36,000 (10 minutes at 60 fps, the clock
continued, events and steps shifted) and writes the viewer page for it, then opens the page in headless
Chromium (the system's, software WebGL) from file:// with the network refused and measures:

* page size in bytes: the clip's own page, the 36,000-frame page made of exact repeats, and one whose
  repeats carry keypoint noise (0.5 px, 2 mm), which cannot compress like a copy (the honest upper bound);
* time to ``data-viewer-state=ready`` (median of 3 loads in fresh browser contexts), from the navigation
  start, as the page's own clock reports it (``performance.mark("gaitway-ready")``);
* time per scrub step: 200 random frames set through the scrubber (value + ``input`` event) and 200
  keyboard steps (``ArrowRight`` keydown), each timed (mean, p95) until the browser has produced the frame
  that shows it ("painted": two animation frames, so GPU raster and compositing count), and again as the
  page's own synchronous work per step ("script": handler + ``gaitwayViewer.renderNow()``), with the
  redraw time of each panel;
* playback at 1x on the page's own clock for 4 s: redraws per second and whether the clock kept real time.

In headless Chromium WebGL and compositing run in software (SwiftShader), on the CPUs the page also uses:
"painted" times are far above what a browser with a GPU shows; "script" times are the page's part.
The video is left out (no proxy of a 10-minute clip is encoded), so the numbers are the page's own cost.
Results go to a JSON file and a Markdown table beside it.

    python loadtests/bench_viewer.py --video CLIP.mp4 --out loadtests/results/viewer.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.core import AnalysisSpec, Engine
from services.settings import Settings
from services.viewer import render_viewer
from services.viewer.synthetic import repeat_analysis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the real-browser helper of the tests

from tests.browser import chromium_path, launch, open_page  # noqa: E402

FRAMES = 36_000
STEPS = 200
LOADS = 3
READY = "body[data-viewer-state=ready]"

_STEPS_JS = """async ([steps, mode, painted]) => {
    // steps through the scrubber (random frames) or the keyboard (next frame); with painted, each step is
    // timed until the browser has produced the frame showing it (two animation frames: the page draws in
    // the first); else only the page's own synchronous work (the event handler and every panel's redraw)
    const n = Number(document.body.dataset.frames);
    const input = document.getElementById('scrubber');
    const frame = () => new Promise(requestAnimationFrame);
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const times = [];
    for (let k = 0; k < steps; k++) {
        const t0 = performance.now();
        if (mode === 'scrubber') {
            input.value = String(Math.floor(rand() * n));
            input.dispatchEvent(new Event('input', {bubbles: true}));
        } else {
            document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));
        }
        if (painted) {
            await frame();
            await frame();
        } else {
            gaitwayViewer.renderNow();
        }
        times.push(performance.now() - t0);
        if (!painted && k % 10 === 9) for (let f = 0; f < 3; f++) await frame();  // let the GPU catch up
    }
    return times;
}"""

_PANELS_JS = """async (steps) => {
    const n = Number(document.body.dataset.frames);
    gaitwayViewer.profile(true);
    for (let k = 0; k < steps; k++) {
        gaitwayViewer.seek(Math.floor(((k * 7919) % steps) / steps * n));
        gaitwayViewer.renderNow();
        if (k % 10 === 9) for (let f = 0; f < 3; f++) await new Promise(requestAnimationFrame);
    }
    return gaitwayViewer.profile(false);
}"""

_PLAYBACK_JS = """async (ms) => {
    const P = gaitwayViewer;
    P.seek(1000);
    for (let f = 0; f < 5; f++) await new Promise(requestAnimationFrame);
    P.profile(true);
    const t0 = performance.now();
    P.play();
    await new Promise((r) => setTimeout(r, ms));
    P.pause();
    const seconds = (performance.now() - t0) / 1000;
    const counted = P.profile(false);
    const advanced = P.data.t[P.frame] - P.data.t[1000];
    return {
        seconds: Math.round(seconds * 1000) / 1000,
        redraws_per_s: Math.round((counted.renders / seconds) * 10) / 10,
        clip_fps: Math.round(P.data.fpsReal * 10) / 10,
        realtime_ratio: Math.round((advanced / seconds) * 1000) / 1000,
    };
}"""


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
        "n": len(values),
    }


def analyse(video: Path, out: Path, preset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    shared = Path(os.environ.get("GAITWAY_SHARED_DIR", REPO.parent / "shared")).resolve()
    settings = Settings(models_dir=f"{shared / 'models'}:{shared / 'reference'}")
    outcome = Engine(settings).analyze(video, out, AnalysisSpec(preset=preset))
    if outcome.metrics is None:
        raise SystemExit(f"{video}: no running metrics ({outcome.metrics_error}); pick a running clip")
    return json.loads((out / "poses.json").read_text()), json.loads((out / "metrics.json").read_text())


def measure_page(browser: Any, path: Path, *, scrub: bool) -> dict[str, Any]:
    ready: list[float] = []
    result: dict[str, Any] = {"bytes": path.stat().st_size}
    for run in range(LOADS):
        with open_page(path, browser=browser) as session:
            page = session.page
            page.wait_for_selector(READY, timeout=120_000)
            ready.append(page.evaluate("performance.getEntriesByName('gaitway-ready')[0].startTime"))
            if session.errors or session.blocked:
                raise SystemExit(f"{path.name}: errors {session.errors}, network {session.blocked}")
            if scrub and run == 0:
                result["frames"] = int(page.get_attribute("body", "data-frames") or 0)
                result["webgl"] = page.evaluate(
                    "(() => { const g = document.querySelector('#three-view canvas').getContext('webgl2');"
                    " const e = g.getExtension('WEBGL_debug_renderer_info');"
                    " return e ? g.getParameter(e.UNMASKED_RENDERER_WEBGL) : g.getParameter(g.RENDERER); })()"
                )
                # playback without a video (the page's own clock) at 1x for 4 s: frames drawn per second
                result["playback"] = page.evaluate(_PLAYBACK_JS, 4000)
                # a step until the browser has produced the frame showing it
                result["scrub_painted_ms"] = stats(page.evaluate(_STEPS_JS, [STEPS, "scrubber", True]))
                page.evaluate("gaitwayViewer.seek(0)")
                result["keyboard_painted_ms"] = stats(page.evaluate(_STEPS_JS, [STEPS, "keyboard", True]))
                # the page's own work per step (main thread), and where it goes, per panel
                result["scrub_script_ms"] = stats(page.evaluate(_STEPS_JS, [STEPS, "scrubber", False]))
                result["keyboard_script_ms"] = stats(page.evaluate(_STEPS_JS, [STEPS, "keyboard", False]))
                per_panel = page.evaluate(_PANELS_JS, STEPS)
                result["panel_ms_per_step"] = {k: round(v / STEPS, 3) for k, v in per_panel["ms"].items()}
    result["ready_ms"] = {"median": round(statistics.median(ready), 1), "runs": [round(r, 1) for r in ready]}
    return result


def markdown(r: dict[str, Any]) -> str:
    long = r["pages"]["long"]
    labels = {"clip": "the clip itself", "long": "exact repeats", "long_noisy": "repeats + keypoint noise"}
    rows = [
        f"| {labels.get(name, name)} | {r['frames'][name]} | {p['bytes'] / 1e6:.2f} MB | "
        f"{p['ready_ms']['median']:.0f} ms |"
        for name, p in r["pages"].items()
    ]
    return "\n".join(
        [
            f"# Viewer page benchmark — {r['source']}",
            "",
            f"{r['machine']}; {r['chromium']}, WebGL: {long.get('webgl', '?')}; {r['date']}.",
            "Pages opened from file:// with the network refused; ready = `data-viewer-state=ready`, "
            f"median of {LOADS} loads, from the navigation start.",
            "",
            "| page | frames | size | ready |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Per step on the {FRAMES}-frame page: *painted* = until the browser has produced the frame that "
            "shows it (two animation frames; GPU raster and compositing included), *script* = the page's own "
            "synchronous work (event handler + every panel's redraw):",
            "",
            "| step (ms) | mean | p50 | p95 | max | n |",
            "|---|---|---|---|---|---|",
            *(
                f"| {label} | {s['mean']} | {s['p50']} | {s['p95']} | {s['max']} | {s['n']} |"
                for label, s in (
                    ("scrubber, random frame, painted", long["scrub_painted_ms"]),
                    ("keyboard, next frame, painted", long["keyboard_painted_ms"]),
                    ("scrubber, random frame, script", long["scrub_script_ms"]),
                    ("keyboard, next frame, script", long["keyboard_script_ms"]),
                )
            ),
            "",
            "Redraw time per random-frame step by panel (ms): "
            + ", ".join(f"{k} {v}" for k, v in long["panel_ms_per_step"].items())
            + ".",
            "",
            f"Playback at 1x without video for {long['playback']['seconds']} s: "
            f"{long['playback']['redraws_per_s']} redraws/s for a {long['playback']['clip_fps']} fps clip, "
            f"the clock ran at {long['playback']['realtime_ratio']}x real time.",
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, required=True, help="a running clip to analyse and repeat")
    ap.add_argument("--out", type=Path, required=True, help="results JSON (a .md table is written beside)")
    ap.add_argument("--preset", default="lightning")
    ap.add_argument("--frames", type=int, default=FRAMES)
    args = ap.parse_args()
    if chromium_path() is None:
        raise SystemExit("no chromium on PATH: the viewer benchmark needs Debian's chromium")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        poses, metrics = analyse(args.video, tmp / "analysis", args.preset)
        pages = {"clip": tmp / "clip.html", "long": tmp / "long.html", "long_noisy": tmp / "long_noisy.html"}
        frames = {"clip": len(poses["frames"]), "long": args.frames, "long_noisy": args.frames}
        pages["clip"].write_text(render_viewer(poses, metrics, video_src=None, title="clip"))
        long_poses, long_metrics = repeat_analysis(poses, metrics, args.frames)
        t0 = time.perf_counter()
        pages["long"].write_text(render_viewer(long_poses, long_metrics, video_src=None, title="long"))
        render_s = time.perf_counter() - t0
        noisy = repeat_analysis(poses, metrics, args.frames, noise_px=0.5, noise_m=0.002)
        pages["long_noisy"].write_text(render_viewer(*noisy, video_src=None, title="long, noisy"))
        with launch() as browser:
            version = browser.version
            results_pages = {
                name: measure_page(browser, path, scrub=name == "long") for name, path in pages.items()
            }
    results: dict[str, Any] = {
        "source": args.video.name,
        "frames": frames,
        "fps": poses["video"].get("fps"),
        "render_s_long": round(render_s, 2),
        "pages": results_pages,
        "chromium": f"Chromium {version} (headless)",
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
