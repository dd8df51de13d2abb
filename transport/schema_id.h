// transport/schema_id.h — a node's CRR schemas as the handshake states
// them: a fingerprint that peers compare, and a short description for the
// error when they differ.
#ifndef CRSYNC_TRANSPORT_SCHEMA_ID_H_
#define CRSYNC_TRANSPORT_SCHEMA_ID_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "crsync/status.h"

namespace crsync {

// XXH3 fingerprint of the CRR schemas of `db` as recorded (crsync_crrs):
// per CRR, sorted by name, its key columns in key order and its other
// columns sorted by name, each with its default, and every column's type
// affinity. Equal on two nodes exactly when their changes mean the same
// rows and cells.
Status SchemaFingerprint(sqlite3* db, uint64_t* out);

// "items(id INTEGER, name TEXT, qty DEFAULT 0), todo(id, title)": the CRRs
// and their recorded columns with their declared types, key first (at most about 600 bytes; "no CRR" when there
// is none).
Status SchemaSummary(sqlite3* db, std::string* out);

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_SCHEMA_ID_H_
