"""Markdown tables and the Pareto plot, generated from a suite's JSON.

`write_all(data, out, suite)` writes `<out>/<suite>.md` and
`<out>/<suite>_pareto.png`. Nothing here measures anything: every figure
comes from the JSON that `benchmarks/run.py` wrote.
"""

import os

import numpy as np

REFERENCE = "mobilenetv2_x1_0"
MODES = ("float32", "dynamic", "int8")
NAMES = {
    "mdnet": "MDNet",
    "mdnet_v1": "MDNet v1 (first design)",
    "mobilenetv2_x1_0": "MobileNetV2 x1.0",
    "mobilenetv2_x0_5": "MobileNetV2 x0.5",
    "resnet20": "ResNet-20",
    "resnet56": "ResNet-56",
    "mdnet_standard_attention": "MDNet, standard attention",
    "mdnet_single_kernel": "MDNet, single 5x5 kernel",
    "mdnet_kernels_3_5": "MDNet v1, kernels 3/5",
    "mdnet_kernels_3": "MDNet v1, kernels 3x3",
    "mdnet_micro": "MDNet micro",
}


def pretty(name):
    return NAMES.get(name, name)


def accuracy_summary(model, dataset):
    """(mean top-1 %, [per-seed %], test images) or None."""
    runs = (model.get("accuracy") or {}).get(dataset) or {}
    values = [100 * r["top1"] for r in runs.values() if r]
    if not values:
        return None
    images = next(iter(runs.values()))["test_images"]
    return float(np.mean(values)), values, images


def format_accuracy(summary):
    if summary is None:
        return "not run"
    mean, values, _ = summary
    if len(values) == 1:
        return f"{mean:.1f} (1 seed)"
    return (f"{mean:.1f} ({min(values):.1f}-{max(values):.1f}, "
            f"{len(values)} seeds)")


def fmt(value, spec=".1f", missing="-"):
    return missing if value is None else format(value, spec)


