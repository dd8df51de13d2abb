// tests/fault/fault_vfs.cc — see fault_vfs.h for the contract.
#include "tests/fault/fault_vfs.h"

#include <cstdio>
#include <cstring>
#include <utility>

#include "common/guard.h"

namespace crsync::fault {
namespace {

constexpr const char* kWatchedSuffixes[] = {"", "-journal", "-wal"};

const char* KindName(WritePoint::Kind kind) {
  switch (kind) {
    case WritePoint::Kind::kWrite:
      return "xWrite";
    case WritePoint::Kind::kTruncate:
      return "xTruncate";
    case WritePoint::Kind::kSync:
      return "xSync";
    case WritePoint::Kind::kDelete:
      return "xDelete";
  }
  return "?";
}

// Our file object; the lower VFS's file object follows it in the same
// allocation (SQLite allocates vfs->szOsFile bytes, 8-byte aligned).
struct FaultFile {
  sqlite3_file base;  // must be first: SQLite sees this
  FaultVfs* owner;
  const char* path;  // as given to xOpen (valid until xClose); nullptr for temp files
  sqlite3_file* Lower() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};
static_assert(sizeof(FaultFile) % 8 == 0, "the lower file must stay 8-byte aligned");
static_assert(alignof(FaultFile) <= 8, "SQLite only guarantees 8-byte alignment");

FaultFile* AsFault(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f); }
sqlite3_file* Low(sqlite3_file* f) { return AsFault(f)->Lower(); }

// A file object of `vfs`, opened or not; closed and freed on destruction.
class LowerFile {
 public:
  explicit LowerFile(sqlite3_vfs* vfs)
      : file_(static_cast<sqlite3_file*>(
            sqlite3_malloc64(static_cast<sqlite3_uint64>(vfs->szOsFile)))) {
    if (file_) std::memset(file_, 0, static_cast<size_t>(vfs->szOsFile));
  }
  ~LowerFile() {
    if (!file_) return;
    if (file_->pMethods) file_->pMethods->xClose(file_);
    sqlite3_free(file_);
  }
  LowerFile(const LowerFile&) = delete;
  LowerFile& operator=(const LowerFile&) = delete;
  sqlite3_file* get() const { return file_; }

