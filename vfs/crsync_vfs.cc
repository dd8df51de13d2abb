// The "crsync" VFS: forwards everything to the VFS below it and raises the
// commit signal when a write transaction on a main database file commits.
//
// Commit detection: SQLite sends SQLITE_FCNTL_COMMIT_PHASETWO to the main
// database file at the end of every write-transaction commit, in WAL and in
// all rollback-journal modes and in locking_mode=EXCLUSIVE, and never for
// read transactions or rollbacks (checked by tests/vfs). That one hook
// replaces watching WAL frames and shm locks. In rollback-journal modes it
// comes while SQLite still holds the EXCLUSIVE lock, so the signal is
// raised when xUnlock drops it (or at once under locking_mode=EXCLUSIVE).

#include <sqlite3.h>

#include <condition_variable>
#include <mutex>
#include <new>
#include <type_traits>

#include "common/guard.h"
#include "crsync/crsync.h"
#include "crsync/vfs.h"
#include "vfs/commit_signal.h"

namespace crsync {
namespace {

struct ShimFile {  // 8-byte aligned, like the memory SQLite gives us
  sqlite3_file base;           // must be first: SQLite sees this
  CommitSignal* signal;        // main database files only
  int lock = SQLITE_LOCK_NONE; // the level SQLite holds on it (xLock/xUnlock)
  int pending = 0;              // commits made under a lock not dropped since
  bool exclusive_mode = false;  // PRAGMA locking_mode = EXCLUSIVE seen (and not NORMAL since)
  bool unused[3] = {};
  sqlite3_file* Lower() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};

static_assert(sizeof(ShimFile) % 8 == 0, "the lower file must stay 8-byte aligned");
static_assert(alignof(ShimFile) <= 8, "SQLite only guarantees 8-byte alignment");

ShimFile* Shim(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f); }
sqlite3_file* Low(sqlite3_file* f) { return Shim(f)->Lower(); }
sqlite3_vfs* Below(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

// The in-process commit callback. It runs outside any lock, so callbacks
// of different threads may run at once and one may wait for another
// thread's commit; setting it waits until no other thread still runs the
// one it replaces (except from within a callback: see
// crsync_vfs_on_commit).
struct Callback {
  std::mutex mu;
  std::condition_variable idle;
  void (*fn)(void*, const char*, sqlite3_uint64) = nullptr;
  void* ctx = nullptr;
  // Calls in progress, all threads, each tagged with the generation of the
  // function it runs (one per crsync_vfs_on_commit), oldest first: a call
  // takes the current generation and joins the tail under `mu`, so
  // generations never decrease along the list. A replacement waits for the
  // older generations only, so calls started after it never keep it
  // waiting. The nodes live on the callers' stacks: a commit allocates
  // nothing.
  struct Running {
    uint64_t generation;
    Running* prev;
    Running* next;
  };
  uint64_t generation = 0;
  Running* oldest = nullptr;
  Running* newest = nullptr;
};
Callback& TheCallback() {
  static Callback* c = new Callback;  // never destroyed: commits may run at exit
  return *c;
}
thread_local int t_running = 0;  // calls in progress on this thread

void RunCallback(const char* path, sqlite3_uint64 seq) {
  Callback& c = TheCallback();
  void (*fn)(void*, const char*, sqlite3_uint64);
  void* ctx;
  Callback::Running me;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    fn = c.fn;
    ctx = c.ctx;
    if (!fn) return;
    me = {c.generation, c.newest, nullptr};
    (c.newest ? c.newest->next : c.oldest) = &me;
    c.newest = &me;
  }
  ++t_running;
  struct Done {
    Callback& c;
    Callback::Running& me;
    ~Done() {
      --t_running;
      std::lock_guard<std::mutex> lock(c.mu);
      (me.prev ? me.prev->next : c.oldest) = me.next;
      (me.next ? me.next->prev : c.newest) = me.prev;
      if (!me.prev) c.idle.notify_all();  // the oldest call ended
    }
  } done{c, me};
  fn(ctx, path, seq);
}

// Counts a commit of `s` and tells the in-process callback.
void RaiseSignal(ShimFile* s) {
  GuardVoidCall([&] {
    uint64_t seq = s->signal->Bump();
    RunCallback(s->signal->db_path().c_str(), seq);
  });
}

// Raises the signals of commits `s` made under a lock not dropped since.
// Called when the lock drops, and by every other call on the file: SQLite
// makes none between a commit and its unlock, so such a call means the
// lock is kept (exclusive locking mode the shim did not see set).
void Settle(ShimFile* s) {
  for (; s->pending > 0; --s->pending) RaiseSignal(s);
}
inline void SettleIfPending(sqlite3_file* f) {
  if (Shim(f)->pending > 0) Settle(Shim(f));
}

// --- io methods: forwards, plus the commit hook in xFileControl ---

int Close(sqlite3_file* f) {
  ShimFile* s = Shim(f);
  int rc = s->Lower()->pMethods ? s->Lower()->pMethods->xClose(s->Lower()) : SQLITE_OK;
  GuardVoidCall([&] {
    Settle(s);  // its lock is gone now
    CommitSignal::Release(s->signal);
  });
  s->signal = nullptr;
  return rc;
}
int Read(sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
  SettleIfPending(f);
  return Low(f)->pMethods->xRead(Low(f), b, n, o);
}
int Write(sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
  SettleIfPending(f);
  return Low(f)->pMethods->xWrite(Low(f), b, n, o);
}
int Truncate(sqlite3_file* f, sqlite3_int64 s) {
  SettleIfPending(f);
  return Low(f)->pMethods->xTruncate(Low(f), s);
}
int Sync(sqlite3_file* f, int flags) {
  SettleIfPending(f);
  return Low(f)->pMethods->xSync(Low(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* s) {
  SettleIfPending(f);
  return Low(f)->pMethods->xFileSize(Low(f), s);
}
// A writer turned away by the write lock is counted in the side file, so a
// sidecar merging a backlog can step aside (crsync_writer_waits). A writer
// asks for RESERVED, or for EXCLUSIVE while it holds RESERVED (to commit).
// EXCLUSIVE straight from SHARED is not a writer: in WAL mode that is a
// closing connection checking whether it is the last one.
int Lock(sqlite3_file* f, int l) {
  SettleIfPending(f);
  ShimFile* s = Shim(f);
  int rc = Low(f)->pMethods->xLock(Low(f), l);
  if (rc == SQLITE_OK) {
    s->lock = l;
  } else if (rc == SQLITE_BUSY && s->signal &&
             (l == SQLITE_LOCK_RESERVED || (l > SQLITE_LOCK_RESERVED && s->lock >= SQLITE_LOCK_RESERVED))) {
    s->signal->NoteWriterWaiting();
  }
  return rc;
}
int Unlock(sqlite3_file* f, int l) {
  ShimFile* s = Shim(f);
  int rc = Low(f)->pMethods->xUnlock(Low(f), l);
  if (rc == SQLITE_OK) s->lock = l;
  // A rollback-journal commit is readable once its EXCLUSIVE lock drops.
  if (s->lock <= SQLITE_LOCK_SHARED) Settle(s);
  return rc;
}
int CheckReserved(sqlite3_file* f, int* r) {
  SettleIfPending(f);
  return Low(f)->pMethods->xCheckReservedLock(Low(f), r);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  ShimFile* s = Shim(f);
  if (op == SQLITE_FCNTL_COMMIT_PHASETWO && s->signal) {
    // In WAL mode the database file is only SHARED-locked and the commit is
    // readable now. In rollback-journal modes SQLite still holds EXCLUSIVE
    // (it drops it right after): a watcher woken now would find the
    // database locked, so the signal waits for xUnlock. Under
    // locking_mode=EXCLUSIVE the lock is kept for good: signalled now.
    if (s->lock > SQLITE_LOCK_SHARED && !s->exclusive_mode) {
      ++s->pending;
    } else {
      Settle(s);
      RaiseSignal(s);
    }
  } else {
    SettleIfPending(f);
  }
  if (op == SQLITE_FCNTL_PRAGMA && arg) {
    // Observed, not handled: SQLite runs the pragma when we pass it on. (An
    // unknown value is a query. A NORMAL that SQLite refuses, in WAL mode,
    // delays signals until the next call on the file, which may be the
    // close: meanwhile the lock shuts every other connection out anyway.)
    char** a = static_cast<char**>(arg);
    if (a[1] && a[2] && sqlite3_stricmp(a[1], "locking_mode") == 0) {
      if (sqlite3_stricmp(a[2], "exclusive") == 0) s->exclusive_mode = true;
      if (sqlite3_stricmp(a[2], "normal") == 0) s->exclusive_mode = false;
    }
  }
  if (op == SQLITE_FCNTL_VFSNAME && arg) {
    // Report the stack, as SQLite's own shims do: "crsync/unix".
    int rc = s->Lower()->pMethods->xFileControl(s->Lower(), op, arg);
    char** name = static_cast<char**>(arg);
    char* mine = rc == SQLITE_OK && *name ? sqlite3_mprintf("crsync/%z", *name)
                                          : sqlite3_mprintf("crsync");
    *name = mine;
    return SQLITE_OK;
  }
  return s->Lower()->pMethods->xFileControl(s->Lower(), op, arg);
}
int SectorSize(sqlite3_file* f) { return Low(f)->pMethods->xSectorSize(Low(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return Low(f)->pMethods->xDeviceCharacteristics(Low(f));
}
int ShmMap(sqlite3_file* f, int i, int sz, int extend, void volatile** pp) {
  return Low(f)->pMethods->xShmMap(Low(f), i, sz, extend, pp);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  int rc = Low(f)->pMethods->xShmLock(Low(f), offset, n, flags);
  // In WAL mode the write lock is shm slot 0, taken exclusively.
  if (rc == SQLITE_BUSY && offset == 0 && flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE) &&
      Shim(f)->signal) {
    Shim(f)->signal->NoteWriterWaiting();
  }
  return rc;
}
void ShmBarrier(sqlite3_file* f) { Low(f)->pMethods->xShmBarrier(Low(f)); }
int ShmUnmap(sqlite3_file* f, int del) { return Low(f)->pMethods->xShmUnmap(Low(f), del); }
int Fetch(sqlite3_file* f, sqlite3_int64 o, int n, void** pp) {
  return Low(f)->pMethods->xFetch(Low(f), o, n, pp);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 o, void* p) {
  return Low(f)->pMethods->xUnfetch(Low(f), o, p);
}

// One method table per io version and per optional method group the file
// below has, so we never advertise methods it lacks: SQLite decides, for
// one, whether WAL is possible by whether xShmMap is set (unix-none has
// version 3 methods without shared memory).
constexpr sqlite3_io_methods MakeIo(int version, bool shm, bool fetch) {
  sqlite3_io_methods m{};
  m.iVersion = version;
  m.xClose = Close;
  m.xRead = Read;
  m.xWrite = Write;
  m.xTruncate = Truncate;
  m.xSync = Sync;
  m.xFileSize = FileSize;
  m.xLock = Lock;
  m.xUnlock = Unlock;
  m.xCheckReservedLock = CheckReserved;
  m.xFileControl = FileControl;
  m.xSectorSize = SectorSize;
  m.xDeviceCharacteristics = DeviceCharacteristics;
  if (version >= 2 && shm) {
    m.xShmMap = ShmMap;
    m.xShmLock = ShmLock;
    m.xShmBarrier = ShmBarrier;
    m.xShmUnmap = ShmUnmap;
  }
  if (version >= 3 && fetch) {
    m.xFetch = Fetch;
    m.xUnfetch = Unfetch;
  }
  return m;
}

// Built at compile time (constinit): a static-library user may register
// the VFS and open a database from its own static initializers, before any
// dynamic initializer of ours would have run.
struct IoTables {
  sqlite3_io_methods t[3][2][2];  // [version - 1][shm][fetch]
  constexpr IoTables() : t{} {
    for (int v = 1; v <= 3; ++v)
      for (int shm = 0; shm < 2; ++shm)
        for (int fetch = 0; fetch < 2; ++fetch) t[v - 1][shm][fetch] = MakeIo(v, shm != 0, fetch != 0);
  }
};
constinit const IoTables kIo;

// The table that mirrors `low`.
const sqlite3_io_methods* IoFor(const sqlite3_io_methods* low) {
  const int version = low->iVersion < 1 ? 1 : (low->iVersion > 3 ? 3 : low->iVersion);
  const bool shm = version >= 2 && low->xShmMap && low->xShmLock && low->xShmBarrier && low->xShmUnmap;
  const bool fetch = version >= 3 && low->xFetch && low->xUnfetch;
  return &kIo.t[version - 1][shm][fetch];
}

// --- VFS methods ---

int Open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  return GuardSqliteCall(SQLITE_CANTOPEN, [&] {
    ShimFile* s = new (f) ShimFile{};  // SQLite hands us raw bytes
    sqlite3_vfs* below = Below(vfs);
    int rc = below->xOpen(below, name, s->Lower(), flags, out_flags);
    const sqlite3_io_methods* low = s->Lower()->pMethods;
    if (rc != SQLITE_OK || low == nullptr) {
      // A lower file left with methods must still be closed (SQLite's rule
      // for a failed xOpen); ours gets none, so SQLite will not call us.
      if (low != nullptr) low->xClose(s->Lower());
      s->base.pMethods = nullptr;
      return rc == SQLITE_OK ? SQLITE_CANTOPEN : rc;
    }
    // A read-only connection never commits: it gets no side file (one it
    // made, as its own user, could shut the database's writers out of it).
    const int opened = out_flags ? *out_flags : flags;
    // Nor does one opened with `immutable=1` (SQLite makes it read-only
    // only after this open).
    const bool read_only = (flags & SQLITE_OPEN_READONLY) || (opened & SQLITE_OPEN_READONLY) ||
                           ((flags & SQLITE_OPEN_MAIN_DB) && name &&
                            sqlite3_uri_boolean(name, "immutable", 0));
    if ((flags & SQLITE_OPEN_MAIN_DB) && !read_only && name && *name) {
      try {
        s->signal = CommitSignal::Acquire(name);
      } catch (...) {  // out of memory: close what is open, report it
        low->xClose(s->Lower());
        s->base.pMethods = nullptr;
        throw;
      }
    }
    s->base.pMethods = IoFor(low);
    return SQLITE_OK;
  });
}
int Delete(sqlite3_vfs* v, const char* n, int sync) { return Below(v)->xDelete(Below(v), n, sync); }
int Access(sqlite3_vfs* v, const char* n, int flags, int* out) {
  return Below(v)->xAccess(Below(v), n, flags, out);
}
int FullPathname(sqlite3_vfs* v, const char* n, int size, char* out) {
  return Below(v)->xFullPathname(Below(v), n, size, out);
}
void* DlOpen(sqlite3_vfs* v, const char* n) { return Below(v)->xDlOpen(Below(v), n); }
void DlError(sqlite3_vfs* v, int n, char* msg) { Below(v)->xDlError(Below(v), n, msg); }
void (*DlSym(sqlite3_vfs* v, void* h, const char* sym))(void) {
  return Below(v)->xDlSym(Below(v), h, sym);
}
void DlClose(sqlite3_vfs* v, void* h) { Below(v)->xDlClose(Below(v), h); }
int Randomness(sqlite3_vfs* v, int n, char* out) { return Below(v)->xRandomness(Below(v), n, out); }
int Sleep(sqlite3_vfs* v, int us) { return Below(v)->xSleep(Below(v), us); }
int CurrentTime(sqlite3_vfs* v, double* out) { return Below(v)->xCurrentTime(Below(v), out); }
int GetLastError(sqlite3_vfs* v, int n, char* out) {
  return Below(v)->xGetLastError ? Below(v)->xGetLastError(Below(v), n, out) : 0;
}
int CurrentTimeInt64(sqlite3_vfs* v, sqlite3_int64* out) {
  sqlite3_vfs* b = Below(v);
  if (b->iVersion >= 2 && b->xCurrentTimeInt64) return b->xCurrentTimeInt64(b, out);
  double d;
  int rc = b->xCurrentTime(b, &d);
  *out = static_cast<sqlite3_int64>(d * 86400000.0);
  return rc;
}
int SetSystemCall(sqlite3_vfs* v, const char* n, sqlite3_syscall_ptr p) {
  return Below(v)->xSetSystemCall(Below(v), n, p);
}
sqlite3_syscall_ptr GetSystemCall(sqlite3_vfs* v, const char* n) {
  return Below(v)->xGetSystemCall(Below(v), n);
}
const char* NextSystemCall(sqlite3_vfs* v, const char* n) {
  return Below(v)->xNextSystemCall(Below(v), n);
}

std::mutex g_register_mutex;
sqlite3_vfs g_vfs{};
bool g_registered = false;

}  // namespace
}  // namespace crsync

extern "C" int crsync_vfs_register(const char* base_vfs, int make_default) {
  using namespace crsync;
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    int rc = sqlite3_initialize();
    if (rc != SQLITE_OK) return rc;
    std::lock_guard<std::mutex> lock(g_register_mutex);
    sqlite3_vfs* below = sqlite3_vfs_find(base_vfs);
    if (!below) return SQLITE_ERROR;
    if (!g_registered) {
      if (below == &g_vfs) return SQLITE_ERROR;  // cannot wrap ourselves
      g_vfs.iVersion = below->iVersion >= 3 ? 3 : below->iVersion;
      g_vfs.szOsFile = static_cast<int>(sizeof(ShimFile)) + below->szOsFile;
      g_vfs.mxPathname = below->mxPathname;
      g_vfs.zName = CRSYNC_VFS_NAME;
      g_vfs.pAppData = below;
      g_vfs.xOpen = Open;
      g_vfs.xDelete = Delete;
      g_vfs.xAccess = Access;
      g_vfs.xFullPathname = FullPathname;
      g_vfs.xDlOpen = below->xDlOpen ? DlOpen : nullptr;
      g_vfs.xDlError = below->xDlError ? DlError : nullptr;
      g_vfs.xDlSym = below->xDlSym ? DlSym : nullptr;
      g_vfs.xDlClose = below->xDlClose ? DlClose : nullptr;
      g_vfs.xRandomness = Randomness;
      g_vfs.xSleep = Sleep;
      g_vfs.xCurrentTime = CurrentTime;
      g_vfs.xGetLastError = GetLastError;
      if (g_vfs.iVersion >= 2) g_vfs.xCurrentTimeInt64 = CurrentTimeInt64;
      if (g_vfs.iVersion >= 3) {
        g_vfs.xSetSystemCall = below->xSetSystemCall ? SetSystemCall : nullptr;
        g_vfs.xGetSystemCall = below->xGetSystemCall ? GetSystemCall : nullptr;
        g_vfs.xNextSystemCall = below->xNextSystemCall ? NextSystemCall : nullptr;
      }
      rc = crsync_auto_extension();
      if (rc != SQLITE_OK) return rc;
      g_registered = true;
      return sqlite3_vfs_register(&g_vfs, make_default ? 1 : 0);
    }
    // Registered already: only make_default = 1 changes anything (again
    // with 0, as loading libcrsync.so does, SQLite would demote it), unless
    // the application unregistered it since: then it is listed again. The
    // auto-extension is installed again: sqlite3_shutdown() clears that
    // list (SQLite ignores a duplicate).
    rc = crsync_auto_extension();
    if (rc != SQLITE_OK) return rc;
    const bool listed = sqlite3_vfs_find(CRSYNC_VFS_NAME) == &g_vfs;
    return make_default || !listed ? sqlite3_vfs_register(&g_vfs, make_default ? 1 : 0)
                                   : SQLITE_OK;
  });
}

extern "C" int crsync_vfs_on_commit(void (*fn)(void*, const char*, sqlite3_uint64), void* ctx) {
  return crsync::GuardSqliteCall(SQLITE_ERROR, [&] {
    crsync::Callback& c = crsync::TheCallback();
    std::unique_lock<std::mutex> lock(c.mu);
    c.fn = fn;
    c.ctx = ctx;
    const uint64_t mine = ++c.generation;
    // Called from a callback, it does not wait: two callbacks of different
    // threads setting it at once would wait for each other.
    if (crsync::t_running == 0) {
      c.idle.wait(lock, [&] { return !c.oldest || c.oldest->generation >= mine; });
    }
    return SQLITE_OK;
  });
}
