#include "transport/peer_session.h"

#include <algorithm>

#include "common/hex.h"
#include "transport/codec.h"
#include "transport/frame.h"
#include "transport/schema_id.h"

namespace crsync {
namespace {

// Whether `s` failed because another connection holds a lock.
bool IsLocked(const Status& s) {
  const int code = s.sqlite_code() & 0xff;
  return !s.ok() && (code == SQLITE_BUSY || code == SQLITE_LOCKED);
}
// Whether `s` says the disk is full (an I/O error, a failing disk, is not
// waited out: it ends the connection, saying so).
bool IsFull(const Status& s) { return !s.ok() && (s.sqlite_code() & 0xff) == SQLITE_FULL; }
// A cursor that can be stored later: kept in memory meanwhile.
bool CanWait(const Status& s) { return IsLocked(s) || IsFull(s); }
constexpr int kLockedRetries = 2;  // each waits the connection's busy timeout

// Whether `s` is this node's own condition, to be fixed here: a CRR
// altered without crsql_begin_alter/commit_alter, or being altered.
bool IsLocalCondition(const Status& s) {
  if (IsLocked(s) || s.code() == Status::Code::kFailedPrecondition) return true;
  switch (s.sqlite_code() & 0xff) {  // this node's disk, memory or database
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
    case SQLITE_CORRUPT:
    case SQLITE_INTERRUPT:
    case SQLITE_CANTOPEN:
      return !s.ok() && s.code() == Status::Code::kSqlite;
    default:
      return false;
  }
}

// What a peer wrote, fit for one log line: control characters (a newline,
// an escape sequence) become '?', and at most 500 bytes are kept.
std::string Printable(const std::string& text) {
  constexpr size_t kMax = 500;
  std::string out = text.substr(0, kMax);
  for (char& ch : out) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f) ch = '?';
  }
  if (text.size() > kMax) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

}  // namespace

Status PeerSession::Fail(std::vector<Message>* out, uint32_t code, const std::string& why,
                         int64_t restore_epoch) {
  out->push_back(ErrorMsg{code, why, restore_epoch});
  return Status::Transport(why);
}

std::string PeerSession::SchemaText(sqlite3* db) {
  std::string text;
  if (!SchemaSummary(db, &text).ok()) return "CRRs that cannot be listed now";
  return text;
}

PeerSession::PeerSession(sqlite3* db, const SessionOptions& options) : db_(db), options_(options) {}
PeerSession::~PeerSession() = default;

Status PeerSession::Open(sqlite3* db, const SessionOptions& options,
                         std::unique_ptr<PeerSession>* out) {
  std::unique_ptr<PeerSession> s(new PeerSession(db, options));
  CRSYNC_RETURN_IF_ERROR(ChangeReader::Open(db, &s->reader_));
  CRSYNC_RETURN_IF_ERROR(ChangeApplier::Open(db, &s->applier_));
  // The version first: a schema change committed between the two reads is
  // then seen by the first CheckOwnSchema.
  CRSYNC_RETURN_IF_ERROR(s->SchemaVersion(&s->schema_version_));
  CRSYNC_RETURN_IF_ERROR(SchemaFingerprint(db, &s->fingerprint_));
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db, "SELECT crsql_site_id()", &st));
  if (sqlite3_step(st.get()) != SQLITE_ROW) return SqliteError(db, sqlite3_errcode(db));
  s->site_id_.assign(static_cast<const char*>(sqlite3_column_blob(st.get(), 0)),
                     static_cast<size_t>(sqlite3_column_bytes(st.get(), 0)));
  *out = std::move(s);
  return Status::OK();
}

Status PeerSession::SaveDeferredAck() {
  if (ack_unsaved_) {
    Status s = SaveCursor(1, acked_);
    if (!s.ok() && !CanWait(s)) return s;
    if (IsFull(s) && !ack_full_said_) {
      ack_full_said_ = true;
      notice_ = std::string("the disk is full: sending goes on, and what the peer acknowledged ") +
                "is stored once there is room (" + s.message() + ")";
    }
    ack_unsaved_ = !s.ok();
  }
  if (cursor_unsaved_) {
    Status s = SaveCursor(0, coverage_.cursor());
    if (!s.ok() && !CanWait(s)) return s;
    cursor_unsaved_ = !s.ok();
  }
  if (echo_until_ > 0 && acked_ >= echo_until_) {
    Status s = DeleteCursor(2);  // the peer has its changes back
    if (!s.ok() && !CanWait(s)) return s;
    if (s.ok()) echo_until_ = 0;
  }
  return Status::OK();
}

