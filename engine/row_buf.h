// engine/row_buf.h — rows held in memory that one SQL statement reads as a
// table: how the engine writes many metadata (RowBuf) or user (ValueRows)
// rows with one statement instead of one statement per row.
//
//   SELECT pk, meta, dbv, lo FROM crsync_rowbuf(?1)
//
// with ?1 bound by sqlite3_bind_pointer(stmt, 1, &buf, kRowBufPointerType,
// nullptr). The pointer type makes the table unusable from SQL text (a
// pointer cannot be forged there); without a pointer it has no rows. The
// RowBuf must outlive the statement's run (bind, step to the end, reset).
#ifndef CRSYNC_ENGINE_ROW_BUF_H_
#define CRSYNC_ENGINE_ROW_BUF_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/value.h"

namespace crsync {

inline constexpr char kRowBufPointerType[] = "crsync_rowbuf";

struct RowBuf {
  struct Row {
    std::string pk;    // packed primary key
    std::string meta;  // encoded RowMeta (metadata rows) or empty (feed entries)
    int64_t dbv = 0;   // feed entries: db_version and run
    int64_t lo = 0;
  };
  std::vector<Row> rows;
};

// Rows of `width` typed values each, for writing many user rows with one
// statement:
//
//   INSERT INTO t(a, b, c) SELECT v0, v1, v2 FROM crsync_valbuf(?1) WHERE true ...
//
// bound with kValueRowsPointerType, under the same rules as RowBuf. At most
// kMaxWidth values per row (columns v0 .. v63); a wider write goes row by
// row. Cells keep their buffers from one use to the next (Reset, AddRow).
inline constexpr char kValueRowsPointerType[] = "crsync_valbuf";

struct ValueRows {
  static constexpr size_t kMaxWidth = 64;

  void Reset(size_t width) {
    width_ = width;
    rows_ = 0;
  }
  // A new row's `width` cells, to fill in (they hold stale values).
  Value* AddRow() {
    const size_t need = (rows_ + 1) * width_;
    if (cells_.size() < need) cells_.resize(need);
    return &cells_[rows_++ * width_];
  }
  size_t width() const { return width_; }
  size_t rows() const { return rows_; }
  const Value& at(size_t row, size_t col) const { return cells_[row * width_ + col]; }

 private:
  size_t width_ = 0, rows_ = 0;
  std::vector<Value> cells_;
};

// The index of `key` among n strictly ascending keys (key_at(i) gives the
// i-th), or n if absent, for a walk that usually asks in ascending order: a
// forward step from *cursor finds it (one comparison per call when every
// key is asked for), a key behind the cursor (PRAGMA
// reverse_unordered_selects walks backwards) is found by binary search.
// Moves *cursor past a match.
template <typename KeyAt>
size_t FindInWalk(size_t n, const KeyAt& key_at, std::string_view key, size_t* cursor) {
  size_t j = *cursor;
  if (j > 0 && !(key_at(j - 1) < key)) {
    size_t lo = 0, hi = j;
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      if (key_at(mid) < key) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    j = lo;
  } else {
    while (j < n && key_at(j) < key) ++j;
  }
  if (j < n && key_at(j) == key) {
    *cursor = j + 1;
    return j;
  }
  *cursor = j;
  return n;
}

// A RowBuf sorted by pk, walked by one statement that meets keys in
// ascending order (usually: see FindInWalk):
//
//   UPDATE rows SET meta = coalesce(crsync_rowbuf_meta(?1, pk), meta)
//   WHERE pk BETWEEN ?2 AND ?3
//
// with ?1 bound by sqlite3_bind_pointer(stmt, 1, &walk, kRowBufWalkPointerType,
// nullptr): the function returns the meta of the row with that pk, or NULL
// when the buffer has none (counting in `matched` the keys it had). The
// lookups go through FindInWalk from `pos`, so a walk costs one comparison
// per key instead of a b-tree seek per row. Same lifetime rules as RowBuf.
inline constexpr char kRowBufWalkPointerType[] = "crsync_rowbuf_walk";

struct RowBufWalk {
  const RowBuf* buf = nullptr;
  size_t pos = 0;
  size_t matched = 0;  // keys found in the buffer so far
};

// Which entries of a RowBuf of feed entries (sorted by dbv, lo, pk) a
// statement met:
//
//   DELETE FROM feed WHERE (dbv, lo, pk) IN (SELECT dbv, lo, pk FROM crsync_rowbuf(?1))
//   AND crsync_feed_found(?2, dbv, lo, pk)
//
// with ?2 bound by sqlite3_bind_pointer(stmt, 2, &marks, kFeedMarksPointerType,
// nullptr): the function sets found[i] for the entry it is given and
// returns 1 (counting each entry once in `count`). Same lifetime rules as
// RowBuf.
inline constexpr char kFeedMarksPointerType[] = "crsync_feed_marks";

struct FeedMarks {
  const RowBuf* buf = nullptr;
  std::vector<bool> found;  // one per row of *buf
  size_t count = 0;         // entries found
};

// Rewrites the metadata of chosen rows during one walk along a key range,
// computing each row's new metadata from its stored one as the walk meets
// it (no read beforehand):
//
//   UPDATE rows SET meta = crsync_meta_rewrite(?1, pk, meta)
//   WHERE pk BETWEEN ?2 AND ?3 AND crsync_meta_wants(?1, pk)
//
// with ?1 bound by sqlite3_bind_pointer(stmt, 1, &rewriter,
// kMetaRewriterPointerType, nullptr). SQLite calls Wants() for every row of
// the range and Rewrite() for each row it accepted, both in ascending key
// order, or descending under PRAGMA reverse_unordered_selects (FindInWalk
// copes with both). A false from Rewrite() fails the
// statement with *error. Implementations must not throw (the SQL functions
// turn an escaped exception into an error anyway). Same lifetime rules as
// RowBuf.
inline constexpr char kMetaRewriterPointerType[] = "crsync_meta_rewriter";

class MetaRewriter {
 public:
  virtual ~MetaRewriter() = default;
  virtual bool Wants(std::string_view pk) = 0;
  // Sets *out (valid until the next call) to row pk's new metadata.
  virtual bool Rewrite(std::string_view pk, std::string_view meta, std::string_view* out,
                       std::string* error) = 0;
};

// Registers the eponymous table-valued functions crsync_rowbuf and
// crsync_valbuf, and the functions crsync_rowbuf_meta, crsync_meta_wants and
// crsync_meta_rewrite, on `db`.
int RegisterRowBuf(sqlite3* db);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_ROW_BUF_H_
