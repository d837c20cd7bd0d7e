"""FITS ``CHECKSUM``/``DATASUM`` verification (FITS standard 4.0, Appendix J) in bounded memory.

astropy's ``fits.open(..., checksum=True)`` sums each HDU's data unit from one array holding all of it
(``_get_raw_data`` of the whole size: read into memory without a memory map), so a multi-GB file would be held
whole. Here the file is walked front to back instead: each header is read from its 2880-byte blocks and parsed for
the few keywords that size the data unit, and the data unit is summed a few MB at a time as big-endian 32-bit
words with end-around carry (the 32-bit ones' complement sum). The same pass can feed a sha256, the file's content
identity in lineage, so a file is read once for both; the sha256 runs in a thread of its own (hashlib releases the
GIL), on the buffers the sums are taken from, so the two costs overlap instead of adding up.

``DATASUM`` is the sum of the data unit (fill included); ``CHECKSUM`` encodes the complement of the sum of the header
(with ``CHECKSUM`` set to 16 zeros) plus ``DATASUM``, so a correct HDU sums to -0 (all ones) as stored. Both are
checked; without ``DATASUM`` the ``CHECKSUM`` still covers header and data.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kernels.fitssum import MASK32, encode_checksum, fold, ones_complement_sum
from tasks.ingest.fits_reader import FitsFormatError

BLOCK = 2880
CARD = 80
READ_BLOCKS = 2048                  # ~5.9 MB read and summed at a time
HASH_IN_FLIGHT = 2                  # buffers read but not hashed yet, at most


@dataclass(frozen=True)
class HduCheck:
    """What one HDU's checksum cards say and what its bytes sum to."""

    index: int
    name: str
    checksum: str | None          # the header's CHECKSUM, None without the card
    datasum: str | None           # the header's DATASUM
    computed_datasum: int
    computed_checksum: str | None  # the CHECKSUM this header and data should carry (when the header has one)
    checksum_ok: bool | None      # None: no CHECKSUM card
    datasum_ok: bool | None       # None: no DATASUM card

    @property
    def has_sums(self) -> bool:
        """Whether the HDU carries CHECKSUM or DATASUM."""
        return self.checksum is not None or self.datasum is not None

    def problem(self) -> str | None:
        """One line naming the HDU and each sum that does not match (expected vs computed), or None."""
        bad = []
        if self.datasum_ok is False:
            bad.append(f"DATASUM expected {self.datasum} (header), computed {self.computed_datasum} (data)")
        if self.checksum_ok is False:
            bad.append(f"CHECKSUM expected '{self.checksum}' (header), computed '{self.computed_checksum}'")
        return f"HDU {self.name}: {'; '.join(bad)}" if bad else None


@dataclass(frozen=True)
class FitsIntegrity:
    """The checksum verdict of one FITS file, and its sha256 when that was computed in the same pass."""

    path: str
    hdus: tuple[HduCheck, ...]
    sha256: str | None = None

    @property
    def problems(self) -> list[str]:
        """One line per HDU whose sums do not match."""
        return [p for h in self.hdus if (p := h.problem()) is not None]

    def raise_on_mismatch(self) -> None:
        """Raise FitsFormatError naming the file, each bad HDU and both sums of each."""
        problems = self.problems
        if problems:
            raise FitsFormatError(self.path, "FITS checksum mismatch in " + " | ".join(problems))

    @property
    def notes(self) -> str | None:
        """What lineage should remember: HDUs without checksums, CHECKSUM without DATASUM."""
        notes = []
        unsummed = [h.name for h in self.hdus if not h.has_sums]
        if unsummed and len(unsummed) == len(self.hdus):
            notes.append("no FITS checksums")
        elif unsummed:
            notes.append(f"no FITS checksums in HDU {', '.join(unsummed)}")
        no_datasum = [h.name for h in self.hdus if h.checksum is not None and h.datasum is None]
        if no_datasum:
            notes.append(f"CHECKSUM without DATASUM in HDU {', '.join(no_datasum)} (verified over header and data)")
        return "; ".join(notes) or None


def _cards(raw: bytes) -> dict[str, str]:
    """Keyword -> value text (strings unquoted, others without their comment) of a header's value cards."""
    values: dict[str, str] = {}
    for start in range(0, len(raw), CARD):
        card = raw[start:start + CARD].decode("ascii", errors="replace")
        key = card[:8].strip()
        if card[8:10] != "= " or key in values:
            continue
        text = card[10:].strip()
        if text.startswith("'"):  # a string: up to the closing quote, '' is a quote inside
            end, out = 1, []
            while end < len(text):
                if text[end] == "'":
                    if text[end + 1:end + 2] == "'":
                        out.append("'")
                        end += 2
                        continue
                    break
                out.append(text[end])
                end += 1
            values[key] = "".join(out).rstrip()
        else:
            values[key] = text.split("/", 1)[0].strip()
    return values


def _end_card(block: bytes | bytearray) -> bool:
    return any(block[i:i + 3] == b"END" and not block[i + 3:i + CARD].strip() for i in range(0, BLOCK, CARD))


def _int(cards: dict[str, str], key: str, default: int | None, path: Path, hdu: str) -> int:
    text = cards.get(key)
    if text is None:
        if default is None:
            raise FitsFormatError(path, f"not a readable FITS file (header has no {key})", hdu)
        return default
    try:
        return int(text)
    except ValueError:
        raise FitsFormatError(path, f"not a readable FITS file ({key} = {text!r} is not an integer)", hdu) from None


