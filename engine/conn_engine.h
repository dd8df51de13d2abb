// engine/conn_engine.h — the per-connection state of the CRR engine.
//
// One ConnEngine lives for each connection the extension is loaded on. It
// owns the connection's clocks (committed and pending db_version, seq), the
// sync bit, the catalog of CRRs, the site-id ordinal cache and config. It is
// created by the extension's init and destroyed when the connection closes.
//
// Thread safety: like the sqlite3* it belongs to, used by one thread at a time.
#ifndef CRSYNC_ENGINE_CONN_ENGINE_H_
#define CRSYNC_ENGINE_CONN_ENGINE_H_

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crsync/sqlite_handles.h"
#include "crsync/status.h"
#include "engine/catalog.h"
#include "engine/meta_batch.h"
#include "engine/write_log.h"

namespace crsync {

constexpr size_t kSiteIdLen = 16;

// The error of a db_version past kMaxChangeVersion, which no peer accepts.
Status DbVersionExhausted();

class ConnEngine {
 public:
  // Creates the bookkeeping tables when missing (and the db is writable),
  // loads or creates the site id and config, installs commit/rollback hooks.
  static Status Open(sqlite3* db, std::unique_ptr<ConnEngine>* out);
  ~ConnEngine();
  // The engine installed on `db`, or nullptr. An engine whose
  // installation failed half way (crsync_engine_init ran out of memory) is
  // found too, with installed() false: a later call finishes it.
  static ConnEngine* Find(sqlite3* db);
  bool installed() const { return installed_; }
  void MarkInstalled() { installed_ = true; }

  sqlite3* db() const { return db_; }
  const std::string& site_id() const { return site_id_; }
  // site_id(), read again while it is empty: a connection that opened the
  // database read-only before crsync set it up finds the id made since.
  const std::string& CurrentSiteId();
  // The tag this database's recording triggers pass in their token
  // (recorder.h: TriggerToken); 0 until one could be recorded.
  // The tag for recording triggers made now, read (and recorded if
  // missing) in the current transaction, which must be a write one.
  Status TagForTriggers(int64_t* tag);
  // The CRR id in the token a recording trigger passed, or an error when
  // the trigger is another database's (CrrIdOfToken).
  Status CheckTriggerToken(int64_t token, int64_t* crr_id) {
    if (trigger_tag_ != 0 && (token >> 32) == trigger_tag_) {  // the hot path: main's own
      *crr_id = token & 0xffffffff;
      return Status::OK();
    }
    return CheckTriggerTokenSlow(token, crr_id);
  }
  Catalog& catalog() { return catalog_; }

  // --- clocks (crr-semantics §6) ---
  // The committed db_version, refreshed when another connection committed.
  Status CommittedDbVersion(int64_t* out);
  // The pending version for a local write: max(committed + 1, pending).
  Status LocalDbVersion(int64_t* out);
  // max(committed + 1, pending, floor); becomes the pending value.
  Status NextDbVersion(int64_t floor, int64_t* out);
  int64_t TakeSeq() { return seq_++; }
  // The end of a transaction that may never have joined the capture (its
  // merges all lost, yet took seqs): seq starts at 0 in every transaction
  // (§6.2). One that joined is ended by the capture table, which needs the
  // transaction's state until then.
  void TransactionEndedOutsideCapture() {
    if (!capture_joined_) seq_ = 0;
  }
  int64_t PeekSeq() const { return seq_; }
  // Back to an earlier count, after a merge that failed took seqs.
  void RestoreSeq(int64_t v) { seq_ = v; }
  // What crsql_changes holds for the open transaction beyond the engine's
  // own state (its receive cursors): written by `writer` when the
  // connection closes mid-transaction (StoreBeforeClose). Set while that
  // table is in a transaction; nullptr clears it.
  void set_close_writer(std::function<Status()> writer) { close_writer_ = std::move(writer); }
  // Marks every seq below `end` taken (bulk paths that stamp many at once).
  void TakeSeqsBelow(int64_t end) {
    if (seq_ < end) seq_ = end;
  }

