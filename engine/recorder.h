// engine/recorder.h — records local writes to CRRs (crr-semantics §7).
//
// The AFTER INSERT/UPDATE/DELETE triggers that crsql_as_crr installs call
// the SQL functions registered here with the row's old and new values. They
// do nothing while the sync bit is set (merges write with it set).
//
// A trigger call only captures the write (packed pk, what changed) in the
// engine's log; the clocks, metadata and feed entries are made when the log
// is flushed, in write order and in bulk (ConnEngine::FlushLocalWrites):
// at COMMIT and before anything reads them. So a user statement touches
// only its own table's pages, and a thousand rows cost a few statements.
#ifndef CRSYNC_ENGINE_RECORDER_H_
#define CRSYNC_ENGINE_RECORDER_H_

#include <sqlite3.h>

#include <string>
#include <vector>

#include "engine/conn_engine.h"

namespace crsync {

// Registers crsync_after_insert/update/delete on `db` for `engine`, and
// installs the engine's local-write flusher (ConnEngine::FlushLocalWrites).
int RegisterRecorderFunctions(sqlite3* db, ConnEngine* engine);

// Registers the crsync_capture table (engine/capture_vtab.cc).
int RegisterCaptureTable(sqlite3* db, ConnEngine* engine);

// Makes the capture table join the current transaction (once per
// transaction), so that its commit and rollbacks reach the engine. Its
// INSERT makes the transaction a write transaction.
Status JoinCaptureTable(ConnEngine* e);
// The same, before a change of the catalog or the config, so that a
// ROLLBACK TO undoing it invalidates them (ConnEngine::CaptureRollbackTo).
// In autocommit, call it inside a savepoint that holds the transaction
// open: a write nested in an autocommit SELECT commits on its own.
Status JoinForCatalogChange(ConnEngine* e);

// The trigger statements that feed a CRR's writes to the functions above.
// The update trigger passes every column's old and new value to one call;
// when that exceeds SQLite's default cap on a call's arguments
// (kMaxFunctionArgs), it passes instead, per chunk of kDiffChunk columns,
// crsync_internal_diff(old1, new1, old2, new2, ...): a bit mask of the
// columns whose value changed.
// `tag` is this database's trigger tag (ConnEngine::TagForTriggers).
std::string RecorderTriggersSql(const Crr& crr, int64_t tag);
inline constexpr size_t kMaxFunctionArgs = 127;  // SQLITE_MAX_FUNCTION_ARG's default
inline constexpr size_t kDiffChunk = 63;         // 126 arguments, 63 bits
// Whether `crr`'s update trigger uses the difference masks.
bool DiffMaskedUpdates(size_t npk, size_t ncols);

// The triggers named like `table`'s recording triggers (T__crsync_itrig,
// _utrig, _dtrig): on `table` they are its own; on another table, a user's.
struct NamedTrigger {
  std::string name, table;
  bool on_table;  // on `table`
};
Status TriggersNamedLikeRecorders(sqlite3* db, const std::string& table,
                                  std::vector<NamedTrigger>* out);
// The same for the triggers an open alter leaves in their place
// ("T__crsync_guard_i" ...: AlterGuardSql).
Status TriggersNamedLikeAlterGuards(sqlite3* db, const std::string& table,
                                    std::vector<NamedTrigger>* out);
// Whether an open alter's guard triggers stand on `table` (its own, not a
// user's trigger of such a name on another table).
Status AlterGuardStands(sqlite3* db, const std::string& table, bool* stands);
// An open alter of the CRR with id `crr_id` is marked in crsql_master
// (key "crsync_open_alter.<id>", value its owner token) from its begin to
// its commit, in the same transactions as its triggers: so it is known
// to be open also after the alter rebuilt the table, which takes its guard
// triggers along. *owner is 0 when no alter of this build is open.
std::string OpenAlterKey(int64_t crr_id);
Status OpenAlterOwner(sqlite3* db, int64_t crr_id, int64_t* owner);
// Drops the recording triggers of CRR `table`, and an open alter's guard
// triggers: the triggers of their names that are on `table` (a user's
// trigger of such a name on another table is the user's, and stays).
Status DropRecorderTriggers(sqlite3* db, const std::string& table);
// While an alter of CRR `table` is open, every write of it on another
// connection fails, naming the alter (crsync_alter_guard): its recording
// triggers are gone, so the write would never reach a peer. The guard
// names no column, so the alter may drop or rename any. It passes `owner`,
// the open alter's token (positive; ConnEngine::OpenAlter::owner), so that a
// connection whose alter another one took over (or finished, then another
// began) is told apart from the alter's owner.
std::string AlterGuardSql(const std::string& table, int64_t owner);
// (Re)creates `crr`'s recording triggers, and its no-blob-write index if
// it is missing (engine/blob_write_guard.h). Refused, naming it, while a trigger of one of their names
// stands on another table; `caller` (say "crsql_commit_alter(t)") heads
// that message.
Status InstallRecorderTriggers(sqlite3* db, const Crr& crr, int64_t tag,
                               const std::string& caller);


// The number a CRR's recording triggers pass first: its id in the low 32
// bits and, above them, the tag of the database the triggers were made in
// (a random number it records once: ConnEngine::TagForTriggers). A database
// attached to a connection brings its own CRRs, ids and triggers, which
// fire on this connection too; the tag tells them from main's, whose ids
// they would otherwise name (crsync records main's CRRs only). Triggers
// made before the database had a tag pass a bare id (tag 0).
inline int64_t TriggerToken(int64_t tag, int64_t crr_id) {
  return tag * (int64_t{1} << 32) + crr_id;
}
// The CRR id in `token`, when its tag is main's `tag`, or 0 while main
// may have such triggers (`bare_ids`, or no tag yet); else an error
// naming the cause (a write through a CRR of an attached database).
Status CrrIdOfToken(int64_t token, int64_t tag, bool bare_ids, int64_t* id);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_RECORDER_H_
