// Fuzz target: `devid:` key URIs (provider store loader, agent) and key
// reference files' DER bodies (the provider's decoder).
#include "provider/key_uri.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto uri = devid::provider::ParseKeyUri(text);
  if (uri.ok()) {
    // What parses names exactly one chip and a valid slot.
    if (uri->image.empty() == uri->socket.empty() || uri->slot < 0 || uri->slot > 15)
      __builtin_trap();
  }
  // The same bytes as the body of a key reference file.
  auto ref = devid::provider::ParseKeyReferenceDer(devid::ByteView(data, size));
  if (ref.ok()) {
    auto again = devid::provider::EncodeKeyReferenceDer(*ref);
    if (!again.ok() || *again != devid::Bytes(data, data + size)) __builtin_trap();  // canonical
  }
  return 0;
}
