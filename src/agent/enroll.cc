#include "agent/enroll.h"

#include <charconv>

#include "cms/client/client.h"
#include "core/bytes.h"
#include "core/file.h"

namespace devid::agent {

namespace {

struct HttpsUrl {
  std::string host;
  uint16_t port = 443;
};

Result<HttpsUrl> ParseHttpsUrl(const std::string& url) {
  constexpr std::string_view kScheme = "https://";
  if (!url.starts_with(kScheme)) {
    return MakeError(ErrorCode::kInvalidInput, "the CMS URL must start with https://");
  }
  std::string rest = url.substr(kScheme.size());
  if (size_t slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  HttpsUrl out;
  size_t colon = rest.rfind(':');
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) return MakeError(ErrorCode::kInvalidInput, "bad CMS URL");
    out.host = rest.substr(1, close - 1);
    colon = rest.size() > close + 1 && rest[close + 1] == ':' ? close + 1 : std::string::npos;
  } else {
    out.host = rest.substr(0, colon);
  }
  if (colon != std::string::npos) {
    std::string_view p = std::string_view(rest).substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), out.port);
    if (ec != std::errc() || end != p.data() + p.size() || out.port == 0) {
      return MakeError(ErrorCode::kInvalidInput, "bad port in the CMS URL");
    }
  }
  if (out.host.empty()) return MakeError(ErrorCode::kInvalidInput, "no host in the CMS URL");
  return out;
}

// One HTTP/1.1 POST over a fresh TLS connection; the answer's status and body.
Result<std::pair<long, std::string>> Post(SSL_CTX* ctx, const HttpsUrl& url,
                                          const std::string& path, const std::string& type,
                                          const std::string& body) {
  DEVID_ASSIGN_OR_RETURN(crypto::TlsConnection tls,
                         crypto::TlsConnection::Open(ctx, url.host, url.port, url.host,
                                                     std::chrono::milliseconds(15000)));
  std::string request =
      "POST " + path + " HTTP/1.1\r\nHost: " + url.host + "\r\nContent-Type: " + type +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  DEVID_TRY(tls.Write(AsBytes(request)));
  DEVID_ASSIGN_OR_RETURN(Bytes raw, tls.ReadToEnd(1 << 20));
  DEVID_ASSIGN_OR_RETURN(HttpAnswer answer, ParseHttpAnswer(AsString(raw)));
  return std::make_pair(answer.status, std::move(answer.body));
}

std::string EstPath(const CmsEndpoint& cms, const char* operation) {
  return "/.well-known/est/" + cms::client::CmsClient::Segment(cms.org) + "/" +
         cms::client::CmsClient::Segment(cms.ca) + "/" + operation;
}

// The CMS's own server certificate is trusted by the file the operator gave
// (the CMS makes its TLS certificate from a system CA of its own).
Result<std::vector<crypto::Certificate>> CmsTrust(const CmsEndpoint& cms) {
  if (cms.ca_file.empty()) {
    return MakeError(ErrorCode::kInvalidInput,
                     "re-enrolment with the chip's key needs the CMS's CA certificate (--cms-ca)");
  }
  DEVID_ASSIGN_OR_RETURN(Bytes pem, ReadFile(cms.ca_file, 1 << 20));
  return crypto::Certificate::ParsePemChain(pem);
}

// The issuing CA certificate as the CMS gives it (EST cacerts).
Result<crypto::Certificate> FetchIssuer(const CmsEndpoint& cms, const std::string& token) {
  DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client,
                         cms::client::CmsClient::Create({cms.url, cms.ca_file, token}));
  DEVID_ASSIGN_OR_RETURN(auto cacerts, client.EstCaCerts(cms.org, cms.ca));
  // RFC 7030 §4.1.3: the issuing CA first is what devid serves.
  return cacerts.front();
}

}  // namespace

Result<HttpAnswer> ParseHttpAnswer(std::string_view raw) {
  size_t head_end = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/1.1 ") || head_end == std::string_view::npos || head_end < 12) {
    return MakeError(ErrorCode::kIo, "the CMS sent no HTTP answer");
  }
  HttpAnswer out;
  auto [end, ec] = std::from_chars(raw.data() + 9, raw.data() + 12, out.status);
  if (ec != std::errc() || end != raw.data() + 12 || out.status < 100 || out.status > 599) {
    return MakeError(ErrorCode::kIo, "the CMS answer has no valid status");
  }
  std::string head(raw.substr(0, head_end));
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // The length the server announced must have arrived whole.
  constexpr std::string_view kLength = "\r\ncontent-length:";
  size_t at = head.find(kLength);
  if (at == std::string::npos) {
    return MakeError(ErrorCode::kIo, "the CMS answer has no Content-Length");
  }
  std::string_view value = std::string_view(head).substr(at + kLength.size());
  value = value.substr(0, value.find("\r\n"));
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  size_t length = 0;
  auto [length_end, length_ec] = std::from_chars(value.data(), value.data() + value.size(), length);
  if (value.empty() || length_ec != std::errc() || length_end != value.data() + value.size()) {
    return MakeError(ErrorCode::kIo, "the CMS answer has a bad Content-Length");
  }
  std::string_view content = raw.substr(head_end + 4);
  if (content.size() < length) return MakeError(ErrorCode::kIo, "the CMS answer was cut short");
  out.body = std::string(content.substr(0, length));
  return out;
}

