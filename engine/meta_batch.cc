#include "engine/meta_batch.h"

#include <algorithm>
#include <tuple>

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

}  // namespace

const RowMeta* MetaBatch::Find(const Crr& crr, std::string_view pk) const {
  auto c = crrs_.find(crr.id());
  if (c == crrs_.end()) return nullptr;
  auto it = c->second.rows.find(std::string(pk));
  if (it == c->second.rows.end()) return nullptr;
  return it->second.held ? &it->second.after : &it->second.before;
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
  PerCrr& c = crrs_[crr->id()];
  keys_.rows.clear();
  for (std::string_view pk : pks) {
    key_.assign(pk.data(), pk.size());
    // Known from here on; rows the statement finds get their metadata.
    auto [it, fresh] = c.rows.try_emplace(key_);
    if (!fresh) continue;
    it->second.before.cols.assign(crr->slots(), Clock{});
    keys_.rows.push_back(RowBuf::Row{key_, {}, 0, 0});
  }
  if (keys_.rows.empty()) return Status::OK();
  SortRows(&keys_, [](const RowBuf::Row& a, const RowBuf::Row& b) { return a.pk < b.pk; });
  // Keys above every stored one (rows appended in key order, as an
  // initial sync does) have nothing to read.
  std::string max;
  bool any;
  Status s = crr->MaxStoredPk(&max, &any);
  if (s.ok() && any && keys_.rows.front().pk <= max) {
    s = crr->LoadBulk(keys_, [&](std::string_view pk, std::string_view meta) {
      Entry& e = c.rows[std::string(pk)];
      e.stored = true;
      return DecodeRowMeta(meta, crr->slots(), &e.before);
    });
  }
  if (!s.ok()) Clear();  // nothing half-known
  return s;
}

void MetaBatch::Put(const Crr& crr, std::string_view pk, const RowMeta& before, RowMeta after,
                    bool stored) {
  NormalizeRuns(&after);
  PerCrr& c = crrs_[crr.id()];
  key_.assign(pk.data(), pk.size());
  auto [it, fresh] = c.rows.try_emplace(key_);
  Entry& e = it->second;
  if (!e.held) {
    if (fresh) {  // else: prefetched, the same as `before`
      e.before = before;
      e.stored = stored;
    }
    e.held = true;
    c.held.emplace_back(&it->first, &e);
    ++size_;
  }
  e.after = std::move(after);
}

void MetaBatch::Clear() {
  wanted_.clear();
  crrs_.clear();
  size_ = 0;
}

Status MetaBatch::Flush() {
  Status s;
  for (auto& [id, c] : crrs_) {
    if (c.held.empty()) continue;
    Crr* crr = catalog_->ById(id);
    if (!crr) {
      s = Status::Corruption("crsql - CRR " + std::to_string(id) + " changed during a merge");
      break;
    }
    inserts_.rows.clear();
    updates_.rows.clear();
    feed_del_.rows.clear();
    feed_add_.rows.clear();
    for (const auto& [pk, e] : c.held) {
      RowBuf::Row& m = (e->stored ? updates_ : inserts_).rows.emplace_back();
      m.pk = *pk;
      EncodeRowMeta(e->after, &m.meta);
      // The feed lists exactly the runs of `after` instead of `before`.
      FeedRuns(e->before, &runs_old_);
      FeedRuns(e->after, &runs_new_);
      for (const FeedRun& run : runs_old_) {
        if (std::find(runs_new_.begin(), runs_new_.end(), run) == runs_new_.end())
          feed_del_.rows.push_back(RowBuf::Row{*pk, {}, run.first, run.second});
      }
      for (const FeedRun& run : runs_new_) {
        if (std::find(runs_old_.begin(), runs_old_.end(), run) == runs_old_.end())
          feed_add_.rows.push_back(RowBuf::Row{*pk, {}, run.first, run.second});
      }
    }
    // Key order: each statement walks its b-tree forwards.
    auto by_pk = [](const RowBuf::Row& a, const RowBuf::Row& b) { return a.pk < b.pk; };
    SortRows(&inserts_, by_pk);
    SortRows(&updates_, by_pk);
    auto feed_order = [](const RowBuf::Row& a, const RowBuf::Row& b) {
      return std::tie(a.dbv, a.lo, a.pk) < std::tie(b.dbv, b.lo, b.pk);
    };
    SortRows(&feed_del_, feed_order);
    SortRows(&feed_add_, feed_order);
    s = crr->StoreBulk(inserts_, updates_, feed_del_, feed_add_);
    if (!s.ok()) break;
  }
  Clear();
  return s;
}

}  // namespace crsync
