#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/time.h"
#include "crypto/aead.h"
#include "crypto/certificate.h"
#include "crypto/crl.h"
#include "crypto/csr.h"
#include "crypto/key.h"
#include "crypto/name.h"
#include "crypto/ocsp.h"
#include "crypto/tls.h"
#include "crypto/verify.h"

namespace devid::crypto {
namespace {

DistinguishedName Dn(std::string_view s) {
  auto r = DistinguishedName::Parse(s);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return std::move(r).value();
}

PrivateKey Key(KeyType t = KeyType::kEcP256) { return std::move(PrivateKey::Generate(t)).value(); }

struct Ca {
  PrivateKey key;
  Certificate cert;
};

Ca MakeRoot(KeyType t = KeyType::kEcP256) {
  PrivateKey key = Key(t);
  CertificateBuilder b;
  EXPECT_TRUE(b.SetSerial(Bytes{0x01, 0x02}).ok());
  EXPECT_TRUE(b.SetSubject(Dn("CN=Test Root,O=Test")).ok());
  EXPECT_TRUE(b.SetSelfIssued().ok());
  int64_t now = NowUnix();
  EXPECT_TRUE(b.SetValidity(now - 60, now + 86400).ok());
  EXPECT_TRUE(b.SetPublicKey(key).ok());
  EXPECT_TRUE(b.AddBasicConstraints(true, std::nullopt).ok());
  EXPECT_TRUE(b.AddKeyUsage({KeyUsageBit::kKeyCertSign, KeyUsageBit::kCrlSign}).ok());
  auto cert = b.Sign(key);
  EXPECT_TRUE(cert.ok()) << cert.error().message;
  return Ca{std::move(key), std::move(cert).value()};
}

Certificate IssueLeaf(const Ca& ca, const CertificateRequest& csr, Bytes serial) {
  CertificateBuilder b;
  EXPECT_TRUE(b.SetSerial(serial).ok());
  EXPECT_TRUE(b.SetSubject(*csr.subject()).ok());
  EXPECT_TRUE(b.SetIssuer(ca.cert).ok());
  int64_t now = NowUnix();
  EXPECT_TRUE(b.SetValidity(now - 60, now + 3600).ok());
  EXPECT_TRUE(b.SetPublicKey(csr).ok());
  EXPECT_TRUE(b.AddBasicConstraints(false, std::nullopt).ok());
  EXPECT_TRUE(b.AddKeyUsage({KeyUsageBit::kDigitalSignature}).ok());
  EXPECT_TRUE(b.AddExtendedKeyUsage({"clientAuth"}).ok());
  auto cert = b.Sign(ca.key);
  EXPECT_TRUE(cert.ok()) << cert.error().message;
  return std::move(cert).value();
}

TEST(Keys, GenerateDescribeAndRoundTripEncryptedPkcs8) {
  for (KeyType t : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa3072}) {
    PrivateKey k = Key(t);
    EXPECT_EQ(k.algorithm().name, KeyTypeName(t));
    SecretString pass("correct horse");
    auto pem = k.ToPkcs8Pem(&pass);
    ASSERT_TRUE(pem.ok());
    EXPECT_NE(pem->find("ENCRYPTED PRIVATE KEY"), std::string::npos);
    auto back = PrivateKey::FromPem(*pem, &pass);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(*back->PublicKeyDer(), *k.PublicKeyDer());
  }
}

TEST(Keys, WrongOrMissingPassphraseIsAnAuthError) {
  PrivateKey k = Key();
  SecretString pass("right");
  SecretString wrong("wrong");
  std::string pem = *k.ToPkcs8Pem(&pass);
  EXPECT_EQ(PrivateKey::FromPem(pem, &wrong).error().code, ErrorCode::kAuth);
  EXPECT_EQ(PrivateKey::FromPem(pem, nullptr).error().code, ErrorCode::kAuth);
  std::string clear = *k.ToPkcs8Pem(nullptr);
  EXPECT_NE(clear.find("BEGIN PRIVATE KEY"), std::string::npos);
  EXPECT_TRUE(PrivateKey::FromPem(clear, nullptr).ok());
}

TEST(Keys, PublicKeyDerRoundTrip) {
  PrivateKey k = Key(KeyType::kEcP384);
  auto pub = PublicKey::FromDer(*k.PublicKeyDer());
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->algorithm().name, "P-384");
  Bytes der = *k.PublicKeyDer();
  der.push_back(0);
  EXPECT_EQ(PublicKey::FromDer(der).error().code, ErrorCode::kInvalidInput);
}

