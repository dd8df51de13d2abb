// packed_fuzz: the packed-columns decoder (engine/packed.h) on arbitrary
// bytes.
//
// Invariants:
//  * UnpackValues never crashes; a rejection is Corruption with a message.
//  * When it decodes, PackValues of the result reproduces the input exactly
//    if the input is in canonical form (minimal widths, no stray W bits on
//    REAL/NULL headers). The decoder deliberately accepts non-canonical
//    widths (cr-sqlite does; see PackedTest.DecoderZeroExtends...), and for
//    those the re-packed bytes must differ and be canonical.
//  * Re-packed bytes decode to bit-identical values and are a fixed point.
//  * The SQL functions agree: crsql_unpack_columns accepts exactly what
//    UnpackValues accepts and yields the same cells, and crsql_pack_columns
//    of those cells gives the canonical bytes.
#include <cmath>

#include "engine/packed.h"
#include "tests/fuzz/fuzz_util.h"

namespace crsync::fuzz {
namespace {

constexpr int kInt = 1, kReal = 2, kText = 3, kBlob = 4, kNull = 5;

int MinWidth(uint64_t v) {
  int w = 0;
  for (; v != 0; v >>= 8) ++w;
  return w;
}

// An independent reading of the format: true if `in` (already accepted by
// UnpackValues) is the form PackValues writes.
bool IsCanonical(std::string_view in) {
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  size_t pos = 1;
  for (int k = 0; k < p[0]; ++k) {
    int type = p[pos] & 7, w = p[pos] >> 3;
    ++pos;
    uint64_t v = 0;
    if (type == kInt || type == kText || type == kBlob) {
      for (int i = 0; i < w; ++i) v = (v << 8) | p[pos++];
    }
    switch (type) {
      case kInt:
        if (w != (static_cast<int64_t>(v) < 0 ? 8 : MinWidth(v))) return false;
        break;
      case kText:
      case kBlob:
        if (w != MinWidth(v)) return false;
        pos += v;
        break;
      case kReal:
        if (w != 0) return false;
        pos += 8;
        break;
      case kNull:
        if (w != 0) return false;
        break;
      default:
        Fail("UnpackValues accepted type code " + std::to_string(type));
    }
  }
  return true;
}

std::string RenderAll(const std::vector<Value>& vals) {
  std::string out;
  for (const Value& v : vals) out += Render(v) + ";";
  return out;
}

sqlite3* g_db = nullptr;

void CheckSql(std::string_view in, bool decoded, const std::vector<Value>& vals,
              const std::string& canonical) {
  // crsql_unpack_columns: same verdict, same cells.
  StmtPtr st;
  FUZZ_CHECK_OK(Prepare(g_db, "SELECT cell FROM crsql_unpack_columns(?1)", &st));
  sqlite3_bind_blob(st.get(), 1, in.data(), static_cast<int>(in.size()), SQLITE_STATIC);
  std::vector<Value> cells;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) cells.push_back(Value::FromColumn(st.get(), 0));
  if (!decoded) {
    FUZZ_CHECK(rc != SQLITE_DONE, "crsql_unpack_columns accepted what UnpackValues rejects: " + Hex(in));
    return;
  }
  FUZZ_CHECK(rc == SQLITE_DONE, std::string("crsql_unpack_columns failed: ") + sqlite3_errmsg(g_db));
  // SQLite turns a NaN into NULL when it stores a REAL: compare the rest.
  bool nan = false;
  for (const Value& v : vals) nan |= v.type == SQLITE_FLOAT && std::isnan(v.d);
  if (!nan) FUZZ_CHECK(RenderAll(cells) == RenderAll(vals), "cells differ for " + Hex(in));