Result<crypto::Certificate> Reenroll(Device& device, const CmsEndpoint& cms) {
  DEVID_ASSIGN_OR_RETURN(auto chain, device.Chain());
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, chain.front().subject());
  DEVID_ASSIGN_OR_RETURN(auto sans, chain.front().SubjectAltNames());
  DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr, device.MakeCsr(subject, sans));
  const Bytes& der = csr.der();
  DEVID_ASSIGN_OR_RETURN(HttpsUrl url, ParseHttpsUrl(cms.url));
  DEVID_ASSIGN_OR_RETURN(auto trust, CmsTrust(cms));
  DEVID_ASSIGN_OR_RETURN(crypto::UniquePtr<SSL_CTX> ctx,
                         device.TlsContext(trust, url.host, true, crypto::TlsVersion::kTls13));
  DEVID_ASSIGN_OR_RETURN(auto answer, Post(ctx.get(), url, EstPath(cms, "simplereenroll"),
                                           "application/pkcs10", Base64Encode(der, 64)));
  DEVID_ASSIGN_OR_RETURN(crypto::Certificate issued,
                         cms::client::EstEnrollAnswer(answer.first, answer.second));
  DEVID_TRY(device.CheckIssued(issued));
  DEVID_TRY(device.StoreChain(issued, chain[1]));
  return issued;
}

Result<EnrollResult> Enroll(Device& device, const EnrollOptions& o) {
  if (o.cms.url.empty() || o.cms.org.empty() || o.cms.ca.empty()) {
    return MakeError(ErrorCode::kInvalidInput, "enrolment needs the CMS URL, organization and CA");
  }
  if (o.token.empty()) {
    // The factory certificate authenticates the device (RFC 7030 §3.3.2).
    DEVID_ASSIGN_OR_RETURN(crypto::Certificate issued, Reenroll(device, o.cms));
    DEVID_ASSIGN_OR_RETURN(std::string identity, device.Identity());
    return EnrollResult{std::move(issued), std::move(identity), "simplereenroll"};
  }
  std::optional<std::vector<crypto::Certificate>> held;
  if (auto chain = device.Chain(); chain.ok()) held = std::move(*chain);
  crypto::DistinguishedName subject;
  if (!o.subject.empty()) {
    DEVID_ASSIGN_OR_RETURN(subject, crypto::DistinguishedName::Parse(o.subject));
  } else if (held) {
    DEVID_ASSIGN_OR_RETURN(subject, held->front().subject());
  } else {
    std::string serial = device.ChipSerial();
    if (serial.empty()) return MakeError(ErrorCode::kIo, "the chip does not answer GET_INFO");
    DEVID_ASSIGN_OR_RETURN(subject, crypto::DistinguishedName::Parse("CN=" + serial));
  }
  DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr, device.MakeCsr(subject, {}));
  std::optional<crypto::Certificate> issuer = o.issuer;
  if (held) issuer = held->at(1);
  // Beside the new certificate: the issuing CA the device holds, else the given one, else the
  // CMS's.
  if (!issuer) {
    DEVID_ASSIGN_OR_RETURN(issuer, FetchIssuer(o.cms, o.token));
  }
  std::optional<cms::client::CmsClient> own;
  cms::client::CmsClient* client = o.client;
  if (client == nullptr) {
    DEVID_ASSIGN_OR_RETURN(own,
                           cms::client::CmsClient::Create({o.cms.url, o.cms.ca_file, o.token}));
    client = &*own;
  }
  DEVID_ASSIGN_OR_RETURN(crypto::Certificate issued,
                         client->EstSimpleEnroll(o.cms.org, o.cms.ca, csr.der()));
  DEVID_TRY(device.CheckIssued(issued));
  DEVID_TRY(device.StoreChain(issued, *issuer));
  DEVID_ASSIGN_OR_RETURN(std::string identity, device.Identity());
  return EnrollResult{std::move(issued), std::move(identity), "simpleenroll"};
}

}  // namespace devid::agent
