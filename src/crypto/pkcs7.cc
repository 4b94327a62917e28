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

Result<Bytes> MakePkcs12(const std::vector<Pkcs12Entry>& entries,
                         const std::vector<Certificate>& chain, const SecretString& password) {
  constexpr int kIterations = PKCS12_DEFAULT_ITER;
  std::string pass(password.reveal());
  auto wipe = [&pass] { OPENSSL_cleanse(pass.data(), pass.size()); };
  STACK_OF(PKCS12_SAFEBAG)* cert_bags_raw = nullptr;
  STACK_OF(PKCS12_SAFEBAG)* key_bags_raw = nullptr;
  UniquePtr<STACK_OF(PKCS12_SAFEBAG)> cert_bags;
  UniquePtr<STACK_OF(PKCS12_SAFEBAG)> key_bags;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Pkcs12Entry& e = entries[i];
    // localKeyID pairs each key with its certificate.
    std::string id = "devid-" + std::to_string(i + 1);
    PKCS12_SAFEBAG* cert_bag = PKCS12_add_cert(&cert_bags_raw, e.certificate->get());
    cert_bags.release();
    cert_bags.reset(cert_bags_raw);
    PKCS12_SAFEBAG* key_bag =
        cert_bag == nullptr ? nullptr
                            : PKCS12_add_key_ex(&key_bags_raw, e.key->get(), 0, kIterations,
                                                NID_aes_256_cbc, pass.c_str(), nullptr, nullptr);
    key_bags.release();
    key_bags.reset(key_bags_raw);
    if (key_bag == nullptr ||
        PKCS12_add_localkeyid(cert_bag, reinterpret_cast<unsigned char*>(id.data()),
                              static_cast<int>(id.size())) != 1 ||
        PKCS12_add_localkeyid(key_bag, reinterpret_cast<unsigned char*>(id.data()),
                              static_cast<int>(id.size())) != 1 ||
        PKCS12_add_friendlyname_utf8(cert_bag, e.friendly_name.c_str(),
                                     static_cast<int>(e.friendly_name.size())) != 1 ||
        PKCS12_add_friendlyname_utf8(key_bag, e.friendly_name.c_str(),
                                     static_cast<int>(e.friendly_name.size())) != 1) {
      wipe();
      return OpenSslError("adding an identity to PKCS#12");
    }
  }
  for (const Certificate& c : chain) {
    PKCS12_SAFEBAG* bag = PKCS12_add_cert(&cert_bags_raw, c.get());
    cert_bags.release();
    cert_bags.reset(cert_bags_raw);
    if (bag == nullptr) {
      wipe();
      return OpenSslError("adding a CA certificate to PKCS#12");
    }
  }
  STACK_OF(PKCS7)* safes_raw = nullptr;
  UniquePtr<STACK_OF(PKCS7)> safes;
  bool ok = PKCS12_add_safe_ex(&safes_raw, cert_bags.get(), NID_aes_256_cbc, kIterations,
                               pass.c_str(), nullptr, nullptr) == 1;
  safes.reset(safes_raw);
  if (ok && key_bags) {
    // Keys are already shrouded: their safe needs no second encryption.
    ok = PKCS12_add_safe_ex(&safes_raw, key_bags.get(), -1, 0, nullptr, nullptr, nullptr) == 1;
    safes.release();
    safes.reset(safes_raw);
  }
  UniquePtr<PKCS12> p12(ok ? PKCS12_add_safes_ex(safes.get(), 0, nullptr, nullptr) : nullptr);
  ok = p12 &&
       PKCS12_set_mac(p12.get(), pass.c_str(), -1, nullptr, 0, kIterations, EVP_sha256()) == 1;
  wipe();
  if (!ok) return OpenSslError("building PKCS#12");
  unsigned char* out = nullptr;
  int len = i2d_PKCS12(p12.get(), &out);
  if (len <= 0) return OpenSslError("encoding PKCS#12");
  UniquePtr<unsigned char> owned(out);
  return Bytes(out, out + len);
}

Result<Bytes> MakeEnvelope(const std::vector<Certificate>& recipients, ByteView content) {
  UniquePtr<STACK_OF(X509)> certs(sk_X509_new_null());
  if (!certs) return OpenSslError("allocating recipients");
  for (const Certificate& c : recipients) {
    if (X509_up_ref(c.get()) != 1) return OpenSslError("referencing a certificate");
    if (sk_X509_push(certs.get(), c.get()) <= 0) {
      X509_free(c.get());
      return OpenSslError("adding a recipient");
    }
  }
  UniquePtr<BIO> in(BIO_new_mem_buf(content.data(), static_cast<int>(content.size())));
  if (!in) return OpenSslError("allocating the envelope input");
  UniquePtr<CMS_ContentInfo> cms(CMS_encrypt(certs.get(), in.get(), EVP_aes_256_cbc(), CMS_BINARY));
  if (!cms) return OpenSslError("making CMS EnvelopedData");
  unsigned char* out = nullptr;
  int len = i2d_CMS_ContentInfo(cms.get(), &out);
  if (len <= 0) return OpenSslError("encoding CMS EnvelopedData");
  UniquePtr<unsigned char> owned(out);
  return Bytes(out, out + len);
}

Result<WipingString> OpenEnvelope(ByteView der, const PrivateKey& key,
                                  const Certificate& certificate) {
  const unsigned char* p = der.data();
  UniquePtr<CMS_ContentInfo> cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (!cms || p != der.data() + der.size()) {
    return OpenSslError("parsing CMS EnvelopedData", ErrorCode::kInvalidInput);
  }
  if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_enveloped) {
    return MakeError(ErrorCode::kInvalidInput, "the CMS structure is not EnvelopedData");
  }
  UniquePtr<BIO> out(BIO_new(BIO_s_secmem()));
  if (!out) return OpenSslError("allocating the envelope output");
  if (CMS_decrypt(cms.get(), key.get(), certificate.get(), nullptr, out.get(), CMS_BINARY) != 1) {
    return OpenSslError("opening the envelope (not for this key?)", ErrorCode::kAuth);
  }
  WipingString text;
  char buffer[4096];
  int n;
  while ((n = BIO_read(out.get(), buffer, sizeof(buffer))) > 0) {
    text.append(buffer, static_cast<size_t>(n));
  }
  OPENSSL_cleanse(buffer, sizeof(buffer));
  return text;
}

}  // namespace devid::crypto
