"""What may be shown: a URL and a piece of text with credentials removed — the one rule for each.

:func:`public_url` is for every URL that reaches a manifest, a log line, a ``describe()`` or an error message: it
keeps scheme, host (as written, IPv6 brackets and port included) and path, and drops any ``user:password@`` and the
query string and fragment (which may carry ``?token=`` / ``?api_key=``). It is plain string work, so it never raises
on a malformed URL and a URL without a scheme loses its credentials too.

:func:`public_argv` is for a command line: its URLs as :func:`public_url` shows them, the rest redacted.

:func:`redact` is for every piece of text from outside (server error bodies, stream errors, exception messages)
before it is shown or recorded: the given secret values, bearer tokens, ``dapi…`` and ``sk-…`` keys,
``client_secret`` / ``api_key`` / ``token`` / ``password`` values and credentials inside URLs become ``***``
(:func:`header_secrets` gives the values a request's headers carry);
whitespace runs collapse to one space and the text is capped at 160 characters.

:func:`redact_content` is for longer text kept whole — a sample's prompt, response or error body
(:mod:`loadtest.rundir.samples`): the same secrets and patterns become ``***`` except that a ``token`` /
``password`` / ``api_key`` / ``client_secret`` value is removed only after ``=`` or ``:`` (prose such as "each
token is" keeps its words); whitespace is kept and nothing is cut (the caller caps the result, after redacting, so
a cap never keeps half a secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["MAX_DETAIL", "header_secrets", "public_argv", "public_url", "redact", "redact_content"]

MAX_DETAIL = 160

_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
_QUERY_OR_FRAGMENT = re.compile(r"[?#]")
_CREDENTIALS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}://)[^\s/?#]*@"), r"\1***@"),  # a bounded scheme: linear time
    (re.compile(r"(?i)(bearer\s+)\S+"), r"\1***"),
    (re.compile(r"\bdapi[0-9a-zA-Z-]{8,}"), "dapi***"),
    (re.compile(r"\bsk-(?:[a-z]+-)?[0-9a-zA-Z_-]{16,}"), "sk-***"),  # OpenAI-style keys (sk-…, sk-proj-…)
)
_KEYS = r"(?i)(client_secret|password|api[_-]?key|token)"
_PATTERNS = (*_CREDENTIALS, (re.compile(_KEYS + r"([\"'=:\s]+)[^\s\"',}]+"), r"\1\2***"))
_CONTENT_PATTERNS = (*_CREDENTIALS, (re.compile(_KEYS + r"([\"']?\s*[=:][\"'\s]*)[^\s\"',}]+"), r"\1\2***"))


def public_url(url: str) -> str:
    """``url`` safe to show: no user-info, no query string, no fragment; scheme, host, port and path as written."""
    scheme, sep, rest = url.partition("//")
    if not sep or (
        scheme and not _SCHEME.fullmatch(scheme)
    ):  # no authority: the whole of it is host and path
        scheme, sep, rest = "", "", url
    rest = _QUERY_OR_FRAGMENT.split(rest, maxsplit=1)[0]
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def public_argv(args: Iterable[str]) -> tuple[str, ...]:
    """A command line safe to show (a manifest's ``command``, the report): each URL through :func:`public_url`
    (``--endpoint https://user:pw@host/v1?token=…``, also inside ``--opt=URL``), every argument through
    :func:`redact_content` (``--token=…``, ``Bearer …``)."""
    out = []
    for arg in args:
        flag, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if "://" in value:
            value = public_url(value)
        out.append(redact_content(f"{flag}{eq}{value}"))
    return tuple(out)


def _scrub(
    text: str, secrets: Iterable[str | None], patterns: tuple[tuple[re.Pattern[str], str], ...]
) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern, replacement in patterns:
        text = pattern.sub(replacement, text)
    return text


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` safe to show: ``secrets`` (known values, e.g. a client secret) and anything that looks like a
    credential replaced by ``***``, whitespace collapsed, capped at :data:`MAX_DETAIL` characters."""
    text = " ".join(_scrub(text, secrets, _PATTERNS).split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def redact_content(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Longer ``text`` safe to show, whole: ``secrets`` and credentials replaced by ``***`` (see the module
    docstring), whitespace and length as they were."""
    return _scrub(text, secrets, _CONTENT_PATTERNS)


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """The credential values in request headers, to pass as ``secrets``: each header's value and, for
    ``Bearer x``, ``x`` alone (a server may echo the token without its scheme)."""
    out = []
    for value in headers.values():
        out.append(value)
        scheme, _, credential = value.partition(" ")
        if credential.strip() and scheme.isalpha():
            out.append(credential.strip())
    return out
