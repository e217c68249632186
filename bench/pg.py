"""A throwaway PostgreSQL server: Debian's binaries, a temporary folder, loopback.

One implementation for the benches (`python -m bench cluster`, `bench.store_writes`) and
the tests (tests/integration/pg_server.py re-exports it with a free port).

`initdb` refuses to run as root, so under root the server runs as the `postgres` user
(made by Debian's package) through `runuser`; its folder is then that user's. It listens
on 127.0.0.1 with password (scram) authentication, so a wrong password is a real
refusal, and on a unix socket in its own folder. `stop()` shuts it down fast and removes
the folder. Absent binaries (no `postgresql` package): `missing_reason()` says so;
scripts/setup.sh --test installs the package.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER = "rtw"
PASSWORD = "rtw-test-password"
#: How long initdb + start may take on a busy 2-core machine.
START_TIMEOUT_S = 60


def bindir() -> Path | None:
    """The folder holding initdb and pg_ctl (newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_reason() -> str | None:
    """Why a server can't be started here (None: it can)."""
    if bindir() is None:
        return "PostgreSQL's binaries are not installed (Debian: apt-get install postgresql; scripts/setup.sh --test does it)"
    if os.geteuid() == 0:
        if not _real_root():
            return "root only in a user namespace (unshare -r): initdb refuses root, and no other user exists there"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user for initdb (it refuses root)"
    return None


def _real_root() -> bool:
    """Root of the machine, not a user namespace's mapped root (which can't become `postgres`)."""
    try:
        first = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return True
    return first[:2] == ["0", "0"]


@dataclass
class Postgres:
    folder: Path
    port: int
    bindir: Path
    as_user: list[str]
    options: str = ""  # pg_ctl -o: kept for restart()

    def url(self, database: str = "postgres", *, password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def run(self, *args: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
        """One of the server's programs, as the user that owns its folder."""
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout, check=False)

    def createdb(self, name: str) -> str:
        """A new empty database; returns its URL."""
        done = self.run(str(self.bindir / "createdb"), "-h", str(self.folder), "-p", str(self.port), "-U", USER, name)
        if done.returncode:
            raise RuntimeError(f"createdb {name} failed: {done.stderr}")
        return self.url(name)

    def query(self, database: str, sql: str) -> str:
        """One statement through psql over the unix socket; its unaligned output."""
        done = self.run(str(self.bindir / "psql"), "-h", str(self.folder), "-p", str(self.port), "-U", USER, "-d", database,
                        "-At", "-c", sql)
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    def restart(self) -> None:
        """pg_ctl restart (fast: open connections are closed), as a database deploy does."""
        done = self.run(
            str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-o", self.options,
            "-l", str(self.folder / "log"), "-w", "-t", str(START_TIMEOUT_S), "restart",
        )
        if done.returncode:
            raise RuntimeError(f"pg_ctl restart failed: {done.stderr}{done.stdout}")

    def stop(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start(port: int, *, fsync: bool = False) -> Postgres:
    """initdb + pg_ctl start in a new temporary folder, listening on 127.0.0.1:`port`;
    waits until it accepts connections. `fsync` off by default: throwaway data, faster."""
    bin_ = bindir()
    if bin_ is None or missing_reason():
        raise RuntimeError(str(missing_reason()))
    folder = Path(tempfile.mkdtemp(prefix="rtw-pg-"))
    as_user: list[str] = []
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        entry = pwd.getpwnam("postgres")
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chown(pwfile, entry.pw_uid, -1)
    folder.chmod(0o700)
    server = Postgres(folder, port, bin_, as_user)
    done = server.run(str(bin_ / "initdb"), "-D", str(folder / "data"), "-U", USER, f"--pwfile={pwfile}", "-A", "scram-sha-256",
                      "--auth-local=trust", "-E", "UTF8", "--no-sync")
    if done.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
    server.options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} -c fsync={'on' if fsync else 'off'}"
    )
    done = server.run(str(bin_ / "pg_ctl"), "-D", str(folder / "data"), "-o", server.options, "-l", str(folder / "log"), "-w",
                      "-t", str(START_TIMEOUT_S), "start")
    if done.returncode:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        server.stop()
        raise RuntimeError(f"pg_ctl start failed: {done.stderr}{done.stdout}\n{log}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while server.run(str(bin_ / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)).returncode:
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("PostgreSQL did not accept connections in time")
        time.sleep(0.2)
    return server
