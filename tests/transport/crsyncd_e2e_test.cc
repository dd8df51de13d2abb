// End-to-end: real crsyncd processes on 127.0.0.1, apps writing through the
// crsync VFS, bounded in time; every process started here is ended here, by
// pid.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <thread>

#include "crsync/vfs.h"
#include "tests/test_util.h"
#include "transport/codec.h"
#include "transport/frame.h"
#include "transport/peer_session.h"

namespace crsync {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kSchema[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE items (id PRIMARY KEY NOT NULL, name, qty); SELECT crsql_as_crr('items');";

// One crsyncd process. Its stdout ("listening", "ready") is read here; its
// log (stderr) goes to a file, shown on stderr when it ends if the test has
// failed by then.
class Daemon {
 public:
  // `verbose`: -v (its log tells what each connection receives), else -q
  // (unless CRSYNCD_VERBOSE is set).
  Daemon(const std::string& db, bool listen, const std::vector<int>& peers, bool verbose = false) {
    int out[2];
    EXPECT_EQ(pipe(out), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      int log = open(log_.str().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (log >= 0) dup2(log, 2);
      std::vector<std::string> args = {CRSYNCD, "run", "--db", db,
                                       verbose || getenv("CRSYNCD_VERBOSE") ? "-v" : "-q"};
      if (listen) {
        args.push_back("--listen");
        args.push_back("127.0.0.1:0");
      }
      for (int p : peers) {
        args.push_back("--peer");
        args.push_back("127.0.0.1:" + std::to_string(p));
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
    // Wait (bounded) for "ready" (after "listening PORT" when listening).
    std::string text;
    pollfd p{out_, POLLIN, 0};
    while (text.find("ready\n") == std::string::npos && poll(&p, 1, 5000) > 0) {
      char buf[64];
      ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    EXPECT_NE(text.find("ready\n"), std::string::npos) << "crsyncd did not start: " << text;
    if (listen) {
      sscanf(text.c_str(), "listening %d", &port_);
      EXPECT_GT(port_, 0) << text;
    }
  }
  ~Daemon() {
    Stop(SIGTERM);
    if (::testing::Test::HasFailure()) {
      std::fprintf(stderr, "--- crsyncd log ---\n%s", Log().c_str());
    }
  }
  // What it logged so far.
  std::string Log() const {
    std::ifstream f(log_.str());
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  // Waits (bounded) until its log holds `text`.
  bool Logs(const std::string& text, std::chrono::milliseconds limit) const {
    return WaitUntil([&] { return Log().find(text) != std::string::npos; }, limit);
  }
  // Sends SIGTERM and waits at most `limit` for a clean exit; a daemon still
  // running then is killed (SIGKILL) and this returns false.
  bool StopsWithin(std::chrono::milliseconds limit) {
    if (pid_ <= 0) return false;
    kill(pid_, SIGTERM);
    auto deadline = Clock::now() + limit;
    int status = 0;
    pid_t r = 0;
    while ((r = waitpid(pid_, &status, WNOHANG)) == 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (r == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    close(out_);
    return r != 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  // Signals it and waits for it to exit (at most 30 s, then SIGKILL and a
  // failure): a daemon that hangs must not hang the test binary.
  void Stop(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status = 0;
    pid_t r = 0;
    for (auto deadline = Clock::now() + std::chrono::seconds(30);
         (r = waitpid(pid_, &status, WNOHANG)) == 0 && Clock::now() < deadline;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (r == 0) {
      ADD_FAILURE() << "crsyncd did not exit within 30 s of signal " << sig << ": killed";
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    } else if (sig == SIGTERM) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    pid_ = -1;
    close(out_);
  }
  int port() const { return port_; }
  void Signal(int sig) const {
    if (pid_ > 0) kill(pid_, sig);
  }
  bool Alive() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }
  // Its resident memory (VmRSS), in KiB; 0 if unknown.
  size_t RssKib() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
    }
    return 0;
  }
  // Whether the process ignores SIGPIPE (the SigIgn mask in /proc).
  bool IgnoresSigpipe() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("SigIgn:", 0) == 0) {
        return (std::stoull(line.substr(7), nullptr, 16) >> (SIGPIPE - 1)) & 1;
      }
    }
    return false;
  }

 private:
  TempPath log_;  // first: the child writes it from the start
  pid_t pid_ = -1;
  int out_ = -1;
  int port_ = 0;
};

// A TCP connection to 127.0.0.1:port, or -1.
int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  if (fd >= 0) close(fd);
  return -1;
}

class CrsyncdTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(crsync_vfs_register(nullptr, 0), SQLITE_OK); }

  // A node's database, created with the schema; apps write through the VFS.
  std::unique_ptr<TestDb> NewNode(TempPath* path, const char* schema = kSchema) {
    {
      TestDb init(path->str());
      init.Exec(schema);
    }
    auto db = std::make_unique<TestDb>("file:" + path->str() + "?vfs=crsync");
    db->Exec("PRAGMA busy_timeout = 10000");  // the sidecar writes too (WAL)
    return db;
  }
  static Rows Contents(TestDb& db) { return db.Query("SELECT * FROM items ORDER BY id"); }
  // Waits (at most 30 s) until every node holds the same rows as the first.
  static bool Converged(const std::vector<TestDb*>& nodes, size_t want_rows) {
    auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline) {
      Rows first = Contents(*nodes[0]);
      bool same = first.size() == want_rows;
      for (size_t i = 1; same && i < nodes.size(); ++i) same = Contents(*nodes[i]) == first;
      if (same) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  static void Write(TestDb& db, int first, int count, const std::string& tag) {
    for (int i = first; i < first + count; ++i) {
      db.Exec("INSERT INTO items VALUES (" + std::to_string(i) + ", '" + tag + "', " +
              std::to_string(i) + ") ON CONFLICT DO UPDATE SET name = excluded.name");
    }
  }
};

TEST_F(CrsyncdTest, TwoNodesExchangeBothWays) {
  TempPath pa, pb;
  auto a = NewNode(&pa), b = NewNode(&pb);
  Daemon da(pa.str(), true, {});
  Daemon db(pb.str(), false, {da.port()});
  Write(*a, 0, 20, "a");
  Write(*b, 100, 20, "b");
  ASSERT_TRUE(Converged({a.get(), b.get()}, 40));
  b->Exec("UPDATE items SET qty = -1 WHERE id = 3");
  ASSERT_TRUE(Converged({a.get(), b.get()}, 40));
  EXPECT_EQ(a->One("SELECT qty FROM items WHERE id = 3"), "-1");
}

// A large transaction passes through both sidecars; once it is merged and
// nothing waits, each gives the memory it took back to the system (glibc
// kept it: the receiver stayed at 116 MB after a 300k-change transaction).
TEST_F(CrsyncdTest, MemoryIsGivenBackAfterALargeTransaction) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // A sanitizer's shadow memory and quarantine are most of the RSS there.
  GTEST_SKIP() << "resident memory is not the program's under a sanitizer";
#endif
  TempPath pa, pb;
  auto a = NewNode(&pa), b = NewNode(&pb);
  a->Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000) "
          "INSERT INTO items SELECT i, hex(randomblob(40)), i FROM n");  // 300k changes
  Daemon da(pa.str(), true, {});
  Daemon db(pb.str(), false, {da.port()});
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (b->One("SELECT count(*) FROM items") != "150000" && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(b->One("SELECT count(*) FROM items"), "150000");
  size_t rss_a = 0, rss_b = 0;
  deadline = Clock::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    rss_a = da.RssKib();
    rss_b = db.RssKib();
  } while ((rss_a > 40000 || rss_b > 40000) && Clock::now() < deadline);
  EXPECT_LE(rss_a, 40000u) << "the sender kept what it freed";
  EXPECT_LE(rss_b, 40000u) << "the receiver kept what it freed";
  EXPECT_GT(rss_b, 0u);
}

