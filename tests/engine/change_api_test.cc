// ChangeReader and ChangeApplier: the sidecar's paths.
#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>

#include "crsync/engine.h"
#include "tests/change_util.h"
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

// A Change (TEXT or INTEGER value) as the row INSERT INTO crsql_changes takes.
ChangeRow ToRow(const Change& c) {
  return ChangeRow{Value::Text(c.table), Value::Blob(c.pk), Value::Text(c.cid),
                   c.val_type == SQLITE_TEXT ? Value::Text(c.val_bytes) : Value::Int(c.val_int),
                   Value::Int(c.col_version), Value::Int(c.db_version), Value::Blob(c.site_id),
                   Value::Int(c.cl), Value::Int(c.seq)};
}

constexpr char kSchema[] =
    "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a, b); SELECT crsql_as_crr('t');"
    "CREATE TABLE u (k TEXT PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('u');";

TEST(ChangeReaderTest, ReadsOneWholeTransactionAtATime) {
  TestDb db;
  db.Exec(kSchema);
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
  db.Exec(kSchema);
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
  db.Exec(kSchema);
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
  db.Exec(kSchema);
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
  db.Exec(kSchema);
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
  db.Exec(kSchema);
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
  reader_db.Exec(kSchema);
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
  a.Exec(kSchema);
  b.Exec(kSchema);
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
  db.Exec(kSchema);
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

TEST(ChangeApplierTest, AppliesBatchTracksPeerOnceAndMatchesSql) {
  TestDb a, b, c;
  for (TestDb* d : {&a, &b, &c}) d->Exec(kSchema);
  a.Exec("INSERT INTO t VALUES (1, 'a', 1); INSERT INTO u VALUES ('x', 1); UPDATE t SET a = 'z';"
         "DELETE FROM u;");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(a.get(), &reader));
  std::vector<Change> batch;
  int64_t cursor = 0, v;
  do {
    ASSERT_OK(reader->NextTransaction(cursor, OriginFilter{}, &batch, &v));
    if (v) cursor = v;
  } while (v);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  int64_t impacted = 0;
  ASSERT_OK(applier->Apply(batch, 0, &impacted));
  EXPECT_EQ(impacted, 3);  // t.a, t.b, u tombstone
  Sync(a, c);               // the SQL path
  EXPECT_EQ(b.Query("SELECT * FROM t"), c.Query("SELECT * FROM t"));
  EXPECT_EQ(b.Query("SELECT \"table\", hex(pk), cid, val, col_version, db_version, hex(site_id), cl, seq "
                    "FROM crsql_changes"),
            c.Query("SELECT \"table\", hex(pk), cid, val, col_version, db_version, hex(site_id), cl, seq "
                    "FROM crsql_changes"));
  EXPECT_EQ(b.Query("SELECT version, seq, tag, event FROM crsql_tracked_peers"),
            (Rows{{"4", "0", "0", "0"}}));
}

// The batch is merged window by window (MetaBatch::kWindow rows); an error
// names the change by its place in the whole batch, and a window already
// merged is undone with the rest.
TEST(ChangeApplierTest, ABadChangeInALaterWindowIsNamedByItsPlaceInTheBatch) {
  TestDb a, b;
  a.Exec(kSchema);
  b.Exec(kSchema);
  a.Exec("BEGIN");
  for (int i = 0; i < 2500; ++i) a.Exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'a', 1)");
  a.Exec("COMMIT");
  std::vector<Change> batch = ToChanges(ReadChanges(a.get()));
  ASSERT_EQ(batch.size(), 5000u);
  batch[4321].cid = "nope";
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  const Rows before = CrrState(b, {"t", "t__crsync_rows", "t__crsync_feed"});
  Status s = applier->Apply(batch);
  EXPECT_THAT(s.message(), HasSubstr("change 4322 of 5000"));
  EXPECT_THAT(s.message(), HasSubstr("no such column t.nope"));
  // The windows merged before the bad one are undone too: metadata, feed,
  // tracked peers and the version with the rows.
  EXPECT_EQ(CrrState(b, {"t", "t__crsync_rows", "t__crsync_feed"}), before);
  batch[4321].cid = batch[4320].cid == "a" ? "b" : "a";
  ASSERT_OK(applier->Apply(batch));
  EXPECT_EQ(b.Query("SELECT * FROM t ORDER BY id"), a.Query("SELECT * FROM t ORDER BY id"));
  EXPECT_EQ(b.Query("SELECT version, tag, event FROM crsql_tracked_peers"), (Rows{{"1", "0", "0"}}));
}

