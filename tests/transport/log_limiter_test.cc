#include "transport/log_limiter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace crsync {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kClosed = "connection %llu closed: %s";
const std::string kAccepted = "accepted connection %llu";

TEST(LogLimiterTest, ABurstIsWrittenAndTheRestLeftOutAndCounted) {
  LogLimiter limiter(3, 60000);
  for (int i = 0; i < 3; ++i) {
    LogLimiter::Verdict v = limiter.Admit(kClosed, 0, 1000 + i, "connection closed " + std::to_string(i));
    EXPECT_TRUE(v.write) << i;
    EXPECT_EQ(v.last, i == 2) << i;
    EXPECT_THAT(v.summary, IsEmpty());
  }
  for (int i = 3; i < 10; ++i) {
    LogLimiter::Verdict v = limiter.Admit(kClosed, 0, 2000 + i, "connection closed " + std::to_string(i));
    EXPECT_FALSE(v.write) << i;
    EXPECT_THAT(v.summary, IsEmpty());
  }
  // Another kind has a window of its own.
  EXPECT_TRUE(limiter.Admit(kAccepted, 1, 3000, "accepted").write);
  // Within the window, nothing to summarize yet.
  EXPECT_THAT(limiter.Expired(60999), IsEmpty());
  // The next line after the window says what was left out, then is written.
  LogLimiter::Verdict v = limiter.Admit(kClosed, 0, 61000, "connection closed 10");
  EXPECT_TRUE(v.write);
  EXPECT_FALSE(v.last);
  EXPECT_EQ(v.summary, "left out 7 more lines like this in 60 s; the last: connection closed 9");
}

TEST(LogLimiterTest, ABurstThatStoppedIsSummarizedByTheTimerOnce) {
  LogLimiter limiter(1, 1000);
  EXPECT_TRUE(limiter.Admit(kClosed, 1, 0, "a").write);
  EXPECT_FALSE(limiter.Admit(kClosed, -1, 10, "b").write);
  EXPECT_TRUE(limiter.Admit(kAccepted, 1, 10, "c").write);  // nothing left out: no summary
  EXPECT_THAT(limiter.Expired(999), IsEmpty());
  auto out = limiter.Expired(1500);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].level, -1) << "the level of the line left out";
  EXPECT_EQ(out[0].text, "left out 1 more line like this in 2 s; the last: b");
  EXPECT_THAT(limiter.Expired(5000), IsEmpty()) << "summarized twice";
  // A new window starts with the next line, written.
  LogLimiter::Verdict v = limiter.Admit(kClosed, 1, 5000, "d");
  EXPECT_TRUE(v.write);
  EXPECT_THAT(v.summary, IsEmpty());
}

TEST(LogLimiterTest, AtTheEndEveryWindowIsClosed) {
  LogLimiter limiter(2, 60000);
  for (int i = 0; i < 5; ++i) limiter.Admit(kAccepted, 1, i, "x" + std::to_string(i));
  auto out = limiter.Expired(10, /*all=*/true);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_THAT(out[0].text, HasSubstr("left out 3 more lines"));
  EXPECT_THAT(out[0].text, HasSubstr("the last: x4"));
}

}  // namespace
}  // namespace crsync
