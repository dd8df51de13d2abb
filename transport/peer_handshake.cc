// transport/peer_handshake.cc — PeerSession's handshake: the Hello it
// sends, and the peer's Hello: protocol, site id and schema checks,
// admission, and the detection of a peer restored from a backup (restore
// epochs and resynchronization; docs/protocol.md).
#include "common/hex.h"
#include "transport/peer_session.h"
#include "transport/schema_id.h"

namespace crsync {

Status PeerSession::Start(std::vector<Message>* out) {
  HelloMsg hello;
  hello.site_id = site_id_;
  hello.fingerprint = fingerprint_;
  CRSYNC_RETURN_IF_ERROR(CommittedVersion(&hello.current_version));
  CRSYNC_RETURN_IF_ERROR(LoadCursor(site_id_, 3, &hello_epoch_));
  hello.restore_epoch = hello_epoch_;
  hello.instance = options_.instance;
  hello.heartbeat_ms = options_.heartbeat_ms;
  hello.answers_probes = options_.answers_probes;
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db_,
                                 "SELECT site_id, version FROM crsql_tracked_peers WHERE tag = ?1 "
                                 "AND event = 0",
                                 &st));
  sqlite3_bind_int64(st.get(), 1, kSidecarTag);
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    hello.have_from.emplace_back(
        std::string(static_cast<const char*>(sqlite3_column_blob(st.get(), 0)),
                    static_cast<size_t>(sqlite3_column_bytes(st.get(), 0))),
        sqlite3_column_int64(st.get(), 1));
  }
  out->push_back(std::move(hello));
  return Status::OK();
}

Status PeerSession::ForgetLostHistory(const HelloMsg& m, int64_t cursor, int64_t seen_epoch,
                                      bool renew, std::vector<Message>* out) {
  // The peer announced versions up to `cursor` (each one durable before it
  // was announced) and lost some of them, most likely restored from a
  // backup. Its next writes reuse those versions, which our cursor would
  // skip, and the changes it lost live on only here and at other peers. So:
  // forget the cursor (the next connection takes the peer's whole feed
  // again: merging is idempotent) and send the peer its own changes back,
  // up to what we have now, until it acknowledges them.
  int64_t ours = 0;
  CRSYNC_RETURN_IF_ERROR(CommittedVersion(&ours));
  // The epoch to remember: the peer's, unless it went back to an older
  // generation than we saw (it must then renew past the newer one).
  const int64_t remembered =
      Generation(m.restore_epoch) >= Generation(seen_epoch) ? m.restore_epoch : seen_epoch;
  CRSYNC_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  Status s = DeleteCursor(0);
  if (s.ok()) s = SaveCursor(2, std::max<int64_t>(ours, 1));
  if (s.ok()) s = StoreRow(peer_site_, 3, remembered);
  // Until the peer renews, every hello of its is answered with kResync: the
  // error below may never reach it (the connection may break first).
  if (s.ok() && renew) s = StoreRow(peer_site_, 4, m.restore_epoch);
  if (s.ok()) s = Exec(db_, "COMMIT");
  if (!s.ok()) {
    Exec(db_, "ROLLBACK").IgnoreError();
    return s;
  }
  forgot_peer_history_ = true;
  const std::string tail =
      ": resynchronizing: it sends its whole feed again and gets its own changes back";
  const std::string peer = "peer " + HexBytes(peer_site_);
  if (!renew) {
    // Another peer detected the loss first and the peer renewed its epoch.
    return Fail(out, ErrorMsg::kRestoreSeen,
                peer + " lost versions it had announced (restored from a backup?): its restore "
                "epoch is " + std::to_string(m.restore_epoch) + ", last seen here " +
                std::to_string(seen_epoch) + tail);
  }
  if (m.current_version >= 0 && cursor > m.current_version) {
    return Fail(out, ErrorMsg::kResync,
                peer + " is at version " + std::to_string(m.current_version) +
                    " but had sent changes up to version " + std::to_string(cursor) +
                    ": it lost them (restored from a backup?)" + tail,
                remembered);
  }
  return Fail(out, ErrorMsg::kResync,
              peer + " is back at restore epoch " + std::to_string(m.restore_epoch) +
                  " though it showed epoch " + std::to_string(seen_epoch) +
                  " here: it lost versions it had announced (restored from an older backup?)" +
                  tail,
              remembered);
}

