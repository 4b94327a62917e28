#include "se/device/secure_element.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

#include "crypto/aead.h"

namespace devid::se {

namespace {

// The serialized state holds every key: its strings and nodes are zeroed when freed.
using json = nlohmann::basic_json<std::map, std::vector, WipingString, bool, std::int64_t,
                                  std::uint64_t, double, WipingAllocator>;

WipingString Hex(ByteView data) {
  WipingString out;
  HexEncodeTo(data, out);
  return out;
}
std::string_view Text(const json& v) {
  const auto& s = v.get_ref<const WipingString&>();
  return {s.data(), s.size()};
}
constexpr uint8_t kFirmwareMajor = 1;
constexpr uint8_t kFirmwareMinor = 0;
constexpr size_t kSlotCost = 128;  // NVM bytes a persistent key slot takes
constexpr size_t kFileCost = 16;   // NVM bytes a file header takes, besides its content
constexpr size_t kListEntry = 8;   // bytes a file takes in the LIST_FILES answer
// However the NVM is filled, the file list fits one response APDU.
static_assert(kNvmCapacity / (kFileCost + 1) * kListEntry <= 65536);
constexpr uint16_t kStatusVerifyFailed = 0x6300;

ApduResponse Sw(StatusWord sw) { return Reply(sw); }

std::optional<crypto::KeyType> CurveFromByte(uint8_t b) {
  if (b == 0x01) return crypto::KeyType::kEcP256;
  if (b == 0x02) return crypto::KeyType::kEcP384;
  return std::nullopt;
}
uint8_t CurveByte(crypto::KeyType t) { return t == crypto::KeyType::kEcP384 ? 0x02 : 0x01; }

Bytes PinHash(ByteView salt, std::string_view pin) {
  Bytes input(salt.begin(), salt.end());
  input.insert(input.end(), pin.begin(), pin.end());
  Bytes h = crypto::Sha256(input);
  SecureZero(input.data(), input.size());
  return h;
}

void PutU16(Bytes& out, size_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

uint16_t FileId(const ApduCommand& c) { return static_cast<uint16_t>(c.p1 << 8 | c.p2); }

}  // namespace

Result<std::unique_ptr<SecureElement>> SecureElement::Create(const std::string& image,
                                                             const std::string& serial,
                                                             const SecretString& pin,
                                                             std::unique_ptr<NoiseSource> noise,
                                                             ByteView manufacturer_key) {
  if (!manufacturer_key.empty() && manufacturer_key.size() != 32) {
    return MakeError(ErrorCode::kInvalidInput, "the manufacturer key must be 32 bytes");
  }
  if (serial.empty() || serial.size() > 32)
    return MakeError(ErrorCode::kInvalidInput, "chip serial must be 1-32 characters");
  if (pin.reveal().size() < 4 || pin.reveal().size() > 16) {
    return MakeError(ErrorCode::kInvalidInput, "the PIN must be 4-16 characters");
  }
  if (!noise) noise = std::make_unique<HostNoiseSource>();
  DEVID_ASSIGN_OR_RETURN(ChipRng rng, ChipRng::Create(std::move(noise), kHostClaimedEntropy));
  State state;
  state.serial = serial;
  DEVID_ASSIGN_OR_RETURN(state.pin_salt, rng.Generate(16));
  state.pin_hash = PinHash(state.pin_salt, pin.reveal());
  if (manufacturer_key.empty()) {
    DEVID_ASSIGN_OR_RETURN(Bytes drawn, rng.Generate(32));
    state.manufacturer_key = SecretBytes(drawn);
    SecureZero(drawn.data(), drawn.size());
  } else {
    state.manufacturer_key = SecretBytes(manufacturer_key);
  }
  // The transport key, which a personaliser wraps imported keys to, is made
  // when first asked for (TransportKey): a chip that makes its own key never is.
  DEVID_ASSIGN_OR_RETURN(Bytes sealed, Serialize(state));
  auto nvm = NvmImage::Create(image, sealed);
  SecureZero(sealed.data(), sealed.size());
  if (!nvm.ok()) return nvm.error();
  std::unique_ptr<SecureElement> chip(
      new SecureElement(std::move(nvm).value(), std::make_unique<ChipRng>(std::move(rng))));
  chip->state_ = std::move(state);
  return chip;
}

Result<std::unique_ptr<SecureElement>> SecureElement::Open(const std::string& image,
                                                           std::unique_ptr<NoiseSource> noise,
                                                           CrashPoint crash_point) {
  auto nvm = NvmImage::Open(image, std::move(crash_point));
  if (!nvm.ok() && nvm.error().code != ErrorCode::kTamper) return nvm.error();
  if (!noise) noise = std::make_unique<HostNoiseSource>();
  // A source that fails its start-up test leaves the chip without randomness:
  // it still answers, but GET_RANDOM and key generation fail (6F01).
  auto rng = ChipRng::Create(std::move(noise), kHostClaimedEntropy);
  std::unique_ptr<ChipRng> rng_ptr =
      rng.ok() ? std::make_unique<ChipRng>(std::move(rng).value()) : nullptr;
  // A damaged fuse file leaves no chip key to even read the image with.
  if (!nvm.ok()) return nvm.error();
  std::unique_ptr<SecureElement> chip(
      new SecureElement(std::move(nvm).value(), std::move(rng_ptr)));
  auto loaded = chip->nvm_.Load();
  if (!loaded.ok()) {
    if (loaded.error().code != ErrorCode::kTamper) return loaded.error();
    chip->tampered_ = true;
    return chip;
  }
  auto state = Deserialize(*loaded);
  SecureZero(loaded->data(), loaded->size());
  if (!state.ok()) {
    chip->tampered_ = true;  // authentic bytes that do not parse: treat as tamper
    return chip;
  }
  chip->state_ = std::move(state).value();
  return chip;
}

Result<Bytes> SecureElement::Serialize(const State& s) {
  json j;
  j["format"] = 1;
  j["serial"] = WipingString(s.serial.begin(), s.serial.end());
  j["lifecycle"] = static_cast<int>(s.lifecycle);
  j["pin_salt"] = Hex(s.pin_salt);
  j["pin_hash"] = Hex(s.pin_hash);
  j["pin_tries"] = s.pin_tries;
  j["slots"] = json::object();
  for (const auto& [slot, k] : s.slots) {
    json& v = j["slots"][WipingString(std::to_string(slot))];
    v["curve"] = CurveByte(k.curve);
    v["pin"] = k.needs_pin;
    v["aes"] = k.aes;
    v["key"] = Hex(k.pkcs8.view());
  }
  j["files"] = json::object();
  for (const auto& [id, f] : s.files) {
    json& v = j["files"][WipingString(std::to_string(id))];
    v["max"] = f.max_size;
    v["read"] = f.read_ac;
    v["write"] = f.write_ac;
    v["data"] = Hex(f.data);
  }
  j["counters"] = json::object();
  for (const auto& [id, v] : s.counters) j["counters"][WipingString(std::to_string(id))] = v;
  j["transport"] = Hex(s.transport.view());
  j["mkey"] = Hex(s.manufacturer_key.view());
  WipingString text = j.dump();
  return Bytes(text.begin(), text.end());
}

Result<SecureElement::State> SecureElement::Deserialize(ByteView bytes) {
  json j = json::parse(AsString(bytes), nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", 0) != 1) {
    return MakeError(ErrorCode::kTamper, "chip state does not parse");
  }
  try {
    State s;
    s.serial = std::string(Text(j.at("serial")));
    int lc = j.at("lifecycle").get<int>();
    if (lc < 1 || lc > 4) return MakeError(ErrorCode::kTamper, "bad lifecycle");
    s.lifecycle = static_cast<Lifecycle>(lc);
    // Fields that may be empty (a terminated chip has no PIN).
    auto hex = [](const json& v) -> Result<Bytes> {
      std::string_view text = Text(v);
      if (text.empty()) return Bytes{};
      return HexDecode(text);
    };
    DEVID_ASSIGN_OR_RETURN(s.pin_salt, hex(j.at("pin_salt")));
    DEVID_ASSIGN_OR_RETURN(s.pin_hash, hex(j.at("pin_hash")));
    s.pin_tries = j.at("pin_tries").get<int>();
    for (const auto& [key, v] : j.at("slots").items()) {
      auto curve = CurveFromByte(v.at("curve").get<uint8_t>());
      if (!curve) return MakeError(ErrorCode::kTamper, "bad slot curve");
      DEVID_ASSIGN_OR_RETURN(Bytes der, hex(v.at("key")));
      KeySlot slot{*curve, v.at("pin").get<bool>(), SecretBytes(der), nullptr,
                   v.value("aes", false)};
      SecureZero(der.data(), der.size());
      s.slots[std::stoi(std::string(key.data(), key.size()))] = std::move(slot);
    }
    for (const auto& [key, v] : j.at("files").items()) {
      File f;
      f.max_size = v.at("max").get<uint16_t>();
      f.read_ac = v.at("read").get<uint8_t>();
      f.write_ac = v.at("write").get<uint8_t>();
      DEVID_ASSIGN_OR_RETURN(f.data, hex(v.at("data")));
      s.files[static_cast<uint16_t>(std::stoi(std::string(key.data(), key.size())))] = std::move(f);
    }
    for (const auto& [key, v] : j.at("counters").items())
      s.counters[std::stoi(std::string(key.data(), key.size()))] = v.get<uint64_t>();
    DEVID_ASSIGN_OR_RETURN(Bytes transport, hex(j.at("transport")));
    s.transport = SecretBytes(transport);
    SecureZero(transport.data(), transport.size());
    DEVID_ASSIGN_OR_RETURN(Bytes mkey, hex(j.at("mkey")));
    s.manufacturer_key = SecretBytes(mkey);
    SecureZero(mkey.data(), mkey.size());
    return s;
  } catch (const std::exception&) {
    return MakeError(ErrorCode::kTamper, "chip state does not parse");
  }
}

SecureElement::State SecureElement::Copy(const State& s) {
  State c;
  c.serial = s.serial;
  c.lifecycle = s.lifecycle;
  c.pin_salt = s.pin_salt;
  c.pin_hash = s.pin_hash;
  c.pin_tries = s.pin_tries;
  for (const auto& [id, k] : s.slots) {
    c.slots[id] = KeySlot{k.curve, k.needs_pin, SecretBytes(k.pkcs8.view()), k.decoded, k.aes};
  }
  c.files = s.files;
  c.counters = s.counters;
  c.transport = SecretBytes(s.transport.view());
  c.manufacturer_key = SecretBytes(s.manufacturer_key.view());
  return c;
}

StatusWord SecureElement::Commit(State next, SealKey seal_key) {
  auto bytes = Serialize(next);
  if (!bytes.ok()) return StatusWord::kInternal;
  Status saved = nvm_.Save(*bytes, seal_key);
  SecureZero(bytes->data(), bytes->size());
  if (saved.ok()) {
    state_ = std::move(next);
    return StatusWord::kOk;
  }
  // A write fault can strike before or after the commit point: the chip reads
  // back what its NVM now holds, as at power-up, so memory never differs from it.
  auto reloaded = nvm_.Reload();
  auto state = reloaded.ok() ? Deserialize(*reloaded) : Result<State>(reloaded.error());
  if (reloaded.ok()) SecureZero(reloaded->data(), reloaded->size());
  if (state.ok()) {
    state_ = std::move(state).value();
  } else {
    tampered_ = true;  // the chip can no longer vouch for its state
  }
  return StatusWord::kInternal;
}

size_t SecureElement::UsedNvm(const State& s) const {
  size_t used = s.slots.size() * kSlotCost;
  for (const auto& [id, f] : s.files) used += kFileCost + f.max_size;
  return used;
}

Result<std::shared_ptr<const crypto::PrivateKey>> SecureElement::LoadKey(uint8_t slot,
                                                                         StatusWord* sw) const {
  const KeySlot* k = FindSlot(slot);
  if (k == nullptr) {
    *sw = StatusWord::kNotFound;
    return MakeError(ErrorCode::kNotFound, "empty slot");
  }
  if (k->needs_pin && !session_->pin_verified) {
    *sw = StatusWord::kSecurityNotSatisfied;
    return MakeError(ErrorCode::kAuth, "PIN required");
  }
  if (k->aes) {
    *sw = StatusWord::kConditionsNotSatisfied;
    return MakeError(ErrorCode::kPolicy, "an AES key cannot sign or agree");
  }
  if (!k->decoded) {
    // Decoded in the chip's context: its signatures' nonces come from the TRNG-fed DRBG.
    auto key = crypto::PrivateKey::FromPkcs8Der(k->pkcs8.view(), Context());
    if (!key.ok()) {
      *sw = StatusWord::kInternal;
      return key.error();
    }
    k->decoded = std::make_shared<const crypto::PrivateKey>(std::move(key).value());
  }
  return k->decoded;
}

const SecureElement::KeySlot* SecureElement::FindSlot(uint8_t slot) const {
  if (slot == kVolatileSlot) return session_->volatile_slot ? &*session_->volatile_slot : nullptr;
  auto it = state_.slots.find(slot);
  return it != state_.slots.end() ? &it->second : nullptr;
}

Bytes SecureElement::Process(ByteView raw) {
  auto command = ApduCommand::Parse(raw);
  if (!command.ok()) return Sw(StatusWord::kWrongLength).Encode();
  return Process(*command).Encode();
}

int SecureElement::ModelledLatencyMs(Ins ins) {
  switch (ins) {
    case Ins::kSign:
      return 115;
    case Ins::kVerifySignature:
      return 105;
    case Ins::kEcdh:
      return 75;
    case Ins::kGenerateKeyPair:
      return 115;
    case Ins::kGetRandom:
      return 5;
    default:
      return 2;
  }
}

ApduResponse SecureElement::Process(const ApduCommand& c) {
  auto start = std::chrono::steady_clock::now();
  ApduResponse r = Dispatch(c);
  if (latency_) {
    std::this_thread::sleep_until(
        start + std::chrono::milliseconds(ModelledLatencyMs(static_cast<Ins>(c.ins))));
  }
  if (log_) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    log_(DescribeCommand(c, r.sw, us));
  }
  return r;
}

ApduResponse SecureElement::Dispatch(const ApduCommand& c) {
  if (c.cla != kCla) return Sw(StatusWord::kClaNotSupported);
  auto ins = static_cast<Ins>(c.ins);
  if (tampered_) {
    // Nothing secret once the NVM's integrity is gone; only termination.
    if (ins == Ins::kGetInfo) return GetInfo();
    if (ins != Ins::kSetLifecycle || c.p1 != static_cast<uint8_t>(Lifecycle::kTerminated)) {
      return Sw(StatusWord::kTamper);
    }
    return SetLifecycle(c);
  }
  if (state_.lifecycle == Lifecycle::kTerminated && ins != Ins::kGetInfo) {
    return Sw(StatusWord::kConditionsNotSatisfied);
  }
  switch (ins) {
    case Ins::kGetInfo:
      return GetInfo();
    case Ins::kGetRandom:
      return GetRandom(c);
    case Ins::kGenerateKeyPair:
      return GenerateKeyPair(c);
    case Ins::kReadPublicKey:
      return ReadPublicKey(c);
    case Ins::kSign:
      return Sign(c);
    case Ins::kVerifySignature:
      return VerifySignature(c);
    case Ins::kEcdh:
      return Ecdh(c);
    case Ins::kCreateFile:
      return CreateFile(c);
    case Ins::kReadFile:
      return ReadFile(c);
    case Ins::kWriteFile:
      return WriteFile(c);
    case Ins::kListFiles:
      return ListFiles();
    case Ins::kSha256:
      return Sha256(c);
    case Ins::kCounter:
      return Counter(c);
    case Ins::kAuthenticate:
      return Authenticate(c);
    case Ins::kSetLifecycle:
      return SetLifecycle(c);
    case Ins::kImportKey:
      return ImportKey(c);
    case Ins::kAes:
      return Aes(c);
  }
  return Sw(StatusWord::kInsNotSupported);
}

ApduResponse SecureElement::GetInfo() const {
  Bytes out;
  std::string serial = tampered_ ? std::string() : state_.serial;
  out.push_back(static_cast<uint8_t>(serial.size()));
  out.insert(out.end(), serial.begin(), serial.end());
  out.push_back(kFirmwareMajor);
  out.push_back(kFirmwareMinor);
  out.push_back(tampered_ ? 0 : static_cast<uint8_t>(state_.lifecycle));
  out.push_back(tampered_ ? 1 : 0);
  out.push_back(tampered_ ? 0 : static_cast<uint8_t>(state_.pin_tries));
  size_t free = tampered_ ? 0 : kNvmCapacity - UsedNvm(state_);
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<uint8_t>(free >> (8 * i)));
  return Reply(StatusWord::kOk, out);
}

