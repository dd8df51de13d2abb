// engine/window_store.h — the local-write flusher's fast paths
// (ReplayLocalWrites, engine/recorder.cc) for a window of captured writes
// that is one bulk statement's: rows inserted in ascending key order above
// every stored key, or rows updated in place in ascending key order. Each
// stores the whole window in one pass, or declines (*done = false) and
// leaves it to the general path, which reads and writes row by row.
//
// Called on the connection's thread, inside the flush of its transaction.
#ifndef CRSYNC_ENGINE_WINDOW_STORE_H_
#define CRSYNC_ENGINE_WINDOW_STORE_H_

#include <cstddef>
#include <vector>

#include "crsync/status.h"
#include "engine/catalog.h"
#include "engine/conn_engine.h"
#include "engine/meta_batch.h"
#include "engine/write_log.h"

namespace crsync {

// Whether log[start, end) only inserts rows into one CRR, in ascending key
// order: a bulk load, which StoreFreshRows can take.
bool AscendingInserts(const WriteLog& log, size_t start, size_t end);

// Stores log[start, end), ascending inserts into `crr`, if every key sorts
// above the CRR's largest stored one: those rows have no metadata, so each
// gets the fresh one a single insert would give it, without reading or
// holding anything (*done = true). Otherwise leaves it to the general path.
Status StoreFreshRows(ConnEngine* e, Crr* crr, MetaBatch* batch, const WriteLog& log, size_t start,
                      size_t end, bool* done);

// Whether log[start, end) only updates rows of one CRR in place (no key
// change), in strictly ascending key order: what a statement that updated
// a key range captures, which StoreUpdatedRows can take.
bool AscendingUpdates(const WriteLog& log, size_t start, size_t end);

// Stores log[start, end), in-place updates of rows of `crr` in ascending
// key order (UPDATE t SET c = ... over a key range), with one walk that
// reads and rewrites each row's metadata (Crr::RewriteMetaRange) instead of
// a read of them all and then a write (*done = true). Leaves the window to
// the general path when the range holds many rows it does not update, or
// while an alter is open (rows written then may have no metadata yet).
// Writes the walk did not meet (rows with no metadata) are listed in
// *unmet, by log index, for the caller to store one by one afterwards.
Status StoreUpdatedRows(ConnEngine* e, Crr* crr, const WriteLog& log, size_t start, size_t end,
                        bool* done, std::vector<size_t>* unmet);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_WINDOW_STORE_H_
