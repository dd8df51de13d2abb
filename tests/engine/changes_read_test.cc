// crr-semantics §8: reading crsql_changes.
#include "crsync/engine.h"
#include "tests/test_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

class ChangesReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_.Exec(
        "CREATE TABLE a (id PRIMARY KEY NOT NULL, x, y); SELECT crsql_as_crr('a');"
        "CREATE TABLE b (k1 NOT NULL, k2 NOT NULL, v, PRIMARY KEY (k1, k2)); SELECT crsql_as_crr('b');"
        "INSERT INTO a VALUES (1, 'one', 1.5);"                      // v1
        "BEGIN; INSERT INTO b VALUES ('p', 1, x'00'); UPDATE a SET x = 'uno'; COMMIT;"  // v2
        "DELETE FROM a WHERE id = 1;"                                 // v3
        "INSERT INTO a VALUES (2, NULL, NULL);");                     // v4
  }
  TestDb db_;
};

TEST_F(ChangesReadTest, SelectStarHasSevenColumnsAndHiddenOnesByName) {
  EXPECT_EQ(db_.Query("SELECT * FROM crsql_changes LIMIT 1")[0].size(), 7u);
  EXPECT_EQ(db_.Query("SELECT *, cl, seq FROM crsql_changes LIMIT 1")[0].size(), 9u);
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE tag IS NOT NULL"), "0");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE site_id = crsql_site_id()"), "4");
}

TEST_F(ChangesReadTest, RowsComeInDbVersionSeqOrderAcrossTables) {
  EXPECT_EQ(db_.Query("SELECT \"table\", cid, db_version, seq FROM crsql_changes"),
            (Rows{{"'b'", "'v'", "2", "0"},
                  {"'a'", "'-1'", "3", "0"},
                  {"'a'", "'x'", "4", "0"},
                  {"'a'", "'y'", "4", "1"}}));
}

// Within a version, records follow seq, which is write order: not table,
// key or column order (each differs from seq here), whether the writes were
// recorded at once (the first four of a transaction) or captured and
// recorded at COMMIT (the rest).
TEST(ChangesOrderTest, TiesInAVersionFollowSeqNotTableKeyOrColumn) {
  TestDb db;
  db.Exec(
      "CREATE TABLE t (id PRIMARY KEY NOT NULL, a, b); SELECT crsql_as_crr('t');"
      "CREATE TABLE u (id PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('u');"
      "INSERT INTO t VALUES (1, 0, 0), (2, 0, 0); INSERT INTO u VALUES (1, 0);");
  const std::string v = db.One("SELECT crsql_db_version()");
  db.Exec(
      "BEGIN; UPDATE u SET a = 'u'; UPDATE t SET b = 'b2' WHERE id = 2;"
      "UPDATE t SET a = 'a2' WHERE id = 2; UPDATE t SET b = 'b1' WHERE id = 1;"
      "UPDATE u SET a = 'u again'; UPDATE t SET a = 'a1' WHERE id = 1; COMMIT;");
  const Rows got = db.Query(
      "SELECT \"table\", hex(pk), cid, seq FROM crsql_changes WHERE db_version > " +
      v);
  ASSERT_EQ(got.size(), 5u);
  const std::vector<std::vector<std::string>> want = {
      {"'t'", "'010902'", "'b'"}, {"'t'", "'010902'", "'a'"}, {"'t'", "'010901'", "'b'"},
      {"'u'", "'010901'", "'a'"},  {"'t'", "'010901'", "'a'"}};
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(std::vector<std::string>(got[i].begin(), got[i].begin() + 3), want[i]) << "row " << i;
    if (i > 0) {
      EXPECT_LT(std::stoll(got[i - 1][3]), std::stoll(got[i][3])) << "row " << i;
    }
  }
}

