// crr-semantics §3-§4 and §15: crsql_as_crr, crsql_as_table, the config
// table, and the catalog of CRRs.
#include <string>

#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

TEST(AsCrrTest, EligibilityExamplesOfTheSpec) {
  TestDb db;
  db.Exec(
      "CREATE TABLE a (id INTEGER PRIMARY KEY NOT NULL, b);"
      "CREATE TABLE b (x NOT NULL, y NOT NULL, z, PRIMARY KEY (y, x));"
      "CREATE TABLE c (id PRIMARY KEY, name);"
      "CREATE TABLE d (a, b);"
      "CREATE TABLE e (id PRIMARY KEY NOT NULL, email UNIQUE);"
      "CREATE TABLE f (id INTEGER PRIMARY KEY AUTOINCREMENT, v);"
      "CREATE TABLE g (id PRIMARY KEY NOT NULL, p REFERENCES a(id));"
      "CREATE TABLE h (id PRIMARY KEY NOT NULL, v NOT NULL);"
      "CREATE TABLE i (id PRIMARY KEY NOT NULL, v NOT NULL DEFAULT 0);"
      "CREATE TABLE j (id PRIMARY KEY NOT NULL, v);"
      "CREATE UNIQUE INDEX j_v ON j(v);"
      "CREATE TABLE k (id PRIMARY KEY NOT NULL, \"-1\");"
      "CREATE VIEW v AS SELECT * FROM a;"
      "CREATE TEMP TABLE tmp (id PRIMARY KEY, x);");
  EXPECT_EQ(db.One("SELECT crsql_as_crr('a')"), "'OK'");
  EXPECT_EQ(db.One("SELECT crsql_as_crr('b')"), "'OK'");
  EXPECT_EQ(db.One("SELECT crsql_as_crr('c')"), "'OK'");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('d')"), HasSubstr("has no primary key"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('e')"), HasSubstr("unique indices"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('f')"), HasSubstr("auto-increment"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('g')"), HasSubstr("foreign key"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('h')"), HasSubstr("NOT NULL column"));
  EXPECT_EQ(db.One("SELECT crsql_as_crr('i')"), "'OK'");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('j')"), HasSubstr("unique indices"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('k')"), HasSubstr("reserved"));
  db.Exec("CREATE TABLE k2 (\"-1\" PRIMARY KEY NOT NULL, v)");  // E8 holds for key columns too
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('k2')"), HasSubstr("has a column named -1, which is reserved"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('v')"), HasSubstr("not an ordinary table"));
  // E9: a key that does not compare as bytes, declared on the column or in
  // the key clause, rowid or WITHOUT ROWID; a collation on another column
  // and BINARY spelled out are fine.
  db.Exec("CREATE TABLE n1 (id TEXT PRIMARY KEY COLLATE NOCASE NOT NULL, v);"
          "CREATE TABLE n2 (a NOT NULL, b NOT NULL, v, PRIMARY KEY (a, b COLLATE RTRIM)) WITHOUT ROWID;"
          "CREATE TABLE n3 (id TEXT COLLATE binary PRIMARY KEY NOT NULL, v COLLATE NOCASE);");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('n1')"),
              HasSubstr("Table n1 has primary key column id with collation NOCASE. A CRR's key must "
                        "compare as bytes (BINARY)"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('n2')"),
              HasSubstr("Table n2 has primary key column b with collation RTRIM"));
  EXPECT_EQ(db.One("SELECT crsql_as_crr('n3')"), "'OK'");
  // A virtual table's shadow tables are ordinary b-trees, but its own.
  db.Exec("CREATE VIRTUAL TABLE ft USING fts5(body)");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('ft_content')"), HasSubstr("shadow table"));
  db.Exec("CREATE TABLE crsql_mine (id PRIMARY KEY NOT NULL)");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('crsql_mine')"),
              HasSubstr("names beginning with crsql_ or crsync_, or containing __crsync_, are the extension's own"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('nope')"), HasSubstr("no such table: nope"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('tmp')"),
              HasSubstr("no such table: tmp in main (a TEMP table cannot be a CRR"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr(NULL)"), HasSubstr("a table name is needed"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr()"), HasSubstr("Wrong number of args"));
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('temp', 'tmp')"), HasSubstr("main schema"));
  EXPECT_EQ(db.One("SELECT crsql_as_crr('main', 'i')"), "'OK'");
  // Rejected tables got nothing: no triggers, no metadata tables.
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_master WHERE name LIKE 'e\\_\\_%' ESCAPE '\\' "
                   "OR name LIKE 'h\\_\\_%' ESCAPE '\\' OR name LIKE 'ft%crsync%' "
                   "OR name LIKE 'n1\\_\\_%' ESCAPE '\\' OR name LIKE 'n2\\_\\_%' ESCAPE '\\' "
                   "OR name LIKE 'crsql_mine%crsync%'"),
            "0");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsync_crrs WHERE name IN ('ft_content', 'crsql_mine')"), "0");
  // Exactly the accepted tables are CRRs, and only they have metadata
  // tables and triggers.
  EXPECT_EQ(db.Query("SELECT name FROM crsync_crrs ORDER BY name"),
            (Rows{{"'a'"}, {"'b'"}, {"'c'"}, {"'i'"}, {"'n3'"}}));
  EXPECT_EQ(db.Query("SELECT DISTINCT substr(name, 1, instr(name, '__crsync_') - 1) FROM "
                     "sqlite_master WHERE instr(name, '__crsync_') > 0 ORDER BY 1"),
            (Rows{{"'a'"}, {"'b'"}, {"'c'"}, {"'i'"}, {"'n3'"}}));
}

