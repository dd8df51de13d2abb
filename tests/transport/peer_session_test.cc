// PeerSession over an in-memory network that reorders, duplicates and drops
// messages and restarts connections: nodes converge in every topology, bad
// input closes the connection and applies nothing, and cursors never claim
// more than what is committed.
#include "transport/peer_session.h"
#include "transport/codec.h"

#include <deque>
#include <random>

#include "common/hex.h"
#include "tests/change_util.h"
#include "tests/engine/property_util.h"
#include "tests/transport/session_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

// One connection: a session at each end and a queue each way.
struct Link {
  Node* a;
  Node* b;
  std::unique_ptr<PeerSession> sa, sb;
  std::deque<Message> to_a, to_b;
  int restarts = 0;
  // Called when a session of this link renewed its node's restore epoch
  // (the sidecar then closes that node's other connections).
  std::function<void(Node*)> on_renewed;

  Link(Node* x, Node* y) : a(x), b(y) { Restart(); }

  void Restart() {
    ++restarts;
    to_a.clear();
    to_b.clear();
    SessionOptions opts;
    opts.max_changes_per_message = 3;  // exercise split transactions
    opts.window = 2;
    opts.max_changes_per_commit = 4;  // and batches split over several commits
    opts.bare_announce_interval_ms = 0;  // cursors catch up at once
    EXPECT_OK(PeerSession::Open(a->db.get(), opts, &sa));
    EXPECT_OK(PeerSession::Open(b->db.get(), opts, &sb));
    std::vector<Message> out;
    EXPECT_OK(sa->Start(&out));
    for (auto& m : out) to_b.push_back(std::move(m));
    out.clear();
    EXPECT_OK(sb->Start(&out));
    for (auto& m : out) to_a.push_back(std::move(m));
  }
  // Delivers one message (from a random queue position when `shuffle`);
  // returns false when both queues are empty.
  bool Step(std::mt19937_64& rng, bool chaos) {
    if (to_a.empty() && to_b.empty()) return false;
    bool into_a = to_b.empty() || (!to_a.empty() && rng() % 2);
    std::deque<Message>& q = into_a ? to_a : to_b;
    PeerSession& s = into_a ? *sa : *sb;
    std::deque<Message>& back = into_a ? to_b : to_a;
    size_t pos = chaos && q.size() > 1 && rng() % 3 == 0 ? rng() % q.size() : 0;
    // Sometimes several messages in a row go together (OnMessages), as the
    // sidecar hands over what queued up.
    size_t n = rng() % 3 == 0 ? std::min(q.size() - pos, size_t{1} + rng() % 5) : 1;
    std::vector<Message> batch(q.begin() + static_cast<ptrdiff_t>(pos),
                               q.begin() + static_cast<ptrdiff_t>(pos + n));
    bool duplicate = chaos && rng() % 10 == 0;
    if (!duplicate) {
      q.erase(q.begin() + static_cast<ptrdiff_t>(pos), q.begin() + static_cast<ptrdiff_t>(pos + n));
    }
    if (chaos && rng() % 25 == 0) {  // lost: on a stream, the connection broke
      Restart();
      return true;
    }
    std::vector<Message> out;
    Status st = n == 1 ? s.OnMessage(batch[0], &out) : s.OnMessages(std::move(batch), &out);
    for (auto& o : out) back.push_back(std::move(o));
    if (!st.ok()) {
      // The connection closes; its last words (an Error) usually arrive
      // first, but with chaos they may not.
      PeerSession& other = into_a ? *sb : *sa;
      if (!(chaos && rng() % 3 == 0)) {
        std::vector<Message> ignored;
        for (const Message& o : out)
          if (std::holds_alternative<ErrorMsg>(o)) other.OnMessage(o, &ignored).IgnoreError();
      }
      Node* renewed = s.renewed_own_epoch()       ? (into_a ? a : b)
                      : other.renewed_own_epoch() ? (into_a ? b : a)
                                                  : nullptr;
      Restart();  // a new connection resumes
      if (renewed && on_renewed) on_renewed(renewed);
    }
    return true;
  }
  void Pump() {
    std::vector<Message> out;
    if (sa->ready()) {
      EXPECT_OK(sa->Pump(&out));
    }
    for (auto& m : out) to_b.push_back(std::move(m));
    out.clear();
    if (sb->ready()) {
      EXPECT_OK(sb->Pump(&out));
    }
    for (auto& m : out) to_a.push_back(std::move(m));
  }
};

