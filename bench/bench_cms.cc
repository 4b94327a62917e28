// The CMS over HTTPS, beside the CA engine in the same run:
//   BM_Engine_IssueFromCsr   - SigningCa::Issue (CSR checked, signed, committed)
//   BM_Https_IssueFromCsr    - POST /api/v1/orgs/{org}/certificates on a running
//                              server (TLS, keep-alive, bearer token, JSON,
//                              audit record), one client connection
//   BM_Engine_Batch / BM_Https_Batch - 100 server-made identities per call,
//                              PKCS#12 bundle (HTTPS) / certificates only (engine)
//   BM_Https_Ocsp            - POST /ocsp/{org}/{ca}, one connection, and
//   BM_Https_Ocsp_2conns     - two client threads (the server has two threads)
// Both sides use the same store durability as `devid serve` (synchronous=FULL).
// Targets (issue 5): HTTPS issuance >= 50% of the engine; OCSP >= 10,000/s.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "ca/hierarchy.h"
#include "cms/api.h"
#include "cms/auth.h"
#include "cms/backend.h"
#include "cms/revocation_service.h"
#include "cms/server_tls.h"
#include "crypto/csr.h"
#include "crypto/ocsp.h"
#include "median_reporter.h"
#include "store/store.h"

namespace devid::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

constexpr int kBatch = 100;

// One keep-alive HTTPS connection.
class Client {
 public:
  Client(uint16_t port, const std::string& ca_pem) : tls_(asio::ssl::context::tls_client) {
    tls_.add_certificate_authority(asio::buffer(ca_pem));
    tls_.set_verify_mode(asio::ssl::verify_peer);
    stream_.emplace(ioc_, tls_);
    tcp::resolver resolver(ioc_);
    beast::get_lowest_layer(*stream_).connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    beast::get_lowest_layer(*stream_).socket().set_option(tcp::no_delay(true));
    stream_->handshake(asio::ssl::stream_base::client);
  }
  // The response status; its body in `body`.
  int Post(const std::string& target, const std::string& content_type, const std::string& payload,
           const std::string& token, std::string* body) {
    auto req = Request(target, content_type, payload, token);
    bhttp::write(*stream_, req);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(*stream_, buffer_, res);
    if (body != nullptr) *body = std::move(res.body());
    return static_cast<int>(res.result_int());
  }
  // HTTP/1.1 pipelining: `depth` requests written at once, then their
  // responses read in order. How many had status `want`.
  int PostPipelined(const std::string& target, const std::string& content_type,
                    const std::string& payload, const std::string& token, int depth, int want) {
    auto req = Request(target, content_type, payload, token);
    std::string wire;
    {
      std::ostringstream out;
      out << req;
      wire = out.str();
    }
    std::string batch;
    for (int i = 0; i < depth; ++i) batch += wire;
    asio::write(*stream_, asio::buffer(batch));
    int good = 0;
    for (int i = 0; i < depth; ++i) {
      bhttp::response<bhttp::string_body> res;
      bhttp::read(*stream_, buffer_, res);
      if (static_cast<int>(res.result_int()) == want) ++good;
    }
    return good;
  }

 private:
  static bhttp::request<bhttp::string_body> Request(const std::string& target,
                                                    const std::string& content_type,
                                                    const std::string& payload,
                                                    const std::string& token) {
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::content_type, content_type);
    if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
    req.keep_alive(true);
    req.body() = payload;
    req.prepare_payload();
    return req;
  }

  asio::io_context ioc_;
  asio::ssl::context tls_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> stream_;
  beast::flat_buffer buffer_;
};

struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<store::Store> engine_db;  // the engine's own store (same durability)
  std::unique_ptr<ca::Hierarchy> engine_hierarchy;
  std::unique_ptr<ca::SigningCa> engine_ica;
  std::unique_ptr<store::Store> db;  // the server's
  std::unique_ptr<ca::Hierarchy> hierarchy;
  http::Metrics metrics;
  http::Router router;
  std::unique_ptr<cms::Backend> backend;
  std::unique_ptr<cms::Authenticator> auth;
  std::unique_ptr<cms::Api> api;
  std::unique_ptr<cms::RevocationService> revocation;
  std::unique_ptr<http::Server> server;
  std::thread server_thread;
  std::string ca_pem;
  std::string token;
  std::string csr_pem;
  std::string issue_body;
  std::string batch_body;
  Bytes ocsp_request;          // with a nonce: signed for each request
  Bytes ocsp_request_rfc5019;  // without: answered from the 60 s cache
  ca::CertificateProfile profile;
  crypto::CertificateRequest csr;

  static std::unique_ptr<ca::Hierarchy> MakeCa(store::Store& s) {
    auto h = std::make_unique<ca::Hierarchy>(s, ca::KeyProtection{});
    Must(h->InitRoot("bench", {"CN=Bench Root", crypto::KeyType::kEcP256, {}, "", ""}), "root");
    Must(h->InitIssuing("bench", "ica", {"CN=Bench ICA", crypto::KeyType::kEcP256, {}, "", ""}),
         "ica");
    return h;
  }

  Fixture() : csr(MakeCsr()) {
    dir =
        std::filesystem::temp_directory_path() / ("devid-bench-cms-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    engine_db = Must(store::OpenStore((dir / "engine.db").string()), "engine store");
    engine_hierarchy = MakeCa(*engine_db);
    engine_ica =
        std::make_unique<ca::SigningCa>(Must(engine_hierarchy->Unlock("bench", "ica"), "unlock"));
    profile = Must(engine_hierarchy->FindProfile("device"), "profile");

    db = Must(store::OpenStore((dir / "devid.db").string()), "server store");
    hierarchy = MakeCa(*db);
    backend = std::make_unique<cms::Backend>(*db, *hierarchy, &metrics);
    auth = std::make_unique<cms::Authenticator>(*db);
    api = std::make_unique<cms::Api>(*backend, *auth, "");
    api->Register(router);
    revocation = std::make_unique<cms::RevocationService>(*backend);
    revocation->Register(router);
    auto org = Must(db->GetOrganization("bench"), "org");
    token = Must(auth->CreateApiToken(org.id, cms::Role::kOperator, "bench", std::nullopt), "token")
                .secret;
    std::vector<crypto::GeneralName> names = {
        Must(crypto::GeneralName::Parse("ip:127.0.0.1"), "name")};
    auto tls = Must(cms::LoadOrCreateServerTls(dir.string(), names), "server TLS");
    ca_pem = tls.chain_pem.substr(tls.chain_pem.find("-----END CERTIFICATE-----") + 26);
    http::ServerOptions options;
    options.port = 0;
    options.certificate_pem = tls.chain_pem;
    options.key_pem = tls.key_pem;
    server = Must(http::Server::Start(options, router, &metrics), "server");
    server_thread = std::thread([this] { server->Run(false); });

    csr_pem = Must(csr.ToPem(), "csr pem");
    issue_body = nlohmann::json{{"ca", "ica"}, {"template", "device"}, {"csr", csr_pem}}.dump();
    batch_body =
        nlohmann::json{
            {"ca", "ica"},     {"template", "device"}, {"subject", "CN=batch-{n}"},
            {"count", kBatch}, {"format", "pkcs12"},   {"password", "bench-bundle-password"}}
            .dump();
    auto ica = Must(hierarchy->Unlock("bench", "ica"), "unlock");
    auto issued = Must(ica.Issue(profile, csr), "issue");
    ocsp_request = Must(crypto::MakeOcspRequestFor(issued.certificate, ica.certificate()), "ocsp");
    ocsp_request_rfc5019 =
        Must(crypto::MakeOcspRequestFor(issued.certificate, ica.certificate(), false), "ocsp");
  }
  ~Fixture() {
    server->Stop();
    server_thread.join();
    server.reset();
    engine_ica.reset();
    std::filesystem::remove_all(dir);
  }

  static crypto::CertificateRequest MakeCsr() {
    auto key = Must(crypto::PrivateKey::Generate(crypto::KeyType::kEcP256), "key");
    auto dn = Must(crypto::DistinguishedName::Parse("CN=bench-device"), "dn");
    return Must(crypto::MakeCertificateRequest(key, dn, {}), "csr");
  }
};

