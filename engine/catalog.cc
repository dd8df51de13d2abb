#include "engine/catalog.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <exception>
#include <new>

#include "engine/packed.h"

namespace crsync {
namespace {

bool EqualNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

Status DecodeNames(const void* blob, int n, std::vector<std::string>* out) {
  std::vector<Value> vals;
  CRSYNC_RETURN_IF_ERROR(
      UnpackValues(std::string_view(static_cast<const char*>(blob), static_cast<size_t>(n)), &vals));
  out->clear();
  for (Value& v : vals) out->push_back(std::move(v.bytes));
  return Status::OK();
}

}  // namespace

Crr::Crr(sqlite3* db, int64_t id, TableSchema schema)
    : db_(db), id_(id), schema_(std::move(schema)), ranges_(db, FeedTable()) {
  user_upsert_.resize(schema_.cols.size());
}

bool Crr::RangeFits(const RangeCandidate& c) {
  bool fits = false;
  return ranges_.Fits(c, &fits).ok() && fits;
}

void Crr::MakeFeedRanges(size_t min_rows, RowBuf* entries, RowBuf* scratch,
                         const std::function<bool(std::string_view, std::string_view)>& dense) {
  crsync::MakeFeedRanges(
      min_rows,
      [&](const RangeCandidate& c) { return (!dense || dense(c.first, c.last)) && RangeFits(c); },
      entries, scratch);
}

// Reads the affinity of every pk column and every slot from the table's
// declaration.
Status Crr::LoadAffinities() {
  StmtPtr st;
  // In a STRICT table a column declared ANY has no affinity (SQLite keeps
  // '1' as TEXT there), where AffinityOf("ANY") is NUMERIC.
  bool strict = false;
  if (Prepare(db_, "SELECT strict FROM pragma_table_list(?1) WHERE schema = 'main'", &st).ok()) {
    sqlite3_bind_text(st.get(), 1, schema_.name.data(), static_cast<int>(schema_.name.size()),
                      SQLITE_STATIC);
    strict = sqlite3_step(st.get()) == SQLITE_ROW && sqlite3_column_int(st.get(), 0) != 0;
  }
  CRSYNC_RETURN_IF_ERROR(
      Prepare(db_, "SELECT name, type, pk FROM pragma_table_info(?1, 'main') ORDER BY pk", &st));
  sqlite3_bind_text(st.get(), 1, schema_.name.data(), static_cast<int>(schema_.name.size()),
                    SQLITE_STATIC);
  std::vector<char> pk_aff, col_aff(schema_.cols.size(), 'b');
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    const char* n = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0));
    const char* t = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 1));
    char a = strict && t && sqlite3_stricmp(t, "ANY") == 0 ? 'b' : AffinityOf(t ? t : "");
    if (sqlite3_column_int(st.get(), 2) > 0) {
      pk_aff.push_back(a);
    } else if (int slot = n ? SlotOf(n) : -1; slot >= 0) {
      col_aff[static_cast<size_t>(slot)] = a;
    }
  }
  if (pk_aff.size() != schema_.pk_cols.size()) pk_aff.assign(schema_.pk_cols.size(), 'b');
  // A one-column key with no 'pk' index is the rowid: every key an integer.
  rowid_key_ = false;
  if (schema_.pk_cols.size() == 1 &&
      Prepare(db_, "SELECT count(*) FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'", &st)
          .ok()) {
    sqlite3_bind_text(st.get(), 1, schema_.name.data(), static_cast<int>(schema_.name.size()),
                      SQLITE_STATIC);
    rowid_key_ = sqlite3_step(st.get()) == SQLITE_ROW && sqlite3_column_int(st.get(), 0) == 0;
  }
  // Triggers other than the recorder's three (main or temp schema).
  const std::string base = schema_.name + "__crsync_";
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db_,
      "SELECT count(*) FROM (SELECT name, tbl_name FROM main.sqlite_schema WHERE type = 'trigger' "
      "UNION ALL SELECT name, tbl_name FROM temp.sqlite_schema WHERE type = 'trigger') "
      "WHERE tbl_name = ?1 COLLATE NOCASE AND name NOT IN (?2, ?3, ?4)",
      &st));
  const std::string ours[] = {base + "itrig", base + "utrig", base + "dtrig"};
  sqlite3_bind_text(st.get(), 1, schema_.name.data(), static_cast<int>(schema_.name.size()),
                    SQLITE_STATIC);
  for (int i = 0; i < 3; ++i) {
    sqlite3_bind_text(st.get(), i + 2, ours[i].data(), static_cast<int>(ours[i].size()), SQLITE_STATIC);
  }
  user_triggers_ = sqlite3_step(st.get()) == SQLITE_ROW && sqlite3_column_int(st.get(), 0) > 0;
  pk_affinity_ = std::move(pk_aff);
  col_affinity_ = std::move(col_aff);
  affinities_loaded_ = true;
  return Status::OK();
}

