// crr-semantics §11 beyond the worked scenarios: how merged values take
// the columns' affinity and the database's encoding, seqs, ties against
// unrecorded writes, merges from user triggers, rollbacks to savepoints,
// and the seed sync guide's flow with 7 and 9 columns.
#include <string>

#include "engine/conn_engine.h"
#include "tests/change_util.h"
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

// §6.2: seq starts at 0 in every transaction. A 7-value insert takes a
// seq even when its change loses, in a transaction that otherwise takes no
// version; the next transaction must still start at 0.
TEST(MergeSeqTest, SeqStartsAtZeroAfterATransactionOfLosingMerges) {
  TestDb db;
  db.Exec("CREATE TABLE t (a INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t')");
  const std::string site = "X'11111111111111111111111111111111'";
  db.Exec("INSERT INTO crsql_changes VALUES ('t', X'010901', 'b', 'x', 1, 3, " + site + ")");
  int key = 2;
  for (const char* then : {"COMMIT", "ROLLBACK", ""}) {
    SCOPED_TRACE(then);
    if (*then) db.Exec("BEGIN");
    for (int i = 0; i < 3; ++i) {  // each loses to 'x'
      db.Exec("INSERT INTO crsql_changes VALUES ('t', X'010901', 'b', 'a', 1, 3, " + site + ")");
    }
    if (*then) db.Exec(then);
    db.Exec("INSERT INTO t VALUES (" + std::to_string(key) + ", 'local')");
    EXPECT_EQ(db.One("SELECT seq FROM crsql_changes WHERE pk = crsql_pack_columns(" +
                     std::to_string(key++) + ")"),
              "0");
  }
}

