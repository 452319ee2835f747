"""What the input pipeline costs per batch, option by option.

`ImageBatches` makes every training batch on the host (NumPy on uint8
images): on a fast accelerator this is part of the host-side time a step
has to hide (issue 11 sets 2 ms a step as the target for the whole loop).
This times `ImageBatches[i]` alone, in one thread, for the augmentation
options of the recipes, in interleaved rounds (every option once per
round, so a change of load on shared cores hits all of them):

- `none`: shuffled batches, no augmentation (evaluation);
- `crop_flip`: random crop from zero padding and horizontal flip (the
  default of every recipe);
- `crop_flip_mixup`, `crop_flip_cutmix`: with MixUp / CutMix (alpha 1.0);
- `crop_flip_randaugment`: with `keras.layers.RandAugment`.

Usage:
    python benchmarks/pipeline.py --out=benchmarks/results/pipeline
    # The harness on the embedded sample, in seconds (what the test runs):
    python benchmarks/pipeline.py --quick --out=/tmp/pipeline
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import suite_data  # noqa: E402
from benchmarks import suite_results  # noqa: E402

OPTIONS = {
    "none": dict(augment=False),
    "crop_flip": dict(),
    "crop_flip_mixup": dict(mixup_alpha=1.0),
    "crop_flip_cutmix": dict(cutmix_alpha=1.0),
    "crop_flip_randaugment": dict(randaugment=True),
}
BUDGETS = {
    "full": {"data": "cifar10", "batch_size": 256, "batches": 10, "rounds": 3},
    "quick": {"data": "sample", "batch_size": 32, "batches": 3, "rounds": 2},
}


def load_images(name):
    from mdnet_keras.data import load_dataset

    if name == "cifar10":
        return load_dataset("cifar10", data=suite_data.CIFAR10_NPZ)
    return load_dataset(name)


def measure(budget):
    """Median milliseconds per batch of each option, over the rounds."""
    from mdnet_keras.data import ImageBatches

    data = load_images(budget["data"])
    batches = {
        name: ImageBatches(data.x_train, data.y_train, data.num_classes,
                           batch_size=budget["batch_size"], seed=0, **options)
        for name, options in OPTIONS.items()}
    for source in batches.values():
        source[0]  # RandAugment builds on its first batch
    times = {name: [] for name in batches}
    count = len(next(iter(batches.values())))
    for round_index in range(budget["rounds"]):
        for name, source in batches.items():
            started = time.perf_counter()
            for i in range(budget["batches"]):
                source[(round_index * budget["batches"] + i) % count]
            times[name].append(1000 * (time.perf_counter() - started)
                               / budget["batches"])
        print(f"round {round_index + 1}/{budget['rounds']}: " + ", ".join(
            f"{name} {t[-1]:.2f} ms" for name, t in times.items()),
            flush=True)
    shape = tuple(int(d) for d in data.x_train.shape[1:])
    return {
        "data": {"name": data.name, "image_shape": shape,
                 "num_train": int(len(data.x_train))},
        "budget": budget,
        "ms_per_batch": {name: round(statistics.median(t), 3)
                         for name, t in times.items()},
        "ms_per_batch_per_round": {name: [round(v, 3) for v in t]
                                   for name, t in times.items()},
    }


def markdown(results):
    budget, data = results["budget"], results["data"]
    base = results["ms_per_batch"]["crop_flip"]
    lines = [
        "# The input pipeline alone, per batch", "",
        f"Command: `{results['command']}`. Machine: "
        f"{suite_results.describe_machine(results['machine'])}. Data: "
        f"{data['name']} ({data['num_train']} training images "
        f"{tuple(data['image_shape'])}), batch {budget['batch_size']}; "
        f"`ImageBatches[i]` in one thread, median over {budget['rounds']} "
        f"interleaved rounds of {budget['batches']} batches.", "",
        "| option | ms / batch | images / s | vs crop_flip |",
        "|---|---:|---:|---:|",
    ]
    for name, ms in results["ms_per_batch"].items():
        lines.append(f"| {name} | {ms:.3f} | "
                     f"{1000 * budget['batch_size'] / ms:,.0f} | "
                     f"{ms / base:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the embedded sample, a few batches (tests)")
    parser.add_argument("--batches", type=int, default=None,
                        help="batches per option and round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=os.path.join(
        "benchmarks", "results", "pipeline"))
    args = parser.parse_args(argv)
    budget = dict(BUDGETS["quick" if args.quick else "full"])
    budget.update({key: getattr(args, key) for key in ("batches", "rounds")
                   if getattr(args, key)})
    results = measure(budget)
    return suite_results.publish(results, __file__, argv, args.out,
                                 "pipeline", markdown)


if __name__ == "__main__":
    main()