 private:
  sqlite3_file* file_;
};

struct FileCloser {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

Status IoError(const std::string& what, const std::string& path, int rc) {
  return Status::IOError(what + " " + path + ": " + sqlite3_errstr(rc) + " (" + std::to_string(rc) +
                         ")");
}

// The whole content of the open file `f`.
Status ReadAll(sqlite3_file* f, const std::string& path, std::string* out) {
  sqlite3_int64 size = 0;
  int rc = f->pMethods->xFileSize(f, &size);
  if (rc != SQLITE_OK) return IoError("size of", path, rc);
  if (size < 0 || size > (1 << 30)) return Status::IOError("unexpected size of " + path);
  out->assign(static_cast<size_t>(size), '\0');
  if (size == 0) return Status::OK();
  rc = f->pMethods->xRead(f, out->data(), static_cast<int>(size), 0);
  if (rc != SQLITE_OK) return IoError("reading", path, rc);
  return Status::OK();
}

// What `path` holds on disk now, through `vfs` (nullopt: no such file). The
// file is opened as a main database so that the unix VFS keeps the POSIX
// locks another handle holds on it when ours is closed.
Status ReadFromDisk(sqlite3_vfs* vfs, const std::string& path, std::optional<std::string>* out) {
  int exists = 0;
  int rc = vfs->xAccess(vfs, path.c_str(), SQLITE_ACCESS_EXISTS, &exists);
  if (rc != SQLITE_OK) return IoError("checking", path, rc);
  if (!exists) {
    out->reset();
    return Status::OK();
  }
  LowerFile file(vfs);
  if (!file.get()) return Status::IOError("out of memory");
  int out_flags = 0;
  rc = vfs->xOpen(vfs, path.c_str(), file.get(), SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB,
                  &out_flags);
  if (rc != SQLITE_OK) return IoError("opening", path, rc);
  std::string content;
  CRSYNC_RETURN_IF_ERROR(ReadAll(file.get(), path, &content));
  *out = std::move(content);
  return Status::OK();
}

Status WriteToDisk(const std::string& path, const std::string& content) {
  FilePtr f(std::fopen(path.c_str(), "wb"));
  if (!f) return Status::IOError("cannot create " + path);
  if (!content.empty() && std::fwrite(content.data(), 1, content.size(), f.get()) != content.size())
    return Status::IOError("cannot write " + path);
  if (std::fflush(f.get()) != 0) return Status::IOError("cannot flush " + path);
  return Status::OK();
}

}  // namespace

std::string WritePoint::ToString() const {
  return "#" + std::to_string(number) + " " + KindName(kind) + " " +
         (path.empty() ? std::string("<temp file>") : path);
}

// --- the C callbacks -------------------------------------------------------

struct FaultVfs::Hooks {
  static FaultVfs* Self(sqlite3_vfs* vfs) { return static_cast<FaultVfs*>(vfs->pAppData); }
  static sqlite3_vfs* Base(sqlite3_vfs* vfs) { return Self(vfs)->base_; }
  static FaultVfs* Owner(sqlite3_file* f) { return AsFault(f)->owner; }
  static bool Dead(sqlite3_file* f) {
    FaultVfs* o = Owner(f);
    std::lock_guard<std::mutex> lock(o->mu_);
    return o->dead();
  }
  // Numbers a write point of file `f` (or of path `path`).
  static int WritePointOf(FaultVfs* o, WritePoint::Kind kind, const char* path, int fail_rc) {
    std::lock_guard<std::mutex> lock(o->mu_);
    return o->AtWritePoint(kind, path, fail_rc);
  }

