// Range entries of the change feed (engine/feed_range.h): rows written
// together in key order share one feed entry. Whatever happens to those rows
// afterwards, reading changes must give exactly what one entry per row
// gives, so each test runs the same writes on a database with ranges and on
// one without, and compares every way of reading.
#include <algorithm>
#include <random>

#include "engine/feed_range.h"
#include "engine/meta_batch.h"
#include "engine/row_buf.h"
#include "tests/engine/feed_check.h"
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

TEST(FeedRangeCodecTest, RoundTripsAndRejectsPointEntries) {
  std::string blob;
  EncodeFeedRange(7, 7 + 300, 1000, std::string("\x01\x09\x01", 3),
                  std::string("\x01\x09\x7f", 3), &blob);
  FeedRange r;
  ASSERT_TRUE(DecodeFeedRange(blob, 7, &r));
  EXPECT_EQ(r.hi, 307);
  EXPECT_EQ(r.rows, 1000);
  EXPECT_EQ(r.first, std::string_view("\x01\x09\x01", 3));
  EXPECT_EQ(r.last, std::string_view("\x01\x09\x7f", 3));
  // The format 3 marker, without a count, reads as uncounted.
  std::string old;
  EncodeFeedRange(7, 7 + 300, -1, r.first, r.last, &old);
  EXPECT_EQ(old, std::string("\x00\xac\x02\x03\x01\x09\x01\x01\x09\x7f", 10));
  ASSERT_TRUE(DecodeFeedRange(old, 7, &r));
  EXPECT_EQ(r.hi, 307);
  EXPECT_EQ(r.rows, -1);
  EXPECT_EQ(r.last, std::string_view("\x01\x09\x7f", 3));
  // A packed pk starts with its column count: never a range.
  EXPECT_FALSE(DecodeFeedRange(std::string("\x01\x09\x01", 3), 7, &r));
  EXPECT_FALSE(DecodeFeedRange("", 7, &r));
  // Truncated or inconsistent markers are not ranges either.
  EXPECT_FALSE(DecodeFeedRange(blob.substr(0, 3), 7, &r));
  EXPECT_FALSE(DecodeFeedRange(std::string("\x00\x05\x09\x01", 4), 7, &r));
  EXPECT_FALSE(DecodeFeedRange(blob, -1, &r));
}

// Every way a reader sees the changes, as text: crsql_changes in scan
// order (whole, after each version, local only, one row) and ChangeReader.
// Site ids differ between the databases, so they are left out.
std::vector<std::string> Reads(TestDb& db) {
  std::vector<std::string> out;
  auto add = [&](const std::string& where) {
    std::string all;
    for (const auto& row : db.Query("SELECT \"table\", hex(pk), cid, quote(val), col_version, "
                                    "db_version, cl, seq FROM crsql_changes " + where)) {
      for (const auto& v : row) all += v + "|";
      all += "\n";
    }
    out.push_back(where + ":\n" + all);
  };
  add("");
  add("WHERE site_id IS NULL");
  const int64_t top = std::stoll(db.One("SELECT crsql_db_version()"));
  for (int64_t v = 0; v <= top; ++v) add("WHERE db_version > " + std::to_string(v));
  add("WHERE db_version = " + std::to_string(top));
  add("WHERE pk = crsql_pack_columns(5)");
  std::unique_ptr<ChangeReader> reader;
  EXPECT_OK(ChangeReader::Open(db.get(), &reader));
  if (!reader) return out;
  std::string stream;
  for (int64_t after = 0;;) {
    std::vector<Change> txn;
    int64_t dbv = 0;
    EXPECT_OK(reader->NextTransaction(after, OriginFilter{}, &txn, &dbv));
    if (dbv == 0) break;
    for (const Change& c : txn) {
      stream += c.table + "|" + c.pk + "|" + c.cid + "|" + std::to_string(c.val_type) + "|" +
                std::to_string(c.val_int) + c.val_bytes + "|" + std::to_string(c.col_version) +
                "|" + std::to_string(c.db_version) + "|" + std::to_string(c.cl) + "|" +
                std::to_string(c.seq) + "\n";
    }
    after = dbv;
  }
  out.push_back("reader:\n" + stream);
  return out;
}