TEST_F(CrsyncdTest, HubWithThreeSpokesWritingAtOnce) {
  TempPath ph, p1, p2, p3;
  auto h = NewNode(&ph), s1 = NewNode(&p1), s2 = NewNode(&p2), s3 = NewNode(&p3);
  Daemon hub(ph.str(), true, {});
  Daemon d1(p1.str(), false, {hub.port()}), d2(p2.str(), false, {hub.port()}),
      d3(p3.str(), false, {hub.port()});
  std::thread w1([&] { Write(*s1, 0, 30, "s1"); });
  std::thread w2([&] { Write(*s2, 20, 30, "s2"); });  // overlaps s1 and s3
  Write(*s3, 40, 30, "s3");
  w1.join();
  w2.join();
  ASSERT_TRUE(Converged({h.get(), s1.get(), s2.get(), s3.get()}, 70));
}

TEST_F(CrsyncdTest, LineConvergesThroughTheMiddleAndMeshOfFour) {
  TempPath pa, pb, pc;
  auto a = NewNode(&pa), b = NewNode(&pb), c = NewNode(&pc);
  Daemon da(pa.str(), true, {});
  Daemon dbd(pb.str(), true, {da.port()});
  Daemon dc(pc.str(), false, {dbd.port()});
  Write(*a, 0, 10, "a");
  Write(*c, 10, 10, "c");
  ASSERT_TRUE(Converged({a.get(), b.get(), c.get()}, 20));

  TempPath m[4];
  std::vector<std::unique_ptr<TestDb>> nodes;
  for (auto& p : m) nodes.push_back(NewNode(&p));
  Daemon m0(m[0].str(), true, {});
  Daemon m1(m[1].str(), true, {m0.port()});
  Daemon m2(m[2].str(), true, {m0.port(), m1.port()});
  Daemon m3(m[3].str(), false, {m0.port(), m1.port(), m2.port()});
  for (int i = 0; i < 4; ++i) Write(*nodes[i], i * 5, 8, "m" + std::to_string(i));
  ASSERT_TRUE(Converged({nodes[0].get(), nodes[1].get(), nodes[2].get(), nodes[3].get()}, 23));
}

