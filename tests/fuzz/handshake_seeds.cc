// tests/fuzz/handshake_seeds.cc — handshake_fuzz's seed corpus: inputs
// in its format (handshake_input.h) that reach the interesting paths at
// once (a hello then changesets and acks, split transactions, a restored
// peer, raw wire bytes).
#include <vector>

#include "tests/fuzz/fuzz_messages.h"
#include "tests/fuzz/handshake_input.h"
#include "transport/messages.h"

namespace crsync::fuzz {
namespace {

void WSite(ByteWriter& w, unsigned k) { w.Byte(k); }

// A hello; `restored` says the sender's current version and, with a
// generation, its restore epoch (generation << 32 | 1).
struct Restored {
  int64_t current_version = -1;
  int generation = -1;  // -1: epoch 0, unsaid
};

void WHello(ByteWriter& w, unsigned site, const std::vector<std::pair<unsigned, int64_t>>& have,
            bool wrong_fingerprint = false, const Restored* restored = nullptr) {
  w.Byte(kHello).Byte(site | (wrong_fingerprint ? 0x0c : 0) | (restored ? 0x10 : 0) |
                      static_cast<unsigned>(have.size() << 5));
  if (wrong_fingerprint) w.I64(42);
  if (restored) {
    const bool epoch = restored->generation >= 0;
    w.Byte((restored->current_version >= 0 ? 1 : 0) | (epoch ? 2 : 0) |
           (epoch ? static_cast<unsigned>(restored->generation) << 2 : 0));
    if (restored->current_version >= 0) WNum(w, restored->current_version);
    if (epoch) w.Byte(0);
  }
  for (auto [s, v] : have) {
    WSite(w, s);
    WNum(w, v);
  }
}

// A change in the usual (valid) form GenChange reads.
struct WChange {
  bool tags;                  // table tags, else items
  std::vector<unsigned> key;  // KeyValue bytes: items id = b % 10; tags 'a' + b % 3, b % 3
  unsigned cid;               // index into kTagCols / kItemCols
  Value val;
  int64_t col_version;        // 1..4
  int64_t db_version;         // within the changeset's range
  unsigned site;              // MostlyPeer pick: 0 peer, 5 other, 6 ours
  unsigned cl;                // 0: the usual cl, 3: cl 3 for a column
  int64_t seq;                // 0..7
};

void WChangeset(ByteWriter& w, int64_t start, int64_t end, unsigned part, unsigned parts,
                const std::vector<WChange>& changes) {
  w.Byte(kChangeset).Byte(0);
  w.Byte(static_cast<unsigned>(start - 1)).Byte(static_cast<unsigned>(end - start));
  w.Byte(parts == 1 ? 0 : 0xc0 | part | (parts << 2));
  w.Byte(static_cast<unsigned>(changes.size()));
  for (const WChange& c : changes) {
    w.Byte(c.tags ? 5 : 0).Byte(0);
    for (unsigned k : c.key) w.Byte(k);
    w.Byte(c.cid);
    WValue(w, c.val);
    w.Byte(static_cast<unsigned>(c.col_version - 1));
    w.Byte(static_cast<unsigned>(c.db_version - start));
    w.Byte(c.site).Byte(c.cl).Byte(static_cast<unsigned>(c.seq));
  }
}

}  // namespace

bool WriteHandshakeSeeds(const std::string& dir, uint64_t fingerprint) {
  auto item = [](unsigned id, unsigned cid, Value v, int64_t dbv, int64_t seq = 0) {
    return WChange{false, {id}, cid, v, 1, dbv, 0, 0, seq};
  };
  bool ok = true;
  {  // hello, one changeset, ack
    ByteWriter w;
    w.Byte(0x05);
    WHello(w, 0, {{2, 0}});
    WChangeset(w, 1, 2, 0, 1, {item(7, 1, Value::Text("seven"), 1), item(7, 2, Value::Int(4), 2, 1)});
    w.Byte(kAck);
    WNum(w, 3);
    w.Byte(1);
    ok &= WriteFile(dir, "hello_changeset_ack", w.str());
  }
  {  // a transaction split in two parts, out of order, then a duplicate
    ByteWriter w;
    w.Byte(0x00);
    WHello(w, 0, {});
    WChangeset(w, 1, 1, 1, 2, {item(8, 2, Value::Int(5), 1, 1)});
    WChangeset(w, 1, 1, 0, 2, {item(8, 1, Value::Text("eight"), 1)});
    WChangeset(w, 1, 1, 0, 1, {item(8, 1, Value::Text("dup"), 1)});
    ok &= WriteFile(dir, "split_transaction", w.str());
  }
  {  // a delete (sentinel, even cl) relayed from a third site, and tags
    ByteWriter w;
    w.Byte(0x0a);
    WHello(w, 0, {{2, 1}, {1, 0}});
    WChangeset(w, 3, 5, 0, 1,
               {WChange{false, {2}, 0, Value::Null(), 2, 4, 5, 0, 0},
                WChange{true, {1, 2}, 1, Value::Blob("\x01"), 1, 5, 0, 3, 1}});
    ok &= WriteFile(dir, "relayed_delete_and_tags", w.str());
  }
  {  // a changeset that violates the CHECK constraint: rejected, reconnect
    ByteWriter w;
    w.Byte(0x00);
    WHello(w, 0, {});
    WChangeset(w, 1, 1, 0, 1, {item(9, 2, Value::Int(-1), 1)});
    WHello(w, 0, {});
    WChangeset(w, 1, 1, 0, 1, {item(9, 2, Value::Int(1), 1)});
    ok &= WriteFile(dir, "check_violation_then_reconnect", w.str());
  }
  {  // protocol errors: message before hello, wrong fingerprint, second hello
    ByteWriter w;
    w.Byte(0x00);
    w.Byte(kAck);
    WNum(w, 0);
    w.Byte(1);
    WHello(w, 0, {}, /*wrong_fingerprint=*/true);
    WHello(w, 2, {});
    WHello(w, 0, {});
    WHello(w, 0, {});
    w.Byte(kError).Byte(3).Str("bye");
    ok &= WriteFile(dir, "protocol_errors", w.str());
  }
  {  // local writes pumped to the peer, acked
    ByteWriter w;
    w.Byte(0x00);
    WHello(w, 0, {});
    w.Byte(kLocalWrite).Byte(3).Byte(0).Str("three");
    WValue(w, Value::Int(3));
    w.Byte(kLocalWrite).Byte(1).Byte(2);
    w.Byte(kAck);
    WNum(w, 2);
    w.Byte(8);
    w.Byte(kAck);
    WNum(w, 4);
    w.Byte(8);
    ok &= WriteFile(dir, "local_writes_and_acks", w.str());
  }
  {  // the peer restored from a backup says a version below our cursor for
     // it (resync error 5, a reconnect), renews its epoch and sends again
    ByteWriter w;
    w.Byte(0x00);
    WHello(w, 0, {});
    WChangeset(w, 1, 2, 0, 1, {item(7, 1, Value::Text("seven"), 1), item(7, 2, Value::Int(4), 2, 1)});
    w.Byte(kError).Byte(3).Str("bye");
    Restored lost{1, -1}, renewed{1, 1};
    WHello(w, 0, {{2, 0}}, false, &lost);
    WHello(w, 0, {{2, 0}}, false, &renewed);
    WChangeset(w, 2, 2, 0, 1, {item(7, 2, Value::Int(5), 2, 1)});
    ok &= WriteFile(dir, "restored_peer_resyncs", w.str());
  }
  {  // raw wire bytes: a hello and a changeset as a peer would frame them
    ByteWriter w;
    w.Byte(0x00);
    for (const Message& m :
         {Message(HelloMsg{kProtocolVersion, kPeer, fingerprint, {}}),
          Message(ChangesetMsg{kPeer, 1, 1, 0, 1, {}})}) {
      std::vector<uint8_t> frame = EncodeFrame(m);
      std::string payload(frame.begin() + kFrameHeaderSize, frame.end());
      w.Byte(kRaw).Byte(static_cast<unsigned>(payload.size() / 8)).Bytes(payload);
    }
    ok &= WriteFile(dir, "raw_wire", w.str());
  }
  return ok;
}

}  // namespace crsync::fuzz
