#include "transport/sidecar.h"

#include <capnp/message.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "common/guard.h"
#include "crsync/crsync.h"
#include "crsync/sqlite_handles.h"
#include "crsync/vfs.h"
#include "transport/codec.h"
#include "transport/frame.h"
#include "transport/net_addr.h"
#include "transport/peer_session.h"
#include "vfs/commit_signal.h"

namespace crsync {
namespace {

// At most this many queued messages of one connection go to the database
// thread together (PeerSession::OnMessages bounds each commit by changes).
constexpr size_t kMaxBatchMessages = 64;

// Redial backoff: doubling from the first delay up to the cap. A connection
// that stayed up this long counts as having worked, and restarts it.
constexpr int kFirstBackoffMs = 100;
constexpr int kMaxBackoffMs = 5000;
constexpr uint64_t kStableConnectionMs = 5000;

// Flow control of one connection. Reading stops while this many of its
// messages wait for the database thread (each up to a frame: a peer cannot
// make us hold more than this many frames), and starts again below half.
constexpr size_t kMaxQueuedMessages = 256;
// A peer that does not read what we send: past this many bytes waiting in
// its socket's write queue, the connection is closed (it resumes from its
// saved cursor when it reconnects).
constexpr size_t kMaxWriteQueueBytes = size_t{64} << 20;

}  // namespace

struct Sidecar::Impl {
  struct Conn;
  struct Dialer;

  // A unit of database work, run on the thread pool.
  struct Task {
    enum Kind { kOpen, kMessage, kPump, kClose } kind;
    uint64_t conn = 0;
    Message msg;
    std::vector<Message> more;  // kMessage: later messages of the same connection
    // Results, read back on the loop thread.
    std::vector<std::pair<uint64_t, Message>> out;
    std::vector<uint64_t> to_close;
    bool pump_again = false;  // a session stopped pumping at its per-call bound
    uv_work_t work;
    Impl* impl;
  };

  // One TCP connection (accepted or dialed). Owned by the loop; freed in
  // its close callback only.
  struct Conn {
    uv_tcp_t tcp;
    Impl* impl;
    uint64_t id;
    Dialer* dialer = nullptr;  // set for dialed connections
    FrameReader reader;
    bool closing = false;
    uint64_t connected_at = 0;  // uv_now() when it connected (dialed ones)
    uint64_t opened_at = 0;     // uv_now() when it started reading
    bool heard = false;         // a whole message arrived
    size_t queued = 0;          // its kMessage tasks not yet taken by the strand
    bool paused = false;        // reading stopped (kMaxQueuedMessages)
    std::string peer;
    Conn(Impl* i, uint64_t n)
        : impl(i), id(n), reader(FrameReaderOptions{}, [this](capnp::MessageReader& m) {
            Message msg;
            CRSYNC_RETURN_IF_ERROR(DecodeMessage(m, &msg));
            heard = true;
            ++queued;
            impl->Enqueue(Task::kMessage, id, std::move(msg));
            return Status::OK();
          }) {}
  };

  // Redials one configured peer with exponential backoff.
  struct Dialer {
    Impl* impl;
    std::string address;
    uv_timer_t timer;
    uv_connect_t req;
    int backoff_ms = kFirstBackoffMs;
    Conn* conn = nullptr;
  };

  struct WriteReq {
    uv_write_t req;
    kj::Array<kj::byte> bytes;
  };

  explicit Impl(SidecarOptions o) : options(std::move(o)) {}

  SidecarOptions options;
  std::string signal_path;  // the database's full path, as the VFS names it
  bool loop_ready = false;  // loop thread: uv_loop_init succeeded
  // Where Stop() (any thread) meets the loop: a Stop() before the loop runs
  // is remembered, one after it began shutting down is a no-op (the async
  // handle may be closed by then).
  std::mutex stop_mu;
  enum class StopState { kNotRunning, kRunning, kShutDown } stop_state = StopState::kNotRunning;
  bool stop_requested = false;
  uv_loop_t loop;
  uv_tcp_t server;
  bool listening = false;
  uv_async_t stop_async;
  uv_fs_event_t signal_watch;
  bool watching = false;
  uv_timer_t pump_timer;
  uv_signal_t sigint, sigterm;
  DbPtr db;
  std::map<uint64_t, Conn*> conns;                              // loop thread
  std::map<uint64_t, std::unique_ptr<PeerSession>> sessions;    // strand only
  std::deque<Task*> queue;                                      // loop thread
  bool busy = false;
  bool pump_queued = false;
  uint64_t next_conn = 1;
  std::vector<std::unique_ptr<Dialer>> dialers;
  FrameEncoder encoder;
  bool stopping = false;
  sqlite3_uint64 writer_waits = 0;  // strand only: last crsync_writer_waits seen
  uint64_t yields = 0;              // strand only