Rows Contents(Node& n) { return n.db.Query("SELECT * FROM items ORDER BY id"); }

void RandomWrite(std::mt19937_64& rng, Node& n) {
  int id = static_cast<int>(rng() % 12);
  switch (rng() % 4) {
    case 0:
      n.db.Try("INSERT OR REPLACE INTO items VALUES (" + std::to_string(id) + ", " +
               RandomValue(rng) + ", " + RandomValue(rng) + ")").IgnoreError();
      break;
    case 1:
      n.db.Try("UPDATE items SET qty = " + RandomValue(rng) + " WHERE id = " + std::to_string(id))
          .IgnoreError();
      break;
    case 2:
      n.db.Try("DELETE FROM items WHERE id = " + std::to_string(id)).IgnoreError();
      break;
    default:
      n.db.Exec("BEGIN");
      for (int k = 0; k < 5; ++k) {
        n.db.Try("INSERT OR REPLACE INTO items VALUES (" + std::to_string(rng() % 12) + ", 'bulk', " +
                 std::to_string(k) + ")").IgnoreError();
      }
      n.db.Exec("COMMIT");
  }
}

// Calm: no loss, in order, until nothing moves. Then every node must hold
// the same contents and every receive cursor must have reached the sender's
// db_version.
void CalmThenCheckConverged(std::mt19937_64& rng, const std::vector<std::unique_ptr<Node>>& ns,
                            const std::vector<std::unique_ptr<Link>>& links) {
  for (int round = 0; round < 300; ++round) {
    bool moved = false;
    for (auto& l : links) {
      l->Pump();
      while (l->Step(rng, false)) moved = true;
    }
    if (!moved) break;
  }
  Rows want = Contents(*ns[0]);
  for (size_t i = 1; i < ns.size(); ++i) ASSERT_EQ(Contents(*ns[i]), want) << "node " << i;
  for (auto& l : links) {
    EXPECT_EQ(l->sb->receive_cursor(), l->a->db.Int("SELECT crsql_db_version()"));
    EXPECT_EQ(l->sa->receive_cursor(), l->b->db.Int("SELECT crsql_db_version()"));
  }
}

// Random writes and chaotic delivery (reordered, duplicated, lost messages;
// a loss breaks the connection, as on a stream), then a calm phase until
// nothing moves: every node must hold the same contents and every receive
// cursor must have reached the sender's db_version.
void RunTopology(size_t nodes, const std::vector<std::pair<size_t, size_t>>& edges, uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<Node>> ns;
  for (size_t i = 0; i < nodes; ++i) ns.push_back(std::make_unique<Node>());
  std::vector<std::unique_ptr<Link>> links;
  for (auto [x, y] : edges) links.push_back(std::make_unique<Link>(ns[x].get(), ns[y].get()));
  for (int step = 0; step < 300; ++step) {
    if (rng() % 4 == 0) {
      size_t w = rng() % nodes;
      RandomWrite(rng, *ns[w]);
      for (auto& l : links)
        if (l->a == ns[w].get() || l->b == ns[w].get()) l->Pump();  // the commit signal
    }
    Link& l = *links[rng() % links.size()];
    if (rng() % 60 == 0) l.Restart();
    l.Step(rng, /*chaos=*/true);
    // Invariant: a receive cursor never passes what the sender committed.
    for (auto& k : links) {
      int64_t a_committed = k->a->db.Int("SELECT crsql_db_version()");
      int64_t b_committed = k->b->db.Int("SELECT crsql_db_version()");
      ASSERT_LE(k->sb->receive_cursor(), a_committed);
      ASSERT_LE(k->sa->receive_cursor(), b_committed);
    }
  }
  CalmThenCheckConverged(rng, ns, links);
}

