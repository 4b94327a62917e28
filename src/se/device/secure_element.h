// The emulated secure element: a VaultIC-class chip behind an APDU interface.
// Keys are generated, stored and used inside it; no command returns a private
// key. State lives in a sealed NVM image (nvm.h); randomness comes from the
// health-tested TRNG (trng.h).
//
// clang-format off
// Command data layouts (CLA 0x80; multi-byte integers big-endian):
//   GET_INFO          -> serial_len serial fw_major fw_minor lifecycle tamper pin_tries free_nvm(4)
//   GET_RANDOM        Le = count (1..4096) -> random bytes
//   GENERATE_KEY_PAIR P1 = slot (0..15 persistent, 0x80 volatile),
//                     P2 = 0x01 P-256, 0x02 P-384, 0x10 AES-256, | 0x80 if use needs the PIN
//                     -> public point (nothing for AES)
//   READ_PUBLIC_KEY   P1 = slot, or 0xFE for the chip's transport key -> curve point
//                     (the transport key is made on first use, while personalising)
//   SIGN              P1 = slot, data = digest (32 or 48 bytes) -> DER ECDSA signature
//   VERIFY_SIGNATURE  P1 = 0x00: data = curve point_len point digest_len digest signature
//                     P1 = 0x01: data = file_id(2) digest_len digest signature, the file
//                     holding the key as "curve point" (e.g. the issuing CA's)
//                     -> 9000, or 6300 when it does not verify
//   ECDH              P1 = slot, data = peer point -> shared secret (x)
//   CREATE_FILE       P1P2 = file id, data = max_size(2) read_ac write_ac
//   READ_FILE         P1P2 = file id -> content
//   WRITE_FILE        P1P2 = file id, data = content (replaces)
//   LIST_FILES        -> {id(2) size(2) max(2) read_ac write_ac}*
//   SHA256            data = message -> digest
//   COUNTER           P1 = counter (0..7), P2 = 0 read / 1 increment -> value(8)
//   AUTHENTICATE      P1 = 0x01 user PIN: data = PIN -> 9000, 63Cx, 6983 when blocked
//                     P1 = 0x02 manufacturer key: P2 = 0 -> 16-byte challenge;
//                       P2 = 1, data = HMAC-SHA256(manufacturer key, challenge) -> 9000 / 6982
//                     P1 = 0x03 after the manufacturer key: data = new user PIN (tries reset)
//   SET_LIFECYCLE     P1 = 2 personalised, 3 operational, 4 terminated (forward only)
//   IMPORT_KEY        P1 = slot, P2 = 0x80 if use needs the PIN; manufacturing or
//                     personalised state only, after the manufacturer key (6982 before).
//                     data = ephemeral P-256 point (65) nonce (12)
//                     AES-256-GCM(PKCS#8 EC key) under HKDF-SHA256(ECDH(ephemeral,
//                     transport key), salt = ephemeral point, info "devid IMPORT_KEY v1"),
//                     associated data = P1 P2
//   AES               P1 = AES slot, P2 = 0 encrypt: data = aad_len aad plaintext
//                       -> nonce(12, drawn by the chip) ciphertext||tag
//                     P2 = 1 decrypt: data = nonce(12) aad_len aad ciphertext||tag
//                       -> plaintext (6300 when the tag does not match)
// Access conditions (ac): 0x00 always, 0x01 after the user PIN, 0xFF never
// (writes: never once operational; before that the personaliser may write).
// clang-format on
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/secret.h"
#include "crypto/key.h"
#include "se/apdu.h"
#include "se/device/nvm.h"
#include "se/device/trng.h"

namespace devid::se {

enum class Lifecycle : uint8_t {
  kManufacturing = 1,
  kPersonalised = 2,
  kOperational = 3,
  kTerminated = 4
};

inline constexpr int kPersistentSlots = 16;
inline constexpr int kCounters = 8;
inline constexpr int kPinTries = 3;
inline constexpr size_t kNvmCapacity = 32 * 1024;

class SecureElement {
 public:
  // A new chip in the manufacturing state with its user PIN (4..16 bytes).
  // `manufacturer_key` (32 bytes) lets its holder reset the user PIN; when
  // empty the chip draws one nobody knows.
  static Result<std::unique_ptr<SecureElement>> Create(const std::string& image,
                                                       const std::string& serial,
                                                       const SecretString& pin,
                                                       std::unique_ptr<NoiseSource> noise = nullptr,
                                                       ByteView manufacturer_key = {});
  // Powers up an existing chip. A damaged or rolled-back image gives a chip
  // in the tamper state (it answers 6581 to everything but GET_INFO and
  // SET_LIFECYCLE terminate), not an error.
  // `crash_point` simulates power cuts in the chip's NVM writes (tests).
  static Result<std::unique_ptr<SecureElement>> Open(const std::string& image,
                                                     std::unique_ptr<NoiseSource> noise = nullptr,
                                                     CrashPoint crash_point = {});

