#include "engine/conn_engine.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "common/guard.h"
#include "engine/functions.h"

namespace crsync {
namespace {

constexpr char kBootstrapSql[] =
    "CREATE TABLE IF NOT EXISTS main.crsql_site_id("
    "  site_id BLOB NOT NULL, ordinal INTEGER PRIMARY KEY);"
    "CREATE UNIQUE INDEX IF NOT EXISTS main.crsql_site_id_site_id ON crsql_site_id(site_id);"
    "CREATE TABLE IF NOT EXISTS main.crsql_master(key TEXT PRIMARY KEY, value ANY);"
    "CREATE TABLE IF NOT EXISTS main.crsql_tracked_peers("
    "  site_id BLOB NOT NULL, version INTEGER NOT NULL, seq INTEGER DEFAULT 0,"
    "  tag INTEGER, event INTEGER,"
    "  clock INTEGER GENERATED ALWAYS AS (version) VIRTUAL,"
    "  PRIMARY KEY (site_id, tag, event)) STRICT;"
    "CREATE TABLE IF NOT EXISTS main.crsync_crrs("
    "  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    "  pk_cols BLOB NOT NULL, cols BLOB NOT NULL);"
    "INSERT OR IGNORE INTO main.crsql_master(key, value) VALUES ('crsqlite_version', 160300);"
    "INSERT OR IGNORE INTO main.crsql_master(key, value) VALUES ('crsync_meta_format', 4);"
    // The recording triggers' tag (ConnEngine::LoadTriggerTag).
    "INSERT OR IGNORE INTO main.crsql_master(key, value) VALUES "
    "  ('crsync_trigger_tag', max(1, random() & 1073741823)),"
    "  ('crsync_bare_trigger_ids', EXISTS (SELECT 1 FROM main.crsync_crrs));";

// The encoding of the rows tables' `meta` blobs (engine/row_meta.cc) and of
// the feed (engine/feed_range.h) that this build reads and writes. Format 2
// is format 3 without feed range entries, and format 3 is format 4 without
// counted ones: this build reads both and records 4 (when it may write),
// since older builds would take counted ranges for rows that are not there.
constexpr int64_t kMetaFormat = 4;
constexpr int64_t kMetaFormatWithoutRanges = 2;
constexpr int64_t kMetaFormatUncountedRanges = 3;

std::mutex& RegistryMutex() {
  static std::mutex m;
  return m;
}
std::unordered_map<sqlite3*, ConnEngine*>& Registry() {
  static auto* r = new std::unordered_map<sqlite3*, ConnEngine*>();
  return *r;
}

// Whether main.`name` exists. A schema that cannot be read now (SQLITE_BUSY
// while another connection checkpoints under an exclusive lock, say) is an
// error, not "missing".
Status TableExists(sqlite3* db, const char* name, bool* exists) {
  int rc = sqlite3_table_column_metadata(db, "main", name, nullptr, nullptr, nullptr, nullptr,
                                         nullptr, nullptr);
  *exists = rc == SQLITE_OK;
  if (rc == SQLITE_OK || rc == SQLITE_ERROR) return Status::OK();  // ERROR: no such table
  return SqliteError(db, rc);
}

}  // namespace

Status ConnEngine::Open(sqlite3* db, std::unique_ptr<ConnEngine>* out) {
  std::unique_ptr<ConnEngine> e(new ConnEngine(db));
  // The engine is often installed before the application can set a busy
  // timeout (auto-extension at open), so a database held exclusively for a
  // moment (a checkpoint when the last connection closes) is waited for here,
  // up to about 5 s.
  Status s = e->Bootstrap();
  for (int wait_ms = 1, waited = 0; !s.ok() && s.sqlite_code() == SQLITE_BUSY && waited < 5000;
       waited += wait_ms, wait_ms = std::min(wait_ms * 2, 100)) {
    sqlite3_sleep(wait_ms);
    s = e->Bootstrap();
  }
  CRSYNC_RETURN_IF_ERROR(s);
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    Registry()[db] = e.get();
  }
  *out = std::move(e);
  return Status::OK();
}

