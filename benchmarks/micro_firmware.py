"""What the TFLite Micro firmware costs on a Cortex-M4: flash, arena, and
instructions per inference, with the reference kernels and with CMSIS-NN.

Each model is converted to int8 as `convert --micro_out` converts it (large
depthwise kernels whole), rendered as the app with golden images (real test
images, one per class), built with the app's Makefile against a TFLite Micro
tree (`--tflm_dir`, default ../shared/tflm) on the host and for a Cortex-M4,
and run: the host binary directly, the Cortex-M4 ELFs under qemu-system-arm.
Measured per build:

- flash: `.text` + `.rodata` of the ELF (`arm-none-eabi-size -A`; `.data`
  is listed apart), and the model array (the `.tflite` size) within it;
- arena: the smallest that the Python TFLite Micro interpreter allocates on
  the x86-64 host (bisection), and what the firmware uses
  (`interpreter.arena_used_bytes()`, printed by the app's test);
- golden images: the largest difference from the Python interpreter's
  outputs, in int8 steps, and whether the winning class is the same;
- instructions per inference: executed by the emulated Cortex-M4, counted by
  the QEMU plugin of the TFLite Micro tree (`tools/qemu_insn_plugin`): a run
  over all golden images minus a run over one, per extra image.
  Instructions are not cycles: QEMU models no pipeline, wait states or
  memory latency, so this is a latency proxy that ranks builds, not a time.

Models are briefly trained (1 epoch on 5,000 CIFAR-10 images, JPEG copy) so
that the golden images' winning classes are not near-ties; sizes and
instruction counts do not depend on the training. Quick mode: one tiny
untrained model on the packaged sample, for the test.

Usage:
    python benchmarks/micro_firmware.py --out=benchmarks/results/micro_firmware
    python benchmarks/micro_firmware.py --quick --out=/tmp/micro_firmware
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import baselines  # noqa: E402
from benchmarks import suite_results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TFLM_DIR = os.path.join(os.path.dirname(ROOT), "shared", "tflm")
CIFAR = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10.npz")
BUDGETS = {
    "full": {"models": ("mdnet_micro", "resnet20", "mobilenetv2_x0_5"),
             "data": "cifar10", "train_images": 5000, "epochs": 1,
             "calibration_images": 100, "golden_candidates": 1000,
             "accuracy_images": 2000},
    "quick": {"models": ("tiny",), "data": "sample", "train_images": 0,
              "epochs": 0, "calibration_images": 16, "golden_candidates": 200,
              "accuracy_images": 50},
}
# TFLite Micro's person-detection example: a 300 KB model in a 136 KB arena.
TARGETS = {"model": "mdnet_micro", "model_kib": 300, "arena_kib": 136}
# Arena added on top of the host measurement in the benchmark builds, so
# that every build allocates and reports what it really uses.
ARENA_MARGIN_SHARE = 0.25
CORTEX_M = ("cm4-ref", "cm4-cmsis_nn")


def tiny_model(input_shape, num_classes):
    """Quick mode's model: two convolutions and a classifier."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = layers.DepthwiseConv2D(3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(num_classes, activation="softmax")(x),
                       name="tiny")


def load_data(budget):
    from mdnet_keras.data.datasets import load_dataset
    from mdnet_keras.data.datasets import load_sample

    if budget["data"] == "sample":
        return load_sample()
    return load_dataset("cifar10", data=CIFAR)


def trained_model(name, ds, budget):
    import keras

    keras.utils.set_random_seed(0)
    shape, classes = ds.x_train.shape[1:], ds.num_classes
    model = (tiny_model(shape, classes) if name == "tiny"
             else baselines.build_model(name, shape, classes))
    if budget["train_images"]:
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(ds.x_train))[:budget["train_images"]]
        model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
        model.fit(ds.x_train[idx].astype("float32"), ds.y_train[idx],
                  epochs=budget["epochs"], batch_size=32, verbose=0)
    return model


def insn_plugin(tflm_dir, work_dir):
    """Builds the tree's QEMU instruction-count plugin; None without it."""
    source = os.path.join(tflm_dir, "tools", "qemu_insn_plugin", "insn_count.c")
    if not os.path.isfile(source):
        return None
    plugin = os.path.join(work_dir, "libinsn_count.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", plugin, source],
                   check=True)
    return plugin


