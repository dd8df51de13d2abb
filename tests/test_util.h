// tests/test_util.h — shared helpers for crsync's GoogleTest suites.
#ifndef CRSYNC_TESTS_TEST_UTIL_H_
#define CRSYNC_TESTS_TEST_UTIL_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <ostream>
#include <thread>
#include <string>
#include <vector>

#include "crsync/crsync.h"
#include "crsync/sqlite_handles.h"
#include "crsync/status.h"

namespace crsync {

// How GoogleTest prints a Status (found by argument-dependent lookup):
// "OK" or its code and message, instead of its bytes.
inline void PrintTo(const Status& s, std::ostream* os) { *os << s.ToString(); }

// Matches an OK Status and prints a failing one in full.
MATCHER(IsOk, "") {
  *result_listener << arg.ToString();
  return arg.ok();
}

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::crsync::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::crsync::IsOk())

using Rows = std::vector<std::vector<std::string>>;

// A connection with the crsync engine installed.
class TestDb {
 public:
  explicit TestDb(const std::string& path = ":memory:") : path_(path) { Open(); }

  void Open() {
    Status s = OpenDb(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr,
                      &db_);
    EXPECT_OK(s);
    char* err = nullptr;
    int rc = crsync_engine_init(db_.get(), &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
  }
  void Reopen() {
    db_.reset();
    Open();
  }
  // Closes this connection and opens `path` instead (a restore, say).
  void ReopenAt(const std::string& path) {
    path_ = path;
    Reopen();
  }

  sqlite3* get() const { return db_.get(); }

  // Runs `sql`; EXPECTs success.
  void Exec(const std::string& sql) {
    Status s = crsync::Exec(db_.get(), sql);
    EXPECT_OK(s) << "while running: " << sql;
  }
  Status Try(const std::string& sql) { return crsync::Exec(db_.get(), sql); }

  // Runs `sql` and returns every row, each value rendered by SQLite's
  // quote(): 'text', X'blob', 12, 1.5, NULL.
  Rows Query(const std::string& sql) {
    Rows out;
    StmtPtr st;
    Status s = Prepare(db_.get(), sql, &st);
    EXPECT_OK(s) << sql;
    if (!s.ok()) return out;
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(st.get()); ++i) row.push_back(Render(st.get(), i));
      out.push_back(std::move(row));
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db_.get()) << " in " << sql;
    return out;
  }

  // The single value `sql` returns.
  std::string One(const std::string& sql) {
    Rows r = Query(sql);
    if (r.empty() || r[0].empty()) return "<no row>";
    return r[0][0];
  }
  int64_t Int(const std::string& sql) { return std::stoll(One(sql)); }
  // The single value `sql` returns, as raw text (no quoting): for building
  // SQL from query results, e.g. Text("SELECT quote(crsql_site_id())").
  std::string Text(const std::string& sql) {
    Rows r = Query("SELECT CAST((" + sql + ") AS TEXT)");
    if (r.empty() || r[0].empty() || r[0][0].size() < 2) return "<no row>";
    std::string v = r[0][0].substr(1, r[0][0].size() - 2);
    return v;
  }

  // Runs `sql`, which must fail; returns the error message.
  std::string Error(const std::string& sql) {
    Status s = crsync::Exec(db_.get(), sql);
    EXPECT_FALSE(s.ok()) << "expected an error from: " << sql;
    return s.message();
  }

  // Column `i` of the current row as SQL-ish text: 42, 1.5, 'text', X'AB', NULL.
  static std::string Render(sqlite3_stmt* st, int i) {
    static const char kHex[] = "0123456789ABCDEF";
    switch (sqlite3_column_type(st, i)) {
      case SQLITE_INTEGER:
        return std::to_string(sqlite3_column_int64(st, i));
      case SQLITE_FLOAT: {
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", sqlite3_column_double(st, i));
        return buf;
      }
      case SQLITE_TEXT: {
        std::string s = "'";
        s += reinterpret_cast<const char*>(sqlite3_column_text(st, i));
        return s + "'";
      }
      case SQLITE_BLOB: {
        const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(st, i));
        std::string s = "X'";
        for (int k = 0; k < sqlite3_column_bytes(st, i); ++k) {
          s += kHex[p[k] >> 4];
          s += kHex[p[k] & 15];
        }
        return s + "'";
      }
      default:
        return "NULL";
    }
  }

 private:
  std::string path_;
  DbPtr db_;
};

