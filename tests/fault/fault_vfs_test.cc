// The fault VFS itself, on plain tables without the engine: it forwards
// everything when counting, numbers write points deterministically, reports
// I/O errors with their codes, and a crash keeps what is on disk where a
// power loss keeps only what was synced.
#include <string>
#include <vector>

#include "tests/fault/fault_env.h"
#include "tests/test_util.h"

namespace crsync::fault {
namespace {

// A plain table on the fault VFS, no engine.
Status OpenPlain(const std::string& path, const char* journal_mode, DbPtr* out) {
  CRSYNC_RETURN_IF_ERROR(OpenDb(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, kVfsName, out));
  return Exec(out->get(), std::string("PRAGMA journal_mode = ") + journal_mode);
}

int64_t CountRows(const std::string& path) {
  TestDb db(path);
  return db.Int("SELECT count(*) FROM x");
}

TEST(FaultVfsTest, ForwardsEverythingWhenCounting) {
  for (const char* jm : {"DELETE", "WAL"}) {
    SCOPED_TRACE(jm);
    TempPath path;
    TestVfs()->Count();
    {
      DbPtr db;
      ASSERT_OK(OpenPlain(path.str(), jm, &db));
      ASSERT_OK(Exec(db.get(), "CREATE TABLE x (a); INSERT INTO x VALUES (1), (2);"));
    }
    EXPECT_GT(TestVfs()->write_points(), 0);
    EXPECT_FALSE(TestVfs()->fault().has_value());
    EXPECT_EQ(CountRows(path.str()), 2);
  }
}

TEST(FaultVfsTest, NumberingIsDeterministicAndTraced) {
  std::vector<std::string> traces[2];
  for (auto& trace : traces) {
    TempPath path;
    TestVfs()->Count();
    TestVfs()->set_trace(true);
    {
      DbPtr db;
      ASSERT_OK(OpenPlain(path.str(), "DELETE", &db));
      ASSERT_OK(Exec(db.get(), "CREATE TABLE x (a); INSERT INTO x VALUES (1);"));
    }
    for (const auto& p : TestVfs()->trace()) {
      std::string s = p.ToString();
      trace.push_back(s.substr(0, s.find(" /")) + (p.path.size() > path.str().size()
                                                       ? p.path.substr(path.str().size())
                                                       : std::string()));
    }
    TestVfs()->set_trace(false);
    EXPECT_EQ(static_cast<int64_t>(trace.size()), TestVfs()->write_points());
  }
  EXPECT_EQ(traces[0], traces[1]);
  EXPECT_THAT(traces[0],
              ::testing::Contains("#" + std::to_string(traces[0].size()) + " xDelete-journal"));
}

TEST(FaultVfsTest, IoErrorsAreReportedWithTheirCodes) {
  TempPath path;
  DbPtr db;
  ASSERT_OK(OpenPlain(path.str(), "DELETE", &db));
  ASSERT_OK(Exec(db.get(), "CREATE TABLE x (a)"));
  TestVfs()->ArmIoError(1, /*persistent=*/true);
  Status s = Exec(db.get(), "INSERT INTO x VALUES (1)");
  EXPECT_EQ(s.sqlite_code() & 0xff, SQLITE_IOERR) << s.ToString();
  ASSERT_TRUE(TestVfs()->fault().has_value());
  EXPECT_EQ(TestVfs()->fault()->number, 1);
  s = Exec(db.get(), "INSERT INTO x VALUES (2)");
  EXPECT_FALSE(s.ok()) << "persistent errors keep failing";
  TestVfs()->ArmIoError(1, /*persistent=*/false);
  s = Exec(db.get(), "INSERT INTO x VALUES (3)");
  EXPECT_FALSE(s.ok());
  EXPECT_OK(Exec(db.get(), "INSERT INTO x VALUES (4)")) << "a one-shot error is over";
  db.reset();
  TestVfs()->Count();
  EXPECT_EQ(CountRows(path.str()), 1);
}

// Crash: what is on disk survives, unsynced or not. Power loss: only what was
// synced. With synchronous=OFF nothing is, so the first commit is lost.
TEST(FaultVfsTest, CrashKeepsUnsyncedWritesPowerLossDropsThem) {
  TempPath seed;
  {
    TestDb db(seed.str());
    db.Exec("CREATE TABLE x (a)");
  }
  auto first_commit = [&](const std::string& path, auto&& arm) {
    DbPtr db;
    ASSERT_OK(OpenPlain(path, "DELETE", &db));
    ASSERT_OK(Exec(db.get(), "PRAGMA synchronous = OFF"));
    arm();
    ASSERT_OK(Exec(db.get(), "INSERT INTO x VALUES (1)"));
    Status s = Exec(db.get(), "INSERT INTO x VALUES (2)");
    if (TestVfs()->mode() != FaultVfs::Mode::kCount) {
      EXPECT_FALSE(s.ok());
      EXPECT_FALSE(Exec(db.get(), "SELECT * FROM x").ok()) << "reads fail after the crash";
    }
  };
  int64_t first = 0;
  {
    TempPath path;
    ASSERT_OK(CopyFile(seed.str(), path.str()));
    first_commit(path.str(), [&] { TestVfs()->Count(); });
    first = TestVfs()->write_points();  // both inserts and the close
  }
  ASSERT_GT(first, 0);
  for (bool power_loss : {false, true}) {
    SCOPED_TRACE(power_loss ? "power loss" : "crash");
    TempPath path, capture;
    ASSERT_OK(CopyFile(seed.str(), path.str()));
    // The crash comes at the last write point of the second insert.
    first_commit(path.str(),
                 [&] { ASSERT_OK(TestVfs()->ArmCrash(first, path.str(), capture.str(), power_loss)); });
    ASSERT_TRUE(TestVfs()->fault().has_value());
    ASSERT_OK(TestVfs()->capture_status());
    TestVfs()->Count();
    EXPECT_EQ(CountRows(capture.str()), power_loss ? 0 : 1);
  }
}

}  // namespace
}  // namespace crsync::fault