Status Crr::HasUserTriggers(bool* out) {
  if (!affinities_loaded_) CRSYNC_RETURN_IF_ERROR(LoadAffinities());
  *out = user_triggers_;
  return Status::OK();
}

Status Crr::PkAffinity(const std::vector<char>** out) {
  if (!affinities_loaded_) CRSYNC_RETURN_IF_ERROR(LoadAffinities());
  *out = &pk_affinity_;
  return Status::OK();
}

Status Crr::ColAffinity(int slot, char* out) {
  if (!affinities_loaded_) CRSYNC_RETURN_IF_ERROR(LoadAffinities());
  *out = slot >= 0 && static_cast<size_t>(slot) < col_affinity_.size()
             ? col_affinity_[static_cast<size_t>(slot)]
             : 'b';
  return Status::OK();
}

int Crr::SlotOf(std::string_view cid) const {
  for (size_t i = 0; i < schema_.cols.size(); ++i)
    if (schema_.cols[i] == cid) return static_cast<int>(i);
  return -1;
}

std::string Crr::PkWhere(int first) const {
  std::string out;
  for (size_t i = 0; i < schema_.pk_cols.size(); ++i) {
    if (i) out += " AND ";
    out += QuoteIdent(schema_.pk_cols[i]) + " = ?" + std::to_string(first + static_cast<int>(i));
  }
  return out;
}

