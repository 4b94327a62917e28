// Full mutual-TLS handshakes per second (TLS 1.2, ECDHE-ECDSA-AES128-GCM,
// client certificate required), against one `openssl s_server`:
//   - software: the client key in a PEM file, OpenSSL's default provider;
//   - chip: the agent's set-up (devid provider preferred, the chip as the
//     random generator, the chip over the `devid se run` socket, no latency
//     model): client random, both signature checks, the ECDHE key, ECDH and
//     CertificateVerify all run in the chip.
// Target (issue 4): the chip handshake takes at most 2x the software one.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "ca/hierarchy.h"
#include "core/file.h"
#include "crypto/csr.h"
#include "crypto/tls.h"
#include "median_reporter.h"
#include "provider/provider.h"
#include "se/host/client.h"
#include "store/store.h"

extern char** environ;

namespace devid::bench {
namespace {

struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<store::Store> db;
  std::unique_ptr<ca::Hierarchy> hierarchy;
  std::thread chip_daemon;
  std::atomic<bool> stop{false};
  pid_t server = -1;
  int server_stdin = -1;
  uint16_t port = 0;
  crypto::UniquePtr<OSSL_LIB_CTX> chip_ctx;
  std::unique_ptr<provider::LoadedProviders> providers;
  crypto::TlsClientOptions software, chip;

