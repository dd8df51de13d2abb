// crr-semantics §11: merging, worked scenarios and cases.
#include "engine/conn_engine.h"
#include "tests/change_util.h"
#include "tests/engine/sync_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

constexpr char kSchema[] =
    "CREATE TABLE foo (a INTEGER PRIMARY KEY NOT NULL, b INTEGER); SELECT crsql_as_crr('foo');";

class MergeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c1_.Exec(kSchema);
    c2_.Exec(kSchema);
    s1_ = c1_.One("SELECT hex(crsql_site_id())");
    s2_ = c2_.One("SELECT hex(crsql_site_id())");
  }
  // (cid, val, col_version, db_version, origin, cl, seq), origin as c1/c2.
  Rows State(TestDb& db) {
    Rows rows = db.Query(
        "SELECT cid, val, col_version, db_version, hex(site_id), cl, seq FROM crsql_changes");
    for (auto& r : rows) r[4] = r[4] == s1_ ? "c1" : (r[4] == s2_ ? "c2" : r[4]);
    return rows;
  }
  TestDb c1_, c2_;
  std::string s1_, s2_;
};

TEST_F(MergeTest, Scenario1LargerValueWinsAtEqualVersions) {
  c1_.Exec("INSERT INTO foo VALUES (1, 4)");
  c2_.Exec("INSERT INTO foo VALUES (1, 1)");
  Sync(c1_, c2_);
  EXPECT_EQ(State(c2_), (Rows{{"'b'", "4", "1", "2", "c1", "1", "0"}}));
  EXPECT_EQ(c2_.One("SELECT b FROM foo"), "4");
  EXPECT_EQ(c2_.One("SELECT crsql_db_version()"), "2");
}

TEST_F(MergeTest, Scenario2SameValueSameVersionIsNoop) {
  c1_.Exec("INSERT INTO foo VALUES (1, 2)");
  c2_.Exec("INSERT INTO foo VALUES (1, 2)");
  Sync(c1_, c2_);
  EXPECT_EQ(State(c2_), (Rows{{"'b'", "2", "1", "1", "c2", "1", "0"}}));
}

TEST_F(MergeTest, Scenario3HigherColVersionWins) {
  c1_.Exec("INSERT INTO foo VALUES (1, 2); UPDATE foo SET b = 0;");
  c2_.Exec("INSERT INTO foo VALUES (1, 2)");
  Sync(c1_, c2_);
  EXPECT_EQ(State(c2_), (Rows{{"'b'", "0", "2", "2", "c1", "1", "0"}}));
  Rows before = State(c1_);
  Sync(c2_, c1_);
  EXPECT_EQ(State(c1_), before);
}

TEST_F(MergeTest, Scenario4DeleteBeatsEditsOfTheSameLife) {
  c1_.Exec("BEGIN; INSERT INTO foo VALUES (1, 1); DELETE FROM foo; COMMIT;");
  EXPECT_EQ(State(c1_), (Rows{{"'-1'", "NULL", "2", "1", "c1", "2", "1"}}));
  c2_.Exec("INSERT INTO foo VALUES (1, 1); UPDATE foo SET b = 2; UPDATE foo SET b = 3;");
  Sync(c1_, c2_);
  EXPECT_EQ(c2_.One("SELECT count(*) FROM foo"), "0");
  EXPECT_EQ(State(c2_), (Rows{{"'-1'", "NULL", "2", "4", "c1", "2", "1"}}));
}

TEST_F(MergeTest, Scenario5LowerClLosesEverything) {
  c1_.Exec("INSERT INTO foo VALUES (1, 1); UPDATE foo SET b = 5;");
  c2_.Exec("INSERT INTO foo VALUES (1, 1); DELETE FROM foo; INSERT INTO foo VALUES (1, 2);");
  Rows before = State(c2_);
  Sync(c1_, c2_);
  EXPECT_EQ(State(c2_), before);
  EXPECT_EQ(c2_.One("SELECT b FROM foo"), "2");
}

