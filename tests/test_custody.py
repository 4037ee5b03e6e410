"""Access approval and retention through the CLI, including every refusal."""

from __future__ import annotations

import json
from pathlib import Path

from custodes.archive import open_archive
from custodes.verify import verify
from helpers import (
    FOOTAGE,
    PEOPLE_AND_ROOT,
    as_,
    catalog_edit,
    catalog_rows,
    policy_text,
    refused,
    request,
    run_cli,
    set_policy,
)


def test_access_workflow_and_every_refusal(cli_archive: Path, tmp_path: Path) -> None:
    refused(as_("carol", "access", "open", cli_archive, "99", "--segment", "1"), "no access request 99")
    rid = request(cli_archive, "carol", 1, 2)
    refused(as_("carol", "access", "open", cli_archive, rid, "--segment", "1"), "is pending, not approved")
    refused(as_("carol", "access", "approve", cli_archive, rid), "carol is not an approver")
    own = request(cli_archive, "bob", 1)
    refused(as_("bob", "access", "approve", cli_archive, own), "nobody approves their own request")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    opened = as_("carol", "access", "open", cli_archive, rid, "--segment", "1", "--to", tmp_path / "viewed")
    assert opened.returncode == 0
    copy = Path(opened.stdout.decode().strip())
    assert copy.read_bytes() == (FOOTAGE / "encoders" / "androidx-sample.mp4").read_bytes()
    refused(
        as_("carol", "access", "open", cli_archive, rid, "--segment", "3"), r"segment\(s\) \[3\] are not in request"
    )
    refused(as_("dave", "access", "open", cli_archive, rid, "--segment", "1"), "is carol's, not dave's")
    refused(as_("mallory", "access", "open", cli_archive, rid, "--segment", "1"), "mallory has no role")
    refused(
        as_("mallory", "access", "request", cli_archive, "--segment", "1", "--reason", "curious"), "mallory has no role"
    )
    # Classified footage needs a role that may see it (Art. 24).
    refused(as_("carol", "access", "classify", cli_archive, "--segment", "2", "--level", "1"), "carol may not classify")
    assert as_("alice", "access", "classify", cli_archive, "--segment", "2", "--level", "1").returncode == 0
    refused(
        as_("carol", "access", "open", cli_archive, rid, "--segment", "2"),
        r"classified and carol's role may not see them",
    )
    drid = request(cli_archive, "dave", 2)
    assert as_("bob", "access", "approve", cli_archive, drid).returncode == 0
    assert as_("dave", "access", "open", cli_archive, drid, "--segment", "2").returncode == 0
    # Expired and denied requests.
    short = request(cli_archive, "carol", 3)
    # A window of 3.6 ms has run out before carol's command starts (a window of 0 is refused outright).
    assert as_("bob", "access", "approve", cli_archive, short, "--hours", "0.000001").returncode == 0
    refused(as_("carol", "access", "open", cli_archive, short, "--segment", "3"), "expired at")
    no = request(cli_archive, "carol", 3)
    assert as_("bob", "access", "deny", cli_archive, no, "--reason", "not related to the complaint").returncode == 0
    refused(as_("carol", "access", "open", cli_archive, no, "--segment", "3"), "is denied, not approved")
    with open_archive(cli_archive) as a:
        log = catalog_rows(a.root, "SELECT person, action, ok FROM access_log ORDER BY id")
        entries = [json.loads(e)["type"] for (e,) in catalog_rows(a.root, "SELECT entry FROM ledger ORDER BY seq")]
        assert verify(a).ok
    refusals = [(p, act) for p, act, ok in log if not ok]
    # mallory has no role: the service's gate refuses (and logs) her under the command's name.
    assert len(refusals) == 12 and ("carol", "open") in refusals and ("mallory", "access_request") in refusals
    assert ("carol", "open", 1) in log and ("dave", "open", 1) in log
    assert entries.count("access_open") == 9  # every open attempt, allowed or refused, is in the ledger
    assert "access_approve" in entries and "access_deny" in entries and "access_classify" in entries


def purge_request(arch: Path, *segments: int) -> int:
    rid = request(arch, "alice", *segments, purpose="purge")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    return rid


