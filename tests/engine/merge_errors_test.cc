// crr-semantics §12: every bad input gets a clear error and changes nothing.
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

constexpr char kSite[] = "X'11111111111111111111111111111111'";

class MergeErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_.Exec("CREATE TABLE todo (id PRIMARY KEY NOT NULL, title, n INTEGER CHECK (n IS NULL OR n >= 0));"
             "SELECT crsql_as_crr('todo');"
             "CREATE TABLE s (id INTEGER PRIMARY KEY NOT NULL, v INTEGER) STRICT; SELECT crsql_as_crr('s');"
             "CREATE TABLE plain (id PRIMARY KEY, v);"
             "INSERT INTO todo VALUES ('a', 'keep', 1);");
  }
  // Everything a failed change could have touched.
  Rows Snapshot() {
    Rows all = CrrState(db_, {"todo", "s"});
    for (auto& q : {"SELECT * FROM crsql_site_id",
                    "SELECT crsql_rows_impacted(), crsql_internal_sync_bit()",
                    "SELECT count(*) FROM todo__crsync_rows", "SELECT count(*) FROM todo__crsync_feed"}) {
      Rows r = db_.Query(q);
      all.insert(all.end(), r.begin(), r.end());
    }
    return all;
  }
  void ExpectRejected(const std::string& values, const std::string& message,
                      const std::string& columns = "") {
    Rows before = Snapshot();
    std::string sql = "INSERT INTO crsql_changes " + columns + " VALUES (" + values + ")";
    EXPECT_THAT(db_.Error(sql), HasSubstr(message)) << sql;
    EXPECT_EQ(Snapshot(), before) << "changed by: " << sql;
    EXPECT_EQ(sqlite3_get_autocommit(db_.get()), 0) << "transaction closed by: " << sql;
  }
  // A transaction held after a merge failed part-way: its COMMIT is
  // refused, SQLite rolls it back, and nothing of it stays.
  void ExpectCommitRefusedAndNothingLeft(const Rows& at_start) {
    EXPECT_THAT(db_.Error("COMMIT"), HasSubstr("roll the transaction back"));
    EXPECT_EQ(sqlite3_get_autocommit(db_.get()), 1);
    EXPECT_EQ(Snapshot(), at_start);
  }
  TestDb db_;
};

const std::string kNine = "(\"table\", pk, cid, val, col_version, db_version, site_id, cl, seq)";
const std::string kTen = "(\"table\", pk, cid, val, col_version, db_version, site_id, cl, seq, tag)";

