// engine/catalog.h — the CRRs of one connection and their cached statements.
#ifndef CRSYNC_ENGINE_CATALOG_H_
#define CRSYNC_ENGINE_CATALOG_H_

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crsync/sqlite_handles.h"
#include "crsync/status.h"
#include "engine/feed_range.h"
#include "engine/held_rows.h"
#include "engine/meta_read_ahead.h"
#include "engine/range_keeper.h"
#include "engine/row_buf.h"
#include "engine/row_meta.h"
#include "engine/table_schema.h"
#include "engine/value.h"

namespace crsync {

// One CRR: its schema as recorded at crsql_as_crr time and lazily prepared
// statements over its metadata tables. Statements here are used only by
// code that steps them to completion before returning (recording, merging),
// never by open cursors.
class Crr {
 public:
  Crr(sqlite3* db, int64_t id, TableSchema schema);

  int64_t id() const { return id_; }
  const TableSchema& schema() const { return schema_; }
  const std::string& name() const { return schema_.name; }
  size_t slots() const { return schema_.cols.size(); }
  // Affinity of each pk column (AffinityOf), read from the table on first use.
  Status PkAffinity(const std::vector<char>** out);
  // Whether the key is the rowid (INTEGER PRIMARY KEY): every key value an
  // integer. Read with the affinities: call PkAffinity first.
  bool rowid_key() const { return rowid_key_; }
  // Affinity of column slot `slot` ('b' for none), likewise.
  Status ColAffinity(int slot, char* out);
  // Slot of column `cid`, or -1 when it is not a non-PK column.
  int SlotOf(std::string_view cid) const;

  // Physical table names, quoted for SQL.
  std::string RowsTable() const { return QuoteIdent(schema_.name + "__crsync_rows"); }
  std::string FeedTable() const { return QuoteIdent(schema_.name + "__crsync_feed"); }
  // "a" = ?1 AND "b" = ?2 ... over the pk columns, parameters from `first`.
  std::string PkWhere(int first) const;