Status Crr::LoadMeta(std::string_view pk, RowMeta* meta, bool* found, bool use_cache) {
  // (After a failed write-behind the caches may predate rows it lost.)
  if (failed()) return held_.Failure(name());
  if (const HeldRows::Row* held = use_cache ? held_.Find(pk) : nullptr) {
    *meta = held->meta;
    *found = true;
    return Status::OK();
  }
  if (use_cache && cache_valid_ && cache_pk_ == pk) {
    *meta = cache_meta_;
    *found = true;
    return Status::OK();
  }
  if (use_cache) {
    std::string_view stored;
    bool served = ahead_.Find(pk, &stored, found);
    if (!served && ahead_.NoteMiss(pk)) {
      CRSYNC_RETURN_IF_ERROR(LoadAhead(pk));
      served = ahead_.Find(pk, &stored, found);
    }
    if (served) {
      if (!*found) {
        meta->sentinel = Clock{};
        meta->cols.assign(slots(), Clock{});
        return Status::OK();
      }
      CRSYNC_RETURN_IF_ERROR(DecodeRowMeta(stored, slots(), meta));
      cache_pk_.assign(pk.data(), pk.size());
      cache_meta_ = *meta;
      cache_valid_ = true;
      return Status::OK();
    }
  }
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(
      Cached(&get_meta_, [&] { return "SELECT meta FROM main." + RowsTable() + " WHERE pk = ?1"; }, &st));
  sqlite3_bind_blob(st, 1, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
  int rc = sqlite3_step(st);
  Status s;
  if (rc == SQLITE_ROW) {
    *found = true;
    std::string_view blob(static_cast<const char*>(sqlite3_column_blob(st, 0)),
                          static_cast<size_t>(sqlite3_column_bytes(st, 0)));
    s = DecodeRowMeta(blob, slots(), meta);
    if (s.ok() && use_cache) {
      // The next change is usually for the same row (a peer's changes come
      // row by row), and one that loses writes nothing: keep what was read.
      cache_pk_.assign(pk.data(), pk.size());
      cache_meta_ = *meta;
      cache_valid_ = true;
    }
  } else if (rc == SQLITE_DONE) {
    *found = false;
    meta->sentinel = Clock{};
    meta->cols.assign(slots(), Clock{});
  } else {
    s = SqliteError(db_, rc);
  }
  sqlite3_reset(st);
  return s;
}

Status Crr::LoadAhead(std::string_view pk) {
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&ahead_load_, [&] {
    return "SELECT pk, meta FROM main." + RowsTable() + " WHERE pk >= ?1 ORDER BY pk LIMIT ?2";
  }, &st));
  sqlite3_bind_blob(st, 1, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, static_cast<int64_t>(MetaReadAhead::kRows));
  ahead_.Begin(pk);
  size_t n = 0;
  Status s = StepPkMetaRows(st, [&](std::string_view k, std::string_view meta) {
    ahead_.Add(k, meta);
    ++n;
    return Status::OK();
  });
  if (!s.ok()) {
    ahead_.Drop();
    return s;
  }
  ahead_.End(n < MetaReadAhead::kRows);
  return Status::OK();
}

Status Crr::InsertNewMeta(std::string_view pk, RowMeta meta, bool* inserted) {
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  NormalizeRuns(&meta);
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&new_meta_, [&] {
    return "INSERT INTO main." + RowsTable() + "(pk, meta) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
  }, &st));
  EncodeRowMeta(meta, &meta_buf_);
  sqlite3_bind_blob(st, 1, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, meta_buf_.data(), static_cast<int>(meta_buf_.size()), SQLITE_STATIC);
  // Our statement has no triggers, so the total grows by exactly the rows
  // it inserted.
  sqlite3_int64 before = sqlite3_total_changes64(db_);
  CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, st));
  *inserted = sqlite3_total_changes64(db_) != before;
  if (!*inserted) return Status::OK();
  ahead_.Stored(pk, meta_buf_);
  cache_valid_ = false;
  RowMeta empty;
  return WriteFeed(pk, empty, meta);
}

Status Crr::StoreMeta(std::string_view pk, const RowMeta& before, const RowMeta& after,
                      bool cache, bool defer) {
  if (defer) {
    if (failed()) return held_.Failure(name());
    HeldRows::Row* row = held_.Find(pk);
    if (!row) {
      if (held_.full()) CRSYNC_RETURN_IF_ERROR(FlushPending());
      row = held_.Hold(pk, before);
    }
    row->meta = after;  // into kept buffers: no allocation once warm
    NormalizeRuns(&row->meta);
    if (cache_valid_ && cache_pk_ == pk) cache_valid_ = false;  // the pending row serves it
    return Status::OK();
  }
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  // Normalized in the cache's storage (no allocation once warm); it becomes
  // the cached row when `cache`.
  cache_valid_ = false;
  RowMeta& norm = cache_meta_;
  norm = after;
  NormalizeRuns(&norm);
  CRSYNC_RETURN_IF_ERROR(WriteMeta(pk, before, norm));
  if (cache) {
    cache_pk_.assign(pk.data(), pk.size());
    cache_valid_ = true;
  }
  return Status::OK();
}

