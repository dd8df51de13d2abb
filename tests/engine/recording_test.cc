// crr-semantics §6-§7: clocks of local writes.
#include "tests/engine/sync_util.h"
#include "engine/conn_engine.h"
#include "tests/test_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

constexpr char kChanges[] =
    "SELECT \"table\", hex(pk), cid, val, col_version, db_version, cl, seq FROM crsql_changes";

TEST(RecordingTest, EachTransactionGetsOneVersionAndRollbackDoesNotMoveIt) {
  TestDb db;
  db.Exec("CREATE TABLE foo (id PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('foo');");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "0");
  db.Exec("BEGIN; INSERT INTO foo VALUES (1,2); INSERT INTO foo VALUES (2,2);");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "0");  // committed value inside the txn
  db.Exec("COMMIT");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  db.Exec("BEGIN; INSERT INTO foo VALUES (3,2); ROLLBACK;");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE pk = crsql_pack_columns(3)"), "0");
  db.Exec("BEGIN; INSERT INTO foo VALUES (3,2); INSERT INTO foo VALUES (4,2); COMMIT;");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
}

// SQLite keeps one commit hook and one rollback hook per connection, and
// they are the application's: the engine neither needs nor replaces them.
// With the app's hooks set (after the engine, or before it), versions still
// advance per transaction, rollbacks leave no trace, merges take the next
// version, and the app's hooks see every commit and rollback.
// More CRRs than SQLite takes terms in one compound SELECT (500): the
// statements that find the committed version over every CRR's feed are
// nested in chunks. Before, every write of such a database failed with
// "too many terms in compound SELECT".
TEST(RecordingTest, MoreCrrsThanACompoundSelectHasTermsStillRecord) {
  TempPath path;
  TestDb a(path.str());
  std::string sql = "BEGIN;";
  for (int i = 0; i < 510; ++i) {
    const std::string t = "t" + std::to_string(i);
    sql += "CREATE TABLE " + t + " (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('" + t +
           "');";
  }
  a.Exec(sql + "COMMIT;");
  TestDb b(path.str());
  a.Exec("INSERT INTO t0 VALUES (1, 'a')");
  b.Exec("INSERT INTO t509 VALUES (1, 'b')");  // another connection: the version is recomputed
  a.Exec("INSERT INTO t250 VALUES (1, 'c')");
  EXPECT_EQ(a.Query("SELECT \"table\", db_version FROM crsql_changes WHERE cid = 'v' ORDER BY 2"),
            (Rows{{"'t0'", "1"}, {"'t509'", "2"}, {"'t250'", "3"}}));
  EXPECT_EQ(b.One("SELECT crsql_db_version()"), "3");
}

TEST(RecordingTest, TheApplicationsCommitAndRollbackHooksAreLeftToIt) {
  struct Counts {
    int commits = 0, rollbacks = 0;
  };
  auto set_hooks = [](sqlite3* db, Counts* c) {
    sqlite3_commit_hook(db, [](void* p) { return ++static_cast<Counts*>(p)->commits, 0; }, c);
    sqlite3_rollback_hook(db, [](void* p) { ++static_cast<Counts*>(p)->rollbacks; }, c);
  };
  for (bool before : {false, true}) {
    SCOPED_TRACE(before ? "hooks set before the engine" : "hooks set after the engine");
    Counts counts;
    DbPtr raw;
    ASSERT_OK(OpenDb(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &raw));
    if (before) set_hooks(raw.get(), &counts);
    char* err = nullptr;
    ASSERT_EQ(crsync_engine_init(raw.get(), &err), SQLITE_OK) << (err ? err : "");
    if (!before) set_hooks(raw.get(), &counts);
    sqlite3* db = raw.get();
    auto one = [&](const char* sql) {
      StmtPtr st;
      EXPECT_OK(Prepare(db, sql, &st));
      return sqlite3_step(st.get()) == SQLITE_ROW ? sqlite3_column_int64(st.get(), 0) : -1;
    };
    ASSERT_OK(Exec(db, "CREATE TABLE foo (id PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('foo');"));
    const int commits = counts.commits;
    for (int i = 1; i <= 3; ++i) {
      ASSERT_OK(Exec(db, "INSERT INTO foo VALUES (" + std::to_string(i) + ", 0)"));
      EXPECT_EQ(one("SELECT crsql_db_version()"), i);
    }
    ASSERT_OK(Exec(db, "BEGIN; INSERT INTO foo VALUES (9, 0); ROLLBACK;"));
    EXPECT_EQ(one("SELECT count(*) FROM crsql_changes WHERE pk = crsql_pack_columns(9)"), 0);
    ASSERT_OK(Exec(db, "INSERT INTO crsql_changes VALUES ('foo', crsql_pack_columns(5), 'a', 7, 1, "
                       "40, X'0102030405060708090a0b0c0d0e0f10')"));
    EXPECT_EQ(one("SELECT crsql_db_version()"), 40);  // the merge's local version (§11.6)
    ASSERT_OK(Exec(db, "UPDATE foo SET a = 1 WHERE id = 1"));
    EXPECT_EQ(one("SELECT db_version FROM crsql_changes WHERE pk = crsql_pack_columns(1) AND cid = 'a'"), 41);
    // 2, 3, 40 and 41 (row 1's one record moved to 41): no version shared.
    EXPECT_EQ(one("SELECT count(DISTINCT db_version) FROM crsql_changes"), 4);
    EXPECT_EQ(one("SELECT count(*) FROM crsql_changes"), 4);
    EXPECT_EQ(counts.commits - commits, 5);
    EXPECT_GE(counts.rollbacks, 1);
  }
}

