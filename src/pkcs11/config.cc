#include "pkcs11/config.h"

#include <cstdlib>

#include "core/file.h"

namespace devid::pkcs11 {

Result<std::vector<std::string>> ParseChipList(std::string_view text, char separator) {
  std::vector<std::string> chips;
  size_t line = 0;
  while (!text.empty()) {
    ++line;
    size_t end = text.find(separator);
    std::string_view entry = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t'))
      entry.remove_prefix(1);
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t' || entry.back() == '\r'))
      entry.remove_suffix(1);
    if (entry.empty() || entry.front() == '#') continue;
    bool image = entry.starts_with("image=");
    bool socket = entry.starts_with("socket=");
    if ((!image && !socket) || entry.size() == (image ? 6u : 7u)) {
      return MakeError(ErrorCode::kInvalidInput, "chip entry " + std::to_string(line) + " ('" +
                                                     std::string(entry) +
                                                     "') is not image=PATH or socket=PATH");
    }
    chips.emplace_back(entry);
  }
  if (chips.empty()) return MakeError(ErrorCode::kInvalidInput, "no chip is configured");
  return chips;
}

Result<std::vector<std::string>> ChipsFromEnvironment() {
  if (const char* list = std::getenv("DEVID_PKCS11_CHIPS"); list != nullptr && *list != '\0') {
    return ParseChipList(list, ',');
  }
  if (const char* path = std::getenv("DEVID_PKCS11_CONFIG"); path != nullptr && *path != '\0') {
    DEVID_ASSIGN_OR_RETURN(Bytes content, ReadFile(path, 64 * 1024));
    return ParseChipList(AsString(content), '\n');
  }
  return MakeError(ErrorCode::kInvalidInput,
                   "set DEVID_PKCS11_CHIPS (image=PATH,socket=PATH,...) or DEVID_PKCS11_CONFIG");
}

}  // namespace devid::pkcs11
