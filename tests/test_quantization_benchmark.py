"""benchmarks/qat.py in quick mode: one run writes the side-by-side JSON and
Markdown (PTQ and QAT int8 against float, size, ops, latency)."""

import json
import sys

from conftest import ROOT


def test_quick_benchmark_writes_side_by_side(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks import qat

    out = tmp_path / "results"
    result = qat.main(["--quick", "--qat_epochs=1", f"--out={out}",
                       f"--work={tmp_path / 'work'}"])
    saved = json.loads((out / "qat.json").read_text())
    assert saved["num_images"] == result["num_images"] == 200
    for name in ("ptq", "qat"):
        assert 0 <= saved[name]["top1"] <= 1
        assert saved[name]["gate"]["status"] in ("pass", "warn", "fail")
        assert saved["latency_ms_1_thread"][name] > 0
    assert set(saved["op_count_difference"]) <= {"ADD"}
    markdown = (out / "qat.md").read_text()
    assert "PTQ int8" in markdown and "QAT int8" in markdown and "--quick" in markdown
