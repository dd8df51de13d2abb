// transport/messages.h — the sidecar protocol's messages as C++ values.
// transport/wire.capnp is their encoding on the wire; PeerSession speaks in
// these so its logic is tested without sockets or Cap'n Proto.
#ifndef CRSYNC_TRANSPORT_MESSAGES_H_
#define CRSYNC_TRANSPORT_MESSAGES_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "crsync/engine.h"

namespace crsync {

// 2: the schema fingerprint covers defaults and ignores the order of the
// columns outside the key (transport/schema_id.h). 3: it covers the
// columns' affinities too. Nodes on an older version compute another
// fingerprint for the same schema, so they are refused by version.
constexpr uint32_t kProtocolVersion = 3;

// First message each side sends on a connection.
struct HelloMsg {
  uint32_t protocol_version = kProtocolVersion;
  std::string site_id;        // the sender's 16-byte site id
  uint64_t fingerprint = 0;   // XXH3 of the sender's CRR schemas
  // What the sender already has: its receive cursor for each peer site it
  // syncs with (the recipient looks for its own id; absent = 0).
  std::vector<std::pair<std::string, int64_t>> have_from;
  // The sender's newest committed db_version (-1: not said). A recipient
  // holding a cursor for the sender past it knows the sender has lost
  // versions it announced: it was restored from a backup (PeerSession).
  int64_t current_version = -1;
  // The sender's restore epoch (0: never restored): it changes each time the
  // sender learns it lost announced versions, so that every peer — not only
  // the one that detected it — resynchronizes once (PeerSession). The high
  // 32 bits count generations; the low ones are random.
  int64_t restore_epoch = 0;
  // Drawn at random when the sender's sidecar starts (0: not said). One
  // site id at two instances at once is two live databases sharing the id:
  // the recipient refuses the second (SessionOptions::admit).
  uint64_t instance = 0;
  // The sender's heartbeat period in ms (0: it sends none): once it said
  // hello, it sends a no-op Ack whenever it sent nothing for this long, and
  // a recipient may close a connection silent for several periods.
  uint32_t heartbeat_ms = 0;
  // The sender answers a probe (AckMsg::probe) at once, with a no-op Ack:
  // a recipient may close a connection whose probe goes unanswered.
  bool answers_probes = false;
};

// A slice of the sender's change feed: every change the sender has with
// db_version in [start, end] that the recipient may need (gaps included).
// A transaction too large for one message is split into `parts` messages
// sharing start and end, numbered by `part`; the recipient applies it only
// when it holds every part, in any arrival order.
struct ChangesetMsg {
  std::string sender;
  int64_t start = 0;
  int64_t end = 0;
  uint32_t part = 0;
  uint32_t parts = 1;
  std::vector<Change> changes;
};

// The recipient committed everything up to `up_to` (sender's versions).
struct AckMsg {
  int64_t up_to = 0;
  uint32_t credits = 1;
  // Asks the recipient to say something now (HelloMsg::answers_probes).
  bool probe = false;
};

struct ErrorMsg {
  enum Code : uint32_t {
    kProtocol = 1,
    kSchemaMismatch = 2,
    kBadChangeset = 3,
    kInternal = 4,
    kResync = 5,  // the recipient lost history; the connection restarts to resynchronize
    // The recipient's restore epoch is new to the sender, which now
    // resynchronizes with it; the connection restarts.
    kRestoreSeen = 6,
    // The sender cannot send its next change (one too large for a frame):
    // it stops sending and tries again now and then, and the connection
    // stays open for the other direction. Not followed by a close.
    kCannotSend = 7,
  };
  uint32_t code = kProtocol;
  std::string message;
  // kResync: the highest restore epoch the sender has seen from the
  // recipient, which renews its own past it (PeerSession).
  int64_t restore_epoch = 0;
};

using Message = std::variant<HelloMsg, ChangesetMsg, AckMsg, ErrorMsg>;

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_MESSAGES_H_
