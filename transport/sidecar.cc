// transport/sidecar.cc — crsync::Sidecar's lifecycle: opening the
// database, binding, dialing, signals and the pump timer, and an orderly
// shutdown. The strand and the connections live in sidecar_strand.cc and
// sidecar_conn.cc (transport/sidecar_impl.h).
#include "crsync/sidecar.h"

#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

#include "crsync/crsync.h"
#include "crsync/vfs.h"
#include "transport/net_addr.h"
#include "transport/sidecar_impl.h"
#include "vfs/commit_signal.h"

namespace crsync {

void Sidecar::Impl::WriteLogLine(int level, std::string_view text) {
  static const char* kNames[] = {"warning", "error", "info", "debug"};
  // One write per line: the loop thread and the strand's pool thread both
  // log, and stderr is unbuffered, so pieces written apart interleave.
  char line[2048];
  // UTC time to the millisecond first, so lines from several nodes' logs
  // can be put side by side.
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  size_t n = std::strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &utc);
  n += static_cast<size_t>(std::snprintf(line + n, sizeof line - n,
                                         ".%03ldZ crsyncd %s: ", now.tv_nsec / 1000000,
                                         kNames[level < -1 ? 0 : (level > 2 ? 3 : level + 1)]));
  const size_t room = sizeof line - 1 - n;  // a longer message is cut
  const size_t m = std::min(text.size(), room);
  std::memcpy(line + n, text.data(), m);
  n += m;
  line[n++] = '\n';
  std::fwrite(line, 1, n, stderr);
}

void Sidecar::Impl::Log(int level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  LogV(nullptr, true, level, fmt, ap);
  va_end(ap);
}

void Sidecar::Impl::LogAbout(const std::string& subject, int level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  LogV(&subject, true, level, fmt, ap);
  va_end(ap);
}

void Sidecar::Impl::LogAlways(int level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  LogV(nullptr, false, level, fmt, ap);
  va_end(ap);
}

const std::string& Sidecar::Impl::SubjectOf(uint64_t conn) const {
  static const std::string kNone;
  auto it = subjects.find(conn);
  return it == subjects.end() ? kNone : it->second;
}

void Sidecar::Impl::LogV(const std::string* subject, bool limited, int level, const char* fmt,
                         va_list ap) {
  if (std::max(level, 0) > options.log_level) return;
  char text[2048];
  int m = std::vsnprintf(text, sizeof text, fmt, ap);
  std::string_view body(text, std::min(static_cast<size_t>(std::max(m, 0)), sizeof text - 1));
  if (!limited || level >= 2) {  // debug lines were asked for (-v): all of them
    WriteLogLine(level, body);
    return;
  }
  std::lock_guard<std::mutex> hold(log_mu);
  LogLimiter::Verdict v;
  try {  // the limiter allocates; a line is never lost to that
    char id[48];
    std::snprintf(id, sizeof id, "%p/%d/", static_cast<const void*>(fmt), level);
    std::string kind = id;
    if (subject) kind += *subject;
    v = log_limiter.Admit(kind, level, uv_hrtime() / 1000000, body);
  } catch (...) {
    v = LogLimiter::Verdict{};
    v.write = true;
  }
  if (!v.summary.empty()) WriteLogLine(level, v.summary);
  if (!v.write) return;
  WriteLogLine(level, body);
  if (v.last) {
    WriteLogLine(level,
                 "(that keeps happening: more lines like it are left out for up to a minute)");
  }
}

void Sidecar::Impl::FlushLogSummaries(bool all) {
  std::lock_guard<std::mutex> hold(log_mu);
  try {
    for (const LogLimiter::Summary& s : log_limiter.Expired(uv_hrtime() / 1000000, all)) {
      WriteLogLine(s.level, s.text);
    }
  } catch (...) {  // out of memory: the counts are lost, nothing else
  }
}

void Sidecar::Impl::ReleaseDatabase() {
  sessions.clear();  // they hold statements on db
  db.reset();
  if (db_fd >= 0) close(db_fd);  // after db (see db_fd)
  db_fd = -1;
  lock.Release();
}

