#include "engine/row_meta.h"

namespace crsync {
namespace {

// The head byte of an encoded record. Low four bits: a set bit means the
// field follows from the previous record and is omitted (slot and seq: the
// previous one + 1; db_version and site: the same). High four bits: the
// col_version when below kCvEscape, else kCvEscape and a varint follows.
// Before the first record, "previous" is slot 0, db_version 0, seq -1 and
// site 0, so a fresh local row's first column needs only db_version and seq.
constexpr unsigned kNextSlot = 1, kSameDbv = 2, kNextSeq = 4, kSameSite = 8;
constexpr unsigned kCvEscape = 15;

// The seq a record omits when it follows `seq` (kNextSeq). A merged seq
// may be INT64_MAX: the successor then wraps to a negative number, which no
// stored seq equals, so such a record is never encoded as "next".
int64_t SeqAfter(int64_t seq) { return static_cast<int64_t>(static_cast<uint64_t>(seq) + 1); }

}  // namespace

int64_t RowMeta::CausalLength() const {
  if (sentinel.present) return sentinel.col_version;
  return AnyColumn() ? 1 : 0;
}

bool RowMeta::AnyColumn() const {
  for (const Clock& c : cols)
    if (c.present) return true;
  return false;
}

bool RowMeta::PastMaxVersion() const {
  if (sentinel.present && sentinel.col_version > kMaxChangeVersion) return true;
  for (const Clock& c : cols)
    if (c.present && c.col_version > kMaxChangeVersion) return true;
  return false;
}

Status ClockExhausted(const std::string& table) {
  return Status::Sqlite(SQLITE_FULL, "crsql - a clock of " + table + " is exhausted: this write "
                                     "would take a col_version or causal length past " +
                                     std::to_string(kMaxChangeVersion) +
                                     ", which no peer accepts (a peer sent a change at that "
                                     "limit)");
}

void NormalizeRuns(RowMeta* meta) {
  // Rows have a handful of records: quadratic is the fast way here.
  auto all = [&](auto&& fn) {
    if (meta->sentinel.present) fn(meta->sentinel);
    for (Clock& c : meta->cols)
      if (c.present) fn(c);
  };
  all([&](Clock& c) {
    int64_t run = c.seq;
    all([&](Clock& o) {
      if (o.db_version == c.db_version && o.seq < run) run = o.seq;
    });
    c.run = run;
  });
}

void FeedRuns(const RowMeta& meta, std::vector<FeedRun>* out) {
  out->clear();
  auto add = [&](const Clock& c) {
    if (!c.present) return;
    for (const FeedRun& r : *out)
      if (r.first == c.db_version && r.second == c.run) return;
    out->emplace_back(c.db_version, c.run);
  };
  add(meta.sentinel);
  for (const Clock& c : meta.cols) add(c);
}

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view in, size_t* pos, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= in.size()) return false;
    auto b = static_cast<unsigned char>(in[(*pos)++]);
    r |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

void EncodeRowMeta(const RowMeta& meta, std::string* out) {
  out->clear();
  Clock prev;
  prev.seq = -1;
  uint64_t prev_slot = 0;
  auto put = [&](uint64_t slot, const Clock& c) {
    unsigned head = 0;
    if (slot == prev_slot + 1) head |= kNextSlot;
    if (c.db_version == prev.db_version) head |= kSameDbv;
    if (c.seq == SeqAfter(prev.seq)) head |= kNextSeq;
    if (c.site == prev.site) head |= kSameSite;
    const bool small_cv = c.col_version >= 0 && c.col_version < kCvEscape;
    head |= (small_cv ? static_cast<unsigned>(c.col_version) : kCvEscape) << 4;
    out->push_back(static_cast<char>(head));
    if (!(head & kNextSlot)) PutVarint(slot, out);
    if (!small_cv) PutVarint(static_cast<uint64_t>(c.col_version), out);
    if (!(head & kSameDbv)) PutVarint(static_cast<uint64_t>(c.db_version), out);
    if (!(head & kNextSeq)) PutVarint(static_cast<uint64_t>(c.seq), out);
    if (!(head & kSameSite)) PutVarint(static_cast<uint64_t>(c.site), out);
    prev = c;
    prev_slot = slot;
  };
  if (meta.sentinel.present) put(0, meta.sentinel);
  for (size_t i = 0; i < meta.cols.size(); ++i)
    if (meta.cols[i].present) put(i + 1, meta.cols[i]);
}

void EncodeFreshRowMeta(size_t slots, int64_t dbv, int64_t first_seq, std::string* out) {
  out->clear();
  // The first record against the "previous" before it (slot 0, db_version
  // 0, seq -1, site 0); each later one is the next slot, same version,
  // next seq, same site, col_version 1: one byte.
  unsigned head = (1u << 4) | kSameSite;
  if (slots > 0) head |= kNextSlot;  // slot 1; a pk-only row's sentinel is slot 0
  if (dbv == 0) head |= kSameDbv;
  if (first_seq == 0) head |= kNextSeq;
  out->push_back(static_cast<char>(head));
  if (slots == 0) PutVarint(0, out);
  if (dbv != 0) PutVarint(static_cast<uint64_t>(dbv), out);
  if (first_seq != 0) PutVarint(static_cast<uint64_t>(first_seq), out);
  if (slots > 1) {
    const unsigned next = (1u << 4) | kNextSlot | kSameDbv | kNextSeq | kSameSite;
    out->append(slots - 1, static_cast<char>(next));
  }
}