bool PeerSession::OwnSchemaChanged() {
  int64_t version;
  if (!SchemaVersion(&version).ok() || version == schema_version_) return false;  // the usual case
  uint64_t now;
  if (!SchemaFingerprint(db_, &now).ok()) return false;  // (locked, say): checked next time
  if (now != fingerprint_) return true;
  schema_version_ = version;  // DDL that changed no CRR
  return false;
}

Status PeerSession::FailSchemaChanged(std::vector<Message>* out) {
  return Fail(out, ErrorMsg::kSchemaMismatch,
              "the CRR schema of node " + HexBytes(site_id_) +
                  " changed while connected (an alter committed, or a CRR added or dropped; it "
                  "now has " + SchemaText(db_) +
                  "): the connection ends, and the next handshake compares the schemas again");
}

Status PeerSession::OnMessage(const Message& in, std::vector<Message>* out) {
  if (const auto* e = std::get_if<ErrorMsg>(&in)) {
    if (e->code == ErrorMsg::kCannotSend) {  // only its direction stopped
      notice_ = "the peer cannot send to us (error 7): " + Printable(e->message);
      return Status::OK();
    }
    Status said = Status::Transport("peer reported error " + std::to_string(e->code) + ": " +
                                    Printable(e->message));
    if (e->code == ErrorMsg::kResync) {
      // We lost versions we had announced: every peer must hear of it.
      Status s = RenewOwnEpoch(e->restore_epoch);
      if (!s.ok()) {
        return Status::Transport(said.message() + "; and the restore epoch could not be renewed: " +
                                 s.ToString());
      }
    }
    return said;
  }
  if (const auto* h = std::get_if<HelloMsg>(&in)) {
    if (ready_) return Fail(out, ErrorMsg::kProtocol, "a second hello on one connection");
    return OnHello(*h, out);
  }
  if (!ready_) return Fail(out, ErrorMsg::kProtocol, "a message before hello");
  if (const auto* a = std::get_if<AckMsg>(&in)) {
    if (a->up_to > sent_) {
      // The peer's cursor for us is one, whichever connection moves it: when
      // the two nodes dial each other, the other connection may have carried
      // our versions past what this one sent since the peer's Hello. What
      // it has need not be sent again. Past our committed version, though,
      // it claims versions this node never made.
      int64_t ours = 0;
      CRSYNC_RETURN_IF_ERROR(CommittedVersion(&ours));
      if (a->up_to > ours) {
        return Fail(out, ErrorMsg::kProtocol,
                    "ack for version " + std::to_string(a->up_to) + " beyond what was sent (" +
                        std::to_string(sent_) + ") and what this node has committed (" +
                        std::to_string(ours) + ")");
      }
      sent_ = a->up_to;
    }
    if (a->up_to > acked_) {
      acked_ = a->up_to;
      ack_unsaved_ = true;
    }
    // The stored send cursor only spares resending after a restart (the
    // peer's Hello says what it has), so a write lock held by the
    // application past the busy timeout defers it to a later ack instead
    // of failing the connection.
    CRSYNC_RETURN_IF_ERROR(SaveDeferredAck());
    in_flight_ = in_flight_ > a->credits ? in_flight_ - a->credits : 0;
    if (in_flight_ == 0 && acked_ < sent_) {
      // Every changeset we sent was answered, yet the peer's cursor is
      // behind: it dropped one (e.g. an interrupted split transaction).
      // Resend from its cursor; what it already has is skipped as duplicate.
      // Once: a peer that answers again without taking anything would have
      // us queue the same window over and over (and hold it all in memory
      // if it does not read).
      if (acked_ == resent_from_) {
        return Fail(out, ErrorMsg::kProtocol,
                    "the peer answered every changeset up to version " + std::to_string(sent_) +
                        " but took none past " + std::to_string(acked_) +
                        ", also after they were sent again");
      }
      resent_from_ = acked_;
      sent_ = acked_;
    }
    return Pump(out);
  }
  return OnChangeset(std::get<ChangesetMsg>(in), out);
}

