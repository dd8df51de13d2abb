// crr-semantics §14.1: altering a CRR outside crsql_begin_alter/commit_alter
// (noticed, and refused until recorded), and writes on other connections
// while an alter is open (refused by its guard triggers).
#include "tests/change_util.h"
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

void MakeTodo(TestDb& db) {
  db.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, name, complete, list);"
          "SELECT crsql_as_crr('todo');"
          "INSERT INTO todo VALUES (1, 'cook', 0, 'home');");
}

constexpr char kChanges[] =
    "SELECT hex(pk), cid, val, db_version, col_version FROM crsql_changes ORDER BY pk, cid";

// §14.1: altering a CRR's columns without begin/commit is unsupported. Its
// triggers still pass the old columns, so writes of an added column would
// go unrecorded and a renamed column's would be recorded under its old
// name: the next write fails instead, by name, and changes nothing, until
// begin/commit alter record the new shape.
TEST(UnrecordedAlterTest, AnAlterWithoutBeginAndCommitStopsWritesUntilRecorded) {
  TestDb db;
  MakeTodo(db);
  db.Exec("ALTER TABLE todo ADD COLUMN due");
  const Rows before = db.Query("SELECT * FROM todo");
  const Rows changes = db.Query(kChanges);
  std::string err = db.Error("UPDATE todo SET due = 'mon' WHERE id = 1");
  EXPECT_THAT(err, HasSubstr("table todo was altered without crsql_begin_alter/crsql_commit_alter"));
  EXPECT_THAT(err, HasSubstr("columns the CRR does not replicate: due"));
  EXPECT_THAT(db.Error("INSERT INTO todo (id, name) VALUES (2, 'x')"), HasSubstr("todo was altered"));
  EXPECT_THAT(db.Error("DELETE FROM todo"), HasSubstr("todo was altered"));
  // Merges too, through SQL: the column exists, and the message says why
  // it cannot be taken.
  EXPECT_THAT(db.Error("INSERT INTO crsql_changes VALUES ('todo', X'010901', 'due', 'tue', 5, 10, "
                        "X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')"),
              HasSubstr("todo was altered"));
  EXPECT_EQ(db.Query("SELECT * FROM todo"), before);
  EXPECT_EQ(db.Query(kChanges), changes);
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('todo')"), HasSubstr("todo was altered"));

  db.Exec("SELECT crsql_begin_alter('todo'); SELECT crsql_commit_alter('todo');");
  db.Exec("UPDATE todo SET due = 'mon' WHERE id = 1");
  EXPECT_EQ(db.One("SELECT val FROM crsql_changes WHERE cid = 'due'"), "'mon'");
}

// §4.2 E2 refuses a CRR with a UNIQUE index besides its key; one made
// after crsql_as_crr is refused too, when the table is next written: an
// INSERT OR REPLACE conflicting on it deletes another row without firing
// the delete trigger (so the delete never replicates), and a merge
// conflicting on it is refused where other replicas take it. Until the
// index is dropped, writes and merges fail by name and change nothing.
TEST(UnrecordedAlterTest, AUniqueIndexMadeAfterAsCrrStopsWritesUntilDropped) {
  TestDb db;
  MakeTodo(db);
  db.Exec("INSERT INTO todo VALUES (2, 'walk', 0, 'park'); CREATE UNIQUE INDEX one_per_list ON todo (list);");
  const Rows before = db.Query("SELECT * FROM todo ORDER BY id");
  const Rows changes = db.Query(kChanges);
  const std::string refused = "has a UNIQUE index, one_per_list, besides its primary key";
  EXPECT_THAT(db.Error("INSERT OR REPLACE INTO todo VALUES (3, 'swim', 0, 'park')"), HasSubstr(refused));
  EXPECT_THAT(db.Error("UPDATE todo SET name = 'bake' WHERE id = 1"), HasSubstr(refused));
  EXPECT_THAT(db.Error("DELETE FROM todo WHERE id = 2"), HasSubstr(refused));
  EXPECT_THAT(db.Error("INSERT INTO crsql_changes VALUES ('todo', X'010901', 'name', 'fry', 5, 10, "
                       "X'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')"),
              HasSubstr(refused));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('todo')"), HasSubstr(refused));
  EXPECT_EQ(db.Query("SELECT * FROM todo ORDER BY id"), before);
  EXPECT_EQ(db.Query(kChanges), changes);
  // A non-unique index is allowed.
  db.Exec("DROP INDEX one_per_list; CREATE INDEX by_list ON todo (list);");
  db.Exec("INSERT OR REPLACE INTO todo VALUES (3, 'swim', 0, 'park')");
  EXPECT_EQ(db.One("SELECT count(*) FROM todo"), "3");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE pk = X'010903'"), "3");
}

