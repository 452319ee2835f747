"""Trains MDNet (or a benchmark baseline) on CIFAR-10 on one GPU, and
evaluates the weights it brings back on the real test set.

The recipe is the package's (`mdnet_keras.training.recipe`: label smoothing
0.1, AdamW with warm-up + cosine decay, no decay on norms, biases and
lambdas; crop + flip from `mdnet_keras.data.pipeline`), driven by one
`model.fit` per epoch on a pre-augmented NumPy epoch, with no callbacks
and no per-epoch validation. It exists because
`python -m mdnet_keras train --mixed_precision --workers=8` ran at about
0.5 s a step on an H200 under JAX, against 0.022 s for the bare bfloat16
training step and 0.027 s for 20 `fit` steps on `ImageBatches` (not yet
isolated: the bfloat16 policy inside `fit`, 8 worker threads or the
per-batch callbacks).

Weights (without optimizer state) are written to `--out` every
`--checkpoint_every` epochs and at the end, so a run stopped by its
machine's time limit still returns its latest weights.

Usage:
    # On the GPU machine (KERAS_BACKEND=jax); the test split is optional.
    python tools/gpu_train_cifar10.py train --model=mdnet \
        --data=cifar10_train.npz --epochs=50 --budget_s=450 --out=OUT
    # Here, on the real CIFAR-10 test set (any backend).
    python tools/gpu_train_cifar10.py evaluate --model=mdnet \
        --data=../shared/data/cifar10.npz --weights=OUT/mdnet.weights.h5 \
        --report=OUT/mdnet.test.json
"""

import argparse
import json
import os
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mdnet_keras  # noqa: E402
from benchmarks import baselines  # noqa: E402
from mdnet_keras.data.pipeline import crop_and_flip  # noqa: E402
from mdnet_keras.training import recipe  # noqa: E402
from mdnet_keras.training.run import save_shipping_weights  # noqa: E402

BATCH = 256
WARMUP_EPOCHS = 3
NUM_CLASSES = 10
MDNET_DROP_PATH_RATE = 0.1


def build(name, drop_path_rate=MDNET_DROP_PATH_RATE):
    """The paper-size MDNet with drop path, or a registered baseline."""
    if name == "mdnet":
        return mdnet_keras.MDNet(num_classes=NUM_CLASSES,
                                 drop_path_rate=drop_path_rate)
    return baselines.build_model(name, num_classes=NUM_CLASSES)


def compiled(name, epochs, steps, drop_path_rate=MDNET_DROP_PATH_RATE,
             jit_compile=True):
    model = build(name, drop_path_rate)
    peak = recipe.scaled_learning_rate(recipe.LEARNING_RATE, BATCH)
    schedule = recipe.learning_rate_schedule(
        peak, epochs * steps, WARMUP_EPOCHS * steps
    )
    recipe.compile_model(model, recipe.make_optimizer(model, schedule),
                         NUM_CLASSES, jit_compile=jit_compile)
    return model, peak


def evaluate(model, data):
    eye = np.eye(NUM_CLASSES, dtype="float32")
    results = model.evaluate(data["x_test"].astype("float32"),
                             eye[data["y_test"].reshape(-1)], batch_size=500,
                             verbose=0, return_dict=True)
    return {k: float(v) for k, v in results.items()}


def next_epoch_overruns(history, remaining_s):
    """Whether one more epoch is expected to outrun the wall-clock budget.

    The first epoch's time includes compilation (about 190 s for MDNet with
    six trainings compiling at once, against about 10 s an epoch after), so
    the estimate comes from the latest later epoch; after the first epoch
    only an exhausted budget stops the run.
    """
    if remaining_s <= 0:
        return True
    if len(history) < 2:
        return False
    return remaining_s < 1.5 * history[-1]["seconds"]


def train(args):
    started = time.time()
    data = np.load(args.data)
    x_train = data["x_train"][: args.limit]
    y_train = data["y_train"].reshape(-1)[: args.limit]
    eye = np.eye(NUM_CLASSES, dtype="float32")
    steps = len(x_train) // BATCH
    keras.utils.set_random_seed(args.seed)
    model, peak = compiled(args.model, args.epochs, steps,
                           args.drop_path_rate)
    weights_file = os.path.join(args.out, f"{args.model}.weights.h5")
    os.makedirs(args.out, exist_ok=True)

    rng = np.random.default_rng(args.seed)
    history = []
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))[: steps * BATCH]
        x = crop_and_flip(x_train[order], 4, True, rng).astype("float32")
        tick = time.time()
        logs = model.fit(x, eye[y_train[order]], batch_size=BATCH,
                         epochs=epoch + 1, initial_epoch=epoch,
                         shuffle=False, verbose=0).history
        row = {"epoch": epoch + 1, "seconds": time.time() - tick}
        row.update({k: float(v[-1]) for k, v in logs.items()})
        history.append(row)
        print(json.dumps(row), flush=True)
        if (epoch + 1) % args.checkpoint_every == 0:
            save_shipping_weights(model, weights_file)
        if epoch + 1 < args.epochs and next_epoch_overruns(
                history, args.budget_s - (time.time() - started)):
            print(f"budget reached after {epoch + 1} epochs", flush=True)
            break
    save_shipping_weights(model, weights_file)

    report = {
        "model": args.model,
        "backend": keras.backend.backend(),
        "devices": [str(d) for d in _devices()],
        "epochs_planned": args.epochs,
        "epochs_done": len(history),
        "train_images": len(x_train),
        "batch_size": BATCH,
        "peak_learning_rate": peak,
        "seed": args.seed,
        "drop_path_rate": (args.drop_path_rate if args.model == "mdnet"
                           else 0.0),
        "history": history,
        "train_wall_s": time.time() - started,
    }
    if "x_test" in data:
        report["test_on_this_copy"] = evaluate(model, data)
    with open(os.path.join(args.out, f"{args.model}.report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: report[k] for k in ("epochs_done", "train_wall_s")}))


def _devices():
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()
    return []


def evaluate_weights(args):
    # No XLA here: with it, MDNet's evaluation on 2 CPU cores had not
    # finished after 9 minutes; without it, it takes under a minute.
    model, _ = compiled(args.model, 1, 1, jit_compile=False)
    model.load_weights(args.weights)
    data = np.load(args.data)
    results = evaluate(model, data)
    results.update({
        "model": args.model,
        "weights": args.weights,
        "data": args.data,
        "test_images": int(len(data["y_test"])),
        "backend": keras.backend.backend(),
    })
    print(json.dumps(results))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(results, f, indent=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("train", "evaluate"))
    parser.add_argument("--model", default="mdnet",
                        choices=sorted(set(baselines.MODELS) | {"mdnet"}))
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--budget_s", type=float, default=float("inf"))
    parser.add_argument("--checkpoint_every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gpu_run")
    parser.add_argument("--weights", help="evaluate: the .weights.h5 file")
    parser.add_argument("--report", help="evaluate: also write the JSON here")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--drop_path_rate", type=float,
                        default=MDNET_DROP_PATH_RATE,
                        help="MDNet's (the baselines have none)")
    args = parser.parse_args()
    if args.mode == "train":
        train(args)
    else:
        evaluate_weights(args)


if __name__ == "__main__":
    main()