TEST_F(MergeErrorsTest, EachBadInputNamesTheProblemAndChangesNothing) {
  db_.Exec("BEGIN");
  std::string s = kSite;
  ExpectRejected("1, X'010B0178', 'title', 'v', 1, 1, " + s, "invalid table name");
  ExpectRejected("'" + std::string(3000, 't') + "', X'010B0178', 'title', 'v', 1, 1, " + s,
                 "table name exceeded max length");
  ExpectRejected("'nope', X'010B0178', 'title', 'v', 1, 1, " + s,
                 "could not find the schema information for table nope");
  ExpectRejected("'plain', X'010B0178', 'v', 'v', 1, 1, " + s,
                 "could not find the schema information for table plain");
  ExpectRejected("'todo', 'x', 'title', 'v', 1, 1, " + s, "malformed pk for table todo: expected a packed BLOB");
  ExpectRejected("'todo', X'', 'title', 'v', 1, 1, " + s, "malformed pk for table todo: empty");
  ExpectRejected("'todo', X'00', 'title', 'v', 1, 1, " + s, "expected 1 values, got 0");
  ExpectRejected("'todo', X'0178', 'title', 'v', 1, 1, " + s, "malformed pk for table todo: unknown type code 0");
  ExpectRejected("'todo', X'0149', 'title', 'v', 1, 1, " + s, "> 8");
  ExpectRejected("'todo', X'010B0578', 'title', 'v', 1, 1, " + s, "truncated");
  ExpectRejected("'todo', X'010B017800', 'title', 'v', 1, 1, " + s, "trailing bytes");
  ExpectRejected("'todo', X'020B01780901', 'title', 'v', 1, 1, " + s, "expected 1 values, got 2");
  ExpectRejected("'todo', X'0105', 'title', 'v', 1, 1, " + s, "NULL value for id");
  // A NaN key is a NULL to SQLite: for the INTEGER PRIMARY KEY of s it
  // would have made a row under a rowid of SQLite's choosing.
  ExpectRejected("'todo', X'01027FF8000000000000', 'title', 'v', 1, 1, " + s, "NaN value for id");
  ExpectRejected("'s', X'01027FF8000000000000', 'v', 1, 1, 1, " + s, "NaN value for id");
  // Other keys an INTEGER PRIMARY KEY cannot hold (SQLite: a bare
  // "datatype mismatch"); '12' and 2.0 are integers by its affinity.
  ExpectRejected("'s', X'010B03616263', 'v', 1, 1, 1, " + s,
                 "malformed pk for table s: id is its INTEGER PRIMARY KEY (the rowid), and the "
                 "value is text that is no integer");
  ExpectRejected("'s', X'01023FF8000000000000', 'v', 1, 1, 1, " + s, "value is a real that is no integer");
  ExpectRejected("'s', X'010C0100', 'v', 1, 1, 1, " + s, "value is a blob that is no integer");
  ExpectRejected("'todo', X'010B0178', 5, 'v', 1, 1, " + s, "invalid cid");
  ExpectRejected("'todo', X'010B0178', 'nope', 'v', 1, 1, " + s, "no such column todo.nope");
  ExpectRejected("'todo', X'010B0178', 'TITLE', 'v', 1, 1, " + s, "no such column todo.TITLE");
  ExpectRejected("'todo', X'010B0178', 'id', 'v', 1, 1, " + s, "id is a primary key column of todo");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', -1, 1, " + s, "col_version must be a non-negative integer");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', '1', 1, " + s, "col_version must be a non-negative integer");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, -5, " + s, "db_version must be a non-negative integer");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, 1.5, " + s, "db_version must be a non-negative integer");
  // Above kMaxChangeVersion: a local write after it would overflow.
  const std::string over = std::to_string(kMaxChangeVersion + 1);
  ExpectRejected("'todo', X'010B0178', 'title', 'v', " + over + ", 1, " + s, "must be at most");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, " + over + ", " + s, "must be at most");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, 9223372036854775807, " + s, "must be at most");
  ExpectRejected("'todo', X'010B0178', '-1', NULL, " + over + ", 1, " + s + ", " + over + ", 0",
                 "must be at most", kNine);
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, 1, X'1111'", "site id must be a 16 byte blob");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, 1, '11111111111111111111111111111111'",
                 "site id must be a 16 byte blob");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, 1, " + s + ", 0, 0", "cl must be a positive integer", kNine);
  // Inferred (7 values): a sentinel's cl is its col_version, so 0 is as bad as a given 0.
  ExpectRejected("'todo', X'010B0178', '-1', NULL, 0, 1, " + s, "cl must be a positive integer");
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, 1, " + s + ", 2, 0", "column changes must have an odd cl", kNine);
  ExpectRejected("'todo', X'010B0178', '-1', NULL, 3, 1, " + s + ", 5, 0", "sentinel cl must equal col_version", kNine);
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, 1, " + s + ", 1, -1", "seq must be a non-negative integer", kNine);
  ExpectRejected("'todo', X'010B0178', 'title', 'v', 1, 1, " + s + ", 1, 0, 'x'", "tag must be an integer", kTen);
  // Valid changes that fail while applying: nothing of them remains either.
  ExpectRejected("'todo', X'010B0178', 'n', -5, 1, 1, " + s + ", 3, 0", "CHECK constraint failed", kNine);
  ExpectRejected("'s', X'010901', 'v', 'abc', 1, 1, " + s, "cannot store TEXT value in INTEGER column");
  db_.Exec("COMMIT");
}

