// crr-semantics §14: crsql_begin_alter / crsql_commit_alter.
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

constexpr char kChanges[] =
    "SELECT hex(pk), cid, val, db_version, col_version FROM crsql_changes ORDER BY pk, cid";

class AlterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, name, complete, list);"
             "SELECT crsql_as_crr('todo');"
             "INSERT INTO todo VALUES (1, 'cook', 0, 'home');");
  }
  TestDb db_;
};

TEST_F(AlterTest, DropColumnRemovesItsRecords) {
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo DROP COLUMN list;"
           "SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db_.Query(kChanges), (Rows{{"'010901'", "'complete'", "0", "1", "1"},
                                       {"'010901'", "'name'", "'cook'", "1", "1"}}));
  db_.Exec("UPDATE todo SET name = 'bake'");
  EXPECT_EQ(db_.One("SELECT col_version FROM crsql_changes WHERE cid = 'name'"), "2");
}

// The alter builds the remapped metadata in a scratch table named after the
// CRR; a user's table of that name is left alone.
TEST_F(AlterTest, AUserTableNamedLikeTheScratchTableIsLeftAlone) {
  db_.Exec("CREATE TABLE todo__crsync_rows_remap (mine); "
           "INSERT INTO todo__crsync_rows_remap VALUES ('keep');");
  Rows before = db_.Query(kChanges);
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN assignee;"
           "SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db_.Query(kChanges), before);
  EXPECT_EQ(db_.Query("SELECT * FROM todo__crsync_rows_remap"), (Rows{{"'keep'"}}));
  db_.Exec("UPDATE todo SET assignee = 'me'");
  EXPECT_EQ(db_.One("SELECT val FROM crsql_changes WHERE cid = 'assignee'"), "'me'");
}

// While an alter is open the recording triggers are away and their names
// are free: a user's trigger on another table that takes one is dropped
// neither by crsql_commit_alter nor by crsql_as_table. The commit refuses,
// naming it (the alter stays open when its transaction has ended), and
// succeeds once it is gone.
TEST_F(AlterTest, AUserTriggerNamedLikeARecordingTriggerIsLeftAlone) {
  const std::string kWhere = "SELECT tbl_name FROM sqlite_master WHERE name = 'todo__crsync_itrig'";
  db_.Exec("CREATE TABLE other (x); CREATE TABLE log (msg);"
           "SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due;"
           "CREATE TRIGGER todo__crsync_itrig AFTER INSERT ON other BEGIN "
           "INSERT INTO log VALUES ('mine'); END; COMMIT;");
  EXPECT_THAT(db_.Error("SELECT crsql_commit_alter('todo')"),
              HasSubstr("a trigger named todo__crsync_itrig on other already exists"));
  EXPECT_EQ(db_.One(kWhere), "'other'");
  db_.Exec("INSERT INTO other VALUES (1)");
  EXPECT_EQ(db_.One("SELECT count(*) FROM log"), "1");
  db_.Exec("DROP TRIGGER todo__crsync_itrig; SELECT crsql_commit_alter('todo');"
           "INSERT INTO todo VALUES (2, 'walk', 0, 'park', 'today')");
  EXPECT_EQ(db_.One(kWhere), "'todo'");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE pk = crsql_pack_columns(2)"), "4");

  db_.Exec("SELECT crsql_begin_alter('todo');"
           "CREATE TRIGGER todo__crsync_itrig AFTER INSERT ON other BEGIN "
           "INSERT INTO log VALUES ('mine'); END; COMMIT; SELECT crsql_as_table('todo');");
  EXPECT_EQ(db_.One(kWhere), "'other'");
  db_.Exec("INSERT INTO other VALUES (2)");
  EXPECT_EQ(db_.One("SELECT count(*) FROM log"), "2");
}

// A key collation that is not BINARY is refused by crsql_as_crr (E9), and
// so is one an alter brings in: the commit fails and undoes the alter.
TEST(AlterCollationTest, AnAlterCannotGiveTheKeyACollation) {
  TestDb db;
  db.Exec("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES ('a', 1);"
          "SELECT crsql_begin_alter('t');"
          "CREATE TABLE t2 (id TEXT PRIMARY KEY COLLATE NOCASE NOT NULL, v);"
          "INSERT INTO t2 SELECT * FROM t; DROP TABLE t; ALTER TABLE t2 RENAME TO t;");
  EXPECT_THAT(db.Error("SELECT crsql_commit_alter('t')"),
              HasSubstr("has primary key column id with collation NOCASE"));
  EXPECT_EQ(db.One("SELECT instr(sql, 'NOCASE') FROM sqlite_master WHERE name = 't'"), "0");
  db.Exec("INSERT INTO t VALUES ('A', 2)");  // still recorded, as its own row
  EXPECT_EQ(db.Query("SELECT hex(pk), val FROM crsql_changes ORDER BY pk"),
            (Rows{{"'010B0141'", "2"}, {"'010B0161'", "1"}}));
}

// The same key columns in another order are not a new key (§14.3: the
// *set* is compared): rows keep their clocks and tombstones, under pks
// packed in the new order, and a peer's change in that order merges.
TEST(AlterKeyOrderTest, ReorderingTheKeyColumnsKeepsClocksAndTombstones) {
  TestDb db;
  db.Exec("CREATE TABLE t (a NOT NULL, b NOT NULL, v, PRIMARY KEY (a, b)); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 2, 'x'), (3, 4, 'y');"
          "UPDATE t SET v = 'x2' WHERE a = 1; DELETE FROM t WHERE a = 3;");
  const char* kAll = "SELECT hex(pk), cid, val, col_version, db_version, cl FROM crsql_changes ORDER BY pk, cid";
  EXPECT_EQ(db.Query(kAll), (Rows{{"'0209010902'", "'v'", "'x2'", "2", "2", "1"},
                                  {"'0209030904'", "'-1'", "NULL", "2", "3", "2"}}));
  db.Exec("SELECT crsql_begin_alter('t');"
          "CREATE TABLE t2 (a NOT NULL, b NOT NULL, v, PRIMARY KEY (b, a));"
          "INSERT INTO t2 SELECT * FROM t; DROP TABLE t; ALTER TABLE t2 RENAME TO t;"
          "SELECT crsql_commit_alter('t');");
  EXPECT_EQ(db.Query(kAll), (Rows{{"'0209020901'", "'v'", "'x2'", "2", "2", "1"},
                                  {"'0209040903'", "'-1'", "NULL", "2", "3", "2"}}));
  db.Exec("INSERT INTO crsql_changes VALUES ('t', X'0209020901', 'v', 'x3', 3, 9, "
          "X'0102030405060708090a0b0c0d0e0f10')");
  EXPECT_EQ(db.Query("SELECT * FROM t"), (Rows{{"1", "2", "'x3'"}}));
  db.Exec("INSERT INTO t VALUES (5, 6, 'z')");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE pk = crsql_pack_columns(6, 5)"), "1");
}