def test_retention_holds_and_lawful_purge(cli_archive: Path) -> None:
    def due_at(at: str) -> list[tuple[str, bool]]:
        out = as_("alice", "retention", "status", cli_archive, "--json", "--at", at)
        assert out.returncode == 0, out.stderr
        return [(s["name"], s["due"]) for s in json.loads(out.stdout)["segments"]]

    # On a fixed clock: the 2016 clip is long past its 730 days; bt601.mov (2024-02-12T19:16:55Z, 1.02 s) is due
    # 730 days after its end, from 2026-02-11T19:16:56.02Z on; go-mp4-sample.mp4 has no clock, so it counts from
    # its ingest (today).
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
    hold = as_("alice", "retention", "hold", cli_archive, "--segment", "1", "--reason", "litigation 2026-3")
    assert hold.returncode == 0
    hold_id = int(hold.stdout.split()[1])
    rid = purge_request(cli_archive, 1)
    refused(as_("alice", "retention", "purge", cli_archive, "--request", rid), "under hold .* nothing overrides a hold")
    refused(as_("alice", "retention", "release", cli_archive, "--hold", hold_id), "needs approver")
    assert as_("bob", "retention", "release", cli_archive, "--hold", hold_id).returncode == 0
    unapproved = request(cli_archive, "alice", 2, purpose="purge")
    refused(as_("alice", "retention", "purge", cli_archive, "--request", unapproved), "pending, not approved")
    assert (
        as_("alice", "retention", "long-term", cli_archive, "--segment", "3", "--reason", "complaint").returncode == 0
    )
    refused(
        as_("alice", "retention", "purge", cli_archive, "--request", purge_request(cli_archive, 3)),
        "kept for ever .*complaint",
    )
    assert as_("alice", "retention", "case", cli_archive, "--case", "C-1", "--segment", "2").returncode == 0
    refused(
        as_("alice", "retention", "purge", cli_archive, "--request", purge_request(cli_archive, 2)),
        "kept for ever .*case C-1",
    )
    due = json.loads(as_("alice", "retention", "due", cli_archive, "--json").stdout)["due"]
    assert [d["segment"] for d in due] == [1]
    out = as_("alice", "retention", "purge", cli_archive, "--request", rid)
    assert out.returncode == 0, out.stderr
    with open_archive(cli_archive) as a:
        sha = catalog_rows(a.root, "SELECT sha256 FROM segments WHERE id = 1")[0][0]
        assert a.store.stat(sha) is None
        assert verify(a).ok  # a lawful purge is not a finding
        tomb = json.loads(
            catalog_rows(a.root, "SELECT l.entry FROM tombstones t JOIN ledger l ON l.seq = t.ledger_seq")[0][0]
        )
        assert (tomb["type"], tomb["sha256"], tomb["by"]) == ("purge", sha, "alice")
    # The card still holds the purged recording: ingesting it again must not bring the bytes back
    # (found by a hostile user: they came back, and verify called the purge interrupted).
    again = as_("alice", "ingest", cli_archive.parent / "BWC0001", "--archive", cli_archive, "--json")
    assert again.returncode == 1, again.stderr  # the same findings as the first ingest (late, no clock)
    name = catalog_rows(cli_archive, "SELECT original_name FROM segments WHERE id = 1")[0][0]
    assert name in json.loads(again.stdout)["already_present"] and json.loads(again.stdout)["stored"] == []
    with open_archive(cli_archive) as a:
        assert a.store.stat(sha) is None
        assert verify(a).ok
        # A purge without a tombstone: an object removed and marked purged behind the ledger's back.
        other = catalog_rows(a.root, "SELECT sha256 FROM segments WHERE id = 2")[0][0]
        path = a.store.path_for(other)
        path.chmod(0o644)
        path.unlink()
        with catalog_edit(a.root) as tx:
            tx.execute("UPDATE objects SET purged_ns = 1 WHERE sha256 = ?", (other,))
    report = json.loads(run_cli("verify", cli_archive, "--json").stdout)
    # The bytes are missing, and the objects row's purge mark is one no ledger entry made (catalog.replay).
    assert sorted((f["kind"], f["object"]) for f in report["findings"]) == [
        ("ledger_mismatch", other),
        ("missing", other),
    ]
    missing = next(f for f in report["findings"] if f["kind"] == "missing")
    assert missing["message"] == "object marked purged, but the ledger has no tombstone for it"