TEST_F(ChangesReadTest, DbVersionConstraints) {
  auto q = [&](const std::string& where) {
    return db_.One("SELECT group_concat(db_version || '.' || seq) FROM crsql_changes WHERE " + where);
  };
  EXPECT_EQ(q("db_version > 2"), "'3.0,4.0,4.1'");
  EXPECT_EQ(q("db_version >= 3"), "'3.0,4.0,4.1'");
  EXPECT_EQ(q("db_version = 4"), "'4.0,4.1'");
  EXPECT_EQ(q("db_version < 3"), "'2.0'");
  EXPECT_EQ(q("db_version <= 3 AND db_version > 2"), "'3.0'");
  EXPECT_EQ(q("db_version > 2.5"), "'3.0,4.0,4.1'");
  EXPECT_EQ(q("db_version = 2.5"), "NULL");
  EXPECT_EQ(q("db_version > NULL"), "NULL");
  // SQL affinity: '1' compares as 1 with an INTEGER column; 'x' stays TEXT,
  // which sorts above every integer.
  EXPECT_EQ(q("db_version > '1'"), "'2.0,3.0,4.0,4.1'");
  EXPECT_EQ(q("db_version > 'x'"), "NULL");
  EXPECT_EQ(q("db_version < 'x'"), "'2.0,3.0,4.0,4.1'");
}

TEST_F(ChangesReadTest, TableAndPkConstraints) {
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'a'"), "3");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'nope'"), "0");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'A'"), "0");
  EXPECT_EQ(db_.Query("SELECT cid FROM crsql_changes WHERE pk = crsql_pack_columns(2)"),
            (Rows{{"'x'"}, {"'y'"}}));
  EXPECT_EQ(db_.Query("SELECT cid FROM crsql_changes WHERE \"table\" = 'b' AND pk = "
                      "crsql_pack_columns('p', 1)"),
            (Rows{{"'v'"}}));
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE pk = X'0209'"), "0");  // malformed
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE pk = 'text'"), "0");
  // A non-canonical encoding of 2 is not byte-equal to the shown pk.
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE pk = X'01110002'"), "0");
}

// An IN list on "table", pk or site_id keeps the (db_version, seq) order
// without ORDER BY (§8.3): SQLite, left alone, runs one scan per value
// (sorted by value) and concatenates them.
// §8.4: a cursor query costs O(result), not O(database). Measured in
// page fetches (the connection's page-cache hits and misses, which count
// the engine's own reads too): each constrained read of a few changes
// touches a small fraction of the pages a full read does.
TEST(ChangesPushDownTest, ConstrainedReadsTouchPagesInProportionToTheirResult) {
  TestDb db;
  db.Exec("CREATE TABLE big (id INTEGER PRIMARY KEY NOT NULL, a, b); SELECT crsql_as_crr('big');"
          "CREATE TABLE small (id INTEGER PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('small');"
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
          "INSERT INTO big SELECT i, i, hex(randomblob(16)) FROM n;"  // v1
          "INSERT INTO small VALUES (1, 'x');"                          // v2
          "UPDATE big SET a = 0 WHERE id = 12345;");                    // v3
  auto pages = [&](const std::string& where, std::string* count) {
    int cur = 0, high = 0, fetched = 0;
    sqlite3_db_status(db.get(), SQLITE_DBSTATUS_CACHE_HIT, &cur, &high, 1);
    sqlite3_db_status(db.get(), SQLITE_DBSTATUS_CACHE_MISS, &cur, &high, 1);
    *count = db.One("SELECT count(*) FROM crsql_changes " + where);
    sqlite3_db_status(db.get(), SQLITE_DBSTATUS_CACHE_HIT, &cur, &high, 1);
    fetched += cur;
    sqlite3_db_status(db.get(), SQLITE_DBSTATUS_CACHE_MISS, &cur, &high, 1);
    return fetched + cur;
  };
  std::string count;
  const int full = pages("", &count);
  ASSERT_EQ(count, "40001");  // 20000 rows x 2 columns, and small's one
  ASSERT_GT(full, 400);
  struct Case {
    const char* where;
    const char* count;
  };
  for (const Case& c : {Case{"WHERE db_version > 1", "2"}, Case{"WHERE db_version = 3", "1"},
                        Case{"WHERE db_version >= 2 AND db_version < 3", "1"},
                        Case{"WHERE \"table\" = 'small'", "1"},
                        Case{"WHERE \"table\" = 'big' AND pk = crsql_pack_columns(777)", "2"},
                        Case{"WHERE pk = crsql_pack_columns(12345) AND db_version > 2", "1"}}) {
    const int touched = pages(c.where, &count);
    EXPECT_EQ(count, c.count) << c.where;
    EXPECT_LT(touched, full / 20) << c.where << ": " << touched << " pages, a full read " << full;
  }
}

