#include "crypto/certificate.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <ctime>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"

namespace devid::crypto {

namespace {
Result<int64_t> AsnTimeToUnix(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return OpenSslError("decoding time");
  return static_cast<int64_t>(timegm(&tm));
}

// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value.
Result<Bytes> KeyIdentifier(X509_PUBKEY* pubkey) {
  const unsigned char* pk = nullptr;
  int pk_len = 0;
  if (X509_PUBKEY_get0_param(nullptr, &pk, &pk_len, nullptr, pubkey) != 1 || pk == nullptr) {
    return OpenSslError("reading subjectPublicKey");
  }
  Bytes out(20);
  unsigned int len = 0;
  if (EVP_Digest(pk, static_cast<size_t>(pk_len), out.data(), &len, EVP_sha1(), nullptr) != 1) {
    return OpenSslError("hashing subjectPublicKey");
  }
  return out;
}
}  // namespace

namespace {

// A Certificate never changes its X509 (the builder makes new ones), so a
// copy shares it: X509_dup would re-encode and re-parse it, and OpenSSL 3
// decodes the public key on every parse (~190 us for P-256 on the reference
// VM). A certificate fresh from the builder has no decoded key, which
// OpenSSL's own users of it (CMS recipients, the verifier) need: its copy is
// parsed, as before.
UniquePtr<X509> Share(X509* x509, bool has_decoded_key) {
  if (!has_decoded_key) return UniquePtr<X509>(X509_dup(x509));
  if (X509_up_ref(x509) != 1) return nullptr;
  return UniquePtr<X509>(x509);
}

}  // namespace

Certificate::Certificate(const Certificate& other)
    : x509_(Share(other.x509_.get(), other.has_decoded_key())) {
  if (!x509_) throw std::bad_alloc();
}

Certificate& Certificate::operator=(const Certificate& other) {
  if (this != &other) {
    UniquePtr<X509> copy = Share(other.x509_.get(), other.has_decoded_key());
    if (!copy) throw std::bad_alloc();
    x509_ = std::move(copy);
  }
  return *this;
}

Result<Certificate> Certificate::Parse(ByteView data) {
  if (data.empty()) return MakeError(ErrorCode::kInvalidInput, "the certificate is empty");
  if (LooksLikePem(data)) {
    DEVID_ASSIGN_OR_RETURN(UniquePtr<BIO> bio, internal::MemBio(data));
    X509* raw = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr) return OpenSslError("parsing PEM certificate", ErrorCode::kInvalidInput);
    return Certificate(UniquePtr<X509>(raw));
  }
  const unsigned char* p = data.data();
  UniquePtr<X509> x(d2i_X509(nullptr, &p, static_cast<long>(data.size())));
  if (!x) return OpenSslError("parsing DER certificate", ErrorCode::kInvalidInput);
  if (p != data.data() + data.size()) {
    return MakeError(ErrorCode::kInvalidInput, "parsing DER certificate: trailing bytes");
  }
  return Certificate(std::move(x));
}

Result<std::vector<Certificate>> Certificate::ParsePemChain(ByteView pem) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<BIO> bio, internal::MemBio(pem));
  std::vector<Certificate> out;
  while (true) {
    X509* raw = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr) break;
    out.emplace_back(UniquePtr<X509>(raw));
  }
  // The loop ends on "no start line" at EOF; anything else is a parse error.
  unsigned long err = ERR_peek_last_error();
  if (!out.empty() && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
    ClearOpenSslErrors();
    return out;
  }
  if (out.empty()) return OpenSslError("no certificate in PEM input", ErrorCode::kInvalidInput);
  return OpenSslError("parsing PEM certificate chain", ErrorCode::kInvalidInput);
}

Result<Bytes> Certificate::ToDer() const {
  return internal::EncodeDer("certificate",
                             [&](unsigned char** p) { return i2d_X509(x509_.get(), p); });
}

Result<std::string> Certificate::ToPem() const {
  return internal::EncodePem("certificate",
                             [&](BIO* bio) { return PEM_write_bio_X509(bio, x509_.get()); });
}

