// engine/window_store.cc — see engine/window_store.h.
#include "engine/window_store.h"

#include <algorithm>
#include <vector>

#include "engine/feed_range.h"
#include "engine/row_buf.h"

namespace crsync {
namespace {

using LocalWrite = ConnEngine::LocalWrite;

}  // namespace

bool AscendingInserts(const WriteLog& log, size_t start, size_t end) {
  const int64_t crr_id = log[start].crr_id;
  std::string_view prev;
  for (size_t i = start; i < end; ++i) {
    const LocalWrite w = log[i];
    if (w.op != LocalWrite::kInsert || w.crr_id != crr_id) return false;
    if (i > start && !(prev < w.key)) return false;
    prev = w.key;
  }
  return true;
}

Status StoreFreshRows(ConnEngine* e, Crr* crr, MetaBatch* batch, const WriteLog& log, size_t start,
                      size_t end, bool* done) {
  *done = false;
  std::string max;
  bool any;
  CRSYNC_RETURN_IF_ERROR(crr->MaxStoredPk(&max, &any));
  if (any && !(std::string_view(max) < log[start].key)) return Status::OK();
  int64_t dbv;
  CRSYNC_RETURN_IF_ERROR(e->LocalDbVersion(&dbv));
  std::vector<std::string_view> keys;
  keys.reserve(end - start);
  for (size_t i = start; i < end; ++i) keys.push_back(log[i].key);
  const int64_t first_seq = e->PeekSeq();
  CRSYNC_RETURN_IF_ERROR(batch->StoreNew(crr, keys, dbv, first_seq));
  const int64_t seqs = static_cast<int64_t>(keys.size() * std::max<size_t>(crr->slots(), 1));
  e->TakeSeqsBelow(first_seq + seqs);
  *done = true;
  return Status::OK();
}

bool AscendingUpdates(const WriteLog& log, size_t start, size_t end) {
  const int64_t crr_id = log[start].crr_id;
  std::string_view prev;
  for (size_t i = start; i < end; ++i) {
    const LocalWrite w = log[i];
    if (w.op != LocalWrite::kUpdate || w.moved || w.crr_id != crr_id) return false;
    if (i > start && !(prev < w.key)) return false;
    prev = w.key;
  }
  return true;
}

namespace {

// The metadata walk of StoreUpdatedRows: for each row of log[start, end)
// the walk meets, what Recorder::Update would store (each changed column
// one version up, at `dbv` and the seqs the write order gives it), and the
// feed entries that come and go with it.
class UpdateWalk final : public MetaRewriter {
 public:
  UpdateWalk(const std::string& table, const WriteLog& log, size_t start, size_t end,
             size_t slots, int64_t dbv, int64_t first_seq)
      : table_(table), log_(log), start_(start), n_(end - start), slots_(slots), dbv_(dbv),
        met_(n_, false) {
    seq_.reserve(n_);
    int64_t seq = first_seq;
    for (size_t j = 0; j < n_; ++j) {
      seq_.push_back(seq);
      seq += static_cast<int64_t>(log_[start_ + j].changed.size());
    }
    seqs_ = seq - first_seq;
  }

  bool Wants(std::string_view pk) override {
    if (Find(pk, &want_) < n_) return true;
    ++unwanted_;
    return false;
  }

  bool Rewrite(std::string_view pk, std::string_view meta, std::string_view* out,
               std::string* error) override {
    const size_t j = Find(pk, &at_);
    if (j == n_ || met_[j]) {
      *error = "crsql - metadata walk out of step";
      return false;
    }
    if (Status s = DecodeRowMeta(meta, slots_, &before_); !s.ok()) {
      *error = s.ToString();
      return false;
    }
    after_ = before_;
    int64_t seq = seq_[j];
    for (uint32_t i : log_[start_ + j].changed) {
      const Clock& old = before_.cols[i];
      if (old.present && old.col_version >= kMaxChangeVersion) {
        *error = ClockExhausted(table_).message();
        return false;
      }
      StampLocal(&after_.cols[i], old.present ? old.col_version + 1 : 1, dbv_, seq++);
    }
    NormalizeRuns(&after_);
    AddFeedChanges(pk, before_, after_, &runs_, &feed_del_, &feed_add_);
    EncodeRowMeta(after_, &out_);
    met_[j] = true;
    ++matched_;
    *out = out_;
    return true;
  }

  int64_t seqs() const { return seqs_; }  // seqs the writes take, in all
  bool dense() const { return unwanted_ == 0; }  // met no row it did not want
  size_t matched() const { return matched_; }
  bool met(size_t j) const { return met_[j]; }
  RowBuf& feed_del() { return feed_del_; }
  RowBuf& feed_add() { return feed_add_; }

 private:
  std::string_view Key(size_t j) const { return log_.key(start_ + j); }
  size_t Find(std::string_view pk, size_t* cursor) const {
    return FindInWalk(n_, [this](size_t j) { return Key(j); }, pk, cursor);
  }

  const std::string& table_;
  const WriteLog& log_;
  size_t start_, n_, slots_;
  int64_t dbv_;
  std::vector<int64_t> seq_;  // first seq of each write
  int64_t seqs_ = 0;
  size_t want_ = 0, at_ = 0;  // each function's position
  size_t unwanted_ = 0, matched_ = 0;
  std::vector<bool> met_;
  RowMeta before_, after_;
  FeedRunScratch runs_;
  std::string out_;
  RowBuf feed_del_, feed_add_;
};

}  // namespace

Status StoreUpdatedRows(ConnEngine* e, Crr* crr, const WriteLog& log, size_t start, size_t end,
                        bool* done, std::vector<size_t>* unmet) {
  *done = false;
  unmet->clear();
  if (!MetaBatch::RangeWritesEnabled() || !e->open_alters().empty() || crr->slots() == 0)
    return Status::OK();
  int64_t dbv;
  CRSYNC_RETURN_IF_ERROR(e->LocalDbVersion(&dbv));
  const size_t n = end - start;
  const int64_t first_seq = e->PeekSeq();
  UpdateWalk walk(crr->name(), log, start, end, crr->slots(), dbv, first_seq);
  bool walked;
  CRSYNC_RETURN_IF_ERROR(crr->RewriteMetaRange(log[start].key, log[end - 1].key,
                                               2 * static_cast<int64_t>(n) + 16, &walk, &walked));
  if (!walked) return Status::OK();
  e->TakeSeqsBelow(first_seq + walk.seqs());
  for (RowBuf* b : {&walk.feed_del(), &walk.feed_add()}) {
    if (!std::is_sorted(b->rows.begin(), b->rows.end(), FeedKeyLess))
      std::sort(b->rows.begin(), b->rows.end(), FeedKeyLess);
  }
  if (walk.dense()) {
    // Nothing but these rows is stored between their keys.
    RowBuf scratch;
    crr->MakeFeedRanges(MetaBatch::kMinRange, &walk.feed_add(), &scratch);
  }
  const RowBuf none;
  CRSYNC_RETURN_IF_ERROR(crr->StoreBulk(none, none, walk.feed_del(), walk.feed_add()));
  // Rows with no metadata to rewrite (not expected: every row of a CRR has
  // some) are left to the caller, to be stored one by one after the window.
  if (walk.matched() < n) {
    for (size_t j = 0; j < n; ++j)
      if (!walk.met(j)) unmet->push_back(start + j);
  }
  *done = true;
  return Status::OK();
}

}  // namespace crsync
