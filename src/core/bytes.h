// Byte buffers and their text encodings.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace devid {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view AsString(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// RFC 4648 base64, standard alphabet; padding optional when decoding.
std::optional<Bytes> Base64Decode(std::string_view text);
// The same, ignoring line breaks and blanks (MIME and RFC 7030 bodies).
std::optional<Bytes> Base64DecodeLines(std::string_view text);
// With padding; `line_length` > 0 breaks lines with LF (RFC 7030 bodies; GNU
// base64 -d and OpenSSL both read LF-separated lines, not all read CRLF).
std::string Base64Encode(ByteView data, size_t line_length = 0);

// RFC 7468 text encoding: "-----BEGIN LABEL-----", base64 in 64-column lines,
// "-----END LABEL-----". Only the armour: nothing is parsed.
std::string PemEncode(std::string_view label, ByteView der);

// Upper-case hex, no separators.
std::string HexEncode(ByteView data);
// The same, appended to any string type (a WipingString for secrets).
template <typename String>
void HexEncodeTo(ByteView data, String& out) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  out.reserve(out.size() + data.size() * 2);
  for (uint8_t b : data) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0F]);
  }
}
// Accepts upper or lower case, optional "0x" prefix and ':' separators.
Result<Bytes> HexDecode(std::string_view hex);

}  // namespace devid
