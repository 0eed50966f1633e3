#include <gtest/gtest.h>

#include "wico/core/logging.h"
#include "wico/core/progress.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  wico::init_logging("warn");  // keep test output to failures
  wico::set_default_progress_mode(wico::ProgressMode::kOff);
  return RUN_ALL_TESTS();
}
