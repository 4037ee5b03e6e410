"""Loaded by every Python the tests start while ``scripts/mutants --python`` runs (this folder is on
PYTHONPATH only then). mutmut maps each mutant to the tests that reach its function by recording
trampoline hits in the test process; most custodes tests reach the code through a ``custodes``
subprocess, whose hits would be lost. Here a subprocess keeps its hits and writes them to
``$CUSTODES_MUTMUT_HITS/<pid>`` at exit; ``mutmut_hits_plugin`` hands them to mutmut for the test
that started the subprocess."""

import os

_folder = os.environ.get("CUSTODES_MUTMUT_HITS")

if _folder and os.environ.get("MUTANT_UNDER_TEST") == "stats":
    import mutmut.mutation.trampoline as _trampoline

    _hits: set[str] = set()
    _path = os.path.join(_folder, str(os.getpid()))

    def _record(name: str, caller: str | None = None) -> None:
        # mutmut's own recorder reads the config of the current folder, which a subprocess does not have.
        # Each new hit is written at once, one line per O_APPEND write: the archive service is a process that
        # outlives the test's own command (its hits must reach the test that is running), and a process
        # killed by a signal runs no exit hook.
        if name not in _hits:
            _hits.add(name)
            fd = os.open(_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, (name + "\n").encode())
            finally:
                os.close(fd)

    _trampoline.record_trampoline_hit = _record
