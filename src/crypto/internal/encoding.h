// DER and PEM output helpers shared by the crypto layer (internal).
#pragma once

#include <openssl/objects.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/error.h"
#include "crypto/handles.h"

namespace devid::crypto::internal {

// A read-only memory BIO over `data`; refuses buffers OpenSSL's int lengths cannot hold.
inline Result<UniquePtr<BIO>> MemBio(ByteView data) {
  if (data.size() > static_cast<size_t>(INT32_MAX)) {
    return MakeError(ErrorCode::kInvalidInput, "input larger than 2 GiB");
  }
  UniquePtr<BIO> bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) return OpenSslError("allocating BIO");
  return bio;
}

// An OID as dotted text; kInvalidInput when it does not fit in 255 characters.
inline Result<std::string> OidText(const ASN1_OBJECT* obj, bool numeric) {
  char buf[256];
  int n = OBJ_obj2txt(buf, sizeof buf, obj, numeric ? 1 : 0);
  if (n <= 0 || n >= static_cast<int>(sizeof buf)) {
    return MakeError(ErrorCode::kInvalidInput, "object identifier too long or invalid");
  }
  return std::string(buf, static_cast<size_t>(n));
}

// Runs an i2d-style encoder twice (length, then bytes): `encode(unsigned char**)`.
template <typename Encode>
Result<Bytes> EncodeDer(std::string_view what, Encode&& encode) {
  int len = encode(nullptr);
  if (len <= 0) return OpenSslError("encoding " + std::string(what));
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  if (encode(&p) != len) return OpenSslError("encoding " + std::string(what));
  return out;
}

// Runs a PEM writer into a memory BIO: `write(BIO*)` returns 1 on success.
template <typename Write>
Result<std::string> EncodePem(std::string_view what, Write&& write) {
  UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) return OpenSslError("writing PEM " + std::string(what));
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len < 0) return OpenSslError("reading PEM " + std::string(what));
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace devid::crypto::internal
