"""`train(config)`: one training run in one run folder, that survives a kill.

The run folder (`config.out`) holds:

- `config.json`: the resolved configuration and facts of the run (classes,
  replicas, global batch, peak learning rate, steps, backend);
- `labels.txt`: one class name per line, in class-index order;
- `history.csv`: one row per finished epoch (`CSVLogger(append=True)`),
  with the learning rate at the end of the epoch;
- `best.keras` (highest `val_top1` on the validation images held out of the
  training images, with `best.json`), `last.keras` (both written atomically)
  and `model.weights.h5` (the final weights without optimizer state: what
  gets shipped); with a weight EMA, all three hold the averaged weights
  (with BatchNorm statistics re-estimated for them, see
  `batchnorm.AveragedBatchNormStatistics`);
- `logs/`: TensorBoard logs (TensorFlow installed only);
- `metrics.json`: top-1, top-5, per-class precision / recall / F1 and the
  confusion matrix of the final model on the test split, and the test
  top-1 / top-5 of `best.keras` under `best`;
- `history.png`, `confusion_matrix.png`;
- `status.json`: `running`, `finished` or `diverged`;
- `backup_*/`: `BackupAndRestore(double_checkpoint=True)` state while the
  run is unfinished;
- `run.lock`: held by the training process (not by multi-worker runs), so a
  second run into the folder is refused while the first runs.

Resume: re-running the same configuration on an unfinished folder (killed,
even mid-epoch) restores the weights, the optimizer (so `iterations`, hence
the learning-rate schedule) and the epoch from `backup/`, drops rows of
`history.csv` from epochs that will be re-run, restores the best
`val_top1` as the best-model saver's threshold, and puts the
input pipeline on the same epoch's shuffle and augmentation. The backup is
written last at each epoch end, after every other artefact.

A non-finite loss (or non-finite weights at an epoch end) raises
`TrainingDivergedError` before anything of that epoch is written, so
`last.keras`, `best.keras` and the backup keep the last good epoch.

Distributed training uses the existing engines: `tf.distribute`
(`MirroredStrategy`, `MultiWorkerMirroredStrategy` from `TF_CONFIG`, see
`distribution.multi_worker_strategy`) under
TensorFlow, `keras.distribution.DataParallel` under JAX. `batch_size` is the
global batch (split over replicas); the peak learning rate is
`learning_rate * batch_size / 128` unless `scale_learning_rate=False`. A
multi-worker run resumes every worker from the chief's backup (its run
folder must be one all workers see); a worker that dies makes the others
raise `WorkerLostError`, and re-running every worker resumes.
"""

import dataclasses
import json
import os
import shutil
import time

import keras

from mdnet_keras.training import batchnorm
from mdnet_keras.training import evaluation
from mdnet_keras.training import recipe
from mdnet_keras.training import callbacks as run_callbacks
from mdnet_keras.training import config as config_lib
from mdnet_keras.training import distribution
from mdnet_keras.training import inputs
from mdnet_keras.training import run_folder


HEAD_LAYERS = ("predictions",)


def resolve_jit_compile(value):
    if value == "auto":
        return recipe.default_jit_compile()
    return value == "true"


def resolve_steps_per_execution(value, steps_per_epoch):
    if value == "auto":
        return recipe.default_steps_per_execution(steps_per_epoch)
    return int(value)


def set_backbone_trainable(model, trainable):
    """Sets `trainable` on every layer but the classifier (`HEAD_LAYERS`)."""
    for layer in model.layers:
        if layer.name not in HEAD_LAYERS:
            layer.trainable = trainable


def build_model(config, dataset):
    from mdnet_keras.models import MDNet

    return MDNet(
        input_shape=dataset.image_shape,
        num_classes=dataset.num_classes,
        variant=config.model,
        attention=config.attention,
        dropout_rate=config.dropout_rate,
        drop_path_rate=config.drop_path_rate,
        stem_strides=config.stem_strides,
        weights=config.init_from,
        **config.model_config,
    )


