// Merges through crsql_changes write each row's metadata behind (held until
// the next row, a savepoint, a read, COMMIT): a peer's changes to a row come
// one statement each. What is held must never be lost or seen stale.
#include "engine/catalog.h"
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

constexpr char kSchema[] =
    "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a, n INTEGER CHECK (n IS NULL OR n >= 0));"
    "SELECT crsql_as_crr('t');";

// A peer's change to t (9-column insert).
std::string Merge(int id, const char* cid, const std::string& val, int dbv, int seq = 0) {
  return "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl, "
         "seq) VALUES ('t', crsql_pack_columns(" + std::to_string(id) + "), '" + cid + "', " + val +
         ", 1, " + std::to_string(dbv) + ", X'11111111111111111111111111111111', 1, " +
         std::to_string(seq) + ")";
}

// What crsql_changes says (apart from local db_versions), and that a
// replica rebuilt from it has the same rows: the metadata matches the table.
Rows Described(TestDb& db) {
  TestDb fresh;
  fresh.Exec(kSchema);
  Sync(db, fresh);
  EXPECT_EQ(fresh.Query("SELECT * FROM t ORDER BY id"), db.Query("SELECT * FROM t ORDER BY id"))
      << "the metadata does not describe the table";
  return db.Query("SELECT hex(pk), cid, val, col_version, cl FROM crsql_changes ORDER BY pk, cid");
}

TEST(WriteBehindTest, RollingBackToASavepointKeepsWhatWasMergedBeforeIt) {
  TestDb db;
  db.Exec(kSchema);
  db.Exec("BEGIN");
  db.Exec(Merge(1, "a", "'before'", 1));  // held when the savepoint opens
  db.Exec("SAVEPOINT sp");
  db.Exec(Merge(1, "n", "5", 1, 1));
  db.Exec(Merge(2, "a", "'inside'", 1, 2));
  db.Exec("ROLLBACK TO sp; RELEASE sp; COMMIT");
  EXPECT_EQ(db.Query("SELECT id, a, n FROM t"), (Rows{{"1", "'before'", "NULL"}}));
  EXPECT_EQ(Described(db), (Rows{{"'010901'", "'a'", "'before'", "1", "1"}}));
}

TEST(WriteBehindTest, AFailedStatementKeepsWhatEarlierOnesMerged) {
  TestDb db;
  db.Exec(kSchema);
  db.Exec("BEGIN");
  db.Exec(Merge(1, "a", "'kept'", 1));
  // A change refused by the table (CHECK): only its own user-table write
  // rolls back; the row held from the statement before stays held.
  EXPECT_THAT(db.Error(Merge(1, "n", "-1", 1, 1)), HasSubstr("CHECK constraint failed"));
  EXPECT_THAT(db.Error(Merge(2, "n", "-1", 1, 2)), HasSubstr("CHECK constraint failed"));
  // A many-row statement (it has a statement journal) failing at its last
  // row: its earlier rows roll back with it, the row held before it stays.
  db.Exec("CREATE TEMP TABLE src (id, cid, val)");
  db.Exec("INSERT INTO src VALUES (1, 'n', 3), (3, 'a', 'gone'), (4, 'n', -1)");
  EXPECT_THAT(db.Error("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, "
                       "site_id, cl, seq) SELECT 't', crsql_pack_columns(id), cid, val, 1, 2, "
                       "X'11111111111111111111111111111111', 1, rowid FROM src"),
              HasSubstr("CHECK constraint failed"));
  db.Exec("COMMIT");
  EXPECT_EQ(db.Query("SELECT id, a, n FROM t"), (Rows{{"1", "'kept'", "NULL"}}));
  EXPECT_EQ(Described(db), (Rows{{"'010901'", "'a'", "'kept'", "1", "1"}}));
}

// Rows merged in ascending key order are held many at a time. A later
// statement that opens a statement journal writes them out first (in
// xSavepoint, as the statement begins): if that statement then fails, its
// rollback must not take the held rows' metadata with it.
TEST(WriteBehindTest, AFailedStatementKeepsManyRowsHeldBeforeIt) {
  for (const char* failing :
       {"INSERT INTO t (id, a) VALUES (100, 'x'), (1, 'dup')",  // another table's statement
        "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl, "
        "seq) SELECT 't', crsql_pack_columns(200), 'n', -1, 1, 3, "
        "X'11111111111111111111111111111111', 1, 0"}) {  // a merge's, failing at its first row
    SCOPED_TRACE(failing);
    TestDb db;
    db.Exec(kSchema);
    db.Exec("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 40) "
            "INSERT INTO t (id, a) SELECT i, 'local' FROM s");
    db.Exec("BEGIN");
    for (int id = 1; id <= 30; ++id) db.Exec(Merge(id, "a", "'peer" + std::to_string(id) + "'", 2));
    EXPECT_THAT(db.Error(failing), HasSubstr("constraint failed"));
    db.Exec("COMMIT");
    EXPECT_EQ(db.One("SELECT count(*) FROM t WHERE a LIKE 'peer%'"), "30");
    // Every merged row carries the peer's clock, so a fresh replica gets
    // the peer's values (Described checks the table matches).
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE cid = 'a' AND "
                     "site_id = X'11111111111111111111111111111111'"),
              "30");
    Described(db);
  }
}

