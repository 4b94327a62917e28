// EST (RFC 7030) under /.well-known/est/{org}/{ca}/: how devices enrol with
// standard clients. Wire formats as the RFC says: base64 PKCS#10 in, base64
// certs-only PKCS#7 out (application/pkcs7-mime; smime-type=certs-only).
//   GET  cacerts          the CA's chain (no authentication, §4.1)
//   POST simpleenroll     HTTP basic or bearer, role allowed to issue (§4.2)
//   POST simplereenroll   TLS client certificate issued by this CA (§4.2.2)
//   GET  csrattrs         what requests should carry (§4.5)
//   POST serverkeygen     key made by the server, returned with it (§4.4)
#pragma once

#include <string>

#include "cms/api.h"

namespace devid::cms {

class EstService {
 public:
  // `template_name`: the template simpleenroll and serverkeygen issue under;
  // re-enrolment keeps the template of the certificate being replaced.
  EstService(Backend& backend, Api& api, std::string template_name)
      : backend_(backend), api_(api), template_(std::move(template_name)) {}
  void Register(http::Router& router);

 private:
  Backend& backend_;
  Api& api_;
  std::string template_;
};

}  // namespace devid::cms
