// The host side of the chip: typed calls for every command over a transport.
// Two transports, one interface: in-process (tests, fleet simulation) and a
// Unix-domain socket to a `devid se run` daemon (4-byte big-endian length,
// then the APDU; the answer comes back the same way).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/csr.h"
#include "crypto/key.h"
#include "crypto/name.h"
#include "se/apdu.h"
#include "se/device/secure_element.h"

namespace devid::se {

class Transport {
 public:
  virtual ~Transport() = default;
  // One command APDU out, one response APDU back.
  virtual Result<Bytes> Transmit(ByteView command) = 0;
};

// The chip in this process; commands are serialised as on a real bus.
class InProcessTransport final : public Transport {
 public:
  explicit InProcessTransport(std::unique_ptr<SecureElement> chip) : chip_(std::move(chip)) {}
  Result<Bytes> Transmit(ByteView command) override;

 private:
  std::mutex bus_;
  std::unique_ptr<SecureElement> chip_;
};

class SocketTransport final : public Transport {
 public:
  static Result<std::unique_ptr<SocketTransport>> Connect(const std::string& path);
  ~SocketTransport() override;
  Result<Bytes> Transmit(ByteView command) override;

 private:
  explicit SocketTransport(int fd) : fd_(fd) {}
  int fd_;
};

// Files devid's host software reads from a chip (docs/ARCHITECTURE.md, "Chip files").
// The device's certificate chain, PEM: its own certificate first, then its issuing CA's.
inline constexpr uint16_t kCertificateChainFile = 0xC001;
// The issuing CA's public key as VERIFY_SIGNATURE P1=1 takes it: curve byte
// (0x01 P-256, 0x02 P-384) || uncompressed point.
inline constexpr uint16_t kCaPublicKeyFile = 0xCA01;
// An EC public key in that form (the content of a key file such as CA01).
Result<Bytes> KeyFileContent(const crypto::PublicKey& key);

// Writes a command-log line (DescribeCommand) for every exchange through
// `inner`: the host's record of what a chip did when the chip's own log is
// out of reach (a `devid se run` daemon).
class LoggingTransport final : public Transport {
 public:
  LoggingTransport(std::unique_ptr<Transport> inner, std::function<void(const std::string&)> log)
      : inner_(std::move(inner)), log_(std::move(log)) {}
  Result<Bytes> Transmit(ByteView command) override;

 private:
  std::unique_ptr<Transport> inner_;
  std::function<void(const std::string&)> log_;
};

// Frames on the socket: larger ones are refused by both ends.
inline constexpr size_t kMaxFrame = 70 * 1024;
// Clients the daemon serves at once.
inline constexpr size_t kMaxClients = 64;

struct ChipInfo {
  std::string serial;
  int firmware_major = 0;
  int firmware_minor = 0;
  Lifecycle lifecycle = Lifecycle::kManufacturing;
  bool tampered = false;
  int pin_tries = 0;
  uint32_t free_nvm = 0;
};

struct ChipFileInfo {
  uint16_t id = 0;
  uint16_t size = 0;
  uint16_t max_size = 0;
  uint8_t read_ac = 0;
  uint8_t write_ac = 0;
};

class ChipClient {
 public:
  explicit ChipClient(std::unique_ptr<Transport> transport) : transport_(std::move(transport)) {}
  // Ends the connection (an in-process chip is powered off): every later
  // command fails with kIo, whoever still holds this client.
  void Close() { transport_.reset(); }

  // Opens the chip in-process (image) or connects to a daemon (socket);
  // `configure` sets up an in-process chip (command log, latency model).
  static Result<ChipClient> Open(const std::string& image, const std::string& socket,
                                 const std::function<void(SecureElement&)>& configure = {});
  // The same, with a command log wherever the chip runs: the chip's own when
  // in-process, a LoggingTransport's when over a socket.
  static Result<ChipClient> OpenLogged(const std::string& image, const std::string& socket,
                                       const std::function<void(const std::string&)>& log);

