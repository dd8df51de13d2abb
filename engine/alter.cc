#include "engine/alter.h"

#include <algorithm>
#include <map>
#include <vector>

#include "crsync/sqlite_handles.h"
#include "engine/crr_admin.h"
#include "engine/packed.h"
#include "engine/recorder.h"
#include "engine/row_meta.h"
#include "engine/value.h"

namespace crsync {
namespace {

// PRAGMA data_version: changes when another connection commits.
Status DataVersion(sqlite3* db, int64_t* out) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db, "PRAGMA main.data_version", &st));
  int rc = sqlite3_step(st.get());
  if (rc != SQLITE_ROW) return SqliteError(db, rc);
  *out = sqlite3_column_int64(st.get(), 0);
  return Status::OK();
}

// begin_alter's savepoint, one per CRR so that alters of several tables
// may be open at once and each commit or failure touches only its own.
std::string AlterSavepoint(int64_t crr_id) {
  return "\"crsync_alter_" + std::to_string(crr_id) + "\"";
}
// commit_alter's own savepoint around the migration: it undoes a failed
// migration even when begin_alter's savepoint is gone (the caller's COMMIT
// or RELEASE of an enclosing savepoint ended it).
constexpr char kCommitSavepoint[] = "crsync_alter_commit";

bool IsAppendOnly(const TableSchema& before, const TableSchema& after) {
  if (before.pk_cols != after.pk_cols || after.cols.size() < before.cols.size()) return false;
  for (size_t i = 0; i < before.cols.size(); ++i)
    if (before.cols[i] != after.cols[i]) return false;
  return true;
}

// The value each column of `schema` takes by default (NULL without one).
// Each column's default as a row holds it: the expression's value with the
// column's affinity applied (REAL DEFAULT 0 holds 0.0, TEXT DEFAULT 5 '5').
Status DefaultValues(sqlite3* db, const TableSchema& schema, std::vector<Value>* out) {
  out->clear();
  std::map<std::string, std::string> types;  // column name -> declared type
  {
    StmtPtr info;
    CRSYNC_RETURN_IF_ERROR(Prepare(db, "SELECT name, type FROM pragma_table_info(?1, 'main')", &info));
    sqlite3_bind_text(info.get(), 1, schema.name.data(), static_cast<int>(schema.name.size()),
                      SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(info.get())) == SQLITE_ROW) {
      const unsigned char* n = sqlite3_column_text(info.get(), 0);
      const unsigned char* t = sqlite3_column_text(info.get(), 1);
      if (n) types[reinterpret_cast<const char*>(n)] = t ? reinterpret_cast<const char*>(t) : "";
    }
    if (rc != SQLITE_DONE) return SqliteError(db, rc);
  }
  for (size_t i = 0; i < schema.col_default_sql.size(); ++i) {
    const std::string& sql = schema.col_default_sql[i];
    if (sql.empty()) {
      out->push_back(Value::Null());
      continue;
    }
    StmtPtr st;
    CRSYNC_RETURN_IF_ERROR(Prepare(db, "SELECT " + sql, &st));
    if (sqlite3_step(st.get()) != SQLITE_ROW) return SqliteError(db, sqlite3_errcode(db));
    auto t = types.find(schema.cols[i]);
    out->push_back(ApplyAffinity(Value::FromColumn(st.get(), 0),
                                 AffinityOf(t == types.end() ? "" : t->second)));
  }
  return Status::OK();
}

bool SameValue(sqlite3_value* v, const Value& d) {
  return sqlite3_value_type(v) == d.type && CompareValue(v, d) == 0;
}
bool SameValue(const Value& v, const Value& d) { return v.type == d.type && Value::Compare(v, d) == 0; }

// crsync_internal_remap gets the row's column values as arguments, or, when
// they would exceed SQLite's cap on a call's arguments, packed
// (crsql_pack_columns) kPackChunk at a time.
constexpr size_t kPackChunk = 100;
bool PackedRemap(size_t ncols) { return 2 + ncols > kMaxFunctionArgs; }