def instructions_per_inference(app, tflm_dir, config, plugin, all_runs, num_images):
    """Instructions of one inference: the run over all `num_images` golden
    images (`all_runs`, counted) minus a run over one, per extra image
    (setup and the first image cancel out)."""
    from mdnet_keras.export import micro_build

    one = micro_build.run(app, tflm_dir, config, build_dir="build_one_image",
                          app_cxxflags="-DMDNET_GOLDEN_RUNS=1",
                          qemu_extra=f"-plugin {plugin}")
    if "insns" not in one or "insns" not in all_runs:
        raise RuntimeError(f"{config}: the plugin printed no count:\n"
                           + one["text"][-800:])
    return (all_runs["insns"] - one["insns"]) // (num_images - 1)


def graph_forms(model, ds, budget, converted, clock):
    """Top-1 on test images of the float model and of its int8 conversions
    as the converter writes it and in the micro graph form
    (`with_micro_graph`), with each one's argmax agreement with float and
    its size and arena; None where the form changes nothing."""
    from mdnet_keras.export import LiteRTRunner
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import describe_ops
    from mdnet_keras.export import micro
    from mdnet_keras.export import micro_model
    from mdnet_keras.export.micro_graph import with_micro_graph

    if with_micro_graph(model) is model:
        return None
    clock.log(f"{model.name}: the converter's graph form, for comparison")
    plain = convert_model(model, "int8", rep_images=ds.x_train,
                          num_calibration=budget["calibration_images"],
                          max_depthwise_taps=None)
    # A random subset: CIFAR-10's test split is sorted by class.
    pick = np.random.default_rng(1).permutation(len(ds.x_test))[:budget["accuracy_images"]]
    x, y = ds.x_test[pick], ds.y_test[pick]
    reference = model.predict(x.astype("float32"), verbose=0).argmax(-1)
    forms = {"float": {"top1": float((reference == y).mean())}}
    for form, data in (("converter", plain), ("micro_graph", converted)):
        top = LiteRTRunner(data).predict(x).argmax(-1)
        small = micro_model(data)[0]
        forms[form] = {"top1": float((top == y).mean()),
                       "agreement_with_float": float((top == reference).mean()),
                       "ops": len(describe_ops(data)), "model_bytes": len(small),
                       "arena_host_python": micro.find_min_arena(small)}
    forms["images"] = int(len(x))
    return forms


def measure_model(name, ds, budget, tflm_dir, plugin, work_dir, clock):
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import micro
    from mdnet_keras.export import micro_app
    from mdnet_keras.export import micro_build
    from mdnet_keras.export import micro_model

    clock.log(f"{name}: training and converting")
    model = trained_model(name, ds, budget)
    converted = convert_model(model, "int8", rep_images=ds.x_train,
                              num_calibration=budget["calibration_images"],
                              max_depthwise_taps=None, micro_graph=True)
    content, _ = micro_model(converted)
    clock.log(f"{name}: arena (Python TFLite Micro, bisection)")
    arena = micro.find_min_arena(content)
    # A random subset: CIFAR-10's test split is sorted by class.
    pick = np.random.default_rng(0).permutation(len(ds.x_test))[:budget["golden_candidates"]]
    golden = micro.golden_set(content, ds.x_test[pick], ds.y_test[pick], arena)
    margin = int(arena * ARENA_MARGIN_SHARE)
    app = os.path.join(work_dir, name)
    micro_app.render_template(content, app, arena, ds.class_names,
                          arena_margin=margin, golden=golden)
    row = {"params": int(model.count_params()), "model_bytes": len(content),
           "converted_bytes": len(converted),
           "ops": micro_app.model_ops(content), "arena_host_python": arena,
           "arena_margin_in_build": margin, "golden_images": len(golden[0]),
           # In .rodata too: uint8 pixels, int16 outputs, int labels.
           "golden_bytes": int(golden[0].size + 2 * golden[1].size + 4 * len(golden[2])),
           "graph_forms": graph_forms(model, ds, budget, converted, clock),
           "builds": {}}
    expected = golden[1].astype(np.int32)
    for config in micro_build.CONFIGS:
        clock.log(f"{name}: {config} build and golden run")
        count = config in CORTEX_M and plugin and len(golden[0]) > 1
        r = micro_build.run(app, tflm_dir, config,
                            qemu_extra=f"-plugin {plugin}" if count else "")
        diff = np.abs(r["outputs"] - expected)
        build = {"passed": r["passed"], "max_diff_steps": int(diff.max()),
                 "bit_exact_images": int((diff.max(-1) == 0).sum()),
                 "same_winner_images": int(
                     (r["outputs"].argmax(-1) == expected.argmax(-1)).sum()),
                 "test_tolerance_steps": r.get("tolerance"),
                 "arena_used": r.get("arena_used")}
        if config in CORTEX_M:
            build["sections"] = micro_build.section_sizes(
                micro_build.binary_path(app, config))
            if count:
                clock.log(f"{name}: {config} instructions per inference")
                build["instructions_per_inference"] = instructions_per_inference(
                    app, tflm_dir, config, plugin, r, len(golden[0]))
        row["builds"][config] = build
    return row


