// OpenSSL failures as devid Errors that carry the library's error queue.
#pragma once

#include <string_view>

#include "core/result.h"

namespace devid::crypto {

// Drains the OpenSSL error queue into the message: "<what>: <lib reasons>".
Error OpenSslError(std::string_view what, ErrorCode code = ErrorCode::kCrypto);

// Empties the queue (after a failure that was expected and handled).
void ClearOpenSslErrors();

}  // namespace devid::crypto
