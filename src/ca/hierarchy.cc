#include "ca/hierarchy.h"

#include <algorithm>

#include "core/time.h"
#include "crypto/ocsp.h"
#include "crypto/verify.h"

namespace devid::ca {

namespace {

// Certificates start a minute in the past so that a device whose clock lags
// slightly does not reject a certificate it has just received.
constexpr int64_t kBackdateSeconds = 60;
constexpr int kSerialAttempts = 4;

struct Draft {
  const CertificateProfile& profile;
  const crypto::DistinguishedName& subject;
  const std::vector<crypto::GeneralName>& sans;
  int64_t not_before;
  int64_t not_after;
  std::string crl_url;
  std::string ocsp_url;
};

// 128-bit serial from the CSPRNG (RFC 5280 §4.1.2.2 and CA/B BR 7.1: at
// least 64 bits of entropy), top bit clear so it is positive, second bit set
// so the DER length is always 16 bytes.
Result<Bytes> NewSerial() {
  DEVID_ASSIGN_OR_RETURN(Bytes serial, crypto::RandomBytes(16));
  serial[0] = static_cast<uint8_t>((serial[0] & 0x7F) | 0x40);
  return serial;
}

Result<std::pair<int64_t, int64_t>> ComputeValidity(const CertificateProfile& profile,
                                                    std::optional<int> days, int64_t now,
                                                    const crypto::Certificate* issuer) {
  int d = days.value_or(profile.validity_days);
  if (d <= 0) return MakeError(ErrorCode::kInvalidInput, "validity must be at least one day");
  if (d > profile.max_validity_days) {
    return MakeError(ErrorCode::kPolicy, "template '" + profile.name + "' allows at most " +
                                             std::to_string(profile.max_validity_days) +
                                             " days, not " + std::to_string(d));
  }
  int64_t not_before = now - kBackdateSeconds;
  int64_t not_after = now + static_cast<int64_t>(d) * kSecondsPerDay;
  if (!days && profile.validity_minutes) {
    // Short-lived: no backdating either, so that two thirds of the validity
    // (when devices renew) falls where the template says.
    not_before = now;
    not_after = now + static_cast<int64_t>(*profile.validity_minutes) * 60;
  }
  if (issuer != nullptr) {
    // Never valid outside the issuer's own validity (RFC 5280 §6.1.3 would reject it anyway).
    not_before = std::max(not_before, issuer->not_before());
    not_after = std::min(not_after, issuer->not_after());
    if (not_after <= now) {
      return MakeError(ErrorCode::kPolicy, "the issuing CA's certificate has expired");
    }
  }
  return std::make_pair(not_before, not_after);
}

template <typename SetKey>
Result<crypto::Certificate> BuildCertificate(const Draft& d, ByteView serial,
                                             const crypto::Certificate* issuer,
                                             const crypto::Signer& signer, SetKey&& set_key) {
  crypto::CertificateBuilder b;
  DEVID_TRY(b.SetSerial(serial));
  DEVID_TRY(b.SetSubject(d.subject));
  DEVID_TRY(issuer != nullptr ? b.SetIssuer(*issuer) : b.SetSelfIssued());
  DEVID_TRY(b.SetValidity(d.not_before, d.not_after));
  DEVID_TRY(set_key(b));
  DEVID_TRY(b.AddBasicConstraints(d.profile.ca, d.profile.path_len));
  DEVID_TRY(b.AddKeyUsage(d.profile.key_usage));
  if (!d.profile.extended_key_usage.empty())
    DEVID_TRY(b.AddExtendedKeyUsage(d.profile.extended_key_usage));
  if (!d.sans.empty()) DEVID_TRY(b.AddSubjectAltNames(d.sans, d.subject.empty()));
  if (!d.crl_url.empty()) DEVID_TRY(b.AddCrlDistributionPoint(d.crl_url));
  if (!d.ocsp_url.empty()) DEVID_TRY(b.AddOcspResponder(d.ocsp_url));
  return b.Sign(signer);
}

store::NewCertificate RecordFor(const crypto::Certificate& cert, int64_t ca_id,
                                const std::string& subject, const std::string& template_name,
                                Bytes der) {
  store::NewCertificate rec;
  rec.ca_id = ca_id;
  rec.serial_hex = cert.SerialHex();
  rec.subject = subject;
  rec.template_name = template_name;
  rec.not_before = cert.not_before();
  rec.not_after = cert.not_after();
  rec.der = std::move(der);
  return rec;
}

std::string ReplaceAll(std::string s, std::string_view from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

bool ValidCaName(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

}  // namespace

Result<std::string> NormalizeSerial(const std::string& serial_hex) {
  auto bytes = HexDecode(serial_hex);
  if (!bytes.ok())
    return MakeError(ErrorCode::kInvalidInput, "serial '" + serial_hex + "' is not hexadecimal");
  Bytes b = std::move(bytes).value();
  auto first = std::find_if(b.begin(), b.end(), [](uint8_t x) { return x != 0; });
  if (first == b.end()) return MakeError(ErrorCode::kInvalidInput, "serial must not be zero");
  return HexEncode(ByteView(&*first, static_cast<size_t>(b.end() - first)));
}

std::string SigningCa::ExpandUrl(const std::string& pattern) const {
  return ReplaceAll(ReplaceAll(pattern, "{org}", org_.name), "{ca}", record_.name);
}

template <typename SetKey>
Result<IssuedCertificate> SigningCa::Sign(const CertificateProfile& profile,
                                          const crypto::DistinguishedName& subject,
                                          const std::vector<crypto::GeneralName>& sans,
                                          const IssueOptions& options, SetKey&& set_key) {
  if (record_.disabled) {
    return MakeError(ErrorCode::kPolicy, "CA '" + record_.name + "' is disabled");
  }
  // CA certificates come only from init-root / init-ica, where the hierarchy records them as CAs.
  if (profile.ca) {
    return MakeError(ErrorCode::kPolicy,
                     "template '" + profile.name +
                         "' makes CA certificates; create issuing CAs with `devid ca init-ica`");
  }
  DEVID_TRY(profile.CheckSubject(subject));
  DEVID_TRY(profile.CheckSubjectAltNames(sans));
  int64_t now = options.now.value_or(NowUnix());
  DEVID_ASSIGN_OR_RETURN(auto validity, ComputeValidity(profile, options.days, now, &certificate_));
  Draft draft{profile,
              subject,
              sans,
              validity.first,
              validity.second,
              ExpandUrl(record_.crl_url),
              ExpandUrl(record_.ocsp_url)};
  std::string subject_text = subject.ToString();
  for (int attempt = 0;; ++attempt) {
    DEVID_ASSIGN_OR_RETURN(Bytes serial, NewSerial());
    DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                           BuildCertificate(draft, serial, &certificate_, signer_, set_key));
    DEVID_ASSIGN_OR_RETURN(Bytes der, cert.ToDer());
    // Issued = recorded: the certificate leaves only after its record is committed.
    auto record = store_.InsertCertificate(
        org_.id, RecordFor(cert, record_.id, subject_text, profile.name, der));
    if (record.ok()) return IssuedCertificate{std::move(cert), std::move(record).value()};
    if (record.error().code != ErrorCode::kAlreadyExists || attempt + 1 == kSerialAttempts) {
      return record.error().Context("recording the certificate");
    }
  }
}

Result<IssuedCertificate> SigningCa::Issue(const CertificateProfile& profile,
                                           const crypto::CertificateRequest& csr,
                                           const IssueOptions& options) {
  DEVID_TRY(profile.CheckKey(csr.key_algorithm()));
  DEVID_TRY(csr.VerifyProofOfPossession());
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, csr.subject());
  DEVID_ASSIGN_OR_RETURN(std::vector<crypto::GeneralName> sans, csr.RequestedSubjectAltNames());
  for (const auto& extra : options.extra_sans) {
    if (std::find(sans.begin(), sans.end(), extra) == sans.end()) sans.push_back(extra);
  }
  return Sign(profile, subject, sans, options,
              [&](crypto::CertificateBuilder& b) { return b.SetPublicKey(csr); });
}

Result<IssuedCertificate> SigningCa::IssueForKey(const CertificateProfile& profile,
                                                 const crypto::PrivateKey& subject_key,
                                                 const crypto::DistinguishedName& subject,
                                                 const std::vector<crypto::GeneralName>& sans,
                                                 const IssueOptions& options) {
  DEVID_TRY(profile.CheckKey(subject_key.algorithm()));
  return Sign(profile, subject, sans, options,
              [&](crypto::CertificateBuilder& b) { return b.SetPublicKey(subject_key); });
}

Result<std::vector<crypto::Certificate>> SigningCa::IssueBatch(const CertificateProfile& profile,
                                                               const std::vector<BatchItem>& items,
                                                               const IssueOptions& options) {
  if (record_.disabled) {
    return MakeError(ErrorCode::kPolicy, "CA '" + record_.name + "' is disabled");
  }
  if (profile.ca) {
    return MakeError(ErrorCode::kPolicy, "template '" + profile.name + "' makes CA certificates");
  }
  int64_t now = options.now.value_or(NowUnix());
  DEVID_ASSIGN_OR_RETURN(auto validity, ComputeValidity(profile, options.days, now, &certificate_));
  for (const BatchItem& item : items) {
    DEVID_TRY(profile.CheckKey(item.key->algorithm()));
    DEVID_TRY(profile.CheckSubject(item.subject));
    DEVID_TRY(profile.CheckSubjectAltNames(item.sans));
  }
  for (int attempt = 0;; ++attempt) {
    std::vector<crypto::Certificate> certs;
    std::vector<store::NewCertificate> records;
    certs.reserve(items.size());
    records.reserve(items.size());
    for (const BatchItem& item : items) {
      Draft draft{profile,
                  item.subject,
                  item.sans,
                  validity.first,
                  validity.second,
                  ExpandUrl(record_.crl_url),
                  ExpandUrl(record_.ocsp_url)};
      DEVID_ASSIGN_OR_RETURN(Bytes serial, NewSerial());
      DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                             BuildCertificate(draft, serial, &certificate_, signer_,
                                              [&](crypto::CertificateBuilder& b) {
                                                return b.SetPublicKey(*item.key);
                                              }));
      DEVID_ASSIGN_OR_RETURN(Bytes der, cert.ToDer());
      records.push_back(RecordFor(cert, record_.id, item.subject.ToString(), profile.name, der));
      certs.push_back(std::move(cert));
    }
    auto stored = store_.InsertCertificates(org_.id, records);
    if (stored.ok()) return certs;
    if (stored.error().code != ErrorCode::kAlreadyExists || attempt + 1 == kSerialAttempts) {
      return stored.error().Context("recording the batch");
    }
  }
}

