// Incremental blob I/O on a CRR: sqlite3_blob_write fires no trigger, so a
// value written through it would change unrecorded and peers would keep the
// old one for good. Opening a CRR's column for writing is refused (the
// no-blob-write index, engine/recorder.h); reading still works.
#include <string>

#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

// Opens row `rowid` of t.data for writing and writes "DEADBEEF"; returns
// SQLite's message when that is refused, "" when it was written.
std::string WriteThroughBlob(TestDb& db, const char* table, sqlite3_int64 rowid) {
  sqlite3_blob* blob = nullptr;
  int rc = sqlite3_blob_open(db.get(), "main", table, "data", rowid, 1, &blob);
  if (rc != SQLITE_OK) {
    std::string message = sqlite3_errmsg(db.get());
    sqlite3_blob_close(blob);
    return message;
  }
  rc = sqlite3_blob_write(blob, "\xde\xad\xbe\xef", 4, 0);
  sqlite3_blob_close(blob);
  return rc == SQLITE_OK ? "" : "write failed: " + std::to_string(rc);
}

TEST(BlobWriteTest, ACrrColumnCannotBeOpenedForWritingAndNothingChanges) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, data BLOB, v);"
          "CREATE TABLE c (a NOT NULL, b NOT NULL, data BLOB, PRIMARY KEY (a, b));"
          "SELECT crsql_as_crr('t'); SELECT crsql_as_crr('c');"
          "INSERT INTO t VALUES (1, x'00000000', 1);"
          "INSERT INTO c VALUES ('k', 2, x'00000000');");
  const Rows changes = db.Query("SELECT * FROM crsql_changes");
  EXPECT_THAT(WriteThroughBlob(db, "t", 1), HasSubstr("cannot open indexed column for writing"));
  EXPECT_THAT(WriteThroughBlob(db, "c", 1), HasSubstr("cannot open indexed column for writing"));
  EXPECT_EQ(db.One("SELECT hex(data) FROM t"), "'00000000'");
  EXPECT_EQ(db.One("SELECT hex(data) FROM c"), "'00000000'");
  EXPECT_EQ(db.Query("SELECT * FROM crsql_changes"), changes);
  // Reading through blob I/O is untouched.
  sqlite3_blob* blob = nullptr;
  ASSERT_EQ(sqlite3_blob_open(db.get(), "main", "t", "data", 1, 0, &blob), SQLITE_OK);
  char bytes[4] = {1, 1, 1, 1};
  EXPECT_EQ(sqlite3_blob_read(blob, bytes, 4, 0), SQLITE_OK);
  sqlite3_blob_close(blob);
  EXPECT_EQ(std::string(bytes, 4), std::string(4, '\0'));
  // Writes are recorded as before.
  db.Exec("UPDATE t SET data = x'01'");
  EXPECT_EQ(db.One("SELECT hex(val) FROM crsql_changes WHERE cid = 'data' AND \"table\" = 't'"),
            "'01'");
}

TEST(BlobWriteTest, ThePlainTableOfAsTableCanBeWrittenAgain) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, data BLOB);"
          "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, x'00000000');"
          "SELECT crsql_as_table('t');");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_master WHERE name = 't__crsync_noblob'"), "0");
  EXPECT_EQ(WriteThroughBlob(db, "t", 1), "");
  EXPECT_EQ(db.One("SELECT hex(data) FROM t"), "'DEADBEEF'");
}

TEST(BlobWriteTest, AnAlterThatRebuildsTheTableKeepsTheRefusal) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, data BLOB, old);"
          "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, x'00000000', 1);"
          "SELECT crsql_begin_alter('t');"
          "CREATE TABLE t_new (id INTEGER PRIMARY KEY NOT NULL, data BLOB);"
          "INSERT INTO t_new SELECT id, data FROM t; DROP TABLE t;"
          "ALTER TABLE t_new RENAME TO t;");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_master WHERE name = 't__crsync_noblob'"), "0")
      << "the rebuild took it away";
  db.Exec("SELECT crsql_commit_alter('t')");
  EXPECT_THAT(WriteThroughBlob(db, "t", 1), HasSubstr("cannot open indexed column for writing"));
}

// A rebuild that renames the old table aside takes the index along under
// its name; the commit makes it again on the new table, and crsql_as_table
// drops it wherever it stands.
TEST(BlobWriteTest, ARebuildThatRenamesTheOldTableAsideKeepsTheRefusal) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, data BLOB, old);"
          "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, x'00000000', 1);"
          "SELECT crsql_begin_alter('t');"
          "ALTER TABLE t RENAME TO t_old;"
          "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, data BLOB);"
          "INSERT INTO t SELECT id, data FROM t_old;"
          "SELECT crsql_commit_alter('t');");
  EXPECT_EQ(db.One("SELECT tbl_name FROM sqlite_master WHERE name = 't__crsync_noblob'"), "'t'");
  EXPECT_THAT(WriteThroughBlob(db, "t", 1), HasSubstr("cannot open indexed column for writing"));
  EXPECT_EQ(WriteThroughBlob(db, "t_old", 1), "") << "the plain table kept the refusal";
  db.Exec("DROP TABLE t_old");
  EXPECT_THAT(WriteThroughBlob(db, "t", 1), HasSubstr("cannot open indexed column for writing"));
  EXPECT_EQ(db.One("SELECT hex(data) FROM t"), "'00000000'");
}

// A CRR made by a build without the index (here: the index dropped by
// hand) gets it when crsql_as_crr runs again.
TEST(BlobWriteTest, AsCrrAgainGivesAnOlderCrrTheIndex) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, data BLOB);"
          "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, x'00000000');"
          "DROP INDEX t__crsync_noblob;");
  EXPECT_EQ(WriteThroughBlob(db, "t", 1), "") << "the index was not what refused it";
  EXPECT_EQ(db.One("SELECT crsql_as_crr('t')"), "'OK'");
  db.Exec("UPDATE t SET data = x'00'");
  EXPECT_THAT(WriteThroughBlob(db, "t", 1), HasSubstr("cannot open indexed column for writing"));
  EXPECT_EQ(db.One("SELECT hex(data) FROM t"), "'00'");
}

// A user's object of the index's name is neither adopted nor dropped.
TEST(BlobWriteTest, AUsersObjectOfTheIndexNameIsRefusedByName) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); CREATE TABLE u (x);"
          "CREATE INDEX t__crsync_noblob ON u(x);");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('t')"),
              HasSubstr("an index named t__crsync_noblob already exists"));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsync_crrs"), "0");
}

}  // namespace
}  // namespace crsync
