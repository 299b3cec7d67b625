import importlib

import pytest

from uninote.cli.main import COMMAND_MODULES, build_parser, main


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_every_listed_command_module_exists_and_registers(name):
    module = importlib.import_module(f"uninote.cli.{name}")
    assert callable(module.register)


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"prepare", "train-sft", "embed", "eval", "index", "bench",
                                "export-rewards", "train-rl", "worker", "simulate-annotators"}
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert len(capsys.readouterr().out) > 200, f"`uninote {name} --help` says too little"
