#include "transport/coverage.h"

#include <string>

namespace crsync {

Status Coverage::Add(int64_t start, int64_t end) {
  if (start < 1 || start > end) {
    return Status::InvalidArgument("bad version range [" + std::to_string(start) + ", " +
                                   std::to_string(end) + "]");
  }
  if (end <= cursor_) return Status::OK();  // already covered
  if (start <= cursor_ + 1) {
    cursor_ = end;
  } else {
    // Merge with overlapping or adjacent held ranges.
    auto it = ahead_.upper_bound(start);
    if (it != ahead_.begin()) {
      auto prev = std::prev(it);
      if (prev->second + 1 >= start) {
        start = prev->first;
        if (prev->second > end) end = prev->second;
        it = ahead_.erase(prev);
      }
    }
    while (it != ahead_.end() && it->first <= end + 1) {
      if (it->second > end) end = it->second;
      it = ahead_.erase(it);
    }
    ahead_[start] = end;
  }
  // Absorb held ranges that now touch the cursor.
  for (auto it = ahead_.begin(); it != ahead_.end() && it->first <= cursor_ + 1;) {
    if (it->second > cursor_) cursor_ = it->second;
    it = ahead_.erase(it);
  }
  return Status::OK();
}

bool Coverage::Covers(int64_t v) const {
  if (v <= cursor_) return true;
  auto it = ahead_.upper_bound(v);
  if (it == ahead_.begin()) return false;
  return std::prev(it)->second >= v;
}

bool Coverage::CoversRange(int64_t start, int64_t end) const {
  if (end <= cursor_) return true;
  auto it = ahead_.upper_bound(start);
  if (it == ahead_.begin()) return false;
  --it;
  return it->first <= start && it->second >= end && (start > cursor_ || it->first <= cursor_ + 1);
}

}  // namespace crsync