TEST_F(AlterTest, AddColumnsRecordsNothingUntilWritten) {
  Rows before = db_.Query(kChanges);
  EXPECT_EQ(db_.One("SELECT crsql_begin_alter('todo')"), "'OK'");
  db_.Exec("ALTER TABLE todo ADD COLUMN assignee; ALTER TABLE todo ADD COLUMN due_date DEFAULT '2018-01-01';");
  EXPECT_EQ(db_.One("SELECT crsql_commit_alter('todo')"), "NULL");
  EXPECT_EQ(db_.Query(kChanges), before);
  EXPECT_EQ(db_.One("SELECT crsql_db_version()"), "1");
  db_.Exec("INSERT INTO todo (id, name) VALUES (2, 'shop')");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE pk = crsql_pack_columns(2)"), "5");
  db_.Exec("UPDATE todo SET assignee = 'me' WHERE id = 1");
  EXPECT_EQ(db_.Query("SELECT cid, val, col_version, db_version FROM crsql_changes WHERE db_version = 3"),
            (Rows{{"'assignee'", "'me'", "1", "3"}}));
}

TEST_F(AlterTest, RenameColumnBackfillsAtTheCommittedVersion) {
  db_.Exec("INSERT INTO todo VALUES (2, 'walk', 1, 'park');");  // v2
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo RENAME COLUMN name TO task;"
           "SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db_.Query("SELECT hex(pk), cid, val, db_version, col_version FROM crsql_changes "
                      "WHERE cid IN ('task', 'name') ORDER BY pk"),
            (Rows{{"'010901'", "'task'", "'cook'", "2", "1"}, {"'010902'", "'task'", "'walk'", "2", "1"}}));
  EXPECT_EQ(db_.One("SELECT crsql_db_version()"), "2");
}

// The change feed, rebuilt from the remapped metadata in one pass, lists
// exactly one (db_version, first seq) per row and version, as crsql_changes
// shows them, and a cursor read after the alter sees exactly those.
TEST_F(AlterTest, TheRebuiltFeedListsEveryRowVersionOnce) {
  db_.Exec("INSERT INTO todo VALUES (2, 'walk', 1, 'park'), (3, 'read', 0, 'home');"  // v2
           "UPDATE todo SET complete = 1 WHERE id = 3;"                              // v3
           "DELETE FROM todo WHERE id = 2;"                                          // v4
           "INSERT INTO todo VALUES (4, 'nap', 0, NULL);");                           // v5
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo RENAME COLUMN list TO place;"
           "SELECT crsql_commit_alter('todo');");
  const char* from_changes =
      "SELECT db_version, min(seq), hex(pk) FROM crsql_changes GROUP BY pk, db_version "
      "ORDER BY 1, 2, 3";
  const char* feed = "SELECT dbv, lo, hex(pk) FROM todo__crsync_feed ORDER BY 1, 2, 3";
  Rows want = db_.Query(from_changes);
  EXPECT_EQ(db_.Query(feed), want);
  EXPECT_EQ(want.size(), 7u) << "rows 1, 3, 4 at their versions and at D = 5, the tombstone of 2";
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE db_version > 4"),
            db_.One("SELECT count(*) FROM crsql_changes WHERE db_version = 5"));
}

// The remapped rows table replaces the old one through a rename run in
// legacy mode; the connection's own setting is left as it was.
TEST_F(AlterTest, TheConnectionsLegacyAlterSettingIsKept) {
  for (const char* setting : {"1", "0"}) {
    db_.Exec(std::string("PRAGMA legacy_alter_table = ") + setting);
    db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN note;"
             "UPDATE todo SET note = 'x';"  // a row written during the alter: full remap
             "SELECT crsql_commit_alter('todo');");
    EXPECT_EQ(db_.One("PRAGMA legacy_alter_table"), setting);
    EXPECT_EQ(db_.One("SELECT count(*) FROM sqlite_master WHERE name LIKE '%crsync_rows_remap'"),
              "0");
    db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo DROP COLUMN note;"
             "SELECT crsql_commit_alter('todo');");
  }
  EXPECT_EQ(db_.Query(kChanges), (Rows{{"'010901'", "'complete'", "0", "1", "1"},
                                       {"'010901'", "'list'", "'home'", "1", "1"},
                                       {"'010901'", "'name'", "'cook'", "1", "1"}}));
}

// crsync_meta_runs (used by the feed rebuild) names itself on a malformed
// blob, and gives one row per db_version of a well-formed one.
TEST_F(AlterTest, MetaRunsRefusesMalformedMetadata) {
  EXPECT_THAT(db_.Error("SELECT * FROM crsync_meta_runs(X'FF')"),
              HasSubstr("crsync_meta_runs: row metadata: truncated record"));
  db_.Exec("UPDATE todo SET name = 'bake'");  // row 1 now has records at versions 1 and 2
  EXPECT_EQ(db_.Query("SELECT f.dbv FROM todo__crsync_rows r, crsync_meta_runs(r.meta) f "
                      "ORDER BY 1"),
            (Rows{{"1"}, {"2"}}));
}