TEST_F(MergeTest, Scenario6ResurrectionViaSentinelOfLiveRow) {
  c1_.Exec("BEGIN; INSERT INTO foo VALUES (1, 1); DELETE FROM foo; INSERT INTO foo VALUES (1, 1); COMMIT;");
  EXPECT_EQ(State(c1_), (Rows{{"'-1'", "NULL", "3", "1", "c1", "3", "2"},
                              {"'b'", "1", "1", "1", "c1", "3", "3"}}));
  c2_.Exec("INSERT INTO foo VALUES (1, 1)");
  Sync(c1_, c2_, "WHERE cid = '-1'");
  EXPECT_EQ(State(c2_), (Rows{{"'b'", "1", "0", "2", "c2", "3", "0"},
                              {"'-1'", "NULL", "3", "2", "c1", "3", "2"}}));
  Sync(c1_, c2_, "WHERE cid = 'b'");
  EXPECT_EQ(State(c2_), (Rows{{"'-1'", "NULL", "3", "2", "c1", "3", "2"},
                              {"'b'", "1", "1", "3", "c1", "3", "3"}}));
}

TEST_F(MergeTest, Scenario7ResurrectionViaColumnOfLiveRow) {
  c1_.Exec("BEGIN; INSERT INTO foo VALUES (1, 1); DELETE FROM foo; INSERT INTO foo VALUES (1, 1); COMMIT;");
  c2_.Exec("INSERT INTO foo VALUES (1, 1)");
  Sync(c1_, c2_, "WHERE cid = 'b'");
  EXPECT_EQ(State(c2_), (Rows{{"'-1'", "NULL", "3", "2", "c1", "3", "3"},
                              {"'b'", "1", "1", "2", "c1", "3", "3"}}));
}

TEST_F(MergeTest, Scenario8ResurrectionOfLocallyDeletedRow) {
  c1_.Exec("BEGIN; INSERT INTO foo VALUES (1, 1); DELETE FROM foo; INSERT INTO foo VALUES (1, 1); COMMIT;");
  c2_.Exec("INSERT INTO foo VALUES (1, 1); DELETE FROM foo;");
  Sync(c1_, c2_, "WHERE cid = '-1'");
  EXPECT_EQ(State(c2_), (Rows{{"'-1'", "NULL", "3", "3", "c1", "3", "2"}}));
  EXPECT_EQ(c2_.Query("SELECT a, b FROM foo"), (Rows{{"1", "NULL"}}));
}

