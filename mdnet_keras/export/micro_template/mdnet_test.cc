/* Golden-image test of the app: classifies real test images (golden_images.cc,
   written by `convert --micro_out` with the raw outputs of the Python TFLite
   Micro interpreter) and checks each output against Python's: bit-exact with
   the reference kernels (Python runs the same ones), within
   kCmsisNnToleranceSteps int8 steps with CMSIS-NN, and always the same
   winning class. Prints every output so that the caller can compare too, and
   ends with "MDNET TEST PASSED" (exit 0) or "MDNET TEST FAILED" (exit 1).

   A plain main(), not TFLM's micro_test.h, so that it builds against a tree
   made by create_tflm_tree.py, which does not ship that header. */
#include <cstdio>
#include <cstdlib>

#include "golden_images.h"
#include "main_functions.h"
#include "model_settings.h"

// Trees made for TARGET=cortex_m_generic send MicroPrintf to a callback that
// the application registers; the others print to stderr themselves.
#if __has_include("tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h")
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#define MDNET_HAS_DEBUG_LOG_CALLBACK 1
static void LogToStderr(const char* text) { fputs(text, stderr); }
#endif

// CMSIS-NN states that its int8 kernels are bit-exact with TFLite Micro's
// reference kernels, and the measurements agree (no step of difference on any
// golden image: benchmarks/results/micro_firmware). Raise it here should a
// model's ops ever differ.
constexpr int kCmsisNnToleranceSteps = 0;
#ifdef CMSIS_NN
constexpr int kToleranceSteps = kCmsisNnToleranceSteps;
constexpr const char* kKernels = "CMSIS-NN";
#else
constexpr int kToleranceSteps = 0;
constexpr const char* kKernels = "reference";
#endif

// How many golden images to run (fewer to count one inference's instructions).
#ifndef MDNET_GOLDEN_RUNS
#define MDNET_GOLDEN_RUNS kNumGoldenImages
#endif

int main() {
#ifdef MDNET_HAS_DEBUG_LOG_CALLBACK
  RegisterDebugLogCallback(LogToStderr);
#endif
  if (!setup()) {
    printf("MDNET TEST FAILED: setup() failed (see the message above)\n");
    return 1;
  }
  printf("arena used %d of %d bytes\n", ArenaUsedBytes(), kTensorArenaSize);
  const int runs = MDNET_GOLDEN_RUNS < kNumGoldenImages ? MDNET_GOLDEN_RUNS
                                                        : kNumGoldenImages;
  int failures = 0;
  int max_diff = 0;
  for (int i = 0; i < runs; ++i) {
    float probabilities[kCategoryCount];
    const int top = Classify(kGoldenImages[i], probabilities);
    if (top < 0) {
      printf("golden %d: Classify failed\n", i);
      ++failures;
      continue;
    }
    int expected_top = 0;
    int diff = 0;
    printf("outputs %d:", i);
    for (int c = 0; c < kCategoryCount; ++c) {
      const int q = QuantizedOutput(c);
      printf(" %d", q);
      const int d = std::abs(q - kGoldenOutputs[i][c]);
      if (d > diff) diff = d;
      if (kGoldenOutputs[i][c] > kGoldenOutputs[i][expected_top]) expected_top = c;
    }
    printf("\n");
    if (diff > max_diff) max_diff = diff;
    const bool ok = diff <= kToleranceSteps && top == expected_top;
    if (!ok) ++failures;
    printf("golden %d: label %s, top %s (Python: %s), %d steps off%s\n", i,
           kCategoryLabels[kGoldenLabels[i]], kCategoryLabels[top],
           kCategoryLabels[expected_top], diff, ok ? "" : " <- FAIL");
  }
  printf("%s kernels: %d golden images, largest difference %d int8 steps "
         "(allowed %d)\n", kKernels, runs, max_diff, kToleranceSteps);
  if (failures > 0) {
    printf("MDNET TEST FAILED: %d of %d golden images\n", failures, runs);
    return 1;
  }
  printf("MDNET TEST PASSED\n~~~ALL TESTS PASSED~~~\n");
  return 0;
}
