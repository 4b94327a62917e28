// libdevid-pkcs11.so: a PKCS#11 v2.40 module over the chip's host library.
// One slot per configured chip (config.h). Objects: each key slot holding an
// EC key gives a private key (sensitive, never extractable, visible after
// C_Login) and a public key; the certificates in the chip's chain file give
// certificate objects; ECDH gives session secret keys. Mechanisms:
// CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKM_ECDSA_SHA256, CKM_ECDH1_DERIVE,
// CKM_SHA256; C_GenerateRandom is the chip's GET_RANDOM. Every entry point
// takes one module-wide lock: the chips run one command at a time anyway.
#include <p11-kit/pkcs11.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crypto/certificate.h"
#include "crypto/key.h"
#include "pkcs11/config.h"
#include "pkcs11/module.h"
#include "se/host/client.h"

namespace devid::pkcs11 {
namespace {

constexpr int kKeySlots = 16;
constexpr size_t kMaxDigestInput = 60000;  // the chip's SHA256 takes one frame

enum Kind : CK_ULONG { kPrivateKey = 1, kPublicKey = 2, kCertificate = 3, kSecret = 4 };

// Handles: slot + 1 in bits 24..31, kind in 16..23, index in 0..15.
CK_OBJECT_HANDLE MakeHandle(CK_SLOT_ID slot, Kind kind, CK_ULONG index) {
  return (slot + 1) << 24 | static_cast<CK_ULONG>(kind) << 16 | index;
}

struct Token {
  std::string locator;
  std::optional<se::ChipClient> chip;
  bool logged_in = false;

  Status Open() {
    if (chip) return {};
    std::string image, socket;
    if (locator.starts_with("image=")) image = locator.substr(6);
    if (locator.starts_with("socket=")) socket = locator.substr(7);
    DEVID_ASSIGN_OR_RETURN(se::ChipClient c, se::ChipClient::Open(image, socket));
    chip.emplace(std::move(c));
    return {};
  }
};

// One object's attributes, encoded as PKCS#11 hands them out.
struct Object {
  Kind kind = kPublicKey;
  CK_SESSION_HANDLE owner = 0;  // session objects (ECDH secrets): the session that made it
  std::map<CK_ATTRIBUTE_TYPE, Bytes> attributes;
  // Keys: where the private key is.
  uint8_t key_slot = 0;
  crypto::KeyType curve = crypto::KeyType::kEcP256;
  Bytes point;
  std::vector<CK_ATTRIBUTE_TYPE> sensitive;  // present but never revealed