// Scenario 9, out-of-order resurrection (upstream's "discord" case): A
// saw the insert and the delete; the updates made after a re-insert reach
// it before the re-insert does.
TEST(MergeScenario9Test, OutOfOrderResurrectionConverges) {
  constexpr char kBar[] =
      "CREATE TABLE bar (id INTEGER PRIMARY KEY NOT NULL, b, c, d, e); SELECT crsql_as_crr('bar');";
  TestDb writer, a;
  writer.Exec(kBar);
  a.Exec(kBar);
  writer.Exec("INSERT INTO bar VALUES (1, 'b1', 'c1', 'd1', 'e1'); DELETE FROM bar;");  // v1, v2
  Sync(writer, a);
  ASSERT_EQ(a.One("SELECT count(*) FROM bar"), "0");
  writer.Exec("INSERT INTO bar VALUES (1, 'b3', 'c3', 'd3', 'e3')");  // v3: cl 3, clocks at 1
  const auto reinsert = ReadChanges(writer.get(), "WHERE db_version = 3");
  ASSERT_EQ(reinsert.size(), 5u);  // the sentinel and four columns
  writer.Exec("UPDATE bar SET b = 'b4', c = 'c4'");  // v4: b and c at col_version 2
  const auto updates = ReadChanges(writer.get(), "WHERE db_version = 4");
  ASSERT_EQ(updates.size(), 2u);

  a.Exec("BEGIN");
  ASSERT_OK(ApplyChanges(a.get(), {updates[0]}));
  EXPECT_EQ(a.One("SELECT crsql_rows_impacted()"), "2") << "the first update resurrects (C6)";
  EXPECT_EQ(a.One("SELECT col_version || '/' || cl FROM crsql_changes WHERE cid = '-1'"), "'3/3'");
  ASSERT_OK(ApplyChanges(a.get(), {updates[1]}));
  EXPECT_EQ(a.One("SELECT crsql_rows_impacted()"), "3") << "the second wins, no clock (C8 a)";
  a.Exec("COMMIT");
  EXPECT_EQ(a.Query("SELECT * FROM bar"), (Rows{{"1", "'b4'", "'c4'", "NULL", "NULL"}}));

  a.Exec("BEGIN");
  ASSERT_OK(ApplyChanges(a.get(), reinsert));
  // The sentinel is C4, b and c lose on col_version (C8 c), d and e win (C8 a).
  EXPECT_EQ(a.One("SELECT crsql_rows_impacted()"), "2");
  a.Exec("COMMIT");
  EXPECT_EQ(a.Query("SELECT * FROM bar"), writer.Query("SELECT * FROM bar"));
  const char* kClocks =
      "SELECT cid, val, col_version, hex(site_id), cl, seq FROM crsql_changes ORDER BY cid";
  EXPECT_EQ(a.Query(kClocks), writer.Query(kClocks));
  EXPECT_EQ(a.Query(kClocks).size(), 5u);
}

TEST_F(MergeTest, Scenario10SeveralMergesInOneTransaction) {
  c2_.Exec("INSERT INTO foo VALUES (100, 0)");  // committed version 1
  std::string s = "X'11111111111111111111111111111111'";
  c2_.Exec("BEGIN;"
           "INSERT INTO crsql_changes VALUES ('foo', X'010901', 'b', 1, 1, 5, " + s + ");"
           "INSERT INTO crsql_changes VALUES ('foo', X'010902', 'b', 1, 1, 10, " + s + ");"
           "INSERT INTO crsql_changes VALUES ('foo', X'010903', 'b', 1, 1, 3, " + s + ");"
           "INSERT INTO foo VALUES (4, 4);");
  EXPECT_EQ(c2_.One("SELECT crsql_db_version()"), "1");
  c2_.Exec("COMMIT");
  EXPECT_EQ(c2_.Query("SELECT hex(pk), db_version FROM crsql_changes WHERE db_version > 1 "
                      "ORDER BY pk"),
            (Rows{{"'010901'", "5"}, {"'010902'", "10"}, {"'010903'", "10"}, {"'010904'", "10"}}));
  EXPECT_EQ(c2_.One("SELECT crsql_db_version()"), "10");
}

// A merge keeps the row metadata it read (the next change is usually for
// the same row); a local write to that row in between must be seen, whether
// it is recorded at once (the first writes of a transaction) or captured.
TEST_F(MergeTest, AMergeAfterALocalWriteToTheSameRowSeesIt) {
  const std::string s = "X'11111111111111111111111111111111'";
  for (int earlier_writes : {0, 6}) {
    SCOPED_TRACE(earlier_writes);
    TestDb db;
    db.Exec(kSchema);
    db.Exec("INSERT INTO foo VALUES (1, 5)");  // b: col_version 1
    db.Exec("BEGIN");
    for (int i = 0; i < earlier_writes; ++i)
      db.Exec("INSERT INTO foo VALUES (" + std::to_string(100 + i) + ", 0)");
    // Loses (col_version 1, smaller value): only reads row 1's metadata.
    db.Exec("INSERT INTO crsql_changes VALUES ('foo', X'010901', 'b', 1, 1, 1, " + s + ")");
    db.Exec("UPDATE foo SET b = 7 WHERE a = 1");  // b: col_version 2
    // col_version 2 against the local 2: a tie, and 3 < 7 loses. Against a
    // stale col_version 1 it would win and overwrite the local write.
    db.Exec("INSERT INTO crsql_changes VALUES ('foo', X'010901', 'b', 3, 2, 2, " + s + ")");
    db.Exec("COMMIT");
    EXPECT_EQ(db.One("SELECT b FROM foo WHERE a = 1"), "7");
    EXPECT_EQ(db.One("SELECT col_version FROM crsql_changes WHERE pk = X'010901'"), "2");
  }
}

