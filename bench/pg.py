"""A throwaway PostgreSQL for `python -m bench cluster`: Debian's binaries, a temporary folder.

The tests have a fuller one (tests/integration/pg_server.py: wrong passwords, restarts);
benches may not import tests, so this is the little the cluster bench needs: initdb,
start on a loopback port with password authentication, one database, stop and remove.
`initdb` refuses root, so under root it runs as Debian's `postgres` user via `runuser`.
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
PASSWORD = "rtw-bench-password"
START_TIMEOUT_S = 60


def bindir() -> Path | None:
    """Where initdb and pg_ctl are (newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    folder: Path
    port: int
    bindir: Path
    as_user: list[str]

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)

    def createdb(self, name: str) -> str:
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

    def stop(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start(port: int) -> Postgres:
    """initdb + pg_ctl start in a new temporary folder, listening on 127.0.0.1:`port`."""
    bin_ = bindir()
    if bin_ is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; scripts/setup.sh --test does it)")
    folder = Path(tempfile.mkdtemp(prefix="rtw-bench-pg-"))
    as_user: list[str] = []
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        entry = pwd.getpwnam("postgres")
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chown(pwfile, entry.pw_uid, -1)
    folder.chmod(0o700)
    pg = Postgres(folder, port, bin_, as_user)
    done = pg.run(str(bin_ / "initdb"), "-D", str(folder / "data"), "-U", USER, f"--pwfile={pwfile}", "-A", "scram-sha-256",
                  "--auth-local=trust", "-E", "UTF8", "--no-sync")
    if done.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} -c fsync=off"
    done = pg.run(str(bin_ / "pg_ctl"), "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w",
                  "-t", str(START_TIMEOUT_S), "start")
    if done.returncode:
        pg.stop()
        raise RuntimeError(f"pg_ctl start failed: {done.stderr}{done.stdout}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while pg.run(str(bin_ / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)).returncode:
        if time.monotonic() > deadline:
            pg.stop()
            raise RuntimeError("PostgreSQL did not accept connections in time")
        time.sleep(0.2)
    return pg
