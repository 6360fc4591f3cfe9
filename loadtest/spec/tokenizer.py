"""``--tokenizer NAME_OR_PATH``: a local tokenizer, and the prompt words it counts one token each.

A name resolves, in this order, to a ``tokenizer.json`` that is already on this machine — nothing is ever
downloaded:

1. a path: the ``tokenizer.json`` file itself, or a folder holding one;
2. an installed Python distribution that ships a ``tokenizer.json`` (``importlib.metadata``), by its name;
3. a model in the local Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``) by its repository id, e.g. ``HuggingFaceTB/SmolLM2-135M-Instruct``.

Anything else is one line naming what was looked for (:class:`loadtest.errors.ConfigError`, exit 2).

The file is read with the ``tokenizers`` library (the optional ``tokenizer`` extra). :func:`one_token_words` keeps
the words of :data:`loadtest.spec.workload.WORDS` that the tokenizer counts as exactly one token, both first in a
prompt and after a space, and checks on seeded sample prompts that a prompt of ``n`` such words is ``n`` tokens.
The prompts of the run are then drawn from those words, so their length in this tokenizer's tokens is exact by
construction, with no tokenizer in the engine's processes and no encoding per request.
"""

from __future__ import annotations

import importlib.metadata
import os
import random
from pathlib import Path
from typing import Any, Final

from loadtest.errors import ConfigError
from loadtest.spec.workload import WORDS

__all__ = ["TOKENIZER_FILE", "load_tokenizer", "one_token_words", "resolve_tokenizer"]

TOKENIZER_FILE: Final = "tokenizer.json"
MIN_WORDS: Final = 16  # fewer one-token words than this would make prompts repetitive: refuse the tokenizer
_SAMPLE_LENGTHS: Final = (1, 7, 64, 511)


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "huggingface") / "hub"


def _from_distribution(name: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    shipped = sorted(str(f) for f in dist.files or () if Path(str(f)).name == TOKENIZER_FILE)
    return Path(str(dist.locate_file(shipped[0]))) if shipped else None


def _from_hub_cache(name: str) -> Path | None:
    if name.count("/") != 1:
        return None
    snapshots = _hub_cache() / f"models--{name.replace('/', '--')}" / "snapshots"
    found = (
        sorted(snapshots.glob(f"*/{TOKENIZER_FILE}"), key=lambda p: p.stat().st_mtime)
        if snapshots.is_dir()
        else []
    )
    return found[-1] if found else None


def resolve_tokenizer(name: str) -> Path:
    """The local ``tokenizer.json`` that ``name`` means (module docstring); :class:`ConfigError` otherwise."""
    if not name.strip():
        raise ConfigError(
            "--tokenizer needs a tokenizer.json path, a package or a cached model's name; got ''"
        )
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / TOKENIZER_FILE).is_file():
            return path / TOKENIZER_FILE
        raise ConfigError(f"--tokenizer {name}: the folder has no {TOKENIZER_FILE}")
    found = _from_distribution(name) or _from_hub_cache(name)
    if found is not None and found.is_file():
        return found
    raise ConfigError(
        f"--tokenizer {name}: not a {TOKENIZER_FILE} file or a folder holding one, an installed package shipping "
        f"one, or a model in the local Hugging Face cache ({_hub_cache()}); nothing is downloaded"
    )


def load_tokenizer(path: Path) -> Any:
    """A ``tokenizers.Tokenizer`` read from ``path``; :class:`ConfigError` when the library is missing or the file
    is not a tokenizer."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ConfigError(
            "--tokenizer needs the tokenizers package: pip install 'llm-loadtest[tokenizer]'"
        ) from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises plain Exception for a file it cannot read
        raise ConfigError(
            f"--tokenizer: {path} is not a tokenizer file ({str(exc).splitlines()[0]})"
        ) from None


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def one_token_words(tokenizer: Any, name: str) -> tuple[str, ...]:
    """The words of :data:`WORDS` this tokenizer counts as one token first in a prompt and after a space, checked
    to add up on seeded sample prompts; :class:`ConfigError` when fewer than :data:`MIN_WORDS` qualify or the
    counts do not add up (the tokenizer merges across spaces)."""
    anchor = next((w for w in WORDS if _count(tokenizer, w) == 1), None)
    base = _count(tokenizer, anchor) if anchor else 0
    words = tuple(
        w
        for w in WORDS
        if anchor is not None and _count(tokenizer, w) == 1 and _count(tokenizer, f"{anchor} {w}") == base + 1
    )
    if len(words) < MIN_WORDS:
        raise ConfigError(
            f"--tokenizer {name}: only {len(words)} of the prompt words are one token in it (at least {MIN_WORDS} "
            "are needed); run without --tokenizer: the preflight calibrates from the server's counts"
        )
    rng = random.Random(0)
    for n in _SAMPLE_LENGTHS:
        sample = " ".join(rng.choices(words, k=n))
        counted = _count(tokenizer, sample)
        if counted != n:
            raise ConfigError(
                f"--tokenizer {name}: a prompt of {n} one-token words is {counted} tokens in it (it merges across "
                "spaces); run without --tokenizer: the preflight calibrates from the server's counts"
            )
    return words
