// Distinguished names and subject alternative names.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/handles.h"

namespace devid::crypto {

// One RDN attribute: short name ("CN", "O", "serialNumber") and UTF-8 value.
struct NameAttribute {
  std::string type;
  std::string value;
  bool operator==(const NameAttribute&) const = default;
};

class DistinguishedName {
 public:
  // "CN=Device 1,O=Acme" (first written = first RDN). Backslash escapes a
  // following ',', '=', '+', '\\'. Attribute types are OpenSSL short or long names.
  static Result<DistinguishedName> Parse(std::string_view text);
  static Result<DistinguishedName> FromX509Name(const X509_NAME* name);

  const std::vector<NameAttribute>& attributes() const { return attributes_; }
  // "CN=Device 1, O=Acme" in RDN order, with ',' and '\\' escaped.
  std::string ToString() const;
  // A fresh X509_NAME with every attribute as UTF8String (PrintableString where X.520 requires).
  Result<UniquePtr<X509_NAME>> ToX509Name() const;
  bool empty() const { return attributes_.empty(); }

 private:
  std::vector<NameAttribute> attributes_;
};

// The canonical short name of an attribute type ("commonName" -> "CN"), or kInvalidInput.
Result<std::string> CanonicalAttributeType(std::string_view type);

// A subject alternative name entry of the kinds devid issues.
struct GeneralName {
  enum class Kind { kDns, kUri, kEmail, kIp, kHardwareModuleName, kOther };
  Kind kind;
  std::string value;  // DNS name, URI, e-mail, IP text; for hardwareModuleName the hwType OID
  Bytes hw_serial;    // RFC 4108 hwSerialNum (hardwareModuleName only)

  // "dns", "uri", "email", "ip", "hardwareModuleName", "other".
  std::string_view KindName() const;
  // "dns:example.com", "hardwareModuleName:1.3.6.1.4.1.99999.1:0A0B".
  std::string ToString() const;
  // Parses the ToString() form (what the CLI's --san accepts).
  static Result<GeneralName> Parse(std::string_view text);
  bool operator==(const GeneralName&) const = default;
};

std::string_view GeneralNameKindName(GeneralName::Kind kind);

// Converts between devid's GeneralName and OpenSSL's GENERAL_NAMES.
Result<std::vector<GeneralName>> FromGeneralNames(const GENERAL_NAMES* names);
Result<UniquePtr<GENERAL_NAMES>> ToGeneralNames(const std::vector<GeneralName>& names);

}  // namespace devid::crypto
