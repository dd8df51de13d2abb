#include "engine/recorder.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/guard.h"
#include "engine/blob_write_guard.h"
#include "engine/packed.h"
#include "engine/trigger_order.h"
#include "engine/value.h"
#include "engine/window_store.h"

namespace crsync {
namespace {

// Fails a local write that would leave NULL in a pk column (§4.2, E3/E4).
Status CheckPkNotNull(const Crr& crr, sqlite3_value** pk) {
  for (size_t i = 0; i < crr.schema().pk_cols.size(); ++i) {
    if (sqlite3_value_type(pk[i]) == SQLITE_NULL) {
      return Status::InvalidArgument("NULL value in primary key column " + crr.name() + "." +
                                     crr.schema().pk_cols[i] + " of a CRR");
    }
  }
  return Status::OK();
}

using LocalWrite = ConnEngine::LocalWrite;

// Replays captured local writes into clocks (crr-semantics §7), reading and
// storing row metadata through `batch` when given (bulk), else directly.
class Recorder {
 public:
  // One recorder may replay many writes: its scratch metadata then keeps
  // its buffers from row to row.
  Recorder(ConnEngine* e, MetaBatch* batch) : e_(e), batch_(batch) {}

  Status Apply(Crr* crr, const LocalWrite& w) {
    crr_ = crr;
    switch (w.op) {
      case LocalWrite::kInsert:
        return Insert(w.key);
      case LocalWrite::kUpdate:
        return Update(w);
      case LocalWrite::kDelete:
        return Delete(w.key);
    }
    return Status::OK();
  }

 private:
  Status Load(std::string_view key, RowMeta* meta, bool* found) {
    *found = false;
    if (const RowMeta* held = batch_ ? batch_->Find(*crr_, key) : nullptr) {
      *meta = *held;
      *found = true;  // known to the batch (its `stored` flag is its own)
      return Status::OK();
    }
    return crr_->LoadMeta(key, meta, found);
  }
  Status Store(std::string_view key, const RowMeta& before, const RowMeta& after, bool found) {
    if (after.PastMaxVersion()) return ClockExhausted(crr_->name());
    if (batch_) {
      batch_->Put(*crr_, key, before, after, found);
      return Status::OK();
    }
    return crr_->StoreMeta(key, before, after);
  }

  Status Insert(std::string_view key) {
    int64_t dbv;
    CRSYNC_RETURN_IF_ERROR(e_->LocalDbVersion(&dbv));
    if (!batch_ && crr_->slots() > 0) {
      // Row by row, most inserts create a row the metadata has never seen:
      // try that in one statement, and read the old metadata only if it exists.
      RowMeta fresh;
      fresh.cols.resize(crr_->slots());
      int64_t seq = e_->PeekSeq();
      for (Clock& c : fresh.cols) StampLocal(&c, 1, dbv, seq++);
      bool inserted;
      CRSYNC_RETURN_IF_ERROR(crr_->InsertNewMeta(key, std::move(fresh), &inserted));
      if (inserted) {
        e_->TakeSeqsBelow(seq);
        return Status::OK();
      }
    }
    RowMeta& before = a_;
    RowMeta& after = b_;
    bool found;
    CRSYNC_RETURN_IF_ERROR(Load(key, &before, &found));
    after = before;
    if (crr_->slots() == 0) {
      // pk-only table: the sentinel carries the row.
      int64_t cl = NextLiveCl(before.sentinel);
      StampLocal(&after.sentinel, cl, dbv, e_->TakeSeq());
    } else {
      if (!before.Empty()) {
        int64_t s = e_->TakeSeq();  // taken even with no sentinel to bump (§6.2)
        if (before.sentinel.present) {
          StampLocal(&after.sentinel, NextLiveCl(before.sentinel), dbv, s);
        }
      }
      for (size_t i = 0; i < crr_->slots(); ++i) {
        const Clock& old = before.cols[i];
        StampLocal(&after.cols[i], old.present ? old.col_version + 1 : 1, dbv, e_->TakeSeq());
      }
    }
    return Store(key, before, after, found);
  }

