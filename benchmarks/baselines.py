"""The models MDNet is benchmarked against, and its two ablations.

Every builder takes `(input_shape, num_classes)` and returns a functional
`keras.Model` that takes raw 0..255 pixels and normalises them itself with
MDNet's own `Rescaling` layer (`mdnet_keras.models.mdnet.normalization`), so
all models share one input pipeline and one TFLite path.

- `mobilenetv2_x1_0`, `mobilenetv2_x0_5`: MobileNetV2 (Sandler et al., 2018)
  for CIFAR: the stem and the first 24-channel stage keep stride 1, so the
  total stride is 8 (as in the public pytorch-cifar-models). Counted the
  Keras way (BatchNorm moving statistics included), x1.0 has 2,270,794
  parameters with 10 classes and 2,386,084 with 100.
- `resnet20`, `resnet56`: ResNet for CIFAR (He et al., 2016, section 4.2):
  3x3 stem with 16 channels, three stages of 16/32/64 channels with n basic
  blocks each (n = 3 and 9), parameter-free "option A" shortcuts (subsample
  by 2, zero-pad the new channels); 0.27M and 0.86M parameters.
- `mdnet`: MDNet, the paper size and the default
  (`mdnet_keras.MDNet(variant="mdnet")`: 3x3 and 5x5 channel groups,
  differential attention in the last stage).
- `mdnet_v1`: MDNet's first paper-size design (3/5/7/9 channel groups,
  attention in the last two stages, per-head RMS norm), which the shipped
  CIFAR-10 weights were trained with.
- `mdnet_standard_attention`: MDNet with standard softmax attention of the
  same shape in place of differential attention (`attention="standard"`):
  640 fewer parameters (the lambda vectors and the head norm), -0.03%.
- `mdnet_single_kernel`: MDNet with one 5x5 kernel for all channels in
  place of the 3x3 / 5x5 channel split (`kernel_sizes=(5,)`). A 5x5
  depthwise kernel has 25 weights per channel against 17 on average for
  the split, so at the same widths the model is 20,992 parameters larger;
  the 1x1 head conv is narrowed from 1024 to 946 channels (270 parameters
  per channel) to compensate, which leaves it within 0.01% of MDNet. The
  backbone widths, depths and heads are unchanged.
- `mdnet_kernels_3_5`, `mdnet_kernels_3`: `mdnet_v1` with small kernels
  only (`kernel_sizes=(3, 5)` and `(3,)`), its int8 latency options:
  XNNPACK runs depthwise kernels of up to 25 taps on its fast path, so these
  need no kernel pieces (`benchmarks/int8_breakdown.py`). Not size-matched:
  44,544 and 59,392 fewer parameters than `mdnet_v1` (-1.9% and -2.6%).
- `mdnet_micro`: the microcontroller variant, small and fast: what the quick
  suite and the tests use.
"""

import keras
from keras import ops

import mdnet_keras
from mdnet_keras.models.mdnet import normalization

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3
# MobileNetV2 blocks: (expansion t, channels c, repeats n, first stride s).
# The ImageNet table, with the 24-channel stage at stride 1 for 32x32 inputs.
MOBILENETV2_CIFAR_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
SINGLE_KERNEL_SIZE = 5
SINGLE_KERNEL_HEAD_CHANNELS = 946


def batch_norm(name):
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name
    )


