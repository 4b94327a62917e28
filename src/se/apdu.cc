#include "se/apdu.h"

#include <cstdio>

namespace devid::se {

std::string StatusWordText(uint16_t sw) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "%04X", sw);
  std::string name;
  if ((sw & 0xFFF0) == 0x63C0) {
    name = "wrong PIN, " + std::to_string(sw & 0x0F) + " tries left";
  } else {
    switch (static_cast<StatusWord>(sw)) {
      case StatusWord::kOk:
        name = "ok";
        break;
      case StatusWord::kWrongLength:
        name = "wrong length";
        break;
      case StatusWord::kTamper:
        name = "tamper detected";
        break;
      case StatusWord::kSecurityNotSatisfied:
        name = "security status not satisfied";
        break;
      case StatusWord::kAuthenticationBlocked:
        name = "authentication blocked";
        break;
      case StatusWord::kConditionsNotSatisfied:
        name = "conditions not satisfied";
        break;
      case StatusWord::kWrongData:
        name = "wrong data";
        break;
      case StatusWord::kNotFound:
        name = "not found";
        break;
      case StatusWord::kNoSpace:
        name = "not enough memory";
        break;
      case StatusWord::kWrongP1P2:
        name = "wrong P1 P2";
        break;
      case StatusWord::kInsNotSupported:
        name = "instruction not supported";
        break;
      case StatusWord::kClaNotSupported:
        name = "class not supported";
        break;
      case StatusWord::kInternal:
        name = "internal error";
        break;
      case StatusWord::kRandomFailure:
        name = "random source failed";
        break;
      default:
        name = "unknown";
    }
  }
  return std::string(hex) + " (" + name + ")";
}

Result<ApduCommand> ApduCommand::Parse(ByteView b) {
  auto bad = [](const char* why) {
    return MakeError(ErrorCode::kInvalidInput, std::string("APDU: ") + why);
  };
  if (b.size() < 4) return bad("shorter than its 4-byte header");
  ApduCommand c;
  c.cla = b[0];
  c.ins = b[1];
  c.p1 = b[2];
  c.p2 = b[3];
  ByteView body = b.subspan(4);
  if (body.empty()) return c;  // case 1
  if (body.size() == 1) {      // case 2 short
    c.has_le = true;
    c.le = body[0] == 0 ? 256 : body[0];
    return c;
  }
  if (body[0] != 0) {  // short Lc
    size_t lc = body[0];
    if (body.size() == 1 + lc) {  // case 3 short
      c.data.assign(body.begin() + 1, body.end());
      return c;
    }
    if (body.size() == 2 + lc) {  // case 4 short
      c.data.assign(body.begin() + 1, body.begin() + 1 + static_cast<long>(lc));
      c.has_le = true;
      c.le = body.back() == 0 ? 256 : body.back();
      return c;
    }
    return bad("Lc does not match the data length");
  }
  // Extended: 00 followed by two length bytes.
  if (body.size() < 3) return bad("truncated extended length");
  size_t n = static_cast<size_t>(body[1]) << 8 | body[2];
  if (body.size() == 3) {  // case 2 extended
    c.has_le = true;
    c.le = n == 0 ? 65536 : static_cast<uint32_t>(n);
    return c;
  }
  if (n == 0) return bad("extended Lc of zero");
  if (body.size() == 3 + n) {  // case 3 extended
    c.data.assign(body.begin() + 3, body.end());
    return c;
  }
  if (body.size() == 5 + n) {  // case 4 extended
    c.data.assign(body.begin() + 3, body.begin() + 3 + static_cast<long>(n));
    size_t le = static_cast<size_t>(body[3 + n]) << 8 | body[4 + n];
    c.has_le = true;
    c.le = le == 0 ? 65536 : static_cast<uint32_t>(le);
    return c;
  }
  return bad("extended Lc does not match the data length");
}

