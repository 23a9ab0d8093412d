"""Comparison of two analyses (services/viewer/compare.py, `gaitway compare`): gait-cycle normalisation,
difference curves, Welch's test on the metrics, refusals, and two real analyses of the treadmill clip."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import browser_fixture, open_page
from scipy.stats import ttest_ind_from_stats

from gateway.cli import main
from services.errors import ClipTooShortError, InputError, NoValidDataError, status_of
from services.kinematics.metric_defs import definitions
from services.pose.skeletons import COCO17
from services.viewer.compare import (
    POINTS,
    compare_runs,
    data_path,
    gait_cycles,
    normalise_cycle,
    render_comparison,
    welch,
    write_comparison,
)

FPS = 100.0
LABELS = ("before", "after")


# --- synthetic analyses ----------------------------------------------------------------------------------
def _contacts(first: float, durations: list[float]) -> np.ndarray:
    return first + np.concatenate([[0.0], np.cumsum(durations)])


def _phase(t: np.ndarray, contacts: np.ndarray) -> np.ndarray:
    """Cycles completed at each time: k at the k-th contact, linear in between (and beyond, by the edge
    cycles' rates)."""
    k = np.arange(contacts.size, dtype=float)
    inside = np.interp(t, contacts, k)
    before = (t - contacts[0]) / (contacts[1] - contacts[0])
    after = k[-1] + (t - contacts[-1]) / (contacts[-1] - contacts[-2])
    return np.where(t < contacts[0], before, np.where(t > contacts[-1], after, inside))


def knee_shape(p: np.ndarray) -> np.ndarray:
    """The analytic knee curve over one cycle (p in [0, 1])."""
    return 40.0 + 20.0 * np.sin(2 * np.pi * p) + 8.0 * np.cos(4 * np.pi * p)


def hip_shape(p: np.ndarray) -> np.ndarray:
    return 10.0 + 25.0 * np.cos(2 * np.pi * p)


def _summary(values: list[float]) -> dict[str, Any]:
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"mean": None, "sd": None, "ci95_low": None, "ci95_high": None, "n": 0}
    sd = float(x.std(ddof=1)) if x.size > 1 else None
    return {"mean": float(x.mean()), "sd": sd, "ci95_low": None, "ci95_high": None, "n": int(x.size)}


