"""`python -m mdnet_keras profile`: params, MACs, activation memory per stage."""

import json

from absl import flags

from mdnet_keras.cli.flag_util import define
from mdnet_keras.models import MDNET_VARIANTS

FLAGS = flags.FLAGS
# No default of its own: the other commands share --model (a file there).
define(flags.DEFINE_enum, "model", None, sorted(MDNET_VARIANTS),
       "MDNet variant (default: mdnet).")
define(flags.DEFINE_list, "input_shape", ["32", "32", "3"], "Height, width, channels.")
define(flags.DEFINE_integer, "num_classes", 100, "Number of classes.")
define(
    flags.DEFINE_enum,
    "attention",
    "differential",
    ["differential", "standard"],
    "Attention kind.",
)
define(flags.DEFINE_string, "json", None, "Also write the report to this JSON file.")
define(
    flags.DEFINE_boolean,
    "markdown",
    False,
    "Print a Markdown table of every variant (the README's table) instead.",
)


def build(variant):
    from mdnet_keras.models import MDNet

    return MDNet(
        input_shape=tuple(int(d) for d in FLAGS.input_shape),
        num_classes=FLAGS.num_classes,
        variant=variant,
        attention=FLAGS.attention,
    )


def variant_table():
    """A Markdown table of params, MACs and peak activations per variant."""
    from mdnet_keras.profile import profile

    shape = "x".join(FLAGS.input_shape)
    lines = [
        f"Measured at {shape} with {FLAGS.num_classes} classes "
        "(`python -m mdnet_keras profile --markdown`).",
        "",
        "| variant | params | MMACs | peak activations, float32 / int8 KiB "
        "| use |",
        "|---|---:|---:|---:|---|",
    ]
    for variant in MDNET_VARIANTS:
        total = profile(build(variant))["total"]
        lines.append(
            f"| `{variant}` | {total['params']:,} | {total['macs'] / 1e6:.1f} | "
            f"{total['peak_activation_bytes_float32'] / 1024:.0f} / "
            f"{total['peak_activation_bytes_int8'] / 1024:.0f} | "
            f"{MDNET_VARIANTS[variant]['description']} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    from mdnet_keras.profile import format_profile
    from mdnet_keras.profile import profile

    if FLAGS.markdown:
        print(variant_table())
        return
    variant = FLAGS.model or "mdnet"
    model = build(variant)
    report = profile(model)
    print(format_profile(report, f"{variant} {tuple(model.input.shape[1:])}"))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(report, f, indent=2)