// §14.3 (d): a row already known gets a record for a new column only when
// its value differs from the column's default (NULL when it has none); a
// row added during the alter gets every column, all at D.
TEST_F(AlterTest, BackfillRecordsOnlyValuesThatDifferFromTheDefault) {
  db_.Exec("SELECT crsql_begin_alter('main', 'todo');"
           "ALTER TABLE todo ADD COLUMN due DEFAULT 'soon'; ALTER TABLE todo ADD COLUMN tag;"
           "ALTER TABLE todo ADD COLUMN owner DEFAULT 'me';"
           "UPDATE todo SET tag = 'red', owner = 'you' WHERE id = 1;"
           "INSERT INTO todo (id, name) VALUES (2, 'walk');"
           "SELECT crsql_commit_alter('main', 'todo');");
  EXPECT_EQ(db_.Query(kChanges),
            (Rows{{"'010901'", "'complete'", "0", "1", "1"},
                  {"'010901'", "'list'", "'home'", "1", "1"},
                  {"'010901'", "'name'", "'cook'", "1", "1"},
                  {"'010901'", "'owner'", "'you'", "1", "1"},
                  {"'010901'", "'tag'", "'red'", "1", "1"},
                  {"'010902'", "'complete'", "NULL", "1", "1"},
                  {"'010902'", "'due'", "'soon'", "1", "1"},
                  {"'010902'", "'list'", "NULL", "1", "1"},
                  {"'010902'", "'name'", "'walk'", "1", "1"},
                  {"'010902'", "'owner'", "'me'", "1", "1"},
                  {"'010902'", "'tag'", "NULL", "1", "1"}}));
  EXPECT_EQ(db_.One("SELECT crsql_db_version()"), "1");
}

// §14.3 step 3: dropping the column whose record carried the newest version
// does not move crsql_db_version() backwards, nor reuse that version.
TEST(AlterVersionTest, DbVersionNeverGoesBackwardsWhenItsRecordsAreDropped) {
  TempPath path;
  {
    TestDb db(path.str());
    db.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, name, list); SELECT crsql_as_crr('todo');"
            "INSERT INTO todo VALUES (1, 'cook', 'home');");  // v1
    db.Exec("UPDATE todo SET list = 'work'");                 // v2, only in the list record
    db.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo DROP COLUMN list;"
            "SELECT crsql_commit_alter('todo');");
    EXPECT_EQ(db.One("SELECT max(db_version) FROM crsql_changes"), "1");
    EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
  }
  TestDb db(path.str());
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
  db.Exec("UPDATE todo SET name = 'bake'");
  EXPECT_EQ(db.One("SELECT db_version FROM crsql_changes WHERE cid = 'name'"), "3");
}

// §14.4, last example: a 12-step rebuild that adds rows while the alter is
// open, on a CRR that has recorded nothing yet (D = 0), backfills at version
// 0, so a cursor at 0 does not see those rows: by design.
TEST(AlterRebuildTest, RowsAddedByARebuildAtVersionZeroAreBackfilledAtZero) {
  TestDb db;
  db.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, name, complete);"
          "SELECT crsql_as_crr('todo');"
          "SELECT crsql_begin_alter('todo');"
          "CREATE TABLE todo_new (id PRIMARY KEY NOT NULL, name, complete DEFAULT 0);"
          "INSERT INTO todo_new SELECT * FROM todo; INSERT INTO todo_new (id, name) VALUES (1, 'a'), (2, 'b');"
          "DROP TABLE todo; ALTER TABLE todo_new RENAME TO todo;"
          "SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE db_version = 0"), "4");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE db_version > 0"), "0");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "0");
  db.Exec("INSERT INTO todo (id, name) VALUES (3, 'c')");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE db_version = 1"), "2");
}

TEST_F(AlterTest, TombstonesSurviveAnAlter) {
  db_.Exec("DELETE FROM todo WHERE id = 1;");  // v2
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo RENAME COLUMN name TO task;"
           "SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db_.Query("SELECT cid, val, db_version, col_version FROM crsql_changes"),
            (Rows{{"'-1'", "NULL", "2", "2"}}));
}

// A deleted row inserted again during the alter keeps its tombstone's even
// causal length; deleting it afterwards must still record an even one (an
// odd one would tell peers the row lives).
TEST_F(AlterTest, ADeleteAfterAReinsertDuringTheAlterIsStillADelete) {
  db_.Exec("DELETE FROM todo WHERE id = 1;"
           "SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due;"
           "INSERT INTO todo VALUES (1, 'again', 0, 'home', NULL); SELECT crsql_commit_alter('todo');");
  db_.Exec("DELETE FROM todo WHERE id = 1");
  EXPECT_EQ(db_.One("SELECT cl % 2 FROM crsql_changes WHERE pk = crsql_pack_columns(1) AND cid = '-1'"),
            "0");
}

// A row whose every clock belonged to a dropped or renamed column has no
// metadata left. §14.3 (c) then (d) would give it all of it at D, like a
// row inserted during the alter; here it gets a cl 1 sentinel and clocks
// for the values that differ from the defaults, at a version of its own
// (docs/sql-api.md: replicas that migrate at different moments diverged).
TEST(AlterEmptiedRowTest, ARowLeftWithoutClocksSaysItLivesAtANewVersion) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a);"
          "INSERT INTO t VALUES (1, NULL), (2, 'y'); SELECT crsql_as_crr('t');"
          "SELECT crsql_begin_alter('t'); ALTER TABLE t RENAME COLUMN a TO b;"
          "SELECT crsql_commit_alter('t');");
  EXPECT_EQ(db.Query(kChanges), (Rows{{"'010901'", "'-1'", "NULL", "2", "1"},
                                      {"'010902'", "'-1'", "NULL", "2", "1"},
                                      {"'010902'", "'b'", "'y'", "2", "1"}}));
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
  // Dropping the last column leaves a pk-only table: each row a sentinel.
  db.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t DROP COLUMN b;"
          "SELECT crsql_commit_alter('t');");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, db_version, cl FROM crsql_changes ORDER BY pk"),
            (Rows{{"'010901'", "'-1'", "2", "1"}, {"'010902'", "'-1'", "2", "1"}}));
  // A commit that leaves every row a clock takes no version (§14.3).
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
}

// A commit that leaves every row a clock takes no version, so it works on
// a database whose versions are exhausted (a peer sent one at the limit).
TEST(AlterEmptiedRowTest, ACommitNeedingNoVersionWorksAtTheVersionLimit) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a, b); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'x', 'y');"
          "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl, "
          "seq) VALUES ('t', X'010902', 'a', 'p', 1, " + std::to_string(kMaxChangeVersion) +
          ", X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 1, 0);");
  db.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t DROP COLUMN b; SELECT crsql_commit_alter('t');");
  EXPECT_EQ(db.Query("SELECT * FROM t ORDER BY id"), (Rows{{"1", "'x'"}, {"2", "'p'"}}));
  // One that must announce a row left with no clock says why it cannot.
  db.Exec("SELECT crsql_begin_alter('t')");
  db.Exec("ALTER TABLE t DROP COLUMN a");
  EXPECT_THAT(db.Error("SELECT crsql_commit_alter('t')"), HasSubstr("db_version is exhausted"));
}

