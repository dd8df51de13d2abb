// engine/table_schema.h — what crsync needs to know about a user table, and
// the CRR eligibility rules of crr-semantics §4.2.
#ifndef CRSYNC_ENGINE_TABLE_SCHEMA_H_
#define CRSYNC_ENGINE_TABLE_SCHEMA_H_

#include <sqlite3.h>

#include <string>
#include <vector>

#include "crsync/status.h"

namespace crsync {

struct TableSchema {
  std::string name;                   // as declared in sqlite_master
  std::vector<std::string> pk_cols;   // in PRIMARY KEY order (§9.1)
  std::vector<std::string> cols;      // non-PK, non-generated, in table order
  std::vector<bool> col_notnull;      // per entry of `cols`
  std::vector<std::string> col_default_sql;  // per entry of `cols`; "" = none
};

// Reads the schema of table `name` in `main`. Fails with a clear message when
// the table does not exist or is not an ordinary table (E1).
Status LoadTableSchema(sqlite3* db, const std::string& name, TableSchema* out);

// Only the column part of LoadTableSchema, for the table `schema->name`
// (as declared), appended to *schema; no checks. A table that does not
// exist has no columns.
Status LoadColumns(sqlite3* db, TableSchema* schema);

// The name of a UNIQUE index of main table `table` other than its primary
// key (§4.2 E2), or "" if it has none.
Status UniqueIndexBesidesPk(sqlite3* db, const std::string& table, std::string* name);

// Runs checks E2..E8 of §4.2 on a loaded table, in order; the first failure
// is reported with the table's name.
Status CheckCrrEligible(sqlite3* db, const TableSchema& schema);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_TABLE_SCHEMA_H_
