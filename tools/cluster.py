"""A private PostGIS cluster started from the machine's PostgreSQL binaries.

`make db` and the test suite need a real PostGIS on any machine, including ones
with no Docker engine. This module finds PostgreSQL 15, installs Debian's PostGIS
package when it is missing (only as root), and runs `initdb`/`pg_ctl` as an
unprivileged user, because both refuse to run as root.

Command line (used by the Makefile)::

    python -m tools.cluster up      # make sure a database answers; print its URL
    python -m tools.cluster standby # a hot standby of .pgdata/ in .pgdata-standby/; its URL
    python -m tools.cluster down    # stop the private cluster (and its standby)
    python -m tools.cluster status
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.settings import DEFAULT_DATABASE_URL, load_settings, redact

PG_MAJOR = 15
POSTGIS_PACKAGE = f"postgresql-{PG_MAJOR}-postgis-3"
DEFAULT_DIR = Path(".pgdata")
DEFAULT_PORT = 54329
#: `python -m tools.cluster standby`: a hot standby of the private cluster.
STANDBY_DIR = Path(".pgdata-standby")
STANDBY_PORT = 54330
DB_NAME = "hometown"
DB_USER = "hometown"
# Bulk loads dominate this cluster's work: a bigger WAL budget and minimal WAL
# (COPY into a table created in the same transaction then skips WAL entirely).
TUNING = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'1GB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'1GB'",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'30min'",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_connections": "200",
    "jit": "off",
}


#: What a primary needs so `pg_basebackup` and a hot standby can follow it.
REPLICATION = {"wal_level": "replica", "max_wal_senders": "8", "wal_keep_size": "'256MB'"}


class ClusterError(RuntimeError):
    """The private cluster could not be set up or started; the message says why."""


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays a clean URL for the Makefile."""
    print(f"[db] {message}", file=sys.stderr, flush=True)


def pg_bindir() -> Path:
    """Find the PostgreSQL 15 server binaries (Debian keeps them off the PATH)."""
    debian = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
    if (debian / "initdb").exists():
        return debian
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise ClusterError(
        f"PostgreSQL {PG_MAJOR} server binaries not found; install postgresql-{PG_MAJOR}"
    )


def postgis_installed(bindir: Path) -> bool:
    """Whether the server's extension directory holds PostGIS."""
    out = subprocess.run(
        [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
    )
    return (Path(out.stdout.strip()) / "extension" / "postgis.control").exists()


def ensure_postgis(bindir: Path) -> None:
    """Install Debian's PostGIS package when it is missing and we may."""
    if postgis_installed(bindir):
        return
    if os.geteuid() != 0:
        raise ClusterError(
            f"PostGIS is not installed: run `sudo apt-get install {POSTGIS_PACKAGE}`"
        )
    log(f"installing {POSTGIS_PACKAGE} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", POSTGIS_PACKAGE], check=True, env=env)


