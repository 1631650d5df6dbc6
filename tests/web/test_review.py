"""The assessor workspace: sign-in, CSRF, import, decisions with audit trail, sign-off, export, accounts, labels."""

from __future__ import annotations

import csv
import io
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pipeline.web.db import AuditEvent, Decision, Submission, database_url, make_engine, migrate, session_factory
from pipeline.web.workspace import (
    WorkspaceError,
    authenticate,
    create_user,
    export_review_labels,
    import_folder,
    record_decision,
)
from tests.web.conftest import PASSWORD, SAMPLES, WebApp, csrf_of, login, make_user, web_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imported(web: WebApp, batch_out: Path) -> dict[str, int]:
    """The batch imported once; name -> submission id."""
    with web.state.sessions() as db:
        summary = import_folder(db, batch_out, user=None)
        db.commit()
        assert not summary.problems
        return {s.name: s.id for s in db.scalars(select(Submission))}


def _assessor(web: WebApp, name: str = "alice") -> TestClient:
    make_user(web, name)
    client = web.client()
    assert login(client, name).status_code == 303
    return client


def _admin(web: WebApp) -> TestClient:
    make_user(web, "root-admin", role="admin")
    client = web.client()
    assert login(client, "root-admin").status_code == 303
    return client


# --- access control -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/review",
        "/review/",
        "/review/submissions/1",
        "/review/submissions/1/indicators/CONF-01",
        "/review/users",
        "/review/submissions/1/export.csv",
        "/review/submissions/1/export.pdf",  # an unknown format too: sign-in comes before any other answer
        "/review/submissions/1/map",
    ],
)
def test_unauthenticated_access_redirects_to_login(web: WebApp, path: str) -> None:
    response = web.client().get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/review")


