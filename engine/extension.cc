// The engine's entry points: crsync_engine_init and crsync_auto_extension.
// (The loadable-extension entry point lives in vfs/loadable.cc: loading the
// module also registers the VFS.)
#include <memory>

#include "common/guard.h"
#include "crsync/crsync.h"
#include "engine/alter.h"
#include "engine/changes_vtab.h"
#include "engine/conn_engine.h"
#include "engine/functions.h"
#include "engine/row_buf.h"
#include "engine/recorder.h"

namespace {

void SetErr(char** err_msg, const std::string& msg) {
  if (err_msg) *err_msg = sqlite3_mprintf("%s", msg.c_str());
}

int Init(sqlite3* db, char** err_msg) {
  using namespace crsync;
  if (!db) {
    SetErr(err_msg, "crsync: crsync_engine_init needs a connection (db is NULL)");
    return SQLITE_MISUSE;
  }
  ConnEngine* e = ConnEngine::Find(db);
  if (e && e->installed()) return SQLITE_OK;  // already installed
  if (!e) {
    std::unique_ptr<ConnEngine> engine;
    Status s = ConnEngine::Open(db, &engine);
    if (!s.ok()) {
      // (Messages that name crsync already are not prefixed twice.)
      SetErr(err_msg,
             s.message().rfind("crsync: ", 0) == 0 ? s.message() : "crsync: " + s.message());
      return s.sqlite_code();
    }
    // Owned by the connection from here (deleted now if this fails).
    e = engine.get();
    int rc = RegisterEngineOwner(db, engine.release());
    if (rc != SQLITE_OK) {
      SetErr(err_msg, "crsync: cannot register functions");
      return rc;
    }
  }
  // A failure from here leaves the engine half installed, owned by the
  // connection: its statements go now, so that sqlite3_close() succeeds
  // (crsql_changes, whose disconnection releases them, may not be there),
  // and a later call registers everything again on the same engine.
  struct ReleaseOnFailure {
    ConnEngine* e;
    bool failed = true;
    ~ReleaseOnFailure() {
      if (failed) e->ReleaseStatements();
    }
  } release{e};
  int rc = RegisterFunctions(db, e);
  if (rc != SQLITE_OK) {
    SetErr(err_msg, "crsync: cannot register functions");
    return rc;
  }
  rc = RegisterRecorderFunctions(db, e);
  if (rc == SQLITE_OK) rc = RegisterAlterGuard(db, e);
  if (rc == SQLITE_OK) rc = RegisterChangesVtab(db, e);
  if (rc == SQLITE_OK) rc = RegisterUnpackColumns(db);
  if (rc == SQLITE_OK) rc = RegisterRowBuf(db);
  if (rc == SQLITE_OK) rc = RegisterMetaRuns(db);
  if (rc == SQLITE_OK) rc = RegisterCaptureTable(db, e);
  if (rc == SQLITE_OK) rc = RegisterCloseWatch(db, e);
  if (rc != SQLITE_OK) {
    SetErr(err_msg, "crsync: cannot register the crsql_changes module");
    return rc;
  }
  // Connect the eponymous crsql_changes now: sqlite3_close() disconnects it
  // first, which is where the engine releases its cached statements (and
  // crsync_internal_close_watch, registered above, when a user trigger
  // keeps crsql_changes connected).
  StmtPtr connect;
  if (Status cs = Prepare(db, "SELECT 1 FROM crsql_changes WHERE 0", &connect); !cs.ok()) {
    SetErr(err_msg, "crsync: " + cs.message());
    return cs.sqlite_code();
  }
  release.failed = false;
  e->MarkInstalled();
  return SQLITE_OK;
}

int AutoInit(sqlite3* db, char** err_msg, const void*) { return crsync_engine_init(db, err_msg); }

}  // namespace

extern "C" int crsync_engine_init(sqlite3* db, char** err_msg) {
  return crsync::GuardSqliteCall(SQLITE_ERROR, [&] { return Init(db, err_msg); });
}

extern "C" int crsync_auto_extension(void) {
  using Entry = void (*)(void);
  return sqlite3_auto_extension(reinterpret_cast<Entry>(&AutoInit));
}

