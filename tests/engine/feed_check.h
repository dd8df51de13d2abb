// tests/engine/feed_check.h — checks on a CRR's change feed that reads
// alone cannot make: feed range entries (engine/feed_range.h) count
// exactly the rows they name.
#ifndef CRSYNC_TESTS_ENGINE_FEED_CHECK_H_
#define CRSYNC_TESTS_ENGINE_FEED_CHECK_H_

#include <string>
#include <string_view>

#include "common/hex.h"
#include "engine/feed_range.h"
#include "tests/test_util.h"

namespace crsync {

// `hex` as TestDb gives a text column: quoted.
inline std::string Unhex(std::string hex) {
  if (hex.size() >= 2 && hex.front() == '\'' && hex.back() == '\'') {
    hex = hex.substr(1, hex.size() - 2);
  }
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// Every counted range holds exactly the rows it still names: rows in its
// key span whose run at its version lies in its runs, with no point entry
// of their own. Too high, a range outlives its rows; too low, it could go
// while a row needs it. Uncounted (format 3) ranges are left out.
inline void ExpectExactCounts(TestDb& db, const std::string& context,
                              const std::string& table = "t") {
  for (const auto& row : db.Query("SELECT dbv, lo, hex(pk) FROM \"" + table + "__crsync_feed\" "
                                  "WHERE substr(pk, 1, 1) = x'00'")) {
    const std::string blob = Unhex(row[2]);
    FeedRange r;
    ASSERT_TRUE(DecodeFeedRange(blob, std::stoll(row[1]), &r)) << context;
    if (r.rows < 0) continue;
    EXPECT_GE(r.rows, 1) << context << ": a counted range naming no row stays";
    const std::string named = db.One(
        "SELECT count(*) FROM \"" + table + "__crsync_rows\" r, crsync_meta_runs(r.meta) m "
        "WHERE r.pk BETWEEN x'" + HexBytes(r.first) + "' AND x'" + HexBytes(r.last) + "' AND m.dbv = " +
        row[0] + " AND m.lo BETWEEN " + row[1] + " AND " + std::to_string(r.hi) +
        " AND NOT EXISTS (SELECT 1 FROM \"" + table + "__crsync_feed\" f "
        "WHERE f.dbv = m.dbv AND f.lo = m.lo AND f.pk = r.pk)");
    EXPECT_EQ(std::to_string(r.rows), named) << context << ": range at " << row[0] << "/" << row[1];
  }
}

}  // namespace crsync

#endif  // CRSYNC_TESTS_ENGINE_FEED_CHECK_H_
