// engine/changes_plan.cc — crsql_changes' query plans (see changes_plan.h).
#include "engine/changes_plan.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace crsync {
namespace {

// Narrows `spec` by one site_id constraint. `code` is S (=), I (IS),
// N (!=), J (IS NOT), U (IS NULL) or V (IS NOT NULL). Several constraints
// are each kept (ScanSpec::more_origins): all must pass.
void ApplySiteConstraint(char code, sqlite3_value* v, ScanSpec* spec) {
  if (code == 'U' || code == 'V') {  // IS NULL / IS NOT NULL
    code = code == 'U' ? 'I' : 'J';
    v = nullptr;
  }
  OriginFilter f;
  bool is_null = v == nullptr || sqlite3_value_type(v) == SQLITE_NULL;
  if (is_null) {
    if (code == 'S' || code == 'N') {
      spec->none = true;  // three-valued logic: = NULL and != NULL match nothing
      return;
    }
    f.mode = code == 'I' ? OriginFilter::Mode::kLocal : OriginFilter::Mode::kRemote;
  } else {
    if (sqlite3_value_type(v) == SQLITE_BLOB) {
      f.site.assign(static_cast<const char*>(sqlite3_value_blob(v)),
                    static_cast<size_t>(sqlite3_value_bytes(v)));
    } else {
      f.site = "\x01not-a-site-id";  // never equal to a stored 16-byte id
    }
    f.mode = code == 'S' || code == 'I' ? OriginFilter::Mode::kOnly : OriginFilter::Mode::kExcept;
  }
  if (spec->origin.mode == OriginFilter::Mode::kAny) {
    spec->origin = std::move(f);
  } else {
    spec->more_origins.push_back(std::move(f));
  }
}

// site_id IS NULL, IS NOT NULL, IS and IS NOT: local or remote here (a
// NULL operand), not SQL's meaning, so SQLite must never test them again.
bool IsSiteIsCode(char code) { return code == 'U' || code == 'V' || code == 'I' || code == 'J'; }

}  // namespace

