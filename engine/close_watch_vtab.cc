// crsync_internal_close_watch: an empty eponymous virtual table whose only
// job is to be disconnected when the connection closes.
//
// The engine caches prepared statements (ConnEngine::ReleaseStatements
// finalizes them), and sqlite3_close() fails while any statement is
// unfinalized. It disconnects every virtual table first, and crsql_changes'
// disconnect releases the cached statements. But a statement that writes a
// CRR embeds the table's user triggers, and a trigger that reads
// crsql_changes keeps that table connected as long as the statement
// exists: neither would ever go. No statement names this table, so its
// disconnect always runs at close, and releases them. A close that fails
// (SQLITE_BUSY: an application statement still open) disconnects it too,
// with the connection still in use: the engine then connects it again
// before it caches a statement (ConnEngine::ArmCloseWatch). Inside a write
// transaction, which such a failed close leaves open, the engine first
// stores what it holds in memory for it (ConnEngine::StoreBeforeClose).
#include "common/guard.h"
#include "crsync/sqlite_handles.h"
#include "engine/functions.h"
#include "engine/vtab_util.h"

namespace crsync {
namespace {

constexpr char kName[] = "crsync_internal_close_watch";

struct WatchVtab {
  sqlite3_vtab base{};
  ConnEngine* engine = nullptr;
};

struct WatchCursor {
  sqlite3_vtab_cursor base{};
};

int Connect(sqlite3* db, void* aux, int, const char* const*, sqlite3_vtab** out, char**) {
  return GuardSqliteCall(SQLITE_NOMEM, [&] {
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(unused)");
    if (rc != SQLITE_OK) return rc;
    auto* v = new WatchVtab;
    v->engine = static_cast<ConnEngine*>(aux);
    *out = &v->base;
    return SQLITE_OK;
  });
}

int Disconnect(sqlite3_vtab* vtab) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    auto* v = reinterpret_cast<WatchVtab*>(vtab);
    v->engine->CloseWatchDisconnected();
    delete v;
    return SQLITE_OK;
  });
}

int BestIndex(sqlite3_vtab*, sqlite3_index_info* info) {
  info->estimatedCost = 1;
  info->estimatedRows = 0;
  return SQLITE_OK;
}

int Filter(sqlite3_vtab_cursor*, int, const char*, int, sqlite3_value**) { return SQLITE_OK; }
int Eof(sqlite3_vtab_cursor*) { return 1; }
int Next(sqlite3_vtab_cursor*) { return SQLITE_OK; }
int Column(sqlite3_vtab_cursor*, sqlite3_context* ctx, int) {
  sqlite3_result_null(ctx);
  return SQLITE_OK;
}
int Rowid(sqlite3_vtab_cursor*, sqlite_int64* out) {
  *out = 0;
  return SQLITE_OK;
}

sqlite3_module MakeModule() {
  sqlite3_module m =
      EponymousModule<WatchVtab, WatchCursor>(Connect, BestIndex, Filter, Next, Eof, Column, Rowid);
  m.xDisconnect = Disconnect;
  return m;
}

const sqlite3_module kModule = MakeModule();

}  // namespace

int RegisterCloseWatch(sqlite3* db, ConnEngine* engine) {
  int rc = sqlite3_create_module_v2(db, kName, &kModule, engine, nullptr);
  if (rc != SQLITE_OK) return rc;
  Status s = ConnectCloseWatch(db);
  return s.ok() ? SQLITE_OK : VtabErrorCode(s);
}

Status ConnectCloseWatch(sqlite3* db) {
  // Eponymous tables connect when a statement first names them (and stay
  // connected after it is finalized).
  StmtPtr st;
  return Prepare(db, std::string("SELECT 1 FROM ") + kName, &st);
}

}  // namespace crsync