TEST(RecordingTest, NextDbVersionIsIdempotentAndDiesWithItsTransaction) {
  TestDb db;
  db.Exec("CREATE TABLE foo (id PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('foo');");
  db.Exec("BEGIN");
  EXPECT_EQ(db.One("SELECT crsql_next_db_version()"), "1");
  EXPECT_EQ(db.One("SELECT crsql_next_db_version()"), "1");
  EXPECT_EQ(db.One("SELECT crsql_next_db_version(50)"), "50");
  EXPECT_EQ(db.One("SELECT crsql_next_db_version(3)"), "50");
  db.Exec("INSERT INTO foo VALUES (1, 1); COMMIT");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "50");
  // An autocommit read-only call does not leak into the next transaction.
  EXPECT_EQ(db.One("SELECT crsql_next_db_version(90)"), "90");
  db.Exec("INSERT INTO foo VALUES (2, 1)");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "51");
  // Nor does one in an explicit transaction that then writes nothing
  // (SQLite runs no commit hook for it).
  db.Exec("BEGIN");
  EXPECT_EQ(db.One("SELECT crsql_next_db_version(90)"), "90");
  db.Exec("COMMIT");
  db.Exec("INSERT INTO foo VALUES (3, 1)");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "52");
  db.Exec("BEGIN; SELECT crsql_next_db_version(95); ROLLBACK;");
  db.Exec("INSERT INTO foo VALUES (4, 1)");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "53");
  // Its argument is a version: anything else is refused, not read as 0.
  db.Exec("BEGIN");
  for (const char* bad : {"'abc'", "'60'", "x'05'", "NULL", "60.5"}) {
    EXPECT_THAT(db.Error(std::string("SELECT crsql_next_db_version(") + bad + ")"),
                HasSubstr("crsql_next_db_version(n): n is the least version to take, an integer"))
        << bad;
  }
  EXPECT_EQ(db.One("SELECT crsql_next_db_version()"), "54") << "a refused call moved the version";
  EXPECT_EQ(db.One("SELECT crsql_next_db_version(60.0)"), "60");  // a whole REAL is a number
  db.Exec("ROLLBACK");
}

// Raising the version with crsql_next_db_version(n) leaves the writes
// made before it at the version they had, captured or not.
TEST(RecordingTest, NextDbVersionDoesNotRestampEarlierWrites) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  db.Exec("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6)"
          " INSERT INTO t SELECT i, 'a' FROM n;");  // more than the direct writes: captured
  EXPECT_EQ(db.One("SELECT crsql_next_db_version(50)"), "50");
  db.Exec("INSERT INTO t VALUES (7, 'after'); COMMIT");
  EXPECT_EQ(db.Query("SELECT db_version, count(*) FROM crsql_changes GROUP BY 1"),
            (Rows{{"1", "6"}, {"50", "1"}}));
}

// Catalog changes inside a transaction re-read the stored versions, which
// then include the transaction's own uncommitted ones: those are neither
// the committed version nor a reason to move the transaction's own.
TEST(RecordingTest, CatalogChangesInATransactionDoNotMoveTheVersions) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, b);"
          "INSERT INTO t VALUES (1, 'a');");
  db.Exec("BEGIN; INSERT INTO t VALUES (2, 'a'); SELECT crsql_as_crr('u');");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  db.Exec("ROLLBACK");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  db.Exec("BEGIN; INSERT INTO t VALUES (2, 'a');"
          "SELECT crsql_begin_alter('t'); SELECT crsql_commit_alter('t');");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  EXPECT_EQ(db.One("SELECT crsql_next_db_version()"), "2");
  db.Exec("INSERT INTO t VALUES (3, 'a'); COMMIT");
  EXPECT_EQ(db.Query("SELECT DISTINCT db_version FROM crsql_changes ORDER BY 1"),
            (Rows{{"1"}, {"2"}}));
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
}

// In a key column without affinity, 1 and 1.0 (and 0, 0.0, -0.0) are one
// key to SQLite, so they are one row's identity: the packed form of the
// INTEGER (crsql_pack_columns itself keeps v0.16's bytes). An update that
// rewrites the key as -0.0 stays the same row, and replicas that wrote 1
// and 1.0 converge on one row with one history (they once diverged for
// good, each keeping the other's value under a second identity).
TEST(RecordingTest, IntegralRealKeysNameTheSameRowAsTheInteger) {
  TestDb db;
  db.Exec("CREATE TABLE r (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('r');"
          "INSERT INTO r VALUES (0.0, 'a');"
          "UPDATE r SET id = -0.0, v = 'b' WHERE id = 0.0;"
          "UPDATE r SET v = 'c';");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, val, col_version FROM crsql_changes"),
            (Rows{{"'0101'", "'v'", "'c'", "3"}}));
  EXPECT_EQ(db.One("SELECT hex(crsql_pack_columns(-0.0))"), "'01028000000000000000'");
  db.Exec("INSERT INTO crsql_changes VALUES ('r', X'01028000000000000000', 'v', 'd', 9, 9, "
          "X'11111111111111111111111111111111')");
  EXPECT_EQ(db.Query("SELECT v FROM r"), (Rows{{"'d'"}}));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "1");

  const char* kSchema = "CREATE TABLE t (k PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');";
  for (bool applier : {false, true}) {
    TestDb a, b;
    a.Exec(kSchema);
    b.Exec(kSchema);
    a.Exec("INSERT INTO t VALUES (1, 'from a')");
    b.Exec("INSERT INTO t VALUES (1.0, 'from b')");
    for (int round = 0; round < 2; ++round) {
      if (applier) {
        for (auto [from, to] : {std::pair<TestDb*, TestDb*>{&a, &b}, {&b, &a}}) {
          std::unique_ptr<ChangeApplier> ap;
          ASSERT_OK(ChangeApplier::Open(to->get(), &ap));
          ASSERT_OK(ap->Apply(ToChanges(ReadChanges(from->get())), 0, nullptr));
        }
      } else {
        Sync(a, b);
        Sync(b, a);
      }
    }
    EXPECT_EQ(a.Query("SELECT v FROM t"), b.Query("SELECT v FROM t")) << applier;
    EXPECT_EQ(a.One("SELECT count(*) FROM t"), "1");
    EXPECT_EQ(a.Query("SELECT hex(pk), cid, val FROM crsql_changes"),
              b.Query("SELECT hex(pk), cid, val FROM crsql_changes"));
    EXPECT_EQ(a.One("SELECT group_concat(hex(pk)) FROM crsql_changes"), "'010901'");
  }
}

