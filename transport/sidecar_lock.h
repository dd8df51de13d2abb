// transport/sidecar_lock.h — one sidecar per database.
//
// A sidecar holds an exclusive flock on `<db>-crsyncd.lock` (next to the
// database, named after its full path as SQLite resolves it) for as long as
// it serves the database, and writes its pid into the file. Offline
// commands that rewrite the sidecar's state (`crsyncd forget`) take the same
// lock, so they never race a running sidecar. flock, not fcntl: SQLite's
// POSIX locks on other descriptors of the same process neither release nor
// conflict with it. The file stays behind; the lock dies with the process.
// Do not delete the file while a sidecar runs: a second one would then
// lock a new file of that name.
//
// Threads: a SidecarLock is used by one thread at a time.
#ifndef CRSYNC_TRANSPORT_SIDECAR_LOCK_H_
#define CRSYNC_TRANSPORT_SIDECAR_LOCK_H_

#include <string>

#include "crsync/status.h"

namespace crsync {

class SidecarLock {
 public:
  SidecarLock() = default;
  ~SidecarLock() { Release(); }
  SidecarLock(const SidecarLock&) = delete;
  SidecarLock& operator=(const SidecarLock&) = delete;

  // Takes the lock of the database whose full path is `db_path`, without
  // waiting. FailedPrecondition when another holder has it, naming the
  // file and the holder's pid; IOError when the file cannot be opened or
  // locked.
  Status Acquire(const std::string& db_path);
  // Drops it (also done by the destructor). Idempotent.
  void Release();

  static std::string PathFor(const std::string& db_path) { return db_path + "-crsyncd.lock"; }

 private:
  int fd_ = -1;
};

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_SIDECAR_LOCK_H_
