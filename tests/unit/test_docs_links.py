"""Every file the documentation points at is in the repository.

- A relative markdown link in ``README.md`` or ``docs/*.md`` resolves, from the file it is in, to a file or folder
  of the repository (tracked, or new and not ignored); an ``#anchor`` into a markdown file names one of its headings
  (GitHub's heading ids). http(s) and mailto links are not followed. ``CHANGELOG.md`` is history: not checked.
- No file of the repository cites the developers' notes that live outside it (their folder beside the checkout,
  the reference, design and style notes): the facts taken from them, with their sources, are in ``docs/sources.md``.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from functools import cache

import pytest

from tests.helpers import ROOT

THIS = "tests/unit/test_docs_links.py"
HISTORY = "CHANGELOG.md"
OUTSIDE = re.compile(
    r"\.\./shared|\b(?:capacity|databricks|peers|style-anchors)\.md\b|\b(?:DESIGN|STYLE)\.md\b",
)

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
_INLINE_LINK = re.compile(r"\[(?:[^\]\\]|\\.)*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s<>]+)>?", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@cache
def repository_files() -> frozenset[str]:
    """The repository's files, relative to its root: tracked ones and new ones that are not ignored."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the repository's file list is unknown")
    return frozenset(name for name in out.decode().split("\0") if name and (ROOT / name).is_file())


@cache
def repository_dirs() -> frozenset[str]:
    dirs: set[str] = set()
    for name in repository_files():
        parent = posixpath.dirname(name)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    return frozenset(dirs)


def strip_code(markdown: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are code, not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", markdown))


def link_targets(markdown: str) -> list[str]:
    text = strip_code(markdown)
    return _INLINE_LINK.findall(text) + _REFERENCE_DEF.findall(text)


def heading_ids(markdown: str) -> set[str]:
    """GitHub's ids for a document's headings: lower case, punctuation dropped, spaces to hyphens, ``-1``... for
    repeats."""
    ids: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", markdown)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in ids:
            n += 1
            candidate = f"{slug}-{n}"
        ids.add(candidate)
    return ids


def broken_links(doc: str, markdown: str) -> list[str]:
    """The link targets of ``doc`` (a repository path) that name nothing in the repository."""
    broken = []
    for target in link_targets(markdown):
        if _SCHEME.match(target):
            continue  # http(s), mailto: not followed
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(doc), path)) if path else doc
        if resolved.startswith("../") or resolved == "..":
            broken.append(f"{target} (outside the repository)")
        elif resolved not in repository_files() and resolved not in repository_dirs():
            broken.append(f"{target} (no such file)")
        elif (
            anchor
            and resolved.endswith(".md")
            and resolved in repository_files()
            and anchor not in heading_ids((ROOT / resolved).read_text(encoding="utf-8"))
        ):
            broken.append(f"{target} (no heading #{anchor} in {resolved})")
    return broken


def checked_docs() -> list[str]:
    return sorted(
        name for name in repository_files() if name == "README.md" or re.fullmatch(r"docs/[^/]+\.md", name)
    )


def outside_mentions(name: str) -> list[str]:
    try:
        text = (ROOT / name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []  # not text
    return [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {match.group()}"
        for match in OUTSIDE.finditer(text)
    ]


def test_the_documents_are_found() -> None:
    docs = checked_docs()
    assert "README.md" in docs
    assert {"docs/sources.md", "docs/capacity-model.md", "docs/plan.md"} <= set(docs)


@pytest.mark.parametrize("doc", ["README.md", "docs/*.md"])
def test_every_relative_link_resolves_inside_the_repository(doc: str) -> None:
    names = [d for d in checked_docs() if (d == "README.md") == (doc == "README.md")]
    broken = [
        f"{name}: {link}"
        for name in names
        for link in broken_links(name, (ROOT / name).read_text(encoding="utf-8"))
    ]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_no_file_cites_notes_outside_the_repository() -> None:
    skipped = {THIS, HISTORY}
    found = [hit for name in sorted(repository_files() - skipped) for hit in outside_mentions(name)]
    assert not found, "cites notes outside the repository (use docs/sources.md):\n" + "\n".join(found)


def test_the_checks_catch_what_they_are_for() -> None:
    markdown = (
        "See [a](missing.md), [b](../outside.md), [c](sources.md#no-such-heading), [d](sources.md#status-words),\n"
        "[e](https://example.com/x.md), [f](#nothing-here), `[g](in-code.md)` and\n\n"
        "```\n[h](in-a-fence.md)\n```\n\n[ref]: ../../elsewhere.md\n"
    )
    assert broken_links("docs/plan.md", markdown) == [
        "missing.md (no such file)",
        "../outside.md (no such file)",
        "sources.md#no-such-heading (no heading #no-such-heading in docs/sources.md)",
        "#nothing-here (no heading #nothing-here in docs/plan.md)",
        "../../elsewhere.md (outside the repository)",
    ]
    # spelled in parts so that this file names no outside note itself
    notes, design, capacity = "/".join(("..", "shared")), "DESIGN" + ".md", "capacity" + ".md"
    text = f"see {notes}/{design} and {'reference'}/{capacity}, not docs/capacity-model.md"
    assert OUTSIDE.findall(text) == [notes, design, capacity]


def test_heading_ids_follow_github() -> None:
    markdown = (
        "# Capacity planning: `loadtest plan`\n## Pay-per-token quotas and 429s\n## Limits\n## Limits\n"
    )
    assert heading_ids(markdown) == {
        "capacity-planning-loadtest-plan",
        "pay-per-token-quotas-and-429s",
        "limits",
        "limits-1",
    }
