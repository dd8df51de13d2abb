// engine/range_keeper.cc — see engine/range_keeper.h.
#include "engine/range_keeper.h"

#include <algorithm>
#include <tuple>

namespace crsync {

Status RangeKeeper::Prepared(StmtPtr* slot, const std::string& sql, sqlite3_stmt** out) {
  if (!*slot) CRSYNC_RETURN_IF_ERROR(Prepare(db_, sql, slot, SQLITE_PREPARE_PERSISTENT));
  *out = slot->get();
  return Status::OK();
}

template <typename OnMarker>
Status RangeKeeper::Probe(int64_t dbv, int64_t from, int64_t to, OnMarker&& on_marker,
                          bool* stopped, bool* crowded) {
  *stopped = *crowded = false;
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Prepared(&probe_,
                                  "SELECT lo, pk FROM main." + feed_ +
                                      " WHERE dbv = ?1 AND lo BETWEEN ?2 AND ?3"
                                      " ORDER BY lo DESC, pk DESC",
                                  &st));
  sqlite3_bind_int64(st, 1, dbv);
  sqlite3_bind_int64(st, 2, from);
  sqlite3_bind_int64(st, 3, to);
  int rc;
  int steps = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (++steps > kMaxProbe) {
      *crowded = true;
      break;
    }
    sqlite3_value* pk = sqlite3_column_value(st, 1);
    if (sqlite3_value_bytes(pk) == 0) continue;
    const char* bytes = static_cast<const char*>(sqlite3_value_blob(pk));
    if (bytes[0] != '\0') continue;  // a point entry
    if (on_marker(sqlite3_column_int64(st, 0),
                  std::string_view(bytes, static_cast<size_t>(sqlite3_value_bytes(pk))))) {
      *stopped = true;
      break;
    }
  }
  Status s = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? Status::OK() : SqliteError(db_, rc);
  sqlite3_reset(st);
  return s;
}

Status RangeKeeper::Fits(const RangeCandidate& c, bool* fits) {
  bool overlap, crowded;
  CRSYNC_RETURN_IF_ERROR(Probe(
      c.dbv, c.lo - kMaxRangeSpan, c.hi,
      [&](int64_t lo, std::string_view marker) {
        FeedRange r;
        return DecodeFeedRange(marker, lo, &r) && lo <= c.hi && r.hi >= c.lo;
      },
      &overlap, &crowded));
  *fits = !overlap && !crowded;
  return Status::OK();
}

Status RangeKeeper::Apply() {
  std::vector<Loss> lost;
  lost.swap(lost_);
  found_.clear();
  std::sort(lost.begin(), lost.end(), [](const Loss& a, const Loss& b) {
    return std::tie(a.dbv, a.run, a.pk) < std::tie(b.dbv, b.run, b.pk);
  });
  // Losses sorted by run meet each range in one stretch (counted ranges
  // of a version cover disjoint runs): one probe per range.
  for (const Loss& l : lost) {
    if (!found_.empty() && found_.back().Covers(l)) {
      ++found_.back().lost;
      continue;
    }
    Found f;
    bool covered, crowded;
    CRSYNC_RETURN_IF_ERROR(Probe(
        l.dbv, l.run - kMaxRangeSpan, l.run,
        [&](int64_t lo, std::string_view marker) {
          FeedRange r;
          if (!DecodeFeedRange(marker, lo, &r) || r.hi < l.run) return false;
          // The one range of this version covering the run (if counted).
          f.dbv = l.dbv;
          f.lo = lo;
          f.hi = r.hi;
          f.rows = r.rows;
          f.marker.assign(marker);
          f.first.assign(r.first);
          f.last.assign(r.last);
          return true;
        },
        &covered, &crowded));
    if (!covered || f.rows < 0 || !f.Covers(l)) continue;  // stays as it is
    auto same = std::find_if(found_.begin(), found_.end(), [&](const Found& g) {
      return g.dbv == f.dbv && g.lo == f.lo && g.marker == f.marker;
    });
    if (same != found_.end()) {
      ++same->lost;
    } else {
      f.lost = 1;
      found_.push_back(std::move(f));
    }
  }
  sqlite3_stmt *del = nullptr, *add = nullptr;
  if (!found_.empty()) {
    CRSYNC_RETURN_IF_ERROR(Prepared(
        &del_, "DELETE FROM main." + feed_ + " WHERE dbv = ?1 AND lo = ?2 AND pk = ?3", &del));
    CRSYNC_RETURN_IF_ERROR(Prepared(
        &add_, "INSERT OR IGNORE INTO main." + feed_ + "(dbv, lo, pk) VALUES (?1, ?2, ?3)", &add));
  }
  std::string marker;
  for (const Found& f : found_) {
    sqlite3_bind_int64(del, 1, f.dbv);
    sqlite3_bind_int64(del, 2, f.lo);
    sqlite3_bind_blob(del, 3, f.marker.data(), static_cast<int>(f.marker.size()), SQLITE_STATIC);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, del));
    const int64_t rows = f.rows - f.lost;
    if (rows == 0) continue;  // names no row any more
    // Fewer than none: the count went wrong somewhere; the range stays,
    // uncounted, rather than risk losing a row it still names.
    EncodeFeedRange(f.lo, f.hi, rows > 0 ? rows : -1, f.first, f.last, &marker);
    sqlite3_bind_int64(add, 1, f.dbv);
    sqlite3_bind_int64(add, 2, f.lo);
    sqlite3_bind_blob(add, 3, marker.data(), static_cast<int>(marker.size()), SQLITE_STATIC);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, add));
  }
  found_.clear();
  return Status::OK();
}

}  // namespace crsync
