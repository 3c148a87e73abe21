"""A throwaway PostgreSQL cluster for tests: Debian's `postgresql` binaries, a temporary data
directory, 127.0.0.1 on a free port, and a password generated per run (no default password).

As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from logpipe.core.broker import free_port

USER = "logpipe_test"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL binaries not found: install Debian's `postgresql` package "
                       "(apt-get install -y postgresql) to run the PostgreSQL tests")


@dataclass
class PostgresServer:
    base: Path
    port: int
    password: str
    run_as: str | None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh database, so each test starts empty."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=self.password,
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        _run(self.run_as, [str(_bin_dir() / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop"],
             check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def _run(user: str | None, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if user:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}\n{result.stderr}")
    return result


def start_postgres() -> PostgresServer:
    bin_dir = _bin_dir()
    run_as = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="logpipe-pg-"))
    password = secrets.token_urlsafe(24)
    password_file = base / "password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    if run_as:
        account = pwd.getpwnam(run_as)
        os.chown(base, account.pw_uid, account.pw_gid)
        os.chown(password_file, account.pw_uid, account.pw_gid)
    _run(run_as, [str(bin_dir / "initdb"), "-D", str(base / "data"), "-U", USER, f"--pwfile={password_file}",
                  "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"])
    password_file.unlink()
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off -c max_connections=50"
    _run(run_as, [str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-o", options, "-l", str(base / "log"), "-w",
                  "-t", "60", "start"])
    return PostgresServer(base, port, password, run_as)