// An INTEGER (or NUMERIC) key column stores the REAL -2^63 as a REAL (every
// other integral REAL becomes an INTEGER), yet SQLite holds it equal to the
// INTEGER -2^63: one row, so one identity. Packed apart, a peer merging a
// delete of the one and a write of the other in the wrong order deleted
// the row it had just written and kept its clocks (found by a fuzzer).
TEST(RecordingTest, TheRealMinusTwoToThe63IsTheIntegerRowInAnIntegerKey) {
  const char* kSchema =
      "CREATE TABLE x (k INTEGER PRIMARY KEY NOT NULL, v) WITHOUT ROWID; SELECT crsql_as_crr('x');"
      "CREATE TABLE n (k NUMERIC PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('n');";
  TestDb a, b;
  a.Exec(kSchema);
  b.Exec(kSchema);
  for (const char* t : {"x", "n"}) {
    SCOPED_TRACE(t);
    const std::string tbl = t;
    a.Exec("INSERT INTO " + tbl + " VALUES (-9223372036854775808, 'int'); DELETE FROM " + tbl + ";"
           "INSERT INTO " + tbl + " VALUES (-9223372036854775808.0, 'real')");
    EXPECT_EQ(a.One("SELECT typeof(k) FROM " + tbl), "'real'");
    EXPECT_EQ(a.Query("SELECT DISTINCT hex(pk) FROM crsql_changes WHERE \"table\" = '" + tbl + "'"),
              (Rows{{"'01418000000000000000'"}}));
  }
  Sync(a, b);
  for (const char* t : {"x", "n"}) {
    SCOPED_TRACE(t);
    const std::string tbl = t;
    EXPECT_EQ(b.Query("SELECT k = -9223372036854775808, v FROM " + tbl), (Rows{{"1", "'real'"}}));
    EXPECT_EQ(a.Query("SELECT hex(pk), cid, val, col_version, cl FROM crsql_changes WHERE \"table\" = '" + tbl + "'"),
              b.Query("SELECT hex(pk), cid, val, col_version, cl FROM crsql_changes WHERE \"table\" = '" + tbl + "'"));
  }
}

// A backfill (crsql_as_crr of a table holding rows) keys them the same way.
TEST(RecordingTest, BackfilledIntegralRealKeysAreTheIntegerIdentity) {
  TestDb db;
  db.Exec("CREATE TABLE t (k PRIMARY KEY NOT NULL, v); INSERT INTO t VALUES (2.0, 'x'), (2.5, 'y');"
          "SELECT crsql_as_crr('t'); UPDATE t SET v = 'z' WHERE k = 2;");
  EXPECT_EQ(db.Query("SELECT hex(pk), val, col_version FROM crsql_changes ORDER BY 1"),
            (Rows{{"'01024004000000000000'", "'y'", "1"}, {"'010902'", "'z'", "2"}}));
}

// Another connection on the same file adds, alters or drops CRRs and
// commits: this connection's next write must see the new catalog (no stale
// schema, no freed CRR object) and the versions the other one used.
TEST(RecordingTest, CatalogChangesByAnotherConnectionAreSeenByTheNextWrite) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x);"
         "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, 'a');");
  // b alters t, then a writes it (with the new column too).
  b.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN c;"
         "SELECT crsql_commit_alter('t');");
  a.Exec("INSERT INTO t (id, x) VALUES (2, 'b')");
  a.Exec("UPDATE t SET c = 'new' WHERE id = 1");
  EXPECT_EQ(a.One("SELECT val FROM crsql_changes WHERE pk = crsql_pack_columns(1) AND cid = 'c'"),
            "'new'");
  // b adds a CRR and writes it three times; a's next version comes after.
  b.Exec("CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, y); SELECT crsql_as_crr('u');"
         "INSERT INTO u VALUES (1, 1); INSERT INTO u VALUES (2, 2); INSERT INTO u VALUES (3, 3);");
  const int64_t b_version = b.Int("SELECT crsql_db_version()");
  EXPECT_EQ(a.Int("SELECT crsql_db_version()"), b_version);
  a.Exec("INSERT INTO t (id, x) VALUES (3, 'c')");
  EXPECT_EQ(a.Int("SELECT db_version FROM crsql_changes WHERE \"table\" = 't' AND "
                  "pk = crsql_pack_columns(3) LIMIT 1"),
            b_version + 1);
  // b drops u's metadata; a goes on writing and reading versions.
  b.Exec("SELECT crsql_as_table('u')");
  a.Exec("INSERT INTO t (id, x) VALUES (4, 'd')");
  EXPECT_EQ(a.Int("SELECT crsql_db_version()"), b_version + 2);
}