  void Set(CK_ATTRIBUTE_TYPE type, ByteView value) {
    attributes[type].assign(value.begin(), value.end());
  }
  void SetBool(CK_ATTRIBUTE_TYPE type, bool value) {
    Set(type, Bytes{static_cast<uint8_t>(value ? CK_TRUE : CK_FALSE)});
  }
  void SetUlong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
    Set(type, ByteView(reinterpret_cast<const uint8_t*>(&value), sizeof value));
  }
};

struct Operation {
  CK_MECHANISM_TYPE mechanism = 0;
  CK_OBJECT_HANDLE key = 0;
  Bytes data;
};

struct Session {
  CK_SLOT_ID slot = 0;
  CK_FLAGS flags = 0;
  std::optional<std::vector<CK_OBJECT_HANDLE>> found;
  size_t found_next = 0;
  std::optional<Operation> sign, verify, digest;
};

struct Module {
  std::vector<Token> tokens;
  std::map<CK_SESSION_HANDLE, Session> sessions;
  CK_SESSION_HANDLE next_session = 1;
  std::map<CK_OBJECT_HANDLE, Object> secrets;  // session objects (ECDH results)
  CK_ULONG next_secret = 1;
};

std::mutex g_mu;
std::unique_ptr<Module> g_module;

void Pad(unsigned char* field, size_t size, std::string_view text) {
  std::memset(field, ' ', size);
  std::memcpy(field, text.data(), std::min(size, text.size()));
}

// RFC 5480 namedCurve OIDs as CKA_EC_PARAMS carries them.
const Bytes kP256Params = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
const Bytes kP384Params = {0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22};

size_t CoordinateSize(crypto::KeyType curve) { return curve == crypto::KeyType::kEcP384 ? 48 : 32; }

Object KeyObject(Kind kind, CK_SLOT_ID, uint8_t key_slot, crypto::KeyType curve, Bytes point) {
  Object o;
  o.kind = kind;
  o.key_slot = key_slot;
  o.curve = curve;
  o.point = std::move(point);
  bool priv = kind == kPrivateKey;
  o.SetUlong(CKA_CLASS, priv ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY);
  o.SetUlong(CKA_KEY_TYPE, CKK_EC);
  o.SetBool(CKA_TOKEN, true);
  o.SetBool(CKA_PRIVATE, priv);
  o.SetBool(CKA_MODIFIABLE, false);
  o.Set(CKA_ID, Bytes{key_slot});
  std::string label = "slot " + std::to_string(key_slot);
  o.Set(CKA_LABEL, AsBytes(label));
  o.Set(CKA_EC_PARAMS, curve == crypto::KeyType::kEcP384 ? kP384Params : kP256Params);
  o.SetBool(CKA_DERIVE, priv);
  o.SetBool(CKA_LOCAL, true);
  o.SetUlong(CKA_KEY_GEN_MECHANISM, CKM_EC_KEY_PAIR_GEN);
  if (priv) {
    o.SetBool(CKA_SIGN, true);
    o.SetBool(CKA_DECRYPT, false);
    o.SetBool(CKA_UNWRAP, false);
    o.SetBool(CKA_SENSITIVE, true);
    o.SetBool(CKA_ALWAYS_SENSITIVE, true);
    o.SetBool(CKA_EXTRACTABLE, false);
    o.SetBool(CKA_NEVER_EXTRACTABLE, true);
    o.SetBool(CKA_ALWAYS_AUTHENTICATE, false);
    o.sensitive = {CKA_VALUE};
  } else {
    o.SetBool(CKA_VERIFY, true);
    o.SetBool(CKA_ENCRYPT, false);
    o.SetBool(CKA_WRAP, false);
    // CKA_EC_POINT: the DER OCTET STRING holding the uncompressed point.
    Bytes ec_point = {0x04, static_cast<uint8_t>(o.point.size())};
    ec_point.insert(ec_point.end(), o.point.begin(), o.point.end());
    o.Set(CKA_EC_POINT, ec_point);
  }
  return o;
}

// The certificates of the chain file; the one whose key is in a key slot gets
// that slot's CKA_ID, as applications pair certificates and keys by it.
Result<std::vector<Object>> CertificateObjects(Token& token,
                                               const std::map<uint8_t, Bytes>& key_points) {
  auto pem = token.chip->ReadFile(se::kCertificateChainFile);
  if (!pem.ok()) {
    if (pem.error().code == ErrorCode::kNotFound || pem.error().code == ErrorCode::kAuth) {
      return std::vector<Object>{};
    }
    return pem.error();
  }
  auto chain = crypto::Certificate::ParsePemChain(*pem);
  if (!chain.ok()) return std::vector<Object>{};  // not a chain: no certificate objects
  std::vector<Object> out;
  for (size_t i = 0; i < chain->size() && i < 16; ++i) {
    const crypto::Certificate& cert = (*chain)[i];
    Object o;
    o.kind = kCertificate;
    o.SetUlong(CKA_CLASS, CKO_CERTIFICATE);
    o.SetUlong(CKA_CERTIFICATE_TYPE, CKC_X_509);
    o.SetBool(CKA_TOKEN, true);
    o.SetBool(CKA_PRIVATE, false);
    o.SetBool(CKA_MODIFIABLE, false);
    o.SetBool(CKA_TRUSTED, false);
    auto der = cert.ToDer();
    auto subject = cert.SubjectDer();
    auto issuer = cert.IssuerDer();
    auto serial = cert.SerialDer();
    if (!der.ok() || !subject.ok() || !issuer.ok() || !serial.ok()) continue;
    o.Set(CKA_VALUE, *der);
    o.Set(CKA_SUBJECT, *subject);
    o.Set(CKA_ISSUER, *issuer);
    o.Set(CKA_SERIAL_NUMBER, *serial);
    Bytes id = {0xCA, static_cast<uint8_t>(i)};
    std::string label = i == 0 ? "device certificate" : "CA certificate " + std::to_string(i);
    if (auto pub = cert.public_key(); pub.ok()) {
      if (auto point = pub->EcPoint(); point.ok()) {
        for (const auto& [slot, p] : key_points) {
          if (p == point->second) {
            id = {slot};
            label = "slot " + std::to_string(slot);
          }
        }
      }
    }
    o.Set(CKA_ID, id);
    o.Set(CKA_LABEL, AsBytes(label));
    out.push_back(std::move(o));
  }
  return out;
}

// Every object of a token now, by handle (private keys only after login).
Result<std::map<CK_OBJECT_HANDLE, Object>> TokenObjects(CK_SLOT_ID slot) {
  Token& token = g_module->tokens[slot];
  DEVID_TRY(token.Open());
  std::map<CK_OBJECT_HANDLE, Object> objects;
  std::map<uint8_t, Bytes> points;
  for (int i = 0; i < kKeySlots; ++i) {
    auto pub = token.chip->ReadPublicKey(static_cast<uint8_t>(i));
    if (!pub.ok()) continue;  // empty slot, or an AES key
    auto key_slot = static_cast<uint8_t>(i);
    points[key_slot] = pub->second;
    objects[MakeHandle(slot, kPublicKey, key_slot)] =
        KeyObject(kPublicKey, slot, key_slot, pub->first, pub->second);
    if (token.logged_in) {
      objects[MakeHandle(slot, kPrivateKey, key_slot)] =
          KeyObject(kPrivateKey, slot, key_slot, pub->first, pub->second);
    }
  }
  DEVID_ASSIGN_OR_RETURN(std::vector<Object> certs, CertificateObjects(token, points));
  for (size_t i = 0; i < certs.size(); ++i) {
    objects[MakeHandle(slot, kCertificate, i)] = std::move(certs[i]);
  }
  return objects;
}

Result<Object> FindObject(CK_SLOT_ID slot, CK_OBJECT_HANDLE handle) {
  if ((handle >> 24) != slot + 1) return MakeError(ErrorCode::kNotFound, "no such object");
  auto secret = g_module->secrets.find(handle);
  if (secret != g_module->secrets.end()) {
    // Private session objects exist for the logged-in user only.
    if (!g_module->tokens[slot].logged_in) return MakeError(ErrorCode::kNotFound, "no such object");
    return secret->second;
  }
  DEVID_ASSIGN_OR_RETURN(auto objects, TokenObjects(slot));
  auto it = objects.find(handle);
  if (it == objects.end()) return MakeError(ErrorCode::kNotFound, "no such object");
  return it->second;
}

// Wipes and forgets the session objects `which` selects.
template <typename Which>
void DropSecrets(Which which) {
  for (auto it = g_module->secrets.begin(); it != g_module->secrets.end();) {
    if (which(it->first, it->second)) {
      Bytes& v = it->second.attributes[CKA_VALUE];
      SecureZero(v.data(), v.size());
      it = g_module->secrets.erase(it);
    } else {
      ++it;
    }
  }
}

// The token's chip connection, reopened if a logout closed it.
CK_RV EnsureOpen(Token& token) { return token.Open().ok() ? CKR_OK : CKR_DEVICE_REMOVED; }

CK_RV ErrorToRv(const Error& e) {
  switch (e.code) {
    case ErrorCode::kAuth:
      return CKR_USER_NOT_LOGGED_IN;
    case ErrorCode::kNotFound:
      return CKR_OBJECT_HANDLE_INVALID;
    case ErrorCode::kInvalidInput:
      return CKR_ARGUMENTS_BAD;
    case ErrorCode::kTamper:
      return CKR_DEVICE_ERROR;
    case ErrorCode::kIo:
      return CKR_DEVICE_REMOVED;
    default:
      return CKR_FUNCTION_FAILED;
  }
}

Result<Session*> GetSession(CK_SESSION_HANDLE h, CK_RV* rv) {
  if (!g_module) {
    *rv = CKR_CRYPTOKI_NOT_INITIALIZED;
    return MakeError(ErrorCode::kInternal, "");
  }
  auto it = g_module->sessions.find(h);
  if (it == g_module->sessions.end()) {
    *rv = CKR_SESSION_HANDLE_INVALID;
    return MakeError(ErrorCode::kInternal, "");
  }
  return &it->second;
}

#define DEVID_SESSION(var, handle)                   \
  std::lock_guard<std::mutex> lock(g_mu);            \
  CK_RV session_rv = CKR_OK;                         \
  auto session_or = GetSession(handle, &session_rv); \
  if (!session_or.ok()) return session_rv;           \
  Session* var = *session_or;                        \
  Token& token = g_module->tokens[var->slot];        \
  (void)token

// Copies `value` out as C_GetAttributeValue / C_Sign do: a null buffer asks
// for the size, a short one gets CKR_BUFFER_TOO_SMALL.
CK_RV Output(ByteView value, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  if (out_len == nullptr) return CKR_ARGUMENTS_BAD;
  if (out == nullptr) {
    *out_len = value.size();
    return CKR_OK;
  }
  if (*out_len < value.size()) {
    *out_len = value.size();
    return CKR_BUFFER_TOO_SMALL;
  }
  std::memcpy(out, value.data(), value.size());
  *out_len = value.size();
  return CKR_OK;
}

CK_RV CK_SPEC Initialize(void* init_args) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_module) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
  if (init_args != nullptr) {
    auto* args = static_cast<CK_C_INITIALIZE_ARGS*>(init_args);
    if (args->pReserved != nullptr) return CKR_ARGUMENTS_BAD;
    // Locking is the module's own (OS primitives); callbacks without
    // CKF_OS_LOCKING_OK would demand the application's.
    if (args->CreateMutex != nullptr && (args->flags & CKF_OS_LOCKING_OK) == 0)
      return CKR_CANT_LOCK;
  }
  auto chips = ChipsFromEnvironment();
  if (!chips.ok()) {
    std::fprintf(stderr, "devid-pkcs11: %s\n", chips.error().message.c_str());
    return CKR_GENERAL_ERROR;
  }
  auto module = std::make_unique<Module>();
  for (const std::string& locator : *chips) module->tokens.push_back(Token{locator, {}, false});
  g_module = std::move(module);
  return CKR_OK;
}

