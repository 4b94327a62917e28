// Issuance throughput against two references measured in the same run:
//   the crypto floor  - the signatures alone, on keys already decoded;
//   the plain OpenSSL 3 pipeline - d2i CSR -> X509_REQ_verify -> X509_set_pubkey -> X509_sign ->
//   i2d.
// devid's paths are (a) CSR -> certificate through the CA engine, store write included, and
// (b) key generation + certificate through the CA engine, store write included.
// After the runs it prints each rate as a ratio to the references.
#include <benchmark/benchmark.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include "median_reporter.h"

#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include "ca/hierarchy.h"
#include "core/time.h"
#include "crypto/csr.h"

namespace {

using devid::Bytes;
namespace ca = devid::ca;
namespace crypto = devid::crypto;
namespace store = devid::store;

constexpr size_t kCsrPool = 256;

// One CA hierarchy in a temporary home, per durability mode.
struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<store::Store> db;
  std::unique_ptr<ca::Hierarchy> hierarchy;
  std::unique_ptr<ca::SigningCa> ica;
  ca::CertificateProfile profile;
  std::vector<Bytes> csrs;

  explicit Fixture(store::Durability durability) {
    dir = std::filesystem::temp_directory_path() /
          ("devid-bench-" + std::to_string(::getpid()) +
           (durability == store::Durability::kFull ? "-full" : "-normal"));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    db = std::move(store::OpenStore((dir / "devid.db").string(), durability)).value();
    hierarchy = std::make_unique<ca::Hierarchy>(*db, ca::KeyProtection{});
    Check(
        hierarchy->InitRoot("bench", {"CN=Bench Root", crypto::KeyType::kEcP256, {}, "", ""}).ok());
    Check(hierarchy
              ->InitIssuing("bench", "ica",
                            {"CN=Bench ICA",
                             crypto::KeyType::kEcP256,
                             {},
                             "http://crl.example/{org}/{ca}.crl",
                             ""})
              .ok());
    ica = std::make_unique<ca::SigningCa>(hierarchy->Unlock("bench", "ica").value());
    profile = hierarchy->FindProfile("device").value();
    for (size_t i = 0; i < kCsrPool; ++i) {
      auto key = crypto::PrivateKey::Generate(crypto::KeyType::kEcP256).value();
      auto dn =
          crypto::DistinguishedName::Parse("CN=device-" + std::to_string(i) + ",O=Bench").value();
      csrs.push_back(crypto::MakeCertificateRequest(key, dn, {}).value().der());
    }
  }
  ~Fixture() {
    ica.reset();
    hierarchy.reset();
    db.reset();
    std::filesystem::remove_all(dir);
  }
  static void Check(bool ok) {
    if (!ok) {
      std::cerr << "bench set-up failed\n";
      std::abort();
    }
  }
};

Fixture& Normal() {
  static Fixture f(store::Durability::kNormal);
  return f;
}
Fixture& Full() {
  static Fixture f(store::Durability::kFull);
  return f;
}

// ---- references --------------------------------------------------------------------------

// One ECDSA-SHA256 signature as a CA makes it: fresh context, key already decoded.
size_t EcdsaSign(EVP_PKEY* key, const unsigned char* msg, size_t len, unsigned char (&sig)[80]) {
  size_t sig_len = sizeof sig;
  EVP_MD_CTX* s = EVP_MD_CTX_new();
  EVP_DigestSignInit(s, nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(s, sig, &sig_len, msg, len);
  EVP_MD_CTX_free(s);
  return sig_len;
}

// ECDSA verify (the CSR's signature over ~its size) + ECDSA sign (the CA's), keys decoded once.
void BM_Floor_VerifyAndSign(benchmark::State& state) {
  EVP_PKEY* ca_key = EVP_EC_gen("P-256");
  unsigned char msg[300];
  std::memset(msg, 0x5A, sizeof msg);
  // The device's signature and key, decoded once like a CSR's.
  EVP_PKEY* device_key = EVP_EC_gen("P-256");
  unsigned char device_sig[80];
  size_t device_sig_len = EcdsaSign(device_key, msg, sizeof msg, device_sig);
  for (auto _ : state) {
    EVP_MD_CTX* v = EVP_MD_CTX_new();
    EVP_DigestVerifyInit(v, nullptr, EVP_sha256(), nullptr, device_key);
    int ok = EVP_DigestVerify(v, device_sig, device_sig_len, msg, sizeof msg);
    EVP_MD_CTX_free(v);
    unsigned char sig[80];
    EcdsaSign(ca_key, msg, sizeof msg, sig);
    if (ok != 1) state.SkipWithError("verify failed");
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
  EVP_PKEY_free(device_key);
  EVP_PKEY_free(ca_key);
}
BENCHMARK(BM_Floor_VerifyAndSign)->UseRealTime();

// P-256 key generation + ECDSA sign with the CA key.
void BM_Floor_KeygenAndSign(benchmark::State& state) {
  EVP_PKEY* ca_key = EVP_EC_gen("P-256");
  unsigned char msg[300];
  std::memset(msg, 0x5A, sizeof msg);
  for (auto _ : state) {
    EVP_PKEY* k = EVP_EC_gen("P-256");
    unsigned char sig[80];
    EcdsaSign(ca_key, msg, sizeof msg, sig);
    EVP_PKEY_free(k);
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
  EVP_PKEY_free(ca_key);
}
BENCHMARK(BM_Floor_KeygenAndSign)->UseRealTime();

// The plain OpenSSL 3 pipeline, no store, no policy, no extensions.
void BM_PlainOpenSsl_Pipeline(benchmark::State& state) {
  Fixture& f = Normal();
  EVP_PKEY* ca_key = EVP_EC_gen("P-256");
  X509_NAME* issuer = X509_NAME_new();
  X509_NAME_add_entry_by_txt(issuer, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Plain CA"), -1, -1, 0);
  size_t i = 0;
  for (auto _ : state) {
    const Bytes& der = f.csrs[i++ % f.csrs.size()];
    const unsigned char* p = der.data();
    X509_REQ* req = d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size()));
    EVP_PKEY* pub = X509_REQ_get0_pubkey(req);
    if (X509_REQ_verify(req, pub) != 1) state.SkipWithError("CSR does not verify");
    X509* x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(i));
    X509_set_subject_name(x, X509_REQ_get_subject_name(req));
    X509_set_issuer_name(x, issuer);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, pub);
    X509_sign(x, ca_key, EVP_sha256());
    unsigned char* out = nullptr;
    int len = i2d_X509(x, &out);
    benchmark::DoNotOptimize(len);
    OPENSSL_free(out);
    X509_free(x);
    X509_REQ_free(req);
  }
  state.SetItemsProcessed(state.iterations());
  X509_NAME_free(issuer);
  EVP_PKEY_free(ca_key);
}
BENCHMARK(BM_PlainOpenSsl_Pipeline)->UseRealTime();

