"""Bad input through the CLI: a non-zero exit code and one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.cli import main


def _run(args: list[str], shared: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    code = main([*args, "--models-dir", dirs, "--no-progress"])
    err = capsys.readouterr().err
    return code, err


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=44100)
        samples = (np.sin(np.arange(44100) / 10) * 0.3).astype(np.float32)[None]
        for i in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, i : i + 1024].copy(), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, i, Fraction(1, 44100)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


CASES = {
    "missing": (lambda d, s: d / "missing.mp4", 3, "does not exist"),
    "zero-bytes": (lambda d, s: _write(d / "empty.mp4", b""), 3, "empty.mp4"),
    "not-a-video": (lambda d, s: _write(d / "notes.mp4", b"not a video\n" * 50), 3, "notes.mp4"),
    "truncated-mp4": (
        lambda d, s: _write(
            d / "cut.mp4", (s / "data/running-treadmill-phone/IMG_5396.mp4").read_bytes()[: 10**6]
        ),
        3,
        "cut.mp4",
    ),
    "audio-only": (lambda d, s: _audio_only(d / "voice.m4a"), 3, "no video stream"),
    "nobody-in-it": (lambda d, s: s / "data/rotation-iphone/iphone_rotated.mov", 4, "no person"),
}


@pytest.mark.parametrize(("make", "code", "needle"), list(CASES.values()), ids=list(CASES))
def test_bad_video_gives_one_clear_line(
    make: object, code: int, needle: str, tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = make(tmp_path, shared)  # type: ignore[operator]
    got, err = _run(["analyze", str(video), "--out", str(tmp_path / "out")], shared, capsys)
    assert got == code, err
    assert err.count("\n") == 1 and err.startswith("gaitway: error [") and needle in err
    assert "Traceback" not in err


def test_bad_options_and_models(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = str(shared / "data/running-side-outdoor/demo3.mp4")
    got, err = _run(["analyze", video, "--out", str(tmp_path), "--preset", "nope"], shared, capsys)
    assert got == 5 and "unknown preset 'nope'" in err
    got, err = _run(["analyze", video, "--out", str(tmp_path), "--preset", "rtmpose"], shared, capsys)
    assert got == 5 and "rtmpose-m-body7" in err and "download" in err
    got, err = _run(["analyze", video, "--out", str(tmp_path), "--height", "7"], shared, capsys)
    assert got == 2 and "height" in err


def test_argument_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "analyze", "x.mp4", "--out", str(tmp_path), "--slowmo", "-2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "must be > 0" in proc.stderr and "Traceback" not in proc.stderr


def test_truncated_file_can_be_analysed_on_request(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = _write(
        tmp_path / "cut.mp4", (shared / "data/running-treadmill-phone/IMG_5396.mp4").read_bytes()[: 10**6]
    )
    got, err = _run(
        ["analyze", str(cut), "--out", str(tmp_path / "out"), "--allow-truncated"], shared, capsys
    )
    assert got == 0, err
    doc = json.loads((tmp_path / "out" / "poses.json").read_text())
    assert 50 < len(doc["frames"]) < 388
    assert any("truncated" in w for w in doc["warnings"])