TEST(ChangeApplierTest, BadChangeRollsBackTheWholeBatch) {
  TestDb a, b;
  a.Exec(kSchema);
  b.Exec(kSchema);
  a.Exec("INSERT INTO t VALUES (1, 'a', 1)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(a.get(), &reader));
  std::vector<Change> batch;
  int64_t v;
  ASSERT_OK(reader->NextTransaction(0, OriginFilter{}, &batch, &v));
  batch.push_back(batch[0]);
  batch.back().cid = "nope";
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  Status s = applier->Apply(batch);
  EXPECT_THAT(s.message(), HasSubstr("change 3 of 3"));
  EXPECT_THAT(s.message(), HasSubstr("no such column t.nope"));
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "0");
  EXPECT_EQ(b.One("SELECT count(*) FROM crsql_changes"), "0");
  EXPECT_EQ(b.One("SELECT count(*) FROM crsql_tracked_peers"), "0");
  EXPECT_EQ(sqlite3_get_autocommit(b.get()), 1);
  // Inside a caller's transaction only the batch is undone.
  b.Exec("BEGIN; INSERT INTO u VALUES ('mine', 1);");
  EXPECT_FALSE(applier->Apply(batch).ok());
  EXPECT_EQ(sqlite3_get_autocommit(b.get()), 0);
  b.Exec("COMMIT");
  EXPECT_EQ(b.One("SELECT count(*) FROM u"), "1");
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "0");
}

// A val_type that is no SQLite type was merged as NULL: a value silently
// lost. It is refused, by its place in the batch, and nothing remains.
TEST(ChangeApplierTest, AValTypeThatIsNoSqliteTypeIsRefused) {
  TestDb b;
  b.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');");
  const std::string site(16, '\x11');
  Change good = TextChange("t", SmallIntPk(1), "v", "x", 1, 5, site);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  for (int bad_type : {0, 6, 99, -1}) {
    Change bad = good;
    bad.pk = SmallIntPk(2);
    bad.val_type = bad_type;
    Status s = applier->Apply({good, bad});
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("change 2 of 2: val_type " + std::to_string(bad_type)));
    EXPECT_EQ(b.One("SELECT count(*) FROM t"), "0");
    EXPECT_EQ(b.One("SELECT count(*) FROM crsql_changes"), "0");
  }
  Change null_value = good;
  null_value.val_type = SQLITE_NULL;
  ASSERT_OK(applier->Apply({null_value}));
  EXPECT_EQ(b.Query("SELECT id, v IS NULL FROM t"), (Rows{{"1", "1"}}));
}

// A refused batch inside a caller's transaction leaves no trace: not the
// pending db_version its merges raised (a later merge of version 5 would be
// stamped 100), nor the seqs they took.
TEST(ChangeApplierTest, ARefusedBatchLeavesNoVersionBehind) {
  TestDb b;
  b.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); SELECT crsql_as_crr('t');");
  Change good = TextChange("t", SmallIntPk(1), "v", "x", 1, 5, std::string(16, '\x11'));
  Change high = good;
  high.pk = SmallIntPk(2);
  high.db_version = 100;
  Change bad = good;
  bad.cid = "nosuch";
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  b.Exec("BEGIN");
  EXPECT_FALSE(applier->Apply({high, bad}).ok());
  ASSERT_OK(applier->Apply({good}));
  b.Exec("COMMIT");
  EXPECT_EQ(b.Query("SELECT hex(pk), db_version FROM crsql_changes"), (Rows{{"'010901'", "5"}}));
  EXPECT_EQ(b.One("SELECT crsql_db_version()"), "5");
}

