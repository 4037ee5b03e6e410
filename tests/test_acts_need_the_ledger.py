"""Acts that delete or disclose evidence rest on what the ledger proves, never on catalog rows alone (hostile21
findings 4 and 5): an approval, a hold's release or a tombstone written into catalog.sqlite by hand is refused,
naming the row, and nothing is deleted or exported; the same acts done lawfully (a second person's approval
and release, ledgered) still go through."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import (
    FOOTAGE,
    FORGED_APPROVAL,
    PEOPLE,
    appended_by_hand,
    as_,
    catalog_edit,
    catalog_rows,
    grant,
    hand_back,
    one_line_error,
    policy_text,
    request,
    run_cli,
    set_policy,
)

DAY = 86_400 * 10**9


def alice_holds(arch: Path) -> subprocess.CompletedProcess[bytes]:
    """A custodian's act through the service: a hold on segment 1 (what every refusal below is tried with)."""
    return as_("alice", "retention", "hold", arch, "--segment", "1", "--reason", "case C-9")


def object_of(arch: Path, segment: int) -> Path:
    (sha,) = catalog_rows(arch, "SELECT sha256 FROM segments WHERE id = ?", (segment,))[0]
    return arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha


def entry_types(arch: Path) -> list[str]:
    return [json.loads(e)["type"] for (e,) in catalog_rows(arch, "SELECT entry FROM ledger ORDER BY seq")]


def forge_approval(arch: Path, rid: int, by: str = "bob") -> None:
    """What one UPDATE by anyone who can write catalog.sqlite makes of a pending request: approved by ``by``."""
    now = time.time_ns()
    with catalog_edit(arch) as conn:
        conn.execute(
            "UPDATE access_requests SET status = 'approved', decided_by = ?, decided_ns = ?, valid_from_ns = ?, "
            "valid_until_ns = ? WHERE id = ?",
            (by, now, now, now + DAY, rid),
        )


def refused_unproven(out, row: str, arch: Path) -> str:
    """Refused (exit 1, logged like every refusal) because the ledger does not record ``row``; the message names
    the row and the way on."""
    err = out.stderr.decode()
    assert out.returncode == 1, (out.stdout, err)
    assert "Traceback" not in err, err
    assert re.search(rf"the ledger does not record {re.escape(row)}(?![0-9a-f])", err), err
    assert f"custodes verify {arch}" in err and f"custodes ledger rebuild-catalog {arch} --replace" in err, err
    return err


def clip_volume(where: Path, name: str = "DCIM/bt601.mov", footage: str = "phones/bt601.mov") -> Path:
    """A device volume at ``where`` holding one real recording, as ``name``."""
    (where / name).parent.mkdir(parents=True, exist_ok=True)
    (where / name).write_bytes((FOOTAGE / footage).read_bytes())
    return where