def models_table(data):
    models = data["models"]
    throughput = (data.get("throughput") or {}).get("train_images_per_s", {})
    lines = [
        "| Model | Params | MACs (M) | Peak activations int8 (KiB) | "
        "Training images/s (median, min-max) | vs MobileNetV2 x1.0 "
        "(median of per-round ratios, range) | CIFAR-10 top-1 % | "
        "CIFAR-100 (JPEG q75 copy) top-1 % | NEU top-1 % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, model in models.items():
        prof = model.get("profile") or {}
        tp = throughput.get(name) or {}
        ratio = tp.get("ratio_to_reference")
        ratio_text = "-" if ratio is None else (
            f"{ratio:.2f}x ({tp['ratio_range'][0]:.2f}-"
            f"{tp['ratio_range'][1]:.2f})")
        tp_text = "-" if not tp else (
            f"{tp['median']:.0f} ({tp['min']:.0f}-{tp['max']:.0f})")
        lines.append(
            f"| {pretty(name)} | {prof.get('params', 0):,} | "
            f"{prof.get('macs', 0) / 1e6:.1f} | "
            f"{prof.get('peak_activation_bytes_int8', 0) / 1024:.0f} | "
            f"{tp_text} | {ratio_text} | "
            f"{format_accuracy(accuracy_summary(model, 'cifar10'))} | "
            f"{format_accuracy(accuracy_summary(model, 'cifar100'))} | "
            f"{format_accuracy(accuracy_summary(model, 'neu'))} |")
    return "\n".join(lines)


def pipeline_lines(data):
    throughput = data.get("throughput") or {}
    pipes = throughput.get("pipeline_images_per_s") or {}
    lines = []
    for key, p in pipes.items():
        shape = "x".join(str(s) for s in p["image_shape"])
        lines.append(f"- Input pipeline alone ({key}, {shape}, batch "
                     f"{throughput['batch_size']}): {p['median']:.0f} images/s "
                     f"(min {p['min']:.0f}, max {p['max']:.0f}), measured in "
                     "the same rounds as training.")
    return lines


def tflite_table(data):
    latency = ((data.get("latency") or {}).get("results")) or {}
    lines = [
        "| Model | Mode | Size (KiB) | Latency 1 thread (ms) | "
        "Latency 2 threads (ms) | XNNPACK partitions | Ops left out of "
        "XNNPACK / all ops | int8 top-1 vs float top-1 (%) |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for name, model in data["models"].items():
        for mode in MODES:
            entry = (model.get("tflite") or {}).get(mode)
            if not entry:
                continue
            lat = (latency.get(name) or {}).get(mode) or {}
            one = (lat.get("1") or {}).get("median_ms")
            two = (lat.get("2") or {}).get("median_ms")
            x = entry["xnnpack"]
            left = ", ".join(f"{k} x{v}" for k, v in
                             sorted(x["left_out_by_type"].items())) or "none"
            acc = "-"
            if mode == "int8" and "top1" in entry:
                acc = (f"{100 * entry['top1']:.2f} vs "
                       f"{100 * entry['float_top1_keras']:.2f} "
                       f"({-entry['drop_points']:+.2f}; "
                       f"{entry['eval_images']} images, argmax agreement "
                       f"{100 * entry['argmax_agreement_with_float']:.1f}%)")
            lines.append(
                f"| {pretty(name)} | {mode} | {entry['size_bytes'] / 1024:.0f} "
                f"| {fmt(one, '.2f')} | {fmt(two, '.2f')} | {x['partitions']} "
                f"| {left} ({x['left_out_ops']} / {x['ops']}) | {acc} |")
    return "\n".join(lines)


def micro_table(data):
    lines = ["| Model | Arena (KiB) | Flash: int8 model (KiB) | Ops |",
             "|---|---:|---:|---|"]
    for name, model in data["models"].items():
        m = model.get("micro")
        if not m:
            continue
        if "error" in m:
            lines.append(f"| {pretty(name)} | failed: {m['error']} | "
                         f"{m['flash_bytes'] / 1024:.0f} | |")
            continue
        lines.append(f"| {pretty(name)} | {m['arena_bytes'] / 1024:.1f} | "
                     f"{m['flash_bytes'] / 1024:.0f} | "
                     f"{', '.join(m['ops'])} |")
    return "\n".join(lines)


def op_profile_table(data):
    profiles = data.get("op_profile") or {}
    if not profiles:
        return ""
    names = list(profiles)
    kinds = []
    for p in profiles.values():
        for row in p["by_kind"]:
            if row["name"] not in kinds:
                kinds.append(row["name"])
    header = "| Where the time goes (ms per step, share) | " + " | ".join(
        pretty(n) for n in names) + " |"
    lines = [header, "|---|" + "---:|" * len(names)]
    for kind in kinds:
        cells = []
        for n in names:
            row = next((r for r in profiles[n]["by_kind"] if r["name"] == kind),
                       None)
            cells.append("-" if row is None else
                         f"{row['ms_per_step']:.0f} ({100 * row['share']:.0f}%)")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| **all ops (self time)** | " + " | ".join(
        f"{profiles[n]['op_self_ms_per_step']:.0f}" for n in names) + " |")
    lines.append("| wall time per step while profiling | " + " | ".join(
        f"{profiles[n]['wall_ms_per_step_while_profiling']:.0f}"
        for n in names) + " |")
    out = ["\n".join(lines), "",
           "Self time per op summed over the ops the profiler lists (its "
           "500 largest rows), divided by the steps profiled; TensorFlow runs "
           "ops on 2 threads, so the sum exceeds the wall time. Grouped by "
           "the Keras layer each op belongs to (forward and backward).", ""]
    for n in names:
        top = profiles[n]["by_kind_and_op_type"][:8]
        out.append(f"Top ops of {pretty(n)} (batch {profiles[n]['batch_size']}"
                   "): " + "; ".join(
                       f"{r['name']} {r['ms_per_step']:.0f} ms "
                       f"({100 * r['share']:.0f}%)" for r in top) + ".")
        out.append("")
    return "\n".join(out)


def compare(models, a, b, dataset="cifar10"):
    """A sentence comparing mean top-1 of a and b with the seed spread."""
    sa = accuracy_summary(models.get(a, {}), dataset)
    sb = accuracy_summary(models.get(b, {}), dataset)
    if sa is None or sb is None:
        return "not measured", "skipped by the wall-clock deadline"
    diff = sa[0] - sb[0]
    spread = max(max(sa[1]) - min(sa[1]), max(sb[1]) - min(sb[1]))
    seeds = min(len(sa[1]), len(sb[1]))
    point = 100.0 / sa[2]
    measured = [(pretty(n), max(v) - min(v), len(v))
                for n, v in ((a, sa[1]), (b, sb[1])) if len(v) > 1]
    if seeds > 1:
        spread_text = f"seed spread {spread:.2f} points"
    elif measured:
        spread_text = "seed spread measured for " + ", ".join(
            f"{n} only ({s:.2f} points over {k} seeds)"
            for n, s, k in measured)
    else:
        spread_text = "no seed spread measured"
    text = (f"{pretty(a)} {sa[0]:.2f}% vs {pretty(b)} {sb[0]:.2f}% "
            f"({diff:+.2f} points; {seeds} seed(s), {spread_text}; one test "
            f"image = {point:.2f} points)")
    if seeds < 2:
        verdict = "inconclusive (one seed of at least one model)"
    elif abs(diff) <= spread:
        verdict = "inconclusive (inside the seed spread)"
    else:
        verdict = "met" if diff >= 0 else "not met"
    return verdict, text