  // Loads the metadata of row `pk`; *found says whether it exists. With
  // `use_cache`, the row last loaded this way or stored through
  // StoreMeta(cache=true) is served from memory, and a row read from storage
  // is kept (merges touch one row several times in a row, and a change that
  // loses writes nothing); lookups walking up the keys are served by a
  // read-ahead window (engine/meta_read_ahead.h). Only for use inside a
  // write transaction: every other write of the rows table, a rollback and
  // the transaction's end drop the cache.
  Status LoadMeta(std::string_view pk, RowMeta* meta, bool* found, bool use_cache = false);
  // Stores `after` for row `pk` and updates the change feed, given what was
  // stored before (`before`, empty when the row had no metadata). Runs are
  // normalized first (NormalizeRuns). `cache` keeps `after` in memory for
  // LoadMeta(use_cache=true); otherwise the cache is dropped.
  //
  // With `defer`, the row is written behind: held as one of this CRR's
  // pending rows (a later deferred store of the same row replaces `after`
  // and keeps the first `before`) and written, all of them with a few
  // statements, when kMaxPending rows are held, when anything else reads or
  // writes this CRR's metadata tables through this object, or by
  // FlushPending(). LoadMeta(use_cache=true) serves them. For merges
  // through crsql_changes, which get a peer's changes to a row one
  // statement each. Whoever reads the metadata tables by other means must
  // call FlushPending() first (ConnEngine::FlushLocalWrites does, for every
  // CRR). A failed write-behind makes every later access fail until
  // ClearFailure(): the transaction has to roll back.
  Status StoreMeta(std::string_view pk, const RowMeta& before, const RowMeta& after,
                   bool cache = false, bool defer = false);
  // How FlushPending may write. kOneRowStatements: only with statements
  // that open no statement journal, for a flush from xSavepoint. There,
  // SQLite has counted the statement that is starting but not yet opened
  // its savepoint; a nested statement with a journal would open that
  // savepoint too, before the flush, and the starting statement failing
  // would then undo the flush of rows merged before it.
  enum class FlushHow { kAny, kOneRowStatements };
  Status FlushPending(FlushHow how = FlushHow::kAny);
  static constexpr size_t kMaxPending = HeldRows::kMax;
  // Tests: makes the next FlushPending() with rows to write throw
  // std::bad_alloc once it has forgotten them (as an allocation failure
  // while binding or stepping its statements would).
  static void ThrowInNextFlushForTesting();
  // Stores `meta` for a row believed new, in one statement. *inserted is
  // false (and nothing is written) when the row already has metadata.
  Status InsertNewMeta(std::string_view pk, RowMeta meta, bool* inserted);
  // Many rows at once (engine/meta_batch.h): inserts `inserts` and
  // rewrites `updates` (pk, encoded meta; rows without / with stored
  // metadata), deletes the feed entries `feed_del` and adds `feed_add` (pk,
  // dbv, lo), with one statement each. Drops the cached row. With
  // `updates_dense` (REQUIRES: `updates` sorted by pk, and few stored rows
  // between its keys that it does not name), the updates walk the key
  // range once instead of seeking each row. `feed_add` may hold range
  // entries made by MakeFeedRanges. An entry of `feed_del`
  // that no point entry holds was a range's row: that range loses it
  // (engine/range_keeper.h).
  Status StoreBulk(const RowBuf& inserts, const RowBuf& updates, const RowBuf& feed_del,
                   const RowBuf& feed_add, bool updates_dense = false);
  // crsync::MakeFeedRanges over `entries` (this CRR's point entries): a
  // range is made only where, if given, `dense(first, last)` says no other
  // stored row lies between those keys, and no stored range entry of its
  // version covers any of its runs (RangeKeeper::Fits). When the feed
  // cannot be read, no range is made: the rows keep point entries (always
  // correct); the store that follows meets the same error, or the
  // transaction is already gone.
  void MakeFeedRanges(size_t min_rows, RowBuf* entries, RowBuf* scratch,
                      const std::function<bool(std::string_view, std::string_view)>& dense = {});
  // Rewrites, through `rewriter` (engine/row_buf.h), the metadata of the
  // rows it wants among the stored rows with first <= pk <= last, in one
  // walk, if the range holds at most `limit` stored rows; otherwise writes
  // nothing and sets *walked = false (a sparse range would cost a walk over
  // rows nobody wants). Drops the cached row. On error part of the range
  // may be rewritten: the transaction has to roll back.
  Status RewriteMetaRange(std::string_view first, std::string_view last, int64_t limit,
                          MetaRewriter* rewriter, bool* walked);
  // The largest pk with metadata (*any = false when there is none).
  Status MaxStoredPk(std::string* out, bool* any);
  // Calls on_row(pk, encoded meta) for each row of `keys` (by pk) that has
  // metadata, with one statement; stops at the first error.
  Status LoadBulk(const RowBuf& keys,
                  const std::function<Status(std::string_view, std::string_view)>& on_row);
  // Calls on_row(pk, encoded meta) for the stored rows with lo <= pk <= hi
  // in key order, at most `limit` of them; *scanned says how many, and
  // *last the last pk seen. One range scan: cheaper than a lookup per key
  // when the wanted keys are dense.
  Status LoadRange(std::string_view lo, std::string_view hi, int64_t limit,
                   const std::function<Status(std::string_view, std::string_view)>& on_row,
                   int64_t* scanned, std::string* last);
  // Forgets the cached row, the pending rows (unwritten) and user row
  // values: after a rollback, at the transaction's end (after its pending
  // rows were flushed), and when the tables were rewritten behind this
  // object (after a flush). A failed write-behind stays failed: only
  // ClearFailure() ends that.
  void DropCache() {
    DropReadCaches();
    held_.Forget();
    ranges_.Forget();
  }
  // Whether a write-behind failed or unwound in this transaction.
  bool failed() const { return held_.failed(); }
  // Ends that state: only once what it left half-written is undone, at the
  // transaction's end or a rollback to a savepoint opened before it (its
  // held rows were written when that savepoint opened).
  void ClearFailure() { held_.ClearFailure(); }
  // Forgets what was read (cached row, read-ahead, user row values) but
  // keeps the pending rows: after a merge's own user-table write rolled
  // back, which undid nothing the pending rows describe.
  void DropReadCaches() {
    cache_valid_ = false;
    row_valid_ = false;
    ahead_.Drop();
  }
  // How many times this object has written pending rows so far.
  uint64_t pending_flushes() const { return pending_flushes_; }
  // Makes every later access fail with `why` until ClearFailure().
  void FailPending(const Status& why) { held_.Fail(why); }
  // Whether the table has triggers besides the engine's own: a user-table
  // write may then fail part-way (RAISE(FAIL) keeps what came before it).
  Status HasUserTriggers(bool* out);
  // Forgets what was derived from the table's declaration (schema change).
  void SchemaMayHaveChanged() {
    affinities_loaded_ = false;
    shape_ = Shape::kUnknown;
    recorders_first_ = 0;
  }
  // Whether RecordersFirstRefusal (engine/trigger_order.h) found no
  // trigger that could hide a write of `event` (0 insert, 1 update, 2
  // delete) from the recording triggers, since the last schema change.
  bool recorders_first(int event) const { return (recorders_first_ >> event) & 1; }
  void TriggersMayHaveChanged() { recorders_first_ = 0; }
  void set_recorders_first(int event) { recorders_first_ |= 1u << event; }
  // Fails, naming the columns that differ, when the table's columns are no
  // longer the ones recorded for the CRR: it was altered without
  // crsql_begin_alter/crsql_commit_alter (§14.1), so its triggers pass
  // the old column list and writes would silently stop replicating (an
  // added column) or be recorded under a gone name (a renamed one).
  // Checked once per schema change (SchemaMayHaveChanged); a table that
  // cannot be read passes (what fails next names it).
  Status CheckShape();
  // True when the last CheckShape found the table as recorded and no
  // schema change came since: the hot paths skip the call then.
  bool ShapeMatches() const { return shape_ == Shape::kMatches; }
  // Whether the last CheckShape failed because the CRR lost its recording
  // triggers with no alter open (its table dropped and made again, or a
  // trigger dropped, behind the engine's back).
  bool lost_recorders() const { return shape_ == Shape::kDrifted && lost_recorders_; }

