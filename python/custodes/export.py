"""Evidence export (Art. 21): a BagIt 1.0 bag that proves itself, and a disc image.

The bag (RFC 8493) holds the copies under ``data/<device>/<original name>``,
``manifest-sha256.txt`` (and ``manifest-sm3.txt`` when the policy records
SM3), ``bag-info.txt`` with the written note Art. 21 asks for (producer,
extractor, extraction time, case), a ``custody/`` folder with the ledger
entries of these recordings, their RFC 9162 inclusion proofs, the signed
checkpoint and the verifier key, and a tag manifest over all of it. Anyone
holding only the bag can check it (:func:`validate_bag`): payload against
manifests, and custody entries against the checkpoint's signed root.

Exports need an approved ``export`` access request that names every
recording of the case; the export itself is a ledger entry, so its proof is
in the bag it produced.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from custodes import __version__, ledger, merkle
from custodes.access import current_person, grant_for
from custodes.archive import Archive
from custodes.errors import CustodesError
from custodes.findings import rfc3339
from custodes.hashing import hash_files
from custodes.ledger import LedgerError, VerifierKey, parse_checkpoint

__all__ = ["BagReport", "ExportError", "export_case", "validate_bag", "write_iso"]

#: Manifest algorithms custodes can check, and how (the Rust engine where it has them).
_ENGINE = {"sha256", "sm3", "md5", "blake3"}
_HASHLIB = {"sha1", "sha512"}


class ExportError(CustodesError):
    """An export that cannot be made as asked (no such case, a folder in the way, a failed copy)."""

    kind = "export"


def _manifest_path(rel: str) -> str:
    """RFC 8493 §2.1.3: CR, LF and % in a path are percent-encoded."""
    return rel.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _unescape(rel: str) -> str:
    return rel.replace("%0A", "\n").replace("%0a", "\n").replace("%0D", "\r").replace("%0d", "\r").replace("%25", "%")


def _safe_part(text: str) -> str:
    return text.replace("/", "_").replace("\\", "_").replace("\x00", "_") or "_"


def export_case(archive: Archive, case: str, request_id: int, to: str | os.PathLike[str], description: str = "") -> Path:
    """Write the bag of a case's recordings to ``to`` (a new or empty folder)."""
    bag = Path(to)
    if bag.exists() and any(bag.iterdir()):
        raise ExportError(f"{bag}: folder is not empty; a bag is written to a new folder")
    rows = archive.conn.execute(
        "SELECT s.id, s.device_id, s.original_name, s.sha256, s.size, s.ledger_seq, s.officer_id, o.digests "
        "FROM case_segments cs JOIN segments s ON s.id = cs.segment_id JOIN objects o ON o.sha256 = s.sha256 "
        "WHERE cs.case_id = ? AND s.purged_ns IS NULL ORDER BY s.id", (case,)).fetchall()
    if not rows:
        raise ExportError(f"case {case!r} has no recordings in this archive")
    grant_for(archive, request_id, [r[0] for r in rows], "export", "export")
    extractor = current_person(archive)
    now = time.time_ns()
    with archive.transaction() as tx:
        ledger.append(tx, {"type": "export", "case": case, "request": request_id, "segments": [r[0] for r in rows],
                           "by": extractor, "time": now})
    checkpoint = archive.checkpoint()
    payload: list[tuple[str, Path, dict[str, str], int, int, int]] = []
    (bag / "data").mkdir(parents=True, exist_ok=True)
    for seg, device, name, sha, size, seq, _officer, digests in rows:
        rel = Path("data") / _safe_part(device) / Path(*[_safe_part(p) for p in Path(name).parts])
        target = bag / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive.store.get(sha), target)
        payload.append((rel.as_posix(), target, json.loads(digests), size, seq, seg))
    algorithms = ["sha256"] + (["sm3"] if "sm3" in archive.policy.algorithms else [])
    copies = hash_files([p for _, p, *_ in payload], algorithms)
    for (rel, _, digests, size, _, _), r in zip(payload, copies):
        if not r.ok or r.digests["sha256"] != digests["sha256"] or r.size != size:
            raise ExportError(f"the copy of {rel} differs from the archive's object; nothing exported is to be trusted")
    for algo in algorithms:
        lines = "".join(f"{r.digests[algo]}  {_manifest_path(rel)}\n" for (rel, *_), r in zip(payload, copies))
        (bag / f"manifest-{algo}.txt").write_text(lines, encoding="utf-8")
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", encoding="utf-8")
    producers = sorted({f"{officer or 'unknown officer'} ({device})" for _, device, _, _, _, _, officer, _ in rows})
    oxum = f"{sum(p[3] for p in payload)}.{len(payload)}"
    info = [
        ("Source-Organization", archive.policy.origin),
        ("Producer", "; ".join(producers)),
        ("Extractor", extractor),
        ("Extraction-Date", rfc3339(now)),
        ("Case-Number", case),
        ("External-Description", description or f"Evidence of case {case}, exported under access request {request_id}"),
        ("Bagging-Date", datetime.fromtimestamp(now / 1e9, tz=timezone.utc).strftime("%Y-%m-%d")),
        ("Payload-Oxum", oxum),
        ("Bag-Software-Agent", f"custodes {__version__}"),
    ]
    (bag / "bag-info.txt").write_text("".join(f"{k}: {v}\n" for k, v in info), encoding="utf-8")
    _write_custody(archive, bag, [p[4] for p in payload], checkpoint.size, checkpoint.note)
    tag_files = sorted(p for p in bag.rglob("*") if p.is_file() and not p.relative_to(bag).as_posix().startswith("data/")
                       and not p.name.startswith("tagmanifest-"))
    (bag / "tagmanifest-sha256.txt").write_text(
        "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {_manifest_path(p.relative_to(bag).as_posix())}\n"
                for p in tag_files), encoding="utf-8")
    return bag


