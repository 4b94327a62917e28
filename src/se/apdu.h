// ISO/IEC 7816-4 style APDUs, the only language between host and chip:
// command  CLA INS P1 P2 [Lc data] [Le]   (short, or extended with a 00 marker)
// response [data] SW1 SW2
// Shared by se/device (the chip) and se/host (the client library).
#pragma once

#include <cstdint>
#include <string>

#include "core/bytes.h"
#include "core/result.h"

namespace devid::se {

// Status words (DESIGN §4), plus the chip's tamper and PIN states.
enum class StatusWord : uint16_t {
  kOk = 0x9000,
  kWrongLength = 0x6700,
  kTamper = 0x6581,  // "memory failure": NVM integrity lost; only TERMINATE is accepted
  kSecurityNotSatisfied = 0x6982,
  kAuthenticationBlocked = 0x6983,
  kConditionsNotSatisfied = 0x6985,
  kWrongData = 0x6A80,
  kNotFound = 0x6A82,
  kNoSpace = 0x6A84,
  kWrongP1P2 = 0x6A86,
  kInsNotSupported = 0x6D00,
  kClaNotSupported = 0x6E00,
  kInternal = 0x6F00,
  kRandomFailure = 0x6F01,  // the TRNG's health tests failed: no random bytes, no keys
};
// 63Cx: wrong PIN, x tries left.
inline uint16_t PinTriesLeftWord(int tries) {
  return static_cast<uint16_t>(0x63C0 | (tries & 0x0F));
}
std::string StatusWordText(uint16_t sw);

// The chip's instruction set (CLA 0x80, proprietary class).
inline constexpr uint8_t kCla = 0x80;
enum class Ins : uint8_t {
  kGetInfo = 0xCA,
  kGetRandom = 0x84,
  kGenerateKeyPair = 0x46,
  kReadPublicKey = 0x48,
  kSign = 0x2A,
  kVerifySignature = 0x2C,
  kEcdh = 0x86,
  kCreateFile = 0xE0,
  kReadFile = 0xB0,
  kWriteFile = 0xD6,
  kListFiles = 0xB2,
  kSha256 = 0x3B,
  kCounter = 0x32,
  kAuthenticate = 0x20,
  kSetLifecycle = 0xF0,
  kImportKey = 0xDB,
  kAes = 0x3A,
};

// P1 of the key commands for the session's volatile (ephemeral) key slot.
inline constexpr uint8_t kVolatileSlot = 0x80;

struct ApduCommand {
  uint8_t cla = kCla;
  uint8_t ins = 0;
  uint8_t p1 = 0;
  uint8_t p2 = 0;
  Bytes data;
  uint32_t le = 0;  // 0 with has_le: "as much as there is" (256 / 65536)
  bool has_le = false;

  // kInvalidInput names what is wrong (the chip answers 6700 for those).
  static Result<ApduCommand> Parse(ByteView bytes);
  Bytes Encode() const;  // short form when it fits, extended otherwise
};

struct ApduResponse {
  Bytes data;
  uint16_t sw = 0;

  bool ok() const { return sw == static_cast<uint16_t>(StatusWord::kOk); }
  static Result<ApduResponse> Parse(ByteView bytes);
  Bytes Encode() const;
};

// The command's name as the log writes it ("SIGN"), or "INS_XX".
std::string InstructionName(uint8_t ins);
// One command-log line: "SIGN slot=0 sw=9000 us=41" (what was done, never
// the data). The chip writes it; a host-side transport can write the same.
std::string DescribeCommand(const ApduCommand& command, uint16_t sw, long long us);

inline ApduResponse Reply(StatusWord sw, Bytes data = {}) {
  return ApduResponse{std::move(data), static_cast<uint16_t>(sw)};
}

}  // namespace devid::se
