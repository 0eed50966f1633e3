#include "wico/core/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

namespace wico {
namespace {

TEST(Registry, BuildsByNameAndListsValidNamesOnAMiss) {
  Registry<std::function<int()>> registry("bottom-up backend", "bottom_up.backend");
  registry.add("lavt", [] { return 1; }, "LAVT");
  registry.add("cris", [] { return 2; });
  EXPECT_EQ(registry.get("cris")(), 2);
  EXPECT_EQ(registry.names(), (std::vector<std::string>{"cris", "lavt"}));
  try {
    registry.get("vlt");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "unknown bottom-up backend 'vlt' (bottom_up.backend); valid: cris, lavt");
  }
  EXPECT_THROW(registry.add("lavt", [] { return 3; }), Error);
}

TEST(Check, MessageNamesConditionAndLocation) {
  try {
    const int n = 0;
    WICO_CHECK(n > 0, "file ", "x.p", " has ", n, " records");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("file x.p has 0 records [n > 0 at registry_test.cpp:"));
  }
}

}  // namespace
}  // namespace wico
