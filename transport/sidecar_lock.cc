// transport/sidecar_lock.cc — see sidecar_lock.h.
#include "transport/sidecar_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace crsync {

Status SidecarLock::Acquire(const std::string& db_path) {
  Release();
  const std::string path = PathFor(db_path);
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {0};
    ssize_t n = pread(fd_, holder, sizeof holder - 1, 0);
    std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    Release();
    if (err == EWOULDBLOCK) {
      return Status::FailedPrecondition(
          "a sidecar already serves " + db_path + (pid.empty() ? std::string() : " (pid " + pid + ")") +
          ": it holds " + path + ". One sidecar per database: two would send the same site id "
          "from two places");
    }
    return Status::IOError("cannot lock " + path + ": " + std::strerror(err));
  }
  const std::string me = std::to_string(getpid()) + "\n";
  // Only informative (the lock is what counts): a failure here is ignored.
  if (ftruncate(fd_, 0) == 0) (void)!pwrite(fd_, me.data(), me.size(), 0);
  return Status::OK();
}

void SidecarLock::Release() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

}  // namespace crsync
