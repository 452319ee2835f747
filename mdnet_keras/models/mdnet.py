"""MDNet: a lightweight multi-scale differential-attention image classifier."""

import logging
import os
import zipfile

import keras

from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers import DropPath
from mdnet_keras.layers import MultiScaleChannelConv
from mdnet_keras.layers import PixelNormalization
from mdnet_keras.layers import StandardAttention
from mdnet_keras.models.mdnet_presets import MDNET_VARIANTS
from mdnet_keras.models.mdnet_presets import MDNET_WEIGHTS
from mdnet_keras.models.mdnet_presets import weights_path

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3
MIN_INPUT_SIZE = 32
# Per-channel statistics of CIFAR-10's training images (0..1 scale); the
# grey model uses their mean. Normalising inside the model means a deployed
# .tflite takes raw 0..255 pixels.
RGB_MEAN = (0.4914, 0.4822, 0.4465)
RGB_STD = (0.2470, 0.2435, 0.2616)
ATTENTION_LAYERS = {
    "differential": DifferentialAttention,
    "standard": StandardAttention,
}
STAGE_TYPES = ("conv", "mdiff")
# Architecture keys a variant's config may leave out.
ARCHITECTURE_DEFAULTS = {"dilation_rates": None, "cascade": False, "head_norm": "rms"}

logger = logging.getLogger(__name__)


def batch_norm(name):
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name
    )


def ConvBnAct(filters, kernel_size, strides, activation, name):
    """Conv2D, BatchNorm and (optionally) an activation."""

    def apply(x):
        x = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            name=f"{name}_conv",
        )(x)
        x = batch_norm(f"{name}_bn")(x)
        if activation:
            x = keras.layers.Activation(activation, name=f"{name}_act")(x)
        return x

    return apply


def MultiScaleConvBlock(
    filters,
    strides,
    expansion_ratio,
    multiscale,
    activation,
    drop_path_rate,
    name,
):
    """Inverted residual block whose depthwise step is multi-scale.

    1x1 expansion, `MultiScaleChannelConv` (one kernel size per channel
    group; `multiscale` holds its arguments), 1x1 projection; a residual
    connection when the shape allows.
    """

    def apply(inputs):
        in_channels = inputs.shape[-1]
        x = ConvBnAct(
            in_channels * expansion_ratio, 1, 1, activation, f"{name}_expand"
        )(inputs)
        x = MultiScaleChannelConv(
            strides=strides, name=f"{name}_multiscale", **multiscale
        )(x)
        x = batch_norm(f"{name}_multiscale_bn")(x)
        x = keras.layers.Activation(activation, name=f"{name}_multiscale_act")(
            x
        )
        x = ConvBnAct(filters, 1, 1, None, f"{name}_project")(x)
        if strides == 1 and in_channels == filters:
            x = DropPath(drop_path_rate, name=f"{name}_drop_path")(x)
            x = keras.layers.Add(name=f"{name}_add")([inputs, x])
        return x

    return apply


def MDIFFormerBlock(
    num_heads,
    depth,
    multiscale,
    mlp_ratio,
    activation,
    drop_path_rate,
    attention,
    head_norm,
    name,
):
    """The Multi-scale Differential Transformer block.

    Three residual branches on a `(batch, height, width, channels)` map:
    1. multi-scale local mixing: `MultiScaleChannelConv` over channel groups
       (also gives the tokens their position; `multiscale` holds its
       arguments);
    2. global mixing: self-attention (differential by default) over the
       `height * width` tokens;
    3. a 1x1-conv MLP.
    Pre-norms are BatchNorm, which folds into an int8 model (LayerNorm
    leaves float ops behind in TFLite).
    """

    def residual(inputs, branch, suffix):
        branch = DropPath(drop_path_rate, name=f"{name}_{suffix}_drop_path")(
            branch
        )
        return keras.layers.Add(name=f"{name}_{suffix}_add")([inputs, branch])

    def apply(inputs):
        _, height, width, channels = inputs.shape
        x = MultiScaleChannelConv(name=f"{name}_multiscale", **multiscale)(
            inputs
        )
        x = residual(inputs, batch_norm(f"{name}_multiscale_bn")(x), "local")

        tokens = batch_norm(f"{name}_attention_norm")(x)
        tokens = keras.layers.Reshape(
            (height * width, channels), name=f"{name}_to_tokens"
        )(tokens)
        tokens = attention_layer(attention, num_heads, depth, head_norm, name)(
            tokens
        )
        tokens = keras.layers.Reshape(
            (height, width, channels), name=f"{name}_to_map"
        )(tokens)
        x = residual(x, tokens, "attention")

        y = batch_norm(f"{name}_mlp_norm")(x)
        y = ConvBnAct(channels * mlp_ratio, 1, 1, activation, f"{name}_mlp1")(
            y
        )
        y = keras.layers.Conv2D(channels, 1, name=f"{name}_mlp2_conv")(y)
        return residual(x, y, "mlp")

    return apply


