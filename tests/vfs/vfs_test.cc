// The commit-flagging VFS shim (vfs/): commit counting across journal modes,
// processes and connections, waking a libuv watcher, the "existing app"
// registration, forwarding of ordinary SQLite work, and an unwritable side
// file. The in-process commit callback is in vfs_callback_test.cc.
#include "crsync/vfs.h"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/sqlite_log.h"
#include "tests/test_util.h"
#include "tests/vfs/vfs_fixture.h"
#include "vfs/commit_signal.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;


// (The fixture, VfsTest, is in vfs_fixture.h.)


TEST_F(VfsTest, RegisteringTwiceIsHarmlessAndUnknownBaseFails) {
  EXPECT_EQ(crsync_vfs_register(nullptr, 0), SQLITE_OK);
  EXPECT_NE(sqlite3_vfs_find(CRSYNC_VFS_NAME), nullptr);
  EXPECT_NE(sqlite3_vfs_find(nullptr), sqlite3_vfs_find(CRSYNC_VFS_NAME));  // not default
  EXPECT_EQ(crsync_vfs_register("no-such-vfs", 0), SQLITE_ERROR);  // also once registered
}

// sqlite3_shutdown() forgets the auto-extensions (a library reconfiguring
// SQLite does it): registering again must install the engine again. In a
// child process: shutting SQLite down is global.
TEST_F(VfsTest, RegisteringAfterAShutdownInstallsTheEngineAgain) {
  EXPECT_EQ(InChild([] {
              if (crsync_vfs_register(nullptr, 1) != SQLITE_OK) return 1;
              if (sqlite3_shutdown() != SQLITE_OK || sqlite3_initialize() != SQLITE_OK) return 2;
              if (crsync_vfs_register(nullptr, 1) != SQLITE_OK) return 3;
              if (sqlite3_vfs_find(nullptr) != sqlite3_vfs_find(CRSYNC_VFS_NAME)) return 4;
              sqlite3* db = nullptr;
              if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 5;
              int rc = sqlite3_exec(db, "SELECT crsql_site_id()", nullptr, nullptr, nullptr);
              sqlite3_close(db);
              return rc == SQLITE_OK ? 0 : 6;
            }),
            0);
}

// Once the default, a later call with make_default = 0 (as `.load
// libcrsync` makes) must not quietly demote it: connections opened after
// would bypass the shim. In a child process: the default VFS is global.
TEST_F(VfsTest, ALaterRegisterWithoutDefaultKeepsItTheDefault) {
  EXPECT_EQ(InChild([] {
              if (crsync_vfs_register(nullptr, 1) != SQLITE_OK) return 1;
              if (sqlite3_vfs_find(nullptr) != sqlite3_vfs_find(CRSYNC_VFS_NAME)) return 2;
              if (crsync_vfs_register(nullptr, 0) != SQLITE_OK) return 3;
              return sqlite3_vfs_find(nullptr) == sqlite3_vfs_find(CRSYNC_VFS_NAME) ? 0 : 4;
            }),
            0);
}

// An application may unregister the VFS; registering again must list it
// again, not answer SQLITE_OK and leave it missing. In a child process:
// the VFS list is global.
TEST_F(VfsTest, RegisteringAfterAnUnregisterListsItAgain) {
  EXPECT_EQ(InChild([] {
              if (crsync_vfs_register(nullptr, 0) != SQLITE_OK) return 1;
              if (sqlite3_vfs_unregister(sqlite3_vfs_find(CRSYNC_VFS_NAME)) != SQLITE_OK) return 2;
              if (sqlite3_vfs_find(CRSYNC_VFS_NAME) != nullptr) return 3;
              sqlite3_vfs* const before = sqlite3_vfs_find(nullptr);
              if (crsync_vfs_register(nullptr, 0) != SQLITE_OK) return 4;
              if (sqlite3_vfs_find(CRSYNC_VFS_NAME) == nullptr) return 5;
              if (sqlite3_vfs_find(nullptr) != before) return 6;  // not made the default
              sqlite3* db = nullptr;
              int rc = sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, CRSYNC_VFS_NAME);
              sqlite3_close(db);
              return rc == SQLITE_OK ? 0 : 7;
            }),
            0);
}