namespace {

// Walks the records of an encoded blob, calling fn(slot, clock) for each
// (clock.run left 0). Slots must be strictly increasing.
template <typename Fn>
Status ForEachRecord(std::string_view blob, Fn&& fn) {
  Clock prev;
  prev.seq = -1;
  uint64_t prev_slot = 0;
  bool first = true;
  size_t pos = 0;
  while (pos < blob.size()) {
    const unsigned head = static_cast<unsigned char>(blob[pos++]);
    Clock c;
    c.present = true;
    uint64_t slot = prev_slot + 1, v = 0;
    if (!(head & kNextSlot) && !GetVarint(blob, &pos, &slot))
      return Status::Corruption("row metadata: truncated record");
    if (!first && slot <= prev_slot) return Status::Corruption("row metadata: slots out of order");
    auto field = [&](bool same, int64_t implied, int64_t* dst) {
      if (same) {
        *dst = implied;
        return true;
      }
      if (!GetVarint(blob, &pos, &v)) return false;
      *dst = static_cast<int64_t>(v);
      return true;
    };
    const unsigned cv = head >> 4;
    if (!field(cv != kCvEscape, cv, &c.col_version) ||
        !field(head & kSameDbv, prev.db_version, &c.db_version) ||
        !field(head & kNextSeq, SeqAfter(prev.seq), &c.seq) ||
        !field(head & kSameSite, prev.site, &c.site))
      return Status::Corruption("row metadata: truncated record");
    fn(slot, c);
    prev = c;
    prev_slot = slot;
    first = false;
  }
  return Status::OK();
}

// The smallest seq per db_version among a row's records: the runs. Rows
// have few distinct db_versions, so a short list beats a map.
class RunTable {
 public:
  void Add(int64_t dbv, int64_t seq) {
    for (size_t i = 0; i < n_; ++i) {
      if (Get(i).first == dbv) {
        if (seq < Get(i).second) Get(i).second = seq;
        return;
      }
    }
    if (n_ < kInline) {
      inline_[n_] = FeedRun(dbv, seq);
    } else {
      more_.emplace_back(dbv, seq);
    }
    ++n_;
  }
  int64_t RunOf(int64_t dbv) {
    for (size_t i = 0; i < n_; ++i)
      if (Get(i).first == dbv) return Get(i).second;
    return 0;
  }
  void CopyTo(std::vector<FeedRun>* out) {
    out->clear();
    for (size_t i = 0; i < n_; ++i) out->push_back(Get(i));
  }

 private:
  static constexpr size_t kInline = 8;
  FeedRun& Get(size_t i) { return i < kInline ? inline_[i] : more_[i - kInline]; }
  FeedRun inline_[kInline];
  std::vector<FeedRun> more_;  // rows with many distinct db_versions
  size_t n_ = 0;
};

}  // namespace

bool FirstRecordRun(std::string_view blob, int64_t* run) {
  bool any = false;
  int64_t dbv = 0;
  RunTable runs;
  Status s = ForEachRecord(blob, [&](uint64_t, const Clock& c) {
    if (!any) dbv = c.db_version;
    any = true;
    runs.Add(c.db_version, c.seq);
  });
  if (!s.ok() || !any) return false;
  *run = runs.RunOf(dbv);
  return true;
}

Status BlobFeedRuns(std::string_view blob, std::vector<FeedRun>* out) {
  RunTable runs;
  CRSYNC_RETURN_IF_ERROR(
      ForEachRecord(blob, [&](uint64_t, const Clock& c) { runs.Add(c.db_version, c.seq); }));
  runs.CopyTo(out);
  return Status::OK();
}

Status DecodeRowMeta(std::string_view blob, size_t slots, RowMeta* meta) {
  meta->sentinel = Clock{};
  meta->cols.assign(slots, Clock{});
  // Runs are derived over every encoded record, those of dropped slots
  // included, exactly as they were when the blob was stored.
  RunTable runs;
  CRSYNC_RETURN_IF_ERROR(ForEachRecord(blob, [&](uint64_t slot, const Clock& c) {
    runs.Add(c.db_version, c.seq);
    if (slot == 0) {
      meta->sentinel = c;
    } else if (slot - 1 < slots) {
      meta->cols[slot - 1] = c;
    }
  }));
  if (meta->sentinel.present) meta->sentinel.run = runs.RunOf(meta->sentinel.db_version);
  for (Clock& c : meta->cols)
    if (c.present) c.run = runs.RunOf(c.db_version);
  return Status::OK();
}

}  // namespace crsync
