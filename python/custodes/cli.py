"""The ``custodes`` command line. It only adapts the Python API.

Exit codes, for every command: 0 all good, 1 findings (something is wrong
with the evidence), 2 usage or environment error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain, repeat
from json.encoder import encode_basestring as _encode_str  # the C one, as json.dumps(ensure_ascii=False)
from typing import TYPE_CHECKING, Any

import click

from custodes import __version__
from custodes.defaults import DEFAULT_GAP_TOLERANCE, TimeRangeError, ns_from_seconds
from custodes.errors import CustodesError, DigestListError
from custodes.findings import Finding, rfc3339, shown_name
from custodes.hashing import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    HashBatch,
    HashProgress,
    HashResult,
    hash_batch,
    hash_files,
    walk,
)
from custodes.progress import ProgressLine, human_bytes

# Commands import what they need when they run: `custodes hash` must not pay
# for numpy, pluggy and cryptography at start-up.
if TYPE_CHECKING:
    from custodes.archive import Archive
    from custodes.drivers import DriverChoice, VolumeReading
    from custodes.keys import Fingerprint
    from custodes.ledger import VerifierKey
    from custodes.media import MediaInfo

EXIT_FINDINGS = 1


class OutputError(CustodesError):
    """Standard output refused what a command wrote (a full disk, a closed pipe) after its work was done."""

    kind = "output"


def _write_json(obj: Any) -> None:
    # A non-UTF-8 file name is a lone surrogate in Python; "backslashreplace"
    # writes it as \udcXX, which is also its JSON escape, so the output stays
    # valid JSON and json.loads gives the exact name back.
    if sys.stdout is None:  # started with it closed (`>&-`)
        raise _output_error("closed")
    out = sys.stdout.buffer
    try:
        _JsonText(lambda text: out.write(text.encode("utf-8", "backslashreplace"))).write(obj)
        out.write(b"\n")
        out.flush()
    except OSError as e:
        # Not the archive's disk, nor work undone (a hostile review: `--json >/dev/full` after a whole ingest said
        # the archive's disk was full and what was not finished was not recorded).
        raise _output_error(e.strerror or str(e)) from None


def _output_error(why: str) -> OutputError:
    return OutputError(
        f"cannot write the output ({why}: standard output): the command ran to its end and only its output is "
        "lost; give it somewhere it can be written"
    )


def _raised_writing_output(e: BaseException) -> bool:
    """``e`` was raised writing a command's text output (click.echo), or there is no output to write to: an OSError
    that names no file, said as the output's, not the archive's (after a flush fails, nothing is left to tell)."""
    if sys.stdout is None:
        return True
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code is click.echo.__code__


class _JsonText:
    """``json.dumps(obj, indent=2, ensure_ascii=False)``, the same text, handed to ``write`` in pieces of some
    64 KiB as it is made (tests/test_cli_json_text.py holds it to json's own). json's indented encoder is pure
    Python, a generator per nesting level that every token passes through: it was a third of reading a volume
    of 10^5 files. Here scalars go through the C string encoder and containers are one loop each. The whole
    text of such a volume, held as millions of small strings and then joined, took the run from about 200 to
    590 MiB: hence the pieces."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write_text = write
        self.pieces: list[str] = []
        self.open: set[int] = set()  # the containers being written, by id: json's circular-reference check

    def write(self, obj: Any) -> None:
        self.value(obj, "\n")
        self.write_text("".join(self.pieces))
        self.pieces = []

    def value(self, v: Any, newline: str) -> None:
        text = _encode_str(v) if isinstance(v, str) else _scalar_text(v)
        if text is not None:
            self.pieces.append(text)
        elif isinstance(v, list | tuple):
            self.container(v, newline, keyed=False)
        elif isinstance(v, dict):
            self.container(v, newline, keyed=True)
        elif isinstance(v, Iterator):  # an array whose items are made as they are written (IngestResult.to_json)
            first = next(v, _END)
            self.container(v if first is _END else chain((first,), v), newline, keyed=False, empty=first is _END)
        else:
            raise TypeError(f"Object of type {v.__class__.__name__} is not JSON serializable")

    def container(self, v: Any, newline: str, *, keyed: bool, empty: bool | None = None) -> None:
        if not v if empty is None else empty:
            self.pieces.append("{}" if keyed else "[]")
            return
        if id(v) in self.open:
            raise ValueError("Circular reference detected")
        self.open.add(id(v))
        pieces, inner, texts = self.pieces, newline + "  ", _SCALAR_TEXT
        lead = ("{" if keyed else "[") + inner  # before the first item; "," and the new line before the others
        for key, x in v.items() if keyed else zip(repeat(None), v):
            if keyed:
                lead += _encode_str(key if type(key) is str else _json_key(key)) + ": "
            text = texts.get(type(x))  # the exact scalar types at once; subclasses and containers in value()
            if text is not None:
                pieces.append(lead + text(x))
            else:
                pieces.append(lead)
                self.value(x, inner)
                pieces = self.pieces
            if len(pieces) >= 4096:
                self.write_text("".join(pieces))
                self.pieces = pieces = []
            lead = "," + inner
        pieces.append(newline + ("}" if keyed else "]"))
        self.open.discard(id(v))


_END = object()  # no first item: an empty iterator


def _scalar_text(v: Any) -> str | None:
    """The text of a JSON scalar other than a str (null, true, false, a number), by json's rules; None for
    anything else. Values and dict keys both take it: json writes a key 1.5 or True as the text it writes for
    the value."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        return _float_text(v)
    return None


def _json_key(k: Any) -> str:
    """A dict key as json writes it (a str, or the text of a number, true, false or null)."""
    if isinstance(k, str):
        return k
    text = _scalar_text(k)
    if text is None:
        raise TypeError(f"keys must be str, int, float, bool or None, not {k.__class__.__name__}")
    return text


def _float_text(v: float) -> str:
    if v != v:
        return "NaN"
    if v == float("inf"):
        return "Infinity"
    if v == float("-inf"):
        return "-Infinity"
    return float.__repr__(v)


#: The text of a value of each exact JSON scalar type (json's own for each); subclasses take the ordered checks.
_SCALAR_TEXT: dict[type, Callable[[Any], str]] = {
    str: _encode_str,
    int: int.__repr__,
    float: _float_text,
    bool: lambda v: "true" if v else "false",
    type(None): lambda _: "null",
}


class FiniteFloat(click.ParamType):
    """A finite number of at least ``minimum``; with ``seconds_per_unit`` a duration (seconds: 1, hours: 3600)
    whose nanoseconds must fit int64, by the one rule in :func:`custodes.defaults.ns_from_seconds`.

    Every option that takes seconds, hours or a factor uses it: click's FloatRange lets ``nan`` and ``inf``
    through, and ``1e9`` hours overflows every time stored as nanoseconds."""

    name = "number"

    def __init__(self, minimum: float = 0.0, seconds_per_unit: int | None = None, *, above: bool = False) -> None:
        self.minimum = minimum
        self.seconds_per_unit = seconds_per_unit
        self.above = above  # the minimum itself is refused too (an approval window of 0 hours)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if number != number or number in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number < self.minimum:
            self.fail(f"{value!r} is less than {self.minimum:g}", param, ctx)
        if self.above and number == self.minimum:
            self.fail(f"{value!r}: must be more than {self.minimum:g}", param, ctx)
        if self.seconds_per_unit is not None:
            try:
                ns_from_seconds(number * self.seconds_per_unit, str(value))
            except TimeRangeError:
                unit = "hours" if self.seconds_per_unit == 3600 else "seconds"
                self.fail(f"{value!r} {unit} is too long: custodes holds durations up to 292 years", param, ctx)
        return number


def _clamp_workers_option(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """--workers above :func:`custodes.hashing.max_workers` is said once on stderr; hash_files applies
    the same clamp (and the number of files) for every caller."""
    from custodes.hashing import max_workers

    if value is not None and value > max_workers():
        _print_stderr(
            f"--workers {value} is more than this machine can use; using {max_workers()} "
            f"({max_workers() // (os.cpu_count() or 1)} per core)"
        )
        return max_workers()
    return value


def workers_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--workers",
        "-j",
        type=click.IntRange(min=1),
        default=None,
        callback=_clamp_workers_option,
        help=f"{what} at once (default: one per core; at most 4 per core).",
    )


class CatalogInt(click.types.IntParamType):
    """An id, index or level stored in the catalog: an integer of at least ``minimum`` that fits SQLite's
    INTEGER (int64). click's int takes any size, and 99999999999999999999 crashed inside SQLite."""

    def __init__(self, minimum: int | None = None) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from custodes.defaults import INT64_MAX, INT64_MIN

        number = super().convert(value, param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"{number} is less than {self.minimum}", param, ctx)
        if not INT64_MIN <= number <= INT64_MAX:
            self.fail(f"{number} is out of range: no id or index in the catalog is that large", param, ctx)
        return number


class FreeText(click.ParamType):
    """Free text a person types (a reason, a note, a case id, a device or task name) that is logged, ledgered
    and printed: valid UTF-8 (argv that is not UTF-8 reaches Python as lone surrogates, which no ledger entry
    or JSON output can hold) and no control characters, except tab and, where ``single_line`` is false,
    newline. Every free-text option in this CLI uses :data:`TEXT_LINE` or :data:`TEXT`."""

    name = "text"

    def __init__(self, single_line: bool = True) -> None:
        self.single_line = single_line

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from custodes.defaults import text_problem

        if not isinstance(value, str):
            value = str(value)
        problem = text_problem(value, single_line=self.single_line)
        if problem is not None:
            self.fail(problem, param, ctx)
        return value


#: One line of free text (reasons, case ids, device and task names); :data:`TEXT` also allows newlines.
TEXT_LINE = FreeText(single_line=True)
TEXT = FreeText(single_line=False)


class GivenPath(click.Path):
    """A path argument that may not be empty: ``''`` is a usage error naming it, never "." or a nameless file."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value == "":
            self.fail("'' is an empty path: name a file or folder", param, ctx)
        return super().convert(value, param, ctx)


class ArchivePath(GivenPath):
    """ARCHIVE of a command that works on an existing archive. In the archive service it is the archive
    served: the caller reached the service through this path, which names the archive in the caller's
    folder, not the service's. It need not be readable: an archive kept by a service lets others only pass
    through its folder, to the service's socket."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(readable=False, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from custodes.service import request

        served = request()
        return str(served.archive) if served is not None else super().convert(value, param, ctx)


class ClientInput(click.Path):
    """A file or folder a command uses (a volume, a task file, a witness folder). Through the service, the
    client opens it and passes the descriptor: the service reads a file from that descriptor, and a folder only
    if it is that same folder and holds nothing the caller could not read, so nobody can make the service read
    something for them that they could not open themselves (see custodes.service, custodes.rights).
    ``writes``: the command also creates files in the folder, which the caller must be able to do too;
    ``by_descriptor``: the service uses the folder through the caller's descriptor, not its name (implied by
    ``writes``; for a folder whose name matters to nobody, such as a witness)."""

    def __init__(self, *, writes: bool = False, by_descriptor: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writes, self.by_descriptor = writes, by_descriptor

    def is_input(self, value: str) -> bool:
        """Whether ``value`` names a file or folder for the client to open (see :class:`KeyOrFile`)."""
        return True

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from custodes.service import request

        served = request()
        if served is None or not self.is_input(value):
            return super().convert(value, param, ctx)
        held = served.input_path(value, writes=self.writes, by_descriptor=self.by_descriptor)
        return super().convert(held, param, ctx)


class KeyOrFile(ClientInput):
    """``--trusted-key KEY|FINGERPRINT|FILE``: the verifier-key text itself, its fingerprint (64 hex digits, as
    init printed it; a file of such a name is given as ./NAME), or a file holding the key."""

    def __init__(self) -> None:
        super().__init__(path_type=str, dir_okay=False)

    def is_input(self, value: str) -> bool:
        from custodes.keys import is_fingerprint
        from custodes.ledger import LedgerError, VerifierKey

        try:
            VerifierKey.parse(value)
        except LedgerError:
            return not is_fingerprint(value)
        return False

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(value, param, ctx) if self.is_input(value) else value


class ClientOutput(GivenPath):
    """A file or folder a command writes (``--to``, ``--iso``, ``--out``). Through the service, the command
    writes it into the service's private outbox and the client writes it as the person (see custodes.service).
    ``served_default``: the value an omitted option takes through the service."""

    def __init__(
        self,
        *,
        served_default: str | None = None,
        preflight: Callable[[str, str, dict[str, str]], None] | None = None,
        replaces: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(readable=False, **kwargs)  # written, never read: its own checks say what is wrong
        self.served_default = served_default
        self.replaces = replaces  # the file it names is replaced whole (a report), never written into
        #: ``preflight(option, path, outputs)``: what the command checks of the path before it logs or writes
        #: anything, run by the client on its own paths (``outputs``: every output of the command, by parameter
        #: name) when the command goes to the service, which sees only its outbox.
        self.preflight = preflight

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from custodes.service import request

        value = super().convert(value, param, ctx)
        served = request()
        return (
            value if served is None or param is None or param.name is None else served.stage_output(value, param.name)
        )


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path for the lines a command prints: through the service, an output as the caller named it."""
    from custodes.service import request

    served = request()
    return os.fspath(path) if served is None else served.shown(path)


def shown_text(text: str) -> str:
    """A message as the caller would read it: through the service, every staged path in it as they named it."""
    from custodes.service import request

    served = request()
    return (
        text
        if served is None
        else served.shown_text(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
    )


SECONDS = FiniteFloat(0.0, seconds_per_unit=1)
HOURS = FiniteFloat(0.0, seconds_per_unit=3600, above=True)


@dataclass(frozen=True, slots=True)
class Output:
    """What ``--json`` and ``--quiet`` ask of a command; :func:`output_options` hands it to the command as ``out``.

    ``progress``: a progress line may be drawn (the command has one and ``--quiet`` was not given); it still
    shows only at a terminal (see :class:`custodes.progress.ProgressLine`)."""

    json: bool
    quiet: bool
    progress: bool = False

    def say(self, message: str, *, err: bool = False) -> None:
        """A line that is not the data asked for (a summary, a confirmation): printed unless ``--quiet``."""
        if not self.quiet:
            click.echo(message, err=err)

    def note(self, message: str) -> None:
        """A ``custodes: ...`` line on stderr that is not an error (a total, a warning count): unless ``--quiet``."""
        if not self.quiet:
            _print_stderr(message)

    def progress_line(self) -> ProgressLine:
        return ProgressLine(quiet=not self.progress)


#: --quiet on a command whose every line is the data asked for or an error.
QUIET_NOTHING = "Accepted for compatibility: this command prints only its results and errors, so nothing is left out."


def output_options(
    *, quiet_help: str = QUIET_NOTHING, progress: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--json`` and ``--quiet``, shared by every command that reports; the command gets one :class:`Output`
    as ``out``. ``quiet_help`` says what --quiet leaves out on that command; ``progress``: it draws progress."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
        @click.option("--quiet", "-q", is_flag=True, help=quiet_help)
        @functools.wraps(fn)
        def wrapper(*args: Any, as_json: bool, quiet: bool, **kwargs: Any) -> Any:
            return fn(*args, out=Output(json=as_json, quiet=quiet, progress=progress and not quiet), **kwargs)

        return wrapper

    return decorate


#: One ARCHIVE type shared by every command: each click.Path looks up its translated name (gettext stats the
#: locale folders) when made, and 50 of them were a tenth of `custodes probe`'s start-up. Types hold no state.
_ARCHIVE_TYPE = ArchivePath(path_type=str, exists=True, file_okay=False)


def archive_argument(fn: Callable[..., Any] | None = None, *, policy_may_differ: bool = False) -> Callable[..., Any]:
    """ARCHIVE, for every command that works on an existing archive: click checks it is a folder, the archive
    is noted for the error mapping and opened, and the command gets the open :class:`~custodes.archive.Archive`
    as ``archive``; it is closed when the command ends. An archive that cannot be opened is one line, exit 2.
    So is one whose custodes.toml differs from its ledgered policy (custodes.policy), except for the commands
    that say so themselves or only read the ledger (``@archive_argument(policy_may_differ=True)``: verify,
    ledger verify, proof and checkpoint, policy show and set)."""
    if fn is None:
        return functools.partial(archive_argument, policy_may_differ=policy_may_differ)

    @click.argument("archive", type=_ARCHIVE_TYPE)
    @functools.wraps(fn)
    def wrapper(*args: Any, archive: str, **kwargs: Any) -> Any:
        with _open_archive(archive, policy_may_differ=policy_may_differ) as opened:
            try:
                result = fn(*args, archive=opened, **kwargs)
            except SystemExit as e:
                if e.code in (None, 0, EXIT_FINDINGS):  # an error stays one line
                    _say_restored(opened)
                raise
            _say_restored(opened)
            return result

    return wrapper


def _say_restored(archive: Archive) -> None:
    """Any checkpoint writes back lost checkpoint files (an ingest's, a hold's): said after whatever command did
    it, so a deletion is never mended unseen."""
    if restored := archive.checkpoint_files_restored:
        _print_stderr(f"wrote back lost checkpoint files from their signed notes: {', '.join(map(str, restored))}")


EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
#: Where a command records the archive it works on, so an error without a file name (SQLite's) can name one.
_ARCHIVE_META = "custodes.archive"


def _disk_full(where: str) -> str:
    from custodes._durable import disk_full_line

    return f"{disk_full_line(where)} (what was not finished was not recorded)"


def environment_error(e: BaseException, archive: str | None) -> str | None:
    """One line, ``<what> (<file>): <what to do>``, for an error of the environment or of the input; None for
    anything else, which is a bug in custodes and keeps its traceback.

    This is the one place every command's errors go through (see :class:`CustodesGroup`), so no command needs
    its own handling for a full disk, a damaged catalog or a refused write."""
    import errno
    import sqlite3

    if isinstance(e, CustodesError):
        return str(e)  # custodes' own errors already name the file or value and what to do
    catalog = os.path.join(archive, "catalog.sqlite") if archive else "the archive's catalog"
    if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.ProgrammingError):
        from custodes.catalog import codes

        code, meant = codes.result_code(e), codes.as_errno(e)
        text = str(e)
        # A table or column of the schema gone (dropped by hand) is damage too, not a bug in custodes.
        schema_gone = text.startswith(("no such table", "no such column"))
        ledger_gone = schema_gone and text.split(":")[-1].split(".")[0].strip() == "ledger"
        if schema_gone and not ledger_gone:
            # The ledger is intact (it is what proves the rest), so the catalog can be made again from it.
            return (
                f"the catalog is damaged: {text} ({catalog}): its schema is not the one custodes makes; "
                f"`custodes verify {archive or 'ARCHIVE'}` names every table, index or column that differs, and "
                f"`custodes ledger rebuild-catalog {archive or 'ARCHIVE'} --replace` makes the catalog again from "
                "its ledger (or restore catalog.sqlite from a backup); the stored objects are untouched"
            )
        if (
            code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)
            or "not a database" in text
            or "malformed" in text
            or schema_gone
        ):
            return (
                f"the catalog is damaged: {text} ({catalog}): restore catalog.sqlite from a backup; the stored "
                "objects are untouched, and `custodes verify` on the restored archive shows what differs"
            )
        if codes.full_disk(e, archive or "."):
            return _disk_full(catalog)
        if code == sqlite3.SQLITE_IOERR or "disk I/O error" in text:
            return (
                f"disk I/O error on the catalog ({catalog}): check the disk (dmesg, smartctl), copy the archive "
                "to a sound disk if it is failing, then run the command again"
            )
        if meant == errno.EACCES:  # read-only, refused, or cannot be opened: the files taken from this account
            from custodes.archive import why_read_only

            return f"cannot write the catalog: {text} ({catalog}): {why_read_only(archive, catalog)}"
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return f"the catalog is busy ({catalog}): another custodes command holds it; wait for it, then run again"
        return None
    if isinstance(e, OSError) and e.errno is not None:
        where = os.fsdecode(e.filename) if e.filename is not None else (archive or "?")
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return _disk_full(where)
        if e.errno == errno.EIO:
            return (
                f"input/output error ({where}): the disk failed to read or write; check it (dmesg, smartctl), "
                "then run the command again"
            )
        if e.errno == errno.EROFS:
            return f"read-only file system ({where}): remount it read-write, or work on a writable copy"
        if e.errno in (errno.EACCES, errno.EPERM):
            from custodes.identity import keeper_advice

            return f"permission denied ({_refusing_folder(where)}): {keeper_advice(archive, 'fix the permissions')}"
    return None


def _refusing_folder(where: str) -> str:
    """``where``, or the folder on the way to it that this account cannot enter: a ledger/ at 0000 refuses the
    open of ledger/checkpoints, which names the wrong place (a hostile review)."""
    from pathlib import Path

    for folder in reversed(Path(where).parents):
        if folder != Path(".") and os.path.isdir(folder) and not os.access(folder, os.X_OK, effective_ids=True):
            return str(folder)
    return where


class CustodesGroup(click.Group):
    """The root group: one error mapping for every command.

    A refusal by the custody rules (:class:`custodes.access.AccessDenied`,
    already logged) is ``custodes: refused: <why>`` and exit 1. Environment
    errors (a full or failing disk, a damaged catalog, a read-only mount) and
    custodes' other errors become one line on stderr and exit 2; Ctrl-C exits
    130 without a traceback. Anything else is a bug and keeps its traceback."""

    #: The command line of the latest run: what the CLI hands the archive service when one keeps the archive.
    args: list[str] = []

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        self.args = list(sys.argv[1:] if args is None else args)
        # Only over Python's own handler (a run started in the background ignores SIGINT; a caller may have its
        # own). When the command is over: the process run as `custodes` leaves with SIGINT ignored (Python puts
        # SIG_DFL back for a handler of its own as it shuts down, and a press then killed a command that had done
        # its work, exit 130 and not a word: a hostile review); the CLI run inside another program (``args``
        # given: a test's runner) gets Python's handler back, unless Ctrl-C stopped the command.
        ours = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is (
            signal.default_int_handler
        )
        if ours:
            signal.signal(signal.SIGINT, _stop_once)
        try:
            return super().main(args, *rest, **kwargs)
        finally:
            if ours and args is None:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            elif ours and signal.getsignal(signal.SIGINT) is _stop_once:
                signal.signal(signal.SIGINT, signal.default_int_handler)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("custodes: interrupted; run the command again to finish", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as e:  # click's own exits and usage errors are not mapped: they pass through
            if isinstance(e, (click.ClickException, click.exceptions.Exit, click.Abort)):
                raise
            if _is_refusal(e):
                _print_stderr(f"refused: {e}")
                ctx.exit(EXIT_FINDINGS)
            if isinstance(e, OSError) and e.filename is None and _raised_writing_output(e):
                e = _output_error(e.strerror or str(e))
            line = environment_error(e, ctx.meta.get(_ARCHIVE_META))
            if line is None:
                raise
            _print_stderr(line)
            ctx.exit(EXIT_USAGE)


def _stop_once(signum: int, frame: object) -> None:
    """Ctrl-C: the command stops (KeyboardInterrupt), and a second Ctrl-C is not heard while it does. What it
    finishes on its way out (a copy or an upload part in flight, uploads aborted; temps left for the re-run's sweep)
    is seconds;
    cut short, it left threads still writing when the process exited, uploads open at the server and a traceback
    of the interpreter's exit (a hostile review pressed it three to ten times during an ingest)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _is_refusal(e: BaseException) -> bool:
    # Only custodes.access raises AccessDenied (retention imports it from there): when no command has
    # imported it, nothing was refused, and `custodes hash` does not pay for importing it here.
    access = sys.modules.get("custodes.access")
    return access is not None and isinstance(e, access.AccessDenied)


@click.group(cls=CustodesGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="custodes")
@click.option(
    "--server",
    envvar="CUSTODES_SERVER",
    type=GivenPath(path_type=str, dir_okay=False),
    default=None,
    help="The archive service's socket (default: ARCHIVE/run/custodes.sock when a service answers there).",
)
def main(server: str | None) -> None:
    """custodes: keep law-enforcement footage unaltered and provably complete."""


def _print_stderr(message: str) -> None:
    # backslashreplace: a non-UTF-8 file name in a message is shown escaped, never an encoding crash.
    sys.stderr.flush()
    sys.stderr.buffer.write(f"custodes: {message}\n".encode("utf-8", "backslashreplace"))
    sys.stderr.buffer.flush()


@main.command("hash")
# readable=False: a file it cannot read is the engine's per-file error (reported, the run goes on, exit 1),
# not a usage error that hashes nothing.
@click.argument("paths", nargs=-1, type=GivenPath(path_type=str, readable=False))
@click.option(
    "--algo",
    "algorithms",
    multiple=True,
    type=click.Choice(ALGORITHMS, case_sensitive=False),
    help=f"Digest algorithm (default {DEFAULT_ALGORITHM}). Repeat for several; each file is still read once, "
    "and the lines are then in BSD tag form (SHA256 (path) = hex).",
)
@click.option(
    "--check",
    "-c",
    "check_list",
    type=GivenPath(path_type=str, dir_okay=False, allow_dash=True),
    help="Verify the files named in a checksum list (from custodes, sha256sum or b3sum).",
)
@workers_option("Files read")
@output_options(
    progress=True,
    quiet_help="No progress on stderr, and with --check no WARNING totals (each file's line and errors stay).",
)
def hash_command(
    paths: tuple[str, ...],
    algorithms: tuple[str, ...],
    check_list: str | None,
    workers: int | None,
    out: Output,
) -> None:
    """Hash footage files, or verify a checksum list.

    PATHS are files or folders; folders are walked in byte order. Output lines
    are exactly those of sha256sum / b3sum, so `sha256sum -c` and `b3sum -c`
    can check them. With --check, prints `path: OK` or `path: FAILED` per
    file. Exit 0 when every file was hashed (or matched), 1 when any file could
    not be read, was modified or is missing, 2 on usage errors.
    """
    algorithms = tuple(dict.fromkeys(a.lower() for a in algorithms)) or (DEFAULT_ALGORITHM,)
    if check_list is not None:
        if paths:
            raise click.UsageError("--check takes a checksum list, not PATHS; name the files in the list.")
        if len(algorithms) > 1:
            raise click.UsageError("--check takes one --algo (for untagged lines); tagged lines name their own.")
        sys.exit(_check(check_list, algorithms[0], workers, out))
    if not paths:
        raise click.UsageError("give at least one file or folder to hash (or --check LIST).")
    sys.exit(_hash(paths, algorithms, workers, out))


def _hash(paths: tuple[str, ...], algorithms: tuple[str, ...], workers: int | None, out: Output) -> int:
    from custodes.checksums import format_line, format_tag_line

    walked = list(walk(paths))
    to_hash = [p for p, err in walked if err is None]
    line = out.progress_line()
    lines_only = not out.json and len(algorithms) == 1
    try:
        if lines_only:
            batch = hash_batch(to_hash, algorithms, threads=workers, progress=line)
        else:
            hashed = iter(hash_files(to_hash, algorithms, threads=workers, progress=line))
    finally:
        line.close()
    if lines_only:
        return _hash_lines(walked, batch)
    results = [next(hashed) if err is None else HashResult(p, None, {}, err) for p, err in walked]
    failed = [r for r in results if not r.ok]
    if out.json:
        _write_json({"ok": not failed, "algorithms": list(algorithms), "files": [r.to_json() for r in results]})
    else:
        stdout = sys.stdout.buffer
        for r in results:
            if r.error is not None:
                _print_stderr(str(r.error))
            elif len(algorithms) == 1:
                stdout.write(format_line(r.digests[algorithms[0]], r.path, algorithms[0]))
            else:
                for a in algorithms:
                    stdout.write(format_tag_line(a, r.digests[a], r.path))
        stdout.flush()
    return EXIT_FINDINGS if failed else 0


def _hash_lines(walked: list[tuple[str, CustodesError | None]], batch: HashBatch) -> int:
    """The lines of one algorithm's digests, straight from the engine's column (no object per file: with
    20,000 small files these were a third of the run outside the engine); each error on stderr in its turn."""
    from custodes.checksums import format_lines

    stdout = sys.stdout.buffer
    algorithm, column, n = batch.columns[0]
    pending: list[tuple[str, str]] = []
    failed = False
    i = 0  # the file's index among those hashed
    for path, error in walked:
        if error is None:
            error = batch.failed.get(i)
            if error is None:
                pending.append((column[i * n : (i + 1) * n], path))
            i += 1
        if error is not None:
            failed = True
            stdout.write(format_lines(pending, algorithm))
            pending = []
            _print_stderr(str(error))
    stdout.write(format_lines(pending, algorithm))
    stdout.flush()
    return EXIT_FINDINGS if failed else 0


_VERDICTS = {"ok": b"OK", "failed": b"FAILED"}


def _check(check_list: str, algorithm: str, workers: int | None, out: Output) -> int:
    from custodes.checksums import check_checksum_list, format_check_line

    line = out.progress_line()
    try:
        check = check_checksum_list(check_list, algorithm, workers=workers, progress=line)
    except DigestListError as e:  # an unreadable or empty list is a usage error, as sha256sum has it
        raise click.UsageError(str(e)) from e
    finally:
        line.close()
    for line_no in check.malformed:
        _print_stderr(f"{check_list}: {line_no}: improperly formatted checksum line")
    if out.json:
        _write_json(check.to_json())
    else:
        stdout = sys.stdout.buffer
        for c in check.entries:
            if c.error is not None:
                _print_stderr(str(c.error))
            stdout.write(format_check_line(c.entry.path, _VERDICTS.get(c.status, b"FAILED open or read")))
        stdout.flush()
        if failed := check.count("failed"):
            out.note(f"WARNING: {failed} computed checksum(s) did NOT match")
        if unread := check.count("missing") + check.count("unreadable"):
            out.note(f"WARNING: {unread} listed file(s) could not be read")
        if check.malformed:
            out.note(f"WARNING: {len(check.malformed)} line(s) improperly formatted")
    return 0 if check.ok else EXIT_FINDINGS


def _finding_line(f: Finding) -> str:
    from custodes.drivers import shown_name  # a file name on one line, escaped (issue 10)

    where = " ".join(x for x in (f.device and f"[{f.device}]", f.path and shown_name(f.path)) if x)
    when = f" {rfc3339(f.start)} .. {rfc3339(f.end)}" if f.start is not None and f.end is not None else ""
    return f"{f.kind}: {where}{when}: {f.message}"


@main.command("probe")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--gap-factor",
    type=FiniteFloat(1.0),
    default=3.0,
    show_default=True,
    help="An internal gap is a step in presentation time longer than this many frame durations.",
)
@output_options()
def probe_command(files: tuple[str, ...], gap_factor: float, out: Output) -> None:
    """Read what footage files say about their own time.

    For each MP4/MOV file: creation time(s) and where each comes from, duration
    per track and overall, completeness (truncation, missing bytes, no moov),
    internal gaps in presentation time, audio/video offsets, and findings.
    Prints one JSON object per file (a list with several files) with --json.
    Exit 1 when any file has findings or cannot be read.
    """
    from custodes.media import probe_many

    results = probe_many(files, gap_factor=gap_factor)
    bad = False
    objs = []
    for path, r in zip(files, results, strict=True):
        if isinstance(r, CustodesError):
            bad = True
            objs.append({"path": path, "error": {"kind": r.kind, "message": str(r)}, "findings": []})
            if not out.json:
                _print_stderr(str(r))
            continue
        bad |= bool(r.findings)
        objs.append(r.to_json())
        if not out.json:
            _print_probe(r)
    if out.json:
        _write_json(objs[0] if len(objs) == 1 else objs)
    sys.exit(EXIT_FINDINGS if bad else 0)


def _print_probe(r: MediaInfo) -> None:
    click.echo(f"{r.path}")
    click.echo(
        f"  created   {rfc3339(r.creation_time) or '(no time)'}"
        + "".join(
            f"; {c.source} {rfc3339(c.time)}" for c in r.creation_times if c.source not in ("mvhd", "tkhd", "mdhd")
        )
    )
    click.echo(
        f"  duration  {r.duration if r.duration is not None else '?'} s, "
        f"{'complete' if r.complete else 'INCOMPLETE'}"
        + (f", {r.missing_bytes} bytes missing" if r.missing_bytes else "")
    )
    for t in r.tracks:
        extra = f" timecode {t.timecode}" if t.timecode else ""
        click.echo(f"  track {t.id}: {t.kind} {t.codec or '?'} {t.samples} samples {t.duration or 0:.3f} s{extra}")
    for f in r.findings:
        click.echo(f"  {_finding_line(f)}")


def _driver_options(values: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE", param_hint="--option")
        if key.strip() in options and options[key.strip()] != value:  # the last one silently won
            raise click.BadParameter(
                f"{key.strip()} given twice, as {options[key.strip()]!r} and {value!r}", param_hint="--option"
            )
        options[key.strip()] = value
    return options


def volume_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--driver`` and ``--option``, shared by every command that reads device volumes."""

    @click.option(
        "--driver",
        type=TEXT_LINE,
        default=None,
        help="Device driver to use (default: the one that recognises the volume best).",
    )
    @click.option(
        "--option",
        "-o",
        "options",
        type=TEXT_LINE,
        multiple=True,
        metavar="KEY=VALUE",
        help="Driver option, e.g. tz=Asia/Shanghai, device_id=BWC-07, officer_id=001234. Repeatable.",
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def _a_folder(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A volume is a folder: click's ``file_okay=False`` refuses a regular file only, and a FIFO given was then
    read through its parent folder (the whole of /tmp, archives and all; a hostile review)."""
    if not os.path.isdir(value):
        raise click.BadParameter(f"{shown_name(value)} is not a folder; a device volume is the folder of its files")
    return value


def _read_volumes(paths: tuple[str, ...], driver: str | None, options: dict[str, str]) -> list[VolumeReading]:
    """Folders as volumes, files through the volume they sit in. A driver name or option no driver takes,
    a volume no driver knows, a broken driver plugin: custodes errors, one line and exit 2 (CustodesGroup)."""
    from custodes.volumes import read_paths

    return read_paths(paths, driver, options)


@main.command("plugins")
@output_options()
def plugins_command(out: Output) -> None:
    """List the loaded plugins: name, version, hooks, and the drivers, storage
    backends, reporters and executors each provides. Plugins that failed to
    load are listed under problems (exit 1)."""
    from custodes.plugins import plugin_manager

    pm = plugin_manager()
    infos = pm.plugins()
    if out.json:
        _write_json(
            {
                "plugins": [i.to_json() for i in infos],
                "problems": [{"plugin": p.plugin, "message": p.message} for p in pm.problems],
            }
        )
    else:
        for i in infos:
            provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in i.provides.items())
            click.echo(f"{i.name} {i.version or '?'}{' (built-in)' if i.builtin else ''}  {provides}")
        for p in pm.problems:
            _print_stderr(f"plugin {p.plugin}: {p.message}")
    sys.exit(EXIT_FINDINGS if pm.problems else 0)


@main.command("volume")
@click.argument("volume", type=click.Path(path_type=str, exists=True, file_okay=False), callback=_a_folder)
@volume_options
@output_options()
def volume_command(volume: str, driver: str | None, options: tuple[str, ...], out: Output) -> None:
    """Read a device volume through its driver, without writing to it.

    Shows the driver chosen, the device identity (device, officer, unit), the
    segments with their vendor metadata (times, file numbers, important-file
    marks, sidecars, GPS), clock readings, the device's event log, and
    findings about anything odd on the volume. Exit 1 when there are findings.
    """
    from custodes.volumes import cycles_collected_after

    (reading,) = _read_volumes((volume,), driver, _driver_options(options))
    if out.json:
        with cycles_collected_after():  # a dict per segment and finding: none of them garbage yet
            _write_json(reading.to_json())
    else:
        ident = reading.identity
        click.echo(
            f"{reading.volume}: driver {reading.driver}, device {ident.device_id}"
            + (f", officer {ident.officer_id}" if ident.officer_id else "")
            + (f", unit {ident.unit_id}" if ident.unit_id else "")
        )
        from custodes.findings import shown_name  # one line per segment, names escaped (issue 10)

        for line in _choice_lines(reading.choice):
            click.echo(f"  {line}")
        for s in reading.segments:
            marks = " IMPORTANT" if s.important else ""
            seq = s.sequence if s.sequence >= 0 else "-"
            click.echo(f"  {shown_name(s.name)}  {s.kind}  {rfc3339(s.start) or '(no time)'}  seq {seq}{marks}")
        for c in reading.clock_readings:
            click.echo(
                f"  clock ({c.source}): device {rfc3339(c.device_time)} vs {rfc3339(c.trusted_time)}: {c.offset:+.1f} s"
            )
        for e in reading.events:
            click.echo(f"  event {rfc3339(e.time)} {e.kind} {e.detail}")
        for n in reading.non_recordings:
            click.echo(f"  {shown_name(n.name)}  {n.role} (not a recording)")
        if reading.time_zone is not None:
            click.echo(_zone_line(reading.time_zone.to_json()))
        for f in reading.findings:
            click.echo(f"  {_finding_line(f)}")
    sys.exit(EXIT_FINDINGS if reading.findings else 0)


def _zone_line(zone: Mapping[str, str]) -> str:
    """The zone a volume's device-local times were read in, and why (custodes.drivers.device_zone)."""
    return f"  device times read in {zone['zone']} ({zone['source']})"


def _choice_lines(c: DriverChoice | None) -> list[str]:
    """How the driver was chosen, when that is worth a look: a close runner-up, a recognise that raised."""
    if c is None:
        return []
    lines = []
    if c.runner_up is not None:
        lines.append(
            f"driver {c.driver} chosen with confidence {c.confidence:.2f}; runner-up {c.runner_up} "
            f"{c.runner_up_confidence:.2f} (close: name one with --driver)"
        )
    lines += [f"driver {d}: recognise failed ({e}); counted as 0" for d, e in c.failed]
    return lines


@main.command("timeline")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str, exists=True))
@click.option(
    "--gap-tolerance",
    type=SECONDS,
    default=DEFAULT_GAP_TOLERANCE / 1e9,
    show_default=True,
    help="Seconds of unrecorded time between segments that still count as continuous.",
)
@click.option(
    "--clock-tolerance",
    type=SECONDS,
    default=2.0,
    show_default=True,
    help="Seconds a file name's time may differ from its container's time.",
)
@click.option(
    "--tz",
    type=TEXT_LINE,
    default=None,
    help="Time zone the devices write local times in (Asia/Shanghai, +08:00, UTC), above what a device states; "
    "the same as --option tz=ZONE.",
)
@volume_options
@output_options(quiet_help="No summary line (segments, volumes, findings) on stderr; the findings stay.")
def timeline_command(
    paths: tuple[str, ...],
    gap_tolerance: float,
    clock_tolerance: float,
    tz: str | None,
    driver: str | None,
    options: tuple[str, ...],
    out: Output,
) -> None:
    """Find gaps, overlaps, sequence breaks and clock faults across footage.

    Each folder in PATHS is the volume of one device, read by the driver that
    recognises it best (or --driver); a file is read through the volume it
    sits in, and only its own segments count. Segments are placed by the times the driver reads
    (file names, sidecars or containers); file numbers feed sequence breaks;
    a name's time is checked against the container's. Exit 1 when there are
    findings.
    """
    from custodes.volumes import cycles_collected_after, timeline_findings

    opts = _driver_options(options)
    if tz is not None:
        opts["tz"] = tz
    opts.setdefault("clock_tolerance", str(clock_tolerance))
    if "tz" in opts:
        from custodes.timeline import zone_info

        try:
            zone_info(opts["tz"])
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--tz") from e
    readings = _read_volumes(paths, driver, opts)
    findings = [f for r in readings for f in r.findings]
    findings += timeline_findings(readings, gap_tolerance=ns_from_seconds(gap_tolerance, "--gap-tolerance"))
    if out.json:
        with cycles_collected_after():  # a dict per segment and finding: none of them garbage yet
            _write_json(
                {
                    "ok": not findings,
                    "devices": [
                        {
                            "volume": r.volume,
                            "driver": r.driver,
                            "device": r.identity.device_id,
                            "time_zone": None if r.time_zone is None else r.time_zone.to_json(),
                            "choice": None if r.choice is None else r.choice.to_json(),
                        }
                        for r in readings
                    ],
                    "segments": [{"device": r.identity.device_id, **s.to_json()} for r in readings for s in r.segments],
                    "skipped": [os.path.join(r.volume, n) for r in readings for n in r.skipped],
                    "findings": [f.to_json() for f in findings],
                }
            )
    else:
        for r in readings:
            for line in _choice_lines(r.choice):
                out.say(f"{r.volume}: {line}", err=True)
        for f in findings:
            click.echo(_finding_line(f))
        out.say(
            f"{sum(len(r.segments) for r in readings)} segments on {len(readings)} volume(s), "
            f"{len(findings)} finding(s)",
            err=True,
        )
    sys.exit(EXIT_FINDINGS if findings else 0)


def _note_archive(path: str) -> None:
    """Remember the archive a command works on, so the one error mapping can name its catalog."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[_ARCHIVE_META] = path


def _open_archive(path: str, *, policy_may_differ: bool = False) -> Archive:
    """The archive a command works on. When a service keeps it, the command line goes to the service
    instead, and this process exits with the service's exit code. Otherwise (embedded) only the
    archive's owner may work on it directly. A policy file that differs from the ledgered policy is
    refused (one line naming both, exit 2) unless ``policy_may_differ``."""
    import sqlite3

    from custodes.archive import open_archive
    from custodes.policy import require_current
    from custodes.service import hold_embedded, request

    _note_archive(path)
    if request() is None:
        _forward_if_served(path)
        _refuse_unless_owner(path)
        hold_embedded(path)  # no second writer beside a service on another socket
    try:
        archive = open_archive(path)  # an archive that cannot be opened is a CustodesError: one line, exit 2
    except (OSError, sqlite3.Error) as e:
        # The disk's own refusal (a folder shut, another account's tmp/) before any act: said so, as an act that
        # Archive.ready_to_record refuses is (a hostile review: the disk's words alone, nothing on what stands).
        said = environment_error(e, path)
        if said is None or "recorded" in said:
            raise
        raise CustodesError(f"{said}; the archive could not be opened: nothing was recorded") from None
    try:
        # Through the service, the role gate ran before the command line was parsed (custodes.service._gate).
        if not policy_may_differ:
            require_current(archive)
    except BaseException:
        archive.close()
        raise
    return archive


def served_command(argv: list[str]) -> str | None:
    """The command ``argv`` names ("access open") when it works on an archive, the only kind the archive
    service runs; None for any other (hash, probe, init, serve, a bag ...), which the caller runs itself."""
    ctx = main.make_context("custodes", list(argv), resilient_parsing=True)
    command: click.Command = main
    rest, names = [*ctx.protected_args, *ctx.args], []
    while isinstance(command, click.Group):
        if not rest:
            return None
        name, sub, rest = command.resolve_command(ctx, rest)
        if sub is None or name is None:
            return None
        names.append(name)
        command = sub
        ctx = sub.make_context(name, list(rest), parent=ctx, resilient_parsing=True)
        rest = [*ctx.protected_args, *ctx.args]
    return " ".join(names) if any(isinstance(p.type, ArchivePath) for p in command.params) else None


def _forward_if_served(path: str) -> None:
    from custodes import service

    ctx = click.get_current_context()
    server = ctx.find_root().params.get("server")
    listen = server if server is not None else service.socket_path(path)
    conn = service.connect(listen, path, required=server is not None)
    if conn is None:
        return  # no service: embedded
    params = [(p, ctx.params.get(p.name or "")) for p in ctx.command.params]
    inputs = [v for p, v in params if isinstance(p.type, ClientInput) and v is not None and p.type.is_input(v)]
    outputs: dict[str, str] = {}
    for p, v in params:
        if isinstance(p.type, ClientOutput) and p.name:
            given = v if v is not None else p.type.served_default
            if given is not None:
                outputs[p.name] = given
    named = [(p, outputs[p.name]) for p, _ in params if isinstance(p.type, ClientOutput) and p.name in outputs]
    for p, v in named:
        _preflight_output(path, p, v, outputs)
    replaceable = frozenset(p.name for p, _ in named if isinstance(p.type, ClientOutput) and p.type.replaces and p.name)
    root = ctx.find_root().command
    argv = root.args if isinstance(root, CustodesGroup) else sys.argv[1:]
    # A command that takes a password (user add, user passwd): read here, from the person, and sent with the
    # request; the service's copy of the command reads it from there (password_option).
    secret = _ask_password(bool(ctx.params["password_stdin"])) if "password_stdin" in ctx.params else None
    sys.stdout.flush()
    sys.exit(service.forward(conn, path, argv, inputs, outputs, replaceable, secret))


def _preflight_output(archive: str, param: click.Parameter, value: str, outputs: dict[str, str]) -> None:
    """The checks an output path gets before the command runs, here on the caller's side of the service."""
    from custodes.archive import refuse_inside, refuse_links

    assert isinstance(param.type, ClientOutput)
    option = max(param.opts, key=len)
    refuse_links(refuse_inside(archive, value, option), option)
    if param.type.preflight is not None:
        param.type.preflight(option, value, outputs)


def _new_bag_folder(_option: str, value: str, _outputs: dict[str, str]) -> None:
    from pathlib import Path  # imported where used: `custodes probe` starts without pathlib's imports

    from custodes.export import check_destination

    check_destination(Path(value))


def _new_disc_image(_option: str, value: str, outputs: dict[str, str]) -> None:
    from custodes.export import check_iso_path

    check_iso_path(value, outputs["to_dir"])


def _refuse_unless_owner(path: str) -> None:
    from custodes.archive import ArchiveError
    from custodes.identity import account_name, keeper_advice

    owner = os.stat(path).st_uid
    if owner != os.getuid():
        raise ArchiveError(
            f"{path}: the archive belongs to {account_name(owner)} and no archive service answers for it; "
            f"without a service custodes works on an archive only as its owner: {keeper_advice(path)}"
        )


def _bytes_progress(out: Output) -> tuple[ProgressLine, Callable[[int, int], None]]:
    line = out.progress_line()
    return line, lambda done, total: line(HashProgress(done, total, 0, 0))


def _key_values(options: tuple[str, ...], hint: str) -> dict[str, str]:
    out = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{option!r} is not KEY=VALUE", param_hint=hint)
        out[key.strip()] = value
    return out


@main.command("init")
@click.argument("archive", type=GivenPath(path_type=str))
@click.option(
    "--time-zone",
    type=TEXT_LINE,
    default=None,
    help="Zone the agency's devices write local times in (e.g. Asia/Shanghai).",
)
@click.option(
    "--algo",
    "algorithms",
    multiple=True,
    type=click.Choice(ALGORITHMS),
    default=("sha256", "blake3"),
    show_default=True,
    help="Digests recorded for every object (sha256 always, first).",
)
@click.option("--signing-key", default=None, help="Where the Ed25519 checkpoint key lives (default ARCHIVE/private/).")
@click.option(
    "--storage",
    "backend",
    type=TEXT_LINE,
    default="local",
    show_default=True,
    help="Storage backend for the objects (`custodes plugins` lists them; s3: a bucket with Object Lock).",
)
@click.option("--bucket", type=TEXT_LINE, default=None, help="s3: the bucket (made with Object Lock enabled).")
@click.option("--endpoint", type=TEXT_LINE, default=None, help="s3: the server's URL (default: AWS).")
@click.option("--prefix", type=TEXT_LINE, default=None, help="s3: a key prefix for this archive's objects.")
@click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    type=TEXT_LINE,
    metavar="KEY=VALUE",
    help="Any other option of the backend (region=..., retention_mode=GOVERNANCE). Never credentials.",
)
@click.option(
    "--replica",
    "replica_backend",
    type=TEXT_LINE,
    default=None,
    help="Keep a second copy of every object on this backend (with --replica-option location=DIR for local).",
)
@click.option(
    "--replica-option",
    "replica_options",
    multiple=True,
    type=TEXT_LINE,
    metavar="KEY=VALUE",
    help="An option of the second copy's backend (location=/mnt/disk2/copy, bucket=..., endpoint=...).",
)
@output_options(quiet_help="Print nothing when the archive is created (--json still prints its object).")
def init_command(
    archive: str,
    time_zone: str | None,
    algorithms: tuple[str, ...],
    signing_key: str | None,
    backend: str,
    bucket: str | None,
    endpoint: str | None,
    prefix: str | None,
    storage_options: tuple[str, ...],
    replica_backend: str | None,
    replica_options: tuple[str, ...],
    out: Output,
) -> None:
    """Create an archive: policy file, SQLite catalog, write-once object store,
    ledger (its first entry the policy) with a signed checkpoint, and the
    Ed25519 checkpoint key. Change deadlines, retention, tolerances
    and people with `custodes policy set` (a hand edit makes commands refuse)."""
    from custodes.archive import init_archive
    from custodes.keys import fingerprint

    if time_zone is not None:
        from custodes.timeline import zone_info

        try:
            zone_info(time_zone)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--time-zone") from e
    storage = {"backend": backend, **_key_values(storage_options, "--storage-option")}
    storage |= {k: v for k, v in (("bucket", bucket), ("endpoint", endpoint), ("prefix", prefix)) if v is not None}
    replica = None
    if replica_backend is not None:
        replica = {"backend": replica_backend, **_key_values(replica_options, "--replica-option")}
    elif replica_options:
        raise click.BadParameter("give --replica BACKEND with it", param_hint="--replica-option")
    _note_archive(archive)
    with init_archive(
        archive, time_zone=time_zone, algorithms=algorithms, signing_key=signing_key, storage=storage, replica=replica
    ) as a:
        info = {
            "archive": str(a.root),
            "id": a.policy.archive_id,
            "origin": a.policy.origin,
            "verifier_key": str(a.verifier_key),
            "verifier_key_fingerprint": fingerprint(a.verifier_key),
            "signing_key": str(a.signing_key_path),
            "signing_key_made": a.signing_key_made,
            "storage": a.store.describe(),
            "replica": None if a.replica is None else a.replica.describe(),
        }
    if out.json:
        _write_json(info)
    else:
        out.say(
            f"created archive {info['archive']} ({info['id']})\n  verifier key {info['verifier_key']}\n"
            f"  fingerprint  {info['verifier_key_fingerprint']} (SHA-256 of the verifier key text)\n"
            "  keep both outside the archive (on paper, with the agency): `verify --trusted-key KEY` checks the "
            "archive against them (the key, or just its fingerprint)\n"
            f"  signing key  {info['signing_key']} ("
            + (
                "made now; "
                if info["signing_key_made"]
                else "already there, not made: this archive signs with that key; "
            )
            + "keep it safe; it signs the ledger's checkpoints)"
        )