TEST_F(CrsyncdTest, KillNineMidTransferThenRestartLosesNothing) {
  TempPath pa, pb;
  auto a = NewNode(&pa), b = NewNode(&pb);
  a->Exec("BEGIN");
  Write(*a, 0, 3000, "bulk");
  a->Exec("COMMIT");
  for (int t = 0; t < 20; ++t) Write(*a, 3000 + t * 10, 10, "small");
  Daemon da(pa.str(), true, {});
  {
    Daemon first(pb.str(), false, {da.port()});
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    first.Stop(SIGKILL);
  }
  // No cursor ever says more than what b committed.
  TestDb check(pb.str());
  int64_t cursor = check.Int("SELECT coalesce(max(version), 0) FROM crsql_tracked_peers WHERE "
                             "event = 0 AND tag = 1001");
  EXPECT_LE(cursor, a->Int("SELECT crsql_db_version()"));
  EXPECT_EQ(check.One("PRAGMA integrity_check"), "'ok'");
  Daemon again(pb.str(), false, {da.port()});
  ASSERT_TRUE(Converged({a.get(), b.get()}, 3200));
}

// A node's database is restored from a backup while its peers keep what the
// node wrote after the backup: when the node's sidecar comes back, a peer
// notices (its cursor is past the node's version) and closes the
// connection; on the next one it takes the node's whole feed (the node's new
// writes reuse versions) and sends the node its lost writes. The node's new
// restore epoch makes its other peer resynchronize too, though the echo has
// moved the node past that peer's cursor. A line b - a - c: b and c hear
// from each other only through a.
TEST_F(CrsyncdTest, ANodeRestoredFromABackupGetsItsLostWritesBack) {
  TempPath pa, pb, pc, backup;
  auto a = NewNode(&pa), b = NewNode(&pb), c = NewNode(&pc);
  Daemon db(pb.str(), true, {}), dc(pc.str(), true, {});
  {
    Daemon da(pa.str(), false, {db.port(), dc.port()});
    Write(*a, 0, 10, "a");
    ASSERT_TRUE(Converged({a.get(), b.get(), c.get()}, 10));
    a->Exec("VACUUM INTO '" + backup.str() + "'");
    Write(*a, 10, 10, "lost");
    ASSERT_TRUE(Converged({a.get(), b.get(), c.get()}, 20));
  }
  a.reset();
  for (const char* suffix : {"-wal", "-shm"}) std::remove((pa.str() + suffix).c_str());
  ASSERT_EQ(std::rename(backup.str().c_str(), pa.str().c_str()), 0);
  a = std::make_unique<TestDb>("file:" + pa.str() + "?vfs=crsync");
  a->Exec("PRAGMA busy_timeout = 10000");
  ASSERT_EQ(a->One("SELECT count(*) FROM items"), "10");
  Write(*a, 100, 1, "after");  // reuses a version b and c have seen
  Daemon da(pa.str(), false, {db.port(), dc.port()});
  ASSERT_TRUE(Converged({a.get(), b.get(), c.get()}, 21));
  EXPECT_EQ(a->One("SELECT count(*) FROM items WHERE name = 'lost'"), "10");
  EXPECT_EQ(b->One("SELECT name FROM items WHERE id = 100"), "'after'");
  EXPECT_EQ(c->One("SELECT name FROM items WHERE id = 100"), "'after'");
  // Then they sync as usual.
  Write(*c, 200, 1, "later");
  ASSERT_TRUE(Converged({a.get(), b.get(), c.get()}, 22));
}