// ---- devid -------------------------------------------------------------------------------

void IssueFromCsr(benchmark::State& state, Fixture& f) {
  size_t i = 0;
  for (auto _ : state) {
    auto csr = crypto::CertificateRequest::Parse(f.csrs[i++ % f.csrs.size()]);
    auto issued = f.ica->Issue(f.profile, *csr);
    if (!issued.ok()) {
      state.SkipWithError(issued.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(issued->record.der.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// (a) with synchronous=NORMAL: durable against a crash of the process.
void BM_Devid_IssueFromCsr(benchmark::State& state) { IssueFromCsr(state, Normal()); }
BENCHMARK(BM_Devid_IssueFromCsr)->UseRealTime();

// (a) with synchronous=FULL: each commit is on disk (fsync) before the certificate is returned.
void BM_Devid_IssueFromCsr_FullSync(benchmark::State& state) { IssueFromCsr(state, Full()); }
BENCHMARK(BM_Devid_IssueFromCsr_FullSync)->UseRealTime();

// (b) key generated on the CA side, then issued and recorded.
void BM_Devid_KeygenAndIssue(benchmark::State& state) {
  Fixture& f = Normal();
  auto subject = crypto::DistinguishedName::Parse("CN=batch-device,O=Bench").value();
  for (auto _ : state) {
    auto key = crypto::PrivateKey::Generate(crypto::KeyType::kEcP256);
    auto issued = f.ica->IssueForKey(f.profile, *key, subject, {});
    if (!issued.ok()) {
      state.SkipWithError(issued.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(issued->record.der.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Devid_KeygenAndIssue)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  devid::bench::MedianReporter reporter;
  devid::bench::RunBenchmarks(argc, argv, 5, reporter);
  auto rate = [&](const char* name) { return reporter.Median(name); };
  double plain = rate("BM_PlainOpenSsl_Pipeline");
  double floor_vs = rate("BM_Floor_VerifyAndSign");
  double floor_ks = rate("BM_Floor_KeygenAndSign");
  double a = rate("BM_Devid_IssueFromCsr");
  double a_full = rate("BM_Devid_IssueFromCsr_FullSync");
  double b = rate("BM_Devid_KeygenAndIssue");
  if (plain > 0 && floor_vs > 0 && floor_ks > 0) {
    std::printf(
        "\nmedian of 5 interleaved runs, operations/s: floor verify+sign %.0f, floor keygen+sign "
        "%.0f, plain pipeline "
        "%.0f\n",
        floor_vs, floor_ks, plain);
    std::printf(
        "(a)  CSR -> cert, store NORMAL : %7.0f/s = %.2fx plain pipeline, %.2f of crypto floor\n",
        a, a / plain, a / floor_vs);
    std::printf(
        "(a') CSR -> cert, store FULL   : %7.0f/s = %.2fx plain pipeline, %.2f of crypto floor\n",
        a_full, a_full / plain, a_full / floor_vs);
    std::printf(
        "(b)  keygen + cert, store NORMAL: %7.0f/s = %.2fx plain pipeline, %.2f of crypto floor\n",
        b, b / plain, b / floor_ks);
  }
  benchmark::Shutdown();
  return 0;
}
