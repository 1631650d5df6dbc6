"""The assessor workspace's rules, apart from HTTP: accounts, importing submissions, decisions, sign-off, export.

Routes and CLI commands call these functions; tests call them directly too. Every function takes an open
SQLAlchemy session and leaves committing to the caller, except where noted, so one request is one transaction.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.report import REPORT_FILE, read_report, safe_cell
from pipeline.web.db import (
    DECISION_STATUSES,
    ROLES,
    AuditEvent,
    Decision,
    MachineResult,
    SignOff,
    Submission,
    User,
    open_database,
    session_factory,
)
from pipeline.web.security import dummy_hash, hash_password, password_problem, verify_password

MAP_FILE = "evidence-map.html"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")
MAX_TEXT = 4000  # reasons and notes: long enough for a paragraph, short enough to keep exports readable


class WorkspaceError(Exception):
    """A request the workspace refuses, with a message for the person who made it."""


def audit(
    session: Session, user: User | None, action: str, submission_id: int | None = None, details: str = ""
) -> None:
    """Add an audit event (never document text: names, counts and ids only)."""
    session.add(
        AuditEvent(user_id=user.id if user else None, action=action, submission_id=submission_id, details=details)
    )


# --- accounts -----------------------------------------------------------------------------------------------


def create_user(
    session: Session, username: str, password: str, role: str, *, display_name: str = "", by: User | None = None
) -> User:
    """Create a local account; ``WorkspaceError`` for a bad name, a weak password, an unknown role or a duplicate."""
    username = username.strip()
    if not _USERNAME.match(username):
        raise WorkspaceError(
            "user names are 2-64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit"
        )
    if role not in ROLES:
        raise WorkspaceError(f"role must be one of: {', '.join(ROLES)}")
    problem = password_problem(password)
    if problem:
        raise WorkspaceError(problem)
    if session.scalar(select(User).where(func.lower(User.username) == username.lower())):
        raise WorkspaceError(f"a user named {username!r} already exists")
    user = User(
        username=username, display_name=display_name.strip()[:200], password_hash=hash_password(password), role=role
    )
    session.add(user)
    session.flush()
    audit(session, by, "user.create", details=f"{username} ({role})")
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, or None (the same work is done when the name is unknown)."""
    user = session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
    if user is None or not user.active:
        verify_password(password, dummy_hash())
        return None
    return user if verify_password(password, user.password_hash) else None


def set_password(session: Session, user: User, password: str, *, by: User | None = None) -> None:
    """Change a password; every existing sign-in of that user ends (the session version moves on)."""
    problem = password_problem(password)
    if problem:
        raise WorkspaceError(problem)
    user.password_hash = hash_password(password)
    user.session_version += 1
    audit(session, by or user, "user.password", details=user.username)


# --- importing submissions ----------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    """What an import did."""

    imported: list[Submission] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # submissions with the same inputs imported before
    problems: list[str] = field(default_factory=list)


def _refs(indicator: dict[str, Any]) -> str:
    return "; ".join(str(e.get("reference", "")) for e in indicator.get("evidence", []) if e.get("reference"))


