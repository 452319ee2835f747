"""Test top-1 of a finished run before and after re-estimating its BatchNorm
statistics on training images.

    python benchmarks/ema_batchnorm.py --run=RUN_FOLDER [--data=PATH] \
        [--batches=100] [--out=benchmarks/results/recipe/ema_batchnorm]

Why: the optimizer's weight average (`use_ema`, the `fast` recipe) averages
the trainable weights only. BatchNorm's moving mean and variance are not
trainable, so the averaged weights are evaluated with statistics that the
raw weights of the last steps produced. This script measures what that
mismatch costs: it loads the run's `best.keras`, scores it on the run's test
split, then runs `--batches` training batches through the model in training
mode (BatchNorm momentum 0.9, no weight update) and scores it again. Data:
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


def reestimate_batchnorm(model, images, batches, batch_size, seed=0):
    """Runs `batches` random training batches through `model` in training
    mode so that every BatchNormalization's moving statistics follow the
    current weights; trainable weights do not change."""
    import keras
    import numpy as np

    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.9
    rng = np.random.default_rng(seed)
    for _ in range(batches):
        chosen = rng.choice(len(images), min(batch_size, len(images)),
                            replace=False)
        model(images[np.sort(chosen)].astype("float32"), training=True)
    return len(norms)


def measure(run, batches, batch_size, data_path=None):
    from mdnet_keras.data import load_dataset
    from mdnet_keras.export import load_keras_model

    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        config = json.load(f)["config"]
    data_path = data_path or config.get("data")
    data = load_dataset(config["dataset"], data=data_path)
    model = load_keras_model(os.path.join(run, "best.keras"))
    x_test = data.x_test.astype("float32")

    def top1():
        pred = model.predict(x_test, batch_size=500, verbose=0).argmax(-1)
        return float((pred == data.y_test).mean())

    before = top1()
    norms = reestimate_batchnorm(model, data.x_train, batches, batch_size)
    return {"run": os.path.abspath(run), "model": config.get("model"),
            "recipe": config.get("recipe"),
            "ema_momentum": config.get("ema_momentum"),
            "data": {"dataset": config["dataset"], "data": data_path,
                     "test_images": int(len(data.y_test))},
            "batchnorm_layers": norms, "batches": batches,
            "batch_size": batch_size, "test_top1_before": before,
            "test_top1_after": top1()}


def markdown(results):
    return (
        "# BatchNorm statistics re-estimated after weight averaging\n\n"
        f"`{results['command']}`; machine: "
        f"{suite_results.describe_machine(results['machine'])}.\n\n"
        f"Run `{results['run']}` ({results['model']}, recipe "
        f"{results['recipe']}, EMA momentum {results['ema_momentum']}), "
        f"its `best.keras` on {results['data']['test_images']:,} test images "
        f"of {results['data']['data'] or results['data']['dataset']}: "
        f"{100 * results['test_top1_before']:.2f}% as saved, "
        f"{100 * results['test_top1_after']:.2f}% after "
        f"{results['batches']} training batches of {results['batch_size']} "
        f"re-estimated its {results['batchnorm_layers']} BatchNorm layers' "
        "statistics (no weight changed).\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished run folder")
    parser.add_argument("--data", default=None,
                        help="the run's data file (default: its config's)")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--out", default=os.path.join(
        "benchmarks", "results", "recipe", "ema_batchnorm"))
    args = parser.parse_args(argv)
    results = measure(args.run, args.batches, args.batch_size, args.data)
    results["command"] = " ".join(["python benchmarks/ema_batchnorm.py",
                                   *(sys.argv[1:] if argv is None else argv)])
    results["machine"] = suite_results.machine_info()
    suite_results.write_report(args.out, "ema_batchnorm", results,
                               markdown(results))
    return results


if __name__ == "__main__":
    main()
