// vfs/commit_signal.h — the per-database commit signal: a counter in the
// side file "<db>-crsync", shared between processes through a mapping.
#ifndef CRSYNC_VFS_COMMIT_SIGNAL_H_
#define CRSYNC_VFS_COMMIT_SIGNAL_H_

#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace crsync {

// Side-file layout (docs/vfs.md): bytes 0..7 the counter (native order,
// atomic increments through MAP_SHARED); bytes 8..11 the wake-pending flag;
// byte 12 a "touch" byte whose pwrite wakes inotify watchers; bytes 16..23
// how often a writer found the write lock taken (atomic increments). A commit
// writes the touch byte only when it finds the flag clear (and sets it); a
// watcher clears it before reading the counter (crsync_commit_counter_rearm).
// So nobody listening costs no syscall, and no wake-up is ever lost.
constexpr size_t kSignalFileSize = 24;
constexpr size_t kWakeFlagOffset = 8;
constexpr size_t kTouchOffset = 12;
constexpr size_t kWaitsOffset = 16;

std::string SignalPath(const std::string& db_path);

// Opens (creating it if needed) the side file of `db_path` read-write, at
// its full size with its blocks allocated (writes through a mapping of a
// sparse file could raise SIGBUS on a full disk). Like SQLite's -wal and
// -shm, a new one gets the database file's permissions, and, when we run
// as root, its owner. Returns the descriptor, or -1 with errno set.
int OpenSignalFile(const std::string& db_path);

// One open side file, shared by every connection of this process to the
// same database (reference counted through Acquire/Release).
class CommitSignal {
 public:
  // The signal for `db_path`; never null. If the side file cannot be
  // opened the signal is inert and one warning is logged.
  static CommitSignal* Acquire(const std::string& db_path);
  static void Release(CommitSignal* signal);

  // Counts one commit: one atomic increment in shared memory, plus one
  // pwrite when a watcher has re-armed the wake-up; and at most once per
  // kCheckIntervalMs an fstat of the side file: one deleted meanwhile is
  // made again, one cut short by someone is restored to its size (writing
  // through the mapping past its end raises SIGBUS, as SQLite's -shm
  // would). Never fails. Returns the new counter value (0 when inert).
  uint64_t Bump();
  static constexpr int64_t kCheckIntervalMs = 1000;
  // Counts one attempt to take the write lock that met SQLITE_BUSY: one
  // atomic increment in shared memory. Never fails.
  void NoteWriterWaiting() noexcept;
  const std::string& db_path() const { return db_path_; }

 private:
  // One opened and mapped side file. Never unmapped before the signal is
  // destroyed: another thread may still be writing through an older one.
  struct Mapping {
    int fd = -1;
    char* base = nullptr;  // kSignalFileSize bytes, MAP_SHARED
    uint64_t* counter() const { return reinterpret_cast<uint64_t*>(base); }
    uint32_t* wake_pending() const { return reinterpret_cast<uint32_t*>(base + kWakeFlagOffset); }
    uint64_t* waits() const { return reinterpret_cast<uint64_t*>(base + kWaitsOffset); }
  };

  explicit CommitSignal(std::string db_path);
  ~CommitSignal();
  // Opens and maps the side file; null if it cannot (logged the first time).
  Mapping* OpenMapping();
  // The mapping to write through, checked as Bump says.
  Mapping* Current();

  std::string db_path_;
  std::atomic<Mapping*> map_{nullptr};
  std::mutex remap_mu_;  // guards all_ and replacing map_
  std::vector<std::unique_ptr<Mapping>> all_;
  bool warned_ = false;  // a failure to open or map was logged (once)
  std::atomic<int64_t> next_check_ms_{0};  // CLOCK_MONOTONIC_COARSE; see Current()
  int refs_ = 0;
};

}  // namespace crsync

#endif  // CRSYNC_VFS_COMMIT_SIGNAL_H_
