"""`train --qat_epochs`: QAT after the float epochs, resumed after SIGKILL in a
QAT epoch like an unbroken run, then `convert` with PTQ and QAT side by side."""

import json
import subprocess

import numpy as np
import pytest

from mdnet_keras import quantization
from mdnet_keras.export import load_keras_model
from mdnet_keras.training import config as config_lib
from training_util import TINY
from training_util import kill_in_epoch_after
from training_util import read_rows
from training_util import subprocess_env
from training_util import subset_npz


def qat_command(data, out):
    import sys

    return [sys.executable, "-m", "mdnet_keras", "train", "--dataset=npz",
            f"--data={data}", "--model=mdnet_micro",
            f"--model_config={json.dumps(TINY)}", "--epochs=1", "--qat_epochs=2",
            "--batch_size=32", "--warmup_epochs=0", "--verbose=2", f"--out={out}"]


@pytest.fixture(scope="module")
def qat_runs(tmp_path_factory):
    """An unbroken float + QAT run, and one SIGKILLed in its 2nd QAT epoch."""
    root = tmp_path_factory.mktemp("qat")
    data = subset_npz(root / "small.npz", 40, 10)
    reference_out, killed_out = root / "reference", root / "killed"
    env = subprocess_env()
    reference = subprocess.Popen(qat_command(data, reference_out), env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
    # Killed into the second QAT epoch.
    kill_in_epoch_after(qat_command(data, killed_out), killed_out / "backup_qat", 2,
                        timeout=500)
    at_kill = read_rows(killed_out)
    resumed = subprocess.run(qat_command(data, killed_out), env=env,
                             capture_output=True, text=True, timeout=600)
    reference_log = reference.communicate(timeout=600)[0]
    assert reference.returncode == 0, reference_log[-3000:]
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    return {"data": data, "reference": reference_out, "killed": killed_out,
            "at_kill": at_kill, "resumed_log": resumed.stdout}


def test_resume_after_sigkill_during_qat(qat_runs):
    assert qat_runs["at_kill"]["epoch"] == [0, 1]  # float epoch, 1st QAT epoch
    # The resumed process re-ran only the unfinished QAT epoch.
    assert "Epoch 3/3" in qat_runs["resumed_log"]
    assert "Epoch 1/3" not in qat_runs["resumed_log"]
    assert "Epoch 2/3" not in qat_runs["resumed_log"]
    history = read_rows(qat_runs["killed"])
    reference = read_rows(qat_runs["reference"])
    assert history["epoch"] == [0, 1, 2]
    np.testing.assert_allclose(history["loss"], reference["loss"], rtol=1e-3)
    np.testing.assert_allclose(history["learning_rate"], reference["learning_rate"],
                               rtol=1e-6)
    assert json.loads((qat_runs["killed"] / "status.json").read_text())["state"] == "finished"
    assert not (qat_runs["killed"] / "backup_qat").exists()
    assert quantization.is_quantization_aware(
        load_keras_model(str(qat_runs["killed"] / "last.keras")))
    # The resumed run keeps the float model it fine-tuned (it once wrote the
    # fresh model of the resumed process there).
    baselines = [load_keras_model(str(qat_runs[run] / quantization.FLOAT_BASELINE_NAME))
                 for run in ("killed", "reference")]
    assert not quantization.is_quantization_aware(baselines[0])
    for kept, reference in zip(*(model.get_weights() for model in baselines)):
        np.testing.assert_allclose(kept, reference, rtol=1e-4, atol=1e-6)


def test_convert_reports_ptq_and_qat_side_by_side(qat_runs, tmp_path):
    from mdnet_keras.cli.convert import run_convert

    out = tmp_path / "qat_int8.tflite"
    code, report = run_convert(str(qat_runs["killed"] / "last.keras"), mode="int8",
                               dataset="npz", load_args={"data": qat_runs["data"]},
                               out=str(out), num_calibration=50, eval_images=0,
                               max_drop=100.0)
    assert code == 0
    side = report["qat"]
    assert set(side["op_count_difference"]) <= {"ADD"} and side["num_images"] == 100
    assert (tmp_path / "qat_int8_ptq.tflite").is_file()
    for name in ("ptq", "qat"):
        assert 0 <= side[name]["top1"] <= 1
        assert side[name]["gate"]["status"] == "pass"
    assert side["gate"] == side["qat"]["gate"]
    versus = side["qat_vs_ptq"]
    assert versus["num_images"] == 100
    assert versus["drop_points"] == pytest.approx(
        100 * (side["ptq"]["top1"] - side["qat"]["top1"]), abs=1e-6)


def test_qat_fine_tunes_init_from_without_float_epochs(qat_runs, tmp_path):
    from mdnet_keras.training import run

    out = tmp_path / "qat_only"
    result = run.train(dataset="npz", data=qat_runs["data"], model="mdnet_micro",
                       model_config=TINY, epochs=0, qat_epochs=1, batch_size=32,
                       init_from=str(qat_runs["reference"] / quantization.FLOAT_BASELINE_NAME),
                       verbose=0, out=str(out))
    assert read_rows(out)["epoch"] == [0]
    assert result["metrics"]["epochs"] == 1
    assert quantization.is_quantization_aware(load_keras_model(str(out / "last.keras")))
    assert (out / quantization.FLOAT_BASELINE_NAME).is_file()


def test_qat_options_are_checked():
    with pytest.raises(ValueError, match="mixed_precision"):
        config_lib.resolve_config(qat_epochs=1, mixed_precision=True)
    with pytest.raises(ValueError, match="--epochs=0 needs"):
        config_lib.resolve_config(epochs=0, qat_epochs=1)
