#ifndef MDNET_MICRO_MAIN_FUNCTIONS_H_
#define MDNET_MICRO_MAIN_FUNCTIONS_H_

#include <cstdint>

// Builds the interpreter over the static tensor arena. Returns false when the
// model's schema version, an op registration or AllocateTensors fails.
bool setup();

// Classifies one image of kNumRows x kNumCols x kNumChannels raw pixels
// (0..255, row-major, channels last). Writes kCategoryCount probabilities and
// returns the index of the top class, or -1 on error.
int Classify(const uint8_t* pixels, float* probabilities);

// The raw (int8 or uint8) output of `category` from the last Classify().
int QuantizedOutput(int category);

// Arena bytes actually used after setup() (for logging on the device).
int ArenaUsedBytes();

#endif  // MDNET_MICRO_MAIN_FUNCTIONS_H_
