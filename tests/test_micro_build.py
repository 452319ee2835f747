"""The generated TFLite Micro app, built and run (mdnet_keras.export.micro_build).

The end-to-end test converts a trained `mdnet_micro` with `convert
--micro_out`, builds the app on the host and for a Cortex-M4 (reference
kernels and CMSIS-NN) against the offline TFLite Micro trees in
../shared/tflm, runs the Cortex-M builds under qemu-system-arm and checks
every golden image against the Python TFLite Micro interpreter. It needs the
Debian packages that .ci/run installs and skips, saying which are missing,
without them. The first build compiles TFLite Micro three times (minutes on 2
cores); later ones take it from ~/.cache/mdnet-keras/tflm.
"""

import os
import pathlib
import shutil
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mdnet_keras.export import micro_build  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
TFLM_DIR = ROOT.parent / "shared" / "tflm"


def _need_firmware_tools(configs=micro_build.CONFIGS):
    missing = micro_build.missing_tools(configs)
    if missing:
        pytest.skip("firmware toolchain missing: " + ", ".join(missing))
    if not (TFLM_DIR / "tflm_ref").is_dir():
        pytest.skip(f"no TFLite Micro trees at {TFLM_DIR} (see tflite/README.md)")


def _template_copy(tmp_path):
    from mdnet_keras.export import micro_app

    app = tmp_path / "app"
    micro_app.copy_template(app)
    return app


def _make(app, *args, env=None):
    return subprocess.run(["make", "--no-print-directory", "-C", str(app), *args],
                          capture_output=True, text=True, env=env, timeout=900)


