#include "engine/change_scan.h"

#include <algorithm>
#include <iterator>
#include <tuple>

#include "crsync/sqlite_handles.h"
#include "engine/crr_admin.h"
#include "engine/feed_range.h"
#include "engine/packed.h"
#include "engine/row_meta.h"

namespace crsync {

ChangeScan::~ChangeScan() = default;

bool ChangeScan::RecordLater::operator()(const ScanRecord& a, const ScanRecord& b) const {
  return std::tie(a.db_version, a.seq, a.crr_index, a.pk, a.slot) >
         std::tie(b.db_version, b.seq, b.crr_index, b.pk, b.slot);
}

bool ChangeScan::FeedLater::operator()(const Source* a, const Source* b) const {
  return std::tie(a->head_dbv, a->head_lo, a->index, a->head_pk) >
         std::tie(b->head_dbv, b->head_lo, b->index, b->head_pk);
}

const std::string& ChangeScan::TableName(size_t crr_index) const {
  return sources_[crr_index]->schema.name;
}

const std::string& ChangeScan::ColumnName(const ScanRecord& r) const {
  static const std::string kSentinel = "-1";
  if (r.slot < 0) return kSentinel;
  return sources_[r.crr_index]->schema.cols[r.slot];
}

Status ChangeScan::PrepareSources() {
  CRSYNC_RETURN_IF_ERROR(e_->catalog().Refresh());
  const auto& crrs = e_->catalog().all();
  // A new generation also follows any schema change (a dropped table).
  bool same = crrs.size() == sources_.size() && sources_generation_ == e_->catalog().generation();
  for (size_t i = 0; same && i < crrs.size(); ++i) {
    same = crrs[i]->name() == sources_[i]->schema.name &&
           crrs[i]->schema().cols == sources_[i]->schema.cols &&
           crrs[i]->schema().pk_cols == sources_[i]->schema.pk_cols;
  }
  if (same) return Status::OK();
  sources_.clear();
  sources_generation_ = ~uint64_t{0};
  sqlite3* db = e_->db();
  StmtPtr columns;
  CRSYNC_RETURN_IF_ERROR(
      Prepare(db, "SELECT name FROM pragma_table_xinfo(?1, 'main') WHERE hidden IN (0, 2, 3)",
              &columns));
  std::vector<const Crr*> all;
  for (const auto& c : crrs) all.push_back(c.get());
  std::vector<bool> lost;
  CRSYNC_RETURN_IF_ERROR(CrrsWithoutRecorders(db, all, &lost));
  for (size_t i = 0; i < crrs.size(); ++i) {
    auto src = std::make_unique<Source>();
    src->index = i;
    src->schema = crrs[i]->schema();
    const Crr& crr = *crrs[i];
    // Which of the CRR's columns the table still has.
    std::vector<std::string> have;
    sqlite3_bind_text(columns.get(), 1, crr.name().data(), static_cast<int>(crr.name().size()),
                      SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(columns.get())) == SQLITE_ROW) {
      have.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(columns.get(), 0)));
    }
    sqlite3_reset(columns.get());
    if (rc != SQLITE_DONE) return SqliteError(db, rc);
    auto has = [&](const std::string& c) {
      for (const std::string& h : have)
        if (sqlite3_stricmp(h.c_str(), c.c_str()) == 0) return true;
      return false;
    };
    for (const auto& p : crr.schema().pk_cols) src->gone = src->gone || !has(p);
    // A table dropped and made again without crsql_as_table has no
    // recording triggers (nor, as during an alter, a guard or an open
    // alter's mark): the CRR's metadata describes the dropped table's rows,
    // and is skipped as when no table of the name is left (§8.2).
    src->gone = src->gone || lost[i];
    if (src->gone) {
      sources_.push_back(std::move(src));
      continue;
    }
    src->missing.assign(crr.schema().cols.size(), false);
    for (size_t k = 0; k < crr.schema().cols.size(); ++k) src->missing[k] = !has(crr.schema().cols[k]);
    // One statement per CRR walks the feed and joins each entry with the
    // row's metadata and its current user row (LEFT JOIN: a tombstone has
    // none), so expanding an entry costs no further statement.
    std::string userjoin, values = ", u." + QuoteIdent(crr.schema().pk_cols[0]) + " IS NOT NULL";
    for (size_t k = 0; k < crr.schema().pk_cols.size(); ++k) {
      userjoin += std::string(k ? " AND " : "") + "u." + QuoteIdent(crr.schema().pk_cols[k]) +
                  " = crsync_pk_value(r.pk, " + std::to_string(k) + ")";
    }
    for (size_t k = 0; k < crr.schema().cols.size(); ++k)
      values += src->missing[k] ? ", NULL" : ", u." + QuoteIdent(crr.schema().cols[k]);
    // LEFT JOIN rows: a range entry's pk names no row (engine/feed_range.h).
    std::string joins = " LEFT JOIN main." + crr.RowsTable() + " r ON r.pk = f.pk LEFT JOIN main." +
                        QuoteIdent(crr.name()) + " u ON " + userjoin;
    CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                   "SELECT f.dbv, f.lo, f.pk, r.meta" + values + " FROM main." +
                                       crr.FeedTable() + " f" + joins +
                                       " WHERE f.dbv BETWEEN ?1 AND ?2 ORDER BY f.dbv, f.lo, f.pk",
                                   &src->feed, SQLITE_PREPARE_PERSISTENT));
    CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                   "SELECT r.meta" + values + " FROM main." + crr.RowsTable() +
                                       " r LEFT JOIN main." + QuoteIdent(crr.name()) + " u ON " +
                                       userjoin + " WHERE r.pk = ?1",
                                   &src->meta, SQLITE_PREPARE_PERSISTENT));
    CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                   "SELECT r.pk, r.meta" + values + " FROM main." + crr.RowsTable() +
                                       " r LEFT JOIN main." + QuoteIdent(crr.name()) + " u ON " +
                                       userjoin + " WHERE r.pk BETWEEN ?1 AND ?2 ORDER BY r.pk",
                                   &src->range, SQLITE_PREPARE_PERSISTENT));
    sources_.push_back(std::move(src));
  }
  sources_generation_ = e_->catalog().generation();
  return Status::OK();
}

