#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <string>
#include <thread>

#include "core/time.h"
#include "crypto/certificate.h"
#include "crypto/key.h"
#include "crypto/name.h"
#include "http/metrics.h"
#include "http/server.h"

namespace devid::http {
namespace {

TEST(Router, PatternsMethodsAndParameters) {
  Router router;
  router.Add("GET", "/api/v1/orgs/{org}/certificates/{serial}", [](const Request& r) {
    return Response{200, "text/plain", r.params.at("org") + "/" + r.params.at("serial"), {}};
  });
  router.Add("POST", "/api/v1/orgs", [](const Request&) { return Response{201, "", "made", {}}; });
  router.Add("GET", "/boom", [](const Request&) -> Response { throw std::runtime_error("bug"); });
  Request r;
  std::string route;
  r.method = "GET";
  r.path = "/api/v1/orgs/acme/certificates/4F01";
  Response ok = router.Dispatch(r, &route);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "acme/4F01");
  EXPECT_EQ(route, "/api/v1/orgs/{org}/certificates/{serial}");
  r.path = "/api/v1/orgs";
  EXPECT_EQ(router.Dispatch(r, &route).status, 405);  // the path exists, not for GET
  r.method = "POST";
  EXPECT_EQ(router.Dispatch(r, &route).status, 201);
  r.path = "/api/v1/orgs/acme";
  Response missing = router.Dispatch(r, &route);
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, R"({"error":{"code":"not_found","message":"no such resource"}})");
  r.method = "GET";
  r.path = "/boom";
  EXPECT_EQ(router.Dispatch(r, &route).status, 500);  // a throwing handler is contained
}

TEST(Metrics, CountersAndHistogramsInTextFormat) {
  Metrics m;
  m.Increment("devid_issued_total", "org=\"acme\"");
  m.Increment("devid_issued_total", "org=\"acme\"", 2);
  m.Observe("devid_latency_seconds", "", 0.003);
  std::string text = m.Render();
  EXPECT_NE(text.find("# TYPE devid_issued_total counter\ndevid_issued_total{org=\"acme\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("devid_latency_seconds_bucket{le=\"0.0025\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("devid_latency_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("devid_latency_seconds_count 1\n"), std::string::npos);
}

TEST(JsonErrors, InvalidUtf8InMessagesIsReplacedNotThrown) {
  Response r = JsonError(400, "bad", std::string("caf\xC3", 4));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"code\":\"bad\""), std::string::npos);
}

// A server on a self-signed certificate, and one raw TLS connection to it.
class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = std::move(crypto::PrivateKey::Generate(crypto::KeyType::kEcP256)).value();
    crypto::CertificateBuilder b;
    int64_t now = NowUnix();
    ASSERT_TRUE(b.SetSerial(Bytes{0x01}).ok());
    ASSERT_TRUE(b.SetSubject(*crypto::DistinguishedName::Parse("CN=127.0.0.1")).ok());
    ASSERT_TRUE(b.SetSelfIssued().ok());
    ASSERT_TRUE(b.SetValidity(now - 60, now + 3600).ok());
    ASSERT_TRUE(b.SetPublicKey(key).ok());
    auto cert = b.Sign(key);
    ASSERT_TRUE(cert.ok()) << cert.error().message;
    router_.Add("POST", "/echo/{n}", [](const Request& r) {
      return Response{200, "text/plain", r.params.at("n") + ":" + r.body, {}};
    });
    ServerOptions options;
    options.port = 0;
    options.certificate_pem = *cert->ToPem();
    options.key_pem = *key.ToPkcs8Pem(nullptr);
    auto server = Server::Start(options, router_, nullptr);
    ASSERT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(server).value();
    thread_ = std::thread([this] { server_->Run(false); });
    tls_.set_verify_mode(boost::asio::ssl::verify_none);
    stream_.emplace(ioc_, tls_);
    boost::beast::get_lowest_layer(*stream_).connect(boost::asio::ip::tcp::endpoint(
        boost::asio::ip::make_address("127.0.0.1"), server_->port()));
    stream_->handshake(boost::asio::ssl::stream_base::client);
  }
  void TearDown() override {
    stream_.reset();
    if (server_) server_->Stop();
    if (thread_.joinable()) thread_.join();
  }
  static std::string Post(int n, const std::string& body, const std::string& extra = "") {
    return "POST /echo/" + std::to_string(n) + " HTTP/1.1\r\nHost: t\r\n" + extra +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }
  void Write(const std::string& wire) { boost::asio::write(*stream_, boost::asio::buffer(wire)); }
  // The next response: "status body".
  std::string Next() {
    namespace bhttp = boost::beast::http;
    bhttp::response<bhttp::string_body> res;
    boost::beast::error_code ec;
    bhttp::read(*stream_, buffer_, res, ec);
    if (ec) return "error: " + ec.message();
    return std::to_string(res.result_int()) + " " + res.body();
  }

  Router router_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  boost::asio::io_context ioc_;
  boost::asio::ssl::context tls_{boost::asio::ssl::context::tls_client};
  std::optional<boost::beast::ssl_stream<boost::beast::tcp_stream>> stream_;
  boost::beast::flat_buffer buffer_;
};

TEST_F(PipelineTest, PipelinedRequestsAreAnsweredInOrderWithoutWaitingForMore) {
  // More requests in one write than the server holds answers for at once.
  std::string wire;
  for (int i = 0; i < 40; ++i) wire += Post(i, "abc");
  // And the first half of one more: the 40 answers must not wait for the rest.
  std::string last = Post(40, "wxyz");
  wire += last.substr(0, last.size() - 2);
  Write(wire);
  for (int i = 0; i < 40; ++i) ASSERT_EQ(Next(), "200 " + std::to_string(i) + ":abc");
  Write(last.substr(last.size() - 2));
  EXPECT_EQ(Next(), "200 40:wxyz");
}

TEST_F(PipelineTest, GarbageAfterAPipelinedRequestIsAnsweredThenTheConnectionCloses) {
  Write(Post(1, "abc") + "NOT HTTP AT ALL\r\n\r\n" + Post(2, "abc"));
  EXPECT_EQ(Next(), "200 1:abc");
  EXPECT_EQ(Next().substr(0, 4), "400 ");
  EXPECT_EQ(Next().substr(0, 6), "error:");
}

TEST_F(PipelineTest, ConnectionCloseEndsThePipeline) {
  Write(Post(1, "a") + Post(2, "b", "Connection: close\r\n") + Post(3, "c"));
  EXPECT_EQ(Next(), "200 1:a");
  EXPECT_EQ(Next(), "200 2:b");
  EXPECT_EQ(Next().substr(0, 6), "error:");
}

}  // namespace
}  // namespace devid::http
