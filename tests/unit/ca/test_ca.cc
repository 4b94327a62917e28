#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ca/hierarchy.h"
#include "ca/profile.h"
#include "core/time.h"
#include "crypto/ocsp.h"
#include "crypto/verify.h"

namespace devid::ca {
namespace {

using crypto::DistinguishedName;
using crypto::GeneralName;
using crypto::KeyType;
using crypto::PrivateKey;

class CaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("devid-ca-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "templates");
    store_ =
        std::move(store::OpenStore((dir_ / "db").string(), store::Durability::kNormal)).value();
    hierarchy_ = std::make_unique<Hierarchy>(*store_, KeyProtection{SecretString("pass")},
                                             ProfileCatalog((dir_ / "templates").string()));
    auto root = hierarchy_->InitRoot(
        "acme", {"CN=Acme Root,O=Acme", KeyType::kEcP256, {}, "http://crl/{org}/{ca}.crl", ""});
    ASSERT_TRUE(root.ok()) << root.error().message;
    auto ica = hierarchy_->InitIssuing("acme", "devices",
                                       {"CN=Acme Devices,O=Acme",
                                        KeyType::kEcP256,
                                        {},
                                        "http://crl/{org}/{ca}.crl",
                                        "http://ocsp/{org}/{ca}"});
    ASSERT_TRUE(ica.ok()) << ica.error().message;
  }
  void TearDown() override {
    hierarchy_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  crypto::CertificateRequest Csr(const std::string& subject, KeyType type = KeyType::kEcP256,
                                 std::vector<GeneralName> sans = {}) {
    PrivateKey k = std::move(PrivateKey::Generate(type)).value();
    return std::move(crypto::MakeCertificateRequest(k, *DistinguishedName::Parse(subject), sans))
        .value();
  }

  size_t CertificateCount() {
    return store_->ListCertificates(store_->GetOrganization("acme")->id, {})->size();
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Hierarchy> hierarchy_;
};

TEST(Profiles, BuiltinsExistAndRoundTripThroughJson) {
  ProfileCatalog catalog;
  for (const char* name : {"root", "ica", "device", "server"}) {
    auto p = catalog.Find(name);
    ASSERT_TRUE(p.ok()) << name;
    auto again = CertificateProfile::FromJson(p->ToJson());
    ASSERT_TRUE(again.ok()) << again.error().message;
    EXPECT_EQ(again->ToJson(), p->ToJson());
  }
  auto device = *catalog.Find("device");
  EXPECT_EQ(device.extended_key_usage, std::vector<std::string>{"clientAuth"});
  EXPECT_EQ(catalog.Find("nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(catalog.Find("../etc/passwd").error().code, ErrorCode::kNotFound);
}

TEST_F(CaTest, ShortLivedTemplatesIssueMinutesWithoutBackdating) {
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto profile = CertificateProfile::FromJson(
      R"({"name":"short","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN","O"]},)"
      R"("validity_days":1,"validity_minutes":2,"key_usage":["digitalSignature"],)"
      R"("extended_key_usage":["clientAuth"]})");
  ASSERT_TRUE(profile.ok()) << profile.error().message;
  auto again = CertificateProfile::FromJson(profile->ToJson());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->validity_minutes, 2);
  auto issued = ica.Issue(*profile, Csr("CN=short"));
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(issued->certificate.not_after() - issued->certificate.not_before(), 120);
  IssueOptions opts;
  opts.days = 1;  // a request that names days gets days
  auto days = ica.Issue(*profile, Csr("CN=short-days"), opts);
  ASSERT_TRUE(days.ok());
  EXPECT_NEAR(static_cast<double>(days->certificate.not_after() - days->certificate.not_before()),
              86400.0 + 60, 5);
}

TEST(Profiles, InvalidTemplatesAreRejectedWithReasons) {
  const char* bad[] = {
      "not json",
      "[]",
      R"({"name":"x"})",
      R"({"name":"x","key_types":["P-521"],"subject":{"required":["CN"],"allowed":["CN"]},"validity_days":1,"key_usage":["digitalSignature"]})",
      R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["O"]},"validity_days":1,"key_usage":["digitalSignature"]})",
      R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"]},"validity_days":0,"key_usage":["digitalSignature"]})",
      R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"]},"validity_days":1,"key_usage":["keyCertSign"]})",
      R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"]},"validity_days":1,"key_usage":["digitalSignature"],"path_len":1})",
      R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"]},"validity_days":1,"key_usage":["digitalSignature"],"typo":1})",
      R"({"name":"X Y","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"]},"validity_days":1,"key_usage":["digitalSignature"]})",
      R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"]},"validity_days":1,"validity_minutes":1441,"key_usage":["digitalSignature"]})",
      R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"]},"validity_days":1,"validity_minutes":0,"key_usage":["digitalSignature"]})",
  };
  for (const char* text : bad) {
    auto p = CertificateProfile::FromJson(text);
    EXPECT_FALSE(p.ok()) << text;
    if (!p.ok()) {
      EXPECT_EQ(p.error().code, ErrorCode::kInvalidInput) << p.error().message;
    }
  }
}

TEST_F(CaTest, IssuedDeviceCertificateFollowsTemplateAndVerifies) {
  auto ica = hierarchy_->Unlock("acme", "devices");
  ASSERT_TRUE(ica.ok()) << ica.error().message;
  auto profile = *hierarchy_->FindProfile("device");
  IssueOptions opts;
  opts.extra_sans.push_back(*GeneralName::Parse("hardwareModuleName:1.3.6.1.4.1.99999.1:0102"));
  auto issued = ica->Issue(
      profile, Csr("CN=dev-1,O=Acme", KeyType::kEcP256, {*GeneralName::Parse("uri:urn:dev:1")}),
      opts);
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  const crypto::Certificate& cert = issued->certificate;
  // 128-bit positive serial, recorded in the store.
  EXPECT_EQ(cert.SerialHex().size(), 32u);
  EXPECT_LT(std::stoi(cert.SerialHex().substr(0, 1), nullptr, 16), 8);
  auto found = store_->FindCertificatesBySerial(issued->record.org_id, cert.SerialHex());
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].der, *cert.ToDer());
  EXPECT_EQ((*found)[0].template_name, "device");
  // SANs from the CSR and the options.
  auto sans = *cert.SubjectAltNames();
  ASSERT_EQ(sans.size(), 2u);
  EXPECT_EQ(sans[1].kind, GeneralName::Kind::kHardwareModuleName);
  // Validity within the issuer's, as the template says.
  EXPECT_LE(cert.not_after(), ica->certificate().not_after());
  EXPECT_NEAR(static_cast<double>(cert.not_after() - cert.not_before()), 1095.0 * 86400 + 60, 5);
  auto chain = *hierarchy_->Chain("acme", "devices");
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_TRUE(crypto::VerifyChain(cert, {chain[0]}, {chain[1]}, {}, {}).ok());
}

