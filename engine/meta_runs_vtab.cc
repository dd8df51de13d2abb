// The table-valued function crsync_meta_runs(meta): one row (dbv, lo) per
// change-feed run of an encoded metadata blob (docs/storage.md). It lets a
// statement rebuild a CRR's feed from its rows table in one pass, as
// crsql_commit_alter does after remapping every row.
#include <string_view>
#include <vector>

#include "common/guard.h"
#include "engine/functions.h"
#include "engine/row_meta.h"
#include "engine/vtab_util.h"

namespace crsync {
namespace {

struct RunsCursor {
  sqlite3_vtab_cursor base{};
  std::vector<FeedRun> runs;
  size_t pos = 0;
};

constexpr char kSchema[] = "CREATE TABLE x(dbv INTEGER, lo INTEGER, meta BLOB HIDDEN)";

int BestIndex(sqlite3_vtab*, sqlite3_index_info* info) { return BestIndexOneArgument(info, 2); }

int Filter(sqlite3_vtab_cursor* cur, int idx_num, const char*, int argc, sqlite3_value** argv) {
  auto* c = reinterpret_cast<RunsCursor*>(cur);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    c->runs.clear();
    c->pos = 0;
    if (!idx_num || argc < 1) return SQLITE_OK;
    std::string_view blob(static_cast<const char*>(sqlite3_value_blob(argv[0])),
                          static_cast<size_t>(sqlite3_value_bytes(argv[0])));
    Status s = BlobFeedRuns(blob, &c->runs);
    if (!s.ok()) {
      cur->pVtab->zErrMsg = sqlite3_mprintf("crsync_meta_runs: %s", s.message().c_str());
      return SQLITE_CORRUPT;
    }
    return SQLITE_OK;
  });
}

int Eof(sqlite3_vtab_cursor* cur) {
  auto* c = reinterpret_cast<RunsCursor*>(cur);
  return c->pos >= c->runs.size();
}

int Column(sqlite3_vtab_cursor* cur, sqlite3_context* ctx, int col) {
  auto* c = reinterpret_cast<RunsCursor*>(cur);
  const FeedRun& r = c->runs[c->pos];
  if (col == 0) sqlite3_result_int64(ctx, r.first);
  else if (col == 1) sqlite3_result_int64(ctx, r.second);
  else sqlite3_result_null(ctx);
  return SQLITE_OK;
}

sqlite3_module MakeModule() {
  sqlite3_module m = EponymousModule<sqlite3_vtab, RunsCursor>(
      ConnectPlainTable<kSchema, SQLITE_VTAB_INNOCUOUS>, BestIndex, Filter, NextPos<RunsCursor>, Eof, Column,
      RowidIsPos<RunsCursor>);
  m.xDestroy = m.xDisconnect;
  return m;
}

const sqlite3_module kModule = MakeModule();

}  // namespace

int RegisterMetaRuns(sqlite3* db) {
  return sqlite3_create_module_v2(db, "crsync_meta_runs", &kModule, nullptr, nullptr);
}

}  // namespace crsync
