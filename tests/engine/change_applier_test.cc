// ChangeApplier: the sidecar's merge path (a batch of decoded changes in
// one transaction, through the same code as INSERT INTO crsql_changes).
#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "crsync/engine.h"
#include "tests/change_util.h"
#include "tests/engine/change_api_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

TEST(ChangeApplierTest, AppliesBatchTracksPeerOnceAndMatchesSql) {
  TestDb a, b, c;
  for (TestDb* d : {&a, &b, &c}) d->Exec(kChangeApiSchema);
  a.Exec("INSERT INTO t VALUES (1, 'a', 1); INSERT INTO u VALUES ('x', 1); UPDATE t SET a = 'z';"
         "DELETE FROM u;");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(a.get(), &reader));
  std::vector<Change> batch;
  int64_t cursor = 0, v;
  do {
    ASSERT_OK(reader->NextTransaction(cursor, OriginFilter{}, &batch, &v));
    if (v) cursor = v;
  } while (v);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  int64_t impacted = 0;
  ASSERT_OK(applier->Apply(batch, 0, &impacted));
  EXPECT_EQ(impacted, 3);  // t.a, t.b, u tombstone
  Sync(a, c);               // the SQL path
  EXPECT_EQ(b.Query("SELECT * FROM t"), c.Query("SELECT * FROM t"));
  EXPECT_EQ(b.Query("SELECT \"table\", hex(pk), cid, val, col_version, db_version, hex(site_id), cl, seq "
                    "FROM crsql_changes"),
            c.Query("SELECT \"table\", hex(pk), cid, val, col_version, db_version, hex(site_id), cl, seq "
                    "FROM crsql_changes"));
  EXPECT_EQ(b.Query("SELECT version, seq, tag, event FROM crsql_tracked_peers"),
            (Rows{{"4", "0", "0", "0"}}));
}

// The batch is merged window by window (MetaBatch::kWindow rows); an error
// names the change by its place in the whole batch, and a window already
// merged is undone with the rest.
TEST(ChangeApplierTest, ABadChangeInALaterWindowIsNamedByItsPlaceInTheBatch) {
  TestDb a, b;
  a.Exec(kChangeApiSchema);
  b.Exec(kChangeApiSchema);
  a.Exec("BEGIN");
  for (int i = 0; i < 2500; ++i) a.Exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'a', 1)");
  a.Exec("COMMIT");
  std::vector<Change> batch = ToChanges(ReadChanges(a.get()));
  ASSERT_EQ(batch.size(), 5000u);
  batch[4321].cid = "nope";
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  const Rows before = CrrState(b, {"t", "t__crsync_rows", "t__crsync_feed"});
  Status s = applier->Apply(batch);
  EXPECT_THAT(s.message(), HasSubstr("change 4322 of 5000"));
  EXPECT_THAT(s.message(), HasSubstr("no such column t.nope"));
  // The windows merged before the bad one are undone too: metadata, feed,
  // tracked peers and the version with the rows.
  EXPECT_EQ(CrrState(b, {"t", "t__crsync_rows", "t__crsync_feed"}), before);
  batch[4321].cid = batch[4320].cid == "a" ? "b" : "a";
  ASSERT_OK(applier->Apply(batch));
  EXPECT_EQ(b.Query("SELECT * FROM t ORDER BY id"), a.Query("SELECT * FROM t ORDER BY id"));
  EXPECT_EQ(b.Query("SELECT version, tag, event FROM crsql_tracked_peers"), (Rows{{"1", "0", "0"}}));
}