namespace {

bool Passes(OriginFilter::Mode mode, int64_t ord, int64_t site) {
  switch (mode) {
    case OriginFilter::Mode::kAny:
      return true;
    case OriginFilter::Mode::kLocal:
      return site == 0;
    case OriginFilter::Mode::kRemote:
      return site != 0;
    case OriginFilter::Mode::kOnly:
      return site == ord;
    case OriginFilter::Mode::kExcept:
      return site != ord;
  }
  return true;
}

}  // namespace

bool ChangeScan::OriginPasses(int64_t site) const {
  if (!Passes(spec_.origin.mode, origin_ord_, site)) return false;
  for (size_t i = 0; i < more_ords_.size(); ++i) {
    if (!Passes(spec_.more_origins[i].mode, more_ords_[i], site)) return false;
  }
  return true;
}

void ChangeScan::Stop() {
  has_prev_ = false;
  feeds_ = {};
  pending_ = {};
  batch_.clear();
  batch_pos_ = 0;
  for (auto& src : sources_) {
    for (StmtPtr* st : {&src->feed, &src->meta, &src->range})
      if (*st) sqlite3_reset(st->get());
  }
}

Status ChangeScan::Start(const ScanSpec& spec) {
  spec_ = spec;
  Stop();
  CRSYNC_RETURN_IF_ERROR(e_->FlushLocalWrites());  // what this connection wrote, in order
  if (spec_.up_to_start) {
    int64_t committed;
    CRSYNC_RETURN_IF_ERROR(e_->CommittedDbVersion(&committed));
    spec_.max_dbv = std::min(spec_.max_dbv, std::max(committed, e_->pending_version()));
  }
  if (spec_.none || spec_.min_dbv > spec_.max_dbv) return Status::OK();
  CRSYNC_RETURN_IF_ERROR(PrepareSources());
  // Each origin filter's site as a stored ordinal (ours is 0; an unknown
  // site is -1, which kOnly never matches: nothing to read).
  auto resolve = [&](const OriginFilter& f, int64_t* ord, bool* empty) -> Status {
    *ord = 0;
    if (f.mode != OriginFilter::Mode::kOnly && f.mode != OriginFilter::Mode::kExcept) return Status::OK();
    if (f.site == e_->site_id()) return Status::OK();
    CRSYNC_RETURN_IF_ERROR(e_->SiteOrdinal(f.site, false, ord));
    if (*ord < 0 && f.mode == OriginFilter::Mode::kOnly) *empty = true;
    return Status::OK();
  };
  bool empty = false;
  CRSYNC_RETURN_IF_ERROR(resolve(spec_.origin, &origin_ord_, &empty));
  more_ords_.assign(spec_.more_origins.size(), 0);
  for (size_t i = 0; i < spec_.more_origins.size(); ++i)
    CRSYNC_RETURN_IF_ERROR(resolve(spec_.more_origins[i], &more_ords_[i], &empty));
  if (empty) return Status::OK();
  for (auto& src : sources_) {
    if (src->gone) continue;
    if (spec_.tables &&
        !std::binary_search(spec_.tables->begin(), spec_.tables->end(), src->schema.name)) {
      continue;
    }
    if (spec_.pks) {
      // Each row's records go to the heap, which gives them out in order.
      for (const std::string& pk : *spec_.pks) {
        sqlite3_stmt* mst = src->meta.get();
        sqlite3_bind_blob(mst, 1, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
        int rc = sqlite3_step(mst);
        Status s;
        if (rc == SQLITE_ROW) {
          s = Expand(src.get(), mst, 0, 0, 0, 0, pk, true);
          QueueBatch();
        } else if (rc != SQLITE_DONE) {
          s = SqliteError(e_->db(), rc);
        }
        sqlite3_reset(mst);
        CRSYNC_RETURN_IF_ERROR(s);
      }
      continue;
    }
    sqlite3_bind_int64(src->feed.get(), 1, spec_.min_dbv);
    sqlite3_bind_int64(src->feed.get(), 2, spec_.max_dbv);
    bool has;
    CRSYNC_RETURN_IF_ERROR(AdvanceFeed(src.get(), &has));
    if (has) feeds_.push(src.get());
  }
  return Status::OK();
}

void ScanSpec::Narrow(std::optional<std::vector<std::string>>* set,
                      std::vector<std::string> values) {
  if (*set) {
    std::vector<std::string> both;
    std::set_intersection((*set)->begin(), (*set)->end(), values.begin(), values.end(),
                          std::back_inserter(both));
    values.swap(both);
  }
  *set = std::move(values);
}

Status ChangeScan::AdvanceFeed(Source* src, bool* has) {
  sqlite3_stmt* st = src->feed.get();
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    // Each sqlite3_column_* call takes the connection's mutex; the
    // sqlite3_value_* calls on a column's value do not.
    src->head_dbv = sqlite3_column_int64(st, 0);
    src->head_lo = sqlite3_column_int64(st, 1);
    sqlite3_value* pk = sqlite3_column_value(st, 2);
    src->head_pk.assign(static_cast<const char*>(sqlite3_value_blob(pk)),
                        static_cast<size_t>(sqlite3_value_bytes(pk)));
    *has = true;
    return Status::OK();
  }
  sqlite3_reset(st);
  *has = false;
  if (rc != SQLITE_DONE) return SqliteError(e_->db(), rc);
  return Status::OK();
}