Result<Bytes> Certificate::SubjectDer() const {
  return internal::EncodeDer("certificate subject", [&](unsigned char** p) {
    return i2d_X509_NAME(X509_get_subject_name(x509_.get()), p);
  });
}

Result<Bytes> Certificate::IssuerDer() const {
  return internal::EncodeDer("certificate issuer", [&](unsigned char** p) {
    return i2d_X509_NAME(X509_get_issuer_name(x509_.get()), p);
  });
}

Result<Bytes> Certificate::SerialDer() const {
  return internal::EncodeDer("certificate serial", [&](unsigned char** p) {
    return i2d_ASN1_INTEGER(X509_get0_serialNumber(x509_.get()), p);
  });
}

std::string Certificate::SerialHex() const {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(x509_.get());
  return HexEncode(
      ByteView(ASN1_STRING_get0_data(serial), static_cast<size_t>(ASN1_STRING_length(serial))));
}

Result<DistinguishedName> Certificate::subject() const {
  return DistinguishedName::FromX509Name(X509_get_subject_name(x509_.get()));
}
Result<DistinguishedName> Certificate::issuer() const {
  return DistinguishedName::FromX509Name(X509_get_issuer_name(x509_.get()));
}

int64_t Certificate::not_before() const {
  auto r = AsnTimeToUnix(X509_get0_notBefore(x509_.get()));
  return r.ok() ? *r : 0;
}
int64_t Certificate::not_after() const {
  auto r = AsnTimeToUnix(X509_get0_notAfter(x509_.get()));
  return r.ok() ? *r : 0;
}

bool Certificate::is_ca() const { return X509_check_ca(x509_.get()) >= 1; }

KeyAlgorithm Certificate::key_algorithm() const {
  auto key = public_key();
  if (!key.ok()) return KeyAlgorithm{std::nullopt, "undecodable"};
  return key->algorithm();
}

bool Certificate::has_decoded_key() const {
  if (X509_get0_pubkey(x509_.get()) != nullptr) return true;
  ClearOpenSslErrors();
  return false;
}

Result<PublicKey> Certificate::public_key() const {
  if (has_decoded_key()) {
    EVP_PKEY* key = X509_get_pubkey(x509_.get());
    return PublicKey(UniquePtr<EVP_PKEY>(key));
  }
  // Built by devid from key bits (see spki.h): decode on demand.
  X509_PUBKEY* pub = X509_get_X509_PUBKEY(x509_.get());
  DEVID_ASSIGN_OR_RETURN(
      Bytes der, internal::EncodeDer("the certificate's public key",
                                     [&](unsigned char** p) { return i2d_X509_PUBKEY(pub, p); }));
  return PublicKey::FromDer(der);
}

Result<std::vector<GeneralName>> Certificate::SubjectAltNames() const {
  int crit = 0;
  void* decoded = X509_get_ext_d2i(x509_.get(), NID_subject_alt_name, &crit, nullptr);
  if (decoded == nullptr) {
    ClearOpenSslErrors();
    return std::vector<GeneralName>{};
  }
  UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(decoded));
  return FromGeneralNames(names.get());
}

Result<std::string> Certificate::FingerprintSha256() const {
  DEVID_ASSIGN_OR_RETURN(Bytes der, ToDer());
  return HexEncode(Sha256(der));
}

Bytes Certificate::PublicKeyBits() const {
  const ASN1_BIT_STRING* bits = X509_get0_pubkey_bitstr(x509_.get());
  if (bits == nullptr) return {};
  return Bytes(bits->data, bits->data + bits->length);
}