def interrupted_ingest(tmp_path: Path, *phases: str) -> tuple[Path, Path]:
    """(archive, volume): a new archive, and a one-recording volume whose ingest was killed at each of ``phases``
    in turn (custodes._faults.crashpoint), the first after its begin was signed."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    vol = clip_volume(tmp_path / "BWC0001")
    for phase in phases:
        killed = run_cli("ingest", vol, "--archive", arch, env={"CUSTODES_CRASHPOINT": phase})
        assert killed.returncode == -9, killed.stderr
    return arch, vol


def planted_recording(arch: Path, **changes: object) -> bytes:
    """The archive's first recording entry made into another (segment 99, planted.mp4, and ``changes``): what a
    hand that can write catalog.sqlite appends."""
    (raw,) = catalog_rows(arch, "SELECT entry FROM ledger WHERE type = 'ingest' ORDER BY seq LIMIT 1")[0]
    return json.dumps({**json.loads(raw), "segment": 99, "name": "planted.mp4", **changes}).encode()


def test_a_forged_approval_discloses_nothing_and_a_real_one_does(cli_archive: Path, tmp_path: Path) -> None:
    assert as_("alice", "retention", "case", cli_archive, "--case", "C-9", "--segment", "1").returncode == 0
    rid = request(cli_archive, "carol", 1, purpose="export")
    forge_approval(cli_archive, rid)
    bag = tmp_path / "bag"
    out = as_("carol", "export", cli_archive, "--case", "C-9", "--request", rid, "--to", bag)
    err = refused_unproven(out, f"access_requests row {rid}", cli_archive)
    assert "status 'approved' where the ledger says 'pending'" in err
    assert not bag.exists()
    assert "export" not in entry_types(cli_archive)
    (ok,) = catalog_rows(cli_archive, "SELECT ok FROM access_log ORDER BY id DESC LIMIT 1")[0]
    assert ok == 0  # the refusal is in the access log, like every refusal

    # A view request approved in the catalog only opens nothing either.
    view = request(cli_archive, "carol", 1)
    forge_approval(cli_archive, view)
    opened = tmp_path / "opened"
    out = as_("carol", "access", "open", cli_archive, view, "--segment", 1, "--to", opened)
    refused_unproven(out, f"access_requests row {view}", cli_archive)
    assert not opened.exists() or not any(opened.iterdir())

    # An approval of the requester's own request, forged as theirs, is no approval either.
    own = request(cli_archive, "carol", 1, purpose="export")
    forge_approval(cli_archive, own, by="carol")
    out = as_("carol", "export", cli_archive, "--case", "C-9", "--request", own, "--to", bag)
    refused_unproven(out, f"access_requests row {own}", cli_archive)
    assert not bag.exists()

    # The lawful flow: bob approves in the ledger, carol exports.
    lawful = request(cli_archive, "carol", 1, purpose="export")
    assert as_("bob", "access", "approve", cli_archive, lawful).returncode == 0
    out = as_("carol", "export", cli_archive, "--case", "C-9", "--request", lawful, "--to", bag)
    assert out.returncode == 0, out.stderr
    assert (bag / "bagit.txt").is_file()
    assert entry_types(cli_archive).count("export") == 1


def test_a_forged_purge_approval_deletes_nothing_and_a_real_one_does(cli_archive: Path) -> None:
    obj = object_of(cli_archive, 1)  # androidx-sample, 2016: long past its retention
    rid = request(cli_archive, "alice", 1, purpose="purge")
    forge_approval(cli_archive, rid)
    out = as_("alice", "retention", "purge", cli_archive, "--request", rid)
    refused_unproven(out, f"access_requests row {rid}", cli_archive)
    assert obj.is_file()
    assert "purge" not in entry_types(cli_archive)

    lawful = request(cli_archive, "alice", 1, purpose="purge")
    assert as_("bob", "access", "approve", cli_archive, lawful).returncode == 0
    out = as_("alice", "retention", "purge", cli_archive, "--request", lawful, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["purged"] == [1]
    assert not obj.exists()


def test_a_hold_released_in_the_catalog_only_still_holds(cli_archive: Path) -> None:
    obj = object_of(cli_archive, 1)
    assert as_("alice", "retention", "hold", cli_archive, "--segment", 1, "--reason", "court order 12").returncode == 0
    (hold,) = catalog_rows(cli_archive, "SELECT id FROM holds WHERE segment_id = 1")[0]
    with catalog_edit(cli_archive) as conn:
        conn.execute("UPDATE holds SET released_ns = ?, released_by = 'bob' WHERE id = ?", (time.time_ns(), hold))
    rid = request(cli_archive, "alice", 1, purpose="purge")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0  # a real approval: the hold decides
    out = as_("alice", "retention", "purge", cli_archive, "--request", rid)
    err = refused_unproven(out, f"holds row {hold}", cli_archive)
    assert "segment 1 is under a hold in the ledger" in err
    assert obj.is_file()
    assert "purge" not in entry_types(cli_archive)

    # The way out the message names: the catalog made from the ledger again (the hold is back), then a release
    # by an approver, in the ledger; the purge then goes through.
    rebuilt = as_("alice", "ledger", "rebuild-catalog", cli_archive, "--replace")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert catalog_rows(cli_archive, "SELECT released_ns FROM holds WHERE id = ?", (hold,)) == [(None,)]
    assert as_("bob", "retention", "release", cli_archive, "--hold", hold).returncode == 0
    out = as_("alice", "retention", "purge", cli_archive, "--request", rid, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["purged"] == [1]
    assert not obj.exists()


def test_a_hold_hidden_from_the_type_index_still_holds(cli_archive: Path) -> None:
    """The hold's entry left whole but filed under no type (the ledger's ``type`` column set to NULL), its catalog
    row released by hand, and a purge approved lawfully: the lookup by type found no hold and the held recording
    was deleted (hostile22). Any entry filed otherwise now stops the act, naming it."""
    obj = object_of(cli_archive, 1)
    assert as_("alice", "retention", "hold", cli_archive, "--segment", 1, "--reason", "court order 7").returncode == 0
    rid = request(cli_archive, "alice", 1, purpose="purge")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    with catalog_edit(cli_archive) as conn:
        conn.execute("UPDATE holds SET released_ns = ?, released_by = 'bob'", (time.time_ns(),))
        conn.execute("UPDATE ledger SET type = NULL WHERE type = 'hold'")
    out = as_("alice", "retention", "purge", cli_archive, "--request", rid)
    err = out.stderr.decode()
    assert out.returncode == 2 and "Traceback" not in err, err
    assert re.search(r"ledger entry \d+ is filed as None but is a 'hold' entry", err), err
    assert obj.is_file()
    assert "purge" not in entry_types(cli_archive)


def forge_tombstone(arch: Path, segment: int, trigger: bool = False) -> str:
    """A tombstone and a purge mark written into the catalog by hand, with no purge request, approval or entry."""
    (sha,) = catalog_rows(arch, "SELECT sha256 FROM segments WHERE id = ?", (segment,))[0]
    (last,) = catalog_rows(arch, "SELECT MAX(seq) FROM ledger")[0]
    now = time.time_ns()
    with catalog_edit(arch) as conn:
        conn.execute("INSERT INTO tombstones VALUES (?, ?, 1, 'bob', ?, ?)", (sha, json.dumps([segment]), now, last))
        conn.execute("UPDATE segments SET purged_ns = ? WHERE id = ?", (now, segment))
        if trigger:
            conn.execute("CREATE TRIGGER planted AFTER INSERT ON findings BEGIN SELECT 1; END")
    return sha


def test_a_forged_tombstone_removes_nothing(cli_archive: Path) -> None:
    obj = object_of(cli_archive, 1)
    sha = forge_tombstone(cli_archive, 1)
    before = entry_types(cli_archive)
    out = as_("bob", "retention", "purge", cli_archive, "--resume")
    refused_unproven(out, f"tombstones row {sha}", cli_archive)
    assert obj.is_file()
    assert entry_types(cli_archive) == [*before, "access_purge_resume"]  # the refusal, and no purge_done


def test_resume_on_a_catalog_whose_schema_differs_refuses_before_removing(cli_archive: Path) -> None:
    obj = object_of(cli_archive, 1)
    forge_tombstone(cli_archive, 1, trigger=True)
    out = run_cli("retention", "purge", cli_archive, "--resume", user="bob")
    one_line_error(out, "custodes writes nothing into this catalog.*trigger planted")
    assert obj.is_file()


def test_a_tombstone_copied_from_the_ledger_removes_no_bytes_a_kept_recording_needs(
    make_cli_archive: Callable[..., Path],
) -> None:
    """Two recordings of one object (the same bytes under two names): the lawful purge of one leaves the object,
    since the other needs it. A tombstone written by hand as the ledger's purge entry of the first would make it,
    with the second marked purged in the catalog only, proves the row but not the second recording's purge."""
    clip = FOOTAGE / "encoders" / "androidx-sample.mp4"
    arch = make_cli_archive(recordings={"a.mp4": clip, "b.mp4": clip}, ingest_exit=(0, 1))
    first, second = (s for (s,) in catalog_rows(arch, "SELECT id FROM segments ORDER BY id"))
    obj = object_of(arch, first)
    assert object_of(arch, second) == obj
    rid = request(arch, "alice", first, purpose="purge")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    out = as_("alice", "retention", "purge", arch, "--request", rid)
    assert out.returncode == 0, out.stderr
    assert obj.is_file() and catalog_rows(arch, "SELECT COUNT(*) FROM tombstones") == [(0,)]
    (entry,) = [
        (seq, json.loads(e))
        for seq, e in catalog_rows(arch, "SELECT seq, entry FROM ledger ORDER BY seq")
        if json.loads(e)["type"] == "purge"
    ]
    seq, e = entry
    with catalog_edit(arch) as conn:
        conn.execute(
            "INSERT INTO tombstones VALUES (?, ?, ?, ?, ?, ?)",
            (e["sha256"], json.dumps([first]), e["request"], e["by"], e["time"], seq),
        )
        conn.execute("UPDATE segments SET purged_ns = ? WHERE id = ?", (e["time"], second))
    out = as_("bob", "retention", "purge", arch, "--resume")
    err = refused_unproven(out, f"the purge of segments rows [{second}]", arch)
    assert obj.name in err
    assert obj.is_file()


