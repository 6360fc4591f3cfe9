"""Bad input: one line on stderr, a non-zero exit code, never a traceback."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, refused, run_cli


def test_unknown_option() -> None:
    proc = run_cli("run", "--no-such-option")
    refused(proc, 2, "No such option")


def test_unknown_command() -> None:
    proc = run_cli("frobnicate")
    refused(proc, 2, "No such command")


def test_bad_duration() -> None:
    proc = run_cli("run", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--duration", "soon")
    refused(proc, 2, "invalid duration")


def test_bad_concurrency() -> None:
    proc = run_cli("run", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-c", "4,x")
    refused(proc, 2, "--concurrency")


def test_unset_api_key_env() -> None:
    proc = run_cli(
        "run", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--api-key-env", "NOPE_NOT_SET_X"
    )
    refused(proc, 2, "NOPE_NOT_SET_X")


def test_unreachable_endpoint(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    proc = run_cli("run", "--endpoint", f"http://127.0.0.1:{port}/v1", "--model", "m", "--out", str(tmp_path))
    refused(proc, 3, "cannot reach")
    assert list(tmp_path.iterdir()) == []  # no run directory for a run that never started


class _HtmlHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def html_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_non_openai_server(html_server: str, tmp_path: Path) -> None:
    proc = run_cli("run", "--endpoint", html_server, "--model", "m", "--out", str(tmp_path))
    refused(proc, 3, "does not answer like an OpenAI-compatible server")


def test_endpoint_without_scheme() -> None:
    proc = run_cli("run", "--endpoint", "localhost:8000", "--model", "m")
    refused(proc, 2, "http(s) URL")


def test_analyze_missing_directory(tmp_path: Path) -> None:
    proc = run_cli("analyze", str(tmp_path / "nope"))
    refused(proc, 2, "no run directory")


def test_sim_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        proc = run_cli("sim", "--port", str(busy), timeout=30)
    refused(proc, 3, str(busy))


def test_sim_unknown_architecture() -> None:
    proc = run_cli("sim", "--architecture", "gpt-9")
    refused(proc, 2, "unknown architecture")


def test_simulator_settings_the_sim_refuses_are_one_line_and_exit_2(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.toml"
    scenario.write_text(
        '[simulator]\nslowdown = 0\n[load]\nduration = "1s"\nstages = [{ concurrency = 1 }]\n'
    )
    proc = run_cli("run", str(scenario), cwd=tmp_path, timeout=60)
    refused(proc, 2, "the embedded simulator's settings ([simulator] or the sim flags): Invalid value for "
            "'--slowdown': 0.0 is not in the range 0.1<=x<=100.0.")  # fmt: skip
    assert proc.stderr.count("error:") == 1 and not (tmp_path / "runs").exists()