// The side file is shared with other processes (the app, the sidecar):
// like SQLite's -wal and -shm it takes the database file's permissions
// (whatever the umask), and its bytes are allocated, so the writes through
// its mapping cannot fault on a full disk.
TEST_F(VfsTest, TheSideFileTakesTheDatabasesModeAndIsAllocated) {
  TempPath path;
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "CREATE TABLE t (x)"));
  }
  std::remove((path.str() + "-crsync").c_str());
  ASSERT_EQ(chmod(path.str().c_str(), 0660), 0);
  mode_t old_umask = umask(077);
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (1)"));
  }
  umask(old_umask);
  struct stat st;
  ASSERT_EQ(stat((path.str() + "-crsync").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_GE(st.st_size, 24);
  EXPECT_GT(st.st_blocks, 0) << "a sparse side file";
}

TEST_F(VfsTest, CountsEveryCommitExactlyInEachJournalModeFromAnotherProcess) {
  for (const char* mode : {"WAL", "DELETE", "TRUNCATE", "PERSIST"}) {
    SCOPED_TRACE(mode);
    TempPath path;
    {
      DbPtr db = OpenShim(path.str());
      ASSERT_OK(Exec(db.get(), std::string("PRAGMA journal_mode = ") + mode +
                                   "; CREATE TABLE t (id PRIMARY KEY, v); "
                                   "SELECT crsql_as_crr('t');"));
    }
    uint64_t before = Counter(path.str());
    const int kCommits = 25;
    int rc = InChild([&] {
      DbPtr db = OpenShim(path.str());
      for (int i = 0; i < kCommits; ++i) {
        if (!Exec(db.get(), "INSERT INTO t VALUES (" + std::to_string(i) + ", 'x')").ok()) return 1;
        // Read-only work and rollbacks in between must not count.
        if (!Exec(db.get(), "SELECT count(*) FROM t; SELECT * FROM crsql_changes;").ok()) return 2;
        if (!Exec(db.get(), "BEGIN; INSERT INTO t VALUES (-1, 'gone'); ROLLBACK;").ok()) return 3;
      }
      return 0;
    });
    ASSERT_EQ(rc, 0);
    EXPECT_EQ(Counter(path.str()) - before, static_cast<uint64_t>(kCommits));
  }
}

TEST_F(VfsTest, ConcurrentProcessesAndConnectionsMissNoCommit) {
  TempPath path;
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "PRAGMA journal_mode = WAL; CREATE TABLE t (id PRIMARY KEY, v);"
                             "SELECT crsql_as_crr('t');"));
  }
  uint64_t before = Counter(path.str());
  const int kProcs = 3, kConns = 2, kCommits = 30;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<DbPtr> conns;
      for (int c = 0; c < kConns; ++c) conns.push_back(OpenShim(path.str()));
      for (int i = 0; i < kCommits; ++i) {
        for (int c = 0; c < kConns; ++c) {
          int id = ((p * kConns + c) * kCommits) + i;
          if (!Exec(conns[c].get(), "INSERT INTO t VALUES (" + std::to_string(id) + ", 1)").ok())
            _exit(1);
        }
      }
      conns.clear();
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(Counter(path.str()) - before, static_cast<uint64_t>(kProcs * kConns * kCommits));
}