ConnEngine::~ConnEngine() {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  auto it = Registry().find(db_);
  if (it != Registry().end() && it->second == this) Registry().erase(it);
}

ConnEngine* ConnEngine::Find(sqlite3* db) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  auto it = Registry().find(db);
  return it == Registry().end() ? nullptr : it->second;
}

Status ConnEngine::PrepareCached(const std::string& sql, StmtPtr* out) {
  ArmCloseWatch();
  return Prepare(db_, sql, out, SQLITE_PREPARE_PERSISTENT);
}

void ConnEngine::ReleaseStatements() {
  catalog_.Clear();
  max_dbv_.reset();
  has_dbv_.reset();
  insert_site_.reset();
  check_site_.reset();
  data_version_stmt_.reset();
  capture_join_.reset();
  track_peer_.reset();
}

Status ConnEngine::TrackPeerStatement(const char* sql, sqlite3_stmt** out) {
  if (!track_peer_) CRSYNC_RETURN_IF_ERROR(PrepareCached(sql, &track_peer_));
  *out = track_peer_.get();
  return Status::OK();
}

// A database whose CRRs were written by a build with another metadata
// encoding would be misread, so it is refused with the reason. One without
// CRRs gets this build's format recorded.
Status ConnEngine::CheckMetaFormat(bool readonly) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db_,
                                 "SELECT (SELECT value FROM main.crsql_master WHERE key = "
                                 "'crsync_meta_format'), EXISTS (SELECT 1 FROM main.crsync_crrs)",
                                 &st));
  int rc = sqlite3_step(st.get());
  if (rc != SQLITE_ROW) return SqliteError(db_, rc);
  const bool recorded = sqlite3_column_type(st.get(), 0) != SQLITE_NULL;
  const int64_t format = recorded ? sqlite3_column_int64(st.get(), 0) : 1;
  const bool has_crrs = sqlite3_column_int(st.get(), 1) != 0;
  st.reset();
  if (format == kMetaFormat) return Status::OK();
  if (format == kMetaFormatWithoutRanges || format == kMetaFormatUncountedRanges) {
    if (readonly) return Status::OK();  // nothing written, nothing to say
    return Exec(db_, "UPDATE main.crsql_master SET value = " + std::to_string(kMetaFormat) +
                         " WHERE key = 'crsync_meta_format'");
  }
  if (!recorded && !has_crrs) {
    if (readonly) return Status::OK();
    return Exec(db_, "INSERT INTO main.crsql_master(key, value) VALUES ('crsync_meta_format', " +
                         std::to_string(kMetaFormat) + ")");
  }
  return Status::Sqlite(SQLITE_ERROR, "crsync: this database's CRR metadata is in format " +
                       std::to_string(format) + " but this build of crsync reads format " +
                       std::to_string(kMetaFormat) +
                       "; open it with the build that wrote it (docs/storage.md)");
}

