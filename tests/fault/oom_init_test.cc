// Installing the engine while SQLite runs out of memory: for every
// allocation crsync_engine_init makes, a run where that one fails. Whatever
// fails, the call returns an error code (or succeeds), nothing crashes, and
// the connection still closes with sqlite3_close() (the half-installed
// engine keeps no statement open and is freed with the connection). An
// engine that did install works, and so does one whose installation a
// second call finished once memory was back.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

#include "crsync/crsync.h"

namespace crsync {
namespace {

sqlite3_mem_methods g_real;
long g_countdown = -1;  // the allocation that fails (0 = the next); -1 = none
bool g_failed = false;

bool FailNow() {
  if (g_countdown < 0) return false;
  if (g_countdown-- > 0) return false;
  g_failed = true;
  return true;
}
void* FailingMalloc(int n) { return FailNow() ? nullptr : g_real.xMalloc(n); }
void* FailingRealloc(void* p, int n) { return FailNow() ? nullptr : g_real.xRealloc(p, n); }

// Swaps SQLite's allocator for one that can fail, for the test's lifetime.
class FailingAllocator {
 public:
  FailingAllocator() {
    ok_ = sqlite3_shutdown() == SQLITE_OK &&
          sqlite3_config(SQLITE_CONFIG_GETMALLOC, &g_real) == SQLITE_OK;
    sqlite3_mem_methods m = g_real;
    m.xMalloc = FailingMalloc;
    m.xRealloc = FailingRealloc;
    ok_ = ok_ && sqlite3_config(SQLITE_CONFIG_MALLOC, &m) == SQLITE_OK &&
          sqlite3_initialize() == SQLITE_OK;
  }
  ~FailingAllocator() {
    g_countdown = -1;
    sqlite3_shutdown();
    sqlite3_config(SQLITE_CONFIG_MALLOC, &g_real);
    sqlite3_initialize();
  }
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
};

std::string One(sqlite3* db, const char* sql, int* rc) {
  sqlite3_stmt* st = nullptr;
  *rc = sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
  std::string out;
  if (*rc == SQLITE_OK) {
    *rc = sqlite3_step(st);
    if (*rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      out = t ? reinterpret_cast<const char*>(t) : "NULL";
      *rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  return out;
}

// What installed works: a CRR, a write, its change.
void ExpectEngineWorks(sqlite3* db) {
  int q = SQLITE_OK;
  One(db, "SELECT crsql_as_crr('t')", &q);  // no such table yet
  EXPECT_NE(q, SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE t (id PRIMARY KEY NOT NULL, v);"
                         "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, 'x');",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  EXPECT_EQ(One(db, "SELECT count(*) FROM crsql_changes", &q), "1");
  EXPECT_EQ(q, SQLITE_OK);
}

TEST(OutOfMemoryTest, EngineInitFailsCleanlyAtEveryAllocation) {
  FailingAllocator allocator;
  ASSERT_TRUE(allocator.ok()) << "cannot swap SQLite's allocator";
  int failures = 0, installs = 0;
  for (long n = 0;; ++n) {
    SCOPED_TRACE("allocation " + std::to_string(n) + " fails");
    ASSERT_LT(n, 20000) << "init never ran out of allocations to fail";
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
    g_failed = false;
    g_countdown = n;
    char* err = nullptr;
    int rc = crsync_engine_init(db, &err);
    g_countdown = -1;
    const bool injected = g_failed;
    sqlite3_free(err);
    if (rc == SQLITE_OK) {
      ++installs;
      ExpectEngineWorks(db);
    } else {
      ++failures;
      EXPECT_TRUE(injected) << "init failed (" << rc << ") without an allocation failing";
      // Memory is back: a second call finishes what the first began.
      err = nullptr;
      EXPECT_EQ(crsync_engine_init(db, &err), SQLITE_OK) << (err ? err : "");
      sqlite3_free(err);
      ExpectEngineWorks(db);
    }
    // The connection closes: nothing of a half-installed engine keeps it.
    EXPECT_EQ(sqlite3_close(db), SQLITE_OK) << sqlite3_errstr(rc);
    if (!injected) break;  // every allocation of init has been failed once
  }
  EXPECT_GT(failures, 10);
  EXPECT_GE(installs, 1);
}

}  // namespace
}  // namespace crsync