  Fixture() {
    dir =
        std::filesystem::temp_directory_path() / ("devid-bench-tls-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    db = Must(store::OpenStore((dir / "devid.db").string(), store::Durability::kNormal), "store");
    hierarchy = std::make_unique<ca::Hierarchy>(*db, ca::KeyProtection{});
    Must(hierarchy->InitRoot("bench", {"CN=Bench Root", crypto::KeyType::kEcP256, {}, "", ""}),
         "root");
    Must(hierarchy->InitIssuing("bench", "ica",
                                {"CN=Bench ICA", crypto::KeyType::kEcP256, {}, "", ""}),
         "ica");
    auto ica = Must(hierarchy->Unlock("bench", "ica"), "unlock");
    auto chain = Must(hierarchy->Chain("bench", "ica"), "chain");  // ICA, root
    std::string chain_pem = Must(chain[0].ToPem(), "pem") + Must(chain[1].ToPem(), "pem");
    Check(WriteFileAtomic((dir / "chain.pem").string(), AsBytes(chain_pem)), "chain.pem");

    auto localhost = Must(crypto::DistinguishedName::Parse("CN=localhost"), "dn");
    auto dns = Must(crypto::GeneralName::Parse("dns:localhost"), "san");
    auto srv_key = Must(crypto::PrivateKey::Generate(crypto::KeyType::kEcP256), "key");
    auto srv = Must(ica.IssueForKey(Must(hierarchy->FindProfile("server"), "server"), srv_key,
                                    localhost, {dns}),
                    "server certificate");
    Check(
        WriteFileAtomic((dir / "srv.pem").string(), AsBytes(Must(srv.certificate.ToPem(), "pem"))),
        "srv.pem");
    Check(WriteFileAtomic((dir / "srv.key").string(),
                          AsBytes(Must(srv_key.ToPkcs8Pem(nullptr), "pem"))),
          "srv.key");
    ca::CertificateProfile device = Must(hierarchy->FindProfile("device"), "device");

    // The software client.
    auto soft_key = Must(crypto::PrivateKey::Generate(crypto::KeyType::kEcP256), "key");
    auto soft =
        Must(ica.IssueForKey(device, soft_key,
                             Must(crypto::DistinguishedName::Parse("CN=software"), "dn"), {}),
             "software certificate");
    Check(WriteFileAtomic((dir / "soft.key").string(),
                          AsBytes(Must(soft_key.ToPkcs8Pem(nullptr), "pem"))),
          "soft.key");
    software.key_uri = (dir / "soft.key").string();
    software.chain = {soft.certificate, chain[0]};
    software.trust = {chain[0]};
    software.server_name = "localhost";

    // The chip: a key in slot 0, its certificate, served on a socket.
    std::string image = (dir / "chip.img").string();
    std::string sock = (dir / "chip.sock").string();
    crypto::Certificate chip_cert = chain[0];
    {
      auto element =
          Must(se::SecureElement::Create(image, "SN-BENCH", SecretString("123456")), "chip");
      se::ChipClient local(std::make_unique<se::InProcessTransport>(std::move(element)));
      auto point = Must(local.GenerateKeyPair(0, crypto::KeyType::kEcP256, false), "keygen");
      crypto::ExternalEcSigner signer{
          Must(crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, point), "point"),
          [&](ByteView digest) { return local.Sign(0, digest); }};
      auto csr = Must(crypto::MakeCertificateRequest(
                          signer, Must(crypto::DistinguishedName::Parse("CN=chip"), "dn"), {}),
                      "csr");
      chip_cert = Must(ica.Issue(device, csr), "chip certificate").certificate;
      Bytes ca_file = Must(se::KeyFileContent(Must(chain[0].public_key(), "ica key")), "CA01");
      Check(local.CreateFile(se::kCaPublicKeyFile, static_cast<uint16_t>(ca_file.size()), 0, 0),
            "CA01");
      Check(local.WriteFile(se::kCaPublicKeyFile, ca_file), "CA01");
    }  // the in-process chip powers off, releasing its image
    // Served by a daemon thread, as `devid se run` would.
    auto served = Must(se::SecureElement::Open(image), "reopen chip");
    chip_daemon = std::thread([this, sock, c = served.release()] {
      (void)se::ServeChip(std::unique_ptr<se::SecureElement>(c), sock, false,
                          [this] { return stop.load(); });
    });
    for (int i = 0; i < 200 && !std::filesystem::exists(sock); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    chip_ctx = Must(crypto::NewLibraryContext(), "library context");
    providers = Must(provider::LoadInto(chip_ctx.get(), {.chip_random = true}), "provider");
    auto shared = std::make_shared<provider::SharedChip>(
        Must(se::ChipClient::Open("", sock), "connect to the chip"));
    Check(provider::ReadCaKey(*shared), "read CA01");
    provider::ShareChip("socket=" + sock, shared);
    chip.context = chip_ctx.get();
    chip.properties = "?provider=devid";
    chip.key_uri = "devid:socket=" + sock + ";slot=0";
    chip.chain = {chip_cert, chain[0]};
    chip.trust = {chain[0]};
    chip.server_name = "localhost";

    StartServer();
  }

  void StartServer() {
    int in[2];
    Check(::pipe(in) == 0 ? Status() : Status(MakeError(ErrorCode::kIo, "pipe")), "pipe");
    std::string out = (dir / "server.out").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::string cert = (dir / "srv.pem").string(), key = (dir / "srv.key").string(),
                ca = (dir / "chain.pem").string();
    std::vector<std::string> args = {
        "openssl", "s_server", "-accept", "0",       "-cert",
        cert,      "-key",     key,       "-CAfile", ca,
        "-Verify", "1",        "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    Check(posix_spawnp(&server, "openssl", &actions, nullptr, argv.data(), environ) == 0
              ? Status()
              : Status(MakeError(ErrorCode::kIo, "spawn")),
          "openssl s_server");
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    server_stdin = in[1];  // kept open: s_server stops when its stdin ends
    for (int i = 0; i < 300 && port == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      std::ifstream f(out);
      std::string line;
      while (std::getline(f, line)) {
        if (line.rfind("ACCEPT", 0) == 0)
          port = static_cast<uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
      }
    }
    if (port == 0) Check(MakeError(ErrorCode::kIo, "no ACCEPT line"), "openssl s_server");
  }

  ~Fixture() {
    if (server > 0) {
      ::kill(server, SIGTERM);
      ::waitpid(server, nullptr, 0);
    }
    if (server_stdin >= 0) ::close(server_stdin);
    provider::ShareChip("socket=" + (dir / "chip.sock").string(), nullptr);
    providers.reset();
    chip_ctx.reset();
    stop = true;
    if (chip_daemon.joinable()) chip_daemon.join();
    hierarchy.reset();
    db.reset();
    std::filesystem::remove_all(dir);
  }
};

Fixture& F() {
  static Fixture f;
  return f;
}

void Handshakes(benchmark::State& state, const crypto::TlsClientOptions& options) {
  for (auto _ : state) {
    auto session = crypto::TlsHandshake(options, "127.0.0.1", F().port);
    if (!session.ok()) {
      state.SkipWithError(session.error().message.c_str());
      break;
    }
  }
}

void BM_Tls_Software(benchmark::State& state) { Handshakes(state, F().software); }
void BM_Tls_Chip(benchmark::State& state) { Handshakes(state, F().chip); }
BENCHMARK(BM_Tls_Software)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Tls_Chip)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace devid::bench

int main(int argc, char** argv) {
  using devid::bench::F;
  F();  // set up before timing
  devid::bench::MedianReporter reporter;
  devid::bench::RunBenchmarks(argc, argv, 5, reporter);
  double software = reporter.Median("BM_Tls_Software");
  double chip = reporter.Median("BM_Tls_Chip");
  if (software > 0 && chip > 0) {
    std::printf(
        "\nmedian of 5 interleaved runs: mutual-TLS 1.2 handshakes/s: software %.0f, chip (socket) "
        "%.0f;\nthe chip handshake takes %.2fx the software one (target <= 2x)\n",
        software, chip, software / chip);
  }
  benchmark::Shutdown();
  return 0;
}
