// transport/sidecar_strand.cc — the sidecar's database strand: tasks run
// one at a time, in order, on libuv's thread pool; results go back to the
// loop thread.
#include <algorithm>
#include <chrono>
#include <thread>

#include "crsync/crsync.h"
#include "crsync/vfs.h"
#include "common/hex.h"
#include "transport/sidecar_impl.h"

namespace crsync {

void Sidecar::Impl::Enqueue(Task::Kind kind, uint64_t conn, Message msg, std::string ended,
                            int ended_level, std::string subject) {
  if (kind == Task::kPump && pump_queued) {
    RunNext();  // one pending pump covers every commit
    return;
  }
  auto t = std::make_unique<Task>();
  t->kind = kind;
  t->conn = conn;
  t->msg = std::move(msg);
  t->impl = this;
  t->ended = std::move(ended);
  t->ended_level = ended_level;
  t->subject = std::move(subject);
  t->work.data = t.get();
  queue.push_back(std::move(t));
  // Only once it is queued: a failure above must not leave a pump promised.
  if (kind == Task::kPump) pump_queued = true;
  RunNext();
}

void Sidecar::Impl::RunNext() {
  if (busy || queue.empty()) return;
  // What may throw comes before anything is taken from the queue: room
  // for the messages that will go with the first one (below).
  if (queue.size() > 1 && queue[0]->kind == Task::kMessage && queue[1]->kind == Task::kMessage &&
      queue[1]->conn == queue[0]->conn) {
    queue[0]->more.reserve(kMaxBatchMessages);
  }
  std::unique_ptr<Task> t = std::move(queue.front());
  queue.pop_front();
  if (t->kind == Task::kPump) pump_queued = false;
  size_t taken = t->kind == Task::kMessage ? 1 : 0;
  // Messages that queued up behind this one on the same connection go
  // with it: the session merges their changesets in fewer commits.
  // Each task is about one merge commit, so its ack goes out (and the
  // sender refills its window) while the next commit runs.
  auto changes = [](const Message& m) {
    const auto* c = std::get_if<ChangesetMsg>(&m);
    return c ? c->changes.size() : size_t{0};
  };
  size_t batched = changes(t->msg);
  while (t->kind == Task::kMessage && !queue.empty() && t->more.size() < kMaxBatchMessages &&
         queue.front()->kind == Task::kMessage && queue.front()->conn == t->conn &&
         batched + changes(queue.front()->msg) <= SessionOptions{}.max_changes_per_commit) {
    std::unique_ptr<Task> next = std::move(queue.front());
    queue.pop_front();
    batched += changes(next->msg);
    t->more.push_back(std::move(next->msg));  // reserved: does not throw
    ++taken;
  }
  // Busy before MessagesTaken: resuming a connection may close it, and the
  // close's Enqueue must not start a second task beside this one.
  busy = true;
  t->changes_in = batched;
  if (taken) Guarded("resuming a connection", [&] { MessagesTaken(t->conn, taken); });
  int rc = 0;
  if (!Guarded("scheduling database work", [&] {
        t->send_paused = send_paused_conns;
        rc = uv_queue_work(&loop, &t->work, &Impl::DoWork, &Impl::AfterWork);
      })) {
    rc = UV_ENOMEM;
  }
  if (rc != 0) {
    // The task is dropped and the strand stays free for the next. A
    // connection whose message or opening is lost would be out of step:
    // it is closed, and its peer resends from its cursor when it
    // reconnects. (A lost pump is made up by the next.)
    Log(0, "cannot schedule database work: %s", uv_strerror(rc));
    busy = false;
    if (t->kind == Task::kMessage || t->kind == Task::kOpen) {
      const uint64_t conn = t->conn;
      t.reset();
      Guarded("closing a connection", [&] { CloseConn(conn); });
    }
    return;
  }
  t.release();  // AfterWork owns it now
}

void Sidecar::Impl::DoWork(uv_work_t* w) {
  auto* t = static_cast<Task*>(w->data);
  // On a pool thread (Log only writes to stderr).
  if (!t->impl->Guarded("working on the database", [&] { t->impl->Process(t); })) {
    t->impl->Guarded("recovering", [&] { t->impl->Recover(t); });
  }
}

void Sidecar::Impl::Recover(Task* t) {
  if (!sqlite3_get_autocommit(db.get())) Exec(db.get(), "ROLLBACK").IgnoreError();
  Log(0, "internal error in database work; closing every connection");
  // A message task also pumps the other sessions (relaying), so any of them
  // may believe it sent what is now discarded: all close, and every peer
  // resumes from its saved cursor.
  t->out.clear();
  t->to_close.clear();
  t->to_close.reserve(sessions.size());
  for (auto& [id, s] : sessions) t->to_close.push_back(id);
}

namespace {

// What a run of messages carries, for the debug log: "2 changesets
// (versions 4..9, 120 changes), ack 9", "hello", "error 5".
struct Tally {
  size_t changesets = 0, changes = 0;
  int64_t lo = INT64_MAX, hi = 0;
  std::string rest;

