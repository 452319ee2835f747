"""MDNet against the baselines a user would pick instead, in one run.

    python benchmarks/run.py --suite=quick|cpu [--models=a,b] \
        [--out=benchmarks/results] [--deadline_minutes=N] [--fresh]

For every model of `benchmarks/baselines.py` (or `--models`):

1. `profile`: parameters, MACs (attention matmuls included) and peak
   activation memory, from `mdnet_keras.profile.profile`.
2. `throughput`: training images/s (TensorFlow backend, CPU, one batch size,
   `jit_compile=False`) and the input pipeline alone, measured side by side:
   every round times every model and the pipeline once, in turn, so load
   changes on shared cores hit all of them; the figures are medians over
   rounds and each ratio to MobileNetV2 x1.0 is the median of the per-round
   ratios. `op_profile`: TensorFlow profiler self time per op of a few
   training steps, grouped by what the op belongs to (multi-scale depthwise
   conv, attention, 1x1 convs, BatchNorm, optimizer, ...).
3. `accuracy`: one recipe for all (`mdnet_keras.training.recipe`: label
   smoothing 0.1, AdamW with weight decay 0.05 off norms and biases, linear
   warm-up then cosine decay), one augmentation (`ImageBatches`: pad-4 crop
   and flip), one fixed class-balanced CIFAR-10 (JPEG copy) training subset,
   the same seeds, the same epochs; top-1 on the test set. CIFAR-100
   (JPEG q75 copy, one seed) and NEU surface defects at 64x64 likewise.
4. `tflite`: float32, dynamic-range and int8 conversions (through
   `mdnet_keras.export.convert_model`) of the CIFAR-trained model: file size,
   op count, XNNPACK partitions and the ops left out of them; int8 top-1 on
   the test set against the Keras float top-1. `latency`: batch-1 median of
   >= 100 invokes at 1 and 2 threads, every (model, mode, threads) in turn
   in rounds, again so that load hits all of them.
5. `micro`: TFLite Micro's smallest tensor arena and the flash (model bytes)
   of every int8 model as the convert command makes it for TFLite Micro
   (large depthwise kernels whole; `mdnet_keras.export.micro.find_min_arena`).

The steps live in `suite_speed` (1-2), `suite_accuracy` (3) and
`suite_tflite` (4-5), the data in `suite_data`, the results file, clock and
machine facts in `suite_results`; this module holds the suites' budgets and
runs them in order.

Results go to `<out>/<suite>.json` after every finished entry (a rerun of the
same command resumes and skips finished entries; `--fresh` starts over),
then `<out>/<suite>.md` (tables generated from the JSON) and
`<out>/<suite>_pareto.png`. Trained weights and `.tflite` files are kept in
`<out>/tmp/<suite>/` (ignored by git). Entries that would start after
`--deadline_minutes` are skipped and listed as such in the JSON.
"""

import json
import os
import shutil
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.suite_results import Results  # noqa: E402
from benchmarks.suite_results import now  # noqa: E402
from benchmarks.suite_results import Clock  # noqa: E402
from benchmarks.suite_results import cached  # noqa: E402
from benchmarks.suite_results import command_line  # noqa: E402
from benchmarks.suite_data import load_benchmark_data  # noqa: E402
from benchmarks.suite_speed import profile_entry  # noqa: E402
from benchmarks.suite_speed import throughput_entry  # noqa: E402
from benchmarks.suite_speed import op_profile_entry  # noqa: E402
from benchmarks.suite_accuracy import train_entry  # noqa: E402
from benchmarks.suite_accuracy import recipe_facts  # noqa: E402
from benchmarks.suite_tflite import TFLITE_MODES  # noqa: E402
from benchmarks.suite_tflite import tflite_entry  # noqa: E402
from benchmarks.suite_tflite import latency_entry  # noqa: E402
from benchmarks.suite_tflite import micro_entry  # noqa: E402


ALL_MODELS = (
    "mdnet",
    "mobilenetv2_x1_0",
    "mobilenetv2_x0_5",
    "resnet20",
    "resnet56",
    "mdnet_standard_attention",
    "mdnet_single_kernel",
)