ApduResponse SecureElement::GetRandom(const ApduCommand& c) {
  if (!c.has_le || c.le == 0 || c.le > 4096) return Sw(StatusWord::kWrongLength);
  if (!rng_) return Sw(StatusWord::kRandomFailure);
  auto bytes = rng_->Generate(c.le);
  if (!bytes.ok()) return Sw(StatusWord::kRandomFailure);
  return Reply(StatusWord::kOk, std::move(bytes).value());
}

ApduResponse SecureElement::GenerateKeyPair(const ApduCommand& c) {
  bool persistent = c.p1 < kPersistentSlots;
  if (!persistent && c.p1 != kVolatileSlot) return Sw(StatusWord::kWrongP1P2);
  bool aes = (c.p2 & 0x7F) == 0x10;
  auto curve =
      aes ? std::optional<crypto::KeyType>(crypto::KeyType::kEcP256) : CurveFromByte(c.p2 & 0x7F);
  if (!curve) return Sw(StatusWord::kWrongP1P2);
  bool needs_pin = (c.p2 & 0x80) != 0;
  if (persistent) {
    auto it = state_.slots.find(c.p1);
    // Replacing a key takes the right to use it; once operational, making or
    // replacing any persistent key (the device's identity) takes the PIN.
    bool replacing_protected = it != state_.slots.end() && it->second.needs_pin;
    bool operational = state_.lifecycle == Lifecycle::kOperational;
    if ((replacing_protected || operational) && !session_->pin_verified) {
      return Sw(StatusWord::kSecurityNotSatisfied);
    }
    if (it == state_.slots.end() && UsedNvm(state_) + kSlotCost > kNvmCapacity)
      return Sw(StatusWord::kNoSpace);
  }
  // Key generation draws on the health-tested source; a failed source fails it.
  if (!rng_ || !rng_->Refresh().ok()) return Sw(StatusWord::kRandomFailure);
  if (aes) {
    // An AES-256 key straight from the TRNG.
    auto secret = rng_->Generate(32);
    if (!secret.ok()) return Sw(StatusWord::kRandomFailure);
    KeySlot slot{*curve, needs_pin, SecretBytes(*secret), nullptr, true};
    SecureZero(secret->data(), secret->size());
    if (!persistent) {
      session_->volatile_slot = std::move(slot);
      return Sw(StatusWord::kOk);
    }
    State next = Copy(state_);
    next.slots[c.p1] = std::move(slot);
    return Sw(Commit(std::move(next)));
  }
  auto key = crypto::PrivateKey::Generate(*curve, rng_->context());
  if (!key.ok()) return Sw(StatusWord::kInternal);
  auto point = key->PublicPoint();
  if (!point.ok()) return Sw(StatusWord::kInternal);
  auto decoded = std::make_shared<const crypto::PrivateKey>(std::move(key).value());
  if (!persistent) {
    // An ephemeral key never reaches NVM: no PKCS#8 form (an OpenSSL 3 encode
    // costs more than the ECDH the key is made for).
    session_->volatile_slot = KeySlot{*curve, needs_pin, SecretBytes(), std::move(decoded), false};
    return Reply(StatusWord::kOk, std::move(point).value());
  }
  auto der = decoded->ToPkcs8Der();
  if (!der.ok()) return Sw(StatusWord::kInternal);
  KeySlot slot{*curve, needs_pin, SecretBytes(*der), std::move(decoded), false};
  SecureZero(der->data(), der->size());
  State next = Copy(state_);
  next.slots[c.p1] = std::move(slot);
  StatusWord sw = Commit(std::move(next));
  if (sw != StatusWord::kOk) return Sw(sw);
  return Reply(StatusWord::kOk, std::move(point).value());
}