Status Crr::WriteMeta(std::string_view pk, const RowMeta& before, const RowMeta& norm) {
  sqlite3_stmt* put = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&put_meta_, [&] {
    return "INSERT INTO main." + RowsTable() +
           "(pk, meta) VALUES (?1, ?2) ON CONFLICT (pk) DO UPDATE SET meta = excluded.meta";
  }, &put));
  EncodeRowMeta(norm, &meta_buf_);
  sqlite3_bind_blob(put, 1, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
  sqlite3_bind_blob(put, 2, meta_buf_.data(), static_cast<int>(meta_buf_.size()), SQLITE_STATIC);
  CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, put));
  ahead_.Stored(pk, meta_buf_);
  return WriteFeed(pk, before, norm);
}

namespace {
std::atomic<bool> throw_in_next_flush{false};
}  // namespace

void Crr::ThrowInNextFlushForTesting() { throw_in_next_flush = true; }

Status Crr::FlushPending(FlushHow how) {
  if (failed()) return held_.Failure(name());
  if (held_.empty()) return Status::OK();
  const size_t n = held_.size();
  // The rows are forgotten before they are written (the statements below
  // may call back here, through crsql_changes' xSavepoint); their entries
  // keep their contents until the next Hold. Should this unwind
  // (std::bad_alloc), nothing may commit without them: every later access
  // fails until ClearFailure().
  struct UnwindMark {
    Crr* crr;
    int uncaught = std::uncaught_exceptions();
    ~UnwindMark() {
      if (std::uncaught_exceptions() > uncaught) crr->held_.MarkUnwound();
    }
  } mark{this};
  HeldRows::Row& first = held_.at(0);
  // Many rows are upserted, and their feed entries changed, with one
  // statement each (StoreBulk), in key order; or one row at a time.
  const bool bulk = n > 1 && how == FlushHow::kAny;
  const RowBuf *rows = nullptr, *feed_del = nullptr, *feed_add = nullptr;
  if (bulk) held_.Encode(&rows, &feed_del, &feed_add);
  held_.Forget();
  ++pending_flushes_;
  if (throw_in_next_flush.load(std::memory_order_relaxed) && throw_in_next_flush.exchange(false)) {
    throw std::bad_alloc();
  }
  Status s;
  if (!bulk) {
    for (size_t i = 0; i < n && s.ok(); ++i) {
      const HeldRows::Row& r = held_.at(i);
      s = WriteMeta(r.pk, r.before, r.meta);
    }
  } else {
    const RowBuf none;
    s = WriteBulk(none, *rows, *feed_del, *feed_add, false);
    // Only these rows changed: the read-ahead stays exact (as WriteMeta
    // keeps it), so ascending lookups go on without a new scan.
    if (s.ok()) {
      for (const RowBuf::Row& r : rows->rows) ahead_.Stored(r.pk, r.meta);
    }
  }
  if (!s.ok()) {
    s = s.WithContext("crsql - storing merged metadata of " + name() +
                      " failed; roll the transaction back");
    // Part of it may be stored, and the statement that flushed it may have
    // no journal to undo that: the transaction must not commit. (Unless
    // SQLite already rolled it back, as it does on I/O errors.)
    if (!sqlite3_get_autocommit(db_)) held_.Fail(s);
    return s;
  }
  if (n == 1) {
    // The row just stored is the likeliest next lookup.
    std::swap(cache_meta_, first.meta);
    cache_pk_.swap(first.pk);
    cache_valid_ = true;
  }
  return Status::OK();
}

