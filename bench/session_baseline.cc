// The session API is declared only with these two defined; Debian's
// libsqlite3 is built with both.
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "bench/session_baseline.h"

#include <cstdio>
#include <cstdlib>
#include <map>

#include "bench/bench_util.h"

namespace crsync {

const std::string& ItemsChangeset(int rows) {
  static std::map<int, std::string> cache;
  auto it = cache.find(rows);
  if (it != cache.end()) return it->second;
  BenchDb db(false, "session-src");
  db.Exec(kItemsSql);
  sqlite3_session* session = nullptr;
  if (sqlite3session_create(db.get(), "main", &session) != SQLITE_OK ||
      sqlite3session_attach(session, "items") != SQLITE_OK) {
    std::fprintf(stderr, "session: cannot create\n");
    std::abort();
  }
  db.Exec("BEGIN");
  InsertItems(db, rows);
  db.Exec("COMMIT");
  int n = 0;
  void* p = nullptr;
  if (sqlite3session_changeset(session, &n, &p) != SQLITE_OK) std::abort();
  std::string out(static_cast<const char*>(p), static_cast<size_t>(n));
  sqlite3_free(p);
  sqlite3session_delete(session);
  return cache[rows] = std::move(out);
}

void ApplyChangeset(sqlite3* db, const std::string& changeset) {
  auto on_conflict = [](void*, int, sqlite3_changeset_iter*) { return SQLITE_CHANGESET_REPLACE; };
  int rc = sqlite3changeset_apply(db, static_cast<int>(changeset.size()),
                                  const_cast<char*>(changeset.data()), nullptr, on_conflict, nullptr);
  if (rc != SQLITE_OK) {
    std::fprintf(stderr, "changeset_apply: %s\n", sqlite3_errmsg(db));
    std::abort();
  }
}

}  // namespace crsync