TEST(UnrecordedAlterTest, ARenameWithoutBeginAndCommitNamesBothColumns) {
  TestDb db;
  MakeTodo(db);
  db.Exec("ALTER TABLE todo RENAME COLUMN name TO title");
  std::string err = db.Error("UPDATE todo SET title = 'bake'");
  EXPECT_THAT(err, HasSubstr("does not replicate: title"));
  EXPECT_THAT(err, HasSubstr("columns name are gone (dropped or renamed)"));
  EXPECT_EQ(db.One("SELECT title FROM todo"), "'cook'");
  db.Exec("SELECT crsql_begin_alter('todo'); SELECT crsql_commit_alter('todo');");
  db.Exec("UPDATE todo SET title = 'bake'");
  EXPECT_EQ(db.Query("SELECT cid, val FROM crsql_changes WHERE cid = 'title'"),
            (Rows{{"'title'", "'bake'"}}));
  // An ALTER undone by ROLLBACK TO lets writes through again.
  db.Exec("BEGIN; SAVEPOINT s; ALTER TABLE todo ADD COLUMN due");
  EXPECT_THAT(db.Error("UPDATE todo SET title = 'x'"), HasSubstr("todo was altered"));
  db.Exec("ROLLBACK TO s; UPDATE todo SET title = 'boil'; COMMIT");
  EXPECT_EQ(db.One("SELECT val FROM crsql_changes WHERE cid = 'title'"), "'boil'");
}

// DROP COLUMN never gets that far: the recording update trigger reads
// every column, so SQLite itself refuses the drop (naming the trigger),
// and nothing changes. Through begin/commit it works.
TEST(UnrecordedAlterTest, ADropColumnWithoutBeginIsRefusedBySqlite) {
  TestDb db;
  MakeTodo(db);
  const Rows changes = db.Query(kChanges);
  std::string err = db.Error("ALTER TABLE todo DROP COLUMN list");
  EXPECT_THAT(err, HasSubstr("todo__crsync_utrig after drop column"));
  EXPECT_THAT(err, HasSubstr("list"));
  EXPECT_EQ(db.One("SELECT list FROM todo"), "'home'");
  EXPECT_EQ(db.Query(kChanges), changes);
  db.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo DROP COLUMN list;"
          "SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE cid = 'list'"), "0");
}

// Known gap: an ALTER after the transaction took its version (its first
// write, merge or crsql_next_db_version) is noticed at the next
// transaction (the catalog is checked when a transaction takes its
// version). What the transaction wrote to the new column meanwhile is
// recorded by the repair, which reads every row.
TEST(UnrecordedAlterTest, AnAlterAfterATransactionsFirstWriteIsNoticedByTheNext) {
  TestDb db;
  MakeTodo(db);
  db.Exec("BEGIN; UPDATE todo SET complete = 1; ALTER TABLE todo ADD COLUMN due;"
           "UPDATE todo SET due = 'tue'; COMMIT");
  EXPECT_THAT(db.Error("UPDATE todo SET complete = 2"), HasSubstr("todo was altered"));
  db.Exec("SELECT crsql_begin_alter('todo'); SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db.One("SELECT val FROM crsql_changes WHERE cid = 'due'"), "'tue'");
}

// The repair records values written before the drift was noticed: the
// commit takes the full path, not "only columns added, nothing written".
TEST(UnrecordedAlterTest, RecordingTheNewShapeBackfillsValuesAlreadyThere) {
  TestDb db;
  MakeTodo(db);
  db.Exec("ALTER TABLE todo ADD COLUMN due DEFAULT 'never'");
  {
    // Triggers disabled: a write the check could not see.
    sqlite3_db_config(db.get(), SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
    db.Exec("UPDATE todo SET due = 'fri'");
    sqlite3_db_config(db.get(), SQLITE_DBCONFIG_ENABLE_TRIGGER, 1, nullptr);
  }
  db.Exec("SELECT crsql_begin_alter('todo'); SELECT crsql_commit_alter('todo');");
  EXPECT_EQ(db.One("SELECT val FROM crsql_changes WHERE cid = 'due'"), "'fri'");
}

// A row another connection writes while the alter is open (its
// transaction ended, so the other connection could write) would never be
// recorded: the table has no recording triggers until the commit. Such
// writes, and merges, are refused by name; the alter's own connection
// writes on (not recorded, §14.1), and after the commit everyone records.
TEST(OpenAlterGuardTest, AnotherConnectionCannotWriteWhileTheAlterIsOpen) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'a');"
         "SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN w; COMMIT;");
  const Rows before = b.Query("SELECT * FROM t");
  for (const char* write : {"INSERT INTO t VALUES (3, 'from b', 'wb')", "UPDATE t SET v = 'b'",
                            "DELETE FROM t",
                            "INSERT INTO crsql_changes VALUES ('t', X'010901', 'v', 'm', 9, 9, "
                            "X'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB')",
                            "SELECT crsql_as_crr('t')"}) {
    SCOPED_TRACE(write);
    EXPECT_THAT(b.Error(write), HasSubstr("t is being altered: crsql_begin_alter('t') ran on "
                                          "another connection"));
  }
  EXPECT_EQ(b.Query("SELECT * FROM t"), before);
  a.Exec("UPDATE t SET w = 'a-during'");
  a.Exec("SELECT crsql_commit_alter('t')");
  b.Exec("INSERT INTO t VALUES (3, 'from b', 'wb')");
  EXPECT_EQ(a.Query("SELECT hex(pk), cid, val FROM crsql_changes WHERE cid = 'w' ORDER BY pk"),
            (Rows{{"'010901'", "'w'", "'a-during'"}, {"'010903'", "'w'", "'wb'"}}));
}

