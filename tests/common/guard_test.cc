#include "common/guard.h"

#include <stdexcept>

#include "tests/test_util.h"

namespace crsync {
namespace {

TEST(GuardTest, ReturnsBodyResult) {
  EXPECT_EQ(GuardSqliteCall(SQLITE_IOERR, [] { return SQLITE_OK; }), SQLITE_OK);
}

TEST(GuardTest, MapsExceptionsToResultCodes) {
  EXPECT_EQ(GuardSqliteCall(SQLITE_IOERR_READ, []() -> int { throw std::runtime_error("x"); }),
            SQLITE_IOERR_READ);
  EXPECT_EQ(GuardSqliteCall(SQLITE_IOERR_READ, []() -> int { throw std::bad_alloc(); }),
            SQLITE_NOMEM);
  EXPECT_EQ(GuardSqliteCall(SQLITE_ERROR, []() -> int { throw 42; }), SQLITE_ERROR);
}

// An SQL function whose body throws reports an SQL error instead of
// unwinding through SQLite.
void Thrower(sqlite3_context* ctx, int, sqlite3_value**) {
  GuardSqlFunction(ctx, [] { throw std::runtime_error("boom"); });
}

TEST(GuardTest, SqlFunctionExceptionBecomesSqlError) {
  DbPtr db;
  ASSERT_OK(OpenDb(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &db));
  ASSERT_EQ(sqlite3_create_function(db.get(), "thrower", 0, SQLITE_UTF8, nullptr, Thrower, nullptr,
                                    nullptr),
            SQLITE_OK);
  Status s = Exec(db.get(), "SELECT thrower()");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), ::testing::HasSubstr("boom"));
  EXPECT_OK(Exec(db.get(), "SELECT 1"));  // the connection is still usable
}

}  // namespace
}  // namespace crsync
