#include "engine/packed.h"

#include <cstring>

namespace crsync {
namespace {

constexpr int kInt = 1, kReal = 2, kText = 3, kBlob = 4, kNull = 5;

// Fewest bytes that hold `v` as an unsigned big-endian number (0 for 0).
int ByteWidth(uint64_t v) {
  int w = 0;
  while (v != 0) {
    ++w;
    v >>= 8;
  }
  return w;
}

void PutBigEndian(uint64_t v, int width, std::string* out) {
  for (int i = width - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void PackInt(int64_t v, std::string* out) {
  int w = v < 0 ? 8 : ByteWidth(static_cast<uint64_t>(v));
  out->push_back(static_cast<char>((w << 3) | kInt));
  PutBigEndian(static_cast<uint64_t>(v), w, out);
}

void PackReal(double d, std::string* out) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  out->push_back(static_cast<char>(kReal));
  PutBigEndian(bits, 8, out);
}

void PackBytes(int type, const void* p, size_t n, std::string* out) {
  int w = ByteWidth(n);
  out->push_back(static_cast<char>((w << 3) | type));
  PutBigEndian(n, w, out);
  if (n) out->append(static_cast<const char*>(p), n);
}

}  // namespace

bool PackedSmallUint(std::string_view packed, uint64_t* out) {
  if (packed.size() < 2 || packed[0] != 1) return false;
  const auto head = static_cast<unsigned char>(packed[1]);
  const size_t w = head >> 3;
  if ((head & 7) != kInt || w >= 8 || packed.size() != 2 + w) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < w; ++i) v = (v << 8) | static_cast<unsigned char>(packed[2 + i]);
  if (static_cast<size_t>(ByteWidth(v)) != w) return false;  // not minimal: out of numeric order
  *out = v;
  return true;
}

void PackOne(sqlite3_value* v, std::string* out) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
      PackInt(sqlite3_value_int64(v), out);
      break;
    case SQLITE_FLOAT:
      PackReal(sqlite3_value_double(v), out);
      break;
    case SQLITE_TEXT: {
      const unsigned char* p = sqlite3_value_text(v);
      PackBytes(kText, p, static_cast<size_t>(sqlite3_value_bytes(v)), out);
      break;
    }
    case SQLITE_BLOB: {
      const void* p = sqlite3_value_blob(v);
      PackBytes(kBlob, p, static_cast<size_t>(sqlite3_value_bytes(v)), out);
      break;
    }
    default:
      out->push_back(static_cast<char>(kNull));
  }
}

void PackOne(const Value& v, std::string* out) {
  switch (v.type) {
    case SQLITE_INTEGER:
      PackInt(v.i, out);
      break;
    case SQLITE_FLOAT:
      PackReal(v.d, out);
      break;
    case SQLITE_TEXT:
      PackBytes(kText, v.bytes.data(), v.bytes.size(), out);
      break;
    case SQLITE_BLOB:
      PackBytes(kBlob, v.bytes.data(), v.bytes.size(), out);
      break;
    default:
      out->push_back(static_cast<char>(kNull));
  }
}

void PackValues(sqlite3_value** values, int n, std::string* out) {
  out->push_back(static_cast<char>(n));
  for (int i = 0; i < n; ++i) PackOne(values[i], out);
}

void PackValues(const std::vector<Value>& values, std::string* out) {
  out->push_back(static_cast<char>(values.size()));
  for (const Value& v : values) PackOne(v, out);
}

namespace {

// *i = d when d is an integer that int64 holds exactly (-0.0 gives 0).
bool IntegralReal(double d, int64_t* i) {
  // 2^63 is exact as a double; every double in [-2^63, 2^63) converts.
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return false;  // NaN too
  auto v = static_cast<int64_t>(d);
  if (static_cast<double>(v) != d) return false;
  *i = v;
  return true;
}

// Whether a REAL `d` in a key column of `affinity` packs as the INTEGER *i.
// INTEGER and NUMERIC columns store every other integral REAL as an
// INTEGER already; -2^63 they keep as a REAL, which SQLite holds equal to
// the INTEGER -2^63 all the same.
bool AsKeyInteger(double d, char affinity, int64_t* i) {
  return (affinity == 'b' || affinity == 'i' || affinity == 'n') && IntegralReal(d, i);
}

}  // namespace