Fixture& F() {
  static Fixture f;
  return f;
}

void BM_Engine_IssueFromCsr(benchmark::State& state) {
  for (auto _ : state) Must(F().engine_ica->Issue(F().profile, F().csr), "engine issue");
}
void BM_Https_IssueFromCsr(benchmark::State& state) {
  Client client(F().server->port(), F().ca_pem);
  std::string body;
  for (auto _ : state) {
    if (client.Post("/api/v1/orgs/bench/certificates", "application/json", F().issue_body,
                    F().token, &body) != 201) {
      state.SkipWithError(("issue failed: " + body).c_str());
      break;
    }
  }
}
void BM_Engine_Batch(benchmark::State& state) {
  for (auto _ : state) {
    std::vector<crypto::PrivateKey> keys;
    std::vector<ca::SigningCa::BatchItem> items;
    for (int i = 0; i < kBatch; ++i) {
      keys.push_back(Must(crypto::PrivateKey::Generate(crypto::KeyType::kEcP256), "key"));
    }
    for (int i = 0; i < kBatch; ++i) {
      items.push_back({&keys[static_cast<size_t>(i)],
                       Must(crypto::DistinguishedName::Parse("CN=b-" + std::to_string(i)), "dn"),
                       {}});
    }
    Must(F().engine_ica->IssueBatch(F().profile, items), "batch");
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void BM_Https_Batch(benchmark::State& state) {
  Client client(F().server->port(), F().ca_pem);
  std::string body;
  for (auto _ : state) {
    if (client.Post("/api/v1/orgs/bench/batches", "application/json", F().batch_body, F().token,
                    &body) != 201) {
      state.SkipWithError(("batch failed: " + body).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void BM_Https_Ocsp(benchmark::State& state) {
  static std::string request(F().ocsp_request.begin(), F().ocsp_request.end());
  Client client(F().server->port(), F().ca_pem);
  std::string body;
  for (auto _ : state) {
    if (client.Post("/ocsp/bench/ica", "application/ocsp-request", request, "", &body) != 200) {
      state.SkipWithError("ocsp failed");
      break;
    }
  }
}
BENCHMARK(BM_Engine_IssueFromCsr)->UseRealTime();
BENCHMARK(BM_Https_IssueFromCsr)->UseRealTime();
BENCHMARK(BM_Engine_Batch)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Https_Batch)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Https_Ocsp)->UseRealTime();

// Requests per second from `connections` keep-alive clients, each keeping
// kDepth requests in flight (HTTP/1.1 pipelining), for `seconds`. One client
// waiting for each answer measures this VM's thread wake-up latency (100-170
// us a hop) more than the server; with requests in flight, as from a fleet,
// the server's own cost shows.
constexpr int kDepth = 16;
double Throughput(int connections, double seconds, const std::string& target,
                  const std::string& type, const std::string& payload, const std::string& token,
                  int want) {
  std::atomic<long> done{0};
  std::atomic<bool> failed{false};
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < connections; ++i) {
    threads.emplace_back([&] {
      Client client(F().server->port(), F().ca_pem);
      std::string body;
      while (std::chrono::steady_clock::now() < until) {
        if (client.PostPipelined(target, type, payload, token, kDepth, want) != kDepth) {
          failed = true;
          return;
        }
        done += kDepth;
      }
    });
  }
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (failed) {
    std::cerr << "throughput run of " << target << " failed\n";
    return 0;
  }
  return static_cast<double>(done) / elapsed;
}

}  // namespace
}  // namespace devid::bench

int main(int argc, char** argv) {
  devid::bench::F();
  devid::bench::MedianReporter reporter;
  devid::bench::RunBenchmarks(argc, argv, 3, reporter);
  double engine = reporter.Median("BM_Engine_IssueFromCsr");
  double https = reporter.Median("BM_Https_IssueFromCsr");
  double engine_batch = reporter.Median("BM_Engine_Batch") * devid::bench::kBatch;
  double https_batch = reporter.Median("BM_Https_Batch") * devid::bench::kBatch;
  double ocsp1 = reporter.Median("BM_Https_Ocsp");
  bool smoke = false;
  for (int i = 1; i < argc; ++i) smoke = smoke || std::string_view(argv[i]) == "--smoke";
  double run_seconds = smoke ? 0.2 : 3;
  const auto& fixture = devid::bench::F();
  const std::string ocsp_body(fixture.ocsp_request.begin(), fixture.ocsp_request.end());
  const std::string ocsp_cached_body(fixture.ocsp_request_rfc5019.begin(),
                                     fixture.ocsp_request_rfc5019.end());
  std::vector<double> issue4, ocsp4, ocsp4_two, ocsp_cached;
  for (int round = 0; round < (smoke ? 1 : 3); ++round) {
    ocsp4.push_back(devid::bench::Throughput(1, run_seconds, "/ocsp/bench/ica",
                                             "application/ocsp-request", ocsp_body, "", 200));
    // Two connections: the server's two threads sign concurrently.
    ocsp4_two.push_back(devid::bench::Throughput(2, run_seconds, "/ocsp/bench/ica",
                                                 "application/ocsp-request", ocsp_body, "", 200));
    ocsp_cached.push_back(devid::bench::Throughput(
        1, run_seconds, "/ocsp/bench/ica", "application/ocsp-request", ocsp_cached_body, "", 200));
    issue4.push_back(devid::bench::Throughput(1, run_seconds, "/api/v1/orgs/bench/certificates",
                                              "application/json", fixture.issue_body, fixture.token,
                                              201));
  }
  std::sort(issue4.begin(), issue4.end());
  std::sort(ocsp4.begin(), ocsp4.end());
  std::sort(ocsp4_two.begin(), ocsp4_two.end());
  double ocsp_two = ocsp4_two[ocsp4_two.size() / 2];
  std::sort(ocsp_cached.begin(), ocsp_cached.end());
  double ocsp_rfc5019 = ocsp_cached[ocsp_cached.size() / 2];
  double https4 = issue4[issue4.size() / 2];
  double ocsp2 = ocsp4[ocsp4.size() / 2];
  if (engine > 0 && https > 0) {
    std::printf(
        "\nmedians of 3 interleaved runs:\n"
        "  CSR issuance: HTTPS %.0f/s one connection = %.0f%% of the engine %.0f/s; "
        "%.0f/s with %d in flight = %.0f%% (target >= 50%%)\n"
        "  batch identities: HTTPS %.0f/s (PKCS#12) = %.0f%% of the engine %.0f/s\n"
        "  OCSP over HTTPS: %.0f/s one at a time, %.0f/s with %d in flight, %.0f/s with %d in "
        "flight on each of 2 connections, each signed (requests with a nonce); %.0f/s without "
        "a nonce (RFC 5019, cached 60 s) (target >= 10,000/s)\n",
        https, 100 * https / engine, engine, https4, devid::bench::kDepth, 100 * https4 / engine,
        https_batch, engine_batch > 0 ? 100 * https_batch / engine_batch : 0, engine_batch, ocsp1,
        ocsp2, devid::bench::kDepth, ocsp_two, devid::bench::kDepth, ocsp_rfc5019);
  }
  benchmark::Shutdown();
  return 0;
}
