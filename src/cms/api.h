// The CMS REST API under /api/v1 (docs/openapi.yaml): organizations, users,
// tokens, CAs, templates, certificates, devices, audit. Every request is
// authenticated (bearer token), checked for organization and role, and
// recorded in the audit chain, denials included.
#pragma once

#include <string>

#include "cms/auth.h"
#include "cms/backend.h"
#include "http/server.h"

namespace devid::cms {

// What a role may do. An organization-scoped caller acts only in its own
// organization; a system admin acts in every one.
enum class Action {
  kSession,  // the caller's own session (logout): every role
  kOrgCreate,
  kOrgRead,
  kUserManage,
  kTokenManage,
  kCaRead,
  kCaManage,
  kTemplateRead,
  kTemplateManage,
  kCertificateRead,
  kCertificateIssue,   // from a CSR: also what device enrolment does
  kCertificateManage,  // revoke, renew, re-key, batches
  kDeviceRead,
  kDeviceManage,
  kAuditRead,
};

bool RoleAllows(Role role, Action action);

class Api {
 public:
  Api(Backend& backend, Authenticator& auth, std::string openapi_yaml)
      : backend_(backend), auth_(auth), openapi_(std::move(openapi_yaml)) {}
  void Register(http::Router& router);
  // The base URL relying parties reach this service at: CAs created through
  // the API put their CRL and OCSP URLs under it.
  void set_public_url(std::string url) { public_url_ = std::move(url); }

  // The caller of `request` for `action` in the organization named by the
  // route's {org} (if any); an error response otherwise (401/403/404), audited.
  // Public for EST, which shares the checks.
  struct Caller {
    Principal principal;
    std::optional<store::Organization> org;
  };
  Result<Caller> Authorize(const http::Request& request, Action action, std::string_view what,
                           http::Response* denial);

  // A handler that locks the backend, authorizes the caller for `action`,
  // runs `body` and appends its outcome to the audit chain as `name` on
  // `target` (which the body sets).
  using Body =
      std::function<Result<http::Response>(const http::Request&, Caller&, std::string& target)>;
  http::Handler Guard(Action action, std::string name, Body body);

  // kPolicy when the subject's CN names a device the registry has disabled:
  // a disabled device gets no new certificate, by any path.
  Status CheckDeviceEnabled(int64_t org_id, const crypto::DistinguishedName& subject);
  // What an enrolment credential (role enrollment) may obtain: certificates
  // for clients only (a template without serverAuth, not a CA), and for a
  // device name that has no valid certificate for another key (`key_bits`;
  // none: a key the server makes, so no valid certificate at all). A device
  // already enrolled re-enrols with its certificate (EST simplereenroll).
  // Other roles pass.
  Status CheckEnrollment(const Caller& caller, const crypto::DistinguishedName& subject,
                         std::optional<ByteView> key_bits, const ca::CertificateProfile& profile);

  // The organization's stored template, else a built-in (or home) one.
  Result<ca::CertificateProfile> Profile(int64_t org_id, const std::string& name);

 private:
  Backend& backend_;
  Authenticator& auth_;
  std::string openapi_;
  std::string public_url_;
};

// A store or engine error as the HTTP answer it deserves.
http::Response ErrorResponse(const Error& error);

}  // namespace devid::cms
