"""The ``screen`` / ``batch`` / ``serve`` / ``bench`` commands: help, usage errors, exit codes, kill and resume.

The end-to-end tests run ``qpm-screen`` in a subprocess (so it can be killed) through a small driver that installs
the fast fake matcher of ``tests/flow_support.py`` and then calls the real ``pipeline.cli.main``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pipeline import cli_flows
from pipeline.cli import INTERRUPTED_MESSAGE, build_parser, main
from tests import flow_support

REPO = Path(__file__).resolve().parent.parent
DRIVER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from tests import flow_support
    flow_support.install()
    delay = float(os.environ.get("QPM_TEST_INGEST_DELAY", "0"))
    if delay:
        from pipeline import flows
        real = flows.ingest
        def slow(path, settings, **kwargs):
            time.sleep(delay)
            return real(path, settings, **kwargs)
        flows.ingest = slow
    if os.environ.get("QPM_TEST_SIGNAL_AT"):
        flow_support.signal_during_stage(
            os.environ["QPM_TEST_SIGNAL_AT"],
            os.environ["QPM_TEST_SIGNAL"],
            os.environ["QPM_TEST_SIGNAL_TO"],
            os.environ.get("QPM_TEST_SERVER_FILE"),
        )
    from pipeline.cli import main
    sys.exit(main())  # as the console script does
    """
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "drive.py"
    path.write_text(DRIVER.format(repo=str(REPO)), encoding="utf-8")
    return path


def env_for(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "QPM_CACHE_DIR": str(cache),
            # Separate from the in-process tests' home: two embedded servers must not share one database.
            "PREFECT_HOME": str(Path(tempfile.gettempdir()) / "qpm-test-prefect-home-cli"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            "PREFECT_LOGGING_LEVEL": "ERROR",
        }
    )
    env.update(extra)
    return env


