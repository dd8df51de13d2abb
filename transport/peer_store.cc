// transport/peer_store.cc — what a PeerSession keeps in its database: the
// rows of crsql_tracked_peers under the sidecar's tag (event 0 the receive
// cursor, 1 the send cursor, 2 the echo mark, 3 restore epochs, 4 an epoch
// a peer must renew; docs/protocol.md), the renewal of our own restore
// epoch, and the schema version it watches.
#include "transport/peer_session.h"

#include <algorithm>

#include "crsync/sqlite_handles.h"

namespace crsync {

Status PeerSession::SchemaVersion(int64_t* out) {
  if (!schema_version_stmt_) {
    CRSYNC_RETURN_IF_ERROR(Prepare(db_, "PRAGMA main.schema_version", &schema_version_stmt_));
  }
  int rc = sqlite3_step(schema_version_stmt_.get());
  *out = rc == SQLITE_ROW ? sqlite3_column_int64(schema_version_stmt_.get(), 0) : 0;
  sqlite3_reset(schema_version_stmt_.get());
  return rc == SQLITE_ROW ? Status::OK() : SqliteError(db_, rc);
}

Status PeerSession::LoadCursor(const std::string& site, int64_t event, int64_t* out,
                               bool* found) {
  if (!load_cursor_) {
    CRSYNC_RETURN_IF_ERROR(Prepare(db_,
                                   "SELECT version FROM crsql_tracked_peers WHERE site_id = ?1 AND "
                                   "tag = ?2 AND event = ?3",
                                   &load_cursor_));
  }
  sqlite3_stmt* st = load_cursor_.get();
  sqlite3_bind_blob(st, 1, site.data(), static_cast<int>(site.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, kSidecarTag);
  sqlite3_bind_int64(st, 3, event);
  int rc = sqlite3_step(st);
  *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  if (found) *found = rc == SQLITE_ROW;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db_, rc);
  return Status::OK();
}

Status PeerSession::SaveCursor(int64_t event, int64_t version) {
  if (!save_cursor_) {
    CRSYNC_RETURN_IF_ERROR(Prepare(
        db_,
        "INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (?1, ?2, 0, "
        "?3, ?4) ON CONFLICT (site_id, tag, event) DO UPDATE SET version = excluded.version "
        "WHERE excluded.version > version",
        &save_cursor_));
  }
  sqlite3_stmt* st = save_cursor_.get();
  sqlite3_bind_blob(st, 1, peer_site_.data(), static_cast<int>(peer_site_.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, version);
  sqlite3_bind_int64(st, 3, kSidecarTag);
  sqlite3_bind_int64(st, 4, event);
  return StepToEnd(db_, st);
}

Status PeerSession::StoreRow(const std::string& site, int64_t event, int64_t value) {
  if (!store_row_) {
    CRSYNC_RETURN_IF_ERROR(Prepare(
        db_,
        "INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (?1, ?2, 0, "
        "?3, ?4) ON CONFLICT (site_id, tag, event) DO UPDATE SET version = excluded.version",
        &store_row_));
  }
  sqlite3_stmt* st = store_row_.get();
  sqlite3_bind_blob(st, 1, site.data(), static_cast<int>(site.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, value);
  sqlite3_bind_int64(st, 3, kSidecarTag);
  sqlite3_bind_int64(st, 4, event);
  return StepToEnd(db_, st);
}

Status PeerSession::DeleteCursor(int64_t event) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db_, "DELETE FROM crsql_tracked_peers WHERE site_id = ?1 AND tag = ?2 AND event = ?3", &st));
  sqlite3_bind_blob(st.get(), 1, peer_site_.data(), static_cast<int>(peer_site_.size()),
                    SQLITE_STATIC);
  sqlite3_bind_int64(st.get(), 2, kSidecarTag);
  sqlite3_bind_int64(st.get(), 3, event);
  return StepToEnd(db_, st.get());
}

Status PeerSession::RenewOwnEpoch(int64_t hint) {
  CRSYNC_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  int64_t epoch = 0;
  Status s = LoadCursor(site_id_, 3, &epoch);
  // Several peers may detect one loss at once: only the first renews,
  // unless a peer saw a generation we have not passed yet.
  if (s.ok() && (epoch == hello_epoch_ || Generation(epoch) <= Generation(hint))) {
    const int64_t generation = std::min<int64_t>(
        std::max(Generation(epoch), Generation(hint)) + 1, int64_t{0x7fffffff});
    uint32_t low = 0;
    while (low == 0) sqlite3_randomness(sizeof low, &low);
    const int64_t renewed = static_cast<int64_t>(static_cast<uint64_t>(generation) << 32 | low);
    s = StoreRow(site_id_, 3, renewed);
    if (s.ok()) renewed_own_epoch_ = true;
  }
  if (s.ok()) s = Exec(db_, "COMMIT");
  if (!s.ok()) {
    Exec(db_, "ROLLBACK").IgnoreError();
    renewed_own_epoch_ = false;
  }
  return s;
}

}  // namespace crsync
