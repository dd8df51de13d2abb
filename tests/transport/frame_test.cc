#include "transport/frame.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/test_util.h"
#include "transport/wire.capnp.h"

namespace crsync {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Bytes = std::vector<uint8_t>;

// An Error message is the simplest payload with a variable-size field.
Bytes ErrorFrame(uint32_t code, const std::string& text,
                 const FrameEncoder& encoder = FrameEncoder()) {
  capnp::MallocMessageBuilder message;
  auto error = message.initRoot<wire::Message>().initError();
  error.setCode(code);
  error.setMessage(text);
  kj::Array<kj::byte> frame;
  EXPECT_OK(encoder.Encode(message, &frame));
  return Bytes(frame.begin(), frame.end());
}

// The payload of `frame` (everything after the header).
Bytes PayloadOf(const Bytes& frame) { return Bytes(frame.begin() + kFrameHeaderSize, frame.end()); }

// A frame around arbitrary payload bytes, with a correct header.
Bytes FrameAround(const Bytes& payload) {
  Bytes frame(kFrameHeaderSize);
  EncodeFrameHeader(kj::arrayPtr(payload.data(), payload.size()), frame.data());
  frame.insert(frame.end(), payload.begin(), payload.end());
  return frame;
}

// A header announcing `length` bytes, checksum irrelevant.
Bytes HeaderWithLength(uint32_t length) {
  Bytes header(kFrameHeaderSize, 0);
  for (int i = 0; i < 4; ++i) header[i] = static_cast<uint8_t>(length >> (8 * i));
  return header;
}

void Append(Bytes* out, const Bytes& more) { out->insert(out->end(), more.begin(), more.end()); }

void PutWord(Bytes* out, uint64_t word) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<uint8_t>(word >> (8 * i)));
}

struct Received {
  uint32_t code;
  std::string text;
  bool operator==(const Received&) const = default;
};

void PrintTo(const Received& r, std::ostream* os) {
  *os << "{" << r.code << ", " << r.text.size() << " bytes}";
}

// A FrameReader that records every Error message it decodes.
class Collector {
 public:
  explicit Collector(FrameReaderOptions options = FrameReaderOptions())
      : reader_(options, [this](capnp::MessageReader& message) {
          ++calls_;
          auto root = message.getRoot<wire::Message>();
          if (!root.isError()) return Status::InvalidArgument("not an error message");
          auto error = root.getError();
          received_.push_back({error.getCode(), error.getMessage().cStr()});
          return Status::OK();
        }) {}

  Status Feed(const Bytes& bytes) { return reader_.Feed(bytes.data(), bytes.size()); }
  // Feeds `bytes` in chunks of `chunk` bytes (the last may be shorter).
  Status FeedInChunks(const Bytes& bytes, size_t chunk) {
    for (size_t at = 0; at < bytes.size(); at += chunk) {
      Status s = reader_.Feed(bytes.data() + at, std::min(chunk, bytes.size() - at));
      if (!s.ok()) return s;
    }
    return Status::OK();
  }

  FrameReader& reader() { return reader_; }
  const std::vector<Received>& received() const { return received_; }
  int calls() const { return calls_; }

 private:
  std::vector<Received> received_;
  int calls_ = 0;
  FrameReader reader_;
};

TEST(FrameEncoderTest, HeaderIsLittleEndianLengthThenXxh3OfPayload) {
  Bytes frame = ErrorFrame(7, "hello");
  ASSERT_GT(frame.size(), kFrameHeaderSize);
  Bytes payload = PayloadOf(frame);
  EXPECT_EQ(payload.size() % 8, 0u);
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) length |= static_cast<uint32_t>(frame[i]) << (8 * i);
  EXPECT_EQ(length, payload.size());
  uint64_t checksum = 0;
  for (int i = 0; i < 8; ++i) checksum |= static_cast<uint64_t>(frame[4 + i]) << (8 * i);
  EXPECT_EQ(checksum, XXH3_64bits(payload.data(), payload.size()));

  // The payload is a plain flat Cap'n Proto message.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(payload.size() / 8);
  std::memcpy(words.begin(), payload.data(), payload.size());
  capnp::FlatArrayMessageReader reader(words);
  EXPECT_EQ(reader.getRoot<wire::Message>().getError().getCode(), 7u);
  EXPECT_STREQ(reader.getRoot<wire::Message>().getError().getMessage().cStr(), "hello");
}

TEST(FrameEncoderTest, MessageOverTheLimitIsInvalidArgument) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Message>().initError().setMessage(std::string(2000, 'x'));
  kj::Array<kj::byte> frame;
  Status s = FrameEncoder(1024).Encode(message, &frame);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("exceeds the limit of 1024 bytes"));
  EXPECT_EQ(frame.size(), 0u);
}