  ApduResponse Process(const ApduCommand& command);
  // Raw bytes in and out, as on the bus; a malformed APDU gets 6700.
  Bytes Process(ByteView command);

  struct KeySlot {
    crypto::KeyType curve = crypto::KeyType::kEcP256;  // ignored for AES
    bool needs_pin = false;
    SecretBytes pkcs8;  // PKCS#8 DER of an EC key, or the raw AES-256 key
    // The key ready for use, decoded on first use (the chip's working copy).
    mutable std::shared_ptr<const crypto::PrivateKey> decoded;
    bool aes = false;
  };

  // What one host connection has established: the user PIN, the manufacturer
  // key, its pending challenge and its volatile (ephemeral) key. The daemon
  // keeps one per client, so that one client's login is not another's.
  struct Session {
    bool pin_verified = false;
    bool manufacturer_verified = false;
    Bytes challenge;
    std::optional<KeySlot> volatile_slot;
  };
  // Commands run in `session` until the next call; nullptr selects the chip's own.
  void UseSession(Session* session) { session_ = session != nullptr ? session : &default_session_; }

  bool tampered() const { return tampered_; }

  // One line per command: "GET_RANDOM le=32 sw=9000 us=41" (what the chip did,
  // never the data). Tests and users read it to see the chip's part in a flow.
  using CommandLog = std::function<void(const std::string& line)>;
  void SetCommandLog(CommandLog log) { log_ = std::move(log); }

  // Optional per-command delays modelled on a comparable chip's published
  // maximums (sign 115 ms, verify 105 ms, ECDH 75 ms, key generation 115 ms,
  // random 5 ms, others 2 ms); off by default.
  void SetLatencyModel(bool enabled) { latency_ = enabled; }
  static int ModelledLatencyMs(Ins ins);

 private:
  struct File {
    uint16_t max_size = 0;
    uint8_t read_ac = 0;
    uint8_t write_ac = 0;
    Bytes data;
  };
  struct State {
    std::string serial;
    Lifecycle lifecycle = Lifecycle::kManufacturing;
    Bytes pin_salt;
    Bytes pin_hash;
    int pin_tries = kPinTries;
    std::map<int, KeySlot> slots;
    std::map<uint16_t, File> files;
    std::map<int, uint64_t> counters;
    SecretBytes transport;  // PKCS#8 of the P-256 transport key (IMPORT_KEY); empty until asked for
    SecretBytes manufacturer_key;
  };

  SecureElement(NvmImage nvm, std::unique_ptr<ChipRng> rng)
      : nvm_(std::move(nvm)), rng_(std::move(rng)) {}
  static Result<Bytes> Serialize(const State& state);
  static Result<State> Deserialize(ByteView bytes);
  static State Copy(const State& state);
  // Seals `next` into NVM, then makes it the chip's state (all or nothing).
  StatusWord Commit(State next, SealKey seal_key = SealKey::kKeep);
  size_t UsedNvm(const State& state) const;
  // A persistent slot, or this session's volatile one; nullptr when empty.
  const KeySlot* FindSlot(uint8_t slot) const;
  // The chip's own library context (its TRNG-fed DRBG), where its keys live
  // and its EC checks run: the host process may prefer another provider.
  OSSL_LIB_CTX* Context() const { return rng_ ? rng_->context() : nullptr; }
  bool Allowed(uint8_t ac) const { return ac == 0x00 || (ac == 0x01 && session_->pin_verified); }
  Result<std::shared_ptr<const crypto::PrivateKey>> LoadKey(uint8_t slot, StatusWord* sw) const;
  // The P-256 key IMPORT_KEY unwraps with, made and stored on first use.
  Result<crypto::PrivateKey> TransportKey(StatusWord* sw);

  ApduResponse Dispatch(const ApduCommand& command);
  ApduResponse GetInfo() const;
  ApduResponse GetRandom(const ApduCommand& c);
  ApduResponse GenerateKeyPair(const ApduCommand& c);
  ApduResponse ReadPublicKey(const ApduCommand& c);
  ApduResponse Sign(const ApduCommand& c);
  ApduResponse VerifySignature(const ApduCommand& c);
  ApduResponse Ecdh(const ApduCommand& c);
  ApduResponse CreateFile(const ApduCommand& c);
  ApduResponse ReadFile(const ApduCommand& c);
  ApduResponse WriteFile(const ApduCommand& c);
  ApduResponse ListFiles() const;
  ApduResponse Sha256(const ApduCommand& c);
  ApduResponse Counter(const ApduCommand& c);
  ApduResponse Authenticate(const ApduCommand& c);
  ApduResponse SetLifecycle(const ApduCommand& c);
  ApduResponse ImportKey(const ApduCommand& c);
  ApduResponse Aes(const ApduCommand& c);

  NvmImage nvm_;
  std::unique_ptr<ChipRng> rng_;  // null when the source failed its start-up test
  State state_;
  bool tampered_ = false;
  Session default_session_;
  Session* session_ = &default_session_;
  CommandLog log_;
  bool latency_ = false;
};

}  // namespace devid::se