// RunTopology's chaos, with nodes backed up now and then and restored from
// those backups: a restored node lost versions it had announced and reuses
// them. Its sidecar comes back and says hello before its app writes much
// (a node that writes past every peer's cursor before any hears from it is
// the documented undetectable case). Every peer must resynchronize with it:
// in the end all nodes hold the same contents (what a node lost and no peer
// had is lost everywhere alike), and every cursor has caught up.
void RunTopologyWithRestores(size_t nodes, const std::vector<std::pair<size_t, size_t>>& edges,
                             uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<Node>> ns;
  for (size_t i = 0; i < nodes; ++i) ns.push_back(std::make_unique<Node>());
  std::vector<std::unique_ptr<Link>> links;
  for (auto [x, y] : edges) links.push_back(std::make_unique<Link>(ns[x].get(), ns[y].get()));
  auto links_of = [&](Node* n) {
    std::vector<Link*> out;
    for (auto& l : links)
      if (l->a == n || l->b == n) out.push_back(l.get());
    return out;
  };
  for (auto& l : links) {
    l->on_renewed = [&](Node* n) {
      for (Link* k : links_of(n)) k->Restart();
    };
  }
  std::vector<std::unique_ptr<TempPath>> backups(nodes);  // one pending per node
  std::vector<std::unique_ptr<TempPath>> restored;         // files now in use
  int restores = 0;
  for (int step = 0; step < 400; ++step) {
    const size_t w = rng() % nodes;
    Node* node = ns[w].get();
    if (rng() % 4 == 0) {
      RandomWrite(rng, *node);
      for (Link* l : links_of(node)) l->Pump();
    }
    if (rng() % 30 == 0 && !backups[w]) {
      backups[w] = std::make_unique<TempPath>();
      node->db.Exec("VACUUM INTO '" + backups[w]->str() + "'");
    } else if (rng() % 40 == 0 && backups[w]) {
      ++restores;
      std::vector<Link*> mine = links_of(node);
      for (Link* l : mine) l->sa.reset(), l->sb.reset();
      node->db.ReopenAt(backups[w]->str());
      for (Link* l : mine) {
        l->Restart();
        while (l->Step(rng, false)) {
        }
      }
      restored.push_back(std::move(backups[w]));  // a later backup is taken afresh
    }
    Link& l = *links[rng() % links.size()];
    if (rng() % 60 == 0) l.Restart();
    l.Step(rng, /*chaos=*/true);
  }
  SCOPED_TRACE(std::to_string(restores) + " restores");
  CalmThenCheckConverged(rng, ns, links);
}

TEST(PeerSessionTest, RestoredNodesResynchronizeWithEveryPeerInALine) {
  for (uint64_t seed = 400; seed < 412; ++seed) RunTopologyWithRestores(3, {{0, 1}, {1, 2}}, seed);
}

TEST(PeerSessionTest, RestoredNodesResynchronizeWithEveryPeerInAHub) {
  for (uint64_t seed = 500; seed < 508; ++seed)
    RunTopologyWithRestores(4, {{0, 1}, {0, 2}, {0, 3}}, seed);
}

TEST(PeerSessionTest, TwoNodesConvergeThroughLossReorderAndRestarts) {
  for (uint64_t seed = 1; seed <= 25; ++seed) RunTopology(2, {{0, 1}}, seed);
}

TEST(PeerSessionTest, LineConvergesThroughTheMiddleNode) {
  for (uint64_t seed = 100; seed < 112; ++seed) RunTopology(3, {{0, 1}, {1, 2}}, seed);
}

TEST(PeerSessionTest, HubWithThreeSpokesConverges) {
  for (uint64_t seed = 200; seed < 210; ++seed) RunTopology(4, {{0, 1}, {0, 2}, {0, 3}}, seed);
}

TEST(PeerSessionTest, MeshOfFourConverges) {
  for (uint64_t seed = 300; seed < 306; ++seed)
    RunTopology(4, {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}}, seed);
}

// A peer's Error text goes to the log: it must not be able to forge log
// lines (a newline) or drive the terminal (an escape sequence), nor flood it.
TEST(PeerSessionTest, APeersErrorTextIsLoggedPrintableAndBounded) {
  Node a;
  std::unique_ptr<PeerSession> s;
  ASSERT_OK(PeerSession::Open(a.db.get(), {}, &s));
  std::vector<Message> out;
  Status st = s->OnMessage(ErrorMsg{ErrorMsg::kInternal, "bad\ncrsyncd info: forged\x1b[2J"}, &out);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "peer reported error 4: bad?crsyncd info: forged?[2J");
  st = s->OnMessage(ErrorMsg{ErrorMsg::kInternal, std::string(100000, 'x')}, &out);
  EXPECT_LT(st.message().size(), 600u);
  EXPECT_THAT(st.message(), HasSubstr("(100000 bytes)"));
  EXPECT_TRUE(out.empty());
}

