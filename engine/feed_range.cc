#include "engine/feed_range.h"

#include <algorithm>
#include <utility>

#include "engine/row_meta.h"

namespace crsync {

void AddFeedChanges(std::string_view pk, const RowMeta& before, const RowMeta& after,
                    FeedRunScratch* scratch, RowBuf* del, RowBuf* add) {
  FeedRuns(before, &scratch->old_runs);
  FeedRuns(after, &scratch->new_runs);
  auto absent = [](const std::vector<FeedRun>& runs, const FeedRun& run) {
    return std::find(runs.begin(), runs.end(), run) == runs.end();
  };
  for (const FeedRun& run : scratch->old_runs) {
    if (absent(scratch->new_runs, run))
      del->rows.push_back(RowBuf::Row{std::string(pk), {}, run.first, run.second});
  }
  for (const FeedRun& run : scratch->new_runs) {
    if (absent(scratch->old_runs, run))
      add->rows.push_back(RowBuf::Row{std::string(pk), {}, run.first, run.second});
  }
}

void EncodeFeedRange(int64_t lo, int64_t hi, int64_t rows, std::string_view first,
                     std::string_view last, std::string* out) {
  out->clear();
  out->push_back('\0');
  PutVarint(static_cast<uint64_t>(hi - lo), out);
  if (rows >= 0) {
    out->push_back('\0');
    PutVarint(static_cast<uint64_t>(rows), out);
  }
  PutVarint(first.size(), out);
  out->append(first);
  out->append(last);
}

bool DecodeFeedRange(std::string_view blob, int64_t lo, FeedRange* out) {
  if (blob.empty() || blob[0] != '\0' || lo < 0) return false;
  size_t pos = 1;
  uint64_t span, first_size;
  if (!GetVarint(blob, &pos, &span) || !GetVarint(blob, &pos, &first_size)) return false;
  out->rows = -1;
  if (first_size == 0) {  // counted: the row count, then the bounds
    uint64_t rows;
    if (!GetVarint(blob, &pos, &rows) || rows > static_cast<uint64_t>(INT64_MAX) ||
        !GetVarint(blob, &pos, &first_size)) {
      return false;
    }
    out->rows = static_cast<int64_t>(rows);
  }
  if (first_size > blob.size() - pos || span > static_cast<uint64_t>(INT64_MAX - lo)) return false;
  out->hi = lo + static_cast<int64_t>(span);
  out->first = blob.substr(pos, first_size);
  out->last = blob.substr(pos + first_size);
  return !out->first.empty() && !out->last.empty();
}

void MakeFeedRanges(size_t min_rows, const std::function<bool(const RangeCandidate&)>& accept,
                    RowBuf* entries, RowBuf* scratch) {
  auto& in = entries->rows;
  if (in.size() < min_rows) return;
  scratch->rows.clear();
  // The ranges made so far, to keep any two from covering one run.
  int64_t made_dbv = 0, made_hi = -1;
  bool made = false;
  for (size_t i = 0; i < in.size();) {
    // The stretch [i, j): one version, keys ascending along the runs, at
    // most kMaxRangeSpan runs.
    size_t j = i + 1;
    while (j < in.size() && in[j].dbv == in[i].dbv && in[j - 1].pk < in[j].pk &&
           in[j].lo - in[i].lo <= kMaxRangeSpan) {
      ++j;
    }
    // Entries are sorted by (dbv, lo): only the last range made can share
    // a run with this stretch (at its first run).
    const RangeCandidate c{in[i].dbv, in[i].lo, in[j - 1].lo, in[i].pk, in[j - 1].pk};
    const bool clear = !made || made_dbv != c.dbv || made_hi < c.lo;
    if (j - i >= min_rows && clear && accept(c)) {
      RowBuf::Row& r = scratch->rows.emplace_back();
      r.dbv = c.dbv;
      r.lo = c.lo;
      EncodeFeedRange(c.lo, c.hi, static_cast<int64_t>(j - i), c.first, c.last, &r.pk);
      made = true;
      made_dbv = c.dbv;
      made_hi = c.hi;
    } else {
      for (size_t k = i; k < j; ++k) scratch->rows.push_back(std::move(in[k]));
    }
    i = j;
  }
  std::swap(entries->rows, scratch->rows);
}

}  // namespace crsync