// The alter's own connection keeps it open across an unrelated rolled-back
// transaction (only a rollback of the transaction that began it undoes it),
// and one whose connection went away is finished by another, which reads
// every row even when no column changed.
TEST(OpenAlterGuardTest, AnOpenAlterOutlivesOtherRollbacksAndIsFinishedElsewhere) {
  TempPath path;
  TestDb b(path.str());
  {
    TestDb a(path.str());
    a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
           "CREATE TABLE o (x);"
           "SELECT crsql_begin_alter('t'); COMMIT;"
           "BEGIN; INSERT INTO o VALUES (1); ROLLBACK;"
           "INSERT INTO t VALUES (1, 'during')");
    // Still open here: commit would work; left open, as by a crash.
    EXPECT_THAT(b.Error("UPDATE t SET v = 'b'"), HasSubstr("t is being altered"));
  }
  b.Exec("SELECT crsql_begin_alter('t'); SELECT crsql_commit_alter('t');");
  EXPECT_EQ(b.Query("SELECT hex(pk), cid, val FROM crsql_changes"),
            (Rows{{"'010901'", "'v'", "'during'"}}));
}

// A crsql_commit_alter that a rollback undoes (of its transaction, or to
// a savepoint before it) leaves the alter open, and this connection's: it
// writes (unrecorded, as in any alter) and commits again; another
// connection stays refused until then.
TEST(OpenAlterGuardTest, ACommitRolledBackLeavesTheAlterOpenAndOurs) {
  for (const char* undo : {"BEGIN; SELECT crsql_commit_alter('t'); ROLLBACK;",
                           "BEGIN; SAVEPOINT s; SELECT crsql_commit_alter('t'); ROLLBACK TO s;"
                           "RELEASE s; COMMIT;",
                           "BEGIN; SAVEPOINT s; SELECT crsql_commit_alter('t'); ROLLBACK TO s;"
                           "UPDATE t SET v = 'in-txn'; COMMIT;",
                           "BEGIN; SAVEPOINT s; SELECT crsql_commit_alter('t'); ROLLBACK TO s;"}) {
    SCOPED_TRACE(undo);
    TempPath path;
    TestDb a(path.str()), b(path.str());
    a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
           "INSERT INTO t VALUES (1, 'a');"
           "SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN w; COMMIT;");
    a.Exec(undo);
    EXPECT_EQ(a.One("SELECT crsql_as_crr('t')"), "'OK'");  // ours: nothing to do
    if (!sqlite3_get_autocommit(a.get())) a.Exec("COMMIT");
    EXPECT_THAT(b.Error("UPDATE t SET v = 'b'"), HasSubstr("t is being altered"));
    a.Exec("UPDATE t SET w = 'during'");
    a.Exec("SELECT crsql_commit_alter('t')");
    a.Exec("UPDATE t SET v = 'after'");
    b.Exec("INSERT INTO t VALUES (2, 'b', 'wb')");
    EXPECT_EQ(a.Query("SELECT hex(pk), cid, val FROM crsql_changes WHERE cid != '-1' ORDER BY pk, "
                      "cid"),
              (Rows{{"'010901'", "'v'", "'after'"},
                    {"'010901'", "'w'", "'during'"},
                    {"'010902'", "'v'", "'b'"},
                    {"'010902'", "'w'", "'wb'"}}));
  }
}