  void Log(int level, const char* fmt, ...) {
    if (level > options.log_level) return;
    va_list ap;
    va_start(ap, fmt);
    static const char* kNames[] = {"error", "info", "debug"};
    std::fprintf(stderr, "crsyncd %s: ", kNames[level < 0 ? 0 : (level > 2 ? 2 : level)]);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
  }

  // --- the database strand ---

  void Enqueue(Task::Kind kind, uint64_t conn, Message msg = Message{}) {
    if (kind == Task::kPump) {
      if (pump_queued) return;  // one pending pump covers every commit
      pump_queued = true;
    }
    auto* t = new Task{kind, conn, std::move(msg), {}, {}, {}, false, {}, this};
    t->work.data = t;
    queue.push_back(t);
    RunNext();
  }

  void RunNext() {
    if (busy || queue.empty()) return;
    Task* t = queue.front();
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
      Task* next = queue.front();
      queue.pop_front();
      batched += changes(next->msg);
      t->more.push_back(std::move(next->msg));
      delete next;
      ++taken;
    }
    if (taken) MessagesTaken(t->conn, taken);
    busy = true;
    int rc = uv_queue_work(&loop, &t->work, &Impl::DoWork, &Impl::AfterWork);
    if (rc != 0) {
      Log(0, "cannot schedule database work: %s", uv_strerror(rc));
      busy = false;
      delete t;
    }
  }

  static void DoWork(uv_work_t* w) {
    auto* t = static_cast<Task*>(w->data);
    bool done = false;
    GuardVoidCall([&] {
      t->impl->Process(t);
      done = true;
    });
    if (!done) GuardVoidCall([&] { t->impl->Recover(t); });
  }

  // After Process() threw (out of memory, most likely): no transaction may
  // stay open holding the write lock, and sessions whose state is now
  // unknown are closed (their peers reconnect and resume from saved
  // cursors).
  void Recover(Task* t) {
    if (!sqlite3_get_autocommit(db.get())) Exec(db.get(), "ROLLBACK").IgnoreError();
    Log(0, "internal error in database work; closing the connections involved");
    t->out.clear();
    if (t->conn != 0) {
      t->to_close.push_back(t->conn);
    } else {
      for (auto& [id, s] : sessions) t->to_close.push_back(id);
    }
  }