TEST_F(CrsyncdTest, SchemaMismatchExchangesNothing) {
  TempPath pa, pb;
  auto a = NewNode(&pa);
  auto b = NewNode(&pb, "PRAGMA journal_mode = WAL; CREATE TABLE items (id PRIMARY KEY NOT NULL, "
                        "name, qty, extra); SELECT crsql_as_crr('items');");
  Write(*a, 0, 5, "a");
  Daemon da(pa.str(), true, {});
  Daemon dbd(pb.str(), false, {da.port()});
  // They did meet, and each refused the other, saying why.
  EXPECT_TRUE(da.Logs("CRR schemas differ", std::chrono::seconds(10))) << da.Log();
  EXPECT_TRUE(dbd.Logs("CRR schemas differ", std::chrono::seconds(10))) << dbd.Log();
  EXPECT_EQ(b->One("SELECT count(*) FROM items"), "0");
  EXPECT_EQ(b->One("SELECT count(*) FROM crsql_tracked_peers"), "0");
}

TEST_F(CrsyncdTest, GarbageOnTheWireClosesOnlyThatConnection) {
  TempPath pa, pb;
  auto a = NewNode(&pa), b = NewNode(&pb);
  Daemon da(pa.str(), true, {});
  for (const std::string& junk : {std::string("hello, this is not a frame at all!!"),
                                  std::string(12, '\0'), std::string("\x10\0\0\0", 4)}) {
    const bool bad_frame = junk.size() >= 12;  // the last one is cut short: just EOF
    std::vector<Message> said;
    FrameReader reader(FrameReaderOptions{}, [&](capnp::MessageReader& m) {
      Message msg;
      CRSYNC_RETURN_IF_ERROR(DecodeMessage(m, &msg));
      said.push_back(std::move(msg));
      return Status::OK();
    });
    int fd = ConnectLoopback(da.port());
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    shutdown(fd, SHUT_WR);
    char buf[4096];
    pollfd p{fd, POLLIN, 0};
    // The daemon closes: read until EOF, bounded.
    auto deadline = Clock::now() + std::chrono::seconds(5);
    bool eof = false;
    while (!eof && Clock::now() < deadline && poll(&p, 1, 200) >= 0) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n == 0) eof = true;
      if (n < 0) break;
      EXPECT_OK(reader.Feed(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n)));
    }
    EXPECT_TRUE(eof);
    close(fd);
    // Perhaps its hello (if it went out before the junk was read); then, for
    // a bad frame, an Error saying why.
    size_t errors = 0;
    for (const Message& m : said) {
      if (const auto* e = std::get_if<ErrorMsg>(&m)) {
        ++errors;
        EXPECT_EQ(e->code, ErrorMsg::kProtocol);
        EXPECT_THAT(e->message, ::testing::HasSubstr("bad frame"));
      } else {
        EXPECT_TRUE(std::holds_alternative<HelloMsg>(m));
      }
    }
    EXPECT_EQ(errors, bad_frame ? 1u : 0u);
  }
  EXPECT_EQ(a->One("SELECT count(*) FROM items"), "0");
  // The daemon still serves real peers.
  Daemon dbd(pb.str(), false, {da.port()});
  Write(*b, 0, 5, "b");
  ASSERT_TRUE(Converged({a.get(), b.get()}, 5));
}