Status Crr::WriteFeed(std::string_view pk, const RowMeta& before, const RowMeta& after) {
  // The feed lists each distinct (db_version, run) of the row once.
  std::vector<FeedRun>& old_runs = runs_a_;
  std::vector<FeedRun>& new_runs = runs_b_;
  FeedRuns(before, &old_runs);
  FeedRuns(after, &new_runs);
  // Losses noted by a call that then fails are dropped with it.
  struct ForgetOnExit {
    RangeKeeper* keeper;
    ~ForgetOnExit() { keeper->Forget(); }
  } forget{&ranges_};
  auto contains = [](const std::vector<FeedRun>& v, const FeedRun& r) {
    return std::find(v.begin(), v.end(), r) != v.end();
  };
  for (const FeedRun& r : old_runs) {
    if (contains(new_runs, r)) continue;
    sqlite3_stmt* del = nullptr;
    CRSYNC_RETURN_IF_ERROR(Cached(&feed_del_, [&] {
      return "DELETE FROM main." + FeedTable() + " WHERE dbv = ?1 AND lo = ?2 AND pk = ?3";
    }, &del));
    sqlite3_bind_int64(del, 1, r.first);
    sqlite3_bind_int64(del, 2, r.second);
    sqlite3_bind_blob(del, 3, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, del));
    if (sqlite3_changes64(db_) == 0) ranges_.Lost(r.first, r.second, pk);  // a range's row
  }
  if (ranges_.has_losses()) CRSYNC_RETURN_IF_ERROR(ranges_.Apply());
  for (const FeedRun& r : new_runs) {
    if (contains(old_runs, r)) continue;
    sqlite3_stmt* add = nullptr;
    CRSYNC_RETURN_IF_ERROR(Cached(&feed_add_, [&] {
      return "INSERT OR IGNORE INTO main." + FeedTable() + "(dbv, lo, pk) VALUES (?1, ?2, ?3)";
    }, &add));
    sqlite3_bind_int64(add, 1, r.first);
    sqlite3_bind_int64(add, 2, r.second);
    sqlite3_bind_blob(add, 3, pk.data(), static_cast<int>(pk.size()), SQLITE_STATIC);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, add));
  }
  return Status::OK();
}

Status Crr::StoreBulk(const RowBuf& inserts, const RowBuf& updates, const RowBuf& feed_del,
                      const RowBuf& feed_add, bool updates_dense) {
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  DropCache();
  return WriteBulk(inserts, updates, feed_del, feed_add, updates_dense);
}