// A crsql_commit_alter that cannot open its savepoint (called from a write
// statement still running) changes nothing: the alter stays open, and this
// connection's.
TEST(OpenAlterGuardTest, ACommitRefusedItsSavepointLeavesTheAlterOurs) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'a'); CREATE TABLE x (c);"
         "SELECT crsql_begin_alter('t'); COMMIT;");
  EXPECT_THAT(a.Error("INSERT INTO x (c) SELECT crsql_commit_alter('t')"),
              HasSubstr("SQL statements in progress"));
  EXPECT_EQ(a.One("SELECT count(*) FROM x"), "0");
  EXPECT_THAT(b.Error("UPDATE t SET v = 'b'"), HasSubstr("t is being altered"));
  a.Exec("UPDATE t SET v = 'during'; SELECT crsql_commit_alter('t');");
  b.Exec("UPDATE t SET v = 'b'");
  EXPECT_EQ(a.Query("SELECT cid, val FROM crsql_changes WHERE cid != '-1'"),
            (Rows{{"'v'", "'b'"}}));
}

// A commit rolled back with the transaction that began the alter undoes
// the alter too: the table records as before it, and nothing is open.
TEST(OpenAlterGuardTest, ACommitRolledBackWithItsBeginLeavesNoAlter) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "BEGIN; SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN w;"
         "SELECT crsql_commit_alter('t'); ROLLBACK;");
  EXPECT_THAT(a.Error("SELECT crsql_commit_alter('t')"), HasSubstr("without crsql_begin_alter"));
  b.Exec("INSERT INTO t VALUES (1, 'b')");
  a.Exec("UPDATE t SET v = 'a'");
  EXPECT_EQ(a.Query("SELECT cid, val FROM crsql_changes WHERE cid != '-1'"),
            (Rows{{"'v'", "'a'"}}));
}

// Another connection begins an alter of t (with `alter`, then its COMMIT)
// and goes away: `a`, which holds no alter of t, is refused a write by its
// guard, changes nothing, then takes the alter over, and records again.
void ExpectGuardedUntilTakenOver(const TempPath& path, TestDb& a, const std::string& alter) {
  {
    TestDb b(path.str());
    b.Exec("BEGIN; SELECT crsql_begin_alter('t'); " + alter + " COMMIT;");
    EXPECT_THAT(a.Error("INSERT INTO t (id, v) VALUES (1, 'a')"), HasSubstr("t is being altered"));
  }
  EXPECT_EQ(a.One("SELECT count(*) FROM t"), "0");
  a.Exec("SELECT crsql_begin_alter('t'); SELECT crsql_commit_alter('t');"
         "INSERT INTO t (id, v) VALUES (1, 'a')");
  EXPECT_EQ(a.One("SELECT val FROM crsql_changes WHERE cid = 'v'"), "'a'");
}

// A ROLLBACK TO a savepoint from before crsql_begin_alter undoes the alter
// (its triggers are back): the connection does not take another
// connection's later alter of the table for its own (it wrote unrecorded
// past that alter's guard), and can take that alter over when it is
// abandoned.
TEST(OpenAlterGuardTest, AnAlterUndoneByRollbackToIsNotThisConnectionsAnyMore) {
  TempPath path;
  TestDb a(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "BEGIN; SAVEPOINT sp; SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN x;"
         "ROLLBACK TO sp; RELEASE sp; COMMIT;");
  ExpectGuardedUntilTakenOver(path, a, "ALTER TABLE t ADD COLUMN y;");
  // Undone and begun again in one transaction: the alter is open, and its
  // commit completes it.
  a.Exec("BEGIN; SAVEPOINT sp; SELECT crsql_begin_alter('t'); ROLLBACK TO sp;"
         "SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN z; SELECT crsql_commit_alter('t');"
         "COMMIT; UPDATE t SET z = 'zz'");
  EXPECT_EQ(a.One("SELECT val FROM crsql_changes WHERE cid = 'z'"), "'zz'");
}

// The same when the rollback also undid crsql_as_crr: no trigger of either
// kind is left, and the table made a CRR again is not taken for altered.
TEST(OpenAlterGuardTest, AnAlterUndoneWithItsCrrIsForgottenToo) {
  TempPath path;
  TestDb a(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v);"
         "BEGIN; SAVEPOINT s; SELECT crsql_as_crr('t'); SELECT crsql_begin_alter('t');"
         "ROLLBACK TO s; RELEASE s; COMMIT; SELECT crsql_as_crr('t');");
  ExpectGuardedUntilTakenOver(path, a, "");
}

// An alter taken over while its connection is alive: that connection's
// commit says what happened.
TEST(OpenAlterGuardTest, ACommitAfterAnotherConnectionFinishedTheAlterSaysSo) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "SELECT crsql_begin_alter('t'); COMMIT;");
  b.Exec("SELECT crsql_begin_alter('t'); SELECT crsql_commit_alter('t');");
  EXPECT_THAT(a.Error("SELECT crsql_commit_alter('t')"),
              HasSubstr("or another connection finished it (its crsql_commit_alter)"));
}

