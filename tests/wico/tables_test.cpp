#include "wico/wico/tables.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

namespace wico::model {
namespace {

// metrics.json of a pair: its two branches and the fused result, MER for every pair of them
// (keyed alphabetically, as the evaluator writes it).
nlohmann::json pair_metrics(const std::string& a, const std::string& b) {
  nlohmann::json j;
  j["branches"] = {{a, {{"oiou", 0.3}}}, {b, {{"oiou", 0.4}}}, {"fused", {{"oiou", 0.5}}}};
  auto key = [](std::string x, std::string y) { return x < y ? x + "|" + y : y + "|" + x; };
  j["mer"] = {{key(a, b), 0.25}, {key(a, "fused"), 0.125}, {key(b, "fused"), 0.0625}};
  return j;
}

TEST(Tables, MerIsTheBranchesOwnForEveryKindOfPair) {
  // The alphabetically first entry would be bottom_up|fused, fused|top_down_a, bottom_up_a|bottom_up_b.
  EXPECT_DOUBLE_EQ(branch_pair_mer(pair_metrics("top_down", "bottom_up")), 0.25);
  EXPECT_DOUBLE_EQ(branch_pair_mer(pair_metrics("top_down_a", "top_down_b")), 0.25);
  EXPECT_DOUBLE_EQ(branch_pair_mer(pair_metrics("bottom_up_a", "bottom_up_b")), 0.25);
  nlohmann::json single;
  single["branches"] = {{"bottom_up", {{"oiou", 0.3}}}};
  EXPECT_TRUE(std::isnan(branch_pair_mer(single)));
  nlohmann::json no_mer = pair_metrics("top_down", "bottom_up");
  no_mer.erase("mer");
  EXPECT_TRUE(std::isnan(branch_pair_mer(no_mer)));
}

}  // namespace
}  // namespace wico::model
