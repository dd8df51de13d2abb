// Which peers a running sidecar admits: one site id may be connected many
// times from one running node (peers that dial each other, a reconnect),
// never from two at once (a copied database, two sidecars on one
// database), whose equal (site, version) pairs would hide each other's
// changes. Raw sockets speak the protocol, so the instance each Hello says
// is chosen by the test.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "common/hex.h"
#include "tests/test_util.h"
#include "transport/codec.h"
#include "transport/frame.h"
#include "transport/schema_id.h"
#include "crsync/sidecar.h"

namespace crsync {
namespace {

// One raw connection to the sidecar, which says Hello as `site` at
// `instance`.
class RawPeer {
 public:
  RawPeer(int port, const HelloMsg& hello) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    sent_ = connected_ && Send(Message{hello});
  }
  bool Send(const Message& m) {
    capnp::MallocMessageBuilder builder;
    kj::Array<kj::byte> frame;
    return EncodeMessage(m, &builder).ok() && FrameEncoder().Encode(builder, &frame).ok() &&
           write(fd_, frame.begin(), frame.size()) == static_cast<ssize_t>(frame.size());
  }
  ~RawPeer() { close(fd_); }
  // Closes cleanly: a FIN, then waits (bounded) for the sidecar's, so no
  // unread data turns the close into a reset.
  void CloseCleanly() {
    shutdown(fd_, SHUT_WR);
    Listen(3000);
    close(fd_);
    fd_ = -1;
  }
  // Closes with a reset, as a host that rebooted answers a connection it
  // no longer knows.
  void Reset() {
    linger hard{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    close(fd_);
    fd_ = -1;
  }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  bool said_hello() const { return connected_ && sent_; }

  // Reads for up to `ms`, stopping at EOF. Returns the errors received.
  std::vector<ErrorMsg> Listen(int ms) {
    FrameReader reader(FrameReaderOptions{}, [&](capnp::MessageReader& m) {
      Message msg;
      CRSYNC_RETURN_IF_ERROR(DecodeMessage(m, &msg));
      if (auto* e = std::get_if<ErrorMsg>(&msg)) errors_.push_back(*e);
      if (auto* a = std::get_if<AckMsg>(&msg)) {
        ++acks_;
        if (a->probe) {
          ++probes_;
          if (answer_probes_ && !Send(AckMsg{0, 0})) eof_ = true;
        }
      }
      return Status::OK();
    });
    char buf[4096];
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!eof_ && std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0 || !reader.Feed(reinterpret_cast<uint8_t*>(buf), static_cast<size_t>(n)).ok()) {
        eof_ = true;
      }
    }
    return errors_;
  }
  bool eof() const { return eof_; }
  int acks() const { return acks_; }
  int probes() const { return probes_; }
  // Whether Listen answers the probes it reads (as its Hello may promise).
  void set_answer_probes(bool yes) { answer_probes_ = yes; }

 private:
  int fd_ = -1;
  bool connected_ = false, sent_ = false, eof_ = false, answer_probes_ = false;
  int acks_ = 0, probes_ = 0;
  std::vector<ErrorMsg> errors_;
};

class SidecarAdmitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    {
      TestDb db(path_.str());
      db.Exec("PRAGMA journal_mode = WAL; CREATE TABLE t (id PRIMARY KEY NOT NULL, v);"
              "SELECT crsql_as_crr('t');");
      ASSERT_OK(SchemaFingerprint(db.get(), &fingerprint_));
    }
    SidecarOptions o;
    o.db_path = path_.str();
    o.listen = "127.0.0.1:0";
    o.log_level = log_level_;
    o.pump_interval_ms = 50;
    o.heartbeat_ms = heartbeat_ms_;
    o.probe_timeout_ms = probe_timeout_ms_;
    o.on_listening = [this](int p) { port_ = p; };
    sidecar_ = std::make_unique<Sidecar>(o);
    run_ = std::async(std::launch::async, [this] { return sidecar_->Run(); });
    for (int i = 0; i < 500 && port_ == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_GT(port_.load(), 0);
  }

  void TearDown() override {
    if (run_.valid()) StopFirst();
  }

  void StopFirst() {
    sidecar_->Stop();
    EXPECT_TRUE(run_.get().ok());
  }

  std::unique_ptr<RawPeer> Say(char site, uint64_t instance, uint32_t heartbeat_ms = 0,
                               bool answers_probes = false) {
    HelloMsg hello;
    hello.site_id = std::string(16, site);
    hello.fingerprint = fingerprint_;
    hello.instance = instance;
    hello.heartbeat_ms = heartbeat_ms;
    hello.answers_probes = answers_probes;
    auto peer = std::make_unique<RawPeer>(port_, hello);
    EXPECT_TRUE(peer->said_hello());
    return peer;
  }

  // Says hello as `site` at `instance` until admitted (no error, still
  // open 400 ms later), at most `attempts` times; "" or why not. The
  // admitted connection is kept in *kept if given (else closed).
  std::string AdmittedWithin(char site, uint64_t instance, int attempts,
                             std::unique_ptr<RawPeer>* kept = nullptr) {
    std::string why = "never tried";
    for (int attempt = 0; attempt < attempts; ++attempt) {
      auto peer = Say(site, instance);
      std::vector<ErrorMsg> errors = peer->Listen(400);
      if (errors.empty() && !peer->eof()) {
        if (kept) *kept = std::move(peer);
        return "";
      }
      why = errors.empty() ? "closed" : errors[0].message;
    }
    return why;
  }

  int log_level_ = 0;  // of the fixture's sidecar, set before SetUp
  int heartbeat_ms_ = 10000;  // likewise
  int probe_timeout_ms_ = 5000;  // likewise
  TempPath path_;
  uint64_t fingerprint_ = 0;
  std::atomic<int> port_{0};
  std::unique_ptr<Sidecar> sidecar_;
  std::future<Status> run_;
};

TEST_F(SidecarAdmitTest, OneSiteIdAtTwoInstancesAtOnceIsRefusedByName) {
  auto first = Say('\x5a', 1);
  EXPECT_TRUE(first->Listen(300).empty());
  ASSERT_FALSE(first->eof());

  auto copy = Say('\x5a', 2);
  std::vector<ErrorMsg> errors = copy->Listen(3000);
  EXPECT_TRUE(copy->eof()) << "the second instance stayed connected";
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code, ErrorMsg::kProtocol);
  EXPECT_NE(errors[0].message.find(HexBytes(std::string(16, '\x5a'))), std::string::npos)
      << errors[0].message;
  EXPECT_NE(errors[0].message.find("two databases share it"), std::string::npos) << errors[0].message;

  // The first keeps its connection, and was poked (a dead host's would
  // have been reset by it).
  EXPECT_TRUE(first->Listen(300).empty());
  EXPECT_FALSE(first->eof()) << "the instance connected first was dropped";
  EXPECT_EQ(first->acks(), 1);
}

