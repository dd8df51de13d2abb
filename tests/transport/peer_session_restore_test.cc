// PeerSession across crashes and restores: what was announced survives a
// power loss of the sender, and a node restored from a backup gets its lost
// writes back from every peer (restore epochs, resynchronization).
#include <memory>
#include <string>
#include <vector>

#include "tests/fault/fault_vfs.h"
#include "tests/transport/session_util.h"
#include "transport/peer_session.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

// Delivers messages between two sessions until both sides are quiet. A
// side failing is a test failure, unless `failures` collects it: the
// connection then closes, after the other side got what the failing one
// sent last (its ErrorMsg); returns false then.
bool Exchange(PeerSession& a, PeerSession& b, std::vector<Message> to_b, std::vector<Message> to_a,
              std::vector<std::string>* failures = nullptr, bool lose_last_words = false) {
  // Delivers `in` to `s`; false if `s` failed.
  auto deliver = [&](PeerSession& s, const std::vector<Message>& in, std::vector<Message>* replies) {
    for (const Message& m : in) {
      Status st = s.OnMessage(m, replies);
      if (st.ok()) continue;
      if (failures) {
        failures->push_back(st.message());
      } else {
        ADD_FAILURE() << st.ToString();
      }
      return false;
    }
    return true;
  };
  for (int round = 0; round < 100 && !(to_a.empty() && to_b.empty()); ++round) {
    std::vector<Message> next_a, next_b, ignored;
    if (!deliver(b, to_b, &next_a)) {
      if (!lose_last_words) deliver(a, next_a, &ignored);  // b's Error, unless lost
      return false;
    }
    if (!deliver(a, to_a, &next_b)) {
      deliver(b, next_b, &ignored);
      return false;
    }
    EXPECT_OK(a.Pump(&next_b));
    EXPECT_OK(b.Pump(&next_a));
    to_a = std::move(next_a);
    to_b = std::move(next_b);
  }
  return true;
}

// Connects sessions on `a` and `b` and exchanges until quiet, on a new
// connection whenever one fails (at most `connections`); returns the
// failures' messages. `lose_last_words`: the Error b sends when it fails on
// the first connection never reaches a (the connection broke first).
std::vector<std::string> Sync(sqlite3* a, sqlite3* b, int connections = 1,
                              bool lose_last_words = false) {
  std::vector<std::string> failures;
  for (int k = 0; k < connections; ++k) {
    std::unique_ptr<PeerSession> sa, sb;
    EXPECT_OK(PeerSession::Open(a, {}, &sa));
    EXPECT_OK(PeerSession::Open(b, {}, &sb));
    if (!sa || !sb) break;
    std::vector<Message> hello_a, hello_b;
    EXPECT_OK(sa->Start(&hello_a));
    EXPECT_OK(sb->Start(&hello_b));
    if (Exchange(*sa, *sb, std::move(hello_a), std::move(hello_b), &failures,
                 lose_last_words && k == 0)) {
      return failures;
    }
  }
  ADD_FAILURE() << "no connection ended quietly: " << testing::PrintToString(failures);
  return failures;
}

