"""Flag definition shared by the command modules."""

import sys

from absl import flags


def define(definer, name, *args, **kwargs):
    """Defines a flag once per process and lists it in the command's --help.

    Several command modules share flags (`--model`, `--dataset`, ...) and
    tests import more than one of them, so a flag another module already
    defined is reused. Registering it as a key flag of the program
    (`sys.argv[0]`) makes `python -m mdnet_keras COMMAND --help` list it.

    Args:
        definer: an absl `flags.DEFINE_*` function.
        name: str, the flag name.
        *args: the definer's other arguments (default, help, ...).
        **kwargs: the definer's keyword arguments.
    """
    if name not in flags.FLAGS:
        definer(name, *args, **kwargs)
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
