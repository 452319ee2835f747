"""`python -m mdnet_keras COMMAND [--flags]`: dispatches to one command.

Each command lives in `mdnet_keras/cli/<command>.py`, defines its own absl
flags and a `main(argv)`; only the chosen command's module is imported, so
`python -m mdnet_keras COMMAND --help` lists that command's flags.

TensorFlow's log lines are hidden (`mdnet_keras.tf_logs`); a bare
`--verbose`, taken here for every command, shows them.
"""

import importlib
import sys

from absl import app

COMMANDS = {
    "train": "Train an MDNet with model.fit (label smoothing, AdamW).",
    "evaluate": "Evaluate a .keras or .tflite model on a data set.",
    "profile": "Parameters, MACs and peak activation memory per stage.",
    "convert": "Convert a .keras model to TFLite and validate it.",
    "predict": "Top classes of a .keras or .tflite model for images.",
}


def usage():
    lines = ["usage: python -m mdnet_keras COMMAND [--flags]", "", "commands:"]
    lines += [f"  {name:<10}{text}" for name, text in COMMANDS.items()]
    lines.append("\n`python -m mdnet_keras COMMAND --help` lists its flags;")
    lines.append("`--verbose` (any command) shows TensorFlow's log lines.")
    return "\n".join(lines)


def run(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        return 0 if len(argv) >= 2 else 2
    command = argv[1]
    if command not in COMMANDS:
        print(f"Unknown command '{command}'.\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"mdnet_keras.cli.{command}")
    # The launcher's --verbose (see tf_logs) is no flag of the command.
    args = [a for a in argv[2:] if a != "--verbose"]
    app.run(module.main, argv=[f"{argv[0]} {command}"] + args)
    return 0