// The poke is harmless to a live first instance: a real sidecar keeps its
// connection (no close, no second connection in its log) and goes on
// syncing.
TEST_F(SidecarAdmitTest, ThePokeLeavesALiveSidecarSyncing) {
  TempPath spoke_path;
  std::string site;
  {
    TestDb spoke(spoke_path.str());
    spoke.Exec("PRAGMA journal_mode = WAL; CREATE TABLE t (id PRIMARY KEY NOT NULL, v);"
               "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, 'a');");
    std::string hex = spoke.Text("SELECT hex(crsql_site_id())");
    for (size_t i = 0; i < hex.size(); i += 2) site += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  SidecarOptions o;
  o.db_path = spoke_path.str();
  o.peers = {"127.0.0.1:" + std::to_string(port_.load())};
  o.log_level = 2;
  o.pump_interval_ms = 50;
  TestDb hub(path_.str());
  auto wait_for = [&](const std::string& count) {
    for (int i = 0; i < 200 && hub.One("SELECT count(*) FROM t") != count; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return hub.One("SELECT count(*) FROM t");
  };
  std::string log;
  {
    StderrCapture capture;
    Sidecar spoke(o);
    auto run = std::async(std::launch::async, [&] { return spoke.Run(); });
    EXPECT_EQ(wait_for("1"), "1");
    HelloMsg hello;
    hello.site_id = site;
    hello.fingerprint = fingerprint_;
    hello.instance = 99;
    RawPeer copy(port_, hello);
    EXPECT_EQ(copy.Listen(3000).size(), 1u);
    {
      TestDb spoke_db(spoke_path.str());
      spoke_db.Exec("PRAGMA busy_timeout = 10000");  // the sidecar writes too (tracked peers)
      spoke_db.Exec("INSERT INTO t VALUES (2, 'b')");
    }
    EXPECT_EQ(wait_for("2"), "2") << "the spoke stopped syncing after the poke";
    spoke.Stop();
    EXPECT_TRUE(run.get().ok());
    log = capture.Text();
  }
  EXPECT_NE(log.find("connection 1: received ack 0"), std::string::npos) << log;
  EXPECT_EQ(log.find("connection 2:"), std::string::npos) << "the spoke reconnected:\n" << log;
  EXPECT_EQ(log.find("connection 1 closed"), std::string::npos) << log;
  EXPECT_EQ(log.find("connection 1 (127.0.0.1"), std::string::npos) << "it ended:\n" << log;
}

// Nothing is remembered once the first connection ends (a wrong guess
// would lock a node out): the instance refused before is admitted then.
TEST_F(SidecarAdmitTest, OnceTheFirstLeavesTheOtherInstanceIsAdmitted) {
  auto first = Say('\x5a', 1);
  EXPECT_TRUE(first->Listen(300).empty());
  auto copy = Say('\x5a', 2);
  ASSERT_EQ(copy->Listen(3000).size(), 1u);
  first->CloseCleanly();
  EXPECT_EQ(AdmittedWithin('\x5a', 2, 10, &copy), "");
  auto back = Say('\x5a', 1);  // now the first is the one refused
  EXPECT_EQ(back->Listen(3000).size(), 1u);
}

// A first connection that a rebooted host resets when poked ends at once:
// the new instance is admitted.
TEST_F(SidecarAdmitTest, AFirstConnectionThatDiesOnThePokeIsForgotten) {
  auto stale = Say('\x5a', 1);
  EXPECT_TRUE(stale->Listen(300).empty());
  auto rebooted = Say('\x5a', 2);
  ASSERT_EQ(rebooted->Listen(3000).size(), 1u);
  stale->Reset();  // as the rebooted host does when poked
  EXPECT_EQ(AdmittedWithin('\x5a', 2, 10), "");
}

TEST_F(SidecarAdmitTest, OneInstanceMayConnectTwiceAndOtherSitesAreUnaffected) {
  auto first = Say('\x5a', 7);
  auto again = Say('\x5a', 7);    // peers that dialled each other
  auto other = Say('\x3c', 8);    // another node
  auto older = Say('\x5a', 0);    // a node that does not say its instance
  for (RawPeer* p : {first.get(), again.get(), other.get(), older.get()}) {
    EXPECT_TRUE(p->Listen(500).empty());
    EXPECT_FALSE(p->eof());
  }
}

// A node that restarted says hello at a new instance once its old
// connection closed: it is admitted.
TEST_F(SidecarAdmitTest, ANewInstanceIsAdmittedOnceTheOldConnectionsClosed) {
  auto old_run = Say('\x5a', 1);
  EXPECT_TRUE(old_run->Listen(300).empty());
  old_run.reset();  // the process exited: its socket closes
  EXPECT_EQ(AdmittedWithin('\x5a', 2, 20), "");
}

// Two sidecars on one database would say one site id at two instances to
// every peer: the second is refused at start, by name; once the first
// stopped (its object still alive), another may serve the database.
TEST_F(SidecarAdmitTest, ASecondSidecarOnOneDatabaseIsRefusedUntilTheFirstStops) {
  SidecarOptions o;
  o.db_path = path_.str();
  o.listen = "127.0.0.1:0";
  o.log_level = 0;
  Sidecar second(o);
  Status s = second.Run();
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find(path_.str() + "-crsyncd.lock"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("pid " + std::to_string(getpid())), std::string::npos) << s.ToString();

  StopFirst();
  std::atomic<bool> listening{false};
  o.on_listening = [&](int) { listening = true; };
  Sidecar third(o);
  auto run = std::async(std::launch::async, [&] { return third.Run(); });
  for (int i = 0; i < 500 && !listening && run.wait_for(std::chrono::milliseconds(10)) !=
                                               std::future_status::ready;
       ++i) {
  }
  third.Stop();
  Status t = run.get();
  EXPECT_TRUE(t.ok()) << t.ToString();
  EXPECT_TRUE(listening) << "the database stayed locked after its sidecar stopped";
}

// A peer that says why it leaves and hangs up at once: its reason is the
// line that ends the connection in our log. (The end of file used to be
// logged first, by the loop thread, before the strand read the reason.)
class SidecarPartingTest : public SidecarAdmitTest {
 protected:
  void SetUp() override {
    log_level_ = 1;
    SidecarAdmitTest::SetUp();
  }

  // The sidecar's whole log, from a peer's hello (admitted) to its stop,
  // the peer doing `then` in between.
  std::string LogOfAdmittedPeerThat(const std::function<void(RawPeer&)>& then) {
    StderrCapture capture;
    auto peer = Say('\x61', 1);
    EXPECT_TRUE(peer->Listen(300).empty());
    then(*peer);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    StopFirst();
    return capture.Text();
  }
};

TEST_F(SidecarPartingTest, APeersPartingErrorIsItsConnectionsLastLine) {
  const std::string log = LogOfAdmittedPeerThat([](RawPeer& peer) {
    EXPECT_TRUE(peer.Send(ErrorMsg{ErrorMsg::kInternal, "parting words", 0}));
    peer.CloseCleanly();
  });
  const size_t said = log.find("connection 1 closed: peer reported error 4: parting words");
  EXPECT_NE(said, std::string::npos) << log;
  EXPECT_EQ(log.find(") ended:"), std::string::npos)
      << "its end was logged besides its reason:\n" << log;
}

// A peer that just hangs up: that is logged, once.
TEST_F(SidecarPartingTest, APeerHangingUpIsLoggedOnce) {
  const std::string log = LogOfAdmittedPeerThat([](RawPeer& peer) { peer.CloseCleanly(); });
  const size_t ended = log.find("connection 1 (inbound from 127.0.0.1:");
  ASSERT_NE(ended, std::string::npos) << log;
  EXPECT_EQ(log.find(") ended: end of file"), log.find(") ended:", ended)) << log;
  EXPECT_EQ(log.find(") ended:", log.find(") ended:") + 1), std::string::npos) << log;
}

}  // namespace
}  // namespace crsync

