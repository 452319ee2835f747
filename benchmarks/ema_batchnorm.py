"""Test top-1 of a finished run before and after re-estimating its BatchNorm
statistics on training images.

    python benchmarks/ema_batchnorm.py --run=RUN_FOLDER [--data=PATH] \
        [--batches=5,20,100] [--checkpoint=best.keras] \
        [--out=benchmarks/results/recipe/ema_batchnorm]

Why: the optimizer's weight average (`use_ema`, the `fast` recipe) averages
the trainable weights only. BatchNorm's moving mean and variance are not
trainable, so the averaged weights are evaluated with statistics that the
raw weights of the last steps produced. This script measures what that
mismatch costs: it loads the run's `best.keras` (`--checkpoint`), scores it
on the run's test split, then, for each count of `--batches`, re-estimates
the statistics on that many training batches (crop + flip drawn once) with
the training loop's own code (`mdnet_keras.training.batchnorm`, what
`--bn_recalibration_batches` does in every epoch; no weight changes) and
scores it again. Data:
what the run's `config.json` names (`--data` when its path was relative to
another folder). Nothing is written into the run folder.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import baselines  # noqa: E402,F401  (registers baselines' layers)
from benchmarks import suite_results  # noqa: E402


def measure(run, batches, batch_size, data_path=None,
            checkpoint="best.keras"):
    """Test top-1 of the run's `checkpoint` as saved and after re-estimating
    its BatchNorm statistics on each count of `batches`."""
    import numpy as np

    from mdnet_keras.data import ImageBatches
    from mdnet_keras.data import load_dataset
    from mdnet_keras.export import load_keras_model
    from mdnet_keras.training import batchnorm

    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        config = json.load(f)["config"]
    data_path = data_path or config.get("data")
    data = load_dataset(config["dataset"], data=data_path)
    x_test = data.x_test.astype("float32")
    train = ImageBatches(data.x_train, data.y_train, data.num_classes,
                         batch_size=batch_size, seed=config.get("seed", 0))

    def top1(model):
        pred = model.predict(x_test, batch_size=500, verbose=0).argmax(-1)
        return float(np.mean(pred == data.y_test))

    path = os.path.join(run, checkpoint)
    before = top1(load_keras_model(path))
    after = {}
    for count in batches:
        # The training loop's own re-estimation (`--bn_recalibration_batches`).
        model = load_keras_model(path)
        norms = batchnorm.reestimate_batchnorm(
            model, batchnorm.calibration_batches(train, count))
        after[str(count)] = top1(model)
        print(f"{count} batches: test top-1 {100 * before:.2f}% -> "
              f"{100 * after[str(count)]:.2f}%", flush=True)
    return {"run": os.path.abspath(run), "checkpoint": checkpoint,
            "model": config.get("model"), "recipe": config.get("recipe"),
            "ema_momentum": config.get("ema_momentum"),
            "bn_recalibration_batches": config.get("bn_recalibration_batches"),
            "data": {"dataset": config["dataset"], "data": data_path,
                     "test_images": int(len(data.y_test))},
            "batchnorm_layers": norms, "batch_size": batch_size,
            "test_top1_before": before, "test_top1_after": after}


def markdown(results):
    rows = ["| re-estimation batches | test top-1 |", "|---:|---:|",
            f"| none (as saved) | {100 * results['test_top1_before']:.2f}% |"]
    rows += [f"| {count} | {100 * top1:.2f}% |"
             for count, top1 in results["test_top1_after"].items()]
    return (
        "# BatchNorm statistics re-estimated after weight averaging\n\n"
        f"`{results['command']}`; machine: "
        f"{suite_results.describe_machine(results['machine'])}.\n\n"
        f"Run `{results['run']}` ({results['model']}, recipe "
        f"{results['recipe']}, EMA momentum {results['ema_momentum']}, "
        "in-loop re-estimation batches "
        f"{results['bn_recalibration_batches']}), its "
        f"`{results['checkpoint']}` on {results['data']['test_images']:,} "
        "test images of "
        f"{results['data']['data'] or results['data']['dataset']}, as saved "
        "and after its "
        f"{results['batchnorm_layers']} BatchNorm layers' statistics were "
        "re-estimated on that many training batches (crop + flip drawn "
        "once) of "
        f"{results['batch_size']} (`mdnet_keras.training.batchnorm`; no "
        "weight changed):\n\n" + "\n".join(rows) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished run folder")
    parser.add_argument("--data", default=None,
                        help="the run's data file (default: its config's)")
    parser.add_argument("--batches", default="100",
                        help="comma-separated batch counts to compare")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--checkpoint", default="best.keras",
                        help="the run folder's model file to score")
    parser.add_argument("--out", default=os.path.join(
        "benchmarks", "results", "recipe", "ema_batchnorm"))
    args = parser.parse_args(argv)
    results = measure(args.run, [int(v) for v in args.batches.split(",")],
                      args.batch_size, args.data, args.checkpoint)
    return suite_results.publish(results, __file__, argv, args.out,
                                 "ema_batchnorm", markdown)


if __name__ == "__main__":
    main()