// Two replicas migrating at different moments while written converge:
// (1) a row whose only clock was for the dropped column does not clock the
// added column at its default, which would beat a peer's concurrent write
// of it on value, never to be sent; (2) a row whose only change was for a
// column the peer had dropped already reaches the peer when this side
// drops it too.
TEST(AlterEmptiedRowTest, ReplicasMigratingAtDifferentMomentsConverge) {
  TestDb a, b;
  for (TestDb* db : {&a, &b}) {
    db->Exec("CREATE TABLE t (k INTEGER PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');");
  }
  a.Exec("INSERT INTO t VALUES (1, 'x')");
  int64_t a_at_b = 0, b_at_a = 0;  // each side's cursor for the other
  // Changes of the origin's own writes after the cursor, one by one (a
  // change of a column `to` lacks is refused, and the cursor moves on: as a
  // sidecar's would past the changes it could not use).
  auto sync = [&](TestDb& from, TestDb& to, int64_t* cursor) {
    for (const ChangeRow& r : ReadChanges(from.get(), "WHERE site_id IS NULL AND db_version > " +
                                                          std::to_string(*cursor))) {
      *cursor = std::max(*cursor, r[5].i);
      ApplyChanges(to.get(), {r}).IgnoreError();
    }
  };
  sync(a, b, &a_at_b);
  const char* add = "SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN c DEFAULT 'd';"
                    "SELECT crsql_commit_alter('t');";
  const char* drop = "SELECT crsql_begin_alter('t'); ALTER TABLE t DROP COLUMN a;"
                     "SELECT crsql_commit_alter('t');";
  b.Exec(add);
  b.Exec("UPDATE t SET c = 'a' WHERE k = 1; INSERT INTO t (k, a) VALUES (2, 'y')");
  a.Exec(add);
  a.Exec(drop);  // before b's update or row 2 arrive
  sync(b, a, &b_at_a);  // c = 'a' merges; row 2's only change (a) is refused
  b.Exec(drop);
  for (int round = 0; round < 2; ++round) {
    sync(a, b, &a_at_b);
    sync(b, a, &b_at_a);
  }
  EXPECT_EQ(a.Query("SELECT * FROM t ORDER BY k"), (Rows{{"1", "'a'"}, {"2", "'d'"}}));
  EXPECT_EQ(b.Query("SELECT * FROM t ORDER BY k"), a.Query("SELECT * FROM t ORDER BY k"));
}

// A deleted row inserted again during the alter (no trigger saw it) is
// recorded as the re-insert it was: a live causal length and its columns,
// so that peers accept the changes (an even cl with column clocks is
// refused) and learn that the row lives.
TEST_F(AlterTest, AReinsertDuringTheAlterRevivesTheRowForPeers) {
  db_.Exec("DELETE FROM todo WHERE id = 1;"  // v2, cl 2
           "SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due;"
           "INSERT INTO todo VALUES (1, 'again', 0, 'home', 'soon');"
           "SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db_.Query("SELECT cid, val, db_version, col_version, cl FROM crsql_changes "
                      "ORDER BY seq"),
            (Rows{{"'-1'", "NULL", "2", "3", "3"},
                  {"'name'", "'again'", "2", "1", "3"},
                  {"'complete'", "0", "2", "1", "3"},
                  {"'list'", "'home'", "2", "1", "3"},
                  {"'due'", "'soon'", "2", "1", "3"}}));
  TestDb peer;
  peer.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, name, complete, list, due);"
            "SELECT crsql_as_crr('todo');");
  Sync(db_, peer);
  EXPECT_EQ(peer.Query("SELECT * FROM todo"), (Rows{{"1", "'again'", "0", "'home'", "'soon'"}}));
}

TEST_F(AlterTest, DeletesDuringTheAlterLeaveNoTombstone) {
  db_.Exec("INSERT INTO todo VALUES (2, 'walk', 1, 'park');"
           "SELECT crsql_begin_alter('todo'); DELETE FROM todo WHERE id = 1;"
           "ALTER TABLE todo ADD COLUMN due; SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE pk = crsql_pack_columns(1)"), "0");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE pk = crsql_pack_columns(2)"), "3");
}

// Mid-alter, a row deleted unrecorded still has its clocks: reads skip it
// (whatever the constraint: none, pk, db_version), so a peer syncing then
// does not get a row of NULLs that never was.
TEST_F(AlterTest, ARowDeletedDuringTheAlterIsNotReadAsNulls) {
  db_.Exec("INSERT INTO todo VALUES (2, 'walk', 1, 'park');"
           "SELECT crsql_begin_alter('todo'); DELETE FROM todo WHERE id = 1;");
  for (const char* where : {"1", "db_version >= 0", "pk > X'00' AND pk < X'FF'",
                            "site_id IS NULL", "\"table\" = 'todo'"}) {
    SCOPED_TRACE(where);
    EXPECT_EQ(db_.One(std::string("SELECT count(*) FROM crsql_changes WHERE pk = "
                                  "crsql_pack_columns(1) AND ") + where),
              "0");
    EXPECT_EQ(db_.One(std::string("SELECT count(*) FROM crsql_changes WHERE pk = "
                                  "crsql_pack_columns(2) AND ") + where),
              "3");
  }
  TestDb peer;
  peer.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, name, complete, list);"
            "SELECT crsql_as_crr('todo');");
  Sync(db_, peer);
  EXPECT_EQ(peer.Query("SELECT * FROM todo"), (Rows{{"2", "'walk'", "1", "'park'"}}));
  db_.Exec("SELECT crsql_commit_alter('todo')");
}

TEST_F(AlterTest, PkOnlyTableAddColumnKeepsSentinel) {
  db_.Exec("CREATE TABLE assoc (id1 NOT NULL, id2 NOT NULL, PRIMARY KEY (id1, id2));"
           "SELECT crsql_as_crr('assoc'); INSERT INTO assoc VALUES (1, 2);"
           "SELECT crsql_begin_alter('assoc'); ALTER TABLE assoc ADD COLUMN data;"
           "SELECT crsql_commit_alter('assoc');");
  EXPECT_EQ(db_.Query("SELECT cid, cl FROM crsql_changes WHERE \"table\" = 'assoc'"),
            (Rows{{"'-1'", "1"}}));
  db_.Exec("UPDATE assoc SET data = 'x'");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'assoc'"), "2");
}

