"""A command refused because custodes writes nothing into the catalog (its schema is not the one custodes makes,
catalog.SchemaDiffersError) refuses before it does anything else (found by a hostile review: `custodes user add`,
`token add` and the like changed accounts.sqlite and then were refused with a message that said nothing was
written, leaving an approver's account or an active token the ledger never recorded; `ledger rotate-key` left a
new private key behind). So: exit 2, a message that is true, and accounts.sqlite, private/ and the ledger exactly
as before. A one-person archive (what `custodes init` makes) can take the way out the message names; a refusal
that cannot be logged says so and names who may take it; verify says why its run was not recorded; the web's
login answers 503 and counts nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from custodes.catalog.accounts import AccountStore
from custodes.web import create_app
from custodes.web.accounts import LOCK_AFTER
from helpers import (
    PEOPLE,
    PEOPLE_AND_ROOT,
    THREE_RECORDINGS,
    build_cli_archive,
    catalog_edit,
    catalog_rows,
    one_line_error,
    policy_text,
    run_cli,
    run_cli_with_faults,
    set_policy,
)
from web_helpers import PASSWORD, csrf_in, logged_in

WRITES_NOTHING = "custodes writes nothing into this catalog"
TRIGGER = "CREATE TRIGGER tr AFTER INSERT ON findings BEGIN SELECT 1; END"


def add_trigger(arch: Path) -> None:
    with catalog_edit(arch, foreign_keys=False) as c:
        c.execute(TRIGGER)


def drop_trigger(arch: Path) -> None:
    with catalog_edit(arch, foreign_keys=False) as c:
        c.execute("DROP TRIGGER tr")


def password(*args: object) -> Any:
    return run_cli(*args, "--password-stdin", input=PASSWORD.encode() + b"\n")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive with root a custodian (embedded: root is its owner), account carol (a viewer, locked by ten wrong
    passwords) and her token 1, and account bob, disabled: so that each command below would change something."""
    root = tmp_path_factory.mktemp("refuse")
    arch = build_cli_archive(
        root / "archive", people=PEOPLE_AND_ROOT, recordings=THREE_RECORDINGS[:1], ingest_exit=(0, 1)
    )
    assert password("user", "add", arch, "carol").returncode == 0
    assert run_cli("token", "add", arch, "carol", "--role", "viewer").returncode == 0
    assert password("user", "add", arch, "bob").returncode == 0
    assert run_cli("user", "disable", arch, "bob").returncode == 0
    with AccountStore.open(arch) as store:
        for _ in range(LOCK_AFTER):
            store.note_failure("carol", LOCK_AFTER)
        assert store.account("carol").locked  # type: ignore[union-attr]
    return arch


@pytest.fixture
def arch(made: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(made, tmp_path / "archive", ignore=shutil.ignore_patterns("*.sock")))


def state(arch: Path) -> tuple[Any, ...]:
    """What a refused command must leave as it was: the accounts and tokens, private/, the ledger and its
    checkpoint."""
    with AccountStore.open(arch) as store:
        accounts, tokens = store.accounts(), store.tokens()
    return (
        accounts,
        tokens,
        sorted(p.name for p in (arch / "private").iterdir()),
        catalog_rows(arch, "SELECT * FROM ledger ORDER BY 1"),
        catalog_rows(arch, "SELECT * FROM access_log ORDER BY 1"),
        (arch / "ledger" / "checkpoint").read_bytes(),
    )


def ledgered(arch: Path, kind: str) -> list[dict[str, Any]]:
    return [
        json.loads(d) for (d,) in catalog_rows(arch, "SELECT entry FROM ledger WHERE type = ? ORDER BY seq", (kind,))
    ]


REFUSED = [
    ("user", "add", "{a}", "dave", "--password-stdin"),
    ("user", "passwd", "{a}", "carol", "--password-stdin"),
    ("user", "disable", "{a}", "carol"),
    ("user", "enable", "{a}", "bob"),
    ("user", "unlock", "{a}", "carol"),
    ("token", "add", "{a}", "carol", "--role", "viewer"),
    ("token", "revoke", "{a}", "1"),
    ("ledger", "rotate-key", "{a}"),
]


