"""The archive on disk: policy, catalog, write-once store, ledger, keys.

ARCHIVE/
  custodes.toml          policy (retention, ingest deadline, tolerances, algorithms, device zone, key path, people);
                         in force only as the ledger's latest policy entry says it (custodes.policy)
  catalog.sqlite         catalog + ledger table (WAL, synchronous=FULL, versioned schema)
  objects/sha256/ab/cd/  write-once content-addressed objects (storage plugin "local")
  tmp/                   copies in flight; a crash leaves files here, cleaned on the next run
  tmp/outbox/            the archive service's per-request outboxes (custodes.service)
  exports/<n>/           bags exported through the web page, kept for their requester to download, named by
                         the export's ledger entry (custodes.web.streaming)
  ledger/checkpoint      the latest signed checkpoint; ledger/checkpoints/<size> every one
  keys/checkpoint.vkey   the public verifier key (travels with the archive); the first key, where trust starts
  private/checkpoint.key the signing key (policy may put it elsewhere; never in the object store)
  private/checkpoint.key.<key id>  keys rotated in since, each named by a key_rotation entry (custodes.keys)
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import stat
import struct
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from custodes import _core, keys, merkle
from custodes import ledger as ledger_mod
from custodes._durable import (
    disk_full,
    disk_full_line,
    file_kind,
    fsync_dir,
    key_exposure,
    problems_above,
    process_tag,
    read_small,
    replace_file,
    sweep_dead_temps,
    write_once,
)
from custodes._faults import write_cut_short
from custodes.catalog import SCHEMA_VERSION, Catalog, codes
from custodes.defaults import TimeRangeError, ns_from_seconds
from custodes.errors import CustodesError, EvidenceReadError
from custodes.plugins import plugin_manager

if TYPE_CHECKING:
    from custodes.records import Device, DeviceEvent, RecordedFinding, Segment
    from custodes.storage import ObjectStore

__all__ = ["Archive", "ArchiveError", "Policy", "SCHEMA_VERSION", "init_archive", "open_archive"]

POLICY_FILE = "custodes.toml"
CATALOG_FILE = "catalog.sqlite"


class ArchiveError(CustodesError):
    """An archive that cannot be created or opened as asked."""

    kind = "archive"


@dataclass(frozen=True)
class Policy:
    """An archive's policy (``custodes.toml``): what the ledger holds in force is ``Archive.policy``."""

    archive_id: str
    origin: str
    ingest_deadline_hours: float = 24.0
    readback: str = (
        "storage"  # "storage": drop cached pages and read the copy from the disk; "cache": trust the page cache
    )
    retention_days: float = 730
    gap_tolerance_seconds: float = 1.0
    clock_tolerance_seconds: float = 2.0
    algorithms: tuple[str, ...] = ("sha256", "blake3")
    device_time_zone: str | None = None
    #: The [time_zones] table: device model (DeviceIdentity.model) = the zone that model writes local times in;
    #: above [devices] time_zone, below what a device states and the user's tz (custodes.drivers.device_zone).
    model_time_zones: dict[str, str] = field(default_factory=dict)
    signing_key: str = "private/checkpoint.key"
    storage: str = "local"
    #: The [storage] table's other keys, for the backend to read and check (bucket, endpoint, prefix...).
    storage_options: dict[str, str] = field(default_factory=dict)
    #: The [replica] table: a second copy of every object (``backend`` and its options; None: one copy).
    replica: dict[str, str] | None = None
    verification_window_days: float = 30.0
    #: [devices] preuse_check_required: every device's recordings need a pre-use check (Art. 10), not only the
    #: recordings of devices that have ever had one (custodes.preuse).
    preuse_check_required: bool = False
    #: [recording] required_task_types: the recording checklist (Art. 7), task types that must be recorded.
    required_task_types: tuple[str, ...] = ()
    #: [recording] enforcement_context: recordings in no task window and no exemption are listed (Art. 5).
    enforcement_context: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ArchiveError(f"{path}: cannot read the policy: {e}") from e
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: Path | str) -> Policy:
        """The policy ``text`` says, by the one loader: a file, a file given to `policy set`, or the text of the
        ledger's policy entry (``path`` then names where it came from in every error)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ArchiveError(f"{path}: cannot read the policy: {e}") from e
        try:
            return cls._from(Path(path), data)
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise ArchiveError(f"{path}: policy value missing or of the wrong type: {e}") from e

    @classmethod
    def _from(cls, path: Path, data: dict[str, Any]) -> Policy:
        tables = ("archive", "ingest", "retention", "timeline", "hashing", "devices", "keys", "storage", "verification")
        for table in (*tables, "replica", "time_zones", "recording"):
            if not isinstance(data.get(table, {}), dict):
                raise ArchiveError(f"{path}: [{table}] must be a table")
        a, i, r, t, h, d, k, s, v = (data.get(x, {}) for x in tables)
        algorithms = _algorithms(path, h.get("algorithms", ["sha256", "blake3"]))
        _access(path, data)
        _report(path, data.get("report", {}))
        if "id" not in a:
            raise ArchiveError(f"{path}: [archive] id: policy value missing; restore custodes.toml from a backup")
        _known_keys(path, data)  # after the one required key: a renamed id is said to be missing
        archive_id = _name(path, "id", a["id"])
        return cls(
            archive_id=archive_id,
            origin=_name(path, "origin", a.get("origin", f"custodes.local/{archive_id}")),
            ingest_deadline_hours=_duration(path, "ingest", "deadline_hours", i.get("deadline_hours", 24), 3600),
            readback=_readback(path, i.get("readback", "storage")),
            # As given, fractions of a day too: int() here made 0.5 days a retention of none.
            retention_days=_duration(path, "retention", "minimum_days", r.get("minimum_days", 730), 86400),
            gap_tolerance_seconds=_duration(
                path, "timeline", "gap_tolerance_seconds", t.get("gap_tolerance_seconds", 1.0)
            ),
            clock_tolerance_seconds=_duration(
                path, "timeline", "clock_tolerance_seconds", t.get("clock_tolerance_seconds", 2.0)
            ),
            algorithms=algorithms,
            device_time_zone=_time_zone(path, d.get("time_zone")),
            model_time_zones=_model_time_zones(path, data.get("time_zones", {})),
            signing_key=_key_path(path, k.get("signing_key", DEFAULT_SIGNING_KEY)),
            storage=_backend(path, s.get("backend", "local")),
            storage_options=_storage_options(path, s),
            replica=_replica(path, data.get("replica")),
            verification_window_days=_duration(path, "verification", "window_days", v.get("window_days", 30), 86400),
            preuse_check_required=_flag(path, "devices", "preuse_check_required", d.get("preuse_check_required")),
            required_task_types=_task_types(path, data.get("recording", {}).get("required_task_types", [])),
            enforcement_context=_flag(
                path, "recording", "enforcement_context", data.get("recording", {}).get("enforcement_context")
            ),
            extra=data,
        )


# Every policy value is checked when the policy is loaded, so a typo stops the command that reads it with the
# file, the key and the allowed values, instead of a crash deep inside an ingest.

#: Every table and key the policy may hold ([people] and [identity] map names of the agency's own choosing).
POLICY_KEYS: dict[str, tuple[str, ...] | None] = {
    "archive": ("id", "origin"),
    "ingest": ("deadline_hours", "readback"),
    "retention": ("minimum_days",),
    "timeline": ("gap_tolerance_seconds", "clock_tolerance_seconds"),
    "hashing": ("algorithms",),
    "devices": ("time_zone", "preuse_check_required"),
    "recording": ("required_task_types", "enforcement_context"),
    "time_zones": None,  # device model = zone, models of the agency's own devices
    "keys": ("signing_key",),
    "storage": None,  # backend, and the backend's own options (custodes.storage; checked when it opens)
    "replica": None,  # the same for the second copy
    "verification": ("window_days",),
    "access": (
        "window_hours",
        "classified_roles",
        "max_window_hours",
        "refusals_per_window",
        "refusal_window_seconds",
    ),
    "report": ("lang",),
    "people": None,
    "identity": None,
}


def _known_keys(path: Path, data: dict[str, Any]) -> None:
    """A misspelt table or key (``[retension]``, ``minimum_dayz``) would silently fall back to its default,
    730 days of retention instead of the ten years asked for: refused, naming what is allowed."""
    for table, value in data.items():
        if table not in POLICY_KEYS:
            raise ArchiveError(f"{path}: [{table}] is not a policy table; allowed: {', '.join(POLICY_KEYS)}")
        keys = POLICY_KEYS[table]
        if keys is not None and isinstance(value, dict):
            unknown = sorted(set(value) - set(keys))
            if unknown:
                raise ArchiveError(
                    f"{path}: [{table}] {', '.join(unknown)}: not a key of [{table}]; allowed: {', '.join(keys)}"
                )


def _algorithms(path: Path, value: Any) -> tuple[str, ...]:
    known = tuple(_core.algorithms())
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ArchiveError(f'{path}: [hashing] algorithms must be a list of names such as ["sha256", "blake3"]')
    unknown = [x for x in value if x not in known]
    if unknown:
        raise ArchiveError(
            f"{path}: [hashing] algorithms: unknown {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(known)} (sha256 first)"
        )
    if not value or value[0] != "sha256":
        raise ArchiveError(f"{path}: [hashing] algorithms must start with sha256 (objects are addressed by it)")
    twice = sorted({x for x in value if value.count(x) > 1})
    if twice:
        raise ArchiveError(
            f"{path}: [hashing] algorithms names {', '.join(map(repr, twice))} more than once; name each algorithm once"
        )
    return tuple(value)


def _name(path: Path, key: str, value: Any) -> str:
    """[archive] id and origin: the origin is the first line of every signed checkpoint and the key name on its
    signature line (C2SP signed note), so it must be a non-empty, single-line, printable string without spaces
    or "+"; the id makes the default origin, so the same rule applies to it."""
    if (
        not isinstance(value, str)
        or not value
        or not value.isprintable()
        or "+" in value
        or any(ch.isspace() for ch in value)
    ):
        raise ArchiveError(
            f"{path}: [archive] {key} = {value!r} must be a non-empty string of printable characters "
            'without spaces or "+" (it names the archive\'s signed checkpoints); restore it from a backup'
        )
    return value


def _time_zone(path: Path | None, value: Any, where: str = "[devices] time_zone") -> str | None:
    """[devices] time_zone (or a [time_zones] entry): None or a zone this machine knows, an IANA name, UTC or a
    fixed offset such as "+08:00" (custodes.timeline.zone_info; ``path`` None: the init option)."""
    from custodes.timeline import zone_info

    if value is None:
        return None
    where = f"{path}: {where}" if path is not None else "--time-zone"
    if not isinstance(value, str) or not value:
        raise ArchiveError(f'{where} must be an IANA zone name such as "Asia/Shanghai"; not {value!r}')
    try:
        zone_info(value)
    except ValueError:
        raise ArchiveError(
            f'{where} = {value!r} is not a time zone known here; use an IANA name such as "Asia/Shanghai" '
            'or a UTC offset such as "+08:00"'
        ) from None
    return value


def _model_time_zones(path: Path, table: dict[str, Any]) -> dict[str, str]:
    """[time_zones]: device model = zone, each zone checked as [devices] time_zone is."""
    return {str(model): _time_zone(path, zone, f"[time_zones] {model!r}") or "" for model, zone in table.items()}


#: Where init puts the signing key; inside the archive folder a key may live only under this folder.
DEFAULT_SIGNING_KEY = "private/checkpoint.key"


def _key_path(path: Path | None, value: Any) -> str:
    """[keys] signing_key (``path`` None: init's --signing-key): a path, UTF-8 (it is written into the policy),
    never the archive's own files. Inside the archive folder only ``private/`` may hold it; outside, anywhere."""
    where = f"{path}: [keys] signing_key" if path is not None else "--signing-key"
    if not isinstance(value, str) or not value:
        raise ArchiveError(f"{where} must be the path of the Ed25519 key file; not {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(
            f"{where} {os.fsencode(value)!r}: the path is not UTF-8, and custodes.toml holds it as text; "
            "put the key at a path with a UTF-8 name"
        ) from None
    if "\0" in value:
        raise ArchiveError(f"{where} {value!r}: a path cannot hold a NUL byte")
    if value.endswith(("/", "/.", "/..")) or value in (".", ".."):  # (init made a key file named as the folder)
        raise ArchiveError(f"{where} {value!r} names a folder: name the key file (a folder is never the key)")
    if value != value.strip():  # "k.key " made a new key beside k.key, shown alike (a second hostile review)
        raise ArchiveError(f"{where} {value!r} starts or ends with a space: name the key file without")
    return value


def _folded_in_new_folder(value: str) -> str:
    """init's relative --signing-key with each ``name/..`` that lies inside the new archive folder folded away
    (``private/../../keys/k.key`` is ``../keys/k.key``). Nothing is in that folder yet (an archive starts in a new
    or empty folder), so the kernel cannot pass through ``private/..`` before init makes it: a key there already
    was not seen, and init failed making it again with "File exists". From the first ``..`` that leaves the
    archive folder on, the path is left to the kernel as given: a folder out there may be a link."""
    if os.path.isabs(value):
        return value
    parts = value.split("/")
    inside: list[str] = []
    for i, part in enumerate(parts):
        if part == "..":
            if not inside:
                return "/".join(parts[i:])
            inside.pop()
        elif part not in ("", "."):
            inside.append(part)
    return "/".join(inside)


def _key_protected(key: Path, named: str | None = None) -> None:
    """init's --signing-key outside the archive: its folder (and the key, if there already) held to verify's rule
    at once (a hostile review: a new archive was NOT INTACT from its first verify, its key in a folder others
    could write); ``named``: what named the key, where not init's option (a proposed policy's [keys]
    signing_key). A key already in force is held to the same rule each time it signs (keys.signing_key)."""
    exposed = key_exposure(key, os.geteuid())
    if exposed is not None:
        path, _, wrong = exposed
        raise ArchiveError(
            f"{named or f'--signing-key {key}'}: {path}: {'; '.join(wrong)}: another account could replace "
            "or read the signing key; make it yours alone, or name a key in a folder that is"
        )


def _key_place(root: Path, value: str, where: str) -> None:
    """The one rule for where the signing key may live: inside the archive folder only under ``private/``
    (never in the object store, tmp/, the ledger or the catalog, which verify and ingest own); outside it,
    anywhere. ``value`` is absolute or relative to ``root``."""
    key = Path(value) if os.path.isabs(value) else root / value
    try:
        rel = Path(os.path.normpath(key.parent.resolve() / key.name)).relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        rel = None  # outside the archive folder
    try:
        folder = stat.S_ISDIR(os.stat(key).st_mode)
    except OSError:
        # Not there, or private/ shut to this account: a command that signs says so when it loads the key, and
        # verify, `ledger verify` and report never read it (a hostile review: private/ at 0000 stopped all three).
        folder = False
    if folder:
        raise ArchiveError(
            f"{where} {value!r} is a folder ({key}): name the key file, e.g. {os.path.join(value, 'checkpoint.key')}"
        )
    if rel is not None and (len(rel.parts) < 2 or rel.parts[0] != "private"):
        raise ArchiveError(
            f"{where} {value!r} is inside the archive folder ({rel}) but not under private/; the "
            "archive's own files (object store, tmp/, ledger, catalog) must not hold it: keep the key "
            f"under private/ (the default is {DEFAULT_SIGNING_KEY}) or outside the archive"
            + ("" if os.path.isabs(value) else f" (a relative path is taken from the archive folder {root})")
        )


def _access(path: Path, data: dict[str, Any]) -> None:
    """[people], [identity] and [access], read by custodes.access when a custody action runs: checked here,
    so a typo is a clear error at load, never a crash (or a silently missing role) in the middle of an action."""
    from custodes.access import ROLES, UNNAMED

    for table in ("people", "identity", "access"):
        if not isinstance(data.get(table, {}), dict):
            raise ArchiveError(f"{path}: [{table}] must be a table")
    for person, role in data.get("people", {}).items():
        if role not in ROLES:
            raise ArchiveError(f"{path}: [people] {person} = {role!r} is not a role; allowed: {', '.join(ROLES)}")
    named = [("people", p) for p in data.get("people", {})] + [
        ("identity", n) for n in data.get("identity", {}).values()
    ]
    for table, name in named:
        if str(name).startswith(UNNAMED):  # the records' name for an account [identity] took the name of
            raise ArchiveError(
                f"{path}: [{table}] {name!r}: a name starting with {UNNAMED!r} is reserved; choose another"
            )
    access = data.get("access", {})
    _duration(path, "access", "window_hours", access.get("window_hours", 72), 3600)
    # Not checked against window_hours here: an archive whose ledgered policy has a longer default window still
    # opens; approve refuses any window beyond the maximum, naming both.
    _duration(path, "access", "max_window_hours", access.get("max_window_hours", 720), 3600)
    _duration(path, "access", "refusal_window_seconds", access.get("refusal_window_seconds", 3600))
    limit = access.get("refusals_per_window", 10)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ArchiveError(f"{path}: [access] refusals_per_window must be a whole number, 0 or more; not {limit!r}")
    roles = access.get("classified_roles", ["approver"])
    if not isinstance(roles, list) or not all(r in ROLES for r in roles):
        raise ArchiveError(f"{path}: [access] classified_roles must be a list of roles from: {', '.join(ROLES)}")


def _report(path: Path, table: Any) -> None:
    """[report] lang, read by `custodes report` when no --lang is given."""
    from custodes.messages import LANGUAGES

    if not isinstance(table, dict):
        raise ArchiveError(f"{path}: [report] must be a table")
    lang = table.get("lang", LANGUAGES[0])
    if not isinstance(lang, str) or lang not in LANGUAGES:
        raise ArchiveError(
            f"{path}: [report] lang = {lang!r} is not a report language; allowed: {', '.join(LANGUAGES)}"
        )


def _storage_options(path: Path, table: dict[str, Any], check_backend: bool = False) -> dict[str, str]:
    if check_backend:
        _backend(path, table.get("backend", "local"))
    options = {}
    for key, value in table.items():
        if key == "backend":
            continue
        if key in ("algorithm", "owner") or not isinstance(value, str | int) or isinstance(value, bool):
            raise ArchiveError(f"{path}: [storage] {key} = {value!r}: a storage option is a string or a number")
        options[key] = str(value)
    return options


def _open_replica(archive: Archive, creating: bool) -> ObjectStore:
    """The store of the second copy: a local one in its own folder (made like an archive's store), any other
    backend from its options as the first copy's are."""
    from custodes.storage import open_backend

    options = dict(archive.policy.replica or {})
    backend = options.pop("backend")
    location = archive.root  # a bucket's store keeps only its spool in the archive's folder
    if "location" in options:
        location = Path(options.pop("location"))
        _outside(archive.root, location)
        _guarded_above(archive.root, location)
        if not creating and not location.is_dir():
            # Never made again here: an unmounted disk would get a new, empty "copy" and verify would say every
            # object is missing from it, or worse, nothing would say the real copy is not being written.
            raise ArchiveError(
                f"[replica] location {location}: the second copy's folder is not there (an unmounted disk?); "
                "mount it, or make the folder to start a new second copy (`custodes storage repair` fills it)"
            )
    replica = open_backend(
        backend, location, {**options, "algorithm": "sha256", "owner": f"{archive.policy.archive_id}/replica"}
    )
    if hasattr(replica, "account"):  # a folder's store: its files are the archive's account's, not its folder's
        replica.account = _archive_account(archive.root)
    return replica


def _claim_places(archive: Archive) -> None:
    """The copies' places are this archive's before anything is recorded (another archive's: refused)."""
    for store in (archive.store, archive.replica):
        if store is not None:
            store.claim()


def _release_places(archive: Archive | None, failed: BaseException) -> None:
    """A failed init's claims undone (``archive``: None when it failed before opening the archive): its retry is
    a new archive (a new id), which this one's marks would refuse as another's. A mark the storage keeps is named
    with the init's own error."""
    if archive is None:
        return
    for store in (archive.store, archive.replica):
        if store is not None:
            try:
                store.release()
            except CustodesError as e:
                raise ArchiveError(f"{failed}; and {e}") from None


def _check_storage(root: Path, storage: Mapping[str, str] | None, replica: Mapping[str, str] | None) -> None:
    """A new archive's [storage] and [replica], by the policy loader's rules, before anything is created."""
    options = _storage_options(Path(POLICY_FILE), dict(storage or {}), check_backend=True)
    second = _replica(Path(POLICY_FILE), None if replica is None else dict(replica))
    first = {"backend": (storage or {}).get("backend", "local"), **options}
    _backend_options(first, second)
    _two_places(root, first, second)


def check_storage_place(root: Path, policy: Policy) -> None:
    """Where ``policy`` puts the archive's copies, checked for the archive at ``root`` (``policy set``)."""
    first = {"backend": policy.storage, **policy.storage_options}
    _backend_options(first, policy.replica)
    _two_places(root, first, policy.replica)


def _backend_options(first: Mapping[str, str], second: Mapping[str, str] | None) -> None:
    """Each copy's options by its backend's own rules (``StorageBackend.check``), before a policy naming them is
    kept: a policy the backend refuses would leave an archive that no command can open."""
    for table, options in (("storage", first), ("replica", second)):
        if options is None:
            continue
        backend = plugin_manager().storage_backends.get(options["backend"])
        if backend.check is not None:
            try:
                backend.check({k: v for k, v in options.items() if k not in ("backend", "location")})
            except CustodesError as e:
                raise ArchiveError(f"{POLICY_FILE}: {e}".replace("[storage]", f"[{table}]")) from None


def _two_places(root: Path, first: Mapping[str, str], second: Mapping[str, str] | None) -> None:
    """The second copy outside the archive's folder, and not where the first copy is (two copies in one place
    are one copy: one failure loses both)."""
    if second is None:
        return
    if "location" in second:
        _outside(root, Path(second["location"]))
    place = {k: v for k, v in second.items() if k not in ("location",)}
    if second.get("backend") == first.get("backend") != "local" and place == dict(first):
        raise ArchiveError("[replica] is the same place as [storage]: a second copy needs a place of its own")


def _outside(root: Path, location: Path) -> None:
    """A second copy inside the archive's folder is no second copy (and verify would call it foreign), nor one
    that holds the archive: by path, and by the folders themselves (a bind mount of the archive's folder elsewhere
    is the archive's folder under another name: a hostile review)."""
    if location.resolve() == root.resolve() or root.resolve() in location.resolve().parents:
        raise ArchiveError(f"[replica] location {location}: the second copy must live outside the archive's folder")
    try:
        archive_ids = {_file_id(p) for p in (root, *root.resolve().parents)}
        archive_folder = _file_id(root)
    except OSError:
        return  # (an archive not made yet: init makes it where the path says)
    for folder in (location, *location.resolve().parents):
        try:
            found = _file_id(folder)
        except OSError:
            continue  # not made yet
        if found == archive_folder:
            raise ArchiveError(
                f"[replica] location {location}: {folder} is the archive's own folder under another name (a bind "
                "mount or link): the second copy must live outside the archive's folder"
            )
        if folder == location and found in archive_ids:
            raise ArchiveError(
                f"[replica] location {location}: the archive lies inside it: a second copy's folder holds that "
                "copy alone"
            )


def _file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _archive_account(root: Path) -> int:
    """The archive's account: its folder's owner (the account running init, before the folder is made)."""
    try:
        return os.stat(root).st_uid
    except OSError:
        return os.geteuid()


def _guarded_above(root: Path, location: Path) -> None:
    """A second copy's folder and every folder above it (as its path resolves) the archive's account's or root's,
    and writable by no one else unless sticky (hostile reviews: another account renamed the copy out of a shared
    folder and put one of its own in its place, and ingest and repair filled that; a copy's folder another account
    made 0777 beforehand was taken, and repair gave the evidence files to that account). The folders inside the
    copy are verify's to name (``unprotected``); these are where the copy is at all, so every command stops until
    they are put right, as it does for a copy's folder that is gone."""
    found = problems_above(location, _archive_account(root))
    if found is not None:
        here, wrong = found
        where = "its folder" if Path(os.path.realpath(location)) == here else f"{here} above it"
        raise ArchiveError(
            f"[replica] location {location}: {where}: {'; '.join(wrong)}: another account could move the second "
            "copy away and put its own in its place; make it the archive's account's or root's alone (chown, "
            "chmod o-w, or +t as /tmp is), or name a folder for the copy where every folder on the way is"
        )


def _replica(path: Path, table: dict[str, Any] | None) -> dict[str, str] | None:
    """The second copy's backend and options; a local one names its own folder (``location``)."""
    if table is None:
        return None
    backend = _backend(path, table.get("backend"))
    options = {"backend": backend, **_storage_options(path, table)}
    if backend == "local" and not options.get("location"):
        raise ArchiveError(f"{path}: [replica] location: a local replica needs its own folder (another disk)")
    if "location" in options and not os.path.isabs(options["location"]):
        # Relative, it would be taken from wherever a command runs: each run a copy somewhere else.
        raise ArchiveError(f"{path}: [replica] location = {options['location']!r}: give the folder as an absolute path")
    if "location" in options and any(part in (".", "..") for part in options["location"].split("/")):
        # The kernel resolves ".." after a folder the checks found missing (a hostile review: x/../copy, x not
        # there, passed the empty-folder check and the copy went into a folder of other things).
        raise ArchiveError(
            f"{path}: [replica] location = {options['location']!r}: name the folder plainly, without . or .."
        )
    return options


def _backend(path: Path, value: Any) -> str:
    names = plugin_manager().storage_backends.names()
    if value not in names:
        raise ArchiveError(
            f"{path}: [storage] backend = {value!r} is not a storage backend here; "
            f"allowed: {', '.join(names)} (see `custodes plugins`)"
        )
    return str(value)


def _duration(path: Path, table: str, key: str, value: Any, unit: int = 1) -> float:
    """A non-negative, finite duration that fits int64 ns (the one rule in custodes.defaults)."""
    where = f"{path}: [{table}] {key}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        units = {1: "seconds", 3600: "hours", 86400: "days"}[unit]
        raise ArchiveError(f"{where} must be a number of {units}, 0 or more; not {value!r}")
    try:
        ns_from_seconds(value * unit, where)
    except TimeRangeError as e:
        raise ArchiveError(str(e)) from None
    return float(value)


def _flag(path: Path, table: str, key: str, value: Any) -> bool:
    """A true/false switch, false when absent (a new rule never changes what an archive that did not ask says)."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ArchiveError(f"{path}: [{table}] {key} must be true or false; not {value!r}")
    return value


def _task_types(path: Path, value: Any) -> tuple[str, ...]:
    """[recording] required_task_types: task types as tasks name them (custodes.tasks), each once."""
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() == x and x for x in value):
        raise ArchiveError(
            f'{path}: [recording] required_task_types must be a list of task types such as ["traffic_stop"]'
        )
    if len(set(value)) != len(value):
        raise ArchiveError(f"{path}: [recording] required_task_types names a type twice")
    return tuple(value)


def _readback(path: Path, value: Any) -> str:
    if not isinstance(value, str) or value not in ("storage", "cache"):
        raise ArchiveError(f'{path}: ingest.readback must be "storage" or "cache", not {value!r}')
    return value


#: The comment written above each table of a new policy (fixed text: no user value ever goes into a comment).
_POLICY_COMMENTS = {
    "archive": "origin names this archive's checkpoints.",
    "ingest": "deadline_hours: Art. 16, footage ingested later than this after it ends is late_ingest.\n"
    'readback: "storage" re-hashes each copy as read back from the disk ("cache": from memory, faster, weaker).',
    "retention": "minimum_days: Art. 19, kept at least this long after the recording ends.",
    "timeline": "More unrecorded time than gap_tolerance_seconds between segments is a gap.",
    "hashing": "Digests recorded for every object; sha256 first: objects are addressed by it.",
    "devices": 'time_zone: the zone devices write local times in, e.g. time_zone = "Asia/Shanghai".',
    "keys": "signing_key: the Ed25519 checkpoint key; relative to the archive or absolute.",
    "storage": "backend: a storage plugin (see `custodes plugins`), and that backend's options (s3: bucket,\n"
    "endpoint, prefix, region, retention_mode; credentials come from the environment, never from here).",
    "verification": "window_days: every object is re-hashed at least this often (`custodes verify --older-than`);\n"
    "the compliance report lists the objects overdue.",
    "replica": "A second copy of every object: backend and its options (local: location, a folder on another\n"
    "disk). Ingest stores both before it records a file; verify checks both; `custodes storage repair` restores a\n"
    "bad copy from the good one.",
}


def _policy_text(
    archive_id: str,
    time_zone: str | None,
    algorithms: tuple[str, ...],
    signing_key: str,
    storage: Mapping[str, str] | None = None,
    replica: Mapping[str, str] | None = None,
) -> str:
    """The policy file of a new archive, written by a TOML library: a value holding a quote or a newline stays
    one string and can never add a table (a ``[people]`` granting roles) to the policy."""
    import tomli_w

    data: dict[str, dict[str, Any]] = {
        "archive": {"id": archive_id, "origin": f"custodes.local/{archive_id}"},
        "ingest": {"deadline_hours": 24, "readback": "storage"},
        "retention": {"minimum_days": 730},
        "timeline": {"gap_tolerance_seconds": 1.0, "clock_tolerance_seconds": 2.0},
        "hashing": {"algorithms": list(algorithms)},
        "devices": {"time_zone": time_zone} if time_zone else {},
        "keys": {"signing_key": signing_key},
        "storage": {"backend": "local", **(storage or {})},
        "verification": {"window_days": 30},
        **({"replica": dict(replica)} if replica else {}),
    }
    text = (
        "# custodes archive policy, in force as the ledger records it: change it with `custodes policy set`\n"
        "# (an approver); an edit of this file alone makes commands refuse. Changes apply to what happens next.\n"
    )
    for name, table in data.items():
        comment = "".join(f"# {line}\n" for line in _POLICY_COMMENTS[name].splitlines())
        text += f"\n{comment}{tomli_w.dumps({name: table})}"
    if tomllib.loads(text) != data:  # the file must say exactly what was asked, nothing more
        raise ArchiveError("internal error: the policy would not read back as written")
    return text


class Archive:
    """An open archive. Not thread-safe; open one per thread or process."""

    def __init__(self, root: Path, _creating: bool = False) -> None:
        from custodes import policy as policy_mod

        self.root = Path(root)
        self._creating = _creating  # (init's own archive, still being made: ready_to_record is not asked)
        self._ready = False  # ready_to_record passed (asked at the first transaction)
        self._signing_all = False  # `ledger checkpoint`: a person signs what no checkpoint covers (checkpoint)
        #: Set by :func:`init_archive` on the archive it returns: whether it made the signing key (False: the key
        #: given was there already, and this archive now signs with it too); None on any other open.
        self.signing_key_made: bool | None = None
        #: The checkpoint files written back while this archive was open (restore_checkpoint_files: any checkpoint
        #: does it, so any command may): the CLI names them when the command ends.
        self.checkpoint_files_restored: list[int] = []
        #: The spool files the latest sweep kept, each with its object (path: object): a killed ingest's complete
        #: copies the store could not take (custodes.ingest.keep_noted_copies); their files' failures name them.
        self.kept_in_spool: dict[str, str] = {}
        if not (self.root / POLICY_FILE).is_file():
            raise ArchiveError(f"{root}: not a custodes archive (no {POLICY_FILE}); create one with `custodes init`")
        if not (self.root / CATALOG_FILE).is_file() and not _creating:
            there = os.path.lexists(self.root / CATALOG_FILE)  # a folder or a FIFO there is no missing file
            raise ArchiveError(
                f"{root}: the catalog ({CATALOG_FILE}) is "
                + ("not a regular file; move that aside and restore" if there else "missing; restore")
                + " it from a backup (the ledger inside it is what proves the archive)"
            )
        catalog = self.root / CATALOG_FILE
        _own_entries(self.root)
        if not _creating and catalog.stat().st_size == 0:  # before connect: SQLite would make it a new database
            raise _empty_catalog(catalog)
        self._catalog: Catalog | None = Catalog.open(catalog, migrate=False)
        #: The latest checkpoint a command went on past, unwritten (:meth:`checkpoint_going_on`), for the command to
        #: say: silent, verify later called the missing file a rollback, and nobody had been told to sign it.
        self.unsigned: CheckpointFileError | None = None
        if not _creating and self.catalog.schema_version == 0:
            lowered = self.catalog.holds_tables
            self.catalog.close()  # no schema: only init creates a catalog, so an archive's empty one is damaged
            if lowered:
                raise ArchiveError(
                    f"{catalog}: its schema version (PRAGMA user_version) reads 0, yet it holds tables: the version "
                    f"was set by hand, and custodes would make every table again over them. Set it back to the "
                    f"version it was (this custodes makes {SCHEMA_VERSION}), then run `custodes verify`"
                )
            raise _empty_catalog(catalog)
        self.catalog.migrate()
        try:
            # The policy in force is the ledger's latest policy entry, never the file as it is now (a hand edit of
            # custodes.toml changes no role and no retention; custodes.policy says how the two are compared).
            # An archive from before policy entries adopts its file, once (custodes.policy.adopt).
            self.ledgered_policy = policy_mod.latest(self.catalog)
            if self.ledgered_policy is None:
                self.policy = Policy.load(self.root / POLICY_FILE)
            else:
                self.policy = Policy.parse(self.ledgered_policy.text, policy_mod.where(self.root, self.ledgered_policy))
            _key_place(self.root, self.policy.signing_key, f"{self.root / POLICY_FILE}: [keys] signing_key")
            # The spool: copies in flight, on the archive's own disk whatever the storage (custodes.storage).
            from custodes.storage import open_backend, own_folder

            self.spool = self.root / "tmp"
            own_folder(self.spool)  # never a link: ingest's copies would be written outside the archive
            # ``owner``: the store's claim on its place, so that no two archives (nor an archive's two copies)
            # ever share one (custodes.storage: a bucket prefix or a folder holds one archive's objects).
            owner = {"algorithm": "sha256", "owner": self.policy.archive_id}
            self.store: ObjectStore = open_backend(
                self.policy.storage, self.root, {**self.policy.storage_options, **owner}
            )
            self.replica: ObjectStore | None = None if self.policy.replica is None else _open_replica(self, _creating)
            self.verifier_key = _verifier_key(self.root / "keys" / "checkpoint.vkey")
            # Not into a catalog whose schema differs (Catalog.write refuses it): the archive still opens, so
            # verify can name the differences; the first write refuses with them.
            if self.ledgered_policy is None and not _creating and not self.catalog.schema_differences():
                policy_mod.adopt(self)
        except BaseException:
            self.catalog.close()
            raise

    @property
    def catalog(self) -> Catalog:
        """The archive's catalog (the one place its SQL is spoken); ArchiveError once the archive is closed (a
        library caller's query of a closed archive was sqlite3's ProgrammingError, naming no archive)."""
        if self._catalog is None:
            raise ArchiveError(f"{self.root}: the archive was closed; open it again (custodes.open_archive)")
        return self._catalog

    def read_a_copy_of_the_catalog(self) -> bool:
        """On a full disk the catalog is read alone: every other command, the review page included, waits on it for
        as long as this archive is open (catalog._alone_on_a_full_disk), and a verify of hours kept them at "busy"
        (a hostile review). Where the system's temporary folder has room, read a copy of it taken now instead
        (Catalog.copied_into), and let go of the catalog at once; True then. False, and nothing changed, where the
        disk is not full, or the copy cannot be made (it is then held, as before)."""
        import tempfile

        from custodes.catalog import sweep_copies

        sweep_copies(tempfile.gettempdir())  # (a killed verify's, found by the next verify, full disk or not)
        if not self.catalog.disk_full:
            return False
        copy = self.catalog.copied_into(tempfile.gettempdir())
        if copy is None:
            return False
        self.catalog.close()
        self._catalog = copy
        return True

    def close(self) -> None:
        """Close the catalog; closing again does nothing. Using the archive after is an ArchiveError."""
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def sweep_spools(self) -> None:
        """Remove what dead ingests, repairs and verifies left half-written in the spools (but a killed ingest's
        complete copies of what it noted, which are stored: custodes.ingest.keep_noted_copies): the archive's tmp/,
        and a local second copy's own (a copy from the archive's disk onto the replica's is made there first;
        one cut short by a crash used to stay for ever). Asked after :meth:`ready_to_record`, as an act is: a tmp/
        the sweep cannot enter (another account's) is refused so, naming it, nothing recorded (a hostile review:
        the disk's "permission denied" alone)."""
        self._ready_before_first_act()
        # A killed ingest's complete copies of the objects it noted it would link are stored, not swept: once its
        # card is wiped they are the archive's only copy of those bytes (custodes.ingest.keep_noted_copies).
        from custodes.ingest import keep_noted_copies

        self.kept_in_spool = keep_noted_copies(self)
        sweep_dead_temps(self.spool, self.kept_in_spool)
        for store in (self.store, self.replica):
            spool = getattr(store, "spool", None)  # a folder store's own spool; a bucket's is the archive's tmp/
            if isinstance(spool, Path) and spool != self.spool:
                sweep_dead_temps(spool)

    def ready_to_record(self) -> None:
        """ArchiveError unless what every act needs after it is recorded is there, asked before each write
        transaction (:meth:`transaction`): tmp/ takes a new file (ingest's copies, and every temp of the
        checkpoint files and the policy file go through it); ledger/ and ledger/checkpoints/ can take the files
        renamed there from tmp/ (writable, and on tmp/'s filesystem: a rename cannot cross one); the signing key
        in force can be read. A hostile review found each of these missing only once the act was recorded: a
        hold, an access request or a policy entry recorded unsigned, the command then failing with empty
        ``--json`` output (so the new id was never shown) and `ledger verify` failing until a later act signed
        it; an ingest recording one failed copy per file; a traceback for a file where private/ should be.
        Checked here, nothing is recorded and the one line says what to put right. And the ledger holds no entry
        no checkpoint covers that no command under way wrote (:meth:`unsigned_of_others`): the act's checkpoint
        would not sign past it, and a person signs it (`custodes ledger checkpoint`) once they know it is
        custodes' own; an act beside it could also rest on it (a forged approval). First of all, this process is
        the archive's own account's (:meth:`require_its_account`)."""
        from custodes import keys
        from custodes.findings import shown_name

        self.require_its_account()

        def refuse(where: Path, why: str) -> ArchiveError:
            return NotReadyToRecord(
                f"{why} ({shown_name(str(where))}): nothing was recorded. Give it back to the archive's account (its "
                "owner and mode; no immutable flag, `lsattr -d`; on the archive's own disk, not a mount of its own), "
                "then run the command again"
            )

        if self.catalog.read_only:  # (the probe below would name tmp/ on a read-only disk, not the catalog)
            raise CatalogReadOnly(self.root, self.catalog.path, full=self.catalog.disk_full)
        # Flags first: an append-only tmp/ takes the probe and keeps it; an immutable or append-only ledger/ or
        # ledger/checkpoint refuses the rename that replaces the latest checkpoint (a second hostile review).
        ledger = self.root / "ledger"
        for place in (self.spool, ledger, ledger / "checkpoint"):
            flag = _refusing_flag(place)
            if flag is not None:
                raise refuse(place, f"{flag} (chattr): custodes cannot replace or remove a file there")
        probe = self.spool / f"{process_tag()}-{os.urandom(6).hex()}-probe"  # a dead run's is swept
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError as e:
            raise refuse(self.spool, f"{e.strerror or e}: the archive's tmp/ folder cannot take a new file") from None
        try:
            probe.unlink()
        except OSError as e:
            raise refuse(probe, f"{e.strerror or e}: a file cannot be removed from the archive's tmp/ folder") from None
        spool_device = os.stat(self.spool).st_dev
        for folder in (ledger, ledger / "checkpoints"):
            # Not written to: a probe in checkpoints/ would change the folder's ctime, which tells the next
            # checkpoint that no file went missing (_checkpoint_folder_unchanged).
            try:
                st = os.stat(folder)
            except OSError as e:
                raise refuse(folder, f"{e.strerror or e}: the ledger's folder cannot be read") from None
            if not os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
                raise refuse(folder, "the ledger's checkpoint files cannot be written into this folder")
            if st.st_dev != spool_device:
                raise refuse(folder, "the ledger's checkpoint files are renamed here from tmp/, on another filesystem")
        try:
            keys.signing_key(self, keys.archive_chain(self).current)
        except ArchiveError as e:  # (names the key file and what is wrong with it)
            raise NotReadyToRecord(f"{e}; nothing was recorded") from None
        # Entries no checkpoint covers that no command under way wrote: this act's checkpoint would not sign
        # past them (Archive.checkpoint), and signed they would be history (a hostile review: a forged approval
        # appended to the ledger table was signed by the next command of anyone). A person signs them.
        try:
            foreign = [] if self._signing_all else self.unsigned_of_others()
        except LedgerNumberingError as e:
            raise NotReadyToRecord(f"{e}; nothing was recorded") from None
        if foreign:
            from custodes.catalog import replay

            raise NotReadyToRecord(
                "the ledger holds entries no checkpoint covers that no custodes command under way wrote "
                f"({replay.named_entries(self.catalog, foreign)}): nothing was recorded. {_look_then_sign(self.root)}"
            )

    def __enter__(self) -> Archive:
        self.catalog  # noqa: B018 - an archive closed already is refused here, not at its first use
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[Catalog]:
        """One write transaction: catalog rows and their ledger entries commit together or not at all. Refused
        (catalog.SchemaDiffersError) on a catalog whose schema is not the one custodes makes: Catalog.write; and
        (ArchiveError) when what the act needs after it is recorded is not there: :meth:`ready_to_record`."""
        self._ready_before_first_act()
        return self.catalog.write()

    def require_its_account(self) -> None:
        """NotReadyToRecord unless this process runs as the archive's own account (its folder's owner), asked
        before anything that writes into the archive (:meth:`ready_to_record`, :meth:`checkpoint`, a catalog
        rebuilt in its place): as the CLI has it without a service, so a tool calling the library, root included.
        Every file such a write makes (a checkpoint, an object, a key, a catalog) would be this account's, which
        the archive's own account and its service could not read (found writing a test: every later verify
        failed on "Permission denied")."""
        from custodes.identity import account_name

        owner = os.stat(self.root).st_uid
        if os.geteuid() != owner:
            raise NotReadyToRecord(
                f"{self.root}: this process runs as {account_name(os.geteuid())} and the archive belongs to "
                f"{account_name(owner)}: nothing was recorded or written; an act on it is done as "
                f"{account_name(owner)} (a tool calling the library runs as that account), or through its service "
                "(the custodes commands hand their work to a running `custodes serve`)"
            )

    def _ready_before_first_act(self) -> None:
        """:meth:`ready_to_record`, asked once per opened archive, before its first act (or the spool sweep that
        comes before an ingest's first act): an ingest's later groups, and the checkpoint after an act, come after
        something was recorded, so "nothing was recorded" would be false there (their own failures say what they
        are). The service opens the archive anew for each command."""
        if not self._creating and not self._ready:
            self.ready_to_record()
            self._ready = True

    # --- the query API (custodes.query: the filters, how findings are chosen, paging) ----------------------

    def segments(
        self,
        *,
        device: str | None = None,
        officer: str | None = None,
        case: str | None = None,
        task: str | None = None,
        start: int | datetime | None = None,
        end: int | datetime | None = None,
    ) -> Iterator[Segment]:
        """The segments the filters select, by id, read lazily a page at a time (:mod:`custodes.query`)."""
        from custodes import query

        return query.segments(self, device=device, officer=officer, case=case, task=task, start=start, end=end)

    def findings(
        self,
        *,
        device: str | None = None,
        officer: str | None = None,
        case: str | None = None,
        task: str | None = None,
        start: int | datetime | None = None,
        end: int | datetime | None = None,
    ) -> Iterator[RecordedFinding]:
        """The findings ingests recorded, then the tasks' ``gap_unexplained``, the filters select, read lazily
        (:mod:`custodes.query`)."""
        from custodes import query

        return query.findings(self, device=device, officer=officer, case=case, task=task, start=start, end=end)

    def events(
        self,
        *,
        device: str | None = None,
        officer: str | None = None,
        task: str | None = None,
        start: int | datetime | None = None,
        end: int | datetime | None = None,
    ) -> Iterator[DeviceEvent]:
        """The devices' own log entries the filters select, by id, read lazily (:mod:`custodes.query`)."""
        from custodes import query

        return query.events(self, device=device, officer=officer, task=task, start=start, end=end)

    def devices(self) -> Iterator[Device]:
        """Every device the archive knows, by id, read lazily (:mod:`custodes.query`)."""
        from custodes import query

        return query.devices(self)

    @property
    def signing_key_path(self) -> Path:
        p = Path(self.policy.signing_key)
        return p if p.is_absolute() else self.root / p

    def new_temp(self, hint: str) -> Path:
        """A fresh name in the spool (on the local store's file system, so its copies are linked into place)."""
        return self.spool / f"{process_tag()}-{os.urandom(6).hex()}-{hint}"

    def store_copy(
        self, src: str, temp: Path, algorithms: tuple[str, ...], cancel: _core.CopyCancel | None = None
    ) -> tuple[int, list[bytes]]:
        """Copy a source file to a new temp file in the spool while hashing it (the Rust core); ``cancel`` stops it
        (HashingCancelledError)."""
        # One storage write for the fault injector: the bytes are written in Rust.
        return write_cut_short(
            temp,
            lambda: _core.copy_and_hash(src, temp, list(algorithms), cancel),
            lambda e: EvidenceReadError(e.errno, f"writing the copy {temp}: {e.strerror}", src),
        )

    def leaves(self, size: int | None = None) -> list[bytes]:
        return self.catalog.ledger.leaves(size)

    def ledger_size(self) -> int:
        return self.catalog.ledger.size()

    def checkpoint(self, *, every_file: bool = False, sign_all: bool = False) -> ledger_mod.Checkpoint:
        """Sign (size, root) of the ledger as it is now and write the note.

        Checkpoints are files named by size and never rewritten; the latest is
        also at ledger/checkpoint, replaced atomically. Lost checkpoint files
        are written back first (:meth:`restore_checkpoint_files`; ``every_file``:
        every recorded one looked for, however the folder looks).

        What it signs is the ledger up to the first entry no checkpoint covers that is not custodes' own work in
        flight: this process's own entries, and an unfinished ingest's (which its run signs). Another command's
        entries about to be signed are waited for (:data:`OTHERS_SIGN_WITHIN_S`); an entry still there after that
        was put in the ledger by another hand (written into catalog.sqlite, or left by a command stopped before
        its checkpoint), and signed it would become history that no verify questions again. This command's own
        entries after it are left unsigned: :class:`UnsignedEntriesError`, once the files are written.
        ``sign_all``: a person looked at what no checkpoint covers (`custodes ledger checkpoint`): all of it."""
        self.require_its_account()  # before the lost files are written back: they would be this account's
        self._signing_all = sign_all  # (its transaction's readiness check: Archive.ready_to_record)
        try:
            return self._checkpoint(every_file, sign_all)
        except _NothingSignedError as e:
            if self.catalog.ledger.own.leaves:  # entries this process recorded that no checkpoint covers
                e.after_act()
            raise
        finally:
            self._signing_all = False

    def checkpoint_going_on(self) -> CheckpointFileError | None:
        """:meth:`checkpoint` for a command that goes on past it, the one rule for what a checkpoint's failure must
        not stop or speak for: a grant of access handed over at once, a login (a view logged as started showed
        nothing, and each try logged another: the access log said a person saw footage she never got), and the
        housekeeping before an act (its failure said "what this command recorded stands" of a hold never placed).
        A CheckpointFileError is returned, not raised, and kept as :attr:`unsigned` (None once a checkpoint is
        written) for the command to say (`access open` a note, the review page a flash and its log). What is
        missing is named without it: verify reports the checkpoint file gone, and entries left unsigned stop
        other commands until `custodes ledger checkpoint` signs them; the act's own checkpoint, or the next
        command's, writes the file back. (custodes.access.grant_for: an act that follows a grant, an export or a
        purge, calls :meth:`checkpoint` and stops.)"""
        try:
            self.checkpoint()
        except CheckpointFileError as e:
            self.unsigned = e
            return e
        self.unsigned = None
        return None

    def _checkpoint(self, every_file: bool, sign_all: bool) -> ledger_mod.Checkpoint:
        # A crash (or a fault) between recording an earlier checkpoint and writing its file left that file
        # missing, or someone deleted it: written back first (so it is named as such, not taken for the new one's),
        # so verify may hold every older checkpoint to its file. Not beside a catalog whose schema differs: the
        # transaction below refuses, and a refused command writes nothing.
        folder = self.root / "ledger" / "checkpoints"
        complete = None  # the folder's ctime when it was last known to hold every recorded checkpoint's file
        if not self.catalog.schema_differences():
            try:
                self.restore_checkpoint_files(every_file=every_file)
            except OSError as e:  # after the command's own entries, as the checkpoint's own file below
                raise CheckpointFileError(self.root, e) from e
            complete = _ctime(folder)
        if not sign_all and self.unsigned_of_others(before=_OWN_LAST, wait=False):
            # Another command's entries lie among this one's, unsigned yet: what comes before the first of them is
            # signed first, so a command waiting on this one's entries goes on (two commands each waiting for the
            # other to sign, a hostile review), then theirs are waited for (outside any transaction: they sign in
            # their own).
            self._sign(folder, complete, sign_all)
            complete = None  # (the folder changed with that file: the next checkpoint looks)
            self.unsigned_of_others(before=_OWN_LAST)
        cp, foreign = self._sign(folder, complete, sign_all)
        own_left = (
            []
            if self.catalog.ledger.own.last < cp.size
            else sorted(seq for seq in self.catalog.ledger.own.leaves if seq >= cp.size)
        )
        if foreign and own_left:
            from custodes.catalog import replay

            raise UnsignedEntriesError(self.root, replay.named_entries(self.catalog, foreign), own_left)
        return cp

    def _sign(self, folder: Path, complete: int | None, sign_all: bool) -> tuple[ledger_mod.Checkpoint, list[int]]:
        """Sign the ledger up to the first entry another hand put there (all of it: ``sign_all``) and write the
        checkpoint's files; the checkpoint, and the entries it left unsigned for that reason."""
        try:
            with self.transaction() as catalog:
                cp, foreign = self.sign_within(catalog, sign_all=sign_all)
        except (sqlite3.OperationalError, OSError) as e:
            # After the command's act: a full disk here is no "run it again" (a hostile review: a second hold).
            raise CheckpointFileError(self.root, e, "signing the ledger's checkpoint") from e
        # Temps go to tmp/, never into ledger/checkpoints/ (where verify reads
        # every file as a checkpoint): one left by a crash is cleaned there.
        temps = self.root / "tmp"
        temps.mkdir(exist_ok=True)
        before_link: list[int | None] = []
        try:
            write_once(folder / str(cp.size), cp.note, temps, before_link=lambda: before_link.append(_ctime(folder)))
            linked = _ctime(folder)
            replace_file(self.root / "ledger" / "checkpoint", cp.note, temps)
        except OSError as e:
            raise CheckpointFileError(self.root, e) from e
        # The folder as this checkpoint left it, for the next one (_checkpoint_folder_unchanged): only when nothing
        # but its own link changed it since it was last known complete (a file removed while this one was signed
        # and written would otherwise pass for seen). Else nothing is recorded, and the next checkpoint looks.
        if complete is not None and linked is not None and (before_link[0] if before_link else linked) == complete:
            self._folder_seen(cp.size, linked)
        return cp, foreign

    def _latest_file(self) -> str | Exception:
        """What ledger/checkpoint holds, or why it cannot be read: a small regular file, never a link or a FIFO
        waited on."""
        try:
            return read_small(self.root / "ledger" / "checkpoint", 64 * 1024).decode("utf-8")
        except (OSError, ValueError) as e:
            return e

    def _latest_file_signs(self, chain: keys.KeyChain, latest: str | Exception) -> int:
        """The size ledger/checkpoint signs: a catalog whose signed checkpoints reach fewer entries had some
        removed, or was put back from an older copy (a hostile review: checkpoints removed above a finished
        ingest's begin made it look under way, and its entries, rewritten, were signed). A file gone, or one that
        holds no note the catalog's keys signed (replaced, or a catalog put back from before a key rotation) cannot
        say: nothing is recorded beside it (LatestCheckpointError) until a person signs again."""
        try:
            if isinstance(latest, Exception):
                raise latest
            return chain.parse(latest).size
        except (OSError, ValueError, CustodesError) as e:
            raise LatestCheckpointError(self.root, e) from None

    def sign_within(self, catalog: Catalog, *, sign_all: bool = False) -> tuple[ledger_mod.Checkpoint, list[int]]:
        """Inside the caller's transaction: sign the ledger up to the first entry another hand put there (all of
        it: ``sign_all``) and record the checkpoint's row; its files are :meth:`checkpoint`'s to write (one a crash
        kept from being written is written back by the next, and verify says so meanwhile). The checkpoint, and
        the entries left unsigned for that reason. An ingest signs its begin so, in the very transaction that
        records it: only a begun ingest whose begin is signed has its later entries taken for work in flight."""
        chain = keys.archive_chain(self)  # after a key rotation the new key signs (custodes.keys)
        acc = _signed_accumulator(catalog, chain)
        if why := catalog.ledger.misnumbered(acc.size):
            raise LedgerNumberingError(self.root, why)
        foreign = [] if sign_all else _foreign_entries(catalog, acc.size, acc.root())
        if sign_all and (edited := _edited_entries(catalog, acc.size)):
            raise EditedEntriesError(self.root, edited)
        for part in catalog.ledger.leaves_from(acc.size, foreign[0] if foreign else None):
            acc.extend(part)
        key = keys.signing_key(self, chain.key_for(acc.size))
        cp = ledger_mod.make_checkpoint(key, self.policy.origin, acc.size, acc.root())
        # The note of the first checkpoint signed at this size stands; another signing is not recorded.
        recorded = catalog.checkpoints.add(cp.size, cp.root, cp.note, _now(), b"".join(acc.frontier()))
        catalog.ledger.signing(cp.size)  # seen signed once the caller's transaction commits
        return chain.parse(recorded), foreign

    def unsigned_of_others(self, before: int | None = None, *, wait: bool = True) -> list[int]:
        """The entries no checkpoint covers that neither this process appended nor an ingest under way wrote, once
        other commands had :data:`OTHERS_SIGN_WITHIN_S` to sign theirs (a command signs its entries a moment after
        it records them; ``wait``: False, as they are now); ``before``: only those before that index
        (:data:`_OWN_LAST`: before this process's last entry no checkpoint covers yet, none when it has none).
        Empty at once when there are none."""
        deadline = time.monotonic() + (OTHERS_SIGN_WITHIN_S if wait else 0)
        while True:
            # Read before the catalog's snapshot: a checkpoint's file never runs ahead of its committed row, so one
            # signed meanwhile is in the snapshot too (read after it, a hostile review saw a false "removed").
            latest = self._latest_file()
            with self.catalog.snapshot() as catalog:
                chain = keys.archive_chain(self)
                acc = _signed_accumulator(catalog, chain)
                top, own = acc.size, catalog.ledger.own
                recorded = catalog.checkpoints.latest() is not None  # (none yet: init's first, with no file)
                seen = max(own.signed, self._latest_file_signs(chain, latest) if recorded else 0)
                if top < seen:
                    raise CheckpointsGoneError(self.root, top, seen)
                if why := catalog.ledger.misnumbered(top):
                    raise LedgerNumberingError(self.root, why)
                own.seen_signed(top)
                upto = max(own.last, top) if before == _OWN_LAST else before
                found = [seq for seq in _foreign_entries(catalog, top, acc.root()) if upto is None or seq < upto]
            if not found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def _folder_seen(self, size: int, ctime: int) -> None:
        """Record the checkpoint folder's ``ctime`` with checkpoint ``size``, whose file is in it: a transaction of
        its own, after the file (the checkpoint's row comes before it: a crash between leaves the row, and the
        file is written back). A cache: when the catalog is busy or cannot be written now, it is left unrecorded
        (the next checkpoint looks), never an error of the command, whose act and checkpoint are complete."""
        try:
            with self.transaction() as catalog:
                catalog.checkpoints.folder_seen(size, ctime)
        except (sqlite3.OperationalError, CustodesError):
            pass

    def restore_checkpoint_files(self, *, every_file: bool = False) -> list[int]:
        """Write back every checkpoint file gone from ledger/checkpoints/ (deleted, or a crash before it was
        written) from the catalog's signed note; returns their sizes. It is the same signed text, so this
        can only restore, never forge. Run by every checkpoint and by `custodes ledger checkpoint`: a listing
        of the folder and the recorded sizes, a note read only for a file that is missing.

        Unless ``every_file``, the listing is skipped where the folder has not changed since the newest recorded
        checkpoint's file was put in: its ctime (which no one can set) is the one recorded then, in the catalog. One
        checkpoint a command, each ingest and each act, an archive gathers 10^5 of them, and listing and comparing
        them all cost 0.11 s a checkpoint there. A file removed at the very moment a checkpoint linked its own, or
        where the recorded time was edited, is left to verify, which names every lost file, and to `custodes
        ledger checkpoint`."""
        folder, temps = self.root / "ledger" / "checkpoints", self.root / "tmp"
        if not every_file and self._checkpoint_folder_unchanged(folder):
            return []
        present = set(os.listdir(folder)) if folder.is_dir() else set()
        missing = [size for size in self.catalog.checkpoints.sizes() if str(size) not in present]
        if not missing:
            return []
        self.require_its_account()  # (public: the files written back would be this process's account's)
        temps.mkdir(exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        chain = keys.archive_chain(self)
        restored = []
        for size in missing:
            note = self.catalog.checkpoints.note_at(size)
            # Only a note this archive's keys signed, of this very size (a row given another checkpoint's note
            # would write that note under the wrong name): otherwise verify names the row and nothing is written.
            try:
                signed = chain.parse(note).size
            except ledger_mod.LedgerError:  # not a note this archive signed: verify names the row
                continue
            if signed == size:
                write_once(folder / str(size), note, temps)
                restored.append(size)
        self.checkpoint_files_restored += restored
        return restored

    def _checkpoint_folder_unchanged(self, folder: Path) -> bool:
        """The newest recorded checkpoint's file is in ``folder``, and nothing was added, removed or renamed there,
        nor the folder's mode changed, since it was put in: the folder's ctime is the one recorded then. Not the
        file's own times: a chmod, a backup's hard link or a copy put back moves those, and that hid a deletion
        from every later checkpoint (a hostile review)."""
        latest = self.catalog.checkpoints.latest_folder_seen()
        if latest is None or latest[1] is None:
            return False
        size, seen = latest
        try:
            newest = os.stat(folder / str(size), follow_symlinks=False)
            here = os.stat(folder, follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISREG(newest.st_mode) and here.st_ctime_ns == seen


#: What SQLite keeps in each of the catalog's own files beside it.
_JOURNAL_FILES = {"-wal": "write-ahead log", "-shm": "write-ahead log index", "-journal": "rollback journal"}

#: The archive's own folders besides the store's and the spool (checked where they open): none may be a link.
OWN_FOLDERS = ("ledger", "ledger/checkpoints", "exports", "run", "keys")


def _own_entries(root: Path) -> None:
    """The catalog and the archive's own folders are its own, never links (a hostile review: through a linked
    ``ledger/``, ``exports/``, ``run/`` or ``catalog.sqlite`` commands wrote checkpoints, removed bags, changed a
    folder's mode and wrote the catalog outside the archive, and verify called it intact)."""
    from custodes.storage import StoreError, own_folder

    for name in (CATALOG_FILE, *(CATALOG_FILE + end for end in _JOURNAL_FILES)):
        catalog = root / name
        # SQLite refuses a linked write-ahead log too, but its "unable to open database file" read as a
        # question of rights (the error said to run as the archive's account).
        if catalog.is_symlink():
            raise ArchiveError(
                f"{catalog} is a symbolic link to {os.readlink(catalog)!r}: the catalog and its journal files are "
                "the archive's own, never written elsewhere; "
                + ("put the file back (from a backup)" if name == CATALOG_FILE else "remove the link")
            )
        # A journal file that is no file (a FIFO, a folder: planted, or left by a hand) read as a failing disk
        # ("disk I/O error: check the disk") or a question of rights. The catalog's own is said where it opens.
        try:
            mode = os.lstat(catalog).st_mode
        except OSError:
            continue
        if name != CATALOG_FILE and not stat.S_ISREG(mode):
            kept = _JOURNAL_FILES[name.removeprefix(CATALOG_FILE)]
            raise ArchiveError(
                f"{catalog} is {file_kind(mode)}, not a file: SQLite keeps the catalog's {kept} there, and cannot; "
                "move it aside (SQLite makes the file again)"
            )
    for name in OWN_FOLDERS:
        try:
            own_folder(root / name, create=False)
        except StoreError as e:
            raise ArchiveError(str(e)) from None
    latest = root / "ledger" / "checkpoint"
    if latest.is_dir() and not latest.is_symlink():  # every checkpoint replaces this file: a folder stops them all
        raise ArchiveError(
            f"{latest} is a folder: it is the file of the latest signed checkpoint; remove the folder (the next "
            "checkpoint writes the file again)"
        )


def _empty_catalog(catalog: Path) -> ArchiveError:
    return ArchiveError(
        f"the catalog is damaged (empty): it holds no schema and no ledger ({catalog}): restore it "
        "from a backup; the stored objects are untouched, and `custodes verify` on the restored "
        "archive shows what differs (only `custodes init` creates a catalog)"
    )


def _verifier_key(path: Path) -> ledger_mod.VerifierKey:
    """The archive's public key; without it no checkpoint can be checked, so every command stops here."""
    try:
        # Never through a link, nor waiting on a FIFO (a hostile review: verify hung, or printed the start of
        # the file a link pointed to).
        return ledger_mod.VerifierKey.parse(read_small(path, 64 * 1024).decode("utf-8"))
    except FileNotFoundError:
        raise ArchiveError(
            f"{path}: the verifier key is missing; restore it from a backup or from the custody/ folder "
            "of a bag this archive exported (it is public; it checks every signed checkpoint)"
        ) from None
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.EISDIR):
            raise  # the CLI's one mapping names it
        what = "a symbolic link" if e.errno == errno.ELOOP else "a folder"
        raise ArchiveError(
            f"{path}: the verifier key is {what}, not the archive's own file; restore it from a backup or from "
            "the custody/ folder of a bag this archive exported"
        ) from None
    except (ValueError, ledger_mod.LedgerError) as e:  # other OSErrors: the CLI's one mapping names them
        raise ArchiveError(
            f"{path}: the verifier key is damaged ({e}); restore it from a backup or from the "
            "custody/ folder of a bag this archive exported"
        ) from None


def _now() -> int:
    return time.time_ns()


#: What to do about a missing signing key, said where the archive's policy names it (every command that signs).
KEY_MISSING_ADVICE = (
    "restore it from where it is kept safe (without it no new checkpoint can be signed; if it moved, propose the "
    "policy naming its new path: `custodes policy set`)"
)


def _signing_key(
    path: Path,
    *,
    missing: str = KEY_MISSING_ADVICE,
    not_a_key: str = "name the key custodes made for this archive",
) -> Any:
    """The Ed25519 signing key at ``path``, or an :class:`ArchiveError` saying what is wrong with the file and what
    to do, in the caller's words: ``missing`` when there is none, ``not_a_key`` when the file holds no such key
    (init may also make one; a proposed policy names a file that must be there first)."""
    try:
        return ledger_mod.load_private_key(path)
    except IsADirectoryError:
        raise ArchiveError(
            f"{path}: the signing key path is a folder; {not_a_key} (the key file, not its folder)"
        ) from None
    except FileNotFoundError:
        raise ArchiveError(f"{path}: the signing key is missing; {missing}") from None
    except OSError as e:  # unreadable (its mode, private/ not a folder): said, never a traceback
        raise ArchiveError(
            f"{path}: the signing key cannot be read ({e.strerror or e}); without it no new checkpoint can be "
            "signed: give it back to the archive's account (private/ a folder, the key readable by it alone)"
        ) from None
    except ledger_mod.NotAKeyFile as e:  # a FIFO, a device, a file too large: said as it is
        raise ArchiveError(f"{e}; {not_a_key}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm, ledger_mod.LedgerError):
        raise ArchiveError(f"{path}: not an Ed25519 private key (PEM, PKCS#8, no password); {not_a_key}") from None


_INIT_KEY_ADVICE = "name the key custodes made for this archive, or a path where none exists yet to create one"
_INIT_DANGLING_ADVICE = (
    f"it is a symbolic link to a file that is not there, and init makes a key only as a new file; {_INIT_KEY_ADVICE}"
)


def _named_from_the_archive(root: Path, key: Path, key_path: str) -> str:
    """A key path into the archive's own folder (absolute, or through ``..``: ``key`` is where it leads), named
    from that folder: init makes it in the folder being built, which becomes the archive (a hostile review: made
    in the target itself, it blocked that rename, and the failed init left the folder behind, refusing the next
    init as "not empty"). Any other path, as it was given."""
    try:
        return Path(os.path.normpath(key.parent.resolve() / key.name)).relative_to(root.resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):
        return key_path  # outside the archive folder


def init_archive(
    root: str | os.PathLike[str],
    *,
    time_zone: str | None = None,
    algorithms: tuple[str, ...] = ("sha256", "blake3"),
    signing_key: str | None = None,
    storage: Mapping[str, str] | None = None,
    replica: Mapping[str, str] | None = None,
) -> Archive:
    """Create an archive in an empty (or new) folder and return it open. ``storage``: the ``[storage]`` table
    (``backend`` and that backend's options; default the ``local`` backend in the archive's folder);
    ``replica``: the ``[replica]`` table, a second copy of every object (None: one copy).

    All or nothing: every input is checked before anything is created; a new
    folder is built as a hidden sibling and renamed into place only when it is
    complete (an existing empty folder is filled in place); on any failure what
    was created is removed again, so the target is left as it was."""
    if not os.fspath(root):
        raise ArchiveError("the archive path is empty (''): name the folder to create the archive in")
    path = Path(root)
    if path.exists() and not path.is_dir():
        raise ArchiveError(f"{root}: exists and is not a folder; an archive starts in a new or empty folder")
    if path.exists() and any(path.iterdir()):
        raise ArchiveError(f"{root}: folder is not empty; an archive starts in a new or empty folder")
    # Every input is checked by the rules the policy loader applies, before anything is created.
    algorithms = tuple(dict.fromkeys(("sha256", *algorithms)))  # sha256 first, each once, in the order given
    _algorithms(Path(POLICY_FILE), list(algorithms))
    time_zone = _time_zone(None, time_zone)
    _check_storage(path, storage, replica)
    archive_id = uuid.uuid4().hex
    given = _key_path(None, DEFAULT_SIGNING_KEY if signing_key is None else signing_key)
    _key_place(path, given, "--signing-key")  # a refusal quotes the path as it was given
    key_path = _folded_in_new_folder(given)
    target_key = Path(key_path) if os.path.isabs(key_path) else path / key_path
    key_path = _named_from_the_archive(path, target_key, key_path)
    if target_key.exists() or target_key.is_symlink():
        # An existing key must be a key before anything is made; a link to none is no path to make one at (init
        # never writes through a link): said so, not the advice of an archive whose key went missing.
        _signing_key(target_key, missing=_INIT_DANGLING_ADVICE, not_a_key=_INIT_KEY_ADVICE)
    _key_protected(target_key)
    new_folder = not path.exists()
    if new_folder:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            # A file on the way (f/sub with f a file) is named as one: mkdir says "File exists" or "Not a directory".
            in_way = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
            raise ArchiveError(
                f"{in_way}: a file, not a folder: the archive cannot go inside it; name a path in a folder"
                if e.errno in (errno.EEXIST, errno.ENOTDIR) and in_way is not None
                else f"{path.parent}: cannot make the folder the archive goes in: {e.strerror}; "
                "name a path in a folder you can write to"
            ) from None
    work = path.with_name(f".{path.name}.init-{archive_id[:12]}") if new_folder else path
    made_key: Path | None = None
    opened: Archive | None = None
    try:
        work.mkdir(exist_ok=not new_folder)
        for sub in ("ledger/checkpoints", "keys"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        absolute_key = Path(key_path) if Path(key_path).is_absolute() else work / key_path
        if absolute_key.exists():
            key = _signing_key(absolute_key, not_a_key=_INIT_KEY_ADVICE)
        else:
            key = ledger_mod.new_private_key(absolute_key)
            made_key = absolute_key
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        origin = f"custodes.local/{archive_id}"
        replace_file(work / "keys" / "checkpoint.vkey", str(ledger_mod.VerifierKey(origin, public)) + "\n")
        policy_text = _policy_text(archive_id, time_zone, algorithms, key_path, storage, replica)
        replace_file(work / POLICY_FILE, policy_text)
        with Archive(work, _creating=True) as archive:
            from custodes.policy import record_init

            opened = archive
            _claim_places(archive)

            record_init(archive, policy_text)  # the first entry: the policy, and who set it
            archive.checkpoint()  # signed: verification starts from a known state
        _owner_only(work)
        if new_folder:
            os.rename(work, path)
            fsync_dir(path.parent)
    except BaseException as e:
        if made_key is not None:
            made_key.unlink(missing_ok=True)
        _remove_created(work, keep_folder=not new_folder)
        _release_places(opened, e)

        def shown(text: str) -> str:  # the hidden build folder means nothing to the user: name the target
            return text.replace(str(work), str(path)) if new_folder else text

        if isinstance(e, OSError) and not isinstance(e, CustodesError):
            where = shown(os.fsdecode(e.filename)) if e.filename is not None else str(root)
            raise ArchiveError(
                f"{where}: cannot create the archive: {e.strerror}; nothing was kept, so fix that and run init again"
            ) from None
        if isinstance(e, CustodesError) and new_folder and str(work) in str(e):
            raise ArchiveError(shown(str(e))) from None
        raise
    created = Archive(path)
    created.signing_key_made = made_key is not None
    return created


def _signed_accumulator(catalog: Catalog, chain: keys.KeyChain) -> merkle.Accumulator:
    """The Merkle accumulator at the size the latest checkpoint signs: from the frontier that checkpoint kept, or
    (no usable frontier) from the leaves, at the latest checkpoint whose signed note gives the root of that many;
    the empty tree when none does. A frontier is used only when it gives the root of its checkpoint's signed note
    (checked with the key in force at its size: the catalog's own root column could be edited to match an edited
    frontier) and the ledger still reaches its size (an entry at its last index: a lookup, where counting the
    entries walked all of them, every ingest); any edit of the leaves under it is verify's to find (the signed
    checkpoints say what they were). A checkpoints row whose note does not verify (written by hand) covers
    nothing."""
    saved = catalog.checkpoints.latest_frontier()
    if saved is not None:
        size, note, packed = saved
        try:
            signed = chain.parse(note)
            acc = merkle.Accumulator.resume(size, [packed[i : i + 32] for i in range(0, len(packed), 32)])
        except CustodesError:  # a note that does not verify, or a frontier of the wrong length: not used
            acc = None
        if acc is not None and (signed.size, signed.root) == (size, acc.root()) and catalog.ledger.reaches(size):
            return acc
    # The root at each recorded size in one pass over the leaves, then the notes from the latest down: one
    # signature checked, not one per checkpoint (a rebuilt catalog keeps no frontier; 10^5 of them took seconds).
    notes = {row.size: row.note for row in catalog.checkpoints.all() if row.size > 0}
    roots = _roots_at(catalog, sorted(notes))
    for size in sorted(roots, reverse=True):
        if _signs(chain, notes[size], size, roots[size]):
            acc = merkle.Accumulator()
            for part in catalog.ledger.leaves_from(0, size):
                acc.extend(part)
            return acc
    return merkle.Accumulator()


def _roots_at(catalog: Catalog, sizes: list[int]) -> dict[int, bytes]:
    """The Merkle root of the ledger's first ``size`` leaves for each of ``sizes`` (ascending) it reaches."""
    acc, roots, i = merkle.Accumulator(), {}, 0
    for part in catalog.ledger.leaves_from(0, sizes[-1] if sizes else 0):
        while part and i < len(sizes):
            room = (sizes[i] - acc.size) * 32  # the leaves up to the next recorded size, then its root
            acc.extend(part[:room])
            part = part[room:]
            if acc.size == sizes[i]:
                roots[sizes[i]] = acc.root()
                i += 1
    return roots


def _signs(chain: keys.KeyChain, note: object, size: int, root: bytes) -> bool:
    try:
        signed = chain.parse(note) if isinstance(note, str) else None
    except CustodesError:
        return False
    return signed is not None and (signed.size, signed.root) == (size, root)


def _foreign_entries(catalog: Catalog, top: int, root: bytes) -> list[int]:
    """The entries from ``top`` (signed with ``root``) on that this process did not append (as they are: one
    rewritten since is not its own) and no ingest under way wrote, in order. Not an ingest's work in flight: an
    entry whose leaf is not its text's, one of an ingest this process runs (it appended all of those), and one
    after an end of its ingest (its own, or a re-run's ``finishes``), signed or not (two hostile reviews)."""
    from custodes.catalog import replay

    ledger = catalog.ledger
    # The leaves first: at the end of an ingest, every one of its 10^5 entries is its own, and none is read.
    leaves = ledger.leaves_by_index(top)
    others = {seq: leaf for seq, leaf in leaves if not ledger.is_own(seq, leaf)}
    if not others:
        return []
    leaf_of = dict(leaves)
    by: list[tuple[int, int | None]] = []
    ended_at: dict[int, int] = {}  # ingest -> the first entry past top that ends it
    for seq, data in ledger.entries(top):
        if merkle.leaf_hash(data) != leaf_of[seq]:
            by += [(seq, None)] if seq in others else []
            continue
        if seq in others:
            by.append((seq, replay.entry_ingest(data)))
        for ended in replay.ingests_ended(data):
            ended_at.setdefault(ended, seq)
    mine = ledger.own.ingests
    under_way = _ingests_under_way(catalog, {i for _, i in by if i is not None}, top, root) - mine
    return [seq for seq, ingest in by if ingest not in under_way or seq > ended_at.get(ingest, seq)]


def _edited_entries(catalog: Catalog, start: int) -> list[int]:
    """The entries from ``start`` on whose leaf is not the hash of their text: edited after they were appended
    (or put in so), which a signature would make a signed root that no entry proves."""
    leaves = catalog.ledger.leaves_by_index(start)
    entries = catalog.ledger.entries(start)
    return [seq for (seq, leaf), (_, data) in zip(leaves, entries, strict=True) if merkle.leaf_hash(data) != leaf]


def _ingests_under_way(catalog: Catalog, ids: set[int], top: int, root: bytes) -> set[int]:
    """Of ``ids``, the ingests whose begin a checkpoint signed (an ingest signs it as it records it) and whose end
    none did, neither their own nor that of the re-run that finished them (its ``finishes``): under way, or
    interrupted and waiting for their re-run; their entries past ``top`` are work in flight,
    which another command's checkpoint signs. By the signed ledger, never the catalog's rows: an ``ingests`` row
    made or reopened by hand, or a begin appended by hand, puts no entry in flight (a hostile review: forged
    recordings were signed as an unfinished ingest's)."""
    from custodes.catalog import replay

    begun: set[int] = set()
    ended: set[int] = set()
    if not ids:
        return begun
    # The signed part as it is now against its signed root (the whole of it: this runs only while entries of an
    # ingest lie past the latest checkpoint), then every signed begin and end held to its leaf: an end rewritten
    # to name another ingest, its leaf with it, or removed (and put back after) made a finished ingest look under
    # way (two hostile reviews). Any of it edited: no ingest is.
    signed = merkle.Accumulator()
    for part in catalog.ledger.leaves_from(0, top):
        signed.extend(part)
    if (signed.size, signed.root()) != (top, root):
        return set()
    for _, data, leaf in catalog.ledger.of_types_below(("ingest_begin", "ingest_end"), top):
        if merkle.leaf_hash(data) != leaf:
            return set()
        e = replay.entry_json(data)
        if isinstance(e, dict) and e.get("type") == "ingest_begin" and type(e.get("ingest")) is int:
            begun.add(e["ingest"])
        ended.update(replay.ingests_ended(data))
    return (begun - ended) & ids


#: How long a command waits for the entries no checkpoint covers that another custodes command recorded and is
#: about to sign (it signs them a moment after it records them: milliseconds, a second or two on a loaded
#: machine), before it takes them for entries another hand put in the ledger (Archive.checkpoint).
OTHERS_SIGN_WITHIN_S = 3.0
#: Archive.unsigned_of_others: before this process's last entry no checkpoint covers (those after it are not
#: signed by its checkpoint, and are not its to wait for).
_OWN_LAST = -1


class LedgerNumberingError(ArchiveError):
    """The ledger's entries are not numbered 0 to n-1 (rows below 0, or gaps): rows inserted or removed by hand.
    Nothing is signed over it, by a person neither: the catalog is put back from a backup."""

    def __init__(self, root: Path, why: str) -> None:
        super().__init__(
            f"the ledger of {root} holds {why}: rows inserted into or removed from the ledger table by hand, which "
            "no checkpoint can sign; nothing was signed. `custodes verify` names them; restore catalog.sqlite from a "
            "backup"
        )


class _NothingSignedError(ArchiveError):
    """A state of the archive in which nothing is signed, found before an act (nothing was recorded, its message
    says) or at the checkpoint after one (:meth:`after_act`: what the command recorded stands)."""

    NOTHING = "nothing was recorded or signed"

    def after_act(self) -> None:
        """Raised at the checkpoint of a command that recorded its act: the act stands, not signed (a hostile
        review: an ingest's 3,000 files, recorded, were said to be "nothing recorded")."""
        self.args = (
            str(self).replace(self.NOTHING, "what this command recorded stands, not signed (do not do it again)"),
        )


class CheckpointsGoneError(_NothingSignedError):
    """The catalog's signed checkpoints reach fewer entries than this process signed or saw signed there: rows
    removed from its checkpoints table (or the catalog put back from an older copy while it ran)."""

    kind = "checkpoints_gone"

    def __init__(self, root: Path, now: int, seen: int) -> None:
        super().__init__(
            f"the signed checkpoints of {root} reach {now} ledger entries, but {seen} were signed (by this process, "
            "or as ledger/checkpoint says): checkpoints were removed from catalog.sqlite, or it was put back from an "
            f"older copy; {self.NOTHING}. `custodes verify` says what differs; where catalog.sqlite "
            "was put back from a backup on purpose, move the files of ledger/checkpoints/ above "
            f"{now} aside (keep them: they are what was signed after the backup), then `custodes ledger checkpoint` "
            "signs the ledger as it now is"
        )


class LatestCheckpointError(_NothingSignedError):
    """ledger/checkpoint is gone, or holds no note the catalog's keys signed: the catalog's checkpoints cannot be
    held to it (removed with it, or a catalog put back from before a key rotation)."""

    kind = "latest_checkpoint"

    def __init__(self, root: Path, why: Exception) -> None:
        from custodes.findings import shell_word

        super().__init__(
            f"{root / 'ledger' / 'checkpoint'} holds no checkpoint the catalog's keys signed ({why}): removed or "
            f"replaced, or catalog.sqlite was put back from before a key rotation; {self.NOTHING}. "
            f"`custodes verify` says what differs; `custodes ledger checkpoint {shell_word(os.path.abspath(root))}` "
            "writes it again once that is known"
        )


class UnsignedEntriesError(ArchiveError):
    """A checkpoint signed the ledger only up to entries another hand put there (no checkpoint covers them, and
    neither this command nor an ingest under way wrote them): this command's own entries after them are recorded,
    and left unsigned for a person to look at (they came in between this command's check before it acted and its
    checkpoint). The act stands: it is not to be done again."""

    kind = "unsigned_entries"  # (--json of an ingest so stopped: what it stored, and this)

    def __init__(self, root: Path, foreign: str, own: list[int]) -> None:
        self.foreign = foreign  # the entries, as named to a person
        super().__init__(
            f"the ledger holds entries no checkpoint covers that no custodes command under way wrote ({foreign}): "
            f"what this command did is recorded (entries {own[0]}..{own[-1]}) but not signed, and stands (do not "
            f"do it again). {_look_then_sign(root)}"
        )


class EditedEntriesError(ArchiveError):
    """Entries no checkpoint covers whose text is not what their leaf hash says: a person's `ledger checkpoint`
    signed them, and the signed root then stood over entries none of which proves it (a hostile review)."""

    def __init__(self, root: Path, edited: list[int]) -> None:
        shown = ", ".join(map(str, edited[:10])) + (", ..." if len(edited) > 10 else "")
        super().__init__(
            f"ledger entries {shown} of {root} do not match their leaf hashes (edited after they were appended, or "
            "put in so): nothing was signed; `custodes verify` names them; restore catalog.sqlite from a backup"
        )


def _look_then_sign(root: Path) -> str:
    """The way on beside entries another hand put in the ledger, as every message about them says it."""
    from custodes.findings import shell_word

    return (
        "Investigate them first (`custodes verify` names them; who could write catalog.sqlite; a command stopped "
        f"before its checkpoint leaves its own so); `custodes ledger checkpoint {shell_word(os.path.abspath(root))}` "
        "signs them once each is known to be custodes' own, else restore catalog.sqlite from a backup"
    )


class NotReadyToRecord(ArchiveError):
    """:meth:`Archive.ready_to_record` refused: an act would have been recorded and left unsigned. Nothing was
    recorded; housekeeping a read command does on its way (custodes.access ledgering closed refusal windows) is
    left for a later request rather than failing the read."""


def _mounted_read_only(*places: str | os.PathLike[str]) -> bool:
    """One of ``places`` is on a file system mounted read-only (one that cannot be asked is not said to be)."""
    for place in places:
        with suppress(OSError):
            if os.statvfs(place).f_flag & os.ST_RDONLY:
                return True
    return False


def why_read_only(archive: str | None, catalog: str) -> str:
    """What keeps SQLite from writing the catalog, and what to do: a disk mounted read-only is remounted; a flag
    (chattr) or a mode on the archive's folder or the catalog's files is named (a hostile review: an archive
    folder at 0500, or an immutable -wal, was told to remount a disk that was writable)."""
    from custodes.identity import keeper_advice

    # The catalog's own mount too: a file bind-mounted read-only alone sits in a folder of a writable disk.
    places = (archive or catalog, catalog)
    if _mounted_read_only(*places):
        return f"its disk is mounted read-only: {keeper_advice(archive, 'remount it read-write')}"
    if any(disk_full(place) for place in places):  # (catalog.connect then reads it as it is)
        return "its disk is full: free space on it, then run the command again"
    for place in dict.fromkeys(places):
        with suppress(OSError):
            st = os.statvfs(place)
            if st.f_files and st.f_favail == 0:  # SQLite cannot make its -wal: "unable to open" (a hostile review)
                return "its disk can make no more files (no free inodes): free some, then run the command again"
    folder = os.path.dirname(catalog) or "."
    for path in (folder, catalog, f"{catalog}-wal", f"{catalog}-shm"):
        flag = _refusing_flag(Path(path))
        if flag is not None:
            return f"{path} is {flag} (chattr; `lsattr -d {path}`): custodes cannot write there; clear the flag"
    for path in (folder, catalog, f"{catalog}-wal", f"{catalog}-shm"):
        if os.path.lexists(path) and not os.access(path, os.W_OK, effective_ids=True):
            return f"{path} cannot be written by this account (its owner or mode): {keeper_advice(archive)}"
    return keeper_advice(archive, "remount its disk read-write")


class CatalogReadOnly(NotReadyToRecord):
    """This account cannot write the catalog where it is (catalog.Catalog.read_only): an act would not be recorded.
    A copy on a read-only disk is for reading: verify, ``ledger verify`` and the report work on it as it is."""

    def __init__(self, root: Path, path: Path, *, full: bool = False) -> None:
        self.path = path
        if full:  # (catalog.Catalog.disk_full: opened to read only for that); as the CLI says a full disk
            super().__init__(
                f"{disk_full_line(path)} (nothing was recorded; meanwhile verify and ledger verify work on it as it "
                "is)"  # (not the report through the service: it is made on the archive's disk first, a review)
            )
            return
        why = why_read_only(str(root), str(path))
        on_a_copy = (
            " (a copy on a read-only disk is verified and reported on as it is: verify, ledger verify, report)"
            if _mounted_read_only(root)
            else ""
        )
        super().__init__(
            f"cannot write the catalog: it is read-only here ({path}); nothing was recorded: {why}{on_a_copy}"
        )


class CheckpointFileError(CustodesError):
    """A checkpoint file (the command's own, or a lost one written back first) that could not be written (a full
    disk, an I/O error) after what the command did was recorded: said so, so that no one repeats an act (the
    disk's "run the command again, what was not finished was not recorded" placed a second hold; a hostile
    review). `custodes ledger checkpoint` writes the files; an ingest, a purge or an export run again finishes."""

    kind = "checkpoint_file"  # (--json of an ingest so stopped: what it stored, and this)

    def __init__(
        self, root: Path, e: OSError | sqlite3.OperationalError, step: str = "writing the ledger's checkpoint files"
    ) -> None:
        from custodes.findings import shell_word, shown_name

        if isinstance(e, OSError):  # a rename names the temp first and the name it replaces second: that one
            why, where, code = e.strerror or str(e), e.filename2 or e.filename, e.errno or 0
        else:  # the catalog's own transaction: SQLite's primary result code says what happened
            why, where = str(e), root / CATALOG_FILE
            code = errno.ENOSPC if codes.full_disk(e, root) else codes.as_errno(e)  # (an I/O error of a full disk too)
        mend = {
            errno.ENOSPC: "free space on the disk",
            errno.EDQUOT: "free space on the disk",
            errno.EACCES: "give the archive's files back to its account",
            errno.EPERM: "give the archive's files back to its account",
            errno.EROFS: "remount the disk read-write",
            errno.EEXIST: "move that file aside, and keep it (`custodes ledger verify` names it)",
        }.get(code, "check the disk (dmesg, smartctl)")
        shown = shown_name(os.fsdecode(where) if where is not None else str(root / "ledger"))
        #: The checkpoint's transaction committed (only its files are missing); False: nothing of it was signed.
        self.signed = not step.startswith("signing")
        self.cause, self.mend = f"{why} ({shown})", mend
        super().__init__(
            f"{why} ({shown}) {step}: what this command recorded stands, so do not repeat an act; {mend}, then run "
            f"`custodes ledger checkpoint {shell_word(os.path.abspath(root))}` to "
            f"{'sign and ' if step.startswith('signing') else ''}write them (an ingest, a purge or an export: run "
            "the command again, which finishes it)"
        )


#: FS_IOC_GETFLAGS (``_IOR('f', 1, long)``) and the two flags that stop a rename over a name: chattr's i and a.
_GETFLAGS = 0x80006601 | (struct.calcsize("l") << 16)
_FLAGS = {0x10: "immutable", 0x20: "append-only"}


def _refusing_flag(path: Path) -> str | None:
    """ "immutable" or "append-only" where ``path`` carries that flag; None where it has neither, or the flags
    cannot be read (no such file, a file system without them: the write itself then says what is wrong)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        (flags,) = struct.unpack("l", fcntl.ioctl(fd, _GETFLAGS, bytes(struct.calcsize("l"))))
    except OSError:
        return None
    finally:
        os.close(fd)
    return next((name for bit, name in _FLAGS.items() if flags & bit), None)


def _ctime(folder: Path) -> int | None:
    """The ctime of ``folder`` itself (not followed through a link), None when it cannot be read."""
    try:
        return os.stat(folder, follow_symlinks=False).st_ctime_ns
    except OSError:
        return None


def _owner_only(root: Path) -> None:
    """Folders 0700, files 0600: only the archive's account (and its service) reads the catalog, the key
    or the footage; everyone else goes through the service, which applies the roles (see custodes.service)."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o700)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o600)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]


def _remove_created(folder: Path, *, keep_folder: bool) -> None:
    """Undo a failed init: remove what it created under ``folder`` (which was new or empty before)."""
    import shutil

    def writable_then_retry(fn: Any, p: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(p), 0o700)
        fn(p)

    children = list(folder.iterdir()) if keep_folder and folder.is_dir() else ([folder] if folder.exists() else [])
    for child in children:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, onerror=writable_then_retry)
        else:
            child.unlink(missing_ok=True)


def open_archive(root: str | os.PathLike[str]) -> Archive:
    """The archive at ``root``, opened (use it as a context manager: ``with open_archive(path) as archive``)."""
    return Archive(Path(root))


def refuse_inside_archive(archive: Archive, path: str | os.PathLike[str], option: str) -> Path:
    """An output path a person names (``export --to``/``--iso``, ``report --out``,
    ``access open --to``) must lie outside the archive and not be its signing
    key: written there, an export or a report would overwrite evidence, the
    catalog or the key. Links are resolved first, so a symlink cannot smuggle
    the write in. Returns the path as given.

    Through the archive service the command writes to a staged path in the request's outbox (under the
    archive's tmp/) instead; the path the person named was checked by their CLI (custodes.cli)."""
    from custodes.service import request

    served = request()
    if served is not None and served.is_staged(path):
        return Path(path)
    owned = _owned_output.get()
    if owned is not None and _within(path, owned):
        return Path(path)
    # A second copy on another disk holds the same evidence: a report written there replaced a stored object (a
    # hostile review). Its folder is refused like the archive's (a bucket has no folder to write into).
    second = archive.replica.spec() if archive.replica is not None else None
    copies = [Path(second.location)] if second is not None and second.backend == "local" else []
    return refuse_inside(archive.root, path, option, archive.signing_key_path, copies)


#: The one output folder inside the archive that the workflow running now may write (see :func:`owned_output`).
_owned_output: ContextVar[Path | None] = ContextVar("custodes_owned_output", default=None)


def exports_folder(archive: Archive) -> Path:
    """``ARCHIVE/exports/``: the bags the web page exported, each kept there for its requester to download (the
    web front end has no folder of the person's to write to; custodes.web.streaming)."""
    return archive.root / "exports"


@contextmanager
def owned_output(archive: Archive, folder: Path) -> Iterator[Path]:
    """Inside the block, :func:`refuse_inside_archive` accepts ``folder`` (and what is in it): a new folder that
    custodes itself chose under :func:`exports_folder`, never a path a person named, as the service's staged
    outputs are accepted. Anything else inside the archive is still refused."""
    if not _within(folder, exports_folder(archive)) or folder.resolve() == exports_folder(archive).resolve():
        raise ArchiveError(f"{folder}: not a folder of {exports_folder(archive)}")
    token = _owned_output.set(folder.resolve())
    try:
        yield folder
    finally:
        _owned_output.reset(token)


def _within(path: str | os.PathLike[str], folder: Path) -> bool:
    """:func:`within` for a path as a person gave it (resolved first; one that cannot be is not within)."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return False
    return within(resolved, folder.resolve())


def within(path: Path, folder: Path) -> bool:
    """Whether ``path`` (resolved) is ``folder`` or inside it: by name, and by the device and inode of ``path``
    and each of its parents, so that another way to the same folder (a bind mount, a second mount of the disk)
    is no way round (a hostile review: a report was written over the catalog, and an archive ingested itself,
    its private key included, through a bind mount)."""
    if path == folder or folder in path.parents:
        return True
    try:
        st = os.stat(folder)
    except OSError:
        return False
    for p in (path, *path.parents):
        try:
            here = os.stat(p)
        except OSError:
            continue  # not there yet (the file to be written): its parents say
        if (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def refuse_inside(
    root: str | os.PathLike[str],
    path: str | os.PathLike[str],
    option: str,
    signing_key: Path | None = None,
    copies: Sequence[Path] = (),
) -> Path:
    """:func:`refuse_inside_archive` for a caller that knows only the archive's folder (the CLI in front of
    the archive service, which cannot read the policy to learn where the key or a second copy lives; its
    caller's account cannot write the service's folders either). ``copies``: the folders of the archive's other
    copies of its objects."""
    given = Path(path)
    try:
        resolved = given.resolve()
    except OSError as e:  # a link swapped in or out while it is resolved (readlink on what is no longer one)
        raise ArchiveError(f"{option} {given}: it changed while it was checked ({e.strerror}); run again") from None
    places = [(Path(root).resolve(), "inside the archive")]
    if signing_key is not None:
        places.append((signing_key.resolve(), "the archive's signing key"))
    places += [(copy.resolve(), "inside the archive's second copy") for copy in copies]
    for inner, what in places:
        if within(resolved, inner):
            raise ArchiveError(f"{option} {given}: that is {what}; give {option} a place outside the archive's folders")
    return given


def refuse_links(path: str | os.PathLike[str], option: str) -> Path:
    """An output path reached through a symbolic link (any component, the last included) is refused:
    a link planted in the way would send evidence, or a write, somewhere the person did not name."""
    given = Path(path)
    parts = given.absolute().parts
    here = Path(parts[0])
    for part in parts[1:]:
        here = here / part
        if os.path.islink(here):
            raise ArchiveError(
                f"{option} {given}: {here} is a symbolic link; name the real folder (custodes never writes "
                "evidence through a link)"
            )
    return given
