"""The engine's own HTTP/1.1 transport against a server written with the standard library, over plain TCP and TLS:
streams arrive whole, the connection is kept when the server writes the closing chunk after ``[DONE]`` as a packet of
its own, and a certificate the client does not trust is a ``connection`` failure that says so."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from analysis import load_run
from tests.helpers import only_run_dir, run_cli

pytestmark = pytest.mark.slow

TOKENS = 6


def _event(obj: dict[str, object]) -> bytes:
    data = b"data: " + json.dumps(obj).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections = 0
    requests = 0

    def setup(self) -> None:
        super().setup()
        # as real servers do: without it Nagle holds each small chunk until the client's delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        type(self).connections += 1

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"r{type(self).requests}")
        self.end_headers()
        for i in range(TOKENS):
            delta = {"content": f" t{i}"}
            self.wfile.write(
                _event({"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            )
            self.wfile.flush()
            time.sleep(0.003)
        usage = {"prompt_tokens": 4, "completion_tokens": TOKENS, "total_tokens": 4 + TOKENS}
        self.wfile.write(
            _event({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        )
        self.wfile.write(_event({"id": "c", "choices": [], "usage": usage}))
        self.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n")
        self.wfile.flush()
        time.sleep(0.02)  # the closing chunk comes as a packet of its own, after [DONE]
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@contextlib.contextmanager
def _serving(
    tls: bool, tmp: Path, handshake: bool = True
) -> Iterator[tuple[str, Path | None, type[_Handler]]]:
    """The stdlib server on 127.0.0.1 in a thread: its URL, its certificate (TLS) and its handler's counters."""
    handler = type("Handler", (_Handler,), {"connections": 0, "requests": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    cert_file = None
    if tls:
        cert_file, key_file = _certificate(tmp)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}/v1", cert_file, handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _run(url: str, out: Path, users: int, env: dict[str, str] | None = None) -> int:
    proc = run_cli(
        "run", "--endpoint", url, "--model", "m", "--skip-preflight", "-c", str(users), "-d", "2s",
        "--max-tokens", str(TOKENS), "--out", str(out), env=env,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_streams_arrive_whole_over_kept_connections(tls: bool, tmp_path: Path) -> None:
    with _serving(tls, tmp_path) as (url, cert, handler):
        code = _run(url, tmp_path / "runs", 2, {"SSL_CERT_FILE": str(cert)} if cert else None)
    assert code == 0
    df = load_run(only_run_dir(tmp_path / "runs")).records
    assert len(df) >= 10 and df["ok"].all()
    assert (df["output_tokens"] == TOKENS).all() and (df["client_output_tokens"] == TOKENS).all()
    assert (df["token_source"] == "usage").all()
    assert df["chunk_gaps"].map(len).eq(TOKENS - 1).all()
    # the server sleeps 3 ms between chunks: read one by one, the typical gap is that (a busy client may find two
    # chunks in one read now and then, and then stamps them together)
    gaps = np.concatenate(df["chunk_gaps"].to_list())
    assert 0.0029 <= float(np.median(gaps)) <= 0.006
    assert df["server_request_id"].str.startswith("r").all()
    # the closing chunk comes 20 ms after [DONE], yet the record ends at [DONE] and the connection is kept
    assert (df["ended_at"] - df["last_token_at"]).max() < 0.015
    # kept: a user's next request goes out while the last one's closing chunk is still on its way, so a user holds
    # two or three connections in turn, not one per request
    assert handler.requests >= 100 and handler.connections <= 8


def test_an_untrusted_certificate_is_a_connection_failure_that_says_so(tmp_path: Path) -> None:
    with _serving(True, tmp_path) as (url, _cert, _handler):
        code = _run(url, tmp_path / "runs", 1)
    assert code != 0
    df = load_run(only_run_dir(tmp_path / "runs")).records
    assert len(df) >= 1 and (df["error_class"] == "connection").all()
    assert df["error_detail"].str.contains("CERTIFICATE_VERIFY_FAILED").all()
