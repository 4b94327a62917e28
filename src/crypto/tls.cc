#include "crypto/tls.h"

#include <openssl/err.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <optional>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"

namespace devid::crypto {

namespace {

// The client key by URI: a file, or `devid:…` when the devid provider is loaded.
Result<UniquePtr<EVP_PKEY>> LoadKey(const TlsClientOptions& o) {
  UniquePtr<OSSL_STORE_CTX> store(OSSL_STORE_open_ex(o.key_uri.c_str(), o.context,
                                                     o.properties.c_str(), nullptr, nullptr,
                                                     nullptr, nullptr, nullptr));
  if (!store) return OpenSslError("opening the client key " + o.key_uri, ErrorCode::kInvalidInput);
  while (OSSL_STORE_eof(store.get()) == 0) {
    UniquePtr<OSSL_STORE_INFO> info(OSSL_STORE_load(store.get()));
    if (info && OSSL_STORE_INFO_get_type(info.get()) == OSSL_STORE_INFO_PKEY) {
      return UniquePtr<EVP_PKEY>(OSSL_STORE_INFO_get1_PKEY(info.get()));
    }
    if (!info && OSSL_STORE_error(store.get()) != 0) break;
  }
  return OpenSslError("no private key at " + o.key_uri, ErrorCode::kInvalidInput);
}

// A TCP connection with send/receive timeouts (connect honours the send one).
Result<int> Connect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return MakeError(ErrorCode::kIo, "cannot resolve " + host + ": " + ::gai_strerror(rc));
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  std::string last = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    last = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return MakeError(ErrorCode::kIo,
                   "cannot connect to " + host + ":" + std::to_string(port) + ": " + last);
}

std::string NameText(const X509_NAME* name) {
  auto text = internal::EncodePem("name", [&](BIO* bio) {
    return X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0 ? 1 : 0;
  });
  return text.ok() ? *text : "?";
}

// Installs the client certificate chain and key on `ssl`.
Status UseChain(SSL* ssl, const std::vector<Certificate>& chain, EVP_PKEY* key) {
  if (chain.empty()) return MakeError(ErrorCode::kInvalidInput, "no client certificate");
  if (SSL_use_certificate(ssl, chain.front().get()) != 1) {
    return OpenSslError("using the client certificate", ErrorCode::kInvalidInput);
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    if (SSL_add1_chain_cert(ssl, chain[i].get()) != 1)
      return OpenSslError("adding the client's CA certificate");
  }
  if (SSL_use_PrivateKey(ssl, key) != 1) {
    return OpenSslError("the client key does not match the client certificate",
                        ErrorCode::kInvalidInput);
  }
  return {};
}

struct ChainCallback {
  const TlsClientOptions* options;
  EVP_PKEY* key;
  std::optional<Error> failure;
};

}  // namespace

Result<UniquePtr<OSSL_LIB_CTX>> NewLibraryContext() {
  UniquePtr<OSSL_LIB_CTX> ctx(OSSL_LIB_CTX_new());
  if (!ctx) return OpenSslError("creating a library context");
  return ctx;
}

namespace {

bool IsIpAddress(const std::string& text) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, text.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// Why a client handshake failed: the server's chain, else OpenSSL's reason.
Error HandshakeError(SSL* ssl, const std::string& host, uint16_t port) {
  long verdict = SSL_get_verify_result(ssl);
  if (verdict != X509_V_OK) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kVerification,
                     std::string("the server certificate is not trusted: ") +
                         X509_verify_cert_error_string(verdict));
  }
  return OpenSslError("TLS handshake with " + host + ":" + std::to_string(port), ErrorCode::kIo);
}

