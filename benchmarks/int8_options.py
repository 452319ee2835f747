"""MDNet's int8 latency options against its base design and MobileNetV2 x1.0.

The base is `mdnet_v1`, MDNet's first paper-size design (the default until
`kernels_3_5_late_attention_batch_head_norm` met this benchmark's targets
and became `mdnet`). Each option is an `MDNet(...)` argument that keeps the
paper's design (several receptive fields side by side along the channels,
differential attention) and costs less on the runtimes users deploy to:

- `dilated`: 3x3 channel groups dilated 1/2/3/4 (receptive fields 3/5/7/9
  at 9 taps each) in place of 3/5/7/9 kernels;
- `batch_head_norm`: differential attention's per-head norm as BatchNorm,
  a fixed scale and offset at inference, in place of the RMS norm whose
  RSQRT XNNPACK does not run in int8;
- both together;
- `cascade_batch_head_norm`: undilated 3x3 groups chained as in Res2Net
  (`cascade=True`: each group adds the previous group's output to its
  input, receptive fields 3/5/7/9), with the per-head BatchNorm;
- `cascade_late_attention_batch_head_norm`: the same with differential
  attention in the last stage only (fewer attention blocks: the third
  stage's 64-token attention is where most of attention's time goes);
- `kernels_3_5_batch_head_norm`: two channel groups with 3x3 and 5x5
  kernels (MixConv with two receptive fields; both kernels within
  XNNPACK's 25-tap fast path, no chain, no subsampling), per-head
  BatchNorm; and `kernels_3_5_late_attention_batch_head_norm`, the same
  with differential attention in the last stage only;

and two diagnostics that are not the paper's design, to show where the rest
of the latency goes: the four groups undilated, and one 3x3 kernel for all
channels.

Two parts, side by side in one run:

1. `deploy`: untrained models (seed 0; latency and memory do not depend on
   the weights' values), converted with the export's defaults to int8
   (calibrated on the CIFAR-10 sample shipped in the package) and float32:
   params, MACs, XNNPACK partitions and the ops left out of them, batch-1
   latency at 1 and 2 threads of every (model, mode, threads) in turn in
   interleaved rounds (`benchmarks.suite_tflite.latency_entry`), the TFLite Micro
   arena of the model the convert command makes for microcontrollers (whole
   kernels) and whether it runs in the TFLM interpreter (argmax agreement
   with LiteRT on a few images), and the Edge TPU estimate.
2. `accuracy`: CIFAR-10 top-1 under the CPU suite's budget and recipe
   (`benchmarks/run.py --suite=cpu`: 2 epochs on 5,000 class-balanced
   training images, all 10,000 test images, `benchmarks.suite_accuracy.train_entry`),
   every option and the base with the same seeds.

Each part keeps its own results, `<out>/deploy.json` and
`<out>/accuracy.json`, saved after every entry (a rerun resumes; `--fresh`
starts over; the two parts may run at once, in two processes); the summary
of both goes to `<out>/int8_options.json` and `<out>/int8_options.md`. The
`.tflite` files stay in `<out>/tmp/` (ignored by git).

Usage:
    python benchmarks/int8_options.py --out=benchmarks/results/int8_options
    # The harness on a small model, in a few minutes (what the test runs):
    python benchmarks/int8_options.py --quick --out=/tmp/options
"""

import argparse
import collections
import json
import math
import multiprocessing
import os
import statistics
import sys
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import baselines  # noqa: E402
from benchmarks import run  # noqa: E402
from benchmarks import suite_tflite  # noqa: E402
from benchmarks import suite_results  # noqa: E402
from benchmarks import suite_data  # noqa: E402
from benchmarks import suite_accuracy  # noqa: E402

Option = collections.namedtuple("Option", ["suffix", "description", "kwargs"])