def run_cli(driver: Path, args: list[str], cache: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(driver), *args],
        env=env_for(cache, **extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


# --- in-process: help and usage errors (no Prefect needed) -------------------------------------------------


@pytest.mark.parametrize("command", ["screen", "batch", "serve", "bench"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "--json" in out and "--verbose" in out
    if command in ("screen", "batch"):
        assert "--workers" in out and "--dask-address" in out and "--out" in out


def test_missing_input_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["screen", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_output_inside_an_input_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sub = flow_support.make_submission(tmp_path / "acme")
    assert main(["screen", str(sub), "--out", str(sub / "reports")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert main(["screen", str(sub / "safeguarding.md"), "--out", str(sub)]) == 2
    assert not (sub / "reports").exists() and not (tmp_path / "out").exists()


def test_batch_needs_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    assert main(["batch", str(tmp_path / "file.txt"), "--out", str(tmp_path / "out")]) == 2


def test_nothing_to_screen_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    (tmp_path / "empty" / ".git" / "config").write_text("x")
    assert main(["screen", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "nothing to screen" in capsys.readouterr().err
    (tmp_path / "batch").mkdir()
    assert main(["batch", str(tmp_path / "batch"), "--out", str(tmp_path / "out")]) == 2
    assert "holds no submissions" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hidden_entries_are_named_when_nothing_else_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in" / ".provider").mkdir(parents=True)
    (tmp_path / "in" / ".provider" / "policy.txt").write_text("We keep information confidential.")
    (tmp_path / "in" / ".DS_Store").write_text("x")  # system clutter: never named
    assert main(["screen", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nothing to screen" in err and "hidden, so not screened: .provider/" in err and ".DS_Store" not in err
    assert main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds no submissions" in err and "hidden, so not screened: .provider;" in err
    assert not (tmp_path / "out").exists()


def test_an_output_folder_left_empty_is_removed_with_the_parents_the_run_made(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "new" / "acme"
    created = cli_flows.first_missing_folder(out)
    assert created == tmp_path / "kept" / "new"
    out.mkdir(parents=True)
    cli_flows.remove_if_left_empty(out, created)
    assert not (tmp_path / "kept" / "new").exists() and (tmp_path / "kept").is_dir()
    # A folder that existed before the run, or one with something in it, stays.
    assert cli_flows.first_missing_folder(tmp_path / "kept") is None
    cli_flows.remove_if_left_empty(tmp_path / "kept", None)
    assert (tmp_path / "kept").is_dir()
    out.mkdir(parents=True)
    (out / "report.json").write_text("{}")
    cli_flows.remove_if_left_empty(out, created)
    assert (out / "report.json").exists()


def test_an_output_folder_that_cannot_be_made_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = flow_support.make_submission(tmp_path / "acme")
    (tmp_path / "taken.txt").write_text("x")
    assert main(["screen", str(sub), "--out", str(tmp_path / "taken.txt")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "acme"), "--out", str(tmp_path / "taken.txt" / "reports")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--workers", "0"], ["--workers", "-1"], ["--concurrency", "0"]])
def test_counts_below_one_are_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    # --workers -1 used to start a Dask cluster without workers and wait for ever
    with pytest.raises(SystemExit) as exited:
        main(["batch", str(tmp_path), "--out", str(tmp_path.parent / "o"), *flags])
    assert exited.value.code == 2 and "must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "phrase"),
    [
        (["--dask-address", "nonsense"], "must look like tcp://HOST:PORT"),
        (["--dask-address", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
        (["--dask-address", "tcp://127.0.0.1:1", "--workers", "2"], "not both"),
    ],
)
def test_a_dask_scheduler_that_cannot_be_used_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], phrase: str
) -> None:
    sub = flow_support.make_submission(tmp_path / "acme")
    assert main(["screen", str(sub), "--out", str(tmp_path / "out"), *flags]) == 2
    assert phrase in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_cache_folder_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sub = flow_support.make_submission(tmp_path / "acme")
    (tmp_path / "cache").write_text("x")
    out = tmp_path / "out"
    assert main(["screen", str(sub), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "the cache folder" in capsys.readouterr().err and not out.exists()


def test_serve_without_a_server_explains_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["serve", "--out", str(tmp_path)]) == 2
    assert "prefect server start" in capsys.readouterr().err


def test_a_submission_not_screened_points_to_its_notice_and_the_earlier_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "acme"
    outcome: Any = types.SimpleNamespace(
        name="acme",
        out_dir=str(out),
        reused=False,
        report=None,
        error="the zip file is damaged or incomplete; please send it again",
        error_code="corrupt",
        notice=str(out / "NOT-SCREENED.txt"),
        earlier_outputs=str(out / "earlier-runs" / "2026-01-01T00-00-05Z"),
    )
    cli_flows._print_outcome(outcome)
    assert capsys.readouterr().out.splitlines() == [
        "NOT SCREENED acme: the zip file is damaged or incomplete; please send it again",
        f"  earlier outputs, not current, moved to: {out / 'earlier-runs' / '2026-01-01T00-00-05Z'}",
        f"  see: {out / 'NOT-SCREENED.txt'}",
    ]
    data = cli_flows.outcome_json(outcome)
    assert data["screened"] is False and data["not_screened_notice"] == str(out / "NOT-SCREENED.txt")
    assert data["earlier_outputs"] == outcome.earlier_outputs


# --- subprocess: exit codes, outputs, kill and resume -------------------------------------------------------


@pytest.mark.slow
def test_batch_with_broken_files_exits_3_and_lists_them(driver: Path, tmp_path: Path) -> None:
    batch = flow_support.make_batch(tmp_path)
    out = tmp_path / "out"
    proc = run_cli(driver, ["batch", str(batch), "--out", str(out), "--json"], tmp_path / "cache")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    subs = {s["name"]: s for s in data["submissions"]}
    assert all(
        subs[n]["screened"] and not subs[n]["errors"] for n in ("acme-advocacy", "brook-voice", "cedar-advocacy")
    )
    assert {e["name"] for e in subs["delta-support"]["errors"]} >= {"empty.pdf", "garbage.pdf"}
    assert not subs["broken"]["screened"] and "damaged" in subs["broken"]["error"]["message"]
    with open(out / "batch-summary.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["provider"] == "broken"  # not screened at all: the riskiest
    assert {r["provider"] for r in rows} == set(subs)

    # Human output of a single good submission: exit 0 and where the report is.
    proc = run_cli(driver, ["screen", str(batch / "acme-advocacy"), "--out", str(tmp_path / "one")], tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "report:" in proc.stdout and str(tmp_path / "one" / "report.json") in proc.stdout


@pytest.mark.slow
def test_refused_zips_members_and_hidden_providers_are_named_in_the_output(driver: Path, tmp_path: Path) -> None:
    inputs, cache = tmp_path / "in", tmp_path / "cache"
    inputs.mkdir()
    with zipfile.ZipFile(inputs / "evil.zip", "w") as zf:
        zf.writestr("policy.txt", flow_support.CONFIDENTIALITY)
        zf.writestr("../escaped.txt", "payload")
    # A zip refused as a whole writes nothing, and leaves no empty output folder behind (nor the parents made).
    proc = run_cli(driver, ["screen", str(inputs / "evil.zip"), "--out", str(tmp_path / "reports" / "evil")], cache)
    assert proc.returncode == 3, proc.stderr
    assert "NOT SCREENED evil: the archive member '../escaped.txt' points outside the archive" in proc.stdout
    assert not (tmp_path / "reports").exists()

    # Two different members of one name: neither screened, and said so with the failed files (exit 3).
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(inputs / "dups.zip", "w") as zf,
    ):
        zf.writestr("complaints.txt", flow_support.COMPLAINTS)
        zf.writestr("safeguarding.md", flow_support.SAFEGUARDING)
        zf.writestr("safeguarding.md", flow_support.SAFEGUARDING + "\nA later version.\n")
    proc = run_cli(driver, ["screen", str(inputs / "dups.zip"), "--out", str(tmp_path / "dups")], cache)
    assert proc.returncode == 3, proc.stderr
    assert "FAILED dups.zip/safeguarding.md: the zip holds 2 different files named 'safeguarding.md'" in proc.stdout

    # A hidden provider folder in a batch: not screened, but named in the output and the summary (exit 3).
    batch = tmp_path / "batch"
    flow_support.make_submission(batch / "acme")
    flow_support.make_submission(batch / ".brook", variant="\nBrook.\n")
    proc = run_cli(driver, ["batch", str(batch), "--out", str(tmp_path / "batch-out")], cache)
    assert proc.returncode == 3, proc.stderr
    assert "NOT SCREENED .brook: .brook is hidden (its name starts with '.') and was not screened" in proc.stdout
    with open(tmp_path / "batch-out" / "batch-summary.csv", encoding="utf-8-sig", newline="") as handle:
        rows = {row["provider"]: row for row in csv.DictReader(handle)}
    assert rows[".brook"]["status"] == "not screened" and rows["acme"]["status"] == "screened"


def comparable(out: Path) -> dict[str, Any]:
    """Every output of a batch, minus what legitimately differs between runs (timestamps, the output path)."""
    found: dict[str, Any] = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.name == "report.json":
            report = json.loads(path.read_text(encoding="utf-8"))
            found[rel] = {k: v for k, v in report.items() if k not in ("started_at", "finished_at")}
            # The input key holds a hash of the code: in a workspace being edited it can differ between the two
            # runs compared here. That the resumed run reused what the killed run finished is asserted directly.
            found[rel]["submission"].pop("input_key")
        elif path.name.endswith(".csv"):
            with open(path, encoding="utf-8-sig", newline="") as handle:
                found[rel] = [{k: v for k, v in row.items() if k != "report"} for row in csv.DictReader(handle)]
        elif path.is_file():
            found[rel] = "present"
    return found


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux: /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in (task / "children").read_text().split())
    return found


def embedded_server_running(pid: int) -> bool:
    """Whether ``pid`` is (still) an embedded Prefect server; a reused pid or a reaped process is not."""
    try:
        return b"prefect.server.api.server:create_app" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_for(report: Path, proc: subprocess.Popen[Any], timeout: float = 300) -> None:
    """Wait until a running batch has written ``report`` (so stopping it now is mid-batch)."""
    deadline = time.monotonic() + timeout
    while not report.exists():
        assert proc.poll() is None, "the batch ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_batch_resumes_to_the_same_outputs(driver: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    for n in range(5):
        flow_support.make_submission(batch / f"provider-{n}", variant=f"\nprovider {n}\n")
    (batch / "provider-2" / "broken.pdf").write_bytes(b"%PDF-1.7\n\x00\x01 garbage")
    args = ["batch", str(batch), "--concurrency", "1"]

    reference = run_cli(driver, [*args, "--out", str(tmp_path / "ref")], tmp_path / "cache-ref")
    assert reference.returncode == 3, reference.stderr

    out = tmp_path / "resumed"
    proc = subprocess.Popen(
        [sys.executable, str(driver), *args, "--out", str(out)],
        env=env_for(tmp_path / "cache-kill", QPM_TEST_INGEST_DELAY="0.4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, killed as a whole
    )
    children: list[int] = []
    try:
        wait_for(out / "provider-0" / "report.json", proc)
        children = child_pids(proc.pid)  # the embedded server runs in a session of its own: killed by its pid
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not (out / "batch-summary.csv").exists()  # it really was interrupted mid-batch
    for report in out.rglob("report.json"):
        json.loads(report.read_text(encoding="utf-8"))  # every report present is complete

    resumed = run_cli(driver, [*args, "--out", str(out), "--json"], tmp_path / "cache-kill")
    assert resumed.returncode == 3, resumed.stderr
    assert json.loads(resumed.stdout)["submissions"][0]["reused"] is True
    for leftover in out.rglob(".*.tmp"):
        leftover.unlink()  # temporary files of the killed run are inert (dot-names, never read)
    got, want = comparable(out), comparable(tmp_path / "ref")
    assert sorted(got) == sorted(want)
    for name in want:
        if isinstance(want[name], dict):
            differing = [k for k in want[name] if got[name].get(k) != want[name][k]]
            assert not differing, f"{name} differs in {differing}"
        assert got[name] == want[name], name


@pytest.mark.slow
def test_sigterm_stops_a_batch_like_ctrl_c_and_the_rerun_finishes_it(driver: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    for n in range(4):
        flow_support.make_submission(batch / f"provider-{n}", variant=f"\nprovider {n}\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [sys.executable, str(driver), "batch", str(batch), "--out", str(out), "--concurrency", "1"]
    proc = subprocess.Popen(
        args, env=env_for(cache, QPM_TEST_INGEST_DELAY="0.4"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(out / "provider-0" / "report.json", proc)
        proc.send_signal(signal.SIGTERM)  # what `kill`, `timeout` and service managers send
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "interrupted; finished outputs are complete" in stderr and "Traceback" not in stderr
    assert not (out / "batch-summary.csv").exists()
    rerun = run_cli(driver, ["batch", str(batch), "--out", str(out), "--concurrency", "1"], cache)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "batch-summary.csv").exists()


# Where and how a run is stopped: the stage it is in (tests/flow_support.py STAGES), the signal, and who gets it.
STOPS = [
    ("scoring", "SIGTERM", "self"),  # kill PID
    ("writing", "SIGTERM", "group"),  # timeout, kill -- -PGID: every process of the command's group
    ("reading", "SIGINT", "group"),  # Ctrl+C in a terminal
    ("scoring", "SIGTERM", "service"),  # a service manager: every process of the service, the embedded server too
]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize(("stage", "signame", "to"), STOPS)
def test_a_signal_at_any_stage_ends_the_run_with_the_interrupted_message_alone(
    driver: Path, tmp_path: Path, stage: str, signame: str, to: str
) -> None:
    # Sent from inside the stage (see flow_support.signal_during_stage), so it lands there every time. Prefect's
    # flow engine, its log handler and its embedded server used to print crash reports and tracebacks here.
    sub = flow_support.make_submission(tmp_path / "in" / "acme")
    out, cache, facts = tmp_path / "out", tmp_path / "cache", tmp_path / "server.json"
    stop = {"QPM_TEST_SIGNAL_AT": stage, "QPM_TEST_SIGNAL": signame, "QPM_TEST_SIGNAL_TO": to}
    proc = subprocess.run(
        [sys.executable, str(driver), "screen", str(sub), "--out", str(out)],
        env=env_for(cache, **stop, QPM_TEST_SERVER_FILE=str(facts)),
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    assert proc.returncode == (143 if signame == "SIGTERM" else 130), proc.stderr
    assert proc.stderr.strip() == INTERRUPTED_MESSAGE
    assert not (out / "report.json").exists()  # stopped before its outputs were complete...
    assert not list(out.rglob(".*.tmp"))  # ...and nothing half-written
    server = json.loads(facts.read_text(encoding="utf-8"))
    assert server["server_sid"] != server["own_sid"]  # the embedded server ran apart from the command's group
    assert not embedded_server_running(server["server_pid"])  # and did not outlive it
    rerun = run_cli(driver, ["screen", str(sub), "--out", str(out)], cache)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "report.json").exists()


@pytest.mark.slow
def test_a_stopped_batch_does_not_wait_for_the_submissions_still_to_come(driver: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    for n in range(4):
        flow_support.make_submission(batch / f"provider-{n}", variant=f"\nprovider {n}\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["batch", str(batch), "--out", str(out), "--concurrency", "1"]
    stop = {"QPM_TEST_SIGNAL_AT": "scoring", "QPM_TEST_SIGNAL": "SIGTERM", "QPM_TEST_SIGNAL_TO": "self"}
    proc = run_cli(driver, args, cache, **stop)
    # The first submission stopped before writing and the others never started: the stop waited for none of them.
    assert sorted(p.parent.name for p in out.rglob("report.json")) == []
    assert not (out / "batch-summary.csv").exists()
    assert not out.exists()  # nothing was written: the folder the run made is gone again
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip() == INTERRUPTED_MESSAGE
    rerun = run_cli(driver, args, cache)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("*/report.json"))) == 4 and (out / "batch-summary.csv").exists()


@pytest.mark.slow
def test_screen_on_local_process_workers_is_complete_and_quiet(tmp_path: Path) -> None:
    # The real CLI and matcher: worker processes build their own matcher, so the test double cannot be used.
    sub = flow_support.make_submission(tmp_path / "in" / "acme", variant="\nProcess workers.\n")
    out = tmp_path / "out"
    cli = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]
    proc = subprocess.run(
        [*cli, "screen", str(sub), "--out", str(out), "--workers", "1", "--json"],
        env=env_for(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    # Quiet without --verbose: no Dask start/stop chatter, no model-loading progress bar.
    assert "distributed." not in proc.stderr + proc.stdout
    assert "Loading weights" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["screened"] and not data["errors"]
    assert sorted(data["documents"]) == ["complaints.txt", "confidentiality.md", "safeguarding.md"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert len(report["indicators"]) == 60
    assert sum(data["counts"].values()) == 60
