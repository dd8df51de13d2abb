// engine/meta_batch.h — metadata writes of many rows, held back and stored
// together.
//
// Storing a row's metadata costs two or three statement runs (the metadata
// upsert and the change-feed entries). A batch merge (ChangeApplier) puts
// every row's new metadata here instead, and Flush() stores all of it with
// three statements per CRR whose per-row cost is one loop iteration
// (Crr::StoreBulk). Until then Find() serves the held rows, so a row
// touched twice in a batch sees its own earlier write.
//
// Errors and atomicity: Flush() runs inside the caller's transaction; a
// failure part-way leaves part of the batch stored, so the caller must roll
// back (ChangeApplier does). Clear() forgets held rows without storing.
// Thread safety: none; one per connection, like the rest of the engine.
#ifndef CRSYNC_ENGINE_META_BATCH_H_
#define CRSYNC_ENGINE_META_BATCH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "crsync/status.h"
#include "engine/catalog.h"
#include "engine/feed_range.h"
#include "engine/row_buf.h"
#include "engine/row_meta.h"
#include "engine/row_write.h"

namespace crsync {

class MetaBatch {
 public:
  explicit MetaBatch(Catalog* catalog) : catalog_(catalog) {}

  // How callers size their work: rows per window (held, then stored), and
  // the fewest rows for which the bulk statements beat row by row.
  static constexpr size_t kWindow = 1024;
  static constexpr size_t kMinBulk = 8;
  // The fewest rows written together in key order that get one feed range
  // entry instead of one entry each (engine/feed_range.h).
  static constexpr size_t kMinRange = 16;
  // Tests compare storage with and without what dense windows get: feed
  // range entries and the one-walk metadata update (Crr::StoreBulk).
  static void EnableRangeWritesForTesting(bool on);
  static bool RangeWritesEnabled();

  // The metadata of row `pk` of `crr` if the batch knows it: held (Put)
  // or prefetched (possibly empty: the row has none); else null. The
  // pointer is valid until the batch next learns a row (PrefetchWanted,
  // Put): copy what you need first.
  const RowMeta* Find(const Crr& crr, std::string_view pk) const;
  // Notes that row `pk` of `crr` will be needed; PrefetchWanted() then reads
  // the stored metadata of every noted row with one statement per CRR, so
  // that Find() serves them (rows already known are skipped). The pk bytes
  // must stay valid until PrefetchWanted() returns.
  void Want(Crr* crr, std::string_view pk);
  Status PrefetchWanted();
  // Row `pk` of `crr` now has `after` (runs normalized here); `before` is
  // what storage holds and `stored` whether it holds anything (both ignored
  // when the batch already knows the row). With `user`, the row's user-row
  // write is held too (below).
  void Put(const Crr& crr, std::string_view pk, const RowMeta& before, const RowMeta& after,
           bool stored, const RowWrite* user = nullptr);
  // Stores rows new to `crr` at once, bypassing the held rows (a bulk
  // load's fast path), each with fresh local clocks at `dbv`: keys[i]'s
  // columns (a pk-only CRR: its sentinel, cl 1) at col_version 1, seqs
  // first_seq + i * max(slots, 1) onwards (EncodeFreshRowMeta). The
  // caller's seq counter moves past them.
  // REQUIRES: nothing held; keys ascending, none with stored metadata.
  Status StoreNew(Crr* crr, const std::vector<std::string_view>& keys, int64_t dbv,
                  int64_t first_seq);
  // User-row writes of a batch merge, held with the metadata and written
  // by the caller (UserWriter, in the order their rows were first put)
  // before Flush() stores the metadata. A row put twice has the writes
  // combined (RowWrite::Then). Each write carries the label last set with
  // set_user_label(), so the caller can name the changes of a failed one.
  void set_user_label(uint32_t label) { user_label_ = label; }
  // The held user write of row `pk`, or null. Valid until the batch next
  // learns a row.
  const RowWrite* FindUserWrite(const Crr& crr, std::string_view pk) const;
  struct HeldUserWrite {
    int64_t crr_id;
    std::string_view pk;
    const RowWrite* write;
    uint32_t label;
  };
  // The held user writes, in order; views valid until Flush() or Clear().
  void UserWrites(std::vector<HeldUserWrite>* out) const;

  // Rows held (a caller may flush early to bound memory).
  size_t size() const { return size_; }
  // Stores every held row and empties the batch (also on error).
  Status Flush();
  void Clear();

 private:
  // The rows the batch knows, in one arena that keeps its buffers (keys,
  // clock vectors) from window to window: a window allocates nothing once
  // the first has run. Entries are found through an open-addressing index.
  struct Entry {
    int64_t crr_id = 0;
    std::string pk;
    RowMeta before;  // as stored (prefetched, or given to the first Put)
    RowMeta after;   // held for storing, when `held`
    bool held = false;
    bool stored = false;  // storage has a metadata row for it
    RowWrite user;        // held user-row write, when `user_held`
    bool user_held = false;
    uint32_t user_label = 0;
  };
  static constexpr uint32_t kNone = ~0u;

  uint32_t Lookup(int64_t crr_id, std::string_view pk) const;
  // A new entry for a row Lookup() did not find.
  Entry& Add(int64_t crr_id, std::string_view pk, size_t slots, uint32_t* index);
  static size_t Hash(int64_t crr_id, std::string_view pk);
  void Reindex(size_t capacity);
  // The buffers StoreBulk takes: ClearBuffers empties them; AddToBuffers
  // adds row `pk` going from `before` to `after` (an update when `stored`,
  // else an insert) and the feed entries whose runs change.
  void ClearBuffers();
  void AddToBuffers(std::string_view pk, const RowMeta& before, const RowMeta& after, bool stored);
  Status Prefetch(Crr* crr, const std::vector<std::string_view>& pks);
  // Replaces, in feed_add_ (sorted by dbv, lo, pk), each stretch of at
  // least kMinRange entries of one version whose keys ascend with their
  // runs by one range entry, if `dense(first, last)`: nothing but this
  // window's rows is stored between those keys (else readers would scan
  // rows the range does not name) and `crr` has room for it (RangeFits).
  void MakeFeedRanges(Crr* crr,
                      const std::function<bool(std::string_view, std::string_view)>& dense);
  // Key spans of a CRR where Prefetch saw every stored row wanted: rows
  // this window writes lie next to each other there. `last` empty = no
  // upper bound (keys above every stored one).
  struct DenseSpan {
    int64_t crr_id;
    std::string first, last;
  };
  bool Dense(int64_t crr_id, std::string_view first, std::string_view last) const;

  Catalog* catalog_;
  std::vector<std::pair<Crr*, std::vector<std::string_view>>> wanted_;  // few CRRs: a vector
  std::vector<Entry> entries_;   // [0, used_) are this window's
  size_t used_ = 0;
  std::vector<uint32_t> index_;  // entry index or kNone; size a power of two
  std::vector<uint32_t> held_;   // held entries, in Put order
  std::vector<uint32_t> user_held_;  // entries with a user write, in first-put order
  uint32_t user_label_ = 0;
  size_t size_ = 0;
  RowBuf inserts_, updates_, feed_del_, feed_add_, keys_, ranged_;
  FeedRunScratch runs_;
  std::vector<DenseSpan> dense_;
  std::vector<int64_t> crr_ids_;
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_META_BATCH_H_