// v0.16 test_incr_by_one.
TEST(RecordingTest, SeqNumbersWithinTransactions) {
  TestDb db;
  db.Exec("CREATE TABLE foo (a PRIMARY KEY NOT NULL, b, c, d); SELECT crsql_as_crr('foo');"
          "BEGIN; INSERT INTO foo VALUES (1,1,1,1); INSERT INTO foo VALUES (2,2,2,2);"
          "INSERT INTO foo VALUES (3,3,3,3); COMMIT;");
  EXPECT_EQ(db.Query("SELECT seq FROM crsql_changes WHERE db_version = 1"),
            (Rows{{"0"}, {"1"}, {"2"}, {"3"}, {"4"}, {"5"}, {"6"}, {"7"}, {"8"}}));
  db.Exec("UPDATE foo SET c = c + 10, d = d + 10");
  EXPECT_EQ(db.Query("SELECT seq FROM crsql_changes WHERE db_version = 2"),
            (Rows{{"0"}, {"1"}, {"2"}, {"3"}, {"4"}, {"5"}}));
}

// §7.5 worked example, with this project's step 5.
TEST(RecordingTest, TodoLifecycleIncludingPkChange) {
  TestDb db;
  db.Exec("CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title, done DEFAULT 0);"
          "SELECT crsql_as_crr('todo');"
          "INSERT INTO todo (id, title) VALUES ('a', 'milk');");
  EXPECT_EQ(db.Query(kChanges), (Rows{{"'todo'", "'010B0161'", "'title'", "'milk'", "1", "1", "1", "0"},
                                      {"'todo'", "'010B0161'", "'done'", "0", "1", "1", "1", "1"}}));
  db.Exec("UPDATE todo SET done = 1 WHERE id = 'a';");
  EXPECT_EQ(db.Query(kChanges), (Rows{{"'todo'", "'010B0161'", "'title'", "'milk'", "1", "1", "1", "0"},
                                      {"'todo'", "'010B0161'", "'done'", "1", "2", "2", "1", "0"}}));
  db.Exec("UPDATE todo SET done = 1 WHERE id = 'a';");  // no change: nothing recorded
  EXPECT_EQ(db.One("SELECT max(db_version) FROM crsql_changes"), "2");
  db.Exec("DELETE FROM todo WHERE id = 'a';");
  EXPECT_EQ(db.Query(kChanges), (Rows{{"'todo'", "'010B0161'", "'-1'", "NULL", "2", "3", "2", "0"}}));
  db.Exec("INSERT INTO todo VALUES ('a', 'eggs', 0);");
  EXPECT_EQ(db.Query(kChanges), (Rows{{"'todo'", "'010B0161'", "'-1'", "NULL", "3", "4", "3", "0"},
                                      {"'todo'", "'010B0161'", "'title'", "'eggs'", "1", "4", "3", "1"},
                                      {"'todo'", "'010B0161'", "'done'", "0", "1", "4", "3", "2"}}));
  db.Exec("UPDATE todo SET id = 'b', title = 'bread' WHERE id = 'a';");
  EXPECT_EQ(db.Query(kChanges + std::string(" ORDER BY db_version, seq")),
            (Rows{{"'todo'", "'010B0161'", "'-1'", "NULL", "4", "5", "4", "0"},
                  {"'todo'", "'010B0162'", "'-1'", "NULL", "1", "5", "1", "1"},
                  {"'todo'", "'010B0162'", "'title'", "'bread'", "2", "5", "1", "2"},
                  {"'todo'", "'010B0162'", "'done'", "0", "1", "5", "1", "3"}}));
}

TEST(RecordingTest, PkChangeInSameTransactionAsInsertMatchesV016) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v, w); SELECT crsql_as_crr('t');"
          "BEGIN; INSERT INTO t VALUES (1, 'x', 'y'); UPDATE t SET id = 2; COMMIT;");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, col_version, db_version, cl, seq FROM crsql_changes"),
            (Rows{{"'010902'", "'v'", "1", "1", "1", "0"},
                  {"'010902'", "'w'", "1", "1", "1", "1"},
                  {"'010901'", "'-1'", "2", "1", "2", "2"},
                  {"'010902'", "'-1'", "1", "1", "1", "3"}}));
}

// §7.5 step 5, the other branch: a moved clock at the pending version but
// of another origin (merged earlier in the same transaction) is re-stamped
// too: local origin and a seq after the move's own.
TEST(RecordingTest, APkChangeRestampsAClockMergedInTheSameTransaction) {
  TestDb db;
  db.Exec("CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b INTEGER); SELECT crsql_as_crr('foo');"
          "BEGIN;"
          "INSERT INTO crsql_changes VALUES ('foo', X'010901', 'b', 7, 1, 1, "
          "X'11111111111111111111111111111111');"
          "UPDATE foo SET a = 2 WHERE a = 1;"
          "COMMIT;");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, val, col_version, db_version, site_id = crsql_site_id(), cl, "
                     "seq FROM crsql_changes"),
            (Rows{{"'010901'", "'-1'", "NULL", "2", "1", "1", "2", "1"},
                  {"'010902'", "'-1'", "NULL", "1", "1", "1", "1", "2"},
                  {"'010902'", "'b'", "7", "1", "1", "1", "1", "3"}}));
}

TEST(RecordingTest, InsertOrReplaceOverLiveRow) {
  TestDb db;
  db.Exec("PRAGMA recursive_triggers = OFF; CREATE TABLE t (id PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'x', 'y'); INSERT OR REPLACE INTO t VALUES (1, 'x', 'z');");
  EXPECT_EQ(db.Query("SELECT cid, col_version, cl FROM crsql_changes"),
            (Rows{{"'b'", "2", "1"}, {"'c'", "2", "1"}}));
  db.Exec("DELETE FROM t; INSERT INTO t VALUES (1, 'x', 'y');");
  EXPECT_EQ(db.One("SELECT cl FROM crsql_changes WHERE cid = '-1'"), "3");
  db.Exec("INSERT OR REPLACE INTO t VALUES (1, 'x', 'y');");
  EXPECT_EQ(db.One("SELECT cl FROM crsql_changes WHERE cid = '-1'"), "5");
}

