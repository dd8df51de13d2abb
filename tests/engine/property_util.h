// tests/engine/property_util.h — random schemas and random local writes for
// the engine's property tests.
#ifndef CRSYNC_TESTS_ENGINE_PROPERTY_UTIL_H_
#define CRSYNC_TESTS_ENGINE_PROPERTY_UTIL_H_

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "tests/engine/sync_util.h"

namespace crsync {

struct RandomSchema {
  std::string table;               // unquoted name (may contain quotes and spaces)
  std::vector<std::string> pks;    // unquoted column names
  std::vector<std::string> cols;
  std::vector<std::string> pk_types;  // per key column: its declared type
  std::string create_sql;

  static RandomSchema Make(std::mt19937_64& rng) {
    static const char* kTables[] = {"items", "we\"ird t", "it's", "T"};
    static const char* kNames[] = {"a", "b c", "d\"q", "e'f", "g", "h", "i", "j"};
    static const char* kTypes[] = {"", "INTEGER", "TEXT", "REAL", "BLOB", "NUMERIC", "ANY"};
    RandomSchema s;
    s.table = kTables[rng() % 4];
    std::vector<std::string> names(std::begin(kNames), std::end(kNames));
    std::shuffle(names.begin(), names.end(), rng);
    size_t npk = 1 + rng() % 3, ncol = rng() % 4;
    std::string defs;
    for (size_t i = 0; i < npk + ncol; ++i) {
      const std::string& n = names[i];
      (i < npk ? s.pks : s.cols).push_back(n);
      // Key columns of every affinity: an untyped one keeps 2.0 as REAL
      // (its packed key is normalized to INTEGER), a REAL one turns 2 into
      // 2.0, INTEGER and NUMERIC turn 2.0 into 2, TEXT turns 2 into '2'.
      static const char* kKeyTypes[] = {"TEXT", "INTEGER", "", "REAL", "NUMERIC"};
      std::string type = i < npk ? kKeyTypes[rng() % 5] : kTypes[rng() % 7];
      if (i < npk) s.pk_types.push_back(type);
      if (!defs.empty()) defs += ", ";
      defs += QuoteIdent(n) + " " + type;
      if (i < npk && rng() % 2) defs += " NOT NULL";
      if (i >= npk && rng() % 4 == 0) defs += " DEFAULT 7";
    }
    std::string pklist;
    for (const auto& p : s.pks) pklist += std::string(pklist.empty() ? "" : ", ") + QuoteIdent(p);
    s.create_sql = "CREATE TABLE " + QuoteIdent(s.table) + " (" + defs + ", PRIMARY KEY (" +
                   pklist + ")); SELECT crsql_as_crr(" + QuoteLiteral(s.table) + ");";
    return s;
  }

