#include "engine/crr_admin.h"

#include <algorithm>
#include <map>
#include <set>

#include "engine/alter.h"
#include "engine/blob_write_guard.h"
#include "engine/feed_range.h"
#include "engine/meta_batch.h"
#include "engine/packed.h"
#include "engine/recorder.h"
#include "engine/trigger_order.h"

namespace crsync {
std::string PackNames(const std::vector<std::string>& names) {
  std::vector<Value> vals;
  for (const auto& n : names) vals.push_back(Value::Text(n));
  std::string out;
  PackValues(vals, &out);
  return out;
}

std::string RowsTableDdl(const std::string& name) {
  return "CREATE TABLE " + name + "(pk BLOB PRIMARY KEY NOT NULL, meta BLOB NOT NULL) WITHOUT ROWID";
}

std::string FeedTableDdl(const std::string& name) {
  return "CREATE TABLE " + name +
         "(dbv INTEGER NOT NULL, lo INTEGER NOT NULL, pk BLOB NOT NULL,"
         " PRIMARY KEY (dbv, lo, pk)) WITHOUT ROWID";
}

Status FreeObjectName(sqlite3* db, const std::string& base, std::string* out) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(
      Prepare(db, "SELECT 1 FROM main.sqlite_master WHERE name = ?1 COLLATE NOCASE", &st));
  for (int n = 0;; ++n) {
    std::string name = n == 0 ? base : base + std::to_string(n);
    sqlite3_bind_text(st.get(), 1, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(st.get());
    sqlite3_reset(st.get());
    if (rc == SQLITE_DONE) {
      *out = std::move(name);
      return Status::OK();
    }
    if (rc != SQLITE_ROW) return SqliteError(db, rc);
  }
}

Status BulkBackfill(ConnEngine* e, Crr* crr, int64_t dbv) {
  std::string cols;
  for (size_t i = 0; i < crr->schema().pk_cols.size(); ++i)
    cols += std::string(i ? ", " : "") + QuoteIdent(crr->schema().pk_cols[i]);
  std::string n = std::to_string(crr->slots()), v = std::to_string(dbv);
  const std::vector<char>* affinity;
  CRSYNC_RETURN_IF_ERROR(crr->PkAffinity(&affinity));
  const std::string codes = QuoteLiteral(std::string(affinity->begin(), affinity->end()));
  CRSYNC_RETURN_IF_ERROR(Exec(e->db(), "INSERT INTO main." + crr->RowsTable() +
                                           "(pk, meta) SELECT crsync_internal_pack_key(" + codes +
                                           ", " + cols +
                                           "), crsync_internal_fresh_meta(" + n + ", " + v +
                                           ") FROM main." + QuoteIdent(crr->name()) +
                                           " ORDER BY " + cols));
  return WriteFeedFromRows(e->db(), crr,
                           "SELECT pk, " + v + ", crsync_internal_meta_run(meta) FROM main." +
                               crr->RowsTable() + " ORDER BY pk");
}

Status RecordingTriggerCount(sqlite3* db, const std::string& name, int* count) {
  std::vector<NamedTrigger> triggers;
  CRSYNC_RETURN_IF_ERROR(TriggersNamedLikeRecorders(db, name, &triggers));
  *count = 0;
  for (const NamedTrigger& t : triggers) *count += t.on_table;
  return Status::OK();
}

Status ReadRecorderState(sqlite3* db, const std::string& name, int64_t crr_id, RecorderState* out) {
  *out = RecorderState{};
  CRSYNC_RETURN_IF_ERROR(RecordingTriggerCount(db, name, &out->recorders));
  if (out->recorders < 3) CRSYNC_RETURN_IF_ERROR(AlterGuardStands(db, name, &out->guarded));
  if (out->recorders < 3 && !out->guarded) {
    CRSYNC_RETURN_IF_ERROR(OpenAlterOwner(db, crr_id, &out->alter_owner));
  }
  return Status::OK();
}

Status RecordingTriggersStand(sqlite3* db, const std::string& name, bool* standing) {
  int count = 0;
  CRSYNC_RETURN_IF_ERROR(RecordingTriggerCount(db, name, &count));
  *standing = count == 3;
  return Status::OK();
}

namespace {
struct NoCaseLess {
  bool operator()(const std::string& a, const std::string& b) const {
    return sqlite3_stricmp(a.c_str(), b.c_str()) < 0;
  }
};
}  // namespace

Status CrrsWithoutRecorders(sqlite3* db, const std::vector<const Crr*>& crrs,
                           std::vector<bool>* lost) {
  lost->assign(crrs.size(), false);
  if (crrs.empty()) return Status::OK();
  // One pass over the triggers named like crsync's, and one over the open
  // alters' marks, whatever the number of CRRs.
  std::map<std::string, std::pair<int, bool>, NoCaseLess> triggers;  // recorders, guard
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                 "SELECT name, tbl_name FROM main.sqlite_master WHERE type = "
                                 "'trigger' AND instr(name, '__crsync_') > 0",
                                 &st));
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    const std::string name = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0));
    const std::string table = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 1));
    const std::string base = table + "__crsync_";
    if (name.size() <= base.size() || sqlite3_strnicmp(name.c_str(), base.c_str(),
                                                        static_cast<int>(base.size())) != 0) {
      continue;
    }
    const std::string suffix = name.substr(base.size());
    auto& [recorders, guard] = triggers[table];
    for (const char* r : {"itrig", "utrig", "dtrig"}) recorders += sqlite3_stricmp(suffix.c_str(), r) == 0;
    for (const char* g : {"guard_i", "guard_u", "guard_d"}) guard |= sqlite3_stricmp(suffix.c_str(), g) == 0;
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc);
  std::set<int64_t> marked;
  CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                 "SELECT CAST(substr(key, 19) AS INTEGER) FROM main.crsql_master "
                                 "WHERE key > 'crsync_open_alter.' AND key < 'crsync_open_alter/'",
                                 &st));
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) marked.insert(sqlite3_column_int64(st.get(), 0));
  if (rc != SQLITE_DONE) return SqliteError(db, rc);
  for (size_t i = 0; i < crrs.size(); ++i) {
    auto it = triggers.find(crrs[i]->name());
    const bool any_recorder = it != triggers.end() && it->second.first > 0;
    const bool guarded = it != triggers.end() && it->second.second;
    (*lost)[i] = !any_recorder && !guarded && !marked.count(crrs[i]->id());
  }
  return Status::OK();
}

