// The chip's command rates beside the raw OpenSSL rate for the same operation,
// measured in the same run: SIGN, VERIFY_SIGNATURE, ECDH and GET_RANDOM, in
// process and over the `devid se run` socket. Prints the ratios at the end.
#include <benchmark/benchmark.h>

#include "median_reporter.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "crypto/key.h"
#include "se/host/client.h"

namespace {

using devid::Bytes;
namespace crypto = devid::crypto;
namespace se = devid::se;

struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<se::ChipClient> in_process;
  std::unique_ptr<se::ChipClient> socket;
  std::thread server;
  std::atomic<bool> stop{false};
  Bytes digest = crypto::Sha256(devid::AsBytes("telemetry"));
  Bytes point;                                  // the chip's slot-0 public key
  Bytes signature;                              // a signature by slot 0 over digest
  Bytes peer_point;                             // an ECDH peer
  std::unique_ptr<crypto::PrivateKey> raw_key;  // same operations, OpenSSL directly
  std::unique_ptr<crypto::PublicKey> raw_peer;

  Fixture() {
    dir = std::filesystem::temp_directory_path() / ("devid-bench-se-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::string image = (dir / "chip.img").string();
    {
      auto chip = se::SecureElement::Create(image, "BENCH-1", devid::SecretString("1234")).value();
    }
    // In-process and served chips are two power-ups of copies of the same image.
    std::filesystem::copy_file(image, (dir / "served.img").string());
    std::filesystem::copy_file(image + ".fuse", (dir / "served.img.fuse").string());
    in_process = std::make_unique<se::ChipClient>(se::ChipClient::Open(image, "").value());
    point = in_process->GenerateKeyPair(0, crypto::KeyType::kEcP256, false).value();
    signature = in_process->Sign(0, digest).value();
    std::string sock = (dir / "chip.sock").string();
    StartServer(sock);
    socket = std::make_unique<se::ChipClient>(se::ChipClient::Open("", sock).value());
    (void)socket->GenerateKeyPair(0, crypto::KeyType::kEcP256, false).value();
    raw_key = std::make_unique<crypto::PrivateKey>(
        crypto::PrivateKey::Generate(crypto::KeyType::kEcP256).value());
    auto peer = crypto::PrivateKey::Generate(crypto::KeyType::kEcP256).value();
    peer_point = peer.PublicPoint().value();
    raw_peer = std::make_unique<crypto::PublicKey>(
        crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, peer_point).value());
  }
  void StartServer(const std::string& sock) {
    auto chip = se::SecureElement::Open((dir / "served.img").string()).value();
    server = std::thread([this, sock, c = chip.release()] {
      (void)se::ServeChip(std::unique_ptr<se::SecureElement>(c), sock, false,
                          [this] { return stop.load(); });
    });
    for (int i = 0; i < 100 && !std::filesystem::exists(sock); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~Fixture() {
    socket.reset();
    stop = true;
    if (server.joinable()) server.join();
    std::filesystem::remove_all(dir);
  }
};

Fixture& F() {
  static Fixture f;
  return f;
}

se::ChipClient& Chip(int transport) { return transport == 0 ? *F().in_process : *F().socket; }

void Done(benchmark::State& state) { state.SetItemsProcessed(state.iterations()); }

void BM_Raw_Sign(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(crypto::SignDigest(*F().raw_key, F().digest));
  Done(state);
}
void BM_Chip_Sign(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(Chip(static_cast<int>(state.range(0))).Sign(0, F().digest));
  Done(state);
}
void BM_Raw_Verify(benchmark::State& state) {
  // As the chip does it: the public key arrives as a point and is decoded each time.
  for (auto _ : state) {
    auto pub = crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, F().point);
    benchmark::DoNotOptimize(crypto::VerifyDigest(pub->get(), F().digest, F().signature));
  }
  Done(state);
}
void BM_Chip_Verify(benchmark::State& state) {
  for (auto _ : state) {
    auto ok = Chip(static_cast<int>(state.range(0)))
                  .VerifySignature(crypto::KeyType::kEcP256, F().point, F().digest, F().signature);
    if (!ok.ok() || !*ok) state.SkipWithError("verify failed");
  }
  Done(state);
}
void BM_Raw_Ecdh(benchmark::State& state) {
  for (auto _ : state) {
    auto peer = crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, F().peer_point);
    benchmark::DoNotOptimize(crypto::DeriveSharedSecret(*F().raw_key, peer->get()));
  }
  Done(state);
}
void BM_Chip_Ecdh(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(Chip(static_cast<int>(state.range(0))).Ecdh(0, F().peer_point));
  Done(state);
}
void BM_Raw_Random32(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(crypto::RandomBytes(32));
  Done(state);
}
void BM_Chip_Random32(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(Chip(static_cast<int>(state.range(0))).GetRandom(32));
  Done(state);
}
void BM_Chip_GetInfo(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Chip(static_cast<int>(state.range(0))).GetInfo());
  Done(state);
}

