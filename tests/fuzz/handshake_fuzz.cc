// handshake_fuzz: a PeerSession (transport/peer_session.h) on an in-memory
// database with two CRRs, fed messages derived from the fuzz bytes.
//
// Input: [options] then up to 24 records, each [kind] [fields...]. Options:
// bits 0-1 max_changes_per_message - 1, bits 2-3 window - 1, bit 4 the
// merge-equal-values setting. Records:
//   0 hello, 1 changeset, 2 ack, 3 error — built from small pools (the
//     peer's, a third and our own site id; the right schema fingerprint
//     most of the time; hellos may say a current version and a restore
//     epoch, as a node restored from a backup does) and sent through EncodeMessage + frame + decode,
//     as a real peer's message would arrive;
//   4 raw — [n] and n*8 bytes taken as a frame payload and decoded;
//   5 local write — an INSERT/UPDATE/DELETE on the database, then Pump().
// A message the decoder rejects, or one OnMessage() fails, closes the
// connection: a new session is opened (a reconnect) and the input goes on.
//
// Invariants:
//  * no crash; OnMessage() returns errors, and everything the session sends
//    is a message our encoder accepts;
//  * the database changes only through a changeset the session accepted:
//    hello and error change nothing but the sidecar's own rows (tag 1001:
//    a hello or a resync error may reveal a restore from a backup, which
//    rewinds a cursor or renews an epoch), an ack only crsql_tracked_peers, a
//    failed message nothing at all, a part of a split transaction nothing
//    until the last part is in;
//  * an accepted changeset changes the database exactly as inserting its
//    changes into crsql_changes in one transaction does (tag -1);
//  * the persisted receive cursor equals the session's;
//  * no transaction is left open; PRAGMA integrity_check is ok.
#include <map>
#include <set>
#include <tuple>

#include "engine/packed.h"
#include "tests/fuzz/fuzz_messages.h"
#include "tests/fuzz/handshake_input.h"
#include "transport/peer_session.h"

