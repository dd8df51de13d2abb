// transport/sidecar_lock.cc — see sidecar_lock.h.
#include "transport/sidecar_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace crsync {

Status SidecarLock::Acquire(const std::string& db_path) {
  Release();
  // The lock is named after the path: a second name of the same file (a
  // hard link) would get a lock of its own. SQLite too keeps a journal
  // (and WAL) per name, so a linked database is refused.
  struct stat db;
  if (stat(db_path.c_str(), &db) == 0 && db.st_nlink > 1) {
    return Status::InvalidArgument(
        db_path + " has " + std::to_string(db.st_nlink) +
        " hard links: each name would get its own sidecar lock, and SQLite its own journal "
        "(a sure way to corrupt it); give the database one name");
  }
  const std::string path = PathFor(db_path);
  // A lock taken on a file that was deleted or replaced between our open
  // and our flock guards nothing: check it is still the one at `path`.
  for (int attempt = 0; attempt < 3; ++attempt) {
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    const bool writable = fd_ >= 0;
    int err = errno;
    // Made by another user: flock works on a read-only descriptor too.
    // When there is none (a directory we may not write), the first error
    // is the one to tell.
    if (fd_ < 0 && err == EACCES) fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return Status::IOError("cannot open " + path + ": " + std::strerror(err));
    if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char holder[32] = {0};
      ssize_t n = pread(fd_, holder, sizeof holder - 1, 0);
      std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      Release();
      if (err == EWOULDBLOCK) {
        return Status::FailedPrecondition(
            path + " is held" + (pid.empty() ? std::string() : " by pid " + pid) +
            ": a crsyncd serves " + db_path + ", or a `crsyncd forget` is changing it. One at a "
            "time: two sidecars would send the same site id from two places, and a running "
            "sidecar writes back the cursors a forget removes");
      }
      return Status::IOError("cannot lock " + path + ": " + std::strerror(err));
    }
    struct stat held, named;
    if (fstat(fd_, &held) == 0 && stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino) {
      const std::string me = std::to_string(getpid()) + "\n";
      // Only informative (the lock is what counts): a failure is ignored.
      if (writable && ftruncate(fd_, 0) == 0) (void)!pwrite(fd_, me.data(), me.size(), 0);
      return Status::OK();
    }
    Release();
  }
  return Status::IOError("cannot lock " + path + ": it was replaced at every attempt");
}

void SidecarLock::Release() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

}  // namespace crsync
