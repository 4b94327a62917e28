// Certificate profiles ("templates") as data: which requests a template
// accepts and what the certificates it makes contain.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "crypto/certificate.h"
#include "crypto/key.h"
#include "crypto/name.h"

namespace devid::ca {

// A rule on a value: the whole value must match this ECMAScript regular expression.
struct ValuePattern {
  std::string source;
  std::shared_ptr<const std::regex> regex;
};

struct CertificateProfile {
  std::string name;
  std::vector<crypto::KeyType> key_types;
  std::vector<std::string> subject_required;             // attribute short names
  std::vector<std::string> subject_allowed;              // attribute short names
  std::map<std::string, ValuePattern> subject_patterns;  // attribute short name -> rule
  std::vector<crypto::GeneralName::Kind> san_allowed;
  bool san_required = false;
  // kind -> rule; hardwareModuleName values read "OID:SERIALHEX"
  std::map<crypto::GeneralName::Kind, ValuePattern> san_patterns;
  int validity_days = 365;
  int max_validity_days = 365;
  // Short-lived certificates: the default validity in minutes instead of
  // validity_days (a request that names its days still gets days).
  std::optional<int> validity_minutes;
  std::vector<crypto::KeyUsageBit> key_usage;
  std::vector<std::string> extended_key_usage;
  bool ca = false;
  std::optional<int> path_len;

  // Parses and validates a template (see docs/TEMPLATES.md for the format).
  static Result<CertificateProfile> FromJson(std::string_view json);
  std::string ToJson() const;

  Status CheckKey(const crypto::KeyAlgorithm& key) const;
  Status CheckSubject(const crypto::DistinguishedName& subject) const;
  Status CheckSubjectAltNames(const std::vector<crypto::GeneralName>& sans) const;
};

// The built-in templates: root, ica, device, server.
const std::vector<std::string>& BuiltinProfileNames();

// Finds templates: the built-ins, then `<dir>/<name>.json` when a folder is given.
class ProfileCatalog {
 public:
  explicit ProfileCatalog(std::string directory = {}) : directory_(std::move(directory)) {}
  Result<CertificateProfile> Find(std::string_view name) const;

 private:
  std::string directory_;
};

}  // namespace devid::ca
