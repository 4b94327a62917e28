#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "core/file.h"
#include "crypto/aead.h"
#include "crypto/key.h"
#include "se/device/secure_element.h"
#include "se/host/client.h"

namespace devid::se {
namespace {

constexpr uint16_t kOk = 0x9000;

class ChipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("devid-chip-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    image_ = (dir_ / "chip.img").string();
    auto chip = SecureElement::Create(image_, "SN-0001", SecretString("1234"), nullptr, kMkey);
    ASSERT_TRUE(chip.ok()) << chip.error().message;
    chip_ = std::move(chip).value();
  }
  void AuthenticateManufacturer() {
    Bytes challenge = Send(Ins::kAuthenticate, 0x02, 0x00).data;
    ASSERT_EQ(Send(Ins::kAuthenticate, 0x02, 0x01, *crypto::HmacSha256(kMkey, challenge)).sw, kOk);
  }
  const Bytes kMkey = Bytes(32, 0x6B);
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ApduResponse Send(Ins ins, uint8_t p1 = 0, uint8_t p2 = 0, Bytes data = {},
                    std::optional<uint32_t> le = {}) {
    ApduCommand c;
    c.ins = static_cast<uint8_t>(ins);
    c.p1 = p1;
    c.p2 = p2;
    c.data = std::move(data);
    if (le) {
      c.has_le = true;
      c.le = *le;
    }
    // Through the byte encoding, as on the bus.
    auto r = ApduResponse::Parse(chip_->Process(c.Encode()));
    EXPECT_TRUE(r.ok());
    return std::move(r).value();
  }
  void Reboot() {
    chip_.reset();
    auto chip = SecureElement::Open(image_);
    ASSERT_TRUE(chip.ok()) << chip.error().message;
    chip_ = std::move(chip).value();
  }
  void Login() { ASSERT_EQ(Send(Ins::kAuthenticate, 0x01, 0, Bytes{'1', '2', '3', '4'}).sw, kOk); }

