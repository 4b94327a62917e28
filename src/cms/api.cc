#include "cms/api.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>

#include "cms/audit.h"
#include "cms/password.h"
#include "core/time.h"
#include "crypto/crl.h"
#include "crypto/pkcs7.h"

namespace devid::cms {

namespace {

using json = nlohmann::json;

// Identities in one batch request; larger orders are split by the client.
constexpr int64_t kMaxBatch = 1000;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

http::Response Json(int status, const json& j) {
  return http::Response{status, "application/json", Dump(j), {}};
}

// Names that appear in URLs: organizations, CAs, templates, users, devices.
bool ValidName(std::string_view s, size_t max = 64) {
  if (s.empty() || s.size() > max) return false;
  // "." and ".." are path segments clients remove: such a name could not be addressed.
  if (s.find_first_not_of('.') == std::string_view::npos) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
          c == '@')) {
      return false;
    }
  }
  return true;
}

Error BadInput(std::string message) {
  return MakeError(ErrorCode::kInvalidInput, std::move(message));
}

// The JSON object of a request body; 415 for another content type.
Result<json> ParseBody(const http::Request& r) {
  if (!http::HasMediaType(r, "application/json")) {
    return MakeError(ErrorCode::kInvalidInput, "unsupported_media_type");
  }
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return BadInput("the request body is not a JSON object");
  }
  return j;
}

Result<std::string> Field(const json& j, const char* name, size_t max, bool required = true) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) return BadInput(std::string("field '") + name + "' is required");
    return std::string();
  }
  if (!it->is_string()) return BadInput(std::string("field '") + name + "' must be a string");
  std::string v = it->get<std::string>();
  if (v.size() > max) return BadInput(std::string("field '") + name + "' is too long");
  if (required && v.empty()) return BadInput(std::string("field '") + name + "' is empty");
  return v;
}

// A role an organization's users and tokens may have (not system-admin).
Result<Role> OrgRoleField(const json& j) {
  DEVID_ASSIGN_OR_RETURN(std::string name, Field(j, "role", 32));
  auto role = ParseRole(name);
  if (!role || *role == Role::kSystemAdmin) {
    return BadInput("role must be org-admin, operator, auditor or enrollment");
  }
  return *role;
}

Result<std::string> NameField(const json& j, const char* name) {
  DEVID_ASSIGN_OR_RETURN(std::string v, Field(j, name, 64));
  if (!ValidName(v)) {
    return BadInput(std::string("field '") + name +
                    "' must be 1-64 characters of A-Z a-z 0-9 . _ - @");
  }
  return v;
}

Result<std::optional<int64_t>> IntField(const json& j, const char* name, int64_t min, int64_t max) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer()) {
    return BadInput(std::string("field '") + name + "' must be an integer");
  }
  int64_t v = it->get<int64_t>();
  if (v < min || v > max) {
    return BadInput(std::string("field '") + name + "' must be in " + std::to_string(min) + ".." +
                    std::to_string(max));
  }
  return std::optional<int64_t>(v);
}

// Unix seconds, or "YYYY-MM-DDTHH:MM:SSZ".
Result<int64_t> ParseTime(const std::string& text, const char* what) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc() && end == text.data() + text.size()) return v;
  std::tm tm{};
  char z = 0;
  if (text.size() == 20 &&
      std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z) == 7 &&
      z == 'Z') {
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<int64_t>(timegm(&tm));
  }
  return BadInput(std::string("'") + what + "' must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ");
}

Result<std::string> PathParam(const http::Request& r, const char* name) {
  auto decoded = http::PercentDecode(r.params.at(name), false);
  if (!decoded || decoded->empty() || decoded->size() > 128) {
    return MakeError(ErrorCode::kNotFound, std::string("no such ") + name);
  }
  return *decoded;
}

json CertificateJson(const store::CertificateRecord& c, const std::string& ca_name, bool with_pem) {
  json j = {{"serial", c.serial_hex},
            {"ca", ca_name},
            {"subject", c.subject},
            {"template", c.template_name},
            {"not_before", FormatUtc(c.not_before)},
            {"not_after", FormatUtc(c.not_after)},
            {"created_at", FormatUtc(c.created_at)}};
  if (c.revocation) {
    j["status"] = "revoked";
    j["revoked_at"] = FormatUtc(c.revocation->revoked_at);
    auto reason = crypto::RevocationReasonFromCode(c.revocation->reason);
    j["reason"] = reason.ok() ? std::string(crypto::RevocationReasonName(*reason)) : "unspecified";
  } else {
    j["status"] = c.not_after < NowUnix() ? "expired" : "valid";
  }
  // The stored DER armoured as it is: parsing it again would decode its key
  // (OpenSSL 3's decoders, ~190 us) for nothing.
  if (with_pem) j["certificate"] = PemEncode("CERTIFICATE", c.der);
  return j;
}

json CaJson(const store::CaRecord& ca, const std::vector<store::CaRecord>& all) {
  json j = {{"name", ca.name},
            {"kind", ca.kind == store::CaKind::kRoot ? "root" : "ica"},
            {"disabled", ca.disabled},
            {"created_at", FormatUtc(ca.created_at)}};
  for (const auto& p : all) {
    if (ca.parent_id && p.id == *ca.parent_id) j["parent"] = p.name;
  }
  auto cert = crypto::Certificate::Parse(ca.certificate_der);
  if (cert.ok()) {
    auto subject = cert->subject();
    if (subject.ok()) j["subject"] = subject->ToString();
    j["serial"] = cert->SerialHex();
    j["not_before"] = FormatUtc(cert->not_before());
    j["not_after"] = FormatUtc(cert->not_after());
    auto pem = cert->ToPem();
    if (pem.ok()) j["certificate"] = *pem;
  }
  return j;
}

json UserJson(const store::UserRecord& u) {
  return {{"id", u.id},
          {"username", u.username},
          {"role", u.role},
          {"disabled", u.disabled},
          {"created_at", FormatUtc(u.created_at)}};
}

json TokenJson(const store::TokenRecord& t) {
  json j = {{"id", t.id},
            {"name", t.name},
            {"role", t.role},
            {"created_at", FormatUtc(t.created_at)},
            {"revoked", t.revoked_at.has_value()}};
  j["expires_at"] = t.expires_at ? json(FormatUtc(*t.expires_at)) : json(nullptr);
  return j;
}

// A CA's certificate and those above it, PEM, the CA's first.
Result<std::string> ChainPem(ca::Hierarchy& hierarchy, const std::string& org,
                             const std::string& ca) {
  DEVID_ASSIGN_OR_RETURN(auto chain, hierarchy.Chain(org, ca));
  std::string pem;
  for (const auto& cert : chain) {
    DEVID_ASSIGN_OR_RETURN(std::string one, cert.ToPem());
    pem += one;
  }
  return pem;
}

json DeviceJson(const store::DeviceRecord& d) {
  json j = {
      {"identifier", d.identifier}, {"status", d.status}, {"created_at", FormatUtc(d.created_at)}};
  j["first_seen"] = d.first_seen ? json(FormatUtc(*d.first_seen)) : json(nullptr);
  j["last_seen"] = d.last_seen ? json(FormatUtc(*d.last_seen)) : json(nullptr);
  return j;
}

