#include "crypto/csr.h"

#include <openssl/objects.h>
#include <openssl/pem.h>

#include <cstring>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"

namespace devid::crypto {

namespace {

Error Malformed(const std::string& what) {
  ClearOpenSslErrors();
  return MakeError(ErrorCode::kInvalidInput, "malformed CSR: " + what);
}

// One DER element: where it starts, its content, where it ends.
struct Element {
  const uint8_t* start;
  const uint8_t* content;
  const uint8_t* end;
  int tag;
  int cls;
  bool constructed;
  ByteView whole() const { return {start, static_cast<size_t>(end - start)}; }
  ByteView body() const { return {content, static_cast<size_t>(end - content)}; }
};

Result<Element> Next(const uint8_t*& p, const uint8_t* end, const char* what) {
  if (p >= end) return Malformed(std::string("missing ") + what);
  Element e{};
  e.start = p;
  long len = 0;
  const unsigned char* q = p;
  int r = ASN1_get_object(&q, &len, &e.tag, &e.cls, end - p);
  // 0x80: error; 0x01 with V_ASN1_CONSTRUCTED: indefinite length (BER, not DER).
  if ((r & 0x80) != 0 || (r & 0x01) != 0) return Malformed(std::string("bad encoding of ") + what);
  e.constructed = (r & V_ASN1_CONSTRUCTED) != 0;
  // DER: the header must be the shortest encoding of this tag and length.
  if (ASN1_object_size(e.constructed ? 1 : 0, len, e.tag) != (q - p) + len) {
    return Malformed(std::string("non-DER length encoding in ") + what);
  }
  e.content = q;
  e.end = q + len;
  p = e.end;
  return e;
}

Result<Element> Expect(const uint8_t*& p, const uint8_t* end, int tag, bool constructed,
                       const char* what) {
  DEVID_ASSIGN_OR_RETURN(Element e, Next(p, end, what));
  if (e.cls != V_ASN1_UNIVERSAL || e.tag != tag || e.constructed != constructed) {
    return Malformed(std::string("unexpected element where ") + what + " belongs");
  }
  return e;
}

Result<Bytes> PemToDer(ByteView data) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<BIO> bio, internal::MemBio(data));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* der = nullptr;
  long len = 0;
  if (PEM_read_bio(bio.get(), &name, &header, &der, &len) != 1) {
    return OpenSslError("parsing PEM CSR", ErrorCode::kInvalidInput);
  }
  UniquePtr<char> n(name);
  UniquePtr<char> h(header);
  UniquePtr<unsigned char> d(der);
  if (std::strcmp(name, "CERTIFICATE REQUEST") != 0 &&
      std::strcmp(name, "NEW CERTIFICATE REQUEST") != 0) {
    return MakeError(ErrorCode::kInvalidInput,
                     std::string("PEM block is '") + name + "', not a CERTIFICATE REQUEST");
  }
  return Bytes(der, der + len);
}

}  // namespace