  std::filesystem::path dir_;
  std::string image_;
  std::unique_ptr<SecureElement> chip_;
};

TEST_F(ChipTest, GetInfoReportsSerialLifecycleAndFreeMemory) {
  auto r = Send(Ins::kGetInfo);
  ASSERT_EQ(r.sw, kOk);
  ASSERT_GE(r.data.size(), 1u + 7 + 7);
  EXPECT_EQ(std::string(r.data.begin() + 1, r.data.begin() + 1 + r.data[0]), "SN-0001");
  size_t o = 1 + r.data[0];
  EXPECT_EQ(r.data[o + 2], static_cast<uint8_t>(Lifecycle::kManufacturing));
  EXPECT_EQ(r.data[o + 3], 0);  // not tampered
  EXPECT_EQ(r.data[o + 4], kPinTries);
  uint32_t free = static_cast<uint32_t>(r.data[o + 5] << 24 | r.data[o + 6] << 16 |
                                        r.data[o + 7] << 8 | r.data[o + 8]);
  EXPECT_EQ(free, kNvmCapacity);
  // A file costs its header besides its content, so the file count (and the
  // LIST_FILES answer) stays bounded even with one-byte files.
  ASSERT_EQ(Send(Ins::kCreateFile, 0x50, 0x01, {0x00, 0x01, 0x00, 0x00}).sw, kOk);
  r = Send(Ins::kGetInfo);
  uint32_t after = static_cast<uint32_t>(r.data[o + 5] << 24 | r.data[o + 6] << 16 |
                                         r.data[o + 7] << 8 | r.data[o + 8]);
  EXPECT_EQ(free - after, 17u);
}

TEST_F(ChipTest, MalformedOrUnknownCommandsGetTheirStatusWords) {
  EXPECT_EQ(ApduResponse::Parse(chip_->Process(Bytes{0x80, 0xCA})).value().sw, 0x6700);  // no P1 P2
  EXPECT_EQ(ApduResponse::Parse(chip_->Process(Bytes{0x80, 0x2A, 0, 0, 5, 1})).value().sw,
            0x6700);  // Lc lies
  EXPECT_EQ(ApduResponse::Parse(chip_->Process(Bytes{0x00, 0xCA, 0, 0})).value().sw, 0x6E00);
  EXPECT_EQ(ApduResponse::Parse(chip_->Process(Bytes{0x80, 0x99, 0, 0})).value().sw, 0x6D00);
  EXPECT_EQ(Send(Ins::kGetRandom).sw, 0x6700);  // no Le
  EXPECT_EQ(Send(Ins::kGenerateKeyPair, 16, 1).sw, 0x6A86);
  EXPECT_EQ(Send(Ins::kGenerateKeyPair, 0, 3).sw, 0x6A86);
  EXPECT_EQ(Send(Ins::kSign, 5, 0, Bytes(32, 1)).sw, 0x6A82);  // empty slot
  EXPECT_EQ(Send(Ins::kSign, 5, 0, Bytes(20, 1)).sw, 0x6700);
}

TEST_F(ChipTest, GetRandomReturnsFreshBytes) {
  auto a = Send(Ins::kGetRandom, 0, 0, {}, 32);
  auto b = Send(Ins::kGetRandom, 0, 0, {}, 32);
  ASSERT_EQ(a.sw, kOk);
  EXPECT_EQ(a.data.size(), 32u);
  EXPECT_NE(a.data, b.data);
  EXPECT_EQ(Send(Ins::kGetRandom, 0, 0, {}, 5000).sw, 0x6700);
}

TEST_F(ChipTest, SignatureMadeInTheChipVerifiesOutside) {
  auto gen = Send(Ins::kGenerateKeyPair, 0, 0x01 | 0x80);  // P-256, PIN needed to use
  ASSERT_EQ(gen.sw, kOk);
  Bytes digest = crypto::Sha256(AsBytes("telemetry"));
  EXPECT_EQ(Send(Ins::kSign, 0, 0, digest).sw, 0x6982);  // no PIN yet
  Login();
  auto sig = Send(Ins::kSign, 0, 0, digest);
  ASSERT_EQ(sig.sw, kOk);
  auto pub = crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, gen.data);
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(crypto::VerifyDigest(pub->get(), digest, sig.data).ok());
  auto read = Send(Ins::kReadPublicKey, 0);
  ASSERT_EQ(read.sw, kOk);
  EXPECT_EQ(Bytes(read.data.begin() + 1, read.data.end()), gen.data);
  // The chip verifies too: with the key supplied, and with a key kept in a file.
  Bytes v = {0x01, static_cast<uint8_t>(gen.data.size())};
  v.insert(v.end(), gen.data.begin(), gen.data.end());
  v.push_back(32);
  v.insert(v.end(), digest.begin(), digest.end());
  v.insert(v.end(), sig.data.begin(), sig.data.end());
  EXPECT_EQ(Send(Ins::kVerifySignature, 0x00, 0, v).sw, kOk);
  Bytes wrong = v;
  wrong[2 + gen.data.size() + 1] ^= 1;  // first digest byte
  EXPECT_EQ(Send(Ins::kVerifySignature, 0x00, 0, wrong).sw, 0x6300);
  ASSERT_EQ(Send(Ins::kCreateFile, 0x10, 0x01, {0x00, 0x80, 0x00, 0xFF}).sw, kOk);
  Bytes ca_key = {0x01};
  ca_key.insert(ca_key.end(), gen.data.begin(), gen.data.end());
  ASSERT_EQ(Send(Ins::kWriteFile, 0x10, 0x01, ca_key).sw, kOk);
  Bytes by_file = {0x10, 0x01, 32};
  by_file.insert(by_file.end(), digest.begin(), digest.end());
  by_file.insert(by_file.end(), sig.data.begin(), sig.data.end());
  EXPECT_EQ(Send(Ins::kVerifySignature, 0x01, 0, by_file).sw, kOk);
}

TEST_F(ChipTest, EcdhInTheChipMatchesTheOtherSide) {
  auto gen = Send(Ins::kGenerateKeyPair, kVolatileSlot, 0x01);
  ASSERT_EQ(gen.sw, kOk);
  auto peer = crypto::PrivateKey::Generate(crypto::KeyType::kEcP256).value();
  auto secret = Send(Ins::kEcdh, kVolatileSlot, 0, *peer.PublicPoint());
  ASSERT_EQ(secret.sw, kOk);
  auto chip_pub = crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, gen.data);
  EXPECT_EQ(secret.data, *crypto::DeriveSharedSecret(peer, chip_pub->get()));
  EXPECT_EQ(Send(Ins::kEcdh, kVolatileSlot, 0, Bytes{0x04, 0x01}).sw, 0x6A80);
  // Volatile keys do not survive a power cycle; persistent ones do.
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 3, 0x02).sw, kOk);
  Reboot();
  EXPECT_EQ(Send(Ins::kEcdh, kVolatileSlot, 0, *peer.PublicPoint()).sw, 0x6A82);
  EXPECT_EQ(Send(Ins::kReadPublicKey, 3).sw, kOk);
  EXPECT_EQ(Send(Ins::kReadPublicKey, 3).data[0], 0x02);
}

