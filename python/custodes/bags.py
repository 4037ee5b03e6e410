"""BagIt bags as custodes reads them: RFC 8493 (BagIt 1.0) and the 0.97 draft.

A bag handed to ``custodes bag validate`` comes from outside, so every byte
of it is untrusted. The rule that keeps validation from ever crashing or
leaking: each piece of a bag is read through one of the checked readers
below (tag-file text, manifest lines, bag paths, custody JSON, base64, hex),
and each reader turns whatever is wrong with its input (a wrong shape, an
encoding that does not decode, a path that leaves the bag) into a *problem*
that names the file and, where it applies, the line. Nothing is caught at the
top: a problem is a finding about the bag (exit 1), never an exception.

Paths are the other half of the rule: a path read from a tag file goes through
:func:`bag_path` (percent-decoding, ``./`` normalisation, no absolute paths,
no ``~``, no ``..``), and a file is only opened through :meth:`_Bag.resolve`,
which refuses anything whose real path is outside the bag (a symbolic link
included) and anything that is not a regular file (a FIFO would hang the run).
A bag holds files, not links: every symbolic link anywhere in it is a problem
(one pointing inside the bag too, so a payload "file" cannot be a tag file or
another recording under a second name).

A bag with a ``custody/`` folder is held against its own custody: its payload is
exactly the recordings its proven export entry lists, each with the digest of
its proven ingest entry, and every other file in it is covered by the tag manifest.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from custodes import merkle
from custodes.errors import CustodesError
from custodes.hashing import hash_files
from custodes.keys import Fingerprint, KeyChain, chain_from_entries, untrusted
from custodes.ledger import LedgerError, VerifierKey

__all__ = ["ALGORITHMS", "BagError", "BagReport", "bag_path", "manifest_path", "safe_part", "validate_bag"]

#: Manifest algorithms and the length of their hex digests: every fixed-length
#: algorithm hashlib guarantees (RFC 8493 §2.4 names md5, sha1, sha256 and
#: sha512; bagit-python accepts all of hashlib's), plus SM3 and BLAKE3 through
#: the Rust engine. SHAKE has no fixed length, so no manifest can use it.
_ENGINE = {"sha256": 64, "sm3": 64, "md5": 32, "blake3": 64}
ALGORITHMS: dict[str, int] = {
    **{a: hashlib.new(a).digest_size * 2 for a in sorted(hashlib.algorithms_guaranteed) if not a.startswith("shake_")},
    **_ENGINE,
}

#: The largest tag file read into memory (a manifest of ten million files is
#: about 1 GiB, far beyond any export; a bigger file is a problem, not a crash).
MAX_TAG_FILE = 512 << 20
#: JSON nesting deeper than this is refused before Python's parser recurses.
_MAX_JSON_DEPTH = 64

_VERSIONS = ("0.97", "1.0")
_PERCENT = re.compile(r"%(0[AaDd]|25)")
_LINE_END = re.compile(r"\r\n|\r|\n")  # RFC 8493 §2: LF, CR or CRLF; never str.splitlines (it splits on \x1c, \x85 ...)
_MANIFEST_LINE = re.compile(r"([^ \t]+)[ \t]+(.*)\Z", re.S)
_FETCH_LINE = re.compile(r"([^ \t]+)[ \t]+([^ \t]+)[ \t]+(.*)\Z", re.S)
_HEX = re.compile(r"[0-9a-fA-F]+\Z")


class BagError(CustodesError):
    """A folder that is not a bag at all (exit 2), as against a bag with problems (exit 1)."""

    kind = "bag"


# --- paths: how custodes writes them into a bag, and how it reads them back ---------------------------------------


def manifest_path(rel: str) -> str:
    """RFC 8493 §2.1.3: CR, LF and % in a path are percent-encoded (and nothing else)."""
    return rel.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def payload_path(device: str, name: str, segment: int, taken: set[str]) -> str:
    """Where a recording goes in a bag: ``data/<device>/<name>``, made of :func:`safe_part` components.
    Two names that become the same path (``a\\b.mp4`` and ``a__b.mp4``) must not overwrite each other:
    taken in segment order, a later one is told apart by its segment id (``a__b.seg12.mp4``). Export
    and ``bag validate`` both place recordings by this one rule; ``taken`` is updated."""
    rel = PurePosixPath("data", _fit(safe_part(device)), *[_fit(safe_part(x)) for x in Path(name).parts])
    if str(rel) in taken:
        rel = rel.with_name(_fit(f"{rel.stem}.seg{segment}{rel.suffix}"))
    taken.add(str(rel))
    return str(rel)


#: The longest name of one path component most file systems take (bytes).
NAME_MAX = 255


def _fit(part: str) -> str:
    """``part`` when it fits in :data:`NAME_MAX` bytes, else its start, a ``~`` and 16 hex digits of the
    SHA-256 of the whole, and its extension: a name legal on the card became too long for a bag once ``.segN``
    was added (a case could never be exported, "File name too long"; a hostile review). Names that fit are as
    before, so every bag made before places its recordings as it did."""
    raw = part.encode("utf-8", "surrogateescape")
    if len(raw) <= NAME_MAX:
        return part
    suffix = PurePosixPath(part).suffix
    suffix = suffix if len(suffix.encode("utf-8", "surrogateescape")) <= 16 else ""
    tag = "~" + hashlib.sha256(raw).hexdigest()[:16]
    room = NAME_MAX - len(tag) - len(suffix.encode("utf-8", "surrogateescape"))
    stem = raw[: len(raw) - len(suffix.encode("utf-8", "surrogateescape"))][:room]
    return stem.decode("utf-8", "ignore") + tag + suffix  # "ignore": a character the cut split is left out


def safe_part(text: str) -> str:
    """One component of a path custodes writes into a bag, from a name a device gave.

    Separators and NUL become ``_``; ``.`` and ``..`` (a device id or a name is
    untrusted) become ``_.``/``_..`` so no component can climb out of ``data/``;
    bytes that are not UTF-8 (kept as surrogate escapes) become ``%XX`` so every
    manifest line is UTF-8, and ``%`` is then escaped in the manifest itself."""
    text = text.replace("/", "_").replace("\\", "_").replace("\x00", "_")
    if any("\udc80" <= c <= "\udcff" for c in text):
        text = "".join(f"%{ord(c) - 0xDC00:02X}" if "\udc80" <= c <= "\udcff" else c for c in text)
    if text in ("", ".", ".."):
        return "_" + text
    return text


def bag_path(raw: str) -> tuple[str | None, str]:
    """A path as a manifest or fetch.txt writes it, as the bag-relative POSIX path it names.

    Returns ``(path, "")`` or ``(None, reason)``. Percent-decodes ``%0A``,
    ``%0D`` and ``%25`` in one pass (RFC 8493 §2.1.3), drops ``./`` and empty
    components (bagit-python writes ``./data/...`` in some versions), and
    refuses what would leave the bag (RFC 8493 §6.1): absolute paths, a drive
    letter, ``~`` and ``..``."""
    path = _PERCENT.sub(lambda m: {"0a": "\n", "0d": "\r", "25": "%"}[m.group(1).lower()], raw)
    if "\x00" in path:
        return None, "holds a NUL character"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", path):
        return None, "is an absolute path, which leaves the bag"
    if path.startswith("~"):
        return None, "starts with ~ (a home folder), which leaves the bag"
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "climbs out with .., which leaves the bag"
    if not parts:
        return None, "names no file"
    return "/".join(parts), ""


def shown(text: str) -> str:
    """A name as a problem line shows it: one line, printable, non-UTF-8 bytes as \\xNN."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