@pytest.mark.parametrize("command", REFUSED, ids=lambda c: " ".join(x for x in c if not x.startswith(("{", "-"))))
def test_a_refused_command_changes_no_account_token_key_or_entry(arch: Path, command: tuple[str, ...]) -> None:
    add_trigger(arch)
    before = state(arch)
    out = run_cli(*(arch if x == "{a}" else x for x in command), input=PASSWORD.encode() + b"\n")
    line = one_line_error(out, WRITES_NOTHING)
    assert "trigger tr" in line and "rebuild-catalog --replace" in line
    assert state(arch) == before
    drop_trigger(arch)  # the lawful command then works, and is ledgered
    assert run_cli(*(arch if x == "{a}" else x for x in command), input=PASSWORD.encode() + b"\n").returncode == 0
    assert state(arch) != before


def test_an_account_added_is_ledgered_before_it_can_log_in(arch: Path) -> None:
    """A crash between the ledger entry and accounts.sqlite's commit of a change that grants: the entry stands, the
    account does not exist (the command failed; run again it is made, with a second entry). The entry the crash
    left unsigned is signed by a person first (since 2026-12-01 no command acts beside such an entry: it could as
    well have been written into catalog.sqlite by hand)."""
    crash = {"CUSTODES_CRASHPOINT": "account_entry_committed"}
    out = run_cli("user", "add", arch, "dave", "--password-stdin", input=PASSWORD.encode() + b"\n", env=crash)
    assert out.returncode == -9, out.stderr
    assert [e["name"] for e in ledgered(arch, "account_added")] == ["carol", "bob", "dave"]
    with AccountStore.open(arch) as store:
        assert store.account("dave") is None
    one_line_error(password("user", "add", arch, "dave"), r"\(\d+ \(account_added\)\): nothing was recorded")
    with AccountStore.open(arch) as store:
        assert store.account("dave") is None
    assert run_cli("ledger", "checkpoint", arch).returncode == 0
    assert password("user", "add", arch, "dave").returncode == 0
    with AccountStore.open(arch) as store:
        assert store.account("dave") is not None


def test_a_token_revoked_takes_effect_before_its_entry(arch: Path) -> None:
    """A crash between accounts.sqlite's commit of a change that takes away and its ledger entry: the token is
    revoked without its entry, never an entry of a revocation that did not happen."""
    out = run_cli_with_faults("token", "revoke", arch, "1", crashpoint="accounts_committed_before_entry")
    assert out.returncode == -9, out.stderr
    with AccountStore.open(arch) as store:
        assert store.token_by_id(1).revoked_ns is not None  # type: ignore[union-attr]
    assert ledgered(arch, "token_revoked") == []


def test_a_one_person_archive_takes_the_way_out(tmp_path: Path) -> None:
    """What init makes (no [people]): its owner may rebuild the catalog (as they may set its first policy), with
    or without a schema difference, and then set a policy."""
    arch = build_cli_archive(tmp_path / "archive", people=None, recordings=THREE_RECORDINGS[:1], ingest_exit=(0, 1))
    out = run_cli("ledger", "rebuild-catalog", arch, "--replace")
    assert out.returncode == 0, out.stderr
    add_trigger(arch)
    one_line_error(set_policy(arch, policy_text(arch) + '\n[people]\nroot = "custodian"\n'), WRITES_NOTHING)
    one_line_error(password("user", "add", arch, "carol"), WRITES_NOTHING)
    assert not (arch / "accounts.sqlite").exists()  # not even made empty
    out = run_cli("ledger", "rebuild-catalog", arch, "--replace")
    assert out.returncode == 0 and b"catalog replaced" in out.stdout, out.stderr
    assert run_cli("verify", arch).returncode == 0
    assert set_policy(arch, policy_text(arch) + '\n[people]\nroot = "custodian"\n').returncode == 0


def test_a_refusal_that_cannot_be_logged_says_so_and_who_may_take_the_way_out(tmp_path: Path) -> None:
    """root is an auditor (approvers are named, so the owner is not alone): rebuild-catalog is refused, and the
    refusal cannot be ledgered. Exit 2 (not the exit 1 of a refusal logged), nothing written, nothing replaced."""
    arch = build_cli_archive(tmp_path / "archive", people=PEOPLE)
    add_trigger(arch)
    before = state(arch)
    line = one_line_error(run_cli("ledger", "rebuild-catalog", arch, "--replace"), "may not rebuild_catalog")
    assert "this refusal is not logged either" in line and WRITES_NOTHING in line
    assert "which custodian alice may run" in line, line
    assert state(arch) == before
    assert not [p for p in arch.iterdir() if "before-rebuild" in p.name]