TEST(MergeAffinityTest, PkValuesTakeTheColumnsAffinity) {
  TestDb db;
  db.Exec("CREATE TABLE n (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('n');"
          "CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "CREATE TABLE r (k REAL PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('r');"
          "CREATE TABLE b (k BLOB PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('b');"
          "INSERT INTO n VALUES (1, 'one'); INSERT INTO t VALUES ('5', 'five');");
  std::string site = "X'11111111111111111111111111111111'";
  // '1' (text) for an INTEGER key, 5 (integer) for a TEXT key: same rows.
  db.Exec("INSERT INTO crsql_changes VALUES ('n', crsql_pack_columns('1'), 'v', 'uno', 5, 1, " + site + ")");
  db.Exec("INSERT INTO crsql_changes VALUES ('t', crsql_pack_columns(5), 'v', 'cinq', 5, 1, " + site + ")");
  db.Exec("INSERT INTO crsql_changes VALUES ('r', crsql_pack_columns(2), 'v', 'x', 1, 1, " + site + ")");
  db.Exec("INSERT INTO crsql_changes VALUES ('b', crsql_pack_columns('2'), 'v', 'y', 1, 1, " + site + ")");
  // '1' followed by a form feed: SQLite's spaces include \f and \v.
  db.Exec("INSERT INTO crsql_changes VALUES ('n', crsql_pack_columns(char(49, 12)), 'v', 'uno', 5, 1, " +
          site + ")");
  EXPECT_EQ(db.Query("SELECT id, v FROM n"), (Rows{{"1", "'uno'"}}));
  EXPECT_EQ(db.Query("SELECT k, v FROM t"), (Rows{{"'5'", "'cinq'"}}));
  EXPECT_EQ(db.Query("SELECT typeof(k), v FROM r"), (Rows{{"'real'", "'x'"}}));
  EXPECT_EQ(db.Query("SELECT typeof(k), v FROM b"), (Rows{{"'text'", "'y'"}}));
  EXPECT_EQ(db.Query("SELECT \"table\", hex(pk) FROM crsql_changes WHERE \"table\" IN ('n', 't') "
                     "ORDER BY 1"),
            (Rows{{"'n'", "'010901'"}, {"'t'", "'010B0135'"}}));
}

// A REAL column stores -0.0 as 0.0: a change keyed -0.0 is that row's,
// under its one identity (it used to get a second pk, with its own clocks).
TEST(MergeAffinityTest, ANegativeZeroRealKeyIsTheZeroRow) {
  TestDb db;
  db.Exec("CREATE TABLE r (k REAL PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('r');"
          "INSERT INTO r VALUES (0.0, 'local')");
  for (const char* pk : {"X'01028000000000000000'", "crsql_pack_columns('-0.0')"}) {
    SCOPED_TRACE(pk);
    db.Exec(std::string("INSERT INTO crsql_changes VALUES ('r', ") + pk +
            ", 'v', 'remote', 5, 1, X'11111111111111111111111111111111')");
    EXPECT_EQ(db.Query("SELECT quote(k), v FROM r"), (Rows{{"'0.0'", "'remote'"}}));
    EXPECT_EQ(db.Query("SELECT hex(pk), cid, val, col_version FROM crsql_changes"),
              (Rows{{"'01020000000000000000'", "'v'", "'remote'", "5"}}));
  }
  db.Exec("UPDATE r SET v = 'edited'");
  EXPECT_EQ(db.Query("SELECT hex(pk), val, col_version FROM crsql_changes"),
            (Rows{{"'01020000000000000000'", "'edited'", "6"}}));
}

// A UTF-16 database stores text that is not valid UTF-8 as other text
// (U+FFFD, or a Latin-1 character for a stray continuation byte): a key
// would take a second identity, and a value different bytes than the
// sender's, for good. Such changes are refused there, naming why; a UTF-8
// database keeps the bytes, and valid text merges everywhere.
TEST(MergeEncodingTest, TextAUtf16DatabaseCannotKeepIsRefusedThere) {
  TempPath path;
  {
    DbPtr raw;
    ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &raw));
    ASSERT_OK(Exec(raw.get(), "PRAGMA encoding = 'UTF-16le'; CREATE TABLE first(a)"));
  }
  TestDb utf16(path.str()), utf8;
  ASSERT_EQ(utf16.One("PRAGMA encoding"), "'UTF-16le'");
  for (TestDb* db : {&utf16, &utf8})
    db->Exec("CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  std::unique_ptr<ChangeApplier> a16, a8;
  ASSERT_OK(ChangeApplier::Open(utf16.get(), &a16));
  ASSERT_OK(ChangeApplier::Open(utf8.get(), &a8));
  const std::string site(16, '\x11');
  auto key = [](const std::string& text) {  // a packed one-column TEXT key
    return std::string("\x01\x0b", 2) + static_cast<char>(text.size()) + text;
  };
  // Bytes as a peer may send them (the wire carries UTF-8 bytes as they are).
  const char* const kBad[] = {("\xff" "a"), "\xc0\xaf", "\xed\xa0\x80", "\x80", "\xef\xbf\xbf",
                              "\xf4\x90\x80\x80", "\xe2\x82"};
  int n = 0;
  for (const char* bytes : kBad) {
    SCOPED_TRACE(n);
    const Change as_key = TextChange("t", key(bytes), "v", "x", 1, 1, site);
    const Change as_val = TextChange("t", key("k" + std::to_string(n++)), "v", bytes, 1, 1, site);
    for (const Change& c : {as_key, as_val}) {
      Status s = a16->Apply({c}, 0, nullptr);
      EXPECT_THAT(s.message(), HasSubstr("is not valid UTF-8, which this UTF-16 database"));
      EXPECT_OK(a8->Apply({c}, 0, nullptr));
    }
  }
  EXPECT_EQ(utf16.Int("SELECT count(*) FROM t"), 0);
  EXPECT_EQ(utf16.Int("SELECT count(*) FROM crsql_changes"), 0);
  // The SQL form of the key check.
  EXPECT_THAT(utf16.Error("INSERT INTO crsql_changes VALUES ('t', X'010B02FF61', 'v', 'x', 1, 1, "
                          "X'11111111111111111111111111111111')"),
              HasSubstr("malformed pk for table t: text for k is not valid UTF-8"));
  // Valid text, two to four bytes a character, with a NUL, and U+FFFD itself.
  for (const char* bytes : {"\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "\xef\xbf\xbd"}) {
    SCOPED_TRACE(bytes);
    ASSERT_OK(a16->Apply({TextChange("t", key(bytes), "v", bytes, 1, 1, site)}, 0, nullptr));
    ASSERT_OK(a8->Apply({TextChange("t", key(bytes), "v", bytes, 1, 1, site)}, 0, nullptr));
  }
  // The same keys and values, read back as UTF-8 on both sides.
  EXPECT_EQ(utf16.Query("SELECT hex(pk), val FROM crsql_changes ORDER BY 1"),
            utf8.Query("SELECT hex(pk), val FROM crsql_changes WHERE hex(pk) IN ('010B02C3A9', "
                       "'010B03E697A5', '010B04F09F9880', '010B03EFBFBD') ORDER BY 1"));
  EXPECT_EQ(utf16.Int("SELECT count(*) FROM crsql_changes"), 4);
}

// Numeric text out of a double's range converts as SQLite converts it
// (1e999 -> Inf, 1e-400 -> 0): the clocks go under the key SQLite stores.
TEST(MergeAffinityTest, OutOfRangeNumericTextConvertsAsSqliteDoes) {
  TestDb db;
  db.Exec("CREATE TABLE m (k NUMERIC PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('m');"
          "CREATE TABLE r (k REAL PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('r');");
  std::string site = "X'11111111111111111111111111111111'";
  for (const char* t : {"m", "r"}) {
    for (const char* k : {"'1e999'", "'-1e999'", "'1e-400'"}) {
      db.Exec(std::string("INSERT INTO crsql_changes VALUES ('") + t + "', crsql_pack_columns(" + k +
              "), 'v', " + k + ", 1, 1, " + site + ")");
    }
    const std::string table(t);
    EXPECT_EQ(db.One("SELECT count(*) FROM " + table), "3");
    EXPECT_EQ(db.One("SELECT count(*) FROM " + table + " WHERE typeof(k) = 'text'"), "0");
    // Each change names a row that is stored, under its stored key.
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes c JOIN " + table +
                     " ON c.pk = crsql_pack_columns(" + table + ".k) WHERE c.\"table\" = '" + table +
                     "'"),
              "3");
  }
}