TEST(PeerSessionTest, NothingEchoesBackToItsOrigin) {
  Node a, b;
  a.db.Exec("INSERT INTO items VALUES (1, 'x', 1)");
  Link l(&a, &b);
  std::mt19937_64 rng(1);
  while (l.Step(rng, false)) {
  }
  ASSERT_EQ(Contents(b), Contents(a));
  // b received a's change; nothing it sends back may carry a's origin.
  std::vector<Message> out;
  ASSERT_OK(l.sb->Pump(&out));
  for (const auto& m : out) {
    if (const auto* c = std::get_if<ChangesetMsg>(&m)) {
      EXPECT_TRUE(c->changes.empty());
    }
  }
  // What b writes itself does go out, and only that: the filter drops a's
  // changes, not everything.
  b.db.Exec("INSERT INTO items VALUES (2, 'y', 2)");
  out.clear();
  ASSERT_OK(l.sb->Pump(&out));
  // (Compared in hex: a site id may hold a zero byte, which text cuts.)
  const std::string b_site = b.db.One("SELECT lower(hex(crsql_site_id()))");
  size_t sent = 0;
  for (const auto& m : out) {
    if (const auto* c = std::get_if<ChangesetMsg>(&m)) {
      for (const Change& ch : c->changes) {
        EXPECT_EQ("'" + HexBytes(ch.site_id) + "'", b_site);
        ++sent;
      }
    }
  }
  EXPECT_EQ(sent, 2u);  // b's row: name and qty
}

TEST(PeerSessionTest, SchemaMismatchIsRefusedOnBothSides) {
  Node a, b("CREATE TABLE items (id PRIMARY KEY NOT NULL, name, qty, extra);"
            "SELECT crsql_as_crr('items');");
  a.db.Exec("INSERT INTO items VALUES (1, 'x', 1)");
  std::unique_ptr<PeerSession> sa, sb;
  ASSERT_OK(PeerSession::Open(a.db.get(), {}, &sa));
  ASSERT_OK(PeerSession::Open(b.db.get(), {}, &sb));
  std::vector<Message> ha, hb, out;
  ASSERT_OK(sa->Start(&ha));
  ASSERT_OK(sb->Start(&hb));
  Status s = sb->OnMessage(ha[0], &out);
  EXPECT_THAT(s.message(), HasSubstr("CRR schemas differ"));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<ErrorMsg>(out[0]));
  EXPECT_EQ(std::get<ErrorMsg>(out[0]).code, ErrorMsg::kSchemaMismatch);
  // Each side names its own tables and columns; the other logs them.
  EXPECT_THAT(s.message(), HasSubstr("has items(id, name, qty, extra)"));
  std::vector<Message> out2;
  EXPECT_THAT(sa->OnMessage(out[0], &out2).message(),
              HasSubstr("peer reported error 2: CRR schemas differ: node "));
  EXPECT_THAT(sa->OnMessage(hb[0], &out2).message(), HasSubstr("has items(id, name, qty)"));
  EXPECT_EQ(b.db.One("SELECT count(*) FROM items"), "0");
}

// Two ends with one site id: the node itself, or a copy of its database.
// The error says which site id and why a copy cannot be another node.
TEST(PeerSessionTest, ACopyOfThisNodesDatabaseIsNamedAsSuch) {
  TempPath original, copy;
  {
    TestDb db(original.str());
    db.Exec(kSchema);
    db.Exec("VACUUM INTO '" + copy.str() + "'");
  }
  TestDb a(original.str()), b(copy.str());
  std::unique_ptr<PeerSession> sa, sb;
  ASSERT_OK(PeerSession::Open(a.get(), SessionOptions{}, &sa));
  ASSERT_OK(PeerSession::Open(b.get(), SessionOptions{}, &sb));
  std::vector<Message> ha, out;
  ASSERT_OK(sa->Start(&ha));
  const Rows before = CrrState(b, {"items"});
  Status s = sb->OnMessage(ha[0], &out);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("own site id " + a.One("SELECT lower(hex(crsql_site_id()))")
                                                          .substr(1, 32)));
  EXPECT_THAT(s.message(), HasSubstr("copy"));
  EXPECT_EQ(CrrState(b, {"items"}), before);  // no cursor kept for "the peer"
}

