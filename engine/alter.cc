#include "engine/alter.h"

#include <map>
#include <vector>

#include "crsync/sqlite_handles.h"
#include "engine/crr_admin.h"
#include "engine/packed.h"
#include "engine/recorder.h"
#include "engine/row_meta.h"

namespace crsync {
namespace {

constexpr char kSavepoint[] = "crsync_alter";

// Open alters: table name (as declared) -> total_changes when it began, to
// tell "only columns were added, no row changed" (the fast path).
std::map<std::pair<sqlite3*, std::string>, sqlite3_int64>& OpenAlters() {
  static auto* m = new std::map<std::pair<sqlite3*, std::string>, sqlite3_int64>();
  return *m;
}

bool IsAppendOnly(const TableSchema& before, const TableSchema& after) {
  if (before.pk_cols != after.pk_cols || after.cols.size() < before.cols.size()) return false;
  for (size_t i = 0; i < before.cols.size(); ++i)
    if (before.cols[i] != after.cols[i]) return false;
  return true;
}

// The value each column of `schema` takes by default (NULL without one).
Status DefaultValues(sqlite3* db, const TableSchema& schema, std::vector<Value>* out) {
  out->clear();
  for (const std::string& sql : schema.col_default_sql) {
    if (sql.empty()) {
      out->push_back(Value::Null());
      continue;
    }
    StmtPtr st;
    CRSYNC_RETURN_IF_ERROR(Prepare(db, "SELECT " + sql, &st));
    if (sqlite3_step(st.get()) != SQLITE_ROW) return SqliteError(db, sqlite3_errcode(db));
    out->push_back(Value::FromColumn(st.get(), 0));
  }
  return Status::OK();
}

bool SameValue(sqlite3_value* v, const Value& d) {
  return sqlite3_value_type(v) == d.type && CompareValue(v, d) == 0;
}

class Migration {
 public:
  Migration(ConnEngine* e, const Crr& old, TableSchema schema, int64_t d)
      : e_(e), db_(e->db()), old_(old.schema()), crr_(e->db(), old.id(), std::move(schema)), d_(d) {}

  Status Run() {
    if (old_.pk_cols != crr_.schema().pk_cols) {
      // A new primary key: every identity changed. Start over at D; all
      // tombstones and col_versions are lost (§14.3.1).
      CRSYNC_RETURN_IF_ERROR(Exec(db_, "DELETE FROM main." + crr_.RowsTable() +
                                           "; DELETE FROM main." + crr_.FeedTable()));
      return BackfillNewRows();
    }
    CRSYNC_RETURN_IF_ERROR(DefaultValues(db_, crr_.schema(), &defaults_));
    CRSYNC_RETURN_IF_ERROR(RemapKnownRows());
    return BackfillNewRows();
  }

 private:
  // §14.3.2 (a)-(c) and the known-row half of (d), in pk-ordered chunks so
  // memory stays bounded.
  Status RemapKnownRows() {
    std::vector<int> new_slot(old_.cols.size(), -1);
    for (size_t i = 0; i < old_.cols.size(); ++i) new_slot[i] = crr_.SlotOf(old_.cols[i]);
    StmtPtr chunk, user;
    CRSYNC_RETURN_IF_ERROR(Prepare(db_, "SELECT pk, meta FROM main." + crr_.RowsTable() +
                                            " WHERE pk > ?1 ORDER BY pk LIMIT 512",
                                   &chunk));
    std::string cols = "1";
    for (const auto& c : crr_.schema().cols) cols += ", " + QuoteIdent(c);
    CRSYNC_RETURN_IF_ERROR(Prepare(db_, "SELECT " + cols + " FROM main." + QuoteIdent(crr_.name()) +
                                            " WHERE " + crr_.PkWhere(1),
                                   &user));
    std::string last;  // '' sorts before every packed pk
    std::vector<std::pair<std::string, std::string>> rows;
    for (;;) {
      rows.clear();
      sqlite3_bind_blob(chunk.get(), 1, last.data(), static_cast<int>(last.size()), SQLITE_STATIC);
      int rc;
      while ((rc = sqlite3_step(chunk.get())) == SQLITE_ROW) {
        auto col = [&](int i) {
          return std::string(static_cast<const char*>(sqlite3_column_blob(chunk.get(), i)),
                             static_cast<size_t>(sqlite3_column_bytes(chunk.get(), i)));
        };
        rows.emplace_back(col(0), col(1));
      }
      sqlite3_reset(chunk.get());
      if (rc != SQLITE_DONE) return SqliteError(db_, rc);
      if (rows.empty()) return Status::OK();
      last = rows.back().first;
      for (const auto& [pk, blob] : rows) {
        CRSYNC_RETURN_IF_ERROR(RemapRow(pk, blob, new_slot, user.get()));
      }
    }
  }