@main.command("serve")
@click.argument("archive", type=GivenPath(path_type=str, exists=True, file_okay=False, readable=False))
@click.option(
    "--socket",
    "listen",
    type=GivenPath(path_type=str, dir_okay=False),
    default=None,
    help="Listen here instead of ARCHIVE/run/custodes.sock (clients then pass --server PATH).",
)
@click.option(
    "--http",
    "http_at",
    metavar="HOST:PORT",
    default=None,
    help="Also serve the review page and HTTP API here (PORT alone: 127.0.0.1:PORT, loopback). Off by default.",
)
@click.option(
    "--tls-cert",
    type=GivenPath(path_type=str, exists=True, dir_okay=False),
    default=None,
    help="HTTPS: the certificate chain file (PEM) for --http; with --tls-key.",
)
@click.option(
    "--tls-key",
    type=GivenPath(path_type=str, exists=True, dir_okay=False),
    default=None,
    help="HTTPS: the certificate's private key file (PEM); with --tls-cert.",
)
@click.option(
    "--behind-proxy",
    is_flag=True,
    help="A reverse proxy on this host is in front of --http: believe its X-Forwarded-For (from loopback only).",
)
@output_options(quiet_help="No line on stderr when the service is ready (--json still prints its object).")
def serve_command(
    archive: str,
    listen: str | None,
    http_at: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    behind_proxy: bool,
    out: Output,
) -> None:
    """Run the archive service: the one process that writes the catalog, reads
    the objects and holds the signing key. Run it as the archive's own account
    (see the README for a systemd unit). Everyone else runs the usual commands;
    the CLI hands them to the service, which knows each caller's account from
    the kernel (SO_PEERCRED) and applies the policy's [people] roles. One
    service per archive, whatever socket it listens on. Stops on SIGTERM or
    Ctrl-C, once the command that runs has finished.

    With --http, the same process serves the review page and HTTP API
    (people log in with local accounts: `custodes user add`); HTTPS with
    --tls-cert and --tls-key, or plain HTTP on loopback behind a reverse
    proxy that terminates TLS."""
    from custodes.identity import account_name
    from custodes.service import HttpListen, http_address, serve

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if http_at is None and (tls_cert is not None or behind_proxy):
        raise click.UsageError("--tls-cert, --tls-key and --behind-proxy are for --http")
    http = None if http_at is None else HttpListen(*http_address(http_at), tls_cert, tls_key, behind_proxy)

    def ready(root: object, path: object) -> None:
        said: dict[str, Any] = {"archive": str(root), "socket": str(path), "account": account_name(os.getuid())}
        if http is not None:
            said["http"] = http.url
        if out.json:
            _write_json(said)
        out.note(f"serving {root} on {path} as {account_name(os.getuid())}")
        if http is not None:
            out.note(f"review page and HTTP API on {http.url} (log in with an account from `custodes user add`)")

    _note_archive(archive)
    serve(archive, listen, ready, http)