def _write_custody(archive: Archive, bag: Path, seqs: list[int], size: int, note: str) -> None:
    custody = bag / "custody"
    custody.mkdir()
    leaves = archive.leaves(size)
    export_seq = size - 1  # the export entry just written is the last one the checkpoint covers
    wanted = sorted(set(seqs) | {export_seq})
    entries, proofs = [], []
    for seq in wanted:
        data = bytes(archive.conn.execute("SELECT entry FROM ledger WHERE seq = ?", (seq,)).fetchone()[0])
        entries.append(json.dumps({"index": seq, "entry": base64.b64encode(data).decode()}))
        proofs.append({"index": seq, "leaf_hash": leaves[seq].hex(), "tree_size": size,
                       "proof": [h.hex() for h in merkle.inclusion_proof(leaves, seq)]})
    (custody / "ledger-entries.jsonl").write_text("\n".join(entries) + "\n", encoding="utf-8")
    (custody / "inclusion-proofs.json").write_text(json.dumps(proofs, indent=1) + "\n", encoding="utf-8")
    (custody / "checkpoint").write_text(note, encoding="utf-8")
    (custody / "checkpoint.vkey").write_text(str(archive.verifier_key) + "\n", encoding="utf-8")


def write_iso(bag: Path, iso: Path, label: str) -> None:
    """A disc image of the bag, ready to burn (ISO 9660 level 3: files over 4 GiB; Joliet and Rock Ridge names)."""
    volid = "".join(c if c.isalnum() or c == "_" else "_" for c in label.upper())[:32] or "CUSTODES"
    out = subprocess.run(["xorriso", "-as", "mkisofs", "-iso-level", "3", "-J", "-joliet-long", "-R", "-V", volid,
                          "-o", str(iso), str(bag)], capture_output=True, text=True)
    if out.returncode != 0:
        raise ExportError(f"xorriso failed: {out.stderr.strip()[-400:]}")


@dataclass
class BagReport:
    bag: str
    version: str | None = None
    files: int = 0
    problems: list[str] = field(default_factory=list)
    custody_checked: int = 0

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"bag": self.bag, "valid": self.valid, "version": self.version, "files": self.files,
                "custody_entries_checked": self.custody_checked, "problems": self.problems}


def _digest_files(paths: list[Path], algo: str) -> list[str | None]:
    if algo in _ENGINE:
        return [r.digests.get(algo) if r.ok else None for r in hash_files(paths, (algo,))]
    out: list[str | None] = []
    for p in paths:
        try:
            h = hashlib.new(algo)
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            out.append(h.hexdigest())
        except OSError:
            out.append(None)
    return out


def _read_manifest(path: Path, report: BagReport) -> dict[str, str]:
    entries: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            report.problems.append(f"{path.name} line {n}: not 'digest path'")
            continue
        entries[_unescape(parts[1].lstrip("*"))] = parts[0].lower()
    return entries