TEST(FrameEncoderTest, EncodePayloadRejectsEmptyAndUnalignedPayloads) {
  FrameEncoder encoder;
  kj::Array<kj::byte> frame;
  kj::byte bytes[12] = {};
  EXPECT_EQ(encoder.EncodePayload(kj::arrayPtr(bytes, 0), &frame).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(encoder.EncodePayload(kj::arrayPtr(bytes, 12), &frame).code(),
            Status::Code::kInvalidArgument);
  ASSERT_OK(encoder.EncodePayload(kj::arrayPtr(bytes, 8), &frame));
  EXPECT_EQ(frame.size(), kFrameHeaderSize + 8);
}

TEST(FrameReaderTest, DeliversAFrameFedWhole) {
  Collector c;
  ASSERT_OK(c.Feed(ErrorFrame(1, "one")));
  EXPECT_THAT(c.received(), ElementsAre(Received{1, "one"}));
  EXPECT_EQ(c.reader().buffered_bytes(), 0u);
}

TEST(FrameReaderTest, DeliversSeveralFramesFromOneChunkInOrder) {
  Bytes stream;
  Append(&stream, ErrorFrame(1, "one"));
  Append(&stream, ErrorFrame(2, ""));
  Append(&stream, ErrorFrame(3, std::string(300, 'c')));
  Collector c;
  ASSERT_OK(c.Feed(stream));
  EXPECT_THAT(c.received(),
              ElementsAre(Received{1, "one"}, Received{2, ""}, Received{3, std::string(300, 'c')}));
}

TEST(FrameReaderTest, ReassemblesFramesFedOneByteAtATime) {
  Bytes stream = ErrorFrame(1, "first");
  const size_t first_size = stream.size();
  Append(&stream, ErrorFrame(2, "second"));
  Collector c;
  for (size_t i = 0; i < stream.size(); ++i) {
    ASSERT_OK(c.reader().Feed(&stream[i], 1)) << "at byte " << i;
    // Each frame is delivered by its last byte, not before.
    int want = i + 1 < first_size ? 0 : (i + 1 < stream.size() ? 1 : 2);
    ASSERT_EQ(c.calls(), want) << "at byte " << i;
  }
  EXPECT_THAT(c.received(), ElementsAre(Received{1, "first"}, Received{2, "second"}));
}

TEST(FrameReaderTest, ReassemblesMessagesSplitAcrossOddSizedChunks) {
  // A frame larger than the buffer the reader keeps between frames, between
  // small ones, so both reuse and release of the payload buffer happen.
  const std::string big(200000, 'b');
  Bytes stream;
  Append(&stream, ErrorFrame(1, "a"));
  Append(&stream, ErrorFrame(2, big));
  Append(&stream, ErrorFrame(3, "ccc"));
  Append(&stream, ErrorFrame(4, std::string(77, 'd')));
  for (size_t chunk : {2u, 3u, 5u, 7u, 11u, 13u, 4095u, 65537u}) {
    Collector c;
    ASSERT_OK(c.FeedInChunks(stream, chunk)) << "chunk " << chunk;
    EXPECT_THAT(c.received(), ElementsAre(Received{1, "a"}, Received{2, big}, Received{3, "ccc"},
                                          Received{4, std::string(77, 'd')}))
        << "chunk " << chunk;
    EXPECT_EQ(c.reader().buffered_bytes(), 0u);
  }
}

TEST(FrameReaderTest, TruncatedHeaderAndPayloadWaitForMoreBytes) {
  Bytes frame = ErrorFrame(9, "truncated");
  Collector c;
  ASSERT_OK(c.reader().Feed(frame.data(), 5));  // part of the header
  EXPECT_EQ(c.reader().buffered_bytes(), 5u);
  ASSERT_OK(c.reader().Feed(frame.data() + 5, frame.size() - 6));  // all but one byte
  EXPECT_EQ(c.calls(), 0);
  EXPECT_EQ(c.reader().buffered_bytes(), frame.size() - 1);
  ASSERT_OK(c.reader().Feed(frame.data() + frame.size() - 1, 1));
  EXPECT_THAT(c.received(), ElementsAre(Received{9, "truncated"}));
  EXPECT_EQ(c.reader().buffered_bytes(), 0u);
}

TEST(FrameReaderTest, EmptyFeedIsANoOp) {
  Collector c;
  ASSERT_OK(c.reader().Feed(nullptr, 0));
  EXPECT_EQ(c.calls(), 0);
}

TEST(FrameReaderTest, CorruptedPayloadByteIsAChecksumError) {
  Bytes frame = ErrorFrame(1, "payload to corrupt");
  for (size_t at = kFrameHeaderSize; at < frame.size(); ++at) {
    Bytes bad = frame;
    bad[at] ^= 0x01;
    Collector c;
    Status s = c.Feed(bad);
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << "byte " << at << ": " << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("checksum mismatch"));
    EXPECT_EQ(c.calls(), 0);
  }
}