TEST_F(ChipTest, FilesHonourSizesAndAccessConditions) {
  ASSERT_EQ(Send(Ins::kCreateFile, 0x20, 0x00, {0x00, 0x08, 0x01, 0x00}).sw,
            kOk);  // read needs PIN
  EXPECT_EQ(Send(Ins::kCreateFile, 0x20, 0x00, {0x00, 0x08, 0x00, 0x00}).sw, 0x6985);  // exists
  EXPECT_EQ(Send(Ins::kCreateFile, 0x21, 0x00, {0x00, 0x08, 0x07, 0x00}).sw, 0x6A80);  // bad ac
  EXPECT_EQ(Send(Ins::kCreateFile, 0x22, 0x00, {0xFF, 0xFF, 0x00, 0x00}).sw, 0x6A84);  // too big
  EXPECT_EQ(Send(Ins::kWriteFile, 0x20, 0x00, Bytes(9, 'x')).sw, 0x6A84);
  ASSERT_EQ(Send(Ins::kWriteFile, 0x20, 0x00, Bytes{'h', 'i'}).sw, kOk);
  EXPECT_EQ(Send(Ins::kReadFile, 0x20, 0x00).sw, 0x6982);
  EXPECT_EQ(Send(Ins::kReadFile, 0x99, 0x00).sw, 0x6A82);
  Login();
  auto read = Send(Ins::kReadFile, 0x20, 0x00);
  ASSERT_EQ(read.sw, kOk);
  EXPECT_EQ(AsString(read.data), "hi");
  auto list = Send(Ins::kListFiles);
  ASSERT_EQ(list.sw, kOk);
  EXPECT_EQ(list.data, (Bytes{0x20, 0x00, 0x00, 0x02, 0x00, 0x08, 0x01, 0x00}));
}

TEST_F(ChipTest, WriteNeverLocksTheFileOnceOperational) {
  ASSERT_EQ(Send(Ins::kCreateFile, 0x30, 0x00, {0x00, 0x10, 0x00, 0xFF}).sw, kOk);
  ASSERT_EQ(Send(Ins::kWriteFile, 0x30, 0x00, Bytes{'c', 'a'}).sw, kOk);  // personalisation
  ASSERT_EQ(Send(Ins::kSetLifecycle, 3).sw, kOk);
  Login();
  EXPECT_EQ(Send(Ins::kWriteFile, 0x30, 0x00, Bytes{'x'}).sw, 0x6982);
  EXPECT_EQ(AsString(Send(Ins::kReadFile, 0x30, 0x00).data), "ca");
}

TEST_F(ChipTest, PinLocksOutAfterThreeWrongTriesEvenAcrossPowerCycles) {
  EXPECT_EQ(Send(Ins::kAuthenticate, 0x01, 0, Bytes{'0', '0', '0', '0'}).sw, 0x63C2);
  Reboot();  // cutting power does not restore tries
  EXPECT_EQ(Send(Ins::kAuthenticate, 0x01, 0, Bytes{'0', '0', '0', '0'}).sw, 0x63C1);
  EXPECT_EQ(Send(Ins::kAuthenticate, 0x01, 0, Bytes{'0', '0', '0', '0'}).sw, 0x6983);
  EXPECT_EQ(Send(Ins::kAuthenticate, 0x01, 0, Bytes{'1', '2', '3', '4'}).sw, 0x6983);
}

TEST_F(ChipTest, CorrectPinResetsTheTryCounter) {
  EXPECT_EQ(Send(Ins::kAuthenticate, 0x01, 0, Bytes{'9', '9', '9', '9'}).sw, 0x63C2);
  Login();
  EXPECT_EQ(Send(Ins::kAuthenticate, 0x01, 0, Bytes{'9', '9', '9', '9'}).sw, 0x63C2);
}

TEST_F(ChipTest, CountersOnlyGoUpAndSurviveRestarts) {
  EXPECT_EQ(Send(Ins::kCounter, 2, 0).data, Bytes(8, 0));
  EXPECT_EQ(Send(Ins::kCounter, 2, 1).data.back(), 1);
  EXPECT_EQ(Send(Ins::kCounter, 2, 1).data.back(), 2);
  Reboot();
  EXPECT_EQ(Send(Ins::kCounter, 2, 0).data.back(), 2);
  EXPECT_EQ(Send(Ins::kCounter, 8, 0).sw, 0x6A86);
}

TEST_F(ChipTest, LifecycleMovesForwardOnlyAndTerminationZeroises) {
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 0, 0x01).sw, kOk);
  ASSERT_EQ(Send(Ins::kSetLifecycle, 2).sw, kOk);
  EXPECT_EQ(Send(Ins::kSetLifecycle, 2).sw, 0x6985);
  ASSERT_EQ(Send(Ins::kSetLifecycle, 3).sw, kOk);
  EXPECT_EQ(Send(Ins::kSetLifecycle, 4).sw, 0x6982);  // operational: termination needs the PIN
  Login();
  ASSERT_EQ(Send(Ins::kSetLifecycle, 4).sw, kOk);
  EXPECT_EQ(Send(Ins::kSign, 0, 0, Bytes(32, 1)).sw, 0x6985);
  EXPECT_EQ(Send(Ins::kGetRandom, 0, 0, {}, 8).sw, 0x6985);
  EXPECT_EQ(Send(Ins::kGetInfo).sw, kOk);
  Reboot();
  EXPECT_EQ(Send(Ins::kReadPublicKey, 0).sw, 0x6985);
  // The key is gone from the image itself.
  auto info = Send(Ins::kGetInfo);
  EXPECT_EQ(info.data[1 + info.data[0] + 2], static_cast<uint8_t>(Lifecycle::kTerminated));
}