def import_report(
    session: Session,
    report: dict[str, Any],
    *,
    source_dir: str,
    batch: str,
    evidence_map_html: str | None,
    user: User | None,
) -> tuple[Submission, bool]:
    """Store one report.json (and its evidence map) as a submission. Returns ``(submission, created)``.

    Importing the same screening twice (same name and input fingerprint) returns the first import, so an
    assessor's decisions are never split across copies.
    """
    name = str(report.get("submission", {}).get("name") or Path(source_dir).name or "submission")
    key = str(report.get("submission", {}).get("input_key") or "")
    if key:
        existing = session.scalar(select(Submission).where(Submission.name == name, Submission.input_key == key))
        if existing is not None:
            return existing, False
    summary = report.get("summary", {})
    counts = summary.get("counts", {})
    submission = Submission(
        name=name[:300],
        batch=batch[:300],
        source_dir=source_dir,
        input_key=key[:64],
        verdict=str(summary.get("verdict", "")),
        met=int(counts.get("met", 0)),
        partial=int(counts.get("partial", 0)),
        missing=int(counts.get("missing", 0)),
        essential_missing=len(summary.get("essential_missing", [])),
        documents=len(report.get("documents", [])),
        errors=len(report.get("errors", [])),
        screened_at=str(report.get("finished_at", ""))[:40],
        imported_by_id=user.id if user else None,
        report=report,
        evidence_map_html=evidence_map_html,
    )
    for position, ind in enumerate(report.get("indicators", [])):
        submission.results.append(
            MachineResult(
                position=position,
                indicator_id=str(ind["id"]),
                area=str(ind.get("area", "")),
                area_name=str(ind.get("area_name", "")),
                title=str(ind.get("title", "")),
                level=str(ind.get("level", "")),
                status=str(ind.get("status", "missing")),
                score=float(ind.get("score", 0.0)),
                evidence_refs=_refs(ind),
            )
        )
    session.add(submission)
    session.flush()
    audit(session, user, "submission.import", submission.id, f"{name} from {batch or source_dir}")
    return submission, True


def import_folder(session: Session, folder: Path, *, user: User | None, batch: str | None = None) -> ImportSummary:
    """Import a ``batch`` output folder (one sub-folder per submission) or one submission's output folder."""
    folder = Path(folder)
    summary = ImportSummary()
    if not folder.is_dir():
        summary.problems.append(f"{folder} is not a folder")
        return summary
    candidates = [folder] if (folder / REPORT_FILE).is_file() else sorted(p for p in folder.iterdir() if p.is_dir())
    label = batch if batch is not None else folder.name
    for sub in candidates:
        if not (sub / REPORT_FILE).is_file():
            continue
        report = read_report(sub / REPORT_FILE)
        if report is None:
            summary.problems.append(f"{sub.name}: report.json is unreadable or of another schema version")
            continue
        map_path = sub / MAP_FILE
        html = map_path.read_text(encoding="utf-8") if map_path.is_file() else None
        submission, created = import_report(
            session, report, source_dir=str(sub.resolve()), batch=label, evidence_map_html=html, user=user
        )
        if created:
            summary.imported.append(submission)
        else:
            summary.already.append(submission.name)
    if not summary.imported and not summary.already and not summary.problems:
        summary.problems.append(f"no report.json found in {folder} or its sub-folders: run `qpm-screen batch` first")
    return summary


# --- decisions ----------------------------------------------------------------------------------------------


def current_decisions(session: Session, submission_id: int) -> dict[str, Decision]:
    """The latest decision per indicator of a submission (the append-only table's current state)."""
    latest = (
        select(func.max(Decision.id))
        .where(Decision.submission_id == submission_id)
        .group_by(Decision.indicator_id)
        .scalar_subquery()
    )
    rows = session.scalars(select(Decision).where(Decision.id.in_(latest)))
    return {d.indicator_id: d for d in rows}


def decision_history(session: Session, submission_id: int, indicator_id: str) -> list[Decision]:
    """Every decision ever recorded for one indicator, newest first."""
    query = (
        select(Decision)
        .where(Decision.submission_id == submission_id, Decision.indicator_id == indicator_id)
        .order_by(Decision.id.desc())
    )
    return list(session.scalars(query))


def machine_result(session: Session, submission_id: int, indicator_id: str) -> MachineResult:
    """The machine's suggestion for one indicator; ``WorkspaceError`` when the submission has no such indicator."""
    found = session.scalar(
        select(MachineResult).where(
            MachineResult.submission_id == submission_id, MachineResult.indicator_id == indicator_id
        )
    )
    if found is None:
        raise WorkspaceError(f"indicator {indicator_id} is not part of this submission")
    return found