TEST(FrameReaderTest, CorruptedChecksumFieldIsAChecksumError) {
  Bytes frame = ErrorFrame(1, "x");
  frame[4 + 7] ^= 0x80;
  Collector c;
  Status s = c.Feed(frame);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("checksum mismatch"));
}

TEST(FrameReaderTest, OversizedLengthIsRejectedFromTheHeaderAlone) {
  FrameReaderOptions options;
  options.max_payload_bytes = 1024;
  Collector c(options);
  // Only the header is fed: the error comes before any payload byte exists.
  Status s = c.Feed(HeaderWithLength(1032));
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("1032 bytes exceeds the limit of 1024 bytes"));
  EXPECT_EQ(c.reader().buffered_bytes(), 0u);
}

TEST(FrameReaderTest, HugeLengthIsRejectedWithoutAllocating) {
  Collector c;  // default limit, 16 MiB
  Status s = c.Feed(HeaderWithLength(0xFFFFFFF8u));
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("4294967288 bytes exceeds the limit"));
}

TEST(FrameReaderTest, FrameAtExactlyTheLimitIsAccepted) {
  Bytes frame = ErrorFrame(5, std::string(100, 'e'));
  FrameReaderOptions options;
  options.max_payload_bytes = frame.size() - kFrameHeaderSize;
  Collector c(options);
  ASSERT_OK(c.Feed(frame));
  EXPECT_EQ(c.calls(), 1);
}

TEST(FrameReaderTest, ZeroAndUnalignedLengthsAreCorruption) {
  {
    Collector c;
    Status s = c.Feed(HeaderWithLength(0));
    EXPECT_EQ(s.code(), Status::Code::kCorruption);
    EXPECT_THAT(s.message(), HasSubstr("empty"));
  }
  {
    Collector c;
    Status s = c.Feed(HeaderWithLength(13));
    EXPECT_EQ(s.code(), Status::Code::kCorruption);
    EXPECT_THAT(s.message(), HasSubstr("not a multiple of 8"));
  }
}

// Payloads with a correct checksum that are not Cap'n Proto messages.
TEST(FrameReaderTest, ChecksumValidGarbageIsCorruptionNotACrash) {
  std::vector<std::pair<std::string, Bytes>> cases;
  {
    Bytes p;
    PutWord(&p, ~uint64_t{0});  // 2^32 segments
    PutWord(&p, 0);
    cases.emplace_back("absurd segment count", p);
  }
  {
    Bytes p;
    PutWord(&p, uint64_t{1000} << 32);  // one segment of 1000 words, 1 present
    PutWord(&p, 0);
    cases.emplace_back("segment larger than the payload", p);
  }
  {
    Bytes p;
    PutWord(&p, uint64_t{1} << 32);  // one segment of 1 word
    // Root struct pointer 1000 words past the segment's end.
    PutWord(&p, (uint64_t{1000} << 2) | (uint64_t{1} << 32));
    cases.emplace_back("root pointer out of bounds", p);
  }
  {
    Bytes p;
    PutWord(&p, uint64_t{2} << 32);  // one segment of 2 words
    PutWord(&p, uint64_t{1} << 48);  // root: struct right after, 0 data, 1 pointer
    // That struct's pointer points at itself: infinite nesting.
    PutWord(&p, (uint64_t{1} << 48) | 0xFFFFFFFCu);
    cases.emplace_back("self-referencing struct", p);
  }
  {
    Bytes p;
    PutWord(&p, uint64_t{1} << 32);
    PutWord(&p, 3 | (uint64_t{7} << 32));  // "capability" pointer in a flat message
    cases.emplace_back("capability root", p);
  }
  std::mt19937_64 rng(20261125);
  for (int i = 0; i < 200; ++i) {
    Bytes p;
    size_t words = 1 + rng() % 32;
    for (size_t w = 0; w < words; ++w) PutWord(&p, rng());
    cases.emplace_back("random #" + std::to_string(i), p);
  }

  for (const auto& [name, payload] : cases) {
    Collector c;
    Status s = c.Feed(FrameAround(payload));
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << name << ": " << s.ToString();
    EXPECT_EQ(c.calls(), 0) << name;
  }
}

