"""The streaming benchmark's harness, end to end on two tiny folders."""

import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import streaming  # noqa: E402


@pytest.mark.skipif(not pathlib.Path(streaming.NEU_TRAIN).is_dir(),
                    reason="NEU images (../shared/data) absent")
def test_quick_run_writes_json_and_markdown(tmp_path):
    assert streaming.main(["--quick", f"--out={tmp_path}"]) == 0
    results = json.loads((tmp_path / "streaming.json").read_text())
    sizes = list(streaming.BUDGETS["quick"]["sizes"])
    assert [s["files"] for s in results["summary"]] == sizes
    assert {(r["size"], r["mode"]) for r in results["rows"]} == {
        (n, m) for n in sizes for m in streaming.MODES}
    for row in results["rows"]:
        assert row["streamed"] == (row["mode"] == "stream")
        assert row["files"] == row["size"] and row["peak_rss_mib"] > 0
        assert row["pipeline_images_per_s"] > 0
    difference = results["decode_difference"]
    assert difference["images"] == 20
    assert 0 < difference["mean_abs_grey_levels"] <= difference[
        "max_abs_grey_levels"]
    text = (tmp_path / "streaming.md").read_text()
    assert "| 24 |" in text and "not measured" in text


def test_link_subset_takes_equal_shares(tmp_path):
    full = tmp_path / "full"
    for c in "ab":
        (full / c).mkdir(parents=True)
        for i in range(4):
            (full / c / f"{i}.jpg").write_bytes(b"x")
    streaming.link_subset(str(full), str(tmp_path / "sub"), 5)
    assert sorted(p.name for p in (tmp_path / "sub" / "a").iterdir()) == [
        "0.jpg", "1.jpg", "2.jpg"]
    assert len(list((tmp_path / "sub" / "b").iterdir())) == 2


def test_summary_ratios_pair_rounds():
    rows = [dict(size=10, round=r, mode=m, peak_rss_mib=1.0,
                 rss_after_load_mib=1.0, load_s=1.0,
                 pipeline_images_per_s=100.0 if m == "memory" else 50.0,
                 fit_images_per_s=(10.0 if m == "memory" else 9.0) * (r + 1),
                 fit_cpu_ms_per_image=4.0 if m == "memory" else 5.0)
            for r in range(2) for m in streaming.MODES]
    (entry,) = streaming.summarise(rows, [10])
    assert entry["stream_vs_memory_fit_images_per_s"] == pytest.approx(0.9)
    assert entry["stream_vs_memory_pipeline_images_per_s"] == 0.5
    targets = streaming.targets([entry])
    assert targets["fit_target_0_8x_met"] is True
    assert targets["min_cpu_bound_stream_vs_memory_fit"] == pytest.approx(0.8)