Result<std::pair<Bytes, Bytes>> Certificate::SignedDigestAndSignature() const {
  const ASN1_BIT_STRING* signature = nullptr;
  const X509_ALGOR* algorithm = nullptr;
  X509_get0_signature(&signature, &algorithm, x509_.get());
  int digest_nid = NID_undef;
  int key_nid = NID_undef;
  if (signature == nullptr || algorithm == nullptr ||
      OBJ_find_sigid_algs(OBJ_obj2nid(algorithm->algorithm), &digest_nid, &key_nid) != 1 ||
      key_nid != NID_X9_62_id_ecPublicKey) {
    return MakeError(ErrorCode::kInvalidInput, "the certificate is not signed with ECDSA");
  }
  const EVP_MD* md = EVP_get_digestbynid(digest_nid);
  if (md == nullptr) return MakeError(ErrorCode::kInvalidInput, "unknown signature digest");
  unsigned char* tbs = nullptr;
  int tbs_len = i2d_re_X509_tbs(x509_.get(), &tbs);
  if (tbs_len <= 0) return OpenSslError("encoding the tbsCertificate");
  Bytes digest(EVP_MAX_MD_SIZE);
  unsigned int digest_len = 0;
  int ok = EVP_Digest(tbs, static_cast<size_t>(tbs_len), digest.data(), &digest_len, md, nullptr);
  OPENSSL_free(tbs);
  if (ok != 1) return OpenSslError("hashing the tbsCertificate");
  digest.resize(digest_len);
  Bytes sig(signature->data, signature->data + signature->length);
  return std::make_pair(std::move(digest), std::move(sig));
}

Result<KeyUsageBit> ParseKeyUsage(std::string_view name) {
  for (int i = 0; i <= 6; ++i) {
    auto bit = static_cast<KeyUsageBit>(i);
    if (KeyUsageName(bit) == name) return bit;
  }
  return MakeError(ErrorCode::kInvalidInput, "unknown key usage '" + std::string(name) + "'");
}

std::string_view KeyUsageName(KeyUsageBit bit) {
  switch (bit) {
    case KeyUsageBit::kDigitalSignature:
      return "digitalSignature";
    case KeyUsageBit::kNonRepudiation:
      return "nonRepudiation";
    case KeyUsageBit::kKeyEncipherment:
      return "keyEncipherment";
    case KeyUsageBit::kDataEncipherment:
      return "dataEncipherment";
    case KeyUsageBit::kKeyAgreement:
      return "keyAgreement";
    case KeyUsageBit::kKeyCertSign:
      return "keyCertSign";
    case KeyUsageBit::kCrlSign:
      return "cRLSign";
  }
  return "?";
}

Status ValidateExtendedKeyUsage(std::string_view name) {
  std::string s(name);
  UniquePtr<ASN1_OBJECT> obj(OBJ_txt2obj(s.c_str(), 0));
  if (!obj) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "unknown extended key usage '" + s + "'");
  }
  return {};
}

CertificateBuilder::CertificateBuilder() : x509_(X509_new()) {
  ok_ = x509_ != nullptr && X509_set_version(x509_.get(), X509_VERSION_3) == 1;
}

Status CertificateBuilder::SetSerial(ByteView big_endian) {
  UniquePtr<BIGNUM> bn(BN_bin2bn(big_endian.data(), static_cast<int>(big_endian.size()), nullptr));
  if (!bn) return OpenSslError("serial number");
  UniquePtr<ASN1_INTEGER> serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!serial || X509_set_serialNumber(x509_.get(), serial.get()) != 1) {
    return OpenSslError("setting serial number");
  }
  return {};
}

Status CertificateBuilder::SetSubject(const DistinguishedName& subject) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<X509_NAME> name, subject.ToX509Name());
  if (X509_set_subject_name(x509_.get(), name.get()) != 1) return OpenSslError("setting subject");
  return {};
}

Status CertificateBuilder::SetIssuer(const Certificate& issuer) {
  if (X509_set_issuer_name(x509_.get(), X509_get_subject_name(issuer.get())) != 1) {
    return OpenSslError("setting issuer");
  }
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(issuer.get());
  if (ski == nullptr) {
    return MakeError(ErrorCode::kPolicy, "the issuer certificate has no subjectKeyIdentifier");
  }
  const unsigned char* d = ASN1_STRING_get0_data(ski);
  authority_key_id_.assign(d, d + ASN1_STRING_length(ski));
  self_issued_ = false;
  return {};
}

Status CertificateBuilder::SetSelfIssued() {
  if (X509_set_issuer_name(x509_.get(), X509_get_subject_name(x509_.get())) != 1) {
    return OpenSslError("setting issuer");
  }
  self_issued_ = true;
  return {};
}