CK_RV CK_SPEC Finalize(void* reserved) {
  if (reserved != nullptr) return CKR_ARGUMENTS_BAD;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  DropSecrets([](CK_OBJECT_HANDLE, const Object&) { return true; });
  g_module.reset();
  return CKR_OK;
}

CK_RV CK_SPEC GetInfo(CK_INFO_PTR info) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  info->cryptokiVersion = {2, 40};
  Pad(info->manufacturerID, sizeof info->manufacturerID, "devid");
  info->flags = 0;
  Pad(info->libraryDescription, sizeof info->libraryDescription, "devid secure element");
  info->libraryVersion = {0, 1};
  return CKR_OK;
}

CK_RV CK_SPEC GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (count == nullptr) return CKR_ARGUMENTS_BAD;
  std::vector<CK_SLOT_ID> slots;
  for (CK_SLOT_ID i = 0; i < g_module->tokens.size(); ++i) {
    if (token_present == CK_TRUE && !g_module->tokens[i].Open().ok()) continue;
    slots.push_back(i);
  }
  if (list == nullptr) {
    *count = slots.size();
    return CKR_OK;
  }
  if (*count < slots.size()) {
    *count = slots.size();
    return CKR_BUFFER_TOO_SMALL;
  }
  std::copy(slots.begin(), slots.end(), list);
  *count = slots.size();
  return CKR_OK;
}

CK_RV CK_SPEC GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (slot >= g_module->tokens.size()) return CKR_SLOT_ID_INVALID;
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  Token& token = g_module->tokens[slot];
  Pad(info->slotDescription, sizeof info->slotDescription, "devid chip " + token.locator);
  Pad(info->manufacturerID, sizeof info->manufacturerID, "devid");
  info->flags = token.Open().ok() ? CKF_TOKEN_PRESENT : 0;
  info->hardwareVersion = {1, 0};
  info->firmwareVersion = {1, 0};
  return CKR_OK;
}

CK_RV CK_SPEC GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (slot >= g_module->tokens.size()) return CKR_SLOT_ID_INVALID;
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  Token& token = g_module->tokens[slot];
  if (!token.Open().ok()) return CKR_TOKEN_NOT_PRESENT;
  auto chip = token.chip->GetInfo();
  if (!chip.ok()) return ErrorToRv(chip.error());
  Pad(info->label, sizeof info->label, "devid " + chip->serial);
  Pad(info->manufacturerID, sizeof info->manufacturerID, "devid");
  Pad(info->model, sizeof info->model, "software SE");
  Pad(info->serialNumber, sizeof info->serialNumber, chip->serial);
  info->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;
  if (chip->pin_tries == 0) info->flags |= CKF_USER_PIN_LOCKED;
  if (chip->pin_tries == 1) info->flags |= CKF_USER_PIN_FINAL_TRY;
  if (chip->pin_tries > 0 && chip->pin_tries < se::kPinTries) info->flags |= CKF_USER_PIN_COUNT_LOW;
  CK_ULONG open = 0;
  CK_ULONG rw = 0;
  for (const auto& [h, s] : g_module->sessions) {
    if (s.slot != slot) continue;
    ++open;
    if ((s.flags & CKF_RW_SESSION) != 0) ++rw;
  }
  info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
  info->ulSessionCount = open;
  info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
  info->ulRwSessionCount = rw;
  info->ulMaxPinLen = 16;
  info->ulMinPinLen = 4;
  info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulFreePublicMemory = chip->free_nvm;
  info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
  info->hardwareVersion = {1, 0};
  info->firmwareVersion = {static_cast<CK_BYTE>(chip->firmware_major),
                           static_cast<CK_BYTE>(chip->firmware_minor)};
  Pad(info->utcTime, sizeof info->utcTime, "");
  return CKR_OK;
}

