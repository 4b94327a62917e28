#include "http/server.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include <optional>
#include <thread>

#include "crypto/tls.h"

namespace devid::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string> Segments(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

std::optional<std::string> PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+' && plus_is_space) {
      out.push_back(' ');
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      int hi = hex(s[i + 1]);
      int lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string Request::Header(std::string_view name) const {
  auto it = headers.find(Lower(name));
  return it == headers.end() ? std::string() : it->second;
}

bool HasMediaType(const Request& request, std::string_view media_type) {
  std::string type = Lower(request.Header("content-type"));
  type = type.substr(0, type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  return type == Lower(media_type);
}

Response JsonError(int status, std::string_view code, std::string_view message) {
  nlohmann::json j = {{"error", {{"code", code}, {"message", message}}}};
  return Response{status,
                  "application/json",
                  j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  {}};
}

void Router::Add(std::string method, std::string pattern, Handler handler) {
  auto segments = Segments(pattern);
  routes_.push_back(
      Route{std::move(method), std::move(pattern), std::move(segments), std::move(handler)});
}

Response Router::Dispatch(Request& request, std::string* route) const {
  auto path = Segments(request.path);
  bool path_matched = false;
  for (const Route& r : routes_) {
    if (r.segments.size() != path.size()) continue;
    std::map<std::string, std::string> params;
    bool match = true;
    for (size_t i = 0; i < path.size() && match; ++i) {
      const std::string& want = r.segments[i];
      if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
        params[want.substr(1, want.size() - 2)] = path[i];
      } else {
        match = want == path[i];
      }
    }
    if (!match) continue;
    path_matched = true;
    if (r.method != request.method) continue;
    request.params = std::move(params);
    if (route != nullptr) *route = r.pattern;
    try {
      return r.handler(request);
    } catch (const std::exception&) {
      // A handler's bug must not take the server down; it is logged as a 500.
      return JsonError(500, "internal", "the request failed inside the server");
    }
  }
  if (route != nullptr) *route = path_matched ? "(method)" : "(none)";
  return path_matched ? JsonError(405, "method_not_allowed", "this method is not allowed here")
                      : JsonError(404, "not_found", "no such resource");
}

struct Server::Impl {
  ServerOptions options;
  const Router& router;
  Metrics* metrics;
  // One single-threaded io_context per thread. A connection lives on one of
  // them, so its handlers never hop between threads: each hop is a thread
  // wake-up (100-170 us on the 2-core reference VM), several per request.
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  size_t next_context = 0;
  ssl::context tls{ssl::context::tls_server};
  // Optional so that it goes before the contexts it is registered with.
  std::optional<tcp::acceptor> acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<int> sessions{0};
  std::optional<asio::steady_timer> shutdown_timer;
  std::optional<asio::signal_set> signals;

  static std::vector<std::unique_ptr<asio::io_context>> MakeContexts(int threads) {
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (int i = 0; i < std::max(threads, 1); ++i) {
      out.push_back(std::make_unique<asio::io_context>(1));  // one thread: no internal locking
    }
    return out;
  }
  Impl(ServerOptions o, const Router& r, Metrics* m)
      : options(std::move(o)),
        router(r),
        metrics(m),
        contexts(MakeContexts(options.threads)),
        acceptor(std::in_place, *contexts[0]) {
    for (auto& c : contexts) guards.push_back(asio::make_work_guard(*c));
  }
  ~Impl() {
    stopping = true;
    signals.reset();
    shutdown_timer.reset();
    acceptor.reset();
    // Pending handlers (and the sessions they hold) go with their context;
    // a session's destructor may call StopAll, which skips contexts gone.
    guards.clear();
    for (auto& c : contexts) {
      auto gone = std::move(c);
      gone.reset();
    }
  }
  asio::io_context& main_context() { return *contexts[0]; }
  void StopAll() {
    for (auto& c : contexts) {
      if (c) c->stop();
    }
  }
  void Accept();
  void BeginShutdown();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server::Impl* server)
      : stream_(std::move(socket), server->tls), server_(server) {
    ++server_->sessions;
    beast::error_code ec;
    auto remote = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    if (!ec) peer_ = remote.address().to_string() + ":" + std::to_string(remote.port());
  }

  ~Session() {
    // The last connection gone during a shutdown: nothing left to wait for.
    if (--server_->sessions == 0 && server_->stopping) server_->StopAll();
  }

  void Run() {
    beast::get_lowest_layer(stream_).expires_after(server_->options.read_timeout);
    stream_.async_handshake(
        ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
          if (ec) return;  // not TLS, or too slow: dropped
          self->client_certificate_ = crypto::PeerCertificateDer(self->stream_.native_handle());
          self->Read(true);
        });
  }

 private:
  void StartParser() {
    parser_.emplace();
    parser_->body_limit(server_->options.body_limit);
    parser_->header_limit(16 * 1024);
  }

  void Read(bool first, bool parser_started = false) {
    if (!parser_started) StartParser();
    beast::get_lowest_layer(stream_).expires_after(first ? server_->options.read_timeout
                                                         : server_->options.idle_timeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == ssl::error::stream_truncated) {
      return pending_.empty() ? Close() : Flush(false);
    }
    if (ec == bhttp::error::body_limit) {
      return Send(JsonError(413, "body_too_large", "the request body is larger than allowed"),
                  false, "(none)", std::chrono::steady_clock::now());
    }
    if (ec) {
      return Send(JsonError(400, "bad_request", "the request is not valid HTTP"), false, "(none)",
                  std::chrono::steady_clock::now());
    }
    auto start = std::chrono::steady_clock::now();
    auto& raw = parser_->get();
    Request req;
    req.method = std::string(raw.method_string());
    std::string_view target(raw.target().data(), raw.target().size());
    size_t q = target.find('?');
    req.path = std::string(target.substr(0, q));
    bool bad_query = false;
    if (q != std::string_view::npos) {
      std::string_view query = target.substr(q + 1);
      while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        size_t eq = pair.find('=');
        auto key = PercentDecode(pair.substr(0, eq), true);
        auto value = PercentDecode(
            eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
        if (!key || !value) {
          bad_query = true;
          break;
        }
        req.query[*key] = *value;
      }
    }
    for (const auto& field : raw) {
      req.headers[Lower(std::string_view(field.name_string().data(), field.name_string().size()))] =
          std::string(field.value());
    }
    req.body = std::move(raw.body());
    req.peer = peer_;
    req.client_certificate = client_certificate_;
    bool keep_alive = raw.keep_alive() && !server_->stopping;
    std::string route = "(none)";
    Response res = bad_query ? JsonError(400, "bad_request", "the query string is malformed")
                             : server_->router.Dispatch(req, &route);
    Send(std::move(res), keep_alive, route, start, req.method, req.path);
  }

  void Send(Response res, bool keep_alive, const std::string& route,
            std::chrono::steady_clock::time_point start, const std::string& method = "-",
            const std::string& path = "-") {
    bhttp::response<bhttp::string_body> out;
    out.version(11);
    out.result(static_cast<unsigned>(res.status));
    out.set(bhttp::field::server, "devid");
    out.set(bhttp::field::content_type, res.content_type);
    out.set(bhttp::field::cache_control, "no-store");
    for (const auto& [k, v] : res.headers) out.set(k, v);
    out.keep_alive(keep_alive);
    out.body() = std::move(res.body);
    out.prepare_payload();
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (server_->metrics != nullptr) {
      std::string labels = "method=\"" + method + "\",route=\"" + route + "\",status=\"" +
                           std::to_string(res.status) + "\"";
      server_->metrics->Increment("devid_http_requests_total", labels);
      server_->metrics->Observe("devid_http_request_duration_seconds", "route=\"" + route + "\"",
                                seconds);
    }
    if (server_->options.access_log) {
      nlohmann::json line = {{"event", "request"},   {"method", method},
                             {"path", path},         {"route", route},
                             {"status", res.status}, {"us", static_cast<long long>(seconds * 1e6)},
                             {"peer", peer_}};
      server_->options.access_log(
          line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    Serialize(out, &pending_);
    ++pending_count_;
    if (!keep_alive) return Flush(false);
    // HTTP/1.1 pipelining: when the next request is already here whole, its
    // answer joins this one in a single TLS write (one record, one send
    // instead of one per response). Nothing waits on the network while
    // answers are held: an incomplete next request sends them first.
    if (buffer_.size() > 0 && pending_.size() < kMaxPendingBytes &&
        pending_count_ < kMaxPendingAnswers) {
      StartParser();
      beast::error_code ec;
      while (!parser_->is_done() && buffer_.size() > 0) {
        size_t used = parser_->put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec || used == 0) break;
      }
      if (parser_->is_done() || (ec && ec != bhttp::error::need_more)) {
        // At most kMaxPendingAnswers deep: the recursion is bounded.
        return OnRead(ec);
      }
      return Flush(true, /*parser_started=*/true);
    }
    Flush(true);
  }

  // Serializes `message` (as async_write would send it) onto `out`.
  static void Serialize(bhttp::response<bhttp::string_body>& message, std::string* out) {
    bhttp::serializer<false, bhttp::string_body> serializer(message);
    beast::error_code ec;
    do {
      serializer.next(ec, [&](beast::error_code&, const auto& buffers) {
        for (const auto& b : beast::buffers_range_ref(buffers)) {
          out->append(static_cast<const char*>(b.data()), b.size());
        }
        serializer.consume(beast::buffer_bytes(buffers));
      });
    } while (!ec && !serializer.is_done());
  }

  // Writes the answers held so far; then reads the next request (continuing
  // a parser already fed from the buffer) or, without keep-alive, closes.
  void Flush(bool keep_alive, bool parser_started = false) {
    auto out = std::make_shared<std::string>(std::move(pending_));
    pending_.clear();
    pending_count_ = 0;
    beast::get_lowest_layer(stream_).expires_after(server_->options.read_timeout);
    asio::async_write(
        stream_, asio::buffer(*out),
        [self = shared_from_this(), out, keep_alive, parser_started](beast::error_code ec, size_t) {
          if (ec || !keep_alive) return self->Close();
          self->Read(false, parser_started);
        });
  }

  void Close() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().close(ignored);
    });
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  // Serialized answers to pipelined requests, not yet written.
  static constexpr size_t kMaxPendingBytes = 64 * 1024;
  static constexpr int kMaxPendingAnswers = 32;
  std::string pending_;
  int pending_count_ = 0;
  Server::Impl* server_;
  std::string peer_;
  std::optional<Bytes> client_certificate_;
};

}  // namespace