Result<CertificateRequest> CertificateRequest::Parse(ByteView data) {
  if (data.empty()) return MakeError(ErrorCode::kInvalidInput, "the CSR is empty");
  Bytes der;
  if (LooksLikePem(data)) {
    DEVID_ASSIGN_OR_RETURN(der, PemToDer(data));
  } else {
    der.assign(data.begin(), data.end());
  }
  const uint8_t* p = der.data();
  const uint8_t* end = der.data() + der.size();
  DEVID_ASSIGN_OR_RETURN(Element outer,
                         Expect(p, end, V_ASN1_SEQUENCE, true, "CertificationRequest"));
  if (outer.end != end) return Malformed("trailing bytes after the request");

  const uint8_t* q = outer.content;
  DEVID_ASSIGN_OR_RETURN(Element info,
                         Expect(q, outer.end, V_ASN1_SEQUENCE, true, "certificationRequestInfo"));
  DEVID_ASSIGN_OR_RETURN(Element sig_alg,
                         Expect(q, outer.end, V_ASN1_SEQUENCE, true, "signatureAlgorithm"));
  DEVID_ASSIGN_OR_RETURN(Element sig, Expect(q, outer.end, V_ASN1_BIT_STRING, false, "signature"));
  if (q != outer.end) return Malformed("extra elements after the signature");

  const uint8_t* i = info.content;
  DEVID_ASSIGN_OR_RETURN(Element version, Expect(i, info.end, V_ASN1_INTEGER, false, "version"));
  if (version.body().size() != 1 || version.body()[0] != 0)
    return Malformed("version is not v1 (0)");
  DEVID_ASSIGN_OR_RETURN(Element subject, Expect(i, info.end, V_ASN1_SEQUENCE, true, "subject"));
  DEVID_ASSIGN_OR_RETURN(Element spki, Expect(i, info.end, V_ASN1_SEQUENCE, true, "subjectPKInfo"));
  ByteView attributes;
  if (i != info.end) {
    DEVID_ASSIGN_OR_RETURN(Element attrs, Next(i, info.end, "attributes"));
    if (attrs.cls != V_ASN1_CONTEXT_SPECIFIC || attrs.tag != 0 || !attrs.constructed) {
      return Malformed("attributes are not [0] IMPLICIT SET");
    }
    attributes = attrs.body();
  }
  if (i != info.end) return Malformed("extra elements in certificationRequestInfo");

  auto key = SubjectPublicKeyInfo::Parse(spki.whole());
  if (!key.ok()) return Malformed("subjectPKInfo: " + key.error().message);
  const unsigned char* s = subject.start;
  UniquePtr<X509_NAME> name(d2i_X509_NAME(nullptr, &s, subject.end - subject.start));
  if (!name || s != subject.end) return Malformed("subject name");
  s = sig_alg.start;
  UniquePtr<X509_ALGOR> alg(d2i_X509_ALGOR(nullptr, &s, sig_alg.end - sig_alg.start));
  if (!alg || s != sig_alg.end) return Malformed("signatureAlgorithm");
  s = sig.start;
  UniquePtr<ASN1_STRING> signature(d2i_ASN1_BIT_STRING(nullptr, &s, sig.end - sig.start));
  if (!signature || s != sig.end) return Malformed("signature");

  auto offset = [&](ByteView v) {
    return std::make_pair(static_cast<size_t>(v.data() - der.data()), v.size());
  };
  std::pair<size_t, size_t> info_range = offset(info.whole());
  std::pair<size_t, size_t> attributes_range =
      attributes.empty() ? std::make_pair(size_t{0}, size_t{0}) : offset(attributes);
  CertificateRequest req(std::move(der), std::move(key).value());
  req.info_ = info_range;
  req.attributes_ = attributes_range;
  req.subject_ = std::move(name);
  req.signature_algorithm_ = std::move(alg);
  req.signature_ = std::move(signature);
  return req;
}

Status CertificateRequest::VerifyProofOfPossession() const {
  int md_nid = NID_undef;
  int pkey_nid = NID_undef;
  const ASN1_OBJECT* sig_obj = nullptr;
  X509_ALGOR_get0(&sig_obj, nullptr, nullptr, signature_algorithm_.get());
  const ASN1_OBJECT* key_obj = nullptr;
  X509_ALGOR_get0(&key_obj, nullptr, nullptr, public_key_.algorithm_identifier());
  if (OBJ_find_sigid_algs(OBJ_obj2nid(sig_obj), &md_nid, &pkey_nid) != 1 ||
      (md_nid != NID_sha256 && md_nid != NID_sha384 && md_nid != NID_sha512)) {
    return MakeError(ErrorCode::kInvalidInput,
                     "the CSR's signature algorithm is not supported (ECDSA or RSA PKCS#1 v1.5 "
                     "with SHA-256/384/512)");
  }
  if (pkey_nid != OBJ_obj2nid(key_obj)) {
    return MakeError(ErrorCode::kVerification,
                     "the CSR's signature algorithm does not match its key");
  }
  // DER signatures are whole bytes: a BIT STRING with unused bits is malformed.
  if ((signature_->flags & 0x07) != 0 && (signature_->flags & ASN1_STRING_FLAG_BITS_LEFT) != 0) {
    return MakeError(ErrorCode::kInvalidInput, "malformed CSR signature");
  }
  const EVP_MD* md = EVP_get_digestbynid(md_nid);
  if (md == nullptr)
    return MakeError(ErrorCode::kInvalidInput, "the CSR's digest is not supported");
  DEVID_ASSIGN_OR_RETURN(UniquePtr<EVP_PKEY> key, public_key_.Decode());
  UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) != 1) {
    return OpenSslError("preparing CSR signature check");
  }
  ByteView info = Slice(info_);
  int r = EVP_DigestVerify(ctx.get(), ASN1_STRING_get0_data(signature_.get()),
                           static_cast<size_t>(ASN1_STRING_length(signature_.get())), info.data(),
                           info.size());
  if (r != 1) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kVerification, "CSR signature does not verify with its own key");
  }
  return {};
}