Status CheckNoNullKeys(sqlite3* db, const Crr& crr, const std::string& what) {
  for (const std::string& col : crr.schema().pk_cols) {
    StmtPtr st;
    CRSYNC_RETURN_IF_ERROR(Prepare(db, "SELECT EXISTS (SELECT 1 FROM main." + QuoteIdent(crr.name()) +
                                           " WHERE " + QuoteIdent(col) + " IS NULL)",
                                   &st));
    int rc = sqlite3_step(st.get());
    if (rc != SQLITE_ROW) return SqliteError(db, rc);
    if (sqlite3_column_int(st.get(), 0)) {
      return Status::InvalidArgument("crsql - " + what + ": a row of " + crr.name() +
                                     " has NULL in primary key column " + col +
                                     "; a CRR's key values may not be NULL (give the row a key "
                                     "or delete it first)");
    }
  }
  return Status::OK();
}

Status WriteFeedFromRows(sqlite3* db, Crr* crr, const std::string& select) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db, select, &st));
  RowBuf feed, scratch, none;
  auto store = [&]() -> Status {
    if (!std::is_sorted(feed.rows.begin(), feed.rows.end(), FeedKeyLess)) {
      std::sort(feed.rows.begin(), feed.rows.end(), FeedKeyLess);
    }
    // A window's entries come from consecutive rows: nothing else is
    // stored between the keys of any of its stretches.
    if (MetaBatch::RangeWritesEnabled()) {
      crr->MakeFeedRanges(MetaBatch::kMinRange, &feed, &scratch);
    }
    Status s = crr->StoreBulk(none, none, none, feed);
    feed.rows.clear();
    return s;
  };
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    RowBuf::Row& r = feed.rows.emplace_back();
    r.pk.assign(static_cast<const char*>(sqlite3_column_blob(st.get(), 0)),
                static_cast<size_t>(sqlite3_column_bytes(st.get(), 0)));
    r.dbv = sqlite3_column_int64(st.get(), 1);
    r.lo = sqlite3_column_int64(st.get(), 2);
    if (feed.rows.size() == MetaBatch::kWindow) CRSYNC_RETURN_IF_ERROR(store());
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc);
  return feed.rows.empty() ? Status::OK() : store();
}