int64_t RangeEntries(TestDb& db, const std::string& table) {
  return std::stoll(db.One("SELECT count(*) FROM \"" + table + "__crsync_feed\" WHERE substr(pk, 1, 1) = x'00'"));
}

// Runs `step(db)` on both databases, ranges on for the first only.
class TwoFeeds {
 public:
  template <typename F>
  void Both(F&& step) {
    MetaBatch::EnableRangeWritesForTesting(true);
    step(ranged);
    MetaBatch::EnableRangeWritesForTesting(false);
    step(plain);
    MetaBatch::EnableRangeWritesForTesting(true);
  }
  void ExpectSameReads(const std::string& context) {
    auto a = Reads(ranged), b = Reads(plain);
    ASSERT_EQ(a.size(), b.size()) << context;
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << context;
  }
  ~TwoFeeds() { MetaBatch::EnableRangeWritesForTesting(true); }

  TestDb ranged, plain;
};

std::string Ascending(int from, int count, const std::string& tag) {
  return "WITH RECURSIVE n(i) AS (SELECT " + std::to_string(from) + " UNION ALL SELECT i + 1 FROM n "
         "WHERE i < " + std::to_string(from + count - 1) + ") INSERT INTO t SELECT i, '" + tag +
         "' || i, i % 7 FROM n ORDER BY i";
}

// Creates the CRR t (id, b, c) holding rows 1..rows, loaded in one
// ascending transaction.
void MakeT(TestDb& db, int rows = 0) {
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b TEXT, c INTEGER);"
          "SELECT crsql_as_crr('t');");
  if (rows > 0) db.Exec("BEGIN;" + Ascending(1, rows, "a") + "; COMMIT;");
}

// Random bulk loads, each followed in the same and later transactions by
// updates, deletes, re-inserts and key changes of the loaded rows.
TEST(FeedRangeTest, ReadsMatchOneEntryPerRowWhateverHappensToTheRows) {
  bool saw_ranges = false;
  for (uint64_t seed = 1; seed <= 16; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    TwoFeeds dbs;
    dbs.Both([](TestDb& db) { MakeT(db); });
    int next = 1;
    for (int txn = 0; txn < 6; ++txn) {
      std::vector<std::string> sql;
      sql.push_back("BEGIN");
      if (rng() % 3 != 0) {
        int count = rng() % 2 ? 20 + static_cast<int>(rng() % 60) : 1000 + static_cast<int>(rng() % 1200);
        sql.push_back(Ascending(next, count, "v" + std::to_string(txn)));
        next += count + static_cast<int>(rng() % 3);
      }
      // Ids below `next` only: the next load starts above them.
      for (int k = 0, n = next > 1 ? static_cast<int>(rng() % 12) : 0; k < n; ++k) {
        const std::string id = std::to_string(1 + rng() % (next - 1));
        switch (rng() % 5) {
          case 0:
            sql.push_back("UPDATE t SET b = 'u" + std::to_string(k) + "' WHERE id = " + id);
            break;
          case 1:
            sql.push_back("UPDATE t SET b = 'w', c = c + 1 WHERE id BETWEEN " + id + " AND " + id + " + 30");
            break;
          case 2:
            sql.push_back("DELETE FROM t WHERE id = " + id);
            break;
          case 3:
            sql.push_back("INSERT OR REPLACE INTO t VALUES (" + id + ", 'r', 1)");
            break;
          default:
            sql.push_back("UPDATE OR IGNORE t SET id = id + 100000 WHERE id = " + id);
        }
      }
      sql.push_back(rng() % 6 == 0 ? "ROLLBACK" : "COMMIT");
      // Reads inside the transaction flush the captured writes early.
      const size_t read_at = rng() % sql.size();
      dbs.Both([&](TestDb& db) {
        for (size_t i = 0; i < sql.size(); ++i) {
          db.Exec(sql[i]);
          if (i == read_at && i + 1 < sql.size()) db.One("SELECT count(*) FROM crsql_changes");
        }
      });
      ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("after transaction " + std::to_string(txn)));
      ASSERT_NO_FATAL_FAILURE(ExpectExactCounts(dbs.ranged, "after transaction " + std::to_string(txn)));
    }
    EXPECT_EQ(RangeEntries(dbs.plain, "t"), 0);
    saw_ranges = saw_ranges || RangeEntries(dbs.ranged, "t") > 0;
    // Rebuilt from its changes elsewhere, the ranged database's table is
    // the same.
    TestDb copy;
    MakeT(copy);
    Sync(dbs.ranged, copy);
    EXPECT_EQ(copy.Query("SELECT * FROM t ORDER BY id"), dbs.ranged.Query("SELECT * FROM t ORDER BY id"));
  }
  EXPECT_TRUE(saw_ranges);
}