namespace crsync {
namespace {

// Liveness past TCP: heartbeats both ways, and a peer that promised them
// and went silent (a vanished host, a relaying hop that keeps the socket
// open: no reset ever comes) is closed.
class SidecarHeartbeatTest : public SidecarAdmitTest {
 protected:
  SidecarHeartbeatTest() { heartbeat_ms_ = 150; }
};

TEST_F(SidecarHeartbeatTest, APeerSilentPastItsOwnHeartbeatIsClosed) {
  auto peer = Say('\x61', 1, /*heartbeat_ms=*/100);
  // It says nothing more: closed after three of its periods and a pump
  // interval (350 ms here), not left open for good.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(peer->Listen(5000).empty());
  EXPECT_TRUE(peer->eof()) << "a silent peer's connection stayed open";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  EXPECT_GE(peer->acks(), 1) << "the sidecar sent no heartbeat";
}

TEST_F(SidecarHeartbeatTest, APeerThatKeepsItsHeartbeatStays) {
  auto peer = Say('\x62', 1, /*heartbeat_ms=*/100);
  for (int i = 0; i < 15; ++i) {  // 1.5 s, four times its silence limit
    EXPECT_TRUE(peer->Listen(100).empty());
    ASSERT_FALSE(peer->eof()) << "closed after " << i * 100 << " ms although it kept talking";
    ASSERT_TRUE(peer->Send(AckMsg{0, 0}));
  }
  // The sidecar's own heartbeats came every 150 ms it sent nothing else.
  EXPECT_GE(peer->acks(), 5);
}

// A node restarted while its old connection went into a black hole: its
// new instance is refused while the old one counts as connected, and
// admitted once the old one's silence ends it (before heartbeats, only
// TCP keepalive could, which a relaying hop answers: never).
TEST_F(SidecarHeartbeatTest, ANodeBackFromABlackHoledConnectionIsAdmitted) {
  auto old_one = Say('\x64', 1, /*heartbeat_ms=*/100);
  EXPECT_TRUE(old_one->Listen(100).empty());
  ASSERT_FALSE(old_one->eof());
  // The old connection is neither read nor closed from here on.
  auto refused = Say('\x64', 2, /*heartbeat_ms=*/100);
  std::vector<ErrorMsg> errors = refused->Listen(3000);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].message.find("two databases share it"), std::string::npos) << errors[0].message;
  // Its silence limit is 350 ms; each refused attempt ends at once.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::unique_ptr<RawPeer> kept;
  EXPECT_EQ(AdmittedWithin('\x64', 2, 3, &kept), "");
}