TEST_F(MergeTest, MergedWritesAreNotRecordedAgainAndDoNotEcho) {
  c1_.Exec("INSERT INTO foo VALUES (1, 1)");
  Sync(c1_, c2_);
  EXPECT_EQ(c2_.One("SELECT count(*) FROM crsql_changes WHERE site_id IS NULL"), "0");
  EXPECT_EQ(c2_.One("SELECT col_version FROM crsql_changes"), "1");
  EXPECT_EQ(c2_.One("SELECT crsql_internal_sync_bit()"), "0");
}

TEST_F(MergeTest, RowsImpactedCountsAndResetsAtCommit) {
  c1_.Exec("BEGIN; INSERT INTO foo VALUES (1, 1); DELETE FROM foo; INSERT INTO foo VALUES (1, 1);"
           "INSERT INTO foo VALUES (2, 2); COMMIT;");
  c2_.Exec("INSERT INTO foo VALUES (1, 0);");
  auto rows = ReadChanges(c1_.get(), "WHERE cid = 'b'");
  c2_.Exec("BEGIN");
  ASSERT_OK(ApplyChanges(c2_.get(), rows));
  // row 1: C6 (resurrect + win) = 2; row 2: C7 = 1.
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "3");
  ASSERT_OK(ApplyChanges(c2_.get(), rows));  // duplicates change nothing
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "3");
  c2_.Exec("COMMIT");
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "0");
}

// §11.8: a delete (C3) and a resurrection by the sentinel (C5) count one each.
TEST_F(MergeTest, RowsImpactedCountsDeletesAndSentinelResurrections) {
  c1_.Exec("INSERT INTO foo VALUES (1, 1); INSERT INTO foo VALUES (2, 2);");
  Sync(c1_, c2_);
  c1_.Exec("DELETE FROM foo WHERE a = 1; DELETE FROM foo WHERE a = 2; INSERT INTO foo VALUES (2, 2);");
  auto sentinels = ReadChanges(c1_.get(), "WHERE cid = '-1' ORDER BY pk");
  ASSERT_EQ(sentinels.size(), 2u);
  c2_.Exec("BEGIN");
  ASSERT_OK(ApplyChanges(c2_.get(), {sentinels[0]}));  // cl 2 over cl 1: C3
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "1");
  EXPECT_EQ(c2_.One("SELECT count(*) FROM foo WHERE a = 1"), "0");
  ASSERT_OK(ApplyChanges(c2_.get(), {sentinels[1]}));  // cl 3 over a live cl 1: C5
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "2");
  EXPECT_EQ(c2_.One("SELECT col_version FROM crsql_changes WHERE cid = 'b' AND pk = X'010902'"), "0");
  c2_.Exec("COMMIT");
}

