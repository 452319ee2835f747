"""TFLite Micro: run the int8 model in the real TFLM interpreter, measure its
arena, and export the C++ app (`micro_app` writes it; `micro_build` builds
and runs it).

The TFLM Python wheel (`tflite-micro`, Linux only) is imported lazily; callers
that need it get an ImportError with the reason when it is missing.

Numbers measured here are host numbers (x86-64, reference kernels): see
`tflite/README.md` for the margin to add on a Cortex-M.
"""

import contextlib
import os
import tempfile

import numpy as np

from mdnet_keras.export import micro_app
from mdnet_keras.export.keras_model import check_images
from mdnet_keras.export.litert_runner import LiteRTRunner
from mdnet_keras.export.litert_runner import dequantize_output
from mdnet_keras.export.litert_runner import quantize_input
from mdnet_keras.export.micro_flatbuffer import micro_model
from mdnet_keras.export.side_files import find_labels_file
from mdnet_keras.export.side_files import read_labels

DEFAULT_LSB_TOLERANCE = 2
# Images on which export_micro checks the micro form against the converted model.
NUM_SAME_CHECK = 32


def require_tflm():
    """Imports `tflite_micro.runtime` or raises ImportError with the reason."""
    try:
        from tflite_micro import runtime  # noqa: F401
    except Exception as e:  # ImportError, or a broken native extension
        raise ImportError(
            "tflite-micro is not usable here (the PyPI wheel is Linux-only): "
            f"{type(e).__name__}: {e}"
        ) from e
    return runtime


@contextlib.contextmanager
def capture_c_stderr():
    """Captures what C/C++ code writes to file descriptor 2.

    TFLM reports allocation failures and `print_allocations()` there, not
    through Python. Yields a list that receives the text on exit.
    """
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    captured = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            try:
                sys.stderr.flush()
            except Exception:
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))


def allocates(tflite_bytes, arena_size):
    """True when TFLM can allocate the model's tensors in `arena_size` bytes."""
    runtime = require_tflm()
    with capture_c_stderr():
        try:
            runtime.Interpreter.from_bytes(bytes(tflite_bytes), arena_size=int(arena_size))
            return True
        except RuntimeError:
            return False


def find_min_arena(tflite_bytes, upper=None, progress=False):
    """The smallest tensor-arena size (bytes) that TFLM allocates, by bisection.

    Args:
        tflite_bytes: the int8 model.
        upper: a size known to allocate; doubled from 10x the model size
            until it does when not given.
        progress: bool, a progress bar over the bisection's allocations.

    Returns:
        int: `n` such that an arena of `n` bytes allocates and `n - 1` does not.
    """
    hi = int(upper or max(4096, 10 * len(tflite_bytes)))
    tries = 0
    while not allocates(tflite_bytes, hi):
        hi *= 2
        tries += 1
        if tries > 12:
            raise RuntimeError(
                "TFLM could not allocate the model even with a "
                f"{hi // 2}-byte arena: unsupported ops or a broken model."
            )
    lo = 0  # lo: known to fail (0 always does)
    bar = None
    if progress:
        import keras

        print("Searching the smallest TFLite Micro arena:")
        bar = keras.utils.Progbar(max(1, (hi - lo).bit_length()),
                                  unit_name="allocation")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if allocates(tflite_bytes, mid):
            hi = mid
        else:
            lo = mid
        if bar is not None:
            bar.add(1)
    return hi


def arena_breakdown(tflite_bytes, arena_size, image=None):
    """Runs once and returns `print_allocations()`'s text (C-level stderr)."""
    runtime = require_tflm()
    it = runtime.Interpreter.from_bytes(bytes(tflite_bytes), arena_size=int(arena_size))
    if image is not None:
        MicroRunner._set(it, image)
        it.invoke()
    with capture_c_stderr() as text:
        it.print_allocations()
    return text[0]


