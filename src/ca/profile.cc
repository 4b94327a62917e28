#include "ca/profile.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/file.h"

namespace devid::ca {

namespace {
using crypto::GeneralName;
using nlohmann::json;

// Built-in templates, in the same format operators write their own in.
constexpr std::string_view kBuiltins[] = {
    R"({"name": "root", "key_types": ["P-256", "P-384"],
        "subject": {"required": ["CN"], "allowed": ["CN", "O", "OU", "C", "ST", "L", "serialNumber"]},
        "san": {"allowed": []},
        "validity_days": 7300, "max_validity_days": 9125,
        "key_usage": ["keyCertSign", "cRLSign"], "ca": true})",
    R"({"name": "ica", "key_types": ["P-256", "P-384"],
        "subject": {"required": ["CN"], "allowed": ["CN", "O", "OU", "C", "ST", "L", "serialNumber"]},
        "san": {"allowed": []},
        "validity_days": 3650, "max_validity_days": 7300,
        "key_usage": ["keyCertSign", "cRLSign", "digitalSignature"], "ca": true, "path_len": 0})",
    R"({"name": "device", "key_types": ["P-256", "P-384"],
        "subject": {"required": ["CN"], "allowed": ["CN", "O", "OU", "C", "serialNumber"]},
        "san": {"allowed": ["uri", "dns", "hardwareModuleName"]},
        "validity_days": 1095, "max_validity_days": 7300,
        "key_usage": ["digitalSignature", "keyAgreement"], "extended_key_usage": ["clientAuth"]})",
    R"({"name": "server", "key_types": ["P-256", "P-384", "RSA-3072"],
        "subject": {"required": ["CN"], "allowed": ["CN", "O", "OU", "C", "ST", "L"],
                    "patterns": {"CN": "([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"}},
        "san": {"allowed": ["dns", "ip", "uri"], "required": true,
                "patterns": {"dns": "([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"}},
        "validity_days": 397, "max_validity_days": 825,
        "key_usage": ["digitalSignature"], "extended_key_usage": ["serverAuth"]})",
};

Error Invalid(const std::string& name, const std::string& why) {
  return MakeError(ErrorCode::kInvalidInput,
                   "template" + (name.empty() ? std::string() : " '" + name + "'") + ": " + why);
}

Result<GeneralName::Kind> ParseSanKind(const std::string& s) {
  for (auto kind : {GeneralName::Kind::kDns, GeneralName::Kind::kUri, GeneralName::Kind::kEmail,
                    GeneralName::Kind::kIp, GeneralName::Kind::kHardwareModuleName}) {
    if (crypto::GeneralNameKindName(kind) == s) return kind;
  }
  return MakeError(ErrorCode::kInvalidInput,
                   "unknown SAN kind '" + s + "' (dns, uri, email, ip, hardwareModuleName)");
}

// Values longer than this are refused before any pattern runs (bounded regex work).
constexpr size_t kMaxPatternInput = 1024;

// Operators write patterns; requests are matched against them. libstdc++'s
// default matcher backtracks without limit and recurses per character, so
// patterns are compiled for its polynomial (non-backtracking) matcher, which
// also refuses back-references, and their size and group nesting are bounded
// (the compiler recurses per nesting level).
constexpr size_t kMaxPatternSource = 512;
constexpr int kMaxPatternNesting = 16;

Result<ValuePattern> CompilePattern(const std::string& source, const std::string& profile) {
  if (source.size() > kMaxPatternSource) {
    return Invalid(profile,
                   "patterns are limited to " + std::to_string(kMaxPatternSource) + " characters");
  }
  int depth = 0;
  int deepest = 0;
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\\') {
      ++i;
    } else if (source[i] == '(') {
      deepest = std::max(deepest, ++depth);
    } else if (source[i] == ')') {
      --depth;
    }
  }
  if (deepest > kMaxPatternNesting) {
    return Invalid(profile, "patterns may nest groups at most " +
                                std::to_string(kMaxPatternNesting) + " deep");
  }
  try {
    auto flags = std::regex::ECMAScript;
#ifdef __GLIBCXX__
    flags |= std::regex_constants::__polynomial;
#endif
    return ValuePattern{source, std::make_shared<const std::regex>(source, flags)};
  } catch (const std::regex_error&) {
    return Invalid(profile, "pattern '" + source + "' is not a valid regular expression");
  }
}