def targets(data):
    models = data["models"]
    lines = []
    for a, b, what in (
            ("mdnet", REFERENCE, "MDNet top-1 >= MobileNetV2 x1.0 top-1"),
            ("mdnet", "mdnet_standard_attention",
             "differential >= standard attention"),
            ("mdnet", "mdnet_single_kernel", "multi-scale >= single-scale")):
        if a in models and b in models:
            for dataset in ("cifar10", "cifar100", "neu"):
                verdict, text = compare(models, a, b, dataset)
                lines.append(f"- {what} ({dataset}): **{verdict}**: {text}.")
    mdnet = models.get("mdnet", {})
    int8 = (mdnet.get("tflite") or {}).get("int8") or {}
    if "top1" in int8:
        drop = int8["drop_points"]
        lines.append(
            f"- MDNet int8 top-1 within 0.5 point of float: "
            f"**{'met' if drop <= 0.5 else 'not met'}**: "
            f"{100 * int8['top1']:.2f}% vs {100 * int8['float_top1_keras']:.2f}"
            f"% ({-drop:+.2f} points on {int8['eval_images']} images; the "
            "float model is far from converged at this budget).")
    lat = ((data.get("latency") or {}).get("results")) or {}
    if "mdnet" in lat:
        for threads in ("1", "2"):
            m8 = lat["mdnet"]["int8"][threads]["median_ms"]
            mf = lat["mdnet"]["float32"][threads]["median_ms"]
            text = (f"- MDNet int8 latency <= its float32 latency ({threads} "
                    f"thread(s)): **{'met' if m8 <= mf else 'not met'}**: "
                    f"{m8:.2f} vs {mf:.2f} ms")
            if REFERENCE in lat:
                r8 = lat[REFERENCE]["int8"][threads]["median_ms"]
                text += (f"; <= MobileNetV2 x1.0 int8: "
                         f"**{'met' if m8 <= r8 else 'not met'}**: "
                         f"{m8:.2f} vs {r8:.2f} ms")
            lines.append(text + ".")
    tp = ((data.get("throughput") or {}).get("train_images_per_s")) or {}
    if "mdnet" in tp and "ratio_to_reference" in tp["mdnet"]:
        r = tp["mdnet"]["ratio_to_reference"]
        lo, hi = tp["mdnet"]["ratio_range"]
        verdict = "met" if lo >= 1.0 else ("not met" if hi < 1.0 else
                                           "met by the median" if r >= 1.0
                                           else "not met by the median")
        lines.append(f"- MDNet training throughput >= 1.0x MobileNetV2 x1.0: "
                     f"**{verdict}**: {r:.2f}x (per-round range "
                     f"{lo:.2f}-{hi:.2f}x).")
    return "\n".join(lines)


