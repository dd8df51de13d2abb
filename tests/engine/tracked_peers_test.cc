// crr-semantics §13 and the seed sync guide, verbatim in spirit.
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

TEST(TrackedPeersTest, SpecExample) {
  TestDb db;
  db.Exec("CREATE TABLE deck (id PRIMARY KEY, name); SELECT crsql_as_crr('deck');"
          "CREATE TABLE slide (id PRIMARY KEY, \"order\"); SELECT crsql_as_crr('slide');");
  std::string x = "X'0123456789ABCDEF0123456789ABCDEF'";
  db.Exec("BEGIN;"
          "INSERT INTO crsql_changes VALUES ('deck', X'010B0161', 'name', 'First', 1, 3, " + x + ");"
          "INSERT INTO crsql_changes (\"table\",pk,cid,val,col_version,db_version,site_id,cl,seq) "
          "VALUES ('slide', X'010B0162', 'order', 0, 1, 3, " + x + ", 1, 1);"
          "INSERT INTO crsql_changes (\"table\",pk,cid,val,col_version,db_version,site_id,cl,seq) "
          "VALUES ('slide', X'010B0163', 'order', 1, 1, 4, " + x + ", 1, 0);");
  db.Exec("COMMIT");
  EXPECT_EQ(db.Query("SELECT CAST(quote(site_id) AS TEXT), version, clock, seq, tag, event FROM crsql_tracked_peers"),
            (Rows{{"'" + x + "'", "4", "4", "0", "0", "0"}}));
  // Older versions never move it back.
  db.Exec("INSERT INTO crsql_changes VALUES ('deck', X'010B0164', 'name', 'old', 1, 2, " + x + ")");
  EXPECT_EQ(db.One("SELECT version FROM crsql_tracked_peers"), "4");
  // A higher seq at the same version moves seq only.
  db.Exec("INSERT INTO crsql_changes (\"table\",pk,cid,val,col_version,db_version,site_id,cl,seq) "
          "VALUES ('slide', X'010B0165', 'order', 1, 1, 4, " + x + ", 1, 7)");
  EXPECT_EQ(db.Query("SELECT version, seq FROM crsql_tracked_peers"), (Rows{{"4", "7"}}));
  // tag 7 is a separate cursor; tag -1 tracks nothing.
  db.Exec("INSERT INTO crsql_changes (\"table\",pk,cid,val,col_version,db_version,site_id,tag) "
          "VALUES ('deck', X'010B0166', 'name', 'n', 1, 9, " + x + ", 7)");
  db.Exec("INSERT INTO crsql_changes (\"table\",pk,cid,val,col_version,db_version,site_id,tag) "
          "VALUES ('deck', X'010B0167', 'name', 'n', 1, 11, " + x + ", -1)");
  EXPECT_EQ(db.Query("SELECT tag, version FROM crsql_tracked_peers ORDER BY tag"),
            (Rows{{"0", "4"}, {"7", "9"}}));
  // Local and own-site changes are not tracked.
  db.Exec("INSERT INTO crsql_changes VALUES ('deck', X'010B0168', 'name', 'n', 1, 20, NULL)");
  db.Exec("INSERT INTO crsql_changes VALUES ('deck', X'010B0169', 'name', 'n', 1, 21, crsql_site_id())");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_tracked_peers"), "2");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE site_id IS NULL"), "2");
}

TEST(TrackedPeersTest, RollbackAndFailedInsertsLeaveNoTrace) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY, v); SELECT crsql_as_crr('t');");
  std::string x = "X'0123456789ABCDEF0123456789ABCDEF'";
  db.Exec("BEGIN; INSERT INTO crsql_changes VALUES ('t', X'010901', 'v', 1, 1, 5, " + x + "); ROLLBACK;");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_tracked_peers"), "0");
  db.Exec("BEGIN; SAVEPOINT a; INSERT INTO crsql_changes VALUES ('t', X'010901', 'v', 1, 1, 5, " + x +
          "); ROLLBACK TO a; INSERT INTO crsql_changes VALUES ('t', X'010902', 'v', 1, 1, 3, " + x +
          "); COMMIT;");
  EXPECT_EQ(db.One("SELECT version FROM crsql_tracked_peers"), "3");
  EXPECT_FALSE(db.Try("INSERT INTO crsql_changes VALUES ('t', X'010903', 'nope', 1, 1, 9, " + x + ")").ok());
  EXPECT_EQ(db.One("SELECT version FROM crsql_tracked_peers"), "3");
}

TEST(TrackedPeersTest, ClockIsAReadOnlyAlias) {
  TestDb db;
  db.Exec("INSERT INTO crsql_tracked_peers (site_id, version, tag, event) VALUES (X'01', 5, 0, 1)");
  EXPECT_EQ(db.One("SELECT clock FROM crsql_tracked_peers"), "5");
  EXPECT_THAT(db.Error("UPDATE crsql_tracked_peers SET clock = 1"), HasSubstr("generated column"));
  EXPECT_EQ(db.Query("SELECT hex(site_id), version, clock FROM crsql_tracked_peers"),
            (Rows{{"'01'", "5", "5"}}));
}

