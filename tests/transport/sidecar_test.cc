// Sidecar lifecycle in-process: Stop() before the loop runs and after Run()
// has returned. (Networking is covered end to end in crsyncd_e2e_test.)
#include "transport/sidecar.h"

#include <chrono>
#include <future>
#include <thread>

#include "tests/test_util.h"

namespace crsync {
namespace {

// A database the sidecar can open.
void MakeDb(const TempPath& path) {
  TestDb db(path.str());
  db.Exec("PRAGMA journal_mode = WAL; CREATE TABLE t (id PRIMARY KEY NOT NULL, v);"
          "SELECT crsql_as_crr('t');");
}

TEST(SidecarTest, StopBeforeTheLoopRunsIsKeptAndRunReturns) {
  TempPath path;
  MakeDb(path);
  SidecarOptions o;
  o.db_path = path.str();
  o.listen = "127.0.0.1:0";
  o.log_level = 0;
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
  MakeDb(path);
  SidecarOptions o;
  o.db_path = path.str();
  o.listen = "not-an-address";  // fails after the loop exists
  o.log_level = 0;
  Sidecar sidecar(o);
  Status s = sidecar.Run();
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("not-an-address"), std::string::npos) << s.ToString();
  sidecar.Stop();  // the loop is closed: this must neither crash nor hang
  sidecar.Stop();
}

TEST(SidecarTest, BadPeerAddressesAreRefusedByName) {
  TempPath path;
  MakeDb(path);
  for (const char* bad : {"127.0.0.1:0", "127.0.0.1:", ":4000", "127.0.0.1:70000", "localhost:4000"}) {
    SidecarOptions o;
    o.db_path = path.str();
    o.peers = {bad};
    o.log_level = 0;
    Sidecar sidecar(o);
    Status s = sidecar.Run();
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << bad << ": " << s.ToString();
    EXPECT_NE(s.message().find(bad), std::string::npos) << s.ToString();
  }
}

}  // namespace
}  // namespace crsync
