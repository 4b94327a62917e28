#include "core/bytes.h"

namespace devid {

std::string HexEncode(ByteView data) {
  std::string out;
  HexEncodeTo(data, out);
  return out;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<Bytes> HexDecode(std::string_view hex) {
  if (hex.size() >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) {
    hex.remove_prefix(2);
  }
  std::string digits;
  digits.reserve(hex.size());
  for (char c : hex) {
    if (c == ':') continue;
    if (HexValue(c) < 0) {
      return MakeError(ErrorCode::kInvalidInput, "'" + std::string(hex) + "' is not hexadecimal");
    }
    digits.push_back(c);
  }
  if (digits.empty()) {
    return MakeError(ErrorCode::kInvalidInput, "empty hexadecimal value");
  }
  if (digits.size() % 2 != 0) digits.insert(digits.begin(), '0');
  Bytes out(digits.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<uint8_t>(HexValue(digits[2 * i]) << 4 | HexValue(digits[2 * i + 1]));
  }
  return out;
}

}  // namespace devid