struct MechanismSpec {
  CK_MECHANISM_TYPE type;
  CK_FLAGS flags;
};
constexpr CK_FLAGS kEcFlags = CKF_HW | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
constexpr MechanismSpec kMechanisms[] = {
    {CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR | kEcFlags},
    {CKM_ECDSA, CKF_SIGN | CKF_VERIFY | kEcFlags},
    {CKM_ECDSA_SHA256, CKF_SIGN | CKF_VERIFY | kEcFlags},
    {CKM_ECDH1_DERIVE, CKF_DERIVE | kEcFlags},
    {CKM_SHA256, CKF_DIGEST | CKF_HW},
};

CK_RV CK_SPEC GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (slot >= g_module->tokens.size()) return CKR_SLOT_ID_INVALID;
  if (count == nullptr) return CKR_ARGUMENTS_BAD;
  constexpr CK_ULONG n = sizeof kMechanisms / sizeof kMechanisms[0];
  if (list == nullptr) {
    *count = n;
    return CKR_OK;
  }
  if (*count < n) {
    *count = n;
    return CKR_BUFFER_TOO_SMALL;
  }
  for (CK_ULONG i = 0; i < n; ++i) list[i] = kMechanisms[i].type;
  *count = n;
  return CKR_OK;
}

CK_RV CK_SPEC GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                               CK_MECHANISM_INFO_PTR info) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (slot >= g_module->tokens.size()) return CKR_SLOT_ID_INVALID;
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  for (const MechanismSpec& m : kMechanisms) {
    if (m.type != type) continue;
    info->ulMinKeySize = type == CKM_SHA256 ? 0 : 256;
    info->ulMaxKeySize = type == CKM_SHA256 ? 0 : 384;
    info->flags = m.flags;
    return CKR_OK;
  }
  return CKR_MECHANISM_INVALID;
}

CK_RV CK_SPEC OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void*, CK_NOTIFY,
                          CK_SESSION_HANDLE_PTR out) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (slot >= g_module->tokens.size()) return CKR_SLOT_ID_INVALID;
  if (out == nullptr) return CKR_ARGUMENTS_BAD;
  if ((flags & CKF_SERIAL_SESSION) == 0) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
  if (!g_module->tokens[slot].Open().ok()) return CKR_TOKEN_NOT_PRESENT;
  CK_SESSION_HANDLE h = g_module->next_session++;
  g_module->sessions[h] = Session{slot, flags, {}, 0, {}, {}, {}};
  *out = h;
  return CKR_OK;
}

// PKCS#11 §5.6: when the last session of a token closes, it is logged out.
void LogoutIfIdle(CK_SLOT_ID slot) {
  for (const auto& [h, s] : g_module->sessions) {
    if (s.slot == slot) return;
  }
  Token& token = g_module->tokens[slot];
  if (token.logged_in) {
    token.logged_in = false;
    token.chip.reset();  // a new connection: the chip forgets the PIN
    DropSecrets([slot](CK_OBJECT_HANDLE h, const Object&) { return (h >> 24) == slot + 1; });
  }
}

CK_RV CK_SPEC CloseSession(CK_SESSION_HANDLE h) {
  DEVID_SESSION(session, h);
  CK_SLOT_ID slot = session->slot;
  g_module->sessions.erase(h);
  DropSecrets([h](CK_OBJECT_HANDLE, const Object& o) { return o.owner == h; });
  LogoutIfIdle(slot);
  return CKR_OK;
}

CK_RV CK_SPEC CloseAllSessions(CK_SLOT_ID slot) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_module) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (slot >= g_module->tokens.size()) return CKR_SLOT_ID_INVALID;
  std::erase_if(g_module->sessions, [slot](const auto& e) { return e.second.slot == slot; });
  DropSecrets([slot](CK_OBJECT_HANDLE h, const Object&) { return (h >> 24) == slot + 1; });
  LogoutIfIdle(slot);
  return CKR_OK;
}

CK_RV CK_SPEC GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info) {
  DEVID_SESSION(session, h);
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  bool rw = (session->flags & CKF_RW_SESSION) != 0;
  info->slotID = session->slot;
  info->state = token.logged_in ? (rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS)
                                : (rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION);
  info->flags = session->flags;
  info->ulDeviceError = 0;
  return CKR_OK;
}

CK_RV CK_SPEC Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len) {
  DEVID_SESSION(session, h);
  if (user != CKU_USER) return CKR_USER_TYPE_INVALID;  // the chip has one PIN, the user's
  if (token.logged_in) return CKR_USER_ALREADY_LOGGED_IN;
  // A PIN the chip could never accept is wrong without costing a try.
  if (pin == nullptr || pin_len < 4 || pin_len > 16) return CKR_PIN_INCORRECT;
  SecretString secret(std::string_view(reinterpret_cast<const char*>(pin), pin_len));
  if (!token.Open().ok()) return CKR_DEVICE_REMOVED;
  Status s = token.chip->Authenticate(secret.reveal());
  if (!s.ok()) {
    if (s.error().code != ErrorCode::kAuth) return ErrorToRv(s.error());
    auto info = token.chip->GetInfo();
    return info.ok() && info->pin_tries == 0 ? CKR_PIN_LOCKED : CKR_PIN_INCORRECT;
  }
  token.logged_in = true;
  return CKR_OK;
}

CK_RV CK_SPEC Logout(CK_SESSION_HANDLE h) {
  DEVID_SESSION(session, h);
  if (!token.logged_in) return CKR_USER_NOT_LOGGED_IN;
  token.logged_in = false;
  token.chip.reset();  // a new connection: the chip forgets the PIN
  // PKCS#11 §5.6: private session objects go with the login.
  CK_SLOT_ID slot = session->slot;
  DropSecrets([slot](CK_OBJECT_HANDLE h, const Object&) { return (h >> 24) == slot + 1; });
  return CKR_OK;
}

bool Matches(const Object& o, CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  for (CK_ULONG i = 0; i < count; ++i) {
    auto it = o.attributes.find(templ[i].type);
    if (it == o.attributes.end() || templ[i].pValue == nullptr) return false;
    ByteView want(static_cast<const uint8_t*>(templ[i].pValue), templ[i].ulValueLen);
    if (!std::equal(it->second.begin(), it->second.end(), want.begin(), want.end())) return false;
  }
  return true;
}

