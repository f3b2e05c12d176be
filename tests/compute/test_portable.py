"""A ruinmap error raised on a worker while handling a GDAL error reaches the client as itself."""

from __future__ import annotations

import pytest
from distributed import Client
from rasterio._err import CPLE_FileIOError

from ruinmap.cluster.compute.portable import portable_errors
from ruinmap.errors import DiskFullError


def _write_fails() -> None:
    try:
        raise CPLE_FileIOError(3, 4, "Write failed")
    except CPLE_FileIOError:
        raise DiskFullError("out/score.tif: no space left on device") from None


def _adds(a: int, b: int = 0) -> int:
    return a + b


def test_without_it_the_client_gets_a_plain_exception(dask_client: Client) -> None:
    # the failure portable_errors exists for: if this ever passes as DiskFullError, drop it
    with pytest.raises(Exception) as caught:
        dask_client.submit(_write_fails, pure=False).result()
    assert not isinstance(caught.value, DiskFullError)


def test_the_client_gets_the_ruinmap_error(dask_client: Client) -> None:
    with pytest.raises(DiskFullError, match="no space left on device"):
        dask_client.submit(portable_errors, _write_fails, pure=False).result()


def test_results_and_arguments_pass_through(dask_client: Client) -> None:
    assert dask_client.submit(portable_errors, _adds, 2, b=3, pure=False).result() == 5