TEST(AsCrrTest, IsIdempotent) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); INSERT INTO t VALUES (1, 'x');");
  EXPECT_EQ(db.One("SELECT crsql_as_crr('t')"), "'OK'");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  EXPECT_EQ(db.One("SELECT crsql_as_crr('t')"), "'OK'");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "1");
}

// A CRR dropped and re-created behind the engine's back: as_crr converts
// the new table afresh (its rows backfilled, its writes recorded) instead of
// answering OK from the stale catalog; a dropped one is named.
TEST(AsCrrTest, ADroppedAndRecreatedCrrIsConvertedAfresh) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, x); INSERT INTO t VALUES (1, 'a'), (2, 'b');"
          "SELECT crsql_as_crr('t'); DROP TABLE t;"
          "CREATE TABLE t (id PRIMARY KEY NOT NULL, x, y); INSERT INTO t VALUES (1, 'z', 'w'), (3, 'q', 'r');"
          "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (4, 'n', 'm');");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, val FROM crsql_changes ORDER BY 1, 2"),
            (Rows{{"'010901'", "'x'", "'z'"}, {"'010901'", "'y'", "'w'"},
                  {"'010903'", "'x'", "'q'"}, {"'010903'", "'y'", "'r'"},
                  {"'010904'", "'x'", "'n'"}, {"'010904'", "'y'", "'m'"}}));
  db.Exec("CREATE TABLE g (id PRIMARY KEY NOT NULL, x); SELECT crsql_as_crr('g'); DROP TABLE g;");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('g')"), HasSubstr("no such table: g"));
  // Still idempotent for a standing CRR, and during its alter.
  db.Exec("SELECT crsql_as_crr('t'); SELECT crsql_begin_alter('t'); SELECT crsql_as_crr('t');"
          "SELECT crsql_commit_alter('t');");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "6");
}

// A rolled-back as_crr takes the schema version back with it; later DDL can
// bring it to the cached value again, which must not revive the CRR the
// rollback removed.
TEST(AsCrrTest, ARolledBackConversionIsForgottenWhateverTheSchemaVersion) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, x);"
          "BEGIN; SELECT crsql_as_crr('t'); SELECT count(*) FROM crsql_changes; ROLLBACK;");
  for (int i = 1; i <= 5; ++i) db.Exec("CREATE TABLE x" + std::to_string(i) + " (a)");
  db.Exec("SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, 'a');");
  EXPECT_EQ(db.Query("SELECT cid, val FROM crsql_changes"), (Rows{{"'x'", "'a'"}}));
}

// The same for a conversion undone by ROLLBACK TO a savepoint of the
// caller's, with nothing else written in the transaction.
TEST(AsCrrTest, AConversionUndoneByRollbackToIsForgottenWhateverTheSchemaVersion) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, x);"
          "BEGIN; SAVEPOINT s; SELECT crsql_as_crr('t'); SELECT count(*) FROM crsql_changes;");
  ClimbBackAfterRollbackTo(db, "s");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "0");
  db.Exec("SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, 'a'); COMMIT;");
  EXPECT_EQ(db.Query("SELECT cid, val FROM crsql_changes"), (Rows{{"'x'", "'a'"}}));
}