TEST(ChangeApplierTest, BadChangeRollsBackTheWholeBatch) {
  TestDb a, b;
  a.Exec(kChangeApiSchema);
  b.Exec(kChangeApiSchema);
  a.Exec("INSERT INTO t VALUES (1, 'a', 1)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(a.get(), &reader));
  std::vector<Change> batch;
  int64_t v;
  ASSERT_OK(reader->NextTransaction(0, OriginFilter{}, &batch, &v));
  batch.push_back(batch[0]);
  batch.back().cid = "nope";
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  Status s = applier->Apply(batch);
  EXPECT_THAT(s.message(), HasSubstr("change 3 of 3"));
  EXPECT_THAT(s.message(), HasSubstr("no such column t.nope"));
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "0");
  EXPECT_EQ(b.One("SELECT count(*) FROM crsql_changes"), "0");
  EXPECT_EQ(b.One("SELECT count(*) FROM crsql_tracked_peers"), "0");
  EXPECT_EQ(sqlite3_get_autocommit(b.get()), 1);
  // Inside a caller's transaction only the batch is undone.
  b.Exec("BEGIN; INSERT INTO u VALUES ('mine', 1);");
  EXPECT_FALSE(applier->Apply(batch).ok());
  EXPECT_EQ(sqlite3_get_autocommit(b.get()), 0);
  b.Exec("COMMIT");
  EXPECT_EQ(b.One("SELECT count(*) FROM u"), "1");
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "0");
}

// A val_type that is no SQLite type was merged as NULL: a value silently
// lost. It is refused, by its place in the batch, and nothing remains.
TEST(ChangeApplierTest, AValTypeThatIsNoSqliteTypeIsRefused) {
  TestDb b;
  b.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');");
  const std::string site(16, '\x11');
  Change good = TextChange("t", SmallIntPk(1), "v", "x", 1, 5, site);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  for (int bad_type : {0, 6, 99, -1}) {
    Change bad = good;
    bad.pk = SmallIntPk(2);
    bad.val_type = bad_type;
    Status s = applier->Apply({good, bad});
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("change 2 of 2: val_type " + std::to_string(bad_type)));
    EXPECT_EQ(b.One("SELECT count(*) FROM t"), "0");
    EXPECT_EQ(b.One("SELECT count(*) FROM crsql_changes"), "0");
  }
  Change null_value = good;
  null_value.val_type = SQLITE_NULL;
  ASSERT_OK(applier->Apply({null_value}));
  EXPECT_EQ(b.Query("SELECT id, v IS NULL FROM t"), (Rows{{"1", "1"}}));
}

// A refused batch inside a caller's transaction leaves no trace: not the
// pending db_version its merges raised (a later merge of version 5 would be
// stamped 100), nor the seqs they took.
TEST(ChangeApplierTest, ARefusedBatchLeavesNoVersionBehind) {
  TestDb b;
  b.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');");
  Change good = TextChange("t", SmallIntPk(1), "v", "x", 1, 5, std::string(16, '\x11'));
  Change high = good;
  high.pk = SmallIntPk(2);
  high.db_version = 100;
  Change bad = good;
  bad.cid = "nosuch";
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  b.Exec("BEGIN");
  EXPECT_FALSE(applier->Apply({high, bad}).ok());
  ASSERT_OK(applier->Apply({good}));
  b.Exec("COMMIT");
  EXPECT_EQ(b.Query("SELECT hex(pk), db_version FROM crsql_changes"), (Rows{{"'010901'", "5"}}));
  EXPECT_EQ(b.One("SELECT crsql_db_version()"), "5");
}

TEST(ChangeApplierTest, ApplyInTransactionLeavesAtomicityToTheCaller) {
  TestDb a, b;
  a.Exec(kChangeApiSchema);
  b.Exec(kChangeApiSchema);
  a.Exec("INSERT INTO t VALUES (1, 'a', 1); INSERT INTO t VALUES (2, 'b', 2)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(a.get(), &reader));
  std::vector<Change> first, second;
  int64_t v;
  ASSERT_OK(reader->NextTransaction(0, OriginFilter{}, &first, &v));
  ASSERT_OK(reader->NextTransaction(v, OriginFilter{}, &second, &v));
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  // Outside a transaction it refuses and changes nothing.
  Status misuse = applier->ApplyInTransaction(first, 0);
  EXPECT_EQ(misuse.sqlite_code(), SQLITE_MISUSE);
  EXPECT_THAT(misuse.message(), HasSubstr("needs an open transaction"));
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "0");
  // Two batches in one transaction: both merged at COMMIT, tracked once.
  b.Exec("BEGIN IMMEDIATE");
  int64_t impacted = 0;
  ASSERT_OK(applier->ApplyInTransaction(first, 0, &impacted));
  EXPECT_EQ(impacted, 2);
  ASSERT_OK(applier->ApplyInTransaction(second, 0));
  b.Exec("COMMIT");
  EXPECT_EQ(b.Query("SELECT * FROM t ORDER BY id"), a.Query("SELECT * FROM t ORDER BY id"));
  EXPECT_EQ(b.One("SELECT version FROM crsql_tracked_peers"), "2");
  // A bad batch: the caller's ROLLBACK undoes it and what came before it.
  a.Exec("INSERT INTO t VALUES (3, 'c', 3)");
  std::vector<Change> third;
  ASSERT_OK(reader->NextTransaction(v, OriginFilter{}, &third, &v));
  std::vector<Change> bad = third;
  bad.back().cid = "nope";
  b.Exec("BEGIN IMMEDIATE");
  ASSERT_OK(applier->ApplyInTransaction(third, 0));
  EXPECT_THAT(applier->ApplyInTransaction(bad, 0).message(), HasSubstr("no such column t.nope"));
  b.Exec("ROLLBACK");
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "2");
  EXPECT_EQ(b.One("SELECT version FROM crsql_tracked_peers"), "2");
  // The applier is still usable afterwards.
  ASSERT_OK(applier->Apply(third));
  EXPECT_EQ(b.Query("SELECT * FROM t ORDER BY id"), a.Query("SELECT * FROM t ORDER BY id"));
}