class MicroRunner:
    """Runs a batch-1 int8/uint8 model in the TFLM Python interpreter."""

    def __init__(self, tflite_bytes, arena_size=None):
        runtime = require_tflm()
        self.arena_size = int(arena_size or find_min_arena(tflite_bytes))
        self.interpreter = runtime.Interpreter.from_bytes(
            bytes(tflite_bytes), arena_size=self.arena_size
        )
        self.input = self.interpreter.get_input_details(0)
        self.output = self.interpreter.get_output_details(0)
        self.image_shape = tuple(int(d) for d in self.input["shape"][1:])

    @staticmethod
    def _detail(d):
        q = d["quantization_parameters"]
        scales, zps = q["scales"], q["zero_points"]
        return {
            "dtype": d["dtype"],
            "quantization": (
                float(scales[0]) if len(scales) else 0.0,
                int(zps[0]) if len(zps) else 0,
            ),
        }

    @classmethod
    def _set(cls, it, image):
        detail = cls._detail(it.get_input_details(0))
        it.set_input(quantize_input(image[None], detail), 0)

    def run_raw(self, images):
        """Raw output tensors (N, classes) in the model's output dtype."""
        images = check_images(images, self.image_shape)
        detail = self._detail(self.input)
        x = quantize_input(images, detail)
        out = []
        for i in range(x.shape[0]):
            self.interpreter.set_input(x[i : i + 1], 0)
            self.interpreter.invoke()
            out.append(np.array(self.interpreter.get_output(0))[0])
        return np.stack(out)

    def predict(self, images):
        return dequantize_output(self.run_raw(images), self._detail(self.output))


def compare_with_litert(tflite_bytes, images, arena_size=None,
                        lsb_tolerance=DEFAULT_LSB_TOLERANCE, kernels="reference",
                        litert_bytes=None):
    """Runs the same images in TFLM and LiteRT and compares the raw outputs.

    The two runtimes round some requantizations differently, so outputs
    differ by a few least-significant bits in a shallow model; in a deep one
    the differences compound, so judge by argmax agreement and report the
    largest difference. Compared by
    default against LiteRT's reference kernels, the closest to TFLM's
    (`kernels="default"` uses XNNPACK, which differs more). The comparison
    counts images whose largest difference exceeds `lsb_tolerance`.
    LiteRT runs `litert_bytes` when given: the converted model of which
    `tflite_bytes` is the micro form (`micro_model`), which LiteRT refuses.
    """
    micro = MicroRunner(tflite_bytes, arena_size).run_raw(images).astype(np.int32)
    lite = LiteRTRunner(litert_bytes or tflite_bytes,
                        kernels=kernels).run_raw(images).astype(np.int32)
    diff = np.abs(micro - lite).max(axis=-1)
    return {
        "num_images": int(len(images)),
        "argmax_agreement": float((micro.argmax(-1) == lite.argmax(-1)).mean()),
        "max_lsb_diff": int(diff.max()),
        "lsb_tolerance": int(lsb_tolerance),
        "litert_kernels": kernels,
        "num_over_tolerance": int((diff > lsb_tolerance).sum()),
        "bit_exact_share": float((diff == 0).mean()),
    }


def check_targets(flash_bytes, arena_bytes, flash_kb=None, ram_kb=None):
    """Checks the model (flash) and arena (RAM) against budgets in KiB."""
    result = {"flash_bytes": int(flash_bytes), "arena_bytes": int(arena_bytes),
              "flash_kb": flash_kb, "ram_kb": ram_kb, "ok": True, "problems": []}
    if flash_kb is not None and flash_bytes > flash_kb * 1024:
        result["ok"] = False
        result["problems"].append(
            f"model needs {flash_bytes / 1024:.1f} KiB of flash > {flash_kb} KiB"
        )
    if ram_kb is not None and arena_bytes > ram_kb * 1024:
        result["ok"] = False
        result["problems"].append(
            f"tensor arena needs {arena_bytes / 1024:.1f} KiB of RAM > {ram_kb} KiB"
        )
    return result


def same_micro_outputs(tflite_bytes, other_bytes, images):
    """Whether TFLM gives two models' raw outputs on `images` bit for bit."""
    a = MicroRunner(tflite_bytes).run_raw(images)
    return bool(np.array_equal(a, MicroRunner(other_bytes).run_raw(images)))