// Brings a CRR's metadata in line with its new schema (§14.3) at version D.
// Everything runs as a few whole-table statements inside SQLite, streaming
// in bounded memory: the per-row work is crsync_internal_remap, which this
// class serves through the engine's remap hook.
class Migration {
 public:
  Migration(ConnEngine* e, const Crr& old, TableSchema schema, int64_t d)
      : e_(e), db_(e->db()), old_(old.schema()), crr_(e->db(), old.id(), std::move(schema)), d_(d) {}

  Status Run() {
    std::vector<std::string> old_set = old_.pk_cols, new_set = crr_.schema().pk_cols;
    std::sort(old_set.begin(), old_set.end());
    std::sort(new_set.begin(), new_set.end());
    if (old_set != new_set) {
      // Another set of key columns: every identity changed. Start over at D; all
      // tombstones and col_versions are lost (§14.3.1). A row with a NULL
      // in the new key has no identity: refused by name, as crsql_as_crr.
      CRSYNC_RETURN_IF_ERROR(
          CheckNoNullKeys(db_, crr_, "crsql_commit_alter(" + crr_.name() + ")"));
      CRSYNC_RETURN_IF_ERROR(Exec(db_, "DELETE FROM main." + crr_.RowsTable() +
                                           "; DELETE FROM main." + crr_.FeedTable()));
      return BulkBackfill(e_, &crr_, d_);
    }
    // The same key columns, maybe in another order: each new key position
    // takes the value at the old one (the rows keep their clocks).
    old_pos_.clear();
    for (const std::string& c : crr_.schema().pk_cols) {
      const auto at = std::find(old_.pk_cols.begin(), old_.pk_cols.end(), c);
      old_pos_.push_back(static_cast<size_t>(at - old_.pk_cols.begin()));
    }
    CRSYNC_RETURN_IF_ERROR(DefaultValues(db_, crr_.schema(), &defaults_));
    CRSYNC_RETURN_IF_ERROR(RemapKnownRows());
    // Every row of T that has metadata was matched once by the remap; if
    // that is all of T, no row lacks metadata.
    StmtPtr count;
    CRSYNC_RETURN_IF_ERROR(
        Prepare(db_, "SELECT count(*) FROM main." + QuoteIdent(crr_.name()), &count));
    if (sqlite3_step(count.get()) != SQLITE_ROW) return SqliteError(db_, sqlite3_errcode(db_));
    if (sqlite3_column_int64(count.get(), 0) == matched_) return Status::OK();
    return BackfillNewRows();
  }

  // Rows written while the recording triggers were off (§14.1), as far as
  // the migration can tell: deleted rows, and rows new to the metadata. (An
  // update of a known row leaves no trace to count.)
  int64_t unrecorded_deletes() const { return unrecorded_deletes_; }
  int64_t unrecorded_inserts() const { return unrecorded_inserts_; }

