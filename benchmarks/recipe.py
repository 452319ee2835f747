"""Training recipes side by side: per-epoch test top-1 of each recipe.

    python benchmarks/recipe.py [--models=resnet20,mdnet] \
        [--recipes=legacy,fast] [--epochs=resnet20:10,mdnet:6] \
        [--dataset=cifar10|cifar100] [--train_images=10000] \
        [--bn_recalibration_batches=0,20] [--batch_size=128] \
        [--vary=learning_rate=0.05,0.2 --vary=label_smoothing=0.1] \
        [--vary_together=learning_rate=0.2,crop_padding=2] \
        [--only_varied] \
        [--data=copy.npz --data_label="CIFAR-10 (JPEG q95 copy)"] \
        [--include=earlier/cifar10.json] \
        [--out=benchmarks/results/recipe] [--quick]

Every (model, recipe) pair trains through the package's own training loop
(`mdnet_keras.training.run.train`, what `python -m mdnet_keras train` runs),
on the same class-balanced training subset, the same seed and batch size,
validating on the test images after every epoch; with
`--bn_recalibration_batches` a list, each pair once per value (the
training loop's option; without it, the loop's default). `--vary` sweeps
one training option at a time around each recipe: each pair runs as the
recipe has it, then once per listed value of each varied option with
everything else unchanged (which recipe value backs which default is
then read off one table); `--only_varied` skips the recipe as it is, for
a budget where that run was measured by an earlier call (`--include` it).
MDNet variants are built
by the loop itself; baselines (`benchmarks/baselines.py`) are handed to it.
Runs go one after another in the order given (each run folder in
`<out>/tmp/` resumes after a kill); the JSON is rewritten after each, then
the Markdown table and the per-epoch plot `<out>/<dataset>.png`.
`--include` adds the runs of earlier calls on the same data to the table
and the plot, each marked with the command and machine that measured it
(for a pair that had to be run again on its own); with `--models=` empty,
the call trains nothing and tabulates and draws the included runs (pairs
trained side by side in separate processes, say on one GPU).

CIFAR-10 is `../shared/data/cifar10.npz` (a JPEG copy); CIFAR-100 is
`../shared/data/cifar100-jpeg.npz` (a lossy JPEG q75 copy), read through
the `.npz` route; `--data` names another copy of the same data set (for
example one re-encoded small enough to carry to a GPU machine) and
`--data_label` how figures name it. Figures say which.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
DATA = {
    "cifar10": (os.path.join(SHARED_DATA, "cifar10.npz"),
                "CIFAR-10 (JPEG copy)"),
    "cifar100": (os.path.join(SHARED_DATA, "cifar100-jpeg.npz"),
                 "CIFAR-100 (JPEG q75 copy)"),
}
DEFAULT_BATCH_SIZE = 128
# Options a run's identity rests on, set by this script itself.
NOT_VARIED = ("dataset", "data", "model", "recipe", "epochs", "seed", "out",
              "validation_split", "verbose", "overwrite")


def parse_epochs(spec, models):
    """`"resnet20:10,mdnet:6"` (or one number for all) -> {model: epochs}."""
    if ":" not in spec:
        return {name: int(spec) for name in models}
    epochs = dict(item.split(":") for item in spec.split(","))
    missing = [name for name in models if name not in epochs]
    if missing:
        raise ValueError(f"--epochs gives no epochs for {missing}.")
    return {name: int(epochs[name]) for name in models}


def parse_vary(specs):
    """`["learning_rate=0.05,0.2", "flip=false"]` -> the one-option changes
    `[{"learning_rate": 0.05}, {"learning_rate": 0.2}, {"flip": False}]`,
    each value read as its `TrainConfig` field's type."""
    types = option_types()
    changes = []
    for spec in specs:
        key, values = split_option(spec, types, "--vary")
        for text in values.split(","):
            changes.append({key: parse_value(key, text, types[key])})
    return changes


def parse_together(specs):
    """`["learning_rate=0.2,label_smoothing=0.1"]` -> the one change
    `[{"learning_rate": 0.2, "label_smoothing": 0.1}]`: each spec is one
    run with all its options changed at once."""
    types = option_types()
    changes = []
    for spec in specs:
        change = {}
        for item in spec.split(","):
            key, text = split_option(item, types, "--vary_together")
            if key in change:
                raise ValueError(f"--vary_together={spec} sets {key} twice.")
            change[key] = parse_value(key, text, types[key])
        changes.append(change)
    return changes


