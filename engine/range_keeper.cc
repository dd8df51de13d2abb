// engine/range_keeper.cc — see engine/range_keeper.h.
#include "engine/range_keeper.h"

#include <algorithm>
#include <tuple>

namespace crsync {

template <typename MakeSql>
Status RangeKeeper::Prepared(StmtPtr* slot, MakeSql&& make_sql, sqlite3_stmt** out) {
  if (!*slot) CRSYNC_RETURN_IF_ERROR(Prepare(db_, make_sql(), slot, SQLITE_PREPARE_PERSISTENT));
  *out = slot->get();
  return Status::OK();
}

template <typename OnMarker>
Status RangeKeeper::Probe(int64_t dbv, int64_t from, int64_t to, OnMarker&& on_marker,
                          bool* stopped, bool* crowded) {
  *stopped = *crowded = false;
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Prepared(&probe_, [&] {
    return "SELECT lo, pk FROM main." + feed_ +
           " WHERE dbv = ?1 AND lo BETWEEN ?2 AND ?3 ORDER BY lo DESC, pk DESC";
  }, &st));
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

void RangeKeeper::BindKey(sqlite3_stmt* st, const Found& f) {
  sqlite3_bind_int64(st, 1, f.dbv);
  sqlite3_bind_int64(st, 2, f.lo);
  sqlite3_bind_blob(st, 3, f.marker.data(), static_cast<int>(f.marker.size()), SQLITE_STATIC);
}

Status RangeKeeper::DeleteEntries(const RowBuf& entries) {
  if (entries.rows.empty()) return Status::OK();
  // crsync_feed_found notes each entry found, by binary search: sorted.
  const RowBuf* del = &entries;
  RowBuf sorted;
  if (!std::is_sorted(del->rows.begin(), del->rows.end(), FeedKeyLess)) {
    sorted = entries;
    std::sort(sorted.rows.begin(), sorted.rows.end(), FeedKeyLess);
    del = &sorted;
  }
  FeedMarks marks;
  marks.buf = del;
  marks.found.assign(del->rows.size(), false);
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Prepared(&bulk_del_, [&] {
    return "DELETE FROM main." + feed_ +
           " WHERE (dbv, lo, pk) IN (SELECT dbv, lo, pk FROM crsync_rowbuf(?1))"
           " AND crsync_feed_found(?2, dbv, lo, pk)";
  }, &st));
  sqlite3_bind_pointer(st, 1, const_cast<RowBuf*>(del), kRowBufPointerType, nullptr);
  sqlite3_bind_pointer(st, 2, &marks, kFeedMarksPointerType, nullptr);
  Status s = StepToEnd(db_, st);
  sqlite3_clear_bindings(st);
  CRSYNC_RETURN_IF_ERROR(s);
  if (marks.count == del->rows.size()) return Status::OK();
  for (size_t i = 0; i < del->rows.size(); ++i) {
    const RowBuf::Row& r = del->rows[i];
    if (!marks.found[i]) Lost(r.dbv, r.lo, r.pk);
  }
  return Apply();
}

Status RangeKeeper::Stored(const Found& f, bool* stored) {
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(Prepared(&exists_, [&] {
    return "SELECT 1 FROM main." + feed_ + " WHERE dbv = ?1 AND lo = ?2 AND pk = ?3";
  }, &st));
  BindKey(st, f);
  const int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db_, rc);
  *stored = rc == SQLITE_ROW;
  return Status::OK();
}