def attention_layer(kind, num_heads, depth, head_norm, block_name):
    if kind == "differential":
        return DifferentialAttention(
            num_heads,
            depth=depth,
            head_norm=head_norm,
            name=f"{block_name}_attention",
        )
    return StandardAttention(num_heads, name=f"{block_name}_attention")


def validate_input_shape(input_shape):
    """Checks an `(height, width, channels)` input shape; returns a tuple."""
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(
            "`input_shape` must be (height, width, channels). Received: "
            f"input_shape={input_shape}"
        )
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise ValueError(
            "MDNet takes images with 1 (grey) or 3 (RGB) channels. "
            f"Received: input_shape={tuple(input_shape)} ({channels} channels)"
        )
    if height is None or width is None:
        raise ValueError(
            "MDNet needs a static height and width (TFLite and attention "
            f"over a fixed token grid). Received: input_shape={input_shape}"
        )
    if min(height, width) < MIN_INPUT_SIZE:
        raise ValueError(
            f"MDNet needs inputs of at least {MIN_INPUT_SIZE}x"
            f"{MIN_INPUT_SIZE} pixels. Received: input_shape="
            f"{tuple(input_shape)}"
        )
    return tuple(int(d) for d in input_shape)


def resolve_variant(variant, weights):
    """`variant`, or when it is None the shipped `weights`' or `"mdnet"`."""
    shipped = MDNET_WEIGHTS.get(weights) if isinstance(weights, str) else None
    if variant is None:
        return shipped["variant"] if shipped else "mdnet"
    if shipped and variant != shipped["variant"]:
        raise ValueError(
            f"The shipped weights '{weights}' are for variant "
            f"'{shipped['variant']}'. Received: variant='{variant}'. Leave "
            "`variant` out (or pass that one) to load them."
        )
    return variant


def resolve_architecture(variant, overrides):
    """The variant's config with the non-None `overrides` applied."""
    if variant not in MDNET_VARIANTS:
        raise ValueError(
            f"Unknown MDNet variant '{variant}'. Choose one of "
            f"{sorted(MDNET_VARIANTS)}."
        )
    config = dict(ARCHITECTURE_DEFAULTS)
    config.update(MDNET_VARIANTS[variant]["config"])
    config.update({k: v for k, v in overrides.items() if v is not None})
    lengths = {
        key: len(config[key])
        for key in ("stage_channels", "stage_depths", "stage_types", "num_heads")
    }
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"Per-stage arguments must have one entry per stage. Received "
            f"lengths: {lengths}"
        )
    if config["dilation_rates"] is not None and len(
        config["dilation_rates"]
    ) != len(config["kernel_sizes"]):
        raise ValueError(
            "`dilation_rates` needs one entry per kernel size. Received: "
            f"dilation_rates={config['dilation_rates']}, "
            f"kernel_sizes={config['kernel_sizes']}"
        )
    unknown = set(config["stage_types"]) - set(STAGE_TYPES)
    if unknown:
        raise ValueError(
            f"Unknown stage types {sorted(unknown)}; choose from {STAGE_TYPES}."
        )
    return config


def normalization(channels):
    mean = RGB_MEAN if channels == 3 else (sum(RGB_MEAN) / 3,)
    std = RGB_STD if channels == 3 else (sum(RGB_STD) / 3,)
    return PixelNormalization(mean, std, name="normalization")