// foo (a, b, c) keyed by (a, b) becomes keyed by a alone (§14.3 step 1).
constexpr char kRekeyFoo[] =
    "SELECT crsql_begin_alter('foo');"
    "CREATE TABLE foo_new (a NOT NULL PRIMARY KEY, b, c);"
    "INSERT INTO foo_new SELECT * FROM foo; DROP TABLE foo; ALTER TABLE foo_new RENAME TO foo;"
    "SELECT crsql_commit_alter('foo');";

TEST_F(AlterTest, ChangingThePrimaryKeyRebuildsEveryIdentity) {
  db_.Exec("CREATE TABLE foo (a NOT NULL, b NOT NULL, c, PRIMARY KEY (a, b));"
           "SELECT crsql_as_crr('foo'); INSERT INTO foo VALUES (1, 2, 'x'), (4, 5, 'y');"
           "UPDATE foo SET c = 'z' WHERE a = 1;");
  db_.Exec(kRekeyFoo);
  EXPECT_EQ(db_.Query("SELECT hex(pk), cid, val, col_version, db_version FROM crsql_changes "
                      "WHERE \"table\" = 'foo' ORDER BY pk, cid"),
            (Rows{{"'010901'", "'b'", "2", "1", "3"}, {"'010901'", "'c'", "'z'", "1", "3"},
                  {"'010904'", "'b'", "5", "1", "3"}, {"'010904'", "'c'", "'y'", "1", "3"}}));
  db_.Exec("INSERT INTO foo VALUES (7, 8, 9)");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'foo' AND db_version = 4"), "2");
}

// §14.3 step 1: a new set of key columns loses every tombstone and every
// causal length; a row that had been deleted and inserted again starts
// over at cl 1 like the others.
TEST_F(AlterTest, ChangingThePrimaryKeyLosesTombstonesAndCausalLengths) {
  db_.Exec("CREATE TABLE foo (a NOT NULL, b NOT NULL, c, PRIMARY KEY (a, b));"
           "SELECT crsql_as_crr('foo'); INSERT INTO foo VALUES (1, 2, 'x'), (4, 5, 'y'), (6, 6, 'd');"
           "DELETE FROM foo WHERE a = 6;"
           "DELETE FROM foo WHERE a = 4; INSERT INTO foo VALUES (4, 5, 'y2');");
  ASSERT_EQ(db_.Query("SELECT hex(pk), cl FROM crsql_changes WHERE \"table\" = 'foo' AND cid = '-1' "
                      "ORDER BY pk"),
            (Rows{{"'0209040905'", "3"}, {"'0209060906'", "2"}}));
  db_.Exec(kRekeyFoo);
  EXPECT_EQ(db_.Query("SELECT hex(pk), cid, val, col_version, cl FROM crsql_changes "
                      "WHERE \"table\" = 'foo' ORDER BY pk, cid"),
            (Rows{{"'010901'", "'b'", "2", "1", "1"}, {"'010901'", "'c'", "'x'", "1", "1"},
                  {"'010904'", "'b'", "5", "1", "1"}, {"'010904'", "'c'", "'y2'", "1", "1"}}));
}

TEST_F(AlterTest, FailureUndoesTheWholeAlterButNotTheCallersTransaction) {
  db_.Exec("BEGIN; INSERT INTO todo VALUES (5, 'mine', 0, 'x');"
           "SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN email;"
           "CREATE UNIQUE INDEX todo_email ON todo(email);");
  EXPECT_THAT(db_.Error("SELECT crsql_commit_alter('todo')"),
              HasSubstr("failed compacting tables post alteration: Table todo has unique indices"));
  EXPECT_EQ(sqlite3_get_autocommit(db_.get()), 0);
  db_.Exec("COMMIT");
  EXPECT_EQ(db_.One("SELECT count(*) FROM pragma_table_info('todo') WHERE name = 'email'"), "0");
  EXPECT_EQ(db_.One("SELECT count(*) FROM todo WHERE id = 5"), "1");
  // Still a working CRR with its triggers.
  db_.Exec("UPDATE todo SET name = 'again' WHERE id = 5");
  EXPECT_EQ(db_.One("SELECT col_version FROM crsql_changes WHERE pk = crsql_pack_columns(5) AND "
                    "cid = 'name'"),
            "2");
}

// A row inserted with a NULL key while the triggers were away cannot get
// metadata: commit_alter refuses by name and undoes the alter.
TEST(AlterNullKeyTest, ARowWithANullKeyInsertedDuringTheAlterFailsTheCommit) {
  TestDb db;
  db.Exec("CREATE TABLE c (id PRIMARY KEY, name); SELECT crsql_as_crr('c');"
          "INSERT INTO c VALUES (1, 'b');"
          "SELECT crsql_begin_alter('c'); INSERT INTO c VALUES (NULL, 'a');"
          "ALTER TABLE c ADD COLUMN extra;");
  EXPECT_THAT(db.Error("SELECT crsql_commit_alter('c')"),
              AllOf(HasSubstr("crsql_commit_alter(c)"), HasSubstr("NULL in primary key column id")));
  EXPECT_EQ(db.One("SELECT count(*) FROM pragma_table_info('c') WHERE name = 'extra'"), "0");
  EXPECT_EQ(db.One("SELECT count(*) FROM c"), "1");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, val FROM crsql_changes"),
            (Rows{{"'010901'", "'name'", "'b'"}}));
}

// A second begin_alter of a table whose alter is open is refused; before,
// both shared one savepoint and the commit left the outer one open, so the
// connection's close discarded the alter and every write after it.
TEST_F(AlterTest, ASecondBeginOfAnOpenAlterIsRefusedAndNothingStaysOpen) {
  db_.Exec("SELECT crsql_begin_alter('todo')");
  EXPECT_THAT(db_.Error("SELECT crsql_begin_alter('todo')"), HasSubstr("already open"));
  db_.Exec("ALTER TABLE todo ADD COLUMN due; SELECT crsql_commit_alter('todo');");
  EXPECT_TRUE(sqlite3_get_autocommit(db_.get()));
  db_.Exec("BEGIN; INSERT INTO todo VALUES (9, 'x', 0, 'w', 'soon'); COMMIT;");
  EXPECT_EQ(db_.One("SELECT val FROM crsql_changes WHERE pk = crsql_pack_columns(9) AND cid = 'due'"),
            "'soon'");
}