def header(data, suite):
    run = data["runs"][-1]
    machine = run["machine"]
    versions = data.get("versions", {})
    budget = data["budget"]
    lines = [
        f"# Benchmarks: `{suite}` suite",
        "",
        f"Generated by `benchmarks/report.py` from `benchmarks/results/"
        f"{suite}.json`; every figure below was measured by "
        f"`{data.get('command')}`.",
        "",
        f"- Date: started {data.get('started')}, finished "
        f"{data.get('finished', 'unfinished')} (UTC); "
        f"{len(data['runs'])} invocation(s) (the run resumes finished "
        "entries).",
        f"- Machine: {machine.get('cpu_model', '?')}, {machine.get('cpu_count')} "
        f"cores shared with other jobs (load average at start "
        f"{machine.get('load_average')}, at end "
        f"{run.get('load_average_end')}), {machine.get('memory_gib')} GiB, "
        f"{machine.get('platform')}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()
                                   if k not in ("git_uncommitted",)) + ".",
    ]
    if versions.get("git_uncommitted"):
        lines.append("- Uncommitted files of the package at run time: "
                     + ", ".join(versions["git_uncommitted"]) + ".")
    for key, facts in (data.get("data") or {}).items():
        lines.append(f"- Data `{key}`: {facts['source']}; "
                     f"{facts['train_images']} training and "
                     f"{facts['test_images']} test images.")
    recipe = data.get("recipe", {})
    lines.append(
        f"- Budget: {budget['epochs']} epoch(s) on CIFAR-10 (seeds "
        f"{budget['seeds']})"
        + (f" and on CIFAR-100 (JPEG q75 copy, seed {budget['seeds'][0]})"
           if "cifar100" in (data.get("data") or {}) else "")
        + f", {budget['neu_epochs']} epoch(s) on NEU at "
        f"{budget['neu_image_size']}x{budget['neu_image_size']} (seeds "
        f"{budget['neu_seeds']}), batch {budget['batch_size']} (NEU "
        f"{budget.get('neu_batch_size', budget['batch_size'])}), the same "
        "for every model. Recipe: " + "; ".join(
            f"{k}: {v}" for k, v in recipe.items()) + ".")
    lines.append(
        f"- TFLite: int8 calibrated on {budget['calibration_images']} "
        f"training images; latency = median of "
        f"{(data.get('latency') or {}).get('runs_per_config', '?')} batch-1 "
        f"invokes per (model, mode, threads), in "
        f"{budget['latency_rounds']} interleaved rounds.")
    for note in data.get("notes", []):
        lines.append(f"- Note: {note}")
    if data.get("skipped"):
        lines.append("- Not run (wall-clock deadline of "
                     f"{budget['deadline_minutes']} minutes): "
                     + ", ".join(s["entry"] for s in data["skipped"]) + ".")
    return "\n".join(lines)


def markdown(data, suite):
    parts = [
        header(data, suite),
        "",
        "## Size, speed and accuracy",
        "",
        models_table(data),
        "",
        *pipeline_lines(data),
        "",
        "Accuracy is at a tiny CPU budget (see above), far from convergence: "
        "it ranks how fast each model learns, not what it reaches after 200 "
        "epochs. Differences inside the seed spread are inconclusive.",
        "",
        "## Targets",
        "",
        targets(data),
        "",
        "## TFLite (ai-edge-litert, batch 1, CIFAR-10 models)",
        "",
        tflite_table(data),
        "",
        "## TFLite Micro",
        "",
        "What `convert --micro_out` ships: MDNet in its graph form for TFLite "
        "Micro, large depthwise kernels whole, the flatbuffer as the app "
        "compiles it in; the smallest arena that allocates on the host.",
        "",
        micro_table(data),
        "",
    ]
    op = op_profile_table(data)
    if op:
        parts += ["## Where training time goes (TensorFlow profiler)", "",
                  op, ""]
    parts.append(f"![accuracy vs parameters and int8 latency]({suite}_pareto.png)")
    return "\n".join(parts) + "\n"


def pareto_front(points):
    """Points (x, y) not dominated by one with lower-or-equal x, higher y."""
    front = []
    best = -np.inf
    for x, y, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y, name))
            best = y
    return front


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = ((data.get("latency") or {}).get("results")) or {}
    params, latency = [], []
    for name, model in data["models"].items():
        summary = accuracy_summary(model, "cifar10")
        if summary is None:
            continue
        params.append((model["profile"]["params"] / 1e6, summary[0], name))
        one = (((lat.get(name) or {}).get("int8") or {}).get("1") or {})
        if "median_ms" in one:
            latency.append((one["median_ms"], summary[0], name))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, points, label in (
            (axes[0], params, "parameters (millions)"),
            (axes[1], latency, "int8 batch-1 latency, 1 thread (ms)")):
        for x, y, name in points:
            ax.scatter(x, y, color="C3" if name.startswith("mdnet") else "C0")
            ax.annotate(pretty(name), (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        front = pareto_front(points)
        if len(front) > 1:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post",
                    color="grey", linestyle="--", label="Pareto front")
            ax.legend(loc="lower right")
        ax.set_xlabel(label)
        ax.set_ylabel("CIFAR-10 top-1 (%), mean over seeds")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{data['suite']} suite: accuracy at the stated CPU budget "
                 "(not converged)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(data, out, suite):
    with open(os.path.join(out, f"{suite}.md"), "w") as f:
        f.write(markdown(data, suite))
    plot(data, os.path.join(out, f"{suite}_pareto.png"))
