// The CMS's public revocation endpoints (no authentication, as relying
// parties use them): CRLs and the RFC 6960 OCSP responder, per organization
// and CA, answered by the CA engine from the store.
//   GET  /crl/{org}/{ca}.crl        DER CRL (a fresh, numbered one)
//   POST /ocsp/{org}/{ca}            body: DER OCSPRequest (application/ocsp-request)
//   GET  /ocsp/{org}/{ca}/{request}  the request base64 then URL-encoded (RFC 6960 A.1)
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include "cms/backend.h"
#include "http/server.h"

namespace devid::cms {

class RevocationService {
 public:
  explicit RevocationService(Backend& backend) : backend_(backend) {}
  void Register(http::Router& router);

  // RFC 5019 §6: answers to requests without a nonce are kept this long and
  // served again without signing. A revocation by this process empties the
  // cache at once; one by another process sharing the database shows within
  // this time.
  static constexpr std::chrono::seconds kOcspCacheTime{60};
  static constexpr size_t kOcspCacheEntries = 100000;

 private:
  // With the backend locked: the CA, or nullptr with `error` set.
  ca::SigningCa* Ca(const std::string& org, const std::string& name, http::Response* error);
  http::Response Ocsp(const std::string& org, const std::string& ca, ByteView request);

  Backend& backend_;

  struct CachedAnswer {
    Bytes response;
    std::chrono::steady_clock::time_point expires;
    uint64_t generation = 0;
  };
  std::mutex cache_mu_;
  // Key: "org/ca" NUL request DER.
  std::unordered_map<std::string, CachedAnswer> ocsp_cache_;

  // The last CRL of each CA ("org/ca"), served again while no certificate of
  // the CA was revoked (by any process: the count is read from the store) and
  // less than half of its validity has passed. Without it every fetch made a
  // new numbered CRL: a database write per poll of every relying party.
  struct CachedCrl {
    Bytes der;
    int64_t revocations = 0;
    int64_t refresh_after = 0;
  };
  std::unordered_map<std::string, CachedCrl> crl_cache_;  // under the backend lock
};

}  // namespace devid::cms