namespace {

// Makes every commit so far durable: fsyncs the WAL. (A rollback-journal
// commit is synced already unless synchronous is OFF.)
Status SyncLog(sqlite3* db) {
  sqlite3_file* f = nullptr;
  int rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
  if (rc != SQLITE_OK) return SqliteError(db, rc);
  if (!f || !f->pMethods) return Status::OK();  // no log file open
  rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
  if (rc != SQLITE_OK) return Status::Sqlite(rc, "cannot sync the write-ahead log");
  return Status::OK();
}

}  // namespace

Status PeerSession::Pump(std::vector<Message>* out) {
  // Nothing is announced before it is on disk. An application on
  // synchronous=NORMAL may lose its last commits to a power loss; its next
  // writes then reuse their versions, and a peer told of the lost ones
  // would skip the new ones for good (its cursor is past them).
  // One fsync covers every commit made before it: a backlog costs one.
  const auto now = std::chrono::steady_clock::now();
  if (!send_blocked_.empty() &&
      now - send_blocked_at_ < std::chrono::milliseconds(options_.blocked_send_retry_ms)) {
    return Status::OK();
  }
  if (ready_) {
    if (OwnSchemaChanged()) return FailSchemaChanged(out);  // before a change of the new shape
    SaveDeferredAck().IgnoreError();  // an idle link's ack, stored once the lock is gone
  }
  const size_t before = out->size();
  oversized_ = false;
  Status s = PumpFeed(out);
  if (s.ok() && ready_ && out->size() > before && OwnSchemaChanged()) {
    out->erase(out->begin() + static_cast<std::ptrdiff_t>(before), out->end());  // read across an alter
    return FailSchemaChanged(out);
  }
  if (s.ok() && sent_ > durable_) {
    int64_t committed = 0;
    s = CommittedVersion(&committed);
    if (s.ok()) s = SyncLog(db_);
    if (s.ok()) {
      durable_ = std::max(sent_, committed);
      last_sync_ = std::chrono::steady_clock::now();
    }
  }
  if (!s.ok()) {
    // Nothing of this pump may go out; the peer hears why rather than
    // seeing nothing come.
    out->erase(out->begin() + static_cast<ptrdiff_t>(before), out->end());
    if (oversized_) {
      // Only this direction is stuck (until the change is superseded):
      // the connection stays, so the peer's changes still arrive.
      if (send_blocked_.empty()) {
        out->push_back(ErrorMsg{ErrorMsg::kCannotSend, "the sender cannot go on: " + s.message(), 0});
        notice_ = "cannot send to the peer: " + s.message() +
                  "; receiving goes on, sending is tried again every " +
                  std::to_string(options_.blocked_send_retry_ms / 1000) + " s";
      }
      send_blocked_ = s.message();
      send_blocked_at_ = now;
      return Status::OK();
    }
    out->push_back(ErrorMsg{ErrorMsg::kInternal, "the sender stopped: " + s.message(), 0});
  } else if (!send_blocked_.empty()) {
    send_blocked_.clear();
    notice_ = "sending to the peer resumed";
  }
  return s;
}

Status PeerSession::CommittedVersion(int64_t* out) {
  if (!db_version_) {
    CRSYNC_RETURN_IF_ERROR(Prepare(db_, "SELECT crsql_db_version()", &db_version_));
  }
  int rc = sqlite3_step(db_version_.get());
  *out = rc == SQLITE_ROW ? sqlite3_column_int64(db_version_.get(), 0) : 0;
  sqlite3_reset(db_version_.get());
  if (rc != SQLITE_ROW) return SqliteError(db_, rc);
  return Status::OK();
}

