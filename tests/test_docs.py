"""Every command has help and is documented in the README (sqlite-utils' test_docs idea)."""

from __future__ import annotations

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
