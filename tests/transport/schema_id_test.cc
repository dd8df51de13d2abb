// The schema fingerprint peers compare in the handshake: equal exactly when
// their changes mean the same rows and cells.
#include "transport/schema_id.h"

#include <string>

#include "tests/test_util.h"

namespace crsync {
namespace {

uint64_t Fingerprint(const std::string& schema) {
  TestDb db;
  db.Exec(schema);
  uint64_t f = 0;
  EXPECT_OK(SchemaFingerprint(db.get(), &f));
  return f;
}

std::string Summary(const std::string& schema) {
  TestDb db;
  db.Exec(schema);
  std::string s;
  EXPECT_OK(SchemaSummary(db.get(), &s));
  return s;
}

TEST(SchemaIdTest, ColumnOrderOutsideTheKeyDoesNotMatter) {
  // Two nodes that added the same columns in another order.
  EXPECT_EQ(Fingerprint("CREATE TABLE t (id PRIMARY KEY NOT NULL, a, c, d); SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id PRIMARY KEY NOT NULL, a, d, c); SELECT crsql_as_crr('t');"));
  // The key's order names other rows (the packed pk follows it).
  EXPECT_NE(Fingerprint("CREATE TABLE t (a NOT NULL, b NOT NULL, v, PRIMARY KEY (a, b));"
                        "SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (a NOT NULL, b NOT NULL, v, PRIMARY KEY (b, a));"
                        "SELECT crsql_as_crr('t');"));
  EXPECT_NE(Fingerprint("CREATE TABLE t (id PRIMARY KEY NOT NULL, a, c); SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id PRIMARY KEY NOT NULL, a, d); SELECT crsql_as_crr('t');"));
}

TEST(SchemaIdTest, DefaultsCount) {
  // A value equal to its default gets no clock in backfills and alters:
  // nodes with different defaults would differ silently.
  EXPECT_NE(Fingerprint("CREATE TABLE t (id PRIMARY KEY NOT NULL, c DEFAULT 1); SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id PRIMARY KEY NOT NULL, c DEFAULT 2); SELECT crsql_as_crr('t');"));
  EXPECT_EQ(Fingerprint("CREATE TABLE t (id PRIMARY KEY NOT NULL, c DEFAULT NULL); SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id PRIMARY KEY NOT NULL, c); SELECT crsql_as_crr('t');"));
  EXPECT_EQ(Summary("CREATE TABLE t (id PRIMARY KEY NOT NULL, c DEFAULT 1, d DEFAULT NULL, e);"
                    "SELECT crsql_as_crr('t');"),
            "t(id, c DEFAULT 1, d, e)");
}

TEST(SchemaIdTest, AffinitiesCountDeclaredTypesDoNot) {
  // A TEXT column keeps '1.0' as sent, a NUMERIC one stores 1: nodes would
  // hold different values for one change, silently.
  EXPECT_NE(Fingerprint("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT); SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a NUMERIC); SELECT crsql_as_crr('t');"));
  // The key's affinity decides which row a pk names ('1' or 1).
  EXPECT_NE(Fingerprint("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');"));
  // ANY has no affinity in a STRICT table, NUMERIC in another.
  EXPECT_NE(Fingerprint("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a ANY) STRICT; SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a ANY); SELECT crsql_as_crr('t');"));
  // One affinity, other spellings: the same.
  EXPECT_EQ(Fingerprint("CREATE TABLE t (id INT PRIMARY KEY NOT NULL, a VARCHAR(10), b, c DOUBLE); SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id BIGINT PRIMARY KEY NOT NULL, a TEXT, b BLOB, c REAL); SELECT crsql_as_crr('t');"));
  EXPECT_EQ(Fingerprint("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a ANY) STRICT; SELECT crsql_as_crr('t');"),
            Fingerprint("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a BLOB); SELECT crsql_as_crr('t');"));
  // The summary shows the declared types, so a mismatch line names them.
  EXPECT_EQ(Summary("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT DEFAULT 'x', b);"
                    "SELECT crsql_as_crr('t');"),
            "t(id INTEGER, a TEXT DEFAULT 'x', b)");
}

// During an open alter the summary shows the recorded columns, which are
// what the fingerprint covers, not the table's new ones.
TEST(SchemaIdTest, TheRecordedColumnsAreDescribedDuringAnAlter) {
  TestDb db;
  db.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, a); SELECT crsql_as_crr('t');");
  uint64_t before = 0, during = 0;
  ASSERT_OK(SchemaFingerprint(db.get(), &before));
  db.Exec("SELECT crsql_begin_alter('t'); ALTER TABLE t ADD COLUMN b;");
  ASSERT_OK(SchemaFingerprint(db.get(), &during));
  std::string s;
  ASSERT_OK(SchemaSummary(db.get(), &s));
  EXPECT_EQ(s, "t(id, a)");
  EXPECT_EQ(before, during);
}

}  // namespace
}  // namespace crsync
