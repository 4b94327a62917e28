#include "cms/est_service.h"

#include "cms/audit.h"
#include "core/bytes.h"
#include "core/secret.h"
#include "core/time.h"
#include "crypto/pkcs7.h"

namespace devid::cms {

namespace {

constexpr std::string_view kPkcs7CertsOnly = "application/pkcs7-mime; smime-type=certs-only";

Result<crypto::CertificateRequest> ReadCsr(const http::Request& r) {
  if (!http::HasMediaType(r, "application/pkcs10")) {
    return MakeError(ErrorCode::kInvalidInput, "unsupported_media_type");
  }
  // RFC 7030 §4: bodies are base64, possibly in lines.
  auto der = Base64DecodeLines(r.body);
  if (!der || der->empty()) {
    return MakeError(ErrorCode::kInvalidInput, "the body is not base64 (RFC 7030 §4.2.1)");
  }
  return crypto::CertificateRequest::Parse(*der);
}

http::Response Base64Part(std::string_view content_type, ByteView der) {
  http::Response out{200, std::string(content_type), Base64Encode(der, 64) + "\n", {}};
  out.headers.push_back({"Content-Transfer-Encoding", "base64"});
  return out;
}

Result<http::Response> CertsOnly(const std::vector<crypto::Certificate>& certs) {
  DEVID_ASSIGN_OR_RETURN(Bytes p7, crypto::MakeCertsOnlyPkcs7(certs));
  return Base64Part(kPkcs7CertsOnly, p7);
}

// The certificate just issued, moved rather than copied: a copy of a certificate
// fresh from the builder is a re-encode and an OpenSSL 3 re-parse.
std::vector<crypto::Certificate> Only(crypto::Certificate&& issued) {
  std::vector<crypto::Certificate> one;
  one.push_back(std::move(issued));
  return one;
}

}  // namespace

void EstService::Register(http::Router& router) {
  const std::string base = "/.well-known/est/{org}/{ca}/";
  store::Store& db = backend_.store();

  router.Add("GET", base + "cacerts", [this](const http::Request& r) {
    auto lock = backend_.Lock();
    auto chain = backend_.hierarchy().Chain(r.params.at("org"), r.params.at("ca"));
    if (!chain.ok()) return ErrorResponse(chain.error());
    auto out = CertsOnly(*chain);
    return out.ok() ? std::move(out).value() : ErrorResponse(out.error());
  });

  router.Add("GET", base + "csrattrs", [](const http::Request&) {
    // ecdsa-with-SHA256 signatures on P-256 keys (id-ecPublicKey, prime256v1).
    auto der = crypto::EncodeCsrAttributes(
        {"1.2.840.10045.4.3.2", "1.2.840.10045.2.1", "1.2.840.10045.3.1.7"});
    return der.ok() ? Base64Part("application/csrattrs", *der) : ErrorResponse(der.error());
  });

  router.Add(
      "POST", base + "simpleenroll",
      api_.Guard(
          Action::kCertificateIssue, "est.simpleenroll",
          [this](const http::Request& r, Api::Caller& c,
                 std::string& target) -> Result<http::Response> {
            DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr, ReadCsr(r));
            DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, csr.subject());
            if (Status enabled = api_.CheckDeviceEnabled(c.org->id, subject); !enabled.ok()) {
              DEVID_TRY(csr.VerifyProofOfPossession());
              return enabled.error();
            }
            DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile,
                                   api_.Profile(c.org->id, template_));
            DEVID_ASSIGN_OR_RETURN(ca::SigningCa * ca,
                                   backend_.Ca(c.org->name, r.params.at("ca"), true));
            DEVID_TRY(api_.CheckEnrollment(c, subject, csr.public_key().key_bits(), profile));
            DEVID_ASSIGN_OR_RETURN(ca::IssuedCertificate issued, ca->Issue(profile, csr));
            target = "certificate:" + issued.record.serial_hex;
            if (backend_.metrics() != nullptr) {
              backend_.metrics()->Increment("devid_certificates_issued_total");
            }
            return CertsOnly(Only(std::move(issued.certificate)));
          }));

  router.Add(
      "POST", base + "serverkeygen",
      api_.Guard(
          Action::kCertificateIssue, "est.serverkeygen",
          [this](const http::Request& r, Api::Caller& c,
                 std::string& target) -> Result<http::Response> {
            DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr, ReadCsr(r));
            DEVID_TRY(csr.VerifyProofOfPossession());
            DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, csr.subject());
            DEVID_ASSIGN_OR_RETURN(auto sans, csr.RequestedSubjectAltNames());
            DEVID_TRY(api_.CheckDeviceEnabled(c.org->id, subject));
            DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile,
                                   api_.Profile(c.org->id, template_));
            DEVID_ASSIGN_OR_RETURN(ca::SigningCa * ca,
                                   backend_.Ca(c.org->name, r.params.at("ca"), true));
            DEVID_TRY(api_.CheckEnrollment(c, subject, std::nullopt, profile));
            // The key type the request's own key has (RFC 7030 §4.4.1.1).
            crypto::KeyType type = csr.key_algorithm().type.value_or(crypto::KeyType::kEcP256);
            DEVID_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::Generate(type));
            DEVID_ASSIGN_OR_RETURN(ca::IssuedCertificate issued,
                                   ca->IssueForKey(profile, key, subject, sans));
            target = "certificate:" + issued.record.serial_hex;
            DEVID_ASSIGN_OR_RETURN(Bytes pkcs8, key.ToPkcs8Der());
            DEVID_ASSIGN_OR_RETURN(Bytes p7,
                                   crypto::MakeCertsOnlyPkcs7(Only(std::move(issued.certificate))));
            DEVID_ASSIGN_OR_RETURN(Bytes boundary_bytes, crypto::RandomBytes(12));
            std::string boundary = "devid-est-" + HexEncode(boundary_bytes);
            // RFC 7030 §4.4.2: multipart/mixed, the key (PKCS#8) then the certificate.
            WipingString body;
            auto append = [&body](std::string_view s) { body.append(s.data(), s.size()); };
            append("--" + boundary +
                   "\r\nContent-Type: application/pkcs8\r\n"
                   "Content-Transfer-Encoding: base64\r\n\r\n");
            append(Base64Encode(pkcs8, 64));
            SecureZero(pkcs8.data(), pkcs8.size());
            append("\r\n--" + boundary + "\r\nContent-Type: " + std::string(kPkcs7CertsOnly) +
                   "\r\nContent-Transfer-Encoding: base64\r\n\r\n");
            append(Base64Encode(p7, 64));
            append("\r\n--" + boundary + "--\r\n");
            return http::Response{200,
                                  "multipart/mixed; boundary=" + boundary,
                                  std::string(body.data(), body.size()),
                                  {}};
          }));

  router.Add("POST", base + "simplereenroll", [this, &db](const http::Request& r) {
    auto lock = backend_.Lock();
    const std::string& org_name = r.params.at("org");
    const std::string& ca_name = r.params.at("ca");
    std::optional<int64_t> org_id;
    std::string actor = "anonymous";
    std::string target = r.path;
    bool ca_unavailable = false;
    auto run = [&]() -> Result<http::Response> {
      // RFC 7030 §3.3.2: the client proves itself with the certificate it renews.
      if (!r.client_certificate) {
        return MakeError(ErrorCode::kAuth, "re-enrolment needs the current client certificate");
      }
      DEVID_ASSIGN_OR_RETURN(store::Organization org, db.GetOrganization(org_name));
      org_id = org.id;
      DEVID_ASSIGN_OR_RETURN(crypto::Certificate current,
                             crypto::Certificate::Parse(*r.client_certificate));
      actor = "certificate:" + current.SerialHex();
      DEVID_ASSIGN_OR_RETURN(store::CaRecord ca_record, db.GetCa(org.id, ca_name));
      DEVID_ASSIGN_OR_RETURN(auto found, db.FindCertificatesBySerial(org.id, current.SerialHex()));
      // Issued = recorded: the exact certificate must be one this CA issued.
      const store::CertificateRecord* record = nullptr;
      for (const auto& f : found) {
        if (f.ca_id == ca_record.id && f.der == *r.client_certificate) record = &f;
      }
      if (record == nullptr) {
        return MakeError(ErrorCode::kAuth, "the client certificate was not issued by this CA");
      }
      if (record->revocation)
        return MakeError(ErrorCode::kAuth, "the client certificate is revoked");
      int64_t now = NowUnix();
      if (record->not_after < now || record->not_before > now) {
        return MakeError(ErrorCode::kAuth, "the client certificate is not valid now");
      }
      DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr, ReadCsr(r));
      DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, csr.subject());
      // RFC 7030 §4.2.2: the subject must be the one being renewed.
      DEVID_ASSIGN_OR_RETURN(auto requested_sans, csr.RequestedSubjectAltNames());
      DEVID_ASSIGN_OR_RETURN(auto current_sans, current.SubjectAltNames());
      if (subject.ToString() != record->subject || requested_sans != current_sans) {
        return MakeError(ErrorCode::kPolicy,
                         "re-enrolment keeps the subject and subjectAltName of the current "
                         "certificate");
      }
      DEVID_TRY(api_.CheckDeviceEnabled(org.id, subject));
      DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile,
                             api_.Profile(org.id, record->template_name));
      auto ca = backend_.Ca(org_name, ca_name, true);
      if (!ca.ok()) {
        // A CA that cannot sign is the server's problem, not a denial of the client.
        ca_unavailable = ca.error().code == ErrorCode::kAuth;
        return ca.error();
      }
      DEVID_ASSIGN_OR_RETURN(ca::IssuedCertificate issued, (*ca)->Issue(profile, csr));
      target = "certificate:" + record->serial_hex + " -> " + issued.record.serial_hex;
      if (backend_.metrics() != nullptr) {
        backend_.metrics()->Increment("devid_certificates_issued_total");
      }
      return CertsOnly(Only(std::move(issued.certificate)));
    };
    auto out = run();
    bool denied = !out.ok() && out.error().code == ErrorCode::kAuth && !ca_unavailable;
    auto audited = AppendAudit(db, {org_id, actor, "est.simplereenroll", target,
                                    out.ok() ? "ok" : (denied ? "denied" : "failed"),
                                    out.ok() ? "" : out.error().message});
    if (denied) return http::JsonError(401, "unauthenticated", out.error().message);
    if (!out.ok()) return ErrorResponse(out.error());
    if (!audited.ok()) return ErrorResponse(audited.error());
    return std::move(out).value();
  });
}

}  // namespace devid::cms
