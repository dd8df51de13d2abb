#include "engine/table_schema.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "crsync/sqlite_handles.h"
#include "engine/recorder.h"

namespace crsync {
namespace {

// True if `sql` (a CREATE TABLE statement) contains the keyword
// AUTOINCREMENT outside quotes and comments.
bool HasAutoincrement(const std::string& sql) {
  size_t i = 0, n = sql.size();
  while (i < n) {
    char c = sql[i];
    if (c == '\'' || c == '"' || c == '`' || c == '[') {
      char close = c == '[' ? ']' : c;
      ++i;
      while (i < n) {
        if (sql[i] == close) {
          if (close != ']' && i + 1 < n && sql[i + 1] == close) {
            i += 2;
            continue;
          }
          break;
        }
        ++i;
      }
      ++i;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      size_t end = sql.find("*/", i + 2);
      i = end == std::string::npos ? n : end + 2;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = i;
      while (i < n && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_')) ++i;
      std::string word = sql.substr(start, i - start);
      std::transform(word.begin(), word.end(), word.begin(),
                     [](unsigned char ch) { return std::toupper(ch); });
      if (word == "AUTOINCREMENT") return true;
    } else {
      ++i;
    }
  }
  return false;
}

}  // namespace

Status LoadTableSchema(sqlite3* db, const std::string& name, TableSchema* out) {
  StmtPtr stmt;
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db, "SELECT type, name, coalesce(sql, '') FROM main.sqlite_master WHERE name = ?1 "
          "COLLATE NOCASE AND type IN ('table', 'view')",
      &stmt));
  sqlite3_bind_text(stmt.get(), 1, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) {
    if (name.empty()) return Status::NotFound("no such table: a table name is needed");
    StmtPtr temp;  // a TEMP table of that name is the likely mix-up: say so
    if (Prepare(db, "SELECT 1 FROM temp.sqlite_master WHERE type = 'table' AND name = ?1 "
                    "COLLATE NOCASE", &temp).ok()) {
      sqlite3_bind_text(temp.get(), 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
      if (sqlite3_step(temp.get()) == SQLITE_ROW) {
        return Status::NotFound("no such table: " + name + " in main (a TEMP table cannot be "
                                "a CRR: only tables of the main schema replicate)");
      }
    }
    return Status::NotFound("no such table: " + name);
  }
  if (rc != SQLITE_ROW) return SqliteError(db, rc);
  std::string type = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 0));
  std::string declared = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 1));
  std::string sql = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 2));
  std::string upper = sql.substr(0, 32);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char ch) { return std::toupper(ch); });
  if (type != "table" || upper.rfind("CREATE VIRTUAL", 0) == 0 ||
      declared.rfind("sqlite_", 0) == 0) {
    return Status::InvalidArgument(declared + " is not an ordinary table");
  }
  std::string lower = declared;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  if (lower.rfind("crsql_", 0) == 0 || lower.rfind("crsync_", 0) == 0 ||
      lower.find("__crsync_") != std::string::npos) {
    return Status::InvalidArgument(declared + " is not an ordinary table: names beginning with "
                                   "crsql_ or crsync_, or containing __crsync_, are the "
                                   "extension's own");
  }
  StmtPtr kind;  // a virtual table's shadow table (FTS5's t_content, ...) is its own
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db, "SELECT type = 'shadow' FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
      &kind));
  sqlite3_bind_text(kind.get(), 1, declared.data(), static_cast<int>(declared.size()),
                    SQLITE_STATIC);
  rc = sqlite3_step(kind.get());
  if (rc == SQLITE_ROW && sqlite3_column_int(kind.get(), 0)) {
    return Status::InvalidArgument(declared + " is not an ordinary table: it is a virtual "
                                              "table's shadow table");
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db, rc);
  TableSchema schema;
  schema.name = declared;
  CRSYNC_RETURN_IF_ERROR(LoadColumns(db, &schema));
  *out = std::move(schema);
  return Status::OK();
}

