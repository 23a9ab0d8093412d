"""A browser-playable copy of an analysed video for the viewer page.

The proxy is what the page plays under the skeleton overlay: H.264 (libx264, yuv420p, High profile) in an
MP4 whose index sits at the front (``movflags=faststart``: it starts playing before it is fully read), no
audio, upright (the display-matrix rotation applied, as :class:`services.pose.ingest.VideoReader` applies
it for the analysis) and at most ``long_side`` pixels on its long side.

Frame ``i`` of the proxy is decoded frame ``i`` of the source (the analysis' frame ``i``) and is shown at
exactly ``i / fps_nominal`` seconds (constant frame rate, whatever the source's timestamps), where
``fps_nominal`` is the source's average frame rate in media time, the ``video.fps_nominal`` of
``poses.json``. The page maps the video's media time to the analysis frame with
``round(media_time * fps_nominal)`` and seeks to frame ``i`` at ``(i + 0.5) / fps_nominal``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from services.errors import InputError, VideoError
from services.files import atomic_path
from services.pose.ingest import VideoReader

__all__ = ["PROXY_CRF", "PROXY_GOP_S", "proxy_rate", "write_proxy_video"]

#: x264 constant rate factor of the proxy (23 = x264's default quality)
PROXY_CRF = 23
#: seconds between key frames: short, so that seeking (scrubbing, frame stepping) decodes little
PROXY_GOP_S = 0.5


def proxy_rate(fps_nominal: float) -> Fraction:
    """The proxy's exact frame rate for a nominal rate (NTSC rates stay exact: 29.97 -> 30000/1001)."""
    return Fraction(fps_nominal).limit_denominator(1001)


def _even_size(width: int, height: int) -> tuple[int, int]:
    """The nearest even size (yuv420p needs even dimensions), at least 2 x 2."""
    return max(2, round(width / 2) * 2), max(2, round(height / 2) * 2)


def write_proxy_video(video: Path, dest: Path, *, long_side: int = 640) -> Path:
    """Write the viewer's proxy of ``video`` to ``dest`` (an ``.mp4``; replaced atomically); returns ``dest``.

    Raises :class:`services.errors.VideoError` when the source cannot be read or the proxy not written and
    :class:`services.errors.InputError` for a ``long_side`` that is not a positive number of pixels.
    """
    if isinstance(long_side, bool) or not isinstance(long_side, int) or long_side < 16:
        raise InputError(f"long_side must be a whole number of pixels >= 16, got {long_side!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dest) as tmp, VideoReader(video, max_long_side=long_side) as reader:
            info = reader.info
            rate = proxy_rate(info.fps_nominal)
            width, height = _even_size(info.out_width, info.out_height)
            gop = max(1, round(float(rate) * PROXY_GOP_S))
            with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                stream.codec_context.time_base = 1 / rate
                stream.options = {
                    "preset": "veryfast",
                    "crf": str(PROXY_CRF),
                    "profile": "high",
                    "g": str(gop),
                    "keyint_min": str(gop),
                    "sc_threshold": "0",
                    "bf": "0",  # no B-frames: decode order = display order, no edit list shifting times
                }
                for frame in reader:
                    image = frame.image
                    if image.shape[1] != width or image.shape[0] != height:
                        image = np.asarray(
                            cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8
                        )
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                    vf.pts = frame.index
                    vf.time_base = 1 / rate
                    for packet in stream.encode(vf):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"the viewer's copy of the video could not be written: {exc}") from exc
    return dest
