#include "crsync/status.h"

#include "crsync/sqlite_handles.h"
#include "tests/test_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(StatusTest, OkIsOkAndPrintsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_EQ(s.sqlite_code(), SQLITE_OK);
}

TEST(StatusTest, SqliteStatusCarriesCodeAndMessage) {
  Status s = Status::Sqlite(SQLITE_CONSTRAINT_CHECK, "CHECK constraint failed: x");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kSqlite);
  EXPECT_EQ(s.sqlite_code(), SQLITE_CONSTRAINT_CHECK);
  EXPECT_THAT(s.ToString(), HasSubstr("CHECK constraint failed: x"));
  EXPECT_THAT(s.ToString(), HasSubstr(std::to_string(SQLITE_CONSTRAINT_CHECK)));
}

TEST(StatusTest, NonSqliteCodesMapToSqliteCodes) {
  EXPECT_EQ(Status::InvalidArgument("x").sqlite_code(), SQLITE_ERROR);
  EXPECT_EQ(Status::Corruption("x").sqlite_code(), SQLITE_CORRUPT);
  EXPECT_EQ(Status::NotFound("x").sqlite_code(), SQLITE_NOTFOUND);
  EXPECT_EQ(Status::IOError("x").sqlite_code(), SQLITE_IOERR);
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  Status s = Status::Corruption("bad byte").WithContext("frame 3");
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_EQ(s.message(), "frame 3: bad byte");
  EXPECT_TRUE(Status::OK().WithContext("ignored").ok());
}

// Copies are deep (each owns its error), moves hand the error over and
// leave an OK status behind.
TEST(StatusTest, CopiesAreIndependentAndMovesLeaveOk) {
  Status a = Status::Sqlite(SQLITE_BUSY, "database is locked");
  Status b = a;
  EXPECT_EQ(b.code(), Status::Code::kSqlite);
  EXPECT_EQ(b.sqlite_code(), SQLITE_BUSY);
  EXPECT_EQ(b.message(), "database is locked");
  b = Status::NotFound("gone");  // a is untouched
  EXPECT_EQ(a.message(), "database is locked");
  Status c = std::move(a);
  EXPECT_EQ(c.sqlite_code(), SQLITE_BUSY);
  EXPECT_TRUE(a.ok());  // NOLINT(bugprone-use-after-move): moved-from is OK
  EXPECT_EQ(a.message(), "");
  c = b;
  EXPECT_EQ(c.code(), Status::Code::kNotFound);
  c = c;  // self-assignment keeps it
  EXPECT_EQ(c.message(), "gone");
  c = Status::OK();
  EXPECT_TRUE(c.ok());
  EXPECT_EQ(c.code(), Status::Code::kOk);
  EXPECT_EQ(c.message(), "");
}

TEST(StatusTest, GoogleTestPrintsAStatusAsText) {
  EXPECT_EQ(::testing::PrintToString(Status::OK()), "OK");
  EXPECT_EQ(::testing::PrintToString(Status::Corruption("bad byte")), "Corruption: bad byte");
}

TEST(StatusTest, IsOkMatcherDescribesFailure) {
  Status bad = Status::InvalidArgument("nope");
  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(IsOk(), bad, &listener));
  EXPECT_THAT(listener.str(), HasSubstr("InvalidArgument: nope"));
  EXPECT_THAT(Status::OK(), IsOk());
  EXPECT_THAT(bad, Not(IsOk()));
}

TEST(SqliteHandlesTest, PrepareInvalidSqlSurfacesSqliteCodeAndMessage) {
  DbPtr db;
  ASSERT_OK(OpenDb(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &db));
  StmtPtr st;
  Status s = Prepare(db.get(), "SELEC 1", &st);
  EXPECT_EQ(s.code(), Status::Code::kSqlite);
  EXPECT_EQ(s.sqlite_code(), SQLITE_ERROR);
  EXPECT_THAT(s.message(), HasSubstr("syntax error"));
  EXPECT_EQ(st, nullptr);
}

TEST(SqliteHandlesTest, OpenFailureReportsPathAndLeavesOutputEmpty) {
  DbPtr db;
  Status s = OpenDb("/nonexistent-dir/x.db", SQLITE_OPEN_READWRITE, nullptr, &db);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent-dir/x.db"));
  EXPECT_EQ(db, nullptr);
}

TEST(SqliteHandlesTest, ExtendedResultCodesAreOn) {
  DbPtr db;
  ASSERT_OK(OpenDb(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &db));
  ASSERT_OK(Exec(db.get(), "CREATE TABLE t(a CHECK (a > 0))"));
  Status s = Exec(db.get(), "INSERT INTO t VALUES (0)");
  EXPECT_EQ(s.sqlite_code(), SQLITE_CONSTRAINT_CHECK);
}

TEST(SqliteHandlesTest, StepToEndReportsErrorsAndResets) {
  DbPtr db;
  ASSERT_OK(OpenDb(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &db));
  ASSERT_OK(Exec(db.get(), "CREATE TABLE t(a PRIMARY KEY)"));
  StmtPtr st;
  ASSERT_OK(Prepare(db.get(), "INSERT INTO t VALUES (1)", &st));
  EXPECT_OK(StepToEnd(db.get(), st.get()));
  Status s = StepToEnd(db.get(), st.get());
  EXPECT_EQ(s.sqlite_code(), SQLITE_CONSTRAINT_PRIMARYKEY);
}

TEST(SqliteHandlesTest, QuotingDoublesQuotes) {
  EXPECT_EQ(QuoteIdent("we\"ird"), "\"we\"\"ird\"");
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
}

}  // namespace
}  // namespace crsync