  Status RemapRow(const std::string& pk, const std::string& blob, const std::vector<int>& new_slot,
                  sqlite3_stmt* user) {
    RowMeta before, after;
    CRSYNC_RETURN_IF_ERROR(DecodeRowMeta(blob, old_.cols.size(), &before));
    after.sentinel = before.sentinel;
    after.cols.assign(crr_.slots(), Clock{});
    for (size_t i = 0; i < before.cols.size(); ++i) {
      if (before.cols[i].present && new_slot[i] >= 0) after.cols[new_slot[i]] = before.cols[i];
    }
    std::vector<Value> pkv;
    CRSYNC_RETURN_IF_ERROR(UnpackValues(pk, &pkv));
    for (size_t k = 0; k < pkv.size(); ++k) pkv[k].Bind(user, static_cast<int>(k + 1));
    int rc = sqlite3_step(user);
    bool exists = rc == SQLITE_ROW;
    if (!exists && rc != SQLITE_DONE) {
      sqlite3_reset(user);
      return SqliteError(db_, rc);
    }
    if (!exists) {
      // (b) the row is gone: drop its column clocks and a live sentinel;
      // a tombstone stays.
      for (Clock& c : after.cols) c = Clock{};
      if (after.sentinel.present && after.sentinel.col_version % 2 == 1) after.sentinel = Clock{};
    } else {
      // (d) for a known row, a clock for a column that has none is made only
      // when its value differs from the column's default.
      for (size_t j = 0; j < after.cols.size(); ++j) {
        if (after.cols[j].present) continue;
        if (SameValue(sqlite3_column_value(user, static_cast<int>(j + 1)), defaults_[j])) continue;
        after.cols[j] = Clock{true, 1, d_, e_->TakeSeq(), 0, 0};
      }
    }
    sqlite3_reset(user);
    // Re-encode only what changed.
    RowMeta old_view = before;
    old_view.cols.resize(std::max(before.cols.size(), after.cols.size()));
    bool same = old_.cols == crr_.schema().cols;
    std::string encoded_after, encoded_before;
    RowMeta norm = after;
    NormalizeRuns(&norm);
    EncodeRowMeta(norm, &encoded_after);
    if (same && encoded_after == blob) return Status::OK();
    if (norm.Empty()) {
      // (c) nothing left: forget the row.
      StmtPtr del;
      CRSYNC_RETURN_IF_ERROR(Prepare(db_, "DELETE FROM main." + crr_.RowsTable() + " WHERE pk = ?1", &del));
      sqlite3_bind_blob(del.get(), 1, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
      CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, del.get()));
      StmtPtr feed;
      CRSYNC_RETURN_IF_ERROR(Prepare(db_, "DELETE FROM main." + crr_.FeedTable() + " WHERE pk = ?1", &feed));
      sqlite3_bind_blob(feed.get(), 1, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
      return StepToEnd(db_, feed.get());
    }
    return crr_.StoreMeta(pk, before, std::move(after));
  }

  // Rows of T without metadata get full metadata at D (§14.3.2 d, §14.3.1).
  Status BackfillNewRows() {
    std::string cols;
    for (size_t i = 0; i < crr_.schema().pk_cols.size(); ++i)
      cols += std::string(i ? ", " : "") + QuoteIdent(crr_.schema().pk_cols[i]);
    StmtPtr scan;
    CRSYNC_RETURN_IF_ERROR(Prepare(
        db_, "SELECT " + cols + " FROM main." + QuoteIdent(crr_.name()) + " ORDER BY " + cols, &scan));
    int npk = static_cast<int>(crr_.schema().pk_cols.size());
    std::vector<sqlite3_value*> pk(npk);
    std::string key;
    int rc;
    while ((rc = sqlite3_step(scan.get())) == SQLITE_ROW) {
      for (int i = 0; i < npk; ++i) pk[i] = sqlite3_column_value(scan.get(), i);
      key.clear();
      PackValues(pk.data(), npk, &key);
      RowMeta meta;
      meta.cols.assign(crr_.slots(), Clock{});
      int64_t seq = e_->PeekSeq();
      if (crr_.slots() == 0) {
        meta.sentinel = Clock{true, 1, d_, seq++, 0, 0};
      } else {
        for (Clock& c : meta.cols) c = Clock{true, 1, d_, seq++, 0, 0};
      }
      bool inserted;
      CRSYNC_RETURN_IF_ERROR(crr_.InsertNewMeta(key, std::move(meta), &inserted));
      if (inserted) {
        while (e_->PeekSeq() < seq) e_->TakeSeq();
      }
    }
    if (rc != SQLITE_DONE) return SqliteError(db_, rc);
    return Status::OK();
  }

