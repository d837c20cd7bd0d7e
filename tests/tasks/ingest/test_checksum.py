"""FITS CHECKSUM/DATASUM verification (tasks/ingest/checksum.py): against astropy, and on damaged files."""

import hashlib

import numpy as np
import pytest
from astropy.io import fits

from tasks.ingest.checksum import MASK32, encode_checksum, fold, ones_complement_sum, verify_fits
from tasks.ingest.fits_reader import FitsFormatError


def _write(path, n=1000, checksum=True):
    rng = np.random.default_rng(n)
    table = fits.BinTableHDU.from_columns([fits.Column("A", "K", array=rng.integers(-2**62, 2**62, n)),
                                           fits.Column("S", "7A", array=[f"x{i}" for i in range(n)]),
                                           fits.Column("E", "3E", array=rng.random((n, 3)))], name="TAB")
    image = fits.ImageHDU(rng.random((5, 7)).astype(">f4"), name="IMG")
    fits.HDUList([fits.PrimaryHDU(), table, image]).writeto(path, checksum=checksum)
    return path


def _flip(path, offset, bit=0x10):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= bit
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("n", [0, 1, 3, 1000])
def test_sums_match_astropy_and_the_sha256_comes_from_the_same_pass(tmp_path, n):
    path = _write(tmp_path / "t.fits", n)
    result = verify_fits(path, with_sha256=True)
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.problems == [] and result.notes is None
    with fits.open(path) as hdul:
        assert [h.name for h in result.hdus] == ["PRIMARY", "TAB", "IMG"]
        for hdu, check in zip(hdul, result.hdus, strict=True):
            assert check.checksum_ok and check.datasum_ok
            assert check.computed_checksum == hdu.header["CHECKSUM"]
            assert str(check.computed_datasum) == hdu.header["DATASUM"] == str(hdu._calculate_datasum())


def test_ones_complement_sum_and_encoding():
    words = np.array([0xFFFFFFFF, 2, 0x80000000, 0x80000000], dtype=">u4").tobytes()
    assert ones_complement_sum(words) == fold(0xFFFFFFFF + 2 + 2 * 0x80000000) == 3  # end-around carries
    assert encode_checksum(0) == "0" * 16 and len(encode_checksum(0xDEADBEEF)) == 16
    assert all(c.isalnum() for c in encode_checksum(0xDEADBEEF))


def test_a_flipped_bit_in_a_data_block_names_the_hdu_and_both_datasums(tmp_path):
    path = _write(tmp_path / "t.fits")
    with fits.open(path) as hdul:
        offset, header_sum = hdul.fileinfo(1)["datLoc"] + 123, hdul[1].header["DATASUM"]
        checksum = hdul[1].header["CHECKSUM"]
    _flip(path, offset)
    with fits.open(path) as hdul:
        computed = hdul[1]._calculate_datasum()
    result = verify_fits(path)
    assert len(result.problems) == 1
    with pytest.raises(FitsFormatError) as err:
        result.raise_on_mismatch()
    message = str(err.value)
    assert message.startswith(f"{path}: FITS checksum mismatch in HDU TAB: ") and "\n" not in message
    assert f"DATASUM expected {header_sum} (header), computed {computed} (data)" in message
    assert f"CHECKSUM expected '{checksum}' (header), computed '" in message


def test_a_flipped_bit_in_a_header_fails_only_the_checksum(tmp_path):
    path = _write(tmp_path / "t.fits")
    raw = path.read_bytes()
    start = raw.index(b"XTENSION= 'IMAGE")
    _flip(path, raw.index(b"Image extension", start), 0x01)
    (check,) = [h for h in verify_fits(path).hdus if h.name == "IMG"]
    assert check.datasum_ok and check.checksum_ok is False
    assert check.problem() == f"HDU IMG: CHECKSUM expected '{check.checksum}' (header), computed " \
                              f"'{check.computed_checksum}'" and check.checksum != check.computed_checksum


def test_checksum_without_datasum(tmp_path):
    # DATASUM removed after writing: the header changed, so CHECKSUM (which covered the card) fails
    path = _write(tmp_path / "t.fits")
    raw = bytearray(path.read_bytes())
    card = raw.index(b"DATASUM =", raw.index(b"EXTNAME = 'TAB"))
    raw[card:card + 80] = b" " * 80
    path.write_bytes(bytes(raw))
    (check,) = [h for h in verify_fits(path).hdus if h.name == "TAB"]
    assert check.datasum is None and check.datasum_ok is None and check.checksum_ok is False

    # CHECKSUM written over header and data with no DATASUM card (allowed): verified, and noted
    checksum = raw.index(b"CHECKSUM= '", raw.index(b"EXTNAME = 'TAB") - 2880) + 11
    raw[checksum:checksum + 16] = b"0" * 16
    with fits.open(path) as hdul:
        begin, end = hdul.fileinfo(1)["hdrLoc"], hdul.fileinfo(2)["hdrLoc"]
    total = ones_complement_sum(bytes(raw[begin:end]))
    raw[checksum:checksum + 16] = encode_checksum(~total & MASK32).encode()
    assert fold(ones_complement_sum(bytes(raw[begin:end]))) == MASK32  # the whole HDU sums to -0 as the standard says
    path.write_bytes(bytes(raw))
    result = verify_fits(path)
    assert result.problems == []
    assert result.notes == "CHECKSUM without DATASUM in HDU TAB (verified over header and data)"


def test_files_without_checksums_are_noted(tmp_path):
    assert verify_fits(_write(tmp_path / "none.fits", checksum=False)).notes == "no FITS checksums"
    path = _write(tmp_path / "some.fits", checksum=False)
    with fits.open(path) as hdul:
        hdul.writeto(tmp_path / "some2.fits")
    with fits.open(tmp_path / "some2.fits") as hdul:
        hdul[1].add_checksum()
        hdul.writeto(tmp_path / "some3.fits")
    assert verify_fits(tmp_path / "some3.fits").notes == "no FITS checksums in HDU PRIMARY, IMG"


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not a readable FITS file (empty file)"),
    (b"TARGETID,Z\n1,0.5\n", "not a readable FITS file (no SIMPLE card at the start)"),
    (b"SIMPLE  =                    T" + b" " * 100, "not a readable FITS file (file ends inside the primary header)"),
])
def test_not_fits(tmp_path, content, message):
    path = tmp_path / "x.fits"
    path.write_bytes(content)
    with pytest.raises(FitsFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify_fits(path)


def test_truncated_data_unit(tmp_path):
    path = _write(tmp_path / "t.fits")
    path.write_bytes(path.read_bytes()[:2880 * 3 + 100])
    with pytest.raises(FitsFormatError, match=r"HDU TAB: file is truncated: the data unit needs \d+ bytes"):
        verify_fits(path)


def test_the_synthetic_sample_carries_checksums_like_desi(sample):
    """The sample writer (tasks/synthetic/fitsstream.py) sums every HDU as it streams; astropy agrees."""
    import warnings

    paths = sorted(sample.rglob("*.fits"))
    assert paths
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with fits.open(path, checksum=True) as hdul:
                assert all(h.verify_checksum() == 1 and h.verify_datasum() == 1 for h in hdul), path
        result = verify_fits(path)
        assert result.problems == [] and result.notes is None and all(h.checksum for h in result.hdus)