TEST(Names, ParseEscapesAndRejects) {
  auto dn = DistinguishedName::Parse("CN=Device\\, one,O=Acme, C=CH");
  ASSERT_TRUE(dn.ok()) << dn.error().message;
  ASSERT_EQ(dn->attributes().size(), 3u);
  EXPECT_EQ(dn->attributes()[0].value, "Device, one");
  EXPECT_EQ(dn->attributes()[2].type, "C");
  EXPECT_EQ(dn->ToString(), "CN=Device\\, one, O=Acme, C=CH");
  EXPECT_FALSE(DistinguishedName::Parse("").ok());
  EXPECT_FALSE(DistinguishedName::Parse("CN").ok());
  EXPECT_FALSE(DistinguishedName::Parse("XX=1").ok());
  EXPECT_FALSE(DistinguishedName::Parse("C=Switzerland").ok());  // C is two letters
  EXPECT_EQ(*CanonicalAttributeType("commonName"), "CN");
}

TEST(Names, GeneralNamesRoundTripIncludingHardwareModuleName) {
  std::vector<GeneralName> sans = {
      *GeneralName::Parse("dns:device.example"),
      *GeneralName::Parse("uri:urn:dev:1"),
      *GeneralName::Parse("ip:192.0.2.1"),
      *GeneralName::Parse("hardwareModuleName:1.3.6.1.4.1.99999.1:0A0B0C"),
  };
  auto gns = ToGeneralNames(sans);
  ASSERT_TRUE(gns.ok()) << gns.error().message;
  auto back = FromGeneralNames(gns->get());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, sans);
  EXPECT_EQ(sans[3].ToString(), "hardwareModuleName:1.3.6.1.4.1.99999.1:0A0B0C");
  EXPECT_FALSE(GeneralName::Parse("ip:not-an-ip").ok());
  EXPECT_FALSE(GeneralName::Parse("foo:bar").ok());
  EXPECT_FALSE(GeneralName::Parse("hardwareModuleName:notanoid:00").ok());
}

TEST(Csr, ParsesPemAndDerAndChecksProofOfPossession) {
  PrivateKey k = Key();
  auto csr =
      MakeCertificateRequest(k, Dn("CN=dev-1,O=Acme"), {*GeneralName::Parse("dns:dev-1.example")});
  ASSERT_TRUE(csr.ok()) << csr.error().message;
  Bytes der = csr->der();
  auto parsed = CertificateRequest::Parse(der);
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->VerifyProofOfPossession().ok());
  EXPECT_EQ(parsed->key_algorithm().name, "P-256");
  EXPECT_EQ(parsed->subject()->ToString(), "CN=dev-1, O=Acme");
  auto sans = parsed->RequestedSubjectAltNames();
  ASSERT_TRUE(sans.ok());
  ASSERT_EQ(sans->size(), 1u);
  EXPECT_EQ((*sans)[0].value, "dev-1.example");

  // The last byte is inside the signature: it still parses, and must not verify.
  Bytes tampered = der;
  tampered.back() ^= 0x01;
  auto bad = CertificateRequest::Parse(tampered);
  ASSERT_TRUE(bad.ok());
  auto pop = bad->VerifyProofOfPossession();
  ASSERT_FALSE(pop.ok());
  EXPECT_EQ(pop.error().code, ErrorCode::kVerification);
}

TEST(Csr, RejectsTruncatedGarbageAndTrailingBytes) {
  PrivateKey k = Key();
  Bytes der = MakeCertificateRequest(k, Dn("CN=x"), {})->der();
  Bytes truncated(der.begin(), der.begin() + static_cast<long>(der.size() / 2));
  EXPECT_EQ(CertificateRequest::Parse(truncated).error().code, ErrorCode::kInvalidInput);
  EXPECT_EQ(CertificateRequest::Parse(AsBytes("garbage garbage")).error().code,
            ErrorCode::kInvalidInput);
  EXPECT_EQ(CertificateRequest::Parse(AsBytes("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n"))
                .error()
                .code,
            ErrorCode::kInvalidInput);
  Bytes trailing = der;
  trailing.push_back(0x00);
  EXPECT_EQ(CertificateRequest::Parse(trailing).error().code, ErrorCode::kInvalidInput);
  EXPECT_EQ(CertificateRequest::Parse(Bytes{}).error().code, ErrorCode::kInvalidInput);
}