TEST(FrameReaderTest, TrailingBytesAfterTheMessageAreCorruption) {
  Bytes payload = PayloadOf(ErrorFrame(1, "x"));
  PutWord(&payload, 0);
  Collector c;
  Status s = c.Feed(FrameAround(payload));
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("8 trailing bytes"));
  EXPECT_EQ(c.calls(), 0);
}

TEST(FrameReaderTest, MalformedFieldReadByTheCallbackIsCorruption) {
  // Text without its NUL terminator passes structural validation; reading it
  // throws inside the callback.
  Bytes payload = PayloadOf(ErrorFrame(1, "abcdefg"));
  const char needle[] = "abcdefg";  // 8 bytes with the NUL
  auto it = std::search(payload.begin(), payload.end(), needle, needle + sizeof needle);
  ASSERT_NE(it, payload.end());
  *(it + 7) = 'h';
  Collector c;
  Status s = c.Feed(FrameAround(payload));
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("malformed message"));
}

TEST(FrameReaderTest, TooDeepNestingIsCorruption) {
  // Message -> Error is two levels deep; allow one.
  FrameReaderOptions options;
  options.nesting_limit = 1;
  Collector c(options);
  Status s = c.Feed(ErrorFrame(1, "deep"));
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_EQ(c.calls(), 0);
}

TEST(FrameReaderTest, TraversalLimitIsEnforced) {
  FrameReaderOptions options;
  options.traversal_limit_words = 4;
  Collector c(options);
  Status s = c.Feed(ErrorFrame(1, std::string(200, 't')));
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_EQ(c.calls(), 0);
}

// A small frame whose pointers all alias one blob would decode into many
// times its size: refused by a traversal limit of three times the frame's own
// size, well below the default one for the largest frame.
TEST(FrameReaderTest, PointersAliasingOneBlobAreRefused) {
  const uint64_t n = 64, blob_bytes = 8192, blob_words = blob_bytes / 8;
  std::vector<uint64_t> seg;
  seg.push_back(1 | (uint64_t{6} << 32) | (n << 35));  // root: list of n pointers, right after it
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t offset = n - i - 1;  // from the word after element i to the blob
    seg.push_back(1 | (offset << 2) | (uint64_t{2} << 32) | (blob_bytes << 35));  // bytes
  }
  seg.resize(seg.size() + blob_words, 0x4242424242424242ULL);
  Bytes payload(8 + seg.size() * 8);
  const uint32_t table[2] = {0, static_cast<uint32_t>(seg.size())};  // one segment
  std::memcpy(payload.data(), table, 8);
  std::memcpy(payload.data() + 8, seg.data(), seg.size() * 8);
  Collector c;
  Status s = c.Feed(FrameAround(payload));
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("traversal limit"));
  EXPECT_EQ(c.calls(), 0);
}

TEST(FrameReaderTest, ReaderStaysFailedAfterAnError) {
  Bytes bad = ErrorFrame(1, "bad");
  bad.back() ^= 0xFF;
  Collector c;
  Status first = c.Feed(bad);
  ASSERT_EQ(first.code(), Status::Code::kCorruption);
  Status second = c.Feed(ErrorFrame(2, "good"));
  EXPECT_EQ(second.code(), first.code());
  EXPECT_EQ(second.message(), first.message());
  EXPECT_EQ(c.reader().status().message(), first.message());
  EXPECT_EQ(c.calls(), 0);
}

TEST(FrameReaderTest, CallbackErrorStopsTheStreamAndSticks) {
  int calls = 0;
  FrameReader reader(FrameReaderOptions(), [&calls](capnp::MessageReader&) {
    ++calls;
    return Status::InvalidArgument("refused");
  });
  Bytes stream;
  Append(&stream, ErrorFrame(1, "one"));
  Append(&stream, ErrorFrame(2, "two"));
  Status s = reader.Feed(stream.data(), stream.size());
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "refused");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(reader.Feed(stream.data(), stream.size()).message(), "refused");
  EXPECT_EQ(calls, 1);
}

TEST(FrameReaderTest, CallbackStdExceptionBecomesTransportError) {
  FrameReader reader(FrameReaderOptions(),
                     [](capnp::MessageReader&) -> Status { throw std::runtime_error("boom"); });
  Bytes frame = ErrorFrame(1, "x");
  Status s = reader.Feed(frame.data(), frame.size());
  EXPECT_EQ(s.code(), Status::Code::kTransport);
  EXPECT_THAT(s.message(), HasSubstr("boom"));
}

}  // namespace
}  // namespace crsync
