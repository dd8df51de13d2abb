// crr-semantics §2: connection bootstrap and persistent bookkeeping. What
// installing the engine on a connection does (site id, bookkeeping tables,
// metadata format), how it waits for and reports locked or read-only
// databases, and how connections close.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

// Processes opening a new database at the same moment all open it, and all
// get the one site id: only one of them creates it. (Each child writes the
// id it sees to a pipe, or "error: ..." and exits 1.)
TEST(BootstrapTest, ProcessesOpeningANewDatabaseAtOnceAgreeOnItsSiteIdAndTag) {
  constexpr int kKids = 4;
  for (int round = 0; round < 40; ++round) {
    TempPath path;
    int go[2], out[2];
    ASSERT_EQ(pipe(go), 0);
    ASSERT_EQ(pipe(out), 0);
    std::vector<pid_t> kids;
    for (int k = 0; k < kKids; ++k) {
      pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        close(go[1]);
        char c;
        if (read(go[0], &c, 1) < 0) _exit(2);  // all start together
        sqlite3* db = nullptr;
        char* err = nullptr;
        std::string said;
        if (sqlite3_open(path.str().c_str(), &db) != SQLITE_OK) {
          said = std::string("error: open: ") + sqlite3_errmsg(db);
        } else if (crsync_engine_init(db, &err) != SQLITE_OK) {
          said = std::string("error: ") + (err ? err : "?");
        } else {
          // Each also converts the same table (idempotent): one process
          // must not fail because another converted it since it looked.
          sqlite3_busy_timeout(db, 20000);
          sqlite3_stmt* st = nullptr;
          if (sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY NOT NULL, v);"
                               "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (NULL, 1)",
                           nullptr, nullptr, nullptr) == SQLITE_OK &&
              sqlite3_prepare_v2(db,
                                 "SELECT hex(crsql_site_id()) || ' ' || (SELECT value FROM "
                                 "crsql_master WHERE key = 'crsync_trigger_tag')",
                                 -1, &st, nullptr) == SQLITE_OK &&
              sqlite3_step(st) == SQLITE_ROW) {
            said = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
          } else {
            said = std::string("error: ") + sqlite3_errmsg(db);
          }
          sqlite3_finalize(st);
        }
        said += "\n";
        if (write(out[1], said.data(), said.size()) < 0) _exit(2);
        _exit(said.rfind("error", 0) == 0 ? 1 : 0);  // no atexit, no gtest teardown
      }
      kids.push_back(pid);
    }
    close(go[0]);
    close(go[1]);  // go
    close(out[1]);
    std::string all;
    char buf[256];
    for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) all.append(buf, static_cast<size_t>(n));
    close(out[0]);
    for (pid_t pid : kids) {
      int status = 0;
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round << ":\n" << all;
    }
    std::vector<std::string> ids;
    for (size_t at = 0, nl; (nl = all.find('\n', at)) != std::string::npos; at = nl + 1)
      ids.push_back(all.substr(at, nl - at));
    ASSERT_EQ(ids.size(), static_cast<size_t>(kKids)) << all;
    for (const std::string& id : ids) {
      EXPECT_GT(id.size(), 33u) << id;  // site id and trigger tag
      EXPECT_EQ(id, ids[0]) << "round " << round;
    }
    if (HasFailure()) return;
  }
}

TEST(BootstrapTest, CreatesBookkeepingTablesAndSiteId) {
  TestDb db;
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_master WHERE name IN ('crsql_site_id', "
                   "'crsql_master', 'crsql_tracked_peers')"),
            "3");
  EXPECT_EQ(db.One("SELECT hex(crsql_site_id()) = hex(crsql_siteid())"), "1");
  EXPECT_EQ(db.One("SELECT length(crsql_site_id())"), "16");
  EXPECT_EQ(db.One("SELECT value FROM crsql_master WHERE key = 'crsqlite_version'"), "160300");
  // UUID v4 version and variant bits.
  std::string id = db.One("SELECT hex(crsql_site_id())");
  EXPECT_EQ(id[1 + 12], '4');  // byte 6 high nibble (after the X' prefix)
  EXPECT_TRUE(std::string("89AB").find(id[1 + 16]) != std::string::npos) << id;
  EXPECT_EQ(db.One("SELECT crsql_db_version()"), "0");
}

