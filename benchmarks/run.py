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
   the same seeds, the same epochs; top-1 on the test set. NEU surface
   defects at 64x64 likewise.
4. `tflite`: float32, dynamic-range and int8 conversions (through
   `mdnet_keras.export.convert_model`) of the CIFAR-trained model: file size,
   op count, XNNPACK partitions and the ops left out of them; int8 top-1 on
   the test set against the Keras float top-1. `latency`: batch-1 median of
   >= 100 invokes at 1 and 2 threads, every (model, mode, threads) in turn
   in rounds, again so that load hits all of them.
5. `micro`: TFLite Micro's smallest tensor arena and the flash (model bytes)
   of every int8 model as the convert command makes it for TFLite Micro
   (large depthwise kernels whole; `mdnet_keras.export.micro.find_min_arena`).

Results go to `<out>/<suite>.json` after every finished entry (a rerun of the
same command resumes and skips finished entries; `--fresh` starts over),
then `<out>/<suite>.md` (tables generated from the JSON) and
`<out>/<suite>_pareto.png`. Trained weights and `.tflite` files are kept in
`<out>/tmp/<suite>/` (ignored by git). Entries that would start after
`--deadline_minutes` are skipped and listed as such in the JSON.
"""

import datetime
import gc
import glob
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
CIFAR10_NPZ = os.path.join(SHARED_DATA, "cifar10.npz")
NEU_FOLDER = os.path.join(SHARED_DATA, "neu-surface-defects")
TFLITE_MODES = ("float32", "dynamic", "int8")
THREADS = (1, 2)

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


# ---------------------------------------------------------------------------
# Results file: cached entries, written after each one
# ---------------------------------------------------------------------------


class Results:
    """The suite's JSON, saved atomically after every finished entry."""

    def __init__(self, path, data):
        self.path = path
        self.data = data

    @classmethod
    def open(cls, path, suite, budget, models, command, fresh=False):
        data = None
        if os.path.exists(path) and not fresh:
            with open(path) as f:
                data = json.load(f)
            if budget_key(data.get("budget")) != budget_key(jsonable(budget)):
                print(f"{path} holds another budget; starting over.")
                data = None
        if data is None:
            data = {
                "suite": suite,
                "budget": jsonable(budget),
                "started": now(),
                "models": {},
                "skipped": [],
            }
        data["budget"] = jsonable(budget)
        data["command"] = command
        data["models_requested"] = list(models)
        data.setdefault("runs", []).append(
            {"started": now(), "machine": machine_info(), "command": command}
        )
        data["versions"] = versions()
        data["skipped"] = []
        results = cls(path, data)
        results.save()
        return results

    def get(self, *keys):
        node = self.data
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def put(self, value, *keys):
        node = self.data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = jsonable(value)
        self.save()

    def save(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=False)
        os.replace(tmp, self.path)


def budget_key(budget):
    """The budget figures a resumed run must share (not models, deadline)."""
    return {k: v for k, v in (budget or {}).items()
            if k not in ("models", "deadline_minutes")}


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")


class Clock:
    """Wall time since the start, the deadline, and progress lines."""

    def __init__(self, deadline_minutes):
        self.start = time.time()
        self.deadline = deadline_minutes * 60

    def elapsed(self):
        return time.time() - self.start

    def past_deadline(self):
        return self.elapsed() > self.deadline

    def log(self, message):
        minutes, seconds = divmod(int(self.elapsed()), 60)
        print(f"[{minutes:3d}:{seconds:02d}] {message}", flush=True)


def cached(results, clock, keys, compute, optional=True):
    """Returns the cached entry at `keys`, else computes and stores it.

    Optional entries that would start after the deadline are skipped and
    listed in `results.data["skipped"]`.
    """
    value = results.get(*keys)
    if value is not None:
        clock.log(f"cached: {'/'.join(map(str, keys))}")
        return value
    if optional and clock.past_deadline():
        results.data["skipped"].append(
            {"entry": "/".join(map(str, keys)),
             "reason": "would start after the wall-clock deadline"})
        results.save()
        clock.log(f"skipped (deadline): {'/'.join(map(str, keys))}")
        return None
    clock.log(f"start: {'/'.join(map(str, keys))}")
    started = time.time()
    value = compute()
    if isinstance(value, dict):
        value.setdefault("wall_seconds", round(time.time() - started, 1))
    results.put(value, *keys)
    clock.log(f"done: {'/'.join(map(str, keys))} "
              f"({time.time() - started:.0f} s)")
    return results.get(*keys)


