// crsync_rowbuf(pointer): the rows of a RowBuf (engine/row_buf.h).
#include "common/guard.h"
#include "engine/row_buf.h"

namespace crsync {
namespace {

enum Col { kPk, kMeta, kDbv, kLo, kBuf };

struct RowBufCursor {
  sqlite3_vtab_cursor base{};
  const RowBuf* buf = nullptr;
  size_t pos = 0;
};

int Connect(sqlite3* db, void*, int, const char* const*, sqlite3_vtab** out, char**) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    int rc = sqlite3_declare_vtab(
        db, "CREATE TABLE x(pk BLOB, meta BLOB, dbv INTEGER, lo INTEGER, buf HIDDEN)");
    if (rc != SQLITE_OK) return rc;
    sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
    *out = new sqlite3_vtab{};
    return SQLITE_OK;
  });
}

int Disconnect(sqlite3_vtab* v) {
  delete v;
  return SQLITE_OK;
}

int BestIndex(sqlite3_vtab*, sqlite3_index_info* info) {
  for (int i = 0; i < info->nConstraint; ++i) {
    const auto& c = info->aConstraint[i];
    if (c.iColumn != kBuf || c.op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!c.usable) return SQLITE_CONSTRAINT;
    info->aConstraintUsage[i].argvIndex = 1;
    info->aConstraintUsage[i].omit = 1;
    info->idxNum = 1;
    info->estimatedCost = 10;
    return SQLITE_OK;
  }
  info->estimatedCost = 1e12;
  return SQLITE_OK;
}

int Open(sqlite3_vtab*, sqlite3_vtab_cursor** out) {
  return GuardSqliteCall(SQLITE_NOMEM, [&] {
    *out = &(new RowBufCursor)->base;
    return SQLITE_OK;
  });
}

int Close(sqlite3_vtab_cursor* c) {
  delete reinterpret_cast<RowBufCursor*>(c);
  return SQLITE_OK;
}

int Filter(sqlite3_vtab_cursor* cur, int idx_num, const char*, int argc, sqlite3_value** argv) {
  auto* c = reinterpret_cast<RowBufCursor*>(cur);
  c->pos = 0;
  c->buf = idx_num == 1 && argc == 1
               ? static_cast<const RowBuf*>(sqlite3_value_pointer(argv[0], kRowBufPointerType))
               : nullptr;
  return SQLITE_OK;
}

int Next(sqlite3_vtab_cursor* cur) {
  ++reinterpret_cast<RowBufCursor*>(cur)->pos;
  return SQLITE_OK;
}

int Eof(sqlite3_vtab_cursor* cur) {
  auto* c = reinterpret_cast<RowBufCursor*>(cur);
  return !c->buf || c->pos >= c->buf->rows.size();
}

int Column(sqlite3_vtab_cursor* cur, sqlite3_context* ctx, int col) {
  auto* c = reinterpret_cast<RowBufCursor*>(cur);
  const RowBuf::Row& r = c->buf->rows[c->pos];
  // The RowBuf outlives the statement's run: its bytes need no copy.
  switch (col) {
    case kPk:
      sqlite3_result_blob(ctx, r.pk.data(), static_cast<int>(r.pk.size()), SQLITE_STATIC);
      break;
    case kMeta:
      sqlite3_result_blob(ctx, r.meta.data(), static_cast<int>(r.meta.size()), SQLITE_STATIC);
      break;
    case kDbv:
      sqlite3_result_int64(ctx, r.dbv);
      break;
    case kLo:
      sqlite3_result_int64(ctx, r.lo);
      break;
    default:
      sqlite3_result_null(ctx);
  }
  return SQLITE_OK;
}

int Rowid(sqlite3_vtab_cursor* cur, sqlite_int64* out) {
  *out = static_cast<sqlite_int64>(reinterpret_cast<RowBufCursor*>(cur)->pos);
  return SQLITE_OK;
}

sqlite3_module MakeModule() {
  sqlite3_module m{};
  m.xConnect = Connect;
  m.xBestIndex = BestIndex;
  m.xDisconnect = Disconnect;
  m.xOpen = Open;
  m.xClose = Close;
  m.xFilter = Filter;
  m.xNext = Next;
  m.xEof = Eof;
  m.xColumn = Column;
  m.xRowid = Rowid;
  return m;
}

const sqlite3_module kModule = MakeModule();

}  // namespace

int RegisterRowBuf(sqlite3* db) {
  return sqlite3_create_module_v2(db, "crsync_rowbuf", &kModule, nullptr, nullptr);
}

}  // namespace crsync