  bool sync_bit() const { return sync_bit_; }
  // Whether main stores text as UTF-16 (PRAGMA encoding, read at open).
  bool utf16() const { return utf16_; }
  void set_sync_bit(bool on) { sync_bit_ = on; }
  // Whether a merge is writing the user's table right now (SyncBitScope):
  // statements then opened are the merge's own (or its user triggers').
  bool in_merge_write() const { return merge_writes_ > 0; }
  void enter_merge_write(bool on) { merge_writes_ += on ? 1 : -1; }
  // The rows merges are writing into user tables right now (registered by
  // MergingRowsScope around those writes). A user trigger fired by such a
  // write may merge too: into another row that is fine, but into one of
  // these its clocks would be lost (the outer merge stores the row's
  // metadata afterwards), so Merger refuses it.
  class MergingRows {
   public:
    virtual bool Holds(int64_t crr_id, std::string_view key) const = 0;

   protected:
    ~MergingRows() = default;
  };
  bool RowBeingMerged(int64_t crr_id, std::string_view key) const {
    for (const MergingRows* r : merging_rows_)
      if (r->Holds(crr_id, key)) return true;
    return false;
  }
  void push_merging_rows(const MergingRows* r) { merging_rows_.push_back(r); }
  void pop_merging_rows() { merging_rows_.pop_back(); }
  int64_t rows_impacted() const { return rows_impacted_; }
  void AddRowsImpacted(int64_t n) { rows_impacted_ += n; }
  // Back to an earlier count, when the merges since were rolled back.
  void RestoreRowsImpacted(int64_t n) { rows_impacted_ = n; }
  // The version this transaction stamps (0 = none taken yet), and putting
  // back an earlier one after a merge that failed (its writes undone).
  int64_t pending_version() const { return pending_; }
  void RestorePendingVersion(int64_t v) {
    pending_ = v;
    if (v == 0) txn_first_ = 0;
  }
  // The merge-equal-values setting as set (only 1 enables it, §16);
  // re-read after a rollback (which may have undone a crsql_config_set),
  // and after another connection committed (which may have set it: a
  // sidecar's connection then breaks ties as the application's set).
  // Asked only for ties and crsql_config_get, so the check (PRAGMA
  // data_version) stays off the merge's usual path.
  int64_t merge_equal_values_setting() {
    if (config_stale_ || DataVersion() != config_data_version_) ReloadConfig();
    return merge_equal_values_;
  }
  bool merge_equal_values() { return merge_equal_values_setting() == 1; }
  void set_merge_equal_values(int64_t v) { merge_equal_values_ = v; }

