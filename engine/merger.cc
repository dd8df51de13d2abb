#include "engine/merger.h"

#include <cmath>

#include "common/hex.h"
#include "crsync/engine.h"
#include "engine/alter.h"
#include "engine/packed.h"
#include "engine/row_meta.h"
#include "engine/user_writes.h"

namespace crsync {
namespace {

enum class Outcome { kIgnore, kDelete, kResurrect, kResurrectWin, kWin };

}  // namespace

Status Merger::Validate(const MergeInput& in, Crr** out, std::vector<Value>* pk_vals, int* slot,
                        bool same_row) {
  if (same_row) return ValidateChange(in, *out, slot);  // table and pk checked already
  CRSYNC_RETURN_IF_ERROR(e_->CheckCatalog());
  if (last_.valid && last_.generation == e_->catalog().generation() && last_.table == in.table &&
      last_.pk_bytes == in.pk) {
    *out = last_.crr;
    *pk_vals = last_.pk_vals;
    return ValidateChange(in, last_.crr, slot);
  }
  last_.valid = false;
  std::string t(in.table);
  Crr* crr = e_->catalog().ByName(t);
  if (!crr) {
    CRSYNC_RETURN_IF_ERROR(e_->catalog().Refresh());
    crr = e_->catalog().ByName(t);
  }
  if (!crr) {
    return Status::InvalidArgument("crsql - could not find the schema information for table " + t);
  }
  if (!crr->ShapeMatches()) CRSYNC_RETURN_IF_ERROR(CheckShapeForMerge(e_, crr));
  Status s = UnpackValues(in.pk, pk_vals);
  if (!s.ok()) return Status::InvalidArgument("crsql - malformed pk for table " + t + ": " + s.message());
  size_t npk = crr->schema().pk_cols.size();
  if (pk_vals->size() != npk) {
    return Status::InvalidArgument("crsql - malformed pk for table " + t + ": expected " +
                                   std::to_string(npk) + " values, got " +
                                   std::to_string(pk_vals->size()));
  }
  // A peer may send '1' for an INTEGER key: convert with each pk column's
  // affinity so it names the same row as here (§9.1, D14).
  const std::vector<char>* affinity;
  CRSYNC_RETURN_IF_ERROR(crr->PkAffinity(&affinity));
  for (size_t i = 0; i < npk; ++i) {
    const Value& v = (*pk_vals)[i];
    if (v.type == SQLITE_NULL) {
      return Status::InvalidArgument("crsql - malformed pk for table " + t + ": NULL value for " +
                                     crr->schema().pk_cols[i]);
    }
    if (v.type == SQLITE_TEXT && e_->utf16() && !SurvivesUtf16(v.bytes)) {
      // SQLite would store other text (U+FFFD) than the key names: the row
      // would take a second identity here, and replicas would diverge.
      return Status::InvalidArgument("crsql - malformed pk for table " + t + ": text for " +
                                     crr->schema().pk_cols[i] +
                                     " is not valid UTF-8, which this UTF-16 database cannot "
                                     "store as sent");
    }
    if (v.type == SQLITE_FLOAT && std::isnan(v.d)) {
      // SQLite stores a NaN as NULL: the key would name no row (or, for an
      // INTEGER PRIMARY KEY, a new rowid of its choosing).
      return Status::InvalidArgument("crsql - malformed pk for table " + t + ": NaN value for " +
                                     crr->schema().pk_cols[i]);
    }
    if ((*affinity)[i] != 'b') (*pk_vals)[i] = ApplyAffinity((*pk_vals)[i], (*affinity)[i]);
    if (crr->rowid_key() && (*pk_vals)[i].type != SQLITE_INTEGER) {
      // SQLite's own refusal ("datatype mismatch") would name neither.
      return Status::InvalidArgument("crsql - malformed pk for table " + t + ": " +
                                     crr->schema().pk_cols[i] +
                                     " is its INTEGER PRIMARY KEY (the rowid), and the value is " +
                                     ((*pk_vals)[i].type == SQLITE_FLOAT ? "a real"
                                      : (*pk_vals)[i].type == SQLITE_TEXT ? "text"
                                                                         : "a blob") +
                                     " that is no integer");
    }
  }
  *out = crr;
  last_.generation = e_->catalog().generation();
  last_.table.assign(in.table.data(), in.table.size());
  last_.pk_bytes.assign(in.pk.data(), in.pk.size());
  last_.crr = crr;
  last_.pk_vals = *pk_vals;
  last_.valid = true;
  return ValidateChange(in, crr, slot);
}

// The checks of one change that do not depend on its table and pk.
Status Merger::ValidateChange(const MergeInput& in, Crr* crr, int* slot) {
  auto t = [&] { return std::string(in.table); };  // as the change names it, for messages
  if (in.cid == "-1") {
    *slot = -1;
  } else {
    *slot = crr->SlotOf(in.cid);
    if (*slot < 0) {
      for (const auto& p : crr->schema().pk_cols) {
        if (p == in.cid) {
          return Status::InvalidArgument("crsql - " + std::string(in.cid) +
                                         " is a primary key column of " + t());
        }
      }
      StmtPtr st;  // a generated column exists, but is never replicated: say so
      if (Prepare(e_->db(), "SELECT 1 FROM pragma_table_xinfo(?1, 'main') WHERE name = ?2 AND "
                            "hidden IN (2, 3)", &st).ok()) {
        sqlite3_bind_text(st.get(), 1, crr->name().c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st.get(), 2, in.cid.data(), static_cast<int>(in.cid.size()),
                          SQLITE_TRANSIENT);
        if (sqlite3_step(st.get()) == SQLITE_ROW) {
          return Status::InvalidArgument("crsql - " + t() + "." + std::string(in.cid) +
                                         " is a generated column: each replica computes it, so "
                                         "changes never carry it");
        }
      }
      return Status::InvalidArgument("crsql - no such column " + t() + "." + std::string(in.cid));
    }
    if (!e_->open_alters().empty() && e_->open_alters().count(crr->name())) {
      // Mid-alter the CRR's columns are the old ones until the commit
      // reconciles them: one the alter dropped is not in the table.
      const std::string cid(in.cid);
      if (sqlite3_table_column_metadata(e_->db(), "main", crr->name().c_str(), cid.c_str(), nullptr,
                                        nullptr, nullptr, nullptr, nullptr) != SQLITE_OK) {
        return Status::InvalidArgument(
            "crsql - column " + crr->name() + "." + cid +
            " is not in the table while its alter is open (crsql_begin_alter); merge this change "
            "after crsql_commit_alter");
      }
    }
  }
  if (*slot >= 0 && in.val.type == SQLITE_TEXT && e_->utf16() && !SurvivesUtf16(in.val.bytes)) {
    return Status::InvalidArgument("crsql - the value for " + t() + "." + std::string(in.cid) +
                                   " is text that is not valid UTF-8, which this UTF-16 database "
                                   "cannot store as sent (replicas would keep different bytes)");
  }
  if (in.col_version < 0) return Status::InvalidArgument("crsql - col_version must be a non-negative integer");
  if (in.db_version < 0) return Status::InvalidArgument("crsql - db_version must be a non-negative integer");
  if (in.col_version > kMaxChangeVersion || in.db_version > kMaxChangeVersion ||
      (in.cl && *in.cl > kMaxChangeVersion)) {
    return Status::InvalidArgument("crsql - col_version, db_version and cl must be at most " +
                                   std::to_string(kMaxChangeVersion));
  }
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
  if (!in.cl && *slot < 0 && in.col_version < 1) {
    // The inferred cl (§11.3: a sentinel's cl is its col_version) must be
    // valid as a given one: a causal length starts at 1.
    return Status::InvalidArgument(
        "crsql - cl must be a positive integer (a sentinel's cl is its col_version, here 0)");
  }
  if (in.seq && *in.seq < 0) return Status::InvalidArgument("crsql - seq must be a non-negative integer");
  return Status::OK();
}

Status Merger::Merge(const MergeInput& in, int64_t* impacted) {
  return MergeRow(&in, 1, impacted, nullptr);
}

bool Merger::CountsForTracking(const MergeInput& in) const {
  return in.site && *in.site != e_->site_id() && in.tag != -1;
}

struct Merger::Scratch {
  std::vector<Value> pk;
  std::vector<int> slots;
  std::string key;  // the canonical packed pk
  RowMeta before, after;
  RowWrite write;
  std::vector<std::string> new_sites;  // first seen in this MergeRow
  std::vector<int> write_slots;
  bool write_behind = false;  // this MergeRow's metadata is written behind
};

Merger::Merger(ConnEngine* e) : e_(e) {}
Merger::~Merger() = default;

Status Merger::MergeRow(const MergeInput* ins, size_t n, int64_t* impacted,
                        std::vector<TrackedMark>* marks, size_t* failed) {
  if (scratch_.size() <= depth_) scratch_.push_back(std::make_unique<Scratch>());
  Scratch* s = scratch_[depth_].get();
  // Written behind only by a merge that is not inside another merge's
  // user-table write (a user trigger merging too): that write's failure
  // would undo this merge while its row was still held.
  s->write_behind = write_behind_ && depth_ == 0 && !e_->in_merge_write();
  // A row that fails leaves no trace (§12.3), not even the version it
  // raised or the seqs it took: later writes of the transaction keep the
  // ones they had. The same when it throws (the caller's guard turns that
  // into an error).
  struct Frame {
    Merger* m;
    int64_t pending;
    int64_t seq;
    bool ok = false;
    ~Frame() {
      --m->depth_;
      if (ok) return;
      m->e_->RestorePendingVersion(pending);
      m->e_->RestoreSeq(seq);
    }
  } frame{this, e_->pending_version(), e_->PeekSeq()};
  ++depth_;
  Status st = MergeRowWith(s, ins, n, impacted, marks, failed);
  frame.ok = st.ok();
  return st;
}

Status Merger::MergeRowWith(Scratch* s, const MergeInput* ins, size_t n, int64_t* impacted,
                            std::vector<TrackedMark>* marks, size_t* failed) {
  *impacted = 0;
  if (failed) *failed = n;
  std::vector<std::string>& new_sites = s->new_sites;
  new_sites.clear();
  // Validate everything first: a bad change writes nothing.
  Crr* crr = nullptr;
  std::vector<Value>& pk = s->pk;
  s->slots.resize(n);
  for (size_t i = 0; i < n; ++i) {
    // Later changes of the run name the same table and pk bytes (the
    // caller's contract): they are resolved once.
    bool same_row = i > 0 && ins[i].table == ins[0].table && ins[i].pk == ins[0].pk;
    if (i > 0 && !same_row) return Status::InvalidArgument("crsql - MergeRow needs one row");
    Status v = Validate(ins[i], &crr, &pk, &s->slots[i], same_row);
    if (!v.ok()) {
      if (failed) *failed = i;
      return v;
    }
  }
  const uint64_t generation = e_->catalog().generation();  // `crr` is valid in it
  s->key.clear();
  const std::vector<char>* key_affinity;
  CRSYNC_RETURN_IF_ERROR(crr->PkAffinity(&key_affinity));
  PackKey(pk, *key_affinity, &s->key);  // 1.0 and 1 in an untyped key: one row
  const std::string& key = s->key;

  RowMeta& before = s->before;
  bool found = false;
  if (const RowMeta* held = batch_ ? batch_->Find(*crr, key) : nullptr) {
    before = *held;
  } else {
    CRSYNC_RETURN_IF_ERROR(crr->LoadMeta(key, &before, &found, /*use_cache=*/true));
  }
  RowMeta& after = s->after;
  after = before;
  RowWrite& write = s->write;
  write.Reset();
  int64_t total = 0;
  // The user write an earlier run of this batch holds for the row.
  const RowWrite* held = hold_user_writes_ ? batch_->FindUserWrite(*crr, key) : nullptr;

  for (size_t i = 0; i < n; ++i) {
    const MergeInput& in = ins[i];
    const int slot = s->slots[i];
    bool local = !in.site || *in.site == e_->site_id();
    const int64_t L = after.CausalLength();

    // Causal length of the change: given, or inferred (§11.3).
    int64_t I;
    if (in.cl) {
      I = *in.cl;
    } else if (slot < 0) {
      I = in.col_version;
    } else {
      I = L == 0 ? 1 : (L % 2 == 1 ? L : L - 1);
    }
    int64_t SQ;
    if (in.seq) {
      SQ = *in.seq;
    } else {
      // The capture table joins first: a savepoint open now is then marked
      // with the seq counter as it found it (ConnEngine::CaptureSavepoint).
      CRSYNC_RETURN_IF_ERROR(e_->JoinCapture());
      SQ = e_->TakeSeq();
    }

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
      const Clock& local_clock = after.cols[slot];
      if (!local_clock.present || in.col_version > local_clock.col_version) {
        outcome = Outcome::kWin;
      } else if (in.col_version == local_clock.col_version) {
        int c;
        // What the column holds: this run's write, else one held back by
        // an earlier run in the batch, else the stored row. (A present
        // clock after a held delete means the held write has the value.)
        const Value* v = write.Written(slot);
        if (!v && held) v = held->Written(slot);
        if (v) {
          // Compare with what the column will hold, as the row-by-row path
          // compares with what it stored (after the column's affinity).
          char affinity;
          CRSYNC_RETURN_IF_ERROR(crr->ColAffinity(slot, &affinity));
          c = Value::Compare(ApplyAffinity(*v, affinity), in.val);
        } else {
          // Kept for the row's next tie only while the recording triggers
          // (which drop it on every write) are in place.
          const bool keep = e_->open_alters().empty();
          const Value* current;
          CRSYNC_RETURN_IF_ERROR(crr->UserColumnValue(key, pk, slot, keep, &current));
          c = Value::Compare(*current, in.val);
        }
        if (c < 0) {
          outcome = Outcome::kWin;
        } else if (c == 0 && e_->merge_equal_values()) {
          const std::string& incoming = local ? e_->site_id() : std::string(*in.site);
          // A site new in this batch still has its placeholder ordinal.
          const std::string& mine =
              local_clock.site < 0 ? new_sites[static_cast<size_t>(-local_clock.site - 1)]
                                   : e_->SiteIdOf(local_clock.site);
          if (incoming > mine) outcome = Outcome::kWin;
        }
      }
    }

    if (outcome != Outcome::kIgnore) {
      // A site seen for the first time gets its ordinal only after the user
      // write succeeded (a failed change must not leave one): until then it
      // is named by a placeholder -1, -2, ...
      int64_t ord = 0;
      if (!local) {
        CRSYNC_RETURN_IF_ERROR(e_->SiteOrdinal(*in.site, false, &ord));
        if (ord < 0) {
          size_t k = 0;
          while (k < new_sites.size() && new_sites[k] != *in.site) ++k;
          if (k == new_sites.size()) new_sites.emplace_back(*in.site);
          ord = -static_cast<int64_t>(k) - 1;
        }
      }
      int64_t dbv;
      CRSYNC_RETURN_IF_ERROR(e_->NextDbVersion(in.db_version, &dbv));
      if (e_->catalog().generation() != generation && e_->catalog().ByName(in.table) != crr) {
        // Taking the version re-read the catalog, and the CRR changed
        // under this merge (Validate checked it first, so only something
        // this transaction did since can). Nothing was written yet; `crr`
        // stays allocated until the commit (Catalog::ReleaseRetired).
        return Status::Sqlite(SQLITE_SCHEMA, "crsql - the schema of table " + crr->name() +
                                                 " changed during the merge");
      }
      Clock stamp{true, in.col_version, dbv, SQ, ord, 0};
      write.touched = true;
      switch (outcome) {
        case Outcome::kDelete:
          for (Clock& c : after.cols) c = Clock{};
          after.sentinel = stamp;
          after.sentinel.col_version = I;
          write.delete_first = true;
          write.exists = false;
          write.values.clear();
          total += 1;
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
          write.exists = true;
          if (outcome == Outcome::kResurrectWin) {
            after.cols[slot] = stamp;
            write.Set(slot, in.val);
            total += 2;
          } else {
            total += 1;
          }
          break;
        case Outcome::kWin:
          after.cols[slot] = stamp;
          write.exists = true;
          write.Set(slot, in.val);
          total += 1;
          break;
        case Outcome::kIgnore:
          break;
      }
    }
    if (marks && CountsForTracking(in)) {
      marks->push_back(TrackedMark{*in.site, in.tag,
                                   PeerMark{in.db_version, in.seq ? *in.seq : 0}});
    }
  }

