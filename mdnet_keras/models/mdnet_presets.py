"""MDNet variants: named architecture configs, plain data.

Each entry's `config` holds the architecture arguments of `MDNet`. The
figures in the README's variant table come from `mdnet_keras.profile`.
"""

import os

# MDNet's first paper-size design; the default `mdnet` changes three things
# of it (benchmarks/results/int8_options/kernels_3_5/).
MDNET_V1_CONFIG = {
    "stem_channels": 24,
    "stage_channels": (24, 48, 128, 256),
    "stage_depths": (1, 2, 3, 3),
    "stage_types": ("conv", "conv", "mdiff", "mdiff"),
    "num_heads": (0, 0, 4, 4),
    "kernel_sizes": (3, 5, 7, 9),
    "expansion_ratio": 4,
    "mlp_ratio": 3,
    "head_channels": 1024,
}

MDNET_VARIANTS = {
    "mdnet": {
        "description": (
            "The paper size and the default: 2.28M parameters at 32x32x3 "
            "with 100 classes (the paper's: 2.38M). Conv stages with 3x3 and "
            "5x5 channel groups at 32x32, 16x16 and 8x8, an MDIFFormer stage "
            "(differential attention over 16 tokens, per-head BatchNorm) at "
            "4x4."
        ),
        "config": dict(
            MDNET_V1_CONFIG,
            stage_types=("conv", "conv", "conv", "mdiff"),
            num_heads=(0, 0, 0, 4),
            kernel_sizes=(3, 5),
            head_norm="batch",
        ),
    },
    "mdnet_v1": {
        "description": (
            "The first paper-size design, which the shipped `cifar10` "
            "weights were trained with: 2.38M parameters at 32x32x3 with 100 "
            "classes. Conv stages at 32x32 and 16x16, MDIFFormer stages "
            "(differential attention over 64 and 16 tokens, per-head RMS "
            "norm) at 8x8 and 4x4, 3/5/7/9 channel groups."
        ),
        "config": MDNET_V1_CONFIG,
    },
    "mdnet_small": {
        "description": (
            "About 1M parameters: the layout of `mdnet_v1`, narrower, for "
            "phones and Coral-class devices."
        ),
        "config": {
            "stem_channels": 16,
            "stage_channels": (16, 32, 80, 160),
            "stage_depths": (1, 2, 3, 3),
            "stage_types": ("conv", "conv", "mdiff", "mdiff"),
            "num_heads": (0, 0, 2, 4),
            "kernel_sizes": (3, 5, 7, 9),
            "expansion_ratio": 4,
            "mlp_ratio": 3,
            "head_channels": 640,
        },
    },
    "mdnet_micro": {
        "description": (
            "For microcontrollers: under 600 KB of int8 weights and a "
            "tensor arena under 256 KB at 32x32x3."
        ),
        "config": {
            "stem_channels": 16,
            "stage_channels": (16, 32, 64, 96),
            "stage_depths": (1, 2, 2, 2),
            "stage_types": ("conv", "conv", "mdiff", "mdiff"),
            "num_heads": (0, 0, 2, 2),
            "kernel_sizes": (3, 5, 7, 9),
            "expansion_ratio": 3,
            "mlp_ratio": 2,
            "head_channels": 384,
        },
    },
}

# Trained weights shipped inside the package (weights only, no optimizer
# state), by the name `MDNet(weights=...)` takes: each entry gives
# `variant`, `num_classes`, `file` (under mdnet_keras/weights/, listed in
# pyproject's package-data), its measured accuracy and how it was made.
MDNET_WEIGHTS = {
    "cifar10": {
        "variant": "mdnet",
        "num_classes": 10,
        "file": "mdnet_cifar10.weights.h5",
        "sha256": (
            "e3da4a05a243e73d06e85d7955c87c987b1a8b41d592ce30c1e76db1418759b1"
        ),
        "top1": 0.8755,
        "top5": 0.9953,
        "evaluated_on": "the 10,000 CIFAR-10 test images (JPEG copy)",
        "trained": (
            "python benchmarks/recipe.py --models=mdnet --recipes=fast "
            "--epochs=15 --train_images=50000 --batch_size=256: the "
            "package's training loop, recipe fast, seed 0, float32, Keras "
            "3.15.1 on JAX, one NVIDIA H200 shared with four other "
            "trainings; the 50,000 training images re-encoded as JPEG "
            "quality 95 (benchmarks/results/gpu/recipe15/)"
        ),
    },
}


def weights_path(name):
    """The path of the shipped weights file of entry `name`."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package_dir, "weights", MDNET_WEIGHTS[name]["file"])
