// A TLS client for one mutual-TLS handshake (devid agent tls-probe; later the
// agent's MQTT and HTTPS sessions). The client key is loaded by URI through
// OSSL_STORE in the caller's library context, so a chip key served by the
// devid provider does the client's signatures (seed fig. 3).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "crypto/certificate.h"
#include "crypto/handles.h"

namespace devid::crypto {

enum class TlsVersion { kTls12, kTls13 };

struct TlsClientOptions {
  OSSL_LIB_CTX* context = nullptr;  // null: OpenSSL's default context
  std::string properties;           // property query, e.g. "?provider=devid"
  std::string key_uri;              // OSSL_STORE URI of the client's private key
  std::vector<Certificate> chain;   // the client certificate first, then its CAs
  // Instead of `chain`: called when the server asks for the client
  // certificate, so that it is read at that point of the handshake.
  std::function<Result<std::vector<Certificate>>()> chain_source;
  // Called once everything is set up, right before the first handshake
  // message is sent (callers that log what a chip does mark the start).
  std::function<void()> on_handshake_start;
  // Trust anchors for the server's chain. They need not be self-signed: a
  // device trusts its issuing CA (partial chain).
  std::vector<Certificate> trust;
  std::string server_name;  // SNI and the name the server certificate must carry
  TlsVersion version = TlsVersion::kTls12;
  std::string tls12_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
  std::chrono::milliseconds timeout{10000};
};

struct TlsSessionInfo {
  std::string version;       // "TLSv1.2"
  std::string cipher;        // "ECDHE-ECDSA-AES128-GCM-SHA256"
  std::string group;         // the key-exchange group, e.g. "secp256r1"
  std::string peer_subject;  // the server certificate's subject (RFC 2253)
};

// A client context as the agent's long-lived connections use it (MQTT through
// libmosquitto, HTTPS to the CMS): the version, the chip's groups, `trust`
// (partial chains), peer verification with the server's name or IP address
// checked (`server_name`), and, when `chain` is given, the client certificate
// chain and the key at `key_uri` installed on the context.
//
// `reused`: a context this function made earlier in the same library context,
// configured anew instead of making one (a new OpenSSL 3.0 context discovers
// its ciphers, signature algorithms and groups again: ~0.3 ms). Everything is
// replaced — version, ciphers, groups, a fresh trust store, the server name,
// the client certificate, chain and key — and sessions are never cached.
// Without `chain` it is not reused: a context cannot drop a client certificate.
Result<UniquePtr<SSL_CTX>> MakeClientContext(const TlsClientOptions& options,
                                             UniquePtr<SSL_CTX> reused = nullptr);

// A second owner of `ctx` (SSL_CTX_up_ref).
Result<UniquePtr<SSL_CTX>> ShareClientContext(SSL_CTX* ctx);

// One TLS connection over TCP with send/receive timeouts, made from a context
// of MakeClientContext. SNI is sent when `server_name` is a DNS name.
class TlsConnection {
 public:
  static Result<TlsConnection> Open(SSL_CTX* ctx, const std::string& host, uint16_t port,
                                    const std::string& server_name,
                                    std::chrono::milliseconds timeout);
  TlsConnection(TlsConnection&& other) noexcept;
  TlsConnection& operator=(TlsConnection&&) = delete;
  ~TlsConnection();

  Status Write(ByteView data);
  // Everything until the peer closes (at most `max` bytes).
  Result<Bytes> ReadToEnd(size_t max);

 private:
  TlsConnection(UniquePtr<SSL> ssl, int fd) : ssl_(std::move(ssl)), fd_(fd) {}
  UniquePtr<SSL> ssl_;
  int fd_ = -1;
};

// A fresh library context (for providers loaded into it alone).
Result<UniquePtr<OSSL_LIB_CTX>> NewLibraryContext();

// Connects to host:port over TCP, completes one handshake, closes cleanly.
// A server certificate that does not chain to `trust` fails with
// kVerification and says why.
Result<TlsSessionInfo> TlsHandshake(const TlsClientOptions& options, const std::string& host,
                                    uint16_t port);

// A server that asks for client certificates: sessions resume only within
// this context (OpenSSL refuses resumption without one when peers are verified).
Status SetSessionIdContext(SSL_CTX* ctx, std::string_view context);

// The DER of the certificate the peer of `ssl` presented, if any (not verified
// here: a server that asks for client certificates checks them itself).
std::optional<Bytes> PeerCertificateDer(SSL* ssl);

}  // namespace devid::crypto
