"""The per-analysis viewer page: one self-contained HTML file beside ``poses.json`` and ``metrics.json``.

The page (``viewer.html``) plays the video with the 2D skeleton drawn over it and, on the same clock, the
3D skeleton (three.js, rotate/zoom/pan), the angle curves with a cursor, the gait events on the timeline,
the per-step table and the summary against typical ranges. Everything it needs is inside it: the viewer's
script and style, the vendored three.js bundle (``vendor/three.min.js``) and the analysis data, compacted
by :func:`services.viewer.data.pack`; only the video is referenced, by URL (the proxy ``viewer.mp4``
written by :func:`services.viewer.proxy.write_proxy_video`). It opens from ``file://`` with no network.

Contract for tests and tools: once loaded, ``<body data-viewer-state="ready" data-frames="N">`` (N = frames
of the analysis) and ``data-frame="i"`` follows the displayed frame; ``#angle-readout`` holds the current
frame's angles; ``window.gaitwayViewer`` has ``seek(i)``, ``play()``, ``pause()`` and ``renderNow()``.
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from services.errors import InputError
from services.files import atomic_path
from services.viewer.data import pack
from services.viewer.proxy import write_proxy_video

__all__ = ["VIEWER_HTML", "VIEWER_VIDEO", "asset", "render_viewer", "write_viewer"]

#: file names written into an analysis folder
VIEWER_HTML = "viewer.html"
VIEWER_VIDEO = "viewer.mp4"

_TOKEN = re.compile(r"@@([A-Z]+)@@")


@cache
def asset(name: str) -> str:
    """The text of a packaged viewer file: ``static/viewer.js``, ``vendor/three.min.js`` ..."""
    return resources.files("services.viewer").joinpath(name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text that cannot close the ``<script>`` element it is inlined in."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def _video_element(video_src: str | None) -> str:
    if video_src is None:
        return ""
    src = html.escape(video_src, quote=True)
    return (
        '<video id="video" muted playsinline preload="auto" disablepictureinpicture>'
        f'<source src="{src}" type="video/mp4"></video>'
    )


def render_viewer(
    poses: dict[str, Any], metrics: dict[str, Any] | None, *, video_src: str | None, title: str
) -> str:
    """The complete viewer page for one analysis, as HTML text.

    ``poses``/``metrics``: the documents of ``poses.json`` and ``metrics.json`` (``metrics`` None for a
    partial result: the page then shows the skeletons only). ``video_src``: the URL of the video to play
    under the 2D skeleton (relative to the page, or absolute), never embedded; None draws the skeleton on a
    plain canvas of the video's size. ``title``: the page's title and heading (plain text). Raises
    :class:`services.errors.InputError` for an analysis without frames.
    """
    if not poses.get("frames"):
        raise InputError("poses.json holds no frames: there is nothing to view")
    header, blob = pack(poses, metrics)
    header_json = json.dumps(header, separators=(",", ":")).replace("<", "\\u003c")
    values = {
        "TITLE": html.escape(title, quote=False),
        "FRAMES": str(header["frames"]),
        "CSS": asset("static/viewer.css"),
        "VIDEO": _video_element(video_src),
        "HEADER": header_json,
        "BLOB": blob,
        "THREE": _script_safe(asset("vendor/three.min.js")),
        "JS": _script_safe(asset("static/viewer.js")),
    }
    return _TOKEN.sub(lambda m: values[m.group(1)], asset("static/viewer.html"))


def write_viewer(out_dir: Path, *, video: Path | None) -> dict[str, Path]:
    """Write ``viewer.html`` (and, with ``video``, its proxy ``viewer.mp4``) into an analysis folder.

    Reads ``out_dir/poses.json`` and, when present, ``out_dir/metrics.json`` (absent for a partial
    result). ``video``: the analysed video; its browser-playable proxy is written beside the page and
    referenced relatively, so the folder can be moved or served as a whole. Returns ``{"viewer": page}``
    plus ``"viewer_video": proxy`` when a video was given. Raises ``FileNotFoundError`` without
    ``poses.json`` and :class:`services.errors.VideoError` when the proxy cannot be written.
    """
    out_dir = Path(out_dir)
    poses = json.loads((out_dir / "poses.json").read_text(encoding="utf-8"))
    metrics_path = out_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None
    paths: dict[str, Path] = {}
    video_src = None
    if video is not None:
        paths["viewer_video"] = write_proxy_video(Path(video), out_dir / VIEWER_VIDEO)
        video_src = VIEWER_VIDEO
    name = (poses.get("video") or {}).get("file") or (Path(video).name if video is not None else out_dir.name)
    page = render_viewer(poses, metrics, video_src=video_src, title=f"Gaitway · {name}")
    target = out_dir / VIEWER_HTML
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"viewer": target, **paths}
