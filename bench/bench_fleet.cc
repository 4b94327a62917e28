// Fleet throughput (seed fig. 4 at scale): devices per second through the
// whole zero-touch flow (`agent::SimulateFleet`: chip made and personalised,
// EST simpleenroll with an enrolment token, mutual TLS to the hub through the
// chip, one QoS 1 publish acknowledged), no latency model, beside a floor
// measured in the same run:
//   BM_Floor_EngineIssue - SigningCa::Issue (CSR checked, signed, committed),
//                          the CA engine alone, in a store of its own
//   BM_Fleet             - one fleet of 1,000 devices per iteration against an
//                          in-process CMS (EST; the store as durable as under
//                          `devid serve`) and a Mosquitto child on 127.0.0.1
// Target: >= 200 devices/s on a 2-core machine; printed with its ratio to the floor.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>
#include <vector>

#include "agent/fleet.h"
#include "ca/hierarchy.h"
#include "cloud/hub/hub.h"
#include "cms/api.h"
#include "cms/auth.h"
#include "cms/backend.h"
#include "cms/est_service.h"
#include "cms/server_tls.h"
#include "crypto/csr.h"
#include "median_reporter.h"
#include "store/store.h"

namespace devid::bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMosquitto = "/usr/sbin/mosquitto";
int g_devices = 1000;    // --smoke: 20
int g_concurrency = 16;  // DEVID_BENCH_FLEET_CONCURRENCY overrides
agent::FleetReport g_last;
std::vector<double> g_rates;  // devices/s of each fleet run

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) Check(MakeError(ErrorCode::kIo, "cannot write " + path.string()), "write");
}

