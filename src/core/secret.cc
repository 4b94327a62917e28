#include "core/secret.h"

#include <openssl/crypto.h>

namespace devid {

// The one OpenSSL call outside src/crypto: core/ must zero secrets and
// OPENSSL_cleanse is the primitive the whole project relies on for it.
void SecureZero(void* data, size_t size) {
  if (data != nullptr && size > 0) OPENSSL_cleanse(data, size);
}

}  // namespace devid
