#include "engine/value.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace crsync {
namespace {

// Whether SQLite stores `d` as an integer under INTEGER or NUMERIC affinity
// (sqlite3VdbeIntegerAffinity: integral and strictly inside the int64
// range); sets *out if so. The range test comes first: converting a double
// outside it to an integer is undefined behaviour.
bool IntegralReal(double d, int64_t* out) {
  if (!(d > -9223372036854775808.0 && d < 9223372036854775808.0)) return false;
  auto i = static_cast<int64_t>(d);
  if (static_cast<double>(i) != d) return false;
  *out = i;
  return true;
}

// Rank of a storage class in the §10 order.
int Rank(int type) {
  switch (type) {
    case SQLITE_NULL:
      return 0;
    case SQLITE_BLOB:
      return 1;
    case SQLITE_TEXT:
      return 2;
    case SQLITE_FLOAT:
      return 3;
    default:
      return 4;  // SQLITE_INTEGER
  }
}

int CompareBytes(const void* a, size_t na, const void* b, size_t nb) {
  size_t n = na < nb ? na : nb;
  int c = n ? std::memcmp(a, b, n) : 0;
  if (c != 0) return c < 0 ? -1 : 1;
  if (na == nb) return 0;
  return na < nb ? -1 : 1;
}

struct View {
  int type;
  int64_t i;
  double d;
  const void* p;
  size_t n;
};

View ViewOf(sqlite3_value* v) {
  View out{sqlite3_value_type(v), 0, 0, nullptr, 0};
  switch (out.type) {
    case SQLITE_INTEGER:
      out.i = sqlite3_value_int64(v);
      break;
    case SQLITE_FLOAT:
      out.d = sqlite3_value_double(v);
      break;
    case SQLITE_TEXT:
      out.p = sqlite3_value_text(v);
      out.n = static_cast<size_t>(sqlite3_value_bytes(v));
      break;
    case SQLITE_BLOB:
      out.p = sqlite3_value_blob(v);
      out.n = static_cast<size_t>(sqlite3_value_bytes(v));
      break;
    default:
      break;
  }
  return out;
}

View ViewOf(const Value& v) { return View{v.type, v.i, v.d, v.bytes.data(), v.bytes.size()}; }

int CompareViews(const View& a, const View& b) {
  int ra = Rank(a.type), rb = Rank(b.type);
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (a.type) {
    case SQLITE_INTEGER:
      return a.i < b.i ? -1 : (a.i > b.i ? 1 : 0);
    case SQLITE_FLOAT:
      return a.d < b.d ? -1 : (a.d > b.d ? 1 : 0);
    case SQLITE_TEXT:
    case SQLITE_BLOB:
      return CompareBytes(a.p, a.n, b.p, b.n);
    default:
      return 0;
  }
}

}  // namespace

Value Value::From(sqlite3_value* v) {
  Value out;
  out.type = sqlite3_value_type(v);
  switch (out.type) {
    case SQLITE_INTEGER:
      out.i = sqlite3_value_int64(v);
      break;
    case SQLITE_FLOAT:
      out.d = sqlite3_value_double(v);
      break;
    case SQLITE_TEXT: {
      const unsigned char* p = sqlite3_value_text(v);
      out.bytes.assign(reinterpret_cast<const char*>(p), sqlite3_value_bytes(v));
      break;
    }
    case SQLITE_BLOB: {
      const void* p = sqlite3_value_blob(v);
      int n = sqlite3_value_bytes(v);
      if (n > 0) out.bytes.assign(static_cast<const char*>(p), n);
      break;
    }
    default:
      break;
  }
  return out;
}

Value Value::FromColumn(sqlite3_stmt* stmt, int col) { return From(sqlite3_column_value(stmt, col)); }

int Value::Bind(sqlite3_stmt* stmt, int idx) const {
  switch (type) {
    case SQLITE_INTEGER:
      return sqlite3_bind_int64(stmt, idx, i);
    case SQLITE_FLOAT:
      return sqlite3_bind_double(stmt, idx, d);
    case SQLITE_TEXT:
      return sqlite3_bind_text(stmt, idx, bytes.data(), static_cast<int>(bytes.size()),
                               SQLITE_TRANSIENT);
    case SQLITE_BLOB:
      return sqlite3_bind_blob(stmt, idx, bytes.data(), static_cast<int>(bytes.size()),
                               SQLITE_TRANSIENT);
    default:
      return sqlite3_bind_null(stmt, idx);
  }
}

void Value::SetResult(sqlite3_context* ctx, sqlite3_destructor_type dtor) const {
  switch (type) {
    case SQLITE_INTEGER:
      sqlite3_result_int64(ctx, i);
      break;
    case SQLITE_FLOAT:
      sqlite3_result_double(ctx, d);
      break;
    case SQLITE_TEXT:
      sqlite3_result_text(ctx, bytes.data(), static_cast<int>(bytes.size()), dtor);
      break;
    case SQLITE_BLOB:
      sqlite3_result_blob(ctx, bytes.data(), static_cast<int>(bytes.size()), dtor);
      break;
    default:
      sqlite3_result_null(ctx);
  }
}