Status RangeKeeper::Locate(const Loss& l, Found* f) {
  f->rows = -1;
  for (size_t i = recent_.size(); i-- > 0;) {
    if (!recent_[i].Covers(l)) continue;
    // Still stored with that count, it is the one range covering the run.
    bool stored;
    CRSYNC_RETURN_IF_ERROR(Stored(recent_[i], &stored));
    if (stored) {
      *f = recent_[i];
      std::rotate(recent_.begin() + static_cast<std::ptrdiff_t>(i),
                  recent_.begin() + static_cast<std::ptrdiff_t>(i) + 1, recent_.end());
      return Status::OK();
    }
    recent_.erase(recent_.begin() + static_cast<std::ptrdiff_t>(i));
    break;
  }
  bool covered, crowded;
  CRSYNC_RETURN_IF_ERROR(Probe(
      l.dbv, l.run - kMaxRangeSpan, l.run,
      [&](int64_t lo, std::string_view marker) {
        FeedRange r;
        if (!DecodeFeedRange(marker, lo, &r) || r.hi < l.run) return false;
        // The one range of this version covering the run (if counted).
        f->dbv = l.dbv;
        f->lo = lo;
        f->hi = r.hi;
        f->rows = r.rows;
        f->marker.assign(marker);
        f->first.assign(r.first);
        f->last.assign(r.last);
        return true;
      },
      &covered, &crowded));
  if (!covered || f->rows < 0 || !f->Covers(l)) {
    f->rows = -1;
    return Status::OK();
  }
  if (recent_.size() == kRecent) recent_.erase(recent_.begin());
  recent_.push_back(*f);
  return Status::OK();
}

Status RangeKeeper::Apply() {
  std::vector<Loss> lost;
  lost.swap(lost_);
  found_.clear();
  std::sort(lost.begin(), lost.end(), [](const Loss& a, const Loss& b) {
    return std::tie(a.dbv, a.run, a.pk) < std::tie(b.dbv, b.run, b.pk);
  });
  // A row leaves a run once: a repeated loss must not count twice.
  lost.erase(std::unique(lost.begin(), lost.end(),
                         [](const Loss& a, const Loss& b) {
                           return a.dbv == b.dbv && a.run == b.run && a.pk == b.pk;
                         }),
             lost.end());
  // Losses sorted by run meet each range in one stretch (counted ranges
  // of a version cover disjoint runs).
  for (const Loss& l : lost) {
    if (!found_.empty() && found_.back().Covers(l)) {
      ++found_.back().lost;
      continue;
    }
    Found f;
    CRSYNC_RETURN_IF_ERROR(Locate(l, &f));
    if (f.rows < 0) continue;  // none counted it: stays as it is
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
  std::string marker;
  for (Found& f : found_) {
    const int64_t rows = f.rows - f.lost;
    // The marker goes; unless it names no row any more, a new one with the
    // new count takes its place (a delete and an insert cost less than an
    // UPDATE of the key). Fewer than none: the count went wrong somewhere;
    // the range stays, uncounted, rather than risk losing a row it names.
    sqlite3_stmt* st = nullptr;
    CRSYNC_RETURN_IF_ERROR(Prepared(&del_, [&] {
      return "DELETE FROM main." + feed_ + " WHERE dbv = ?1 AND lo = ?2 AND pk = ?3";
    }, &st));
    BindKey(st, f);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, st));
    if (rows != 0) {
      EncodeFeedRange(f.lo, f.hi, rows > 0 ? rows : -1, f.first, f.last, &marker);
      CRSYNC_RETURN_IF_ERROR(Prepared(&add_, [&] {
        return "INSERT OR IGNORE INTO main." + feed_ + "(dbv, lo, pk) VALUES (?1, ?2, ?3)";
      }, &st));
      sqlite3_bind_int64(st, 1, f.dbv);
      sqlite3_bind_int64(st, 2, f.lo);
      sqlite3_bind_blob(st, 3, marker.data(), static_cast<int>(marker.size()), SQLITE_STATIC);
      CRSYNC_RETURN_IF_ERROR(StepToEnd(db_, st));
    }
    // What the recent ranges hold must be what is stored.
    for (Found& r : recent_) {
      if (r.dbv != f.dbv || r.lo != f.lo || r.marker != f.marker) continue;
      r.rows = rows;
      r.marker = marker;
    }
    if (rows <= 0) {
      recent_.erase(std::remove_if(recent_.begin(), recent_.end(),
                                   [&](const Found& r) { return r.rows <= 0; }),
                    recent_.end());
    }
  }
  found_.clear();
  return Status::OK();
}

}  // namespace crsync
