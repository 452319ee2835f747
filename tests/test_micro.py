"""TFLite Micro (mdnet_keras.export.micro): the real TFLM interpreter, the
smallest arena, the C array and the C++ template. Skipped where the
`tflite-micro` wheel (Linux only) cannot be imported."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

try:
    import tflite_micro  # noqa: F401
    from tflite_micro import runtime  # noqa: F401
    TFLM_ERROR = None
except Exception as e:  # ImportError, or a broken native module
    TFLM_ERROR = f"{type(e).__name__}: {e}"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    TFLM_ERROR is not None,
    reason=f"tflite-micro not importable (Linux-only wheel): {TFLM_ERROR}")]

from export_models import cifar  # noqa: E402
from export_models import converted  # noqa: E402


def test_tflm_matches_litert_on_toy():
    from mdnet_keras.export import micro

    data = converted("toy", "int8")
    xt = cifar()[2][:100]
    cmp = micro.compare_with_litert(data, xt, lsb_tolerance=2)
    # Shallow model (~15 ops): the runtimes round requantizations differently
    # (1 LSB from the first ADD on); measured on 100 images: max 4 LSB, 3
    # images over 2 LSB, 97% argmax agreement (flips are near-ties).
    assert cmp["max_lsb_diff"] <= 8, cmp
    assert cmp["num_over_tolerance"] <= 10, cmp
    assert cmp["argmax_agreement"] >= 0.94, cmp


def test_tflm_runs_mdnet_micro_and_agrees_with_litert():
    """SLOW (shares the mdnet_micro fixture): the real model in real TFLM."""
    from mdnet_keras.export import micro

    data = converted("mdnet", "int8", max_depthwise_taps=None)
    xt = cifar()[2][:100]
    cmp = micro.compare_with_litert(data, xt)
    print(cmp)
    # ~140 int8 ops: 1-LSB requantization differences compound (measured up
    # to ~25 LSB on the output); what must hold is the decision.
    assert cmp["argmax_agreement"] >= 0.9, cmp


def test_arena_is_smallest_that_allocates_and_fits_budget():
    from mdnet_keras.export import micro

    data = converted("mdnet", "int8", max_depthwise_taps=None)
    arena = micro.find_min_arena(data)
    assert micro.allocates(data, arena)
    assert not micro.allocates(data, arena - 1)
    # The micro variant must fit a 256 KiB arena at 32x32x3.
    assert arena <= 256 * 1024, arena
    report = micro.check_targets(len(data), arena, flash_kb=1024, ram_kb=256)
    assert report["ok"], report
    tight = micro.check_targets(len(data), arena, flash_kb=1, ram_kb=1)
    assert not tight["ok"] and len(tight["problems"]) == 2
    # print_allocations() reports the same total on C-level stderr.
    text = micro.arena_breakdown(data, arena)
    assert f"Arena allocation total {arena} bytes" in text


def test_c_array_round_trips(tmp_path):
    from mdnet_keras.export import micro_app

    data = converted("toy", "int8")
    cc, h = micro_app.write_c_array(data, tmp_path)
    assert micro_app.read_c_array(cc) == data
    assert "alignas(16)" in open(cc).read()
    assert "extern const unsigned char g_mdnet_model_data[];" in open(h).read()
    text = open(cc).read().replace(f"= {len(data)};", f"= {len(data) + 1};")
    (tmp_path / "bad.cc").write_text(text)
    with pytest.raises(ValueError, match="declares"):
        micro_app.read_c_array(tmp_path / "bad.cc")


def test_template_lists_exactly_the_model_ops_and_arena(tmp_path):
    from mdnet_keras.export import micro
    from mdnet_keras.export import micro_app

    data = converted("mdnet", "int8", max_depthwise_taps=None)
    arena = micro.find_min_arena(data)
    names = cifar()[4]
    micro_app.render_template(data, tmp_path, arena, names, arena_margin=4096)
    parsed = micro_app.parse_template(tmp_path)
    ops = micro_app.model_ops(data)
    assert parsed["ops"] == [micro_app.resolver_method(op) for op in ops]
    assert len(set(parsed["ops"])) == len(parsed["ops"]) == parsed["num_ops"]
    assert parsed["arena"] == arena and parsed["margin"] == 4096
    assert (parsed["rows"], parsed["cols"], parsed["channels"]) == (32, 32, 3)
    assert parsed["categories"] == 10 and parsed["labels"] == list(names)
    assert micro_app.read_c_array(tmp_path / "model_data.cc") == data
    for f in micro_app.TEMPLATE_FILES:
        assert (tmp_path / f).is_file()


def test_resolver_method_names():
    from mdnet_keras.export import micro_app

    assert micro_app.resolver_method("CONV_2D") == "AddConv2D"
    assert micro_app.resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert micro_app.resolver_method("BATCH_MATMUL") == "AddBatchMatMul"
    assert micro_app.resolver_method("FULLY_CONNECTED") == "AddFullyConnected"
    assert micro_app.resolver_method("SPLIT_V") == "AddSplitV"
    assert micro_app.resolver_method("STRIDED_SLICE") == "AddStridedSlice"
    with pytest.raises(ValueError):
        micro_app.resolver_method("CUSTOM:Foo")


def test_committed_template_matches_mdnet_micro():
    """The template is committed rendered for mdnet_micro: its resolver must
    list that model's ops (regenerate it with --micro_out when they change)."""
    from mdnet_keras.export import micro_app

    parsed = micro_app.parse_template(micro_app.TEMPLATE_DIR)
    ops = micro_app.model_ops(converted("mdnet", "int8", max_depthwise_taps=None))
    assert sorted(parsed["ops"]) == sorted(micro_app.resolver_method(op) for op in ops)
    assert parsed["arena"] <= 256 * 1024


