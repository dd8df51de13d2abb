// crsql_commit_alter's warning (sqlite3_log) when the alter's connection
// wrote the table between begin and commit: nothing recorded those writes
// (crr-semantics §14.1, §14.3), so what they cost is said where an
// application looks when peers differ.
#include <string>
#include <vector>

#include "tests/engine/sync_util.h"
#include "tests/sqlite_log.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// crsync's captured lines about crsql_commit_alter (not SQLite's own
// lines for failed statements), emptied.
std::vector<std::string> TakeAlterLines() {
  std::vector<std::string> out;
  for (const std::string& line : TakeSqliteLog()) {
    if (line.rfind("crsync: crsql_commit_alter", 0) == 0) out.push_back(line);
  }
  return out;
}

class AlterWarningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Without the log hook every "no warning" check below passes vacuously.
    ASSERT_TRUE(g_sqlite_log_installed) << "SQLite's log could not be captured";
    db_.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, name, complete);"
             "SELECT crsql_as_crr('todo');"
             "INSERT INTO todo VALUES (1, 'cook', 0), (2, 'walk', 1), (3, 'read', 0);"
             "DELETE FROM todo WHERE id = 3;");
    TakeAlterLines();
  }
  TestDb db_;
};

TEST_F(AlterWarningTest, WritesDuringTheAlterAreCountedInTheLog) {
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due;"
           "DELETE FROM todo WHERE id = 1;"
           "INSERT INTO todo VALUES (3, 'again', 0, NULL), (4, 'new', 0, NULL);"
           "SELECT crsql_commit_alter('todo');");
  const std::vector<std::string> lines = TakeAlterLines();
  ASSERT_EQ(lines.size(), 1u);
  // Row 1 deleted; row 3 re-inserted over its tombstone and row 4 new.
  EXPECT_EQ(lines[0],
            "crsync: crsql_commit_alter('todo'): 1 delete(s), 2 insert(s) during the alter went "
            "unrecorded: peers never see the deletes, nor the inserts past db_version 2 (§14.3) "
            "in :memory:");
}

TEST_F(AlterWarningTest, AnAlterWithoutWritesSaysNothing) {
  // The fast path (columns appended, no row written) and a full migration
  // (a column dropped) alike.
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due;"
           "SELECT crsql_commit_alter('todo');"
           "SELECT crsql_begin_alter('todo'); ALTER TABLE todo DROP COLUMN complete;"
           "SELECT crsql_commit_alter('todo');");
  EXPECT_THAT(TakeAlterLines(), IsEmpty());
  // Writes after the commit are recorded as usual, and not reported.
  db_.Exec("DELETE FROM todo WHERE id = 1; INSERT INTO todo VALUES (5, 'x', NULL);");
  EXPECT_THAT(TakeAlterLines(), IsEmpty());
}

TEST_F(AlterWarningTest, AFailedCommitSaysNothing) {
  db_.Exec("SELECT crsql_begin_alter('todo'); ALTER TABLE todo ADD COLUMN due;"
           "DELETE FROM todo WHERE id = 1; CREATE UNIQUE INDEX todo_name ON todo(name);");
  EXPECT_THAT(db_.Error("SELECT crsql_commit_alter('todo')"),
              HasSubstr("failed compacting tables post alteration"));
  EXPECT_THAT(TakeAlterLines(), IsEmpty());
}

}  // namespace
}  // namespace crsync
