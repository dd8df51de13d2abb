// engine/changes_vtab.h — the eponymous virtual table crsql_changes (§8):
// SELECT generates changesets, INSERT merges them.
#ifndef CRSYNC_ENGINE_CHANGES_VTAB_H_
#define CRSYNC_ENGINE_CHANGES_VTAB_H_

#include <sqlite3.h>

#include "engine/conn_engine.h"

namespace crsync {

// Registers the module "crsql_changes" on `db`.
int RegisterChangesVtab(sqlite3* db, ConnEngine* engine);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_CHANGES_VTAB_H_