namespace crsync::fuzz {
namespace {

constexpr char kSchema[] =
    "CREATE TABLE items (id PRIMARY KEY NOT NULL, name TEXT, qty INTEGER CHECK (qty IS NULL OR "
    "qty >= 0));"
    "SELECT crsql_as_crr('items');"
    "CREATE TABLE tags (k TEXT NOT NULL, n INTEGER NOT NULL, note, PRIMARY KEY (k, n));"
    "SELECT crsql_as_crr('tags');"
    "INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2);"
    "INSERT INTO tags VALUES ('a', 1, 'x');"
    "UPDATE items SET qty = 3 WHERE id = 1;";

std::vector<uint8_t>* g_image;
uint64_t g_fingerprint;

// Site choices 0..2 (peer, other, ours); 3: an arbitrary byte string.
std::string SiteBy(unsigned k, ByteReader& in) {
  switch (k) {
    case 0: return kPeer;
    case 1: return kOther;
    case 2: return kLocal;
    default: return in.Str(20);
  }
}

HelloMsg GenHello(ByteReader& in) {
  uint8_t b = in.Byte();
  HelloMsg h;
  h.site_id = SiteBy(b & 3, in);
  h.fingerprint = ((b >> 2) & 3) == 3 ? static_cast<uint64_t>(in.I64()) : g_fingerprint;
  if ((b >> 4) & 1) {
    // What a restored node's hello says: c bit 0, its current version;
    // bit 1, its restore epoch (generation 0..2 from bits 2-3 and a low
    // part 1..3, or with bits 2-3 set any int64). c = 0xff: an arbitrary
    // protocol version instead.
    uint8_t c = in.Byte();
    if (c == 0xff) {
      h.protocol_version = in.U32();
    } else {
      if (c & 1) h.current_version = Num(in);
      if (c & 2) {
        const unsigned gen = (c >> 2) & 3;
        h.restore_epoch = gen == 3 ? in.I64()
                                   : static_cast<int64_t>((uint64_t{gen} << 32) | (1 + in.Byte() % 3));
      }
    }
  }
  for (int i = 0; i < (b >> 5); ++i) {
    std::string site = SiteBy(in.Pick(4), in);
    h.have_from.emplace_back(site, Num(in));
  }
  return h;
}

// Changesets are valid by default, so that most reach the merge: each field
// reads a byte whose usual values give a well-formed field (the peer's site,
// a range near the start, versions inside it, known tables and columns) and
// whose top values escape to arbitrary ones.

// The peer's site id for 0..4; then the other site, ours, arbitrary bytes.
std::string MostlyPeer(ByteReader& in) {
  unsigned c = in.Pick(8);
  return c < 5 ? kPeer : SiteBy(c - 4, in);
}

// 1..8, or (from 0xf0) any int64.
int64_t SmallVersion(ByteReader& in) {
  uint8_t c = in.Byte();
  return c < 0xf0 ? 1 + c % 8 : in.I64();
}

// A table's key column value: a small integer (items) or 'a'..'c' and 0..2
// (tags), or (from 0xc0) any value.
Value KeyValue(ByteReader& in, bool text) {
  uint8_t c = in.Byte();
  if (c >= 0xc0) return AnyValue(in);
  return text ? Value::Text(std::string(1, static_cast<char>('a' + c % 3))) : Value::Int(c % 10);
}

const char* const kItemCols[] = {"-1", "name", "qty"};
const char* const kTagCols[] = {"-1", "note"};
const char* const kAnyCids[] = {"-1", "name", "qty", "id", "k", "n", "note"};

Change GenChange(ByteReader& in, int64_t start, int64_t end) {
  Change c;
  unsigned t = in.Pick(8);
  bool tags = t == 5 || t == 6;
  if (t < 5) {
    c.table = "items";
  } else if (tags) {
    c.table = "tags";
  } else {
    unsigned k = in.Pick(3);
    c.table = k == 0 ? "nope" : k == 1 ? "" : in.Str(16);
  }
  std::vector<Value> pk;
  unsigned mode = in.Pick(8);
  if (mode < 6) {
    pk.push_back(KeyValue(in, tags));
    if (tags) pk.push_back(KeyValue(in, false));
    PackValues(pk, &c.pk);
  } else if (mode == 6) {  // any arity, any values
    for (unsigned i = in.Pick(4); i > 0; --i) pk.push_back(AnyValue(in));
    PackValues(pk, &c.pk);
  } else {
    c.pk = in.Str(16);
  }
  unsigned ci = in.Pick(8);
  if (ci < 6) {
    c.cid = tags ? kTagCols[ci % 2] : kItemCols[ci % 3];
  } else {
    c.cid = ci == 6 ? kAnyCids[in.Pick(7)] : in.Str(8);
  }
  Value v = AnyValue(in);
  c.val_type = v.type;
  c.val_int = v.i;
  c.val_real = v.d;
  c.val_bytes = v.bytes;
  uint8_t b = in.Byte();
  c.col_version = b < 0xf0 ? 1 + b % 4 : in.I64();
  b = in.Byte();
  if (b < 0xf0) {
    uint64_t span = static_cast<uint64_t>(end) - static_cast<uint64_t>(start);
    c.db_version = start <= end && span < 64 ? start + static_cast<int64_t>(b % (span + 1)) : start;
  } else {
    c.db_version = in.I64();
  }
  c.site_id = MostlyPeer(in);
  // cl: the sentinel's equals its col_version (even: a delete); a column
  // change's is 1 or 3.
  b = in.Byte();
  c.cl = b >= 0xf0 ? in.I64() : c.cid == "-1" ? c.col_version : b % 4 == 3 ? 3 : 1;
  b = in.Byte();
  c.seq = b < 0xf0 ? b % 8 : in.I64();
  return c;
}

ChangesetMsg GenChangeset(ByteReader& in) {
  ChangesetMsg m;
  m.sender = MostlyPeer(in);
  m.start = SmallVersion(in);
  uint8_t c = in.Byte();
  int64_t span = c < 0xf0 ? c % 4 : in.I64();
  if (__builtin_add_overflow(m.start, span, &m.end)) m.end = INT64_MAX;
  uint8_t pp = in.Byte();
  if (pp < 0xc0) {
    m.part = 0;
    m.parts = 1;
  } else if (pp < 0xff) {
    m.part = pp & 3;
    m.parts = (pp >> 2) & 3;
  } else {
    m.part = in.U32();
    m.parts = in.U32();
  }
  for (unsigned n = in.Pick(6); n > 0; --n) m.changes.push_back(GenChange(in, m.start, m.end));
  return m;
}

// Runs a local write; failures (CHECK, NOT NULL) are fine.
void LocalWrite(sqlite3* db, ByteReader& in) {
  int64_t id = in.Pick(6);
  StmtPtr st;
  switch (in.Pick(3)) {
    case 0:
      FUZZ_CHECK_OK(Prepare(db, "INSERT OR REPLACE INTO items (id, name, qty) VALUES (?1, ?2, ?3)", &st));
      Value::Text(in.Str(6)).Bind(st.get(), 2);
      AnyValue(in).Bind(st.get(), 3);
      break;
    case 1:
      FUZZ_CHECK_OK(Prepare(db, "UPDATE items SET qty = ?2 WHERE id = ?1", &st));
      AnyValue(in).Bind(st.get(), 2);
      break;
    default:
      FUZZ_CHECK_OK(Prepare(db, "DELETE FROM items WHERE id = ?1", &st));
  }
  sqlite3_bind_int64(st.get(), 1, id);
  StepToEnd(db, st.get()).IgnoreError();
}

void CheckOutgoing(const std::vector<Message>& out, size_t from = 0) {
  for (size_t i = from; i < out.size(); ++i) {
    Status s;
    EncodeFrame(out[i], &s);
    FUZZ_CHECK(s.ok(), "the session produced a message we cannot send: " + s.ToString() + "\n" +
                           RenderMessage(out[i]));
  }
}

// What an accepted changeset may change, as the SQL path sees it (the
// session's own cursor rows, tag kSidecarTag, excluded).
// Every table, as Dumper dumps them, except the sidecar's own bookkeeping
// rows (crsql_tracked_peers, tag kSidecarTag): what a failing message may
// still change by design (a restore found: cursor forgotten, echo and
// renewal recorded, our restore epoch renewed).
std::vector<std::pair<std::string, std::string>> AllButSidecarRowsQueries(sqlite3* db) {
  std::vector<std::pair<std::string, std::string>> q = {
      {"crsql_changes",
       "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq FROM crsql_changes"}};
  StmtPtr names;
  FUZZ_CHECK_OK(Prepare(db, "SELECT name FROM main.sqlite_schema WHERE type = 'table' ORDER BY name",
                        &names));
  while (sqlite3_step(names.get()) == SQLITE_ROW) {
    std::string name = reinterpret_cast<const char*>(sqlite3_column_text(names.get(), 0));
    std::string sql = "SELECT * FROM main." + QuoteIdent(name);
    if (name == "crsql_tracked_peers") {
      sql += " WHERE tag IS NOT " + std::to_string(kSidecarTag);
    }
    q.emplace_back(name, sql);
  }
  return q;
}

std::vector<std::pair<std::string, std::string>> ObservableQueries() {
  return {
      {"items", "SELECT * FROM items"},
      {"tags", "SELECT * FROM tags"},
      {"crsql_changes",
       "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq FROM crsql_changes"},
      {"crsql_site_id", "SELECT * FROM crsql_site_id"},
      {"crsql_tracked_peers",
       "SELECT site_id, version, seq, tag, event FROM crsql_tracked_peers WHERE tag IS NOT " +
           std::to_string(kSidecarTag) + " ORDER BY site_id, tag, event"},
  };
}

// Whether a change after changes[i] writes the same row: ChangeApplier
// writes each row once per run of changes to it, so a value a later change
// supersedes is never stored, nor checked against the table's constraints
// (row by row, INSERT INTO crsql_changes stores it and may fail).
bool RowWrittenAgain(const std::vector<Change>& changes, size_t i) {
  for (size_t k = i + 1; k < changes.size(); ++k) {
    if (changes[k].table == changes[i].table && changes[k].pk == changes[i].pk) return true;
  }
  return false;
}

// Applies `changes` to a copy of `image` with INSERT INTO crsql_changes in
// one transaction; returns the ObservableQueries() dump of the result, or
// "" if a change the session's batch superseded fails a constraint there.
// `db_version` is crsql_db_version() of the session's connection before the
// changeset: the fresh copy starts from the same clock even where the live
// engine's exceeds what the file alone implies.
std::string ApplyBySql(const std::vector<uint8_t>& image, int64_t db_version,
                       const std::vector<Change>& changes) {
  DbPtr db = OpenImage(image);
  FUZZ_CHECK_OK(Exec(db.get(), "BEGIN; SELECT crsql_next_db_version(" +
                                   std::to_string(db_version + 1) + ")"));
  StmtPtr st;
  FUZZ_CHECK_OK(Prepare(db.get(),
                        "INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, "
                        "db_version, site_id, cl, seq, tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, -1)",
                        &st));
  for (size_t i = 0; i < changes.size(); ++i) {
    const Change& c = changes[i];
    sqlite3_stmt* s = st.get();
    sqlite3_bind_text(s, 1, c.table.data(), static_cast<int>(c.table.size()), SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, c.pk.data(), static_cast<int>(c.pk.size()), SQLITE_STATIC);
    sqlite3_bind_text(s, 3, c.cid.data(), static_cast<int>(c.cid.size()), SQLITE_STATIC);
    Value v{c.val_type, c.val_int, c.val_real, c.val_bytes};
    v.Bind(s, 4);
    sqlite3_bind_int64(s, 5, c.col_version);
    sqlite3_bind_int64(s, 6, c.db_version);
    sqlite3_bind_blob(s, 7, c.site_id.data(), static_cast<int>(c.site_id.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, c.cl);
    sqlite3_bind_int64(s, 9, c.seq);
    Status r = StepToEnd(db.get(), s);
    if ((r.sqlite_code() & 0xff) == SQLITE_CONSTRAINT && RowWrittenAgain(changes, i)) return "";
    FUZZ_CHECK(r.ok(), "the session applied a change that INSERT INTO crsql_changes rejects: " +
                           r.ToString() + "\n" + RenderChange(c));
  }
  FUZZ_CHECK_OK(Exec(db.get(), "COMMIT"));
  return Dumper(db.get(), ObservableQueries())();
}

struct Connection {
  std::unique_ptr<PeerSession> session;
  // The parts of split transactions received so far, as the session should
  // hold them: (start, end) -> (parts, part -> changes).
  std::map<std::pair<int64_t, int64_t>, std::pair<uint32_t, std::map<uint32_t, std::vector<Change>>>>
      parts;

  void Open(sqlite3* db, const SessionOptions& options) {
    session.reset();
    parts.clear();
    FUZZ_CHECK_OK(PeerSession::Open(db, options, &session));
    std::vector<Message> out;
    FUZZ_CHECK_OK(session->Start(&out));
    FUZZ_CHECK(out.size() == 1 && std::holds_alternative<HelloMsg>(out[0]), "Start() sends one hello");
    CheckOutgoing(out);
  }

  // The transaction `m` completes, if it completes one.
  bool Complete(const ChangesetMsg& m, std::vector<Change>* all) {
    if (m.parts <= 1) {
      *all = m.changes;
      return true;
    }
    auto& [n, got] = parts[{m.start, m.end}];
    if (n != m.parts) {
      n = m.parts;
      got.clear();
    }
    got[m.part] = m.changes;
    if (got.size() < n) return false;
    all->clear();
    for (auto& [i, changes] : got) all->insert(all->end(), changes.begin(), changes.end());
    parts.erase({m.start, m.end});
    return true;
  }
};

// Whether two of `changes` write the same column of the same row with the
// same clock (KnownBug::kBatchTieBreak).
bool TieInBatch(const std::vector<Change>& changes) {
  std::set<std::tuple<std::string, std::string, std::string, int64_t, int64_t>> cells;
  for (const Change& c : changes) {
    if (c.cid != "-1" && !cells.emplace(c.table, c.pk, c.cid, c.col_version, c.cl).second) return true;
  }
  return false;
}

int64_t PersistedCursor(sqlite3* db, const std::string& peer) {
  StmtPtr st;
  FUZZ_CHECK_OK(Prepare(db,
                        "SELECT version FROM crsql_tracked_peers WHERE site_id = ?1 AND tag = ?2 "
                        "AND event = 0",
                        &st));
  sqlite3_bind_blob(st.get(), 1, peer.data(), static_cast<int>(peer.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st.get(), 2, kSidecarTag);
  return sqlite3_step(st.get()) == SQLITE_ROW ? sqlite3_column_int64(st.get(), 0) : 0;
}

}  // namespace
}  // namespace crsync::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace crsync;
  using namespace crsync::fuzz;
  DbPtr db = NewDb(kLocal, kSchema);
  FUZZ_CHECK_OK(SchemaFingerprint(db.get(), &g_fingerprint));
  g_image = new std::vector<uint8_t>(Serialize(db.get()));
  MaybeWriteSeeds([](const std::string& dir) { return WriteHandshakeSeeds(dir, g_fingerprint); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crsync;
  using namespace crsync::fuzz;
  ByteReader in(data, size);
  uint8_t opt = in.Byte();
  SessionOptions options;
  options.max_changes_per_message = 1 + (opt & 3);
  options.window = 1 + ((opt >> 2) & 3);
  DbPtr db = OpenImage(*g_image);
  if (opt & 0x10) FUZZ_CHECK_OK(Exec(db.get(), "SELECT crsql_config_set('merge-equal-values', 1)"));
  Dumper dump_all(db.get());
  Dumper observable(db.get(), ObservableQueries());
  Dumper dump_but_sidecar(db.get(), AllButSidecarRowsQueries(db.get()));
  Connection conn;
  conn.Open(db.get(), options);

  for (int step = 0; step < 24 && !in.empty(); ++step) {
    unsigned kind = in.Pick(kKinds);
    Message msg;
    switch (kind) {
      case kHello: msg = GenHello(in); break;
      case kChangeset: msg = GenChangeset(in); break;
      case kAck: {
        int64_t up_to = Num(in);
        msg = AckMsg{up_to, in.Byte()};
        break;
      }
      case kError: {
        uint32_t code = in.Byte();
        msg = ErrorMsg{code, in.Str(16)};
        break;
      }
      case kRaw: {
        std::string payload = in.Bytes(in.Byte() * size_t{8});
        payload.resize(std::max<size_t>(8, (payload.size() + 7) / 8 * 8), '\0');
        std::vector<uint8_t> frame(kFrameHeaderSize);
        EncodeFrameHeader(kj::arrayPtr(reinterpret_cast<const kj::byte*>(payload.data()),
                                       payload.size()),
                          frame.data());
        frame.insert(frame.end(), payload.begin(), payload.end());
        if (!DecodeFrame(frame, &msg).ok()) {
          if (Verbose()) std::fprintf(stderr, "raw bytes that do not decode: reconnect\n");
          conn.Open(db.get(), options);  // the peer sent garbage: reconnect
          continue;
        }
        break;
      }
      default: {
        LocalWrite(db.get(), in);
        std::vector<Message> out;
        Status s = conn.session->Pump(&out);
        if (Verbose()) {
          std::fprintf(stderr, "local write; Pump: %s\n", s.ToString().c_str());
          for (const Message& m : out) std::fprintf(stderr, "   -> %s\n", RenderMessage(m).c_str());
        }
        FUZZ_CHECK(s.ok(), "Pump failed: " + s.ToString());
        CheckOutgoing(out);
        FUZZ_CHECK(sqlite3_get_autocommit(db.get()), "a transaction was left open");
        continue;
      }
    }
    if (kind != kRaw) {
      // As a peer's message arrives: encoded, framed, decoded. What our
      // encoder refuses no peer of ours sends (raw records cover the rest).
      Status es;
      std::vector<uint8_t> frame = EncodeFrame(msg, &es);
      if (!es.ok()) {
        if (Verbose()) std::fprintf(stderr, "not encodable: %s\n", RenderMessage(msg).c_str());
        continue;
      }
      Message decoded;
      if (!DecodeFrame(frame, &decoded).ok()) {
        if (Verbose()) std::fprintf(stderr, "%s does not decode: reconnect\n", RenderMessage(msg).c_str());
        conn.Open(db.get(), options);
        continue;
      }
      FUZZ_CHECK(RenderMessage(decoded) == RenderMessage(msg), "wire round trip changed a message");
    }

    const auto* cs = std::get_if<ChangesetMsg>(&msg);
    std::vector<uint8_t> image = cs ? Serialize(db.get()) : std::vector<uint8_t>();
    int64_t db_version = cs ? std::stoll(One(db.get(), "SELECT crsql_db_version()").substr(1)) : 0;
    std::string before = dump_all();
    std::string observable_before = cs ? observable() : "";
    // A resync error (we lost versions we announced) renews our restore
    // epoch, and a hello that reveals the peer's loss forgets its cursor and
    // records the resynchronization: sidecar rows are the one trace allowed.
    const auto* error = std::get_if<ErrorMsg>(&msg);
    const bool may_resync = std::holds_alternative<HelloMsg>(msg) ||
                            (error && error->code == ErrorMsg::kResync);
    std::string before_but_sidecar = may_resync ? dump_but_sidecar() : "";
    std::vector<Message> out;
    Status st = conn.session->OnMessage(msg, &out);
    if (Verbose()) {
      std::fprintf(stderr, "<- %s\n   %s\n", RenderMessage(msg).c_str(), st.ToString().c_str());
      for (const Message& m : out) std::fprintf(stderr, "   -> %s\n", RenderMessage(m).c_str());
    }
    CheckOutgoing(out);
    FUZZ_CHECK(sqlite3_get_autocommit(db.get()), "the session left a transaction open");
    std::string after = dump_all();
    if (!st.ok()) {
      if (may_resync) {
        FUZZ_CHECK(dump_but_sidecar() == before_but_sidecar,
                   "a failed message changed more than the sidecar's rows: " + st.ToString());
        after = before;
      }
      FUZZ_CHECK(after == before, "a failed message changed the database: " + st.ToString() + "\n" +
                                      RenderMessage(msg));
      if (cs && Tolerated(KnownBug::kStaleSiteCache)) {
        // A full rollback makes the engine reload its site ordinals.
        FUZZ_CHECK_OK(Exec(db.get(), "BEGIN IMMEDIATE; ROLLBACK"));
      }
      conn.Open(db.get(), options);
      continue;
    }
    if (Tolerated(KnownBug::kStaleSiteCache) && DanglingSiteIds(db.get())) return 0;
    if (cs) {
      std::vector<Change> all;
      bool complete = conn.Complete(*cs, &all);
      if (after != before && !(Tolerated(KnownBug::kBatchTieBreak) && TieInBatch(all))) {
        FUZZ_CHECK(complete, "an incomplete split transaction changed the database\n" +
                                 RenderMessage(msg));
        std::string want = ApplyBySql(image, db_version, all);
        std::string got = observable();
        FUZZ_CHECK(want.empty() || got == want, "the session's merge differs from INSERT INTO crsql_changes\n" +
                                    RenderMessage(msg) + "\nbefore:\n" + observable_before +
                                    "\nsession:\n" + got + "\nsql:\n" + want);
      }
    } else if (std::holds_alternative<AckMsg>(msg)) {
      // Only the send cursor (a crsql_tracked_peers row) may move.
      std::string peers = "== crsql_tracked_peers\n";
      auto strip = [&](const std::string& d) {
        size_t a = d.find(peers);
        FUZZ_CHECK(a != std::string::npos, "no crsql_tracked_peers in the dump");
        size_t b = d.find("== ", a + peers.size());
        return d.substr(0, a) + d.substr(b);
      };
      FUZZ_CHECK(strip(after) == strip(before), "an ack changed more than the send cursor");
    } else if (may_resync) {
      // An accepted hello may find the peer restored (a new epoch: its
      // cursor rewound, the echo recorded) or record the epoch it says.
      FUZZ_CHECK(dump_but_sidecar() == before_but_sidecar,
                 "a hello changed more than the sidecar's rows: " + RenderMessage(msg));
    } else {
      FUZZ_CHECK(after == before, "a message changed the database: " + RenderMessage(msg));
    }
    if (conn.session->ready()) {
      FUZZ_CHECK(PersistedCursor(db.get(), conn.session->peer_site()) ==
                     conn.session->receive_cursor(),
                 "persisted receive cursor differs from the session's");
    }
  }
  FUZZ_CHECK(One(db.get(), "PRAGMA integrity_check") == "T" + Hex("ok"), "integrity_check");
  // The clock the session announces (Pump declares versions up to it
  // covered) is the one the file implies, which other connections use.
  int64_t live = std::stoll(One(db.get(), "SELECT crsql_db_version()").substr(1));
  DbPtr fresh = OpenImage(Serialize(db.get()));
  int64_t reread = std::stoll(One(fresh.get(), "SELECT crsql_db_version()").substr(1));
  FUZZ_CHECK(reread == live,
             "crsql_db_version() is " + std::to_string(live) + " on the session's connection, " +
                 std::to_string(reread) + " on a fresh one");
  return 0;
}
