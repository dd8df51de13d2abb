// crsync_rowbuf(pointer) and crsync_valbuf(pointer): the rows of a RowBuf
// and of a ValueRows (engine/row_buf.h).
#include <algorithm>
#include <string>
#include <tuple>
#include <string_view>

#include "common/guard.h"
#include "engine/row_buf.h"
#include "engine/vtab_util.h"

namespace crsync {
namespace {

enum Col { kPk, kMeta, kDbv, kLo, kBuf };

size_t RowCount(const RowBuf& b) { return b.rows.size(); }
size_t RowCount(const ValueRows& b) { return b.rows(); }

// A cursor over the buffer passed as the (only) argument, of pointer type
// kType; without one the table has no rows.
template <typename Buf>
struct BufCursor {
  sqlite3_vtab_cursor base{};
  const Buf* buf = nullptr;
  size_t pos = 0;
};

template <typename Buf, const char* kType>
int FilterBuf(sqlite3_vtab_cursor* cur, int idx_num, const char*, int argc, sqlite3_value** argv) {
  auto* c = reinterpret_cast<BufCursor<Buf>*>(cur);
  c->pos = 0;
  c->buf = idx_num == 1 && argc == 1
               ? static_cast<const Buf*>(sqlite3_value_pointer(argv[0], kType))
               : nullptr;
  return SQLITE_OK;
}

template <typename Buf>
int EofBuf(sqlite3_vtab_cursor* cur) {
  auto* c = reinterpret_cast<BufCursor<Buf>*>(cur);
  return !c->buf || c->pos >= RowCount(*c->buf);
}

using RowBufCursor = BufCursor<RowBuf>;

constexpr char kSchema[] =
    "CREATE TABLE x(pk BLOB, meta BLOB, dbv INTEGER, lo INTEGER, buf HIDDEN)";

int BestIndex(sqlite3_vtab*, sqlite3_index_info* info) { return BestIndexOneArgument(info, kBuf); }

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
    ConnectPlainTable<kSchema, SQLITE_VTAB_DIRECTONLY>, BestIndex,
    FilterBuf<RowBuf, kRowBufPointerType>, NextPos<RowBufCursor>, EofBuf<RowBuf>, Column,
    RowidIsPos<RowBufCursor>);

// crsync_valbuf: columns v0 .. v63, then the hidden pointer argument.
constexpr int kValBuf = static_cast<int>(ValueRows::kMaxWidth);

using ValBufCursor = BufCursor<ValueRows>;

int ConnectValBuf(sqlite3* db, void*, int, const char* const*, sqlite3_vtab** out, char**) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    std::string schema = "CREATE TABLE x(";
    for (int i = 0; i < kValBuf; ++i) {
      schema += 'v';
      schema += std::to_string(i);
      schema += ", ";
    }
    schema += "buf HIDDEN)";
    int rc = sqlite3_declare_vtab(db, schema.c_str());
    if (rc != SQLITE_OK) return rc;
    sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
    *out = new sqlite3_vtab{};
    return SQLITE_OK;
  });
}

int BestIndexValBuf(sqlite3_vtab*, sqlite3_index_info* info) {
  return BestIndexOneArgument(info, kValBuf);
}

int ColumnValBuf(sqlite3_vtab_cursor* cur, sqlite3_context* ctx, int col) {
  auto* c = reinterpret_cast<ValBufCursor*>(cur);
  if (col < 0 || static_cast<size_t>(col) >= c->buf->width()) {
    sqlite3_result_null(ctx);
    return SQLITE_OK;
  }
  // Like crsync_rowbuf's, the buffer outlives the run: no copies.
  c->buf->at(c->pos, static_cast<size_t>(col)).SetResult(ctx, SQLITE_STATIC);
  return SQLITE_OK;
}

const sqlite3_module kValBufModule = EponymousModule<sqlite3_vtab, ValBufCursor>(
    ConnectValBuf, BestIndexValBuf, FilterBuf<ValueRows, kValueRowsPointerType>,
    NextPos<ValBufCursor>, EofBuf<ValueRows>, ColumnValBuf,
    RowidIsPos<ValBufCursor>);

// crsync_rowbuf_meta(walk, pk): no allocation, nothing that can throw.
void RowBufMeta(sqlite3_context* ctx, int, sqlite3_value** argv) {
  auto* walk = static_cast<RowBufWalk*>(sqlite3_value_pointer(argv[0], kRowBufWalkPointerType));
  if (!walk || !walk->buf || sqlite3_value_type(argv[1]) != SQLITE_BLOB) return;  // NULL
  std::string_view pk(static_cast<const char*>(sqlite3_value_blob(argv[1])),
                      static_cast<size_t>(sqlite3_value_bytes(argv[1])));
  const auto& rows = walk->buf->rows;
  auto key_at = [&](size_t i) { return std::string_view(rows[i].pk); };
  const size_t i = FindInWalk(rows.size(), key_at, pk, &walk->pos);
  if (i < rows.size()) {
    ++walk->matched;
    const std::string& meta = rows[i].meta;
    sqlite3_result_blob(ctx, meta.data(), static_cast<int>(meta.size()), SQLITE_STATIC);
  }
}

