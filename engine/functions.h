// engine/functions.h — the engine's scalar SQL functions (crr-semantics §3,
// §4, §6, §9.3, §11.8, §15-§17).
#ifndef CRSYNC_ENGINE_FUNCTIONS_H_
#define CRSYNC_ENGINE_FUNCTIONS_H_

#include <sqlite3.h>

#include "engine/conn_engine.h"

namespace crsync {

// Hands `engine` to `db`: a function whose destructor deletes it when the
// connection closes, or at once if this registration fails (then `engine`
// is gone). Registered before anything that points at the engine, so the
// engine outlives all of it.
int RegisterEngineOwner(sqlite3* db, ConnEngine* engine);
// Registers every function on `db`; returns an SQLite result code.
int RegisterFunctions(sqlite3* db, ConnEngine* engine);

// Registers the table-valued function crsql_unpack_columns.
int RegisterUnpackColumns(sqlite3* db);
// crsync_meta_runs(meta), engine/meta_runs_vtab.cc.
int RegisterMetaRuns(sqlite3* db);
// crsync_internal_close_watch, which releases the engine's statements when
// the connection closes (engine/close_watch_vtab.cc).
int RegisterCloseWatch(sqlite3* db, ConnEngine* engine);
// Connects the close watch (again): a sqlite3_close() that failed with
// SQLITE_BUSY disconnected it with every other virtual table, and no
// statement names it, so nothing else would.
Status ConnectCloseWatch(sqlite3* db);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_FUNCTIONS_H_