// The sender's app commits with synchronous=NORMAL (not yet on disk), the
// sender tells a peer, then the power fails. Had those commits been
// announced before reaching the disk, the sender would reuse their versions
// for its next writes, which the peer (its cursor already past them) would
// then never receive. Run once counting write points, then again with the
// power failing at the first write point after the exchange.
TEST(PeerSessionTest, WhatIsAnnouncedSurvivesAPowerLossOfTheSender) {
  std::unique_ptr<fault::FaultVfs> vfs;
  ASSERT_OK(fault::FaultVfs::Register("power_loss_test", &vfs));
  vfs->set_forward_syncs(false);
  int64_t points = 0;
  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE(run == 0 ? "counting" : "power loss");
    TempPath hp, cap;
    TestDb c;
    c.Exec(kSchema);
    {
      TestDb h("file:" + hp.str() + "?vfs=power_loss_test");
      h.Exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
      h.Exec(kSchema);
      h.Exec("PRAGMA wal_checkpoint(TRUNCATE)");  // all of that on disk
      if (run == 0) {
        vfs->Count();
      } else {
        ASSERT_OK(vfs->ArmCrash(points + 1, hp.str(), cap.str(), /*power_loss=*/true));
      }
      for (int i = 1; i <= 3; ++i) h.Exec("INSERT INTO items VALUES (" + std::to_string(i) + ", 'h', 1)");
      Sync(h.get(), c.get());
      ASSERT_EQ(c.One("SELECT count(*) FROM items"), "3");
      if (run == 0) {
        points = vfs->write_points();
        continue;
      }
      EXPECT_FALSE(h.Try("INSERT INTO items VALUES (4, 'lost', 1)").ok());  // the power fails
      ASSERT_TRUE(vfs->fault().has_value());
      ASSERT_OK(vfs->capture_status());
    }
    // The sender comes back from what was on disk and writes again.
    TestDb h(cap.str());
    EXPECT_EQ(h.One("SELECT count(*) FROM items"), "3") << "announced commits were lost";
    h.Exec("INSERT INTO items VALUES (50, 'after', 1)");
    Sync(h.get(), c.get());
    EXPECT_EQ(c.Query("SELECT id, name FROM items ORDER BY id"),
              (Rows{{"1", "'h'"}, {"2", "'h'"}, {"3", "'h'"}, {"50", "'after'"}}));
  }
}

// A node whose disk is full still sends what it has: storing the peer's
// acknowledgments, and the cursor that a range without changes for it
// moves, wait for room instead of ending the connection (which, redialled
// every few seconds, drained its backlog one window at a time). Once there
// is room again, both are stored.
TEST(PeerSessionTest, ANodeWithAFullDiskKeepsSending) {
  std::unique_ptr<fault::FaultVfs> vfs;
  ASSERT_OK(fault::FaultVfs::Register("disk_full_test", &vfs));
  vfs->set_forward_syncs(false);
  TempPath hp;
  TestDb c;
  c.Exec(kSchema);
  TestDb h("file:" + hp.str() + "?vfs=disk_full_test");
  h.Exec("PRAGMA journal_mode = WAL;");
  h.Exec(kSchema);
  for (int i = 1; i <= 30; ++i) h.Exec("INSERT INTO items VALUES (" + std::to_string(i) + ", 'h', 1)");
  c.Exec("INSERT INTO items VALUES (100, 'c', 1); DELETE FROM items WHERE id = 100;");
  Sync(h.get(), c.get());  // each knows the other
  for (int i = 31; i <= 60; ++i) h.Exec("INSERT INTO items VALUES (" + std::to_string(i) + ", 'h', 1)");
  const Rows peers_before = h.Query("SELECT hex(site_id), event, version FROM crsql_tracked_peers ORDER BY 1, 2");
  vfs->ArmDiskFull();
  EXPECT_FALSE(h.Try("INSERT INTO items VALUES (999, 'no room', 1)").ok());
  const std::vector<std::string> failures = Sync(h.get(), c.get());
  EXPECT_TRUE(failures.empty()) << testing::PrintToString(failures);
  EXPECT_EQ(c.One("SELECT count(*) FROM items"), "60");
  EXPECT_EQ(h.Query("SELECT hex(site_id), event, version FROM crsql_tracked_peers ORDER BY 1, 2"),
            peers_before);
  vfs->Count();  // room again: the next connection stores what waited
  EXPECT_TRUE(Sync(h.get(), c.get()).empty());
  EXPECT_NE(h.Query("SELECT hex(site_id), event, version FROM crsql_tracked_peers ORDER BY 1, 2"),
            peers_before);
  h.Exec("INSERT INTO items VALUES (61, 'h', 1)");
  EXPECT_TRUE(Sync(h.get(), c.get()).empty());
  EXPECT_EQ(c.One("SELECT count(*) FROM items"), "61");
}

