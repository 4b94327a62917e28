#include "crypto/name.h"

#include <arpa/inet.h>
#include <openssl/objects.h>
#include <algorithm>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"

namespace devid::crypto {

namespace {
// RFC 4108 §5: id-on-hardwareModuleName.
constexpr const char* kHardwareModuleNameOid = "1.3.6.1.5.5.7.8.4";

Error NameError(std::string_view text, const std::string& why) {
  return MakeError(ErrorCode::kInvalidInput,
                   "distinguished name '" + std::string(text) + "': " + why);
}

}  // namespace

Result<std::string> CanonicalAttributeType(std::string_view type) {
  std::string t(type);
  int nid = OBJ_txt2nid(t.c_str());
  if (nid == NID_undef) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "unknown name attribute type '" + t + "'");
  }
  return std::string(OBJ_nid2sn(nid));
}

Result<DistinguishedName> DistinguishedName::Parse(std::string_view text) {
  // Split into RDN strings at unescaped ',' keeping (character, escaped) pairs,
  // so that escaped spaces, '=' and ',' survive trimming and splitting.
  using Char = std::pair<char, bool>;
  std::vector<std::vector<Char>> parts(1);
  bool escaped = false;
  for (char c : text) {
    if (escaped) {
      parts.back().push_back({c, true});
      escaped = false;
    } else if (c == '\\') {
      escaped = true;
    } else if (c == ',') {
      parts.emplace_back();
    } else {
      parts.back().push_back({c, false});
    }
  }
  if (escaped) return NameError(text, "ends with a lone backslash");
  auto trim = [](std::vector<Char>::const_iterator b, std::vector<Char>::const_iterator e) {
    while (b != e && b->first == ' ' && !b->second) ++b;
    while (e != b && (e - 1)->first == ' ' && !(e - 1)->second) --e;
    std::string out;
    for (auto it = b; it != e; ++it) out.push_back(it->first);
    return out;
  };
  DistinguishedName dn;
  for (const auto& part : parts) {
    auto eq = std::find_if(part.begin(), part.end(),
                           [](const Char& c) { return c.first == '=' && !c.second; });
    if (eq == part.end())
      return NameError(text, "'" + trim(part.begin(), part.end()) + "' is not TYPE=value");
    std::string type = trim(part.begin(), eq);
    std::string value = trim(eq + 1, part.end());
    if (type.empty()) return NameError(text, "empty attribute type");
    if (value.empty()) return NameError(text, "empty value for " + type);
    int nid = OBJ_txt2nid(type.c_str());
    if (nid == NID_undef) {
      ClearOpenSslErrors();
      return NameError(text, "unknown attribute type '" + type + "'");
    }
    dn.attributes_.push_back({OBJ_nid2sn(nid), value});
  }
  // Validate encodings (e.g. C must be two letters) by building the X509_NAME once.
  auto check = dn.ToX509Name();
  if (!check.ok()) return NameError(text, check.error().message);
  return dn;
}

Result<DistinguishedName> DistinguishedName::FromX509Name(const X509_NAME* name) {
  DistinguishedName dn;
  int count = X509_NAME_entry_count(name);
  for (int i = 0; i < count; ++i) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
    const ASN1_OBJECT* obj = X509_NAME_ENTRY_get_object(entry);
    const ASN1_STRING* data = X509_NAME_ENTRY_get_data(entry);
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    if (len < 0) return OpenSslError("decoding a name attribute", ErrorCode::kInvalidInput);
    UniquePtr<unsigned char> owned(utf8);
    int nid = OBJ_obj2nid(obj);
    std::string type;
    if (nid != NID_undef) {
      type = OBJ_nid2sn(nid);
    } else {
      DEVID_ASSIGN_OR_RETURN(type, internal::OidText(obj, true));
    }
    dn.attributes_.push_back({type, std::string(reinterpret_cast<char*>(utf8), len)});
  }
  return dn;
}

