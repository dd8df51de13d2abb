// engine/range_keeper.h — the upkeep of one CRR's feed range entries.
//
// A range entry (engine/feed_range.h) names the rows a window wrote
// together, and counts them. When a later write takes one of those rows off
// the run the range named it by, the feed entry that goes is the range's,
// not a point entry: the range loses that row, and a range left with none
// is deleted. Without this, a table updated again and again would keep
// every update's ranges, and a reader would walk every row once per range
// that ever named it: O(history), not O(result).
//
// Which range counted a row is never ambiguous: two counted ranges of one
// version never cover the same run (Fits, and MakeFeedRanges within one
// window), and a counted range covers at most kMaxRangeSpan runs, so the
// range covering a run is found in a bounded stretch of the feed. A row the
// keeper cannot place (a format 3 range, or a stretch too crowded to
// search) stays counted: its range then outlives its rows, costing readers
// skipped rows as before, and is never deleted while it names one.
//
// Errors: a failing statement returns its error; the caller's transaction
// must then roll back, like any failed metadata write.
// Thread safety: none; one per Crr, on the connection's thread.
#ifndef CRSYNC_ENGINE_RANGE_KEEPER_H_
#define CRSYNC_ENGINE_RANGE_KEEPER_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crsync/sqlite_handles.h"
#include "crsync/status.h"
#include "engine/feed_range.h"
#include "engine/row_buf.h"

namespace crsync {

class RangeKeeper {
 public:
  // `feed_table` is the CRR's feed table, quoted for SQL.
  RangeKeeper(sqlite3* db, std::string feed_table) : db_(db), feed_(std::move(feed_table)) {}

  // *fits = whether a range of version `c.dbv` covering runs [c.lo, c.hi]
  // may be made: no stored range of that version covers any of them.
  // False as well when more feed entries lie in the way than it will
  // search (the window's entries then stay point entries).
  Status Fits(const RangeCandidate& c, bool* fits);

  // Deletes the point entries `entries` (feed entries: dbv, lo, pk) with
  // one statement; each that was not stored was a range's row, which that
  // range loses (Apply() is run).
  Status DeleteEntries(const RowBuf& entries);

  // Row `pk` no longer has run `run` of version `dbv`, and no point entry
  // named it: notes that the range which did has lost it. Apply() writes
  // the new counts.
  void Lost(int64_t dbv, int64_t run, std::string_view pk) {
    lost_.push_back(Loss{dbv, run, std::string(pk)});
  }
  bool has_losses() const { return !lost_.empty(); }
  // Lowers each range's count by the rows it lost (each loss once),
  // deleting those left with none; forgets the losses (also on error).
  Status Apply();
  // Forgets losses not applied: a write that fails after noting some must
  // not leave them for the next Apply() (its rollback keeps those rows in
  // their ranges).
  void Forget() { lost_.clear(); }

 private:
  struct Loss {
    int64_t dbv, run;
    std::string pk;
  };
  struct Found {  // a counted range and the rows it lost
    int64_t dbv = 0, lo = 0, hi = 0, rows = 0, lost = 0;
    std::string marker, first, last;
    bool Covers(const Loss& l) const {
      return l.dbv == dbv && lo <= l.run && l.run <= hi && std::string_view(first) <= l.pk &&
             l.pk <= std::string_view(last);
    }
  };
  // Steps the feed entries of version `dbv` with lo in [from, to],
  // descending, calling on_marker(lo, marker blob) for each range entry
  // until it returns true (*stopped) or the entries run out; *crowded when
  // more entries than kMaxProbe were in the way.
  template <typename OnMarker>
  Status Probe(int64_t dbv, int64_t from, int64_t to, OnMarker&& on_marker, bool* stopped,
               bool* crowded);
  // The range covering loss `l`, if counted: from the ranges met lately
  // when one of them is still stored as it was, else by a probe. *f is
  // left empty (f->rows < 0) when there is none.
  Status Locate(const Loss& l, Found* f);
  // Whether the feed holds exactly this entry.
  Status Stored(const Found& f, bool* stored);
  // Binds f's key (dbv, lo, marker) to parameters 1-3 of `st`.
  static void BindKey(sqlite3_stmt* st, const Found& f);
  template <typename MakeSql>
  Status Prepared(StmtPtr* slot, MakeSql&& make_sql, sqlite3_stmt** out);

  // The most feed entries a probe steps over: every entry of a stretch
  // twice kMaxRangeSpan runs long when each run has one (a transaction's
  // own writes: their runs are distinct seqs), so only merged rows that
  // share their sender's seqs can crowd a probe out.
  static constexpr int kMaxProbe = 2 * kMaxRangeSpan + 2;
  // Ranges remembered from earlier Apply() calls: a row-by-row writer
  // loses rows of the same few ranges one call after another, and a seek
  // confirming one is cheaper than a probe stepping over the point
  // entries of rows that left it.
  static constexpr size_t kRecent = 16;

  sqlite3* db_;
  std::string feed_;
  StmtPtr probe_, exists_, del_, add_, bulk_del_;
  std::vector<Loss> lost_;
  std::vector<Found> found_;
  std::vector<Found> recent_;  // most recently used last
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_RANGE_KEEPER_H_