// A node restored from a backup: its peer holds changes the node lost, and
// a cursor past the versions the node's next writes reuse. Without
// detection the peer skips those writes and the node never gets its lost
// changes back (its own changes are never echoed to it).
TEST(PeerSessionTest, APeerRestoredFromABackupIsResynchronizedBothWays) {
  TestDb a, b;
  a.Exec(kSchema);
  b.Exec(kSchema);
  a.Exec("INSERT INTO items VALUES (1, 'a', 1)");
  b.Exec("INSERT INTO items VALUES (2, 'b', 1)");
  EXPECT_THAT(Sync(a.get(), b.get()), ::testing::IsEmpty());
  // The backup (a file, opened afresh when restored).
  TempPath backup;
  a.Exec("VACUUM INTO '" + backup.str() + "'");
  // Changes made after it reach b, then a is lost and restored.
  a.Exec("INSERT INTO items VALUES (3, 'lost', 1); UPDATE items SET qty = 7 WHERE id = 1;");
  EXPECT_THAT(Sync(a.get(), b.get()), ::testing::IsEmpty());
  ASSERT_EQ(b.One("SELECT count(*) FROM items"), "3");
  TestDb r(backup.str());
  ASSERT_EQ(r.One("SELECT count(*) FROM items"), "2");
  // Its next write reuses a version b already has.
  r.Exec("INSERT INTO items VALUES (4, 'after', 1)");
  ASSERT_LT(std::stoll(r.One("SELECT crsql_db_version()")), std::stoll(a.One("SELECT crsql_db_version()")));
  std::vector<std::string> failures = Sync(r.get(), b.get(), 3);
  EXPECT_EQ(failures.size(), 2u);  // one side refuses, the other hears why
  for (const std::string& f : failures) EXPECT_THAT(f, HasSubstr("restored from a backup?"));
  const Rows expected{{"1", "'a'", "7"}, {"2", "'b'", "1"}, {"3", "'lost'", "1"}, {"4", "'after'", "1"}};
  auto contents = [](TestDb& db) { return db.Query("SELECT * FROM items ORDER BY id"); };
  EXPECT_EQ(contents(b), expected);
  EXPECT_EQ(contents(r), expected);  // its lost changes came back
  EXPECT_EQ(r.Query("SELECT count(*) FROM crsql_changes WHERE site_id IS NULL"),
            b.Query("SELECT count(*) FROM crsql_changes WHERE site_id = X'" +
                    r.One("SELECT hex(crsql_site_id())").substr(1, 32) + "'"));
  // The echo is over: b forgot it once r acknowledged.
  EXPECT_EQ(b.One("SELECT count(*) FROM crsql_tracked_peers WHERE tag = 1001 AND event = 2"), "0");
  // And from now on, they sync as usual.
  r.Exec("UPDATE items SET name = 'later' WHERE id = 4");
  EXPECT_THAT(Sync(r.get(), b.get()), ::testing::IsEmpty());
  EXPECT_EQ(contents(b), contents(r));
}

// Node a and node b (one row), whose sessions say instance 7; a's take
// that instance as in session on another connection when `elsewhere`.
struct TwoNodes {
  explicit TwoNodes(bool elsewhere) {
    a.Exec(kSchema);
    b.Exec(kSchema);
    b.Exec("INSERT INTO items VALUES (1, 'b', 1)");
    bo.instance = 7;
    ao.in_session_elsewhere = [elsewhere](const std::string&, uint64_t instance) {
      return elsewhere && instance == 7;
    };
  }
  TestDb a, b;
  SessionOptions ao, bo;
};

