// transport/sidecar_impl.h — the inside of crsync::Sidecar, shared by its
// three source files: sidecar.cc (start, stop, logging), sidecar_strand.cc
// (the database strand) and sidecar_conn.cc (connections, flow control,
// dialing). Private to the transport library.
//
// Threads: everything here runs on the loop thread, except what is marked
// "strand only" (Process and what it calls: one pool thread at a time).
// Every libuv callback body runs under Guarded(): no exception unwinds
// through libuv.
#ifndef CRSYNC_TRANSPORT_SIDECAR_IMPL_H_
#define CRSYNC_TRANSPORT_SIDECAR_IMPL_H_

#include <capnp/message.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/guard.h"
#include "crsync/sqlite_handles.h"
#include "transport/frame.h"
#include "transport/log_limiter.h"
#include "transport/messages.h"
#include "transport/peer_session.h"
#include "crsync/sidecar.h"
#include "transport/sidecar_lock.h"

namespace crsync {

struct Sidecar::Impl {
  // At most this many queued messages of one connection go to the database
  // thread together (PeerSession::OnMessages bounds each commit by changes).
  static constexpr size_t kMaxBatchMessages = 64;

  // Redial backoff: doubling from the first delay up to the cap. A connection
  // that stayed up this long counts as having worked, and restarts it.
  static constexpr int kFirstBackoffMs = 100;
  static constexpr int kMaxBackoffMs = 5000;
  static constexpr uint64_t kStableConnectionMs = 5000;

  // Flow control of one connection. Reading stops while this many of its
  // messages wait for the database thread (each up to a frame: a peer cannot
  // make us hold more than this many frames), and starts again below half.
  static constexpr size_t kMaxQueuedMessages = 256;
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
    // Connections whose sessions send no changesets while this task runs
    // (send_paused_conns when it was handed to the strand).
    std::vector<uint64_t> send_paused;
    bool pump_again = false;  // a session stopped pumping at its per-call bound
    uv_work_t work;
    Impl* impl;
    // kClose: why the connection ended, logged (at `ended_level`) on the
    // strand, after the messages that came before the end; empty for a
    // close this node decided, which logged its own reason.
    std::string ended;
    int ended_level = 1;
    std::string subject;  // kOpen: the peer's host, what its log lines are limited by
    size_t changes_in = 0;  // kMessage: the changes its changesets carry
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
    uint64_t heard_at = 0;      // NowMs() when bytes last arrived (or reading resumed)
    uint64_t sent_at = 0;       // NowMs() when a message was last queued to it
    bool said_anything = false; // a message was queued (our Hello goes first)
    uint32_t peer_heartbeat_ms = 0;  // what its Hello said (0: none, or not yet)
    bool peer_answers_probes = false;  // likewise
    bool probe_asked = false;   // it probed us: answered once its bytes are read
    uint64_t probe_sent_at = 0; // NowMs() when our unanswered probe went out (0: none)
    size_t queued = 0;          // its kMessage tasks not yet taken by the strand
    bool paused = false;        // reading stopped (kMaxQueuedMessages)
    uint64_t drained_at = 0;    // ms (uv_hrtime) when the queue last shrank, emptied or took data
    size_t last_waiting = 0;    // its size then
    bool send_paused = false;   // in send_paused_conns
    bool talks_to_itself = false;  // the Hello it sent is ours (CloseSelfLoop)
    std::string peer;
    // What lines about it are limited by (Log's `subject`): the address
    // dialled, or the host an inbound connection comes from (no port).
    std::string subject;
    // Its frame reader hands each decoded message to the strand.
    Conn(Impl* i, uint64_t n);
  };

  // Redials one configured peer with exponential backoff.
  struct Dialer {
    Impl* impl;
    std::string address;
    uv_timer_t timer;
    uv_connect_t req;
    int backoff_ms = kFirstBackoffMs;
    // Dials that failed in a row: the first is logged at the default level,
    // then one in kDialFailuresPerWarning (about once a minute at the
    // longest backoff), so an unreachable peer is visible without -v.
    int failures = 0;
    // Times its address reached this process (our own Hello came back).
    // It is dialled again only every kSelfRedialMs then (an address in
    // front of several nodes may lead elsewhere next time): a node given
    // every member's address, its own among them, would otherwise be
    // refused by itself every few seconds.
    int reached_itself = 0;
    bool redial_slowly = false;  // the next redial waits kSelfRedialMs
    Conn* conn = nullptr;
  };
  static constexpr int kDialFailuresPerWarning = 12;
  static constexpr int kSelfRedialMs = 60000;

  struct WriteReq {
    uv_write_t req;
    kj::Array<kj::byte> bytes;
    Conn* conn;  // alive in the callback: uv_close cancels writes before it frees
  };