def test_template_ships_in_the_wheel(tmp_path):
    """The app template is package data: a wheel holds every file that
    render_template reads (it once lived outside the package, so that
    `--micro_out` only worked from a source checkout)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from mdnet_keras.export import micro

    from mdnet_keras.export import micro_app

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert os.path.dirname(micro_app.TEMPLATE_DIR) == os.path.dirname(micro.__file__)
    # Built from a copy, so that setuptools' build/ stays out of the checkout.
    src = tmp_path / "src"
    shutil.copytree(os.path.join(root, "mdnet_keras"), src / "mdnet_keras",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(root, name), src)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("mdnet_keras-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in micro_app.TEMPLATE_FILES:
        assert f"mdnet_keras/export/micro_template/{f}" in names, f


def test_select_golden_one_per_class_widest_margin():
    import numpy as np


    from mdnet_keras.export import micro_app

    raw = np.array([[10, 0, 0],     # class 0, margin 10
                    [50, 0, 0],     # class 0, margin 50: picked
                    [0, 0, 9],      # label 1 but predicted 2
                    [0, 0, 30],     # class 2
                    [0, 5, 0]])     # predicted 1 but labelled 0
    labels = np.array([0, 0, 1, 2, 0])
    # Class 1 has no right answer: its first image.
    assert micro_app.select_golden(raw, labels) == [1, 2, 3]
    assert micro_app.select_golden(raw, labels, max_images=2) == [1, 2]
    # Without labels: by predicted class.
    assert micro_app.select_golden(raw) == [1, 4, 3]


def test_golden_images_round_trip(tmp_path):
    import numpy as np


    from mdnet_keras.export import micro_app

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    outputs = rng.integers(-128, 128, (3, 5))
    micro_app.write_golden_images(tmp_path, pixels, outputs, [4, 0, 2])
    got_pixels, got_outputs, got_labels = micro_app.read_golden_images(tmp_path)
    np.testing.assert_array_equal(got_pixels, pixels.reshape(3, -1))
    np.testing.assert_array_equal(got_outputs, outputs)
    np.testing.assert_array_equal(got_labels, [4, 0, 2])
    assert "kNumGoldenImages = 3;" in (tmp_path / "golden_images.h").read_text()
    with pytest.raises(ValueError, match="uint8"):
        micro_app.write_golden_images(tmp_path, pixels.astype(np.float32), outputs, [0, 1, 2])
    with pytest.raises(ValueError, match="2 labels"):
        micro_app.write_golden_images(tmp_path, pixels, outputs, [0, 1])


def test_arena_search_shows_progress(capsys):
    from mdnet_keras.export import micro

    data = converted("toy", "int8")
    quiet = micro.find_min_arena(data)
    capsys.readouterr()
    assert micro.find_min_arena(data, progress=True) == quiet
    out = capsys.readouterr().out
    assert "Searching the smallest TFLite Micro arena" in out
    assert "allocation" in out