// An alter another connection took over (its begin) is not this
// connection's any more, though it is alive and began it: its writes of the
// table are refused by the new owner's guard and change nothing (before,
// they passed as the owner's and were never recorded), and its commit says
// so, leaving the alter to the new owner.
TEST(OpenAlterGuardTest, AnAlterTakenOverIsNotTheFirstConnectionsAnyMore) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'x'); SELECT crsql_begin_alter('t'); COMMIT;");
  b.Exec("BEGIN; SELECT crsql_begin_alter('t'); COMMIT;");
  const Rows changes = a.Query(kChanges);
  EXPECT_THAT(a.Error("UPDATE t SET v = 'a' WHERE id = 1"), HasSubstr("t is being altered"));
  EXPECT_THAT(a.Error("INSERT INTO t VALUES (2, 'a')"), HasSubstr("t is being altered"));
  EXPECT_EQ(a.Query("SELECT * FROM t"), (Rows{{"1", "'x'"}}));
  EXPECT_THAT(a.Error("SELECT crsql_commit_alter('t')"), HasSubstr("another connection took it over"));
  b.Exec("ALTER TABLE t ADD COLUMN w; SELECT crsql_commit_alter('t');");
  EXPECT_EQ(a.Query(kChanges), changes);
  a.Exec("UPDATE t SET v = 'a' WHERE id = 1");  // recorded again
  EXPECT_EQ(a.One("SELECT val FROM crsql_changes WHERE cid = 'v'"), "'a'");
}

// Its commit, as its first act after the takeover, says so too.
TEST(OpenAlterGuardTest, ACommitAfterATakeoverSaysSo) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "BEGIN; SELECT crsql_begin_alter('t'); COMMIT;");
  b.Exec("BEGIN; SELECT crsql_begin_alter('t'); COMMIT;");
  EXPECT_THAT(a.Error("SELECT crsql_commit_alter('t')"),
              HasSubstr("was taken over by another connection's crsql_begin_alter('t')"));
  b.Exec("SELECT crsql_commit_alter('t')");
}

// The same when the alter was finished by another connection and a third
// began a new one: the first connection's writes meet the new alter's
// guard, which is not its own.
TEST(OpenAlterGuardTest, AnAlterFinishedElsewhereGivesNoPassToALaterOne) {
  TempPath path;
  TestDb a(path.str()), b(path.str()), c(path.str());
  a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'x'); BEGIN; SELECT crsql_begin_alter('t'); COMMIT;");
  b.Exec("SELECT crsql_begin_alter('t'); SELECT crsql_commit_alter('t');");
  c.Exec("BEGIN; SELECT crsql_begin_alter('t'); COMMIT;");
  EXPECT_THAT(a.Error("UPDATE t SET v = 'a' WHERE id = 1"), HasSubstr("t is being altered"));
  EXPECT_THAT(a.Error("DELETE FROM t"), HasSubstr("t is being altered"));
  EXPECT_EQ(a.Query("SELECT * FROM t"), (Rows{{"1", "'x'"}}));
  c.Exec("SELECT crsql_commit_alter('t')");
  a.Exec("UPDATE t SET v = 'a' WHERE id = 1");
  EXPECT_EQ(a.Query("SELECT val, db_version FROM crsql_changes WHERE cid = 'v'"),
            (Rows{{"'a'", "2"}}));
}

// A CRR's table dropped and made again without crsql_as_table (same shape
// or not) has no recording triggers: its leftover metadata would show the
// new table's rows under the dropped rows' clocks, merges into it would be
// recorded while its own writes were not. Reads skip it (§8.2, as when no
// table is left), merges are refused by name and change nothing, until
// crsql_as_crr makes it a CRR again.
TEST(DroppedCrrTest, ATableMadeAgainUnderTheNameIsNoCrrUntilAsCrr) {
  for (const char* remake : {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a)",
                             "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a, c)"}) {
    SCOPED_TRACE(remake);
    TestDb db;
    db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');"
            "CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('u');"
            "INSERT INTO t VALUES (1, 'x'); INSERT INTO u VALUES (1, 'y'); DROP TABLE t;");
    db.Exec(std::string(remake) + "; INSERT INTO t (id, a) VALUES (1, 'new'), (2, 'two')");
    EXPECT_EQ(db.Query("SELECT \"table\", val FROM crsql_changes"), (Rows{{"'u'", "'y'"}}));
    const std::string version = db.One("SELECT crsql_db_version()");
    const std::string err = db.Error(
        "INSERT INTO crsql_changes VALUES ('t', X'010903', 'a', 'remote', 1, 1, "
        "X'00112233445566778899AABBCCDDEEFF')");
    EXPECT_THAT(err, HasSubstr("CRR t has lost its recording triggers"));
    EXPECT_THAT(err, HasSubstr("SELECT crsql_as_crr('t')"));
    EXPECT_EQ(db.One("SELECT count(*) FROM t"), "2");
    EXPECT_EQ(db.One("SELECT crsql_db_version()"), version);
    // Other CRRs merge as before.
    db.Exec("INSERT INTO crsql_changes VALUES ('u', X'010902', 'b', 'z', 1, 1, "
            "X'00112233445566778899AABBCCDDEEFF')");
    db.Exec("SELECT crsql_as_crr('t')");
    EXPECT_EQ(db.Query("SELECT hex(pk), val FROM crsql_changes WHERE \"table\" = 't' AND cid = 'a' "
                       "ORDER BY pk"),
              (Rows{{"'010901'", "'new'"}, {"'010902'", "'two'"}}));
    db.Exec("INSERT INTO crsql_changes VALUES ('t', X'010903', 'a', 'remote', 1, 1, "
            "X'00112233445566778899AABBCCDDEEFF')");
    EXPECT_EQ(db.One("SELECT a FROM t WHERE id = 3"), "'remote'");
  }
}

