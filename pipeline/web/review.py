"""The assessor workspace under ``/review``: sign-in required, CSRF token checked on every POST.

Assessors list submissions, open one (summary, indicator table, evidence map), decide each indicator (accept the
machine status, or override it with a reason), sign the desktop review off and export it. Admins also import
batch output folders, reopen signed-off reviews and create accounts (here, or with ``qpm-screen web
create-user``).
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.web.common import (
    CSRF_FIELD,
    check_csrf,
    current_user,
    log,
    login_redirect,
    read_session,
    render,
    state_of,
)
from pipeline.web.db import DECISION_STATUSES, ROLES, AuditEvent, Decision, SignOff, Submission, User
from pipeline.web.security import csrf_matches
from pipeline.web.uploads import UploadRejected, receive_files
from pipeline.web.workspace import (
    WorkspaceError,
    accept_remaining,
    audit,
    create_user,
    current_decisions,
    decision_history,
    export_csv,
    export_filename,
    export_rows,
    export_xlsx,
    format_time,
    full_history,
    import_folder,
    machine_result,
    record_decision,
    reopen,
    sign_off,
    signoff_state,
)

router = APIRouter(prefix="/review")

#: The stored evidence map is served under its own strict policy, sandboxed (no access to our origin, cookies
#: or forms), and may only be framed by our own pages.
MAP_CSP = "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'"
_INDICATOR_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def _user(request: Request, db: Session, *, admin: bool = False) -> User:
    user = current_user(request, db)
    if user is None:
        raise login_redirect(request)
    if admin and user.role != "admin":
        raise HTTPException(status_code=403, detail="Only an administrator can do this.")
    return user


def _submission(db: Session, submission_id: int) -> Submission:
    found = db.get(Submission, submission_id)
    if found is None:
        raise HTTPException(status_code=404, detail="There is no submission with this number in the workspace.")
    return found


def _see_other(url: str, message: str | None = None) -> RedirectResponse:
    # The message travels in the query string so a reload does not repeat the POST; it is one of our own fixed
    # words, never user input (see MESSAGES).
    return RedirectResponse(f"{url}?done={message}" if message else url, status_code=303)


MESSAGES = {
    "decided": "Decision recorded.",
    "accepted": "Machine statuses accepted for every undecided indicator.",
    "signed": "Desktop review signed off.",
    "reopened": "Review reopened.",
    "imported": "Import finished.",
    "user": "Account created.",
}


# --- list and import ----------------------------------------------------------------------------------------


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
def submissions_page(request: Request, done: str | None = None) -> Response:
    """Every submission with its summary, review progress and sign-off state; riskiest first."""
    state = state_of(request)
    with state.sessions() as db:
        user = _user(request, db)
        submissions = list(
            db.scalars(
                select(Submission).order_by(
                    Submission.essential_missing.desc(), Submission.missing.desc(), Submission.name
                )
            )
        )
        decided_counts = dict(
            db.execute(
                select(Decision.submission_id, func.count(func.distinct(Decision.indicator_id))).group_by(
                    Decision.submission_id
                )
            ).all()
        )
        rows = []
        for s in submissions:
            signed = signoff_state(db, s.id)
            rows.append(
                {
                    "s": s,
                    "total": s.met + s.partial + s.missing,
                    "decided": decided_counts.get(s.id, 0),
                    "signed": signed,
                    "signed_by": signed.user.label if signed else "",
                    "signed_at": format_time(signed.created_at) if signed else "",
                }
            )
        return render(request, "review_list.html", user=user, rows=rows, message=MESSAGES.get(done or ""))


@router.post("/import", include_in_schema=False)
async def import_batch(request: Request) -> Response:
    """Admins: import a ``batch`` output folder (or one submission's folder) on this machine by its path."""
    state = state_of(request)
    form = await check_csrf(request)
    folder = Path(form.get("folder", "").strip()).expanduser()
    with state.sessions() as db:
        user = _user(request, db, admin=True)
        if not form.get("folder", "").strip():
            summary_problems = ["give the path of a batch output folder"]
            imported: list[str] = []
            already: list[str] = []
        else:
            summary = await anyio.to_thread.run_sync(lambda: import_folder(db, folder, user=user))
            db.commit()
            summary_problems, imported, already = summary.problems, [s.name for s in summary.imported], summary.already
        return render(
            request,
            "import_done.html",
            user=user,
            imported=imported,
            already=already,
            problems=summary_problems,
        )


@router.post("/upload", include_in_schema=False)
async def upload_submission(request: Request) -> Response:
    """Assessors: upload one provider's files; they are screened by the same Prefect flow as ``qpm-screen
    screen`` and imported. Unlike the public self-test, these files are kept (under ``web_data_dir``): they
    are the QPM team's record, and ``train --from-reviews`` needs them."""
    state = state_of(request)
    with state.sessions() as db:
        user = _user(request, db)
        user_id = user.id
    expected = read_session(request).get("csrf")
    token = uuid.uuid4().hex
    data_dir = Path(state.settings.web_data_dir).expanduser()
    folder = data_dir / "uploads" / token
    folder.mkdir(parents=True)

    def check_token(fields: dict[str, str]) -> None:
        # Called before the first file byte is written: the form puts its token first.
        if not csrf_matches(expected, fields.get(CSRF_FIELD)):
            raise UploadRejected(403, "the form has expired: reload the page and try again")

    try:
        fields: dict[str, str] = {}
        files = await receive_files(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            folder=folder,
            limits=state.limits,
            fields=fields,
            before_first_file=check_token,
        )
    except UploadRejected as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(status_code=exc.status_code, detail=exc.message) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    name = (fields.get("name") or "").strip()[:200] or f"upload-{token[:8]}"
    out_dir = data_dir / "screened" / token
    settings = state.settings

    def run() -> Any:
        from pipeline.flows import run_screen

        return run_screen([str(f.path) for f in files], out_dir, settings, name=name)

    try:
        outcome = await anyio.to_thread.run_sync(run)
        log.info("assessor upload: %d file(s) screened", len(files))
        if outcome.error or outcome.report is None:
            raise HTTPException(status_code=422, detail=outcome.error or "the submission could not be screened")
        with state.sessions() as db:
            uploader = db.get(User, user_id)
            summary = import_folder(db, out_dir, user=uploader, batch="upload")
            db.commit()
            target = summary.imported[0].id if summary.imported else None
    except BaseException:
        # Nothing was imported: keep no orphan copies of the files or half of the outputs.
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return _see_other(f"/review/submissions/{target}" if target else "/review", "imported")


# --- one submission -----------------------------------------------------------------------------------------


@router.get("/submissions/{submission_id}", include_in_schema=False)
def submission_page(request: Request, submission_id: int, done: str | None = None) -> Response:
    """Summary, every indicator with machine status and current decision, sign-off and export."""
    state = state_of(request)
    with state.sessions() as db:
        user = _user(request, db)
        submission = _submission(db, submission_id)
        decided = current_decisions(db, submission.id)
        signed = signoff_state(db, submission.id)
        signoffs = list(db.scalars(select(SignOff).where(SignOff.submission_id == submission.id).order_by(SignOff.id)))
        report = submission.report or {}
        highlighted = _highlighted_files(submission)
        return render(
            request,
            "submission.html",
            user=user,
            s=submission,
            report=report,
            results=submission.results,
            decided=decided,
            undecided=sum(1 for r in submission.results if r.indicator_id not in decided),
            overridden=sum(1 for d in decided.values() if d.action == "override"),
            signed=signed,
            signoffs=signoffs,
            highlighted=highlighted,
            has_map=submission.evidence_map_html is not None,
            format_time=format_time,
            message=MESSAGES.get(done or ""),
            error=None,
        )


def _highlighted_files(submission: Submission) -> list[str]:
    folder = Path(submission.source_dir) / "highlighted"
    if not submission.source_dir or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


@router.get("/submissions/{submission_id}/map", include_in_schema=False)
def evidence_map(request: Request, submission_id: int) -> Response:
    """The submission's evidence map, as written by ``batch``, sandboxed."""
    state = state_of(request)
    with state.sessions() as db:
        _user(request, db)
        submission = _submission(db, submission_id)
        html = submission.evidence_map_html
    if html is None:
        raise HTTPException(status_code=404, detail="This submission has no evidence map.")
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": MAP_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


@router.get("/submissions/{submission_id}/highlighted/{name}", include_in_schema=False)
def highlighted_original(request: Request, submission_id: int, name: str) -> Response:
    """A highlighted original (PDF or DOCX) from the submission's output folder, as a download."""
    state = state_of(request)
    with state.sessions() as db:
        _user(request, db)
        submission = _submission(db, submission_id)
        allowed = _highlighted_files(submission)
    if name not in allowed:  # only names listed from the folder itself: no path can be smuggled in
        raise HTTPException(status_code=404)
    path = Path(submission.source_dir) / "highlighted" / name
    media = (
        "application/pdf"
        if name.lower().endswith(".pdf")
        else "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    return Response(
        path.read_bytes(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{safe}"'}
    )


@router.get("/submissions/{submission_id}/indicators/{indicator_id}", include_in_schema=False)
def indicator_page(request: Request, submission_id: int, indicator_id: str, done: str | None = None) -> Response:
    """One indicator: the machine's status, evidence and what to add; the decision form; the full history."""
    return _indicator_response(request, submission_id, indicator_id, message=MESSAGES.get(done or ""))


def _indicator_response(
    request: Request,
    submission_id: int,
    indicator_id: str,
    *,
    message: str | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    state = state_of(request)
    if not _INDICATOR_ID.match(indicator_id):
        raise HTTPException(status_code=404)
    with state.sessions() as db:
        user = _user(request, db)
        submission = _submission(db, submission_id)
        try:
            machine = machine_result(db, submission.id, indicator_id)
        except WorkspaceError:
            raise HTTPException(status_code=404, detail="This submission has no indicator with this id.") from None
        detail: dict[str, Any] = next(
            (i for i in (submission.report or {}).get("indicators", []) if i.get("id") == indicator_id), {}
        )
        history = decision_history(db, submission.id, indicator_id)
        ids = [r.indicator_id for r in submission.results]
        position = ids.index(indicator_id)
        return render(
            request,
            "indicator.html",
            status_code=status_code,
            user=user,
            s=submission,
            m=machine,
            detail=detail,
            history=history,
            current=history[0] if history else None,
            signed=signoff_state(db, submission.id),
            statuses=DECISION_STATUSES,
            previous_id=ids[position - 1] if position > 0 else None,
            next_id=ids[position + 1] if position + 1 < len(ids) else None,
            format_time=format_time,
            message=message,
            error=error,
            form=form or {},
        )


@router.post("/submissions/{submission_id}/indicators/{indicator_id}", include_in_schema=False)
async def decide(request: Request, submission_id: int, indicator_id: str) -> Response:
    """Record a decision: accept the machine status, or override it (a reason is required)."""
    state = state_of(request)
    form = await check_csrf(request)
    with state.sessions() as db:
        user = _user(request, db)
        submission = _submission(db, submission_id)
        try:
            record_decision(
                db,
                submission,
                indicator_id,
                user,
                decision=form.get("decision", ""),
                reason=form.get("reason", ""),
                notes=form.get("notes", ""),
                evidence=form.get("evidence", ""),
            )
        except WorkspaceError as exc:
            db.rollback()
            return _indicator_response(request, submission_id, indicator_id, error=str(exc), form=form, status_code=422)
        db.commit()
    target = f"/review/submissions/{submission_id}/indicators/{indicator_id}"
    if form.get("then") == "next":
        ids = [r.indicator_id for r in submission.results]
        position = ids.index(indicator_id) if indicator_id in ids else -1
        if 0 <= position < len(ids) - 1:
            target = f"/review/submissions/{submission_id}/indicators/{ids[position + 1]}"
    return _see_other(target, "decided")


async def _submission_action(request: Request, submission_id: int, action: str) -> Response:
    state = state_of(request)
    form = await check_csrf(request)
    with state.sessions() as db:
        user = _user(request, db)
        submission = _submission(db, submission_id)
        try:
            if action == "accept":
                accept_remaining(db, submission, user)
                message = "accepted"
            elif action == "sign":
                sign_off(db, submission, user, form.get("comment", ""))
                message = "signed"
            else:
                reopen(db, submission, user, form.get("reason", ""))
                message = "reopened"
        except WorkspaceError as exc:
            db.rollback()
            decided = current_decisions(db, submission.id)
            return render(
                request,
                "submission.html",
                status_code=422,
                user=user,
                s=submission,
                report=submission.report or {},
                results=submission.results,
                decided=decided,
                undecided=sum(1 for r in submission.results if r.indicator_id not in decided),
                overridden=sum(1 for d in decided.values() if d.action == "override"),
                signed=signoff_state(db, submission.id),
                signoffs=list(
                    db.scalars(select(SignOff).where(SignOff.submission_id == submission.id).order_by(SignOff.id))
                ),
                highlighted=_highlighted_files(submission),
                has_map=submission.evidence_map_html is not None,
                format_time=format_time,
                message=None,
                error=str(exc),
            )
        db.commit()
    return _see_other(f"/review/submissions/{submission_id}", message)


@router.post("/submissions/{submission_id}/accept-remaining", include_in_schema=False)
async def accept_all(request: Request, submission_id: int) -> Response:
    """Accept the machine status for every indicator not yet decided (each acceptance is recorded)."""
    return await _submission_action(request, submission_id, "accept")


@router.post("/submissions/{submission_id}/sign-off", include_in_schema=False)
async def sign(request: Request, submission_id: int) -> Response:
    """Sign off the desktop review (every indicator decided)."""
    return await _submission_action(request, submission_id, "sign")


@router.post("/submissions/{submission_id}/reopen", include_in_schema=False)
async def reopen_review(request: Request, submission_id: int) -> Response:
    """Admins: reopen a signed-off review, with a reason."""
    return await _submission_action(request, submission_id, "reopen")


@router.get("/submissions/{submission_id}/export.{fmt}", include_in_schema=False)
def export(request: Request, submission_id: int, fmt: str) -> Response:
    """The review as CSV or XLSX: machine suggestion, human decision, reason, evidence, sign-off."""
    state = state_of(request)
    with state.sessions() as db:
        user = _user(request, db)  # first: a visitor who is not signed in learns nothing, not even a 404
        if fmt not in ("csv", "xlsx"):
            raise HTTPException(status_code=404)
        submission = _submission(db, submission_id)
        rows = export_rows(db, submission)
        if fmt == "csv":
            body = export_csv(rows)
            media = "text/csv; charset=utf-8"
        else:
            body = export_xlsx(rows, submission, full_history(db, submission.id))
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        audit(db, user, f"export.{fmt}", submission.id)
        db.commit()
        filename = export_filename(submission, fmt)
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- accounts and audit (admins) ----------------------------------------------------------------------------


@router.get("/users", include_in_schema=False)
def users_page(request: Request, done: str | None = None) -> Response:
    """Admins: the accounts, a form to create one, and the latest audit events."""
    state = state_of(request)
    with state.sessions() as db:
        user = _user(request, db, admin=True)
        return _users_response(request, db, user, message=MESSAGES.get(done or ""))


def _users_response(
    request: Request,
    db: Session,
    user: User,
    *,
    message: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    users = list(db.scalars(select(User).order_by(User.username)))
    events = list(db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(100)))
    return render(
        request,
        "users.html",
        status_code=status_code,
        user=user,
        users=users,
        events=events,
        roles=ROLES,
        format_time=format_time,
        message=message,
        error=error,
    )


@router.post("/users", include_in_schema=False)
async def add_user(request: Request) -> Response:
    """Admins: create an account."""
    state = state_of(request)
    form = await check_csrf(request)
    with state.sessions() as db:
        admin = _user(request, db, admin=True)
        try:
            create_user(
                db,
                form.get("username", ""),
                form.get("password", ""),
                form.get("role", "assessor"),
                display_name=form.get("display_name", ""),
                by=admin,
            )
        except WorkspaceError as exc:
            db.rollback()
            return _users_response(request, db, admin, error=str(exc), status_code=422)
        db.commit()
    return _see_other("/review/users", "user")