  Status Update(const LocalWrite& w) {
    int64_t dbv;
    CRSYNC_RETURN_IF_ERROR(e_->LocalDbVersion(&dbv));
    RowMeta& q_before = a_;
    RowMeta& q = b_;
    bool q_found;
    CRSYNC_RETURN_IF_ERROR(Load(w.key, &q_before, &q_found));
    q = q_before;
    if (!w.moved) {
      for (uint32_t i : w.changed) {
        const Clock& old = q_before.cols[i];
        StampLocal(&q.cols[i], old.present ? old.col_version + 1 : 1, dbv, e_->TakeSeq());
      }
      return Store(w.key, q_before, q, q_found);
    }

    // Row move (§7.5): delete P, move its clocks to Q, create Q.
    RowMeta& p_before = c_;
    RowMeta& p = d_;
    bool p_found;
    CRSYNC_RETURN_IF_ERROR(Load(w.old_key, &p_before, &p_found));
    p = p_before;
    int64_t p_cl = p_before.sentinel.present ? p_before.sentinel.col_version + 1 : 2;
    if (p_cl % 2 != 0) ++p_cl;
    StampLocal(&p.sentinel, p_cl, dbv, e_->TakeSeq());
    std::vector<bool> moved_clock(crr_->slots(), false);
    for (size_t i = 0; i < crr_->slots(); ++i) {
      if (p_before.cols[i].present) {
        q.cols[i] = p_before.cols[i];
        moved_clock[i] = true;
      }
      p.cols[i] = Clock{};
    }
    // UPDATE OR REPLACE onto a live Q: SQLite removed the old Q without
    // firing its delete trigger (recursive_triggers off). That incarnation
    // ends as if deleted, so the moved row is a new one, its causal length
    // past the deletion: peers holding the old Q then take the new one whole
    // instead of keeping columns whose clocks outrank the moved ones.
    int64_t q_cl = NextLiveCl(q_before.sentinel);
    if (q_found && Live(q_before)) {
      q_cl = (q_before.sentinel.present ? q_before.sentinel.col_version : 1) + 2;
    }
    StampLocal(&q.sentinel, q_cl, dbv, e_->TakeSeq());
    std::vector<bool> rewritten(crr_->slots(), false);
    for (uint32_t i : w.changed) {
      const Clock& old = q.cols[i];
      StampLocal(&q.cols[i], old.present ? old.col_version + 1 : 1, dbv, e_->TakeSeq());
      rewritten[i] = true;
    }
    // Step 5: re-stamp moved clocks so peers that already synced the old
    // version still learn Q's unchanged values.
    //
    // And where Q had an earlier incarnation (live, replaced; or deleted),
    // a peer may still hold it live: the new sentinel resurrects it there
    // (§11.5 C5), which keeps that peer's old value of every column no
    // change names. So each column P brought no clock for is clocked too,
    // as a new row's first write (col_version 1), with the moved row's
    // value. Otherwise a replaced Q's record stayed at its old version with
    // the new value (a change peers past that version never get), and a
    // column without any record kept the peer's old value for good.
    // (Q's metadata, not q_found: a batch knows every key it was asked
    // for, stored or not.)
    const bool q_existed = !q_before.Empty();
    for (size_t i = 0; i < crr_->slots(); ++i) {
      Clock& c = q.cols[i];
      if (rewritten[i]) continue;
      if (moved_clock[i]) {
        // A clock a resurrection zeroed (§11.5 C5) is re-stamped at 1, not
        // 0, also one zeroed earlier in this transaction: a peer that
        // resurrects Q before this record arrives holds its own zeroed
        // clock there, and a tie with it would go to the larger value
        // where the other order (C6) takes this one.
        if (c.db_version < dbv || c.site != 0 || c.col_version == 0)
          StampLocal(&c, std::max<int64_t>(c.col_version, 1), dbv, e_->TakeSeq());
      } else if (q_existed) {
        StampLocal(&c, 1, dbv, e_->TakeSeq());
      }
    }
    CRSYNC_RETURN_IF_ERROR(Store(w.old_key, p_before, p, p_found));
    return Store(w.key, q_before, q, q_found);
  }

  Status Delete(std::string_view key) {
    RowMeta& before = a_;
    RowMeta& after = b_;
    bool found;
    CRSYNC_RETURN_IF_ERROR(Load(key, &before, &found));
    int64_t dbv;
    CRSYNC_RETURN_IF_ERROR(e_->LocalDbVersion(&dbv));
    after.sentinel = Clock{};
    after.cols.assign(crr_->slots(), Clock{});
    // The next even causal length. (A row re-inserted during an alter can
    // be live under an even sentinel; +1 would then say "alive".)
    int64_t cl = before.sentinel.present ? before.sentinel.col_version + 1 : 2;
    if (cl % 2 != 0) ++cl;
    StampLocal(&after.sentinel, cl, dbv, e_->TakeSeq());
    return Store(key, before, after, found);
  }

