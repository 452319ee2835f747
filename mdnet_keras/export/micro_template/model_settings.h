/* MDNet on TensorFlow Lite Micro: the model's settings, shared by the app and
   its tests.

   The values between the generated markers are filled in by
   `python -m mdnet_keras convert --mode=int8 --micro-out=DIR` (or
   `mdnet_keras.export.micro.render_template`) from the converted model; the
   values committed here are those of `MDNet(variant="mdnet_micro",
   input_shape=(32, 32, 3), num_classes=10)` converted to int8. */
#ifndef MDNET_MICRO_MODEL_SETTINGS_H_
#define MDNET_MICRO_MODEL_SETTINGS_H_

// Input image: raw RGB (or grey) pixels 0..255, resized with Pillow's
// bilinear filter as in training; quantized in main_functions.cc with the
// input tensor's scale and zero point.
constexpr int kNumRows = 32;
constexpr int kNumCols = 32;
constexpr int kNumChannels = 3;
constexpr int kMaxImageSize = kNumRows * kNumCols * kNumChannels;

constexpr int kCategoryCount = 10;
extern const char* kCategoryLabels[kCategoryCount];

// Smallest arena the model allocates in, measured on the host (x86-64) with
// the TFLM Python interpreter by bisection. On a Cortex-M, CMSIS-NN kernels
// ask for scratch buffers the reference kernels do not, and pointers are 4
// bytes instead of 8: add a margin (see tflite/README.md) and measure on the
// target with RecordingMicroInterpreter.
constexpr int kMeasuredTensorArenaSize = 175016;
constexpr int kTensorArenaMargin = 0;
constexpr int kTensorArenaSize = kMeasuredTensorArenaSize + kTensorArenaMargin;

#endif  // MDNET_MICRO_MODEL_SETTINGS_H_
