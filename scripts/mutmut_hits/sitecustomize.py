"""Loaded by every Python the tests start while ``scripts/mutants --python`` runs (this folder is on
PYTHONPATH only then). mutmut maps each mutant to the tests that reach its function by recording
trampoline hits in the test process; most custodes tests reach the code through a ``custodes``
subprocess, whose hits would be lost. Here a subprocess keeps its hits and writes them to
``$CUSTODES_MUTMUT_HITS/<pid>`` at exit; ``mutmut_hits_plugin`` hands them to mutmut for the test
that started the subprocess."""

import atexit
import os

_folder = os.environ.get("CUSTODES_MUTMUT_HITS")

if _folder and os.environ.get("MUTANT_UNDER_TEST") == "stats":
    import mutmut.mutation.trampoline as _trampoline

    _hits: set[str] = set()

    def _record(name: str, caller: str | None = None) -> None:
        # mutmut's own recorder reads the config of the current folder, which a subprocess does not have
        _hits.add(name)

    _trampoline.record_trampoline_hit = _record

    @atexit.register
    def _write_hits() -> None:
        if _hits:
            path = os.path.join(_folder, str(os.getpid()))
            with open(path + ".part", "w") as out:
                out.write("\n".join(sorted(_hits)))
            os.replace(path + ".part", path)
