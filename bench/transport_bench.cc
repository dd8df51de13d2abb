// Sidecar benchmarks (issue "The sidecar"), all on 127.0.0.1:
//   BM_Backlog          a 100k-row (300k-change) backlog from A committed on B
//                       through two sidecars, vs /applier: ChangeApplier alone
//                       merging the same transactions (goal >= 0.5x its rate);
//   BM_CommitToVisible  one-row transactions at a steady rate, commit on A to
//                       visible on B (p50 <= 2 ms, p99 <= 10 ms);
//   BM_Mesh4            4 nodes meshed, 10k one-row transactions spread over
//                       all of them: time until every node has every row;
//   BM_Backlog1M_procs  real crsyncd processes catching up 1M changes made of
//                       1k-row transactions while an app writes on the
//                       receiver: peak RSS of each crsyncd (goal < 64 MiB) and
//                       the app's p99 (goal <= 50 ms).
// Sidecars run in-process (crsync::Sidecar on its own thread) except in the
// last case. Times are measured by hand (UseManualTime): from the moment the
// work can start to the moment the receiver can read its result.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "crsync/engine.h"
#include "crsync/vfs.h"
#include "crsync/sidecar.h"

namespace crsync {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Polls `done` every `every` for at most `limit`; aborts the run on timeout
// (a benchmark that cannot finish must not report a number).
template <typename Pred>
void WaitFor(Pred done, const char* what, std::chrono::seconds limit = std::chrono::seconds(120),
             std::chrono::microseconds every = std::chrono::microseconds(200)) {
  auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) {
      std::fprintf(stderr, "bench: timed out waiting for %s\n", what);
      std::abort();
    }
    std::this_thread::sleep_for(every);
  }
}

// A second connection on a benchmark database, for reading what arrived.
class Reader {
 public:
  explicit Reader(const std::string& path) {
    BenchDb::Check(OpenDb(path, SQLITE_OPEN_READWRITE, nullptr, &db_));
    sqlite3_busy_timeout(db_.get(), 5000);
    BenchDb::Check(Prepare(db_.get(), "SELECT count(*) FROM items", &count_));
    BenchDb::Check(Prepare(db_.get(), "SELECT 1 FROM items WHERE id = ?1", &has_));
  }
  int64_t Count() {
    int64_t n = sqlite3_step(count_.get()) == SQLITE_ROW ? sqlite3_column_int64(count_.get(), 0) : -1;
    sqlite3_reset(count_.get());
    return n;
  }
  bool Has(int64_t id) {
    sqlite3_bind_int64(has_.get(), 1, id);
    bool found = sqlite3_step(has_.get()) == SQLITE_ROW;
    sqlite3_reset(has_.get());
    return found;
  }

 private:
  DbPtr db_;
  StmtPtr count_, has_;
};

