// crsync-writer — an application that writes random rows through the crsync
// VFS, for soak tests (scripts/soak.sh) and manual experiments.
//
//   crsync-writer --db PATH [--init [--merge-equal-values]] [--seconds S] [--rate TPS]
//                 [--seed N] [--ids N]
//   crsync-writer --db PATH --dump
//
// It is an ordinary SQLite application: it calls crsync_vfs_register() once,
// opens the database on the "crsync" VFS (so every commit raises the commit
// signal a sidecar watches) and runs random INSERT / UPDATE / DELETE
// transactions on the soak schema. At the end (time up, SIGINT or SIGTERM) it
// prints one line of `key=value` counters on stdout. --dump prints the
// replicated state in a form that two converged replicas print identically.
#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crsync/crsync.h"
#include "crsync/sqlite_handles.h"
#include "crsync/vfs.h"

namespace {

const char kUsage[] =
    "usage: crsync-writer --db PATH [--init [--merge-equal-values]] [--seconds S] [--rate TPS]\n"
    "                     [--seed N] [--ids N]\n"
    "       crsync-writer --db PATH --dump\n"
    "\n"
    "Writes random transactions through the crsync VFS into the CRRs `items`\n"
    "(id INTEGER PRIMARY KEY, name, qty, price, data) and `tags` (item, tag, note;\n"
    "composite primary key): upserts, updates and deletes over a small id space, so\n"
    "writers on different replicas of the same database keep conflicting. About one\n"
    "transaction in five holds several statements; about one in 300 rewrites every\n"
    "item (more than 1000 changes: the sidecar splits it into several messages).\n"
    "\n"
    "  --db PATH      the database (must exist unless --init)\n"
    "  --init         first create the schema (idempotent): WAL, both tables, crsql_as_crr\n"
    "  --seconds S    write for S seconds (default 10; 0 = write nothing)\n"
    "  --rate TPS     transactions per second on average (default 20)\n"
    "  --seed N       random seed (default 1); the same seed writes the same sequence\n"
    "  --ids N        size of the id space of `items` (default 300)\n"
    "\n"
    "SIGINT / SIGTERM end the run early. The last line on stdout is the summary:\n"
    "  crsync-writer db=PATH seed=N seconds=S txns=N ops=N inserts=N updates=N\n"
    "  deletes=N changes=N busy=N errors=N db_version=N\n"
    "ops counts statements (inserts = upserts); changes the crsql_changes rows the\n"
    "committed transactions recorded (read in each transaction before COMMIT);\n"
    "busy transactions abandoned after the busy timeout (10 s); errors any other\n"
    "failure (printed on stderr). The exit status is 1 if errors > 0.\n"
    "\n"
    "--dump prints (read-only), one per line, sorted, values exact (REAL as its\n"
    "IEEE-754 bits), every CRR row (`row TABLE values...`) and the crsql_changes\n"
    "records the merge rules make equal on converged replicas, without db_version\n"
    "(a local clock) and without live sentinels (odd cl) of tables with non-pk\n"
    "columns (kept per replica at an equal causal length):\n"
    "  change TABLE PK CID VAL COL_VERSION CL | SITE_ID SEQ\n"
    "Replicas that converged print the same text up to \" | \". The origin after it\n"
    "may differ for sentinels (cid '-1') and, unless the databases were made with\n"
    "--merge-equal-values, where two sites wrote the same value at the same version.\n"
    "\n"
    "  --merge-equal-values  with --init: crsql_config_set('merge-equal-values', 1)\n";

const char kSchema[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY NOT NULL, name TEXT, qty INTEGER, "
    "price REAL, data BLOB);"
    "CREATE TABLE IF NOT EXISTS tags (item INTEGER NOT NULL, tag TEXT NOT NULL, note TEXT, "
    "PRIMARY KEY (item, tag));"
    "SELECT crsql_as_crr('items');"
    "SELECT crsql_as_crr('tags');";

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Counters {
  long txns = 0, ops = 0, inserts = 0, updates = 0, deletes = 0, busy = 0, errors = 0;
  long long changes = 0;  // crsql_changes rows the committed transactions recorded
};

class Writer {
 public:
  Writer(sqlite3* db, unsigned seed, int ids) : db_(db), rng_(seed), ids_(ids) {}

  // One random transaction. Returns false on a non-busy error.
  bool Transaction(Counters* c) {
    int kind = Pick(1000);
    int ops = 1;
    if (kind < 3) {
      ops = -1;  // bulk rewrite
    } else if (kind < 200) {
      ops = 2 + Pick(5);
    }
    Counters local;
    crsync::Status s = crsync::Exec(db_, "BEGIN IMMEDIATE");
    if (ops < 0) {
      if (s.ok()) s = Bulk(&local);
    } else {
      for (int i = 0; i < ops && s.ok(); ++i) s = Op(&local);
    }
    // The changes this transaction recorded (what the sidecars must ship).
    if (s.ok()) {
      if (!count_) {
        s = crsync::Prepare(db_,
                            "SELECT count(*) FROM crsql_changes WHERE db_version = "
                            "crsql_next_db_version() AND site_id IS NULL",
                            &count_);
      }
      if (s.ok()) {
        int rc = sqlite3_step(count_.get());
        if (rc == SQLITE_ROW) local.changes = sqlite3_column_int64(count_.get(), 0);
        sqlite3_reset(count_.get());
        if (rc != SQLITE_ROW) s = crsync::SqliteError(db_, rc);
      }
    }
    if (s.ok()) s = crsync::Exec(db_, "COMMIT");
    if (!s.ok()) {
      if (!sqlite3_get_autocommit(db_)) crsync::Exec(db_, "ROLLBACK").IgnoreError();
      int rc = s.sqlite_code() & 0xff;
      if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
        ++c->busy;
        return true;
      }
      ++c->errors;
      if (c->errors <= 10) std::fprintf(stderr, "crsync-writer: %s\n", s.ToString().c_str());
      return false;
    }
    ++c->txns;
    c->ops += local.ops;
    c->inserts += local.inserts;
    c->updates += local.updates;
    c->deletes += local.deletes;
    c->changes += local.changes;
    return true;
  }

 private:
  int Pick(int n) { return static_cast<int>(rng_() % static_cast<unsigned>(n)); }

  // Binds a random value of the kind column `col` holds (or NULL, or another type).
  void BindValue(sqlite3_stmt* st, int idx, int col) {
    int r = Pick(100);
    if (r < 8) {
      sqlite3_bind_null(st, idx);
      return;
    }
    if (r < 12) col = Pick(4);  // SQLite columns take any type: exercise that too
    switch (col) {
      case 0: {  // text, sometimes with quotes and non-ASCII
        static const char* const kWords[] = {"milk", "o'clock", "caf\xc3\xa9", "", "\"quoted\"",
                                             "x", "longer text with spaces", "\xe2\x9c\x93"};
        std::string t = kWords[Pick(8)];
        t += std::to_string(Pick(1000));
        sqlite3_bind_text(st, idx, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
        break;
      }
      case 1: {
        int64_t v = static_cast<int64_t>(rng_()) - (1ll << 31);
        if (Pick(10) == 0) v *= 1ll << 30;  // large values
        sqlite3_bind_int64(st, idx, v);
        break;
      }
      case 2:
        sqlite3_bind_double(st, idx, (static_cast<double>(rng_()) - 2e9) / 1000.0);
        break;
      default: {
        std::string b(static_cast<size_t>(Pick(33)), '\0');
        for (char& ch : b) ch = static_cast<char>(Pick(256));
        sqlite3_bind_blob(st, idx, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
      }
    }
  }

  crsync::Status Run(sqlite3_stmt* st, long* counter, Counters* c) {
    crsync::Status s = crsync::StepToEnd(db_, st);
    if (s.ok()) {
      ++c->ops;
      ++*counter;
    }
    return s;
  }

  crsync::Status Op(Counters* c) {
    static const char* const kCols[] = {"name", "qty", "price", "data"};
    static const char* const kTags[] = {"red", "green", "blue", "urgent", "later"};
    crsync::StmtPtr st;
    int r = Pick(100);
    int id = Pick(ids_);
    if (r < 32) {  // upsert an item
      CRSYNC_RETURN_IF_ERROR(crsync::Prepare(
          db_,
          "INSERT INTO items (id, name, qty, price, data) VALUES (?1, ?2, ?3, ?4, ?5) "
          "ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty",
          &st));
      sqlite3_bind_int(st.get(), 1, id);
      for (int k = 0; k < 4; ++k) BindValue(st.get(), k + 2, k);
      return Run(st.get(), &c->inserts, c);
    }
    if (r < 62) {  // update one or two columns
      int a = Pick(4), b = Pick(4);
      std::string sql = std::string("UPDATE items SET ") + kCols[a] + " = ?2";
      if (b != a) sql += std::string(", ") + kCols[b] + " = ?3";
      sql += " WHERE id = ?1";
      CRSYNC_RETURN_IF_ERROR(crsync::Prepare(db_, sql, &st));
      sqlite3_bind_int(st.get(), 1, id);
      BindValue(st.get(), 2, a);
      if (b != a) BindValue(st.get(), 3, b);
      return Run(st.get(), &c->updates, c);
    }
    if (r < 80) {  // delete an item
      CRSYNC_RETURN_IF_ERROR(crsync::Prepare(db_, "DELETE FROM items WHERE id = ?1", &st));
      sqlite3_bind_int(st.get(), 1, id);
      return Run(st.get(), &c->deletes, c);
    }
    const char* tag = kTags[Pick(5)];
    if (r < 92) {  // upsert a tag (composite primary key)
      CRSYNC_RETURN_IF_ERROR(crsync::Prepare(
          db_,
          "INSERT INTO tags (item, tag, note) VALUES (?1, ?2, ?3) "
          "ON CONFLICT (item, tag) DO UPDATE SET note = excluded.note",
          &st));
      sqlite3_bind_int(st.get(), 1, id % 50);
      sqlite3_bind_text(st.get(), 2, tag, -1, SQLITE_STATIC);
      BindValue(st.get(), 3, 0);
      return Run(st.get(), &c->inserts, c);
    }
    CRSYNC_RETURN_IF_ERROR(
        crsync::Prepare(db_, "DELETE FROM tags WHERE item = ?1 AND tag = ?2", &st));
    sqlite3_bind_int(st.get(), 1, id % 50);
    sqlite3_bind_text(st.get(), 2, tag, -1, SQLITE_STATIC);
    return Run(st.get(), &c->deletes, c);
  }

  // Rewrites every column of every item in one statement.
  crsync::Status Bulk(Counters* c) {
    crsync::StmtPtr st;
    CRSYNC_RETURN_IF_ERROR(crsync::Prepare(
        db_, "UPDATE items SET name = ?1 || id, qty = coalesce(qty, 0) + 1, price = ?2, data = ?3",
        &st));
    BindValue(st.get(), 1, 0);
    BindValue(st.get(), 2, 2);
    BindValue(st.get(), 3, 3);
    return Run(st.get(), &c->updates, c);
  }

  sqlite3* db_;
  std::mt19937_64 rng_;
  int ids_;
  crsync::StmtPtr count_;
};

// A value, exactly and unambiguously: NULL, 12, r:<bits>(1.5), 'text', X'0a'.
std::string Render(sqlite3_stmt* st, int i) {
  char buf[64];
  switch (sqlite3_column_type(st, i)) {
    case SQLITE_NULL:
      return "NULL";
    case SQLITE_INTEGER:
      return std::to_string(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT: {
      double d = sqlite3_column_double(st, i);
      uint64_t bits;
      std::memcpy(&bits, &d, sizeof bits);
      std::snprintf(buf, sizeof buf, "r:%016llx(%.17g)", static_cast<unsigned long long>(bits), d);
      return buf;
    }
    case SQLITE_TEXT: {
      const unsigned char* t = sqlite3_column_text(st, i);
      std::string out = "'";
      for (int k = 0; k < sqlite3_column_bytes(st, i); ++k) {
        if (t[k] == '\'') {
          out += "''";
        } else if (t[k] < 0x20 || t[k] == 0x7f) {
          std::snprintf(buf, sizeof buf, "\\x%02x", t[k]);
          out += buf;
        } else {
          out += static_cast<char>(t[k]);
        }
      }
      return out + "'";
    }
    default: {
      const unsigned char* b = static_cast<const unsigned char*>(sqlite3_column_blob(st, i));
      std::string out = "X'";
      for (int k = 0; k < sqlite3_column_bytes(st, i); ++k) {
        std::snprintf(buf, sizeof buf, "%02x", b[k]);
        out += buf;
      }
      return out + "'";
    }
  }
}

// Appends "<prefix> v1 v2 ..." for every row of `sql`, with " |" before
// column `bar` (if any).
crsync::Status Collect(sqlite3* db, const std::string& sql, const std::string& prefix,
                       std::vector<std::string>* lines, int bar = -1) {
  crsync::StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(crsync::Prepare(db, sql, &st));
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    std::string line = prefix;
    for (int i = 0; i < sqlite3_column_count(st.get()); ++i) {
      if (i == bar) line += " |";
      line += ' ';
      line += Render(st.get(), i);
    }
    lines->push_back(std::move(line));
  }
  return rc == SQLITE_DONE ? crsync::Status::OK() : crsync::SqliteError(db, rc);
}

int Dump(const std::string& path) {
  crsync::DbPtr db;
  crsync::Status s = crsync::OpenDb(path, SQLITE_OPEN_READONLY, nullptr, &db);
  char* raw_err = nullptr;
  if (s.ok() && crsync_engine_init(db.get(), &raw_err) != SQLITE_OK) {
    crsync::SqliteStr err(raw_err);
    s = crsync::Status::Sqlite(SQLITE_ERROR, err ? err.get() : "cannot install the engine");
  }
  std::vector<std::string> lines;
  std::vector<std::string> tables;
  if (s.ok()) sqlite3_busy_timeout(db.get(), 10000);
  // One snapshot for everything.
  if (s.ok()) s = crsync::Exec(db.get(), "BEGIN");
  if (s.ok()) {
    crsync::StmtPtr st;
    s = crsync::Prepare(db.get(), "SELECT name FROM crsync_crrs ORDER BY name", &st);
    while (s.ok() && sqlite3_step(st.get()) == SQLITE_ROW) {
      tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0)));
    }
  }
  for (const std::string& t : tables) {
    if (s.ok()) s = Collect(db.get(), "SELECT * FROM " + crsync::QuoteIdent(t), "row " + t, &lines);
  }
  // The records the merge rules make equal on converged replicas (see
  // tests/engine/convergence_property_test.cc, ChangeState): everything but
  // live sentinels (odd cl) of tables with non-pk columns, which a replica
  // keeps at an equal causal length whoever wrote them. After " | ": the
  // record's origin and seq, equal only when two sites never wrote the same
  // value at the same version, or with merge-equal-values = 1.
  if (s.ok()) {
    s = Collect(db.get(),
                "SELECT \"table\", pk, cid, val, col_version, cl, site_id, seq "
                "FROM crsql_changes WHERE cid != '-1' OR cl % 2 = 0 OR \"table\" IN "
                "(SELECT name FROM crsync_crrs WHERE cols = X'00')",
                "change", &lines, 6);
  }
  if (!s.ok()) {
    std::fprintf(stderr, "crsync-writer --dump: %s: %s\n", path.c_str(), s.ToString().c_str());
    return 1;
  }
  std::sort(lines.begin(), lines.end());
  for (const std::string& l : lines) std::printf("%s\n", l.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  bool init = false, dump = false, merge_equal = false;
  double seconds = 10, rate = 20;
  unsigned long seed = 1;
  int ids = 300;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--init") {
      init = true;
      continue;
    }
    if (a == "--merge-equal-values") {
      merge_equal = true;
      continue;
    }
    if (a == "--dump") {
      dump = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "crsync-writer: %s needs a value (try --help)\n", a.c_str());
      return 2;
    }
    const char* v = argv[++i];
    char* end = nullptr;
    if (a == "--db") {
      path = v;
      continue;
    } else if (a == "--seconds") {
      seconds = std::strtod(v, &end);
    } else if (a == "--rate") {
      rate = std::strtod(v, &end);
    } else if (a == "--seed") {
      seed = std::strtoul(v, &end, 10);
    } else if (a == "--ids") {
      ids = static_cast<int>(std::strtol(v, &end, 10));
    } else {
      std::fprintf(stderr, "crsync-writer: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
    if (!end || *end || end == v) {
      std::fprintf(stderr, "crsync-writer: bad value '%s' for %s\n", v, a.c_str());
      return 2;
    }
  }
  if (path.empty() || seconds < 0 || rate <= 0 || ids < 1) {
    std::fprintf(stderr,
                 "crsync-writer: --db is required; --seconds >= 0, --rate > 0, --ids >= 1 "
                 "(try --help)\n");
    return 2;
  }
  if (dump) return Dump(path);
  if (crsync_vfs_register(nullptr, 0) != SQLITE_OK) {
    std::fprintf(stderr, "crsync-writer: cannot register the crsync VFS\n");
    return 1;
  }
  crsync::DbPtr db;
  int flags = SQLITE_OPEN_READWRITE | (init ? SQLITE_OPEN_CREATE : 0);
  crsync::Status s = crsync::OpenDb(path, flags, CRSYNC_VFS_NAME, &db);
  if (s.ok()) sqlite3_busy_timeout(db.get(), 10000);  // the sidecar writes too (WAL)
  if (s.ok() && init) s = crsync::Exec(db.get(), kSchema);
  if (s.ok() && init && merge_equal) {
    s = crsync::Exec(db.get(), "SELECT crsql_config_set('merge-equal-values', 1)");
  }
  if (!s.ok()) {
    std::fprintf(stderr, "crsync-writer: %s: %s\n", path.c_str(), s.ToString().c_str());
    return 1;
  }

  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  using Clock = std::chrono::steady_clock;
  Clock::time_point t0 = Clock::now(), deadline = t0 + std::chrono::duration_cast<Clock::duration>(
                                                           std::chrono::duration<double>(seconds));
  Writer w(db.get(), static_cast<unsigned>(seed), ids);
  std::mt19937_64 gaps(seed * 7919 + 17);
  std::exponential_distribution<double> gap(rate);
  Counters c;
  Clock::time_point next = t0;
  while (!g_stop && seconds > 0 && Clock::now() < deadline) {
    w.Transaction(&c);
    // Poisson arrivals at the given average rate; a slow commit is caught up
    // by at most one second, not by a burst.
    next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(gaps)));
    Clock::time_point now = Clock::now();
    if (next < now - std::chrono::seconds(1)) next = now - std::chrono::seconds(1);
    while (!g_stop && Clock::now() < next && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::min<Clock::duration>(next - Clock::now(),
                                                            std::chrono::milliseconds(100)));
    }
  }
  long long version = -1;
  crsync::StmtPtr st;
  if (crsync::Prepare(db.get(), "SELECT crsql_db_version()", &st).ok() &&
      sqlite3_step(st.get()) == SQLITE_ROW) {
    version = sqlite3_column_int64(st.get(), 0);
  }
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "crsync-writer db=%s seed=%lu seconds=%.2f txns=%ld ops=%ld inserts=%ld updates=%ld "
      "deletes=%ld changes=%lld busy=%ld errors=%ld db_version=%lld\n",
      path.c_str(), seed, took, c.txns, c.ops, c.inserts, c.updates, c.deletes, c.changes, c.busy,
      c.errors, version);
  return c.errors > 0 ? 1 : 0;
}