Status CheckPattern(const ValuePattern& pattern, const std::string& value, const std::string& what,
                    const std::string& profile) {
  bool matches = false;
  try {
    matches = value.size() <= kMaxPatternInput && std::regex_match(value, *pattern.regex);
  } catch (const std::regex_error&) {
    matches = false;  // the matcher gave up (complexity): refuse rather than guess
  }
  if (!matches) {
    return MakeError(ErrorCode::kPolicy, "template '" + profile + "' does not allow " + what +
                                             " '" + value.substr(0, 128) + "' (must match " +
                                             pattern.source + ")");
  }
  return {};
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::vector<std::string> Strings(const json& j, const char* key) {
  std::vector<std::string> out;
  if (!j.contains(key)) return out;
  const json& list = j.at(key);
  // A lone string or an object would iterate too: only a list is a list.
  if (!list.is_array()) {
    throw json::type_error::create(302, std::string("'") + key + "' must be a list", &list);
  }
  for (const auto& item : list) out.push_back(item.get<std::string>());
  return out;
}

// An integer field within [lo, hi]; JSON floats, huge and negative numbers are refused.
Result<int> IntField(const json& j, const char* key, int lo, int hi, const std::string& name) {
  const json& v = j.at(key);
  if (!v.is_number_integer()) return Invalid(name, std::string(key) + " must be an integer");
  int64_t n = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                  ? INT64_MAX
                  : v.get<int64_t>();
  if (n < lo || n > hi) {
    return Invalid(name, std::string(key) + " must be within " + std::to_string(lo) + ".." +
                             std::to_string(hi));
  }
  return static_cast<int>(n);
}

const std::vector<CertificateProfile>& Builtins() {
  static const std::vector<CertificateProfile> kProfiles = [] {
    std::vector<CertificateProfile> v;
    for (std::string_view text : kBuiltins) {
      auto p = CertificateProfile::FromJson(text);
      if (!p.ok()) throw std::logic_error("built-in template does not parse: " + p.error().message);
      v.push_back(std::move(p).value());
    }
    return v;
  }();
  return kProfiles;
}
}  // namespace

