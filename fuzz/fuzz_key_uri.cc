// Fuzz target: `devid:` key URIs (provider store loader, agent, PKCS#11 config).
#include "provider/key_uri.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto uri = devid::provider::ParseKeyUri(text);
  if (uri.ok()) {
    // What parses names exactly one chip and a valid slot.
    if (uri->image.empty() == uri->socket.empty() || uri->slot < 0 || uri->slot > 15)
      __builtin_trap();
  }
  return 0;
}