Status Crr::WriteBulk(const RowBuf& inserts, const RowBuf& updates, const RowBuf& feed_del,
                      const RowBuf& feed_add, bool updates_dense) {
  // Each statement reads its rows from crsync_rowbuf (engine/row_buf.h):
  // the per-row cost is one loop of one statement, not a statement run.
  // The inserts and the feed's statements cannot abort part-way (OR IGNORE;
  // our values are never NULL), so SQLite needs no statement journal for
  // them: with one, every page they touch is copied to it first, which for
  // new rows spread over the whole table costs more than it saves.
  auto run = [&](StmtPtr* slot, const RowBuf& buf, auto&& make_sql) -> Status {
    if (buf.rows.empty()) return Status::OK();
    sqlite3_stmt* st = nullptr;
    CRSYNC_RETURN_IF_ERROR(Cached(slot, make_sql, &st));
    sqlite3_bind_pointer(st, 1, const_cast<RowBuf*>(&buf), kRowBufPointerType, nullptr);
    Status s = StepToEnd(db_, st);
    sqlite3_clear_bindings(st);
    return s;
  };
  CRSYNC_RETURN_IF_ERROR(run(&bulk_insert_, inserts, [&] {
    return "INSERT OR IGNORE INTO main." + RowsTable() + "(pk, meta) SELECT pk, meta FROM crsync_rowbuf(?1)";
  }));
  if (updates_dense && !updates.rows.empty()) {
    // One walk along the key range: no seek per row, and (an UPDATE with
    // no trigger) no statement journal. update 100k rows: 178 -> 145 ms.
    sqlite3_stmt* st = nullptr;
    CRSYNC_RETURN_IF_ERROR(Cached(&bulk_walk_, [&] {
      return "UPDATE main." + RowsTable() +
             " SET meta = coalesce(crsync_rowbuf_meta(?1, pk), meta) WHERE pk BETWEEN ?2 AND ?3";
    }, &st));
    RowBufWalk walk;
    walk.buf = &updates;
    const std::string& first = updates.rows.front().pk;
    const std::string& last = updates.rows.back().pk;
    sqlite3_bind_pointer(st, 1, &walk, kRowBufWalkPointerType, nullptr);
    sqlite3_bind_blob(st, 2, first.data(), static_cast<int>(first.size()), SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, last.data(), static_cast<int>(last.size()), SQLITE_STATIC);
    Status s = StepToEnd(db_, st);
    sqlite3_clear_bindings(st);
    CRSYNC_RETURN_IF_ERROR(s);
    // Every row must have been met; one that was not (not stored after
    // all) is written by the upsert below, which the others pass unchanged.
    updates_dense = walk.matched == updates.rows.size();
  }
  if (!updates_dense) {
    CRSYNC_RETURN_IF_ERROR(run(&bulk_update_, updates, [&] {
      // An upsert, though it may abort (so SQLite gives it a statement
      // journal): one b-tree seek per row where UPDATE ... FROM materializes
      // the join first and seeks again. A window's rows sit on few pages, so
      // the journal copies little; update of 100k rows: 285 -> 256 ms.
      return "INSERT INTO main." + RowsTable() +
             "(pk, meta) SELECT pk, meta FROM crsync_rowbuf(?1) WHERE 1 "
             "ON CONFLICT (pk) DO UPDATE SET meta = excluded.meta";
    }));
  }
  // Entries no point entry held were rows of ranges (engine/range_keeper.h).
  CRSYNC_RETURN_IF_ERROR(ranges_.DeleteEntries(feed_del));
  return run(&bulk_feed_add_, feed_add, [&] {
    return "INSERT OR IGNORE INTO main." + FeedTable() +
           "(dbv, lo, pk) SELECT dbv, lo, pk FROM crsync_rowbuf(?1)";
  });
}

Status Crr::MoreStoredRowsThan(std::string_view first, std::string_view last, int64_t limit,
                               bool* more) {
  // Keys of a rowid table between two small non-negative integers are
  // integers between them (packed order is numeric order there): no more
  // rows than values. Otherwise count, at most limit + 1 rows: stepping
  // over cells without decoding them costs a fraction of a walk.
  if (!affinities_loaded_) CRSYNC_RETURN_IF_ERROR(LoadAffinities());
  uint64_t lo, hi;
  if (rowid_key_ && PackedSmallUint(first, &lo) && PackedSmallUint(last, &hi) && lo <= hi &&
      hi - lo < static_cast<uint64_t>(limit)) {
    *more = false;
    return Status::OK();
  }
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&range_count_, [&] {
    return "SELECT count(*) FROM (SELECT 1 FROM main." + RowsTable() +
           " WHERE pk BETWEEN ?2 AND ?3 LIMIT ?1)";
  }, &st));
  sqlite3_bind_int64(st, 1, limit + 1);
  sqlite3_bind_blob(st, 2, first.data(), static_cast<int>(first.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 3, last.data(), static_cast<int>(last.size()), SQLITE_STATIC);
  int rc = sqlite3_step(st);
  const int64_t count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_ROW) return SqliteError(db_, rc);
  *more = count > limit;
  return Status::OK();
}