def test_purge_before_due(cli_archive: Path) -> None:
    longer = policy_text(cli_archive).replace("minimum_days = 730", "minimum_days = 36500")
    assert set_policy(cli_archive, longer, user="bob", approver="dave").returncode == 0  # bob proposes, dave approves
    refused(
        as_("alice", "retention", "purge", cli_archive, "--request", purge_request(cli_archive, 1)), "not due until 21"
    )
    assert json.loads(as_("alice", "retention", "due", cli_archive, "--json").stdout)["due"] == []


def test_every_act_needs_its_role_and_every_refusal_is_logged(cli_archive: Path, tmp_path: Path) -> None:
    # Issue 13, part 6: refused holds, releases, purges, task imports and gap explanations left no trace,
    # and task import and gap explain needed no role at all.
    def log() -> list[tuple[str, str, int]]:
        return catalog_rows(cli_archive, "SELECT person, action, ok FROM access_log ORDER BY id")

    def ledgered(action: str) -> list[dict]:
        entries = [json.loads(e) for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq")]
        return [e for e in entries if e["type"] == f"access_{action}"]

    tasks = tmp_path / "tasks.csv"
    tasks.write_text("id,type,start,end,officers,devices\nT1,stop,2024-03-01T10:00:00Z,2024-03-01T10:05:00Z,,BWC0001\n")
    before = len(log())
    refused(
        as_("carol", "task", "import", cli_archive, tasks), "carol may not task_import .needs custodian or approver."
    )
    refused(
        as_(
            "carol",
            "gap",
            "explain",
            cli_archive,
            "--device",
            "BWC0001",
            "--from",
            "2024-03-01T10:00:00Z",
            "--to",
            "2024-03-01T10:01:00Z",
            "--cause",
            "device_fault",
        ),
        "carol may not gap_explain",
    )
    refused(as_("carol", "retention", "hold", cli_archive, "--segment", "1", "--reason", "x"), "carol may not hold")
    refused(as_("alice", "retention", "release", cli_archive, "--hold", "1"), "alice may not release .needs approver.")
    assert log()[before:] == [
        ("carol", "task_import", 0),
        ("carol", "gap_explain", 0),
        ("carol", "hold", 0),
        ("alice", "release", 0),
    ]
    assert [e["person"] for e in ledgered("hold")] == ["carol"] and not ledgered("hold")[0]["ok"]
    assert run_cli("ledger", "verify", cli_archive).returncode == 0  # each refusal is under a signed checkpoint
    # The right roles still may; a purge refused by a hold is logged too.
    assert as_("alice", "task", "import", cli_archive, tasks).returncode == 0
    assert as_("alice", "retention", "hold", cli_archive, "--segment", "1", "--reason", "court").returncode == 0
    rid = purge_request(cli_archive, 1)
    refused(as_("alice", "retention", "purge", cli_archive, "--request", rid), "under hold")
    assert log()[-1] == ("alice", "purge", 0)


def test_retention_status_says_until_when_and_why(cli_archive: Path) -> None:
    # mutmut: the JSON keys and values of `retention status` were asserted nowhere but `due` and `name`.
    ids = dict(catalog_rows(cli_archive, "SELECT original_name, id FROM segments"))
    bt601, clockless = ids["bt601.mov"], ids["go-mp4-sample.mp4"]
    assert as_("alice", "retention", "hold", cli_archive, "--segment", bt601, "--reason", "court").returncode == 0
    long_term = ["--segment", clockless, "--reason", "complaint"]
    assert as_("alice", "retention", "long-term", cli_archive, *long_term).returncode == 0
    out = as_("alice", "retention", "status", cli_archive, "--json", "--at", "2026-02-11T19:16:57Z")
    assert out.returncode == 0, out.stderr
    by_segment = {s["segment"]: s for s in json.loads(out.stdout)["segments"]}
    # bt601.mov ends at 2024-02-12T19:16:56.0201Z (ffprobe: created 19:16:55, 1.0201 s): kept 730 days after.
    assert by_segment[bt601] == {
        "segment": bt601,
        "name": "bt601.mov",
        "keep_until": "2026-02-11T19:16:56.0201Z",
        "reasons": ["minimum 730 days"],
        "holds": [1],
        "purged": False,
        "due": False,  # the hold keeps it
    }
    assert by_segment[clockless]["keep_until"] is None and by_segment[clockless]["due"] is False
    assert by_segment[clockless]["reasons"] == ["minimum 730 days", "long-term: complaint (Art. 20)"]


def test_a_release_is_recorded_whole_and_only_once(cli_archive: Path) -> None:
    # mutmut: release's ledger entry, its catalog row and the "no active hold" refusal were checked nowhere.
    assert as_("alice", "retention", "hold", cli_archive, "--segment", "2", "--reason", "court").returncode == 0
    assert as_("bob", "retention", "release", cli_archive, "--hold", "1").returncode == 0
    (entry,) = [
        json.loads(e)
        for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq")
        if json.loads(e)["type"] == "hold_release"
    ]
    ((released_ns, released_by),) = catalog_rows(cli_archive, "SELECT released_ns, released_by FROM holds WHERE id = 1")
    assert entry == {"type": "hold_release", "hold": 1, "segment": 2, "by": "bob", "time": released_ns}
    assert released_by == "bob"
    for again in ("1", "7"):  # released already; never placed
        out = as_("bob", "retention", "release", cli_archive, "--hold", again)
        assert out.returncode == 2 and out.stderr.decode().strip() == f"custodes: no active hold {again}"
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_case_link_is_recorded_whole_by_a_custodian_or_an_approver_only(cli_archive: Path) -> None:
    # mutmut: link_case's roles, the action its refusal names and its ledger entry's fields were checked nowhere.
    import time
    from datetime import UTC, datetime

    from custodes import retention

    refused(as_("carol", "retention", "case", cli_archive, "--case", "C-5", "--segment", "2"), r"carol may not case")
    (row,) = catalog_rows(cli_archive, "SELECT person, action, ok FROM access_log ORDER BY rowid DESC LIMIT 1")
    assert row == ("carol", "case", 0)
    before = time.time_ns()
    until = "2031-05-01T00:00:00Z"
    out = as_(
        "bob", "retention", "case", cli_archive, "--case", "C-5", "--segment", "2", "--segment", "1", "--until", until
    )
    assert out.returncode == 0, out.stderr
    (entry,) = [
        json.loads(e)
        for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE type = 'retention_change' ORDER BY seq")
        if json.loads(e).get("case") == "C-5"
    ]
    assert before <= entry.pop("time") <= time.time_ns()
    assert entry == {
        "type": "retention_change",
        "case": "C-5",
        "segments": [1, 2],
        "until": int(datetime(2031, 5, 1, tzinfo=UTC).timestamp()) * 10**9,
        "description": "",
        "by": "bob",
    }
    assert run_cli("verify", cli_archive).returncode == 0
    # What is due is worked out at the time asked: nothing in 1970; not the case's recordings before its end; all
    # three (none is held) in 2200.
    with open_archive(cli_archive) as a:
        assert retention.due(a, at=0) == []
        in_2030 = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()) * 10**9
        assert not {s.segment for s in retention.due(a, at=in_2030)} & {1, 2}
        assert {s.segment for s in retention.due(a, at=7_258_118_400 * 10**9)} == {1, 2, 3}