TEST(ChangesReadInTest, InListsKeepDbVersionSeqOrder) {
  TestDb db;
  db.Exec("CREATE TABLE foo (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('foo');"
          "CREATE TABLE bar (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('bar');"
          "INSERT INTO foo VALUES (1, 'a');"   // 1
          "INSERT INTO bar VALUES (1, 'b');"   // 2
          "INSERT INTO foo VALUES (2, 'c');"   // 3
          "INSERT INTO bar VALUES (2, 'd');"   // 4
          "UPDATE foo SET v = 'e' WHERE id = 1;"  // 5
          "INSERT INTO crsql_changes VALUES ('bar', crsql_pack_columns(3), 'v', 'f', 1, 1, "
          "X'0102030405060708090a0b0c0d0e0f10');"  // 6, from a peer
          "INSERT INTO crsql_changes VALUES ('foo', crsql_pack_columns(3), 'v', 'g', 1, 1, "
          "X'f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0');");  // 7, from another peer
  auto q = [&](const std::string& where) {
    return db.One("SELECT group_concat(db_version, ' ') FROM crsql_changes WHERE " + where);
  };
  EXPECT_EQ(q("\"table\" IN ('foo', 'bar')"), "'2 3 4 5 6 7'");
  EXPECT_EQ(q("\"table\" IN ('foo', 'bar', 'nope', x'00')"), "'2 3 4 5 6 7'");
  EXPECT_EQ(q("\"table\" IN ('foo', 'bar') AND \"table\" = 'bar'"), "'2 4 6'");
  EXPECT_EQ(q("\"table\" IN ('nope')"), "NULL");
  EXPECT_EQ(q("pk IN (crsql_pack_columns(3), crsql_pack_columns(1), crsql_pack_columns(2))"),
            "'2 3 4 5 6 7'");
  EXPECT_EQ(q("\"table\" = 'foo' AND pk IN (crsql_pack_columns(3), crsql_pack_columns(1), 'x')"),
            "'5 7'");
  EXPECT_EQ(q("site_id IN (X'f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0', X'0102030405060708090a0b0c0d0e0f10', "
              "crsql_site_id())"),
            "'2 3 4 5 6 7'");
  EXPECT_EQ(q("site_id IN (X'f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0', X'0102030405060708090a0b0c0d0e0f10')"),
            "'6 7'");
}

TEST_F(ChangesReadTest, SiteIdFilters) {
  std::string own = db_.Text("SELECT quote(crsql_site_id())");
  auto n = [&](const std::string& where) {
    return db_.One("SELECT count(*) FROM crsql_changes WHERE " + where);
  };
  db_.Exec("INSERT INTO crsql_changes VALUES ('a', X'010905', 'x', 'remote', 1, 9, "
           "X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')");
  EXPECT_EQ(n("site_id IS NULL"), "4");
  EXPECT_EQ(n("site_id IS NOT NULL"), "1");
  EXPECT_EQ(n("site_id = " + own), "4");
  EXPECT_EQ(n("site_id IS " + own), "4");
  EXPECT_EQ(n("site_id != " + own), "1");
  EXPECT_EQ(n("site_id IS NOT " + own), "1");
  EXPECT_EQ(n("site_id = X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'"), "1");
  EXPECT_EQ(n("site_id != X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'"), "4");
  EXPECT_EQ(n("site_id = X'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'"), "0");
  EXPECT_EQ(n("site_id != X'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'"), "5");
  EXPECT_EQ(n("site_id = NULL"), "0");
  EXPECT_EQ(n("site_id != NULL"), "0");
  EXPECT_EQ(n("site_id IS NULL AND site_id IS NOT NULL"), "0");
  EXPECT_EQ(n("db_version > 0 AND site_id IS NULL"), "4");
  // Every shown site_id is 16 bytes, local changes included.
  EXPECT_EQ(n("length(site_id) = 16"), "5");
  EXPECT_EQ(db_.Text("SELECT quote(site_id) FROM crsql_changes WHERE site_id IS NULL LIMIT 1"), own);
}