def micro_report(tflite_bytes, images, flash_kb=None, ram_kb=None,
                 lsb_tolerance=DEFAULT_LSB_TOLERANCE, progress=False,
                 litert_bytes=None):
    """Arena, flash, TFLM-vs-LiteRT agreement and the target checks
    (`litert_bytes`: as in `compare_with_litert`)."""
    arena = find_min_arena(tflite_bytes, progress=progress)
    report = {
        "arena_bytes": arena,
        "arena_fails_below": not allocates(tflite_bytes, arena - 1),
        "flash_bytes": len(tflite_bytes),
        "ops": micro_app.model_ops(tflite_bytes),
        "host": "x86-64 TFLM Python wheel, reference kernels",
    }
    if images is not None and len(images):
        report["vs_litert"] = compare_with_litert(
            tflite_bytes, images, arena, lsb_tolerance, litert_bytes=litert_bytes)
    report["targets"] = check_targets(len(tflite_bytes), arena, flash_kb, ram_kb)
    return report


def golden_set(tflite_bytes, images, labels=None, arena_size=None,
               max_images=micro_app.DEFAULT_NUM_GOLDEN, candidates_per_class=8):
    """Golden images for the app's test and the outputs Python gives them.

    Runs candidate images (the first `candidates_per_class` of each class
    when `labels` are given, else all) as uint8 pixels in the Python TFLM
    interpreter, picks one per class with `micro_app.select_golden` and returns
    `(pixels, expected, labels)` for `write_golden_images`.
    """
    pixels = micro_app.golden_pixels(images)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        keep = np.sort(np.concatenate([
            np.flatnonzero(labels == c)[:candidates_per_class]
            for c in np.unique(labels)]))
        pixels, labels = pixels[keep], labels[keep]
    raw = MicroRunner(tflite_bytes, arena_size).run_raw(pixels)
    picked = micro_app.select_golden(raw, labels, max_images)
    classes = raw.argmax(-1) if labels is None else labels
    return pixels[picked], raw[picked], classes[picked]


def export_micro(tflite_path, out_dir, images=None, class_names=None,
                 flash_kb=None, ram_kb=None, arena_margin=0,
                 lsb_tolerance=DEFAULT_LSB_TOLERANCE, golden_images=None,
                 golden_labels=None, num_golden=micro_app.DEFAULT_NUM_GOLDEN,
                 progress=False):
    """The whole micro path for a `.tflite` file: report (on `images`), C
    array, template, and golden images taken from `golden_images` (default:
    `images`), one per class of `golden_labels` (default: of the class
    Python predicts). `progress` shows a bar over the arena search.

    The app compiles in the model's micro form (`micro_model`: no strings,
    one zero point per weight tensor), checked to give the converted
    model's outputs in TFLM bit for bit (else RuntimeError)."""
    with open(tflite_path, "rb") as f:
        converted = f.read()
    data, dropped = micro_model(converted)
    if golden_images is None:
        golden_images = images
    if golden_images is None or not len(golden_images):
        raise ValueError("export_micro needs test images: the app's test "
                         "checks the firmware on golden images taken from them.")
    if class_names is None:
        found = find_labels_file(tflite_path)
        class_names = read_labels(found) if found else None
    report = micro_report(data, images, flash_kb, ram_kb, lsb_tolerance,
                          progress=progress, litert_bytes=converted)
    report["converted_bytes"] = len(converted)
    report["dropped_for_micro"] = dropped
    if not same_micro_outputs(data, converted, golden_images[:NUM_SAME_CHECK]):
        raise RuntimeError(
            f"{tflite_path}: TFLite Micro answers differently once the model's "
            "unused strings and zero points are dropped (micro_model); this is "
            "a bug: please report it with the .tflite.")
    golden = golden_set(data, golden_images, golden_labels, report["arena_bytes"],
                        num_golden)
    report["golden"] = {"num_images": len(golden[0]),
                        "labels": [int(v) for v in golden[2]],
                        "python_top": [int(v) for v in golden[1].argmax(-1)]}
    report["files"] = micro_app.render_template(
        data, out_dir, report["arena_bytes"], class_names, arena_margin,
        golden=golden)
    return report

