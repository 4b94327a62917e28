// The PKCS#11 module driven in-process through its function list: the error
// returns applications rely on.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "crypto/key.h"
#include "pkcs11/module.h"
#include "se/device/secure_element.h"
#include "se/host/client.h"

namespace devid::pkcs11 {
namespace {

class Pkcs11Test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("devid-p11-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::string image = (dir_ / "chip.img").string();
    {
      auto chip = se::SecureElement::Create(image, "SN-UNIT", SecretString("123456"));
      ASSERT_TRUE(chip.ok()) << chip.error().message;
      se::ChipClient client(std::make_unique<se::InProcessTransport>(std::move(chip).value()));
      auto point = client.GenerateKeyPair(0, crypto::KeyType::kEcP256, true);
      ASSERT_TRUE(point.ok());
      point_ = *point;
    }
    ::setenv("DEVID_PKCS11_CHIPS", ("image=" + image).c_str(), 1);
    f_ = FunctionList();
  }
  void TearDown() override {
    f_->C_Finalize(nullptr);
    ::unsetenv("DEVID_PKCS11_CHIPS");
    std::filesystem::remove_all(dir_);
  }
  CK_SESSION_HANDLE Open(CK_FLAGS flags = CKF_SERIAL_SESSION) {
    CK_SESSION_HANDLE h = 0;
    EXPECT_EQ(f_->C_OpenSession(0, flags, nullptr, nullptr, &h), CKR_OK);
    return h;
  }
  CK_OBJECT_HANDLE FindPrivateKey(CK_SESSION_HANDLE h) {
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE templ[] = {{CKA_CLASS, &cls, sizeof cls}};
    EXPECT_EQ(f_->C_FindObjectsInit(h, templ, 1), CKR_OK);
    CK_OBJECT_HANDLE key = 0;
    CK_ULONG n = 0;
    EXPECT_EQ(f_->C_FindObjects(h, &key, 1, &n), CKR_OK);
    EXPECT_EQ(f_->C_FindObjectsFinal(h), CKR_OK);
    return n == 1 ? key : 0;
  }
  CK_RV Login(CK_SESSION_HANDLE h, const char* pin) {
    return f_->C_Login(h, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin)),
                       std::strlen(pin));
  }

  std::filesystem::path dir_;
  Bytes point_;
  CK_FUNCTION_LIST* f_ = nullptr;
};

