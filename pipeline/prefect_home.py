"""The embedded Prefect server's home folder, and keeping its run history from growing without bound.

In its embedded (ephemeral) mode Prefect keeps every flow run, task run, state, event and artifact in
``<home>/prefect.db`` and runs none of its clean-up services: measured here, about 0.2 MB per screened
submission. Cached task results and all outputs live elsewhere, so the history is safe to start afresh.
Each process of this tool holds a shared lock on the home while it may use the server; the history is moved
aside only when nobody else holds one, so a running screen never loses its database under it.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import IO

from pipeline.config import Settings, usable_folder

DATABASE = "prefect.db"
PREVIOUS = "prefect.db.previous"
LOCK = ".qpm-screen.lock"
_SQLITE_SIDE_FILES = ("-wal", "-shm")
_held: list[IO[bytes]] = []  # this process's lock on its home, open for the life of the process


def use_default_home(settings: Settings) -> None:
    """Unless the user has set ``PREFECT_HOME``, make it ``<cache_dir>/prefect``, claim it for this process and
    keep its history under ``settings.prefect_history_max_mb`` (see :func:`claim_home`). Call before Prefect is
    imported: it reads its home once, at import. A home the user chose is left alone."""
    if "PREFECT_HOME" in os.environ:
        return
    home = usable_folder(settings.cache_dir, "cache folder", "QPM_CACHE_DIR (or --cache-dir)") / "prefect"
    os.environ["PREFECT_HOME"] = str(home)
    if os.name != "posix":
        return  # no flock: without a lock the history is never moved
    lock, moved = claim_home(home, settings.prefect_history_max_mb)
    _held.append(lock)
    if moved is not None:
        logging.getLogger(__name__).warning(
            "Prefect's run history was over %d MB (QPM_PREFECT_HISTORY_MAX_MB) and was moved to %s; "
            "this run starts a new one",
            settings.prefect_history_max_mb,
            moved,
        )


def claim_home(home: Path, max_mb: int) -> tuple[IO[bytes], Path | None]:
    """Lock ``home`` for this process (keep the returned file open while Prefect may run) and, if no other
    process holds it and its database is larger than ``max_mb`` (0: never), move the database aside to
    ``prefect.db.previous`` (replacing an older one). Returns the lock file and the moved database, if any.
    POSIX only (``flock``)."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / LOCK, "a+b")  # noqa: SIM115 - held open for the life of the process
    moved = None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # another run is using the server: leave its history alone
    else:
        _stop_orphaned_servers(home)
        database = home / DATABASE
        if max_mb > 0 and database.exists() and database.stat().st_size > max_mb * 1024 * 1024:
            for suffix in ("", *_SQLITE_SIDE_FILES):
                source = home / f"{DATABASE}{suffix}"
                target = home / f"{PREVIOUS}{suffix}"
                if source.exists():
                    os.replace(source, target)
                elif target.exists():
                    target.unlink()  # a side file of the older copy that no longer belongs to it
            moved = home / PREVIOUS
    fcntl.flock(lock, fcntl.LOCK_SH)
    return lock, moved


_SERVER_APP = b"prefect.server.api.server:create_app"


def _stop_orphaned_servers(home: Path) -> list[int]:
    """Stop embedded Prefect servers left running for ``home`` by a process that was killed; returns their PIDs.

    Prefect stops its embedded server at exit, but a process killed outright (SIGKILL, the OOM killer) leaves it
    running for good, holding a port and its memory. Called only with the home's exclusive lock held, i.e. when
    no process of this tool is using the home, so every embedded server of this home is such a leftover. Linux
    only (it reads /proc); elsewhere nothing is found.
    """
    marks = (f"PREFECT_HOME={home}".encode(), b"PREFECT__SERVER_EPHEMERAL=1")
    stopped = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if _SERVER_APP not in (entry / "cmdline").read_bytes().split(b"\0"):
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            if all(mark in environ for mark in marks):
                os.kill(int(entry.name), signal.SIGTERM)
                stopped.append(int(entry.name))
        except (OSError, ValueError):  # gone meanwhile, or another user's process
            continue
    if stopped:
        logging.getLogger(__name__).warning("stopped %d Prefect server(s) left running by a killed run", len(stopped))
    return stopped