TEST_F(CaTest, ValidityIsClampedToTheIssuer) {
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto profile = *hierarchy_->FindProfile("device");
  IssueOptions opts;
  opts.days = 7000;  // allowed by the template, longer than the ICA's 3650 days
  auto issued = ica.Issue(profile, Csr("CN=long"), opts);
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(issued->certificate.not_after(), ica.certificate().not_after());
  opts.days = 7301;  // beyond the template's maximum
  EXPECT_EQ(ica.Issue(profile, Csr("CN=longer"), opts).error().code, ErrorCode::kPolicy);
}

TEST_F(CaTest, PolicyViolationsAreRefusedAndRecordNothing) {
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto device = *hierarchy_->FindProfile("device");
  auto server = *hierarchy_->FindProfile("server");
  size_t before = CertificateCount();
  EXPECT_EQ(ica.Issue(device, Csr("CN=rsa", KeyType::kRsa3072)).error().code, ErrorCode::kPolicy);
  EXPECT_EQ(ica.Issue(device, Csr("O=no-cn")).error().code, ErrorCode::kPolicy);
  EXPECT_EQ(ica.Issue(device, Csr("CN=x,L=Geneva")).error().code, ErrorCode::kPolicy);
  EXPECT_EQ(ica.Issue(device, Csr("CN=x", KeyType::kEcP256, {*GeneralName::Parse("ip:10.0.0.1")}))
                .error()
                .code,
            ErrorCode::kPolicy);
  EXPECT_EQ(ica.Issue(server, Csr("CN=server-without-san")).error().code, ErrorCode::kPolicy);
  EXPECT_EQ(CertificateCount(), before);
  // And a valid server request passes with RSA-3072.
  EXPECT_TRUE(
      ica.Issue(server, Csr("CN=s", KeyType::kRsa3072, {*GeneralName::Parse("dns:s.example")}))
          .ok());
  EXPECT_EQ(CertificateCount(), before + 1);
}