json AuditJson(const store::AuditRecord& r) {
  return {{"seq", r.seq},       {"at", FormatUtc(r.at)},    {"actor", r.actor},
          {"action", r.action}, {"target", r.target},       {"outcome", r.outcome},
          {"detail", r.detail}, {"prev_hash", r.prev_hash}, {"hash", r.hash}};
}

std::string CaNameOf(const std::vector<store::CaRecord>& cas, int64_t id) {
  for (const auto& c : cas) {
    if (c.id == id) return c.name;
  }
  return "";
}

}  // namespace

bool RoleAllows(Role role, Action action) {
  switch (role) {
    case Role::kSystemAdmin:
      return true;
    case Role::kOrgAdmin:
      return action != Action::kOrgCreate;
    case Role::kOperator:
      switch (action) {
        case Action::kSession:
        case Action::kOrgRead:
        case Action::kCaRead:
        case Action::kTemplateRead:
        case Action::kCertificateRead:
        case Action::kCertificateIssue:
        case Action::kCertificateManage:
        case Action::kDeviceRead:
        case Action::kDeviceManage:
          return true;
        default:
          return false;
      }
    case Role::kAuditor:
      switch (action) {
        case Action::kSession:
        case Action::kOrgRead:
        case Action::kCaRead:
        case Action::kTemplateRead:
        case Action::kCertificateRead:
        case Action::kDeviceRead:
        case Action::kAuditRead:
          return true;
        default:
          return false;
      }
    case Role::kEnrollment:
      return action == Action::kCertificateIssue || action == Action::kSession;
  }
  return false;
}

http::Response ErrorResponse(const Error& e) {
  switch (e.code) {
    case ErrorCode::kInvalidInput:
      if (e.message == "unsupported_media_type") {
        return http::JsonError(415, "unsupported_media_type",
                               "the request body must be application/json");
      }
      return http::JsonError(400, "invalid_input", e.message);
    case ErrorCode::kNotFound:
      return http::JsonError(404, "not_found", e.message);
    case ErrorCode::kAlreadyExists:
      return http::JsonError(409, "conflict", e.message);
    case ErrorCode::kPolicy:
      return http::JsonError(422, "policy", e.message);
    case ErrorCode::kCrypto:
    case ErrorCode::kVerification:
      return http::JsonError(400, "invalid_input", e.message);
    case ErrorCode::kAuth:
      return http::JsonError(503, "ca_unavailable",
                             "the CA cannot sign now (is its passphrase given?)");
    case ErrorCode::kStorage:
    case ErrorCode::kIo:
    case ErrorCode::kTamper:
    case ErrorCode::kInternal:
      break;
  }
  return http::JsonError(500, "internal", "the request failed inside the server");
}

Result<Api::Caller> Api::Authorize(const http::Request& r, Action action, std::string_view what,
                                   http::Response* denial) {
  store::Store& db = backend_.store();
  auto deny = [&](int status, const char* code, const std::string& message,
                  const std::string& actor, std::optional<int64_t> org_id) {
    *denial = http::JsonError(status, code, message);
    (void)AppendAudit(db, {org_id, actor, std::string(what), r.path, "denied", message});
    return MakeError(ErrorCode::kAuth, message);
  };
  std::string header = r.Header("authorization");
  Result<Principal> principal = MakeError(ErrorCode::kAuth, "a bearer token is required");
  // RFC 9110 §11.1: the scheme is case-insensitive.
  std::string scheme = header.substr(0, header.find(' '));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (scheme == "bearer" && header.size() > 7) {
    principal = auth_.Authenticate(std::string_view(header).substr(7), NowUnix());
  } else if (scheme == "basic" && header.size() > 6) {
    // RFC 7617; EST clients (RFC 7030 §3.2.3) authenticate this way.
    auto decoded = Base64Decode(std::string_view(header).substr(6));
    std::string_view text = decoded ? AsString(*decoded) : std::string_view();
    size_t colon = text.find(':');
    principal = colon == std::string_view::npos
                    ? Result<Principal>(MakeError(ErrorCode::kAuth, "malformed basic credentials"))
                    : auth_.AuthenticatePassword(text.substr(0, colon), text.substr(colon + 1));
  }
  if (!principal.ok()) {
    if (principal.error().code != ErrorCode::kAuth) {
      *denial = ErrorResponse(principal.error());
      return principal.error();
    }
    auto e = deny(401, "unauthenticated", principal.error().message, "anonymous", {});
    denial->headers.push_back({"WWW-Authenticate", "Bearer, Basic realm=\"devid\""});
    return e;
  }
  Caller caller{std::move(principal).value(), std::nullopt};
  const Principal& p = caller.principal;
  if (r.params.count("org") != 0) {
    auto name = PathParam(r, "org");
    auto org = name.ok() ? db.GetOrganization(*name) : Result<store::Organization>(name.error());
    if (!org.ok() && org.error().code != ErrorCode::kNotFound) {
      *denial = ErrorResponse(org.error());
      return org.error();
    }
    // Another organization and one that does not exist look the same to an
    // organization's caller: nothing about other tenants leaks.
    if (p.org_id && (!org.ok() || org->id != *p.org_id)) {
      return deny(403, "forbidden", "not allowed in this organization", p.actor, p.org_id);
    }
    if (!org.ok()) return deny(404, "not_found", "no such organization", p.actor, p.org_id);
    caller.org = std::move(org).value();
  } else if (action != Action::kOrgCreate && action != Action::kOrgRead &&
             action != Action::kSession && p.org_id) {
    // Routes without an organization (the whole audit chain) are the system's.
    return deny(403, "forbidden", "only a system admin may do this", p.actor, p.org_id);
  }
  if (!RoleAllows(p.role, action)) {
    return deny(403, "forbidden", "role " + std::string(RoleName(p.role)) + " may not do this",
                p.actor, caller.org ? std::optional<int64_t>(caller.org->id) : p.org_id);
  }
  return caller;
}

Result<ca::CertificateProfile> Api::Profile(int64_t org_id, const std::string& name) {
  auto stored = backend_.store().GetTemplate(org_id, name);
  if (stored.ok()) return ca::CertificateProfile::FromJson(stored->json);
  if (stored.error().code != ErrorCode::kNotFound) return stored.error();
  auto builtin = backend_.hierarchy().FindProfile(name);
  if (!builtin.ok() && builtin.error().code == ErrorCode::kNotFound) {
    return MakeError(ErrorCode::kNotFound, "template '" + name + "' does not exist");
  }
  return builtin;
}