def test_a_policy_hidden_from_the_type_index_does_not_make_the_owner_alone(tmp_path: Path) -> None:
    """The latest policy entry (the one naming approvers) filed under no type: the first policy, naming nobody,
    was in force again and the owner, alone by that rule, set a policy naming himself approver (hostile22)."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    first = policy_text(arch)
    assert set_policy(arch, first + PEOPLE).returncode == 0  # the owner's bootstrap: approvers named
    with catalog_edit(arch) as conn:
        conn.execute("UPDATE ledger SET type = NULL WHERE seq = (SELECT MAX(seq) FROM ledger WHERE type = 'policy')")
    out = set_policy(arch, first + '[people]\nroot = "approver"\n')
    err = out.stderr.decode()
    assert out.returncode == 2 and "Traceback" not in err, err
    assert "is filed as None but is a 'policy' entry" in err, err


def test_an_entry_naming_a_key_twice_is_not_custodes_json(cli_archive: Path) -> None:
    """An entry whose JSON names "type" twice: Python's parser takes the last, SQLite's json_extract the first, so
    the replay read it as a repair while the catalog's queries filed and read it as a policy (a hostile review:
    its text was the policy in force). verify names it: not custodes' JSON."""
    data = b'{"action":"set","text":"x","type":"policy","type":"storage_repair"}'
    seq = appended_by_hand(cli_archive, data, "policy")
    out = run_cli("verify", cli_archive, "--json")
    assert out.returncode == 1, out.stderr
    said = [f["message"] for f in json.loads(out.stdout)["findings"] if f["kind"] == "ledger_mismatch"]
    assert f"ledger entry {seq} not custodes' JSON: it names the key 'type' twice" in "\n".join(said), said


def test_an_entry_written_into_the_ledger_table_is_signed_by_no_command_but_a_person_s(cli_archive: Path) -> None:
    """An approval appended to the ledger table by hand, with its correct leaf hash: the next command's checkpoint
    signed it into the history (a hostile review; entries carry no mark of their own). Now verify names each entry
    no checkpoint covers, by index and type; every command that would record refuses, nothing recorded, naming
    them (the web page's, the service's and the CLI's alike: one rule, Archive.ready_to_record); only `custodes
    ledger checkpoint`, a person's look at them, signs them."""
    seq = appended_by_hand(cli_archive, FORGED_APPROVAL, "access_approve")
    out = run_cli("verify", cli_archive, "--json")
    assert out.returncode == 1, out.stderr
    (found,) = [f for f in json.loads(out.stdout)["findings"] if "not covered by any signed checkpoint" in f["message"]]
    assert f"entries {seq} (access_approve)" in found["message"], found
    assert "written into the ledger table by hand" in found["message"], found
    assert "custodes records nothing more while they are there" in found["message"], found
    size = catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger")[0][0]
    refused = alice_holds(cli_archive)
    one_line_error(refused, rf"entries no checkpoint covers .*\({seq} \(access_approve\)\): nothing was recorded")
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger")[0][0] == size
    assert catalog_rows(cli_archive, "SELECT MAX(size) FROM checkpoints")[0][0] == seq  # not signed
    # The person who looked signs it: a custodian through the service (root, with no role, ran it only while the
    # gate let through a refusal it could not record, which it refuses since: a third hostile review).
    assert as_("alice", "ledger", "checkpoint", cli_archive).returncode == 0
    assert catalog_rows(cli_archive, "SELECT MAX(size) FROM checkpoints")[0][0] == seq + 1
    assert alice_holds(cli_archive).returncode == 0


def test_an_entry_with_no_type_is_named_so(cli_archive: Path) -> None:
    """An entry that is not custodes' (no type) appended by hand, filed under a type: the refusal named it
    "(?)", and the next one "a None entry"."""
    seq = appended_by_hand(cli_archive, json.dumps({"note": "evil"}).encode(), "note")
    for _ in range(2):
        refused = alice_holds(cli_archive)
        text = refused.stderr.decode()
        assert refused.returncode == 2 and "None" not in text and "(?)" not in text, text
        assert f"{seq} (no type)" in text, text
    hand_back(cli_archive)
    from custodes.archive import open_archive
    from custodes.catalog.ledger import MisfiledError

    with open_archive(cli_archive) as a, pytest.raises(MisfiledError, match=rf"{seq} is filed as 'note' but is not a"):
        a.catalog.ledger.require_filed()  # (an act resting on a lookup by type checks so first)


