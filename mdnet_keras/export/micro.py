"""TFLite Micro: run the int8 model in the real TFLM interpreter, measure its
arena, export it as a C array with golden test images, and render the C++ app
template (`micro_template/`, package data). `micro_build` builds and runs it.

The TFLM Python wheel (`tflite-micro`, Linux only) is imported lazily; callers
that need it get an ImportError with the reason when it is missing.

Numbers measured here are host numbers (x86-64, reference kernels): see
`tflite/README.md` for the margin to add on a Cortex-M.
"""

import contextlib
import os
import re
import shutil
import tempfile

import numpy as np

from mdnet_keras.export.flatbuffer import describe_ops
from mdnet_keras.export.flatbuffer import io_details
from mdnet_keras.export.keras_model import check_images
from mdnet_keras.export.litert_runner import LiteRTRunner
from mdnet_keras.export.litert_runner import dequantize_output
from mdnet_keras.export.litert_runner import quantize_input
from mdnet_keras.export.side_files import find_labels_file
from mdnet_keras.export.side_files import read_labels

DEFAULT_LSB_TOLERANCE = 2
MODEL_DATA_NAME = "g_mdnet_model_data"
# Package data (pyproject.toml), so that it is found from a regular install.
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "micro_template")
# Golden images written by default: one per class, up to this many.
DEFAULT_NUM_GOLDEN = 10
# Files of the template: copied, with generated values filled in.
TEMPLATE_FILES = (
    "model_settings.h",
    "model_settings.cc",
    "mdnet_op_resolver.h",
    "main_functions.h",
    "main_functions.cc",
    "mdnet_test.cc",
    "cortex_m_qemu_vectors.c",
    "Makefile",
    "BUILD",
    "Makefile.inc",
)

# Builtin op -> MicroMutableOpResolver method. Names that title-casing gets
# wrong are listed; the rest follow `_camel`.
_RESOLVER_EXCEPTIONS = {
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "MAX_POOL_2D": "AddMaxPool2D",
    "L2_POOL_2D": "AddL2Pool2D",
    "L2_NORMALIZATION": "AddL2Normalization",
    "RELU6": "AddRelu6",
    "RELU_N1_TO_1": "AddReluN1To1",
    "PRELU": "AddPrelu",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
}


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