TEST_F(ChipTest, TamperedImageAnswersNothingSecretAndCanOnlyBeTerminated) {
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 0, 0x01).sw, kOk);
  chip_.reset();
  Bytes image = *ReadFile(image_);
  image[image.size() / 2] ^= 0x04;
  ASSERT_TRUE(WriteFileAtomic(image_, image).ok());
  auto chip = SecureElement::Open(image_);
  ASSERT_TRUE(chip.ok());
  chip_ = std::move(chip).value();
  EXPECT_TRUE(chip_->tampered());
  EXPECT_EQ(Send(Ins::kSign, 0, 0, Bytes(32, 1)).sw, 0x6581);
  EXPECT_EQ(Send(Ins::kReadPublicKey, 0).sw, 0x6581);
  EXPECT_EQ(Send(Ins::kGetRandom, 0, 0, {}, 8).sw, 0x6581);
  EXPECT_EQ(Send(Ins::kSetLifecycle, 3).sw, 0x6581);
  auto info = Send(Ins::kGetInfo);
  ASSERT_EQ(info.sw, kOk);
  EXPECT_EQ(info.data[1 + info.data[0] + 3], 1);  // tamper flag
  EXPECT_EQ(Send(Ins::kSetLifecycle, 4).sw, kOk);
  Reboot();
  EXPECT_FALSE(chip_->tampered());
  EXPECT_EQ(Send(Ins::kSign, 0, 0, Bytes(32, 1)).sw, 0x6985);  // terminated
}

TEST_F(ChipTest, FailedNoiseSourceStopsRandomnessAndKeyGeneration) {
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 1, 0x01).sw, kOk);
  chip_.reset();
  struct Stuck : NoiseSource {
    Result<uint8_t> Sample() override { return uint8_t{0x55}; }
  };
  auto chip = SecureElement::Open(image_, std::make_unique<Stuck>());
  ASSERT_TRUE(chip.ok());
  chip_ = std::move(chip).value();
  EXPECT_EQ(Send(Ins::kGetRandom, 0, 0, {}, 16).sw, 0x6F01);
  EXPECT_EQ(Send(Ins::kGenerateKeyPair, 2, 0x01).sw, 0x6F01);
  // ECDSA nonces come from the chip's TRNG-fed DRBG too: no signature without it.
  EXPECT_EQ(Send(Ins::kSign, 1, 0, Bytes(32, 7)).sw, 0x6F01);
  EXPECT_EQ(Send(Ins::kReadPublicKey, 1).sw, kOk);
}

TEST_F(ChipTest, SourceThatFailsInServiceStopsSignatures) {
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 1, 0x01).sw, kOk);
  chip_.reset();
  // Healthy through the start-up test and a few requests, then stuck.
  struct FailsLater : NoiseSource {
    size_t n = 0;
    HostNoiseSource healthy;
    Result<uint8_t> Sample() override {
      return ++n < 1500 ? healthy.Sample() : Result<uint8_t>(uint8_t{0x00});
    }
  };
  chip_ = SecureElement::Open(image_, std::make_unique<FailsLater>()).value();
  ASSERT_EQ(Send(Ins::kSign, 1, 0, Bytes(32, 7)).sw, kOk);
  uint16_t sw = kOk;
  for (int i = 0; i < 20 && sw == kOk; ++i) sw = Send(Ins::kSign, 1, 0, Bytes(32, 7)).sw;
  EXPECT_EQ(sw, 0x6F01);  // each signature reseeds from the source, so its failure shows
}

TEST(Apdu, ShortAndExtendedEncodingsRoundTrip) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{3000}}) {
    for (bool le : {false, true}) {
      ApduCommand c;
      c.ins = 0x2A;
      c.p1 = 1;
      c.p2 = 2;
      c.data = Bytes(n, 0xAB);
      c.has_le = le;
      c.le = le ? 256 : 0;
      auto back = ApduCommand::Parse(c.Encode());
      ASSERT_TRUE(back.ok()) << n << " " << le;
      EXPECT_EQ(back->data, c.data);
      EXPECT_EQ(back->has_le, le);
      if (le) {
        EXPECT_EQ(back->le, 256u);
      }
    }
  }
  EXPECT_FALSE(ApduCommand::Parse(Bytes{0x80, 0x2A, 0}).ok());
  EXPECT_FALSE(ApduCommand::Parse(Bytes{0x80, 0x2A, 0, 0, 0, 0}).ok());
  EXPECT_EQ(StatusWordText(0x63C1), "63C1 (wrong PIN, 1 tries left)");
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

