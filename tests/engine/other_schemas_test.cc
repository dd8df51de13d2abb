// crsync records the CRRs of a connection's main database only. These tests
// pin what happens around the other schemas a connection sees: an attached
// database that has CRRs of its own, and TEMP objects named like crsync's.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

// Writes through an attached database's CRR would fire its recording
// triggers on this connection, naming a CRR id of *its* catalog. Before
// the triggers carried their database's tag, that id was looked up among
// main's CRRs: the write was recorded as main's (clocks for rows main does
// not hold, or a tombstone for a live row of another table).
TEST(AttachedCrr, WritesThroughAnAttachmentAreRefusedAndChangeNothing) {
  TempPath main_path, aux_path;
  {
    TestDb aux(aux_path.str());
    aux.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
             "INSERT INTO t VALUES (1, 'aux-one')");
  }
  TestDb db(main_path.str());
  // main's CRR 1 is another table: the id the aux triggers pass names it.
  db.Exec("CREATE TABLE foo(k INTEGER PRIMARY KEY NOT NULL, name); SELECT crsql_as_crr('foo');"
          "INSERT INTO foo VALUES (1, 'alice')");
  db.Exec("ATTACH '" + aux_path.str() + "' AS aux");
  const Rows before = db.Query("SELECT \"table\", pk, cid, val, col_version, cl "
                               "FROM crsql_changes");
  for (const char* write : {"DELETE FROM aux.t WHERE id = 1", "UPDATE aux.t SET v = 'x'",
                            "INSERT INTO aux.t VALUES (3, 'aux-three')"}) {
    SCOPED_TRACE(write);
    EXPECT_THAT(db.Error(write), HasSubstr("a CRR of another database"));
  }
  EXPECT_EQ(db.Query("SELECT \"table\", pk, cid, val, col_version, cl FROM crsql_changes"),
            before);
  EXPECT_EQ(db.Query("SELECT * FROM aux.t"), (Rows{{"1", "'aux-one'"}}));
  EXPECT_EQ(db.Query("SELECT * FROM foo"), (Rows{{"1", "'alice'"}}));
  // main's own CRR still records.
  db.Exec("UPDATE foo SET name = 'bob'");
  EXPECT_EQ(db.One("SELECT val FROM crsql_changes WHERE cid = 'name'"), "'bob'");
}

TEST(AttachedCrr, ATableOfTheSameNameInMainKeepsRecording) {
  TempPath main_path, aux_path;
  {
    TestDb aux(aux_path.str());
    aux.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  }
  TestDb db(main_path.str());
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  db.Exec("ATTACH '" + aux_path.str() + "' AS aux");
  EXPECT_THAT(db.Error("INSERT INTO aux.t VALUES (3, 'x')"),
              HasSubstr("a CRR of another database"));
  db.Exec("INSERT INTO main.t VALUES (1, 'main')");
  EXPECT_EQ(db.Query("SELECT pk, val FROM crsql_changes"), (Rows{{"X'010901'", "'main'"}}));
}

// The engine's statements on a CRR's metadata name main's tables: a TEMP
// table of such a name took the clocks, which vanished with the connection.
TEST(TempShadow, TempTablesNamedLikeTheMetadataAreIgnored) {
  const std::pair<const char*, const char*> kShadows[] = {
      {"t__crsync_rows", "(pk BLOB PRIMARY KEY NOT NULL, meta BLOB NOT NULL) WITHOUT ROWID"},
      {"t__crsync_feed", "(dbv INTEGER NOT NULL, lo INTEGER NOT NULL, pk BLOB NOT NULL, "
                         "PRIMARY KEY (dbv, lo, pk)) WITHOUT ROWID"}};
  for (const auto& [name, columns] : kShadows) {
    SCOPED_TRACE(name);
    TempPath path;
    {
      TestDb db(path.str());
      db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
              "INSERT INTO t VALUES (1, 'one')");
      db.Exec(std::string("CREATE TEMP TABLE ") + name + columns);
      db.Exec("INSERT INTO t VALUES (2, 'two')");
      db.Exec("INSERT INTO crsql_changes VALUES ('t', X'010903', 'v', 'three', 1, 7, "
              "X'33333333333333333333333333333333')");
      for (int i = 10; i < 30; ++i)  // past the direct path: the capture log's bulk path
        db.Exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'n')");
      db.Exec("BEGIN; UPDATE t SET v = 'u' WHERE id >= 10; COMMIT");
      EXPECT_EQ(db.Int(std::string("SELECT count(*) FROM temp.") + name), 0);
    }
    TestDb db(path.str());
    EXPECT_EQ(db.Query("SELECT pk, val FROM crsql_changes WHERE pk IN "
                       "(X'010901', X'010902', X'010903', X'01090A')"),
              (Rows{{"X'010901'", "'one'"},
                    {"X'010902'", "'two'"},
                    {"X'010903'", "'three'"},
                    {"X'01090A'", "'u'"}}));
    EXPECT_EQ(db.Int("SELECT count(*) FROM crsql_changes"), 23);
  }
}

