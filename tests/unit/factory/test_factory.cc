#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "ca/hierarchy.h"
#include "ca/profile.h"
#include "core/file.h"
#include "crypto/pkcs7.h"
#include "factory/factory.h"
#include "se/host/client.h"

namespace devid::factory {
namespace {

using crypto::Certificate;
using crypto::DistinguishedName;
using crypto::KeyType;
using crypto::PrivateKey;

TEST(FactoryNames, SubjectsExpandEveryPlaceholder) {
  EXPECT_EQ(ExpandSubject("CN=dev-{n},serialNumber={n}", 42), "CN=dev-42,serialNumber=42");
  EXPECT_EQ(ExpandSubject("CN=fixed", 7), "CN=fixed");
}

TEST(FactoryNames, DeviceIdIsTheCnAndMustBeAFileName) {
  EXPECT_EQ(*DeviceIdOf("CN=dev-1,O=Acme"), "dev-1");
  EXPECT_EQ(*DeviceIdOf("O=Acme,CN=a.b_c"), "a.b_c");
  EXPECT_EQ(DeviceIdOf("O=Acme").error().code, ErrorCode::kInvalidInput);
  EXPECT_EQ(DeviceIdOf("CN=../etc").error().code, ErrorCode::kInvalidInput);
  EXPECT_EQ(DeviceIdOf("CN=dev 1").error().code, ErrorCode::kInvalidInput);
  EXPECT_EQ(DeviceIdOf("CN=" + std::string(65, 'a')).error().code, ErrorCode::kInvalidInput);
}

// A CMS-made bundle as the batches endpoint builds it, opened here as a site would.
class FactoryBundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("devid-factory-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "templates");
    store_ =
        std::move(store::OpenStore((dir_ / "db").string(), store::Durability::kNormal)).value();
    hierarchy_ = std::make_unique<ca::Hierarchy>(*store_, ca::KeyProtection{SecretString("pass")},
                                                 ca::ProfileCatalog((dir_ / "templates").string()));
    ASSERT_TRUE(
        hierarchy_->InitRoot("acme", {"CN=Acme Root,O=Acme", KeyType::kEcP256, {}, "", ""}).ok());
    ASSERT_TRUE(hierarchy_
                    ->InitIssuing("acme", "devices",
                                  {"CN=Acme Devices,O=Acme", KeyType::kEcP256, {}, "", ""})
                    .ok());
    chain_ = std::move(hierarchy_->Chain("acme", "devices")).value();
    site_key_.emplace(std::move(PrivateKey::Generate(KeyType::kEcP256)).value());
    site_cert_.emplace(Issue({&*site_key_}, "site").front());
    options_.out_dir = (dir_ / "chips").string();
  }
  void TearDown() override {
    hierarchy_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::vector<Certificate> Issue(const std::vector<const PrivateKey*>& keys,
                                 const std::string& prefix, int start = 1) {
    auto ca = hierarchy_->Unlock("acme", "devices");
    EXPECT_TRUE(ca.ok());
    std::vector<ca::SigningCa::BatchItem> items;
    for (size_t i = 0; i < keys.size(); ++i) {
      items.push_back({keys[i],
                       *DistinguishedName::Parse(ExpandSubject("CN=" + prefix + "-{n},O=Acme",
                                                               start + static_cast<int>(i))),
                       {}});
    }
    auto certs = ca->IssueBatch(*hierarchy_->FindProfile("device"), items);
    EXPECT_TRUE(certs.ok()) << certs.error().message;
    return std::move(certs).value();
  }

  // Each key before its certificate, then the chain; sealed for the site.
  Bytes Bundle(int count, int start = 1, bool swap_keys = false) {
    std::vector<PrivateKey> keys;
    for (int i = 0; i < count; ++i) keys.push_back(*PrivateKey::Generate(KeyType::kEcP256));
    std::vector<const PrivateKey*> ptrs;
    for (const auto& k : keys) ptrs.push_back(&k);
    std::vector<Certificate> certs = Issue(ptrs, "dev", start);
    std::string text;
    for (int i = 0; i < count; ++i) {
      int key_index = swap_keys ? (i + 1) % count : i;
      text += *keys[key_index].ToPkcs8Pem(nullptr);
      text += *certs[i].ToPem();
    }
    for (const auto& c : chain_) text += *c.ToPem();
    return *crypto::MakeEnvelope({*site_cert_}, AsBytes(text));
  }

  Result<PersonalisationReport> Personalize(ByteView bundle) {
    return PersonalizeFromBundle(bundle, *site_key_, *site_cert_, options_);
  }
  std::string Image(const std::string& id) { return options_.out_dir + "/" + id + ".img"; }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ca::Hierarchy> hierarchy_;
  std::vector<Certificate> chain_;
  std::optional<PrivateKey> site_key_;
  std::optional<Certificate> site_cert_;
  PersonalisationOptions options_;
};

TEST_F(FactoryBundleTest, ChipsAreOperationalWithKeyChainAndCaKey) {
  Bytes bundle = Bundle(2);
  auto report = Personalize(bundle);
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->chips.size(), 2u);
  EXPECT_EQ(report->made, 2);
  for (const auto& entry : report->chips) {
    auto chip = se::ChipClient::Open(Image(entry.device_id), "");
    ASSERT_TRUE(chip.ok()) << chip.error().message;
    EXPECT_EQ(chip->GetInfo()->lifecycle, se::Lifecycle::kOperational);
    EXPECT_EQ(chip->GetInfo()->serial, entry.chip_serial);
    auto c001 = chip->ReadFile(se::kCertificateChainFile);
    ASSERT_TRUE(c001.ok());
    auto certs = Certificate::ParsePemChain(*c001);
    ASSERT_TRUE(certs.ok());
    ASSERT_EQ(certs->size(), 2u);
    EXPECT_EQ((*certs)[0].SerialHex(), entry.certificate_serial);
    EXPECT_EQ(*(*certs)[0].FingerprintSha256(), entry.fingerprint_sha256);
    EXPECT_EQ(*(*certs)[1].ToDer(), *chain_.front().ToDer());
    // The imported key is the certificate's.
    auto slot0 = chip->ReadPublicKey(0);
    ASSERT_TRUE(slot0.ok());
    EXPECT_EQ(slot0->second, (*certs)[0].public_key()->EcPoint()->second);
    // CA01: the issuing CA's key, as VERIFY_SIGNATURE reads it.
    EXPECT_EQ(*chip->ReadFile(se::kCaPublicKeyFile),
              *se::KeyFileContent(*chain_.front().public_key()));
    // Used without a PIN (the device signs on its own).
    Bytes digest(32, 0x11);
    EXPECT_TRUE(chip->Sign(0, digest).ok());
  }
  auto manifest = nlohmann::json::parse(AsString(*ReadFile(options_.out_dir + "/manifest.json")));
  EXPECT_EQ(manifest["chips"].size(), 2u);
  EXPECT_EQ(manifest["chips"][1]["device_id"], "dev-2");
  EXPECT_EQ(std::filesystem::status(options_.out_dir + "/pins.json").permissions() &
                std::filesystem::perms::group_read,
            std::filesystem::perms::none);
}

TEST_F(FactoryBundleTest, WrongSiteKeyWritesNothing) {
  Bytes bundle = Bundle(1);
  PrivateKey other = *PrivateKey::Generate(KeyType::kEcP256);
  auto report = PersonalizeFromBundle(bundle, other, *site_cert_, options_);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().code, ErrorCode::kAuth);
  EXPECT_FALSE(std::filesystem::exists(options_.out_dir));
}