TEST(ChangeApplierTest, ApplyInTransactionLeavesAtomicityToTheCaller) {
  TestDb a, b;
  a.Exec(kSchema);
  b.Exec(kSchema);
  a.Exec("INSERT INTO t VALUES (1, 'a', 1); INSERT INTO t VALUES (2, 'b', 2)");
  std::unique_ptr<ChangeReader> reader;
  ASSERT_OK(ChangeReader::Open(a.get(), &reader));
  std::vector<Change> first, second;
  int64_t v;
  ASSERT_OK(reader->NextTransaction(0, OriginFilter{}, &first, &v));
  ASSERT_OK(reader->NextTransaction(v, OriginFilter{}, &second, &v));
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(b.get(), &applier));
  // Outside a transaction it refuses and changes nothing.
  Status misuse = applier->ApplyInTransaction(first, 0);
  EXPECT_EQ(misuse.sqlite_code(), SQLITE_MISUSE);
  EXPECT_THAT(misuse.message(), HasSubstr("needs an open transaction"));
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "0");
  // Two batches in one transaction: both merged at COMMIT, tracked once.
  b.Exec("BEGIN IMMEDIATE");
  int64_t impacted = 0;
  ASSERT_OK(applier->ApplyInTransaction(first, 0, &impacted));
  EXPECT_EQ(impacted, 2);
  ASSERT_OK(applier->ApplyInTransaction(second, 0));
  b.Exec("COMMIT");
  EXPECT_EQ(b.Query("SELECT * FROM t ORDER BY id"), a.Query("SELECT * FROM t ORDER BY id"));
  EXPECT_EQ(b.One("SELECT version FROM crsql_tracked_peers"), "2");
  // A bad batch: the caller's ROLLBACK undoes it and what came before it.
  a.Exec("INSERT INTO t VALUES (3, 'c', 3)");
  std::vector<Change> third;
  ASSERT_OK(reader->NextTransaction(v, OriginFilter{}, &third, &v));
  std::vector<Change> bad = third;
  bad.back().cid = "nope";
  b.Exec("BEGIN IMMEDIATE");
  ASSERT_OK(applier->ApplyInTransaction(third, 0));
  EXPECT_THAT(applier->ApplyInTransaction(bad, 0).message(), HasSubstr("no such column t.nope"));
  b.Exec("ROLLBACK");
  EXPECT_EQ(b.One("SELECT count(*) FROM t"), "2");
  EXPECT_EQ(b.One("SELECT version FROM crsql_tracked_peers"), "2");
  // The applier is still usable afterwards.
  ASSERT_OK(applier->Apply(third));
  EXPECT_EQ(b.Query("SELECT * FROM t ORDER BY id"), a.Query("SELECT * FROM t ORDER BY id"));
}

// A caller's ROLLBACK TO between two batches undoes the first: what the
// applier remembered of the rows it wrote must go with it, or the second
// batch is judged against a clock that is no longer stored.
TEST(ChangeApplierTest, RollingBackToASavepointBetweenBatchesForgetsTheFirst) {
  TestDb db;
  db.Exec(kSchema);
  auto change = [](const char* val, int64_t col_version, char site) {
    return TextChange("t", SmallIntPk(1), "a", val, col_version, 4, std::string(16, site));
  };
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(db.get(), &applier));
  db.Exec("BEGIN; SAVEPOINT s");
  ASSERT_OK(applier->ApplyInTransaction({change("x", 5, 'A')}, -1));
  db.Exec("ROLLBACK TO s");
  ASSERT_OK(applier->ApplyInTransaction({change("y", 3, 'B')}, -1));
  db.Exec("RELEASE s; COMMIT");
  EXPECT_EQ(db.Query("SELECT id, a FROM t"), (Rows{{"1", "'y'"}}));
  EXPECT_EQ(db.One("SELECT col_version FROM crsql_changes WHERE cid = 'a'"), "3");
}

