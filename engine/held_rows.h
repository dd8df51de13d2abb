// engine/held_rows.h — the metadata rows one CRR holds back (write-behind).
//
// A merge through crsql_changes gets a peer's changes one statement each,
// and usually several for one row. Rather than writing the row's metadata
// and feed entries after every change, Crr::StoreMeta(defer) holds the row
// here; Crr::FlushPending writes all held rows with a few statements. This
// file owns the set of held rows, finding them again, turning them into the
// statements' input, and the failure state a lost write-behind leaves.
//
// Not thread-safe: one per Crr, used by its connection's thread.
#ifndef CRSYNC_ENGINE_HELD_ROWS_H_
#define CRSYNC_ENGINE_HELD_ROWS_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crsync/status.h"
#include "engine/feed_range.h"
#include "engine/row_buf.h"
#include "engine/row_meta.h"

namespace crsync {

class HeldRows {
 public:
  static constexpr size_t kMax = 512;

  struct Row {
    std::string pk;
    RowMeta before;  // as stored when the row was first held
    RowMeta meta;    // to store (normalized)
  };

  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  bool full() const { return n_ == kMax; }
  // The i-th held row, in first-hold order (i < size()).
  Row& at(size_t i) { return rows_[i]; }

  // The held row `pk`, or null. The last held row is tried first (a peer's
  // changes to a row come together); while keys were held in ascending
  // order, a binary search; after that, a hash index.
  Row* Find(std::string_view pk);
  // Holds a new row `pk` whose stored metadata is `before` and returns it;
  // the caller sets its `meta`. REQUIRES: !full() and Find(pk) == null.
  // Entries keep their buffers from one flush to the next, so holding
  // allocates nothing once warm.
  Row* Hold(std::string_view pk, const RowMeta& before);
  // Forgets every held row (their buffers stay).
  void Forget() {
    n_ = 0;
    ascending_ = true;
    index_.clear();
  }

  // Turns the held rows into StoreBulk's input: *rows (pk, encoded meta),
  // sorted by pk; the feed entries to delete and add (FeedKeyLess order).
  // The buffers are this object's and valid until the next call.
  void Encode(const RowBuf** rows, const RowBuf** feed_del, const RowBuf** feed_add);

  // Failure state. A write-behind that failed part-way, or unwound after it
  // forgot its rows, leaves the metadata tables behind the user tables:
  // nothing may read or commit them until what it left is undone.
  bool failed() const { return !failure_.ok() || unwound_; }
  // Why (names `table`); OK when not failed().
  Status Failure(const std::string& table) const;
  // Forgets the held rows and fails with `why`.
  void Fail(const Status& why) {
    Forget();
    failure_ = why;
  }
  void MarkUnwound() { unwound_ = true; }
  void ClearFailure() {
    failure_ = Status::OK();
    unwound_ = false;
  }

 private:
  std::vector<Row> rows_;  // [0, n_) held; reserved at kMax, never moves
  size_t n_ = 0;
  bool ascending_ = true;
  std::unordered_map<std::string_view, size_t> index_;  // views of rows_[i].pk
  RowBuf encoded_, feed_del_, feed_add_;
  FeedRunScratch runs_;
  Status failure_;
  bool unwound_ = false;
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_HELD_ROWS_H_