Result<IssuedCertificate> SigningCa::Renew(const CertificateProfile& profile,
                                           const crypto::Certificate& current,
                                           const IssueOptions& options) {
  DEVID_TRY(profile.CheckKey(current.key_algorithm()));
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, current.subject());
  DEVID_ASSIGN_OR_RETURN(std::vector<crypto::GeneralName> sans, current.SubjectAltNames());
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey key, current.public_key());
  DEVID_ASSIGN_OR_RETURN(crypto::SubjectPublicKeyInfo spki,
                         crypto::SubjectPublicKeyInfo::FromKey(key.get()));
  return Sign(profile, subject, sans, options,
              [&](crypto::CertificateBuilder& b) { return b.SetPublicKey(spki); });
}

Result<crypto::Crl> SigningCa::MakeCrl(int next_update_days, std::optional<int64_t> now) {
  if (next_update_days <= 0 || next_update_days > 365) {
    return MakeError(ErrorCode::kInvalidInput, "CRL validity must be 1..365 days");
  }
  int64_t t = now.value_or(NowUnix());
  DEVID_ASSIGN_OR_RETURN(store::CrlContent content, store_.NextCrl(org_.id, record_.id));
  crypto::CrlFields fields;
  fields.number = content.number;
  fields.this_update = t;
  fields.next_update = std::min(t + next_update_days * kSecondsPerDay, certificate_.not_after());
  for (const auto& r : content.revoked) {
    DEVID_ASSIGN_OR_RETURN(Bytes serial, HexDecode(r.serial_hex));
    DEVID_ASSIGN_OR_RETURN(crypto::RevocationReason reason,
                           crypto::RevocationReasonFromCode(r.reason));
    fields.revoked.push_back({std::move(serial), r.revoked_at, reason});
  }
  return crypto::BuildCrl(certificate_, key_, fields);
}