// Equal clocks for one cell in one batch: ChangeApplier must keep the same
// winner as INSERT INTO crsql_changes row by row (which compares with what
// the table stored, after the column's affinity, and with the stored
// change's site, even when that site is new in the batch).
TEST(ChangeApplierTest, BatchBreaksTiesLikeRowByRow) {
  constexpr char kTextSchema[] =
      "CREATE TABLE w (id INTEGER PRIMARY KEY NOT NULL, s TEXT); SELECT crsql_as_crr('w');";
  auto change = [](char site, Value val, int64_t dbv) {
    Change c = TextChange("w", SmallIntPk(1), "s", val.bytes, 1, dbv, std::string(16, site));
    c.val_type = val.type;
    c.val_int = val.i;
    return c;
  };
  struct Case {
    const char* name;
    bool merge_equal_values;
    std::vector<Change> changes;
  };
  std::vector<Case> cases = {
      // 52 is stored as '52' (TEXT), which sorts below the INTEGER -16.
      {"affinity", false, {change('\x07', Value::Int(52), 1), change('\x07', Value::Int(-16), 2)}},
      {"same value twice", false,
       {change('\x07', Value::Int(52), 1), change('\x07', Value::Int(52), 2)}},
      // Q then P, both new sites: P < Q, so Q's write stays.
      {"new sites", true, {change('\x0b', Value::Text("x"), 1), change('\x0a', Value::Text("x"), 1)}},
  };
  // Alone (a batch this small merges row by row), and with other rows
  // between the tied changes: then the batch holds the first one's user
  // write (UserWriter writes a window's rows at its end) and the second
  // must break the tie against the held value, not the stored row.
  auto filler = [&](int id) {
    Change c = change('\x05', Value::Text("f" + std::to_string(id)), 1);
    c.pk = std::string("\x01\x09", 2) + static_cast<char>(id);
    return c;
  };
  for (const Case& k : cases) {
    for (bool padded : {false, true}) {
      SCOPED_TRACE(std::string(k.name) + (padded ? ", padded" : ", alone"));
      std::vector<Change> changes = k.changes;
      if (padded) {
        changes = {k.changes[0]};
        for (int id = 10; id < 30; ++id) changes.push_back(filler(id));
        changes.push_back(k.changes[1]);
      }
      TestDb batch, by_row;
      for (TestDb* d : {&batch, &by_row}) {
        d->Exec(kTextSchema);
        if (k.merge_equal_values) d->Exec("SELECT crsql_config_set('merge-equal-values', 1)");
      }
      std::unique_ptr<ChangeApplier> applier;
      ASSERT_OK(ChangeApplier::Open(batch.get(), &applier));
      ASSERT_OK(applier->Apply(changes));
      // One statement per change, in one transaction like the batch (so
      // local db_versions compare).
      by_row.Exec("BEGIN");
      for (const Change& c : changes) ASSERT_OK(ApplyChanges(by_row.get(), {ToRow(c)}));
      by_row.Exec("COMMIT");
      const char* q = "SELECT id, quote(s) FROM w ORDER BY id";
      EXPECT_EQ(batch.Query(q), by_row.Query(q));
      const char* meta =
          "SELECT hex(pk), cid, quote(val), hex(site_id), db_version, col_version FROM crsql_changes "
          "ORDER BY pk";
      EXPECT_EQ(batch.Query(meta), by_row.Query(meta));
    }
  }
}

