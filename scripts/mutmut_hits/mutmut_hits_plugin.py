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
        # Only whole lines: a process still running (the archive service) may be writing one now. The file is
        # removed; that process makes a new one for its next hit.
        text = path.read_text()
        state()._stats.update(line for line in text[: text.rfind("\n") + 1].splitlines() if line)
        path.unlink()