Status Sidecar::Impl::Start() {
  if (options.db_path.empty()) {
    return Status::InvalidArgument("no database: SidecarOptions::db_path is empty");
  }
  if (options.pump_interval_ms <= 0) {
    return Status::InvalidArgument("pump_interval_ms must be positive (it also times the handshake "
                                   "and stall checks), got " +
                                   std::to_string(options.pump_interval_ms));
  }
  if (options.handshake_timeout_ms < 0 || options.write_stall_ms <= 0) {
    return Status::InvalidArgument(
        "handshake_timeout_ms must be 0 (no limit) or positive and write_stall_ms positive, got " +
        std::to_string(options.handshake_timeout_ms) + " and " +
        std::to_string(options.write_stall_ms));
  }
  if (options.heartbeat_ms < 0 || options.probe_timeout_ms < 0) {
    return Status::InvalidArgument("heartbeat_ms and probe_timeout_ms must be 0 (none) or positive, "
                                   "got " + std::to_string(options.heartbeat_ms) + " and " +
                                   std::to_string(options.probe_timeout_ms));
  }
  // Addresses first: a typo is reported as such, before the database is
  // opened (or found missing).
  {
    sockaddr_storage addr;
    if (!options.listen.empty()) CRSYNC_RETURN_IF_ERROR(SockAddr(options.listen, &addr));
    for (const std::string& p : options.peers) {
      CRSYNC_RETURN_IF_ERROR(SockAddr(p, &addr));
      if (reinterpret_cast<sockaddr_in*>(&addr)->sin_port == 0) {  // same offset in sockaddr_in6
        return Status::InvalidArgument("bad peer address '" + p + "': port 0 cannot be dialled");
      }
    }
  }
  Status st = OpenDb(options.db_path, SQLITE_OPEN_READWRITE, nullptr, &db);
  if (!st.ok()) return st.WithContext("crsyncd needs an existing database");
  // SQLite quietly opens a file it may not write read-only: every merge
  // would then fail. Say so now.
  if (sqlite3_db_readonly(db.get(), "main") == 1) {
    return Status::FailedPrecondition(options.db_path + " opens read-only here (the file's or its "
                                      "directory's permissions, or a read-only URI): crsyncd "
                                      "merges into it, so it must be able to write it");
  }
  while (instance == 0) sqlite3_randomness(sizeof instance, &instance);
  // The VFS names the side file after the path SQLite resolved (symlinks
  // followed); so must we, or we would watch a file nobody signals.
  const char* resolved = sqlite3_db_filename(db.get(), "main");
  signal_path = resolved && *resolved ? resolved : options.db_path;
  CRSYNC_RETURN_IF_ERROR(lock.Acquire(signal_path));
  db_fd = open(signal_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (struct stat st {}; db_fd >= 0 && fstat(db_fd, &st) == 0) {
    db_dev = static_cast<uint64_t>(st.st_dev);
    db_ino = static_cast<uint64_t>(st.st_ino);
  }
  crsync_writer_waits(signal_path.c_str(), &writer_waits);
  sqlite3_busy_timeout(db.get(), 5000);  // before the engine reads anything
  char* raw_err = nullptr;
  if (int rc = crsync_engine_init(db.get(), &raw_err); rc != SQLITE_OK) {
    SqliteStr err(raw_err);
    return Status::Sqlite(rc, err ? err.get() : "cannot install the engine")
        .WithContext(options.db_path);
  }
  // WAL + synchronous=NORMAL: a power loss may drop the last merges, never
  // split one, and the receive cursor commits with them (it cannot run ahead).
  if (Status wal = Exec(db.get(), "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL"); !wal.ok()) {
    if ((sqlite3_errcode(db.get()) & 0xff) == SQLITE_BUSY) {
      // Leaving a rollback journal needs the database to itself.
      return wal.WithContext(
          "cannot switch " + options.db_path + " to WAL (the sidecar needs it so that the "
          "application writes while it merges): another connection kept it busy for 5 s. Switch it "
          "once while nothing else uses it (sqlite3 " + options.db_path +
          " 'PRAGMA journal_mode = WAL'), or start crsyncd before the application");
    }
    return wal.WithContext(options.db_path);
  }
  {
    StmtPtr crrs;
    if (Prepare(db.get(), "SELECT 1 FROM crsync_crrs LIMIT 1", &crrs).ok() &&
        sqlite3_step(crrs.get()) == SQLITE_DONE) {
      Log(kWarning, "%s has no CRRs yet (make them with crsql_as_crr): nothing replicates until it has",
          options.db_path.c_str());
    }
  }
  {
    // Who this is, once per start: a restart shows in the log as such.
    StmtPtr who;
    if (Prepare(db.get(), "SELECT lower(hex(crsql_site_id())), crsql_db_version()", &who).ok() &&
        sqlite3_step(who.get()) == SQLITE_ROW) {
      const unsigned char* site = sqlite3_column_text(who.get(), 0);
      Log(1, "serving %s as site %s at db_version %lld (pid %d, instance %016llx)",
          options.db_path.c_str(), site ? reinterpret_cast<const char*>(site) : "?",
          static_cast<long long>(sqlite3_column_int64(who.get(), 1)), static_cast<int>(getpid()),
          static_cast<unsigned long long>(instance));
    }
  }
  if (int rc = uv_loop_init(&loop); rc != 0) {
    return Status::Transport(std::string("cannot create the event loop: ") + uv_strerror(rc));
  }
  loop_ready = true;
  stop_async.data = this;
  uv_async_init(&loop, &stop_async, [](uv_async_t* a) {
    auto* self = static_cast<Impl*>(a->data);
    self->Guarded("stopping", [&] { self->Shutdown(); });
  });
  {
    std::lock_guard<std::mutex> lock(stop_mu);
    stop_state = StopState::kRunning;
  }
  if (options.handle_signals) {
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    sigint.data = sigterm.data = this;
    signals_open = true;
    auto on_signal = [](uv_signal_t* s, int) {
      auto* self = static_cast<Impl*>(s->data);
      if (self->stopping) {
        self->Log(1, "signal received; already stopping");
        return;
      }
      self->Log(1, "signal received, stopping");
      self->Guarded("stopping", [&] { self->Shutdown(); });
    };
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
  }
  uv_timer_init(&loop, &pump_timer);
  pump_timer.data = this;
  uv_timer_start(&pump_timer, [](uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    self->Guarded("running the pump timer", [&] {
      self->StopIfDatabaseReplaced();
      if (self->stopping) return;
      self->CloseUnresponsiveConns();
      self->RewatchReplacedSignalFile();
      self->TrimMemoryWhenIdle();
      self->FlushLogSummaries(false);
      self->Enqueue(Task::kPump, 0);
    });
  }, static_cast<uint64_t>(options.pump_interval_ms), static_cast<uint64_t>(options.pump_interval_ms));
  // The commit signal: the VFS side file (created if needed).
  side_path = SignalPath(signal_path);
  if (int fd = OpenSignalFile(signal_path); fd >= 0) close(fd);
  uv_fs_event_init(&loop, &signal_watch);
  signal_watch.data = this;
  if (WatchSignalFile()) {
    watching = true;
    // Re-arm the wake-up now: a commit made before we watched may have
    // left it disarmed, and later commits would then wait for the timer.
    Enqueue(Task::kPump, 0);
  } else {
    Log(0, "cannot watch %s: relying on the %d ms timer", side_path.c_str(),
        options.pump_interval_ms);
    uv_close(reinterpret_cast<uv_handle_t*>(&signal_watch), nullptr);
  }
  if (!options.listen.empty()) {
    sockaddr_storage addr;
    CRSYNC_RETURN_IF_ERROR(SockAddr(options.listen, &addr));
    uv_tcp_init(&loop, &server);
    server.data = this;
    int rc = uv_tcp_bind(&server, reinterpret_cast<sockaddr*>(&addr), 0);
    if (rc == 0) {
      rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server), 64, &Impl::OnAccept);
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
    // Held by `dialers` with its timer initialised before anything else
    // may throw: Shutdown() then closes every timer it finds there.
    dialers.reserve(dialers.size() + 1);
    Dialer* d = dialers.emplace_back(std::make_unique<Dialer>()).get();
    uv_timer_init(&loop, &d->timer);
    d->timer.data = d;
    d->impl = this;
    d->address = p;
    Dial(d);
  }
  if (options.on_ready) options.on_ready();
  return Status::OK();
}

