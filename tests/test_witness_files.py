"""What a witness folder may hold besides notes (hostile review of issue 13): whoever writes in it can put a FIFO,
a link or a huge file under a checkpoint's name. `verify --witness`, `ledger verify --witness` and `ledger
publish` read every published name; each such file is a ``witness_mismatch`` naming it (publish: nothing
published), and the command finishes at once, embedded and through the archive service (which a blocking read
would hang for everyone)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers import run_cli, shared_witness

#: A command that reads a FIFO blocks for ever; one that does not finishes well within this.
QUICK = 30
BIG = 10 * 1024 * 1024


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """What the folder holds, by name: (inode, mode), without reading anything (a FIFO would block)."""
    return {p.name: (p.lstat().st_ino, p.lstat().st_mode) for p in folder.iterdir()}


def _published(arch: Path, witness: Path, user: str | None) -> int:
    out = run_cli("ledger", "publish", arch, witness, "--json", user=user, timeout=QUICK)
    assert out.returncode == 0, out.stderr
    return max(int(p.name) for p in witness.iterdir())


def _one_mismatch_each(arch: Path, witness: Path, planted: Path, why: str, user: str | None) -> None:
    """verify, ledger verify: exit 1, one witness_mismatch naming ``planted`` and ``why``; publish: exit 1,
    the finding and NOT PUBLISHED, nothing added to the folder."""
    for command in (("verify",), ("ledger", "verify")):
        out = run_cli(*command, arch, "--witness", witness, "--json", user=user, timeout=QUICK)
        assert out.returncode == 1, (out.stdout, out.stderr)
        findings = json.loads(out.stdout)["findings"]
        assert [f["kind"] for f in findings] == ["witness_mismatch"], findings
        assert f"published checkpoint {planted}: {why}" in findings[0]["message"], findings
    before = _snapshot(witness)
    out = run_cli("ledger", "publish", arch, witness, user=user, timeout=QUICK)
    assert out.returncode == 1, (out.stdout, out.stderr)
    said = out.stdout.decode()
    assert f"witness_mismatch: published checkpoint {planted}: {why}" in said, said
    assert said.rstrip().endswith(f"NOT PUBLISHED: the ledger disagrees with {witness}"), said
    assert _snapshot(witness) == before


def _plant_each(arch: Path, witness: Path, user: str | None) -> None:
    top = _published(arch, witness, user)
    fifo = witness / str(top + 1)  # named as the next checkpoint would be
    os.mkfifo(fifo, 0o644)
    _one_mismatch_each(arch, witness, fifo, "a FIFO, not a checkpoint file", user)
    fifo.unlink()
    big = witness / str(top + 1)
    with open(big, "wb") as f:
        f.truncate(BIG)  # 10 MiB, never read into memory
    big.chmod(0o644)
    _one_mismatch_each(arch, witness, big, "more than 65536 bytes, bigger than any checkpoint note", user)
    big.unlink()
    link = witness / str(top + 1)
    link.symlink_to(witness / str(top))  # even to a genuine note: a witness holds files, not pointers
    _one_mismatch_each(arch, witness, link, "a link, not a checkpoint file", user)
    link.unlink()
    out = run_cli("verify", arch, "--witness", witness, "-q", user=user, timeout=QUICK)
    assert out.returncode == 0, (out.stdout, out.stderr)  # the genuine notes alone still check


def test_a_fifo_a_big_file_or_a_link_in_the_witness_is_a_mismatch_embedded(cli_archive: Path, tmp_path: Path) -> None:
    witness = tmp_path / "witness"
    witness.mkdir()
    _plant_each(cli_archive, witness, None)


def test_a_fifo_a_big_file_or_a_link_in_the_witness_is_a_mismatch_through_the_service(
    cli_archive: Path, tmp_path: Path
) -> None:
    witness = shared_witness(tmp_path / "witness", "alice")  # the service appends to it for alice
    _plant_each(cli_archive, witness, "alice")
    # The service was never stuck: it still answers, for root as well.
    assert run_cli("verify", cli_archive, "--witness", witness, "-q", timeout=QUICK).returncode == 0
