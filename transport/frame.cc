#include "transport/frame.h"

#include <capnp/any.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <utility>

namespace crsync {
namespace {

// A payload buffer larger than this is freed once its frame was delivered,
// so one large message does not pin its memory for the connection's life.
constexpr size_t kRetainedPayloadBytes = size_t{64} << 10;

constexpr size_t kMaxLengthField = std::numeric_limits<uint32_t>::max();

void PutLe(uint64_t v, size_t n, kj::byte* out) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<kj::byte>(v >> (8 * i));
}

uint64_t GetLe(const kj::byte* in, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}

std::string Hex64(uint64_t v) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out = "0x";
  for (int shift = 60; shift >= 0; shift -= 4) out += kDigits[(v >> shift) & 15];
  return out;
}

// Checks a payload size against the format and `max` (an OK result means
// the size is non-zero, word-aligned and at most `max`).
Status CheckPayloadSize(size_t size, size_t max, Status (*make)(std::string_view)) {
  if (size == 0) return make("frame payload is empty");
  if (size % sizeof(capnp::word) != 0) {
    return make("frame payload of " + std::to_string(size) +
                " bytes is not a multiple of 8 (not a flat Cap'n Proto message)");
  }
  if (size > max || size > kMaxLengthField) {
    return make("frame payload of " + std::to_string(size) + " bytes exceeds the limit of " +
                std::to_string(std::min(max, kMaxLengthField)) + " bytes");
  }
  return Status::OK();
}

}  // namespace

void EncodeFrameHeader(kj::ArrayPtr<const kj::byte> payload, kj::byte header[kFrameHeaderSize]) {
  PutLe(payload.size(), 4, header);
  PutLe(XXH3_64bits(payload.begin(), payload.size()), 8, header + 4);
}

Status FrameEncoder::Encode(capnp::MessageBuilder& message, kj::Array<kj::byte>* frame) const {
  try {
    size_t size = capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word);
    CRSYNC_RETURN_IF_ERROR(CheckPayloadSize(size, max_payload_bytes_, &Status::InvalidArgument));
    kj::Array<kj::byte> out = kj::heapArray<kj::byte>(kFrameHeaderSize + size);
    kj::ArrayPtr<kj::byte> payload = out.slice(kFrameHeaderSize, out.size());
    kj::ArrayOutputStream stream(payload);
    capnp::writeMessage(stream, message);
    if (stream.getArray().size() != size) {
      return Status::Transport("serialised message size " +
                               std::to_string(stream.getArray().size()) +
                               " differs from its computed size " + std::to_string(size));
    }
    EncodeFrameHeader(payload.asConst(), out.begin());
    *frame = std::move(out);
    return Status::OK();
  } catch (const kj::Exception& e) {
    return Status::InvalidArgument(std::string("cannot serialise message: ") +
                                   e.getDescription().cStr());
  } catch (const std::exception& e) {
    return Status::Transport(std::string("cannot serialise message: ") + e.what());
  }
}

Status FrameEncoder::EncodePayload(kj::ArrayPtr<const kj::byte> payload,
                                   kj::Array<kj::byte>* frame) const {
  CRSYNC_RETURN_IF_ERROR(
      CheckPayloadSize(payload.size(), max_payload_bytes_, &Status::InvalidArgument));
  try {
    kj::Array<kj::byte> out = kj::heapArray<kj::byte>(kFrameHeaderSize + payload.size());
    EncodeFrameHeader(payload, out.begin());
    std::memcpy(out.begin() + kFrameHeaderSize, payload.begin(), payload.size());
    *frame = std::move(out);
    return Status::OK();
  } catch (const std::exception& e) {
    return Status::Transport(std::string("cannot allocate frame: ") + e.what());
  }
}

FrameReader::FrameReader(const FrameReaderOptions& options, Callback on_message)
    : options_(options), on_message_(std::move(on_message)) {}

FrameReader::~FrameReader() = default;

size_t FrameReader::buffered_bytes() const {
  return payload_size_ == 0 ? header_fill_ : kFrameHeaderSize + payload_fill_;
}

Status FrameReader::Fail(Status s) {
  status_ = std::move(s);
  // A failed reader never reads again: drop what it holds.
  payload_ = nullptr;
  header_fill_ = 0;
  payload_size_ = 0;
  payload_fill_ = 0;
  return status_;
}