def test_parse_test_output():
    text = ("arena used 1000 of 2048 bytes\noutputs 0: -128 5 127\n"
            "golden 0: label a, top c (Python: c), 0 steps off\noutputs 1: 3 -4 0\n"
            "reference kernels: 2 golden images, largest difference 0 int8 steps "
            "(allowed 0)\nMDNET TEST PASSED\ninsns: 12345\n")
    r = micro_build.parse_test_output(text)
    assert r["passed"] and r["arena_used"] == 1000 and r["arena_size"] == 2048
    np.testing.assert_array_equal(r["outputs"], [[-128, 5, 127], [3, -4, 0]])
    assert (r["max_diff"], r["tolerance"], r["insns"]) == (0, 0, 12345)
    assert not micro_build.parse_test_output("MDNET TEST FAILED: 1 of 2")["passed"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_missing_or_wrong_tflm_dir_is_one_clear_line(tmp_path):
    app = _template_copy(tmp_path)
    r = _make(app, "host")
    assert r.returncode != 0
    assert "TFLM_DIR is not set" in r.stderr and "tflite/README.md" in r.stderr
    empty = tmp_path / "not_tflm"
    empty.mkdir()
    for target in ("host", "cm4-ref", "cm4-cmsis_nn"):
        r = _make(app, f"TFLM_DIR={empty}", target)
        assert r.returncode != 0
        assert f"No TFLite Micro tree at '{empty}/" in r.stderr, r.stderr
        assert "error:" not in r.stdout + r.stderr  # no compiler output at all
    if (TFLM_DIR / "tflm_ref").is_dir():
        # A reference-only tree has no CMSIS-NN: says which tree to give.
        r = _make(app, f"TFLM_DIR={TFLM_DIR / 'tflm_ref'}", "cm4-cmsis_nn")
        assert r.returncode != 0 and "has no third_party/cmsis_nn" in r.stderr


def _path_without(tmp_path, left_out):
    """An environment whose PATH has every tool of /usr/bin but `left_out`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in os.listdir("/usr/bin"):
        if not left_out(name):
            (bin_dir / name).symlink_to(os.path.join("/usr/bin", name))
    return dict(os.environ, PATH=str(bin_dir))


@pytest.mark.skipif(not (TFLM_DIR / "tflm_ref").is_dir(), reason="no ../shared/tflm")
def test_missing_toolchain_names_the_packages(tmp_path):
    app = _template_copy(tmp_path)
    env = _path_without(tmp_path, lambda name: (
        name.startswith("arm-none-eabi-") or "g++" in name or "gcc" in name
        or name.startswith("c++") or name.startswith("x86_64-linux-gnu-")))
    r = _make(app, f"TFLM_DIR={TFLM_DIR}", "cm4-ref", env=env)
    assert r.returncode != 0
    assert "arm-none-eabi-g++ not found" in r.stderr
    assert "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi" in r.stderr
    r = _make(app, f"TFLM_DIR={TFLM_DIR}", "host", env=env)
    assert r.returncode != 0 and "g++ not found" in r.stderr and "apt-get install g++" in r.stderr


@pytest.fixture(scope="module")
def converted_app(tmp_path_factory):
    """`convert --micro_out` on a trained mdnet_micro (the CLI, as a user runs it)."""
    _need_firmware_tools()
    from export_models import CIFAR
    from export_models import mdnet_micro

    model, _ = mdnet_micro()  # skips without the real data
    folder = tmp_path_factory.mktemp("firmware")
    model.save(folder / "mdnet_micro.keras")
    app = folder / "micro"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run(
        [sys.executable, "-m", "mdnet_keras", "convert",
         f"--model={folder / 'mdnet_micro.keras'}", "--mode=int8", "--dataset=cifar10",
         f"--data={CIFAR}", "--eval_images=200", "--num_calibration=100",
         f"--micro_out={app}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return app, folder / "mdnet_micro_int8.tflite"


@pytest.fixture(scope="module")
def python_outputs(converted_app):
    """What the Python TFLM interpreter gives the golden images, recomputed."""
    from mdnet_keras.export import micro
    from mdnet_keras.export import micro_app

    app, tflite_path = converted_app
    pixels, written, labels = micro_app.read_golden_images(app)
    data = tflite_path.read_bytes()
    runner = micro.MicroRunner(data)
    again = runner.run_raw(pixels.reshape((-1,) + runner.image_shape))
    np.testing.assert_array_equal(again, written)  # the file holds Python's outputs
    # One golden image per class, as the test split has all ten.
    assert sorted(labels) == list(range(10))
    return written.astype(np.int32)


@pytest.mark.parametrize("config", micro_build.CONFIGS)
def test_firmware_answers_as_python(converted_app, python_outputs, config):
    """SLOW: builds one configuration and runs it on every golden image."""
    app, _ = converted_app
    r = micro_build.run(app, TFLM_DIR, config)
    print(r["text"][-1500:])
    assert r["outputs"].shape == python_outputs.shape, r["text"][-2000:]
    diff = np.abs(r["outputs"] - python_outputs)
    # The same winning class on every image, whatever the kernels.
    np.testing.assert_array_equal(r["outputs"].argmax(-1), python_outputs.argmax(-1))
    if config == "cm4-cmsis_nn":
        assert diff.max() <= r["tolerance"], diff.max(axis=-1)
    else:  # the reference kernels are those of the Python interpreter
        assert diff.max() == 0, diff.max(axis=-1)
    assert r["passed"] and r["returncode"] == 0, r["text"][-2000:]
    assert r["arena_used"] <= r["arena_size"]


def test_arena_too_small_says_what_to_change(converted_app, tmp_path):
    """The app rendered with 4 KiB less arena than it needs: setup() fails
    with a message naming --arena_margin, and the test fails cleanly."""
    from mdnet_keras.export import micro_app

    app, tflite_path = converted_app
    small = tmp_path / "small"
    shutil.copytree(app, small, ignore=shutil.ignore_patterns("build"))
    data = tflite_path.read_bytes()
    arena = micro_app.parse_template(app)["arena"]
    # golden_images.cc stays as copied; the settings get the smaller arena.
    micro_app.render_template(data, small, arena, micro_app.parse_template(app)["labels"],
                          arena_margin=-4096)
    with pytest.raises(micro_build.FirmwareError, match="no outputs") as e:
        micro_build.run(small, TFLM_DIR, "host")
    message = str(e.value)
    assert "AllocateTensors() failed" in message and "--arena_margin" in message
    assert "MDNET TEST FAILED: setup() failed" in message


def test_missing_qemu_names_the_package(converted_app, tmp_path):
    app, _ = converted_app
    env = _path_without(tmp_path, lambda name: name.startswith("qemu-system"))
    r = _make(app, f"TFLM_DIR={TFLM_DIR}", "run-cm4-ref", env=env)
    assert r.returncode != 0
    assert ("qemu-system-arm not found: install it (Debian: apt-get install "
            "--no-install-recommends qemu-system-arm)") in r.stdout + r.stderr