TEST(BootstrapTest, SiteIdSurvivesReopen) {
  TempPath path;
  std::string first;
  {
    TestDb db(path.str());
    first = db.One("SELECT hex(crsql_site_id())");
  }
  TestDb db(path.str());
  EXPECT_EQ(db.One("SELECT hex(crsql_site_id())"), first);
  EXPECT_EQ(db.One("SELECT count(*) FROM crsql_site_id"), "1");
}

TEST(BootstrapTest, ReadOnlyDatabaseWithTablesOpens) {
  TempPath path;
  { TestDb db(path.str()); db.Exec("CREATE TABLE t(a PRIMARY KEY, b); SELECT crsql_as_crr('t');"
                                   "INSERT INTO t VALUES (1, 2);"); }
  DbPtr ro;
  ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READONLY, nullptr, &ro));
  char* err = nullptr;
  EXPECT_EQ(crsync_engine_init(ro.get(), &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  EXPECT_OK(Exec(ro.get(), "SELECT * FROM crsql_changes"));
}

// The meta blobs' encoding is recorded; CRRs written in another format are
// refused with the reason instead of being misread.
TEST(BootstrapTest, RefusesCrrsWrittenInAnotherMetadataFormat) {
  TempPath path;
  {
    TestDb db(path.str());
    EXPECT_EQ(db.One("SELECT value FROM crsql_master WHERE key = 'crsync_meta_format'"), "4");
    db.Exec("CREATE TABLE t(a PRIMARY KEY, b); SELECT crsql_as_crr('t'); INSERT INTO t VALUES (1, 2);"
            "DELETE FROM crsql_master WHERE key = 'crsync_meta_format'");
  }
  DbPtr raw;
  ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READWRITE, nullptr, &raw));
  char* err = nullptr;
  EXPECT_NE(crsync_engine_init(raw.get(), &err), SQLITE_OK);
  ASSERT_NE(err, nullptr);
  EXPECT_THAT(err, HasSubstr("metadata is in format 1 but this build of crsync reads format 4"));
  EXPECT_THAT(err, ::testing::StartsWith("crsync: this database's"));  // not "crsync: crsync: "
  sqlite3_free(err);
  // Nothing was written: the database still has no format recorded.
  EXPECT_OK(Exec(raw.get(), "SELECT 1"));
  StmtPtr st;
  ASSERT_OK(Prepare(raw.get(), "SELECT count(*) FROM crsql_master WHERE key = 'crsync_meta_format'",
                    &st));
  ASSERT_EQ(sqlite3_step(st.get()), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st.get(), 0), 0);
}

TEST(BootstrapTest, RecordsTheFormatOfADatabaseWithoutCrrs) {
  TempPath path;
  {
    TestDb db(path.str());
    db.Exec("DELETE FROM crsql_master WHERE key = 'crsync_meta_format'");
  }
  TestDb db(path.str());
  EXPECT_EQ(db.One("SELECT value FROM crsql_master WHERE key = 'crsync_meta_format'"), "4");
}

// Format 2 (no feed range entries) and format 3 (ranges without a row
// count) are read as they are, and recorded as 4 once opened for writing,
// so that older builds refuse the database from then on.
TEST(BootstrapTest, UpgradesFormatsTwoAndThreeInPlace) {
  for (const char* format : {"2", "3"}) {
    SCOPED_TRACE(std::string("format ") + format);
    TempPath path;
    {
      TestDb db(path.str());
      db.Exec(std::string("CREATE TABLE t(a INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
                          "INSERT INTO t VALUES (1, 2), (3, 4);"
                          "UPDATE crsql_master SET value = ") + format +
              " WHERE key = 'crsync_meta_format'");
    }
    DbPtr ro;
    ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READONLY, nullptr, &ro));
    char* err = nullptr;
    EXPECT_EQ(crsync_engine_init(ro.get(), &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    StmtPtr st;
    ASSERT_OK(Prepare(ro.get(), "SELECT count(*) FROM crsql_changes", &st));
    ASSERT_EQ(sqlite3_step(st.get()), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(st.get(), 0), 2);
    st.reset();
    ro.reset();
    TestDb db(path.str());
    EXPECT_EQ(db.One("SELECT value FROM crsql_master WHERE key = 'crsync_meta_format'"), "4");
    EXPECT_EQ(db.One("SELECT count(*) FROM crsql_changes"), "2");
  }
}

