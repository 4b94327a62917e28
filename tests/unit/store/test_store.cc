#include <gtest/gtest.h>

#include <filesystem>

#include "core/time.h"
#include "store/migrations.h"
#include "store/store.h"

namespace devid::store {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("devid-store-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = OpenStore("sqlite:" + (dir_ / "db").string());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).value();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  CaRecord MakeCa(int64_t org_id, const std::string& name) {
    NewCa ca{name, CaKind::kRoot, std::nullopt, Bytes{1, 2, 3}, "key", true, "", ""};
    // The CA's own record uses serial "01" under itself.
    NewCertificate self{0, "01", "CN=" + name, "root", 0, 4000000000, Bytes{1, 2, 3}};
    auto r = store_->CreateCa(org_id, ca, self);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return std::move(r).value();
  }

  NewCertificate Cert(int64_t ca_id, const std::string& serial, int64_t not_after = 4000000000) {
    return NewCertificate{ca_id, serial, "CN=x", "device", 0, not_after, Bytes{9}};
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, MigratesToLatestVersionAndReopens) {
  EXPECT_EQ(store_->schema_version(), static_cast<int>(SchemaMigrations().size()));
  store_.reset();
  auto again = OpenStore((dir_ / "db").string());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->schema_version(), static_cast<int>(SchemaMigrations().size()));
}

TEST_F(StoreTest, OrganizationNamesAreUnique) {
  ASSERT_TRUE(store_->CreateOrganization("acme").ok());
  EXPECT_EQ(store_->CreateOrganization("acme").error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(store_->GetOrganization("nope").error().code, ErrorCode::kNotFound);
}

TEST_F(StoreTest, SerialIsUniquePerCaByConstraint) {
  auto org = *store_->CreateOrganization("acme");
  CaRecord a = MakeCa(org.id, "a");
  CaRecord b = MakeCa(org.id, "b");
  ASSERT_TRUE(store_->InsertCertificate(org.id, Cert(a.id, "AA")).ok());
  EXPECT_EQ(store_->InsertCertificate(org.id, Cert(a.id, "AA")).error().code,
            ErrorCode::kAlreadyExists);
  // The same serial under another CA is allowed.
  EXPECT_TRUE(store_->InsertCertificate(org.id, Cert(b.id, "AA")).ok());
  EXPECT_EQ(store_->FindCertificatesBySerial(org.id, "AA")->size(), 2u);
}

TEST_F(StoreTest, OrganizationsCannotReachEachOthersRows) {
  auto acme = *store_->CreateOrganization("acme");
  auto evil = *store_->CreateOrganization("evil");
  CaRecord ca = MakeCa(acme.id, "ica");
  // Inserting under another organization's CA is refused.
  EXPECT_EQ(store_->InsertCertificate(evil.id, Cert(ca.id, "01")).error().code,
            ErrorCode::kNotFound);
  auto rec = *store_->InsertCertificate(acme.id, Cert(ca.id, "02"));
  EXPECT_TRUE(store_->FindCertificatesBySerial(evil.id, "02")->empty());
  EXPECT_EQ(store_->GetCa(evil.id, "ica").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetCaById(evil.id, ca.id).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->Revoke(evil.id, rec.id, {1, 5}).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->NextCrl(evil.id, ca.id).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(store_->ListCertificates(evil.id, {})->empty());
}

TEST_F(StoreTest, BatchInsertIsAllOrNothing) {
  auto org = *store_->CreateOrganization("acme");
  CaRecord ca = MakeCa(org.id, "ica");
  ASSERT_TRUE(store_->InsertCertificate(org.id, Cert(ca.id, "23")).ok());
  auto r =
      store_->InsertCertificates(org.id, {Cert(ca.id, "21"), Cert(ca.id, "22"), Cert(ca.id, "23")});
  EXPECT_EQ(r.error().code, ErrorCode::kAlreadyExists);
  EXPECT_TRUE(store_->FindCertificatesBySerial(org.id, "21")->empty());
  EXPECT_TRUE(store_->InsertCertificates(org.id, {Cert(ca.id, "21"), Cert(ca.id, "22")}).ok());
  EXPECT_EQ(store_->FindCertificatesBySerial(org.id, "22")->size(), 1u);
}

TEST_F(StoreTest, RevocationsFilterAndCrlNumbers) {
  auto org = *store_->CreateOrganization("acme");
  CaRecord ca = MakeCa(org.id, "ica");
  auto live = *store_->InsertCertificate(org.id, Cert(ca.id, "11"));
  auto doomed = *store_->InsertCertificate(org.id, Cert(ca.id, "12"));
  ASSERT_TRUE(store_->InsertCertificate(org.id, Cert(ca.id, "13", 50)).ok());  // expired
  ASSERT_TRUE(store_->Revoke(org.id, doomed.id, {1, 1234}).ok());
  EXPECT_EQ(store_->Revoke(org.id, doomed.id, {1, 1234}).error().code, ErrorCode::kAlreadyExists);
  auto crl = *store_->NextCrl(org.id, ca.id);
  EXPECT_EQ(crl.number, 1u);
  auto revoked = crl.revoked;
  ASSERT_EQ(revoked.size(), 1u);
  EXPECT_EQ(revoked[0].serial_hex, "12");
  EXPECT_EQ(revoked[0].reason, 1);

  CertificateFilter f;
  f.ca_id = ca.id;
  f.status = CertificateStatus::kRevoked;
  EXPECT_EQ(store_->ListCertificates(org.id, f)->size(), 1u);
  f.status = CertificateStatus::kExpired;
  auto expired = *store_->ListCertificates(org.id, f);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].serial_hex, "13");
  f.status = CertificateStatus::kValid;
  auto valid = *store_->ListCertificates(org.id, f);
  ASSERT_EQ(valid.size(), 2u);  // the CA's own record and live
  EXPECT_EQ(valid[1].id, live.id);
  f = {};
  f.expires_before = 60;
  EXPECT_EQ(store_->ListCertificates(org.id, f)->size(), 1u);

  EXPECT_EQ(store_->NextCrl(org.id, ca.id)->number, 2u);
  EXPECT_EQ(store_->NextCrl(org.id, ca.id)->revoked.size(), 1u);
}