Result<int64_t> SigningCa::RevocationCount() {
  return store_.CountRevocations(org_.id, record_.id);
}

Result<Bytes> SigningCa::RespondOcsp(ByteView request_der, std::optional<int64_t> now,
                                     bool* cacheable, const StoreAccess& store_access) {
  if (cacheable != nullptr) *cacheable = false;
  auto request = crypto::OcspRequest::Parse(request_der);
  if (!request.ok()) return crypto::OcspErrorResponse(crypto::OcspError::kMalformedRequest);
  Result<Bytes> response = RespondOcsp(*request, now, store_access);
  // A store that cannot answer must not be taken for "unknown".
  if (!response.ok()) return crypto::OcspErrorResponse(crypto::OcspError::kInternalError);
  if (cacheable != nullptr) *cacheable = !request->HasNonce();
  return response;
}

Result<Bytes> SigningCa::RespondOcsp(const crypto::OcspRequest& request, std::optional<int64_t> now,
                                     const StoreAccess& store_access) {
  std::optional<Error> failure;
  auto lookup = [&](const std::string& serial) {
    crypto::OcspAnswer answer;
    Result<store::RevocationStatus> found = MakeError(ErrorCode::kInternal, "");
    auto find = [&] { found = store_.FindRevocationStatus(org_.id, record_.id, serial); };
    if (store_access) {
      store_access(find);
    } else {
      find();
    }
    if (!found.ok()) {
      failure = found.error();
      return answer;
    }
    if (found->known) {
      answer.status = found->revocation ? crypto::OcspStatus::kRevoked : crypto::OcspStatus::kGood;
    }
    if (found->revocation) {
      answer.revoked_at = found->revocation->revoked_at;
      answer.reason = found->revocation->reason;
    }
    return answer;
  };
  auto response = ocsp_.Respond(request, lookup, now.value_or(NowUnix()), 3600);
  if (failure) return *failure;
  return response;
}