 private:
  // §14.3.2 (a)-(c) and the known-row half of (d). The remapped metadata is
  // written in pk order to a new rows table, which then replaces the old
  // one (a drop and a rename: no copy). The feed, an
  // index of the rows' runs, is then rebuilt from them in one pass in key
  // order (WriteFeedFromRows: range entries where runs follow the keys):
  // the remap touches every row, and adjusting the feed row by row cost
  // two nested statements per row (most of the alter's time).
  Status RemapKnownRows() {
    new_slot_.assign(old_.cols.size(), -1);
    for (size_t i = 0; i < old_.cols.size(); ++i) new_slot_[i] = crr_.SlotOf(old_.cols[i]);
    const TableSchema& schema = crr_.schema();
    // (The key compares as bytes: CheckCrrEligible, E9, refused any other
    // collation before this runs.)
    std::string on, values;
    bool reordered = false;
    std::string new_pk = "crsql_pack_columns(";
    for (size_t k = 0; k < schema.pk_cols.size(); ++k) {
      const std::string col = "u." + QuoteIdent(schema.pk_cols[k]);
      const std::string key = "crsync_pk_value(r.pk, " + std::to_string(old_pos_[k]) + ")";
      on += std::string(k ? " AND " : "") + col + " = " + key;
      new_pk += std::string(k ? ", " : "") + key;
      reordered = reordered || old_pos_[k] != k;
    }
    new_pk = reordered ? new_pk + ")" : "r.pk";
    if (!PackedRemap(schema.cols.size())) {
      for (const auto& c : schema.cols) values += ", u." + QuoteIdent(c);
    } else {
      for (size_t from = 0; from < schema.cols.size(); from += kPackChunk) {
        values += ", crsql_pack_columns(";
        for (size_t i = from; i < std::min(schema.cols.size(), from + kPackChunk); ++i)
          values += (i == from ? "u." : ", u.") + QuoteIdent(schema.cols[i]);
        values += ")";
      }
    }
    std::string rows = "main." + crr_.RowsTable();
    std::string scratch;
    CRSYNC_RETURN_IF_ERROR(FreeObjectName(db_, crr_.name() + "__crsync_rows_remap", &scratch));
    std::string remapped = "main." + QuoteIdent(scratch);
    std::string fill =
        RowsTableDdl(remapped) + ";"
        // A NULL result (nothing left of the row) is skipped by OR IGNORE.
        "INSERT OR IGNORE INTO " + remapped + "(pk, meta) SELECT " + new_pk + ", "
        "crsync_internal_remap(r.meta, u." + QuoteIdent(schema.pk_cols[0]) + " IS NOT NULL" +
        values + ") FROM " + rows + " AS r LEFT JOIN main." + QuoteIdent(crr_.name()) +
        " AS u ON " + on + " ORDER BY 1;";
    std::string swap = "DROP TABLE " + rows + "; ALTER TABLE " + remapped + " RENAME TO " +
                       crr_.RowsTable() + ";";
    std::string feed = "SELECT r.pk, f.dbv, f.lo FROM " + rows +
                       " AS r, crsync_meta_runs(r.meta) AS f ORDER BY r.pk";
    Status failure;
    ConnEngine::SqlHook hook = [&](sqlite3_context* ctx, int argc, sqlite3_value** argv) {
      Status s = RemapRow(ctx, argc, argv);
      if (!s.ok()) {
        failure = s;
        sqlite3_result_error(ctx, s.message().c_str(), -1);
      }
    };
    // Taken here, outside the statement, and given back if no row needs it.
    // A database whose versions are exhausted has none to take: an alter
    // that leaves every row a clock still commits there.
    const int64_t pending_before = e_->pending_version();
    fresh_status_ = e_->LocalDbVersion(&fresh_version_);
    fresh_used_ = false;
    Status s;
    {
      // Unset however Exec leaves (an exception too): the hook lives here.
      e_->set_remap_hook(&hook);
      struct Unset {
        ConnEngine* e;
        ~Unset() { e->set_remap_hook(nullptr); }
      } unset{e_};
      s = Exec(db_, fill);
    }
    if (!failure.ok()) return failure;
    CRSYNC_RETURN_IF_ERROR(s);
    if (!fresh_used_) e_->RestorePendingVersion(pending_before);
    fresh_status_ = Status::OK();
    // The rename runs in legacy mode: it then renames just this table, and
    // does not re-check every view and trigger of the schema (one broken
    // view elsewhere would fail the alter).
    {
      struct LegacyAlter {
        sqlite3* db;
        int was = 0;
        explicit LegacyAlter(sqlite3* d) : db(d) {
          sqlite3_db_config(db, SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, -1, &was);
          sqlite3_db_config(db, SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, 1, nullptr);
        }
        ~LegacyAlter() { sqlite3_db_config(db, SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, was, nullptr); }
      } legacy(db_);
      s = Exec(db_, swap);
    }
    CRSYNC_RETURN_IF_ERROR(s);
    CRSYNC_RETURN_IF_ERROR(Exec(db_, "DELETE FROM main." + crr_.FeedTable()));
    return WriteFeedFromRows(db_, &crr_, feed);
  }