CK_RV CK_SPEC FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  DEVID_SESSION(session, h);
  if (session->found) return CKR_OPERATION_ACTIVE;
  if (count > 0 && templ == nullptr) return CKR_ARGUMENTS_BAD;
  auto objects = TokenObjects(session->slot);
  if (!objects.ok()) return ErrorToRv(objects.error());
  std::vector<CK_OBJECT_HANDLE> found;
  for (const auto& [handle, o] : *objects) {
    if (Matches(o, templ, count)) found.push_back(handle);
  }
  for (const auto& [handle, o] : g_module->secrets) {
    if ((handle >> 24) == session->slot + 1 && token.logged_in && Matches(o, templ, count)) {
      found.push_back(handle);
    }
  }
  session->found = std::move(found);
  session->found_next = 0;
  return CKR_OK;
}

CK_RV CK_SPEC FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                          CK_ULONG_PTR count) {
  DEVID_SESSION(session, h);
  if (!session->found) return CKR_OPERATION_NOT_INITIALIZED;
  if (out == nullptr || count == nullptr) return CKR_ARGUMENTS_BAD;
  CK_ULONG n = 0;
  while (n < max && session->found_next < session->found->size()) {
    out[n++] = (*session->found)[session->found_next++];
  }
  *count = n;
  return CKR_OK;
}

CK_RV CK_SPEC FindObjectsFinal(CK_SESSION_HANDLE h) {
  DEVID_SESSION(session, h);
  if (!session->found) return CKR_OPERATION_NOT_INITIALIZED;
  session->found.reset();
  return CKR_OK;
}

CK_RV CK_SPEC GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE object,
                                CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  DEVID_SESSION(session, h);
  if (count > 0 && templ == nullptr) return CKR_ARGUMENTS_BAD;
  auto o = FindObject(session->slot, object);
  if (!o.ok()) return CKR_OBJECT_HANDLE_INVALID;
  CK_RV rv = CKR_OK;
  for (CK_ULONG i = 0; i < count; ++i) {
    CK_ATTRIBUTE& a = templ[i];
    if (std::find(o->sensitive.begin(), o->sensitive.end(), a.type) != o->sensitive.end()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_ATTRIBUTE_SENSITIVE;
      continue;
    }
    auto it = o->attributes.find(a.type);
    if (it == o->attributes.end()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      if (rv == CKR_OK) rv = CKR_ATTRIBUTE_TYPE_INVALID;
      continue;
    }
    if (a.pValue == nullptr) {
      a.ulValueLen = it->second.size();
    } else if (a.ulValueLen < it->second.size()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_BUFFER_TOO_SMALL;
    } else {
      std::memcpy(a.pValue, it->second.data(), it->second.size());
      a.ulValueLen = it->second.size();
    }
  }
  return rv;
}

// Starts a sign or verify operation with an EC key object of `kind`.
CK_RV StartKeyOperation(Session* session, Token& token, std::optional<Operation>& op,
                        CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key, Kind kind) {
  if (op) return CKR_OPERATION_ACTIVE;
  if (mechanism == nullptr) return CKR_ARGUMENTS_BAD;
  if (mechanism->mechanism != CKM_ECDSA && mechanism->mechanism != CKM_ECDSA_SHA256)
    return CKR_MECHANISM_INVALID;
  if (kind == kPrivateKey && !token.logged_in) return CKR_USER_NOT_LOGGED_IN;
  auto o = FindObject(session->slot, key);
  if (!o.ok()) return CKR_KEY_HANDLE_INVALID;
  if (o->kind != kind) return CKR_KEY_TYPE_INCONSISTENT;
  op = Operation{mechanism->mechanism, key, {}};
  return CKR_OK;
}

// The digest the operation's mechanism calls for.
Result<Bytes> OperationDigest(const Operation& op, crypto::KeyType curve) {
  if (op.mechanism == CKM_ECDSA_SHA256)
    return crypto::FitEcdsaDigest(curve, crypto::Sha256(op.data));
  if (op.data.empty() || op.data.size() > 64) {
    return MakeError(ErrorCode::kInvalidInput, "CKM_ECDSA takes a digest");
  }
  return crypto::FitEcdsaDigest(curve, op.data);
}

CK_RV CK_SPEC SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key) {
  DEVID_SESSION(session, h);
  return StartKeyOperation(session, token, session->sign, mechanism, key, kPrivateKey);
}

CK_RV FinishSign(Session* session, Token& token, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
  auto o = FindObject(session->slot, session->sign->key);
  if (!o.ok()) {
    session->sign.reset();
    return CKR_KEY_HANDLE_INVALID;
  }
  size_t size = 2 * CoordinateSize(o->curve);
  if (sig == nullptr) return Output(Bytes(size), nullptr, sig_len);
  if (sig_len == nullptr) return CKR_ARGUMENTS_BAD;
  if (*sig_len < size) {
    *sig_len = size;
    return CKR_BUFFER_TOO_SMALL;  // the operation stays active (PKCS#11 §5.2)
  }
  auto digest = OperationDigest(*session->sign, o->curve);
  session->sign.reset();
  if (!digest.ok()) return CKR_DATA_LEN_RANGE;
  auto der = token.chip->Sign(o->key_slot, *digest);
  if (!der.ok()) return ErrorToRv(der.error());
  auto raw = crypto::EcdsaDerToRaw(*der, CoordinateSize(o->curve));
  if (!raw.ok()) return CKR_FUNCTION_FAILED;
  return Output(*raw, sig, sig_len);
}

CK_RV CK_SPEC Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                   CK_ULONG_PTR sig_len) {
  DEVID_SESSION(session, h);
  if (!session->sign) return CKR_OPERATION_NOT_INITIALIZED;
  if (data == nullptr && len > 0) return CKR_ARGUMENTS_BAD;
  if (sig != nullptr) session->sign->data.assign(data, data + len);
  if (sig == nullptr) return FinishSign(session, token, nullptr, sig_len);
  return FinishSign(session, token, sig, sig_len);
}

CK_RV CK_SPEC SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
  DEVID_SESSION(session, h);
  if (!session->sign) return CKR_OPERATION_NOT_INITIALIZED;
  if (part == nullptr && len > 0) return CKR_ARGUMENTS_BAD;
  session->sign->data.insert(session->sign->data.end(), part, part + len);
  return CKR_OK;
}