  // Whether stored clocks describe a live row: an odd causal length, or no
  // sentinel (cl 1) but some column clock.
  static bool Live(const RowMeta& m) {
    if (m.sentinel.present) return m.sentinel.col_version % 2 != 0;
    for (const Clock& c : m.cols)
      if (c.present) return true;
    return false;
  }

  // The causal length a (re-)created row takes: 1 when there is no sentinel,
  // the next odd value otherwise (cl+1 from even, cl+2 from odd).
  static int64_t NextLiveCl(const Clock& sentinel) {
    if (!sentinel.present) return 1;
    return sentinel.col_version % 2 == 0 ? sentinel.col_version + 1 : sentinel.col_version + 2;
  }

  ConnEngine* e_;
  MetaBatch* batch_;
  Crr* crr_ = nullptr;
  RowMeta a_, b_, c_, d_;  // scratch: before/after of the row (and of a moved row's old key)
};

// Finds the CRR a trigger named by id, reloading the catalog once if needed.
Status FindCrr(ConnEngine* e, int64_t id, Crr** out) {
  // Trusted without a schema check while valid (the hot path); a rollback
  // invalidates it (it may have undone an alter).
  Crr* crr = e->catalog().invalidated() ? nullptr : e->catalog().ById(id);
  if (!crr) {
    CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh(true));
    crr = e->catalog().ById(id);
  }
  if (!crr) return Status::NotFound("crsql - unknown CRR id " + std::to_string(id));
  *out = crr;
  return Status::OK();
}

// The fewest captured rows, all new and above every stored key, that a
// short log stores with StoreFreshRows rather than row by row (callgrind:
// 2 rows already cost less that way).
constexpr size_t kMinFreshRows = 2;

// Stores log[start, end) in one go (StoreFreshRows, *done) when it only
// inserts rows above every stored key of one CRR; else leaves it.
Status TryFreshRows(ConnEngine* e, const WriteLog& log, size_t start, size_t end, bool* done) {
  *done = false;
  if (!AscendingInserts(log, start, end)) return Status::OK();
  Crr* crr;
  Status s = FindCrr(e, log[start].crr_id, &crr);
  if (s.ok()) s = StoreFreshRows(e, crr, &e->local_batch(), log, start, end, done);
  if (!s.ok()) e->local_batch().Clear();
  return s;
}

// ConnEngine's flusher: turns the captured writes not stored yet into
// metadata, in order (seqs are taken as they are replayed, so they follow
// the write order).
Status ReplayLocalWrites(ConnEngine* e) {
  const WriteLog& log = e->local_writes();
  const size_t first = e->flushed_writes();
  // A short log goes row by row (the bulk statements would cost more),
  // unless it only adds rows above every stored key (a small transaction
  // of an app appending rows): StoreFreshRows stores those in one go,
  // for less than two rows' single statements.
  if (log.size() - first < MetaBatch::kMinBulk) {
    if (log.size() - first >= kMinFreshRows) {
      bool done;
      CRSYNC_RETURN_IF_ERROR(TryFreshRows(e, log, first, log.size(), &done));
      if (done) return Status::OK();
    }
    Recorder recorder(e, nullptr);
    for (size_t i = first; i < log.size(); ++i) {
      const LocalWrite w = log[i];
      Crr* crr;
      CRSYNC_RETURN_IF_ERROR(FindCrr(e, w.crr_id, &crr));
      CRSYNC_RETURN_IF_ERROR(recorder.Apply(crr, w));
    }
    return Status::OK();
  }
  MetaBatch& batch = e->local_batch();
  Recorder recorder(e, &batch);
  std::vector<Crr*> crrs;
  std::vector<size_t> unmet;
  for (size_t start = first; start < log.size(); start += MetaBatch::kWindow) {
    size_t end = std::min(log.size(), start + MetaBatch::kWindow);
    if (end - start >= MetaBatch::kMinBulk) {
      bool done;
      CRSYNC_RETURN_IF_ERROR(TryFreshRows(e, log, start, end, &done));
      if (done) continue;
    }
    if (end - start >= MetaBatch::kMinRange && AscendingUpdates(log, start, end)) {
      Crr* crr;
      bool done = false;
      Status f = FindCrr(e, log[start].crr_id, &crr);
      if (f.ok()) f = StoreUpdatedRows(e, crr, log, start, end, &done, &unmet);
      for (size_t k = 0; f.ok() && k < unmet.size(); ++k) {
        f = Recorder(e, nullptr).Apply(crr, log[unmet[k]]);  // seqs after the window's
      }
      if (!f.ok()) {
        batch.Clear();
        return f;
      }
      if (done) continue;
    }
    crrs.assign(end - start, nullptr);
    for (size_t i = start; i < end; ++i) {
      const LocalWrite w = log[i];
      Crr*& crr = crrs[i - start];
      if (Status f = FindCrr(e, w.crr_id, &crr); !f.ok()) {
        batch.Clear();
        return f;
      }
      batch.Want(crr, w.key);
      if (w.moved) batch.Want(crr, w.old_key);
    }
    Status s = batch.PrefetchWanted();
    for (size_t i = start; s.ok() && i < end; ++i) {
      s = recorder.Apply(crrs[i - start], log[i]);
    }
    if (s.ok()) s = batch.Flush();
    if (!s.ok()) {
      batch.Clear();
      return s;
    }
  }
  return Status::OK();
}

enum class Op { kInsert, kUpdate, kDelete };

// Values of one row image as compared by the recorder: same storage class
// and same value.
bool SameValue(sqlite3_value* a, sqlite3_value* b) {
  return sqlite3_value_type(a) == sqlite3_value_type(b) && CompareValues(a, b) == 0;
}

template <Op op>
void AfterWrite(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    // Called by hand (the function is visible to SQL): argv[0] is the
    // trigger's token only when there is one.
    if (argc < 1) {
      sqlite3_result_error(ctx, "crsql - the recording functions are called by triggers only", -1);
      return;
    }
    auto* e = static_cast<ConnEngine*>(sqlite3_user_data(ctx));
    Crr* crr = nullptr;
    int64_t crr_id = 0;
    Status s = e->CheckTriggerToken(sqlite3_value_int64(argv[0]), &crr_id);
    if (s.ok()) s = FindCrr(e, crr_id, &crr);
    // Any write of the table, recorded or not (a merge's), changes what a
    // merge tie-break would read.
    if (s.ok()) crr->DropRowValues();
    if (e->sync_bit()) return;
    // The transaction's version first, as a direct recording would take it
    // (it is what crsql_next_db_version() reports from here on). On the
    // transaction's first write that may reload the catalog (another
    // connection altered, added or dropped a CRR), which replaces Crr
    // objects: the CRR is looked up again after it.
    int64_t dbv;
    if (s.ok()) s = e->LocalDbVersion(&dbv);
    if (s.ok()) s = FindCrr(e, crr_id, &crr);
    // (The triggers are away during an alter, so no exception is needed.)
    if (s.ok() && !crr->ShapeMatches()) s = crr->CheckShape();
    const int event = static_cast<int>(op);
    if (s.ok() && !crr->recorders_first(event)) {
      static const char* const kEvents[3] = {"INSERT", "UPDATE", "DELETE"};
      std::string refusal;
      s = RecordersFirstRefusal(e->db(), crr->name(), kEvents[event], &refusal);
      if (s.ok() && !refusal.empty()) s = Status::FailedPrecondition(refusal);
      if (s.ok()) crr->set_recorders_first(event);
    }
    if (s.ok()) {
      int npk = static_cast<int>(crr->schema().pk_cols.size());
      int ncol = static_cast<int>(crr->slots());
      const bool masked = op == Op::kUpdate && DiffMaskedUpdates(npk, ncol);
      const int nmasks = static_cast<int>((ncol + kDiffChunk - 1) / kDiffChunk);
      int expected = 1 + (op == Op::kUpdate ? 2 * npk + (masked ? nmasks : 2 * ncol) : npk);
      if (argc != expected) {
        s = Status::InvalidArgument("crsql - the recording trigger of " + crr->name() +
                                    " does not match its schema; was it altered outside "
                                    "crsql_begin_alter/crsql_commit_alter?");
      }
      sqlite3_value** a = argv + 1;
      // The write's bytes live here until AddLocalWrite copies them into
      // the log (or the direct path has used them).
      std::string key, old_key;
      thread_local std::vector<uint32_t> changed;
      changed.clear();
      LocalWrite w;
      w.crr_id = crr->id();
      bool record = true;
      if (s.ok() && op != Op::kDelete) s = CheckPkNotNull(*crr, op == Op::kUpdate ? a + npk : a);
      // A row's identity (PackKey): only a REAL key value needs the
      // columns' affinities (loaded once per CRR).
      auto pack_key = [&](sqlite3_value** vals, std::string* out) {
        if (!KeyNeedsAffinity(vals, npk)) return PackValues(vals, npk, out);
        const std::vector<char>* affinity;
        Status as = crr->PkAffinity(&affinity);
        if (!as.ok()) {
          if (s.ok()) s = as;
          return PackValues(vals, npk, out);
        }
        PackKey(vals, npk, *affinity, out);
      };
      if (s.ok()) {
        if constexpr (op == Op::kInsert) {
          w.op = LocalWrite::kInsert;
          pack_key(a, &key);
        } else if constexpr (op == Op::kDelete) {
          w.op = LocalWrite::kDelete;
          pack_key(a, &key);
        } else {
          sqlite3_value** old_pk = a;
          sqlite3_value** new_pk = a + npk;
          sqlite3_value** old_vals = a + 2 * npk;
          sqlite3_value** new_vals = old_vals + ncol;
          w.op = LocalWrite::kUpdate;
          for (int i = 0; i < npk && !w.moved; ++i) w.moved = !SameValue(old_pk[i], new_pk[i]);
          if (masked) {
            // old_vals holds one mask per chunk (crsync_internal_diff).
            for (int m = 0; m < nmasks; ++m) {
              auto bits = static_cast<uint64_t>(sqlite3_value_int64(old_vals[m]));
              for (int b = 0; b < static_cast<int>(kDiffChunk); ++b) {
                if (bits >> b & 1) changed.push_back(static_cast<uint32_t>(m * kDiffChunk + b));
              }
            }
          } else {
            for (int i = 0; i < ncol; ++i) {
              if (!SameValue(old_vals[i], new_vals[i])) changed.push_back(static_cast<uint32_t>(i));
            }
          }
          pack_key(new_pk, &key);
          if (w.moved) {
            pack_key(old_pk, &old_key);
            // 1 -> 1.0 in an untyped key, 0.0 -> -0.0: the same row.
            if (old_key == key) {
              w.moved = false;
              old_key.clear();
            }
          }
          record = w.moved || !changed.empty();  // nothing changed: nothing recorded
        }
        w.key = key;
        w.old_key = old_key;
        w.changed = changed;
      }
      if (s.ok() && record) {
        if (e->TakeDirectWrite()) {
          s = Recorder(e, nullptr).Apply(crr, w);
        } else {
          if (s.ok()) s = e->JoinCapture();
          if (s.ok()) s = e->AddLocalWrite(w);
        }
      }
    }
    if (!s.ok()) {
      sqlite3_result_error(ctx, s.message().c_str(), -1);
      if (s.code() == Status::Code::kSqlite) sqlite3_result_error_code(ctx, s.sqlite_code());
    }
  });
}