Status CertificateBuilder::SetValidity(int64_t not_before, int64_t not_after) {
  if (not_after <= not_before) {
    return MakeError(ErrorCode::kInvalidInput, "notAfter must be later than notBefore");
  }
  if (ASN1_TIME_set(X509_getm_notBefore(x509_.get()), static_cast<time_t>(not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(x509_.get()), static_cast<time_t>(not_after)) == nullptr) {
    return OpenSslError("setting validity");
  }
  return {};
}

Status CertificateBuilder::SetPublicKey(const CertificateRequest& csr) {
  // The request's algorithm and key bits as they are: no key decode, no encode.
  return csr.public_key().CopyTo(X509_get_X509_PUBKEY(x509_.get()));
}

Status CertificateBuilder::SetPublicKey(const SubjectPublicKeyInfo& spki) {
  return spki.CopyTo(X509_get_X509_PUBKEY(x509_.get()));
}

Status CertificateBuilder::SetPublicKey(const PrivateKey& key) {
  DEVID_ASSIGN_OR_RETURN(SubjectPublicKeyInfo spki, SubjectPublicKeyInfo::FromKey(key.get()));
  return spki.CopyTo(X509_get_X509_PUBKEY(x509_.get()));
}

Status CertificateBuilder::AddExtension(int nid, bool critical, void* value) {
  if (X509_add1_ext_i2d(x509_.get(), nid, value, critical ? 1 : 0, X509V3_ADD_REPLACE) != 1) {
    return OpenSslError(std::string("adding extension ") + OBJ_nid2sn(nid));
  }
  return {};
}

Status CertificateBuilder::AddBasicConstraints(bool ca, std::optional<int> path_len) {
  UniquePtr<BASIC_CONSTRAINTS> bc(BASIC_CONSTRAINTS_new());
  if (!bc) return OpenSslError("allocating basicConstraints");
  bc->ca = ca ? 0xFF : 0;
  if (ca && path_len) {
    bc->pathlen = ASN1_INTEGER_new();
    if (bc->pathlen == nullptr || ASN1_INTEGER_set(bc->pathlen, *path_len) != 1) {
      return OpenSslError("pathLenConstraint");
    }
  }
  // RFC 5280 §4.2.1.9: critical in CA certificates; devid marks it critical always.
  return AddExtension(NID_basic_constraints, true, bc.get());
}

Status CertificateBuilder::AddKeyUsage(const std::vector<KeyUsageBit>& bits) {
  UniquePtr<ASN1_STRING> ku(ASN1_BIT_STRING_new());
  if (!ku) return OpenSslError("allocating keyUsage");
  for (KeyUsageBit bit : bits) {
    if (ASN1_BIT_STRING_set_bit(ku.get(), static_cast<int>(bit), 1) != 1) {
      return OpenSslError("keyUsage");
    }
  }
  return AddExtension(NID_key_usage, true, ku.get());
}

Status CertificateBuilder::AddExtendedKeyUsage(const std::vector<std::string>& purposes) {
  UniquePtr<STACK_OF(ASN1_OBJECT)> eku(sk_ASN1_OBJECT_new_null());
  if (!eku) return OpenSslError("allocating extKeyUsage");
  for (const std::string& p : purposes) {
    UniquePtr<ASN1_OBJECT> obj(OBJ_txt2obj(p.c_str(), 0));
    if (!obj)
      return OpenSslError("unknown extended key usage '" + p + "'", ErrorCode::kInvalidInput);
    if (sk_ASN1_OBJECT_push(eku.get(), obj.get()) == 0) return OpenSslError("extKeyUsage");
    obj.release();
  }
  return AddExtension(NID_ext_key_usage, false, eku.get());
}

Status CertificateBuilder::AddSubjectAltNames(const std::vector<GeneralName>& names,
                                              bool critical) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<GENERAL_NAMES> gns, ToGeneralNames(names));
  return AddExtension(NID_subject_alt_name, critical, gns.get());
}

