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

// DER of a PKCS#12 holding the key, its certificate and the chain, encrypted
// with AES-256-CBC under PBKDF2 (OpenSSL 3 defaults), MAC SHA-256.
Result<Bytes> MakePkcs12(const PrivateKey& key, const Certificate& certificate,
                         const std::vector<Certificate>& chain, const std::string& friendly_name,
                         const SecretString& password);

}  // namespace devid::crypto