Status Crr::RewriteMetaRange(std::string_view first, std::string_view last, int64_t limit,
                             MetaRewriter* rewriter, bool* walked) {
  *walked = false;
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  bool sparse;
  CRSYNC_RETURN_IF_ERROR(MoreStoredRowsThan(first, last, limit, &sparse));
  if (sparse) return Status::OK();
  DropCache();
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&rewrite_walk_, [&] {
    // No trigger and no abort but the function's own error (after which
    // the transaction rolls back): no statement journal.
    return "UPDATE main." + RowsTable() +
           " SET meta = crsync_meta_rewrite(?1, pk, meta) "
           "WHERE pk BETWEEN ?2 AND ?3 AND crsync_meta_wants(?1, pk)";
  }, &st));
  sqlite3_bind_pointer(st, 1, rewriter, kMetaRewriterPointerType, nullptr);
  sqlite3_bind_blob(st, 2, first.data(), static_cast<int>(first.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 3, last.data(), static_cast<int>(last.size()), SQLITE_STATIC);
  Status s = StepToEnd(db_, st);
  sqlite3_clear_bindings(st);
  CRSYNC_RETURN_IF_ERROR(s);
  *walked = true;
  return Status::OK();
}

Status Crr::MaxStoredPk(std::string* out, bool* any) {
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&max_pk_, [&] {
    return "SELECT pk FROM main." + RowsTable() + " ORDER BY pk DESC LIMIT 1";
  }, &st));
  int rc = sqlite3_step(st);
  *any = rc == SQLITE_ROW;
  if (*any) {
    sqlite3_value* v = sqlite3_column_value(st, 0);
    out->assign(static_cast<const char*>(sqlite3_value_blob(v)),
                static_cast<size_t>(sqlite3_value_bytes(v)));
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db_, rc);
  return Status::OK();
}

Status Crr::StepPkMetaRows(
    sqlite3_stmt* st, const std::function<Status(std::string_view, std::string_view)>& on_row) {
  auto bytes = [](sqlite3_value* v) {
    return std::string_view(static_cast<const char*>(sqlite3_value_blob(v)),
                            static_cast<size_t>(sqlite3_value_bytes(v)));
  };
  Status s;
  int rc = SQLITE_OK;
  while (s.ok() && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    s = on_row(bytes(sqlite3_column_value(st, 0)), bytes(sqlite3_column_value(st, 1)));
  }
  if (s.ok() && rc != SQLITE_DONE) s = SqliteError(db_, rc);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return s;
}

Status Crr::LoadBulk(const RowBuf& keys,
                     const std::function<Status(std::string_view, std::string_view)>& on_row) {
  if (keys.rows.empty()) return Status::OK();
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&bulk_load_, [&] {
    // CROSS JOIN keeps the buffer outside: one key lookup per buffered pk.
    return "SELECT r.pk, r.meta FROM crsync_rowbuf(?1) b CROSS JOIN main." + RowsTable() +
           " r ON r.pk = b.pk";
  }, &st));
  sqlite3_bind_pointer(st, 1, const_cast<RowBuf*>(&keys), kRowBufPointerType, nullptr);
  return StepPkMetaRows(st, on_row);
}

