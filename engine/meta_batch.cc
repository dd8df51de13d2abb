#include "engine/meta_batch.h"

#include <algorithm>
#include <atomic>
#include <functional>

#include "engine/feed_range.h"

namespace crsync {
namespace {

// Sorts buf's rows by `less`: usually they come sorted (changes in feed
// order, keys ascending), and rows are costly to move, so check first and
// permute through indices otherwise.
template <typename Less>
void SortRows(RowBuf* buf, Less less) {
  auto& rows = buf->rows;
  if (std::is_sorted(rows.begin(), rows.end(), less)) return;
  std::vector<size_t> idx(rows.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return less(rows[a], rows[b]); });
  std::vector<RowBuf::Row> sorted;
  sorted.reserve(rows.size());
  for (size_t i : idx) sorted.push_back(std::move(rows[i]));
  rows = std::move(sorted);
}

std::atomic<bool> feed_ranges{true};

}  // namespace

void MetaBatch::EnableRangeWritesForTesting(bool on) { feed_ranges = on; }
bool MetaBatch::RangeWritesEnabled() { return feed_ranges; }

void MetaBatch::MakeFeedRanges(
    Crr* crr, const std::function<bool(std::string_view, std::string_view)>& dense) {
  if (!feed_ranges) return;
  crr->MakeFeedRanges(kMinRange, &feed_add_, &ranged_, dense);
}

bool MetaBatch::Dense(int64_t crr_id, std::string_view first, std::string_view last) const {
  for (const DenseSpan& d : dense_) {
    if (d.crr_id == crr_id && d.first <= first && (d.last.empty() || last <= d.last)) return true;
  }
  return false;
}

size_t MetaBatch::Hash(int64_t crr_id, std::string_view pk) {
  return std::hash<std::string_view>()(pk) ^ (static_cast<size_t>(crr_id) * 0x9E3779B97F4A7C15ull);
}

uint32_t MetaBatch::Lookup(int64_t crr_id, std::string_view pk) const {
  if (index_.empty()) return kNone;
  const size_t mask = index_.size() - 1;
  for (size_t i = Hash(crr_id, pk) & mask;; i = (i + 1) & mask) {
    uint32_t at = index_[i];
    if (at == kNone) return kNone;
    const Entry& e = entries_[at];
    if (e.crr_id == crr_id && e.pk == pk) return at;
  }
}

void MetaBatch::Reindex(size_t capacity) {
  index_.assign(capacity, kNone);
  const size_t mask = capacity - 1;
  for (uint32_t at = 0; at < used_; ++at) {
    size_t i = Hash(entries_[at].crr_id, entries_[at].pk) & mask;
    while (index_[i] != kNone) i = (i + 1) & mask;
    index_[i] = at;
  }
}

MetaBatch::Entry& MetaBatch::Add(int64_t crr_id, std::string_view pk, size_t slots,
                                 uint32_t* index) {
  // At most half full, so probes stay short.
  if (2 * (used_ + 1) > index_.size()) Reindex(std::max<size_t>(2 * kWindow, 2 * index_.size()));
  if (used_ == entries_.size()) entries_.emplace_back();
  const uint32_t at = static_cast<uint32_t>(used_++);
  Entry& e = entries_[at];
  e.crr_id = crr_id;
  e.pk.assign(pk.data(), pk.size());
  e.before.sentinel = Clock{};
  e.before.cols.assign(slots, Clock{});  // keeps the vector's buffer
  e.held = false;
  e.stored = false;
  e.user_held = false;
  const size_t mask = index_.size() - 1;
  size_t i = Hash(crr_id, pk) & mask;
  while (index_[i] != kNone) i = (i + 1) & mask;
  index_[i] = at;
  *index = at;
  return e;
}

const RowMeta* MetaBatch::Find(const Crr& crr, std::string_view pk) const {
  uint32_t at = Lookup(crr.id(), pk);
  if (at == kNone) return nullptr;
  const Entry& e = entries_[at];
  return e.held ? &e.after : &e.before;
}

