"""Secrets out of text: passwords in URLs and ``password=`` pairs become ``***``, before text is shown or stored.

Used for every message, log line, exception text and lineage row astrolab writes (see DESIGN.md, "Secrets").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

MASK = "***"

# scheme://user:password@host...: the password (which may hold '/' or a raw '@') runs to the '@' before the host
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"<>]*):(?P<secret>[^\s'\"<>]*?)"
                       r"@(?=[^\s@/'\"<>]*(?:[/:?#\s'\"<>]|$))")
# libpq conninfo (password=...), URL query parameters (?password=...&...), and their cousins
_PAIR = re.compile(r"(?P<head>\b(?:password|passwd|pwd|secret_key|secret_access_key|aws_secret_access_key|"
                   r"api_key|access_token|token)=)(?P<q>['\"]?)(?P<secret>[^\s'\"&;,]+)", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with URL passwords, ``password=`` values and the given secret values replaced by ``***``."""
    text = _USERINFO.sub(rf"\g<head>:{MASK}@", text)
    text = _PAIR.sub(rf"\g<head>\g<q>{MASK}", text)
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class _RedactingFactory:
    """A log record factory that redacts the formatted message (and remembers extra secret values)."""

    def __init__(self, inner: Callable[..., logging.LogRecord]):
        self.inner = inner
        self.secrets: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for logging to report  # noqa: BLE001
            return record
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return record


def install_log_redaction(secrets: Iterable[str | None] = ()) -> None:
    """Redact every log record this process creates from now on (idempotent; adds ``secrets`` to those masked)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingFactory):
        factory = _RedactingFactory(factory)
        logging.setLogRecordFactory(factory)
    factory.secrets.update(s for s in secrets if s and len(s) >= 3)


def one_line(text: str, secrets: Iterable[str | None] = ()) -> str:
    """A message as one line of at most 500 characters, passwords masked (a reason kept in a record)."""
    return " ".join(redact(text, secrets).split())[:500]
