"""A throwaway PostgreSQL cluster on loopback for tests: `initdb` into a temporary directory, `pg_ctl`."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
INSTALL_HINT = "install the server with `apt-get install postgresql` (Debian/Ubuntu)"


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster: trust authentication for `SUPERUSER` on 127.0.0.1:`port`."""

    port: int
    root: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def server_bin() -> Path:
    """Where `initdb` and `pg_ctl` are: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError(f"PostgreSQL's initdb and pg_ctl were not found; {INSTALL_HINT}")
    return Path(found[-1]).parent


def _as_server_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package creates the `postgres` system user.
    if os.geteuid() != 0:
        return command
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        message = f"running as root, but there is no `postgres` user to run the server as; {INSTALL_HINT}"
        raise RuntimeError(message) from None
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], log: Path | None = None) -> None:
    result = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        server_log = log.read_text()[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{Path(command[0]).name} failed: {result.stderr[-2000:]}{server_log}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a fresh cluster (fsync off: it is thrown away) and stop it, files and all, at the end."""
    bin_dir = server_bin()
    root = Path(tempfile.mkdtemp(prefix="tw-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, log = root / "data", root / "server.log"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    # The unix socket goes in the temporary directory too: the system one may not exist or be writable.
    options = f"-c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c full_page_writes=off"
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
        for attempt in range(3):  # the free port can be taken between choosing it and the server binding it
            port = _free_port()
            try:
                _run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o", f"{options} -p {port}", "start"], log)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        try:
            yield PostgresCluster(port=port, root=root)
        finally:
            _run([*pg_ctl, "-m", "immediate", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