TEST(RecordingTest, InsertOrReplaceWithRecursiveTriggersRecordsDeleteThenInsert) {
  TestDb db;
  db.Exec("PRAGMA recursive_triggers = ON;"
          "CREATE TABLE t (id PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'x'); INSERT OR REPLACE INTO t VALUES (1, 'y');");
  EXPECT_EQ(db.Query("SELECT cid, val, col_version, cl FROM crsql_changes"),
            (Rows{{"'-1'", "NULL", "3", "3"}, {"'b'", "'y'", "1", "3"}}));
}

TEST(RecordingTest, PkOnlyTablesUseTheSentinel) {
  TestDb db;
  db.Exec("PRAGMA recursive_triggers = OFF; CREATE TABLE assoc (a NOT NULL, b NOT NULL, PRIMARY KEY (a, b)); "
          "SELECT crsql_as_crr('assoc');"
          "INSERT INTO assoc VALUES (1, 2); INSERT OR REPLACE INTO assoc VALUES (1, 2);");
  EXPECT_EQ(db.Query("SELECT cid, col_version, cl FROM crsql_changes"), (Rows{{"'-1'", "3", "3"}}));
  db.Exec("DELETE FROM assoc; INSERT INTO assoc VALUES (1, 2);");
  EXPECT_EQ(db.Query("SELECT cid, col_version, cl FROM crsql_changes"), (Rows{{"'-1'", "5", "5"}}));
}

TEST(RecordingTest, InsertVariantsThatRecordNothing) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'x');");
  db.Exec("INSERT OR IGNORE INTO t VALUES (1, 'y');");
  EXPECT_FALSE(db.Try("INSERT INTO t VALUES (1, 'z')").ok());
  db.Exec("INSERT INTO t VALUES (1, 'x') ON CONFLICT DO UPDATE SET b = excluded.b;");
  EXPECT_EQ(db.Query("SELECT cid, col_version, db_version FROM crsql_changes"),
            (Rows{{"'b'", "1", "1"}}));
  db.Exec("INSERT INTO t VALUES (1, 'w') ON CONFLICT DO UPDATE SET b = excluded.b;");
  EXPECT_EQ(db.Query("SELECT cid, val, col_version, db_version FROM crsql_changes"),
            (Rows{{"'b'", "'w'", "2", "2"}}));
  db.Exec("DELETE FROM t WHERE id = 99");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
}

TEST(RecordingTest, TypeChangeCountsAsChange) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 1); UPDATE t SET b = 1.0;");
  EXPECT_EQ(db.Query("SELECT typeof(val), col_version FROM crsql_changes"), (Rows{{"'real'", "2"}}));
}

TEST(RecordingTest, NullPrimaryKeyValuesAreRejectedAtWriteTime) {
  TestDb db;
  db.Exec("CREATE TABLE c (id PRIMARY KEY, name); SELECT crsql_as_crr('c');"
          "CREATE TABLE r (id INTEGER PRIMARY KEY, name); SELECT crsql_as_crr('r');"
          "INSERT INTO c VALUES (1, 'one');");
  EXPECT_THAT(db.Error("INSERT INTO c VALUES (NULL, 'x')"),
              HasSubstr("NULL value in primary key column c.id of a CRR"));
  EXPECT_THAT(db.Error("UPDATE c SET id = NULL"), HasSubstr("NULL value in primary key column"));
  EXPECT_EQ(db.Query("SELECT * FROM c"), (Rows{{"1", "'one'"}}));
  db.Exec("INSERT INTO r VALUES (NULL, 'gets a rowid')");  // INTEGER PRIMARY KEY is fine
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'r'"), "1");
}

TEST(RecordingTest, SavepointRollbackLeavesNoTrace) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "BEGIN; INSERT INTO t VALUES (1, 'keep'); SAVEPOINT s; INSERT INTO t VALUES (2, 'drop');"
          "UPDATE t SET b = 'changed' WHERE id = 1; ROLLBACK TO s; RELEASE s; COMMIT;");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, val, col_version FROM crsql_changes"),
            (Rows{{"'010901'", "'b'", "'keep'", "1"}}));
}

// A committed transaction's version is confirmed against the feed, not
// assumed: one whose every write was rolled back to a savepoint holds no
// row, so its version is not announced and the next write reuses it.
TEST(RecordingTest, ATransactionWhoseWritesWereAllRolledBackTakesNoVersion) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'one');");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  db.Exec("BEGIN; SAVEPOINT s; INSERT INTO t VALUES (2, 'gone'); ROLLBACK TO s; RELEASE s;"
          "COMMIT;");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  db.Exec("INSERT INTO t VALUES (3, 'three')");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
  EXPECT_EQ(db.One("SELECT db_version FROM crsql_changes WHERE val = 'three'"), "2");
  // And a transaction that did write is announced right away.
  db.Exec("BEGIN; INSERT INTO t VALUES (4, 'four'); COMMIT;");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "3");
}

