// The CMS's public revocation endpoints (no authentication, as relying
// parties use them): CRLs and the RFC 6960 OCSP responder, per organization
// and CA, answered by the CA engine from the store.
//   GET  /crl/{org}/{ca}.crl        DER CRL (a fresh, numbered one)
//   POST /ocsp/{org}/{ca}            body: DER OCSPRequest (application/ocsp-request)
//   GET  /ocsp/{org}/{ca}/{request}  the request base64 then URL-encoded (RFC 6960 A.1)
#pragma once

#include <string>

#include "cms/backend.h"
#include "http/server.h"

namespace devid::cms {

class RevocationService {
 public:
  explicit RevocationService(Backend& backend) : backend_(backend) {}
  void Register(http::Router& router);

 private:
  // With the backend locked: the CA, or nullptr with `error` set.
  ca::SigningCa* Ca(const std::string& org, const std::string& name, http::Response* error);
  http::Response Ocsp(const std::string& org, const std::string& ca, ByteView request);

  Backend& backend_;
};

}  // namespace devid::cms
