#include "crypto/csr.h"

#include <openssl/pem.h>

#include "crypto/error.h"

namespace devid::crypto {

Result<CertificateRequest> CertificateRequest::Parse(ByteView data) {
  if (data.empty()) return MakeError(ErrorCode::kInvalidInput, "the CSR is empty");
  X509_REQ* raw = nullptr;
  if (LooksLikePem(data)) {
    UniquePtr<BIO> bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (!bio) return OpenSslError("allocating BIO");
    raw = PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr) return OpenSslError("parsing PEM CSR", ErrorCode::kInvalidInput);
  } else {
    const unsigned char* p = data.data();
    raw = d2i_X509_REQ(nullptr, &p, static_cast<long>(data.size()));
    if (raw == nullptr) return OpenSslError("parsing DER CSR", ErrorCode::kInvalidInput);
    if (p != data.data() + data.size()) {
      X509_REQ_free(raw);
      return MakeError(ErrorCode::kInvalidInput, "parsing DER CSR: trailing bytes after the request");
    }
  }
  UniquePtr<X509_REQ> req(raw);
  if (X509_REQ_get0_pubkey(req.get()) == nullptr) {
    return OpenSslError("the CSR's public key cannot be decoded", ErrorCode::kInvalidInput);
  }
  return CertificateRequest(std::move(req));
}

Status CertificateRequest::VerifyProofOfPossession() const {
  EVP_PKEY* key = X509_REQ_get0_pubkey(req_.get());
  if (key == nullptr) return OpenSslError("the CSR's public key cannot be decoded", ErrorCode::kInvalidInput);
  int r = X509_REQ_verify(req_.get(), key);
  if (r != 1) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kVerification, "CSR signature does not verify with its own key");
  }
  return {};
}

KeyAlgorithm CertificateRequest::key_algorithm() const {
  return DescribeKey(X509_REQ_get0_pubkey(req_.get()));
}

Result<DistinguishedName> CertificateRequest::subject() const {
  return DistinguishedName::FromX509Name(X509_REQ_get_subject_name(req_.get()));
}

Result<std::vector<GeneralName>> CertificateRequest::RequestedSubjectAltNames() const {
  STACK_OF(X509_EXTENSION)* raw = X509_REQ_get_extensions(req_.get());
  std::vector<GeneralName> out;
  if (raw == nullptr) {
    ClearOpenSslErrors();
    return out;
  }
  UniquePtr<STACK_OF(X509_EXTENSION)> owned(raw);
  int crit = 0;
  int idx = -1;
  void* decoded = X509V3_get_d2i(raw, NID_subject_alt_name, &crit, &idx);
  if (decoded == nullptr) {
    if (crit == -2) return MakeError(ErrorCode::kInvalidInput, "the CSR requests subjectAltName twice");
    if (crit >= 0) return OpenSslError("decoding the CSR's subjectAltName", ErrorCode::kInvalidInput);
    ClearOpenSslErrors();
    return out;
  }
  UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(decoded));
  return FromGeneralNames(names.get());
}

Result<Bytes> CertificateRequest::ToDer() const {
  int len = i2d_X509_REQ(req_.get(), nullptr);
  if (len <= 0) return OpenSslError("encoding CSR");
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  i2d_X509_REQ(req_.get(), &p);
  return out;
}

Result<CertificateRequest> MakeCertificateRequest(const PrivateKey& key,
                                                  const DistinguishedName& subject,
                                                  const std::vector<GeneralName>& sans) {
  UniquePtr<X509_REQ> req(X509_REQ_new());
  if (!req) return OpenSslError("allocating X509_REQ");
  DEVID_ASSIGN_OR_RETURN(UniquePtr<X509_NAME> name, subject.ToX509Name());
  if (X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_REQ_set_subject_name(req.get(), name.get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.get()) != 1) {
    return OpenSslError("building CSR");
  }
  if (!sans.empty()) {
    DEVID_ASSIGN_OR_RETURN(UniquePtr<GENERAL_NAMES> gns, ToGeneralNames(sans));
    UniquePtr<STACK_OF(X509_EXTENSION)> exts(sk_X509_EXTENSION_new_null());
    UniquePtr<X509_EXTENSION> ext(X509V3_EXT_i2d(NID_subject_alt_name, 0, gns.get()));
    if (!exts || !ext || sk_X509_EXTENSION_push(exts.get(), ext.get()) == 0) {
      return OpenSslError("building CSR extensions");
    }
    ext.release();
    if (X509_REQ_add_extensions(req.get(), exts.get()) != 1) return OpenSslError("adding CSR extensions");
  }
  KeyAlgorithm alg = key.algorithm();
  const EVP_MD* md = alg.type ? SignatureDigestFor(*alg.type) : EVP_sha256();
  if (X509_REQ_sign(req.get(), key.get(), md) <= 0) return OpenSslError("signing CSR");
  return CertificateRequest(std::move(req));
}

}  // namespace devid::crypto