Status ConnEngine::Bootstrap() {
  const bool readonly = sqlite3_db_readonly(db_, "main") == 1;
  bool tables = true;
  for (const char* t : {"crsql_site_id", "crsql_master", "crsql_tracked_peers", "crsync_crrs"}) {
    bool exists;
    CRSYNC_RETURN_IF_ERROR(TableExists(db_, t, &exists));
    tables = tables && exists;
  }
  if (!tables && readonly) {
    // Nothing to track on a read-only database crsync never set up; one
    // that has a site id (left by cr-sqlite, or a set-up cut short) still
    // reports it.
    bool sites;
    if (TableExists(db_, "crsql_site_id", &sites).ok() && sites) LoadSites().IgnoreError();
    return Status::OK();
  }
  sites_loaded_ = false;
  if (tables) CRSYNC_RETURN_IF_ERROR(LoadSites());
  if (!readonly && (!tables || site_id_.empty() || !HasClockAlias())) {
    // In one write transaction, checked again inside: connections of
    // several processes may open a new database at once, and only one may
    // give it its site id.
    const bool own = sqlite3_get_autocommit(db_);
    Status s = own ? Exec(db_, "BEGIN IMMEDIATE") : Status::OK();
    if (s.ok()) s = WriteBootstrap();
    if (own) {
      if (s.ok()) s = Exec(db_, "COMMIT");
      if (!s.ok() && !sqlite3_get_autocommit(db_)) Exec(db_, "ROLLBACK").IgnoreError();
    }
    if (!s.ok()) {
      sites_loaded_ = false;
      site_id_.clear();
      const int code = s.sqlite_code() & 0xff;
      if (tables || (code != SQLITE_READONLY && code != SQLITE_CANTOPEN && code != SQLITE_PERM)) {
        return s;
      }
      // A database never used with crsync that cannot be written here (in
      // a directory the user cannot write, SQLite cannot create its
      // journal): it holds no CRR, so there is nothing to track, and it
      // opens as it would without crsync, like a read-only one.
      sqlite3_log(SQLITE_WARNING,
                  "crsync: %s: cannot create crsync's tables (%s); it has no CRR to track",
                  sqlite3_db_filename(db_, "main"), s.message().c_str());
      return Status::OK();
    }
  }
  CRSYNC_RETURN_IF_ERROR(CheckMetaFormat(readonly));
  // At open, a tag missing (an older database) is recorded in a transaction
  // of its own; if that cannot be done now (a lock, a caller's transaction)
  // the first triggers made record it (TagForTriggers).
  if (!readonly && sqlite3_get_autocommit(db_)) {
    if (!LoadTriggerTag(true).ok()) CRSYNC_RETURN_IF_ERROR(LoadTriggerTag(false));
  } else {
    CRSYNC_RETURN_IF_ERROR(LoadTriggerTag(false));
  }
  CRSYNC_RETURN_IF_ERROR(LoadSites());
  {
    StmtPtr enc;
    CRSYNC_RETURN_IF_ERROR(Prepare(db_, "PRAGMA main.encoding", &enc));
    if (sqlite3_step(enc.get()) == SQLITE_ROW) {
      const unsigned char* name = sqlite3_column_text(enc.get(), 0);
      utf16_ = name && std::strncmp(reinterpret_cast<const char*>(name), "UTF-16", 6) == 0;
    }
  }
  ReloadConfig();
  return catalog_.Refresh(true);
}

bool ConnEngine::HasClockAlias() const {
  return sqlite3_table_column_metadata(db_, "main", "crsql_tracked_peers", "clock", nullptr,
                                       nullptr, nullptr, nullptr, nullptr) == SQLITE_OK;
}

Status ConnEngine::WriteBootstrap() {
  CRSYNC_RETURN_IF_ERROR(Exec(db_, kBootstrapSql));
  if (!HasClockAlias()) {
    // A table made by cr-sqlite 0.16 lacks the seed's `clock` alias.
    CRSYNC_RETURN_IF_ERROR(Exec(db_,
                                "ALTER TABLE main.crsql_tracked_peers ADD COLUMN clock INTEGER "
                                "GENERATED ALWAYS AS (version) VIRTUAL"));
  }
  sites_loaded_ = false;
  CRSYNC_RETURN_IF_ERROR(LoadSites());
  if (!site_id_.empty()) return Status::OK();
  unsigned char id[kSiteIdLen];
  sqlite3_randomness(sizeof id, id);
  id[6] = static_cast<unsigned char>(0x40 | (id[6] & 0x0F));
  id[8] = static_cast<unsigned char>(0x80 | (id[8] & 0x3F));
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(
      Prepare(db_, "INSERT INTO main.crsql_site_id(site_id, ordinal) VALUES (?1, 0)", &st));
  sqlite3_bind_blob(st.get(), 1, id, sizeof id, SQLITE_STATIC);
  CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, st.get()));
  sites_loaded_ = false;
  return LoadSites();
}