// Alters of two tables at once: a failing commit of the one begun last
// undoes only that one (savepoints nest: undoing an alter also undoes what
// was begun after it).
TEST_F(AlterTest, AFailedCommitUndoesOnlyItsOwnTablesAlter) {
  db_.Exec("CREATE TABLE other (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('other');"
           "SELECT crsql_begin_alter('other'); ALTER TABLE other ADD COLUMN w;"
           "SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN email;"
           "CREATE UNIQUE INDEX todo_email ON todo(email);");
  EXPECT_THAT(db_.Error("SELECT crsql_commit_alter('todo')"), HasSubstr("unique indices"));
  EXPECT_EQ(db_.One("SELECT count(*) FROM pragma_table_info('todo') WHERE name = 'email'"), "0");
  EXPECT_EQ(db_.One("SELECT count(*) FROM pragma_table_info('other') WHERE name = 'w'"), "1");
  db_.Exec("SELECT crsql_commit_alter('other'); INSERT INTO other VALUES (1, 'a', 'b');");
  EXPECT_TRUE(sqlite3_get_autocommit(db_.get()));
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'other'"), "2");
  db_.Exec("UPDATE todo SET name = 'still recorded' WHERE id = 1");
  EXPECT_EQ(db_.One("SELECT val FROM crsql_changes WHERE \"table\" = 'todo' AND cid = 'name' "
                    "AND pk = crsql_pack_columns(1)"),
            "'still recorded'");
}

// The caller's COMMIT between begin and commit ends begin_alter's savepoint:
// commit_alter still completes the alter (it cannot be undone any more).
TEST_F(AlterTest, CommitAfterTheCallersCommitCompletesTheAlter) {
  db_.Exec("BEGIN; SELECT crsql_begin_alter('todo'); ALTER TABLE todo DROP COLUMN list; COMMIT;");
  db_.Exec("SELECT crsql_commit_alter('todo')");
  EXPECT_TRUE(sqlite3_get_autocommit(db_.get()));
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE cid = 'list'"), "0");
  db_.Exec("UPDATE todo SET name = 'after' WHERE id = 1");
  EXPECT_EQ(db_.One("SELECT val FROM crsql_changes WHERE cid = 'name' AND pk = crsql_pack_columns(1)"),
            "'after'");
}

// §14.3 2d compares a row's value with the column's default as the row
// holds it, after the column's affinity: REAL DEFAULT 1 holds 1.0, TEXT
// DEFAULT 5 holds '5', INTEGER DEFAULT '7' holds 7. Rows holding the
// default get no clock.
TEST_F(AlterTest, DefaultsAreComparedWithTheColumnsAffinityApplied) {
  db_.Exec("SELECT crsql_begin_alter('todo');"
           "ALTER TABLE todo ADD COLUMN r REAL DEFAULT 1; ALTER TABLE todo ADD COLUMN t TEXT DEFAULT 5;"
           "ALTER TABLE todo ADD COLUMN n INTEGER DEFAULT '7'; ALTER TABLE todo DROP COLUMN list;"
           "SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE cid IN ('r', 't', 'n')"), "0");
  // A row written with other values still gets its clocks.
  db_.Exec("UPDATE todo SET r = 2, t = 'x' WHERE id = 1");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE cid IN ('r', 't')"), "2");
}

TEST_F(AlterTest, ErrorsNameWhatIsWrong) {
  EXPECT_THAT(db_.Error("SELECT crsql_begin_alter()"), HasSubstr("expects (table)"));
  EXPECT_THAT(db_.Error("SELECT crsql_begin_alter('nope')"), HasSubstr("nope is not a CRR"));
  EXPECT_THAT(db_.Error("SELECT crsql_commit_alter('todo')"), HasSubstr("without crsql_begin_alter"));
  db_.Exec("CREATE TABLE log (x); CREATE TRIGGER t AFTER INSERT ON log BEGIN "
           "SELECT crsql_begin_alter('todo'); END;");
  EXPECT_THAT(db_.Error("INSERT INTO log VALUES (1)"), HasSubstr("unsafe use of crsql_begin_alter"));
  // The other schema-changing calls and crsql_finalize are direct-only too
  // (§14.1, §17): not from triggers, nor views.
  for (const char* call : {"crsql_commit_alter('todo')", "crsql_as_table('todo')", "crsql_finalize()",
                           "crsql_as_crr('log')"}) {
    SCOPED_TRACE(call);
    db_.Exec(std::string("DROP TRIGGER t; CREATE TRIGGER t AFTER INSERT ON log BEGIN SELECT ") + call +
             "; END; DROP VIEW IF EXISTS w; CREATE VIEW w AS SELECT " + call + ";");
    const std::string name = std::string(call).substr(0, std::string(call).find('('));
    EXPECT_THAT(db_.Error("INSERT INTO log VALUES (1)"), HasSubstr("unsafe use of " + name));
    EXPECT_THAT(db_.Error("SELECT * FROM w"), HasSubstr("unsafe use of " + name));
  }
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'todo'"), "3");
}

// Quoted names with spaces and quotes work through the alter and the
// downgrade, as through crsql_as_crr (§4.2).
TEST(AlterQuotedNamesTest, AltersAndDowngradeTakeQuotedNames) {
  TestDb db;
  db.Exec("CREATE TABLE \"we ird\"\"t\" (id PRIMARY KEY NOT NULL, v);"
          "SELECT crsql_as_crr('we ird\"t');"
          "SELECT crsql_begin_alter('we ird\"t'); ALTER TABLE \"we ird\"\"t\" ADD COLUMN \"w x\";"
          "SELECT crsql_commit_alter('we ird\"t'); INSERT INTO \"we ird\"\"t\" VALUES (1, 2, 3);");
  EXPECT_EQ(db.Query("SELECT \"table\", cid, val FROM crsql_changes ORDER BY cid"),
            (Rows{{"'we ird\"t'", "'v'", "2"}, {"'we ird\"t'", "'w x'", "3"}}));
  db.Exec("SELECT crsql_as_table('we ird\"t')");
  EXPECT_EQ(db.One("SELECT group_concat(name) FROM sqlite_master WHERE name LIKE 'we ird%'"),
            "'we ird\"t'");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "0");
}

