#include "se/host/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <thread>

#include "crypto/aead.h"

namespace devid::se {

namespace {

Error SysError(const std::string& what) {
  return MakeError(ErrorCode::kIo, what + ": " + std::strerror(errno));
}

Status SendAll(int fd, ByteView data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return SysError("chip socket write");
    done += static_cast<size_t>(n);
  }
  return {};
}

Status RecvAll(int fd, uint8_t* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::recv(fd, out + done, size - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return MakeError(ErrorCode::kIo, "chip socket closed");
    if (n < 0) return SysError("chip socket read");
    done += static_cast<size_t>(n);
  }
  return {};
}

Bytes Frame(ByteView payload) {
  Bytes out = {static_cast<uint8_t>(payload.size() >> 24),
               static_cast<uint8_t>(payload.size() >> 16),
               static_cast<uint8_t>(payload.size() >> 8), static_cast<uint8_t>(payload.size())};
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Result<sockaddr_un> SocketAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidInput, "socket path must be 1-107 characters");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

std::atomic<bool> g_signalled{false};

// Spin, then block: a chip command takes 10-200 us, while waking a thread
// that sleeps in recv/poll costs 40-170 us on an idle VM. Each side polls
// without sleeping for this long after its last exchange before it blocks, so
// back-to-back commands (a TLS handshake) avoid the wake-ups, and an idle
// daemon or client costs no CPU. With one CPU, spinning would only delay the
// other side: then both block at once.
std::chrono::microseconds SpinTime() {
  static const auto spin =
      std::chrono::microseconds(std::thread::hardware_concurrency() > 1 ? 250 : 0);
  return spin;
}

// recv that first spins for SpinTime() with MSG_DONTWAIT, then blocks.
ssize_t RecvSpinning(int fd, uint8_t* out, size_t size) {
  auto until = std::chrono::steady_clock::now() + SpinTime();
  do {
    ssize_t n = ::recv(fd, out, size, MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return n;
  } while (std::chrono::steady_clock::now() < until);
  return ::recv(fd, out, size, 0);
}

}  // namespace

Error StatusError(uint16_t sw) {
  std::string text = "chip answered " + StatusWordText(sw);
  if (sw == 0x6982 || sw == 0x6983 || (sw & 0xFFF0) == 0x63C0)
    return MakeError(ErrorCode::kAuth, text);
  if (sw == 0x6581) return MakeError(ErrorCode::kTamper, text);
  if (sw == 0x6A82) return MakeError(ErrorCode::kNotFound, text);
  if (sw == 0x6A80 || sw == 0x6700 || sw == 0x6A86)
    return MakeError(ErrorCode::kInvalidInput, text);
  if (sw == 0x6985) return MakeError(ErrorCode::kPolicy, text);
  return MakeError(ErrorCode::kCrypto, text);
}

Result<Bytes> InProcessTransport::Transmit(ByteView command) {
  std::lock_guard<std::mutex> lock(bus_);
  return chip_->Process(command);
}

Result<std::unique_ptr<SocketTransport>> SocketTransport::Connect(const std::string& path) {
  DEVID_ASSIGN_OR_RETURN(sockaddr_un addr, SocketAddress(path));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return SysError("socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Error e = SysError("cannot connect to the chip at " + path);
    ::close(fd);
    return e;
  }
  return std::unique_ptr<SocketTransport>(new SocketTransport(fd));
}

SocketTransport::~SocketTransport() { ::close(fd_); }

Result<Bytes> SocketTransport::Transmit(ByteView command) {
  if (command.size() > kMaxFrame) return MakeError(ErrorCode::kInvalidInput, "APDU too large");
  DEVID_TRY(SendAll(fd_, Frame(command)));
  // Usually the whole answer arrives at once: one recv for header and body.
  Bytes buf(4 + 4096);
  size_t have = 0;
  while (have < 4) {
    ssize_t n = RecvSpinning(fd_, buf.data() + have, buf.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return MakeError(ErrorCode::kIo, "chip socket closed");
    if (n < 0) return SysError("chip socket read");
    have += static_cast<size_t>(n);
  }
  size_t len = static_cast<size_t>(buf[0]) << 24 | static_cast<size_t>(buf[1]) << 16 |
               static_cast<size_t>(buf[2]) << 8 | buf[3];
  if (len < 2 || len > kMaxFrame || have > 4 + len) {
    return MakeError(ErrorCode::kIo, "malformed answer from the chip daemon");
  }
  buf.resize(4 + len);
  if (have < 4 + len) DEVID_TRY(RecvAll(fd_, buf.data() + have, 4 + len - have));
  return Bytes(buf.begin() + 4, buf.end());
}

Result<ChipClient> ChipClient::Open(const std::string& image, const std::string& socket,
                                    const std::function<void(SecureElement&)>& configure) {
  if (image.empty() == socket.empty()) {
    return MakeError(ErrorCode::kInvalidInput, "give exactly one of --image FILE or --socket PATH");
  }
  if (!socket.empty()) {
    DEVID_ASSIGN_OR_RETURN(std::unique_ptr<SocketTransport> t, SocketTransport::Connect(socket));
    return ChipClient(std::move(t));
  }
  DEVID_ASSIGN_OR_RETURN(std::unique_ptr<SecureElement> chip, SecureElement::Open(image));
  if (configure) configure(*chip);
  return ChipClient(std::make_unique<InProcessTransport>(std::move(chip)));
}

Result<Bytes> KeyFileContent(const crypto::PublicKey& key) {
  DEVID_ASSIGN_OR_RETURN(auto point, key.EcPoint());
  Bytes out = {static_cast<uint8_t>(point.first == crypto::KeyType::kEcP384 ? 0x02 : 0x01)};
  out.insert(out.end(), point.second.begin(), point.second.end());
  return out;
}

Result<ChipClient> ChipClient::OpenLogged(const std::string& image, const std::string& socket,
                                          const std::function<void(const std::string&)>& log) {
  if (!socket.empty() && image.empty()) {
    DEVID_ASSIGN_OR_RETURN(std::unique_ptr<SocketTransport> t, SocketTransport::Connect(socket));
    return ChipClient(std::make_unique<LoggingTransport>(std::move(t), log));
  }
  return Open(image, socket, [&log](SecureElement& chip) { chip.SetCommandLog(log); });
}

Result<Bytes> LoggingTransport::Transmit(ByteView command) {
  auto start = std::chrono::steady_clock::now();
  auto answer = inner_->Transmit(command);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  auto parsed = ApduCommand::Parse(command);
  if (parsed.ok()) {
    uint16_t sw = 0;
    if (answer.ok() && answer->size() >= 2) {
      sw = static_cast<uint16_t>((*answer)[answer->size() - 2] << 8 | answer->back());
    }
    log_(DescribeCommand(*parsed, sw, us));
  }
  return answer;
}

Result<ApduResponse> ChipClient::Exchange(Ins ins, uint8_t p1, uint8_t p2, ByteView data,
                                          std::optional<uint32_t> le) {
  ApduCommand c;
  c.ins = static_cast<uint8_t>(ins);
  c.p1 = p1;
  c.p2 = p2;
  c.data.assign(data.begin(), data.end());
  if (le) {
    c.has_le = true;
    c.le = *le;
  }
  if (!transport_) return MakeError(ErrorCode::kIo, "the chip connection is closed");
  DEVID_ASSIGN_OR_RETURN(Bytes raw, transport_->Transmit(c.Encode()));
  return ApduResponse::Parse(raw);
}

Result<Bytes> ChipClient::Call(Ins ins, uint8_t p1, uint8_t p2, ByteView data,
                               std::optional<uint32_t> le) {
  DEVID_ASSIGN_OR_RETURN(ApduResponse r, Exchange(ins, p1, p2, data, le));
  if (!r.ok()) return StatusError(r.sw);
  return std::move(r.data);
}

Result<ChipInfo> ChipClient::GetInfo() {
  DEVID_ASSIGN_OR_RETURN(Bytes d, Call(Ins::kGetInfo, 0, 0, {}));
  if (d.empty() || d.size() < 1u + d[0] + 9)
    return MakeError(ErrorCode::kCrypto, "malformed GET_INFO answer");
  ChipInfo info;
  info.serial.assign(d.begin() + 1, d.begin() + 1 + d[0]);
  size_t o = 1 + d[0];
  info.firmware_major = d[o];
  info.firmware_minor = d[o + 1];
  info.lifecycle = static_cast<Lifecycle>(d[o + 2]);
  info.tampered = d[o + 3] != 0;
  info.pin_tries = d[o + 4];
  info.free_nvm = static_cast<uint32_t>(d[o + 5]) << 24 | static_cast<uint32_t>(d[o + 6]) << 16 |
                  static_cast<uint32_t>(d[o + 7]) << 8 | d[o + 8];
  return info;
}

Result<Bytes> ChipClient::GetRandom(size_t count) {
  Bytes out;
  while (out.size() < count) {
    uint32_t n = static_cast<uint32_t>(std::min<size_t>(count - out.size(), 4096));
    DEVID_ASSIGN_OR_RETURN(Bytes part, Call(Ins::kGetRandom, 0, 0, {}, n));
    // Exactly what was asked for: a short or long answer is a faulty chip.
    if (part.size() != n)
      return MakeError(ErrorCode::kCrypto, "the chip answered GET_RANDOM with the wrong length");
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

Result<Bytes> ChipClient::GenerateKeyPair(uint8_t slot, crypto::KeyType curve, bool needs_pin) {
  if (curve == crypto::KeyType::kRsa3072)
    return MakeError(ErrorCode::kInvalidInput, "the chip makes EC keys only");
  uint8_t p2 = static_cast<uint8_t>((curve == crypto::KeyType::kEcP384 ? 0x02 : 0x01) |
                                    (needs_pin ? 0x80 : 0));
  return Call(Ins::kGenerateKeyPair, slot, p2, {});
}

Result<std::pair<crypto::KeyType, Bytes>> ChipClient::ReadPublicKey(uint8_t slot) {
  DEVID_ASSIGN_OR_RETURN(Bytes d, Call(Ins::kReadPublicKey, slot, 0, {}));
  if (d.size() < 2) return MakeError(ErrorCode::kCrypto, "malformed READ_PUBLIC_KEY answer");
  crypto::KeyType curve = d[0] == 0x02 ? crypto::KeyType::kEcP384 : crypto::KeyType::kEcP256;
  return std::make_pair(curve, Bytes(d.begin() + 1, d.end()));
}

Result<Bytes> ChipClient::Sign(uint8_t slot, ByteView digest) {
  return Call(Ins::kSign, slot, 0, digest);
}

namespace {
Result<bool> VerifyAnswer(const Result<ApduResponse>& r) {
  if (!r.ok()) return r.error();
  if (r->sw == 0x6300) return false;
  if (!r->ok()) return StatusError(r->sw);
  return true;
}
void AppendSized(Bytes& out, ByteView v) {
  out.push_back(static_cast<uint8_t>(v.size()));
  out.insert(out.end(), v.begin(), v.end());
}
}  // namespace

Result<bool> ChipClient::VerifySignature(crypto::KeyType curve, ByteView point, ByteView digest,
                                         ByteView signature) {
  if (point.size() > 255 || digest.size() > 255)
    return MakeError(ErrorCode::kInvalidInput, "key or digest too long");
  Bytes d = {static_cast<uint8_t>(curve == crypto::KeyType::kEcP384 ? 0x02 : 0x01)};
  AppendSized(d, point);
  AppendSized(d, digest);
  d.insert(d.end(), signature.begin(), signature.end());
  return VerifyAnswer(Exchange(Ins::kVerifySignature, 0x00, 0, d, {}));
}

Result<bool> ChipClient::VerifySignatureWithFileKey(uint16_t file_id, ByteView digest,
                                                    ByteView signature) {
  if (digest.size() > 255) return MakeError(ErrorCode::kInvalidInput, "digest too long");
  Bytes d = {static_cast<uint8_t>(file_id >> 8), static_cast<uint8_t>(file_id)};
  AppendSized(d, digest);
  d.insert(d.end(), signature.begin(), signature.end());
  return VerifyAnswer(Exchange(Ins::kVerifySignature, 0x01, 0, d, {}));
}

Result<Bytes> ChipClient::Ecdh(uint8_t slot, ByteView peer_point) {
  return Call(Ins::kEcdh, slot, 0, peer_point);
}

Status ChipClient::CreateFile(uint16_t id, uint16_t max_size, uint8_t read_ac, uint8_t write_ac) {
  Bytes d = {static_cast<uint8_t>(max_size >> 8), static_cast<uint8_t>(max_size), read_ac,
             write_ac};
  auto r = Call(Ins::kCreateFile, static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), d);
  if (!r.ok()) return r.error();
  return {};
}

Result<Bytes> ChipClient::ReadFile(uint16_t id) {
  return Call(Ins::kReadFile, static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), {});
}

Status ChipClient::WriteFile(uint16_t id, ByteView data) {
  auto r = Call(Ins::kWriteFile, static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), data);
  if (!r.ok()) return r.error();
  return {};
}

Result<std::vector<ChipFileInfo>> ChipClient::ListFiles() {
  DEVID_ASSIGN_OR_RETURN(Bytes d, Call(Ins::kListFiles, 0, 0, {}));
  if (d.size() % 8 != 0) return MakeError(ErrorCode::kCrypto, "malformed LIST_FILES answer");
  std::vector<ChipFileInfo> out;
  for (size_t i = 0; i < d.size(); i += 8) {
    out.push_back({static_cast<uint16_t>(d[i] << 8 | d[i + 1]),
                   static_cast<uint16_t>(d[i + 2] << 8 | d[i + 3]),
                   static_cast<uint16_t>(d[i + 4] << 8 | d[i + 5]), d[i + 6], d[i + 7]});
  }
  return out;
}

Result<Bytes> ChipClient::Sha256(ByteView data) { return Call(Ins::kSha256, 0, 0, data); }

Result<uint64_t> ChipClient::Counter(uint8_t id, bool increment) {
  DEVID_ASSIGN_OR_RETURN(Bytes d, Call(Ins::kCounter, id, increment ? 1 : 0, {}));
  if (d.size() != 8) return MakeError(ErrorCode::kCrypto, "malformed COUNTER answer");
  uint64_t v = 0;
  for (uint8_t b : d) v = v << 8 | b;
  return v;
}

Status ChipClient::Authenticate(std::string_view pin) {
  auto r = Call(Ins::kAuthenticate, 0x01, 0, AsBytes(pin));
  if (!r.ok()) return r.error();
  return {};
}

Status ChipClient::SetLifecycle(Lifecycle target) {
  auto r = Call(Ins::kSetLifecycle, static_cast<uint8_t>(target), 0, {});
  if (!r.ok()) return r.error();
  return {};
}

Status ChipClient::ImportKey(uint8_t slot, const crypto::PrivateKey& key, bool needs_pin) {
  DEVID_ASSIGN_OR_RETURN(Bytes transport, Call(Ins::kReadPublicKey, 0xFE, 0, {}));
  if (transport.size() != 66 || transport[0] != 0x01)
    return MakeError(ErrorCode::kCrypto, "malformed transport key");
  DEVID_ASSIGN_OR_RETURN(
      crypto::PublicKey chip_key,
      crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, ByteView(transport).subspan(1)));
  DEVID_ASSIGN_OR_RETURN(crypto::PrivateKey ephemeral,
                         crypto::PrivateKey::Generate(crypto::KeyType::kEcP256));
  DEVID_ASSIGN_OR_RETURN(Bytes ephemeral_point, ephemeral.PublicPoint());
  DEVID_ASSIGN_OR_RETURN(Bytes shared, crypto::DeriveSharedSecret(ephemeral, chip_key.get()));
  static constexpr char kInfo[] = "devid IMPORT_KEY v1";
  auto kek = crypto::HkdfSha256(shared, ephemeral_point, AsBytes(kInfo), 32);
  SecureZero(shared.data(), shared.size());
  if (!kek.ok()) return kek.error();
  DEVID_ASSIGN_OR_RETURN(Bytes nonce, crypto::RandomBytes(crypto::kAesGcmNonceSize));
  DEVID_ASSIGN_OR_RETURN(Bytes pkcs8, key.ToPkcs8Der());
  uint8_t p2 = needs_pin ? 0x80 : 0x00;
  Bytes aad = {slot, p2};
  auto sealed = crypto::AesGcmSeal(*kek, nonce, aad, pkcs8);
  SecureZero(pkcs8.data(), pkcs8.size());
  SecureZero(kek->data(), kek->size());
  if (!sealed.ok()) return sealed.error();
  Bytes data = ephemeral_point;
  data.insert(data.end(), nonce.begin(), nonce.end());
  data.insert(data.end(), sealed->begin(), sealed->end());
  auto r = Call(Ins::kImportKey, slot, p2, data);
  if (!r.ok()) return r.error();
  return {};
}

