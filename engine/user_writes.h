// engine/user_writes.h — the user-table writes of merges.
//
// A merge writes a row's winning values into the user's table before any
// metadata (that write is the only step that can fail on valid input:
// CHECK, STRICT, NOT NULL, a user trigger). Both functions here write with
// the connection's sync bit set (§11.7), so the recording triggers ignore
// them.
//
// Errors: an SQLite failure is returned as is; rows written before it stay
// written (the caller rolls back). Thread safety: none, like ConnEngine.
#ifndef CRSYNC_ENGINE_USER_WRITES_H_
#define CRSYNC_ENGINE_USER_WRITES_H_

#include <cstdint>
#include <vector>

#include "crsync/status.h"
#include "engine/conn_engine.h"
#include "engine/meta_batch.h"
#include "engine/row_buf.h"
#include "engine/row_write.h"

namespace crsync {

// Writes one row: `pk` holds its key values (in pk column order), `key`
// the same packed; `slots` is scratch space. The row counts as being merged
// meanwhile (ConnEngine::RowBeingMerged).
Status WriteUserRow(ConnEngine* e, Crr* crr, const std::vector<Value>& pk, std::string_view key,
                    const RowWrite& w, std::vector<int>* slots);

// Writes the user rows of a batch window in order. Consecutive rows of one
// CRR that upsert the same columns (the usual shape: a peer's rows each
// carrying all their columns) go with one INSERT ... SELECT FROM
// crsync_valbuf per run, whose per-row cost is a loop iteration instead
// of a statement run; other rows go one by one.
class UserWriter {
 public:
  explicit UserWriter(ConnEngine* e) : e_(e) {}

  // Every row of `writes` counts as being merged until it returns
  // (ConnEngine::RowBeingMerged): their metadata is stored after.
  // On error, *failed_label is the label of the write that failed: a run
  // that fails as a whole is written again row by row to find it, unless
  // the transaction is gone. An error leaves rows written: the caller
  // rolls the batch back.
  Status Write(const std::vector<MetaBatch::HeldUserWrite>& writes, uint32_t* failed_label);

 private:
  Status WriteRows(const std::vector<MetaBatch::HeldUserWrite>& ws, size_t from, size_t to,
                   uint32_t* failed_label);
  // *wrote is set once the run's statement succeeded: a failure after
  // that (a row skipped or deleted by a trigger) leaves its rows written.
  // On error *failed_label is the row found at fault, else the run's first.
  Status WriteRun(const std::vector<MetaBatch::HeldUserWrite>& ws, size_t from, size_t to,
                  bool* wrote, uint32_t* failed_label);
  Status CrrOf(const MetaBatch::HeldUserWrite& w, Crr** out);

  ConnEngine* e_;
  ValueRows buf_;
  std::vector<Value> pk_;
  std::vector<int> slots_;
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_USER_WRITES_H_