void MetaBatch::Want(Crr* crr, std::string_view pk) {
  auto it = std::find_if(wanted_.begin(), wanted_.end(), [&](const auto& w) { return w.first == crr; });
  if (it == wanted_.end()) it = wanted_.insert(wanted_.end(), {crr, {}});
  it->second.push_back(pk);
}

Status MetaBatch::PrefetchWanted() {
  Status s;
  for (auto& [crr, pks] : wanted_) {
    if (s.ok()) s = Prefetch(crr, pks);
  }
  wanted_.clear();
  return s;
}

Status MetaBatch::Prefetch(Crr* crr, const std::vector<std::string_view>& pks) {
  keys_.rows.clear();
  const int64_t id = crr->id();
  for (std::string_view pk : pks) {
    // Known from here on; rows the statement finds get their metadata.
    if (Lookup(id, pk) != kNone) continue;
    uint32_t at;
    Add(id, pk, crr->slots(), &at);
    keys_.rows.push_back(RowBuf::Row{std::string(pk), {}, 0, 0});
  }
  if (keys_.rows.empty()) return Status::OK();
  SortRows(&keys_, [](const RowBuf::Row& a, const RowBuf::Row& b) { return a.pk < b.pk; });
  // Keys above every stored one (rows appended in key order, as an
  // initial sync does) have nothing to read.
  std::string max;
  bool any;
  Status s = crr->MaxStoredPk(&max, &any);
  const bool above_stored = !any || keys_.rows.front().pk > max;
  if (s.ok() && above_stored) dense_.push_back(DenseSpan{id, keys_.rows.front().pk, {}});
  if (s.ok() && !above_stored) {
    int64_t found = 0;
    auto load = [&](std::string_view pk, std::string_view meta) -> Status {
      uint32_t at = Lookup(id, pk);
      if (at == kNone) return Status::OK();  // a stored row between wanted keys
      ++found;
      Entry& e = entries_[at];
      e.stored = true;
      return DecodeRowMeta(meta, crr->slots(), &e.before);
    };
    // Keys close together (a statement that updated a key range, a peer's
    // changes to neighbouring rows) are read with one range scan; if it
    // meets many rows nobody wants, the keys are sparse and those after
    // the scan are each looked up instead.
    const int64_t limit = 2 * static_cast<int64_t>(keys_.rows.size()) + 16;
    int64_t scanned = 0;
    std::string last;
    s = crr->LoadRange(keys_.rows.front().pk, keys_.rows.back().pk, limit, load, &scanned, &last);
    if (s.ok() && scanned < limit && scanned == found) {
      dense_.push_back(DenseSpan{id, keys_.rows.front().pk, keys_.rows.back().pk});
    }
    if (s.ok() && scanned == limit) {
      auto first_after = std::upper_bound(
          keys_.rows.begin(), keys_.rows.end(), last,
          [](const std::string& k, const RowBuf::Row& r) { return k < r.pk; });
      keys_.rows.erase(keys_.rows.begin(), first_after);
      s = crr->LoadBulk(keys_, load);
    }
  }
  if (!s.ok()) Clear();  // nothing half-known
  return s;
}

void MetaBatch::Put(const Crr& crr, std::string_view pk, const RowMeta& before,
                    const RowMeta& after, bool stored, const RowWrite* user) {
  uint32_t at = Lookup(crr.id(), pk);
  Entry* e;
  if (at == kNone) {
    e = &Add(crr.id(), pk, 0, &at);
    e->before = before;
    e->stored = stored;
  } else {
    e = &entries_[at];  // prefetched (the same as `before`) or held
  }
  if (!e->held) {
    e->held = true;
    held_.push_back(at);
    ++size_;
  }
  e->after = after;  // a copy into the entry's kept buffer: no allocation
  NormalizeRuns(&e->after);
  if (user) {
    if (e->user_held) {
      e->user.Then(*user);
    } else {
      e->user = *user;
      e->user_held = true;
      user_held_.push_back(at);
    }
    e->user_label = user_label_;
  }
}

const RowWrite* MetaBatch::FindUserWrite(const Crr& crr, std::string_view pk) const {
  uint32_t at = Lookup(crr.id(), pk);
  return at != kNone && entries_[at].user_held ? &entries_[at].user : nullptr;
}