# --- the report --------------------------------------------------------------------------------------------------


@dataclass
class BagReport:
    bag: str
    version: str | None = None
    files: int = 0
    problems: list[str] = field(default_factory=list)
    custody_checked: int = 0
    trust: dict[str, Any] | None = None  # the key chain the custody checkpoint was checked with (custodes.keys)

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "bag": self.bag,
            "valid": self.valid,
            "version": self.version,
            "files": self.files,
            "custody_entries_checked": self.custody_checked,
            "problems": self.problems,
            "trust": self.trust,
        }


# --- the checked readers -----------------------------------------------------------------------------------------


class _Bag:
    """One bag being read: its root, the declared tag-file encoding, and where problems go."""

    def __init__(self, root: Path, report: BagReport) -> None:
        self.root = root
        self.real = os.path.realpath(root)
        self.report = report
        self.encoding = "utf-8"
        self.manifests: dict[str, dict[str, str]] = {}  # payload manifests as read (once: each problem said once)
        self.payload: dict[str, Path] = {}  # the regular files under data/, by bag path
        self.tagged: set[str] = set()  # the paths the tag manifests list

    def problem(self, where: str, reason: str, line: int | None = None) -> None:
        text = f"{shown(where)}{'' if line is None else f' line {line}'}: {reason}"
        if text not in self.report.problems:  # a link is met by the walk and again by each reader: said once
            self.report.problems.append(text)

    def link_reason(self, rel: str) -> str:
        """Why the link at ``rel`` (or one on its way) is not followed: out of the bag, or a link at all."""
        real = os.path.realpath(os.path.join(self.real, rel))
        if os.path.commonpath([self.real, real]) != self.real:
            return "leads outside the bag (a symbolic link); not read"
        return "is a symbolic link (a bag holds files, not links); not read"

    def resolve(self, rel: str) -> tuple[Path | None, str]:
        """The file ``rel`` names, if it is a regular file whose real path is inside the bag; else why not.

        Nothing is opened here: the check runs on the path alone (``lstat`` and
        ``realpath``), so a FIFO or a link to a secret outside is never read."""
        real = os.path.realpath(os.path.join(self.real, rel))
        if real != os.path.normpath(os.path.join(self.real, rel)):  # bag_path left no "..": a link is on the way
            return None, self.link_reason(rel)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            return None, "missing"
        except OSError as e:
            return None, f"cannot be examined ({e.strerror})"
        if stat.S_ISDIR(st.st_mode):
            return None, "is a folder, not a file"
        if not stat.S_ISREG(st.st_mode):
            return None, "is not a regular file (a FIFO, socket or device); not read"
        return Path(real), ""

    def read_bytes(self, rel: str) -> bytes | None:
        path, why = self.resolve(rel)
        if path is None:
            self.problem(rel, why)
            return None
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_TAG_FILE + 1)
        except OSError as e:
            self.problem(rel, f"cannot be read ({e.strerror}); check its permissions")
            return None
        if len(data) > MAX_TAG_FILE:
            self.problem(rel, f"is larger than {MAX_TAG_FILE >> 20} MiB; a tag file that large is not read")
            return None
        return data

    def decode(self, rel: str, data: bytes, encoding: str) -> str | None:
        """Text of a tag file in ``encoding``; a byte-order mark is dropped where the encoding has one
        (UTF-16 needs it; bagit-python tolerates one in UTF-8 tag files other than bagit.txt)."""
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1 if codecs.lookup(encoding).name not in _WIDE else None
            self.problem(rel, f"is not valid {encoding} (byte {e.start}), the encoding bagit.txt declares", line)
            return None
        except (UnicodeError, ValueError) as e:  # codecs such as idna raise their own errors
            self.problem(rel, f"is not valid {encoding} ({str(e)[:80]}), the encoding bagit.txt declares")
            return None
        return text[1:] if text.startswith("\ufeff") else text

    def tag_text(self, rel: str) -> str | None:
        data = self.read_bytes(rel)
        return None if data is None else self.decode(rel, data, self.encoding)

    def tag_lines(self, rel: str) -> list[tuple[int, str]] | None:
        """Numbered lines of a tag file in the declared encoding, blank lines dropped."""
        text = self.tag_text(rel)
        if text is None:
            return None
        return [(n, line) for n, line in enumerate(_LINE_END.split(text), start=1) if line.strip()]

    def tags(self, rel: str, lines: list[tuple[int, str]]) -> list[tuple[str, str, int]]:
        """``Label: value`` lines (RFC 8493 §2.2.2), folded continuation lines joined; a line that is
        neither is a problem."""
        out: list[tuple[str, str, int]] = []
        for n, line in lines:
            if line[:1] in (" ", "\t") and out:
                label, value, first = out[-1]
                out[-1] = (label, f"{value} {line.strip()}", first)
            elif ":" in line and line.split(":", 1)[0].strip():
                label, value = line.split(":", 1)
                out.append((label.strip(), value.strip(), n))
            else:
                self.problem(rel, f"not a 'Label: value' line: {shown(line[:80])!r}", n)
        return out

    def json_value(self, rel: str, text: str, line: int | None = None) -> tuple[bool, Any]:
        """Parse JSON from a bag; too deep, not JSON or too big a number is a problem."""
        depth = max_depth = 0
        for c in (
            text if text.count("[") + text.count("{") > _MAX_JSON_DEPTH else ()
        ):  # a cheap nesting bound before json.loads recurses (brackets in strings only over-count)
            if c in "[{":
                depth += 1
                max_depth = max(max_depth, depth)
            elif c in "]}":
                depth -= 1
        if max_depth > _MAX_JSON_DEPTH:
            self.problem(rel, f"JSON nested deeper than {_MAX_JSON_DEPTH} levels", line)
            return False, None
        try:
            return True, json.loads(text)
        except (ValueError, RecursionError) as e:
            self.problem(rel, f"not JSON ({str(e)[:80]})", line)
            return False, None