TEST_F(CaTest, WrongOrMissingPassphraseCannotUnlock) {
  Hierarchy wrong(*store_, KeyProtection{SecretString("nope")});
  auto r = wrong.Unlock("acme", "devices");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kAuth);
  EXPECT_NE(r.error().message.find("wrong passphrase"), std::string::npos);
  Hierarchy none(*store_, KeyProtection{});
  EXPECT_EQ(none.Unlock("acme", "devices").error().code, ErrorCode::kAuth);
  EXPECT_EQ(none.InitIssuing("acme", "other", {"CN=o", KeyType::kEcP256, {}, "", ""}).error().code,
            ErrorCode::kAuth);
  EXPECT_EQ(store_->ListCas(store_->GetOrganization("acme")->id)->size(), 2u);
}

TEST_F(CaTest, MissingOrganizationsAndCasAreNotFound) {
  EXPECT_EQ(hierarchy_->Unlock("nobody", "devices").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(hierarchy_->Unlock("acme", "nothing").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(
      hierarchy_->InitIssuing("nobody", "x", {"CN=x", KeyType::kEcP256, {}, "", ""}).error().code,
      ErrorCode::kNotFound);
  EXPECT_EQ(hierarchy_->InitRoot("acme", {"CN=again", KeyType::kEcP256, {}, "", ""}).error().code,
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(hierarchy_->InitIssuing("acme", "devices", {"CN=dup", KeyType::kEcP256, {}, "", ""})
                .error()
                .code,
            ErrorCode::kAlreadyExists);
}

TEST_F(CaTest, RevocationAppearsInTheNextNumberedCrl) {
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto profile = *hierarchy_->FindProfile("device");
  auto issued = *ica.Issue(profile, Csr("CN=dev-2"));
  auto crl1 = ica.MakeCrl();
  ASSERT_TRUE(crl1.ok()) << crl1.error().message;
  EXPECT_EQ(crl1->revoked_count(), 0u);
  EXPECT_EQ(
      hierarchy_->Revoke("acme", "FFFF", crypto::RevocationReason::kKeyCompromise).error().code,
      ErrorCode::kNotFound);
  // Lower-case and leading zeros name the same serial.
  auto revoked = hierarchy_->Revoke("acme", "00" + issued.record.serial_hex,
                                    crypto::RevocationReason::kKeyCompromise);
  ASSERT_TRUE(revoked.ok()) << revoked.error().message;
  EXPECT_EQ(
      hierarchy_->Revoke("acme", issued.record.serial_hex, crypto::RevocationReason::kSuperseded)
          .error()
          .code,
      ErrorCode::kAlreadyExists);
  auto crl2 = *ica.MakeCrl();
  EXPECT_EQ(crl2.revoked_count(), 1u);
  EXPECT_EQ(crl1->NumberHex(), "01");
  EXPECT_EQ(crl2.NumberHex(), "02");
  auto root = hierarchy_->Unlock("acme", "root").value();
  auto root_crl = *root.MakeCrl();
  auto chain = *hierarchy_->Chain("acme", "devices");
  crypto::VerifyOptions with_crl;
  with_crl.check_crls = true;
  auto r =
      crypto::VerifyChain(issued.certificate, {chain[0]}, {chain[1]}, {crl2, root_crl}, with_crl);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("revoked"), std::string::npos);
}

TEST_F(CaTest, PreparedOcspResponderShowsARevocationAtOnce) {
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto root = hierarchy_->Unlock("acme", "root").value();
  auto profile = *hierarchy_->FindProfile("device");
  auto issued = *ica.Issue(profile, Csr("CN=dev-ocsp"));
  auto other = *ica.Issue(profile, Csr("CN=dev-ocsp-2"));
  int64_t now = NowUnix();
  auto answer = [&](const Bytes& request, const crypto::Certificate& issuer, bool* cacheable) {
    auto der = ica.RespondOcsp(request, now, cacheable);
    EXPECT_TRUE(der.ok());
    auto read = crypto::ReadOcspResponse(*der, request, issuer);
    EXPECT_TRUE(read.ok()) << read.error().message;
    EXPECT_EQ(read.ok() ? read->size() : 0u, 1u);
    return read.ok() && read->size() == 1 ? (*read)[0] : crypto::OcspAnswer{};
  };
  auto request = *crypto::MakeOcspRequestFor(issued.certificate, ica.certificate());
  bool cacheable = true;
  EXPECT_EQ(answer(request, ica.certificate(), &cacheable).status, crypto::OcspStatus::kGood);
  EXPECT_FALSE(cacheable);  // a nonce: signed afresh (and echoed: ReadOcspResponse checks)

  // The responder was prepared before the revocation; the store still decides.
  ASSERT_TRUE(
      hierarchy_->Revoke("acme", issued.record.serial_hex, crypto::RevocationReason::kKeyCompromise)
          .ok());
  auto revoked = answer(request, ica.certificate(), nullptr);
  EXPECT_EQ(revoked.status, crypto::OcspStatus::kRevoked);
  EXPECT_EQ(revoked.reason, 1);
  EXPECT_LE(std::abs(revoked.revoked_at - NowUnix()), 5);
  ASSERT_TRUE(
      hierarchy_->Revoke("acme", other.record.serial_hex, crypto::RevocationReason::kUnspecified)
          .ok());
  auto unspecified = *crypto::MakeOcspRequestFor(other.certificate, ica.certificate(), false);
  auto plain = answer(unspecified, ica.certificate(), &cacheable);
  EXPECT_EQ(plain.status, crypto::OcspStatus::kRevoked);
  EXPECT_EQ(plain.reason, 0);
  EXPECT_TRUE(cacheable);  // RFC 5019: no nonce

  // A CertID of another issuer is unknown here, not good.
  auto foreign = *crypto::MakeOcspRequestFor(ica.certificate(), root.certificate());
  EXPECT_EQ(answer(foreign, ica.certificate(), nullptr).status, crypto::OcspStatus::kUnknown);
  // Signed by the CA itself: the root's key does not verify it.
  auto response = *ica.RespondOcsp(request, now);
  EXPECT_FALSE(crypto::ReadOcspResponse(response, request, root.certificate()).ok());
  response[response.size() - 3] ^= 0x01;  // inside the signature
  EXPECT_FALSE(crypto::ReadOcspResponse(response, request, ica.certificate()).ok());
  // Bytes that are no request get the malformedRequest answer.
  auto malformed = ica.RespondOcsp(Bytes{0x30, 0x03, 0x02, 0x01, 0x01}, now);
  ASSERT_TRUE(malformed.ok());
  EXPECT_EQ(*malformed, crypto::OcspErrorResponse(crypto::OcspError::kMalformedRequest));
}

TEST_F(CaTest, CustomTemplateFromHomeFolder) {
  std::ofstream(dir_ / "templates" / "sensor.json")
      << R"({"name":"sensor","key_types":["P-384"],"subject":{"required":["CN","serialNumber"],"allowed":["CN","serialNumber"]},
             "san":{"allowed":["hardwareModuleName"]},"validity_days":30,"key_usage":["digitalSignature"],
             "extended_key_usage":["clientAuth"]})";
  auto p = hierarchy_->FindProfile("sensor");
  ASSERT_TRUE(p.ok()) << p.error().message;
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  EXPECT_EQ(ica.Issue(*p, Csr("CN=s1,serialNumber=42")).error().code,
            ErrorCode::kPolicy);  // P-256 refused
  auto ok = ica.Issue(*p, Csr("CN=s1,serialNumber=42", KeyType::kEcP384));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_NEAR(static_cast<double>(ok->certificate.not_after() - ok->certificate.not_before()),
              30.0 * 86400 + 60, 5);
}

