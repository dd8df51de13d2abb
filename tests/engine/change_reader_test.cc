// ChangeReader: the sidecar's read path (a cursor's changes, one whole
// transaction at a time, collected or streamed to a visitor).
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "crsync/engine.h"
#include "tests/change_util.h"
#include "tests/engine/change_api_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

TEST(ChangeReaderTest, ReadsOneWholeTransactionAtATime) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  db.Exec("INSERT INTO t VALUES (1, 'a', 1); BEGIN; INSERT INTO t VALUES (2, 'b', 2);"
          "INSERT INTO u VALUES ('x', 1); DELETE FROM t WHERE id = 1; COMMIT; UPDATE u SET v = 2;");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(db.get(), &reader));
  std::vector<int64_t> versions;
  std::vector<size_t> sizes;
  int64_t cursor = 0, v;
  std::vector<Change> all;
  for (;;) {
    std::vector<Change> txn;
    ASSERT_OK(reader->NextTransaction(cursor, OriginFilter{}, &txn, &v));
    if (v == 0) break;
    for (const Change& c : txn) EXPECT_EQ(c.db_version, v);
    versions.push_back(v);
    sizes.push_back(txn.size());
    all.insert(all.end(), txn.begin(), txn.end());
    cursor = v;
  }
  EXPECT_EQ(versions, (std::vector<int64_t>{2, 3}));
  // v2: t(2).a, t(2).b, t(1)'s tombstone; u('x').v moved on to v3.
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 1}));
  // Same rows as the virtual table, same order.
  auto rows = ReadChanges(db.get());
  ASSERT_EQ(rows.size(), all.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][0].bytes, all[i].table);
    EXPECT_EQ(rows[i][1].bytes, all[i].pk);
    EXPECT_EQ(rows[i][2].bytes, all[i].cid);
    EXPECT_EQ(rows[i][8].i, all[i].seq);
    EXPECT_EQ(rows[i][7].i, all[i].cl);
    EXPECT_EQ(rows[i][6].bytes, all[i].site_id);
  }
  // The reader holds no read transaction between calls.
  EXPECT_EQ(sqlite3_next_stmt(db.get(), nullptr) == nullptr ||
                sqlite3_stmt_busy(sqlite3_next_stmt(db.get(), nullptr)) == 0,
            true);
}

// Every statement of `db` is reset: nothing holds a read open.
void ExpectNoStatementBusy(sqlite3* db) {
  for (sqlite3_stmt* st = sqlite3_next_stmt(db, nullptr); st; st = sqlite3_next_stmt(db, st))
    EXPECT_EQ(sqlite3_stmt_busy(st), 0) << sqlite3_sql(st);
}

bool SameChange(const Change& a, const Change& b) {
  return a.table == b.table && a.pk == b.pk && a.cid == b.cid && a.val_type == b.val_type &&
         a.val_int == b.val_int && (a.val_real == b.val_real) && a.val_bytes == b.val_bytes &&
         a.col_version == b.col_version && a.db_version == b.db_version &&
         a.site_id == b.site_id && a.cl == b.cl && a.seq == b.seq;
}

// The streaming read yields exactly what the collecting read does, change
// for change, also when the visitor takes the strings it is handed (the
// reader must set every field again, never leave one from before).
TEST(ChangeReaderTest, StreamingReadsWhatCollectingReads) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  db.Exec("BEGIN; INSERT INTO t VALUES (1, 'text', 1.5), (2, x'00ff', NULL), (3, 7, 'x');"
          "INSERT INTO u VALUES ('k1', 'a long text value that is not short'), ('k2', 2); COMMIT;"
          "UPDATE t SET a = 9 WHERE id = 1; DELETE FROM u WHERE k = 'k2';"
          "INSERT INTO u VALUES ('k2', x'01'); UPDATE t SET b = 'z', a = NULL WHERE id = 3;");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(db.get(), &reader));
  for (bool take : {false, true}) {
    int64_t cursor = 0, v = 0, w = 0;
    size_t total = 0;
    for (;;) {
      std::vector<Change> collected, streamed;
      ASSERT_OK(reader->NextTransaction(cursor, OriginFilter{}, &collected, &v));
      ASSERT_OK(reader->NextTransaction(cursor, OriginFilter{}, [&](Change& c) {
        streamed.push_back(take ? std::move(c) : c);
        return Status::OK();
      }, &w));
      EXPECT_EQ(v, w);
      if (v == 0) {
        EXPECT_TRUE(streamed.empty());
        break;
      }
      ASSERT_EQ(streamed.size(), collected.size()) << "version " << v;
      for (size_t i = 0; i < collected.size(); ++i)
        EXPECT_TRUE(SameChange(streamed[i], collected[i])) << "version " << v << " change " << i;
      total += collected.size();
      cursor = v;
    }
    EXPECT_EQ(total, ReadChanges(db.get()).size());
  }
}

