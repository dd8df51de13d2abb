// transport/coverage.h — which of a peer's db_versions this node has
// committed, and the receive cursor that follows from it.
//
// A sender's db_versions have gaps (merges jump ahead, empty transactions
// consume none), so a changeset declares the range [start, end] of the
// sender's versions it covers, gaps included. A receiver records a range
// only after every change in it is committed locally; the cursor is the end
// of the contiguous coverage from the persisted cursor on. Out-of-order and
// duplicate ranges are fine; a gap in coverage (a changeset not yet
// received) holds the cursor back, never a gap in versions.
//
// Thread safety: a value type; use from one thread.
#ifndef CRSYNC_TRANSPORT_COVERAGE_H_
#define CRSYNC_TRANSPORT_COVERAGE_H_

#include <cstdint>
#include <map>

#include "crsync/status.h"

namespace crsync {

class Coverage {
 public:
  // Starts from a persisted cursor: every version <= `cursor` is covered.
  explicit Coverage(int64_t cursor = 0) : cursor_(cursor) {}

  // Records that the changes of versions [start, end] are committed locally.
  // InvalidArgument if start > end or start < 1.
  Status Add(int64_t start, int64_t end);

  // Every version <= cursor() is covered; cursor() + 1 is not.
  int64_t cursor() const { return cursor_; }
  // Whether version `v` is already covered.
  bool Covers(int64_t v) const;
  // Whether every version in [start, end] is covered (a duplicate to skip).
  bool CoversRange(int64_t start, int64_t end) const;
  // Ranges held beyond the cursor (waiting for a missing range before them).
  size_t pending_ranges() const { return ahead_.size(); }

 private:
  int64_t cursor_;
  std::map<int64_t, int64_t> ahead_;  // start -> end, disjoint, all > cursor_ + 1
};

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_COVERAGE_H_