def test_a_checkpoints_row_written_by_hand_covers_nothing(cli_archive: Path) -> None:
    """The forged entry with a checkpoints row of its own making (the size past it, any note: only the key signs
    a note): the row signs nothing, and the command refuses as without it."""
    seq = appended_by_hand(cli_archive, FORGED_APPROVAL, "access_approve")
    with catalog_edit(cli_archive) as conn:
        (note, frontier) = conn.execute("SELECT note, frontier FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        conn.execute(
            "INSERT INTO checkpoints (size, root, note, created_ns, frontier) VALUES (?, ?, ?, ?, ?)",
            (seq + 1, b"\0" * 32, note, time.time_ns(), frontier),
        )
    refused = alice_holds(cli_archive)
    one_line_error(refused, rf"entries no checkpoint covers .*\({seq} \(access_approve\)\): nothing was recorded")


def test_an_entry_written_by_hand_while_a_command_acts_is_not_signed_and_its_act_is_left_unsigned(
    tmp_path: Path,
) -> None:
    """The forged entry arrives after a command's check and before its act (the library: an agency tool holds an
    archive open): the act is recorded after it, and its checkpoint signs the ledger only up to the forged entry;
    the command's own entries stand unsigned (UnsignedEntriesError says so, and not to act again)."""
    from custodes.archive import UnsignedEntriesError, open_archive
    from custodes.devices import RegisteredDevice, register_devices

    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    grant(arch, "custodian")
    with open_archive(arch) as archive:
        archive.ready_to_record()  # (its first act's check, passed)
        archive._ready = True
        seq = appended_by_hand(arch, FORGED_APPROVAL, "access_approve")
        started = time.monotonic()
        with pytest.raises(UnsignedEntriesError, match=rf"\({seq} \(access_approve\)\).*entries {seq + 1}\.\.") as e:
            register_devices(archive, [RegisteredDevice("BWC-1", "body_camera")])
        assert "do not do it again" in str(e.value) and time.monotonic() - started >= 3.0  # (others were waited for)
    assert catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0] == seq