// A caller's ROLLBACK TO between two batches undoes the first: what the
// applier remembered of the rows it wrote must go with it, or the second
// batch is judged against a clock that is no longer stored.
TEST(ChangeApplierTest, RollingBackToASavepointBetweenBatchesForgetsTheFirst) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  auto change = [](const char* val, int64_t col_version, char site) {
    return TextChange("t", SmallIntPk(1), "a", val, col_version, 4, std::string(16, site));
  };
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(db.get(), &applier));
  db.Exec("BEGIN; SAVEPOINT s");
  ASSERT_OK(applier->ApplyInTransaction({change("x", 5, 'A')}, -1));
  db.Exec("ROLLBACK TO s");
  ASSERT_OK(applier->ApplyInTransaction({change("y", 3, 'B')}, -1));
  db.Exec("RELEASE s; COMMIT");
  EXPECT_EQ(db.Query("SELECT id, a FROM t"), (Rows{{"1", "'y'"}}));
  EXPECT_EQ(db.One("SELECT col_version FROM crsql_changes WHERE cid = 'a'"), "3");
}

// Equal clocks for one cell in one batch: ChangeApplier must keep the same
// winner as INSERT INTO crsql_changes row by row (which compares with what
// the table stored, after the column's affinity, and with the stored
// change's site, even when that site is new in the batch).
TEST(ChangeApplierTest, BatchBreaksTiesLikeRowByRow) {
  constexpr char kTextSchema[] =
      "CREATE TABLE w (id INTEGER PRIMARY KEY NOT NULL, s TEXT); SELECT crsql_as_crr('w');";
  auto change = [](char site, Value val, int64_t dbv) {
    Change c = TextChange("w", SmallIntPk(1), "s", val.bytes, 1, dbv, std::string(16, site));
    c.val_type = val.type;
    c.val_int = val.i;
    return c;
  };
  struct Case {
    const char* name;
    bool merge_equal_values;
    std::vector<Change> changes;
  };
  std::vector<Case> cases = {
      // 52 is stored as '52' (TEXT), which sorts below the INTEGER -16.
      {"affinity", false, {change('\x07', Value::Int(52), 1), change('\x07', Value::Int(-16), 2)}},
      {"same value twice", false,
       {change('\x07', Value::Int(52), 1), change('\x07', Value::Int(52), 2)}},
      // Q then P, both new sites: P < Q, so Q's write stays.
      {"new sites", true, {change('\x0b', Value::Text("x"), 1), change('\x0a', Value::Text("x"), 1)}},
  };
  // Alone (a batch this small merges row by row), and with other rows
  // between the tied changes: then the batch holds the first one's user
  // write (UserWriter writes a window's rows at its end) and the second
  // must break the tie against the held value, not the stored row.
  auto filler = [&](int id) {
    Change c = change('\x05', Value::Text("f" + std::to_string(id)), 1);
    c.pk = std::string("\x01\x09", 2) + static_cast<char>(id);
    return c;
  };
  for (const Case& k : cases) {
    for (bool padded : {false, true}) {
      SCOPED_TRACE(std::string(k.name) + (padded ? ", padded" : ", alone"));
      std::vector<Change> changes = k.changes;
      if (padded) {
        changes = {k.changes[0]};
        for (int id = 10; id < 30; ++id) changes.push_back(filler(id));
        changes.push_back(k.changes[1]);
      }
      TestDb batch, by_row;
      for (TestDb* d : {&batch, &by_row}) {
        d->Exec(kTextSchema);
        if (k.merge_equal_values) d->Exec("SELECT crsql_config_set('merge-equal-values', 1)");
      }
      std::unique_ptr<ChangeApplier> applier;
      ASSERT_OK(ChangeApplier::Open(batch.get(), &applier));
      ASSERT_OK(applier->Apply(changes));
      // One statement per change, in one transaction like the batch (so
      // local db_versions compare).
      by_row.Exec("BEGIN");
      for (const Change& c : changes) ASSERT_OK(ApplyChanges(by_row.get(), {ToRow(c)}));
      by_row.Exec("COMMIT");
      const char* q = "SELECT id, quote(s) FROM w ORDER BY id";
      EXPECT_EQ(batch.Query(q), by_row.Query(q));
      const char* meta =
          "SELECT hex(pk), cid, quote(val), hex(site_id), db_version, col_version FROM crsql_changes "
          "ORDER BY pk";
      EXPECT_EQ(batch.Query(meta), by_row.Query(meta));
    }
  }
}