Result<DistinguishedName> CertificateRequest::subject() const {
  return DistinguishedName::FromX509Name(subject_.get());
}

Result<std::vector<GeneralName>> CertificateRequest::RequestedSubjectAltNames() const {
  std::vector<GeneralName> out;
  ByteView attributes = Slice(attributes_);
  const uint8_t* p = attributes.data();
  const uint8_t* end = attributes.data() + attributes.size();
  while (p < end) {
    const unsigned char* q = p;
    UniquePtr<X509_ATTRIBUTE> attr(d2i_X509_ATTRIBUTE(nullptr, &q, end - p));
    if (!attr) return Malformed("attribute");
    p = q;
    if (OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attr.get())) != NID_ext_req) continue;
    if (X509_ATTRIBUTE_count(attr.get()) != 1)
      return Malformed("extensionRequest must have one value");
    const ASN1_TYPE* value = X509_ATTRIBUTE_get0_type(attr.get(), 0);
    if (value == nullptr || value->type != V_ASN1_SEQUENCE)
      return Malformed("extensionRequest value");
    const unsigned char* e = ASN1_STRING_get0_data(value->value.sequence);
    long elen = ASN1_STRING_length(value->value.sequence);
    UniquePtr<STACK_OF(X509_EXTENSION)> exts(d2i_X509_EXTENSIONS(nullptr, &e, elen));
    if (!exts) return Malformed("requested extensions");
    int crit = 0;
    void* decoded = X509V3_get_d2i(exts.get(), NID_subject_alt_name, &crit, nullptr);
    if (decoded == nullptr) {
      if (crit == -2) return Malformed("subjectAltName requested twice");
      if (crit >= 0) return Malformed("requested subjectAltName");
      ClearOpenSslErrors();
      continue;
    }
    UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(decoded));
    DEVID_ASSIGN_OR_RETURN(std::vector<GeneralName> more, FromGeneralNames(names.get()));
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

Result<std::string> CertificateRequest::ToPem() const {
  return internal::EncodePem("CSR", [&](BIO* bio) {
    return PEM_write_bio(bio, "CERTIFICATE REQUEST", "", der_.data(),
                         static_cast<long>(der_.size())) > 0
               ? 1
               : 0;
  });
}

namespace {

// Version, subject, public key and requested SANs: everything but the signature.
Result<UniquePtr<X509_REQ>> RequestBody(const EVP_PKEY* key, const DistinguishedName& subject,
                                        const std::vector<GeneralName>& sans) {
  UniquePtr<X509_REQ> req(X509_REQ_new());
  if (!req) return OpenSslError("allocating X509_REQ");
  DEVID_ASSIGN_OR_RETURN(UniquePtr<X509_NAME> name, subject.ToX509Name());
  DEVID_ASSIGN_OR_RETURN(SubjectPublicKeyInfo spki, SubjectPublicKeyInfo::FromKey(key));
  if (X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_REQ_set_subject_name(req.get(), name.get()) != 1) {
    return OpenSslError("building CSR");
  }
  DEVID_TRY(spki.CopyTo(X509_REQ_get_X509_PUBKEY(req.get())));
  if (!sans.empty()) {
    DEVID_ASSIGN_OR_RETURN(UniquePtr<GENERAL_NAMES> gns, ToGeneralNames(sans));
    UniquePtr<STACK_OF(X509_EXTENSION)> exts(sk_X509_EXTENSION_new_null());
    UniquePtr<X509_EXTENSION> ext(X509V3_EXT_i2d(NID_subject_alt_name, 0, gns.get()));
    if (!exts || !ext || sk_X509_EXTENSION_push(exts.get(), ext.get()) == 0) {
      return OpenSslError("building CSR extensions");
    }
    ext.release();
    if (X509_REQ_add_extensions(req.get(), exts.get()) != 1)
      return OpenSslError("adding CSR extensions");
  }
  return req;
}

Result<CertificateRequest> Finish(X509_REQ* req) {
  DEVID_ASSIGN_OR_RETURN(Bytes der, internal::EncodeDer("CSR", [&](unsigned char** p) {
                           return i2d_X509_REQ(req, p);
                         }));
  return CertificateRequest::Parse(der);
}

}  // namespace

