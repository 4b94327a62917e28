#include <gtest/gtest.h>

#include <filesystem>

#include "core/file.h"
#include "se/device/nvm.h"

namespace devid::se {
namespace {

class NvmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("devid-nvm-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "chip.img").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Bytes ReadImage() { return *ReadFile(path_); }
  void WriteImage(const Bytes& b) { ASSERT_TRUE(WriteFileAtomic(path_, b).ok()); }
  ErrorCode LoadError() {
    auto nvm = NvmImage::Open(path_);
    if (!nvm.ok()) return nvm.error().code;
    auto r = nvm->Load();
    return r.ok() ? ErrorCode::kInternal : r.error().code;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(NvmTest, SaveAndLoadRoundTripWithIncreasingVersions) {
  {
    auto nvm = NvmImage::Create(path_, AsBytes("state-1"));
    ASSERT_TRUE(nvm.ok()) << nvm.error().message;
    EXPECT_EQ(nvm->version(), 1u);
    ASSERT_TRUE(nvm->Save(AsBytes("state-2")).ok());
    // While it is powered, nobody else runs the same chip.
    auto second = NvmImage::Open(path_);
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.error().message.find("in use"), std::string::npos);
  }
  auto again = NvmImage::Open(path_);
  ASSERT_TRUE(again.ok());
  auto state = again->Load();
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_EQ(AsString(*state), "state-2");
  EXPECT_EQ(again->version(), 2u);
  // The image is encrypted: the plaintext does not appear in the file.
  Bytes raw = ReadImage();
  EXPECT_EQ(std::search(raw.begin(), raw.end(), std::begin("state-2"), std::end("state-2") - 1),
            raw.end());
  EXPECT_EQ(NvmImage::Create(path_, AsBytes("x")).error().code, ErrorCode::kAlreadyExists);
}

TEST_F(NvmTest, AnyFlippedByteIsTamper) {
  ASSERT_TRUE(NvmImage::Create(path_, AsBytes("a secret key slot and some files")).ok());
  const Bytes original = ReadImage();
  for (size_t i = 0; i < original.size(); ++i) {
    Bytes bad = original;
    bad[i] ^= 0x01;
    WriteImage(bad);
    EXPECT_EQ(LoadError(), ErrorCode::kTamper) << "byte " << i;
  }
}

TEST_F(NvmTest, TruncationIsTamper) {
  ASSERT_TRUE(NvmImage::Create(path_, AsBytes("state")).ok());
  const Bytes original = ReadImage();
  for (size_t n : {size_t{0}, size_t{3}, size_t{13}, original.size() / 2, original.size() - 1}) {
    WriteImage(Bytes(original.begin(), original.begin() + static_cast<long>(n)));
    EXPECT_EQ(LoadError(), ErrorCode::kTamper) << n << " bytes";
  }
  std::filesystem::remove(path_);
  EXPECT_EQ(LoadError(), ErrorCode::kTamper);
}

TEST_F(NvmTest, RollbackToAnOlderImageIsTamper) {
  Bytes v1;
  {
    auto nvm = NvmImage::Create(path_, AsBytes("v1"));
    ASSERT_TRUE(nvm.ok());
    v1 = ReadImage();
    ASSERT_TRUE(nvm->Save(AsBytes("v2")).ok());
  }
  WriteImage(v1);
  auto reopened = NvmImage::Open(path_);
  ASSERT_TRUE(reopened.ok());
  auto r = reopened->Load();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kTamper);
  EXPECT_NE(r.error().message.find("rolled back"), std::string::npos);
}

TEST_F(NvmTest, ImageFromAnotherChipIsTamper) {
  std::string other = (dir_ / "other.img").string();
  ASSERT_TRUE(NvmImage::Create(path_, AsBytes("mine")).ok());
  ASSERT_TRUE(NvmImage::Create(other, AsBytes("theirs")).ok());
  WriteImage(*ReadFile(other));
  EXPECT_EQ(LoadError(), ErrorCode::kTamper);
}

TEST_F(NvmTest, DamagedFuseFileIsTamper) {
  ASSERT_TRUE(NvmImage::Create(path_, AsBytes("state")).ok());
  Bytes fuse = *ReadFile(path_ + ".fuse");
  fuse[10] ^= 0x80;
  ASSERT_TRUE(WriteFileAtomic(path_ + ".fuse", fuse).ok());
  EXPECT_EQ(NvmImage::Open(path_).error().code, ErrorCode::kTamper);
}

// A power cut at every step of a save leaves the old or the new state, never a broken one.
TEST_F(NvmTest, PowerLossAtEveryStepLeavesOldOrNewState) {
  for (int cut = 1; cut <= 11; ++cut) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ASSERT_TRUE(NvmImage::Create(path_, AsBytes("old")).ok());
    {
      auto cutting = NvmImage::Open(path_, [cut](int step) { return step != cut; });
      ASSERT_TRUE(cutting.ok());
      ASSERT_TRUE(cutting->Load().ok());
      Status saved = cutting->Save(AsBytes("new"));
      EXPECT_FALSE(saved.ok()) << "cut " << cut;
    }  // power off
    // "Reboot": a fresh open must find a consistent state.
    auto after = NvmImage::Open(path_);
    ASSERT_TRUE(after.ok()) << "cut " << cut << ": " << after.error().message;
    auto state = after->Load();
    ASSERT_TRUE(state.ok()) << "cut " << cut << ": " << state.error().message;
    std::string s(AsString(*state));
    // Steps 1-5 write "<image>.new", 6-9 the fuse's temporary file: old state.
    // From step 10 (the fuse renamed into place: the commit point) on, new state.
    EXPECT_EQ(s, cut <= 9 ? "old" : "new") << "cut " << cut;
    // And the chip keeps working: the next save and load succeed.
    ASSERT_TRUE(after->Save(AsBytes("next")).ok());
    after = Result<NvmImage>(MakeError(ErrorCode::kInternal, "powered off"));  // releases the chip
    EXPECT_EQ(AsString(*NvmImage::Open(path_)->Load()), "next");
  }
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

// A cut between two writes must not leave two acceptable states for an
// attacker to choose from (old image + old fuse, or new image + new fuse).
TEST_F(NvmTest, AfterAnInterruptedSaveOnlyOneStateIsAccepted) {
  ASSERT_TRUE(NvmImage::Create(path_, AsBytes("tries=3")).ok());
  Bytes old_image = ReadImage();
  Bytes old_fuse = *ReadFile(path_ + ".fuse");
  {
    // Cut right after the fuse commit, before the new image moved into place.
    auto cutting = NvmImage::Open(path_, [](int step) { return step != 11; });
    ASSERT_TRUE(cutting->Load().ok());
    EXPECT_FALSE(cutting->Save(AsBytes("tries=2")).ok());
  }
  // The chip comes back with the new state...
  EXPECT_EQ(AsString(*NvmImage::Open(path_)->Load()), "tries=2");
  // ...and putting the old image back (with or without the old .new) is tamper;
  WriteImage(old_image);
  EXPECT_EQ(LoadError(), ErrorCode::kTamper);
  // only the old fuse AND old image together give the old state, which is the
  // documented limit: the fuse file stands for on-chip fuses an attacker cannot rewrite.
  ASSERT_TRUE(WriteFileAtomic(path_ + ".fuse", old_fuse).ok());
  EXPECT_EQ(AsString(*NvmImage::Open(path_)->Load()), "tries=3");
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

// After a failed save the chip re-reads its NVM; what it reads must be what
// a power-up would find, whichever side of the commit point the fault struck.
TEST_F(NvmTest, ReloadAfterAFailedSaveMatchesAPowerUp) {
  for (int cut = 1; cut <= 11; ++cut) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ASSERT_TRUE(NvmImage::Create(path_, AsBytes("old")).ok());
    auto cutting = NvmImage::Open(path_, [cut](int step) { return step != cut; });
    ASSERT_TRUE(cutting->Load().ok());
    ASSERT_FALSE(cutting->Save(AsBytes("new")).ok());
    auto reloaded = cutting->Reload();
    ASSERT_TRUE(reloaded.ok()) << "cut " << cut << ": " << reloaded.error().message;
    EXPECT_EQ(AsString(*reloaded), cut <= 9 ? "old" : "new") << "cut " << cut;
  }
}

// Termination seals under a fresh key: an earlier image no longer opens
// even with the chip's current fuse, and the fuse's key bytes change.
TEST_F(NvmTest, RotatedKeyLeavesEarlierImagesUnreadable) {
  auto nvm = NvmImage::Create(path_, AsBytes("secrets"));
  ASSERT_TRUE(nvm.ok());
  Bytes old_image = ReadImage();
  Bytes old_fuse = *ReadFile(path_ + ".fuse");
  ASSERT_TRUE(nvm->Save(AsBytes("zeroised"), SealKey::kRotate).ok());
  Bytes new_fuse = *ReadFile(path_ + ".fuse");
  constexpr size_t kKeyAt = 5, kKeySize = 32;
  EXPECT_NE(Bytes(old_fuse.begin() + kKeyAt, old_fuse.begin() + kKeyAt + kKeySize),
            Bytes(new_fuse.begin() + kKeyAt, new_fuse.begin() + kKeyAt + kKeySize));
  EXPECT_EQ(AsString(*nvm->Load()), "zeroised");
  nvm = Result<NvmImage>(MakeError(ErrorCode::kInternal, "powered off"));
  WriteImage(old_image);
  auto reopened = NvmImage::Open(path_);
  auto r = reopened->Load();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("integrity check"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace devid::se
