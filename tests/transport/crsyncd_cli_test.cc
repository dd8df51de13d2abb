// crsyncd's command line, run as a real process: usage errors, config
// files, status, forget and the demo (tests/meson.build passes the path of
// the built binary as CRSYNCD).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "tests/test_util.h"
#include "transport/peer_session.h"
#include "transport/sidecar_lock.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

constexpr char kSchema[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE items (id PRIMARY KEY NOT NULL, name, qty); SELECT crsql_as_crr('items');";

std::string RunCrsyncd(const std::string& args, int* code) {
  FILE* p = popen((std::string(CRSYNCD) + " " + args + " 2>&1").c_str(), "r");
  std::string out;
  char buf[512];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  int status = p ? pclose(p) : -1;
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

TEST(CrsyncdCliTest, VersionNamesTheProtocolAndSqlite) {
  int code;
  std::string out = RunCrsyncd("--version", &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, std::string("crsyncd ") + CRSYNC_VERSION + " (protocol " +
                     std::to_string(crsync::kProtocolVersion) + ", SQLite " +
                     sqlite3_libversion() + ")\n");
}

TEST(CrsyncdCliTest, UsageErrorsAndConfigFile) {
  int code;
  EXPECT_NE(RunCrsyncd("--help", &code).find("crsyncd run --db PATH"), std::string::npos);
  EXPECT_EQ(code, 0);
  EXPECT_NE(RunCrsyncd("run --help", &code).find("crsyncd run --db PATH"), std::string::npos);
  EXPECT_EQ(code, 0);
  {
    TempPath made;
    TestDb(made.str()).Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL)");
    EXPECT_NE(RunCrsyncd("run --db " + made.str() + " --peer 127.0.0.1:", &code)
                  .find("bad address '127.0.0.1:'"),
              std::string::npos);
    EXPECT_EQ(code, 1);
  }
  EXPECT_NE(RunCrsyncd("run", &code).find("--db PATH is required"), std::string::npos);
  EXPECT_EQ(code, 2);
  // A mistyped command is named as such, whatever follows it.
  for (const char* args : {"rnu", "rnu --db x.db", "stats --db x.db --listen 127.0.0.1:0"}) {
    std::string out = RunCrsyncd(args, &code);
    EXPECT_NE(out.find("unknown command '"), std::string::npos) << args << ": " << out;
    EXPECT_EQ(code, 2) << args;
  }
  // A bad address is reported before the database is looked at, as a log
  // line like the others ("<time>Z crsyncd error: cannot start: ...").
  {
    std::string out = RunCrsyncd("run --db /nonexistent/x.db --listen 127.0.0.1:+80", &code);
    EXPECT_NE(out.find("Z crsyncd error: cannot start: "), std::string::npos) << out;
    EXPECT_NE(out.find("bad address '127.0.0.1:+80'"), std::string::npos) << out;
    EXPECT_EQ(code, 1);
  }
  {
    // status on a file that is not a database says so.
    TempPath text;
    FILE* t = fopen(text.str().c_str(), "w");
    ASSERT_NE(t, nullptr);
    fputs("not a database, just some text that is long enough to have a header............\n", t);
    fclose(t);
    std::string out = RunCrsyncd("status --db " + text.str(), &code);
    EXPECT_NE(out.find("file is not a database"), std::string::npos) << out;
    EXPECT_EQ(code, 1);
  }
  EXPECT_NE(RunCrsyncd("run --db x.db --bogus", &code).find("unknown argument '--bogus'"),
            std::string::npos);
  EXPECT_EQ(code, 2);
  EXPECT_FALSE(std::filesystem::exists("x.db")) << "a refused command made a database";
  EXPECT_NE(RunCrsyncd("run --db /nonexistent/x.db --listen 127.0.0.1:0", &code)
                .find("needs an existing database"),
            std::string::npos);
  EXPECT_EQ(code, 1);
  TempPath cfg;
  FILE* f = fopen(cfg.str().c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("# a comment\ndb = /nonexistent/y.db\nlisten = 127.0.0.1:0\ncolour = blue\n", f);
  fclose(f);
  EXPECT_NE(RunCrsyncd("run --config " + cfg.str(), &code).find(":4: unknown setting 'colour'"),
            std::string::npos);
  EXPECT_EQ(code, 2);
  for (const std::string key : {"heartbeat", "probe_timeout"}) {
    for (const char* bad : {"-1", "10s", "3601", "1.5"}) {
      f = fopen(cfg.str().c_str(), "w");
      fprintf(f, "db = /nonexistent/y.db\n%s = %s\n", key.c_str(), bad);
      fclose(f);
      EXPECT_NE(RunCrsyncd("run --config " + cfg.str(), &code)
                    .find(":2: " + key + " must be a whole number of seconds from 0 (none) to 3600, not '" +
                          std::string(bad) + "'"),
                std::string::npos)
          << key << " = " << bad;
      EXPECT_EQ(code, 2) << bad;
    }
  }
  f = fopen(cfg.str().c_str(), "w");
  fputs("db = /nonexistent/y.db   # where\nlisten = 127.0.0.1:0\nlog = debug\nheartbeat = 0\n"
        "probe_timeout = 2\n", f);
  fclose(f);
  // The file's settings are used (the database path from it is reported).
  EXPECT_NE(RunCrsyncd("run --config " + cfg.str(), &code).find("/nonexistent/y.db"),
            std::string::npos);
  EXPECT_EQ(code, 1);
}

// What a user mistypes gets named for what it is, and nothing runs.
TEST(CrsyncdCliTest, MistakesAreNamedPrecisely) {
  int code;
  std::string out;
  // An unknown flag is unknown, not "missing a value".
  out = RunCrsyncd("demo -v", &code);
  EXPECT_NE(out.find("unknown argument '-v'"), std::string::npos) << out;
  EXPECT_EQ(code, 2);
  out = RunCrsyncd("demo --replicas", &code);
  EXPECT_NE(out.find("--replicas needs a value"), std::string::npos) << out;
  EXPECT_EQ(code, 2);
  for (const char* bad : {"--replicas 2x", "--replicas 17", "--writes 0", "--writes ''"}) {
    out = RunCrsyncd(std::string("demo ") + bad, &code);
    EXPECT_NE(out.find("must be a number"), std::string::npos) << bad << ": " << out;
    EXPECT_EQ(code, 2) << bad;
  }
  // A --dir that is a file: an error, not an uncaught exception (abort).
  TempPath file;
  FILE* f = fopen(file.str().c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  out = RunCrsyncd("demo --dir " + file.str(), &code);
  EXPECT_NE(out.find("cannot create directory " + file.str()), std::string::npos) << out;
  EXPECT_EQ(code, 1);
  // A file of a replica's name that a demo did not make is not replaced:
  // not a database, or the user's own database (it used to be deleted).
  TempPath dir;
  std::filesystem::create_directories(dir.str());
  {
    std::ofstream precious(dir.str() + "/replica1.db");
    precious << "precious";
  }
  out = RunCrsyncd("demo --replicas 2 --writes 2 --dir " + dir.str(), &code);
  EXPECT_NE(out.find("replica1.db exists and is not a database a demo made"), std::string::npos)
      << out;
  EXPECT_EQ(code, 1);
  std::ifstream kept(dir.str() + "/replica1.db");
  std::string text((std::istreambuf_iterator<char>(kept)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "precious");
  std::filesystem::remove(dir.str() + "/replica1.db");
  {
    TestDb own(dir.str() + "/replica0.db");
    own.Exec("CREATE TABLE mine(a); INSERT INTO mine VALUES ('precious')");
  }
  out = RunCrsyncd("demo --replicas 2 --writes 2 --dir " + dir.str(), &code);
  EXPECT_NE(out.find("replica0.db exists and is not a database a demo made"), std::string::npos)
      << out;
  EXPECT_EQ(code, 1);
  {
    TestDb own(dir.str() + "/replica0.db");
    EXPECT_EQ(own.One("SELECT a FROM mine"), "'precious'");
  }
  // Nor is a side file whose database is missing.
  std::filesystem::remove(dir.str() + "/replica0.db");
  { std::ofstream wal(dir.str() + "/replica0.db-wal"); wal << "someone's"; }
  out = RunCrsyncd("demo --replicas 2 --writes 2 --dir " + dir.str(), &code);
  EXPECT_NE(out.find("replica0.db-wal exists without"), std::string::npos) << out;
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(std::filesystem::exists(dir.str() + "/replica0.db-wal"));
  std::filesystem::remove(dir.str() + "/replica0.db-wal");
  // A demo's own databases are replaced by the next run.
  for (int run = 0; run < 2; ++run) {
    out = RunCrsyncd("demo --replicas 2 --writes 2 --dir " + dir.str(), &code);
    EXPECT_EQ(code, 0) << "run " << run << ": " << out;
  }
  std::filesystem::remove_all(dir.str());
  // A --dir whose parent does not exist is not made, with its parents.
  out = RunCrsyncd("demo --dir " + dir.str() + "/no/such", &code);
  EXPECT_NE(out.find("cannot create directory " + dir.str() + "/no/such"), std::string::npos) << out;
  EXPECT_EQ(code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir.str()));
  // A database this process may only read is refused at start, by name
  // (SQLite would open it read-only and every merge would fail).
  {
    TempPath ro;
    TestDb(ro.str()).Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL); SELECT crsql_as_crr('t')");
    out = RunCrsyncd("run --db 'file:" + ro.str() + "?mode=ro' --listen 127.0.0.1:0", &code);
    EXPECT_NE(out.find("opens read-only here"), std::string::npos) << out;
    EXPECT_EQ(out.find("listening"), std::string::npos) << out;
    EXPECT_EQ(code, 1);
  }
  // Config lines of any length, and a byte order mark before the first.
  {
    TempPath made, long_cfg;
    TestDb(made.str()).Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL); SELECT crsql_as_crr('t')");
    {
      std::ofstream c(long_cfg.str());
      c << "\xEF\xBB\xBF# " << std::string(5000, 'x') << "\n"
        << "db = " << made.str() << "   # " << std::string(9000, 'y') << "\n";
    }
    out = RunCrsyncd("status --config " + long_cfg.str(), &code);
    EXPECT_EQ(code, 0) << out.substr(0, 300);
    EXPECT_NE(out.find("database   " + made.str()), std::string::npos) << out.substr(0, 300);
    {
      std::ofstream c(long_cfg.str());
      c << "\xEF\xBB\xBF" << "db = " << made.str() << "\n" << std::string(5000, 'z') << "\n";
    }
    out = RunCrsyncd("status --config " + long_cfg.str(), &code);
    EXPECT_NE(out.find(":2: expected `key = value`"), std::string::npos) << out.substr(0, 300);
    EXPECT_EQ(code, 2);
    // A quoted value is what the quotes hold.
    {
      std::ofstream c(long_cfg.str());
      c << "db = \"" << made.str() << "\"\nlog = 'debug'\n";
    }
    out = RunCrsyncd("status --config " + long_cfg.str(), &code);
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("database   " + made.str() + "\n"), std::string::npos) << out;
  }
  // A config "file" that is a directory cannot be read; it is not empty.
  out = RunCrsyncd("run --config /tmp", &code);
  EXPECT_NE(out.find("cannot read config /tmp: Is a directory"), std::string::npos) << out;
  EXPECT_EQ(code, 2);
  // Single-valued settings given twice are refused, on the command line
  // and in a file.
  out = RunCrsyncd("run --db a.db --listen 127.0.0.1:0 --db b.db", &code);
  EXPECT_NE(out.find("--db is given twice ('a.db' and 'b.db')"), std::string::npos) << out;
  EXPECT_EQ(code, 2);
  out = RunCrsyncd("run --db a.db -v -q", &code);
  EXPECT_NE(out.find("one of -v and -q"), std::string::npos) << out;
  EXPECT_EQ(code, 2);
  for (const char* made : {"a.db", "b.db"}) {
    EXPECT_FALSE(std::filesystem::exists(made)) << "a refused command made " << made;
  }
  TempPath cfg;
  f = fopen(cfg.str().c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("db = /nonexistent/y.db\nlisten = 127.0.0.1:0\ndb = /nonexistent/z.db\n", f);
  fclose(f);
  out = RunCrsyncd("status --config " + cfg.str(), &code);
  EXPECT_NE(out.find(":3: 'db' is set twice"), std::string::npos) << out;
  EXPECT_EQ(code, 2);
  // A flag wins over the file even when it comes first.
  TempPath made;
  TestDb(made.str()).Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL); SELECT crsql_as_crr('t')");
  f = fopen(cfg.str().c_str(), "w");
  fputs("db = /nonexistent/y.db\n", f);
  fclose(f);
  out = RunCrsyncd("status --db " + made.str() + " --config " + cfg.str(), &code);
  EXPECT_NE(out.find("database   " + made.str()), std::string::npos) << out;
  EXPECT_EQ(code, 0) << out;
  // A file that is not a database: named with the reason.
  f = fopen(cfg.str().c_str(), "w");
  fputs("not a database, just some text that is long enough to have a header............\n", f);
  fclose(f);
  out = RunCrsyncd("run --db " + cfg.str() + " --listen 127.0.0.1:0", &code);
  EXPECT_NE(out.find(cfg.str() + ": crsync: file is not a database"), std::string::npos) << out;
  EXPECT_EQ(code, 1);
  // A peer on port 0 is refused before anything is opened or bound: no
  // "listening" line a script could take for a served port.
  out = RunCrsyncd("run --db /nonexistent/x.db --listen 127.0.0.1:0 --peer 127.0.0.1:0", &code);
  EXPECT_NE(out.find("bad peer address '127.0.0.1:0': port 0 cannot be dialled"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("listening"), std::string::npos) << out;
  EXPECT_EQ(code, 1);
}

// A peer that cannot be reached is reported at the default log level (even
// -q), once rather than at every redial; a plain database is warned about.
TEST(CrsyncdCliTest, AnUnreachablePeerAndAnEmptyDatabaseAreReported) {
  TempPath made;
  TestDb(made.str()).Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL)");  // no CRR
  // Port 1 on loopback: nothing listens, every dial is refused at once. (4 s:
  // a SIGINT before crsyncd handles it, on a loaded machine, kills it.)
  const std::string cmd = "timeout --preserve-status -s INT 4 " + std::string(CRSYNCD) +
                          " run -q --db " + made.str() + " --peer 127.0.0.1:1 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ": " << out;
  EXPECT_NE(out.find("cannot reach 127.0.0.1:1: connection refused (attempt 1;"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("(attempt 2;"), std::string::npos) << "every redial logged: " << out;
  EXPECT_NE(out.find("has no CRRs yet"), std::string::npos) << out;
}

// status counts, per peer, the changes it has not acknowledged that did not
// come from it: versions holding only its own changes are not a backlog.
TEST(CrsyncdCliTest, StatusCountsTheChangesAPeerStillNeeds) {
  TempPath path;
  const std::string peer(32, '3');
  {
    TestDb db(path.str());
    db.Exec(std::string(kSchema) +
            "INSERT INTO items VALUES (1, 'a', 1); INSERT INTO items VALUES (2, 'b', 2);"
            "INSERT INTO items VALUES (3, 'c', 3);");  // versions 1-3, 6 changes
    // Versions 4 and 5: the peer's own changes, merged here.
    for (int v = 1; v <= 2; ++v) {
      db.Exec("INSERT INTO crsql_changes VALUES ('items', crsql_pack_columns(" +
              std::to_string(10 + v) + "), 'name', 'p', 1, " + std::to_string(v) + ", x'" + peer +
              "')");
    }
    // The peer acknowledged our version 1.
    db.Exec("INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (x'" +
            peer + "', 1, 0, " + std::to_string(kSidecarTag) + ", 1)");
    ASSERT_EQ(db.Int("SELECT crsql_db_version()"), 5);
  }
  int code;
  std::string out = RunCrsyncd("status --db " + path.str(), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("changes to send"), std::string::npos) << out;
  // Versions 2 and 3 hold 4 changes for it; 4 and 5 are its own.
  std::string row;
  for (size_t at = out.find(peer); at != std::string::npos && at < out.size(); ++at) {
    if (out[at] == '\n') break;
    row += out[at];
  }
  std::istringstream fields(row);
  std::string site, received, has_ours, to_send;
  fields >> site >> received >> has_ours >> to_send;
  EXPECT_EQ(has_ours, "1") << out;
  EXPECT_EQ(to_send, "4") << out;
  // The merges above tracked the peer under tag 0 too: the application's
  // own cursor, mentioned but not listed as a peer of crsyncd.
  EXPECT_NE(out.find("(and 1 cursor rows under other tags than crsyncd's 1001"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("(no peers"), std::string::npos) << out;
  EXPECT_EQ(out.find("(- :"), std::string::npos) << out;
  // A peer that never acknowledged ours shows "-", and the legend says why.
  {
    TestDb db(path.str());
    db.Exec("DELETE FROM crsql_tracked_peers WHERE event = 1;"
            "INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (x'" +
            peer + "', 2, 0, " + std::to_string(kSidecarTag) + ", 0)");
  }
  out = RunCrsyncd("status --db " + path.str(), &code);
  std::istringstream again(out.substr(out.find(peer)));
  again >> site >> received >> has_ours >> to_send;
  EXPECT_EQ(received + " " + has_ours + " " + to_send, "2 - -") << out;
  EXPECT_NE(out.find("(- : that peer has acknowledged none of our versions"), std::string::npos)
      << out;
}

TEST(CrsyncdCliTest, StatusOfADatabaseCrsyncNeverTouchedSaysWhy) {
  TempPath path;
  {
    // Made through an attachment: an earlier test of this program may have
    // registered the engine for every connection, which sets main up.
    TestDb other;
    other.Exec("ATTACH '" + path.str() + "' AS plain; CREATE TABLE plain.x (a); DETACH plain;");
  }
  int code;
  std::string out = RunCrsyncd("status --db " + path.str(), &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("is not a crsync database yet: no CRR was made in it"), std::string::npos) << out;
}

TEST(CrsyncdCliTest, StatusOfADatabaseWithoutPeersSaysSo) {
  TempPath path;
  {
    TestDb db(path.str());
    db.Exec(kSchema);
  }
  int code;
  std::string out = RunCrsyncd("status --db " + path.str(), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("(no peers recorded: a peer is listed once a version moved between it and "
                     "this database"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("other tags"), std::string::npos) << out;
}

// A peer gone for good is forgotten by name; a wrong or unknown site id is
// refused, and nothing else is touched.
TEST(CrsyncdCliTest, ForgetDropsOnlyThatPeersCursors) {
  TempPath path;
  const std::string gone(32, 'a'), kept(32, 'b');
  {
    TestDb db(path.str());
    db.Exec(kSchema);
    for (const std::string& p : {gone, kept}) {
      for (int event : {0, 1}) {
        db.Exec("INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (x'" +
                p + "', 3, 0, " + std::to_string(kSidecarTag) + ", " + std::to_string(event) + ")");
      }
    }
    db.Exec("INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (x'" + gone +
            "', 9, 0, 0, 0)");  // the application's own row, not the sidecar's
  }
  int code;
  std::string out = RunCrsyncd("forget --db " + path.str() + " --site " + gone, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("forgot peer " + gone + " (2 cursors)"), std::string::npos) << out;
  {
    TestDb db(path.str());
    EXPECT_EQ(db.One("SELECT group_concat(lower(hex(site_id)) || ':' || tag, ' ') FROM "
                     "(SELECT * FROM crsql_tracked_peers ORDER BY site_id, tag, event)"),
              "'" + gone + ":0 " + kept + ":1001 " + kept + ":1001'");
  }
  auto peers = [&] {
    TestDb db(path.str());
    return db.Query(
        "SELECT hex(site_id), version, tag, event FROM crsql_tracked_peers ORDER BY 1, 3");
  };
  const Rows peers_before = peers();
  out = RunCrsyncd("forget --db " + path.str() + " --site " + gone, &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("keeps no cursor for peer"), std::string::npos) << out;
  out = RunCrsyncd("forget --db " + path.str() + " --site xyz", &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("32 hex digits, not 'xyz'"), std::string::npos) << out;
  out = RunCrsyncd("forget --db " + path.str(), &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("--site SITE_ID is required"), std::string::npos) << out;
  EXPECT_EQ(peers(), peers_before) << "a refused forget changed the cursors";
  // Its own site id is not a peer's: what it keeps there is its restore
  // epoch, which its peers check. Refused, and kept.
  std::string own, rows;
  {
    TestDb db(path.str());
    own = db.Text("SELECT lower(hex(crsql_site_id()))");
    db.Exec("INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES "
            "(crsql_site_id(), 5, 0, " + std::to_string(kSidecarTag) + ", 3)");
    rows = db.One("SELECT count(*) FROM crsql_tracked_peers");
  }
  out = RunCrsyncd("forget --db " + path.str() + " --site " + own, &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find(own + " is the site id of " + path.str() + " itself"), std::string::npos) << out;
  EXPECT_EQ(TestDb(path.str()).One("SELECT count(*) FROM crsql_tracked_peers"), rows);
}

// forget rewrites what a running sidecar keeps in memory: it is refused
// while one holds the database's lock (here this process), naming it.
TEST(CrsyncdCliTest, ForgetIsRefusedWhileASidecarServesTheDatabase) {
  TempPath path;
  const std::string site(32, 'c');
  {
    TestDb db(path.str());
    db.Exec(kSchema);
    db.Exec("INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (x'" + site +
            "', 3, 0, " + std::to_string(kSidecarTag) + ", 0)");
  }
  const std::string real = std::filesystem::canonical(path.str()).string();
  int code;
  {
    SidecarLock running;
    ASSERT_OK(running.Acquire(real));
    std::string out = RunCrsyncd("forget --db " + path.str() + " --site " + site, &code);
    EXPECT_EQ(code, 1) << out;
    EXPECT_NE(out.find("pid " + std::to_string(getpid())), std::string::npos) << out;
    EXPECT_NE(out.find("stop it first"), std::string::npos) << out;
    EXPECT_EQ(out.find("FailedPrecondition"), std::string::npos) << "a code name: " << out;
    TestDb db(path.str());
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_tracked_peers"), "1");
  }
  std::string out = RunCrsyncd("forget --db " + path.str() + " --site " + site, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("forgot peer " + site), std::string::npos) << out;
}

// Smaller usage errors: each named, exit status 2, nothing made.
TEST(CrsyncdCliTest, UsageNitsAreNamed) {
  TempPath dir_path, cfg;
  std::filesystem::create_directory(dir_path.str());
  int code;
  // `--flag=value` is `--flag value`: this gets as far as the database.
  std::string out = RunCrsyncd("run --db=/nonexistent/x.db --listen=127.0.0.1:0", &code);
  EXPECT_NE(out.find("needs an existing database"), std::string::npos) << out;
  EXPECT_EQ(code, 1) << out;
  for (const char* cmd : {"run --listen 127.0.0.1:0 --db ", "status --db "}) {
    out = RunCrsyncd(cmd + dir_path.str(), &code);
    EXPECT_NE(out.find(dir_path.str() + " is a directory, not a database file"), std::string::npos)
        << out;
    EXPECT_EQ(code, 2) << out;
  }
  auto with_config = [&](const std::string& text, const std::string& more) {
    std::ofstream(cfg.str()) << text;
    return RunCrsyncd("run --config " + cfg.str() + more, &code);
  };
  out = with_config("db = \"x.db\nlisten = 127.0.0.1:0\n", "");
  EXPECT_NE(out.find(":1: the quote that opens db's value is not closed"), std::string::npos) << out;
  EXPECT_EQ(code, 2);
  out = with_config("db = x.db\nlog = verbose\n", "");
  EXPECT_NE(out.find(":2: log must be error, info or debug, not 'verbose'"), std::string::npos)
      << out;
  EXPECT_EQ(code, 2);
  // A peer in the file and on the command line is dialled once (the run
  // then stops at the missing database).
  out = with_config("db = x.db\npeer = 127.0.0.1:9\n", " --peer 127.0.0.1:9");
  EXPECT_NE(out.find("peer 127.0.0.1:9 is given twice: dialled once"), std::string::npos) << out;
  EXPECT_NE(out.find("needs an existing database"), std::string::npos) << out;
  EXPECT_EQ(code, 1);
  // The demo takes `--flag=value` too.
  out = RunCrsyncd("demo --replicas=2 --writes=2", &code);
  EXPECT_NE(out.find("converged: 2 replicas identical"), std::string::npos) << out;
  EXPECT_EQ(code, 0) << out;
  EXPECT_FALSE(std::filesystem::exists("x.db")) << "a refused command made a database";
  std::filesystem::remove(dir_path.str());
}

// The lock goes by name: a database with a second name (a hard link) is
// refused outright, by run and by forget, rather than served twice.
TEST(CrsyncdCliTest, AHardLinkedDatabaseIsRefused) {
  TempPath path, link;
  TestDb(path.str()).Exec(kSchema);
  ASSERT_EQ(::link(path.str().c_str(), link.str().c_str()), 0);
  int code;
  for (const std::string& cmd : {"forget --db " + path.str() + " --site " + std::string(32, 'c'),
                                 "status --db " + link.str()}) {
    std::string out = RunCrsyncd(cmd, &code);
    EXPECT_EQ(code, 1) << out;
    EXPECT_NE(out.find("has 2 hard links"), std::string::npos) << out;
    EXPECT_EQ(out.find("stop it first"), std::string::npos) << out;
  }
  // Refused before SQLite opened it under the second name.
  EXPECT_FALSE(std::filesystem::exists(link.str() + "-shm"));
  EXPECT_FALSE(std::filesystem::exists(link.str() + "-wal"));
  std::string out;
  // Bounded: a run that served it would not end by itself.
  FILE* p = popen(("timeout -s KILL 10 " + std::string(CRSYNCD) + " run -q --db " + link.str() +
                   " --listen 127.0.0.1:0 2>&1")
                      .c_str(),
                  "r");
  ASSERT_NE(p, nullptr);
  out.clear();
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status << ": " << out;
  EXPECT_NE(out.find("has 2 hard links"), std::string::npos) << out;
}

// Leaving a rollback journal for WAL needs the database to itself: an
// application's open read transaction makes `run` fail after its busy
// timeout, saying what to do.
TEST(CrsyncdCliTest, ADatabaseKeptBusyInRollbackModeIsExplainedAtStart) {
  TempPath path;
  TestDb app(path.str());
  app.Exec("CREATE TABLE items (id PRIMARY KEY NOT NULL, name); SELECT crsql_as_crr('items');"
           "INSERT INTO items VALUES (1, 'a')");
  app.Exec("BEGIN; SELECT count(*) FROM items;");  // holds a read lock
  int code;
  std::string out = RunCrsyncd("run -q --db " + path.str() + " --listen 127.0.0.1:0", &code);
  app.Exec("COMMIT");
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot switch " + path.str() + " to WAL"), std::string::npos) << out;
  EXPECT_NE(out.find("PRAGMA journal_mode = WAL"), std::string::npos) << out;
}

// The README's main job: `crsyncd demo` converges and exits 0.
TEST(CrsyncdDemoTest, DemoConvergesAndExitsCleanly) {
  std::string cmd = std::string(CRSYNCD) + " demo --replicas 3 --writes 40 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("converged: 3 replicas identical"), std::string::npos) << out;
}

// SIGINT stops the whole demo (its apps and every in-process sidecar), which
// removes its temporary databases and exits 128 + SIGINT; before, each
// sidecar took the signal and stopped alone while the apps wrote on.
TEST(CrsyncdCliTest, SigintStopsTheWholeDemo) {
  int out_pipe[2];
  ASSERT_EQ(pipe(out_pipe), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(out_pipe[1], 2);
    close(out_pipe[0]);
    close(out_pipe[1]);
    execl(CRSYNCD, CRSYNCD, "demo", "--replicas", "2", "--writes", "1000000",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  FILE* out = fdopen(out_pipe[0], "r");
  ASSERT_NE(out, nullptr);
  std::string text;
  char buf[512];
  // The first line names the directory; progress follows once apps write.
  while (fgets(buf, sizeof buf, out)) {
    text += buf;
    if (text.find("[") != std::string::npos) break;
  }
  kill(pid, SIGINT);
  // Bounded: the demo must be gone well before this, or it is killed.
  int status = 0;
  bool exited = false;
  for (int i = 0; i < 300 && !exited; ++i) {
    exited = waitpid(pid, &status, WNOHANG) == pid;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  while (fgets(buf, sizeof buf, out)) text += buf;
  fclose(out);
  ASSERT_TRUE(exited) << "the demo kept running after SIGINT: " << text;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGINT) << status << ": " << text;
  EXPECT_NE(text.find("interrupted (SIGINT): apps and sidecars stopped"), std::string::npos)
      << text;
  const size_t at = text.find(" in /tmp/crsyncd-demo-");
  ASSERT_NE(at, std::string::npos) << text;
  const std::string dir = text.substr(at + 4, text.find('\n', at) - at - 4);
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir << " left behind: " << text;
}

}  // namespace
}  // namespace crsync
