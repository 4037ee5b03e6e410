"""Issue 13, part 3: the policy is ledgered. custodes.toml is in force only as the ledger's latest policy entry
says; a hand edit makes commands refuse and verify report policy_mismatch, and `policy set` is the one way to
change it (an approver, or the owner while no approver is named)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from custodes.archive import open_archive
from helpers import (
    as_,
    catalog_edit,
    catalog_rows,
    one_line_error,
    policy_text,
    refused,
    request,
    run_cli,
    set_policy,
)


def policy_entries(arch: Path) -> list[tuple[int, dict]]:
    rows = catalog_rows(arch, "SELECT seq, entry FROM ledger ORDER BY seq")
    return [(seq, e) for seq, data in rows if (e := json.loads(data))["type"] == "policy"]


def refusing(arch: Path, index: int) -> str:
    """The one line a command gives while custodes.toml differs from the ledgered policy of entry ``index``."""
    return (
        rf"refusing to act: {re.escape(str(arch / 'custodes.toml'))} \(sha256 [0-9a-f]{{16}}\) differs from the "
        rf"ledgered policy \(ledger entry {index}, set by \w+ at .*, sha256 [0-9a-f]{{16}}\)"
    )


def test_init_records_the_policy_as_the_first_entry(tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    raw = (arch / "custodes.toml").read_bytes()
    [(index, entry)] = policy_entries(arch)
    assert index == 0
    assert entry["text"].encode() == raw and entry["sha256"] == hashlib.sha256(raw).hexdigest()
    assert (entry["person"], entry["action"]) == ("root", "init")
    shown = run_cli("policy", "show", arch, "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["policy"]["index"] == 0 and info["policy"]["sha256"] == entry["sha256"]
    assert info["file"]["matches"] is True and info["text"].encode() == raw
    assert run_cli("verify", arch).returncode == 0


def test_the_owner_sets_the_first_people_then_only_an_approver_may(tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    people = policy_text(arch) + '\n[people]\nbob = "approver"\ncarol = "viewer"\n'
    out = set_policy(arch, people)  # bootstrap: the ledgered policy names no approver, and root owns the archive
    assert out.returncode == 0, out.stderr
    assert [(i, e["person"], e["action"]) for i, e in policy_entries(arch)] == [(0, "root", "init"), (1, "root", "set")]
    assert policy_text(arch) == people  # the file follows the ledger
    # Now an approver is named: the owner, who has no role, is refused, and the refusal is logged.
    refused(set_policy(arch, people + 'root = "approver"\n'), "root may not set_policy \\(needs approver\\)")
    assert catalog_rows(arch, "SELECT person, action, ok FROM access_log") == [("root", "set_policy", 0)]
    assert len(policy_entries(arch)) == 2 and policy_text(arch) == people
    # The same policy again records nothing.
    again = set_policy(arch, people, user="bob")
    assert again.returncode == 0 and b"already is the policy" in again.stdout, again.stderr
    assert len(policy_entries(arch)) == 2
    assert run_cli("verify", arch, user="bob").returncode == 0  # root has no role here: bob checks


def test_an_approver_sets_the_policy_and_its_retention_applies(cli_archive: Path) -> None:
    # The attack, end to end. bt601.mov (segment 2, recorded 2024-02-12) is due after 730 days; an approver
    # keeps recordings ten years instead, through the ledger.
    longer = policy_text(cli_archive).replace("minimum_days = 730", "minimum_days = 3650")
    out = set_policy(cli_archive, longer, user="bob")
    assert out.returncode == 0, out.stderr
    index, entry = policy_entries(cli_archive)[-1]
    assert (entry["person"], entry["action"], entry["text"]) == ("bob", "set", longer)
    assert policy_text(cli_archive) == longer
    with open_archive(cli_archive) as a:
        assert a.policy.retention_days == 3650
    rid = request(cli_archive, "alice", 2, purpose="purge")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    refused(as_("alice", "retention", "purge", cli_archive, "--request", rid), "not due until 2034")
    # Setting minimum_days = 0 by hand: every command refuses, naming the file and the ledgered policy ...
    (cli_archive / "custodes.toml").write_text(longer.replace("minimum_days = 3650", "minimum_days = 0"))
    one_line_error(as_("alice", "retention", "purge", cli_archive, "--request", rid), refusing(cli_archive, index))
    with open_archive(cli_archive) as a:
        assert a.policy.retention_days == 3650  # ... and the edit is not the policy: the ledger's retention stays
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM objects WHERE purged_ns IS NOT NULL") == [(0,)]
    # ... verify reports it, and still verifies everything else (all intact here).
    v = run_cli("verify", cli_archive, "--json")
    assert v.returncode == 1
    assert [(f["kind"], f["ledger_index"]) for f in json.loads(v.stdout)["findings"]] == [("policy_mismatch", index)]
    assert json.loads(v.stdout)["checked"] == 3
    shown = as_("carol", "policy", "show", cli_archive, "--json")
    assert shown.returncode == 1 and json.loads(shown.stdout)["file"]["matches"] is False
    # Put back as the ledger holds it, the archive works again and the ten years hold.
    (cli_archive / "custodes.toml").write_text(json.loads(shown.stdout)["text"])
    refused(as_("alice", "retention", "purge", cli_archive, "--request", rid), "not due until 2034")
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_viewer_cannot_set_the_policy_even_after_editing_the_file(cli_archive: Path) -> None:
    before = policy_entries(cli_archive)
    mine = policy_text(cli_archive).replace('carol = "viewer"', 'carol = "approver"')
    refused(set_policy(cli_archive, mine, user="carol"), "carol may not set_policy \\(needs approver\\)")
    # An account with no role, claiming to be an approver by its environment, is still itself.
    claimed = cli_archive.parent / "claimed.toml"
    claimed.write_text(mine)
    claimed.chmod(0o644)
    # (Without a role she does not get past the service's gate, which logs her under the command's name.)
    out = run_cli("policy", "set", cli_archive, claimed, user="mallory", env={"LOGNAME": "bob", "USER": "bob"})
    refused(out, "mallory has no role in this archive's policy")
    refused(as_("mallory", "policy", "show", cli_archive), "mallory has no role")  # it names the people
    log = catalog_rows(cli_archive, "SELECT person, action, ok FROM access_log WHERE action LIKE '%policy%'")
    assert log == [("carol", "set_policy", 0), ("mallory", "policy_set", 0), ("mallory", "policy_show", 0)]
    ledgered = [
        (e["type"], e["person"], e["ok"])
        for (data,) in catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq")
        if (e := json.loads(data))["type"] in ("access_set_policy", "access_policy_set")
    ]
    assert ledgered == [("access_set_policy", "carol", False), ("access_policy_set", "mallory", False)]
    # Granting herself the role by hand changes nothing: roles come from the ledgered policy.
    (cli_archive / "custodes.toml").write_text(mine)
    refused(set_policy(cli_archive, mine, user="carol"), "carol may not set_policy")
    assert policy_entries(cli_archive) == before
    assert as_("bob", "policy", "set", cli_archive, claimed).returncode == 0  # an approver makes it the policy
    assert request(cli_archive, "carol", 1) > 0


def test_every_command_that_acts_refuses_a_hand_edited_policy(cli_archive: Path, tmp_path: Path) -> None:
    index = policy_entries(cli_archive)[-1][0]
    rid = request(cli_archive, "carol", 1)
    (cli_archive / "custodes.toml").write_text(
        policy_text(cli_archive).replace('carol = "viewer"', 'carol = "approver"')
    )
    size = catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger")
    vol = tmp_path / "BWC0001"
    tasks = tmp_path / "tasks.csv"
    tasks.write_text("id,type,start,end,officers,devices\nT1,stop,2024-03-01T10:00:00Z,2024-03-01T10:05:00Z,,BWC0001\n")
    gap = ["--device", "BWC0001", "--from", "2024-03-01T10:00:00Z", "--to", "2024-03-01T10:01:00Z"]
    for user, command in (
        ("alice", ["ingest", vol, "--archive", cli_archive]),
        ("carol", ["access", "request", cli_archive, "--segment", "1", "--reason", "x"]),
        ("bob", ["access", "approve", cli_archive, rid]),
        ("carol", ["access", "open", cli_archive, rid, "--segment", "1", "--to", tmp_path / "view"]),
        ("alice", ["retention", "hold", cli_archive, "--segment", "1", "--reason", "x"]),
        ("alice", ["retention", "due", cli_archive]),
        ("alice", ["gap", "explain", cli_archive, *gap, "--cause", "battery"]),
        ("alice", ["task", "import", cli_archive, tasks]),
        ("carol", ["export", cli_archive, "--case", "C-1", "--request", rid, "--to", tmp_path / "bag"]),
        ("alice", ["ledger", "checkpoint", cli_archive]),
        ("alice", ["ledger", "rotate-key", cli_archive]),
        ("alice", ["report", cli_archive, "--out", tmp_path / "r.json"]),
    ):
        one_line_error(as_(user, *command), refusing(cli_archive, index))
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger") == size  # nothing was recorded
    assert not (tmp_path / "view").exists() and not (tmp_path / "bag").exists() and not (tmp_path / "r.json").exists()


def test_a_crash_between_the_entry_and_the_file_is_finished_by_setting_it_again(tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    first = policy_text(arch)
    new = tmp_path / "new.toml"
    new.write_text(first.replace("minimum_days = 730", "minimum_days = 3650"))
    crashed = run_cli("policy", "set", arch, new, env={"CUSTODES_CRASHPOINT": "policy_entry_committed:1"})
    assert crashed.returncode == -9, crashed.stderr
    assert policy_text(arch) == first and len(policy_entries(arch)) == 2  # the ledger has it, the file not yet
    shown = run_cli("policy", "show", arch)
    assert shown.returncode == 1
    assert b"the file is behind the ledger (it holds the policy of entry 0)" in shown.stdout, shown.stdout
    one_line_error(run_cli("ledger", "checkpoint", arch), refusing(arch, 1) + ": the file is behind the ledger")
    with open_archive(arch) as a:
        assert a.policy.retention_days == 3650  # the ledger wins
    done = run_cli("policy", "set", arch, new, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "file_rewritten" and json.loads(done.stdout)["policy"]["index"] == 1
    assert policy_text(arch) == new.read_text() and len(policy_entries(arch)) == 2
    assert run_cli("verify", arch).returncode == 0  # the entry the crash left unsigned is signed now


def test_policy_set_checks_the_file_and_keeps_the_archive_s_identity(tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    new = tmp_path / "new.toml"
    new.write_text(policy_text(arch).replace("minimum_days = 730", "minimum_days = -1"))
    one_line_error(run_cli("policy", "set", arch, new), rf"{re.escape(str(new))}: \[retention\] minimum_days must")
    new.write_text(re.sub(r'origin = ".*"', 'origin = "custodes.local/other"', policy_text(arch)))
    one_line_error(run_cli("policy", "set", arch, new), r"\[archive\] origin = 'custodes.local/other', but this")
    new.write_bytes(b"[retention]\nminimum_days = 1 # \xff\n")
    one_line_error(run_cli("policy", "set", arch, new), r"the policy is not UTF-8 text \(byte \d+\)")
    assert len(policy_entries(arch)) == 1
    assert catalog_rows(arch, "SELECT COUNT(*) FROM ledger") == [(1,)]


def test_an_archive_without_a_policy_entry_adopts_its_file_once(tmp_path: Path) -> None:
    # An archive made before policy entries: its ledger starts without one (made here by removing init's entry and
    # every checkpoint over it, as a custodes of before issue 13 left it, minus its empty checkpoint).
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    with catalog_edit(arch) as tx:
        tx.execute("DELETE FROM ledger")
        tx.execute("DELETE FROM checkpoints")
    for f in (arch / "ledger" / "checkpoints").iterdir():
        f.unlink()
    (arch / "ledger" / "checkpoint").unlink()
    raw = (arch / "custodes.toml").read_bytes()
    first = run_cli("verify", arch)
    assert first.returncode == 0, (first.stdout, first.stderr)
    assert first.stderr.decode().count("adopted as the archive's ledgered policy (ledger entry 0)") == 1
    [(index, entry)] = policy_entries(arch)
    assert (index, entry["action"], entry["person"], entry["text"].encode()) == (0, "adopt", "root", raw)
    again = run_cli("verify", arch)
    assert again.returncode == 0 and b"adopted" not in again.stderr  # once
    assert len(policy_entries(arch)) == 1
