#include <gtest/gtest.h>

#include <random>

#include "se/device/trng.h"

namespace devid::se {
namespace {

// A source replaying a fixed script, then a function.
class ScriptedSource : public NoiseSource {
 public:
  explicit ScriptedSource(std::function<uint8_t(size_t)> f) : f_(std::move(f)) {}
  Result<uint8_t> Sample() override { return f_(n_++); }
  size_t n_ = 0;

 private:
  std::function<uint8_t(size_t)> f_;
};

std::function<uint8_t(size_t)> Uniform(uint32_t seed) {
  auto rng = std::make_shared<std::mt19937>(seed);
  return [rng](size_t) { return static_cast<uint8_t>((*rng)() & 0xFF); };
}

TEST(HealthTests, CutoffsFollowSp80090B) {
  // H = 8: RCT C = 1 + ceil(20/8) = 4; H = 1: C = 21 (§4.4.1 example values).
  EXPECT_EQ(HealthTests(8.0).repetition_cutoff(), 4);
  EXPECT_EQ(HealthTests(1.0).repetition_cutoff(), 21);
  EXPECT_EQ(HealthTests(6.0).repetition_cutoff(), 5);
  // APT with W = 512: the cut-offs of SP 800-90B §4.4.2 Table 2.
  EXPECT_EQ(HealthTests(0.5).proportion_cutoff(), 410);
  EXPECT_EQ(HealthTests(1.0).proportion_cutoff(), 311);
  EXPECT_EQ(HealthTests(2.0).proportion_cutoff(), 177);
  EXPECT_EQ(HealthTests(4.0).proportion_cutoff(), 62);
  EXPECT_EQ(HealthTests(8.0).proportion_cutoff(), 13);
}

TEST(HealthTests, RepetitionCountTestCatchesAStuckSource) {
  HealthTests t(6.0);
  for (int i = 0; i < t.repetition_cutoff() - 1; ++i) EXPECT_TRUE(t.Feed(0x42));
  EXPECT_FALSE(t.Feed(0x42));
  EXPECT_TRUE(t.failed());
  EXPECT_FALSE(t.Feed(0x01));  // latched
}

TEST(HealthTests, AdaptiveProportionTestCatchesABiasedSource) {
  // 0x00 half of the time, never twice in a row (so the RCT stays quiet).
  HealthTests t(6.0);
  bool ok = true;
  for (int i = 0; i < HealthTests::kWindow && ok; ++i)
    ok = t.Feed(i % 2 == 0 ? 0x00 : static_cast<uint8_t>(1 + i % 200));
  EXPECT_FALSE(ok);
  EXPECT_TRUE(t.failed());
}

TEST(HealthTests, AGoodSourcePassesMillionsOfSamples) {
  HealthTests t(6.0);
  auto next = Uniform(7);
  for (int i = 0; i < 2'000'000; ++i) ASSERT_TRUE(t.Feed(next(0))) << "false alarm at sample " << i;
}

TEST(ChipRng, HostSourceProducesDistinctOutput) {
  auto rng = ChipRng::Create(std::make_unique<HostNoiseSource>(), kHostClaimedEntropy);
  ASSERT_TRUE(rng.ok()) << rng.error().message;
  auto a = rng->Generate(32);
  auto b = rng->Generate(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(*a, Bytes(32, 0));
  EXPECT_TRUE(rng->Generate(100000).ok());  // more than one DRBG request
}

TEST(ChipRng, StuckSourceFailsTheStartUpTest) {
  auto rng =
      ChipRng::Create(std::make_unique<ScriptedSource>([](size_t) { return uint8_t{0xAA}; }), 6.0);
  ASSERT_FALSE(rng.ok());
  EXPECT_NE(rng.error().message.find("health"), std::string::npos);
}

TEST(ChipRng, BiasedSourceFailsTheStartUpTest) {
  auto next = Uniform(3);
  auto rng =
      ChipRng::Create(std::make_unique<ScriptedSource>([next](size_t i) {
                        return i % 2 == 0 ? uint8_t{0x00} : static_cast<uint8_t>(next(i) | 1);
                      }),
                      6.0);
  EXPECT_FALSE(rng.ok());
}

TEST(ChipRng, SourceThatFailsLaterMakesEveryRequestFail) {
  auto next = Uniform(11);
  auto source = std::make_unique<ScriptedSource>(
      [next](size_t i) { return i < 5000 ? next(i) : uint8_t{0x00}; });
  auto rng = ChipRng::Create(std::move(source), 6.0);
  ASSERT_TRUE(rng.ok()) << rng.error().message;
  // Each request draws fresh samples; once the source is stuck, requests fail and stay failed.
  bool failed = false;
  for (int i = 0; i < 200 && !failed; ++i) failed = !rng->Generate(16).ok();
  EXPECT_TRUE(failed);
  EXPECT_TRUE(rng->failed());
  EXPECT_FALSE(rng->Generate(16).ok());
}

}  // namespace
}  // namespace devid::se