# ---- local accounts and API tokens of the web front end (custodes.web.accounts) ----------------


def password_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--password-stdin`` (else a prompt, twice). The client reads the password, and through the archive
    service sends it with the request (never in argv); the command gets it as ``password``."""

    @click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of stdin instead of asking twice at the terminal.",
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, password_stdin: bool, **kwargs: Any) -> Any:
        from custodes.service import request

        served = request()
        if served is not None:
            if served.secret is None:
                raise CustodesError("the client sent no password; run the command with the custodes CLI")
            password = served.secret
        else:
            password = _ask_password(password_stdin)
        return fn(*args, password=password, **kwargs)

    return wrapper


def _ask_password(from_stdin: bool) -> str:
    """The new password, from stdin's first line or asked twice (hidden) at the terminal."""
    if from_stdin:
        line = sys.stdin.readline(4097)
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise CustodesError("--password-stdin: stdin gave no password (an empty first line)")
        return password
    return str(click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True))


@main.group("user")
def user_group() -> None:
    """Local accounts for the review page and HTTP API (custodians, through the archive service; or the archive's
    owner working on it directly, who owns its files).

    A local account NAME has the role the policy's [people] gives NAME (or its
    [identity] name), as an OS account does. Passwords are kept as argon2id
    hashes in ARCHIVE/accounts.sqlite; ten wrong passwords in a row lock the
    account until `user unlock` or `user passwd`. A password set here for
    another person's account is one-time: their first login reaches only the
    page where they set their own. Every change is ledgered (never the
    password)."""