TEST(PeerSessionTest, OtherProtocolVersionIsRefused) {
  Node a, b;
  std::unique_ptr<PeerSession> sa, sb;
  ASSERT_OK(PeerSession::Open(a.db.get(), {}, &sa));
  ASSERT_OK(PeerSession::Open(b.db.get(), {}, &sb));
  std::vector<Message> ha, out;
  ASSERT_OK(sa->Start(&ha));
  std::get<HelloMsg>(ha[0]).protocol_version = 99;
  const Rows before = CrrState(b.db, {"items"});
  EXPECT_THAT(sb->OnMessage(ha[0], &out).message(), HasSubstr("protocol version 99 is not supported"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<ErrorMsg>(out[0]).code, ErrorMsg::kProtocol);
  EXPECT_FALSE(sb->ready());
  EXPECT_EQ(CrrState(b.db, {"items"}), before);
}

TEST(PeerSessionTest, BadChangesetsCloseTheConnectionAndApplyNothing) {
  Node a, b;
  std::unique_ptr<PeerSession> sa, sb;
  ASSERT_OK(PeerSession::Open(a.db.get(), {}, &sa));
  ASSERT_OK(PeerSession::Open(b.db.get(), {}, &sb));
  std::vector<Message> ha, out;
  ASSERT_OK(sa->Start(&ha));
  ASSERT_OK(sb->OnMessage(ha[0], &out));
  std::string site_a = std::get<HelloMsg>(ha[0]).site_id;
  Change c = TextChange("items", SmallIntPk(1), "name", "x", 1, 9, site_a);
  struct Case {
    ChangesetMsg m;
    const char* error;
  } cases[] = {
      {ChangesetMsg{site_a, 5, 3, 0, 1, {}}, "empty or negative range"},
      {ChangesetMsg{site_a, 1, INT64_MAX, 0, 1, {}}, "beyond the largest version"},
      {ChangesetMsg{site_a, 1, 4, 0, 1, {c}}, "outside the declared"},
      {ChangesetMsg{std::string(16, 'z'), 1, 9, 0, 1, {c}}, "from another site"},
      {ChangesetMsg{site_a, 1, 9, 2, 2, {c}}, "part 2 of 2"},
  };
  for (auto& k : cases) {
    out.clear();
    EXPECT_THAT(sb->OnMessage(k.m, &out).message(), HasSubstr(k.error));
    ASSERT_FALSE(out.empty());
    EXPECT_TRUE(std::holds_alternative<ErrorMsg>(out.back()));
  }
  Change bad = c;
  bad.cid = "nope";
  out.clear();
  EXPECT_THAT(sb->OnMessage(ChangesetMsg{site_a, 1, 9, 0, 1, {c, bad}}, &out).message(),
              HasSubstr("no such column items.nope"));
  EXPECT_EQ(b.db.One("SELECT count(*) FROM items"), "0");
  EXPECT_EQ(sb->receive_cursor(), 0);
  EXPECT_EQ(b.db.One("SELECT count(*) FROM crsql_tracked_peers"), "0");
}

// A batch (what queued up on a connection) merges several peer transactions
// per commit, skips duplicates, answers with one ack for all; a bad changeset
// in it is refused alone: what came before it is committed and acknowledged,
// what came after it is not applied.
// Opens a session at each end and exchanges hellos; *first gets what A
// sends on B's hello (its first pump).
void Connect(Node& a, Node& b, const SessionOptions& opts, std::unique_ptr<PeerSession>* sa,
             std::unique_ptr<PeerSession>* sb, std::vector<Message>* first) {
  ASSERT_OK(PeerSession::Open(a.db.get(), opts, sa));
  ASSERT_OK(PeerSession::Open(b.db.get(), opts, sb));
  std::vector<Message> ha, hb, ignored;
  ASSERT_OK((*sa)->Start(&ha));
  ASSERT_OK((*sb)->Start(&hb));
  ASSERT_OK((*sb)->OnMessage(ha[0], &ignored));
  ASSERT_OK((*sa)->OnMessage(hb[0], first));
}

// Split transactions cost what was received, not what was announced: a
// peer announcing a million parts in a few tiny frames is held to the
// limit on open split transactions (checked before anything is kept for a
// new one), and a part count that changes is refused.
TEST(PeerSessionTest, AnnouncedPartsCostNothingUntilReceived) {
  Node a, b;
  std::unique_ptr<PeerSession> sa, sb;
  SessionOptions opts;
  ASSERT_OK(PeerSession::Open(a.db.get(), {}, &sa));
  ASSERT_OK(PeerSession::Open(b.db.get(), opts, &sb));
  std::vector<Message> ha, out;
  ASSERT_OK(sa->Start(&ha));
  ASSERT_OK(sb->OnMessage(ha[0], &out));
  const std::string site_a = std::get<HelloMsg>(ha[0]).site_id;
  const uint32_t kParts = 1u << 20;
  const size_t limit = 2 * opts.window + 2;
  for (size_t i = 0; i < limit; ++i) {
    out.clear();
    const int64_t v = static_cast<int64_t>(i) + 1;
    ASSERT_OK(sb->OnMessage(ChangesetMsg{site_a, v, v, 0, kParts, {}}, &out)) << i;
  }
  out.clear();
  EXPECT_OK(sb->OnMessage(ChangesetMsg{site_a, 1, 1, 7, kParts, {}}, &out));  // a known one
  out.clear();
  EXPECT_THAT(sb->OnMessage(ChangesetMsg{site_a, 1, 1, 8, 9, {}}, &out).message(),
              HasSubstr("said 1048576 parts, now 9"));
  std::unique_ptr<PeerSession> sc;
  ASSERT_OK(PeerSession::Open(b.db.get(), opts, &sc));
  out.clear();
  ASSERT_OK(sc->OnMessage(ha[0], &out));
  for (size_t i = 0; i < limit; ++i) {
    out.clear();
    const int64_t v = static_cast<int64_t>(i) + 1;
    ASSERT_OK(sc->OnMessage(ChangesetMsg{site_a, v, v, 0, kParts, {}}, &out)) << i;
  }
  out.clear();
  EXPECT_THAT(sc->OnMessage(ChangesetMsg{site_a, 99, 99, 0, kParts, {}}, &out).message(),
              HasSubstr("too many split transactions in progress"));
  EXPECT_EQ(b.db.One("SELECT count(*) FROM items"), "0");
}

TEST(PeerSessionTest, PumpStopsAtItsBoundAndResumesWhereItStopped) {
  Node a, b;
  for (int i = 0; i < 10; ++i) a.db.Exec("INSERT INTO items VALUES (" + std::to_string(i) + ", 'n', 1)");
  SessionOptions opts;
  opts.max_changes_per_pump = 3;  // each transaction holds 2 changes
  opts.window = 100;
  std::unique_ptr<PeerSession> sa, sb;
  std::vector<Message> out;
  Connect(a, b, opts, &sa, &sb, &out);
  ASSERT_FALSE(HasFatalFailure());  // the hello pumps first
  std::vector<Message> sent = out;
  EXPECT_EQ(sent.size(), 2u);  // two transactions reach the bound
  EXPECT_TRUE(sa->more_to_send());
  int pumps = 1;
  while (sa->more_to_send()) {
    out.clear();
    ASSERT_OK(sa->Pump(&out));
    EXPECT_LE(out.size(), 2u);
    sent.insert(sent.end(), out.begin(), out.end());
    ASSERT_LT(++pumps, 20);
  }
  EXPECT_EQ(pumps, 6);  // the last finds nothing more
  EXPECT_EQ(sent.size(), 10u);
  for (size_t i = 0; i < sent.size(); ++i) {
    const auto& cs = std::get<ChangesetMsg>(sent[i]);
    EXPECT_EQ(cs.end, static_cast<int64_t>(i + 1));  // in order, none skipped
  }
  out.clear();
  ASSERT_OK(sb->OnMessages(sent, &out));
  EXPECT_EQ(Contents(b), Contents(a));
  EXPECT_EQ(sb->receive_cursor(), 10);
}

// Large values: a transaction is split by encoded size as well as by
// change count, so every message stays well under the 16 MiB frame; a
// single change too large for any frame is refused by name.
TEST(PeerSessionTest, LargeValuesAreSplitBySize) {
  Node a, b;
  a.db.Exec("BEGIN");
  for (int i = 0; i < 24; ++i) {
    a.db.Exec("INSERT INTO items VALUES (" + std::to_string(i) + ", randomblob(300000), " +
              std::to_string(i) + ")");
  }
  a.db.Exec("COMMIT");
  SessionOptions opts;
  opts.max_bytes_per_message = 1 << 20;
  opts.window = 100;
  std::unique_ptr<PeerSession> sa, sb;
  std::vector<Message> out;
  Connect(a, b, opts, &sa, &sb, &out);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_GE(out.size(), 7u);  // 24 values of 300 kB in parts of about 1 MiB
  for (const Message& m : out) {
    const auto& cs = std::get<ChangesetMsg>(m);
    EXPECT_EQ(cs.parts, out.size());
    EXPECT_LE(EstimateMessageWords(m) * 8, size_t{1 << 20} + 400000);
  }
  std::vector<Message> back;
  ASSERT_OK(sb->OnMessages(out, &back));
  EXPECT_EQ(Contents(b), Contents(a));
}

// One value over what a frame can carry (16 MiB) stops only the sending
// direction: the peer is told which change (Error 7) and both ends warn in
// their logs, but the connection stays and the peer's changes still
// arrive. Sending is tried again after blocked_send_retry_ms, and goes on
// once the value was replaced by one that fits.
TEST(PeerSessionTest, AnOversizedChangeStopsOnlyItsDirection) {
  Node a, b;
  SessionOptions opts;
  opts.blocked_send_retry_ms = 0;  // every pump tries again
  std::unique_ptr<PeerSession> sa, sb;
  std::vector<Message> out;
  Connect(a, b, opts, &sa, &sb, &out);
  ASSERT_FALSE(HasFatalFailure());
  a.db.Exec("INSERT INTO items VALUES (100, zeroblob(17000000), 1)");
  out.clear();
  ASSERT_OK(sa->Pump(&out));
  ASSERT_EQ(out.size(), 1u);  // nothing of it but an Error
  const auto* e = std::get_if<ErrorMsg>(&out[0]);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code, ErrorMsg::kCannotSend);
  EXPECT_THAT(e->message, HasSubstr("cannot send a change of items (column name"));
  EXPECT_THAT(e->message, HasSubstr("value 17000000, key 3), over what one message may carry"));
  EXPECT_THAT(sa->TakeNotice(), HasSubstr("cannot send to the peer: cannot send a change of items"));
  EXPECT_EQ(sa->TakeNotice(), "");  // once
  std::vector<Message> back;
  ASSERT_OK(sb->OnMessage(out[0], &back));  // not a reason to close
  EXPECT_THAT(sb->TakeNotice(), HasSubstr("the peer cannot send to us (error 7): the sender cannot"));

  // The other direction still works.
  b.db.Exec("INSERT INTO items VALUES (7, 'from b', 7)");
  back.clear();
  ASSERT_OK(sb->Pump(&back));
  ASSERT_FALSE(back.empty());
  out.clear();
  ASSERT_OK(sa->OnMessages(back, &out));
  EXPECT_EQ(a.db.One("SELECT name FROM items WHERE id = 7"), "'from b'");

  // Tried again: still too large, and said only once.
  out.clear();
  ASSERT_OK(sa->Pump(&out));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(sa->TakeNotice(), "");
  // Superseded by a value that fits: sending resumes, b converges.
  a.db.Exec("UPDATE items SET name = 'small' WHERE id = 100");
  for (int round = 0; round < 10; ++round) {
    out.clear();
    ASSERT_OK(sa->Pump(&out));
    if (out.empty()) break;
    back.clear();
    ASSERT_OK(sb->OnMessages(out, &back));
    out.clear();
    ASSERT_OK(sa->OnMessages(back, &out));
  }
  EXPECT_EQ(sa->TakeNotice(), "sending to the peer resumed");
  EXPECT_EQ(Contents(b), Contents(a));
}