def free_port() -> int:
    """A TCP port nobody listens on right now (for throwaway test clusters)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalCluster:
    """One PostgreSQL data directory, run by an unprivileged user on a local port."""

    root: Path
    port: int = DEFAULT_PORT
    fsync: bool = True
    #: WAL for streaming replication (`standby`), instead of the bulk loads' minimal WAL.
    replication: bool = False

    @property
    def datadir(self) -> Path:
        """Where `initdb` puts the cluster."""
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        """The server log, the first place to look when start-up fails."""
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """Connection URL (trust auth on loopback; the password is ignored)."""
        return f"postgresql://{DB_USER}:{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def _owner(self) -> str | None:
        """The user to run the server as: ourselves, unless we are root."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            return name
        raise ClusterError("running as root and no unprivileged user (postgres) exists")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        owner = self._owner()
        cmd = ["runuser", "-u", owner, "--", *args] if owner else list(args)
        return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd="/")

    def _chown(self) -> None:
        owner = self._owner()
        if owner:
            entry = pwd.getpwnam(owner)
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _make_root(self) -> None:
        """Create the cluster directory where the server's user can reach it.

        As root, the server runs as `postgres`, which cannot enter a checkout under
        a private home (`/root` is mode 700). Then the data lives in a directory of
        its own under the system's temporary area and `root` becomes a symlink to
        it, so the cluster is still found at `.pgdata/`.
        """
        if self.root.exists():
            return
        self.root.parent.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        parent = str(self.root.parent.resolve())
        # `test -x` as the server's user fails unless every directory on the way opens.
        if owner and self._run("test", "-x", parent, check=False).returncode != 0:
            tag = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:10]
            target = Path(tempfile.gettempdir()) / f"hometown-pgdata-{tag}"
            target.mkdir(mode=0o700, exist_ok=True)
            self.root.symlink_to(target, target_is_directory=True)
            log(f"{parent} is closed to {owner}: the cluster's files live in {target}")
            return
        self.root.mkdir()

    def running(self) -> bool:
        """Whether `pg_ctl status` says the server of this directory is up."""
        if not (self.datadir / "PG_VERSION").exists():
            return False
        return (
            self._run(
                str(pg_bindir() / "pg_ctl"),
                "status",
                "-D",
                str(self.datadir.resolve()),
                check=False,
            ).returncode
            == 0
        )

    def start(self) -> str:
        """Initialise (once) and start the cluster; create the database. Idempotent."""
        bindir = pg_bindir()
        ensure_postgis(bindir)
        self._make_root()
        datadir = self.datadir.resolve()
        if not (datadir / "PG_VERSION").exists():
            log(f"initialising a private cluster in {self.datadir}")
            self._chown()
            result = self._run(
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                DB_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                check=False,
            )
            if result.returncode != 0:
                raise ClusterError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
            settings = {
                **TUNING,
                **(REPLICATION if self.replication else {}),
                "port": str(self.port),
                "unix_socket_directories": f"'{datadir}'",
                "fsync": "on" if self.fsync else "off",
                "synchronous_commit": "on" if self.fsync else "off",
                "full_page_writes": "on" if self.fsync else "off",
            }
            with (datadir / "postgresql.conf").open("a") as conf:
                conf.write("\n# hometown private cluster\n")
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if not self.running():
            log(f"starting PostgreSQL on 127.0.0.1:{self.port}")
            self._chown()
            result = self._run(
                str(bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(datadir),
                "-l",
                str(self.logfile.resolve()),
                check=False,
            )
            if result.returncode != 0:
                tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
                raise ClusterError(f"pg_ctl start failed:\n{result.stderr}\n{tail}")
        asyncio.run(_create_database(self.port))
        return self.url

    def standby(self, root: Path, port: int, **settings: str) -> LocalCluster:
        """A hot standby of this (running, `replication`) cluster in `root`, started.

        `pg_basebackup -R` copies the data directory over a replication connection
        and writes `primary_conninfo` and `standby.signal`, so the copy starts as a
        read-only server that streams and replays this one's WAL. `settings` go into
        the standby's postgresql.conf (e.g. `recovery_min_apply_delay="'2s'"`).
        """
        if asyncio.run(_setting(self.port, "wal_level")) == "minimal":
            raise ClusterError(
                "the primary runs with wal_level = minimal: no standby can follow it"
                " (`python -m tools.cluster standby` turns replication on for .pgdata/)"
            )
        bindir = pg_bindir()
        standby = LocalCluster(root, port=port, fsync=self.fsync, replication=True)
        standby._make_root()
        standby._chown()
        datadir = standby.datadir.resolve()
        result = self._run(
            str(bindir / "pg_basebackup"),
            "-D",
            str(datadir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            DB_USER,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"pg_basebackup failed:\n{result.stdout}\n{result.stderr}")
        overrides = {
            "port": str(port),
            "unix_socket_directories": f"'{datadir}'",
            "hot_standby": "on",
            **settings,
        }
        with (datadir / "postgresql.conf").open("a") as conf:
            conf.write("\n# hometown hot standby\n")
            conf.writelines(f"{key} = {value}\n" for key, value in overrides.items())
        standby.start()
        return standby

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown: aborts open transactions)."""
        if self.running():
            log("stopping the private cluster")
            self._run(
                str(pg_bindir() / "pg_ctl"),
                "stop",
                "-m",
                "fast",
                "-w",
                "-D",
                str(self.datadir.resolve()),
            )

    def enable_replication(self) -> None:
        """Turn a running minimal-WAL cluster into one a standby can follow (a restart)."""
        if asyncio.run(_setting(self.port, "wal_level")) != "minimal":
            return
        log("turning replication on (wal_level = replica) and restarting")
        asyncio.run(_alter_system(self.port, {**REPLICATION, "wal_keep_size": "'1GB'"}))
        result = self._run(
            str(pg_bindir() / "pg_ctl"),
            "restart",
            "-w",
            "-m",
            "fast",
            "-D",
            str(self.datadir.resolve()),
            "-l",
            str(self.logfile.resolve()),
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"pg_ctl restart failed:\n{result.stderr}")


@asynccontextmanager
async def _admin(port: int) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the cluster's `postgres` database, closed afterwards."""
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=DB_USER, database="postgres")
    try:
        yield conn
    finally:
        await conn.close()