_WIDE = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _hash32(value: Any) -> bytes | None:
    """A 32-byte hash written as 64 hex digits, or None."""
    return bytes.fromhex(value) if isinstance(value, str) and len(value) == 64 and _HEX.match(value) else None


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None


# --- validation --------------------------------------------------------------------------------------------------


def validate_bag(
    path: str | os.PathLike[str], trusted_key: VerifierKey | Fingerprint | None = None, *, hash_payload: bool = True
) -> BagReport:
    """Validate a BagIt bag (0.97 or 1.0), and its custody proofs when it has them, checked with
    ``trusted_key`` (kept outside the archive) or else the bag's own custody/checkpoint.vkey.

    Raises :class:`BagError` only when ``path`` is not a bag at all; every
    problem inside a bag is in the report. ``hash_payload=False`` skips reading
    the payload files (every other check is made): export uses it on a bag it
    validated in full a moment before, once its custody files are added."""
    root = Path(path)
    report = BagReport(str(root))
    if not os.path.lexists(root / "bagit.txt"):  # present but a link, FIFO or folder: a problem, read below
        raise BagError(f"{root}: not a bag (no bagit.txt); give the folder that holds bagit.txt")
    bag = _Bag(root, report)
    _report_links(bag)
    if not _read_declaration(bag):
        return report
    payload = _payload_files(bag)
    report.files = len(payload)
    fetched = _read_fetch(bag)
    _check_payload(bag, payload, fetched, hash_payload)
    _check_oxum(bag, payload)
    _check_tag_manifests(bag)
    if (root / "custody").is_dir():
        _validate_custody(bag, trusted_key)
        _check_untagged(bag)
    elif trusted_key is not None:
        bag.problem("custody/", "missing: the bag has no signed custody proofs to check the trusted key against")
    return report