// Begins an alter of t(id, v) that its COMMIT leaves open, and rebuilds the
// table the 12-step way with `columns` after id (v first): the old table's
// guard triggers go with it.
std::string RebuildInAnOpenAlter(const std::string& columns) {
  return "BEGIN; SELECT crsql_begin_alter('t');"
         "CREATE TABLE t_new (id INTEGER PRIMARY KEY NOT NULL, " + columns + ");"
         "INSERT INTO t_new (id, v) SELECT id, v FROM t; DROP TABLE t;"
         "ALTER TABLE t_new RENAME TO t; COMMIT;";
}

// An alter that rebuilt its table (the 12-step way, which takes the guard
// triggers along) and stays open across COMMIT is still an open alter to
// other connections: they keep reading the CRR's changes (a cursor moving
// past them meanwhile would never see them again), and their merges into
// it are refused as during any alter; begin/commit on a table made again
// behind the engine's back is refused instead, pointing to crsql_as_crr.
TEST(DroppedCrrTest, AnAlterThatRebuiltItsTableIsNoDroppedCrr) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('u');"
         "INSERT INTO t VALUES (1, 'x');" + RebuildInAnOpenAlter("v TEXT"));
  b.Exec("INSERT INTO u VALUES (1, 'y')");
  EXPECT_EQ(b.Query("SELECT \"table\", val FROM crsql_changes WHERE cid = 'v' ORDER BY 1"),
            (Rows{{"'t'", "'x'"}, {"'u'", "'y'"}}));
  EXPECT_THAT(b.Error("INSERT INTO crsql_changes VALUES ('t', X'010902', 'v', 'p', 1, 1, "
                      "X'00112233445566778899AABBCCDDEEFF')"),
              HasSubstr("t is being altered"));
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "1");
  a.Exec("SELECT crsql_commit_alter('t')");
  b.Exec("INSERT INTO crsql_changes VALUES ('t', X'010902', 'v', 'p', 1, 1, "
         "X'00112233445566778899AABBCCDDEEFF')");
  EXPECT_EQ(b.One("SELECT v FROM t WHERE id = 2"), "'p'");

  TestDb c;
  c.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'old'); DROP TABLE t;"
         "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); INSERT INTO t VALUES (1, 'NEW');");
  EXPECT_THAT(c.Error("SELECT crsql_begin_alter('t')"), HasSubstr("lost its recording triggers"));
  c.Exec("SELECT crsql_as_crr('t')");
  EXPECT_EQ(c.Query("SELECT val, db_version FROM crsql_changes WHERE cid = 'v'"),
            (Rows{{"'NEW'", "2"}}));
}

// One recording trigger dropped by hand (DROP TABLE takes all three): the
// table and its history stand, so reads go on; the table's other writes
// and its merges are refused, naming the loss, and crsql_as_crr makes the
// triggers again through an alter, keeping the history (the tombstone of
// row 3 and row 1's col_version 2). A write whose own trigger is gone
// fires nothing and cannot be refused: the delete of row 2 goes
// unrecorded (its records are dropped when the triggers are made again,
// and no tombstone replicates), as the docs say.
TEST(DroppedCrrTest, ADroppedRecordingTriggerStopsTheTablesWritesUntilRemade) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'x'), (2, 'w'), (3, 'v'); DELETE FROM t WHERE id = 3;"
          "UPDATE t SET a = 'x2' WHERE id = 1; DROP TRIGGER t__crsync_dtrig;");
  const Rows changes = db.Query(kChanges);
  EXPECT_EQ(changes.size(), 3u);  // read as before: a, a, and row 3's tombstone
  EXPECT_THAT(db.Error("INSERT INTO t VALUES (4, 'y')"), HasSubstr("has lost a recording trigger"));
  EXPECT_THAT(db.Error("UPDATE t SET a = 'z'"), HasSubstr("has lost a recording trigger"));
  EXPECT_THAT(db.Error("INSERT INTO crsql_changes VALUES ('t', X'010905', 'a', 'p', 1, 1, "
                       "X'00112233445566778899AABBCCDDEEFF')"),
              HasSubstr("has lost a recording trigger"));
  db.Exec("DELETE FROM t WHERE id = 2");
  EXPECT_EQ(db.Query("SELECT * FROM t"), (Rows{{"1", "'x2'"}}));
  db.Exec("SELECT crsql_as_crr('t'); DELETE FROM t WHERE id = 1");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, cl, col_version FROM crsql_changes ORDER BY pk"),
            (Rows{{"'010901'", "'-1'", "2", "2"}, {"'010903'", "'-1'", "2", "2"}}));
}