def test_verify_says_why_its_run_was_not_recorded(tmp_path: Path) -> None:
    arch = build_cli_archive(tmp_path / "archive", people=None, recordings=THREE_RECORDINGS[:1], ingest_exit=(0, 1))
    add_trigger(arch)
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 1
    found = json.loads(out.stdout)
    assert found["checked"] == 1 and found["rehashed"]
    assert (found["run"]["id"], found["run"]["not_recorded"]) == (None, "the catalog's schema differs")
    text = run_cli("verify", arch).stdout.decode()
    assert "verification run (not recorded: the catalog's schema differs)" in text and "nothing re-hashed" not in text
    drop_trigger(arch)
    run = json.loads(run_cli("verify", arch, "--json").stdout)["run"]
    assert run["id"] is not None and run["not_recorded"] is None


def test_a_login_on_a_refused_catalog_is_503_and_counts_nothing(arch: Path) -> None:
    assert run_cli("user", "unlock", arch, "carol").returncode == 0
    web = TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False)
    add_trigger(arch)
    before = state(arch)
    for given in ("a wrong password!", PASSWORD):
        page = web.get("/login", headers={"accept": "text/html"})
        answer = web.post("/login", data={"name": "carol", "password": given, "csrf": csrf_in(page.text)})
        assert answer.status_code == 503, answer.text
        assert WRITES_NOTHING in answer.json()["error"]
        assert "set-cookie" not in answer.headers or "custodes_session" not in answer.headers["set-cookie"]
    assert state(arch) == before  # no failure counted, no session, nothing in the log
    drop_trigger(arch)
    page = web.get("/login", headers={"accept": "text/html"})
    wrong = web.post("/login", data={"name": "carol", "password": "a wrong password!", "csrf": csrf_in(page.text)})
    assert wrong.status_code == 401
    with AccountStore.open(arch) as store:
        assert store.account("carol").failures == 1  # type: ignore[union-attr]
    assert [r[0] for r in catalog_rows(arch, "SELECT ok FROM access_log WHERE action = 'login'")] == [0]
    page = web.get("/login", headers={"accept": "text/html"})
    right = web.post("/login", data={"name": "carol", "password": PASSWORD, "csrf": csrf_in(page.text)})
    assert right.status_code == 303 and "custodes_session" in right.headers["set-cookie"]
    with AccountStore.open(arch) as store:
        assert store.account("carol").failures == 0  # type: ignore[union-attr]


def test_a_change_of_own_password_on_a_refused_catalog_is_503_and_counts_nothing(arch: Path) -> None:
    assert run_cli("user", "unlock", arch, "carol").returncode == 0
    web = logged_in(create_app(arch), "carol")  # her password is one-time (root set it): /password is hers
    add_trigger(arch)
    before = state(arch)
    for current in ("a wrong password!", PASSWORD):
        csrf = csrf_in(web.get("/password").text)
        form = {"csrf": csrf, "current": current, "new": "her very own password", "again": "her very own password"}
        answer = web.post("/password", data=form)
        assert answer.status_code == 503 and WRITES_NOTHING in answer.text, answer.text
    assert state(arch) == before  # no failure counted, no new hash, nothing ledgered
    drop_trigger(arch)
    csrf = csrf_in(web.get("/password").text)
    form = {"csrf": csrf, "current": PASSWORD, "new": "her very own password", "again": "her very own password"}
    assert web.post("/password", data=form).status_code == 303
    assert [e["one_time"] for e in ledgered(arch, "account_password_set")] == [False]
    # Any other change through the web: 503, nothing written.
    add_trigger(arch)
    before = state(arch)
    csrf = csrf_in(web.get("/access").text)
    asked = {"csrf": csrf, "segments": "1", "reason": "court order 12", "purpose": "view"}
    answer = web.post("/access/request", data=asked)
    assert answer.status_code == 503 and WRITES_NOTHING in answer.text, answer.text
    body = {"segments": [1], "reason": "court order 12"}
    answer = web.post("/api/v1/access/requests", json=body, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 503 and WRITES_NOTHING in answer.json()["error"], answer.text
    assert state(arch) == before


def test_through_the_archive_service_a_refused_account_change_changes_nothing(arch: Path) -> None:
    """alice, a custodian, through the service (which holds the archive): the same refusal, the same nothing."""
    add_trigger(arch)
    before = state(arch)
    one_line_error(run_cli("token", "add", arch, "carol", "--role", "viewer", user="alice"), WRITES_NOTHING)
    one_line_error(run_cli("user", "disable", arch, "carol", user="alice"), WRITES_NOTHING)
    assert state(arch) == before
