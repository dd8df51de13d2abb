// engine/conn_schema_checks.cc — what a connection checks about the schema
// around its CRRs: the tag its recording triggers pass (so that an
// attached database's triggers are not taken for main's), and tables that
// would hide crsync's eponymous tables.
#include "engine/conn_engine.h"

#include <string>

#include "engine/recorder.h"

namespace crsync {

Status ConnEngine::LoadTriggerTag(bool record) {
  constexpr char kRead[] =
      "SELECT (SELECT value FROM main.crsql_master WHERE key = 'crsync_trigger_tag'), "
      "(SELECT value FROM main.crsql_master WHERE key = 'crsync_bare_trigger_ids'), "
      "EXISTS (SELECT 1 FROM main.crsync_crrs)";
  for (int attempt = 0; attempt < 2; ++attempt) {
    StmtPtr st;
    CRSYNC_RETURN_IF_ERROR(Prepare(db_, kRead, &st));
    int rc = sqlite3_step(st.get());
    if (rc != SQLITE_ROW) return SqliteError(db_, rc);
    const bool has_crrs = sqlite3_column_int(st.get(), 2) != 0;
    if (sqlite3_column_type(st.get(), 0) == SQLITE_INTEGER) {
      trigger_tag_ = sqlite3_column_int64(st.get(), 0);
      bare_trigger_ids_ = sqlite3_column_int64(st.get(), 1) == 1;
      return Status::OK();
    }
    // No tag yet: triggers made so far pass bare ids (tag 0), taken as
    // main's.
    trigger_tag_ = 0;
    bare_trigger_ids_ = true;
    if (!record || attempt > 0) return Status::OK();
    st.reset();
    // A database made before tags: recorded now, in the caller's
    // transaction (several connections may do it at once: the first
    // stays). 30 bits keep the token positive.
    CRSYNC_RETURN_IF_ERROR(
        Exec(db_, std::string("INSERT OR IGNORE INTO main.crsql_master(key, value) VALUES "
                              "('crsync_trigger_tag', max(1, random() & 1073741823)), "
                              "('crsync_bare_trigger_ids', ") +
                      (has_crrs ? "1" : "0") + ")"));
  }
  return Status::OK();
}

Status ConnEngine::TagForTriggers(int64_t* tag) {
  // Read in the transaction that makes the triggers: the cached tag may be
  // stale (a backup restored under this connection), or missing (not
  // recorded at open). Recorded here, it commits or rolls back with them.
  CRSYNC_RETURN_IF_ERROR(LoadTriggerTag(true));
  *tag = trigger_tag_;
  return Status::OK();
}

Status ConnEngine::CheckTriggerTokenSlow(int64_t token, int64_t* crr_id) {
  Status s = CrrIdOfToken(token, trigger_tag_, bare_trigger_ids_, crr_id);
  if (s.ok()) return s;
  // The file under the connection may have been replaced (a backup
  // restored into it): read the tag again (never writing: this runs in a
  // trigger, in a statement that may yet fail) before refusing.
  if (!LoadTriggerTag(false).ok()) return s;
  return CrrIdOfToken(token, trigger_tag_, bare_trigger_ids_, crr_id);
}

Status ConnEngine::CheckReservedNames() {
  // crsync's eponymous tables and table-valued functions, which its own
  // statements name unqualified: a table or view of such a name hides it
  // (SQLite looks for tables first), and those statements would fail (or,
  // for crsync_capture, insert into the user's table) much later. Main and
  // temp only: reading an attached schema here would take its lock for
  // the rest of the caller's write transaction.
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db_,
      "SELECT name, 'main' FROM main.sqlite_schema WHERE type IN ('table', 'view') AND name "
      "COLLATE NOCASE IN (?1, ?2, ?3, ?4, ?5) UNION ALL SELECT name, 'temp' FROM "
      "temp.sqlite_schema WHERE type IN ('table', 'view') AND name COLLATE NOCASE IN "
      "(?1, ?2, ?3, ?4, ?5) LIMIT 1",
      &st));
  static const char* const kNames[] = {"crsync_capture", "crsync_rowbuf", "crsync_valbuf",
                                       "crsync_meta_runs", "crsql_changes"};
  for (int i = 0; i < 5; ++i) sqlite3_bind_text(st.get(), i + 1, kNames[i], -1, SQLITE_STATIC);
  const int rc = sqlite3_step(st.get());
  if (rc == SQLITE_DONE) return Status::OK();
  if (rc != SQLITE_ROW) return SqliteError(db_, rc);
  return Status::FailedPrecondition(
      std::string("crsql - a table named ") +
      reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0)) + " (in " +
      reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 1)) +
      ") hides crsync's internal table of that name, so CRR writes cannot be recorded; rename "
      "or drop it (names beginning with crsync_ or crsql_ are reserved)");
}

}  // namespace crsync