// A row whose write a user trigger skips (RAISE(IGNORE): SQLite reports the
// statement's success with one row fewer) or deletes inside a bulk write
// is found, named, and the batch refused.
TEST(ChangeApplierTest, ARowATriggerSkipsOrDeletesInABulkWriteIsNamedAndNothingRemains) {
  TestDb src, dst;
  for (TestDb* d : {&src, &dst}) {
    d->Exec("CREATE TABLE c (id INTEGER PRIMARY KEY NOT NULL, a, n); SELECT crsql_as_crr('c');");
  }
  src.Exec("BEGIN");
  for (int i = 0; i < 80; ++i) src.Exec("INSERT INTO c VALUES (" + std::to_string(i) + ", 'a', " + std::to_string(i) + ")");
  src.Exec("COMMIT");
  const std::vector<Change> batch = ToChanges(ReadChanges(src.get()));
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(dst.get(), &applier));
  // A skip; a trigger deleting the row the bulk write made; and one row's
  // trigger deleting another row of the run, which written again one by
  // one passes each row's own check (60 comes back, 61's trigger deletes
  // it again): each batch is refused, naming row 60's changes.
  const std::pair<const char*, const char*> cases[] = {
      {"BEFORE INSERT ON c WHEN NEW.id = 60 BEGIN SELECT RAISE(IGNORE); END",
       "skipped the write of c row X'01093c'"},
      {"AFTER INSERT ON c WHEN NEW.id = 60 BEGIN DELETE FROM c WHERE id = 60; END",
       "a user trigger deleted c row X'01093c' while a merge wrote it"},
      {"AFTER INSERT ON c WHEN NEW.id = 61 BEGIN DELETE FROM c WHERE id = 60; END",
       "a user trigger deleted c row X'01093c' while a merge wrote it"},
  };
  for (const auto& [trigger, message] : cases) {
    SCOPED_TRACE(trigger);
    dst.Exec(std::string("CREATE TRIGGER u ") + trigger);
    Status s = applier->Apply(batch);
    EXPECT_THAT(s.message(), HasSubstr(message));
    EXPECT_THAT(s.message(), HasSubstr("changes 121..122 of 160"));
    EXPECT_EQ(dst.One("SELECT count(*) FROM c"), "0");
    EXPECT_EQ(dst.One("SELECT count(*) FROM crsql_changes"), "0");
    EXPECT_EQ(dst.One("SELECT count(*) FROM crsql_tracked_peers"), "0");
    dst.Exec("DROP TRIGGER u");
  }
  ASSERT_OK(applier->Apply(batch));
  EXPECT_EQ(dst.One("SELECT count(*) FROM c"), "80");
}

