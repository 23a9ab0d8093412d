"""Re-time a video without re-encoding it: every timestamp multiplied by a factor, no slow-motion metadata.

:func:`retime` is what ``ffmpeg -i src -map 0:v:0 -c copy -itsscale <factor> dst`` does: the video stream's
packets are copied as they are (no decoding, no re-encoding) while their presentation and decoding
timestamps and their durations are multiplied by ``factor``, so the clip plays ``factor`` times slower
(``factor`` > 1) or faster (< 1). No metadata is carried over, so in particular none of the capture-rate
keys of :data:`services.pose.ingest.CAPTURE_FPS_KEYS`: the result looks like a slow-motion export whose
time base is unknown, which is how the time-base estimator
(:mod:`services.kinematics.timebase`) is validated against a known truth.

Only the main video stream is kept (audio would need resampling to follow). The display-matrix rotation
is not carried over either (PyAV does not expose the stream side data for writing), so a rotated phone
clip comes out in its coded orientation.

PyAV/FFmpeg and OS errors are translated here into :class:`services.errors.VideoError`; a factor that is
not a positive finite number raises :class:`services.errors.InputError`.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import av
import av.error
from av.stream import Disposition

from services.errors import InputError, NoVideoStreamError, VideoError

__all__ = ["MAX_DENOMINATOR", "retime"]

#: the factor is applied as an exact fraction with at most this denominator (3 -> 3/1, 2.5 -> 5/2)
MAX_DENOMINATOR = 1000


def retime(src: str | os.PathLike[str], dst: str | os.PathLike[str], factor: float) -> None:
    """Copy the main video stream of ``src`` into ``dst`` with every timestamp and duration times ``factor``.

    Parameters
    ----------
    src:
        Any video FFmpeg can demux.
    dst:
        The output file; its container format follows its extension (``.mp4``, ``.mov``, ``.mkv``) and
        must be able to hold the stream's codec. Overwritten if it exists.
    factor:
        Time multiplier, > 0: 4 makes a clip that plays 4x slower than ``src`` (a 60 fps clip becomes a
        15 fps one of four times the duration). Applied as the nearest fraction with a denominator of at
        most :data:`MAX_DENOMINATOR`, exactly: timestamps are rescaled in integers.

    The output holds no metadata (no capture frame rate), no audio, and no display rotation. Raises
    :class:`InputError` for a bad ``factor``, :class:`NoVideoStreamError` when ``src`` has no video stream
    and :class:`VideoError` when FFmpeg cannot read ``src`` or write ``dst``.
    """
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not (math.isfinite(factor)):
        raise InputError(f"factor must be a positive finite number, got {factor!r}")
    ratio = Fraction(factor).limit_denominator(MAX_DENOMINATOR)
    if ratio <= 0:
        raise InputError(f"factor must be > 0 (and at least 1/{MAX_DENOMINATOR}), got {factor!r}")
    src_s, dst_s = os.fspath(src), os.fspath(dst)
    try:
        with av.open(src_s, metadata_errors="replace") as inp:
            streams = [s for s in inp.streams.video if not s.disposition & Disposition.attached_pic]
            if not streams:
                raise NoVideoStreamError(f"'{src_s}' contains no video stream to re-time.")
            stream = streams[0]
            if stream.time_base is None:
                raise VideoError(f"'{src_s}': the video stream declares no time base.")
            # pts' = pts * num / den, kept integral by a time base den times finer
            time_base = Fraction(stream.time_base) / ratio.denominator
            with av.open(dst_s, "w") as out:
                ostream = out.add_stream_from_template(stream)
                ostream.time_base = time_base
                for packet in inp.demux(stream):
                    if packet.size == 0 and packet.pts is None and packet.dts is None:
                        continue  # the demuxer's end-of-stream marker
                    if packet.pts is not None:
                        packet.pts = packet.pts * ratio.numerator
                    if packet.dts is not None:
                        packet.dts = packet.dts * ratio.numerator
                    if packet.duration is not None:
                        packet.duration = packet.duration * ratio.numerator
                    packet.time_base = time_base
                    packet.stream = ostream
                    out.mux(packet)
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise VideoError(f"cannot re-time '{src_s}' into '{dst_s}': {reason}.") from exc