TEST_F(SidecarHeartbeatTest, APeerThatPromisedNoHeartbeatIsNeverClosedForSilence) {
  auto peer = Say('\x63', 1, /*heartbeat_ms=*/0);  // an older node
  EXPECT_TRUE(peer->Listen(1500).empty());
  EXPECT_FALSE(peer->eof());
  EXPECT_GE(peer->acks(), 5);
}

// A connection in session is probed when another instance of its site id
// asks to be admitted: a peer that promised answers and gives none is taken
// for gone at once (a restart behind a black-holed connection is admitted
// within seconds), one that answers stays, and one that promised nothing is
// left to its heartbeat, as before. Heartbeats are long here (10 s), so
// they decide nothing.
class SidecarProbeTest : public SidecarAdmitTest {
 protected:
  // Long enough for a loaded machine to answer in time.
  SidecarProbeTest() { probe_timeout_ms_ = 1000; }

  // Says hello as `site` at instance 2 every 100 ms (refused attempts end
  // at once) until admitted, for up to `seconds`; "" or why not.
  std::string AdmittedWithinSeconds(char site, int seconds, std::unique_ptr<RawPeer>* kept) {
    std::string why;
    const auto start = std::chrono::steady_clock::now();
    do {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      why = AdmittedWithin(site, 2, 1, kept);
    } while (!why.empty() && std::chrono::steady_clock::now() - start < std::chrono::seconds(seconds));
    return why;
  }

  // Says hello as `site` at instance 2 while instance 1 (`old_one`) is in
  // session: refused by name.
  void ExpectRefused(char site) {
    auto refused = Say(site, 2);
    std::vector<ErrorMsg> errors = refused->Listen(3000);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].message.find("two databases share it"), std::string::npos)
        << errors[0].message;
  }
};

TEST_F(SidecarProbeTest, AProbeIsAnsweredAtOnce) {
  auto peer = Say('\x71', 1);
  EXPECT_TRUE(peer->Listen(1000).empty());
  const int before = peer->acks();  // nothing is acknowledged unasked here
  EXPECT_TRUE(peer->Listen(300).empty());
  EXPECT_EQ(peer->acks(), before);
  ASSERT_TRUE(peer->Send(AckMsg{0, 0, /*probe=*/true}));
  const auto start = std::chrono::steady_clock::now();
  while (peer->acks() == before && std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
    peer->Listen(20);
  }
  EXPECT_EQ(peer->acks(), before + 1) << "the probe went unanswered";
  EXPECT_FALSE(peer->eof());
}

TEST_F(SidecarProbeTest, ARestartedNodeIsAdmittedOnceTheOldConnectionLeavesItsProbeUnanswered) {
  // No heartbeat promised: without the probe, nothing would ever end it.
  auto old_one = Say('\x72', 1, /*heartbeat_ms=*/0, /*answers_probes=*/true);
  EXPECT_TRUE(old_one->Listen(100).empty());
  ASSERT_FALSE(old_one->eof());
  // From here on the old connection is neither read nor closed.
  ExpectRefused('\x72');
  // Unanswered for 1 s (and a pump interval): closed, where its
  // heartbeat silence would never end it.
  std::unique_ptr<RawPeer> kept;
  EXPECT_EQ(AdmittedWithinSeconds('\x72', 5, &kept), "");
  EXPECT_TRUE(old_one->Listen(1000).empty());
  EXPECT_GE(old_one->probes(), 1);
  EXPECT_TRUE(old_one->eof()) << "the unanswering connection stayed open";
}