  // On a pool thread, one at a time: the only place that touches the
  // database and the sessions.
  void Process(Task* t) {
    std::vector<Message> out;
    auto flush = [&](uint64_t conn) {
      for (auto& m : out) t->out.emplace_back(conn, std::move(m));
      out.clear();
    };
    auto pump_all = [&](uint64_t except) {
      for (auto& [id, s] : sessions) {
        if (id == except || !s->ready()) continue;
        Status st = s->Pump(&out);
        flush(id);
        if (!st.ok()) t->to_close.push_back(id);
      }
    };
    switch (t->kind) {
      case Task::kOpen: {
        std::unique_ptr<PeerSession> s;
        SessionOptions so;
        so.before_merge_txn = [this] { YieldToWriters(); };
        Status st = PeerSession::Open(db.get(), so, &s);
        if (st.ok()) st = s->Start(&out);
        flush(t->conn);
        if (st.ok()) {
          sessions[t->conn] = std::move(s);
        } else {
          Log(0, "connection %llu: %s", static_cast<unsigned long long>(t->conn), st.ToString().c_str());
          t->to_close.push_back(t->conn);
        }
        break;
      }
      case Task::kMessage: {
        auto it = sessions.find(t->conn);
        if (it == sessions.end()) break;
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
          Log(0, "connection %llu closed: %s", static_cast<unsigned long long>(t->conn),
              st.message().c_str());
          t->to_close.push_back(t->conn);
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
        sessions.erase(t->conn);
        break;
    }
    for (auto& [id, s] : sessions) t->pump_again |= s->more_to_send();
  }

  // On the strand, before each merge transaction: when an application
  // writer met the write lock since we last looked (the VFS counts it), wait
  // until its commit lands (the commit counter moves) or 50 ms pass, so the
  // app waits for at most one of our bounded merge commits.
  void YieldToWriters() {
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

  static void AfterWork(uv_work_t* w, int) {
    auto* t = static_cast<Task*>(w->data);
    Impl* self = t->impl;
    GuardVoidCall([&] {
      for (auto& [conn, msg] : t->out) self->Send(conn, msg);
      for (uint64_t conn : t->to_close) self->CloseConn(conn);
    });
    bool pump_again = t->pump_again;
    delete t;
    self->busy = false;
    // Queued behind whatever arrived meanwhile (acks, changesets).
    if (pump_again && !self->stopping) self->Enqueue(Task::kPump, 0);
    self->RunNext();
  }

  // --- connections (loop thread) ---

  void Send(uint64_t conn_id, const Message& msg) {
    auto it = conns.find(conn_id);
    if (it == conns.end() || it->second->closing) return;
    auto* stream = reinterpret_cast<uv_stream_t*>(&it->second->tcp);
    if (uv_stream_get_write_queue_size(stream) > kMaxWriteQueueBytes) {
      Log(0, "connection %llu (%s): the peer is not reading (%zu bytes waiting to be sent), "
          "closing", static_cast<unsigned long long>(conn_id), it->second->peer.c_str(),
          uv_stream_get_write_queue_size(stream));
      CloseConn(conn_id);
      return;
    }
    // One segment: cheaper to build, serialise and (for the peer) to read.
    capnp::MallocMessageBuilder builder(static_cast<unsigned>(
        std::min<size_t>(EstimateMessageWords(msg), size_t{1} << 26)));
    Status st = EncodeMessage(msg, &builder);
    auto req = std::make_unique<WriteReq>();
    if (st.ok()) st = encoder.Encode(builder, &req->bytes);
    if (!st.ok()) {
      Log(0, "cannot encode a message: %s", st.ToString().c_str());
      CloseConn(conn_id);
      return;
    }
    uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(req->bytes.begin()),
                               static_cast<unsigned>(req->bytes.size()));
    req->req.data = req.get();
    int rc = uv_write(&req->req, reinterpret_cast<uv_stream_t*>(&it->second->tcp), &buf, 1,
                      [](uv_write_t* r, int status) {
                        std::unique_ptr<WriteReq> owned(static_cast<WriteReq*>(r->data));
                        (void)status;  // a failed write shows up as a read error/EOF
                      });
    if (rc == 0) {
      req.release();  // owned by libuv until the callback
    } else {
      CloseConn(conn_id);
    }
  }

  Conn* NewConn() {
    auto* c = new Conn(this, next_conn++);
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    return c;
  }

  void StartConn(Conn* c) {
    conns[c->id] = c;
    c->opened_at = uv_now(&loop);
    uv_tcp_nodelay(&c->tcp, 1);
    SetLiveness(&c->tcp);
    StartReading(c);
    Enqueue(Task::kOpen, c->id);
  }

  static void OnAlloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    buf->base = nullptr;
    buf->len = 0;  // libuv then reports UV_ENOBUFS to OnRead
    GuardVoidCall([&] {
      buf->base = new char[suggested];
      buf->len = static_cast<decltype(buf->len)>(suggested);
    });
  }

  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    std::unique_ptr<char[]> owned(buf->base);
    auto* c = static_cast<Conn*>(s->data);
    if (nread == 0) return;  // EAGAIN
    auto handle = [&] {
      if (nread < 0) {
        // A peer closing or vanishing is routine; other read errors are not.
        bool routine = nread == UV_EOF || nread == UV_ECONNRESET;
        c->impl->Log(routine ? 1 : 0, "connection %llu (%s) ended: %s",
                     static_cast<unsigned long long>(c->id), c->peer.c_str(),
                     uv_strerror(static_cast<int>(nread)));
        c->impl->CloseConn(c->id);
        return;
      }
      Status st =
          c->reader.Feed(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
      if (!st.ok()) {
        c->impl->Log(0, "connection %llu (%s): bad frame, closing: %s",
                     static_cast<unsigned long long>(c->id), c->peer.c_str(), st.message().c_str());
        c->impl->CloseConn(c->id);
        return;
      }
      if (!c->paused && c->queued >= kMaxQueuedMessages && !c->closing) {
        c->paused = true;  // resumed by MessagesTaken
        uv_read_stop(s);
      }
    };
    bool handled = false;
    GuardVoidCall([&] {
      handle();
      handled = true;
    });
    if (!handled) GuardVoidCall([&] { c->impl->CloseConn(c->id); });  // out of memory
  }

