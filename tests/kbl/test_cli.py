"""``kbl`` itself: a subcommand imports only its own module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kbl import cli


def test_a_subcommand_imports_neither_fastapi_nor_the_other_commands() -> None:
    code = (
        "import sys; from kbl import cli; cli.build_parser('controller').parse_args(['controller', '--once']);"
        "print(sorted(m for m in ('fastapi', 'kbl.commands.serve', 'kbl.commands.bench', 'kbl.commands.demo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "words",
    [
        ["controller", "--once", "--dry-run", "--snapshot", "s.json", "--max-nodes", "7"],
        ["serve", "--exhaustive-scheduler-name", "kbl-scheduler-exhaustive"],
        ["reconciler", "--once"],
    ],
)
def test_the_parser_of_one_subcommand_reads_its_words_as_the_whole_parser_does(words: list[str]) -> None:
    whole = vars(cli.build_parser().parse_args(words))
    alone = vars(cli.build_parser(words[0]).parse_args(words))
    assert alone == whole


def test_help_without_a_subcommand_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name, _, _ in cli.COMMANDS)