  // User-table statements, pk values bound at 1..npk by the caller.
  Status UserUpsert(int slot, sqlite3_stmt** out);  // + value at npk+1
  // Upsert of several columns (values at npk+1 ... in `slots` order).
  Status UserUpsertColumns(const std::vector<int>& slots, sqlite3_stmt** out);
  // The same for many rows: their pk and `slots` values, in that order, as
  // the columns of a ValueRows bound at ?1 (engine/row_buf.h).
  Status UserUpsertBulk(const std::vector<int>& slots, sqlite3_stmt** out);
  Status UserInsertPk(sqlite3_stmt** out);
  Status UserDelete(sqlite3_stmt** out);
  // The value of column `slot` of user row `pk` (packed: `key`), for merge
  // tie-breaks (§11.4). The whole row is read with one statement and, with
  // `keep`, kept for the next call with the same key: a peer's changes to
  // one row arrive together, and those that tie write nothing. Every write
  // of the table fires the recording triggers, which call DropRowValues;
  // rollbacks and the transaction's end call DropCache. So `keep` is only
  // for when the triggers are in place (no alter open). *out is valid until
  // the next call on this Crr. Corruption when the row does not exist.
  Status UserColumnValue(std::string_view key, const std::vector<Value>& pk, int slot, bool keep,
                         const Value** out);
  void DropRowValues() { row_valid_ = false; }
  // Whether user row `pk` exists.
  Status UserRowExists(const std::vector<Value>& pk, bool* out);