// ChangeApplier appending rows to a table gets range entries too; merging
// the same batches with and without them reads the same.
TEST(FeedRangeTest, AppliedAppendsReadTheSame) {
  TestDb src;
  MakeT(src, 3000);
  src.Exec("UPDATE t SET c = c + 1 WHERE id % 3 = 0");
  src.Exec("DELETE FROM t WHERE id % 11 = 0 AND id > 2500");  // tombstones: rows too
  TwoFeeds dbs;
  dbs.Both([&](TestDb& db) {
    MakeT(db);
    std::unique_ptr<ChangeApplier> applier;
    ASSERT_OK(ChangeApplier::Open(db.get(), &applier));
    // In pk order, as a sender's read of one row after another arrives.
    auto rows = ReadChanges(src.get(), "WHERE db_version = 1");
    ASSERT_OK(applier->Apply(ToChanges(rows)));
    ASSERT_OK(applier->Apply(ToChanges(ReadChanges(src.get(), "WHERE db_version > 1"))));
    db.Exec("UPDATE t SET b = 'local' WHERE id BETWEEN 100 AND 120");
    db.Exec("UPDATE t SET c = c + 1");  // dense up to the tombstones
    db.Exec("UPDATE t SET c = c + 1 WHERE id % 2 = 0");  // every other row
  });
  EXPECT_GT(RangeEntries(dbs.ranged, "t"), 0);
  // Ranges only where nothing else lies between the rows written.
  const std::string top = dbs.ranged.One("SELECT crsql_db_version()");
  const std::string ranged_at =
      "SELECT count(*) FROM t__crsync_feed WHERE substr(pk, 1, 1) = x'00' AND dbv = ";
  EXPECT_GT(std::stoi(dbs.ranged.One(ranged_at + std::to_string(std::stoi(top) - 1))), 0);
  EXPECT_EQ(dbs.ranged.One(ranged_at + top), "0");
  EXPECT_EQ(RangeEntries(dbs.plain, "t"), 0);
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("applied"));
  EXPECT_EQ(dbs.ranged.Query("SELECT * FROM t ORDER BY id"), dbs.plain.Query("SELECT * FROM t ORDER BY id"));
  EXPECT_EQ(dbs.ranged.One("SELECT count(*) FROM t WHERE b = 'local'"), "21");
}

// crsql_as_crr's backfill: runs follow the table's key order, which the
// packed keys follow for positive integers but not for negative ones or
// text mixed in; ranges only where they agree.
// Updates over key ranges are stored with one walk that rewrites each
// row's metadata as it meets it (StoreUpdatedRows): dense ranges, every
// other row, ranges too sparse for the walk, and rows updated twice in one
// transaction must read exactly as stored row by row.
TEST(FeedRangeTest, RangeUpdatesReadTheSame) {
  TwoFeeds dbs;
  dbs.Both([&](TestDb& db) {
    MakeT(db, 5000);
    db.Exec("UPDATE t SET c = c + 1");                                   // dense
    db.Exec("UPDATE t SET b = b || '~' WHERE id % 2 = 0");               // every other row
    db.Exec("UPDATE t SET c = c * 2, b = 'x' WHERE id % 5 = 0");         // too sparse to walk
    db.Exec("BEGIN; UPDATE t SET c = 0 WHERE id <= 3000;"
            "UPDATE t SET c = c + 1, b = 'y' WHERE id BETWEEN 1000 AND 4000;"
            "DELETE FROM t WHERE id BETWEEN 2000 AND 2100; COMMIT;");     // twice in one transaction
    db.Exec("UPDATE t SET c = c + 1 WHERE id BETWEEN 1900 AND 2300");    // across tombstones
  });
  EXPECT_GT(RangeEntries(dbs.ranged, "t"), 0);
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("range updates"));
  EXPECT_EQ(dbs.ranged.Query("SELECT * FROM t ORDER BY id"), dbs.plain.Query("SELECT * FROM t ORDER BY id"));
}