def make_divisible(value, divisor=8):
    """Rounds a width to a multiple of `divisor`, never 10% below `value`."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def classifier(x, num_classes, dropout_rate):
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate:
        x = keras.layers.Dropout(dropout_rate, name="top_dropout")(x)
    return keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="predictions"
    )(x)


# === MobileNetV2 for CIFAR ===


def inverted_residual(x, expansion, filters, strides, name):
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = keras.layers.Conv2D(
            in_channels * expansion, 1, use_bias=False, name=f"{name}_expand"
        )(y)
        y = batch_norm(f"{name}_expand_bn")(y)
        y = keras.layers.ReLU(6.0, name=f"{name}_expand_relu")(y)
    y = keras.layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False,
        name=f"{name}_depthwise",
    )(y)
    y = batch_norm(f"{name}_depthwise_bn")(y)
    y = keras.layers.ReLU(6.0, name=f"{name}_depthwise_relu")(y)
    y = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(y)
    y = batch_norm(f"{name}_project_bn")(y)
    if strides == 1 and in_channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def MobileNetV2CIFAR(input_shape=(32, 32, 3), num_classes=10, alpha=1.0,
                     dropout_rate=0.2, name=None):
    """MobileNetV2 with total stride 8, for 32x32 images.

    Args:
        input_shape: tuple (height, width, channels), channels 1 or 3.
        num_classes: int, number of classes.
        alpha: float, width multiplier (channels rounded to multiples of 8;
            the last 1x1 conv keeps 1280 channels for alpha <= 1).
        dropout_rate: float, dropout before the classifier.
        name: str, model name.

    Returns:
        A functional `keras.Model` on raw 0..255 pixels.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = normalization(input_shape[-1])(inputs)
    x = keras.layers.Conv2D(
        make_divisible(32 * alpha), 3, padding="same", use_bias=False,
        name="stem_conv",
    )(x)
    x = batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    block = 0
    for expansion, channels, repeats, stride in MOBILENETV2_CIFAR_BLOCKS:
        for i in range(repeats):
            x = inverted_residual(
                x, expansion, make_divisible(channels * alpha),
                stride if i == 0 else 1, f"block{block}",
            )
            block += 1
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = keras.layers.Conv2D(last, 1, use_bias=False, name="head_conv")(x)
    x = batch_norm("head_bn")(x)
    x = keras.layers.ReLU(6.0, name="head_relu")(x)
    outputs = classifier(x, num_classes, dropout_rate)
    return keras.Model(
        inputs, outputs, name=name or f"mobilenetv2_cifar_{alpha:g}"
    )


# === ResNet for CIFAR ===


@keras.saving.register_keras_serializable(package="mdnet_benchmarks")
class SubsampleZeroPad(keras.layers.Layer):
    """ResNet's option-A shortcut: keep every 2nd pixel, zero-pad channels.

    Args:
        extra_channels: int, zero channels added (half before, half after).
        **kwargs: base layer arguments.

    Call arguments:
        inputs: tensor (batch, height, width, channels).

    Returns:
        (batch, ceil(height / 2), ceil(width / 2), channels + extra_channels).
    """

    def __init__(self, extra_channels, **kwargs):
        super().__init__(**kwargs)
        self.extra_channels = int(extra_channels)

    def call(self, inputs):
        x = inputs[:, ::2, ::2, :]
        before = self.extra_channels // 2
        after = self.extra_channels - before
        return ops.pad(x, ((0, 0), (0, 0), (0, 0), (before, after)))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        half = lambda s: None if s is None else -(-s // 2)  # noqa: E731
        return (b, half(h), half(w), c + self.extra_channels)

    def get_config(self):
        config = super().get_config()
        config.update({"extra_channels": self.extra_channels})
        return config


def basic_block(x, filters, strides, name):
    in_channels = x.shape[-1]
    y = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=f"{name}_conv1",
    )(x)
    y = batch_norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=f"{name}_conv2",
    )(y)
    y = batch_norm(f"{name}_bn2")(y)
    shortcut = x
    if strides != 1 or in_channels != filters:
        shortcut = SubsampleZeroPad(
            filters - in_channels, name=f"{name}_shortcut"
        )(x)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_relu2")(y)


def ResNetCIFAR(depth, input_shape=(32, 32, 3), num_classes=10, name=None):
    """ResNet-(6n+2) for CIFAR with option-A shortcuts.

    Args:
        depth: int, 6n + 2 (20, 32, 44, 56, 110).
        input_shape: tuple (height, width, channels).
        num_classes: int.
        name: str, model name.

    Returns:
        A functional `keras.Model` on raw 0..255 pixels.
    """
    if (depth - 2) % 6:
        raise ValueError(f"ResNet-CIFAR depth must be 6n + 2. Received: {depth}")
    blocks = (depth - 2) // 6
    inputs = keras.Input(shape=input_shape, name="image")
    x = normalization(input_shape[-1])(inputs)
    x = keras.layers.Conv2D(
        16, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
        name="stem_conv",
    )(x)
    x = batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64)):
        for i in range(blocks):
            strides = 2 if stage > 0 and i == 0 else 1
            x = basic_block(x, filters, strides, f"stage{stage + 1}_block{i}")
    outputs = classifier(x, num_classes, 0.0)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