Status LoadColumns(sqlite3* db, TableSchema* schema) {
  const std::string& declared = schema->name;
  StmtPtr info;
  CRSYNC_RETURN_IF_ERROR(Prepare(db, "SELECT name, type, \"notnull\", dflt_value, pk, hidden "
                                     "FROM pragma_table_xinfo(?1, 'main')",
                                 &info));
  sqlite3_bind_text(info.get(), 1, declared.data(), static_cast<int>(declared.size()),
                    SQLITE_TRANSIENT);
  std::map<int, std::string> pks;
  int rc;
  while ((rc = sqlite3_step(info.get())) == SQLITE_ROW) {
    std::string col = reinterpret_cast<const char*>(sqlite3_column_text(info.get(), 0));
    int notnull = sqlite3_column_int(info.get(), 2);
    const unsigned char* dflt = sqlite3_column_text(info.get(), 3);
    int pk = sqlite3_column_int(info.get(), 4);
    int hidden = sqlite3_column_int(info.get(), 5);
    if (hidden != 0) continue;  // generated columns are recomputed locally
    if (pk > 0) {
      pks[pk] = col;
    } else {
      schema->cols.push_back(col);
      schema->col_notnull.push_back(notnull != 0);
      schema->col_default_sql.push_back(dflt ? reinterpret_cast<const char*>(dflt) : "");
    }
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc);
  for (auto& [ord, col] : pks) schema->pk_cols.push_back(col);
  return Status::OK();
}

Status UniqueIndexBesidesPk(sqlite3* db, const std::string& table, std::string* name) {
  StmtPtr idx;
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db, "SELECT name FROM pragma_index_list(?1, 'main') WHERE \"unique\" AND origin != 'pk' "
          "ORDER BY name LIMIT 1",
      &idx));
  sqlite3_bind_text(idx.get(), 1, table.data(), static_cast<int>(table.size()), SQLITE_TRANSIENT);
  const int rc = sqlite3_step(idx.get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db, rc);
  const unsigned char* n = rc == SQLITE_ROW ? sqlite3_column_text(idx.get(), 0) : nullptr;
  name->assign(n ? reinterpret_cast<const char*>(n) : "");
  return Status::OK();
}

