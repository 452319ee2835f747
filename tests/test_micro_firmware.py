"""benchmarks/micro_firmware.py in quick mode: one tiny untrained model,
built, run and counted on the host and an emulated Cortex-M4. Needs the
firmware toolchain (.ci/run installs it) and ../shared/tflm; skips without."""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mdnet_keras.export import micro_build  # noqa: E402
from test_micro_build import TFLM_DIR  # noqa: E402
from test_micro_build import _need_firmware_tools  # noqa: E402


def test_quick_benchmark_measures_every_build(tmp_path):
    _need_firmware_tools()
    from benchmarks import micro_firmware

    assert micro_firmware.main(["--quick", f"--tflm_dir={TFLM_DIR}",
                                f"--out={tmp_path}"]) == 0
    results = json.loads((tmp_path / "micro_firmware.json").read_text())
    row = results["models"]["tiny"]
    # The firmware compiles in the micro form of the model (micro_model).
    assert 0 < row["model_bytes"] < row["converted_bytes"]
    assert set(row["builds"]) == set(micro_build.CONFIGS)
    for config, build in row["builds"].items():
        assert build["passed"], (config, build)
        assert build["same_winner_images"] == row["golden_images"] > 0
        assert 0 < build["arena_used"] <= row["arena_host_python"] + row["arena_margin_in_build"]
    for config in ("cm4-ref", "cm4-cmsis_nn"):
        build = row["builds"][config]
        # The model array is in .rodata, so flash holds at least the model.
        assert build["sections"][".text"] + build["sections"][".rodata"] > row["model_bytes"]
        assert build["instructions_per_inference"] > 0
    assert row["builds"]["host"]["max_diff_steps"] == 0
    assert row["builds"]["cm4-ref"]["max_diff_steps"] == 0
    text = (tmp_path / "micro_firmware.md").read_text()
    assert "Instructions are not cycles" in text and "| tiny | cm4-cmsis_nn |" in text