def find_min_arena(tflite_bytes, upper=None):
    """The smallest tensor-arena size (bytes) that TFLM allocates, by bisection.

    Args:
        tflite_bytes: the int8 model.
        upper: a size known to allocate; doubled from 10x the model size
            until it does when not given.

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
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if allocates(tflite_bytes, mid):
            hi = mid
        else:
            lo = mid
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
                        lsb_tolerance=DEFAULT_LSB_TOLERANCE, kernels="reference"):
    """Runs the same images in TFLM and LiteRT and compares the raw outputs.

    The two runtimes round some requantizations differently (measured here:
    1 LSB from the first MUL/ADD on, 0-2 LSB after SOFTMAX and BATCH_MATMUL),
    so outputs differ by a few least-significant bits in a shallow model;
    in a deep one (MDNet-micro: ~140 ops) the 1-LSB differences compound, so
    judge by argmax agreement and report the largest difference. Compared by
    default against LiteRT's reference kernels, the closest to TFLM's
    (`kernels="default"` uses XNNPACK, which differs more). The comparison
    counts images whose largest difference exceeds `lsb_tolerance`.
    """
    micro = MicroRunner(tflite_bytes, arena_size).run_raw(images).astype(np.int32)
    lite = LiteRTRunner(tflite_bytes, kernels=kernels).run_raw(images).astype(np.int32)
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


# ---------------------------------------------------------------------------
# C array and template
# ---------------------------------------------------------------------------


def write_c_array(tflite_bytes, out_dir, var_name=MODEL_DATA_NAME,
                  basename="model_data"):
    """Writes `<basename>.cc` / `.h` holding the model as a C array.

    The array is 16-byte aligned (TFLM reads the flatbuffer in place).

    Returns:
        (cc_path, h_path)
    """
    os.makedirs(out_dir, exist_ok=True)
    data = bytes(tflite_bytes)
    guard = f"MDNET_{basename.upper()}_H_"
    h_path = os.path.join(out_dir, basename + ".h")
    cc_path = os.path.join(out_dir, basename + ".cc")
    with open(h_path, "w") as f:
        f.write(
            "// Generated by mdnet_keras.export.micro.write_c_array. Do not edit.\n"
            f"#ifndef {guard}\n#define {guard}\n\n"
            f"extern const unsigned char {var_name}[];\n"
            f"extern const unsigned int {var_name}_len;\n\n"
            f"#endif  // {guard}\n"
        )
    lines = []
    for i in range(0, len(data), 12):
        chunk = data[i : i + 12]
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    with open(cc_path, "w") as f:
        f.write(
            "// Generated by mdnet_keras.export.micro.write_c_array. Do not edit.\n"
            f'#include "{basename}.h"\n\n'
            f"alignas(16) const unsigned char {var_name}[] = {{\n"
            + "\n".join(lines)
            + "\n};\n"
            f"const unsigned int {var_name}_len = {len(data)};\n"
        )
    return cc_path, h_path


def read_c_array(cc_path):
    """Reads the bytes back from a `model_data.cc` written by `write_c_array`.

    Checks the declared `_len` against the number of bytes.
    """
    with open(cc_path) as f:
        text = f.read()
    m = re.search(r"\[\]\s*=\s*\{(.*?)\};", text, re.S)
    if not m:
        raise ValueError(f"{cc_path}: no array initializer found.")
    data = bytes(int(tok, 16) for tok in re.findall(r"0x([0-9a-fA-F]{2})", m.group(1)))
    n = re.search(r"_len\s*=\s*(\d+)\s*;", text)
    if n and int(n.group(1)) != len(data):
        raise ValueError(
            f"{cc_path}: declares {n.group(1)} bytes but holds {len(data)}."
        )
    return data


def golden_pixels(images):
    """The images as the firmware receives them: uint8 pixels 0..255."""
    return np.clip(np.round(np.asarray(images, np.float32)), 0, 255).astype(np.uint8)


def select_golden(raw_outputs, labels=None, max_images=DEFAULT_NUM_GOLDEN):
    """Picks golden images: one per class (in class order) where there is one.

    Of the images of a class, the one that the Python TFLM interpreter gives
    to that class by the widest margin over the runner-up, so that the
    firmware's winning-class check does not hinge on a near-tie; the first
    image of the class when none is classified right.

    Args:
        raw_outputs: (N, classes) raw int8/uint8 outputs of `MicroRunner`.
        labels: (N,) true labels; the predicted classes when None.
        max_images: at most this many images.

    Returns:
        list of indices into `raw_outputs`.
    """
    raw = np.asarray(raw_outputs).astype(np.int32)
    top = raw.argmax(-1)
    labels = top if labels is None else np.asarray(labels).reshape(-1)
    ranked = np.sort(raw, axis=-1)
    margin = ranked[:, -1] - ranked[:, -2] if raw.shape[-1] > 1 else ranked[:, -1]
    picked = []
    for c in range(raw.shape[-1]):
        if len(picked) == max_images:
            break
        of_class = np.flatnonzero(labels == c)
        if not len(of_class):
            continue
        right = of_class[top[of_class] == c]
        picked.append(int(right[margin[right].argmax()] if len(right) else of_class[0]))
    return picked


def _c_rows(values, per_line, indent="    "):
    return "\n".join(
        indent + ", ".join(str(int(v)) for v in values[i : i + per_line]) + ","
        for i in range(0, len(values), per_line))


def write_golden_images(out_dir, pixels, expected, labels):
    """Writes `golden_images.cc/.h`: test images and the outputs Python expects.

    Args:
        out_dir: the app folder.
        pixels: (N, H, W, C) uint8 images (`golden_pixels`).
        expected: (N, classes) raw outputs of the Python TFLM interpreter
            on exactly these pixels.
        labels: (N,) the images' classes.

    Returns:
        (cc_path, h_path)
    """
    pixels, expected = np.asarray(pixels), np.asarray(expected).astype(np.int32)
    labels = np.asarray(labels).reshape(-1)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or not len(pixels):
        raise ValueError(f"golden images: expected uint8 (N, H, W, C) with N > 0, "
                         f"got {pixels.dtype} {pixels.shape}")
    if not (len(pixels) == len(expected) == len(labels)):
        raise ValueError(f"golden images: {len(pixels)} images, {len(expected)} "
                         f"outputs and {len(labels)} labels")
    h_path = os.path.join(out_dir, "golden_images.h")
    cc_path = os.path.join(out_dir, "golden_images.cc")
    with open(h_path, "w") as f:
        f.write(
            "// Generated by mdnet_keras.export.micro.write_golden_images. Do not edit.\n"
            "#ifndef MDNET_GOLDEN_IMAGES_H_\n#define MDNET_GOLDEN_IMAGES_H_\n\n"
            "#include <cstdint>\n\n#include \"model_settings.h\"\n\n"
            f"constexpr int kNumGoldenImages = {len(pixels)};\n"
            "// Raw pixels, as Classify() takes them.\n"
            "extern const uint8_t kGoldenImages[kNumGoldenImages][kMaxImageSize];\n"
            "// The raw outputs of the Python TFLite Micro interpreter.\n"
            "extern const int16_t kGoldenOutputs[kNumGoldenImages][kCategoryCount];\n"
            "// The images' classes (indices into kCategoryLabels).\n"
            "extern const int kGoldenLabels[kNumGoldenImages];\n\n"
            "#endif  // MDNET_GOLDEN_IMAGES_H_\n")
    with open(cc_path, "w") as f:
        f.write("// Generated by mdnet_keras.export.micro.write_golden_images. Do not edit.\n"
                '#include "golden_images.h"\n\n'
                "const uint8_t kGoldenImages[kNumGoldenImages][kMaxImageSize] = {\n")
        for img in pixels:
            f.write("  {\n" + _c_rows(img.reshape(-1), 24) + "\n  },\n")
        f.write("};\n\nconst int16_t kGoldenOutputs[kNumGoldenImages][kCategoryCount] = {\n")
        for out in expected:
            f.write("  {" + ", ".join(str(int(v)) for v in out) + "},\n")
        f.write("};\n\nconst int kGoldenLabels[kNumGoldenImages] = {"
                + ", ".join(str(int(v)) for v in labels) + "};\n")
    return cc_path, h_path


def read_golden_images(out_dir):
    """Reads `golden_images.cc` back: (pixels (N, pixels) uint8, outputs
    (N, classes) int32, labels (N,))."""
    with open(os.path.join(out_dir, "golden_images.cc")) as f:
        text = f.read()

    def block(name):
        m = re.search(rf"{name}\[[^=]*=\s*\{{(.*?)\}};", text, re.S)
        if not m:
            raise ValueError(f"golden_images.cc: no {name} array")
        return m.group(1)

    def rows(body):
        return [[int(v) for v in re.findall(r"-?\d+", r)]
                for r in re.findall(r"\{([^{}]*)\}", body)]

    pixels = np.array(rows(block("kGoldenImages")), np.uint8)
    outputs = np.array(rows(block("kGoldenOutputs")), np.int32)
    labels = np.array([int(v) for v in re.findall(r"-?\d+", block("kGoldenLabels"))])
    return pixels, outputs, labels


def _camel(op):
    return "Add" + "".join(p.capitalize() for p in op.lower().split("_"))


def resolver_method(op):
    """`MicroMutableOpResolver` method that registers builtin `op`."""
    if op.startswith("CUSTOM"):
        raise ValueError(f"custom op {op!r} has no builtin registration")
    return _RESOLVER_EXCEPTIONS.get(op, _camel(op))


def model_ops(tflite_bytes):
    """The distinct builtin ops of the model, in first-use order."""
    seen = []
    for op in describe_ops(tflite_bytes):
        if op["op"] not in seen:
            seen.append(op["op"])
    return seen


def _replace_constant(text, name, value):
    pattern = re.compile(rf"(constexpr\s+int\s+{name}\s*=\s*)[^;]*(;)")
    if not pattern.search(text):
        raise ValueError(f"template has no constant {name}")
    return pattern.sub(rf"\g<1>{value}\g<2>", text)


def _replace_block(text, tag, body):
    pattern = re.compile(
        rf"(// BEGIN GENERATED {tag}\n).*?(\s*// END GENERATED {tag})", re.S
    )
    if not pattern.search(text):
        raise ValueError(f"template has no generated block {tag}")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + m.group(2), text)


def render_template(tflite_bytes, out_dir, arena_size, class_names=None,
                    arena_margin=0, template_dir=TEMPLATE_DIR, golden=None):
    """Writes a ready-to-build TFLM app: the template files with this model's
    values, the model as `model_data.cc/.h` and, given `golden`, the golden
    images the app's test checks (`golden_images.cc/.h`; the app's Makefile
    needs them).

    Args:
        tflite_bytes: the int8 (or uint8-I/O) model.
        out_dir: folder to write.
        arena_size: the measured smallest arena (`find_min_arena`).
        class_names: labels, in output order (defaults to "class_<i>").
        arena_margin: bytes added on top of the measured size in
            `kTensorArenaSize` (the Cortex-M margin; see the README).
        template_dir: the template to render.
        golden: `(pixels, expected, labels)` for `write_golden_images`.

    Returns:
        dict of written paths.
    """
    details = io_details(tflite_bytes)
    inp, out = details["inputs"][0], details["outputs"][0]
    if inp["dtype"] not in ("int8", "uint8"):
        raise ValueError(
            f"TFLM template expects an int8/uint8 model input, got {inp['dtype']}; "
            "convert with --mode=int8."
        )
    _, rows, cols, channels = inp["shape"]
    num_classes = out["shape"][-1]
    names = list(class_names) if class_names is not None else [
        f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} outputs")
    ops = model_ops(tflite_bytes)
    methods = [resolver_method(op) for op in ops]

    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for fname in TEMPLATE_FILES:
        src = os.path.join(template_dir, fname)
        with open(src) as f:
            text = f.read()
        if fname == "model_settings.h":
            for name, value in (("kNumRows", rows), ("kNumCols", cols),
                                ("kNumChannels", channels),
                                ("kCategoryCount", num_classes),
                                ("kMeasuredTensorArenaSize", arena_size),
                                ("kTensorArenaMargin", arena_margin)):
                text = _replace_constant(text, name, int(value))
        elif fname == "model_settings.cc":
            body = "".join(
                "    \"" + n.replace("\\", "\\\\").replace("\"", "\\\"") + "\",\n"
                for n in names
            )
            text = _replace_block(text, "LABELS", body)
        elif fname == "mdnet_op_resolver.h":
            text = _replace_constant(text, "kNumOps", len(methods))
            body = "".join(
                f"  TF_LITE_ENSURE_STATUS(resolver.{m}());  // {op}\n"
                for m, op in zip(methods, ops)
            )
            text = _replace_block(text, "OPS", body)
        dst = os.path.join(out_dir, fname)
        with open(dst, "w") as f:
            f.write(text)
        written[fname] = dst
    cc, h = write_c_array(tflite_bytes, out_dir)
    written["model_data.cc"], written["model_data.h"] = cc, h
    if golden is not None:
        cc, h = write_golden_images(out_dir, *golden)
        written["golden_images.cc"], written["golden_images.h"] = cc, h
    return written


def parse_template(out_dir):
    """Reads back the values a rendered template holds (for tests and checks).

    Returns:
        dict: `ops` (resolver methods in order), `num_ops` (the `kNumOps`
        constant), `arena` (kMeasuredTensorArenaSize), `margin`, `rows`,
        `cols`, `channels`, `categories`, `labels`.
    """
    def read(name):
        with open(os.path.join(out_dir, name)) as f:
            return f.read()

    def const(text, name):
        m = re.search(rf"constexpr\s+int\s+{name}\s*=\s*(\d+)\s*;", text)
        if not m:
            raise ValueError(f"{name} not found")
        return int(m.group(1))

    settings = read("model_settings.h")
    resolver = read("mdnet_op_resolver.h")
    labels_cc = read("model_settings.cc")
    block = re.search(r"// BEGIN GENERATED OPS\n(.*?)// END GENERATED OPS", resolver, re.S)
    ops = re.findall(r"resolver\.(Add\w+)\(\)", block.group(1))
    lblock = re.search(r"// BEGIN GENERATED LABELS\n(.*?)// END GENERATED LABELS", labels_cc, re.S)
    labels = re.findall(r'"((?:[^"\\]|\\.)*)"', lblock.group(1))
    return {
        "ops": ops,
        "num_ops": const(resolver, "kNumOps"),
        "arena": const(settings, "kMeasuredTensorArenaSize"),
        "margin": const(settings, "kTensorArenaMargin"),
        "rows": const(settings, "kNumRows"),
        "cols": const(settings, "kNumCols"),
        "channels": const(settings, "kNumChannels"),
        "categories": const(settings, "kCategoryCount"),
        "labels": labels,
    }


def micro_report(tflite_bytes, images, flash_kb=None, ram_kb=None,
                 lsb_tolerance=DEFAULT_LSB_TOLERANCE):
    """Arena, flash, TFLM-vs-LiteRT agreement and the target checks."""
    arena = find_min_arena(tflite_bytes)
    report = {
        "arena_bytes": arena,
        "arena_fails_below": not allocates(tflite_bytes, arena - 1),
        "flash_bytes": len(tflite_bytes),
        "ops": model_ops(tflite_bytes),
        "host": "x86-64 TFLM Python wheel, reference kernels",
    }
    if images is not None and len(images):
        report["vs_litert"] = compare_with_litert(
            tflite_bytes, images, arena, lsb_tolerance)
    report["targets"] = check_targets(len(tflite_bytes), arena, flash_kb, ram_kb)
    return report


def golden_set(tflite_bytes, images, labels=None, arena_size=None,
               max_images=DEFAULT_NUM_GOLDEN, candidates_per_class=8):
    """Golden images for the app's test and the outputs Python gives them.

    Runs candidate images (the first `candidates_per_class` of each class
    when `labels` are given, else all) as uint8 pixels in the Python TFLM
    interpreter, picks one per class with `select_golden` and returns
    `(pixels, expected, labels)` for `write_golden_images`.
    """
    pixels = golden_pixels(images)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        keep = np.sort(np.concatenate([
            np.flatnonzero(labels == c)[:candidates_per_class]
            for c in np.unique(labels)]))
        pixels, labels = pixels[keep], labels[keep]
    raw = MicroRunner(tflite_bytes, arena_size).run_raw(pixels)
    picked = select_golden(raw, labels, max_images)
    classes = raw.argmax(-1) if labels is None else labels
    return pixels[picked], raw[picked], classes[picked]


def export_micro(tflite_path, out_dir, images=None, class_names=None,
                 flash_kb=None, ram_kb=None, arena_margin=0,
                 lsb_tolerance=DEFAULT_LSB_TOLERANCE, golden_images=None,
                 golden_labels=None, num_golden=DEFAULT_NUM_GOLDEN):
    """The whole micro path for a `.tflite` file: report (on `images`), C
    array, template, and golden images taken from `golden_images` (default:
    `images`), one per class of `golden_labels` (default: of the class
    Python predicts)."""
    with open(tflite_path, "rb") as f:
        data = f.read()
    if golden_images is None:
        golden_images = images
    if golden_images is None or not len(golden_images):
        raise ValueError("export_micro needs test images: the app's test "
                         "checks the firmware on golden images taken from them.")
    if class_names is None:
        found = find_labels_file(tflite_path)
        class_names = read_labels(found) if found else None
    report = micro_report(data, images, flash_kb, ram_kb, lsb_tolerance)
    golden = golden_set(data, golden_images, golden_labels, report["arena_bytes"],
                        num_golden)
    report["golden"] = {"num_images": len(golden[0]),
                        "labels": [int(v) for v in golden[2]],
                        "python_top": [int(v) for v in golden[1].argmax(-1)]}
    report["files"] = render_template(
        data, out_dir, report["arena_bytes"], class_names, arena_margin,
        golden=golden)
    return report


def copy_template(out_dir, template_dir=TEMPLATE_DIR):
    """Copies the unrendered template (for inspection)."""
    shutil.copytree(template_dir, out_dir, dirs_exist_ok=True)
