// tests/engine/sync_util.h — moving crsql_changes rows between test databases.
#ifndef CRSYNC_TESTS_ENGINE_SYNC_UTIL_H_
#define CRSYNC_TESTS_ENGINE_SYNC_UTIL_H_

#include <string>
#include <vector>

#include "crsync/engine.h"
#include "engine/value.h"
#include "tests/test_util.h"

namespace crsync {

// One change row as selected with all nine columns.
using ChangeRow = std::vector<Value>;

inline std::vector<ChangeRow> ReadChanges(sqlite3* db, const std::string& where = "") {
  std::vector<ChangeRow> out;
  StmtPtr st;
  Status s = Prepare(db,
                     "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq "
                     "FROM crsql_changes " +
                         where,
                     &st);
  EXPECT_OK(s);
  if (!s.ok()) return out;
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    ChangeRow row;
    for (int i = 0; i < 9; ++i) row.push_back(Value::FromColumn(st.get(), i));
    out.push_back(std::move(row));
  }
  return out;
}

// Inserts `rows` into db's crsql_changes, with all nine columns (`nine`) or
// the seven visible ones. Returns the first error.
inline Status ApplyChanges(sqlite3* db, const std::vector<ChangeRow>& rows, bool nine = true) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db, nine ? "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, "
                 "site_id, cl, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
               : "INSERT INTO crsql_changes VALUES (?, ?, ?, ?, ?, ?, ?)",
      &st));
  for (const ChangeRow& r : rows) {
    for (int i = 0; i < (nine ? 9 : 7); ++i) r[i].Bind(st.get(), i + 1);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db, st.get()));
  }
  return Status::OK();
}

// A 9-column change row as a ChangeApplier Change.
inline Change ToChange(const ChangeRow& r) {
  Change c;
  c.table = r[0].bytes;
  c.pk = r[1].bytes;
  c.cid = r[2].bytes;
  c.val_type = r[3].type;
  c.val_int = r[3].i;
  c.val_real = r[3].d;
  c.val_bytes = r[3].bytes;
  c.col_version = r[4].i;
  c.db_version = r[5].i;
  c.site_id = r[6].bytes;
  c.cl = r[7].i;
  c.seq = r[8].i;
  return c;
}

inline std::vector<Change> ToChanges(const std::vector<ChangeRow>& rows) {
  std::vector<Change> out;
  out.reserve(rows.size());
  for (const ChangeRow& r : rows) out.push_back(ToChange(r));
  return out;
}

// Copies every change of `from` matching `where` into `to`, in one transaction.
inline void Sync(TestDb& from, TestDb& to, const std::string& where = "", bool nine = true) {
  auto rows = ReadChanges(from.get(), where);
  to.Exec("BEGIN");
  EXPECT_OK(ApplyChanges(to.get(), rows, nine));
  to.Exec("COMMIT");
}

}  // namespace crsync

#endif  // CRSYNC_TESTS_ENGINE_SYNC_UTIL_H_