// And for crsql_as_table undone by ROLLBACK TO: the table is a CRR again.
TEST(AsCrrTest, ADowngradeUndoneByRollbackToLeavesTheCrrRecording) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, x); SELECT crsql_as_crr('t');"
          "BEGIN; SAVEPOINT s; SELECT crsql_as_table('t'); SELECT count(*) FROM crsql_changes;");
  ClimbBackAfterRollbackTo(db, "s");
  db.Exec("INSERT INTO t VALUES (1, 'a'); COMMIT;");
  EXPECT_EQ(db.Query("SELECT \"table\", cid, val FROM crsql_changes"), (Rows{{"'t'", "'x'", "'a'"}}));
}

TEST(AsCrrTest, FailureKeepsEnclosingTransactionOpen) {
  TestDb db;
  db.Exec("CREATE TABLE ok (id PRIMARY KEY NOT NULL, v); CREATE TABLE bad (a, b);"
          "BEGIN; INSERT INTO ok VALUES (1, 1);");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('bad')"), HasSubstr("no primary key"));
  EXPECT_EQ(sqlite3_get_autocommit(db.get()), 0);  // still inside BEGIN
  db.Exec("COMMIT");
  EXPECT_EQ(db.One("SELECT count(*) FROM ok"), "1");
}

TEST(AsCrrTest, QuotedNamesWork) {
  TestDb db;
  db.Exec("CREATE TABLE \"we\"\"ird 't'\" (\"i d\" PRIMARY KEY NOT NULL, \"v\"\"al\", 'x y');"
          "SELECT crsql_as_crr('we\"ird ''t''');"
          "INSERT INTO \"we\"\"ird 't'\" VALUES (1, 2, 3);"
          "UPDATE \"we\"\"ird 't'\" SET \"v\"\"al\" = 5;"
          "DELETE FROM \"we\"\"ird 't'\";");
  EXPECT_EQ(db.Query("SELECT \"table\", cid, col_version, cl FROM crsql_changes"),
            (Rows{{"'we\"ird 't''", "'-1'", "2", "2"}}));
}

// A nullable-declared key is accepted (§4.2), but an existing row whose key
// is NULL cannot be backfilled: its changes would be refused by every peer.
TEST(AsCrrTest, AnExistingRowWithANullKeyIsRefusedByNameAndNothingChanges) {
  TestDb db;
  db.Exec("CREATE TABLE c (id PRIMARY KEY, name); INSERT INTO c VALUES (NULL, 'a'), (1, 'b');");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('c')"),
              AllOf(HasSubstr("crsql_as_crr(c)"), HasSubstr("NULL in primary key column id")));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsync_crrs"), "0");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_master WHERE name LIKE 'c__crsync%'"), "0");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "0");
  db.Exec("DELETE FROM c WHERE id IS NULL; SELECT crsql_as_crr('c')");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, val FROM crsql_changes"),
            (Rows{{"'010901'", "'name'", "'b'"}}));
}

// §4.1 inside the caller's transaction: a failure found after the CRR's
// metadata tables exist (the backfill meets the NULL key) undoes only its
// own work; the transaction stays open and keeps what it wrote before.
TEST(AsCrrTest, ALateFailureInsideBeginUndoesOnlyItsOwnWork) {
  TestDb db;
  db.Exec("CREATE TABLE ok (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('ok');"
          "CREATE TABLE c (id PRIMARY KEY, name); INSERT INTO c VALUES (1, 'b'), (NULL, 'a');"
          "BEGIN; INSERT INTO ok VALUES (1, 1);");
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('c')"), HasSubstr("NULL in primary key column id"));
  EXPECT_EQ(sqlite3_get_autocommit(db.get()), 0);
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_master WHERE name LIKE 'c__crsync%'"), "0");
  EXPECT_EQ(db.Query("SELECT name FROM crsync_crrs"), (Rows{{"'ok'"}}));
  db.Exec("INSERT INTO ok VALUES (2, 2); COMMIT;");
  EXPECT_EQ(db.Query("SELECT \"table\", hex(pk), cid, val FROM crsql_changes ORDER BY pk"),
            (Rows{{"'ok'", "'010901'", "'v'", "1"}, {"'ok'", "'010902'", "'v'", "2"}}));
  EXPECT_EQ(db.One("SELECT count(*) FROM c"), "2");
}

