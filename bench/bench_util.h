// bench/bench_util.h — fixtures shared by crsync's benchmarks.
//
// Every case comes in pairs (or more) measured in the same run: a plain
// SQLite baseline and the crsync path. scripts/bench.sh turns the JSON into
// medians and ratios. CRSYNC_BENCH_ROWS scales every case (CI smoke runs use
// a tiny value).
#ifndef CRSYNC_BENCH_BENCH_UTIL_H_
#define CRSYNC_BENCH_BENCH_UTIL_H_

#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "crsync/crsync.h"
#include "crsync/sqlite_handles.h"

namespace crsync {

// The extension named by CRSYNC_BENCH_EXT, or nullptr for crsync itself.
inline const char* OtherExtension() {
  const char* v = std::getenv("CRSYNC_BENCH_EXT");
  return v && *v ? v : nullptr;
}

// Cases that use crsync's C++ API skip themselves in comparison mode.
inline bool SkipForOtherExtension(benchmark::State& state) {
  if (!OtherExtension()) return false;
  state.SkipWithError("uses the crsync C++ API (not available with --ext)");
  return true;
}

inline int BenchRows(int fallback) {
  const char* v = std::getenv("CRSYNC_BENCH_ROWS");
  return v ? std::atoi(v) : fallback;
}

// A fresh database file in $TMPDIR, WAL and synchronous=NORMAL, optionally
// with the engine. Removed at destruction.
class BenchDb {
 public:
  explicit BenchDb(bool engine, const char* tag = "db", const char* vfs = nullptr) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir ? dir : "/tmp") + "/crsync-bench-" + tag + "-" +
            std::to_string(getpid()) + ".db";
    Remove();
    Check(OpenDb(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs, &db_));
    if (engine) {
      char* err = nullptr;
      int rc;
      if (const char* ext = OtherExtension()) {
        // Comparison mode: the same SQL against another implementation of
        // cr-sqlite's API (scripts/bench.sh --ext PATH).
        sqlite3_enable_load_extension(db_.get(), 1);
        rc = sqlite3_load_extension(db_.get(), ext, nullptr, &err);
      } else {
        rc = crsync_engine_init(db_.get(), &err);
      }
      if (rc != SQLITE_OK) {
        std::fprintf(stderr, "engine: %s\n", err ? err : "?");
        std::abort();
      }
    }
    Exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA recursive_triggers = OFF;");
  }
  ~BenchDb() {
    db_.reset();
    Remove();
  }
  sqlite3* get() const { return db_.get(); }
  const std::string& path() const { return path_; }
  void Exec(const std::string& sql) { Check(crsync::Exec(db_.get(), sql)); }
  StmtPtr Prep(const std::string& sql) {
    StmtPtr st;
    Check(Prepare(db_.get(), sql, &st));
    return st;
  }
  int64_t Int(const std::string& sql) {
    StmtPtr st = Prep(sql);
    return sqlite3_step(st.get()) == SQLITE_ROW ? sqlite3_column_int64(st.get(), 0) : -1;
  }
  static void Check(const Status& s) {
    if (!s.ok()) {
      std::fprintf(stderr, "bench: %s\n", s.ToString().c_str());
      std::abort();
    }
  }

 private:
  void Remove() {
    for (const char* s : {"", "-wal", "-shm", "-crsync"}) std::remove((path_ + s).c_str());
  }
  std::string path_;
  DbPtr db_;
};

// The benchmark table: int key, text, int, real.
constexpr char kItemsSql[] =
    "CREATE TABLE items (id INTEGER PRIMARY KEY NOT NULL, name TEXT, qty INTEGER, price REAL)";

// Writes items rows first..first+rows-1 with `verb` ("INSERT", "INSERT OR
// REPLACE", ...).
inline void InsertItems(BenchDb& db, int rows, int first = 0, const char* verb = "INSERT") {
  StmtPtr st = db.Prep(std::string(verb) + " INTO items VALUES (?1, ?2, ?3, ?4)");
  char name[32];
  for (int i = first; i < first + rows; ++i) {
    std::snprintf(name, sizeof name, "item-%08d", i);
    sqlite3_bind_int64(st.get(), 1, i);
    sqlite3_bind_text(st.get(), 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st.get(), 3, i % 1000);
    sqlite3_bind_double(st.get(), 4, i * 0.25);
    BenchDb::Check(StepToEnd(db.get(), st.get()));
  }
}

// Creates the items table in `db` (a CRR when `crr`) and fills it with
// `rows` rows in one transaction.
inline void SetUpItems(BenchDb& db, bool crr, int rows) {
  db.Exec(kItemsSql);
  if (crr) db.Exec("SELECT crsql_as_crr('items')");
  if (rows == 0) return;
  db.Exec("BEGIN");
  InsertItems(db, rows);
  db.Exec("COMMIT");
}

}  // namespace crsync

#endif  // CRSYNC_BENCH_BENCH_UTIL_H_
