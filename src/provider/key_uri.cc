#include "provider/key_uri.h"

#include <charconv>

namespace devid::provider {

Result<KeyUri> ParseKeyUri(std::string_view uri) {
  constexpr std::string_view kScheme = "devid:";
  if (!uri.starts_with(kScheme)) {
    return MakeError(ErrorCode::kInvalidInput, "a chip key URI starts with devid:");
  }
  uri.remove_prefix(kScheme.size());
  KeyUri out;
  bool have_slot = false;
  while (!uri.empty()) {
    size_t end = uri.find(';');
    std::string_view attr = uri.substr(0, end);
    uri = end == std::string_view::npos ? std::string_view() : uri.substr(end + 1);
    size_t eq = attr.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == attr.size()) {
      return MakeError(ErrorCode::kInvalidInput,
                       "chip key URI attribute '" + std::string(attr) + "' is not name=value");
    }
    std::string_view name = attr.substr(0, eq);
    std::string_view value = attr.substr(eq + 1);
    std::string* target = nullptr;
    if (name == "image") {
      target = &out.image;
    } else if (name == "socket") {
      target = &out.socket;
    } else if (name == "pin-file") {
      target = &out.pin_file;
    } else if (name == "slot") {
      if (have_slot) return MakeError(ErrorCode::kInvalidInput, "slot= is given twice");
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), out.slot);
      if (ec != std::errc() || p != value.data() + value.size() || out.slot < 0 || out.slot > 15) {
        return MakeError(ErrorCode::kInvalidInput, "slot= must be a number from 0 to 15");
      }
      have_slot = true;
      continue;
    } else {
      return MakeError(ErrorCode::kInvalidInput,
                       "unknown chip key URI attribute '" + std::string(name) + "'");
    }
    if (!target->empty()) {
      return MakeError(ErrorCode::kInvalidInput, std::string(name) + "= is given twice");
    }
    *target = std::string(value);
  }
  if (out.image.empty() == out.socket.empty()) {
    return MakeError(ErrorCode::kInvalidInput,
                     "a chip key URI names exactly one of image= and socket=");
  }
  if (!have_slot) return MakeError(ErrorCode::kInvalidInput, "a chip key URI needs slot=");
  return out;
}

namespace {
Status ValidKeyUri(std::string_view uri) {
  auto parsed = ParseKeyUri(uri);
  if (!parsed.ok()) return parsed.error();
  return {};
}
}  // namespace

Result<Bytes> EncodeKeyReferenceDer(std::string_view uri) {
  DEVID_TRY(ValidKeyUri(uri));
  if (uri.size() > kMaxKeyUri)
    return MakeError(ErrorCode::kInvalidInput, "the key URI is too long");
  Bytes der = {0x0C};
  if (uri.size() < 0x80) {
    der.push_back(static_cast<uint8_t>(uri.size()));
  } else if (uri.size() < 0x100) {
    der.insert(der.end(), {0x81, static_cast<uint8_t>(uri.size())});
  } else {
    der.insert(der.end(),
               {0x82, static_cast<uint8_t>(uri.size() >> 8), static_cast<uint8_t>(uri.size())});
  }
  der.insert(der.end(), uri.begin(), uri.end());
  return der;
}

Result<std::string> ParseKeyReferenceDer(ByteView der) {
  if (der.size() < 2 || der[0] != 0x0C) {
    return MakeError(ErrorCode::kInvalidInput, "a key reference holds a UTF8String");
  }
  size_t length = der[1];
  size_t header = 2;
  if (length == 0x81 && der.size() >= 3) {
    length = der[2];
    header = 3;
    if (length < 0x80) return MakeError(ErrorCode::kInvalidInput, "non-minimal DER length");
  } else if (length == 0x82 && der.size() >= 4) {
    length = static_cast<size_t>(der[2]) << 8 | der[3];
    header = 4;
    if (length < 0x100) return MakeError(ErrorCode::kInvalidInput, "non-minimal DER length");
  } else if (length >= 0x80) {
    return MakeError(ErrorCode::kInvalidInput, "bad DER length in a key reference");
  }
  if (der.size() != header + length || length > kMaxKeyUri) {
    return MakeError(ErrorCode::kInvalidInput, "the key reference's length does not match");
  }
  std::string uri(AsString(der.subspan(header)));
  DEVID_TRY(ValidKeyUri(uri));
  return uri;
}

}  // namespace devid::provider
