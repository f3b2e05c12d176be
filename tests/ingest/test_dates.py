"""Acquisition dates from tags and file names."""

from __future__ import annotations

import numpy as np
import pytest

from ruinmap.cluster.ingest.dates import (
    acquisition_date,
    date_from_name,
    date_from_tags,
    parse_date_text,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("S1_2016-09-21_VV.tif", "2016-09-21"),
        ("S1A_20160921T105019_VV.tif", "2016-09-21"),
        ("pre_2016_09_21.tif", "2016-09-21"),
        ("S2A_OPER_MSI_L1C_TL_MPS__20161130T130757_A007527_T31UDQ_B02.tif", "2016-11-30"),
        ("a_20160230_b.tif", None),  # 30 February is not a date
        ("tile_31500-5137.tif", None),
        ("id_120160921.tif", None),  # part of a longer number
        ("mixed_2016-09_21.tif", None),  # separators must agree
        ("x_19491231.tif", None),  # before 1950: not an acquisition date
    ],
)
def test_date_from_name(name, expected):
    got = date_from_name(name)
    assert (None if got is None else str(got)[:10]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-09-21", "2016-09-21T00:00:00"),
        ("2016-09-21T10:50:19Z", "2016-09-21T10:50:19"),
        ("2016-09-21T10:50:19.5", "2016-09-21T10:50:19.5"),
        ("2016:09:21 10:50:19", "2016-09-21T10:50:19"),
        ("20160921T105019", "2016-09-21T10:50:19"),
        ("2016-09-21T10:50:19+02:00", None),
        ("yesterday", None),
        ("2016-13-01", None),
    ],
)
def test_parse_date_text(text, expected):
    got = parse_date_text(text)
    if expected is None:
        assert got is None
    else:
        assert got == np.datetime64(expected, "ns")


def test_acquisition_tag_wins_over_tiff_datetime_and_name():
    tags = {"TIFFTAG_DATETIME": "2020:01:01 00:00:00", "acquisition_date": "2016-09-21"}
    date, source = acquisition_date(tags, "x_20170101.tif")
    assert str(date)[:10] == "2016-09-21" and source == "tag:ACQUISITION_DATE"


def test_tiff_datetime_wins_over_name():
    date, source = acquisition_date({"TIFFTAG_DATETIME": "2016:09:21 10:50:19"}, "x_20170101.tif")
    assert str(date)[:19] == "2016-09-21T10:50:19" and source == "tag:TIFFTAG_DATETIME"


def test_unparsable_tag_falls_back_to_name_then_order():
    date, source = acquisition_date({"ACQUISITION_DATE": "unknown"}, "x_20170101.tif")
    assert str(date)[:10] == "2017-01-01" and source == "name"
    assert acquisition_date({}, "x.tif") == (None, "order")


def test_dates_are_nanosecond_datetime64():
    assert date_from_name("a_2016-09-21.tif").dtype == np.dtype("datetime64[ns]")
    found = date_from_tags({"SENSING_TIME": "2016-09-21T10:50:19Z"})
    assert found is not None and found[0].dtype == np.dtype("datetime64[ns]")