TEST(WriteBehindTest, ReadsAndLocalWritesInTheTransactionSeeTheHeldRow) {
  TestDb db;
  db.Exec(kSchema);
  db.Exec("BEGIN");
  db.Exec(Merge(1, "a", "'peer'", 7));
  // Read through crsql_changes: the row is there, with its clocks.
  EXPECT_EQ(db.Query("SELECT cid, val, col_version FROM crsql_changes"),
            (Rows{{"'a'", "'peer'", "1"}}));
  db.Exec(Merge(1, "n", "4", 7, 1));
  // A local write to the held row continues from its clocks.
  db.Exec("UPDATE t SET a = 'mine' WHERE id = 1");
  db.Exec(Merge(2, "a", "'other'", 7, 2));
  db.Exec("COMMIT");
  EXPECT_EQ(db.Query("SELECT cid, val, col_version, site_id = crsql_site_id() FROM crsql_changes "
                     "WHERE pk = crsql_pack_columns(1) ORDER BY cid"),
            (Rows{{"'a'", "'mine'", "2", "1"}, {"'n'", "4", "1", "0"}}));
  EXPECT_EQ(Described(db).size(), 3u);
}

// More rows than Crr::kMaxPending are held and written a window at a time:
// failures, savepoints, reads and local writes in between must see and
// keep exactly what one transaction per statement would.
TEST(WriteBehindTest, ManyHeldRowsMatchOneTransactionPerStatement) {
  TestDb batched, single;
  batched.Exec(kSchema);
  single.Exec(kSchema);
  batched.Exec("BEGIN");
  auto both = [&](const std::string& sql) {
    batched.Exec(sql);
    single.Exec(sql);
  };
  int seq = 0;
  for (int id = 1; id <= 1500; ++id) {
    both(Merge(id, "a", "'v" + std::to_string(id) + "'", 1, seq++));
    if (id % 3 == 0) both(Merge(id, "n", std::to_string(id), 1, seq++));
    if (id % 7 == 0 && id > 100 && (id <= 1000 || id > 1105)) both(Merge(id - 5, "a", "'w" + std::to_string(id) + "'", 1, seq++));  // held earlier
    if (id % 250 == 0) {
      // Refused by the table: nothing of it stays, everything before does.
      EXPECT_THAT(batched.Error(Merge(100000 + id, "n", "-1", 1, seq)), HasSubstr("CHECK constraint failed"));
      EXPECT_THAT(single.Error(Merge(100000 + id, "n", "-1", 1, seq++)), HasSubstr("CHECK constraint failed"));
    }
    if (id == 700) {
      // Read mid-way: the held rows are there.
      EXPECT_EQ(batched.One("SELECT count(*) FROM crsql_changes WHERE cid = 'a'"), "700");
      both("UPDATE t SET a = 'local' WHERE id IN (699, 700)");  // local writes to held rows
    }
    if (id == 1000) batched.Exec("SAVEPOINT sp");
    if (id == 1100) batched.Exec("ROLLBACK TO sp; RELEASE sp");
    if (id > 1000 && id <= 1100) {
      // Undone in `batched` (rolled back to sp): undo them in `single` too.
      single.Exec("DELETE FROM t__crsync_rows WHERE pk = crsql_pack_columns(" + std::to_string(id) +
                  "); DELETE FROM t__crsync_feed WHERE pk = crsql_pack_columns(" +
                  std::to_string(id) + ")");
      single.Exec("SELECT crsql_internal_sync_bit(1); DELETE FROM t WHERE id = " +
                  std::to_string(id) + "; SELECT crsql_internal_sync_bit(0)");
    }
  }
  batched.Exec("COMMIT");
  EXPECT_EQ(batched.One("SELECT count(*) FROM t"), "1400");
  EXPECT_EQ(batched.Query("SELECT * FROM t ORDER BY id"), single.Query("SELECT * FROM t ORDER BY id"));
  EXPECT_EQ(Described(batched), Described(single));
}

