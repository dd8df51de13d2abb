// tests/fault/fault_env.h — the fault VFS the fault test program shares:
// registered once, under kVfsName, by a GoogleTest environment
// (fault_env.cc), before any test runs and until all have.
#ifndef CRSYNC_TESTS_FAULT_FAULT_ENV_H_
#define CRSYNC_TESTS_FAULT_FAULT_ENV_H_

#include <string>

#include "crsync/status.h"
#include "tests/fault/fault_vfs.h"

namespace crsync::fault {

inline constexpr char kVfsName[] = "crsync-fault-test";

// The registered VFS (syncs not forwarded: crashes are simulated). Valid
// while tests run.
FaultVfs* TestVfs();

// Copies a file byte for byte (a starting database for one run).
Status CopyFile(const std::string& from, const std::string& to);

}  // namespace crsync::fault

#endif  // CRSYNC_TESTS_FAULT_FAULT_ENV_H_
