"""The local stack: real Triton (CPU model repository), the kinematics service and the gateway, as
separate processes wired together.

    python -m gateway.stack up   [--dir out/stack] [--preset thunder]   (make up)
    python -m gateway.stack down [--dir out/stack]                      (make down)

``up`` builds the CPU Triton repository, starts each process in its own session (logs in
``<dir>/logs``), waits until each is ready, and writes ``<dir>/stack.json`` (pids, ports, URLs) and a
development API key in ``<dir>/api-key``. ``down`` stops them (SIGTERM, then SIGKILL after a grace
period). :class:`LocalStack` is also what the end-to-end and fault tests drive.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from gateway.argtypes import positive_int
from services.errors import GaitwayError, ServiceUnavailableError
from services.pose.triton import free_port
from services.settings import Settings

log = logging.getLogger("gaitway.stack")

COMPONENTS = ("triton", "kinematics", "gateway")


@dataclass
class Ports:
    http: int = 8080
    grpc: int = 50051
    kinematics: int = 8081
    triton_http: int = 8000
    triton_grpc: int = 8001
    triton_metrics: int = 8002

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(6)))


@dataclass
class StackState:
    root: str
    ports: Ports
    pids: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> StackState:
        doc = json.loads(path.read_text())
        return cls(root=doc["root"], ports=Ports(**doc["ports"]), pids=doc["pids"])


class LocalStack:
    """Start, stop, kill and restart the three processes of the local stack."""

    def __init__(
        self,
        root: Path,
        *,
        preset: str = "thunder",
        models_dir: str = "",
        ports: Ports | None = None,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        model_threads: int = 1,
    ) -> None:
        """``model_threads``: onnxruntime threads per Triton model instance (2 lets MoveNet Thunder answer
        a 30 fps live stream on a 2-core machine, see the README's live-streaming figures)."""
        self.root = root.resolve()
        self.preset = preset
        self.model_threads = model_threads
        self.models_dir = models_dir
        self.ports = ports or Ports()
        self.extra_env = env or {}
        self.python = python
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = self.root / "logs"
        self.repository = self.root / "triton-repo"
        self.keys_file = self.root / "keys.txt"
        self.api_key_file = self.root / "api-key"

    # -- urls ------------------------------------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def gateway_grpc(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def kinematics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.kinematics}"

    @property
    def triton_grpc(self) -> str:
        return f"127.0.0.1:{self.ports.triton_grpc}"

    @property
    def api_key(self) -> str:
        return self.api_key_file.read_text().strip()

    # -- set-up ----------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Build the CPU Triton repository and a development API key (kept across runs)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        if not self.api_key_file.exists():
            self.api_key_file.write_text("gw_dev_" + secrets.token_urlsafe(24) + "\n")
            self.api_key_file.chmod(0o600)
        self.keys_file.write_text(f"local-dev:{self.api_key}\n")
        self.keys_file.chmod(0o600)
        cmd = [self.python, "-m", "export.repository", "--out", str(self.repository), "--preset", self.preset]
        cmd += ["--threads", str(self.model_threads)]
        if self.models_dir:
            cmd += ["--models-dir", self.models_dir]
        done = subprocess.run(cmd, capture_output=True, text=True, env=self._env(), check=False)
        if done.returncode != 0:
            raise GaitwayError(f"building the Triton repository failed: {done.stderr.strip()[-2000:]}")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        return env

    def _command(self, name: str) -> tuple[list[str], dict[str, str]]:
        env = self._env()
        p = self.ports
        if name == "triton":
            cmd = [self.python, "-m", "services.pose.triton", "serve", "--repository", str(self.repository)]
            cmd += ["--http-port", str(p.triton_http), "--grpc-port", str(p.triton_grpc)]
            cmd += ["--metrics-port", str(p.triton_metrics)]
            return cmd, env
        if name == "kinematics":
            env |= {"GAITWAY_KINEMATICS_PORT": str(p.kinematics), "GAITWAY_KINEMATICS_HOST": "127.0.0.1"}
            return [self.python, "-m", "services.kinematics.service"], env
        if name == "gateway":
            env |= {
                "GAITWAY_HTTP_PORT": str(p.http),
                "GAITWAY_GRPC_PORT": str(p.grpc),
                "GAITWAY_TRITON_URL": self.triton_grpc,
                "GAITWAY_KINEMATICS_URL": self.kinematics_url,
                "GAITWAY_DATA_DIR": str(self.root / "var"),
                "GAITWAY_API_KEYS_FILE": str(self.keys_file),
                "GAITWAY_PRESET": self.preset,
            }
            if self.models_dir:
                env["GAITWAY_MODELS_DIR"] = self.models_dir
            return [self.python, "-m", "gateway.cli", "serve"], env
        raise ValueError(f"unknown component {name!r}; one of {COMPONENTS}")

    # -- processes -------------------------------------------------------------------------------------
    def start(self, name: str, *, wait: bool = True, timeout_s: float = 180.0) -> None:
        cmd, env = self._command(name)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as logf:
            self.procs[name] = subprocess.Popen(
                cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
            )
        if wait:
            self.wait_ready(name, timeout_s=timeout_s)

    def _ready_url(self, name: str) -> str:
        return {
            "triton": f"http://127.0.0.1:{self.ports.triton_http}/v2/health/ready",
            "kinematics": f"{self.kinematics_url}/readyz",
            "gateway": f"{self.gateway_url}/readyz",
        }[name]

    def is_ready(self, name: str) -> bool:
        try:
            return httpx.get(self._ready_url(name), timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, name: str, *, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        proc = self.procs.get(name)
        while time.monotonic() < deadline:
            if self.is_ready(name):
                return
            if proc is not None and proc.poll() is not None:
                raise ServiceUnavailableError(
                    f"{name} exited with {proc.returncode}; log:\n{self.log_tail(name)}"
                )
            time.sleep(0.3)
        raise ServiceUnavailableError(
            f"{name} not ready after {timeout_s:.0f} s; log:\n{self.log_tail(name)}"
        )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, name: str, *, sig: int = signal.SIGTERM, grace_s: float = 20.0) -> None:
        """Signal the component's whole process group (Triton's wrapper and tritonserver) and wait."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if sig != signal.SIGKILL:
            _signal_group(proc.pid, signal.SIGKILL)  # leftovers of the group (tritonserver's stubs)

    def kill(self, name: str) -> None:
        self.stop(name, sig=signal.SIGKILL)

    def up(self) -> StackState:
        self.prepare()
        try:
            for name in COMPONENTS:
                self.start(name)
        except BaseException:
            self.down()
            raise
        state = StackState(
            root=str(self.root), ports=self.ports, pids={n: p.pid for n, p in self.procs.items()}
        )
        state.save(self.root / "stack.json")
        return state

    def down(self) -> None:
        for name in reversed(COMPONENTS):
            self.stop(name)

    def __enter__(self) -> LocalStack:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down_from_state(root: Path, *, grace_s: float = 20.0) -> list[str]:
    """Stop the processes recorded in ``<root>/stack.json`` (from another process than ``up``)."""
    path = root / "stack.json"
    if not path.exists():
        return []
    state = StackState.load(path)
    stopped = []
    for name in reversed(COMPONENTS):
        pid = state.pids.get(name)
        if pid is None or not _alive(pid):
            continue
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal_group(pid, signal.SIGKILL)
        stopped.append(name)
    path.unlink()
    return stopped


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.stack", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up", help="start Triton, the kinematics service and the gateway")
    u.add_argument("--dir", type=Path, default=Path("out/stack"))
    u.add_argument("--preset", default="thunder")
    u.add_argument("--models-dir", default=Settings().models_dir)
    u.add_argument("--http-port", type=int, default=8080)
    u.add_argument("--grpc-port", type=int, default=50051)
    u.add_argument(
        "--model-threads", type=positive_int, default=1, help="onnxruntime threads per Triton model instance"
    )
    d = sub.add_parser("down", help="stop the stack started by `up`")
    d.add_argument("--dir", type=Path, default=Path("out/stack"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "down":
        stopped = down_from_state(args.dir)
        sys.stdout.write(f"stopped: {', '.join(stopped) or 'nothing was running'}\n")
        return 0
    if (args.dir / "stack.json").exists():
        down_from_state(args.dir)  # a stale stack from an earlier `up`
    stack = LocalStack(
        args.dir,
        preset=args.preset,
        models_dir=args.models_dir,
        ports=Ports(http=args.http_port, grpc=args.grpc_port),
        model_threads=args.model_threads,
    )
    try:
        stack.up()
    except GaitwayError as exc:
        sys.stderr.write(f"gaitway stack: error [{exc.code}]: {exc}\n")
        return 1
    sys.stdout.write(
        f"gateway HTTP  {stack.gateway_url}  (OpenAPI: {stack.gateway_url}/docs)\n"
        f"gateway gRPC  {stack.gateway_grpc}\n"
        f"kinematics    {stack.kinematics_url}\n"
        f"Triton gRPC   {stack.triton_grpc}\n"
        f"API key       {stack.api_key_file} (x-api-key header)\n"
        f"more keys     gaitway keys --data-dir {stack.root / 'var'} create NAME\n"
        f"logs          {stack.logs}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