  if (write.touched) {
    // The user-table write goes first: it is the only step that can fail on
    // valid input (CHECK, STRICT, NOT NULL), and then nothing else happened.
    // Held back with the batch, it happens before the batch stores any
    // metadata, and a failure fails the whole batch.
    if (e_->in_merge_write() && e_->RowBeingMerged(crr->id(), key)) {
      // A user trigger fired by a merge's write of this very row: the
      // outer merge stores the row's clocks after this one would, and this
      // change would lose its own. Refused (and with it the outer write).
      return Status::InvalidArgument("crsql - a trigger merged a change into " + crr->name() +
                                     " row X'" + HexBytes(key) + "' while that row was being merged");
    }
    if (!hold_user_writes_) {
      CRSYNC_RETURN_IF_ERROR(WriteUserRow(e_, crr, pk, key, write, &s->write_slots));
    }
    if (!new_sites.empty()) {
      std::vector<int64_t> real(new_sites.size());
      for (size_t k = 0; k < new_sites.size(); ++k) {
        CRSYNC_RETURN_IF_ERROR(e_->SiteOrdinal(new_sites[k], true, &real[k]));
      }
      auto patch = [&](Clock& c) {
        if (c.present && c.site < 0) c.site = real[static_cast<size_t>(-c.site - 1)];
      };
      patch(after.sentinel);
      for (Clock& c : after.cols) patch(c);
    }
    if (batch_) {
      batch_->Put(*crr, key, before, after, found, hold_user_writes_ ? &write : nullptr);
    } else {
      CRSYNC_RETURN_IF_ERROR(crr->StoreMeta(key, before, after, /*cache=*/true, s->write_behind));
    }
    e_->AddRowsImpacted(total);
  }
  *impacted = total;
  return Status::OK();
}

Status Merger::TrackPeer(const std::string& site, int64_t tag, const PeerMark& mark) {
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(e_->TrackPeerStatement(
      "INSERT INTO main.crsql_tracked_peers(site_id, version, seq, tag, event) "
      "VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT (site_id, tag, event) DO UPDATE SET "
      "version = excluded.version, seq = excluded.seq WHERE excluded.version > version OR "
      "(excluded.version = version AND (seq IS NULL OR excluded.seq > seq))",
      &st));
  sqlite3_bind_blob(st, 1, site.data(), static_cast<int>(site.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, mark.version);
  sqlite3_bind_int64(st, 3, mark.seq);
  sqlite3_bind_int64(st, 4, tag);
  return StepToEnd(e_->db(), st);
}

}  // namespace crsync
