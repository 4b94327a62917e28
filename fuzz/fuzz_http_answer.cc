// Fuzz target: the HTTP/1.1 answer the agent reads from the CMS when it
// re-enrols over a TLS connection whose key is in its chip.
#include <string_view>

#include "agent/enroll.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto answer =
      devid::agent::ParseHttpAnswer(std::string_view(reinterpret_cast<const char*>(data), size));
  if (answer.ok() && (answer->status < 100 || answer->status > 599 || answer->body.size() > size)) {
    __builtin_trap();
  }
  return 0;
}