// Two nodes that dial each other have two connections. A Hello sent on the
// second says the sender's version then; if the first connection carries
// newer versions before that Hello arrives, the receiver's cursor is past
// what the Hello says. Nothing was lost (the same process sent both), so it
// is no restore, as long as the first connection is in session with that
// same process; a Hello from another instance still is.
TEST(PeerSessionTest, AStaleHelloFromAProcessInSessionElsewhereIsNoRestore) {
  for (bool elsewhere : {true, false}) {
    SCOPED_TRACE(elsewhere ? "same process in session elsewhere" : "no other session");
    TwoNodes n(elsewhere);
    TestDb& a = n.a;
    TestDb& b = n.b;
    const SessionOptions& ao = n.ao;
    const SessionOptions& bo = n.bo;
    // The second connection's Hello leaves b now, at version 1 ...
    std::unique_ptr<PeerSession> late_b;
    ASSERT_OK(PeerSession::Open(b.get(), bo, &late_b));
    std::vector<Message> late_hello;
    ASSERT_OK(late_b->Start(&late_hello));
    // ... while the first connection carries b's versions 2 and 3.
    b.Exec("INSERT INTO items VALUES (2, 'b', 1); INSERT INTO items VALUES (3, 'b', 1)");
    std::unique_ptr<PeerSession> sa, sb;
    ASSERT_OK(PeerSession::Open(a.get(), ao, &sa));
    ASSERT_OK(PeerSession::Open(b.get(), bo, &sb));
    std::vector<Message> ha, hb;
    ASSERT_OK(sa->Start(&ha));
    ASSERT_OK(sb->Start(&hb));
    ASSERT_TRUE(Exchange(*sa, *sb, std::move(ha), std::move(hb)));
    ASSERT_EQ(a.One("SELECT count(*) FROM items"), "3");
    // Now the late Hello arrives at a.
    std::unique_ptr<PeerSession> late_a;
    ASSERT_OK(PeerSession::Open(a.get(), ao, &late_a));
    std::vector<Message> out;
    ASSERT_OK(late_a->Start(&out));
    Status s = late_a->OnMessage(late_hello[0], &out);
    if (elsewhere) {
      EXPECT_OK(s);
      EXPECT_FALSE(late_a->forgot_peer_history());
      EXPECT_EQ(a.One("SELECT count(*) FROM crsql_tracked_peers WHERE tag = 1001 AND event = 0"), "1")
          << "the receive cursor was forgotten";
    } else {
      EXPECT_THAT(s.message(), HasSubstr("restored from a backup?"));
      EXPECT_TRUE(late_a->forgot_peer_history());
    }
  }
}

// The same race with epochs: the other connection already showed the epoch
// the peer renewed to, and this Hello, sent before the renewal, shows the
// older one. From another process that is a restore from an old backup.
TEST(PeerSessionTest, AnOlderEpochInAStaleHelloFromAProcessInSessionElsewhereIsNoRestore) {
  for (bool elsewhere : {true, false}) {
    SCOPED_TRACE(elsewhere ? "same process in session elsewhere" : "no other session");
    TwoNodes n(elsewhere);
    TestDb& a = n.a;
    TestDb& b = n.b;
    const std::string b_site = "X'" + b.One("SELECT hex(crsql_site_id())").substr(1, 32) + "'";
    // b is at generation 1; a has seen it at generation 2 already.
    b.Exec("INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (" + b_site +
           ", " + std::to_string((int64_t{1} << 32) + 5) + ", 0, 1001, 3)");
    a.Exec("INSERT INTO crsql_tracked_peers (site_id, version, seq, tag, event) VALUES (" + b_site +
           ", " + std::to_string((int64_t{2} << 32) + 9) + ", 0, 1001, 3)");
    const SessionOptions& ao = n.ao;
    const SessionOptions& bo = n.bo;
    std::unique_ptr<PeerSession> sa, sb;
    ASSERT_OK(PeerSession::Open(a.get(), ao, &sa));
    ASSERT_OK(PeerSession::Open(b.get(), bo, &sb));
    std::vector<Message> ha, hb, out;
    ASSERT_OK(sa->Start(&ha));
    ASSERT_OK(sb->Start(&hb));
    Status s = sa->OnMessage(hb[0], &out);
    if (elsewhere) {
      EXPECT_OK(s);
      EXPECT_FALSE(sa->forgot_peer_history());
    } else {
      EXPECT_FALSE(s.ok());
      EXPECT_TRUE(sa->forgot_peer_history());
    }
  }
}