// A user trigger fired by a merge's row write may merge too (merge_test.cc),
// but one that merges into the very row being merged would have
// its clock overwritten when the outer merge stores the row's metadata
// (both come from other sites, so nothing could ever repair it). That is
// refused with a clear error, whichever merge path runs the outer merge,
// and nothing of either merge stays.
class MergeIntoTheRowBeingMergedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    peer_.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
               "INSERT INTO t (id, b) VALUES (1, 5);");
    db_.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
             "CREATE TRIGGER same_row AFTER INSERT ON t BEGIN "
             "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id) "
             "VALUES ('t', crsql_pack_columns(NEW.id), 'c', 77, 1, 5, "
             "X'33333333333333333333333333333333'); END;");
  }
  Rows Everything() {
    Rows all = db_.Query("SELECT * FROM t");
    Rows changes = db_.Query("SELECT cid, val, col_version, hex(site_id) FROM crsql_changes");
    Rows peers = db_.Query("SELECT hex(site_id), version FROM crsql_tracked_peers");
    all.insert(all.end(), changes.begin(), changes.end());
    all.insert(all.end(), peers.begin(), peers.end());
    return all;
  }
  TestDb peer_, db_;
};

TEST_F(MergeIntoTheRowBeingMergedTest, ThroughCrsqlChangesIsRefused) {
  Rows before = Everything();
  auto rows = ReadChanges(peer_.get());
  Status s = ApplyChanges(db_.get(), rows);
  EXPECT_THAT(s.message(), HasSubstr("a trigger merged a change into t row X'010901' while that "
                                     "row was being merged"));
  EXPECT_EQ(Everything(), before);
}

