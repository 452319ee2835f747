"""benchmarks/ema_batchnorm.py on a finished sample run (the re-estimation
itself is tested in test_batchnorm.py)."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import ema_batchnorm  # noqa: E402


def test_reports_each_batch_count_next_to_the_saved_figure(finished_run,
                                                           tmp_path):
    run_folder = finished_run[0]["out"]
    ema_batchnorm.main([f"--run={run_folder}", "--batches=1,2",
                        "--batch_size=16", "--checkpoint=last.keras",
                        f"--out={tmp_path}"])
    results = json.loads((tmp_path / "ema_batchnorm.json").read_text())
    assert results["batchnorm_layers"] > 0
    assert 0 <= results["test_top1_before"] <= 1
    assert set(results["test_top1_after"]) == {"1", "2"}
    assert all(0 <= v <= 1 for v in results["test_top1_after"].values())
    text = (tmp_path / "ema_batchnorm.md").read_text()
    assert "| none (as saved) |" in text and "| 2 |" in text
