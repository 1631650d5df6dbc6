"""Errors a browser meets are pages in the app's layout (status kept, plain words, a link back, nothing internal);
``/healthz`` stays JSON. And the ``qpm-screen web`` commands' usage errors exit 2, as the other commands' do."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pipeline.cli import main
from pipeline.web.app import create_app
from pipeline.web.db import Submission
from pipeline.web.workspace import import_folder
from tests.web.conftest import WebApp, free_port, login, make_user, web_settings


@pytest.fixture(scope="module")
def submission_id(web: WebApp, batch_out: Path) -> int:
    """One imported submission's id (imported here, or already by another module)."""
    with web.state.sessions() as db:
        import_folder(db, batch_out, user=None)
        db.commit()
        found = db.scalars(select(Submission).order_by(Submission.id)).first()
        assert found is not None
        return found.id


def _signed_in(web: WebApp) -> TestClient:
    make_user(web, "errol")
    client = web.client()
    assert login(client, "errol").status_code == 303
    return client


def _main_text(html: str) -> str:
    """The page's <main> as plain text (tags dropped, spaces collapsed)."""
    found = re.search(r"<main.*?</main>", html, re.S)
    assert found, "not a page of the app's layout"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(0)).split())


def _assert_error_page(response: object, status: int, *phrases: str, back: str) -> str:
    """The response is the app's HTML error page with ``status``, these phrases, and a link back to ``back``."""
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    html: str = response.text  # type: ignore[attr-defined]
    assert '<link rel="stylesheet" href="/static/app.css">' in html and "QPM Pre-screen" in html  # base layout
    assert f'<a href="{back}" id="error-back">' in html
    text = _main_text(html)
    for phrase in phrases:
        assert phrase in text, text
    assert '"detail"' not in html and "Traceback" not in html
    return text


@pytest.mark.parametrize(
    ("path", "back"),
    [("/no-such-page", "/"), ("/static/../etc/passwd", "/"), ("/review/no-such-page", "/review")],
)
def test_an_unknown_address_is_a_404_page_with_a_link_back(web: WebApp, path: str, back: str) -> None:
    response = web.client().get(path)
    _assert_error_page(response, 404, "Not found", "There is no page at this address", back=back)
    assert "set-cookie" not in response.headers  # an error page starts no session


def test_an_unknown_submission_or_indicator_is_a_404_page(web: WebApp, submission_id: int) -> None:
    client = _signed_in(web)
    _assert_error_page(client.get("/review/submissions/99999"), 404, "There is no submission", back="/review")
    response = client.get(f"/review/submissions/{submission_id}/indicators/NOPE-99")
    _assert_error_page(response, 404, "no indicator with this id", back="/review")


def test_an_id_that_is_not_a_number_is_a_422_page_that_does_not_echo_it(web: WebApp, submission_id: int) -> None:
    client = _signed_in(web)
    for response in (
        client.get("/review/submissions/abc<b>xyz"),
        client.post("/review/submissions/abc<b>xyz/indicators/CONF-01", data={"decision": "met"}),
    ):
        text = _assert_error_page(
            response, 422, "Not accepted", "This address is not valid", "submission id", back="/review"
        )
        assert "xyz" not in response.text and "abc" not in text


def test_a_form_post_that_cannot_be_read_is_a_400_page_without_the_parser_s_words(web: WebApp) -> None:
    response = web.client().post(
        "/login",
        content=b"--x\r\n",
        headers={"content-type": "multipart/form-data"},  # no boundary
    )
    text = _assert_error_page(response, 400, "Bad request", "could not be read", back="/")
    assert "boundary" not in text.lower()


def test_a_form_post_with_missing_fields_keeps_its_page(web: WebApp, submission_id: int) -> None:
    client = _signed_in(web)
    page = client.get(f"/review/submissions/{submission_id}/indicators/CONF-01")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    response = client.post(
        f"/review/submissions/{submission_id}/indicators/CONF-01", data={"csrf_token": token.group(1)}
    )
    assert response.status_code == 422 and response.headers["content-type"].startswith("text/html")
    assert 'id="error"' in response.text and '"detail"' not in response.text
    missing_token = client.post(f"/review/submissions/{submission_id}/indicators/CONF-01", data={})
    _assert_error_page(missing_token, 403, "This form has expired", back="/review")


def test_a_wrong_method_is_a_405_page_with_allow(web: WebApp) -> None:
    response = web.client().post("/")
    _assert_error_page(response, 405, "does not take that kind of request", back="/")
    assert response.headers["allow"] == "GET"