DILATED = {"kernel_sizes": (3, 3, 3, 3), "dilation_rates": (1, 2, 3, 4)}
OPTIONS = (
    Option("", "the base, MDNet's first design: kernels 3/5/7/9, per-head "
           "RMS norm", {}),
    Option("_dilated", "3x3 kernels dilated 1/2/3/4", DILATED),
    Option("_batch_head_norm", "per-head BatchNorm (head_norm='batch')",
           {"head_norm": "batch"}),
    Option("_dilated_batch_head_norm", "both: dilated 3x3 kernels and "
           "per-head BatchNorm", dict(DILATED, head_norm="batch")),
    Option("_cascade_batch_head_norm", "3x3 groups chained (cascade: "
           "receptive fields 3/5/7/9) and per-head BatchNorm",
           {"kernel_sizes": (3, 3, 3, 3), "cascade": True, "head_norm": "batch"}),
    Option("_cascade_late_attention_batch_head_norm", "chained 3x3 groups, "
           "per-head BatchNorm, differential attention in the last stage only "
           "(the third stage's blocks are conv blocks)",
           {"kernel_sizes": (3, 3, 3, 3), "cascade": True, "head_norm": "batch",
            "stage_types": ("conv", "conv", "conv", "mdiff")}),
    Option("_kernels_3_5_batch_head_norm", "two channel groups, 3x3 and "
           "5x5 kernels (receptive fields 3 and 5, both within XNNPACK's "
           "25-tap fast path), per-head BatchNorm",
           {"kernel_sizes": (3, 5), "head_norm": "batch"}),
    Option("_kernels_3_5_late_attention_batch_head_norm", "3x3 and 5x5 "
           "channel groups, per-head BatchNorm, differential attention in "
           "the last stage only",
           {"kernel_sizes": (3, 5), "head_norm": "batch",
            "stage_types": ("conv", "conv", "conv", "mdiff")}),
    # Where the rest goes: the same groups undilated (what dilation costs),
    # and one 3x3 kernel for all channels (no groups, no multi-scale).
    Option("_groups_3x3_batch_head_norm", "diagnostic: four undilated 3x3 "
           "groups, per-head BatchNorm",
           {"kernel_sizes": (3, 3, 3, 3), "head_norm": "batch"}),
    Option("_kernels_3_batch_head_norm", "diagnostic: one 3x3 kernel for "
           "all channels (not multi-scale), per-head BatchNorm",
           {"kernel_sizes": (3,), "head_norm": "batch"}),
)
LATENCY_TARGETS = {"1": 1.0, "2": 1.2}
# The converter's full int8 (what runs everywhere), int8 with SOFTMAX and
# RSQRT in float for XNNPACK (`convert --mode=int8_xnnpack`), float32.
MODES = ("int8", "int8_xnnpack", "float32")
INT8_MODES = ("int8", "int8_xnnpack")
TRAIN_KEYS = ("cifar_train_images", "cifar_test_images", "neu_image_size",
              "neu_train_images", "neu_test_images", "epochs", "batch_size",
              "learning_rate", "warmup_epochs")
BUDGETS = {
    "full": dict(
        {k: run.SUITES["cpu"][k] for k in TRAIN_KEYS},
        variant="mdnet_v1", reference=baselines.REFERENCE_MODEL,
        seeds=(0, 1), calibration_images=200, latency_runs=200,
        latency_rounds=10, latency_warmup=10, micro_images=2),
    "quick": dict(
        {k: run.SUITES["quick"][k] for k in TRAIN_KEYS},
        variant="mdnet_micro", reference="resnet20", seeds=(0,),
        calibration_images=16, latency_runs=10, latency_rounds=2,
        latency_warmup=2, micro_images=1),
}


