// engine/crr_admin.h — turning tables into CRRs and back (crr-semantics §4, §15).
#ifndef CRSYNC_ENGINE_CRR_ADMIN_H_
#define CRSYNC_ENGINE_CRR_ADMIN_H_

#include <string>
#include <vector>

#include "engine/conn_engine.h"

namespace crsync {

// Makes `table` (in main) a CRR: checks eligibility, creates its metadata
// tables and recording triggers and backfills existing rows. Idempotent.
// Atomic: on failure only this call's work is undone (a savepoint), and an
// enclosing transaction stays open.
Status AsCrr(ConnEngine* e, const std::string& table);

// Turns CRR `table` back into a plain table, discarding its metadata. A
// no-op for a table that is not a CRR; cleans up leftovers of a dropped CRR.
Status AsTable(ConnEngine* e, const std::string& table);

// Gives every row of `crr`'s table metadata at `dbv`: one clock per column at
// col_version 1, or a sentinel for pk-only tables (§4.4), with seqs from the
// transaction's counter in pk order, and feed entries (one per row, or a
// range entry per stretch of rows whose runs follow the packed keys:
// engine/feed_range.h). One INSERT ... SELECT writes the metadata inside
// SQLite; the feed is written a window at a time (bounded memory).
// REQUIRES: no row of the table has metadata yet.
Status BulkBackfill(ConnEngine* e, Crr* crr, int64_t dbv);

// Whether a statement of `db` runs besides the one calling us (for a
// function called from SQL, whose own statement is busy too). SQLite drops
// no table under a running statement ("database table is locked"), and
// rolling back DDL then aborts every running statement.
bool OtherStatementRuns(sqlite3* db);

// Whether the recording triggers of CRR `name` all exist, on the table of
// that name (crsql_begin_alter drops them; a rollback brings them back; a
// table dropped behind the engine's back loses them).
Status RecordingTriggersStand(sqlite3* db, const std::string& name, bool* standing);
// How many of the three recording triggers stand on CRR `name`'s table.
Status RecordingTriggerCount(sqlite3* db, const std::string& name, int* count);
// What stands in the place of a CRR's recording triggers.
struct RecorderState {
  int recorders = 3;        // recording triggers on the table, of three
  bool guarded = false;     // an open alter's guard triggers (read when recorders < 3)
  int64_t alter_owner = 0;  // an open alter's mark (OpenAlterOwner; read when no guard)
  bool alter_open() const { return guarded || alter_owner != 0; }
  // The table was dropped and made again behind the engine's back (DROP
  // TABLE takes all three triggers), with no alter open that rebuilt it.
  bool lost() const { return recorders == 0 && !alter_open(); }
};
Status ReadRecorderState(sqlite3* db, const std::string& name, int64_t crr_id, RecorderState* out);
// For each of `crrs`, whether it lost all its recording triggers with no
// alter open (no guard triggers, no open-alter mark): its table was
// dropped and made again behind the engine's back
// (Crr::lost_recorders). Two queries, whatever the number of CRRs.
Status CrrsWithoutRecorders(sqlite3* db, const std::vector<const Crr*>& crrs,
                            std::vector<bool>* lost);

// InvalidArgument naming the first primary-key column of `crr` that holds
// NULL in some row (a nullable-declared key, §4.2): such a row cannot be
// given metadata, and a peer would refuse its changes. `what` names the
// operation in the message.
Status CheckNoNullKeys(sqlite3* db, const Crr& crr, const std::string& what);

// Adds `crr`'s feed entries from `select`, whose rows are (pk, dbv, run)
// in pk order, a window (MetaBatch::kWindow) at a time: each window's
// stretches of keys ascending with their runs become range entries
// (engine/feed_range.h), the rest point entries. Bounded memory.
Status WriteFeedFromRows(sqlite3* db, Crr* crr, const std::string& select);

// CREATE TABLE statements of a CRR's rows and feed tables
// (docs/storage.md) under the given qualified, quoted names.
std::string RowsTableDdl(const std::string& name);
std::string FeedTableDdl(const std::string& name);

// `base`, or `base` with the smallest number appended, such that no object
// of the main schema (table, index, view, trigger) has that name: for
// scratch tables that must not touch a user's objects.
Status FreeObjectName(sqlite3* db, const std::string& base, std::string* out);

// The packed-TEXT list crsync_crrs stores for column names.
std::string PackNames(const std::vector<std::string>& names);

// Runs `body` inside SAVEPOINT `name`: released on success, rolled back to
// and released on failure (the caller's transaction is left open).
template <typename Body>
Status InSavepoint(sqlite3* db, const std::string& name, Body&& body) {
  CRSYNC_RETURN_IF_ERROR(Exec(db, "SAVEPOINT " + name));
  Status s = body();
  if (s.ok()) {
    s = Exec(db, "RELEASE " + name);
    if (s.ok()) return s;
  }
  Exec(db, "ROLLBACK TO " + name + "; RELEASE " + name).IgnoreError();
  return s;
}

}  // namespace crsync

#endif  // CRSYNC_ENGINE_CRR_ADMIN_H_