// A peer that says hello and then hangs up (RST) while the daemon streams
// its backlog: the daemon's writes may then fail with EPIPE, which must cost
// that connection only, never the process: crsyncd ignores SIGPIPE.
TEST_F(CrsyncdTest, PeerHangingUpMidStreamCostsOnlyItsConnection) {
  TempPath pa, pb;
  auto a = NewNode(&pa), b = NewNode(&pb);
  a->Exec("BEGIN");
  Write(*a, 0, 3000, "a");
  a->Exec("COMMIT");
  Daemon da(pa.str(), true, {});
  EXPECT_TRUE(da.IgnoresSigpipe());
  HelloMsg hello;  // as b would say it
  {
    StmtPtr st;
    ASSERT_OK(Prepare(b->get(), "SELECT crsql_site_id()", &st));
    ASSERT_EQ(sqlite3_step(st.get()), SQLITE_ROW);
    hello.site_id.assign(static_cast<const char*>(sqlite3_column_blob(st.get(), 0)),
                         static_cast<size_t>(sqlite3_column_bytes(st.get(), 0)));
  }
  ASSERT_OK(SchemaFingerprint(b->get(), &hello.fingerprint));
  capnp::MallocMessageBuilder builder;
  ASSERT_OK(EncodeMessage(Message{hello}, &builder));
  kj::Array<kj::byte> frame;
  ASSERT_OK(FrameEncoder().Encode(builder, &frame));
  for (int round = 0; round < 5; ++round) {
    int fd = ConnectLoopback(da.port());
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, frame.begin(), frame.size()), static_cast<ssize_t>(frame.size()));
    // Wait until the daemon is sending, then reset the connection.
    pollfd p{fd, POLLIN, 0};
    char buf[256];
    if (poll(&p, 1, 5000) > 0) {
      EXPECT_GT(read(fd, buf, sizeof buf), 0);
    }
    linger hard{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    close(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(da.Alive()) << "crsyncd died when a peer hung up";
  Daemon dbd(pb.str(), false, {da.port()});
  ASSERT_TRUE(Converged({a.get(), b.get()}, 3000));
}

// A listening socket on 127.0.0.1 with the given accept backlog; its port
// in *port.
int ListenLoopback(int backlog, int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  socklen_t len = sizeof addr;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(fd, backlog) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// A peer that accepts and at once hangs up: each dial "works", then fails.
// The daemon must back off (100 ms doubling), not redial ten times a second.
// Judged by the gaps between dials, which a loaded machine only lengthens:
// each must be at least half its nominal delay.
TEST_F(CrsyncdTest, PeerThatHangsUpAtOnceIsRedialledWithBackoff) {
  TempPath pa;
  auto a = NewNode(&pa);
  int port = 0;
  int lfd = ListenLoopback(16, &port);
  ASSERT_GE(lfd, 0);
  Daemon da(pa.str(), false, {port});
  std::vector<Clock::time_point> dials;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (dials.size() < 5 && Clock::now() < deadline) {
    pollfd p{lfd, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      int fd = accept(lfd, nullptr, nullptr);
      if (fd >= 0) {
        dials.push_back(Clock::now());
        close(fd);
      }
    }
  }
  close(lfd);
  // 100 + 200 + 400 + 800 ms of delays: five dials in 1.5 s unloaded.
  ASSERT_EQ(dials.size(), 5u) << "the daemon stopped redialling";
  for (size_t i = 1; i < dials.size(); ++i) {
    const auto gap =
        std::chrono::duration_cast<std::chrono::milliseconds>(dials[i] - dials[i - 1]).count();
    EXPECT_GE(gap, 50 << (i - 1)) << "dial " << i << " came " << gap
                                  << " ms after the one before: no backoff";
  }
}

// A dial whose SYN is never answered (the peer's accept queue is full) must
// not hold up a SIGTERM until the kernel gives up on it.
TEST_F(CrsyncdTest, SigtermDuringAnUnansweredDialExitsPromptly) {
  TempPath pa;
  auto a = NewNode(&pa);
  int port = 0;
  int lfd = ListenLoopback(0, &port);
  ASSERT_GE(lfd, 0);
  std::vector<int> fillers;  // fill the accept queue; later SYNs are dropped
  for (int i = 0; i < 4; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    fillers.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Daemon da(pa.str(), false, {port});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // dialling now
  // The kernel would hold the dial for about two minutes; a daemon that
  // waits for it misses this bound by far, a loaded machine does not.
  EXPECT_TRUE(da.StopsWithin(std::chrono::seconds(10)));
  for (int fd : fillers) close(fd);
  close(lfd);
}

// Ctrl-C pressed twice, or `timeout` signalling the process and its group:
// a signal that arrives while the daemon is stopping (here: waiting for a
// merge held up by an application's write lock) is absorbed, and the daemon
// still finishes its work and exits 0.
TEST_F(CrsyncdTest, ASecondSignalWhileStoppingIsAbsorbed) {
  TempPath pa, pb;
  auto a = NewNode(&pa), b = NewNode(&pb);
  a->Exec("BEGIN");
  Write(*a, 0, 300, "a");
  a->Exec("COMMIT");
  Daemon da(pa.str(), true, {});
  b->Exec("BEGIN IMMEDIATE");  // the merge waits for this (busy timeout 5 s)
  Daemon dbd(pb.str(), false, {da.port()}, /*verbose=*/true);
  // Logged just before the merge that now waits for the lock.
  ASSERT_TRUE(dbd.Logs("received 1 changeset", std::chrono::seconds(10))) << dbd.Log();
  // Who it is was said first, once.
  EXPECT_NE(dbd.Log().find("serving " + pb.str() + " as site " +
                           b->Text("SELECT lower(hex(crsql_site_id()))") + " at db_version 0 (pid "),
            std::string::npos)
      << dbd.Log();
  dbd.Signal(SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(dbd.Alive()) << "stopped while its merge was still waiting";
  dbd.Signal(SIGINT);  // the second Ctrl-C
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  b->Exec("ROLLBACK");
  EXPECT_TRUE(dbd.StopsWithin(std::chrono::seconds(8))) << "killed by the second signal";
}

// When the commit signal cannot be watched, the daemon falls back to its
// timer, still replicates, and still stops cleanly (exit 0) on SIGTERM.
TEST_F(CrsyncdTest, UnwatchableCommitSignalStillStopsCleanly) {
  TempPath pa, pb;
  auto a = NewNode(&pa), b = NewNode(&pb);
  std::string side = pb.str() + "-crsync";
  std::remove(side.c_str());
  ASSERT_EQ(symlink("/nonexistent-crsync-dir/signal", side.c_str()), 0);
  {
    Daemon da(pa.str(), true, {});
    Daemon dbd(pb.str(), false, {da.port()});
    Write(*a, 0, 5, "a");
    EXPECT_TRUE(Converged({a.get(), b.get()}, 5));
    EXPECT_TRUE(dbd.StopsWithin(std::chrono::seconds(5)));
  }
  std::remove(side.c_str());
}

// Started on a symlink to the database, the daemon must watch the side
// file the VFS signals (named after the resolved path), not make its own.
TEST_F(CrsyncdTest, ADatabaseReachedThroughASymlinkIsSignalledAndWatched) {
  TempPath pa, pb, link;
  auto a = NewNode(&pa), b = NewNode(&pb);
  ASSERT_EQ(symlink(pb.str().c_str(), link.str().c_str()), 0);
  {
    Daemon da(pa.str(), true, {});
    Daemon dbd(link.str(), false, {da.port()});
    Write(*a, 0, 5, "a");
    ASSERT_TRUE(Converged({a.get(), b.get()}, 5));
    EXPECT_NE(access((pb.str() + "-crsync").c_str(), F_OK), -1);
    EXPECT_EQ(access((link.str() + "-crsync").c_str(), F_OK), -1) << "a side file nobody signals";
  }
  std::remove(link.str().c_str());
  std::remove((link.str() + "-crsync").c_str());
}

}  // namespace
}  // namespace crsync