int PlanChangesQuery(sqlite3_index_info* info, std::string* error) {
  struct Taken {
    int constraint;
    char code;
    bool omit;
  };
  std::vector<Taken> taken;
  double cost = 1e7;
  bool site_null_test = false;  // site_id IS NULL / IS NOT NULL, omitted
  for (int i = 0; i < info->nConstraint; ++i) {
    const auto& c = info->aConstraint[i];
    if (!c.usable) continue;
    char code = 0;
    bool omit = true;
    switch (c.iColumn) {
      case kDbVersion:
        switch (c.op) {
          case SQLITE_INDEX_CONSTRAINT_EQ: code = 'a'; break;
          case SQLITE_INDEX_CONSTRAINT_GT: code = 'b'; break;
          case SQLITE_INDEX_CONSTRAINT_GE: code = 'c'; break;
          case SQLITE_INDEX_CONSTRAINT_LT: code = 'd'; break;
          case SQLITE_INDEX_CONSTRAINT_LE: code = 'e'; break;
          default: break;
        }
        if (code) cost /= (code == 'a' ? 1000 : 10);
        break;
      case kSiteId:
        switch (c.op) {
          // SQLite honours `omit` only for constraints given an argv
          // slot, so these get one too (its value is NULL and unused).
          case SQLITE_INDEX_CONSTRAINT_ISNULL: code = 'U'; site_null_test = true; break;
          case SQLITE_INDEX_CONSTRAINT_ISNOTNULL: code = 'V'; site_null_test = true; break;
          // An IN list of sites is left to SQLite (one ordered scan).
          case SQLITE_INDEX_CONSTRAINT_EQ: code = sqlite3_vtab_in(info, i, -1) ? 0 : 'S'; break;
          case SQLITE_INDEX_CONSTRAINT_IS: code = 'I'; break;
          case SQLITE_INDEX_CONSTRAINT_NE: code = 'N'; break;
          case SQLITE_INDEX_CONSTRAINT_ISNOT: code = 'J'; break;
          default: break;
        }
        break;
      case kTable:
        // Only with the column's own collation: the scan matches names
        // byte for byte, and `= 'TODO' COLLATE NOCASE` must not. An IN
        // list is taken whole (one scan, in order), not value by value:
        // SQLite would concatenate one scan per value, out of order.
        // SQLite checks it again: against an operand with a numeric
        // affinity (`= CAST(5 AS REAL)`, a joined INTEGER column) it
        // compares names as numbers ('5' = 5.0, '01' = 1), which a value
        // here cannot tell from a plain 5 ('5' only): numbers narrow
        // nothing (DecodeChangesPlan), texts by their bytes.
        if (c.op == SQLITE_INDEX_CONSTRAINT_EQ &&
            sqlite3_stricmp(sqlite3_vtab_collation(info, i), "BINARY") == 0) {
          code = sqlite3_vtab_in(info, i, 1) ? 't' : 'T';
          omit = false;
          cost /= 5;
        }
        break;
      case kPk:
        if (c.op == SQLITE_INDEX_CONSTRAINT_EQ) {
          code = sqlite3_vtab_in(info, i, 1) ? 'p' : 'P';
          omit = false;  // SQLite re-checks byte equality on the shown pk
          cost /= 10000;
        }
        break;
      default:
        break;
    }
    if (!code) continue;
    if (IsSiteIsCode(code) && i >= 16) {
      // SQLite lists the terms in the query's order, but IS NOT NULL and
      // IS NOT after all the others.
      *error =
          "crsql - site_id IS NULL, IS NOT NULL, IS ? and IS NOT ? mean local and remote only "
          "among the first 16 constraints SQLite gives crsql_changes (it tests later ones again "
          "against the shown site id, which is never NULL; it puts IS NOT NULL and IS NOT after "
          "every other term): write the term earlier in the WHERE clause, or constrain fewer of "
          "crsql_changes' columns";
      return SQLITE_ERROR;
    }
    taken.push_back({i, code, omit});
  }
  // SQLite honours `omit` only for the first 16 constraints it passes and
  // the first 16 argv slots: the site_id terms take the first slots (their
  // place among the constraints is the query's).
  std::stable_partition(taken.begin(), taken.end(),
                        [](const Taken& t) { return IsSiteIsCode(t.code); });
  std::string plan;
  int argv = 0;
  for (const Taken& t : taken) {
    plan += t.code;
    info->aConstraintUsage[t.constraint].argvIndex = ++argv;
    info->aConstraintUsage[t.constraint].omit = t.omit;
  }
  // Rows come out in (db_version, seq) order: an ORDER BY of exactly that
  // prefix, ascending, is already satisfied.
  bool ordered = info->nOrderBy > 0 && info->nOrderBy <= 2;
  for (int i = 0; ordered && i < info->nOrderBy; ++i) {
    const auto& o = info->aOrderBy[i];
    int want = i == 0 ? kDbVersion : kSeq;
    ordered = o.iColumn == want && !o.desc;
  }
  if (ordered) info->orderByConsumed = 1;
  // Rows expected: what joins weigh a lookup against a scan by.
  info->estimatedRows = static_cast<sqlite3_int64>(std::max(1.0, cost / 1000));
  // `site_id IS NULL` means "local" only here, where it is omitted: SQLite
  // itself would test it against the displayed id, which is never NULL.
  // When SQLite splits an OR elsewhere in the WHERE into one scan per
  // branch (MULTI-INDEX OR), it tests the top-level terms again on each
  // row after the branch scans, and so would drop every local change
  // (or, for IS NOT NULL, keep them). A plan that takes such a term is
  // therefore made cheaper than any split can be: in [100, 164), where
  // every other plan costs at least 200 and a split costs the sum of two
  // or more. Within that range the other constraints still rank such
  // plans (the cost's logarithm is kept, coarse enough to survive SQLite's
  // own logarithmic rounding), so a join still looks rows up by pk or
  // db_version rather than scanning every change per outer row.
  cost = site_null_test ? 100.0 * (1.0 + std::log10(std::max(cost, 1.0)) / 11.0)
                        : std::max(cost, 200.0);
  info->idxNum = 0;
  info->idxStr = sqlite3_mprintf("%s", plan.c_str());
  info->needToFreeIdxStr = 1;
  info->estimatedCost = cost;
  return info->idxStr ? SQLITE_OK : SQLITE_NOMEM;
}