def phases_left(phases, out):
    """The phases a (resumed) run still has to train, and where they start.

    A run killed in a later phase has that phase's backup: the phases before
    it are done, and re-running them would make their resume trim the later
    phase's rows from `history.csv`.

    Args:
        phases: list of `(name, end_epoch, trainable)`, in order.
        out: the run folder.

    Returns:
        `(phases to run, the first one's start epoch)`.
    """
    for index in range(len(phases) - 1, 0, -1):
        backup = os.path.join(out, f"backup_{phases[index][0]}",
                              "training_metadata.json")
        if os.path.exists(backup):
            return phases[index:], phases[index - 1][1]
    return phases, 0


def train(config=None, build_model=None, callbacks=None, **overrides):
    """Trains an MDNet as `config` says, in the run folder `config.out`.

    Args:
        config: a `TrainConfig` or a dict of its fields (None: all defaults,
            i.e. a short run on the embedded CIFAR-10 sample).
        build_model: optional callable `(input_shape, num_classes) ->
            keras.Model` that builds another model in MDNet's place (the
            benchmarks train their baselines with it); `config.model` then
            only names it.
        callbacks: optional list of extra `keras.callbacks.Callback`s,
            called after the run's own at every hook.
        **overrides: fields to set on top of `config`.

    Returns:
        dict: `out` (the run folder), `metrics` (as in `metrics.json`),
        `history` (per-epoch values from `history.csv`), `resumed`.

    Raises:
        ValueError: bad configuration (unknown data set / model / strategy,
            missing `TF_CONFIG` for `multi_worker`, ...).
        RunFolderError: `out` holds a finished run (pass `overwrite=True`)
            or another configuration's run.
        TrainingDivergedError: the loss became NaN or infinite; the last
            good epoch's `last.keras`, `best.keras` and backup are kept.
        WorkerLostError: another worker of a multi-worker run stopped; the
            message names it and the epoch a re-run resumes from.
    """
    started = time.time()
    config = config_lib.resolve_config(config, custom_model=build_model is not None,
                            **overrides)
    if config.strategy == "multi_worker":
        distribution.check_multi_worker_environment(keras.backend.backend())
    resumed = run_folder.prepare_run_folder(config)
    out = config.out
    locked = config.strategy != "multi_worker"
    if locked:
        run_folder.acquire_lock(out)
    print(f"Run folder: {os.path.abspath(out)}"
          + (" (resuming)" if resumed else ""))

    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(
        f"mixed_{config.mixed_precision_dtype}" if config.mixed_precision
        else "float32")
    try:
        return _train(config, out, resumed, started, build_model,
                      list(callbacks or []))
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if locked:
            run_folder.release_lock(out)