std::string Value::ToSql() const {
  static const char kHex[] = "0123456789ABCDEF";
  switch (type) {
    case SQLITE_INTEGER:
      return std::to_string(i);
    case SQLITE_FLOAT: {
      char buf[64];
      snprintf(buf, sizeof buf, "%.17g", d);
      return buf;
    }
    case SQLITE_TEXT: {
      std::string out = "'";
      for (char c : bytes) {
        out += c;
        if (c == '\'') out += '\'';
      }
      return out + "'";
    }
    case SQLITE_BLOB: {
      std::string out = "X'";
      for (unsigned char c : bytes) {
        out += kHex[c >> 4];
        out += kHex[c & 15];
      }
      return out + "'";
    }
    default:
      return "NULL";
  }
}

char AffinityOf(std::string_view declared_type) {
  std::string t(declared_type);
  for (char& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (t.find("INT") != std::string::npos) return 'i';
  if (t.find("CHAR") != std::string::npos || t.find("CLOB") != std::string::npos ||
      t.find("TEXT") != std::string::npos)
    return 't';
  if (t.empty() || t.find("BLOB") != std::string::npos) return 'b';
  if (t.find("REAL") != std::string::npos || t.find("FLOA") != std::string::npos ||
      t.find("DOUB") != std::string::npos)
    return 'r';
  return 'n';
}

Value ApplyAffinity(const Value& v, char affinity) {
  switch (affinity) {
    case 't':
      if (v.type == SQLITE_INTEGER) return Value::Text(std::to_string(v.i));
      if (v.type == SQLITE_FLOAT) {
        char buf[64];
        sqlite3_snprintf(sizeof buf, buf, "%!.15g", v.d);
        return Value::Text(buf);
      }
      return v;
    case 'i':
    case 'n':
    case 'r': {
      Value out = v;
      if (v.type == SQLITE_TEXT) {
        // Well-formed numeric text, surrounding spaces allowed, as SQLite
        // (its sqlite3Isspace: \v and \f count too).
        constexpr const char* kSpace = " \t\n\v\f\r";
        size_t b = v.bytes.find_first_not_of(kSpace);
        size_t e = v.bytes.find_last_not_of(kSpace);
        if (b == std::string::npos) return v;
        // The parsers stop at a NUL byte, which SQLite counts as text: such
        // a value is a number only if they reach the end ('7\0a' stays text).
        std::string text = v.bytes.substr(b, e - b + 1);
        const char* const text_end = text.c_str() + text.size();
        errno = 0;
        char* end = nullptr;
        long long n = std::strtoll(text.c_str(), &end, 10);
        if (errno == 0 && end == text_end && text.find_first_of(".eE") == std::string::npos) {
          out = Value::Int(n);
        } else {
          errno = 0;
          double d = std::strtod(text.c_str(), &end);
          // Out of range is still a number: SQLite stores 1e999 as Inf and
          // 1e-400 as 0, which strtod gives with ERANGE.
          if ((errno != 0 && errno != ERANGE) || end != text_end ||
              text.find_first_of("xXnN") != std::string::npos) {
            return v;  // not a number: stays text
          }
          out = Value::Real(d);
        }
      }
      // INTEGER/NUMERIC store an integral real as an integer, whether it
      // came as REAL or as numeric text.
      int64_t integral;
      if (affinity != 'r' && out.type == SQLITE_FLOAT && IntegralReal(out.d, &integral)) {
        out = Value::Int(integral);
      }
      if (affinity == 'r' && out.type == SQLITE_INTEGER) out = Value::Real(static_cast<double>(out.i));
      // A REAL column keeps an integral value as an integer on disk, so
      // -0.0 reads back as 0.0.
      if (affinity == 'r' && out.type == SQLITE_FLOAT && out.d == 0.0) out.d = 0.0;
      return out;
    }
    default:
      return v;
  }
}

bool SurvivesUtf16(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;  // a continuation byte, or 0xF8..0xFF
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp & 0xFFFFF800) == 0xD800 || (cp & 0xFFFFFFFE) == 0xFFFE) {
      return false;
    }
    i += len;
  }
  return true;
}

int Value::Compare(const Value& a, const Value& b) { return CompareViews(ViewOf(a), ViewOf(b)); }
int CompareValues(sqlite3_value* a, sqlite3_value* b) { return CompareViews(ViewOf(a), ViewOf(b)); }
int CompareValue(sqlite3_value* a, const Value& b) { return CompareViews(ViewOf(a), ViewOf(b)); }

}  // namespace crsync