  // --- local writes, captured now and stored later (engine/recorder.h) ---
  // The recording triggers append one LocalWrite per row written; nothing
  // else happens in the statement. FlushLocalWrites() turns them into
  // clocks, metadata and feed entries: before anything reads those (change
  // reads, merges, alters), and in the capture table's xSync at COMMIT.
  // Statement and savepoint rollbacks drop the writes they undid.
  using LocalWrite = WriteLog::Write;
  const WriteLog& local_writes() const { return local_writes_; }
  // Appends a captured write. A transaction that writes very many rows has
  // them stored as it goes (every kFlushEvery writes), and the stored ones
  // that no open savepoint may need again are dropped from the log, so a
  // bulk load holds a bounded log (a few tens of MB); what was stored is
  // still undone with the statement or savepoint if they roll back. Not
  // more often: storing inside a statement that has a statement journal
  // copies the user-table pages the page cache spills meanwhile into it (at
  // every 64k writes that made a 100k-row load 1.7x slower).
  Status AddLocalWrite(const LocalWrite& w);
  static constexpr size_t kFlushEvery = size_t{1} << 20;
  void set_flush_every_for_testing(size_t n) { flush_every_ = n; }
  size_t flushed_writes() const { return flushed_; }
  // True once this transaction's capture table joined it (it then hears
  // of every savepoint, rollback and commit).
  bool capture_joined() const { return capture_joined_; }
  // The first few writes of a transaction are recorded at once, as before
  // capture existed: a short transaction then needs no capture table.
  // Once a transaction captures, all its later writes do (write order).
  bool TakeDirectWrite() {
    if (capturing_ || direct_writes_left_ == 0) return false;
    --direct_writes_left_;
    return true;
  }
  void set_capture_joined(bool on) { capture_joined_ = on; }
  // This transaction changed the catalog or the config (crsql_as_crr, the
  // alters, ...): a ROLLBACK TO may undo that, so it invalidates both. Other
  // transactions' statement rollbacks keep them (re-reading costs).
  void set_catalog_changed_in_txn() { catalog_changed_in_txn_ = true; }
  // The log keeps every write of the transaction; [0, flushed) are stored.
  // A rollback to a savepoint undoes what was stored since it opened (SQLite
  // rolls those rows back), so those writes are stored again later.
  // It also puts back the pending version and seq counter as they were
  // when the savepoint opened: what a merge undone by it raised them to
  // must not stamp the writes stored again, or later ones.
  void CaptureSavepoint(int level) {
    capture_marks_.push_back(
        CaptureMark{level, local_writes_.size(), flushed_, pending_, txn_first_, seq_});
  }
  void CaptureRelease(int level) {
    while (!capture_marks_.empty() && capture_marks_.back().level >= level) capture_marks_.pop_back();
  }
  void CaptureRollbackTo(int level);
  void CaptureEnd();  // commit or rollback: forget everything
  // The end of a transaction the capture table joined: its xCommit (after
  // the commit succeeded) and xRollback. Every transaction that takes a
  // db_version joins (NextDbVersion), so these, and not SQLite's commit
  // and rollback hooks, are how the engine hears of its ends: the hooks
  // are the application's (one per connection; setting one replaces the
  // last) and are left to it.
  void TransactionCommitted() noexcept;
  void TransactionRolledBack() noexcept;
  // Makes the capture table join the current transaction, once. Fails,
  // naming it, while a table hides one of crsync's eponymous tables.
  Status JoinCapture();
  // Inside an explicit transaction that has not touched the database yet,
  // takes the write lock (JoinCapture) before an engine call reads: after
  // a read, the first write is an upgrade, which SQLite does not retry under
  // busy_timeout (SQLITE_BUSY at once while another connection writes),
  // where a first write waits. A no-op otherwise, and on a read-only database.
  Status WriteLockBeforeReading();
  // Stores everything this transaction holds back: the rows merges write
  // behind (Crr::StoreMeta with defer, which come first: a merge stores the
  // log before it merges), then the captured writes. Called before
  // anything reads metadata other than through Crr, and at COMMIT.
  Status FlushLocalWrites();
  // Stores the captured writes only (no-op when there are none): what a
  // merge through crsql_changes does first. The recorder installs the
  // function that does it. After a failure it keeps failing until the
  // transaction ends, so part of the log is never committed.
  Status FlushCapturedWrites();
  void set_local_write_flusher(Status (*fn)(ConnEngine*)) { flusher_ = fn; }
  MetaBatch& local_batch() { return local_batch_; }