# Every budget figure of a suite. The JSON records the suite's budget; a
# resumed run must have the same one.
SUITES = {
    "quick": {
        "models": ("resnet20", "mdnet_micro"),
        "batch_size": 32,
        "throughput_rounds": 2,
        "throughput_steps": 2,
        "pipeline_batches": 5,
        "op_profile_models": ("mdnet_micro",),
        "op_profile_steps": 1,
        "cifar_train_images": 128,
        "cifar_test_images": 128,
        "cifar100_train_images": 200,
        "cifar100_test_images": 100,
        "neu_image_size": 64,
        "neu_train_images": 60,
        "neu_test_images": 60,
        "epochs": 1,
        "neu_epochs": 1,
        "neu_batch_size": 32,
        "seeds": (0,),
        "neu_seeds": (0,),
        "learning_rate": 2e-3,
        "warmup_epochs": 0.5,
        "calibration_images": 32,
        "int8_eval_images": 128,
        "latency_runs": 20,
        "latency_rounds": 2,
        "latency_warmup": 3,
        "deadline_minutes": 30,
    },
    "cpu": {
        "models": ALL_MODELS,
        "batch_size": 128,
        "throughput_rounds": 3,
        "throughput_steps": 2,
        "pipeline_batches": 20,
        "op_profile_models": ("mdnet", "mobilenetv2_x1_0"),
        "op_profile_steps": 2,
        "cifar_train_images": 5000,
        "cifar_test_images": 10000,
        "cifar100_train_images": 10000,
        "cifar100_test_images": 10000,
        "neu_image_size": 64,
        "neu_train_images": 1440,
        "neu_test_images": 360,
        "epochs": 2,
        "neu_epochs": 1,
        "neu_batch_size": 32,
        "seeds": (0, 1),
        "neu_seeds": (0,),
        "learning_rate": 2e-3,
        "warmup_epochs": 0.5,
        "calibration_images": 200,
        "int8_eval_images": 10000,
        "latency_runs": 100,
        "latency_rounds": 5,
        "latency_warmup": 10,
        "deadline_minutes": 62,
    },
}