Result<crypto::PrivateKey> SecureElement::TransportKey(StatusWord* sw) {
  if (state_.transport.view().empty()) {
    // Made on first use, and only while the chip is being personalised: it
    // serves IMPORT_KEY alone. A terminated chip's was erased with the rest.
    if (state_.lifecycle != Lifecycle::kManufacturing &&
        state_.lifecycle != Lifecycle::kPersonalised) {
      *sw = StatusWord::kConditionsNotSatisfied;
      return MakeError(ErrorCode::kPolicy, "no transport key outside personalisation");
    }
    if (!rng_ || !rng_->Refresh().ok()) {
      *sw = StatusWord::kRandomFailure;
      return MakeError(ErrorCode::kCrypto, "no random source for the transport key");
    }
    auto key = crypto::PrivateKey::Generate(crypto::KeyType::kEcP256, Context());
    auto der = key.ok() ? key->ToPkcs8Der() : Result<Bytes>(key.error());
    if (!der.ok()) {
      *sw = StatusWord::kInternal;
      return der.error();
    }
    State next = Copy(state_);
    next.transport = SecretBytes(*der);
    SecureZero(der->data(), der->size());
    *sw = Commit(std::move(next));
    if (*sw != StatusWord::kOk) return MakeError(ErrorCode::kIo, "storing the transport key");
    return std::move(key).value();
  }
  auto key = crypto::PrivateKey::FromPkcs8Der(state_.transport.view(), Context());
  if (!key.ok()) *sw = StatusWord::kInternal;
  return key;
}