Result<store::CaRecord> Hierarchy::InitRoot(const std::string& org_name, const CaOptions& options) {
  if (org_name.empty() || org_name.size() > 128) {
    return MakeError(ErrorCode::kInvalidInput, "organization name must be 1-128 characters");
  }
  auto org = store_.GetOrganization(org_name);
  if (org.ok() && store_.GetCa(org->id, std::string(kRootCaName)).ok()) {
    return MakeError(ErrorCode::kAlreadyExists,
                     "organization '" + org_name + "' already has a root CA");
  }
  if (!org.ok() && org.error().code != ErrorCode::kNotFound) return org.error();
  // The organization is created with its root, in one transaction (store::CreateRootCa).
  store::Organization pending{0, org_name, 0};
  return CreateCa(org.ok() ? *org : pending, std::string(kRootCaName), options, nullptr);
}

Result<store::CaRecord> Hierarchy::InitIssuing(const std::string& org_name, const std::string& name,
                                               const CaOptions& options) {
  if (name == kRootCaName) {
    return MakeError(ErrorCode::kInvalidInput, "'root' is the name of the organization's root CA");
  }
  auto root = Unlock(org_name, std::string(kRootCaName));
  if (!root.ok()) return root.error();
  auto existing = store_.GetCa(root->org_.id, name);
  if (existing.ok())
    return MakeError(ErrorCode::kAlreadyExists, "CA '" + name + "' already exists");
  return CreateCa(root->org_, name, options, &*root);
}