// A database made by cr-sqlite 0.16 has crsql_tracked_peers without the
// `clock` alias (and none of crsync's own tables): the first connection
// that loads the engine adds it (§2.1, §13.1), as the seed guide reads it.
TEST(TrackedPeersTest, AV016TrackedPeersTableGetsTheClockAliasOnFirstLoad) {
  TempPath path;
  {
    DbPtr plain;
    ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &plain));
    ASSERT_OK(Exec(plain.get(),
                   "CREATE TABLE crsql_tracked_peers (site_id BLOB NOT NULL, version INTEGER NOT "
                   "NULL, seq INTEGER DEFAULT 0, tag INTEGER, event INTEGER, PRIMARY KEY (site_id, "
                   "tag, event)) STRICT;"
                   "INSERT INTO crsql_tracked_peers (site_id, version, tag, event) VALUES "
                   "(X'11', 3, 0, 0);"));
  }
  TestDb db(path.str());
  EXPECT_EQ(db.Query("SELECT hex(site_id), version, clock FROM crsql_tracked_peers"),
            (Rows{{"'11'", "3", "3"}}));
  EXPECT_EQ(db.One("SELECT length(crsql_site_id())"), "16");
}

// The seed sync guide's flow between two databases.
TEST(SeedGuideTest, SyncGuideFlow) {
  const char* schema =
      "CREATE TABLE IF NOT EXISTS \"deck\" (\"id\" primary key, \"name\");"
      "CREATE TABLE IF NOT EXISTS \"slide\" (\"id\" primary key, \"deck_id\", \"order\");"
      "CREATE TABLE IF NOT EXISTS \"component\" (\"id\" primary key, \"slide_id\", \"type\", "
      "\"content\", \"x\", \"y\", \"w\", \"h\", \"rotation\");"
      "CREATE TABLE IF NOT EXISTS \"selected_slide\" (\"deck_id\", \"slide_id\", primary key "
      "(\"deck_id\", \"slide_id\"));"
      "CREATE TABLE IF NOT EXISTS \"selected_component\" (\"slide_id\", \"component_id\", primary "
      "key (\"slide_id\", \"component_id\"));"
      "SELECT crsql_as_crr('deck'); SELECT crsql_as_crr('slide'); SELECT crsql_as_crr('component');";
  TestDb db1, db2;
  db1.Exec(schema);
  db1.Exec(
      "INSERT INTO \"deck\" (\"id\", \"name\") VALUES ('d1', 'First Presentation');"
      "INSERT INTO \"slide\" (\"id\", \"deck_id\", \"order\") VALUES ('s1', 'd1', 0);"
      "INSERT INTO \"slide\" (\"id\", deck_id, \"order\") VALUES ('s2', 'd1', 1);"
      "INSERT INTO component (\"id\", \"slide_id\", \"type\", \"content\", x, y, w, h, \"rotation\") "
      "VALUES ('c1', 's1', 'text', 'Some Title', 0, 0, 600, 100, 0);"
      "INSERT INTO component (\"id\", \"slide_id\", \"type\", \"content\", x, y, w, h, \"rotation\") "
      "VALUES ('c2', 's1', 'text', 'Some subtext', 500, 150, 400, 100, 0);");
  db2.Exec(schema);
  EXPECT_EQ(db2.One("SELECT count(*) FROM deck, slide, component"), "0");
  // Pull db1's own changes and apply them with the 7-value insert, in one transaction.
  Sync(db1, db2, "WHERE db_version > 0 AND site_id IS NULL", /*nine=*/false);
  for (const char* t : {"deck", "slide", "component"}) {
    std::string q = std::string("SELECT * FROM ") + t + " ORDER BY id";
    EXPECT_EQ(db2.Query(q), db1.Query(q)) << t;
  }
  EXPECT_EQ(db1.One("SELECT count(*) FROM crsql_tracked_peers WHERE event = 0"), "0");
  std::string db1_site = db1.Text("SELECT quote(crsql_siteid())");
  std::string cursor = db2.One("SELECT clock FROM crsql_tracked_peers WHERE event = 0 AND site_id = " + db1_site);
  EXPECT_EQ(cursor, db1.One("SELECT crsql_db_version()"));
  EXPECT_EQ(db1.One("SELECT count(*) FROM crsql_changes WHERE db_version > " + cursor +
                    " AND site_id IS NULL"),
            "0");
  db1.Exec("UPDATE deck SET name = 'new title' WHERE id = 'd1'");
  EXPECT_EQ(db1.Query("SELECT \"table\", cid, val FROM crsql_changes WHERE db_version > " + cursor +
                      " AND site_id IS NULL"),
            (Rows{{"'deck'", "'name'", "'new title'"}}));
  Sync(db1, db2, "WHERE db_version > " + cursor + " AND site_id IS NULL", false);
  EXPECT_EQ(db2.One("SELECT name FROM deck"), "'new title'");
}

}  // namespace
}  // namespace crsync