ApduResponse SecureElement::ReadPublicKey(const ApduCommand& c) {
  if (c.p1 == 0xFE) {
    StatusWord sw = StatusWord::kOk;
    auto transport = TransportKey(&sw);
    if (!transport.ok()) return Sw(sw);
    auto point = transport->PublicPoint();
    if (!point.ok()) return Sw(StatusWord::kInternal);
    Bytes out = {0x01};
    out.insert(out.end(), point->begin(), point->end());
    return Reply(StatusWord::kOk, out);
  }
  const KeySlot* k = FindSlot(c.p1);
  if (k == nullptr) return Sw(StatusWord::kNotFound);
  if (k->aes) return Sw(StatusWord::kConditionsNotSatisfied);  // a secret key has no public part
  // The public half needs no PIN; the decoded key is kept as LoadKey keeps it
  // (an OpenSSL 3 PKCS#8 decode costs more than the signature it serves).
  if (!k->decoded) {
    auto key = crypto::PrivateKey::FromPkcs8Der(k->pkcs8.view(), Context());
    if (!key.ok()) return Sw(StatusWord::kInternal);
    k->decoded = std::make_shared<const crypto::PrivateKey>(std::move(key).value());
  }
  auto point = k->decoded->PublicPoint();
  if (!point.ok()) return Sw(StatusWord::kInternal);
  Bytes out = {CurveByte(k->curve)};
  out.insert(out.end(), point->begin(), point->end());
  return Reply(StatusWord::kOk, out);
}

