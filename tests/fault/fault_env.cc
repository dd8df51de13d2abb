// tests/fault/fault_env.cc — see fault_env.h.
#include "tests/fault/fault_env.h"

#include <fstream>
#include <memory>

#include "tests/test_util.h"

namespace crsync::fault {
namespace {

FaultVfs* g_vfs = nullptr;

class FaultVfsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    Status s = FaultVfs::Register(kVfsName, &vfs_);
    ASSERT_OK(s);
    vfs_->set_forward_syncs(false);  // crashes are simulated; real fsyncs only cost time
    g_vfs = vfs_.get();
  }
  void TearDown() override {
    g_vfs = nullptr;
    vfs_.reset();
  }

 private:
  std::unique_ptr<FaultVfs> vfs_;
};

[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new FaultVfsEnvironment);

}  // namespace

FaultVfs* TestVfs() { return g_vfs; }

Status CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return Status::IOError("cannot read " + from);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  out.flush();
  if (!out) return Status::IOError("cannot write " + to);
  return Status::OK();
}

}  // namespace crsync::fault