// A user trigger that merges too runs inside the outer merge's user-table
// write, and may write the held row out. If that write then fails, SQLite
// undoes the held row's write as well: the transaction can no longer
// commit correctly, so it must not commit at all.
// Leaves db (with kSchema) in a transaction whose write-behind failed that
// way.
void FailAWriteBehind(TestDb& db) {
  db.Exec(kSchema);
  db.Exec("CREATE TRIGGER nested AFTER UPDATE ON t WHEN NEW.n = 99 BEGIN " +
          Merge(50, "a", "'nested'", 9) + "; SELECT RAISE(ABORT, 'n 99 refused'); END;");
  db.Exec("BEGIN");
  db.Exec(Merge(1, "a", "'held'", 1));
  // The same row again: still held when its user-table write begins.
  EXPECT_THAT(db.Error(Merge(1, "n", "99", 1, 1)), HasSubstr("n 99 refused"));
}

// COMMIT fails, and leaves nothing.
void ExpectCommitRefused(TestDb& db) {
  EXPECT_THAT(db.Error("COMMIT"), HasSubstr("roll the transaction back"));
  EXPECT_EQ(sqlite3_get_autocommit(db.get()), 1) << "the failed COMMIT rolled back";
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "0");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "0");
}

TEST(WriteBehindTest, AHeldRowWrittenInsideAFailedMergeFailsTheTransaction) {
  TestDb db;
  FailAWriteBehind(db);
  ExpectCommitRefused(db);
  // Without the trigger's merge the same failure costs nothing.
  db.Exec("DROP TRIGGER nested");
  db.Exec("CREATE TRIGGER refuse AFTER UPDATE ON t WHEN NEW.n = 99 BEGIN "
          "SELECT RAISE(ABORT, 'n 99 refused'); END;");
  db.Exec("BEGIN");
  db.Exec(Merge(1, "a", "'held'", 1));
  EXPECT_THAT(db.Error(Merge(1, "n", "99", 1, 1)), HasSubstr("n 99 refused"));
  db.Exec("COMMIT");
  EXPECT_EQ(Described(db), (Rows{{"'010901'", "'a'", "'held'", "1", "1"}}));
}

// Once a write-behind has failed, nothing but the transaction's end (or a
// rollback past it) may clear that: not a ChangeApplier batch failing on
// it, not crsql_as_crr refreshing the catalog in the same transaction.
TEST(WriteBehindTest, AFailedWriteBehindStaysFailedUntilTheTransactionEnds) {
  TestDb peer;
  peer.Exec(kSchema);
  peer.Exec("INSERT INTO t (id, a) VALUES (7, 'peer')");
  const std::vector<Change> from_peer = ToChanges(ReadChanges(peer.get()));
  for (const char* then : {"applier", "as_crr"}) {
    SCOPED_TRACE(then);
    TestDb db;
    FailAWriteBehind(db);
    if (std::string(then) == "applier") {
      std::unique_ptr<ChangeApplier> applier;
      ASSERT_OK(ChangeApplier::Open(db.get(), &applier));
      EXPECT_FALSE(applier->Apply(from_peer).ok());
    } else {
      // (Refused: opening its statement journal needs the held rows written.)
      db.Error("CREATE TABLE o (id INTEGER PRIMARY KEY NOT NULL, v)");
      db.Error("SELECT crsql_as_crr('t')");
    }
    ExpectCommitRefused(db);
  }
}