// When the signal comes, the commit is readable by another connection (a
// watcher need not wait on a lock): in rollback-journal modes SQLite
// announces the commit while it still holds EXCLUSIVE, so the signal waits
// for the lock to drop. Under locking_mode=EXCLUSIVE the lock stays: each
// commit is still counted at once.
TEST_F(VfsTest, ASignalledCommitIsReadableByAnotherConnection) {
  for (const char* mode : {"WAL", "DELETE", "TRUNCATE", "PERSIST", "MEMORY"}) {
    SCOPED_TRACE(mode);
    TempPath path;
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), std::string("PRAGMA journal_mode = ") + mode + "; CREATE TABLE t (x)"));
    DbPtr reader;
    ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READWRITE, nullptr, &reader));  // no busy timeout
    struct Seen {
      sqlite3* reader;
      std::vector<std::string> counts;
    } seen{reader.get(), {}};
    crsync_vfs_on_commit(+[](void* ctx, const char*, sqlite3_uint64) {
      auto* s = static_cast<Seen*>(ctx);
      sqlite3_stmt* st = nullptr;
      int rc = sqlite3_prepare_v2(s->reader, "SELECT count(*) FROM t", -1, &st, nullptr);
      if (rc == SQLITE_OK) rc = sqlite3_step(st);
      s->counts.push_back(rc == SQLITE_ROW ? std::to_string(sqlite3_column_int(st, 0))
                                           : sqlite3_errstr(rc));
      sqlite3_finalize(st);
    }, &seen);
    for (int i = 0; i < 3; ++i) ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (1)"));
    crsync_vfs_on_commit(nullptr, nullptr);
    EXPECT_EQ(seen.counts, (std::vector<std::string>{"1", "2", "3"}));
  }
  TempPath path;
  DbPtr db = OpenShim(path.str());
  ASSERT_OK(Exec(db.get(), "PRAGMA locking_mode = EXCLUSIVE; CREATE TABLE t (x)"));
  for (int i = 0; i < 3; ++i) {
    const uint64_t before = Counter(path.str());
    ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (1)"));
    EXPECT_EQ(Counter(path.str()), before + 1);
  }
  // Exclusive mode the shim is not told of (the pragma goes to main only,
  // not to a database attached after it): no commit is lost or merged;
  // each is signalled at the latest by the next call on the file, the last
  // one when the connection closes.
  TempPath other;
  ASSERT_OK(Exec(db.get(), "ATTACH '" + other.str() + "' AS b; CREATE TABLE b.u (x)"));
  for (int i = 0; i < 3; ++i) ASSERT_OK(Exec(db.get(), "INSERT INTO b.u VALUES (1)"));
  EXPECT_GE(Counter(other.str()), 3u);  // of 4 commits on b
  db.reset();
  EXPECT_EQ(Counter(other.str()), 4u);
}

// A database that was never used with crsync, in a directory the user
// cannot write (no journal can be created): it opens, reads and, with
// journal_mode=MEMORY, takes writes, as it does without crsync; the
// engine's setup write failing used to fail every open ("automatic
// extension loading failed"). In a child process that drops root, which
// writes anywhere.
TEST_F(VfsTest, ANewDatabaseInAReadOnlyDirectoryStillOpens) {
  char tmpl[] = "/tmp/crsync-rodir-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/app.db";
  int rc = InChild([&] {
    sqlite3_reset_auto_extension();  // a plain SQLite database, no crsync tables
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return 1;
    int e = sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    if (e != SQLITE_OK || chmod(path.c_str(), 0666) != 0 || chmod(dir.c_str(), 0555) != 0) return 2;
    if (crsync_vfs_register(nullptr, 1) != SQLITE_OK) return 3;
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) return 4;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      std::fprintf(stderr, "open: %s\n", sqlite3_errmsg(db));
      return 5;
    }
    e = sqlite3_exec(db, "SELECT count(*) FROM t; PRAGMA journal_mode = MEMORY; "
                         "INSERT INTO t VALUES (2)", nullptr, nullptr, nullptr);
    if (e != SQLITE_OK) std::fprintf(stderr, "use: %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    return e == SQLITE_OK ? 0 : 6;
  });
  chmod(dir.c_str(), 0755);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(rc, 0);
}

