#include "crypto/pkcs7.h"

#include "crypto/error.h"
#include "crypto/handles.h"

namespace devid::crypto {

Result<Bytes> MakeCertsOnlyPkcs7(const std::vector<Certificate>& certificates) {
  UniquePtr<PKCS7> p7(PKCS7_new());
  if (!p7 || PKCS7_set_type(p7.get(), NID_pkcs7_signed) != 1 ||
      PKCS7_content_new(p7.get(), NID_pkcs7_data) != 1) {
    return OpenSslError("building a certs-only PKCS#7");
  }
  for (const Certificate& c : certificates) {
    // PKCS7_add_certificate takes its own reference.
    if (PKCS7_add_certificate(p7.get(), c.get()) != 1) {
      return OpenSslError("adding a certificate to PKCS#7");
    }
  }
  unsigned char* out = nullptr;
  int len = i2d_PKCS7(p7.get(), &out);
  if (len <= 0) return OpenSslError("encoding PKCS#7");
  UniquePtr<unsigned char> owned(out);
  return Bytes(out, out + len);
}

Result<std::vector<Certificate>> ParseCertsOnlyPkcs7(ByteView der) {
  const unsigned char* p = der.data();
  UniquePtr<PKCS7> p7(d2i_PKCS7(nullptr, &p, static_cast<long>(der.size())));
  if (!p7) return OpenSslError("parsing PKCS#7", ErrorCode::kInvalidInput);
  if (p != der.data() + der.size()) {
    return MakeError(ErrorCode::kInvalidInput, "trailing bytes after the PKCS#7 structure");
  }
  if (OBJ_obj2nid(p7->type) != NID_pkcs7_signed || p7->d.sign == nullptr) {
    return MakeError(ErrorCode::kInvalidInput, "the PKCS#7 structure is not SignedData");
  }
  std::vector<Certificate> out;
  STACK_OF(X509)* certs = p7->d.sign->cert;
  for (int i = 0; certs != nullptr && i < sk_X509_num(certs); ++i) {
    X509* x = sk_X509_value(certs, i);
    if (X509_up_ref(x) != 1) return OpenSslError("referencing a certificate");
    out.emplace_back(UniquePtr<X509>(x));
  }
  if (out.empty()) return MakeError(ErrorCode::kInvalidInput, "the PKCS#7 holds no certificate");
  return out;
}

Result<Bytes> EncodeCsrAttributes(const std::vector<std::string>& oids) {
  UniquePtr<STACK_OF(ASN1_OBJECT)> stack(sk_ASN1_OBJECT_new_null());
  if (!stack) return OpenSslError("allocating CSR attributes");
  Bytes body;
  for (const std::string& text : oids) {
    UniquePtr<ASN1_OBJECT> obj(OBJ_txt2obj(text.c_str(), 1));
    if (!obj) return OpenSslError("OID " + text, ErrorCode::kInvalidInput);
    int len = i2d_ASN1_OBJECT(obj.get(), nullptr);
    if (len <= 0) return OpenSslError("encoding OID " + text);
    size_t at = body.size();
    body.resize(at + static_cast<size_t>(len));
    unsigned char* p = body.data() + at;
    if (i2d_ASN1_OBJECT(obj.get(), &p) != len) return OpenSslError("encoding OID " + text);
  }
  // SEQUENCE header (DER definite length) around the OIDs.
  Bytes out = {0x30};
  if (body.size() < 0x80) {
    out.push_back(static_cast<uint8_t>(body.size()));
  } else if (body.size() <= 0xFF) {
    out.insert(out.end(), {0x81, static_cast<uint8_t>(body.size())});
  } else if (body.size() <= 0xFFFF) {
    out.insert(out.end(), {0x82, static_cast<uint8_t>(body.size() >> 8),
                           static_cast<uint8_t>(body.size() & 0xFF)});
  } else {
    return MakeError(ErrorCode::kInvalidInput, "too many CSR attributes");
  }
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Result<Bytes> MakePkcs12(const PrivateKey& key, const Certificate& certificate,
                         const std::vector<Certificate>& chain, const std::string& friendly_name,
                         const SecretString& password) {
  UniquePtr<STACK_OF(X509)> cas(sk_X509_new_null());
  if (!cas) return OpenSslError("allocating the PKCS#12 chain");
  for (const Certificate& c : chain) {
    if (X509_up_ref(c.get()) != 1) return OpenSslError("referencing a certificate");
    if (sk_X509_push(cas.get(), c.get()) <= 0) {
      X509_free(c.get());
      return OpenSslError("building the PKCS#12 chain");
    }
  }
  std::string pass(password.reveal());
  // NID 0 for the ciphers and MAC: OpenSSL 3's defaults (AES-256-CBC, PBKDF2, SHA-256 MAC).
  UniquePtr<PKCS12> p12(PKCS12_create_ex(pass.c_str(), friendly_name.c_str(), key.get(),
                                         certificate.get(), cas.get(), 0, 0, 0, 0, 0, nullptr,
                                         nullptr));
  OPENSSL_cleanse(pass.data(), pass.size());
  if (!p12) return OpenSslError("building PKCS#12");
  unsigned char* out = nullptr;
  int len = i2d_PKCS12(p12.get(), &out);
  if (len <= 0) return OpenSslError("encoding PKCS#12");
  UniquePtr<unsigned char> owned(out);
  return Bytes(out, out + len);
}

}  // namespace devid::crypto
