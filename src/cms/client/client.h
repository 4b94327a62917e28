// The C++ client of the CMS API (docs/openapi.yaml) and of its EST endpoints,
// over libcurl: what `devid cms …` uses, and the agent later. One client is
// one keep-alive connection pool; not thread-safe (one per thread).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/certificate.h"

namespace devid::cms::client {

struct ClientOptions {
  std::string base_url;  // "https://127.0.0.1:8443"
  std::string ca_file;   // trust for the server's certificate; empty: the system's
  std::string token;     // bearer token (session or API)
  long timeout_seconds = 30;
};

class CmsClient {
 public:
  static Result<CmsClient> Create(ClientOptions options);
  CmsClient(CmsClient&&) noexcept;
  CmsClient& operator=(CmsClient&&) noexcept;
  ~CmsClient();

  // POST /api/v1/auth/login; the session token is kept for later calls and returned.
  Result<std::string> Login(const std::string& username, const std::string& password);
  const std::string& token() const { return options_.token; }

  // JSON calls under /api/v1 (`path` starts with "/"). A non-2xx answer
  // becomes an Error whose code follows the status (401/403 kAuth, 404
  // kNotFound, 409 kAlreadyExists, 422 kPolicy, other 4xx kInvalidInput,
  // else kIo) and whose message is the server's.
  Result<nlohmann::json> Get(const std::string& path,
                             const std::map<std::string, std::string>& query = {});
  Result<nlohmann::json> Post(const std::string& path, const nlohmann::json& body);
  Result<nlohmann::json> Put(const std::string& path, const nlohmann::json& body);
  Result<nlohmann::json> Patch(const std::string& path, const nlohmann::json& body);
  Result<nlohmann::json> Delete(const std::string& path);

  // The calls the CLI and the agent make, typed.
  Result<nlohmann::json> IssueCertificate(const std::string& org, const std::string& ca,
                                          const std::string& template_name,
                                          const std::string& csr_pem);
  Result<nlohmann::json> RevokeCertificate(const std::string& org, const std::string& serial,
                                           const std::string& reason);
  Result<std::string> CaChainPem(const std::string& org, const std::string& ca);

  // EST (RFC 7030) with this client's bearer token.
  Result<std::vector<crypto::Certificate>> EstCaCerts(const std::string& org,
                                                      const std::string& ca);
  Result<crypto::Certificate> EstSimpleEnroll(const std::string& org, const std::string& ca,
                                              ByteView csr_der);

  // URL-escapes one path segment.
  static std::string Segment(const std::string& text);

  // hub: the body of a GET outside /api/v1 (`path` from the server's root,
  // e.g. "/crl/acme/devices.crl"), as bytes; a non-200 answer is an Error as for Get.
  Result<Bytes> GetBytes(const std::string& path);

 private:
  struct Reply {
    long status = 0;
    std::string content_type;
    std::string body;
  };
  CmsClient(ClientOptions options, void* curl);
  Result<Reply> Send(const std::string& method, const std::string& url, const std::string& type,
                     const std::string& body);
  Result<nlohmann::json> Json(const std::string& method, const std::string& path,
                              const std::optional<nlohmann::json>& body);

  ClientOptions options_;
  void* curl_;  // CURL*, reused so that connections are kept alive
};

// The certificate of an EST enrolment answer (RFC 7030 §4.2.3: base64
// certs-only PKCS#7 holding exactly one); any status but 200 is an error
// mapped as for the JSON calls. Shared by CmsClient and the agent, which
// re-enrols over a TLS connection whose key is in its chip.
Result<crypto::Certificate> EstEnrollAnswer(long status, const std::string& body);

}  // namespace devid::cms::client
