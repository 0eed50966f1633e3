#include "wico/core/progress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "wico/core/error.h"

namespace wico {
namespace {

using ::testing::HasSubstr;

TEST(Progress, FormatsDurationsAndRates) {
  EXPECT_EQ(Progress::format_duration(0), "00:00");
  EXPECT_EQ(Progress::format_duration(75), "01:15");
  EXPECT_EQ(Progress::format_duration(3725), "1:02:05");
  EXPECT_EQ(Progress::format_duration(-1), "?");
  EXPECT_EQ(Progress::format_rate(35.24, "it"), "35.2 it/s");
  EXPECT_EQ(Progress::format_rate(0.05, "it"), "20.0 s/it");
  EXPECT_EQ(Progress::format_rate(0, "img"), "? img/s");
}

struct FakeClock {
  double t = 100.0;
};

Progress::Options plain_options(std::ostream& out, FakeClock& clock) {
  Progress::Options o;
  o.mode = ProgressMode::kPlain;
  o.out = &out;
  o.clock = [&clock] { return clock.t; };
  o.plain_interval_s = 30.0;
  o.plain_fraction = 0.25;
  o.unit = "img";
  return o;
}

TEST(Progress, StatusLineHasPercentCountElapsedEtaAndRate) {
  std::ostringstream out;
  FakeClock clock;
  Progress p("synth", 200, plain_options(out, clock));
  clock.t += 10.0;
  p.advance(50);  // 5 img/s; 150 left -> 30 s
  p.set_postfix("seed=3");
  EXPECT_EQ(p.status_line(0), "synth  25% 50/200 [00:10<00:30, 5.0 img/s] seed=3");
}

TEST(Progress, PlainModePrintsAtEachShareAndAtTheEnd) {
  std::ostringstream out;
  FakeClock clock;
  {
    Progress p("eval", 100, plain_options(out, clock));
    for (int i = 0; i < 100; ++i) {
      clock.t += 0.1;
      p.advance();
    }
  }
  // Lines at 25, 50, 75 and 100, and no duplicate final line.
  const std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 4) << text;
  EXPECT_THAT(text, HasSubstr("eval  25% 25/100"));
  EXPECT_THAT(text, HasSubstr("eval 100% 100/100 [00:10<00:00, 10.0 img/s]"));
  EXPECT_EQ(text.find('\r'), std::string::npos);  // no terminal control in plain mode
}

TEST(Progress, PlainModePrintsByTimeWhenProgressIsSlow) {
  std::ostringstream out;
  FakeClock clock;
  Progress p("train", 1000, plain_options(out, clock));
  clock.t += 31.0;
  p.advance();
  EXPECT_THAT(out.str(), HasSubstr("train   0% 1/1000"));
}

TEST(Progress, UnknownTotalShowsCountAndRateOnly) {
  std::ostringstream out;
  FakeClock clock;
  Progress p("load", 0, plain_options(out, clock));
  clock.t += 2.0;
  p.advance(10);
  EXPECT_EQ(p.status_line(0), "load 10 img [00:02, 5.0 img/s]");
}

TEST(Progress, BarModeRedrawsOneLine) {
  std::ostringstream out;
  FakeClock clock;
  auto o = plain_options(out, clock);
  o.mode = ProgressMode::kBar;
  {
    Progress p("train", 4, o);
    for (int i = 0; i < 4; ++i) {
      clock.t += 1.0;
      p.advance();
    }
  }
  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("\r\033[K"));
  EXPECT_THAT(text, HasSubstr("train 100%|██████████████████████████████| 4/4"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
}

TEST(Progress, OffModePrintsNothing) {
  std::ostringstream out;
  FakeClock clock;
  auto o = plain_options(out, clock);
  o.mode = ProgressMode::kOff;
  {
    Progress p("x", 3, o);
    p.advance(3);
  }
  EXPECT_TRUE(out.str().empty());
}

TEST(Progress, ModeNamesAreParsed) {
  EXPECT_EQ(parse_progress_mode("plain"), ProgressMode::kPlain);
  EXPECT_THROW(parse_progress_mode("fancy"), ConfigError);
}

}  // namespace
}  // namespace wico
