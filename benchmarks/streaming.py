"""Image folders streamed from disk against decoded into memory, by size.

For each folder size (2,000 / 20,000 / 100,000 files by default) a folder of
real images is written into a temporary directory: augmented copies of the
NEU surface-defect training images (`../shared/data`; random crop of 80-100%
of the side, horizontal flip, brightness 0.8-1.2, JPEG quality 90), one
folder per class. The largest folder is written once; the smaller ones are
hard links to its first files, per class. Nothing is written into the
repository.

Each measurement runs in a fresh process (its peak RSS is its own), which
loads the folder with `load_dataset("folder", streaming=...)` and then:

- `pipeline_images_per_s`: `ImageBatches` alone (crop and flip on, one
  thread, `pipeline_throughput`): the decoding cost per image;
- `fit_images_per_s`: `model.fit` of `mdnet_micro` (stem stride 2, as for
  large images) on the same batches with `workers` prefetching threads,
  timed after two warm-up steps;
- `fit_cpu_ms_per_image`: the CPU time of the whole process (all threads)
  per trained image over those steps: on cores other jobs also load, what
  streaming adds to a step shows here when wall-clock rates swing;
- `peak_rss_mib`: the process' peak resident memory (`ru_maxrss`), and
  `load_s`, the time `load_dataset` took.

Streaming and in-memory alternate, one process each, in every round, so a
change of load on shared cores hits both; ratios are medians over rounds of
the per-round ratios.

Usage:
    python benchmarks/streaming.py --out=benchmarks/results/streaming
    python benchmarks/streaming.py --sizes=2000,20000 --rounds=1 \
        --work_dir=/tmp/streaming-folders   # kept, reused by a rerun
    # The harness on two tiny folders, in seconds (what the test runs):
    python benchmarks/streaming.py --quick --out=/tmp/streaming
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import suite_results  # noqa: E402

NEU_TRAIN = os.path.join(ROOT, "..", "shared", "data", "neu-surface-defects",
                         "train")
# `fit_steps` 0 leaves out the model (and TensorFlow: the quick harness
# runs Keras' numpy backend, which has PyDataset but cannot train).
BUDGETS = {
    "full": {"sizes": (2000, 20000, 100000), "image_size": 64,
             "batch_size": 32, "fit_steps": 10, "pipeline_batches": 20,
             "workers": 2, "rounds": 2, "backend": "tensorflow",
             "stem_strides": 2},
    "quick": {"sizes": (12, 24), "image_size": 32, "batch_size": 4,
              "fit_steps": 0, "pipeline_batches": 2, "workers": 2,
              "rounds": 1, "backend": "numpy", "stem_strides": 2},
}
MODES = ("memory", "stream")
KEYS = ("peak_rss_mib", "rss_after_load_mib", "load_s",
        "pipeline_images_per_s", "fit_images_per_s", "fit_cpu_ms_per_image")


def augmented_copy(image, rng):
    """A random crop (80-100% of the side), flip and brightness change."""
    from PIL import Image, ImageEnhance

    width, height = image.size
    side = int(min(width, height) * rng.uniform(0.8, 1.0))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    out = image.crop((left, top, left + side, top + side)).resize(
        (width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))


def write_folder(source, root, count, seed=0):
    """Writes `count` augmented copies of `source/<class>/*` into `root`.

    Classes get equal shares (round robin over the sorted source files).

    Returns:
        float, seconds taken.
    """
    from PIL import Image

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    classes = sorted(os.listdir(source))
    files = {c: sorted(os.listdir(os.path.join(source, c))) for c in classes}
    for c in classes:
        os.makedirs(os.path.join(root, c), exist_ok=True)
    for i in range(count):
        c = classes[i % len(classes)]
        k = i // len(classes)
        name = files[c][k % len(files[c])]
        with Image.open(os.path.join(source, c, name)) as image:
            copy = augmented_copy(image.convert("RGB"), rng)
        copy.save(os.path.join(root, c, f"{k:06d}.jpg"), quality=90)
        if (i + 1) % 10000 == 0:
            print(f"  wrote {i + 1}/{count} files", flush=True)
    return time.perf_counter() - start


def link_subset(full, root, count):
    """Hard-links the first `count` files (equal per class) of `full`."""
    classes = sorted(os.listdir(full))
    for j, c in enumerate(classes):
        os.makedirs(os.path.join(root, c))
        share = count // len(classes) + (j < count % len(classes))
        for name in sorted(os.listdir(os.path.join(full, c)))[:share]:
            os.link(os.path.join(full, c, name), os.path.join(root, c, name))


def make_folders(work_dir, sizes, results):
    """Writes (or, when there, reuses) one folder per size in `work_dir`.

    Returns:
        dict size -> folder; `results["write_s"]` is the writing time (None
        when the largest folder was reused).
    """
    full = os.path.join(work_dir, f"files_{sizes[-1]}")
    results["write_s"] = None
    if not os.path.isdir(full):
        print(f"Writing {sizes[-1]} files into {full}", flush=True)
        partial = full + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        results["write_s"] = write_folder(NEU_TRAIN, partial, sizes[-1])
        os.rename(partial, full)
    folders = {sizes[-1]: full}
    for n in sizes[:-1]:
        folders[n] = os.path.join(work_dir, f"files_{n}")
        if not os.path.isdir(folders[n]):
            link_subset(full, folders[n], n)
    return folders


def decode_difference(source, size, count=200):
    """`load_image` (reduced-scale JPEG decoding) against a full decode.

    Returns:
        dict: mean and largest absolute difference in grey levels over the
        first `count` images (sorted) of `source/<class>/`, both resized to
        `size` with Pillow's bilinear filter.
    """
    from PIL import Image

    from mdnet_keras.data import load_image

    paths = sorted(os.path.join(source, c, name)
                   for c in sorted(os.listdir(source))
                   for name in os.listdir(os.path.join(source, c)))[:count]
    means, largest = [], 0
    for path in paths:
        with Image.open(path) as image:
            full = np.asarray(image.convert("RGB").resize(
                (size, size), Image.Resampling.BILINEAR), np.int16)
        difference = np.abs(load_image(path, size, 3) - full)
        means.append(difference.mean())
        largest = max(largest, int(difference.max()))
    return {"images": len(paths), "mean_abs_grey_levels": float(np.mean(means)),
            "max_abs_grey_levels": largest}


def measure(folder, mode, budget):
    """One measurement (run in its own process): see the module docstring."""
    import keras

    from mdnet_keras.data import ImageBatches, load_dataset
    from mdnet_keras.data.pipeline import pipeline_throughput

    size = budget["image_size"]
    start = time.perf_counter()
    ds = load_dataset("folder", folder, image_size=size,
                      streaming="always" if mode == "stream" else "never")
    load_s = time.perf_counter() - start
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batch_size = budget["batch_size"]

    def batches():
        return ImageBatches(ds.x_train, ds.y_train, ds.num_classes,
                            batch_size=batch_size, seed=0,
                            workers=budget["workers"])

    pipeline = pipeline_throughput(batches(), budget["pipeline_batches"])
    fit = fit_cpu = None
    if budget["fit_steps"]:
        from mdnet_keras import MDNet

        keras.utils.set_random_seed(0)
        model = MDNet(input_shape=(size, size, 3),
                      num_classes=ds.num_classes, variant="mdnet_micro",
                      stem_strides=budget["stem_strides"])
        model.compile("adamw", "categorical_crossentropy", jit_compile=False)
        data = batches()
        steps = min(budget["fit_steps"], len(data))
        model.fit(data, epochs=1, steps_per_epoch=2, shuffle=False,
                  verbose=0)
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(data, epochs=1, steps_per_epoch=steps, shuffle=False,
                  verbose=0)
        fit = steps * batch_size / (time.perf_counter() - start)
        fit_cpu = (time.process_time() - cpu) / (steps * batch_size)
    return {"mode": mode, "files": len(ds.x_train) + len(ds.x_test),
            "streamed": ds.streamed, "load_s": load_s,
            "pipeline_images_per_s": pipeline, "fit_images_per_s": fit,
            "fit_cpu_ms_per_image": None if fit_cpu is None else 1e3 * fit_cpu,
            "rss_after_load_mib": rss_after_load / 1024,
            "peak_rss_mib": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure_in_child(folder, mode, budget_name):
    """Runs `measure` in a fresh Python process; returns its dict."""
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", folder, mode,
         budget_name], capture_output=True, text=True, cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND=BUDGETS[budget_name]["backend"],
                 TF_CPP_MIN_LOG_LEVEL="2"))
    if done.returncode:
        raise RuntimeError(f"measurement {mode} of {folder} failed:\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(rows, sizes):
    """Medians per (size, mode) and per-round stream / memory ratios."""
    summary = []
    for n in sizes:
        entry = {"files": n}
        for mode in MODES:
            mine = [r for r in rows if r["size"] == n and r["mode"] == mode]
            for key in KEYS:
                values = [r[key] for r in mine if r[key] is not None]
                entry[f"{mode}_{key}"] = (statistics.median(values)
                                          if values else None)
        for key in ("fit_images_per_s", "pipeline_images_per_s",
                    "fit_cpu_ms_per_image"):
            ratios = [s[key] / m[key] for s in rows for m in rows
                      if s["size"] == m["size"] == n
                      and s["round"] == m["round"] and s["mode"] == "stream"
                      and m["mode"] == "memory" and s[key] is not None]
            entry[f"stream_vs_memory_{key}"] = (statistics.median(ratios)
                                                if ratios else None)
        summary.append(entry)
    return summary


def targets(summary):
    """The issue's targets: flat streaming RSS, fit throughput >= 0.8x."""
    rss = [s["stream_peak_rss_mib"] for s in summary]
    fit = [s["stream_vs_memory_fit_images_per_s"] for s in summary]
    cpu = [cpu_ratio(s) for s in summary]
    return {
        "min_cpu_bound_stream_vs_memory_fit": None if None in cpu
        else min(cpu),
        "stream_peak_rss_growth_smallest_to_largest_mib": rss[-1] - rss[0],
        "memory_peak_rss_growth_smallest_to_largest_mib":
            summary[-1]["memory_peak_rss_mib"]
            - summary[0]["memory_peak_rss_mib"],
        "min_stream_vs_memory_fit": None if None in fit else min(fit),
        "fit_target_0_8x_met": None if None in fit else min(fit) >= 0.8,
    }