void ConnEngine::ReloadConfig() noexcept {
  // On any failure (out of memory too) it keeps the value it has, and is
  // tried again at the next question (nothing marks it read).
  GuardVoidCall([&] {
    // Taken first: a commit by another connection after it makes the
    // next question read again.
    const unsigned dv = DataVersion();
    StmtPtr cfg;
    if (!Prepare(db_, "SELECT value FROM main.crsql_master WHERE key = 'config.merge-equal-values'",
                 &cfg).ok()) {
      return;
    }
    int rc = sqlite3_step(cfg.get());
    if (rc == SQLITE_ROW) merge_equal_values_ = sqlite3_column_int64(cfg.get(), 0);
    if (rc == SQLITE_DONE) merge_equal_values_ = 0;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
      config_stale_ = false;
      config_data_version_ = dv;
    }
  });
}

Status ConnEngine::LoadSites() {
  if (sites_loaded_) return Status::OK();
  sites_.clear();
  site_ords_.clear();
  bool exists;
  CRSYNC_RETURN_IF_ERROR(TableExists(db_, "crsql_site_id", &exists));
  if (!exists) return Status::OK();
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(
      Prepare(db_, "SELECT ordinal, site_id FROM main.crsql_site_id ORDER BY ordinal", &st));
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    int64_t ord = sqlite3_column_int64(st.get(), 0);
    std::string id(static_cast<const char*>(sqlite3_column_blob(st.get(), 1)),
                   static_cast<size_t>(sqlite3_column_bytes(st.get(), 1)));
    if (ord < 0 || ord > (1 << 24)) continue;
    if (sites_.size() <= static_cast<size_t>(ord)) sites_.resize(ord + 1);
    sites_[ord] = id;
    site_ords_[id] = ord;
  }
  if (rc != SQLITE_DONE) return SqliteError(db_, rc);
  site_id_ = sites_.empty() ? std::string() : sites_[0];
  sites_loaded_ = true;
  return Status::OK();
}

Status ConnEngine::SiteOrdinal(std::string_view site, bool create, int64_t* ord) {
  CRSYNC_RETURN_IF_ERROR(LoadSites());
  auto it = site_ords_.find(std::string(site));
  if (it != site_ords_.end() && unverified_sites_.count(it->first)) {
    // Made in this transaction and a ROLLBACK TO may have happened since:
    // the row may be gone, and its ordinal given to another site.
    int64_t stored;
    CRSYNC_RETURN_IF_ERROR(StoredSiteOrdinal(site, &stored));
    const bool still = stored == it->second;
    unverified_sites_.erase(it->first);
    if (!still) {
      tentative_sites_.erase(it->first);
      site_ords_.erase(it);
      it = site_ords_.end();
    }
  }
  if (it != site_ords_.end()) {
    *ord = it->second;
    return Status::OK();
  }
  // Not cached: another connection may have recorded it since the cache
  // was read (ordinals, once given, never change).
  int64_t stored = -1;
  CRSYNC_RETURN_IF_ERROR(StoredSiteOrdinal(site, &stored));
  if (stored >= 0) {
    CacheSite(site, stored);
    *ord = stored;
    return Status::OK();
  }
  if (!create) {
    *ord = -1;
    return Status::OK();
  }
  if (!insert_site_) {
    CRSYNC_RETURN_IF_ERROR(PrepareCached(
        "INSERT INTO main.crsql_site_id(site_id, ordinal) VALUES (?1, (SELECT "
        "coalesce(max(ordinal), 0) + 1 FROM main.crsql_site_id)) RETURNING ordinal",
        &insert_site_));
  }
  sqlite3_bind_blob(insert_site_.get(), 1, site.data(), static_cast<int>(site.size()),
                    SQLITE_STATIC);
  int rc = sqlite3_step(insert_site_.get());
  if (rc != SQLITE_ROW) {
    Status s = SqliteError(db_, rc);
    sqlite3_reset(insert_site_.get());
    return s;
  }
  int64_t n = sqlite3_column_int64(insert_site_.get(), 0);
  CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, insert_site_.get()));
  CacheSite(site, n);
  tentative_sites_.insert(sites_[n]);
  *ord = n;
  return Status::OK();
}

