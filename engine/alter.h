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

// Forgets the alters that a ROLLBACK TO undid (their recording triggers
// stand again, or their guard is gone with the CRR), if one may have
// (alters_unsure()): called before anything that trusts open_alters() to
// mean "ours".
Status ConfirmOpenAlters(ConnEngine* e);

// After a ROLLBACK TO (alters_unsure()): takes back the alters this
// connection committed in this transaction whose commit it undid (their
// mark holds this connection's token again).
Status ReopenUndoneCommits(ConnEngine* e);

// The message of a write refused by another connection's open alter of
// `table` (its guard triggers, AlterGuardSql).
std::string AlterOpenElsewhere(const std::string& table);

// Crr::CheckShape for a merge into `crr`: while another connection's alter
// of it is open, the table differs on purpose, and the error says so.
Status CheckShapeForMerge(ConnEngine* e, Crr* crr);

// Registers crsync_alter_guard(table), which the guard triggers call: NULL
// on the connection whose alter of `table` is open, an error elsewhere.
int RegisterAlterGuard(sqlite3* db, ConnEngine* e);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_ALTER_H_
