// crsync/sidecar.h — crsync::Sidecar, the replication daemon as a
// library (crsyncd is a thin CLI around it).
//
// One libuv loop thread does all network I/O: it accepts and dials TCP
// connections, reassembles frames (transport/frame.h) and writes replies.
// All database work — every PeerSession call, hence every ChangeReader read
// and ChangeApplier merge — runs on libuv's thread pool through a strand:
// one task at a time, in order, so the loop never blocks on SQLite and the
// sidecar's connection is never used concurrently. A commit signal watcher
// (the VFS side file) and a slow safety timer schedule "pump" tasks that
// stream new local changes to every ready peer.
//
// Liveness: every connection has TCP keepalive (idle 30 s, then 3 probes
// 10 s apart) and a 60 s limit on unacknowledged writes, so a peer that
// vanished without a FIN or RST is noticed within about a minute; one that
// connects and never says Hello is closed after handshake_timeout_ms.
//
// Signals: Run() sets SIGPIPE to ignored when it is at its default (a peer
// closing mid-write must not kill the process); it handles SIGINT and
// SIGTERM on its loop as a request to stop, and when it returns puts back
// the handlers the application had installed for them.
//
// Thread safety: Run() on one thread; Stop() from any thread.
//
// Speed: a process hosting sidecars should call
// sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) before SQLite initialises (as
// crsyncd does): the allocation statistics cost a process-wide mutex on
// every sqlite3_malloc, which the merge and read threads then contend on.
#ifndef CRSYNC_SIDECAR_H_
#define CRSYNC_SIDECAR_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "crsync/status.h"

namespace crsync {

struct SidecarOptions {
  std::string db_path;
  std::string listen;               // "HOST:PORT" ("" = do not listen; port 0 = any)
  std::vector<std::string> peers;   // "HOST:PORT" to dial (and redial with backoff)
  int log_level = 1;                // 0 errors, 1 info, 2 debug
  // Safety net besides the commit signal, and the period of the handshake
  // and stall checks: must be positive.
  int pump_interval_ms = 1000;
  // A connection that has not delivered one whole message (its peer's
  // Hello) this long after it opened is closed; checked on the pump timer.
  // 0 = never.
  int handshake_timeout_ms = 10000;
  // A peer that does not read what we send: a connection whose socket holds
  // more than this many bytes waiting to be written, none of which left
  // for write_stall_ms, is closed (the peer resumes from its saved cursor
  // when it reconnects). The size alone says nothing: one large
  // transaction's parts are queued together and drain at network speed.
  // While more than this waits, no more changesets are queued for that
  // peer (until half of it left), whatever it acknowledges.
  size_t max_write_queue_bytes = size_t{64} << 20;
  int write_stall_ms = 30000;
  // Liveness past what TCP reports. A connection that sent nothing for this
  // long sends a no-op acknowledgment (checked on the pump timer), and the
  // Hello says so; a peer that said it does the same and from which
  // nothing arrived for three such periods (plus one pump interval) is
  // taken for gone without a reset (a host that vanished, a relaying hop
  // that keeps the socket open) and its connection closed; a dialed one is
  // redialed. Time while we do not read (backpressure) does not count.
  // 0 = send none (and peers then never close our connection for silence).
  int heartbeat_ms = 10000;
  // When another instance of a connected peer's site id asks to be
  // admitted (a restarted node, or a copied database), the connection in
  // session is probed: a peer whose Hello said it answers probes and that
  // sends nothing back within this many ms (checked on the pump timer) is
  // taken for gone and its connection closed, so a node restarted after its
  // host or path vanished is admitted within seconds, not after the
  // heartbeat silence. 0 = never close for this.
  int probe_timeout_ms = 5000;
  // Stop on SIGINT and SIGTERM (libuv watchers on Run()'s loop; the
  // application's dispositions are put back when Run() returns). A program
  // that handles those signals itself, or runs several sidecars and must
  // stop them all together, sets false and calls Stop().
  bool handle_signals = true;
  // Called once the listening socket is bound, with its actual port.
  std::function<void(int port)> on_listening;
  // Called once everything is set up (signals handled, peers being dialed).
  // Both are called on Run()'s thread, before the loop runs; they may call
  // Stop(). One that throws makes Run() fail to start (the exception does
  // not leave Run(): it returns an error).
  std::function<void()> on_ready;
};

class Sidecar {
 public:
  explicit Sidecar(SidecarOptions options);
  ~Sidecar();

  // Opens the database, binds, dials, and runs until Stop(). Returns the
  // reason it could not start (InvalidArgument for bad options, naming
  // them; also logged as an error, "cannot start: ..."), or OK after a
  // clean stop. Once per Sidecar: a second call
  // returns FailedPrecondition. The Sidecar must outlive Run(): destroy it
  // only after Run() has returned (or if it was never called).
  Status Run();
  // Asks the sidecar to stop (thread-safe, async-signal-unsafe). Before
  // Run() has its loop running, the request is kept and Run() stops as soon
  // as it has started; once Run() is shutting down or has returned, it does
  // nothing.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crsync

#endif  // CRSYNC_SIDECAR_H_