// A window's user rows are written with one statement per run of rows
// writing the same columns. When the user's table refuses one (here a
// CHECK), the error names that row's changes exactly as the row-by-row
// path would, and nothing of the batch remains; the same through
// ApplyInTransaction once the caller rolls back.
TEST(ChangeApplierTest, ARefusedUserRowInABulkWriteIsNamedAndNothingRemains) {
  TestDb src, dst;
  src.Exec("CREATE TABLE c (id INTEGER PRIMARY KEY NOT NULL, a, n); SELECT crsql_as_crr('c');");
  dst.Exec("CREATE TABLE c (id INTEGER PRIMARY KEY NOT NULL, a, n INTEGER CHECK (n IS NULL OR n >= 0));"
           "SELECT crsql_as_crr('c');");
  src.Exec("BEGIN");
  for (int i = 0; i < 80; ++i) src.Exec("INSERT INTO c VALUES (" + std::to_string(i) + ", 'a', " + std::to_string(i) + ")");
  src.Exec("COMMIT");
  std::vector<Change> all = ToChanges(ReadChanges(src.get()));
  ASSERT_EQ(all.size(), 160u);
  // Rows 0..39 carry a and n, rows 40..79 only n: two runs of different
  // columns. Row 60 (change 80 + 21) breaks the receiver's CHECK.
  std::vector<Change> batch;
  for (const Change& c : all) {
    int id = static_cast<unsigned char>(c.pk[2]);
    if (id >= 40 && c.cid == "a") continue;
    batch.push_back(c);
    if (id == 60 && c.cid == "n") batch.back().val_int = -1;
  }
  ASSERT_EQ(batch.size(), 120u);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(dst.get(), &applier));
  Status s = applier->Apply(batch);
  EXPECT_THAT(s.message(), HasSubstr("changes 101..101 of 120"));
  EXPECT_THAT(s.message(), HasSubstr("CHECK constraint failed"));
  EXPECT_EQ(dst.One("SELECT count(*) FROM c"), "0");
  EXPECT_EQ(dst.One("SELECT count(*) FROM crsql_changes"), "0");
  EXPECT_EQ(dst.One("SELECT count(*) FROM crsql_tracked_peers"), "0");
  EXPECT_EQ(dst.One("SELECT count(*) FROM crsql_site_id"), "1");
  dst.Exec("BEGIN IMMEDIATE");
  s = applier->ApplyInTransaction(batch, 0);
  EXPECT_THAT(s.message(), HasSubstr("changes 101..101 of 120"));
  dst.Exec("ROLLBACK");
  EXPECT_EQ(dst.One("SELECT count(*) FROM c"), "0");
  // Fixed, the batch merges, and matches the row-by-row path.
  batch[100].val_int = 60;
  ASSERT_OK(applier->Apply(batch));
  TestDb by_row;
  by_row.Exec("CREATE TABLE c (id INTEGER PRIMARY KEY NOT NULL, a, n); SELECT crsql_as_crr('c');");
  by_row.Exec("BEGIN");
  for (const Change& c : batch) ASSERT_OK(ApplyChanges(by_row.get(), {ToRow(c)}));
  by_row.Exec("COMMIT");
  EXPECT_EQ(dst.Query("SELECT * FROM c ORDER BY id"), by_row.Query("SELECT * FROM c ORDER BY id"));
  EXPECT_EQ(dst.One("SELECT count(*) FROM c WHERE a IS NOT NULL"), "40");
}