// The same race from the sender's side: a Hello's cursor for us is what the
// peer had when it sent it, and the other connection moves that cursor on.
// The peer's acks then name versions this connection never sent: they are
// skipped, not a protocol error; an ack past what we ever committed still is.
TEST(PeerSessionTest, AnAckPastWhatThisConnectionSentMovesItOn) {
  TestDb a, b;
  a.Exec(kSchema);
  b.Exec(kSchema);
  for (int i = 1; i <= 3; ++i) a.Exec("INSERT INTO items VALUES (" + std::to_string(i) + ", 'a', 1)");
  SessionOptions one_at_a_time;
  one_at_a_time.window = 1;
  // (b's stale Hello says an old version too: no restore, as connection 1,
  // to the same process, is in session; see the test above.)
  one_at_a_time.in_session_elsewhere = [](const std::string&, uint64_t) { return true; };
  SessionOptions bo;
  bo.instance = 7;
  std::unique_ptr<PeerSession> a2, b2;
  ASSERT_OK(PeerSession::Open(a.get(), one_at_a_time, &a2));
  ASSERT_OK(PeerSession::Open(b.get(), bo, &b2));
  std::vector<Message> hello_b2;
  ASSERT_OK(b2->Start(&hello_b2));  // b has nothing of a yet
  {
    std::unique_ptr<PeerSession> a1, b1;
    ASSERT_OK(PeerSession::Open(a.get(), {}, &a1));
    ASSERT_OK(PeerSession::Open(b.get(), {}, &b1));
    std::vector<Message> ha, hb;
    ASSERT_OK(a1->Start(&ha));
    ASSERT_OK(b1->Start(&hb));
    ASSERT_TRUE(Exchange(*a1, *b1, std::move(ha), std::move(hb)));
  }
  ASSERT_EQ(b.One("SELECT count(*) FROM items"), "3");
  std::vector<Message> hello_a2, to_b, to_a;
  ASSERT_OK(a2->Start(&hello_a2));
  ASSERT_OK(a2->OnMessage(hello_b2[0], &to_b));  // sends version 1 only (window 1)
  ASSERT_OK(b2->OnMessage(hello_a2[0], &to_a));
  for (const Message& m : to_b) ASSERT_OK(b2->OnMessage(m, &to_a));
  ASSERT_FALSE(to_a.empty());
  ASSERT_TRUE(std::holds_alternative<AckMsg>(to_a.back()));
  EXPECT_EQ(std::get<AckMsg>(to_a.back()).up_to, 3) << "b acknowledges what it has, from either connection";
  std::vector<Message> replies;
  EXPECT_OK(a2->OnMessage(to_a.back(), &replies));
  a.Exec("INSERT INTO items VALUES (4, 'a', 1)");
  replies.clear();
  ASSERT_OK(a2->Pump(&replies));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(std::get<ChangesetMsg>(replies[0]).start, 4) << "versions b has were sent again";
  // An ack for a version a never committed is still refused.
  replies.clear();
  EXPECT_THAT(a2->OnMessage(AckMsg{99, 1}, &replies).message(), HasSubstr("beyond what was sent"));
}

