"""Every command has help and is documented in the README (sqlite-utils' test_docs idea)."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from custodes.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()


def all_commands(group: click.Group, prefix: str = "custodes") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        out.append((f"{prefix} {name}", cmd))
        if isinstance(cmd, click.Group):
            out += all_commands(cmd, f"{prefix} {name}")
    return out


@pytest.mark.parametrize(("name", "command"), all_commands(main), ids=lambda v: v if isinstance(v, str) else "")
def test_command_has_help_and_is_in_readme(name: str, command: click.Command) -> None:
    assert command.help, f"{name} needs a help text"
    # The first line says what the command does, as a sentence, and --help shows it.
    first = command.help.strip().split("\n\n")[0].replace("\n", " ")
    assert len(first.split()) >= 4 and first.rstrip().endswith((".", ":", ")")), f"{name}: {first!r}"
    undocumented = [p.name for p in command.params if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert undocumented == [], f"{name}: options without help: {undocumented}"
    shown = CliRunner().invoke(main, [*name.split()[1:], "--help"])
    assert shown.exit_code == 0 and " ".join(first.split()[:4]) in " ".join(shown.output.split())
    assert f"`{name}" in README, f"README.md does not document `{name}`"


def test_readme_quickstart_has_exactly_two_commands() -> None:
    block = README.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert [c.split()[0] for c in commands] == ["scripts/quickstart", "scripts/test"]
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci


def test_readme_service_setup_steps_work_as_written(tmp_path: Path) -> None:
    """The README's steps that make a served archive and set its first people, run as written: the account of
    the service here is the tests' (helpers.SERVICE_ACCOUNT), /srv and /opt/custodes are folders of the test,
    $EDITOR adds the people. A step the account cannot follow (a policy file it cannot read) fails the test."""
    import json
    import re
    import shlex
    import subprocess

    from helpers import SERVICE_ACCOUNT, account_python, ensure_accounts

    ensure_accounts()
    block = README.split("useradd --system --shell /usr/sbin/nologin custodes\n", 1)[1].split("```", 1)[0]
    steps = [line for line in block.splitlines() if " serve " not in line and " access " not in line]
    assert [s.split()[0] for s in steps] == ["install", "runuser", "install", "$EDITOR", "runuser"], steps
    for folder in (tmp_path, *tmp_path.parents):  # the account passes through to the test's folders
        folder.chmod(folder.stat().st_mode | 0o001)
    srv, cli = tmp_path / "srv", tmp_path / "opt" / "custodes" / "bin" / "custodes"
    srv.mkdir()
    cli.parent.mkdir(parents=True)
    cli.write_text(f'#!/bin/sh\nexec {shlex.join(account_python())} "$@"\n')
    editor = tmp_path / "editor"
    editor.write_text('#!/bin/sh\nprintf \'\\n[people]\\nalice = "approver"\\nbob = "custodian"\\n\' >> "$1"\n')
    for script in (cli, editor):
        script.chmod(0o755)
    script = "\n".join(
        re.sub(
            r"(-[ugo]) custodes\b", rf"\1 {SERVICE_ACCOUNT}", s.replace("/opt/custodes/bin/custodes", str(cli))
        ).replace("/srv/", f"{srv}/")
        for s in steps
    )
    done = subprocess.run(
        ["bash", "-e", "-c", script], env={**os.environ, "EDITOR": str(editor)}, capture_output=True, timeout=300
    )
    assert done.returncode == 0, (script, done.stderr.decode())
    shown = subprocess.run(
        ["runuser", "-u", SERVICE_ACCOUNT, "--", str(cli), "policy", "show", str(srv / "archive"), "--json"],
        capture_output=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    text = json.loads(shown.stdout)["text"]
    assert text.endswith('[people]\nalice = "approver"\nbob = "custodian"\n'), text