// ChangeApplier holds rows' metadata and stores it in bulk every 1024 rows
// (MetaBatch). A large batch, with rows that exist and rows that do not,
// repeats of one row in different windows, deletes and resurrections, must
// leave exactly what INSERT INTO crsql_changes row by row leaves. In pk
// order (with some changes moved back a little), the row-by-row path
// serves most metadata lookups from its read-ahead window
// (engine/meta_read_ahead.h) while its own writes land inside that window.
void ExpectApplierMatchesRowByRow(bool pk_order) {
  TestDb src, via_applier, via_sql;
  for (TestDb* d : {&src, &via_applier, &via_sql}) d->Exec(kChangeApiSchema);
  std::mt19937_64 rng(7);
  src.Exec("BEGIN");
  for (int i = 0; i < 3000; ++i) {
    src.Exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'a" + std::to_string(i) + "', " +
             std::to_string(i % 7) + ")");
  }
  src.Exec("COMMIT");
  // Both receivers already hold an older version of a third of the rows.
  auto early = ReadChanges(src.get(), "WHERE pk IN (SELECT crsql_pack_columns(id) FROM t WHERE id % 3 = 0)");
  for (TestDb* d : {&via_applier, &via_sql}) {
    d->Exec("BEGIN");
    ASSERT_OK(ApplyChanges(d->get(), early));
    d->Exec("COMMIT");
  }
  for (int k = 0; k < 2000; ++k) {
    int id = static_cast<int>(rng() % 3200);
    switch (rng() % 4) {
      case 0:
        src.Exec("UPDATE t SET a = 'u" + std::to_string(k) + "' WHERE id = " + std::to_string(id));
        break;
      case 1:
        src.Exec("DELETE FROM t WHERE id = " + std::to_string(id));
        break;
      default:
        src.Exec("INSERT OR REPLACE INTO t VALUES (" + std::to_string(id) + ", 'r', " +
                 std::to_string(k) + ")");
    }
  }
  auto rows = ReadChanges(src.get());
  std::vector<ChangeRow> batch = rows;
  for (size_t i = 0; i < rows.size(); i += 5) batch.push_back(rows[i]);  // duplicates
  std::shuffle(batch.begin(), batch.end(), rng);
  if (pk_order) {
    std::stable_sort(batch.begin(), batch.end(),
                     [](const ChangeRow& a, const ChangeRow& b) { return a[1].bytes < b[1].bytes; });
    // Some changes move back a little: rows written earlier in a window
    // are looked up again from it.
    for (size_t i = 40; i < batch.size(); ++i) {
      if (rng() % 8 == 0) std::swap(batch[i], batch[i - 1 - rng() % 40]);
    }
  }
  ASSERT_GT(batch.size(), 6000u);
  std::vector<Change> changes = ToChanges(batch);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(via_applier.get(), &applier));
  ASSERT_OK(applier->Apply(changes));
  via_sql.Exec("BEGIN");
  ASSERT_OK(ApplyChanges(via_sql.get(), batch));
  via_sql.Exec("COMMIT");
  const char* q = "SELECT * FROM t ORDER BY id";
  EXPECT_EQ(via_applier.Query(q), via_sql.Query(q));
  EXPECT_EQ(via_applier.Query(q), src.Query(q));
  const char* meta =
      "SELECT hex(pk), cid, quote(val), col_version, hex(site_id), cl FROM crsql_changes "
      "ORDER BY pk, cid";
  EXPECT_EQ(via_applier.Query(meta), via_sql.Query(meta));
  EXPECT_EQ(via_applier.One("PRAGMA integrity_check"), "'ok'");
  // Storage itself: the same metadata rows and exactly the same feed
  // entries (a stale entry would be invisible through crsql_changes).
  const char* rows_q = "SELECT hex(pk), hex(meta) FROM t__crsync_rows ORDER BY pk";
  EXPECT_EQ(via_applier.Query(rows_q), via_sql.Query(rows_q));
  const char* feed_q = "SELECT dbv, lo, hex(pk) FROM t__crsync_feed ORDER BY dbv, lo, pk";
  EXPECT_EQ(via_applier.Query(feed_q), via_sql.Query(feed_q));
  // The feed lists exactly the stored records: reading by version gives
  // every record once.
  EXPECT_EQ(via_applier.One("SELECT count(*) FROM crsql_changes WHERE db_version > 0"),
            via_sql.One("SELECT count(*) FROM crsql_changes WHERE db_version > 0"));
}

TEST(ChangeApplierTest, LargeShuffledBatchMatchesRowByRow) { ExpectApplierMatchesRowByRow(false); }

TEST(ChangeApplierTest, LargeBatchInPkOrderMatchesRowByRow) { ExpectApplierMatchesRowByRow(true); }

TEST(ChangeApiTest, NeedsTheEngine) {
  DbPtr plain;
  ASSERT_OK(OpenDb(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &plain));
  std::unique_ptr<ChangeReader> reader;
  EXPECT_THAT(ChangeReader::Open(plain.get(), &reader).message(), HasSubstr("not installed"));
}

