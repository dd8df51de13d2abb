// crsyncd — the crsync replication sidecar.
//
//   crsyncd run --db PATH [--listen HOST:PORT] [--peer HOST:PORT]... [-v|-q]
//   crsyncd status --db PATH
//   crsyncd forget --db PATH --site SITE_ID
//   crsyncd --help | --version
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "crsync/crsync.h"
#include "crsync/sqlite_handles.h"
#include "transport/peer_session.h"
#include "crsync/sidecar.h"
#include "transport/sidecar_lock.h"
#include "tools/crsyncd_demo.h"

namespace {

const char kUsage[] =
    "usage:\n"
    "  crsyncd run --db PATH [--listen HOST:PORT] [--peer HOST:PORT]... [-v | -q]\n"
    "  crsyncd run --config FILE [options...]\n"
    "  crsyncd status --db PATH | --config FILE\n"
    "  crsyncd forget --db PATH | --config FILE  --site SITE_ID\n"
    "  crsyncd demo [--replicas N] [--writes N] [--dir DIR]\n"
    "  crsyncd --help | --version\n"
    "\n"
    "run     Replicates the CRRs of the SQLite database PATH with peers: listens for\n"
    "        connections (a hub), dials peers (a spoke or a mesh member), or both.\n"
    "        Every connection exchanges changes in both directions. New local\n"
    "        commits are noticed through the crsync VFS signal (<db>-crsync) and a\n"
    "        1 s timer. Stops cleanly on SIGINT/SIGTERM. On stdout it prints\n"
    "        `listening PORT` once it listens (the port picked for port 0) and\n"
    "        `ready` once it runs; the log goes to stderr.\n"
    "          --listen HOST:PORT   numeric IPv4/IPv6 address; port 0 picks one\n"
    "          --peer HOST:PORT     dial this peer (repeatable); redialled with backoff\n"
    "          -v / -q              more / less logging (stderr): -v adds what each\n"
    "                               connection receives and sends\n"
    "          --config FILE        read settings from FILE, one `key = value` per line\n"
    "                               (db, listen, peer (repeatable), log = error|info|debug,\n"
    "                               heartbeat = seconds (default 10; 0 = none): say\n"
    "                               something that often when idle, and close a peer's\n"
    "                               connection silent for three of its periods;\n"
    "                               probe_timeout = seconds (default 5; 0 = none):\n"
    "                               when a restarted peer says hello while its old\n"
    "                               connection is open, close that one if it does not\n"
    "                               answer a probe in time;\n"
    "                               `#` starts a comment; a value may be in quotes);\n"
    "                               --db, --listen, -v and -q on the command line\n"
    "                               override the file wherever they stand, and each\n"
    "                               --peer adds to its peers; a relative db path is\n"
    "                               taken from the working directory, not the file's\n"
    "        Addresses are numeric (no host names). The database is switched to WAL\n"
    "        (for good, as PRAGMA journal_mode does). One run per database: it\n"
    "        holds <db>-crsyncd.lock (with its pid; the file stays after exit,\n"
    "        harmlessly), and a second run is refused. A database file with\n"
    "        more than one name (hard links) is refused.\n"
    "        No authentication or encryption: whoever can connect is a peer, so\n"
    "        listen only where just your replicas can reach (docs/protocol.md).\n"
    "status  Prints this database's site id, db_version and, per peer, the cursors\n"
    "        (what we received from it, what it acknowledged of ours) and how many of\n"
    "        our changes it has not acknowledged yet.\n"
    "forget  Deletes the cursors kept for the peer SITE_ID (32 hex digits, as status\n"
    "        shows it): for a peer that is gone for good (its database replaced or\n"
    "        retired), which status would otherwise list with a growing backlog. If\n"
    "        it comes back, both sides start over from the beginning (what was\n"
    "        merged already is merged again, harmlessly). Refused while a crsyncd\n"
    "        runs on PATH: it keeps the cursors of connected peers and would write\n"
    "        them back.\n"
    "demo    Needs no configuration: N replicas (default 3) on 127.0.0.1, a hub and\n"
    "        spokes, each with an app writing one-row transactions through the crsync\n"
    "        VFS; shows live progress and how long the replicas take to converge.\n"
    "        --replicas N (2-16, default 3); --writes N one-row transactions per app\n"
    "        (default 200); --dir DIR keeps the databases there (replicaN.db; DIR is\n"
    "        created if its parent exists; databases a demo made are replaced, any\n"
    "        other file of those names is refused and left as it is).\n";

// Parses all of `text` as a decimal integer within [lo, hi].
bool ParseInt(const char* text, int lo, int hi, int* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

// Reads `key = value` lines into opts. Returns false (after printing why)
// on an unreadable file, an unknown key or a bad value.
bool ReadConfig(const std::string& path, crsync::SidecarOptions* opts) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "r"), &std::fclose);
  FILE* f = file.get();
  if (!f) {
    std::fprintf(stderr, "crsyncd: cannot read config %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  // One whole line, however long (without its newline); false at the end.
  auto read_line = [f](std::string* line) {
    line->clear();
    char buf[4096];
    while (std::fgets(buf, sizeof buf, f)) {
      line->append(buf);
      if (!line->empty() && line->back() == '\n') {
        line->pop_back();
        return true;
      }
    }
    return !line->empty();
  };
  int line_no = 0;
  bool ok = true;
  std::set<std::string> seen;  // single-valued keys already set
  auto trim = [](std::string s) {
    size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  std::string line;
  while (ok && read_line(&line)) {
    ++line_no;
    // A UTF-8 byte order mark (some editors write one) is not part of the key.
    if (line_no == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    size_t eq = line.find('=');
    std::string key = trim(line.substr(0, eq)), value = eq == std::string::npos ? "" : trim(line.substr(eq + 1));
    // A value in matching quotes is what they hold: db = "my app.db".
    const bool quoted = !value.empty() && (value.front() == '"' || value.front() == '\'');
    const bool closed = quoted && value.size() >= 2 && value.back() == value.front();
    if (closed) value = value.substr(1, value.size() - 2);
    if (quoted && !closed) {
      std::fprintf(stderr, "crsyncd: %s:%d: the quote that opens %s's value is not closed\n",
                   path.c_str(), line_no, key.c_str());
      ok = false;
    } else if (eq == std::string::npos || value.empty()) {
      std::fprintf(stderr, "crsyncd: %s:%d: expected `key = value`\n", path.c_str(), line_no);
      ok = false;
    } else if (key != "peer" && !seen.insert(key).second) {
      std::fprintf(stderr, "crsyncd: %s:%d: '%s' is set twice\n", path.c_str(), line_no, key.c_str());
      ok = false;
    } else if (key == "db") {
      opts->db_path = value;
    } else if (key == "listen") {
      opts->listen = value;
    } else if (key == "peer") {
      opts->peers.push_back(value);
    } else if (key == "log") {
      if (value == "error") {
        opts->log_level = 0;
      } else if (value == "info") {
        opts->log_level = 1;
      } else if (value == "debug") {
        opts->log_level = 2;
      } else {
        std::fprintf(stderr, "crsyncd: %s:%d: log must be error, info or debug, not '%s'\n",
                     path.c_str(), line_no, value.c_str());
        ok = false;
      }
    } else if (key == "heartbeat" || key == "probe_timeout") {
      // Seconds, a whole number: 0 (none) up to an hour.
      char* end = nullptr;
      errno = 0;
      const long secs = std::strtol(value.c_str(), &end, 10);
      if (errno != 0 || *end != '\0' || secs < 0 || secs > 3600) {
        std::fprintf(stderr,
                     "crsyncd: %s:%d: %s must be a whole number of seconds from 0 (none) "
                     "to 3600, not '%s'\n",
                     path.c_str(), line_no, key.c_str(), value.c_str());
        ok = false;
      } else {
        (key == "heartbeat" ? opts->heartbeat_ms : opts->probe_timeout_ms) =
            static_cast<int>(secs) * 1000;
      }
    } else {
      std::fprintf(stderr, "crsyncd: %s:%d: unknown setting '%s'\n", path.c_str(), line_no, key.c_str());
      ok = false;
    }
  }
  if (ok && std::ferror(f)) {  // e.g. a directory: fopen works, reading does not
    std::fprintf(stderr, "crsyncd: cannot read config %s: %s\n", path.c_str(), std::strerror(errno));
    ok = false;
  }
  return ok;
}

// Opens the database of an offline command (`crsyncd status`, `forget`),
// waiting up to 5 s for a lock; says why not, as `cmd`, when it cannot.
bool OpenForCommand(const char* cmd, const std::string& db_path, int flags, crsync::DbPtr* db) {
  crsync::Status s = crsync::OpenDb(db_path, flags, nullptr, db);
  if (!s.ok()) {
    std::fprintf(stderr, "crsyncd %s: %s\n", cmd, s.message().c_str());
    return false;
  }
  sqlite3_busy_timeout(db->get(), 5000);
  return true;
}

int Status(const std::string& db_path) {
  crsync::DbPtr db;
  if (!OpenForCommand("status", db_path, SQLITE_OPEN_READONLY, &db)) return 1;
  char* err = nullptr;
  if (crsync_engine_init(db.get(), &err) != SQLITE_OK) {
    std::fprintf(stderr, "crsyncd status: %s: %s\n", db_path.c_str(),
                 err ? err : "cannot install the engine");
    sqlite3_free(err);
    return 1;
  }
  crsync::StmtPtr st;
  if (!crsync::Prepare(db.get(), "SELECT lower(hex(crsql_site_id())), crsql_db_version()", &st).ok() ||
      sqlite3_step(st.get()) != SQLITE_ROW) {
    std::fprintf(stderr,
                 "crsyncd status: %s is not a crsync database yet: no CRR was made in it "
                 "(crsql_as_crr) and no crsyncd ran on it (%s)\n",
                 db_path.c_str(), sqlite3_errmsg(db.get()));
    return 1;
  }
  long long version = sqlite3_column_int64(st.get(), 1);
  std::printf("database   %s\nsite id    %s\ndb_version %lld\n", db_path.c_str(),
              reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0)), version);
  crsync::StmtPtr peers;
  std::string sql =
      "SELECT lower(hex(site_id)), max(CASE WHEN event = 0 THEN version END), "
      "max(CASE WHEN event = 1 THEN version END) FROM crsql_tracked_peers WHERE event IN (0, 1) "
      "AND tag = " +
      std::to_string(crsync::kSidecarTag) + " GROUP BY site_id ORDER BY 1";
  // Changes after the peer's acknowledged version that did not come from
  // it: what the sidecar still has to deliver (versions that only carry the
  // peer's own changes do not count).
  crsync::StmtPtr unsent;
  if (!crsync::Prepare(db.get(), sql, &peers).ok() ||
      !crsync::Prepare(db.get(),
                       "SELECT count(*) FROM crsql_changes WHERE db_version > ?1 AND "
                       "lower(hex(site_id)) IS NOT ?2",
                       &unsent)
           .ok()) {
    std::fprintf(stderr, "crsyncd status: %s: %s\n", db_path.c_str(), sqlite3_errmsg(db.get()));
    return 1;
  }
  std::printf("%-34s %14s %14s %14s\n", "peer", "received up to", "peer has ours", "changes to send");
  int shown = 0;
  bool unacknowledged = false;
  while (sqlite3_step(peers.get()) == SQLITE_ROW) {
    const char* site = reinterpret_cast<const char*>(sqlite3_column_text(peers.get(), 0));
    long long recv = sqlite3_column_int64(peers.get(), 1);
    bool has_sent = sqlite3_column_type(peers.get(), 2) != SQLITE_NULL;
    long long sent = sqlite3_column_int64(peers.get(), 2);
    std::string backlog = "-";
    if (has_sent) {
      sqlite3_bind_int64(unsent.get(), 1, sent);
      sqlite3_bind_text(unsent.get(), 2, site, -1, SQLITE_TRANSIENT);
      if (sqlite3_step(unsent.get()) != SQLITE_ROW) {
        std::fprintf(stderr, "crsyncd status: %s: %s\n", db_path.c_str(), sqlite3_errmsg(db.get()));
        return 1;
      }
      backlog = std::to_string(sqlite3_column_int64(unsent.get(), 0));
      sqlite3_reset(unsent.get());
    }
    std::printf("%-34s %14lld %14s %14s\n", site, recv, has_sent ? std::to_string(sent).c_str() : "-",
                backlog.c_str());
    ++shown;
    unacknowledged |= !has_sent;
  }
  if (unacknowledged) {
    std::printf("(- : that peer has acknowledged none of our versions since its cursor was "
                "recorded or forgotten, so nothing is known to send; its next acknowledgement, "
                "after our next write, fills it in)\n");
  }
  if (shown == 0) {
    std::printf("(no peers recorded: a peer is listed once a version moved between it and this "
                "database, either way; none has yet, or their cursors were forgotten)\n");
  }
  // Cursors under other tags are the application's own (INSERT INTO
  // crsql_changes with another tag, 0 by default): said, not listed.
  crsync::StmtPtr others;
  const std::string count = "SELECT count(*) FROM crsql_tracked_peers WHERE tag IS NOT " +
                            std::to_string(crsync::kSidecarTag);
  if (crsync::Prepare(db.get(), count, &others).ok() && sqlite3_step(others.get()) == SQLITE_ROW &&
      sqlite3_column_int64(others.get(), 0) > 0) {
    std::printf("(and %lld cursor rows under other tags than crsyncd's %d: the application's own "
                "syncs through crsql_changes, not shown)\n",
                static_cast<long long>(sqlite3_column_int64(others.get(), 0)),
                static_cast<int>(crsync::kSidecarTag));
  }
  return 0;
}

int Forget(const std::string& db_path, const std::string& site) {
  if (site.size() != 32 || site.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    std::fprintf(stderr, "crsyncd forget: --site must be a site id of 32 hex digits, not '%s'\n",
                 site.c_str());
    return 2;
  }
  crsync::DbPtr db;
  if (!OpenForCommand("forget", db_path, SQLITE_OPEN_READWRITE, &db)) return 1;
  // A running sidecar keeps the cursors of connected peers in memory and
  // would write them back: forget only while none runs (and none starts).
  crsync::SidecarLock lock;
  const char* resolved = sqlite3_db_filename(db.get(), "main");
  if (crsync::Status s = lock.Acquire(resolved && *resolved ? resolved : db_path); !s.ok()) {
    std::fprintf(stderr, "crsyncd forget: %s%s\n", s.message().c_str(),
                 s.code() == crsync::Status::Code::kFailedPrecondition ? "; stop it first" : "");
    return 1;
  }
  crsync::StmtPtr own;
  if (crsync::Prepare(db.get(), "SELECT 1 FROM crsql_site_id WHERE ordinal = 0 AND hex(site_id) = upper(?1)",
                      &own).ok()) {
    sqlite3_bind_text(own.get(), 1, site.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(own.get()) == SQLITE_ROW) {
      std::fprintf(stderr, "crsyncd forget: %s is the site id of %s itself, not a peer's: what it "
                   "keeps under it is its own restore epoch, which its peers check (`crsyncd "
                   "status` lists the peers)\n", site.c_str(), db_path.c_str());
      return 1;
    }
  }
  crsync::StmtPtr del;
  const std::string sql = "DELETE FROM crsql_tracked_peers WHERE tag = " +
                          std::to_string(crsync::kSidecarTag) + " AND hex(site_id) = upper(?1)";
  if (!crsync::Prepare(db.get(), sql, &del).ok()) {
    std::fprintf(stderr, "crsyncd forget: %s is not a crsync database (%s)\n", db_path.c_str(),
                 sqlite3_errmsg(db.get()));
    return 1;
  }
  sqlite3_bind_text(del.get(), 1, site.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(del.get()) != SQLITE_DONE) {
    std::fprintf(stderr, "crsyncd forget: %s: %s\n", db_path.c_str(), sqlite3_errmsg(db.get()));
    return 1;
  }
  const int removed = sqlite3_changes(db.get());
  if (removed == 0) {
    std::fprintf(stderr, "crsyncd forget: %s keeps no cursor for peer %s (`crsyncd status` lists "
                 "the peers)\n", db_path.c_str(), site.c_str());
    return 1;
  }
  std::printf("forgot peer %s (%d cursor%s)\n", site.c_str(), removed, removed == 1 ? "" : "s");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before SQLite starts: without allocation statistics, sqlite3_malloc takes
  // no process-wide mutex, and the merge and read threads stop contending on
  // it (a backlog moved 1.3x faster). Nothing here reads those statistics.
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "version")) {
    // What an operator needs to tell whether two nodes can talk: peers
    // refuse a protocol version other than their own.
    std::printf("crsyncd %s (protocol %u, SQLite %s)\n", CRSYNC_VERSION,
                static_cast<unsigned>(crsync::kProtocolVersion), sqlite3_libversion());
    return 0;
  }
  std::string cmd = argv[1];
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  // `--db=x.db` is `--db x.db`.
  // (A flag's value is never split: `--db --odd=x.db` names --odd=x.db.)
  std::vector<std::string> args;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    const size_t eq = a.find('=');
    const bool is_value = i > 2 && std::strncmp(argv[i - 1], "--", 2) == 0 &&
                          std::strchr(argv[i - 1], '=') == nullptr &&
                          std::strcmp(argv[i - 1], "--help") != 0;
    if (!is_value && a.rfind("--", 0) == 0 && eq != std::string::npos) {
      args.push_back(a.substr(0, eq));
      args.push_back(a.substr(eq + 1));
    } else {
      args.push_back(a);
    }
  }
  const int nargs = static_cast<int>(args.size());
  if (cmd == "demo") {
    crsync::DemoOptions demo;
    for (int i = 0; i < nargs; ++i) {
      std::string a = args[static_cast<size_t>(i)];
      if (a != "--replicas" && a != "--writes" && a != "--dir") {
        std::fprintf(stderr, "crsyncd demo: unknown argument '%s' (try --help)\n", a.c_str());
        return 2;
      }
      if (i + 1 >= nargs) {
        std::fprintf(stderr, "crsyncd demo: %s needs a value (try --help)\n", a.c_str());
        return 2;
      }
      const char* v = args[static_cast<size_t>(++i)].c_str();
      if (a == "--dir") {
        demo.dir = v;
      } else if (a == "--replicas" ? !ParseInt(v, 2, 16, &demo.replicas)
                                   : !ParseInt(v, 1, 1000000, &demo.writes_per_app)) {
        std::fprintf(stderr, "crsyncd demo: %s must be a number %s, not '%s'\n", a.c_str(),
                     a == "--replicas" ? "from 2 to 16" : "from 1 to 1000000", v);
        return 2;
      }
    }
    return crsync::RunDemo(demo);
  }
  if (cmd != "run" && cmd != "status" && cmd != "forget") {
    std::fprintf(stderr, "crsyncd: unknown command '%s' (try --help)\n", cmd.c_str());
    return 2;
  }
  // The command line first, whole; then the config file under it, so that
  // a flag wins over the file wherever it stands.
  std::optional<std::string> config, db, listen, site;
  std::optional<int> log_level;
  std::vector<std::string> peers;
  for (int i = 0; i < nargs; ++i) {
    std::string a = args[static_cast<size_t>(i)];
    std::optional<std::string>* single = a == "--config" ? &config
                                         : a == "--db"   ? &db
                                         : a == "--listen" ? &listen
                                         : a == "--site"   ? &site
                                                           : nullptr;
    if (single || a == "--peer") {
      if (i + 1 >= nargs) {
        std::fprintf(stderr, "crsyncd: %s needs a value (try --help)\n", a.c_str());
        return 2;
      }
      std::string v = args[static_cast<size_t>(++i)];
      if (!single) {
        peers.push_back(v);
      } else if (*single) {
        std::fprintf(stderr, "crsyncd: %s is given twice ('%s' and '%s')\n", a.c_str(),
                     (*single)->c_str(), v.c_str());
        return 2;
      } else {
        *single = v;
      }
    } else if (a == "-v" || a == "-q") {
      if (log_level) {
        std::fprintf(stderr, "crsyncd: give one of -v and -q, once\n");
        return 2;
      }
      log_level = a == "-v" ? 2 : 0;
    } else {
      std::fprintf(stderr, "crsyncd: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  crsync::SidecarOptions opts;
  if (config && !ReadConfig(*config, &opts)) return 2;
  if (db) opts.db_path = *db;
  if (listen) opts.listen = *listen;
  if (log_level) opts.log_level = *log_level;
  opts.peers.insert(opts.peers.end(), peers.begin(), peers.end());
  if (opts.db_path.empty()) {
    std::fprintf(stderr, "crsyncd: --db PATH is required (try --help)\n");
    return 2;
  }
  if (std::error_code ec; std::filesystem::is_directory(opts.db_path, ec)) {
    std::fprintf(stderr, "crsyncd: --db %s is a directory, not a database file\n",
                 opts.db_path.c_str());
    return 2;
  }
  // A peer named twice (in the file and on the command line, say) is
  // dialled once.
  for (size_t i = 0; i < opts.peers.size();) {
    if (std::find(opts.peers.begin(), opts.peers.begin() + static_cast<std::ptrdiff_t>(i),
                  opts.peers[i]) != opts.peers.begin() + static_cast<std::ptrdiff_t>(i)) {
      std::fprintf(stderr, "crsyncd: peer %s is given twice: dialled once\n",
                   opts.peers[i].c_str());
      opts.peers.erase(opts.peers.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  // Before any command opens it: SQLite would give a second name its own
  // journal and shared-memory files (crsyncd run refuses it too, by lock).
  if (struct stat st {}; stat(opts.db_path.c_str(), &st) == 0 && st.st_nlink > 1) {
    std::fprintf(stderr, "crsyncd: %s has %ju hard links: give the database one name\n",
                 opts.db_path.c_str(), static_cast<uintmax_t>(st.st_nlink));
    return 1;
  }
  if ((cmd == "forget") != site.has_value()) {
    std::fprintf(stderr, cmd == "forget" ? "crsyncd forget: --site SITE_ID is required (try --help)\n"
                                         : "crsyncd: --site is for `crsyncd forget` (try --help)\n");
    return 2;
  }
  if (cmd == "status") return Status(opts.db_path);
  if (cmd == "forget") return Forget(opts.db_path, *site);
  if (opts.listen.empty() && opts.peers.empty()) {
    std::fprintf(stderr, "crsyncd: nothing to do: give --listen and/or --peer\n");
    return 2;
  }
  // Machine-readable lines on stdout, for scripts and tests.
  opts.on_listening = [](int port) {
    std::printf("listening %d\n", port);
    std::fflush(stdout);
  };
  opts.on_ready = [] {
    std::printf("ready\n");
    std::fflush(stdout);
  };
  crsync::Sidecar sidecar(opts);
  // A failure is in the log already, in its format ("... crsyncd error:
  // cannot start: ..."), where a supervisor looks for it.
  return sidecar.Run().ok() ? 0 : 1;
}