  // io methods
  static int Close(sqlite3_file* f) noexcept {
    sqlite3_file* low = Low(f);
    return low->pMethods ? low->pMethods->xClose(low) : SQLITE_OK;
  }
  static int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) noexcept {
    return GuardSqliteCall(SQLITE_IOERR_READ, [&] {
      if (Dead(f)) return SQLITE_IOERR_READ;
      return Low(f)->pMethods->xRead(Low(f), buf, n, off);
    });
  }
  static int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) noexcept {
    return GuardSqliteCall(SQLITE_IOERR_WRITE, [&] {
      int rc =
          WritePointOf(Owner(f), WritePoint::Kind::kWrite, AsFault(f)->path, SQLITE_IOERR_WRITE);
      if (rc != SQLITE_OK) return rc;
      return Low(f)->pMethods->xWrite(Low(f), buf, n, off);
    });
  }
  static int Truncate(sqlite3_file* f, sqlite3_int64 size) noexcept {
    return GuardSqliteCall(SQLITE_IOERR_TRUNCATE, [&] {
      int rc = WritePointOf(Owner(f), WritePoint::Kind::kTruncate, AsFault(f)->path,
                            SQLITE_IOERR_TRUNCATE);
      if (rc != SQLITE_OK) return rc;
      return Low(f)->pMethods->xTruncate(Low(f), size);
    });
  }
  static int Sync(sqlite3_file* f, int flags) noexcept {
    return GuardSqliteCall(SQLITE_IOERR_FSYNC, [&] {
      FaultVfs* o = Owner(f);
      const char* path = AsFault(f)->path;
      int rc = WritePointOf(o, WritePoint::Kind::kSync, path, SQLITE_IOERR_FSYNC);
      if (rc != SQLITE_OK) return rc;
      bool forward;
      {
        std::lock_guard<std::mutex> lock(o->mu_);
        forward = o->forward_syncs_;
      }
      if (forward) {
        rc = Low(f)->pMethods->xSync(Low(f), flags);
        if (rc != SQLITE_OK) return rc;
      }
      std::lock_guard<std::mutex> lock(o->mu_);
      if (o->mode_ == Mode::kPowerLoss && o->Watched(path)) {
        std::string content;
        Status s = ReadAll(Low(f), path, &content);
        if (!s.ok()) {
          if (o->capture_status_.ok()) o->capture_status_ = s.WithContext("after xSync");
        } else {
          o->NoteDurable(path, std::move(content));
        }
      }
      return SQLITE_OK;
    });
  }
  static int FileSize(sqlite3_file* f, sqlite3_int64* size) noexcept {
    return GuardSqliteCall(SQLITE_IOERR_FSTAT, [&] {
      if (Dead(f)) return SQLITE_IOERR_FSTAT;
      return Low(f)->pMethods->xFileSize(Low(f), size);
    });
  }
  static int Lock(sqlite3_file* f, int level) noexcept {
    return Low(f)->pMethods->xLock(Low(f), level);
  }
  static int Unlock(sqlite3_file* f, int level) noexcept {
    return Low(f)->pMethods->xUnlock(Low(f), level);
  }
  static int CheckReservedLock(sqlite3_file* f, int* out) noexcept {
    return Low(f)->pMethods->xCheckReservedLock(Low(f), out);
  }
  static int FileControl(sqlite3_file* f, int op, void* arg) noexcept {
    return Low(f)->pMethods->xFileControl(Low(f), op, arg);
  }
  static int SectorSize(sqlite3_file* f) noexcept { return Low(f)->pMethods->xSectorSize(Low(f)); }
  static int DeviceCharacteristics(sqlite3_file* f) noexcept {
    return Low(f)->pMethods->xDeviceCharacteristics(Low(f));
  }
  static int ShmMap(sqlite3_file* f, int page, int page_size, int extend,
                    void volatile** out) noexcept {
    return GuardSqliteCall(SQLITE_IOERR_SHMMAP, [&] {
      if (Dead(f)) return SQLITE_IOERR_SHMMAP;
      return Low(f)->pMethods->xShmMap(Low(f), page, page_size, extend, out);
    });
  }
  static int ShmLock(sqlite3_file* f, int offset, int n, int flags) noexcept {
    return Low(f)->pMethods->xShmLock(Low(f), offset, n, flags);
  }
  static void ShmBarrier(sqlite3_file* f) noexcept { Low(f)->pMethods->xShmBarrier(Low(f)); }
  static int ShmUnmap(sqlite3_file* f, int delete_flag) noexcept {
    return Low(f)->pMethods->xShmUnmap(Low(f), delete_flag);
  }
  static int Fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) noexcept {
    return GuardSqliteCall(SQLITE_IOERR_READ, [&] {
      if (Dead(f)) {
        *out = nullptr;  // "no mapping": SQLite falls back to xRead, which fails
        return SQLITE_OK;
      }
      return Low(f)->pMethods->xFetch(Low(f), off, n, out);
    });
  }
  static int Unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) noexcept {
    return Low(f)->pMethods->xUnfetch(Low(f), off, p);
  }

  // One method table per version, so SQLite never calls a method the lower
  // file lacks.
  static const sqlite3_io_methods* MethodsFor(int version) {
    static const sqlite3_io_methods kMethods[3] = {Table(1), Table(2), Table(3)};
    if (version < 1) version = 1;
    if (version > 3) version = 3;
    return &kMethods[version - 1];
  }
  static sqlite3_io_methods Table(int version) {
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
    m.xCheckReservedLock = CheckReservedLock;
    m.xFileControl = FileControl;
    m.xSectorSize = SectorSize;
    m.xDeviceCharacteristics = DeviceCharacteristics;
    if (version >= 2) {
      m.xShmMap = ShmMap;
      m.xShmLock = ShmLock;
      m.xShmBarrier = ShmBarrier;
      m.xShmUnmap = ShmUnmap;
    }
    if (version >= 3) {
      m.xFetch = Fetch;
      m.xUnfetch = Unfetch;
    }
    return m;
  }

  // vfs methods
  static int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags,
                  int* out_flags) noexcept {
    FaultFile* f = AsFault(file);
    f->base.pMethods = nullptr;
    f->owner = Self(vfs);
    f->path = name;
    sqlite3_file* low = f->Lower();
    low->pMethods = nullptr;
    {
      std::lock_guard<std::mutex> lock(Self(vfs)->mu_);
      if (Self(vfs)->dead()) return SQLITE_CANTOPEN;
    }
    sqlite3_vfs* base = Base(vfs);
    int rc = base->xOpen(base, name, low, flags, out_flags);
    if (rc != SQLITE_OK) {
      // SQLite will not call our xClose (pMethods stays null): close below.
      if (low->pMethods) low->pMethods->xClose(low);
      low->pMethods = nullptr;
      return rc;
    }
    f->base.pMethods = MethodsFor(low->pMethods->iVersion);
    return SQLITE_OK;
  }
  static int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) noexcept {
    return GuardSqliteCall(SQLITE_IOERR_DELETE, [&] {
      FaultVfs* self = Self(vfs);
      int rc = WritePointOf(self, WritePoint::Kind::kDelete, name, SQLITE_IOERR_DELETE);
      if (rc != SQLITE_OK) return rc;
      bool forward;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        forward = self->forward_syncs_;
      }
      rc = Base(vfs)->xDelete(Base(vfs), name, forward ? sync_dir : 0);
      if (rc == SQLITE_OK || rc == SQLITE_IOERR_DELETE_NOENT) {
        std::lock_guard<std::mutex> lock(self->mu_);
        if (self->mode_ == Mode::kPowerLoss) self->NoteDurable(name, std::nullopt);
      }
      return rc;
    });
  }
  static int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) noexcept {
    {
      std::lock_guard<std::mutex> lock(Self(vfs)->mu_);
      if (Self(vfs)->dead()) return SQLITE_IOERR_ACCESS;
    }
    return Base(vfs)->xAccess(Base(vfs), name, flags, out);
  }
  static int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) noexcept {
    return Base(vfs)->xFullPathname(Base(vfs), name, n, out);
  }
  static void* DlOpen(sqlite3_vfs* vfs, const char* name) noexcept {
    return Base(vfs)->xDlOpen(Base(vfs), name);
  }
  static void DlError(sqlite3_vfs* vfs, int n, char* out) noexcept {
    Base(vfs)->xDlError(Base(vfs), n, out);
  }
  static void (*DlSym(sqlite3_vfs* vfs, void* handle, const char* sym))(void) {
    return Base(vfs)->xDlSym(Base(vfs), handle, sym);
  }
  static void DlClose(sqlite3_vfs* vfs, void* handle) noexcept {
    Base(vfs)->xDlClose(Base(vfs), handle);
  }
  static int Randomness(sqlite3_vfs* vfs, int n, char* out) noexcept {
    return Base(vfs)->xRandomness(Base(vfs), n, out);
  }
  static int Sleep(sqlite3_vfs* vfs, int us) noexcept { return Base(vfs)->xSleep(Base(vfs), us); }
  static int CurrentTime(sqlite3_vfs* vfs, double* out) noexcept {
    return Base(vfs)->xCurrentTime(Base(vfs), out);
  }
  static int GetLastError(sqlite3_vfs* vfs, int n, char* out) noexcept {
    return Base(vfs)->xGetLastError ? Base(vfs)->xGetLastError(Base(vfs), n, out) : 0;
  }
  static int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) noexcept {
    return Base(vfs)->xCurrentTimeInt64(Base(vfs), out);
  }
  static int SetSystemCall(sqlite3_vfs* vfs, const char* name, sqlite3_syscall_ptr p) noexcept {
    return Base(vfs)->xSetSystemCall(Base(vfs), name, p);
  }
  static sqlite3_syscall_ptr GetSystemCall(sqlite3_vfs* vfs, const char* name) noexcept {
    return Base(vfs)->xGetSystemCall(Base(vfs), name);
  }
  static const char* NextSystemCall(sqlite3_vfs* vfs, const char* name) noexcept {
    return Base(vfs)->xNextSystemCall(Base(vfs), name);
  }
};

