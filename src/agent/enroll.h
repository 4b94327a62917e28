// Zero-touch enrolment (seed fig. 4 steps 3-5): a CSR signed in the chip goes
// to the CMS over EST (RFC 7030); the certificate that comes back is checked
// by the chip against the issuing CA key it keeps, then stored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/device.h"
#include "cms/client/client.h"
#include "core/result.h"

namespace devid::agent {

struct CmsEndpoint {
  std::string url;      // https://HOST:PORT
  std::string ca_file;  // trust for the CMS's server certificate
  std::string org;
  std::string ca;
};

struct EnrollOptions {
  CmsEndpoint cms;
  // An enrolment token (an API token of the enrollment role, as bearer).
  // Empty: the device authenticates with the certificate it already holds
  // (the factory's), over TLS with its chip key (EST simplereenroll).
  std::string token;
  // The subject to ask for. Default: that of the certificate the device
  // holds, else CN=<chip serial>.
  std::string subject;
  // The issuing CA certificate to store beside the new certificate when the
  // device holds none yet; none: asked of the CMS (EST cacerts).
  std::optional<crypto::Certificate> issuer;
  // A client to reuse (keep-alive across the devices a fleet worker enrols);
  // none: a fresh one with `token`.
  cms::client::CmsClient* client = nullptr;
};

struct EnrollResult {
  crypto::Certificate certificate;
  std::string identity;  // its CN
  std::string method;    // "simpleenroll" or "simplereenroll"
};

Result<EnrollResult> Enroll(Device& device, const EnrollOptions& options);

// An HTTP/1.1 answer read whole from a connection the server closed: its
// status and the Content-Length bytes of its body (required). Bytes from the
// network: fuzzed (fuzz/fuzz_http_answer.cc).
struct HttpAnswer {
  long status = 0;
  std::string body;
};
Result<HttpAnswer> ParseHttpAnswer(std::string_view raw);

// EST simplereenroll with the device's current certificate (TLS client
// authentication by the chip): the same subject, the same key. Stores the
// new certificate.
Result<crypto::Certificate> Reenroll(Device& device, const CmsEndpoint& cms);

}  // namespace devid::agent
