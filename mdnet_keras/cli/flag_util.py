"""Flag definition shared by the command modules."""

import sys

from absl import flags


class FlagDefaultConflict(ValueError):
    """Two command modules define one flag with different defaults."""


def define(definer, name, default, *args, **kwargs):
    """Defines a flag once per process and lists it in the command's --help.

    Several command modules share flags (`--model`, `--dataset`, ...) and
    tests import more than one of them, so a flag another module already
    defined is reused, provided it has the same default: a flag with two
    defaults would take whichever its first importer gave it. Registering it
    as a key flag of the program (`sys.argv[0]`) makes
    `python -m mdnet_keras COMMAND --help` list it.

    Args:
        definer: an absl `flags.DEFINE_*` function.
        name: str, the flag name.
        default: the flag's default.
        *args: the definer's other arguments (help, enum values, ...).
        **kwargs: the definer's keyword arguments.

    Raises:
        FlagDefaultConflict: `name` is already defined with another default.

    Example:

    ```python
    from absl import flags
    define(flags.DEFINE_integer, "top_k", 3, "Classes printed per image.")
    ```
    """
    if name not in flags.FLAGS:
        definer(name, default, *args, **kwargs)
    else:
        flag = flags.FLAGS[name]
        parsed = default
        if isinstance(default, str) and not isinstance(flag.default, str):
            parsed = flag.parser.parse(default)
        if parsed != flag.default:
            owner = flags.FLAGS.find_module_defining_flag(name, "another module")
            raise FlagDefaultConflict(
                f"Flag --{name} is already defined by {owner} with default "
                f"{flag.default!r}; redefining it with default {default!r} "
                "would make the default depend on import order. Give both "
                "definitions one default.")
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