CK_RV CK_SPEC SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
  DEVID_SESSION(session, h);
  if (!session->sign) return CKR_OPERATION_NOT_INITIALIZED;
  return FinishSign(session, token, sig, sig_len);
}

CK_RV CK_SPEC VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key) {
  DEVID_SESSION(session, h);
  return StartKeyOperation(session, token, session->verify, mechanism, key, kPublicKey);
}

CK_RV FinishVerify(Session* session, Token& token, CK_BYTE_PTR sig, CK_ULONG sig_len) {
  Operation op = std::move(*session->verify);
  session->verify.reset();
  auto o = FindObject(session->slot, op.key);
  if (!o.ok()) return CKR_KEY_HANDLE_INVALID;
  if (sig == nullptr || sig_len != 2 * CoordinateSize(o->curve)) return CKR_SIGNATURE_LEN_RANGE;
  auto digest = OperationDigest(op, o->curve);
  if (!digest.ok()) return CKR_DATA_LEN_RANGE;
  auto der = crypto::EcdsaRawToDer(ByteView(sig, sig_len));
  if (!der.ok()) return CKR_SIGNATURE_INVALID;
  // seed: verification in the chip too (VERIFY_SIGNATURE with the key given).
  auto ok = token.chip->VerifySignature(o->curve, o->point, *digest, *der);
  if (!ok.ok()) return ErrorToRv(ok.error());
  return *ok ? CKR_OK : CKR_SIGNATURE_INVALID;
}

CK_RV CK_SPEC Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                     CK_ULONG sig_len) {
  DEVID_SESSION(session, h);
  if (!session->verify) return CKR_OPERATION_NOT_INITIALIZED;
  if (data == nullptr && len > 0) return CKR_ARGUMENTS_BAD;
  session->verify->data.assign(data, data + len);
  return FinishVerify(session, token, sig, sig_len);
}

CK_RV CK_SPEC VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
  DEVID_SESSION(session, h);
  if (!session->verify) return CKR_OPERATION_NOT_INITIALIZED;
  if (part == nullptr && len > 0) return CKR_ARGUMENTS_BAD;
  session->verify->data.insert(session->verify->data.end(), part, part + len);
  return CKR_OK;
}

CK_RV CK_SPEC VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len) {
  DEVID_SESSION(session, h);
  if (!session->verify) return CKR_OPERATION_NOT_INITIALIZED;
  return FinishVerify(session, token, sig, sig_len);
}

CK_RV CK_SPEC DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mechanism) {
  DEVID_SESSION(session, h);
  if (session->digest) return CKR_OPERATION_ACTIVE;
  if (mechanism == nullptr) return CKR_ARGUMENTS_BAD;
  if (mechanism->mechanism != CKM_SHA256) return CKR_MECHANISM_INVALID;
  session->digest = Operation{CKM_SHA256, 0, {}};
  return CKR_OK;
}

CK_RV FinishDigest(Session* session, Token& token, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  if (out == nullptr) return Output(Bytes(32), nullptr, out_len);
  if (out_len == nullptr) return CKR_ARGUMENTS_BAD;
  if (*out_len < 32) {
    *out_len = 32;
    return CKR_BUFFER_TOO_SMALL;
  }
  Bytes data = std::move(session->digest->data);
  session->digest.reset();
  if (data.size() > kMaxDigestInput) return CKR_DATA_LEN_RANGE;
  if (CK_RV rv = EnsureOpen(token); rv != CKR_OK) return rv;
  auto digest = token.chip->Sha256(data);  // in the chip
  if (!digest.ok()) return ErrorToRv(digest.error());
  return Output(*digest, out, out_len);
}

CK_RV CK_SPEC Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                     CK_ULONG_PTR out_len) {
  DEVID_SESSION(session, h);
  if (!session->digest) return CKR_OPERATION_NOT_INITIALIZED;
  if (data == nullptr && len > 0) return CKR_ARGUMENTS_BAD;
  if (out != nullptr) session->digest->data.assign(data, data + len);
  return FinishDigest(session, token, out, out_len);
}

CK_RV CK_SPEC DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
  DEVID_SESSION(session, h);
  if (!session->digest) return CKR_OPERATION_NOT_INITIALIZED;
  if (part == nullptr && len > 0) return CKR_ARGUMENTS_BAD;
  if (session->digest->data.size() + len > kMaxDigestInput) {
    session->digest.reset();
    return CKR_DATA_LEN_RANGE;
  }
  session->digest->data.insert(session->digest->data.end(), part, part + len);
  return CKR_OK;
}

CK_RV CK_SPEC DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  DEVID_SESSION(session, h);
  if (!session->digest) return CKR_OPERATION_NOT_INITIALIZED;
  return FinishDigest(session, token, out, out_len);
}

const CK_ATTRIBUTE* FindAttribute(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ATTRIBUTE_TYPE type) {
  for (CK_ULONG i = 0; templ != nullptr && i < count; ++i) {
    if (templ[i].type == type) return &templ[i];
  }
  return nullptr;
}

std::optional<bool> BoolAttribute(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ATTRIBUTE_TYPE type) {
  const CK_ATTRIBUTE* a = FindAttribute(templ, count, type);
  if (a == nullptr || a->pValue == nullptr || a->ulValueLen != sizeof(CK_BBOOL))
    return std::nullopt;
  return *static_cast<const CK_BBOOL*>(a->pValue) == CK_TRUE;
}

