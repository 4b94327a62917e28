// The HTTPS server every devid service runs on (DESIGN §3): Boost.Beast over
// Boost.Asio, asynchronous (a slow or idle client costs a socket and a timer,
// not a thread), TLS always, request body and header limits, timeouts on
// every read, keep-alive, graceful shutdown. Handlers are plain functions of
// a request; the router maps method and path patterns to them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "http/metrics.h"

namespace devid::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string, percent-decoding not applied
  std::map<std::string, std::string> query;    // decoded
  std::map<std::string, std::string> headers;  // names lower-case
  std::map<std::string, std::string> params;   // from the route pattern ("{org}")
  std::string body;
  std::string peer;  // "ADDRESS:PORT"
  // The client's TLS certificate (DER), when it sent one; not verified by the
  // server layer: handlers that use it check it against their own trust.
  std::optional<Bytes> client_certificate;
  std::string Header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// RFC 3986 percent-decoding; `plus_is_space` for query components
// (application/x-www-form-urlencoded). nullopt when malformed.
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

// True when the request's Content-Type is `media_type` (compared without
// case, parameters such as "; charset=utf-8" ignored).
bool HasMediaType(const Request& request, std::string_view media_type);

// DESIGN §6: every error is {"error": {"code", "message"}} with its status.
Response JsonError(int status, std::string_view code, std::string_view message);

using Handler = std::function<Response(const Request&)>;

class Router {
 public:
  // `pattern`: literal segments and "{name}" segments ("/api/v1/orgs/{org}").
  void Add(std::string method, std::string pattern, Handler handler);
  // 404 when no pattern matches the path, 405 when one matches but not the method.
  // `route` gets the pattern that matched (for metrics labels).
  Response Dispatch(Request& request, std::string* route) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8443;         // 0: any free port (port() tells which)
  std::string certificate_pem;  // the server's chain, leaf first
  std::string key_pem;          // its private key (PKCS#8 PEM)
  size_t body_limit = 1 << 20;
  // Ask clients for a certificate (optional: a client without one still connects).
  bool request_client_certificate = false;
  std::chrono::seconds read_timeout{30};  // a request must arrive whole within it
  std::chrono::seconds idle_timeout{60};  // keep-alive without a request
  int threads = 2;
  // One JSON line a request to this sink (method, path, status, duration).
  std::function<void(const std::string&)> access_log;
};

class Server {
 public:
  // Binds and starts listening; Run() serves.
  static Result<std::unique_ptr<Server>> Start(ServerOptions options, const Router& router,
                                               Metrics* metrics);
  ~Server();
  uint16_t port() const;
  // Serves until Stop() or, with handle_signals, SIGTERM/SIGINT; then stops
  // accepting, lets requests in flight finish (up to 5 s) and returns.
  void Run(bool handle_signals);
  void Stop();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace devid::http
