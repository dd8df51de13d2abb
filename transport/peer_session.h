// transport/peer_session.h — the protocol logic of one connection between
// two sidecars, free of sockets and threads: messages in, messages out,
// the database in between.
//
// Both sides are symmetric (a hub and a spoke run the same logic):
//  1. each sends Hello with its receive cursor for the other;
//  2. each streams its change feed after the other's cursor, one
//     transaction per Changeset (split when large), declaring the
//     [start, end] range of its own db_versions covered, changes whose origin
//     is the recipient excluded (no echo), relayed ones included;
//  3. each applies received changesets through ChangeApplier (tag -1: no
//     automatic tracking) and, in the same transaction, persists its receive
//     cursor — the contiguous coverage (transport/coverage.h) — as a
//     crsql_tracked_peers row (peer, tag kSidecarTag, event 0); then acks.
//     Acks move the send cursor (event 1 row).
// Duplicates, reordering and restarts are safe: cursors never run ahead of
// what is committed, and a new session resumes from the receiver's cursor.
// A peer restored from a backup (its hello's version is below our cursor
// for it, or its restore epoch is new to us) is resynchronized: see
// ForgetLostHistory.
//
// Thread safety: one thread (the sidecar's database thread) per session;
// the connection must not be used concurrently.
#ifndef CRSYNC_TRANSPORT_PEER_SESSION_H_
#define CRSYNC_TRANSPORT_PEER_SESSION_H_

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "crsync/engine.h"
#include "crsync/sqlite_handles.h"
#include "crsync/status.h"
#include "transport/coverage.h"
#include "transport/messages.h"
#include "transport/schema_id.h"

namespace crsync {

// The tracked-peers tag under which the sidecar keeps its cursors.
constexpr int64_t kSidecarTag = 1001;

struct SessionOptions {
  // Larger transactions are split into parts of at most this many changes
  // and about this many bytes encoded (frames carry at most 16 MiB). One
  // change larger than the frame limit cannot be sent: Pump() says which.
  size_t max_changes_per_message = 1000;
  size_t max_bytes_per_message = size_t{4} << 20;
  uint32_t window = 16;                   // transactions in flight before acks
  // OnMessages merges the complete transactions of consecutive changesets
  // in one SQLite transaction while they total at most this many changes
  // (fewer commits; a bound on how long the app's writers wait).
  size_t max_changes_per_commit = 10000;
  // One Pump() call reads at most about this many changes (whole
  // transactions), so the first ones go out while the rest are read; it then
  // reports more_to_send() and the caller pumps again.
  size_t max_changes_per_pump = 4000;
  // Versions with nothing for the peer (its own changes merged here) are
  // still announced, so its cursor catches up; as every announcement waits
  // for an fsync (see Pump), such a bare one is made at most once per this
  // many ms (0: at once). The sidecar's safety timer pumps often enough.
  int64_t bare_announce_interval_ms = 1000;
  // Called before each merge transaction begins (may block briefly, e.g. to
  // let the application's writers go first). Must not use the connection.
  std::function<void()> before_merge_txn;
  // After a change too large to send stopped the sending direction
  // (Error kCannotSend), Pump() tries again after this many ms: the change
  // may have been superseded by a smaller one.
  int64_t blocked_send_retry_ms = 60000;
  // Said in the Hello (HelloMsg::instance): the sidecar draws it once per
  // start. 0: not said.
  uint64_t instance = 0;
  // Said in the Hello (HelloMsg::heartbeat_ms): how often the connection's
  // owner sends a no-op Ack when it sent nothing else. 0: not said.
  uint32_t heartbeat_ms = 0;
  // Said in the Hello (HelloMsg::answers_probes): the connection's owner
  // answers a probe (AckMsg::probe) at once. The session itself takes a
  // probe as the no-op Ack it also is; the answer is the owner's to send.
  bool answers_probes = false;
  // Asked, on the peer's Hello, whether a peer with this site id at this
  // instance may connect (the sidecar refuses one site id at two instances
  // at once). A non-OK status refuses it: the peer gets an Error with the
  // status's message and the connection closes. Must not use the
  // connection. Unset: every peer is admitted.
  std::function<Status(const std::string& site_id, uint64_t instance)> admit;
  // Asked, on the peer's Hello, whether another connection of this node is
  // in session with the same peer process (site id and instance; both nodes
  // dialled each other). That connection may have moved our cursor for the
  // peer past the version this Hello said when it was sent, which is then
  // no sign of a restore: a running process's feed never goes back. Must
  // not use the connection. Unset: never.
  std::function<bool(const std::string& site_id, uint64_t instance)> in_session_elsewhere;
};

class PeerSession {
 public:
  // `db` has the engine installed and outlives the session.
  static Status Open(sqlite3* db, const SessionOptions& options, std::unique_ptr<PeerSession>* out);
  ~PeerSession();

