#include "engine/feed_range.h"

#include "engine/row_meta.h"

namespace crsync {

void EncodeFeedRange(int64_t lo, int64_t hi, std::string_view first, std::string_view last,
                     std::string* out) {
  out->clear();
  out->push_back('\0');
  PutVarint(static_cast<uint64_t>(hi - lo), out);
  PutVarint(first.size(), out);
  out->append(first);
  out->append(last);
}

bool DecodeFeedRange(std::string_view blob, int64_t lo, FeedRange* out) {
  if (blob.empty() || blob[0] != '\0' || lo < 0) return false;
  size_t pos = 1;
  uint64_t span, first_size;
  if (!GetVarint(blob, &pos, &span) || !GetVarint(blob, &pos, &first_size)) return false;
  if (first_size > blob.size() - pos || span > static_cast<uint64_t>(INT64_MAX - lo)) return false;
  out->hi = lo + static_cast<int64_t>(span);
  out->first = blob.substr(pos, first_size);
  out->last = blob.substr(pos + first_size);
  return !out->first.empty() && !out->last.empty();
}

}  // namespace crsync
