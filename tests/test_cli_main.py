"""The dispatcher (mdnet_keras.cli.main)."""

from mdnet_keras.cli import main


def test_usage_lists_commands_and_verbose(capsys):
    assert main.run(["prog"]) == 2
    text = capsys.readouterr().out
    assert all(name in text for name in main.COMMANDS)
    assert "--verbose" in text
    assert main.run(["prog", "nope"]) == 2
    assert "Unknown command 'nope'" in capsys.readouterr().err
