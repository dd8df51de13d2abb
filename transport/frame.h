// transport/frame.h — length-prefixed, checksummed frames carrying Cap'n
// Proto messages over a byte stream.
//
// A frame is a 12-byte header followed by the payload:
//   bytes 0..3   payload length in bytes, little-endian uint32
//   bytes 4..11  XXH3-64 of the payload, little-endian uint64
//   bytes 12..   the payload: one flat (unpacked, single-stream) Cap'n Proto
//                message, so its length is a non-zero multiple of 8
// The format knows nothing about sockets or libuv: FrameEncoder turns a
// message into bytes to write, FrameReader turns bytes read, in chunks of any
// size, back into messages.
//
// Errors: every function returns a Status and lets no exception escape.
// Thread safety: FrameEncoder is immutable and may be shared; a FrameReader
// is used by one thread at a time (the connection's loop thread).
#ifndef CRSYNC_TRANSPORT_FRAME_H_
#define CRSYNC_TRANSPORT_FRAME_H_

#include <capnp/message.h>
#include <kj/array.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "crsync/status.h"

namespace crsync {

inline constexpr size_t kFrameHeaderSize = 12;
// Default upper bound on a payload, on both ends of a connection.
inline constexpr size_t kDefaultMaxFramePayload = size_t{16} << 20;  // 16 MiB
// The largest frame a sidecar reads from a connection before its Hello, so
// that one which never says who it is holds little memory. A Hello carries
// a cursor per origin site its node tracks, 48 bytes each: about 87,000
// fit (MessageCodecTest.AHelloOfManyCursorsFitsBeforeTheHelloLimit).
inline constexpr size_t kMaxPayloadBeforeHello = size_t{4} << 20;  // 4 MiB

// Writes the 12-byte header for `payload` into `header`.
void EncodeFrameHeader(kj::ArrayPtr<const kj::byte> payload, kj::byte header[kFrameHeaderSize]);

class FrameEncoder {
 public:
  // `max_payload_bytes` should match the peer's FrameReaderOptions.
  explicit FrameEncoder(size_t max_payload_bytes = kDefaultMaxFramePayload)
      : max_payload_bytes_(max_payload_bytes) {}

  // Serialises `message` into one frame and stores it in *frame (which owns
  // its bytes; keep it alive until the write that sends it completes).
  // InvalidArgument if the message is larger than the payload limit, with
  // *frame left unchanged.
  Status Encode(capnp::MessageBuilder& message, kj::Array<kj::byte>* frame) const;

  // Frames an already serialised payload (e.g. a message being relayed).
  // REQUIRES: `payload` is a flat Cap'n Proto message. InvalidArgument if it
  // is empty, not a multiple of 8 bytes, or over the limit.
  Status EncodePayload(kj::ArrayPtr<const kj::byte> payload, kj::Array<kj::byte>* frame) const;

 private:
  size_t max_payload_bytes_;
};

struct FrameReaderOptions {
  // Larger frames are rejected from their header, before any payload byte is
  // buffered. (The length field is 32 bits, so no frame exceeds 4 GiB.)
  size_t max_payload_bytes = kDefaultMaxFramePayload;
  // Cap'n Proto limits for decoding one message from an untrusted peer. The
  // reader traverses each message once to validate it, so the traversal
  // limit must allow that plus what the callback reads (twice the payload
  // reads everything once; three times leaves room for a field read
  // twice); it bounds amplification by pointers that alias the same data.
  // Each frame gets at most three times its own size (plus a little).
  uint64_t traversal_limit_words = 3 * (kDefaultMaxFramePayload / sizeof(capnp::word));
  int nesting_limit = 16;
};

class FrameReader {
 public:
  // Called once per complete frame whose checksum matches and whose message
  // passed structural validation. `message` and everything read from it are
  // valid only during the call. A non-OK return fails the reader with that
  // status. Exceptions thrown from the callback are caught: kj::Exception
  // (e.g. a malformed field met while reading) becomes Corruption, others
  // Transport.
  // REQUIRES: the callback does not call Feed() on the same reader.
  using Callback = std::function<Status(capnp::MessageReader& message)>;

  FrameReader(const FrameReaderOptions& options, Callback on_message);
  ~FrameReader();

  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // Consumes `size` bytes from `data` (not retained after the call), calling
  // the callback for each frame they complete, in order. Bytes of an
  // incomplete frame are kept until later calls complete it.
  // Returns OK, or the first error: Corruption for a bad header (length 0,
  // not a multiple of 8, or over max_payload_bytes), a checksum mismatch or
  // an undecodable message; or the callback's error. After an error the
  // reader is failed: this and every later call return that same status and
  // consume nothing.
  Status Feed(const uint8_t* data, size_t size);

  // OK, or the error that failed the reader.
  const Status& status() const { return status_; }
  // Bytes of a partial frame held, waiting for the rest (0 once failed).
  size_t buffered_bytes() const;
  // Changes the payload limit for frames whose header is read from now on
  // (a callback may call it: the next frame of the same Feed is held to
  // it). The traversal limit stays as constructed.
  void set_max_payload_bytes(size_t n) { options_.max_payload_bytes = n; }

 private:
  Status ConsumeHeader();
  Status DeliverPayload();
  Status Fail(Status s);

  FrameReaderOptions options_;
  Callback on_message_;
  Status status_;

  kj::byte header_[kFrameHeaderSize];
  size_t header_fill_ = 0;  // < kFrameHeaderSize while reading a header
  // Payload of the current frame; allocated once its header was accepted,
  // reused for later frames that fit.
  kj::Array<capnp::word> payload_;
  size_t payload_size_ = 0;  // bytes expected (0: reading a header)
  size_t payload_fill_ = 0;  // bytes received
  uint64_t checksum_ = 0;    // from the header
};

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_FRAME_H_