  // The Hello to send first.
  Status Start(std::vector<Message>* out);
  // Handles one message from the peer, appending replies to *out. A non-OK
  // status means the connection must close (an ErrorMsg for the peer is in
  // *out when it should be told why).
  Status OnMessage(const Message& in, std::vector<Message>* out);
  // Handles several messages received in a row, as OnMessage would one by
  // one, except that runs of changesets are merged together in SQLite
  // transactions of at most max_changes_per_commit changes (a larger peer
  // transaction gets one of its own). Each peer transaction stays atomic; a
  // failing one is rolled back alone, what preceded it is committed and
  // acknowledged, and the error ends the batch.
  Status OnMessages(std::vector<Message> in, std::vector<Message>* out);
  // Sends what is new in the local change feed (call when the commit signal
  // fires, and after acks), within the send window. Before returning any
  // version not yet announced, it fsyncs the write-ahead log, so that no
  // peer is told of a commit a power loss could still undo. On an error,
  // nothing of this call is queued but an Error (kInternal) saying why, and
  // the session should close. A change too large for any message is not an
  // error of the session: the peer is told (kCannotSend), sending stops
  // for blocked_send_retry_ms, and receiving goes on (see TakeNotice).
  Status Pump(std::vector<Message>* out);
  // What the last calls found worth a warning in the log and did not
  // return as an error (sending blocked or resumed, the peer unable to send
  // to us), once; "" when nothing.
  std::string TakeNotice() { return std::exchange(notice_, std::string()); }
  // The last Pump() stopped at max_changes_per_pump with window to spare:
  // call it again soon (there may be more to read).
  bool more_to_send() const { return more_to_send_; }
  // While paused (the connection has too much waiting to be written),
  // Pump() reads and queues no changesets, and more_to_send() stays false:
  // the caller pumps again once it resumes the session. Acks still go out.
  void set_send_paused(bool paused) { send_paused_ = paused; }

  bool ready() const { return ready_; }
  const std::string& peer_site() const { return peer_site_; }
  // The instance the peer's Hello said (0: not said, or no Hello yet).
  uint64_t peer_instance() const { return peer_instance_; }
  int64_t receive_cursor() const { return coverage_.cursor(); }
  int64_t send_cursor() const { return acked_; }
  // This session found that the peer lost history and forgot its receive
  // cursor for it: any other session with the same peer holds a stale
  // cursor in memory and must close (it would save it back).
  bool forgot_peer_history() const { return forgot_peer_history_; }
  // This session renewed our restore epoch: every other session said hello
  // with the old one and must close, so that their peers hear the new one.
  bool renewed_own_epoch() const { return renewed_own_epoch_; }