def synthetic_run(
    *,
    knee_offset: float = 0.0,
    durations: list[float] | None = None,
    first: float = 0.1234,
    swapped_frames: tuple[int, ...] = (),
    nan_frames: tuple[int, ...] = (),
    knee_source: str = "2d_corrected",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(poses, metrics) of a runner whose knee follows :func:`knee_shape` and hip :func:`hip_shape` over
    every cycle, left contacts at ``first`` + cumulated ``durations``, right contacts half a cycle later."""
    durations = durations or [0.70, 0.74, 0.66, 0.72, 0.68, 0.71, 0.69]
    left = _contacts(first, durations)
    right = (left[:-1] + left[1:]) / 2.0
    t_end = left[-1] + 0.25
    t = np.arange(0.0, t_end, 1.0 / FPS)
    n = t.size
    series: dict[str, np.ndarray] = {}
    for side, contacts in (("left", left), ("right", right)):
        p = _phase(t, contacts) % 1.0
        series[f"{side}_knee_flexion_deg"] = knee_shape(p) + knee_offset
        series[f"{side}_hip_flexion_deg"] = hip_shape(p)
    series["trunk_lean_deg"] = 5.0 + np.sin(4 * np.pi * _phase(t, left))
    for i in nan_frames:
        series["left_knee_flexion_deg"][i] = np.nan
    strikes = sorted(
        [("left", float(c)) for c in left] + [("right", float(c)) for c in right], key=lambda e: e[1]
    )
    events: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    rng = np.random.default_rng(7)
    for i, (side, ts) in enumerate(strikes):
        strike = {"side": side, "kind": "strike", "index": int(np.searchsorted(t, ts)), "t": ts}
        nxt = strikes[i + 1] if i + 1 < len(strikes) else None
        toe_t = ts + 0.25
        toe_off = (
            {"side": side, "kind": "toe_off", "index": int(np.searchsorted(t, toe_t)), "t": toe_t}
            if toe_t < t[-1]
            else None
        )
        events.append(strike)
        if toe_off is not None:
            events.append(toe_off)
        next_strike = (
            None
            if nxt is None
            else {"side": nxt[0], "kind": "strike", "index": int(np.searchsorted(t, nxt[1])), "t": nxt[1]}
        )
        knee_ic = float(np.interp(ts, t, series[f"{side}_knee_flexion_deg"])) + float(rng.normal(0, 1.5))
        cadence = None if nxt is None else 60.0 / (nxt[1] - ts)
        metrics = {
            "cadence_spm": cadence,
            "knee_flexion_ic_deg": knee_ic,
            "hip_flexion_ic_deg": float(np.interp(ts, t, series[f"{side}_hip_flexion_deg"])),
        }
        steps.append(
            {
                "side": side,
                "strike": strike,
                "toe_off": toe_off,
                "next_strike": next_strike,
                "metrics": metrics,
                "flags": [],
                "excluded": {},
                "sources": {"knee_flexion_ic_deg": knee_source, "hip_flexion_ic_deg": "2d_corrected"},
                "errors_deg": {},
                "yaw_deg": 5.0,
                "view": "sagittal",
                "foot_strike": None,
            }
        )
    events.sort(key=lambda e: e["t"])
    summary = {
        name: _summary([s["metrics"][name] for s in steps if s["metrics"][name] is not None])
        for name in ("cadence_spm", "knee_flexion_ic_deg", "hip_flexion_ic_deg")
    }
    units = {"cadence_spm": "steps/min", "knee_flexion_ic_deg": "deg", "hip_flexion_ic_deg": "deg"}
    sources = {k: "2d_corrected" for k in series}
    sources["left_knee_flexion_deg"] = sources["right_knee_flexion_deg"] = knee_source
    metrics_doc = {
        "schema": "gaitway.metrics",
        "schema_version": 1,
        "video": "synthetic.mp4",
        "fps": FPS,
        "steps": steps,
        "summary": summary,
        "summary_by_side": {},
        "asymmetry_pct": {},
        "events": events,
        "t": t.tolist(),
        "series": {k: [None if not math.isfinite(v) else float(v) for v in s] for k, s in series.items()},
        "flags": [],
        "units": units,
        "series_sources": sources,
        "view": {"kind": "sagittal", "yaw_deg": 5.0},
        "definitions": definitions(),
    }
    kps = [[100.0, 100.0, 0.9]] * len(COCO17.joints)
    poses_doc = {
        "schema": "gaitway.poses",
        "schema_version": 1,
        "video": {"file": "synthetic.mp4", "fps": FPS, "duration_s": float(t[-1])},
        "models": {"pose2d": {"name": "movenet-thunder"}, "lifter": {"name": "semgcn-h36m"}},
        "skeletons": {"keypoints2d": {"name": "coco17", "joints": list(COCO17.joints)}},
        "units": {"keypoints2d": "px", "keypoints3d": "m"},
        "processing": {"height_m": 1.78},
        "frames": [
            {"index": i, "t": float(t[i]), "swap_repaired": i in swapped_frames, "keypoints2d": kps}
            for i in range(n)
        ],
    }
    return poses_doc, metrics_doc


def _curve(data: dict[str, Any], angle: str, side: str) -> dict[str, Any]:
    return next(c for c in data["curves"] if c["angle"] == angle and c["side"] == side)


def _metric(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in data["metrics"] if m["name"] == name)


def _write_run(folder: Path, run: tuple[dict[str, Any], dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "poses.json").write_text(json.dumps(run[0]))
    (folder / "metrics.json").write_text(json.dumps(run[1]))
    return folder


# --- cycles and curves -----------------------------------------------------------------------------------
def test_normalise_cycle_of_an_analytic_signal() -> None:
    t = np.arange(0.0, 3.0, 0.01)
    start, end = 0.537, 1.291  # not on frames
    y = np.sin(2 * np.pi * (t - start) / (end - start))
    got = normalise_cycle(t, y, start, end)
    p = np.linspace(0.0, 1.0, POINTS)
    assert got.shape == (POINTS,)
    np.testing.assert_allclose(got, np.sin(2 * np.pi * p), atol=2e-3)
    y[100] = np.nan  # inside the cycle: the resampled curve says so
    assert np.isnan(normalise_cycle(t, y, start, end)).any()


def test_cycles_come_from_the_contacts_and_mean_curve_is_the_analytic_shape() -> None:
    run = synthetic_run()
    cycles, rejected = gait_cycles(run[1])
    # 8 left contacts -> 7 left cycles, 7 right contacts -> 6 right cycles; all complete
    assert [c.side for c in cycles].count("left") == 7 and [c.side for c in cycles].count("right") == 6
    assert rejected == []
    left = sorted(c.start for c in cycles if c.side == "left")
    np.testing.assert_allclose(left, _contacts(0.1234, [0.70, 0.74, 0.66, 0.72, 0.68, 0.71, 0.69])[:-1])

    data = compare_runs(run, run, labels=LABELS)
    p = np.linspace(0.0, 1.0, POINTS)
    for side, n in (("left", 7), ("right", 6)):
        c = _curve(data, "knee_flexion", side)
        assert c["a"]["n"] == n and c["a"]["cycles"] == n
        # cycles of different durations, each time-normalised: the mean is the analytic shape
        np.testing.assert_allclose(c["a"]["mean"], knee_shape(p), atol=0.05)
        assert max(c["a"]["sd"]) < 0.05
        np.testing.assert_allclose(_curve(data, "hip_flexion", side)["a"]["mean"], hip_shape(p), atol=0.05)
        assert c["a"]["toe_off_pct"] == pytest.approx(100 * 0.25 / 0.7, abs=2.5)


def test_a_missed_contact_leaves_its_cycles_out() -> None:
    _, metrics = synthetic_run()
    third_left = [e for e in metrics["events"] if e["kind"] == "strike" and e["side"] == "left"][3]
    metrics["events"] = [e for e in metrics["events"] if e is not third_left]
    cycles, rejected = gait_cycles(metrics)
    assert [c.side for c in cycles].count("left") == 5  # the doubled cycle is not a cycle
    assert len(rejected) == 1 and "missed" in rejected[0]["reason"]


def test_plus_five_degrees_of_knee_gives_a_five_degree_difference() -> None:
    a = synthetic_run()
    b = synthetic_run(knee_offset=5.0)
    data = compare_runs(a, b, labels=LABELS)
    for side in ("left", "right"):
        knee = _curve(data, "knee_flexion", side)
        assert len(knee["diff"]) == POINTS
        np.testing.assert_allclose(knee["diff"], 5.0, atol=1e-6)
        np.testing.assert_allclose(_curve(data, "hip_flexion", side)["diff"], 0.0, atol=1e-9)
        assert knee["diff_summary"]["mean_abs"] == pytest.approx(5.0)
    knee_ic = _metric(data, "knee_flexion_ic_deg")
    assert knee_ic["diff"] == pytest.approx(5.0)
    assert knee_ic["significant"] is True
    cadence = _metric(data, "cadence_spm")
    assert cadence["diff"] == 0.0 and cadence["significant"] is False
    assert _metric(data, "hip_flexion_ic_deg")["significant"] is False
    assert knee_ic["unit"] == "deg" and knee_ic["title"] == "Knee flexion at contact"
    assert cadence["unit"] == "steps/min" and cadence["title"] == "Cadence"


def test_identical_runs_differ_nowhere() -> None:
    run = synthetic_run()
    data = compare_runs(run, run, labels=LABELS)
    assert data["metrics"] and all(m["significant"] is False for m in data["metrics"])
    assert all(m["diff"] == 0.0 for m in data["metrics"])
    for c in data["curves"]:
        assert c["diff"] is not None and max(abs(v) for v in c["diff"]) == 0.0
    assert data["warnings"] == []


@pytest.mark.parametrize(
    "stats",
    [
        (10.0, 2.0, 12, 11.0, 2.5, 9),  # not significant
        (10.0, 2.0, 12, 12.2, 2.5, 9),  # near the boundary
        (10.0, 2.0, 12, 12.5, 2.5, 9),
        (17.2, 6.2, 14, 27.0, 6.3, 10),
        (48.0, 12.5, 11, 48.6, 18.6, 2),  # 2 steps: few degrees of freedom
        (0.36, 0.009, 16, 0.356, 0.012, 16),
        (5.0, 0.0, 8, 6.0, 1.0, 5),  # one SD zero
    ],
)
def test_welch_decision_matches_scipy(stats: tuple[float, float, int, float, float, int]) -> None:
    ma, sa, na, mb, sb, nb = stats
    got = welch(ma, sa, na, mb, sb, nb)
    ref = ttest_ind_from_stats(mb, sb, nb, ma, sa, na, equal_var=False)
    assert got["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert got["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert got["significant"] == (ref.pvalue < 0.05)
    assert got["diff"] == pytest.approx(mb - ma)
    lo, hi = got["ci"]
    assert (lo > 0 or hi < 0) == got["significant"]


def test_welch_near_the_boundary_is_decided_by_the_t_quantile() -> None:
    # pick B's mean so that |diff| sits just inside and just outside t_crit * SE
    base = welch(10.0, 2.0, 12, 10.0, 2.5, 9)
    half = base["half_width"]
    inside = welch(10.0, 2.0, 12, 10.0 + 0.999 * half, 2.5, 9)
    outside = welch(10.0, 2.0, 12, 10.0 + 1.001 * half, 2.5, 9)
    assert not inside["significant"] and outside["significant"]
    assert ttest_ind_from_stats(10.0 + 0.999 * half, 2.5, 9, 10.0, 2.0, 12, equal_var=False).pvalue > 0.05
    assert ttest_ind_from_stats(10.0 + 1.001 * half, 2.5, 9, 10.0, 2.0, 12, equal_var=False).pvalue < 0.05
    # Welch-Satterthwaite degrees of freedom, by hand
    va, vb = 4.0 / 12, 6.25 / 9
    assert base["df"] == pytest.approx((va + vb) ** 2 / (va**2 / 11 + vb**2 / 8))


def test_the_metric_table_uses_welch_on_the_summaries() -> None:
    a, b = synthetic_run(), synthetic_run(knee_offset=1.0)
    data = compare_runs(a, b, labels=LABELS)
    row = _metric(data, "knee_flexion_ic_deg")
    sa, sb = a[1]["summary"]["knee_flexion_ic_deg"], b[1]["summary"]["knee_flexion_ic_deg"]
    ref = ttest_ind_from_stats(sb["mean"], sb["sd"], sb["n"], sa["mean"], sa["sd"], sa["n"], equal_var=False)
    assert row["test"]["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert row["significant"] == (ref.pvalue < 0.05)
    assert (row["a"]["n"], row["b"]["n"]) == (sa["n"], sb["n"])


def test_flagged_cycles_are_left_out_of_that_angle_only() -> None:
    a = synthetic_run()
    t = np.asarray(a[1]["t"])
    first_left = a[1]["events"][0]["t"]
    swapped = int(np.searchsorted(t, first_left + 0.5))  # inside the first left and the first right cycle
    nan = int(np.searchsorted(t, first_left + 3 * 0.71))
    b = synthetic_run(swapped_frames=(swapped,), nan_frames=(nan,))
    data = compare_runs(a, b, labels=LABELS)
    left = _curve(data, "knee_flexion", "left")["b"]
    assert left["cycles"] == 7 and left["n"] == 5
    assert left["excluded"] == {"swap_repaired": 1, "missing": 1}
    assert _curve(data, "knee_flexion", "right")["b"]["excluded"] == {"swap_repaired": 1}
    assert _curve(data, "trunk_lean", "left")["b"]["n"] == 7  # a swap does not move the trunk line
    kept = compare_runs(a, b, labels=LABELS, include_flagged=True)
    assert _curve(kept, "knee_flexion", "left")["b"]["n"] == 6  # a missing value is never drawn


def test_different_angle_sources_are_warned_about() -> None:
    data = compare_runs(synthetic_run(), synthetic_run(knee_source="3d"), labels=LABELS)
    row = _metric(data, "knee_flexion_ic_deg")
    assert row["a"]["methods"] == ["2D sagittal"] and row["b"]["methods"] == ["3D"]
    assert "partly reflects the method" in row["warning"]
    assert _metric(data, "hip_flexion_ic_deg")["warning"] is None
    assert any("Knee flexion: before measured with 2D sagittal, after with 3D" in w for w in data["warnings"])


# --- refusals ---------------------------------------------------------------------------------------------
def test_a_run_without_metrics_is_refused() -> None:
    run = synthetic_run()
    with pytest.raises(NoValidDataError, match="run after has no running metrics") as err:
        compare_runs(run, (run[0], {}), labels=LABELS)
    assert err.value.code == "no_valid_data" and status_of(err.value).exit_code == 2
    empty = {**run[1], "steps": [], "summary": {k: {**v, "n": 0} for k, v in run[1]["summary"].items()}}
    with pytest.raises(NoValidDataError):
        compare_runs((run[0], empty), run, labels=LABELS)


def test_a_run_without_a_complete_cycle_is_refused() -> None:
    poses, metrics = synthetic_run(durations=[0.7, 0.7])  # 3 left contacts, 2 right
    first = {side: min(e["t"] for e in metrics["events"] if e["side"] == side) for side in ("left", "right")}
    metrics["events"] = [e for e in metrics["events"] if e["kind"] == "toe_off" or e["t"] == first[e["side"]]]
    assert gait_cycles(metrics) == ([], [])  # one contact of each foot: less than a stride
    with pytest.raises(ClipTooShortError, match="run before has no complete gait cycle") as err:
        compare_runs((poses, metrics), synthetic_run(), labels=LABELS)
    assert err.value.code == "clip_too_short"


def test_poses_of_another_analysis_are_refused() -> None:
    poses, metrics = synthetic_run()
    with pytest.raises(InputError, match="not from the same analysis"):
        compare_runs(({**poses, "frames": poses["frames"][:-5]}, metrics), synthetic_run(), labels=LABELS)


def test_write_comparison_and_cli_refuse_a_folder_without_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write_run(tmp_path / "a", synthetic_run())
    b = _write_run(tmp_path / "b", synthetic_run())
    (b / "metrics.json").unlink()
    with pytest.raises(NoValidDataError):
        write_comparison(a, b, tmp_path / "page.html")
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gaitway: error [no_valid_data]") and "Traceback" not in err[0]
    assert main(["compare", str(a), str(tmp_path / "nowhere")]) == 2


# --- the page ---------------------------------------------------------------------------------------------
def test_page_is_self_contained_and_carries_the_state_contract(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "run-one", synthetic_run())
    b = _write_run(tmp_path / "run-two", synthetic_run(knee_offset=5.0))
    page = write_comparison(a, b, tmp_path / "out", labels=("Mon </script><b>", "Thu"))
    assert page == tmp_path / "out" / "comparison.html"
    text = page.read_text()
    body = re.search(r"<body[^>]*>", text)
    assert body is not None
    assert 'data-viewer-state="loading"' in body.group(0)  # the script sets "ready" once drawn
    assert 'data-cycles-a="13"' in body.group(0) and 'data-cycles-b="13"' in body.group(0)
    assert 'setAttribute("data-viewer-state", "ready")' in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched
    assert "<script src" not in text and "<link" not in text
    assert text.count("</script>") == 2  # the label's </script> is escaped, in the table and the data
    assert "Mon &lt;/script&gt;&lt;b&gt;" in text and "Thu" in text
    assert "Welch" in text and "Satterthwaite" in text
    assert re.search(r"<tr data-metric='knee_flexion_ic_deg' class='sig'>", text)
    assert re.search(r"<tr data-metric='cadence_spm'>", text)
    data = json.loads(data_path(page).read_text())
    assert data["labels"] == ["Mon </script><b>", "Thu"]
    embedded = re.search(r'<script type="application/json" id="comparison-data">(.*?)</script>', text, re.S)
    assert embedded is not None and json.loads(embedded.group(1))["labels"] == data["labels"]


def test_render_needs_only_the_data() -> None:
    data = compare_runs(synthetic_run(), synthetic_run(), labels=LABELS)
    text = render_comparison(data, title="A title")
    assert "<title>A title</title>" in text and "before" in text and "after" in text


# --- two real analyses of the treadmill clip --------------------------------------------------------------
@pytest.fixture(scope="module")
def real_runs(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    video = shared / "data/running-treadmill-phone/IMG_5396.mp4"
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    out = []
    for preset in ("thunder", "lightning"):
        folder = tmp_path_factory.mktemp(preset)
        args = ["analyze", str(video), "--out", str(folder), "--preset", preset, "--height", "1.78"]
        assert main([*args, "--models-dir", dirs, "--no-progress"]) == 0
        out.append(folder)
    return out[0], out[1]


def _complete_cycles(metrics: dict[str, Any]) -> int:
    """Strikes followed by a strike of the same foot with exactly one strike of the other in between."""
    strikes = [e for e in metrics["events"] if e["kind"] == "strike"]
    count = 0
    for i, e in enumerate(strikes):
        later = strikes[i + 1 :]
        nxt = next((j for j, f in enumerate(later) if f["side"] == e["side"]), None)
        if nxt is not None and sum(f["side"] != e["side"] for f in later[:nxt]) == 1:
            count += 1
    return count


@pytest.mark.slow
def test_thunder_and_lightning_on_the_treadmill_clip(real_runs: tuple[Path, Path], tmp_path: Path) -> None:
    thunder, lightning = real_runs
    page = write_comparison(thunder, lightning, tmp_path / "cmp.html", labels=("thunder", "lightning"))
    text = page.read_text()
    data = json.loads(data_path(page).read_text())
    expected = [_complete_cycles(json.loads((d / "metrics.json").read_text())) for d in real_runs]
    assert min(expected) >= 10  # a 6.5 s clip at ~168 steps/min
    assert f'data-cycles-a="{expected[0]}"' in text and f'data-cycles-b="{expected[1]}"' in text
    assert [len(r["cycles"]) for r in data["runs"]] == expected
    assert "thunder" in text and "lightning" in text
    assert [r["models"]["pose2d"] for r in data["runs"]] == ["movenet-thunder", "movenet-lightning"]
    assert all(r["video"] == "IMG_5396.mp4" for r in data["runs"])
    # every metric of both summaries, the timing of the same clip agreeing between the two 2D models
    summary = json.loads((thunder / "metrics.json").read_text())["summary"]
    assert {m["name"] for m in data["metrics"]} == set(summary)
    for name in ("cadence_spm", "step_time_s"):
        assert _metric(data, name)["significant"] is False
    knee = _curve(data, "knee_flexion", "left")["a"]
    assert knee["n"] >= 1 and len(knee["mean"]) == POINTS
    assert min(knee["mean"]) >= 0.0 and max(knee["mean"]) < 130.0  # flexion over a running stride


@pytest.mark.slow
def test_cli_compare_prints_the_table(
    real_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    thunder, lightning = real_runs
    assert main(["compare", str(thunder), str(lightning), "--labels", "thunder", "lightning"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.match(r"metric\s+thunder\s+lightning\s+B - A\s+significant", lines[0])
    cadence = next(line for line in lines if line.startswith("Cadence"))
    assert cadence.rstrip().endswith("no")
    assert any(line.startswith("Knee flexion at contact") for line in lines)
    page = thunder / f"compare-{lightning.name}.html"
    assert page.is_file() and data_path(page).is_file() and str(page) in out


browser = browser_fixture()


@pytest.mark.slow
def test_the_comparison_page_renders_in_chromium_offline(
    real_runs: tuple[Path, Path], tmp_path: Path, browser: Any
) -> None:
    page = write_comparison(*real_runs, tmp_path / "cmp.html", labels=("thunder", "lightning"))
    with open_page(page, browser=browser) as session:
        session.page.wait_for_selector('body[data-viewer-state="ready"]', timeout=30_000)
        cycles = session.page.evaluate("document.body.dataset.cyclesA")
        curves = session.page.locator("svg").count()
    assert int(cycles) >= 10 and curves >= 1
    assert session.errors == [] and session.blocked == []