void Server::Impl::Accept() {
  asio::io_context& target = *contexts[next_context++ % contexts.size()];
  acceptor->async_accept(target, [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
    if (!ec) {
      // Responses go out in one write; without this, Nagle's algorithm and the
      // client's delayed ACK add ~40 ms to every keep-alive exchange.
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(socket), this)->Run();
    }
    Accept();
  });
}

void Server::Impl::BeginShutdown() {
  if (stopping.exchange(true)) return;
  beast::error_code ignored;
  acceptor->close(ignored);
  if (signals) signals->cancel(ignored);
  if (sessions == 0) return StopAll();
  // Requests in flight get a few seconds; idle keep-alive connections do not hold us.
  shutdown_timer.emplace(main_context(), std::chrono::seconds(5));
  shutdown_timer->async_wait([this](beast::error_code) { StopAll(); });
}

Result<std::unique_ptr<Server>> Server::Start(ServerOptions options, const Router& router,
                                              Metrics* metrics) {
  auto impl = std::make_unique<Impl>(std::move(options), router, metrics);
  beast::error_code ec;
  impl->tls.use_certificate_chain(asio::buffer(impl->options.certificate_pem), ec);
  if (!ec) impl->tls.use_private_key(asio::buffer(impl->options.key_pem), ssl::context::pem, ec);
  if (ec)
    return MakeError(ErrorCode::kInvalidInput,
                     "the server's TLS certificate or key: " + ec.message());
  if (impl->options.request_client_certificate) {
    // Any certificate is taken at this layer; the handlers that rely on it
    // (EST re-enrolment) verify it against the CA that issued it.
    impl->tls.set_verify_mode(ssl::verify_peer);
    impl->tls.set_verify_callback([](bool, ssl::verify_context&) { return true; });
    DEVID_TRY(crypto::SetSessionIdContext(impl->tls.native_handle(), "devid"));
  }
  // TLS 1.2 and 1.3 only.
  impl->tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  auto address = asio::ip::make_address(impl->options.address, ec);
  if (ec) return MakeError(ErrorCode::kInvalidInput, "bad listen address " + impl->options.address);
  tcp::endpoint endpoint(address, impl->options.port);
  impl->acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor->bind(endpoint, ec);
  if (!ec) impl->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return MakeError(ErrorCode::kIo, "cannot listen on " + impl->options.address + ":" +
                                         std::to_string(impl->options.port) + ": " + ec.message());
  }
  impl->Accept();
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

uint16_t Server::port() const {
  beast::error_code ec;
  auto endpoint = impl_->acceptor->local_endpoint(ec);
  return ec ? impl_->options.port : endpoint.port();
}

void Server::Run(bool handle_signals) {
  if (handle_signals) {
    impl_->signals.emplace(impl_->main_context(), SIGINT, SIGTERM);
    impl_->signals->async_wait([this](beast::error_code ec, int) {
      if (!ec) impl_->BeginShutdown();
    });
  }
  std::vector<std::thread> threads;
  for (size_t i = 1; i < impl_->contexts.size(); ++i) {
    threads.emplace_back([this, i] { impl_->contexts[i]->run(); });
  }
  impl_->main_context().run();
  for (auto& t : threads) t.join();
}

void Server::Stop() {
  asio::post(impl_->main_context(), [this] { impl_->BeginShutdown(); });
}

}  // namespace devid::http
