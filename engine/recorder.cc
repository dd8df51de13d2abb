#include "engine/recorder.h"

#include <vector>

#include "common/guard.h"
#include "engine/packed.h"
#include "engine/value.h"

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

// Stamps `c` as a local record at (dbv, seq). Its feed run is set when the
// row is stored (NormalizeRuns).
void StampLocal(Clock* c, int64_t col_version, int64_t dbv, int64_t seq) {
  c->present = true;
  c->col_version = col_version;
  c->db_version = dbv;
  c->seq = seq;
  c->site = 0;
}

class Recorder {
 public:
  Recorder(ConnEngine* e, Crr* crr) : e_(e), crr_(crr) {}

  Status Insert(sqlite3_value** pk) {
    CRSYNC_RETURN_IF_ERROR(CheckPkNotNull(*crr_, pk));
    std::string& key = key_buf_;
    key.clear();
    PackValues(pk, static_cast<int>(crr_->schema().pk_cols.size()), &key);
    int64_t dbv;
    CRSYNC_RETURN_IF_ERROR(e_->LocalDbVersion(&dbv));
    if (crr_->slots() > 0) {
      // Most inserts create a row the metadata has never seen: try that in
      // one statement, and only read the old metadata when it exists.
      RowMeta fresh;
      fresh.cols.resize(crr_->slots());
      int64_t seq = e_->PeekSeq();
      for (Clock& c : fresh.cols) StampLocal(&c, 1, dbv, seq++);
      bool inserted;
      CRSYNC_RETURN_IF_ERROR(crr_->InsertNewMeta(key, std::move(fresh), &inserted));
      if (inserted) {
        while (e_->PeekSeq() < seq) e_->TakeSeq();
        return Status::OK();
      }
    }
    RowMeta before, after;
    bool found;
    CRSYNC_RETURN_IF_ERROR(crr_->LoadMeta(key, &before, &found));
    after = before;
    if (crr_->slots() == 0) {
      // pk-only table: the sentinel carries the row.
      int64_t cl = NextLiveCl(before.sentinel);
      StampLocal(&after.sentinel, cl, dbv, e_->TakeSeq());
    } else {
      if (found && !before.Empty()) {
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
    return crr_->StoreMeta(key, before, after);
  }

  Status Update(sqlite3_value** old_pk, sqlite3_value** new_pk, sqlite3_value** old_vals,
                sqlite3_value** new_vals) {
    CRSYNC_RETURN_IF_ERROR(CheckPkNotNull(*crr_, new_pk));
    size_t npk = crr_->schema().pk_cols.size();
    bool moved = false;
    for (size_t i = 0; i < npk && !moved; ++i) {
      moved = CompareValues(old_pk[i], new_pk[i]) != 0 ||
              sqlite3_value_type(old_pk[i]) != sqlite3_value_type(new_pk[i]);
    }
    std::vector<size_t> changed;
    for (size_t i = 0; i < crr_->slots(); ++i) {
      if (CompareValues(old_vals[i], new_vals[i]) != 0 ||
          sqlite3_value_type(old_vals[i]) != sqlite3_value_type(new_vals[i])) {
        changed.push_back(i);
      }
    }
    if (!moved && changed.empty()) return Status::OK();  // nothing changed: nothing recorded

    std::string new_key;
    PackValues(new_pk, static_cast<int>(npk), &new_key);
    int64_t dbv;
    CRSYNC_RETURN_IF_ERROR(e_->LocalDbVersion(&dbv));
    RowMeta q_before, q;
    bool found;
    CRSYNC_RETURN_IF_ERROR(crr_->LoadMeta(new_key, &q_before, &found));
    q = q_before;
    if (!moved) {
      for (size_t i : changed) {
        const Clock& old = q_before.cols[i];
        StampLocal(&q.cols[i], old.present ? old.col_version + 1 : 1, dbv, e_->TakeSeq());
      }
      return crr_->StoreMeta(new_key, q_before, q);
    }

    // Row move (§7.5): delete P, move its clocks to Q, create Q.
    std::string old_key;
    PackValues(old_pk, static_cast<int>(npk), &old_key);
    RowMeta p_before, p;
    CRSYNC_RETURN_IF_ERROR(crr_->LoadMeta(old_key, &p_before, &found));
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
    StampLocal(&q.sentinel, NextLiveCl(q_before.sentinel), dbv, e_->TakeSeq());
    std::vector<bool> rewritten(crr_->slots(), false);
    for (size_t i : changed) {
      const Clock& old = q.cols[i];
      StampLocal(&q.cols[i], old.present ? old.col_version + 1 : 1, dbv, e_->TakeSeq());
      rewritten[i] = true;
    }
    // Step 5: re-stamp moved clocks so peers that already synced the old
    // version still learn Q's unchanged values.
    for (size_t i = 0; i < crr_->slots(); ++i) {
      Clock& c = q.cols[i];
      if (moved_clock[i] && !rewritten[i] && (c.db_version < dbv || c.site != 0)) {
        StampLocal(&c, c.col_version, dbv, e_->TakeSeq());
      }
    }
    CRSYNC_RETURN_IF_ERROR(crr_->StoreMeta(old_key, p_before, p));
    return crr_->StoreMeta(new_key, q_before, q);
  }

  Status Delete(sqlite3_value** pk) {
    std::string key;
    PackValues(pk, static_cast<int>(crr_->schema().pk_cols.size()), &key);
    RowMeta before, after;
    bool found;
    CRSYNC_RETURN_IF_ERROR(crr_->LoadMeta(key, &before, &found));
    int64_t dbv;
    CRSYNC_RETURN_IF_ERROR(e_->LocalDbVersion(&dbv));
    after.cols.assign(crr_->slots(), Clock{});
    int64_t cl = before.sentinel.present ? before.sentinel.col_version + 1 : 2;
    StampLocal(&after.sentinel, cl, dbv, e_->TakeSeq());
    return crr_->StoreMeta(key, before, after);
  }

 private:
  // The causal length a (re-)created row takes: 1 when there is no sentinel,
  // the next odd value otherwise (cl+1 from even, cl+2 from odd).
  static int64_t NextLiveCl(const Clock& sentinel) {
    if (!sentinel.present) return 1;
    return sentinel.col_version % 2 == 0 ? sentinel.col_version + 1 : sentinel.col_version + 2;
  }

  ConnEngine* e_;
  Crr* crr_;
  std::string key_buf_;
};

// Finds the CRR a trigger named by id, reloading the catalog once if needed.
Status FindCrr(ConnEngine* e, int64_t id, Crr** out) {
  Crr* crr = e->catalog().ById(id);
  if (!crr) {
    CRSYNC_RETURN_IF_ERROR(e->catalog().Refresh(true));
    crr = e->catalog().ById(id);
  }
  if (!crr) return Status::NotFound("crsql - unknown CRR id " + std::to_string(id));
  *out = crr;
  return Status::OK();
}

enum class Op { kInsert, kUpdate, kDelete };

template <Op op>
void AfterWrite(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    auto* e = static_cast<ConnEngine*>(sqlite3_user_data(ctx));
    if (e->sync_bit()) return;
    Crr* crr;
    Status s = FindCrr(e, sqlite3_value_int64(argv[0]), &crr);
    if (s.ok()) {
      int npk = static_cast<int>(crr->schema().pk_cols.size());
      int ncol = static_cast<int>(crr->slots());
      int expected = 1 + (op == Op::kUpdate ? 2 * (npk + ncol) : npk);
      if (argc != expected) {
        s = Status::InvalidArgument("crsql - the recording trigger of " + crr->name() +
                                    " does not match its schema; was it altered outside "
                                    "crsql_begin_alter/crsql_commit_alter?");
      } else {
        Recorder r(e, crr);
        sqlite3_value** a = argv + 1;
        if constexpr (op == Op::kInsert) s = r.Insert(a);
        if constexpr (op == Op::kUpdate) s = r.Update(a, a + npk, a + 2 * npk, a + 2 * npk + ncol);
        if constexpr (op == Op::kDelete) s = r.Delete(a);
      }
    }
    if (!s.ok()) {
      sqlite3_result_error(ctx, s.message().c_str(), -1);
      if (s.code() == Status::Code::kSqlite) sqlite3_result_error_code(ctx, s.sqlite_code());
    }
  });
}