// Local writes are captured during the statement and made into clocks
// later (engine/recorder.h). Whatever undoes a write must undo its capture,
// and whatever reads clocks must see every earlier write, in write order.
TEST(RecordingTest, FailedStatementInsideTransactionRecordsNothingOfIt) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "CREATE TABLE src (id, b);"
          "INSERT INTO src VALUES (1, 'x'), (2, 'y'), (1, 'dup'), (3, 'z');");
  // Both ways a write is recorded: at once (the first writes of a
  // transaction) and captured (the rest).
  for (const char* warmup : {"", "INSERT INTO t VALUES (20, 'w'), (21, 'w'), (22, 'w'), (23, 'w');"}) {
    SCOPED_TRACE(*warmup ? "captured" : "recorded at once");
    db.Exec("DELETE FROM t; BEGIN;");
    db.Exec(warmup);
    db.Exec("INSERT INTO t VALUES (10, 'before');");
    // Rows 1 and 2 go in, then the duplicate aborts the statement: all three undone.
    EXPECT_THAT(db.Error("INSERT INTO t SELECT id, b FROM src"), HasSubstr("UNIQUE"));
    db.Exec("INSERT INTO t VALUES (11, 'after'); COMMIT;");
    EXPECT_EQ(db.One("SELECT group_concat(id) FROM t"), *warmup ? "'10,11,20,21,22,23'" : "'10,11'");
    std::string v = db.One("SELECT crsql_db_version()");
    // The transaction's live records: its own rows, nothing of the failed statement.
    EXPECT_EQ(db.Query("SELECT crsql_unpack_columns.cell FROM crsql_changes, "
                       "crsql_unpack_columns(pk) WHERE db_version = " + v + " AND cid = 'b' "
                       "ORDER BY seq"),
              *warmup ? (Rows{{"20"}, {"21"}, {"22"}, {"23"}, {"10"}, {"11"}})
                      : (Rows{{"10"}, {"11"}}));
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE pk IN (crsql_pack_columns(1), "
                     "crsql_pack_columns(2))"),
              "0");
  }
}

TEST(RecordingTest, ReadsAndMergesInsideTheTransactionSeeEarlierWritesInOrder) {
  TestDb db, peer;
  for (TestDb* d : {&db, &peer}) {
    d->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  }
  peer.Exec("INSERT INTO t VALUES (5, 'peer')");
  std::string peer_change = peer.Text(
      "SELECT quote(\"table\") || ', ' || quote(pk) || ', ' || quote(cid) || ', ' || quote(val) "
      "|| ', ' || col_version || ', ' || db_version || ', ' || quote(site_id) || ', ' || cl "
      "FROM crsql_changes");
  db.Exec("BEGIN; INSERT INTO t VALUES (1, 'a'); UPDATE t SET b = 'a2' WHERE id = 1;");
  // A read in the transaction sees the writes so far.
  EXPECT_EQ(db.Query("SELECT hex(pk), val, col_version, seq FROM crsql_changes"),
            (Rows{{"'010901'", "'a2'", "2", "1"}}));
  db.Exec("INSERT INTO t VALUES (2, 'b')");
  // A merge takes its seq after the local writes before it.
  db.Exec("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl) "
          "VALUES (" + peer_change + ")");
  db.Exec("UPDATE t SET b = 'p2' WHERE id = 5; COMMIT;");
  EXPECT_EQ(db.Query("SELECT hex(pk), val, col_version, db_version, seq FROM crsql_changes"),
            (Rows{{"'010901'", "'a2'", "2", "1", "1"},
                  {"'010902'", "'b'", "1", "1", "2"},
                  {"'010905'", "'p2'", "2", "1", "4"}}));
}

TEST(RecordingTest, RollbackToAfterAReadDropsTheWritesAfterTheSavepoint) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  db.Exec("BEGIN; INSERT INTO t VALUES (1, 'keep'); SAVEPOINT s; INSERT INTO t VALUES (2, 'drop');");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "2");  // stored by the read
  db.Exec("INSERT INTO t VALUES (3, 'drop too'); ROLLBACK TO s; INSERT INTO t VALUES (4, 'new');"
          "RELEASE s; COMMIT;");
  EXPECT_EQ(db.Query("SELECT hex(pk), val FROM crsql_changes"),
            (Rows{{"'010901'", "'keep'"}, {"'010904'", "'new'"}}));
  EXPECT_EQ(db.One("PRAGMA integrity_check"), "'ok'");
  EXPECT_EQ(db.One("SELECT count(*) FROM t__crsync_feed"), "2");
}

TEST(RecordingTest, ManyRowsInOneTransactionAreStoredInBulk) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');");
  db.Exec("BEGIN");
  db.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
          "INSERT INTO t SELECT i, 'v' || i, i FROM n");
  // The first 4 writes are recorded at once; the rest are captured, not stored yet.
  EXPECT_EQ(db.One("SELECT count(*) FROM t__crsync_rows"), "4");
  db.Exec("UPDATE t SET c = -c WHERE id % 2 = 0; DELETE FROM t WHERE id % 7 = 0;"
          "UPDATE t SET id = id + 10000 WHERE id % 11 = 0; COMMIT;");
  // One metadata row per key ever written: 3000, plus the moved rows' new keys.
  EXPECT_EQ(db.One("SELECT count(*) FROM t__crsync_rows"),
            db.One("SELECT 3000 + count(*) FROM t WHERE id > 10000"));
  // Seqs follow the write order without gaps or repeats.
  EXPECT_EQ(db.One("SELECT count(DISTINCT seq) = count(*) FROM crsql_changes"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE cid = 'c' AND col_version = 2"),
            db.One("SELECT count(*) FROM t WHERE (id % 2 = 0 AND id < 10000) OR "
                   "(id > 10000 AND (id - 10000) % 2 = 0)"));
  // Rebuilding the table from its changes gives the same rows.
  TestDb copy;
  copy.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');");
  Sync(db, copy);
  EXPECT_EQ(copy.Query("SELECT * FROM t ORDER BY id"), db.Query("SELECT * FROM t ORDER BY id"));
}