int DecodeChangesPlan(const char* idx_str, int argc, sqlite3_value** argv, ScanSpec* out) {
  for (int i = 0; i < argc && idx_str && idx_str[i]; ++i) {
    sqlite3_value* v = argv[i];
    char code = idx_str[i];
    if (code >= 'a' && code <= 'e') {
      int type = sqlite3_value_numeric_type(v);
      if (type == SQLITE_NULL) {
        out->none = true;
        continue;
      }
      if (type != SQLITE_INTEGER && type != SQLITE_FLOAT) {
        // A TEXT/BLOB bound: integers always compare below it in SQL.
        if (code == 'b' || code == 'c' || code == 'a') out->none = true;
        continue;
      }
      int64_t lo, hi;  // the integers n with lo <= n <= hi satisfying the bound
      if (type == SQLITE_INTEGER) {
        int64_t n = sqlite3_value_int64(v);
        switch (code) {
          case 'a': lo = n; hi = n; break;
          case 'b': lo = n == INT64_MAX ? n : n + 1; hi = INT64_MAX; if (n == INT64_MAX) out->none = true; break;
          case 'c': lo = n; hi = INT64_MAX; break;
          case 'd': lo = INT64_MIN; hi = n == INT64_MIN ? n : n - 1; if (n == INT64_MIN) out->none = true; break;
          default: lo = INT64_MIN; hi = n; break;
        }
      } else {
        double d = sqlite3_value_double(v);
        auto clamp = [](double x) -> int64_t {
          if (x >= 9.2e18) return INT64_MAX;
          if (x <= -9.2e18) return INT64_MIN;
          return static_cast<int64_t>(x);
        };
        switch (code) {
          case 'a':
            lo = clamp(d); hi = lo;
            if (std::floor(d) != d) out->none = true;
            break;
          case 'b': lo = clamp(std::floor(d) + 1); hi = INT64_MAX; break;
          case 'c': lo = clamp(std::ceil(d)); hi = INT64_MAX; break;
          case 'd': lo = INT64_MIN; hi = clamp(std::ceil(d) - 1); break;
          default: lo = INT64_MIN; hi = clamp(std::floor(d)); break;
        }
      }
      out->min_dbv = std::max(out->min_dbv, lo);
      out->max_dbv = std::min(out->max_dbv, hi);
    } else if (code == 'T' || code == 't' || code == 'P' || code == 'p') {
      // "table" is TEXT: a text names the CRR of those bytes; a number may
      // name several ("table" = 5 is '5', but = CAST(5 AS REAL) is also
      // '5.0' and '05': the operand's affinity decides, which SQLite's
      // own check applies), so it narrows nothing; a BLOB or NULL equals
      // no name. pk matches BLOBs only.
      const bool table = code == 'T' || code == 't';
      std::vector<std::string> values;
      bool any_table = false;
      auto take = [&](sqlite3_value* x) {
        const int type = sqlite3_value_type(x);
        if (table && (type == SQLITE_INTEGER || type == SQLITE_FLOAT)) {
          any_table = true;
        } else if (table && type == SQLITE_TEXT) {
          values.emplace_back(reinterpret_cast<const char*>(sqlite3_value_text(x)),
                              static_cast<size_t>(sqlite3_value_bytes(x)));
        } else if (!table && type == SQLITE_BLOB) {
          values.emplace_back(static_cast<const char*>(sqlite3_value_blob(x)),
                              static_cast<size_t>(sqlite3_value_bytes(x)));
        }
      };
      if (code == 't' || code == 'p') {
        sqlite3_value* x = nullptr;
        int rc = sqlite3_vtab_in_first(v, &x);
        for (; rc == SQLITE_OK && x; rc = sqlite3_vtab_in_next(v, &x)) take(x);
        if (rc != SQLITE_OK && rc != SQLITE_DONE) return rc;
      } else {
        take(v);
      }
      if (any_table) continue;
      std::sort(values.begin(), values.end());
      values.erase(std::unique(values.begin(), values.end()), values.end());
      ScanSpec::Narrow(table ? &out->tables : &out->pks, std::move(values));
      if ((table ? out->tables : out->pks)->empty()) out->none = true;
    } else {
      ApplySiteConstraint(code, v, out);
    }
  }
  return SQLITE_OK;
}

}  // namespace crsync