  void StartReading(Conn* c) {
    int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), &Impl::OnAlloc, &Impl::OnRead);
    if (rc != 0) {
      Log(0, "connection %llu (%s): cannot read: %s", static_cast<unsigned long long>(c->id),
          c->peer.c_str(), uv_strerror(rc));
      CloseConn(c->id);
    }
  }

  // The strand took `n` queued messages of connection `id`: a paused one
  // reads again once half its queue is gone.
  void MessagesTaken(uint64_t id, size_t n) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn* c = it->second;
    c->queued = c->queued > n ? c->queued - n : 0;
    if (c->paused && !c->closing && c->queued <= kMaxQueuedMessages / 2) {
      c->paused = false;
      StartReading(c);
    }
  }

  // Drops the messages of connection `id` still waiting for the strand: a
  // closed connection's session is gone, and what it sent is not merged
  // (its cursor was not moved by it; the peer resends).
  void DropQueuedMessages(uint64_t id) {
    for (auto it = queue.begin(); it != queue.end();) {
      if ((*it)->kind == Task::kMessage && (*it)->conn == id) {
        delete *it;
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
  }

  void CloseConn(uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn* c = it->second;
    conns.erase(it);
    if (c->closing) return;
    c->closing = true;
    DropQueuedMessages(id);
    Enqueue(Task::kClose, id);
    Dialer* d = c->dialer;
    const bool stable = uv_now(&loop) - c->connected_at >= kStableConnectionMs;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
      delete static_cast<Conn*>(h->data);
    });
    if (d) {
      d->conn = nullptr;
      // Only a connection that stayed up a while restarts the backoff: one
      // refused right after connecting (schema mismatch, bad frames, a
      // peer that is this node) must not be redialled ten times a second.
      if (stable) d->backoff_ms = kFirstBackoffMs;
      if (!stopping) ScheduleDial(d);
    }
  }

  // Closes connections that have not delivered a whole message within
  // handshake_timeout_ms of opening (a client that never says Hello).
  void CloseSilentConns() {
    if (options.handshake_timeout_ms <= 0) return;
    const uint64_t now = uv_now(&loop);
    std::vector<uint64_t> silent;
    for (auto& [id, c] : conns) {
      if (!c->heard && now - c->opened_at >= static_cast<uint64_t>(options.handshake_timeout_ms)) {
        silent.push_back(id);
      }
    }
    for (uint64_t id : silent) {
      Log(0, "connection %llu (%s): no hello within %d ms, closing", static_cast<unsigned long long>(id),
          conns[id]->peer.c_str(), options.handshake_timeout_ms);
      CloseConn(id);
    }
  }

  // A dial still waiting for its TCP connect (not in `conns` yet) is
  // cancelled; its connect callback then sees `closing` and stands back.
  void CancelDial(Dialer* d) {
    Conn* c = d->conn;
    d->conn = nullptr;
    if (!c || c->closing || conns.count(c->id)) return;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
      delete static_cast<Conn*>(h->data);
    });
  }

  void ScheduleDial(Dialer* d) {
    uv_timer_start(&d->timer, [](uv_timer_t* t) {
      auto* d = static_cast<Dialer*>(t->data);
      d->impl->Dial(d);
    }, static_cast<uint64_t>(d->backoff_ms), 0);
    d->backoff_ms = std::min(d->backoff_ms * 2, kMaxBackoffMs);
  }

  void Dial(Dialer* d) {
    if (stopping) return;
    sockaddr_storage addr;
    if (!SockAddr(d->address, &addr).ok()) return;
    Conn* c = NewConn();
    c->dialer = d;
    c->peer = d->address;
    d->conn = c;
    d->req.data = c;
    int rc = uv_tcp_connect(&d->req, &c->tcp, reinterpret_cast<sockaddr*>(&addr),
                            [](uv_connect_t* req, int status) {
                              auto* c = static_cast<Conn*>(req->data);
                              Impl* self = c->impl;
                              if (c->closing) return;  // cancelled by Shutdown()
                              if (status != 0) {
                                self->Log(2, "dial %s: %s", c->peer.c_str(), uv_strerror(status));
                                Dialer* d = c->dialer;
                                d->conn = nullptr;
                                uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
                                  delete static_cast<Conn*>(h->data);
                                });
                                if (d && !self->stopping) self->ScheduleDial(d);
                                return;
                              }
                              if (self->stopping) {  // connected after Stop(): drop it
                                c->dialer->conn = nullptr;
                                uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
                                  delete static_cast<Conn*>(h->data);
                                });
                                return;
                              }
                              self->Log(1, "connected to %s", c->peer.c_str());
                              c->connected_at = uv_now(&self->loop);
                              self->StartConn(c);
                            });
    if (rc != 0) {
      d->conn = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
        delete static_cast<Conn*>(h->data);
      });
      ScheduleDial(d);
    }
  }

  Status Start() {
    Status st = OpenDb(options.db_path, SQLITE_OPEN_READWRITE, nullptr, &db);
    if (!st.ok()) return st.WithContext("crsyncd needs an existing database");
    // The VFS names the side file after the path SQLite resolved (symlinks
    // followed); so must we, or we would watch a file nobody signals.
    const char* resolved = sqlite3_db_filename(db.get(), "main");
    signal_path = resolved && *resolved ? resolved : options.db_path;
    crsync_writer_waits(signal_path.c_str(), &writer_waits);
    sqlite3_busy_timeout(db.get(), 5000);  // before the engine reads anything
    char* err = nullptr;
    if (int rc = crsync_engine_init(db.get(), &err); rc != SQLITE_OK) {
      std::string m = err ? err : "cannot install the engine";
      sqlite3_free(err);
      return Status::Sqlite(rc, m);
    }
    // WAL + synchronous=NORMAL: a power loss may drop the last merges, never
    // split one, and the receive cursor commits with them (it cannot run ahead).
    CRSYNC_RETURN_IF_ERROR(Exec(db.get(), "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL"));
    if (uv_loop_init(&loop) != 0) return Status::Transport("cannot create the event loop");
    loop_ready = true;
    stop_async.data = this;
    uv_async_init(&loop, &stop_async, [](uv_async_t* a) { static_cast<Impl*>(a->data)->Shutdown(); });
    {
      std::lock_guard<std::mutex> lock(stop_mu);
      stop_state = StopState::kRunning;
    }
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    sigint.data = sigterm.data = this;
    auto on_signal = [](uv_signal_t* s, int) {
      auto* self = static_cast<Impl*>(s->data);
      self->Log(1, "signal received, stopping");
      self->Shutdown();
    };
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_timer_init(&loop, &pump_timer);
    pump_timer.data = this;
    uv_timer_start(&pump_timer, [](uv_timer_t* t) {
      auto* self = static_cast<Impl*>(t->data);
      GuardVoidCall([&] {
        self->CloseSilentConns();
        self->Enqueue(Task::kPump, 0);
      });
    }, static_cast<uint64_t>(options.pump_interval_ms), static_cast<uint64_t>(options.pump_interval_ms));
    // The commit signal: the VFS side file (created if needed).
    std::string side = SignalPath(signal_path);
    if (int fd = OpenSignalFile(signal_path); fd >= 0) close(fd);
    uv_fs_event_init(&loop, &signal_watch);
    signal_watch.data = this;
    if (uv_fs_event_start(&signal_watch, [](uv_fs_event_t* h, const char*, int, int) {
          static_cast<Impl*>(h->data)->Enqueue(Task::kPump, 0);
        }, side.c_str(), 0) == 0) {
      watching = true;
      // Re-arm the wake-up now: a commit made before we watched may have
      // left it disarmed, and later commits would then wait for the timer.
      Enqueue(Task::kPump, 0);
    } else {
      Log(0, "cannot watch %s: relying on the %d ms timer", side.c_str(), options.pump_interval_ms);
      uv_close(reinterpret_cast<uv_handle_t*>(&signal_watch), nullptr);
    }
    if (!options.listen.empty()) {
      sockaddr_storage addr;
      CRSYNC_RETURN_IF_ERROR(SockAddr(options.listen, &addr));
      uv_tcp_init(&loop, &server);
      server.data = this;
      int rc = uv_tcp_bind(&server, reinterpret_cast<sockaddr*>(&addr), 0);
      if (rc == 0) {
        rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server), 64, [](uv_stream_t* s, int status) {
          auto* self = static_cast<Impl*>(s->data);
          if (status != 0) return;
          Conn* c = self->NewConn();
          if (uv_accept(s, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
            uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
              delete static_cast<Conn*>(h->data);
            });
            return;
          }
          c->peer = "inbound";
          self->Log(1, "accepted connection %llu", static_cast<unsigned long long>(c->id));
          self->StartConn(c);
        });
      }
      listening = true;
      if (rc != 0) return Status::Transport("cannot listen on " + options.listen + ": " + uv_strerror(rc));
      sockaddr_storage bound;
      int len = sizeof bound;
      uv_tcp_getsockname(&server, reinterpret_cast<sockaddr*>(&bound), &len);
      int port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                   : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      Log(1, "listening on %s (port %d), database %s", options.listen.c_str(), port,
          options.db_path.c_str());
      if (options.on_listening) options.on_listening(port);
    }
    for (const std::string& p : options.peers) {
      sockaddr_storage addr;
      CRSYNC_RETURN_IF_ERROR(SockAddr(p, &addr));
      if (reinterpret_cast<sockaddr_in*>(&addr)->sin_port == 0) {  // same offset in sockaddr_in6
        return Status::InvalidArgument("bad peer address '" + p + "': port 0 cannot be dialled");
      }
      auto d = std::make_unique<Dialer>();
      d->impl = this;
      d->address = p;
      uv_timer_init(&loop, &d->timer);
      d->timer.data = d.get();
      Dial(d.get());
      dialers.push_back(std::move(d));
    }
    if (options.on_ready) options.on_ready();
    return Status::OK();
  }

  void Shutdown() {
    if (stopping) return;
    stopping = true;
    {
      std::lock_guard<std::mutex> lock(stop_mu);
      stop_state = StopState::kShutDown;  // Stop() no longer touches stop_async
    }
    std::vector<uint64_t> ids;
    for (auto& [id, c] : conns) ids.push_back(id);
    for (uint64_t id : ids) CloseConn(id);
    for (auto& d : dialers) {
      CancelDial(d.get());
      uv_close(reinterpret_cast<uv_handle_t*>(&d->timer), nullptr);
    }
    if (listening) uv_close(reinterpret_cast<uv_handle_t*>(&server), nullptr);
    if (watching) uv_close(reinterpret_cast<uv_handle_t*>(&signal_watch), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&pump_timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&stop_async), nullptr);
  }
};