// Names crsync uses are reserved: such a table cannot become a CRR, and a
// table hiding crsync's eponymous capture table is named by the error of
// every CRR write it breaks (its own rows are not written to).
TEST(ReservedNames, AreRefusedOrNamedInTheError) {
  TestDb db;
  for (const char* name : {"crsync_crrs", "CRSQL_x", "Crsync_mine", "t__CRSYNC_x"}) {
    SCOPED_TRACE(name);
    db.Try(std::string("CREATE TABLE \"") + name + "\"(id INTEGER PRIMARY KEY NOT NULL, v)")
        .IgnoreError();
    EXPECT_THAT(db.Error(std::string("SELECT crsql_as_crr('") + name + "')"),
                HasSubstr("are the extension's own"));
  }
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  for (const char* shape : {"(x)", "(x, y)"}) {
    SCOPED_TRACE(shape);
    db.Exec(std::string("CREATE TABLE crsync_capture") + shape);
    EXPECT_THAT(db.Error("INSERT INTO t VALUES (1, 'one')"),
                HasSubstr("a table named crsync_capture (in main) hides crsync's internal table"));
    EXPECT_EQ(db.Int("SELECT count(*) FROM crsync_capture"), 0);
    EXPECT_EQ(db.Int("SELECT count(*) FROM t"), 0);
    db.Exec("DROP TABLE crsync_capture");
  }
  // The table-valued functions the bulk paths use (which used to fail only
  // at the COMMIT of a transaction of 8 writes or more), and crsql_changes.
  // Any case: SQLite's names are case-insensitive.
  const std::pair<const char*, const char*> kHiders[] = {
      {"CREATE TABLE Crsync_Rowbuf(x)", "DROP TABLE Crsync_Rowbuf"},
      {"CREATE VIEW crsync_valbuf AS SELECT 1", "DROP VIEW crsync_valbuf"},
      {"CREATE TEMP TABLE crsync_meta_runs(x)", "DROP TABLE crsync_meta_runs"},
      {"CREATE TABLE CRSQL_changes(x)", "DROP TABLE CRSQL_changes"}};
  for (const auto& [hide, unhide] : kHiders) {
    SCOPED_TRACE(hide);
    db.Exec(hide);
    EXPECT_THAT(db.Error("INSERT INTO t VALUES (2, 'two')"), HasSubstr("hides crsync's internal table"));
    db.Exec("BEGIN");
    EXPECT_THAT(db.Error("INSERT INTO t VALUES (2, 'two')"), HasSubstr("hides crsync's internal table"));
    db.Exec("ROLLBACK");
    db.Exec(unhide);
    db.Exec("INSERT INTO t VALUES (2, 'two'); DELETE FROM t WHERE id = 2");
  }
  db.Exec("INSERT INTO t VALUES (1, 'one')");
  EXPECT_EQ(db.Query("SELECT pk, val FROM crsql_changes WHERE cid = 'v'"), (Rows{{"X'010901'", "'one'"}}));
}