// crsql_as_crr on another connection while an alter that rebuilt its table
// is open (its guard gone with the old table, its mark standing) is
// refused like any write there: converting afresh would drop the CRR's
// history under the open alter.
TEST(DroppedCrrTest, AsCrrDuringAnAlterThatRebuiltItsTableIsRefused) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'x'); DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (2, 'y');" +
         RebuildInAnOpenAlter("v TEXT, w"));
  EXPECT_THAT(b.Error("SELECT crsql_as_crr('t')"), HasSubstr("t is being altered"));
  a.Exec("SELECT crsql_commit_alter('t')");
  EXPECT_EQ(b.One("SELECT cl FROM crsql_changes WHERE pk = X'010901'"), "2");
}


// A CRR's table renamed without crsql_as_table: its triggers moved along,
// and its writes are refused by name instead of recorded under the old one.
TEST(AlterRenameTableTest, WritesOfARenamedCrrAreRefused) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'a'); ALTER TABLE t RENAME TO u;");
  EXPECT_THAT(db.Error("UPDATE u SET v = 'b'"),
              HasSubstr("CRR t has no table of that name any more (renamed or dropped"));
  EXPECT_EQ(db.Query("SELECT * FROM u"), (Rows{{"1", "'a'"}}));
  db.Exec("ALTER TABLE u RENAME TO t; UPDATE t SET v = 'b'");
  EXPECT_EQ(db.One("SELECT val FROM crsql_changes"), "'b'");
}

// An alter whose connection went away before its commit is finished by
// another one, which then records the writes made meanwhile.
TEST(OpenAlterGuardTest, AnAbandonedAlterIsFinishedByAnotherConnection) {
  TempPath path;
  TestDb b(path.str());
  {
    TestDb a(path.str());
    a.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
           "INSERT INTO t VALUES (1, 'a');"
           "SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN w; COMMIT;"
           "UPDATE t SET w = 'set'");
  }
  EXPECT_THAT(b.Error("UPDATE t SET v = 'b'"), HasSubstr("t is being altered"));
  b.Exec("SELECT crsql_begin_alter('t'); SELECT crsql_commit_alter('t');");
  b.Exec("UPDATE t SET v = 'b'");
  EXPECT_EQ(b.Query("SELECT cid, val FROM crsql_changes ORDER BY cid"),
            (Rows{{"'v'", "'b'"}, {"'w'", "'set'"}}));
}

// Another connection's alter without begin/commit is noticed at this
// connection's next write and merge (ChangeApplier's too).
TEST(UnrecordedAlterTest, AnUnrecordedAlterElsewhereStopsWritesHere) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'b1', 'c1');");
  a.Exec("UPDATE t SET c = 'c0'");
  b.Exec("ALTER TABLE t ADD COLUMN d");
  EXPECT_THAT(a.Error("UPDATE t SET d = 1"), HasSubstr("t was altered without crsql_begin_alter"));
  EXPECT_THAT(a.Error("INSERT INTO crsql_changes VALUES ('t', X'010901', 'd', 'd1', 1, 7, "
                      "X'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB')"),
              HasSubstr("t was altered"));
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(a.get(), &applier));
  Status s = applier->Apply({TextChange("t", SmallIntPk(1), "b", "b9", 9, 7, std::string(16, 'x'))}, 0,
                            nullptr);
  EXPECT_THAT(s.message(), HasSubstr("t was altered"));
  EXPECT_EQ(a.Query("SELECT * FROM t"), (Rows{{"1", "'b1'", "'c0'", "NULL"}}));
}