// The largest accepted versions merge. A local write that would count past
// one fails and changes nothing: its change would reach no peer (merges
// refuse what is past kMaxChangeVersion), and no version wraps.
TEST_F(MergeErrorsTest, VersionsAtTheLimitMergeAndLocalWritesNeverPassThem) {
  const std::string max = std::to_string(kMaxChangeVersion);
  // A col_version at the limit: the cell cannot be written here any more.
  db_.Exec("INSERT INTO crsql_changes " + kNine + " VALUES ('todo', X'010B0178', 'title', 'v', " +
           max + ", 7, " + kSite + ", 1, 0)");
  Rows before = Snapshot();
  EXPECT_THAT(db_.Error("UPDATE todo SET title = 'local' WHERE id = 'x'"),
              HasSubstr("a clock of todo is exhausted"));
  EXPECT_EQ(Snapshot(), before);
  // The same through the capture log (from a transaction's fifth write on),
  // at COMMIT, which SQLite then rolls back whole: in a mixed window, and
  // in one that only updates a key range in place (a walk of the metadata).
  for (int i = 0; i < 20; ++i) db_.Exec("INSERT INTO todo VALUES ('n" + std::to_string(i) + "', 'n', 1)");
  before = Snapshot();
  for (const char* first : {"INSERT INTO todo VALUES ('m', 'm', 1)", ""}) {
    SCOPED_TRACE(first);
    db_.Exec("BEGIN");
    for (int i = 0; i < 4; ++i) db_.Exec("INSERT INTO s VALUES (" + std::to_string(i) + ", 1)");
    if (*first) db_.Exec(first);
    db_.Exec("UPDATE todo SET title = 'local'");
    EXPECT_THAT(db_.Error("COMMIT"), HasSubstr("a clock of todo is exhausted"));
    EXPECT_EQ(sqlite3_get_autocommit(db_.get()), 1);
    EXPECT_EQ(Snapshot(), before);
  }
  // Other cells and rows are unaffected.
  db_.Exec("UPDATE todo SET n = 5 WHERE id = 'x'");
  // A causal length: a tombstone one below the limit can come back to life
  // (at the limit), but not die again.
  const std::string deleted = std::to_string(kMaxChangeVersion - 1);
  db_.Exec("INSERT INTO crsql_changes " + kNine + " VALUES ('todo', X'010B0179', '-1', NULL, " +
           deleted + ", 8, " + kSite + ", " + deleted + ", 0)");
  db_.Exec("INSERT INTO todo VALUES ('y', 'back', 2)");
  EXPECT_EQ(db_.One("SELECT cl FROM crsql_changes WHERE pk = X'010B0179' AND cid = '-1'"), max);
  before = Snapshot();
  EXPECT_THAT(db_.Error("DELETE FROM todo WHERE id = 'y'"), HasSubstr("a clock of todo is exhausted"));
  EXPECT_EQ(Snapshot(), before);
  // Asked for a version past the limit, in or out of a transaction.
  const std::string over = std::to_string(kMaxChangeVersion + 1);
  EXPECT_THAT(db_.Error("SELECT crsql_next_db_version(" + over + ")"), HasSubstr("db_version is exhausted"));
  db_.Exec("BEGIN");
  EXPECT_THAT(db_.Error("SELECT crsql_next_db_version(" + over + ")"), HasSubstr("db_version is exhausted"));
  db_.Exec("ROLLBACK");
  // A db_version at the limit: no local write can take a version after it,
  // nor can a merge (its records take the next local version, §11.6).
  db_.Exec("INSERT INTO crsql_changes " + kNine + " VALUES ('todo', X'010B0177', 'title', 'w', 1, " +
           max + ", " + kSite + ", 1, 0)");
  before = Snapshot();
  EXPECT_THAT(db_.Error("INSERT INTO todo VALUES ('z', 'new', 3)"),
              HasSubstr("db_version is exhausted"));
  EXPECT_THAT(db_.Error("SELECT crsql_next_db_version()"), HasSubstr("db_version is exhausted"));
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES ('todo', X'010B0176', 'title', 'v', 1, 5, " +
                        std::string(kSite) + ")"),
              HasSubstr("db_version is exhausted"));
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(db_.One("SELECT min(col_version) > 0 AND min(db_version) > 0 AND min(cl) > 0 AND "
                    "max(col_version) <= " + max + " AND max(db_version) <= " + max +
                    " AND max(cl) <= " + max + " FROM crsql_changes"),
            "1");
}

