#include "wico/core/schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "wico/core/error.h"

namespace wico {
namespace {

TEST(Schema, EditDistanceMatchesHandComputedValues) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("lr", "lrr"), 1u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
}

TEST(Schema, RejectsDuplicateKeysAndInvalidDefaults) {
  Schema s;
  s.integer("a.b", 1, "doc");
  EXPECT_THROW(s.integer("a.b", 2, "doc"), Error);
  EXPECT_THROW(s.integer("a.c", 5, "doc", 0, 3), Error);
  EXPECT_THROW(s.text("a.d", "x", "doc", {"y", "z"}), Error);
}

TEST(Schema, SectionsAreKeyPrefixes) {
  Schema s;
  s.integer("train.lr_steps", 1, "doc");
  EXPECT_TRUE(s.is_section("train"));
  EXPECT_FALSE(s.is_section("trai"));  // a prefix of a name is not a section
  EXPECT_FALSE(s.is_section("train.lr_steps"));
}

TEST(Schema, FormatsValuesAsReadableYaml) {
  EXPECT_EQ(format_value(Value(1e-5)), "1e-05");
  EXPECT_EQ(format_value(Value(2.0)), "2.0");
  EXPECT_EQ(format_value(Value(std::vector<std::int64_t>{2, 18})), "[2, 18]");
  EXPECT_EQ(format_value(Value(true)), "true");
  EXPECT_EQ(format_value(Value(std::string())), "\"\"");
}

TEST(Schema, PrintListsTypeDefaultChoicesAndDoc) {
  Schema s;
  s.text("log.level", "info", "verbosity", {"info", "warn"}).real("train.lr", 0.1, "rate", 0, 1);
  std::ostringstream out;
  s.print(out);
  EXPECT_THAT(out.str(), ::testing::HasSubstr("log.level  string = info  {info|warn}"));
  EXPECT_THAT(out.str(), ::testing::HasSubstr("train.lr   float = 0.1  [0.0, 1.0]"));
  EXPECT_THAT(out.str(), ::testing::HasSubstr("verbosity"));
}

}  // namespace
}  // namespace wico