// --- FaultVfs ----------------------------------------------------------------

Status FaultVfs::Register(const std::string& name, std::unique_ptr<FaultVfs>* out,
                          const char* base_name) {
  sqlite3_vfs* base = sqlite3_vfs_find(base_name);
  if (!base)
    return Status::NotFound(std::string("no VFS ") + (base_name ? base_name : "(default)"));
  if (sqlite3_vfs_find(name.c_str())) return Status::InvalidArgument("VFS " + name + " exists");
  std::unique_ptr<FaultVfs> v(new FaultVfs(name, base));
  int rc = sqlite3_vfs_register(&v->vfs_, 0);
  if (rc != SQLITE_OK) return Status::Sqlite(rc, "registering VFS " + name);
  *out = std::move(v);
  return Status::OK();
}

FaultVfs::FaultVfs(std::string name, sqlite3_vfs* base) : name_(std::move(name)), base_(base) {
  using H = Hooks;
  vfs_.iVersion = base->iVersion < 3 ? base->iVersion : 3;
  vfs_.szOsFile = static_cast<int>(sizeof(FaultFile)) + base->szOsFile;
  vfs_.mxPathname = base->mxPathname;
  vfs_.zName = name_.c_str();
  vfs_.pAppData = this;
  vfs_.xOpen = H::Open;
  vfs_.xDelete = H::Delete;
  vfs_.xAccess = H::Access;
  vfs_.xFullPathname = H::FullPathname;
  vfs_.xDlOpen = H::DlOpen;
  vfs_.xDlError = H::DlError;
  vfs_.xDlSym = H::DlSym;
  vfs_.xDlClose = H::DlClose;
  vfs_.xRandomness = H::Randomness;
  vfs_.xSleep = H::Sleep;
  vfs_.xCurrentTime = H::CurrentTime;
  vfs_.xGetLastError = H::GetLastError;
  if (vfs_.iVersion >= 2) vfs_.xCurrentTimeInt64 = H::CurrentTimeInt64;
  if (vfs_.iVersion >= 3) {
    vfs_.xSetSystemCall = H::SetSystemCall;
    vfs_.xGetSystemCall = H::GetSystemCall;
    vfs_.xNextSystemCall = H::NextSystemCall;
  }
}