namespace {

// Backfills a new CRR's existing rows at the transaction's version; an empty
// table consumes no version.
Status Backfill(ConnEngine* e, Crr* crr) {
  StmtPtr any;
  CRSYNC_RETURN_IF_ERROR(Prepare(e->db(), "SELECT EXISTS (SELECT 1 FROM main." +
                                              QuoteIdent(crr->name()) + ")",
                                 &any));
  if (sqlite3_step(any.get()) != SQLITE_ROW || sqlite3_column_int(any.get(), 0) == 0) {
    return Status::OK();
  }
  CRSYNC_RETURN_IF_ERROR(CheckNoNullKeys(e->db(), *crr, "crsql_as_crr(" + crr->name() + ")"));
  int64_t dbv;
  CRSYNC_RETURN_IF_ERROR(e->LocalDbVersion(&dbv));
  return BulkBackfill(e, crr, dbv);
}

Status TableExists(sqlite3* db, const std::string& name, bool* exists) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                 "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND "
                                 "name = ?1 COLLATE NOCASE",
                                 &st));
  sqlite3_bind_text(st.get(), 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
  int rc = sqlite3_step(st.get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db, rc);
  *exists = rc == SQLITE_ROW;
  return Status::OK();
}

// The CRR's metadata tables and recording triggers are named after it
// (T__crsync_rows, ...): a user's own object of such a name must be neither
// adopted nor dropped, so the conversion is refused, naming it.
Status CheckInternalNamesFree(sqlite3* db, const std::string& name) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                 "SELECT type, name FROM main.sqlite_master WHERE name COLLATE "
                                 "NOCASE IN (?1 || 'rows', ?1 || 'feed', ?1 || 'itrig', ?1 || "
                                 "'utrig', ?1 || 'dtrig', ?1 || 'noblob') LIMIT 1",
                                 &st));
  const std::string base = name + "__crsync_";
  sqlite3_bind_text(st.get(), 1, base.data(), static_cast<int>(base.size()), SQLITE_STATIC);
  int rc = sqlite3_step(st.get());
  if (rc == SQLITE_DONE) return Status::OK();
  if (rc != SQLITE_ROW) return SqliteError(db, rc);
  const std::string type = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0));
  const std::string taken = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 1));
  return Status::InvalidArgument("crsql_as_crr(" + name + "): " + (type == "index" ? "an " : "a ") +
                                 type + " named " + taken + " already exists; crsync keeps " +
                                 name + "'s metadata under that name (rename or drop that " + type +
                                 " first)");
}

// Triggers made on the CRR's table after its recording triggers fire
// before them (engine/trigger_order.h): the recording triggers are made
// again, so that they fire first. A CRR made by a build without the
// no-blob-write index (engine/blob_write_guard.h) gets it here.
Status RepairRecorders(ConnEngine* e, const std::string& name) {
  sqlite3* db = e->db();
  bool user_first, has_index;
  CRSYNC_RETURN_IF_ERROR(UserTriggersFireFirst(db, name, &user_first));
  CRSYNC_RETURN_IF_ERROR(HasNoBlobWriteIndex(db, name, &has_index));
  // A connection that cannot write writes no rows to hide.
  if ((!user_first && has_index) || sqlite3_db_readonly(db, "main") != 0) return Status::OK();
  {
    StmtPtr st;
    CRSYNC_RETURN_IF_ERROR(Prepare(db, "PRAGMA query_only", &st));
    if (sqlite3_step(st.get()) == SQLITE_ROW && sqlite3_column_int(st.get(), 0) != 0)
      return Status::OK();
  }
  return InSavepoint(db, "crsync_as_crr", [&]() -> Status {
    CRSYNC_RETURN_IF_ERROR(JoinForCatalogChange(e));
    Crr* crr = e->catalog().ByName(name);
    if (!crr) return Status::Corruption("crsql - CRR " + name + " vanished");
    int64_t tag;
    CRSYNC_RETURN_IF_ERROR(e->TagForTriggers(&tag));
    return InstallRecorderTriggers(db, *crr, tag, "crsql_as_crr(" + name + ")");
  });
}

}  // namespace