http::Handler Api::Guard(Action action, std::string name, Body body) {
  return [this, action, name = std::move(name), body = std::move(body)](const http::Request& r) {
    auto lock = backend_.Lock();
    http::Response denial;
    auto caller = Authorize(r, action, name, &denial);
    if (!caller.ok()) return denial;
    std::optional<int64_t> org_id =
        caller->org ? std::optional<int64_t>(caller->org->id) : caller->principal.org_id;
    std::string target;
    Result<http::Response> out = MakeError(ErrorCode::kInternal, "not run");
    // The operation and its audit record commit together: nothing is done
    // that the chain does not show (and one commit, not two).
    Status committed = backend_.store().Atomically([&]() -> Status {
      target.clear();
      out = body(r, *caller, target);
      if (!out.ok()) return out.error();
      return AppendAudit(backend_.store(), {org_id, caller->principal.actor, name,
                                            target.empty() ? r.path : target, "ok", ""})
                     .ok()
                 ? Status()
                 : Status(MakeError(ErrorCode::kStorage, "the audit record could not be written"));
    });
    if (!out.ok()) {
      // Rolled back; the failure is recorded on its own.
      (void)AppendAudit(backend_.store(),
                        {org_id, caller->principal.actor, name, target.empty() ? r.path : target,
                         "failed", out.error().message});
      return ErrorResponse(out.error());
    }
    // An operation that cannot be committed with its audit record is not done.
    if (!committed.ok()) return ErrorResponse(committed.error());
    return std::move(out).value();
  };
}

Status Api::CheckDeviceEnabled(int64_t org_id, const crypto::DistinguishedName& subject) {
  for (const crypto::NameAttribute& a : subject.attributes()) {
    if (a.type != "CN") continue;
    auto device = backend_.store().GetDevice(org_id, a.value);
    if (!device.ok()) {
      if (device.error().code == ErrorCode::kNotFound) continue;
      return device.error();
    }
    if (device->status == "disabled") {
      return MakeError(ErrorCode::kPolicy, "device '" + a.value + "' is disabled");
    }
  }
  return {};
}

Status Api::CheckEnrollment(const Caller& caller, const crypto::DistinguishedName& subject,
                            std::optional<ByteView> key_bits,
                            const ca::CertificateProfile& profile) {
  if (caller.principal.role != Role::kEnrollment) return {};
  const auto& eku = profile.extended_key_usage;
  if (profile.ca || eku.empty() || std::find(eku.begin(), eku.end(), "serverAuth") != eku.end()) {
    return MakeError(ErrorCode::kPolicy,
                     "an enrolment credential issues only under templates for "
                     "clients (clientAuth, no serverAuth, not a CA)");
  }
  for (const crypto::NameAttribute& a : subject.attributes()) {
    if (a.type != "CN") continue;
    store::CertificateFilter filter;
    filter.status = store::CertificateStatus::kValid;
    filter.common_name = a.value;
    DEVID_ASSIGN_OR_RETURN(auto found, backend_.store().ListCertificates(caller.org->id, filter));
    for (const store::CertificateRecord& record : found) {
      auto cert = crypto::Certificate::Parse(record.der);
      if (!cert.ok()) return cert.error();
      Bytes bits = cert->PublicKeyBits();
      if (!key_bits || !std::equal(bits.begin(), bits.end(), key_bits->begin(), key_bits->end())) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "device '" + a.value +
                             "' is enrolled with another key: it re-enrols with its certificate "
                             "(EST simplereenroll)");
      }
    }
  }
  return {};
}