// Several site_id constraints at once are all applied (before, any second
// one other than a repeated IS [NOT] NULL matched nothing).
TEST_F(ChangesReadTest, SeveralSiteIdConstraintsCombine) {
  std::string own = db_.Text("SELECT quote(crsql_site_id())");
  const std::string a = "X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'", b = "X'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'";
  db_.Exec("INSERT INTO crsql_changes VALUES ('a', X'010905', 'x', 'ra', 1, 9, " + a + ");"
           "INSERT INTO crsql_changes VALUES ('a', X'010906', 'x', 'rb', 1, 10, " + b + ");");
  auto vals = [&](const std::string& where) {
    return db_.Query("SELECT val FROM crsql_changes WHERE " + where + " AND val LIKE 'r%' ORDER BY val");
  };
  auto n = [&](const std::string& where) {
    return db_.One("SELECT count(*) FROM crsql_changes WHERE " + where);
  };
  EXPECT_EQ(vals("site_id IS NOT NULL AND site_id != " + a), (Rows{{"'rb'"}}));
  EXPECT_EQ(vals("site_id != " + a + " AND site_id IS NOT NULL"), (Rows{{"'rb'"}}));
  EXPECT_EQ(n("site_id != " + a + " AND site_id != " + b), "4");  // the local ones
  EXPECT_EQ(vals("site_id = " + a + " AND site_id = " + a), (Rows{{"'ra'"}}));
  EXPECT_EQ(n("site_id = " + a + " AND site_id = " + b), "0");
  EXPECT_EQ(n("site_id = " + a + " AND site_id != " + a), "0");
  EXPECT_EQ(n("site_id IS NULL AND site_id = " + own), "4");
  EXPECT_EQ(n("site_id IS NULL AND site_id != " + a), "4");
  EXPECT_EQ(n("site_id IS NULL AND site_id = " + a), "0");
  EXPECT_EQ(vals("site_id IS NOT NULL AND site_id IS NOT " + own), (Rows{{"'ra'"}, {"'rb'"}}));
  EXPECT_EQ(n("site_id IS NULL AND site_id IS NOT NULL"), "0");
  EXPECT_EQ(n("site_id IS NULL AND site_id IS NULL"), "4");
}

// Updating rows while stepping a SELECT of crsql_changes: each update takes
// a new version, which the running scan must not meet (before, the loop
// never ended). The scan reads the versions that existed when it started.
TEST(ChangesReadLoopTest, WritesWhileReadingDoNotFeedTheRunningScan) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');");
  for (int i = 1; i <= 50; ++i) db.Exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 0)");
  StmtPtr sel, upd;
  ASSERT_OK(Prepare(db.get(), "SELECT crsql_unpack_columns.cell, db_version FROM crsql_changes, "
                              "crsql_unpack_columns(pk) WHERE db_version > 0", &sel));
  ASSERT_OK(Prepare(db.get(), "UPDATE t SET a = a + 1 WHERE id = ?1", &upd));
  int rows = 0, rc;
  while ((rc = sqlite3_step(sel.get())) == SQLITE_ROW && rows < 1000) {
    ++rows;
    sqlite3_bind_int64(upd.get(), 1, sqlite3_column_int64(sel.get(), 0));
    ASSERT_OK(StepToEnd(db.get(), upd.get()));
  }
  EXPECT_EQ(rc, SQLITE_DONE);
  EXPECT_EQ(rows, 50);
  sel.reset();
  // The writes were all recorded.
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE col_version = 2"), "50");
}

TEST_F(ChangesReadTest, OrderByIsHonouredWhateverItSays) {
  EXPECT_EQ(db_.Query("SELECT db_version, seq FROM crsql_changes ORDER BY db_version DESC, seq ASC"),
            (Rows{{"4", "0"}, {"4", "1"}, {"3", "0"}, {"2", "0"}}));
  EXPECT_EQ(db_.Query("SELECT cid FROM crsql_changes ORDER BY cid"),
            (Rows{{"'-1'"}, {"'v'"}, {"'x'"}, {"'y'"}}));
}

