// tests/fuzz/handshake_input.h — the input format of handshake_fuzz
// (described at the top of handshake_fuzz.cc): the record kinds and the
// site pools, shared by the target and its seed-corpus writer.
#ifndef CRSYNC_TESTS_FUZZ_HANDSHAKE_INPUT_H_
#define CRSYNC_TESTS_FUZZ_HANDSHAKE_INPUT_H_

#include <cstdint>
#include <string>

#include "tests/fuzz/fuzz_util.h"

namespace crsync::fuzz {

enum Kind { kHello, kChangeset, kAck, kError, kRaw, kLocalWrite, kKinds };

inline const std::string kLocal = Site('\x4c');
inline const std::string kPeer = Site('\x50');
inline const std::string kOther = Site('\x51');

// Writes the seed corpus into `dir` (CRSYNC_FUZZ_WRITE_SEEDS mode); the
// raw-wire seeds carry `fingerprint`, the schema's. False if a file could
// not be written.
bool WriteHandshakeSeeds(const std::string& dir, uint64_t fingerprint);

}  // namespace crsync::fuzz

#endif  // CRSYNC_TESTS_FUZZ_HANDSHAKE_INPUT_H_