// §4.4, verified v0.16 output.
TEST(AsCrrTest, BackfillOfExistingRows) {
  TestDb db;
  db.Exec(
      "CREATE TABLE foo (a PRIMARY KEY NOT NULL, b, c DEFAULT 5, d);"
      "INSERT INTO foo VALUES (2, 'x', 5, NULL), (1, NULL, 7, 3);"
      "CREATE TABLE pko (a NOT NULL, b NOT NULL, PRIMARY KEY (a, b));"
      "INSERT INTO pko VALUES (1, 'z'), (0, 'y');"
      "SELECT crsql_as_crr('foo'); SELECT crsql_as_crr('pko');");
  EXPECT_EQ(db.Query("SELECT \"table\", hex(pk), cid, val, col_version, db_version, cl, seq FROM "
                     "crsql_changes"),
            (Rows{{"'foo'", "'010901'", "'b'", "NULL", "1", "1", "1", "0"},
                  {"'foo'", "'010901'", "'c'", "7", "1", "1", "1", "1"},
                  {"'foo'", "'010901'", "'d'", "3", "1", "1", "1", "2"},
                  {"'foo'", "'010902'", "'b'", "'x'", "1", "1", "1", "3"},
                  {"'foo'", "'010902'", "'c'", "5", "1", "1", "1", "4"},
                  {"'foo'", "'010902'", "'d'", "NULL", "1", "1", "1", "5"},
                  {"'pko'", "'02010B0179'", "'-1'", "NULL", "1", "2", "1", "0"},
                  {"'pko'", "'0209010B017A'", "'-1'", "NULL", "1", "2", "1", "1"}}));
}

TEST(AsTableTest, RemovesMetadataKeepsDataAndStartsOver) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
          "INSERT INTO t VALUES (1, 'a'); DELETE FROM t; INSERT INTO t VALUES (2, 'b');");
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "3");
  EXPECT_EQ(db.One("SELECT crsql_as_table('t')"), "NULL");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "0");
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_master WHERE name LIKE 't\\_\\_%' ESCAPE '\\'"), "0");
  db.Exec("INSERT INTO t VALUES (3, 'c')");  // plain table: no triggers
  EXPECT_THAT(db.Error("INSERT INTO crsql_changes VALUES ('t', X'010901', 'v', 'x', 1, 1, NULL)"),
              HasSubstr("could not find the schema information for table t"));
  EXPECT_EQ(db.One("SELECT crsql_as_crr('t')"), "'OK'");
  EXPECT_EQ(db.Query("SELECT DISTINCT db_version FROM crsql_changes"), (Rows{{"4"}}));
  EXPECT_EQ(db.One("SELECT crsql_as_table('never_a_crr')"), "NULL");
}

// crsync keeps a CRR's metadata in tables named after it (t__crsync_rows,
// t__crsync_feed): a user's own table of such a name is never taken over,
// and never dropped.
TEST(AsCrrTest, AUserTableWithAnInternalNameIsNeitherAdoptedNorDropped) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); INSERT INTO t VALUES (1, 'a');"
          "CREATE TABLE T__Crsync_Feed (mine); INSERT INTO t__crsync_feed VALUES ('keep');");
  // as_table of a table that is not a CRR touches nothing.
  EXPECT_EQ(db.One("SELECT crsql_as_table('t')"), "NULL");
  EXPECT_EQ(db.One("SELECT mine FROM t__crsync_feed"), "'keep'");
  // as_crr refuses, naming the table in the way, and changes nothing.
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('t')"),
              HasSubstr("a table named T__Crsync_Feed already exists"));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsync_crrs"), "0");
  EXPECT_EQ(db.One("SELECT group_concat(name) FROM sqlite_master WHERE name LIKE "
                   "'t\\_\\_%' ESCAPE '\\'"),
            "'T__Crsync_Feed'");
  EXPECT_EQ(db.One("SELECT mine FROM t__crsync_feed"), "'keep'");
  db.Exec("INSERT INTO t VALUES (2, 'b')");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "0");
  // Out of the way, the conversion goes through.
  db.Exec("ALTER TABLE t__crsync_feed RENAME TO mine");
  EXPECT_EQ(db.One("SELECT crsql_as_crr('t')"), "'OK'");
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "2");
  EXPECT_EQ(db.One("SELECT mine FROM mine"), "'keep'");
}