Result<CertificateProfile> CertificateProfile::FromJson(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Invalid("", "not valid JSON");
  if (!j.is_object()) return Invalid("", "must be a JSON object");
  CertificateProfile p;
  try {
    static const std::vector<std::string> kKnown = {
        "name",      "key_types",          "subject",
        "san",       "validity_days",      "max_validity_days",
        "key_usage", "extended_key_usage", "ca",
        "path_len",  "validity_minutes"};
    for (const auto& [key, _] : j.items()) {
      if (!Contains(kKnown, key))
        return Invalid(j.value("name", ""), "unknown field '" + key + "'");
    }
    p.name = j.at("name").get<std::string>();
    if (p.name.empty() || p.name.size() > 64 ||
        !std::all_of(p.name.begin(), p.name.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        })) {
      return Invalid(p.name, "name must be 1-64 characters of a-z, 0-9, '-', '_'");
    }
    for (const std::string& k : Strings(j, "key_types")) {
      DEVID_ASSIGN_OR_RETURN(crypto::KeyType t, crypto::ParseKeyType(k));
      p.key_types.push_back(t);
    }
    if (p.key_types.empty()) return Invalid(p.name, "key_types must name at least one key type");
    const json& subject = j.at("subject");
    for (const std::string& a : Strings(subject, "required")) {
      DEVID_ASSIGN_OR_RETURN(std::string canon, crypto::CanonicalAttributeType(a));
      p.subject_required.push_back(canon);
    }
    for (const std::string& a : Strings(subject, "allowed")) {
      DEVID_ASSIGN_OR_RETURN(std::string canon, crypto::CanonicalAttributeType(a));
      p.subject_allowed.push_back(canon);
    }
    for (const std::string& r : p.subject_required) {
      if (!Contains(p.subject_allowed, r))
        return Invalid(p.name, "required attribute " + r + " is not allowed");
    }
    if (subject.contains("patterns")) {
      for (const auto& [attr, source] : subject.at("patterns").items()) {
        DEVID_ASSIGN_OR_RETURN(std::string canon, crypto::CanonicalAttributeType(attr));
        if (!Contains(p.subject_allowed, canon)) {
          return Invalid(p.name, "pattern for attribute " + canon + ", which is not allowed");
        }
        DEVID_ASSIGN_OR_RETURN(p.subject_patterns[canon],
                               CompilePattern(source.get<std::string>(), p.name));
      }
    }
    if (j.contains("san")) {
      for (const std::string& k : Strings(j.at("san"), "allowed")) {
        DEVID_ASSIGN_OR_RETURN(GeneralName::Kind kind, ParseSanKind(k));
        p.san_allowed.push_back(kind);
      }
      p.san_required = j.at("san").value("required", false);
      if (j.at("san").contains("patterns")) {
        for (const auto& [kind_name, source] : j.at("san").at("patterns").items()) {
          DEVID_ASSIGN_OR_RETURN(GeneralName::Kind kind, ParseSanKind(kind_name));
          if (std::find(p.san_allowed.begin(), p.san_allowed.end(), kind) == p.san_allowed.end()) {
            return Invalid(p.name, "pattern for SAN kind " + kind_name + ", which is not allowed");
          }
          DEVID_ASSIGN_OR_RETURN(p.san_patterns[kind],
                                 CompilePattern(source.get<std::string>(), p.name));
        }
      }
      if (p.san_required && p.san_allowed.empty())
        return Invalid(p.name, "SAN required but no kind allowed");
    }
    DEVID_ASSIGN_OR_RETURN(p.validity_days, IntField(j, "validity_days", 1, 36500, p.name));
    p.max_validity_days = p.validity_days;
    if (j.contains("max_validity_days")) {
      DEVID_ASSIGN_OR_RETURN(p.max_validity_days,
                             IntField(j, "max_validity_days", 1, 36500, p.name));
    }
    if (p.validity_days <= 0 || p.max_validity_days < p.validity_days ||
        p.max_validity_days > 36500) {
      return Invalid(p.name, "need 0 < validity_days <= max_validity_days <= 36500");
    }
    if (j.contains("validity_minutes")) {
      DEVID_ASSIGN_OR_RETURN(int minutes,
                             IntField(j, "validity_minutes", 1, p.validity_days * 1440, p.name));
      p.validity_minutes = minutes;
    }
    for (const std::string& k : Strings(j, "key_usage")) {
      DEVID_ASSIGN_OR_RETURN(crypto::KeyUsageBit bit, crypto::ParseKeyUsage(k));
      p.key_usage.push_back(bit);
    }
    if (p.key_usage.empty()) return Invalid(p.name, "key_usage must name at least one usage");
    for (const std::string& k : Strings(j, "extended_key_usage")) {
      DEVID_TRY(crypto::ValidateExtendedKeyUsage(k));
      p.extended_key_usage.push_back(k);
    }
    p.ca = j.value("ca", false);
    if (j.contains("path_len")) {
      if (!p.ca) return Invalid(p.name, "path_len is only for CA templates");
      DEVID_ASSIGN_OR_RETURN(int n, IntField(j, "path_len", 0, 16, p.name));
      if (n < 0 || n > 16) return Invalid(p.name, "path_len must be 0..16");
      p.path_len = n;
    }
    bool cert_sign = std::find(p.key_usage.begin(), p.key_usage.end(),
                               crypto::KeyUsageBit::kKeyCertSign) != p.key_usage.end();
    // RFC 5280 §4.2.1.3 / §4.2.1.9: keyCertSign if and only if cA.
    if (p.ca != cert_sign)
      return Invalid(p.name, "keyCertSign must be present exactly when ca is true");
  } catch (const json::exception& e) {
    return Invalid(p.name, std::string("wrong or missing field: ") + e.what());
  }
  return p;
}