@user_group.command("add")
@archive_argument
@click.argument("name")
@password_option
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def user_add_command(archive: Archive, name: str, password: str, out: Output) -> None:
    """Add local account NAME (password asked twice, or --password-stdin; one-time: NAME sets their own at
    their first login)."""
    from custodes.web.accounts import add_account

    add_account(archive, name, password)
    _write_json({"account": name, "added": True}) if out.json else out.say(f"account {name} added")


@user_group.command("passwd")
@archive_argument
@click.argument("name")
@password_option
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def user_passwd_command(archive: Archive, name: str, password: str, out: Output) -> None:
    """Set NAME's password (one-time: NAME sets their own at their next login); it unlocks the account and
    ends its sessions."""
    from custodes.web.accounts import set_password

    set_password(archive, name, password)
    _write_json({"account": name, "password_set": True}) if out.json else out.say(f"password of {name} set")


@user_group.command("disable")
@archive_argument
@click.argument("name")
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def user_disable_command(archive: Archive, name: str, out: Output) -> None:
    """Disable NAME: no login, its sessions end, its tokens stop acting."""
    from custodes.web.accounts import disable_account

    disable_account(archive, name)
    _write_json({"account": name, "disabled": True}) if out.json else out.say(f"account {name} disabled")


@user_group.command("enable")
@archive_argument
@click.argument("name")
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def user_enable_command(archive: Archive, name: str, out: Output) -> None:
    """Enable NAME again after `user disable`."""
    from custodes.web.accounts import enable_account

    enable_account(archive, name)
    _write_json({"account": name, "disabled": False}) if out.json else out.say(f"account {name} enabled")


@user_group.command("unlock")
@archive_argument
@click.argument("name")
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def user_unlock_command(archive: Archive, name: str, out: Output) -> None:
    """End the lock that ten wrong passwords in a row put on NAME."""
    from custodes.web.accounts import unlock_account

    unlock_account(archive, name)
    _write_json({"account": name, "locked": False}) if out.json else out.say(f"account {name} unlocked")


@user_group.command("list")
@archive_argument
@output_options()
def user_list_command(archive: Archive, out: Output) -> None:
    """The local accounts: person and role the policy gives each, disabled, locked."""
    from custodes.web.accounts import list_accounts

    accounts = list_accounts(archive)
    if out.json:
        _write_json({"accounts": [a.to_json() for a in accounts]})
        return
    for a in accounts:
        state = "disabled" if a.disabled else "locked" if a.locked else "one-time password" if a.one_time else "active"
        click.echo(f"{a.name}\t{a.person}\t{a.role or 'no role'}\t{state}")


@main.group("token")
def token_group() -> None:
    """API tokens for agency tools: `Authorization: Bearer TOKEN`. Custodians issue and revoke them (through the
    archive service; or the archive's owner working on it directly).

    A token acts as its local account with the role it was issued for, and
    only while the policy still gives the account that role and the account
    is not disabled; revoke it with `token revoke`. The token is printed once
    and kept only as its sha256."""


@token_group.command("add")
@archive_argument
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["custodian", "approver", "viewer", "auditor"]),
    required=True,
    help="The role the token acts with; only while the policy gives the account that role.",
)
@click.option("--label", type=TEXT_LINE, default="", help="What the token is for (an agency system's name).")
@output_options(quiet_help="Print only the token (no id line; --json still prints its object).")
def token_add_command(archive: Archive, name: str, role: str, label: str, out: Output) -> None:
    """Issue an API token for local account NAME, acting with ROLE; printed once."""
    from custodes.web.accounts import issue_token

    info, token = issue_token(archive, name, role, label)
    if out.json:
        _write_json({**info.to_json(), "token": token})
        return
    out.say(f"token {info.id} for {name} as {role} (shown once; keep it secret):", err=True)
    click.echo(token)


@token_group.command("revoke")
@archive_argument
@click.argument("token_id", metavar="ID", type=CatalogInt())
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def token_revoke_command(archive: Archive, token_id: int, out: Output) -> None:
    """Revoke API token ID (see `token list`)."""
    from custodes.web.accounts import revoke_token

    revoke_token(archive, token_id)
    _write_json({"token": token_id, "revoked": True}) if out.json else out.say(f"token {token_id} revoked")


@token_group.command("list")
@archive_argument
@output_options()
def token_list_command(archive: Archive, out: Output) -> None:
    """The API tokens: id, account, role, label, revoked or not (never the token)."""
    from custodes.web.accounts import list_tokens

    tokens = list_tokens(archive)
    if out.json:
        _write_json({"tokens": [t.to_json() for t in tokens]})
        return
    for t in tokens:
        revoked = "active" if t.revoked_ns is None else f"revoked {rfc3339(t.revoked_ns)}"
        click.echo(f"{t.id}\t{t.account}\t{t.role}\t{t.label}\t{revoked}")


@main.command("ingest")
@click.argument("volume", type=ClientInput(path_type=str, exists=True, file_okay=False))
@click.option(
    "--archive",
    "archive_path",
    required=True,
    type=ArchivePath(path_type=str, exists=True, file_okay=False),
    help="The archive to ingest into.",
)
@volume_options
@workers_option("Files copied")
@output_options(
    progress=True, quiet_help="No progress on stderr and no checkpoint line; the summary and findings stay."
)
def ingest_command(
    volume: str,
    archive_path: str,
    driver: str | None,
    options: tuple[str, ...],
    workers: int | None,
    out: Output,
) -> None:
    """Copy a device volume into the archive, crash-safe, never touching the volume.

    Each file is copied and hashed in one pass, fsynced, read back and
    re-hashed, linked into the write-once store and recorded in the catalog
    and the ledger in one transaction; then timeline findings and late_ingest
    (Art. 16) are recorded and a signed checkpoint closes the ingest. Files
    already in the archive are reported as already present; an interrupted
    ingest finishes when run again. Exit 1 when a file failed or there are
    findings.
    """
    from custodes.ingest import IngestResult, ingest

    with _open_archive(archive_path) as a:
        line, progress = _bytes_progress(out)
        try:  # a bad driver, option or volume is a CustodesError: one line, exit 2
            result = ingest(a, volume, driver, _driver_options(options), progress=progress, workers=workers)
        except CustodesError as e:
            if out.json and isinstance(e.done, IngestResult):  # recorded, not signed: what stands, and why
                error = {"kind": e.kind, "message": str(e)}
                with contextlib.suppress(OutputError):  # (this error is the one to say)
                    _write_json({**e.done.to_json(lazy=True), "ok": False, "error": error})
            raise
        finally:
            line.close()
    if out.json:
        _write_json(result.to_json(lazy=True))
    else:
        click.echo(
            f"{shown_name(result.volume)}: driver {result.driver}, device {shown_name(result.device)}: "
            f"{len(result.stored)} stored ({human_bytes(result.bytes)}), {len(result.already_present)} already "
            f"present, {len(result.failed)} failed"
            + (f", {len(result.recovered)} recovered" if result.recovered else "")
        )
        for name in result.recovered:
            # (not "stored by an interrupted ingest": one recorded from a finished ingest's note was failed by it)
            click.echo(
                f"  recovered {shown_name(name)}: recorded from what an earlier ingest read of it, its bytes in the "
                "store; gone from the volume since"
            )
        for why in _choice_lines(result.choice):
            click.echo(f"  {why}")
        if result.time_zone is not None:
            click.echo(_zone_line(result.time_zone))
        for f in result.findings:
            click.echo(f"  {_finding_line(f)}")
        if result.checkpoint:
            out.say(f"  checkpoint: {result.checkpoint['size']} entries, root {result.checkpoint['root']}")
    sys.exit(EXIT_FINDINGS if result.failed or result.findings else 0)