TEST(AsTableTest, DbVersionDoesNotGoBackAfterReopen) {
  TempPath path;
  {
    TestDb db(path.str());
    db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
            "INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (2, 'a');"
            "SELECT crsql_as_table('t');");
  }
  TestDb db(path.str());
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "2");
}

TEST(ConfigTest, MergeEqualValuesIsPersistedAndValidated) {
  TempPath path;
  {
    TestDb db(path.str());
    EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "0");
    EXPECT_EQ(db.One("SELECT crsql_config_set('merge-equal-values', 1)"), "1");
    EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "1");
    EXPECT_EQ(db.One("SELECT value FROM crsql_master WHERE key = 'config.merge-equal-values'"), "1");
    const Rows config_before = db.Query("SELECT key, quote(value) FROM crsql_master ORDER BY key");
    EXPECT_THAT(db.Error("SELECT crsql_config_set('nope', 1)"), HasSubstr("Unknown setting name 'nope'"));
    EXPECT_THAT(db.Error("SELECT crsql_config_get('nope')"), HasSubstr("Unknown setting name 'nope'"));
    for (const char* name : {"NULL", "1", "x'00'"}) {
      EXPECT_THAT(db.Error(std::string("SELECT crsql_config_set(") + name + ", 1)"),
                  HasSubstr("A setting's name is text")) << name;
    }
    EXPECT_THAT(db.Error("SELECT crsql_config_set('merge-equal-values', '1')"), HasSubstr("integer"));
    EXPECT_THAT(db.Error("SELECT crsql_config_set('merge-equal-values', 1.0)"), HasSubstr("integer"));
    // Refused, they changed nothing: stored or in effect.
    EXPECT_EQ(db.Query("SELECT key, quote(value) FROM crsql_master ORDER BY key"), config_before);
    EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "1");
    // Stored as an INTEGER (§16): a TEXT '1' makes v0.16 fail every later load.
    EXPECT_EQ(db.One("SELECT typeof(value) FROM crsql_master WHERE key = 'config.merge-equal-values'"),
              "'integer'");
  }
  TestDb db(path.str());
  EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "1");
  // A rolled-back set is undone on this connection too, not only on disk.
  db.Exec("BEGIN; SELECT crsql_config_set('merge-equal-values', 0); ROLLBACK;");
  EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "1");
  db.Exec("SELECT crsql_config_set('merge-equal-values', 0);"
          "BEGIN; SELECT crsql_config_set('merge-equal-values', 1); ROLLBACK;");
  EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "0");
  // And one undone by ROLLBACK TO, in a transaction that wrote nothing else.
  db.Exec("BEGIN; SAVEPOINT s; SELECT crsql_config_set('merge-equal-values', 1); ROLLBACK TO s;");
  EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "0");
  db.Exec("COMMIT");
  // Get says what set stored; only 1 enables the tie-break (§16).
  EXPECT_EQ(db.One("SELECT crsql_config_set('merge-equal-values', 2)"), "2");
  EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "2");
  db.Reopen();
  EXPECT_EQ(db.One("SELECT crsql_config_get('merge-equal-values')"), "2");
}

// A value other than 1 leaves equal values alone, as 0 does.
TEST(ConfigTest, OnlyOneEnablesMergeEqualValues) {
  for (int setting : {0, 1, 2}) {
    SCOPED_TRACE(setting);
    TestDb db;
    db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
            "INSERT INTO t VALUES (1, 'same');"
            "SELECT crsql_config_set('merge-equal-values', " + std::to_string(setting) + ");"
            "INSERT INTO crsql_changes VALUES ('t', crsql_pack_columns(1), 'v', 'same', 1, 5, "
            "X'ffffffffffffffffffffffffffffffff')");
    EXPECT_EQ(db.One("SELECT site_id = X'ffffffffffffffffffffffffffffffff' FROM crsql_changes "
                     "WHERE cid = 'v'"),
              setting == 1 ? "1" : "0");
  }
}

