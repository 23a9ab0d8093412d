"""The CLI starts without its heavy dependencies: ``--help``, every command's ``--help`` and argument errors
are answered from light modules only (what they import is checked, not how long it takes; the time is
measured by ``loadtests/bench_startup.py``). And the ``models`` command keeps listing with or without its
``list`` sub-command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import FETCH_MODULE, main
from services.settings import Settings

#: packages a command imports when it runs, never to print help: numerical and imaging libraries, model
#: runtimes, the server stack, settings validation, the report's writers
HEAVY = frozenset(
    ("numpy", "scipy", "matplotlib", "openpyxl", "onnxruntime", "tritonclient", "av", "cv2", "torch",
     "sqlalchemy", "alembic", "psycopg", "grpc", "fastapi", "starlette", "uvicorn", "httpx", "pydantic",
     "pydantic_settings", "prometheus_client", "tqdm", "PIL")
)  # fmt: skip

COMMANDS = [
    ["--help"],
    ["analyze", "--help"],
    ["evaluate", "--help"],
    ["evaluate", "rbds", "--help"],
    ["evaluate", "mocap", "--help"],
    ["serve", "--help"],
    ["keys", "--help"],
    ["models", "--help"],
    ["models", "list", "--help"],
    ["models", "fetch", "--help"],
    ["compare", "--help"],
    ["analyze", "clip.mp4", "--out", "out", "--slowmo", "-2"],  # an argument error: exit 2
]


def _imported(args: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m gateway.cli ARGS``: the process, and the top-level packages imported."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w.]+)$", proc.stderr, flags=re.MULTILINE)
    assert names, proc.stderr[-2000:]
    return proc, {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_help_and_argument_errors_import_nothing_heavy(args: list[str]) -> None:
    proc, packages = _imported(args)
    assert proc.returncode == (2 if "--help" not in args else 0), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not packages & HEAVY, sorted(packages & HEAVY)
    assert {"gateway", "services"} <= packages  # the measurement did see the CLI's own imports


def test_models_fetch_help_is_light_when_the_fetch_command_exists() -> None:
    try:
        __import__(FETCH_MODULE)
    except ModuleNotFoundError:
        pytest.skip(f"{FETCH_MODULE} is not part of this installation")
    proc, packages = _imported(["models", "fetch", "--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not packages & HEAVY, sorted(packages & HEAVY)


def test_every_setting_named_in_the_help_exists() -> None:
    """Options default to settings the help names (``default: GAITWAY_PRESET``): each named one is real."""
    named: set[str] = set()
    for args in COMMANDS[:-1]:
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, check=True
        ).stdout
        named |= set(re.findall(r"GAITWAY_([A-Z0-9_]+)", re.sub(r"\s+", "", out)))
    assert {"PRESET", "MODELS_DIR", "DATA_DIR"} <= named
    assert {n.lower() for n in named} <= set(Settings.model_fields)


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "GAITWAY_WORKERS": "many"}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "models", "--models-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gaitway: error [invalid_input]: setting GAITWAY_WORKERS")
    assert proc.stderr.count("\n") == 1


def test_models_lists_with_or_without_its_list_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gaitway models`` is ``gaitway models list``; ``--models-dir`` goes before or after ``list``."""
    outputs = []
    for args in (
        ["models", "--models-dir", str(tmp_path)],
        ["models", "list", "--models-dir", str(tmp_path)],
        ["models", "--models-dir", str(tmp_path), "list"],
    ):
        assert main(args) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    assert "movenet-lightning" in outputs[0] and "presets:" in outputs[0]
    assert " ok" not in outputs[0]  # an empty models folder: every model is missing
