"""benchmarks/ema_batchnorm.py on a finished sample run."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import ema_batchnorm  # noqa: E402


def test_reestimates_statistics_and_reports_both_figures(finished_run, tmp_path):
    import keras

    from mdnet_keras.export import load_keras_model

    run_folder = finished_run[0]["out"]
    model = load_keras_model(str(pathlib.Path(run_folder) / "best.keras"))
    norm = next(layer for layer in model._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization))
    weights = [w.numpy().copy() for w in model.trainable_weights]
    mean = norm.moving_mean.numpy().copy()
    images = (keras.random.uniform((16,) + tuple(model.input_shape[1:]),
                                   maxval=255.0, seed=0)).numpy()
    assert ema_batchnorm.reestimate_batchnorm(model, images, 2, 8) > 0
    assert not (norm.moving_mean.numpy() == mean).all()
    for before, after in zip(weights, model.trainable_weights):
        assert (before == after.numpy()).all()

    ema_batchnorm.main([f"--run={run_folder}", "--batches=2",
                        "--batch_size=16", f"--out={tmp_path}"])
    results = json.loads((tmp_path / "ema_batchnorm.json").read_text())
    assert 0 <= results["test_top1_before"] <= 1
    assert 0 <= results["test_top1_after"] <= 1
    assert "re-estimated" in (tmp_path / "ema_batchnorm.md").read_text()