// A process blocked in libuv on the side file wakes for every commit.
TEST_F(VfsTest, LibuvWatcherWakesOnEachCommit) {
  TempPath path;
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "PRAGMA journal_mode = WAL; CREATE TABLE t (a);"));
  }
  const int kCommits = 10;
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t writer = fork();
  if (writer == 0) {
    char c;
    if (read(go[0], &c, 1) != 1) _exit(1);
    DbPtr db = OpenShim(path.str());
    for (int i = 0; i < kCommits; ++i) {
      if (!Exec(db.get(), "INSERT INTO t VALUES (1)").ok()) _exit(2);
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
    _exit(0);
  }
  // A failed ASSERT below must not leave the writer waiting on `go`.
  struct Reap {
    pid_t pid;
    int fds[2];
    ~Reap() {
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
      for (int fd : fds) close(fd);
    }
  } reap{writer, {go[0], go[1]}};
  ASSERT_GT(writer, 0);
  struct Watch {
    std::string db;
    uint64_t start = 0, last = 0;
    int wakeups = 0;
    uv_fs_event_t event;
    uv_timer_t deadline;
  } w;
  w.db = path.str();
  sqlite3_uint64 start = 0;
  ASSERT_EQ(crsync_commit_counter_rearm(path.str().c_str(), &start), SQLITE_OK);  // arm
  w.start = w.last = start;
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  w.event.data = &w;
  w.deadline.data = &w;
  ASSERT_EQ(uv_fs_event_init(&loop, &w.event), 0);
  ASSERT_EQ(uv_fs_event_start(&w.event, +[](uv_fs_event_t* h, const char*, int, int) {
    auto* w = static_cast<Watch*>(h->data);
    ++w->wakeups;
    sqlite3_uint64 v = 0;
    crsync_commit_counter_rearm(w->db.c_str(), &v);  // re-arm, then read
    w->last = v;
    if (v - w->start >= kCommits) {
      uv_fs_event_stop(h);
      uv_timer_stop(&w->deadline);
    }
  }, (path.str() + "-crsync").c_str(), 0), 0);
  ASSERT_EQ(uv_timer_init(&loop, &w.deadline), 0);
  ASSERT_EQ(uv_timer_start(&w.deadline, +[](uv_timer_t* t) {
    auto* w = static_cast<Watch*>(t->data);
    uv_fs_event_stop(&w->event);  // bounded: give up after 10 s
  }, 10000, 0), 0);
  ASSERT_EQ(write(go[1], "g", 1), 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close(reinterpret_cast<uv_handle_t*>(&w.event), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&w.deadline), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  int status = 0;
  waitpid(writer, &status, 0);
  reap.pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(w.last - w.start, static_cast<uint64_t>(kCommits));
  EXPECT_GE(w.wakeups, kCommits / 2);  // inotify may coalesce back-to-back events
}

// A side file of the right size but sparse (made by `truncate -s`, or a
// sparse copy) is allocated at open all the same: a write through the
// mapping into a hole could fault on a full disk.
TEST_F(VfsTest, ASparseSideFileIsAllocatedAtOpen) {
  TempPath path;
  const std::string side = path.str() + "-crsync";
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "CREATE TABLE t (a)"));
  }
  ASSERT_EQ(std::remove(side.c_str()), 0);
  {
    FILE* f = std::fopen(side.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  ASSERT_EQ(truncate(side.c_str(), 24), 0);
  struct stat st;
  ASSERT_EQ(stat(side.c_str(), &st), 0);
  ASSERT_EQ(st.st_blocks, 0) << "the file system made no hole";
  const std::string p = path.str();
  EXPECT_EQ(InChild([&] {
              DbPtr db = OpenShim(p);  // opened, not yet written through
              return Exec(db.get(), "SELECT count(*) FROM t").ok() ? 0 : 1;
            }),
            0);
  ASSERT_EQ(stat(side.c_str(), &st), 0);
  EXPECT_GT(st.st_blocks, 0) << "still sparse";
}

// Opening a connection is not a commit: it must not wake the watchers
// (Linux reports every fallocate of the side file as a modification, even
// one that changes nothing). A commit then does. The connections are opened
// in child processes, each the first of its process on this file.
TEST_F(VfsTest, OpeningAConnectionWakesNoWatcher) {
  TempPath path;
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "PRAGMA journal_mode = WAL; CREATE TABLE t (a);"));
  }
  sqlite3_uint64 armed = 0;
  ASSERT_EQ(crsync_commit_counter_rearm(path.str().c_str(), &armed), SQLITE_OK);
  struct Fd {
    int fd;
    ~Fd() { close(fd); }
  } in{inotify_init1(IN_NONBLOCK | IN_CLOEXEC)};
  ASSERT_GE(in.fd, 0);
  ASSERT_GE(inotify_add_watch(in.fd, (path.str() + "-crsync").c_str(), IN_MODIFY), 0);
  const std::string p = path.str();
  auto events = [&] {
    char buf[4096];
    int n = 0;
    for (ssize_t r; (r = read(in.fd, buf, sizeof buf)) > 0;) {
      for (ssize_t off = 0; off < r; ++n) {
        off += static_cast<ssize_t>(sizeof(inotify_event) +
                                    reinterpret_cast<inotify_event*>(buf + off)->len);
      }
    }
    return n;
  };
  EXPECT_EQ(InChild([&] {
              DbPtr db = OpenShim(p);
              return Exec(db.get(), "SELECT count(*) FROM t").ok() ? 0 : 1;
            }),
            0);
  EXPECT_EQ(events(), 0) << "an open woke the watchers";
  EXPECT_EQ(InChild([&] {
              DbPtr db = OpenShim(p);
              return Exec(db.get(), "INSERT INTO t VALUES (1)").ok() ? 0 : 1;
            }),
            0);
  EXPECT_GE(events(), 1) << "a commit woke nobody";
}

