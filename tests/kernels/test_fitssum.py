"""kernels.fitssum against astropy's own FITS checksum code."""

import numpy as np
from astropy.io import fits

from kernels.fitssum import DataSum, encode_checksum, fold, ones_complement_sum


def test_a_stream_in_pieces_sums_like_the_whole():
    data = np.random.default_rng(4).integers(0, 256, 2880 * 7, dtype=np.uint8).tobytes()
    streamed = DataSum()
    for start, stop in [(0, 3), (3, 5), (5, 1001), (1001, 2880 * 5 + 2), (2880 * 5 + 2, len(data))]:
        streamed.update(data[start:stop])
    assert streamed.value == ones_complement_sum(data) == fold(sum(int.from_bytes(data[i:i + 4], "big")
                                                                 for i in range(0, len(data), 4)))


def test_checksum_cards_match_astropy(tmp_path):
    hdu = fits.BinTableHDU.from_columns([fits.Column("Z", "D", array=np.linspace(0, 1, 50))])
    path = tmp_path / "t.fits"
    hdu.writeto(path, checksum=True)
    with fits.open(path) as hdus:
        header = hdus[1].header
        raw = hdus[1]._get_raw_data(hdus[1]._data_size, "ubyte", hdus[1]._data_offset).tobytes()
    datasum = ones_complement_sum(raw.ljust(-(-len(raw) // 2880) * 2880, b"\0"))
    assert str(datasum) == header["DATASUM"]
    zeroed = header.copy()
    zeroed["CHECKSUM"] = "0" * 16
    total = fold(ones_complement_sum(zeroed.tostring().encode("ascii")) + datasum)
    assert encode_checksum(~total & 0xFFFFFFFF) == header["CHECKSUM"]