// A connection the test closes itself, with the engine installed.
sqlite3* OpenRaw(const TempPath& path) {
  sqlite3* raw = nullptr;
  EXPECT_EQ(sqlite3_open(path.str().c_str(), &raw), SQLITE_OK);
  EXPECT_EQ(crsync_engine_init(raw, nullptr), SQLITE_OK);
  return raw;
}

TEST(BootstrapTest, PlainCloseSucceedsWithoutFinalize) {
  TempPath path;
  sqlite3* raw = OpenRaw(path);
  ASSERT_OK(Exec(raw, "CREATE TABLE t(a PRIMARY KEY, b); SELECT crsql_as_crr('t');"
                      "INSERT INTO t VALUES (1, 2); UPDATE t SET b = 3;"
                      "SELECT * FROM crsql_changes;"
                      "INSERT INTO crsql_changes VALUES ('t', X'010902', 'b', 1, 1, 1, "
                      "X'11111111111111111111111111111111');"));
  EXPECT_EQ(sqlite3_close(raw), SQLITE_OK);
}

// The engine caches the statements that write a CRR; SQLite compiles a
// user trigger into them. A trigger that reads crsql_changes then holds
// that virtual table connected, and the engine released its statements
// only when the table disconnected: close failed with SQLITE_BUSY. Same
// for the sidecar's path, and for a trigger on a merge's delete.
TEST(BootstrapTest, PlainCloseSucceedsWhenATriggerReadsCrsqlChanges) {
  for (int path_kind = 0; path_kind < 2; ++path_kind) {
    TempPath path;
    sqlite3* raw = OpenRaw(path);
    ASSERT_OK(Exec(raw, "CREATE TABLE t(a INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
                        "CREATE TABLE log (n);"
                        "CREATE TRIGGER t_upd AFTER UPDATE ON t BEGIN "
                        "INSERT INTO log SELECT count(*) FROM crsql_changes; END;"
                        "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN "
                        "INSERT INTO log SELECT count(*) FROM crsql_changes; END;"
                        "CREATE TRIGGER t_del AFTER DELETE ON t BEGIN "
                        "INSERT INTO log SELECT count(*) FROM crsql_changes; END;"));
    const std::string site = "X'11111111111111111111111111111111'";
    if (path_kind == 0) {
      ASSERT_OK(Exec(raw, "INSERT INTO crsql_changes VALUES ('t', X'010902', 'b', 77, 1, 5, " + site +
                              "); INSERT INTO crsql_changes VALUES ('t', X'010902', 'b', 78, 2, 6, " +
                              site + "); INSERT INTO crsql_changes VALUES ('t', X'010902', '-1', NULL, 2, 7, " +
                              site + ");"));
    } else {
      TestDb peer;
      peer.Exec("CREATE TABLE t(a INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
                " INSERT INTO t SELECT i, i FROM n; UPDATE t SET b = b + 1; DELETE FROM t WHERE a < 3;");
      std::unique_ptr<ChangeApplier> applier;
      ASSERT_OK(ChangeApplier::Open(raw, &applier));
      for (int64_t v = 1; v <= 3; ++v) {
        ASSERT_OK(applier->Apply(ToChanges(ReadChanges(peer.get(), "WHERE db_version = " +
                                                                    std::to_string(v))),
                                 0, nullptr));
      }
    }
    StmtPtr count;
    ASSERT_OK(Prepare(raw, "SELECT count(*) FROM log", &count));
    ASSERT_EQ(sqlite3_step(count.get()), SQLITE_ROW);
    EXPECT_GE(sqlite3_column_int(count.get(), 0), 3) << "the triggers fired";
    count.reset();
    EXPECT_EQ(sqlite3_close(raw), SQLITE_OK) << "path " << path_kind;
  }
}

