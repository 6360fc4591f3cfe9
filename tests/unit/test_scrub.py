"""What may be shown: one rule for URLs (public_url) and one for text (redact)."""

from __future__ import annotations

import time

import pytest

from loadtest.client.auth import PatAuth
from loadtest.client.protocol import EndpointSpec
from loadtest.client.scrub import MAX_DETAIL, header_secrets, public_argv, public_url, redact, redact_content


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pass@host:8000/v1", "http://host:8000/v1"),
        ("https://user@host/v1", "https://host/v1"),
        ("http://u:p@ss@host/v1", "http://host/v1"),  # an unencoded @ in the password
        ("https://host/v1?token=abc&x=1", "https://host/v1"),
        ("https://host/v1#frag", "https://host/v1"),
        ("https://host?api_key=k#f", "https://host"),
        ("https://me:pw@host:443/serving-endpoints?o=1#x", "https://host:443/serving-endpoints"),
        ("host:8000/v1", "host:8000/v1"),  # no scheme
        ("user:pass@host/v1?token=t", "host/v1"),  # no scheme, credentials still go
        ("//u:p@host/v1", "//host/v1"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),  # IPv6 host keeps its brackets
        ("http://u:p@[fe80::1]/v1?token=t", "http://[fe80::1]/v1"),
        ("https://ADB-1.Example.net/", "https://ADB-1.Example.net/"),  # as written
        ("http://host/models/a@b", "http://host/models/a@b"),  # an @ in the path is not user-info
        ("http://host:99999/v1", "http://host:99999/v1"),  # a bad port does not raise
        ("http://[::1", "http://[::1"),
        ("", ""),
    ],
)
def test_public_url(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_public_url_is_what_a_manifest_and_an_auth_description_show() -> None:
    spec = EndpointSpec(base_url="http://user:pw@[::1]:8000/v1?token=t", model="m")
    assert spec.public()["base_url"] == "http://[::1]:8000/v1"
    auth = PatAuth("dapi-secret-0123456789", host="https://me:pw@adb-1.net?o=7")
    assert auth.describe()["host"] == "https://adb-1.net"
    assert "pw" not in repr(auth) and "dapi-secret" not in repr(auth)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Authorization: Bearer dapi0123456789abcdef", "Authorization: Bearer ***"),
        ("dapi0123456789abcdef was refused", "dapi*** was refused"),
        ("Incorrect API key provided: sk-proj-abcDEF0123456789xyz", "Incorrect API key provided: sk-***"),
        ("echoed sk-0123456789abcdefABCDEF back", "echoed sk-*** back"),
        ("a task-based plan is fine", "a task-based plan is fine"),
        ('{"client_secret": "s3cr3t-value"}', '{"client_secret": "***"}'),
        ("token=abc.def.ghi rest", "token=*** rest"),
        ("GET /v1?api_key=k1&x=1 failed", "GET /v1?api_key=*** failed"),
        ("password: hunter2", "password: ***"),
        ("cannot reach http://user:pw@host/v1", "cannot reach http://***@host/v1"),
        ("line one\n\n  line   two", "line one line two"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_replaces_known_secret_values_first() -> None:
    assert (
        redact("invalid_client: wrong s3cr3t for cid", ["s3cr3t", None, ""])
        == "invalid_client: wrong *** for cid"
    )


def test_redact_caps_length() -> None:
    assert MAX_DETAIL == 160
    assert redact("x" * 1000) == "x" * 159 + "…"
    assert redact("x" * 160) == "x" * 160


def test_an_sdk_failure_shows_neither_the_secret_nor_url_credentials() -> None:
    from loadtest.client.auth.databricks import sdk_error

    failure = ValueError("bad secret s3cr3t-value;\n see https://u:p@adb-1.net/docs?token=zzz")
    assert sdk_error(failure, "Databricks oauth-m2m credentials failed", ["s3cr3t-value"]) == (
        "Databricks oauth-m2m credentials failed: bad secret ***; see https://***@adb-1.net/docs?token=***"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Authorization: Bearer dapi0123456789abcdef\n", "Authorization: Bearer ***\n"),
        ('{"api_key": "k1",\n "n": 2}', '{"api_key": "***",\n "n": 2}'),
        ("token=abc rest", "token=*** rest"),
        ("each token is one word;  password words stay", "each token is one word;  password words stay"),
        ("see http://u:p@host/x", "see http://***@host/x"),
    ],
)
def test_redact_content_keeps_the_text_and_its_shape(text: str, shown: str) -> None:
    assert redact_content(text) == shown
    assert redact_content("x" * 1000 + " s3cr3t", ["s3cr3t"]) == "x" * 1000 + " ***"


def test_redaction_takes_linear_time_on_long_text() -> None:
    """A long run of letters (a base64 blob in a response) once took quadratic time in the URL pattern."""
    started = time.perf_counter()
    for text in ("r" * 200_000, "ab/" * 70_000, "a1" * 100_000):
        redact_content(text)
        redact(text)
    assert time.perf_counter() - started < 2.0


def test_header_secrets_are_the_values_and_a_bearer_token_alone() -> None:
    assert header_secrets({"Authorization": "Bearer abc", "X-Api-Key": "k1"}) == ["Bearer abc", "abc", "k1"]
    assert header_secrets({}) == []


def test_a_command_line_loses_its_credentials_and_keeps_its_shape() -> None:
    argv = [
        "loadtest",
        "run",
        "--endpoint",
        "http://alice:s3cretPASS@127.0.0.1:18931/v1?api_key=zz",
        "--proxy=https://u:pw@h:1/v1",
        "--token=abc123",
        "--slo",
        "ttft_p95=1s",
    ]
    assert public_argv(argv) == (
        "loadtest",
        "run",
        "--endpoint",
        "http://127.0.0.1:18931/v1",
        "--proxy=https://h:1/v1",
        "--token=***",
        "--slo",
        "ttft_p95=1s",
    )
