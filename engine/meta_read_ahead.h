// engine/meta_read_ahead.h — read-ahead for one CRR's row metadata.
//
// A peer's changes usually arrive in pk order (a transaction's rows, in the
// order they were written), and merged one statement at a time each needs
// its row's metadata: an indexed lookup per row. Once lookups have walked
// upwards for a while, the rows stored from the missed key on are read with
// one range scan instead, and later lookups inside that window are served
// from memory, including "no metadata" for keys between stored rows.
//
// The window is exact only if every write of the rows table reports itself
// (Stored) or drops it (Drop); Crr does that for its writes, and drops it
// with its other cached state on rollbacks, at transaction end and when the
// catalog changes. Not thread-safe: one per Crr, used on its connection.
#ifndef CRSYNC_ENGINE_META_READ_AHEAD_H_
#define CRSYNC_ENGINE_META_READ_AHEAD_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crsync {

class MetaReadAhead {
 public:
  // Consecutive ascending lookups outside the window before a scan (random
  // keys rarely run this long, so they seldom pay for a wasted scan). A
  // scan whose window served fewer than kUseful lookups is judged wasted
  // when the next scan is due, and from then on the run needed doubles
  // (sparse keys walked upwards), up to kMaxAfterAscending; a useful window
  // brings it back down, and a walk that leaves a useful window past its
  // end scans again at once.
  static constexpr int kAfterAscending = 8;
  static constexpr int kMaxAfterAscending = 1024;
  static constexpr int kUseful = 16;
  // Rows read per scan.
  static constexpr size_t kRows = 128;

  // When `pk` lies inside the window: true, with *found telling whether it
  // has metadata and *meta its encoded metadata (valid until the window
  // changes). Otherwise false. Counts the lookups a window serves.
  bool Find(std::string_view pk, std::string_view* meta, bool* found);
  // Notes a lookup Find could not serve. True when lookups have been
  // ascending long enough that the caller should scan from `pk` (Begin,
  // Add..., End).
  bool NoteMiss(std::string_view pk);

  // Replaces the window by the rows stored from `lo` on, given in key
  // order by Add; `to_end` when the scan reached the end of the table (the
  // window then covers every key >= lo).
  void Begin(std::string_view lo);
  void Add(std::string_view pk, std::string_view meta);
  void End(bool to_end);

  // Row `pk` now has `meta` stored: keeps the window exact.
  void Stored(std::string_view pk, std::string_view meta);
  // Forgets the window and what the lookups so far looked like.
  void Drop();

 private:
  bool Covers(std::string_view pk) const;
  // First row whose pk is >= `pk`.
  size_t LowerBound(std::string_view pk) const;

  std::vector<std::pair<std::string, std::string>> rows_;  // (pk, meta), ascending
  size_t size_ = 0;  // rows_[0, size_) are in use; the rest keep their capacity
  bool valid_ = false;
  bool to_end_ = false;
  std::string lo_;
  std::string last_miss_;
  int ascending_ = 0;
  bool scanned_ = false;          // a window was read since the last Drop
  int needed_ = kAfterAscending;  // ascending misses that trigger a scan
  int served_ = 0;                // lookups the current window served
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_META_READ_AHEAD_H_