def _read_declaration(bag: _Bag) -> bool:
    """bagit.txt (RFC 8493 §2.1.1): UTF-8 without a byte-order mark, version and tag-file encoding.

    False when the rest of the bag cannot be read (no known encoding)."""
    data = bag.read_bytes("bagit.txt")
    if data is None:
        return False
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        bag.problem("bagit.txt", "starts with a byte-order mark, which the bag declaration must not have")
        data = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bag.problem(
            "bagit.txt", f"is not UTF-8 (byte {e.start}); the bag declaration must be", data[: e.start].count(b"\n") + 1
        )
        return False
    lines = [(n, line) for n, line in enumerate(_LINE_END.split(text), start=1) if line.strip()]
    fields = {label: (value, n) for label, value, n in bag.tags("bagit.txt", lines)}
    version, _ = fields.get("BagIt-Version", (None, 0))
    bag.report.version = version
    if version not in _VERSIONS:
        bag.problem("bagit.txt", f"BagIt-Version {version!r} is not 0.97 or 1.0")
    encoding, n = fields.get("Tag-File-Character-Encoding", (None, 0))
    if encoding is None:
        bag.problem("bagit.txt", "has no Tag-File-Character-Encoding")
        return False
    try:  # a text encoding only: base64, rot13, zlib ... are codecs too, but bytes.decode refuses them
        text_encoding = getattr(codecs.lookup(encoding), "_is_text_encoding", True)
    except LookupError:
        text_encoding = False
    if not text_encoding:
        bag.problem("bagit.txt", f"Tag-File-Character-Encoding {shown(encoding)!r} is not a character encoding", n)
        return False
    bag.encoding = encoding
    return True


def _walk_error(bag: _Bag) -> Callable[[OSError], None]:
    """os.walk's onerror: a folder that cannot be listed is a problem naming it."""

    def report(e: OSError) -> None:
        bag.problem(os.path.relpath(e.filename or str(bag.root), bag.root), f"cannot be listed ({e.strerror})")

    return report


def _report_links(bag: _Bag) -> None:
    """Every symbolic link anywhere in the bag is a problem, never followed: a payload link to
    /etc/passwd would put a secret in the bag, and one to a file inside it would count a file twice."""
    for folder, dirs, files in os.walk(bag.root, onerror=_walk_error(bag)):  # never descends into a linked folder
        for name in sorted(dirs + files):
            full = os.path.join(folder, name)
            if os.path.islink(full):
                rel = Path(os.path.relpath(full, bag.root)).as_posix()
                bag.problem(rel, bag.link_reason(rel))