ApduResponse SecureElement::Sign(const ApduCommand& c) {
  if (c.data.size() != 32 && c.data.size() != 48) return Sw(StatusWord::kWrongLength);
  StatusWord sw = StatusWord::kOk;
  auto key = LoadKey(c.p1, &sw);
  if (!key.ok()) return Sw(sw);
  // The ECDSA nonce is drawn from the chip's DRBG, reseeded from the TRNG just now.
  if (!rng_ || !rng_->Refresh().ok()) return Sw(StatusWord::kRandomFailure);
  auto sig = crypto::SignDigest(**key, c.data);
  if (!sig.ok()) return Sw(StatusWord::kInternal);
  return Reply(StatusWord::kOk, std::move(sig).value());
}

ApduResponse SecureElement::VerifySignature(const ApduCommand& c) {
  ByteView d(c.data);
  std::shared_ptr<const crypto::PublicKey> key;
  auto take_key = [&](uint8_t curve_byte, ByteView point) -> StatusWord {
    auto curve = CurveFromByte(curve_byte);
    if (!curve) return StatusWord::kWrongData;
    if (rng_) {
      auto pub = rng_->drbg().EcPublicKey(*curve, point);
      if (!pub.ok()) return StatusWord::kWrongData;
      key = std::move(pub).value();
      return StatusWord::kOk;
    }
    auto pub = crypto::EcPublicKeyFromPoint(*curve, point, Context());
    if (!pub.ok()) return StatusWord::kWrongData;
    key = std::make_shared<const crypto::PublicKey>(std::move(pub).value());
    return StatusWord::kOk;
  };
  if (c.p1 == 0x00) {
    if (d.size() < 2 || d.size() < 2u + d[1]) return Sw(StatusWord::kWrongLength);
    StatusWord sw = take_key(d[0], d.subspan(2, d[1]));
    if (sw != StatusWord::kOk) return Sw(sw);
    d = d.subspan(2u + d[1]);
  } else if (c.p1 == 0x01) {
    if (d.size() < 2) return Sw(StatusWord::kWrongLength);
    auto it = state_.files.find(static_cast<uint16_t>(d[0] << 8 | d[1]));
    if (it == state_.files.end()) return Sw(StatusWord::kNotFound);
    if (!Allowed(it->second.read_ac)) return Sw(StatusWord::kSecurityNotSatisfied);
    const Bytes& f = it->second.data;
    if (f.empty()) return Sw(StatusWord::kWrongData);
    StatusWord sw = take_key(f[0], ByteView(f).subspan(1));
    if (sw != StatusWord::kOk) return Sw(sw);
    d = d.subspan(2);
  } else {
    return Sw(StatusWord::kWrongP1P2);
  }
  if (d.empty() || d.size() < 1u + d[0]) return Sw(StatusWord::kWrongLength);
  ByteView digest = d.subspan(1, d[0]);
  ByteView signature = d.subspan(1u + d[0]);
  if (signature.empty()) return Sw(StatusWord::kWrongLength);
  if (!crypto::VerifyDigest(key->get(), digest, signature, Context()).ok()) {
    return ApduResponse{{}, kStatusVerifyFailed};
  }
  return Sw(StatusWord::kOk);
}

