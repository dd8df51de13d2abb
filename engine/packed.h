// engine/packed.h — the packed-columns format of crsql_changes.pk
// (crr-semantics §9), byte-identical to cr-sqlite 0.16.
#ifndef CRSYNC_ENGINE_PACKED_H_
#define CRSYNC_ENGINE_PACKED_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crsync/status.h"
#include "engine/value.h"

namespace crsync {

// Appends the packed form of `n` values (count byte first) to *out.
// REQUIRES: n <= 255.
void PackValues(sqlite3_value** values, int n, std::string* out);
void PackValues(const std::vector<Value>& values, std::string* out);

// Packs a row's key (values in pk order, `affinity` the columns' AffinityOf
// codes) as its identity: like PackValues, except that in a column without
// affinity ('b') a REAL with an integer value (1.0, -0.0) packs as that
// INTEGER. SQLite holds them equal (one row), so the row gets one identity
// however its key was written, here or by a peer. INTEGER and NUMERIC
// columns store 1.0 as 1, except -2^63, which they keep as a REAL: it
// packs as the INTEGER too. REAL columns store 1 as 1.0.
void PackKey(sqlite3_value** values, int n, const std::vector<char>& affinity, std::string* out);
void PackKey(const std::vector<Value>& values, const std::vector<char>& affinity, std::string* out);
// Whether PackKey may differ from PackValues for these values (a REAL among
// them): the caller needs the affinities only then.
bool KeyNeedsAffinity(sqlite3_value** values, int n);

// Appends one entry (header + payload, no count byte).
void PackOne(sqlite3_value* v, std::string* out);
void PackOne(const Value& v, std::string* out);

// Decodes a packed blob. Rejects an empty blob, unknown type codes, W > 8,
// truncated payloads and trailing bytes, with a message naming the problem.
Status UnpackValues(std::string_view packed, std::vector<Value>* out);

// The value of a one-column packed key holding an integer in [0, 2^56):
// among such keys packed (memcmp) order is numeric order, and no other
// packed integer sorts between two of them. False for any other key.
bool PackedSmallUint(std::string_view packed, uint64_t* out);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_PACKED_H_