def trust_options(witness: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--trusted-key KEY|FINGERPRINT|FILE (and --witness DIR): what verify, ledger verify and bag validate check
    the signatures (and the tree) against, instead of what the archive or bag says of itself (custodes.keys)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option(
            "--trusted-key",
            "trusted_key",
            type=KeyOrFile(),
            default=None,
            help="The verifier key kept outside the archive (as init printed it), its fingerprint, or a file "
            "holding the key; checkpoints must verify with it, through the key rotations in the ledger.",
        )(fn)
        if witness:
            fn = click.option(
                "--witness",
                type=ClientInput(path_type=str, exists=True, file_okay=False, by_descriptor=True),
                default=None,
                help="A folder `ledger publish` wrote checkpoints to: the ledger must extend every one.",
            )(fn)
        return fn

    return decorate


def incremental_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--incremental: the ledger replayed from the verifier's own kept replay (custodes.catalog.replay_cache)."""
    return click.option(
        "--incremental",
        is_flag=True,
        help="Replay only the ledger entries appended since your last --incremental run, onto the replay of the "
        "ones before kept in your own cache folder ($XDG_CACHE_HOME/custodes/replay, yours alone; entries kept "
        "only up to a checkpoint whose signed root they give). Without it the whole ledger is replayed.",
    )(fn)


def _say_replay(out: Output, replay: dict[str, Any] | None) -> None:
    """With --incremental, how the ledger was replayed (custodes.verify.VerifyResult.replay)."""
    if replay is None:
        return
    if "whole" in replay:
        out.say(f"ledger replayed whole: {shown_text(replay['whole'])}")
    else:
        remade = f"; it {replay['remade']}, and was made again" if "remade" in replay else ""
        out.say(
            f"ledger replayed from your kept replay ({replay['held']:,} entries held, {replay['replayed']:,} "
            f"replayed now{remade}): {shown_name(replay['kept'])}"  # a path on one line, escaped
        )
        if replay.get("named_by_whole_replay"):
            kept = "it was wrong and is removed" if replay.get("removed") else "it found them too"
            out.say(f"  the differences were checked by replaying the whole ledger, which names them ({kept})")


def _trusted(value: str | None) -> VerifierKey | Fingerprint | None:
    from custodes.keys import load_trusted

    return None if value is None else load_trusted(value)  # not a key: one line, exit 2


def _schedule_value(parse: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback: the schedule's own parser (custodes.schedule), its message as a usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        from custodes.schedule import ScheduleError  # here: the catalog (sqlite3) only for a verify

        if value is None:
            return None
        try:
            return parse(value)
        except ScheduleError as e:
            raise click.BadParameter(str(e)) from None

    return callback


def _parse_slice(value: str) -> Any:
    from custodes.schedule import parse_slice

    return parse_slice(value)


def _parse_age(value: float) -> float:
    from custodes.schedule import Selection

    return Selection(older_than_days=value).older_than_days or 0.0  # its own check: finite, 0 to a century


def _parse_budget(value: str) -> Any:
    from custodes.schedule import parse_budget

    return parse_budget(value)


@main.command("verify")
@archive_argument(policy_may_differ=True)
@workers_option("Objects hashed")
@trust_options()
@incremental_option
@click.option(
    "--slice",
    "part",
    metavar="K/N",
    callback=_schedule_value(_parse_slice),
    help="Re-hash only slice K of N of the objects, by digest (stable as the archive grows; N slices cover "
    "every object once). The ledger, catalog and the slice's store listing are checked in every run.",
)
@click.option(
    "--older-than",
    "older_than",
    type=float,
    metavar="DAYS",
    callback=_schedule_value(_parse_age),
    help="Re-hash only objects last re-hashed more than DAYS ago (or never), the least recently verified first.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Go on with the latest unfinished run of the same selection (stopped by its budget, or killed): what "
    "it found intact is checked for presence and size only, not re-hashed again.",
)
@click.option(
    "--budget",
    metavar="BYTES|DURATION",
    callback=_schedule_value(_parse_budget),
    help="Stop cleanly once this much is re-hashed (500GB, 2TiB) or this long has passed (90s, 30min, 8h) and "
    "say how far the run got; the same selection with --resume continues it.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Check sizes and presence, catalog, ledger and checkpoints without re-reading any object's bytes.",
)
@click.option(
    "--algo",
    "algorithms",
    multiple=True,
    type=click.Choice(ALGORITHMS, case_sensitive=False),
    help="Re-hash and compare only this recorded digest (repeat for several; default: every one the policy "
    "records). Any one finds a change; blake3 costs a fraction of sha256's CPU on large objects.",
)
@click.option(
    "--executor",
    default="local",
    show_default=True,
    help="Who re-hashes the shards: local (this machine's cores) or a plugin's, such as dask (see `custodes plugins`).",
)
@click.option(
    "--shard-size",
    "shard_objects",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    metavar="OBJECTS",
    help="Objects per shard (and at most 4 GiB locally, 256 MiB on a cluster): the unit an executor runs and a "
    "run records; smaller shards spread better over a cluster and lose less to a kill, larger ones start fewer "
    "jobs.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="The cluster to run on, for example tcp://10.0.0.5:8786 (dask); without it, dask starts a cluster of "
    "--workers processes on this machine.",
)
@output_options(
    progress=True,
    quiet_help="No progress on stderr and no closing summary line; findings stay (the exit code says intact or not).",
)
def verify_command(
    archive: Archive,
    workers: int | None,
    trusted_key: str | None,
    witness: str | None,
    incremental: bool,
    part: Any,
    older_than: float | None,
    resume: bool,
    budget: Any,
    quick: bool,
    algorithms: tuple[str, ...],
    executor: str,
    shard_objects: int,
    scheduler: str | None,
    out: Output,
) -> None:
    """Re-hash every object and check store against catalog against ledger against checkpoints.

    Prints {"ok", "checked", "bytes", "findings"}; each finding's kind is one of
    modified, truncated, missing, unexpected, unrecorded (stored by an ingest
    that finished without recording it), ledger_mismatch,
    checkpoint_mismatch, purge_incomplete (a purge to finish with `retention
    purge --resume`), unprotected (an object's file not read-only, 0400, any
    more), untrusted_key, witness_mismatch, policy_mismatch
    (custodes.toml is not the ledgered policy), with the segment and
    object it concerns (a catalog row that the ledger, replayed, does not
    explain also names its table, row and ledger entry), or pending: work of
    an ingest under way or interrupted,
    which says how to finish it and leaves the archive intact; "trust" says which
    key the checkpoints were checked with and where it came from; "rehashed"
    is false after --quick (a resumed run's part before its stop counts as
    re-hashed: run.verified_before); "algorithms" the digests re-hashed and
    compared (--algo, else all the policy records); "run" says which verification run this was (a run
    stopped by --budget or killed is resumed by the same selection), whether
    the budget stopped it and what it left. executor_fault: a worker of a
    remote executor reported an object bad that is intact here. "replay"
    says, with --incremental, how many ledger entries the kept replay held
    and how many were replayed (or why the whole ledger was). Exit 0 when
    the archive is intact, 1 otherwise.
    """
    from pathlib import Path

    from custodes.schedule import Budget, Selection
    from custodes.verify import NOT_RECORDED_READ_ONLY, Schedule, verify

    trusted = _trusted(trusted_key)
    from custodes import identity
    from custodes.plugins import plugin_manager

    remote = plugin_manager().executors.get(executor).remote  # an unknown name: one line, before anything is read
    if scheduler is not None and not remote:
        raise click.UsageError(f"--scheduler is for a cluster's executor (--executor dask), not {executor!r}")
    if quick and (budget is not None or older_than is not None or resume or executor != "local" or algorithms):
        raise click.UsageError(
            "--quick re-hashes nothing: --budget, --older-than, --resume, --algo and --executor do not apply"
        )
    if remote and identity.served():
        # A cluster runs code as whoever reads its answers, and the service holds the archive and its key.
        raise click.UsageError(
            f"through the archive service, verify re-hashes on this machine (--executor local): executor "
            f"{executor!r} would run a cluster's code as the archive's account; that account runs `custodes verify "
            f"--executor {executor}` itself"
        )
    schedule = Schedule(
        Selection(part, older_than, quick),
        budget or Budget(),
        executor,
        scheduler,
        shard_objects,
        resume=resume,
        algorithms=tuple(dict.fromkeys(a.lower() for a in algorithms)) or None,
    )
    try:
        schedule.rehashing(tuple(archive.policy.algorithms))  # (verify's own rule, asked before anything is read)
    except CustodesError as e:
        raise click.UsageError(f"--algo {e}") from e
    line, progress = _bytes_progress(out)
    try:
        result = verify(
            archive,
            workers=workers,
            progress=progress,
            trusted_key=trusted,
            witness=None if witness is None else Path(witness),
            schedule=schedule,
            incremental=incremental,
        )
    finally:
        line.close()
    if out.json:
        _write_json(_as_named(result.to_json()))
    else:
        _say_trust(out, _as_named(result.to_json())["trust"])
        for f in result.findings:
            segment = f" [segment {f.segment}]" if f.segment is not None else ""
            click.echo(f"{f.kind}: {shown_text(f.message)}{segment}")
        _say_run(out, result)
        if result.run is not None and result.run["not_recorded"] == NOT_RECORDED_READ_ONLY:
            from custodes.archive import why_read_only

            out.say(f"  why: {why_read_only(str(archive.root), str(archive.catalog.path))}")
        _say_replay(out, result.replay)
        how = "checked" if schedule.algorithms is None else f"checked by {', '.join(result.algorithms)}"
        out.say(
            f"{'intact' if result.ok else 'NOT INTACT'}: {result.checked} objects, {human_bytes(result.bytes)} "
            f"{how if result.rehashed else 'checked by size only: no object was re-hashed (--quick)'}, "
            f"{len(result.findings)} finding(s)"
        )
    sys.exit(0 if result.ok else EXIT_FINDINGS)


def _say_run(out: Output, result: Any) -> None:
    """Which run this was, and how far it got when a budget stopped it."""
    run = result.run
    if run is None:
        return
    chosen = run["selection"]
    parts = [f"slice {chosen['slice']}" if chosen["slice"] else "every object"]
    if chosen["older_than_days"] is not None:
        parts.append(f"last re-hashed over {chosen['older_than_days']:g} days ago, oldest first")
    if run["budget"] != "none":
        parts.append(f"budget {run['budget']}")
    recorded = (
        f"verification run {run['id']}" if run["id"] else f"verification run (not recorded: {run['not_recorded']})"
    )
    out.say(f"{recorded}: {', '.join(parts)}; executor {run['executor']}")
    if run["resumed"]:
        out.say(
            f"resumed: {run['verified_before']} object(s) it had found intact before it stopped were checked "
            "for presence and size only, not re-hashed again"
        )
    if run["stopped"] is not None:
        left = run["left"]
        # A run not recorded (a catalog it cannot write) cannot be resumed: it said "run None has re-hashed 0".
        goes_on = (
            f"the same selection with --resume goes on (run {run['id']} has re-hashed {run['run_objects'] or 0} so far)"
            if run["id"]
            else "this run was not recorded, so no run resumes it: give a larger budget, or run where the catalog "
            "can be written"
        )
        out.say(
            f"stopped: {run['stopped']}; {left['objects']} object(s) ({human_bytes(left['bytes'])}) not re-hashed: "
            + goes_on
        )


@main.group("storage")
def storage_group() -> None:
    """The archive's object storage: what it guarantees, and its locks kept in step with the catalog."""


@storage_group.command("check")
@archive_argument
@output_options()
def storage_check_command(archive: Archive, out: Output) -> None:
    """Probe what the storage of each copy really guarantees (write-once, retention and legal holds enforced by
    the storage, checksums) and name each guarantee it is missing; the result is a ledger entry, and the
    compliance report shows the latest check. Exit 1 when one is missing."""
    from custodes.repair import check_storage

    check = check_storage(archive)  # ledgered: the compliance report shows the latest check
    checked, missing = check.copies, check.missing
    if out.json:
        _write_json(
            {
                "storage": archive.store.describe(),
                "backend": archive.store.backend,
                "ledger_index": check.ledger_index,
                "guarantees": [{"name": g.name, "held": g.held, "detail": g.detail} for g in checked[0][2]],
                "missing": [g.name for copy, g in missing if copy == "first"],
                "replica": None
                if archive.replica is None
                else {
                    "storage": archive.replica.describe(),
                    "backend": archive.replica.backend,
                    "guarantees": [{"name": g.name, "held": g.held, "detail": g.detail} for g in checked[1][2]],
                    "missing": [g.name for copy, g in missing if copy == "replica"],
                },
            }
        )
    else:
        for copy, store, found in checked:
            label = "" if copy == "first" else "second copy: "
            out.say(f"{label}storage {store.describe()} ({store.backend})")
            for g in found:
                click.echo(f"  {'held   ' if g.held else 'MISSING'}  {g.name}: {g.detail}")
    if missing:
        sys.exit(EXIT_FINDINGS)


@storage_group.command("sync")
@archive_argument
@output_options(quiet_help="Print nothing on success (--json still prints its object).")
def storage_sync_command(archive: Archive, out: Output) -> None:
    """Set every object's retention date and legal hold in the storage from the catalog (custodians): what a
    retention change interrupted before it reached the storage is applied. No-op for storage that enforces
    neither (local)."""
    from custodes.access import require_role
    from custodes.retention import NotLockedError, to_store

    require_role(archive, ("custodian", "approver"), "storage_sync")
    digests = [o.sha256 for o in archive.catalog.objects.walk() if o.purged_ns is None]
    enforcing = [s for s in (archive.store, archive.replica) if s is not None and s.enforces_retention]
    missing: list[str] = []
    not_set = 0
    try:
        to_store(archive, digests)
    except NotLockedError as e:
        if not e.missing:
            raise  # the storage refused or failed: an environment error (exit 2)
        # Objects gone from the storage: the evidence is what is wrong (exit 1), every other one was set.
        missing, not_set = [str(x) for x in e.failed], len(e.objects)
    applied = len(digests) - not_set if enforcing else 0
    if out.json:
        _write_json({"objects": applied, "missing": missing})
    else:
        out.say(f"retention and holds set on {applied} object(s)")
        for line in missing:
            click.echo(f"NOT set: {shown_text(line)}", err=True)
        if missing:
            click.echo(
                "`custodes verify` names what is wrong with them; `custodes storage repair` puts back what a second "
                "copy holds",
                err=True,
            )
    if missing:
        sys.exit(EXIT_FINDINGS)


@storage_group.command("repair")
@archive_argument
@output_options(quiet_help="Print nothing when nothing is left to repair (--json still prints its object).")
def storage_repair_command(archive: Archive, out: Output) -> None:
    """Verify every copy of every object and restore each one bad in one copy from the intact other; an object
    file whose mode was widened is made read-only again in place, with one copy too (custodians; each repair is
    a ledger entry). Exit 1 when an object could not be repaired, or verify found what a repair does not put
    right (a folder's mode, a catalog row, a stray file: said, and left to verify to name)."""
    from custodes.repair import repair

    result = repair(archive)
    if out.json:
        _write_json(result.to_json())
    else:
        for r in result.repaired:
            done = "; ".join(shown_text(d) for d in r["done"])
            how = "made read-only again in place" if r["was"] == "unprotected" else "restored from the other copy"
            out.say(f"repaired {r['object']}: its {r['copy']} copy was {r['was']} ({done}); {how}")
        for r in result.unrepairable + result.failed:
            click.echo(f"NOT repaired {r['object']}: {r['why']}", err=True)
        if result.left:
            first = result.left[0]
            click.echo(
                f"{len(result.left)} finding(s) that a repair does not put right remain (custodes verify names "
                f"them), the first: {first['kind']}: {shown_text(first['message'])}",
                err=True,
            )
        elif not (result.repaired or result.unrepairable or result.failed):
            out.say("every copy of every object is intact: nothing to repair")
    if not result.ok:
        sys.exit(EXIT_FINDINGS)


@main.group("ledger")
def ledger_group() -> None:
    """The archive's tamper-evident ledger: signed checkpoints and proofs."""


@ledger_group.command("checkpoint")
@archive_argument(policy_may_differ=True)  # a crash left the policy's entry unsigned, and the file behind it
@output_options()
def ledger_checkpoint_command(archive: Archive, out: Output) -> None:
    """Sign a checkpoint of the ledger as it is now and print the signed note, ready
    to hand to a witness or a supervisor. It signs every entry in the ledger,
    those no other command signs included: entries no checkpoint covers that no
    command under way wrote (`custodes verify` names them), which every other
    command refuses to act beside. Look at them first."""
    from custodes.archive import CheckpointFileError
    from custodes.policy import require_current

    require_current(archive, behind_ok=True)  # (the archive argument lets a differing file through: this says which)
    # A person's signing: of every entry no checkpoint covers, which no other command signs (Archive.checkpoint).
    try:
        cp = archive.checkpoint(every_file=True, sign_all=True)  # writes back lost checkpoint files too
    except CheckpointFileError as e:
        if e.signed:
            raise
        # Its own signing is this command's one act: "what this command recorded stands, so do not repeat an act"
        # told a person not to do the one thing to do (a hostile review, on a full disk).
        raise CustodesError(
            f"{e.cause} signing the ledger's checkpoint: nothing was signed; {e.mend}, then run the command again"
        ) from e
    if out.json:
        _write_json(cp.to_json())
    else:
        click.echo(cp.note, nl=False)


@ledger_group.command("verify")
@archive_argument(policy_may_differ=True)
@trust_options()
@incremental_option
@output_options(quiet_help="No closing summary line; findings stay (the exit code says consistent or not).")
def ledger_verify_command(
    archive: Archive, trusted_key: str | None, witness: str | None, incremental: bool, out: Output
) -> None:
    """Check the ledger alone, without re-hashing objects: entries against their
    leaf hashes, the tree against every signed checkpoint (with --trusted-key,
    signed by that key or a rotation it made), the catalog against the ledger,
    and with --witness the tree against every published checkpoint. Exit 1 on
    any mismatch."""
    from pathlib import Path

    from custodes.verify import verify_ledger_only

    trusted = _trusted(trusted_key)
    result = verify_ledger_only(
        archive, trusted_key=trusted, witness=None if witness is None else Path(witness), incremental=incremental
    )
    if out.json:
        _write_json(_as_named(result.to_json()))
    else:
        _say_trust(out, _as_named(result.to_json())["trust"])
        for f in result.findings:
            click.echo(f"{f.kind}: {shown_text(f.message)}")
        _say_replay(out, result.replay)
        out.say(f"ledger {'consistent' if result.ok else 'NOT CONSISTENT'}: {len(result.findings)} finding(s)")
    sys.exit(0 if result.ok else EXIT_FINDINGS)


def _as_named(report: dict[str, Any]) -> dict[str, Any]:
    """A verify result with the witness folder as the caller named it (the service reads it by descriptor)."""
    trust = report.get("trust")
    if isinstance(trust, dict) and trust.get("witness") is not None:
        report["trust"] = trust | {"witness": shown_path(trust["witness"])}
    for f in report.get("findings", []):
        f["message"] = shown_text(f["message"])
    return report


def _say_trust(out: Output, trust: dict[str, Any] | None) -> None:
    """The line naming the key a check trusted and where it came from (custodes.keys.KeyChain.describe)."""
    from custodes.keys import describe_trust

    if trust is not None:
        out.say(describe_trust(trust))


@ledger_group.command("rebuild-catalog")
@archive_argument
@click.option(
    "--replace",
    is_flag=True,
    help="Put the rebuilt catalog in place of catalog.sqlite (custodians only, or the archive's owner while "
    "its policy names no approver), keeping the old file as "
    "catalog.sqlite.before-rebuild-<time>.",
)
@output_options(quiet_help="No closing summary line; differences stay (the exit code says equal or not).")
def ledger_rebuild_catalog_command(archive: Archive, replace: bool, out: Output) -> None:
    """Rebuild the catalog from the ledger alone into a new file and prove it
    equal to the live one, table by table, row by row (the check verify makes):
    each difference is listed as verify lists it (missing, unexpected,
    ledger_mismatch) and exits 1. With --replace the rebuilt catalog takes the
    live one's place atomically, whatever the differences (exit 0): for an
    archive whose catalog rows were lost or damaged while its ledger is intact
    (run `custodes ledger verify` first)."""
    from custodes.access import require_role
    from custodes.policy import owner_alone
    from custodes.verify import rebuild_catalog

    # The owner of an archive that names no approver (what init makes) may, as they may set its first policy:
    # else a one-person archive whose catalog custodes refuses had no way out (its refusal not even loggable).
    if replace and not owner_alone(archive):
        require_role(archive, ("custodian",), "rebuild_catalog")
    result = rebuild_catalog(archive, replace=replace)
    if out.json:
        _write_json(result.to_json())
    else:
        for f in result.findings:
            click.echo(f"{f.kind}: {f.message}")
        if result.unknown:
            types = ", ".join(f"{t} ({n})" for t, n in sorted(result.unknown.items()))
            out.note(f"entries of types this custodes makes no catalog rows for: {types}")
        if result.replaced:
            out.say(f"catalog replaced by its rebuild from the ledger; the old one is kept as {result.kept}")
        else:
            differ = "EQUAL to" if result.equal else f"DIFFERS from ({len(result.findings)} row(s))"
            out.say(f"the catalog rebuilt from the ledger {differ} the live one; nothing was replaced")
    sys.exit(0 if result.equal or result.replaced else EXIT_FINDINGS)


@ledger_group.command("rotate-key")
@archive_argument
@output_options(quiet_help="Print nothing on success (--json still prints the new key).")
def ledger_rotate_key_command(archive: Archive, out: Output) -> None:
    """Hand the signing over to a new Ed25519 key (custodians only): the new key
    is written beside the old one, then a key_rotation ledger entry naming it,
    endorsed by the old key, is signed by the old key's checkpoint; later
    checkpoints are signed by the new key. Checks follow the rotation from the
    first (trusted) key, which stays the one to keep outside the archive."""
    from custodes.keys import rotate_key

    info = rotate_key(archive)
    if out.json:
        _write_json(info)
    else:
        out.say(
            f"rotated the checkpoint key at ledger entry {info['index']}\n"
            f"  new verifier key {info['key']}\n  fingerprint      {info['fingerprint']}\n"
            f"  signing key      {info['signing_key']} (keep it safe; the old key signs nothing new: "
            "keep it offline or destroy it)"
        )


@ledger_group.command("publish")
@archive_argument
@click.argument("folder", metavar="DIR", type=ClientInput(path_type=str, file_okay=False, writes=True))
@output_options(quiet_help="Print nothing on success (--json still prints what was published).")
def ledger_publish_command(archive: Archive, folder: str, out: Output) -> None:
    """Append each signed checkpoint not yet published to DIR, an outside
    append-only place (another disk, another machine's folder): files are
    written new, never rewritten. `verify --witness DIR` then proves the
    ledger still extends every one. When the ledger no longer extends what
    DIR holds, nothing is published and the findings are listed (exit 1)."""
    from pathlib import Path

    from custodes.witness import publish

    result, findings = publish(archive, Path(folder))
    shown = shown_path(folder)
    if out.json:
        found = [f.to_json() | {"message": shown_text(f.message)} for f in findings]
        _write_json(result.to_json() | {"folder": shown, "ok": not findings, "findings": found})
    else:
        for f in findings:
            click.echo(f"{f.kind}: {shown_text(f.message)}")
        if findings:
            out.say(f"NOT PUBLISHED: the ledger disagrees with {shown}")
        else:
            out.say(f"published {len(result.published)} checkpoint(s) to {shown} ({result.already} there before)")
    sys.exit(EXIT_FINDINGS if findings else 0)


@ledger_group.command("proof")
@archive_argument(policy_may_differ=True)
@click.option("--entry", type=CatalogInt(0), default=None, help="Ledger index to prove.")
@click.option("--segment", type=CatalogInt(1), default=None, help="Segment id whose ingest entry to prove.")
@click.option(
    "--from-size",
    type=CatalogInt(0),
    default=None,
    help="Also prove the current tree extends the tree of this size (a consistency proof).",
)
@output_options(quiet_help="Accepted for compatibility: the proof (always one JSON object) is the output.")
def ledger_proof_command(
    archive: Archive, entry: int | None, segment: int | None, from_size: int | None, out: Output
) -> None:
    """Print (JSON) an inclusion proof for one ledger entry against the latest
    checkpoint, with the entry itself and the signed note, so anyone holding the
    archive's verifier key can check it offline with custodes.merkle."""
    from custodes.proofs import ledger_proof

    if (entry is None) == (segment is None) and from_size is None:
        raise click.UsageError("give --entry N or --segment ID (and/or --from-size N)")
    _write_json(ledger_proof(archive, entry=entry, segment=segment, from_size=from_size))


@main.group("policy")
def policy_group() -> None:
    """The archive's policy, as the ledger records it: custodes.toml is in force only as its latest policy entry.

    A change takes two people: an approver proposes it (`policy set`), another
    person on another account (an approver or a custodian) approves it
    (`policy approve`). Only while the policy names no approver does the
    archive's owner set it alone (a new archive's first people)."""


@policy_group.command("show")
@archive_argument(policy_may_differ=True)
@output_options()
def policy_show_command(archive: Archive, out: Output) -> None:
    """The ledgered policy (its entry, who set it and when, its SHA-256),
    whether ARCHIVE/custodes.toml matches it, and the proposals waiting for a
    second person; --json adds its text, every earlier policy and every
    proposal with its text (read it before approving). The archive's owner or anyone with a role may look. Exit 1 when
    the file differs: until it matches again, commands that act refuse."""
    from custodes.policy import show

    info = show(archive)
    if out.json:
        _write_json(info)
    else:
        p = info["policy"]
        click.echo(f"policy: ledger entry {p['index']} ({p['action']}), set by {p['person']} at {p['time']}")
        click.echo(f"  sha256 {p['sha256']}")
        if info["file"]["matches"]:
            click.echo(f"{info['file']['path']}: matches the ledgered policy")
        else:
            click.echo(f"policy_mismatch: {info['file']['mismatch']}")
        for q in info["proposals"]:
            if q["status"] == "pending":
                click.echo(
                    f"proposal {q['id']}: by {q['person']} at {q['time']}, on the policy of ledger entry "
                    f"{q['base']}, sha256 {q['sha256']} (pending: `custodes policy approve ARCHIVE {q['id']}`)"
                )
    sys.exit(0 if info["file"]["matches"] else EXIT_FINDINGS)


@policy_group.command("set")
@archive_argument(policy_may_differ=True)
@click.argument("file", type=ClientInput(path_type=str, exists=True, dir_okay=False))
@output_options(quiet_help="Print nothing on success (--json still prints the entry).")
def policy_set_command(archive: Archive, file: str, out: Output) -> None:
    """Propose FILE as the archive's policy (approvers only): checked by the
    loader every command uses (the archive's id, origin, storage and key stay;
    an account that has acted keeps its name), recorded as a proposal in the
    ledger and the access log. Nothing changes until another person on another
    account approves it (`custodes policy approve ARCHIVE N`). While the
    ledgered policy names no approver, the archive's owner sets it directly (a
    new archive's first people). The policy in force is written to
    ARCHIVE/custodes.toml after its entry: running this again with the same
    FILE finishes a change a crash cut short. A refusal is logged."""
    from custodes.policy import set_policy

    _say_policy(set_policy(archive, file), shown_path(file), out)


def _say_policy(result: Any, what: str, out: Output) -> None:
    if out.json:
        _write_json(result.to_json())
        return
    p, q = result.policy, result.proposal
    if result.status == "proposed":
        out.say(
            f"{what}: proposed as policy proposal {q.id} by {q.person}, sha256 {q.sha256}; nothing changes until "
            f"another approver or a custodian approves it: `custodes policy approve ARCHIVE {q.id}`"
        )
        return
    said = {
        "recorded": "recorded as",
        "unchanged": "already is",
        "file_rewritten": "already is (custodes.toml was behind it and is written now)",
    }[result.status]
    by = p.person if p.proposed_by is None else f"{p.person} (proposal {p.proposal} by {p.proposed_by})"
    out.say(f"{what}: {said} the policy, ledger entry {p.index} by {by}, sha256 {p.sha256}")


@policy_group.command("approve")
@archive_argument(policy_may_differ=True)
@click.argument("proposal", type=CatalogInt())
@output_options(quiet_help="Print nothing on success (--json still prints the entry).")
def policy_approve_command(archive: Archive, proposal: int, out: Output) -> None:
    """Put policy proposal PROPOSAL in force (`policy show` lists them): by an
    approver or a custodian who is neither the proposer's person nor account,
    through the archive service; only while it is based on the policy in force
    (else propose it again). Its ledger entry names proposer and approver; the
    file is written after it, and approving again finishes a change a crash cut
    short. A refusal is logged."""
    from custodes.policy import approve_proposal

    _say_policy(approve_proposal(archive, proposal), f"policy proposal {proposal}", out)


@policy_group.command("deny")
@archive_argument(policy_may_differ=True)
@click.argument("proposal", type=CatalogInt())
@click.option("--reason", type=TEXT_LINE, required=True, help="Why the proposal is denied (logged and ledgered).")
@output_options(quiet_help="Print nothing on success (--json still prints the proposal).")
def policy_deny_command(archive: Archive, proposal: int, reason: str, out: Output) -> None:
    """Close policy proposal PROPOSAL without putting it in force (an approver
    or a custodian; the proposer may withdraw their own). The reason is logged."""
    from custodes.policy import deny_proposal

    q = deny_proposal(archive, proposal, reason)
    _write_json(q.to_json()) if out.json else out.say(f"policy proposal {q.id} denied")


@main.group("task")
def task_group() -> None:
    """Enforcement tasks from the agency's systems, and how well footage covers them."""


@task_group.command("import")
@archive_argument
@click.argument("file", type=ClientInput(path_type=str, exists=True, dir_okay=False))
@output_options(quiet_help="Print nothing on success (no line counting the tasks; --json still prints them).")
def task_import_command(archive: Archive, file: str, out: Output) -> None:
    """Import tasks from CSV (id,type,start,end,officers,devices; names split by ';')
    or JSON (a list of objects with those keys). Times are RFC 3339 with an
    offset. All or nothing: a bad row imports nothing and is named. Each new
    or changed task is a ledger entry."""
    from custodes.tasks import import_tasks, load_tasks

    _say_changes(out, import_tasks(archive, load_tasks(file)))


@task_group.command("coverage")
@archive_argument
@click.option("--task", "task_ids", type=TEXT_LINE, multiple=True, help="Only these tasks (repeatable).")
@output_options()
def task_coverage_command(archive: Archive, task_ids: tuple[str, ...], out: Output) -> None:
    """Coverage of each task: share of the window recorded by any of its devices
    (its own, and those its officers' footage came from), share recorded by two
    devices at once (Art. 11), the uncovered intervals with their causes, and a
    gap_unexplained finding for every uncovered interval no annotation or device
    event explains. Exit 1 when there are such findings."""
    from custodes.tasks import coverage_check

    # the recording checklist (Art. 7) for these tasks; recordings outside every task only for all of them
    check = coverage_check(archive, task_ids)
    covs, checklist, findings = check.tasks, check.checklist, check.findings
    if out.json:
        _write_json(check.to_json())
    else:
        for c in covs:
            click.echo(
                f"{c.task.id} ({c.task.type}): {100 * c.covered / c.window:.1f}% covered, "
                f"{100 * c.two_device / c.window:.1f}% by two devices; devices {', '.join(c.devices) or 'none'}"
            )
            for e in c.explained:  # beside each explained gap, what explained it (custodes.tasks.Explanations)
                by = (
                    f"{e['event']} at {e['time']}"
                    if e["source"] == "device_event"
                    else f"annotation {e.get('annotation')}, ledger entry {e.get('ledger_index')}"
                )
                # The note on this one line, escaped: a note may hold line breaks (a hostile review wrote one that
                # printed as a line of its own, "case CASE-1: released").
                note = shown_name(e["note"]) if e.get("note") else ""
                click.echo(f"  explained {e['start']} .. {e['end']}: {e['cause']} ({by}) {note}".rstrip())
            for f in c.findings:
                click.echo(f"  {_finding_line(f)}")
        for f in checklist:
            click.echo(_finding_line(f))
    sys.exit(EXIT_FINDINGS if findings else 0)


@main.group("device")
def device_group() -> None:
    """The device registry (Art. 6), who holds which device when (Art. 9, 25), and pre-use checks (Art. 10)."""


@device_group.command("check")
@archive_argument
@click.argument("device", type=TEXT_LINE)
@click.option("--by", "officer", type=TEXT_LINE, required=True, help="The officer who checked the device.")
@click.option("--at", "at", type=TEXT_LINE, default=None, help="When, RFC 3339 with offset (default: now).")
@click.option(
    "--clock-offset",
    type=FiniteFloat(-(2.0**33), seconds_per_unit=1),
    default=None,
    help="Device clock minus the station clock, seconds, as found before the clock was set.",
)
@click.option("--battery", type=click.IntRange(0, 100), default=None, help="Battery, whole percent.")
@click.option("--free-bytes", type=CatalogInt(0), default=None, help="Free storage, bytes.")
@click.option("--fault", "faults", type=TEXT_LINE, multiple=True, help="A fault flag the check raised (repeatable).")
@click.option("--note", type=TEXT, default="", help="What else was noted, in words.")
@output_options()
def device_check_command(
    archive: Archive,
    device: str,
    officer: str,
    at: str | None,
    clock_offset: float | None,
    battery: int | None,
    free_bytes: int | None,
    faults: tuple[str, ...],
    note: str,
    out: Output,
) -> None:
    """Record a pre-use check done by hand (Art. 10): the officer checked DEVICE
    before recording and set its clock. A ledger entry, signed by the next
    checkpoint. Recordings of a device with no check since its last docking are
    no_preuse_check; a check that found the clock off by more than the policy's
    clock_tolerance_seconds makes them clock_not_set_before_use (see `custodes
    report`)."""
    import time

    from custodes.drivers import DeviceCheck
    from custodes.preuse import record_check
    from custodes.tasks import parse_time

    when = time.time_ns() if at is None else parse_time(at, "--at")
    offset = None if clock_offset is None else ns_from_seconds(clock_offset, "--clock-offset")
    index = record_check(archive, device, officer, DeviceCheck(when, offset, battery, free_bytes, faults), note)
    if out.json:
        _write_json({"device": device, "time": rfc3339(when), "ledger_index": index})
    else:
        out.say(f"check of {device} at {rfc3339(when)} recorded (ledger entry {index})")


def _device_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The registry's fields of a device, for device add and update (update changes only those given)."""
    for name, what in reversed(
        (
            ("kind", "body_camera, handheld_terminal, recorder, camera, cctv or drone."),
            ("vendor", "Who made it."),
            ("model", "Its model."),
            ("serial", "Its serial number."),
            ("unit", "The unit it is issued to."),
            ("status", "in_service, in_repair, lost or retired."),
            ("since", "When the status began, RFC 3339 with offset (default: now)."),
        )
    ):
        fn = click.option(f"--{name}", type=TEXT_LINE, default=None, help=what)(fn)
    return fn


def _say_changes(out: Output, result: dict[str, list[str]]) -> None:
    if out.json:
        _write_json(result)
    else:
        out.say(", ".join(f"{len(v)} {k}" for k, v in result.items()))


@device_group.command("add")
@archive_argument
@click.argument("device", type=TEXT_LINE)
@_device_options
@output_options(quiet_help="Print nothing on success (--json still prints what changed).")
def device_add_command(archive: Archive, device: str, out: Output, **fields: str | None) -> None:
    """Register a device: its kind (required), vendor, model, serial, unit and
    status. A ledger entry; refused when the device is registered already."""
    from custodes.devices import parse_devices, register_devices

    d = parse_devices([{"id": device, **fields}], "device add")[0]
    _say_changes(out, register_devices(archive, [d], new=True))


@device_group.command("update")
@archive_argument
@click.argument("device", type=TEXT_LINE)
@_device_options
@output_options(quiet_help="Print nothing on success (--json still prints what changed).")
def device_update_command(archive: Archive, device: str, out: Output, **fields: str | None) -> None:
    """Change a registered device's fields (only those given): a ledger entry,
    none when nothing changes. A new --status begins at --since (default now)."""
    from custodes.devices import update_device
    from custodes.tasks import parse_time

    since = fields.pop("since")
    when = None if since is None else parse_time(since, "--since")
    _say_changes(out, update_device(archive, device, since=when, **fields))


@device_group.command("retire")
@archive_argument
@click.argument("device", type=TEXT_LINE)
@click.option("--at", type=TEXT_LINE, default=None, help="When it left service, RFC 3339 with offset (default now).")
@output_options(quiet_help="Print nothing on success (--json still prints what changed).")
def device_retire_command(archive: Archive, device: str, at: str | None, out: Output) -> None:
    """Retire a registered device from --at on: footage it records after that
    is a retired_device finding. A ledger entry."""
    from custodes.devices import set_status
    from custodes.tasks import parse_time

    _say_changes(out, set_status(archive, device, "retired", None if at is None else parse_time(at, "--at")))


@device_group.command("list")
@archive_argument
@output_options()
def device_list_command(archive: Archive, out: Output) -> None:
    """List the registered devices: id, kind, unit, status and since when."""
    from custodes.devices import registered

    devices = registered(archive)
    if out.json:
        _write_json({"devices": [d.to_json() for d in devices]})
    for d in [] if out.json else devices:
        click.echo(f"{d.id}\t{d.kind}\t{d.unit or '-'}\t{d.status} since {rfc3339(d.since)}")


@device_group.command("show")
@archive_argument
@click.argument("device", type=TEXT_LINE)
@output_options()
def device_show_command(archive: Archive, device: str, out: Output) -> None:
    """Show a registered device: its fields, status history and assignments."""
    from custodes.devices import show_device

    shown = show_device(archive, device)
    if out.json:
        _write_json(shown)
        return
    for key in ("id", "kind", "vendor", "model", "serial", "unit", "status", "since"):
        click.echo(f"{key}: {shown[key]}")
    for st in shown["statuses"]:
        click.echo(f"status {st['status']} since {st['since']}")
    for a in shown["assignments"]:
        click.echo(f"assigned to {a['officer']} from {a['from']} to {a['to'] or '(open)'}")
    for c in shown["corrections"]:
        click.echo(
            f"corrected: from {c['start']} {c['officer']} replaces {c['replaced']} (by {c['by']} at {c['at']}, "
            f"{c['recordings_before']} recordings ingested before)"
        )


@device_group.command("import")
@archive_argument
@click.argument("file", type=ClientInput(path_type=str, exists=True, dir_okay=False))
@output_options(quiet_help="Print nothing on success (no line counting the devices; --json still prints them).")
def device_import_command(archive: Archive, file: str, out: Output) -> None:
    """Import devices from CSV (id,kind,vendor,model,serial,unit,status,since)
    or JSON (a list of objects with those keys). All or nothing: a bad row
    imports nothing and is named. Each new or changed device is a ledger entry."""
    from custodes.devices import load_devices, register_devices

    _say_changes(out, register_devices(archive, load_devices(file)))


@device_group.command("assign")
@archive_argument
@click.argument("device", type=TEXT_LINE)
@click.option("--officer", type=TEXT_LINE, required=True, help="The officer who holds the device.")
@click.option("--from", "start", type=TEXT_LINE, required=True, help="From when, RFC 3339 with offset.")
@click.option("--to", "end", type=TEXT_LINE, default=None, help="Until when (default: still holds it).")
@click.option(
    "--replace",
    is_flag=True,
    help="Correct the assignment recorded from --from to another officer (ledgered naming whom it replaces).",
)
@output_options(quiet_help="Print nothing on success (--json still prints what changed).")
def device_assign_command(
    archive: Archive, device: str, officer: str, start: str, end: str | None, replace: bool, out: Output
) -> None:
    """Record that an officer holds a registered device from --from (to --to).
    A ledger entry; refused when it overlaps another assignment of the device,
    starts before its registration or while it is lost or retired, or names
    another officer than the assignment recorded from --from: that is a
    correction, made with --replace and listed by `device show`."""
    from custodes.devices import assign_devices, parse_assignments

    record = {"device": device, "officer": officer, "from": start, "to": end}
    _say_changes(out, assign_devices(archive, parse_assignments([record], "device assign"), replace=replace))


@device_group.command("assign-import")
@archive_argument
@click.argument("file", type=ClientInput(path_type=str, exists=True, dir_okay=False))
@output_options(quiet_help="Print nothing on success (--json still prints what changed).")
def device_assign_import_command(archive: Archive, file: str, out: Output) -> None:
    """Import assignments from CSV (device,officer,from,to; an empty to: still
    held) or JSON. All or nothing: bad rows (an unknown column, an unknown
    device, one refused as `device assign` refuses it) and overlapping
    assignments of one device are named with their row and nothing is
    imported. Each new or changed one is a ledger entry; the same file again
    changes nothing."""
    from custodes.devices import import_assignments

    _say_changes(out, import_assignments(archive, file))


@main.group("gap")
def gap_group() -> None:
    """Explanations of recording gaps (Art. 14) and exemptions (Art. 8)."""


@gap_group.command("explain")
@archive_argument
@click.option("--device", type=TEXT_LINE, required=True, help="Device whose recording stopped.")
@click.option("--from", "start", type=TEXT_LINE, required=True, help="Start of the gap, RFC 3339 with offset.")
@click.option("--to", "end", type=TEXT_LINE, required=True, help="End of the gap, RFC 3339 with offset.")
@click.option(
    "--cause",
    type=TEXT_LINE,
    required=True,
    help="device_fault, damage, weather, battery, storage_full, location_change, "
    "secret, work_secret, emergency, impossible (the Art. 8 exemptions) or other.",
)
@click.option("--note", type=TEXT, default="", help="What was said or decided, in words.")
@click.option(
    "--segment", type=CatalogInt(1), default=None, help="Segment where the officer states the reason on resuming."
)
@click.option("--offset", type=SECONDS, default=None, help="Seconds into that segment where it is said.")
@output_options()
def gap_explain_command(
    archive: Archive,
    device: str,
    start: str,
    end: str,
    cause: str,
    note: str,
    segment: int | None,
    offset: float | None,
    out: Output,
) -> None:
    """Record why a device did not record from --from to --to. The annotation
    is a ledger entry, signed by the next checkpoint, with the operating-system
    user as its author."""
    from custodes.tasks import annotation_json, explain_gap, parse_time

    annotation = explain_gap(
        archive,
        device,
        parse_time(start, "--from"),
        parse_time(end, "--to"),
        cause,
        note,
        segment,
        None if offset is None else ns_from_seconds(offset, "--offset"),
    )
    if out.json:
        _write_json(annotation_json(annotation))
    else:
        click.echo(f"annotation {annotation} recorded")


@main.group("access")
def access_group() -> None:
    """Access to recordings (Art. 22, 24): request, approve or deny, open; every step logged."""


@access_group.command("request")
@archive_argument
@click.option(
    "--segment", "segments", type=CatalogInt(), multiple=True, required=True, help="Recording to see (repeatable)."
)
@click.option("--reason", type=TEXT_LINE, required=True, help="Why (logged with the viewer and the time).")
@click.option(
    "--purpose",
    type=click.Choice(["view", "export", "purge"]),
    default="view",
    show_default=True,
    help="What the access is for: view it, export it, or purge it at the end of retention.",
)
@output_options()
def access_request_command(archive: Archive, segments: tuple[int, ...], reason: str, purpose: str, out: Output) -> None:
    """Ask to view, export or purge recordings. The requester is the operating-system user."""
    from custodes.access import request_access

    req = request_access(archive, list(segments), reason, purpose)
    _write_json(req.to_json()) if out.json else click.echo(f"request {req.id} pending ({req.purpose}: {req.reason})")


@access_group.command("approve")
@archive_argument
@click.argument("request", type=CatalogInt())
@click.option(
    "--hours",
    type=HOURS,
    default=None,
    help="Length of the approved window (policy default 72; at most [access] max_window_hours, default 720).",
)
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints the request).")
def access_approve_command(archive: Archive, request: int, hours: float | None, out: Output) -> None:
    """Approve a request (approvers only, never one's own) for a window of time."""
    from custodes.access import approve

    req = approve(archive, request, hours)
    _write_json(req.to_json()) if out.json else out.say(f"request {req.id} approved until {rfc3339(req.valid_until)}")


@access_group.command("deny")
@archive_argument
@click.argument("request", type=CatalogInt())
@click.option("--reason", type=TEXT_LINE, required=True, help="Why the request is denied (logged and ledgered).")
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def access_deny_command(archive: Archive, request: int, reason: str, out: Output) -> None:
    """Deny a request (approvers only); the reason is logged."""
    from custodes.access import deny

    req = deny(archive, request, reason)
    _write_json(req.to_json()) if out.json else out.say(f"request {req.id} denied")


@access_group.command("open")
@archive_argument
@click.argument("request", type=CatalogInt())
@click.option(
    "--segment", type=CatalogInt(), required=True, help="Recording to open (within an approved request of yours)."
)
@click.option(
    "--to",
    "to_dir",
    type=ClientOutput(path_type=str, file_okay=False, served_default="."),
    default=None,
    help="Copy the recording here (read-only) instead of printing the stored object's path "
    "(through the archive service, whose objects only it can read: the current folder by default).",
)
@output_options(quiet_help="Accepted for compatibility: the path opened is the output.")
def access_open_command(archive: Archive, request: int, segment: int, to_dir: str | None, out: Output) -> None:
    """Open one recording under an approved, unexpired view request. Refused
    (and logged) without approval, after expiry, outside the request, or for a
    classified recording without a role that may see it."""
    from custodes.access import UNSIGNED_GRANT, open_recording
    from custodes.service import request as served

    serving = served()
    if to_dir is None and serving is not None:  # only the service reads its objects: it sends a copy
        to_dir = serving.stage_output(".", "to_dir")
    path = shown_path(open_recording(archive, request, segment, to_dir))
    unsigned = archive.unsigned  # the copy is made and its grant recorded: said, not an error
    said = {"request": request, "segment": segment, "path": path}
    _write_json({**said, "recorded_unsigned": str(unsigned)} if unsigned else said) if out.json else click.echo(path)
    if unsigned is not None:
        click.echo(f"custodes: note: {UNSIGNED_GRANT}: {unsigned}", err=True)


@access_group.command("classify")
@archive_argument
@click.option("--segment", type=CatalogInt(), required=True, help="Recording to classify.")
@click.option("--level", type=CatalogInt(0), required=True, help="0 = not classified; 1 and up = classified (Art. 24).")
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def access_classify_command(archive: Archive, segment: int, level: int, out: Output) -> None:
    """Set a recording's classification level (custodians and approvers)."""
    from custodes.access import classify

    classify(archive, segment, level)
    _write_json({"segment": segment, "level": level}) if out.json else out.say(f"segment {segment}: level {level}")


@main.group("retention")
def retention_group() -> None:
    """Retention and holds (Art. 19, 20): status, hold, release, due, purge."""


@retention_group.command("status")
@archive_argument
@click.option(
    "--segment", "segments", type=CatalogInt(), multiple=True, help="Recordings to show (repeatable; default all)."
)
@click.option("--at", type=TEXT_LINE, default=None, help="Whether due as of this RFC 3339 time (default now).")
@output_options()
def retention_status_command(archive: Archive, segments: tuple[int, ...], at: str | None, out: Output) -> None:
    """How long each recording is kept and why, its holds, and whether it is due."""
    from custodes.retention import status
    from custodes.tasks import parse_time

    when = None if at is None else parse_time(at, "--at")
    rows = status(archive, list(segments) or None)
    if out.json:
        _write_json({"segments": [r.to_json(when) for r in rows]})
    else:
        for r in rows:
            click.echo(
                f"{r.segment} {r.name}: keep until {rfc3339(r.keep_until) or 'for ever'}"
                f" ({'; '.join(r.reasons)}){' HELD' if r.holds else ''}{' PURGED' if r.purged else ''}"
            )


@retention_group.command("hold")
@archive_argument
@click.option("--segment", type=CatalogInt(), required=True, help="Recording to hold.")
@click.option(
    "--reason", type=TEXT_LINE, required=True, help="Why (a case, a complaint, a court order); ledgered with the hold."
)
@output_options(quiet_help="Accepted for compatibility: the new hold's id is the output.")
def retention_hold_command(archive: Archive, segment: int, reason: str, out: Output) -> None:
    """Place a legal hold on a recording; nothing purges it until released."""
    from custodes.retention import hold, hold_json

    hold_id = hold(archive, segment, reason)
    _write_json(hold_json(hold_id, segment)) if out.json else click.echo(f"hold {hold_id} on segment {segment}")


@retention_group.command("release")
@archive_argument
@click.option(
    "--hold", "hold_id", type=CatalogInt(), required=True, help="Hold id to release (see `retention status`)."
)
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def retention_release_command(archive: Archive, hold_id: int, out: Output) -> None:
    """Release a legal hold (approvers only); the release is a ledger entry."""
    from custodes.retention import release, release_json

    release(archive, hold_id)
    _write_json(release_json(hold_id)) if out.json else out.say(f"hold {hold_id} released")


@retention_group.command("long-term")
@archive_argument
@click.option("--segment", type=CatalogInt(), required=True, help="Recording to keep long term.")
@click.option(
    "--reason",
    type=click.Choice(["complaint", "obstruction_or_assault", "mass_incident", "other"]),
    required=True,
    help="The Art. 20 reason for keeping it beyond the minimum.",
)
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def retention_long_term_command(archive: Archive, segment: int, reason: str, out: Output) -> None:
    """Keep a recording long-term for an Art. 20 reason: it is never due."""
    from custodes.retention import long_term

    long_term(archive, segment, reason)
    if out.json:
        _write_json({"segment": segment, "long_term": reason})
    else:
        out.say(f"segment {segment}: kept long-term ({reason})")


@retention_group.command("case")
@archive_argument
@click.option(
    "--case",
    "case_id",
    type=TEXT_LINE,
    required=True,
    help="Case id the recordings belong to; an open case keeps them.",
)
@click.option(
    "--segment", "segments", type=CatalogInt(), multiple=True, required=True, help="Recording of the case (repeatable)."
)
@click.option(
    "--until",
    type=TEXT_LINE,
    default=None,
    help="Keep until this RFC 3339 time; without it the case is open (kept for ever).",
)
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def retention_case_command(
    archive: Archive, case_id: str, segments: tuple[int, ...], until: str | None, out: Output
) -> None:
    """Link recordings to a case; they follow the case's retention (Art. 19)."""
    from custodes.retention import link_case
    from custodes.tasks import parse_time

    until_ns = None if until is None else parse_time(until, "--until")
    link_case(archive, case_id, list(segments), until_ns)
    if out.json:
        _write_json({"case": case_id, "segments": sorted(set(segments)), "until": rfc3339(until_ns)})
    else:
        out.say(f"case {case_id}: {len(set(segments))} recording(s)")  # a segment named twice is one recording


@retention_group.command("due")
@archive_argument
@click.option("--at", type=TEXT_LINE, default=None, help="As of this RFC 3339 time (default now).")
@output_options()
def retention_due_command(archive: Archive, at: str | None, out: Output) -> None:
    """Recordings whose retention has run out and that no hold keeps."""
    from custodes.retention import due
    from custodes.tasks import parse_time

    when = None if at is None else parse_time(at, "--at")
    rows = due(archive, when)
    if out.json:
        _write_json({"due": [r.to_json(when) for r in rows]})
    else:
        for r in rows:
            click.echo(f"{r.segment} {r.name}: due since {rfc3339(r.keep_until)}")


@retention_group.command("purge")
@archive_argument
@click.option("--request", type=CatalogInt(), default=None, help="An approved access request with purpose purge.")
@click.option(
    "--resume",
    is_flag=True,
    help="Only finish purges that were interrupted after their tombstone (custodians and approvers); no request.",
)
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def retention_purge_command(archive: Archive, request: int | None, resume: bool, out: Output) -> None:
    """Purge the recordings of an approved purge request. Refused for anything
    held, kept long-term or not yet due; a tombstone goes to the ledger first,
    then the bytes go and that is ledgered too. Every run also finishes any
    purge that was interrupted between the two (verify: purge_incomplete)."""
    from custodes.errors import CustodesError
    from custodes.retention import purge, resume_purge

    if (request is not None) == resume:
        raise CustodesError("give either --request ID (a purge) or --resume (finish interrupted purges)")
    result = resume_purge(archive) if request is None else purge(archive, request)
    if out.json:
        _write_json(result.to_json())
        return
    if result.purged:
        out.say(f"purged segment(s) {result.purged}; tombstones and removals are in the ledger")
    if result.finished:
        out.say(f"finished the interrupted purge of segment(s) {result.finished}: their bytes are gone now")
    if result.already:
        out.say(f"segment(s) {result.already} were purged already")
    if resume and not result.finished:
        out.say("no interrupted purge to finish")


@main.command("export")
@archive_argument
@click.option("--case", "case_id", type=TEXT_LINE, required=True, help="The case whose recordings to export.")
@click.option(
    "--request", type=CatalogInt(), required=True, help="An approved export request naming every recording of the case."
)
@click.option(
    "--to",
    "to_dir",
    required=True,
    type=ClientOutput(path_type=str, preflight=_new_bag_folder),
    help="New folder for the BagIt bag.",
)
@click.option(
    "--iso",
    "iso",
    type=ClientOutput(path_type=str, dir_okay=False, preflight=_new_disc_image),
    default=None,
    help="Also write a disc image.",
)
@click.option(
    "--description",
    type=TEXT_LINE,
    default="",
    help="Written note on what is exported and why (one line: it becomes bag-info.txt's External-Description).",
)
@output_options(quiet_help="Print nothing on success (no line naming the bag and disc image; --json still prints).")
def export_command(
    archive: Archive, case_id: str, request: int, to_dir: str, iso: str | None, description: str, out: Output
) -> None:
    """Export a case's recordings as a BagIt 1.0 bag with custody proofs (Art. 21):
    copies under data/, manifest-sha256.txt (and manifest-sm3.txt when the
    policy records SM3), bag-info.txt with producer, extractor, extraction
    time and case, custody/ with ledger entries, inclusion proofs, the signed
    checkpoint and the verifier key; --iso also writes a disc image. The
    export entry is written only once the staged bag is whole and valid; a
    failure is ledgered as export_failed and leaves no bag (exit 2)."""
    from custodes.export import check_iso_target, export_case, write_iso

    # Both targets are checked before anything is exported (or logged).
    iso_path = None if iso is None else check_iso_target(archive, iso, to_dir)
    bag = export_case(archive, case_id, request, to_dir, description)
    if iso_path is not None:
        write_iso(bag, iso_path, case_id)
    bag_shown, iso_shown = shown_path(bag), None if iso is None else shown_path(iso)
    result = {"bag": bag_shown, "iso": iso_shown}
    _write_json(result) if out.json else out.say(f"bag {bag_shown}" + (f", disc image {iso_shown}" if iso else ""))


@main.group("bag")
def bag_group() -> None:
    """BagIt bags: validate any bag, and the custody proofs custodes puts in its own."""


@bag_group.command("validate")
@click.argument("bag", type=click.Path(path_type=str, exists=True, file_okay=False))
@trust_options(witness=False)
@output_options(quiet_help="No closing summary line; each problem is still listed (the exit code says valid or not).")
def bag_validate_command(bag: str, trusted_key: str | None, out: Output) -> None:
    """Validate a BagIt bag (v0.97 or 1.0) offline: every payload file against
    every manifest, Payload-Oxum, tag manifests, and, when the bag has a
    custody/ folder, each ledger entry's inclusion proof against the signed
    checkpoint (with --trusted-key, signed by that key or a rotation it made),
    and that data/ holds exactly the recordings the export entry lists, each
    with its ingest entry's digest. A symbolic link anywhere in the bag is a
    problem. Exit 0 valid, 1 not."""
    from custodes.bags import BagError, validate_bag

    trusted = _trusted(trusted_key)
    try:
        report = validate_bag(bag, trusted)
    except BagError as e:
        raise click.UsageError(str(e)) from e
    if out.json:
        _write_json(report.to_json())
    else:
        _say_trust(out, report.trust)
        for p in report.problems:
            click.echo(f"invalid: {p}")
        out.say(
            f"{bag}: {'valid' if report.valid else 'INVALID'} (BagIt {report.version}, {report.files} files, "
            f"{report.custody_checked} custody entries proven)"
        )
    sys.exit(0 if report.valid else EXIT_FINDINGS)


def _check_scope(scope: str) -> str:
    """--scope is checked as it is parsed, before the archive is opened."""
    from custodes.reports import scope_problem

    kind, _, value = scope.partition("=")
    if scope_problem(kind, value) is not None:
        raise click.BadParameter(
            f"{scope!r}: use archive, or one of unit=, officer=, device=, case= with an id", param_hint="--scope"
        )
    return scope


@main.command("report")
@archive_argument
@click.option(
    "--format",
    "fmt",
    type=TEXT_LINE,
    default="json",
    show_default=True,
    help="A reporter: json, csv, html, pdf (see `custodes plugins`).",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=ClientOutput(path_type=str, dir_okay=False, replaces=True),
    help="File to write.",
)
@click.option("--from", "start", type=TEXT_LINE, default=None, help="Period start (RFC 3339).")
@click.option("--to", "end", type=TEXT_LINE, default=None, help="Period end (RFC 3339), exclusive.")
@click.option(
    "--scope",
    type=TEXT_LINE,
    default="archive",
    show_default=True,
    callback=lambda ctx, param, scope: _check_scope(scope),
    help="archive, or unit=ID, officer=ID, device=ID, case=ID.",
)
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None, help="Labels (default: the policy's, else zh).")
@click.option(
    "--verify/--no-verify", "full_verify", default=False, help="Re-hash every object for the integrity section."
)
@incremental_option
@click.option(
    "--at",
    type=TEXT_LINE,
    default=None,
    help="The moment the report speaks for (RFC 3339; default now): what is due for purge then.",
)
@output_options(quiet_help="Print nothing on success (no confirmation line; --json still prints its object).")
def report_command(
    archive: Archive,
    fmt: str,
    out_path: str,
    start: str | None,
    end: str | None,
    scope: str,
    lang: str | None,
    full_verify: bool,
    incremental: bool,
    at: str | None,
    out: Output,
) -> None:
    """Write a compliance report for a period and scope (Art. 25): integrity,
    completeness, clocks, timeliness, retention, access, and the Art. 25
    concerns with the segments and ledger entries behind each. JSON is the
    complete model; CSV one row per finding (UTF-8 with BOM); HTML a
    self-contained page with SVG timelines; PDF the same page. Exit 1 when
    the integrity check found something wrong (the report is written all the
    same), else 0 whatever else the report holds."""
    import errno

    from custodes.plugins import UnknownPluginError, plugin_manager
    from custodes.reports import build_report, default_lang
    from custodes.tasks import parse_time

    kind, _, value = scope.partition("=")  # checked by _check_scope
    try:
        reporter = plugin_manager().reporters.get(fmt)
    except UnknownPluginError as e:
        raise click.UsageError(str(e)) from e
    from custodes.archive import refuse_inside_archive

    refuse_inside_archive(archive, out_path, "--out")  # a report must never land on the catalog, an object or the key
    period_start = None if start is None else parse_time(start, "--from")
    period_end = None if end is None else parse_time(end, "--to")
    if period_start is not None and period_end is not None and period_start >= period_end:
        raise click.UsageError(f"--from {start} is not before --to {end}: the period would be empty")
    model = build_report(
        archive,
        start=period_start,
        end=period_end,
        scope=kind,
        value=value or None,
        full_verify=full_verify,
        incremental=incremental,
        lang=lang or default_lang(archive),
        at=None if at is None else parse_time(at, "--at"),
    )
    import contextlib
    import stat

    # Rendered beside --out into a new file of its own and renamed over it whole: a failure never leaves half a
    # report. The temp's name is random and it is made with O_EXCL|O_NOFOLLOW (a hostile review: a link planted
    # at a predictable temp name was written through, to any file the caller could write); --out itself is
    # replaced only where it is a regular file (a device or a FIFO there, /dev/null once, was replaced by one).
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(out_path).st_mode):
            raise click.UsageError(
                f"--out {shown_path(out_path)}: not a regular file (a link, a folder, a device or a FIFO): name a file"
            )
    temp = os.path.join(os.path.dirname(out_path) or ".", f".custodes-report-{os.urandom(8).hex()}.part")
    made = False
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        made = True
        with os.fdopen(fd, "wb") as f:
            reporter.render(model, f)
        os.replace(temp, out_path)
        made = False
    except OSError as e:  # a missing folder, a full disk: an environment error, one line (exit 2)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            # The disk it is made on: beside --out, or, through the archive service, the archive's own (its
            # outbox: a report to a folder with room failed "give --out a file in a folder you can write").
            raise CustodesError(
                f"cannot write the report ({shown_path(out_path)}): the disk it is made on is full "
                f"({os.path.dirname(os.path.abspath(temp))}): free space on it, then run the command again"
            ) from e
        raise CustodesError(
            f"cannot write the report ({shown_path(out_path)}): {e.strerror}; give --out a file in a folder you "
            "can write"
        ) from e
    finally:
        if made:
            os.unlink(temp)
    # The report is written whatever it found (it is the record of what is wrong); but a report whose integrity
    # check failed exits 1, as verify does on the same findings: a scheduled `report --verify` must not pass
    # silently over a modified object or an edited catalog. Its other findings (gaps, late ingests, clocks)
    # are what the report is for, and leave the exit at 0.
    integrity = model.get("integrity")
    broken = integrity is not None and integrity["ok"] is not True
    if out.json:
        _write_json(
            {
                "format": fmt,
                "out": shown_path(os.path.abspath(out_path)),
                "findings": len(model["findings"]),
                "integrity_ok": None if integrity is None else not broken,
            }
        )
    else:
        out.say(f"{fmt} report written to {shown_path(out_path)}")
    if integrity is not None and broken:
        _print_stderr(
            f"integrity: {integrity['findings']} finding(s) of the archive's verification (the report's integrity "
            "section; `custodes verify` names each)"
        )
        sys.exit(EXIT_FINDINGS)
