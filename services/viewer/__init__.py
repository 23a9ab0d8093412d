"""The interactive per-analysis viewer: one self-contained HTML page (video + 2D skeleton, 3D skeleton,
angle curves, gait events, steps and summary on one clock) and the browser-playable proxy of the video.

* :func:`write_proxy_video` - an upright H.264 MP4 copy of a video, frame ``i`` at ``i / fps_nominal``;
* :func:`render_viewer` - the page's HTML for a ``poses.json`` (and ``metrics.json``) document;
* :func:`write_viewer` - both into an analysis folder: ``viewer.html`` and ``viewer.mp4``.
"""

from services.viewer.page import VIEWER_HTML, VIEWER_VIDEO, render_viewer, write_viewer
from services.viewer.proxy import write_proxy_video

__all__ = ["VIEWER_HTML", "VIEWER_VIDEO", "render_viewer", "write_proxy_video", "write_viewer"]