  ConnEngine* e_;
  sqlite3* db_;
  TableSchema old_;
  Crr crr_;  // the CRR under its new schema
  int64_t d_;
  std::vector<Value> defaults_;
};

}  // namespace

Status BeginAlter(ConnEngine* e, const std::string& table) {
  CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh());
  Crr* crr = e->catalog().ByName(table);
  if (!crr) return Status::InvalidArgument("crsql - " + table + " is not a CRR");
  std::string name = crr->name();
  CRSYNC_RETURN_IF_ERROR(Exec(e->db(), std::string("SAVEPOINT ") + kSavepoint));
  Status s = Exec(e->db(), DropRecorderTriggersSql(name));
  if (!s.ok()) {
    Exec(e->db(), std::string("ROLLBACK TO ") + kSavepoint + "; RELEASE " + kSavepoint).IgnoreError();
    return s;
  }
  OpenAlters()[{e->db(), name}] = sqlite3_total_changes64(e->db());
  return Status::OK();
}

Status CommitAlter(ConnEngine* e, const std::string& table) {
  sqlite3* db = e->db();
  CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh(true));
  Crr* crr = e->catalog().ByName(table);
  if (!crr) return Status::InvalidArgument("crsql - " + table + " is not a CRR");
  std::string name = crr->name();
  auto open = OpenAlters().find({db, name});
  if (open == OpenAlters().end()) {
    return Status::InvalidArgument("crsql - crsql_commit_alter('" + name +
                                   "') without crsql_begin_alter on this connection");
  }
  bool rows_untouched = open->second == sqlite3_total_changes64(db);
  OpenAlters().erase(open);

  auto body = [&]() -> Status {
    TableSchema schema;
    CRSYNC_RETURN_IF_ERROR(LoadTableSchema(db, name, &schema));
    CRSYNC_RETURN_IF_ERROR(CheckCrrEligible(db, schema));
    int64_t d;
    CRSYNC_RETURN_IF_ERROR(e->CommittedDbVersion(&d));
    // Fast path: only columns appended and no row written since begin. Every
    // existing row then holds each new column's default, so nothing needs a
    // clock (§14.3.2 d) and no row is read.
    if (!(rows_untouched && IsAppendOnly(crr->schema(), schema))) {
      Migration m(e, *crr, schema, d);
      CRSYNC_RETURN_IF_ERROR(m.Run());
    }
    StmtPtr up;
    CRSYNC_RETURN_IF_ERROR(
        Prepare(db, "UPDATE main.crsync_crrs SET pk_cols = ?1, cols = ?2 WHERE id = ?3", &up));
    std::string pks = PackNames(schema.pk_cols), cols = PackNames(schema.cols);
    sqlite3_bind_blob(up.get(), 1, pks.data(), static_cast<int>(pks.size()), SQLITE_STATIC);
    sqlite3_bind_blob(up.get(), 2, cols.data(), static_cast<int>(cols.size()), SQLITE_STATIC);
    sqlite3_bind_int64(up.get(), 3, crr->id());
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db, up.get()));
    CRSYNC_RETURN_IF_ERROR(Exec(
        db, "INSERT OR REPLACE INTO main.crsql_master(key, value) VALUES ('pre_compact_dbversion', "
            "max(" + std::to_string(d) + ", coalesce((SELECT value FROM main.crsql_master WHERE key = "
            "'pre_compact_dbversion'), 0)))"));
    CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh(true));
    Crr* fresh = e->catalog().ByName(name);
    if (!fresh) return Status::Corruption("CRR vanished during the alter");
    return Exec(db, DropRecorderTriggersSql(name) + RecorderTriggersSql(*fresh));
  };
  Status s = body();
  e->catalog().Invalidate();
  e->CatalogChanged();
  if (s.ok()) {
    s = Exec(db, std::string("RELEASE ") + kSavepoint);
    if (s.ok()) return s;
  }
  Exec(db, std::string("ROLLBACK TO ") + kSavepoint + "; RELEASE " + kSavepoint).IgnoreError();
  e->catalog().Invalidate();
  return Status::InvalidArgument("failed compacting tables post alteration: " + s.message());
}

}  // namespace crsync