// A crsync::Sidecar running on its own thread until destroyed.
class LiveSidecar {
 public:
  LiveSidecar(const std::string& db, bool listen, const std::vector<int>& peer_ports) {
    SidecarOptions o;
    o.db_path = db;
    o.listen = listen ? "127.0.0.1:0" : "";
    for (int p : peer_ports) o.peers.push_back("127.0.0.1:" + std::to_string(p));
    o.log_level = 0;
    o.on_listening = [this](int port) { port_ = port; };
    o.on_ready = [this] { ready_ = true; };
    sidecar_ = std::make_unique<Sidecar>(std::move(o));
    thread_ = std::thread([this] {
      Status s = sidecar_->Run();
      if (!s.ok()) std::fprintf(stderr, "bench: sidecar: %s\n", s.ToString().c_str());
      ended_ = true;
    });
    WaitFor([this] { return ready_.load() || ended_.load(); }, "a sidecar to start");
    if (ended_) std::abort();
  }
  ~LiveSidecar() {
    sidecar_->Stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  std::unique_ptr<Sidecar> sidecar_;
  std::thread thread_;
  std::atomic<int> port_{0};
  std::atomic<bool> ready_{false}, ended_{false};
};

bool RegisterVfs() { return crsync_vfs_register(nullptr, 0) == SQLITE_OK; }

// The items CRR, empty, on a connection that waits for the sidecar's own
// short write transactions (acks, cursors) as any app next to it must.
void SetUpShared(BenchDb& db) {
  sqlite3_busy_timeout(db.get(), 10000);
  SetUpItems(db, true, 0);
}

// Fills `db` (items CRR) with `rows` rows in transactions of `per_txn`.
void FillInTransactions(BenchDb& db, int rows, int per_txn) {
  for (int first = 0; first < rows; first += per_txn) {
    db.Exec("BEGIN");
    InsertItems(db, std::min(per_txn, rows - first), first);
    db.Exec("COMMIT");
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// --- throughput -------------------------------------------------------------

constexpr int kRowsPerTxn = 1000;

void BM_Backlog(benchmark::State& state, bool through_sidecars) {
  if (SkipForOtherExtension(state) || !RegisterVfs()) return;
  int rows = BenchRows(100000);
  int per_txn = std::min(kRowsPerTxn, std::max(1, rows / 10));
  for (auto _ : state) {
    BenchDb a(true, "backlog-a"), b(true, "backlog-b");
    SetUpShared(a);
    SetUpShared(b);
    FillInTransactions(a, rows, per_txn);
    double secs = 0;
    if (through_sidecars) {
      Reader seen(b.path());
      auto t0 = Clock::now();
      LiveSidecar sb(b.path(), true, {});
      LiveSidecar sa(a.path(), false, {sb.port()});
      // A cheap probe (the last row) before the full count: polling must not
      // take the CPU the sidecars need.
      WaitFor([&] { return seen.Has(rows - 1) && seen.Count() == rows; }, "the backlog on B",
              std::chrono::seconds(120), std::chrono::milliseconds(2));
      secs = Seconds(t0, Clock::now());
    } else {
      // The same transactions, read beforehand, merged one per SQLite
      // transaction as the sidecar does.
      std::unique_ptr<ChangeReader> reader;
      BenchDb::Check(ChangeReader::Open(a.get(), &reader));
      std::vector<std::vector<Change>> txns;
      for (int64_t after = 0;;) {
        std::vector<Change> t;
        int64_t v = 0;
        BenchDb::Check(reader->NextTransaction(after, OriginFilter{}, &t, &v));
        if (v == 0) break;
        txns.push_back(std::move(t));
        after = v;
      }
      std::unique_ptr<ChangeApplier> applier;
      BenchDb::Check(ChangeApplier::Open(b.get(), &applier));
      auto t0 = Clock::now();
      for (const auto& t : txns) BenchDb::Check(applier->Apply(t, -1));
      secs = Seconds(t0, Clock::now());
    }
    state.SetIterationTime(secs);
  }
  state.SetItemsProcessed(state.iterations() * rows * 3);  // changes
}
BENCHMARK_CAPTURE(BM_Backlog, applier, false)->UseManualTime()->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Backlog, sidecars, true)->UseManualTime()->Unit(benchmark::kMillisecond)
    ->Iterations(1);

// --- latency ----------------------------------------------------------------

void BM_CommitToVisible(benchmark::State& state) {
  if (SkipForOtherExtension(state) || !RegisterVfs()) return;
  int txns = std::max(20, BenchRows(100000) / 250);  // 400 at full size
  const auto period = std::chrono::milliseconds(5);  // 200 transactions/s
  std::vector<double> ms;
  for (auto _ : state) {
    BenchDb a(true, "latency-a", CRSYNC_VFS_NAME), b(true, "latency-b");
    SetUpShared(a);
    SetUpShared(b);
    Reader seen(b.path());
    LiveSidecar sb(b.path(), true, {});
    LiveSidecar sa(a.path(), false, {sb.port()});
    StmtPtr ins = a.Prep("INSERT INTO items VALUES (?1, 'x', 1, 1.0)");
    auto write = [&](int64_t id) {
      sqlite3_bind_int64(ins.get(), 1, id);
      BenchDb::Check(StepToEnd(a.get(), ins.get()));
    };
    write(-1);  // the peers are connected once this arrives
    WaitFor([&] { return seen.Has(-1); }, "the first row on B");
    auto next = Clock::now();
    for (int i = 0; i < txns; ++i) {
      std::this_thread::sleep_until(next);
      next += period;
      write(i);
      auto committed = Clock::now();
      WaitFor([&] { return seen.Has(i); }, "a row on B", std::chrono::seconds(10));
      ms.push_back(Seconds(committed, Clock::now()) * 1e3);
    }
    state.SetIterationTime(Percentile(ms, 0.5) / 1e3);
  }
  state.counters["p50_ms"] = Percentile(ms, 0.5);
  state.counters["p99_ms"] = Percentile(ms, 0.99);
  state.counters["max_ms"] = Percentile(ms, 1.0);
}
BENCHMARK(BM_CommitToVisible)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

// --- convergence ------------------------------------------------------------

void BM_Mesh4(benchmark::State& state) {
  if (SkipForOtherExtension(state) || !RegisterVfs()) return;
  constexpr int kNodes = 4;
  int txns = std::max(kNodes, BenchRows(100000) / 10);  // 10k at full size
  for (auto _ : state) {
    std::vector<std::unique_ptr<BenchDb>> dbs;
    std::vector<std::unique_ptr<Reader>> seen;
    std::vector<std::unique_ptr<LiveSidecar>> sidecars;
    std::vector<int> ports;
    for (int n = 0; n < kNodes; ++n) {
      std::string tag = "mesh-" + std::to_string(n);
      dbs.push_back(std::make_unique<BenchDb>(true, tag.c_str(), CRSYNC_VFS_NAME));
      SetUpShared(*dbs.back());
      seen.push_back(std::make_unique<Reader>(dbs.back()->path()));
      // Node n listens and dials every node before it: a full mesh.
      sidecars.push_back(std::make_unique<LiveSidecar>(dbs.back()->path(), true, ports));
      ports.push_back(sidecars.back()->port());
    }
    std::vector<int64_t> last_ids = {-1};  // each writer's last row, probed before counting
    auto all_have = [&](int64_t n) {
      for (auto& r : seen)
        for (int64_t id : last_ids)
          if (!r->Has(id)) return false;
      for (auto& r : seen)
        if (r->Count() != n) return false;
      return true;
    };
    dbs[0]->Exec("INSERT INTO items VALUES (-1, 'x', 1, 1.0)");
    WaitFor([&] { return all_have(1); }, "the mesh to connect");
    auto share = [&](int n) { return txns / kNodes + (n < txns % kNodes ? 1 : 0); };
    auto first = [&](int n) { return n * (txns / kNodes + 1); };
    for (int n = 0; n < kNodes; ++n) {
      if (share(n) > 0) last_ids.push_back(first(n) + share(n) - 1);
    }
    auto t0 = Clock::now();
    std::vector<std::thread> writers;
    for (int n = 0; n < kNodes; ++n) {
      writers.emplace_back([&, n] {
        InsertItems(*dbs[n], share(n), first(n));  // autocommit: one transaction per row
      });
    }
    for (auto& w : writers) w.join();
    WaitFor([&] { return all_have(txns + 1); }, "the mesh to converge");
    state.SetIterationTime(Seconds(t0, Clock::now()));
  }
  state.SetItemsProcessed(state.iterations() * txns);
}
BENCHMARK(BM_Mesh4)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

// --- memory and the app's latency, with real processes ------------------------

#ifdef CRSYNCD
// One crsyncd process (started with fork/exec, ended by pid).
class DaemonProcess {
 public:
  DaemonProcess(const std::string& db, bool listen, int peer_port) {
    int out[2];
    if (pipe(out) != 0) std::abort();
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      std::vector<std::string> args = {CRSYNCD, "run", "--db", db, "-q"};
      if (listen) args.insert(args.end(), {"--listen", "127.0.0.1:0"});
      if (peer_port) args.insert(args.end(), {"--peer", "127.0.0.1:" + std::to_string(peer_port)});
      std::vector<char*> argv;
      for (auto& s : args) argv.push_back(s.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    std::string text;
    pollfd p{out[0], POLLIN, 0};
    while (text.find("ready\n") == std::string::npos && poll(&p, 1, 10000) > 0) {
      char buf[64];
      ssize_t n = read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    close(out[0]);
    if (text.find("ready\n") == std::string::npos) {
      std::fprintf(stderr, "bench: crsyncd did not start: %s\n", text.c_str());
      std::abort();
    }
    if (listen) std::sscanf(text.c_str(), "listening %d", &port_);
  }
  ~DaemonProcess() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  int port() const { return port_; }
  // Peak resident set size (VmHWM) in MiB.
  double PeakRssMiB() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

void BM_Backlog1M_procs(benchmark::State& state) {
  if (SkipForOtherExtension(state) || !RegisterVfs()) return;
  int rows = BenchRows(100000) * 10 / 3;  // 333k rows x 3 columns = 1M changes at full size
  int per_txn = std::min(kRowsPerTxn, std::max(1, rows / 10));
  std::vector<double> app_ms;
  double rss_sender = 0, rss_receiver = 0;
  for (auto _ : state) {
    BenchDb a(true, "backlog1m-a"), b(true, "backlog1m-b", CRSYNC_VFS_NAME);
    SetUpShared(a);
    SetUpShared(b);
    // The app's own table, a CRR on both sides (peers with different CRR
    // schemas refuse to exchange anything).
    for (BenchDb* db : {&a, &b}) {
      db->Exec("CREATE TABLE app_log (id INTEGER PRIMARY KEY, t REAL); SELECT crsql_as_crr('app_log')");
    }
    FillInTransactions(a, rows, per_txn);
    Reader seen(b.path());
    auto t0 = Clock::now();
    DaemonProcess db_b(b.path(), true, 0);
    DaemonProcess db_a(a.path(), false, db_b.port());
    // The app on B keeps writing one-row transactions (every 2 ms) while
    // the backlog is merged.
    StmtPtr ins = b.Prep("INSERT INTO app_log (t) VALUES (?1)");
    while (true) {
      auto w0 = Clock::now();
      sqlite3_bind_double(ins.get(), 1, Seconds(t0, w0));
      BenchDb::Check(StepToEnd(b.get(), ins.get()));
      app_ms.push_back(Seconds(w0, Clock::now()) * 1e3);
      if (seen.Has(rows - 1) && seen.Count() == rows) break;
      if (Seconds(t0, Clock::now()) > 600) {
        std::fprintf(stderr, "bench: the 1M backlog did not arrive in 10 minutes\n");
        std::abort();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    state.SetIterationTime(Seconds(t0, Clock::now()));
    rss_sender = db_a.PeakRssMiB();
    rss_receiver = db_b.PeakRssMiB();
  }
  state.SetItemsProcessed(state.iterations() * rows * 3);
  state.counters["rss_sender_MiB"] = rss_sender;
  state.counters["rss_receiver_MiB"] = rss_receiver;
  state.counters["app_p99_ms"] = Percentile(app_ms, 0.99);
  state.counters["app_max_ms"] = Percentile(app_ms, 1.0);
  state.counters["app_writes"] = static_cast<double>(app_ms.size());
}
BENCHMARK(BM_Backlog1M_procs)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);
#endif

}  // namespace
}  // namespace crsync

int main(int argc, char** argv) {
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