def test_a_command_waits_for_another_to_sign_what_it_recorded(tmp_path: Path) -> None:
    """Two commands at once: one recorded its entry and has not signed it yet (here it takes 1.5 s) when the other
    comes to act. That entry is no forgery: the second waits for the first's checkpoint, then acts and signs its
    own; both stand, signed, and verify finds nothing."""
    from custodes.archive import open_archive
    from custodes.devices import RegisteredDevice, register_devices

    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    grant(arch, "custodian")
    size = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")[0][0]
    script = tmp_path / "slow_to_sign.py"
    script.write_text(
        "import sys, time\n"
        "from custodes.archive import Archive, open_archive\n"
        "from custodes.devices import RegisteredDevice, register_devices\n"
        "plain = Archive.checkpoint\n"
        "def slow(self, **kw):\n"
        "    time.sleep(1.5)\n"
        "    return plain(self, **kw)\n"
        "Archive.checkpoint = slow\n"
        "with open_archive(sys.argv[1]) as a:\n"
        "    register_devices(a, [RegisteredDevice('BWC-1', 'body_camera')])\n"
    )
    first = subprocess.Popen([sys.executable, str(script), str(arch)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while catalog_rows(arch, "SELECT COUNT(*) FROM ledger")[0][0] == size and time.monotonic() < deadline:
        time.sleep(0.02)
    with open_archive(arch) as a:
        assert a.catalog.checkpoints.latest()[0] == size  # (its entry is there, not signed yet)
        register_devices(a, [RegisteredDevice("BWC-2", "body_camera")])
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0] == size + 2
    assert run_cli("verify", arch).returncode == 0


def test_two_commands_whose_entries_interleave_both_sign_them(tmp_path: Path) -> None:
    """A command that records twice before its checkpoint (a purge's two phases, a repair) and a one-entry command
    recording between the two, each in its own process: each waited for the other to sign first, and both left
    their entries unsigned after 3 s (a hostile review). Now each signs what comes before the other's entry
    before it waits: both sign theirs, and the ledger is whole and signed."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    common = (
        "import sys, time\n"
        "from custodes.archive import open_archive\n"
        "from custodes.catalog import replay\n"
        "a = open_archive(sys.argv[1])\n"
        "def entry(n):\n"
        "    with a.transaction() as tx:\n"
        "        replay.record(tx, {'type': 'storage_check', 'n': n, 'time': time.time_ns()})\n"
    )
    (tmp_path / "twice.py").write_text(common + "entry(1)\ntime.sleep(1.0)\nentry(3)\na.checkpoint()\n")
    # Entry 2 waits for entry 1 to be there (it slept 0.4 s, and on a loaded machine the other process's start took
    # longer: [2, 1, 3], in a fresh clone's run beside other work).
    (tmp_path / "between.py").write_text(
        common + "a.ready_to_record()\na._ready = True\nbefore = a.catalog.ledger.next_index()\n"
        "print('ready', flush=True)\nsys.stdin.readline()\ndeadline = time.monotonic() + 30\n"
        "while a.catalog.ledger.next_index() == before and time.monotonic() < deadline:\n    time.sleep(0.01)\n"
        "entry(2)\na.checkpoint()\n"
    )
    between = subprocess.Popen(
        [sys.executable, str(tmp_path / "between.py"), str(arch)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert between.stdout is not None and between.stdout.readline() == b"ready\n"  # checked before the first entry
    twice = subprocess.Popen([sys.executable, str(tmp_path / "twice.py"), str(arch)], stderr=subprocess.PIPE)
    between.communicate(b"go\n", timeout=60)
    _, err = twice.communicate(timeout=60)
    assert (between.returncode, twice.returncode) == (0, 0), (between.stderr, err)
    kinds = [json.loads(e)["n"] for (e,) in catalog_rows(arch, "SELECT entry FROM ledger WHERE type = 'storage_check'")]
    assert kinds == [1, 2, 3]  # interleaved as meant
    assert catalog_rows(arch, "SELECT (SELECT COUNT(*) FROM ledger) = (SELECT MAX(size) FROM checkpoints)") == [(1,)]
    assert run_cli("verify", arch).returncode == 0


def test_entries_numbered_by_hand_outside_the_ledger_are_no_proof_and_cannot_be_signed(cli_archive: Path) -> None:
    """An approval (and its request) inserted at negative indexes, which no check past the latest checkpoint saw
    and the lookup of an act's proofs read: a purge went through on it (a hostile review). A ledger whose
    indexes are not 0 to n-1 now stops every act, and `ledger checkpoint` too: only a backup puts it right."""
    with catalog_edit(cli_archive) as conn:
        conn.execute(
            "INSERT INTO ledger (seq, entry, leaf, type) VALUES (-1, ?, ?, 'access_approve')",
            (FORGED_APPROVAL, hashlib.sha256(b"\0" + FORGED_APPROVAL).digest()),
        )
    refused = alice_holds(cli_archive)
    one_line_error(refused, r"rows at indexes below 0 .*restore catalog.sqlite from a backup; nothing was recorded")
    with catalog_edit(cli_archive) as conn:  # a gap instead
        conn.execute("UPDATE ledger SET seq = (SELECT MAX(seq) + 5 FROM ledger) WHERE seq = -1")
    one_line_error(run_cli("ledger", "checkpoint", cli_archive), r"4 indexes missing between \d+ and \d+")


def test_a_long_running_process_signs_nothing_over_checkpoints_removed_from_the_catalog(tmp_path: Path) -> None:
    """The archive service recorded and signed an act; the entry was then rewritten in place and the checkpoint
    that signed it removed from catalog.sqlite: the service's next request signed the rewritten entry as its own
    (a hostile review: its own entries were known by index alone). A process keeps what it saw signed, and its
    entries' leaves: it signs nothing over such a catalog, nor records."""
    from custodes.archive import CheckpointsGoneError, open_archive
    from custodes.devices import RegisteredDevice, register_devices

    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    grant(arch, "custodian")
    with open_archive(arch) as a:  # one request of a service
        register_devices(a, [RegisteredDevice("BWC-1", "body_camera")])
    (seq,) = catalog_rows(arch, "SELECT MAX(seq) FROM ledger")[0]
    with catalog_edit(arch) as conn:
        conn.execute(
            "UPDATE ledger SET entry = ?, leaf = ? WHERE seq = ?",
            (FORGED_APPROVAL, hashlib.sha256(b"\0" + FORGED_APPROVAL).digest(), seq),
        )
        conn.execute("DELETE FROM checkpoints WHERE size = ?", (seq + 1,))
    size = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")[0][0]
    with open_archive(arch) as a, pytest.raises(CheckpointsGoneError, match=rf"reach {seq} ledger entries, but"):
        register_devices(a, [RegisteredDevice("BWC-2", "body_camera")])  # the next request
    counted = "SELECT (SELECT COUNT(*) FROM ledger), (SELECT MAX(size) FROM checkpoints)"
    assert catalog_rows(arch, counted) == [(size, seq)]  # nothing recorded, nothing signed


@pytest.mark.parametrize("how", ["reopened", "begun by hand"])
def test_entries_forged_as_an_unfinished_ingest_s_are_not_work_in_flight(cli_archive: Path, how: str) -> None:
    """An unfinished ingest's entries past the latest checkpoint are work in flight, which another command's
    checkpoint signs. A recording appended by hand as an ingest's, with that ingest made unfinished in the catalog
    (its row reopened, or a begin and a row of a new one written by hand), was signed so (a hostile review).
    Only an ingest whose begin a checkpoint signed, and whose end none did, is under way (by the signed ledger)."""
    planted = json.loads(planted_recording(cli_archive, officer="007"))
    if how == "begun by hand":
        (begin,) = catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE type = 'ingest_begin' LIMIT 1")[0]
        forged_begin = {**json.loads(begin), "ingest": 9, "device": "BWC-99"}
        appended_by_hand(cli_archive, json.dumps(forged_begin).encode(), "ingest_begin")
        with catalog_edit(cli_archive) as conn:
            conn.execute(
                "INSERT INTO ingests (id, volume, driver, device_id, started_ns) VALUES (9, 'v', 'generic', ?, 1)",
                (json.loads(begin)["device"],),
            )
        planted["ingest"] = 9
    else:
        with catalog_edit(cli_archive) as conn:
            conn.execute("UPDATE ingests SET finished_ns = NULL WHERE id = ?", (planted["ingest"],))
    seq = appended_by_hand(cli_archive, json.dumps(planted).encode(), "ingest")
    refused = alice_holds(cli_archive)
    one_line_error(refused, rf"no checkpoint covers .*{seq} \(ingest\)\): nothing was recorded")
    assert catalog_rows(cli_archive, "SELECT MAX(size) FROM checkpoints")[0][0] <= seq - (how == "begun by hand")


def test_an_interrupted_ingest_finished_by_its_re_run_has_no_work_in_flight_left(tmp_path: Path) -> None:
    """An ingest killed after its begin was signed is under way until its re-run finishes it; the re-run ended only
    its own ingest in the ledger, so the killed one stayed under way for good, and a recording appended by hand as
    its entry was signed by the next command (an open door ever after, a review of the rule). The re-run's end
    names the ingests it finishes, and none of them has work in flight once it is signed."""
    arch, vol = interrupted_ingest(tmp_path, "after_commit")  # its file in
    again = run_cli("ingest", vol, "--archive", arch, "--json")
    assert again.returncode in (0, 1) and json.loads(again.stdout)["ingest"] == 2, again.stderr
    ends = [json.loads(e) for (e,) in catalog_rows(arch, "SELECT entry FROM ledger WHERE type = 'ingest_end'")]
    assert [(e["ingest"], e.get("finishes")) for e in ends] == [(2, [1])], ends
    seq = appended_by_hand(arch, planted_recording(arch, ingest=1), "ingest")
    other = clip_volume(tmp_path / "BWC0002", "clip.mp4", "encoders/androidx-sample.mp4")
    refused = run_cli("ingest", other, "--archive", arch)
    one_line_error(refused, rf"no checkpoint covers .*{seq} \(ingest\)\): nothing was recorded")
    assert catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0] == seq  # not signed


