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

std::optional<Bytes> Base64Decode(std::string_view text) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  Bytes out;
  uint32_t acc = 0;
  int bits = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] != '='; ++i) {
    size_t v = kAlphabet.find(text[i]);
    if (v == std::string_view::npos) return std::nullopt;
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  for (; i < text.size(); ++i) {
    if (text[i] != '=') return std::nullopt;
  }
  return out;
}

std::optional<Bytes> Base64DecodeLines(std::string_view text) {
  std::string compact;
  compact.reserve(text.size());
  for (char c : text) {
    if (c != '\r' && c != '\n' && c != ' ' && c != '\t') compact.push_back(c);
  }
  return Base64Decode(compact);
}

std::string Base64Encode(ByteView data, size_t line_length) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4 + 2 * (data.size() / 48 + 1));
  size_t column = 0;
  auto put = [&](char c) {
    if (line_length > 0 && column == line_length) {
      out.push_back('\n');
      column = 0;
    }
    out.push_back(c);
    ++column;
  };
  for (size_t i = 0; i < data.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(data[i]) << 16;
    if (i + 1 < data.size()) n |= static_cast<uint32_t>(data[i + 1]) << 8;
    if (i + 2 < data.size()) n |= data[i + 2];
    put(kAlphabet[(n >> 18) & 63]);
    put(kAlphabet[(n >> 12) & 63]);
    put(i + 1 < data.size() ? kAlphabet[(n >> 6) & 63] : '=');
    put(i + 2 < data.size() ? kAlphabet[n & 63] : '=');
  }
  return out;
}

std::string PemEncode(std::string_view label, ByteView der) {
  std::string out = "-----BEGIN " + std::string(label) + "-----\n";
  out += Base64Encode(der, 64);
  out += "\n-----END " + std::string(label) + "-----\n";
  return out;
}

}  // namespace devid
