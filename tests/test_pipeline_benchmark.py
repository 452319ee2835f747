"""benchmarks/pipeline.py: the quick harness writes every option's cost."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import pipeline  # noqa: E402


def test_quick_pipeline_benchmark_times_every_option(tmp_path):
    results = pipeline.main(["--quick", f"--out={tmp_path}"])
    saved = json.loads((tmp_path / "pipeline.json").read_text())
    assert set(saved["ms_per_batch"]) == set(pipeline.OPTIONS)
    assert all(ms > 0 for ms in saved["ms_per_batch"].values())
    assert all(len(t) == 2 for t in saved["ms_per_batch_per_round"].values())
    assert saved["command"] == \
        f"python benchmarks/pipeline.py --quick --out={tmp_path}"
    table = (tmp_path / "pipeline.md").read_text()
    assert "| crop_flip_randaugment |" in table and "1.00x" in table
    assert results["data"]["name"] == saved["data"]["name"]