// Everything of a client context but the client's own certificate and key,
// on `ctx` (a context of MakeClientContext) or on a new one. Every setting is
// applied anew, so that nothing of a reused context's last use remains.
Result<UniquePtr<SSL_CTX>> ConfigureClientContext(const TlsClientOptions& o,
                                                  UniquePtr<SSL_CTX> ctx) {
  if (!ctx) {
    const char* props = o.properties.empty() ? nullptr : o.properties.c_str();
    ctx.reset(SSL_CTX_new_ex(o.context, props, TLS_client_method()));
    if (!ctx) return OpenSslError("creating the TLS context");
    // No session outlives its connection: a reused context carries none over.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  }
  int version = o.version == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  const char* ciphers =
      o.version == TlsVersion::kTls12 ? o.tls12_ciphers.c_str() : OSSL_default_cipher_list();
  if (SSL_CTX_set_min_proto_version(ctx.get(), version) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), version) != 1 ||
      SSL_CTX_set_cipher_list(ctx.get(), ciphers) != 1 ||
      // The chip's curves: the ephemeral key can then be made in it.
      SSL_CTX_set1_groups_list(ctx.get(), "secp256r1:secp384r1") != 1) {
    return OpenSslError("configuring the TLS context", ErrorCode::kInvalidInput);
  }
  UniquePtr<X509_STORE> trust(X509_STORE_new());
  if (!trust) return OpenSslError("creating the trust store");
  for (const Certificate& c : o.trust) {
    if (X509_STORE_add_cert(trust.get(), c.get()) != 1)
      return OpenSslError("adding a trust anchor");
  }
  X509_STORE_set_flags(trust.get(), X509_V_FLAG_PARTIAL_CHAIN);
  SSL_CTX_set_cert_store(ctx.get(), trust.release());  // the earlier store is freed
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx.get());
  if (X509_VERIFY_PARAM_set1_host(param, nullptr, 0) != 1 ||
      X509_VERIFY_PARAM_set1_ip(param, nullptr, 0) != 1) {
    return OpenSslError("clearing the server name");
  }
  if (!o.server_name.empty()) {
    int set = IsIpAddress(o.server_name)
                  ? X509_VERIFY_PARAM_set1_ip_asc(param, o.server_name.c_str())
                  // The name must be a subjectAltName: never the subject's CN.
                  : X509_VERIFY_PARAM_set1_host(param, o.server_name.c_str(), 0);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    if (set != 1) return OpenSslError("setting the name the server must carry");
  }
  return ctx;
}

}  // namespace

Result<UniquePtr<SSL_CTX>> MakeClientContext(const TlsClientOptions& o, UniquePtr<SSL_CTX> reused) {
  // A context cannot drop a client certificate: one is reused only to carry another.
  if (o.chain.empty()) reused.reset();
  DEVID_ASSIGN_OR_RETURN(UniquePtr<SSL_CTX> ctx, ConfigureClientContext(o, std::move(reused)));
  if (!o.chain.empty()) {
    DEVID_ASSIGN_OR_RETURN(UniquePtr<EVP_PKEY> key, LoadKey(o));
    UniquePtr<STACK_OF(X509)> cas(sk_X509_new_null());
    if (!cas) return OpenSslError("allocating the client's chain");
    for (size_t i = 1; i < o.chain.size(); ++i) {
      if (X509_up_ref(o.chain[i].get()) != 1 || sk_X509_push(cas.get(), o.chain[i].get()) <= 0) {
        return OpenSslError("adding the client's CA certificate");
      }
    }
    // Certificate, key and chain replaced together (override): the key must
    // match the certificate.
    if (SSL_CTX_use_cert_and_key(ctx.get(), o.chain.front().get(), key.get(), cas.get(), 1) != 1) {
      return OpenSslError("the client key does not match the client certificate",
                          ErrorCode::kInvalidInput);
    }
  }
  return ctx;
}

Result<UniquePtr<SSL_CTX>> ShareClientContext(SSL_CTX* ctx) {
  if (ctx == nullptr || SSL_CTX_up_ref(ctx) != 1) return OpenSslError("sharing a TLS context");
  return UniquePtr<SSL_CTX>(ctx);
}

Result<TlsConnection> TlsConnection::Open(SSL_CTX* ctx, const std::string& host, uint16_t port,
                                          const std::string& server_name,
                                          std::chrono::milliseconds timeout) {
  UniquePtr<SSL> ssl(SSL_new(ctx));
  if (!ssl) return OpenSslError("creating the TLS connection");
  if (!server_name.empty() && !IsIpAddress(server_name) &&
      SSL_set_tlsext_host_name(ssl.get(), server_name.c_str()) != 1) {
    return OpenSslError("setting the server name");
  }
  DEVID_ASSIGN_OR_RETURN(int fd, Connect(host, port, timeout));
  TlsConnection connection(std::move(ssl), fd);
  if (SSL_set_fd(connection.ssl_.get(), fd) != 1) return OpenSslError("attaching the socket");
  if (SSL_connect(connection.ssl_.get()) != 1) {
    return HandshakeError(connection.ssl_.get(), host, port);
  }
  return connection;
}

TlsConnection::TlsConnection(TlsConnection&& other) noexcept
    : ssl_(std::move(other.ssl_)), fd_(other.fd_) {
  other.fd_ = -1;
}

TlsConnection::~TlsConnection() {
  if (ssl_ && fd_ >= 0) SSL_shutdown(ssl_.get());
  ssl_.reset();
  if (fd_ >= 0) ::close(fd_);
}

Status TlsConnection::Write(ByteView data) {
  size_t done = 0;
  while (done < data.size()) {
    size_t written = 0;
    if (SSL_write_ex(ssl_.get(), data.data() + done, data.size() - done, &written) != 1) {
      return OpenSslError("writing to the TLS connection", ErrorCode::kIo);
    }
    done += written;
  }
  return {};
}

