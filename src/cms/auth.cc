#include "cms/auth.h"

#include <array>

#include "cms/audit.h"
#include "cms/password.h"
#include "core/bytes.h"
#include "core/time.h"
#include "crypto/key.h"

namespace devid::cms {

namespace {

constexpr std::array<std::pair<Role, std::string_view>, 5> kRoles = {{
    {Role::kSystemAdmin, "system-admin"},
    {Role::kOrgAdmin, "org-admin"},
    {Role::kOperator, "operator"},
    {Role::kAuditor, "auditor"},
    {Role::kEnrollment, "enrollment"},
}};

constexpr std::string_view kTokenPrefix = "devid_";

Error Denied() { return MakeError(ErrorCode::kAuth, "invalid username or password"); }

}  // namespace

std::string_view RoleName(Role role) {
  for (const auto& [r, name] : kRoles) {
    if (r == role) return name;
  }
  return "unknown";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (const auto& [r, n] : kRoles) {
    if (n == name) return r;
  }
  return std::nullopt;
}

Bytes Authenticator::HashSecret(std::string_view secret) { return crypto::Sha256(AsBytes(secret)); }

Result<std::string> Authenticator::NewSecret() {
  DEVID_ASSIGN_OR_RETURN(Bytes random, crypto::RandomBytes(32));
  std::string secret(kTokenPrefix);
  HexEncodeTo(random, secret);
  return secret;
}

Result<store::UserRecord> Authenticator::CheckPassword(std::string_view username,
                                                       std::string_view password) {
  // A hash to check against when the user does not exist, so that the answer
  // takes as long as for a real user.
  static const std::string kDummy = HashPassword("devid-no-such-user-password").value();
  if (username.empty() || username.size() > 128) {
    (void)VerifyPassword(password, kDummy);
    return Denied();
  }
  auto user = store_.FindUserForLogin(std::string(username));
  if (!user.ok()) {
    if (user.error().code != ErrorCode::kNotFound) return user.error();
    (void)VerifyPassword(password, kDummy);
    return Denied();
  }
  if (!VerifyPassword(password, user->password_hash) || user->disabled) return Denied();
  return user;
}

Result<Principal> Authenticator::AuthenticatePassword(std::string_view username,
                                                      std::string_view password) {
  DEVID_ASSIGN_OR_RETURN(store::UserRecord user, CheckPassword(username, password));
  auto role = ParseRole(user.role);
  if (!role) return Denied();
  Principal p;
  p.actor = "user:" + user.username;
  p.role = *role;
  p.org_id = user.org_id;
  p.user_id = user.id;
  return p;
}

Result<NewTokenSecret> Authenticator::Login(std::string_view username, std::string_view password) {
  DEVID_ASSIGN_OR_RETURN(store::UserRecord user, CheckPassword(username, password));
  DEVID_ASSIGN_OR_RETURN(std::string secret, NewSecret());
  store::NewToken token;
  token.secret_hash = HashSecret(secret);
  token.kind = "session";
  token.user_id = user.id;
  token.org_id = user.org_id;
  token.role = user.role;
  token.name = "session of " + user.username;
  token.expires_at = NowUnix() + session_lifetime_.count();
  DEVID_ASSIGN_OR_RETURN(store::TokenRecord record, store_.CreateToken(token));
  return NewTokenSecret{std::move(secret), std::move(record)};
}

Result<NewTokenSecret> Authenticator::CreateApiToken(int64_t org_id, Role role,
                                                     const std::string& name,
                                                     std::optional<int64_t> expires_at) {
  if (role == Role::kSystemAdmin) {
    return MakeError(ErrorCode::kInvalidInput, "API tokens are scoped to one organization");
  }
  DEVID_ASSIGN_OR_RETURN(std::string secret, NewSecret());
  store::NewToken token;
  token.secret_hash = HashSecret(secret);
  token.kind = "api";
  token.org_id = org_id;
  token.role = std::string(RoleName(role));
  token.name = name;
  token.expires_at = expires_at;
  DEVID_ASSIGN_OR_RETURN(store::TokenRecord record, store_.CreateToken(token));
  return NewTokenSecret{std::move(secret), std::move(record)};
}

Result<Principal> Authenticator::Authenticate(std::string_view bearer, int64_t now) {
  auto invalid = [] {
    return MakeError(ErrorCode::kAuth, "the token is invalid, expired or revoked");
  };
  if (!bearer.starts_with(kTokenPrefix) || bearer.size() != kTokenPrefix.size() + 64) {
    return invalid();
  }
  auto token = store_.FindToken(HashSecret(bearer));
  if (!token.ok()) {
    if (token.error().code == ErrorCode::kNotFound) return invalid();
    return token.error();
  }
  if (token->revoked_at || (token->expires_at && *token->expires_at <= now)) return invalid();
  auto role = ParseRole(token->role);
  if (!role) return invalid();
  Principal p;
  p.role = *role;
  p.org_id = token->org_id;
  p.token_id = token->id;
  p.user_id = token->user_id;
  if (token->kind == "session" && token->user_id) {
    // A user disabled after login loses the session at once.
    auto users = store_.ListUsers(token->org_id);
    if (!users.ok()) return users.error();
    const store::UserRecord* user = nullptr;
    for (const auto& u : *users) {
      if (u.id == *token->user_id) user = &u;
    }
    if (user == nullptr || user->disabled) return invalid();
    p.actor = "user:" + user->username;
  } else {
    p.actor = "token:" + std::to_string(token->id);
  }
  if ((p.role == Role::kSystemAdmin) != !p.org_id) return invalid();
  return p;
}

Result<store::UserRecord> BootstrapSystemAdmin(store::Store& store, const std::string& username,
                                               std::string_view password) {
  DEVID_ASSIGN_OR_RETURN(auto admins, store.ListUsers(std::nullopt));
  if (!admins.empty()) {
    return MakeError(ErrorCode::kAlreadyExists,
                     "the CMS already has a system admin; bootstrap runs once");
  }
  DEVID_ASSIGN_OR_RETURN(std::string hash, HashPassword(password));
  DEVID_ASSIGN_OR_RETURN(store::UserRecord user,
                         store.CreateUser({username, hash, std::nullopt, "system-admin"}));
  DEVID_TRY(AppendAudit(store, {std::nullopt, "cli:admin-bootstrap", "user.create",
                                "user:" + user.username, "ok", "first system admin"}));
  return user;
}

}  // namespace devid::cms
