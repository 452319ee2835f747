"""PTQ vs QAT full-int8 top-1 against the float model, side by side in one run.

For each model: train in float with the project's loop (`train`), fine-tune
quantization-aware for `--qat_epochs` (`train --qat_epochs`, the same run),
then convert the float model by post-training quantization and the QAT model
through the same export path (same calibration images), and evaluate float,
PTQ int8 and QAT int8 on the same test images with the paired gate
(`mdnet_keras.export.accuracy_gate`). Int8 size, op list and batch-1 latency
(interleaved rounds, one thread) are compared too: QAT must not change them.

Usage:
    # The issue's NEU model: mdnet_micro, 64x64, stem stride 2, 10 float epochs.
    python benchmarks/qat.py --out=benchmarks/results/qat
    # A longer float budget:
    python benchmarks/qat.py --float_epochs=30 --out=benchmarks/results/qat/neu_30_epochs
    # The harness on a tiny model and the embedded sample, in a minute or two:
    python benchmarks/qat.py --quick --out=/tmp/qat
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import suite_results  # noqa: E402

NEU = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "..", "shared", "data", "neu-surface-defects")
TINY = {"stem_channels": 8, "stage_channels": [8, 16, 24, 32],
        "stage_depths": [1, 1, 2, 1], "num_heads": [0, 0, 1, 1],
        "head_channels": 32}
BUDGETS = {
    "full": {"train": dict(dataset="folder", data=NEU, image_size=64, stem_strides=2,
                           model="mdnet_micro", epochs=10, batch_size=32),
             "num_calibration": 500, "latency_runs": 200, "latency_rounds": 10},
    "quick": {"train": dict(dataset="sample", model="mdnet_micro", model_config=TINY,
                            epochs=1, batch_size=64),
              "num_calibration": 32, "latency_runs": 10, "latency_rounds": 2},
}


def interleaved_latency(models, runs, rounds):
    """Median batch-1 invoke time (ms, one thread) of each model, in rounds."""
    from ai_edge_litert.interpreter import Interpreter

    interpreters = {}
    for name, content in models.items():
        it = Interpreter(model_content=content, num_threads=1)
        it.allocate_tensors()
        detail = it.get_input_details()[0]
        it.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        it.invoke()
        interpreters[name] = it
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, it in interpreters.items():
            for _ in range(runs // rounds):
                started = time.perf_counter()
                it.invoke()
                times[name].append(time.perf_counter() - started)
    return {name: round(1000 * float(np.median(t)), 4) for name, t in times.items()}


def measure(budget, qat_epochs, work):
    from mdnet_keras import quantization
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import load_keras_model
    from mdnet_keras.training import config as config_lib
    from mdnet_keras.training import run

    out = os.path.join(work, "run")
    started = time.time()
    run.train(dict(budget["train"], qat_epochs=qat_epochs, out=out, overwrite=True,
                   verbose=2))
    train_seconds = time.time() - started
    config = config_lib.resolve_config(dict(budget["train"], qat_epochs=qat_epochs, out=out))
    dataset = run.load_data(config)
    float_model = load_keras_model(os.path.join(out, quantization.FLOAT_BASELINE_NAME))
    qat_model = load_keras_model(os.path.join(out, "last.keras"))
    options = dict(rep_images=dataset.x_train, num_calibration=budget["num_calibration"])
    ptq = convert_model(float_model, "int8", **options)
    qat = convert_model(qat_model, "int8", **options)
    result = quantization.side_by_side(float_model, ptq, qat, dataset.x_test,
                                       dataset.y_test)
    result["latency_ms_1_thread"] = interleaved_latency(
        {"ptq": ptq, "qat": qat}, budget["latency_runs"], budget["latency_rounds"])
    history = json.load(open(os.path.join(out, "metrics.json")))
    result.update(model=config.model, dataset=dataset.name,
                  image_shape=list(dataset.image_shape), float_epochs=config.epochs,
                  qat_epochs=qat_epochs, num_calibration=budget["num_calibration"],
                  train_seconds=round(train_seconds, 1),
                  qat_keras_top1=history["top1"])
    return result


def markdown(result, command, machine):
    from mdnet_keras.quantization import format_side_by_side

    lat = result["latency_ms_1_thread"]
    return "\n".join([
        "# PTQ vs QAT int8 (side by side, one run)", "",
        f"Command: `{command}`", "",
        f"Model: `{result['model']}` on {result['dataset']} {tuple(result['image_shape'])}, "
        f"{result['float_epochs']} float epochs then {result['qat_epochs']} QAT epochs "
        f"(training {result['train_seconds']} s); int8 calibrated on "
        f"{result['num_calibration']} training images; evaluated on "
        f"{result['num_images']} test images.", "",
        f"Machine: {suite_results.describe_machine(machine)}; shared with other "
        "jobs, so times are indicative.", "",
        "```", format_side_by_side(result), "```", "",
        "| | float | PTQ int8 | QAT int8 |", "|---|---:|---:|---:|",
        f"| top-1 | {100 * result['float_top1']:.2f}% | {100 * result['ptq']['top1']:.2f}% "
        f"| {100 * result['qat']['top1']:.2f}% |",
        f"| size | | {result['ptq']['size_bytes']:,} B | {result['qat']['size_bytes']:,} B |",
        f"| ops | | {result['ptq']['num_ops']} | {result['qat']['num_ops']} |",
        f"| latency, 1 thread (median) | | {lat['ptq']} ms | {lat['qat']} ms |", "",
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--qat_epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", default=None, help="run folder root (default: OUT/work)")
    parser.add_argument("--float_epochs", type=int, default=None,
                        help="float epochs (default: the budget's, 10 for NEU)")
    parser.add_argument("--init_from", default=None,
                        help="fine-tune this trained float .keras (--epochs=0) "
                             "instead of training the float model first")
    args = parser.parse_args(argv)
    budget = BUDGETS["quick" if args.quick else "full"]
    if args.float_epochs is not None:
        budget = dict(budget, train=dict(budget["train"], epochs=args.float_epochs))
    if args.init_from:
        budget = dict(budget, train=dict(budget["train"], init_from=args.init_from, epochs=0))
    work = args.work or os.path.join(args.out, "work")
    result = measure(budget, args.qat_epochs, work)
    machine = suite_results.machine_info()
    result["machine"] = machine
    command = "python benchmarks/qat.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["command"] = command
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "qat.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)
    with open(os.path.join(args.out, "qat.md"), "w") as f:
        f.write(markdown(result, command, machine))
    print(markdown(result, command, machine))
    return result


if __name__ == "__main__":
    main()
