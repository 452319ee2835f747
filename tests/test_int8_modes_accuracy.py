"""benchmarks/int8_modes_accuracy.py end to end in quick mode."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import int8_modes_accuracy  # noqa: E402


def test_quick_run_writes_both_modes_side_by_side(tmp_path):
    int8_modes_accuracy.main(["--quick", f"--out={tmp_path}"])
    results = json.loads((tmp_path / "int8_modes_accuracy.json").read_text())
    assert set(results["top1"]) == {"float", "int8", "int8_xnnpack"}
    assert results["data"]["test_images"] == 64
    assert results["xnnpack_partitions"]["int8_xnnpack"] == 1
    assert (results["xnnpack_partitions"]["int8"]
            > results["xnnpack_partitions"]["int8_xnnpack"])
    for gate in list(results["vs_float"].values()) + [
            results["int8_xnnpack_vs_int8"]]:
        assert gate["num_images"] == 64
        assert gate["status"] in ("pass", "warn", "fail")
    markdown = (tmp_path / "int8_modes_accuracy.md").read_text()
    assert "| int8_xnnpack |" in markdown and "McNemar" in markdown