  // crsync_internal_remap(meta, exists, new column values...): the row's
  // new metadata, or NULL when nothing is left of it.
  Status RemapRow(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    const bool packed = PackedRemap(crr_.slots());
    const size_t nargs = packed ? (crr_.slots() + kPackChunk - 1) / kPackChunk : crr_.slots();
    if (argc != 2 + static_cast<int>(nargs)) {
      return Status::Corruption("crsync_internal_remap: wrong argument count");
    }
    auto bytes = [](sqlite3_value* v) {
      return std::string_view(static_cast<const char*>(sqlite3_value_blob(v)),
                              static_cast<size_t>(sqlite3_value_bytes(v)));
    };
    RowMeta before, after;
    CRSYNC_RETURN_IF_ERROR(DecodeRowMeta(bytes(argv[0]), old_.cols.size(), &before));
    after.sentinel = before.sentinel;
    after.cols.assign(crr_.slots(), Clock{});
    for (size_t i = 0; i < before.cols.size(); ++i) {
      if (before.cols[i].present && new_slot_[i] >= 0) after.cols[new_slot_[i]] = before.cols[i];
    }
    if (sqlite3_value_int(argv[1]) == 0) {
      // (b) the row is gone: drop its column clocks and a live sentinel;
      // a tombstone stays. A row that was live was deleted while nothing
      // recorded (§14.3: no tombstone, so the delete never replicates).
      if (!before.Empty() && !(before.sentinel.present && before.sentinel.col_version % 2 == 0)) {
        ++unrecorded_deletes_;
      }
      for (Clock& c : after.cols) c = Clock{};
      if (after.sentinel.present && after.sentinel.col_version % 2 == 1) after.sentinel = Clock{};
    } else {
      ++matched_;
      if (packed) {
        values_.clear();
        for (size_t k = 0; k < nargs; ++k) {
          CRSYNC_RETURN_IF_ERROR(UnpackValues(bytes(argv[2 + k]), &chunk_));
          values_.insert(values_.end(), chunk_.begin(), chunk_.end());
        }
        if (values_.size() != crr_.slots()) {
          return Status::Corruption("crsync_internal_remap: wrong number of packed values");
        }
      }
      auto is_default = [&](size_t j) {
        return packed ? SameValue(values_[j], defaults_[j]) : SameValue(argv[2 + j], defaults_[j]);
      };
      const bool any_clock =
          after.sentinel.present ||
          std::any_of(after.cols.begin(), after.cols.end(), [](const Clock& c) { return c.present; });
      if (!any_clock) {
        // Nothing was left of the key: every clocked column was dropped or
        // renamed. §14.3 (c) then (d) would give it full metadata at D, as
        // to a row inserted during the alter; but replicas that migrate at
        // different moments then diverge for good (docs/sql-api.md): a
        // column at its default, clocked at col_version 1, beats a peer's
        // concurrent write of it on value, and a peer that refused the
        // row's only change (for the column it had dropped already) never
        // hears of the row, its cursor past D. So the row says it lives (a
        // cl 1 sentinel) and clocks only what differs from the defaults,
        // as (d) does for known rows, at a version of its own that peers
        // fetch. Replicas that migrate alike send each other equal
        // records, which change nothing.
        CRSYNC_RETURN_IF_ERROR(fresh_status_);
        fresh_used_ = true;
        after.sentinel = Clock{true, 1, fresh_version_, e_->TakeSeq(), 0, 0};
        for (size_t j = 0; j < after.cols.size(); ++j) {
          if (!is_default(j)) after.cols[j] = Clock{true, 1, fresh_version_, e_->TakeSeq(), 0, 0};
        }
      } else if (after.sentinel.present && after.sentinel.col_version % 2 == 0) {
        // A row inserted again between begin and commit (no trigger saw
        // it) over its tombstone. Taken literally, (d) would give a deleted
        // row column clocks, which §5 forbids and every peer refuses
        // ("column changes must have an odd cl"): it is recorded as the
        // re-insert it was, a live causal length and every column at D.
        ++unrecorded_inserts_;
        const int64_t cl = after.sentinel.col_version + 1;
        after.sentinel = Clock{true, cl, d_, e_->TakeSeq(), 0, 0};
        for (Clock& c : after.cols) c = Clock{true, 1, d_, e_->TakeSeq(), 0, 0};
      } else {
        // (d) for a known row, a clock for a column that has none is made
        // only when its value differs from the column's default.
        for (size_t j = 0; j < after.cols.size(); ++j) {
          if (after.cols[j].present || is_default(j)) continue;
          after.cols[j] = Clock{true, 1, d_, e_->TakeSeq(), 0, 0};
        }
      }
    }
    NormalizeRuns(&after);  // the feed is rebuilt from these runs afterwards
    if (after.Empty()) {
      sqlite3_result_null(ctx);  // (c) nothing left: forget the row
      return Status::OK();
    }
    EncodeRowMeta(after, &blob_);
    sqlite3_result_blob(ctx, blob_.data(), static_cast<int>(blob_.size()), SQLITE_TRANSIENT);
    return Status::OK();
  }

