"""The Dask clusters the executor's tests run on: real ``dask scheduler`` and ``dask worker`` processes on
loopback, started and stopped by pid by custodes_dask.testing (tests in other trees use that module directly)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from custodes_dask import testing
from custodes_dask.testing import CliCluster


@pytest.fixture(scope="module")
def dask_cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCluster]:
    """Two single-threaded workers without nanny, shared by a module's tests (none of which kills a worker)."""
    with testing.dask_cli_cluster(workers=2, tmp=tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


@pytest.fixture
def fresh_dask_cli_cluster(tmp_path: Path) -> Iterator[CliCluster]:
    """A cluster of the test's own, for a test that kills one of its workers."""
    with testing.dask_cli_cluster(workers=2, tmp=tmp_path / "dask") as cluster:
        yield cluster