TEST_F(Pkcs11Test, CallsBeforeInitializeAndTwiceInitialize) {
  CK_INFO info;
  EXPECT_EQ(f_->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  EXPECT_EQ(f_->C_Initialize(nullptr), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  EXPECT_EQ(f_->C_GetInfo(&info), CKR_OK);
  EXPECT_EQ(info.cryptokiVersion.major, 2);
  EXPECT_EQ(info.cryptokiVersion.minor, 40);
}

TEST_F(Pkcs11Test, BadSlotsAndSessions) {
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  CK_SESSION_HANDLE h = 0;
  EXPECT_EQ(f_->C_OpenSession(9, CKF_SERIAL_SESSION, nullptr, nullptr, &h), CKR_SLOT_ID_INVALID);
  EXPECT_EQ(f_->C_OpenSession(0, 0, nullptr, nullptr, &h), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
  CK_MECHANISM ecdsa = {CKM_ECDSA, nullptr, 0};
  EXPECT_EQ(f_->C_SignInit(12345, &ecdsa, 1), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_CloseSession(12345), CKR_SESSION_HANDLE_INVALID);
}

TEST_F(Pkcs11Test, PrivateKeysNeedLoginAndTheRightPin) {
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  CK_SESSION_HANDLE h = Open();
  EXPECT_EQ(FindPrivateKey(h), 0u);  // hidden before login
  EXPECT_EQ(Login(h, "000000"), CKR_PIN_INCORRECT);
  EXPECT_EQ(Login(h, "12"), CKR_PIN_INCORRECT);  // never sent to the chip
  ASSERT_EQ(Login(h, "123456"), CKR_OK);
  EXPECT_EQ(Login(h, "123456"), CKR_USER_ALREADY_LOGGED_IN);
  EXPECT_NE(FindPrivateKey(h), 0u);
  ASSERT_EQ(f_->C_Logout(h), CKR_OK);
  EXPECT_EQ(f_->C_Logout(h), CKR_USER_NOT_LOGGED_IN);
}

TEST_F(Pkcs11Test, SignErrorsAndBufferTooSmall) {
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  CK_SESSION_HANDLE h = Open();
  ASSERT_EQ(Login(h, "123456"), CKR_OK);
  CK_OBJECT_HANDLE key = FindPrivateKey(h);
  ASSERT_NE(key, 0u);
  CK_BYTE digest[32] = {1, 2, 3};
  CK_BYTE sig[64];
  CK_ULONG len = sizeof sig;
  EXPECT_EQ(f_->C_Sign(h, digest, sizeof digest, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
  CK_MECHANISM rsa = {CKM_RSA_PKCS, nullptr, 0};
  EXPECT_EQ(f_->C_SignInit(h, &rsa, key), CKR_MECHANISM_INVALID);
  CK_MECHANISM ecdsa = {CKM_ECDSA, nullptr, 0};
  EXPECT_EQ(f_->C_SignInit(h, &ecdsa, 0xDEAD), CKR_KEY_HANDLE_INVALID);
  ASSERT_EQ(f_->C_SignInit(h, &ecdsa, key), CKR_OK);
  EXPECT_EQ(f_->C_SignInit(h, &ecdsa, key), CKR_OPERATION_ACTIVE);
  len = 10;
  EXPECT_EQ(f_->C_Sign(h, digest, sizeof digest, sig, &len), CKR_BUFFER_TOO_SMALL);
  EXPECT_EQ(len, 64u);
  ASSERT_EQ(f_->C_Sign(h, digest, sizeof digest, sig, &len), CKR_OK);  // still active
  auto der = crypto::EcdsaRawToDer(ByteView(sig, len));
  ASSERT_TRUE(der.ok());
  auto pub = crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, point_);
  EXPECT_TRUE(crypto::VerifyDigest(pub->get(), ByteView(digest, 32), *der).ok());
}

TEST_F(Pkcs11Test, SensitiveAttributesAndReadOnlySessions) {
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  CK_SESSION_HANDLE h = Open();
  ASSERT_EQ(Login(h, "123456"), CKR_OK);
  CK_OBJECT_HANDLE key = FindPrivateKey(h);
  CK_BYTE value[64];
  CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
  CK_ATTRIBUTE attrs[] = {{CKA_SENSITIVE, &sensitive, sizeof sensitive},
                          {CKA_EXTRACTABLE, &extractable, sizeof extractable}};
  ASSERT_EQ(f_->C_GetAttributeValue(h, key, attrs, 2), CKR_OK);
  EXPECT_EQ(sensitive, CK_TRUE);
  EXPECT_EQ(extractable, CK_FALSE);
  CK_ATTRIBUTE secret = {CKA_VALUE, value, sizeof value};
  EXPECT_EQ(f_->C_GetAttributeValue(h, key, &secret, 1), CKR_ATTRIBUTE_SENSITIVE);
  EXPECT_EQ(secret.ulValueLen, CK_UNAVAILABLE_INFORMATION);
  CK_BYTE label[2];
  CK_ATTRIBUTE small = {CKA_LABEL, label, sizeof label};
  EXPECT_EQ(f_->C_GetAttributeValue(h, key, &small, 1), CKR_BUFFER_TOO_SMALL);
  CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  CK_BYTE p256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
  CK_ATTRIBUTE pub_templ[] = {{CKA_EC_PARAMS, p256, sizeof p256}};
  CK_OBJECT_HANDLE pub = 0, priv = 0;
  EXPECT_EQ(f_->C_GenerateKeyPair(h, &gen, pub_templ, 1, nullptr, 0, &pub, &priv),
            CKR_SESSION_READ_ONLY);
  CK_SESSION_HANDLE rw = Open(CKF_SERIAL_SESSION | CKF_RW_SESSION);
  CK_BYTE p521[] = {0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23};
  CK_ATTRIBUTE bad_curve[] = {{CKA_EC_PARAMS, p521, sizeof p521}};
  EXPECT_EQ(f_->C_GenerateKeyPair(rw, &gen, bad_curve, 1, nullptr, 0, &pub, &priv),
            CKR_CURVE_NOT_SUPPORTED);
  EXPECT_EQ(f_->C_GenerateKeyPair(rw, &gen, pub_templ, 1, nullptr, 0, &pub, &priv), CKR_OK);
}

TEST_F(Pkcs11Test, DigestAndRandomComeFromTheChip) {
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  CK_SESSION_HANDLE h = Open();
  CK_MECHANISM sha = {CKM_SHA256, nullptr, 0};
  CK_MECHANISM md5 = {CKM_MD5, nullptr, 0};
  EXPECT_EQ(f_->C_DigestInit(h, &md5), CKR_MECHANISM_INVALID);
  ASSERT_EQ(f_->C_DigestInit(h, &sha), CKR_OK);
  CK_BYTE abc[] = {'a', 'b', 'c'};
  CK_BYTE out[32];
  CK_ULONG len = 31;
  EXPECT_EQ(f_->C_Digest(h, abc, 3, out, &len), CKR_BUFFER_TOO_SMALL);
  len = sizeof out;
  ASSERT_EQ(f_->C_Digest(h, abc, 3, out, &len), CKR_OK);
  EXPECT_EQ(Bytes(out, out + 32), crypto::Sha256(AsBytes("abc")));
  CK_BYTE a[32] = {}, b[32] = {};
  ASSERT_EQ(f_->C_GenerateRandom(h, a, sizeof a), CKR_OK);
  ASSERT_EQ(f_->C_GenerateRandom(h, b, sizeof b), CKR_OK);
  EXPECT_NE(Bytes(a, a + 32), Bytes(b, b + 32));
}

}  // namespace
}  // namespace devid::pkcs11

namespace devid::pkcs11 {
namespace {

// Thread-safe (PKCS#11 §6.7.5 with CKF_OS_LOCKING_OK): threads each with a
// session sign at once; every signature verifies.
TEST_F(Pkcs11Test, ConcurrentSessionsSignSafely) {
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  ASSERT_EQ(f_->C_Initialize(&args), CKR_OK);
  CK_SESSION_HANDLE first = Open();
  ASSERT_EQ(Login(first, "123456"), CKR_OK);  // login is per token: every session is logged in
  CK_OBJECT_HANDLE key = FindPrivateKey(first);
  ASSERT_NE(key, 0u);
  auto pub = crypto::EcPublicKeyFromPoint(crypto::KeyType::kEcP256, point_).value();
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      CK_SESSION_HANDLE h = 0;
      if (f_->C_OpenSession(0, CKF_SERIAL_SESSION, nullptr, nullptr, &h) != CKR_OK) return;
      for (int i = 0; i < 10; ++i) {
        CK_BYTE digest[32];
        std::memset(digest, t * 16 + i, sizeof digest);
        CK_MECHANISM ecdsa = {CKM_ECDSA, nullptr, 0};
        CK_BYTE sig[64];
        CK_ULONG len = sizeof sig;
        if (f_->C_SignInit(h, &ecdsa, key) != CKR_OK ||
            f_->C_Sign(h, digest, sizeof digest, sig, &len) != CKR_OK) {
          continue;
        }
        auto der = crypto::EcdsaRawToDer(ByteView(sig, len));
        if (der.ok() && crypto::VerifyDigest(pub.get(), ByteView(digest, 32), *der).ok()) ++good;
      }
      f_->C_CloseSession(h);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 40);
}

}  // namespace
}  // namespace devid::pkcs11

namespace devid::pkcs11 {
namespace {

// Each function's argument and state errors, one table (PKCS#11 v2.40 §5).
TEST_F(Pkcs11Test, EveryFunctionReportsItsErrors) {
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  CK_SESSION_HANDLE h = Open();
  CK_SESSION_HANDLE bad = 999;
  CK_SLOT_INFO slot_info;
  CK_TOKEN_INFO token_info;
  CK_MECHANISM_INFO mech_info;
  CK_SESSION_INFO session_info;
  CK_ULONG count = 0;
  CK_OBJECT_HANDLE objects[4];
  CK_BYTE buf[64];
  CK_ULONG len = sizeof buf;
  CK_MECHANISM ecdsa = {CKM_ECDSA, nullptr, 0};
  CK_MECHANISM sha = {CKM_SHA256, nullptr, 0};
  CK_MECHANISM derive_no_params = {CKM_ECDH1_DERIVE, nullptr, 0};
  CK_ATTRIBUTE label = {CKA_LABEL, buf, sizeof buf};
  CK_OBJECT_HANDLE out = 0;

  EXPECT_EQ(f_->C_GetSlotList(CK_FALSE, nullptr, nullptr), CKR_ARGUMENTS_BAD);
  EXPECT_EQ(f_->C_GetSlotInfo(7, &slot_info), CKR_SLOT_ID_INVALID);
  EXPECT_EQ(f_->C_GetTokenInfo(7, &token_info), CKR_SLOT_ID_INVALID);
  EXPECT_EQ(f_->C_GetMechanismList(7, nullptr, &count), CKR_SLOT_ID_INVALID);
  EXPECT_EQ(f_->C_GetMechanismInfo(0, CKM_RSA_PKCS, &mech_info), CKR_MECHANISM_INVALID);
  EXPECT_EQ(f_->C_GetSessionInfo(bad, &session_info), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_CloseAllSessions(7), CKR_SLOT_ID_INVALID);
  EXPECT_EQ(f_->C_Login(bad, CKU_USER, nullptr, 0), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_Login(h, CKU_SO, nullptr, 0), CKR_USER_TYPE_INVALID);
  EXPECT_EQ(f_->C_Logout(h), CKR_USER_NOT_LOGGED_IN);
  EXPECT_EQ(f_->C_FindObjects(h, objects, 4, &count), CKR_OPERATION_NOT_INITIALIZED);
  EXPECT_EQ(f_->C_FindObjectsFinal(h), CKR_OPERATION_NOT_INITIALIZED);
  ASSERT_EQ(f_->C_FindObjectsInit(h, nullptr, 0), CKR_OK);
  EXPECT_EQ(f_->C_FindObjectsInit(h, nullptr, 0), CKR_OPERATION_ACTIVE);
  ASSERT_EQ(f_->C_FindObjectsFinal(h), CKR_OK);
  EXPECT_EQ(f_->C_GetAttributeValue(h, 0xBAD, &label, 1), CKR_OBJECT_HANDLE_INVALID);
  EXPECT_EQ(f_->C_SignInit(h, &ecdsa, 0xBAD), CKR_USER_NOT_LOGGED_IN);
  EXPECT_EQ(f_->C_SignUpdate(h, buf, 1), CKR_OPERATION_NOT_INITIALIZED);
  EXPECT_EQ(f_->C_SignFinal(h, buf, &len), CKR_OPERATION_NOT_INITIALIZED);
  EXPECT_EQ(f_->C_VerifyInit(h, &ecdsa, 0xBAD), CKR_KEY_HANDLE_INVALID);
  EXPECT_EQ(f_->C_Verify(h, buf, 32, buf, 64), CKR_OPERATION_NOT_INITIALIZED);
  EXPECT_EQ(f_->C_VerifyFinal(h, buf, 64), CKR_OPERATION_NOT_INITIALIZED);
  EXPECT_EQ(f_->C_DigestUpdate(h, buf, 1), CKR_OPERATION_NOT_INITIALIZED);
  EXPECT_EQ(f_->C_DigestFinal(h, buf, &len), CKR_OPERATION_NOT_INITIALIZED);
  ASSERT_EQ(f_->C_DigestInit(h, &sha), CKR_OK);
  EXPECT_EQ(f_->C_DigestInit(h, &sha), CKR_OPERATION_ACTIVE);
  EXPECT_EQ(f_->C_DeriveKey(h, &derive_no_params, 0xBAD, nullptr, 0, &out),
            CKR_MECHANISM_PARAM_INVALID);
  EXPECT_EQ(f_->C_GenerateRandom(bad, buf, 8), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_SeedRandom(h, buf, 8), CKR_RANDOM_SEED_NOT_SUPPORTED);
  EXPECT_EQ(f_->C_DestroyObject(h, 0xBAD), CKR_OBJECT_HANDLE_INVALID);
  EXPECT_EQ(f_->C_EncryptInit(h, &ecdsa, 0), CKR_FUNCTION_NOT_SUPPORTED);
  EXPECT_EQ(f_->C_Finalize(reinterpret_cast<void*>(1)), CKR_ARGUMENTS_BAD);
  ASSERT_EQ(f_->C_Finalize(nullptr), CKR_OK);
  EXPECT_EQ(f_->C_OpenSession(0, CKF_SERIAL_SESSION, nullptr, nullptr, &h),
            CKR_CRYPTOKI_NOT_INITIALIZED);
}

}  // namespace
}  // namespace devid::pkcs11

namespace devid::pkcs11 {
namespace {

// From the security review: the chip connection after a logout, key slots
// that already hold a key, and ECDH secrets bound to their session and login.
TEST_F(Pkcs11Test, LogoutKeySlotsAndSessionSecrets) {
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  CK_SESSION_HANDLE h = Open(CKF_SERIAL_SESSION | CKF_RW_SESSION);
  CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  CK_BYTE p256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
  CK_BYTE slot0 = 0;
  CK_ATTRIBUTE pub_templ[] = {{CKA_EC_PARAMS, p256, sizeof p256}, {CKA_ID, &slot0, 1}};
  CK_OBJECT_HANDLE pub = 0, priv = 0;
  EXPECT_EQ(f_->C_GenerateKeyPair(h, &gen, pub_templ, 2, nullptr, 0, &pub, &priv),
            CKR_USER_NOT_LOGGED_IN);
  ASSERT_EQ(Login(h, "123456"), CKR_OK);
  EXPECT_EQ(f_->C_GenerateKeyPair(h, &gen, pub_templ, 2, nullptr, 0, &pub, &priv),
            CKR_ATTRIBUTE_VALUE_INVALID);  // slot 0 holds the device key: never overwritten

  // An ECDH secret lives in its session, for the logged-in user.
  auto peer = crypto::PrivateKey::Generate(crypto::KeyType::kEcP256).value();
  Bytes point = peer.PublicPoint().value();
  CK_ECDH1_DERIVE_PARAMS params = {CKD_NULL, 0, nullptr, point.size(), point.data()};
  CK_MECHANISM ecdh = {CKM_ECDH1_DERIVE, &params, sizeof params};
  CK_OBJECT_HANDLE secret = 0;
  ASSERT_EQ(f_->C_DeriveKey(h, &ecdh, FindPrivateKey(h), nullptr, 0, &secret), CKR_OK);
  CK_ULONG value_len = 0;
  CK_ATTRIBUTE len_attr = {CKA_VALUE_LEN, &value_len, sizeof value_len};
  ASSERT_EQ(f_->C_GetAttributeValue(h, secret, &len_attr, 1), CKR_OK);
  EXPECT_EQ(value_len, 32u);
  ASSERT_EQ(f_->C_Logout(h), CKR_OK);
  EXPECT_EQ(f_->C_GetAttributeValue(h, secret, &len_attr, 1), CKR_OBJECT_HANDLE_INVALID);

  // After the logout the module reconnects to the chip by itself.
  CK_BYTE random[16];
  EXPECT_EQ(f_->C_GenerateRandom(h, random, sizeof random), CKR_OK);
  CK_MECHANISM sha = {CKM_SHA256, nullptr, 0};
  CK_BYTE digest[32];
  CK_ULONG digest_len = sizeof digest;
  ASSERT_EQ(f_->C_DigestInit(h, &sha), CKR_OK);
  EXPECT_EQ(f_->C_Digest(h, random, sizeof random, digest, &digest_len), CKR_OK);

  // A secret made in one session is gone when that session closes.
  ASSERT_EQ(Login(h, "123456"), CKR_OK);
  CK_SESSION_HANDLE other = Open();
  ASSERT_EQ(f_->C_DeriveKey(other, &ecdh, FindPrivateKey(other), nullptr, 0, &secret), CKR_OK);
  ASSERT_EQ(f_->C_GetAttributeValue(h, secret, &len_attr, 1), CKR_OK);
  ASSERT_EQ(f_->C_CloseSession(other), CKR_OK);
  EXPECT_EQ(f_->C_GetAttributeValue(h, secret, &len_attr, 1), CKR_OBJECT_HANDLE_INVALID);
}

}  // namespace
}  // namespace devid::pkcs11
