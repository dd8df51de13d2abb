#include "crsync/sqlite_handles.h"

#include <algorithm>

namespace crsync {

Status SqliteError(sqlite3* db, int rc) {
  if (db == nullptr) return Status::Sqlite(rc, sqlite3_errstr(rc));
  return Status::Sqlite(rc, sqlite3_errmsg(db));
}

Status OpenDb(const std::string& path, int flags, const char* vfs, DbPtr* out) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, vfs);
  DbPtr owned(raw);  // owned before rc is looked at: freed on every path
  if (rc != SQLITE_OK) {
    return SqliteError(raw, rc).WithContext("cannot open " + path);
  }
  sqlite3_extended_result_codes(raw, 1);
  *out = std::move(owned);
  return Status::OK();
}

Status Prepare(sqlite3* db, std::string_view sql, StmtPtr* out, unsigned prep_flags) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), prep_flags, &raw,
                              nullptr);
  StmtPtr owned(raw);
  if (rc != SQLITE_OK) return SqliteError(db, rc);
  if (owned == nullptr) return Status::InvalidArgument("empty SQL statement");
  *out = std::move(owned);
  return Status::OK();
}

Status Exec(sqlite3* db, const std::string& sql) {
  char* raw = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &raw);
  // Owned at once: building the Status below may throw.
  SqliteStr err(raw);
  if (rc == SQLITE_OK) return Status::OK();
  return Status::Sqlite(rc, err ? err.get() : sqlite3_errstr(rc));
}

Status StepToEnd(sqlite3* db, sqlite3_stmt* stmt) {
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) {
    Status s = SqliteError(db, rc);
    sqlite3_reset(stmt);
    return s;
  }
  sqlite3_reset(stmt);
  return Status::OK();
}

static std::string Quote(std::string_view s, char q) {
  std::string out;
  out.reserve(s.size() + 2);
  out += q;
  for (char c : s) {
    out += c;
    if (c == q) out += q;
  }
  out += q;
  return out;
}

std::string QuoteIdent(std::string_view name) { return Quote(name, '"'); }
std::string QuoteLiteral(std::string_view text) { return Quote(text, '\''); }

std::string UnionAll(const std::vector<std::string>& terms) {
  constexpr size_t kChunk = 100;
  std::vector<std::string> chunks;
  for (size_t i = 0; i < terms.size(); i += kChunk) {
    std::string part;
    for (size_t k = i; k < std::min(terms.size(), i + kChunk); ++k) {
      part += (k == i ? "" : " UNION ALL ") + terms[k];
    }
    chunks.push_back(terms.size() <= kChunk ? part : "SELECT * FROM (" + part + ")");
  }
  return chunks.size() == 1 ? chunks[0] : UnionAll(chunks);
}

}  // namespace crsync
