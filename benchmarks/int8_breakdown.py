"""Where MDNet's int8 batch-1 latency goes, side by side in one run.

MDNet is converted to full int8 with the export's defaults and with each
default turned off, and with one part of the model changed at a time
(kernels 3x3 and 5x5 only; all kernels 3x3; every attention layer replaced
by an identity), then timed against MobileNetV2 x1.0 for CIFAR in the same
interleaved rounds (`benchmarks.suite_tflite.latency_entry`). Each variant also reports its XNNPACK
partitions and the ops left out of them.

Latency does not depend on the weights' values, so the models are untrained
(seed 0); they are calibrated on real images (the CIFAR-10 sample shipped in
the package). Accuracy is not measured here: the variants that change the
model are not MDNet.

Usage:
    python benchmarks/int8_breakdown.py --out=benchmarks/results/int8_breakdown
    # The harness on a small model, in about a minute (what the test runs):
    python benchmarks/int8_breakdown.py --quick --out=/tmp/breakdown
"""

import argparse
import collections
import os
import sys
import tempfile


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import baselines  # noqa: E402
from benchmarks import suite_results  # noqa: E402
from benchmarks import suite_tflite  # noqa: E402

BUDGETS = {
    "full": {"variant": "mdnet", "reference": baselines.REFERENCE_MODEL,
             "calibration_images": 200, "latency_runs": 200,
             "latency_rounds": 10, "latency_warmup": 10},
    "quick": {"variant": "mdnet_micro", "reference": "resnet20",
              "calibration_images": 16, "latency_runs": 10,
              "latency_rounds": 2, "latency_warmup": 2},
}


Variant = collections.namedtuple("Variant",
                                 ["description", "build", "convert_kwargs"])


def without_attention(model):
    """A re-initialised copy of `model` whose attention layers pass their
    input through (the weights are new: this is for timing only)."""
    import keras

    from mdnet_keras.layers.attention_base import SelfAttentionBase

    def clone(layer):
        if isinstance(layer, SelfAttentionBase):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def seeded(build):
    """`build`, called after seeding every generator with 0."""
    import keras

    def seeded_build():
        keras.utils.set_random_seed(0)
        return build()

    return seeded_build


def variants(base, reference):
    """name -> `Variant`: MDNet `base` as exported and changed one way at a
    time, then the `reference` benchmark model."""
    import mdnet_keras

    def model(**kwargs):
        return mdnet_keras.MDNet(num_classes=10, variant=base, **kwargs)

    def mdnet(**kwargs):
        return seeded(lambda: model(**kwargs))

    return {
        base: Variant("export defaults: kernels in pieces of <= 25 taps, "
                      "symmetric matmul operands", mdnet(), {}),
        f"{base}_whole_kernels": Variant(
            "kernels kept whole (max_depthwise_taps=None)", mdnet(),
            {"max_depthwise_taps": None}),
        f"{base}_asymmetric_matmul": Variant(
            "matmul operands as the converter leaves them "
            "(symmetric_matmul=False)", mdnet(), {"symmetric_matmul": False}),
        f"{base}_kernels_3_5": Variant(
            "kernels 3x3 and 5x5 only, no pieces needed "
            "(kernel_sizes=(3, 5))", mdnet(kernel_sizes=(3, 5)), {}),
        f"{base}_kernels_3": Variant(
            "all multi-scale kernels 3x3 (kernel_sizes=(3,))",
            mdnet(kernel_sizes=(3,)), {}),
        f"{base}_no_attention": Variant(
            "every attention layer replaced by an identity",
            seeded(lambda: without_attention(model())), {}),
        reference: Variant(
            f"reference: {baselines.MODELS[reference]['description']}",
            seeded(lambda: baselines.build_model(reference, num_classes=10)),
            {}),
    }


def convert_all(table, images, budget, tmp_dir, clock):
    """Writes NAME_int8.tflite for every variant; returns their facts."""
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import xnnpack_partitions

    facts = {}
    for name, variant in table.items():
        clock.log(f"converting {name}")
        model = variant.build()
        content = convert_model(model, "int8", rep_images=images,
                                num_calibration=budget["calibration_images"],
                                **variant.convert_kwargs)
        with open(os.path.join(tmp_dir, f"{name}_int8.tflite"), "wb") as f:
            f.write(content)
        facts[name] = {
            "description": variant.description,
            "params": int(model.count_params()),
            "convert_kwargs": dict(variant.convert_kwargs),
            "int8_bytes": len(content),
            "xnnpack": xnnpack_partitions(content),
        }
    return facts


def measure(budget):
    from mdnet_keras.data.datasets import load_sample

    clock = suite_results.Clock(deadline_minutes=float("inf"))
    table = variants(budget["variant"], budget["reference"])
    images = load_sample().x_train
    with tempfile.TemporaryDirectory(prefix="mdnet_breakdown_") as tmp_dir:
        facts = convert_all(table, images, budget, tmp_dir, clock)
        latency = suite_tflite.latency_entry(list(table), budget, tmp_dir, clock)
    reference = latency["results"][budget["reference"]]["int8"]
    for name, row in facts.items():
        times = latency["results"][name]["int8"]
        row["latency_ms"] = {t: times[t]["median_ms"] for t in times}
        row["vs_reference"] = {
            t: times[t]["median_ms"] / reference[t]["median_ms"]
            for t in times}
    return {
        "budget": budget,
        "machine": suite_results.machine_info(),
        "versions": suite_results.versions(),
        "date": suite_results.now(),
        "latency_method": latency["method"],
        "runs_per_config": latency["runs_per_config"],
        "load_average_end": latency["load_average_end"],
        "variants": facts,
    }


def markdown(results, command):
    budget = results["budget"]
    machine = results["machine"].get("cpu_model", "this machine")
    litert = results["versions"].get("ai_edge_litert")
    lines = [
        "# Where MDNet's int8 latency goes",
        "",
        f"`{command}` on {machine} ({results['machine']['cpu_count']} "
        f"cores), {results['date']}; ai-edge-litert {litert}. Batch-1 "
        f"latency: median of {results['runs_per_config']} invokes in "
        f"{budget['latency_rounds']} interleaved rounds; untrained models "
        f"(seed 0) calibrated on {budget['calibration_images']} real images.",
        "",
        "| variant | what changes | int8 KiB | ops | XNNPACK partitions | "
        "ops left out | 1 thread (ms) | 2 threads (ms) | 1 thread vs "
        f"{budget['reference']} |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, row in results["variants"].items():
        xnnpack = row["xnnpack"]
        left_out = ", ".join(f"{op} x{n}" for op, n in sorted(
            xnnpack["left_out_by_type"].items())) or "none"
        lines.append(
            f"| {name} | {row['description']} | "
            f"{row['int8_bytes'] / 1024:.1f} | {xnnpack['ops']} | "
            f"{xnnpack['partitions']} | {left_out} | "
            f"{row['latency_ms']['1']:.2f} | {row['latency_ms']['2']:.2f} | "
            f"{row['vs_reference']['1']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small model and few runs (tests)")
    parser.add_argument("--out", default=os.path.join(
        "benchmarks", "results", "int8_breakdown"))
    args = parser.parse_args(argv)
    command = suite_results.command_line(__file__, argv)
    results = measure(BUDGETS["quick" if args.quick else "full"])
    results["command"] = command
    suite_results.write_report(args.out, "int8_breakdown", results,
                               markdown(results, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
