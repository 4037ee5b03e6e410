"""Access approval and retention through the CLI, including every refusal."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import FOOTAGE, run_cli
from custodes.archive import open_archive
from custodes.verify import verify

PEOPLE = """
[people]
alice = "custodian"
bob = "approver"
carol = "viewer"
dave = "approver"

[access]
window_hours = 72
classified_roles = ["approver"]
"""


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    policy = arch / "custodes.toml"
    policy.write_text(policy.read_text() + PEOPLE)
    vol = tmp_path / "BWC0001"
    vol.mkdir()
    for name in ("androidx-sample.mp4", "go-mp4-sample.mp4"):
        shutil.copy(FOOTAGE / "encoders" / name, vol / name)
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol / "bt601.mov")
    # exit 1: the 2016 footage is a late ingest, and go-mp4-sample has no clock
    assert run_cli("ingest", vol, "--archive", arch, "--driver", "generic").returncode == 1
    return arch


def as_(user: str, *args: object):
    return run_cli(*args, user=user)


def request(arch: Path, user: str, *segments: int, purpose: str = "view") -> int:
    out = as_(
        user,
        "access",
        "request",
        arch,
        *[x for s in segments for x in ("--segment", s)],
        "--reason",
        "complaint 2024-17 review",
        "--purpose",
        purpose,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["id"]


def refused(out, pattern: str) -> None:
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert re.search(pattern, out.stderr.decode()), out.stderr


def test_access_workflow_and_every_refusal(archive: Path, tmp_path: Path) -> None:
    refused(as_("carol", "access", "open", archive, "99", "--segment", "1"), "no access request 99")
    rid = request(archive, "carol", 1, 2)
    refused(as_("carol", "access", "open", archive, rid, "--segment", "1"), "is pending, not approved")
    refused(as_("carol", "access", "approve", archive, rid), "carol is not an approver")
    own = request(archive, "bob", 1)
    refused(as_("bob", "access", "approve", archive, own), "nobody approves their own request")
    assert as_("bob", "access", "approve", archive, rid).returncode == 0
    opened = as_("carol", "access", "open", archive, rid, "--segment", "1", "--to", tmp_path / "viewed")
    assert opened.returncode == 0
    copy = Path(opened.stdout.decode().strip())
    assert copy.read_bytes() == (FOOTAGE / "encoders" / "androidx-sample.mp4").read_bytes()
    refused(as_("carol", "access", "open", archive, rid, "--segment", "3"), r"segment\(s\) \[3\] are not in request")
    refused(as_("mallory", "access", "open", archive, rid, "--segment", "1"), "is carol's, not mallory's")
    refused(
        as_("mallory", "access", "request", archive, "--segment", "1", "--reason", "curious"), "mallory has no role"
    )
    # Classified footage needs a role that may see it (Art. 24).
    refused(as_("carol", "access", "classify", archive, "--segment", "2", "--level", "1"), "carol may not classify")
    assert as_("alice", "access", "classify", archive, "--segment", "2", "--level", "1").returncode == 0
    refused(
        as_("carol", "access", "open", archive, rid, "--segment", "2"), r"classified and carol's role may not see them"
    )
    drid = request(archive, "dave", 2)
    assert as_("bob", "access", "approve", archive, drid).returncode == 0
    assert as_("dave", "access", "open", archive, drid, "--segment", "2").returncode == 0
    # Expired and denied requests.
    short = request(archive, "carol", 3)
    assert as_("bob", "access", "approve", archive, short, "--hours", "0").returncode == 0
    refused(as_("carol", "access", "open", archive, short, "--segment", "3"), "expired at")
    no = request(archive, "carol", 3)
    assert as_("bob", "access", "deny", archive, no, "--reason", "not related to the complaint").returncode == 0
    refused(as_("carol", "access", "open", archive, no, "--segment", "3"), "is denied, not approved")
    with open_archive(archive) as a:
        log = a.conn.execute("SELECT person, action, ok FROM access_log ORDER BY id").fetchall()
        entries = [json.loads(e)["type"] for (e,) in a.conn.execute("SELECT entry FROM ledger ORDER BY seq")]
        assert verify(a).ok
    refusals = [(p, act) for p, act, ok in log if not ok]
    assert len(refusals) == 11 and ("carol", "open") in refusals and ("mallory", "request") in refusals
    assert ("carol", "open", 1) in log and ("dave", "open", 1) in log
    assert entries.count("access_open") == 9  # every open attempt, allowed or refused, is in the ledger
    assert "access_approve" in entries and "access_deny" in entries and "access_classify" in entries


def purge_request(arch: Path, *segments: int) -> int:
    rid = request(arch, "alice", *segments, purpose="purge")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    return rid


def test_retention_holds_and_lawful_purge(archive: Path) -> None:
    def due_at(at: str) -> list[tuple[str, bool]]:
        out = as_("alice", "retention", "status", archive, "--json", "--at", at)
        assert out.returncode == 0, out.stderr
        return [(s["name"], s["due"]) for s in json.loads(out.stdout)["segments"]]

    # On a fixed clock: the 2016 clip is long past its 730 days; bt601.mov (2024-02-12T19:16:55Z, 1.02 s) is due
    # 730 days after its end, from 2026-02-11T19:16:56.02Z on; go-mp4-sample.mp4 has no clock, so it counts from its ingest (today).
    assert due_at("2026-02-11T19:16:56Z") == [
        ("androidx-sample.mp4", True),
        ("bt601.mov", False),
        ("go-mp4-sample.mp4", False),
    ]
    assert due_at("2026-02-11T19:16:57Z") == [
        ("androidx-sample.mp4", True),
        ("bt601.mov", True),
        ("go-mp4-sample.mp4", False),
    ]
    hold = as_("alice", "retention", "hold", archive, "--segment", "1", "--reason", "litigation 2026-3")
    assert hold.returncode == 0
    hold_id = int(hold.stdout.split()[1])
    rid = purge_request(archive, 1)
    refused(as_("alice", "retention", "purge", archive, "--request", rid), "under hold .* nothing overrides a hold")
    refused(as_("alice", "retention", "release", archive, "--hold", hold_id), "needs approver")
    assert as_("bob", "retention", "release", archive, "--hold", hold_id).returncode == 0
    unapproved = request(archive, "alice", 2, purpose="purge")
    refused(as_("alice", "retention", "purge", archive, "--request", unapproved), "pending, not approved")
    assert as_("alice", "retention", "long-term", archive, "--segment", "3", "--reason", "complaint").returncode == 0
    refused(
        as_("alice", "retention", "purge", archive, "--request", purge_request(archive, 3)), "kept for ever .*complaint"
    )
    assert as_("alice", "retention", "case", archive, "--case", "C-1", "--segment", "2").returncode == 0
    refused(
        as_("alice", "retention", "purge", archive, "--request", purge_request(archive, 2)), "kept for ever .*case C-1"
    )
    due = json.loads(as_("alice", "retention", "due", archive, "--json").stdout)["due"]
    assert [d["segment"] for d in due] == [1]
    out = as_("alice", "retention", "purge", archive, "--request", rid)
    assert out.returncode == 0, out.stderr
    with open_archive(archive) as a:
        sha = a.conn.execute("SELECT sha256 FROM segments WHERE id = 1").fetchone()[0]
        assert a.store.stat(sha) is None
        assert verify(a).ok  # a lawful purge is not a finding
        tomb = json.loads(
            a.conn.execute("SELECT l.entry FROM tombstones t JOIN ledger l ON l.seq = t.ledger_seq").fetchone()[0]
        )
        assert (tomb["type"], tomb["sha256"], tomb["by"]) == ("purge", sha, "alice")
        # A purge without a tombstone: an object removed and marked purged behind the ledger's back.
        other = a.conn.execute("SELECT sha256 FROM segments WHERE id = 2").fetchone()[0]
        path = a.store.path_for(other)
        path.chmod(0o644)
        path.unlink()
        with a.transaction() as tx:
            tx.execute("UPDATE objects SET purged_ns = 1 WHERE sha256 = ?", (other,))
    report = json.loads(run_cli("verify", archive, "--json").stdout)
    assert [(f["kind"], f["object"]) for f in report["findings"]] == [("missing", other)]


def test_purge_before_due(archive: Path) -> None:
    policy = archive / "custodes.toml"
    policy.write_text(policy.read_text().replace("minimum_days = 730", "minimum_days = 36500"))
    refused(as_("alice", "retention", "purge", archive, "--request", purge_request(archive, 1)), "not due until 21")
    assert json.loads(as_("alice", "retention", "due", archive, "--json").stdout)["due"] == []