// Each range counts its rows, and a range whose rows were all moved on is
// deleted: a table updated again and again keeps the ranges of its latest
// writes, not one set per update, so reading after a cursor costs what it
// returns (before, ten updates of 100k rows made reading every change 7x
// slower).
TEST(FeedRangeTest, RangesWhoseRowsWereAllRewrittenAreDeleted) {
  TwoFeeds dbs;
  dbs.Both([](TestDb& db) {
    MakeT(db, 5000);
    db.Exec("UPDATE t SET c = c + 1");
  });
  const int64_t after_one = RangeEntries(dbs.ranged, "t");
  EXPECT_GT(after_one, 0);
  dbs.Both([](TestDb& db) {
    for (int i = 0; i < 6; ++i) db.Exec("UPDATE t SET c = c + 1");
    db.Exec("BEGIN; UPDATE t SET c = c + 1; UPDATE t SET c = c * 2; COMMIT;");
    db.Exec("UPDATE t SET c = c - 1 WHERE id > 2000");
  });
  EXPECT_LE(RangeEntries(dbs.ranged, "t"), after_one + 4);
  // No range left at a version whose c records were all rewritten.
  EXPECT_EQ(dbs.ranged.One("SELECT count(*) FROM t__crsync_feed WHERE dbv BETWEEN 3 AND 8"), "0");
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("rewritten"));
  ExpectExactCounts(dbs.ranged, "rewritten");
}

// Rows leaving a range one transaction at a time (stored row by row) are
// counted off too, by updates and by deletes.
TEST(FeedRangeTest, ARangeLosingItsRowsOneByOneIsDeleted) {
  TwoFeeds dbs;
  dbs.Both([](TestDb& db) { MakeT(db, 100); });
  ASSERT_GT(std::stoi(dbs.ranged.One("SELECT count(*) FROM t__crsync_feed WHERE dbv = 1 AND "
                                     "substr(pk, 1, 1) = x'00'")), 0);
  dbs.Both([](TestDb& db) {
    for (int id = 1; id <= 60; ++id) {
      db.Exec("UPDATE t SET b = 'n', c = -1 WHERE id = " + std::to_string(id));
    }
    db.Exec("BEGIN; DELETE FROM t WHERE id BETWEEN 61 AND 80; COMMIT;");
  });
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("half gone"));
  ExpectExactCounts(dbs.ranged, "half gone");
  EXPECT_NE(dbs.ranged.One("SELECT count(*) FROM t__crsync_feed WHERE dbv = 1"), "0");
  // Rows leaving in a transaction that rolls back stay counted.
  dbs.Both([](TestDb& db) {
    db.Exec("BEGIN; DELETE FROM t WHERE id = 81; UPDATE t SET b = 'r', c = 0 WHERE id = 82;"
            "DELETE FROM t WHERE id = 83; ROLLBACK;");
    db.Exec("SAVEPOINT s; DELETE FROM t WHERE id = 84; ROLLBACK TO s; RELEASE s;");
  });
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("rolled back"));
  ExpectExactCounts(dbs.ranged, "rolled back");
  dbs.Both([](TestDb& db) {
    for (int id = 81; id <= 99; ++id) db.Exec("DELETE FROM t WHERE id = " + std::to_string(id));
  });
  EXPECT_NE(dbs.ranged.One("SELECT count(*) FROM t__crsync_feed WHERE dbv = 1"), "0");
  dbs.Both([](TestDb& db) { db.Exec("DELETE FROM t WHERE id = 100"); });
  EXPECT_EQ(dbs.ranged.One("SELECT count(*) FROM t__crsync_feed WHERE dbv = 1"), "0");
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("all gone"));
  ExpectExactCounts(dbs.ranged, "all gone");
}

