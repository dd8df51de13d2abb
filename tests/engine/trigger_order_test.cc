// The recording triggers must fire before a user's AFTER trigger that can
// stop a row with RAISE(IGNORE) or RAISE(FAIL) once it is written: SQLite
// fires the newest trigger first, so one made after crsql_as_crr would
// hide writes from them (engine/trigger_order.h).
#include <string>

#include "engine/trigger_order.h"
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

const char kTable[] = "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');";

// Rows whose value has no change describing it.
std::string Unrecorded(TestDb& db) {
  return db.One("SELECT group_concat(id) FROM t WHERE NOT EXISTS (SELECT 1 FROM crsql_changes c "
                "WHERE c.pk = crsql_pack_columns(t.id) AND c.cid = 'b' AND c.val IS t.b)");
}

TEST(TriggerOrderTest, AnIgnoringTriggerMadeLaterIsRefusedUntilAsCrrRunsAgain) {
  TestDb db;
  db.Exec(kTable);
  db.Exec("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');"
          "CREATE TRIGGER q AFTER UPDATE ON t WHEN NEW.b = 'skip' BEGIN SELECT RAISE(IGNORE); END;");
  const std::string update = "UPDATE t SET b = CASE id WHEN 2 THEN 'skip' ELSE b || '2' END";
  const std::string err = db.Error(update);
  EXPECT_THAT(err, HasSubstr("trigger q on t fires before crsync's recording triggers"));
  EXPECT_THAT(err, HasSubstr("SELECT crsql_as_crr('t') again"));
  EXPECT_EQ(db.One("SELECT group_concat(b) FROM t"), "'a,b,c'") << "nothing changed";
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");

  db.Exec("SELECT crsql_as_crr('t')");
  db.Exec(update);
  EXPECT_EQ(db.One("SELECT group_concat(b) FROM t"), "'a2,skip,c2'");
  EXPECT_EQ(Unrecorded(db), "NULL");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE db_version = 2"), "3");
  // Called again with nothing to fix, it changes nothing.
  const std::string schema = db.One("SELECT group_concat(name) FROM sqlite_master");
  db.Exec("SELECT crsql_as_crr('t')");
  EXPECT_EQ(db.One("SELECT group_concat(name) FROM sqlite_master"), schema);
}

TEST(TriggerOrderTest, AFailingTriggerMadeLaterIsRefusedUntilAsCrrRunsAgain) {
  TestDb db;
  db.Exec(kTable);
  db.Exec("CREATE TRIGGER q AFTER INSERT ON t WHEN NEW.b = 'bad' BEGIN SELECT RAISE(FAIL, 'no "
          "bad'); END;");
  EXPECT_THAT(db.Error("INSERT INTO t VALUES (1, 'ok'), (2, 'bad')"),
              HasSubstr("RAISE(IGNORE) or RAISE(FAIL)"));
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "0");
  db.Exec("SELECT crsql_as_crr('t')");
  EXPECT_THAT(db.Error("INSERT INTO t VALUES (1, 'ok'), (2, 'bad')"), HasSubstr("no bad"));
  // RAISE(FAIL) keeps the rows written before it, and both are recorded
  // now: the recording trigger ran before q stopped row 2.
  EXPECT_EQ(db.One("SELECT group_concat(id) FROM t"), "'1,2'");
  EXPECT_EQ(Unrecorded(db), "NULL");
}

// Harmless triggers made later are not refused: BEFORE triggers (an
// ignored row is never written), and AFTER triggers that stop nothing or
// only name RAISE in a string or a comment.
TEST(TriggerOrderTest, HarmlessLaterTriggersAreAccepted) {
  TestDb db;
  db.Exec(kTable);
  db.Exec("CREATE TABLE log (x);"
          "CREATE TRIGGER b1 BEFORE INSERT ON t WHEN NEW.b = 'drop' BEGIN SELECT RAISE(IGNORE); END;"
          "CREATE TRIGGER b2 INSERT ON t WHEN NEW.b = 'drop2' BEGIN SELECT RAISE(IGNORE); END;"
          "CREATE TRIGGER a1 AFTER INSERT ON t BEGIN INSERT INTO log VALUES ('RAISE(IGNORE)'); "
          "/* RAISE(FAIL) */ END;"
          "CREATE TRIGGER a2 AFTER INSERT ON t WHEN NEW.b = 'x' BEGIN SELECT RAISE(ABORT, 'no x'); END;");
  db.Exec("INSERT INTO t VALUES (1, 'keep'), (2, 'drop'), (3, 'drop2'), (4, 'keep')");
  EXPECT_EQ(db.One("SELECT group_concat(id) FROM t"), "'1,4'");
  EXPECT_EQ(Unrecorded(db), "NULL");
  EXPECT_THAT(db.Error("INSERT INTO t VALUES (5, 'x')"), HasSubstr("no x"));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE pk = crsql_pack_columns(5)"), "0");
}