  // crsql_pack_columns (SQLite caps function arguments at 127).
  if (nan || vals.empty() || vals.size() > 127) return;
  std::string sql = "SELECT crsql_pack_columns(";
  for (size_t i = 0; i < vals.size(); ++i) sql += (i ? ",?" : "?") + std::to_string(i + 1);
  sql += ")";
  StmtPtr pack;
  FUZZ_CHECK_OK(Prepare(g_db, sql, &pack));
  for (size_t i = 0; i < vals.size(); ++i) vals[i].Bind(pack.get(), static_cast<int>(i + 1));
  FUZZ_CHECK(sqlite3_step(pack.get()) == SQLITE_ROW, sqlite3_errmsg(g_db));
  Value got = Value::FromColumn(pack.get(), 0);
  FUZZ_CHECK(got.type == SQLITE_BLOB && got.bytes == canonical,
             "crsql_pack_columns gave " + Render(got) + ", PackValues " + Hex(canonical));
}

bool WriteSeeds(const std::string& dir) {
  auto packed = [](const std::vector<Value>& v) {
    std::string s;
    PackValues(v, &s);
    return s;
  };
  bool ok = true;
  ok &= WriteFile(dir, "int_small", packed({Value::Int(1)}));
  ok &= WriteFile(dir, "int_zero_neg_max",
                  packed({Value::Int(0), Value::Int(-1), Value::Int(INT64_MAX), Value::Int(256)}));
  ok &= WriteFile(dir, "real", packed({Value::Real(1.5), Value::Real(-0.0)}));
  ok &= WriteFile(dir, "text_blob_null",
                  packed({Value::Text("a"), Value::Blob(std::string("\x00\xff", 2)), Value::Null(),
                          Value::Text("")}));
  ok &= WriteFile(dir, "text_300", packed({Value::Text(std::string(300, 'x'))}));
  ok &= WriteFile(dir, "mixed", packed({Value::Int(1), Value::Text("a"), Value::Blob("\xff"),
                                        Value::Null(), Value::Real(2.5)}));
  ok &= WriteFile(dir, "empty_list", packed({}));
  // Accepted but not canonical: a zero-padded integer, W bits on NULL.
  ok &= WriteFile(dir, "noncanonical_int", std::string("\x01\x19\x00\x00\x01", 5));
  ok &= WriteFile(dir, "noncanonical_null", std::string("\x01\x0d", 2));
  // Rejected: truncated, trailing bytes, bad type.
  ok &= WriteFile(dir, "truncated_text", std::string("\x01\x0b\x05\x61", 4));
  ok &= WriteFile(dir, "trailing", std::string("\x01\x09\x01\x00", 4));
  ok &= WriteFile(dir, "bad_type", std::string("\x01\x06", 2));
  return ok;
}

}  // namespace
}  // namespace crsync::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace crsync::fuzz;
  MaybeWriteSeeds(WriteSeeds);
  static crsync::DbPtr db = NewDb(Site('\x11'), "");
  g_db = db.get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crsync;
  using namespace crsync::fuzz;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<Value> vals;
  Status s = UnpackValues(in, &vals);
  if (!s.ok()) {
    FUZZ_CHECK(s.code() == Status::Code::kCorruption && !s.message().empty(), s.ToString());
    if (size < 4096) CheckSql(in, false, vals, "");
    return 0;
  }
  FUZZ_CHECK(vals.size() == static_cast<unsigned char>(in[0]), "value count");

  std::string repacked;
  PackValues(vals, &repacked);
  bool canonical = IsCanonical(in);
  if (canonical) {
    FUZZ_CHECK(repacked == in, "PackValues(UnpackValues(x)) != x for canonical x = " + Hex(in) +
                                   "; repacked " + Hex(repacked));
  } else {
    FUZZ_CHECK(repacked != in, "non-canonical input re-packed identically: " + Hex(in));
  }
  // The canonical form decodes to the same values and is a fixed point.
  std::vector<Value> again;
  FUZZ_CHECK_OK(UnpackValues(repacked, &again));
  FUZZ_CHECK(RenderAll(again) == RenderAll(vals), "values changed by a round trip: " + Hex(in));
  FUZZ_CHECK(IsCanonical(repacked), "PackValues wrote a non-canonical form: " + Hex(repacked));
  std::string twice;
  PackValues(again, &twice);
  FUZZ_CHECK(twice == repacked, "PackValues is not a fixed point on " + Hex(repacked));

  if (size < 4096) CheckSql(in, true, vals, repacked);
  return 0;
}