@pytest.mark.parametrize(
    "path",
    ["/review/submissions/1/sign-off", "/review/submissions/1/accept-remaining", "/review/import", "/review/users"],
)
def test_unauthenticated_posts_are_refused(web: WebApp, path: str) -> None:
    client = web.client()
    page = client.get("/login")  # a valid anonymous CSRF token: still no access
    response = client.post(path, data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_login_page_and_wrong_password(web: WebApp) -> None:
    make_user(web, "bob")
    client = web.client()
    page = client.get("/login")
    assert page.status_code == 200 and "csrf_token" in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    response = client.post(
        "/login", data={"username": "bob", "password": "wrong password!", "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 401
    assert "Wrong user name or password" in response.text
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_login_requires_csrf_token(web: WebApp) -> None:
    make_user(web, "carol")
    client = web.client()
    client.get("/login")
    response = client.post("/login", data={"username": "carol", "password": PASSWORD})
    assert response.status_code == 403
    response = client.post("/login", data={"username": "carol", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 403


def test_login_then_workspace_then_logout(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web)
    page = client.get("/review")
    assert page.status_code == 200
    assert "kestrel-advocacy" in page.text and "hartwell" in page.text
    response = client.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303
    client.cookies.clear()
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_open_redirect_after_login_is_refused(web: WebApp) -> None:
    make_user(web, "dave")
    client = web.client()
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": "dave", "password": PASSWORD, "csrf_token": token, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/review"


def test_tampered_session_cookie_is_not_honoured(web: WebApp) -> None:
    client = _assessor(web, "erin")
    value = client.cookies.get("qpm_session")
    assert value
    body, stamp, mac = value.split(".")
    forged = mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB")
    client.cookies.clear()
    client.cookies.set("qpm_session", f"{body}.{stamp}.{forged}")
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_repeated_wrong_passwords_are_throttled(web: WebApp) -> None:
    make_user(web, "frank")
    client = web.client()
    codes = []
    for _ in range(6):
        token = csrf_of(client.get("/login").text)
        codes.append(
            client.post(
                "/login", data={"username": "frank", "password": "nope nope nope", "csrf_token": token}
            ).status_code
        )
    assert codes[:5] == [401] * 5 and codes[5] == 429


# --- submissions, decisions, audit trail ----------------------------------------------------------------------


def test_submission_page_lists_indicators_and_embeds_map(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web)
    sid = imported["hartwell"]
    page = client.get(f"/review/submissions/{sid}")
    assert page.status_code == 200
    assert page.text.count('<tr id="row-') == 60
    assert f'src="/review/submissions/{sid}/map"' in page.text
    evidence_map = client.get(f"/review/submissions/{sid}/map")
    assert evidence_map.status_code == 200
    assert "sandbox" in evidence_map.headers["content-security-policy"]
    assert evidence_map.headers["x-frame-options"] == "SAMEORIGIN"


def _decide(client: TestClient, sid: int, indicator: str, **form: str) -> object:
    page = client.get(f"/review/submissions/{sid}/indicators/{indicator}")
    assert page.status_code == 200
    return client.post(
        f"/review/submissions/{sid}/indicators/{indicator}",
        data={"csrf_token": csrf_of(page.text), "then": "stay", **form},
        follow_redirects=False,
    )


def _machine_status(web: WebApp, sid: int, indicator: str) -> str:
    with web.state.sessions() as db:
        sub = db.get(Submission, sid)
        assert sub is not None
        return next(r.status for r in sub.results if r.indicator_id == indicator)


def _other(status: str) -> str:
    return "met" if status != "met" else "missing"


def test_decision_post_requires_csrf(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web)
    sid = imported["hartwell"]
    response = client.post(f"/review/submissions/{sid}/indicators/CONF-01", data={"decision": "accept"})
    assert response.status_code == 403
    assert "expired" in response.text


def test_override_requires_reason_and_every_change_is_kept(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web)
    sid = imported["hartwell"]
    indicator = "CONF-01"
    machine = _machine_status(web, sid, indicator)
    override = _other(machine)

    refused = _decide(client, sid, indicator, decision=override, reason="  ")
    assert refused.status_code == 422  # type: ignore[attr-defined]
    assert "give a reason" in refused.text  # type: ignore[attr-defined]

    accepted = _decide(client, sid, indicator, decision="accept", notes="first look")
    assert accepted.status_code == 303  # type: ignore[attr-defined]
    changed = _decide(client, sid, indicator, decision=override, reason="Section 4 covers it <b>fully</b>")
    assert changed.status_code == 303  # type: ignore[attr-defined]

    with web.state.sessions() as db:
        rows = list(
            db.scalars(
                select(Decision)
                .where(Decision.submission_id == sid, Decision.indicator_id == indicator)
                .order_by(Decision.id)
            )
        )
    assert [(r.action, r.status) for r in rows][-2:] == [("accept", machine), ("override", override)]
    assert rows[-1].machine_status == machine and rows[-1].reason.startswith("Section 4")
    page = client.get(f"/review/submissions/{sid}/indicators/{indicator}")
    assert "&lt;b&gt;fully&lt;/b&gt;" in page.text  # reasons are escaped
    assert page.text.count("<tr><td>") >= 2  # the history shows both rows


def test_choosing_the_machine_status_counts_as_accepting(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web)
    sid = imported["hartwell"]
    machine = _machine_status(web, sid, "CONF-02")
    assert _decide(client, sid, "CONF-02", decision=machine).status_code == 303  # type: ignore[attr-defined]
    with web.state.sessions() as db:
        last = db.scalars(
            select(Decision)
            .where(Decision.submission_id == sid, Decision.indicator_id == "CONF-02")
            .order_by(Decision.id.desc())
        ).first()
    assert last is not None and last.action == "accept" and last.reason == ""


def test_unknown_indicator_submission_or_export_format_is_404(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web)
    assert client.get(f"/review/submissions/{imported['hartwell']}/indicators/NOPE-99").status_code == 404
    assert client.get("/review/submissions/99999").status_code == 404
    assert client.get(f"/review/submissions/{imported['hartwell']}/export.pdf").status_code == 404


def test_sign_off_needs_every_decision_then_locks(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web, "grace")
    sid = imported["kestrel-advocacy"]
    page = client.get(f"/review/submissions/{sid}")
    early = client.post(f"/review/submissions/{sid}/sign-off", data={"csrf_token": csrf_of(page.text)})
    assert early.status_code == 422 and "no decision yet" in early.text

    machine = _machine_status(web, sid, "SAFE-01")
    assert (
        _decide(client, sid, "SAFE-01", decision=_other(machine), reason="Procedure found in appendix B").status_code
        == 303
    )  # type: ignore[attr-defined]
    page = client.get(f"/review/submissions/{sid}")
    accepted = client.post(
        f"/review/submissions/{sid}/accept-remaining", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert accepted.status_code == 303
    page = client.get(f"/review/submissions/{sid}")
    signed = client.post(
        f"/review/submissions/{sid}/sign-off",
        data={"csrf_token": csrf_of(page.text), "comment": "Desk review done"},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    page = client.get(f"/review/submissions/{sid}")
    assert "Signed off" in page.text and "Grace" in page.text

    locked = _decide(client, sid, "SAFE-02", decision="accept")
    assert locked.status_code == 422 and "signed off" in locked.text  # type: ignore[attr-defined]

    # Export: machine suggestion, human decision, reason, evidence references, who signed off.
    response = client.get(f"/review/submissions/{sid}/export.csv")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 60
    safe = next(r for r in rows if r["indicator"] == "SAFE-01")
    assert safe["machine_status"] == machine and safe["human_decision"] == _other(machine)
    assert safe["decision_type"] == "overridden" and safe["reason"] == "Procedure found in appendix B"
    assert safe["decided_by"] == "Grace" and all(r["signed_off_by"] == "Grace" for r in rows)
    assert any(r["evidence_references"] for r in rows)

    response = client.get(f"/review/submissions/{sid}/export.xlsx")
    assert response.status_code == 200
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["review", "audit trail"]
    header = [c.value for c in book["review"][1]]
    assert header[:8] == [
        "submission",
        "indicator",
        "area",
        "title",
        "level",
        "machine_status",
        "machine_score",
        "human_decision",
    ]
    values = {row[1]: row for row in book["review"].iter_rows(min_row=2, values_only=True)}
    assert values["SAFE-01"][header.index("reason")] == "Procedure found in appendix B"
    assert book["audit trail"].max_row >= 61  # header + 60 acceptances/overrides at least

    # Only an admin reopens, with a reason; the sign-off stays in the record.
    page = client.get(f"/review/submissions/{sid}")
    assert (
        client.post(
            f"/review/submissions/{sid}/reopen", data={"csrf_token": csrf_of(page.text), "reason": "x"}
        ).status_code
        == 422
    )
    admin = _admin(web)
    page = admin.get(f"/review/submissions/{sid}")
    assert (
        admin.post(
            f"/review/submissions/{sid}/reopen",
            data={"csrf_token": csrf_of(page.text), "reason": "Provider sent an update"},
            follow_redirects=False,
        ).status_code
        == 303
    )
    page = admin.get(f"/review/submissions/{sid}")
    assert "signed off by Grace" in page.text and "reopened by Root-Admin" in page.text

    # Labels for training come from signed-off reviews only: reopened now, so none from this one.
    assert all(label.submission != "kestrel-advocacy" for label in export_review_labels(database_url(web.settings)))


def test_export_cells_are_formula_safe(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web)
    sid = imported["hartwell"]
    machine = _machine_status(web, sid, "COMP-01")
    _decide(client, sid, "COMP-01", decision=_other(machine), reason='=HYPERLINK("http://x")')
    rows = list(
        csv.DictReader(io.StringIO(client.get(f"/review/submissions/{sid}/export.csv").content.decode("utf-8-sig")))
    )
    assert next(r for r in rows if r["indicator"] == "COMP-01")["reason"].startswith("'=")


# --- accounts -----------------------------------------------------------------------------------------------


def test_admin_creates_users_in_the_ui_and_assessors_cannot(web: WebApp) -> None:
    admin = _admin(web)
    page = admin.get("/review/users")
    assert page.status_code == 200
    response = admin.post(
        "/review/users",
        data={"csrf_token": csrf_of(page.text), "username": "henry", "password": "short", "role": "assessor"},
    )
    assert response.status_code == 422 and "at least 10" in response.text
    response = admin.post(
        "/review/users",
        data={"csrf_token": csrf_of(page.text), "username": "henry", "password": PASSWORD, "role": "assessor"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _assessor(web, "henry").get("/review/users").status_code == 403


def test_passwords_are_salted_hashes(web: WebApp) -> None:
    from pipeline.web.db import User

    make_user(web, "ivy")
    make_user(web, "jack")
    with web.state.sessions() as db:
        users = {u.username: u for u in db.scalars(select(User).where(User.username.in_(["ivy", "jack"])))}
        assert all(u.password_hash.startswith("scrypt$") and PASSWORD not in u.password_hash for u in users.values())
        assert users["ivy"].password_hash != users["jack"].password_hash
        assert authenticate(db, "IVY", PASSWORD) is not None
        assert authenticate(db, "ivy", PASSWORD + "x") is None
        with pytest.raises(WorkspaceError):
            create_user(db, "ivy", PASSWORD, "assessor")
        with pytest.raises(WorkspaceError):
            create_user(db, "kate", PASSWORD, "superuser")


def test_audit_events_record_logins_and_exports(web: WebApp, imported: dict[str, int]) -> None:
    client = _assessor(web, "lena")
    client.get(f"/review/submissions/{imported['hartwell']}/export.csv")
    with web.state.sessions() as db:
        actions = [e.action for e in db.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert "login" in actions and "export.csv" in actions and "submission.import" in actions


def test_import_is_idempotent_and_reports_problems(
    web: WebApp, batch_out: Path, imported: dict[str, int], tmp_path: Path
) -> None:
    with web.state.sessions() as db:
        again = import_folder(db, batch_out, user=None)
        assert not again.imported and sorted(again.already) == ["hartwell", "kestrel-advocacy"]
        empty = import_folder(db, tmp_path, user=None)
        assert empty.problems and "no report.json" in empty.problems[0]


def test_admin_import_form(web: WebApp, batch_out: Path, imported: dict[str, int]) -> None:
    admin = _admin(web)
    page = admin.get("/review")
    response = admin.post("/review/import", data={"csrf_token": csrf_of(page.text), "folder": str(batch_out)})
    assert response.status_code == 200 and "Already imported" in response.text
    assessor = _assessor(web)
    page = assessor.get("/review")
    assert (
        assessor.post("/review/import", data={"csrf_token": csrf_of(page.text), "folder": str(batch_out)}).status_code
        == 403
    )


# --- training labels, CLI, migrations -----------------------------------------------------------------------


def test_signed_off_decisions_become_training_labels(tmp_path: Path, web: WebApp, batch_out: Path) -> None:
    settings = web_settings(tmp_path)
    url = database_url(settings)
    engine = make_engine(url)
    migrate(engine)
    with session_factory(engine)() as db:
        user = create_user(db, "mia", PASSWORD, "assessor")
        summary = import_folder(db, batch_out / "hartwell", user=user)
        sub = summary.imported[0]
        machine = {r.indicator_id: r.status for r in sub.results}
        record_decision(
            db, sub, "COMP-01", user, decision="missing" if machine["COMP-01"] != "missing" else "met", reason="checked"
        )
        from pipeline.web.workspace import accept_remaining, sign_off

        accept_remaining(db, sub, user)
        sign_off(db, sub, user)
        db.commit()
    engine.dispose()
    labels = export_review_labels(url)
    assert len({label.indicator for label in labels}) > 30
    assert {label.document for label in labels} == {"hartwell-speak-up-complaints.md"}
    comp = [label for label in labels if label.indicator == "COMP-01"]
    assert comp and comp[0].expected != machine["COMP-01"]
    assert all(label.expected in ("met", "partial", "missing") for label in labels)
    assert comp[0].document_sha256 and comp[0].document_path.endswith("hartwell-speak-up-complaints.md")


def test_cli_create_user_and_import(tmp_path: Path, batch_out: Path) -> None:
    env_args = ["--data-dir", str(tmp_path / "data")]
    create = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "web",
            "create-user",
            "nina",
            "--role",
            "admin",
            "--password-stdin",
            *env_args,
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert create.returncode == 0, create.stderr
    assert "created admin nina" in create.stdout
    weak = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "web", "create-user", "olga", "--password-stdin", *env_args],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert weak.returncode == 2 and "at least 10" in weak.stderr
    reset = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "web", "set-password", "nina", "--password-stdin", *env_args],
        input=PASSWORD + "-new\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reset.returncode == 0 and "password changed for nina" in reset.stdout, reset.stderr
    nobody = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "web", "set-password", "zed", "--password-stdin", *env_args],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nobody.returncode == 2 and "no account named 'zed'" in nobody.stderr
    imported = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "web", "import", str(batch_out), *env_args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    assert "2 imported" in imported.stdout


def test_migrations_create_every_table_on_a_fresh_database(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    migrate(engine)
    migrate(engine)  # idempotent: a restart runs it again
    tables = set(inspect(engine).get_table_names())
    assert {
        "users",
        "submissions",
        "machine_results",
        "decisions",
        "signoffs",
        "audit_events",
        "alembic_version",
    } <= tables
    engine.dispose()


# --- assessor upload: screened by the CLI's Prefect flow, then imported ----------------------------------------


def _multipart_upload(client: TestClient, token: str | None, name: str, files: list[Path]) -> Any:
    parts: list[tuple[str, tuple[str | None, bytes | str]]] = []
    if token is not None:
        parts.append(("csrf_token", (None, token)))
    parts.append(("name", (None, name)))
    parts.extend(("files", (p.name, p.read_bytes())) for p in files)
    return client.post("/review/upload", files=parts, follow_redirects=False)


def test_assessor_upload_without_csrf_is_refused_and_nothing_kept(web: WebApp) -> None:
    client = _assessor(web)
    uploads = Path(web.settings.web_data_dir) / "uploads"
    before = set(uploads.iterdir()) if uploads.exists() else set()
    response = _multipart_upload(client, None, "nope", [SAMPLES / "hartwell-speak-up-complaints.md"])
    assert response.status_code == 403
    assert (set(uploads.iterdir()) if uploads.exists() else set()) == before


def test_assessor_upload_runs_the_flow_and_imports(web: WebApp) -> None:
    client = _assessor(web)
    token = csrf_of(client.get("/review").text)
    response = _multipart_upload(
        client, token, "Compass Advocacy", [SAMPLES / "compass-advocacy-speaking-up-policy.md"]
    )
    assert response.status_code == 303, response.text[:300]
    page = client.get(response.headers["location"])
    assert page.status_code == 200 and "Compass Advocacy" in page.text
    assert page.text.count('<tr id="row-') == 60
    with web.state.sessions() as db:
        sub = db.scalar(select(Submission).where(Submission.name == "Compass Advocacy"))
        assert sub is not None and sub.batch == "upload" and sub.evidence_map_html


def test_cli_workspace_options_count_before_the_sub_command_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    monkeypatch.setenv("QPM_WEB_DATA_DIR", str(tmp_path / "default"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    before = ["web", "--data-dir", str(tmp_path / "chosen"), "create-user", "nina", "--password-stdin"]
    assert main(before) == 0
    assert (tmp_path / "chosen" / "workspace.sqlite").exists() and not (tmp_path / "default").exists()
    assert stat.S_IMODE((tmp_path / "chosen" / "workspace.sqlite").stat().st_mode) == 0o600  # password hashes
    assert main(["web", "--database-url", "nonsense://x", "export-labels"]) == 2
    assert "database URL 'nonsense://x' cannot be used" in capsys.readouterr().err


def test_cli_export_labels_refuses_an_out_it_cannot_write_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    data = ["--data-dir", str(tmp_path / "data")]
    for out, phrase in ((tmp_path, "is a folder"), (tmp_path / "no" / "labels.csv", "does not exist")):
        assert main(["web", "export-labels", "--out", str(out), *data]) == 2
        assert phrase in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["web", "export-labels", "--data-dir", str(tmp_path / "afile"), "--out", str(tmp_path / "l.csv")]) == 2
    assert "workspace folder" in capsys.readouterr().err and not (tmp_path / "l.csv").exists()
    assert main(["web", "export-labels", "--out", str(tmp_path / "l.csv"), *data]) == 0
    assert (tmp_path / "l.csv").read_text().startswith("document,indicator,expected,evidence")