Result<store::CaRecord> Hierarchy::CreateCa(const store::Organization& org, const std::string& name,
                                            const CaOptions& options, SigningCa* parent) {
  if (!ValidCaName(name)) {
    return MakeError(ErrorCode::kInvalidInput,
                     "CA name must be 1-64 characters of A-Z, a-z, 0-9, '-', '_'");
  }
  DEVID_ASSIGN_OR_RETURN(CertificateProfile profile,
                         profiles_.Find(parent != nullptr ? "ica" : "root"));
  DEVID_TRY(
      profile.CheckKey({options.key_type, std::string(crypto::KeyTypeName(options.key_type))}));
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject,
                         crypto::DistinguishedName::Parse(options.subject));
  DEVID_TRY(profile.CheckSubject(subject));
  int64_t now = NowUnix();
  DEVID_ASSIGN_OR_RETURN(auto validity,
                         ComputeValidity(profile, options.days, now,
                                         parent != nullptr ? &parent->certificate_ : nullptr));
  DEVID_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::Generate(options.key_type));
  const SecretString* pass = protection_.passphrase ? &*protection_.passphrase : nullptr;
  DEVID_ASSIGN_OR_RETURN(std::string key_pem, key.ToPkcs8Pem(pass));
  const std::vector<crypto::GeneralName> no_sans;
  Draft draft{profile, subject, no_sans, validity.first, validity.second, {}, {}};
  if (parent != nullptr) {
    draft.crl_url = parent->ExpandUrl(parent->record_.crl_url);
    draft.ocsp_url = parent->ExpandUrl(parent->record_.ocsp_url);
  }
  DEVID_ASSIGN_OR_RETURN(Bytes serial, NewSerial());
  auto set_key = [&](crypto::CertificateBuilder& b) { return b.SetPublicKey(key); };
  DEVID_ASSIGN_OR_RETURN(crypto::Signer self_signer, crypto::Signer::Create(key));
  DEVID_ASSIGN_OR_RETURN(
      crypto::Certificate cert,
      parent != nullptr
          ? BuildCertificate(draft, serial, &parent->certificate_, parent->signer_, set_key)
          : BuildCertificate(draft, serial, nullptr, self_signer, set_key));
  DEVID_ASSIGN_OR_RETURN(Bytes der, cert.ToDer());
  store::NewCa ca;
  ca.name = name;
  ca.kind = parent != nullptr ? store::CaKind::kIssuing : store::CaKind::kRoot;
  if (parent != nullptr) ca.parent_id = parent->record_.id;
  ca.certificate_der = der;
  ca.key_pem = std::move(key_pem);
  ca.key_encrypted = pass != nullptr;
  ca.crl_url = options.crl_url;
  ca.ocsp_url = options.ocsp_url;
  // A root records its own certificate under itself (ca_id 0 = the new CA).
  int64_t issuer_id = parent != nullptr ? parent->record_.id : 0;
  store::NewCertificate record = RecordFor(cert, issuer_id, subject.ToString(), profile.name, der);
  auto result = parent != nullptr ? store_.CreateCa(org.id, ca, std::move(record))
                                  : store_.CreateRootCa(org.name, ca, std::move(record));
  SecureZero(ca.key_pem.data(), ca.key_pem.size());
  return result;
}

