// tests/install/sidecar_consumer.cc — a C++ program built only from what
// `meson install` puts on a machine (pkg-config crsync-sidecar): it makes
// DB with one CRR (crsync.h), runs a crsync::Sidecar on it, listening on
// 127.0.0.1 (any port), and stops it once it is ready. Prints "ok" and
// exits 0, or says what failed and exits 1.
#include <crsync/crsync.h>
#include <crsync/sidecar.h>
#include <sqlite3.h>

#include <cstdio>
#include <memory>

namespace {

bool MakeDatabase(const char* path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK) rc = crsync_engine_init(db, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(db,
                      "CREATE TABLE todo (id PRIMARY KEY NOT NULL, title);"
                      "SELECT crsql_as_crr('todo');",
                      nullptr, nullptr, nullptr);
  }
  if (rc != SQLITE_OK) std::fprintf(stderr, "sidecar_consumer: %s\n", sqlite3_errmsg(db));
  sqlite3_close(db);
  return rc == SQLITE_OK;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: sidecar_consumer DB\n");
    return 2;
  }
  if (!MakeDatabase(argv[1])) return 1;
  int port = 0;
  bool ready = false;
  std::unique_ptr<crsync::Sidecar> sidecar;
  crsync::SidecarOptions options;
  options.db_path = argv[1];
  options.listen = "127.0.0.1:0";
  options.log_level = 0;
  options.on_listening = [&](int p) { port = p; };
  options.on_ready = [&] {
    ready = true;
    sidecar->Stop();
  };
  sidecar = std::make_unique<crsync::Sidecar>(options);
  crsync::Status s = sidecar->Run();
  if (!s.ok() || !ready || port <= 0) {
    std::fprintf(stderr, "sidecar_consumer: Run() says %s; ready %d, port %d\n",
                 s.ToString().c_str(), ready, port);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
