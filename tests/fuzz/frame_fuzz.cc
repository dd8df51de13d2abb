// frame_fuzz / frame_payload_fuzz: FrameReader (transport/frame.h) and the
// Cap'n Proto message decoder (transport/codec.h) on arbitrary bytes.
//
// frame_fuzz input:  [flags] [n] [n chunk sizes] [byte stream ...]
//   The stream is fed to a FrameReader in chunks of the given sizes (cycled;
//   0 = an empty Feed, 255 = the rest); every delivered message goes through
//   DecodeMessage.
// frame_payload_fuzz input (built with -DCRSYNC_FUZZ_WRAP_PAYLOAD):
//   [flags] [payload ...]
//   The payload (zero-padded to whole words) is wrapped in a frame with a
//   correct header, so the checksum passes and the Cap'n Proto decoding is
//   what gets exercised; flags may send it twice and split the stream.
//
// Invariants:
//  * no crash, no exception escapes Feed() or DecodeMessage();
//  * what the reader delivers and how it ends depend only on the bytes, not
//    on how they are chunked (compared with one single Feed);
//  * a failed reader keeps returning the same status, consumes nothing and
//    holds no bytes;
//  * DecodeChangesetMessage agrees with DecodeMessage on changesets;
//  * a message that decodes re-encodes and decodes to the same message.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include "tests/change_util.h"
#include "tests/fuzz/fuzz_messages.h"
#include "transport/wire.capnp.h"

#ifndef CRSYNC_FUZZ_WRAP_PAYLOAD
#define CRSYNC_FUZZ_WRAP_PAYLOAD 0
#endif