// A close that fails (an application statement still open) disconnects
// every virtual table, the engine's close watch included, while the
// connection stays in use. The engine then caches statements again as it
// is used; the next close must still release them.
TEST(BootstrapTest, ACloseThatFailedCanBeRetriedAfterTheEngineIsUsedAgain) {
  const char* const kUses[] = {
      "INSERT INTO t VALUES (2, 'y')",
      "SELECT crsql_db_version()",
      "SELECT count(*) FROM crsql_changes",
      ("INSERT INTO crsql_changes VALUES ('t', X'010903', 'b', 'z', 1, 9, "
       "X'11111111111111111111111111111111')"),
      "reader",
  };
  for (const char* use : kUses) {
    SCOPED_TRACE(use);
    TempPath path;
    sqlite3* raw = OpenRaw(path);
    ASSERT_OK(Exec(raw, "CREATE TABLE t(a INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
                        "INSERT INTO t VALUES (1, 'x');"));
    sqlite3_stmt* open_stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(raw, "SELECT * FROM t", -1, &open_stmt, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(open_stmt), SQLITE_ROW);
    ASSERT_EQ(sqlite3_close(raw), SQLITE_BUSY);  // the application's statement
    sqlite3_finalize(open_stmt);
    if (std::string(use) == "reader") {
      std::unique_ptr<ChangeReader> reader;
      ASSERT_OK(ChangeReader::Open(raw, &reader));
      std::vector<Change> changes;
      int64_t v = 0;
      ASSERT_OK(reader->NextTransaction(0, OriginFilter{}, &changes, &v));
      EXPECT_EQ(v, 1);
    } else {
      ASSERT_OK(Exec(raw, use));
    }
    EXPECT_EQ(sqlite3_close(raw), SQLITE_OK);
  }
}