def _payload_files(bag: _Bag) -> dict[str, Path]:
    """Regular files under data/ by bag path. Links (each a problem of :func:`_report_links`) are
    not payload files, and special files are never opened: each is a problem."""
    out: dict[str, Path] = {}
    data = bag.root / "data"
    if data.is_symlink():
        return out  # _report_links said so
    if not data.is_dir():
        bag.problem("data", "the payload folder is missing")
        return out
    for folder, dirs, files in os.walk(data, onerror=_walk_error(bag)):
        folders = set(dirs)
        for name in sorted(dirs + files):
            full = os.path.join(folder, name)
            if os.path.islink(full) or name in folders:
                continue
            rel = Path(os.path.relpath(full, bag.root)).as_posix()
            target, why = bag.resolve(rel)
            if target is not None:
                out[rel] = target
            else:
                bag.problem(rel, why)
    bag.payload = dict(sorted(out.items()))
    return bag.payload


def _read_manifest(bag: _Bag, name: str, algo: str, payload: bool) -> dict[str, str]:
    """The entries of one manifest, every line checked: ``digest path`` with a digest of the
    algorithm's length and a path that stays in the bag (payload manifests: in data/)."""
    lines = bag.tag_lines(name)
    entries: dict[str, str] = {}
    for n, line in lines or []:
        m = _MANIFEST_LINE.match(line.lstrip(" \t"))
        if not m:
            bag.problem(name, "not 'digest path'", n)
            continue
        digest, raw = m.group(1).lower(), m.group(2)
        rel, why = bag_path(raw[1:] if raw.startswith("*") else raw)  # "*" marks binary mode in md5sum-style lines
        if rel is None:
            bag.problem(name, f"path {shown(raw)!r} {why}; not read", n)
            continue
        if len(digest) != ALGORITHMS[algo] or not _HEX.match(digest):
            bag.problem(name, f"{shown(digest[:140])!r} is not a {algo} digest", n)
            continue
        if payload and not rel.startswith("data/"):
            bag.problem(name, f"{shown(rel)} is not in the payload (data/)", n)
            continue
        if rel in entries:
            if entries[rel] != digest:
                bag.problem(name, f"lists {shown(rel)} again with another digest", n)
            elif bag.report.version == "1.0":  # RFC 8493 §2.1.3: each file once; the 0.97 draft let this pass
                bag.problem(name, f"lists {shown(rel)} more than once", n)
            continue
        entries[rel] = digest
    return entries


def _manifests(bag: _Bag, prefix: str) -> list[tuple[str, str]]:
    out = []
    for p in sorted(bag.root.glob(f"{prefix}-*.txt")):
        algo = p.name[len(prefix) + 1 : -len(".txt")]
        if algo not in ALGORITHMS:
            bag.problem(
                p.name, f"algorithm {shown(algo)!r} is not one custodes can check ({', '.join(sorted(ALGORITHMS))})"
            )
            continue
        out.append((p.name, algo))
    return out


def _digests(files: list[Path], algorithms: list[str]) -> list[dict[str, str] | str]:
    """Each file's digests in every algorithm, read once; or why it could not be read."""
    engine = [a for a in algorithms if a in _ENGINE]
    other = [a for a in algorithms if a not in _ENGINE]
    results: list[dict[str, str] | str] = [{} for _ in files]
    if engine:
        for i, r in enumerate(hash_files(files, engine)):
            results[i] = dict(r.digests) if r.ok else f"cannot be read ({r.error})"
    for i, path in enumerate(files):
        if not other or isinstance(results[i], str):
            continue
        hashers = {a: hashlib.new(a) for a in other}
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    for h in hashers.values():
                        h.update(chunk)
        except OSError as e:
            results[i] = f"cannot be read ({e.strerror})"
            continue
        results[i] = {**results[i], **{a: h.hexdigest() for a, h in hashers.items()}}  # type: ignore[dict-item]
    return results


def _read_fetch(bag: _Bag) -> set[str]:
    """fetch.txt (RFC 8493 §2.2.3): ``url length path`` lines naming payload files still to fetch."""
    if not (bag.root / "fetch.txt").exists():
        return set()
    out: set[str] = set()
    for n, line in bag.tag_lines("fetch.txt") or []:
        m = _FETCH_LINE.match(line.lstrip(" \t"))
        if not m:
            bag.problem("fetch.txt", "not 'url length path'", n)
            continue
        url, length, raw = m.groups()
        rel, why = bag_path(raw)
        if rel is None:
            bag.problem("fetch.txt", f"path {shown(raw)!r} {why}", n)
            continue
        if not rel.startswith("data/"):
            bag.problem("fetch.txt", f"{shown(rel)} is not a payload file; fetch.txt lists only payload files", n)
        parsed = urlparse(url)
        if not (parsed.scheme and parsed.netloc) and parsed.scheme != "file":
            bag.problem("fetch.txt", f"{shown(url[:120])!r} is not a URL", n)
        if length != "-" and not length.isdigit():
            bag.problem("fetch.txt", f"length {shown(length[:40])!r} is neither a number nor '-'", n)
        out.add(rel)
    return out


