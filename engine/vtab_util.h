// engine/vtab_util.h — the virtual-table callbacks that crsync's tables
// share, so each module file holds only what is its own.
//
// Vtab and Cursor types must start with their sqlite3_vtab /
// sqlite3_vtab_cursor base (standard layout): SQLite hands those pointers
// back. Cursors for the table-valued functions keep a `pos` row counter.
#ifndef CRSYNC_ENGINE_VTAB_UTIL_H_
#define CRSYNC_ENGINE_VTAB_UTIL_H_

#include <sqlite3.h>

#include "common/guard.h"
#include "crsync/status.h"

namespace crsync {

// The code a virtual-table callback returns for `s`: SQLite's own for an
// error SQLite reported, SQLITE_ERROR for one of ours. Never SQLITE_CORRUPT
// for an inconsistency we found (Status::Corruption: a merge that finds
// clocks without their row, metadata that does not decode; the message
// says which): a statement failing with SQLITE_CORRUPT inside a transaction
// makes SQLite refuse every later write of the transaction, and its COMMIT
// ("database disk image is malformed"). Nor SQLITE_FULL (a clock or the
// db_version exhausted; the disk): for it SQLite rolls back the whole
// transaction when the statement has no journal of its own (a one-row
// INSERT INTO crsql_changes), where the failed change left no trace and
// the transaction should go on, as after any other bad change.
inline int VtabErrorCode(const Status& s) {
  if (s.code() != Status::Code::kSqlite) return SQLITE_ERROR;
  return (s.sqlite_code() & 0xff) == SQLITE_FULL ? SQLITE_ERROR : s.sqlite_code();
}

template <typename Vtab>
int DeleteVtab(sqlite3_vtab* v) {
  delete reinterpret_cast<Vtab*>(v);
  return SQLITE_OK;
}

template <typename Cursor>
int OpenCursor(sqlite3_vtab*, sqlite3_vtab_cursor** out) {
  return GuardSqliteCall(SQLITE_NOMEM, [&] {
    *out = reinterpret_cast<sqlite3_vtab_cursor*>(new Cursor);
    return SQLITE_OK;
  });
}

template <typename Cursor>
int CloseCursor(sqlite3_vtab_cursor* c) {
  delete reinterpret_cast<Cursor*>(c);
  return SQLITE_OK;
}

template <typename Cursor>
int NextPos(sqlite3_vtab_cursor* c) {
  ++reinterpret_cast<Cursor*>(c)->pos;
  return SQLITE_OK;
}

template <typename Cursor>
int RowidIsPos(sqlite3_vtab_cursor* c, sqlite_int64* out) {
  *out = static_cast<sqlite_int64>(reinterpret_cast<Cursor*>(c)->pos);
  return SQLITE_OK;
}

// xConnect of a table that keeps no state of its own: declares kSchema,
// applies kConfig (SQLITE_VTAB_INNOCUOUS or SQLITE_VTAB_DIRECTONLY) and
// returns a bare sqlite3_vtab.
template <const char* kSchema, int kConfig>
int ConnectPlainTable(sqlite3* db, void*, int, const char* const*, sqlite3_vtab** out, char**) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    int rc = sqlite3_declare_vtab(db, kSchema);
    if (rc != SQLITE_OK) return rc;
    sqlite3_vtab_config(db, kConfig);
    *out = new sqlite3_vtab{};
    return SQLITE_OK;
  });
}

// xBestIndex of a table-valued function whose argument is hidden column
// `arg`: an equality on it is passed to xFilter as argv[0] with idxNum 1;
// without it the plan costs a fortune (idxNum 0, no rows).
inline int BestIndexOneArgument(sqlite3_index_info* info, int arg) {
  for (int i = 0; i < info->nConstraint; ++i) {
    const auto& c = info->aConstraint[i];
    if (c.iColumn != arg || c.op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!c.usable) return SQLITE_CONSTRAINT;
    info->aConstraintUsage[i].argvIndex = 1;
    info->aConstraintUsage[i].omit = 1;
    info->idxNum = 1;
    info->estimatedCost = 10;
    return SQLITE_OK;
  }
  info->idxNum = 0;
  info->estimatedCost = 1e12;
  return SQLITE_OK;
}

// An eponymous-only module (no xCreate) with the given read callbacks and
// the shared ones above; writable or transactional tables add theirs.
template <typename Vtab, typename Cursor>
sqlite3_module EponymousModule(decltype(sqlite3_module::xConnect) connect,
                               decltype(sqlite3_module::xBestIndex) best_index,
                               decltype(sqlite3_module::xFilter) filter,
                               decltype(sqlite3_module::xNext) next,
                               decltype(sqlite3_module::xEof) eof,
                               decltype(sqlite3_module::xColumn) column,
                               decltype(sqlite3_module::xRowid) rowid) {
  sqlite3_module m{};
  m.xConnect = connect;
  m.xBestIndex = best_index;
  m.xDisconnect = &DeleteVtab<Vtab>;
  m.xOpen = &OpenCursor<Cursor>;
  m.xClose = &CloseCursor<Cursor>;
  m.xFilter = filter;
  m.xNext = next;
  m.xEof = eof;
  m.xColumn = column;
  m.xRowid = rowid;
  return m;
}

}  // namespace crsync

#endif  // CRSYNC_ENGINE_VTAB_UTIL_H_
