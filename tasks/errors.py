"""Errors every room shares: a transient failure (worth trying again later) as opposed to a bad input or a bug."""

from __future__ import annotations


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
