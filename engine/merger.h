// engine/merger.h — merging one peer change into local state (crr-semantics
// §11-§13). The single implementation behind INSERT INTO crsql_changes and
// ChangeApplier.
#ifndef CRSYNC_ENGINE_MERGER_H_
#define CRSYNC_ENGINE_MERGER_H_

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crsync/sqlite_handles.h"
#include "crsync/status.h"
#include "engine/conn_engine.h"
#include "engine/meta_batch.h"
#include "engine/row_write.h"
#include "engine/value.h"

namespace crsync {

// A change as received, before validation. Views must outlive Merge().
struct MergeInput {
  std::string_view table;
  std::string_view pk;
  std::string_view cid;
  Value val;
  int64_t col_version = 0;
  int64_t db_version = 0;
  std::optional<std::string_view> site;  // absent = local (§12.1)
  std::optional<int64_t> cl;
  std::optional<int64_t> seq;
  int64_t tag = 0;
};

// The receive cursor a merged change contributes to (§13.3).
struct PeerMark {
  int64_t version = 0;
  int64_t seq = 0;
};

class Merger {
 public:
  explicit Merger(ConnEngine* e);
  ~Merger();
  Merger(const Merger&) = delete;
  Merger& operator=(const Merger&) = delete;

  // Validates `in` fully, then merges it. On a validation error nothing is
  // written and the status is InvalidArgument with a "crsql - ..." message.
  // A failing user-table write (CHECK, STRICT, NOT NULL) happens before any
  // metadata write, so a failed change leaves no trace. *impacted gets the
  // number of rows it modified (§11.8).
  Status Merge(const MergeInput& in, int64_t* impacted);

  // Whether a merged change moves the receive cursor of (its site, its
  // tag) to (db_version, seq) (§13.3): a peer's change whose tag is not -1.
  bool CountsForTracking(const MergeInput& in) const;

  // A change that counts for peer tracking: (site id, tag) and its mark.
  // `site` views the MergeInput's bytes.
  struct TrackedMark {
    std::string_view site;
    int64_t tag;
    PeerMark mark;
  };

  // Merges `n` consecutive changes to ONE row (same table, same pk bytes)
  // with the result of merging them one by one, but reading and writing the
  // row's metadata once and the user row with one statement (plus a DELETE
  // when the run deletes it). All changes are validated first. Tracked
  // marks are appended to *marks when it is not null. On a validation
  // error *failed (if not null) is the index of the bad change, else n.
  // May be re-entered: a user trigger fired by the row write may merge
  // again through the same Merger.
  Status MergeRow(const MergeInput* ins, size_t n, int64_t* impacted,
                  std::vector<TrackedMark>* marks, size_t* failed = nullptr);

  // With a batch, MergeRow holds each row's new metadata there instead of
  // storing it (the caller flushes it before anything else reads metadata);
  // null (the default) stores it at once. With `hold_user_writes`, each
  // row's user-table write is held there too, for the caller to write
  // (UserWriter) before flushing; a failure then fails the whole batch.
  void SetBatch(MetaBatch* batch, bool hold_user_writes = false) {
    batch_ = batch;
    hold_user_writes_ = batch && hold_user_writes;
  }

  // Without a batch, whether a row's metadata is written behind
  // (Crr::StoreMeta with defer): for crsql_changes, whose statements each
  // merge one change, so a row's changes cost one metadata write. The
  // caller then owns the flush points (Crr::FlushPending).
  void set_write_behind(bool on) { write_behind_ = on; }

  // Upserts the receive cursor of (site, tag) to at least `mark` (§13.3).
  Status TrackPeer(const std::string& site, int64_t tag, const PeerMark& mark);

 private:
  struct Scratch;
  // Resolves the table and pk of `in` into *crr and *pk_vals (unless
  // `same_row`: they hold the previous change's, same table and pk bytes)
  // and checks the rest of the change.
  Status Validate(const MergeInput& in, Crr** crr, std::vector<Value>* pk_vals, int* slot,
                  bool same_row = false);
  Status ValidateChange(const MergeInput& in, Crr* crr, int* slot);
  Status MergeRowWith(Scratch* s, const MergeInput* ins, size_t n, int64_t* impacted,
                      std::vector<TrackedMark>* marks, size_t* failed);

  ConnEngine* e_;
  MetaBatch* batch_ = nullptr;
  bool hold_user_writes_ = false;
  bool write_behind_ = false;
  // The table and pk of the last change Validate resolved, reused when the
  // next change names the same bytes (a peer's changes to a row come
  // together) within the same catalog generation.
  struct Resolved {
    bool valid = false;
    uint64_t generation = 0;
    std::string table, pk_bytes;
    Crr* crr = nullptr;
    std::vector<Value> pk_vals;
  };
  Resolved last_;
  // MergeRow's working storage, reused across calls (no allocation per
  // change once warm); one per nesting depth.
  std::vector<std::unique_ptr<Scratch>> scratch_;
  size_t depth_ = 0;
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_MERGER_H_
