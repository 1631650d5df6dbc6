"""The assessor workspace's database: SQLAlchemy 2 models, the engine, and migrations run at start-up.

Design rules, because these rows are the record of a desktop review:

- Machine output and human decisions live in separate tables. ``machine_results`` is written once, when a
  submission is imported, and never changed; ``decisions`` holds what assessors decided.
- Nothing is updated or deleted in ``decisions``, ``signoffs`` or ``audit_events``: every change is a new row
  with who and when (an append-only audit trail). The current decision for an indicator is its latest row.
- Only portable SQL: the same models and migrations run on the embedded SQLite default and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship, sessionmaker

from pipeline.config import Settings, usable_folder
from pipeline.errors import ConfigError

ROLES = ("assessor", "admin")
DECISION_STATUSES = ("met", "partial", "missing")


def utcnow() -> datetime:
    """Now in UTC (timezone-aware), to the microsecond so the order of quick successive changes is kept."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base. ``JSON`` columns are JSON on PostgreSQL and TEXT holding JSON on SQLite."""


class User(Base):
    """A local account. ``password_hash`` is ``scrypt$n$r$p$salt$hash`` (see :mod:`pipeline.web.security`)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="assessor")
    active: Mapped[bool] = mapped_column(default=True)
    # Bumped on password change or deactivation: cookies carrying an older value stop working at once.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def label(self) -> str:
        """How the user is named in the interface and exports."""
        return self.display_name or self.username


class Submission(Base):
    """One provider's screened submission, imported from a ``batch`` output folder or an assessor's upload."""

    __tablename__ = "submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    batch: Mapped[str] = mapped_column(String(300), default="")  # the batch output folder's name, or "upload"
    source_dir: Mapped[str] = mapped_column(Text, default="")  # the folder report.json was imported from
    input_key: Mapped[str] = mapped_column(String(64), default="")  # report.json's fingerprint of its inputs
    verdict: Mapped[str] = mapped_column(Text, default="")
    met: Mapped[int] = mapped_column(Integer, default=0)
    partial: Mapped[int] = mapped_column(Integer, default=0)
    missing: Mapped[int] = mapped_column(Integer, default=0)
    essential_missing: Mapped[int] = mapped_column(Integer, default=0)
    documents: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    screened_at: Mapped[str] = mapped_column(String(40), default="")
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    imported_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    # Large: loaded only when a page needs them.
    report: Mapped[dict[str, Any]] = deferred(mapped_column(JSON))
    evidence_map_html: Mapped[str | None] = deferred(mapped_column(Text, nullable=True))

    results: Mapped[list[MachineResult]] = relationship(
        back_populates="submission", order_by="MachineResult.position", cascade="all, delete-orphan"
    )
    imported_by: Mapped[User | None] = relationship()


class MachineResult(Base):
    """The matcher's suggestion for one indicator of one submission, as report.json gave it. Never changed."""

    __tablename__ = "machine_results"
    __table_args__ = (UniqueConstraint("submission_id", "indicator_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # catalogue order
    indicator_id: Mapped[str] = mapped_column(String(32))
    area: Mapped[str] = mapped_column(String(32))
    area_name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column()
    evidence_refs: Mapped[str] = mapped_column(Text, default="")  # "policy.pdf p.4, s.3.2; ..."

    submission: Mapped[Submission] = relationship(back_populates="results")


class Decision(Base):
    """One assessor decision on one indicator. Append-only: the latest row per indicator is the current one."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_submission_indicator", "submission_id", "indicator_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    indicator_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))  # "accept" (machine status kept) or "override"
    machine_status: Mapped[str] = mapped_column(String(16))  # what the machine said, copied for the record
    status: Mapped[str] = mapped_column(String(16))  # the human decision: met / partial / missing
    reason: Mapped[str] = mapped_column(Text, default="")  # required for an override
    notes: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[str] = mapped_column(Text, default="")  # optional quote supporting the decision
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship()


class SignOff(Base):
    """Sign-off of a submission's desktop review (``action`` "sign_off"), or its reopening ("reopen")."""

    __tablename__ = "signoffs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship()


class AuditEvent(Base):
    """Everything else worth a record: sign-ins, imports, exports, accounts. Never holds document text."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(40))
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id", ondelete="SET NULL"), nullable=True)
    details: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User | None] = relationship()


# --- engine and migrations ----------------------------------------------------------------------------------


def database_url(settings: Settings) -> str:
    """The configured URL, or the embedded default: ``sqlite:///<web_data_dir>/workspace.sqlite``."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{Path(settings.web_data_dir).expanduser() / 'workspace.sqlite'}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys on, a busy timeout and WAL so readers never block.

    A URL SQLAlchemy cannot use, or a database folder that cannot be created, is a ``ConfigError`` naming it.
    """
    try:
        return _make_engine(url)
    except ArgumentError as exc:  # an unknown dialect or a malformed URL
        raise ConfigError(f"the database URL {url!r} cannot be used (QPM_DATABASE_URL): {exc}") from None
    except ImportError as exc:  # a dialect whose driver is not installed (postgresql+psycopg without psycopg)
        raise ConfigError(
            f"the database URL {_shown(url)} needs the Python package {exc.name or 'of its driver'}, which is not "
            "installed (QPM_DATABASE_URL)"
        ) from None


def open_database(url: str) -> Engine:
    """An engine for ``url`` with the schema migrated to the newest revision (:func:`make_engine`, :func:`migrate`).

    A database that cannot be opened or migrated (a folder or another kind of file where the SQLite file should
    be, a server that does not answer, a schema newer than this version knows) is a ``ConfigError`` naming it,
    password hidden: a setting to fix, not a traceback.
    """
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    engine = make_engine(url)
    try:
        migrate(engine)
    except (SQLAlchemyError, CommandError) as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"the database {_shown(url)} cannot be used (QPM_DATABASE_URL, or --data-dir for the default): {reason}"
        ) from None
    return engine


def _shown(url: str) -> str:
    """``url`` for a message: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            folder = Path(path).parent
            if not folder.exists():
                # It holds accounts' password hashes: private when we create it. When it cannot be created,
                # usable_folder below raises the ConfigError that says why (not an OSError traceback).
                with contextlib.suppress(OSError):
                    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            usable_folder(folder, "workspace folder", "QPM_WEB_DATA_DIR (or --data-dir)")
            if not Path(path).exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # readable by its owner only
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (``alembic upgrade head``), in-process, at start-up."""
    from alembic import command
    from alembic.config import Config

    here = Path(__file__).resolve().parent
    config = Config(str(here / "alembic.ini"))
    config.set_main_option("script_location", str(here / "migrations"))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Any]:
    """Sessions that keep loaded attributes after commit (pages render after the transaction ends)."""
    return sessionmaker(engine, expire_on_commit=False)