TEST_F(CaTest, IssueForKeyGeneratedOnTheCaSide) {
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto profile = *hierarchy_->FindProfile("device");
  PrivateKey key = *PrivateKey::Generate(KeyType::kEcP384);
  auto issued = ica.IssueForKey(profile, key, *DistinguishedName::Parse("CN=batch-1"), {});
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(*issued->certificate.public_key()->ToDer(), *key.PublicKeyDer());
}

}  // namespace
}  // namespace devid::ca

namespace devid::ca {
namespace {

TEST_F(CaTest, FailedRootCreationLeavesNoOrganization) {
  EXPECT_FALSE(hierarchy_->InitRoot("newco", {"bogus", KeyType::kEcP256, {}, "", ""}).ok());
  EXPECT_FALSE(hierarchy_->InitRoot("newco", {"CN=x", KeyType::kEcP256, 99999, "", ""}).ok());
  EXPECT_EQ(store_->GetOrganization("newco").error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(hierarchy_->InitRoot("newco", {"CN=Newco Root", KeyType::kEcP384, {}, "", ""}).ok());
  EXPECT_TRUE(store_->GetOrganization("newco").ok());
}

TEST_F(CaTest, RevokedIssuingCaCannotIssue) {
  auto chain = *hierarchy_->Chain("acme", "devices");
  ASSERT_TRUE(
      hierarchy_->Revoke("acme", chain[0].SerialHex(), crypto::RevocationReason::kCaCompromise)
          .ok());
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto issued = ica.Issue(*hierarchy_->FindProfile("device"), Csr("CN=late"));
  ASSERT_FALSE(issued.ok());
  EXPECT_EQ(issued.error().code, ErrorCode::kPolicy);
  EXPECT_NE(issued.error().message.find("disabled"), std::string::npos);
  // The root still issues CRLs, and its CRL lists the ICA.
  auto root = hierarchy_->Unlock("acme", "root").value();
  EXPECT_EQ(root.MakeCrl()->revoked_count(), 1u);
}

TEST_F(CaTest, RootCertificateCannotBeRevoked) {
  auto chain = *hierarchy_->Chain("acme", "root");
  EXPECT_EQ(
      hierarchy_->Revoke("acme", chain[0].SerialHex(), crypto::RevocationReason::kKeyCompromise)
          .error()
          .code,
      ErrorCode::kPolicy);
}

}  // namespace
}  // namespace devid::ca

namespace devid::ca {
namespace {

TEST_F(CaTest, CaTemplatesCannotBeUsedForIssuance) {
  auto root = hierarchy_->Unlock("acme", "root").value();
  for (const char* name : {"root", "ica"}) {
    auto r = root.Issue(*hierarchy_->FindProfile(name), Csr("CN=sneaky sub-CA"));
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error().code, ErrorCode::kPolicy);
  }
}

}  // namespace
}  // namespace devid::ca