// A user trigger's RAISE(ABORT) undoes its statement: the change leaves
// nothing and the transaction goes on. RAISE(FAIL) keeps the row the
// trigger fired for, which no savepoint can undo while the merging
// statement runs: the transaction must then not commit (§12.3), and its
// rollback leaves no trace.
TEST_F(MergeErrorsTest, AUserTriggerRaisingFailLeavesNoPartOfTheChange) {
  db_.Exec("CREATE TRIGGER no_bad AFTER INSERT ON todo WHEN NEW.title LIKE 'bad%' "
           "BEGIN SELECT CASE NEW.title WHEN 'bad' THEN RAISE(FAIL, 'no bad titles') "
           "ELSE RAISE(ABORT, 'no bad titles') END; END;"
           "CREATE TRIGGER no_bad_update AFTER UPDATE ON todo WHEN NEW.title LIKE 'bad%' "
           "BEGIN SELECT CASE NEW.title WHEN 'bad' THEN RAISE(FAIL, 'no bad titles') "
           "ELSE RAISE(ABORT, 'no bad titles') END; END;");
  for (const char* pk : {"X'010B0178'", "X'010B0161'"}) {  // a new row; the existing row 'a'
    SCOPED_TRACE(pk);
    Rows at_start = Snapshot();
    db_.Exec("BEGIN");
    db_.Exec("INSERT INTO crsql_changes VALUES ('todo', X'010B0177', 'title', 'fine', 1, 4, " +
             std::string(kSite) + ")");
    auto values = [&](const char* title) {
      return std::string("'todo', ") + pk + ", 'title', '" + title + "', 9, 5, " + kSite;
    };
    ExpectRejected(values("bad-abort"), "no bad titles");  // nothing stays, the transaction goes on
    EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES (" + values("bad") + ")"),
                HasSubstr("no bad titles"));
    ExpectCommitRefusedAndNothingLeft(at_start);
  }
}

// A user trigger that writes (an audit row) before a constraint fails
// with ABORT: SQLite undoes the statement, the trigger's row included, so
// the change leaves nothing and the transaction goes on and commits
// (§12.3), though SQLite's total_changes counted the undone row.
TEST_F(MergeErrorsTest, ATriggersWriteUndoneWithItsStatementLeavesTheTransactionUsable) {
  db_.Exec("CREATE TABLE audit (x INTEGER PRIMARY KEY, what);"
           "CREATE TRIGGER audit_i BEFORE INSERT ON todo BEGIN "
           "INSERT INTO audit (what) VALUES ('i ' || NEW.id); END;"
           "CREATE TRIGGER audit_u BEFORE UPDATE ON todo BEGIN "
           "INSERT INTO audit (what) VALUES ('u ' || OLD.id); END;");
  int local = 0;
  // With and without extended result codes (sqlite3_open's default is off).
  for (int extended : {1, 0}) {
    sqlite3_extended_result_codes(db_.get(), extended);
    for (const char* pk : {"X'010B0178'", "X'010B0161'"}) {  // a new row; the existing row 'a'
      SCOPED_TRACE(std::string(pk) + (extended ? " extended" : " primary"));
      const std::string mine = "'m" + std::to_string(local++) + "'";
      db_.Exec("BEGIN");
      db_.Exec("INSERT INTO todo VALUES (" + mine + ", 'local', 1)");
      const std::string audited = db_.One("SELECT count(*) FROM audit");
      ExpectRejected(std::string("'todo', ") + pk + ", 'n', -5, 9, 5, " + kSite, "CHECK constraint failed");
      EXPECT_EQ(db_.One("SELECT count(*) FROM audit"), audited) << "the trigger's row stayed";
      db_.Exec("UPDATE todo SET title = 'still usable' WHERE id = " + mine);
      db_.Exec("COMMIT");
      EXPECT_EQ(db_.One("SELECT title FROM todo WHERE id = " + mine), "'still usable'");
    }
  }
  EXPECT_EQ(db_.One("SELECT count(*) FROM todo WHERE n < 0"), "0");
  // Without a journal (journal_mode OFF) SQLite undoes no failed statement:
  // the trigger's row stays, so the transaction must not commit.
  sqlite3_extended_result_codes(db_.get(), 1);
  ASSERT_EQ(db_.One("PRAGMA journal_mode = OFF"), "'off'");
  // (Nor does its rollback undo the audit row: OFF gives up atomicity.)
  Rows at_start = Snapshot();
  db_.Exec("BEGIN");
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES ('todo', X'010B0178', 'n', -5, 9, 5, " +
                        std::string(kSite) + ")"),
              HasSubstr("roll the transaction back"));
  ExpectCommitRefusedAndNothingLeft(at_start);
}