Result<Bytes> ChipClient::AesGcmEncrypt(uint8_t slot, ByteView aad, ByteView plaintext) {
  if (aad.size() > 255) return MakeError(ErrorCode::kInvalidInput, "at most 255 bytes of AAD");
  Bytes d = {static_cast<uint8_t>(aad.size())};
  d.insert(d.end(), aad.begin(), aad.end());
  d.insert(d.end(), plaintext.begin(), plaintext.end());
  return Call(Ins::kAes, slot, 0, d);
}

Result<Bytes> ChipClient::AesGcmDecrypt(uint8_t slot, ByteView aad, ByteView sealed) {
  if (aad.size() > 255 || sealed.size() < crypto::kAesGcmNonceSize) {
    return MakeError(ErrorCode::kInvalidInput, "AES-GCM: at most 255 bytes of AAD, and a nonce");
  }
  Bytes d(sealed.begin(), sealed.begin() + crypto::kAesGcmNonceSize);
  d.push_back(static_cast<uint8_t>(aad.size()));
  d.insert(d.end(), aad.begin(), aad.end());
  d.insert(d.end(), sealed.begin() + crypto::kAesGcmNonceSize, sealed.end());
  DEVID_ASSIGN_OR_RETURN(ApduResponse r, Exchange(Ins::kAes, slot, 1, d, {}));
  if (r.sw == 0x6300) return MakeError(ErrorCode::kVerification, "AES-GCM tag does not match");
  if (!r.ok()) return StatusError(r.sw);
  return std::move(r.data);
}