Status CheckCrrEligible(sqlite3* db, const TableSchema& schema) {
  const std::string& t = schema.name;
  // The catalog stores the column lists in the packed format, whose count
  // is one byte.
  if (schema.cols.size() > 255 || schema.pk_cols.size() > 255) {
    return Status::InvalidArgument(
        "crsql - table " + t + " has " + std::to_string(schema.cols.size()) +
        " columns besides its " + std::to_string(schema.pk_cols.size()) +
        "-column primary key; a CRR can have at most 255 of each");
  }
  // The update trigger passes each key column's old and new value, and the
  // other columns' values (or, past SQLite's cap on a call's arguments, a
  // mask per kDiffChunk of them): that call must fit the cap.
  const size_t npk = schema.pk_cols.size(), ncol = schema.cols.size();
  if (DiffMaskedUpdates(npk, ncol)) {
    const size_t masks = (ncol + kDiffChunk - 1) / kDiffChunk;
    if (1 + 2 * npk + masks > kMaxFunctionArgs) {
      return Status::InvalidArgument(
          "crsql - table " + t + " has a " + std::to_string(npk) +
          "-column primary key: crsync's update trigger passes each key column's old and new "
          "value to one function, which SQLite limits to " + std::to_string(kMaxFunctionArgs) +
          " arguments, so with " + std::to_string(ncol) + " other columns a CRR can have at most " +
          std::to_string((kMaxFunctionArgs - 1 - masks) / 2) + " key columns");
    }
  }
  // E2: no UNIQUE index other than the primary key.
  std::string unique;
  CRSYNC_RETURN_IF_ERROR(UniqueIndexBesidesPk(db, t, &unique));
  if (!unique.empty()) {
    return Status::InvalidArgument("Table " + t +
                                   " has unique indices besides the primary key. This is not "
                                   "allowed for CRRs");
  }
  // E3: a declared primary key.
  if (schema.pk_cols.empty()) {
    return Status::InvalidArgument("Table " + t +
                                   " has no primary key. CRRs must have a primary key");
  }
  // E4 is relaxed for this project (§4.2): NULL pk values fail at write time.
  // E5: no AUTOINCREMENT.
  StmtPtr sql;
  CRSYNC_RETURN_IF_ERROR(
      Prepare(db, "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?1", &sql));
  sqlite3_bind_text(sql.get(), 1, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(sql.get()) == SQLITE_ROW && sqlite3_column_text(sql.get(), 0) &&
      HasAutoincrement(reinterpret_cast<const char*>(sqlite3_column_text(sql.get(), 0)))) {
    return Status::InvalidArgument(
        t + " has auto-increment primary keys. This is likely a mistake as two concurrent "
            "nodes will assign unrelated rows the same primary key. Use a random or "
            "site-unique primary key instead");
  }
  // E6: no foreign-key clauses.
  StmtPtr fk;
  CRSYNC_RETURN_IF_ERROR(
      Prepare(db, "SELECT count(*) FROM pragma_foreign_key_list(?1, 'main')", &fk));
  sqlite3_bind_text(fk.get(), 1, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(fk.get()) == SQLITE_ROW && sqlite3_column_int(fk.get(), 0) > 0) {
    return Status::InvalidArgument(
        "Table " + t +
        " has checked foreign key constraints. CRRs may have foreign keys but must not have "
        "checked foreign key constraints as they can be violated by row level security or "
        "replication.");
  }
  // E7: NOT NULL non-PK columns need a DEFAULT.
  for (size_t i = 0; i < schema.cols.size(); ++i) {
    if (schema.col_notnull[i] && schema.col_default_sql[i].empty()) {
      return Status::InvalidArgument("Table " + t + " has a NOT NULL column (" + schema.cols[i] +
                                     ") without a DEFAULT VALUE. This is not allowed for CRRs: "
                                     "a merge may create the row before that column arrives.");
    }
  }
  // E8: "-1" is the sentinel's cid.
  for (const std::string& c : schema.cols) {
    if (c == "-1") {
      return Status::InvalidArgument("Table " + t +
                                     " has a column named -1, which is reserved for the "
                                     "row sentinel of a CRR");
    }
  }
  for (const std::string& c : schema.pk_cols) {
    if (c == "-1") {
      return Status::InvalidArgument("Table " + t +
                                     " has a column named -1, which is reserved for the "
                                     "row sentinel of a CRR");
    }
  }
  // E9 (ours): the key compares as bytes. Replicas identify a row by its
  // packed key; under NOCASE (or RTRIM, or any other collation) 'a' and
  // 'A' would be one row in the table but two rows' clocks, and replicas
  // that wrote both would each keep the other's value.
  StmtPtr coll;
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db,
      "SELECT x.name, x.coll FROM pragma_index_list(?1, 'main') AS l, "
      "pragma_index_xinfo(l.name, 'main') AS x WHERE l.origin = 'pk' AND x.key AND x.cid >= 0 "
      "AND upper(x.coll) != 'BINARY' LIMIT 1",
      &coll));
  sqlite3_bind_text(coll.get(), 1, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(coll.get()) == SQLITE_ROW) {
    auto text = [&](int i) {
      const unsigned char* v = sqlite3_column_text(coll.get(), i);
      return std::string(v ? reinterpret_cast<const char*>(v) : "");
    };
    return Status::InvalidArgument(
        "Table " + t + " has primary key column " + text(0) + " with collation " + text(1) +
        ". A CRR's key must compare as bytes (BINARY): replicas identify rows by the key's "
        "bytes, so keys this collation calls equal would be one row here and two elsewhere");
  }
  return Status::OK();
}

}  // namespace crsync