void Api::Register(http::Router& router) {
  auto add = [this, &router](const char* method, const std::string& pattern, Action action,
                             std::string name, Body body) {
    router.Add(method, "/api/v1" + pattern, Guard(action, std::move(name), std::move(body)));
  };
  store::Store& db = backend_.store();
  ca::Hierarchy& hierarchy = backend_.hierarchy();

  router.Add("GET", "/api/v1/openapi.yaml", [this](const http::Request&) {
    return http::Response{200, "application/yaml", openapi_, {}};
  });

  // --- authentication -------------------------------------------------------
  router.Add("POST", "/api/v1/auth/login", [this, &db](const http::Request& r) {
    auto body = ParseBody(r);
    if (!body.ok()) return ErrorResponse(body.error());
    auto username = Field(*body, "username", 128);
    auto password = Field(*body, "password", kMaxPasswordLength);
    if (!username.ok()) return ErrorResponse(username.error());
    if (!password.ok()) return ErrorResponse(password.error());
    auto lock = backend_.Lock();
    auto session = auth_.Login(*username, *password);
    std::string actor = "user:" + (ValidName(*username, 128) ? *username : "(invalid name)");
    if (!session.ok()) {
      (void)AppendAudit(db, {{}, actor, "auth.login", actor, "denied", session.error().message});
      if (session.error().code == ErrorCode::kAuth) {
        return http::JsonError(401, "unauthenticated", session.error().message);
      }
      return ErrorResponse(session.error());
    }
    auto audited = AppendAudit(db, {session->record.org_id, actor, "auth.login", actor, "ok", ""});
    if (!audited.ok()) return ErrorResponse(audited.error());
    json out = {{"token", session->secret},
                {"role", session->record.role},
                {"expires_at", FormatUtc(session->record.expires_at.value_or(0))}};
    if (session->record.org_id) {
      auto orgs = db.ListOrganizations();
      if (orgs.ok()) {
        for (const auto& o : *orgs) {
          if (o.id == *session->record.org_id) out["org"] = o.name;
        }
      }
    }
    return Json(200, out);
  });
  add("POST", "/auth/logout", Action::kSession, "auth.logout",
      [&db](const http::Request&, Caller& c, std::string& target) -> Result<http::Response> {
        if (!c.principal.token_id) return BadInput("no token to end");
        target = "token:" + std::to_string(*c.principal.token_id);
        DEVID_TRY(db.RevokeToken(c.principal.org_id, *c.principal.token_id, NowUnix()));
        return Json(200, {{"status", "logged out"}});
      });

  // --- organizations ---------------------------------------------------------
  add("GET", "/orgs", Action::kOrgRead, "org.list",
      [&db](const http::Request&, Caller& c, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(auto orgs, db.ListOrganizations());
        json list = json::array();
        for (const auto& o : orgs) {
          if (c.principal.org_id && o.id != *c.principal.org_id) continue;
          list.push_back({{"name", o.name}, {"created_at", FormatUtc(o.created_at)}});
        }
        return Json(200, {{"organizations", list}});
      });
  add("POST", "/orgs", Action::kOrgCreate, "org.create",
      [&db](const http::Request& r, Caller&, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string name, NameField(body, "name"));
        target = "org:" + name;
        DEVID_ASSIGN_OR_RETURN(store::Organization org, db.CreateOrganization(name));
        return Json(201, {{"name", org.name}, {"created_at", FormatUtc(org.created_at)}});
      });
  add("GET", "/orgs/{org}", Action::kOrgRead, "org.get",
      [&db](const http::Request&, Caller& c, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(auto cas, db.ListCas(c.org->id));
        json names = json::array();
        for (const auto& ca : cas) names.push_back(ca.name);
        return Json(
            200,
            {{"name", c.org->name}, {"created_at", FormatUtc(c.org->created_at)}, {"cas", names}});
      });

  // --- users and tokens -------------------------------------------------------
  add("POST", "/orgs/{org}/users", Action::kUserManage, "user.create",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string username, NameField(body, "username"));
        DEVID_ASSIGN_OR_RETURN(std::string password, Field(body, "password", kMaxPasswordLength));
        target = "user:" + username;
        DEVID_ASSIGN_OR_RETURN(Role role, OrgRoleField(body));
        DEVID_ASSIGN_OR_RETURN(std::string hash, HashPassword(password));
        DEVID_ASSIGN_OR_RETURN(
            store::UserRecord user,
            db.CreateUser({username, hash, c.org->id, std::string(RoleName(role))}));
        return Json(201, UserJson(user));
      });
  add("GET", "/orgs/{org}/users", Action::kUserManage, "user.list",
      [&db](const http::Request&, Caller& c, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(auto users, db.ListUsers(c.org->id));
        json list = json::array();
        for (const auto& u : users) list.push_back(UserJson(u));
        return Json(200, {{"users", list}});
      });
  add("POST", "/orgs/{org}/users/{user}/disable", Action::kUserManage, "user.disable",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string name, PathParam(r, "user"));
        target = "user:" + name;
        DEVID_ASSIGN_OR_RETURN(auto users, db.ListUsers(c.org->id));
        for (const auto& u : users) {
          if (u.username != name) continue;
          DEVID_TRY(db.SetUserDisabled(c.org->id, u.id, true));
          store::UserRecord now = u;
          now.disabled = true;
          return Json(200, UserJson(now));
        }
        return MakeError(ErrorCode::kNotFound, "user '" + name + "' does not exist");
      });
  add("POST", "/orgs/{org}/tokens", Action::kTokenManage, "token.create",
      [this](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(Role role, OrgRoleField(body));
        DEVID_ASSIGN_OR_RETURN(std::string name, Field(body, "name", 128));
        DEVID_ASSIGN_OR_RETURN(auto days, IntField(body, "expires_in_days", 1, 3650));
        std::optional<int64_t> expires;
        if (days) expires = NowUnix() + *days * kSecondsPerDay;
        DEVID_ASSIGN_OR_RETURN(NewTokenSecret token,
                               auth_.CreateApiToken(c.org->id, role, name, expires));
        target = "token:" + std::to_string(token.record.id);
        json out = TokenJson(token.record);
        out["token"] = token.secret;  // shown once; only its hash is kept
        return Json(201, out);
      });
  add("GET", "/orgs/{org}/tokens", Action::kTokenManage, "token.list",
      [&db](const http::Request&, Caller& c, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(auto tokens, db.ListTokens(c.org->id));
        json list = json::array();
        for (const auto& t : tokens) list.push_back(TokenJson(t));
        return Json(200, {{"tokens", list}});
      });
  add("DELETE", "/orgs/{org}/tokens/{id}", Action::kTokenManage, "token.revoke",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string id_text, PathParam(r, "id"));
        target = "token:" + id_text;
        int64_t id = 0;
        auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
        if (ec != std::errc() || end != id_text.data() + id_text.size()) {
          return MakeError(ErrorCode::kNotFound, "no such token");
        }
        DEVID_TRY(db.RevokeToken(c.org->id, id, NowUnix()));
        return Json(200, {{"id", id}, {"revoked", true}});
      });

  // --- CAs ---------------------------------------------------------------------
  add("GET", "/orgs/{org}/cas", Action::kCaRead, "ca.list",
      [&db](const http::Request&, Caller& c, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(auto cas, db.ListCas(c.org->id));
        json list = json::array();
        for (const auto& ca : cas) list.push_back(CaJson(ca, cas));
        return Json(200, {{"cas", list}});
      });
  add("GET", "/orgs/{org}/cas/{ca}", Action::kCaRead, "ca.get",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string name, PathParam(r, "ca"));
        target = "ca:" + name;
        DEVID_ASSIGN_OR_RETURN(auto cas, db.ListCas(c.org->id));
        for (const auto& ca : cas) {
          if (ca.name == name) return Json(200, CaJson(ca, cas));
        }
        return MakeError(ErrorCode::kNotFound, "CA '" + name + "' does not exist");
      });
  add("GET", "/orgs/{org}/cas/{ca}/chain", Action::kCaRead, "ca.chain",
      [&hierarchy](const http::Request& r, Caller& c,
                   std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string name, PathParam(r, "ca"));
        target = "ca:" + name;
        DEVID_ASSIGN_OR_RETURN(std::string pem, ChainPem(hierarchy, c.org->name, name));
        return http::Response{200, "application/pem-certificate-chain", pem, {}};
      });
  add("POST", "/orgs/{org}/cas", Action::kCaManage, "ca.create",
      [this, &hierarchy](const http::Request& r, Caller& c,
                         std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string name, NameField(body, "name"));
        DEVID_ASSIGN_OR_RETURN(std::string kind, Field(body, "kind", 8, false));
        DEVID_ASSIGN_OR_RETURN(std::string subject, Field(body, "subject", 1024));
        DEVID_ASSIGN_OR_RETURN(std::string key_type, Field(body, "key_type", 16, false));
        DEVID_ASSIGN_OR_RETURN(auto days, IntField(body, "days", 1, 36500));
        target = "ca:" + name;
        ca::CaOptions options;
        options.subject = subject;
        if (!key_type.empty()) {
          DEVID_ASSIGN_OR_RETURN(options.key_type, crypto::ParseKeyType(key_type));
        }
        if (days) options.days = static_cast<int>(*days);
        options.crl_url = public_url_ + "/crl/{org}/{ca}.crl";
        options.ocsp_url = public_url_ + "/ocsp/{org}/{ca}";
        store::CaRecord record;
        if (kind == "root") {
          if (name != ca::kRootCaName) return BadInput("the root CA is named 'root'");
          DEVID_ASSIGN_OR_RETURN(record, hierarchy.InitRoot(c.org->name, options));
        } else if (kind.empty() || kind == "ica") {
          DEVID_ASSIGN_OR_RETURN(record, hierarchy.InitIssuing(c.org->name, name, options));
        } else {
          return BadInput("kind must be 'root' or 'ica'");
        }
        DEVID_ASSIGN_OR_RETURN(auto cas, backend_.store().ListCas(c.org->id));
        return Json(201, CaJson(record, cas));
      });
  // An issuing CA signed by an external CA: its chain and private key.
  add("POST", "/orgs/{org}/cas/import", Action::kCaManage, "ca.import",
      [this, &hierarchy](const http::Request& r, Caller& c,
                         std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string name, NameField(body, "name"));
        DEVID_ASSIGN_OR_RETURN(std::string chain_pem, Field(body, "certificate_chain", 256 * 1024));
        DEVID_ASSIGN_OR_RETURN(std::string key_pem, Field(body, "key", 64 * 1024));
        DEVID_ASSIGN_OR_RETURN(std::string key_passphrase,
                               Field(body, "key_passphrase", 1024, false));
        target = "ca:" + name;
        DEVID_ASSIGN_OR_RETURN(auto chain, crypto::Certificate::ParsePemChain(AsBytes(chain_pem)));
        SecretString passphrase(key_passphrase);
        SecureZero(key_passphrase.data(), key_passphrase.size());
        auto key = crypto::PrivateKey::FromPem(key_pem,
                                               passphrase.reveal().empty() ? nullptr : &passphrase);
        SecureZero(key_pem.data(), key_pem.size());
        if (!key.ok()) {
          return MakeError(ErrorCode::kInvalidInput,
                           "the key is not a PKCS#8 private key (or its passphrase is wrong)");
        }
        ca::CaOptions options;
        options.crl_url = public_url_ + "/crl/{org}/{ca}.crl";
        options.ocsp_url = public_url_ + "/ocsp/{org}/{ca}";
        DEVID_ASSIGN_OR_RETURN(store::CaRecord record,
                               hierarchy.ImportIssuing(c.org->name, name, chain, *key, options));
        DEVID_ASSIGN_OR_RETURN(auto cas, backend_.store().ListCas(c.org->id));
        return Json(201, CaJson(record, cas));
      });
  add("POST", "/orgs/{org}/cas/{ca}/disable", Action::kCaManage, "ca.disable",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string name, PathParam(r, "ca"));
        target = "ca:" + name;
        DEVID_ASSIGN_OR_RETURN(store::CaRecord ca, db.GetCa(c.org->id, name));
        DEVID_TRY(db.SetCaDisabled(c.org->id, ca.id, true));
        return Json(200, {{"name", name}, {"disabled", true}});
      });

  // --- templates ---------------------------------------------------------------
  add("GET", "/orgs/{org}/templates", Action::kTemplateRead, "template.list",
      [&db](const http::Request&, Caller& c, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(auto stored, db.ListTemplates(c.org->id));
        json list = json::array();
        for (const auto& name : ca::BuiltinProfileNames()) {
          list.push_back({{"name", name}, {"builtin", true}});
        }
        for (const auto& t : stored) {
          list.push_back(
              {{"name", t.name}, {"builtin", false}, {"updated_at", FormatUtc(t.updated_at)}});
        }
        return Json(200, {{"templates", list}});
      });
  add("GET", "/orgs/{org}/templates/{name}", Action::kTemplateRead, "template.get",
      [this](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string name, PathParam(r, "name"));
        target = "template:" + name;
        DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile, Profile(c.org->id, name));
        return http::Response{200, "application/json", profile.ToJson(), {}};
      });
  auto put_template = [&db](bool create) {
    return [&db, create](const http::Request& r, Caller& c,
                         std::string& target) -> Result<http::Response> {
      DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
      DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile,
                             ca::CertificateProfile::FromJson(Dump(body)));
      target = "template:" + profile.name;
      if (!create) {
        DEVID_ASSIGN_OR_RETURN(std::string name, PathParam(r, "name"));
        if (name != profile.name) return BadInput("the template's name must match the URL");
      }
      for (const auto& builtin : ca::BuiltinProfileNames()) {
        if (builtin == profile.name) {
          return MakeError(ErrorCode::kAlreadyExists,
                           "'" + profile.name + "' is a built-in template");
        }
      }
      if (profile.ca) return BadInput("CA templates are not kept per organization");
      std::string canonical = profile.ToJson();
      if (create) {
        DEVID_TRY(db.CreateTemplate(c.org->id, profile.name, canonical));
      } else {
        DEVID_TRY(db.UpdateTemplate(c.org->id, profile.name, canonical));
      }
      return http::Response{create ? 201 : 200, "application/json", canonical, {}};
    };
  };
  add("POST", "/orgs/{org}/templates", Action::kTemplateManage, "template.create",
      put_template(true));
  add("PUT", "/orgs/{org}/templates/{name}", Action::kTemplateManage, "template.update",
      put_template(false));
  add("DELETE", "/orgs/{org}/templates/{name}", Action::kTemplateManage, "template.delete",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string name, PathParam(r, "name"));
        target = "template:" + name;
        DEVID_TRY(db.DeleteTemplate(c.org->id, name));
        return Json(200, {{"name", name}, {"deleted", true}});
      });

  // --- certificates ------------------------------------------------------------
  add("POST", "/orgs/{org}/certificates", Action::kCertificateIssue, "certificate.issue",
      [this](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string ca_name, NameField(body, "ca"));
        DEVID_ASSIGN_OR_RETURN(std::string template_name, NameField(body, "template"));
        DEVID_ASSIGN_OR_RETURN(std::string csr_pem, Field(body, "csr", 64 * 1024));
        DEVID_ASSIGN_OR_RETURN(auto days, IntField(body, "days", 1, 36500));
        DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr,
                               crypto::CertificateRequest::Parse(AsBytes(csr_pem)));
        DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, csr.subject());
        if (Status enabled = CheckDeviceEnabled(c.org->id, subject); !enabled.ok()) {
          // A request that is broken anyway is reported as that first.
          DEVID_TRY(csr.VerifyProofOfPossession());
          return enabled.error();
        }
        DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile, Profile(c.org->id, template_name));
        DEVID_ASSIGN_OR_RETURN(ca::SigningCa * ca, backend_.Ca(c.org->name, ca_name, true));
        DEVID_TRY(CheckEnrollment(c, subject, csr.public_key().key_bits(), profile));
        ca::IssueOptions options;
        if (days) options.days = static_cast<int>(*days);
        DEVID_ASSIGN_OR_RETURN(ca::IssuedCertificate issued, ca->Issue(profile, csr, options));
        target = "certificate:" + issued.record.serial_hex;
        if (backend_.metrics() != nullptr) {
          backend_.metrics()->Increment("devid_certificates_issued_total");
        }
        return Json(201, CertificateJson(issued.record, ca_name, true));
      });
  add("GET", "/orgs/{org}/certificates", Action::kCertificateRead, "certificate.search",
      [&db](const http::Request& r, Caller& c, std::string&) -> Result<http::Response> {
        store::CertificateFilter f;
        DEVID_ASSIGN_OR_RETURN(auto cas, db.ListCas(c.org->id));
        for (const auto& [key, value] : r.query) {
          if (key == "status") {
            if (value == "valid") {
              f.status = store::CertificateStatus::kValid;
            } else if (value == "revoked") {
              f.status = store::CertificateStatus::kRevoked;
            } else if (value == "expired") {
              f.status = store::CertificateStatus::kExpired;
            } else if (value != "any") {
              return BadInput("status must be valid, revoked, expired or any");
            }
          } else if (key == "expires_before") {
            DEVID_ASSIGN_OR_RETURN(f.expires_before, ParseTime(value, "expires_before"));
          } else if (key == "expires_after") {
            DEVID_ASSIGN_OR_RETURN(f.expires_after, ParseTime(value, "expires_after"));
          } else if (key == "template") {
            f.template_name = value;
          } else if (key == "subject") {
            if (value.size() > 256) return BadInput("subject filter too long");
            f.subject_contains = value;
          } else if (key == "serial") {
            if (value.size() > 64) return BadInput("serial too long");
            auto normalized = ca::NormalizeSerial(value);
            f.serial_hex = normalized.ok() ? *normalized : "-";
          } else if (key == "ca") {
            int64_t id = -1;
            for (const auto& ca : cas) {
              if (ca.name == value) id = ca.id;
            }
            f.ca_id = id;
          } else if (key == "limit" || key == "after") {
            int64_t n = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || end != value.data() + value.size() || n < 0) {
              return BadInput(key + " must be a non-negative integer");
            }
            if (key == "limit") {
              f.limit = static_cast<size_t>(std::clamp<int64_t>(n, 1, 1000));
            } else {
              f.after_id = n;
            }
          } else {
            return BadInput("unknown query parameter '" + key + "'");
          }
        }
        if (f.limit == 1000 && r.query.count("limit") == 0) f.limit = 100;
        DEVID_ASSIGN_OR_RETURN(auto found, db.ListCertificates(c.org->id, f));
        json list = json::array();
        for (const auto& cert : found) {
          list.push_back(CertificateJson(cert, CaNameOf(cas, cert.ca_id), false));
        }
        json out = {{"certificates", list}};
        if (found.size() == f.limit) out["next_after"] = found.back().id;
        return Json(200, out);
      });
  // The one certificate a serial names (with ?ca= when two CAs share it).
  auto find_one = [&db](const http::Request& r, Caller& c,
                        std::vector<store::CaRecord>& cas) -> Result<store::CertificateRecord> {
    DEVID_ASSIGN_OR_RETURN(std::string serial_text, PathParam(r, "serial"));
    auto normalized = ca::NormalizeSerial(serial_text);
    if (!normalized.ok()) return MakeError(ErrorCode::kNotFound, "no such certificate");
    const std::string& hex = *normalized;
    DEVID_ASSIGN_OR_RETURN(cas, db.ListCas(c.org->id));
    DEVID_ASSIGN_OR_RETURN(auto found, db.FindCertificatesBySerial(c.org->id, hex));
    auto want = r.query.find("ca");
    std::vector<store::CertificateRecord> matching;
    for (auto& rec : found) {
      if (want == r.query.end() || CaNameOf(cas, rec.ca_id) == want->second) {
        matching.push_back(std::move(rec));
      }
    }
    if (matching.empty()) return MakeError(ErrorCode::kNotFound, "no such certificate");
    if (matching.size() > 1) {
      return MakeError(ErrorCode::kAlreadyExists, "two CAs issued this serial: add ?ca=NAME");
    }
    return std::move(matching.front());
  };
  add("GET", "/orgs/{org}/certificates/{serial}", Action::kCertificateRead, "certificate.get",
      [find_one](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        std::vector<store::CaRecord> cas;
        DEVID_ASSIGN_OR_RETURN(store::CertificateRecord cert, find_one(r, c, cas));
        target = "certificate:" + cert.serial_hex;
        return Json(200, CertificateJson(cert, CaNameOf(cas, cert.ca_id), true));
      });
  add("POST", "/orgs/{org}/certificates/{serial}/revoke", Action::kCertificateManage,
      "certificate.revoke",
      [this, find_one, &hierarchy](const http::Request& r, Caller& c,
                                   std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string reason_name, Field(body, "reason", 64, false));
        std::vector<store::CaRecord> cas;
        DEVID_ASSIGN_OR_RETURN(store::CertificateRecord cert, find_one(r, c, cas));
        target = "certificate:" + cert.serial_hex;
        crypto::RevocationReason reason = crypto::RevocationReason::kUnspecified;
        if (!reason_name.empty()) {
          DEVID_ASSIGN_OR_RETURN(reason, crypto::ParseRevocationReason(reason_name));
        }
        DEVID_ASSIGN_OR_RETURN(
            store::CertificateRecord revoked,
            hierarchy.Revoke(c.org->name, cert.serial_hex, reason, CaNameOf(cas, cert.ca_id)));
        backend_.NoteRevocation();
        if (backend_.metrics() != nullptr) {
          backend_.metrics()->Increment("devid_certificates_revoked_total");
        }
        return Json(200, CertificateJson(revoked, CaNameOf(cas, cert.ca_id), false));
      });
  add("POST", "/orgs/{org}/certificates/{serial}/renew", Action::kCertificateManage,
      "certificate.renew",
      [this, find_one](const http::Request& r, Caller& c,
                       std::string& target) -> Result<http::Response> {
        json body = json::object();
        if (!r.body.empty()) {
          DEVID_ASSIGN_OR_RETURN(body, ParseBody(r));
        }
        DEVID_ASSIGN_OR_RETURN(auto days, IntField(body, "days", 1, 36500));
        std::vector<store::CaRecord> cas;
        DEVID_ASSIGN_OR_RETURN(store::CertificateRecord cert, find_one(r, c, cas));
        target = "certificate:" + cert.serial_hex;
        if (cert.revocation) return MakeError(ErrorCode::kPolicy, "a revoked certificate");
        DEVID_ASSIGN_OR_RETURN(crypto::Certificate current, crypto::Certificate::Parse(cert.der));
        DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName current_subject, current.subject());
        DEVID_TRY(CheckDeviceEnabled(c.org->id, current_subject));
        DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile,
                               Profile(c.org->id, cert.template_name));
        std::string ca_name = CaNameOf(cas, cert.ca_id);
        DEVID_ASSIGN_OR_RETURN(ca::SigningCa * ca, backend_.Ca(c.org->name, ca_name, true));
        ca::IssueOptions options;
        if (days) options.days = static_cast<int>(*days);
        DEVID_ASSIGN_OR_RETURN(ca::IssuedCertificate issued, ca->Renew(profile, current, options));
        target += " -> " + issued.record.serial_hex;
        if (backend_.metrics() != nullptr) {
          backend_.metrics()->Increment("devid_certificates_issued_total");
        }
        return Json(201, CertificateJson(issued.record, ca_name, true));
      });
  add("POST", "/orgs/{org}/certificates/{serial}/rekey", Action::kCertificateManage,
      "certificate.rekey",
      [this, find_one, &hierarchy](const http::Request& r, Caller& c,
                                   std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string csr_pem, Field(body, "csr", 64 * 1024));
        auto revoke_flag = body.find("revoke_old");
        if (revoke_flag != body.end() && !revoke_flag->is_boolean()) {
          return BadInput("field 'revoke_old' must be true or false");
        }
        bool revoke_old = revoke_flag != body.end() && revoke_flag->get<bool>();
        std::vector<store::CaRecord> cas;
        DEVID_ASSIGN_OR_RETURN(store::CertificateRecord cert, find_one(r, c, cas));
        target = "certificate:" + cert.serial_hex;
        if (cert.revocation) return MakeError(ErrorCode::kPolicy, "a revoked certificate");
        DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr,
                               crypto::CertificateRequest::Parse(AsBytes(csr_pem)));
        DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, csr.subject());
        if (subject.ToString() != cert.subject) {
          return MakeError(ErrorCode::kPolicy, "a re-key keeps the subject: the request names '" +
                                                   subject.ToString() + "'");
        }
        DEVID_TRY(CheckDeviceEnabled(c.org->id, subject));
        DEVID_ASSIGN_OR_RETURN(crypto::Certificate current, crypto::Certificate::Parse(cert.der));
        DEVID_ASSIGN_OR_RETURN(crypto::PublicKey old_key, current.public_key());
        DEVID_ASSIGN_OR_RETURN(Bytes old_spki, old_key.ToDer());
        DEVID_ASSIGN_OR_RETURN(Bytes new_spki, csr.public_key().ToDer());
        if (old_spki == new_spki) return MakeError(ErrorCode::kPolicy, "a re-key needs a new key");
        DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile,
                               Profile(c.org->id, cert.template_name));
        std::string ca_name = CaNameOf(cas, cert.ca_id);
        DEVID_ASSIGN_OR_RETURN(ca::SigningCa * ca, backend_.Ca(c.org->name, ca_name, true));
        DEVID_ASSIGN_OR_RETURN(ca::IssuedCertificate issued, ca->Issue(profile, csr));
        target += " -> " + issued.record.serial_hex;
        if (revoke_old) {
          DEVID_TRY(hierarchy.Revoke(c.org->name, cert.serial_hex,
                                     crypto::RevocationReason::kSuperseded, ca_name));
          backend_.NoteRevocation();
        }
        return Json(201, CertificateJson(issued.record, ca_name, true));
      });

  // Batch issuance: keys made here, certificates committed in one transaction,
  // returned only inside an encrypted bundle (PKCS#12 or CMS EnvelopedData).
  add("POST", "/orgs/{org}/batches", Action::kCertificateManage, "certificate.batch",
      [this, &hierarchy](const http::Request& r, Caller& c,
                         std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string ca_name, NameField(body, "ca"));
        DEVID_ASSIGN_OR_RETURN(std::string template_name, NameField(body, "template"));
        DEVID_ASSIGN_OR_RETURN(std::string subject_pattern, Field(body, "subject", 1024));
        DEVID_ASSIGN_OR_RETURN(auto count, IntField(body, "count", 1, kMaxBatch));
        DEVID_ASSIGN_OR_RETURN(auto start, IntField(body, "start", 0, 1'000'000'000));
        DEVID_ASSIGN_OR_RETURN(auto days, IntField(body, "days", 1, 36500));
        DEVID_ASSIGN_OR_RETURN(std::string format, Field(body, "format", 16));
        DEVID_ASSIGN_OR_RETURN(std::string key_type_name, Field(body, "key_type", 16, false));
        if (!count) return BadInput("field 'count' is required");
        if (subject_pattern.find("{n}") == std::string::npos && *count > 1) {
          return BadInput("the subject must contain {n} so that each identity differs");
        }
        std::optional<SecretString> password;
        std::vector<crypto::Certificate> recipients;
        if (format == "pkcs12") {
          DEVID_ASSIGN_OR_RETURN(std::string p, Field(body, "password", kMaxPasswordLength));
          if (p.size() < kMinPasswordLength) {
            return BadInput("the bundle password has at least " +
                            std::to_string(kMinPasswordLength) + " characters");
          }
          password = SecretString(p);
          SecureZero(p.data(), p.size());
        } else if (format == "cms") {
          DEVID_ASSIGN_OR_RETURN(std::string pem, Field(body, "recipient", 64 * 1024));
          DEVID_ASSIGN_OR_RETURN(recipients, crypto::Certificate::ParsePemChain(AsBytes(pem)));
          // The first certificate is the recipient's.
          recipients.erase(recipients.begin() + 1, recipients.end());
        } else {
          return BadInput("format must be 'pkcs12' or 'cms'");
        }
        DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile, Profile(c.org->id, template_name));
        crypto::KeyType key_type =
            profile.key_types.empty() ? crypto::KeyType::kEcP256 : profile.key_types.front();
        if (!key_type_name.empty()) {
          DEVID_ASSIGN_OR_RETURN(key_type, crypto::ParseKeyType(key_type_name));
        }
        DEVID_ASSIGN_OR_RETURN(ca::SigningCa * ca, backend_.Ca(c.org->name, ca_name, true));
        std::vector<crypto::PrivateKey> keys;
        std::vector<ca::SigningCa::BatchItem> items;
        keys.reserve(static_cast<size_t>(*count));
        for (int64_t i = 0; i < *count; ++i) {
          std::string subject_text = subject_pattern;
          std::string n = std::to_string(start.value_or(1) + i);
          for (size_t at; (at = subject_text.find("{n}")) != std::string::npos;) {
            subject_text.replace(at, 3, n);
          }
          DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject,
                                 crypto::DistinguishedName::Parse(subject_text));
          DEVID_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::Generate(key_type));
          keys.push_back(std::move(key));
          items.push_back({nullptr, std::move(subject), {}});
        }
        for (size_t i = 0; i < keys.size(); ++i) items[i].key = &keys[i];
        ca::IssueOptions options;
        if (days) options.days = static_cast<int>(*days);
        DEVID_ASSIGN_OR_RETURN(std::vector<crypto::Certificate> certs,
                               ca->IssueBatch(profile, items, options));
        target = "batch:" + std::to_string(certs.size()) + " from " + certs.front().SerialHex();
        if (backend_.metrics() != nullptr) {
          backend_.metrics()->Increment("devid_certificates_issued_total", "",
                                        static_cast<double>(certs.size()));
        }
        DEVID_ASSIGN_OR_RETURN(auto chain, hierarchy.Chain(c.org->name, ca_name));
        Bytes bundle;
        if (password) {
          std::vector<crypto::Pkcs12Entry> entries;
          for (size_t i = 0; i < certs.size(); ++i) {
            entries.push_back({&keys[i], &certs[i], certs[i].SerialHex()});
          }
          DEVID_ASSIGN_OR_RETURN(bundle, crypto::MakePkcs12(entries, chain, *password));
        } else {
          // PEM inside the envelope: each key (PKCS#8) before its certificate, then the chain.
          WipingString text;
          for (size_t i = 0; i < certs.size(); ++i) {
            DEVID_ASSIGN_OR_RETURN(std::string key_pem, keys[i].ToPkcs8Pem(nullptr));
            text.append(key_pem.data(), key_pem.size());
            SecureZero(key_pem.data(), key_pem.size());
            DEVID_ASSIGN_OR_RETURN(std::string cert_pem, certs[i].ToPem());
            text.append(cert_pem.data(), cert_pem.size());
          }
          for (const auto& cert : chain) {
            DEVID_ASSIGN_OR_RETURN(std::string pem, cert.ToPem());
            text.append(pem.data(), pem.size());
          }
          DEVID_ASSIGN_OR_RETURN(
              bundle, crypto::MakeEnvelope(recipients, AsBytes({text.data(), text.size()})));
        }
        json serials = json::array();
        for (const auto& cert : certs) serials.push_back(cert.SerialHex());
        return Json(201, {{"count", certs.size()},
                          {"format", format},
                          {"serials", serials},
                          {"bundle", Base64Encode(bundle)}});
      });

  // Figure 2, keys made on the chip: the chips' CSRs signed as one batch, in one
  // transaction (all or none), answered in request order.
  add("POST", "/orgs/{org}/batches/csrs", Action::kCertificateManage, "certificate.batch_csrs",
      [this, &hierarchy](const http::Request& r, Caller& c,
                         std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string ca_name, NameField(body, "ca"));
        DEVID_ASSIGN_OR_RETURN(std::string template_name, NameField(body, "template"));
        DEVID_ASSIGN_OR_RETURN(auto days, IntField(body, "days", 1, 36500));
        auto list = body.find("csrs");
        if (list == body.end() || !list->is_array() || list->empty()) {
          return BadInput("field 'csrs' must be a non-empty array of PEM requests");
        }
        if (list->size() > static_cast<size_t>(kMaxBatch)) {
          return BadInput("at most " + std::to_string(kMaxBatch) + " requests in one batch");
        }
        std::vector<crypto::CertificateRequest> csrs;
        csrs.reserve(list->size());
        for (size_t i = 0; i < list->size(); ++i) {
          const json& item = (*list)[i];
          if (!item.is_string()) return BadInput("csrs[" + std::to_string(i) + "] is not a string");
          auto csr = crypto::CertificateRequest::Parse(AsBytes(item.get_ref<const std::string&>()));
          if (!csr.ok()) return csr.error().Context("csrs[" + std::to_string(i) + "]");
          DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, csr->subject());
          DEVID_TRY(CheckDeviceEnabled(c.org->id, subject));
          csrs.push_back(std::move(*csr));
        }
        DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile, Profile(c.org->id, template_name));
        DEVID_ASSIGN_OR_RETURN(ca::SigningCa * ca, backend_.Ca(c.org->name, ca_name, true));
        ca::IssueOptions options;
        if (days) options.days = static_cast<int>(*days);
        json issued = json::array();
        for (size_t i = 0; i < csrs.size(); ++i) {
          auto one = ca->Issue(profile, csrs[i], options);
          if (!one.ok()) return one.error().Context("csrs[" + std::to_string(i) + "]");
          issued.push_back(CertificateJson(one->record, ca_name, true));
        }
        target = "batch:" + std::to_string(issued.size()) + " from " +
                 issued.front()["serial"].get<std::string>();
        if (backend_.metrics() != nullptr) {
          backend_.metrics()->Increment("devid_certificates_issued_total", "",
                                        static_cast<double>(issued.size()));
        }
        DEVID_ASSIGN_OR_RETURN(std::string chain, ChainPem(hierarchy, c.org->name, ca_name));
        return Json(201, {{"count", issued.size()}, {"certificates", issued}, {"chain", chain}});
      });

  // --- devices -----------------------------------------------------------------
  add("GET", "/orgs/{org}/devices", Action::kDeviceRead, "device.list",
      [&db](const http::Request&, Caller& c, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(auto devices, db.ListDevices(c.org->id));
        json list = json::array();
        for (const auto& d : devices) list.push_back(DeviceJson(d));
        return Json(200, {{"devices", list}});
      });
  add("POST", "/orgs/{org}/devices", Action::kDeviceManage, "device.create",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string id, NameField(body, "identifier"));
        target = "device:" + id;
        DEVID_ASSIGN_OR_RETURN(store::DeviceRecord d, db.CreateDevice(c.org->id, id));
        return Json(201, DeviceJson(d));
      });
  add("GET", "/orgs/{org}/devices/{device}", Action::kDeviceRead, "device.get",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string id, PathParam(r, "device"));
        target = "device:" + id;
        DEVID_ASSIGN_OR_RETURN(store::DeviceRecord d, db.GetDevice(c.org->id, id));
        json out = DeviceJson(d);
        // Its certificates: those whose subject's (first) CN is its identifier.
        store::CertificateFilter f;
        f.common_name = id;
        DEVID_ASSIGN_OR_RETURN(auto cas, db.ListCas(c.org->id));
        DEVID_ASSIGN_OR_RETURN(auto certs, db.ListCertificates(c.org->id, f));
        json list = json::array();
        for (const auto& cert : certs) {
          list.push_back(CertificateJson(cert, CaNameOf(cas, cert.ca_id), false));
        }
        out["certificates"] = list;
        return Json(200, out);
      });
  add("PATCH", "/orgs/{org}/devices/{device}", Action::kDeviceManage, "device.update",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string id, PathParam(r, "device"));
        target = "device:" + id;
        DEVID_ASSIGN_OR_RETURN(json body, ParseBody(r));
        DEVID_ASSIGN_OR_RETURN(std::string status, Field(body, "status", 16));
        if (status != "active" && status != "disabled") {
          return BadInput("status must be 'active' or 'disabled'");
        }
        DEVID_TRY(db.SetDeviceStatus(c.org->id, id, status));
        DEVID_ASSIGN_OR_RETURN(store::DeviceRecord d, db.GetDevice(c.org->id, id));
        return Json(200, DeviceJson(d));
      });

  // Just-in-time registration (the hub): a device's accepted connection. The
  // device is created on first sight; its status is answered so that the
  // caller can refuse a disabled one.
  add("POST", "/orgs/{org}/devices/{device}/connections", Action::kDeviceManage,
      "device.connection",
      [&db](const http::Request& r, Caller& c, std::string& target) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(std::string id, PathParam(r, "device"));
        if (!ValidName(id)) {
          return BadInput("a device identifier is 1-64 characters of A-Z a-z 0-9 . _ - @");
        }
        target = "device:" + id;
        DEVID_ASSIGN_OR_RETURN(store::DeviceRecord d, db.TouchDevice(c.org->id, id, NowUnix()));
        return Json(200, DeviceJson(d));
      });

  // --- audit ---------------------------------------------------------------------
  auto list_audit = [&db](const http::Request& r, std::optional<int64_t> org_id) -> Result<json> {
    int64_t after = 0;
    int64_t limit = 100;
    for (const auto& [key, value] : r.query) {
      int64_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n < 0) {
        return BadInput(key + " must be a non-negative integer");
      }
      if (key == "after") {
        after = n;
      } else if (key == "limit") {
        limit = std::clamp<int64_t>(n, 1, 1000);
      } else {
        return BadInput("unknown query parameter '" + key + "'");
      }
    }
    DEVID_ASSIGN_OR_RETURN(auto records, db.ListAudit(org_id, after, static_cast<size_t>(limit)));
    json list = json::array();
    for (const auto& rec : records) list.push_back(AuditJson(rec));
    json out = {{"records", list}};
    if (static_cast<int64_t>(records.size()) == limit) out["next_after"] = records.back().seq;
    return out;
  };
  auto verify = [&db](const http::Request&, Caller& c, std::string&) -> Result<http::Response> {
    DEVID_ASSIGN_OR_RETURN(AuditVerification v, VerifyAuditChain(db));
    json out = {{"ok", v.ok}};
    // The chain is shared by every organization: only a system admin sees
    // its length and where it breaks.
    if (c.principal.org_id) return Json(200, out);
    out["records"] = v.records;
    if (!v.ok) {
      out["first_broken_seq"] = *v.first_broken_seq;
      out["problem"] = v.problem;
    }
    return Json(200, out);
  };
  add("GET", "/orgs/{org}/audit", Action::kAuditRead, "audit.list",
      [list_audit](const http::Request& r, Caller& c, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json out, list_audit(r, c.org->id));
        return Json(200, out);
      });
  add("GET", "/orgs/{org}/audit/verify", Action::kAuditRead, "audit.verify", verify);
  add("GET", "/audit", Action::kAuditRead, "audit.list",
      [list_audit](const http::Request& r, Caller&, std::string&) -> Result<http::Response> {
        DEVID_ASSIGN_OR_RETURN(json out, list_audit(r, std::nullopt));
        return Json(200, out);
      });
  add("GET", "/audit/verify", Action::kAuditRead, "audit.verify", verify);
}

}  // namespace devid::cms
