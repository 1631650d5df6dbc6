"""The embedded Prefect server: its home folder, its run history kept from growing without bound, and its process.

In its embedded (ephemeral) mode Prefect keeps every flow run, task run, state, event and artifact in
``<home>/prefect.db`` and runs none of its clean-up services: measured here, about 0.2 MB per screened
submission. Cached task results and all outputs live elsewhere, so the history is safe to start afresh.
Each process of this tool holds a shared lock on the home while it may use the server; the history is moved
aside only when nobody else holds one, so a running screen never loses its database under it.

The server itself runs apart from the command that starts it (:func:`detach_embedded_server`): in a session of
its own, with its output in ``<home>/server.log``.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from pipeline.config import Settings, usable_folder

DATABASE = "prefect.db"
PREVIOUS = "prefect.db.previous"
LOCK = ".qpm-screen.lock"
SERVER_LOG = "server.log"
SERVER_LOG_MAX_BYTES = 1024 * 1024  # moved aside to server.log.previous past this, when a server starts
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


SERVER_APP = "pipeline.embedded_server:create_app"  # the embedded server's app (uvicorn factory)
# ... and Prefect's own, which earlier versions of the tool started: a leftover one is stopped all the same
_SERVER_APPS = (SERVER_APP.encode(), b"prefect.server.api.server:create_app")


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
            if set(_SERVER_APPS).isdisjoint((entry / "cmdline").read_bytes().split(b"\0")):
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


# --- the server process -------------------------------------------------------------------------------------


def detach_embedded_server() -> None:
    """Have the embedded server this process starts (on its first Prefect client, when no ``PREFECT_API_URL`` is
    set) run in a session of its own, writing its output to ``<PREFECT_HOME>/server.log`` instead of the terminal.

    Why: Prefect starts it as a plain child that shares the command's process group and terminal. Ctrl+C in a
    terminal, ``timeout`` and ``kill -- -PGID`` signal the whole group, so the server stopped at the very moment
    the command began reporting its interrupted flow run to it: Prefect's client retried for about a minute, then
    its connection error replaced the interrupt (a traceback and exit code 1, not 130 or 143). A signal to the
    command alone let it exit at once, and Prefect's exit hook stopped the server while it was still recording
    that report: the server's own tracebacks appeared on the terminal as if the run had failed. Apart, the server
    outlives the signal until the command's exit hook stops it (as before), and what it logs while stopping stays
    in its log. One killed outright with the command is still found and stopped by :func:`_stop_orphaned_servers`
    (same command line and environment as Prefect's own).

    Call before the first Prefect client of the process is made; a server already running is left as it is.
    """
    from prefect.server.api.server import SubprocessASGIServer

    # Prefect keeps one server per port; the embedded one is the instance for "no port" (None), which every
    # client asks for with SubprocessASGIServer(). Creating ours first makes it that instance.
    if None not in SubprocessASGIServer._instances:
        _detached_server_class()()


@functools.cache
def _detached_server_class() -> type[Any]:
    # Defined on first use: this module is imported before Prefect's environment is decided, so it must not
    # import Prefect at the top.
    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_HOME, get_current_settings

    class DetachedServer(SubprocessASGIServer):
        """Prefect's embedded server, started in its own session with its output in ``server.log``."""

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            log_path = server_log_path(Path(PREFECT_HOME.value()))
            # The command and environment are Prefect 3.8's own (prefect.server.api.server) but for the app,
            # Prefect's wrapped (pipeline.embedded_server, importable where the tool is installed), so the server
            # behaves as Prefect's would; a leftover one is recognised by _stop_orphaned_servers.
            with open(log_path, "ab") as log:
                return subprocess.Popen(
                    args=[
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "--app-dir",
                        str(prefect.__module_path__.parent),
                        "--factory",
                        SERVER_APP,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                        "--log-level",
                        "error",
                        "--lifespan",
                        "on",
                    ],
                    env={
                        **os.environ,
                        "PREFECT_UI_ENABLED": "0",
                        "PREFECT__SERVER_EPHEMERAL": "1",
                        "PREFECT__SERVER_FINAL": "1",
                        **get_current_settings().to_environment_variables(exclude_unset=True),
                    },
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # signals sent to the command's process group do not reach it
                )

        def start(self, timeout: int | None = None) -> None:
            try:
                super().start(timeout)
            except RuntimeError as exc:  # Prefect's "timed out"; the reason is in the server's output, now a file
                log_path = Path(PREFECT_HOME.value()) / SERVER_LOG
                raise RuntimeError(f"{exc} The embedded Prefect server's log: {log_path}") from exc

    return DetachedServer


def server_log_path(home: Path) -> Path:
    """``<home>/server.log``, ready to append to; one grown past ``SERVER_LOG_MAX_BYTES`` is first moved to
    ``server.log.previous`` (replacing an older one).

    Safe while another process's server still writes to it: that one goes on appending to the moved file.
    """
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / SERVER_LOG
    try:
        if log_path.stat().st_size > SERVER_LOG_MAX_BYTES:
            os.replace(log_path, home / f"{SERVER_LOG}.previous")
    except FileNotFoundError:
        pass
    return log_path