FaultVfs::~FaultVfs() { sqlite3_vfs_unregister(&vfs_); }

void FaultVfs::Reset(Mode mode, int64_t n) {
  mode_ = mode;
  fault_at_ = n;
  count_ = 0;
  dead_ = false;
  fault_.reset();
  capture_status_ = Status::OK();
  trace_.clear();
  watched_.clear();
  capture_path_.clear();
  durable_.clear();
}

void FaultVfs::Count() {
  std::lock_guard<std::mutex> lock(mu_);
  Reset(Mode::kCount, 0);
}

void FaultVfs::ArmIoError(int64_t n, bool persistent) {
  std::lock_guard<std::mutex> lock(mu_);
  Reset(persistent ? Mode::kIoErrorPersistent : Mode::kIoErrorOnce, n);
}

void FaultVfs::ArmDiskFull() {
  std::lock_guard<std::mutex> lock(mu_);
  Reset(Mode::kDiskFull, 1);
}

Status FaultVfs::ArmCrash(int64_t n, const std::string& db_path, const std::string& capture_path,
                          bool power_loss) {
  std::lock_guard<std::mutex> lock(mu_);
  Reset(Mode::kCount, 0);
  std::string full(static_cast<size_t>(base_->mxPathname) + 1, '\0');
  int rc = base_->xFullPathname(base_, db_path.c_str(), base_->mxPathname + 1, full.data());
  if (rc != SQLITE_OK) return IoError("full path of", db_path, rc);
  full.resize(std::strlen(full.c_str()));
  for (const char* suffix : kWatchedSuffixes) watched_.push_back(full + suffix);
  for (const char* suffix : {"", "-journal", "-wal", "-shm"})
    std::remove((capture_path + suffix).c_str());
  capture_path_ = capture_path;
  if (power_loss) {
    for (const std::string& path : watched_) {
      std::optional<std::string> content;
      CRSYNC_RETURN_IF_ERROR(ReadFromDisk(base_, path, &content));
      durable_[path] = std::move(content);
    }
  }
  mode_ = power_loss ? Mode::kPowerLoss : Mode::kCrash;
  fault_at_ = n;
  return Status::OK();
}

