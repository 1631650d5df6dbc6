"""A real server on loopback: 10 concurrent self-tests, and an oversize upload cut off while it streams.

Traffic goes only to 127.0.0.1 on a free port; every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import SAMPLES, LiveServer

pytestmark = pytest.mark.slow

CONCURRENT = 10
TIME_BOUND_S = 240.0  # generous for a loaded 2-core CI machine; measured ~20-40 s here
DOCS = [
    "kestrel-advocacy-safeguarding-policy.docx",
    "hartwell-speak-up-complaints.md",
    "hollybank-community-link-confidentiality.pdf",
    "compass-advocacy-speaking-up-policy.md",
    "pennine-advocacy-equality-diversity-inclusion-policy.docx",
]


def _post(url: str, path: Path) -> tuple[int, float, str]:
    start = time.perf_counter()
    with httpx.Client(timeout=TIME_BOUND_S) as client:
        response = client.post(f"{url}/self-test", files=[("files", (path.name, path.read_bytes()))])
    return response.status_code, time.perf_counter() - start, response.text


def test_ten_concurrent_self_tests_without_errors_or_leftovers(live: LiveServer) -> None:
    paths = [SAMPLES / DOCS[i % len(DOCS)] for i in range(CONCURRENT)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        results = list(pool.map(lambda p: _post(live.url, p), paths))
    elapsed = time.perf_counter() - started
    assert [code for code, _, _ in results] == [200] * CONCURRENT
    assert all("Your self-test result" in text for _, _, text in results)
    assert elapsed < TIME_BOUND_S, f"{CONCURRENT} concurrent self-tests took {elapsed:.0f} s"
    temp = Path(live.settings.web_temp_dir)
    assert list(temp.iterdir()) == [], "temporary upload folders were left behind"
    print(f"\n{CONCURRENT} concurrent self-tests: {elapsed:.1f} s, slowest {max(s for _, s, _ in results):.1f} s")


def _send_until_answered(port: int, headers: bytes, chunk: bytes, max_chunks: int) -> tuple[bytes, int]:
    """Send a chunked body piece by piece; stop as soon as the server answers. Returns (answer, bytes sent)."""
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(headers)
        sock.setblocking(False)
        for _ in range(max_chunks):
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            try:
                sock.setblocking(True)
                sock.sendall(framed)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            time.sleep(0.002)
        sock.setblocking(True)
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


def test_oversize_chunked_upload_is_cut_off_while_streaming(live: LiveServer) -> None:
    limit = int(live.settings.upload_max_file_mb * 1024 * 1024)
    chunk = b"a" * (64 * 1024)
    total_chunks = (limit * 5) // len(chunk)  # a 5x oversize body, if the server kept reading
    boundary = "qpmboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    headers = (
        (
            "POST /self-test HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{live.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + f"{len(head):x}\r\n".encode()
        + head
        + b"\r\n"
    )
    answer, sent = _send_until_answered(live.port, headers, chunk, total_chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < limit * 2, f"the server read {sent} bytes before refusing a {limit}-byte-limited upload"
    assert list(Path(live.settings.web_temp_dir).iterdir()) == []


def test_declared_oversize_is_refused_before_the_body(live: LiveServer) -> None:
    headers = (
        "POST /self-test HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{live.port}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {500 * 1024 * 1024}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        sock.sendall(headers)  # no body byte is ever sent
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
