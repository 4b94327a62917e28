#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "core/time.h"
#include "crypto/name.h"
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

TEST_F(StoreTest, RevocationStatusIsReadByCaAndSerialWithinTheOrganization) {
  auto org = *store_->CreateOrganization("acme");
  auto evil = *store_->CreateOrganization("evil");
  CaRecord a = MakeCa(org.id, "a");
  CaRecord b = MakeCa(org.id, "b");
  auto live = *store_->InsertCertificate(org.id, Cert(a.id, "AB"));
  auto doomed = *store_->InsertCertificate(org.id, Cert(b.id, "AB"));
  auto status = *store_->FindRevocationStatus(org.id, a.id, "AB");
  EXPECT_TRUE(status.known);
  EXPECT_FALSE(status.revocation);
  ASSERT_TRUE(store_->Revoke(org.id, doomed.id, {4, 1234}).ok());
  // Only b's certificate of that serial is revoked; a's stays good.
  status = *store_->FindRevocationStatus(org.id, b.id, "AB");
  EXPECT_TRUE(status.known);
  ASSERT_TRUE(status.revocation);
  EXPECT_EQ(status.revocation->reason, 4);
  EXPECT_EQ(status.revocation->revoked_at, 1234);
  EXPECT_FALSE(store_->FindRevocationStatus(org.id, a.id, "AB")->revocation);
  EXPECT_FALSE(store_->FindRevocationStatus(org.id, a.id, "AC")->known);
  EXPECT_FALSE(store_->FindRevocationStatus(evil.id, a.id, "AB")->known);
  EXPECT_EQ(live.ca_id, a.id);
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

// Serials of certificates, in id order.
std::vector<std::string> Serials(const std::vector<CertificateRecord>& certs) {
  std::vector<std::string> out;
  for (const auto& c : certs) out.push_back(c.serial_hex);
  return out;
}

TEST(SubjectCommonName, ReadsTheFirstCnAsDistinguishedNameWritesIt) {
  EXPECT_EQ(SubjectCommonName("CN=dev-1"), "dev-1");
  EXPECT_EQ(SubjectCommonName("O=Acme, CN=dev-1, OU=x"), "dev-1");
  EXPECT_EQ(SubjectCommonName("CN=dev-1, CN=dev-2"), "dev-1");
  EXPECT_EQ(SubjectCommonName("O=Acme, serialNumber=dev-1"), std::nullopt);
  EXPECT_EQ(SubjectCommonName("OU=CN\\=dev-1"), std::nullopt);
  EXPECT_EQ(SubjectCommonName("CN=a\\, b\\\\c\\+d\\=e"), "a, b\\c+d=e");
  EXPECT_EQ(SubjectCommonName(" CN = \\ edge\\  , O=x"), " edge ");
  // What DistinguishedName::Parse refuses does not hide the CN beside it.
  EXPECT_EQ(SubjectCommonName("1.3.6.1.4.1.99999.1=x, CN=dev-1"), "dev-1");
  EXPECT_EQ(SubjectCommonName("DC=, CN=dev-1"), "dev-1");
  EXPECT_EQ(SubjectCommonName(""), std::nullopt);
  EXPECT_EQ(SubjectCommonName("CN="), std::nullopt);
  // The store's reading agrees with the crypto module's on what it writes.
  for (const char* text : {"CN=Device\\, one,O=Acme, C=CH", "O=Acme,CN=\\ a\\\\b\\+c\\=d\\ ",
                           "commonName=x=y, CN=second", "serialNumber=7, CN=dev #1 <&>"}) {
    auto dn = crypto::DistinguishedName::Parse(text);
    ASSERT_TRUE(dn.ok()) << dn.error().message;
    std::optional<std::string> first;
    for (const auto& a : dn->attributes()) {
      if (a.type == "CN" && !first) first = a.value;
    }
    EXPECT_EQ(SubjectCommonName(dn->ToString()), first) << dn->ToString();
  }
}

TEST_F(StoreTest, CommonNameFilterFindsTheWholeNameOnly) {
  auto acme = *store_->CreateOrganization("acme");
  auto evil = *store_->CreateOrganization("evil");
  CaRecord ca = MakeCa(acme.id, "ica");
  CaRecord evil_ca = MakeCa(evil.id, "ica");
  auto with = [&](const std::string& serial, const std::string& subject, int64_t not_after) {
    NewCertificate c = Cert(ca.id, serial, not_after);
    c.subject = subject;
    return c;
  };
  ASSERT_TRUE(
      store_
          ->InsertCertificates(
              acme.id, {with("A1", "CN=dev-1", 4000000000), with("A2", "CN=dev-10", 4000000000),
                        with("A3", "CN=my-dev-1", 4000000000),
                        with("A4", "O=Acme, CN=dev-1, OU=line 3", 4000000000),
                        with("A5", "CN=x, O=dev-1", 4000000000),
                        with("A6", "CN=dev-1\\, rack 2", 4000000000), with("A7", "CN=dev-1", 50),
                        with("A8", "CN=other, CN=dev-1", 4000000000)})
          .ok());
  auto other = Cert(evil_ca.id, "E1");
  other.subject = "CN=dev-1";
  auto in_evil = *store_->InsertCertificate(evil.id, other);

  CertificateFilter f;
  f.common_name = "dev-1";
  EXPECT_EQ(Serials(*store_->ListCertificates(acme.id, f)),
            (std::vector<std::string>{"A1", "A4", "A7"}));
  f.status = CertificateStatus::kValid;
  EXPECT_EQ(Serials(*store_->ListCertificates(acme.id, f)), (std::vector<std::string>{"A1", "A4"}));
  f.status = CertificateStatus::kAny;
  f.common_name = "dev-1, rack 2";  // as the certificate has it, unescaped
  EXPECT_EQ(Serials(*store_->ListCertificates(acme.id, f)), std::vector<std::string>{"A6"});
  f.common_name = "dev";
  EXPECT_TRUE(store_->ListCertificates(acme.id, f)->empty());
  f.common_name = "dev-1";
  auto theirs = *store_->ListCertificates(evil.id, f);
  ASSERT_EQ(theirs.size(), 1u);
  EXPECT_EQ(theirs[0].id, in_evil.id);
}

// A database left at the schema before certificates.common_name, written the
// way that version wrote it; the store that opens it must fill the column in.
TEST_F(StoreTest, OpeningAnOlderDatabaseFillsInTheCommonNames) {
  store_.reset();
  std::string path = (dir_ / "old.db").string();
  std::string sql;
  for (size_t i = 0; i < kCommonNameMigration; ++i) sql += MigrationSql(i, Dialect::kSqlite);
  sql += R"sql(
INSERT INTO organizations (name, created_at) VALUES ('acme', 0);
INSERT INTO cas (org_id, name, kind, certificate_der, key_pem, key_encrypted, created_at)
  SELECT id, 'ica', 'ica', X'01', 'key', 1, 0 FROM organizations;
INSERT INTO certificates (org_id, ca_id, serial_hex, subject, template, not_before, not_after,
                          der, created_at)
  SELECT org_id, id, 'B1', 'CN=dev-1', 'device', 0, 4000000000, X'09', 0 FROM cas
  UNION ALL SELECT org_id, id, 'B2', 'O=Acme, CN=dev\,1', 'device', 0, 4000000000, X'09', 0 FROM cas
  UNION ALL SELECT org_id, id, 'B3', 'O=Acme', 'device', 0, 4000000000, X'09', 0 FROM cas;
-- More than a page of the backfill.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
INSERT INTO certificates (org_id, ca_id, serial_hex, subject, template, not_before, not_after,
                          der, created_at)
  SELECT cas.org_id, cas.id, 'C' || i, 'CN=bulk-' || i, 'device', 0, 4000000000, X'09', 0
  FROM n, cas;
)sql";
  sql += "PRAGMA user_version = " + std::to_string(kCommonNameMigration) + ";\n";
  std::string script = (dir_ / "old.sql").string();
  {
    std::ofstream out(script);
    out << sql;
  }
  ASSERT_EQ(std::system(("sqlite3 " + path + " < " + script).c_str()), 0);

  auto opened = OpenStore(path);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  Store& store = **opened;
  EXPECT_EQ(store.schema_version(), static_cast<int>(SchemaMigrations().size()));
  auto org = *store.GetOrganization("acme");
  auto find = [&](const std::string& cn) {
    CertificateFilter f;
    f.common_name = cn;
    return Serials(*store.ListCertificates(org.id, f));
  };
  EXPECT_EQ(find("dev-1"), std::vector<std::string>{"B1"});
  EXPECT_EQ(find("dev,1"), std::vector<std::string>{"B2"});
  EXPECT_EQ(find("bulk-1"), std::vector<std::string>{"C1"});
  EXPECT_EQ(find("bulk-1001"), std::vector<std::string>{"C1001"});
  EXPECT_EQ(find("bulk-2500"), std::vector<std::string>{"C2500"});
  // Every row was seen: each bulk name once, and B3 has none to find.
  CertificateFilter all;
  all.limit = 5000;
  size_t named = 0;
  auto everything = *store.ListCertificates(org.id, all);
  for (const auto& c : everything) {
    if (c.serial_hex[0] == 'C') named += find(c.subject.substr(3)).size();
  }
  EXPECT_EQ(named, 2500u);
  // An older devid still running on the migrated database (a rolling upgrade)
  // records certificates without a common_name: a search by name finds them
  // by their subject all the same, and only those that carry the name.
  ASSERT_EQ(
      std::system(("sqlite3 " + path +
                   " \"INSERT INTO certificates (org_id, ca_id, serial_hex, subject, template,"
                   " not_before, not_after, der, created_at) SELECT org_id, id, 'D7',"
                   " 'O=Acme, CN=dev-7', 'device', 0, 4000000000, X'09', 0 FROM cas\"")
                      .c_str()),
      0);
  EXPECT_EQ(find("dev-7"), std::vector<std::string>{"D7"});
  EXPECT_EQ(find("dev-70"), std::vector<std::string>{});
  EXPECT_EQ(find("dev-1"), std::vector<std::string>{"B1"});
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
