"""Host-side cost per training step of the CLI's loop, against bare `fit`.

    python benchmarks/host_overhead.py [--backends=tensorflow,jax] \
        [--rounds=3] [--images=N] [--real_model=mdnet_micro] \
        [--data=cifar10.npz] \
        [--bn_recalibration_batches=N] [--steps_per_execution=1,20] \
        [--out=...] [--quick]

A fast accelerator finishes MDNet's training step in a few milliseconds, so
whatever the training loop does on the host per step (callbacks, the input
pipeline's NumPy augmentation, copies) decides the step time there. This
measures that cost without an accelerator: the model's compute is made
negligible (global pooling and one `Dense`, batch 256), and these arms train
it side by side, in interleaved rounds, in one process per backend:

- `cli`: `mdnet_keras.training.run.train` (what `python -m mdnet_keras
  train` runs: every callback, crop + flip, weight EMA; its input is
  `ImageBatches`, served on TensorFlow as a `tf.data` pipeline of the same
  batches, `--input_pipeline=auto`);
- `bare_pipeline`: `model.fit` on the same `ImageBatches`, no callbacks;
- `bare_tf_data` (on TensorFlow): `model.fit` on the `tf.data` pipeline of
  the same batches (`mdnet_keras.data.tf_input`), with only the callback
  that sets its epoch; the CLI reads that pipeline, so `cli / bare_tf_data`
  is what the CLI's own callbacks cost. Not on other backends: there the
  CLI reads the `ImageBatches`, and once a JAX process has run `fit` on a
  `tf.data` pipeline, every later arm in it ran 2 to 3 times slower a step
  (benchmarks/results/host_overhead);
- `bare_arrays`: `model.fit` on NumPy arrays, no callbacks, no augmentation;
- `compiled_step`: the model's compiled training step called in a Python
  loop on one batch already in memory (`tf.function` / `jax.jit` of
  `train_step`, as `fit` compiles it): the step's own compute and dispatch,
  with no input pipeline and no `fit` loop. On a CPU the "negligible" model
  still costs a millisecond or two a step, so the host overhead reported is
  `cli` minus this arm.

All arms use the recipe's optimizer (SGD-Nesterov with EMA), loss and
`jit_compile` choice. A step's time is an epoch's training time (from
`on_epoch_begin` to the validation's `on_test_begin`) over its steps, the
median over epochs after the first (which compiles) and over rounds. An
epoch is all of the training images unless `--images` says fewer: what
starts once an epoch (the input pipeline's iterator and its plan of the
epoch's crops) then weighs per step as it does in training.
`--real_model` adds the same arms with a real MDNet variant, for the
CLI / bare-fit epoch-time ratio (with fewer `--images` on a CPU, where its
epoch of all CIFAR-10 takes minutes). `--bn_recalibration_batches` sets the CLI
arm's per-epoch BatchNorm re-estimation for the averaged weights (the loop's
default otherwise), which runs inside the timed window since it is part of
the epoch's end. `--steps_per_execution` (a list) runs every arm once per
value in the same rounds (Keras' `compile(steps_per_execution=...)`, the
CLI's `--steps_per_execution`): the steps one compiled call of `fit` runs,
so `fit`'s own per-step host work is paid once per call. `--data` reads
another copy of CIFAR-10 (say one carried to a GPU machine). Results:
`<out>/host_overhead.json` and `.md`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CIFAR10_NPZ = os.path.join(os.path.dirname(ROOT), "shared", "data",
                           "cifar10.npz")
BATCH_SIZE = 256
ARMS = ("cli", "bare_pipeline", "bare_tf_data", "bare_arrays",
        "compiled_step")
# The arms the CLI's step is divided by: whole `fit` loops.
BARE_ARMS = tuple(a for a in ARMS if a.startswith("bare"))


def arms_for(backend):
    """The arms timed on `backend` (`bare_tf_data` on TensorFlow only)."""
    return tuple(a for a in ARMS
                 if a != "bare_tf_data" or backend == "tensorflow")


def tiny_model(input_shape, num_classes):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(
        1 / 255)(inputs))
    outputs = keras.layers.Dense(num_classes, activation="softmax",
                                 name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


def make_timer():
    """A callback recording each epoch's training seconds (no batch hooks,
    which would stop Keras dispatching steps asynchronously)."""
    import keras

    class TrainTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self._start = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_test_begin(self, logs=None):
            if self._start is not None:
                self.seconds.append(time.perf_counter() - self._start)
                self._start = None

    return TrainTimer()


def step_seconds(timer, steps):
    import numpy as np

    steady = timer.seconds[1:] or timer.seconds
    return float(np.median(steady)) / steps


def compiled_step_seconds(model, x, y, calls):
    """Seconds per call of `model`'s compiled training step on one batch.

    The model is built by one `fit` step first (optimizer and metric
    variables); then `calls` calls run back to back, dispatched
    asynchronously as `fit` dispatches them, and the time runs until the
    last one's results are ready.

    Args:
        model: a compiled Keras model.
        x: float32 images, one batch.
        y: its one-hot labels.
        calls: int, the timed calls.

    Returns:
        float, seconds a call.
    """
    import keras

    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        data = (tf.constant(x), tf.constant(y))
        train_step = tf.function(model.train_step,
                                 jit_compile=bool(model.jit_compile))

        def step(state):
            return train_step(data), state

        def wait(logs, state):
            return [v.numpy() for v in tf.nest.flatten(logs)]
        state = None
    elif backend == "jax":
        import jax

        data = (jax.numpy.asarray(x), jax.numpy.asarray(y))
        # Donated as `fit` donates it; the model is not used afterwards.
        train_step = jax.jit(model.train_step, donate_argnums=0)

        def step(state):
            return train_step(state, data)

        def wait(logs, state):
            return jax.block_until_ready((logs, state))
        # Copies: a weight average can start as the very buffer of the
        # weight it averages, and one buffer cannot be donated twice.
        state = tuple([jax.numpy.array(v.value, copy=True) for v in variables]
                      for variables in (
                          model.trainable_variables,
                          model.non_trainable_variables,
                          model.optimizer.variables, model.metrics_variables))
    else:
        raise ValueError(f"no compiled step for the {backend} backend")
    logs, state = step(state)  # compiles
    wait(logs, state)
    start = time.perf_counter()
    for _ in range(calls):
        logs, state = step(state)
    wait(logs, state)
    return (time.perf_counter() - start) / calls


def worker(args):
    """One backend: every arm in turn, `rounds` times; prints JSON."""
    import keras
    import numpy as np

    from benchmarks.suite_data import balanced_subset
    from mdnet_keras.data import ImageBatches
    from mdnet_keras.data import load_dataset
    from mdnet_keras.training import recipe
    from mdnet_keras.training import run
    from mdnet_keras.training.batchnorm import DEFAULT_BATCHES

    source = args.data if os.path.exists(args.data) else None
    data = (load_dataset("cifar10", data=source) if source
            else load_dataset("sample"))
    # Class-balanced: CIFAR's arrays are sorted by class.
    train = balanced_subset(data.y_train,
                            min(args.images or len(data.y_train),
                                len(data.y_train)), 0)
    val = balanced_subset(data.y_test, BATCH_SIZE, 0)
    n = len(train)
    x, y = data.x_train[train], data.y_train[train]
    x_val, y_val = data.x_test[val], data.y_test[val]
    tmp = tempfile.mkdtemp(prefix="host_overhead_")
    subset = os.path.join(tmp, "subset.npz")
    np.savez(subset, x_train=x, y_train=y, x_test=x_val, y_test=y_val)
    classes = data.num_classes
    one_hot = np.eye(classes, dtype="float32")
    steps = n // BATCH_SIZE
    jit = recipe.default_jit_compile()
    fast = recipe.RECIPES["fast"]
    ema = recipe.ema_momentum_for(fast.ema_fraction, steps * args.epochs)

    def compiled(build, steps_per_call):
        model = build(data.image_shape, classes)
        optimizer = recipe.make_optimizer(
            model, fast.learning_rate, fast.weight_decay,
            optimizer=fast.optimizer, momentum=fast.momentum,
            ema_momentum=ema)
        return recipe.compile_model(model, optimizer, classes,
                                    fast.label_smoothing, jit, steps_per_call)

    def arm(name, build, model_name, round_index, steps_per_call):
        timer = make_timer()
        if name == "cli":
            config = dict(dataset="npz", data=subset, model=model_name,
                          recipe="fast", epochs=args.epochs,
                          warmup_epochs=0, batch_size=BATCH_SIZE,
                          ema_momentum=ema, verbose=0,
                          steps_per_execution=steps_per_call,
                          out=os.path.join(tmp, f"{model_name}-{round_index}-"
                                                f"{steps_per_call}"))
            if args.bn_recalibration_batches is not None:
                config["bn_recalibration_batches"] = (
                    args.bn_recalibration_batches)
            run.train(config, build_model=build, callbacks=[timer])
        elif name in ("bare_pipeline", "bare_tf_data"):
            batches = ImageBatches(x, y, classes, batch_size=BATCH_SIZE,
                                   drop_remainder=True)
            val = ImageBatches(x_val, y_val, classes, batch_size=BATCH_SIZE,
                               shuffle=False, augment=False)
            extra = []
            if name == "bare_tf_data":
                from mdnet_keras.data import tf_input

                extra = [tf_input.ServeEpoch(batches)]
                batches, val = (tf_input.as_tf_dataset(batches),
                                tf_input.as_tf_dataset(val))
            compiled(build, steps_per_call).fit(batches, validation_data=val,
                                epochs=args.epochs, shuffle=False,
                                callbacks=[timer, *extra], verbose=0)
        elif name == "compiled_step":
            # The step itself does not depend on the steps a call.
            return compiled_step_seconds(
                compiled(build, 1), x[:BATCH_SIZE].astype("float32"),
                one_hot[y[:BATCH_SIZE]], steps * (args.epochs - 1))
        else:
            compiled(build, steps_per_call).fit(
                x.astype("float32"), one_hot[y], batch_size=BATCH_SIZE,
                validation_data=(x_val.astype("float32"), one_hot[y_val]),
                epochs=args.epochs, callbacks=[timer], verbose=0)
        return step_seconds(timer, steps)

    models = [("tiny", tiny_model, "tiny")]
    if args.real_model:
        from mdnet_keras.models import MDNet

        def real(shape, num_classes):
            return MDNet(shape, num_classes, variant=args.real_model)

        models.append((args.real_model, None, args.real_model))
    results = {}
    arms = arms_for(keras.backend.backend())
    calls = [int(v) for v in str(args.steps_per_execution).split(",")]
    for label, build, model_name in models:
        runs = [(f"{label}, {c} steps a call" if c != 1 else label, c)
                for c in calls]
        per_arm = {key: {name: [] for name in arms} for key, _ in runs}
        for round_index in range(args.rounds):
            for key, steps_per_call in runs:
                for name in arms:
                    chosen = build or (real if name != "cli" else None)
                    per_arm[key][name].append(arm(
                        name, chosen, model_name, round_index,
                        steps_per_call))
        for key, _ in runs:
            results[key] = {
                "step_ms": {k: [round(1e3 * v, 3) for v in values]
                            for k, values in per_arm[key].items()},
                "median_step_ms": {
                    k: round(1e3 * float(np.median(v)), 3)
                    for k, v in per_arm[key].items()},
            }
            median = results[key]["median_step_ms"]
            for other in (a for a in arms if a in BARE_ARMS):
                results[key][f"cli_over_{other}"] = round(
                    median["cli"] / median[other], 3)
            results[key]["host_ms"] = round(
                median["cli"] - median["compiled_step"], 3)
    print("RESULT " + json.dumps({
        "backend": keras.backend.backend(), "keras": keras.__version__,
        "jit_compile": jit, "images": n, "steps_per_epoch": steps,
        "batch_size": BATCH_SIZE, "epochs_per_run": args.epochs,
        "rounds": args.rounds, "steps_per_execution": calls,
        "cli_bn_recalibration_batches": (
            DEFAULT_BATCHES if args.bn_recalibration_batches is None
            else args.bn_recalibration_batches),
        "data": (("CIFAR-10 (JPEG copy), ../shared/data/cifar10.npz"
                  if source == CIFAR10_NPZ else
                  f"CIFAR-10, {os.path.relpath(source, ROOT)}")
                 + ", class-balanced subset" if source
                 else "the package sample"),
        "models": results}))


def write_markdown(report, path):
    from benchmarks.suite_results import describe_machine

    lines = [
        "# Host-side cost per training step: the CLI's loop against bare "
        "`fit`", "",
        f"Command: `{report['command']}`. Machine: "
        f"{describe_machine(report['machine'])}. "
        "Batch 256; a step is an epoch's training time over its steps "
        "(median of the epochs after the first and of the rounds).", "",
        "| backend | model | cli BN re-estimation batches | cli ms/step "
        "| bare fit on ImageBatches | bare fit on tf.data | bare fit on "
        "arrays | compiled step alone | cli / bare ImageBatches | cli / bare "
        "tf.data | cli / bare arrays | host overhead (cli - compiled step) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(value):
        # Older reports, and runs without TensorFlow, lack some arms.
        return "-" if value is None else f"{value:.2f}"

    for backend in report["backends"]:
        for model, r in backend["models"].items():
            m = r["median_step_ms"]
            # Older reports did not record it.
            bn = backend.get("cli_bn_recalibration_batches", "-")
            lines.append(
                f"| {backend['backend']} | {model} | {bn} | {m['cli']:.2f} | "
                + " | ".join(cell(m.get(a)) for a in ARMS[1:]) + " | "
                + " | ".join(cell(r.get(f"cli_over_{a}")) for a in BARE_ARMS)
                + f" | {cell(r.get('host_ms'))} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def worker_environment(backend):
    """The environment of a backend's worker: this one's, with the backend
    set and the repository first on the path (packages installed by path,
    such as wheels unpacked into a folder, stay importable)."""
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH"))
                           if p)
    return dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=None,
                        help="training images, an epoch (default: all of "
                             "them, so the per-epoch costs weigh per step "
                             "as in training; a real model wants fewer)")
    parser.add_argument("--real_model", default=None)
    parser.add_argument("--data", default=CIFAR10_NPZ,
                        help="CIFAR-10 .npz (the package sample where it "
                             "is missing)")
    parser.add_argument("--bn_recalibration_batches", type=int, default=None,
                        help="the CLI arm's option (default: the loop's)")
    parser.add_argument("--steps_per_execution", default="1",
                        help="comma-separated: every arm once per value, "
                             "in the same rounds")
    parser.add_argument("--out", default=os.path.join(
        ROOT, "benchmarks", "results", "host_overhead"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", action="store_true",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.images = 1, 2, 2 * BATCH_SIZE
    if args.data != CIFAR10_NPZ and not os.path.exists(args.data):
        # Only the shared copy's absence falls back to the package sample.
        parser.error(f"--data={args.data} does not exist.")
    if args.worker:
        return worker(args)
    from benchmarks.suite_results import command_line
    from benchmarks.suite_results import machine_info

    report = {"command": command_line(__file__, argv),
              "machine": machine_info(), "backends": []}
    passed = [a for a in (argv if argv is not None else sys.argv[1:])
              if not a.startswith("--backends")]
    for backend in args.backends.split(","):
        env = worker_environment(backend)
        done = subprocess.run([sys.executable, os.path.abspath(__file__),
                               "--worker", *passed], env=env,
                              capture_output=True, text=True)
        line = next((text for text in done.stdout.splitlines()
                     if text.startswith("RESULT ")), None)
        if done.returncode or line is None:
            raise RuntimeError(f"{backend} worker failed:\n"
                               f"{(done.stdout + done.stderr)[-3000:]}")
        report["backends"].append(json.loads(line[len("RESULT "):]))
        # Each backend's figures are written as it finishes: a real model's
        # worker can run for an hour.
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "host_overhead.json"), "w",
                  encoding="utf-8") as f:
            json.dump(report, f, indent=1)
        write_markdown(report, os.path.join(args.out, "host_overhead.md"))
    return report


if __name__ == "__main__":
    main()