// A setting another connection commits is in effect on this one from its
// next transaction: a sidecar's long-lived connection breaks ties as the
// application's connection set it, without reopening.
TEST(ConfigTest, ASettingCommittedByAnotherConnectionTakesEffectHere) {
  TempPath path;
  TestDb app(path.str());
  app.Exec("PRAGMA journal_mode = WAL;"  // the merger's open read does not block the app
           "CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
           "INSERT INTO t VALUES (1, 'same'), (2, 'same');");
  TestDb merger(path.str());
  const std::string tie =
      "INSERT INTO crsql_changes VALUES ('t', crsql_pack_columns(?), 'v', 'same', 1, 5, "
      "X'ffffffffffffffffffffffffffffffff')";
  auto winner = [&](int id) {
    return merger.One("SELECT site_id = X'ffffffffffffffffffffffffffffffff' FROM crsql_changes "
                      "WHERE cid = 'v' AND pk = crsql_pack_columns(" + std::to_string(id) + ")");
  };
  EXPECT_EQ(merger.One("SELECT crsql_config_get('merge-equal-values')"), "0");
  merger.Exec(std::string(tie).replace(tie.find('?'), 1, "1"));
  EXPECT_EQ(winner(1), "0");  // off: the equal value leaves the row alone
  app.Exec("SELECT crsql_config_set('merge-equal-values', 1)");
  EXPECT_EQ(merger.One("SELECT crsql_config_get('merge-equal-values')"), "1");
  merger.Exec(std::string(tie).replace(tie.find('?'), 1, "2"));
  EXPECT_EQ(winner(2), "1");  // on: the larger site id wins the tie
  // And back, with the merger's transaction open across the change: it
  // keeps what it read until it ends.
  merger.Exec("BEGIN; SELECT crsql_config_get('merge-equal-values');");
  app.Exec("SELECT crsql_config_set('merge-equal-values', 0)");
  EXPECT_EQ(merger.One("SELECT crsql_config_get('merge-equal-values')"), "1");
  merger.Exec("COMMIT");
  EXPECT_EQ(merger.One("SELECT crsql_config_get('merge-equal-values')"), "0");
}

// A malformed crsync_crrs row fails the catalog's refresh with an error and
// leaves the CRRs it already knew working.
TEST(CatalogTest, AMalformedCatalogRowFailsTheRefreshAndChangesNothing) {
  TestDb db;
  db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');"
          "CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('u');"
          "INSERT INTO t VALUES (1, 'x');");
  std::string cols = db.Text("SELECT quote(cols) FROM crsync_crrs WHERE name = 'u'");
  db.Exec("UPDATE crsync_crrs SET cols = X'FF' WHERE name = 'u'; CREATE TABLE bump (x);");
  EXPECT_THAT(db.Error("SELECT crsql_begin_alter('t')"), HasSubstr("truncated"));
  db.Exec("INSERT INTO t VALUES (2, 'y')");  // still recorded through the known CRR
  db.Exec("UPDATE crsync_crrs SET cols = " + cols + " WHERE name = 'u'");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, val FROM crsql_changes WHERE \"table\" = 't' ORDER BY pk"),
            (Rows{{"'010901'", "'a'", "'x'"}, {"'010902'", "'a'", "'y'"}}));
}

// crsql_as_table drops tables, which SQLite refuses while another statement
// of the connection runs; the rollback of the call's own DDL then aborted
// every running statement ("abort due to ROLLBACK"). It now refuses first,
// and the other statements go on.
TEST(AsTable, RefusesWhileAnotherStatementRunsAndLeavesItRunning) {
  TestDb db;
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v); CREATE TABLE u(x);"
          "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, 1), (2, 2);"
          "INSERT INTO u VALUES (1), (2), (3); BEGIN");
  StmtPtr reader;
  ASSERT_OK(Prepare(db.get(), "SELECT x FROM u", &reader));
  ASSERT_EQ(sqlite3_step(reader.get()), SQLITE_ROW);
  EXPECT_THAT(db.Error("SELECT crsql_as_table('t')"),
              HasSubstr("another statement of this connection is still running"));
  int rows = 1, rc;
  while ((rc = sqlite3_step(reader.get())) == SQLITE_ROW) ++rows;
  EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db.get());
  EXPECT_EQ(rows, 3);
  EXPECT_EQ(sqlite3_get_autocommit(db.get()), 0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM crsql_changes"), 2);
  reader.reset();
  EXPECT_EQ(db.One("SELECT crsql_as_table('t')"), "NULL");
  EXPECT_EQ(db.Int("SELECT count(*) FROM crsql_changes"), 0);
  db.Exec("COMMIT");
}

}  // namespace
}  // namespace crsync