Status ChipClient::AuthenticateManufacturer(ByteView manufacturer_key) {
  DEVID_ASSIGN_OR_RETURN(Bytes challenge, Call(Ins::kAuthenticate, 0x02, 0x00, {}));
  DEVID_ASSIGN_OR_RETURN(Bytes answer, crypto::HmacSha256(manufacturer_key, challenge));
  auto r = Call(Ins::kAuthenticate, 0x02, 0x01, answer);
  if (!r.ok()) return r.error();
  return {};
}

Status ChipClient::ResetPin(std::string_view new_pin) {
  auto r = Call(Ins::kAuthenticate, 0x03, 0x00, AsBytes(new_pin));
  if (!r.ok()) return r.error();
  return {};
}

Status ServeChip(std::unique_ptr<SecureElement> chip, const std::string& socket_path,
                 bool handle_signals, const std::function<bool()>& stop) {
  DEVID_ASSIGN_OR_RETURN(sockaddr_un addr, SocketAddress(socket_path));
  // Only ever replace a stale socket, never another kind of file.
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return MakeError(ErrorCode::kIo,
                       socket_path + " exists and is not a socket; refusing to replace it");
    }
    ::unlink(socket_path.c_str());
  }
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return SysError("socket");
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 16) != 0) {
    Error e = SysError("cannot listen on " + socket_path);
    ::close(listener);
    return e;
  }
  if (handle_signals) {
    g_signalled = false;
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_signalled = true; };
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
  }
  // One poll loop: commands from all clients run one at a time, as on a bus.
  // Each client has its own session (PIN, manufacturer key, volatile key).
  struct Client {
    Bytes pending;  // bytes received so far
    SecureElement::Session session;
  };
  std::map<int, Client> clients;
  auto last_command = std::chrono::steady_clock::time_point();
  auto drop = [&](int fd) {
    ::close(fd);
    clients.erase(fd);  // its session, volatile key included, goes with it
  };
  while (!(handle_signals && g_signalled) && !(stop && stop())) {
    // At the client limit the listener is not polled: a flood of idle
    // connections waits in the backlog instead of spinning the loop.
    std::vector<pollfd> fds = {
        {listener, static_cast<short>(clients.size() < kMaxClients ? POLLIN : 0), 0}};
    for (const auto& [fd, _] : clients) fds.push_back({fd, POLLIN, 0});
    // Right after a command, poll without sleeping for a while (see RecvSpinning).
    bool spin = std::chrono::steady_clock::now() - last_command < SpinTime();
    int n = ::poll(fds.data(), fds.size(), spin ? 0 : 200);
    if (n == 0 && spin) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if ((fds[0].revents & POLLIN) != 0) {
      int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) {
        // A client that stops reading its answers is dropped after a second
        // instead of blocking everyone else's commands.
        timeval timeout{1, 0};
        ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        clients[c];
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      int fd = fds[i].fd;
      uint8_t buf[4096];
      ssize_t got = ::recv(fd, buf, sizeof buf, 0);
      if (got <= 0) {
        drop(fd);
        continue;
      }
      Client& client = clients[fd];
      Bytes& pending = client.pending;
      pending.insert(pending.end(), buf, buf + got);
      bool broken = false;
      while (pending.size() >= 4) {
        size_t len = static_cast<size_t>(pending[0]) << 24 | static_cast<size_t>(pending[1]) << 16 |
                     static_cast<size_t>(pending[2]) << 8 | pending[3];
        if (len > kMaxFrame) {
          broken = true;  // a client that breaks the framing loses its connection
          break;
        }
        if (pending.size() < 4 + len) break;
        chip->UseSession(&client.session);
        Bytes answer = chip->Process(ByteView(pending).subspan(4, len));
        chip->UseSession(nullptr);
        pending.erase(pending.begin(), pending.begin() + static_cast<long>(4 + len));
        last_command = std::chrono::steady_clock::now();
        if (!SendAll(fd, Frame(answer)).ok()) {
          broken = true;
          break;
        }
      }
      if (broken) drop(fd);
    }
  }
  for (const auto& entry : clients) ::close(entry.first);
  ::close(listener);
  ::unlink(socket_path.c_str());
  return {};
}