// Without a watcher re-arming it, commits write the touch byte once: the
// signal costs no syscall when nobody listens, and the counter stays exact.
// A writer turned away by the write lock is counted (for sidecars to step
// aside), in WAL and rollback-journal mode; readers and successful writers
// are not.
TEST_F(VfsTest, WritersThatFindTheLockTakenAreCounted) {
  for (const char* mode : {"WAL", "DELETE"}) {
    SCOPED_TRACE(mode);
    TempPath path;
    DbPtr a = OpenShim(path.str()), b = OpenShim(path.str());
    ASSERT_OK(Exec(a.get(), std::string("PRAGMA journal_mode = ") + mode +
                                "; CREATE TABLE t (x); INSERT INTO t VALUES (1);"));
    sqlite3_uint64 before = 0, after = 0;
    ASSERT_EQ(crsync_writer_waits(path.str().c_str(), &before), SQLITE_OK);
    ASSERT_OK(Exec(b.get(), "SELECT count(*) FROM t"));  // a reader: not counted
    ASSERT_OK(Exec(a.get(), "BEGIN IMMEDIATE; INSERT INTO t VALUES (2)"));
    ASSERT_EQ(crsync_writer_waits(path.str().c_str(), &after), SQLITE_OK);
    EXPECT_EQ(after, before);
    Status busy = Exec(b.get(), "BEGIN IMMEDIATE");
    EXPECT_FALSE(busy.ok());
    ASSERT_EQ(crsync_writer_waits(path.str().c_str(), &after), SQLITE_OK);
    EXPECT_GE(after, before + 1);
    ASSERT_OK(Exec(a.get(), "COMMIT"));
    ASSERT_OK(Exec(b.get(), "BEGIN IMMEDIATE; INSERT INTO t VALUES (3); COMMIT"));
  }
  // In WAL mode a closing connection tries for EXCLUSIVE to see whether it
  // is the last one; with another connection open that is refused, and it
  // is not a writer waiting (a sidecar would pause its merges for nothing).
  {
    TempPath path;
    DbPtr keep = OpenShim(path.str());
    ASSERT_OK(Exec(keep.get(), "PRAGMA journal_mode = WAL; CREATE TABLE t (x);"));
    sqlite3_uint64 before = 0, after = 0;
    ASSERT_EQ(crsync_writer_waits(path.str().c_str(), &before), SQLITE_OK);
    for (int i = 0; i < 3; ++i) {
      DbPtr reader = OpenShim(path.str());
      ASSERT_OK(Exec(reader.get(), "SELECT count(*) FROM t"));
    }
    ASSERT_EQ(crsync_writer_waits(path.str().c_str(), &after), SQLITE_OK);
    EXPECT_EQ(after, before);
  }
  sqlite3_uint64 none = 7;
  EXPECT_EQ(crsync_writer_waits("/nonexistent/dir/x.db", &none), SQLITE_OK);
  EXPECT_EQ(none, 0u);
}

TEST_F(VfsTest, UnarmedSignalWritesTheWakeByteOnce) {
  TempPath path;
  DbPtr db = OpenShim(path.str());
  ASSERT_OK(Exec(db.get(), "CREATE TABLE t (a)"));
  sqlite3_uint64 armed = 0;
  ASSERT_EQ(crsync_commit_counter_rearm(path.str().c_str(), &armed), SQLITE_OK);
  for (int i = 0; i < 20; ++i) ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (1)"));
  EXPECT_EQ(Counter(path.str()), armed + 20);
  // Exactly one wake-up is pending; re-arming clears it, the next commit
  // raises it again.
  FILE* f = fopen((path.str() + "-crsync").c_str(), "rb");
  ASSERT_NE(f, nullptr);
  unsigned char bytes[16] = {};
  ASSERT_EQ(fread(bytes, 1, 16, f), 16u);
  fclose(f);
  uint32_t flag;
  std::memcpy(&flag, bytes + 8, 4);
  EXPECT_EQ(flag, 1u);
  ASSERT_EQ(crsync_commit_counter_rearm(path.str().c_str(), &armed), SQLITE_OK);
  EXPECT_EQ(armed, Counter(path.str()));
}