ApduResponse SecureElement::Ecdh(const ApduCommand& c) {
  StatusWord sw = StatusWord::kOk;
  auto key = LoadKey(c.p1, &sw);
  if (!key.ok()) return Sw(sw);
  auto curve = (*key)->algorithm().type;
  if (!curve) return Sw(StatusWord::kInternal);
  auto peer = crypto::EcPublicKeyFromPoint(*curve, c.data, (*key)->context());
  if (!peer.ok()) return Sw(StatusWord::kWrongData);
  auto secret = crypto::DeriveSharedSecret(**key, peer->get());
  if (!secret.ok()) return Sw(StatusWord::kWrongData);
  return Reply(StatusWord::kOk, std::move(secret).value());
}

ApduResponse SecureElement::CreateFile(const ApduCommand& c) {
  if (c.data.size() != 4) return Sw(StatusWord::kWrongLength);
  uint16_t max = static_cast<uint16_t>(c.data[0] << 8 | c.data[1]);
  uint8_t read_ac = c.data[2];
  uint8_t write_ac = c.data[3];
  auto valid_ac = [](uint8_t ac) { return ac == 0x00 || ac == 0x01 || ac == 0xFF; };
  if (max == 0 || !valid_ac(read_ac) || !valid_ac(write_ac)) return Sw(StatusWord::kWrongData);
  // Files are laid out by the personaliser, or by the holder of the PIN.
  if (state_.lifecycle == Lifecycle::kOperational && !session_->pin_verified)
    return Sw(StatusWord::kSecurityNotSatisfied);
  if (state_.files.count(FileId(c)) != 0) return Sw(StatusWord::kConditionsNotSatisfied);
  if (UsedNvm(state_) + kFileCost + max > kNvmCapacity) return Sw(StatusWord::kNoSpace);
  State next = Copy(state_);
  next.files[FileId(c)] = File{max, read_ac, write_ac, {}};
  return Sw(Commit(std::move(next)));
}

ApduResponse SecureElement::ReadFile(const ApduCommand& c) {
  auto it = state_.files.find(FileId(c));
  if (it == state_.files.end()) return Sw(StatusWord::kNotFound);
  if (!Allowed(it->second.read_ac)) return Sw(StatusWord::kSecurityNotSatisfied);
  return Reply(StatusWord::kOk, it->second.data);
}

ApduResponse SecureElement::WriteFile(const ApduCommand& c) {
  auto it = state_.files.find(FileId(c));
  if (it == state_.files.end()) return Sw(StatusWord::kNotFound);
  bool personalising = state_.lifecycle != Lifecycle::kOperational;
  if (!personalising && !Allowed(it->second.write_ac)) return Sw(StatusWord::kSecurityNotSatisfied);
  if (c.data.size() > it->second.max_size) return Sw(StatusWord::kNoSpace);
  State next = Copy(state_);
  next.files[FileId(c)].data = c.data;
  return Sw(Commit(std::move(next)));
}

ApduResponse SecureElement::ListFiles() const {
  Bytes out;
  for (const auto& [id, f] : state_.files) {
    PutU16(out, id);
    PutU16(out, f.data.size());
    PutU16(out, f.max_size);
    out.push_back(f.read_ac);
    out.push_back(f.write_ac);
  }
  return Reply(StatusWord::kOk, out);
}

ApduResponse SecureElement::Sha256(const ApduCommand& c) {
  return Reply(StatusWord::kOk, crypto::Sha256(c.data));
}

ApduResponse SecureElement::Counter(const ApduCommand& c) {
  if (c.p1 >= kCounters || c.p2 > 1) return Sw(StatusWord::kWrongP1P2);
  uint64_t value = state_.counters.count(c.p1) != 0 ? state_.counters.at(c.p1) : 0;
  if (c.p2 == 1) {
    if (value == UINT64_MAX) return Sw(StatusWord::kConditionsNotSatisfied);
    // The new value is sealed in NVM before it is reported: it never goes back.
    State next = Copy(state_);
    next.counters[c.p1] = ++value;
    StatusWord sw = Commit(std::move(next));
    if (sw != StatusWord::kOk) return Sw(sw);
  }
  Bytes out;
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
  return Reply(StatusWord::kOk, out);
}