 private:
  // Whether a range entry `c` may be made (RangeKeeper::Fits); false when
  // the feed cannot be read.
  bool RangeFits(const RangeCandidate& c);
  // Steps `st`, whose rows are (pk, meta), through on_row; then resets it
  // and clears its bindings.
  Status StepPkMetaRows(sqlite3_stmt* st,
                        const std::function<Status(std::string_view, std::string_view)>& on_row);
  // Returns the statement in *slot, preparing make_sql() on first use.
  template <typename MakeSql>
  Status Cached(StmtPtr* slot, MakeSql&& make_sql, sqlite3_stmt** out) {
    if (!*slot) CRSYNC_RETURN_IF_ERROR(Prepare(db_, make_sql(), slot, SQLITE_PREPARE_PERSISTENT));
    *out = slot->get();
    return Status::OK();
  }

  sqlite3* db_;
  int64_t id_;
  TableSchema schema_;
  std::string meta_buf_;
  std::vector<FeedRun> runs_a_, runs_b_;
  Status LoadAffinities();
  bool affinities_loaded_ = false;
  enum class Shape { kUnknown, kMatches, kDrifted };  // kDrifted is checked again each time
  Shape shape_ = Shape::kUnknown;
  bool lost_recorders_ = false;  // see lost_recorders()
  unsigned recorders_first_ = 0;  // bit per event: see recorders_first()
  std::string drift_;  // the message, when kDrifted
  bool rowid_key_ = false;  // the key is the rowid (loaded with the affinities)
  bool user_triggers_ = false;  // triggers besides ours (loaded with the affinities)
  std::vector<char> pk_affinity_, col_affinity_;
  bool cache_valid_ = false;
  std::string cache_pk_;
  RowMeta cache_meta_;
  StmtPtr get_meta_, put_meta_, new_meta_, feed_add_, feed_del_, user_insert_pk_, user_delete_;
  StmtPtr bulk_insert_, bulk_update_, bulk_feed_add_, bulk_load_, max_pk_;
  StmtPtr range_load_, ahead_load_, bulk_walk_, range_count_, rewrite_walk_;
  MetaReadAhead ahead_;
  RangeKeeper ranges_;
  HeldRows held_;  // the rows written behind (StoreMeta with defer)
  uint64_t pending_flushes_ = 0;
  // *more = whether more than `limit` rows are stored with first <= pk <= last.
  Status MoreStoredRowsThan(std::string_view first, std::string_view last, int64_t limit,
                            bool* more);
  // StoreBulk's statements, with nothing flushed or dropped first.
  Status WriteBulk(const RowBuf& inserts, const RowBuf& updates, const RowBuf& feed_del,
                   const RowBuf& feed_add, bool updates_dense);
  // Writes `norm` (normalized) as row `pk`'s metadata over `before`.
  Status WriteMeta(std::string_view pk, const RowMeta& before, const RowMeta& norm);
  // Adds and removes feed entries so the feed lists exactly the runs of
  // `after` instead of those of `before` (both already normalized).
  Status WriteFeed(std::string_view pk, const RowMeta& before, const RowMeta& after);
  // Reads the window of ahead_ from `pk` on.
  Status LoadAhead(std::string_view pk);
  std::vector<StmtPtr> user_upsert_;
  StmtPtr user_get_row_, user_row_exists_;
  bool row_valid_ = false;
  std::string row_pk_;
  std::vector<Value> row_vals_;
  std::map<std::vector<int>, StmtPtr> user_upsert_multi_, user_upsert_bulk_;
  std::string UpsertSql(const std::vector<int>& slots, const std::string& source) const;
};

// The set of CRRs recorded in crsync_crrs, in creation order.
class Catalog {
 public:
  explicit Catalog(sqlite3* db) : db_(db) {}

