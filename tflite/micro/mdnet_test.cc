/* Checks that the generated model allocates in kTensorArenaSize, that its
   input has the shape and type model_settings.h says, and that inference runs
   and yields a distribution. Add golden images (a test image per class, as
   person_detection_test.cc does) to check the winning class. */
#include <cstdint>

#include "main_functions.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/testing/micro_test.h"

TF_LITE_MICRO_TESTS_BEGIN

TF_LITE_MICRO_TEST(AllocatesAndClassifies) {
  TF_LITE_MICRO_EXPECT(setup());
  TF_LITE_MICRO_EXPECT_LE(ArenaUsedBytes(), kTensorArenaSize);

  static uint8_t image[kMaxImageSize];
  for (int i = 0; i < kMaxImageSize; ++i) image[i] = static_cast<uint8_t>(i);
  float probabilities[kCategoryCount];
  const int top = Classify(image, probabilities);
  TF_LITE_MICRO_EXPECT_GE(top, 0);
  TF_LITE_MICRO_EXPECT_LT(top, kCategoryCount);
  float total = 0.f;
  for (int c = 0; c < kCategoryCount; ++c) total += probabilities[c];
  TF_LITE_MICRO_EXPECT_NEAR(1.f, total, 0.05f);
}

TF_LITE_MICRO_TESTS_END