def _check_payload(bag: _Bag, payload: dict[str, Path], fetched: set[str], hash_payload: bool = True) -> None:
    """Every payload file against every payload manifest (RFC 8493 §3: each payload file is in
    every manifest in 1.0; the 0.97 draft asks for at least one); the digests only with ``hash_payload``."""
    manifests = _manifests(bag, "manifest")
    if not manifests and not list(bag.root.glob("manifest-*.txt")):
        bag.problem("bag", "has no payload manifest (manifest-<algorithm>.txt)")
    listed = bag.manifests = {name: _read_manifest(bag, name, algo, payload=True) for name, algo in manifests}
    anywhere = set().union(*listed.values()) if listed else set()
    _check_listed(bag, listed, anywhere, payload, fetched)
    present = sorted(set(anywhere) & set(payload)) if hash_payload else []
    algos = {algo for name, algo in manifests}
    for rel, got in zip(present, _digests([payload[r] for r in present], sorted(algos)), strict=True):
        if isinstance(got, str):
            bag.problem(rel, got)
            continue
        for name, algo in manifests:
            want = listed[name].get(rel)
            if want is not None and got.get(algo) != want:
                bag.problem(rel, f"{algo} does not match {name}")


def _check_listed(
    bag: _Bag, listed: dict[str, dict[str, str]], anywhere: set[str], payload: dict[str, Path], fetched: set[str]
) -> None:
    """The manifests and the payload name the same files: nothing in data/ unlisted, nothing listed absent."""
    for rel in sorted(fetched):  # RFC 8493 §2.2.3: what is to be fetched is in every payload manifest
        for name in listed:
            if rel not in listed[name]:
                bag.problem("fetch.txt", f"{shown(rel)} is not in {name}")
    for rel in payload:
        if bag.report.version == "0.97" and rel in anywhere:
            continue
        for name in listed:
            if rel not in listed[name]:
                bag.problem(rel, f"in data/ but not in {name}")
    for name, entries in listed.items():
        for rel in entries:
            if rel not in payload:
                path, why = bag.resolve(rel)
                if path is None and why == "missing":
                    why = "missing: listed in fetch.txt, fetch it before validating" if rel in fetched else "missing"
                elif path is not None:
                    why = "not a payload file (a link or an unreadable file)"
                bag.problem(rel, f"listed in {name} but {why}")


def _check_oxum(bag: _Bag, payload: dict[str, Path]) -> None:
    """Payload-Oxum (RFC 8493 §2.2.2): ``octets.files`` of the payload, said once."""
    if not (bag.root / "bag-info.txt").exists():
        return
    lines = bag.tag_lines("bag-info.txt")
    if lines is None:
        return
    oxums = [(value, n) for label, value, n in bag.tags("bag-info.txt", lines) if label == "Payload-Oxum"]
    if len(oxums) > 1:
        bag.problem("bag-info.txt", "Payload-Oxum is given more than once", oxums[1][1])
    for value, n in oxums[:1]:
        octets, dot, count = value.partition(".")
        if not (dot and octets.isdigit() and count.isdigit() and octets.isascii() and count.isascii()):
            bag.problem("bag-info.txt", f"Payload-Oxum {shown(value[:60])!r} is not <octets>.<files>", n)
            continue
        try:
            actual = f"{sum(p.stat().st_size for p in payload.values())}.{len(payload)}"
        except OSError as e:
            bag.problem("bag-info.txt", f"Payload-Oxum cannot be checked: {e.strerror}", n)
            continue
        if f"{octets.lstrip('0') or '0'}.{count.lstrip('0') or '0'}" != actual:  # no int(): 5000 digits are text
            bag.problem("bag-info.txt", f"Payload-Oxum says {shown(value)}, the payload is {actual}", n)


