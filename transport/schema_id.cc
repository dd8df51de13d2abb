// transport/schema_id.cc — what a node says of its CRR schemas in the
// handshake (see schema_id.h).
#include "transport/schema_id.h"

#include <xxhash.h>

#include "crsync/sqlite_handles.h"

namespace crsync {

namespace {

// The affinity SQLite gives a column of declared type p.type (its rules,
// "Determination Of Column Affinity"), as one letter; in a STRICT table a
// column declared ANY has none. `c.name` is the CRR's table.
#define CRSYNC_AFFINITY_SQL                                                                    \
  "CASE WHEN upper(p.type) = 'ANY' AND (SELECT s.strict FROM pragma_table_list(c.name) AS s "  \
  "WHERE s.schema = 'main') THEN 'b' "                                                         \
  "WHEN instr(upper(p.type), 'INT') THEN 'i' "                                                 \
  "WHEN instr(upper(p.type), 'CHAR') OR instr(upper(p.type), 'CLOB') OR "                      \
  "instr(upper(p.type), 'TEXT') THEN 't' "                                                     \
  "WHEN p.type = '' OR instr(upper(p.type), 'BLOB') THEN 'b' "                                 \
  "WHEN instr(upper(p.type), 'REAL') OR instr(upper(p.type), 'FLOA') OR "                      \
  "instr(upper(p.type), 'DOUB') THEN 'r' ELSE 'n' END"

// Per CRR: its name, its key columns in key order (the packed pk depends on
// it), and its other columns as recorded, sorted by name (changes name
// their column, so the order is the table's own business), each with its
// declared default (backfills and alters leave a value equal to the
// default without a clock, so nodes with different defaults would differ
// silently). "No default" and DEFAULT NULL are one; other defaults compare
// as SQLite keeps their text, so `1` and `1.0` differ (a loud mismatch,
// never a silent one). Every column's affinity counts too: a TEXT column
// keeps '1.0' as sent where a NUMERIC one stores 1, and a key's affinity
// decides which row a pk names, so those nodes would also differ silently.
// (The declared type's own text does not count: VARCHAR(10) and TEXT are
// one affinity.) The names are sorted by the subquery's ORDER BY, which
// SQLite keeps for group_concat over it (3.40 has no ORDER BY inside an
// aggregate); crsql_unpack_columns yields the key in key order.
constexpr char kFingerprintSql[] =
    "SELECT c.name, c.pk_cols, (SELECT group_concat(n || char(30) || d || char(30) || a, char(31)) "
    "FROM (SELECT u.cell AS n, ifnull((SELECT CASE WHEN upper(p.dflt_value) = 'NULL' THEN NULL "
    "ELSE p.dflt_value END FROM pragma_table_info(c.name, 'main') AS p WHERE p.name = u.cell), "
    "'') AS d, ifnull((SELECT " CRSYNC_AFFINITY_SQL " FROM pragma_table_info(c.name, 'main') AS p "
    "WHERE p.name = u.cell), '') AS a FROM crsql_unpack_columns(c.cols) AS u ORDER BY n)), "
    "(SELECT group_concat(ifnull((SELECT " CRSYNC_AFFINITY_SQL " FROM pragma_table_info(c.name, "
    "'main') AS p WHERE p.name = k.cell), '-'), '') FROM crsql_unpack_columns(c.pk_cols) AS k) "
    "FROM main.crsync_crrs AS c ORDER BY c.name";

#undef CRSYNC_AFFINITY_SQL

}  // namespace

Status SchemaFingerprint(sqlite3* db, uint64_t* out) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db, kFingerprintSql, &st));
  XXH3_state_t* state = XXH3_createState();
  if (!state) return Status::Sqlite(SQLITE_NOMEM, "out of memory");
  XXH3_64bits_reset(state);
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    for (int i = 0; i < 4; ++i) {
      uint32_t n = static_cast<uint32_t>(sqlite3_column_bytes(st.get(), i));
      XXH3_64bits_update(state, &n, sizeof n);
      XXH3_64bits_update(state, sqlite3_column_blob(st.get(), i), n);
    }
  }
  *out = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  if (rc != SQLITE_DONE) return SqliteError(db, rc);
  return Status::OK();
}

Status SchemaSummary(sqlite3* db, std::string* out) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db,
      "SELECT c.name || '(' || ifnull((SELECT group_concat(n, ', ') FROM "
      "(SELECT k.cell || ifnull((SELECT ' ' || p.type FROM pragma_table_info(c.name, 'main') AS p "
      "WHERE p.name = k.cell AND p.type != ''), '') AS n FROM crsql_unpack_columns(c.pk_cols) AS k "
      "UNION ALL SELECT u.cell || ifnull((SELECT ' ' || p.type FROM pragma_table_info(c.name, "
      "'main') AS p WHERE p.name = u.cell AND p.type != ''), '') || ifnull(' DEFAULT ' || (SELECT "
      "p.dflt_value FROM pragma_table_info(c.name, 'main') AS p WHERE p.name = u.cell AND "
      "upper(p.dflt_value) != 'NULL'), '') FROM crsql_unpack_columns(c.cols) AS u)), '') || ')' "
      "FROM main.crsync_crrs AS c ORDER BY c.name",
      &st));
  out->clear();
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0));
    if (!out->empty()) *out += ", ";
    *out += t ? t : "?";
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc);
  if (out->empty()) *out = "no CRR";
  if (out->size() > 600) *out = out->substr(0, 600) + "...";
  return Status::OK();
}

}  // namespace crsync