// A bulk load (ascending new keys) is stored without reading metadata; the
// clocks must be exactly those the general path gives: col_version 1, the
// transaction's version, seqs in write order, one feed run per row. The
// same load in descending order (general path) must follow the same rules.
TEST(RecordingTest, BulkLoadsGetFreshClocksInWriteOrder) {
  for (const char* order : {"ASC", "DESC"}) {
    SCOPED_TRACE(order);
    TestDb db;
    db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
            "CREATE TABLE p (id INTEGER PRIMARY KEY NOT NULL); SELECT crsql_as_crr('p');");
    db.Exec(std::string("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                        "WHERE i < 3000) INSERT INTO t SELECT i, 'b' || i, i FROM n ORDER BY i ") +
            order + "; COMMIT;");
    db.Exec(std::string("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                        "WHERE i < 3000) INSERT INTO p SELECT i FROM n ORDER BY i ") +
            order + "; COMMIT;");
    const std::string pos = std::string(order) == "ASC" ? "(id - 1)" : "(3000 - id)";
    // Rows of t: position k in write order has seqs 2k (b) and 2k + 1 (c).
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes c JOIN t ON c.pk = crsql_pack_columns(t.id) "
                     "WHERE c.\"table\" = 't' AND c.col_version = 1 AND c.db_version = 1 AND c.cl = 1 "
                     "AND c.seq = 2 * " + pos + " + (c.cid = 'c')"),
              "6000");
    if (std::string(order) == "ASC") {
      // The first four writes are stored as they come, one feed entry
      // each; then three windows of ascending new keys, one range entry
      // each (engine/feed_range.h).
      EXPECT_EQ(db.Query("SELECT dbv, lo, substr(pk, 1, 1) = x'00' FROM t__crsync_feed ORDER BY lo"),
                (Rows{{"1", "0", "0"}, {"1", "2", "0"}, {"1", "4", "0"}, {"1", "6", "0"},
                      {"1", "8", "1"}, {"1", "2056", "1"}, {"1", "4104", "1"}}));
    } else {
      EXPECT_EQ(db.One("SELECT count(*) FROM t__crsync_feed f JOIN t ON f.pk = crsql_pack_columns(t.id) "
                       "WHERE f.dbv = 1 AND f.lo = 2 * " + pos),
                "3000");
      EXPECT_EQ(db.One("SELECT count(*) FROM t__crsync_feed"), "3000");
    }
    // pk-only p: the sentinel, cl 1, one seq per row.
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes c JOIN p ON c.pk = crsql_pack_columns(p.id) "
                     "WHERE c.\"table\" = 'p' AND c.cid = '-1' AND c.col_version = 1 AND c.cl = 1 "
                     "AND c.db_version = 2 AND c.seq = " + pos),
              "3000");
  }
}

// Small transactions whose captured part (past the first four writes) adds
// a few rows above every stored key take StoreFreshRows' one-go path; rows
// added between stored keys, or in descending order, go row by row. Every
// way, each row gets fresh clocks at its transaction's version, seqs in
// write order, and one feed entry.
TEST(RecordingTest, SmallTransactionsOfNewRowsGetFreshClocksInWriteOrder) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1000, 'x', 0);");
  struct Txn {
    int first, rows, step;
  };
  // Above every key, ascending (5 to 9 rows); between stored keys; descending.
  const std::vector<Txn> txns = {{2000, 5, 1}, {2100, 6, 1}, {2200, 9, 1}, {100, 7, 1},
                                 {2400, 8, -1}};
  for (const Txn& t : txns) {
    db.Exec("BEGIN");
    for (int k = 0; k < t.rows; ++k) {
      const int id = t.first + k * t.step;
      db.Exec("INSERT INTO t VALUES (" + std::to_string(id) + ", 'b', " + std::to_string(k) + ")");
    }
    db.Exec("COMMIT");
  }
  for (size_t n = 0; n < txns.size(); ++n) {
    const Txn& t = txns[n];
    SCOPED_TRACE("transaction " + std::to_string(n));
    const std::string dbv = std::to_string(n + 2);
    // The row written k-th (c = k) has seqs 2k (b) and 2k + 1 (c).
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes x JOIN t ON x.pk = crsql_pack_columns(t.id) "
                     "WHERE x.db_version = " + dbv + " AND x.col_version = 1 AND x.cl = 1 "
                     "AND x.site_id IS NULL AND x.seq = 2 * t.c + (x.cid = 'c')"),
              std::to_string(2 * t.rows));
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE db_version = " + dbv),
              std::to_string(2 * t.rows));
    EXPECT_EQ(db.One("SELECT count(*) FROM t__crsync_feed WHERE dbv = " + dbv +
                     " AND substr(pk, 1, 1) != x'00'"),
              std::to_string(t.rows));
  }
}

// A transaction writing more than ConnEngine::kFlushEvery rows has them
// stored as it goes (the log stays bounded). That must not change what is
// recorded, and a statement or savepoint that fails after such a flush must
// still leave no trace.
TEST(RecordingTest, HugeStatementsStoreAsTheyGoAndStillRollBackCleanly) {
  const size_t every = 20000;  // ConnEngine::kFlushEvery in production
  const int n = static_cast<int>(every) + 5000;
  const std::string load = "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < " +
                           std::to_string(n) + ") ";
  TestDb db;
  ConnEngine::Find(db.get())->set_flush_every_for_testing(every);
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b CHECK (b <> 'bad'));"
          "SELECT crsql_as_crr('t');");
  // Autocommit: every row recorded once, seqs distinct.
  db.Exec(load + "INSERT INTO t SELECT i, 'v' || i FROM k");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), std::to_string(n));
  EXPECT_EQ(db.One("SELECT count(DISTINCT seq) FROM crsql_changes"), std::to_string(n));
  // In a transaction: a statement that fails on its last row, after a
  // mid-statement flush, leaves nothing; the transaction goes on.
  db.Exec("BEGIN");
  EXPECT_FALSE(db.Try(load + "UPDATE t SET b = CASE WHEN id = " + std::to_string(n) +
                      " THEN 'bad' ELSE b || '+' END").ok());
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE col_version > 1"), "0");
  // A savepoint rolled back after a flush: undone, and the writes before it
  // (stored by the same flush) are stored again.
  db.Exec("UPDATE t SET b = 'x' WHERE id <= 10; SAVEPOINT s;");
  db.Exec(load + "UPDATE t SET b = b || '!' WHERE id > 10");
  db.Exec("ROLLBACK TO s; RELEASE s; COMMIT;");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE col_version = 2"), "10");
  EXPECT_EQ(db.One("SELECT count(*) FROM t WHERE b LIKE '%!'"), "0");
  // Rebuilding from the changes gives the same rows.
  TestDb copy;
  copy.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b CHECK (b <> 'bad'));"
            "SELECT crsql_as_crr('t');");
  Sync(db, copy);
  EXPECT_EQ(copy.Query("SELECT * FROM t ORDER BY id"), db.Query("SELECT * FROM t ORDER BY id"));
}