// sqlite3_close() with an application statement still open fails
// (SQLITE_BUSY), but not before it has rolled back the connection's virtual
// tables, crsync_capture included, while the transaction itself stays open
// and may commit. Writes the engine held in memory then (captured local
// writes from a transaction's fifth on; merged rows' metadata written
// behind) must be stored first, or they would commit unrecorded.
TEST(BootstrapTest, AFailedCloseInsideAWriteTransactionLosesNoChange) {
  const std::string site = "X'11111111111111111111111111111111'";
  std::string merges;
  for (int k = 101; k <= 110; ++k) {
    merges += "INSERT INTO crsql_changes VALUES ('t', crsql_pack_columns(" + std::to_string(k) +
              "), 'b', 'm" + std::to_string(k) + "', 1, " + std::to_string(k) + ", " + site + ");";
  }
  struct Case {
    const char* name;
    std::string before, after;
    int64_t rows;
    const char* tracked;  // crsql_tracked_peers' version for the site
  };
  const Case kCases[] = {
      {"captured local writes", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                                "WHERE i < 10) INSERT INTO t SELECT i, 'v' FROM n;",
       "", 10, "NULL"},
      {"local writes on both sides", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                                     "FROM n WHERE i < 10) INSERT INTO t SELECT i, 'v' FROM n;",
       "INSERT INTO t VALUES (11, 'v'); UPDATE t SET b = 'w' WHERE a = 1;", 11, "NULL"},
      {"merges written behind, and their receive cursor", merges, "", 10, "110"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    TempPath path;
    sqlite3* raw = OpenRaw(path);
    ASSERT_OK(Exec(raw, "CREATE TABLE t(a INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
                        "BEGIN;" + c.before));
    sqlite3_stmt* open_stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(raw, "SELECT * FROM t", -1, &open_stmt, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(open_stmt), SQLITE_ROW);
    ASSERT_EQ(sqlite3_close(raw), SQLITE_BUSY);
    sqlite3_finalize(open_stmt);
    ASSERT_EQ(sqlite3_get_autocommit(raw), 0) << "the transaction is still open";
    ASSERT_OK(Exec(raw, c.after + "COMMIT"));
    {
      TestDb check(path.str());
      EXPECT_EQ(check.Int("SELECT count(*) FROM t"), c.rows);
      EXPECT_EQ(check.One("SELECT group_concat(a) FROM t WHERE NOT EXISTS (SELECT 1 FROM "
                          "crsql_changes c WHERE c.pk = crsql_pack_columns(t.a) AND c.cid = 'b' "
                          "AND c.val IS t.b)"),
                "NULL")
          << "rows whose value has no change";
      EXPECT_EQ(check.One("SELECT count(*) FROM crsql_changes WHERE site_id IS NOT NULL AND "
                          "site_id != " + site),
                "0");
      EXPECT_EQ(check.One("SELECT max(version) FROM crsql_tracked_peers WHERE site_id = " + site),
                c.tracked);
    }
    // The committed versions are known: a later write takes a newer one.
    ASSERT_OK(Exec(raw, "INSERT INTO t VALUES (99, 'later')"));
    {
      TestDb check(path.str());
      EXPECT_GT(check.Int("SELECT db_version FROM crsql_changes WHERE pk = crsql_pack_columns(99)"),
                check.Int("SELECT max(db_version) FROM crsql_changes WHERE pk != "
                          "crsql_pack_columns(99)"));
    }
    EXPECT_EQ(sqlite3_close(raw), SQLITE_OK);
  }
}

// The same writes held in memory, closed with no application statement
// open: they are stored into the transaction, which the close then rolls
// back with everything else.
TEST(BootstrapTest, ACloseInsideAWriteTransactionRollsItBack) {
  const std::string site = "X'11111111111111111111111111111111'";
  const std::string kWrites[] = {
      "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 11) "
      "INSERT INTO t SELECT i, 'v' FROM n;",
      "INSERT INTO crsql_changes VALUES ('t', crsql_pack_columns(5), 'b', 'm', 1, 3, " + site +
          "); INSERT INTO crsql_changes VALUES ('t', crsql_pack_columns(6), 'b', 'm', 1, 4, " +
          site + ");",
  };
  for (const std::string& writes : kWrites) {
    SCOPED_TRACE(writes);
    TempPath path;
    sqlite3* raw = OpenRaw(path);
    ASSERT_OK(Exec(raw, "CREATE TABLE t(a INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('t');"
                        "INSERT INTO t VALUES (1, 'kept'); BEGIN;" + writes));
    EXPECT_EQ(sqlite3_close(raw), SQLITE_OK);
    TestDb check(path.str());
    EXPECT_EQ(check.One("SELECT group_concat(a) FROM t"), "'1'");
    EXPECT_EQ(check.One("SELECT group_concat(DISTINCT db_version) FROM crsql_changes"), "'1'");
    EXPECT_EQ(check.One("PRAGMA integrity_check"), "'ok'");
  }
}

// crsql_finalize releases the engine's cached statements (warm here from
// writes, a merge and reads), and the connection goes on: a later use of the
// engine prepares them again, and sqlite3_close (not _v2, which would defer)
// closes it at once.
TEST(BootstrapTest, FinalizeIsAcceptedAndConnectionStillCloses) {
  TempPath path;
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.str().c_str(), &raw), SQLITE_OK);
  char* err = nullptr;
  ASSERT_EQ(crsync_engine_init(raw, &err), SQLITE_OK) << (err ? err : "");
  ASSERT_OK(Exec(raw, "CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
                      "BEGIN; INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e'),"
                      "(6, 'f'); COMMIT; UPDATE t SET v = 'x' WHERE id = 1;"
                      "INSERT INTO crsql_changes VALUES ('t', X'010907', 'v', 'g', 1, 1,"
                      "X'00112233445566778899AABBCCDDEEFF');"
                      "SELECT count(*) FROM crsql_changes WHERE db_version > 0;"));
  {
    TestDb probe(path.str());  // what the first connection wrote is all there
    EXPECT_EQ(probe.One("SELECT count(*) FROM t"), "7");
    EXPECT_EQ(probe.One("SELECT count(*) FROM crsql_changes WHERE cid = 'v'"), "7");
  }
  ASSERT_NE(sqlite3_next_stmt(raw, nullptr), nullptr);  // the engine's, cached
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "SELECT crsql_finalize()", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "finalized");
  sqlite3_finalize(st);
  EXPECT_EQ(sqlite3_next_stmt(raw, nullptr), nullptr) << "a statement outlived crsql_finalize: "
                                                     << sqlite3_sql(sqlite3_next_stmt(raw, nullptr));
  ASSERT_OK(Exec(raw, "INSERT INTO t VALUES (8, 'h'); SELECT crsql_finalize();"));
  EXPECT_EQ(sqlite3_close(raw), SQLITE_OK) << sqlite3_errmsg(raw);
  TestDb after(path.str());
  EXPECT_EQ(after.One("SELECT count(*) FROM crsql_changes WHERE cid = 'v'"), "8");
}