// A port nobody listens on now (the broker takes it a moment later).
uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) {
    Check(MakeError(ErrorCode::kIo, "no free port"), "port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

bool Listening(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool up = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (fd >= 0) ::close(fd);
  return up;
}

crypto::CertificateRequest MakeCsr(const crypto::PrivateKey& key, const std::string& dn,
                                   const std::vector<crypto::GeneralName>& sans) {
  return Must(
      crypto::MakeCertificateRequest(key, Must(crypto::DistinguishedName::Parse(dn), "dn"), sans),
      "csr");
}

std::unique_ptr<ca::Hierarchy> MakeCa(store::Store& s) {
  auto h = std::make_unique<ca::Hierarchy>(s, ca::KeyProtection{});
  Must(h->InitRoot("bench", {"CN=Bench Root", crypto::KeyType::kEcP256, {}, "", ""}), "root");
  Must(h->InitIssuing("bench", "ica", {"CN=Bench ICA", crypto::KeyType::kEcP256, {}, "", ""}),
       "ica");
  return h;
}

struct Fixture {
  fs::path dir;
  // The floor: the engine in a store of its own (same durability).
  std::unique_ptr<store::Store> engine_db;
  std::unique_ptr<ca::Hierarchy> engine_hierarchy;
  std::unique_ptr<ca::SigningCa> engine_ica;
  ca::CertificateProfile profile;
  std::optional<crypto::CertificateRequest> csr;
  // The CMS.
  std::unique_ptr<store::Store> db;
  std::unique_ptr<ca::Hierarchy> hierarchy;
  http::Metrics metrics;
  http::Router router;
  std::unique_ptr<cms::Backend> backend;
  std::unique_ptr<cms::Authenticator> auth;
  std::unique_ptr<cms::Api> api;
  std::unique_ptr<cms::EstService> est;
  std::unique_ptr<http::Server> server;
  std::thread server_thread;
  std::string cms_ca_file;
  std::string token;
  std::optional<crypto::Certificate> ica;
  // The hub: a plain Mosquitto with the org's CA chain and a server
  // certificate from the same issuing CA (the devices check it with CA01).
  pid_t broker = -1;
  uint16_t mqtt_port = 0;

  Fixture() {
    dir = fs::temp_directory_path() / ("devid-bench-fleet-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    engine_db = Must(store::OpenStore((dir / "engine.db").string()), "engine store");
    engine_hierarchy = MakeCa(*engine_db);
    engine_ica =
        std::make_unique<ca::SigningCa>(Must(engine_hierarchy->Unlock("bench", "ica"), "unlock"));
    profile = Must(engine_hierarchy->FindProfile("device"), "profile");
    csr = MakeCsr(Must(crypto::PrivateKey::Generate(crypto::KeyType::kEcP256), "key"),
                  "CN=bench-device", {});

    db = Must(store::OpenStore((dir / "devid.db").string()), "server store");
    hierarchy = MakeCa(*db);
    backend = std::make_unique<cms::Backend>(*db, *hierarchy, &metrics);
    auth = std::make_unique<cms::Authenticator>(*db);
    api = std::make_unique<cms::Api>(*backend, *auth, "");
    api->Register(router);
    est = std::make_unique<cms::EstService>(*backend, *api, "device");
    est->Register(router);
    auto org = Must(db->GetOrganization("bench"), "org");
    token = Must(auth->CreateApiToken(org.id, cms::Role::kEnrollment, "fleet", std::nullopt),
                 "enrolment token")
                .secret;
    std::vector<crypto::GeneralName> names = {
        Must(crypto::GeneralName::Parse("ip:127.0.0.1"), "name")};
    auto tls = Must(cms::LoadOrCreateServerTls(dir.string(), names), "server TLS");
    cms_ca_file = tls.ca_path;
    http::ServerOptions options;
    options.port = 0;
    options.certificate_pem = tls.chain_pem;
    options.key_pem = tls.key_pem;
    options.request_client_certificate = true;  // as `devid serve`
    server = Must(http::Server::Start(options, router, &metrics), "server");
    server_thread = std::thread([this] { server->Run(false); });

    auto unlocked = Must(hierarchy->Unlock("bench", "ica"), "unlock");
    ica = unlocked.certificate();
    auto chain = Must(hierarchy->Chain("bench", "ica"), "chain");
    std::string chain_pem;
    for (const auto& c : chain) chain_pem += Must(c.ToPem(), "pem");
    WriteText(dir / "chain.pem", chain_pem);
    auto hub_key = Must(crypto::PrivateKey::Generate(crypto::KeyType::kEcP256), "hub key");
    auto hub_csr =
        MakeCsr(hub_key, "CN=hub", {Must(crypto::GeneralName::Parse("ip:127.0.0.1"), "")});
    auto server_profile = Must(hierarchy->FindProfile("server"), "server profile");
    auto hub = Must(unlocked.Issue(server_profile, hub_csr), "hub certificate");
    // As `devid hub` writes it: the server certificate and its issuing CA, so
    // that the broker does not build and send the chain up to the root.
    WriteText(dir / "hub.pem", Must(hub.certificate.ToPem(), "pem") + Must(ica->ToPem(), "pem"));
    WriteText(dir / "hub.key", Must(hub_key.ToPkcs8Pem(nullptr), "key pem"));
    StartBroker();
  }

  void StartBroker() {
    mqtt_port = FreePort();
    std::string d = dir.string();
    std::string user = ::getuid() == 0 ? "user root\n" : "";
    WriteText(dir / "mosquitto.conf",
              "per_listener_settings false\n" + user +
                  "persistence false\nlog_dest none\nset_tcp_nodelay true\nmax_queued_messages "
                  "0\nlistener " +
                  std::to_string(mqtt_port) + " 127.0.0.1\ncafile " + d + "/chain.pem\ncertfile " +
                  d + "/hub.pem\nkeyfile " + d +
                  "/hub.key\nrequire_certificate true\nuse_identity_as_username "
                  "true\nallow_anonymous true\n");
    std::string conf = (dir / "mosquitto.conf").string();
    // The OpenSSL settings `devid hub` gives its broker (no session tickets).
    WriteText(dir / "openssl.cnf", std::string(cloud::hub::BrokerOpenSslConf()));
    std::string openssl_conf = "OPENSSL_CONF=" + (dir / "openssl.cnf").string();
    char* envp[] = {openssl_conf.data(), nullptr};
    broker = ::fork();
    if (broker == 0) {
      ::execle(kMosquitto, kMosquitto, "-c", conf.c_str(), static_cast<char*>(nullptr), envp);
      ::_exit(127);
    }
    for (int i = 0; i < 100 && !Listening(mqtt_port); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!Listening(mqtt_port)) {
      Check(MakeError(ErrorCode::kIo, std::string(kMosquitto) + " did not start"), "broker");
    }
  }

  ~Fixture() {
    if (broker > 0) {
      ::kill(broker, SIGTERM);
      ::waitpid(broker, nullptr, 0);
    }
    server->Stop();
    server_thread.join();
    server.reset();
    engine_ica.reset();
    fs::remove_all(dir);
  }
};

Fixture& F() {
  static Fixture f;
  return f;
}

void BM_Floor_EngineIssue(benchmark::State& state) {
  for (auto _ : state) Must(F().engine_ica->Issue(F().profile, *F().csr), "engine issue");
}

void BM_Fleet(benchmark::State& state) {
  for (auto _ : state) {
    agent::FleetOptions o;
    o.devices = g_devices;
    o.cms = {"https://127.0.0.1:" + std::to_string(F().server->port()), F().cms_ca_file, "bench",
             "ica"};
    o.token = F().token;
    o.hub_host = "127.0.0.1";
    o.hub_port = F().mqtt_port;
    o.concurrency = g_concurrency;
    o.issuing_ca = F().ica;
    auto report = agent::SimulateFleet(o);
    if (!report.ok()) {
      state.SkipWithError(report.error().message.c_str());
      break;
    }
    g_last = std::move(report).value();
    if (g_last.failed > 0) {
      std::string why =
          std::to_string(g_last.failed) + " devices failed: " + g_last.failures.begin()->first;
      state.SkipWithError(why.c_str());
      break;
    }
    state.SetIterationTime(g_last.seconds);
    state.counters["devices_per_s"] = g_last.DevicesPerSecond();
    g_rates.push_back(g_last.DevicesPerSecond());
  }
  state.SetItemsProcessed(state.iterations() * g_devices);
}

BENCHMARK(BM_Floor_EngineIssue)->UseRealTime();
BENCHMARK(BM_Fleet)->UseManualTime()->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace
}  // namespace devid::bench

int main(int argc, char** argv) {
  bool smoke = false;
  for (int i = 1; i < argc; ++i) smoke = smoke || std::string_view(argv[i]) == "--smoke";
  if (smoke) devid::bench::g_devices = 20;
  if (const char* n = std::getenv("DEVID_BENCH_FLEET_DEVICES"); n != nullptr && *n != '\0') {
    devid::bench::g_devices = std::max(1, std::atoi(n));
  }
  if (const char* c = std::getenv("DEVID_BENCH_FLEET_CONCURRENCY"); c != nullptr && *c != '\0') {
    devid::bench::g_concurrency = std::max(1, std::atoi(c));
  }
  devid::bench::F();
  devid::bench::MedianReporter reporter;
  devid::bench::RunBenchmarks(argc, argv, 3, reporter);
  double floor = reporter.Median("BM_Floor_EngineIssue");
  std::vector<double> rates = devid::bench::g_rates;
  std::sort(rates.begin(), rates.end());
  double fleet = rates.empty() ? 0 : rates[rates.size() / 2];
  if (floor > 0 && fleet > 0) {
    using devid::agent::FleetReport;
    const FleetReport& r = devid::bench::g_last;
    std::printf(
        "\nmedian of %zu fleet runs:\n"
        "  fleet: %.0f devices/s through chip + EST enrolment + mutual TLS + first publish "
        "(%d devices, %d workers) = %.3f x the CA engine's issuance floor %.0f/s "
        "(target >= 200 devices/s)\n"
        "  last fleet: chip p50 %.1f ms; enrol p50 %.1f ms, p99 %.1f ms; connect+publish p50 "
        "%.1f ms, p99 %.1f ms\n",
        rates.size(), fleet, devid::bench::g_devices, r.concurrency, fleet / floor, floor,
        FleetReport::Percentile(r.personalise_ms, 50), FleetReport::Percentile(r.enroll_ms, 50),
        FleetReport::Percentile(r.enroll_ms, 99), FleetReport::Percentile(r.publish_ms, 50),
        FleetReport::Percentile(r.publish_ms, 99));
  }
  benchmark::Shutdown();
  return 0;
}