  std::string Q() const { return QuoteIdent(table); }
  std::string PkList() const {
    std::string o;
    for (const auto& p : pks) o += std::string(o.empty() ? "" : ", ") + QuoteIdent(p);
    return o;
  }
  // Table contents in a canonical order, every value quoted.
  Rows Dump(TestDb& db) const {
    return db.Query("SELECT * FROM " + Q() + " ORDER BY " + PkList());
  }
};

// Random SQL literals from a small domain, so that replicas collide.
inline std::string RandomValue(std::mt19937_64& rng, bool allow_null = true) {
  switch (rng() % (allow_null ? 6 : 5)) {
    case 0: return std::to_string(static_cast<int>(rng() % 7) - 2);
    case 1: return std::to_string(rng() % 3) + ".5";
    case 2: { static const char* t[] = {"'x'", "'y''s'", "''", "'long text value'"}; return t[rng() % 4]; }
    case 3: { static const char* b[] = {"x''", "x'00'", "x'ff01'"}; return b[rng() % 3]; }
    case 4: return std::to_string(rng() % 4);
    default: return "NULL";
  }
}

// Integers, integral reals (2.0: the same key as 2 in every affinity but
// TEXT), fractional reals and text.
inline std::string RandomKey(std::mt19937_64& rng, const RandomSchema& s) {
  std::string o;
  for (size_t i = 0; i < s.pks.size(); ++i) {
    if (i) o += ", ";
    switch (rng() % 6) {
      case 0: case 1: o += std::to_string(rng() % 4); break;
      case 2: o += std::to_string(rng() % 4) + ".0"; break;
      case 3: o += std::to_string(rng() % 2) + ".5"; break;
      default: o += std::string("'k") + std::to_string(rng() % 3) + "'";
    }
  }
  return o;
}

inline std::string KeyWhere(const RandomSchema& s, const std::string& key_values) {
  return "(" + s.PkList() + ") = (" + key_values + ")";
}

// Splits a RandomKey (or any list of simple literals) at its top-level commas.
inline std::vector<std::string> SplitKey(const std::string& key) {
  std::vector<std::string> parts;
  std::string cur;
  for (char ch : key + ",") {
    if (ch == ',' && std::count(cur.begin(), cur.end(), '\'') % 2 == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  return parts;
}

// SQL for the packed pk a row written with `key` gets: the literal as the
// column's affinity stores it (a TEXT column stores 2 as '2', a REAL one as
// 2.0, INTEGER and NUMERIC ones 2.0 as 2), and in an untyped column an
// integral REAL packs as INTEGER (crsync normalizes keys so that 2 and 2.0,
// one key to SQLite, are one key in the metadata too).
inline std::string PackedKeySql(const RandomSchema& s, const std::string& key) {
  std::vector<std::string> parts = SplitKey(key);
  std::string o;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& v = parts[i];
    const std::string& type = s.pk_types[i];
    const bool text = v[0] == '\'';
    const bool integral_real = !text && v.size() > 2 && v.compare(v.size() - 2, 2, ".0") == 0;
    const bool integer = !text && v.find('.') == std::string::npos;
    o += i ? ", " : "";
    if (type == "TEXT") {
      o += "CAST(" + v + " AS TEXT)";
    } else if (type == "REAL" && integer) {
      o += "CAST(" + v + " AS REAL)";
    } else if (type != "REAL" && integral_real) {
      o += "CAST(" + v + " AS INTEGER)";
    } else {
      o += v;
    }
  }
  return "crsql_pack_columns(" + o + ")";
}

// One random local write on `db`. `no_resurrect` avoids writes that would
// re-create a row this replica knows as deleted (7-column exchange cannot
// order those, crr-semantics §11.3).
inline void RandomWrite(std::mt19937_64& rng, const RandomSchema& s, TestDb& db, bool no_resurrect) {
  std::string key = RandomKey(rng, s);
  auto tombstoned = [&](const std::string& k) {
    return db.One("SELECT count(*) FROM crsql_changes WHERE \"table\" = " + QuoteLiteral(s.table) +
                  " AND pk = " + PackedKeySql(s, k)) != "0";
  };
  std::string vals;
  for (size_t i = 0; i < s.cols.size(); ++i) vals += ", " + RandomValue(rng);
  switch (rng() % 6) {
    case 0:
    case 1: {
      if (no_resurrect && tombstoned(key)) return;
      static const char* verbs[] = {"INSERT", "INSERT OR IGNORE", "INSERT OR REPLACE"};
      std::string verb = verbs[rng() % 3];
      if (no_resurrect && verb == std::string("INSERT OR REPLACE")) verb = "INSERT OR IGNORE";
      db.Try(verb + " INTO " + s.Q() + " VALUES (" + key + vals + ")").IgnoreError();
      break;
    }
    case 2:
    case 3: {
      if (s.cols.empty()) return;
      std::string sets;
      for (const auto& c : s.cols)
        if (rng() % 2 || sets.empty()) sets += std::string(sets.empty() ? "" : ", ") + QuoteIdent(c) + " = " + RandomValue(rng);
      db.Try("UPDATE " + s.Q() + " SET " + sets + " WHERE " + KeyWhere(s, key)).IgnoreError();
      break;
    }
    case 4:
      db.Try("DELETE FROM " + s.Q() + " WHERE " + KeyWhere(s, key)).IgnoreError();
      break;
    default: {
      std::string to = RandomKey(rng, s);
      if (no_resurrect && (tombstoned(to) || tombstoned(key))) return;
      std::string sets;
      size_t pos = 0;
      std::vector<std::string> parts = SplitKey(to);
      for (const auto& p : s.pks) {
        sets += std::string(pos ? ", " : "") + QuoteIdent(p) + " = " + parts[pos];
        ++pos;
      }
      // OR REPLACE moves onto a live row too, ending that row's incarnation.
      const char* verb = !no_resurrect && rng() % 2 ? "UPDATE OR REPLACE " : "UPDATE ";
      db.Try(verb + s.Q() + " SET " + sets + " WHERE " + KeyWhere(s, key)).IgnoreError();
    }
  }
}

}  // namespace crsync

#endif  // CRSYNC_TESTS_ENGINE_PROPERTY_UTIL_H_