// Rolls back to `savepoint`, then runs DDL until the schema version is
// back at the value the engine last saw (where a stale catalog revives).
inline void ClimbBackAfterRollbackTo(TestDb& db, const std::string& savepoint) {
  int64_t seen = std::stoll(db.One("PRAGMA schema_version"));
  db.Exec("ROLLBACK TO " + savepoint);
  int64_t now = std::stoll(db.One("PRAGMA schema_version"));
  ASSERT_LT(now, seen);
  for (int64_t i = now; i < seen; ++i) db.Exec("CREATE TABLE climb" + std::to_string(i) + " (a)");
  ASSERT_EQ(std::stoll(db.One("PRAGMA schema_version")), seen);
}

// Polls `done` every 20 ms until it holds or `limit` has passed; returns
// its last answer.
template <typename Pred>
bool WaitUntil(Pred&& done, std::chrono::milliseconds limit) {
  for (auto deadline = std::chrono::steady_clock::now() + limit;
       std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(std::chrono::milliseconds(20))) {
    if (done()) return true;
  }
  return done();
}

// What a rejected write must leave as it was: the rows of `tables`, every
// change crsql_changes lists, the tracked peers and the committed version
// (compare a call before with one after).
inline Rows CrrState(TestDb& db, std::initializer_list<std::string> tables) {
  Rows all;
  std::vector<std::string> queries;
  for (const std::string& t : tables) queries.push_back("SELECT * FROM " + t + " ORDER BY 1");
  queries.push_back("SELECT \"table\", hex(pk), cid, quote(val), col_version, db_version, "
                    "hex(site_id), cl, seq FROM crsql_changes");
  queries.push_back("SELECT * FROM crsql_tracked_peers");
  queries.push_back("SELECT crsql_db_version()");
  for (const std::string& q : queries) {
    Rows r = db.Query(q);
    all.push_back({"-- " + q});
    all.insert(all.end(), r.begin(), r.end());
  }
  return all;
}

// How many random seeds a property test runs (env CRSYNC_PROPERTY_SEEDS).
// A value that is not a positive count fails the calling test (a property
// test that runs no seed would pass without checking anything).
inline int PropertySeeds(int fallback) {
  const char* v = std::getenv("CRSYNC_PROPERTY_SEEDS");
  const int n = v ? std::atoi(v) : fallback;
  if (n <= 0) {
    ADD_FAILURE() << "CRSYNC_PROPERTY_SEEDS='" << (v ? v : "") << "' is not a positive count";
    return 1;
  }
  return n;
}

// A fresh temporary file path (removed with its -wal/-shm at destruction).
class TempPath {
 public:
  TempPath() {
    char tmpl[] = "/tmp/crsync-test-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd >= 0) close(fd);
    path_ = tmpl;
    std::remove(path_.c_str());
  }
  ~TempPath() {
    for (const char* suffix : {"", "-wal", "-shm", "-journal", "-crsync", "-crsyncd.lock"})
      std::remove((path_ + suffix).c_str());
  }
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

// Sends this process's stderr (fd 2: the sidecar's log) to a file from
// construction until Text() or destruction, which put it back.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    saved_ = dup(2);
    file_ = std::fopen(path_.str().c_str(), "w+");
    if (file_) dup2(fileno(file_), 2);
  }
  ~StderrCapture() { Restore(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  // What was written meanwhile; stderr is restored first.
  std::string Text() {
    Restore();
    return Read();
  }
  // What was written so far, still capturing.
  std::string Peek() {
    std::fflush(stderr);
    return Read();
  }
  // Waits (bounded) until what was written holds `text`.
  bool WaitFor(const std::string& text, std::chrono::milliseconds limit) {
    return WaitUntil([&] { return Peek().find(text) != std::string::npos; }, limit);
  }

 private:
  std::string Read() {
    std::string text;
    if (FILE* f = std::fopen(path_.str().c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
      std::fclose(f);
    }
    return text;
  }
  void Restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    saved_ = -1;
    if (file_) std::fclose(file_);
    file_ = nullptr;
  }
  TempPath path_;
  int saved_ = -1;
  FILE* file_ = nullptr;
};

}  // namespace crsync

#endif  // CRSYNC_TESTS_TEST_UTIL_H_