Status FrameReader::Feed(const uint8_t* data, size_t size) {
  if (!status_.ok()) return status_;
  while (size > 0) {
    if (payload_size_ == 0) {
      size_t n = std::min(size, kFrameHeaderSize - header_fill_);
      std::memcpy(header_ + header_fill_, data, n);
      header_fill_ += n;
      data += n;
      size -= n;
      if (header_fill_ < kFrameHeaderSize) break;
      Status s = ConsumeHeader();
      if (!s.ok()) return Fail(std::move(s));
    } else {
      kj::ArrayPtr<kj::byte> bytes = payload_.asBytes();
      size_t n = std::min(size, payload_size_ - payload_fill_);
      std::memcpy(bytes.begin() + payload_fill_, data, n);
      payload_fill_ += n;
      data += n;
      size -= n;
      if (payload_fill_ < payload_size_) break;
      Status s = DeliverPayload();
      if (!s.ok()) return Fail(std::move(s));
    }
  }
  return Status::OK();
}

// The header is complete: validate the length, then make room for the
// payload. Nothing of the payload is buffered before the size is accepted.
Status FrameReader::ConsumeHeader() {
  size_t size = static_cast<size_t>(GetLe(header_, 4));
  CRSYNC_RETURN_IF_ERROR(CheckPayloadSize(size, options_.max_payload_bytes, &Status::Corruption));
  checksum_ = GetLe(header_ + 4, 8);
  size_t words = size / sizeof(capnp::word);
  if (payload_.size() < words) {
    payload_ = nullptr;  // free the old buffer before allocating the new one
    try {
      payload_ = kj::heapArray<capnp::word>(words);
    } catch (const std::exception& e) {
      return Status::Transport("cannot allocate " + std::to_string(size) +
                               " bytes for a frame payload: " + e.what());
    }
  }
  payload_size_ = size;
  payload_fill_ = 0;
  return Status::OK();
}

// The payload is complete: verify it, decode it and hand it over, then get
// ready for the next header.
Status FrameReader::DeliverPayload() {
  kj::ArrayPtr<const capnp::word> words = payload_.slice(0, payload_size_ / sizeof(capnp::word));
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  uint64_t actual = XXH3_64bits(bytes.begin(), bytes.size());
  if (actual != checksum_) {
    return Status::Corruption("frame checksum mismatch: header says " + Hex64(checksum_) +
                              ", payload of " + std::to_string(bytes.size()) + " bytes hashes to " +
                              Hex64(actual));
  }

  capnp::ReaderOptions reader_options;
  // Bounded by this frame's size, not just the largest frame's: pointers
  // that alias one blob would otherwise let a small frame decode into many
  // times its size. An honest message is read twice (the validation below,
  // then the decoder); a third pass is headroom for a field the decoder
  // reads again, which at exactly two passes failed a large Hello.
  reader_options.traversalLimitInWords =
      std::min<uint64_t>(options_.traversal_limit_words, 3 * words.size() + 64);
  reader_options.nestingLimit = options_.nesting_limit;
  Status result;
  bool validated = false;
  try {
    capnp::FlatArrayMessageReader reader(words, reader_options);
    if (reader.getEnd() != words.end()) {
      return Status::Corruption(
          "frame payload has " +
          std::to_string(static_cast<size_t>(words.end() - reader.getEnd()) * sizeof(capnp::word)) +
          " trailing bytes after its Cap'n Proto message");
    }
    // Walks every pointer once, so that a malformed message is reported here
    // rather than half-way through the callback's reading.
    capnp::MessageSize size = reader.getRoot<capnp::AnyPointer>().targetSize();
    if (size.capCount != 0) {
      return Status::Corruption("message contains " + std::to_string(size.capCount) +
                                " capability pointers; the protocol has none");
    }
    validated = true;
    result = on_message_(reader);
  } catch (const kj::Exception& e) {
    result = Status::Corruption(
        std::string(validated ? "malformed message: " : "invalid Cap'n Proto message: ") +
        e.getDescription().cStr());
  } catch (const std::exception& e) {
    result = Status::Transport(
        std::string(validated ? "message handler failed: " : "cannot decode message: ") + e.what());
  }
  CRSYNC_RETURN_IF_ERROR(result);

  payload_size_ = 0;
  payload_fill_ = 0;
  header_fill_ = 0;
  if (payload_.size() * sizeof(capnp::word) > kRetainedPayloadBytes) payload_ = nullptr;
  return Status::OK();
}

}  // namespace crsync