TEST_F(MergeIntoTheRowBeingMergedTest, ThroughChangeApplierIsRefused) {
  // Enough rows for the bulk path (its user writes come after the window's
  // merges), then one row alone.
  peer_.Exec("WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
             " INSERT INTO t (id, b) SELECT i, i FROM n");
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(db_.get(), &applier));
  for (const char* where : {"", "WHERE pk = crsql_pack_columns(1)"}) {
    Rows before = Everything();
    Status s = applier->Apply(ToChanges(ReadChanges(peer_.get(), where)), 0, nullptr);
    EXPECT_THAT(s.message(), HasSubstr("while that row was being merged")) << where;
    EXPECT_EQ(Everything(), before) << where;
  }
}

TEST_F(MergeIntoTheRowBeingMergedTest, AnotherRowOfTheSameTableIsFine) {
  db_.Exec("DROP TRIGGER same_row; CREATE TRIGGER next_row AFTER INSERT ON t WHEN NEW.id < 10 BEGIN "
           "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id) "
           "VALUES ('t', crsql_pack_columns(NEW.id + 10), 'c', 77, 1, 5, "
           "X'33333333333333333333333333333333'); END;");
  Sync(peer_, db_);
  EXPECT_EQ(db_.Query("SELECT * FROM t ORDER BY id"), (Rows{{"1", "5", "NULL"}, {"11", "NULL", "77"}}));
  EXPECT_EQ(db_.Query("SELECT hex(pk), cid, val FROM crsql_changes ORDER BY pk"),
            (Rows{{"'010901'", "'b'", "5"}, {"'010901'", "'c'", "NULL"}, {"'01090B'", "'c'", "77"}}));
}

// Site ids another connection recorded are known here too: a merge from
// that site reuses its ordinal (instead of failing on the unique site id),
// and changes from it show its id (not an empty one).
TEST(MergeSitesTest, SitesAnotherConnectionAddedAreKnown) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  const std::string x = "11111111111111111111111111111111", y = "22222222222222222222222222222222";
  auto merge = [&](TestDb& db, int id, const std::string& site) {
    db.Exec("INSERT INTO crsql_changes VALUES ('t', crsql_pack_columns(" + std::to_string(id) +
            "), 'b', 'v', 1, " + std::to_string(id) + ", X'" + site + "')");
  };
  merge(a, 10, y);  // a has read the site ids (and added one)
  merge(b, 1, x);
  merge(a, 2, y);
  merge(a, 3, x);
  merge(a, 4, "33333333333333333333333333333333");  // new to both: after b's
  const Rows expected{{"1", "'" + x + "'"}, {"2", "'" + y + "'"}, {"3", "'" + x + "'"},
                      {"4", "'33333333333333333333333333333333'"}, {"10", "'" + y + "'"}};
  const std::string q = "SELECT crsql_unpack_columns.cell, hex(site_id) FROM crsql_changes, "
                        "crsql_unpack_columns(pk) ORDER BY 1";
  EXPECT_EQ(a.Query(q), expected);
  EXPECT_EQ(b.Query(q), expected);
  EXPECT_EQ(a.One("SELECT count(*) FROM crsql_changes WHERE site_id = X'" + x + "'"), "2");
}

