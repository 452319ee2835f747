#include "main_functions.h"

#include <cmath>

#include "mdnet_op_resolver.h"
#include "model_data.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
const tflite::Model* model = nullptr;
tflite::MicroInterpreter* interpreter = nullptr;
TfLiteTensor* input = nullptr;
TfLiteTensor* output = nullptr;

alignas(16) uint8_t tensor_arena[kTensorArenaSize];
}  // namespace

bool setup() {
  model = tflite::GetModel(g_mdnet_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("Model schema version %d != supported %d.", model->version(),
                TFLITE_SCHEMA_VERSION);
    return false;
  }
  static MDNetOpResolver resolver;
  if (RegisterOps(resolver) != kTfLiteOk) {
    MicroPrintf("RegisterOps failed.");
    return false;
  }
  static tflite::MicroInterpreter static_interpreter(
      model, resolver, tensor_arena, kTensorArenaSize);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    // Two lines: MicroPrintf truncates long ones.
    MicroPrintf(
        "AllocateTensors() failed: kTensorArenaSize = %d bytes (%d measured "
        "on the host + %d margin) is too small on this target.",
        kTensorArenaSize, kMeasuredTensorArenaSize, kTensorArenaMargin);
    MicroPrintf(
        "Convert again with a larger --arena_margin (the line above says how "
        "many bytes are missing).");
    return false;
  }
  input = interpreter->input(0);
  output = interpreter->output(0);
  if (input->dims->size != 4 || input->dims->data[1] != kNumRows ||
      input->dims->data[2] != kNumCols ||
      input->dims->data[3] != kNumChannels ||
      (input->type != kTfLiteInt8 && input->type != kTfLiteUInt8)) {
    MicroPrintf("Unexpected input tensor: regenerate model_settings.h.");
    return false;
  }
  return true;
}

int Classify(const uint8_t* pixels, float* probabilities) {
  if (interpreter == nullptr) return -1;
  const float in_scale = input->params.scale;
  const int in_zero = input->params.zero_point;
  const int lo = input->type == kTfLiteInt8 ? -128 : 0;
  const int hi = input->type == kTfLiteInt8 ? 127 : 255;
  for (int i = 0; i < kMaxImageSize; ++i) {
    // Rounded half to even in float, as mdnet_keras quantizes in Python
    // (numpy), so that the firmware sees the same int8 input.
    int q = static_cast<int>(
        std::nearbyint(static_cast<float>(pixels[i]) / in_scale + in_zero));
    q = q < lo ? lo : (q > hi ? hi : q);
    if (input->type == kTfLiteInt8) {
      input->data.int8[i] = static_cast<int8_t>(q);
    } else {
      input->data.uint8[i] = static_cast<uint8_t>(q);
    }
  }
  if (interpreter->Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed.");
    return -1;
  }
  const float out_scale = output->params.scale;
  const int out_zero = output->params.zero_point;
  int best = 0;
  for (int c = 0; c < kCategoryCount; ++c) {
    probabilities[c] = (QuantizedOutput(c) - out_zero) * out_scale;
    if (probabilities[c] > probabilities[best]) best = c;
  }
  return best;
}

int QuantizedOutput(int category) {
  if (output == nullptr) return 0;
  return output->type == kTfLiteInt8 ? output->data.int8[category]
                                     : output->data.uint8[category];
}

int ArenaUsedBytes() {
  return interpreter == nullptr ? 0
                                : static_cast<int>(interpreter->arena_used_bytes());
}