def _data_bytes(cards: dict[str, str], path: Path, hdu: str) -> int:
    """Size of the data unit without fill (FITS standard 4.4.1.1 and 7.1)."""
    bitpix = _int(cards, "BITPIX", None, path, hdu)
    naxis = _int(cards, "NAXIS", None, path, hdu)
    if naxis == 0:
        return 0
    axes = [_int(cards, f"NAXIS{i}", None, path, hdu) for i in range(1, naxis + 1)]
    if axes[0] == 0 and cards.get("GROUPS") == "T":  # random groups: NAXIS1 = 0 is not a dimension
        axes = axes[1:]
    count = 1
    for n in axes:
        count *= n
    return abs(bitpix) // 8 * _int(cards, "GCOUNT", 1, path, hdu) * (_int(cards, "PCOUNT", 0, path, hdu) + count)


def _zeroed_checksum(raw: bytes) -> bytes:
    """The header with the CHECKSUM card's value set to 16 zeros (what its sum is computed over)."""
    for start in range(0, len(raw), CARD):
        if raw[start:start + 10] == b"CHECKSUM= ":
            quote = raw.find(b"'", start + 10, start + CARD)
            if quote >= 0 and raw.find(b"'", quote + 1, start + CARD) == quote + 17:
                return raw[:quote + 1] + b"0" * 16 + raw[quote + 17:]
    return raw


class _BackgroundDigest:
    """A sha256 fed in order from one worker thread; at most ``HASH_IN_FLIGHT`` buffers wait for it."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool, self.digest = pool, hashlib.sha256()
        self.pending: deque[Future] = deque()

    def update(self, buf: bytes) -> None:
        self.pending.append(self.pool.submit(self.digest.update, buf))  # one worker: updates run in order
        while len(self.pending) > HASH_IN_FLIGHT:
            self.pending.popleft().result()

    def hexdigest(self) -> str:
        while self.pending:
            self.pending.popleft().result()
        return self.digest.hexdigest()


@contextmanager
def _digest(with_sha256: bool) -> Iterator[_BackgroundDigest | None]:
    if not with_sha256:
        yield None
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
        yield _BackgroundDigest(pool)


def verify_fits(path: Path | str, with_sha256: bool = False) -> FitsIntegrity:
    """Walk every HDU of a FITS file, summing headers and data units block by block; with ``with_sha256`` the
    file's sha256 (all its bytes) comes from the same pass. Raises FitsFormatError for a file that is not FITS or
    is cut short; mismatching sums are reported in the result (see ``FitsIntegrity.raise_on_mismatch``)."""
    path = Path(path)
    hdus: list[HduCheck] = []
    with _digest(with_sha256) as digest, open(path, "rb") as fh:

        def read(n: int) -> bytes:
            buf = fh.read(n)
            if digest is not None:
                digest.update(buf)
            return buf

        while True:
            index = len(hdus)
            label = "PRIMARY" if index == 0 else f"#{index}"
            first = read(BLOCK)
            if not first and index > 0:
                break
            start = b"SIMPLE  =" if index == 0 else b"XTENSION="
            if index == 0 and (len(first) < BLOCK or not first.startswith(start)):
                what = "empty file" if not first else "no SIMPLE card at the start" \
                    if not first.startswith(start) else "file ends inside the primary header"
                raise FitsFormatError(path, f"not a readable FITS file ({what})")
            if not first.startswith(start):
                while read(1 << 20):  # trailing bytes that are no HDU (astropy ignores them too)
                    pass
                break
            raw = bytearray(first)
            while not _end_card(raw[-BLOCK:]):
                more = read(BLOCK)
                if len(more) < BLOCK:
                    raise FitsFormatError(path, f"file is truncated inside the header of HDU {label}")
                raw += more
            header = bytes(raw)
            cards = _cards(header)
            name = cards.get("EXTNAME", "").strip() or label
            size = _data_bytes(cards, path, name)
            padded = size + (-size % BLOCK)
            datasum = 0
            left = padded
            while left:
                buf = read(min(left, BLOCK * READ_BLOCKS))
                if len(buf) % 4 or not buf:
                    have = padded - left + len(buf)
                    raise FitsFormatError(path, f"file is truncated: the data unit needs {padded} bytes, "
                                                f"the file has {have} of them", name)
                datasum = ones_complement_sum(buf, datasum)
                left -= len(buf)
            hdus.append(_check(index, name, header, cards, datasum))
        sha256 = digest.hexdigest() if digest is not None else None
    return FitsIntegrity(str(path), tuple(hdus), sha256)


def _check(index: int, name: str, header: bytes, cards: dict[str, str], datasum: int) -> HduCheck:
    checksum, stored_datasum = cards.get("CHECKSUM"), cards.get("DATASUM")
    datasum_ok = None if stored_datasum is None else _same_number(stored_datasum, datasum)
    checksum_ok, computed = None, None
    if checksum is not None:
        checksum_ok = fold(ones_complement_sum(header) + datasum) == MASK32  # the whole HDU sums to -0
        computed = encode_checksum(~fold(ones_complement_sum(_zeroed_checksum(header)) + datasum) & MASK32)
    return HduCheck(index, name, checksum, stored_datasum, datasum, computed, checksum_ok, datasum_ok)


def _same_number(text: str, value: int) -> bool:
    try:
        return int(text.strip()) == value
    except ValueError:
        return False