  // (Re)reads crsync_crrs. Cheap when nothing changed (schema cookie).
  Status Refresh(bool force = false);
  Crr* ById(int64_t id);
  Crr* ByName(std::string_view name);  // case-insensitive, like SQLite
  const std::vector<std::unique_ptr<Crr>>& all() const { return crrs_; }
  // Changes whenever the CRR list is re-read or cleared: a Crr* or anything
  // derived from a Crr's declaration is valid only within one generation.
  uint64_t generation() const { return generation_; }
  // Forgets everything; the next Refresh reloads.
  void Invalidate() { schema_version_ = -1; }
  // Some table's declaration may have changed (this connection's own DDL
  // too): unless main's schema version is the one seen at the last call,
  // every CRR re-reads what it derived from its table on next use.
  void TablesMayHaveChanged();
  // PRAGMA main.schema_version.
  Status MainSchemaVersion(int64_t* out);
  // Frees the CRR objects Refresh replaced. Until then they stay alive,
  // unused: a merge or flush in progress may still hold one (it notices
  // the new generation and looks its CRR up again). Called when the
  // connection commits, when nothing of ours is running.
  void ReleaseRetired() { retired_.clear(); }
  // True after Invalidate until the next Refresh: the CRRs held may be
  // ones a rollback undid.
  bool invalidated() const { return schema_version_ == -1; }
  // Writes every CRR's pending row (Crr::StoreMeta with defer).
  Status FlushPending(Crr::FlushHow how = Crr::FlushHow::kAny) {
    for (auto& c : crrs_)
      if (c) CRSYNC_RETURN_IF_ERROR(c->FlushPending(how));
    return Status::OK();
  }
  uint64_t pending_flushes() const {
    uint64_t n = 0;
    for (auto& c : crrs_)
      if (c) n += c->pending_flushes();
    return n;
  }
  void FailPending(const Status& why) {
    for (auto& c : crrs_)
      if (c) c->FailPending(why);
  }
  void DropReadCaches() {
    for (auto& c : crrs_)
      if (c) c->DropReadCaches();
  }
  // Drops every CRR's cached and pending row (at transaction end and
  // rollbacks).
  void DropCaches() {
    for (auto& c : crrs_)
      if (c) c->DropCache();
  }
  // Whether some CRR's write-behind has failed (Crr::failed()).
  bool Failed() const {
    for (const auto& c : crrs_)
      if (c && c->failed()) return true;
    return false;
  }
  // DropCaches() and every CRR's ClearFailure(): at the transaction's end
  // and rollbacks to a savepoint opened before the failure.
  void DropCachesAndFailures() {
    for (auto& c : crrs_) {
      if (!c) continue;
      c->DropCache();
      c->ClearFailure();
    }
  }
  // Runs `f` before the catalog caches its first statement (at the first
  // Refresh, and the first after Clear): every statement of the catalog and
  // its CRRs is prepared after that one.
  void set_on_first_statement(std::function<void()> f) { on_first_statement_ = std::move(f); }
  // Finalizes every cached statement (before the connection closes). May
  // be re-entered: finalizing a statement can disconnect a virtual table
  // whose disconnect calls this again, so everything is taken out of the
  // members before it is destroyed.
  void Clear() {
    ++generation_;
    schema_version_ = -1;
    std::vector<std::unique_ptr<Crr>> crrs = std::move(crrs_), retired = std::move(retired_);
    crrs_.clear();
    retired_.clear();
    schema_version_stmt_.reset();
  }

 private:
  sqlite3* db_;
  int64_t schema_version_ = -1;
  int64_t tables_version_ = -1;  // main's schema version at TablesMayHaveChanged
  uint64_t generation_ = 0;
  StmtPtr schema_version_stmt_;
  std::function<void()> on_first_statement_;
  std::vector<std::unique_ptr<Crr>> crrs_;
  std::vector<std::unique_ptr<Crr>> retired_;  // replaced by Refresh, not yet freed
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_CATALOG_H_