// A window's user rows are written with one statement per run of rows
// writing the same columns. When the user's table refuses one (here a
// CHECK), the error names that row's changes exactly as the row-by-row
// path would, and nothing of the batch remains; the same through
// ApplyInTransaction once the caller rolls back.
TEST(ChangeApplierTest, ARefusedUserRowInABulkWriteIsNamedAndNothingRemains) {
  TestDb src, dst;
  src.Exec("CREATE TABLE c (id INTEGER PRIMARY KEY NOT NULL, a, n); SELECT crsql_as_crr('c');");
  dst.Exec("CREATE TABLE c (id INTEGER PRIMARY KEY NOT NULL, a, n INTEGER CHECK (n IS NULL OR n >= 0));"
           "SELECT crsql_as_crr('c');");
  src.Exec("BEGIN");
  for (int i = 0; i < 80; ++i) src.Exec("INSERT INTO c VALUES (" + std::to_string(i) + ", 'a', " + std::to_string(i) + ")");
  src.Exec("COMMIT");
  std::vector<Change> all = ToChanges(ReadChanges(src.get()));
  ASSERT_EQ(all.size(), 160u);
  // Rows 0..39 carry a and n, rows 40..79 only n: two runs of different
  // columns. Row 60 (change 80 + 21) breaks the receiver's CHECK.
  std::vector<Change> batch;
  for (const Change& c : all) {
    int id = static_cast<unsigned char>(c.pk[2]);
    if (id >= 40 && c.cid == "a") continue;
    batch.push_back(c);
    if (id == 60 && c.cid == "n") batch.back().val_int = -1;
  }
  ASSERT_EQ(batch.size(), 120u);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(dst.get(), &applier));
  Status s = applier->Apply(batch);
  EXPECT_THAT(s.message(), HasSubstr("changes 101..101 of 120"));
  EXPECT_THAT(s.message(), HasSubstr("CHECK constraint failed"));
  EXPECT_EQ(dst.One("SELECT count(*) FROM c"), "0");
  EXPECT_EQ(dst.One("SELECT count(*) FROM crsql_changes"), "0");
  EXPECT_EQ(dst.One("SELECT count(*) FROM crsql_tracked_peers"), "0");
  EXPECT_EQ(dst.One("SELECT count(*) FROM crsql_site_id"), "1");
  dst.Exec("BEGIN IMMEDIATE");
  s = applier->ApplyInTransaction(batch, 0);
  EXPECT_THAT(s.message(), HasSubstr("changes 101..101 of 120"));
  dst.Exec("ROLLBACK");
  EXPECT_EQ(dst.One("SELECT count(*) FROM c"), "0");
  // Fixed, the batch merges, and matches the row-by-row path.
  batch[100].val_int = 60;
  ASSERT_OK(applier->Apply(batch));
  TestDb by_row;
  by_row.Exec("CREATE TABLE c (id INTEGER PRIMARY KEY NOT NULL, a, n); SELECT crsql_as_crr('c');");
  by_row.Exec("BEGIN");
  for (const Change& c : batch) ASSERT_OK(ApplyChanges(by_row.get(), {ToRow(c)}));
  by_row.Exec("COMMIT");
  EXPECT_EQ(dst.Query("SELECT * FROM c ORDER BY id"), by_row.Query("SELECT * FROM c ORDER BY id"));
  EXPECT_EQ(dst.One("SELECT count(*) FROM c WHERE a IS NOT NULL"), "40");
}

