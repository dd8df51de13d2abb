// transport/codec.h — conversions between the engine's crsync::Change and
// the wire schema (transport/wire.capnp), for changeset messages.
//
// Encoding validates what the caller hands in and reports InvalidArgument
// (a bug on our side: nothing is sent). Decoding validates what a peer sent
// and reports Corruption (the connection should be closed with an error);
// it checks that site ids are 16 bytes, that 1 <= startVersion <=
// endVersion, that every change's dbVersion lies in [startVersion,
// endVersion], and that every value has a known type. Neither direction
// lets an exception escape, including Cap'n Proto's on malformed input.
//
// Thread safety: free functions over caller-owned objects; no shared state.
#ifndef CRSYNC_TRANSPORT_CODEC_H_
#define CRSYNC_TRANSPORT_CODEC_H_

#include <capnp/message.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crsync/engine.h"
#include "crsync/status.h"
#include "transport/messages.h"
#include "transport/wire.capnp.h"

namespace crsync {

inline constexpr size_t kSiteIdSize = 16;

// A changeset as C++ values: the sender's changes with db_version in
// [start_version, end_version] (the sender's versions, inclusive).
struct DecodedChangeset {
  std::string sender_site_id;  // 16 bytes
  int64_t start_version = 0;
  int64_t end_version = 0;
  uint32_t part = 0;   // this message's index among its transaction's parts
  uint32_t parts = 1;  // how many messages carry the transaction
  std::vector<Change> changes;
};

// Writes `in` into `out`. InvalidArgument if in.val_type is not one of
// SQLITE_NULL/INTEGER/FLOAT/TEXT/BLOB or in.site_id is not 16 bytes.
Status EncodeChange(const Change& in, wire::Change::Builder out);

// Reads `in` into *out (overwritten only on success). Corruption if its
// site id is not 16 bytes, its value type is unknown, or a field is
// malformed.
Status DecodeChange(wire::Change::Reader in, Change* out);

// Sets the root of `message` to a Message holding a changeset.
// InvalidArgument, with `message` in an unspecified state, if
// `sender_site_id` is not 16 bytes, the range is not 1 <= start <= end, a
// change's db_version is outside [start, end], or EncodeChange() rejects a
// change.
Status BuildChangesetMessage(std::string_view sender_site_id, int64_t start_version,
                             int64_t end_version, uint32_t part, uint32_t parts,
                             const std::vector<Change>& changes, capnp::MessageBuilder* message);

// Validates `in` (see the file comment) and reads it into *out, which is
// overwritten only on success. Errors are Corruption and name the offending
// field (and change index).
Status DecodeChangeset(wire::Changeset::Reader in, DecodedChangeset* out);

// DecodeChangeset() on the root of `message`; Corruption if the root is not
// a changeset.
Status DecodeChangesetMessage(capnp::MessageReader& message, DecodedChangeset* out);

// An upper estimate of the words EncodeMessage(in) fills: pass it as a
// MallocMessageBuilder's first segment size, so the message is one segment
// (a reader then follows every pointer without a segment lookup).
size_t EstimateMessageWords(const Message& in);
// The share of one change in a changeset's estimate (what a sender adds up
// to keep a message under a size).
size_t EstimateChangeWords(const Change& ch);

// The whole protocol (transport/messages.h) on the wire: every Message kind.
// EncodeMessage reports InvalidArgument for a message we should not send;
// DecodeMessage reports Corruption for anything a peer got wrong (unknown
// union member, bad site id, bad range or parts) and leaves *out untouched.
Status EncodeMessage(const Message& in, capnp::MessageBuilder* message);
Status DecodeMessage(capnp::MessageReader& message, Message* out);

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_CODEC_H_
