// tests/sqlite_log.h — sqlite3_log messages for a test program.
//
// Including this header installs an SQLITE_CONFIG_LOG callback during
// static initialization, before SQLite initializes (the only time it can
// be set), that keeps every message. A test program has one such callback:
// include this from its sources only. Thread-safe.
#ifndef CRSYNC_TESTS_SQLITE_LOG_H_
#define CRSYNC_TESTS_SQLITE_LOG_H_

#include <sqlite3.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace crsync {

inline std::mutex g_sqlite_log_mutex;
inline std::vector<std::string> g_sqlite_log;
inline const bool g_sqlite_log_installed = [] {
  return sqlite3_config(SQLITE_CONFIG_LOG, +[](void*, int, const char* msg) {
    std::lock_guard<std::mutex> lock(g_sqlite_log_mutex);
    g_sqlite_log.emplace_back(msg);
  }, nullptr) == SQLITE_OK;
}();

// The messages logged since the last call, which empties the log.
inline std::vector<std::string> TakeSqliteLog() {
  std::lock_guard<std::mutex> lock(g_sqlite_log_mutex);
  return std::exchange(g_sqlite_log, {});
}

}  // namespace crsync

#endif  // CRSYNC_TESTS_SQLITE_LOG_H_