namespace devid::ca {
namespace {

TEST_F(CaTest, TemplatePatternsRuleOnValues) {
  std::ofstream(dir_ / "templates" / "fleet.json") << R"({"name":"fleet","key_types":["P-256"],
             "subject":{"required":["CN"],"allowed":["CN","O"],"patterns":{"CN":"device-[0-9]{4}","O":"Acme"}},
             "san":{"allowed":["uri","hardwareModuleName"],
                    "patterns":{"uri":"urn:acme:device:[0-9]{4}","hardwareModuleName":"1\\.3\\.6\\.1\\.4\\.1\\.99999\\.1:[0-9A-F]+"}},
             "validity_days":30,"key_usage":["digitalSignature"],"extended_key_usage":["clientAuth"]})";
  auto p = hierarchy_->FindProfile("fleet");
  ASSERT_TRUE(p.ok()) << p.error().message;
  auto round_trip = CertificateProfile::FromJson(p->ToJson());
  ASSERT_TRUE(round_trip.ok());
  EXPECT_EQ(round_trip->subject_patterns.at("CN").source, "device-[0-9]{4}");
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  EXPECT_TRUE(ica.Issue(*p, Csr("CN=device-0001,O=Acme")).ok());
  EXPECT_EQ(ica.Issue(*p, Csr("CN=device-1,O=Acme")).error().code, ErrorCode::kPolicy);
  EXPECT_EQ(ica.Issue(*p, Csr("CN=device-0002,O=Evil")).error().code, ErrorCode::kPolicy);
  EXPECT_TRUE(
      ica.Issue(*p, Csr("CN=device-0003", KeyType::kEcP256,
                        {*GeneralName::Parse("uri:urn:acme:device:0003"),
                         *GeneralName::Parse("hardwareModuleName:1.3.6.1.4.1.99999.1:0A0B")}))
          .ok());
  EXPECT_EQ(ica.Issue(*p, Csr("CN=device-0004", KeyType::kEcP256,
                              {*GeneralName::Parse("uri:urn:evil:0004")}))
                .error()
                .code,
            ErrorCode::kPolicy);
  EXPECT_EQ(ica.Issue(*p, Csr("CN=device-0005", KeyType::kEcP256,
                              {*GeneralName::Parse("hardwareModuleName:1.3.6.1.4.1.66666.1:0A")}))
                .error()
                .code,
            ErrorCode::kPolicy);
  // Patterns for kinds or attributes the template does not allow, and bad regexes, are refused.
  EXPECT_FALSE(
      CertificateProfile::FromJson(
          R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"],"patterns":{"O":"a"}},"validity_days":1,"key_usage":["digitalSignature"]})")
          .ok());
  EXPECT_FALSE(
      CertificateProfile::FromJson(
          R"({"name":"x","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"],"patterns":{"CN":"("}},"validity_days":1,"key_usage":["digitalSignature"]})")
          .ok());
}

TEST_F(CaTest, ServerTemplateRefusesWildcardDnsNames) {
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto server = *hierarchy_->FindProfile("server");
  EXPECT_TRUE(
      ica.Issue(server, Csr("CN=api", KeyType::kEcP256, {*GeneralName::Parse("dns:api.acme.test")}))
          .ok());
  EXPECT_EQ(
      ica.Issue(server, Csr("CN=any", KeyType::kEcP256, {*GeneralName::Parse("dns:*.acme.test")}))
          .error()
          .code,
      ErrorCode::kPolicy);
}

}  // namespace
}  // namespace devid::ca