TEST_F(ChipTest, CommandLogNamesEachCommandItsTargetAndStatusButNoData) {
  std::vector<std::string> lines;
  chip_->SetCommandLog([&](const std::string& line) { lines.push_back(line); });
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, kVolatileSlot, 0x01).sw, kOk);
  Send(Ins::kSign, 4, 0, Bytes(32, 0xEE));
  Send(Ins::kGetRandom, 0, 0, {}, 16);
  Send(Ins::kAuthenticate, 0x01, 0, Bytes{'9', '8', '7', '6'});
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].rfind("GENERATE_KEY_PAIR slot=volatile sw=9000 us=", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("SIGN slot=4 sw=6A82 us=", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("GET_RANDOM le=16 sw=9000", 0), 0u) << lines[2];
  EXPECT_EQ(lines[3].rfind("AUTHENTICATE sw=63C2", 0), 0u) << lines[3];
  for (const auto& l : lines) EXPECT_EQ(l.find("9876"), std::string::npos);  // no PIN, no data
}

TEST_F(ChipTest, LatencyModelDelaysCommandsAtLeastByTheModel) {
  EXPECT_EQ(SecureElement::ModelledLatencyMs(Ins::kSign), 115);
  EXPECT_EQ(SecureElement::ModelledLatencyMs(Ins::kEcdh), 75);
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 0, 0x01).sw, kOk);
  chip_->SetLatencyModel(true);
  // A lower bound only: sleeping never ends early, so this cannot flake.
  auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(Send(Ins::kSign, 0, 0, Bytes(32, 1)).sw, kOk);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(115));
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("devid-client-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    image_ = (dir_ / "chip.img").string();
    mkey_ = Bytes(32, 0x5A);
    auto chip = SecureElement::Create(image_, "SN-C", SecretString("1234"), nullptr, mkey_);
    ASSERT_TRUE(chip.ok()) << chip.error().message;
    client_ =
        std::make_unique<ChipClient>(std::make_unique<InProcessTransport>(std::move(chip).value()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string image_;
  Bytes mkey_;
  std::unique_ptr<ChipClient> client_;
};

TEST_F(ClientTest, ImportedKeySignsAndOnlyWhilePersonalising) {
  auto key = crypto::PrivateKey::Generate(crypto::KeyType::kEcP384).value();
  auto anonymous = client_->ImportKey(2, key, false);
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.error().code, ErrorCode::kAuth);  // 6982: only the personaliser imports
  ASSERT_TRUE(client_->AuthenticateManufacturer(mkey_).ok());
  ASSERT_TRUE(client_->ImportKey(2, key, false).ok());
  auto pub = client_->ReadPublicKey(2);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->second, *key.PublicPoint());
  Bytes digest(48, 0x33);
  auto sig = client_->Sign(2, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().message;
  auto verify_key = crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP384, *key.PublicPoint());
  EXPECT_TRUE(crypto::VerifyDigest(verify_key->get(), digest, *sig).ok());
  ASSERT_TRUE(client_->SetLifecycle(Lifecycle::kOperational).ok());
  auto late = client_->ImportKey(3, key, false);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kPolicy);  // 6985
}

TEST_F(ClientTest, ImportKeyWrappedForAnotherChipIsRefused) {
  // Wrap for one chip, replay to another: the transport keys differ.
  client_.reset();  // power the first chip off; it is reopened below through a recorder
  std::string other_image = (dir_ / "other.img").string();
  ASSERT_TRUE(
      SecureElement::Create(other_image, "SN-O", SecretString("1234"), nullptr, mkey_).ok());
  struct Recorder : Transport {
    std::unique_ptr<Transport> inner;
    std::vector<Bytes>* sent = nullptr;
    Result<Bytes> Transmit(ByteView c) override {
      sent->emplace_back(c.begin(), c.end());
      return inner->Transmit(c);
    }
  };
  std::vector<Bytes> sent;
  {
    auto recorder = std::make_unique<Recorder>();
    recorder->inner = std::make_unique<InProcessTransport>(SecureElement::Open(image_).value());
    recorder->sent = &sent;
    ChipClient recording(std::move(recorder));
    auto key = crypto::PrivateKey::Generate(crypto::KeyType::kEcP256).value();
    ASSERT_TRUE(recording.AuthenticateManufacturer(mkey_).ok());
    ASSERT_TRUE(recording.ImportKey(1, key, false).ok());
  }
  auto import = ApduCommand::Parse(sent.back());
  ASSERT_TRUE(import.ok());
  ChipClient other(std::make_unique<InProcessTransport>(SecureElement::Open(other_image).value()));
  ASSERT_TRUE(other.AuthenticateManufacturer(mkey_).ok());
  auto r = other.Call(Ins::kImportKey, import->p1, import->p2, import->data);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidInput);  // 6A80: not wrapped for this chip
}

