// tests/fault/fault_vfs.h — a VFS for tests that injects I/O errors and
// simulated crashes at a chosen write point.
//
// A FaultVfs registers an SQLite VFS under its own name (never as the
// default) that forwards every call to the VFS below it: methods of versions
// 1 to 3, including the xShm* methods WAL needs, and xFetch/xUnfetch. A test
// opens its connection on it by name (sqlite3_open_v2's zVfs).
//
// Write points. A write point is one call that may change what is on disk:
// xWrite, xTruncate and xSync of any file opened through this VFS (database,
// rollback journal, WAL, temporary files), and the VFS's xDelete. They are
// numbered 1, 2, ... from the last Count() or Arm*() call, in the order SQLite
// makes them; for one starting state and one sequence of API calls the
// numbering is deterministic, so a counting run tells a test how many write
// points (K) an operation has, and a second run can fault at any N in 1..K.
// Not write points: stores into the WAL-index (-shm), which SQLite makes
// into a memory mapping (they are not visible to a VFS), and xShmMap.
//
// What a fault does at write point N (the call is NOT performed):
//  - kIoErrorOnce: N returns SQLITE_IOERR_WRITE / _TRUNCATE / _FSYNC /
//    _DELETE; every other call behaves normally.
//  - kIoErrorPersistent: N and every later write point fail so; reads and
//    everything else still work (a disk that stopped accepting writes).
//  - kCrash: the process "dies" at that instant. First the files of the
//    watched database — the main file, its -journal and its -wal — are
//    copied, exactly as they are on disk, to the capture path (plus the same
//    suffixes; the -shm is not copied, SQLite rebuilds it from the WAL).
//    Then the call and every later operation on this VFS fail: xOpen,
//    xAccess, xDelete, xRead, xWrite, xTruncate, xSync, xFileSize, xShmMap;
//    xFetch gives no mapping. Locking, xClose, xShmLock, xShmBarrier,
//    xShmUnmap, xUnfetch, xFileControl and the device queries still go
//    through, so the test can close its connection and nothing leaks. The
//    files the dead connection leaves behind are of no interest; the test
//    opens the capture with the normal VFS, which shows what crash recovery
//    gives. Reviving: Count() or another Arm*().
//  - kPowerLoss: like kCrash, but each captured file holds what it held at
//    its last successful xSync through this VFS (or at ArmCrash() if it was
//    not synced since): writes that were not synced are lost, all of them.
//    A deletion counts as durable at once. Torn (partly written) sectors,
//    a subset of unsynced writes surviving and directory-entry loss are not
//    modelled.
//
// Syncs are forwarded to the disk unless set_forward_syncs(false): tests
// that only simulate crashes need no real durability, and fsync is slow.
//
// Thread safety: the control methods and the VFS callbacks lock one mutex,
// so connections on other threads may use the VFS; a test normally drives
// it from one thread. No C++ exception leaves a VFS callback.
#ifndef CRSYNC_TESTS_FAULT_FAULT_VFS_H_
#define CRSYNC_TESTS_FAULT_FAULT_VFS_H_

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crsync/status.h"

namespace crsync::fault {

// One write point, as seen by the VFS.
struct WritePoint {
  enum class Kind { kWrite, kTruncate, kSync, kDelete };
  int64_t number = 0;  // 1-based, since the last Count() / Arm*()
  Kind kind = Kind::kWrite;
  std::string path;  // the file's full path; empty for temporary files

  // E.g. "#12 xSync /tmp/x-journal".
  std::string ToString() const;
};

class FaultVfs {
 public:
  enum class Mode { kCount, kIoErrorOnce, kIoErrorPersistent, kCrash, kPowerLoss, kDiskFull };

  // Registers a VFS named `name` above the VFS `base` (nullptr: the current
  // default VFS). Fails if `base` does not exist or `name` is already taken.
  static Status Register(const std::string& name, std::unique_ptr<FaultVfs>* out,
                         const char* base = nullptr);
  // Unregisters the VFS. Every connection opened on it must be closed first.
  ~FaultVfs();
  FaultVfs(const FaultVfs&) = delete;
  FaultVfs& operator=(const FaultVfs&) = delete;

  const std::string& name() const { return name_; }

  // --- arming; each starts numbering write points from 1 again ---
  // Counts write points and injects nothing; also revives a crashed VFS.
  void Count();
  // An I/O error at write point `n` (>= 1): only there (`persistent` false)
  // or there and at every later write point.
  void ArmIoError(int64_t n, bool persistent);
  // A full disk from now on: every xWrite fails with SQLITE_FULL (what the
  // unix VFS returns on ENOSPC); syncs, truncates and deletes still work.
  // Count() frees it.
  void ArmDiskFull();
  // A crash (kCrash, or kPowerLoss when `power_loss`) at write point `n`
  // (>= 1). `db_path` names the watched database (as given to sqlite3_open;
  // made absolute here); its files are captured to `capture_path`, whose old
  // files (with any suffix) are removed first. For kPowerLoss the durable
  // state of the watched files starts as what is on disk now.
  Status ArmCrash(int64_t n, const std::string& db_path, const std::string& capture_path,
                  bool power_loss);

  // --- what happened since the last Count() / Arm*() ---
  Mode mode() const;
  int64_t write_points() const;
  // Whether the armed fault was injected, and at which write point.
  std::optional<WritePoint> fault() const;
  // Whether the crash capture succeeded (OK if no crash happened).
  Status capture_status() const;
  // Every write point so far, when tracing is on (off by default).
  std::vector<WritePoint> trace() const;
  void set_trace(bool on);

  void set_forward_syncs(bool on);

 private:
  FaultVfs(std::string name, sqlite3_vfs* base);

  struct Hooks;  // the C callbacks, in fault_vfs.cc
  friend struct Hooks;

  // Called by the callbacks with mu_ held.
  // Numbers a write point and decides its fate: SQLITE_OK to perform it, or
  // `fail_rc` (the call's SQLITE_IOERR_* code) to return instead.
  int AtWritePoint(WritePoint::Kind kind, const char* path, int fail_rc);
  bool dead() const { return dead_; }
  // Records `content` as the durable state of `path` if it is watched.
  void NoteDurable(const std::string& path, std::optional<std::string> content);
  bool Watched(const char* path) const;
  Status Capture();
  void Reset(Mode mode, int64_t n);

  std::string name_;
  sqlite3_vfs* base_;
  sqlite3_vfs vfs_{};

  mutable std::mutex mu_;
  Mode mode_ = Mode::kCount;
  int64_t fault_at_ = 0;
  int64_t count_ = 0;
  bool dead_ = false;
  bool forward_syncs_ = true;
  bool tracing_ = false;
  std::optional<WritePoint> fault_;
  Status capture_status_;
  std::vector<WritePoint> trace_;
  std::vector<std::string> watched_;  // full paths: db, -journal, -wal
  std::string capture_path_;
  // kPowerLoss: the durable content of each watched file (nullopt: absent).
  std::map<std::string, std::optional<std::string>> durable_;
};

}  // namespace crsync::fault

#endif  // CRSYNC_TESTS_FAULT_FAULT_VFS_H_