// The first peer to hear from a restored node detects it (its cursor is past
// the node's version) and echoes the node's lost changes back, which moves
// the node's version past every other peer's cursor too. Those peers must
// still learn that the node reused versions: here c only hears from r
// directly (a line b - r - c), so without that it would never get the write
// r made at a reused version.
TEST(PeerSessionTest, EveryPeerOfARestoredNodeResynchronizesNotOnlyTheFirst) {
  TestDb a, b, c;
  a.Exec(kSchema);
  b.Exec(kSchema);
  c.Exec(kSchema);
  a.Exec("INSERT INTO items VALUES (1, 'a', 1)");
  EXPECT_THAT(Sync(a.get(), b.get()), ::testing::IsEmpty());
  EXPECT_THAT(Sync(a.get(), c.get()), ::testing::IsEmpty());
  TempPath backup;
  a.Exec("VACUUM INTO '" + backup.str() + "'");
  a.Exec("INSERT INTO items VALUES (3, 'lost', 1); UPDATE items SET qty = 7 WHERE id = 1;");
  EXPECT_THAT(Sync(a.get(), b.get()), ::testing::IsEmpty());
  EXPECT_THAT(Sync(a.get(), c.get()), ::testing::IsEmpty());
  TestDb r(backup.str());
  r.Exec("INSERT INTO items VALUES (4, 'after', 1)");  // a reused version
  std::vector<std::string> failures = Sync(r.get(), b.get(), 3);
  ASSERT_EQ(failures.size(), 2u);
  // b echoed r's lost changes: r is now past c's cursor for it.
  ASSERT_GE(std::stoll(r.One("SELECT crsql_db_version()")),
            std::stoll(a.One("SELECT crsql_db_version()")));
  // r learned of its loss: it has a restore epoch, which its hellos carry.
  const std::string epoch_sql =
      "SELECT version FROM crsql_tracked_peers WHERE site_id = crsql_site_id() AND tag = 1001 "
      "AND event = 3";
  const std::string epoch = r.One(epoch_sql);
  ASSERT_NE(epoch, "0");
  failures = Sync(r.get(), c.get(), 3);
  ASSERT_EQ(failures.size(), 2u);
  for (const std::string& f : failures) EXPECT_THAT(f, HasSubstr("its restore epoch is " + epoch));
  EXPECT_EQ(r.One(epoch_sql), epoch) << "only a detection by version renews the epoch";
  const Rows expected{{"1", "'a'", "7"}, {"3", "'lost'", "1"}, {"4", "'after'", "1"}};
  auto contents = [](TestDb& db) { return db.Query("SELECT * FROM items ORDER BY id"); };
  EXPECT_EQ(contents(b), expected);
  EXPECT_EQ(contents(r), expected);
  EXPECT_EQ(contents(c), expected) << "c skipped r's write at a reused version";
  // Once resynchronized, nothing more: a further connection is quiet and a
  // later write flows as usual.
  EXPECT_THAT(Sync(r.get(), c.get()), ::testing::IsEmpty());
  EXPECT_THAT(Sync(r.get(), b.get()), ::testing::IsEmpty());
  r.Exec("UPDATE items SET name = 'later' WHERE id = 4");
  EXPECT_THAT(Sync(r.get(), c.get()), ::testing::IsEmpty());
  EXPECT_EQ(contents(c), contents(r));
}

// a, b and c sync; a is restored from a backup (r) and writes at a version
// b and c already have. `spare` is a second copy of the same backup.
struct RestoredLine {
  TestDb a, b, c;
  TempPath backup, spare;
  std::unique_ptr<TestDb> r;
  RestoredLine() {
    for (TestDb* db : {&a, &b, &c}) db->Exec(kSchema);
    a.Exec("INSERT INTO items VALUES (1, 'a', 1)");
    EXPECT_THAT(Sync(a.get(), b.get()), ::testing::IsEmpty());
    EXPECT_THAT(Sync(a.get(), c.get()), ::testing::IsEmpty());
    a.Exec("VACUUM INTO '" + backup.str() + "'; VACUUM INTO '" + spare.str() + "'");
    a.Exec("INSERT INTO items VALUES (3, 'lost', 1); UPDATE items SET qty = 7 WHERE id = 1;");
    EXPECT_THAT(Sync(a.get(), b.get()), ::testing::IsEmpty());
    EXPECT_THAT(Sync(a.get(), c.get()), ::testing::IsEmpty());
    r = std::make_unique<TestDb>(backup.str());
    r->Exec("INSERT INTO items VALUES (4, 'after', 1)");  // a reused version
  }
  int64_t Epoch(TestDb& db) {
    return std::stoll(db.One("SELECT coalesce((SELECT version FROM crsql_tracked_peers WHERE "
                             "site_id = crsql_site_id() AND tag = 1001 AND event = 3), 0)"));
  }
};

Rows Items(TestDb& db) { return db.Query("SELECT * FROM items ORDER BY id"); }

// The detector's resync error never reaches the restored node (the
// connection broke first): the detector must ask again on the next
// connection, or the node keeps its epoch and c, never told, skips its
// write at a reused version.
TEST(PeerSessionTest, ALostResyncErrorIsRepeatedUntilTheNodeRenewsItsEpoch) {
  RestoredLine l;
  std::vector<std::string> failures = Sync(l.r->get(), l.b.get(), 4, /*lose_last_words=*/true);
  EXPECT_GE(failures.size(), 3u);  // detected (unheard), then asked again
  EXPECT_NE(l.Epoch(*l.r), 0);
  Sync(l.r->get(), l.c.get(), 3);
  EXPECT_EQ(Items(l.c), Items(l.b));
  EXPECT_EQ(Items(*l.r), Items(l.b));
  EXPECT_EQ(l.c.One("SELECT name FROM items WHERE id = 4"), "'after'");
}

