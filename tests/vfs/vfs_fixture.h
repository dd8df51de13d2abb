// tests/vfs/vfs_fixture.h — the fixture of the VFS shim's tests: the shim
// registered, databases opened through it, the commit counter read, and a
// body run in a child process.
#ifndef CRSYNC_TESTS_VFS_VFS_FIXTURE_H_
#define CRSYNC_TESTS_VFS_VFS_FIXTURE_H_

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "crsync/vfs.h"
#include "tests/test_util.h"

namespace crsync {

class VfsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(crsync_vfs_register(nullptr, 0), SQLITE_OK); }

  static DbPtr OpenShim(const std::string& path) {
    DbPtr db;
    Status s = OpenDb(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, CRSYNC_VFS_NAME, &db);
    EXPECT_OK(s);
    if (db) sqlite3_busy_timeout(db.get(), 5000);
    return db;
  }
  static uint64_t Counter(const std::string& path) {
    sqlite3_uint64 v = 0;
    EXPECT_EQ(crsync_commit_counter(path.c_str(), &v), SQLITE_OK);
    return v;
  }
  // Runs `body` in a child process; returns its exit status.
  template <typename Body>
  static int InChild(Body&& body) {
    pid_t pid = fork();
    if (pid == 0) {
      int rc = body();
      _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
  }
};

}  // namespace crsync

#endif  // CRSYNC_TESTS_VFS_VFS_FIXTURE_H_
