// tools/demo_files.h — where the demos keep their databases.
//
// The demos are run by hand with a user-chosen --dir; a bad one (a file, a
// directory without permission) is an error message and exit 1, never an
// uncaught std::filesystem exception.
#ifndef CRSYNC_TOOLS_DEMO_FILES_H_
#define CRSYNC_TOOLS_DEMO_FILES_H_

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <system_error>
#include <vector>

namespace crsync {

// The demos mark their databases with this PRAGMA application_id ("crsd"),
// so that a later run replaces them and nothing else.
inline constexpr uint32_t kDemoApplicationId = 0x63727364;  // 'c' 'r' 's' 'd'
inline const std::string kMarkDemoDatabase =
    "PRAGMA application_id = " + std::to_string(kDemoApplicationId) + ";";

// Whether `path` is empty or a database a demo made, judged by its header
// (the application id is at offset 68, big-endian).
inline bool IsDemoDatabase(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  unsigned char head[72] = {};
  f.read(reinterpret_cast<char*>(head), sizeof head);
  if (f.gcount() == 0) return true;
  if (f.gcount() != sizeof head || std::memcmp(head, "SQLite format 3", 16) != 0) return false;
  const uint32_t id = (uint32_t{head[68]} << 24) | (uint32_t{head[69]} << 16) |
                      (uint32_t{head[70]} << 8) | head[71];
  return id == kDemoApplicationId;
}

// Creates `dir` if needed (its parent must exist) and removes a previous
// run's copies of `dbs` (each with its -wal, -shm, -crsync and sidecar lock
// files). A
// file of one of those names that a demo did not make is left alone and
// the demo refused. Returns "" or what went wrong, naming the path.
inline std::string PrepareDemoDir(const std::string& dir, const std::vector<std::string>& dbs) {
  std::error_code ec;
  std::filesystem::create_directory(dir, ec);
  if (ec) return "cannot create directory " + dir + ": " + ec.message();
  if (!std::filesystem::is_directory(dir, ec)) return dir + " is not a directory";
  for (const std::string& db : dbs) {
    if (std::filesystem::exists(db, ec)) {
      if (!std::filesystem::is_regular_file(db, ec) || !IsDemoDatabase(db)) {
        return db + " exists and is not a database a demo made; the demo replaces only its own "
               "databases (choose another --dir)";
      }
      continue;
    }
    // Side files without their database: nothing says whose they are.
    for (const char* suffix : {"-wal", "-shm", "-crsync", "-journal"}) {
      if (std::filesystem::exists(db + suffix, ec)) {
        return db + suffix + " exists without " + db + "; the demo replaces only its own "
               "databases (choose another --dir)";
      }
    }
  }
  for (const std::string& db : dbs) {
    for (const char* suffix : {"", "-wal", "-shm", "-crsync", "-journal", "-crsyncd.lock"}) {
      std::filesystem::remove(db + suffix, ec);
      if (ec) return "cannot remove " + db + suffix + ": " + ec.message();
    }
  }
  return "";
}

// Removes a directory the demo made for itself; failures are left be (the
// demo's result does not depend on it).
inline void RemoveDemoDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace crsync

#endif  // CRSYNC_TOOLS_DEMO_FILES_H_