def MDNet(
    input_shape=(32, 32, 3),
    num_classes=100,
    include_top=True,
    weights=None,
    input_tensor=None,
    pooling=None,
    classifier_activation="softmax",
    dropout_rate=0.2,
    variant=None,
    attention="differential",
    drop_path_rate=0.0,
    activation="relu6",
    stem_strides=1,
    include_preprocessing=True,
    stem_channels=None,
    stage_channels=None,
    stage_depths=None,
    stage_types=None,
    num_heads=None,
    kernel_sizes=None,
    dilation_rates=None,
    cascade=None,
    head_norm=None,
    expansion_ratio=None,
    mlp_ratio=None,
    head_channels=None,
    name=None,
):
    """Instantiates an MDNet image classifier.

    MDNet stacks a conv stem, multi-scale inverted-residual stages and
    MDIFFormer stages (multi-scale channel-group convolution + differential
    attention + MLP), then a 1x1 conv head. The model takes raw pixels in
    [0, 255] and normalises them itself, so an exported TFLite model needs
    no separate preprocessing.

    Attention runs in the stages of type `"mdiff"`: the last stage of the
    default `"mdnet"`, the last two of the other variants. With the default
    total stride of 8 (stem stride 1) and a 32x32 input, the third stage
    sees 8x8 = 64 tokens and the fourth 4x4 = 16. Tokens grow with the input
    area: (H / 4) * (W / 4) in the third stage, (H / 8) * (W / 8) in the
    fourth, and attention cost with their square, so for large
    inputs raise `stem_strides` (2 or 4).

    References:
        - MDNET (ICETCI 2025, pp. 47-56)
        - [Differential Transformer](https://arxiv.org/abs/2410.05258)
        - [MixConv](https://arxiv.org/abs/1907.09595)

    Args:
        input_shape: tuple `(height, width, channels)`, height and width at
            least 32, channels 1 or 3. Defaults to `(32, 32, 3)`.
        num_classes: int, number of classes. Defaults to 100.
        include_top: bool, whether to include the pooling + classifier head.
            Defaults to `True`.
        weights: `None` (random), a path to a `.keras` or `.weights.h5`
            file, or the name of weights shipped in the package (see
            `mdnet_keras.models.mdnet_presets.MDNET_WEIGHTS`). A `.keras`
            file or shipped weights may come from a model with another head:
            layers whose shapes match are loaded and the rest are reported.
            Nothing is downloaded.
        input_tensor: optional Keras tensor to use as the model's input.
        pooling: `None`, `"avg"` or `"max"`: the pooling applied to the
            features when `include_top=False`. Defaults to `None`.
        classifier_activation: activation of the top layer, or `None` for
            logits. Defaults to `"softmax"`.
        dropout_rate: float, dropout before the classifier. Defaults to 0.2.
        variant: str, one of `"mdnet"`, `"mdnet_v1"`, `"mdnet_small"`,
            `"mdnet_micro"`: the architecture defaults (see
            `mdnet_keras.MDNET_VARIANTS`). Defaults to `"mdnet"`, or with
            the name of shipped `weights` to the variant they were trained
            as (`"mdnet"` for `"cifar10"`).
        attention: `"differential"` or `"standard"` (the ablation: plain
            softmax attention of the same shape). Defaults to
            `"differential"`.
        drop_path_rate: float, the stochastic depth rate of the last block,
            rising linearly from 0 at the first. Defaults to 0.
        activation: activation of convs and MLPs. Defaults to `"relu6"`
            (Edge TPU and TFLite Micro friendly; GELU is not).
        stem_strides: int, stride of the stem conv. Defaults to 1.
        include_preprocessing: bool, whether the model normalises raw
            0..255 pixels itself. Defaults to `True`.
        stem_channels: int, stem width. Defaults to the variant's.
        stage_channels: tuple of ints, each stage's width.
        stage_depths: tuple of ints, blocks per stage (the first block of
            every stage but the first downsamples by 2).
        stage_types: tuple of `"conv"` / `"mdiff"`, each stage's block type.
        num_heads: tuple of ints, differential heads H per stage (queries
            and keys get 2H heads); ignored for conv stages.
        kernel_sizes: tuple of odd ints, the kernel size of each channel
            group in `MultiScaleChannelConv`.
        dilation_rates: tuple of positive ints, the dilation of each
            channel group (same length as `kernel_sizes`), or `None` for
            none: `kernel_sizes=(3, 3, 3, 3)` with `(1, 2, 3, 4)` sees as
            far as 3/5/7/9 kernels at 9 taps per group.
        cascade: bool, chain the channel groups (see
            `MultiScaleChannelConv`): each group's input gets the previous
            group's output added, so `kernel_sizes=(3, 3, 3, 3)` sees as far
            as 3/5/7/9 kernels with undilated 3x3 kernels. Defaults to the
            variant's (`False`).
        head_norm: `"rms"` or `"batch"`, the per-head norm of differential
            attention (see `DifferentialAttention`; `"batch"` leaves no
            RSQRT in an int8 model).
        expansion_ratio: int, expansion of the inverted residual blocks.
        mlp_ratio: int, hidden width of the MDIFFormer MLP over its input.
        head_channels: int, width of the final 1x1 conv.
        name: str, model name. Defaults to the variant name.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> import numpy as np
    >>> import mdnet_keras
    >>> model = mdnet_keras.MDNet(num_classes=10, variant="mdnet_micro")
    >>> model.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape
    (1, 10)
    """
    if include_top and (int(num_classes) != num_classes or num_classes < 1):
        raise ValueError(
            f"`num_classes` must be a positive int. Received: {num_classes}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            f"`pooling` must be None, 'avg' or 'max'. Received: {pooling}"
        )
    if attention not in ATTENTION_LAYERS:
        raise ValueError(
            f"`attention` must be one of {sorted(ATTENTION_LAYERS)}. "
            f"Received: {attention}"
        )
    if input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    input_shape = validate_input_shape(input_shape)
    variant = resolve_variant(variant, weights)
    arch = resolve_architecture(
        variant,
        {
            "stem_channels": stem_channels,
            "stage_channels": stage_channels,
            "stage_depths": stage_depths,
            "stage_types": stage_types,
            "num_heads": num_heads,
            "kernel_sizes": kernel_sizes,
            "dilation_rates": dilation_rates,
            "cascade": cascade,
            "head_norm": head_norm,
            "expansion_ratio": expansion_ratio,
            "mlp_ratio": mlp_ratio,
            "head_channels": head_channels,
        },
    )

    # === Functional Model ===
    inputs = (
        keras.Input(shape=input_shape, name="image")
        if input_tensor is None
        else input_tensor
    )
    x = inputs
    if include_preprocessing:
        x = normalization(input_shape[-1])(x)
    x = ConvBnAct(
        arch["stem_channels"], 3, stem_strides, activation, "stem"
    )(x)
    x = backbone_stages(x, arch, attention, activation, drop_path_rate)
    x = ConvBnAct(arch["head_channels"], 1, 1, activation, "head")(x)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = keras.layers.Dropout(dropout_rate, name="top_dropout")(x)
        # float32 so that softmax and the loss stay exact under mixed
        # precision.
        x = keras.layers.Dense(
            num_classes,
            activation=classifier_activation,
            dtype="float32",
            name="predictions",
        )(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)

    model = keras.Model(inputs, x, name=name or variant)
    if weights is not None:
        load_pretrained(model, weights, input_shape, include_top)
    return model