Status ChangeScan::ExpandHead(Source* src) {
  FeedRange range;
  if (!DecodeFeedRange(src->head_pk, src->head_lo, &range)) {
    return Expand(src, src->feed.get(), 3, src->head_dbv, src->head_lo, src->head_lo, src->head_pk,
                  false);
  }
  sqlite3_stmt* st = src->range.get();
  sqlite3_bind_blob(st, 1, range.first.data(), static_cast<int>(range.first.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, range.last.data(), static_cast<int>(range.last.size()), SQLITE_STATIC);
  Status s;
  int rc;
  while (s.ok() && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    sqlite3_value* pk = sqlite3_column_value(st, 0);
    s = Expand(src, st, 1, src->head_dbv, src->head_lo, range.hi,
               std::string_view(static_cast<const char*>(sqlite3_value_blob(pk)),
                                static_cast<size_t>(sqlite3_value_bytes(pk))),
               false);
  }
  if (s.ok() && rc != SQLITE_DONE) s = SqliteError(e_->db(), rc);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return s;
}

Status ChangeScan::Expand(Source* src, sqlite3_stmt* st, int meta_col, int64_t dbv, int64_t run_lo,
                          int64_t run_hi, std::string_view pk, bool all_records) {
  RowMeta& meta = meta_buf_;
  sqlite3_value* meta_val = sqlite3_column_value(st, meta_col);
  if (sqlite3_value_type(meta_val) == SQLITE_NULL) return Status::OK();  // names no row
  std::string_view blob(static_cast<const char*>(sqlite3_value_blob(meta_val)),
                        static_cast<size_t>(sqlite3_value_bytes(meta_val)));
  CRSYNC_RETURN_IF_ERROR(DecodeRowMeta(blob, src->schema.cols.size(), &meta));
  const bool row_exists = sqlite3_column_int(st, meta_col + 1) != 0;
  const int first_value = meta_col + 2;

  auto wanted = [&](const Clock& c) {
    if (!c.present) return false;
    if (all_records) {
      if (c.db_version < spec_.min_dbv || c.db_version > spec_.max_dbv) return false;
    } else if (c.db_version != dbv || c.run < run_lo || c.run > run_hi) {
      return false;
    }
    return OriginPasses(c.site);
  };
  const int64_t cl = meta.CausalLength();
  // Clocks of a live row whose user row is gone: deleted unrecorded (by the
  // connection of an open alter, or by a user trigger during a merge).
  // Reading them would hand peers a row of NULLs that never was; the row
  // is read as it stands, absent.
  if (cl % 2 == 1 && !row_exists) return Status::OK();
  // Records are built in place: one pk copy each, values read straight in.
  auto add = [&](const Clock& c, int slot) -> ScanRecord& {
    ScanRecord& r = batch_.emplace_back();
    r.crr_index = src->index;
    r.pk = pk;
    r.cl = cl;
    r.db_version = c.db_version;
    r.seq = c.seq;
    r.slot = slot;
    r.col_version = c.col_version;
    r.site = c.site;
    return r;
  };
  if (wanted(meta.sentinel)) add(meta.sentinel, -1);
  for (size_t i = 0; i < meta.cols.size(); ++i) {
    const Clock& c = meta.cols[i];
    if (!wanted(c) || src->missing[i]) continue;
    ScanRecord& r = add(c, static_cast<int>(i));
    if (row_exists) r.val = Value::FromColumn(st, first_value + static_cast<int>(i));
  }
  return Status::OK();
}

void ChangeScan::QueueBatch() {
  for (ScanRecord& r : batch_) pending_.push(std::move(r));
  batch_.clear();
  batch_pos_ = 0;
}

Status ChangeScan::Next(bool* has) {
  for (;;) {
    CRSYNC_RETURN_IF_ERROR(NextRecord(has));
    if (!*has) return Status::OK();
    const ScanRecord& r = cur_;
    if (has_prev_ && r.db_version == prev_dbv_ && r.seq == prev_seq_ && r.crr_index == prev_crr_ &&
        r.slot == prev_slot_ && r.pk == prev_pk_) {
      continue;  // the same record reached through a second feed entry
    }
    has_prev_ = true;
    prev_dbv_ = r.db_version;
    prev_seq_ = r.seq;
    prev_crr_ = r.crr_index;
    prev_slot_ = r.slot;
    prev_pk_ = r.pk;
    return Status::OK();
  }
}

Status ChangeScan::NextRecord(bool* has) {
  RecordLater later;
  for (;;) {
    // Fast path: records of the last expanded row, served in order without
    // the heap while nothing else can come before them.
    if (batch_pos_ < batch_.size()) {
      cur_ = std::move(batch_[batch_pos_++]);
      *has = true;
      return Status::OK();
    }
    batch_.clear();
    batch_pos_ = 0;
    if (feeds_.empty()) break;
    Source* src = feeds_.top();
    if (!pending_.empty()) {
      const ScanRecord& t = pending_.top();
      if (std::tie(src->head_dbv, src->head_lo) > std::tie(t.db_version, t.seq)) break;
    }
    feeds_.pop();
    CRSYNC_RETURN_IF_ERROR(ExpandHead(src));
    bool more;
    CRSYNC_RETURN_IF_ERROR(AdvanceFeed(src, &more));
    if (more) feeds_.push(src);
    if (batch_.empty()) continue;
    // A local write's records are usually in order already.
    auto earlier = [&](const ScanRecord& x, const ScanRecord& y) { return later(y, x); };
    if (!std::is_sorted(batch_.begin(), batch_.end(), earlier)) {
      std::sort(batch_.begin(), batch_.end(), earlier);
    }
    // Serve the batch directly only if no pending record and no unexpanded
    // feed entry can sort before its last record.
    const ScanRecord& last = batch_.back();
    bool alone = pending_.empty();
    if (alone && !feeds_.empty()) {
      const Source* next = feeds_.top();
      alone = std::tie(next->head_dbv, next->head_lo) > std::tie(last.db_version, last.seq);
    }
    if (!alone) QueueBatch();
  }
  if (pending_.empty()) {
    *has = false;
    return Status::OK();
  }
  cur_ = pending_.top();
  pending_.pop();
  *has = true;
  return Status::OK();
}

}  // namespace crsync
