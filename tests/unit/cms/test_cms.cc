// The CMS's own pieces: passwords, tokens, the audit chain (tampering of
// every kind is found), and the PKCS#7/CMS containers the API returns.
#include <gtest/gtest.h>

#include <filesystem>

#include "ca/hierarchy.h"
#include "cms/api.h"
#include "cms/audit.h"
#include "cms/auth.h"
#include "cms/password.h"
#include "core/bytes.h"
#include "core/time.h"
#include "crypto/pkcs7.h"

namespace devid::cms {
namespace {

class CmsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("devid-cms-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "db").string();
    store_ = std::move(store::OpenStore(path_)).value();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Runs SQL on the database behind the store's back (what an attacker with
  // the file could do).
  void Tamper(const std::string& sql) {
    ASSERT_EQ(std::system(("sqlite3 " + path_ + " \"" + sql + "\"").c_str()), 0);
  }
  void Append(int n) {
    for (int i = 0; i < n; ++i) {
      auto r = AppendAudit(*store_, {std::nullopt, "user:test", "certificate.issue",
                                     "certificate:" + std::to_string(i), "ok", ""});
      ASSERT_TRUE(r.ok()) << r.error().message;
      EXPECT_EQ(r->seq, i + 1);
    }
  }
  AuditVerification Verify() {
    auto v = VerifyAuditChain(*store_);
    EXPECT_TRUE(v.ok()) << v.error().message;
    return v.ok() ? *v : AuditVerification{};
  }

  std::filesystem::path dir_;
  std::string path_;
  std::unique_ptr<store::Store> store_;
};

TEST(Password, HashesWithArgon2idAndVerifies) {
  auto hash = HashPassword("correct horse battery");
  ASSERT_TRUE(hash.ok()) << hash.error().message;
  EXPECT_TRUE(hash->starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
  EXPECT_TRUE(VerifyPassword("correct horse battery", *hash));
  EXPECT_FALSE(VerifyPassword("correct horse batterz", *hash));
  EXPECT_NE(*hash, *HashPassword("correct horse battery"));  // a fresh salt each time
  EXPECT_FALSE(HashPassword("short").ok());
  EXPECT_FALSE(VerifyPassword("anything at all", "$argon2i$not-our-scheme"));
  EXPECT_FALSE(VerifyPassword("anything at all", "garbage"));
}

TEST_F(CmsTest, AuditChainIsIntactAfterAppends) {
  Append(5);
  AuditVerification v = Verify();
  EXPECT_TRUE(v.ok);
  EXPECT_EQ(v.records, 5);
}

TEST_F(CmsTest, AuditChainReportsAnEditedRecord) {
  Append(5);
  Tamper("UPDATE audit SET detail = 'nothing happened' WHERE seq = 3");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_broken_seq, 3);
  EXPECT_NE(v.problem.find("changed"), std::string::npos) << v.problem;
}

TEST_F(CmsTest, AuditChainReportsAnEditRecomputedWithItsHash) {
  Append(5);
  // Whoever edits record 3 and recomputes its hash still breaks record 4's link.
  auto records = *store_->ListAudit(std::nullopt, 0, 10);
  store::AuditRecord forged = records[2];
  forged.detail = "forged";
  forged.hash = AuditLinkHash(forged);
  Tamper("UPDATE audit SET detail = 'forged', hash = '" + forged.hash + "' WHERE seq = 3");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_broken_seq, 4);
}

TEST_F(CmsTest, AuditChainReportsADeletedRecord) {
  Append(5);
  Tamper("DELETE FROM audit WHERE seq = 2");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_broken_seq, 2);
  EXPECT_NE(v.problem.find("missing"), std::string::npos) << v.problem;
}

TEST_F(CmsTest, AuditChainReportsRemovedTail) {
  Append(5);
  Tamper("DELETE FROM audit WHERE seq >= 4");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_broken_seq, 4);
  EXPECT_NE(v.problem.find("removed"), std::string::npos) << v.problem;
}

TEST_F(CmsTest, AuditChainReportsReorderedRecords) {
  Append(5);
  // Swap the contents of records 2 and 3 (their places in the chain).
  Tamper(
      "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; "
      "UPDATE audit SET seq = 3 WHERE seq = -2");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_broken_seq, 2);
}

TEST_F(CmsTest, LoginGivesASessionTokenThatAuthenticates) {
  auto org = *store_->CreateOrganization("acme");
  ASSERT_TRUE(
      store_->CreateUser({"alice", *HashPassword("alice-password-1"), org.id, "operator"}).ok());
  Authenticator auth(*store_);
  EXPECT_EQ(auth.Login("alice", "wrong-password-1").error().code, ErrorCode::kAuth);
  EXPECT_EQ(auth.Login("nobody", "alice-password-1").error().code, ErrorCode::kAuth);
  auto session = auth.Login("alice", "alice-password-1");
  ASSERT_TRUE(session.ok()) << session.error().message;
  EXPECT_TRUE(session->secret.starts_with("devid_"));
  auto p = auth.Authenticate(session->secret, NowUnix());
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->role, Role::kOperator);
  EXPECT_EQ(p->org_id, org.id);
  EXPECT_EQ(p->actor, "user:alice");
  // Only the hash is stored.
  EXPECT_TRUE(store_->FindToken(AsBytes(session->secret)).error().code == ErrorCode::kNotFound);
  // Expired at its end of life, and at once when revoked.
  EXPECT_FALSE(auth.Authenticate(session->secret, *session->record.expires_at).ok());
  ASSERT_TRUE(store_->RevokeToken(org.id, session->record.id, NowUnix()).ok());
  EXPECT_FALSE(auth.Authenticate(session->secret, NowUnix()).ok());
}

