// Sidecar lifecycle in-process: Stop() before the loop runs and after Run()
// has returned. (Networking is covered end to end in crsyncd_e2e_test.)
#include "transport/sidecar.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "tests/test_util.h"

namespace crsync {
namespace {

// Options for a sidecar on a fresh database at `path`, quiet, listening on
// `listen`.
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

TEST(SidecarTest, StopBeforeTheLoopRunsIsKeptAndRunReturns) {
  TempPath path;
  SidecarOptions o = QuietOn(path, "127.0.0.1:0");
  Sidecar sidecar(o);
  sidecar.Stop();  // before Run(): must not be lost
  auto run = std::async(std::launch::async, [&] { return sidecar.Run(); });
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
  for (int i = 0; i < 200 && port == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GT(port.load(), 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port.load()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
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

}  // namespace
}  // namespace crsync