Status CertificateBuilder::AddCrlDistributionPoint(const std::string& url) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<GENERAL_NAMES> names,
                         ToGeneralNames({{GeneralName::Kind::kUri, url, {}}}));
  UniquePtr<CRL_DIST_POINTS> dps(sk_DIST_POINT_new_null());
  UniquePtr<DIST_POINT> dp(DIST_POINT_new());
  UniquePtr<DIST_POINT_NAME> dpn(DIST_POINT_NAME_new());
  if (!dps || !dp || !dpn) return OpenSslError("allocating cRLDistributionPoints");
  dpn->type = 0;  // fullName
  dpn->name.fullname = names.release();
  dp->distpoint = dpn.release();
  if (sk_DIST_POINT_push(dps.get(), dp.get()) == 0)
    return OpenSslError("building cRLDistributionPoints");
  dp.release();  // owned by dps
  return AddExtension(NID_crl_distribution_points, false, dps.get());
}

Status CertificateBuilder::AddOcspResponder(const std::string& url) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<GENERAL_NAMES> names,
                         ToGeneralNames({{GeneralName::Kind::kUri, url, {}}}));
  UniquePtr<AUTHORITY_INFO_ACCESS> aia(sk_ACCESS_DESCRIPTION_new_null());
  UniquePtr<ACCESS_DESCRIPTION> ad(ACCESS_DESCRIPTION_new());
  if (!aia || !ad) return OpenSslError("allocating authorityInfoAccess");
  // Replace the empty defaults ACCESS_DESCRIPTION_new made.
  UniquePtr<ASN1_OBJECT> old_method(ad->method);
  UniquePtr<GENERAL_NAME> old_location(ad->location);
  ad->method = OBJ_nid2obj(NID_ad_OCSP);
  ad->location = sk_GENERAL_NAME_pop(names.get());
  if (sk_ACCESS_DESCRIPTION_push(aia.get(), ad.get()) == 0)
    return OpenSslError("building authorityInfoAccess");
  ad.release();  // owned by aia
  return AddExtension(NID_info_access, false, aia.get());
}

Result<Certificate> CertificateBuilder::Sign(const Signer& signer) {
  if (!ok_) return OpenSslError("allocating X509");
  DEVID_ASSIGN_OR_RETURN(Bytes ski, KeyIdentifier(X509_get_X509_PUBKEY(x509_.get())));
  UniquePtr<ASN1_OCTET_STRING> ski_value(ASN1_OCTET_STRING_new());
  if (!ski_value ||
      ASN1_OCTET_STRING_set(ski_value.get(), ski.data(), static_cast<int>(ski.size())) != 1) {
    return OpenSslError("subjectKeyIdentifier");
  }
  DEVID_TRY(AddExtension(NID_subject_key_identifier, false, ski_value.get()));
  const Bytes& akid_bytes = self_issued_ ? ski : authority_key_id_;
  if (akid_bytes.empty()) {
    return MakeError(ErrorCode::kInternal, "certificate builder: issuer not set");
  }
  UniquePtr<AUTHORITY_KEYID> akid(AUTHORITY_KEYID_new());
  if (!akid) return OpenSslError("allocating authorityKeyIdentifier");
  akid->keyid = ASN1_OCTET_STRING_new();
  if (akid->keyid == nullptr || ASN1_OCTET_STRING_set(akid->keyid, akid_bytes.data(),
                                                      static_cast<int>(akid_bytes.size())) != 1) {
    return OpenSslError("authorityKeyIdentifier");
  }
  DEVID_TRY(AddExtension(NID_authority_key_identifier, false, akid.get()));

  DEVID_ASSIGN_OR_RETURN(UniquePtr<EVP_MD_CTX> ctx, signer.NewContext());
  if (X509_sign_ctx(x509_.get(), ctx.get()) <= 0) return OpenSslError("signing the certificate");
  UniquePtr<X509> done = std::move(x509_);
  x509_.reset(X509_new());
  ok_ = x509_ != nullptr && X509_set_version(x509_.get(), X509_VERSION_3) == 1;
  return Certificate(std::move(done));
}

Result<Certificate> CertificateBuilder::Sign(const PrivateKey& key) {
  DEVID_ASSIGN_OR_RETURN(Signer signer, Signer::Create(key));
  return Sign(signer);
}

}  // namespace devid::crypto