// Merges undone by ROLLBACK TO, or by their failing statement, no longer
// count (§11.8: changes that modified local state in this transaction).
TEST_F(MergeTest, RowsImpactedForgetsWhatWasRolledBack) {
  c1_.Exec("INSERT INTO foo VALUES (1, 1); INSERT INTO foo VALUES (2, 2); INSERT INTO foo VALUES (3, 3)");
  auto rows = ReadChanges(c1_.get(), "WHERE cid = 'b' ORDER BY pk");
  ASSERT_EQ(rows.size(), 3u);
  c2_.Exec("BEGIN");
  ASSERT_OK(ApplyChanges(c2_.get(), {rows[0]}));
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "1");
  c2_.Exec("SAVEPOINT s");
  ASSERT_OK(ApplyChanges(c2_.get(), {rows[1]}));
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "2");
  c2_.Exec("ROLLBACK TO s");
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "1");
  // A multi-row insert whose last row is bad undoes the good ones too.
  EXPECT_THAT(c2_.Error("INSERT INTO crsql_changes SELECT * FROM (VALUES ('foo', X'010903', 'b', 3, 1, "
                        "1, X'11111111111111111111111111111111'), ('foo', X'010903', 'nope', 3, 1, 1, "
                        "X'11111111111111111111111111111111'))"),
              ::testing::HasSubstr("no such column foo.nope"));
  EXPECT_EQ(c2_.One("SELECT crsql_rows_impacted()"), "1");
  c2_.Exec("RELEASE s; COMMIT");
}

// UPDATE OR REPLACE moving row 2 onto a live row 1 whose column clock is
// higher: the replaced row's incarnation ends, so a peer that synced it
// must take the moved row, not keep its own (higher-clocked) value.
TEST_F(MergeTest, UpdateOrReplaceOntoALiveKeyConverges) {
  c1_.Exec("INSERT INTO foo VALUES (1, 10); UPDATE foo SET b = 11 WHERE a = 1;"
           "UPDATE foo SET b = 12 WHERE a = 1; INSERT INTO foo VALUES (2, 20);");
  Sync(c1_, c2_);
  c1_.Exec("UPDATE OR REPLACE foo SET a = 1 WHERE a = 2");
  EXPECT_EQ(c1_.Query("SELECT a, b FROM foo"), (Rows{{"1", "20"}}));
  Sync(c1_, c2_);
  EXPECT_EQ(c2_.Query("SELECT a, b FROM foo ORDER BY a"), (Rows{{"1", "20"}}));
  Sync(c2_, c1_);
  EXPECT_EQ(c1_.Query("SELECT a, b FROM foo ORDER BY a"), (Rows{{"1", "20"}}));
}

// A row moved onto a key with an earlier incarnation that a peer still
// holds live: the move's new sentinel resurrects it there (C5), which keeps
// the peer's value of every column no change names. Row 1 came from a merge
// with a clock for `a` only, so the move brings no clock for `b`; the move
// must clock `b` itself, at its own version, and never rewrite a record at
// a version the peer already synced.
enum class MoveOnto { kLiveReplaced, kLiveReplacedRecursive, kDeletedEarlier };

void CheckMoveOntoAnEarlierIncarnation(MoveOnto how) {
  constexpr char kTwoColumns[] =
      "CREATE TABLE t (p INTEGER PRIMARY KEY NOT NULL, a, b); SELECT crsql_as_crr('t');";
  TestDb a, b;
  a.Exec(kTwoColumns);
  b.Exec(kTwoColumns);
  if (how == MoveOnto::kLiveReplacedRecursive) a.Exec("PRAGMA recursive_triggers = ON");
  a.Exec("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, "
         "cl, seq) VALUES ('t', X'010901', 'a', 'x', 1, 1, X'00112233445566778899AABBCCDDEEFF', "
         "1, 0);"
         "INSERT INTO t VALUES (2, 'y', 'z');");
  Sync(a, b);
  const std::string cursor = a.One("SELECT crsql_db_version()");
  const Rows synced = a.Query("SELECT pk, cid, val, col_version, db_version, cl FROM "
                              "crsql_changes WHERE db_version <= " + cursor + " ORDER BY pk, cid");
  if (how == MoveOnto::kDeletedEarlier) {
    a.Exec("DELETE FROM t WHERE p = 2; UPDATE t SET p = 2 WHERE p = 1");
  } else {
    a.Exec("UPDATE OR REPLACE t SET p = 2 WHERE p = 1");
  }
  ASSERT_EQ(a.Query("SELECT * FROM t"), (Rows{{"2", "'x'", "NULL"}}));
  // What a peer past `cursor` already has stayed as it was: every record
  // still at or below it is one it synced.
  for (const auto& r : a.Query("SELECT pk, cid, val, col_version, db_version, cl FROM "
                               "crsql_changes WHERE db_version <= " + cursor + " ORDER BY pk, cid")) {
    EXPECT_TRUE(std::find(synced.begin(), synced.end(), r) != synced.end())
        << "a record at a synced version changed: " << ::testing::PrintToString(r);
  }
  EXPECT_EQ(a.One("SELECT count(*) FROM crsql_changes WHERE db_version > " + cursor +
                  " AND cid = 'b' AND val IS NULL"),
            "1");
  Sync(a, b, "WHERE db_version > " + cursor);
  EXPECT_EQ(b.Query("SELECT * FROM t"), a.Query("SELECT * FROM t"));
  // And a replica that syncs everything at once.
  TestDb c;
  c.Exec(kTwoColumns);
  Sync(a, c);
  EXPECT_EQ(c.Query("SELECT * FROM t"), a.Query("SELECT * FROM t"));
}

