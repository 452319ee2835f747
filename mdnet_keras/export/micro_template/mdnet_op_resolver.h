/* The op resolver for MDNet: exactly the builtin ops the converted model
   uses, so the firmware links no other kernels. Generated from the model's
   flatbuffer by mdnet_keras.export.micro.render_template. */
#ifndef MDNET_MICRO_MDNET_OP_RESOLVER_H_
#define MDNET_MICRO_MDNET_OP_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr int kNumOps = 15;

using MDNetOpResolver = tflite::MicroMutableOpResolver<kNumOps>;

inline TfLiteStatus RegisterOps(MDNetOpResolver& resolver) {
  // BEGIN GENERATED OPS
  TF_LITE_ENSURE_STATUS(resolver.AddMul());  // MUL
  TF_LITE_ENSURE_STATUS(resolver.AddAdd());  // ADD
  TF_LITE_ENSURE_STATUS(resolver.AddConv2D());  // CONV_2D
  TF_LITE_ENSURE_STATUS(resolver.AddSplit());  // SPLIT
  TF_LITE_ENSURE_STATUS(resolver.AddDepthwiseConv2D());  // DEPTHWISE_CONV_2D
  TF_LITE_ENSURE_STATUS(resolver.AddConcatenation());  // CONCATENATION
  TF_LITE_ENSURE_STATUS(resolver.AddFullyConnected());  // FULLY_CONNECTED
  TF_LITE_ENSURE_STATUS(resolver.AddReshape());  // RESHAPE
  TF_LITE_ENSURE_STATUS(resolver.AddTranspose());  // TRANSPOSE
  TF_LITE_ENSURE_STATUS(resolver.AddBatchMatMul());  // BATCH_MATMUL
  TF_LITE_ENSURE_STATUS(resolver.AddSoftmax());  // SOFTMAX
  TF_LITE_ENSURE_STATUS(resolver.AddStridedSlice());  // STRIDED_SLICE
  TF_LITE_ENSURE_STATUS(resolver.AddSub());  // SUB
  TF_LITE_ENSURE_STATUS(resolver.AddMean());  // MEAN
  TF_LITE_ENSURE_STATUS(resolver.AddRsqrt());  // RSQRT
  // END GENERATED OPS
  return kTfLiteOk;
}

#endif  // MDNET_MICRO_MDNET_OP_RESOLVER_H_