def test_verify_names_an_ingest_that_began_and_never_ended(tmp_path: Path) -> None:
    """An ingest killed after its first group, its entries then signed by another volume's ingest (work in flight):
    verify said intact with nothing pending (a second review, where the re-run came under another device id),
    though the ingest is open and its later entries would pass for work in flight. It is named, with its re-run."""
    arch, vol = interrupted_ingest(tmp_path, "after_commit")
    other = clip_volume(tmp_path / "BWC0002", "clip.mp4", "encoders/androidx-sample.mp4")
    assert run_cli("ingest", other, "--archive", arch).returncode in (0, 1)
    out = run_cli("verify", arch, "--json")
    found = json.loads(out.stdout)["findings"]
    assert [f["kind"] for f in found] == ["pending"], found
    assert found[0]["message"].startswith("ingest 1 began and has not ended (under way, or interrupted)"), found
    assert f"custodes ingest {vol}" in found[0]["message"], found


def test_an_entry_of_an_ingest_after_an_end_of_it_is_no_work_in_flight(tmp_path: Path) -> None:
    """Ingest 1 killed, its re-run (2) killed after writing its end (finishes [1], unsigned), then a recording
    appended by hand as ingest 1's: the next run signed it as ingest 1's work in flight (a second review). An entry
    after an end of its ingest, signed or not, is no work of it."""
    arch, vol = interrupted_ingest(tmp_path, "after_commit", "before_checkpoint")
    (end,) = catalog_rows(arch, "SELECT entry FROM ledger WHERE type = 'ingest_end'")[0]
    assert json.loads(end)["finishes"] == [1]
    seq = appended_by_hand(arch, planted_recording(arch, ingest=1), "ingest")
    refused = run_cli("ingest", vol, "--archive", arch)
    one_line_error(refused, rf"no checkpoint covers .*{seq} \(ingest\)\): nothing was recorded")
    assert catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0] <= seq


def test_an_entry_put_in_as_the_running_ingest_s_own_is_not_signed_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recording appended by hand as the entry of an ingest while it runs (a second review): it named an ingest
    under way, so the ingest's own checkpoint signed it as work in flight. Every entry of an ingest this process
    runs is its own: another is put in by another hand, left unsigned, and the ingest says its own act stands."""
    import custodes.ingest as ingest_mod
    from custodes.archive import UnsignedEntriesError, init_archive, open_archive

    arch = tmp_path / "archive"
    init_archive(arch).close()
    vol = clip_volume(tmp_path / "BWC0001", "clip.mov")
    recorded, planted_at = ingest_mod._record_group, []

    def record_then_plant(archive: object, result: object, *args: object) -> object:
        out = recorded(archive, result, *args)  # type: ignore[arg-type]
        planted_at.append(appended_by_hand(arch, planted_recording(arch), "ingest"))  # this ingest's id
        return out

    monkeypatch.setattr(ingest_mod, "_record_group", record_then_plant)
    with open_archive(arch) as a, pytest.raises(UnsignedEntriesError) as e:
        ingest_mod.ingest(a, vol, driver="generic")
    assert f"({planted_at[0]} (ingest))" in str(e.value) and "stands (do not do it again)" in str(e.value)
    assert catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0] == planted_at[0]


def test_an_entry_whose_leaf_is_not_its_text_is_signed_by_no_one(tmp_path: Path) -> None:
    """An entry appended by hand with a leaf that is not its text's hash: as an interrupted ingest's entry it was
    work in flight, signed by the next command, and `ledger checkpoint` signed it too (a hostile review): a signed
    root no entry proves. The first is an entry another hand put there; the second refuses, signing nothing."""
    arch, _ = interrupted_ingest(tmp_path, "after_commit")  # ingest 1 under way: its begin signed, no end
    planted = planted_recording(arch)
    (seq,) = catalog_rows(arch, "SELECT MAX(seq) + 1 FROM ledger")[0]
    with catalog_edit(arch) as conn:
        conn.execute("INSERT INTO ledger VALUES (?, ?, ?, 'ingest')", (seq, planted, hashlib.sha256(b"x").digest()))
    other = clip_volume(tmp_path / "BWC0002", "clip.mp4", "encoders/androidx-sample.mp4")
    refused = run_cli("ingest", other, "--archive", arch)
    one_line_error(refused, rf"no checkpoint covers .*{seq} \(ingest\)\): nothing was recorded")
    signed = catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0]
    out = run_cli("ledger", "checkpoint", arch)
    one_line_error(out, rf"ledger entries {seq} of .* do not match their leaf hashes .*: nothing was signed")
    assert catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0] == signed


@pytest.mark.parametrize("leaf_too", [False, True])
def test_a_finished_ingest_whose_end_was_rewritten_is_not_under_way(cli_archive: Path, leaf_too: bool) -> None:
    """A recording appended by hand as finished ingest 1's, with the text of its signed end rewritten to name
    another ingest (its leaf kept, or rewritten with it; to be put back after): ingest 1 looked under way and any
    command signed the forgery (a second and a third hostile review). The signed part is held to its signed root,
    and each signed begin and end to its leaf: any of it edited, no ingest is under way."""
    seq = appended_by_hand(cli_archive, planted_recording(cli_archive), "ingest")
    ((end, text),) = catalog_rows(
        cli_archive, "SELECT seq, CAST(entry AS TEXT) FROM ledger WHERE type = 'ingest_end' AND seq < ? LIMIT 1", (seq,)
    )
    other = json.dumps({**json.loads(text), "ingest": 99}).encode()
    with catalog_edit(cli_archive) as conn:
        conn.execute("UPDATE ledger SET entry = ? WHERE seq = ?", (other, end))
        if leaf_too:
            conn.execute("UPDATE ledger SET leaf = ? WHERE seq = ?", (hashlib.sha256(b"\0" + other).digest(), end))
    refused = alice_holds(cli_archive)
    one_line_error(refused, rf"no checkpoint covers .*{seq} \(ingest\)\): nothing was recorded")


def test_checkpoints_removed_from_the_catalog_but_named_by_ledger_checkpoint_stop_every_act(cli_archive: Path) -> None:
    """The latest checkpoint's row removed from catalog.sqlite (its file, ledger/checkpoint, left): entries it
    signed look unsigned, those of a finished ingest under way again (a second hostile review: rewritten, they were
    signed by the next command). A fresh process reads what ledger/checkpoint signs: it refuses; the person who
    put an older catalog back on purpose signs it as it is with ledger checkpoint."""
    (top,) = catalog_rows(cli_archive, "SELECT MAX(size) FROM checkpoints")[0]
    with catalog_edit(cli_archive) as conn:
        conn.execute("DELETE FROM checkpoints WHERE size = ?", (top,))
    (now,) = catalog_rows(cli_archive, "SELECT MAX(size) FROM checkpoints")[0]
    refused = alice_holds(cli_archive)
    one_line_error(refused, rf"reach {now} ledger entries, but {top} were signed .*ledger checkpoint")
    assert as_("alice", "ledger", "checkpoint", cli_archive).returncode == 0
    assert alice_holds(cli_archive).returncode == 0


def test_an_archive_without_its_latest_checkpoint_file_records_nothing(cli_archive: Path) -> None:
    """ledger/checkpoint removed (with the checkpoints above a finished ingest's begin: what it signed could then be
    rewritten and signed again by the next command, a third hostile review), or replaced by something no key of
    the archive signed: nothing is recorded beside it until a person signs again."""
    (cli_archive / "ledger" / "checkpoint").unlink()
    refused = alice_holds(cli_archive)
    one_line_error(refused, r"ledger/checkpoint holds no checkpoint the catalog's keys signed .*ledger checkpoint")
    assert as_("alice", "ledger", "checkpoint", cli_archive).returncode == 0
    assert alice_holds(cli_archive).returncode == 0


def test_an_ingest_whose_latest_checkpoint_file_is_replaced_while_it_runs_says_its_files_stand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ledger/checkpoint replaced while an ingest recorded its files: its closing checkpoint refused, saying
    "nothing was recorded or signed" of an ingest whose files were all recorded (a hostile review). At the
    checkpoint after an act, it says the act stands, not signed; the ingest's result says what was stored."""
    import custodes.ingest as ingest_mod
    from custodes.archive import LatestCheckpointError, init_archive, open_archive

    arch = tmp_path / "archive"
    init_archive(arch).close()
    vol = clip_volume(tmp_path / "BWC0001", "clip.mov")
    recorded = ingest_mod._record_group

    def record_then_replace(*args: object) -> object:
        out = recorded(*args)  # type: ignore[arg-type]
        (arch / "ledger" / "checkpoint").write_text("garbage\n")
        return out

    monkeypatch.setattr(ingest_mod, "_record_group", record_then_replace)
    with open_archive(arch) as a, pytest.raises(LatestCheckpointError) as e:
        ingest_mod.ingest(a, vol, driver="generic")
    assert "what this command recorded stands, not signed (do not do it again)" in str(e.value), e.value
    assert e.value.kind == "latest_checkpoint"  # (ingest --json's error.kind: "archive" before, as many others)
    assert "nothing was recorded" not in str(e.value)
    assert e.value.done is not None and e.value.done.stored == ["clip.mov"]  # type: ignore[attr-defined]