  // --- crsql_begin_alter / crsql_commit_alter (engine/alter.cc) ---
  // Alters begun and not yet committed on this connection, by table name
  // (as declared). While any is open, some user-table writes fire no
  // recording trigger.
  struct OpenAlter {
    int64_t changes;       // sqlite3_total_changes64 when it began
    int64_t data_version;  // PRAGMA data_version then: moves with other connections' commits
    // The table was altered before begin (Crr::CheckShape failed) or an
    // abandoned alter's guard stood: rows may hold values written without
    // clocks, so commit reads every row.
    bool drifted = false;
    uint64_t txn = 0;  // txn_serial() at begin: a rollback of that transaction undoes it
    // The token its guard triggers carry (AlterGuardSql) and its mark in
    // crsql_master holds (OpenAlterOwner): random, positive. When the mark
    // holds another, a begin on another connection took the alter over,
    // and it is not this connection's.
    int64_t owner = 0;
    int64_t crr_id = 0;
  };
  // Counts the transactions this connection ended.
  uint64_t txn_serial() const { return txn_serial_; }
  std::map<std::string, OpenAlter>& open_alters() { return open_alters_; }
  // Alters this connection committed in the transaction still open, as
  // they were before their commit: a rollback of the commit (ROLLBACK, or
  // ROLLBACK TO a savepoint before it) leaves such an alter open again, its
  // guard and mark holding this connection's token, and it is this
  // connection's again (TransactionRolledBack; ConfirmOpenAlters after a
  // ROLLBACK TO). Forgotten when the transaction commits.
  // (A list: one table's alter may be begun and committed again.)
  std::vector<std::pair<std::string, OpenAlter>>& committed_alters() { return committed_alters_; }
  // A ROLLBACK TO may have undone a crsql_begin_alter of this transaction
  // (its recording triggers are back): ConfirmOpenAlters (alter.h) then
  // forgets it before this connection next acts as its owner, and at the
  // latest before the transaction commits (while no other connection can
  // have begun an alter of the table since).
  bool alters_unsure() const { return alters_unsure_; }
  // Another connection may have taken an open alter over (its begin), or
  // finished it, since they were last confirmed: it committed since
  // (PRAGMA data_version). Costs a statement only while an alter is open.
  bool alters_may_have_moved() {
    return !open_alters_.empty() && DataVersion() != alters_data_version_;
  }
  void set_alters_unsure(bool unsure) {
    alters_unsure_ = unsure;
    if (!unsure) alters_data_version_ = DataVersion();
  }

  // While a hook is set, the internal SQL function crsync_internal_remap
  // calls it with its arguments; otherwise that function fails. The caller
  // owns the hook and clears it before the hook dies.
  using SqlHook = std::function<void(sqlite3_context*, int, sqlite3_value**)>;
  void set_remap_hook(SqlHook* hook) { remap_hook_ = hook; }
  SqlHook* remap_hook() const { return remap_hook_; }

  // --- site ids (§3) ---
  // The ordinal of `site` (16 bytes); 0 for this site. With create=false an
  // unknown site gives *ord = -1.
  Status SiteOrdinal(std::string_view site, bool create, int64_t* ord);
  // A ROLLBACK TO may have happened (or may have, since the last call): site
  // ids this transaction inserted are re-checked before their next use.
  void SitesMayHaveRolledBack() {
    if (tentative_sites_.empty()) return;
    unverified_sites_ = tentative_sites_;
    reload_sites_ = true;  // at the end of the transaction, whatever happens
  }
  // The 16-byte id of ordinal `ord`; empty when unknown.
  const std::string& SiteIdOf(int64_t ord);

  // --- the catalog a merge resolves tables in ---
  // Refreshes the catalog (one PRAGMA) if it has not been checked since
  // CatalogMayBeStale() or was invalidated: another connection's committed
  // alter, or a rollback of this one's, may have changed a CRR the catalog
  // still holds. Merges call this before they resolve a table.
  Status CheckCatalog() {
    if (catalog_checked_ && !catalog_.invalidated()) return Status::OK();
    CRSYNC_RETURN_IF_ERROR(catalog_.Refresh());
    catalog_checked_ = true;
    return Status::OK();
  }
  // A new transaction, or a new batch of merges: the next CheckCatalog()
  // refreshes.
  void CatalogMayBeStale() { catalog_checked_ = false; }