TEST_F(ClientTest, AesKeysEncryptAndDecryptInsideTheChip) {
  ASSERT_TRUE(client_->GenerateKeyPair(4, crypto::KeyType::kEcP256, false).ok());  // an EC slot
  ASSERT_TRUE(client_->Call(Ins::kGenerateKeyPair, 5, 0x10, {}).ok());             // AES-256
  auto sealed = client_->AesGcmEncrypt(5, AsBytes("hdr"), AsBytes("telemetry"));
  ASSERT_TRUE(sealed.ok()) << sealed.error().message;
  auto plain = client_->AesGcmDecrypt(5, AsBytes("hdr"), *sealed);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(AsString(*plain), "telemetry");
  // The chip picks a fresh nonce each time: the same plaintext never seals the same.
  auto again = client_->AesGcmEncrypt(5, AsBytes("hdr"), AsBytes("telemetry"));
  ASSERT_TRUE(again.ok());
  EXPECT_NE(Bytes(sealed->begin(), sealed->begin() + 12),
            Bytes(again->begin(), again->begin() + 12));
  Bytes forged = *sealed;
  forged[20] ^= 1;
  EXPECT_EQ(client_->AesGcmDecrypt(5, AsBytes("hdr"), forged).error().code,
            ErrorCode::kVerification);
  EXPECT_EQ(client_->AesGcmEncrypt(4, {}, AsBytes("x")).error().code,
            ErrorCode::kPolicy);                                               // EC slot
  EXPECT_EQ(client_->Sign(5, Bytes(32, 0)).error().code, ErrorCode::kPolicy);  // AES slot
  EXPECT_FALSE(client_->ReadPublicKey(5).ok());
}