std::string DistinguishedName::ToString() const {
  std::string out;
  for (const auto& a : attributes_) {
    if (!out.empty()) out += ", ";
    out += a.type;
    out += '=';
    for (size_t i = 0; i < a.value.size(); ++i) {
      char c = a.value[i];
      // RFC 4514 §2.4 style: special characters, and spaces at either end, are escaped.
      bool edge_space = c == ' ' && (i == 0 || i + 1 == a.value.size());
      if (c == ',' || c == '\\' || c == '+' || c == '=' || edge_space) out.push_back('\\');
      out.push_back(c);
    }
  }
  return out;
}

Result<UniquePtr<X509_NAME>> DistinguishedName::ToX509Name() const {
  UniquePtr<X509_NAME> name(X509_NAME_new());
  if (!name) return OpenSslError("allocating X509_NAME");
  for (const auto& a : attributes_) {
    if (X509_NAME_add_entry_by_txt(name.get(), a.type.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(a.value.data()),
                                   static_cast<int>(a.value.size()), -1, 0) != 1) {
      return OpenSslError("attribute " + a.type + "='" + a.value + "'", ErrorCode::kInvalidInput);
    }
  }
  return name;
}

std::string_view GeneralNameKindName(GeneralName::Kind kind) {
  switch (kind) {
    case GeneralName::Kind::kDns:
      return "dns";
    case GeneralName::Kind::kUri:
      return "uri";
    case GeneralName::Kind::kEmail:
      return "email";
    case GeneralName::Kind::kIp:
      return "ip";
    case GeneralName::Kind::kHardwareModuleName:
      return "hardwareModuleName";
    case GeneralName::Kind::kOther:
      return "other";
  }
  return "other";
}

std::string_view GeneralName::KindName() const { return GeneralNameKindName(kind); }

std::string GeneralName::ToString() const {
  std::string out(KindName());
  out += ':';
  out += value;
  if (kind == Kind::kHardwareModuleName) {
    out += ':';
    out += HexEncode(hw_serial);
  }
  return out;
}

Result<GeneralName> GeneralName::Parse(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos || colon + 1 >= text.size()) {
    return MakeError(ErrorCode::kInvalidInput,
                     "subject alternative name '" + std::string(text) +
                         "' is not KIND:value (dns, uri, email, ip, hardwareModuleName)");
  }
  std::string_view kind = text.substr(0, colon);
  std::string_view rest = text.substr(colon + 1);
  GeneralName gn{Kind::kOther, std::string(rest), {}};
  if (kind == "dns") {
    gn.kind = Kind::kDns;
  } else if (kind == "uri") {
    gn.kind = Kind::kUri;
  } else if (kind == "email") {
    gn.kind = Kind::kEmail;
  } else if (kind == "ip") {
    gn.kind = Kind::kIp;
  } else if (kind == "hardwareModuleName" || kind == "hmn") {
    auto sep = rest.rfind(':');
    if (sep == std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidInput,
                       "hardwareModuleName must be hardwareModuleName:OID:SERIALHEX");
    }
    gn.kind = Kind::kHardwareModuleName;
    std::string typed(rest.substr(0, sep));
    UniquePtr<ASN1_OBJECT> oid(OBJ_txt2obj(typed.c_str(), 1));
    if (!oid) {
      ClearOpenSslErrors();
      return MakeError(ErrorCode::kInvalidInput,
                       "hardwareModuleName hwType '" + typed + "' is not a dotted OID");
    }
    // The canonical dotted form, as it will be encoded (and as templates match it).
    DEVID_ASSIGN_OR_RETURN(gn.value, internal::OidText(oid.get(), true));
    DEVID_ASSIGN_OR_RETURN(gn.hw_serial, HexDecode(rest.substr(sep + 1)));
  } else {
    return MakeError(ErrorCode::kInvalidInput,
                     "unknown subject alternative name kind '" + std::string(kind) + "'");
  }
  // Round-trip through OpenSSL to validate (e.g. an IP address).
  auto check = ToGeneralNames({gn});
  if (!check.ok()) return check.error();
  return gn;
}