async def _setting(port: int, name: str) -> str:
    async with _admin(port) as conn:
        return str(await conn.fetchval("SELECT current_setting($1)", name))


async def _alter_system(port: int, settings: dict[str, str]) -> None:
    async with _admin(port) as conn:
        for key, value in settings.items():
            await conn.execute(f"ALTER SYSTEM SET {key} = {value}")


async def _create_database(port: int) -> None:
    async with _admin(port) as conn:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME):
            await conn.execute(f'CREATE DATABASE "{DB_NAME}"')


async def _ping(url: str) -> str:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        return str(await conn.fetchval("SELECT version()"))
    finally:
        await conn.close()


def wait_for(url: str, timeout_s: float = 60.0) -> None:
    """Block until `url` accepts connections, or fail with the last error."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            asyncio.run(_ping(url))
            return
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            if time.monotonic() > deadline:
                raise ClusterError(f"database at {redact(url)} did not answer: {exc}") from exc
            time.sleep(0.5)


def docker_engine_answers() -> bool:
    """Whether a Docker engine (not just the client) is reachable."""
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compose_command() -> list[str]:
    """`docker compose` (plugin) or the older `docker-compose`."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise ClusterError("a Docker engine answers but neither `docker compose` nor docker-compose")


def up() -> str:
    """Give a reachable PostGIS: `DATABASE_URL`, else docker compose, else `.pgdata/`."""
    configured = load_settings().database_url  # DATABASE_URL from the environment or .env
    if "DATABASE_URL" in os.environ or configured != DEFAULT_DATABASE_URL:
        url = configured
        log(f"using DATABASE_URL {redact(url)}")
        wait_for(url, timeout_s=30)
        return url
    if docker_engine_answers():
        log("a Docker engine answers: starting the compose `db` service")
        subprocess.run([*compose_command(), "up", "-d", "db"], check=True)
        wait_for(DEFAULT_DATABASE_URL, timeout_s=120)
        return DEFAULT_DATABASE_URL
    return LocalCluster(DEFAULT_DIR).start()


def standby_up() -> str:
    """A hot standby of the private cluster in `.pgdata-standby/`; print its URL.

    For trying `DATABASE_REPLICA_URLS` and for `python -m bench.replicas`: the first
    call turns replication on in `.pgdata/` (one restart) and copies it.
    """
    primary = LocalCluster(DEFAULT_DIR)
    primary.start()
    primary.enable_replication()
    standby = LocalCluster(STANDBY_DIR, port=STANDBY_PORT, replication=True)
    if (standby.datadir / "PG_VERSION").exists():
        standby.start()
        return standby.url
    log(f"copying the private cluster into {STANDBY_DIR} (pg_basebackup -R)")
    return primary.standby(STANDBY_DIR, STANDBY_PORT).url


def main(argv: list[str]) -> int:
    """Entry point for `python -m tools.cluster`."""
    command = argv[0] if argv else "up"
    try:
        if command == "up":
            print(up())
        elif command == "standby":
            print(standby_up())
        elif command == "down":
            LocalCluster(STANDBY_DIR, port=STANDBY_PORT).stop()
            LocalCluster(DEFAULT_DIR).stop()
        elif command == "status":
            running = LocalCluster(DEFAULT_DIR).running()
            print("running" if running else "stopped")
        else:
            print("usage: python -m tools.cluster [up|standby|down|status]", file=sys.stderr)
            return 2
    except (ClusterError, subprocess.CalledProcessError) as exc:
        print(f"[db] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
