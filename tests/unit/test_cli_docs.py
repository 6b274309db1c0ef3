"""Every `lazarus` command is documented: help text with an example (STYLE: "a command's
docstring is its help with an example; a test fails when a command is undocumented").

Walks the real click tree, including groups other modules mount (lab, hook), and renders
each command's --help through click, so a broken help string fails here too.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from lazarus.cli.main import lazarus


def walk(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


COMMANDS = dict(walk(lazarus, ("lazarus",)))

def _style_cases() -> list[str]:
    return sorted(COMMANDS)


def test_the_tree_has_the_client_groups() -> None:
    for name in ("serve", "host list", "host update", "vm list", "vm recover", "vm terminate",
                 "vm deploy", "vm migrate", "datastore create", "sim power", "sim hang"):
        assert f"lazarus {name}" in COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_help(name: str) -> None:
    assert (COMMANDS[name].help or "").strip(), f"`{name}` has no help text: give it a docstring"


@pytest.mark.parametrize("name", _style_cases())
def test_command_help_has_example_and_option_help(name: str) -> None:
    command = COMMANDS[name]
    help_text = (command.help or "").strip()
    assert "Example" in help_text, f"`{name}`'s help has no example"
    assert command.get_short_help_str(), f"`{name}` has no short help"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"`{name}` option {param.opts[0]} has no help"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_renders(name: str) -> None:
    result = CliRunner().invoke(lazarus, [*name.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {name}")