# === Registry ===


def mdnet_builder(**kwargs):
    def build(input_shape, num_classes):
        return mdnet_keras.MDNet(
            input_shape=input_shape, num_classes=num_classes, **kwargs
        )

    return build


MODELS = {
    "mdnet": {
        "build": mdnet_builder(variant="mdnet"),
        "description": "MDNet (paper size, the default): multi-scale 3/5, "
                       "differential attention in the last stage",
    },
    "mdnet_v1": {
        "build": mdnet_builder(variant="mdnet_v1"),
        "description": "MDNet's first design: multi-scale 3/5/7/9, "
                       "differential attention in the last two stages",
    },
    "mobilenetv2_x1_0": {
        "build": lambda shape, classes: MobileNetV2CIFAR(
            shape, classes, 1.0, name="mobilenetv2_x1_0"),
        "description": "MobileNetV2 x1.0 for CIFAR (total stride 8)",
    },
    "mobilenetv2_x0_5": {
        "build": lambda shape, classes: MobileNetV2CIFAR(
            shape, classes, 0.5, name="mobilenetv2_x0_5"),
        "description": "MobileNetV2 x0.5 for CIFAR (total stride 8)",
    },
    "resnet20": {
        "build": lambda shape, classes: ResNetCIFAR(20, shape, classes),
        "description": "ResNet-20 for CIFAR (option-A shortcuts)",
    },
    "resnet56": {
        "build": lambda shape, classes: ResNetCIFAR(56, shape, classes),
        "description": "ResNet-56 for CIFAR (option-A shortcuts)",
    },
    "mdnet_standard_attention": {
        "build": mdnet_builder(variant="mdnet", attention="standard"),
        "description": "ablation: MDNet with standard softmax attention",
    },
    "mdnet_single_kernel": {
        "build": mdnet_builder(
            variant="mdnet",
            kernel_sizes=(SINGLE_KERNEL_SIZE,),
            head_channels=SINGLE_KERNEL_HEAD_CHANNELS,
        ),
        "description": (
            f"ablation: MDNet with one {SINGLE_KERNEL_SIZE}x"
            f"{SINGLE_KERNEL_SIZE} kernel, head narrowed to "
            f"{SINGLE_KERNEL_HEAD_CHANNELS}"
        ),
    },
    "mdnet_kernels_3_5": {
        "build": mdnet_builder(variant="mdnet_v1", kernel_sizes=(3, 5)),
        "description": "mdnet_v1 with kernels 3/5 only (int8 latency option)",
    },
    "mdnet_kernels_3": {
        "build": mdnet_builder(variant="mdnet_v1", kernel_sizes=(3,)),
        "description": "mdnet_v1 with 3x3 kernels only (int8 latency option)",
    },
    "mdnet_micro": {
        "build": mdnet_builder(variant="mdnet_micro"),
        "description": "MDNet micro (microcontroller variant)",
    },
}
# The baseline every ratio is taken against.
REFERENCE_MODEL = "mobilenetv2_x1_0"


def build_model(name, input_shape=(32, 32, 3), num_classes=10):
    """Builds the registered model `name`.

    Args:
        name: str, a key of `MODELS`.
        input_shape: tuple (height, width, channels).
        num_classes: int.

    Returns:
        A functional `keras.Model` on raw 0..255 pixels.
    """
    if name not in MODELS:
        raise ValueError(
            f"Unknown model {name!r}; choose from {sorted(MODELS)}."
        )
    model = MODELS[name]["build"](tuple(input_shape), num_classes)
    return model