TEST(MoveOntoEarlierIncarnationTest, UpdateOrReplaceOntoALiveRow) {
  CheckMoveOntoAnEarlierIncarnation(MoveOnto::kLiveReplaced);
}

TEST(MoveOntoEarlierIncarnationTest, UpdateOrReplaceOntoALiveRowWithRecursiveTriggers) {
  CheckMoveOntoAnEarlierIncarnation(MoveOnto::kLiveReplacedRecursive);
}

TEST(MoveOntoEarlierIncarnationTest, UpdateOntoADeletedRow) {
  CheckMoveOntoAnEarlierIncarnation(MoveOnto::kDeletedEarlier);
}

// A moved clock that a resurrection had zeroed (C5: col_version 0) is
// re-stamped at col_version 1. At 0, a peer that resurrects the target first
// (the sentinel comes before the column in version order) held its own
// zeroed clock and kept the larger value, while a peer taking the column
// first (C6: resurrect, then win) took the moved one. The same holds for
// a move onto a key no replica ever had (`target` 'fresh'; §7.5 read
// literally keeps the 0 there too).
void CheckZeroedClockMovesAtColVersionOne(bool one_transaction, const std::string& target) {
  SCOPED_TRACE(one_transaction ? "zeroed and moved in one transaction" : "moved later");
  SCOPED_TRACE("onto '" + target + "'");
  constexpr char kSchema1[] = "CREATE TABLE t (p PRIMARY KEY NOT NULL, j); SELECT crsql_as_crr('t');";
  TestDb a, in_order, reversed;
  for (TestDb* db : {&a, &in_order, &reversed}) db->Exec(kSchema1);
  a.Exec("INSERT INTO t VALUES ('k', 3.0)");
  Sync(a, in_order);
  Sync(a, reversed);
  const std::string cursor = a.One("SELECT crsql_db_version()");
  // Row 3 is resurrected by a peer's sentinel: its clock for j drops to 0.
  if (one_transaction) a.Exec("BEGIN");
  a.Exec("DELETE FROM t WHERE p = 'k'; INSERT INTO t VALUES (3, 1.0);"
         "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, cl, "
         "seq) VALUES ('t', X'010903', '-1', NULL, 3, 1, X'00112233445566778899AABBCCDDEEFF', 3, 0)");
  ASSERT_EQ(a.One("SELECT col_version FROM crsql_changes WHERE pk = X'010903' AND cid = 'j'"), "0");
  a.Exec("UPDATE t SET p = '" + target + "' WHERE p = 3");
  if (one_transaction) a.Exec("COMMIT");
  EXPECT_EQ(a.One("SELECT col_version FROM crsql_changes WHERE cid = 'j'"), "1");
  EXPECT_EQ(a.One("SELECT p FROM t"), "'" + target + "'");
  auto rows = ReadChanges(a.get(), "WHERE db_version > " + cursor);
  for (bool reverse : {false, true}) {
    TestDb& peer = reverse ? reversed : in_order;
    std::vector<ChangeRow> batch = rows;
    if (reverse) std::reverse(batch.begin(), batch.end());
    peer.Exec("BEGIN");
    ASSERT_OK(ApplyChanges(peer.get(), batch));
    peer.Exec("COMMIT");
    EXPECT_EQ(peer.Query("SELECT * FROM t"), a.Query("SELECT * FROM t")) << "reversed " << reverse;
  }
}

