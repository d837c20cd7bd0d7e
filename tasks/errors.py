"""Errors every room shares: a transient failure (worth trying again later) as opposed to a bad input or a bug."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class TransientError(Exception):
    """A failure that may pass if tried again later: a server that does not answer, a connection that dropped."""


def is_transient(exc: BaseException) -> bool:
    """True for network and server-availability failures; False for bad input, bad settings and bugs."""
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """The hint after an unknown name: " (did you mean 'x'?)" for a close choice, else " (known: a, b, c)"."""
    known = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(word), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def read_yaml(path: Path, what: str, error: type[Exception]) -> Any:
    """The YAML document in ``path``; ``error`` with one line naming the file and the problem if it cannot be read
    (``what`` names the document, e.g. "the inventory")."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
