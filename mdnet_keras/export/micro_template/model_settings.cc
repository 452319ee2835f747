#include "model_settings.h"

// Class names in output order (the labels file written next to the model).
const char* kCategoryLabels[kCategoryCount] = {
    // BEGIN GENERATED LABELS
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
    // END GENERATED LABELS
};
