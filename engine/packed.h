// engine/packed.h — the packed-columns format of crsql_changes.pk
// (crr-semantics §9), byte-identical to cr-sqlite 0.16.
#ifndef CRSYNC_ENGINE_PACKED_H_
#define CRSYNC_ENGINE_PACKED_H_

#include <sqlite3.h>

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

// Appends one entry (header + payload, no count byte).
void PackOne(sqlite3_value* v, std::string* out);
void PackOne(const Value& v, std::string* out);

// Decodes a packed blob. Rejects an empty blob, unknown type codes, W > 8,
// truncated payloads and trailing bytes, with a message naming the problem.
Status UnpackValues(std::string_view packed, std::vector<Value>* out);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_PACKED_H_