Status ConnEngine::StoredSiteOrdinal(std::string_view site, int64_t* ord) {
  if (!check_site_) {
    CRSYNC_RETURN_IF_ERROR(
        PrepareCached("SELECT ordinal FROM main.crsql_site_id WHERE site_id = ?1", &check_site_));
  }
  sqlite3_bind_blob(check_site_.get(), 1, site.data(), static_cast<int>(site.size()), SQLITE_STATIC);
  int rc = sqlite3_step(check_site_.get());
  *ord = rc == SQLITE_ROW ? sqlite3_column_int64(check_site_.get(), 0) : -1;
  sqlite3_reset(check_site_.get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db_, rc);
  return Status::OK();
}

void ConnEngine::CacheSite(std::string_view site, int64_t ord) {
  if (sites_.size() <= static_cast<size_t>(ord)) sites_.resize(ord + 1);
  sites_[ord] = std::string(site);
  site_ords_[sites_[ord]] = ord;
}

const std::string& ConnEngine::SiteIdOf(int64_t ord) {
  static const std::string kEmpty;
  if (!LoadSites().ok()) return kEmpty;
  if (ord < 0 || static_cast<size_t>(ord) >= sites_.size() || sites_[ord].empty()) {
    // Another connection may have added it.
    sites_loaded_ = false;
    if (!LoadSites().ok() || static_cast<size_t>(ord) >= sites_.size()) return kEmpty;
  }
  return sites_[ord];
}

void ConnEngine::CatalogChanged() {
  catalog_.DropCaches();  // rows tables may have been rewritten behind Crr's back
  max_dbv_.reset();
  has_dbv_.reset();
  data_version_ = ~0u;
}

// PRAGMA data_version, not SQLITE_FCNTL_DATA_VERSION: the pragma opens a
// read transaction, so it sees another connection's commit even when
// nothing else in the statement has read the database yet.
unsigned ConnEngine::DataVersion() {
  if (!data_version_stmt_ &&
      !PrepareCached("PRAGMA main.data_version", &data_version_stmt_).ok()) {
    return ~0u;
  }
  unsigned v = ~0u;
  if (sqlite3_step(data_version_stmt_.get()) == SQLITE_ROW) {
    v = static_cast<unsigned>(sqlite3_column_int64(data_version_stmt_.get(), 0));
  }
  sqlite3_reset(data_version_stmt_.get());
  return v;
}

Status ConnEngine::RecomputeCommitted() {
  CRSYNC_RETURN_IF_ERROR(catalog_.Refresh());
  if (catalog_.generation() != dbv_generation_) {
    // CRRs came or went (maybe through another connection): the statements
    // below name every CRR's feed, so they are built again.
    max_dbv_.reset();
    has_dbv_.reset();
    dbv_generation_ = catalog_.generation();
  }
  if (!max_dbv_) {
    std::vector<std::string> terms = {
        "SELECT CAST(value AS INTEGER) AS v FROM main.crsql_master WHERE key = "
        "'pre_compact_dbversion' AND CAST(value AS INTEGER) < ?1"};
    for (const auto& crr : catalog_.all()) {
      terms.push_back("SELECT max(dbv) FROM main." + crr->FeedTable() + " WHERE dbv < ?1");
    }
    CRSYNC_RETURN_IF_ERROR(PrepareCached("SELECT max(v) FROM (" + UnionAll(terms) + ")", &max_dbv_));
  }
  // Inside a transaction that took a version, what it stored (at that
  // version or above) is not committed: only versions below count.
  sqlite3_bind_int64(max_dbv_.get(), 1, txn_first_ > 0 ? txn_first_ : INT64_MAX);
  int rc = sqlite3_step(max_dbv_.get());
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(max_dbv_.get(), 0) : 0;
  sqlite3_reset(max_dbv_.get());
  if (rc != SQLITE_ROW) return SqliteError(db_, rc);
  committed_ = std::max(committed_, v);
  return Status::OK();
}

