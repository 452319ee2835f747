"""Profile (parameters, MACs, activation memory), training throughput side
by side in rounds, and the per-op profile of training steps."""

import gc
import glob
import json
import math
import os
import shutil
import tempfile
import time

import numpy as np



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
