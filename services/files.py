"""One rule for writing a file that readers may open at any moment: write beside it, then rename."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, hidden name unique to this process and thread, same
    suffix so writers that choose a format by it still do) to write to; on success it is renamed onto
    ``path`` in one step, on failure removed. The folder must exist."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.part{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