  void Add(const Message& m) {
    if (const auto* c = std::get_if<ChangesetMsg>(&m)) {
      ++changesets;
      changes += c->changes.size();
      lo = std::min(lo, c->start);
      hi = std::max(hi, c->end);
    } else if (const auto* a = std::get_if<AckMsg>(&m)) {
      rest += ", ack " + std::to_string(a->up_to);
    } else if (const auto* e = std::get_if<ErrorMsg>(&m)) {
      rest += ", error " + std::to_string(e->code);
    } else {
      rest += ", hello";
    }
  }

  std::string str() const {
    if (changesets == 0) return rest.empty() ? rest : rest.substr(2);
    return std::to_string(changesets) + " changeset" + (changesets == 1 ? "" : "s") + " (versions " +
           std::to_string(lo) + ".." + std::to_string(hi) + ", " + std::to_string(changes) +
           " change" + (changes == 1 ? "" : "s") + ")" + rest;
  }
};

}  // namespace

void Sidecar::Impl::Process(Task* t) {
  std::vector<Message> out;
  const bool debug = options.log_level >= 2;
  auto flush = [&](uint64_t conn) {
    if (debug && !out.empty()) {
      Tally sent;
      for (const Message& m : out) sent.Add(m);
      Log(2, "connection %llu: sent %s", static_cast<unsigned long long>(conn), sent.str().c_str());
    }
    for (auto& m : out) t->out.emplace_back(conn, std::move(m));
    out.clear();
    if (auto it = sessions.find(conn); it != sessions.end()) {
      if (std::string n = it->second->TakeNotice(); !n.empty()) {
        LogAbout(SubjectOf(conn), -1, "connection %llu: %s", static_cast<unsigned long long>(conn),
                 n.c_str());
      }
    }
  };
  // Sessions that failed (and logged why) end here, not at their kClose:
  // nothing more is pumped to or merged from them, and their connection's
  // end is not logged a second time.
  std::vector<uint64_t> failed;
  for (auto& [id, s] : sessions) {
    s->set_send_paused(std::find(t->send_paused.begin(), t->send_paused.end(), id) !=
                       t->send_paused.end());
  }
  auto pump_all = [&](uint64_t except) {
    for (auto& [id, s] : sessions) {
      if (id == except || !s->ready()) continue;
      Status st = s->Pump(&out);
      flush(id);
      if (!st.ok()) {
        LogAbout(SubjectOf(id), 0, "connection %llu closed: %s",
                 static_cast<unsigned long long>(id), st.message().c_str());
        t->to_close.push_back(id);
        failed.push_back(id);
      }
    }
  };
  switch (t->kind) {
    case Task::kOpen: {
      subjects[t->conn] = t->subject;
      std::unique_ptr<PeerSession> s;
      SessionOptions so;
      so.before_merge_txn = [this] { YieldToWriters(); };
      so.instance = instance;
      // Heartbeats go out on the pump timer: never more often than it runs.
      so.heartbeat_ms = static_cast<uint32_t>(
          options.heartbeat_ms > 0 ? std::max(options.heartbeat_ms, options.pump_interval_ms) : 0);
      so.answers_probes = true;  // on the loop thread, as each is read (sidecar_conn.cc)
      so.admit = [this](const std::string& site, uint64_t peer_instance) {
        return AdmitPeer(site, peer_instance);
      };
      so.in_session_elsewhere = [this](const std::string& site, uint64_t peer_instance) {
        for (const auto& [id, other] : sessions) {
          if (other->ready() && other->peer_site() == site && other->peer_instance() == peer_instance)
            return true;
        }
        return false;
      };
      Status st = PeerSession::Open(db.get(), so, &s);
      if (st.ok()) st = s->Start(&out);
      flush(t->conn);
      if (st.ok()) {
        sessions[t->conn] = std::move(s);
      } else {
        LogAbout(SubjectOf(t->conn), 0, "connection %llu: %s",
                 static_cast<unsigned long long>(t->conn), st.ToString().c_str());
        t->to_close.push_back(t->conn);
      }
      break;
    }
    case Task::kMessage: {
      auto it = sessions.find(t->conn);
      if (it == sessions.end()) break;
      if (debug) {
        Tally received;
        received.Add(t->msg);
        for (const Message& m : t->more) received.Add(m);
        Log(2, "connection %llu: received %s", static_cast<unsigned long long>(t->conn),
            received.str().c_str());
      }
      bool changeset = std::holds_alternative<ChangesetMsg>(t->msg);
      for (const Message& m : t->more) changeset |= std::holds_alternative<ChangesetMsg>(m);
      Status st;
      if (t->more.empty()) {
        st = it->second->OnMessage(t->msg, &out);
      } else {
        t->more.insert(t->more.begin(), std::move(t->msg));
        st = it->second->OnMessages(std::move(t->more), &out);
      }
      flush(t->conn);
      if (!st.ok()) {
        LogAbout(SubjectOf(t->conn), 0, "connection %llu closed: %s",
                 static_cast<unsigned long long>(t->conn), st.message().c_str());
        t->to_close.push_back(t->conn);
        failed.push_back(t->conn);
        CloseSessionsAfterRestore(*it->second, t);
      } else if (changeset) {
        pump_all(t->conn);  // relay what just arrived to the other peers
      }
      break;
    }
    case Task::kPump: {
      sqlite3_uint64 n;
      crsync_commit_counter_rearm(signal_path.c_str(), &n);  // before reading
      pump_all(0);
      break;
    }
    case Task::kClose:
      if (sessions.erase(t->conn) && !t->ended.empty()) {
        LogAbout(SubjectOf(t->conn), t->ended_level, "%s", t->ended.c_str());
      }
      subjects.erase(t->conn);
      break;
  }
  for (uint64_t id : failed) sessions.erase(id);
  for (uint64_t id : pokes) {
    auto it = sessions.find(id);
    // Acknowledges nothing (up to 0, no credit): a no-op for a live peer,
    // which answers the probe at once if it said it would (the loop closes
    // the connection when no answer comes: SidecarOptions::probe_timeout_ms).
    if (it != sessions.end()) t->out.emplace_back(id, AckMsg{0, 0, /*probe=*/true});
  }
  pokes.clear();
  for (auto& [id, s] : sessions) t->pump_again |= s->more_to_send();
}

// A restore was found (docs/protocol.md): other sessions with the peer that
// lost history hold its forgotten cursor in memory and would save it back;
// after we renewed our own epoch, every other session said hello with the
// old one. Either way they close, and their peers reconnect.
void Sidecar::Impl::CloseSessionsAfterRestore(const PeerSession& s, Task* t) {
  if (!s.renewed_own_epoch() && !s.forgot_peer_history()) return;
  for (auto& [id, other] : sessions) {
    if (id == t->conn) continue;
    if (s.renewed_own_epoch() || other->peer_site() == s.peer_site()) {
      Log(1, "connection %llu closed to resynchronize after a restore",
          static_cast<unsigned long long>(id));
      t->to_close.push_back(id);
    }
  }
}

// One site id at two instances. A node that restarted says hello at a new
// instance after its old connection closed (its process exited), unless
// its host vanished: then the old one stays open here until it is found
// dead. Otherwise two instances at once are two databases with one site
// id: their changes carry the same (site, version) pairs, so each version
// merged from one hides the other's, silently. So the new instance is
// refused, loudly, while the first is connected; and each connection of
// the first is probed (a no-op acknowledgment asking for an answer): a rebooted host
// answers with a reset, a live peer with a no-op Ack, and a connection
// whose far end vanished without a word (a black hole) answers nothing and
// is closed after probe_timeout_ms, not its heartbeat silence (half a
// minute), so a restarted node is not kept waiting for long.
//
// Nothing is remembered once the first connection ends: a record of
// "forked" sites was tried and dropped, as no close can be told apart
// reliably from a vanished host's (a reset taken by a write reads as EOF,
// a paused reader sees an old FIN late), and a wrong guess locked a node
// out until this sidecar restarted.
Status Sidecar::Impl::AdmitPeer(const std::string& site_id, uint64_t peer_instance) {
  if (peer_instance == 0) return Status::OK();  // an older node: cannot tell
  bool refused = false;
  for (const auto& [id, other] : sessions) {
    if (!other->ready() || other->peer_site() != site_id || other->peer_instance() == 0 ||
        other->peer_instance() == peer_instance) {
      continue;
    }
    // Every one is probed: the other instance may be connected twice (it
    // and this node dial each other), and one left unprobed would refuse
    // the next attempt too.
    pokes.push_back(id);
    refused = true;
  }
  if (refused) {
    return Status::FailedPrecondition(
        "site id " + HexBytes(site_id) + " is already connected to the node refusing it, from "
        "another running database: two databases share it (a copied database, or two sidecars on "
        "one database), and their changes would hide each other's. Give each replica its own "
        "database (a new one with the same CRR tables, empty, and let it sync). (A node whose host went away and came "
        "back, or restarted while its old connection hung, is admitted once that connection is "
        "found dead: at once if its host answers with a reset, else when it leaves a probe "
        "unanswered or has been silent past its heartbeat.)");
  }
  return Status::OK();
}

void Sidecar::Impl::YieldToWriters() {
  const char* path = signal_path.c_str();
  sqlite3_uint64 waits = 0, c0 = 0, c = 0;
  if (crsync_writer_waits(path, &waits) != SQLITE_OK || waits == writer_waits) return;
  crsync_commit_counter(path, &c0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(250));
    if (crsync_commit_counter(path, &c) == SQLITE_OK && c != c0) break;
  }
  ++yields;
  crsync_writer_waits(path, &writer_waits);  // the waits just served
}

void Sidecar::Impl::AfterWork(uv_work_t* w, int) {
  std::unique_ptr<Task> t(static_cast<Task*>(w->data));
  Impl* self = t->impl;
  self->changes_since_trim += t->changes_in;
  bool delivered = self->Guarded("delivering database results", [&] {
    for (auto& [conn, msg] : t->out) {
      if (const auto* c = std::get_if<ChangesetMsg>(&msg)) self->changes_since_trim += c->changes.size();
      self->Send(conn, msg);
    }
    for (uint64_t conn : t->to_close) self->CloseConn(conn);
  });
  if (!delivered) {
    // The sessions involved believe they sent what may not have left:
    // close their connections (the peers resume from saved cursors).
    for (const auto& out : t->out) {
      self->Guarded("closing a connection", [&] { self->CloseConn(out.first); });
    }
    for (uint64_t conn : t->to_close) self->Guarded("closing a connection", [&] { self->CloseConn(conn); });
  }
  self->busy = false;
  self->Guarded("scheduling database work", [&] {
    // Queued behind whatever arrived meanwhile (acks, changesets).
    if (t->pump_again && !self->stopping) self->Enqueue(Task::kPump, 0);
    self->RunNext();
  });
}

}  // namespace crsync