std::string ArgList(const Crr& crr, const char* prefix, bool pks, bool cols) {
  std::string out;
  if (pks)
    for (const auto& c : crr.schema().pk_cols) out += std::string(", ") + prefix + QuoteIdent(c);
  if (cols)
    for (const auto& c : crr.schema().cols) out += std::string(", ") + prefix + QuoteIdent(c);
  return out;
}

}  // namespace

int RegisterRecorderFunctions(sqlite3* db, ConnEngine* engine) {
  const int flags = SQLITE_UTF8 | SQLITE_INNOCUOUS;
  int rc = sqlite3_create_function_v2(db, "crsync_after_insert", -1, flags, engine,
                                      &AfterWrite<Op::kInsert>, nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function_v2(db, "crsync_after_update", -1, flags, engine,
                                    &AfterWrite<Op::kUpdate>, nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function_v2(db, "crsync_after_delete", -1, flags, engine,
                                    &AfterWrite<Op::kDelete>, nullptr, nullptr, nullptr);
  return rc;
}

std::string RecorderTriggersSql(const Crr& crr) {
  std::string t = QuoteIdent(crr.name());
  std::string id = std::to_string(crr.id());
  std::string base = crr.name() + "__crsync_";
  return "CREATE TRIGGER main." + QuoteIdent(base + "itrig") + " AFTER INSERT ON " + t +
         " BEGIN SELECT crsync_after_insert(" + id + ArgList(crr, "NEW.", true, false) +
         "); END;"
         "CREATE TRIGGER main." +
         QuoteIdent(base + "utrig") + " AFTER UPDATE ON " + t +
         " BEGIN SELECT crsync_after_update(" + id + ArgList(crr, "OLD.", true, false) +
         ArgList(crr, "NEW.", true, false) + ArgList(crr, "OLD.", false, true) +
         ArgList(crr, "NEW.", false, true) +
         "); END;"
         "CREATE TRIGGER main." +
         QuoteIdent(base + "dtrig") + " AFTER DELETE ON " + t +
         " BEGIN SELECT crsync_after_delete(" + id + ArgList(crr, "OLD.", true, false) + "); END;";
}

std::string DropRecorderTriggersSql(const std::string& table) {
  std::string base = table + "__crsync_";
  return "DROP TRIGGER IF EXISTS main." + QuoteIdent(base + "itrig") +
         "; DROP TRIGGER IF EXISTS main." + QuoteIdent(base + "utrig") +
         "; DROP TRIGGER IF EXISTS main." + QuoteIdent(base + "dtrig") + ";";
}

}  // namespace crsync
