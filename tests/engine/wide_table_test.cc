// CRRs wider than one SQL function call can take: the update trigger passes
// difference masks (crsync_internal_diff) and the alter remap packed values
// instead of every column, and merges write rows wider than crsync_valbuf
// one by one. Everything must behave as for a narrow table.
#include "crsync/engine.h"
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

constexpr int kCols = 130;  // 1 + 2 * 131 arguments would be far over 127

std::string Schema(const std::string& t, int cols) {
  std::string s = "CREATE TABLE " + t + " (id INTEGER PRIMARY KEY NOT NULL";
  for (int i = 0; i < cols; ++i) s += ", c" + std::to_string(i);
  return s + "); SELECT crsql_as_crr('" + t + "');";
}

std::string Row(int id, int cols) {
  std::string r = std::to_string(id);
  for (int i = 0; i < cols; ++i) r += ", " + std::to_string(id * 1000 + i);
  return r;
}

const char* kClocks = "SELECT hex(pk), cid, col_version, cl FROM crsql_changes ORDER BY pk, cid";

// The catalog's packed column lists count in one byte: 255 columns besides
// the key are the limit, refused by name above it (before, a garbled
// "trailing bytes" error), at as_crr and at commit_alter alike.
TEST(WideTableTest, MoreThan255ColumnsAreRefusedByName) {
  TestDb db;
  std::string create = Schema("w", 256);
  create = create.substr(0, create.find("SELECT"));
  db.Exec(create);
  EXPECT_THAT(db.Error("SELECT crsql_as_crr('w')"),
              HasSubstr("has 256 columns besides its 1-column primary key; a CRR can have at most 255"));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsync_crrs"), "0");
  db.Exec(Schema("v", 255));
  db.Exec("SELECT crsql_begin_alter('v'); ALTER TABLE v ADD COLUMN extra;");
  EXPECT_THAT(db.Error("SELECT crsql_commit_alter('v')"), HasSubstr("at most 255"));
  EXPECT_EQ(db.One("SELECT count(*) FROM pragma_table_info('v')"), "256");  // the alter undone
}

// The update trigger passes each key column's old and new value to one
// call, capped at 127 arguments: a key too wide for that is refused by name
// (it used to fail with SQLite's "too many arguments on function
// crsync_after_update", and docs promised 255 key columns). Each widest key
// that fits records its writes.
TEST(WideTableTest, KeysTooWideForTheUpdateTriggerAreRefusedByName) {
  TestDb db;
  auto table = [](const std::string& t, int npk, int ncol) {
    std::string cols, key;
    for (int i = 0; i < npk; ++i) {
      cols += (i ? ", k" : "k") + std::to_string(i);
      key += (i ? ", k" : "k") + std::to_string(i);
    }
    for (int i = 0; i < ncol; ++i) cols += ", c" + std::to_string(i);
    return "CREATE TABLE " + t + " (" + cols + ", PRIMARY KEY (" + key + "))";
  };
  const struct {
    int npk, ncol, most;  // most: the widest key that fits with ncol columns
  } kCases[] = {{64, 0, 63}, {63, 1, 62}, {63, 126, 62}, {62, 127, 61}, {61, 253, 60}};
  for (const auto& c : kCases) {
    SCOPED_TRACE(std::to_string(c.npk) + " key columns, " + std::to_string(c.ncol) + " others");
    db.Exec(table("too_wide", c.npk, c.ncol));
    EXPECT_THAT(db.Error("SELECT crsql_as_crr('too_wide')"),
                HasSubstr("a CRR can have at most " + std::to_string(c.most) + " key columns"));
    EXPECT_EQ(db.Int("SELECT count(*) FROM crsync_crrs"), 0);
    db.Exec("DROP TABLE too_wide");
    db.Exec(table("fits", c.most, c.ncol) + "; SELECT crsql_as_crr('fits')");
    std::string values;
    for (int i = 0; i < c.most + c.ncol; ++i) values += (i ? ", " : "") + std::to_string(i);
    db.Exec("INSERT INTO fits VALUES (" + values + "); UPDATE fits SET k0 = -1;" +
            (c.ncol ? "UPDATE fits SET c0 = -2;" : "") + "DELETE FROM fits");
    EXPECT_EQ(db.Int("SELECT count(*) FROM crsql_changes WHERE cid = '-1'"), 2);  // both keys dead
    db.Exec("SELECT crsql_as_table('fits'); DROP TABLE fits");
  }
}

