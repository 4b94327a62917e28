// Who is asking: roles (DESIGN §6), password login to a short-lived session
// token, API tokens. Tokens are random secrets shown once; the store keeps
// only their SHA-256, so a copy of the database lets no one in.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"
#include "store/store.h"

namespace devid::cms {

enum class Role { kSystemAdmin, kOrgAdmin, kOperator, kAuditor, kEnrollment };

// "system-admin", "org-admin", "operator", "auditor", "enrollment".
std::string_view RoleName(Role role);
std::optional<Role> ParseRole(std::string_view name);

// The caller of a request, as its credentials say.
struct Principal {
  std::string actor;  // "user:alice" or "token:12"; what the audit log records
  Role role = Role::kAuditor;
  std::optional<int64_t> org_id;  // none: a system admin, who reaches every organization
  std::optional<int64_t> user_id;
  std::optional<int64_t> token_id;
};

struct NewTokenSecret {
  std::string secret;  // shown to the caller once
  store::TokenRecord record;
};

class Authenticator {
 public:
  explicit Authenticator(store::Store& store,
                         std::chrono::seconds session_lifetime = std::chrono::minutes(15))
      : store_(store), session_lifetime_(session_lifetime) {}

  // kAuth with one message for every failure: unknown user, wrong password,
  // disabled user (no account enumeration; an unknown name costs a hash too).
  Result<NewTokenSecret> Login(std::string_view username, std::string_view password);
  // HTTP basic authentication (EST clients): the user's principal without a
  // session. The same single kAuth answer as Login for every failure.
  Result<Principal> AuthenticatePassword(std::string_view username, std::string_view password);
  // The principal a bearer token stands for; kAuth when it is unknown,
  // expired or revoked, or its user was disabled.
  Result<Principal> Authenticate(std::string_view bearer_token, int64_t now);
  // An API token for an organization and role.
  Result<NewTokenSecret> CreateApiToken(int64_t org_id, Role role, const std::string& name,
                                        std::optional<int64_t> expires_at);

  static Bytes HashSecret(std::string_view secret);

 private:
  Result<std::string> NewSecret();
  Result<store::UserRecord> CheckPassword(std::string_view username, std::string_view password);

  store::Store& store_;
  std::chrono::seconds session_lifetime_;
};

// `devid admin bootstrap`: the first system admin, only while there is none;
// audited. kAlreadyExists once a system admin exists.
Result<store::UserRecord> BootstrapSystemAdmin(store::Store& store, const std::string& username,
                                               std::string_view password);

}  // namespace devid::cms
