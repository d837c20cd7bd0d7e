"""A process-wide progress hook: the CLI installs rich bars, flows and tasks report to whatever is installed."""

from __future__ import annotations

from collections.abc import Callable

_on_file: Callable[[str], None] | None = None
_on_rows: Callable[[int], None] | None = None


def install(on_file: Callable[[str], None] | None, on_rows: Callable[[int], None] | None) -> None:
    """Set (or clear, with None) the callbacks."""
    global _on_file, _on_rows
    _on_file, _on_rows = on_file, on_rows


def start_file(name: str) -> None:
    """Report that work on a file started."""
    if _on_file:
        _on_file(name)


def advance(rows: int) -> None:
    """Report rows done."""
    if _on_rows:
        _on_rows(rows)