def signoff_state(session: Session, submission_id: int) -> SignOff | None:
    """The latest sign-off row when the review is signed off now, else None (never signed, or reopened)."""
    latest = session.scalar(
        select(SignOff).where(SignOff.submission_id == submission_id).order_by(SignOff.id.desc()).limit(1)
    )
    return latest if latest is not None and latest.action == "sign_off" else None


def _clean(text: str | None) -> str:
    return (text or "").replace("\r\n", "\n").strip()[:MAX_TEXT]


def record_decision(
    session: Session,
    submission: Submission,
    indicator_id: str,
    user: User,
    *,
    decision: str,
    reason: str = "",
    notes: str = "",
    evidence: str = "",
) -> Decision:
    """Record an assessor's decision as a new row. ``decision`` is "accept" or a status (met / partial / missing).

    Choosing the machine's own status counts as accepting it. A different status is an override and needs a
    reason. A signed-off review is locked until an admin reopens it.
    """
    if signoff_state(session, submission.id) is not None:
        raise WorkspaceError("this review is signed off: an admin must reopen it before decisions change")
    machine = machine_result(session, submission.id, indicator_id)
    if decision == "accept":
        status = machine.status
    elif decision in DECISION_STATUSES:
        status = decision
    else:
        raise WorkspaceError("choose accept, met, partial or missing")
    action = "accept" if status == machine.status else "override"
    reason = _clean(reason)
    if action == "override" and not reason:
        raise WorkspaceError(
            f"give a reason for changing {indicator_id} from {machine.status} to {status}: "
            "the reason is part of the record"
        )
    row = Decision(
        submission_id=submission.id,
        indicator_id=indicator_id,
        action=action,
        machine_status=machine.status,
        status=status,
        reason=reason,
        notes=_clean(notes),
        evidence=_clean(evidence),
        user_id=user.id,
    )
    session.add(row)
    session.flush()
    return row


def accept_remaining(session: Session, submission: Submission, user: User) -> int:
    """Accept the machine status for every indicator without a decision yet; returns how many were recorded."""
    if signoff_state(session, submission.id) is not None:
        raise WorkspaceError("this review is signed off: an admin must reopen it before decisions change")
    decided = current_decisions(session, submission.id)
    n = 0
    for result in submission.results:
        if result.indicator_id not in decided:
            session.add(
                Decision(
                    submission_id=submission.id,
                    indicator_id=result.indicator_id,
                    action="accept",
                    machine_status=result.status,
                    status=result.status,
                    notes="",
                    reason="",
                    user_id=user.id,
                )
            )
            n += 1
    session.flush()
    audit(session, user, "decision.accept_remaining", submission.id, f"{n} indicators")
    return n


def sign_off(session: Session, submission: Submission, user: User, comment: str = "") -> SignOff:
    """Sign off the desktop review: every indicator must have a decision, and it must not be signed off already."""
    if signoff_state(session, submission.id) is not None:
        raise WorkspaceError("this review is already signed off")
    decided = current_decisions(session, submission.id)
    undecided = [r.indicator_id for r in submission.results if r.indicator_id not in decided]
    if undecided:
        shown = ", ".join(undecided[:8]) + (" ..." if len(undecided) > 8 else "")
        raise WorkspaceError(
            f"{len(undecided)} indicator(s) have no decision yet ({shown}): decide or accept them first"
        )
    row = SignOff(submission_id=submission.id, action="sign_off", comment=_clean(comment), user_id=user.id)
    session.add(row)
    session.flush()
    audit(session, user, "review.sign_off", submission.id)
    return row