  // Rows of T without metadata (inserted between begin and commit) get full
  // metadata at D (§14.3.2 d).
  Status BackfillNewRows() {
    CRSYNC_RETURN_IF_ERROR(CheckNoNullKeys(db_, crr_, "crsql_commit_alter(" + crr_.name() + ")"));
    std::string cols;
    for (size_t i = 0; i < crr_.schema().pk_cols.size(); ++i)
      cols += std::string(i ? ", " : "") + QuoteIdent(crr_.schema().pk_cols[i]);
    StmtPtr scan;
    CRSYNC_RETURN_IF_ERROR(Prepare(
        db_, "SELECT " + cols + " FROM main." + QuoteIdent(crr_.name()) + " ORDER BY " + cols, &scan));
    int npk = static_cast<int>(crr_.schema().pk_cols.size());
    const std::vector<char>* key_affinity;
    CRSYNC_RETURN_IF_ERROR(crr_.PkAffinity(&key_affinity));
    const std::vector<char> affinity = *key_affinity;
    std::vector<sqlite3_value*> pk(npk);
    std::string key;
    int rc;
    while ((rc = sqlite3_step(scan.get())) == SQLITE_ROW) {
      for (int i = 0; i < npk; ++i) pk[i] = sqlite3_column_value(scan.get(), i);
      key.clear();
      PackKey(pk.data(), npk, affinity, &key);
      RowMeta meta;
      meta.cols.assign(crr_.slots(), Clock{});
      int64_t seq = e_->PeekSeq();
      StampWholeRow(&meta, &seq);
      bool inserted;
      CRSYNC_RETURN_IF_ERROR(crr_.InsertNewMeta(key, std::move(meta), &inserted));
      if (inserted) {
        ++unrecorded_inserts_;
        e_->TakeSeqsBelow(seq);
      }
    }
    if (rc != SQLITE_DONE) return SqliteError(db_, rc);
    return Status::OK();
  }

  // Full metadata at D for a row that has none: every column at
  // col_version 1, or a cl 1 sentinel for a pk-only table; seqs from *seq on.
  void StampWholeRow(RowMeta* m, int64_t* seq) const {
    if (crr_.slots() == 0) {
      m->sentinel = Clock{true, 1, d_, (*seq)++, 0, 0};
    } else {
      for (Clock& c : m->cols) c = Clock{true, 1, d_, (*seq)++, 0, 0};
    }
  }

  ConnEngine* e_;
  sqlite3* db_;
  TableSchema old_;
  Crr crr_;  // the CRR under its new schema
  int64_t d_;
  std::vector<Value> defaults_;
  std::vector<int> new_slot_;  // old slot -> new slot, or -1
  std::vector<size_t> old_pos_;  // new key position -> old key position
  int64_t matched_ = 0;        // rows with metadata whose row exists in T
  // The version a row left with no clock at all is announced at (RemapRow),
  // and whether one was.
  int64_t fresh_version_ = 0;
  Status fresh_status_;  // why there is no fresh_version_
  bool fresh_used_ = false;
  int64_t unrecorded_deletes_ = 0;  // live rows with metadata gone from T
  int64_t unrecorded_inserts_ = 0;  // rows of T without (live) metadata
  std::string blob_;
  std::vector<Value> values_, chunk_;  // a packed row's column values
};

}  // namespace