Status PeerSession::PumpFeed(std::vector<Message>* out) {
  if (!ready_ || send_paused_) {
    more_to_send_ = false;  // pumped again when resumed
    return Status::OK();
  }
  // No echo: the peer's own changes are not sent back to it, unless it
  // lost them (ForgetLostHistory) and has not acknowledged them yet.
  const OriginFilter not_peer{OriginFilter::Mode::kExcept, peer_site_};
  const OriginFilter any{};
  more_to_send_ = false;
  size_t read = 0;
  const size_t first = out->size();
  while (in_flight_ < options_.window) {
    if (read >= options_.max_changes_per_pump) {
      more_to_send_ = true;
      return Status::OK();
    }
    // Read the committed version BEFORE scanning: a commit that lands while
    // we scan has a larger version, so declaring [sent + 1, committed]
    // covered below can never skip it.
    int64_t committed;
    CRSYNC_RETURN_IF_ERROR(CommittedVersion(&committed));
    // The transaction is streamed into parts: at most
    // max_changes_per_message changes and, past the first change of a part,
    // about max_bytes_per_message encoded. Nothing is queued unless it all
    // fits.
    const size_t step = std::max<size_t>(1, options_.max_changes_per_message);
    const size_t budget = std::max<size_t>(1, options_.max_bytes_per_message / sizeof(capnp::word));
    constexpr size_t kMaxChangeBytes = kDefaultMaxFramePayload - (size_t{64} << 10);  // envelope
    std::vector<ChangesetMsg> parts;
    size_t words = 0;
    int64_t version;
    const OriginFilter& filter = sent_ < echo_until_ ? any : not_peer;
    Status read_status = reader_->NextTransaction(sent_, filter, [&](Change& c) -> Status {
      const size_t w = EstimateChangeWords(c);
      if (w * sizeof(capnp::word) > kMaxChangeBytes) {
        oversized_ = true;
        return Status::InvalidArgument(
            "cannot send a change of " + c.table + " (column " + c.cid + ", version " +
            std::to_string(c.db_version) + "): encoded it takes about " +
            std::to_string(w * sizeof(capnp::word)) + " bytes (value " +
            std::to_string(c.val_bytes.size()) + ", key " + std::to_string(c.pk.size()) +
            "), over what one message may carry (" + std::to_string(kMaxChangeBytes) + ")");
      }
      if (parts.empty() || parts.back().changes.size() == step || words + w > budget) {
        parts.push_back(ChangesetMsg{site_id_, sent_ + 1, c.db_version, 0, 0, {}});
        words = 0;
      }
      words += w;
      parts.back().changes.push_back(std::move(c));
      return Status::OK();
    }, &version);
    if (!read_status.ok()) {
      // What was queued before a change too large to send goes out (sent_
      // and the window count it); the next pump stops at that change.
      if (!oversized_ || out->size() == first) return read_status;
      oversized_ = false;
      return Status::OK();
    }
    if (version == 0) {
      // Nothing more for this peer: declare the rest of our versions covered
      // so its cursor (and our lag figure) catch up; unless that needs an
      // fsync and one was made less than bare_announce_interval_ms ago.
      const bool bare_due =
          committed <= durable_ ||
          std::chrono::steady_clock::now() - last_sync_ >=
              std::chrono::milliseconds(options_.bare_announce_interval_ms);
      if (committed > sent_ && bare_due) {
        out->push_back(ChangesetMsg{site_id_, sent_ + 1, committed, 0, 1, {}});
        sent_ = committed;
        ++in_flight_;
      }
      return Status::OK();
    }
    for (size_t p = 0; p < parts.size(); ++p) {
      read += parts[p].changes.size();
      parts[p].part = static_cast<uint32_t>(p);
      parts[p].parts = static_cast<uint32_t>(parts.size());
      out->push_back(std::move(parts[p]));
    }
    sent_ = version;
    ++in_flight_;
  }
  return Status::OK();
}

Status PeerSession::OnMessages(std::vector<Message> in, std::vector<Message>* out) {
  std::vector<ReadyTxn> ready;
  uint32_t credits = 0;
  for (Message& msg : in) {
    auto* cs = std::get_if<ChangesetMsg>(&msg);
    // A no-op Ack (a heartbeat, a poke) says nothing to act on: the changesets
    // around it still merge in one transaction.
    if (const auto* a = std::get_if<AckMsg>(&msg); ready_ && a && a->up_to == 0 && a->credits == 0) {
      continue;
    }
    if (!cs || !ready_) {
      CRSYNC_RETURN_IF_ERROR(ApplyReady(&ready, credits, out));
      credits = 0;
      CRSYNC_RETURN_IF_ERROR(OnMessage(msg, out));
      continue;
    }
    Status s = Assemble(std::move(*cs), &ready, &credits, out);
    if (!s.ok()) {
      // What arrived before the bad message is still merged (and its cursor
      // saved), as if the messages had come one by one.
      ApplyReady(&ready, credits, out).IgnoreError();
      return s;
    }
  }
  return ApplyReady(&ready, credits, out);
}

