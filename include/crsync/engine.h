// crsync/engine.h — the CRR engine's C++ API, for code that links crsync
// (the sidecar, tests, benchmarks) rather than loading it as an extension.
//
// The engine itself is installed on a connection with crsync_engine_init()
// (crsync/crsync.h). ChangeReader and ChangeApplier then work on that
// connection without building SQL text per change.
//
// Thread safety: each object is bound to one connection and, like it, used
// by one thread at a time.
//
// Errors: every call returns a Status and none throws. Running out of
// memory is an SQLite status with SQLITE_NOMEM; an exception thrown by a
// ChangeVisitor is caught likewise (SQLITE_ERROR, "internal error"), with
// the same clean-up as an error status.
#ifndef CRSYNC_ENGINE_H_
#define CRSYNC_ENGINE_H_

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crsync/status.h"

namespace crsync {

// The largest col_version, db_version and cl a merged change may carry:
// half the int64 range, so that the increments of local writes after it can
// never overflow. A change above it is refused as invalid input.
constexpr int64_t kMaxChangeVersion = INT64_MAX / 2;

// One row of crsql_changes with all nine columns.
struct Change {
  std::string table;
  std::string pk;       // packed pk (crr-semantics §9)
  std::string cid;      // column name, or "-1" for the row sentinel
  int val_type = SQLITE_NULL;  // SQLITE_INTEGER, _FLOAT, _TEXT, _BLOB or _NULL
  int64_t val_int = 0;
  double val_real = 0;
  std::string val_bytes;  // TEXT or BLOB
  int64_t col_version = 0;
  int64_t db_version = 0;
  std::string site_id;  // 16 bytes
  int64_t cl = 0;
  int64_t seq = 0;
};

// Which origins a reader returns.
struct OriginFilter {
  enum class Mode { kAny, kLocal, kRemote, kOnly, kExcept };
  Mode mode = Mode::kAny;
  std::string site;  // for kOnly / kExcept: 16 bytes (else kInvalidArgument)
};

// Streams the changes of a connection with db_version > a cursor, in
// (db_version, seq) order, one whole transaction (one db_version) at a time,
// without loading the result into memory.
class ChangeReader {
 public:
  // `db` must have the engine installed. The reader holds statements on it
  // until destroyed.
  static Status Open(sqlite3* db, std::unique_ptr<ChangeReader>* out);
  ~ChangeReader();

  // Appends to *out the changes of the next transaction with
  // db_version > `after` that pass `origin`, and sets *db_version to its
  // version. Sets *db_version = 0 and leaves *out alone when there is none,
  // and when the read fails (*out is cut back to its size before the call:
  // never half a transaction).
  // Reads within the caller's transaction if one is open; otherwise opens a
  // read transaction for the call, so the whole transaction comes from one
  // snapshot even while other connections commit.
  Status NextTransaction(int64_t after, const OriginFilter& origin, std::vector<Change>* out,
                         int64_t* db_version);

  // The same transaction, streamed: calls visit(change) for each of its
  // changes in seq order instead of collecting them. `change` belongs to
  // the reader and is valid during the call only; visit may move from its
  // fields (every field is set again before the next call). Once warm
  // nothing is allocated per change, so this is the fast path for callers
  // that encode or filter as they go. When visit returns an error the read
  // stops there and returns it, with *db_version = 0. visit must not use
  // this reader.
  using ChangeVisitor = std::function<Status(Change& change)>;
  Status NextTransaction(int64_t after, const OriginFilter& origin, const ChangeVisitor& visit,
                         int64_t* db_version);

 private:
  ChangeReader() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Merges batches of changes through the same code as INSERT INTO
// crsql_changes, in one SQLite transaction per batch. One difference: a
// row's changes that come together in a batch may be written to the user
// table as one write, so the table's constraints (CHECK, UNIQUE) may be
// checked only on the row they leave, where one INSERT INTO crsql_changes
// per change checks every intermediate row (a CHECK that a partly merged
// row fails, say `b` at its default before `b`'s own change arrives, fails
// there). Every merged state, clock and conflict outcome is the same.
class ChangeApplier {
 public:
  static Status Open(sqlite3* db, std::unique_ptr<ChangeApplier>* out);
  ~ChangeApplier();

  // Merges them all in one transaction (BEGIN IMMEDIATE ... COMMIT; inside
  // a transaction the caller opened, in a savepoint of it, committing
  // nothing) and records tracked peers (tag `tag`, event 0) once per
  // origin. Each change is checked as its row is merged (an unknown table
  // or column, a malformed key or value, a clock out of range): the first
  // bad one fails the batch, and the status names it ("change N of M"), as
  // it names the rows a user-table constraint refused. On any error
  // nothing of the batch remains. `cl` and `seq` are taken from each
  // Change as given (9-column semantics).
  // *impacted, if not null, receives how many changes modified local state.
  Status Apply(const std::vector<Change>& changes, int64_t tag = 0, int64_t* impacted = nullptr);

  // Apply() for a caller that merges several batches in one transaction of
  // its own and undoes them together: the connection MUST be inside a
  // transaction (else SQLITE_MISUSE), and no savepoint is taken, so on error the
  // batch may be partly merged and the caller MUST roll back (ROLLBACK, or
  // ROLLBACK TO a savepoint it took before the call) before anything else.
  // Saves the per-batch savepoint's journalling on the sidecar's hot path.
  Status ApplyInTransaction(const std::vector<Change>& changes, int64_t tag,
                            int64_t* impacted = nullptr);

 private:
  ChangeApplier() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_H_