TEST_F(ChangesReadTest, ValuesAreCurrentAndTyped) {
  EXPECT_EQ(db_.Query("SELECT typeof(val), val FROM crsql_changes WHERE \"table\" = 'b'"),
            (Rows{{"'blob'", "X'00'"}}));
  db_.Exec("UPDATE a SET y = 7 WHERE id = 2");
  EXPECT_EQ(db_.One("SELECT val FROM crsql_changes WHERE cid = 'y'"), "7");
}

TEST_F(ChangesReadTest, UpdateAndDeleteAreRejected) {
  const Rows before = CrrState(db_, {"a", "b"});
  EXPECT_THAT(db_.Error("UPDATE crsql_changes SET val = 1"),
              HasSubstr("Only INSERT and SELECT statements are allowed"));
  EXPECT_THAT(db_.Error("DELETE FROM crsql_changes"),
              HasSubstr("Only INSERT and SELECT statements are allowed"));
  EXPECT_EQ(CrrState(db_, {"a", "b"}), before);
}

TEST_F(ChangesReadTest, LargeTransactionStreamsInOrder) {
  db_.Exec("CREATE TABLE big (id INTEGER PRIMARY KEY NOT NULL, p, q); SELECT crsql_as_crr('big');"
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
           "INSERT INTO big SELECT i, i * 2, 'x' || i FROM n;"
           "UPDATE big SET p = -p WHERE id % 7 = 0;");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'big'"), "6000");
  // Strictly increasing (db_version, seq) for the CRR's own changes.
  EXPECT_EQ(db_.One("SELECT count(*) FROM (SELECT db_version, seq, lag(db_version) OVER () pd, "
                    "lag(seq) OVER () ps FROM crsql_changes WHERE \"table\" = 'big') "
                    "WHERE pd IS NOT NULL AND NOT (db_version > pd OR (db_version = pd AND seq > ps))"),
            "0");
}

// §8.2: metadata whose table is gone (dropped without crsql_as_table) or
// whose column is gone (the table recreated outside an alter) is skipped;
// every other CRR reads as before, through SQL and ChangeReader alike.
TEST_F(ChangesReadTest, OrphanedMetadataIsSkipped) {
  const char* q = "SELECT \"table\", cid, val FROM crsql_changes ORDER BY db_version, seq";
  Rows of_a = db_.Query("SELECT \"table\", cid, val FROM crsql_changes WHERE \"table\" = 'a' "
                        "ORDER BY db_version, seq");
  db_.Exec("DROP TABLE b");
  EXPECT_EQ(db_.Query(q), of_a);
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(db_.get(), &reader));
  size_t read = 0;
  for (int64_t after = 0;;) {
    std::vector<Change> txn;
    int64_t v = 0;
    ASSERT_OK(reader->NextTransaction(after, OriginFilter{}, &txn, &v));
    if (v == 0) break;
    for (const Change& c : txn) EXPECT_EQ(c.table, "a");
    read += txn.size();
    after = v;
  }
  EXPECT_EQ(read, of_a.size());
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'b'"), "0");
  db_.Exec("INSERT INTO a VALUES (3, 'three', 3)");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'a' AND pk = "
                    "crsql_pack_columns(3)"),
            "2");
  // Recreated with the keys but not the column: the records of v are
  // skipped (b's rows had no sentinel, so nothing of b is left).
  db_.Exec("CREATE TABLE b (k1 NOT NULL, k2 NOT NULL, w, PRIMARY KEY (k1, k2));"
           "INSERT INTO b VALUES ('p', 1, 'new')");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'b'"), "0");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'a'"),
            std::to_string(of_a.size() + 2));
  // (A column of a live CRR cannot be dropped outside an alter: the
  // recording triggers name it, and SQLite refuses.)
  EXPECT_THAT(db_.Error("ALTER TABLE a DROP COLUMN y"), HasSubstr("no such column: OLD.y"));
}

