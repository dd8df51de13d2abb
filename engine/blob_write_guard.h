// engine/blob_write_guard.h — keeps incremental blob I/O from writing CRRs.
//
// sqlite3_blob_write changes a row in place and fires no trigger: a CRR's
// value would change unrecorded (crsql_changes would show it under the old
// clocks) and peers would keep the old one for good. SQLite refuses to open
// for writing any column of a table that has an index on an expression, so
// each CRR gets one that holds no row: `T__crsync_noblob`, on (+first key
// column) WHERE 0. It costs an INSERT statement one more cursor, an UPDATE
// of other columns nothing, and sqlite3_blob_open(..., 1) fails with
// "cannot open indexed column for writing". Reading through blob I/O works.
//
// Errors: SQLite's, as Status. Threads: the connection's, like any SQL.
#ifndef CRSYNC_ENGINE_BLOB_WRITE_GUARD_H_
#define CRSYNC_ENGINE_BLOB_WRITE_GUARD_H_

#include <sqlite3.h>

#include <string>

#include "crsync/status.h"

namespace crsync {

class Crr;

// The index's name for CRR `table`.
std::string NoBlobWriteIndexName(const std::string& table);
// Whether CRR `table` has that index on itself (a CRR made by an older
// build does not, until crsql_as_crr(t) runs again).
Status HasNoBlobWriteIndex(sqlite3* db, const std::string& table, bool* has);
// Makes it on `crr`'s table when it is not there. A rebuild that renamed
// the old table aside took it along under its name (crsql_as_crr refuses a
// user's object of that name, so whatever bears it is ours): it is dropped
// there first. Left alone when in place: dropping an index under a running
// statement fails.
Status EnsureNoBlobWriteIndex(sqlite3* db, const Crr& crr);
// Drops it, on whichever table it stands (crsql_as_table).
Status DropNoBlobWriteIndex(sqlite3* db, const std::string& table);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_BLOB_WRITE_GUARD_H_
