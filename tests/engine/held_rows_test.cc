// HeldRows: the write-behind set of one CRR (engine/held_rows.h).
#include "engine/held_rows.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace crsync {
namespace {

RowMeta MetaAt(int64_t dbv) {
  RowMeta m;
  m.sentinel = Clock{true, 1, dbv, 0, 0, 0};
  m.cols.assign(1, Clock{});
  return m;
}

std::string Key(int i) {
  char buf[8];
  snprintf(buf, sizeof buf, "k%04d", i);
  return buf;
}

// Rows held in any order are found again (each once), and not-held keys are
// not; Encode lists every row once, sorted by pk, with its own metadata.
TEST(HeldRowsTest, FindsAndEncodesRowsHeldInAnyOrder) {
  for (int order = 0; order < 3; ++order) {
    std::vector<int> ids;
    for (int i = 0; i < 300; ++i) ids.push_back(2 * i);
    if (order == 1) std::reverse(ids.begin(), ids.end());
    if (order == 2) std::shuffle(ids.begin(), ids.end(), std::mt19937_64(11));
    HeldRows held;
    for (int id : ids) {
      ASSERT_EQ(held.Find(Key(id)), nullptr) << id;
      HeldRows::Row* r = held.Hold(Key(id), RowMeta{});
      r->meta = MetaAt(id + 1);
    }
    EXPECT_EQ(held.size(), ids.size());
    for (int i = 0; i < 600; ++i) {
      HeldRows::Row* r = held.Find(Key(i));
      if (i % 2) {
        EXPECT_EQ(r, nullptr) << "order " << order << " key " << i;
        continue;
      }
      ASSERT_NE(r, nullptr) << "order " << order << " key " << i;
      EXPECT_EQ(r->pk, Key(i));
      EXPECT_EQ(r->meta.sentinel.db_version, i + 1);
    }
    const RowBuf *rows, *del, *add;
    held.Encode(&rows, &del, &add);
    ASSERT_EQ(rows->rows.size(), ids.size());
    for (size_t i = 0; i < rows->rows.size(); ++i) {
      EXPECT_EQ(rows->rows[i].pk, Key(static_cast<int>(2 * i)));
      RowMeta back;
      ASSERT_TRUE(DecodeRowMeta(rows->rows[i].meta, 1, &back).ok());
      EXPECT_EQ(back.sentinel.db_version, static_cast<int64_t>(2 * i + 1));
    }
    EXPECT_TRUE(del->rows.empty());  // nothing was stored before
    EXPECT_EQ(add->rows.size(), ids.size());
    EXPECT_TRUE(std::is_sorted(add->rows.begin(), add->rows.end(), FeedKeyLess));
    held.Forget();
    EXPECT_TRUE(held.empty());
    EXPECT_EQ(held.Find(Key(0)), nullptr);
  }
}

TEST(HeldRowsTest, FailureLastsUntilCleared) {
  HeldRows held;
  EXPECT_FALSE(held.failed());
  EXPECT_TRUE(held.Failure("t").ok());
  held.Hold("a", RowMeta{})->meta = MetaAt(1);
  held.Fail(Status::Sqlite(SQLITE_FULL, "disk full"));
  EXPECT_TRUE(held.failed());
  EXPECT_TRUE(held.empty());  // what it held is lost
  EXPECT_NE(held.Failure("t").message().find("disk full"), std::string::npos);
  held.ClearFailure();
  EXPECT_FALSE(held.failed());
  held.MarkUnwound();
  EXPECT_TRUE(held.failed());
  EXPECT_NE(held.Failure("tbl").message().find("tbl"), std::string::npos);
  held.ClearFailure();
  EXPECT_TRUE(held.Failure("t").ok());
}

}  // namespace
}  // namespace crsync