// A user trigger's RAISE(IGNORE) makes SQLite skip the row's write and
// report success. Merging the change anyway would leave clocks claiming a
// value (or a row, or a deletion) the table does not hold, which this
// replica would then pass on as the peer's: the change is refused.
TEST_F(MergeErrorsTest, AWriteATriggerSkipsIsRefusedAndLeavesNothing) {
  db_.Exec("CREATE TRIGGER no13 BEFORE UPDATE OF n ON todo WHEN NEW.n = 13 "
           "BEGIN SELECT RAISE(IGNORE); END;"
           "CREATE TRIGGER no_forbidden BEFORE INSERT ON todo WHEN NEW.title = 'forbidden' "
           "BEGIN SELECT RAISE(IGNORE); END;"
           "CREATE TRIGGER keep_a BEFORE DELETE ON todo WHEN OLD.id = 'a' "
           "BEGIN SELECT RAISE(IGNORE); END;"
           "CREATE TABLE k (id PRIMARY KEY NOT NULL); SELECT crsql_as_crr('k');"
           "CREATE TRIGGER no_k BEFORE INSERT ON k WHEN NEW.id = 'x' BEGIN SELECT RAISE(IGNORE); END;");
  const std::string s = kSite;
  db_.Exec("BEGIN");
  ExpectRejected("'todo', X'010B0161', 'n', 13, 3, 3, " + s, "skipped the write of todo row X'010b0161'");
  ExpectRejected("'todo', X'010B0178', 'title', 'forbidden', 1, 4, " + s, "skipped the write of todo row X'010b0178'");
  ExpectRejected("'todo', X'010B0161', '-1', NULL, 2, 5, " + s + ", 2, 0",
                 "skipped the delete of todo row X'010b0161'", kNine);
  const std::string k_changes = db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'k'");
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes " + kNine + " VALUES ('k', X'010B0178', '-1', NULL, 1, 6, " + s +
                        ", 1, 0)"),
              HasSubstr("skipped the insert of k row X'010b0178'"));
  EXPECT_EQ(db_.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = 'k'"), k_changes);
  // Changes the triggers let through still merge, and the transaction commits.
  db_.Exec("INSERT INTO crsql_changes VALUES ('todo', X'010B0161', 'n', 12, 3, 3, " + s + ")");
  db_.Exec("INSERT INTO crsql_changes " + kNine + " VALUES ('k', X'010B0179', '-1', NULL, 1, 6, " + s + ", 1, 0)");
  db_.Exec("COMMIT");
  EXPECT_EQ(db_.One("SELECT n FROM todo WHERE id = 'a'"), "12");
  EXPECT_EQ(db_.One("SELECT count(*) FROM todo"), "1");
  EXPECT_EQ(db_.One("SELECT group_concat(id) FROM k"), "'y'");
}

// A user trigger that deletes the row a merge wrote (or writes back the
// row a merge deleted) is not recorded (§11.7): the row's clocks would say
// it lives where it does not, and every later change of it that needs the
// row's values would fail for good. The change is refused instead; in a
// transaction the trigger's write cannot be undone, so the transaction is
// held for rollback.
TEST_F(MergeErrorsTest, ATriggerUndoingTheMergedRowsExistenceIsRefused) {
  db_.Exec("CREATE TRIGGER undelete AFTER DELETE ON todo WHEN OLD.id = 'a' "
           "BEGIN INSERT INTO todo VALUES (OLD.id, OLD.title, OLD.n); END;");
  const std::string s = kSite;
  Rows at_start = Snapshot();
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes " + kNine + " VALUES ('todo', X'010B0161', '-1', NULL, 2, 4, " +
                        s + ", 2, 0)"),
              HasSubstr("a user trigger wrote back todo row X'010b0161' while a merge deleted it"));
  EXPECT_EQ(Snapshot(), at_start);
  db_.Exec("DROP TRIGGER undelete;"
           "CREATE TRIGGER purge AFTER UPDATE OF title ON todo WHEN NEW.title = 'closed' "
           "BEGIN DELETE FROM todo WHERE id = NEW.id; END;");
  at_start = Snapshot();
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES ('todo', X'010B0161', 'title', 'closed', 2, 3, " + s + ")"),
              HasSubstr("a user trigger deleted todo row X'010b0161' while a merge wrote it"));
  EXPECT_EQ(Snapshot(), at_start);
  db_.Exec("BEGIN");
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES ('todo', X'010B0161', 'title', 'closed', 2, 3, " + s + ")"),
              HasSubstr("roll the transaction back"));
  db_.Exec("ROLLBACK");
  EXPECT_EQ(Snapshot(), at_start);
  // Values the trigger lets be merge as ever.
  db_.Exec("INSERT INTO crsql_changes VALUES ('todo', X'010B0161', 'title', 'open', 2, 3, " + s + ")");
  EXPECT_EQ(db_.One("SELECT title FROM todo WHERE id = 'a'"), "'open'");
}

