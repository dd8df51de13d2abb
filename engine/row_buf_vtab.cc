// crsync_rowbuf(pointer): the rows of a RowBuf (engine/row_buf.h).
#include "engine/row_buf.h"
#include "engine/vtab_util.h"

namespace crsync {
namespace {

enum Col { kPk, kMeta, kDbv, kLo, kBuf };

struct RowBufCursor {
  sqlite3_vtab_cursor base{};
  const RowBuf* buf = nullptr;
  size_t pos = 0;
};

constexpr char kSchema[] =
    "CREATE TABLE x(pk BLOB, meta BLOB, dbv INTEGER, lo INTEGER, buf HIDDEN)";

int BestIndex(sqlite3_vtab*, sqlite3_index_info* info) { return BestIndexOneArgument(info, kBuf); }

int Filter(sqlite3_vtab_cursor* cur, int idx_num, const char*, int argc, sqlite3_value** argv) {
  auto* c = reinterpret_cast<RowBufCursor*>(cur);
  c->pos = 0;
  c->buf = idx_num == 1 && argc == 1
               ? static_cast<const RowBuf*>(sqlite3_value_pointer(argv[0], kRowBufPointerType))
               : nullptr;
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

const sqlite3_module kModule = EponymousModule<sqlite3_vtab, RowBufCursor>(
    ConnectPlainTable<kSchema, SQLITE_VTAB_DIRECTONLY>, BestIndex, Filter, NextPos<RowBufCursor>, Eof, Column,
    RowidIsPos<RowBufCursor>);

}  // namespace

int RegisterRowBuf(sqlite3* db) {
  return sqlite3_create_module_v2(db, "crsync_rowbuf", &kModule, nullptr, nullptr);
}

}  // namespace crsync
