// Sidecar lifecycle in-process: Stop() before the loop runs and after Run()
// has returned. (Networking is covered end to end in crsyncd_e2e_test.)
#include "crsync/sidecar.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <stdexcept>
#include <thread>

#include "tests/test_util.h"
#include "transport/codec.h"
#include "transport/frame.h"
#include "transport/peer_session.h"

namespace crsync {
namespace {

// Options for a sidecar on a fresh database at `path`, quiet, listening on
// `listen`.
// Stops `sidecar` when the test leaves its scope, declared after the
// future of its Run(): a failed ASSERT then returns through Stop() before
// the future's destructor waits for Run(), instead of hanging the binary.
struct StopAtExit {
  Sidecar& sidecar;
  ~StopAtExit() { sidecar.Stop(); }
};

SidecarOptions QuietOn(const TempPath& path, const std::string& listen) {
  TestDb db(path.str());
  db.Exec("PRAGMA journal_mode = WAL; CREATE TABLE t (id PRIMARY KEY NOT NULL, v);"
          "SELECT crsql_as_crr('t');");
  SidecarOptions o;
  o.db_path = path.str();
  o.listen = listen;
  o.log_level = 0;
  return o;
}

// 127.0.0.1:port.
sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  return addr;
}

TEST(SidecarTest, StopBeforeTheLoopRunsIsKeptAndRunReturns) {
  TempPath path;
  SidecarOptions o = QuietOn(path, "127.0.0.1:0");
  Sidecar sidecar(o);
  sidecar.Stop();  // before Run(): must not be lost
  auto run = std::async(std::launch::async, [&] { return sidecar.Run(); });
  StopAtExit stop_run{sidecar};
  bool returned = run.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  if (!returned) {
    sidecar.Stop();  // the loop runs by now: unblock it before failing
    run.wait();
  }
  ASSERT_TRUE(returned) << "Run() ignored a Stop() made before its loop ran";
  EXPECT_TRUE(run.get().ok());
}

TEST(SidecarTest, StopAfterAFailedStartIsANoOp) {
  TempPath path;
  SidecarOptions o = QuietOn(path, "not-an-address");  // fails after the loop exists
  Sidecar sidecar(o);
  Status s = sidecar.Run();
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("not-an-address"), std::string::npos) << s.ToString();
  sidecar.Stop();  // the loop is closed: this must neither crash nor hang
  sidecar.Stop();
}

