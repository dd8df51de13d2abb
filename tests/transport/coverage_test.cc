#include "transport/coverage.h"

#include <algorithm>
#include <random>
#include <set>

#include "tests/test_util.h"

namespace crsync {
namespace {

TEST(CoverageTest, InOrderRangesWithVersionGapsMoveTheCursor) {
  Coverage c;
  ASSERT_OK(c.Add(1, 3));
  EXPECT_EQ(c.cursor(), 3);
  ASSERT_OK(c.Add(4, 10));  // versions 5..9 may not exist at the sender: no wait
  EXPECT_EQ(c.cursor(), 10);
  EXPECT_EQ(c.pending_ranges(), 0u);
}

TEST(CoverageTest, AMissingRangeHoldsTheCursorUntilItArrives) {
  Coverage c(2);
  ASSERT_OK(c.Add(6, 8));
  ASSERT_OK(c.Add(10, 12));
  EXPECT_EQ(c.cursor(), 2);
  EXPECT_EQ(c.pending_ranges(), 2u);
  EXPECT_TRUE(c.Covers(7));
  EXPECT_FALSE(c.Covers(9));
  ASSERT_OK(c.Add(3, 5));
  EXPECT_EQ(c.cursor(), 8);
  ASSERT_OK(c.Add(9, 9));
  EXPECT_EQ(c.cursor(), 12);
  EXPECT_EQ(c.pending_ranges(), 0u);
}

TEST(CoverageTest, CoversRangeNeedsEveryVersion) {
  Coverage c(2);
  ASSERT_OK(c.Add(5, 5));
  ASSERT_OK(c.Add(9, 9));
  EXPECT_TRUE(c.CoversRange(1, 2));
  EXPECT_TRUE(c.CoversRange(5, 5));
  EXPECT_FALSE(c.CoversRange(5, 9));  // 6..8 missing
  EXPECT_FALSE(c.CoversRange(2, 5));
  ASSERT_OK(c.Add(3, 4));
  EXPECT_TRUE(c.CoversRange(1, 5));
}

TEST(CoverageTest, DuplicatesAndOverlapsAreHarmless) {
  Coverage c;
  ASSERT_OK(c.Add(5, 9));
  ASSERT_OK(c.Add(7, 12));
  ASSERT_OK(c.Add(5, 9));
  EXPECT_EQ(c.pending_ranges(), 1u);
  ASSERT_OK(c.Add(1, 4));
  EXPECT_EQ(c.cursor(), 12);
  ASSERT_OK(c.Add(2, 3));
  EXPECT_EQ(c.cursor(), 12);
}

TEST(CoverageTest, BadRangesAreRejectedAndChangeNothing) {
  Coverage c(4);
  EXPECT_FALSE(c.Add(9, 8).ok());
  EXPECT_FALSE(c.Add(0, 3).ok());
  EXPECT_EQ(c.cursor(), 4);
  EXPECT_EQ(c.pending_ranges(), 0u);
}

// Any delivery order, with duplicates, ends at the same cursor, and the
// cursor never passes a version that is not covered.
TEST(CoverageTest, PropertyAnyOrderConvergesAndNeverOvershoots) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::pair<int64_t, int64_t>> ranges;
    int64_t v = 0;
    for (int i = 0; i < 30; ++i) {
      int64_t start = v + 1, end = start + static_cast<int64_t>(rng() % 5);
      ranges.emplace_back(start, end);
      v = end;
    }
    auto delivery = ranges;
    for (int i = 0; i < 10; ++i) delivery.push_back(ranges[rng() % ranges.size()]);
    std::shuffle(delivery.begin(), delivery.end(), rng);
    Coverage c;
    std::set<int64_t> covered;
    for (const auto& [s, e] : delivery) {
      ASSERT_OK(c.Add(s, e));
      for (int64_t x = s; x <= e; ++x) covered.insert(x);
      for (int64_t x = 1; x <= c.cursor(); ++x) ASSERT_TRUE(covered.count(x)) << "seed " << seed;
      ASSERT_FALSE(covered.count(c.cursor() + 1) && c.pending_ranges() == 0 &&
                   c.cursor() + 1 <= v)
          << "seed " << seed;
    }
    EXPECT_EQ(c.cursor(), v) << "seed " << seed;
    EXPECT_EQ(c.pending_ranges(), 0u);
  }
}

}  // namespace
}  // namespace crsync
