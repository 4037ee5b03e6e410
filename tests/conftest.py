"""The suite's fixtures, each defined once. Plain helpers (running the CLI, the test data, the tamper matrix ...)
are in helpers.py.

Archives come in two kinds: ``archive`` is an open ``Archive`` object for library tests; ``cli_archive`` and
``two_clip_archive`` are paths to archives made through the CLI, and ``make_cli_archive`` makes more of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from custodes.archive import init_archive
from helpers import (
    FOOTAGE,
    PEOPLE,
    PEOPLE_AND_ROOT,
    SERVICES,
    THREE_RECORDINGS,
    as_,
    build_cli_archive,
    request,
    stop_service,
    storage_args,
)

if TYPE_CHECKING:
    from custodes.archive import Archive


def pytest_configure(config: pytest.Config) -> None:
    """Test folders live in a folder of this session's own, not under /tmp/pytest-of-<user>: every pytest run
    makes that one 0700 again, which shuts the test accounts out of the archives a running session serves
    them (helpers.serve opens the folders on their way)."""
    if config.option.basetemp is None:
        config.option.basetemp = str(Path(tempfile.gettempdir()) / f"custodes-tests-{os.getpid()}")
    # Kept replays (verify --incremental) go to the session's folder, never to the tester's own ~/.cache.
    os.environ["XDG_CACHE_HOME"] = str(Path(config.option.basetemp) / "xdg-cache")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Test files marked slow as a whole (``pytestmark = pytest.mark.slow``) run first, each file's tests in
    their order: pytest-xdist hands files out in this order, and the 10^5-file ingest of test_query_scale (about
    130 s) handed out late was the suite's last minutes on one worker while the others sat idle."""

    def slow(item: pytest.Item) -> bool:
        marks = getattr(getattr(item, "module", None), "pytestmark", [])
        return any(m.name == "slow" for m in (marks if isinstance(marks, list) else [marks]))

    items.sort(key=lambda item: not slow(item))  # stable: the rest keep their order


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A session's folder is removed when everything passed; after a failure it stays, to be looked at."""
    basetemp = session.config.option.basetemp
    if exitstatus == 0 and basetemp and Path(basetemp).name.startswith("custodes-tests-"):
        shutil.rmtree(basetemp, ignore_errors=True)


@pytest.fixture(autouse=True)
def _stop_services() -> Iterator[None]:
    """Every archive service a test started (helpers.serve) is stopped by its pid when the test ends."""
    yield
    for arch in list(SERVICES):
        stop_service(arch)


@pytest.fixture
def footage_files() -> list[Path]:
    """Every real footage file shipped in tests/data/footage (see PROVENANCE.md)."""
    files = sorted(p for p in FOOTAGE.rglob("*") if p.is_file())
    assert len(files) == 17
    return files


@pytest.fixture
def archive_backend() -> str:
    """The storage backend of the archives a test makes (``archive``, ``make_cli_archive``, ``cli_archive``):
    ``local``; a test of the archive's workflows runs on a bucket too with
    ``@pytest.mark.parametrize("archive_backend", BACKENDS)``."""
    return "local"


@pytest.fixture
def storage_options(archive_backend: str, request: pytest.FixtureRequest) -> dict[str, str] | None:
    """The [storage] table of the archives a test makes (None: local, in the archive's folder)."""
    return request.getfixturevalue("s3_archive_options") if archive_backend == "s3" else None


@pytest.fixture
def archive(tmp_path: Path, storage_options: dict[str, str] | None) -> Iterator[Archive]:
    """An open, empty ``Archive`` object at ``tmp_path/archive`` (library tests), closed after the test."""
    a = init_archive(tmp_path / "archive", storage=storage_options)
    yield a
    a.close()


@pytest.fixture
def dcim_volume(tmp_path: Path) -> Path:
    """A volume ``tmp_path/BWC0001`` with three real recordings in DCIM/: a.mp4, b.mov, c.mp4."""
    vol = tmp_path / "BWC0001"
    for i, name in enumerate(["a.mp4", "b.mov", "c.mp4"]):
        src = [
            FOOTAGE / "encoders" / "androidx-sample.mp4",
            FOOTAGE / "phones" / "bt601.mov",
            FOOTAGE / "gopro" / "karma.mp4",
        ][i]
        (vol / "DCIM").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, vol / "DCIM" / name)
    return vol