Status PeerSession::OnChangeset(ChangesetMsg m, std::vector<Message>* out) {
  std::vector<ReadyTxn> ready;
  uint32_t credits = 0;
  CRSYNC_RETURN_IF_ERROR(Assemble(std::move(m), &ready, &credits, out));
  return ApplyReady(&ready, credits, out);
}

Status PeerSession::Assemble(ChangesetMsg m, std::vector<ReadyTxn>* ready, uint32_t* credits,
                             std::vector<Message>* out) {
  if (m.sender != peer_site_) return Fail(out, ErrorMsg::kBadChangeset, "changeset from another site");
  if (m.start < 1 || m.start > m.end) {
    return Fail(out, ErrorMsg::kBadChangeset,
                "changeset declares an empty or negative range [" + std::to_string(m.start) + ", " +
                    std::to_string(m.end) + "]");
  }
  if (m.end > kMaxChangeVersion) {  // its cursor would stick there (and end + 1 overflow)
    return Fail(out, ErrorMsg::kBadChangeset,
                "changeset range [" + std::to_string(m.start) + ", " + std::to_string(m.end) +
                    "] reaches beyond the largest version " + std::to_string(kMaxChangeVersion));
  }
  for (const Change& c : m.changes) {
    if (c.db_version < m.start || c.db_version > m.end) {
      return Fail(out, ErrorMsg::kBadChangeset,
                  "change at version " + std::to_string(c.db_version) + " outside the declared [" +
                      std::to_string(m.start) + ", " + std::to_string(m.end) + "]");
    }
  }
  if (m.parts == 0 || m.part >= m.parts || m.parts > (1u << 20)) {
    return Fail(out, ErrorMsg::kBadChangeset,
                "changeset part " + std::to_string(m.part) + " of " + std::to_string(m.parts));
  }
  ReadyTxn txn{m.start, m.end, {}, 0};
  if (m.parts > 1) {
    // Parts of one transaction: keep them until all are here (in any
    // order), so a peer's transaction is never visible half-applied.
    const std::pair<int64_t, int64_t> key{m.start, m.end};
    auto it = partial_.find(key);
    if (it == partial_.end()) {
      // Checked before anything is held for it.
      if (partial_.size() >= 2 * options_.window + 2) {
        return Fail(out, ErrorMsg::kProtocol, "too many split transactions in progress");
      }
      it = partial_.emplace(key, Parts{}).first;
      it->second.total = m.parts;
    }
    Parts& p = it->second;
    if (p.total != m.parts) {
      return Fail(out, ErrorMsg::kBadChangeset,
                  "changeset [" + std::to_string(m.start) + ", " + std::to_string(m.end) + "] said " +
                      std::to_string(p.total) + " parts, now " + std::to_string(m.parts));
    }
    p.have[m.part] = std::move(m.changes);  // a repeated part replaces the first
    if (p.have.size() < p.total) return Status::OK();
    txn.parts.reserve(p.total);
    for (auto& [index, changes] : p.have) txn.parts.push_back(std::move(changes));
    partial_.erase(it);
  } else {
    txn.parts.push_back(std::move(m.changes));
  }
  for (const auto& part : txn.parts) txn.changes += part.size();
  ++*credits;
  if (!coverage_.CoversRange(txn.start, txn.end)) ready->push_back(std::move(txn));
  return Status::OK();
}