TEST_F(ClientTest, ManufacturerKeyResetsABlockedPin) {
  for (int i = 0; i < 3; ++i) (void)client_->Authenticate("0000");
  EXPECT_EQ(client_->Authenticate("1234").error().code, ErrorCode::kAuth);  // blocked
  EXPECT_FALSE(client_->ResetPin("5678").ok());                             // not yet authenticated
  EXPECT_FALSE(client_->AuthenticateManufacturer(Bytes(32, 0x00)).ok());    // wrong key
  ASSERT_TRUE(client_->AuthenticateManufacturer(mkey_).ok());
  ASSERT_TRUE(client_->ResetPin("5678").ok());
  EXPECT_TRUE(client_->Authenticate("5678").ok());
  EXPECT_EQ(client_->GetInfo()->pin_tries, kPinTries);
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

// Every instruction: one command that succeeds and one that fails with the
// status word the design names for it.
TEST_F(ChipTest, EveryCommandHasItsSuccessAndFailureStatusWords) {
  EXPECT_EQ(Send(Ins::kImportKey, 1, 0, Bytes(120, 0x04)).sw, 0x6982);  // not the personaliser
  AuthenticateManufacturer();
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 0, 0x01).sw, kOk);
  Bytes point = Send(Ins::kReadPublicKey, 0).data;
  point.erase(point.begin());
  Bytes digest(32, 0x42);
  Bytes sig = Send(Ins::kSign, 0, 0, digest).data;
  Bytes verify = {0x01, static_cast<uint8_t>(point.size())};
  verify.insert(verify.end(), point.begin(), point.end());
  verify.push_back(32);
  verify.insert(verify.end(), digest.begin(), digest.end());
  verify.insert(verify.end(), sig.begin(), sig.end());
  auto peer = crypto::PrivateKey::Generate(crypto::KeyType::kEcP256).value();
  struct Case {
    const char* name;
    Ins ins;
    uint8_t p1, p2;
    Bytes data;
    std::optional<uint32_t> le;
    uint16_t expected;
  };
  const std::vector<Case> cases = {
      {"GET_INFO ok", Ins::kGetInfo, 0, 0, {}, {}, kOk},
      {"GET_RANDOM ok", Ins::kGetRandom, 0, 0, {}, 8, kOk},
      {"GET_RANDOM without Le", Ins::kGetRandom, 0, 0, {}, {}, 0x6700},
      {"GENERATE_KEY_PAIR ok", Ins::kGenerateKeyPair, 1, 0x02, {}, {}, kOk},
      {"GENERATE_KEY_PAIR bad curve", Ins::kGenerateKeyPair, 1, 0x05, {}, {}, 0x6A86},
      {"READ_PUBLIC_KEY ok", Ins::kReadPublicKey, 0, 0, {}, {}, kOk},
      {"READ_PUBLIC_KEY empty slot", Ins::kReadPublicKey, 9, 0, {}, {}, 0x6A82},
      {"SIGN ok", Ins::kSign, 0, 0, digest, {}, kOk},
      {"SIGN bad digest length", Ins::kSign, 0, 0, Bytes(31, 0), {}, 0x6700},
      {"VERIFY_SIGNATURE ok", Ins::kVerifySignature, 0, 0, verify, {}, kOk},
      {"VERIFY_SIGNATURE bad key source", Ins::kVerifySignature, 7, 0, verify, {}, 0x6A86},
      {"ECDH ok", Ins::kEcdh, 0, 0, *peer.PublicPoint(), {}, kOk},
      {"ECDH bad point", Ins::kEcdh, 0, 0, Bytes{0x04}, {}, 0x6A80},
      {"CREATE_FILE ok", Ins::kCreateFile, 0x40, 0x01, {0x00, 0x10, 0x00, 0x00}, {}, kOk},
      {"CREATE_FILE bad length", Ins::kCreateFile, 0x40, 0x02, {0x00}, {}, 0x6700},
      {"WRITE_FILE ok", Ins::kWriteFile, 0x40, 0x01, {1, 2, 3}, {}, kOk},
      {"WRITE_FILE too big", Ins::kWriteFile, 0x40, 0x01, Bytes(17, 0), {}, 0x6A84},
      {"READ_FILE ok", Ins::kReadFile, 0x40, 0x01, {}, {}, kOk},
      {"READ_FILE missing", Ins::kReadFile, 0x40, 0x09, {}, {}, 0x6A82},
      {"LIST_FILES ok", Ins::kListFiles, 0, 0, {}, {}, kOk},
      {"SHA256 ok", Ins::kSha256, 0, 0, {1, 2, 3}, {}, kOk},
      {"COUNTER ok", Ins::kCounter, 0, 1, {}, {}, kOk},
      {"COUNTER bad id", Ins::kCounter, 9, 0, {}, {}, 0x6A86},
      {"AUTHENTICATE ok", Ins::kAuthenticate, 1, 0, {'1', '2', '3', '4'}, {}, kOk},
      {"AUTHENTICATE bad method", Ins::kAuthenticate, 9, 0, {}, {}, 0x6A86},
      {"IMPORT_KEY too short", Ins::kImportKey, 1, 0, Bytes(10, 0), {}, 0x6700},
      {"IMPORT_KEY garbage", Ins::kImportKey, 1, 0, Bytes(120, 0x04), {}, 0x6A80},
      {"AES on an EC slot", Ins::kAes, 0, 0, Bytes(14, 0), {}, 0x6985},
      {"SET_LIFECYCLE ok", Ins::kSetLifecycle, 2, 0, {}, {}, kOk},
      {"SET_LIFECYCLE backwards", Ins::kSetLifecycle, 2, 0, {}, {}, 0x6985},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Send(c.ins, c.p1, c.p2, c.data, c.le).sw, c.expected) << c.name;
  }
  // SHA256 computes SHA-256.
  EXPECT_EQ(Send(Ins::kSha256, 0, 0, Bytes{'a', 'b', 'c'}).data, crypto::Sha256(AsBytes("abc")));
}

TEST_F(ChipTest, TruncatedOrRolledBackImageIsTamper) {
  Bytes v1 = *ReadFile(image_);
  ASSERT_EQ(Send(Ins::kCounter, 0, 1).sw, kOk);  // version 2
  Bytes v2 = *ReadFile(image_);
  chip_.reset();
  ASSERT_TRUE(WriteFileAtomic(image_, Bytes(v2.begin(), v2.end() - 7)).ok());
  EXPECT_TRUE(SecureElement::Open(image_).value()->tampered());
  ASSERT_TRUE(WriteFileAtomic(image_, v1).ok());  // an older, authentic image
  EXPECT_TRUE(SecureElement::Open(image_).value()->tampered());
  ASSERT_TRUE(WriteFileAtomic(image_, v2).ok());
  EXPECT_FALSE(SecureElement::Open(image_).value()->tampered());
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

// seed "VaultIC": a PIN guess is paid for before it is judged. A host that
// cuts power on the first sign of the answer learns nothing for free.
TEST_F(ChipTest, PowerCutDuringAPinCheckNeverGivesAFreeGuess) {
  for (int cut : {9, 10}) {  // just before / just after the spent try is committed
    chip_.reset();
    int saves = 0;
    auto chip = SecureElement::Open(image_, nullptr, [&saves, cut](int step) {
      if (step == 1) ++saves;
      return !(saves == 1 && step == cut);  // cut the first save only
    });
    ASSERT_TRUE(chip.ok());
    chip_ = std::move(chip).value();
    // The right PIN: the answer carries no verdict when the power goes.
    auto r = Send(Ins::kAuthenticate, 0x01, 0, Bytes{'1', '2', '3', '4'});
    EXPECT_EQ(r.sw, 0x6F00) << "cut " << cut;
    Reboot();
    int tries = Send(Ins::kGetInfo).data[1 + Send(Ins::kGetInfo).data[0] + 4];
    // Cut before the commit: nothing spent, nothing learned. After: the try is spent.
    EXPECT_EQ(tries, cut == 9 ? kPinTries : kPinTries - 1) << "cut " << cut;
    Login();  // and the PIN still works, restoring the tries
  }
}

TEST_F(ChipTest, DaemonSessionsDoNotShareALogin) {
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 0, 0x01 | 0x80).sw, kOk);
  SecureElement::Session alice;
  SecureElement::Session bob;
  chip_->UseSession(&alice);
  Login();
  EXPECT_EQ(Send(Ins::kSign, 0, 0, Bytes(32, 1)).sw, kOk);
  chip_->UseSession(&bob);
  EXPECT_EQ(Send(Ins::kSign, 0, 0, Bytes(32, 1)).sw, 0x6982);
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, kVolatileSlot, 0x01).sw, kOk);
  chip_->UseSession(&alice);
  EXPECT_EQ(Send(Ins::kReadPublicKey, kVolatileSlot).sw, 0x6A82);  // bob's volatile key is bob's
  chip_->UseSession(nullptr);
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