// What a socket bus costs when both ends sleep in read(): an 8-byte echo
// between two threads over a Unix socketpair (the kernel's and scheduler's
// wake-up cost, which the chip transport's spin-then-block avoids).
void BM_Raw_SocketRoundTrip(benchmark::State& state) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
    state.SkipWithError("socketpair");
    return;
  }
  std::thread echo([fd = sv[1]] {
    char b[8];
    while (::read(fd, b, sizeof b) == static_cast<ssize_t>(sizeof b)) {
      if (::write(fd, b, sizeof b) != static_cast<ssize_t>(sizeof b)) break;
    }
  });
  char b[8] = {0};
  for (auto _ : state) {
    if (::write(sv[0], b, sizeof b) != static_cast<ssize_t>(sizeof b) ||
        ::read(sv[0], b, sizeof b) != static_cast<ssize_t>(sizeof b)) {
      state.SkipWithError("echo");
      break;
    }
  }
  ::shutdown(sv[0], SHUT_RDWR);
  echo.join();
  ::close(sv[0]);
  ::close(sv[1]);
  Done(state);
}

BENCHMARK(BM_Raw_SocketRoundTrip)->UseRealTime();
BENCHMARK(BM_Raw_Sign)->UseRealTime();
BENCHMARK(BM_Chip_Sign)->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_Raw_Verify)->UseRealTime();
BENCHMARK(BM_Chip_Verify)->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_Raw_Ecdh)->UseRealTime();
BENCHMARK(BM_Chip_Ecdh)->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_Raw_Random32)->UseRealTime();
BENCHMARK(BM_Chip_Random32)->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_Chip_GetInfo)->Arg(0)->Arg(1)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  devid::bench::MedianReporter reporter;
  devid::bench::RunBenchmarks(argc, argv, 3, reporter);
  auto line = [&](const char* what, const char* raw, const char* chip) {
    double r = reporter.Median(raw);
    double in = reporter.Median(std::string(chip) + "/0");
    double so = reporter.Median(std::string(chip) + "/1");
    if (r > 0 && in > 0 && so > 0) {
      std::printf(
          "%-10s raw %8.0f/s   in-process %8.0f/s = %5.1f%% of raw   socket %8.0f/s = %5.1f%% of "
          "raw\n",
          what, r, in, 100 * in / r, so, 100 * so / r);
    }
  };
  std::printf("\nmedian of 3 interleaved runs:\n");
  line("SIGN", "BM_Raw_Sign", "BM_Chip_Sign");
  line("VERIFY", "BM_Raw_Verify", "BM_Chip_Verify");
  line("ECDH", "BM_Raw_Ecdh", "BM_Chip_Ecdh");
  line("RANDOM32", "BM_Raw_Random32", "BM_Chip_Random32");
  double info_in = reporter.Median("BM_Chip_GetInfo/0");
  double info_so = reporter.Median("BM_Chip_GetInfo/1");
  double echo = reporter.Median("BM_Raw_SocketRoundTrip");
  if (info_in > 0 && info_so > 0 && echo > 0) {
    std::printf(
        "socket round trip adds %.1f us a command (GET_INFO: %.1f us in-process, %.1f us over the "
        "socket; target <= 50 us);\n"
        "for scale: a blocking 8-byte socketpair echo between two threads (no spinning) takes "
        "%.1f us here\n",
        1e6 / info_so - 1e6 / info_in, 1e6 / info_in, 1e6 / info_so, 1e6 / echo);
  }
  benchmark::Shutdown();
  return 0;
}
