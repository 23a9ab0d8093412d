"""Regenerate the gRPC stubs of ``gaitway/v1/gaitway.proto`` (``make proto``).

    python -m gateway.proto.generate

Writes ``gaitway_pb2.py``, ``gaitway_pb2.pyi`` and ``gaitway_pb2_grpc.py`` beside the .proto file with
``python -m grpc_tools.protoc`` (which adds the well-known types, google/protobuf/*.proto, to the include
path). protoc writes ``from gaitway.v1 import gaitway_pb2`` into the gRPC module, which only works with the
proto root on ``sys.path``; it is rewritten to a relative import so the stubs work as the package
``gateway.proto.gaitway.v1``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROTOS = ["gaitway/v1/gaitway.proto"]
_ABSOLUTE_IMPORT = re.compile(r"^from gaitway\.v1 import (\w+_pb2) as", re.MULTILINE)


def generate() -> list[Path]:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}",
            *PROTOS,
        ],
        cwd=ROOT,
        check=True,
    )
    written: list[Path] = []
    for proto in PROTOS:
        stem = ROOT / proto.removesuffix(".proto")
        grpc_module = stem.with_name(stem.name + "_pb2_grpc.py")
        text = grpc_module.read_text()
        fixed = _ABSOLUTE_IMPORT.sub(r"from . import \1 as", text)
        if fixed == text:
            raise RuntimeError(f"{grpc_module.name}: protoc's import line not found; check the generator")
        grpc_module.write_text(fixed)
        written += [stem.with_name(stem.name + suffix) for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]
        folder = stem.parent
        while folder != ROOT.parent:  # gateway/proto, gateway/proto/gaitway, ... are packages
            (folder / "__init__.py").touch()
            folder = folder.parent
    return written


def main() -> int:
    for path in generate():
        sys.stdout.write(f"wrote {path.relative_to(ROOT.parent.parent)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