// Transactions queued in the same pump before an oversized one still go
// out: they were dropped with the pump's output while sent_ and the window
// counted them, so the peer got them only after a reconnect.
TEST(PeerSessionTest, TransactionsBeforeAnOversizedOneAreSent) {
  Node a, b;
  SessionOptions opts;
  opts.blocked_send_retry_ms = 0;
  std::unique_ptr<PeerSession> sa, sb;
  std::vector<Message> out;
  Connect(a, b, opts, &sa, &sb, &out);
  ASSERT_FALSE(HasFatalFailure());
  a.db.Exec("INSERT INTO items VALUES (98, 'small one', 1)");
  a.db.Exec("INSERT INTO items VALUES (99, 'small two', 2)");
  a.db.Exec("INSERT INTO items VALUES (100, zeroblob(17000000), 1)");
  out.clear();
  ASSERT_OK(sa->Pump(&out));
  ASSERT_EQ(out.size(), 2u);  // the two small transactions, no error yet
  for (const Message& m : out) EXPECT_TRUE(std::holds_alternative<ChangesetMsg>(m));
  std::vector<Message> back;
  ASSERT_OK(sb->OnMessages(out, &back));
  EXPECT_EQ(b.db.One("SELECT count(*) FROM items WHERE id IN (98, 99)"), "2");
  out.clear();
  ASSERT_OK(sa->OnMessages(back, &out));  // the acks pump: the large one stops this direction
  ASSERT_EQ(out.size(), 1u);
  const auto* e = std::get_if<ErrorMsg>(&out[0]);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code, ErrorMsg::kCannotSend);
}

