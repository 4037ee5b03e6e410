"""Two-phase purge through the real CLI (issue 13, part 6): a purge stopped after its tombstone is
``purge_incomplete`` until the next purge finishes it; and every act on the archive's records, done by the
wrong role or refused by the retention rules, leaves an access-log row and a ledger entry."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from custodes.archive import open_archive
from custodes.storage import StoreError
from helpers import (
    BACKENDS,
    FOOTAGE,
    as_,
    catalog_rows,
    copy_archive,
    one_line_error,
    plant,
    refused,
    request,
    run_cli,
    run_cli_with_faults,
    stop_service,
)


def purge_request(arch: Path, *segments: int) -> int:
    rid = request(arch, "alice", *segments, purpose="purge")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    return rid


def segment_ids(arch: Path) -> dict[str, int]:
    return dict(catalog_rows(arch, "SELECT original_name, id FROM segments"))


def object_path(arch: Path, segment: int) -> Path:
    (sha,) = catalog_rows(arch, "SELECT sha256 FROM segments WHERE id = ?", (segment,))[0]
    return arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha


def faulted(user: str, *args: object, fault: str | None = None, log: Path | None = None):
    """``custodes ARGS`` as ``user`` with a storage fault planned in the archive's service (custodes._faults)."""
    return run_cli_with_faults(*[a if isinstance(a, Path) else str(a) for a in args], user=user, fault=fault, log=log)


def nth_op_on(arch: Path, tmp_path: Path, op: str, target: Path, *args: object) -> int:
    """Which ``op`` of a clean run of ``custodes ARGS`` (as alice, on a copy of ``arch``) touches ``target``:
    the fault plan that fails exactly that one, whatever the checkpoints before it count."""
    copy, log = tmp_path / "probe", tmp_path / "probe.ops"
    copy_archive(arch, copy)
    out = faulted("alice", *[copy if a == arch else a for a in args], log=log)
    assert out.returncode == 0, out.stderr
    moved = copy / target.relative_to(arch)
    hits = [
        int(n)
        for o, n, path in (line.split("\t")[:3] for line in log.read_text().splitlines())
        if o == op and path[1:-1] == str(moved)
    ]
    assert len(hits) == 1, hits
    shutil.rmtree(copy)
    return hits[0]


def verify_json(arch: Path, code: int) -> list[tuple[str, int | None, str | None]]:
    out = run_cli("verify", arch, "--json")
    assert out.returncode == code, out.stderr
    return [(f["kind"], f["segment"], f["object"]) for f in json.loads(out.stdout)["findings"]]


def ledger_of(arch: Path, kind: str) -> list[dict]:
    entries = [json.loads(e) for (e,) in catalog_rows(arch, "SELECT entry FROM ledger ORDER BY seq")]
    return [e for e in entries if e["type"] == kind]


def test_a_purge_stopped_after_its_tombstone_is_incomplete_until_the_next_purge(
    cli_archive: Path, tmp_path: Path
) -> None:
    seg = segment_ids(cli_archive)["androidx-sample.mp4"]  # 2016: long past its 730 days
    obj = object_path(cli_archive, seg)
    sha = obj.name
    rid = purge_request(cli_archive, seg)
    purge = ("retention", "purge", cli_archive, "--request", rid)
    n = nth_op_on(cli_archive, tmp_path, "write", obj, *purge)
    # The unlink fails after phase 1: the tombstone is signed, the footage still on the disk.
    out = faulted("alice", *purge, fault=f"write:{n}:EIO")
    one_line_error(out, rf"input/output error \(.*{sha}\).*run the command again")
    assert obj.read_bytes() == (FOOTAGE / "encoders" / "androidx-sample.mp4").read_bytes()
    assert [(e["segment"], e["sha256"], e["request"]) for e in ledger_of(cli_archive, "purge")] == [(seg, sha, rid)]
    assert ledger_of(cli_archive, "purge_done") == []
    assert verify_json(cli_archive, 1) == [("purge_incomplete", seg, sha)]
    message = json.loads(run_cli("verify", cli_archive, "--json").stdout)["findings"][0]["message"]
    assert f"request {rid}" in message and f"retention purge {cli_archive} --resume" in message
    assert run_cli("ledger", "verify", cli_archive).returncode == 0  # phase 1 was signed before the unlink
    # The same purge again finishes it, and says so (not "purged already").
    again = as_("alice", *purge)
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode() == f"finished the interrupted purge of segment(s) [{seg}]: their bytes are gone now\n"
    assert not obj.exists()
    (done,) = ledger_of(cli_archive, "purge_done")
    assert {k: done[k] for k in ("sha256", "segments", "request", "removed", "by")} == {
        "sha256": sha,
        "segments": [seg],
        "request": rid,
        "removed": True,
        "by": "alice",
    }
    assert verify_json(cli_archive, 0) == []
    # The footage cannot be read afterwards: not from the store, not through a view request.
    view = request(cli_archive, "carol", seg)
    assert as_("bob", "access", "approve", cli_archive, view).returncode == 0
    refused(as_("carol", "access", "open", cli_archive, view, "--segment", seg), f"segment {seg} was purged at")
    # Once finished, a third run says it is purged already and records nothing more.
    third = as_("alice", *purge, "--json")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout) == {"request": rid, "purged": [], "finished": [], "already": [seg]}
    assert len(ledger_of(cli_archive, "purge_done")) == 1