def test_healthz_errors_stay_json(web: WebApp) -> None:
    response = web.client().post("/healthz")
    assert response.status_code == 405 and response.json() == {"detail": "Method Not Allowed"}


def test_an_unexpected_error_is_a_500_page_and_healthz_hides_the_load_error(tmp_path: Path) -> None:
    secret = "/srv/secret-folder/models/matcher.joblib"

    def failing_model(_settings: object) -> object:
        raise FileNotFoundError(secret)

    app = create_app(web_settings(tmp_path), screener_factory=failing_model)  # type: ignore[arg-type]

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(f"internal state at {secret}")

    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(600):
            health = client.get("/healthz")
            if health.json()["status"] != "starting":
                break
        assert health.status_code == 503 and health.json()["status"] == "error"
        assert secret not in health.text and "FileNotFoundError" not in health.text
        response = client.get("/boom")
    text = _assert_error_page(response, 500, "Something went wrong on our side", back="/")
    assert secret not in response.text and "RuntimeError" not in text
    # sent from outside the security-headers middleware, so set by the handler itself
    assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"


# --- qpm-screen web: usage errors exit 2 ------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: (tmp / "file.txt", (tmp / "file.txt").write_text("x"))[0], "is not a folder"),
        (lambda tmp: (tmp / "empty", (tmp / "empty").mkdir())[0], "holds no report.json"),
    ],
    ids=["missing", "file", "empty"],
)
def test_web_import_of_a_folder_it_cannot_use_is_a_usage_error(tmp_path, capsys, make, message) -> None:
    folder = make(tmp_path)
    data = tmp_path / "data"
    code, printed, err = _run(capsys, "web", "import", "--data-dir", str(data), str(folder))
    assert code == 2 and f"qpm-screen web import: {folder} {message}" in err and "Traceback" not in err
    assert printed == "" and not data.exists()  # refused before the database was opened


def test_web_import_of_an_unreadable_report_is_exit_3_the_others_are_imported(tmp_path, capsys) -> None:
    (tmp_path / "out" / "broken").mkdir(parents=True)
    (tmp_path / "out" / "broken" / "report.json").write_text("{}")
    data = tmp_path / "data"
    code, printed, _ = _run(capsys, "web", "import", "--data-dir", str(data), "--json", str(tmp_path / "out"))
    assert code == 3
    assert json.loads(printed)[0]["problems"] == ["broken: report.json is unreadable or of another schema version"]


def test_web_commands_given_a_workspace_folder_they_cannot_make_are_usage_errors(tmp_path, capsys) -> None:
    if not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc, where no folder can be created")
    code, _, err = _run(capsys, "web", "export-labels", "--data-dir", "/proc/qpm-no-such/data")
    assert code == 2 and "the workspace folder /proc/qpm-no-such" in err and "Traceback" not in err


def test_web_serve_refuses_a_port_in_use_before_starting(tmp_path, capsys, monkeypatch) -> None:
    started: list[object] = []
    monkeypatch.setattr("pipeline.web.app.run_server", lambda *a, **k: started.append(a))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = _run(capsys, "web", "--data-dir", str(tmp_path / "data"), "--port", str(port))
    assert code == 2 and f"port {port} is in use" in err and not started


def test_web_serve_refuses_a_workspace_folder_that_is_a_file(tmp_path, capsys, monkeypatch) -> None:
    started: list[object] = []
    monkeypatch.setattr("pipeline.web.app.run_server", lambda *a, **k: started.append(a))
    (tmp_path / "data").write_text("not a folder")
    code, _, err = _run(capsys, "web", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()))
    assert code == 2 and "the workspace folder" in err and "it is a file" in err and not started
    code, _, _ = _run(capsys, "web", "--data-dir", str(tmp_path / "ok"), "--port", str(free_port()))
    assert code == 0 and len(started) == 1  # with usable settings the server is started


@pytest.mark.parametrize("what", ["folder", "not-a-database"])
def test_web_commands_given_a_database_they_cannot_open_are_usage_errors(tmp_path, capsys, what) -> None:
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "report.json").write_text("{}")
    target = tmp_path if what == "folder" else tmp_path / "out" / "a" / "report.json"
    url = f"sqlite:///{target}"
    for argv in (["import", str(tmp_path / "out")], ["export-labels"]):
        code, _, err = _run(capsys, "web", *argv, "--database-url", url)
        assert code == 2 and f"the database {url} cannot be used" in err and "Traceback" not in err