TEST(Certificate, BuilderCopiesCsrKeyAndChainVerifiesStrictly) {
  Ca root = MakeRoot();
  EXPECT_TRUE(root.cert.is_ca());
  PrivateKey k = Key();
  auto csr = MakeCertificateRequest(k, Dn("CN=dev-1"), {});
  ASSERT_TRUE(csr.ok());
  Certificate leaf = IssueLeaf(root, *csr, Bytes{0x42});
  EXPECT_EQ(leaf.SerialHex(), "42");
  EXPECT_FALSE(leaf.is_ca());
  // The public key in the certificate is the CSR's, byte for byte.
  EXPECT_EQ(*leaf.public_key()->ToDer(), *k.PublicKeyDer());
  EXPECT_TRUE(VerifyChain(leaf, {}, {root.cert}, {}, {}).ok());
  // PEM and DER round trips.
  auto again = Certificate::Parse(AsBytes(*leaf.ToPem()));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again->ToDer(), *leaf.ToDer());
  // An unrelated root does not anchor it.
  Ca other = MakeRoot();
  auto r = VerifyChain(leaf, {}, {other.cert}, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kVerification);
}

TEST(Certificate, ParsePemChainKeepsOrderAndRejectsGarbage) {
  Ca a = MakeRoot();
  Ca b = MakeRoot(KeyType::kEcP384);
  std::string pem = *a.cert.ToPem() + *b.cert.ToPem();
  auto chain = Certificate::ParsePemChain(AsBytes(pem));
  ASSERT_TRUE(chain.ok());
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ((*chain)[1].key_algorithm().name, "P-384");
  EXPECT_FALSE(Certificate::ParsePemChain(AsBytes("nothing here")).ok());
  Bytes der = *a.cert.ToDer();
  der.resize(der.size() - 5);
  EXPECT_EQ(Certificate::Parse(der).error().code, ErrorCode::kInvalidInput);
}

TEST(Crl, RevokedLeafFailsVerificationWithCrlCheck) {
  Ca root = MakeRoot();
  PrivateKey k = Key();
  auto csr = MakeCertificateRequest(k, Dn("CN=dev-1"), {});
  Certificate leaf = IssueLeaf(root, *csr, Bytes{0x10, 0x20});
  int64_t now = NowUnix();
  auto empty = BuildCrl(root.cert, root.key, {1, now, now + 3600, {}});
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(empty->NumberHex(), "01");
  VerifyOptions with_crl;
  with_crl.check_crls = true;
  EXPECT_TRUE(VerifyChain(leaf, {}, {root.cert}, {*empty}, with_crl).ok());
  // Without any CRL, a CRL check must fail (no silent pass).
  EXPECT_FALSE(VerifyChain(leaf, {}, {root.cert}, {}, with_crl).ok());

  auto revoked = BuildCrl(
      root.cert, root.key,
      {2, now, now + 3600, {{Bytes{0x10, 0x20}, now - 10, RevocationReason::kKeyCompromise}}});
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->revoked_count(), 1u);
  auto r = VerifyChain(leaf, {}, {root.cert}, {*revoked}, with_crl);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("revoked"), std::string::npos) << r.error().message;
  // Round trip through DER.
  auto parsed = Crl::Parse(*revoked->ToDer());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->NumberHex(), "02");
}

TEST(Crl, ReasonsParseAndRefuseHold) {
  EXPECT_EQ(*ParseRevocationReason("keyCompromise"), RevocationReason::kKeyCompromise);
  EXPECT_EQ(*ParseRevocationReason("KEYCOMPROMISE"), RevocationReason::kKeyCompromise);
  EXPECT_FALSE(ParseRevocationReason("certificateHold").ok());
  EXPECT_FALSE(ParseRevocationReason("bogus").ok());
  EXPECT_FALSE(RevocationReasonFromCode(7).ok());
}

TEST(Random, BytesDiffer) {
  auto a = RandomBytes(16);
  auto b = RandomBytes(16);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

}  // namespace
}  // namespace devid::crypto