// ChangeApplier holds rows' metadata and stores it in bulk every 1024 rows
// (MetaBatch). A large batch, with rows that exist and rows that do not,
// repeats of one row in different windows, deletes and resurrections, must
// leave exactly what INSERT INTO crsql_changes row by row leaves. In pk
// order (with some changes moved back a little), the row-by-row path
// serves most metadata lookups from its read-ahead window
// (engine/meta_read_ahead.h) while its own writes land inside that window.
void ExpectApplierMatchesRowByRow(bool pk_order) {
  TestDb src, via_applier, via_sql;
  for (TestDb* d : {&src, &via_applier, &via_sql}) d->Exec(kSchema);
  std::mt19937_64 rng(7);
  src.Exec("BEGIN");
  for (int i = 0; i < 3000; ++i) {
    src.Exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'a" + std::to_string(i) + "', " +
             std::to_string(i % 7) + ")");
  }
  src.Exec("COMMIT");
  // Both receivers already hold an older version of a third of the rows.
  auto early = ReadChanges(src.get(), "WHERE pk IN (SELECT crsql_pack_columns(id) FROM t WHERE id % 3 = 0)");
  for (TestDb* d : {&via_applier, &via_sql}) {
    d->Exec("BEGIN");
    ASSERT_OK(ApplyChanges(d->get(), early));
    d->Exec("COMMIT");
  }
  for (int k = 0; k < 2000; ++k) {
    int id = static_cast<int>(rng() % 3200);
    switch (rng() % 4) {
      case 0:
        src.Exec("UPDATE t SET a = 'u" + std::to_string(k) + "' WHERE id = " + std::to_string(id));
        break;
      case 1:
        src.Exec("DELETE FROM t WHERE id = " + std::to_string(id));
        break;
      default:
        src.Exec("INSERT OR REPLACE INTO t VALUES (" + std::to_string(id) + ", 'r', " +
                 std::to_string(k) + ")");
    }
  }
  auto rows = ReadChanges(src.get());
  std::vector<ChangeRow> batch = rows;
  for (size_t i = 0; i < rows.size(); i += 5) batch.push_back(rows[i]);  // duplicates
  std::shuffle(batch.begin(), batch.end(), rng);
  if (pk_order) {
    std::stable_sort(batch.begin(), batch.end(),
                     [](const ChangeRow& a, const ChangeRow& b) { return a[1].bytes < b[1].bytes; });
    // Some changes move back a little: rows written earlier in a window
    // are looked up again from it.
    for (size_t i = 40; i < batch.size(); ++i) {
      if (rng() % 8 == 0) std::swap(batch[i], batch[i - 1 - rng() % 40]);
    }
  }
  ASSERT_GT(batch.size(), 6000u);
  std::vector<Change> changes = ToChanges(batch);
  std::unique_ptr<ChangeApplier> applier;
  ASSERT_OK(ChangeApplier::Open(via_applier.get(), &applier));
  ASSERT_OK(applier->Apply(changes));
  via_sql.Exec("BEGIN");
  ASSERT_OK(ApplyChanges(via_sql.get(), batch));
  via_sql.Exec("COMMIT");
  const char* q = "SELECT * FROM t ORDER BY id";
  EXPECT_EQ(via_applier.Query(q), via_sql.Query(q));
  EXPECT_EQ(via_applier.Query(q), src.Query(q));
  const char* meta =
      "SELECT hex(pk), cid, quote(val), col_version, hex(site_id), cl FROM crsql_changes "
      "ORDER BY pk, cid";
  EXPECT_EQ(via_applier.Query(meta), via_sql.Query(meta));
  EXPECT_EQ(via_applier.One("PRAGMA integrity_check"), "'ok'");
  // Storage itself: the same metadata rows and exactly the same feed
  // entries (a stale entry would be invisible through crsql_changes).
  const char* rows_q = "SELECT hex(pk), hex(meta) FROM t__crsync_rows ORDER BY pk";
  EXPECT_EQ(via_applier.Query(rows_q), via_sql.Query(rows_q));
  const char* feed_q = "SELECT dbv, lo, hex(pk) FROM t__crsync_feed ORDER BY dbv, lo, pk";
  EXPECT_EQ(via_applier.Query(feed_q), via_sql.Query(feed_q));
  // The feed lists exactly the stored records: reading by version gives
  // every record once.
  EXPECT_EQ(via_applier.One("SELECT count(*) FROM crsql_changes WHERE db_version > 0"),
            via_sql.One("SELECT count(*) FROM crsql_changes WHERE db_version > 0"));
}

TEST(ChangeApplierTest, LargeShuffledBatchMatchesRowByRow) { ExpectApplierMatchesRowByRow(false); }
TEST(ChangeApplierTest, LargeBatchInPkOrderMatchesRowByRow) { ExpectApplierMatchesRowByRow(true); }