// Tie-breaks compare with the row as it is now, even when the same row was
// read for an earlier tie in the transaction and then written, by a merge
// or locally. (The row's values are kept between changes to one row.)
TEST(MergeTieBreakTest, TiesSeeWritesMadeSinceTheLastTieOnTheRow) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'm', 'old');");
  const std::string peer = "X'0102030405060708090A0B0C0D0E0F10'";
  auto merge = [&](const char* cid, const char* val, int col_version) {
    db.Exec(std::string("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, "
                        "site_id) VALUES ('t', crsql_pack_columns(1), '") + cid + "', '" + val + "', " +
            std::to_string(col_version) + ", 5, " + peer + ")");
  };
  db.Exec("BEGIN");
  merge("b", "m", 1);    // ties and is equal: nothing written
  merge("b", "n", 1);    // ties, 'n' > 'm': wins, a merge write
  merge("b", "mm", 1);   // ties with 'n' (not the 'm' read first): loses
  EXPECT_EQ(db.One("SELECT b FROM t"), "'n'");
  db.Exec("UPDATE t SET c = 'z'");  // local: c is at col_version 2
  merge("c", "y", 2);    // ties with 'z' (not 'old'): loses
  db.Exec("COMMIT");
  EXPECT_EQ(db.Query("SELECT b, c FROM t"), (Rows{{"'n'", "'z'"}}));
}

// Between crsql_begin_alter and crsql_commit_alter the table has no
// recording triggers, so its writes drop nothing: ties then read the row
// every time.
TEST(MergeTieBreakTest, TiesDuringAnAlterSeeUnrecordedWrites) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'm');");
  auto merge = [&](const char* val) {
    db.Exec(std::string("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, "
                        "site_id) VALUES ('t', crsql_pack_columns(1), 'b', '") + val +
            "', 1, 5, X'0102030405060708090A0B0C0D0E0F10')");
  };
  db.Exec("BEGIN");
  merge("m");  // ties and is equal
  db.Exec("SELECT crsql_begin_alter('t'); UPDATE t SET b = 'q';");
  merge("p");  // ties with 'q': loses
  db.Exec("UPDATE t SET b = 'a';");
  merge("o");  // ties with 'a': wins
  merge("n");  // ties with 'o': loses
  db.Exec("SELECT crsql_commit_alter('t'); COMMIT");
  EXPECT_EQ(db.One("SELECT b FROM t"), "'o'");
}

// Consecutive changes to one row reuse its resolved table and pk, but not
// across a change of the CRR list: after crsql_as_table the same change is
// refused, as for any unknown table.
TEST(MergeResolveTest, AChangeAfterTheTableStoppedBeingACrrIsRefused) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');");
  const std::string change =
      "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id) "
      "VALUES ('t', crsql_pack_columns(1), 'b', 'x', 1, 1, X'0102030405060708090A0B0C0D0E0F10')";
  db.Exec(change);
  db.Exec("SELECT crsql_as_table('t')");
  EXPECT_THAT(db.Error(change), HasSubstr("could not find the schema information for table t"));
  EXPECT_EQ(db.One("SELECT b FROM t"), "'x'");
}

// A temp table with the CRR's name shadows main's for unqualified names: a
// merge must still write main's table.
TEST(MergeSchemaTest, ATempTableOfTheSameNameIsNotWritten) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, x); SELECT crsql_as_crr('t');"
          "CREATE TEMP TABLE t (id PRIMARY KEY NOT NULL, x);"
          "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl, seq)"
          " VALUES ('t', crsql_pack_columns(1), 'x', 'remote', 1, 1, "
          "X'11111111111111111111111111111111', 1, 0);");
  EXPECT_EQ(db.Query("SELECT id, x FROM main.t"), (Rows{{"1", "'remote'"}}));
  EXPECT_EQ(db.One("SELECT count(*) FROM temp.t"), "0");
  EXPECT_EQ(db.Query("SELECT cid, val FROM crsql_changes"), (Rows{{"'x'", "'remote'"}}));
}

// A merge undone by ROLLBACK TO leaves no trace on the transaction's own
// writes: those stored inside the savepoint (the merge first stores what
// the transaction captured) are stored again with the version and seqs
// they had, not the merged version, and later local writes take the
// version the transaction had too (crr-semantics §6.1, §12.3).
TEST(MergeRollbackToTest, AnUndoneMergeLeavesTheVersionAsItWas) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "BEGIN;"
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) "
          "INSERT INTO t SELECT 1000 + i, 'local' FROM n;"
          "SAVEPOINT b;"
          "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl, seq) "
          "VALUES ('t', X'010901', 'v', 'remote', 1, 50, X'33333333333333333333333333333333', 1, 0);"
          "ROLLBACK TO b; RELEASE b;"
          "INSERT INTO t VALUES (1, 'later');"
          "COMMIT;");
  EXPECT_EQ(db.Query("SELECT db_version, count(*), min(seq), max(seq) FROM crsql_changes GROUP BY 1"),
            (Rows{{"1", "101", "0", "100"}}));
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
}

