"""Process-level configuration: the malloc arena cap, and limits a setting must respect (parsing of each setting is
tested with the modules that use it)."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT, Settings, limit_malloc_arenas
from pipeline.errors import ConfigError

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None, reason="glibc malloc only"
)

# Eight threads allocate while all alive, then glibc reports its heaps (one per arena) as XML.
PROBE = textwrap.dedent(
    """
    import ctypes, ctypes.util, re, sys, tempfile, threading
    from pipeline.config import limit_malloc_arenas
    if sys.argv[1] == "cap":
        limit_malloc_arenas(2)
    barrier = threading.Barrier(8)

    def work():
        keep = [bytearray(200_000) for _ in range(20)]
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    path = tempfile.mktemp()
    fp = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(len(re.findall(r"<heap nr=", open(path).read())))
    """
)


def heaps(mode: str, tmp_path: Path) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, str(script), mode], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


@glibc_only
def test_the_arena_cap_holds_threads_to_two_heaps(tmp_path: Path) -> None:
    assert heaps("default", tmp_path) > 2  # the probe does grow arenas without the cap
    assert heaps("cap", tmp_path) <= 2


def test_an_arena_limit_set_in_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("QPM_BATCH_SIZE", "0"),
        ("QPM_MAX_PAGES", "-5"),
        ("QPM_MAX_FILE_MB", "nan"),
        ("QPM_MAX_UNCOMPRESSED_MB", "inf"),
        ("QPM_WEB_PORT", "70000"),
    ],
)
def test_a_limit_that_cannot_work_is_refused_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: raw})


def test_zero_is_a_value_only_where_it_means_something() -> None:
    assert Settings.from_env({"QPM_PREFECT_HISTORY_MAX_MB": "0"}).prefect_history_max_mb == 0  # never move it
    with pytest.raises(ConfigError, match="0 or more"):
        Settings.from_env({"QPM_PREFECT_HISTORY_MAX_MB": "-1"})