bool Sidecar::Impl::WatchSignalFile() {
  struct stat st {};
  if (stat(side_path.c_str(), &st) != 0) return false;
  if (uv_fs_event_start(&signal_watch, [](uv_fs_event_t* h, const char*, int events, int) {
        auto* self = static_cast<Impl*>(h->data);
        // (A deleted file's inode number may come back at once for the new
        // one: the event, not the number, tells.)
        if (events & UV_RENAME) self->side_moved = true;
        self->Guarded("handling the commit signal", [&] { self->Enqueue(Task::kPump, 0); });
      }, side_path.c_str(), 0) != 0) {
    return false;
  }
  side_moved = false;
  side_dev = static_cast<uint64_t>(st.st_dev);
  side_ino = static_cast<uint64_t>(st.st_ino);
  return true;
}

void Sidecar::Impl::StopIfDatabaseReplaced() {
  if (stopping || db_fd < 0 || db_ino == 0) return;
  struct stat own {}, at_path {};
  // Unlinked (deleted, or another file renamed over it): no link left.
  const bool unlinked = fstat(db_fd, &own) == 0 && own.st_nlink == 0;
  const bool found = stat(signal_path.c_str(), &at_path) == 0;
  const bool missing = !found && (errno == ENOENT || errno == ENOTDIR);  // not EACCES, EIO...
  const bool other = found && (static_cast<uint64_t>(at_path.st_dev) != db_dev ||
                               static_cast<uint64_t>(at_path.st_ino) != db_ino);
  if (!unlinked && !missing && !other) return;
  const char* what = missing    ? " was deleted or moved"
                     : unlinked ? " was deleted or replaced by another file"
                                : " was replaced by another file";
  failure = Status::FailedPrecondition(
      "the database " + signal_path + what +
      " while this sidecar served it: it would go on merging into and sending from the old "
      "file; stopping (start crsyncd again to serve what is there now)");
  LogAlways(0, "%s", failure.message().c_str());
  Shutdown();
}

