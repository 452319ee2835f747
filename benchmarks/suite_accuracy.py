"""Accuracy under one budget: one recipe, one augmentation, the same seeds
and epochs for every model."""

import os
import time

import numpy as np



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
