// The CMS's public revocation endpoints (no authentication, as relying
// parties use them): CRLs and the RFC 6960 OCSP responder, per organization
// and CA, answered by the CA engine from the store.
//   GET  /crl/{org}/{ca}.crl        DER CRL (a fresh, numbered one)
//   POST /ocsp/{org}/{ca}            body: DER OCSPRequest (application/ocsp-request)
//   GET  /ocsp/{org}/{ca}/{request}  the request base64 then URL-encoded (RFC 6960 A.1)
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "ca/hierarchy.h"
#include "http/server.h"

namespace devid::cms {

class RevocationService {
 public:
  RevocationService(ca::Hierarchy& hierarchy, http::Metrics* metrics)
      : hierarchy_(hierarchy), metrics_(metrics) {}
  void Register(http::Router& router);

 private:
  // The CA unlocked once and kept; nullptr with `error` set when it cannot be.
  ca::SigningCa* Ca(const std::string& org, const std::string& name, http::Response* error);
  http::Response Ocsp(const std::string& org, const std::string& ca, ByteView request);

  ca::Hierarchy& hierarchy_;
  http::Metrics* metrics_;
  std::mutex mu_;  // the store and the CA engine serve one request at a time
  std::map<std::string, std::unique_ptr<ca::SigningCa>> cas_;
};

}  // namespace devid::cms
