#include "vfs/commit_signal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "common/guard.h"
#include "crsync/vfs.h"

namespace crsync {
namespace {

std::mutex& Mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, CommitSignal*>& Open() {
  static auto* m = new std::map<std::string, CommitSignal*>();
  return *m;
}

}  // namespace

std::string SignalPath(const std::string& db_path) { return db_path + "-crsync"; }

int OpenSignalFile(const std::string& db_path) {
  const std::string path = SignalPath(db_path);
  struct stat db;
  const bool have_db = ::stat(db_path.c_str(), &db) == 0;
  const mode_t mode = have_db ? (db.st_mode & 0777) : 0644;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd >= 0) {
    // Created here: the umask may have narrowed the mode. Best effort, as
    // SQLite does for its own files.
    int ignored = fchmod(fd, mode);
    if (have_db && geteuid() == 0) ignored = fchown(fd, db.st_uid, db.st_gid);
    (void)ignored;
  } else if (errno == EEXIST) {
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  }
  if (fd < 0) return -1;
  // Allocated only when short or sparse (a write through the mapping into
  // a hole could fault on a full disk): Linux reports every fallocate as a
  // modification, which would wake the watchers without a commit.
  struct stat st;
  const bool whole = fstat(fd, &st) == 0 && st.st_size >= static_cast<off_t>(kSignalFileSize) &&
                     st.st_blocks > 0;
  int rc = whole ? 0 : posix_fallocate(fd, 0, static_cast<off_t>(kSignalFileSize));
  if (rc != 0) {
    close(fd);
    errno = rc;
    return -1;
  }
  return fd;
}

CommitSignal::CommitSignal(std::string db_path) : db_path_(std::move(db_path)) {}

CommitSignal::~CommitSignal() {
  for (const auto& m : all_) {
    munmap(m->base, kSignalFileSize);
    close(m->fd);
  }
}

CommitSignal::Mapping* CommitSignal::OpenMapping() {
  std::string path = SignalPath(db_path_);
  // Everything that allocates comes first: once the file is open and
  // mapped, nothing may throw before all_ owns them.
  auto m = std::make_unique<Mapping>();
  all_.reserve(all_.size() + 1);
  int fd = OpenSignalFile(db_path_);
  if (fd < 0) {
    if (!warned_) {
      sqlite3_log(SQLITE_WARNING, "crsync: no commit signal for %s: cannot open %s: %s",
                  db_path_.c_str(), path.c_str(), strerror(errno));
    }
    warned_ = true;
    return nullptr;
  }
  void* map = mmap(nullptr, kSignalFileSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    if (!warned_) {
      sqlite3_log(SQLITE_WARNING, "crsync: no commit signal for %s: cannot map %s: %s",
                  db_path_.c_str(), path.c_str(), strerror(errno));
    }
    warned_ = true;
    close(fd);
    return nullptr;
  }
  m->fd = fd;
  m->base = static_cast<char*>(map);
  all_.push_back(std::move(m));  // reserved: does not throw
  return all_.back().get();
}

CommitSignal::Mapping* CommitSignal::Current() {
  Mapping* m = map_.load(std::memory_order_acquire);
  // At most once per kCheckIntervalMs: an fstat costs as much as a tenth of
  // a one-row commit here, a coarse clock read (vDSO) almost nothing.
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  const int64_t now_ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  int64_t due = next_check_ms_.load(std::memory_order_relaxed);
  if (now_ms < due ||
      !next_check_ms_.compare_exchange_strong(due, now_ms + kCheckIntervalMs, std::memory_order_relaxed)) {
    return m;
  }
  if (!m) {
    // It could not be opened before (no descriptor left, a full disk, a
    // directory not writable yet): try again, as for a deleted one.
    std::lock_guard<std::mutex> lock(remap_mu_);
    Mapping* now = map_.load(std::memory_order_acquire);
    if (now) return now;  // another thread did
    Mapping* fresh = OpenMapping();
    if (fresh) map_.store(fresh, std::memory_order_release);
    return fresh;
  }
  struct stat st, named;
  if (fstat(m->fd, &st) != 0) return m;
  const bool moved = stat(SignalPath(db_path_).c_str(), &named) != 0 || named.st_ino != st.st_ino ||
                     named.st_dev != st.st_dev;
  if (st.st_nlink == 0 || moved) {
    // Deleted, renamed away or replaced while we write to it: nobody
    // watches that file any more (a sidecar started now makes and watches
    // the one at the path). Open that one, making it if needed.
    std::lock_guard<std::mutex> lock(remap_mu_);
    Mapping* now = map_.load(std::memory_order_acquire);
    if (now != m) return now;  // another thread did
    if (Mapping* fresh = OpenMapping()) {
      map_.store(fresh, std::memory_order_release);
      return fresh;
    }
    return m;
  }
  if (st.st_size < static_cast<off_t>(kSignalFileSize)) {
    // Cut short by someone: a write through the mapping past the end
    // would raise SIGBUS. Restored first (its counts are lost).
    if (posix_fallocate(m->fd, 0, static_cast<off_t>(kSignalFileSize)) != 0) return nullptr;
  }
  return m;
}

