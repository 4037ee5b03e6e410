"""Issue 13, part 3: the policy is ledgered. custodes.toml is in force only as the ledger's latest policy entry
says; a hand edit makes commands refuse and verify report policy_mismatch, and a change is an approver's
proposal (`policy set`) put in force by a second person on another account (`policy approve`); the owner sets it
alone only while no approver is named. An account that has acted keeps its name."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from custodes.archive import open_archive
from helpers import (
    FOOTAGE,
    PEOPLE,
    as_,
    catalog_edit,
    catalog_rows,
    one_line_error,
    policy_text,
    refused,
    request,
    run_cli,
    serve,
    set_policy,
    stop_service,
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
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "unchanged", again.stderr
    assert len(policy_entries(arch)) == 2
    assert run_cli("verify", arch, user="bob").returncode == 0  # root has no role here: bob checks


def test_an_approver_sets_the_policy_and_its_retention_applies(cli_archive: Path) -> None:
    # The attack, end to end. bt601.mov (segment 2, recorded 2024-02-12) is due after 730 days; an approver
    # keeps recordings ten years instead, through the ledger.
    longer = policy_text(cli_archive).replace("minimum_days = 730", "minimum_days = 3650")
    out = set_policy(cli_archive, longer, user="bob", approver="dave")  # bob proposes, dave approves
    assert out.returncode == 0, out.stderr
    index, entry = policy_entries(cli_archive)[-1]
    assert (entry["person"], entry["action"], entry["text"]) == ("dave", "set", longer)
    assert (entry["proposed_by"], entry["proposal"], entry["account"]) == ("bob", index - 2, "dave")
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
    proposed = as_("bob", "policy", "set", cli_archive, claimed, "--json")  # an approver proposes it ...
    assert proposed.returncode == 0, proposed.stderr
    assert policy_entries(cli_archive) == before  # ... which changes nothing yet
    assert as_("dave", "policy", "approve", cli_archive, json.loads(proposed.stdout)["proposal"]["id"]).returncode == 0
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
    with open_archive(arch) as a:
        assert a.policy.retention_days == 3650  # the ledger wins
    # The entry the crash left unsigned is one no command signs, nor acts beside (since 2026-12-01: it could as
    # well have been written into catalog.sqlite by hand), setting the policy again neither: a person looks at it
    # and signs it, with the file still behind the ledger; then setting it again writes the file.
    one_line_error(run_cli("policy", "set", arch, new), r"no checkpoint covers .*\(1 \(policy\)\): nothing was")
    assert policy_text(arch) == first  # refused before the file too
    assert run_cli("ledger", "checkpoint", arch).returncode == 0
    done = run_cli("policy", "set", arch, new, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "file_rewritten" and json.loads(done.stdout)["policy"]["index"] == 1
    assert policy_text(arch) == new.read_text() and len(policy_entries(arch)) == 2
    assert run_cli("verify", arch).returncode == 0


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


# ---- no approver acts alone through the policy ------------------------------------------------------------


def propose(arch: Path, user: str, text: str) -> int:
    """``user`` runs `policy set` with ``text``: a proposal (exit 0); returns its id."""
    out = set_policy(arch, text, user=user)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "proposed", result
    return result["proposal"]["id"]


def policy_log(arch: Path) -> list[tuple[str, str, int]]:
    return catalog_rows(arch, "SELECT person, action, ok FROM access_log WHERE action LIKE '%policy%' ORDER BY id")


def test_an_approver_alone_cannot_lower_retention_and_a_second_person_puts_it_in_force(cli_archive: Path) -> None:
    # Ten years first (bob and dave), so bt601.mov (segment 2, 2024) is not due; then bob alone tries 0 days.
    longer = policy_text(cli_archive).replace("minimum_days = 730", "minimum_days = 3650")
    assert set_policy(cli_archive, longer, user="bob", approver="dave").returncode == 0
    rid = request(cli_archive, "alice", 2, purpose="purge")
    assert as_("dave", "access", "approve", cli_archive, rid).returncode == 0
    entries = policy_entries(cli_archive)
    zero = longer.replace("minimum_days = 3650", "minimum_days = 0")
    n = propose(cli_archive, "bob", zero)
    # Recorded as a proposal, with its text and hash and who made it; nothing else changes.
    proposal = json.loads(catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE seq = ?", (n,))[0][0])
    assert (proposal["type"], proposal["person"], proposal["account"]) == ("access_propose_policy", "bob", "bob")
    assert (proposal["text"], proposal["sha256"]) == (zero, hashlib.sha256(zero.encode()).hexdigest())
    assert proposal["base"] == entries[-1][0]
    assert policy_entries(cli_archive) == entries and policy_text(cli_archive) == longer
    with open_archive(cli_archive) as a:
        assert a.policy.retention_days == 3650
    refused(as_("alice", "retention", "purge", cli_archive, "--request", rid), "not due until 2034")
    shown = json.loads(as_("carol", "policy", "show", cli_archive, "--json").stdout)
    assert [(q["id"], q["person"], q["status"], q["text"]) for q in shown["proposals"]][-1] == (
        n,
        "bob",
        "pending",
        zero,
    )
    said = as_("carol", "policy", "show", cli_archive)
    assert f"proposal {n}: by bob".encode() in said.stdout and b"(pending" in said.stdout
    # Bob cannot approve it himself, a viewer cannot, and neither can the owner embedded (no second person).
    refused(as_("bob", "policy", "approve", cli_archive, n), rf"nobody approves their own policy proposal \({n}\)")
    refused(as_("carol", "policy", "approve", cli_archive, n), r"carol may not approve_policy \(needs approver or")
    assert policy_entries(cli_archive) == entries
    ledgered = [
        (e["person"], e["account"], e["ok"])
        for (data,) in catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE seq > ? ORDER BY seq", (n,))
        if (e := json.loads(data))["type"] == "access_approve_policy"
    ]
    assert ledgered == [("bob", "bob", False), ("carol", "carol", False)]
    # Dave approves it: in force, naming both, and the purge goes through.
    out = as_("dave", "policy", "approve", cli_archive, n, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["status"], result["proposal"]["status"], result["proposal"]["decided_by"]) == (
        "recorded",
        "approved",
        "dave",
    )
    index, entry = policy_entries(cli_archive)[-1]
    assert (entry["person"], entry["proposed_by"], entry["proposal"], entry["text"]) == ("dave", "bob", n, zero)
    assert policy_text(cli_archive) == zero
    assert policy_log(cli_archive)[-4:] == [
        ("bob", "propose_policy", 1),
        ("bob", "approve_policy", 0),
        ("carol", "approve_policy", 0),
        ("dave", "approve_policy", 1),
    ]
    assert as_("alice", "retention", "purge", cli_archive, "--request", rid).returncode == 0
    # Approving it again changes nothing (already the policy); an approved proposal cannot be denied.
    again = as_("dave", "policy", "approve", cli_archive, n, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "unchanged"
    one_line_error(as_("dave", "policy", "deny", cli_archive, n, "--reason", "x"), rf"proposal {n} is already approved")
    assert len(policy_entries(cli_archive)) == len(entries) + 1
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_stale_proposal_cannot_be_approved_and_a_proposal_can_be_denied(cli_archive: Path) -> None:
    text = policy_text(cli_archive)
    first = propose(cli_archive, "bob", text.replace("minimum_days = 730", "minimum_days = 3650"))
    second = propose(cli_archive, "dave", text.replace("minimum_days = 730", "minimum_days = 1000"))
    assert as_("alice", "policy", "approve", cli_archive, first).returncode == 0  # a custodian is a second person
    in_force = policy_entries(cli_archive)[-1][0]
    refused(
        as_("bob", "policy", "approve", cli_archive, second),
        rf"proposal {second} was made on the policy of ledger entry 1, but entry {in_force} is in force now: it "
        "cannot be approved",
    )
    assert policy_entries(cli_archive)[-1][0] == in_force
    with open_archive(cli_archive) as a:
        assert a.policy.retention_days == 3650
    assert policy_log(cli_archive)[-1] == ("bob", "approve_policy", 0)
    # The stale one is closed by a denial (with a reason), logged; it cannot be decided again.
    one_line_error(as_("alice", "policy", "deny", cli_archive, second, "--reason", " "), "a denial needs a reason")
    denied = as_("alice", "policy", "deny", cli_archive, second, "--reason", "stale", "--json")
    assert denied.returncode == 0, denied.stderr
    assert (json.loads(denied.stdout)["status"], json.loads(denied.stdout)["decided_by"]) == ("denied", "alice")
    one_line_error(as_("bob", "policy", "approve", cli_archive, second), rf"proposal {second} is already denied")
    one_line_error(as_("bob", "policy", "approve", cli_archive, 999), "no policy proposal 999")
    assert policy_log(cli_archive)[-1] == ("alice", "deny_policy", 1)
    shown = json.loads(as_("carol", "policy", "show", cli_archive, "--json").stdout)
    assert [(q["id"], q["status"], q["decided_by"]) for q in shown["proposals"]] == [
        (first, "approved", "alice"),
        (second, "denied", "alice"),
    ]
    assert run_cli("verify", cli_archive, user="alice").returncode == 0
    rebuilt = run_cli("ledger", "rebuild-catalog", cli_archive, "--json", user="alice")
    assert rebuilt.returncode == 0 and json.loads(rebuilt.stdout)["equal"] is True, rebuilt.stdout


def test_the_identity_rename_then_self_approve_attack_fails(cli_archive: Path) -> None:
    # The review's attack: bob (an approver) asks to see footage, then gives himself another name in [identity]
    # so that "robert" may approve "bob"'s request. Bob has acted as bob: the account keeps its name.
    rid = request(cli_archive, "bob", 1)
    text = policy_text(cli_archive)
    renamed = text.replace('bob = "approver"', 'robert = "approver"') + '\n[identity]\nbob = "robert"\n'
    one_line_error(
        set_policy(cli_archive, renamed, user="bob"),
        r"\[identity\] names account bob 'robert', but it has acted as 'bob', and an account keeps its name",
    )
    # Nor may a second account take a name someone has acted under (mallory as "bob" would approve for him) ...
    stolen = (
        text.replace('carol = "viewer"', 'carol = "viewer"\nmallory = "viewer"') + '\n[identity]\nmallory = "bob"\n'
    )
    one_line_error(
        set_policy(cli_archive, stolen, user="dave"),
        r"\[identity\] gives account mallory the name 'bob', which account bob has acted under",
    )
    assert [e["type"] for _, e in policy_entries(cli_archive)] == ["policy", "policy"]  # init, the people
    assert policy_log(cli_archive) == []  # refused before anything was recorded, like any bad policy file
    # ... and bob approving his own request is refused by name and by account.
    refused(as_("bob", "access", "approve", cli_archive, rid), "nobody approves their own request")
    entry = json.loads(catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq DESC LIMIT 1")[0][0])
    assert (entry["type"], entry["person"], entry["account"], entry["ok"]) == ("access_approve", "bob", "bob", False)
    assert catalog_rows(cli_archive, "SELECT status FROM access_requests WHERE id = ?", (rid,)) == [("pending",)]


def test_the_owner_s_first_people_keep_the_names_they_acted_under(tmp_path: Path) -> None:
    # Bootstrap included: the owner, embedded, acts as root (a viewer), then may not rename root or give "root"
    # to another account.
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "-q").returncode == 0
    first = policy_text(arch) + '\n[people]\nroot = "viewer"\n'
    assert set_policy(arch, first).returncode == 0
    vol = tmp_path / "BWC0001"
    vol.mkdir()
    (vol / "clip.mp4").write_bytes((Path(__file__).parent / "data/footage/encoders/go-mp4-sample.mp4").read_bytes())
    assert run_cli("ingest", vol, "--archive", arch, "--driver", "generic").returncode in (0, 1)
    made = run_cli("access", "request", arch, "--segment", "1", "--reason", "review")
    assert made.returncode == 0, made.stderr
    renamed = first.replace('root = "viewer"', '"officer 7" = "viewer"') + '\n[identity]\nroot = "officer 7"\n'
    one_line_error(set_policy(arch, renamed), r"names account root 'officer 7', but it has acted as 'root'")
    one_line_error(
        set_policy(arch, first + '\n[identity]\ndave = "root"\n'),
        r"gives account dave the name 'root', which account root has acted under",
    )
    assert len(policy_entries(arch)) == 2 and policy_text(arch) == first
    # A name for an account that has not acted is the owner's to give.
    named = first.replace('root = "viewer"', 'root = "viewer"\n"d. jones" = "approver"')
    named += '\n[identity]\ndave = "d. jones"\n'
    assert set_policy(arch, named).returncode == 0
    assert policy_text(arch) == named and len(policy_entries(arch)) == 3


def test_a_name_given_in_identity_is_not_the_role_of_another_account_of_that_name(make_cli_archive) -> None:
    # The hostile review: [identity] gives account dave the name "mallory", a viewer; account mallory (as if made
    # later with useradd) has no entry of its own. A name belongs to one account: mallory is not that person.
    people = (
        PEOPLE.replace('carol = "viewer"', 'carol = "viewer"\nmallory = "viewer"') + '\n[identity]\ndave = "mallory"\n'
    )
    arch = make_cli_archive(people=people, recordings=[FOOTAGE / "phones" / "bt601.mov"])
    why = "account:mallory has no role in this archive's policy: \\[identity\\] gives the name mallory to account dave"
    refused(as_("mallory", "verify", arch), why)
    refused(as_("mallory", "access", "request", arch, "--segment", "1", "--reason", "curious"), why)
    log = catalog_rows(arch, "SELECT person, action, ok FROM access_log WHERE person LIKE '%mallory'")
    assert log == [("account:mallory", "verify", 0), ("account:mallory", "access_request", 0)]
    entries = [json.loads(e) for (e,) in catalog_rows(arch, "SELECT entry FROM ledger ORDER BY seq")]
    assert [(e["person"], e["account"]) for e in entries if "mallory" in str(e.get("person"))][-1] == (
        "account:mallory",
        "mallory",
    )
    # Account dave is the person mallory, with her role: a viewer may verify and ask, in the name the policy gives.
    assert as_("dave", "verify", arch).returncode == 0
    assert request(arch, "dave", 1) > 0
    assert catalog_rows(arch, "SELECT requester FROM access_requests") == [("mallory",)]
    text = policy_text(arch)  # the people above, in force
    # The names rule still holds: the name stays with dave, who acted under it; mallory cannot be given it too.
    one_line_error(
        set_policy(arch, text + 'mallory = "mallory"\n', user="bob"),
        r"\[identity\] gives account mallory the name 'mallory', which account dave has acted under",
    )
    one_line_error(
        set_policy(arch, text.replace('dave = "mallory"', ""), user="bob"),
        r"names account dave 'dave', but it has acted as 'mallory'",
    )
    # Nor can a policy name anyone as the records name such an account.
    one_line_error(
        set_policy(arch, text.replace('mallory = "viewer"', '"account:mallory" = "viewer"'), user="bob"),
        r"\[people\] 'account:mallory'.*reserved",
    )
    assert run_cli("verify", arch, user="alice").returncode == 0
    rebuilt = run_cli("ledger", "rebuild-catalog", arch, "--json", user="alice")
    assert rebuilt.returncode == 0 and json.loads(rebuilt.stdout)["equal"] is True, rebuilt.stdout


def test_a_crash_between_the_approval_and_the_file_is_finished_by_approving_again(cli_archive: Path) -> None:
    serve(cli_archive, env={"CUSTODES_CRASHPOINT": "policy_entry_committed:1"})  # the service dies there once
    before = policy_text(cli_archive)
    longer = before.replace("minimum_days = 730", "minimum_days = 3650")
    n = propose(cli_archive, "bob", longer)
    crashed = as_("dave", "policy", "approve", cli_archive, n)
    assert crashed.returncode == 2 and b"Traceback" not in crashed.stderr, crashed.stderr
    stop_service(cli_archive)
    assert policy_text(cli_archive) == before  # the ledger has it, the file not yet
    assert policy_entries(cli_archive)[-1][1]["proposal"] == n
    shown = as_("carol", "policy", "show", cli_archive)
    assert shown.returncode == 1 and b"the file is behind the ledger" in shown.stdout, shown.stdout
    # Approving again is refused beside the entry the crash left unsigned (since 2026-12-01, as any act): a
    # custodian looks at it and signs it, then the approval again writes the file.
    refused = as_("dave", "policy", "approve", cli_archive, n)
    one_line_error(refused, r"no checkpoint covers .*\(access_approve_policy\), \d+ \(policy\)\): nothing was")
    assert policy_text(cli_archive) == before  # refused before the file too
    assert as_("alice", "ledger", "checkpoint", cli_archive).returncode == 0
    done = as_("dave", "policy", "approve", cli_archive, n, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "file_rewritten"
    assert policy_text(cli_archive) == longer
    assert run_cli("verify", cli_archive, user="alice").returncode == 0