def backbone_stages(x, arch, attention, activation, drop_path_rate):
    """Applies every stage; the first block of stages 2+ downsamples."""
    total_blocks = sum(arch["stage_depths"])
    multiscale = {
        key: arch[key] for key in ("kernel_sizes", "dilation_rates", "cascade")
    }
    block_index = 0
    stages = zip(
        arch["stage_channels"],
        arch["stage_depths"],
        arch["stage_types"],
        arch["num_heads"],
    )
    for stage, (channels, depth, kind, heads) in enumerate(stages, start=1):
        for i in range(depth):
            name = f"stage{stage}_block{i}"
            rate = drop_path_rate * block_index / max(total_blocks - 1, 1)
            transition = i == 0
            if kind == "conv" or transition:
                x = MultiScaleConvBlock(
                    channels,
                    2 if transition and stage > 1 else 1,
                    arch["expansion_ratio"],
                    multiscale,
                    activation,
                    rate,
                    name,
                )(x)
            else:
                x = MDIFFormerBlock(
                    heads,
                    block_index,
                    multiscale,
                    arch["mlp_ratio"],
                    activation,
                    rate,
                    attention,
                    arch["head_norm"],
                    name,
                )(x)
            block_index += 1
    return x


def load_pretrained(model, weights, input_shape, include_top):
    """Loads `weights` (a shipped name or a local file) into `model`."""
    if weights in MDNET_WEIGHTS:
        entry = MDNET_WEIGHTS[weights]
        source = MDNet(
            input_shape=input_shape,
            num_classes=entry["num_classes"],
            variant=entry["variant"],
        )
        source.load_weights(weights_path(weights))
        copy_matching_weights(source, model)
        return
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise ValueError(
            f"`weights` must be None, a shipped name ({sorted(MDNET_WEIGHTS)}) "
            f"or an existing .keras / .weights.h5 file. Received: {weights}"
        )
    if path.endswith(".keras"):
        try:
            source = keras.saving.load_model(path, compile=False)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(
                f"{path} exists but is not a readable .keras model (a "
                f"truncated copy, or not a Keras zip file): "
                f"{type(e).__name__}") from None
        copy_matching_weights(source, model)
    elif path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except ValueError:
            # Another head (class count): load every layer whose shapes
            # match and keep the new head's random values.
            model.load_weights(path, skip_mismatch=True)
            logger.warning("%s: layers whose shapes differ (the head of "
                           "another class count) keep their new values.", path)
    else:
        raise ValueError(
            f"Weights files must end in .keras or .weights.h5. Received: {path}"
        )


def copy_matching_weights(source, target):
    """Copies weights layer by layer (by name) where all shapes match."""
    skipped = []
    loaded = 0
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            source_layer = source.get_layer(layer.name)
        except ValueError:
            skipped.append(layer.name)
            continue
        values = source_layer.get_weights()
        shapes = [w.shape for w in layer.get_weights()]
        if [v.shape for v in values] != shapes:
            skipped.append(layer.name)
            continue
        layer.set_weights(values)
        loaded += 1
    if not loaded:
        raise ValueError(
            f"None of the layers of '{source.name}' match this model: the "
            "weights come from a different architecture."
        )
    if skipped:
        logger.warning(
            "Loaded %d layers; left %d at their initial values (no matching "
            "layer in the weights): %s",
            loaded,
            len(skipped),
            ", ".join(skipped),
        )
    return skipped