def reopen(session: Session, submission: Submission, user: User, reason: str) -> SignOff:
    """Reopen a signed-off review (admins only), with a reason; the sign-off stays in the record."""
    if user.role != "admin":
        raise WorkspaceError("only an admin can reopen a signed-off review")
    if signoff_state(session, submission.id) is None:
        raise WorkspaceError("this review is not signed off")
    if not _clean(reason):
        raise WorkspaceError("give a reason for reopening the review")
    row = SignOff(submission_id=submission.id, action="reopen", comment=_clean(reason), user_id=user.id)
    session.add(row)
    session.flush()
    audit(session, user, "review.reopen", submission.id)
    return row


# --- export -------------------------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "submission",
    "indicator",
    "area",
    "title",
    "level",
    "machine_status",
    "machine_score",
    "human_decision",
    "decision_type",
    "reason",
    "notes",
    "evidence_references",
    "assessor_evidence",
    "decided_by",
    "decided_at",
    "signed_off_by",
    "signed_off_at",
)


def format_time(value: datetime | None) -> str:
    """``2026-05-01 14:03 UTC``; SQLite returns naive datetimes, which are UTC here."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def export_rows(session: Session, submission: Submission) -> list[dict[str, Any]]:
    """One row per indicator: machine suggestion, current human decision with reason, evidence, who signed off."""
    decided = current_decisions(session, submission.id)
    signed = signoff_state(session, submission.id)
    rows = []
    for result in submission.results:
        d = decided.get(result.indicator_id)
        rows.append(
            {
                "submission": submission.name,
                "indicator": result.indicator_id,
                "area": result.area_name or result.area,
                "title": result.title,
                "level": result.level,
                "machine_status": result.status,
                "machine_score": round(result.score, 4),
                "human_decision": d.status if d else "",
                "decision_type": {"accept": "accepted", "override": "overridden"}.get(d.action, d.action)
                if d
                else "undecided",
                "reason": d.reason if d else "",
                "notes": d.notes if d else "",
                "evidence_references": result.evidence_refs,
                "assessor_evidence": d.evidence if d else "",
                "decided_by": d.user.label if d else "",
                "decided_at": format_time(d.created_at) if d else "",
                "signed_off_by": signed.user.label if signed else "",
                "signed_off_at": format_time(signed.created_at) if signed else "",
            }
        )
    return rows


def export_csv(rows: Sequence[dict[str, Any]]) -> bytes:
    """CSV bytes (UTF-8 with BOM so Excel shows accents), every cell guarded against formula injection."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(EXPORT_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: safe_cell(row.get(k, "")) for k in EXPORT_COLUMNS})
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def export_xlsx(rows: Sequence[dict[str, Any]], submission: Submission, history: Sequence[Decision]) -> bytes:
    """An XLSX workbook: "review" (one row per indicator) and "audit trail" (every decision ever recorded)."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "review"
    _fill(sheet, EXPORT_COLUMNS, rows, get_column_letter)
    trail = book.create_sheet("audit trail")
    trail_columns = ("indicator", "when", "who", "decision_type", "machine_status", "human_decision", "reason", "notes")
    trail_rows = [
        {
            "indicator": d.indicator_id,
            "when": format_time(d.created_at),
            "who": d.user.label,
            "decision_type": "accepted" if d.action == "accept" else "overridden",
            "machine_status": d.machine_status,
            "human_decision": d.status,
            "reason": d.reason,
            "notes": d.notes,
        }
        for d in history
    ]
    _fill(trail, trail_columns, trail_rows, get_column_letter)
    book.properties.title = f"QPM desktop review: {submission.name}"[:250]
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _fill(sheet: Any, columns: Sequence[str], rows: Sequence[dict[str, Any]], letter: Any) -> None:
    sheet.append(list(columns))
    for row in rows:
        sheet.append([safe_cell(row.get(c, "")) for c in columns])
    sheet.freeze_panes = "A2"
    for idx, column in enumerate(columns, start=1):
        longest = max([len(column), *(len(str(r.get(column, ""))) for r in rows[:200])])
        sheet.column_dimensions[letter(idx)].width = min(max(10, longest + 2), 70)


def full_history(session: Session, submission_id: int) -> list[Decision]:
    """Every decision of a submission, oldest first (the audit trail sheet)."""
    return list(session.scalars(select(Decision).where(Decision.submission_id == submission_id).order_by(Decision.id)))


def export_filename(submission: Submission, suffix: str) -> str:
    """A download name made only of safe characters: ``qpm-review-<name>.<suffix>``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", submission.name).strip("-.")[:80] or f"submission-{submission.id}"
    return f"qpm-review-{stem}.{suffix}"


