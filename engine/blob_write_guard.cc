// engine/blob_write_guard.cc — see blob_write_guard.h.
#include "engine/blob_write_guard.h"

#include "engine/catalog.h"

namespace crsync {

std::string NoBlobWriteIndexName(const std::string& table) { return table + "__crsync_noblob"; }

Status HasNoBlobWriteIndex(sqlite3* db, const std::string& table, bool* has) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                 "SELECT 1 FROM main.sqlite_master WHERE type = 'index' AND name = ?1 "
                                 "COLLATE NOCASE AND tbl_name = ?2 COLLATE NOCASE",
                                 &st));
  const std::string index = NoBlobWriteIndexName(table);
  sqlite3_bind_text(st.get(), 1, index.data(), static_cast<int>(index.size()), SQLITE_STATIC);
  sqlite3_bind_text(st.get(), 2, table.data(), static_cast<int>(table.size()), SQLITE_STATIC);
  const int rc = sqlite3_step(st.get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db, rc);
  *has = rc == SQLITE_ROW;
  return Status::OK();
}

Status EnsureNoBlobWriteIndex(sqlite3* db, const Crr& crr) {
  bool has = false;
  CRSYNC_RETURN_IF_ERROR(HasNoBlobWriteIndex(db, crr.name(), &has));
  if (has) return Status::OK();
  const std::string index = "main." + QuoteIdent(NoBlobWriteIndexName(crr.name()));
  return Exec(db, "DROP INDEX IF EXISTS " + index + "; CREATE INDEX " + index + " ON " +
                      QuoteIdent(crr.name()) + " (+" + QuoteIdent(crr.schema().pk_cols.at(0)) +
                      ") WHERE 0");
}

Status DropNoBlobWriteIndex(sqlite3* db, const std::string& table) {
  return Exec(db, "DROP INDEX IF EXISTS main." + QuoteIdent(NoBlobWriteIndexName(table)));
}

}  // namespace crsync