TEST_F(ChipTest, OnceOperationalKeysAreMadeOrReplacedOnlyWithThePin) {
  ASSERT_EQ(Send(Ins::kGenerateKeyPair, 0, 0x01).sw, kOk);
  ASSERT_EQ(Send(Ins::kSetLifecycle, 3).sw, kOk);
  EXPECT_EQ(Send(Ins::kGenerateKeyPair, 0, 0x01).sw, 0x6982);  // the identity key stays
  EXPECT_EQ(Send(Ins::kGenerateKeyPair, 1, 0x01).sw, 0x6982);
  EXPECT_EQ(Send(Ins::kGenerateKeyPair, kVolatileSlot, 0x01).sw,
            kOk);  // ephemeral keys need no PIN
  Login();
  EXPECT_EQ(Send(Ins::kGenerateKeyPair, 1, 0x01).sw, kOk);
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

// A write fault before the commit point leaves the counter as it was; one
// after it leaves it incremented; either way the running chip says what the
// disk says, and a power-up agrees.
TEST_F(ChipTest, ChipFollowsItsNvmAfterAFailedWrite) {
  for (int cut : {3, 11}) {
    chip_.reset();
    chip_ = SecureElement::Open(image_, nullptr, [cut](int step) { return step != cut; }).value();
    Bytes before = Send(Ins::kCounter, 0, 0).data;
    EXPECT_EQ(Send(Ins::kCounter, 0, 1).sw, 0x6F00) << "cut " << cut;
    Bytes running = Send(Ins::kCounter, 0, 0).data;
    Reboot();
    EXPECT_EQ(Send(Ins::kCounter, 0, 0).data, running) << "cut " << cut;
    EXPECT_EQ(running == before, cut == 3) << "cut " << cut;
  }
}

TEST_F(ChipTest, TerminationSealsUnderAFreshChipKey) {
  Bytes fuse_before = *ReadFile(image_ + ".fuse");
  Login();
  ASSERT_EQ(Send(Ins::kSetLifecycle, 4).sw, kOk);
  Bytes fuse_after = *ReadFile(image_ + ".fuse");
  EXPECT_NE(Bytes(fuse_before.begin() + 5, fuse_before.begin() + 37),
            Bytes(fuse_after.begin() + 5, fuse_after.begin() + 37));
  Reboot();
  EXPECT_FALSE(chip_->tampered());
  EXPECT_EQ(Send(Ins::kSign, 0, 0, Bytes(32, 1)).sw, 0x6985);
}

}  // namespace
}  // namespace devid::se

namespace devid::se {
namespace {

TEST_F(ChipTest, TransportKeyIsMadeOnFirstUseAndKept) {
  auto first = Send(Ins::kReadPublicKey, 0xFE);
  ASSERT_EQ(first.sw, kOk);
  ASSERT_EQ(first.data.size(), 66u);
  EXPECT_EQ(first.data[0], 0x01);
  EXPECT_EQ(Send(Ins::kReadPublicKey, 0xFE).data, first.data);
  Reboot();  // stored in NVM, not only in memory
  EXPECT_EQ(Send(Ins::kReadPublicKey, 0xFE).data, first.data);
}

TEST_F(ChipTest, NoTransportKeyIsMadeOnceThePersonalisationIsOver) {
  ASSERT_EQ(Send(Ins::kSetLifecycle, 2).sw, kOk);
  ASSERT_EQ(Send(Ins::kSetLifecycle, 3).sw, kOk);
  EXPECT_EQ(Send(Ins::kReadPublicKey, 0xFE).sw, 0x6985);
}

}  // namespace
}  // namespace devid::se