// The engine is often installed before the application can set a busy
// timeout (the VFS's auto-extension). A database held exclusively for a
// moment (another connection checkpointing as it closes) is waited for, not
// mistaken for one without crsync tables, and the error, if it comes, says
// SQLITE_BUSY.
TEST(EngineInitTest, WaitsForAMomentaryExclusiveLock) {
  TempPath path;
  { TestDb init(path.str()); init.Exec("CREATE TABLE t (id PRIMARY KEY NOT NULL, v)"); }
  DbPtr holder;
  ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READWRITE, nullptr, &holder));
  ASSERT_OK(Exec(holder.get(), "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; "
                               "INSERT INTO t VALUES (1, 1); COMMIT;"));
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    holder.reset();  // closing drops the exclusive lock
  });
  DbPtr db;
  ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READWRITE, nullptr, &db));
  char* err = nullptr;
  int rc = crsync_engine_init(db.get(), &err);
  release.join();
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  EXPECT_OK(Exec(db.get(), "SELECT crsql_as_crr('t'); INSERT INTO t VALUES (2, 2);"));
}

// Engine calls inside a deferred BEGIN that has not touched the database
// yet wait for another connection's write lock under busy_timeout, as a
// first INSERT would. They read before they write, and SQLite does not
// retry a read transaction's upgrade: they failed with SQLITE_BUSY at once.
TEST(EngineBusyTest, CallsInsideBeginWaitForAnotherWriterLikeAFirstWrite) {
  TempPath path;
  {
    TestDb init(path.str());
    init.Exec("PRAGMA journal_mode = WAL;"
              "CREATE TABLE t (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');"
              "CREATE TABLE u (id PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('u');"
              "CREATE TABLE w (id PRIMARY KEY NOT NULL, v);");
  }
  TestDb other(path.str());
  const std::string site(16, '\x42');
  Change c;
  c.table = "t";
  c.pk = std::string("\x01\x09\x07", 3);  // packed (7)
  c.cid = "v";
  c.val_type = SQLITE_INTEGER;
  c.val_int = 1;
  c.col_version = 1;
  c.db_version = 1;
  c.site_id = site;
  c.cl = 1;
  const std::vector<std::pair<std::string, std::function<Status(TestDb&)>>> calls = {
      {"crsql_next_db_version", [](TestDb& db) { return Exec(db.get(), "SELECT crsql_next_db_version()"); }},
      {"crsql_as_crr", [](TestDb& db) { return Exec(db.get(), "SELECT crsql_as_crr('w')"); }},
      {"crsql_as_table", [](TestDb& db) { return Exec(db.get(), "SELECT crsql_as_table('u')"); }},
      {"alter", [](TestDb& db) {
         return Exec(db.get(), "SELECT crsql_begin_alter('t'); SELECT crsql_commit_alter('t')");
       }},
      {"ApplyInTransaction", [&](TestDb& db) {
         std::unique_ptr<ChangeApplier> applier;
         CRSYNC_RETURN_IF_ERROR(ChangeApplier::Open(db.get(), &applier));
         return applier->ApplyInTransaction({c}, 0, nullptr);
       }}};
  for (const auto& [name, call] : calls) {
    SCOPED_TRACE(name);
    TestDb db(path.str());
    db.Exec("PRAGMA busy_timeout = 5000");
    other.Exec("BEGIN IMMEDIATE");
    std::thread release([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      other.Exec("COMMIT");
    });
    db.Exec("BEGIN");
    Status s = call(db);
    release.join();
    EXPECT_OK(s);
    db.Exec(s.ok() ? "COMMIT" : "ROLLBACK");
  }
  TestDb check(path.str());
  EXPECT_EQ(check.One("SELECT count(*) FROM crsync_crrs WHERE name = 'w'"), "1");
  EXPECT_EQ(check.One("SELECT count(*) FROM crsync_crrs WHERE name = 'u'"), "0");
  EXPECT_EQ(check.One("SELECT v FROM t WHERE id = 7"), "1");
}