def measure(budget, tflm_dir):
    from mdnet_keras.export import micro_build

    missing = micro_build.missing_tools()
    if missing:
        raise SystemExit("micro_firmware needs: " + "; ".join(missing))
    clock = suite_results.Clock(deadline_minutes=float("inf"))
    ds = load_data(budget)
    results = {"budget": budget, "machine": suite_results.machine_info(),
               "versions": suite_results.versions(), "date": suite_results.now(),
               "tflm_dir": os.path.abspath(tflm_dir), "targets": TARGETS,
               "toolchain": {t: subprocess.run([t, "--version"], capture_output=True,
                                               text=True).stdout.splitlines()[0]
                             for t in ("arm-none-eabi-g++", "g++", "qemu-system-arm")},
               "models": {}}
    with tempfile.TemporaryDirectory(prefix="mdnet_micro_fw_") as work_dir:
        plugin = insn_plugin(tflm_dir, work_dir)
        if plugin is None:
            results["instructions"] = "not counted: no tools/qemu_insn_plugin in the tree"
        for name in budget["models"]:
            try:
                results["models"][name] = measure_model(
                    name, ds, budget, tflm_dir, plugin, work_dir, clock)
            except (micro_build.FirmwareError, RuntimeError) as e:
                # Reported in the results (e.g. a model that does not fit).
                clock.log(f"{name}: failed: {e}")
                results.setdefault("failed", {})[name] = str(e)[-1500:]
    results["target_check"] = check_targets(results)
    return results


def check_targets(results):
    row = results["models"].get(TARGETS["model"])
    if row is None:
        return None
    used = max(b["arena_used"] or 0 for c, b in row["builds"].items() if c in CORTEX_M)
    return {
        "model_bytes": row["model_bytes"],
        "model_within": row["model_bytes"] <= TARGETS["model_kib"] * 1024,
        "arena_cortex_m_bytes": used,
        "arena_within": used <= TARGETS["arena_kib"] * 1024,
        "reference_bit_exact_on_every_golden_image": all(
            row["builds"][c]["max_diff_steps"] == 0 for c in ("host", "cm4-ref")),
    }


def kib(value):
    return "-" if value is None else f"{value / 1024:.1f}"