namespace crsync::fuzz {
namespace {

struct RunResult {
  std::vector<std::string> delivered;  // one rendering per callback call
  std::string status;
  size_t buffered = 0;
};

// Decodes one delivered message both ways and checks they agree.
std::string Decode(capnp::MessageReader& reader) {
  Message msg;
  Status s = DecodeMessage(reader, &msg);
  DecodedChangeset cs;
  Status c = DecodeChangesetMessage(reader, &cs);
  if (!s.ok()) {
    FUZZ_CHECK(s.code() == Status::Code::kCorruption, s.ToString());
    FUZZ_CHECK(!c.ok(), "DecodeChangesetMessage accepted what DecodeMessage rejects: " + s.ToString());
    return "rejected: " + s.message();
  }
  // Both decoders draw on the reader's one traversal budget: with a tight
  // limit the second may run out where the first did not.
  bool exhausted = c.message().find("traversal limit") != std::string::npos;
  const auto* m = std::get_if<ChangesetMsg>(&msg);
  FUZZ_CHECK(exhausted || c.ok() == (m != nullptr), "DecodeChangesetMessage disagrees: " + c.ToString());
  if (m && c.ok()) {
    ChangesetMsg as{cs.sender_site_id, cs.start_version, cs.end_version, cs.part, cs.parts,
                    cs.changes};
    FUZZ_CHECK(RenderMessage(as) == RenderMessage(msg), "the two changeset decoders differ");
  }
  CheckReencodes(msg);
  return RenderMessage(msg);
}

FrameReaderOptions OptionsFor(uint8_t flags) {
  FrameReaderOptions o;
  if (flags & 2) {  // tight limits
    o.max_payload_bytes = 8u << ((flags >> 4) & 7);  // 8 .. 1024 bytes
    o.traversal_limit_words = uint64_t{1} << (((flags >> 2) & 3) * 4);  // 1 .. 4096 words
    o.nesting_limit = 1 + ((flags >> 5) & 3);
  }
  return o;
}

// Feeds `stream` in the chunks `sizes` describes (empty: all at once).
RunResult Run(const std::string& stream, const std::string& sizes, uint8_t flags) {
  RunResult r;
  bool strict = flags & 1;  // the callback fails the reader on a bad message
  FrameReader reader(OptionsFor(flags), [&](capnp::MessageReader& m) {
    std::string d = Decode(m);
    r.delivered.push_back(d);
    if (strict && d.rfind("rejected: ", 0) == 0) return Status::Corruption(d);
    return Status::OK();
  });
  const auto* p = reinterpret_cast<const uint8_t*>(stream.data());
  size_t pos = 0, k = 0, empty_feeds = 0;
  Status s;
  while (pos < stream.size()) {
    size_t n = stream.size() - pos;
    if (!sizes.empty()) {
      auto c = static_cast<uint8_t>(sizes[k++ % sizes.size()]);
      if (c == 0 && ++empty_feeds > 64) c = 255;  // guarantee progress
      if (c != 255) n = std::min<size_t>(n, c);
    }
    size_t before = reader.buffered_bytes();
    s = reader.Feed(p + pos, n);
    pos += n;
    if (!s.ok()) {
      FUZZ_CHECK(reader.status().ToString() == s.ToString(), "status() differs from Feed()");
      FUZZ_CHECK(reader.buffered_bytes() == 0, "a failed reader holds bytes");
      Status again = reader.Feed(p, stream.size());
      FUZZ_CHECK(again.ToString() == s.ToString(), "a failed reader changed its status");
      FUZZ_CHECK(reader.buffered_bytes() == 0, "a failed reader consumed bytes");
      break;
    }
    FUZZ_CHECK(reader.buffered_bytes() <= before + n, "buffered more than it was given");
  }
  r.status = s.ToString();
  r.buffered = reader.buffered_bytes();
  return r;
}

void Check(const std::string& stream, const std::string& sizes, uint8_t flags) {
  RunResult chunked = Run(stream, sizes, flags);
  if (sizes.empty()) return;
  RunResult whole = Run(stream, "", flags);
  FUZZ_CHECK(chunked.status == whole.status,
             "status depends on chunking: " + chunked.status + " vs " + whole.status);
  FUZZ_CHECK(chunked.delivered == whole.delivered, "messages depend on chunking");
  FUZZ_CHECK(chunked.buffered == whole.buffered, "buffered bytes depend on chunking");
}

std::string Frame(const std::string& payload) {
  std::string out(kFrameHeaderSize, '\0');
  EncodeFrameHeader(kj::arrayPtr(reinterpret_cast<const kj::byte*>(payload.data()), payload.size()),
                    reinterpret_cast<kj::byte*>(out.data()));
  return out + payload;
}

// The payload bytes (a flat message) of `m`.
std::string Payload(const Message& m) {
  std::vector<uint8_t> frame = EncodeFrame(m);
  FUZZ_CHECK(!frame.empty(), "cannot encode a seed message");
  return std::string(frame.begin() + kFrameHeaderSize, frame.end());
}

std::vector<std::pair<std::string, Message>> SeedMessages() {
  const std::string a = Site('\x0a'), b = Site('\x0b');
  Change c = TextChange("items", SmallIntPk(1), "name", "x", 1, 3, b);
  std::vector<Change> changes;
  for (int type : {SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB}) {
    Change x = c;
    x.val_type = type;
    x.val_int = -7;
    x.val_real = 2.5;
    x.val_bytes = type == SQLITE_BLOB ? std::string("\x00\xff", 2) : "t";
    x.seq = static_cast<int64_t>(changes.size());
    changes.push_back(x);
  }
  Change sentinel = c;
  sentinel.cid = "-1";
  sentinel.val_type = SQLITE_NULL;
  sentinel.db_version = 5;
  return {
      {"hello", HelloMsg{kProtocolVersion, a, 0x1234567890abcdefULL, {{b, 5}}}},
      {"hello_bare", HelloMsg{kProtocolVersion, b, 0, {}}},
      {"changeset", ChangesetMsg{a, 1, 3, 0, 1, {c}}},
      {"changeset_types", ChangesetMsg{a, 2, 4, 0, 1, changes}},
      {"changeset_split", ChangesetMsg{a, 5, 5, 1, 2, {sentinel}}},
      {"changeset_empty", ChangesetMsg{a, 1, 9, 0, 1, {}}},
      {"ack", AckMsg{7, 2}},
      {"error", ErrorMsg{ErrorMsg::kSchemaMismatch, "schemas differ"}},
  };
}

bool WriteSeeds(const std::string& dir) {
  bool ok = true;
  auto msgs = SeedMessages();
#if CRSYNC_FUZZ_WRAP_PAYLOAD
  for (const auto& [name, m] : msgs) {
    ok &= WriteFile(dir, name, std::string(1, '\0') + Payload(m));
    ok &= WriteFile(dir, name + "_twice_split", std::string(1, '\x5c') + Payload(m));
  }
  ok &= WriteFile(dir, "tight_limits", std::string(1, '\x2a') + Payload(msgs[3].second));
  // A root pointer to a struct of the wrong shape, and a far pointer.
  ok &= WriteFile(dir, "odd_root", std::string("\0\0\0\0\0\0\0\0\0\x04\0\0\0\0\x01\0", 16));
  ok &= WriteFile(dir, "far_root", std::string("\0\0\0\0\0\0\0\0\0\x02\0\0\0\0\0\0", 16));
#else
  std::string all;
  for (const auto& [name, m] : msgs) {
    std::string frame = Frame(Payload(m));
    all += frame;
    ok &= WriteFile(dir, name, std::string("\0\0", 2) + frame);
  }
  ok &= WriteFile(dir, "all_at_once", std::string("\0\0", 2) + all);
  ok &= WriteFile(dir, "all_bytewise", std::string("\0\x01\x01", 3) + all);
  ok &= WriteFile(dir, "all_chunked", std::string("\x01\x03\x05\x0d\x00", 5) + all);
  std::string bad = Frame(Payload(msgs[0].second));
  bad[5] ^= 1;  // checksum mismatch
  ok &= WriteFile(dir, "bad_checksum", std::string("\0\x01\x07", 3) + bad);
  ok &= WriteFile(dir, "huge_length", std::string("\0\0\xf8\xff\xff\xff", 6) + std::string(8, '\0'));
  ok &= WriteFile(dir, "odd_length", std::string("\0\0\x09\0\0\0", 6) + std::string(8, '\0'));
  ok &= WriteFile(dir, "partial", std::string("\0\x01\x04", 3) + all.substr(0, all.size() - 3));
  ok &= WriteFile(dir, "tight_limits", std::string("\x22\x01\x10", 3) + all);
#endif
  return ok;
}

}  // namespace
}  // namespace crsync::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  crsync::fuzz::MaybeWriteSeeds(crsync::fuzz::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crsync;
  using namespace crsync::fuzz;
  ByteReader in(data, size);
  uint8_t flags = in.Byte();