# --- training data from reviews -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewLabel:
    """A signed-off human decision as a training label, shaped like :class:`pipeline.labels.Label` plus where to
    find the document (``document_sha256`` identifies the exact file; ``document_path`` is a best guess)."""

    document: str
    indicator: str
    expected: str
    evidence: str
    document_sha256: str = ""
    document_path: str = ""
    submission: str = ""


def _find_document(report: dict[str, Any], name: str) -> str:
    source = str(report.get("submission", {}).get("source", ""))
    for part in source.split(", "):
        base = Path(part)
        for candidate in (base / name, base.parent / name if base.is_file() else None):
            if candidate is not None and candidate.is_file():
                return str(candidate)
        if base.is_dir():
            for found in base.rglob(name):
                if found.is_file():
                    return str(found)
    return ""


def review_labels(session: Session) -> list[ReviewLabel]:
    """Labels from every signed-off review (its current decisions), per document.

    A submission-level decision is turned into per-document labels the way the training data is shaped:
    "missing" applies to every readable document of the submission; "met" / "partial" apply to the document(s)
    whose passages the machine cited as evidence (with that evidence text, or the assessor's own quote), or to
    the only document when there is one. Other documents get no label for that indicator (unknown, not negative).
    """
    labels: list[ReviewLabel] = []
    for submission in session.scalars(select(Submission).order_by(Submission.id)):
        if signoff_state(session, submission.id) is None:
            continue
        report = submission.report or {}
        documents = {str(d["name"]): str(d.get("sha256", "")) for d in report.get("documents", [])}
        evidence_by_ind = {str(i["id"]): i.get("evidence", []) for i in report.get("indicators", [])}
        for indicator, decision in sorted(current_decisions(session, submission.id).items()):
            targets: list[tuple[str, str]] = []
            if decision.status == "missing":
                targets = [(name, "") for name in documents]
            else:
                cited: dict[str, str] = {}
                for ev in evidence_by_ind.get(indicator, []):
                    cited.setdefault(str(ev.get("document", "")), str(ev.get("text", "")))
                if decision.evidence:
                    if len(cited) == 1 or (not cited and len(documents) == 1):
                        only = next(iter(cited or documents))
                        cited = {only: decision.evidence}
                elif not cited and len(documents) == 1:
                    cited = {next(iter(documents)): ""}
                targets = [(name, text) for name, text in cited.items() if name in documents]
            for name, text in targets:
                labels.append(
                    ReviewLabel(
                        document=name,
                        indicator=indicator,
                        expected=decision.status,
                        evidence=text,
                        document_sha256=documents.get(name, ""),
                        document_path=_find_document(report, name),
                        submission=submission.name,
                    )
                )
    return labels


def export_review_labels(db_url: str) -> list[ReviewLabel]:
    """Signed-off decisions of the workspace at ``db_url`` as training labels (``qpm-screen train --from-reviews``).

    Each row has the fields of ``pipeline.labels.Label`` (document, indicator, expected, evidence) plus the
    document's sha256 and path when it can still be found, so training can pair labels with the files.
    """
    engine = open_database(db_url)  # migrated: a workspace nobody has used yet is empty, not an error
    try:
        with session_factory(engine)() as session:
            return review_labels(session)
    finally:
        engine.dispose()


def utc_now() -> datetime:
    """Now in UTC."""
    return datetime.now(UTC)