def _check_tag_manifests(bag: _Bag) -> None:
    """Each tag manifest entry: a path inside the bag (never read otherwise) whose file matches."""
    for name, algo in _manifests(bag, "tagmanifest"):
        for rel, want in _read_manifest(bag, name, algo, payload=False).items():
            bag.tagged.add(rel)
            path, why = bag.resolve(rel)
            if path is None:
                bag.problem(rel, f"tag file {why} ({name})")
                continue
            got = _digests([path], [algo])[0]
            if isinstance(got, str):
                bag.problem(rel, f"tag file {got} ({name})")
            elif got.get(algo) != want:
                bag.problem(rel, f"tag file changed ({name})")


def _check_untagged(bag: _Bag) -> None:
    """A custodes bag has no file outside data/ that its tag manifests do not cover: a file slipped in
    beside the custody proofs is named, as one in data/ is."""
    for folder, dirs, files in os.walk(bag.root, onerror=_walk_error(bag)):
        if folder == str(bag.root):
            dirs[:] = [d for d in dirs if d != "data"]
        for name in sorted(files):
            full = os.path.join(folder, name)
            rel = Path(os.path.relpath(full, bag.root)).as_posix()
            if not os.path.islink(full) and rel not in bag.tagged and not re.match(r"tagmanifest-[^/]*\.txt\Z", rel):
                bag.problem(rel, "is not in the tag manifest; every file of a custodes bag outside data/ is")


# --- custody: the ledger entries, proofs and checkpoint custodes puts in its bags --------------------------------


def _validate_custody(bag: _Bag, trusted: VerifierKey | Fingerprint | None) -> None:
    key_text = bag.tag_text("custody/checkpoint.vkey")
    note = bag.tag_text("custody/checkpoint")
    entries = _custody_entries(bag)
    proofs = _custody_proofs(bag)
    if key_text is None or note is None:
        return
    try:
        key = VerifierKey.parse(key_text)
    except LedgerError as e:
        bag.problem("custody/checkpoint.vkey", str(e))
        return
    # From the trusted key (else the bag's own) through the key rotations among the entries to the key that
    # signed; an entry not proven below makes the bag invalid, so a planted rotation cannot pass.
    start = KeyChain.start(trusted, key, "bag")
    chain = chain_from_entries(start, start.source, sorted((i, d) for _, i, d in entries))
    bag.report.trust = chain.to_json()
    for message, index in untrusted(chain, key, "custody/checkpoint.vkey"):
        bag.problem("custody/checkpoint.vkey" if index is None else "custody/ledger-entries.jsonl", message)
    try:
        cp = chain.parse(note)
    except LedgerError as e:
        bag.problem("custody/checkpoint", str(e))
        return
    where = "custody/ledger-entries.jsonl"
    ingests: dict[int, tuple[int, int, dict[str, Any]]] = {}  # segment -> (line, index, proven ingest entry)
    exports: list[tuple[int, int, dict[str, Any]]] = []  # (line, index, proven export entry)
    for n, index, data in sorted(entries, key=lambda e: e[1]):
        p = proofs.get(index)
        leaf = merkle.leaf_hash(data)
        if (
            p is None
            or p[0] != leaf
            or p[1] != cp.size
            or not merkle.verify_inclusion(leaf, index, cp.size, p[2], cp.root)
        ):
            bag.problem(where, f"ledger entry {index} is not proven in the signed checkpoint", n)
            continue
        bag.report.custody_checked += 1
        ok, entry = bag.json_value(where, data.decode("utf-8", "replace"), n)
        if not ok:
            continue
        if not isinstance(entry, dict):
            bag.problem(where, f"ledger entry {index} is not a JSON object", n)
        elif entry.get("type") == "export":
            exports.append((n, index, entry))
        elif entry.get("type") == "ingest":
            device, name, digests = entry.get("device"), entry.get("name"), entry.get("digests")
            segment = _int(entry.get("segment"))
            if not (
                isinstance(device, str)
                and isinstance(name, str)
                and isinstance(digests, dict)
                and isinstance(digests.get("sha256"), str)
                and segment is not None
            ):
                bag.problem(where, f"ingest entry {index} lacks segment, device, name or digests.sha256", n)
                continue
            ingests[segment] = (n, index, entry)
    _hold_payload_to_export(bag, ingests, exports)


