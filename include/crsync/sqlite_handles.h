// crsync/sqlite_handles.h — RAII owners for SQLite's C handles.
//
// Every sqlite3* and sqlite3_stmt* in crsync is owned by one of these types
// from the moment SQLite hands it out, before the return code is checked
// (sqlite3_open_v2 and sqlite3_prepare_v3 may allocate even when they fail).
//
// Thread safety: the owners are move-only values; the handles inside follow
// SQLite's own rules (a connection is used by one thread at a time).
#ifndef CRSYNC_SQLITE_HANDLES_H_
#define CRSYNC_SQLITE_HANDLES_H_

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crsync/status.h"

namespace crsync {

struct DbDeleter {
  // sqlite3_close_v2 defers the close until outstanding statements are
  // finalized, so destruction order between a DbPtr and StmtPtrs is free.
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbDeleter>;

struct StmtDeleter {
  // sqlite3_finalize(nullptr) is a harmless no-op.
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

// Text SQLite allocated for us (sqlite3_mprintf, an error message from
// sqlite3_exec or an init function), freed with sqlite3_free.
struct SqliteFree {
  void operator()(char* p) const noexcept { sqlite3_free(p); }
};
using SqliteStr = std::unique_ptr<char, SqliteFree>;

// Opens `path` with `flags` (SQLITE_OPEN_*) on VFS `vfs` (nullptr = default)
// and turns on extended result codes. On success *out owns the connection; on
// failure *out is unchanged and the partly opened handle is closed.
Status OpenDb(const std::string& path, int flags, const char* vfs, DbPtr* out);

// Prepares the first statement of `sql` on `db`. On success *out owns it.
// `prep_flags` are SQLITE_PREPARE_* flags (PERSISTENT for cached statements).
Status Prepare(sqlite3* db, std::string_view sql, StmtPtr* out, unsigned prep_flags = 0);

// Runs `sql` (one or more statements, no results) on `db`.
Status Exec(sqlite3* db, const std::string& sql);

// A Status for the last error on `db`, with result code `rc`.
Status SqliteError(sqlite3* db, int rc);

// Steps `stmt` until it is done, discarding rows, then resets it.
Status StepToEnd(sqlite3* db, sqlite3_stmt* stmt);

// Quotes `name` as an SQL identifier: "name" with any '"' doubled.
std::string QuoteIdent(std::string_view name);

// Quotes `text` as an SQL string literal: 'text' with any '\'' doubled.
std::string QuoteLiteral(std::string_view text);

// `terms` (non-empty; SELECTs of one column) joined by UNION ALL, nested
// in chunks so that no compound SELECT has more terms than SQLite allows
// (500 by default). The first term names the column.
std::string UnionAll(const std::vector<std::string>& terms);

}  // namespace crsync

#endif  // CRSYNC_SQLITE_HANDLES_H_
