"""Top-1 of a trained MDNet in the two int8 modes, against its float model.

    python benchmarks/int8_modes_accuracy.py \
        [--test_images=10000] [--out=benchmarks/results/int8_modes_accuracy]
    python benchmarks/int8_modes_accuracy.py --quick --out=/tmp/int8_modes

`int8` is the converter's full int8 (what the Edge TPU and TFLite Micro run);
`int8_xnnpack` keeps SOFTMAX and RSQRT in float so that XNNPACK runs the
whole graph on phones (`mdnet_keras.export.selective`). Both are calibrated
on the same training images and scored on the same test images; each is
compared with the float Keras model, and the two with each other, by the
paired test of the export's accuracy gate (`paired_gate`: the drop in
points, its interval and the exact McNemar p on the images only one of the
two gets right).

The model is the shipped CIFAR-10 MDNet (`MDNet(weights="cifar10")`) on
CIFAR-10 (JPEG copy) from ../shared/data. Quick mode: an untrained
`mdnet_micro` on the package sample, for the test of this script.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import suite_data  # noqa: E402
from benchmarks import suite_results  # noqa: E402

MODES = ("int8", "int8_xnnpack")
CALIBRATION_IMAGES = 200


def load(quick, test_images):
    """(model, model description, data facts, x_train, x_test, y_test)."""
    import mdnet_keras
    from mdnet_keras.data import load_dataset

    if quick:
        data = load_dataset("sample")
        model = mdnet_keras.MDNet(num_classes=data.num_classes,
                                  variant="mdnet_micro")
        about = "untrained mdnet_micro (harness check only)"
        source = "CIFAR-10 (JPEG copy) sample embedded in mdnet_keras"
    else:
        data = load_dataset("cifar10", data=suite_data.CIFAR10_NPZ)
        model = mdnet_keras.MDNet(num_classes=10, weights="cifar10")
        about = 'MDNet(weights="cifar10"), the shipped CIFAR-10 weights'
        source = "CIFAR-10 (JPEG copy), ../shared/data/cifar10.npz"
    test = suite_data.balanced_subset(data.y_test, test_images, 0)
    facts = {"source": source, "test_images": int(len(test)),
             "calibration_images": CALIBRATION_IMAGES,
             "subset": "class-balanced, seed 0"}
    return (model, about, facts, data.x_train, data.x_test[test],
            data.y_test[test])


def measure(quick, test_images):
    from mdnet_keras.export import LiteRTRunner
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import paired_gate
    from mdnet_keras.export import xnnpack_partitions

    model, about, facts, x_train, x_test, y_test = load(quick, test_images)
    float_pred = model.predict(x_test.astype("float32"), batch_size=250,
                               verbose=0).argmax(-1)
    correct = {"float": float_pred == y_test}
    sizes, partitions = {}, {}
    for mode in MODES:
        content = convert_model(model, mode, rep_images=x_train,
                                num_calibration=CALIBRATION_IMAGES)
        sizes[mode] = len(content)
        partitions[mode] = xnnpack_partitions(content)["partitions"]
        pred = LiteRTRunner(content).predict(x_test).argmax(-1)
        correct[mode] = pred == y_test
    return {
        "model": about, "data": facts,
        "top1": {k: float(v.mean()) for k, v in correct.items()},
        "size_bytes": sizes, "xnnpack_partitions": partitions,
        "vs_float": {mode: paired_gate(correct["float"], correct[mode])
                     for mode in MODES},
        "int8_xnnpack_vs_int8": paired_gate(correct["int8"],
                                            correct["int8_xnnpack"]),
    }


def markdown(results):
    data = results["data"]
    lines = [
        "# Top-1 of the two int8 modes against the float model", "",
        f"`{results['command']}`, {results['model']}; data: {data['source']}, "
        f"{data['test_images']:,} test images ({data['subset']}); both int8 "
        f"models calibrated on the same {data['calibration_images']} "
        "training images. Machine: "
        f"{suite_results.describe_machine(results['machine'])}.", "",
        "| model | top-1 % | size KiB | XNNPACK partitions | drop vs float "
        "(points, 95% interval) | McNemar p | gate |",
        "|---|---:|---:|---:|---|---:|---|"]
    lines.append(f"| float (Keras) | {100 * results['top1']['float']:.2f} | "
                 "- | - | - | - | - |")
    for mode in MODES:
        gate = results["vs_float"][mode]
        low, high = gate["interval_points"]
        lines.append(
            f"| {mode} | {100 * results['top1'][mode]:.2f} | "
            f"{results['size_bytes'][mode] / 1024:.0f} | "
            f"{results['xnnpack_partitions'][mode]} | "
            f"{gate['drop_points']:+.2f} ({low:+.2f} to {high:+.2f}) | "
            f"{gate['mcnemar_p']:.3g} | {gate['status']} |")
    between = results["int8_xnnpack_vs_int8"]
    low, high = between["interval_points"]
    lines += ["", f"int8_xnnpack against int8 on the same images: "
              f"{between['drop_points']:+.2f} points ({low:+.2f} to "
              f"{high:+.2f}; {between['only_reference_right']} images only "
              f"int8 gets right, {between['only_candidate_right']} only "
              f"int8_xnnpack; exact McNemar p={between['mcnemar_p']:.3g}).", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test_images", type=int, default=10000)
    parser.add_argument("--quick", action="store_true",
                        help="untrained mdnet_micro, 64 sample images (tests)")
    parser.add_argument("--out", default=os.path.join(
        "benchmarks", "results", "int8_modes_accuracy"))
    args = parser.parse_args(argv)
    results = measure(args.quick, 64 if args.quick else args.test_images)
    return suite_results.publish(results, __file__, argv, args.out,
                                 "int8_modes_accuracy", markdown)


if __name__ == "__main__":
    main()
