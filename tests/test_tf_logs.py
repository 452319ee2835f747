"""TensorFlow's log lines kept out of the command line (mdnet_keras.tf_logs)."""

import subprocess
import sys

import pytest

from export_models import ROOT
from mdnet_keras import tf_logs

# Lines TensorFlow 2.21 and ai-edge-litert 2.3 print during `convert`.
LOG_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796132277.763837    9358 port.cc:153] oneDNN custom operations are on.",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild",
    b"I1201 13:38:03.234844 139932530785152 signature_serialization.py:156] Function",
    b"W0000 00:00:1796132283.833463    9358 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.",
    b"INFO:tensorflow:Assets written to: /tmp/tmpe0k_ha_j/assets",
    b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]
KEPT_LINES = [
    b"error: --model=PATH.keras is required",
    b"warning: accuracy gate not enforced: only 50 held-out images",
    b"E0000 00:00:1796132283.833463    9358 some_file.cc:1] an error stays",
    b"Traceback (most recent call last):",
]


def test_log_lines_are_recognised_and_others_kept():
    assert all(tf_logs.is_log_line(line) for line in LOG_LINES)
    assert not any(tf_logs.is_log_line(line) for line in KEPT_LINES)


def test_verbose_and_command_line_detection():
    assert tf_logs.wants_logs(["-m", "convert", "--verbose"])
    assert not tf_logs.wants_logs(["-m", "train", "--verbose=2"])
    assert tf_logs.is_command_line(["-m", "convert"])
    assert tf_logs.is_command_line(["/venv/bin/mdnet-keras", "predict"])
    assert not tf_logs.is_command_line(["/venv/bin/pytest"])


def _profile(*extra):
    return subprocess.run(
        [sys.executable, "-m", "mdnet_keras", "profile", "--model=mdnet_micro", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_commands_are_quiet_unless_verbose():
    quiet = _profile()
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "stage" in quiet.stdout.lower()
    assert "oneDNN" not in quiet.stderr and "absl::InitializeLog" not in quiet.stderr
    loud = _profile("--verbose")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "oneDNN" in loud.stderr or "I0000" in loud.stderr


@pytest.mark.slow
def test_errors_still_reach_stderr():
    r = subprocess.run([sys.executable, "-m", "mdnet_keras", "convert"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: --model=PATH.keras is required"]


EXIT_SCRIPT = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location(
    "tf_logs", {str(ROOT / "mdnet_keras" / "tf_logs.py")!r})
tf_logs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tf_logs)
tf_logs.hide()
# One write the pipe holds (64 KiB), so that the process can exit before the
# filter's thread has read it.
sys.stderr.write("".join(f"line {{i}}\\n" for i in range(5000)))
sys.stderr.flush()
print("unflushed stdout")
tf_logs.exit_now(4, "error: the last line")
"""


def test_exit_now_loses_no_output():
    # `os._exit` skips atexit: a bare one dropped what the filter's thread
    # had not forwarded yet, e.g. a multi-worker run's last error.
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 4, done.stderr[-2000:]
    assert done.stderr.splitlines() == [f"line {i}" for i in range(5000)] + [
        "error: the last line"]
    assert done.stdout == "unflushed stdout\n"
