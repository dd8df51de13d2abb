#include "engine/held_rows.h"

#include <sqlite3.h>

#include <algorithm>

namespace crsync {

HeldRows::Row* HeldRows::Find(std::string_view pk) {
  if (n_ == 0) return nullptr;
  Row& last = rows_[n_ - 1];
  if (last.pk == pk) return &last;
  if (ascending_) {
    if (std::string_view(last.pk) < pk) return nullptr;
    auto end = rows_.begin() + static_cast<ptrdiff_t>(n_);
    auto it = std::lower_bound(rows_.begin(), end, pk,
                               [](const Row& r, std::string_view k) { return r.pk < k; });
    return it != end && it->pk == pk ? &*it : nullptr;
  }
  auto it = index_.find(pk);
  return it == index_.end() ? nullptr : &rows_[it->second];
}

HeldRows::Row* HeldRows::Hold(std::string_view pk, const RowMeta& before) {
  if (rows_.empty()) rows_.reserve(kMax);  // the index's views of pks stay valid
  if (n_ == rows_.size()) rows_.emplace_back();
  if (n_ > 0 && ascending_ && !(rows_[n_ - 1].pk < pk)) {
    // Keys no longer ascend: index what is held, and all that comes.
    ascending_ = false;
    for (size_t i = 0; i < n_; ++i) index_.emplace(rows_[i].pk, i);
  }
  Row* row = &rows_[n_++];
  row->pk.assign(pk.data(), pk.size());
  row->before = before;
  if (!ascending_) index_.emplace(row->pk, n_ - 1);
  return row;
}

void HeldRows::Encode(const RowBuf** rows, const RowBuf** feed_del, const RowBuf** feed_add) {
  encoded_.rows.resize(n_);
  feed_del_.rows.clear();
  feed_add_.rows.clear();
  for (size_t i = 0; i < n_; ++i) {
    const Row& p = rows_[i];
    RowBuf::Row& r = encoded_.rows[i];
    r.pk.assign(p.pk);
    EncodeRowMeta(p.meta, &r.meta);
    AddFeedChanges(p.pk, p.before, p.meta, &runs_, &feed_del_, &feed_add_);
  }
  auto by_pk = [](const RowBuf::Row& a, const RowBuf::Row& b) { return a.pk < b.pk; };
  if (!std::is_sorted(encoded_.rows.begin(), encoded_.rows.end(), by_pk))
    std::sort(encoded_.rows.begin(), encoded_.rows.end(), by_pk);
  for (RowBuf* b : {&feed_del_, &feed_add_}) {
    if (!std::is_sorted(b->rows.begin(), b->rows.end(), FeedKeyLess))
      std::sort(b->rows.begin(), b->rows.end(), FeedKeyLess);
  }
  *rows = &encoded_;
  *feed_del = &feed_del_;
  *feed_add = &feed_add_;
}

Status HeldRows::Failure(const std::string& table) const {
  if (!failure_.ok()) return failure_;
  if (unwound_) {
    return Status::Sqlite(SQLITE_ABORT, "crsql - storing merged metadata of " + table +
                                            " was interrupted; roll the transaction back");
  }
  return Status::OK();
}

}  // namespace crsync
