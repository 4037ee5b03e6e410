"""Crash points for the crash test: ``CUSTODES_CRASHPOINT=phase:n`` kills the
process with SIGKILL the n-th time it reaches ``phase`` (1-based).

Unset (always, outside tests), :func:`crashpoint` is a dictionary lookup."""

from __future__ import annotations

import os
import signal

_PLAN = os.environ.get("CUSTODES_CRASHPOINT", "")
_PHASE, _, _N = _PLAN.partition(":")
_COUNTS: dict[str, int] = {}


def crashpoint(phase: str) -> None:
    if not _PLAN or phase != _PHASE:
        return
    _COUNTS[phase] = _COUNTS.get(phase, 0) + 1
    if _COUNTS[phase] == int(_N or 1):
        os.kill(os.getpid(), signal.SIGKILL)