  // Rebuilds the statement that computes the stored max db_version (after
  // the set of CRRs changed).
  void CatalogChanged();
  // Finalizes every statement this engine caches; they are re-prepared on
  // demand. Called before the connection closes and by crsql_finalize; may
  // be re-entered.
  void ReleaseStatements();
  // The receive-cursor upsert of Merger::TrackPeer (`sql`, the same text on
  // every call), prepared once and cached here rather than in the Merger, so
  // that ReleaseStatements finalizes it with the engine's own. *out is
  // borrowed until the next ReleaseStatements.
  Status TrackPeerStatement(const char* sql, sqlite3_stmt** out);
  // The close watch was disconnected (the connection closes, or a close
  // failed): stores what a write transaction holds in memory
  // (StoreBeforeClose), releases the statements, and has the watch
  // connected again before the next one is cached.
  void CloseWatchDisconnected();

 private:
  explicit ConnEngine(sqlite3* db) : db_(db), catalog_(db), local_batch_(&catalog_) {
    catalog_.set_on_first_statement([this] { ArmCloseWatch(); });
  }
  Status Bootstrap();
  // Connects the close watch again if a failed close disconnected it, so
  // that the next close releases what is about to be cached.
  void ArmCloseWatch();
  // sqlite3_close() disconnects the close watch, then rolls back the
  // connection's virtual tables (so crsync_capture ends the engine's
  // transaction), and only then fails with SQLITE_BUSY if an application
  // statement is still open, leaving the transaction open: it may go on to
  // commit. So when a statement is still running (the close will fail), a
  // write transaction's captured writes, written-behind merge metadata and
  // receive cursors are stored here, into the transaction, first.
  void StoreBeforeClose();
  // Prepare(), persistent, for a statement this engine caches.
  Status PrepareCached(const std::string& sql, StmtPtr* out);
  // Creates what is missing (tables, the `clock` alias, our site id); run
  // in a write transaction.
  Status WriteBootstrap();
  bool HasClockAlias() const;
  Status CheckTriggerTokenSlow(int64_t token, int64_t* crr_id);
  Status CheckReservedNames();
  // Reads this database's trigger tag; when it has none and `record`,
  // records one (in the current transaction, or one of its own).
  Status LoadTriggerTag(bool record);
  Status CheckMetaFormat(bool readonly);
  Status LoadSites();
  // The ordinal crsql_site_id holds for `site`, -1 when none.
  Status StoredSiteOrdinal(std::string_view site, int64_t* ord);
  void CacheSite(std::string_view site, int64_t ord);
  Status RecomputeCommitted();
  Status FeedHasVersion(int64_t dbv, bool* present);
  unsigned DataVersion();
  void EndTransaction();