@pytest.mark.parametrize("archive_backend", BACKENDS)
def test_a_clean_purge_records_tombstone_then_removal(cli_archive: Path) -> None:
    seg = segment_ids(cli_archive)["androidx-sample.mp4"]
    (sha,) = catalog_rows(cli_archive, "SELECT sha256 FROM segments WHERE id = ?", (seg,))[0]
    with open_archive(cli_archive) as a:
        assert a.store.stat(sha) is not None
    rid = purge_request(cli_archive, seg)
    out = as_("alice", "retention", "purge", cli_archive, "--request", rid, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"request": rid, "purged": [seg], "finished": [], "already": []}
    with open_archive(cli_archive) as a:
        assert a.store.stat(sha) is None  # gone from the store: the file, or every version of the key
        assert [x for x in a.store.list() if x.digest == sha] == []
    types = [json.loads(e)["type"] for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq")]
    assert types[-3:] == ["access_purge", "purge", "purge_done"]  # the grant, the tombstone, the removal
    assert verify_json(cli_archive, 0) == []
    # Bytes put back after a recorded removal are nobody's lawful act.
    with open_archive(cli_archive) as a:
        plant(a, sha, (FOOTAGE / "encoders" / "androidx-sample.mp4").read_bytes())
    (done,) = catalog_rows(
        cli_archive, "SELECT seq FROM ledger WHERE json_extract(CAST(entry AS TEXT), '$.type') = 'purge_done'"
    )[0]
    report = json.loads(run_cli("verify", cli_archive, "--json").stdout)
    assert [(f["kind"], f["object"], f["ledger_index"]) for f in report["findings"]] == [("unexpected", sha, done)]


def test_resume_finishes_without_a_request_and_records_a_removal_a_crash_left_unrecorded(
    cli_archive: Path, tmp_path: Path
) -> None:
    ids = segment_ids(cli_archive)
    due = [ids["androidx-sample.mp4"], ids["bt601.mov"]]  # both due (2016, 2024-02)
    rid = purge_request(cli_archive, *due)
    # Phase 2 goes in digest order: ``first`` is removed first, ``second`` after it.
    first, second = sorted(due, key=lambda s: object_path(cli_archive, s).name)
    objs = {s: object_path(cli_archive, s) for s in due}
    purge = ("retention", "purge", cli_archive, "--request", rid)
    # A power cut just after the first object's unlink, before its folder's fsync: its bytes are gone, its
    # removal not recorded; the second object was never reached.
    n = nth_op_on(cli_archive, tmp_path, "fsync", objs[first].parent, *purge)
    out = faulted("alice", *purge, fault=f"fsync:{n}:crash")
    assert out.returncode == -9, out.stderr
    assert not objs[first].exists() and objs[second].exists()
    assert verify_json(cli_archive, 1) == [("purge_incomplete", second, objs[second].name)]
    # Neither or both of --request and --resume: a usage error, nothing done.
    one_line_error(as_("bob", "retention", "purge", cli_archive), "give either --request ID .* or --resume")
    one_line_error(as_("bob", "retention", "purge", cli_archive, "--request", rid, "--resume"), "give either")
    assert objs[second].exists()
    # bob (an approver) did not make the request; --resume needs none: the signed tombstones are the decision.
    out = as_("bob", "retention", "purge", cli_archive, "--resume", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"request": None, "purged": [], "finished": sorted(due), "already": []}
    assert not objs[second].exists()
    done = {e["sha256"]: (e["removed"], e["by"], e["request"]) for e in ledger_of(cli_archive, "purge_done")}
    assert done == {objs[first].name: (False, "bob", rid), objs[second].name: (True, "bob", rid)}
    assert verify_json(cli_archive, 0) == []
    out = as_("bob", "retention", "purge", cli_archive, "--resume")
    assert out.returncode == 0 and out.stdout.decode() == "no interrupted purge to finish\n"


def test_every_refused_act_is_an_access_log_row_and_a_ledger_entry(cli_archive: Path, tmp_path: Path) -> None:
    """Each act by the wrong role, and each purge the retention rules refuse: exit 1, one new access-log row
    (who, what, which segment and request, refused) and the ledger entry it points at, saying the same."""
    ids = segment_ids(cli_archive)
    old, recent, clockless = ids["androidx-sample.mp4"], ids["bt601.mov"], ids["go-mp4-sample.mp4"]
    tasks = tmp_path / "tasks.csv"
    tasks.write_text("id,type,start,end,officers,devices\nT1,stop,2024-03-01T10:00:00Z,2024-03-01T10:05:00Z,,BWC0001\n")
    gap = ["--device", "BWC0001", "--from", "2024-03-01T10:00:00Z", "--to", "2024-03-01T10:01:00Z"]

    def refused_and_logged(
        person: str, args: tuple, action: str, segment: int | None, req: int | None, why: str
    ) -> None:
        (last_seq,) = catalog_rows(cli_archive, "SELECT MAX(seq) FROM ledger")[0]
        (last_log,) = catalog_rows(cli_archive, "SELECT COALESCE(MAX(id), 0) FROM access_log")[0]
        refused(as_(person, *args), why)
        rows = catalog_rows(
            cli_archive,
            "SELECT person, action, segment_id, request_id, ok, detail, ledger_seq FROM access_log WHERE id > ?",
            (last_log,),
        )
        assert [r[:5] for r in rows] == [(person, action, segment, req, 0)], rows
        detail, seq = rows[0][5:]
        entries = catalog_rows(cli_archive, "SELECT seq, entry FROM ledger WHERE seq > ?", (last_seq,))
        assert [s for s, _ in entries] == [seq]  # the refusal is the one new entry, and the row points at it
        entry = json.loads(entries[0][1])
        assert {k: entry[k] for k in ("type", "person", "segment", "request", "ok", "detail")} == {
            "type": f"access_{action}",
            "person": person,
            "segment": segment,
            "request": req,
            "ok": False,
            "detail": detail,
        }

    arch = cli_archive
    roles = "needs custodian or approver"
    refused_and_logged(
        "carol", ("retention", "hold", arch, "--segment", old, "--reason", "x"), "hold", old, None, roles
    )
    refused_and_logged("alice", ("retention", "release", arch, "--hold", 1), "release", None, None, "needs approver")
    long_term = ("retention", "long-term", arch, "--segment", old, "--reason", "complaint")
    refused_and_logged("carol", long_term, "long_term", old, None, f"carol may not long_term .{roles}.")
    case = ("retention", "case", arch, "--case", "C-1", "--segment", old)
    # Nobody without a role gets past the service's gate, which logs the refusal under the command's name.
    refused_and_logged("mallory", case, "retention_case", None, None, "mallory has no role in this archive's policy")
    refused_and_logged("carol", ("task", "import", arch, tasks), "task_import", None, None, roles)
    explain = ("gap", "explain", arch, *gap, "--cause", "device_fault")
    refused_and_logged("carol", explain, "gap_explain", None, None, f"carol may not gap_explain .{roles}.")
    classify = ("access", "classify", arch, "--segment", old, "--level", "1")
    refused_and_logged("carol", classify, "classify", old, None, "carol may not classify")
    refused_and_logged("carol", ("retention", "purge", arch, "--resume"), "purge_resume", None, None, roles)
    # Purge: by anyone but a custodian or approver, even under their own approved request; by another
    # person than the requester; and whatever the retention rules keep.
    own = request(arch, "carol", old, purpose="purge")
    assert as_("bob", "access", "approve", arch, own).returncode == 0
    refused_and_logged("carol", ("retention", "purge", arch, "--request", own), "purge", old, own, roles)
    rid = purge_request(arch, old)
    refused_and_logged("dave", ("retention", "purge", arch, "--request", rid), "purge", old, rid, "alice's, not dave's")
    assert as_("alice", "retention", "hold", arch, "--segment", old, "--reason", "court").returncode == 0
    refused_and_logged("alice", ("retention", "purge", arch, "--request", rid), "purge", old, rid, "under hold")
    young = purge_request(arch, clockless)  # no clock: its 730 days run from its ingest, today
    refused_and_logged("alice", ("retention", "purge", arch, "--request", young), "purge", clockless, young, "not due")
    assert as_("alice", "retention", "long-term", arch, "--segment", recent, "--reason", "complaint").returncode == 0
    kept = purge_request(arch, recent)
    refused_and_logged("alice", ("retention", "purge", arch, "--request", kept), "purge", recent, kept, "kept for ever")
    # Nothing was purged, and every refusal is under a signed checkpoint.
    assert ledger_of(arch, "purge") == [] and run_cli("ledger", "verify", arch).returncode == 0


def test_a_long_purge_signs_what_it_removed_as_it_goes(cli_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another command waits only seconds for entries no checkpoint covers before it takes them for another hand's:
    a purge of many objects signs its removals at least every retention.SIGN_EVERY_S (a hostile review: a long
    purge stopped every other command). Set to 0 here, each removal is signed as it is recorded, not only the last.
    In this process, by the library, as the archive's owner: its service stopped and the archive handed to root."""
    from custodes import retention
    from custodes.identity import Caller, acting_as

    ids = segment_ids(cli_archive)
    due = [ids["androidx-sample.mp4"], ids["bt601.mov"]]  # both due (2016, 2024-02)
    rid = purge_request(cli_archive, *due)
    stop_service(cli_archive)
    subprocess.run(["chown", "-R", "root:", str(cli_archive)], check=True)
    monkeypatch.setattr(retention, "SIGN_EVERY_S", 0.0)
    with open_archive(cli_archive) as a, acting_as(Caller(None, "alice", "tool")):
        assert retention.purge(a, rid).purged == sorted(due)
    done = [
        seq
        for (seq, e) in catalog_rows(cli_archive, "SELECT seq, entry FROM ledger ORDER BY seq")
        if json.loads(e)["type"] == "purge_done"
    ]
    signed = {size for (size,) in catalog_rows(cli_archive, "SELECT size FROM checkpoints")}
    assert len(done) == 2 and {seq + 1 for seq in done} <= signed, (done, sorted(signed))


def test_an_act_through_the_library_by_another_account_than_the_archive_s_is_refused(cli_archive: Path) -> None:
    """Without its service, the CLI works on an archive only as its owner; the library did not ask: root purged
    another account's archive in this process, and the checkpoint files it wrote were root's, which the archive's
    own account (its service) could not read, so every later verify failed on them. Now an act is refused first,
    naming both accounts, and nothing is recorded or written."""
    from custodes import retention
    from custodes.archive import NotReadyToRecord
    from custodes.identity import Caller, acting_as
    from custodes.verify import rebuild_catalog

    ids = segment_ids(cli_archive)
    rid = purge_request(cli_archive, ids["androidx-sample.mp4"])  # served: the archive is custodes-svc's
    before = catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger")
    shutil.rmtree(cli_archive / "tmp")  # (made again by the archive's own account: opened by root, it was root's)
    with open_archive(cli_archive) as a, acting_as(Caller(None, "alice", "tool")):
        # The store's writes, below the archive's acts (a fourth review: root wrote a root-owned object).
        data = b"not the archive account's"
        digests = {"sha256": hashlib.sha256(data).hexdigest()}
        with pytest.raises(StoreError, match="runs as root and the store's files belong to custodes-svc"):
            a.store.put_stream(io.BytesIO(data), len(data), digests)
        assert a.store.stat(digests["sha256"]) is None
        with pytest.raises(NotReadyToRecord, match="runs as root and the archive belongs to custodes-svc"):
            retention.purge(a, rid)
        with pytest.raises(NotReadyToRecord, match="nothing was recorded"):
            retention.hold(a, ids["bt601.mov"], "litigation")
        # Nor the writes before an act (a third review): a lost checkpoint file written back, a catalog rebuilt in
        # the live one's place.
        lost = sorted((cli_archive / "ledger" / "checkpoints").iterdir(), key=lambda p: int(p.name))[0]
        kept = lost.read_bytes()
        lost.unlink()
        with pytest.raises(NotReadyToRecord, match="runs as root"):
            a.checkpoint()
        with pytest.raises(NotReadyToRecord, match="runs as root"):  # (public, a fourth review)
            a.restore_checkpoint_files(every_file=True)
        assert not lost.exists()
        with pytest.raises(NotReadyToRecord, match="runs as root"):
            rebuild_catalog(a, replace=True)
    lost.write_bytes(kept)  # (as it was: the archive's own account's file, put back by hand)
    shutil.chown(lost, "custodes-svc", "custodes-svc")
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger") == before
    assert [p for p in cli_archive.rglob("*") if p.owner() == "root"] == []
    assert verify_json(cli_archive, 0) == []