def option_types():
    """{`TrainConfig` field: its type} for the fields a change may set."""
    import dataclasses

    from mdnet_keras.training.config import TrainConfig

    return {f.name: f.type for f in dataclasses.fields(TrainConfig)
            if f.name not in NOT_VARIED}


def split_option(spec, types, flag):
    """`"key=text"` -> `(key, text)`, refusing an option no run may change
    and a spec with no value."""
    key, _, text = spec.partition("=")
    if key not in types:
        raise ValueError(
            f"{flag}={spec}: {key!r} is not a training option this "
            f"benchmark can vary; choose from {sorted(types)}.")
    if not text:
        raise ValueError(f"{flag}={spec} lists no values: use "
                         f"{flag}={key}=V.")
    return key, text


def parse_value(key, text, kind):
    """`text` as a value of the `TrainConfig` field `key` of type `kind`."""
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"--vary: {key} takes true or false, not {text!r}.")
        return text.lower() == "true"
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"--vary: {key} takes a number ({kind.__name__}), "
                             f"not {text!r}.") from None
    return text


def describe_change(change):
    """`{"learning_rate": 0.2}` -> `"learning_rate=0.2"`; `{}` -> `"-"`."""
    return ", ".join(f"{k}={v}" for k, v in change.items()) or "-"


def make_subset(dataset, train_images, test_images, path, source=None,
                label=None):
    """Writes a class-balanced subset of `dataset` as an `.npz` at `path`
    (None: only describes it), read from `source` (default: `DATA`'s file)
    and named `label`."""
    from benchmarks.suite_data import balanced_subset
    from mdnet_keras.data import load_dataset

    if source is None:
        source, label = DATA[dataset]
    elif not label:
        raise ValueError(f"--data={source} needs --data_label, the name its "
                         "figures are given (which copy of which data set).")
    data = load_dataset(dataset, data=source)
    train = balanced_subset(data.y_train, train_images, 0)
    test = balanced_subset(data.y_test, test_images, 0)
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path, x_train=data.x_train[train],
                 y_train=data.y_train[train], x_test=data.x_test[test],
                 y_test=data.y_test[test],
                 label_names=np.array(data.class_names))
    return {"data": label, "source": os.path.relpath(source, ROOT),
            "train_images": int(len(train)), "test_images": int(len(test)),
            "subset": "class-balanced, seed 0"}


def train_one(model, recipe_name, epochs, subset_path, dataset, out, seed,
              bn_batches=None, batch_size=DEFAULT_BATCH_SIZE, change=None):
    """Trains one pair through `run.train`, with the training options of
    `change` (a dict) on top of the recipe; returns its summary."""
    from benchmarks import baselines
    from mdnet_keras.models import MDNET_VARIANTS
    from mdnet_keras.training import evaluation
    from mdnet_keras.training import run
    from mdnet_keras.training import run_folder

    builder = (None if model in MDNET_VARIANTS else
               lambda shape, classes: baselines.build_model(model, shape,
                                                            classes))
    # The curves are test top-1 per epoch and the figure is the last
    # epoch's, so no validation split is held out (none selects anything).
    config = dict(dataset="npz", data=subset_path, model=model,
                  recipe=recipe_name, epochs=epochs, batch_size=batch_size,
                  validation_split=0, seed=seed, out=out, verbose=2)
    if bn_batches is not None:
        config["bn_recalibration_batches"] = bn_batches
    config.update(change or {})
    started = time.time()
    if run_folder.run_state(out) == "finished":
        with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        history = evaluation.read_history(os.path.join(out, "history.csv"))
    else:
        result = run.train(config, build_model=builder)
        metrics, history = result["metrics"], result["history"]
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    return {
        "model": model, "recipe": recipe_name, "epochs": epochs,
        "seed": seed, "dataset": dataset, "change": dict(change or {}),
        "config": {k: resolved["config"][k] for k in (
            "optimizer", "learning_rate", "weight_decay", "momentum",
            "schedule", "warmup_epochs", "label_smoothing", "ema_momentum",
            "crop_padding", "randaugment", "batch_size", "drop_path_rate",
            "bn_recalibration_batches")},
        "peak_learning_rate": resolved["run"]["peak_learning_rate"],
        "ema_momentum_used": resolved["run"].get("ema_momentum"),
        "test_top1_per_epoch": [float(v) for v in history.get("val_top1",
                                                              [])],
        "final_test_top1": float(metrics["top1"]),
        "final_test_top5": float(metrics["top5"]),
        "train_seconds": metrics.get("train_seconds_this_session"),
        "epochs_this_session": metrics.get("epochs_this_session"),
        "wall_seconds_this_call": round(time.time() - started, 1),
    }