Status PeerSession::OnHello(const HelloMsg& m, std::vector<Message>* out) {
  if (m.protocol_version != kProtocolVersion) {
    return Fail(out, ErrorMsg::kProtocol,
                "protocol version " + std::to_string(m.protocol_version) + " is not supported (this "
                "node speaks " + std::to_string(kProtocolVersion) + ")");
  }
  if (m.site_id.size() != 16) return Fail(out, ErrorMsg::kProtocol, "hello without a 16-byte site id");
  if (m.site_id == site_id_) {
    return Fail(out, ErrorMsg::kProtocol,
                "the peer has this node's own site id " + HexBytes(site_id_) +
                    ": it is this node (a configured address that loops back), or its database "
                    "is a copy of this one; a copy cannot be another node (give it a new "
                    "database with the same CRR tables, empty, and let it sync)");
  }
  if (m.fingerprint != fingerprint_) {
    return Fail(out, ErrorMsg::kSchemaMismatch,
                "CRR schemas differ: node " + HexBytes(site_id_) + " has " + SchemaText(db_) +
                    " (fingerprint " + std::to_string(fingerprint_) + "; its peer " +
                    HexBytes(m.site_id) + " has " + std::to_string(m.fingerprint) +
                    "): give both the same CRR tables (a new replica: create them and run "
                    "crsql_as_crr on each, then let it sync; a running cluster: see "
                    "docs/protocol.md on changing the schema)");
  }
  if (options_.admit) {
    Status admitted = options_.admit(m.site_id, m.instance);
    if (!admitted.ok()) return Fail(out, ErrorMsg::kProtocol, admitted.message());
  }
  peer_site_ = m.site_id;
  peer_instance_ = m.instance;
  // A peer restored from a backup lost versions it had announced (see
  // ForgetLostHistory and docs/protocol.md).
  int64_t cursor, seen_epoch, lost_at;
  bool must_renew;
  CRSYNC_RETURN_IF_ERROR(LoadCursor(0, &cursor));
  CRSYNC_RETURN_IF_ERROR(LoadCursor(3, &seen_epoch));
  CRSYNC_RETURN_IF_ERROR(LoadCursor(4, &lost_at, &must_renew));
  if (must_renew) {
    if (m.restore_epoch == lost_at) {
      return Fail(out, ErrorMsg::kResync,
                  "peer " + HexBytes(peer_site_) + " is still at restore epoch " +
                      std::to_string(lost_at) + ", at which it lost versions it had announced "
                      "(restored from a backup?): it must renew it to resynchronize",
                  seen_epoch);
    }
    CRSYNC_RETURN_IF_ERROR(DeleteCursor(4));  // it did
  }
  // A cursor past the version the Hello says: the peer lost versions it had
  // announced; an epoch of an older generation than we saw: it was restored
  // from a backup older than its last renewal. Unless another connection is
  // in session with the same process, which moved the cursor, or showed the
  // epoch that process renewed to, after this Hello was sent: a running
  // process's feed never goes back.
  const bool stale_hello = m.instance != 0 && options_.in_session_elsewhere &&
                           options_.in_session_elsewhere(m.site_id, m.instance);
  const bool lost = m.current_version >= 0 && cursor > m.current_version && !stale_hello;
  const bool went_back = Generation(m.restore_epoch) < Generation(seen_epoch) && !stale_hello;
  if (m.restore_epoch != seen_epoch && !went_back) {
    // The peer renewed its epoch since we last saw it: it knows of its loss
    // (another peer told it), so we only resynchronize — even when its
    // version is still below our cursor (the echo that raises it may be
    // under way): asking it to renew again would start every other peer's
    // resynchronization over. (A second restore, from a backup taken after
    // that renewal, is then caught by the peers that saw the renewal.)
    if (cursor > 0) return ForgetLostHistory(m, cursor, seen_epoch, /*renew=*/false, out);
    CRSYNC_RETURN_IF_ERROR(StoreRow(peer_site_, 3, m.restore_epoch));  // nothing to rewind
  } else if (lost || went_back) {
    return ForgetLostHistory(m, cursor, seen_epoch, /*renew=*/true, out);
  }
  CRSYNC_RETURN_IF_ERROR(LoadCursor(2, &echo_until_));
  coverage_ = Coverage(cursor);
  int64_t peer_has = 0;
  for (const auto& [site, version] : m.have_from)
    if (site == site_id_) peer_has = version;
  sent_ = acked_ = peer_has;  // resume from the receiver's cursor
  ready_ = true;
  return Pump(out);
}

}  // namespace crsync