Result<CertificateRequest> MakeCertificateRequest(const PrivateKey& key,
                                                  const DistinguishedName& subject,
                                                  const std::vector<GeneralName>& sans) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<X509_REQ> req, RequestBody(key.get(), subject, sans));
  KeyAlgorithm alg = key.algorithm();
  const EVP_MD* md = alg.type ? SignatureDigestFor(*alg.type) : EVP_sha256();
  if (X509_REQ_sign(req.get(), key.get(), md) <= 0) return OpenSslError("signing CSR");
  return Finish(req.get());
}

Result<CertificateRequest> MakeCertificateRequest(const ExternalEcSigner& signer,
                                                  const DistinguishedName& subject,
                                                  const std::vector<GeneralName>& sans) {
  KeyAlgorithm alg = signer.public_key.algorithm();
  if (!alg.type || *alg.type == KeyType::kRsa3072) {
    return MakeError(ErrorCode::kInvalidInput, "an external signer must hold a P-256 or P-384 key");
  }
  DEVID_ASSIGN_OR_RETURN(UniquePtr<X509_REQ> req,
                         RequestBody(signer.public_key.get(), subject, sans));
  // RFC 5758 §3.2: ecdsa-with-SHA256 / -SHA384, parameters absent.
  const EVP_MD* md = SignatureDigestFor(*alg.type);
  int nid = *alg.type == KeyType::kEcP384 ? NID_ecdsa_with_SHA384 : NID_ecdsa_with_SHA256;
  UniquePtr<X509_ALGOR> algorithm(X509_ALGOR_new());
  if (!algorithm ||
      X509_ALGOR_set0(algorithm.get(), OBJ_nid2obj(nid), V_ASN1_UNDEF, nullptr) != 1 ||
      X509_REQ_set1_signature_algo(req.get(), algorithm.get()) != 1) {
    return OpenSslError("setting the CSR signature algorithm");
  }
  DEVID_ASSIGN_OR_RETURN(Bytes info,
                         internal::EncodeDer("CertificationRequestInfo", [&](unsigned char** p) {
                           return i2d_re_X509_REQ_tbs(req.get(), p);
                         }));
  Bytes digest(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (EVP_Digest(info.data(), info.size(), digest.data(), &len, md, nullptr) != 1) {
    return OpenSslError("hashing the CSR");
  }
  digest.resize(len);
  DEVID_ASSIGN_OR_RETURN(Bytes signature, signer.sign_digest(digest));
  UniquePtr<ASN1_STRING> bits(ASN1_BIT_STRING_new());
  if (!bits ||
      ASN1_BIT_STRING_set(bits.get(), signature.data(), static_cast<int>(signature.size())) != 1) {
    return OpenSslError("setting the CSR signature");
  }
  bits->flags &= ~0x07;
  bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
  X509_REQ_set0_signature(req.get(), bits.release());
  DEVID_ASSIGN_OR_RETURN(CertificateRequest csr, Finish(req.get()));
  // The signer's answer is checked here, not at the CA: a wrong key or a bad
  // signature never leaves as a CSR.
  DEVID_TRY(csr.VerifyProofOfPossession());
  return csr;
}

}  // namespace devid::crypto