// A write interrupted after a row's range delete found nothing, but before
// the write finished, rolls back: that row stays in its range, so the
// range must not lose it at the next write either. Interrupted at every
// step in turn (a progress handler), each failure followed by another
// write, every count stays exact.
TEST(FeedRangeTest, AWriteThatFailsPartWayLeavesCountsExact) {
  TestDb db;
  MakeT(db, 100);
  // Row 50 holds its load's run through the range, and a point entry of
  // its own for c.
  db.Exec("UPDATE t SET c = -1 WHERE id = 50");
  int failures = 0;
  for (int steps = 1; steps < 200000; ++steps) {
    int left = steps;
    sqlite3_progress_handler(db.get(), 1, [](void* p) { return --*static_cast<int*>(p) < 0 ? 1 : 0; },
                             &left);
    const int rc = sqlite3_exec(db.get(), "UPDATE t SET b = 'z', c = 9 WHERE id = 50", nullptr,
                                nullptr, nullptr);
    sqlite3_progress_handler(db.get(), 0, nullptr, nullptr);
    if (rc == SQLITE_OK) break;
    ASSERT_EQ(rc, SQLITE_INTERRUPT) << sqlite3_errmsg(db.get());
    ++failures;
    db.Exec("UPDATE t SET c = c + 1 WHERE id = 2");  // any later write of t
    ASSERT_NO_FATAL_FAILURE(ExpectExactCounts(db, "interrupted at step " + std::to_string(steps)));
  }
  EXPECT_GT(failures, 100);
  EXPECT_EQ(db.One("SELECT b || c FROM t WHERE id = 50"), "'z9'");
  ExpectExactCounts(db, "after the write");
}

// A load that follows, in its transaction, thousands of writes stored
// with point entries still gets ranges: looking for a range it would
// overlap steps over those entries, and must not give up on them (nor on
// the ranges of the load's own earlier windows).
TEST(FeedRangeTest, ALoadAfterManyPointWritesInItsTransactionGetsRanges) {
  TwoFeeds dbs;
  dbs.Both([](TestDb& db) {
    MakeT(db);
    db.Exec("CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('u');");
    // Keys in a scattered order: one row per window entry, no ranges.
    db.Exec("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) "
            "INSERT INTO t SELECT (i * 7919) % 6007, 'p', i FROM n;" +
            Ascending(100000, 20000, "load") + "; COMMIT;");
  });
  // The load's 20k rows: a range per window (about 20), not 20k entries.
  const int64_t entries = std::stoll(dbs.ranged.One(
      "SELECT count(*) FROM t__crsync_feed WHERE dbv = crsql_db_version()"));
  EXPECT_LT(entries, 6000 + 200);
  EXPECT_GE(RangeEntries(dbs.ranged, "t"), 15);
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("load after points"));
  ExpectExactCounts(dbs.ranged, "load after points");
}

// Merged records keep their sender's seqs, so one local transaction that
// merges several of a peer's transactions at one local version gets
// stretches whose runs overlap. At most one range may cover a run, or a
// row leaving could be counted off the wrong range; later merges and local
// writes then move those rows on, and reads must stay exact.
TEST(FeedRangeTest, MergedTransactionsWithOverlappingSeqsReadTheSame) {
  TestDb src;
  MakeT(src, 2000);
  for (int i = 0; i < 3; ++i) src.Exec("UPDATE t SET c = c + 1, b = b || 'u'");
  src.Exec("UPDATE t SET c = 0 WHERE id BETWEEN 500 AND 1500");
  const int64_t top = std::stoll(src.One("SELECT crsql_db_version()"));
  TwoFeeds dbs;
  dbs.Both([&](TestDb& db) {
    MakeT(db);
    // Local versions far above the sender's: every merge below stamps one
    // local version, whatever the sender's was.
    db.Exec("CREATE TABLE scratch (x INTEGER PRIMARY KEY NOT NULL); SELECT crsql_as_crr('scratch')");
    for (int i = 0; i < 20; ++i) db.Exec("INSERT INTO scratch VALUES (" + std::to_string(i) + ")");
    std::unique_ptr<ChangeApplier> applier;
    ASSERT_OK(ChangeApplier::Open(db.get(), &applier));
    ASSERT_OK(applier->Apply(ToChanges(ReadChanges(src.get(), "WHERE db_version <= 2"))));
    ASSERT_OK(applier->Apply(ToChanges(ReadChanges(src.get(), "WHERE db_version > 2"))));
  });
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("merged"));
  ExpectExactCounts(dbs.ranged, "merged");
  src.Exec("UPDATE t SET c = c + 10 WHERE id % 2 = 0");
  src.Exec("UPDATE t SET b = 'late' WHERE id > 1000");
  dbs.Both([&](TestDb& db) {
    std::unique_ptr<ChangeApplier> applier;
    ASSERT_OK(ChangeApplier::Open(db.get(), &applier));
    ASSERT_OK(applier->Apply(
        ToChanges(ReadChanges(src.get(), "WHERE db_version > " + std::to_string(top)))));
    db.Exec("UPDATE t SET c = -c WHERE id BETWEEN 300 AND 1700");
    for (int id = 1; id <= 2000; id += 97) db.Exec("DELETE FROM t WHERE id = " + std::to_string(id));
  });
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("moved on"));
  ExpectExactCounts(dbs.ranged, "moved on");
  EXPECT_EQ(dbs.ranged.Query("SELECT * FROM t ORDER BY id"), dbs.plain.Query("SELECT * FROM t ORDER BY id"));
}

