// Entry point of the loadable extension libcrsync.so: installs the engine
// on the loading connection and registers the crsync VFS for the rest of the
// process (so `file:app.db?vfs=crsync` works after `.load libcrsync`).
// Returns SQLITE_OK_LOAD_PERMANENTLY: the VFS must outlive the connection.
#include "crsync/crsync.h"
#include "crsync/vfs.h"

extern "C" int sqlite3_crsync_init(sqlite3* db, char** err_msg, const void* api) {
  (void)api;
  int rc = crsync_engine_init(db, err_msg);
  if (rc != SQLITE_OK) return rc;
  rc = crsync_vfs_register(nullptr, 0);
  if (rc != SQLITE_OK) {
    if (err_msg) *err_msg = sqlite3_mprintf("crsync: cannot register the crsync VFS");
    return rc;
  }
  return SQLITE_OK_LOAD_PERMANENTLY;
}
