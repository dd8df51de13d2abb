// engine/change_scan.h — ordered enumeration of clock records with their
// current values: the read side of crsql_changes and of ChangeReader.
//
// Records come out in (db_version, seq) order, ties broken by CRR creation
// order, pk bytes and column slot (sentinel first). The scan walks each CRR's
// change feed from the lower db_version bound and expands feed entries into
// records lazily, so a cursor query costs O(result), and memory holds only
// records of feed runs that overlap in seq (one row's worth for local writes).
#ifndef CRSYNC_ENGINE_CHANGE_SCAN_H_
#define CRSYNC_ENGINE_CHANGE_SCAN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "crsync/engine.h"
#include "crsync/sqlite_handles.h"
#include "engine/conn_engine.h"
#include "engine/row_meta.h"
#include "engine/value.h"

namespace crsync {

struct ScanSpec {
  int64_t min_dbv = INT64_MIN;  // inclusive
  int64_t max_dbv = INT64_MAX;  // inclusive
  // Only these CRRs (exact declared names), only these rows (packed pk
  // bytes): an `=` constraint gives one, an `IN` list several (sorted,
  // distinct). Records come out in (db_version, seq) order either way.
  std::optional<std::vector<std::string>> tables;
  std::optional<std::vector<std::string>> pks;
  // Origin filter on stored ordinals: kAny, kLocal (ordinal 0), kRemote,
  // kOnly(site) and kExcept(site); a site equal to ours means local.
  OriginFilter origin;
  // Further origin filters, all of which must pass too (a query with
  // several site_id constraints).
  std::vector<OriginFilter> more_origins;
  // Reads only versions that exist when the scan starts (the committed
  // version, or this transaction's): writes made while the scan is being
  // stepped, which each take a new version, are not met by it (a loop
  // that updated rows as it read them never ended).
  bool up_to_start = false;
  bool none = false;  // a constraint that can match nothing (e.g. site_id = NULL)

  // Narrows tables / pks to `values` (intersected with what they already
  // hold); `values` is sorted and distinct.
  static void Narrow(std::optional<std::vector<std::string>>* set,
                     std::vector<std::string> values);
};

// One record, with the row's value for column records.
struct ScanRecord {
  int64_t db_version, seq;
  size_t crr_index;
  std::string pk;
  int slot;  // -1 = sentinel
  int64_t col_version, cl, site;
  Value val;
};

class ChangeScan {
 public:
  explicit ChangeScan(ConnEngine* e) : e_(e) {}
  ~ChangeScan();

  // Starts (or restarts) the scan. Prepared statements are kept across
  // restarts while the catalog is unchanged.
  Status Start(const ScanSpec& spec);
  // Resets every statement, ending the scan's read of the database.
  void Stop();
  // Moves to the next record; *has = false at the end.
  Status Next(bool* has);
  const ScanRecord& current() const { return cur_; }
  // The current record, for a caller that takes its strings (valid until
  // the next Next()).
  ScanRecord& mutable_current() { return cur_; }
  const std::string& TableName(size_t crr_index) const;
  const std::string& ColumnName(const ScanRecord& r) const;

 private:
  struct Source {
    size_t index;
    TableSchema schema;
    StmtPtr feed;   // feed LEFT JOIN rows LEFT JOIN user table, positioned on the head
    StmtPtr meta;   // rows LEFT JOIN user table for one pk
    StmtPtr range;  // rows LEFT JOIN user table for a pk range (engine/feed_range.h)
    // Metadata the user table no longer matches (crr-semantics §8.2: a
    // table dropped without crsql_as_table, a column removed outside an
    // alter) is skipped, not an error for every reader.
    bool gone = false;            // the table (or a pk column) is gone
    std::vector<bool> missing;    // per slot: the column is gone
    int64_t head_dbv = 0, head_lo = 0;
    std::string head_pk;
  };
  struct RecordLater {
    bool operator()(const ScanRecord& a, const ScanRecord& b) const;
  };
  struct FeedLater {
    bool operator()(const Source* a, const Source* b) const;
  };

  Status PrepareSources();
  Status AdvanceFeed(Source* src, bool* has);
  // Expands the feed entry `src` is positioned on: a point entry's row, or
  // every row of a range entry.
  Status ExpandHead(Source* src);
  // Queues the wanted records of the row `st` is positioned on: its meta
  // blob in column `meta_col` (NULL: no row, nothing queued), then "user
  // row exists", then the values. Wanted: every record in the spec's
  // version bounds (`all_records`), else those of version `dbv` whose run
  // lies in [run_lo, run_hi].
  Status Expand(Source* src, sqlite3_stmt* st, int meta_col, int64_t dbv, int64_t run_lo,
                int64_t run_hi, std::string_view pk, bool all_records);
  bool OriginPasses(int64_t site) const;

  ConnEngine* e_;
  ScanSpec spec_;
  int64_t origin_ord_ = 0;  // resolved ordinal for kOnly / kExcept
  std::vector<int64_t> more_ords_;  // the same for spec_.more_origins (-1: unknown site)
  std::vector<std::unique_ptr<Source>> sources_;
  uint64_t sources_generation_ = ~uint64_t{0};  // Catalog::generation() they match
  std::priority_queue<Source*, std::vector<Source*>, FeedLater> feeds_;
  std::priority_queue<ScanRecord, std::vector<ScanRecord>, RecordLater> pending_;
  // Records of the row expanded last, in order; served without the heap
  // when nothing else can sort before them (the common case).
  std::vector<ScanRecord> batch_;
  size_t batch_pos_ = 0;
  void QueueBatch();
  ScanRecord cur_;
  // A record can be reached twice (a range entry and a point entry of a
  // row whose run changed); both copies sort together, the second is
  // dropped. Valid when has_prev_.
  bool has_prev_ = false;
  int64_t prev_dbv_ = 0, prev_seq_ = 0;
  size_t prev_crr_ = 0;
  int prev_slot_ = 0;
  std::string prev_pk_;
  // Next() without that check.
  Status NextRecord(bool* has);
  RowMeta meta_buf_;
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_CHANGE_SCAN_H_