// A user trigger's RAISE(ROLLBACK) during a merge ends the transaction
// (SQLite rolls it back): nothing of it stays, and the next transaction,
// which did nothing wrong, commits.
TEST_F(MergeErrorsTest, ATriggersRollbackDuringAMergeBurdensNoLaterTransaction) {
  db_.Exec("CREATE TABLE audit (x INTEGER PRIMARY KEY, what);"
           "CREATE TRIGGER audit_u BEFORE UPDATE ON todo BEGIN "
           "INSERT INTO audit (what) VALUES ('u ' || OLD.id); END;"
           "CREATE TRIGGER stop AFTER UPDATE ON todo WHEN NEW.title = 'stop' BEGIN "
           "SELECT RAISE(ROLLBACK, 'stopped'); END;");
  Rows at_start = Snapshot();
  db_.Exec("BEGIN");
  db_.Exec("INSERT INTO todo VALUES ('m', 'local', 1)");
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES ('todo', X'010B0161', 'title', 'stop', 9, 5, " +
                        std::string(kSite) + ")"),
              HasSubstr("stopped"));
  EXPECT_EQ(sqlite3_get_autocommit(db_.get()), 1);
  EXPECT_EQ(Snapshot(), at_start);
  EXPECT_EQ(db_.One("SELECT count(*) FROM audit"), "0");
  db_.Exec("BEGIN");
  db_.Exec("INSERT INTO todo VALUES ('m', 'local', 1)");
  db_.Exec("INSERT INTO crsql_changes VALUES ('todo', X'010B0161', 'title', 'fine', 9, 5, " +
           std::string(kSite) + ")");
  db_.Exec("COMMIT");
  EXPECT_EQ(db_.One("SELECT title FROM todo WHERE id = 'a'"), "'fine'");
  EXPECT_EQ(db_.One("SELECT count(*) FROM todo WHERE id = 'm'"), "1");
}

// A change that fails while applying does not raise the version later
// writes of the transaction get (§12.3: no trace).
TEST_F(MergeErrorsTest, AFailedChangeDoesNotRaiseTheTransactionsVersion) {
  const int64_t before = db_.Int("SELECT crsql_db_version()");
  db_.Exec("BEGIN");
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES ('todo', X'010B0178', 'n', -5, 1, 1000000, " +
                        std::string(kSite) + ")"),
              HasSubstr("CHECK constraint failed"));
  db_.Exec("INSERT INTO todo VALUES ('b', 'local', 2)");
  db_.Exec("COMMIT");
  EXPECT_EQ(db_.Int("SELECT crsql_db_version()"), before + 1);
  EXPECT_EQ(db_.One("SELECT DISTINCT db_version FROM crsql_changes WHERE pk = X'010B0162'"),
            std::to_string(before + 1));
}

// Nor the seqs it took: the transaction's next write gets the seq the
// failed change would have had.
TEST_F(MergeErrorsTest, AFailedChangeTakesNoSeq) {
  db_.Exec("BEGIN; INSERT INTO todo VALUES ('b', 'local', 2);");
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES ('todo', X'010B0178', 'n', -5, 1, 1000000, " +
                        std::string(kSite) + ")"),
              HasSubstr("CHECK constraint failed"));
  db_.Exec("INSERT INTO todo VALUES ('c', 'local', 3)");
  db_.Exec("COMMIT");
  // b's cells took seqs from 0; c's follow on.
  EXPECT_EQ(db_.One("SELECT min(seq) FROM crsql_changes WHERE pk = X'010B0162'"), "0");
  EXPECT_EQ(db_.One("SELECT (SELECT min(seq) FROM crsql_changes WHERE pk = X'010B0163') - "
                    "(SELECT max(seq) FROM crsql_changes WHERE pk = X'010B0162')"),
            "1");
}