TEST(MoveOntoEarlierIncarnationTest, AZeroedClockMovesAtColVersionOne) {
  for (const char* target : {"k", "fresh"}) {
    CheckZeroedClockMovesAtColVersionOne(false, target);
    CheckZeroedClockMovesAtColVersionOne(true, target);
  }
}

// A move onto a key that never had a row clocks only what §7.5 says, also
// late in a large transaction, whose captured writes are stored in a batch
// that knows every key it was asked for (stored or not).
TEST(MoveOntoEarlierIncarnationTest, AMoveOntoANewKeyClocksOnlyMovedAndChangedColumns) {
  for (int before : {0, 12}) {
    SCOPED_TRACE(std::to_string(before) + " writes before it in its transaction");
    TestDb a;
    a.Exec("CREATE TABLE t (p INTEGER PRIMARY KEY NOT NULL, a, b); SELECT crsql_as_crr('t');"
           "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id, "
           "cl, seq) VALUES ('t', X'010901', 'a', 'x', 1, 1, X'00112233445566778899AABBCCDDEEFF', "
           "1, 0);"
           "BEGIN");
    for (int i = 0; i < before; ++i) a.Exec("INSERT INTO t VALUES (" + std::to_string(100 + i) + ", 1, 2)");
    a.Exec("UPDATE t SET p = 5 WHERE p = 1; COMMIT");
    EXPECT_EQ(a.Query("SELECT cid FROM crsql_changes WHERE pk = X'010905' ORDER BY seq"),
              (Rows{{"'-1'"}, {"'a'"}}));
  }
}

// §11.5 C8(e) with merge-equal-values: the greater site id wins, both
// ways, and the replica that takes it re-stamps the clock with a new
// local version (§16) so it is passed on.
TEST_F(MergeTest, MergeEqualValuesTieBreaksOnSiteId) {
  for (TestDb* db : {&c1_, &c2_}) {
    db->Exec("INSERT INTO foo VALUES (1, 2); SELECT crsql_config_set('merge-equal-values', 1);");
  }
  Sync(c1_, c2_);
  Sync(c2_, c1_);
  const bool c1_wins = s1_ > s2_;
  const std::string winner = c1_wins ? "c1" : "c2";
  // (cid, val, col_version, db_version, origin, cl, seq)
  EXPECT_EQ(State(c1_), (Rows{{"'b'", "2", "1", c1_wins ? "1" : "2", winner, "1", "0"}}));
  EXPECT_EQ(State(c2_), (Rows{{"'b'", "2", "1", c1_wins ? "2" : "1", winner, "1", "0"}}));
}

TEST_F(MergeTest, InconsistentStoreIsReported) {
  c2_.Exec("INSERT INTO foo VALUES (1, 5)");
  // Remove the user row behind the engine's back (sync bit on: not recorded).
  c2_.Exec("SELECT crsql_internal_sync_bit(1); DELETE FROM foo; SELECT crsql_internal_sync_bit(0);");
  const Rows before = CrrState(c2_, {"foo"});
  EXPECT_THAT(c2_.Error("INSERT INTO crsql_changes VALUES ('foo', X'010901', 'b', 5, 1, 1, "
                        "X'11111111111111111111111111111111')"),
              HasSubstr("could not find row to merge with for tbl foo"));
  EXPECT_EQ(CrrState(c2_, {"foo"}), before);
}