// Whether some CRR's change feed has an entry at `dbv` (one index seek per
// CRR). A stale statement (CRRs added or dropped since) errs or misses,
// and the caller then recomputes.
Status ConnEngine::FeedHasVersion(int64_t dbv, bool* present) {
  if (!has_dbv_) {
    std::vector<std::string> terms;
    for (const auto& crr : catalog_.all()) {
      terms.push_back("SELECT 1 FROM main." + crr->FeedTable() + " WHERE dbv = ?1");
    }
    if (terms.empty()) terms.push_back("SELECT 1 WHERE ?1 IS NULL");
    CRSYNC_RETURN_IF_ERROR(PrepareCached(UnionAll(terms) + " LIMIT 1", &has_dbv_));
  }
  sqlite3_bind_int64(has_dbv_.get(), 1, dbv);
  int rc = sqlite3_step(has_dbv_.get());
  *present = rc == SQLITE_ROW;
  sqlite3_reset(has_dbv_.get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db_, rc);
  return Status::OK();
}

Status ConnEngine::CommittedDbVersion(int64_t* out) {
  unsigned dv = DataVersion();
  const int64_t candidate = own_commit_;
  own_commit_ = 0;
  const bool others_committed = dv != data_version_ || dv == ~0u;
  if (!others_committed && candidate > committed_) {
    // Only this connection committed since committed_ was read, and its
    // last transaction used `candidate`, above every stored version: that
    // is the committed version if a row of the transaction holds it.
    bool present = false;
    if (FeedHasVersion(candidate, &present).ok() && present) committed_ = candidate;
  }
  if (others_committed || candidate > committed_) {
    CRSYNC_RETURN_IF_ERROR(RecomputeCommitted());
    data_version_ = dv;
  }
  *out = committed_;
  return Status::OK();
}

Status ConnEngine::LocalDbVersion(int64_t* out) { return NextDbVersion(0, out); }

Status DbVersionExhausted() {
  return Status::Sqlite(SQLITE_FULL, "crsql - db_version is exhausted: the next would pass " +
                                         std::to_string(kMaxChangeVersion) +
                                         ", which no peer accepts (a peer sent a change at that "
                                         "limit, or crsql_next_db_version asked for more)");
}

Status ConnEngine::NextDbVersion(int64_t floor, int64_t* out) {
  if (pending_ != 0 && floor <= pending_) {  // hot path: the transaction has its version
    *out = pending_;
    return Status::OK();
  }
  // The transaction's end must reach us (TransactionCommitted).
  if (pending_ == 0) CRSYNC_RETURN_IF_ERROR(JoinCapture());
  int64_t committed;
  CRSYNC_RETURN_IF_ERROR(CommittedDbVersion(&committed));
  // A version past kMaxChangeVersion reaches no peer (merges refuse it).
  if (committed >= kMaxChangeVersion || floor > kMaxChangeVersion) return DbVersionExhausted();
  pending_ = std::max({committed + 1, pending_, floor});
  if (txn_first_ == 0) txn_first_ = pending_;
  *out = pending_;
  return Status::OK();
}

void ConnEngine::EndTransaction() {
  // After a possible ROLLBACK TO, cached ordinals of site ids this
  // transaction inserted may name rows that are gone: re-read them all.
  if (reload_sites_) sites_loaded_ = false;
  reload_sites_ = false;
  tentative_sites_.clear();
  unverified_sites_.clear();
  catalog_.DropCachesAndFailures();
  catalog_checked_ = false;
  CaptureEnd();  // normally done already by the capture table's xCommit/xRollback
  pending_ = 0;
  txn_first_ = 0;
  seq_ = 0;
  rows_impacted_ = 0;
  sync_bit_ = false;
}

