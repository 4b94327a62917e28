// The chip's true random number generator: a noise source under the NIST
// SP 800-90B continuous health tests, feeding an SP 800-90A CTR_DRBG.
// A failing source makes every request fail; it never yields weak bytes.
#pragma once

#include <cstdint>
#include <memory>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/drbg.h"

namespace devid::se {

// One raw 8-bit sample per call from the chip's physical noise source.
class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  virtual Result<uint8_t> Sample() = 0;
};

// The software chip's stand-in for a physical source: the host kernel's
// entropy (getrandom). Claimed min-entropy: kHostClaimedEntropy bits a sample,
// deliberately below 8 so that the health-test cut-offs are those of a
// conservative hardware claim.
class HostNoiseSource final : public NoiseSource {
 public:
  Result<uint8_t> Sample() override;

 private:
  uint8_t buffer_[256] = {};
  size_t used_ = sizeof(buffer_);
};
inline constexpr double kHostClaimedEntropy = 6.0;

// SP 800-90B §4.4 continuous health tests for a source claiming `h` bits of
// min-entropy a sample, with false-positive rate alpha = 2^-20.
class HealthTests {
 public:
  explicit HealthTests(double h);
  // Feeds one sample; false once a test has failed (the failure is latched).
  bool Feed(uint8_t sample);
  bool failed() const { return failed_; }
  // §4.4.1: C = 1 + ceil(-log2(alpha) / H).
  int repetition_cutoff() const { return rct_cutoff_; }
  // §4.4.2: C = 1 + CRITBINOM(W, 2^-H, 1 - alpha), W = 512 for non-binary samples.
  int proportion_cutoff() const { return apt_cutoff_; }
  static constexpr int kWindow = 512;

 private:
  int rct_cutoff_;
  int apt_cutoff_;
  bool failed_ = false;
  bool started_ = false;
  uint8_t rct_value_ = 0;
  int rct_count_ = 0;
  uint8_t apt_value_ = 0;
  int apt_count_ = 0;
  int apt_seen_ = 0;
};

class ChipRng {
 public:
  // Runs the start-up test (§4.3: 1024 samples through both tests) before the
  // first output; fails if the source fails it.
  static Result<ChipRng> Create(std::unique_ptr<NoiseSource> source,
                                double claimed_entropy_per_sample);

  // Reseeds the DRBG from freshly health-tested samples, then generates.
  Status Generate(uint8_t* out, size_t size);
  Result<Bytes> Generate(size_t size);
  // Reseeds only: the chip calls it before generating a key or signing in
  // context(), whose keys draw their secrets and nonces from this DRBG.
  Status Refresh();
  OSSL_LIB_CTX* context() const { return drbg_->get(); }
  crypto::DrbgContext& drbg() { return *drbg_; }
  bool failed() const { return health_.failed(); }

 private:
  ChipRng(std::unique_ptr<NoiseSource> source, double h)
      : source_(std::move(source)), h_(h), health_(h) {}
  // Enough raw samples for 384 bits of min-entropy (strength 256 plus margin).
  Result<Bytes> DrawEntropy();

  std::unique_ptr<NoiseSource> source_;
  double h_;
  HealthTests health_;
  std::unique_ptr<crypto::DrbgContext> drbg_;
};

}  // namespace devid::se