namespace devid::ca {
namespace {

std::string TemplateWithCnPattern(const std::string& pattern) {
  return R"({"name":"p","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"],"patterns":{"CN":")" +
         pattern + R"("}},"validity_days":1,"key_usage":["digitalSignature"]})";
}

TEST_F(CaTest, CatastrophicPatternsRunInBoundedTime) {
  // Exponential for a backtracking matcher; linear for the polynomial one devid uses.
  auto p = CertificateProfile::FromJson(TemplateWithCnPattern("(a*)*b"));
  ASSERT_TRUE(p.ok()) << p.error().message;
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(p->CheckSubject(*DistinguishedName::Parse("CN=" + std::string(60, 'a'))).ok());
  // Generous bound: a backtracking matcher takes hours on this input.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // Back-references (not polynomial), deep nesting and huge patterns are refused when loading.
  EXPECT_FALSE(CertificateProfile::FromJson(TemplateWithCnPattern("(a)\\\\1")).ok());
  EXPECT_FALSE(CertificateProfile::FromJson(
                   TemplateWithCnPattern(std::string(40, '(') + "a" + std::string(40, ')')))
                   .ok());
  EXPECT_FALSE(CertificateProfile::FromJson(TemplateWithCnPattern(std::string(600, 'a'))).ok());
}

TEST_F(CaTest, ServerTemplateRefusesWildcardCommonName) {
  auto ica = hierarchy_->Unlock("acme", "devices").value();
  auto server = *hierarchy_->FindProfile("server");
  // OpenSSL's host check falls back to the CN when no DNS SAN is present.
  auto r = ica.Issue(
      server, Csr("CN=*.bank.example", KeyType::kEcP256, {*GeneralName::Parse("ip:192.0.2.1")}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kPolicy);
}

TEST(GeneralNames, HardwareModuleNameOidIsCanonical) {
  auto gn = GeneralName::Parse("hardwareModuleName:1.3.6.1.4.1.099999.1:0a0b");
  ASSERT_TRUE(gn.ok()) << gn.error().message;
  EXPECT_EQ(gn->value, "1.3.6.1.4.1.99999.1");
  EXPECT_EQ(gn->ToString(), "hardwareModuleName:1.3.6.1.4.1.99999.1:0A0B");
}

}  // namespace
}  // namespace devid::ca