Status AsCrr(ConnEngine* e, const std::string& table) {
  sqlite3* db = e->db();
  CRSYNC_RETURN_IF_ERROR(e->FlushLocalWrites());
  CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh());
  if (Crr* known = e->catalog().ByName(table)) {
    // Idempotent while the CRR stands. A table dropped (and perhaps
    // re-created) behind the engine's back has lost its recording triggers
    // while its metadata stayed: that metadata describes rows that are gone,
    // so it is cleared and the table converted afresh.
    const std::string name = known->name();
    CRSYNC_RETURN_IF_ERROR(ConfirmOpenAlters(e));  // (a commit undone: open again)
    if (e->open_alters().count(name)) return Status::OK();  // triggers away on purpose
    RecorderState state;
    CRSYNC_RETURN_IF_ERROR(ReadRecorderState(db, name, known->id(), &state));
    if (state.recorders == 3) {
      CRSYNC_RETURN_IF_ERROR(known->CheckShape());  // altered without begin/commit: say how to fix
      return RepairRecorders(e, name);
    }
    // Another connection's alter is open: its guard stands, or (when it
    // rebuilt the table, guards and all) its mark.
    if (state.alter_open()) return Status::FailedPrecondition(AlterOpenElsewhere(name));
    if (state.recorders > 0) {
      // A recording trigger dropped by hand (DROP TABLE takes all three):
      // the table and its history stand, so an alter's begin and commit
      // make the triggers again, reading every row for what went
      // unrecorded, rather than a conversion afresh that loses tombstones.
      CRSYNC_RETURN_IF_ERROR(BeginAlter(e, name));
      return CommitAlter(e, name);
    }
    bool exists = false;
    CRSYNC_RETURN_IF_ERROR(TableExists(db, name, &exists));
    if (!exists) return Status::InvalidArgument("crsql - no such table: " + name);
    CRSYNC_RETURN_IF_ERROR(AsTable(e, name));
  }
  if (e->site_id().empty()) {
    return Status::InvalidArgument("crsql - the database is read-only and has no crsync tables");
  }
  TableSchema schema;
  CRSYNC_RETURN_IF_ERROR(LoadTableSchema(db, table, &schema));
  CRSYNC_RETURN_IF_ERROR(CheckCrrEligible(db, schema));

  bool made_elsewhere = false;
  Status s = InSavepoint(db, "crsync_as_crr", [&]() -> Status {
    // Joined (inside the savepoint, which holds the transaction open) so
    // that a ROLLBACK TO undoing the conversion reaches the engine: the
    // catalog is cached against a schema version that goes back then.
    CRSYNC_RETURN_IF_ERROR(JoinForCatalogChange(e));
    // The catalog above was read before this write transaction: another
    // connection may have converted the table since (several processes
    // running the same setup). Then this call is the idempotent one.
    StmtPtr known;
    CRSYNC_RETURN_IF_ERROR(Prepare(
        db, "SELECT 1 FROM main.crsync_crrs WHERE name = ?1 COLLATE NOCASE", &known));
    sqlite3_bind_text(known.get(), 1, schema.name.data(), static_cast<int>(schema.name.size()),
                      SQLITE_STATIC);
    if (sqlite3_step(known.get()) == SQLITE_ROW) {
      made_elsewhere = true;
      return Status::OK();
    }
    known.reset();
    CRSYNC_RETURN_IF_ERROR(CheckInternalNamesFree(db, schema.name));
    StmtPtr ins;
    CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                   "INSERT INTO main.crsync_crrs(id, name, pk_cols, cols) "
                                   "VALUES ((SELECT coalesce(max(id), 0) + 1 FROM "
                                   "main.crsync_crrs), ?1, ?2, ?3)",
                                   &ins));
    std::string pks = PackNames(schema.pk_cols), cols = PackNames(schema.cols);
    sqlite3_bind_text(ins.get(), 1, schema.name.data(), static_cast<int>(schema.name.size()),
                      SQLITE_STATIC);
    sqlite3_bind_blob(ins.get(), 2, pks.data(), static_cast<int>(pks.size()), SQLITE_STATIC);
    sqlite3_bind_blob(ins.get(), 3, cols.data(), static_cast<int>(cols.size()), SQLITE_STATIC);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db, ins.get()));
    std::string rows = QuoteIdent(schema.name + "__crsync_rows");
    std::string feed = QuoteIdent(schema.name + "__crsync_feed");
    CRSYNC_RETURN_IF_ERROR(
        Exec(db, RowsTableDdl("main." + rows) + ";" + FeedTableDdl("main." + feed) + ";"));
    CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh(true));
    Crr* crr = e->catalog().ByName(schema.name);
    if (!crr) return Status::Corruption("crsql - CRR vanished while being created");
    int64_t tag;
    CRSYNC_RETURN_IF_ERROR(e->TagForTriggers(&tag));
    CRSYNC_RETURN_IF_ERROR(
        InstallRecorderTriggers(db, *crr, tag, "crsql_as_crr(" + crr->name() + ")"));
    e->CatalogChanged();
    return Backfill(e, crr);
  });
  if (!s.ok()) {
    e->catalog().Invalidate();
    e->CatalogChanged();
  }
  if (s.ok() && made_elsewhere) {
    CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh(true));
    Crr* known = e->catalog().ByName(table);
    if (!known) return Status::Corruption("crsql - CRR vanished while being created");
    return known->CheckShape();
  }
  return s;
}