def test_the_library_names_the_lawful_long_term_reasons_and_due_starts_at_keep_until(tmp_path: Path) -> None:
    # mutmut: the refusal of an unknown long-term reason (the CLI's choice list keeps it from the CLI, not from an
    # agency tool calling the library) was checked nowhere, nor a recording exactly at its keep-until time.
    import pytest

    from custodes import retention
    from custodes.archive import init_archive
    from custodes.errors import CustodesError
    from custodes.ingest import ingest

    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "clip.mp4").write_bytes((FOOTAGE / "encoders" / "androidx-sample.mp4").read_bytes())
    arch = tmp_path / "archive"
    init_archive(arch).close()
    assert set_policy(arch, policy_text(arch) + PEOPLE_AND_ROOT).returncode == 0  # root: a custodian, embedded
    with open_archive(arch) as a:
        ingest(a, vol, driver="generic")
        with pytest.raises(CustodesError) as refused_reason:
            retention.long_term(a, 1, "curiosity")
        assert str(refused_reason.value) == (
            "long-term reason must be one of complaint, obstruction_or_assault, mass_incident, other"
        )
        (status,) = retention.status(a, [1])
        assert status.keep_until is not None
        assert (status.due(status.keep_until - 1), status.due(status.keep_until)) == (False, True)
