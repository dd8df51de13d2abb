#include "tools/crsyncd_demo.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "crsync/crsync.h"
#include "crsync/sqlite_handles.h"
#include "crsync/vfs.h"
#include "tools/demo_files.h"
#include "crsync/sidecar.h"

namespace crsync {
namespace {

using Clock = std::chrono::steady_clock;

// SIGINT / SIGTERM: the demo stops its apps and sidecars, removes what it
// made, and exits 128 + the signal. (Each sidecar would otherwise take the
// signal for itself and stop alone, leaving the apps writing.)
volatile sig_atomic_t g_signal = 0;

void OnSignal(int sig) { g_signal = sig; }

// Puts the previous SIGINT / SIGTERM dispositions back when it goes.
class DemoSignals {
 public:
  DemoSignals() {
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~DemoSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  DemoSignals(const DemoSignals&) = delete;
  DemoSignals& operator=(const DemoSignals&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Replica {
  std::string path;
  std::unique_ptr<Sidecar> sidecar;
  std::thread thread;
  std::atomic<int> port{0};
  std::atomic<bool> ready{false};
  std::atomic<int> written{0};
  std::atomic<bool> done{false};  // its app has ended
};

bool Query(sqlite3* db, const std::string& sql, int64_t* out) {
  StmtPtr st;
  if (!Prepare(db, sql, &st).ok() || sqlite3_step(st.get()) != SQLITE_ROW) return false;
  *out = sqlite3_column_int64(st.get(), 0);
  return true;
}

std::string Fingerprint(sqlite3* db) {
  StmtPtr st;
  if (!Prepare(db, "SELECT group_concat(id || ':' || quote(title) || ':' || quote(done), ',') "
                   "FROM (SELECT * FROM todo ORDER BY id)",
               &st)
           .ok() ||
      sqlite3_step(st.get()) != SQLITE_ROW) {
    return "?";
  }
  const unsigned char* t = sqlite3_column_text(st.get(), 0);
  return t ? reinterpret_cast<const char*>(t) : "";
}

}  // namespace

int RunDemo(const DemoOptions& o) {
  if (crsync_vfs_register(nullptr, 0) != SQLITE_OK) {
    std::fprintf(stderr, "demo: cannot register the crsync VFS\n");
    return 1;
  }
  std::string dir = o.dir;
  bool remove_dir = dir.empty();
  if (dir.empty()) {
    char tmpl[] = "/tmp/crsyncd-demo-XXXXXX";
    if (!mkdtemp(tmpl)) {
      std::perror("demo: cannot create a temporary directory");
      return 1;
    }
    dir = tmpl;
  }
  DemoSignals signals;
  int n = o.replicas < 2 ? 2 : o.replicas;
  std::vector<std::string> paths;
  for (int i = 0; i < n; ++i) paths.push_back(dir + "/replica" + std::to_string(i) + ".db");
  if (std::string err = PrepareDemoDir(dir, paths); !err.empty()) {
    std::fprintf(stderr, "crsyncd demo: %s\n", err.c_str());
    return 1;
  }
  std::printf("crsyncd demo: %d replicas on 127.0.0.1 (a hub and %d spoke%s), %d one-row "
              "transactions per app, in %s\n",
              n, n - 1, n == 2 ? "" : "s", o.writes_per_app, dir.c_str());
  std::vector<std::unique_ptr<Replica>> reps;
  for (int i = 0; i < n; ++i) {
    auto r = std::make_unique<Replica>();
    r->path = paths[i];
    DbPtr db;
    Status st = OpenDb(r->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, CRSYNC_VFS_NAME, &db);
    if (st.ok()) {
      st = Exec(db.get(), std::string(kMarkDemoDatabase) +
                              "PRAGMA journal_mode = WAL;"
                          "CREATE TABLE todo (id TEXT PRIMARY KEY NOT NULL, title, done DEFAULT 0);"
                          "SELECT crsql_as_crr('todo');");
    }
    if (!st.ok()) {
      std::fprintf(stderr, "demo: %s\n", st.ToString().c_str());
      return 1;
    }
    reps.push_back(std::move(r));
  }
  // Sidecars: replica 0 listens (the hub), the others dial it.
  for (int i = 0; i < n; ++i) {
    Replica* r = reps[i].get();
    SidecarOptions so;
    so.db_path = r->path;
    so.log_level = 0;
    so.pump_interval_ms = 500;
    so.handle_signals = false;  // the demo's: it stops them all together
    if (i == 0) {
      so.listen = "127.0.0.1:0";
      so.on_listening = [r](int port) { r->port = port; };
    } else {
      so.peers = {"127.0.0.1:" + std::to_string(reps[0]->port.load())};
    }
    so.on_ready = [r] { r->ready = true; };
    r->sidecar = std::make_unique<Sidecar>(so);
    r->thread = std::thread([r] {
      Status s = r->sidecar->Run();
      if (!s.ok()) std::fprintf(stderr, "demo: sidecar: %s\n", s.ToString().c_str());
    });
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!r->ready && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Apps: plain SQLite writes through the VFS, nothing else.
  Clock::time_point t0 = Clock::now();
  std::vector<std::thread> apps;
  for (int i = 0; i < n; ++i) {
    apps.emplace_back([&, i] {
      Replica* r = reps[i].get();
      struct Done {  // however the app ends
        Replica* r;
        ~Done() { r->done = true; }
      } done{r};
      DbPtr db;
      if (!OpenDb(r->path, SQLITE_OPEN_READWRITE, CRSYNC_VFS_NAME, &db).ok()) {
        std::fprintf(stderr, "demo: app %d cannot open %s\n", i, r->path.c_str());
        return;
      }
      sqlite3_busy_timeout(db.get(), 10000);
      std::mt19937 rng(static_cast<unsigned>(i * 7919 + 1));
      for (int k = 0; k < o.writes_per_app && !g_signal; ++k) {
        std::string id = std::string("r") + std::to_string(i) + "-" + std::to_string(k);
        std::string sql;
        if (k > 10 && rng() % 4 == 0) {  // touch a random earlier todo of any replica
          std::string other = std::string("r") + std::to_string(rng() % n) + "-" + std::to_string(rng() % k);
          sql = "UPDATE todo SET done = 1 - done WHERE id = '" + other + "'";
        } else {
          sql = "INSERT INTO todo (id, title) VALUES ('" + id + "', 'task " + std::to_string(k) +
                " from replica " + std::to_string(i) + "')";
        }
        Exec(db.get(), sql).IgnoreError();  // an UPDATE of a row not here yet is fine
        ++r->written;
        std::this_thread::sleep_for(std::chrono::microseconds(500 + rng() % 1500));
      }
    });
  }
  // Live progress until every app is done and all replicas hold the same rows.
  std::vector<DbPtr> readers(n);
  for (int i = 0; i < n; ++i) OpenDb(reps[i]->path, SQLITE_OPEN_READONLY, nullptr, &readers[i]).IgnoreError();
  bool converged = false;
  double converge_time = 0;
  const bool tty = isatty(1);
  const char* eol = tty ? "\r" : "\n";  // redraw one line on a terminal
  Clock::time_point last_print;
  // Convergence is due within 120 s of the apps' end, however long they
  // write (--writes); until then the wait is theirs.
  constexpr auto kSettle = std::chrono::seconds(120);
  auto deadline = Clock::time_point::max();
  while (Clock::now() < deadline && !g_signal) {
    std::string line, first;
    bool same = true;
    for (int i = 0; i < n; ++i) {
      int64_t rows = 0;
      Query(readers[i].get(), "SELECT count(*) FROM todo", &rows);
      line += "  replica" + std::to_string(i) + ": " + std::to_string(rows) + " todos";
      std::string fp = Fingerprint(readers[i].get());
      if (i == 0) first = fp;
      same &= fp == first;
    }
    if (apps.empty() && same) {
      converged = true;
      converge_time = Since(t0);
      std::printf("[%5.2fs]%s   \n", converge_time, line.c_str());
      break;
    }
    if (Since(last_print) > (tty ? 0.1 : 0.25)) {
      std::printf("[%5.2fs]%s   %s", Since(t0), line.c_str(), eol);
      std::fflush(stdout);
      last_print = Clock::now();
    }
    if (!apps.empty()) {
      bool finished = true;
      for (auto& r : reps) finished &= r->done.load();
      if (finished) {
        for (auto& a : apps) a.join();
        apps.clear();
        deadline = Clock::now() + kSettle;
        std::printf("%s  apps finished after %.2fs; waiting for the replicas to converge\n",
                    tty ? "\n" : "", Since(t0));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& a : apps) a.join();
  // Summary: what moved where.
  int64_t total_local = 0, total_merged = 0;
  for (int i = 0; i < n; ++i) {
    int64_t local = 0, merged = 0;
    Query(readers[i].get(), "SELECT count(*) FROM crsql_changes WHERE site_id IS NULL", &local);
    Query(readers[i].get(), "SELECT count(*) FROM crsql_changes WHERE site_id IS NOT NULL", &merged);
    total_local += local;
    total_merged += merged;
  }
  for (auto& r : reps) r->sidecar->Stop();
  for (auto& r : reps) r->thread.join();
  readers.clear();
  if (g_signal) {
    std::printf("\ninterrupted (%s): apps and sidecars stopped\n",
                g_signal == SIGINT ? "SIGINT" : "SIGTERM");
  } else if (converged) {
    std::printf("converged: %d replicas identical %.2fs after the first write; %lld changes "
                "written locally, %lld merged from peers\n",
                n, converge_time, static_cast<long long>(total_local),
                static_cast<long long>(total_merged));
  } else {
    std::printf("\nNOT converged within %lld s of the apps' end\n",
                static_cast<long long>(kSettle.count()));
  }
  if (remove_dir) {
    RemoveDemoDir(dir);
    std::printf("databases removed (--dir DIR keeps them)\n");
  } else {
    std::printf("databases kept in %s (try: crsyncd status --db %s/replica0.db)\n", dir.c_str(),
                dir.c_str());
  }
  if (g_signal) return 128 + g_signal;
  return converged ? 0 : 1;
}

}  // namespace crsync