def _hold_payload_to_export(
    bag: _Bag, ingests: dict[int, tuple[int, int, dict[str, Any]]], exports: list[tuple[int, int, dict[str, Any]]]
) -> None:
    """The payload is exactly the recordings the one proven export entry lists, each where
    :func:`payload_path` puts it and with the sha256 of its proven ingest entry: a file planted in
    data/, a recording taken out (manifests and Payload-Oxum regenerated) or swapped is named here."""
    where = "custody/ledger-entries.jsonl"
    if len(exports) != 1:
        found = ", ".join(str(i) for _, i, _ in exports) or "none"
        bag.problem(
            where, f"a bag holds the proof of exactly one export entry (found: {found}); payload not held to it"
        )
        return
    n, index, export = exports[0]
    segments = export.get("segments")
    if not isinstance(segments, list) or any(_int(s) is None for s in segments) or len(set(segments)) != len(segments):
        bag.problem(where, f"export entry {index} does not list its segments (distinct whole numbers)", n)
        return
    expected: dict[str, tuple[int, int, str]] = {}  # bag path -> (segment, ingest index, sha256)
    taken: set[str] = set()  # bag paths placed so far, in segment order: see payload_path
    for segment in sorted(segments):
        if segment not in ingests:
            bag.problem(
                where, f"export entry {index} lists segment {segment}, whose ingest entry is not proven here", n
            )
            continue
        _, ingest_index, entry = ingests[segment]
        rel = payload_path(entry["device"], entry["name"], segment, taken)
        expected[rel] = (segment, ingest_index, entry["digests"]["sha256"])
    for segment, (line, ingest_index, _) in sorted(ingests.items()):
        if segment not in segments:
            bag.problem(
                where, f"ingest entry {ingest_index} (segment {segment}) is not exported by entry {index}", line
            )
    manifest = bag.manifests.get("manifest-sha256.txt", {})
    for rel in bag.payload:
        if rel not in expected:
            bag.problem(rel, f"is not a recording export entry {index} lists (a file added to the payload)")
    for rel, (segment, ingest_index, sha) in expected.items():
        if rel not in bag.payload:
            bag.problem(
                rel, f"missing: export entry {index} lists segment {segment} (ingest entry {ingest_index}) here"
            )
        elif manifest.get(rel) != sha.lower():
            bag.problem(rel, f"does not have the digest its ingest entry {ingest_index} recorded")


def _custody_entries(bag: _Bag) -> list[tuple[int, int, bytes]]:
    """``(line, index, entry bytes)`` from custody/ledger-entries.jsonl; each line
    ``{"index": N, "entry": base64}``."""
    where = "custody/ledger-entries.jsonl"
    text = bag.tag_text(where)
    out: list[tuple[int, int, bytes]] = []
    for n, line in enumerate(_LINE_END.split(text or ""), start=1):
        if not line.strip():
            continue
        ok, value = bag.json_value(where, line, n)
        if not ok:
            continue
        if not isinstance(value, dict):
            bag.problem(where, "not a JSON object with index and entry", n)
            continue
        index, data = _int(value.get("index")), _b64(value.get("entry"))
        if index is None:
            bag.problem(where, "index is missing or not a whole number", n)
        elif data is None:
            bag.problem(where, f"entry {index} is missing or not base64", n)
        else:
            out.append((n, index, data))
    return out


def _custody_proofs(bag: _Bag) -> dict[int, tuple[bytes, int, list[bytes]]]:
    """``index -> (leaf hash, tree size, audit path)`` from custody/inclusion-proofs.json."""
    where = "custody/inclusion-proofs.json"
    text = bag.tag_text(where)
    if text is None:
        return {}
    ok, value = bag.json_value(where, text)
    if not ok:
        return {}
    if not isinstance(value, list):
        bag.problem(where, "not a JSON list of proofs")
        return {}
    out: dict[int, tuple[bytes, int, list[bytes]]] = {}
    for i, p in enumerate(value):
        if not isinstance(p, dict):
            bag.problem(where, f"proof {i} is not a JSON object")
            continue
        index, leaf, size, path = (
            _int(p.get("index")),
            _hash32(p.get("leaf_hash")),
            _int(p.get("tree_size")),
            p.get("proof"),
        )
        hashes = [_hash32(h) for h in path] if isinstance(path, list) else None
        if index is None or leaf is None or size is None or hashes is None or None in hashes:
            missing = [
                k
                for k, ok_ in (
                    ("index", index is not None),
                    ("leaf_hash", leaf is not None),
                    ("tree_size", size is not None),
                    ("proof", hashes is not None and None not in hashes),
                )
                if not ok_
            ]
            bag.problem(where, f"proof {i} has no valid {', '.join(missing)}")
            continue
        if index in out:
            bag.problem(where, f"proof {i} repeats index {index}")
            continue
        out[index] = (leaf, size, [h for h in hashes if h is not None])
    return out