namespace {
// HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING }
Result<GeneralName> DecodeHardwareModuleName(const OTHERNAME* other) {
  if (other->value == nullptr || other->value->type != V_ASN1_SEQUENCE) {
    return MakeError(ErrorCode::kInvalidInput, "hardwareModuleName is not a SEQUENCE");
  }
  const ASN1_STRING* seq = other->value->value.sequence;
  const unsigned char* p = ASN1_STRING_get0_data(seq);
  const unsigned char* end = p + ASN1_STRING_length(seq);
  long len = 0;
  int tag = 0;
  int cls = 0;
  int r = ASN1_get_object(&p, &len, &tag, &cls, end - p);
  if ((r & 0x80) != 0 || tag != V_ASN1_SEQUENCE || p + len != end) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "malformed hardwareModuleName");
  }
  UniquePtr<ASN1_OBJECT> type(d2i_ASN1_OBJECT(nullptr, &p, end - p));
  UniquePtr<ASN1_OCTET_STRING> serial(d2i_ASN1_OCTET_STRING(nullptr, &p, end - p));
  if (!type || !serial || p != end) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "malformed hardwareModuleName");
  }
  DEVID_ASSIGN_OR_RETURN(std::string hw_type, internal::OidText(type.get(), true));
  const unsigned char* s = ASN1_STRING_get0_data(serial.get());
  return GeneralName{GeneralName::Kind::kHardwareModuleName, hw_type,
                     Bytes(s, s + ASN1_STRING_length(serial.get()))};
}

std::string Ia5(const ASN1_IA5STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}
}  // namespace

Result<std::vector<GeneralName>> FromGeneralNames(const GENERAL_NAMES* names) {
  std::vector<GeneralName> out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    switch (gn->type) {
      case GEN_DNS:
        out.push_back({GeneralName::Kind::kDns, Ia5(gn->d.dNSName), {}});
        break;
      case GEN_URI:
        out.push_back({GeneralName::Kind::kUri, Ia5(gn->d.uniformResourceIdentifier), {}});
        break;
      case GEN_EMAIL:
        out.push_back({GeneralName::Kind::kEmail, Ia5(gn->d.rfc822Name), {}});
        break;
      case GEN_IPADD: {
        const ASN1_OCTET_STRING* ip = gn->d.iPAddress;
        int len = ASN1_STRING_length(ip);
        char text[INET6_ADDRSTRLEN] = {0};
        if ((len != 4 && len != 16) ||
            inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                      sizeof(text)) == nullptr) {
          return MakeError(ErrorCode::kInvalidInput, "malformed IP address SAN");
        }
        out.push_back({GeneralName::Kind::kIp, text, {}});
        break;
      }
      case GEN_OTHERNAME: {
        DEVID_ASSIGN_OR_RETURN(std::string type_id,
                               internal::OidText(gn->d.otherName->type_id, true));
        if (type_id == kHardwareModuleNameOid) {
          DEVID_ASSIGN_OR_RETURN(GeneralName hmn, DecodeHardwareModuleName(gn->d.otherName));
          out.push_back(std::move(hmn));
        } else {
          out.push_back({GeneralName::Kind::kOther, type_id, {}});
        }
        break;
      }
      default:
        out.push_back({GeneralName::Kind::kOther, "type " + std::to_string(gn->type), {}});
    }
  }
  return out;
}