// crsync_internal_diff(old1, new1, old2, new2, ...): bit i set when pair i
// differs (type or value), for at most kDiffChunk pairs.
void Diff(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  if (argc % 2 != 0 || argc / 2 > static_cast<int>(kDiffChunk)) {
    sqlite3_result_error(ctx, "crsync_internal_diff: wrong argument count", -1);
    return;
  }
  uint64_t bits = 0;
  for (int i = 0; i < argc / 2; ++i) {
    if (!SameValue(argv[2 * i], argv[2 * i + 1])) bits |= uint64_t{1} << i;
  }
  sqlite3_result_int64(ctx, static_cast<sqlite3_int64>(bits));
}

// The update trigger's column arguments: OLD and NEW values, or masks.
std::string UpdateColumnArgs(const Crr& crr) {
  const auto& cols = crr.schema().cols;
  std::string out;
  if (!DiffMaskedUpdates(crr.schema().pk_cols.size(), cols.size())) {
    for (const auto& c : cols) out += ", OLD." + QuoteIdent(c);
    for (const auto& c : cols) out += ", NEW." + QuoteIdent(c);
    return out;
  }
  for (size_t from = 0; from < cols.size(); from += kDiffChunk) {
    out += ", crsync_internal_diff(";
    for (size_t i = from; i < std::min(cols.size(), from + kDiffChunk); ++i) {
      out += (i == from ? "OLD." : ", OLD.") + QuoteIdent(cols[i]) + ", NEW." + QuoteIdent(cols[i]);
    }
    out += ")";
  }
  return out;
}

