// tests/fuzz/fuzz_messages.h — protocol messages for the transport fuzz
// targets: exact renderings for comparisons and wire round trips.
#ifndef CRSYNC_TESTS_FUZZ_FUZZ_MESSAGES_H_
#define CRSYNC_TESTS_FUZZ_FUZZ_MESSAGES_H_

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "transport/codec.h"
#include "transport/frame.h"
#include "transport/messages.h"

namespace crsync::fuzz {

inline std::string RenderChange(const Change& c) {
  Value v;
  v.type = c.val_type;
  v.i = c.val_int;
  v.d = c.val_real;
  v.bytes = c.val_bytes;
  return "{" + Hex(c.table) + " " + Hex(c.pk) + " " + Hex(c.cid) + " " + Render(v) + " " +
         std::to_string(c.col_version) + " " + std::to_string(c.db_version) + " " + Hex(c.site_id) +
         " " + std::to_string(c.cl) + " " + std::to_string(c.seq) + "}";
}

// Every field of `m`, exactly (REALs by their bits).
inline std::string RenderMessage(const Message& m) {
  if (const auto* h = std::get_if<HelloMsg>(&m)) {
    std::string s = "hello v" + std::to_string(h->protocol_version) + " " + Hex(h->site_id) + " " +
                    std::to_string(h->fingerprint);
    for (const auto& [site, v] : h->have_from) s += " " + Hex(site) + "@" + std::to_string(v);
    s += " current " + std::to_string(h->current_version) + " epoch " + std::to_string(h->restore_epoch);
    return s;
  }
  if (const auto* c = std::get_if<ChangesetMsg>(&m)) {
    std::string s = "changeset " + Hex(c->sender) + " [" + std::to_string(c->start) + "," +
                    std::to_string(c->end) + "] " + std::to_string(c->part) + "/" +
                    std::to_string(c->parts);
    for (const Change& ch : c->changes) s += " " + RenderChange(ch);
    return s;
  }
  if (const auto* a = std::get_if<AckMsg>(&m)) {
    return "ack " + std::to_string(a->up_to) + " +" + std::to_string(a->credits);
  }
  const auto& e = std::get<ErrorMsg>(m);
  return "error " + std::to_string(e.code) + " " + Hex(e.message);
}

// The frame carrying `m`, or an empty vector if EncodeMessage refuses it.
inline std::vector<uint8_t> EncodeFrame(const Message& m, Status* status = nullptr) {
  capnp::MallocMessageBuilder builder;
  Status s = EncodeMessage(m, &builder);
  kj::Array<kj::byte> frame;
  if (s.ok()) s = FrameEncoder().Encode(builder, &frame);
  if (status) *status = s;
  if (!s.ok()) return {};
  return std::vector<uint8_t>(frame.begin(), frame.end());
}

// Decodes the single message in `frame` through a FrameReader.
inline Status DecodeFrame(const std::vector<uint8_t>& frame, Message* out) {
  int calls = 0;
  FrameReader reader(FrameReaderOptions(), [&](capnp::MessageReader& m) {
    ++calls;
    return DecodeMessage(m, out);
  });
  CRSYNC_RETURN_IF_ERROR(reader.Feed(frame.data(), frame.size()));
  if (calls != 1) return Status::Transport("expected one message, got " + std::to_string(calls));
  return Status::OK();
}

// A message we decoded must survive EncodeMessage + frame + decode
// unchanged: whatever a peer can send us, we can relay.
inline void CheckReencodes(const Message& m) {
  Status s;
  std::vector<uint8_t> frame = EncodeFrame(m, &s);
  if (!s.ok()) {
    // Only acceptable reason: aliased pointers made the decoded message
    // larger than a frame may be.
    FUZZ_CHECK(s.message().find("exceeds the limit") != std::string::npos,
               "cannot re-encode a decoded message: " + s.ToString() + "\n" + RenderMessage(m));
    return;
  }
  Message again;
  Status d = DecodeFrame(frame, &again);
  FUZZ_CHECK(d.ok(), "re-encoded message does not decode: " + d.ToString());
  FUZZ_CHECK(RenderMessage(again) == RenderMessage(m),
             "message changed by a round trip:\n" + RenderMessage(m) + "\n" + RenderMessage(again));
}

}  // namespace crsync::fuzz

#endif  // CRSYNC_TESTS_FUZZ_FUZZ_MESSAGES_H_