// A visitor's error stops the read where it is and comes back as is; the
// reader holds nothing afterwards and reads the transaction again.
TEST(ChangeReaderTest, AVisitorErrorStopsTheRead) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  db.Exec("INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(db.get(), &reader));
  int calls = 0;
  int64_t v = -1;
  Status s = reader->NextTransaction(0, OriginFilter{}, [&](Change&) {
    return ++calls == 2 ? Status::InvalidArgument("visitor says stop") : Status::OK();
  }, &v);
  EXPECT_THAT(s.message(), HasSubstr("visitor says stop"));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(v, 0);
  ExpectNoStatementBusy(db.get());
  std::vector<Change> again;
  ASSERT_OK(reader->NextTransaction(0, OriginFilter{}, &again, &v));
  EXPECT_EQ(v, 1);
  EXPECT_EQ(again.size(), 4u);
}

// A read that fails part way (here interrupted by a progress handler after
// more and more steps) leaves the caller's vector as it was: never half a
// transaction, which a caller could mistake for a whole one.
TEST(ChangeReaderTest, AFailedReadLeavesTheVectorAsItWas) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  db.Exec("BEGIN");
  for (int i = 0; i < 50; ++i) db.Exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'a', 1)");
  db.Exec("COMMIT");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(db.get(), &reader));
  int budget = 0;
  sqlite3_progress_handler(db.get(), 1, [](void* p) { return --*static_cast<int*>(p) < 0 ? 1 : 0; },
                           &budget);
  int failures = 0;
  bool read_whole = false;
  for (int steps = 1; steps < 200000 && !read_whole; steps += 1 + steps / 8) {
    budget = steps;
    std::vector<Change> out(1);  // the caller's earlier content
    out[0].table = "kept";
    int64_t v = -1;
    Status s = reader->NextTransaction(0, OriginFilter{}, &out, &v);
    if (s.ok()) {
      read_whole = true;
      EXPECT_EQ(v, 1);
      EXPECT_EQ(out.size(), 101u);
    } else {
      ++failures;
      EXPECT_EQ(v, 0);
      ASSERT_EQ(out.size(), 1u) << "after " << steps << " steps: " << s.ToString();
      EXPECT_EQ(out[0].table, "kept");
    }
  }
  sqlite3_progress_handler(db.get(), 0, nullptr, nullptr);
  EXPECT_TRUE(read_whole);
  EXPECT_GT(failures, 10);
}

// Inside the caller's transaction, a visitor that writes to a CRR gives
// those writes the version being read; the read still returns exactly the
// changes that existed when it started (as crsql_changes does).
TEST(ChangeReaderTest, AVisitorsOwnWritesAreNotReadBack) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  db.Exec("BEGIN; INSERT INTO t VALUES (1, 'a', 1)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(db.get(), &reader));
  int calls = 0;
  int64_t v = -1;
  Status s = reader->NextTransaction(0, OriginFilter{}, [&](Change&) {
    if (++calls > 50) return Status::InvalidArgument("read back its own writes");
    return Exec(db.get(), "INSERT INTO t VALUES (" + std::to_string(100 + calls) + ", 'w', 0)");
  }, &v);
  ASSERT_OK(s);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(v, 1);
  db.Exec("COMMIT");
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "3");
}

// A visitor that throws (an allocation failing while it keeps a change)
// leaves no read open either, and the exception comes back as a status
// (engine.h: no call throws).
TEST(ChangeReaderTest, AThrowingVisitorLeavesNoReadOpen) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  for (int i = 1; i <= 300; ++i)  // more than one batch: the scan stays mid-way
    db.Exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'a', 1)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(db.get(), &reader));
  int64_t v = -1;
  Status s;
  EXPECT_NO_THROW(s = reader->NextTransaction(0, OriginFilter{}, [](Change&) -> Status {
    throw std::bad_alloc();
  }, &v));
  EXPECT_EQ(s.sqlite_code(), SQLITE_NOMEM) << s.ToString();
  EXPECT_EQ(v, 0);
  EXPECT_NO_THROW(s = reader->NextTransaction(0, OriginFilter{}, [](Change&) -> Status {
    throw std::runtime_error("the visitor's own");
  }, &v));
  EXPECT_EQ(s.sqlite_code(), SQLITE_ERROR) << s.ToString();
  ExpectNoStatementBusy(db.get());
  // And the reader reads on.
  db.Exec("INSERT INTO t VALUES (301, 'b', 2)");
  std::vector<Change> again;
  ASSERT_OK(reader->NextTransaction(0, OriginFilter{}, &again, &v));
  EXPECT_EQ(v, 1);
}

