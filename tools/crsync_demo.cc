// crsync-demo — the README's main job while the sidecar is being built: the
// seed sync guide's flow between two databases, with a report of each step.
//
//   crsync-demo [--dir DIR] [--keep]
//
// Creates two databases in DIR (default: a new temporary directory), makes
// the guide's tables CRRs, writes on db1, pulls db1's changes into db2 with
// the 7-value INSERT INTO crsql_changes, edits both sides concurrently and
// syncs both ways, then checks that the two databases are identical.
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/hex.h"
#include "crsync/crsync.h"
#include "crsync/sqlite_handles.h"
#include "tools/demo_files.h"

namespace {

using crsync::DbPtr;
using crsync::Status;
using crsync::StmtPtr;

const char* kSchema =
    "CREATE TABLE IF NOT EXISTS deck (id PRIMARY KEY, name);"
    "CREATE TABLE IF NOT EXISTS slide (id PRIMARY KEY, deck_id, \"order\");"
    "CREATE TABLE IF NOT EXISTS component (id PRIMARY KEY, slide_id, type, content, x, y, w, h, "
    "rotation);"
    "CREATE TABLE IF NOT EXISTS selected_slide (deck_id, slide_id, PRIMARY KEY (deck_id, slide_id));"
    "SELECT crsql_as_crr('deck'); SELECT crsql_as_crr('slide'); SELECT crsql_as_crr('component');";

[[noreturn]] void Die(const Status& s, const char* what) {
  std::fprintf(stderr, "crsync-demo: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) Die(s, what);
}

DbPtr Open(const std::string& path) {
  DbPtr db;
  Check(crsync::OpenDb(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &db), "open");
  char* err = nullptr;
  if (crsync_engine_init(db.get(), &err) != SQLITE_OK) {
    Die(Status::Sqlite(SQLITE_ERROR, err ? err : "?"), "loading the engine");
  }
  Check(crsync::Exec(db.get(), std::string(crsync::kMarkDemoDatabase) + "PRAGMA journal_mode = WAL"),
        "WAL");
  return db;
}

int64_t Int(sqlite3* db, const std::string& sql) {
  StmtPtr st;
  Check(crsync::Prepare(db, sql, &st), sql.c_str());
  return sqlite3_step(st.get()) == SQLITE_ROW ? sqlite3_column_int64(st.get(), 0) : -1;
}

std::string Blob(sqlite3* db, const std::string& sql) {
  StmtPtr st;
  Check(crsync::Prepare(db, sql, &st), sql.c_str());
  if (sqlite3_step(st.get()) != SQLITE_ROW) return {};
  return std::string(static_cast<const char*>(sqlite3_column_blob(st.get(), 0)),
                     static_cast<size_t>(sqlite3_column_bytes(st.get(), 0)));
}

std::string Hex(const std::string& b) { return crsync::HexBytes(b); }

// Pulls `from`'s own changes after `cursor` into `to` with the seed guide's
// 7-value insert, in one transaction. Returns how many rows moved.
int Pull(sqlite3* from, sqlite3* to, int64_t cursor) {
  StmtPtr sel, ins;
  Check(crsync::Prepare(from,
                        "SELECT \"table\", pk, cid, val, col_version, db_version, site_id FROM "
                        "crsql_changes WHERE db_version > ?1 AND site_id IS NULL",
                        &sel),
        "select changes");
  Check(crsync::Prepare(to, "INSERT INTO crsql_changes VALUES (?, ?, ?, ?, ?, ?, ?)", &ins),
        "prepare insert");
  sqlite3_bind_int64(sel.get(), 1, cursor);
  Check(crsync::Exec(to, "BEGIN"), "begin");
  int n = 0;
  while (sqlite3_step(sel.get()) == SQLITE_ROW) {
    for (int i = 0; i < 7; ++i) sqlite3_bind_value(ins.get(), i + 1, sqlite3_column_value(sel.get(), i));
    Check(crsync::StepToEnd(to, ins.get()), "merge");
    ++n;
  }
  Check(crsync::Exec(to, "COMMIT"), "commit");
  return n;
}

int64_t Cursor(sqlite3* at, sqlite3* peer) {
  std::string site = Blob(peer, "SELECT crsql_siteid()");
  return Int(at, "SELECT coalesce((SELECT clock FROM crsql_tracked_peers WHERE event = 0 AND "
                 "site_id = X'" + Hex(site) + "'), 0)");
}

std::string Dump(sqlite3* db) {
  std::string out;
  for (const char* t : {"deck", "slide", "component"}) {
    StmtPtr st;
    Check(crsync::Prepare(db, std::string("SELECT * FROM ") + t + " ORDER BY id", &st), "dump");
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(st.get()); ++i) {
        const unsigned char* v = sqlite3_column_text(st.get(), i);
        out += v ? reinterpret_cast<const char*>(v) : "NULL";
        out += '|';
      }
      out += '\n';
    }
  }
  return out;
}

