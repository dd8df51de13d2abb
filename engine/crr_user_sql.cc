// engine/crr_user_sql.cc — Crr's statements over the user table itself:
// the upserts, inserts and deletes a merge writes with, and the row read
// for tie-breaks (declared in engine/catalog.h).
#include <string>
#include <vector>

#include "engine/catalog.h"

namespace crsync {

// INSERT INTO t (pk..., columns of `slots`...) <source> ON CONFLICT (pk...)
// DO UPDATE SET each column = excluded.column.
std::string Crr::UpsertSql(const std::vector<int>& slots, const std::string& source) const {
  std::string cols, target, sets;
  for (size_t i = 0; i < schema_.pk_cols.size(); ++i) {
    if (i) target += ", ";
    target += QuoteIdent(schema_.pk_cols[i]);
  }
  cols = target;
  for (size_t k = 0; k < slots.size(); ++k) {
    std::string c = QuoteIdent(schema_.cols[slots[k]]);
    cols += ", " + c;
    if (k) sets += ", ";
    sets += c + " = excluded." + c;
  }
  return "INSERT INTO main." + QuoteIdent(schema_.name) + " (" + cols + ") " + source +
         " ON CONFLICT (" + target + ") DO UPDATE SET " + sets;
}

namespace {

// "VALUES (?1, ?2, ... ?n)"
std::string ValuesOfParams(size_t n) {
  std::string out = "VALUES (";
  for (size_t i = 0; i < n; ++i) out += (i ? ", ?" : "?") + std::to_string(i + 1);
  return out + ")";
}

}  // namespace

Status Crr::UserUpsert(int slot, sqlite3_stmt** out) {
  return Cached(&user_upsert_[slot], [&] {
    return UpsertSql({slot}, ValuesOfParams(schema_.pk_cols.size() + 1));
  }, out);
}

Status Crr::UserUpsertColumns(const std::vector<int>& slots, sqlite3_stmt** out) {
  return Cached(&user_upsert_multi_[slots], [&] {
    return UpsertSql(slots, ValuesOfParams(schema_.pk_cols.size() + slots.size()));
  }, out);
}

Status Crr::UserUpsertBulk(const std::vector<int>& slots, sqlite3_stmt** out) {
  return Cached(&user_upsert_bulk_[slots], [&] {
    std::string vals;
    for (size_t i = 0; i < schema_.pk_cols.size() + slots.size(); ++i)
      vals += (i ? ", v" : "v") + std::to_string(i);
    // WHERE true: an upsert after INSERT ... SELECT needs it to parse.
    return UpsertSql(slots, "SELECT " + vals + " FROM crsync_valbuf(?1) WHERE true");
  }, out);
}

Status Crr::UserInsertPk(sqlite3_stmt** out) {
  std::string cols, params;
  for (size_t i = 0; i < schema_.pk_cols.size(); ++i) {
    cols += std::string(i ? ", " : "") + QuoteIdent(schema_.pk_cols[i]);
    params += std::string(i ? ", ?" : "?") + std::to_string(i + 1);
  }
  return Cached(&user_insert_pk_, [&] {
    return "INSERT INTO main." + QuoteIdent(schema_.name) + " (" + cols + ") VALUES (" + params +
           ") ON CONFLICT DO NOTHING";
  }, out);
}

Status Crr::UserDelete(sqlite3_stmt** out) {
  return Cached(&user_delete_, [&] {
    return "DELETE FROM main." + QuoteIdent(schema_.name) + " WHERE " + PkWhere(1);
  }, out);
}

Status Crr::UserColumnValue(std::string_view key, const std::vector<Value>& pk, int slot,
                           bool keep, const Value** out) {
  if (!row_valid_ || row_pk_ != key) {
    row_valid_ = false;
    sqlite3_stmt* st = nullptr;
    CRSYNC_RETURN_IF_ERROR(Cached(&user_get_row_, [&] {
      std::string cols;
      for (const std::string& c : schema_.cols) cols += (cols.empty() ? "" : ", ") + QuoteIdent(c);
      return "SELECT " + cols + " FROM main." + QuoteIdent(schema_.name) + " WHERE " + PkWhere(1);
    }, &st));
    for (size_t i = 0; i < pk.size(); ++i) pk[i].Bind(st, static_cast<int>(i + 1));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      row_vals_.resize(schema_.cols.size());
      for (size_t i = 0; i < row_vals_.size(); ++i)
        row_vals_[i] = Value::FromColumn(st, static_cast<int>(i));
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) return Status::Corruption("could not find row to merge with for tbl " + name());
    if (rc != SQLITE_ROW) return SqliteError(db_, rc);
    row_pk_.assign(key.data(), key.size());
  }
  row_valid_ = keep;
  *out = &row_vals_[static_cast<size_t>(slot)];
  return Status::OK();
}

Status Crr::UserRowExists(const std::vector<Value>& pk, bool* out) {
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&user_row_exists_, [&] {
    return "SELECT 1 FROM main." + QuoteIdent(schema_.name) + " WHERE " + PkWhere(1);
  }, &st));
  for (size_t i = 0; i < pk.size(); ++i) pk[i].Bind(st, static_cast<int>(i + 1));
  const int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db_, rc);
  *out = rc == SQLITE_ROW;
  return Status::OK();
}

}  // namespace crsync