void ConnEngine::TransactionCommitted() noexcept {
  // The committed version is re-read from what is stored, not taken from
  // pending_: a version taken by a statement that failed or was rolled back
  // to a savepoint holds no row, and announcing it would let another
  // connection's next write reuse a version peers were told is covered.
  // Usually it is pending_, and one seek per CRR confirms it
  // (CommittedDbVersion) instead of reading every feed's maximum.
  // (A transaction that took no version leaves an unchecked one in place.)
  own_commit_ = std::max(own_commit_, pending_);
  EndTransaction();
  committed_alters_.clear();  // their commits stand
  ++txn_serial_;
  catalog_.ReleaseRetired();  // no statement of ours is running at a commit
}

void ConnEngine::TransactionRolledBack() noexcept {
  data_version_ = ~0u;  // recomputed in full: that covers own_commit_ too
  EndTransaction();
  // Ordinals inserted by the rolled-back transaction are gone, and so is
  // every alter it began (its triggers are back); one begun by an earlier
  // transaction that committed stays open.
  sites_loaded_ = false;
  for (auto it = open_alters_.begin(); it != open_alters_.end();) {
    it = it->second.txn == txn_serial_ ? open_alters_.erase(it) : std::next(it);
  }
  // An alter begun by an earlier transaction and committed in this one is
  // open again.
  for (const auto& [name, alter] : committed_alters_) {
    if (alter.txn != txn_serial_) open_alters_[name] = alter;
  }
  committed_alters_.clear();
  alters_unsure_ = false;  // only this transaction's could have been undone
  ++txn_serial_;
  // The schema version went back with it and may climb to the cached value
  // again with another schema: the catalog is re-read.
  catalog_.Invalidate();
  config_stale_ = true;  // a crsql_config_set may have been undone
}

const std::string& ConnEngine::CurrentSiteId() {
  if (site_id_.empty()) {
    // Prepared first: a table this connection's schema does not know yet
    // makes SQLite read the schema again (TableExists would not).
    StmtPtr probe;
    if (Prepare(db_, "SELECT 1 FROM main.crsql_site_id LIMIT 0", &probe).ok()) {
      sites_loaded_ = false;
      LoadSites().IgnoreError();  // still none: the caller says so
    }
  }
  return site_id_;
}

Status ConnEngine::WriteLockBeforeReading() {
  if (sqlite3_get_autocommit(db_) || sqlite3_txn_state(db_, "main") != SQLITE_TXN_NONE ||
      sqlite3_db_readonly(db_, "main") == 1) {
    return Status::OK();
  }
  return JoinCapture();
}

Status ConnEngine::JoinCapture() {
  if (capture_joined_) return names_checked_ ? Status::OK() : CheckReservedNames();
  Status s = capture_join_ ? Status::OK()
                           : PrepareCached("INSERT INTO crsync_capture VALUES (NULL)",
                                           &capture_join_);
  if (s.ok()) s = StepToEnd(db_, capture_join_.get());
  if (!s.ok() || !capture_joined_) {
    CRSYNC_RETURN_IF_ERROR(CheckReservedNames());  // say so, as nothing else would
    CRSYNC_RETURN_IF_ERROR(s);
    return Status::Corruption("crsql - the capture table did not join");
  }
  // The statement is prepared again after any schema change (this
  // connection's own ALTER TABLE too, which moves no data_version): the
  // CRRs then check their tables' shapes again (Crr::CheckShape), and the
  // reserved names are checked again (first: at the first join).
  const int prepares = sqlite3_stmt_status(capture_join_.get(), SQLITE_STMTSTATUS_REPREPARE, 0);
  if (prepares != capture_join_prepares_ || !names_checked_) {
    capture_join_prepares_ = prepares;
    catalog_.TablesMayHaveChanged();
    names_checked_ = false;
    CRSYNC_RETURN_IF_ERROR(CheckReservedNames());
    names_checked_ = true;
  }
  return Status::OK();
}