  Result<ChipInfo> GetInfo();
  Result<Bytes> GetRandom(size_t count);
  // The public point of the new key.
  Result<Bytes> GenerateKeyPair(uint8_t slot, crypto::KeyType curve, bool needs_pin);
  Result<std::pair<crypto::KeyType, Bytes>> ReadPublicKey(uint8_t slot);
  Result<Bytes> Sign(uint8_t slot, ByteView digest);
  // false when the signature does not verify (6300); errors for anything else.
  Result<bool> VerifySignature(crypto::KeyType curve, ByteView point, ByteView digest,
                               ByteView signature);
  Result<bool> VerifySignatureWithFileKey(uint16_t file_id, ByteView digest, ByteView signature);
  Result<Bytes> Ecdh(uint8_t slot, ByteView peer_point);
  Status CreateFile(uint16_t id, uint16_t max_size, uint8_t read_ac, uint8_t write_ac);
  Result<Bytes> ReadFile(uint16_t id);
  Status WriteFile(uint16_t id, ByteView data);
  Result<std::vector<ChipFileInfo>> ListFiles();
  Result<Bytes> Sha256(ByteView data);
  Result<uint64_t> Counter(uint8_t id, bool increment);
  Status Authenticate(std::string_view pin);
  Status SetLifecycle(Lifecycle target);
  // Wraps `key` to the chip's transport key (ECDH with a fresh ephemeral key,
  // HKDF-SHA256, AES-256-GCM) and imports it into `slot` (personalisation only).
  Status ImportKey(uint8_t slot, const crypto::PrivateKey& key, bool needs_pin);
  // nonce || ciphertext || tag; the chip draws the nonce.
  Result<Bytes> AesGcmEncrypt(uint8_t slot, ByteView aad, ByteView plaintext);
  // Takes what AesGcmEncrypt returned; kVerification when the tag does not match.
  Result<Bytes> AesGcmDecrypt(uint8_t slot, ByteView aad, ByteView sealed);
  // Challenge-response with the manufacturer key, then a new user PIN.
  Status AuthenticateManufacturer(ByteView manufacturer_key);
  Status ResetPin(std::string_view new_pin);

  // Any command; an error for every status word but 9000.
  Result<Bytes> Call(Ins ins, uint8_t p1, uint8_t p2, ByteView data,
                     std::optional<uint32_t> le = {});

 private:
  Result<ApduResponse> Exchange(Ins ins, uint8_t p1, uint8_t p2, ByteView data,
                                std::optional<uint32_t> le);
  std::unique_ptr<Transport> transport_;
};

// A PKCS#10 request for the key in `slot`, signed in the chip (the private key
// never leaves it): what `devid se csr`, the factory and the agent send.
Result<crypto::CertificateRequest> MakeCsrInChip(ChipClient& chip, uint8_t slot,
                                                 const crypto::DistinguishedName& subject,
                                                 const std::vector<crypto::GeneralName>& sans);

// Writes chip file `id`, creating it first when the chip has none (room for
// `max_size` bytes, 0: the content's size; the given access conditions):
// what `devid se file write` and the factory do.
Status WriteChipFile(ChipClient& chip, uint16_t id, ByteView data, size_t max_size, uint8_t read_ac,
                     uint8_t write_ac);

// An error for a status word: 6982/63Cx/6983 -> kAuth, 6581 -> kTamper,
// 6A82 -> kNotFound, 6A80/6700/6A86 -> kInvalidInput, others -> kCrypto.
Error StatusError(uint16_t sw);

// `devid se run`: serves one chip on a Unix socket until `stop` becomes true
// (checked every 200 ms) or SIGTERM/SIGINT arrives when handle_signals is set.
// Clients may come and go; commands are executed one at a time.
Status ServeChip(std::unique_ptr<SecureElement> chip, const std::string& socket_path,
                 bool handle_signals, const std::function<bool()>& stop = {});

}  // namespace devid::se
