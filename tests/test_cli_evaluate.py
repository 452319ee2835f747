"""The `evaluate` command (`.keras`; `--tflite` in test_cli_evaluate_tflite)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from export_models import folder_run  # noqa: E402
from export_models import run_cli  # noqa: E402

pytestmark = pytest.mark.slow


def test_evaluate_takes_everything_from_a_folder_run(tmp_path):
    import json

    run = folder_run()
    r = run_cli(["-m", "mdnet_keras", "evaluate", f"--model={run / 'best.keras'}",
                 f"--out={tmp_path}"])
    assert r.returncode == 0, r.stderr[-3000:]
    line = [text for text in r.stdout.splitlines() if text.startswith("From the run folder")]
    assert len(line) == 1 and "--dataset=folder" in line[0] and "--data=" in line[0]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # The NEU folder has test/: 60 images for each of its 6 classes.
    assert metrics["num_examples"] == 360