TEST_F(VfsTest, UnwritableSideFileLogsOnceAndDatabaseStillWorks) {
  TempPath path;
  // A directory where the side file should be: open() cannot create it,
  // whatever our privileges.
  ASSERT_EQ(mkdir((path.str() + "-crsync").c_str(), 0755), 0);
  TakeSqliteLog();
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "CREATE TABLE t (id PRIMARY KEY, v); SELECT crsql_as_crr('t');"
                             "INSERT INTO t VALUES (1, 2);"));
    TestDb check(path.str());
    EXPECT_EQ(check.One("SELECT count(*) FROM crsql_changes"), "1");
  }
  rmdir((path.str() + "-crsync").c_str());
  int mentions = 0;
  for (const auto& m : TakeSqliteLog()) mentions += m.find("no commit signal") != std::string::npos;
  EXPECT_EQ(mentions, 1);
}

// A side file that could not be made at open (here a directory in its
// place; or no descriptor left, a full disk) is tried again, once per check
// interval, by the connections still open: a long-lived one (a pool) would
// otherwise never signal again.
TEST_F(VfsTest, ASideFileThatCouldNotBeMadeIsTriedAgain) {
  TempPath path;
  const std::string p = path.str(), side = path.str() + "-crsync";
  ASSERT_EQ(mkdir(side.c_str(), 0755), 0);
  DbPtr db = OpenShim(p);
  ASSERT_OK(Exec(db.get(), "CREATE TABLE t (x); INSERT INTO t VALUES (1)"));
  ASSERT_EQ(rmdir(side.c_str()), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(CommitSignal::kCheckIntervalMs + 100));
  ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)"));
  struct stat st;
  ASSERT_EQ(stat(side.c_str(), &st), 0) << "not tried again";
  EXPECT_EQ(Counter(p), 2u);
}

// A read-only connection never commits: it makes no side file (one made as
// its own user could shut the database owner's commits out of it).
TEST_F(VfsTest, AReadOnlyConnectionMakesNoSideFile) {
  TempPath path;
  const std::string side = path.str() + "-crsync";
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "CREATE TABLE t (x); INSERT INTO t VALUES (1)"));
  }
  ASSERT_EQ(std::remove(side.c_str()), 0);
  for (const std::string how : {"ro flag", "mode=ro", "immutable=1"}) {
    DbPtr ro;
    if (how == "ro flag") {
      ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READONLY, CRSYNC_VFS_NAME, &ro));
    } else {
      ASSERT_OK(OpenDb("file:" + path.str() + "?" + how, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI,
                       CRSYNC_VFS_NAME, &ro));
    }
    ASSERT_OK(Exec(ro.get(), "SELECT * FROM t"));
    struct stat st;
    EXPECT_NE(stat(side.c_str(), &st), 0) << how << " made the side file";
  }
  DbPtr rw = OpenShim(path.str());
  ASSERT_OK(Exec(rw.get(), "INSERT INTO t VALUES (2)"));
  EXPECT_EQ(Counter(path.str()), 1u);
}

// The side file is named after the path SQLite resolves; the counter
// functions given the path an application opened (through a symlink)
// find the same file.
TEST_F(VfsTest, CountersReadThroughASymlinkedPath) {
  TempPath path;
  const std::string link = path.str() + ".link";
  {
    DbPtr db = OpenShim(path.str());
    ASSERT_OK(Exec(db.get(), "CREATE TABLE t (x)"));
  }
  ASSERT_EQ(symlink(path.str().c_str(), link.c_str()), 0);
  {
    DbPtr db = OpenShim(link);
    ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)"));
  }
  const uint64_t real = Counter(path.str());
  EXPECT_GE(real, 3u);
  EXPECT_EQ(Counter(link), real);
  sqlite3_uint64 v = 0, w = 0;
  EXPECT_EQ(crsync_commit_counter_rearm(link.c_str(), &v), SQLITE_OK);
  EXPECT_EQ(v, real);
  EXPECT_EQ(crsync_writer_waits(link.c_str(), &w), SQLITE_OK);
  std::remove(link.c_str());
}