// r learns of its loss from b and renews its epoch, but b's echo has not
// raised its version yet when c hears from it: c finds r below its cursor
// and at an epoch newer than it saw. r already knows of its loss, so c
// resynchronizes without asking r to renew again (each renewal makes every
// peer resynchronize once more).
TEST(PeerSessionTest, APeerSeeingARenewedEpochDoesNotAskForAnotherRenewal) {
  RestoredLine l;
  {
    std::unique_ptr<PeerSession> sr, sb;
    ASSERT_OK(PeerSession::Open(l.r->get(), {}, &sr));
    ASSERT_OK(PeerSession::Open(l.b.get(), {}, &sb));
    std::vector<Message> hello_r, hello_b;
    ASSERT_OK(sr->Start(&hello_r));
    ASSERT_OK(sb->Start(&hello_b));
    std::vector<std::string> failures;
    EXPECT_FALSE(Exchange(*sr, *sb, std::move(hello_r), std::move(hello_b), &failures));
  }
  const int64_t renewed = l.Epoch(*l.r);
  ASSERT_NE(renewed, 0);
  std::vector<std::string> failures = Sync(l.r->get(), l.c.get(), 3);
  ASSERT_FALSE(failures.empty());
  EXPECT_THAT(failures[0], HasSubstr("its restore epoch is " + std::to_string(renewed)));
  EXPECT_EQ(l.Epoch(*l.r), renewed) << "c made r renew again";
  Sync(l.r->get(), l.b.get(), 3);
  EXPECT_EQ(l.Epoch(*l.r), renewed);
  EXPECT_EQ(Items(l.c), Items(l.b));
  EXPECT_EQ(Items(*l.r), Items(l.b));
  EXPECT_EQ(l.c.One("SELECT name FROM items WHERE id = 4"), "'after'");
}

// Restored twice from the same backup: the second time the node is back at
// the epoch it had before the first renewal. b, which saw the renewal, must
// make it renew again (not merely resynchronize itself), or c, which never
// saw the first renewal, would find nothing amiss. Once by version (the
// node's version is below b's cursor), once by epoch alone (the node wrote
// past b's cursor before reconnecting; its epoch went back).
TEST(PeerSessionTest, ANodeBackAtAnOlderEpochIsMadeToRenewIt) {
  for (bool past_cursor : {false, true}) {
    SCOPED_TRACE(past_cursor ? "epoch went back, version past b's cursor" : "version below b's cursor");
    RestoredLine l;
    // First restore: b detects it, r renews; c never hears from that r.
    Sync(l.r->get(), l.b.get(), 3);
    ASSERT_NE(l.Epoch(*l.r), 0);
    ASSERT_EQ(l.b.One("SELECT name FROM items WHERE id = 4"), "'after'");
    // Second restore, from the same backup (epoch 0 again).
    TestDb r2(l.spare.str());
    ASSERT_EQ(l.Epoch(r2), 0);
    r2.Exec("INSERT INTO items VALUES (5, 'again', 1)");
    if (past_cursor) {
      const int64_t b_cursor = std::stoll(l.b.One(
          "SELECT version FROM crsql_tracked_peers WHERE tag = 1001 AND event = 0 AND site_id = X'" +
          r2.One("SELECT hex(crsql_site_id())").substr(1, 32) + "'"));
      while (std::stoll(r2.One("SELECT crsql_db_version()")) < b_cursor) {
        r2.Exec("UPDATE items SET qty = qty + 1 WHERE id = 5");
      }
    }
    Sync(r2.get(), l.b.get(), 4);
    EXPECT_NE(l.Epoch(r2), 0) << "b let the node keep its old epoch";
    Sync(r2.get(), l.c.get(), 3);
    EXPECT_EQ(l.c.One("SELECT name FROM items WHERE id = 5"), "'again'");
    EXPECT_EQ(Items(l.c), Items(l.b));
    EXPECT_EQ(Items(r2), Items(l.b));
  }
}

}  // namespace
}  // namespace crsync