def cpu_ratio(entry):
    """In-memory CPU time per image over streamed: the CPU-bound rate ratio."""
    ratio = entry["stream_vs_memory_fit_cpu_ms_per_image"]
    return None if ratio is None else 1 / ratio


def fmt(value, spec=".0f", suffix=""):
    """Formats a measured number; "-" for one not measured."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def markdown(results):
    b, m = results["budget"], results["machine"]
    fit = (f"Model: `mdnet_micro` (stem stride {b['stem_strides']}), batch "
           f"{b['batch_size']}, {b['workers']} `PyDataset` worker threads, "
           f"TensorFlow on CPU, {b['fit_steps']} timed steps after 2 warm-up "
           "steps." if b["fit_steps"] else "No model trained (quick).")
    lines = [
        "# Streamed image folders against in-memory decoding",
        "",
        f"Command: `{results['command']}`",
        "",
        "Data: augmented copies of the NEU surface-defect training images "
        "(200x200 greyscale JPEGs read as RGB), resized to "
        f"{b['image_size']}x{b['image_size']}; `validation_split=0.1`. {fit} "
        f"{b['rounds']} round(s), streaming and in-memory alternating, each "
        "in its own process.",
        "",
        f"Machine: {m.get('cpu_model', '?')}, {m.get('cpu_count')} cores "
        "shared with other jobs (load average at start "
        f"{m.get('load_average')}), {m.get('memory_gib')} GiB.",
        "",
        "| files | peak RSS in memory (MiB) | peak RSS streamed (MiB) | load s "
        "memory / stream | pipeline img/s memory / stream | fit img/s memory "
        "/ stream | fit stream / memory | fit CPU ms/img memory / stream "
        "| CPU-bound rate stream / memory |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["summary"]:
        lines.append(
            f"| {s['files']:,} | {fmt(s['memory_peak_rss_mib'])} | "
            f"{fmt(s['stream_peak_rss_mib'])} | "
            f"{fmt(s['memory_load_s'], '.1f')} / "
            f"{fmt(s['stream_load_s'], '.1f')} | "
            f"{fmt(s['memory_pipeline_images_per_s'])} / "
            f"{fmt(s['stream_pipeline_images_per_s'])} | "
            f"{fmt(s['memory_fit_images_per_s'], '.1f')} / "
            f"{fmt(s['stream_fit_images_per_s'], '.1f')} | "
            f"{fmt(s['stream_vs_memory_fit_images_per_s'], '.2f', 'x')} | "
            f"{fmt(s['memory_fit_cpu_ms_per_image'], '.2f')} / "
            f"{fmt(s['stream_fit_cpu_ms_per_image'], '.2f')} | "
            f"{fmt(cpu_ratio(s), '.2f', 'x')} |")
    t = results["targets"]
    met = {None: "not measured", True: "met", False: "not met"}
    lines += [
        "",
        f"Peak RSS growth from {results['summary'][0]['files']:,} to "
        f"{results['summary'][-1]['files']:,} files: streamed "
        f"{fmt(t['stream_peak_rss_growth_smallest_to_largest_mib'])} MiB, in "
        f"memory {fmt(t['memory_peak_rss_growth_smallest_to_largest_mib'])} "
        "MiB. Fit throughput streamed / in memory, lowest over sizes: "
        f"{fmt(t['min_stream_vs_memory_fit'], '.2f', 'x')} (target >= 0.8x: "
        f"{met[t['fit_target_0_8x_met']]}). In CPU time per trained image "
        "(the rate a CPU-bound machine of its own would reach), streamed / "
        f"in memory, lowest: "
        f"{fmt(t['min_cpu_bound_stream_vs_memory_fit'], '.2f', 'x')}.",
        "",
        f"Decoding: `load_image` decodes a JPEG it shrinks 2x or more at "
        "a reduced DCT scale (Pillow's `draft`); against a full decode, both "
        f"resized to {b['image_size']}x{b['image_size']}, its pixels differ "
        f"by {results['decode_difference']['mean_abs_grey_levels']:.2f} grey "
        "levels on average (at most "
        f"{results['decode_difference']['max_abs_grey_levels']}) over "
        f"{results['decode_difference']['images']} NEU images.",
        "",
        f"Folders written in {fmt(results['write_s'])} s "
        f"({results['summary'][-1]['files']:,} files; - : reused).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="two tiny folders and few steps (tests)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated folder sizes (files)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=os.path.join(
        "benchmarks", "results", "streaming"))
    parser.add_argument("--work_dir", default=None,
                        help="keep the folders here (outside the "
                             "repository) and reuse them on a rerun")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        folder, mode, budget_name = args.child
        print(json.dumps(suite_results.jsonable(measure(folder, mode,
                                              BUDGETS[budget_name]))))
        return 0
    if not os.path.isdir(NEU_TRAIN):
        print(f"error: NEU images not found at {NEU_TRAIN}", file=sys.stderr)
        return 2
    name = "quick" if args.quick else "full"
    budget = dict(BUDGETS[name])
    if args.sizes:
        budget["sizes"] = tuple(int(s) for s in args.sizes.split(","))
    if args.rounds:
        budget["rounds"] = args.rounds
    sizes = sorted(budget["sizes"])
    results = {"command": suite_results.command_line(__file__, argv),
               "machine": suite_results.machine_info(), "budget": budget,
               "decode_difference": decode_difference(
                   NEU_TRAIN, budget["image_size"],
                   20 if args.quick else 200)}
    tmp = args.work_dir or tempfile.mkdtemp(prefix="streaming-bench-")
    try:
        folders = make_folders(tmp, sizes, results)
        rows = []
        for r in range(budget["rounds"]):
            for n in sizes:
                for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                    row = measure_in_child(folders[n], mode, name)
                    row.update(size=n, round=r)
                    print(json.dumps(suite_results.jsonable(row)), flush=True)
                    rows.append(row)
    finally:
        if not args.work_dir:
            shutil.rmtree(tmp, ignore_errors=True)
    results["rows"] = rows
    results["summary"] = summarise(rows, sizes)
    results["targets"] = targets(results["summary"])
    suite_results.write_report(args.out, "streaming", results,
                               markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
