"""FITS checksums (FITS standard, Appendix J): the 32-bit ones' complement sum of 4-byte words and the ASCII
encoding of the CHECKSUM card. Pure arithmetic on bytes: the ingest verifies with it, the synthetic sample writes
with it."""

from __future__ import annotations

import numpy as np

MASK32 = 0xFFFFFFFF
_EXCLUDE = frozenset([*range(0x3A, 0x41), *range(0x5B, 0x61)])  # punctuation the ASCII encoding avoids


def fold(total: int) -> int:
    """Fold the carries above 32 bits back in (end-around carry)."""
    while total >> 32:
        total = (total & MASK32) + (total >> 32)
    return total


def ones_complement_sum(buf: bytes | bytearray | memoryview, start: int = 0) -> int:
    """32-bit ones' complement sum of ``buf`` (a whole number of 4-byte words) added to ``start``."""
    words = np.frombuffer(buf, dtype=">u4")
    return fold(start + int(words.sum(dtype=np.uint64)))  # < 2**53 for a few MB, exact


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of a 32-bit value for the ``CHECKSUM`` card (Appendix J)."""
    asc = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        for j in (0, 2):
            while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                ch[j] += 1
                ch[j + 1] -= 1
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[(i + 15) % 16] for i in range(16)).decode("ascii")


class DataSum:
    """The 32-bit ones' complement sum of a byte stream written in pieces of any length (FITS DATASUM)."""

    def __init__(self) -> None:
        self.total = 0
        self._carry = b""  # the last 1-3 bytes of an unfinished 4-byte word

    def update(self, data: bytes | memoryview) -> None:
        """Add the next bytes of the stream."""
        view = memoryview(data).cast("B")
        if self._carry:
            take = min(4 - len(self._carry), len(view))
            self._carry += bytes(view[:take])
            view = view[take:]
            if len(self._carry) < 4:
                return
            self.total += int.from_bytes(self._carry, "big")
            self._carry = b""
        whole = len(view) // 4 * 4
        self.total += int(np.frombuffer(view[:whole], dtype=">u4").sum(dtype=np.uint64))
        self._carry = bytes(view[whole:])
        self.total = fold(self.total)

    @property
    def value(self) -> int:
        """The sum so far (a trailing partial word counts as if padded with zeros)."""
        return fold(self.total + int.from_bytes(self._carry.ljust(4, b"\0"), "big")) if self._carry else self.total
