// The table-valued function crsql_unpack_columns(blob): one row per packed
// value, column `cell` (crr-semantics §9.3).
#include <string>
#include <vector>

#include "common/guard.h"
#include "engine/vtab_util.h"
#include "engine/functions.h"
#include "engine/packed.h"

namespace crsync {
namespace {

struct UnpackCursor {
  sqlite3_vtab_cursor base{};
  std::vector<Value> cells;
  size_t pos = 0;
};

constexpr char kSchema[] = "CREATE TABLE x(cell ANY, package BLOB HIDDEN)";

int BestIndex(sqlite3_vtab*, sqlite3_index_info* info) { return BestIndexOneArgument(info, 1); }

int Filter(sqlite3_vtab_cursor* cur, int idx_num, const char*, int argc, sqlite3_value** argv) {
  auto* c = reinterpret_cast<UnpackCursor*>(cur);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    c->cells.clear();
    c->pos = 0;
    if (!idx_num || argc < 1) return SQLITE_OK;
    // `package = NULL` is true of nothing, as everywhere in SQL.
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return SQLITE_OK;
    if (sqlite3_value_type(argv[0]) != SQLITE_BLOB) {
      cur->pVtab->zErrMsg = sqlite3_mprintf("crsql_unpack_columns expects a packed BLOB");
      return SQLITE_ERROR;
    }
    std::string_view blob(static_cast<const char*>(sqlite3_value_blob(argv[0])),
                          static_cast<size_t>(sqlite3_value_bytes(argv[0])));
    Status s = UnpackValues(blob, &c->cells);
    if (!s.ok()) {
      cur->pVtab->zErrMsg = sqlite3_mprintf("crsql_unpack_columns: %s", s.message().c_str());
      return SQLITE_ERROR;
    }
    return SQLITE_OK;
  });
}

int Eof(sqlite3_vtab_cursor* cur) {
  auto* c = reinterpret_cast<UnpackCursor*>(cur);
  return c->pos >= c->cells.size();
}

int Column(sqlite3_vtab_cursor* cur, sqlite3_context* ctx, int col) {
  auto* c = reinterpret_cast<UnpackCursor*>(cur);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    if (col == 0) c->cells[c->pos].SetResult(ctx);
    else sqlite3_result_null(ctx);
    return SQLITE_OK;
  });
}

sqlite3_module MakeModule() {
  sqlite3_module m = EponymousModule<sqlite3_vtab, UnpackCursor>(
      ConnectPlainTable<kSchema, SQLITE_VTAB_INNOCUOUS>, BestIndex, Filter, NextPos<UnpackCursor>, Eof, Column,
      RowidIsPos<UnpackCursor>);
  m.xDestroy = m.xDisconnect;
  return m;
}

const sqlite3_module kModule = MakeModule();

}  // namespace

int RegisterUnpackColumns(sqlite3* db) {
  return sqlite3_create_module_v2(db, "crsql_unpack_columns", &kModule, nullptr, nullptr);
}

}  // namespace crsync
