// engine/value.h — an owned SQLite value and the total order crsync merges by.
#ifndef CRSYNC_ENGINE_VALUE_H_
#define CRSYNC_ENGINE_VALUE_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace crsync {

// A copy of one SQLite value. `type` is SQLITE_INTEGER, SQLITE_FLOAT,
// SQLITE_TEXT, SQLITE_BLOB or SQLITE_NULL; `bytes` holds TEXT and BLOB data.
struct Value {
  int type = SQLITE_NULL;
  int64_t i = 0;
  double d = 0;
  std::string bytes;

  static Value Null() { return Value{}; }
  static Value Int(int64_t v) { return Value{SQLITE_INTEGER, v, 0, {}}; }
  static Value Real(double v) { return Value{SQLITE_FLOAT, 0, v, {}}; }
  static Value Text(std::string_view s) { return Value{SQLITE_TEXT, 0, 0, std::string(s)}; }
  static Value Blob(std::string_view s) { return Value{SQLITE_BLOB, 0, 0, std::string(s)}; }
  static Value From(sqlite3_value* v);
  static Value FromColumn(sqlite3_stmt* stmt, int col);

  // Binds this value to parameter `idx` of `stmt`, copying the bytes.
  int Bind(sqlite3_stmt* stmt, int idx) const;
  // Sets this value as a function's or column's result; bytes are copied
  // unless `dtor` is SQLITE_STATIC (then they must outlive the result).
  void SetResult(sqlite3_context* ctx, sqlite3_destructor_type dtor = SQLITE_TRANSIENT) const;
  // A readable SQL literal, for messages and tests.
  std::string ToSql() const;

  // crr-semantics §10: NULL < BLOB < TEXT < REAL < INTEGER across storage
  // classes; numeric within INTEGER and within REAL; byte-wise for TEXT and
  // BLOB. Returns <0, 0 or >0.
  static int Compare(const Value& a, const Value& b);
};

// Column affinity (sqlite.org/datatype3.html §3.1) of a declared type:
// 'i' INTEGER, 't' TEXT, 'b' BLOB (none), 'r' REAL, 'n' NUMERIC.
char AffinityOf(std::string_view declared_type);

// `v` as SQLite would store it in a column of affinity `affinity`: numeric
// text becomes a number under INTEGER/REAL/NUMERIC, numbers become text
// under TEXT, integers become reals under REAL; anything else unchanged.
Value ApplyAffinity(const Value& v, char affinity);

// Whether SQLite stores `text` in a UTF-16 database and reads it back as
// the same bytes: well-formed UTF-8 (no overlong form, surrogate or code
// point past U+10FFFF) without U+FFFE/U+FFFF, which SQLite's conversion
// replaces with U+FFFD (or, for a stray continuation byte, with a Latin-1
// character).
bool SurvivesUtf16(std::string_view text);

// §10 comparison of two sqlite3_values, without copying them.
int CompareValues(sqlite3_value* a, sqlite3_value* b);
// §10 comparison of an sqlite3_value and a Value.
int CompareValue(sqlite3_value* a, const Value& b);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_VALUE_H_