  explicit Impl(SidecarOptions o) : options(std::move(o)) {}

  SidecarOptions options;
  std::string signal_path;  // the database's full path, as the VFS names it
  // Held from Start until Run returns: one sidecar per database (two would
  // announce one site id at two instances).
  SidecarLock lock;
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
  std::string side_path;                  // the side file signal_watch watches
  uint64_t side_dev = 0, side_ino = 0;    // which file that was when watched
  uint64_t db_dev = 0, db_ino = 0;        // the database file opened (0: unknown)
  // Our own descriptor of that file, to see it unlinked even when a new
  // file at its path got its inode number. Closed only after db: closing
  // a descriptor drops the process's POSIX locks on the file, SQLite's too.
  int db_fd = -1;
  Status failure;  // why the sidecar stopped by itself; Run() returns it
  bool side_moved = false;  // the watch heard it deleted or renamed
  uv_timer_t pump_timer;
  // SIGINT and SIGTERM stop the loop. They stay handled (unreferenced)
  // through the shutdown, so a second signal then is absorbed rather than
  // killing the process; CloseSignals() closes them once the loop ended.
  uv_signal_t sigint, sigterm;
  bool signals_open = false;
  bool ran = false;  // Run() was called: a Sidecar runs once
  uint64_t instance = 0;  // said in every Hello: drawn once per Start
  DbPtr db;
  std::map<uint64_t, Conn*> conns;                              // loop thread
  // Connections with more than max_write_queue_bytes waiting to be written:
  // their sessions queue no more changesets until half of it left, however
  // many acks the peer sends (a peer that acknowledges without reading
  // would otherwise have the whole feed queued in memory).
  std::vector<uint64_t> send_paused_conns;                      // loop thread
  // Changes received and sent since memory was last given back to the
  // system (loop thread): see TrimMemoryWhenIdle.
  size_t changes_since_trim = 0;
  static constexpr size_t kTrimAfterChanges = 100000;
  std::map<uint64_t, std::unique_ptr<PeerSession>> sessions;    // strand only
  std::deque<std::unique_ptr<Task>> queue;                      // loop thread
  bool busy = false;
  bool pump_queued = false;
  uint64_t next_conn = 1;
  std::vector<std::unique_ptr<Dialer>> dialers;
  FrameEncoder encoder;
  bool stopping = false;
  sqlite3_uint64 writer_waits = 0;  // strand only: last crsync_writer_waits seen
  uint64_t yields = 0;              // strand only