Sidecar::Sidecar(SidecarOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Sidecar::~Sidecar() = default;

Status Sidecar::Run() {
  // A peer that vanishes while we write must cost a connection, not the
  // process: ignore SIGPIPE unless the application handles it itself.
  struct sigaction current;
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
  Status st = impl_->Start();
  if (!st.ok()) {
    if (impl_->loop_ready) {
      impl_->Shutdown();
      uv_run(&impl_->loop, UV_RUN_DEFAULT);
      uv_loop_close(&impl_->loop);
    }
    return st;
  }
  bool stop_now;
  {
    std::lock_guard<std::mutex> lock(impl_->stop_mu);
    stop_now = impl_->stop_requested;  // Stop() came before the loop could hear it
  }
  if (stop_now) impl_->Shutdown();
  uv_run(&impl_->loop, UV_RUN_DEFAULT);
  impl_->sessions.clear();  // no task is running once the loop ended
  if (impl_->yields) {
    impl_->Log(1, "merges stepped aside for application writers %llu times",
               static_cast<unsigned long long>(impl_->yields));
  }
  int rc = uv_loop_close(&impl_->loop);
  impl_->Log(1, "stopped");
  if (rc != 0) return Status::Transport("event loop closed with live handles");
  return Status::OK();
}

void Sidecar::Stop() {
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  impl_->stop_requested = true;
  if (impl_->stop_state == Impl::StopState::kRunning) uv_async_send(&impl_->stop_async);
}

}  // namespace crsync