// Another connection commits one transaction that writes t and u while the
// reader is between its per-CRR feed statements: the reader must return it
// whole (or not at all), from one snapshot.
TEST(ChangeReaderTest, ATransactionCommittedMidReadIsNeverReturnedInPart) {
  TempPath path;
  TestDb reader_db(path.str());
  reader_db.Exec("PRAGMA journal_mode = WAL");
  reader_db.Exec(kChangeApiSchema);
  TestDb writer(path.str());
  struct Hook {
    TestDb* writer;
    bool fired = false;
  } hook{&writer};
  sqlite3_trace_v2(reader_db.get(), SQLITE_TRACE_STMT, [](unsigned, void* ctx, void* p, void*) {
    auto* h = static_cast<Hook*>(ctx);
    const char* sql = sqlite3_sql(static_cast<sqlite3_stmt*>(p));
    // The second CRR's feed: the first one is done by then.
    if (!h->fired && sql && std::strstr(sql, "\"u__crsync_feed\"")) {
      h->fired = true;
      h->writer->Exec("BEGIN; INSERT INTO t VALUES (1, 'a', 1); INSERT INTO u VALUES ('x', 2); COMMIT");
    }
    return 0;
  }, &hook);
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(reader_db.get(), &reader));
  int64_t cursor = 0, v;
  size_t seen = 0;
  for (;;) {
    std::vector<Change> txn;
    ASSERT_OK(reader->NextTransaction(cursor, OriginFilter{}, &txn, &v));
    if (v == 0) break;
    EXPECT_EQ(txn.size(), 3u) << "transaction " << v << " returned in part";
    seen += txn.size();
    cursor = v;
  }
  sqlite3_trace_v2(reader_db.get(), 0, nullptr, nullptr);
  ASSERT_TRUE(hook.fired);
  // Whatever the first pass saw, a reader resuming from its cursor gets
  // the rest: nothing is skipped.
  std::vector<Change> rest;
  ASSERT_OK(reader->NextTransaction(cursor, OriginFilter{}, &rest, &v));
  EXPECT_EQ(seen + rest.size(), 3u);
  EXPECT_TRUE(sqlite3_get_autocommit(reader_db.get()));
}

TEST(ChangeReaderTest, OriginFilterExcludesTheRequester) {
  TestDb a, b;
  a.Exec(kChangeApiSchema);
  b.Exec(kChangeApiSchema);
  a.Exec("INSERT INTO t VALUES (1, 'a', 1)");
  Sync(a, b);
  b.Exec("INSERT INTO t VALUES (2, 'b', 2)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(b.get(), &reader));
  OriginFilter not_a;
  not_a.mode = OriginFilter::Mode::kExcept;
  std::string hex = a.Text("SELECT hex(crsql_site_id())");
  for (size_t i = 0; i < hex.size(); i += 2)
    not_a.site += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  std::vector<Change> txn;
  int64_t v;
  ASSERT_OK(reader->NextTransaction(0, not_a, &txn, &v));
  ASSERT_EQ(txn.size(), 2u);
  EXPECT_EQ(txn[0].pk, std::string("\x01\x09\x02", 3));
}

// A filter the scan would misread is refused by name, and the reader
// still works afterwards.
TEST(ChangeReaderTest, AMalformedOriginFilterIsRefused) {
  TestDb db;
  db.Exec(kChangeApiSchema);
  db.Exec("INSERT INTO t VALUES (1, 'a', 1)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(db.get(), &reader));
  std::vector<Change> txn;
  int64_t v = -1;
  for (auto mode : {OriginFilter::Mode::kOnly, OriginFilter::Mode::kExcept}) {
    for (const std::string& site : {std::string(), std::string(15, 'x'), std::string(17, 'x')}) {
      Status s = reader->NextTransaction(0, OriginFilter{mode, site}, &txn, &v);
      EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
      EXPECT_THAT(s.message(), HasSubstr("16-byte site id, got " + std::to_string(site.size())));
      EXPECT_EQ(v, 0);
    }
  }
  Status s = reader->NextTransaction(0, OriginFilter{static_cast<OriginFilter::Mode>(42), ""}, &txn, &v);
  EXPECT_THAT(s.message(), HasSubstr("unknown mode 42"));
  s = reader->NextTransaction(0, OriginFilter{static_cast<OriginFilter::Mode>(42), ""},
                              [](Change&) { return Status::OK(); }, &v);
  EXPECT_THAT(s.message(), HasSubstr("unknown mode 42"));
  EXPECT_TRUE(txn.empty());
  ASSERT_OK(reader->NextTransaction(0, OriginFilter{}, &txn, &v));
  EXPECT_EQ(v, 1);
  EXPECT_EQ(txn.size(), 2u);
}

}  // namespace
}  // namespace crsync