TEST(EngineInitTest, ANullConnectionIsMisuseWithAMessage) {
  char* err = nullptr;
  EXPECT_EQ(crsync_engine_init(nullptr, &err), SQLITE_MISUSE);
  ASSERT_NE(err, nullptr);
  EXPECT_THAT(err, HasSubstr("db is NULL"));
  sqlite3_free(err);
  EXPECT_EQ(crsync_engine_init(nullptr, nullptr), SQLITE_MISUSE);
}

// A read-only connection to a database crsync never set up: the engine
// installs, and what needs its tables says why they are missing.
TEST(EngineInitTest, AReadOnlyDatabaseNeverSetUpSaysSo) {
  TempPath path;
  {
    // Made through an attachment: were the engine registered for every
    // connection (crsync_auto_extension), it would set main up.
    TestDb other;
    other.Exec("ATTACH '" + path.str() + "' AS plain; CREATE TABLE plain.t (id PRIMARY KEY NOT NULL, v);"
               "INSERT INTO plain.t VALUES (1, 2); DETACH plain;");
  }
  DbPtr ro;
  ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READONLY, nullptr, &ro));
  char* err = nullptr;
  ASSERT_EQ(crsync_engine_init(ro.get(), &err), SQLITE_OK) << (err ? err : "");
  EXPECT_OK(Exec(ro.get(), "SELECT * FROM t"));
  for (const char* sql : {"SELECT count(*) FROM crsql_changes", "SELECT crsql_as_crr('t')"}) {
    Status s = Exec(ro.get(), sql);
    EXPECT_THAT(s.message(), HasSubstr("never set up by crsync and is open read-only")) << sql;
  }
  EXPECT_THAT(Exec(ro.get(), "SELECT crsql_site_id()").message(), HasSubstr("never set up"));
  // Once a writable connection set it up, the read-only one finds its id.
  TestDb writer(path.str());
  const std::string id = writer.One("SELECT hex(crsql_site_id())");
  StmtPtr st;
  ASSERT_OK(Prepare(ro.get(), "SELECT hex(crsql_site_id())", &st));
  ASSERT_EQ(sqlite3_step(st.get()), SQLITE_ROW) << sqlite3_errmsg(ro.get());
  EXPECT_EQ("'" + std::string(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0))) + "'", id);
}

// One that has a site id but not crsync's other tables (left by cr-sqlite
// 0.16, or a set-up cut short) reports that id.
TEST(EngineInitTest, AReadOnlyDatabaseWithOnlyASiteIdReportsIt) {
  TempPath path;
  {
    TestDb other;
    other.Exec("ATTACH '" + path.str() + "' AS plain;"
               "CREATE TABLE plain.crsql_site_id (site_id BLOB NOT NULL, ordinal INTEGER PRIMARY KEY);"
               "INSERT INTO plain.crsql_site_id VALUES (X'00112233445566778899AABBCCDDEEFF', 0);"
               "DETACH plain;");
  }
  DbPtr ro;
  ASSERT_OK(OpenDb(path.str(), SQLITE_OPEN_READONLY, nullptr, &ro));
  char* err = nullptr;
  ASSERT_EQ(crsync_engine_init(ro.get(), &err), SQLITE_OK) << (err ? err : "");
  StmtPtr st;
  ASSERT_OK(Prepare(ro.get(), "SELECT hex(crsql_site_id())", &st));
  ASSERT_EQ(sqlite3_step(st.get()), SQLITE_ROW) << sqlite3_errmsg(ro.get());
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0)),
               "00112233445566778899AABBCCDDEEFF");
}

}  // namespace
}  // namespace crsync