// An alter abandoned by a ROLLBACK (which restores the recording
// triggers) is no longer open: commit_alter refuses, and writes record.
TEST_F(AlterTest, ARolledBackAlterIsNoLongerOpen) {
  db_.Exec("SELECT crsql_begin_alter('todo')");
  db_.Exec("ROLLBACK");
  EXPECT_THAT(db_.Error("SELECT crsql_commit_alter('todo')"), HasSubstr("without crsql_begin_alter"));
  db_.Exec("UPDATE todo SET name = 'bake' WHERE id = 1");
  EXPECT_EQ(db_.One("SELECT col_version FROM crsql_changes WHERE cid = 'name'"), "2");
  // Undone by rolling back to a savepoint taken before it: the same.
  db_.Exec("BEGIN; SAVEPOINT before_alter; SELECT crsql_begin_alter('todo');"
           "ROLLBACK TO before_alter");
  EXPECT_THAT(db_.Error("SELECT crsql_commit_alter('todo')"),
              HasSubstr("the alter this connection began is no longer open: a rollback undid it"));
  db_.Exec("UPDATE todo SET name = 'roast' WHERE id = 1; COMMIT");
  EXPECT_EQ(db_.One("SELECT col_version FROM crsql_changes WHERE cid = 'name'"), "3");
}

// Mid-alter the CRR's columns are the old ones: a merge of a column the
// alter dropped is refused by name and changes nothing (other columns merge
// as usual); after the commit the column is unknown.
TEST_F(AlterTest, AMergeOfAColumnTheOpenAlterDroppedIsRefusedByName) {
  auto change = [](const char* cid, const char* val, int version) {
    return std::string("INSERT INTO crsql_changes VALUES ('todo', crsql_pack_columns(1), '") + cid +
           "', '" + val + "', " + std::to_string(version) + ", 1, X'11111111111111111111111111111111')";
  };
  db_.Exec("BEGIN; SELECT crsql_begin_alter('todo'); ALTER TABLE todo DROP COLUMN list");
  const Rows before = db_.Query(kChanges);
  EXPECT_THAT(db_.Error(change("list", "office", 5)),
              HasSubstr("column todo.list is not in the table while its alter is open "
                        "(crsql_begin_alter); merge this change after crsql_commit_alter"));
  EXPECT_EQ(db_.Query(kChanges), before);
  db_.Exec(change("name", "peer", 5));
  EXPECT_EQ(db_.One("SELECT name FROM todo"), "'peer'");
  db_.Exec("SELECT crsql_commit_alter('todo'); COMMIT");
  EXPECT_THAT(db_.Error(change("list", "office", 6)), HasSubstr("no such column todo.list"));
  EXPECT_EQ(db_.One("SELECT val FROM crsql_changes WHERE cid = 'name'"), "'peer'");
}

// A committed alter undone by ROLLBACK TO a savepoint of the caller's: the
// CRR has its old columns again, even when later DDL brings the schema
// version back to the one the engine cached the altered CRR under.
TEST_F(AlterTest, ACommittedAlterUndoneByRollbackToIsForgotten) {
  db_.Exec("BEGIN; SAVEPOINT s; SELECT crsql_begin_alter('todo');"
           "ALTER TABLE todo ADD COLUMN due; SELECT crsql_commit_alter('todo');"
           "UPDATE todo SET due = 'today';");
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE cid = 'due'"), "1");
  ClimbBackAfterRollbackTo(db_, "s");
  db_.Exec("UPDATE todo SET name = 'bake'; COMMIT");
  EXPECT_EQ(db_.Query("SELECT cid, val, col_version FROM crsql_changes ORDER BY cid"),
            (Rows{{"'complete'", "0", "1"}, {"'list'", "'home'", "1"}, {"'name'", "'bake'", "2"}}));
}

// Another connection's alter reaches a connection that merges next: the
// change is resolved against the table as it is now, whether it names a
// column the alter added or one whose position a dropped column moved.
// (The engine once kept the old CRR object, freed it mid-merge and
// crashed.)
class AlterByAnotherConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
            "INSERT INTO t VALUES (1, 'b1', 'c1');");
    EXPECT_EQ(a_.One("SELECT count(*) FROM crsql_changes"), "2");  // a's catalog is warm
    site_ = b_.Text("SELECT hex(randomblob(16))");
  }
  std::string Change(const std::string& cid, const std::string& val, int col_version) {
    return "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl,"
           " seq) VALUES ('t', crsql_pack_columns(1), '" + cid + "', " + val + ", " +
           std::to_string(col_version) + ", 7, X'" + site_ + "', 1, 0)";
  }
  TempPath path_;
  TestDb a_{path_.str()};
  TestDb b_{path_.str()};
  std::string site_;
};

TEST_F(AlterByAnotherConnectionTest, AMergeSeesAColumnItAdded) {
  b_.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN d;"
          "SELECT crsql_commit_alter('t');");
  a_.Exec(Change("d", "'d1'", 1));
  a_.Exec(Change("b", "'b2'", 2));
  EXPECT_EQ(a_.Query("SELECT * FROM t"), (Rows{{"1", "'b2'", "'c1'", "'d1'"}}));
  EXPECT_EQ(a_.Query("SELECT cid, val, col_version FROM crsql_changes ORDER BY cid"),
            (Rows{{"'b'", "'b2'", "2"}, {"'c'", "'c1'", "1"}, {"'d'", "'d1'", "1"}}));
}

TEST_F(AlterByAnotherConnectionTest, AMergeSeesTheColumnsADropMoved) {
  b_.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t DROP COLUMN b;"
          "SELECT crsql_commit_alter('t');");
  a_.Exec(Change("c", "'c2'", 2));
  EXPECT_EQ(a_.Query("SELECT * FROM t"), (Rows{{"1", "'c2'"}}));
  EXPECT_EQ(a_.Query("SELECT cid, val, col_version FROM crsql_changes"), (Rows{{"'c'", "'c2'", "2"}}));
  EXPECT_THAT(a_.Error(Change("b", "'b2'", 3)), HasSubstr("no such column t.b"));
}