void Sidecar::Impl::TrimMemoryWhenIdle() {
  if (changes_since_trim < kTrimAfterChanges || busy || !queue.empty()) return;
  for (const auto& [id, c] : conns) {
    if (uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&c->tcp)) > 0) return;
  }
  changes_since_trim = 0;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

void Sidecar::Impl::RewatchReplacedSignalFile() {
  if (!watching || stopping) return;
  struct stat st {};
  // Gone: the VFS makes it again at the next commit; until then the timer.
  if (stat(side_path.c_str(), &st) != 0) return;
  if (!side_moved && static_cast<uint64_t>(st.st_dev) == side_dev &&
      static_cast<uint64_t>(st.st_ino) == side_ino) {
    return;
  }
  uv_fs_event_stop(&signal_watch);
  if (WatchSignalFile()) {
    Log(1, "%s was replaced: watching the new file", side_path.c_str());
  } else {
    Log(0, "%s was replaced and cannot be watched: relying on the %d ms timer",
        side_path.c_str(), options.pump_interval_ms);
    watching = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&signal_watch), nullptr);
  }
}

void Sidecar::Impl::Shutdown() {
  if (stopping) return;
  stopping = true;
  {
    std::lock_guard<std::mutex> lock(stop_mu);
    stop_state = StopState::kShutDown;  // Stop() no longer touches stop_async
  }
  // CloseConn takes each out of `conns` first: this ends even if one fails.
  while (!conns.empty()) {
    const uint64_t id = conns.begin()->first;
    Guarded("closing a connection", [&] { CloseConn(id); });
  }
  for (auto& d : dialers) {
    CancelDial(d.get());
    uv_close(reinterpret_cast<uv_handle_t*>(&d->timer), nullptr);
  }
  if (listening) uv_close(reinterpret_cast<uv_handle_t*>(&server), nullptr);
  if (watching) uv_close(reinterpret_cast<uv_handle_t*>(&signal_watch), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&pump_timer), nullptr);
  if (signals_open) {
    uv_unref(reinterpret_cast<uv_handle_t*>(&sigint));
    uv_unref(reinterpret_cast<uv_handle_t*>(&sigterm));
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&stop_async), nullptr);
}

void Sidecar::Impl::CloseSignals() {
  if (!signals_open) return;
  signals_open = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
}


