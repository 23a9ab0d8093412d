"""The per-analysis viewer page (services/viewer): the proxy video, the packed data, and the page itself in a
real headless Chromium, opened from file:// with every network request refused."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from browser import Session, browser_fixture, open_page
from conftest import SHARED

from gateway.core import AnalysisSpec, Engine
from services.errors import InputError
from services.pose.ingest import VideoReader
from services.settings import Settings
from services.viewer import render_viewer, write_proxy_video, write_viewer
from services.viewer.data import FILLED, pack, unpack
from services.viewer.proxy import proxy_rate
from services.viewer.synthetic import repeat_analysis

DEMO3 = SHARED / "data" / "running-side-outdoor" / "demo3.mp4"  # 47 frames
ROTATED = SHARED / "data" / "rotation-iphone" / "iphone_rotated.mov"  # portrait, rotation metadata
READY = "body[data-viewer-state=ready]"
#: the 36,000-frame page (10 min at 60 fps, noisy repeats of demo3) stays under this
LONG_PAGE_LIMIT_BYTES = 6_000_000

browser = browser_fixture()


# ---------------------------------------------------------------------------------------------------------
# fixtures: one real analysis of demo3, its viewer, and a partial result (no metrics.json)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo3")
    settings = Settings(models_dir=f"{SHARED / 'models'}:{SHARED / 'reference'}")
    outcome = Engine(settings).analyze(DEMO3, out, AnalysisSpec())
    assert outcome.metrics_error is None
    # every analysis (the CLI's, the gateway's) writes its viewer and the video it plays
    assert outcome.artifacts["viewer"] == out / "viewer.html"
    assert outcome.artifacts["viewer_video"] == out / "viewer.mp4"
    return out


@pytest.fixture(scope="module")
def viewer(analysis: Path) -> dict[str, Path]:
    return {"viewer": analysis / "viewer.html", "viewer_video": analysis / "viewer.mp4"}


@pytest.fixture(scope="module")
def poses(analysis: Path) -> dict[str, Any]:
    return json.loads((analysis / "poses.json").read_text())


@pytest.fixture(scope="module")
def metrics(analysis: Path) -> dict[str, Any]:
    return json.loads((analysis / "metrics.json").read_text())


@pytest.fixture()
def demo_page(browser: Any, viewer: dict[str, Path]) -> Iterator[Session]:
    with open_page(viewer["viewer"], browser=browser) as session:
        session.page.wait_for_selector(READY)
        yield session


def frame_of(session: Session) -> int:
    return int(session.page.get_attribute("body", "data-frame") or "-1")


def readout(session: Session) -> str:
    return session.page.inner_text("#angle-readout")


def wait_frame(session: Session, i: int) -> None:
    session.page.wait_for_function(f"document.body.dataset.frame === '{i}'", timeout=10_000)


def panel_std(png: bytes, box: Mapping[str, Any]) -> float:
    """Standard deviation of the grey values inside ``box`` (CSS px) of a screenshot."""
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    x, y, w, h = (round(box[k]) for k in ("x", "y", "width", "height"))
    return float(img[y : y + h, x : x + w].std())


# ---------------------------------------------------------------------------------------------------------
# without a browser
# ---------------------------------------------------------------------------------------------------------


def test_proxy_video_is_constant_rate_h264_with_every_frame(tmp_path: Path) -> None:
    dest = write_proxy_video(DEMO3, tmp_path / "p.mp4")
    with VideoReader(DEMO3) as reader:
        fps_nominal = reader.info.fps_nominal
    data = dest.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # index first: plays while loading
    with av.open(str(dest)) as c:
        assert not c.streams.audio
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert s.width % 2 == 0 and s.height % 2 == 0 and max(s.width, s.height) <= 640
        times = [float(f.time) for f in c.decode(s) if f.time is not None]
    assert len(times) == 47
    rate = proxy_rate(fps_nominal)
    np.testing.assert_allclose(times, [float(i / rate) for i in range(47)], atol=1e-6)
    # the page maps media time -> frame with round(t * fps_nominal): exact for every frame
    assert [round(t * fps_nominal) for t in times] == list(range(47))
    assert abs(float(rate) - fps_nominal) / fps_nominal < 1e-5


def test_proxy_video_is_upright(tmp_path: Path) -> None:
    with VideoReader(ROTATED) as reader:
        info = reader.info
    assert info.rotation_deg in (90, 270)  # the clip needs its rotation applied
    dest = write_proxy_video(ROTATED, tmp_path / "r.mp4", long_side=320)
    with av.open(str(dest)) as c:
        s = c.streams.video[0]
        assert s.height == 320 and s.width < s.height  # portrait, as displayed
        assert abs(s.width / s.height - info.width / info.height) < 0.02


def test_pack_round_trip_keeps_every_value_within_its_resolution(
    poses: dict[str, Any], metrics: dict[str, Any]
) -> None:
    header, blob = pack(poses, metrics)
    doc, arrays = unpack(header, blob)
    n = len(poses["frames"])
    assert header["frames"] == n == 47
    kp2 = np.array(
        [[[np.nan if v is None else v for v in p[:2]] for p in f["keypoints2d"]] for f in poses["frames"]]
    )
    got2 = arrays["kp2d"].T.reshape(n, -1, 2)
    assert np.array_equal(np.isnan(kp2), np.isnan(got2))  # missing stays missing
    assert np.isnan(kp2).any() and np.nanmax(np.abs(got2 - kp2)) <= 0.125 + 1e-9
    kp3 = np.array(
        [[[np.nan if v is None else v for v in p] for p in f["keypoints3d"]] for f in poses["frames"]]
    )
    assert np.nanmax(np.abs(arrays["kp3d"].T.reshape(n, 17, 3) - kp3)) <= 5e-4 + 1e-9
    np.testing.assert_allclose(arrays["t"][0], [f["t"] for f in poses["frames"]], atol=1e-6)
    filled = np.array([f["filled"] for f in poses["frames"]]).T
    assert np.array_equal(arrays["conf2d"] == FILLED, filled)
    names = [s["key"] for s in doc["metrics"]["series"]]
    assert "left_knee_flexion_deg" in names
    for r, name in enumerate(names):
        want = np.array([np.nan if v is None else v for v in metrics["series"][name]])
        assert np.array_equal(np.isnan(want), np.isnan(arrays["series"][r]))
        if np.isfinite(want).any():
            assert np.nanmax(np.abs(arrays["series"][r] - want)) <= 0.05 + 1e-9
    assert [s["strike"] for s in doc["metrics"]["steps"]] == [s["strike"]["index"] for s in metrics["steps"]]


def test_page_is_self_contained(poses: dict[str, Any], metrics: dict[str, Any]) -> None:
    page = render_viewer(poses, metrics, video_src="clips/a b&c.mp4", title="Run <1>")
    assert "<title>Run &lt;1&gt;</title>" in page
    assert '<source src="clips/a b&amp;c.mp4" type="video/mp4">' in page
    tags = re.findall(r"<(script|link|img|iframe)\b[^>]*>", page)
    assert set(tags) == {"script"} and page.count("</script>") == len(tags) == 4  # nothing closes early
    assert not re.search(r"<script[^>]*\bsrc=", page)  # every script inline
    assert "poses" not in re.findall(r'id="gaitway-blob">([^<]{0,40})', page)[0]  # data packed, not raw JSON
    without = render_viewer(poses, None, video_src=None, title="x")
    assert "<video" not in without
    with pytest.raises(InputError, match="no frames"):
        render_viewer({**poses, "frames": []}, None, video_src=None, title="x")


def test_long_analysis_page_stays_small(poses: dict[str, Any], metrics: dict[str, Any]) -> None:
    """10 minutes at 60 fps: demo3 repeated with noise (so it cannot compress as a copy would)."""
    long_poses, long_metrics = repeat_analysis(poses, metrics, 36_000, noise_px=0.5, noise_m=0.002)
    assert long_poses["frames"][-1]["t"] > long_poses["frames"][-2]["t"] > 590 / 30
    page = render_viewer(long_poses, long_metrics, video_src=None, title="long")
    size = len(page.encode())
    assert size < LONG_PAGE_LIMIT_BYTES, f"{size / 1e6:.2f} MB"


# ---------------------------------------------------------------------------------------------------------
# in Chromium
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_page_opens_offline_with_webgl(demo_page: Session) -> None:
    page = demo_page.page
    assert page.get_attribute("body", "data-frames") == "47"
    assert page.get_attribute("body", "data-webgl") == "1"
    assert page.locator("#three-view canvas").count() == 1
    kind = page.evaluate(
        "document.querySelector('#three-view canvas').getContext('webgl2') ? 'webgl2' : 'other'"
    )
    assert kind == "webgl2"  # three.js holds a WebGL2 context on it
    assert demo_page.blocked == []  # nothing but file: was even attempted
    requested = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith("file:") for u in requested), requested
    assert demo_page.errors == []


@pytest.mark.slow
def test_browser_decodes_the_data_as_packed(demo_page: Session, poses: dict[str, Any]) -> None:
    header, blob = pack(poses, None)
    _, arrays = unpack(header, blob)
    got = demo_page.page.evaluate("Array.from(gaitwayViewer.data.kp2d, v => Number.isNaN(v) ? null : v)")
    values = np.array([np.nan if v is None else v for v in got]).reshape(arrays["kp2d"].shape)
    assert np.array_equal(np.isnan(values), np.isnan(arrays["kp2d"]))
    np.testing.assert_allclose(values, arrays["kp2d"], atol=1e-3)


@pytest.mark.slow
def test_keyboard_steps_frames_and_updates_the_readout(demo_page: Session) -> None:
    page = demo_page.page
    page.evaluate("gaitwayViewer.seek(10)")
    wait_frame(demo_page, 10)
    page.wait_for_function("document.querySelector('#angle-readout').innerText.includes('frame 11')")
    before = readout(demo_page)
    assert "Knee flexion" in before and "°" in before
    page.keyboard.press("ArrowRight")
    wait_frame(demo_page, 11)
    page.wait_for_function("document.querySelector('#angle-readout').innerText.includes('frame 12')")
    after = readout(demo_page)
    assert after != before
    page.keyboard.press(",")
    wait_frame(demo_page, 10)
    page.keyboard.press(".")
    page.keyboard.press(".")
    wait_frame(demo_page, 12)
    page.keyboard.press("ArrowLeft")
    wait_frame(demo_page, 11)
    page.keyboard.press("Shift+ArrowRight")
    wait_frame(demo_page, 21)
    page.keyboard.press("Home")
    wait_frame(demo_page, 0)
    page.keyboard.press("ArrowLeft")  # clamped at the first frame
    page.keyboard.press("End")
    wait_frame(demo_page, 46)
    # the scrubber and the frame buttons drive the same clock
    page.fill("#scrubber", "5")
    wait_frame(demo_page, 5)
    page.click("#btn-fwd")
    wait_frame(demo_page, 6)
    page.click("#btn-back")
    wait_frame(demo_page, 5)
    assert demo_page.errors == []


@pytest.mark.slow
def test_step_table_jumps_to_the_contact(demo_page: Session, metrics: dict[str, Any]) -> None:
    page = demo_page.page
    strike = metrics["steps"][0]["strike"]["index"]
    page.click("#steps tbody tr[data-step='0']")
    wait_frame(demo_page, strike)
    page.wait_for_selector("#steps tbody tr.current[data-step='0']")  # highlighted as the current step
    page.evaluate("gaitwayViewer.seek(0)")
    page.click("#btn-next-strike")
    wait_frame(demo_page, strike)
    # the timeline has the events; the summary shows typical ranges with a status
    assert page.locator("#summary .status").count() >= 1
    assert demo_page.errors == []


@pytest.mark.slow
def test_panels_render_and_the_video_plays(
    demo_page: Session, viewer: dict[str, Path], tmp_path: Path
) -> None:
    page = demo_page.page
    proxy = viewer["viewer_video"]
    # seeking to frame 14 presents the proxy's frame 14 (media time 14 / fps)
    presented = page.evaluate(
        """() => new Promise((resolve) => {
            const v = document.querySelector('video');
            v.requestVideoFrameCallback((now, meta) => resolve(meta.mediaTime));
            gaitwayViewer.seek(14);
        })"""
    )
    assert round(presented * 30000 / 1001) == 14
    wait_frame(demo_page, 14)
    page.wait_for_function("!document.querySelector('video').seeking")
    page.evaluate("gaitwayViewer.renderNow()")
    png = page.screenshot(path=str(tmp_path / "viewer.png"))
    video_box = page.locator("#video-view").bounding_box()
    three_box = page.locator("#three-view").bounding_box()
    assert video_box and three_box
    assert panel_std(png, video_box) > 20, "the video panel is blank"
    assert panel_std(png, three_box) > 8, "the 3D panel is blank"
    # the WebGL canvas itself holds the skeleton's colours (orange left, blue right)
    pixels = page.evaluate(
        """() => {
        gaitwayViewer.renderNow();  // read back in the same task as the draw (no preserved buffer)
        const c = document.querySelector('#three-view canvas');
        const g = document.createElement('canvas');
        g.width = c.width; g.height = c.height;
        const x = g.getContext('2d'); x.drawImage(c, 0, 0);
        const d = x.getImageData(0, 0, g.width, g.height).data;
        let orange = 0, blue = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i] > 150 && d[i + 1] > 60 && d[i + 1] < 170 && d[i + 2] < 80) orange++;
            if (d[i] < 80 && d[i + 1] > 90 && d[i + 2] > 170) blue++;
        }
        return {orange, blue};
    }"""
    )
    assert pixels["orange"] > 50 and pixels["blue"] > 50, pixels
    # the video element really decodes the H.264 proxy, and shows frame 14 of it (not 13 or 15)
    page.evaluate("document.querySelector('#overlay').style.visibility = 'hidden'")
    shown = cv2.imdecode(np.frombuffer(page.locator("video").screenshot(), np.uint8), cv2.IMREAD_GRAYSCALE)
    page.evaluate("document.querySelector('#overlay').style.visibility = ''")
    with av.open(str(proxy)) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    vh, vw = frames[0].shape
    scale = min(shown.shape[1] / vw, shown.shape[0] / vh)  # object-fit: contain
    w, h = round(vw * scale), round(vh * scale)
    x0, y0 = (shown.shape[1] - w) // 2, (shown.shape[0] - h) // 2
    picture = shown[y0 + 2 : y0 + h - 2, x0 + 2 : x0 + w - 2].astype(np.float64)
    assert picture.std() > 10, "the video shows no picture"

    def distance(i: int) -> float:
        want = cv2.resize(frames[i], (w, h), interpolation=cv2.INTER_AREA)[2:-2, 2:-2]
        return float(np.abs(picture - want).mean())

    distances = {i: distance(i) for i in range(11, 18)}
    assert min(distances, key=distances.__getitem__) == 14, distances
    # playback: the video's clock runs and drives the analysis frame
    page.select_option("#speed", "0.5")
    page.evaluate("gaitwayViewer.seek(0)")
    page.click("#btn-play")
    page.wait_for_function("document.querySelector('video').currentTime > 0.25", timeout=15_000)
    page.wait_for_function("Number(document.body.dataset.frame) >= 5", timeout=15_000)
    rate = page.evaluate("document.querySelector('video').playbackRate")
    assert rate == pytest.approx(0.5, abs=0.05)
    page.click("#btn-play")  # pause
    page.wait_for_function("document.querySelector('video').paused")
    assert demo_page.errors == []


@pytest.mark.slow
def test_partial_result_without_metrics_opens(browser: Any, analysis: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(analysis / "poses.json", partial / "poses.json")
    paths = write_viewer(partial, video=None)
    assert set(paths) == {"viewer"}
    with open_page(paths["viewer"], browser=browser) as session:
        page = session.page
        page.wait_for_selector(READY)
        assert page.get_attribute("body", "data-frames") == "47"
        assert page.locator("video").count() == 0
        assert "partial result" in page.inner_text("#banner").lower()
        assert "no running metrics" in readout(session).lower()
        page.keyboard.press("ArrowRight")
        wait_frame(session, 1)
        page.evaluate("gaitwayViewer.seek(12)")
        page.evaluate("gaitwayViewer.renderNow()")
        png = page.screenshot(path=str(tmp_path / "partial.png"))
        box = page.locator("#video-view").bounding_box()
        assert box and panel_std(png, box) > 8  # the skeleton on its plain canvas
        assert session.errors == [] and session.blocked == []


@pytest.mark.slow
def test_phone_layout_stacks_the_panels(browser: Any, viewer: dict[str, Path]) -> None:
    with open_page(
        viewer["viewer"], browser=browser, viewport=(390, 844), is_mobile=True, has_touch=True
    ) as s:
        page = s.page
        page.wait_for_selector(READY)
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1]  # no sideways scrolling of the page
        video = page.locator("#panel-video").bounding_box()
        three = page.locator("#panel-3d").bounding_box()
        assert video and three and three["y"] >= video["y"] + video["height"] - 1  # stacked
        assert video["width"] > 350
        assert s.errors == []


@pytest.mark.slow
def test_ten_minute_page_opens_and_scrubs(
    browser: Any, poses: dict[str, Any], metrics: dict[str, Any], tmp_path: Path
) -> None:
    long_poses, long_metrics = repeat_analysis(poses, metrics, 36_000)
    path = tmp_path / "long.html"
    path.write_text(render_viewer(long_poses, long_metrics, video_src=None, title="long"))
    with open_page(path, browser=browser) as s:
        page = s.page
        page.wait_for_selector(READY)
        assert page.get_attribute("body", "data-frames") == "36000"
        page.fill("#scrubber", "35999")
        wait_frame(s, 35999)
        page.keyboard.press("ArrowLeft")
        wait_frame(s, 35998)
        last_t = page.evaluate("gaitwayViewer.data.t[35999]")
        assert last_t == pytest.approx(long_poses["frames"][-1]["t"], abs=1e-6)
        assert s.errors == []


def test_proxy_rate_keeps_ntsc_exact() -> None:
    assert proxy_rate(30000 / 1001) == Fraction(30000, 1001)
    assert proxy_rate(60.0) == 60
