// PKCS#7 / CMS containers: the certs-only SignedData of EST (RFC 7030 §4.1.3,
// RFC 5652 "degenerate" SignedData), the CSR attributes of EST (§4.5.2),
// password-protected PKCS#12 (RFC 7292) for server-generated keys.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "core/secret.h"
#include "crypto/certificate.h"
#include "crypto/key.h"

namespace devid::crypto {

// DER of a SignedData with the certificates and no signers or content.
Result<Bytes> MakeCertsOnlyPkcs7(const std::vector<Certificate>& certificates);
// The certificates of a certs-only PKCS#7 (DER); refuses trailing bytes and
// other content types.
Result<std::vector<Certificate>> ParseCertsOnlyPkcs7(ByteView der);

// DER of CsrAttrs ::= SEQUENCE OF AttrOrOID, here only OIDs (dotted text).
Result<Bytes> EncodeCsrAttributes(const std::vector<std::string>& oids);

// One identity of a PKCS#12: a key and its certificate, under a friendly name.
struct Pkcs12Entry {
  const PrivateKey* key = nullptr;
  const Certificate* certificate = nullptr;
  std::string friendly_name;
};

// DER of a PKCS#12 holding every entry (key and certificate paired by
// localKeyID) and the CA chain; keys and certificates encrypted with
// AES-256-CBC under PBKDF2, integrity by an HMAC-SHA256 MAC.
Result<Bytes> MakePkcs12(const std::vector<Pkcs12Entry>& entries,
                         const std::vector<Certificate>& chain, const SecretString& password);

// CMS EnvelopedData (RFC 5652 §6) of `content` for the recipients'
// certificates (ECDH key agreement for EC keys, RSA key transport for RSA),
// content encrypted with AES-256-CBC.
Result<Bytes> MakeEnvelope(const std::vector<Certificate>& recipients, ByteView content);
// Opens an envelope with the recipient's key and certificate.
Result<WipingString> OpenEnvelope(ByteView der, const PrivateKey& key,
                                  const Certificate& certificate);

}  // namespace devid::crypto
