"""The convert command, end to end. Slow: each
subprocess imports TensorFlow (~5-10 s) and the toy model is trained."""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from export_models import CIFAR  # noqa: E402
from export_models import cifar  # noqa: E402
from export_models import folder_run  # noqa: E402
from export_models import run_cli  # noqa: E402
from export_models import toy  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_keras(tmp_path_factory):
    cifar()  # skips without the real data
    path = tmp_path_factory.mktemp("cli") / "toy.keras"
    toy()[0].save(path)
    return path


def test_convert_int8_with_micro_and_edgetpu(toy_keras):
    out = toy_keras.parent / "toy_int8.tflite"
    micro_dir = toy_keras.parent / "micro"
    r = run_cli(["-m", "mdnet_keras", "convert", f"--model={toy_keras}", "--mode=int8",
                 "--dataset=cifar10", f"--data={CIFAR}", f"--out={out}",
                 "--eval_images=200", "--num_calibration=50", f"--micro_out={micro_dir}",
                 "--flash_kb=1024", "--ram_kb=256", "--edgetpu"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "float islands: 0" in r.stdout
    assert "TFLM: arena" in r.stdout and "Edge TPU:" in r.stdout
    # 200 images < 500: warns and says why instead of failing.
    assert "not enforced" in r.stderr
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["micro"]["arena_bytes"] > 0 and report["edgetpu"]["total_macs"] > 0
    assert (micro_dir / "model_data.cc").is_file()
    assert (toy_keras.parent / "toy_int8.labels.txt").read_text().split()[0] == "airplane"


def test_convert_gate_failure_exits_nonzero(toy_keras, tmp_path):
    out = tmp_path / "g.tflite"
    r = run_cli(["tflite/convert.py", f"--model={toy_keras}", "--mode=float32",
                 "--dataset=cifar10", f"--data={CIFAR}", f"--out={out}",
                 "--eval_images=100", "--max_drop=-101"])
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Accuracy gate failed" in r.stderr


def test_convert_bad_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_text("hello")
    r = run_cli(["-m", "mdnet_keras", "convert", f"--model={bad}", "--mode=int8",
                 "--dataset=sample"])
    assert r.returncode == 2
    assert "error:" in r.stderr and "not a Keras" in r.stderr
    r = run_cli(["-m", "mdnet_keras", "convert", f"--model={tmp_path}/missing.keras"])
    assert r.returncode == 2 and "not found" in r.stderr


def test_convert_takes_the_data_from_a_folder_run(tmp_path):
    """The defect: `convert --model=runs/x/best.keras --data=FOLDER` failed
    with "No .npz file at 'FOLDER'" (--dataset defaulted to cifar10)."""
    from export_models import NEU

    run = folder_run()
    out = tmp_path / "neu_float32.tflite"
    r = run_cli(["-m", "mdnet_keras", "convert", f"--model={run / 'best.keras'}",
                 f"--data={NEU}", "--mode=float32", "--eval_images=50",
                 f"--out={out}"])
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [text for text in r.stdout.splitlines() if text.startswith("From the run folder")]
    assert len(lines) == 1 and "--dataset=folder" in lines[0], r.stdout[-2000:]
    assert "--data=" not in lines[0]  # given on the command line: kept
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["io"]["inputs"][0]["shape"] == [1, 32, 32, 1]
    assert report["num_eval_images"] == 50 and report["num_classes"] == 6
    assert (out.parent / "neu_float32.labels.txt").read_text() == \
        (run / "labels.txt").read_text()


def test_convert_with_other_data_than_the_run_is_a_clear_error(tmp_path):
    run = folder_run()
    r = run_cli(["-m", "mdnet_keras", "convert", f"--model={run / 'best.keras'}",
                 "--dataset=sample", "--mode=float32", f"--out={tmp_path}/x.tflite"])
    assert r.returncode == 2
    assert "error:" in r.stderr and "classes" in r.stderr