Sidecar::Sidecar(SidecarOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Sidecar::~Sidecar() = default;

namespace {

// The application's SIGINT and SIGTERM dispositions, put back when Run()
// ends: libuv leaves SIG_DFL behind when its last watcher of a signal
// stops. Only then, and only what was not libuv's own handler (another
// sidecar of the process running when this one started).
class SignalDispositions {
 public:
  // Sidecars of one process may run at once, each with its own loop, and
  // libuv's handler stays until the last of them stops: the application's
  // dispositions are saved by the first to start and put back by the last
  // to stop.
  SignalDispositions() {
    std::lock_guard<std::mutex> lock(Shared().mu);
    State& st = Shared();
    if (st.running++ == 0) {
      for (int i = 0; i < 2; ++i) st.saved[i] = sigaction(kSignals[i], nullptr, &st.before[i]) == 0;
    }
  }
  // Call once libuv has installed its handlers.
  void NoteLibuvHandlers() {
    std::lock_guard<std::mutex> lock(Shared().mu);
    for (int i = 0; i < 2; ++i) {
      struct sigaction now {};
      if (sigaction(kSignals[i], nullptr, &now) == 0) Shared().libuv[i] = now.sa_handler;
    }
  }
  void Restore() {
    if (restored_) return;
    restored_ = true;
    std::lock_guard<std::mutex> lock(Shared().mu);
    State& st = Shared();
    if (--st.running > 0) return;
    for (int i = 0; i < 2; ++i) {
      struct sigaction now {};
      if (!st.saved[i] || sigaction(kSignals[i], nullptr, &now) != 0) continue;
      if (now.sa_handler == SIG_DFL && st.before[i].sa_handler != st.libuv[i] &&
          st.before[i].sa_handler != SIG_DFL) {
        sigaction(kSignals[i], &st.before[i], nullptr);
      }
    }
  }
  ~SignalDispositions() { Restore(); }
  SignalDispositions(const SignalDispositions&) = delete;
  SignalDispositions& operator=(const SignalDispositions&) = delete;

 private:
  static constexpr int kSignals[2] = {SIGINT, SIGTERM};
  struct State {
    std::mutex mu;
    int running = 0;  // sidecars between construction and Restore()
    struct sigaction before[2] {};
    bool saved[2] = {false, false};
    void (*libuv[2])(int) = {nullptr, nullptr};
  };
  static State& Shared() {
    static State* state = new State;  // never destroyed: sidecars may outlive main's statics
    return *state;
  }
  bool restored_ = false;
};

}  // namespace

Status Sidecar::Run() {
  if (impl_->ran) {
    return Status::FailedPrecondition(
        "Sidecar::Run() was called before on this Sidecar: it runs once (make another Sidecar)");
  }
  impl_->ran = true;
  // A peer that vanishes while we write must cost a connection, not the
  // process: ignore SIGPIPE unless the application handles it itself.
  struct sigaction current;
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
  SignalDispositions dispositions;
  // An exception from setting up (out of memory, or thrown by on_listening
  // or on_ready) takes the failure path below like any other error.
  Status st = GuardStatus([&] { return impl_->Start(); });
  if (impl_->signals_open) dispositions.NoteLibuvHandlers();
  if (!st.ok()) {
    // The message, not the status's code name: it is for the operator.
    impl_->LogAlways(0, "cannot start: %s", st.message().c_str());
    if (impl_->loop_ready) {
      impl_->Shutdown();
      uv_run(&impl_->loop, UV_RUN_DEFAULT);
      impl_->CloseSignals();
      uv_loop_close(&impl_->loop);
    }
    impl_->ReleaseDatabase();
    dispositions.Restore();
    return st;
  }
  bool stop_now;
  {
    std::lock_guard<std::mutex> lock(impl_->stop_mu);
    stop_now = impl_->stop_requested;  // Stop() came before the loop could hear it
  }
  if (stop_now) impl_->Shutdown();
  uv_run(&impl_->loop, UV_RUN_DEFAULT);
  // Before the signals go back to their defaults: a second SIGTERM then
  // would end the process before the counts of lines left out are written.
  impl_->FlushLogSummaries(true);
  impl_->CloseSignals();
  dispositions.Restore();
  impl_->ReleaseDatabase();  // no task is running once the loop ended
  if (impl_->yields) {
    impl_->Log(1, "merges stepped aside for application writers %llu time%s",
               static_cast<unsigned long long>(impl_->yields), impl_->yields == 1 ? "" : "s");
  }
  int rc = uv_loop_close(&impl_->loop);
  impl_->FlushLogSummaries(true);  // what the strand's last task logged
  impl_->LogAlways(1, "stopped");
  if (rc != 0) return Status::Transport("event loop closed with live handles");
  return impl_->failure;
}

void Sidecar::Stop() {
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  impl_->stop_requested = true;
  if (impl_->stop_state == Impl::StopState::kRunning) uv_async_send(&impl_->stop_async);
}

}  // namespace crsync