TEST(ChangeApiTest, NeedsTheEngine) {
  DbPtr plain;
  ASSERT_OK(OpenDb(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &plain));
  std::unique_ptr<ChangeReader> reader;
  EXPECT_THAT(ChangeReader::Open(plain.get(), &reader).message(), HasSubstr("not installed"));
}

// crsync_valbuf has 64 columns: a row write of a 63-column table (with its
// key) is the widest that goes in bulk, and one column more goes row by
// row (tests/engine/wide_table_test.cc has wider tables). Both end as the
// source has them.
TEST(ChangeApplierTest, RowsAtAndPastTheBulkWidthMerge) {
  for (int cols : {63, 64}) {
    SCOPED_TRACE(cols);
    std::string schema = "CREATE TABLE w (id INTEGER PRIMARY KEY NOT NULL";
    for (int i = 0; i < cols; ++i) schema += ", c" + std::to_string(i);
    schema += "); SELECT crsql_as_crr('w')";
    TestDb src, dst;
    src.Exec(schema);
    dst.Exec(schema);
    src.Exec("BEGIN");
    for (int r = 0; r < 20; ++r) {
      std::string row = std::to_string(r);
      for (int i = 0; i < cols; ++i) row += ", " + std::to_string(r * 100 + i);
      src.Exec("INSERT INTO w VALUES (" + row + ")");
    }
    src.Exec("COMMIT");
    src.Exec("UPDATE w SET c5 = 'narrow' WHERE id % 2 = 0");
    std::unique_ptr<ChangeApplier> applier;
    ASSERT_OK(ChangeApplier::Open(dst.get(), &applier));
    ASSERT_OK(applier->Apply(ToChanges(ReadChanges(src.get(), "WHERE db_version = 1"))));
    ASSERT_OK(applier->Apply(ToChanges(ReadChanges(src.get(), "WHERE db_version = 2"))));
    EXPECT_EQ(dst.Query("SELECT * FROM w ORDER BY id"), src.Query("SELECT * FROM w ORDER BY id"));
    const char* meta = "SELECT hex(pk), cid, col_version FROM crsql_changes ORDER BY pk, cid";
    EXPECT_EQ(dst.Query(meta), src.Query(meta));
  }
}

// The buffers the bulk statements read (crsync_rowbuf, crsync_valbuf,
// crsync_rowbuf_meta) take
// a pointer only C++ can bind: from SQL text they are empty, whatever is
// passed, and cannot be used by triggers or views (DIRECTONLY).
TEST(ChangeApiTest, BulkBufferTablesShowNothingToSql) {
  TestDb db;
  db.Exec(kSchema);
  for (const char* t : {"crsync_rowbuf", "crsync_valbuf"}) {
    SCOPED_TRACE(t);
    EXPECT_EQ(db.One(std::string("SELECT count(*) FROM ") + t), "0");
    EXPECT_EQ(db.One(std::string("SELECT count(*) FROM ") + t + "(x'0102030405060708')"), "0");
    db.Exec("CREATE TABLE IF NOT EXISTS log (n)");
    Status s = db.Try(std::string("CREATE TRIGGER tr AFTER INSERT ON u BEGIN INSERT INTO log SELECT count(*) FROM ") +
                      t + "; END; INSERT INTO u VALUES ('k', 1)");
    EXPECT_THAT(s.message(), HasSubstr("unsafe use of"));
    db.Exec("DROP TRIGGER IF EXISTS tr; DELETE FROM u");
  }
  EXPECT_EQ(db.One("SELECT v0 IS NULL AND v63 IS NULL FROM crsync_valbuf UNION ALL SELECT 1"), "1");
  // The metadata walk's lookup likewise answers NULL to SQL text.
  EXPECT_EQ(db.One("SELECT crsync_rowbuf_meta(x'0102030405060708', x'01') IS NULL"), "1");
  Status s = db.Try("CREATE VIEW w AS SELECT crsync_rowbuf_meta(NULL, x'01'); SELECT * FROM w");
  EXPECT_THAT(s.message(), HasSubstr("unsafe use of"));
}

}  // namespace
}  // namespace crsync