// The readers' contract at its edges: NULL arguments are refused, a side
// file not sized yet (short) counts nothing, for each reader alike.
TEST_F(VfsTest, CounterReadersRefuseNullAndReadAShortSideFileAsZero) {
  TempPath path;
  const std::string p = path.str(), side = path.str() + "-crsync";
  using Reader = int (*)(const char*, sqlite3_uint64*);
  const Reader readers[] = {&crsync_commit_counter, &crsync_commit_counter_rearm, &crsync_writer_waits};
  sqlite3_uint64 v = 7;
  for (Reader read : readers) {
    EXPECT_EQ(read(p.c_str(), nullptr), SQLITE_MISUSE);
    EXPECT_EQ(read(nullptr, &v), SQLITE_MISUSE);
    EXPECT_EQ(read("", &v), SQLITE_MISUSE);  // not ./-crsync
  }
  FILE* f = fopen(side.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(fwrite("\1\2\3", 1, 3, f), 3u);  // a VFS is still sizing it
  fclose(f);
  for (Reader read : readers) {
    v = 7;
    EXPECT_EQ(read(p.c_str(), &v), SQLITE_OK);
    EXPECT_EQ(v, 0u);
  }
}

// The side file deleted while a connection is open (its commits would go
// on counting into a file nobody can watch) is made again at a commit
// once the check interval passed (1 s); one cut short by someone (writing
// through the mapping past its end raises SIGBUS) is restored to its size
// first. The latter in a child
// process: the old code died there.
TEST_F(VfsTest, ASideFileDeletedOrCutShortWhileOpenIsRepaired) {
  TempPath path;
  const std::string p = path.str(), side = path.str() + "-crsync";
  const auto interval = std::chrono::milliseconds(CommitSignal::kCheckIntervalMs + 100);
  DbPtr db = OpenShim(p);
  ASSERT_OK(Exec(db.get(), "CREATE TABLE t (x); INSERT INTO t VALUES (1)"));
  ASSERT_EQ(std::remove(side.c_str()), 0);
  std::this_thread::sleep_for(interval);  // the file is looked at once per interval
  ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)"));
  struct stat st;
  ASSERT_EQ(stat(side.c_str(), &st), 0) << "the side file was not made again";
  EXPECT_EQ(Counter(p), 2u);
  // Renamed away (it keeps a link): also noticed, by its inode.
  ASSERT_EQ(std::rename(side.c_str(), (side + ".old").c_str()), 0);
  std::this_thread::sleep_for(interval);
  ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (6)"));
  EXPECT_EQ(stat(side.c_str(), &st), 0) << "a side file renamed away was not replaced";
  EXPECT_EQ(Counter(p), 1u);
  std::remove((side + ".old").c_str());
  EXPECT_EQ(InChild([&] {
              DbPtr own = OpenShim(p);
              if (!Exec(own.get(), "INSERT INTO t VALUES (4)").ok()) return 1;
              if (truncate(side.c_str(), 0) != 0) return 2;
              std::this_thread::sleep_for(interval);
              if (!Exec(own.get(), "INSERT INTO t VALUES (5)").ok()) return 3;
              sqlite3_uint64 v = 0;
              return crsync_commit_counter(p.c_str(), &v) == SQLITE_OK && v == 1 ? 0 : 4;
            }),
            0);
}

// Over a base VFS whose files have no shared memory (unix-none: version 3
// io methods with xShmMap NULL) the shim must not offer xShmMap either:
// SQLite then refuses WAL as it does without the shim, instead of calling
// through a null pointer. Run in a fresh process (this one registered the
// shim over the default VFS already): the test binary itself, with only
// the child test selected.
TEST(VfsOverUnixNoneTest, Child) {
  const char* path = std::getenv("CRSYNC_VFS_UNIX_NONE_DB");
  if (!path) GTEST_SKIP() << "runs only as WalIsRefusedAsByTheBaseVfs's child";
  ASSERT_EQ(crsync_vfs_register("unix-none", 0), SQLITE_OK);
  DbPtr db;
  ASSERT_OK(OpenDb(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, CRSYNC_VFS_NAME, &db));
  ASSERT_OK(Exec(db.get(), "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);"));
  StmtPtr st;
  ASSERT_OK(Prepare(db.get(), "SELECT (SELECT journal_mode FROM pragma_journal_mode), count(*) FROM t", &st));
  ASSERT_EQ(sqlite3_step(st.get()), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0)), "delete");
  EXPECT_EQ(sqlite3_column_int(st.get(), 1), 1);
}