ApduResponse SecureElement::Authenticate(const ApduCommand& c) {
  if (c.p1 == 0x02) {
    if (c.p2 == 0x00) {
      if (!rng_) return Sw(StatusWord::kRandomFailure);
      auto challenge = rng_->Generate(16);
      if (!challenge.ok()) return Sw(StatusWord::kRandomFailure);
      session_->challenge = *challenge;
      return Reply(StatusWord::kOk, std::move(challenge).value());
    }
    if (c.p2 != 0x01) return Sw(StatusWord::kWrongP1P2);
    if (session_->challenge.empty()) return Sw(StatusWord::kConditionsNotSatisfied);
    auto expected = crypto::HmacSha256(state_.manufacturer_key.view(), session_->challenge);
    session_->challenge.clear();  // one answer per challenge
    session_->manufacturer_verified =
        expected.ok() && crypto::ConstantTimeEquals(*expected, c.data);
    return Sw(session_->manufacturer_verified ? StatusWord::kOk
                                              : StatusWord::kSecurityNotSatisfied);
  }
  if (c.p1 == 0x03) {
    if (!session_->manufacturer_verified) return Sw(StatusWord::kSecurityNotSatisfied);
    if (c.data.size() < 4 || c.data.size() > 16) return Sw(StatusWord::kWrongLength);
    State next = Copy(state_);
    auto salt = rng_ ? rng_->Generate(16) : Result<Bytes>(MakeError(ErrorCode::kCrypto, "no RNG"));
    if (!salt.ok()) return Sw(StatusWord::kRandomFailure);
    next.pin_salt = *salt;
    next.pin_hash =
        PinHash(next.pin_salt,
                std::string_view(reinterpret_cast<const char*>(c.data.data()), c.data.size()));
    next.pin_tries = kPinTries;
    session_->pin_verified = false;
    session_->manufacturer_verified = false;  // one reset per authentication
    return Sw(Commit(std::move(next)));
  }
  if (c.p1 != 0x01) return Sw(StatusWord::kWrongP1P2);
  if (state_.pin_tries <= 0) return Sw(StatusWord::kAuthenticationBlocked);
  // Spend the try first, sealed in NVM, and only then compare: a host that
  // cuts power as soon as it sees which way a guess goes (an answer, or a
  // write) must still have paid for the guess. Every guess costs one commit.
  {
    State spent = Copy(state_);
    spent.pin_tries = state_.pin_tries - 1;
    StatusWord sw = Commit(std::move(spent));
    if (sw != StatusWord::kOk) return Sw(sw);
  }
  std::string pin(c.data.begin(), c.data.end());
  Bytes hash = PinHash(state_.pin_salt, pin);
  SecureZero(pin.data(), pin.size());
  bool match = crypto::ConstantTimeEquals(hash, state_.pin_hash);
  session_->pin_verified = false;
  if (match) {
    State restored = Copy(state_);
    restored.pin_tries = kPinTries;
    StatusWord sw = Commit(std::move(restored));
    if (sw != StatusWord::kOk) return Sw(sw);
    session_->pin_verified = true;
    return Sw(StatusWord::kOk);
  }
  if (state_.pin_tries == 0) return Sw(StatusWord::kAuthenticationBlocked);
  return ApduResponse{{}, PinTriesLeftWord(state_.pin_tries)};
}

ApduResponse SecureElement::SetLifecycle(const ApduCommand& c) {
  if (c.p1 < 2 || c.p1 > 4) return Sw(StatusWord::kWrongP1P2);
  auto target = static_cast<Lifecycle>(c.p1);
  if (tampered_) {
    // Terminating a tampered chip: a fresh, empty, terminated state replaces the image.
    State dead;
    dead.lifecycle = Lifecycle::kTerminated;
    dead.pin_tries = 0;
    auto bytes = Serialize(dead);
    if (!bytes.ok() || !nvm_.Save(*bytes, SealKey::kRotate).ok()) return Sw(StatusWord::kInternal);
    state_ = std::move(dead);
    tampered_ = false;
    session_->volatile_slot.reset();
    return Sw(StatusWord::kOk);
  }
  if (static_cast<int>(target) <= static_cast<int>(state_.lifecycle)) {
    return Sw(StatusWord::kConditionsNotSatisfied);  // forward only
  }
  if (state_.lifecycle == Lifecycle::kOperational && !session_->pin_verified) {
    return Sw(StatusWord::kSecurityNotSatisfied);
  }
  State next = Copy(state_);
  next.lifecycle = target;
  if (target == Lifecycle::kTerminated) {
    // Zeroise: keys, files, PIN; the serial stays so the chip can be identified.
    next.slots.clear();
    next.files.clear();
    next.pin_hash.clear();
    next.pin_tries = 0;
    next.transport = SecretBytes();
    next.manufacturer_key = SecretBytes();
    session_->volatile_slot.reset();
  }
  session_->pin_verified = false;
  session_->manufacturer_verified = false;
  // Terminated: sealed under a fresh key, so no earlier image opens again.
  return Sw(Commit(std::move(next),
                   target == Lifecycle::kTerminated ? SealKey::kRotate : SealKey::kKeep));
}

}  // namespace devid::se