def _train(config, out, resumed, started, custom_builder=None,
           extra_callbacks=()):
    make_scope, num_replicas, is_chief = distribution.set_up_distribution(config.strategy)
    # Every worker resumes from the chief's backup (the run folder must be
    # one that all workers see).
    chief_out = out
    if not is_chief:
        out = os.path.join(out, "workers", distribution.worker_name())
        os.makedirs(out, exist_ok=True)
    if config.batch_size % num_replicas:
        raise ValueError(
            f"--batch_size={config.batch_size} (the global batch) must be a "
            f"multiple of the {num_replicas} replicas."
        )

    dataset = inputs.load_data(config)
    jit_compile = resolve_jit_compile(config.jit_compile)
    train_data, val_data, test_data, validation_source = inputs.make_batches(
        config, dataset, num_replicas, jit_compile)
    train_input, val_input, input_callbacks = inputs.fit_inputs(
        config, train_data, val_data)
    steps_per_epoch = len(train_data)
    steps_per_execution = resolve_steps_per_execution(
        config.steps_per_execution, steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    peak_lr, ema_momentum = checked_schedule(config, total_steps, warmup_steps)
    class_weight = recipe.class_weights(dataset.y_train, dataset.num_classes,
                                        config.class_weight)
    facts = {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "dataset_name": dataset.name,
        "class_names": list(dataset.class_names),
        "num_classes": dataset.num_classes,
        "image_shape": list(dataset.image_shape),
        "num_train": int(len(train_data.x)),
        "num_test": int(len(dataset.x_test)),
        "num_validation": int(len(val_data.x)),
        "validation_source": validation_source,
        "num_replicas": num_replicas,
        "global_batch_size": config.batch_size,
        "per_replica_batch_size": config.batch_size // num_replicas,
        "peak_learning_rate": peak_lr,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "warmup_steps": warmup_steps,
        "recipe": config.recipe,
        "ema_momentum": ema_momentum,
        "jit_compile": jit_compile,
        "steps_per_execution": steps_per_execution,
        "input_pipeline": "tf_data" if input_callbacks else "py_dataset",
        "class_weight": class_weight,
    }
    if is_chief and not resumed:
        evaluation.write_json(os.path.join(out, "config.json"), {
            "config": json.loads(json.dumps(dataclasses.asdict(config))),
            "run": facts,
        })
        with open(os.path.join(out, "labels.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in dataset.class_names))
    run_folder.write_status(out, "running")
    print(f"{dataset.name}: {facts['num_train']} train / "
          f"{facts['num_validation']} validation ({validation_source}) / "
          f"{facts['num_test']} test images {tuple(dataset.image_shape)}, {dataset.num_classes} "
          f"classes; {config.model}, {config.epochs} epochs of "
          f"{steps_per_epoch} steps, global batch {config.batch_size} on "
          f"{num_replicas} replica(s), recipe {config.recipe} "
          f"({config.optimizer}, peak LR {peak_lr:.3g}, {config.schedule}"
          f"{f', EMA {ema_momentum}' if ema_momentum else ''}), "
          f"backend {facts['backend']}, jit_compile={jit_compile}, input "
          f"{facts['input_pipeline']}.")

    with make_scope():
        model = (custom_builder(dataset.image_shape, dataset.num_classes)
                 if custom_builder else build_model(config, dataset))
    print(f"{model.name}: {model.count_params():,} parameters.")

    phases = []
    if config.freeze_backbone_epochs:
        phases.append(("frozen", config.freeze_backbone_epochs, False))
    if config.freeze_backbone_epochs < config.epochs:
        phases.append(("full", config.epochs, True))

    phases, phase_start = phases_left(phases, chief_out)
    epochs_this_session = 0
    batchnorm_batches = (
        batchnorm.calibration_batches(train_data,
                                      config.bn_recalibration_batches)
        if ema_momentum and config.bn_recalibration_batches else None)
    time_budget = (run_callbacks.TimeBudget(60 * config.time_budget_minutes, started)
                   if config.time_budget_minutes else None)
    optimizer = None
    # Killed in a QAT epoch, the run resumes there (the float phases' resume
    # would trim the QAT epochs from history.csv).
    if config.qat_epochs and os.path.isdir(os.path.join(out, "backup_qat")):
        phases, phase_start = [], config.epochs
    watched_out = (chief_out if config.strategy == "multi_worker"
                   and keras.backend.backend() == "tensorflow" else None)
    fit_started = time.time()
    try:
        for phase_name, phase_end, trainable in phases:
            with make_scope():
                set_backbone_trainable(model, trainable)
                optimizer = compile_phase(
                    model, config, optimizer, peak_lr, total_steps,
                    warmup_steps, ema_momentum, dataset.num_classes,
                    jit_compile, steps_per_execution)
            if len(phases) > 1:
                print(f"Phase '{phase_name}': epochs {phase_start + 1}-"
                      f"{phase_end}, backbone "
                      f"{'trainable' if trainable else 'frozen'}.")
            callbacks = run_callbacks.make_callbacks(
                out, train_data, phase_start, f"backup_{phase_name}",
                ema=bool(ema_momentum), time_budget=time_budget,
                restore_from=None if is_chief else chief_out,
                peers_of=watched_out, batchnorm_batches=batchnorm_batches)
            callbacks += input_callbacks + list(extra_callbacks)
            model._initial_epoch = None
            train_data.epoch = phase_start
            history = model.fit(
                train_input,
                validation_data=val_input,
                epochs=phase_end,
                initial_epoch=phase_start,
                callbacks=callbacks,
                class_weight=class_weight,
                shuffle=False,
                verbose=config.verbose,
            )
            epochs_this_session += len(history.history.get("loss", []))
            phase_start = phase_end
            if time_budget is not None and time_budget.stopped_after:
                break
        if config.qat_epochs and not (time_budget and time_budget.stopped_after):
            from mdnet_keras import quantization

            model, history = quantization.fine_tune_phase(
                model, out, train_data, val_data, config.qat_epochs, phase_start,
                run_callbacks.make_callbacks(out, train_data, phase_start,
                                             "backup_qat", time_budget=time_budget,
                                             peers_of=watched_out),
                label_smoothing=config.label_smoothing, verbose=config.verbose,
                save=run_callbacks.save_model_atomic)
            epochs_this_session += len(history.history.get("loss", []))
    except run_callbacks.TrainingDivergedError as e:
        last_epoch = run_folder.last_history_epoch(out)
        kept = (f"kept the last good model of epoch {last_epoch}: "
                f"{os.path.join(out, 'last.keras')} (best: "
                f"{os.path.join(out, 'best.keras')}), and the backup in "
                f"{os.path.join(out, 'backup_*')}, so re-running resumes "
                f"from epoch {last_epoch + 1}"
                if last_epoch else "no epoch finished, so no model was kept")
        message = (f"Training stopped: {e}; {kept}. Try a lower "
                   f"--learning_rate (now {config.learning_rate}, peak "
                   f"{peak_lr:.3g}) or --clipnorm.")
        run_folder.write_status(out, "diverged", message=message)
        raise run_callbacks.TrainingDivergedError(message) from None
    except Exception as e:
        if not (config.strategy == "multi_worker"
                and distribution.is_lost_worker_error(e)):
            raise
        distribution.disarm_forced_exit()
        raise distribution.WorkerLostError(distribution.lost_worker_message(
            e, chief_out, run_folder.backup_epoch(chief_out))) from None
    fit_seconds = time.time() - fit_started

    metrics = finish_run(config, out, model, dataset, test_data, facts,
                         fit_seconds, epochs_this_session, started)
    shutil.rmtree(os.path.join(out, "backup_frozen"), ignore_errors=True)
    shutil.rmtree(os.path.join(out, "backup_full"), ignore_errors=True)
    shutil.rmtree(os.path.join(out, "backup_qat"), ignore_errors=True)
    run_folder.write_status(out, "finished")
    print(f"Top-1 {100 * metrics['top1']:.2f}%, top-5 "
          f"{100 * metrics['top5']:.2f}% on {metrics['num_examples']} test "
          f"images. Run folder: {os.path.abspath(out)}")
    return {"out": out, "metrics": metrics, "resumed": resumed,
            "history": evaluation.read_history(
                os.path.join(out, "history.csv"))}


def checked_schedule(config, total_steps, warmup_steps):
    """The run's peak learning rate and EMA momentum, checked before
    anything is written (a bad schedule or EMA fails here).

    Returns:
        `(peak_lr, ema_momentum)`: the learning rate scaled to the global
        batch (unless `scale_learning_rate` is off) and the momentum of the
        weights' average (the recipe's span when `ema_momentum` is None; 0
        for none).
    """
    peak_lr = (recipe.scaled_learning_rate(config.learning_rate,
                                           config.batch_size)
               if config.scale_learning_rate else config.learning_rate)
    # With --epochs=0 (QAT of --init_from only) there is no float schedule.
    if config.epochs:
        recipe.learning_rate_schedule(peak_lr, total_steps, warmup_steps,
                                      config.min_lr_ratio, config.schedule)
    ema_momentum = (config.ema_momentum if config.ema_momentum is not None
                    else recipe.ema_momentum_for(
                        recipe.get_recipe(config.recipe).ema_fraction,
                        total_steps))
    recipe.check_ema(ema_momentum, total_steps)
    return peak_lr, ema_momentum


def compile_phase(model, config, previous, peak_lr, total_steps, warmup_steps,
                  ema_momentum, num_classes, jit_compile,
                  steps_per_execution):
    """Compiles `model` for a training phase with a new optimizer (the
    trainable weights changed) that carries on the run's one schedule.

    Args:
        previous: the previous phase's optimizer, or None: the new one
            continues from its step count, and its weight average from
            the weights as they are.

    Returns:
        The new optimizer.
    """
    schedule = recipe.learning_rate_schedule(
        peak_lr, total_steps, warmup_steps, config.min_lr_ratio,
        config.schedule)
    optimizer = recipe.make_optimizer(
        model, schedule, config.weight_decay, config.clipnorm,
        optimizer=config.optimizer, momentum=config.momentum,
        ema_momentum=ema_momentum)
    optimizer.build(model.trainable_variables)
    if previous is not None:
        optimizer.iterations.assign(
            int(keras.ops.convert_to_numpy(previous.iterations)))
        if ema_momentum:
            run_callbacks.start_average_at_weights(optimizer,
                                                   model.trainable_variables)
    recipe.compile_model(model, optimizer, num_classes,
                         config.label_smoothing, jit_compile,
                         steps_per_execution)
    return optimizer


def save_shipping_weights(model, path):
    """Saves the weights without optimizer state (a fresh, uncompiled copy)."""
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    copy.save_weights(path)


def test_predictions(model, test_data):
    """The model's probabilities on the test batches, without XLA on CPUs."""
    model.jit_compile = evaluation.evaluation_jit_compile()
    model.predict_function = None
    return model.predict(test_data, verbose=0)


def finish_run(config, out, model, dataset, test_data, facts, fit_seconds,
               epochs_this_session, started):
    """Writes the weights, metrics.json and plots of a finished run.

    `metrics.json` reports the final model on the test split and, under
    `best`, the epoch that validation selected (`best.keras`) with its own
    test top-1 / top-5.
    """
    save_shipping_weights(model, os.path.join(out, "model.weights.h5"))
    probs = test_predictions(model, test_data)
    report = evaluation.classification_report(dataset.y_test, probs,
                                              dataset.class_names)
    history = evaluation.read_history(os.path.join(out, "history.csv"))
    best = None
    if os.path.exists(os.path.join(out, "best.json")):
        with open(os.path.join(out, "best.json"), encoding="utf-8") as f:
            best = json.load(f)
        chosen = keras.saving.load_model(os.path.join(out, "best.keras"),
                                         compile=False)
        best_report = evaluation.classification_report(
            dataset.y_test, test_predictions(chosen, test_data),
            dataset.class_names)
        best.update(test_top1=best_report["top1"],
                    test_top5=best_report["top5"])
    report.update({
        "model": "last.keras (the final epoch)",
        "split": "test",
        "selection": facts["validation_source"],
        "best": best,
        "epochs": len(history.get("epoch", [])),
        "train_seconds_this_session": round(fit_seconds, 1),
        "epochs_this_session": epochs_this_session,
        "train_images_per_second_this_session": round(
            facts["num_train"] * epochs_this_session / max(fit_seconds, 1e-9),
            1),
        "total_seconds_this_session": round(time.time() - started, 1),
        "parameters": int(model.count_params()),
        "backend": facts["backend"],
    })
    evaluation.write_json(os.path.join(out, "metrics.json"), report)
    evaluation.plot_history(history, os.path.join(out, "history.png"))
    evaluation.plot_confusion_matrix(report["confusion_matrix"],
                                     dataset.class_names,
                                     os.path.join(out, "confusion_matrix.png"))
    print(evaluation.format_report(report))
    return report