def option_models(variant, selected=None):
    """name -> `Option` of MDNet `variant`, in the order of `selected` (option
    names: the suffix without its underscore, "base" for the base; all
    when None); registers each in `benchmarks.baselines.MODELS` so that
    `suite_accuracy.train_entry` builds it."""
    by_name = {option.suffix[1:] or "base": option for option in OPTIONS}
    unknown = set(selected or ()) - set(by_name)
    if unknown:
        raise ValueError(f"Unknown options {sorted(unknown)}; choose from "
                         f"{sorted(by_name)}.")
    table = {}
    for key in selected or by_name:
        option = by_name[key]
        name = variant + option.suffix
        baselines.MODELS.setdefault(name, {
            "build": baselines.mdnet_builder(variant=variant, **option.kwargs),
            "description": f"MDNet ({variant}): {option.description}",
        })
        table[name] = option
    return table


def deploy_facts(name, budget, images, tmp_dir):
    """Writes NAME_int8.tflite and NAME_float32.tflite; returns the facts of
    everything but latency."""
    import keras

    from mdnet_keras.export import convert_model
    from mdnet_keras.export import edgetpu
    from mdnet_keras.export import xnnpack_partitions
    from mdnet_keras.profile import profile

    keras.utils.set_random_seed(0)
    model = baselines.build_model(name)
    calibration = {"rep_images": images,
                   "num_calibration": budget["calibration_images"]}
    facts = {"params": int(model.count_params()),
             "macs": int(profile(model)["total"]["macs"])}
    facts["bytes"], facts["xnnpack"] = {}, {}
    for mode in MODES:
        content = convert_model(model, mode, **(calibration if "int8" in mode
                                                else {}))
        with open(os.path.join(tmp_dir, f"{name}_{mode}.tflite"), "wb") as f:
            f.write(content)
        facts["bytes"][mode] = len(content)
        facts["xnnpack"][mode] = xnnpack_partitions(content)
        if mode == "int8":
            tpu = edgetpu.edgetpu_report(content)
            facts["edgetpu"] = {k: tpu[k] for k in (
                "compatible", "first_fallback", "tpu_mac_share", "tpu_ops",
                "cpu_ops")}
    # What `convert --micro_out` makes: kernels whole (pieces only cost
    # arena in TFLite Micro).
    content = convert_model(model, "int8", max_depthwise_taps=None,
                            **calibration)
    # In a child process: the TFLM wheel aborts the process on some models.
    spawn = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        try:
            facts["micro"] = pool.submit(
                micro_facts, content, images[:budget["micro_images"]]
            ).result()
        except futures.process.BrokenProcessPool:
            facts["micro"] = {"error": "the TFLM interpreter aborted the "
                              "process"}
    return facts


def micro_facts(content, images):
    """TFLite Micro's smallest arena for `content`, and its outputs on
    `images` against LiteRT's."""
    from mdnet_keras.export import micro
    from mdnet_keras.export import micro_app

    try:
        arena = micro.find_min_arena(content)
        return {"arena_bytes": int(arena), "flash_bytes": len(content),
                "ops": micro_app.model_ops(content),
                "vs_litert": micro.compare_with_litert(content, images, arena)}
    except Exception as e:  # an op TFLM lacks, or no TFLM wheel
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}


def deploy_entries(results, names, budget, tmp_dir, clock):
    """Facts of every model (cached one by one), then their latency in one
    set of interleaved rounds."""
    from mdnet_keras.data.datasets import load_sample

    images = load_sample().x_train
    os.makedirs(tmp_dir, exist_ok=True)
    for name in names:
        files = [os.path.join(tmp_dir, f"{name}_{mode}.tflite")
                 for mode in MODES]
        if not all(map(os.path.exists, files)):  # facts without their files
            results.data.get("models", {}).pop(name, None)
        suite_results.cached(results, clock, ("models", name),
                   lambda: deploy_facts(name, budget, images, tmp_dir),
                   optional=False)
    latency = suite_tflite.latency_entry(names, budget, tmp_dir, clock,
                                         modes=MODES)
    results.put(dict(latency, models=names), "latency")