CK_RV CK_SPEC GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mechanism,
                              CK_ATTRIBUTE_PTR pub_templ, CK_ULONG pub_count,
                              CK_ATTRIBUTE_PTR priv_templ, CK_ULONG priv_count,
                              CK_OBJECT_HANDLE_PTR pub_out, CK_OBJECT_HANDLE_PTR priv_out) {
  DEVID_SESSION(session, h);
  if (mechanism == nullptr || pub_out == nullptr || priv_out == nullptr) return CKR_ARGUMENTS_BAD;
  if (mechanism->mechanism != CKM_EC_KEY_PAIR_GEN) return CKR_MECHANISM_INVALID;
  if ((session->flags & CKF_RW_SESSION) == 0) return CKR_SESSION_READ_ONLY;
  // Making a private (token) object is the user's business (PKCS#11 §4.4).
  if (!token.logged_in) return CKR_USER_NOT_LOGGED_IN;
  if (CK_RV rv = EnsureOpen(token); rv != CKR_OK) return rv;
  const CK_ATTRIBUTE* params = FindAttribute(pub_templ, pub_count, CKA_EC_PARAMS);
  if (params == nullptr || params->pValue == nullptr) return CKR_TEMPLATE_INCOMPLETE;
  ByteView oid(static_cast<const uint8_t*>(params->pValue), params->ulValueLen);
  crypto::KeyType curve;
  if (std::equal(oid.begin(), oid.end(), kP256Params.begin(), kP256Params.end())) {
    curve = crypto::KeyType::kEcP256;
  } else if (std::equal(oid.begin(), oid.end(), kP384Params.begin(), kP384Params.end())) {
    curve = crypto::KeyType::kEcP384;
  } else {
    return CKR_CURVE_NOT_SUPPORTED;
  }
  // Session (volatile) key pairs are not offered: the chip keeps one per connection.
  if (BoolAttribute(priv_templ, priv_count, CKA_TOKEN) == false) return CKR_TEMPLATE_INCONSISTENT;
  if (BoolAttribute(priv_templ, priv_count, CKA_EXTRACTABLE) == true) {
    return CKR_ATTRIBUTE_VALUE_INVALID;  // chip keys never leave it
  }
  // The key slot: CKA_ID of one byte 0..15 names it, else the first free one.
  int slot = -1;
  const CK_ATTRIBUTE* id = FindAttribute(priv_templ, priv_count, CKA_ID);
  if (id == nullptr) id = FindAttribute(pub_templ, pub_count, CKA_ID);
  if (id != nullptr && id->pValue != nullptr && id->ulValueLen == 1 &&
      *static_cast<const CK_BYTE*>(id->pValue) < kKeySlots) {
    slot = *static_cast<const CK_BYTE*>(id->pValue);
    // Never over an existing key: the device identity may live there.
    auto existing = token.chip->ReadPublicKey(static_cast<uint8_t>(slot));
    if (existing.ok() || existing.error().code != ErrorCode::kNotFound) {
      return CKR_ATTRIBUTE_VALUE_INVALID;
    }
  } else if (id != nullptr && id->ulValueLen > 0) {
    return CKR_ATTRIBUTE_VALUE_INVALID;  // IDs are key slot numbers
  } else {
    for (int i = 0; i < kKeySlots && slot < 0; ++i) {
      auto pub = token.chip->ReadPublicKey(static_cast<uint8_t>(i));
      if (!pub.ok() && pub.error().code == ErrorCode::kNotFound) slot = i;
    }
    if (slot < 0) return CKR_DEVICE_MEMORY;
  }
  // CKA_PRIVATE (default true): using the key then needs the PIN in the chip too.
  bool needs_pin = BoolAttribute(priv_templ, priv_count, CKA_PRIVATE).value_or(true);
  auto point = token.chip->GenerateKeyPair(static_cast<uint8_t>(slot), curve, needs_pin);
  if (!point.ok()) return ErrorToRv(point.error());
  *pub_out = MakeHandle(session->slot, kPublicKey, static_cast<CK_ULONG>(slot));
  *priv_out = MakeHandle(session->slot, kPrivateKey, static_cast<CK_ULONG>(slot));
  return CKR_OK;
}

CK_RV CK_SPEC DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE base,
                        CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out) {
  DEVID_SESSION(session, h);
  if (mechanism == nullptr || out == nullptr) return CKR_ARGUMENTS_BAD;
  if (mechanism->mechanism != CKM_ECDH1_DERIVE) return CKR_MECHANISM_INVALID;
  if (mechanism->pParameter == nullptr ||
      mechanism->ulParameterLen != sizeof(CK_ECDH1_DERIVE_PARAMS)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  const auto* params = static_cast<const CK_ECDH1_DERIVE_PARAMS*>(mechanism->pParameter);
  if (params->kdf != CKD_NULL || params->ulSharedDataLen != 0 || params->pPublicData == nullptr) {
    return CKR_MECHANISM_PARAM_INVALID;  // the raw shared secret only
  }
  if (!token.logged_in) return CKR_USER_NOT_LOGGED_IN;
  auto key = FindObject(session->slot, base);
  if (!key.ok() || key->kind != kPrivateKey) return CKR_KEY_HANDLE_INVALID;
  ByteView peer(params->pPublicData, params->ulPublicDataLen);
  size_t point_size = 1 + 2 * CoordinateSize(key->curve);
  // The peer point raw, or wrapped in a DER OCTET STRING as some callers pass it.
  if (peer.size() == point_size + 2 && peer[0] == 0x04 && peer[1] == point_size) {
    peer = peer.subspan(2);
  }
  if (peer.size() != point_size) return CKR_MECHANISM_PARAM_INVALID;
  if (BoolAttribute(templ, count, CKA_TOKEN) == true) return CKR_TEMPLATE_INCONSISTENT;
  auto secret = token.chip->Ecdh(key->key_slot, peer);
  if (!secret.ok()) return ErrorToRv(secret.error());
  Bytes value = std::move(secret).value();
  if (const CK_ATTRIBUTE* len = FindAttribute(templ, count, CKA_VALUE_LEN);
      len != nullptr && len->pValue != nullptr && len->ulValueLen == sizeof(CK_ULONG)) {
    CK_ULONG want = *static_cast<const CK_ULONG*>(len->pValue);
    if (want == 0 || want > value.size()) return CKR_TEMPLATE_INCONSISTENT;
    value.resize(want);
  }
  bool sensitive = BoolAttribute(templ, count, CKA_SENSITIVE).value_or(true);
  bool extractable = BoolAttribute(templ, count, CKA_EXTRACTABLE).value_or(false);
  Object o;
  o.kind = kSecret;
  o.SetUlong(CKA_CLASS, CKO_SECRET_KEY);
  o.SetUlong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
  o.SetBool(CKA_TOKEN, false);
  o.SetBool(CKA_PRIVATE, true);
  o.SetBool(CKA_SENSITIVE, sensitive);
  o.SetBool(CKA_EXTRACTABLE, extractable);
  o.SetBool(CKA_LOCAL, false);
  o.SetUlong(CKA_VALUE_LEN, value.size());
  o.Set(CKA_VALUE, value);
  SecureZero(value.data(), value.size());
  if (sensitive || !extractable) o.sensitive = {CKA_VALUE};
  o.owner = h;
  // A free handle in this slot's secret range (16 bits of index).
  CK_OBJECT_HANDLE handle = 0;
  do {
    handle = MakeHandle(session->slot, kSecret, g_module->next_secret++ & 0xFFFF);
  } while (g_module->secrets.count(handle) != 0);
  g_module->secrets[handle] = std::move(o);
  *out = handle;
  return CKR_OK;
}

CK_RV CK_SPEC DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE object) {
  DEVID_SESSION(session, h);
  auto it = g_module->secrets.find(object);
  if (it != g_module->secrets.end() && (object >> 24) == session->slot + 1 && token.logged_in) {
    Bytes& v = it->second.attributes[CKA_VALUE];
    SecureZero(v.data(), v.size());
    g_module->secrets.erase(it);
    return CKR_OK;
  }
  return FindObject(session->slot, object).ok() ? CKR_ACTION_PROHIBITED : CKR_OBJECT_HANDLE_INVALID;
}