// A 7-value merge takes a seq from the transaction's counter (§6.2). When
// it is the transaction's first engine call inside a savepoint, the capture
// table joins there, and SQLite then marks that savepoint for it: the mark
// must hold the seq counter as the savepoint found it, or ROLLBACK TO would
// leave the undone merge's seq taken (the next write got seq 1).
TEST(MergeRollbackToTest, AnUndoneFirstMergeLeavesNoSeqTaken) {
  for (const char* undo : {"ROLLBACK TO s; RELEASE s;", "ROLLBACK TO s; RELEASE s; SAVEPOINT u;"}) {
    SCOPED_TRACE(undo);
    TestDb db;
    db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
            "BEGIN; SAVEPOINT s;"
            "INSERT INTO crsql_changes VALUES ('t', crsql_pack_columns(9), 'v', 'remote', 1, 5, "
            "X'0102030405060708090a0b0c0d0e0f10');" +
            std::string(undo) + "INSERT INTO t VALUES (1, 'a'); COMMIT;");
    EXPECT_EQ(db.Query("SELECT pk, seq FROM crsql_changes"),
              (Rows{{"X'010901'", "0"}}));
  }
  // The same for a statement's own savepoint: its second row fails.
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t'); BEGIN;");
  EXPECT_THAT(db.Error("INSERT INTO crsql_changes SELECT * FROM (VALUES ('t', "
                       "crsql_pack_columns(9), 'v', 'remote', 1, 5, "
                       "X'0102030405060708090a0b0c0d0e0f10'), ('nope', crsql_pack_columns(9), "
                       "'v', 'remote', 1, 5, X'0102030405060708090a0b0c0d0e0f10'))"),
              HasSubstr("nope"));
  db.Exec("INSERT INTO t VALUES (1, 'a'); COMMIT;");
  EXPECT_EQ(db.Query("SELECT pk, seq FROM crsql_changes"), (Rows{{"X'010901'", "0"}}));
}

// A merge refused for an inconsistency it found (here: a user trigger of
// a merge into `a` deleted `b`'s row, unrecorded as §11.7 says, so b's
// clocks have no row) fails that statement only. It used to fail with
// SQLITE_CORRUPT, after which SQLite refuses every write of the
// transaction, and its COMMIT: what the transaction merged before was lost.
TEST(MergeErrorCodeTest, AnInconsistencyFailsOnlyItsStatement) {
  TestDb db;
  const std::string ins =
      "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl, "
      "seq) VALUES ";
  const std::string site = "X'33333333333333333333333333333333'";
  db.Exec("CREATE TABLE a (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('a');"
          "CREATE TABLE b (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('b');"
          "CREATE TRIGGER a_ins AFTER INSERT ON a BEGIN DELETE FROM b WHERE id = NEW.id; END;"
          "INSERT INTO b VALUES (1, 'x');" +
          ins + "('a', X'010901', 'v', 1, 1, 1, " + site + ", 1, 0);");
  db.Exec("BEGIN;" + ins + "('a', X'010902', 'v', 5, 1, 2, " + site + ", 1, 0);");
  Status s = db.Try(ins + "('b', X'010901', 'v', 'a', 1, 2, " + site + ", 1, 1)");
  EXPECT_THAT(s.message(), HasSubstr("could not find row to merge with for tbl b"));
  EXPECT_NE(s.sqlite_code() & 0xff, SQLITE_CORRUPT);
  db.Exec(ins + "('a', X'010903', 'v', 6, 1, 2, " + site + ", 1, 2);");  // still writable
  db.Exec("COMMIT");
  EXPECT_EQ(db.Query("SELECT id, v FROM a ORDER BY id"), (Rows{{"1", "1"}, {"2", "5"}, {"3", "6"}}));
}