// Before its Hello a connection may not announce a frame larger than a
// Hello can be: it is closed at the header, not after buffering megabytes
// (or after the handshake timeout). After a Hello, large frames are fine.
TEST_F(SidecarAdmitTest, AFrameTooLargeForAHelloIsRefusedBeforeTheHello) {
  capnp::MallocMessageBuilder builder;
  kj::Array<kj::byte> frame;
  const std::string big(kMaxPayloadBeforeHello + 4096, 'x');
  ASSERT_OK(EncodeMessage(Message{ErrorMsg{ErrorMsg::kProtocol, big}}, &builder));
  ASSERT_OK(FrameEncoder().Encode(builder, &frame));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port_.load()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(write(fd, frame.begin(), 65536), 65536);  // its header and a little
  bool closed = false;
  char buf[4096];
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!closed && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) closed = read(fd, buf, sizeof buf) <= 0;
  }
  close(fd);
  EXPECT_TRUE(closed) << "a frame over the limit before the Hello was waited for";
  // A peer that said Hello may send one (here an error, which ends it).
  auto peer = Say('\x77', 1);
  ASSERT_TRUE(peer->Send(ErrorMsg{ErrorMsg::kProtocol, big}));
  for (const ErrorMsg& e : peer->Listen(2000)) {
    EXPECT_EQ(e.message.find("bad frame"), std::string::npos) << e.message;
  }
  EXPECT_TRUE(peer->eof());
}

// Two connections from the old instance (nodes that dial each other):
// both are probed at the first refusal, not one per attempt.
TEST_F(SidecarProbeTest, EveryConnectionOfTheOldInstanceIsProbed) {
  auto first = Say('\x75', 1, /*heartbeat_ms=*/0, /*answers_probes=*/true);
  auto second = Say('\x75', 1, /*heartbeat_ms=*/0, /*answers_probes=*/true);
  EXPECT_TRUE(first->Listen(100).empty());
  EXPECT_TRUE(second->Listen(100).empty());
  ExpectRefused('\x75');
  EXPECT_TRUE(first->Listen(200).empty());
  EXPECT_TRUE(second->Listen(200).empty());
  EXPECT_EQ(first->probes(), 1);
  EXPECT_EQ(second->probes(), 1);
  // Neither answers: both closed, and the new instance admitted.
  std::unique_ptr<RawPeer> kept;
  EXPECT_EQ(AdmittedWithinSeconds('\x75', 5, &kept), "");
}

TEST_F(SidecarProbeTest, APeerThatAnswersItsProbesStaysAndTheOtherInstanceIsRefused) {
  auto old_one = Say('\x73', 1, /*heartbeat_ms=*/0, /*answers_probes=*/true);
  old_one->set_answer_probes(true);
  for (int i = 0; i < 4; ++i) {  // 4 refusals over 2.4 s, the probe timeout 1 s
    ExpectRefused('\x73');
    EXPECT_TRUE(old_one->Listen(600).empty());
    ASSERT_FALSE(old_one->eof()) << "closed although it answered, after " << i + 1 << " probes";
  }
  EXPECT_GE(old_one->probes(), 1);
}

TEST_F(SidecarProbeTest, APeerThatPromisedNoAnswersIsNotClosedForLackOfOne) {
  auto old_one = Say('\x74', 1, /*heartbeat_ms=*/0, /*answers_probes=*/false);  // an older node
  EXPECT_TRUE(old_one->Listen(100).empty());
  ExpectRefused('\x74');
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  EXPECT_TRUE(old_one->Listen(200).empty());
  EXPECT_FALSE(old_one->eof());
  EXPECT_GE(old_one->probes(), 1);
  ExpectRefused('\x74');
}

}  // namespace
}  // namespace crsync