Result<store::CaRecord> Hierarchy::ImportIssuing(const std::string& org_name,
                                                 const std::string& name,
                                                 const std::vector<crypto::Certificate>& chain,
                                                 const crypto::PrivateKey& key,
                                                 const CaOptions& options) {
  if (!ValidCaName(name)) {
    return MakeError(ErrorCode::kInvalidInput,
                     "CA name must be 1-64 characters of A-Z, a-z, 0-9, '-', '_'");
  }
  if (chain.size() < 2) {
    return MakeError(ErrorCode::kInvalidInput,
                     "give the CA's certificate and its issuers up to the root");
  }
  DEVID_ASSIGN_OR_RETURN(store::Organization org, store_.GetOrganization(org_name));
  const crypto::Certificate& cert = chain.front();
  if (!cert.is_ca()) {
    return MakeError(ErrorCode::kPolicy, "the certificate is not a CA certificate");
  }
  int64_t now = NowUnix();
  if (cert.not_before() > now || cert.not_after() <= now) {
    return MakeError(ErrorCode::kPolicy, "the CA certificate is not valid now");
  }
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey cert_key, cert.public_key());
  DEVID_ASSIGN_OR_RETURN(Bytes cert_spki, cert_key.ToDer());
  DEVID_ASSIGN_OR_RETURN(Bytes key_spki, key.PublicKeyDer());
  if (cert_spki != key_spki) {
    return MakeError(ErrorCode::kPolicy, "the private key does not belong to the certificate");
  }
  std::vector<crypto::Certificate> intermediates(chain.begin() + 1, chain.end() - 1);
  // The signatures up to the given root; external CAs' profiles vary, so
  // OpenSSL's extra strictness checks are not asked for.
  crypto::VerifyOptions verify;
  verify.strict = false;
  auto verified = crypto::VerifyChain(cert, intermediates, {chain.back()}, {}, verify);
  if (!verified.ok()) {
    return MakeError(
        ErrorCode::kVerification,
        "the CA certificate does not verify up to the root given: " + verified.error().message);
  }
  DEVID_ASSIGN_OR_RETURN(CertificateProfile profile, profiles_.Find("ica"));
  DEVID_TRY(profile.CheckKey(cert.key_algorithm()));
  const SecretString* pass = protection_.passphrase ? &*protection_.passphrase : nullptr;
  DEVID_ASSIGN_OR_RETURN(std::string key_pem, key.ToPkcs8Pem(pass));
  DEVID_ASSIGN_OR_RETURN(Bytes der, cert.ToDer());
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, cert.subject());
  store::NewCa ca;
  ca.name = name;
  ca.kind = store::CaKind::kIssuing;
  ca.certificate_der = der;
  ca.key_pem = std::move(key_pem);
  ca.key_encrypted = pass != nullptr;
  ca.crl_url = options.crl_url;
  ca.ocsp_url = options.ocsp_url;
  // Its own certificate is recorded under itself (ca_id 0 = the new CA): no
  // CA of this organization issued it.
  auto result = store_.CreateCa(org.id, ca, RecordFor(cert, 0, subject.ToString(), "ica", der));
  SecureZero(ca.key_pem.data(), ca.key_pem.size());
  return result;
}

Result<SigningCa> Hierarchy::Unlock(const std::string& org_name, const std::string& ca_name) {
  DEVID_ASSIGN_OR_RETURN(store::Organization org, store_.GetOrganization(org_name));
  auto record = store_.GetCa(org.id, ca_name);
  if (!record.ok()) {
    if (record.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound,
                       "CA '" + ca_name + "' does not exist in organization '" + org_name + "'");
    }
    return record.error();
  }
  DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                         crypto::Certificate::Parse(record->certificate_der));
  const SecretString* pass = nullptr;
  if (record->key_encrypted) {
    if (!protection_.passphrase) {
      return MakeError(ErrorCode::kAuth,
                       "the key of CA '" + ca_name +
                           "' is encrypted: set DEVID_PASSPHRASE or give --passphrase-file");
    }
    pass = &*protection_.passphrase;
  }
  auto key = crypto::PrivateKey::FromPem(record->key_pem, pass);
  if (!key.ok()) {
    if (key.error().code == ErrorCode::kAuth) {
      return MakeError(ErrorCode::kAuth, "wrong passphrase for the key of CA '" + ca_name + "'");
    }
    return key.error().Context("loading the key of CA '" + ca_name + "'");
  }
  DEVID_ASSIGN_OR_RETURN(crypto::Signer signer, crypto::Signer::Create(*key));
  DEVID_ASSIGN_OR_RETURN(crypto::OcspResponder ocsp, crypto::OcspResponder::Create(cert, *key));
  return SigningCa(store_, std::move(org), std::move(record).value(), std::move(cert),
                   std::move(key).value(), std::move(signer), std::move(ocsp));
}

