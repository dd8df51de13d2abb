// crsync_capture: the eponymous table that joins a transaction as soon as
// it records a local write or takes a db_version, so that the engine hears
// of the transaction's savepoints, statement rollbacks, commit and rollback
// (SQLite tells only virtual tables written in the transaction). Writing to
// it does nothing else; reading it gives no rows. See
// ConnEngine::local_writes().
#include "common/guard.h"
#include "engine/alter.h"
#include "engine/recorder.h"
#include "engine/vtab_util.h"

namespace crsync {
namespace {

struct CaptureVtab {
  sqlite3_vtab base{};
  ConnEngine* engine;
};

ConnEngine* EngineOf(sqlite3_vtab* v) { return reinterpret_cast<CaptureVtab*>(v)->engine; }

int Connect(sqlite3* db, void* aux, int, const char* const*, sqlite3_vtab** out, char**) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(joined)");
    if (rc != SQLITE_OK) return rc;
    sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
    auto* v = new CaptureVtab;
    v->engine = static_cast<ConnEngine*>(aux);
    *out = &v->base;
    return SQLITE_OK;
  });
}

int BestIndex(sqlite3_vtab*, sqlite3_index_info* info) {
  info->estimatedCost = 1;
  return SQLITE_OK;
}

int Filter(sqlite3_vtab_cursor*, int, const char*, int, sqlite3_value**) { return SQLITE_OK; }
int Next(sqlite3_vtab_cursor*) { return SQLITE_OK; }
int Eof(sqlite3_vtab_cursor*) { return 1; }

int Column(sqlite3_vtab_cursor*, sqlite3_context* ctx, int) {
  sqlite3_result_null(ctx);
  return SQLITE_OK;
}

int Rowid(sqlite3_vtab_cursor*, sqlite_int64* out) {
  *out = 0;
  return SQLITE_OK;
}

int Update(sqlite3_vtab*, int, sqlite3_value**, sqlite_int64* rowid) {
  *rowid = 0;
  return SQLITE_OK;
}

int Begin(sqlite3_vtab* v) {
  EngineOf(v)->set_capture_joined(true);
  return SQLITE_OK;
}

// Just before COMMIT: the transaction's local writes become metadata, and
// an alter a ROLLBACK TO undid is forgotten while the schema still shows
// it (after the commit, another connection may begin one).
int Sync(sqlite3_vtab* v) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    Status s = EngineOf(v)->FlushLocalWrites();
    if (s.ok()) s = ConfirmOpenAlters(EngineOf(v));
    if (s.ok()) return SQLITE_OK;
    sqlite3_free(v->zErrMsg);
    v->zErrMsg = sqlite3_mprintf("%s", s.message().c_str());
    return VtabErrorCode(s);
  });
}

int Commit(sqlite3_vtab* v) {
  EngineOf(v)->TransactionCommitted();
  return SQLITE_OK;
}

int Rollback(sqlite3_vtab* v) {
  EngineOf(v)->TransactionRolledBack();
  return SQLITE_OK;
}

int Savepoint(sqlite3_vtab* v, int level) {
  return GuardSqliteCall(SQLITE_NOMEM, [&] {
    EngineOf(v)->CaptureSavepoint(level);
    return SQLITE_OK;
  });
}

int Release(sqlite3_vtab* v, int level) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    EngineOf(v)->CaptureRelease(level);
    return SQLITE_OK;
  });
}

int RollbackTo(sqlite3_vtab* v, int level) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    EngineOf(v)->CaptureRollbackTo(level);
    return SQLITE_OK;
  });
}

struct EmptyCursor {
  sqlite3_vtab_cursor base{};
};

sqlite3_module MakeModule() {
  sqlite3_module m =
      EponymousModule<CaptureVtab, EmptyCursor>(Connect, BestIndex, Filter, Next, Eof, Column, Rowid);
  m.iVersion = 2;
  m.xUpdate = Update;
  m.xBegin = Begin;
  m.xSync = Sync;
  m.xCommit = Commit;
  m.xRollback = Rollback;
  m.xSavepoint = Savepoint;
  m.xRelease = Release;
  m.xRollbackTo = RollbackTo;
  return m;
}

const sqlite3_module kModule = MakeModule();

}  // namespace

int RegisterCaptureTable(sqlite3* db, ConnEngine* engine) {
  return sqlite3_create_module_v2(db, "crsync_capture", &kModule, engine, nullptr);
}

}  // namespace crsync