@pytest.fixture
def make_cli_archive(tmp_path: Path, storage_options: dict[str, str] | None) -> Callable[..., Path]:
    """A factory: ``make_cli_archive(name="archive", **kw)`` is the path of a CLI-made archive at ``tmp_path/name``;
    ``kw`` as for ``helpers.build_cli_archive`` (people, recordings, volume, init_args, driver, ingest_exit), on the
    test's ``archive_backend``."""
    storage = storage_args(storage_options)

    def make(name: str = "archive", **kw: Any) -> Path:
        kw["init_args"] = (*storage, *kw.get("init_args", ()))
        return build_cli_archive(tmp_path / name, **kw)

    return make


@pytest.fixture
def cli_archive(make_cli_archive: Callable[..., Path]) -> Path:
    """The path of a CLI-made archive ``tmp_path/archive`` with the custody people (helpers.PEOPLE) and three
    recordings (segments 1-3) ingested from ``tmp_path/BWC0001``."""
    # exit 1: the 2016 footage is a late ingest, and go-mp4-sample has no clock
    return make_cli_archive(recordings=THREE_RECORDINGS, ingest_exit=(1,))


@pytest.fixture
def two_clip_archive(make_cli_archive: Callable[..., Path]) -> Path:
    """The path of a CLI-made archive ``tmp_path/archive`` with helpers.PEOPLE_AND_ROOT and two recordings
    (androidx-sample, go-mp4-sample) ingested from ``tmp_path/BWC0001``."""
    return make_cli_archive(people=PEOPLE_AND_ROOT, recordings=THREE_RECORDINGS[:2], ingest_exit=(0, 1))


@pytest.fixture
def case_bag(cli_archive: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A real export of case C-7 (segments 1 and 3 of ``cli_archive``) by carol: the bag folder and its disc image."""
    policy = cli_archive / "custodes.toml"
    assert PEOPLE in policy.read_text()
    assert (
        as_("alice", "retention", "case", cli_archive, "--case", "C-7", "--segment", "1", "--segment", "3").returncode
        == 0
    )
    rid = request(cli_archive, "carol", 1, 3, purpose="export")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    bag = tmp_path / "bag-C-7"
    iso = tmp_path / "C-7.iso"
    out = as_(
        "carol",
        "export",
        cli_archive,
        "--case",
        "C-7",
        "--request",
        rid,
        "--to",
        bag,
        "--iso",
        iso,
        "--description",
        "Body camera footage of the stop",
    )
    assert out.returncode == 0, out.stderr
    return bag, iso


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3 server with Object Lock for the session (SeaweedFS ``weed mini`` on loopback, signed requests
    only, stopped by its pid: custodes_s3.testing)."""
    from custodes_s3 import testing

    with testing.seaweed_server(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def s3_archive_options(seaweed: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The [storage] table of an archive in a new bucket with Object Lock on the session's server, with the
    server's identity in the environment (the one place, with a profile, the backend takes it from)."""
    from custodes_s3 import testing

    for name, value in seaweed.environ().items():
        monkeypatch.setenv(name, value)
    bucket = f"evidence-{os.getpid()}-{os.urandom(4).hex()}"
    testing.make_bucket(seaweed, bucket)
    return {"backend": "s3", "bucket": bucket, "endpoint": seaweed.endpoint}


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[Any]:
    """A real Dask cluster started as a user starts one (``dask scheduler`` and two ``dask worker`` processes on
    loopback, no nanny), stopped by pid after the test: custodes_dask.testing.CliCluster."""
    from custodes_dask.testing import dask_cli_cluster

    with dask_cli_cluster(workers=2, tmp=tmp_path / "dask") as cluster:
        yield cluster


#: tests/data holds files the tests read, the example vendor plugin's own tests among them (they run in
#: its own project, as its vendor's CI would: tests/test_driver_kit.py).
collect_ignore = ["data"]