std::string_view BlobArg(sqlite3_value* v) {
  return std::string_view(static_cast<const char*>(sqlite3_value_blob(v)),
                          static_cast<size_t>(sqlite3_value_bytes(v)));
}

// crsync_feed_found(marks, dbv, lo, pk): 1, noting the entry (binary
// search: no allocation, nothing that can throw).
void FeedFound(sqlite3_context* ctx, int, sqlite3_value** argv) {
  auto* marks = static_cast<FeedMarks*>(sqlite3_value_pointer(argv[0], kFeedMarksPointerType));
  if (!marks || !marks->buf) {
    // Unmarked, a deleted entry would pass for a range's row: fail instead.
    sqlite3_result_error(ctx, "crsql - crsync_feed_found is internal", -1);
    return;
  }
  sqlite3_result_int(ctx, 1);
  const int64_t dbv = sqlite3_value_int64(argv[1]), lo = sqlite3_value_int64(argv[2]);
  const std::string_view pk = BlobArg(argv[3]);
  const auto& rows = marks->buf->rows;
  auto it = std::lower_bound(rows.begin(), rows.end(), 0, [&](const RowBuf::Row& r, int) {
    return std::tuple(r.dbv, r.lo, std::string_view(r.pk)) < std::tuple(dbv, lo, pk);
  });
  // Every copy of the entry: none may pass for a range's row.
  for (; it != rows.end() && it->dbv == dbv && it->lo == lo && it->pk == pk; ++it) {
    const size_t i = static_cast<size_t>(it - rows.begin());
    if (!marks->found[i]) {
      marks->found[i] = true;
      ++marks->count;
    }
  }
}

// crsync_meta_wants(rewriter, pk): 1 or 0 (NULL without a rewriter).
void MetaWants(sqlite3_context* ctx, int, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    auto* r = static_cast<MetaRewriter*>(sqlite3_value_pointer(argv[0], kMetaRewriterPointerType));
    if (!r || sqlite3_value_type(argv[1]) != SQLITE_BLOB) return;
    sqlite3_result_int(ctx, r->Wants(BlobArg(argv[1])) ? 1 : 0);
  });
}

// crsync_meta_rewrite(rewriter, pk, meta): the row's new meta.
void MetaRewrite(sqlite3_context* ctx, int, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    auto* r = static_cast<MetaRewriter*>(sqlite3_value_pointer(argv[0], kMetaRewriterPointerType));
    if (!r || sqlite3_value_type(argv[1]) != SQLITE_BLOB ||
        sqlite3_value_type(argv[2]) != SQLITE_BLOB) {
      sqlite3_result_error(ctx, "crsql - crsync_meta_rewrite is internal", -1);
      return;
    }
    std::string_view out;
    std::string error;
    if (!r->Rewrite(BlobArg(argv[1]), BlobArg(argv[2]), &out, &error)) {
      sqlite3_result_error(ctx, error.c_str(), -1);
      return;
    }
    // Valid until the next call, by when SQLite has written this row.
    sqlite3_result_blob(ctx, out.data(), static_cast<int>(out.size()), SQLITE_STATIC);
  });
}

}  // namespace

int RegisterRowBuf(sqlite3* db) {
  int rc = sqlite3_create_module_v2(db, "crsync_rowbuf", &kModule, nullptr, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_create_module_v2(db, "crsync_valbuf", &kValBufModule, nullptr, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(db, "crsync_rowbuf_meta", 2,
                                    SQLITE_UTF8 | SQLITE_DIRECTONLY | SQLITE_INNOCUOUS, nullptr,
                                    RowBufMeta, nullptr, nullptr, nullptr);
  }
  const int internal = SQLITE_UTF8 | SQLITE_DIRECTONLY | SQLITE_INNOCUOUS;
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(db, "crsync_feed_found", 4, internal, nullptr, FeedFound,
                                    nullptr, nullptr, nullptr);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(db, "crsync_meta_wants", 2, internal, nullptr, MetaWants,
                                    nullptr, nullptr, nullptr);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(db, "crsync_meta_rewrite", 3, internal, nullptr, MetaRewrite,
                                    nullptr, nullptr, nullptr);
  }
  return rc;
}

}  // namespace crsync