TEST(WideTableTest, UpdatesRecordExactlyTheChangedColumns) {
  TestDb db;
  db.Exec(Schema("w", kCols));
  db.Exec("INSERT INTO w VALUES (" + Row(1, kCols) + ")");
  // Chunk edges of the masks: 63 columns each.
  db.Exec("UPDATE w SET c0 = 'x', c62 = 'x', c63 = 'x', c125 = 'x', c126 = 'x', c129 = 'x'");
  // Same value written back: nothing changed, nothing recorded.
  db.Exec("UPDATE w SET c1 = c1, c64 = 64064 - 63000");
  EXPECT_EQ(db.Query("SELECT cid FROM crsql_changes WHERE col_version = 2 ORDER BY cid"),
            (Rows{{"'c0'"}, {"'c125'"}, {"'c126'"}, {"'c129'"}, {"'c62'"}, {"'c63'"}}));
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes WHERE col_version = 1"),
            std::to_string(kCols - 6));
  // A type change with an equal numeric value is a change too.
  db.Exec("UPDATE w SET c2 = 1002.0");
  EXPECT_EQ(db.One("SELECT col_version FROM crsql_changes WHERE cid = 'c2'"), "2");
}

TEST(WideTableTest, ReplicasConvergeThroughSqlAndChangeApplier) {
  TestDb a, via_sql, via_applier;
  for (TestDb* d : {&a, &via_sql, &via_applier}) d->Exec(Schema("w", kCols));
  a.Exec("BEGIN");
  for (int id = 0; id < 40; ++id) a.Exec("INSERT INTO w VALUES (" + Row(id, kCols) + ")");
  a.Exec("COMMIT");
  a.Exec("UPDATE w SET c100 = 'u', c7 = NULL WHERE id % 3 = 0");
  a.Exec("DELETE FROM w WHERE id % 5 = 1");
  a.Exec("UPDATE w SET id = id + 1000 WHERE id = 2");  // pk change
  Sync(a, via_sql);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(via_applier.get(), &applier));
  ASSERT_OK(applier->Apply(ToChanges(ReadChanges(a.get()))));
  const char* rows = "SELECT * FROM w ORDER BY id";
  EXPECT_EQ(via_sql.Query(rows), a.Query(rows));
  EXPECT_EQ(via_applier.Query(rows), a.Query(rows));
  EXPECT_EQ(via_sql.Query(kClocks), a.Query(kClocks));
  EXPECT_EQ(via_applier.Query(kClocks), a.Query(kClocks));
}

// commit_alter remaps every row with all its column values: past the
// argument cap they go packed. A new column gets clocks only where a row's
// value differs from its default (§14.3.2 d), and nothing else moves.
TEST(WideTableTest, AlterRemapsWideRows) {
  TestDb db;
  db.Exec(Schema("w", kCols));
  db.Exec("BEGIN");
  for (int id = 0; id < 10; ++id) db.Exec("INSERT INTO w VALUES (" + Row(id, kCols) + ")");
  db.Exec("COMMIT");
  Rows before = db.Query(kClocks);
  db.Exec("SELECT crsql_begin_alter('w'); ALTER TABLE w ADD COLUMN extra DEFAULT 'd';"
          "UPDATE w SET extra = 'set' WHERE id = 3; SELECT crsql_commit_alter('w');");
  EXPECT_EQ(db.Query("SELECT hex(pk), cid, col_version, cl FROM crsql_changes WHERE cid != 'extra' "
                     "ORDER BY pk, cid"),
            before);
  EXPECT_EQ(db.Query("SELECT hex(pk), val FROM crsql_changes WHERE cid = 'extra'"),
            (Rows{{"'010903'", "'set'"}}));
  // Recording still matches the new schema.
  db.Exec("UPDATE w SET c128 = 'later', extra = 'e' WHERE id = 4");
  EXPECT_EQ(db.Query("SELECT cid, col_version FROM crsql_changes WHERE pk = crsql_pack_columns(4) "
                     "AND cid IN ('c128', 'extra') ORDER BY cid"),
            (Rows{{"'c128'", "2"}, {"'extra'", "1"}}));
}

}  // namespace
}  // namespace crsync