CommitSignal* CommitSignal::Acquire(const std::string& db_path) {
  std::lock_guard<std::mutex> lock(Mutex());
  auto& open = crsync::Open();
  auto it = open.find(db_path);
  if (it == open.end()) {
    // Entered only once whole: a signal that failed half-way (out of
    // memory) must not stay for later connections to share.
    CommitSignal* fresh = new CommitSignal(db_path);
    try {
      fresh->map_.store(fresh->OpenMapping(), std::memory_order_release);
      it = open.emplace(db_path, fresh).first;
    } catch (...) {
      delete fresh;
      throw;
    }
  }
  ++it->second->refs_;
  return it->second;
}

void CommitSignal::Release(CommitSignal* signal) {
  if (!signal) return;
  std::lock_guard<std::mutex> lock(Mutex());
  if (--signal->refs_ > 0) return;
  crsync::Open().erase(signal->db_path_);
  delete signal;
}

uint64_t CommitSignal::Bump() {
  Mapping* m = Current();
  if (!m) return 0;
  uint64_t v = __atomic_add_fetch(m->counter(), 1, __ATOMIC_SEQ_CST);
  if (__atomic_exchange_n(m->wake_pending(), 1u, __ATOMIC_SEQ_CST) == 0) {
    // The touch byte is never read; writing it is what wakes inotify.
    char touch = static_cast<char>(v);
    ssize_t n = pwrite(m->fd, &touch, 1, kTouchOffset);
    (void)n;  // a failed wake-up must not fail the commit
  }
  return v;
}

void CommitSignal::NoteWriterWaiting() noexcept {
  // Called from xLock and xShmLock, which must return the lock's own
  // result: a side file that cannot be looked at now only misses a count.
  GuardVoidCall([&] {
    if (Mapping* m = Current()) __atomic_add_fetch(m->waits(), 1, __ATOMIC_SEQ_CST);
  });
}

}  // namespace crsync

namespace {

// The side file of the database at `db_path` as given by a caller: named
// after the path SQLite resolves (symlinks followed), so a path through a
// symlink finds the same file.
std::string CallerSignalPath(const char* db_path) {
  char resolved[PATH_MAX];
  return crsync::SignalPath(realpath(db_path, resolved) ? resolved : db_path);
}

// Reads the u64 at `offset` of the side file of `db_path` (0 when there is
// no side file or it is shorter).
int ReadSideU64(const char* db_path, size_t offset, sqlite3_uint64* out) {
  if (!out) return SQLITE_MISUSE;
  *out = 0;
  if (!db_path || !*db_path) return SQLITE_MISUSE;  // "" would name ./-crsync
  int fd = ::open(CallerSignalPath(db_path).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? SQLITE_OK : SQLITE_IOERR;
  uint64_t v = 0;
  ssize_t n = pread(fd, &v, sizeof v, static_cast<off_t>(offset));
  close(fd);
  if (n < 0) return SQLITE_IOERR;
  // Shorter: a VFS is still sizing it (and sizes it again if it finds it
  // short), so nothing was counted there yet, as the rearm below says.
  if (n != static_cast<ssize_t>(sizeof v)) return SQLITE_OK;
  *out = v;
  return SQLITE_OK;
}

}  // namespace

// The C entry points below return result codes only (vfs.h): a path that
// cannot be resolved for want of memory is SQLITE_NOMEM.
extern "C" int crsync_writer_waits(const char* db_path, sqlite3_uint64* out) {
  return crsync::GuardSqliteCall(SQLITE_NOMEM,
                                 [&] { return ReadSideU64(db_path, crsync::kWaitsOffset, out); });
}

namespace {

int RearmCounter(const char* db_path, sqlite3_uint64* out) {
  if (!out) return SQLITE_MISUSE;
  *out = 0;
  if (!db_path || !*db_path) return SQLITE_MISUSE;
  int fd = ::open(CallerSignalPath(db_path).c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? SQLITE_OK : SQLITE_IOERR;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(crsync::kSignalFileSize)) {
    close(fd);
    return SQLITE_OK;  // not sized yet: no commit counted
  }
  void* map = mmap(nullptr, crsync::kSignalFileSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return SQLITE_IOERR;
  auto* flag = reinterpret_cast<uint32_t*>(static_cast<char*>(map) + crsync::kWakeFlagOffset);
  // Clear first, then read: a commit after the clear writes a new wake-up.
  __atomic_store_n(flag, 0u, __ATOMIC_SEQ_CST);
  *out = __atomic_load_n(static_cast<uint64_t*>(map), __ATOMIC_SEQ_CST);
  munmap(map, crsync::kSignalFileSize);
  return SQLITE_OK;
}

}  // namespace

extern "C" int crsync_commit_counter_rearm(const char* db_path, sqlite3_uint64* out) {
  return crsync::GuardSqliteCall(SQLITE_NOMEM, [&] { return RearmCounter(db_path, out); });
}

extern "C" int crsync_commit_counter(const char* db_path, sqlite3_uint64* out) {
  return crsync::GuardSqliteCall(SQLITE_NOMEM, [&] { return ReadSideU64(db_path, 0, out); });
}