Status Crr::LoadRange(std::string_view lo, std::string_view hi, int64_t limit,
                      const std::function<Status(std::string_view, std::string_view)>& on_row,
                      int64_t* scanned, std::string* last) {
  *scanned = 0;
  CRSYNC_RETURN_IF_ERROR(FlushPending());
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Cached(&range_load_, [&] {
    return "SELECT pk, meta FROM main." + RowsTable() + " WHERE pk >= ?1 AND pk <= ?2 LIMIT ?3";
  }, &st));
  sqlite3_bind_blob(st, 1, lo.data(), static_cast<int>(lo.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, hi.data(), static_cast<int>(hi.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, limit);
  return StepPkMetaRows(st, [&](std::string_view pk, std::string_view meta) {
    if (++*scanned == limit) last->assign(pk.data(), pk.size());
    return on_row(pk, meta);
  });
}

Status Catalog::MainSchemaVersion(int64_t* out) {
  if (!schema_version_stmt_) {
    if (on_first_statement_) on_first_statement_();
    CRSYNC_RETURN_IF_ERROR(
        Prepare(db_, "PRAGMA main.schema_version", &schema_version_stmt_, SQLITE_PREPARE_PERSISTENT));
  }
  int rc = sqlite3_step(schema_version_stmt_.get());
  *out = rc == SQLITE_ROW ? sqlite3_column_int64(schema_version_stmt_.get(), 0) : -2;
  sqlite3_reset(schema_version_stmt_.get());
  return rc == SQLITE_ROW ? Status::OK() : SqliteError(db_, rc);
}

void Catalog::TablesMayHaveChanged() {
  // A TEMP trigger may fire before the recording triggers now.
  for (auto& c : crrs_)
    if (c) c->TriggersMayHaveChanged();
  int64_t version;
  // TEMP DDL re-prepares statements too, but changes no table of main.
  if (MainSchemaVersion(&version).ok() && version == tables_version_) return;
  tables_version_ = version;
  for (auto& c : crrs_)
    if (c) c->SchemaMayHaveChanged();
}

Status Catalog::Refresh(bool force) {
  int64_t version;
  CRSYNC_RETURN_IF_ERROR(MainSchemaVersion(&version));
  if (!force && version == schema_version_) return Status::OK();
  // Read every row first: a malformed one fails the refresh with the
  // current CRRs untouched.
  StmtPtr st;
  Status prepared = Prepare(db_, "SELECT id, name, pk_cols, cols FROM main.crsync_crrs ORDER BY id", &st);
  if (!prepared.ok()) {
    // The engine installs on a read-only database crsync never set up (so
    // that opening it works), with nothing to read: say so, not "no such
    // table".
    if (sqlite3_db_readonly(db_, "main") == 1 &&
        prepared.message().find("no such table") != std::string::npos) {
      return Status::InvalidArgument(
          "crsync: this database was never set up by crsync and is open read-only: it has no "
          "CRRs, no site id and no changes yet (open it writable once and crsync creates its "
          "tables)");
    }
    return prepared;
  }
  std::vector<std::pair<int64_t, TableSchema>> rows;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    TableSchema schema;
    const unsigned char* name = sqlite3_column_text(st.get(), 1);
    if (!name) return Status::Corruption("crsync_crrs: a CRR without a name");
    schema.name = reinterpret_cast<const char*>(name);
    CRSYNC_RETURN_IF_ERROR(DecodeNames(sqlite3_column_blob(st.get(), 2),
                                       sqlite3_column_bytes(st.get(), 2), &schema.pk_cols));
    CRSYNC_RETURN_IF_ERROR(DecodeNames(sqlite3_column_blob(st.get(), 3),
                                       sqlite3_column_bytes(st.get(), 3), &schema.cols));
    rows.emplace_back(sqlite3_column_int64(st.get(), 0), std::move(schema));
  }
  if (rc != SQLITE_DONE) return SqliteError(db_, rc);
  ++generation_;  // Crr objects may now be replaced, and declarations re-read
  std::vector<std::unique_ptr<Crr>> fresh;
  for (auto& [id, schema] : rows) {
    // Keep the existing object (and its prepared statements) when unchanged.
    Crr* old = ById(id);
    if (old && old->schema().name == schema.name && old->schema().cols == schema.cols &&
        old->schema().pk_cols == schema.pk_cols) {
      old->SchemaMayHaveChanged();
      for (auto& p : crrs_)
        if (p.get() == old) fresh.push_back(std::move(p));
    } else {
      fresh.push_back(std::make_unique<Crr>(db_, id, std::move(schema)));
    }
  }
  for (auto& p : crrs_)
    if (p) retired_.push_back(std::move(p));
  crrs_ = std::move(fresh);
  schema_version_ = version;
  return Status::OK();
}

Crr* Catalog::ById(int64_t id) {
  for (auto& c : crrs_)
    if (c && c->id() == id) return c.get();
  return nullptr;
}

Crr* Catalog::ByName(std::string_view name) {
  for (auto& c : crrs_)
    if (c && EqualNoCase(c->name(), name)) return c.get();
  return nullptr;
}

}  // namespace crsync