void Usage() {
  std::puts(
      "usage: crsync-demo [--dir DIR] [--keep]\n\n"
      "Runs the seed sync guide between two SQLite databases with the crsync engine:\n"
      "CRRs, local writes, changesets pulled with crsql_changes and merged with\n"
      "INSERT INTO crsql_changes, cursors in crsql_tracked_peers, concurrent edits.\n\n"
      "  --dir DIR  where to create db1.db and db2.db (default: a new temp directory)\n"
      "  --keep     keep the databases afterwards (always kept with --dir)");
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--dir")) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "crsync-demo: --dir needs a value (try --help)\n");
        return 2;
      }
      dir = argv[++i];
      keep = true;
    } else if (!std::strcmp(argv[i], "--keep")) {
      keep = true;
    } else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      Usage();
      return 0;
    } else {
      std::fprintf(stderr, "crsync-demo: unknown argument %s (try --help)\n", argv[i]);
      return 2;
    }
  }
  if (dir.empty()) {
    char tmpl[] = "/tmp/crsync-demo-XXXXXX";
    if (!mkdtemp(tmpl)) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
  }
  std::string p1 = dir + "/db1.db", p2 = dir + "/db2.db";
  if (std::string err = crsync::PrepareDemoDir(dir, {p1, p2}); !err.empty()) {
    std::fprintf(stderr, "crsync-demo: %s\n", err.c_str());
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();

  DbPtr db1 = Open(p1), db2 = Open(p2);
  std::printf("crsync demo (SQLite %s) in %s\n", sqlite3_libversion(), dir.c_str());
  Check(crsync::Exec(db1.get(), kSchema), "schema db1");
  Check(crsync::Exec(db2.get(), kSchema), "schema db2");
  std::printf("1. schema applied to both; deck, slide, component are CRRs\n");
  std::printf("   db1 site id %s\n   db2 site id %s\n",
              Hex(Blob(db1.get(), "SELECT crsql_siteid()")).c_str(),
              Hex(Blob(db2.get(), "SELECT crsql_siteid()")).c_str());

  Check(crsync::Exec(db1.get(),
                     "INSERT INTO deck VALUES ('d1', 'First Presentation');"
                     "INSERT INTO slide VALUES ('s1', 'd1', 0), ('s2', 'd1', 1);"
                     "INSERT INTO component VALUES ('c1', 's1', 'text', 'Some Title', 0, 0, 600, 100, 0);"
                     "INSERT INTO component VALUES ('c2', 's1', 'text', 'Some subtext', 500, 150, 400, 100, 0);"
                     "INSERT INTO selected_slide VALUES ('d1', 's1');"),
        "writes on db1");
  std::printf("2. db1: wrote 1 deck, 2 slides, 2 components (db_version %lld, %lld changes)\n",
              static_cast<long long>(Int(db1.get(), "SELECT crsql_db_version()")),
              static_cast<long long>(Int(db1.get(), "SELECT count(*) FROM crsql_changes")));

  int moved = Pull(db1.get(), db2.get(), Cursor(db2.get(), db1.get()));
  std::printf("3. db1 -> db2: %d changes merged; db2 now tracks db1 at clock %lld\n", moved,
              static_cast<long long>(Cursor(db2.get(), db1.get())));

  Check(crsync::Exec(db1.get(), "UPDATE deck SET name = 'new title' WHERE id = 'd1'"), "edit db1");
  Check(crsync::Exec(db2.get(), "UPDATE slide SET \"order\" = 5 WHERE id = 's2';"
                                "DELETE FROM component WHERE id = 'c2';"),
        "edit db2");
  std::printf("4. concurrent edits: db1 renames the deck; db2 reorders a slide, deletes a component\n");
  int a = Pull(db1.get(), db2.get(), Cursor(db2.get(), db1.get()));
  int b = Pull(db2.get(), db1.get(), Cursor(db1.get(), db2.get()));
  std::printf("5. sync both ways: db1 -> db2 %d change(s), db2 -> db1 %d change(s)\n", a, b);

  std::string d1 = Dump(db1.get()), d2 = Dump(db2.get());
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  bool same = d1 == d2;
  std::printf("6. %s: CRR contents of db1 and db2 %s (%.1f ms)\n", same ? "converged" : "DIVERGED",
              same ? "are identical" : "differ", ms);
  std::printf("   (selected_slide is local-only: db1 has %lld row(s), db2 %lld)\n",
              static_cast<long long>(Int(db1.get(), "SELECT count(*) FROM selected_slide")),
              static_cast<long long>(Int(db2.get(), "SELECT count(*) FROM selected_slide")));
  db1.reset();
  db2.reset();
  if (!keep) {
    crsync::RemoveDemoDir(dir);
    std::printf("databases removed (--keep or --dir DIR keeps them)\n");
  } else {
    std::printf("databases kept in %s\n", dir.c_str());
  }
  return same ? 0 : 1;
}
