// tools/demo_files.h — where the demos keep their databases.
//
// The demos are run by hand with a user-chosen --dir; a bad one (a file, a
// directory without permission) is an error message and exit 1, never an
// uncaught std::filesystem exception.
#ifndef CRSYNC_TOOLS_DEMO_FILES_H_
#define CRSYNC_TOOLS_DEMO_FILES_H_

#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <system_error>
#include <vector>

namespace crsync {

// Whether `path` is an SQLite database (or empty), judged by its header.
inline bool LooksLikeSqlite(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char head[16] = {};
  f.read(head, sizeof head);
  return f.gcount() == 0 || (f.gcount() == 16 && std::memcmp(head, "SQLite format 3", 16) == 0);
}

// Creates `dir` if needed and removes a previous run's copies of `dbs` (each
// with its -wal, -shm and -crsync files). A file of one of those names that
// is not an SQLite database is not the demo's: it is left alone and the
// demo refused. Returns "" or what went wrong, naming the path.
inline std::string PrepareDemoDir(const std::string& dir, const std::vector<std::string>& dbs) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return "cannot create directory " + dir + ": " + ec.message();
  if (!std::filesystem::is_directory(dir, ec)) return dir + " is not a directory";
  for (const std::string& db : dbs) {
    if (std::filesystem::exists(db, ec) &&
        (!std::filesystem::is_regular_file(db, ec) || !LooksLikeSqlite(db))) {
      return db + " exists and is not an SQLite database; the demo replaces only its own "
             "databases (choose another --dir)";
    }
  }
  for (const std::string& db : dbs) {
    for (const char* suffix : {"", "-wal", "-shm", "-crsync"}) {
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