namespace devid::crypto {
namespace {

// Builds a DER SubjectPublicKeyInfo by hand: SEQUENCE { algorithm, BIT STRING }.
Bytes Spki(const Bytes& algorithm, const Bytes& point) {
  Bytes bits = {0x03, static_cast<uint8_t>(point.size() + 1), 0x00};
  bits.insert(bits.end(), point.begin(), point.end());
  Bytes body = algorithm;
  body.insert(body.end(), bits.begin(), bits.end());
  Bytes out = {0x30, static_cast<uint8_t>(body.size())};
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
const Bytes kEcP256Algorithm = {0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01,
                                0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};

TEST(SubjectPublicKeyInfo, RefusesPointAtInfinityCompressedAndOffCurvePoints) {
  auto infinity = SubjectPublicKeyInfo::Parse(Spki(kEcP256Algorithm, {0x00}));
  ASSERT_TRUE(infinity.ok());
  EXPECT_EQ(infinity->Decode().error().code, ErrorCode::kInvalidInput);
  PrivateKey k = Key();
  auto good = SubjectPublicKeyInfo::FromKey(k.get());
  ASSERT_TRUE(good.ok());
  Bytes point(good->key_bits().begin(), good->key_bits().end());
  ASSERT_EQ(point.size(), 65u);
  EXPECT_TRUE(SubjectPublicKeyInfo::Parse(Spki(kEcP256Algorithm, point))->Decode().ok());
  Bytes compressed(point.begin(), point.begin() + 33);
  compressed[0] = static_cast<uint8_t>(0x02 | (point[64] & 1));
  EXPECT_FALSE(SubjectPublicKeyInfo::Parse(Spki(kEcP256Algorithm, compressed))->Decode().ok());
  Bytes off_curve = point;
  off_curve[64] ^= 0x01;
  EXPECT_FALSE(SubjectPublicKeyInfo::Parse(Spki(kEcP256Algorithm, off_curve))->Decode().ok());
}

TEST(SubjectPublicKeyInfo, ExplicitCurveParametersAreNotP256) {
  // id-ecPublicKey with a SEQUENCE (explicit parameters) instead of a curve OID.
  Bytes explicit_alg = {0x30, 0x0B, 0x06, 0x07, 0x2A, 0x86, 0x48,
                        0xCE, 0x3D, 0x02, 0x01, 0x30, 0x00};
  auto spki = SubjectPublicKeyInfo::Parse(Spki(explicit_alg, {0x04, 0x01}));
  ASSERT_TRUE(spki.ok());
  EXPECT_FALSE(spki->algorithm().type.has_value());
  EXPECT_NE(spki->algorithm().name.find("explicit"), std::string::npos);
}

}  // namespace
}  // namespace devid::crypto

namespace devid::crypto {
namespace {

TEST(Keys, OverlongPassphraseIsRefusedBeforeEncrypting) {
  PrivateKey k = Key();
  SecretString longest(std::string(1023, 'p'));
  auto pem = k.ToPkcs8Pem(&longest);
  ASSERT_TRUE(pem.ok());
  EXPECT_TRUE(PrivateKey::FromPem(*pem, &longest).ok());
  SecretString too_long(std::string(1024, 'p'));
  EXPECT_EQ(k.ToPkcs8Pem(&too_long).error().code, ErrorCode::kInvalidInput);
}

TEST(Csr, RefusesNonMinimalDerLengths) {
  PrivateKey k = Key();
  Bytes der = MakeCertificateRequest(k, Dn("CN=x"), {})->der();
  ASSERT_EQ(der[0], 0x30);
  ASSERT_EQ(der[1], 0x81);  // the outer length is one long-form byte for a ~200-byte request
  // Re-encode the outer length with two bytes (BER, not DER).
  Bytes ber = {0x30, 0x82, 0x00, der[2]};
  ber.insert(ber.end(), der.begin() + 3, der.end());
  auto r = CertificateRequest::Parse(ber);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("non-DER"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace devid::crypto

namespace devid::crypto {
namespace {

TEST(ChipPrimitives, DigestSignatureVerifiesAndTamperedOneDoesNot) {
  for (KeyType t : {KeyType::kEcP256, KeyType::kEcP384}) {
    PrivateKey k = Key(t);
    Bytes digest = Sha256(AsBytes("message"));
    auto sig = SignDigest(k, digest);
    ASSERT_TRUE(sig.ok()) << sig.error().message;
    auto pub = EcPublicKeyFromPoint(t, *k.PublicPoint());
    ASSERT_TRUE(pub.ok()) << pub.error().message;
    EXPECT_TRUE(VerifyDigest(pub->get(), digest, *sig).ok());
    Bytes other = Sha256(AsBytes("other message"));
    EXPECT_EQ(VerifyDigest(pub->get(), other, *sig).error().code, ErrorCode::kVerification);
  }
}

TEST(ChipPrimitives, EcdhAgreesOnBothSides) {
  PrivateKey a = Key();
  PrivateKey b = Key();
  auto a_pub = EcPublicKeyFromPoint(KeyType::kEcP256, *a.PublicPoint());
  auto b_pub = EcPublicKeyFromPoint(KeyType::kEcP256, *b.PublicPoint());
  auto ab = DeriveSharedSecret(a, b_pub->get());
  auto ba = DeriveSharedSecret(b, a_pub->get());
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(ab->size(), 32u);
  EXPECT_EQ(*ab, *ba);
  // A P-384 peer against a P-256 key is refused.
  PrivateKey c = Key(KeyType::kEcP384);
  auto c_pub = EcPublicKeyFromPoint(KeyType::kEcP384, *c.PublicPoint());
  EXPECT_FALSE(DeriveSharedSecret(a, c_pub->get()).ok());
}

TEST(ChipPrimitives, Pkcs8DerRoundTripAndPointChecks) {
  PrivateKey k = Key(KeyType::kEcP384);
  auto der = k.ToPkcs8Der();
  ASSERT_TRUE(der.ok());
  auto back = PrivateKey::FromPkcs8Der(*der);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back->PublicPoint(), *k.PublicPoint());
  Bytes truncated(der->begin(), der->end() - 1);
  EXPECT_FALSE(PrivateKey::FromPkcs8Der(truncated).ok());
  EXPECT_FALSE(EcPublicKeyFromPoint(KeyType::kEcP256, Bytes{0x00}).ok());
  EXPECT_FALSE(EcPublicKeyFromPoint(KeyType::kEcP384, *Key().PublicPoint()).ok());  // wrong length
}

TEST(Aead, SealOpenAndTamper) {
  Bytes key(32, 0x11);
  Bytes nonce(12, 0x22);
  auto sealed = AesGcmSeal(key, nonce, AsBytes("header"), AsBytes("secret"));
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(AsString(*AesGcmOpen(key, nonce, AsBytes("header"), *sealed)), "secret");
  EXPECT_EQ(AesGcmOpen(key, nonce, AsBytes("HEADER"), *sealed).error().code,
            ErrorCode::kVerification);
  Bytes bad = *sealed;
  bad[0] ^= 1;
  EXPECT_EQ(AesGcmOpen(key, nonce, AsBytes("header"), bad).error().code, ErrorCode::kVerification);
  EXPECT_FALSE(AesGcmSeal(Bytes(16, 0), nonce, {}, {}).ok());
}

}  // namespace
}  // namespace devid::crypto

namespace devid::crypto {
namespace {

TEST(ChipPrimitives, EcdsaSignatureFormsRoundTrip) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kEcP384}) {
    auto key = PrivateKey::Generate(type).value();
    size_t n = type == KeyType::kEcP384 ? 48 : 32;
    Bytes digest(n, 0x5C);
    Bytes der = SignDigest(key, digest).value();
    auto raw = EcdsaDerToRaw(der, n);
    ASSERT_TRUE(raw.ok()) << raw.error().message;
    EXPECT_EQ(raw->size(), 2 * n);
    auto back = EcdsaRawToDer(*raw);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, der);  // DER is canonical: the same bytes again
  }
  EXPECT_FALSE(EcdsaDerToRaw(Bytes{0x30, 0x00, 0x01}, 32).ok());  // trailing byte
  EXPECT_FALSE(EcdsaRawToDer(Bytes(63, 1)).ok());                 // odd length
}

}  // namespace
}  // namespace devid::crypto