TEST(PeerSessionTest, BatchesMergeTogetherAndABadChangesetStopsOnlyTheRest) {
  Node a, b;
  SessionOptions opts;
  opts.max_changes_per_commit = 2;
  int merge_txns = 0;
  opts.before_merge_txn = [&] { ++merge_txns; };
  std::unique_ptr<PeerSession> sa, sb;
  ASSERT_OK(PeerSession::Open(a.db.get(), opts, &sa));
  ASSERT_OK(PeerSession::Open(b.db.get(), opts, &sb));
  std::vector<Message> ha, out;
  ASSERT_OK(sa->Start(&ha));
  ASSERT_OK(sb->OnMessage(ha[0], &out));
  std::string site_a = std::get<HelloMsg>(ha[0]).site_id;
  auto change = [&](int id, const char* cid, int64_t version) {
    return IntegerChange("items", SmallIntPk(id), cid, id, 1, version, site_a);
  };
  std::vector<Message> batch = {
      ChangesetMsg{site_a, 1, 1, 0, 1, {change(1, "qty", 1)}},
      ChangesetMsg{site_a, 2, 2, 0, 2, {change(2, "qty", 2)}},  // split in two parts
      AckMsg{0, 0},  // a heartbeat between them splits nothing
      ChangesetMsg{site_a, 1, 1, 0, 1, {change(1, "qty", 1)}},  // a duplicate
      ChangesetMsg{site_a, 2, 2, 1, 2, {change(2, "name", 2)}},
      ChangesetMsg{site_a, 3, 4, 0, 1, {change(3, "qty", 4)}},
  };
  out.clear();
  ASSERT_OK(sb->OnMessages(batch, &out));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<AckMsg>(out[0]));
  EXPECT_EQ(std::get<AckMsg>(out[0]).up_to, 4);
  EXPECT_EQ(std::get<AckMsg>(out[0]).credits, 4u);  // 3 transactions + 1 duplicate
  // At most 2 changes per commit: [1 change], [2 changes], [duplicate skipped, 1 change].
  EXPECT_EQ(merge_txns, 3);
  EXPECT_EQ(b.db.One("SELECT group_concat(id || ':' || qty || ':' || ifnull(name, '-'), ' ') "
                     "FROM (SELECT * FROM items ORDER BY id)"),
            "'1:1:- 2:2:2 3:3:-'");
  EXPECT_EQ(b.db.One("SELECT version FROM crsql_tracked_peers WHERE event = 0"), "4");

  Change bad = change(6, "nope", 6);
  std::vector<Message> second = {
      ChangesetMsg{site_a, 5, 5, 0, 1, {change(5, "qty", 5)}},
      // Split in two: the good first part goes with the refused second.
      ChangesetMsg{site_a, 6, 6, 0, 2, {change(6, "qty", 6)}},
      ChangesetMsg{site_a, 6, 6, 1, 2, {bad}},
      ChangesetMsg{site_a, 7, 7, 0, 1, {change(7, "qty", 7)}},
  };
  out.clear();
  Status refused = sb->OnMessages(second, &out);
  EXPECT_THAT(refused.message(), HasSubstr("no such column items.nope"));
  EXPECT_THAT(refused.message(), HasSubstr("changeset [6, 6] part 2 of 2: change 1 of 1"));
  EXPECT_EQ(b.db.One("SELECT group_concat(id, ' ') FROM (SELECT id FROM items ORDER BY id)"),
            "'1 2 3 5'");
  EXPECT_EQ(sb->receive_cursor(), 5);
  EXPECT_EQ(b.db.One("SELECT version FROM crsql_tracked_peers WHERE event = 0"), "5");
  ASSERT_FALSE(out.empty());
  EXPECT_TRUE(std::holds_alternative<ErrorMsg>(out.back()));
}

}  // namespace
}  // namespace crsync
