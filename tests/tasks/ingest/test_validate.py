"""Tests for tasks/ingest/validate.py: real Great Expectations runs of the expectations/*.json suites."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astrolab.settings import REPO_ROOT
from tasks.ingest.validate import BatchValidator, Failure, SuiteError, ValidationOutcome

EXPECTATIONS = REPO_ROOT / "expectations"
N = 20


def zcatalog_chunk(n: int = N) -> pd.DataFrame:
    """A clean zpix ZCATALOG chunk with DESI's dtypes and its legitimate oddities.

    Rows 0-1 are stuck fibers on sky (negative, repeated TARGETID, OBJTYPE SKY); row 2 carries
    Redrock's ZERR = -1 sentinel for a failed minimum fit (ZWARN BAD_MINFIT = 2**10).
    """
    rng = np.random.default_rng(42)
    targetid = (np.int64(9010) << 42) | (np.int64(123456) << 22) | np.arange(n, dtype=np.int64)
    targetid[:2] = -4001
    objtype = np.where(np.arange(n) < 2, "SKY", "TGT")
    zerr = rng.uniform(1e-5, 1e-3, n)
    zwarn = np.zeros(n, dtype=np.int64)
    zerr[2], zwarn[2] = -1.0, 1024
    return pd.DataFrame(
        {
            "TARGETID": targetid,
            "SURVEY": pd.array(["main"] * n, dtype="str"),
            "PROGRAM": pd.array(["dark"] * n, dtype="str"),
            "HEALPIX": rng.integers(0, 49152, n).astype(np.int32),
            "Z": rng.uniform(-0.005, 5.0, n),
            "ZERR": zerr,
            "ZWARN": zwarn,
            "SPECTYPE": pd.array(rng.choice(["GALAXY", "QSO", "STAR"], n), dtype="str"),
            "TARGET_RA": rng.uniform(0, 360, n),
            "TARGET_DEC": rng.uniform(-30, 85, n),
            "DELTACHI2": rng.uniform(0, 1e4, n),
            "COADD_FIBERSTATUS": np.zeros(n, dtype=np.int32),
            "TSNR2_LRG": rng.uniform(0, 200, n).astype(np.float32),
            "OBJTYPE": pd.array(objtype, dtype="str"),
        }
    )


def fastspec_chunk(n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "TARGETID": np.arange(1, n + 1, dtype=np.int64) + (np.int64(9010) << 42),
            "SURVEY": pd.array(["main"] * n, dtype="str"),
            "PROGRAM": pd.array(["bright"] * n, dtype="str"),
            "RA": rng.uniform(0, 360, n),
            "DEC": rng.uniform(-30, 85, n),
            "Z": rng.uniform(0.001, 1.5, n),
        }
    )
    for line in ("HALPHA", "HBETA", "OIII_5007", "NII_6584", "SII_6716", "SII_6731", "OI_6300"):
        frame[f"{line}_FLUX_IVAR"] = rng.uniform(0, 10, n).astype(np.float32)
    return frame


@pytest.fixture(scope="module")
def validator() -> BatchValidator:
    return BatchValidator(EXPECTATIONS)


def only_failure(outcome: ValidationOutcome) -> Failure:
    assert not outcome.success
    assert len(outcome.failures) == 1, outcome.failures
    return outcome.failures[0]


# ----------------------------------------------------------------------------- suites and columns


def test_suites_are_loaded_by_file_stem(validator: BatchValidator) -> None:
    assert validator.suite_names() == ["fastspec", "spectra", "zcatalog"]


def test_columns_used(validator: BatchValidator) -> None:
    assert validator.columns_used("zcatalog") == {
        "TARGETID", "SURVEY", "PROGRAM", "HEALPIX", "Z", "ZERR", "ZWARN", "SPECTYPE", "TARGET_RA",
        "TARGET_DEC", "DELTACHI2", "COADD_FIBERSTATUS", "TSNR2_LRG", "OBJTYPE",
    }  # fmt: skip
    assert validator.columns_used("spectra") == {"TARGETID", "TARGET_RA", "TARGET_DEC"}
    assert set(fastspec_chunk().columns) == validator.columns_used("fastspec")


def test_unknown_suite_name_suggests_the_right_one(validator: BatchValidator) -> None:
    with pytest.raises(SuiteError, match="did you mean 'zcatalog'"):
        validator.validate("zcatalogue", zcatalog_chunk(), "x")


# ----------------------------------------------------------------------------- zcatalog rules


def test_clean_chunk_passes_with_desi_exceptions(validator: BatchValidator) -> None:
    chunk = zcatalog_chunk()
    assert chunk["SPECTYPE"].dtype == "str"  # pandas 3 default string dtype, not object
    outcome = validator.validate("zcatalog", chunk, "zpix-main-dark.fits[0:20]")
    assert outcome == ValidationOutcome("zcatalog", "zpix-main-dark.fits[0:20]", N, True, ())
    assert outcome.reason() == ""
    assert chunk["SPECTYPE"].dtype == "str" and chunk["HEALPIX"].dtype == np.int32  # caller's frame untouched


def test_extra_columns_are_allowed(validator: BatchValidator) -> None:
    chunk = zcatalog_chunk().assign(CHI2=1.0, SUBTYPE=pd.array(["x"] * N, dtype="str"))
    assert validator.validate("zcatalog", chunk, "extra").success


def _set(column: str, row: int, value: object):
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expectation", "column", "detail"),
    [
        pytest.param(_set("TARGET_RA", 5, np.nan), "expect_column_values_to_not_be_null", "TARGET_RA",
                     "1 of 20 values null (NaN), expected none", id="nan-ra"),
        pytest.param(_set("TARGET_RA", 5, 400.0), "expect_column_values_to_be_between", "TARGET_RA",
                     "1 of 20 values outside [0, 360], e.g. 400.0", id="ra-400"),
        pytest.param(_set("TARGET_DEC", 6, -91.0), "expect_column_values_to_be_between", "TARGET_DEC",
                     "1 of 20 values outside [-90, 90], e.g. -91.0", id="dec-minus-91"),
        pytest.param(_set("Z", 7, 9.0), "expect_column_values_to_be_between", "Z",
                     "1 of 20 values outside [-0.01, 8], e.g. 9.0", id="z-9"),
        pytest.param(_set("Z", 7, np.nan), "expect_column_values_to_not_be_null", "Z",
                     "1 of 20 values null (NaN), expected none", id="nan-z"),
        pytest.param(_set("SPECTYPE", 8, "ALIEN"), "expect_column_values_to_be_in_set", "SPECTYPE",
                     "1 of 20 values not in {GALAXY, QSO, STAR}, e.g. 'ALIEN'", id="spectype-alien"),
        pytest.param(_set("ZERR", 9, -0.5), "expect_column_values_to_be_between", "ZERR",
                     "1 of 19 values not ≥ 0, e.g. -0.5 (checked where ZERR != -1)", id="zerr-negative"),
        pytest.param(_set("ZWARN", 9, -4), "expect_column_values_to_be_between", "ZWARN",
                     "1 of 20 values not ≥ 0, e.g. -4", id="zwarn-negative"),
        pytest.param(_set("HEALPIX", 10, 49152), "expect_column_values_to_be_between", "HEALPIX",
                     "1 of 20 values outside [0, 49151], e.g. 49152", id="healpix-nside64"),
        pytest.param(_set("TARGETID", 11, -7), "expect_column_values_to_be_between", "TARGETID",
                     "1 of 18 values not > 0, e.g. -7 (checked where OBJTYPE == TGT)", id="science-targetid-negative"),
        pytest.param(_set("TARGETID", 12, 39631400000000013), "expect_compound_columns_to_be_unique",
                     "TARGETID, SURVEY, PROGRAM",
                     "2 of 18 rows have duplicate (TARGETID, SURVEY, PROGRAM) values, "
                     "e.g. (39631400000000013, 'main', 'dark') (checked where TARGETID > 0)", id="duplicate-targetid"),
    ],
)  # fmt: skip
def test_each_rule_fails_with_column_and_readable_detail(validator, mutate, expectation, column, detail) -> None:
    chunk = zcatalog_chunk()
    chunk.loc[13, "TARGETID"] = 39631400000000013  # so the duplicate case has a known value
    outcome = validator.validate("zcatalog", mutate(chunk), "chunk-3")
    assert only_failure(outcome) == Failure(expectation, column, detail)
    assert outcome.reason() == f"{column}: {detail}"


def test_float32_examples_are_printed_at_stored_precision(validator: BatchValidator) -> None:
    chunk = zcatalog_chunk()
    chunk["TARGET_RA"] = chunk["TARGET_RA"].astype(np.float32)
    chunk.loc[3, "TARGET_RA"] = np.float32(361.2)
    chunk.loc[4, "TARGET_RA"] = np.float32(-0.5)
    failure = only_failure(validator.validate("zcatalog", chunk, "f32"))
    assert failure.detail == "2 of 20 values outside [0, 360], e.g. 361.2, -0.5"
    assert chunk["TARGET_RA"].dtype == np.float32  # the caller's frame is not modified


def test_several_failures_make_one_reason_line(validator: BatchValidator) -> None:
    chunk = zcatalog_chunk()
    chunk.loc[3, "TARGET_RA"] = np.nan
    chunk.loc[4, "TARGET_RA"] = 400.0
    chunk.loc[5, "SPECTYPE"] = "ALIEN"
    outcome = validator.validate("zcatalog", chunk, "multi")
    assert {(f.column, f.detail) for f in outcome.failures} == {
        ("TARGET_RA", "1 of 20 values null (NaN), expected none"),
        ("TARGET_RA", "1 of 20 values outside [0, 360], e.g. 400.0"),
        ("SPECTYPE", "1 of 20 values not in {GALAXY, QSO, STAR}, e.g. 'ALIEN'"),
    }
    reason = outcome.reason()
    assert "\n" not in reason and reason.count("; ") == 2
    assert "TARGET_RA: 1 of 20 values outside [0, 360], e.g. 400.0" in reason


def test_missing_required_column_is_reported_once(validator: BatchValidator) -> None:
    outcome = validator.validate("zcatalog", zcatalog_chunk().drop(columns=["TARGET_DEC"]), "no-dec")
    assert outcome.failures == (Failure("expect_table_columns_to_match_set", "TARGET_DEC", "column missing"),)
    assert outcome.reason() == "TARGET_DEC: column missing"


def test_missing_row_condition_column_is_named(validator: BatchValidator) -> None:
    outcome = validator.validate("zcatalog", zcatalog_chunk().drop(columns=["OBJTYPE"]), "no-objtype")
    assert {(f.column, f.detail) for f in outcome.failures} == {("OBJTYPE", "column missing")}


def test_empty_frame_fails_on_row_count(validator: BatchValidator) -> None:
    outcome = validator.validate("zcatalog", zcatalog_chunk().iloc[:0], "empty")
    assert outcome.rows == 0
    assert only_failure(outcome) == Failure("expect_table_row_count_to_be_between", None, "0 rows, expected at least 1")


def test_frame_without_columns_lists_every_missing_column(validator: BatchValidator) -> None:
    outcome = validator.validate("spectra", pd.DataFrame(), "nothing")
    assert [str(f) for f in outcome.failures] == [
        "TARGETID: column missing",
        "TARGET_RA: column missing",
        "TARGET_DEC: column missing",
        "0 rows, expected at least 1",
    ]


def test_numbers_delivered_as_pandas3_strings_fail_clearly(validator: BatchValidator) -> None:
    chunk = zcatalog_chunk()
    chunk["Z"] = chunk["Z"].astype("str")  # e.g. a reader that forgot to convert a text column
    assert chunk["Z"].dtype == "str"
    failure = only_failure(validator.validate("zcatalog", chunk, "z-text"))
    assert failure == Failure(
        "expect_column_values_to_be_between", "Z", "column has dtype str, expected numbers in [-0.01, 8]"
    )


def test_missing_string_values_in_pandas3_str_column_are_nulls(validator: BatchValidator) -> None:
    frame = zcatalog_chunk()[["TARGETID", "TARGET_RA", "TARGET_DEC"]]
    frame = frame.assign(TARGETID=pd.array([str(t) for t in frame["TARGETID"]][:-1] + [None], dtype="str"))
    failure = only_failure(validator.validate("spectra", frame, "str-ids"))
    assert (failure.column, failure.detail) == ("TARGETID", "1 of 20 values null (NaN), expected none")


# ----------------------------------------------------------------------------- fastspec and spectra


def test_fastspec_clean_and_negative_ivar(validator: BatchValidator) -> None:
    chunk = fastspec_chunk()
    assert validator.validate("fastspec", chunk, "fastspec-iron-main-bright-nside1-hp02.fits[0:20]").success
    chunk.loc[2, "NII_6584_FLUX_IVAR"] = np.float32(-1.5)
    chunk.loc[3, "TARGETID"] = chunk.loc[4, "TARGETID"]
    outcome = validator.validate("fastspec", chunk, "bad")
    assert {str(f) for f in outcome.failures} == {
        "NII_6584_FLUX_IVAR: 1 of 20 values not ≥ 0, e.g. -1.5",
        "TARGETID, SURVEY, PROGRAM: 2 of 20 rows have duplicate (TARGETID, SURVEY, PROGRAM) values, "
        f"e.g. ({chunk.loc[4, 'TARGETID']}, 'main', 'bright')",
    }


def test_spectra_suite_on_fibermap_and_bare_redshifts(validator: BatchValidator) -> None:
    fibermap = zcatalog_chunk()[["TARGETID", "TARGET_RA", "TARGET_DEC", "OBJTYPE"]]
    assert validator.validate("spectra", fibermap, "coadd FIBERMAP").success
    redshifts = zcatalog_chunk()[["TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE"]]
    outcome = validator.validate("spectra", redshifts, "redrock REDSHIFTS alone")
    assert outcome.reason() == "TARGET_RA: column missing; TARGET_DEC: column missing"


# ----------------------------------------------------------------------------- Data Docs


def test_data_docs_for_kept_results(tmp_path: Path) -> None:
    docs = tmp_path / "lake" / "reports" / "data_docs"
    v = BatchValidator(EXPECTATIONS, docs_dir=docs)
    bad = zcatalog_chunk()
    bad.loc[4, "TARGET_RA"] = 400.0
    assert v.validate("zcatalog", zcatalog_chunk(), "zpix-main-dark.fits[0:20]", keep_for_docs=True).success
    assert not v.validate("zcatalog", bad, "zpix-main-dark.fits[20:40]", keep_for_docs=True).success
    assert v.validate("zcatalog", zcatalog_chunk(), "not kept").success

    index = v.build_data_docs()

    assert index == docs / "index.html" and index.is_file()
    pages = sorted(p.relative_to(docs).as_posix() for p in docs.glob("validations/zcatalog/*/*/*.html"))
    assert len(pages) == 2 and all("zpix-main-dark.fits" in p for p in pages)
    assert (docs / "expectations" / "zcatalog.html").is_file()
    text = index.read_text()
    assert "zcatalog" in text and "zpix-main-dark.fits[20:40]" in text and "not kept" not in text
    assert "TARGET_RA: 1 of 20 values outside [0, 360], e.g. 400.0" in text  # offline static list
    assert 'href="validations/zcatalog/zpix-main-dark.fits%5B20_40%5D/' in text  # run names are path-safe
    failed_page = next(docs.glob("validations/zcatalog/zpix-main-dark.fits[[]20*/*/*.html")).read_text()
    assert "400.0" in failed_page and "Failed" in failed_page
    assert not (EXPECTATIONS / "gx").exists() and not (EXPECTATIONS.parent / "gx").exists()


def test_data_docs_need_a_docs_dir_and_kept_results_are_bounded(tmp_path: Path) -> None:
    assert BatchValidator(EXPECTATIONS).build_data_docs() is None
    v = BatchValidator(EXPECTATIONS, docs_dir=tmp_path, max_kept=1)
    for i in range(3):
        v.validate("spectra", zcatalog_chunk(), f"chunk-{i}", keep_for_docs=True)
    v.build_data_docs()
    assert [p.parts[-3] for p in tmp_path.glob("validations/spectra/*/*/*.html")] == ["chunk-0"]


# ----------------------------------------------------------------------------- user-edited suites


def test_user_edited_suite_is_honoured(tmp_path: Path) -> None:
    shutil.copy(EXPECTATIONS / "spectra.json", tmp_path / "spectra.json")
    spec = json.loads((EXPECTATIONS / "zcatalog.json").read_text())
    spec["name"] = "north_cap"
    for exp in spec["expectations"]:
        if exp["kwargs"].get("column") == "TARGET_DEC" and "min_value" in exp["kwargs"]:
            exp["kwargs"]["min_value"] = 30
    (tmp_path / "north_cap.json").write_text(json.dumps(spec))

    v = BatchValidator(tmp_path)

    assert v.suite_names() == ["north_cap", "spectra"]
    chunk = zcatalog_chunk()
    chunk["TARGET_DEC"] = 45.0
    chunk.loc[3, "TARGET_DEC"] = 10.0
    failure = only_failure(v.validate("north_cap", chunk, "edited"))
    assert (failure.column, failure.detail) == ("TARGET_DEC", "1 of 20 values outside [30, 90], e.g. 10.0")


def test_user_type_check_sees_the_pandas3_str_dtype(tmp_path: Path) -> None:
    # Strings are handed to GX as categoricals only where no check could tell the difference.
    suite = {
        "expectations": [
            {"type": "expect_column_values_to_be_in_set",
             "kwargs": {"column": "SPECTYPE", "value_set": ["QSO", "STAR", "GALAXY"]}},
            {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "SPECTYPE", "type_": "str"}},
            {"type": "expect_column_value_lengths_to_be_between",
             "kwargs": {"column": "OBJTYPE", "min_value": 3, "max_value": 3}},
        ]
    }  # fmt: skip
    (tmp_path / "types.json").write_text(json.dumps(suite))
    v = BatchValidator(tmp_path)
    assert v.validate("types", zcatalog_chunk(), "typed").success
    chunk = zcatalog_chunk()
    chunk.loc[0, "OBJTYPE"] = "SKYY"
    failure = only_failure(v.validate("types", chunk, "typed"))
    assert (failure.column, failure.detail.split(";")[0]) == ("OBJTYPE", "1 of 20 values unexpected, e.g. 'SKYY'")


@pytest.mark.parametrize(
    ("expectation", "message"),
    [
        ({"type": "expect_column_values_to_be_between", "kwargs": {"column": "Z", "min_valeu": 0}}, "min_valeu"),
        ({"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "Z"}},
         "did you mean 'expect_column_values_to_be_between'"),
        ({"type": "expect_table_row_count_to_be_between", "kwarg": {"min_value": 1}}, "did you mean 'kwargs'"),
    ],
)  # fmt: skip
def test_mistakes_in_suite_files_are_errors_not_dropped_checks(tmp_path: Path, expectation, message) -> None:
    (tmp_path / "broken.json").write_text(json.dumps({"expectations": [expectation]}))
    with pytest.raises(SuiteError, match=message) as err:
        BatchValidator(tmp_path)
    assert "broken.json: " in str(err.value)


def test_suite_name_must_match_file_name(tmp_path: Path) -> None:
    spec = json.loads((EXPECTATIONS / "spectra.json").read_text())
    (tmp_path / "fibermap.json").write_text(json.dumps(spec))
    with pytest.raises(SuiteError, match="'name' is 'spectra'.*'fibermap'"):
        BatchValidator(tmp_path)