def accuracy_entries(results, names, budget, tmp_dir, clock):
    data = suite_data.load_benchmark_data(budget)["cifar10"]
    results.put(data["facts"], "data")
    for seed in budget["seeds"]:
        for name in names:
            suite_results.cached(results, clock, ("models", name, str(seed)),
                       lambda: suite_accuracy.train_entry(
                           name, "cifar10", data, seed, budget,
                           budget["epochs"], tmp_dir, clock),
                       optional=False)


def summarise(deploy, accuracy):
    """One dict of both parts' JSON: per model its facts, latency, ratios to
    the reference and top-1 runs by seed."""
    latency = deploy["latency"]
    reference = latency["results"][deploy["budget"]["reference"]]
    models = {}
    for name in latency["models"]:
        row = dict(deploy["models"][name])
        times = latency["results"][name]
        row["latency_ms"] = {mode: {t: times[mode][t]["median_ms"]
                                    for t in times[mode]} for mode in times}
        # Against the reference in its faster int8 mode at that thread
        # count: the model a phone user would pick instead, at its best.
        row["best_int8_mode"], row["int8_vs_reference"] = {}, {}
        for t in times["int8"]:
            best = min(INT8_MODES, key=lambda m: times[m][t]["median_ms"])
            reference_ms = min(reference[m][t]["median_ms"]
                               for m in INT8_MODES)
            row["best_int8_mode"][t] = best
            row["int8_vs_reference"][t] = (times[best][t]["median_ms"]
                                           / reference_ms)
        row["top1"] = {seed: run_["top1"] for seed, run_ in (
            (accuracy or {}).get("models", {}).get(name, {}).items())}
        models[name] = row
    return {"budget": deploy["budget"], "deploy_runs": deploy["runs"],
            "accuracy_runs": (accuracy or {}).get("runs", []),
            "versions": deploy["versions"],
            "latency_method": latency["method"],
            "runs_per_config": latency["runs_per_config"],
            "load_average_end": latency["load_average_end"],
            "accuracy_data": (accuracy or {}).get("data"), "models": models}


def top1_summary(summary, name):
    """(mean top-1 in points, spread in points, seeds, sample variance or
    None for one seed) of `name`."""
    top1 = [100 * v for v in summary["models"][name]["top1"].values()]
    if not top1:
        return None
    variance = statistics.variance(top1) if len(top1) > 1 else None
    return (statistics.mean(top1), max(top1) - min(top1), len(top1),
            variance)


def verdicts(summary, base):
    """option -> the targets, met or not, with the figures."""
    out = {}
    default = top1_summary(summary, base)
    for name, row in summary["models"].items():
        if not name.startswith(base):
            continue
        ratios = row["int8_vs_reference"]
        verdict = {f"int8_{t}_threads": {"ratio": ratios[t], "target": limit,
                                         "met": ratios[t] <= limit}
                   for t, limit in LATENCY_TARGETS.items()}
        mine = top1_summary(summary, name)
        if mine and default:
            # The seed spread is the target; the standard error of
            # the difference of means (Welch) says how much of the
            # difference the seeds alone would explain.
            error = (math.sqrt(mine[3] / mine[2] + default[3] / default[2])
                     if mine[3] is not None and default[3] is not None
                     else None)
            verdict["top1"] = {
                "points_vs_default": mine[0] - default[0],
                "difference_standard_error": error,
                "default_seed_spread": default[1],
                "seeds": min(mine[2], default[2]),
                "met": (mine[0] >= default[0] - default[1]
                        if default[2] > 1 else None)}
        out[name] = verdict
    return out