// Ranges written by format 3 builds have no count: they stay, and rows
// leaving them change nothing, while the ranges written since are kept
// exactly. Reads are the same throughout.
TEST(FeedRangeTest, UncountedRangesOfFormatThreeStay) {
  TwoFeeds dbs;
  dbs.Both([](TestDb& db) { MakeT(db, 3000); });
  // Turn every marker into its format 3 form.
  int64_t old = 0;
  for (const auto& row : dbs.ranged.Query("SELECT dbv, lo, hex(pk) FROM t__crsync_feed "
                                          "WHERE substr(pk, 1, 1) = x'00'")) {
    const std::string blob = Unhex(row[2]);
    FeedRange r;
    ASSERT_TRUE(DecodeFeedRange(blob, std::stoll(row[1]), &r));
    std::string uncounted;
    EncodeFeedRange(std::stoll(row[1]), r.hi, -1, r.first, r.last, &uncounted);
    dbs.ranged.Exec("UPDATE t__crsync_feed SET pk = x'" + HexBytes(uncounted) + "' WHERE dbv = " +
                    row[0] + " AND lo = " + row[1] + " AND pk = x'" + HexBytes(blob) + "'");
    ++old;
  }
  ASSERT_GT(old, 0);
  dbs.Both([](TestDb& db) {
    db.Exec("UPDATE t SET b = 'x', c = 0");
    db.Exec("UPDATE t SET b = 'y', c = 1");
    db.Exec("DELETE FROM t WHERE id < 100");
  });
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("after rewrites"));
  EXPECT_EQ(RangeEntries(dbs.ranged, "t"),
            old + std::stoll(dbs.ranged.One("SELECT count(*) FROM t__crsync_feed WHERE dbv >= 3 "
                                            "AND substr(pk, 1, 1) = x'00'")));
  EXPECT_EQ(dbs.ranged.One("SELECT count(*) FROM t__crsync_feed WHERE dbv = 2"), "0");
}

// FindInWalk answers the same whatever order the keys are asked in.
TEST(FeedRangeTest, FindInWalkFindsKeysInAnyOrder) {
  const std::vector<std::string> keys = {"b", "d", "f", "h"};
  auto key_at = [&](size_t i) { return std::string_view(keys[i]); };
  const std::vector<std::pair<std::string, size_t>> expect = {
      {"a", 4}, {"b", 0}, {"c", 4}, {"d", 1}, {"e", 4}, {"f", 2}, {"g", 4}, {"h", 3}, {"i", 4}};
  std::vector<std::pair<std::string, size_t>> asks = expect;
  for (int order = 0; order < 3; ++order) {
    if (order == 1) std::reverse(asks.begin(), asks.end());
    if (order == 2) std::shuffle(asks.begin(), asks.end(), std::mt19937_64(7));
    size_t cursor = 0;
    for (const auto& [key, index] : asks) {
      EXPECT_EQ(FindInWalk(keys.size(), key_at, key, &cursor), index) << key << " order " << order;
      EXPECT_EQ(FindInWalk(keys.size(), key_at, key, &cursor), index) << key << " asked twice";
      EXPECT_LE(cursor, keys.size());
    }
  }
}