TEST(VfsOverUnixNoneTest, WalIsRefusedAsByTheBaseVfs) {
  TempPath path;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string run = "CRSYNC_VFS_UNIX_NONE_DB='" + path.str() + "' '" + self +
                          "' --gtest_filter=VfsOverUnixNoneTest.Child 2>&1";
  FILE* child = popen(run.c_str(), "r");
  ASSERT_NE(child, nullptr);
  std::string output;
  char buf[512];
  for (size_t n; (n = fread(buf, 1, sizeof buf, child)) > 0;) output.append(buf, n);
  int status = pclose(child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died (signal " << WTERMSIG(status) << "):\n" << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  EXPECT_THAT(output, HasSubstr("[  PASSED  ] 1 test"));
}

TEST_F(VfsTest, OrdinarySqliteWorkForwardsCorrectly) {
  for (const char* mode : {"WAL", "DELETE"}) {
    SCOPED_TRACE(mode);
    TempPath path;
    std::vector<DbPtr> conns;
    for (int i = 0; i < 8; ++i) conns.push_back(OpenShim(path.str()));
    sqlite3* db = conns[0].get();
    ASSERT_OK(Exec(db, std::string("PRAGMA journal_mode = ") + mode +
                           "; CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB);"
                           "CREATE INDEX big_len ON big(length(b));"));
    // Large blobs (overflow pages, cache spills) and many connections.
    ASSERT_OK(Exec(db, "PRAGMA cache_size = 10; BEGIN;"
                       "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) "
                       "INSERT INTO big SELECT i, randomblob(250000) FROM n; COMMIT;"));
    for (auto& c : conns) {
      StmtPtr st;
      ASSERT_OK(Prepare(c.get(), "SELECT count(*), sum(length(b)) FROM big", &st));
      ASSERT_EQ(sqlite3_step(st.get()), SQLITE_ROW);
      EXPECT_EQ(sqlite3_column_int64(st.get(), 0), 40);
      EXPECT_EQ(sqlite3_column_int64(st.get(), 1), 40 * 250000);
    }
    ASSERT_OK(Exec(db, "DELETE FROM big WHERE id % 2 = 0; VACUUM;"));
    StmtPtr check;
    ASSERT_OK(Prepare(conns[3].get(), "PRAGMA integrity_check", &check));
    ASSERT_EQ(sqlite3_step(check.get()), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(check.get(), 0)), "ok");
    char* name = nullptr;
    ASSERT_EQ(sqlite3_file_control(db, "main", SQLITE_FCNTL_VFSNAME, &name), SQLITE_OK);
    EXPECT_THAT(std::string(name ? name : ""), HasSubstr("crsync"));
    sqlite3_free(name);
    check.reset();
    conns.clear();
    if (std::string(mode) == "WAL") {
      struct stat st;
      EXPECT_NE(stat((path.str() + "-wal").c_str(), &st), 0);  // checkpointed and removed at close
    }
  }
}

// The "existing app" program: its only crsync line is the register call.
TEST_F(VfsTest, ExistingAppNeedsOnlyTheRegisterCall) {
  TempPath path;
  {
    TestDb db(path.str());
    db.Exec("CREATE TABLE notes (id PRIMARY KEY, body); SELECT crsql_as_crr('notes');");
  }
  auto run = [&](const char* how) {
    std::string cmd = std::string(EXISTING_APP) + " " + path.str() + " " + how + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[256];
    while (p && fgets(buf, sizeof buf, p)) out += buf;
    int status = p ? pclose(p) : -1;
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
  };
  auto [rc, out] = run("register");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "changes: 1\n");
  EXPECT_EQ(Counter(path.str()) > 0, true);
  auto [rc2, out2] = run("plain");
  EXPECT_EQ(rc2, 1) << out2;
  EXPECT_THAT(out2, HasSubstr("no such function: crsync_after_insert"));
  TestDb db(path.str());
  EXPECT_EQ(db.One("SELECT count(*) FROM notes"), "1");  // the failed write left nothing
}

}  // namespace
}  // namespace crsync
