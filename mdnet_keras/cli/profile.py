"""`python -m mdnet_keras profile`: params, MACs, activation memory per stage."""

import json

from absl import flags

from mdnet_keras.models import MDNET_VARIANTS

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "mdnet", sorted(MDNET_VARIANTS), "MDNet variant.")
flags.DEFINE_list("input_shape", ["32", "32", "3"], "Height, width, channels.")
flags.DEFINE_integer("num_classes", 100, "Number of classes.")
flags.DEFINE_enum(
    "attention", "differential", ["differential", "standard"], "Attention kind."
)
flags.DEFINE_string("json", None, "Also write the report to this JSON file.")


def main(argv):
    del argv
    from mdnet_keras.models import MDNet
    from mdnet_keras.profile import format_profile
    from mdnet_keras.profile import profile

    model = MDNet(
        input_shape=tuple(int(d) for d in FLAGS.input_shape),
        num_classes=FLAGS.num_classes,
        variant=FLAGS.model,
        attention=FLAGS.attention,
    )
    report = profile(model)
    print(format_profile(report, f"{FLAGS.model} {tuple(model.input.shape[1:])}"))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(report, f, indent=2)
