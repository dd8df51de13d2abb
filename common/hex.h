// common/hex.h — lowercase hexadecimal of bytes, for messages and SQL
// blob literals (X'...').
#ifndef CRSYNC_COMMON_HEX_H_
#define CRSYNC_COMMON_HEX_H_

#include <string>
#include <string_view>

namespace crsync {

inline std::string HexBytes(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

}  // namespace crsync

#endif  // CRSYNC_COMMON_HEX_H_