def include_earlier(results, paths):
    """Adds the runs of earlier calls' JSON files at `paths` to `results`
    as `results["included"]`; they must be on the same data (each run keeps
    its own seed, so other seeds of a pair can be tabulated beside it)."""
    results["included"] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            earlier = json.load(f)
        if earlier["data"] != results["data"]:
            raise ValueError(
                f"--include={path} was measured on {earlier['data']}, not on "
                f"this call's {results['data']}.")
        results["included"].append(
            {"path": os.path.relpath(path, ROOT), "command": earlier["command"],
             "machine": earlier["machine"], "runs": earlier["runs"]})


def all_runs(results):
    """(run, source) of this call's runs (source None) and the included
    ones (source: 1-based index into `results["included"]`)."""
    for r in results["runs"]:
        yield r, None
    for i, earlier in enumerate(results.get("included", []), 1):
        for r in earlier["runs"]:
            yield r, i


def write_markdown(results, path):
    from benchmarks.suite_results import describe_machine

    rows = ["| model | recipe | change | BN re-estimation batches | epochs "
            "| seed | test top-1 per epoch | final top-1 | final top-5 "
            "| train s per epoch | measured by |",
            "|---|---|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for r, source in all_runs(results):
        curve = " ".join(f"{100 * v:.1f}" for v in r["test_top1_per_epoch"])
        bn = r["config"].get("bn_recalibration_batches")
        rows.append(f"| {r['model']} | {r['recipe']} | "
                    f"{describe_change(r.get('change', {}))} | {bn} | "
                    f"{r['epochs']} | {r['seed']} | "
                    f"{curve} | {100 * r['final_test_top1']:.2f}% | "
                    f"{100 * r['final_test_top5']:.2f}% | "
                    f"{seconds_per_epoch(r)} | "
                    f"{'this call' if source is None else f'[{source}]'} |")
    notes = "".join(
        f"\n[{i}] `{earlier['command']}` ({earlier['path']}), machine: "
        f"{describe_machine(earlier['machine'])}.\n"
        for i, earlier in enumerate(results.get("included", []), 1))
    data = results["data"]
    text = (f"# Training recipes side by side: {data['data']}\n\n"
            f"Command: `{results['command']}`\n\n"
            f"Data: {data['data']} ({data['source']}), "
            f"{data['train_images']} training images ({data['subset']}), "
            f"test top-1 on {data['test_images']} test images after every "
            f"epoch. Batch {batch_sizes(results)}, seed {seeds(results)}. "
            "Machine: "
            f"{describe_machine(results['machine'])}.\n\n" + "\n".join(rows)
            + "\n" + notes + "\n"
            "Recipe values of each run are in the JSON files named here.\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def seconds_per_epoch(run):
    """Training seconds per epoch of the run's last session, as text.

    A run resumed after a kill reports the time of the epochs it trained
    after resuming, so the total would mislead; runs of earlier versions
    of this script recorded no session length and trained all epochs in one.
    """
    if run.get("train_seconds") is None:
        return "-"
    epochs = run.get("epochs_this_session", run["epochs"])
    return f"{run['train_seconds'] / epochs:.1f}" if epochs else "-"


def seeds(results):
    """The training seeds of all runs in the table, as text."""
    return ", ".join(map(str, sorted({r["seed"] for r, _ in all_runs(results)}))) or "-"


def batch_sizes(results):
    """The batch sizes of all runs in the table, as text."""
    sizes = sorted({r["config"]["batch_size"] for r, _ in all_runs(results)})
    return ", ".join(map(str, sizes)) or "-"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r, source in all_runs(results):
        curve = 100 * np.asarray(r["test_top1_per_epoch"])
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o",
                linestyle="-" if source is None else "--",
                label=f"{r['model']} / {r['recipe']}"
                + (f" / {describe_change(r['change'])}" if r.get("change")
                   else "")
                + (f" / BN {r['config'].get('bn_recalibration_batches')}"
                   if results["bn_recalibration_batches"] != [None]
                   else "")
                + ("" if source is None else f" [{source}]"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"{results['data']['data']},\n"
                 f"{results['data']['train_images']} training images",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet20,mdnet")
    parser.add_argument("--recipes", default="legacy,fast")
    parser.add_argument("--epochs", default="resnet20:10,mdnet:6")
    parser.add_argument("--dataset", default="cifar10", choices=sorted(DATA))
    parser.add_argument("--train_images", type=int, default=10000)
    parser.add_argument("--test_images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--data", default=None,
                        help="the .npz file of --dataset to read (default: "
                             "the one in ../shared/data)")
    parser.add_argument("--data_label", default=None,
                        help="with --data: how figures name that copy")
    parser.add_argument("--bn_recalibration_batches", default="",
                        help="comma-separated values of the training option "
                             "to run each pair with (default: the loop's)")
    parser.add_argument("--vary", action="append", default=[],
                        metavar="OPTION=V1,V2",
                        help="besides each recipe as it is, one run per "
                             "value of this training option, all else "
                             "unchanged (repeatable)")
    parser.add_argument("--vary_together", action="append", default=[],
                        metavar="OPTION=V,OPTION=V",
                        help="one run with all these training options "
                             "changed at once (repeatable: one run each)")
    parser.add_argument("--only_varied", action="store_true",
                        help="run the --vary changes only, not each recipe "
                             "as it is (measured by an earlier call: "
                             "--include it)")
    parser.add_argument("--include", default="",
                        help="comma-separated JSON files of earlier calls "
                             "on the same data, whose runs are tabulated and "
                             "drawn beside this call's")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks",
                                                      "results", "recipe"))
    parser.add_argument("--quick", action="store_true",
                        help="Seconds-long smoke run (tests).")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.epochs = "resnet20", "6"
        args.train_images, args.test_images = 256, 64
    models = [m for m in args.models.split(",") if m]
    epochs = parse_epochs(args.epochs, models)
    bn_values = ([int(v) for v in args.bn_recalibration_batches.split(",")]
                 if args.bn_recalibration_batches else [None])
    changes = parse_vary(args.vary) + parse_together(args.vary_together)
    if args.only_varied and not changes:
        raise ValueError("--only_varied needs at least one --vary or "
                         "--vary_together: without "
                         "one there is nothing to run.")
    if not args.only_varied:
        changes = [{}] + changes
    from benchmarks.suite_results import machine_info

    tmp = os.path.join(args.out, "tmp", args.dataset)
    subset = os.path.join(tmp, f"subset_{args.train_images}_"
                               f"{args.test_images}.npz")
    # A call that only tabulates needs the subset's description, not its file.
    data = make_subset(args.dataset, args.train_images, args.test_images,
                       subset if models else None, args.data, args.data_label)
    results = {"command": "python benchmarks/recipe.py "
                          + " ".join(argv if argv is not None
                                     else sys.argv[1:]),
               "data": data, "seed": args.seed, "machine": machine_info(),
               "bn_recalibration_batches": bn_values,
               "runs": []}
    include_earlier(results, [p for p in args.include.split(",") if p])
    os.makedirs(args.out, exist_ok=True)
    if not models:
        if not results["included"]:
            raise ValueError("--models= is empty and --include names no "
                             "runs: there is nothing to tabulate.")
        write_outputs(results, args.out, args.dataset)
    for model, recipe_name, bn, change in [
            (m, r, b, c) for m in models for r in args.recipes.split(",")
            for b in bn_values for c in changes]:
        out = os.path.join(tmp, f"{model}-{recipe_name}-e{epochs[model]}"
                                f"-n{args.train_images}-s{args.seed}"
                                + ("" if bn is None else f"-bn{bn}")
                                + "".join(f"-{k}{v}" for k, v in change.items()))
        print(f"== {model} / {recipe_name}"
              + ("" if bn is None else f" / {bn} BN batches")
              + ("" if not change else f" / {describe_change(change)}")
              + f": {epochs[model]} epochs", flush=True)
        results["runs"].append(train_one(model, recipe_name, epochs[model],
                                         subset, args.dataset, out,
                                         args.seed, bn, args.batch_size,
                                         change))
        write_outputs(results, args.out, args.dataset)
    return results


def write_outputs(results, out, dataset):
    """The JSON, the Markdown table and the plot of `results` in `out`."""
    with open(os.path.join(out, f"{dataset}.json"), "w",
              encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    write_markdown(results, os.path.join(out, f"{dataset}.md"))
    plot(results, os.path.join(out, f"{dataset}.png"))


if __name__ == "__main__":
    main()