// ", <prefix>pk1, <prefix>pk2 ..." for the trigger calls.
std::string PkArgs(const Crr& crr, const char* prefix) {
  std::string out;
  for (const auto& c : crr.schema().pk_cols) out += std::string(", ") + prefix + QuoteIdent(c);
  return out;
}

}  // namespace

Status JoinCaptureTable(ConnEngine* e) { return e->JoinCapture(); }

Status JoinForCatalogChange(ConnEngine* e) {
  e->set_catalog_changed_in_txn();
  return e->JoinCapture();
}

int RegisterRecorderFunctions(sqlite3* db, ConnEngine* engine) {
  engine->set_local_write_flusher(&ReplayLocalWrites);
  const int flags = SQLITE_UTF8 | SQLITE_INNOCUOUS;
  int rc = sqlite3_create_function_v2(db, "crsync_after_insert", -1, flags, engine,
                                      &AfterWrite<Op::kInsert>, nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function_v2(db, "crsync_after_update", -1, flags, engine,
                                    &AfterWrite<Op::kUpdate>, nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function_v2(db, "crsync_after_delete", -1, flags, engine,
                                    &AfterWrite<Op::kDelete>, nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function_v2(db, "crsync_internal_diff", -1, flags | SQLITE_DETERMINISTIC,
                                    nullptr, &Diff, nullptr, nullptr, nullptr);
  return rc;
}

bool DiffMaskedUpdates(size_t npk, size_t ncols) {
  return 1 + 2 * (npk + ncols) > kMaxFunctionArgs;
}

Status CrrIdOfToken(int64_t token, int64_t tag, bool bare_ids, int64_t* id) {
  const int64_t token_tag = token >> 32;
  if (token_tag == 0 ? !bare_ids && tag != 0 : token_tag != tag) {
    return Status::FailedPrecondition(
        "crsql - this write is to a CRR of another database (one attached to this "
        "connection?): crsync records the CRRs of its connection's main database only; "
        "write that table through a connection that opens its database as main");
  }
  *id = token & 0xffffffff;
  return Status::OK();
}

std::string RecorderTriggersSql(const Crr& crr, int64_t tag) {
  std::string t = QuoteIdent(crr.name());
  std::string id = std::to_string(TriggerToken(tag, crr.id()));
  std::string base = crr.name() + "__crsync_";
  return "CREATE TRIGGER main." + QuoteIdent(base + "itrig") + " AFTER INSERT ON " + t +
         " BEGIN SELECT crsync_after_insert(" + id + PkArgs(crr, "NEW.") +
         "); END;"
         "CREATE TRIGGER main." +
         QuoteIdent(base + "utrig") + " AFTER UPDATE ON " + t +
         " BEGIN SELECT crsync_after_update(" + id + PkArgs(crr, "OLD.") +
         PkArgs(crr, "NEW.") + UpdateColumnArgs(crr) +
         "); END;"
         "CREATE TRIGGER main." +
         QuoteIdent(base + "dtrig") + " AFTER DELETE ON " + t +
         " BEGIN SELECT crsync_after_delete(" + id + PkArgs(crr, "OLD.") + "); END;";
}

namespace {

// The triggers named `table`__crsync_<suffix> for each of `suffixes`.
Status TriggersNamed(sqlite3* db, const std::string& table, const char* const (&suffixes)[3],
                     std::vector<NamedTrigger>* out) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db,
                                 std::string("SELECT name, tbl_name FROM main.sqlite_master WHERE "
                                             "type = 'trigger' AND name COLLATE NOCASE IN (?1 || '") +
                                     suffixes[0] + "', ?1 || '" + suffixes[1] + "', ?1 || '" +
                                     suffixes[2] + "')",
                                 &st));
  const std::string base = table + "__crsync_";
  sqlite3_bind_text(st.get(), 1, base.data(), static_cast<int>(base.size()), SQLITE_STATIC);
  out->clear();
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    NamedTrigger t{reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0)),
                   reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 1)), false};
    t.on_table = sqlite3_stricmp(t.table.c_str(), table.c_str()) == 0;
    out->push_back(std::move(t));
  }
  return rc == SQLITE_DONE ? Status::OK() : SqliteError(db, rc);
}