def markdown(results, command):
    budget = results["budget"]
    lines = [
        "# TFLite Micro firmware: flash, arena and instructions on a Cortex-M4",
        "",
        f"`{command}`, {results['date']}, on {results['machine'].get('cpu_model', '?')} "
        f"({results['machine']['cpu_count']} cores shared with other jobs: wall times "
        "are not reported). Toolchain: " + "; ".join(results["toolchain"].values())
        + f". TFLite Micro tree: `{results['tflm_dir']}`.",
        "",
        "Models: int8, large depthwise kernels whole, MDNet in its micro graph form "
        "(as `--micro_out`: `with_micro_graph`, the same float function), "
        + ("briefly trained (1 epoch on "
           f"{budget['train_images']} CIFAR-10 images, JPEG copy)"
           if budget["train_images"] else "untrained")
        + f", calibrated on {budget['calibration_images']} training images; "
        "golden images: one test image per class. Model KiB: the array the app "
        "compiles in (`micro_model`: the converted `.tflite` without the strings "
        "and repeated zero points that TFLite Micro never reads; same outputs bit "
        "for bit), next to the converted `.tflite`. Arena: smallest that the Python "
        "interpreter allocates on x86-64 (bisection) and what each firmware uses "
        "(`arena_used_bytes()`, built with a margin so that it allocates). "
        "Flash = `.text` + `.rodata` of the ELF (arm-none-eabi-size), with the model "
        "array and the golden images (the test's data, not needed by an app) in "
        "`.rodata`; the column after it leaves the golden images out. Instructions per inference: executed by qemu-system-arm 7.2's "
        "emulated Cortex-M4 (instruction-count plugin: a run over all golden images "
        "minus a run over one, per extra image). **Instructions are not cycles**: QEMU models no pipeline, "
        "flash wait states or memory latency.",
        "",
        "| model | kernels | model KiB | converted KiB | flash KiB (.text+.rodata) | flash KiB without "
        "golden images | .data+.bss KiB | "
        "arena KiB (host Python) | arena KiB used | golden: bit-exact / same class | "
        "max diff (int8 steps) | M instructions / inference |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, row in results["models"].items():
        for config, b in row["builds"].items():
            s = b.get("sections", {})
            insns = b.get("instructions_per_inference")
            flash = s.get(".text", 0) + s.get(".rodata", 0) if s else None
            lines.append(
                f"| {name} | {config} | {kib(row['model_bytes'])} | "
                f"{kib(row.get('converted_bytes'))} | {kib(flash)} | "
                f"{kib(flash - row['golden_bytes'] if flash else None)} | "
                f"{kib(s.get('ram')) if s else '-'} | {kib(row['arena_host_python'])} | "
                f"{kib(b['arena_used'])} | {b['bit_exact_images']} / "
                f"{b['same_winner_images']} of {row['golden_images']} | "
                f"{b['max_diff_steps']} | "
                f"{'-' if insns is None else f'{insns / 1e6:.1f}'} |")
    for name, error in results.get("failed", {}).items():
        lines.append(f"| {name} | failed: {error.splitlines()[0][:200]} |")
    lines.append("")
    for name, row in results["models"].items():
        b = row["builds"]
        ref = b.get("cm4-ref", {}).get("instructions_per_inference")
        cmsis = b.get("cm4-cmsis_nn", {}).get("instructions_per_inference")
        if ref and cmsis:
            lines.append(f"- {name}: CMSIS-NN runs {ref / cmsis:.1f}x fewer instructions "
                         "than the reference kernels.")
    for name, row in results["models"].items():
        forms = row.get("graph_forms")
        if not forms:
            continue
        lines += ["", f"{name}, int8 on {forms['images']} random test images (LiteRT), "
                  f"float top-1 {100 * forms['float']['top1']:.1f}%:", "",
                  "| graph form | top-1 % | argmax agreement with float % | ops | "
                  "model KiB | arena KiB (host Python) |", "|---|---:|---:|---:|---:|---:|"]
        for form in ("converter", "micro_graph"):
            f = forms[form]
            lines.append(f"| {form} | {100 * f['top1']:.1f} | "
                         f"{100 * f['agreement_with_float']:.1f} | {f['ops']} | "
                         f"{kib(f['model_bytes'])} | {kib(f['arena_host_python'])} |")
    t = results.get("target_check")
    if t:
        lines += [
            "",
            f"Targets for {TARGETS['model']} (TFLite Micro's person-detection example: "
            f"{TARGETS['model_kib']} KiB model, {TARGETS['arena_kib']} KiB arena):",
            f"- model data {kib(t['model_bytes'])} KiB: "
            + ("within" if t["model_within"] else "**missed**"),
            f"- arena on the Cortex-M4 (largest of the two builds) "
            f"{kib(t['arena_cortex_m_bytes'])} KiB: "
            + ("within" if t["arena_within"] else "**missed**"),
            "- reference-kernel firmware bit-exact against Python on every golden image: "
            + ("yes" if t["reference_bit_exact_on_every_golden_image"] else "**no**"),
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one tiny untrained model (tests)")
    parser.add_argument("--tflm_dir", default=DEFAULT_TFLM_DIR,
                        help="TFLite Micro tree(s), as the app's TFLM_DIR")
    parser.add_argument("--models", default=None,
                        help="comma-separated models (default: the budget's)")
    parser.add_argument("--out", default=os.path.join(
        "benchmarks", "results", "micro_firmware"))
    args = parser.parse_args(argv)
    command = suite_results.command_line(__file__, argv)
    budget = dict(BUDGETS["quick" if args.quick else "full"])
    if args.models:
        budget["models"] = tuple(args.models.split(","))
    results = measure(budget, args.tflm_dir)
    results["command"] = command
    suite_results.write_report(args.out, "micro_firmware", results,
                               markdown(results, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
