// `devid:` key URIs: which chip, which slot.
//   devid:socket=/run/devid/chip.sock;slot=0
//   devid:image=chip.img;slot=0;pin-file=/etc/devid/pin
// Attributes are separated by ';', values are taken as written (no escaping);
// exactly one of socket= and image= is required, slot= is 0..15.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/result.h"

namespace devid::provider {

struct KeyUri {
  std::string image;
  std::string socket;
  int slot = 0;
  std::string pin_file;
  // "image=PATH" or "socket=PATH": one chip, however many keys name it.
  std::string chip() const { return image.empty() ? "socket=" + socket : "image=" + image; }
};

Result<KeyUri> ParseKeyUri(std::string_view uri);

// The body of a key reference file ("DEVID KEY REFERENCE" PEM): the URI as a
// DER UTF8String. Parsing checks the DER strictly and the URI's form.
inline constexpr size_t kMaxKeyUri = 1024;
Result<Bytes> EncodeKeyReferenceDer(std::string_view uri);
Result<std::string> ParseKeyReferenceDer(ByteView der);

}  // namespace devid::provider