Status PeerSession::MergeTxn(const std::vector<ReadyTxn>& ready, size_t from, size_t to,
                             size_t* bad, Status* why) {
  *bad = to;
  Coverage next = coverage_;
  if (options_.before_merge_txn) options_.before_merge_txn();
  CRSYNC_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  Status s;
  size_t changes = 0;
  for (size_t k = from; k < to && s.ok(); ++k) {
    const ReadyTxn& m = ready[k];
    if (next.CoversRange(m.start, m.end)) continue;  // a duplicate within the batch
    changes += m.changes;
    // The parts in order, in this one SQLite transaction: merged as if
    // they were one batch.
    Status a;
    std::string where;
    for (size_t p = 0; p < m.parts.size() && a.ok(); ++p) {
      a = applier_->ApplyInTransaction(m.parts[p], /*tag=*/-1);
      if (!a.ok() && m.parts.size() > 1) {
        where = " part " + std::to_string(p + 1) + " of " + std::to_string(m.parts.size());
      }
    }
    if (a.ok()) a = next.Add(m.start, m.end);
    if (IsLocalCondition(a)) {  // this node's (ApplyReady tries again), not the changeset's
      Exec(db_, "ROLLBACK").IgnoreError();
      return a;
    }
    if (!a.ok()) {
      *bad = k;
      *why = Status::InvalidArgument("cannot apply changeset [" + std::to_string(m.start) + ", " +
                                     std::to_string(m.end) + "]" + where + ": " + a.message());
      Exec(db_, "ROLLBACK").IgnoreError();  // the batch is merged again without it
      return Status::OK();
    }
  }
  if (next.cursor() != coverage_.cursor() || cursor_unsaved_) s = SaveCursor(0, next.cursor());
  if (s.ok()) s = Exec(db_, "COMMIT");
  if (!s.ok()) {
    if (!sqlite3_get_autocommit(db_)) Exec(db_, "ROLLBACK").IgnoreError();
    // Ranges with nothing to merge only move the cursor: on a full disk it
    // moves in memory (SaveDeferredAck stores it once there is room), so
    // this node keeps receiving acknowledgments and sending its own.
    if (changes > 0 || !IsFull(s)) return s;
    if (!cursor_unsaved_) {
      notice_ = std::string("the disk is full: what this peer sent is received, and its cursor ") +
                "kept in memory until there is room (" + s.message() + ")";
    }
    cursor_unsaved_ = true;
  } else {
    cursor_unsaved_ = false;
  }
  coverage_ = next;
  return Status::OK();
}

Status PeerSession::ApplyReady(std::vector<ReadyTxn>* ready, uint32_t credits,
                               std::vector<Message>* out) {
  // No savepoint per peer transaction (its journalling cost a fifth of the
  // merge): a refused one rolls the whole SQLite transaction back, and the
  // good ones before it are merged again, alone.
  Status refused;
  size_t i = 0;
  while (i < ready->size() && refused.ok()) {
    size_t end = i, changes = 0;
    for (; end < ready->size(); ++end) {
      size_t n = (*ready)[end].changes;
      if (changes > 0 && changes + n > options_.max_changes_per_commit) break;
      changes += n;
    }
    size_t bad;
    bool refusal = false;  // s is a changeset's refusal, not this node's failure
    Status s = MergeTxn(*ready, i, end, &bad, &refused);
    // Locked by another connection past the busy timeout (an application
    // holding its write lock): this node's condition, not the changesets'.
    for (int tries = 0; tries < kLockedRetries && IsLocked(s); ++tries) {
      s = MergeTxn(*ready, i, end, &bad, &refused);
    }
    if (s.ok() && bad > i && bad < end) {
      size_t again;
      Status why;
      // The same changesets merged before; if one is refused now anyway
      // (merging is deterministic, so it should not be), give up on the
      // connection rather than loop.
      s = MergeTxn(*ready, i, bad, &again, &why);
      refusal = s.ok() && again != bad;
      if (refusal) s = why;
    }
    if (IsLocked(s)) {
      return Fail(out, ErrorMsg::kInternal,
                  "node " + HexBytes(site_id_) + " cannot commit merged changesets: its database "
                  "stayed locked by another connection (" + s.message() +
                      "); they will be received again");
    }
    if (s.code() == Status::Code::kFailedPrecondition) {
      return Fail(out, ErrorMsg::kInternal,
                  "node " + HexBytes(site_id_) + " cannot merge changesets yet, for a reason of "
                  "its own (" + s.message() + "); they will be received again");
    }
    if (!s.ok() && OwnSchemaChanged()) return FailSchemaChanged(out);  // ours, not theirs
    if (!s.ok() && refusal) return Fail(out, ErrorMsg::kBadChangeset, s.message());
    if (!s.ok()) {
      return Fail(out, ErrorMsg::kInternal,
                  "node " + HexBytes(site_id_) + " cannot commit merged changesets (" +
                      s.message() + "); they will be received again");
    }
    i = end;
  }
  ready->clear();
  if (credits > 0) out->push_back(AckMsg{coverage_.cursor(), credits});
  if (!refused.ok()) {
    if (OwnSchemaChanged()) return FailSchemaChanged(out);
    return Fail(out, ErrorMsg::kBadChangeset, refused.message());
  }
  return Status::OK();
}

}  // namespace crsync