TEST_F(FactoryBundleTest, DamagedBundleWritesNothing) {
  Bytes bundle = Bundle(1);
  bundle[bundle.size() / 2] ^= 0xFF;
  EXPECT_FALSE(Personalize(bundle).ok());
  EXPECT_FALSE(std::filesystem::exists(options_.out_dir));
}

TEST_F(FactoryBundleTest, KeyThatIsNotTheCertificatesIsRefused) {
  auto report = Personalize(Bundle(2, 1, true));
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().code, ErrorCode::kVerification);
  EXPECT_FALSE(std::filesystem::exists(options_.out_dir));
}

TEST_F(FactoryBundleTest, InterruptedRunResumesAndRedoesTheHalfMadeChip) {
  Bytes bundle = Bundle(3);
  options_.fault.stop_after_chips = 1;
  auto first = Personalize(bundle);
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.error().message.find("fault-injection"), std::string::npos);
  std::string serial1 = se::ChipClient::Open(Image("dev-1"), "")->GetInfo()->serial;
  EXPECT_EQ(se::ChipClient::Open(Image("dev-2"), "")->GetInfo()->lifecycle,
            se::Lifecycle::kPersonalised);
  EXPECT_FALSE(std::filesystem::exists(Image("dev-3")));
  EXPECT_FALSE(std::filesystem::exists(options_.out_dir + "/manifest.json"));

  options_.fault = {};
  auto second = Personalize(bundle);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second->already_done, 1);
  EXPECT_EQ(second->made, 2);
  EXPECT_EQ(second->chips[0].chip_serial, serial1);  // the done chip was not touched
  for (const char* id : {"dev-1", "dev-2", "dev-3"}) {
    EXPECT_EQ(se::ChipClient::Open(Image(id), "")->GetInfo()->lifecycle,
              se::Lifecycle::kOperational)
        << id;
  }
}

TEST_F(FactoryBundleTest, FolderOfAnotherOrderIsRefused) {
  ASSERT_TRUE(Personalize(Bundle(1)).ok());
  auto other = Personalize(Bundle(1, 5));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kAlreadyExists);
  EXPECT_FALSE(std::filesystem::exists(Image("dev-5")));
}

TEST_F(FactoryBundleTest, AnotherManufacturerKeyOnResumeIsRefused) {
  Bytes bundle = Bundle(2);
  options_.fault.stop_after_chips = 1;
  ASSERT_FALSE(Personalize(bundle).ok());
  options_.fault = {};
  options_.manufacturer_key = SecretBytes(Bytes(32, 0x42));
  auto again = Personalize(bundle);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kAuth);
}

}  // namespace
}  // namespace devid::factory
