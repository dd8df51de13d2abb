// tests/engine/change_api_util.h — what the ChangeReader and ChangeApplier
// tests share: their schema, and a Change as crsql_changes takes it.
#ifndef CRSYNC_TESTS_ENGINE_CHANGE_API_UTIL_H_
#define CRSYNC_TESTS_ENGINE_CHANGE_API_UTIL_H_

#include "crsync/engine.h"
#include "tests/engine/sync_util.h"

namespace crsync {

// Two CRRs: `t` with an integer key and two columns, `u` with a text key.
inline constexpr char kChangeApiSchema[] =
    "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a, b); SELECT crsql_as_crr('t');"
    "CREATE TABLE u (k TEXT PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('u');";

// A Change (TEXT or INTEGER value) as the row INSERT INTO crsql_changes takes.
inline ChangeRow ToRow(const Change& c) {
  return ChangeRow{Value::Text(c.table), Value::Blob(c.pk), Value::Text(c.cid),
                   c.val_type == SQLITE_TEXT ? Value::Text(c.val_bytes) : Value::Int(c.val_int),
                   Value::Int(c.col_version), Value::Int(c.db_version), Value::Blob(c.site_id),
                   Value::Int(c.cl), Value::Int(c.seq)};
}

}  // namespace crsync

#endif  // CRSYNC_TESTS_ENGINE_CHANGE_API_UTIL_H_