TEST_F(StoreTest, CaNamesAreUniquePerOrganizationAndCreationIsAtomic) {
  auto org = *store_->CreateOrganization("acme");
  MakeCa(org.id, "ica");
  NewCa dup{"ica", CaKind::kRoot, std::nullopt, Bytes{1}, "k", true, "", ""};
  EXPECT_EQ(store_->CreateCa(org.id, dup, Cert(0, "77")).error().code, ErrorCode::kAlreadyExists);
  // The failed creation left no certificate behind.
  EXPECT_TRUE(store_->FindCertificatesBySerial(org.id, "77")->empty());
  EXPECT_EQ(store_->ListCas(org.id)->size(), 1u);
}

TEST(StoreOpen, RefusesNewerSchemaAndUnreachableServer) {
  auto dir =
      std::filesystem::temp_directory_path() / ("devid-store-v-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "db").string();
  { ASSERT_TRUE(OpenStore(path).ok()); }
  ASSERT_EQ(std::system(("sqlite3 " + path + " 'PRAGMA user_version=999'").c_str()), 0);
  auto r = OpenStore(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("newer"), std::string::npos);
  // Port 1 has no PostgreSQL server: a clear storage error, not a crash.
  auto unreachable = OpenStore("postgresql://devid@127.0.0.1:1/devid?connect_timeout=2");
  ASSERT_FALSE(unreachable.ok());
  EXPECT_EQ(unreachable.error().code, ErrorCode::kStorage);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace devid::store