void ConnEngine::CaptureRollbackTo(int level) {
  // As for OnRollback: every catalog or config change joins the capture
  // table first (JoinForCatalogChange), so what it undid is heard of here.
  if (catalog_changed_in_txn_) {
    catalog_.Invalidate();
    config_stale_ = true;
  }
  for (const auto& [name, alter] : open_alters_) alters_unsure_ |= alter.txn == txn_serial_;
  alters_unsure_ |= !committed_alters_.empty();  // a commit undone: the alter is open again
  while (!capture_marks_.empty() && capture_marks_.back().level > level) capture_marks_.pop_back();
  // A savepoint opened before the capture table joined saw an empty log,
  // and no version taken (the table joins when the first one is).
  CaptureMark m{level, 0, 0};
  if (!capture_marks_.empty() && capture_marks_.back().level == level) {
    m = capture_marks_.back();  // savepoint `level` stays open
  } else if (!capture_marks_.empty()) {
    // A mark below `level` and none at it: savepoint `level` opened after
    // the table joined (every such one gets a mark) and its mark was lost
    // (CaptureSavepoint ran out of memory). What the transaction had then
    // is unknown, so it cannot go on: every flush, and COMMIT, fail. (A
    // flag: making the error here could run out of memory again.)
    capture_lost_ = true;
    return;
  }
  local_writes_.Truncate(m.size);
  if (m.flushed < flushed_) flushed_ = m.flushed;  // stored since then: undone by SQLite
  // Everything stamped since is undone: the writes stored again take the
  // version and seqs they would have had (crr-semantics §6.1, §12.3).
  pending_ = m.pending;
  txn_first_ = m.txn_first;
  seq_ = m.seq;
}

Status ConnEngine::AddLocalWrite(const LocalWrite& w) {
  capturing_ = true;
  local_writes_.Add(w);
  if (local_writes_.size() - flushed_ < flush_every_) return Status::OK();
  CRSYNC_RETURN_IF_ERROR(FlushLocalWrites());
  // Writes stored before every open savepoint opened can never be stored
  // again (a rollback to any of them only re-stores later ones): drop them.
  size_t keep_from = flushed_;
  for (const CaptureMark& m : capture_marks_) keep_from = std::min(keep_from, m.flushed);
  if (keep_from == 0) return Status::OK();
  local_writes_.DropPrefix(keep_from);
  flushed_ -= keep_from;
  for (CaptureMark& m : capture_marks_) {
    m.size -= keep_from;
    m.flushed -= keep_from;
  }
  return Status::OK();
}

void ConnEngine::CaptureEnd() {
  flush_failure_ = Status::OK();
  capture_lost_ = false;
  direct_writes_left_ = kDirectWrites;
  local_writes_.Clear();
  capture_marks_.clear();
  flushed_ = 0;
  capture_joined_ = false;
  capturing_ = false;
  catalog_changed_in_txn_ = false;
  local_batch_.Clear();
}

Status ConnEngine::FlushLocalWrites() {
  CRSYNC_RETURN_IF_ERROR(catalog_.FlushPending());
  return FlushCapturedWrites();
}

Status ConnEngine::FlushCapturedWrites() {
  // A failed flush may have stored part of the log, and a read statement
  // has no statement journal to undo it: from then on every flush fails, so
  // the transaction can only roll back (COMMIT fails in xSync).
  if (!flush_failure_.ok()) return flush_failure_;
  if (capture_lost_) {
    return Status::Sqlite(SQLITE_ERROR,
                          "crsql - a savepoint's capture state was lost (out of memory); roll "
                          "the transaction back");
  }
  if (flushed_ >= local_writes_.size() || flushing_ || !flusher_) return Status::OK();
  flushing_ = true;
  Status s = flusher_(this);
  flushing_ = false;
  if (s.ok()) {
    flushed_ = local_writes_.size();
  } else {
    s = s.WithContext("crsql - storing this transaction's writes failed; roll it back");
    // Sticky for this transaction, unless SQLite already rolled it back
    // (I/O errors do that) and with it ended the capture.
    if (!sqlite3_get_autocommit(db_)) flush_failure_ = s;
  }
  return s;
}

}  // namespace crsync