Bytes ApduCommand::Encode() const {
  Bytes out = {cla, ins, p1, p2};
  bool extended = data.size() > 255 || le > 256;
  if (!data.empty()) {
    if (extended) {
      out.push_back(0);
      out.push_back(static_cast<uint8_t>(data.size() >> 8));
      out.push_back(static_cast<uint8_t>(data.size()));
    } else {
      out.push_back(static_cast<uint8_t>(data.size()));
    }
    out.insert(out.end(), data.begin(), data.end());
  }
  if (has_le) {
    if (extended) {
      if (data.empty()) out.push_back(0);
      out.push_back(static_cast<uint8_t>((le >= 65536 ? 0 : le) >> 8));
      out.push_back(static_cast<uint8_t>(le >= 65536 ? 0 : le));
    } else {
      out.push_back(static_cast<uint8_t>(le >= 256 ? 0 : le));
    }
  }
  return out;
}

Result<ApduResponse> ApduResponse::Parse(ByteView b) {
  if (b.size() < 2)
    return MakeError(ErrorCode::kInvalidInput, "APDU response shorter than its status word");
  ApduResponse r;
  r.data.assign(b.begin(), b.end() - 2);
  r.sw = static_cast<uint16_t>(b[b.size() - 2] << 8 | b[b.size() - 1]);
  return r;
}

Bytes ApduResponse::Encode() const {
  Bytes out = data;
  out.push_back(static_cast<uint8_t>(sw >> 8));
  out.push_back(static_cast<uint8_t>(sw));
  return out;
}

std::string InstructionName(uint8_t ins) {
  switch (static_cast<Ins>(ins)) {
    case Ins::kGetInfo:
      return "GET_INFO";
    case Ins::kGetRandom:
      return "GET_RANDOM";
    case Ins::kGenerateKeyPair:
      return "GENERATE_KEY_PAIR";
    case Ins::kReadPublicKey:
      return "READ_PUBLIC_KEY";
    case Ins::kSign:
      return "SIGN";
    case Ins::kVerifySignature:
      return "VERIFY_SIGNATURE";
    case Ins::kEcdh:
      return "ECDH";
    case Ins::kCreateFile:
      return "CREATE_FILE";
    case Ins::kReadFile:
      return "READ_FILE";
    case Ins::kWriteFile:
      return "WRITE_FILE";
    case Ins::kListFiles:
      return "LIST_FILES";
    case Ins::kSha256:
      return "SHA256";
    case Ins::kCounter:
      return "COUNTER";
    case Ins::kAuthenticate:
      return "AUTHENTICATE";
    case Ins::kSetLifecycle:
      return "SET_LIFECYCLE";
    case Ins::kImportKey:
      return "IMPORT_KEY";
    case Ins::kAes:
      return "AES";
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "INS_%02X", ins);
  return buf;
}

namespace {
// What the log says about a command's target: slot, file or counter, never data.
std::string Target(const ApduCommand& c) {
  char buf[48];
  switch (static_cast<Ins>(c.ins)) {
    case Ins::kGenerateKeyPair:
    case Ins::kReadPublicKey:
    case Ins::kSign:
    case Ins::kEcdh:
    case Ins::kImportKey:
    case Ins::kAes:
      std::snprintf(buf, sizeof buf, " slot=%s",
                    c.p1 == kVolatileSlot ? "volatile" : std::to_string(c.p1).c_str());
      return buf;
    case Ins::kVerifySignature:
      return c.p1 == 0x01 && c.data.size() >= 2
                 ? " key=file:" + HexEncode(ByteView(c.data).first(2))
                 : " key=supplied";
    case Ins::kCreateFile:
    case Ins::kReadFile:
    case Ins::kWriteFile:
      std::snprintf(buf, sizeof buf, " file=%02X%02X", c.p1, c.p2);
      return buf;
    case Ins::kCounter:
      std::snprintf(buf, sizeof buf, " counter=%d%s", c.p1, c.p2 == 1 ? " increment" : "");
      return buf;
    case Ins::kGetRandom:
      return " le=" + std::to_string(c.le);
    case Ins::kSetLifecycle:
      return " target=" + std::to_string(c.p1);
    default:
      return "";
  }
}
}  // namespace

std::string DescribeCommand(const ApduCommand& c, uint16_t sw, long long us) {
  char status[8];
  std::snprintf(status, sizeof status, "%04X", sw);
  return InstructionName(c.ins) + Target(c) + " sw=" + status + " us=" + std::to_string(us);
}

}  // namespace devid::se