bool OtherStatementRuns(sqlite3* db) {
  int busy = 0;
  for (sqlite3_stmt* st = sqlite3_next_stmt(db, nullptr); st; st = sqlite3_next_stmt(db, st))
    busy += sqlite3_stmt_busy(st) ? 1 : 0;
  return busy > 1;
}

Status AsTable(ConnEngine* e, const std::string& table) {
  sqlite3* db = e->db();
  CRSYNC_RETURN_IF_ERROR(e->FlushLocalWrites());
  CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh());
  Crr* crr = e->catalog().ByName(table);
  // Not a CRR: nothing to downgrade (and objects named like a CRR's
  // metadata are the user's own: left alone).
  if (!crr) return Status::OK();
  const std::string name = crr->name();
  // SQLite drops no table while another statement of the connection reads
  // ("database table is locked"), and the rollback of this call's DDL
  // would then abort every running statement: refuse first, saying why.
  if (OtherStatementRuns(db)) {
    return Status::FailedPrecondition(
        "crsql - another statement of this connection is still running: finish or reset it "
        "first (SQLite cannot drop " + name + "'s metadata tables under it)");
  }
  int64_t committed;
  CRSYNC_RETURN_IF_ERROR(e->CommittedDbVersion(&committed));
  Status s = InSavepoint(db, "crsync_as_table", [&]() -> Status {
    CRSYNC_RETURN_IF_ERROR(JoinForCatalogChange(e));  // as in AsCrr
    // Keep the db_version from going back when the versions we drop held
    // the maximum (§6.1).
    CRSYNC_RETURN_IF_ERROR(Exec(
        db, "INSERT OR REPLACE INTO main.crsql_master(key, value) VALUES "
            "('pre_compact_dbversion', max(" + std::to_string(committed) +
            ", coalesce((SELECT value FROM main.crsql_master WHERE key = "
            "'pre_compact_dbversion'), 0)))"));
    CRSYNC_RETURN_IF_ERROR(DropRecorderTriggers(db, name));
    CRSYNC_RETURN_IF_ERROR(DropNoBlobWriteIndex(db, name));
    CRSYNC_RETURN_IF_ERROR(Exec(
        db, "DROP TABLE IF EXISTS main." +
                QuoteIdent(name + "__crsync_rows") + "; DROP TABLE IF EXISTS main." +
                QuoteIdent(name + "__crsync_feed") +
                "; DELETE FROM main.crsync_crrs WHERE name = " + QuoteLiteral(name) +
                " COLLATE NOCASE; DELETE FROM main.crsql_master WHERE key = " +
                QuoteLiteral(OpenAlterKey(crr->id())) + ";"));
    return Status::OK();
  });
  e->catalog().Invalidate();
  e->CatalogChanged();
  if (!s.ok()) return s.WithContext("failed to downgrade the crr");  // keeps SQLITE_BUSY a BUSY
  return e->catalog().Refresh(true);
}

}  // namespace crsync