// If the capture table's mark of a savepoint was lost (CaptureSavepoint
// out of memory: SQLite still rolls back to it), what the transaction had
// then is unknown: it must not go on with guessed versions, so its COMMIT
// fails (and SQLite rolls it back). (SQLite's call is made here directly.)
TEST(MergeRollbackToTest, ALostSavepointMarkRefusesTheCommit) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "BEGIN; INSERT INTO t VALUES (1, 'a'); SAVEPOINT s; INSERT INTO t VALUES (2, 'b');");
  ConnEngine* e = ConnEngine::Find(db.get());
  ASSERT_NE(e, nullptr);
  e->CaptureRollbackTo(1000);  // a level above every mark: its mark is missing
  Status s = db.Try("COMMIT");
  EXPECT_THAT(s.message(), HasSubstr("capture state was lost"));
  if (!sqlite3_get_autocommit(db.get())) db.Exec("ROLLBACK");
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "0");
  db.Exec("INSERT INTO t VALUES (3, 'c')");  // the next transaction is not affected
  EXPECT_EQ(db.Query("SELECT hex(pk), db_version FROM crsql_changes"), (Rows{{"'010903'", "1"}}));
}

// The seed sync guide's pull: the source's local changes after the cursor
// the destination tracks for it, applied in one transaction, with all nine
// columns or the guide's seven.
void SeedPull(TestDb& dst, TestDb& src, bool nine) {
  const std::string site = src.One("SELECT crsql_site_id()");
  const std::string cursor = dst.One(
      "SELECT coalesce(max(clock), 0) FROM crsql_tracked_peers WHERE event = 0 AND site_id = " + site);
  std::vector<ChangeRow> rows =
      ReadChanges(src.get(), "WHERE db_version > " + cursor + " AND site_id IS NULL");
  dst.Exec("BEGIN");
  EXPECT_OK(ApplyChanges(dst.get(), rows, nine));
  dst.Exec("COMMIT");
}

// B deletes and re-inserts a row while A edits it twice (docs/sql-api.md).
// With nine columns the stale edit is refused at B and both converge; the
// seven-column inference (§11.3: a column change is compared at B's causal
// length) lets it win there, and the guide's flow never repairs that.
TEST(SeedFlowTest, AConcurrentReinsertConvergesOnlyWithNineColumns) {
  for (bool nine : {true, false}) {
    SCOPED_TRACE(nine ? "nine columns" : "seven columns");
    TestDb a, b;
    for (TestDb* db : {&a, &b}) {
      db->Exec("CREATE TABLE deck (\"id\" primary key, \"name\"); SELECT crsql_as_crr('deck');");
    }
    a.Exec("INSERT INTO deck VALUES ('d1', 'x')");
    SeedPull(b, a, nine);
    b.Exec("DELETE FROM deck WHERE id = 'd1'; INSERT INTO deck VALUES ('d1', 'y')");
    a.Exec("UPDATE deck SET name = 'p' WHERE id = 'd1'");
    SeedPull(b, a, nine);
    a.Exec("UPDATE deck SET name = 'q' WHERE id = 'd1'");
    for (int round = 0; round < 3; ++round) {
      SeedPull(a, b, nine);
      SeedPull(b, a, nine);
    }
    if (nine) {
      EXPECT_EQ(a.Query("SELECT * FROM deck"), b.Query("SELECT * FROM deck"));
    } else {
      EXPECT_EQ(a.Query("SELECT * FROM deck"), (Rows{{"'d1'", "'q'"}}));
      EXPECT_EQ(b.Query("SELECT * FROM deck"), (Rows{{"'d1'", "'p'"}}));
    }
  }
}

}  // namespace
}  // namespace crsync