void MetaBatch::UserWrites(std::vector<HeldUserWrite>* out) const {
  out->clear();
  for (uint32_t at : user_held_) {
    const Entry& e = entries_[at];
    out->push_back(HeldUserWrite{e.crr_id, e.pk, &e.user, e.user_label});
  }
}

void MetaBatch::ClearBuffers() {
  inserts_.rows.clear();
  updates_.rows.clear();
  feed_del_.rows.clear();
  feed_add_.rows.clear();
}

void MetaBatch::AddToBuffers(std::string_view pk, const RowMeta& before, const RowMeta& after,
                             bool stored) {
  RowBuf::Row& m = (stored ? updates_ : inserts_).rows.emplace_back();
  m.pk.assign(pk.data(), pk.size());
  EncodeRowMeta(after, &m.meta);
  // The feed lists exactly the runs of `after` instead of `before`.
  AddFeedChanges(m.pk, before, after, &runs_, &feed_del_, &feed_add_);
}

Status MetaBatch::StoreNew(Crr* crr, const std::vector<std::string_view>& keys, int64_t dbv,
                           int64_t first_seq) {
  ClearBuffers();
  const size_t slots = crr->slots();
  const int64_t per_row = static_cast<int64_t>(std::max<size_t>(slots, 1));
  inserts_.rows.reserve(keys.size());
  feed_add_.rows.reserve(keys.size());
  int64_t seq = first_seq;
  for (std::string_view key : keys) {
    // What AddToBuffers would make of the fresh RowMeta: its blob, and its
    // one feed run (every record at dbv; the run is the smallest seq).
    RowBuf::Row& m = inserts_.rows.emplace_back();
    m.pk.assign(key);
    EncodeFreshRowMeta(slots, dbv, seq, &m.meta);
    feed_add_.rows.push_back(RowBuf::Row{m.pk, {}, dbv, seq});
    seq += per_row;
  }
  // Ascending keys above every stored one: nothing lies between them.
  SortRows(&feed_add_, FeedKeyLess);
  MakeFeedRanges(crr, [](std::string_view, std::string_view) { return true; });
  return crr->StoreBulk(inserts_, updates_, feed_del_, feed_add_);
}

void MetaBatch::Clear() {
  wanted_.clear();
  dense_.clear();
  if (used_ > 0) std::fill(index_.begin(), index_.end(), kNone);
  used_ = 0;
  held_.clear();
  user_held_.clear();
  size_ = 0;
}

Status MetaBatch::Flush() {
  // One pass per CRR, in id (creation) order.
  crr_ids_.clear();
  for (uint32_t at : held_) {
    int64_t id = entries_[at].crr_id;
    if (std::find(crr_ids_.begin(), crr_ids_.end(), id) == crr_ids_.end()) crr_ids_.push_back(id);
  }
  std::sort(crr_ids_.begin(), crr_ids_.end());
  Status s;
  for (int64_t id : crr_ids_) {
    Crr* crr = catalog_->ById(id);
    if (!crr) {
      s = Status::Corruption("crsql - CRR " + std::to_string(id) + " changed during a merge");
      break;
    }
    ClearBuffers();
    for (uint32_t at : held_) {
      const Entry& e = entries_[at];
      if (e.crr_id != id) continue;
      AddToBuffers(e.pk, e.before, e.after, e.stored);
    }
    // Key order: each statement walks its b-tree forwards.
    auto by_pk = [](const RowBuf::Row& a, const RowBuf::Row& b) { return a.pk < b.pk; };
    SortRows(&inserts_, by_pk);
    SortRows(&updates_, by_pk);
    SortRows(&feed_del_, FeedKeyLess);
    SortRows(&feed_add_, FeedKeyLess);
    MakeFeedRanges(crr, [&](std::string_view first, std::string_view last) {
      return Dense(id, first, last);
    });
    const bool dense =
        feed_ranges && updates_.rows.size() >= kMinRange &&
        Dense(id, updates_.rows.front().pk, updates_.rows.back().pk);
    s = crr->StoreBulk(inserts_, updates_, feed_del_, feed_add_, dense);
    if (!s.ok()) break;
  }
  Clear();
  return s;
}

}  // namespace crsync
