"""TFLite conversions of the trained models (size, ops, XNNPACK partitions,
int8 top-1), batch-1 latency side by side in rounds, and the TFLite Micro
arena and flash."""

import os
import time

import numpy as np

from benchmarks.suite_accuracy import weights_file



TFLITE_MODES = ("float32", "dynamic", "int8")


THREADS = (1, 2)


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


def latency_entry(models, budget, tmp_dir, clock, modes=TFLITE_MODES):
    """Batch-1 latency of every (model, mode, threads), in rounds."""
    from ai_edge_litert.interpreter import Interpreter

    configs = []
    for name in models:
        for mode in modes:
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


def micro_entry(name, d, budget, tmp_dir):
    """Arena and flash of the int8 model a microcontroller gets.

    What the convert command's `--micro_out` makes: MDNet in its graph form
    for TFLite Micro (`micro_graph`; other models as they are), the large
    depthwise kernels whole (the pieces that XNNPACK needs only cost arena
    in TFLite Micro), and the flatbuffer as the app compiles it in
    (`micro_model`), so it is converted here rather than read from the int8
    entry.
    """
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import micro
    from mdnet_keras.export import micro_app
    from mdnet_keras.export import micro_model

    content = convert_model(
        cifar_trained_model(name, d, tmp_dir), "int8",
        rep_images=d["x_train"], num_calibration=budget["calibration_images"],
        max_depthwise_taps=None, micro_graph=True)
    try:
        compiled_in, _ = micro_model(content)
        arena = micro.find_min_arena(compiled_in)
    except Exception as e:  # unsupported op, or no TFLM wheel
        return {"error": f"{type(e).__name__}: {str(e)[:300]}",
                "flash_bytes": len(content)}
    return {
        "arena_bytes": int(arena),
        "flash_bytes": len(compiled_in),
        "ops": micro_app.model_ops(compiled_in),
        "host": "x86-64 TFLM Python wheel (smallest arena that allocates, "
                "by bisection)",
    }
