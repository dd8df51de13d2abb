#include "engine/merger.h"

#include "engine/packed.h"
#include "engine/row_meta.h"

namespace crsync {
namespace {

// Sets the connection's sync bit for the lifetime of the scope, so the
// recording triggers ignore the merge's own user-table writes (§11.7).
class SyncBitScope {
 public:
  explicit SyncBitScope(ConnEngine* e) : e_(e) { e_->set_sync_bit(true); }
  ~SyncBitScope() { e_->set_sync_bit(false); }
  SyncBitScope(const SyncBitScope&) = delete;
  SyncBitScope& operator=(const SyncBitScope&) = delete;

 private:
  ConnEngine* e_;
};

void BindPk(sqlite3_stmt* st, const std::vector<Value>& pk) {
  for (size_t i = 0; i < pk.size(); ++i) pk[i].Bind(st, static_cast<int>(i + 1));
}

enum class Outcome { kIgnore, kDelete, kResurrect, kResurrectWin, kWin };

}  // namespace

Status Merger::Validate(const MergeInput& in, Crr** out, std::vector<Value>* pk_vals, int* slot) {
  std::string t(in.table);
  Crr* crr = e_->catalog().ByName(t);
  if (!crr) {
    CRSYNC_RETURN_IF_ERROR(e_->catalog().Refresh());
    crr = e_->catalog().ByName(t);
  }
  if (!crr) {
    return Status::InvalidArgument("crsql - could not find the schema information for table " + t);
  }
  Status s = UnpackValues(in.pk, pk_vals);
  if (!s.ok()) return Status::InvalidArgument("crsql - malformed pk for table " + t + ": " + s.message());
  size_t npk = crr->schema().pk_cols.size();
  if (pk_vals->size() != npk) {
    return Status::InvalidArgument("crsql - malformed pk for table " + t + ": expected " +
                                   std::to_string(npk) + " values, got " +
                                   std::to_string(pk_vals->size()));
  }
  for (size_t i = 0; i < npk; ++i) {
    if ((*pk_vals)[i].type == SQLITE_NULL) {
      return Status::InvalidArgument("crsql - malformed pk for table " + t + ": NULL value for " +
                                     crr->schema().pk_cols[i]);
    }
  }
  if (in.cid == "-1") {
    *slot = -1;
  } else {
    *slot = crr->SlotOf(in.cid);
    if (*slot < 0) {
      for (const auto& p : crr->schema().pk_cols) {
        if (p == in.cid) {
          return Status::InvalidArgument("crsql - " + std::string(in.cid) +
                                         " is a primary key column of " + t);
        }
      }
      return Status::InvalidArgument("crsql - no such column " + t + "." + std::string(in.cid));
    }
  }
  if (in.col_version < 0) return Status::InvalidArgument("crsql - col_version must be a non-negative integer");
  if (in.db_version < 0) return Status::InvalidArgument("crsql - db_version must be a non-negative integer");
  if (in.site && in.site->size() != kSiteIdLen) {
    return Status::InvalidArgument("crsql - site id must be a 16 byte blob");
  }
  if (in.cl) {
    if (*in.cl < 1) return Status::InvalidArgument("crsql - cl must be a positive integer");
    if (*slot >= 0 && *in.cl % 2 == 0) {
      return Status::InvalidArgument("crsql - column changes must have an odd cl");
    }
    if (*slot < 0 && *in.cl != in.col_version) {
      return Status::InvalidArgument("crsql - sentinel cl must equal col_version");
    }
  }
  if (in.seq && *in.seq < 0) return Status::InvalidArgument("crsql - seq must be a non-negative integer");
  *out = crr;
  return Status::OK();
}

Status Merger::Merge(const MergeInput& in, int64_t* impacted,
                     std::pair<std::string, int64_t>* peer_key, PeerMark* mark, bool* tracked) {
  *impacted = 0;
  *tracked = false;
  Crr* crr;
  std::vector<Value> pk;
  int slot;
  CRSYNC_RETURN_IF_ERROR(Validate(in, &crr, &pk, &slot));
  canonical_pk_.clear();
  PackValues(pk, &canonical_pk_);
  const std::string& key = canonical_pk_;

  bool local = !in.site || *in.site == e_->site_id();
  RowMeta before;
  bool found;
  CRSYNC_RETURN_IF_ERROR(crr->LoadMeta(key, &before, &found, /*use_cache=*/true));
  const int64_t L = before.CausalLength();

  // Causal length of the change: given, or inferred (§11.3).
  int64_t I;
  if (in.cl) {
    I = *in.cl;
  } else if (slot < 0) {
    I = in.col_version;
  } else {
    I = L == 0 ? 1 : (L % 2 == 1 ? L : L - 1);
  }
  const int64_t SQ = in.seq ? *in.seq : e_->TakeSeq();

  Outcome outcome = Outcome::kIgnore;
  if (I < L) {
    outcome = Outcome::kIgnore;                                  // C1
  } else if (I % 2 == 0) {
    outcome = I == L ? Outcome::kIgnore : Outcome::kDelete;      // C2 / C3
  } else if (slot < 0) {
    outcome = I == L ? Outcome::kIgnore : Outcome::kResurrect;   // C4 / C5
  } else if (I > L) {
    outcome = (L > 0 || I > 1) ? Outcome::kResurrectWin : Outcome::kWin;  // C6 / C7
  } else {
    // C8: same life; compare the column's clocks, then values.
    const Clock& local_clock = before.cols[slot];
    if (!local_clock.present || in.col_version > local_clock.col_version) {
      outcome = Outcome::kWin;
    } else if (in.col_version == local_clock.col_version) {
      sqlite3_stmt* get;
      CRSYNC_RETURN_IF_ERROR(crr->UserGetColumn(slot, &get));
      BindPk(get, pk);
      int rc = sqlite3_step(get);
      if (rc != SQLITE_ROW) {
        sqlite3_reset(get);
        if (rc == SQLITE_DONE) {
          return Status::Corruption("could not find row to merge with for tbl " + crr->name());
        }
        return SqliteError(e_->db(), rc);
      }
      int c = CompareValue(sqlite3_column_value(get, 0), in.val);
      sqlite3_reset(get);
      if (c < 0) {
        outcome = Outcome::kWin;
      } else if (c == 0 && e_->merge_equal_values()) {
        const std::string& incoming = local ? e_->site_id() : std::string(*in.site);
        const std::string& mine = e_->SiteIdOf(local_clock.site);
        if (incoming > mine) outcome = Outcome::kWin;
      }
    }
  }

  if (outcome != Outcome::kIgnore) {
    // 1. The user-table write, the only step that can fail on valid input.
    {
      SyncBitScope sync(e_);
      sqlite3_stmt* st;
      if (outcome == Outcome::kDelete) {
        CRSYNC_RETURN_IF_ERROR(crr->UserDelete(&st));
      } else if (outcome == Outcome::kResurrect) {
        CRSYNC_RETURN_IF_ERROR(crr->UserInsertPk(&st));
      } else {
        CRSYNC_RETURN_IF_ERROR(crr->UserUpsert(slot, &st));
        in.val.Bind(st, static_cast<int>(pk.size() + 1));
      }
      BindPk(st, pk);
      CRSYNC_RETURN_IF_ERROR(StepToEnd(e_->db(), st));
    }
    // 2. Metadata.
    int64_t ord = 0;
    if (!local) CRSYNC_RETURN_IF_ERROR(e_->SiteOrdinal(*in.site, true, &ord));
    int64_t dbv;
    CRSYNC_RETURN_IF_ERROR(e_->NextDbVersion(in.db_version, &dbv));
    RowMeta after = before;
    Clock stamp{true, in.col_version, dbv, SQ, ord, 0};
    switch (outcome) {
      case Outcome::kDelete:
        for (Clock& c : after.cols) c = Clock{};
        after.sentinel = stamp;
        after.sentinel.col_version = I;
        *impacted = 1;
        break;
      case Outcome::kResurrect:
      case Outcome::kResurrectWin:
        for (Clock& c : after.cols) {
          if (!c.present) continue;
          c.col_version = 0;
          c.db_version = dbv;
        }
        after.sentinel = stamp;
        after.sentinel.col_version = I;
        if (outcome == Outcome::kResurrectWin) {
          after.cols[slot] = stamp;
          *impacted = 2;
        } else {
          *impacted = 1;
        }
        break;
      case Outcome::kWin:
        after.cols[slot] = stamp;
        *impacted = 1;
        break;
      case Outcome::kIgnore:
        break;
    }
    CRSYNC_RETURN_IF_ERROR(crr->StoreMeta(key, before, std::move(after), /*cache=*/true));
    e_->AddRowsImpacted(*impacted);
  }

  if (!local && in.tag != -1 && peer_key) {
    peer_key->first.assign(in.site->data(), in.site->size());
    peer_key->second = in.tag;
    mark->version = in.db_version;
    mark->seq = in.seq ? *in.seq : 0;
    *tracked = true;
  }
  return Status::OK();
}

Status Merger::TrackPeer(const std::string& site, int64_t tag, const PeerMark& mark) {
  if (!track_) {
    CRSYNC_RETURN_IF_ERROR(Prepare(
        e_->db(),
        "INSERT INTO main.crsql_tracked_peers(site_id, version, seq, tag, event) "
        "VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT (site_id, tag, event) DO UPDATE SET "
        "version = excluded.version, seq = excluded.seq WHERE excluded.version > version OR "
        "(excluded.version = version AND (seq IS NULL OR excluded.seq > seq))",
        &track_, SQLITE_PREPARE_PERSISTENT));
  }
  sqlite3_stmt* st = track_.get();
  sqlite3_bind_blob(st, 1, site.data(), static_cast<int>(site.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, mark.version);
  sqlite3_bind_int64(st, 3, mark.seq);
  sqlite3_bind_int64(st, 4, tag);
  return StepToEnd(e_->db(), st);
}

}  // namespace crsync