TEST_F(MergeTest, SevenColumnInferenceOfCl) {
  // Unknown row: created as never deleted.
  c2_.Exec("INSERT INTO crsql_changes VALUES ('foo', X'010901', 'b', 7, 1, 1, "
           "X'11111111111111111111111111111111')");
  EXPECT_EQ(c2_.Query("SELECT a, b FROM foo"), (Rows{{"1", "7"}}));
  // Locally deleted row: a column change is ignored (the delete wins).
  c2_.Exec("DELETE FROM foo");
  c2_.Exec("INSERT INTO crsql_changes VALUES ('foo', X'010901', 'b', 8, 9, 2, "
           "X'11111111111111111111111111111111')");
  EXPECT_EQ(c2_.One("SELECT count(*) FROM foo"), "0");
  // A 7-value sentinel takes cl = col_version: resurrects.
  c2_.Exec("INSERT INTO crsql_changes VALUES ('foo', X'010901', '-1', NULL, 3, 3, "
           "X'11111111111111111111111111111111')");
  EXPECT_EQ(c2_.Query("SELECT a, b FROM foo"), (Rows{{"1", "NULL"}}));
  EXPECT_EQ(c2_.One("SELECT cl FROM crsql_changes WHERE cid = '-1'"), "3");
}

TEST_F(MergeTest, PkValuesAreCanonicalised) {
  c2_.Exec("INSERT INTO crsql_changes VALUES ('foo', X'0119000001', 'b', 7, 1, 1, "
           "X'11111111111111111111111111111111')");
  EXPECT_EQ(c2_.One("SELECT hex(pk) FROM crsql_changes"), "'010901'");
}

TEST_F(MergeTest, UserTriggersFireAndSeeTheSyncBit) {
  c2_.Exec("CREATE TABLE log (bit); CREATE TRIGGER foo_log AFTER INSERT ON foo BEGIN "
           "INSERT INTO log VALUES (crsql_internal_sync_bit()); END;");
  c2_.Exec("INSERT INTO foo VALUES (5, 5)");
  c1_.Exec("INSERT INTO foo VALUES (1, 1)");
  Sync(c1_, c2_);
  EXPECT_EQ(c2_.Query("SELECT bit FROM log"), (Rows{{"0"}, {"1"}}));
}

// A user trigger fired by a merge's row write may itself merge (here: a
// peer's change to foo fans out into a change to a second CRR). The inner
// merge must not disturb the outer one: foo's clock lands on foo's row, and
// neither write is recorded as local.
TEST_F(MergeTest, AMergeInsideAUserTriggerLeavesTheOuterMergeIntact) {
  c2_.Exec("CREATE TABLE mirror (id INTEGER PRIMARY KEY NOT NULL, b); SELECT crsql_as_crr('mirror');"
           "CREATE TRIGGER foo_fan AFTER INSERT ON foo BEGIN "
           "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, site_id) "
           "VALUES ('mirror', crsql_pack_columns(NEW.a + 100), 'b', NEW.b, 1, 1, "
           "X'0102030405060708090A0B0C0D0E0F10'); END;");
  c1_.Exec("INSERT INTO foo VALUES (1, 7)");
  Sync(c1_, c2_);
  EXPECT_EQ(c2_.Query("SELECT * FROM foo"), (Rows{{"1", "7"}}));
  EXPECT_EQ(c2_.Query("SELECT * FROM mirror"), (Rows{{"101", "7"}}));
  EXPECT_EQ(c2_.Query("SELECT \"table\", hex(pk), cid, val, hex(site_id) FROM crsql_changes "
                      "ORDER BY 1"),
            (Rows{{"'foo'", "'010901'", "'b'", "7", s1_},
                  {"'mirror'", "'010965'", "'b'", "7", "'0102030405060708090A0B0C0D0E0F10'"}}));
  EXPECT_EQ(c2_.One("SELECT count(*) FROM crsql_changes WHERE site_id IS NULL"), "0");
}

}  // namespace
}  // namespace crsync