// The same within one connection: an alter merged into and then rolled
// back, and the next merge meets the table as it was.
TEST_F(AlterByAnotherConnectionTest, AMergeAfterARolledBackAlterSeesTheOldTable) {
  a_.Exec("BEGIN; SELECT crsql_begin_alter('t'); ALTER TABLE t DROP COLUMN b;"
          "SELECT crsql_commit_alter('t');");
  a_.Exec(Change("c", "'c2'", 2));
  a_.Exec("ROLLBACK");
  a_.Exec(Change("b", "'b3'", 3));
  a_.Exec(Change("c", "'c3'", 3));
  EXPECT_EQ(a_.Query("SELECT * FROM t"), (Rows{{"1", "'b3'", "'c3'"}}));
  EXPECT_EQ(a_.Query("SELECT cid, val, col_version FROM crsql_changes ORDER BY cid"),
            (Rows{{"'b'", "'b3'", "3"}, {"'c'", "'c3'", "3"}}));
}

// ChangeApplier, the sidecar's merge path, likewise.
TEST_F(AlterByAnotherConnectionTest, TheApplierSeesAnotherConnectionsAlter) {
  b_.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t DROP COLUMN b; ALTER TABLE t ADD COLUMN d;"
          "SELECT crsql_commit_alter('t');");
  TestDb peer;
  peer.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, c, d); SELECT crsql_as_crr('t');"
            "INSERT INTO t VALUES (1, 'c2', 'd2'); UPDATE t SET c = 'c3', d = 'd3';");
  for (int round = 0; round < 2; ++round) {  // one row, then enough rows for the bulk path
    if (round == 1) peer.Exec("WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 300)"
                              " INSERT INTO t SELECT i, 'c', 'd' FROM n");
    std::unique_ptr<ChangeApplier> applier;
    ASSERT_OK(ChangeApplier::Open(a_.get(), &applier));
    EXPECT_OK(applier->Apply(ToChanges(ReadChanges(peer.get())), 0, nullptr));
    EXPECT_EQ(a_.Query("SELECT * FROM t ORDER BY id"), peer.Query("SELECT * FROM t ORDER BY id"));
  }
}

// A new primary key that is NULL in an existing row is refused by name,
// and the alter is undone (the table keeps recording under its old key).
TEST(AlterNullKeyTest, ANewKeyThatIsNullInARowIsRefused) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a, b); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'x', NULL), (2, 'y', 'k2');");
  Rows before = db.Query("SELECT hex(pk), cid, val FROM crsql_changes ORDER BY 1, 2");
  db.Exec("SELECT crsql_begin_alter('t');"
          "CREATE TABLE t_new (id INTEGER NOT NULL, a, b, PRIMARY KEY (id, b));"
          "INSERT INTO t_new SELECT * FROM t; DROP TABLE t; ALTER TABLE t_new RENAME TO t;");
  EXPECT_THAT(db.Error("SELECT crsql_commit_alter('t')"), HasSubstr("NULL"));
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, val FROM crsql_changes ORDER BY 1, 2"), before);
  db.Exec("UPDATE t SET a = 'x2' WHERE id = 1");
  EXPECT_EQ(db.One("SELECT val FROM crsql_changes WHERE pk = crsql_pack_columns(1) AND cid = 'a'"),
            "'x2'");
}

TEST_F(AlterTest, PeersThatHaveNotMigratedGetASpecificError) {
  TestDb peer;
  peer.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, name, complete, list);"
            "SELECT crsql_as_crr('todo');");
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due;"
           "SELECT crsql_commit_alter('todo'); UPDATE todo SET due = 'friday';");
  auto rows = ReadChanges(db_.get(), "WHERE cid = 'due'");
  const Rows before = CrrState(peer, {"todo"});
  Status s = ApplyChanges(peer.get(), rows);
  EXPECT_THAT(s.message(), HasSubstr("no such column todo.due"));
  EXPECT_EQ(CrrState(peer, {"todo"}), before);
  peer.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due;"
            "SELECT crsql_commit_alter('todo');");
  Sync(db_, peer);
  EXPECT_EQ(peer.Query("SELECT * FROM todo"), db_.Query("SELECT * FROM todo"));
}

// A migration rebuilds the metadata tables, which SQLite refuses under a
// running statement; the failure then undid the alter and aborted every
// running statement. commit_alter now refuses first and leaves the alter
// open; an alter that needs no rebuild (columns appended, no row written)
// goes through as before.
TEST(AlterBusyTest, CommitWaitsForRunningStatementsOnlyWhenItRebuilds) {
  TestDb db;
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); CREATE TABLE u(x);"
          "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, 'a'), (2, 'b');"
          "INSERT INTO u VALUES (1), (2), (3)");
  StmtPtr reader;
  ASSERT_OK(Prepare(db.get(), "SELECT x FROM u", &reader));
  ASSERT_EQ(sqlite3_step(reader.get()), SQLITE_ROW);
  db.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN z; SELECT crsql_commit_alter('t')");
  db.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t RENAME COLUMN v TO w");
  EXPECT_THAT(db.Error("SELECT crsql_commit_alter('t')"),
              HasSubstr("another statement of this connection is still running"));
  int rows = 1, rc;
  while ((rc = sqlite3_step(reader.get())) == SQLITE_ROW) ++rows;
  EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db.get());
  EXPECT_EQ(rows, 3);
  reader.reset();
  EXPECT_EQ(db.One("SELECT group_concat(name) FROM pragma_table_info('t')"), "'id,w,z'");
  db.Exec("SELECT crsql_commit_alter('t')");
  // (Renaming v left the rows no clock: each gets a sentinel, and a clock
  // for w, whose value is no default; see AlterEmptiedRowTest.)
  EXPECT_EQ(db.Query("SELECT pk, cid, val FROM crsql_changes ORDER BY pk, cid"),
            (Rows{{"X'010901'", "'-1'", "NULL"},
                  {"X'010901'", "'w'", "'a'"},
                  {"X'010902'", "'-1'", "NULL"},
                  {"X'010902'", "'w'", "'b'"}}));
  db.Exec("INSERT INTO t VALUES (3, 'c', 'zz')");
  EXPECT_EQ(db.Int("SELECT count(*) FROM crsql_changes WHERE pk = X'010903'"), 2);
}

}  // namespace
}  // namespace crsync
