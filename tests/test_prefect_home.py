"""Keeping the embedded Prefect server's run history bounded, without pulling it from under a running process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.prefect_home import DATABASE, LOCK, PREVIOUS, SERVER_APP, claim_home, use_default_home


def fill(path: Path, mb: float) -> None:
    with open(path, "wb") as f:
        f.truncate(int(mb * 1024 * 1024))  # sparse: the size is what counts


def test_an_oversized_history_is_moved_aside_with_its_side_files(tmp_path: Path) -> None:
    fill(tmp_path / DATABASE, 3)
    (tmp_path / f"{DATABASE}-wal").write_bytes(b"wal")
    (tmp_path / f"{PREVIOUS}-shm").write_bytes(b"stale side file of the older copy")
    lock, moved = claim_home(tmp_path, max_mb=2)
    lock.close()
    assert moved == tmp_path / PREVIOUS
    assert not (tmp_path / DATABASE).exists()
    assert (tmp_path / PREVIOUS).stat().st_size == 3 * 1024 * 1024
    assert (tmp_path / f"{PREVIOUS}-wal").read_bytes() == b"wal"
    assert not (tmp_path / f"{PREVIOUS}-shm").exists()


def test_a_history_under_the_limit_or_with_no_limit_is_kept(tmp_path: Path) -> None:
    fill(tmp_path / DATABASE, 1)
    for max_mb in (2, 0):
        lock, moved = claim_home(tmp_path, max_mb=max_mb)
        lock.close()
        assert moved is None and (tmp_path / DATABASE).exists()
    fill(tmp_path / DATABASE, 3)
    lock, moved = claim_home(tmp_path, max_mb=0)  # 0: never
    lock.close()
    assert moved is None


def test_the_history_stays_while_another_process_holds_the_home(tmp_path: Path) -> None:
    fill(tmp_path / DATABASE, 3)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a+b'); fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True);"
            " sys.stdin.read()",
            str(tmp_path / LOCK),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock, moved = claim_home(tmp_path, max_mb=2)
        lock.close()
        assert moved is None and (tmp_path / DATABASE).exists()
    finally:
        holder.communicate("")
    lock, moved = claim_home(tmp_path, max_mb=2)  # nobody else now
    lock.close()
    assert moved == tmp_path / PREVIOUS


def test_a_claimed_home_is_not_rotated_by_another_process(tmp_path: Path) -> None:
    lock, moved = claim_home(tmp_path, max_mb=2)  # nothing to move yet; this process now holds the home
    fill(tmp_path / DATABASE, 3)
    try:
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from pipeline.prefect_home import claim_home;"
                " print(claim_home(Path(sys.argv[1]), 2)[1])",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    finally:
        lock.close()
    assert moved is None and other.stdout.strip() == "None"
    assert (tmp_path / DATABASE).exists()


def test_the_tool_claims_its_default_home_and_leaves_a_chosen_one_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env(cache_dir=tmp_path / "cache", prefect_history_max_mb=2)
    chosen = tmp_path / "mine"
    chosen.mkdir()
    fill(chosen / DATABASE, 3)
    monkeypatch.setenv("PREFECT_HOME", str(chosen))
    use_default_home(settings)
    assert os.environ["PREFECT_HOME"] == str(chosen)
    assert (chosen / DATABASE).exists() and not (chosen / LOCK).exists()

    monkeypatch.delenv("PREFECT_HOME")
    home = tmp_path / "cache" / "prefect"
    home.mkdir(parents=True)
    fill(home / DATABASE, 3)
    use_default_home(settings)
    assert os.environ["PREFECT_HOME"] == str(home)
    assert (home / PREVIOUS).exists() and not (home / DATABASE).exists() and (home / LOCK).exists()


def test_a_server_left_by_a_killed_run_is_stopped_when_the_home_is_next_claimed(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT__SERVER_EPHEMERAL": "1"}
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    # Stand-ins with the embedded server's command line: one for this home, one for another home.
    ours = subprocess.Popen([*sleeper, SERVER_APP], env=env)
    # one started by an earlier version of the tool, with Prefect's own app
    older = subprocess.Popen([*sleeper, "prefect.server.api.server:create_app"], env=env)
    other_env = {**env, "PREFECT_HOME": str(tmp_path / "elsewhere")}
    theirs = subprocess.Popen([*sleeper, SERVER_APP], env=other_env)
    try:
        lock, _ = claim_home(home, 0)
        lock.close()
        assert ours.wait(timeout=20) != 0 and older.wait(timeout=20) != 0  # terminated
        assert theirs.poll() is None  # another home's server is none of our business
    finally:
        for proc in (ours, older, theirs):
            proc.kill()
            proc.wait()
