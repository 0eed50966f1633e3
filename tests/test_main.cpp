#include <gtest/gtest.h>

#include "wico/core/logging.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  wico::init_logging("warn");  // keep test output to failures
  return RUN_ALL_TESTS();
}