bool KeyNeedsAffinity(sqlite3_value** values, int n) {
  for (int i = 0; i < n; ++i)
    if (sqlite3_value_type(values[i]) == SQLITE_FLOAT) return true;
  return false;
}

void PackKey(sqlite3_value** values, int n, const std::vector<char>& affinity, std::string* out) {
  out->push_back(static_cast<char>(n));
  for (int k = 0; k < n; ++k) {
    int64_t i;
    const char a = static_cast<size_t>(k) < affinity.size() ? affinity[k] : 'b';
    if (sqlite3_value_type(values[k]) == SQLITE_FLOAT &&
        AsKeyInteger(sqlite3_value_double(values[k]), a, &i)) {
      PackInt(i, out);
    } else {
      PackOne(values[k], out);
    }
  }
}

void PackKey(const std::vector<Value>& values, const std::vector<char>& affinity, std::string* out) {
  out->push_back(static_cast<char>(values.size()));
  for (size_t k = 0; k < values.size(); ++k) {
    int64_t i;
    const char a = k < affinity.size() ? affinity[k] : 'b';
    if (values[k].type == SQLITE_FLOAT && AsKeyInteger(values[k].d, a, &i)) {
      PackInt(i, out);
    } else {
      PackOne(values[k], out);
    }
  }
}

Status UnpackValues(std::string_view packed, std::vector<Value>* out) {
  out->clear();
  if (packed.empty()) return Status::Corruption("empty packed blob");
  const auto* p = reinterpret_cast<const unsigned char*>(packed.data());
  size_t len = packed.size();
  size_t pos = 1;
  int count = p[0];
  out->reserve(count);
  for (int k = 0; k < count; ++k) {
    if (pos >= len) return Status::Corruption("truncated: expected " + std::to_string(count) +
                                              " values, found " + std::to_string(k));
    int header = p[pos++];
    int type = header & 7;
    int w = header >> 3;
    auto read_be = [&](int width, uint64_t* v) -> bool {
      if (len - pos < static_cast<size_t>(width)) return false;
      uint64_t r = 0;
      for (int i = 0; i < width; ++i) r = (r << 8) | p[pos++];
      *v = r;
      return true;
    };
    switch (type) {
      case kInt: {
        if (w > 8) return Status::Corruption("integer width " + std::to_string(w) + " > 8");
        uint64_t v;
        if (!read_be(w, &v)) return Status::Corruption("truncated integer");
        out->push_back(Value::Int(static_cast<int64_t>(v)));
        break;
      }
      case kReal: {
        uint64_t bits;
        if (!read_be(8, &bits)) return Status::Corruption("truncated real");
        double d;
        std::memcpy(&d, &bits, sizeof d);
        out->push_back(Value::Real(d));
        break;
      }
      case kText:
      case kBlob: {
        if (w > 8) return Status::Corruption("length width " + std::to_string(w) + " > 8");
        uint64_t n;
        if (!read_be(w, &n)) return Status::Corruption("truncated length");
        if (len - pos < n) return Status::Corruption("truncated text or blob");
        std::string_view bytes(packed.data() + pos, n);
        pos += n;
        out->push_back(type == kText ? Value::Text(bytes) : Value::Blob(bytes));
        break;
      }
      case kNull:
        out->push_back(Value::Null());
        break;
      default:
        return Status::Corruption("unknown type code " + std::to_string(type));
    }
  }
  if (pos != len) {
    return Status::Corruption(std::to_string(len - pos) + " trailing bytes after " +
                              std::to_string(count) + " values");
  }
  return Status::OK();
}

}  // namespace crsync