namespace devid::crypto {
namespace {

// A device's TLS context goes to the next device of a pooled library context
// (agent::Device): nothing of the first may remain in it.
TEST(Tls, AReusedClientContextKeepsNothingOfItsLastUse) {
  auto dir = std::filesystem::temp_directory_path() / ("devid-tls-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct Identity {
    Ca ca;
    PrivateKey key;
    Certificate leaf;
    std::string key_path;
  };
  auto make = [&](const std::string& name, uint8_t serial) {
    Ca ca = MakeRoot();
    PrivateKey key = Key();
    Certificate leaf = IssueLeaf(ca, *MakeCertificateRequest(key, Dn("CN=" + name), {}), {serial});
    std::string path = (dir / (name + ".key")).string();
    std::ofstream(path) << *key.ToPkcs8Pem(nullptr);
    return Identity{std::move(ca), std::move(key), std::move(leaf), path};
  };
  Identity a = make("dev-a", 0x0A);
  Identity b = make("dev-b", 0x0B);
  TlsClientOptions first;
  first.key_uri = a.key_path;
  first.chain = {a.leaf, a.ca.cert};
  first.trust = {a.ca.cert};
  first.server_name = "hub.example";
  first.version = TlsVersion::kTls12;
  auto made = MakeClientContext(first);
  ASSERT_TRUE(made.ok()) << made.error().message;
  SSL_CTX* ctx = made->get();

  TlsClientOptions second;
  second.key_uri = b.key_path;
  second.chain = {b.leaf, b.ca.cert};
  second.trust = {b.ca.cert};
  second.server_name = "127.0.0.1";
  second.version = TlsVersion::kTls13;
  auto reused = MakeClientContext(second, std::move(made).value());
  ASSERT_TRUE(reused.ok()) << reused.error().message;
  ASSERT_EQ(reused->get(), ctx);
  EXPECT_EQ(X509_cmp(SSL_CTX_get0_certificate(ctx), b.leaf.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq(SSL_CTX_get0_privatekey(ctx), b.key.get()), 1);
  STACK_OF(X509)* chain = nullptr;
  ASSERT_EQ(SSL_CTX_get0_chain_certs(ctx, &chain), 1);
  ASSERT_EQ(sk_X509_num(chain), 1);
  EXPECT_EQ(X509_cmp(sk_X509_value(chain, 0), b.ca.cert.get()), 0);
  STACK_OF(X509_OBJECT)* anchors = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
  ASSERT_EQ(sk_X509_OBJECT_num(anchors), 1);
  EXPECT_EQ(X509_cmp(X509_OBJECT_get0_X509(sk_X509_OBJECT_value(anchors, 0)), b.ca.cert.get()), 0);
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
  EXPECT_EQ(X509_VERIFY_PARAM_get0_host(param, 0), nullptr);  // "hub.example" is gone
  char* ip = X509_VERIFY_PARAM_get1_ip_asc(param);
  ASSERT_NE(ip, nullptr);
  EXPECT_STREQ(ip, "127.0.0.1");
  OPENSSL_free(ip);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
  EXPECT_EQ(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
  EXPECT_EQ(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);

  // A key that does not match the certificate fails, whatever the context held.
  TlsClientOptions mismatched = second;
  mismatched.key_uri = a.key_path;
  EXPECT_FALSE(MakeClientContext(mismatched, std::move(reused).value()).ok());

  // Without a client chain nothing is reused: no certificate to carry over.
  auto other = MakeClientContext(second);
  ASSERT_TRUE(other.ok());
  TlsClientOptions anonymous;
  anonymous.trust = {a.ca.cert};
  auto fresh = MakeClientContext(anonymous, std::move(other).value());
  ASSERT_TRUE(fresh.ok()) << fresh.error().message;
  EXPECT_EQ(SSL_CTX_get0_certificate(fresh->get()), nullptr);
  std::filesystem::remove_all(dir);
}

TEST(Ocsp, PreparedResponderSignsAsOpenSslDoesForEveryCaKeyType) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa3072}) {
    Ca ca = MakeRoot(type);
    PrivateKey device = Key();
    auto csr = *MakeCertificateRequest(device, Dn("CN=device"), {});
    Certificate leaf = IssueLeaf(ca, csr, Bytes{0x00, 0x9A, 0x01});
    auto responder = OcspResponder::Create(ca.cert, ca.key);
    ASSERT_TRUE(responder.ok()) << responder.error().message;
    // Another CA's key cannot make this CA's responder.
    EXPECT_FALSE(OcspResponder::Create(ca.cert, Key()).ok());
    auto request_der = *MakeOcspRequestFor(leaf, ca.cert);
    auto request = *OcspRequest::Parse(request_der);
    std::string asked;
    auto response = responder->Respond(
        request,
        [&](const std::string& serial) {
          asked = serial;
          return OcspAnswer{OcspStatus::kRevoked, 1700000000, 4};
        },
        NowUnix(), 3600);
    ASSERT_TRUE(response.ok()) << response.error().message;
    EXPECT_EQ(asked, "9A01");
    auto answers = ReadOcspResponse(*response, request_der, ca.cert);
    ASSERT_TRUE(answers.ok()) << KeyTypeName(type) << ": " << answers.error().message;
    ASSERT_EQ(answers->size(), 1u);
    EXPECT_EQ((*answers)[0].status, OcspStatus::kRevoked);
    EXPECT_EQ((*answers)[0].revoked_at, 1700000000);
    EXPECT_EQ((*answers)[0].reason, 4);
  }
}

}  // namespace
}  // namespace devid::crypto