# ---------------------------------------------------------------------------
# Machine and versions
# ---------------------------------------------------------------------------


def machine_info():
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def versions():
    import keras
    import tensorflow as tf

    import mdnet_keras

    out = {
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "mdnet_keras": mdnet_keras.__version__,
    }
    for module, name in (("ai_edge_litert", "ai-edge-litert"),
                         ("tflite_micro", "tflite-micro")):
        try:
            from importlib import metadata

            out[module] = metadata.version(name)
        except Exception:
            out[module] = None
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
            text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "mdnet_keras", "benchmarks"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout
        out["git_uncommitted"] = sorted(
            line[3:] for line in dirty.splitlines()
            if not line[3:].startswith("benchmarks/results"))
    except Exception:
        pass
    return out


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def balanced_subset(labels, count, seed):
    """Indices of `count` examples, as equal per class as possible, sorted."""
    labels = np.asarray(labels)
    if count >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    take = [count // len(classes)] * len(classes)
    for i in range(count - sum(take)):
        take[i] += 1
    idx = np.concatenate([p[:t] for p, t in zip(per_class, take)])
    return np.sort(idx)


def load_benchmark_data(budget):
    """CIFAR-10 (JPEG copy) and NEU subsets; the package sample without them."""
    from mdnet_keras.data import load_dataset

    data = {}
    if os.path.exists(CIFAR10_NPZ):
        cifar = load_dataset("cifar10", data=CIFAR10_NPZ)
        source = "CIFAR-10 (JPEG copy), ../shared/data/cifar10.npz"
    else:
        cifar = load_dataset("sample")
        source = "CIFAR-10 (JPEG copy) sample embedded in mdnet_keras"
    train = balanced_subset(cifar.y_train, budget["cifar_train_images"], 0)
    test = balanced_subset(cifar.y_test, budget["cifar_test_images"], 0)
    data["cifar10"] = {
        "x_train": cifar.x_train[train], "y_train": cifar.y_train[train],
        "x_test": cifar.x_test[test], "y_test": cifar.y_test[test],
        "num_classes": cifar.num_classes, "source": source,
        "facts": {"source": source, "train_images": int(len(train)),
                  "test_images": int(len(test)),
                  "train_pool": int(len(cifar.y_train)),
                  "test_pool": int(len(cifar.y_test)),
                  "subset": "class-balanced, seed 0"},
    }
    if os.path.isdir(NEU_FOLDER):
        size = budget["neu_image_size"]
        neu = load_dataset("folder", data=NEU_FOLDER, image_size=size,
                           channels=1)
        train = balanced_subset(neu.y_train, budget["neu_train_images"], 0)
        test = balanced_subset(neu.y_test, budget["neu_test_images"], 0)
        data["neu"] = {
            "x_train": neu.x_train[train], "y_train": neu.y_train[train],
            "x_test": neu.x_test[test], "y_test": neu.y_test[test],
            "num_classes": neu.num_classes,
            "facts": {"source": "NEU surface defects, ../shared/data/"
                      "neu-surface-defects (greyscale, resized with Pillow "
                      f"bilinear to {size}x{size})",
                      "train_images": int(len(train)),
                      "test_images": int(len(test)),
                      "classes": list(neu.class_names)},
        }
    return data


# ---------------------------------------------------------------------------
# 1. Profile
# ---------------------------------------------------------------------------


def profile_entry(name):
    from benchmarks.baselines import MODELS, build_model
    from mdnet_keras.profile import profile

    out = {}
    for label, shape, classes in (("cifar10", (32, 32, 3), 10),
                                  ("cifar100", (32, 32, 3), 100)):
        model = build_model(name, shape, classes)
        report = profile(model)["total"]
        if label == "cifar100":
            out["params_100_classes"] = report["params"]
            continue
        out.update({
            "description": MODELS[name]["description"],
            "input_shape": list(shape),
            "params": report["params"],
            "trainable_params": int(sum(
                math.prod(w.shape) for w in model.trainable_weights)),
            "macs": report["macs"],
            "peak_activation_bytes_int8": report["peak_activation_bytes_int8"],
            "peak_activation_bytes_float32":
                report["peak_activation_bytes_float32"],
            "peak_layer": report["peak_layer"],
        })
    return out


# ---------------------------------------------------------------------------
# 2. Throughput and op profile
# ---------------------------------------------------------------------------


def compiled_for_throughput(name, shape, num_classes):
    from benchmarks.baselines import build_model
    from mdnet_keras.training import recipe

    model = build_model(name, shape, num_classes)
    optimizer = recipe.make_optimizer(model, 1e-3)
    recipe.compile_model(model, optimizer, num_classes, jit_compile=False)
    return model


def throughput_entry(models, data, budget, clock):
    """Training images/s of every model and of the pipeline, in rounds."""
    from mdnet_keras.data import ImageBatches, pipeline_throughput

    batch = budget["batch_size"]
    cifar = data["cifar10"]
    num_classes = cifar["num_classes"]
    rng = np.random.default_rng(0)
    idx = rng.choice(len(cifar["x_train"]), batch, replace=len(cifar["x_train"]) < batch)
    x = cifar["x_train"][idx].astype("float32")
    y = np.eye(num_classes, dtype="float32")[cifar["y_train"][idx]]
    compiled = {}
    warm = {}
    for name in models:
        started = time.time()
        model = compiled_for_throughput(name, x.shape[1:], num_classes)
        model.train_on_batch(x, y)
        model.train_on_batch(x, y)
        warm[name] = round(time.time() - started, 1)
        compiled[name] = model
        clock.log(f"  throughput: {name} built and warm ({warm[name]} s)")
    pipelines = {
        key: ImageBatches(d["x_train"], d["y_train"], d["num_classes"],
                          batch_size=batch, shuffle=True, augment=True, seed=0)
        for key, d in data.items()
    }
    per_round = {name: [] for name in models}
    pipe_round = {key: [] for key in pipelines}
    steps = budget["throughput_steps"]
    for r in range(budget["throughput_rounds"]):
        for name in models:
            model = compiled[name]
            started = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            per_round[name].append(steps * batch / (time.perf_counter() - started))
        for key, pipe in pipelines.items():
            pipe_round[key].append(
                pipeline_throughput(pipe, budget["pipeline_batches"]))
        clock.log(f"  throughput round {r + 1}: " + ", ".join(
            f"{n} {v[-1]:.0f}" for n, v in per_round.items()) + " images/s")
    from benchmarks.baselines import REFERENCE_MODEL

    out = {
        "batch_size": batch,
        "steps_per_round": steps,
        "rounds": budget["throughput_rounds"],
        "input": "one fixed CIFAR-10 batch (32x32x3), float32 0..255, "
                 "one-hot labels; train_on_batch, jit_compile=False",
        "warmup_seconds": warm,
        "train_images_per_s": {},
        "pipeline_images_per_s": {},
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
    }
    for name, values in per_round.items():
        entry = {"median": float(np.median(values)), "min": float(min(values)),
                 "max": float(max(values)), "per_round": values}
        if REFERENCE_MODEL in per_round:
            ratios = [v / ref for v, ref in zip(values, per_round[REFERENCE_MODEL])]
            entry["ratio_to_reference"] = float(np.median(ratios))
            entry["ratio_range"] = [float(min(ratios)), float(max(ratios))]
        out["train_images_per_s"][name] = entry
    for key, values in pipe_round.items():
        shape = list(data[key]["x_train"].shape[1:])
        out["pipeline_images_per_s"][key] = {
            "median": float(np.median(values)), "min": float(min(values)),
            "max": float(max(values)), "image_shape": shape,
            "what": "ImageBatches.__getitem__: gather, pad-4 crop, flip, "
                    "float32 cast, one-hot (one thread)"}
    compiled.clear()
    gc.collect()
    return out


def layer_kinds(model):
    """Layer name -> a coarse kind, for grouping profiler ops."""
    import keras

    from mdnet_keras.layers import (DifferentialAttention,
                                    MultiScaleChannelConv, StandardAttention)

    kinds = {}
    for layer in model.layers:
        if isinstance(layer, MultiScaleChannelConv):
            kind = ("depthwise conv (multi-scale split)"
                    if len(layer.kernel_sizes) > 1 else "depthwise conv")
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kind = "depthwise conv"
        elif isinstance(layer, (DifferentialAttention, StandardAttention)):
            kind = "attention"
        elif isinstance(layer, keras.layers.Conv2D):
            kind = (f"conv {layer.kernel_size[0]}x{layer.kernel_size[1]}")
        elif isinstance(layer, keras.layers.BatchNormalization):
            kind = "batch norm"
        elif isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            kind = "activation"
        elif isinstance(layer, keras.layers.Dense):
            kind = "dense"
        elif isinstance(layer, keras.layers.Add):
            kind = "add"
        elif isinstance(layer, keras.layers.Reshape):
            kind = "reshape"
        else:
            kind = "other layers"
        kinds[layer.name] = kind
    return kinds


def kind_of_op(op_name, kinds):
    import re

    lowered = op_name.lower()
    for segment in op_name.split("/"):
        for candidate in (segment, re.sub(r"_\d+$", "", segment)):
            if candidate in kinds:
                return kinds[candidate]
    if "adamw" in lowered or "assignvariableop" in lowered or (
            "optimizer" in lowered):
        return "optimizer (AdamW)"
    if "loss" in lowered or "categorical" in lowered:
        return "loss and metrics"
    return "other ops"


def op_profile_entry(name, data, budget):
    """TF profiler self time of a few training steps, grouped."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import \
        _pywrap_profiler_plugin as plugin

    batch = budget["batch_size"]
    cifar = data["cifar10"]
    num_classes = cifar["num_classes"]
    idx = np.random.default_rng(0).choice(
        len(cifar["x_train"]), batch, replace=len(cifar["x_train"]) < batch)
    x = cifar["x_train"][idx].astype("float32")
    y = np.eye(num_classes, dtype="float32")[cifar["y_train"][idx]]
    model = compiled_for_throughput(name, x.shape[1:], num_classes)
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    steps = budget["op_profile_steps"]
    logdir = tempfile.mkdtemp(prefix="mdnet_opprof_")
    try:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        wall = time.perf_counter() - started
        tf.profiler.experimental.stop()
        files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                          recursive=True)
        raw = plugin.xspace_to_tools_data(files, "framework_op_stats", {})
        table = json.loads(raw[0])[0]
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    columns = [c["id"] for c in table["cols"]]
    rows = [dict(zip(columns, [c.get("v") for c in row["c"]]))
            for row in table["rows"]]
    rows = [r for r in rows if r["type"] != "IDLE"]
    kinds = layer_kinds(model)
    by_kind, by_type, by_kind_type = {}, {}, {}
    for r in rows:
        self_us = float(r["total_self_time"]) / steps
        kind = kind_of_op(r["operation"], kinds)
        op_type = r["type"].replace("_MklNative", "").replace("_Mkl", "")
        by_kind[kind] = by_kind.get(kind, 0.0) + self_us
        by_type[op_type] = by_type.get(op_type, 0.0) + self_us
        key = f"{kind} | {op_type}"
        by_kind_type[key] = by_kind_type.get(key, 0.0) + self_us
    total = sum(by_kind.values())

    def top(d, n):
        items = sorted(d.items(), key=lambda kv: -kv[1])[:n]
        return [{"name": k, "ms_per_step": round(v / 1000, 2),
                 "share": round(v / total, 4)} for k, v in items]

    return {
        "batch_size": batch,
        "steps": steps,
        "wall_ms_per_step_while_profiling": round(1000 * wall / steps, 1),
        "op_self_ms_per_step": round(total / 1000, 1),
        "rows_read": len(rows),
        "rows_truncated": len(table["rows"]) >= 500,
        "by_kind": top(by_kind, 20),
        "by_op_type": top(by_type, 15),
        "by_kind_and_op_type": top(by_kind_type, 20),
        "note": "TensorFlow profiler framework_op_stats, self time on the "
                "host CPU (oneDNN kernels), divided by the steps profiled",
    }


# ---------------------------------------------------------------------------
# 3. Accuracy under one budget
# ---------------------------------------------------------------------------


def weights_file(tmp_dir, name, dataset, seed):
    return os.path.join(tmp_dir, f"{name}_{dataset}_seed{seed}.weights.h5")


def train_entry(name, key, d, seed, budget, epochs, tmp_dir, clock,
                batch=None):
    import keras

    from benchmarks.baselines import build_model
    from mdnet_keras.data import ImageBatches
    from mdnet_keras.training import recipe

    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy("float32")
    shape = d["x_train"].shape[1:]
    model = build_model(name, shape, d["num_classes"])
    batch = batch or budget["batch_size"]
    train = ImageBatches(d["x_train"], d["y_train"], d["num_classes"],
                         batch_size=batch, shuffle=True, augment=True,
                         seed=seed)
    steps = len(train)
    total = steps * epochs
    warmup = int(round(budget["warmup_epochs"] * steps))
    peak = recipe.scaled_learning_rate(budget["learning_rate"], batch)
    schedule = recipe.learning_rate_schedule(peak, total, warmup)
    optimizer = recipe.make_optimizer(model, schedule, recipe.WEIGHT_DECAY)
    recipe.compile_model(model, optimizer, d["num_classes"],
                         label_smoothing=recipe.LABEL_SMOOTHING,
                         jit_compile=False)

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            clock.log(f"    {name} {key} seed {seed}: epoch {epoch + 1}/"
                      f"{epochs} loss {logs.get('loss', float('nan')):.3f} "
                      f"train top1 {logs.get('top1', float('nan')):.3f}")

    started = time.time()
    history = model.fit(train, epochs=epochs, shuffle=False, verbose=0,
                        callbacks=[Progress()])
    train_seconds = time.time() - started
    started = time.time()
    probs = model.predict(d["x_test"].astype("float32"), batch_size=250,
                          verbose=0)
    eval_seconds = time.time() - started
    pred = probs.argmax(-1)
    top1 = float((pred == d["y_test"]).mean())
    os.makedirs(tmp_dir, exist_ok=True)
    model.save_weights(weights_file(tmp_dir, name, key, seed))
    np.save(os.path.join(tmp_dir, f"{name}_{key}_seed{seed}_pred.npy"), pred)
    loss = history.history.get("loss", [float("nan")])
    return {
        "top1": top1,
        "correct": int((pred == d["y_test"]).sum()),
        "test_images": int(len(d["y_test"])),
        "train_images": int(len(d["y_train"])),
        "epochs": epochs,
        "batch_size": batch,
        "steps": total,
        "final_train_loss": float(loss[-1]),
        "final_train_top1": float(history.history.get("top1", [np.nan])[-1]),
        "train_seconds": round(train_seconds, 1),
        "train_images_per_s_in_fit": round(
            epochs * len(d["y_train"]) / train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "peak_learning_rate": peak,
        "warmup_steps": warmup,
    }


def recipe_facts(budget):
    from mdnet_keras.training import recipe

    return {
        "loss": f"categorical cross-entropy, label smoothing "
                f"{recipe.LABEL_SMOOTHING}",
        "optimizer": f"AdamW, weight decay {recipe.WEIGHT_DECAY} (not on "
                     "norms, biases, attention lambdas)",
        "schedule": f"linear warm-up {budget['warmup_epochs']} epoch, cosine "
                    "decay to 0 (mdnet_keras.training.recipe)",
        "peak_learning_rate": recipe.scaled_learning_rate(
            budget["learning_rate"], budget["batch_size"]),
        "batch_size": budget["batch_size"],
        "augmentation": "ImageBatches: zero-pad H/8 random crop + horizontal "
                        "flip; no MixUp/CutMix/RandAugment",
        "regularisation": "each model's own dropout (MDNet and MobileNetV2 "
                          "0.2 before the classifier, ResNet none); MDNet "
                          "drop path 0",
        "precision": "float32, jit_compile off, TensorFlow backend, CPU",
    }


# ---------------------------------------------------------------------------
# 4. TFLite
# ---------------------------------------------------------------------------


def op_types(tflite_bytes):
    from mdnet_keras.export import describe_ops

    counts = {}
    for op in describe_ops(tflite_bytes):
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    return counts


def run_tflite_top1(tflite_bytes, x, y, num_threads=2):
    from mdnet_keras.export import LiteRTRunner

    runner = LiteRTRunner(tflite_bytes, num_threads=num_threads)
    pred = runner.predict(x).argmax(-1)
    return pred, float((pred == y).mean())


def cifar_trained_model(name, d, tmp_dir):
    """The float32 model trained in the CIFAR-10 accuracy entry (seed 0)."""
    import keras

    from benchmarks.baselines import build_model

    keras.mixed_precision.set_global_policy("float32")
    model = build_model(name, d["x_train"].shape[1:], d["num_classes"])
    model.load_weights(weights_file(tmp_dir, name, "cifar10", 0))
    return model


def tflite_entry(name, mode, d, budget, tmp_dir):
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import xnnpack_partitions

    model = cifar_trained_model(name, d, tmp_dir)
    started = time.time()
    tflite_bytes = convert_model(
        model, mode, rep_images=d["x_train"] if mode == "int8" else None,
        num_calibration=budget["calibration_images"])
    convert_seconds = time.time() - started
    path = os.path.join(tmp_dir, f"{name}_{mode}.tflite")
    with open(path, "wb") as f:
        f.write(tflite_bytes)
    out = {
        "size_bytes": len(tflite_bytes),
        "convert_seconds": round(convert_seconds, 1),
        "op_types": op_types(tflite_bytes),
        "xnnpack": xnnpack_partitions(tflite_bytes),
    }
    if mode == "int8":
        n = budget["int8_eval_images"]
        x, y = d["x_test"][:n], d["y_test"][:n]
        started = time.time()
        pred, top1 = run_tflite_top1(tflite_bytes, x, y)
        float_pred = np.load(os.path.join(
            tmp_dir, f"{name}_cifar10_seed0_pred.npy"))[:n]
        out.update({
            "top1": top1,
            "float_top1_keras": float((float_pred == y).mean()),
            "eval_images": int(len(y)),
            "argmax_agreement_with_float": float((pred == float_pred).mean()),
            "calibration_images": budget["calibration_images"],
            "eval_seconds": round(time.time() - started, 1),
        })
        out["drop_points"] = 100 * (out["float_top1_keras"] - top1)
    return out


def latency_entry(models, budget, tmp_dir, clock):
    """Batch-1 latency of every (model, mode, threads), in rounds."""
    from ai_edge_litert.interpreter import Interpreter

    configs = []
    for name in models:
        for mode in TFLITE_MODES:
            path = os.path.join(tmp_dir, f"{name}_{mode}.tflite")
            if not os.path.exists(path):
                continue
            with open(path, "rb") as f:
                content = f.read()
            for threads in THREADS:
                it = Interpreter(model_content=content, num_threads=threads)
                it.allocate_tensors()
                detail = it.get_input_details()[0]
                x = np.zeros(detail["shape"], detail["dtype"])
                it.set_tensor(detail["index"], x)
                for _ in range(budget["latency_warmup"]):
                    it.invoke()
                configs.append((name, mode, threads, it))
    times = {(n, m, t): [] for n, m, t, _ in configs}
    per_round = budget["latency_runs"] // budget["latency_rounds"]
    for r in range(budget["latency_rounds"]):
        for name, mode, threads, it in configs:
            samples = times[(name, mode, threads)]
            for _ in range(per_round):
                started = time.perf_counter()
                it.invoke()
                samples.append(time.perf_counter() - started)
        clock.log(f"  latency round {r + 1}/{budget['latency_rounds']}")
    out = {}
    for (name, mode, threads), samples in times.items():
        ms = np.array(samples) * 1000
        out.setdefault(name, {}).setdefault(mode, {})[str(threads)] = {
            "median_ms": float(np.median(ms)),
            "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)),
            "runs": int(len(ms)),
        }
    return {
        "results": out,
        "runs_per_config": per_round * budget["latency_rounds"],
        "rounds": budget["latency_rounds"],
        "method": "ai-edge-litert Interpreter (default resolver: XNNPACK "
                  "where it applies), batch 1, zero input, invoke() timed "
                  "with perf_counter; every (model, mode, threads) in turn "
                  "each round",
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
    }


# ---------------------------------------------------------------------------
# 5. TFLite Micro
# ---------------------------------------------------------------------------


def micro_entry(name, d, budget, tmp_dir):
    """Arena and flash of the int8 model a microcontroller gets.

    That is the convert command's `--micro_out` model: the large depthwise
    kernels stay whole (the pieces that XNNPACK needs only cost arena in
    TFLite Micro), so it is converted here rather than read from the int8
    entry.
    """
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import micro

    content = convert_model(
        cifar_trained_model(name, d, tmp_dir), "int8",
        rep_images=d["x_train"], num_calibration=budget["calibration_images"],
        max_depthwise_taps=None)
    try:
        arena = micro.find_min_arena(content)
    except Exception as e:  # unsupported op, or no TFLM wheel
        return {"error": f"{type(e).__name__}: {str(e)[:300]}",
                "flash_bytes": len(content)}
    return {
        "arena_bytes": int(arena),
        "flash_bytes": len(content),
        "ops": micro.model_ops(content),
        "host": "x86-64 TFLM Python wheel (smallest arena that allocates, "
                "by bisection)",
    }


# ---------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------


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
    command = "python benchmarks/run.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    run_suite(args.suite, models, args.out, args.deadline_minutes, args.fresh,
              command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