def markdown(summary):
    budget = summary["budget"]
    machine = summary["deploy_runs"][-1]["machine"]
    reference = budget["reference"]
    lines = [
        "# MDNet's int8 options against their base design",
        "",
        f"{commands(summary['deploy_runs'])} on "
        f"{machine.get('cpu_model', '?')} ({machine['cpu_count']} cores, "
        "shared with other jobs: load average at the start of the run "
        f"{machine.get('load_average')}, at the end of the latency rounds "
        f"{summary['load_average_end']}); ai-edge-litert "
        f"{summary['versions'].get('ai_edge_litert')}. Latency: median of "
        f"{summary['runs_per_config']} batch-1 invokes in "
        f"{budget['latency_rounds']} interleaved rounds; untrained models "
        f"(seed 0) calibrated on {budget['calibration_images']} images. "
        f"Ratios: each model's faster int8 mode (named) against {reference}'s "
        "faster int8 mode, in the same rounds. int8: the converter's full "
        "int8 (runs everywhere); int8_xnnpack: `convert --mode=int8_xnnpack` "
        "(SOFTMAX and RSQRT in float, ai-edge-quantizer; phones only).",
        "",
        "| model | what changes | params | MMACs | int8 ms 1T | int8 ms 2T "
        "| int8_xnnpack ms 1T | int8_xnnpack ms 2T "
        f"| 1T vs {reference} | 2T vs {reference} | float32 ms 1T | "
        "float32 ms 2T | XNNPACK partitions (int8 / int8_xnnpack) | ops left "
        "out (int8) | TFLM arena KiB | TFLM vs LiteRT argmax | Edge TPU MAC "
        "share |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---"
        "|---:|---:|---:|",
    ]
    for name, row in summary["models"].items():
        xnnpack = row["xnnpack"]
        left_out = ", ".join(f"{op} x{n}" for op, n in sorted(
            xnnpack["int8"]["left_out_by_type"].items())) or "none"
        micro = row["micro"]
        arena = (f"{micro['arena_bytes'] / 1024:.1f}" if "arena_bytes" in micro
                 else micro["error"][:60])
        agree = (f"{100 * micro['vs_litert']['argmax_agreement']:.0f}% of "
                 f"{micro['vs_litert']['num_images']}"
                 if "vs_litert" in micro else "-")
        option = option_description(name, budget["variant"])
        ms = row["latency_ms"]
        ratios = " | ".join(
            f"{row['int8_vs_reference'][t]:.2f}x ({row['best_int8_mode'][t]})"
            for t in ("1", "2"))
        lines.append(
            f"| {name} | {option} | {row['params']:,} | "
            f"{row['macs'] / 1e6:.1f} | {ms['int8']['1']:.2f} | "
            f"{ms['int8']['2']:.2f} | {ms['int8_xnnpack']['1']:.2f} | "
            f"{ms['int8_xnnpack']['2']:.2f} | {ratios} | "
            f"{ms['float32']['1']:.2f} | {ms['float32']['2']:.2f} | "
            f"{xnnpack['int8']['partitions']} / "
            f"{xnnpack['int8_xnnpack']['partitions']} | "
            f"{left_out} | {arena} | {agree} | "
            f"{100 * row['edgetpu']['tpu_mac_share']:.1f}% |")
    lines += ["", "## CIFAR-10 top-1", "",
              f"{commands(summary['accuracy_runs']) or 'Not run'}"
              f"{machines(summary['accuracy_runs'])}: "
              f"{budget['epochs']} epochs on {budget['cifar_train_images']:,} "
              "class-balanced training images (batch "
              f"{budget['batch_size']}, the CPU suite's recipe), "
              f"{budget['cifar_test_images']:,} test images; float Keras "
              "model.", "",
              "| model | top-1 % (mean) | per seed | seed spread (points) |",
              "|---|---:|---|---:|"]
    for name, row in summary["models"].items():
        top1 = top1_summary(summary, name)
        if top1 is None:
            continue
        per_seed = ", ".join(f"seed {seed}: {100 * value:.2f}"
                             for seed, value in row["top1"].items())
        lines.append(f"| {name} | {top1[0]:.2f} | {per_seed} | "
                     f"{top1[1]:.2f} |")
    lines += ["", "## Targets", "",
              f"int8 latency <= {LATENCY_TARGETS['1']}x {reference} on one "
              f"thread and <= {LATENCY_TARGETS['2']}x on two (each in its "
              "faster int8 mode); top-1 no lower than the base design's minus "
              "its seed spread.", ""]
    for name, verdict in summary["verdicts"].items():
        parts = [f"int8 {key.split('_')[1]} thread(s) {v['ratio']:.2f}x "
                 f"(target {v['target']}x): {'met' if v['met'] else 'not met'}"
                 for key, v in verdict.items() if key.startswith("int8")]
        if "top1" in verdict:
            v = verdict["top1"]
            state = {True: "met", False: "not met",
                     None: "inconclusive (one seed)"}[v["met"]]
            error = ("" if v["difference_standard_error"] is None else
                     f", standard error of the difference "
                     f"{v['difference_standard_error']:.2f}")
            parts.append(f"top-1 {v['points_vs_default']:+.2f} points vs "
                         f"base (seed spread {v['default_seed_spread']:.2f}"
                         f"{error}): {state}")
        lines.append(f"- {name}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def commands(runs):
    """The distinct commands of `runs`, in order, as Markdown code."""
    seen = dict.fromkeys(r["command"] for r in runs)
    return " then ".join(f"`{c}`" for c in seen)


def machines(runs):
    """The CPUs that ran `runs`, each once, as " on A then B" ("" for none)."""
    seen = dict.fromkeys(r["machine"].get("cpu_model", "?") for r in runs)
    return f" on {' then '.join(seen)}" if seen else ""


def option_description(name, variant):
    for option in OPTIONS:
        if name == variant + option.suffix:
            return option.description
    return baselines.MODELS[name]["description"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small model, few runs, 128 images (tests)")
    parser.add_argument("--parts", default="deploy,accuracy",
                        help="comma-separated: deploy, accuracy; each "
                        "resumes its own <out>/<part>.json (neither: only "
                        "the summary from them)")
    parser.add_argument("--options", default=None,
                        help="comma-separated option names (base, "
                        "dilated, ...), measured and trained in this order; "
                        "all when not given")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated training seeds of the accuracy "
                        "part, added beside the seeds already in its JSON "
                        "(default: the budget's)")
    parser.add_argument("--fresh", action="store_true",
                        help="start over instead of resuming the JSON")
    parser.add_argument("--out", default=os.path.join(
        "benchmarks", "results", "int8_options"))
    args = parser.parse_args(argv)
    command = suite_results.command_line(__file__, argv)
    budget = BUDGETS["quick" if args.quick else "full"]
    if args.seeds:
        budget = dict(budget, seeds=tuple(int(s) for s in args.seeds.split(",")))
    names = list(option_models(
        budget["variant"], args.options and args.options.split(",")))
    clock = suite_results.Clock(deadline_minutes=float("inf"))
    models = names + [budget["reference"]]
    for part in [part for part in args.parts.split(",") if part]:
        results = suite_results.Results.open(
            os.path.join(args.out, f"{part}.json"), f"int8_options_{part}",
            budget, models, command, fresh=args.fresh)
        tmp_dir = os.path.join(args.out, "tmp", part)
        if part == "deploy":
            deploy_entries(results, models, budget, tmp_dir, clock)
        else:
            accuracy_entries(results, names, budget, tmp_dir, clock)
    parts = {}
    for part in ("deploy", "accuracy"):
        path = os.path.join(args.out, f"{part}.json")
        if os.path.exists(path):
            with open(path) as f:
                parts[part] = json.load(f)
    if "latency" not in parts.get("deploy", {}):
        return 0
    summary = summarise(parts["deploy"], parts.get("accuracy"))
    # The base the JSON was measured with (`mdnet` before the switch).
    summary["verdicts"] = verdicts(summary, summary["budget"]["variant"])
    suite_results.write_report(args.out, "int8_options", summary,
                               markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
