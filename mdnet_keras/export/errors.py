"""The errors the export path raises (conversion, model loading, accuracy gate)."""


class ConversionError(RuntimeError):
    """A model could not be converted, or the result breaks a hard rule."""


class ModelLoadError(ValueError):
    """The model file is missing, not a Keras model, or not an image classifier."""


class AccuracyGateError(RuntimeError):
    """The converted model lost more top-1 than allowed."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report