Result<Bytes> TlsConnection::ReadToEnd(size_t max) {
  Bytes out;
  unsigned char buf[16384];
  for (;;) {
    size_t got = 0;
    if (SSL_read_ex(ssl_.get(), buf, sizeof buf, &got) == 1) {
      out.insert(out.end(), buf, buf + got);
      if (out.size() > max) return MakeError(ErrorCode::kInvalidInput, "answer too large");
      continue;
    }
    int reason = SSL_get_error(ssl_.get(), 0);
    if (reason == SSL_ERROR_ZERO_RETURN) break;
    // A peer that closes the TCP connection without close_notify after a
    // complete HTTP answer (OpenSSL 3 reports the unexpected EOF as
    // SSL_ERROR_SSL with this reason): the caller checks the length it was
    // told. Any other failure, a forged record among them, is an error.
    if (reason == SSL_ERROR_SSL &&
        ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ClearOpenSslErrors();
      if (!out.empty()) break;
    }
    if (reason == SSL_ERROR_SYSCALL && !out.empty()) {
      ClearOpenSslErrors();
      break;
    }
    return MakeError(ErrorCode::kIo, "reading from the TLS connection failed");
  }
  return out;
}

Result<TlsSessionInfo> TlsHandshake(const TlsClientOptions& o, const std::string& host,
                                    uint16_t port) {
  if (o.chain.empty() && !o.chain_source) {
    return MakeError(ErrorCode::kInvalidInput, "no client certificate");
  }
  DEVID_ASSIGN_OR_RETURN(UniquePtr<SSL_CTX> ctx, ConfigureClientContext(o, nullptr));
  DEVID_ASSIGN_OR_RETURN(UniquePtr<EVP_PKEY> key, LoadKey(o));

  UniquePtr<SSL> ssl(SSL_new(ctx.get()));
  if (!ssl) return OpenSslError("creating the TLS connection");
  if (!o.server_name.empty() && !IsIpAddress(o.server_name) &&
      SSL_set_tlsext_host_name(ssl.get(), o.server_name.c_str()) != 1) {
    return OpenSslError("setting the server name");
  }
  DEVID_ASSIGN_OR_RETURN(int fd, Connect(host, port, o.timeout));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (SSL_set_fd(ssl.get(), fd) != 1) return OpenSslError("attaching the socket");
  ChainCallback callback{&o, key.get(), std::nullopt};
  if (o.chain_source) {
    // libssl calls this when the server's CertificateRequest is answered.
    SSL_set_cert_cb(
        ssl.get(),
        [](SSL* s, void* arg) -> int {
          auto* cb = static_cast<ChainCallback*>(arg);
          auto chain = cb->options->chain_source();
          Status used = chain.ok() ? UseChain(s, *chain, cb->key) : Status(chain.error());
          if (!used.ok()) cb->failure = used.error();
          return used.ok() ? 1 : 0;
        },
        &callback);
  } else {
    DEVID_TRY(UseChain(ssl.get(), o.chain, key.get()));
  }
  if (o.on_handshake_start) o.on_handshake_start();
  if (SSL_connect(ssl.get()) != 1) {
    if (callback.failure) {
      ClearOpenSslErrors();
      return *callback.failure;
    }
    return HandshakeError(ssl.get(), host, port);
  }
  TlsSessionInfo info;
  info.version = SSL_get_version(ssl.get());
  info.cipher = SSL_get_cipher_name(ssl.get());
  const char* group = SSL_group_to_name(ssl.get(), SSL_get_negotiated_group(ssl.get()));
  info.group = group != nullptr ? group : "";
  if (X509* peer = SSL_get0_peer_certificate(ssl.get())) {
    info.peer_subject = NameText(X509_get_subject_name(peer));
  }
  SSL_shutdown(ssl.get());  // close_notify; the server's answer is not awaited
  return info;
}

Status SetSessionIdContext(SSL_CTX* ctx, std::string_view context) {
  if (SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(context.data()),
                                     static_cast<unsigned int>(context.size())) != 1) {
    return OpenSslError("setting the TLS session id context");
  }
  return {};
}

std::optional<Bytes> PeerCertificateDer(SSL* ssl) {
  UniquePtr<X509> peer(SSL_get1_peer_certificate(ssl));
  if (!peer) return std::nullopt;
  unsigned char* out = nullptr;
  int len = i2d_X509(peer.get(), &out);
  if (len <= 0) {
    ClearOpenSslErrors();
    return std::nullopt;
  }
  UniquePtr<unsigned char> owned(out);
  return Bytes(out, out + len);
}

}  // namespace devid::crypto