FaultVfs::Mode FaultVfs::mode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mode_;
}

int64_t FaultVfs::write_points() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

std::optional<WritePoint> FaultVfs::fault() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fault_;
}

Status FaultVfs::capture_status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capture_status_;
}

std::vector<WritePoint> FaultVfs::trace() const {
  std::lock_guard<std::mutex> lock(mu_);
  return trace_;
}

void FaultVfs::set_trace(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  tracing_ = on;
}

void FaultVfs::set_forward_syncs(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  forward_syncs_ = on;
}

bool FaultVfs::Watched(const char* path) const {
  if (!path) return false;
  for (const std::string& w : watched_)
    if (w == path) return true;
  return false;
}

void FaultVfs::NoteDurable(const std::string& path, std::optional<std::string> content) {
  auto it = durable_.find(path);
  if (it != durable_.end()) it->second = std::move(content);
}

int FaultVfs::AtWritePoint(WritePoint::Kind kind, const char* path, int fail_rc) {
  if (dead_) return fail_rc;
  WritePoint point;
  point.number = ++count_;
  point.kind = kind;
  if (path) point.path = path;
  if (tracing_) trace_.push_back(point);
  switch (mode_) {
    case Mode::kCount:
      return SQLITE_OK;
    case Mode::kIoErrorOnce:
      if (count_ != fault_at_) return SQLITE_OK;
      fault_ = point;
      return fail_rc;
    case Mode::kIoErrorPersistent:
      if (count_ < fault_at_) return SQLITE_OK;
      if (!fault_) fault_ = point;
      return fail_rc;
    case Mode::kDiskFull:
      if (kind != WritePoint::Kind::kWrite) return SQLITE_OK;
      if (!fault_) fault_ = point;
      return SQLITE_FULL;
    case Mode::kCrash:
    case Mode::kPowerLoss:
      if (count_ != fault_at_) return SQLITE_OK;
      fault_ = point;
      dead_ = true;
      capture_status_ = Status::IOError("capture interrupted");
      capture_status_ = Capture();
      return fail_rc;
  }
  return SQLITE_OK;
}

Status FaultVfs::Capture() {
  for (size_t i = 0; i < watched_.size(); ++i) {
    const std::string& path = watched_[i];
    std::optional<std::string> content;
    auto durable = durable_.find(path);
    if (mode_ == Mode::kPowerLoss && durable != durable_.end()) {
      content = durable->second;
    } else {
      CRSYNC_RETURN_IF_ERROR(ReadFromDisk(base_, path, &content));
    }
    if (content) CRSYNC_RETURN_IF_ERROR(WriteToDisk(capture_path_ + kWatchedSuffixes[i], *content));
  }
  return Status::OK();
}

}  // namespace crsync::fault