std::string CertificateProfile::ToJson() const {
  json j;
  j["name"] = name;
  j["key_types"] = json::array();
  for (auto t : key_types) j["key_types"].push_back(std::string(crypto::KeyTypeName(t)));
  j["subject"] = {{"required", subject_required}, {"allowed", subject_allowed}};
  for (const auto& [attr, pattern] : subject_patterns)
    j["subject"]["patterns"][attr] = pattern.source;
  json san_kinds = json::array();
  for (auto k : san_allowed) san_kinds.push_back(std::string(crypto::GeneralNameKindName(k)));
  j["san"] = {{"allowed", san_kinds}, {"required", san_required}};
  for (const auto& [kind, pattern] : san_patterns) {
    j["san"]["patterns"][std::string(crypto::GeneralNameKindName(kind))] = pattern.source;
  }
  j["validity_days"] = validity_days;
  j["max_validity_days"] = max_validity_days;
  if (validity_minutes) j["validity_minutes"] = *validity_minutes;
  j["key_usage"] = json::array();
  for (auto b : key_usage) j["key_usage"].push_back(std::string(crypto::KeyUsageName(b)));
  j["extended_key_usage"] = extended_key_usage;
  j["ca"] = ca;
  if (path_len) j["path_len"] = *path_len;
  return j.dump(2);
}

Status CertificateProfile::CheckKey(const crypto::KeyAlgorithm& key) const {
  if (key.type && std::find(key_types.begin(), key_types.end(), *key.type) != key_types.end())
    return {};
  std::string allowed;
  for (auto t : key_types)
    allowed += (allowed.empty() ? "" : ", ") + std::string(crypto::KeyTypeName(t));
  return MakeError(ErrorCode::kPolicy, "template '" + name + "' does not allow this key: " +
                                           key.name + " (allowed: " + allowed + ")");
}

Status CertificateProfile::CheckSubject(const crypto::DistinguishedName& subject) const {
  for (const auto& a : subject.attributes()) {
    if (!Contains(subject_allowed, a.type)) {
      return MakeError(ErrorCode::kPolicy,
                       "template '" + name + "' does not allow subject attribute " + a.type);
    }
  }
  for (const std::string& r : subject_required) {
    size_t n = std::count_if(subject.attributes().begin(), subject.attributes().end(),
                             [&](const crypto::NameAttribute& a) { return a.type == r; });
    if (n == 0)
      return MakeError(ErrorCode::kPolicy,
                       "template '" + name + "' requires subject attribute " + r);
    if (n > 1)
      return MakeError(ErrorCode::kPolicy, "subject attribute " + r + " appears more than once");
  }
  for (const auto& a : subject.attributes()) {
    auto rule = subject_patterns.find(a.type);
    if (rule != subject_patterns.end())
      DEVID_TRY(CheckPattern(rule->second, a.value, "subject " + a.type, name));
  }
  return {};
}

Status CertificateProfile::CheckSubjectAltNames(
    const std::vector<crypto::GeneralName>& sans) const {
  for (const auto& s : sans) {
    if (std::find(san_allowed.begin(), san_allowed.end(), s.kind) == san_allowed.end()) {
      return MakeError(
          ErrorCode::kPolicy,
          "template '" + name + "' does not allow subject alternative name " + s.ToString());
    }
  }
  for (const auto& s : sans) {
    auto rule = san_patterns.find(s.kind);
    if (rule == san_patterns.end()) continue;
    std::string text = s.ToString().substr(s.KindName().size() + 1);  // drop "kind:"
    DEVID_TRY(CheckPattern(rule->second, text, std::string(s.KindName()) + " name", name));
  }
  if (san_required && sans.empty()) {
    return MakeError(ErrorCode::kPolicy,
                     "template '" + name + "' requires a subject alternative name");
  }
  return {};
}

const std::vector<std::string>& BuiltinProfileNames() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const auto& p : Builtins()) v.push_back(p.name);
    return v;
  }();
  return kNames;
}

Result<CertificateProfile> ProfileCatalog::Find(std::string_view name) const {
  for (const auto& p : Builtins()) {
    if (p.name == name) return p;
  }
  bool safe = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
  if (safe && !directory_.empty()) {
    std::string path = directory_ + "/" + std::string(name) + ".json";
    auto bytes = ReadFile(path, 1 << 20);
    if (bytes.ok()) {
      DEVID_ASSIGN_OR_RETURN(CertificateProfile p, CertificateProfile::FromJson(AsString(*bytes)));
      if (p.name != name) return Invalid(p.name, "file " + path + " names a different template");
      return p;
    }
  }
  return MakeError(ErrorCode::kNotFound, "template '" + std::string(name) + "' does not exist");
}

}  // namespace devid::ca
