#include "engine/meta_read_ahead.h"

#include <algorithm>

namespace crsync {

// Keys compare as SQLite compares BLOBs (memcmp, then length), which is
// std::string_view's order.
bool MetaReadAhead::Covers(std::string_view pk) const {
  if (!valid_ || pk < std::string_view(lo_)) return false;
  if (to_end_) return true;
  return size_ > 0 && pk <= std::string_view(rows_[size_ - 1].first);
}

size_t MetaReadAhead::LowerBound(std::string_view pk) const {
  size_t lo = 0, hi = size_;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (std::string_view(rows_[mid].first) < pk) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

bool MetaReadAhead::Find(std::string_view pk, std::string_view* meta, bool* found) {
  if (!Covers(pk)) return false;
  ++served_;
  size_t i = LowerBound(pk);
  *found = i < size_ && std::string_view(rows_[i].first) == pk;
  *meta = *found ? std::string_view(rows_[i].second) : std::string_view();
  return true;
}

bool MetaReadAhead::NoteMiss(std::string_view pk) {
  const bool was_useful = served_ >= kUseful;
  // A walk leaving a window it used well goes on with the next one at once.
  if (valid_ && was_useful && !to_end_ && size_ > 0 &&
      pk > std::string_view(rows_[size_ - 1].first)) {
    needed_ = kAfterAscending;
    ascending_ = 0;
    served_ = 0;
    last_miss_.assign(pk.data(), pk.size());
    return true;
  }
  bool ascending = !last_miss_.empty() && pk > std::string_view(last_miss_);
  ascending_ = ascending ? ascending_ + 1 : 0;
  last_miss_.assign(pk.data(), pk.size());
  if (ascending_ < needed_) return false;
  if (was_useful) {
    needed_ = kAfterAscending;
  } else if (scanned_) {
    needed_ = std::min(needed_ * 2, kMaxAfterAscending);  // the last scan was wasted
  }
  ascending_ = 0;
  served_ = 0;
  return true;
}

void MetaReadAhead::Drop() {
  valid_ = false;
  scanned_ = false;
  served_ = 0;
  ascending_ = 0;
  needed_ = kAfterAscending;
  last_miss_.clear();
}

void MetaReadAhead::Begin(std::string_view lo) {
  valid_ = false;
  scanned_ = true;
  size_ = 0;
  lo_.assign(lo.data(), lo.size());
}

void MetaReadAhead::Add(std::string_view pk, std::string_view meta) {
  if (size_ == rows_.size()) rows_.emplace_back();
  rows_[size_].first.assign(pk.data(), pk.size());
  rows_[size_].second.assign(meta.data(), meta.size());
  ++size_;
}

void MetaReadAhead::End(bool to_end) {
  to_end_ = to_end;
  // An empty scan that did not reach the end covers nothing.
  valid_ = to_end || size_ > 0;
}

void MetaReadAhead::Stored(std::string_view pk, std::string_view meta) {
  if (!Covers(pk)) return;
  size_t i = LowerBound(pk);
  if (i < size_ && std::string_view(rows_[i].first) == pk) {
    rows_[i].second.assign(meta.data(), meta.size());
    return;
  }
  // A row new to the window: insert it in order, reusing the spare slot.
  if (size_ == rows_.size()) rows_.emplace_back();
  for (size_t k = size_; k > i; --k) std::swap(rows_[k], rows_[k - 1]);
  rows_[i].first.assign(pk.data(), pk.size());
  rows_[i].second.assign(meta.data(), meta.size());
  ++size_;
}

}  // namespace crsync
