"""`python -m modelyard.runtime.relay`: a Unix socket in front of a child's TCP port, signals passed
on, the child's exit code returned, streamed bytes passed through as they come."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.harness import wait_for

pytestmark = pytest.mark.slow

# A child HTTP server: GET /hello answers text; GET /stream sends two chunks 1.5 s apart.
CHILD = r'''
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first", b"second"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(1.5)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = b"hello from the child"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        body = self.rfile.read(n)[::-1]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relay(tmp: Path, port: int, *child: str) -> tuple[subprocess.Popen, str]:
    sock = str(tmp / "relay.sock")
    proc = subprocess.Popen([sys.executable, "-m", "modelyard.runtime.relay", "--uds", sock, "--port", str(port),
                             "--", *child], start_new_session=True)
    return proc, sock


@pytest.fixture
def served(tmp_path):
    port = free_port()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc, sock = relay(tmp_path, port, sys.executable, str(script), str(port))
    http = httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://child", timeout=20)

    def up():
        try:
            return http.get("/hello").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=20, what="the child behind the relay")
        yield proc, sock, http
    finally:
        http.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_requests_pass_through_the_socket(served):
    _proc, _sock, http = served
    assert http.get("/hello").text == "hello from the child"
    assert http.post("/echo", content=b"abc" * 10000).content == (b"abc" * 10000)[::-1]


def test_streamed_bytes_are_not_buffered(served):
    _proc, _sock, http = served
    t0 = time.monotonic()
    with http.stream("GET", "/stream") as r:
        chunks = []
        for chunk in r.iter_raw():
            chunks.append((chunk, time.monotonic() - t0))
    assert b"".join(c for c, _ in chunks) == b"firstsecond"
    first_at = next(t for c, t in chunks if c.startswith(b"first"))
    assert first_at < 1.2, f"the first chunk waited for the second ({first_at:.2f}s)"


def test_sigterm_ends_the_child_and_returns_its_status(served):
    proc, sock, _http = served
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the relay has no child"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    for c in children:
        assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE
    assert not Path(sock).exists()


def test_child_exit_code_is_propagated(tmp_path):
    proc, sock = relay(tmp_path, free_port(), sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(7)")
    assert proc.wait(timeout=30) == 7
    assert not Path(sock).exists()


def test_nothing_listening_answers_502(tmp_path):
    proc, sock = relay(tmp_path, free_port(), sys.executable, "-c", "import time; time.sleep(30)")
    try:
        wait_for(lambda: Path(sock).exists(), timeout=20, what="the relay socket")
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://child", timeout=10) as http:
            assert http.get("/").status_code == 502
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM


def test_bad_arguments_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "modelyard.runtime.relay", "--uds", str(tmp_path / "s"), "--port", "80"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "after --" in r.stderr


def test_half_close_still_gets_the_answer(served):
    _proc, sock, _http = served
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"GET /hello HTTP/1.0\r\nHost: child\r\n\r\n")
        s.shutdown(socket.SHUT_WR)  # the client is done sending; the answer must still come back
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.") and b" 200 " in data[:20] and data.endswith(b"hello from the child"), data