  sqlite3* db_;
  std::string site_id_;
  // crsql_master's crsync_trigger_tag: a random number recorded once per
  // database. bare_trigger_ids_: its CRRs had triggers before it was.
  int64_t trigger_tag_ = 0;
  bool bare_trigger_ids_ = true;
  Catalog catalog_;
  int64_t committed_ = 0;
  int64_t pending_ = 0;  // 0 = no local version taken in this transaction
  // The first version this transaction took (0 = none): every row it
  // stored has one at least as high, so versions below are committed.
  int64_t txn_first_ = 0;
  uint64_t dbv_generation_ = 0;  // catalog generation max_dbv_/has_dbv_ were built for
  int64_t seq_ = 0;
  unsigned data_version_ = ~0u;
  bool sync_bit_ = false;
  bool utf16_ = false;
  int merge_writes_ = 0;
  std::vector<const MergingRows*> merging_rows_;
  std::map<std::string, OpenAlter> open_alters_;
  std::vector<std::pair<std::string, OpenAlter>> committed_alters_;
  bool alters_unsure_ = false;
  unsigned alters_data_version_ = ~0u;  // DataVersion() when the alters were last confirmed
  uint64_t txn_serial_ = 0;
  int64_t merge_equal_values_ = 0;
  bool config_stale_ = false;
  unsigned config_data_version_ = ~0u;  // DataVersion() when the config was read
  void ReloadConfig() noexcept;
  int64_t rows_impacted_ = 0;
  SqlHook* remap_hook_ = nullptr;
  bool sites_loaded_ = false;
  std::vector<std::string> sites_;  // by ordinal
  std::unordered_map<std::string, int64_t> site_ords_;
  StmtPtr max_dbv_, has_dbv_;
  // pending_ of this connection's last committed transaction, until
  // CommittedDbVersion() has checked it against the feeds; 0 = none.
  int64_t own_commit_ = 0;
  StmtPtr insert_site_, check_site_, data_version_stmt_;
  // Site ids this transaction inserted into crsql_site_id, and those of them
  // to re-check before reuse (a ROLLBACK TO may have removed them).
  std::unordered_set<std::string> tentative_sites_, unverified_sites_;
  bool reload_sites_ = false;
  WriteLog local_writes_;
  struct CaptureMark {
    int level;       // SQLite's savepoint level
    size_t size;     // log size when it opened
    size_t flushed;  // stored writes when it opened
    int64_t pending = 0, txn_first = 0, seq = 0;  // the version state then
  };
  std::vector<CaptureMark> capture_marks_;
  size_t flush_every_ = kFlushEvery;
  size_t flushed_ = 0;
  bool capture_joined_ = false;
  bool capturing_ = false;  // this transaction has captured a write (AddLocalWrite)
  bool catalog_changed_in_txn_ = false;
  bool catalog_checked_ = false;  // see CheckCatalog
  static constexpr int kDirectWrites = 4;
  int direct_writes_left_ = kDirectWrites;
  bool flushing_ = false;
  Status flush_failure_;  // sticky until the transaction ends
  bool capture_lost_ = false;  // a savepoint's mark was lost: likewise
  Status (*flusher_)(ConnEngine*) = nullptr;
  MetaBatch local_batch_;
  StmtPtr capture_join_;
  StmtPtr track_peer_;  // see TrackPeerStatement
  bool close_watch_lost_ = false;  // see CloseWatchDisconnected
  bool closing_ = false;           // StoreBeforeClose is running
  std::function<Status()> close_writer_;
  bool installed_ = false;         // every registration of init succeeded
  int capture_join_prepares_ = 0;  // its SQLITE_STMTSTATUS_REPREPARE, last seen
  bool names_checked_ = false;     // CheckReservedNames passed at that prepare
};

// A merge's user-table write: sets the connection's sync bit for the
// lifetime of the scope, so the recording triggers ignore it (§11.7), and
// marks the connection as in_merge_write(). The
// previous value comes back at the end: a nested merge (from a user trigger)
// must not clear the bit while the outer write's triggers still run.
class SyncBitScope {
 public:
  explicit SyncBitScope(ConnEngine* e) : e_(e), was_(e->sync_bit()) {
    e_->set_sync_bit(true);
    e_->enter_merge_write(true);
  }
  ~SyncBitScope() {
    e_->enter_merge_write(false);
    e_->set_sync_bit(was_);
  }
  SyncBitScope(const SyncBitScope&) = delete;
  SyncBitScope& operator=(const SyncBitScope&) = delete;

 private:
  ConnEngine* e_;
  bool was_;
};

// Registers `rows` as being merged (ConnEngine::RowBeingMerged) for the
// lifetime of the scope.
class MergingRowsScope {
 public:
  MergingRowsScope(ConnEngine* e, const ConnEngine::MergingRows* rows) : e_(e) {
    e_->push_merging_rows(rows);
  }
  ~MergingRowsScope() { e_->pop_merging_rows(); }
  MergingRowsScope(const MergingRowsScope&) = delete;
  MergingRowsScope& operator=(const MergingRowsScope&) = delete;

 private:
  ConnEngine* e_;
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_CONN_ENGINE_H_