// Stored metadata is read back for a window of captured writes with one
// range scan when the keys are dense, and key by key (after a bounded
// scan) when they are sparse; both must find every row, and only those.
TEST(RecordingTest, UpdatesOfDenseAndSparseKeysReadTheRightMetadata) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
          "INSERT INTO t SELECT i, i FROM n;");
  // Sparse: every 97th row (206 keys spread over 20000), plus a dense run.
  db.Exec("BEGIN; UPDATE t SET b = -b WHERE id % 97 = 0; UPDATE t SET b = -b WHERE id BETWEEN "
          "5000 AND 6999; UPDATE t SET b = b + 1 WHERE id % 97 = 0; COMMIT;");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE col_version = 1"),
            db.One("SELECT count(*) FROM t WHERE id % 97 <> 0 AND id NOT BETWEEN 5000 AND 6999"));
  // Sparse rows were written twice (col_version 3) unless also in the
  // dense run (three times: 4); dense-only rows once more (2).
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE col_version = 3"),
            db.One("SELECT count(*) FROM t WHERE id % 97 = 0 AND id NOT BETWEEN 5000 AND 6999"));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE col_version = 4"),
            db.One("SELECT count(*) FROM t WHERE id % 97 = 0 AND id BETWEEN 5000 AND 6999"));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE col_version = 2"),
            db.One("SELECT count(*) FROM t WHERE id % 97 <> 0 AND id BETWEEN 5000 AND 6999"));
  EXPECT_EQ(db.One("SELECT count(*) FROM t__crsync_rows"), "20000");
  TestDb copy;
  copy.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  Sync(db, copy);
  EXPECT_EQ(copy.Query("SELECT * FROM t ORDER BY id"), db.Query("SELECT * FROM t ORDER BY id"));
}

// If storing the captured writes fails part-way, the transaction must not
// commit: every later flush (and so COMMIT) fails until it rolls back.
TEST(RecordingTest, AFailedFlushCanOnlyRollBack) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  db.Exec("BEGIN");
  db.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "
          "INSERT INTO t SELECT i, 'v' FROM n");
  db.Exec("DROP TABLE t__crsync_feed");  // storing the feed entries will fail
  EXPECT_THAT(db.Error("SELECT count(*) FROM crsql_changes"), HasSubstr("t__crsync_feed"));
  EXPECT_THAT(db.Error("SELECT count(*) FROM crsql_changes"), HasSubstr("roll it back"));
  EXPECT_THAT(db.Error("COMMIT"), HasSubstr("roll it back"));
  if (!sqlite3_get_autocommit(db.get())) db.Exec("ROLLBACK");
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "0");
  EXPECT_EQ(db.One("SELECT count(*) FROM t__crsync_rows"), "0");
  // The next transaction starts clean.
  db.Exec("INSERT INTO t VALUES (1, 'x')");
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "1");
}

TEST(RecordingTest, ConnectionWithoutEngineCannotWriteCrr) {
  TempPath path;
  {
    TestDb db(path.str());
    db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
            "INSERT INTO t VALUES (1, 1);");
  }
  DbPtr plain;
  ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READWRITE, nullptr, &plain));
  EXPECT_THAT(Exec(plain.get(), "INSERT INTO t VALUES (2, 2)").message(),
              HasSubstr("no such function: crsync_after_insert"));
  EXPECT_THAT(Exec(plain.get(), "UPDATE t SET b = 5").message(),
              HasSubstr("no such function: crsync_after_update"));
  EXPECT_THAT(Exec(plain.get(), "DELETE FROM t").message(),
              HasSubstr("no such function: crsync_after_delete"));
  plain.reset();
  TestDb db(path.str());
  EXPECT_EQ(db.Query("SELECT * FROM t"), (Rows{{"1", "1"}}));
}

TEST(RecordingTest, RecordingFunctionsCalledByHandWithoutArgumentsFail) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  for (const char* f : {"crsync_after_insert", "crsync_after_update", "crsync_after_delete"}) {
    SCOPED_TRACE(f);
    EXPECT_THAT(db.Error(std::string("SELECT ") + f + "()"), HasSubstr("called by triggers only"));
  }
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "0");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "0");
}

TEST(RecordingTest, TwoConnectionsShareTheDbVersion) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  a.Exec("INSERT INTO t VALUES (1, 1)");
  b.Exec("INSERT INTO t VALUES (2, 1)");
  a.Exec("INSERT INTO t VALUES (3, 1)");
  EXPECT_EQ(a.Query("SELECT hex(pk), db_version FROM crsql_changes"),
            (Rows{{"'010901'", "1"}, {"'010902'", "2"}, {"'010903'", "3"}}));
  EXPECT_EQ(b.One("SELECT crsql_db_version()"), "3");
}

TEST(RecordingTest, GeneratedColumnsAreNotReplicated) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, b, g AS (b * 2)); SELECT crsql_as_crr('t');"
          "INSERT INTO t(id, b) VALUES (1, 2); UPDATE t SET b = 3;");
  EXPECT_EQ(db.Query("SELECT cid, val FROM crsql_changes"), (Rows{{"'b'", "3"}}));
}

}  // namespace
}  // namespace crsync