// A merge that finds the database's version at the limit fails like any
// other bad change: the transaction stays open with its work (SQLite rolls
// a whole transaction back for SQLITE_FULL, the code of the same failure
// in a local write, when the statement has no journal of its own).
TEST_F(MergeErrorsTest, AnExhaustedVersionLeavesTheTransactionOpen) {
  const std::string max = std::to_string(kMaxChangeVersion);
  db_.Exec("INSERT INTO crsql_changes " + kNine + " VALUES ('todo', X'010B0177', 'title', 'w', 1, " +
           max + ", " + kSite + ", 1, 0)");
  db_.Exec("BEGIN; INSERT INTO plain VALUES (1, 'work');");
  ExpectRejected("'todo', X'010B0176', 'title', 'v', 1, 5, " + std::string(kSite),
                 "db_version is exhausted");
  db_.Exec("COMMIT");
  EXPECT_EQ(db_.One("SELECT v FROM plain"), "'work'");
}

TEST_F(MergeErrorsTest, SpecExampleFailingRowLeavesTransactionUsable) {
  db_.Exec("BEGIN;"
           "INSERT INTO crsql_changes VALUES ('todo', X'010B0178', 'title', 'ok', 1, 7, " +
           std::string(kSite) + ");");
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes VALUES ('todo', X'010B0179', 'nope', 'bad', 1, 7, " +
                        std::string(kSite) + ")"),
              HasSubstr("crsql - no such column todo.nope"));
  EXPECT_EQ(db_.Query("SELECT id, title FROM todo WHERE id IN ('x', 'y')"), (Rows{{"'x'", "'ok'"}}));
  db_.Exec("COMMIT");
  EXPECT_EQ(db_.Query("SELECT id FROM todo ORDER BY id"), (Rows{{"'a'"}, {"'x'"}}));
}

TEST_F(MergeErrorsTest, MultiRowInsertIsAtomicAsAStatement) {
  Rows before = Snapshot();
  EXPECT_THAT(db_.Error("INSERT INTO crsql_changes SELECT * FROM (VALUES "
                        "('todo', X'010B0171', 'title', 'q', 1, 3, " + std::string(kSite) + "),"
                        "('todo', X'010B0172', 'title', 'r', 1, 3, " + std::string(kSite) + "),"
                        "('todo', X'010B0173', 'bad', 's', 1, 3, " + std::string(kSite) + "))"),
              HasSubstr("no such column todo.bad"));
  EXPECT_EQ(Snapshot(), before);
  db_.Exec("BEGIN");
  EXPECT_FALSE(db_.Try("INSERT INTO crsql_changes SELECT * FROM (VALUES "
                       "('todo', X'010B0171', 'title', 'q', 1, 3, " + std::string(kSite) + "),"
                       "('todo', X'010B0173', 'bad', 's', 1, 3, " + std::string(kSite) + "))").ok());
  db_.Exec("COMMIT");
  EXPECT_EQ(Snapshot(), before);
}

// Found by fuzzing (tests/fuzz/regressions/changes_insert_fuzz): a merge
// rolled back to a savepoint took a db_version that the COMMIT then
// announced, though no row holds it; another connection's next write got the
// same version. crsql_db_version() now only reports what is stored.
TEST(RolledBackMergeTest, DoesNotAnnounceItsDbVersion) {
  TempPath path;
  TestDb src, a(path.str());
  for (TestDb* db : {&src, &a}) db->Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  src.Exec("INSERT INTO t VALUES (1, 'x')");
  a.Exec("INSERT INTO t VALUES (9, 'local')");
  std::string before = a.One("SELECT crsql_db_version()");
  a.Exec("BEGIN; SAVEPOINT s;");
  ASSERT_OK(ApplyChanges(a.get(), ReadChanges(src.get())));
  a.Exec("ROLLBACK TO s; RELEASE s; COMMIT;");
  EXPECT_EQ(a.One("SELECT count(*) FROM t"), "1");
  EXPECT_EQ(a.One("SELECT crsql_db_version()"), before);
  TestDb b(path.str());
  b.Exec("INSERT INTO t VALUES (10, 'other')");
  EXPECT_GT(a.Int("SELECT crsql_db_version()"), std::stoll(before));
  EXPECT_EQ(a.One("SELECT crsql_db_version()"), b.One("SELECT crsql_db_version()"));
}