constexpr const char* kRecorderSuffixes[3] = {"itrig", "utrig", "dtrig"};
constexpr const char* kGuardSuffixes[3] = {"guard_i", "guard_u", "guard_d"};

}  // namespace

Status TriggersNamedLikeRecorders(sqlite3* db, const std::string& table,
                                  std::vector<NamedTrigger>* out) {
  return TriggersNamed(db, table, kRecorderSuffixes, out);
}

Status TriggersNamedLikeAlterGuards(sqlite3* db, const std::string& table,
                                    std::vector<NamedTrigger>* out) {
  return TriggersNamed(db, table, kGuardSuffixes, out);
}

Status AlterGuardStands(sqlite3* db, const std::string& table, bool* stands) {
  std::vector<NamedTrigger> guards;
  CRSYNC_RETURN_IF_ERROR(TriggersNamedLikeAlterGuards(db, table, &guards));
  *stands = std::any_of(guards.begin(), guards.end(), [](const NamedTrigger& g) { return g.on_table; });
  return Status::OK();
}

Status DropRecorderTriggers(sqlite3* db, const std::string& table) {
  std::vector<NamedTrigger> triggers, guards;
  CRSYNC_RETURN_IF_ERROR(TriggersNamedLikeRecorders(db, table, &triggers));
  CRSYNC_RETURN_IF_ERROR(TriggersNamedLikeAlterGuards(db, table, &guards));
  triggers.insert(triggers.end(), guards.begin(), guards.end());
  std::string sql;
  for (const NamedTrigger& t : triggers)
    if (t.on_table) sql += "DROP TRIGGER main." + QuoteIdent(t.name) + ";";
  return sql.empty() ? Status::OK() : Exec(db, sql);
}

