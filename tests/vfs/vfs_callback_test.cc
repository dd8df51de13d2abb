// The shim's in-process commit callback (crsync_vfs_on_commit): what it is
// told, and that setting, replacing and clearing it from callbacks and other
// threads neither deadlocks nor holds up other commits.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/vfs/vfs_fixture.h"

namespace crsync {
namespace {

TEST_F(VfsTest, InProcessCallbackSeesPathAndSequence) {
  TempPath path;
  DbPtr db = OpenShim(path.str());
  struct Seen {
    std::vector<uint64_t> seqs;
    std::string path;
  } seen;
  crsync_vfs_on_commit(+[](void* ctx, const char* p, sqlite3_uint64 seq) {
    auto* s = static_cast<Seen*>(ctx);
    s->seqs.push_back(seq);
    s->path = p;
  }, &seen);
  ASSERT_OK(Exec(db.get(), "CREATE TABLE t (a); INSERT INTO t VALUES (1); SELECT * FROM t;"));
  crsync_vfs_on_commit(nullptr, nullptr);
  ASSERT_OK(Exec(db.get(), "INSERT INTO t VALUES (2)"));
  ASSERT_EQ(seen.seqs.size(), 2u);
  EXPECT_EQ(seen.seqs[1], seen.seqs[0] + 1);
  EXPECT_EQ(seen.seqs[1], Counter(path.str()) - 1);
  EXPECT_EQ(std::filesystem::canonical(seen.path), std::filesystem::canonical(path.str()));
}

// A callback may unregister itself (a one-shot), on the committing thread.
// In a child process, under a watchdog: a deadlock must fail, not hang.
TEST_F(VfsTest, ACallbackMayUnregisterItself) {
  TempPath path;
  const std::string p = path.str();
  EXPECT_EQ(InChild([&] {
              alarm(10);  // a deadlock kills the child: the test fails
              static int calls = 0;
              crsync_vfs_on_commit(+[](void*, const char*, sqlite3_uint64) {
                ++calls;
                crsync_vfs_on_commit(nullptr, nullptr);
              }, nullptr);
              DbPtr db = OpenShim(p);
              if (!Exec(db.get(), "CREATE TABLE t (a); INSERT INTO t VALUES (1)").ok()) return 1;
              return calls == 1 ? 0 : 2;
            }),
            0);
}

// The callback holds no lock of crsync's: while one thread's callback (for
// db2) waits, another thread's commit of db1 (rollback-journal mode: it
// holds db1's lock until its callback returns) completes, and the first
// callback can then read db1. With callbacks serialized, db1's commit
// waited for the first callback, which waited for db1's lock: a stall, then
// SQLITE_BUSY. In a child process under a watchdog.
TEST_F(VfsTest, ACallbackDoesNotHoldUpOtherThreadsCommits) {
  TempPath p1, p2;
  const std::string db1_path = p1.str(), db2_path = p2.str();
  EXPECT_EQ(InChild([&] {
              alarm(20);
              DbPtr db1 = OpenShim(db1_path), db2 = OpenShim(db2_path), reader = OpenShim(db1_path);
              sqlite3_busy_timeout(reader.get(), 2000);
              if (!Exec(db1.get(), "PRAGMA journal_mode = DELETE; CREATE TABLE t (a)").ok() ||
                  !Exec(db2.get(), "PRAGMA journal_mode = DELETE; CREATE TABLE t (a)").ok()) {
                return 1;
              }
              struct Shared {
                std::string db2;
                sqlite3* reader;
                std::mutex mu;
                std::condition_variable cv;
                bool entered = false, b_done = false, b_done_in_time = false;
                int read_rc = -1;
                int rows = -1;
              } sh;
              sh.db2 = std::filesystem::canonical(db2_path).string();
              sh.reader = reader.get();
              crsync_vfs_on_commit(+[](void* ctx, const char* path, sqlite3_uint64) {
                auto* sh = static_cast<Shared*>(ctx);
                if (std::filesystem::canonical(path).string() != sh->db2) return;
                std::unique_lock<std::mutex> lock(sh->mu);
                sh->entered = true;
                sh->cv.notify_all();
                sh->b_done_in_time = sh->cv.wait_for(lock, std::chrono::seconds(5), [&] { return sh->b_done; });
                lock.unlock();
                sqlite3_stmt* st = nullptr;
                sh->read_rc = sqlite3_prepare_v2(sh->reader, "SELECT count(*) FROM t", -1, &st, nullptr);
                if (sh->read_rc == SQLITE_OK) {
                  sh->read_rc = sqlite3_step(st);
                  if (sh->read_rc == SQLITE_ROW) sh->rows = sqlite3_column_int(st, 0);
                }
                sqlite3_finalize(st);
              }, &sh);
              std::thread b([&] {
                {
                  std::unique_lock<std::mutex> lock(sh.mu);
                  sh.cv.wait(lock, [&] { return sh.entered; });
                }
                Status s = Exec(db1.get(), "INSERT INTO t VALUES (1)");
                std::lock_guard<std::mutex> lock(sh.mu);
                sh.b_done = s.ok();
                sh.cv.notify_all();
              });
              Status a = Exec(db2.get(), "INSERT INTO t VALUES (2)");
              b.join();
              crsync_vfs_on_commit(nullptr, nullptr);
              if (!a.ok()) return 2;
              if (!sh.b_done_in_time) return 3;  // db1's commit waited for db2's callback
              if (sh.read_rc != SQLITE_ROW || sh.rows != 1) return 4;
              return 0;
            }),
            0);
}

// Replacing the callback waits for other threads still running the old
// one, so its context may be freed when the call returns.
TEST_F(VfsTest, ReplacingTheCallbackWaitsForRunningOnes) {
  TempPath path;
  const std::string p = path.str();
  EXPECT_EQ(InChild([&] {
              alarm(20);
              struct Shared {
                std::mutex mu;
                std::condition_variable cv;
                bool entered = false, release = false;
              } sh;
              DbPtr db = OpenShim(p);  // opening commits (the engine's tables): before the callback
              crsync_vfs_on_commit(+[](void* ctx, const char*, sqlite3_uint64) {
                auto* sh = static_cast<Shared*>(ctx);
                std::unique_lock<std::mutex> lock(sh->mu);
                sh->entered = true;
                sh->cv.notify_all();
                sh->cv.wait(lock, [&] { return sh->release; });
              }, &sh);
              std::thread committer([&] { Exec(db.get(), "CREATE TABLE t (a)").IgnoreError(); });
              {
                std::unique_lock<std::mutex> lock(sh.mu);
                sh.cv.wait(lock, [&] { return sh.entered; });
              }
              std::atomic<bool> replaced{false};
              std::thread setter([&] {
                crsync_vfs_on_commit(nullptr, nullptr);
                replaced = true;
              });
              std::this_thread::sleep_for(std::chrono::milliseconds(200));
              const bool early = replaced;  // must still wait: the old callback runs
              {
                std::lock_guard<std::mutex> lock(sh.mu);
                sh.release = true;
                sh.cv.notify_all();
              }
              setter.join();
              committer.join();
              return early ? 1 : (replaced ? 0 : 2);
            }),
            0);
}

// A replacement waits only for calls of what it replaced: a call of the new
// callback that started meanwhile (other threads keep committing) must not
// keep it waiting. Here the new callback's call blocks until the
// replacement has returned; waiting for it too deadlocks (the watchdog).
TEST_F(VfsTest, ReplacingTheCallbackDoesNotWaitForCallsOfTheNewOne) {
  TempPath p1, p2;
  const std::string a = p1.str(), b = p2.str();
  EXPECT_EQ(InChild([&] {
              alarm(20);
              struct Gate {
                std::mutex mu;
                std::condition_variable cv;
                bool entered = false, release = false;
                // Only a gate's first call blocks; later ones pass.
                static void Run(void* ctx, const char*, sqlite3_uint64) {
                  auto* g = static_cast<Gate*>(ctx);
                  std::unique_lock<std::mutex> lock(g->mu);
                  if (g->entered) return;
                  g->entered = true;
                  g->cv.notify_all();
                  g->cv.wait(lock, [&] { return g->release; });
                }
                bool Entered() {
                  std::lock_guard<std::mutex> lock(mu);
                  return entered;
                }
                void AwaitEntered() {
                  std::unique_lock<std::mutex> lock(mu);
                  cv.wait(lock, [&] { return entered; });
                }
                void Release() {
                  std::lock_guard<std::mutex> lock(mu);
                  release = true;
                  cv.notify_all();
                }
              } old_gate, new_gate;
              DbPtr da = OpenShim(a), dbb = OpenShim(b);  // their setup commits come first
              crsync_vfs_on_commit(&Gate::Run, &old_gate);
              std::thread first([&] { Exec(da.get(), "CREATE TABLE t (a)").IgnoreError(); });
              old_gate.AwaitEntered();
              std::atomic<bool> replaced{false};
              std::thread setter([&] {
                crsync_vfs_on_commit(&Gate::Run, &new_gate);
                replaced = true;
              });
              // Once the new callback is in place (the setter installs it at
              // once, then waits), a commit on another thread runs it, and
              // blocks in it until the setter has returned. Commits before
              // that run the old one, which lets them pass: commit until
              // the new one is entered, however long the setter takes.
              std::thread second([&] {
                Exec(dbb.get(), "CREATE TABLE t (a)").IgnoreError();
                while (!new_gate.Entered()) {
                  Exec(dbb.get(), "INSERT INTO t VALUES (1)").IgnoreError();
                }
              });
              new_gate.AwaitEntered();
              old_gate.Release();
              setter.join();  // must return while the new callback still runs
              const bool ok = replaced;
              new_gate.Release();
              first.join();
              second.join();
              crsync_vfs_on_commit(nullptr, nullptr);
              return ok ? 0 : 1;
            }),
            0);
}

// Two threads' callbacks, running at once, each clear the callback (a
// one-shot): neither waits for the other. In a child under a watchdog.
TEST_F(VfsTest, CallbacksClearingTheCallbackAtOnceDoNotDeadlock) {
  TempPath p1, p2;
  const std::string a_path = p1.str(), b_path = p2.str();
  EXPECT_EQ(InChild([&] {
              alarm(20);
              DbPtr a = OpenShim(a_path), b = OpenShim(b_path);
              struct Shared {
                std::mutex mu;
                std::condition_variable cv;
                int inside = 0;
              } sh;
              crsync_vfs_on_commit(+[](void* ctx, const char*, sqlite3_uint64) {
                auto* sh = static_cast<Shared*>(ctx);
                {
                  std::unique_lock<std::mutex> lock(sh->mu);
                  ++sh->inside;
                  sh->cv.notify_all();
                  sh->cv.wait_for(lock, std::chrono::seconds(2), [&] { return sh->inside == 2; });
                }
                crsync_vfs_on_commit(nullptr, nullptr);
              }, &sh);
              Status sa, sb;
              std::thread ta([&] { sa = Exec(a.get(), "CREATE TABLE t (x)"); });
              std::thread tb([&] { sb = Exec(b.get(), "CREATE TABLE t (x)"); });
              ta.join();
              tb.join();
              if (!sa.ok() || !sb.ok()) return 1;
              return sh.inside == 2 ? 0 : 2;  // both ran, at once
            }),
            0);
}

}  // namespace
}  // namespace crsync