CK_RV CK_SPEC GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len) {
  DEVID_SESSION(session, h);
  if (out == nullptr && len > 0) return CKR_ARGUMENTS_BAD;
  if (CK_RV rv = EnsureOpen(token); rv != CKR_OK) return rv;
  while (len > 0) {
    CK_ULONG n = len < 4096 ? len : 4096;
    auto bytes = token.chip->GetRandom(n);
    if (!bytes.ok()) return ErrorToRv(bytes.error());
    std::memcpy(out, bytes->data(), n);
    out += n;
    len -= n;
  }
  return CKR_OK;
}

CK_RV CK_SPEC SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR, CK_ULONG) {
  DEVID_SESSION(session, h);
  return CKR_RANDOM_SEED_NOT_SUPPORTED;  // the chip's TRNG takes no outside seed
}

template <typename... Args>
CK_RV CK_SPEC NotSupported(Args...) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV CK_SPEC GetFunctionListImpl(CK_FUNCTION_LIST_PTR_PTR out);

CK_FUNCTION_LIST MakeFunctionList() {
  CK_FUNCTION_LIST f{};
  f.version = {2, 40};
  f.C_Initialize = Initialize;
  f.C_Finalize = Finalize;
  f.C_GetInfo = GetInfo;
  f.C_GetFunctionList = GetFunctionListImpl;
  f.C_GetSlotList = GetSlotList;
  f.C_GetSlotInfo = GetSlotInfo;
  f.C_GetTokenInfo = GetTokenInfo;
  f.C_GetMechanismList = GetMechanismList;
  f.C_GetMechanismInfo = GetMechanismInfo;
  f.C_InitToken = NotSupported;
  f.C_InitPIN = NotSupported;
  f.C_SetPIN = NotSupported;
  f.C_OpenSession = OpenSession;
  f.C_CloseSession = CloseSession;
  f.C_CloseAllSessions = CloseAllSessions;
  f.C_GetSessionInfo = GetSessionInfo;
  f.C_GetOperationState = NotSupported;
  f.C_SetOperationState = NotSupported;
  f.C_Login = Login;
  f.C_Logout = Logout;
  f.C_CreateObject = NotSupported;
  f.C_CopyObject = NotSupported;
  f.C_DestroyObject = DestroyObject;
  f.C_GetObjectSize = NotSupported;
  f.C_GetAttributeValue = GetAttributeValue;
  f.C_SetAttributeValue = NotSupported;
  f.C_FindObjectsInit = FindObjectsInit;
  f.C_FindObjects = FindObjects;
  f.C_FindObjectsFinal = FindObjectsFinal;
  f.C_EncryptInit = NotSupported;
  f.C_Encrypt = NotSupported;
  f.C_EncryptUpdate = NotSupported;
  f.C_EncryptFinal = NotSupported;
  f.C_DecryptInit = NotSupported;
  f.C_Decrypt = NotSupported;
  f.C_DecryptUpdate = NotSupported;
  f.C_DecryptFinal = NotSupported;
  f.C_DigestInit = DigestInit;
  f.C_Digest = Digest;
  f.C_DigestUpdate = DigestUpdate;
  f.C_DigestKey = NotSupported;
  f.C_DigestFinal = DigestFinal;
  f.C_SignInit = SignInit;
  f.C_Sign = Sign;
  f.C_SignUpdate = SignUpdate;
  f.C_SignFinal = SignFinal;
  f.C_SignRecoverInit = NotSupported;
  f.C_SignRecover = NotSupported;
  f.C_VerifyInit = VerifyInit;
  f.C_Verify = Verify;
  f.C_VerifyUpdate = VerifyUpdate;
  f.C_VerifyFinal = VerifyFinal;
  f.C_VerifyRecoverInit = NotSupported;
  f.C_VerifyRecover = NotSupported;
  f.C_DigestEncryptUpdate = NotSupported;
  f.C_DecryptDigestUpdate = NotSupported;
  f.C_SignEncryptUpdate = NotSupported;
  f.C_DecryptVerifyUpdate = NotSupported;
  f.C_GenerateKey = NotSupported;
  f.C_GenerateKeyPair = GenerateKeyPair;
  f.C_WrapKey = NotSupported;
  f.C_UnwrapKey = NotSupported;
  f.C_DeriveKey = DeriveKey;
  f.C_SeedRandom = SeedRandom;
  f.C_GenerateRandom = GenerateRandom;
  f.C_GetFunctionStatus = NotSupported;
  f.C_CancelFunction = NotSupported;
  f.C_WaitForSlotEvent = NotSupported;
  return f;
}

CK_FUNCTION_LIST g_functions = MakeFunctionList();

CK_RV CK_SPEC GetFunctionListImpl(CK_FUNCTION_LIST_PTR_PTR out) {
  if (out == nullptr) return CKR_ARGUMENTS_BAD;
  *out = &g_functions;
  return CKR_OK;
}

}  // namespace

CK_FUNCTION_LIST* FunctionList() { return &g_functions; }

}  // namespace devid::pkcs11