 private:
  PeerSession(sqlite3* db, const SessionOptions& options);
  // Queues an Error for the peer and returns the matching status.
  static Status Fail(std::vector<Message>* out, uint32_t code, const std::string& why,
                     int64_t restore_epoch = 0);
  // The CRRs of `db` and their columns, for a mismatch message.
  static std::string SchemaText(sqlite3* db);
  // (The handshake, transport/peer_handshake.cc.)
  Status OnHello(const HelloMsg& m, std::vector<Message>* out);
  Status SchemaVersion(int64_t* out);
  // Whether this node's CRR schema changed since the session opened (one
  // PRAGMA when nothing changed; false when it cannot tell now: asked
  // again later). FailSchemaChanged ends the connection saying so.
  bool OwnSchemaChanged();
  Status FailSchemaChanged(std::vector<Message>* out);
  // Stores an acknowledged send cursor, and a receive cursor moved by
  // ranges with nothing to merge, that a lock or a full disk kept from
  // being stored (and drops the echo cursor once acknowledged); a lock or a
  // full disk leaves them for later. Neither is needed but after a restart,
  // and then an older one costs a resend.
  Status SaveDeferredAck();
  Status OnChangeset(ChangesetMsg m, std::vector<Message>* out);
  // A peer transaction whose parts are all here, kept as they arrived
  // (joining them into one vector cost more than merging them).
  struct ReadyTxn {
    int64_t start = 0, end = 0;
    std::vector<std::vector<Change>> parts;
    size_t changes = 0;
  };
  // Validates `m` and collects its transaction in *ready once all of its
  // parts are here; a duplicate only earns the peer a credit.
  Status Assemble(ChangesetMsg m, std::vector<ReadyTxn>* ready, uint32_t* credits,
                  std::vector<Message>* out);
  // Merges `ready` in as few SQLite transactions as the limit allows, each
  // with the receive cursor it reaches, then acknowledges.
  Status ApplyReady(std::vector<ReadyTxn>* ready, uint32_t credits, std::vector<Message>* out);
  // One SQLite transaction merging ready[from, to) and the receive cursor it
  // reaches. A changeset the applier refuses rolls it all back: *bad is its
  // index (else `to`) and *why the reason. Other errors are returned.
  Status MergeTxn(const std::vector<ReadyTxn>& ready, size_t from, size_t to, size_t* bad,
                  Status* why);
  // Pump() before the log sync: reads and queues within the window.
  Status PumpFeed(std::vector<Message>* out);
  // crsql_db_version(): the newest committed version.
  Status CommittedVersion(int64_t* out);
  // The crsql_tracked_peers rows of the sidecar (tag kSidecarTag), for the
  // peer unless a site is given: event 0 is the receive cursor, 1 the send
  // cursor, 2 "echo its own changes to it up to this version of ours" (it
  // lost them), 3 the site's restore epoch as last known here (for our own
  // site: ours). Absent = 0.
  // Event 4: the peer lost versions at the restore epoch stored here and
  // must renew it; until its hello shows another, it is asked again.
  Status LoadCursor(int64_t event, int64_t* out, bool* found = nullptr) {
    return LoadCursor(peer_site_, event, out, found);
  }
  Status LoadCursor(const std::string& site, int64_t event, int64_t* out, bool* found = nullptr);
  Status SaveCursor(int64_t event, int64_t version);  // never moves one back
  Status StoreRow(const std::string& site, int64_t event, int64_t value);  // any value
  Status DeleteCursor(int64_t event);
  // The peer lost versions it had announced: its hello says it is at a
  // version below our receive cursor for it, or at a restore epoch older
  // than one it showed us, or at one we have not seen (another peer
  // detected the loss). Forgets that cursor, schedules the echo of its own
  // changes, records the epoch (and, with `renew`, that the peer must renew
  // it: it does not know of its loss yet), and fails: the connection
  // closes, the next one resynchronizes.
  Status ForgetLostHistory(const HelloMsg& m, int64_t cursor, int64_t seen_epoch, bool renew,
                           std::vector<Message>* out);
  // A peer told us we lost versions we had announced (ErrorMsg::kResync;
  // `hint`: the highest epoch it saw from us): picks a new restore epoch
  // past our own and the hint, so that every other peer resynchronizes too,
  // unless another connection already did since our hello.
  Status RenewOwnEpoch(int64_t hint);
  // A restore epoch's generation: its high 32 bits (0: never renewed).
  static int64_t Generation(int64_t epoch) {
    return static_cast<int64_t>(static_cast<uint64_t>(epoch) >> 32);
  }

  sqlite3* db_;
  SessionOptions options_;
  std::unique_ptr<ChangeReader> reader_;
  std::unique_ptr<ChangeApplier> applier_;
  std::string site_id_;
  uint64_t fingerprint_ = 0;
  bool ready_ = false;
  bool more_to_send_ = false;
  std::string peer_site_;
  uint64_t peer_instance_ = 0;
  Coverage coverage_;
  int64_t sent_ = 0;    // highest own version sent on this connection
  int64_t acked_ = 0;   // highest own version the peer acknowledged
  bool ack_unsaved_ = false;  // acked_ not stored yet (the database was locked or full)
  bool cursor_unsaved_ = false;  // coverage_'s cursor not stored yet (the disk was full)
  bool ack_full_said_ = false;   // the notice that a full disk holds acks back was given
  int64_t durable_ = 0; // versions up to here were on disk when last synced
  int64_t echo_until_ = 0;  // send the peer its own changes up to here (event 2)
  int64_t hello_epoch_ = 0; // our restore epoch, as our hello said it
  bool forgot_peer_history_ = false;
  bool renewed_own_epoch_ = false;
  std::chrono::steady_clock::time_point last_sync_{};
  uint32_t in_flight_ = 0;
  // acked_ when the peer last had every changeset answered yet its cursor
  // behind (we resent from there); -1: never. The same again means the
  // peer answers what it does not take, and resending would loop.
  int64_t resent_from_ = -1;
  bool send_paused_ = false;  // see set_send_paused
  std::string notice_;        // see TakeNotice
  std::string send_blocked_;  // why sending stopped (a change too large); "" = it did not
  std::chrono::steady_clock::time_point send_blocked_at_{};
  bool oversized_ = false;    // the last PumpFeed met a change too large to send
  // Parts of split transactions received so far, by [start, end].
  // The parts of one split transaction received so far, by index: held
  // sparsely, so what a peer announces costs nothing until it sends it.
  struct Parts {
    uint32_t total = 0;
    std::map<uint32_t, std::vector<Change>> have;
  };
  std::map<std::pair<int64_t, int64_t>, Parts> partial_;
  StmtPtr load_cursor_, save_cursor_, store_row_, db_version_, schema_version_stmt_;
  int64_t schema_version_ = 0;  // PRAGMA main.schema_version when fingerprint_ was last true
};

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_PEER_SESSION_H_