// Found by fuzzing: a site id inserted by a merge that was then rolled back
// to a savepoint stayed in the ordinal cache; a later merge from that site
// wrote clocks pointing to an ordinal crsql_site_id lacked, or that the next
// new site then got, so the first site's changes read as the second's.
TEST(RolledBackMergeTest, ForgetsTheSiteIdsItInserted) {
  TestDb x, y, a;
  for (TestDb* db : {&x, &y, &a}) db->Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  x.Exec("INSERT INTO t VALUES (1, 'from x')");
  y.Exec("INSERT INTO t VALUES (2, 'from y')");
  a.Exec("BEGIN; SAVEPOINT s;");
  ASSERT_OK(ApplyChanges(a.get(), ReadChanges(x.get())));
  a.Exec("ROLLBACK TO s; RELEASE s;");
  ASSERT_OK(ApplyChanges(a.get(), ReadChanges(y.get())));
  ASSERT_OK(ApplyChanges(a.get(), ReadChanges(x.get())));
  a.Exec("COMMIT");
  EXPECT_EQ(a.One("SELECT hex(site_id) FROM crsql_changes WHERE pk = crsql_pack_columns(1) AND cid = 'v'"),
            x.One("SELECT hex(crsql_site_id())"));
  EXPECT_EQ(a.One("SELECT hex(site_id) FROM crsql_changes WHERE pk = crsql_pack_columns(2) AND cid = 'v'"),
            y.One("SELECT hex(crsql_site_id())"));
  EXPECT_EQ(a.One("SELECT count(*) FROM crsql_site_id"), "3");

  // The same, with the commit between the rollback and the next merges: the
  // cached ordinal of the rolled-back site must not survive the commit.
  TestDb p, q, b;
  for (TestDb* db : {&p, &q, &b}) db->Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t')");
  p.Exec("INSERT INTO t VALUES (1, 'from p')");
  q.Exec("INSERT INTO t VALUES (2, 'from q')");
  b.Exec("BEGIN; SAVEPOINT s;");
  ASSERT_OK(ApplyChanges(b.get(), ReadChanges(p.get())));
  b.Exec("ROLLBACK TO s; RELEASE s; COMMIT;");
  ASSERT_OK(ApplyChanges(b.get(), ReadChanges(q.get())));
  ASSERT_OK(ApplyChanges(b.get(), ReadChanges(p.get())));
  EXPECT_EQ(b.One("SELECT hex(site_id) FROM crsql_changes WHERE pk = crsql_pack_columns(1) AND cid = 'v'"),
            p.One("SELECT hex(crsql_site_id())"));
  EXPECT_EQ(b.One("SELECT hex(site_id) FROM crsql_changes WHERE pk = crsql_pack_columns(2) AND cid = 'v'"),
            q.One("SELECT hex(crsql_site_id())"));
}

// A generated column exists in the table but is never replicated: the
// error says that rather than "no such column".
TEST(MergeGeneratedColumnTest, AChangeOfAGeneratedColumnIsRefusedAsSuch) {
  TestDb db;
  db.Exec("CREATE TABLE g (id PRIMARY KEY NOT NULL, a, b AS (a * 2), c AS (a + 1) STORED);"
          "SELECT crsql_as_crr('g');");
  const Rows before = CrrState(db, {"g"});
  for (const char* cid : {"b", "c"}) {
    EXPECT_THAT(db.Error(std::string("INSERT INTO crsql_changes VALUES ('g', X'010901', '") + cid +
                         "', 4, 1, 1, " + kSite + ")"),
                HasSubstr(std::string("crsql - g.") + cid + " is a generated column"));
    EXPECT_EQ(CrrState(db, {"g"}), before) << cid;
  }
  EXPECT_EQ(db.One("SELECT count(*) FROM g"), "0");
}

}  // namespace
}  // namespace crsync