def validate_bag(path: str | os.PathLike[str]) -> BagReport:
    """Validate a BagIt bag (v0.97 or 1.0), and its custody proofs when it has them."""
    bag = Path(path)
    report = BagReport(str(bag))
    decl = bag / "bagit.txt"
    if not decl.is_file():
        raise ExportError(f"{bag}: not a bag (no bagit.txt)")
    fields = dict(line.split(": ", 1) for line in decl.read_text(encoding="utf-8-sig").splitlines() if ": " in line)
    report.version = fields.get("BagIt-Version")
    if report.version not in ("0.97", "1.0"):
        report.problems.append(f"bagit.txt: BagIt-Version {report.version!r} is not 0.97 or 1.0")
    payload = sorted(p for p in (bag / "data").rglob("*") if p.is_file()) if (bag / "data").is_dir() else []
    report.files = len(payload)
    on_disk = {p.relative_to(bag).as_posix(): p for p in payload}
    manifests = sorted(bag.glob("manifest-*.txt"))
    if not manifests:
        report.problems.append("no payload manifest")
    for m in manifests:
        algo = m.name[len("manifest-"):-len(".txt")]
        if algo not in _ENGINE | _HASHLIB:
            report.problems.append(f"{m.name}: algorithm {algo!r} not supported")
            continue
        listed = _read_manifest(m, report)
        for rel in sorted(set(on_disk) - set(listed)):
            report.problems.append(f"{rel}: in data/ but not in {m.name}")
        present = [rel for rel in sorted(listed) if rel in on_disk]
        for rel in sorted(set(listed) - set(on_disk)):
            report.problems.append(f"{rel}: listed in {m.name} but missing")
        for rel, got in zip(present, _digest_files([on_disk[r] for r in present], algo)):
            if got != listed[rel]:
                report.problems.append(f"{rel}: {algo} does not match {m.name}")
    info = bag / "bag-info.txt"
    if info.is_file():
        for line in info.read_text(encoding="utf-8").splitlines():
            if line.startswith("Payload-Oxum:"):
                expected = line.split(":", 1)[1].strip()
                actual = f"{sum(p.stat().st_size for p in payload)}.{len(payload)}"
                if expected != actual:
                    report.problems.append(f"Payload-Oxum says {expected}, the payload is {actual}")
    for m in sorted(bag.glob("tagmanifest-*.txt")):
        algo = m.name[len("tagmanifest-"):-len(".txt")]
        if algo not in _ENGINE | _HASHLIB:
            continue
        listed = _read_manifest(m, report)
        for rel, want in sorted(listed.items()):
            target = bag / rel
            got = _digest_files([target], algo)[0] if target.is_file() else None
            if got != want:
                report.problems.append(f"{rel}: tag file {'missing' if got is None else 'changed'} ({m.name})")
    if (bag / "custody").is_dir():
        _validate_custody(bag, report)
    return report


def _validate_custody(bag: Path, report: BagReport) -> None:
    custody = bag / "custody"
    try:
        key = VerifierKey.parse((custody / "checkpoint.vkey").read_text(encoding="utf-8"))
        cp = parse_checkpoint((custody / "checkpoint").read_text(encoding="utf-8"), key)
        entries = [json.loads(line) for line in (custody / "ledger-entries.jsonl").read_text(encoding="utf-8").splitlines() if line]
        proofs = {p["index"]: p for p in json.loads((custody / "inclusion-proofs.json").read_text(encoding="utf-8"))}
    except (OSError, ValueError, KeyError, LedgerError) as e:
        report.problems.append(f"custody: {e}")
        return
    manifest = _read_manifest(bag / "manifest-sha256.txt", report) if (bag / "manifest-sha256.txt").is_file() else {}
    for e in entries:
        index = e.get("index")
        data = base64.b64decode(e.get("entry", ""))
        leaf = merkle.leaf_hash(data)
        p = proofs.get(index)
        if p is None or bytes.fromhex(p["leaf_hash"]) != leaf or p["tree_size"] != cp.size or not merkle.verify_inclusion(
                leaf, index, cp.size, [bytes.fromhex(h) for h in p["proof"]], cp.root):
            report.problems.append(f"custody: ledger entry {index} is not proven in the signed checkpoint")
            continue
        report.custody_checked += 1
        entry = json.loads(data)
        if entry.get("type") == "ingest":
            rel = (Path("data") / _safe_part(entry["device"]) / Path(*[_safe_part(x) for x in Path(entry["name"]).parts])).as_posix()
            if manifest.get(rel) != entry["digests"]["sha256"]:
                report.problems.append(f"custody: {rel} does not have the digest its ingest entry recorded")