#if CRSYNC_FUZZ_WRAP_PAYLOAD
  std::string payload = in.Bytes(in.remaining());
  payload.resize(std::max<size_t>(8, (payload.size() + 7) / 8 * 8), '\0');
  // Straight through the decoder as well, without the reader's validation
  // pass: DecodeMessage alone must contain every exception.
  {
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(payload.size() / 8);
    std::memcpy(words.begin(), payload.data(), payload.size());
    capnp::ReaderOptions options;
    options.traversalLimitInWords = 1 << 16;
    kj::Maybe<kj::Own<capnp::FlatArrayMessageReader>> reader;
    try {
      reader = kj::heap<capnp::FlatArrayMessageReader>(words.asPtr(), options);
    } catch (const kj::Exception&) {
      // a bad segment table: the frame reader reports it below
    }
    KJ_IF_MAYBE(r, reader) {
      Message m;
      Status s = DecodeMessage(**r, &m);
      FUZZ_CHECK(s.ok() || s.code() == Status::Code::kCorruption, s.ToString());
    }
  }
  std::string stream = Frame(payload);
  if (flags & 4) stream += stream;  // two frames
  std::string sizes;
  if (flags & 8) sizes = std::string(1, static_cast<char>(1 + (flags >> 4)));
  Check(stream, sizes, flags & 0xf3);
#else
  std::string sizes = in.Bytes(in.Byte() % 8);
  std::string stream = in.Bytes(in.remaining());
  Check(stream, sizes, flags);
#endif
  return 0;
}
