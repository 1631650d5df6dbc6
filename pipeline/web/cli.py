"""``qpm-screen web``: serve the web app, create accounts, import batch outputs, export review labels.

``pipeline.cli`` registers these with one call, :func:`add_parser`. Heavy imports (FastAPI, SQLAlchemy, the
model) happen only when a ``web`` command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import getpass
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_path
from pipeline.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, common_options, settings_from_args
from pipeline.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return settings_from_args(
        args,
        web_host=getattr(args, "host", None),
        web_port=getattr(args, "port", None),
        database_url=getattr(args, "database_url", None),
        web_data_dir=getattr(args, "data_dir", None),
    )


def _open_db(settings: Settings) -> Any:
    from pipeline.web.db import database_url, open_database, session_factory

    engine = open_database(database_url(settings))  # a database that cannot be used is a ConfigError: exit 2
    return engine, session_factory(engine)


#: uvicorn's exit status when the app cannot start (it cannot listen, or start-up failed). Here 3 means "finished
#: but some files failed", so it becomes a usage error (2).
UVICORN_STARTUP_FAILURE = 3


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the web app (uvicorn) and keep serving until interrupted.

    What the server's start-up needs is checked first (the workspace folder, the database, the session key, the
    address and port), so a bad setting is a usage error with one line saying which, not a traceback and exit 3.
    """
    from pipeline.web.app import run_server

    settings = _settings(args)
    _check_workspace(settings)
    problem = _listen_problem(settings.web_host, settings.web_port)
    if problem:
        print(f"qpm-screen web: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"QPM Pre-screen web app on http://{settings.web_host}:{settings.web_port}/ "
        f"(assessor workspace: /review). Stop with Ctrl+C.",
        file=sys.stderr,
    )
    try:
        run_server(settings, log_level="info" if args.verbose else "warning")
    except SystemExit as exc:
        if exc.code != UVICORN_STARTUP_FAILURE:
            raise
        # Something changed between the checks and the start (another program took the port): uvicorn has
        # printed why.
        print("qpm-screen web: the web app could not start (see the error above)", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _check_workspace(settings: Settings) -> None:
    """Raise ``ConfigError`` naming the setting unless the workspace folder, database and session key can be used.

    The app's start-up does the same work (it is idempotent); done here first, a failure is the CLI's usage error.
    """
    from pipeline.config import usable_folder
    from pipeline.errors import ConfigError
    from pipeline.web.common import secret_key_path
    from pipeline.web.security import load_or_create_secret

    folder = Path(settings.web_data_dir).expanduser()
    # It holds password hashes: private when we create it. If it cannot be made, usable_folder says why.
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    usable_folder(folder, "workspace folder", "QPM_WEB_DATA_DIR (or --data-dir)")
    engine, _ = _open_db(settings)
    engine.dispose()
    key = secret_key_path(settings)
    try:
        load_or_create_secret(key)
    except OSError as exc:
        raise ConfigError(
            f"the session key file {key} cannot be used ({exc.strerror or exc}): set QPM_WEB_SECRET_KEY_FILE to a "
            "file you can write, or leave it empty (a key in the workspace folder)"
        ) from None


def _listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host``:``port``, or None. Bound and released at once, as uvicorn will
    bind it (``SO_REUSEADDR``, so a port left in TIME_WAIT by a previous run counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror:
            return f"--host {host} (QPM_WEB_HOST) is not a known address"
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is in use by another program: choose another with --port (QPM_WEB_PORT)"
            if exc.errno == errno.EACCES:
                return f"port {port} needs administrator rights: choose one above 1023 with --port (QPM_WEB_PORT)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"--host {host} (QPM_WEB_HOST) is not an address of this machine"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        print("qpm-screen web: no terminal to ask for a password: use --password-stdin", file=sys.stderr)
        return None
    first = getpass.getpass("Password (at least 10 characters): ")
    if getpass.getpass("Repeat the password: ") != first:
        print("qpm-screen web: the passwords differ", file=sys.stderr)
        return None
    return first


def _account_command(args: argparse.Namespace, command: str, action: Callable[[Any, str], str]) -> int:
    """Read a password, run ``action(db, password)`` in one transaction and print what it returns."""
    from pipeline.web.workspace import WorkspaceError

    password = _read_password(args)
    if password is None:
        return EXIT_USAGE
    engine, sessions = _open_db(_settings(args))
    try:
        with sessions() as db:
            try:
                message = action(db, password)
            except WorkspaceError as exc:
                print(f"qpm-screen web {command}: {exc}", file=sys.stderr)
                return EXIT_USAGE
            db.commit()
            print(message)
    finally:
        engine.dispose()
    return EXIT_OK


def cmd_create_user(args: argparse.Namespace) -> int:
    """Create a local account (password prompted twice, or read from standard input)."""
    from pipeline.web.workspace import create_user

    def create(db: Any, password: str) -> str:
        user = create_user(db, args.name, password, args.role, display_name=args.display_name or "")
        return f"created {args.role} {user.username}"

    return _account_command(args, "create-user", create)


def cmd_set_password(args: argparse.Namespace) -> int:
    """Set a new password for an account; every sign-in of that account ends."""
    from sqlalchemy import select

    from pipeline.web.db import User
    from pipeline.web.workspace import WorkspaceError, set_password

    def change(db: Any, password: str) -> str:
        user = db.scalars(select(User).where(User.username == args.name)).first()
        if user is None:
            raise WorkspaceError(f"no account named {args.name!r}")
        set_password(db, user, password)
        return f"password changed for {user.username}; their sign-ins have ended"

    return _account_command(args, "set-password", change)


def cmd_import(args: argparse.Namespace) -> int:
    """Import batch output folders (or single submissions' output folders) into the workspace.

    Every folder is checked before the database is opened: one that does not exist, is a file, or holds no
    report at all is a usage error (exit 2) and nothing is imported. A report that cannot be read is a problem
    of that submission (exit 3, the others are imported).
    """
    from pipeline.web.workspace import import_folder

    unusable = [(folder, _import_problem(Path(folder))) for folder in args.folders]
    unusable = [(folder, problem) for folder, problem in unusable if problem]
    for folder, problem in unusable:
        print(f"qpm-screen web import: {folder} {problem}", file=sys.stderr)
    if unusable:
        return EXIT_USAGE
    engine, sessions = _open_db(_settings(args))
    failed = False
    out: list[dict[str, Any]] = []
    try:
        with sessions() as db:
            for folder in args.folders:
                summary = import_folder(db, Path(folder), user=None)
                db.commit()
                failed = failed or bool(summary.problems)
                out.append(
                    {
                        "folder": folder,
                        "imported": [s.name for s in summary.imported],
                        "already_imported": summary.already,
                        "problems": summary.problems,
                    }
                )
    finally:
        engine.dispose()
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for item in out:
            print(f"{item['folder']}: {len(item['imported'])} imported, {len(item['already_imported'])} already there")
            for problem in item["problems"]:
                print(f"   problem: {problem}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _import_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be imported at all, or None: it must be a folder holding report.json itself or in
    its sub-folders (a ``batch --out`` folder, or one submission's output folder)."""
    from pipeline.report import REPORT_FILE

    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "is not a folder: give a `qpm-screen batch --out` folder"
    try:
        if (folder / REPORT_FILE).is_file() or any((sub / REPORT_FILE).is_file() for sub in folder.iterdir()):
            return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return f"holds no {REPORT_FILE}, nor do its sub-folders: give a `qpm-screen batch --out` folder"


def cmd_export_labels(args: argparse.Namespace) -> int:
    """Write signed-off decisions as a labels CSV (document,indicator,expected,evidence + where the file is)."""
    from pipeline.web.db import database_url
    from pipeline.web.workspace import export_review_labels

    out = Path(args.out) if args.out else None
    if out is not None and (out.is_dir() or not out.parent.is_dir()):  # checked before the database is read
        where = "is a folder" if out.is_dir() else f"is in a folder that does not exist ({out.parent})"
        print(f"qpm-screen web export-labels: --out {out} {where}: name a CSV file", file=sys.stderr)
        return EXIT_USAGE
    labels = export_review_labels(database_url(_settings(args)))
    columns = ["document", "indicator", "expected", "evidence", "document_sha256", "document_path", "submission"]
    if out is None:
        _write_labels(sys.stdout, labels, columns)
        return EXIT_OK
    try:
        with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            _write_labels(handle, labels, columns)
    except OSError as exc:
        print(f"qpm-screen web export-labels: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {len(labels)} labels to {out}", file=sys.stderr)
    return EXIT_OK


def _write_labels(handle: Any, labels: list[Any], columns: list[str]) -> None:
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    for label in labels:
        writer.writerow({c: getattr(label, c) for c in columns})


def _workspace_options(*, keep_earlier: bool = False) -> argparse.ArgumentParser:
    """``--database-url`` and ``--data-dir`` (``keep_earlier``: see :func:`pipeline.cli.common_options`)."""
    default: Any = argparse.SUPPRESS if keep_earlier else None
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--database-url", default=default, help="SQLAlchemy URL of the workspace database (QPM_DATABASE_URL)"
    )
    server.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help="folder for the workspace database and key (QPM_WEB_DATA_DIR)",
    )
    return server


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``web`` and its sub-commands on the ``qpm-screen`` parser.

    The shared flags are accepted before the sub-command (``web --data-dir X import ...``) and after it.
    """
    server = _workspace_options()
    # The sub-commands' own copies set nothing when absent, so a flag given before the sub-command still counts.
    later = [common_options(keep_earlier=True), _workspace_options(keep_earlier=True)]

    p = sub.add_parser(
        "web",
        parents=[common, server],
        help="the web app: providers' private self-test and the assessors' workspace",
        description="Without a sub-command: serve the web app (http://127.0.0.1:8000/ by default).",
    )
    p.add_argument("--host", help="address to listen on (QPM_WEB_HOST; default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, help="port (QPM_WEB_PORT; default 8000)")
    p.set_defaults(func=cmd_serve)
    web = p.add_subparsers(dest="web_command", metavar="SUBCOMMAND")

    c = web.add_parser("create-user", parents=later, help="create a local account")
    c.add_argument("name", metavar="NAME", help="user name to sign in with")
    c.add_argument("--role", choices=["assessor", "admin"], default="assessor")
    c.add_argument("--display-name", help="full name shown in the workspace and exports")
    c.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    c.set_defaults(func=cmd_create_user)

    w = web.add_parser("set-password", parents=later, help="set a new password for an account")
    w.add_argument("name", metavar="NAME", help="the account's user name")
    w.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    w.set_defaults(func=cmd_set_password)

    i = web.add_parser("import", parents=later, help="import batch output folders into the workspace")
    i.add_argument("folders", nargs="+", metavar="DIR", help="a `batch --out` folder, or one submission's folder")
    i.set_defaults(func=cmd_import)

    e = web.add_parser("export-labels", parents=later, help="signed-off decisions as a labels CSV")
    e.add_argument("--out", help="CSV file to write (default: standard output)")
    e.set_defaults(func=cmd_export_labels)