Status BeginAlter(ConnEngine* e, const std::string& table) {
  CRSYNC_RETURN_IF_ERROR(e->FlushLocalWrites());  // recorded under the old schema
  CRSYNC_RETURN_IF_ERROR(ConfirmOpenAlters(e));
  CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh());
  Crr* crr = e->catalog().ByName(table);
  if (!crr) return Status::InvalidArgument("crsql - " + table + " is not a CRR");
  std::string name = crr->name();
  // Rows written while the table's shape or an abandoned alter (its guard
  // still standing, the alter not ours) kept them from being recorded.
  bool drifted = !crr->CheckShape().ok();
  if (drifted && crr->lost_recorders()) {
    // Dropped and made again behind the engine's back: its metadata is the
    // old table's, which no migration can tell from the new one's rows.
    return crr->CheckShape();
  }
  if (!drifted && !e->open_alters().count(name)) {
    CRSYNC_RETURN_IF_ERROR(AlterGuardStands(e->db(), name, &drifted));
  }
  if (auto open = e->open_alters().find(name); open != e->open_alters().end()) {
    bool standing = true;
    CRSYNC_RETURN_IF_ERROR(RecordingTriggersStand(e->db(), name, &standing));
    if (!standing) {
      return Status::InvalidArgument("crsql - an alter of " + name +
                                     " is already open on this connection; call "
                                     "crsql_commit_alter(" +
                                     QuoteLiteral(name) + ") first");
    }
    e->open_alters().erase(open);  // rolled back
  }
  const std::string sp = AlterSavepoint(crr->id());
  int64_t owner = 0;
  while (owner == 0) {
    sqlite3_randomness(sizeof owner, &owner);
    owner &= INT64_MAX;
  }
  CRSYNC_RETURN_IF_ERROR(Exec(e->db(), "SAVEPOINT " + sp));
  // Joined (inside the savepoint, which holds a transaction open) so that
  // a ROLLBACK TO undoing the alter reaches the engine.
  Status s = JoinForCatalogChange(e);
  if (s.ok()) s = DropRecorderTriggers(e->db(), name);
  if (s.ok()) s = Exec(e->db(), AlterGuardSql(name, owner));
  if (s.ok()) {
    s = Exec(e->db(), "INSERT OR REPLACE INTO main.crsql_master(key, value) VALUES (" +
                          QuoteLiteral(OpenAlterKey(crr->id())) + ", " + std::to_string(owner) +
                          ")");
  }
  if (!s.ok()) {
    Exec(e->db(), "ROLLBACK TO " + sp + "; RELEASE " + sp).IgnoreError();
    return s;
  }
  // total_changes at the start tells "only columns were added, no row
  // changed" (commit's fast path).
  int64_t data_version;
  s = DataVersion(e->db(), &data_version);
  if (!s.ok()) {
    Exec(e->db(), "ROLLBACK TO " + sp + "; RELEASE " + sp).IgnoreError();
    return s;
  }
  e->open_alters()[name] =
      ConnEngine::OpenAlter{sqlite3_total_changes64(e->db()), data_version, drifted,
                            e->txn_serial(), owner, crr->id()};
  e->catalog().DropCaches();
  return Status::OK();
}

namespace {

// The alter's connection may write the table between begin and commit,
// but nothing records those writes (§14.1, §14.3): say what that cost, in
// SQLite's log, which is where an application looks when peers differ.
void WarnOfUnrecordedWrites(sqlite3* db, const std::string& table, int64_t d, int64_t deletes,
                            int64_t inserts) {
  if (deletes == 0 && inserts == 0) return;
  // (sqlite3_log cuts a message at about 200 bytes: the file name last.)
  const char* file = sqlite3_db_filename(db, "main");
  sqlite3_log(SQLITE_WARNING,
              "crsync: crsql_commit_alter('%s'): %lld delete(s), %lld insert(s) during the alter "
              "went unrecorded: peers never see the deletes, nor the inserts past db_version %lld "
              "(§14.3) in %s",
              table.c_str(), static_cast<long long>(deletes), static_cast<long long>(inserts),
              static_cast<long long>(d), file && *file ? file : ":memory:");
}

}  // namespace