def test_a_checkpoint_whose_transaction_failed_is_not_taken_for_one_removed(tmp_path: Path) -> None:
    """A checkpoint's transaction that does not commit (a full disk at its COMMIT) signed nothing: the process
    took it for signed, and every later request of the service said checkpoints had been removed (a second
    hostile review). What a transaction signs is seen signed only once it commits."""
    from custodes.catalog import Catalog

    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    with Catalog.open(arch / "catalog.sqlite") as catalog:
        signed = catalog.ledger.own.signed
        with pytest.raises(RuntimeError), catalog.transaction():
            catalog.ledger.signing(signed + 5)
            raise RuntimeError("the COMMIT failed")
        assert catalog.ledger.own.signed == signed
        with catalog.transaction():
            catalog.ledger.signing(signed + 5)
        assert catalog.ledger.own.signed == signed + 5


def forging_after(tmp_path: Path, module: str, step: str) -> Path:
    """A script that runs the CLI with ``custodes.MODULE.STEP`` followed, each time it returns, by an entry appended
    to the ledger table by hand (a storage check, with its right leaf): an entry put in while the command acts."""
    forged = json.dumps({"type": "storage_check", "time": 1}).encode()
    script = tmp_path / "forged_meanwhile.py"
    script.write_text(
        "import hashlib, sqlite3, sys\n"
        f"import custodes.{module} as acting\n"
        "from custodes.cli import main\n"
        f"step = acting.{step}\n"
        "def step_then_forge(archive, *args):\n"
        "    out = step(archive, *args)\n"
        "    with sqlite3.connect(archive.root / 'catalog.sqlite') as db:\n"
        f"        data = {forged!r}\n"
        "        db.execute('INSERT INTO ledger (seq, entry, leaf, type) VALUES ((SELECT MAX(seq) + 1 FROM ledger), "
        "?, ?, ?)', (data, hashlib.sha256(b'\\0' + data).digest(), 'storage_check'))\n"
        "    return out\n"
        f"acting.{step} = step_then_forge\n"
        "main(sys.argv[1:])\n"
    )
    return script