// A client that connects and never says Hello is closed after the
// handshake timeout; one that is still within it is not.
TEST(SidecarTest, ASilentConnectionIsClosedAfterTheHandshakeTimeout) {
  TempPath path;
  SidecarOptions o = QuietOn(path, "127.0.0.1:0");
  o.pump_interval_ms = 50;
  o.handshake_timeout_ms = 400;
  std::atomic<int> port{0};
  o.on_listening = [&](int p) { port = p; };
  Sidecar sidecar(o);
  auto run = std::async(std::launch::async, [&] { return sidecar.Run(); });
  StopAtExit stop_run{sidecar};
  for (int i = 0; i < 200 && port == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GT(port.load(), 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = Loopback(port);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const auto start = std::chrono::steady_clock::now();
  bool eof = false;
  char buf[4096];
  while (!eof && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      ssize_t n = read(fd, buf, sizeof buf);  // its Hello, then EOF
      if (n <= 0) eof = true;
    }
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  close(fd);
  sidecar.Stop();
  EXPECT_TRUE(run.get().ok());
  EXPECT_TRUE(eof) << "a silent connection stayed open";
  EXPECT_GE(waited, std::chrono::milliseconds(350)) << "closed before its timeout";
}

// Connecting and hanging up (a health check, a port scan) is a debug line
// only; a client that sends garbage in a loop must not fill the log
// either: a burst of each kind of line is written, then one line says how
// many more were left out (here at the end, when the sidecar stops).
TEST(SidecarTest, AConnectionLoopDoesNotFloodTheLog) {
  TempPath path;
  SidecarOptions o = QuietOn(path, "127.0.0.1:0");
  o.log_level = 1;
  o.pump_interval_ms = 50;
  std::atomic<int> port{0};
  o.on_listening = [&](int p) { port = p; };
  StderrCapture log;
  Sidecar sidecar(o);
  auto run = std::async(std::launch::async, [&] { return sidecar.Run(); });
  StopAtExit stop_run{sidecar};
  for (int i = 0; i < 200 && port == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GT(port.load(), 0);
  sockaddr_in addr = Loopback(port);
  constexpr int kChecks = 30, kGarbage = 60;
  for (int i = 0; i < kChecks + kGarbage; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    if (i >= kChecks) {  // a frame header saying length 0: refused as a bad frame
      const char zeros[12] = {};
      ASSERT_EQ(write(fd, zeros, sizeof zeros), 12);
      char buf[256];
      while (read(fd, buf, sizeof buf) > 0) {
      }  // until it closes us
    }
    close(fd);
  }
  // The health checks are accepted within moments (the listen backlog
  // holds them meanwhile); lines left out cannot be watched for.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  sidecar.Stop();
  EXPECT_TRUE(run.get().ok());
  const std::string text = log.Text();
  EXPECT_EQ(text.find("accepted connection"), std::string::npos) << text;
  EXPECT_EQ(text.find(") ended:"), std::string::npos) << text;
  size_t refused = 0;
  for (size_t at = 0; (at = text.find("error: connection ", at)) != std::string::npos; ++at) {
    ++refused;
  }
  EXPECT_EQ(refused, 20u) << text;
  EXPECT_NE(text.find("(that keeps happening: more lines like it are left out"), std::string::npos)
      << text;
  const size_t summary = text.find("error: left out 40 more lines like this in ");
  EXPECT_NE(summary, std::string::npos) << text;
  EXPECT_NE(text.find("the last: connection " + std::to_string(kChecks + kGarbage) +
                          " (inbound from 127.0.0.1:", summary),
            std::string::npos) << text;
}

// A node given its own address among its peers (one peer list for every
// member) dials itself once, learns it from the Hello that comes back, and
// leaves that address alone: no refusals, no errors, no redials.
TEST(SidecarTest, AnAddressThatReachesTheNodeItselfIsDialledOnce) {
  int probe = socket(AF_INET, SOCK_STREAM, 0);  // a free port, to configure in advance
  ASSERT_GE(probe, 0);
  sockaddr_in addr = Loopback(0);
  ASSERT_EQ(bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string self = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  close(probe);
  TempPath path;
  SidecarOptions o = QuietOn(path, self);
  o.peers = {self};
  o.log_level = 1;
  o.pump_interval_ms = 50;
  StderrCapture log;
  Sidecar sidecar(o);
  auto run = std::async(std::launch::async, [&] { return sidecar.Run(); });
  StopAtExit stop_run{sidecar};
  const bool said = log.WaitFor(self + " reaches this crsyncd itself", std::chrono::seconds(10));
  // Time for several redials at the backoff's start (0.1, 0.2, 0.4 s...).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  sidecar.Stop();
  Status st = run.get();
  const std::string text = log.Text();
  ASSERT_TRUE(st.ok()) << st.ToString() << "\n" << text;
  EXPECT_TRUE(said) << text;
  size_t dials = 0;
  for (size_t at = 0; (at = text.find("connected to " + self, at)) != std::string::npos; ++at) ++dials;
  EXPECT_EQ(dials, 1u) << text;
  EXPECT_EQ(text.find("error"), std::string::npos) << text;
  EXPECT_EQ(text.find("own site id"), std::string::npos) << text;
}

// A configured peer that hangs up before saying anything (a wrong port, a
// proxy with nothing behind it) is not a health check: its end is said at
// the default level, each time it is dialled.
TEST(SidecarTest, ADialledPeerThatHangsUpBeforeItsHelloIsLogged) {
  int server = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(server, 0);
  sockaddr_in addr = Loopback(0);
  ASSERT_EQ(bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(server, 8), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string where = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  TempPath path;
  SidecarOptions o = QuietOn(path, "");
  o.peers = {where};
  o.log_level = 1;
  StderrCapture log;
  Sidecar sidecar(o);
  auto run = std::async(std::launch::async, [&] { return sidecar.Run(); });
  StopAtExit stop_run{sidecar};
  pollfd p{server, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  close(accept(server, nullptr, nullptr));  // hangs up at once (a FIN, or a reset if our Hello came)
  const bool said = log.WaitFor("info: connection 1 (" + where + ") ended: ",
                                std::chrono::seconds(10));
  sidecar.Stop();
  EXPECT_TRUE(run.get().ok());
  close(server);
  EXPECT_TRUE(said) << log.Text();
}

TEST(SidecarTest, BadPeerAddressesAreRefusedByName) {
  TempPath path;
  const SidecarOptions base = QuietOn(path, "");
  for (const char* bad : {"127.0.0.1:0", "127.0.0.1:", ":4000", "127.0.0.1:70000", "localhost:4000"}) {
    SidecarOptions o = base;
    o.peers = {bad};
    Sidecar sidecar(o);
    Status s = sidecar.Run();
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << bad << ": " << s.ToString();
    EXPECT_NE(s.message().find(bad), std::string::npos) << s.ToString();
  }
}

TEST(SidecarTest, BadOptionsAreRefusedByName) {
  TempPath path;
  const SidecarOptions base = QuietOn(path, "127.0.0.1:0");
  struct Case {
    const char* names;
    void (*set)(SidecarOptions*);
  } cases[] = {
      {"db_path", [](SidecarOptions* o) { o->db_path.clear(); }},
      {"pump_interval_ms", [](SidecarOptions* o) { o->pump_interval_ms = 0; }},
      {"pump_interval_ms", [](SidecarOptions* o) { o->pump_interval_ms = -5; }},
      {"handshake_timeout_ms", [](SidecarOptions* o) { o->handshake_timeout_ms = -1; }},
      {"write_stall_ms", [](SidecarOptions* o) { o->write_stall_ms = 0; }},
      {"heartbeat_ms", [](SidecarOptions* o) { o->heartbeat_ms = -1; }},
      {"probe_timeout_ms", [](SidecarOptions* o) { o->probe_timeout_ms = -1; }},
  };
  for (const Case& c : cases) {
    SidecarOptions o = base;
    c.set(&o);
    Sidecar sidecar(o);
    Status s = sidecar.Run();
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << c.names << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.names), std::string::npos) << s.ToString();
  }
  // Nothing was made where an empty path would have led (SQLite's
  // temporary database, a side file in the working directory).
  EXPECT_FALSE(std::filesystem::exists("-crsync"));
}

TEST(SidecarTest, RunsOnceAndSaysSo) {
  TempPath path;
  SidecarOptions o = QuietOn(path, "127.0.0.1:0");
  o.on_ready = nullptr;
  Sidecar sidecar(o);
  sidecar.Stop();
  ASSERT_TRUE(sidecar.Run().ok());
  auto again = std::async(std::launch::async, [&] { return sidecar.Run(); });
  ASSERT_EQ(again.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "a second Run() did not return";
  Status s = again.get();
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("runs once"), std::string::npos) << s.ToString();
}

// A callback that throws is a failure to start, returned by Run(): the
// exception does not leave it, and everything Run() set up is undone (the
// database's lock too: another sidecar starts on it at once).
TEST(SidecarTest, ACallbackThatThrowsFailsTheStartCleanly) {
  TempPath path;
  const SidecarOptions base = QuietOn(path, "127.0.0.1:0");
  for (const char* which : {"on_listening", "on_ready"}) {
    SCOPED_TRACE(which);
    SidecarOptions o = base;
    o.peers = {"127.0.0.1:9"};  // a dialer to undo as well
    if (std::string(which) == "on_listening") {
      o.on_listening = [](int) { throw std::runtime_error("the application's own"); };
    } else {
      o.on_ready = [] { throw std::bad_alloc(); };
    }
    Sidecar sidecar(o);
    Status s;
    ASSERT_NO_THROW(s = sidecar.Run());
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.sqlite_code(), std::string(which) == "on_ready" ? SQLITE_NOMEM : SQLITE_ERROR)
        << s.ToString();
  }
  SidecarOptions o = base;
  bool ready = false;
  Sidecar* running = nullptr;
  o.on_ready = [&] {
    ready = true;
    running->Stop();
  };
  Sidecar sidecar(o);
  running = &sidecar;
  Status s = sidecar.Run();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(ready);
}

std::atomic<int> g_app_signals{0};
void AppHandler(int) { ++g_app_signals; }

// The application's handler for SIGINT and SIGTERM, for a test's span;
// what was there before is put back after. Handles() says whether both
// signals reach it now.
class AppHandlers {
 public:
  AppHandlers() {
    struct sigaction app {};
    app.sa_handler = AppHandler;
    sigemptyset(&app.sa_mask);
    installed_ = sigaction(SIGINT, &app, &old_int_) == 0 && sigaction(SIGTERM, &app, &old_term_) == 0;
  }
  ~AppHandlers() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  bool installed() const { return installed_; }
  static bool Handles(int sig) {
    struct sigaction now {};
    return sigaction(sig, nullptr, &now) == 0 && now.sa_handler == &AppHandler;
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
  bool installed_ = false;
};

// Run() handles SIGINT and SIGTERM while it runs; afterwards the
// application's own handlers are back (libuv would leave SIG_DFL, and the
// next Ctrl-C would kill the application).
TEST(SidecarTest, TheApplicationsSignalHandlersAreBackAfterRun) {
  AppHandlers app;
  ASSERT_TRUE(app.installed());
  TempPath path;
  SidecarOptions o = QuietOn(path, "127.0.0.1:0");
  Sidecar sidecar(o);
  sidecar.Stop();
  EXPECT_TRUE(sidecar.Run().ok());
  EXPECT_TRUE(AppHandlers::Handles(SIGINT));
  EXPECT_TRUE(AppHandlers::Handles(SIGTERM));
  if (AppHandlers::Handles(SIGINT)) {
    raise(SIGINT);  // must reach the application, not end the test program
    EXPECT_EQ(g_app_signals.load(), 1);
  }
}

// Two sidecars of one process overlapping (the second starts while the
// first runs, the first stops first): the application's handlers are back
// once the last one stopped. (The second saw libuv's handler installed, and
// restored nothing.)
TEST(SidecarTest, OverlappingSidecarsGiveTheHandlersBackWhenTheLastStops) {
  AppHandlers app;
  ASSERT_TRUE(app.installed());
  TempPath p1, p2;
  std::atomic<bool> ready1{false}, ready2{false};
  SidecarOptions o1 = QuietOn(p1, "127.0.0.1:0"), o2 = QuietOn(p2, "127.0.0.1:0");
  o1.on_ready = [&] { ready1 = true; };
  o2.on_ready = [&] { ready2 = true; };
  Sidecar s1(o1), s2(o2);
  auto r1 = std::async(std::launch::async, [&] { return s1.Run(); });
  StopAtExit stop_r1{s1};
  for (int i = 0; i < 500 && !ready1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto r2 = std::async(std::launch::async, [&] { return s2.Run(); });
  StopAtExit stop_r2{s2};
  for (int i = 0; i < 500 && !ready2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  s1.Stop();
  EXPECT_TRUE(r1.get().ok());
  s2.Stop();
  EXPECT_TRUE(r2.get().ok());
  EXPECT_TRUE(ready1 && ready2);
  EXPECT_TRUE(AppHandlers::Handles(SIGINT));
  EXPECT_TRUE(AppHandlers::Handles(SIGTERM));
}

// A side file deleted and made again (by the VFS, at the next commit) is a
// new inode: the sidecar watches the new one, and says so.
TEST(SidecarTest, AReplacedSideFileIsWatchedAgain) {
  TempPath path;
  SidecarOptions o = QuietOn(path, "127.0.0.1:0");
  o.log_level = 1;
  o.pump_interval_ms = 50;
  std::atomic<bool> ready{false};
  o.on_ready = [&] { ready = true; };
  Sidecar sidecar(o);
  StderrCapture log;
  auto run = std::async(std::launch::async, [&] { return sidecar.Run(); });
  StopAtExit stop_run{sidecar};
  for (int i = 0; i < 500 && !ready; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const std::string side = path.str() + "-crsync";
  ASSERT_TRUE(std::filesystem::exists(side));
  std::filesystem::remove(side);
  {
    std::ofstream f(side, std::ios::binary);  // another file of that name
    f << std::string(8, '\0');
  }
  // Noticed on a pump tick (every 50 ms here).
  const bool noticed = log.WaitFor("was replaced: watching the new file", std::chrono::seconds(10));
  sidecar.Stop();
  Status s = run.get();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(noticed) << log.Text();
}

// A database deleted, or replaced by another file, while the sidecar serves
// it: the sidecar stops with an error naming it (it would merge into the
// old, unlinked file and send from it, silently).
TEST(SidecarTest, ADeletedOrReplacedDatabaseStopsTheSidecar) {
  for (bool replace : {false, true}) {
    SCOPED_TRACE(replace ? "replaced" : "deleted");
    TempPath path;
    SidecarOptions o = QuietOn(path, "127.0.0.1:0");
    o.pump_interval_ms = 50;
    std::atomic<bool> ready{false};
    o.on_ready = [&] { ready = true; };
    Sidecar sidecar(o);
    StderrCapture capture;
    auto run = std::async(std::launch::async, [&] { return sidecar.Run(); });
    StopAtExit stop_run{sidecar};
    for (int i = 0; i < 500 && !ready; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(ready);
    if (replace) {  // a restore by copy: the new file renamed over the old
      TempPath other;
      TestDb(other.str()).Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');");
      std::filesystem::rename(other.str(), path.str());
    } else {
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.str() + suffix);
    }
    ASSERT_EQ(run.wait_for(std::chrono::seconds(10)), std::future_status::ready)
        << "still serving the old file";
    Status s = run.get();
    EXPECT_FALSE(s.ok());
    // (The new file may get the old one's inode number: the old file
    // having no link left is what tells.)
    EXPECT_THAT(s.message(), ::testing::HasSubstr(replace ? "replaced by another file" : "was deleted"));
    EXPECT_NE(capture.Text().find("crsyncd error: the database " + path.str()), std::string::npos)
        << capture.Text();
  }
}

// A sidecar listening on a database holding one transaction of 16 MB
// (4000 changes, unless said), with a write-queue bound of 64 KiB, and a raw peer that
// says Hello (same schemas, a new site) and then reads at its own pace.
// At the debug level (-v) each connection's traffic is logged: what
// arrived and what went out, summarized.
TEST(SidecarTest, TheDebugLevelLogsWhatEachConnectionMoves) {
  TempPath hub_path, spoke_path;
  SidecarOptions hub_options = QuietOn(hub_path, "127.0.0.1:0");
  hub_options.log_level = 2;
  hub_options.pump_interval_ms = 50;
  std::atomic<int> port{0};
  hub_options.on_listening = [&](int p) { port = p; };
  SidecarOptions spoke_options = QuietOn(spoke_path, "");
  spoke_options.pump_interval_ms = 50;
  {
    TestDb spoke(spoke_path.str());
    spoke.Exec("INSERT INTO t VALUES (1, 'a'), (2, 'b')");
  }
  StderrCapture log;  // while the two run
  std::string rows;
  {
    Sidecar hub(hub_options);
    auto hub_run = std::async(std::launch::async, [&] { return hub.Run(); });
    StopAtExit stop_hub_run{hub};
    for (int i = 0; i < 500 && port == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    spoke_options.peers = {"127.0.0.1:" + std::to_string(port.load())};
    Sidecar spoke(spoke_options);
    auto spoke_run = std::async(std::launch::async, [&] { return spoke.Run(); });
    StopAtExit stop_spoke_run{spoke};
    TestDb hub_db(hub_path.str());
    for (int i = 0; i < 200 && (rows = hub_db.One("SELECT count(*) FROM t")) != "2"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    // The ack is logged when it is sent, after the rows are readable.
    log.WaitFor("sent ack 1", std::chrono::seconds(5));
    spoke.Stop();
    hub.Stop();
    EXPECT_TRUE(spoke_run.get().ok());
    EXPECT_TRUE(hub_run.get().ok());
  }
  const std::string text = log.Text();
  EXPECT_EQ(rows, "2");
  EXPECT_NE(text.find("crsyncd debug: connection 1: received hello"), std::string::npos) << text;
  EXPECT_NE(text.find("received 1 changeset (versions 1..1, 2 changes)"), std::string::npos) << text;
  EXPECT_NE(text.find("sent ack 1"), std::string::npos) << text;
}

class SlowPeerTest : public ::testing::Test {
 protected:
  void Start(int write_stall_ms, int rows = 4000) {
    SidecarOptions o = QuietOn(path_, "127.0.0.1:0");
    {
      TestDb db(path_.str());
      db.Exec("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
              std::to_string(rows) + ") INSERT INTO t SELECT i, randomblob(4000) FROM n; COMMIT;");
    }
    o.max_write_queue_bytes = 64 << 10;
    o.write_stall_ms = write_stall_ms;
    o.pump_interval_ms = 50;
    std::atomic<int> port{0};
    o.on_listening = [&](int p) { port = p; };
    sidecar_ = std::make_unique<Sidecar>(o);
    run_ = std::async(std::launch::async, [&] { return sidecar_->Run(); });
    for (int i = 0; i < 500 && port == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_GT(port.load(), 0);

    HelloMsg hello;
    hello.site_id = std::string(16, '\x5a');
    {
      TestDb same(path_.str());
      ASSERT_OK(SchemaFingerprint(same.get(), &hello.fingerprint));
    }
    capnp::MallocMessageBuilder builder;
    ASSERT_OK(EncodeMessage(Message{hello}, &builder));
    kj::Array<kj::byte> frame;
    ASSERT_OK(FrameEncoder().Encode(builder, &frame));
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int small = 64 << 10;  // so that the kernel does not absorb the transaction
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port.load()));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ASSERT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(write(fd_, frame.begin(), frame.size()), static_cast<ssize_t>(frame.size()));
  }

  // Reads `chunk` bytes per millisecond until `changes` changes arrived,
  // EOF, or 30 s.
  void Read(size_t chunk, size_t changes) {
    FrameReader reader(FrameReaderOptions{}, [&](capnp::MessageReader& m) {
      Message msg;
      CRSYNC_RETURN_IF_ERROR(DecodeMessage(m, &msg));
      if (auto* c = std::get_if<ChangesetMsg>(&msg)) changes_ += c->changes.size();
      return Status::OK();
    });
    std::vector<uint8_t> buf(chunk);
    const auto start = std::chrono::steady_clock::now();
    while (!eof_ && changes_ < changes &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        ssize_t n = read(fd_, buf.data(), buf.size());
        if (n <= 0) {
          eof_ = true;
        } else {
          ASSERT_OK(reader.Feed(buf.data(), static_cast<size_t>(n)));
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  void TearDown() override {
    if (fd_ >= 0) close(fd_);
    if (sidecar_) {
      sidecar_->Stop();
      EXPECT_TRUE(run_.get().ok());
    }
  }

  TempPath path_;
  std::unique_ptr<Sidecar> sidecar_;
  std::future<Status> run_;
  int fd_ = -1;
  size_t changes_ = 0;
  bool eof_ = false;
};

// The transaction's parts are queued together, far past the bound, and
// drain as fast as the peer reads: the bound must not close a connection
// that is moving (it did, at every attempt, so the transaction never
// arrived).
TEST_F(SlowPeerTest, ATransactionLargerThanTheWriteQueueBoundArrives) {
  ASSERT_NO_FATAL_FAILURE(Start(/*write_stall_ms=*/2000));
  Read(/*chunk=*/32 << 10, /*changes=*/4000);
  EXPECT_FALSE(eof_) << "closed while the peer was reading";
  EXPECT_EQ(changes_, 4000u);
}

// A peer so slow that one message takes longer than write_stall_ms to
// leave is still reading: the queue shrinking counts as progress, not only
// a write completing.
TEST_F(SlowPeerTest, APeerSlowerThanOneMessagePerStallIsKeptOpen) {
  ASSERT_NO_FATAL_FAILURE(Start(/*write_stall_ms=*/1500, /*rows=*/2000));
  Read(/*chunk=*/2 << 10, /*changes=*/2000);  // about 2 MB/s: a 4 MiB part takes 2 s
  EXPECT_FALSE(eof_) << "closed while the peer was reading";
  EXPECT_EQ(changes_, 2000u);
}

// A peer that says Hello and then reads nothing: once more than the bound
// waits to be written and none of it left for write_stall_ms, the
// connection is closed, by the pump timer since there is nothing more to
// send.
TEST_F(SlowPeerTest, APeerThatStopsReadingIsClosed) {
  ASSERT_NO_FATAL_FAILURE(Start(/*write_stall_ms=*/300));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // not reading
  Read(/*chunk=*/1 << 20, /*changes=*/SIZE_MAX);  // what was buffered, then EOF
  EXPECT_TRUE(eof_) << "a peer that stopped reading stayed connected";
  EXPECT_LT(changes_, 4000u) << "everything was sent: the peer was not held up";
}

// A peer that acknowledges without reading (returning every credit,
// taking nothing) must not have the same window queued again at each ack:
// that held gigabytes. Sending pauses while the bound waits to be written,
// and the connection closes (a resend answered without progress, or the
// stall), having sent at most about two copies of the transaction.
TEST_F(SlowPeerTest, APeerAckingWithoutReadingIsNotSentMore) {
  // A stall limit longer than the acks take: they are what is tested.
  ASSERT_NO_FATAL_FAILURE(Start(/*write_stall_ms=*/3000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the transaction is queued
  capnp::MallocMessageBuilder builder;
  ASSERT_OK(EncodeMessage(Message{AckMsg{0, 16}}, &builder));
  kj::Array<kj::byte> frame;
  ASSERT_OK(FrameEncoder().Encode(builder, &frame));
  int sent = 0;
  for (; sent < 10; ++sent) {  // until the sidecar hangs up
    if (write(fd_, frame.begin(), frame.size()) != static_cast<ssize_t>(frame.size())) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GE(sent, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // still not reading: stalled
  Read(/*chunk=*/1 << 20, /*changes=*/SIZE_MAX);  // what was queued, then EOF
  EXPECT_TRUE(eof_) << "a peer that reads nothing stayed connected";
  EXPECT_LE(changes_, 8000u) << "the transaction was queued again at each ack";
}

}  // namespace
}  // namespace crsync