// OR queries that SQLite plans as a union of one scan per term (here: a
// cursor per origin, the natural relay query) return every matching change
// once. Rowids restarted with each scan made SQLite drop unrelated changes
// as duplicates (and keep real duplicates).
TEST(ChangesReadOrTest, OrTermsScannedSeparatelyReturnEachChangeOnce) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'l1'); INSERT INTO t VALUES (2, 'l2'); INSERT INTO t VALUES (3, 'l3');");
  const std::string a = "X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'";
  db.Exec("INSERT INTO crsql_changes VALUES ('t', X'010964', 'a', 'rA1', 1, 7, " + a + ");"
          "INSERT INTO crsql_changes VALUES ('t', X'010965', 'a', 'rA2', 1, 8, " + a + ");");
  auto vals = [&](const std::string& where) {
    return db.One("SELECT group_concat(val, ',') FROM (SELECT val FROM crsql_changes WHERE " + where +
                  " ORDER BY val)");
  };
  EXPECT_EQ(vals("(site_id IS NULL AND db_version > 1) OR (site_id = " + a + " AND db_version > 6)"),
            "'l2,l3,rA1,rA2'");
  EXPECT_EQ(vals("db_version = 8 OR \"table\" = 't'"), "'l1,l2,l3,rA1,rA2'");
  EXPECT_EQ(vals("db_version = 8 OR pk = X'010965' OR db_version = 2"), "'l2,rA2'");
}

// A top-level `site_id IS NULL` / `IS NOT NULL` keeps its meaning (local /
// remote, §8.5) when an OR elsewhere in the WHERE could be split into one
// scan per branch: SQLite would test the term again on the displayed,
// never-NULL id after such scans.
TEST(ChangesReadOrTest, SiteNullTestsNextToAnOrKeepTheirMeaning) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'a');"
          "INSERT INTO crsql_changes VALUES ('t', X'010964', 'v', 'r', 1, 7, "
          "X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');");
  auto vals = [&](const std::string& where) {
    return db.One("SELECT group_concat(val, ',') FROM (SELECT val FROM crsql_changes WHERE " + where +
                  " ORDER BY val)");
  };
  EXPECT_EQ(vals("db_version > 0 AND site_id IS NULL"), "'a'");
  EXPECT_EQ(vals("(db_version = 1 OR db_version > 0) AND site_id IS NULL"), "'a'");
  EXPECT_EQ(vals("(db_version = 1 OR \"table\" = 't') AND site_id IS NULL"), "'a'");
  EXPECT_EQ(vals("(db_version = 1 OR \"table\" = 't') AND site_id IS NOT NULL"), "'r'");
  EXPECT_EQ(vals("(db_version = 2 OR pk = X'010964') AND site_id IS NOT NULL"), "'r'");
  EXPECT_EQ(vals("(db_version = 7 OR pk = X'010901') AND site_id IS NULL"), "'a'");
  EXPECT_EQ(vals("(db_version = 7 OR pk = X'010901') AND site_id IS NOT NULL"), "'r'");
}

// Costing such a term below any split must not make every plan taking it
// look alike: a join filtered by it still looks changes up by pk or
// db_version per outer row, instead of scanning them all each time.
TEST(ChangesReadOrTest, JoinsFilteredBySiteNullStillLookUp) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
          "INSERT INTO t SELECT i, i FROM n;"
          "CREATE TABLE w (pk); INSERT INTO w SELECT crsql_pack_columns(id) FROM t WHERE id % 10 = 0;"
          "CREATE TABLE vs (v); INSERT INTO vs VALUES (1), (2);");
  auto plan_of_c = [&](const std::string& sql) {
    std::string found;
    for (const auto& row : db.Query("EXPLAIN QUERY PLAN " + sql)) {
      if (row.back().find("SCAN c VIRTUAL TABLE INDEX") != std::string::npos) found = row.back();
    }
    return found;
  };
  const std::string by_pk = plan_of_c(
      "SELECT count(*) FROM w JOIN crsql_changes c ON c.pk = w.pk WHERE c.site_id IS NULL");
  EXPECT_THAT(by_pk, ::testing::MatchesRegex(".*INDEX 0:(UP|PU).*")) << by_pk;
  const std::string by_version = plan_of_c(
      "SELECT count(*) FROM vs JOIN crsql_changes c ON c.db_version = vs.v WHERE c.site_id IS NULL");
  EXPECT_THAT(by_version, ::testing::MatchesRegex(".*INDEX 0:(Ua|aU).*")) << by_version;
  EXPECT_EQ(db.One("SELECT count(*) FROM w JOIN crsql_changes c ON c.pk = w.pk "
                   "WHERE c.site_id IS NULL"),
            "30");
}