def test_an_export_beside_an_entry_put_in_while_it_ran_fails_whole(cli_archive: Path, tmp_path: Path) -> None:
    """An entry appended by hand while an export staged its bag: the export's checkpoint signed nothing past it, and
    the export said both that its act stood ("do not do it again") and that it failed, and left its staging folder
    (a full copy of the footage) beside the destination (a hostile review). It fails whole: the failure is recorded
    (unsigned too, beside the entry, for the person who looks), no copy is left, and the message is one."""
    assert as_("alice", "retention", "case", cli_archive, "--case", "C-7", "--segment", "1").returncode == 0
    rid = request(cli_archive, "root", 1, purpose="export")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    hand_back(cli_archive)  # root exports embedded, as the archive's owner
    script = forging_after(tmp_path, "export", "_stage")
    bag = tmp_path / "out" / "bag"
    bag.parent.mkdir()
    out = subprocess.run(
        [sys.executable, str(script), "export", str(cli_archive), "--case", "C-7", "--request", str(rid), "--to", bag],
        capture_output=True,
    )
    err = out.stderr.decode()
    assert out.returncode != 0 and "Traceback" not in err, err
    assert "came into the ledger while it ran" in err and "do not do it again" not in err, err
    assert list(bag.parent.iterdir()) == []  # no bag, and no staging folder with the footage
    types = [json.loads(e)["type"] for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq")]
    assert types[-3:] == ["storage_check", "export", "export_failed"], types


def test_an_ingest_beside_an_entry_put_in_while_it_ran_still_says_what_it_stored(
    cli_archive: Path, tmp_path: Path
) -> None:
    """An entry appended by hand while an ingest recorded its files: the ingest stands unsigned (its checkpoint
    signs nothing past that entry) and `--json` wrote nothing, so an agency tool had no word of what was stored (a
    hostile review). It writes the result, not ok, with the error that stopped the checkpoint and its reason."""
    hand_back(cli_archive)  # root ingests embedded, as the archive's owner
    script = forging_after(tmp_path, "ingest", "_record_group")
    vol = clip_volume(tmp_path / "BWC0002")
    out = subprocess.run(
        [sys.executable, str(script), "ingest", str(vol), "--archive", str(cli_archive), "--json"], capture_output=True
    )
    err = out.stderr.decode()
    assert out.returncode == 2 and "Traceback" not in err, err
    assert "not signed, and stands (do not do it again)" in err, err
    result = json.loads(out.stdout)
    assert (result["ok"], result["stored"], result["checkpoint"]) == (False, ["DCIM/bt601.mov"], None), result
    assert result["error"]["kind"] == "unsigned_entries" and "(do not do it again)" in result["error"]["message"], (
        result
    )
    assert [s["name"] for s in result["segments"]] == ["DCIM/bt601.mov"], result
    signed = catalog_rows(cli_archive, "SELECT MAX(size) FROM checkpoints")[0][0]
    assert json.loads(catalog_rows(cli_archive, f"SELECT entry FROM ledger WHERE seq = {signed}")[0][0]) == {
        "type": "storage_check",
        "time": 1,
    }  # signed up to the entry put in by hand, and not past it


def test_a_purge_entry_forged_into_the_ledger_under_an_export_request_removes_nothing(cli_archive: Path) -> None:
    """A `purge` entry appended to the ledger table with its leaf hash (a lawful purge's, retargeted at segment 2
    and naming a pending export request) and its tombstone made by the rebuild from the ledger: `purge --resume`
    deleted the only copy (hostile22). The tombstone's request must be an approved purge, as the ledger has it."""
    lawful = request(cli_archive, "alice", 1, purpose="purge")
    assert as_("bob", "access", "approve", cli_archive, lawful).returncode == 0
    assert as_("alice", "retention", "purge", cli_archive, "--request", lawful).returncode == 0
    export = request(cli_archive, "carol", 2, purpose="export")  # pending
    (sha2,) = catalog_rows(cli_archive, "SELECT sha256 FROM segments WHERE id = 2")[0]
    (raw,) = catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE type = 'purge' ORDER BY seq DESC LIMIT 1")[0]
    forged = {**json.loads(raw), "segment": 2, "sha256": sha2, "request": export}
    data = json.dumps(forged, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    with catalog_edit(cli_archive) as conn:
        (seq,) = conn.execute("SELECT MAX(seq) + 1 FROM ledger").fetchone()
        conn.execute(
            "INSERT INTO ledger (seq, entry, leaf, type) VALUES (?, ?, ?, 'purge')",
            (seq, data, hashlib.sha256(b"\x00" + data).digest()),
        )
    assert as_("alice", "ledger", "rebuild-catalog", cli_archive, "--replace").returncode in (0, 1)
    assert catalog_rows(cli_archive, "SELECT request_id FROM tombstones WHERE sha256 = ?", (sha2,)) == [(export,)]
    obj = object_of(cli_archive, 2)
    out = as_("bob", "retention", "purge", cli_archive, "--resume")
    err = out.stderr.decode()
    # Refused; and the forged entry, which no checkpoint covers, keeps the refusal from being recorded too (since
    # 2026-12-01 nothing is recorded while such an entry is there: Archive.ready_to_record), exit 2, said so.
    assert out.returncode == 2 and "Traceback" not in err, err
    assert f"request {export} is a pending request for export, not an approved purge" in err, err
    assert "this refusal could not be recorded either: the ledger holds entries no checkpoint covers" in err, err
    assert obj.is_file()


def test_an_entry_misfiled_while_an_archive_is_open_is_seen_by_its_next_act(cli_archive: Path) -> None:
    """require_filed looks only at new entries while no other connection has committed (the review page grants
    each stream request): an edit by another connection in between must still be seen, by a whole pass."""
    from custodes.archive import open_archive
    from custodes.catalog.ledger import MisfiledError

    with open_archive(cli_archive) as a:
        a.catalog.ledger.require_filed()
        a.catalog.ledger.require_filed()  # nothing new: the short look
        with catalog_edit(cli_archive) as conn:  # another connection
            conn.execute("UPDATE ledger SET type = NULL WHERE seq = (SELECT MIN(seq) FROM ledger)")
        with pytest.raises(MisfiledError, match=r"ledger entry 0 is filed as None but is a 'policy' entry"):
            a.catalog.ledger.require_filed()
