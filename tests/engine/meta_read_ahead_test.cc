// engine/meta_read_ahead.h: when it scans, what its window covers, and how
// stores keep it exact.
#include "engine/meta_read_ahead.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace crsync {
namespace {

std::string Key(int i) {
  char buf[8];
  snprintf(buf, sizeof buf, "k%03d", i);
  return buf;
}

TEST(MetaReadAheadTest, ScansOnlyAfterARunOfAscendingMisses) {
  MetaReadAhead ahead;
  int asked = 0;
  for (int i = 0; i <= MetaReadAhead::kAfterAscending; ++i) {
    if (ahead.NoteMiss(Key(10 + i))) break;
    ++asked;
  }
  EXPECT_EQ(asked, MetaReadAhead::kAfterAscending);
  // The count restarts after a scan, and after every step down.
  EXPECT_FALSE(ahead.NoteMiss(Key(5)));
  for (int i = 1; i < MetaReadAhead::kAfterAscending; ++i) EXPECT_FALSE(ahead.NoteMiss(Key(5 + i)));
  EXPECT_FALSE(ahead.NoteMiss(Key(1)));
  for (int i = 1; i < MetaReadAhead::kAfterAscending; ++i) EXPECT_FALSE(ahead.NoteMiss(Key(1 + i)));
  EXPECT_TRUE(ahead.NoteMiss(Key(90)));
}

TEST(MetaReadAheadTest, AWindowCoversItsKeysAndTheGapsBetweenThem) {
  MetaReadAhead ahead;
  std::string_view meta;
  bool found = true;
  EXPECT_FALSE(ahead.Find(Key(1), &meta, &found)) << "nothing loaded";
  ahead.Begin(Key(10));
  ahead.Add(Key(10), "m10");
  ahead.Add(Key(20), "m20");
  ahead.End(/*to_end=*/false);
  ASSERT_TRUE(ahead.Find(Key(20), &meta, &found));
  EXPECT_TRUE(found);
  EXPECT_EQ(meta, "m20");
  ASSERT_TRUE(ahead.Find(Key(15), &meta, &found));
  EXPECT_FALSE(found) << "between two stored rows: known to have no metadata";
  EXPECT_FALSE(ahead.Find(Key(9), &meta, &found)) << "below the scan's start";
  EXPECT_FALSE(ahead.Find(Key(21), &meta, &found)) << "past the last row read: unknown";

  ahead.Begin(Key(30));
  ahead.Add(Key(30), "m30");
  ahead.End(/*to_end=*/true);
  ASSERT_TRUE(ahead.Find(Key(99), &meta, &found)) << "the scan reached the end";
  EXPECT_FALSE(found);
  EXPECT_FALSE(ahead.Find(Key(20), &meta, &found)) << "the old window is gone";
  ahead.Drop();
  EXPECT_FALSE(ahead.Find(Key(30), &meta, &found));
}

TEST(MetaReadAheadTest, StoresInsideTheWindowKeepItExact) {
  MetaReadAhead ahead;
  ahead.Begin(Key(10));
  for (int i : {10, 20, 30}) ahead.Add(Key(i), "old" + std::to_string(i));
  ahead.End(false);
  ahead.Stored(Key(20), "new20");   // replaced
  ahead.Stored(Key(15), "new15");   // a row new to the window, in order
  ahead.Stored(Key(40), "new40");   // past the window: ignored
  std::string_view meta;
  bool found;
  ASSERT_TRUE(ahead.Find(Key(20), &meta, &found));
  EXPECT_EQ(meta, "new20");
  ASSERT_TRUE(ahead.Find(Key(15), &meta, &found));
  EXPECT_TRUE(found);
  EXPECT_EQ(meta, "new15");
  ASSERT_TRUE(ahead.Find(Key(30), &meta, &found));
  EXPECT_EQ(meta, "old30");
  EXPECT_FALSE(ahead.Find(Key(40), &meta, &found));
}

// Keys walked upwards but far apart: each scan finds the next key outside
// its window. A scan is judged wasted when the next is due, so from then on
// the run needed doubles each time.
TEST(MetaReadAheadTest, WastedScansBackOff) {
  MetaReadAhead ahead;
  std::vector<int> runs;
  int run = 0;
  for (int i = 0; i < 400 && runs.size() < 4; ++i) {
    ++run;
    if (!ahead.NoteMiss(Key(i))) continue;
    runs.push_back(run);
    run = 0;
    ahead.Begin(Key(i));
    ahead.Add(Key(i), "m");  // the window holds only the missed row
    ahead.End(false);
  }
  const int n = MetaReadAhead::kAfterAscending;
  EXPECT_EQ(runs, (std::vector<int>{n + 1, n, 2 * n, 4 * n})) << "the first run also counts its start";
}

// A walk that used its window well and steps past its end scans again at
// once, and the ordinary run length is back.
TEST(MetaReadAheadTest, AWalkPastAUsefulWindowScansAtOnce) {
  MetaReadAhead ahead;
  ahead.Begin(Key(0));
  for (int i = 0; i < 40; ++i) ahead.Add(Key(i), "m");
  ahead.End(false);
  std::string_view meta;
  bool found;
  for (int i = 0; i < MetaReadAhead::kUseful; ++i) ASSERT_TRUE(ahead.Find(Key(i), &meta, &found));
  EXPECT_TRUE(ahead.NoteMiss(Key(40)));
  ahead.Begin(Key(40));
  ahead.Add(Key(40), "m");
  ahead.End(false);
  EXPECT_FALSE(ahead.NoteMiss(Key(41))) << "this window was not used: no immediate rescan";
}

}  // namespace
}  // namespace crsync