def run_suite(suite, models=None, out="benchmarks/results", deadline_minutes=None,
              fresh=False, command=None, budget_overrides=None):
    """Runs (or resumes) a suite; returns the results dict.

    Args:
        suite: "quick" or "cpu".
        models: list of model names (default: the suite's).
        out: results folder.
        deadline_minutes: optional entries that would start later are skipped.
        fresh: ignore a previous results file.
        command: the command line to record.
        budget_overrides: dict of budget keys to change (tests).
    """
    import keras

    from benchmarks.baselines import MODELS, REFERENCE_MODEL
    from benchmarks import report

    if suite not in SUITES:
        raise ValueError(f"Unknown suite {suite!r}; choose from {sorted(SUITES)}.")
    budget = dict(SUITES[suite])
    budget.update(budget_overrides or {})
    models = list(models or budget["models"])
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"Unknown models {unknown}; choose from {sorted(MODELS)}.")
    budget["models"] = models
    if deadline_minutes is not None:
        budget["deadline_minutes"] = deadline_minutes
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("The benchmark runs under KERAS_BACKEND=tensorflow.")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{suite}.json")
    tmp_dir = os.path.join(out, "tmp", suite)
    if fresh:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    command = command or " ".join(["python"] + sys.argv)
    results = Results.open(path, suite, budget, models, command, fresh)
    clock = Clock(budget["deadline_minutes"])
    clock.log(f"suite {suite}: {len(models)} models, results in {path}")

    data = load_benchmark_data(budget)
    results.data["data"] = {k: v["facts"] for k, v in data.items()}
    results.data["recipe"] = recipe_facts(budget)
    results.data["reference_model"] = REFERENCE_MODEL
    results.save()

    for name in models:
        cached(results, clock, ("models", name, "profile"),
               lambda: profile_entry(name), optional=False)

    throughput_models = models
    if results.get("throughput", "models") not in (None, throughput_models):
        results.data.pop("throughput", None)
    cached(results, clock, ("throughput",),
           lambda: dict(throughput_entry(models, data, budget, clock),
                        models=throughput_models), optional=False)
    for name in budget["op_profile_models"]:
        if name in models:
            cached(results, clock, ("op_profile", name),
                   lambda: op_profile_entry(name, data, budget))

    seeds, neu_seeds = budget["seeds"], budget["neu_seeds"]
    for name in models:
        cached(results, clock, ("models", name, "accuracy", "cifar10",
                                f"seed{seeds[0]}"),
               lambda: train_entry(name, "cifar10", data["cifar10"], seeds[0],
                                   budget, budget["epochs"], tmp_dir, clock),
               optional=False)
    for name in models:
        for mode in TFLITE_MODES:
            if not os.path.exists(os.path.join(tmp_dir, f"{name}_{mode}.tflite")):
                results.data["models"][name].get("tflite", {}).pop(mode, None)
            cached(results, clock, ("models", name, "tflite", mode),
                   lambda: tflite_entry(name, mode, data["cifar10"], budget,
                                        tmp_dir))
    have = [n for n in models
            if all(os.path.exists(os.path.join(tmp_dir, f"{n}_{m}.tflite"))
                   for m in TFLITE_MODES)]
    if results.get("latency", "models") not in (None, have):
        results.data.pop("latency", None)
    if have:
        cached(results, clock, ("latency",),
               lambda: dict(latency_entry(have, budget, tmp_dir, clock),
                            models=have), optional=False)
    for name in have:
        cached(results, clock, ("models", name, "micro"),
               lambda: micro_entry(name, data["cifar10"], budget, tmp_dir),
               optional=False)
    if "cifar100" in data:
        for name in models:
            cached(results, clock, ("models", name, "accuracy", "cifar100",
                                    f"seed{seeds[0]}"),
                   lambda: train_entry(name, "cifar100", data["cifar100"],
                                       seeds[0], budget, budget["epochs"],
                                       tmp_dir, clock))
    if "neu" in data:
        for seed in neu_seeds:
            for name in models:
                cached(results, clock, ("models", name, "accuracy", "neu",
                                        f"seed{seed}"),
                       lambda: train_entry(name, "neu", data["neu"], seed,
                                           budget, budget["neu_epochs"],
                                           tmp_dir, clock,
                                           budget["neu_batch_size"]))
    for seed in seeds[1:]:
        for name in models:
            cached(results, clock, ("models", name, "accuracy", "cifar10",
                                    f"seed{seed}"),
                   lambda: train_entry(name, "cifar10", data["cifar10"], seed,
                                       budget, budget["epochs"], tmp_dir,
                                       clock))

    results.data["finished"] = now()
    results.data["wall_minutes_this_run"] = round(clock.elapsed() / 60, 1)
    results.data["runs"][-1]["finished"] = now()
    results.data["runs"][-1]["load_average_end"] = [
        round(v, 2) for v in os.getloadavg()]
    results.save()
    report.write_all(results.data, out, suite)
    clock.log(f"wrote {path}, {suite}.md and {suite}_pareto.png")
    return results.data


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument("--models", default=None,
                        help="comma-separated model names (default: suite's)")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results"))
    parser.add_argument("--deadline_minutes", type=float, default=None,
                        help="skip optional entries that would start later")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore a previous results file of the suite")
    parser.add_argument("--report_only", action="store_true",
                        help="only regenerate the Markdown and PNG")
    args = parser.parse_args(argv)
    if args.report_only:
        from benchmarks import report

        with open(os.path.join(args.out, f"{args.suite}.json")) as f:
            report.write_all(json.load(f), args.out, args.suite)
        return 0
    models = args.models.split(",") if args.models else None
    command = command_line(__file__, argv)
    run_suite(args.suite, models, args.out, args.deadline_minutes, args.fresh,
              command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
