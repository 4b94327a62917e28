#include "se/device/trng.h"

#include <sys/random.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/secret.h"

namespace devid::se {

namespace {
constexpr double kLog2Alpha = -20.0;  // alpha = 2^-20
constexpr int kStartupSamples = 1024;

Error SourceFailure() {
  return MakeError(ErrorCode::kCrypto, "the noise source failed its SP 800-90B health tests");
}

// Smallest k with P[X <= k] >= q for X ~ Binomial(n, p) (Excel's CRITBINOM).
int CritBinom(int n, double p, double q) {
  double cdf = 0;
  for (int k = 0; k <= n; ++k) {
    double log_pmf = std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0) +
                     k * std::log(p) + (n - k) * std::log1p(-p);
    cdf += std::exp(log_pmf);
    if (cdf >= q) return k;
  }
  return n;
}
}  // namespace

Result<uint8_t> HostNoiseSource::Sample() {
  if (used_ == sizeof(buffer_)) {
    size_t got = 0;
    while (got < sizeof(buffer_)) {
      ssize_t n = getrandom(buffer_ + got, sizeof(buffer_) - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return MakeError(ErrorCode::kCrypto, std::string("getrandom: ") + std::strerror(errno));
      got += static_cast<size_t>(n);
    }
    used_ = 0;
  }
  return buffer_[used_++];
}

HealthTests::HealthTests(double h)
    : rct_cutoff_(1 + static_cast<int>(std::ceil(-kLog2Alpha / h))),
      apt_cutoff_(1 + CritBinom(kWindow, std::exp2(-h), 1.0 - std::exp2(kLog2Alpha))) {}

bool HealthTests::Feed(uint8_t sample) {
  if (failed_) return false;
  // Repetition count test.
  if (started_ && sample == rct_value_) {
    if (++rct_count_ >= rct_cutoff_) failed_ = true;
  } else {
    rct_value_ = sample;
    rct_count_ = 1;
  }
  started_ = true;
  // Adaptive proportion test: count the window's first value within the window.
  if (apt_seen_ == 0) {
    apt_value_ = sample;
    apt_count_ = 1;
  } else if (sample == apt_value_) {
    if (++apt_count_ >= apt_cutoff_) failed_ = true;
  }
  if (++apt_seen_ == kWindow) apt_seen_ = 0;
  return !failed_;
}

Result<ChipRng> ChipRng::Create(std::unique_ptr<NoiseSource> source,
                                double claimed_entropy_per_sample) {
  if (!(claimed_entropy_per_sample > 0.0 && claimed_entropy_per_sample <= 8.0)) {
    return MakeError(ErrorCode::kInvalidInput, "claimed entropy must be in (0, 8] bits a sample");
  }
  ChipRng rng(std::move(source), claimed_entropy_per_sample);
  for (int i = 0; i < kStartupSamples; ++i) {
    DEVID_ASSIGN_OR_RETURN(uint8_t s, rng.source_->Sample());
    if (!rng.health_.Feed(s)) return SourceFailure().Context("start-up test");
  }
  DEVID_ASSIGN_OR_RETURN(Bytes entropy, rng.DrawEntropy());
  static constexpr char kPersonalization[] = "devid secure element TRNG";
  auto drbg = crypto::DrbgContext::Create(entropy, AsBytes(kPersonalization));
  SecureZero(entropy.data(), entropy.size());
  if (!drbg.ok()) return drbg.error();
  rng.drbg_ = std::make_unique<crypto::DrbgContext>(std::move(drbg).value());
  return rng;
}

Result<Bytes> ChipRng::DrawEntropy() {
  size_t samples = static_cast<size_t>(std::ceil(384.0 / h_));
  Bytes out(samples);
  for (uint8_t& b : out) {
    DEVID_ASSIGN_OR_RETURN(b, source_->Sample());
    if (!health_.Feed(b)) {
      SecureZero(out.data(), out.size());
      return SourceFailure();
    }
  }
  return out;
}

Status ChipRng::Refresh() {
  if (health_.failed()) return SourceFailure();
  DEVID_ASSIGN_OR_RETURN(Bytes entropy, DrawEntropy());
  Status reseeded = drbg_->Reseed(entropy);
  SecureZero(entropy.data(), entropy.size());
  return reseeded;
}

Status ChipRng::Generate(uint8_t* out, size_t size) {
  DEVID_TRY(Refresh());
  return drbg_->Generate(out, size);
}

Result<Bytes> ChipRng::Generate(size_t size) {
  Bytes out(size);
  DEVID_TRY(Generate(out.data(), out.size()));
  return out;
}

}  // namespace devid::se