// crsync_valbuf has 64 columns: a row write of a 63-column table (with its
// key) is the widest that goes in bulk, and one column more goes row by
// row (tests/engine/wide_table_test.cc has wider tables). Both end as the
// source has them.
TEST(ChangeApplierTest, RowsAtAndPastTheBulkWidthMerge) {
  for (int cols : {63, 64}) {
    SCOPED_TRACE(cols);
    std::string schema = "CREATE TABLE w (id INTEGER PRIMARY KEY NOT NULL";
    for (int i = 0; i < cols; ++i) schema += ", c" + std::to_string(i);
    schema += "); SELECT crsql_as_crr('w')";
    TestDb src, dst;
    src.Exec(schema);
    dst.Exec(schema);
    src.Exec("BEGIN");
    for (int r = 0; r < 20; ++r) {
      std::string row = std::to_string(r);
      for (int i = 0; i < cols; ++i) row += ", " + std::to_string(r * 100 + i);
      src.Exec("INSERT INTO w VALUES (" + row + ")");
    }
    src.Exec("COMMIT");
    src.Exec("UPDATE w SET c5 = 'narrow' WHERE id % 2 = 0");
    std::unique_ptr<ChangeApplier> applier;
    ASSERT_OK(ChangeApplier::Open(dst.get(), &applier));
    ASSERT_OK(applier->Apply(ToChanges(ReadChanges(src.get(), "WHERE db_version = 1"))));
    ASSERT_OK(applier->Apply(ToChanges(ReadChanges(src.get(), "WHERE db_version = 2"))));
    EXPECT_EQ(dst.Query("SELECT * FROM w ORDER BY id"), src.Query("SELECT * FROM w ORDER BY id"));
    const char* meta = "SELECT hex(pk), cid, col_version FROM crsql_changes ORDER BY pk, cid";
    EXPECT_EQ(dst.Query(meta), src.Query(meta));
  }
}

// The buffers the bulk statements read (crsync_rowbuf, crsync_valbuf,
// crsync_rowbuf_meta) take
// a pointer only C++ can bind: from SQL text they are empty, whatever is
// passed, and cannot be used by triggers or views (DIRECTONLY).
TEST(ChangeApiTest, BulkBufferTablesShowNothingToSql) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  for (const char* t : {"crsync_rowbuf", "crsync_valbuf"}) {
    SCOPED_TRACE(t);
    EXPECT_EQ(db.One(std::string("SELECT count(*) FROM ") + t), "0");
    EXPECT_EQ(db.One(std::string("SELECT count(*) FROM ") + t + "(x'0102030405060708')"), "0");
    db.Exec("CREATE TABLE IF NOT EXISTS log (n)");
    Status s = db.Try(std::string("CREATE TRIGGER tr AFTER INSERT ON u BEGIN INSERT INTO log SELECT count(*) FROM ") +
                      t + "; END; INSERT INTO u VALUES ('k', 1)");
    EXPECT_THAT(s.message(), HasSubstr("unsafe use of"));
    db.Exec("DROP TRIGGER IF EXISTS tr; DELETE FROM u");
  }
  EXPECT_EQ(db.One("SELECT v0 IS NULL AND v63 IS NULL FROM crsync_valbuf UNION ALL SELECT 1"), "1");
  // The metadata walk's lookup likewise answers NULL to SQL text.
  EXPECT_EQ(db.One("SELECT crsync_rowbuf_meta(x'0102030405060708', x'01') IS NULL"), "1");
  Status s = db.Try("CREATE VIEW w AS SELECT crsync_rowbuf_meta(NULL, x'01'); SELECT * FROM w");
  EXPECT_THAT(s.message(), HasSubstr("unsafe use of"));
  // The feed delete's marker refuses to answer without its pointer (an
  // unmarked entry would pass for a range's row), and changes nothing.
  db.Exec("INSERT INTO u VALUES ('k', 1)");
  const std::string feed = db.One("SELECT count(*) FROM u__crsync_feed");
  s = db.Try("DELETE FROM u__crsync_feed WHERE crsync_feed_found(x'01', dbv, lo, pk)");
  EXPECT_THAT(s.message(), HasSubstr("crsync_feed_found is internal"));
  EXPECT_EQ(db.One("SELECT count(*) FROM u__crsync_feed"), feed);
  EXPECT_NE(feed, "0");
}

}  // namespace
}  // namespace crsync
