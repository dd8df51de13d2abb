#include "engine/row_meta.h"

namespace crsync {
namespace {

// Flag bits of an encoded record: a set bit means "same as the previous
// record" (for seq: previous seq + 1), and the field is omitted.
constexpr unsigned kSameDbv = 1, kNextSeq = 2, kSameSite = 4, kSameRun = 8;

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
  size_t n = meta.sentinel.present ? 1 : 0;
  for (const Clock& c : meta.cols) n += c.present;
  PutVarint(n, out);
  const Clock* prev = nullptr;
  auto put = [&](uint64_t slot, const Clock& c) {
    unsigned flags = 0;
    if (prev) {
      if (c.db_version == prev->db_version) flags |= kSameDbv;
      if (c.seq == prev->seq + 1) flags |= kNextSeq;
      if (c.site == prev->site) flags |= kSameSite;
      if (c.run == prev->run) flags |= kSameRun;
    }
    PutVarint(slot, out);
    out->push_back(static_cast<char>(flags));
    PutVarint(static_cast<uint64_t>(c.col_version), out);
    if (!(flags & kSameDbv)) PutVarint(static_cast<uint64_t>(c.db_version), out);
    if (!(flags & kNextSeq)) PutVarint(static_cast<uint64_t>(c.seq), out);
    if (!(flags & kSameSite)) PutVarint(static_cast<uint64_t>(c.site), out);
    if (!(flags & kSameRun)) PutVarint(static_cast<uint64_t>(c.run), out);
    prev = &c;
  };
  if (meta.sentinel.present) put(0, meta.sentinel);
  for (size_t i = 0; i < meta.cols.size(); ++i)
    if (meta.cols[i].present) put(i + 1, meta.cols[i]);
}

bool FirstRecordRun(std::string_view blob, int64_t* run) {
  size_t pos = 0;
  uint64_t n, v;
  if (!GetVarint(blob, &pos, &n) || n == 0) return false;
  if (!GetVarint(blob, &pos, &v) || pos >= blob.size()) return false;  // slot
  ++pos;  // flags: the first record carries every field
  for (int field = 0; field < 5; ++field) {  // col_version, db_version, seq, site, run
    if (!GetVarint(blob, &pos, &v)) return false;
  }
  *run = static_cast<int64_t>(v);
  return true;
}

Status DecodeRowMeta(std::string_view blob, size_t slots, RowMeta* meta) {
  meta->sentinel = Clock{};
  meta->cols.assign(slots, Clock{});
  size_t pos = 0;
  uint64_t n;
  if (!GetVarint(blob, &pos, &n)) return Status::Corruption("row metadata: bad record count");
  Clock prev;
  for (uint64_t k = 0; k < n; ++k) {
    uint64_t slot, v;
    if (!GetVarint(blob, &pos, &slot) || pos >= blob.size())
      return Status::Corruption("row metadata: truncated record");
    unsigned flags = static_cast<unsigned char>(blob[pos++]);
    Clock c;
    c.present = true;
    if (!GetVarint(blob, &pos, &v)) return Status::Corruption("row metadata: truncated");
    c.col_version = static_cast<int64_t>(v);
    auto field = [&](unsigned bit, int64_t same, int64_t* dst) -> bool {
      if (flags & bit) {
        *dst = same;
        return true;
      }
      if (!GetVarint(blob, &pos, &v)) return false;
      *dst = static_cast<int64_t>(v);
      return true;
    };
    if (!field(kSameDbv, prev.db_version, &c.db_version) ||
        !field(kNextSeq, prev.seq + 1, &c.seq) || !field(kSameSite, prev.site, &c.site) ||
        !field(kSameRun, prev.run, &c.run))
      return Status::Corruption("row metadata: truncated");
    prev = c;
    if (slot == 0) {
      meta->sentinel = c;
    } else if (slot - 1 < slots) {
      meta->cols[slot - 1] = c;
    }
  }
  if (pos != blob.size()) return Status::Corruption("row metadata: trailing bytes");
  return Status::OK();
}

}  // namespace crsync