// A merge refused by the guard of an alter open elsewhere, with no column
// changed yet, is this database's condition (kFailedPrecondition: the
// sidecar reports Error 4 and tries again), not a bad change: it was
// reported as the latter, blaming the peer that sent it.
TEST(OpenAlterGuardTest, AMergeRefusedByTheGuardIsAPrecondition) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b, c); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'b1', 'c1');"
         "BEGIN; SELECT crsql_begin_alter('t'); COMMIT;");
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  std::vector<Change> batch;
  for (int i = 0; i < 12; ++i) {  // a bulk run first, then row by row
    batch.push_back(TextChange("t", SmallIntPk(i + 1), "b", "x" + std::to_string(i), 9, 7,
                               std::string(16, 'x')));
  }
  for (size_t n : {size_t{1}, batch.size()}) {
    SCOPED_TRACE(n);
    Status s = applier->Apply(std::vector<Change>(batch.begin(), batch.begin() + n), 0, nullptr);
    EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("t is being altered"));
  }
  EXPECT_EQ(b.Query("SELECT * FROM t"), (Rows{{"1", "'b1'", "'c1'"}}));
  a.Exec("SELECT crsql_commit_alter('t')");
  EXPECT_OK(applier->Apply(batch, 0, nullptr));
  EXPECT_EQ(b.Int("SELECT count(*) FROM t"), 12);
}

// While another connection's alter is open, every merge into the table is
// refused as waiting for it, also one that would write metadata only (a
// tombstone of an unknown row, a clock of an equal value) or that ties on
// a row the alter's connection deleted unrecorded; nothing changes.
TEST(OpenAlterGuardTest, AMergeOfMetadataOnlyWaitsForAnotherConnectionsAlter) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
         "INSERT INTO t VALUES (1, 'x'), (2, 'y');"
         "SELECT crsql_begin_alter('t'); COMMIT; DELETE FROM t WHERE id = 2;");
  const Rows rows = b.Query("SELECT * FROM t"), changes = b.Query(
      "SELECT \"table\", hex(pk), cid, val, col_version, db_version, cl, seq FROM crsql_changes");
  const std::string site = "X'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'";
  for (const std::string& change :
       {"'t', X'010909', '-1', NULL, 2, 4, " + site + ", 2, 0",  // tombstone, unknown row
        "'t', X'010901', 'v', 'x', 7, 4, " + site + ", 1, 0",    // equal value, higher clock
        "'t', X'010902', 'v', 'zzz', 1, 4, " + site + ", 1, 0"}) {  // tie on the deleted row
    SCOPED_TRACE(change);
    EXPECT_THAT(b.Error("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, "
                        "db_version, site_id, cl, seq) VALUES (" + change + ")"),
                HasSubstr("t is being altered"));
  }
  EXPECT_EQ(b.Query("SELECT * FROM t"), rows);
  EXPECT_EQ(b.Query("SELECT \"table\", hex(pk), cid, val, col_version, db_version, cl, seq FROM "
                    "crsql_changes"),
            changes);
  // The alter's own connection merges on (a tombstone), and after its
  // commit everyone does.
  a.Exec("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, "
         "cl, seq) VALUES ('t', X'010908', '-1', NULL, 2, 4, " + site + ", 2, 0)");
  a.Exec("SELECT crsql_commit_alter('t')");
  b.Exec("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, "
         "cl, seq) VALUES ('t', X'010909', '-1', NULL, 2, 4, " + site + ", 2, 0)");
  EXPECT_EQ(b.Query("SELECT hex(pk), cl FROM crsql_changes WHERE cid = '-1' ORDER BY pk"),
            (Rows{{"'010908'", "2"}, {"'010909'", "2"}}));
}

// A connection whose read transaction began before another connection
// took its alter over still sees the alter as its own; its commit cannot
// write there, and says to retry when the database is free (nothing to fix
// in the table); after that transaction it learns of the takeover.
TEST(OpenAlterGuardTest, ACommitInAStaleSnapshotSaysToRetryNotToFixTheTable) {
  TempPath path;
  TestDb a(path.str()), b(path.str());
  a.Exec("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v);"
         "SELECT crsql_as_crr('t');");
  b.Exec("SELECT crsql_begin_alter('t'); COMMIT; BEGIN; SELECT * FROM t;");
  a.Exec("SELECT crsql_begin_alter('t'); COMMIT;");
  const std::string err = b.Error("SELECT crsql_commit_alter('t')");
  EXPECT_THAT(err, HasSubstr("database is locked"));
  EXPECT_THAT(err, HasSubstr("again when the database is free"));
  EXPECT_THAT(err, Not(HasSubstr("fix the table")));
  b.Exec("ROLLBACK");
  EXPECT_THAT(b.Error("SELECT crsql_commit_alter('t')"), HasSubstr("was taken over"));
  a.Exec("SELECT crsql_commit_alter('t'); INSERT INTO t VALUES (1, 'a');");
  EXPECT_EQ(b.One("SELECT val FROM crsql_changes WHERE cid = 'v'"), "'a'");
}

}  // namespace
}  // namespace crsync
