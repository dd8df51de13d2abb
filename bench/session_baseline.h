// bench/session_baseline.h — the SQLite session extension as a reference
// line for merge benchmarks: a changeset of N inserted items rows, applied
// with sqlite3changeset_apply.
#ifndef CRSYNC_BENCH_SESSION_BASELINE_H_
#define CRSYNC_BENCH_SESSION_BASELINE_H_

#include <sqlite3.h>

#include <string>

namespace crsync {

// The changeset inserting items rows 0..rows-1 (made once per `rows`).
const std::string& ItemsChangeset(int rows);

// Applies `changeset` to `db` (which has an items table), replacing on
// conflict. Aborts on failure.
void ApplyChangeset(sqlite3* db, const std::string& changeset);

}  // namespace crsync

#endif  // CRSYNC_BENCH_SESSION_BASELINE_H_