Result<UniquePtr<GENERAL_NAMES>> ToGeneralNames(const std::vector<GeneralName>& names) {
  UniquePtr<GENERAL_NAMES> out(GENERAL_NAMES_new());
  if (!out) return OpenSslError("allocating GENERAL_NAMES");
  for (const GeneralName& name : names) {
    UniquePtr<GENERAL_NAME> gn;
    switch (name.kind) {
      case GeneralName::Kind::kDns:
      case GeneralName::Kind::kUri:
      case GeneralName::Kind::kEmail: {
        int type = name.kind == GeneralName::Kind::kDns   ? GEN_DNS
                   : name.kind == GeneralName::Kind::kUri ? GEN_URI
                                                          : GEN_EMAIL;
        for (char c : name.value) {
          if (static_cast<unsigned char>(c) > 0x7E || static_cast<unsigned char>(c) < 0x20) {
            return MakeError(ErrorCode::kInvalidInput,
                             "SAN '" + name.ToString() + "' is not printable ASCII (IA5String)");
          }
        }
        UniquePtr<ASN1_STRING> s(ASN1_IA5STRING_new());
        if (!s ||
            ASN1_STRING_set(s.get(), name.value.data(), static_cast<int>(name.value.size())) != 1) {
          return OpenSslError("encoding SAN");
        }
        gn.reset(GENERAL_NAME_new());
        if (!gn) return OpenSslError("allocating GENERAL_NAME");
        GENERAL_NAME_set0_value(gn.get(), type, s.release());
        break;
      }
      case GeneralName::Kind::kIp: {
        UniquePtr<ASN1_OCTET_STRING> ip(a2i_IPADDRESS(name.value.c_str()));
        if (!ip) {
          ClearOpenSslErrors();
          return MakeError(ErrorCode::kInvalidInput, "'" + name.value + "' is not an IP address");
        }
        gn.reset(GENERAL_NAME_new());
        if (!gn) return OpenSslError("allocating GENERAL_NAME");
        GENERAL_NAME_set0_value(gn.get(), GEN_IPADD, ip.release());
        break;
      }
      case GeneralName::Kind::kHardwareModuleName: {
        UniquePtr<ASN1_OBJECT> hw_type(OBJ_txt2obj(name.value.c_str(), 1));
        UniquePtr<ASN1_OCTET_STRING> serial(ASN1_OCTET_STRING_new());
        if (!hw_type || !serial ||
            ASN1_OCTET_STRING_set(serial.get(), name.hw_serial.data(),
                                  static_cast<int>(name.hw_serial.size())) != 1) {
          return OpenSslError("encoding hardwareModuleName", ErrorCode::kInvalidInput);
        }
        // DER of the SEQUENCE body, then its header.
        int l1 = i2d_ASN1_OBJECT(hw_type.get(), nullptr);
        int l2 = i2d_ASN1_OCTET_STRING(serial.get(), nullptr);
        if (l1 <= 0 || l2 <= 0) return OpenSslError("encoding hardwareModuleName");
        int total = ASN1_object_size(1, l1 + l2, V_ASN1_SEQUENCE);
        if (total <= 0) return OpenSslError("encoding hardwareModuleName");
        Bytes der(static_cast<size_t>(total));
        unsigned char* p = der.data();
        ASN1_put_object(&p, 1, l1 + l2, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
        if (i2d_ASN1_OBJECT(hw_type.get(), &p) != l1 ||
            i2d_ASN1_OCTET_STRING(serial.get(), &p) != l2 || p != der.data() + total) {
          return OpenSslError("encoding hardwareModuleName");
        }
        UniquePtr<ASN1_STRING> seq(ASN1_STRING_type_new(V_ASN1_SEQUENCE));
        if (!seq || ASN1_STRING_set(seq.get(), der.data(), total) != 1) {
          return OpenSslError("encoding hardwareModuleName");
        }
        UniquePtr<ASN1_TYPE> value(ASN1_TYPE_new());
        if (!value) return OpenSslError("allocating ASN1_TYPE");
        ASN1_TYPE_set(value.get(), V_ASN1_SEQUENCE, seq.release());
        UniquePtr<ASN1_OBJECT> type_id(OBJ_txt2obj(kHardwareModuleNameOid, 1));
        gn.reset(GENERAL_NAME_new());
        if (!gn || !type_id ||
            GENERAL_NAME_set0_othername(gn.get(), type_id.get(), value.get()) != 1) {
          return OpenSslError("encoding hardwareModuleName");
        }
        type_id.release();
        value.release();
        break;
      }
      case GeneralName::Kind::kOther:
        return MakeError(ErrorCode::kInvalidInput,
                         "cannot encode SAN of unsupported kind: " + name.ToString());
    }
    if (sk_GENERAL_NAME_push(out.get(), gn.get()) == 0) return OpenSslError("building SAN list");
    gn.release();
  }
  return out;
}

}  // namespace devid::crypto