// The tag is the database's own random number, kept in crsql_master, not
// derived from its site id: a copy given a new site id (cr-sqlite's advice
// for making a copy its own replica) and a backup restored into an open
// connection keep writing. (A first version derived it from the site id and
// refused their every write.)
TEST(TriggerTag, SurvivesANewSiteIdAndARestoreIntoAnOpenConnection) {
  TempPath path, copy_path;
  TestDb db(path.str());
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'one')");
  db.Exec("VACUUM INTO '" + copy_path.str() + "'");
  {
    TestDb copy(copy_path.str());
    copy.Exec("UPDATE crsql_site_id SET site_id = X'22222222222222222222222222222222' "
              "WHERE ordinal = 0");
    copy.Reopen();
    copy.Exec("INSERT INTO t VALUES (2, 'two')");
    EXPECT_EQ(copy.Query("SELECT val, site_id FROM crsql_changes WHERE pk = X'010902'"),
              (Rows{{"'two'", "X'22222222222222222222222222222222'"}}));
  }
  // Restore that copy (another site id, the same tag) under `db`, and a
  // database of another tag too: the cached tag is read again.
  TempPath other_path;
  {
    TestDb other(other_path.str());
    other.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  }
  for (const std::string* from : {&copy_path.str(), &other_path.str()}) {
    SCOPED_TRACE(*from);
    DbPtr src;
    ASSERT_OK(OpenDb(*from, SQLITE_OPEN_READWRITE, nullptr, &src));
    sqlite3_backup* b = sqlite3_backup_init(db.get(), "main", src.get(), "main");
    ASSERT_NE(b, nullptr) << sqlite3_errmsg(db.get());
    EXPECT_EQ(sqlite3_backup_step(b, -1), SQLITE_DONE);
    EXPECT_EQ(sqlite3_backup_finish(b), SQLITE_OK);
    db.Exec("INSERT INTO t VALUES (3, 'three')");
    EXPECT_EQ(db.One("SELECT val FROM crsql_changes WHERE pk = X'010903'"), "'three'");
  }
  // A CRR made right after such a restore takes the file's tag, not the
  // one this connection read at open: other connections record it too.
  db.Exec("CREATE TABLE u(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('u')");
  TestDb other(path.str());
  other.Exec("INSERT INTO u VALUES (1, 'other')");
  db.Exec("INSERT INTO u VALUES (2, 'same')");
  EXPECT_EQ(other.Int("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'u'"), 2);
}

// A database made before the tag existed has triggers passing bare ids.
// It gets a tag when a new build first opens it, and its bare ids stay
// main's; a database made with a tag takes a bare id for another
// database's.
TEST(TriggerTag, BareIdsOfAnOlderDatabaseStayItsOwn) {
  TempPath old_path, new_path;
  {
    TestDb db(old_path.str());
    db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
    // What an older build left: triggers passing the bare id, and no tag.
    const Rows triggers = db.Query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 't'");
    ASSERT_EQ(triggers.size(), 3u);
    const std::string token = std::to_string(
        db.Int("SELECT value FROM crsql_master WHERE key = 'crsync_trigger_tag'") * (int64_t{1} << 32) + 1);
    for (const auto& row : triggers) {
      std::string sql = db.Text("SELECT sql FROM sqlite_master WHERE name = " + row[0]);
      const size_t at = sql.find("(" + token);
      ASSERT_NE(at, std::string::npos) << sql;
      sql.replace(at + 1, token.size(), "1");
      db.Exec("DROP TRIGGER " + row[0] + "; " + sql);
    }
    db.Exec("DELETE FROM crsql_master WHERE key IN ('crsync_trigger_tag', 'crsync_bare_trigger_ids')");
  }
  TestDb old_db(old_path.str());
  EXPECT_EQ(old_db.One("SELECT value FROM crsql_master WHERE key = 'crsync_bare_trigger_ids'"), "1");
  old_db.Exec("INSERT INTO t VALUES (1, 'old')");
  EXPECT_EQ(old_db.One("SELECT val FROM crsql_changes WHERE pk = X'010901'"), "'old'");
  TestDb db(new_path.str());
  EXPECT_EQ(db.One("SELECT value FROM crsql_master WHERE key = 'crsync_bare_trigger_ids'"), "0");
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  db.Exec("ATTACH '" + old_path.str() + "' AS old");
  EXPECT_THAT(db.Error("INSERT INTO old.t VALUES (2, 'x')"), HasSubstr("a CRR of another database"));
  EXPECT_EQ(db.Int("SELECT count(*) FROM crsql_changes"), 0);
}

}  // namespace
}  // namespace crsync
