// engine/alter.h — schema changes on live CRRs (crr-semantics §14):
// crsql_begin_alter / crsql_commit_alter.
#ifndef CRSYNC_ENGINE_ALTER_H_
#define CRSYNC_ENGINE_ALTER_H_

#include <string>

#include "engine/conn_engine.h"

namespace crsync {

// Opens the alter unit for CRR `table`: a savepoint, and the recording
// triggers removed (DML until commit is not recorded).
Status BeginAlter(ConnEngine* e, const std::string& table);

// Re-checks eligibility, brings the metadata in line with the new schema at
// the committed db_version D (no new version: every peer applies the same
// migration), records pre_compact_dbversion = D, re-creates the triggers and
// releases the savepoint. On failure everything since BeginAlter is undone
// and the error says "failed compacting tables post alteration: ...".
Status CommitAlter(ConnEngine* e, const std::string& table);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_ALTER_H_