TEST_F(CmsTest, DisabledUserLosesItsSession) {
  auto org = *store_->CreateOrganization("acme");
  auto user = *store_->CreateUser({"bob", *HashPassword("bob-password-12"), org.id, "auditor"});
  Authenticator auth(*store_);
  auto session = *auth.Login("bob", "bob-password-12");
  ASSERT_TRUE(store_->SetUserDisabled(org.id, user.id, true).ok());
  EXPECT_FALSE(auth.Authenticate(session.secret, NowUnix()).ok());
  EXPECT_FALSE(auth.Login("bob", "bob-password-12").ok());
}

TEST_F(CmsTest, ApiTokensAreScopedAndNeverSystemWide) {
  auto org = *store_->CreateOrganization("acme");
  Authenticator auth(*store_);
  EXPECT_FALSE(auth.CreateApiToken(org.id, Role::kSystemAdmin, "x", std::nullopt).ok());
  auto token = auth.CreateApiToken(org.id, Role::kEnrollment, "line 3", std::nullopt);
  ASSERT_TRUE(token.ok());
  auto p = *auth.Authenticate(token->secret, NowUnix());
  EXPECT_EQ(p.role, Role::kEnrollment);
  EXPECT_EQ(p.org_id, org.id);
  // A forged token of the right shape, and malformed ones.
  std::string forged = "devid_" + std::string(64, 'A');
  EXPECT_FALSE(auth.Authenticate(forged, NowUnix()).ok());
  EXPECT_FALSE(auth.Authenticate(token->secret + "0", NowUnix()).ok());
  EXPECT_FALSE(auth.Authenticate("", NowUnix()).ok());
}

TEST(Roles, EnrollmentOnlyEnrolsAndAuditorOnlyReads) {
  EXPECT_TRUE(RoleAllows(Role::kEnrollment, Action::kCertificateIssue));
  EXPECT_FALSE(RoleAllows(Role::kEnrollment, Action::kCertificateRead));
  EXPECT_FALSE(RoleAllows(Role::kAuditor, Action::kCertificateIssue));
  EXPECT_TRUE(RoleAllows(Role::kAuditor, Action::kAuditRead));
  EXPECT_FALSE(RoleAllows(Role::kOperator, Action::kAuditRead));
  EXPECT_FALSE(RoleAllows(Role::kOrgAdmin, Action::kOrgCreate));
  EXPECT_TRUE(RoleAllows(Role::kSystemAdmin, Action::kOrgCreate));
}

TEST(Containers, CertsOnlyPkcs7AndEnvelopeRoundTrip) {
  auto key = *crypto::PrivateKey::Generate(crypto::KeyType::kEcP256);
  auto subject = *crypto::DistinguishedName::Parse("CN=site");
  // A self-signed recipient certificate for the envelope.
  auto dir = std::filesystem::temp_directory_path() / ("devid-cms-c-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto db = *store::OpenStore((dir / "db").string());
  ca::Hierarchy h(*db, ca::KeyProtection{});
  ASSERT_TRUE(h.InitRoot("o", {"CN=Root", crypto::KeyType::kEcP256, {}, "", ""}).ok());
  auto root = *h.Unlock("o", "root");
  auto profile = *h.FindProfile("device");
  auto issued = *root.IssueForKey(profile, key, subject, {});

  // The API armours stored DER itself: the same text OpenSSL writes.
  EXPECT_EQ(PemEncode("CERTIFICATE", *issued.certificate.ToDer()), *issued.certificate.ToPem());

  auto p7 = crypto::MakeCertsOnlyPkcs7({issued.certificate, root.certificate()});
  ASSERT_TRUE(p7.ok()) << p7.error().message;
  auto back = crypto::ParseCertsOnlyPkcs7(*p7);
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0].SerialHex(), issued.certificate.SerialHex());
  Bytes trailing = *p7;
  trailing.push_back(0);
  EXPECT_FALSE(crypto::ParseCertsOnlyPkcs7(trailing).ok());

  std::string secret = "-----BEGIN PRIVATE KEY-----\nsealed\n-----END PRIVATE KEY-----\n";
  auto envelope = crypto::MakeEnvelope({issued.certificate}, AsBytes(secret));
  ASSERT_TRUE(envelope.ok()) << envelope.error().message;
  auto opened = crypto::OpenEnvelope(*envelope, key, issued.certificate);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(std::string(opened->data(), opened->size()), secret);
  auto other = *crypto::PrivateKey::Generate(crypto::KeyType::kEcP256);
  EXPECT_FALSE(crypto::OpenEnvelope(*envelope, other, issued.certificate).ok());
  db.reset();
  std::filesystem::remove_all(dir);
}

TEST(Bytes, Base64EncodeRoundTripsAndWrapsLines) {
  Bytes data;
  for (int i = 0; i < 100; ++i) data.push_back(static_cast<uint8_t>(i * 7));
  std::string text = Base64Encode(data, 64);
  EXPECT_EQ(text.find('\n'), 64u);
  std::string compact;
  for (char c : text) {
    if (c != '\n') compact.push_back(c);
  }
  EXPECT_EQ(*Base64Decode(compact), data);
  EXPECT_EQ(Base64Encode(AsBytes("f")), "Zg==");
  EXPECT_EQ(Base64Encode(AsBytes("fo")), "Zm8=");
  EXPECT_EQ(Base64Encode(AsBytes("foo")), "Zm9v");
}

}  // namespace
}  // namespace devid::cms