Status CommitAlter(ConnEngine* e, const std::string& table) {
  sqlite3* db = e->db();
  CRSYNC_RETURN_IF_ERROR(e->FlushLocalWrites());
  if (e->alters_unsure()) CRSYNC_RETURN_IF_ERROR(ReopenUndoneCommits(e));
  CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh(true));
  Crr* crr = e->catalog().ByName(table);
  if (!crr) return Status::InvalidArgument("crsql - " + table + " is not a CRR");
  std::string name = crr->name();
  auto open = e->open_alters().find(name);
  // begin_alter dropped the recording triggers inside its savepoint: if they
  // are back, a rollback undid it and the alter is not open any more.
  bool triggers_back = false;
  if (open != e->open_alters().end()) {
    CRSYNC_RETURN_IF_ERROR(RecordingTriggersStand(db, name, &triggers_back));
    if (triggers_back) e->open_alters().erase(open);
  }
  if (triggers_back) {
    return Status::InvalidArgument(
        "crsql - crsql_commit_alter(" + QuoteLiteral(name) +
        "): the alter this connection began is no longer "
        "open: a rollback undid it, or another connection finished it (its crsql_commit_alter); "
        "an ALTER TABLE made since is not recorded (begin and commit the alter again)");
  }
  if (open != e->open_alters().end()) {
    int64_t owner = 0;
    CRSYNC_RETURN_IF_ERROR(OpenAlterOwner(db, open->second.crr_id, &owner));
    if (owner != open->second.owner) {
      e->open_alters().erase(open);
      return Status::InvalidArgument(
          "crsql - crsql_commit_alter(" + QuoteLiteral(name) +
          "): the alter this connection began was taken "
          "over by another connection's crsql_begin_alter(" +
          QuoteLiteral(name) +
          "), whose "
          "crsql_commit_alter finishes it (if that connection is gone, run SELECT "
          "crsql_begin_alter(" +
          QuoteLiteral(name) + "); SELECT crsql_commit_alter(" + QuoteLiteral(name) + "); here)");
    }
  }
  if (open == e->open_alters().end()) {
    return Status::InvalidArgument("crsql - crsql_commit_alter(" + QuoteLiteral(name) +
                                   ") without crsql_begin_alter on this connection (or it was "
                                   "rolled back, or another connection took it over or "
                                   "finished it); an ALTER TABLE made since is not recorded "
                                   "(begin and commit the alter again)");
  }
  const ConnEngine::OpenAlter begun = open->second;
  // No row written since begin, by this connection (total_changes) or by
  // another one while the alter's transaction was not open (data_version).
  int64_t data_version;
  CRSYNC_RETURN_IF_ERROR(DataVersion(db, &data_version));
  bool rows_untouched = !begun.drifted && begun.changes == sqlite3_total_changes64(db) &&
                        begun.data_version == data_version;
  // A migration rebuilds the metadata tables, which SQLite cannot do under
  // a running statement; failing there would undo the alter and abort
  // every running statement. Refuse first, leaving the alter open.
  if (OtherStatementRuns(db)) {
    TableSchema now;
    CRSYNC_RETURN_IF_ERROR(LoadTableSchema(db, name, &now));
    if (!(rows_untouched && IsAppendOnly(crr->schema(), now))) {
      return Status::FailedPrecondition(
          "crsql - crsql_commit_alter(" + QuoteLiteral(name) +
          "): another statement of this connection is "
          "still running: finish or reset it, then call crsql_commit_alter again (the alter "
          "stays open; SQLite cannot rebuild " +
          name + "'s metadata under a running statement)");
    }
  }
  const std::string begin_sp = AlterSavepoint(crr->id());
  // (A savepoint refused, say under a running write statement, leaves the
  // alter open and this connection's.)
  CRSYNC_RETURN_IF_ERROR(Exec(db, std::string("SAVEPOINT ") + kCommitSavepoint));
  e->open_alters().erase(open);

  int64_t d = 0, unrecorded_deletes = 0, unrecorded_inserts = 0;
  auto body = [&]() -> Status {
    CRSYNC_RETURN_IF_ERROR(JoinForCatalogChange(e));  // as in BeginAlter
    TableSchema schema;
    CRSYNC_RETURN_IF_ERROR(LoadTableSchema(db, name, &schema));
    CRSYNC_RETURN_IF_ERROR(CheckCrrEligible(db, schema));
    CRSYNC_RETURN_IF_ERROR(e->CommittedDbVersion(&d));
    // Fast path: only columns appended and no row written since begin. Every
    // existing row then holds each new column's default, so nothing needs a
    // clock (§14.3.2 d) and no row is read.
    if (!(rows_untouched && IsAppendOnly(crr->schema(), schema))) {
      Migration m(e, *crr, schema, d);
      CRSYNC_RETURN_IF_ERROR(m.Run());
      unrecorded_deletes = m.unrecorded_deletes();
      unrecorded_inserts = m.unrecorded_inserts();
    }
    StmtPtr up;
    CRSYNC_RETURN_IF_ERROR(
        Prepare(db, "UPDATE main.crsync_crrs SET pk_cols = ?1, cols = ?2 WHERE id = ?3", &up));
    std::string pks = PackNames(schema.pk_cols), cols = PackNames(schema.cols);
    sqlite3_bind_blob(up.get(), 1, pks.data(), static_cast<int>(pks.size()), SQLITE_STATIC);
    sqlite3_bind_blob(up.get(), 2, cols.data(), static_cast<int>(cols.size()), SQLITE_STATIC);
    sqlite3_bind_int64(up.get(), 3, crr->id());
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db, up.get()));
    CRSYNC_RETURN_IF_ERROR(Exec(db, "DELETE FROM main.crsql_master WHERE key = " +
                                        QuoteLiteral(OpenAlterKey(crr->id()))));
    CRSYNC_RETURN_IF_ERROR(Exec(
        db, "INSERT OR REPLACE INTO main.crsql_master(key, value) VALUES ('pre_compact_dbversion', "
            "max(" + std::to_string(d) + ", coalesce((SELECT value FROM main.crsql_master WHERE key = "
            "'pre_compact_dbversion'), 0)))"));
    CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh(true));
    Crr* fresh = e->catalog().ByName(name);
    if (!fresh) return Status::Corruption("CRR vanished during the alter");
    int64_t tag;
    CRSYNC_RETURN_IF_ERROR(e->TagForTriggers(&tag));
    return InstallRecorderTriggers(db, *fresh, tag, "crsql_commit_alter(" + name + ")");
  };
  Status s = body();
  e->catalog().Invalidate();
  e->CatalogChanged();
  if (s.ok()) s = Exec(db, std::string("RELEASE ") + kCommitSavepoint);
  if (s.ok()) {
    // begin_alter's savepoint, unless the caller's COMMIT (or the release
    // of an enclosing savepoint) already ended it.
    Exec(db, "RELEASE " + begin_sp).IgnoreError();
    // A rollback of the enclosing transaction would open the alter again.
    if (!sqlite3_get_autocommit(db)) e->committed_alters().emplace_back(name, begun);
    WarnOfUnrecordedWrites(db, name, d, unrecorded_deletes, unrecorded_inserts);
    return s;
  }
  Exec(db, std::string("ROLLBACK TO ") + kCommitSavepoint + "; RELEASE " + kCommitSavepoint)
      .IgnoreError();
  e->catalog().Invalidate();
  if (!Exec(db, "ROLLBACK TO " + begin_sp + "; RELEASE " + begin_sp).ok()) {
    // begin_alter's work was committed: it cannot be undone, so the alter
    // stays open for another try.
    e->open_alters()[name] = begun;
    const int rc = s.sqlite_code() & 0xff;
    const std::string then = rc == SQLITE_BUSY || rc == SQLITE_LOCKED
                                 ? "call crsql_commit_alter(" + QuoteLiteral(name) +
                                       ") again when the database is free (outside a "
                                       "transaction that read before another connection wrote)"
                                 : "fix the table and call crsql_commit_alter(" +
                                       QuoteLiteral(name) + ") again";
    return Status::InvalidArgument("failed compacting tables post alteration: " + s.message() +
                                   " (the transaction that began the alter has ended, so the "
                                   "alter stays open: " + then + ")");
  }
  e->catalog().Invalidate();
  return Status::InvalidArgument("failed compacting tables post alteration: " + s.message());
}

}  // namespace crsync