std::string OpenAlterKey(int64_t crr_id) { return "crsync_open_alter." + std::to_string(crr_id); }

Status OpenAlterOwner(sqlite3* db, int64_t crr_id, int64_t* owner) {
  *owner = 0;
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(
      Prepare(db, "SELECT CAST(value AS INTEGER) FROM main.crsql_master WHERE key = ?1", &st));
  const std::string key = OpenAlterKey(crr_id);
  sqlite3_bind_text(st.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  const int rc = sqlite3_step(st.get());
  if (rc == SQLITE_ROW) *owner = sqlite3_column_int64(st.get(), 0);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? Status::OK() : SqliteError(db, rc);
}

std::string AlterGuardSql(const std::string& table, int64_t owner) {
  const std::string t = QuoteIdent(table),
                    call = "crsync_alter_guard(" + QuoteLiteral(table) + ", " +
                           std::to_string(owner) + ")";
  std::string sql;
  const char* const events[3] = {"INSERT", "UPDATE", "DELETE"};
  for (int i = 0; i < 3; ++i) {
    sql += "CREATE TRIGGER main." + QuoteIdent(table + "__crsync_" + kGuardSuffixes[i]) +
           " BEFORE " + events[i] + " ON " + t + " BEGIN SELECT " + call + "; END;";
  }
  return sql;
}

Status InstallRecorderTriggers(sqlite3* db, const Crr& crr, int64_t tag,
                               const std::string& caller) {
  CRSYNC_RETURN_IF_ERROR(DropRecorderTriggers(db, crr.name()));
  std::vector<NamedTrigger> left;
  CRSYNC_RETURN_IF_ERROR(TriggersNamedLikeRecorders(db, crr.name(), &left));
  if (!left.empty()) {  // on another table: the user's
    return Status::InvalidArgument(caller + ": a trigger named " + left[0].name + " on " +
                                   left[0].table + " already exists; crsync records " +
                                   crr.name() + "'s writes with a trigger of that name (rename "
                                   "or drop that trigger first)");
  }
  CRSYNC_RETURN_IF_ERROR(Exec(db, RecorderTriggersSql(crr, tag)));
  return EnsureNoBlobWriteIndex(db, crr);
}

}  // namespace crsync