// With PRAGMA reverse_unordered_selects the metadata walk meets the rows in
// descending key order while the transaction wrote them ascending (one
// statement per row); it must still take every row, with the seqs of the
// write order.
TEST(FeedRangeTest, RangeUpdatesWalkedBackwardsReadTheSame) {
  TwoFeeds dbs;
  dbs.Both([&](TestDb& db) {
    MakeT(db, 400);
    db.Exec("PRAGMA reverse_unordered_selects = 1");
    std::string txn = "BEGIN;";
    for (int id = 101; id <= 300; ++id) {
      txn += "UPDATE t SET c = " + std::to_string(id * 7) + " WHERE id = " + std::to_string(id) + ";";
    }
    db.Exec(txn + "COMMIT;");
  });
  EXPECT_GT(RangeEntries(dbs.ranged, "t"), 0);  // the walk took the window
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("walked backwards"));
  // Seqs follow the write order: ascending ids.
  auto ids = dbs.ranged.Query("SELECT u.cell FROM crsql_changes, crsql_unpack_columns(pk) AS u "
                              "WHERE db_version = 2 ORDER BY seq");
  ASSERT_EQ(ids.size(), 200u);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i][0], std::to_string(101 + i)) << "seq order " << i;
}

// A row the walk does not meet (its metadata is missing: only a write
// behind the engine's back does that) still gets its update recorded.
TEST(FeedRangeTest, RangeUpdateOfARowWithoutMetadataIsRecorded) {
  TestDb db;
  MakeT(db, 100);
  db.Exec("DELETE FROM t__crsync_rows WHERE pk = crsql_pack_columns(50)");
  db.Exec("UPDATE t SET c = 100 + id");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE db_version = 2 AND cid = 'c'"), "100");
  EXPECT_EQ(db.One("SELECT col_version || '/' || val FROM crsql_changes "
                   "WHERE pk = crsql_pack_columns(50) AND cid = 'c'"), "'1/150'");
  EXPECT_EQ(db.One("SELECT col_version || '/' || val FROM crsql_changes "
                   "WHERE pk = crsql_pack_columns(51) AND cid = 'c'"), "'2/151'");
  // Every seq of the transaction is distinct.
  EXPECT_EQ(db.One("SELECT count(DISTINCT seq) FROM crsql_changes WHERE db_version = 2"), "100");
}

TEST(FeedRangeTest, BackfilledTablesReadTheSame) {
  TwoFeeds dbs;
  dbs.Both([](TestDb& db) {
    db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b TEXT, c INTEGER);"
            "WITH RECURSIVE n(i) AS (SELECT -700 UNION ALL SELECT i + 1 FROM n WHERE i < 2600) "
            "INSERT INTO t SELECT i, 'b' || i, i % 3 FROM n;"
            "INSERT INTO t VALUES ('k1', 'x', 1), ('k2', 'y', 2), (x'00ff', 'z', 3), (2.5, 'r', 4);"
            "SELECT crsql_as_crr('t');");
    db.Exec("UPDATE t SET c = 9 WHERE id BETWEEN 10 AND 1500");
    db.Exec("DELETE FROM t WHERE id IN (-5, 7, 'k1')");
  });
  EXPECT_GT(RangeEntries(dbs.ranged, "t"), 0);
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("backfilled"));
}

// Alters rebuild the feed from the metadata (one entry per row again);
// range entries written before must not leave anything behind.
TEST(FeedRangeTest, AltersAfterRangesReadTheSame) {
  TwoFeeds dbs;
  dbs.Both([](TestDb& db) {
    MakeT(db, 2500);
    db.Exec("UPDATE t SET c = c + 1 WHERE id BETWEEN 100 AND 1900");
  });
  EXPECT_GT(RangeEntries(dbs.ranged, "t"), 0);
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("before the alters"));
  dbs.Both([](TestDb& db) {
    db.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN d DEFAULT 4;"
            "SELECT crsql_commit_alter('t');");
    db.Exec("UPDATE t SET d = 5 WHERE id BETWEEN 50 AND 2000");
    db.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t RENAME COLUMN b TO e;"
            "SELECT crsql_commit_alter('t');");
    db.Exec("UPDATE t SET e = 'z' WHERE id BETWEEN 1 AND 700");
  });
  ASSERT_NO_FATAL_FAILURE(dbs.ExpectSameReads("after the alters"));
  EXPECT_EQ(dbs.ranged.Query("SELECT * FROM t ORDER BY id"), dbs.plain.Query("SELECT * FROM t ORDER BY id"));
}

}  // namespace
}  // namespace crsync