Result<store::CertificateRecord> Hierarchy::Revoke(const std::string& org_name,
                                                   const std::string& serial_hex,
                                                   crypto::RevocationReason reason,
                                                   const std::optional<std::string>& ca_name) {
  DEVID_ASSIGN_OR_RETURN(store::Organization org, store_.GetOrganization(org_name));
  DEVID_ASSIGN_OR_RETURN(std::string serial, NormalizeSerial(serial_hex));
  DEVID_ASSIGN_OR_RETURN(std::vector<store::CertificateRecord> found,
                         store_.FindCertificatesBySerial(org.id, serial));
  if (ca_name) {
    auto ca = store_.GetCa(org.id, *ca_name);
    if (!ca.ok())
      return MakeError(ErrorCode::kNotFound,
                       "CA '" + *ca_name + "' does not exist in organization '" + org_name + "'");
    std::erase_if(found, [&](const store::CertificateRecord& r) { return r.ca_id != ca->id; });
  }
  if (found.empty()) {
    return MakeError(ErrorCode::kNotFound, "no certificate with serial " + serial +
                                               " in organization '" + org_name + "'");
  }
  if (found.size() > 1) {
    return MakeError(ErrorCode::kInvalidInput,
                     "serial " + serial + " exists under several CAs: give --ca");
  }
  store::CertificateRecord record = std::move(found.front());
  DEVID_ASSIGN_OR_RETURN(std::vector<store::CaRecord> cas, store_.ListCas(org.id));
  for (const store::CaRecord& ca : cas) {
    if (ca.kind == store::CaKind::kRoot && ca.id == record.ca_id &&
        ca.certificate_der == record.der) {
      return MakeError(ErrorCode::kPolicy,
                       "a root CA certificate cannot be revoked by its own CRL");
    }
  }
  if (record.revocation) {
    return MakeError(ErrorCode::kAlreadyExists, "certificate " + serial + " is already revoked");
  }
  store::Revocation revocation{static_cast<int>(reason), NowUnix()};
  DEVID_TRY(store_.Revoke(org.id, record.id, revocation));
  record.revocation = revocation;
  return record;
}

Result<std::vector<crypto::Certificate>> Hierarchy::Chain(const std::string& org_name,
                                                          const std::string& ca_name) {
  DEVID_ASSIGN_OR_RETURN(store::Organization org, store_.GetOrganization(org_name));
  auto record = store_.GetCa(org.id, ca_name);
  if (!record.ok()) {
    return MakeError(ErrorCode::kNotFound,
                     "CA '" + ca_name + "' does not exist in organization '" + org_name + "'");
  }
  std::vector<crypto::Certificate> chain;
  store::CaRecord current = std::move(record).value();
  for (int depth = 0; depth < 16; ++depth) {
    DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                           crypto::Certificate::Parse(current.certificate_der));
    chain.push_back(std::move(cert));
    if (!current.parent_id) return chain;
    DEVID_ASSIGN_OR_RETURN(current, store_.GetCaById(org.id, *current.parent_id));
  }
  return MakeError(ErrorCode::kInternal, "CA chain is deeper than 16");
}

Result<std::vector<store::CertificateRecord>> Hierarchy::List(
    const std::string& org_name, const store::CertificateFilter& filter) {
  DEVID_ASSIGN_OR_RETURN(store::Organization org, store_.GetOrganization(org_name));
  return store_.ListCertificates(org.id, filter);
}

Result<std::vector<store::CaRecord>> Hierarchy::ListCas(const std::string& org_name) {
  DEVID_ASSIGN_OR_RETURN(store::Organization org, store_.GetOrganization(org_name));
  return store_.ListCas(org.id);
}

}  // namespace devid::ca