Result<crypto::CertificateRequest> MakeCsrInChip(ChipClient& chip, uint8_t slot,
                                                 const crypto::DistinguishedName& subject,
                                                 const std::vector<crypto::GeneralName>& sans) {
  DEVID_ASSIGN_OR_RETURN(auto key, chip.ReadPublicKey(slot));
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey pub,
                         crypto::EcPublicKeyFromPoint(key.first, key.second));
  crypto::ExternalEcSigner signer{std::move(pub),
                                  [&](ByteView digest) { return chip.Sign(slot, digest); }};
  return crypto::MakeCertificateRequest(signer, subject, sans);
}

Status WriteChipFile(ChipClient& chip, uint16_t id, ByteView data, size_t max_size, uint8_t read_ac,
                     uint8_t write_ac) {
  DEVID_ASSIGN_OR_RETURN(std::vector<ChipFileInfo> files, chip.ListFiles());
  bool exists = std::any_of(files.begin(), files.end(), [&](const auto& f) { return f.id == id; });
  if (!exists) {
    size_t max = max_size > 0 ? max_size : data.size();
    if (max == 0 || max > 0xFFFF)
      return MakeError(ErrorCode::kInvalidInput, "file size must be 1..65535");
    DEVID_TRY(chip.CreateFile(id, static_cast<uint16_t>(max), read_ac, write_ac));
  }
  return chip.WriteFile(id, data);
}

}  // namespace devid::se