namespace devid::se {

ApduResponse SecureElement::ImportKey(const ApduCommand& c) {
  // seed fig. 2 step 5: keys made outside the chip enter only while it is being personalised.
  if (state_.lifecycle != Lifecycle::kManufacturing &&
      state_.lifecycle != Lifecycle::kPersonalised) {
    return Sw(StatusWord::kConditionsNotSatisfied);
  }
  // Only the personaliser, who holds the manufacturer key, may put keys in.
  if (!session_->manufacturer_verified) return Sw(StatusWord::kSecurityNotSatisfied);
  if (c.p1 >= kPersistentSlots || (c.p2 & 0x7F) != 0) return Sw(StatusWord::kWrongP1P2);
  constexpr size_t kPoint = 65;
  if (c.data.size() < kPoint + crypto::kAesGcmNonceSize + crypto::kAesGcmTagSize + 1) {
    return Sw(StatusWord::kWrongLength);
  }
  ByteView d(c.data);
  ByteView ephemeral = d.first(kPoint);
  ByteView nonce = d.subspan(kPoint, crypto::kAesGcmNonceSize);
  ByteView sealed = d.subspan(kPoint + crypto::kAesGcmNonceSize);
  StatusWord transport_sw = StatusWord::kOk;
  auto transport = TransportKey(&transport_sw);
  if (!transport.ok()) return Sw(transport_sw);
  auto peer = crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, ephemeral, Context());
  if (!peer.ok()) return Sw(StatusWord::kWrongData);
  auto shared = crypto::DeriveSharedSecret(*transport, peer->get());
  if (!shared.ok()) return Sw(StatusWord::kWrongData);
  static constexpr char kInfo[] = "devid IMPORT_KEY v1";
  auto kek = crypto::HkdfSha256(*shared, ephemeral, AsBytes(kInfo), 32);
  SecureZero(shared->data(), shared->size());
  if (!kek.ok()) return Sw(StatusWord::kInternal);
  Bytes aad = {c.p1, c.p2};
  auto pkcs8 = crypto::AesGcmOpen(*kek, nonce, aad, sealed);
  SecureZero(kek->data(), kek->size());
  if (!pkcs8.ok()) return Sw(StatusWord::kWrongData);  // not wrapped for this chip, or altered
  auto key = crypto::PrivateKey::FromPkcs8Der(*pkcs8);
  auto curve = key.ok() ? key->algorithm().type : std::nullopt;
  if (!curve || *curve == crypto::KeyType::kRsa3072) {
    SecureZero(pkcs8->data(), pkcs8->size());
    return Sw(StatusWord::kWrongData);
  }
  auto existing = state_.slots.find(c.p1);
  if (existing == state_.slots.end() && UsedNvm(state_) + kSlotCost > kNvmCapacity) {
    SecureZero(pkcs8->data(), pkcs8->size());
    return Sw(StatusWord::kNoSpace);
  }
  State next = Copy(state_);
  next.slots[c.p1] =
      KeySlot{*curve, (c.p2 & 0x80) != 0, SecretBytes(*pkcs8),
              std::make_shared<const crypto::PrivateKey>(std::move(key).value()), false};
  SecureZero(pkcs8->data(), pkcs8->size());
  return Sw(Commit(std::move(next)));
}

ApduResponse SecureElement::Aes(const ApduCommand& c) {
  const KeySlot* k = FindSlot(c.p1);
  if (k == nullptr) return Sw(StatusWord::kNotFound);
  if (!k->aes) return Sw(StatusWord::kConditionsNotSatisfied);
  if (k->needs_pin && !session_->pin_verified) return Sw(StatusWord::kSecurityNotSatisfied);
  if (c.p2 > 1) return Sw(StatusWord::kWrongP1P2);
  ByteView d(c.data);
  // Encrypt: aad_len aad text; the chip draws the nonce (GCM must never reuse
  // one under a key, so the caller does not choose it) -> nonce || ciphertext || tag.
  // Decrypt: nonce aad_len aad ciphertext||tag -> plaintext.
  size_t nonce_len = c.p2 == 1 ? crypto::kAesGcmNonceSize : 0;
  if (d.size() < nonce_len + 1) return Sw(StatusWord::kWrongLength);
  size_t aad_len = d[nonce_len];
  if (d.size() < nonce_len + 1 + aad_len) return Sw(StatusWord::kWrongLength);
  ByteView aad = d.subspan(nonce_len + 1, aad_len);
  ByteView text = d.subspan(nonce_len + 1 + aad_len);
  if (c.p2 == 0) {
    if (!rng_) return Sw(StatusWord::kRandomFailure);
    auto nonce = rng_->Generate(crypto::kAesGcmNonceSize);
    if (!nonce.ok()) return Sw(StatusWord::kRandomFailure);
    auto sealed = crypto::AesGcmSeal(k->pkcs8.view(), *nonce, aad, text);
    if (!sealed.ok()) return Sw(StatusWord::kInternal);
    Bytes out = std::move(nonce).value();
    out.insert(out.end(), sealed->begin(), sealed->end());
    return Reply(StatusWord::kOk, std::move(out));
  }
  auto plain = crypto::AesGcmOpen(k->pkcs8.view(), d.first(crypto::kAesGcmNonceSize), aad, text);
  if (!plain.ok()) return ApduResponse{{}, kStatusVerifyFailed};
  return Reply(StatusWord::kOk, std::move(plain).value());
}

}  // namespace devid::se