// A TEMP trigger fires before every trigger of main: crsql_as_crr cannot
// put the recording triggers first, and the error says what to do. (The
// refusal comes from the recording trigger: a statement all of whose rows
// such a trigger stops never reaches it.)
TEST(TriggerOrderTest, AnIgnoringTempTriggerIsRefused) {
  TestDb db;
  db.Exec(kTable);
  db.Exec("INSERT INTO t VALUES (0, 'before')");  // checked once, and fine
  db.Exec("CREATE TEMP TRIGGER q AFTER INSERT ON main.t WHEN NEW.b = 'skip' BEGIN "
          "SELECT RAISE(IGNORE); END;");
  db.Exec("SELECT crsql_as_crr('t')");
  const std::string err = db.Error("INSERT INTO t VALUES (1, 'a')");
  EXPECT_THAT(err, HasSubstr("TEMP trigger q on t"));
  EXPECT_THAT(err, HasSubstr("make it in main instead"));
  db.Exec("DROP TRIGGER temp.q; INSERT INTO t VALUES (1, 'a')");
  EXPECT_EQ(Unrecorded(db), "NULL");
}

// Only writes of the event such a trigger follows are refused; a TEMP
// trigger on a TEMP table that shadows the CRR's name is not the CRR's.
TEST(TriggerOrderTest, OnlyTheTriggersOwnEventAndTableAreRefused) {
  TestDb db;
  db.Exec(kTable);
  db.Exec("CREATE TRIGGER q AFTER DELETE ON t WHEN OLD.b = 'keep' BEGIN SELECT RAISE(IGNORE); END;"
          "CREATE TEMP TABLE t (id, b);"
          "CREATE TEMP TRIGGER tq AFTER INSERT ON t BEGIN SELECT RAISE(IGNORE); END;");
  db.Exec("INSERT INTO main.t VALUES (1, 'a'), (2, 'b'); UPDATE main.t SET b = 'c' WHERE id = 2;");
  EXPECT_EQ(Unrecorded(db), "NULL");
  EXPECT_THAT(db.Error("DELETE FROM main.t WHERE id = 1"), HasSubstr("trigger q on t"));
  EXPECT_EQ(db.One("SELECT count(*) FROM main.t"), "2");
}

// A connection that cannot write has no rows to hide: crsql_as_crr stays
// the read-only no-op it was for a standing CRR.
TEST(TriggerOrderTest, AsCrrOnAQueryOnlyConnectionMakesNoTriggers) {
  TestDb db;
  db.Exec(kTable);
  db.Exec("CREATE TRIGGER q AFTER INSERT ON t BEGIN SELECT 1; END; PRAGMA query_only = 1;");
  EXPECT_EQ(db.One("SELECT crsql_as_crr('t')"), "'OK'");
  db.Exec("PRAGMA query_only = 0; SELECT crsql_as_crr('t');");
  EXPECT_GT(db.Int("SELECT rowid FROM sqlite_master WHERE name = 't__crsync_itrig'"),
            db.Int("SELECT rowid FROM sqlite_master WHERE name = 'q'"))
      << "made anew, after q";
}

// A trigger made before crsql_as_crr fires after the recording triggers:
// nothing to refuse, and every write is recorded.
TEST(TriggerOrderTest, AnIgnoringTriggerMadeBeforeAsCrrIsFine) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b);"
          "CREATE TRIGGER q AFTER UPDATE ON t WHEN NEW.b = 'skip' BEGIN SELECT RAISE(IGNORE); END;"
          "SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'a'), (2, 'b');"
          "UPDATE t SET b = 'skip'");
  EXPECT_EQ(Unrecorded(db), "NULL");
}

TEST(TriggerOrderTest, InspectTriggerSqlReadsTokens) {
  struct Case {
    const char* sql;
    bool after, stops;
    const char* event;
    const char* on_schema;
  };
  const Case kCases[] = {
      {"CREATE TRIGGER q AFTER UPDATE OF b ON t BEGIN SELECT RAISE(IGNORE); END", true, true,
       "UPDATE", ""},
      {"create temp trigger if not exists main.\"q x\" after insert on \"main\".t begin select "
       "raise ( fail , 'm' ); end",
       true, true, "INSERT", "main"},
      {"CREATE TRIGGER [after] BEFORE DELETE ON temp.t BEGIN SELECT RAISE(IGNORE); END", false,
       true, "DELETE", "temp"},
      {"CREATE TRIGGER q DELETE ON t BEGIN SELECT RAISE(IGNORE); END", false, true, "DELETE", ""},
      {"CREATE TRIGGER q AFTER DELETE ON t BEGIN SELECT 'RAISE(IGNORE)'; -- RAISE(FAIL)\n END",
       true, false, "DELETE", ""},
      {"CREATE TRIGGER q AFTER DELETE ON t FOR EACH ROW WHEN OLD.b BEGIN SELECT RAISE(ABORT, 'x'), "
       "RAISE(ROLLBACK, 'y'); END",
       true, false, "DELETE", ""},
      {"CREATE TRIGGER q /* AFTER */ INSTEAD OF DELETE ON v BEGIN SELECT 1; END", false, false,
       "DELETE", ""},
      {"", false, false, "", ""},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.sql);
    const TriggerSqlTraits t = InspectTriggerSql(c.sql);
    EXPECT_EQ(t.after, c.after);
    EXPECT_EQ(t.stops_rows, c.stops);
    EXPECT_EQ(t.event, c.event);
    EXPECT_EQ(t.on_schema, c.on_schema);
  }
}

}  // namespace
}  // namespace crsync
