"""pytest plugin for ``scripts/mutants --python``: adds the trampoline hits the test's ``custodes``
subprocesses wrote (see ``sitecustomize``) to the test's own, before mutmut's stats collector maps them."""

import os
from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    folder = os.environ.get("CUSTODES_MUTMUT_HITS")
    if not folder or os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    from mutmut.state import state

    for path in Path(folder).iterdir():
        if path.suffix == ".part":
            continue
        state()._stats.update(filter(None, path.read_text().splitlines()))
        path.unlink()