  // --- lifecycle and logging (sidecar.cc) ---
  // After the loop ended: closes the database and drops the lock, so that
  // another sidecar may serve it while this object lives on.
  void ReleaseDatabase();
  // Levels: 0 error, 1 info, 2 debug, shown up to options.log_level;
  // kWarning is shown whenever errors are.
  static constexpr int kWarning = -1;
  // Lines other than debug ones go through log_limiter, one kind per format
  // string and level (and `subject`, for LogAbout): a thing that keeps
  // happening (a client reconnecting in a loop) writes kLogBurst lines a
  // minute, then one line saying how many it left out (FlushLogSummaries,
  // from the pump timer and at the end). LogAlways is for the lines that
  // say why the sidecar starts or stops: never left out.
  void Log(int level, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
  void LogAbout(const std::string& subject, int level, const char* fmt, ...)
      __attribute__((format(printf, 4, 5)));
  void LogAlways(int level, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
  void LogV(const std::string* subject, bool limited, int level, const char* fmt, va_list ap);
  // A strand-only map from connection to its Conn::subject, for the lines
  // the strand writes about it (set at kOpen, dropped at kClose).
  std::map<uint64_t, std::string> subjects;
  const std::string& SubjectOf(uint64_t conn) const;
  void WriteLogLine(int level, std::string_view text);
  void FlushLogSummaries(bool all);
  static constexpr int kLogBurst = 20;
  static constexpr uint64_t kLogWindowMs = 60000;
  std::mutex log_mu;  // the loop thread and the strand both log
  LogLimiter log_limiter{kLogBurst, kLogWindowMs};
  Status Start();
  void Shutdown();
  void CloseSignals();

  // --- the database strand (sidecar_strand.cc) ---
  void Enqueue(Task::Kind kind, uint64_t conn, Message msg = Message{}, std::string ended = {},
               int ended_level = 1, std::string subject = {});
  void RunNext();
  static void DoWork(uv_work_t* w);
  // After Process() threw (out of memory, most likely): no transaction may
  // stay open holding the write lock, and every connection closes (any
  // session may have been pumped; their peers reconnect and resume from
  // saved cursors).
  void Recover(Task* t);
  // On a pool thread, one at a time: the only place that touches the
  // database and the sessions.
  void Process(Task* t);
  // On the strand, before each merge transaction: when an application
  // writer met the write lock since we last looked (the VFS counts it), wait
  // until its commit lands (the commit counter moves) or 50 ms pass, so the
  // app waits for at most one of our bounded merge commits.
  void YieldToWriters();
  void CloseSessionsAfterRestore(const PeerSession& s, Task* t);
  // SessionOptions::admit: refuses a peer whose site id is connected at
  // another instance (two live databases sharing one site id).
  Status AdmitPeer(const std::string& site_id, uint64_t peer_instance);
  std::vector<uint64_t> pokes;  // connections to send a no-op acknowledgment (strand only)
  static void AfterWork(uv_work_t* w, int);

  // --- connections and dialing, loop thread (sidecar_conn.cc) ---
  void Send(uint64_t conn_id, const Message& msg);
  Conn* NewConn();
  void StartConn(Conn* c);
  static void OnAlloc(uv_handle_t*, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  void StartReading(Conn* c);
  // The strand took `n` queued messages of connection `id`: a paused one
  // reads again once half its queue is gone.
  void MessagesTaken(uint64_t id, size_t n);
  // Drops the messages of connection `id` still waiting for the strand: a
  // closed connection's session is gone, and what it sent is not merged
  // (its cursor was not moved by it; the peer resends). Errors stay.
  void DropQueuedMessages(uint64_t id);
  // After a write completed on a paused connection: once no more than half
  // of max_write_queue_bytes waits, its session sends again.
  void MaybeResumeSending(Conn* c);
  // Takes `c` out of send_paused_conns.
  void StopPausing(Conn* c);
  // Closes connection `id` (if open): its queued messages are dropped, its
  // session closes on the strand, a dialed one is redialled. A non-empty
  // `ended` (the peer hung up, a read failed) is logged by the strand at
  // `ended_level` once it has handled what the peer sent before (often an
  // error saying why), unless the session already logged its end.
  void CloseConn(uint64_t id, std::string ended = {}, int ended_level = 1);
  // Closes the dialled end `c` of a connection to this very process, and
  // does not dial its address again, saying so.
  void CloseSelfLoop(Conn* c);
  // Closes a connection's handle and frees the Conn in the close callback.
  static void CloseAndFree(Conn* c);
  // Gives up on `c` wherever it is: open (CloseConn), or still dialing or
  // being accepted (closed here; a dialed one is redialled).
  void AbandonConn(Conn* c);
  // Starts watching the side file; returns whether it could.
  bool WatchSignalFile();
  // On the pump timer: a side file deleted and made again (by the VFS, at
  // the next commit) is another inode, which the watch would never hear
  // from: watch the new one.
  void RewatchReplacedSignalFile();
  // On the pump timer: a database file deleted or replaced while we serve
  // it (rm, or a restore by copy) would be merged into and read from in
  // its old, unlinked copy, silently forever. Stops the sidecar instead.
  void StopIfDatabaseReplaced();
  // On the pump timer: after large transactions went through, once nothing
  // waits (no task, no bytes queued), gives the allocator's free memory
  // back to the system. glibc keeps what the threads freed, so a sidecar
  // that once moved a 300k-change transaction stayed at 100+ MB.
  void TrimMemoryWhenIdle();
  // On the pump timer: closes connections that sent no Hello within the
  // handshake timeout, and those whose peer stopped reading.
  void CloseUnresponsiveConns();
  // Sends heartbeats on connections that sent nothing for heartbeat_ms,
  // and closes those whose peer went silent past its own heartbeat or left
  // a probe unanswered for probe_timeout_ms.
  void KeepAlive();
  // Closes `c` if its peer is not reading (SidecarOptions::write_stall_ms);
  // returns whether it did.
  bool CloseIfNotReading(Conn* c);
  // A dial still waiting for its TCP connect (not in `conns` yet) is
  // cancelled; its connect callback then sees `closing` and stands back.
  void CancelDial(Dialer* d);
  void ScheduleDial(Dialer* d);
  void Dial(Dialer* d);
  static void OnConnect(uv_connect_t* req, int status);
  // A dial that failed (`status`, a libuv error) before or while connecting:
  // said (the first of kDialFailuresPerWarning at warning level), then
  // redialled with backoff.
  void DialFailed(Conn* c, int status);
  static void OnAccept(uv_stream_t* server, int status);

  // Runs the body of a libuv callback: an exception (out of memory, in
  // practice) must not unwind through libuv. It is logged; returns whether
  // the body completed, so the caller can put things back in order.
  template <typename Body>
  bool Guarded(const char* where, Body&& body) noexcept {
    bool done = false;
    GuardVoidCall([&] {
      body();
      done = true;
    });
    if (!done) LogAlways(0, "internal error (out of memory?) while %s", where);
    return done;
  }
};

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_SIDECAR_IMPL_H_