// A flush that unwinds (an allocation failure after it forgot the rows it
// was writing) must not let the transaction commit without them. Inside an
// SQLite callback (a read of crsql_changes; ChangeApplier's savepoint) the
// guard reports SQLITE_NOMEM, and SQLite rolls the transaction back.
// ChangeReader flushes outside any callback: its caller gets SQLITE_NOMEM
// with the transaction still open, and COMMIT must refuse.
TEST(WriteBehindTest, AFlushThatUnwindsFailsTheTransaction) {
  TestDb peer;
  peer.Exec(kSchema);
  peer.Exec("INSERT INTO t (id, a) VALUES (7, 'peer')");
  const std::vector<Change> from_peer = ToChanges(ReadChanges(peer.get()));
  for (const char* via : {"sql", "applier", "reader"}) {
    SCOPED_TRACE(via);
    TestDb db;
    db.Exec(kSchema);
    db.Exec("BEGIN");
    db.Exec(Merge(1, "a", "'held'", 1));
    db.Exec(Merge(2, "a", "'held'", 1));
    Crr::ThrowInNextFlushForTesting();
    const std::string how(via);
    if (how == "sql") {
      EXPECT_THAT(db.Error("SELECT count(*) FROM crsql_changes"), HasSubstr("out of memory"));
    } else if (how == "applier") {
      std::unique_ptr<ChangeApplier> applier;
      ASSERT_OK(ChangeApplier::Open(db.get(), &applier));
      EXPECT_THAT(applier->Apply(from_peer).message(), HasSubstr("out of memory"));
    }
    if (how != "reader") {
      EXPECT_EQ(sqlite3_get_autocommit(db.get()), 1) << "SQLite rolled back";
      EXPECT_EQ(db.One("SELECT count(*) FROM t"), "0");
    } else {
      std::unique_ptr<ChangeReader> reader;
      ASSERT_OK(ChangeReader::Open(db.get(), &reader));
      std::vector<Change> out;
      int64_t version = 0;
      Status s;
      EXPECT_NO_THROW(s = reader->NextTransaction(0, OriginFilter{}, &out, &version));
      EXPECT_EQ(s.sqlite_code(), SQLITE_NOMEM) << s.ToString();
      EXPECT_TRUE(out.empty());
      EXPECT_THAT(db.Error("SELECT count(*) FROM crsql_changes"), HasSubstr("was interrupted"));
      EXPECT_THAT(db.Error(Merge(3, "a", "'more'", 1)), HasSubstr("roll the transaction back"));
      ExpectCommitRefused(db);
    }
    // The next transaction is not affected.
    db.Exec(Merge(4, "a", "'next'", 2));
    EXPECT_EQ(db.Query("SELECT id, a FROM t"), (Rows{{"4", "'next'"}}));
  }
}

// The same unwinding flush, run by the savepoint SQLite opens for a local
// UPDATE's statement journal: SQLite undoes only that statement, so the
// savepoint's record must survive the exception, or rolling back to it
// would clear the failure and let the merged rows commit without metadata.
TEST(WriteBehindTest, AFlushThatUnwindsInAStatementSavepointStillFailsTheCommit) {
  TestDb db;
  db.Exec(kSchema);
  db.Exec("INSERT INTO t (id, a) VALUES (1, 'local')");
  db.Exec("BEGIN");
  db.Exec(Merge(2, "a", "'held'", 1));
  db.Exec(Merge(3, "a", "'held'", 1));
  Crr::ThrowInNextFlushForTesting();
  EXPECT_THAT(db.Error("UPDATE t SET a = 'z' WHERE id = 1"), HasSubstr("out of memory"));
  EXPECT_EQ(sqlite3_get_autocommit(db.get()), 0) << "only the statement was rolled back";
  EXPECT_THAT(db.Error("COMMIT"), HasSubstr("roll the transaction back"));
  EXPECT_EQ(sqlite3_get_autocommit(db.get()), 1) << "the failed COMMIT rolled back";
  EXPECT_EQ(db.Query("SELECT id, a FROM t ORDER BY id"), (Rows{{"1", "'local'"}}));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE pk != crsql_pack_columns(1)"), "0");
}

// Only a merge's own user-table write counts as "inside a merge": a
// caller who sets the sync bit by hand (crsql_internal_sync_bit) still gets
// savepoints that keep what came before them.
TEST(WriteBehindTest, AHandSetSyncBitDoesNotLookLikeAMerge) {
  TestDb db;
  db.Exec(kSchema);
  db.Exec("BEGIN");
  db.Exec(Merge(1, "a", "'kept'", 1));
  db.Exec("SELECT crsql_internal_sync_bit(1)");
  db.Exec("SAVEPOINT sp");
  db.Exec(Merge(2, "a", "'undone'", 1, 1));
  db.Exec("ROLLBACK TO sp; RELEASE sp");
  db.Exec("SELECT crsql_internal_sync_bit(0)");
  db.Exec("COMMIT");
  EXPECT_EQ(Described(db), (Rows{{"'010901'", "'a'", "'kept'", "1", "1"}}));
}

// A trigger whose merge needs the very statement the outer merge is
// running (same table, same column) gets its own copy of it.
TEST(WriteBehindTest, ATriggerMergingIntoTheSameColumnWorks) {
  TestDb db;
  db.Exec(kSchema);
  db.Exec("CREATE TRIGGER mirror AFTER INSERT ON t WHEN NEW.id < 10 BEGIN " +
          Merge(100, "a", "NEW.a", 3) + "; END;");
  db.Exec(Merge(1, "a", "'x'", 1));
  EXPECT_EQ(db.Query("SELECT id, a FROM t ORDER BY id"), (Rows{{"1", "'x'"}, {"100", "'x'"}}));
  EXPECT_EQ(Described(db).size(), 2u);
}

}  // namespace
}  // namespace crsync
