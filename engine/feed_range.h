// engine/feed_range.h — range entries of a CRR's change feed.
//
// A feed entry (dbv, lo, pk) normally names one row: the records of row
// `pk` with db_version `dbv` and run `lo` (docs/storage.md). A window of
// rows written together in key order (a bulk load, a merge appending rows,
// an update of a key range) would need one entry per row; instead it gets
// one *range entry*, whose pk column holds a marker that no packed pk can
// start with (a packed pk's first byte is its column count, at least 1):
//
//   byte 0x00 | varint (hi - lo) | byte 0x00 | varint rows | varint size(first) | first | last
//
// It means: the records with db_version `dbv` and a run in [lo, hi] may be
// found in the rows whose pk lies in [first, last]. A reader scans those
// rows and keeps the records that match, so a row later rewritten (its
// records moved to a newer version) is simply skipped, and a row whose run
// changed gets a point entry as usual (a reader drops the duplicate
// record). Rows between `first` and `last` that the window did not write
// cost a reader a skipped row, so writers make ranges only over windows
// known to be dense.
//
// `rows` counts the rows the range still names: a write that takes a row
// off its run lowers it, and a range left with none is deleted
// (engine/range_keeper.h), so rewritten rows do not leave dead ranges for
// every later reader to walk. Format 3 markers (storage format 3) have no
// count: `0x00 | varint (hi - lo) | varint size(first) | first | last`
// (size(first) is never 0, which tells the two apart); they stay until
// their rows are rewritten by an alter.
#ifndef CRSYNC_ENGINE_FEED_RANGE_H_
#define CRSYNC_ENGINE_FEED_RANGE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "engine/row_buf.h"
#include "engine/row_meta.h"

namespace crsync {

// The point feed entries row `pk` loses and gains going from `before` to
// `after` (both normalized): its runs that `after` no longer has go to
// *del, those it newly has to *add, as (pk, dbv, lo) rows. `scratch` is
// working space (kept to reuse its buffers).
struct FeedRunScratch {
  std::vector<FeedRun> old_runs, new_runs;
};
void AddFeedChanges(std::string_view pk, const RowMeta& before, const RowMeta& after,
                    FeedRunScratch* scratch, RowBuf* del, RowBuf* add);

struct FeedRange {
  int64_t hi = 0;  // last run covered (lo is the entry's own column)
  int64_t rows = -1;  // rows it still names; -1 = not counted (format 3)
  std::string_view first, last;  // pk bounds, inclusive; views into the blob
};

// The most runs one counted range may cover (hi - lo), so that the ranges
// that may cover a run are found in a bounded stretch of the feed (a
// window of 1024 rows of up to 4 columns fits in one).
inline constexpr int64_t kMaxRangeSpan = 1 << 12;

// Writes the marker of a range entry covering runs [lo, hi] of the rows in
// [first, last], naming `rows` rows (-1: uncounted, the format 3 marker).
// REQUIRES: lo <= hi, first <= last.
void EncodeFeedRange(int64_t lo, int64_t hi, int64_t rows, std::string_view first,
                     std::string_view last, std::string* out);

// True if the feed entry's pk column `blob` is a range marker, then filling
// *out (views into `blob`); false for a point entry, or for a marker that
// does not parse (which a reader then treats as a pk naming no row).
bool DecodeFeedRange(std::string_view blob, int64_t lo, FeedRange* out);

// The feed's key order, (dbv, lo, pk), for feed entries held in a RowBuf.
inline bool FeedKeyLess(const RowBuf::Row& a, const RowBuf::Row& b) {
  return std::tie(a.dbv, a.lo, a.pk) < std::tie(b.dbv, b.lo, b.pk);
}

// A range entry MakeFeedRanges could make: version, runs, pk bounds.
struct RangeCandidate {
  int64_t dbv, lo, hi;
  std::string_view first, last;
};

// Replaces, in `entries` (point feed entries sorted by FeedKeyLess), each
// stretch of at least `min_rows` entries of one version whose keys ascend
// along their runs, covering at most kMaxRangeSpan runs, by one counted
// range entry, where `accept(candidate)` says nothing but these entries'
// rows is stored between those keys and no stored range entry of that
// version covers any of its runs (Crr::RangeFits). Two ranges made here
// never cover the same run of one version either. `scratch` is working
// space (kept to reuse its buffers).
void MakeFeedRanges(size_t min_rows, const std::function<bool(const RangeCandidate&)>& accept,
                    RowBuf* entries, RowBuf* scratch);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_FEED_RANGE_H_