// A "table" constraint means what it means on a plain table: its
// collation and the TEXT column's affinity apply (crr-semantics §8.4).
TEST(ChangesReadOrTest, TableConstraintsKeepSqlSemantics) {
  TestDb db;
  db.Exec("CREATE TABLE todo (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('todo');"
          "INSERT INTO todo VALUES (1, 'x');"
          "CREATE TABLE \"5\" (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('5');"
          "INSERT INTO \"5\" VALUES (1, 'y');"
          "CREATE TABLE \"01\" (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('01');"
          "INSERT INTO \"01\" VALUES (1, 'z');"
          "CREATE TEMP TABLE ref AS SELECT * FROM crsql_changes;"
          "CREATE TEMP TABLE k (ti INTEGER); INSERT INTO k VALUES (1), (5);");
  // Against an operand with a numeric affinity (a CAST, an INTEGER
  // column) SQLite compares the names as numbers: '5' = 5.0, '01' = 1.
  for (const char* where : {"\"table\" = 'TODO' COLLATE NOCASE", "\"table\" = 5", "\"table\" = 5.0",
                            "\"table\" = 'todo'", "\"table\" = X'746F646F'", "\"table\" = NULL",
                            "\"table\" = CAST(5 AS REAL)", "\"table\" = CAST(1 AS INTEGER)",
                            "\"table\" IN (SELECT ti FROM k)", "\"table\" IN (1, '5', 'todo')",
                            "\"table\" IN (SELECT CAST(ti AS TEXT) FROM k)"}) {
    EXPECT_EQ(db.One(std::string("SELECT count(*) FROM crsql_changes WHERE ") + where),
              db.One(std::string("SELECT count(*) FROM ref WHERE ") + where))
        << where;
  }
  for (const char* from : {"k CROSS JOIN crsql_changes c ON c.\"table\" = k.ti",
                           "k CROSS JOIN ref c ON c.\"table\" = k.ti"}) {
    EXPECT_EQ(db.One(std::string("SELECT count(*) FROM ") + from), "2") << from;
  }
}

// SQLite leaves a constraint to the virtual table (omit) only among the
// first 16 it passes: a site_id IS NULL past them would be tested again
// against the shown site id, never NULL, and lose every local change. Such
// a query is refused with a way out; earlier, it means local.
TEST(ChangesReadOrTest, ASiteNullTestPastTheSixteenthTermIsRefusedNotMisread) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'a');");
  std::string terms;
  for (int i = 1; i <= 16; ++i) terms += "db_version > -" + std::to_string(i) + " AND ";
  for (const char* site : {"site_id IS NULL", "site_id IS NOT NULL", "site_id IS ?1",
                           "site_id IS NOT ?1"}) {
    SCOPED_TRACE(site);
    EXPECT_THAT(db.Error("SELECT count(*) FROM crsql_changes WHERE " + terms + site),
                ::testing::HasSubstr("write the term earlier in the WHERE clause, or constrain fewer"));
  }
  // Written first, IS NULL is the first constraint; SQLite lists IS NOT
  // NULL after every other term wherever it is written.
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE site_id IS NULL AND " + terms + "1"), "1");
  EXPECT_THAT(db.Error("SELECT count(*) FROM crsql_changes WHERE site_id IS NOT NULL AND " + terms + "1"),
              ::testing::HasSubstr("constrain fewer"));
  // Fifteen other terms: the sixteenth is still honoured.
  terms.clear();
  for (int i = 1; i <= 15; ++i) terms += "db_version > -" + std::to_string(i) + " AND ";
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE " + terms + "site_id IS NULL"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE " + terms + "site_id IS NOT NULL"), "0");
}

}  // namespace
}  // namespace crsync
