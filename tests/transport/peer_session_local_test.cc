// PeerSession when this node's own database refuses a merge or a cursor
// write (the application's lock, a table altered here): the peer is not
// blamed, nothing is half-merged, and the connection survives where it can.
#include <memory>
#include <string>
#include <vector>

#include "tests/transport/session_util.h"
#include "transport/peer_session.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

// The receiver's database locked by an application past the busy timeout
// is this node's condition: the merge is tried again, and if the lock
// stays, the peer is told it is internal (not a bad changeset) and nothing
// is half-merged.
TEST(PeerSessionTest, ALockedDatabaseIsRetriedAndNeverBlamedOnTheChangesets) {
  TempPath path;
  Node a;
  TestDb b(path.str());
  b.Exec(kSchema);
  TestDb app(path.str());
  std::unique_ptr<PeerSession> sa, sb;
  ASSERT_OK(PeerSession::Open(a.db.get(), SessionOptions{}, &sa));
  int merge_txns = 0;
  bool release_on_retry = true;
  SessionOptions opts;
  opts.before_merge_txn = [&] {
    if (++merge_txns == 2 && release_on_retry) app.Exec("COMMIT");
  };
  ASSERT_OK(PeerSession::Open(b.get(), opts, &sb));
  std::vector<Message> out;
  ASSERT_NO_FATAL_FAILURE(Handshake(*sa, *sb));
  a.db.Exec("INSERT INTO items VALUES (1, 'one', 1)");
  std::vector<Message> sent;
  ASSERT_OK(sa->Pump(&sent));
  ASSERT_FALSE(sent.empty());

  app.Exec("BEGIN IMMEDIATE");  // released by the first retry
  out.clear();
  ASSERT_OK(sb->OnMessages(sent, &out));
  EXPECT_EQ(merge_txns, 2);
  ASSERT_FALSE(out.empty());
  EXPECT_TRUE(std::holds_alternative<AckMsg>(out.back()));
  EXPECT_EQ(b.One("SELECT name FROM items WHERE id = 1"), "'one'");

  // A lock that stays: three tries, then an internal error.
  a.db.Exec("INSERT INTO items VALUES (2, 'two', 2)");
  sent.clear();
  ASSERT_OK(sa->Pump(&sent));
  ASSERT_FALSE(sent.empty());
  release_on_retry = false;
  merge_txns = 0;
  app.Exec("BEGIN IMMEDIATE");
  out.clear();
  Status s = sb->OnMessages(sent, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(merge_txns, 3);
  ASSERT_FALSE(out.empty());
  ASSERT_TRUE(std::holds_alternative<ErrorMsg>(out.back()));
  EXPECT_EQ(std::get<ErrorMsg>(out.back()).code, ErrorMsg::kInternal);
  EXPECT_THAT(std::get<ErrorMsg>(out.back()).message, HasSubstr("stayed locked"));
  app.Exec("COMMIT");
  EXPECT_EQ(b.One("SELECT count(*) FROM items WHERE id = 2"), "0");
}

// An ack while the application holds this node's write lock: the send
// cursor is stored with a later ack or pump, and the connection goes on (it
// was closed with "database is locked").
TEST(PeerSessionTest, AnAckWhileTheDatabaseIsLockedIsStoredLater) {
  TempPath path;
  TestDb a(path.str());
  a.Exec(kSchema);
  TestDb app(path.str());
  Node b;
  std::unique_ptr<PeerSession> sa, sb;
  ASSERT_OK(PeerSession::Open(a.get(), SessionOptions{}, &sa));
  ASSERT_OK(PeerSession::Open(b.db.get(), SessionOptions{}, &sb));
  std::vector<Message> out;
  ASSERT_NO_FATAL_FAILURE(Handshake(*sa, *sb));
  const std::string cursor = "SELECT coalesce(max(version), 0) FROM crsql_tracked_peers WHERE event = 1";
  for (int round = 1; round <= 2; ++round) {
    a.Exec("INSERT INTO items VALUES (" + std::to_string(round) + ", 'x', 1)");
    std::vector<Message> sent, acks;
    ASSERT_OK(sa->Pump(&sent));
    ASSERT_OK(sb->OnMessages(sent, &acks));
    ASSERT_FALSE(acks.empty());
    if (round == 1) app.Exec("BEGIN IMMEDIATE");
    out.clear();
    for (const Message& m : acks) ASSERT_OK(sa->OnMessage(m, &out)) << "round " << round;
    if (round == 1) {
      app.Exec("COMMIT");
      EXPECT_EQ(a.One(cursor), "0");
      // An idle link gets no other ack: the next pump stores it.
      std::vector<Message> more;
      ASSERT_OK(sa->Pump(&more));
      EXPECT_EQ(a.One(cursor), "1");
    }
  }
  EXPECT_EQ(a.One(cursor), "2");
  EXPECT_EQ(sa->send_cursor(), 2);
}

// A table of the receiver altered without crsql_begin_alter/commit_alter
// refuses merges until fixed there: the peer is told it is this node's
// condition (internal), not a bad changeset, and nothing is merged.
TEST(PeerSessionTest, AnUnrecordedAlterHereIsNotBlamedOnTheChangesets) {
  Node a, b;
  std::unique_ptr<PeerSession> sa, sb;
  ASSERT_OK(PeerSession::Open(a.db.get(), SessionOptions{}, &sa));
  ASSERT_OK(PeerSession::Open(b.db.get(), SessionOptions{}, &sb));
  std::vector<Message> out;
  ASSERT_NO_FATAL_FAILURE(Handshake(*sa, *sb));
  b.db.Exec("ALTER TABLE items ADD COLUMN note");
  a.db.Exec("INSERT INTO items VALUES (1, 'one', 1)");
  std::vector<Message> sent;
  ASSERT_OK(sa->Pump(&sent));
  ASSERT_FALSE(sent.empty());
  out.clear();
  EXPECT_FALSE(sb->OnMessages(sent, &out).ok());
  ASSERT_FALSE(out.empty());
  ASSERT_TRUE(std::holds_alternative<ErrorMsg>(out.back()));
  EXPECT_EQ(std::get<ErrorMsg>(out.back()).code, ErrorMsg::kInternal);
  EXPECT_THAT(std::get<ErrorMsg>(out.back()).message,
              HasSubstr("cannot merge changesets yet, for a reason of its own ("));
  EXPECT_THAT(std::get<ErrorMsg>(out.back()).message, HasSubstr("crsql - table items was altered"));
  EXPECT_EQ(b.db.One("SELECT count(*) FROM items"), "0");
}

// A node whose CRR schema changes while connected ends the connection as a
// schema mismatch (the next handshake compares the schemas), whether it
// notices before sending a change of the new shape or when a change of the
// old shape is refused; neither side blames a changeset.
TEST(PeerSessionTest, AMigrationDuringAConnectionIsASchemaMismatch) {
  for (bool sender_migrates : {true, false}) {
    SCOPED_TRACE(sender_migrates ? "the sender migrates" : "the receiver migrates");
    Node a, b;
    std::unique_ptr<PeerSession> sa, sb;
    ASSERT_OK(PeerSession::Open(a.db.get(), SessionOptions{}, &sa));
    ASSERT_OK(PeerSession::Open(b.db.get(), SessionOptions{}, &sb));
    ASSERT_NO_FATAL_FAILURE(Handshake(*sa, *sb));
    a.db.Exec("INSERT INTO items VALUES (1, 'one', 1)");
    TestDb& migrating = sender_migrates ? a.db : b.db;
    migrating.Exec("CREATE TABLE unrelated (x)");  // DDL that changes no CRR: no effect
    std::vector<Message> sent, out;
    if (!sender_migrates) {
      ASSERT_OK(sa->Pump(&sent));
    }
    migrating.Exec("SELECT crsql_begin_alter('items'); ALTER TABLE items DROP COLUMN qty;"
                   "SELECT crsql_commit_alter('items');");
    if (sender_migrates) {
      EXPECT_FALSE(sa->Pump(&sent).ok());
      ASSERT_FALSE(sent.empty());
      ASSERT_TRUE(std::holds_alternative<ErrorMsg>(sent.back()));
      EXPECT_EQ(std::get<ErrorMsg>(sent.back()).code, ErrorMsg::kSchemaMismatch);
      EXPECT_THAT(std::get<ErrorMsg>(sent.back()).message,
                  HasSubstr("changed while connected (an alter committed"));
      for (const Message& m : sent) EXPECT_FALSE(std::holds_alternative<ChangesetMsg>(m));
    } else {
      ASSERT_FALSE(sent.empty());
      EXPECT_FALSE(sb->OnMessages(sent, &out).ok());
      ASSERT_FALSE(out.empty());
      ASSERT_TRUE(std::holds_alternative<ErrorMsg>(out.back()));
      EXPECT_EQ(std::get<ErrorMsg>(out.back()).code, ErrorMsg::kSchemaMismatch);
      EXPECT_THAT(std::get<ErrorMsg>(out.back()).message, HasSubstr("it now has items(id, name)"));
      EXPECT_EQ(b.db.One("SELECT count(*) FROM items"), "0");
    }
  }
}

}  // namespace
}  // namespace crsync
