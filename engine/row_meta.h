// engine/row_meta.h — the clock records of one CRR row, and their compact
// on-disk encoding (docs/storage.md).
//
// Each CRR row has one metadata record holding the row's sentinel clock
// (causal length) and one clock per non-PK column. They are stored together
// in one BLOB so that a local write touches one metadata row, not one per
// column.
#ifndef CRSYNC_ENGINE_ROW_META_H_
#define CRSYNC_ENGINE_ROW_META_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crsync/engine.h"
#include "crsync/status.h"

namespace crsync {

// One clock record (crr-semantics §5).
struct Clock {
  bool present = false;
  int64_t col_version = 0;  // for the sentinel: the causal length
  int64_t db_version = 0;
  int64_t seq = 0;
  int64_t site = 0;  // site ordinal; 0 = this site
  int64_t run = 0;   // first seq of the change-feed run listing this record
};

// Stamps `c` as a local record at (dbv, seq). Its feed run is set when the
// row is stored (NormalizeRuns).
inline void StampLocal(Clock* c, int64_t col_version, int64_t dbv, int64_t seq) {
  c->present = true;
  c->col_version = col_version;
  c->db_version = dbv;
  c->seq = seq;
  c->site = 0;
}

struct RowMeta {
  Clock sentinel;
  std::vector<Clock> cols;  // indexed by column slot

  // The local causal length L (§5): the sentinel's value, else 1 if any
  // column clock exists, else 0.
  int64_t CausalLength() const;
  bool AnyColumn() const;
  bool Empty() const { return !sentinel.present && !AnyColumn(); }
  // Whether a clock's col_version (or the causal length) is past
  // kMaxChangeVersion, the most a merge accepts.
  bool PastMaxVersion() const;
};

// The error of a local write that would stamp a clock past
// kMaxChangeVersion: no peer would accept that change, so the write fails
// instead (a peer must have sent a change at the limit).
Status ClockExhausted(const std::string& table);

// Sets every record's run to the smallest seq among the row's records with
// the same db_version, so the change feed needs one entry per distinct
// db_version of the row (docs/storage.md).
void NormalizeRuns(RowMeta* meta);

// The change-feed runs of `meta`: each distinct (db_version, run) of its
// present records, once, in record order (sentinel first). Normalized
// metadata has one per db_version.
using FeedRun = std::pair<int64_t, int64_t>;
void FeedRuns(const RowMeta& meta, std::vector<FeedRun>* out);

// Encodes `meta` into *out (replacing its contents).
void EncodeRowMeta(const RowMeta& meta, std::string* out);
// The same for a row new to this database, written locally: every column
// (a pk-only CRR: the sentinel, cl 1) at col_version 1 and `dbv`, with
// seqs first_seq, first_seq + 1, ... in slot order. Byte for byte what
// EncodeRowMeta gives for that RowMeta, without building it (a bulk
// load's path).
void EncodeFreshRowMeta(size_t slots, int64_t dbv, int64_t first_seq, std::string* out);

// Decodes `blob` into *meta, which gets at least `slots` column entries.
// Records for slots >= `slots` are dropped (a column removed by an alter).
Status DecodeRowMeta(std::string_view blob, size_t slots, RowMeta* meta);

// The feed run of the first record in an encoded blob. False if the blob
// has no record or is malformed.
bool FirstRecordRun(std::string_view blob, int64_t* run);

// The change-feed runs of an encoded blob, every record counted (as
// FeedRuns of the decoded metadata, without needing the slot count): one
// per distinct db_version, in first-record order.
Status BlobFeedRuns(std::string_view blob, std::vector<FeedRun>* out);

// LEB128 helpers, shared with other compact encodings.
void PutVarint(uint64_t v, std::string* out);
bool GetVarint(std::string_view in, size_t* pos, uint64_t* v);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_ROW_META_H_
