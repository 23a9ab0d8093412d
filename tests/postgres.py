"""A throw-away PostgreSQL server for tests.

``postgres_server()`` runs Debian's ``initdb``/``pg_ctl`` (installed with apt-get when missing) on a free
port of 127.0.0.1 in a temporary folder and yields an SQLAlchemy URL; ``create_database`` adds a fresh
database to it. A test module defines its own fixture around them::

    @pytest.fixture(scope="session")
    def pg_url() -> Iterator[str]:
        with postgres_server() as url:
            yield url

Failures raise RuntimeError: a test that needs PostgreSQL errors out, it is never skipped.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import make_url

log = logging.getLogger("tests.postgres")

PG_ROOT = Path("/usr/lib/postgresql")
USER = "gaitway"
OS_USER = "postgres"
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.name)) or (0,)


def find_pg_bin() -> Path | None:
    """The ``bin`` folder of the highest PostgreSQL version with initdb and pg_ctl, if any."""
    found = [
        d / "bin"
        for d in (PG_ROOT.iterdir() if PG_ROOT.is_dir() else [])
        if (d / "bin" / "initdb").is_file() and (d / "bin" / "pg_ctl").is_file()
    ]
    return max(found, key=lambda b: _version(b.parent), default=None)


def _run(cmd: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def ensure_pg_bin() -> Path:
    """PostgreSQL's binaries, installed from Debian's registry when missing (needs root)."""
    found = find_pg_bin()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("PostgreSQL is not installed; run: apt-get install postgresql")
    log.info("installing PostgreSQL with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    found = find_pg_bin()
    if found is None:
        raise RuntimeError(f"apt-get installed postgresql but no initdb/pg_ctl under {PG_ROOT}")
    return found


def _os_user() -> pwd.struct_passwd | None:
    """The user that runs the server: ``postgres`` when we are root (initdb refuses root), else us."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER])
        return pwd.getpwnam(OS_USER)


def _as_user(user: pwd.struct_passwd | None, cmd: list[str]) -> list[str]:
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--", *cmd]
    return ["su", user.pw_name, "-s", "/bin/sh", "-c", shlex.join(cmd)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    u = make_url(url)
    return psycopg.connect(
        host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True, connect_timeout=10
    )


def create_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url``; returns the URL of the new database."""
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: lowercase letters, digits and _ only")
    with _connect(url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def postgres_server(database: str = "gaitway", *, start_timeout_s: float = 60) -> Iterator[str]:
    """Start a PostgreSQL server of its own and yield ``postgresql+psycopg://`` URL of ``database``."""
    bin_dir = ensure_pg_bin()
    user = _os_user()
    root = Path(tempfile.mkdtemp(prefix="gaitway-pg-"))
    data, logfile = root / "data", root / "server.log"
    started = False
    try:
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "--no-sync"]
        _run(_as_user(user, [*initdb, "-E", "UTF8", "--no-locale"]))
        for attempt in range(3):
            port = free_port()
            options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
            ctl = [str(bin_dir / "pg_ctl"), "start", "-w", "-t", str(int(start_timeout_s))]
            cmd = _as_user(user, [*ctl, "-D", str(data), "-l", str(logfile), "-o", options])
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=start_timeout_s + 30, check=False
            )
            if proc.returncode == 0:
                started = True
                break
            server_log = logfile.read_text(errors="replace") if logfile.exists() else ""
            if attempt == 2 or "could not bind" not in server_log:
                raise RuntimeError(f"pg_ctl start failed:\n{proc.stdout}\n{proc.stderr}\n{server_log}")
        url = f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                url = create_database(url, database)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        log.info("PostgreSQL running on 127.0.0.1:%d", port)
        yield url
    finally:
        if started:
            subprocess.run(
                _as_user(user, [str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)
